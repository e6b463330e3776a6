"""gridsvc: grids, components and cases for a city's urban-management bureau.

This package's top level imports only the standard library, so that
``python3 -m gridsvc.bootstrap`` can run before any dependency is installed.
"""

__version__ = "0.1.0"
