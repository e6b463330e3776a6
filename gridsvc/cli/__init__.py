"""The ``gridsvc`` command line: one Typer app, its commands grouped by what they work on."""

from gridsvc.cli import cases, locate, plan_edits, plans, tiles  # noqa: F401  (they register their commands on the app)
from gridsvc.cli.main import app

__all__ = ["app"]
