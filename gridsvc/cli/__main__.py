"""``python -m gridsvc.cli``: the same as the ``gridsvc`` command."""

from gridsvc.cli import app

app()
