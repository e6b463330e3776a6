"""Alembic migrations of the gridsvc database (a package so the installed CLI can find them)."""
