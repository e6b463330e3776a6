"""The ``gridsvc`` command's entry point: loads the command line, answering a Ctrl+C while it loads.

Loading the commands (typer, SQLAlchemy, geopandas) takes a few tenths of a second, during which a
Ctrl+C would print a traceback from deep inside an import. This module imports only the standard library,
so that it can catch that interrupt and say plainly that nothing was done.
"""

import sys


def main() -> None:
    try:
        from gridsvc.cli import app
    except KeyboardInterrupt:
        # 130 is what shells expect after Ctrl+C.
        print("interrupted (Ctrl+C) while starting: nothing was done", file=sys.stderr)
        raise SystemExit(130) from None
    app()
