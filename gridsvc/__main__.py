"""``python -m gridsvc``: the same as the ``gridsvc`` command."""

from gridsvc.console import main

main()
