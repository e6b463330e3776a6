"""Queries that tell whether the database is what gridsvc expects."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from gridsvc.db.models import GridPlan


def server_versions(session: Session) -> dict[str, str]:
    """PostgreSQL and PostGIS versions of the connected server."""
    row = session.execute(
        text("SELECT current_setting('server_version'), postgis_lib_version(), postgis_full_version()")
    ).one()
    return {"postgresql": row[0], "postgis": row[1], "postgis_full": row[2]}


def migration_revision(session: Session) -> str | None:
    """The Alembic revision stored in the database (None before the first migration)."""
    exists = session.execute(text("SELECT to_regclass('gridsvc_alembic_version') IS NOT NULL")).scalar_one()
    if not exists:
        return None
    value = session.execute(text("SELECT version_num FROM gridsvc_alembic_version")).scalar()
    return str(value) if value is not None else None


def active_plan(session: Session) -> dict[str, Any] | None:
    """The active grid plan with its grid counts, or None when no plan is active."""
    plan = session.execute(select(GridPlan).where(GridPlan.status == "active")).scalar_one_or_none()
    if plan is None:
        return None
    counts = session.execute(
        text(
            "SELECT (SELECT count(*) FROM unit_grid WHERE plan_id = :id),"
            " (SELECT count(*) FROM responsibility_grid WHERE plan_id = :id)"
        ),
        {"id": plan.id},
    ).one()
    return {
        "id": plan.id,
        "name": plan.name,
        "effective_from": plan.effective_from.isoformat() if plan.effective_from else None,
        "unit_grids": counts[0],
        "responsibility_grids": counts[1],
    }


def table_counts(session: Session, tables: list[str]) -> dict[str, int]:
    """Row counts of the named tables (estimates would mislead right after a load, so exact)."""
    counts: dict[str, int] = {}
    for table in tables:
        counts[table] = int(session.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())
    return counts
