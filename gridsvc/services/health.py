"""Is the service healthy: database reachable, PostGIS there, migrations current, which plan is active."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gridsvc import __version__
from gridsvc.db.migrate import head_revision
from gridsvc.repositories import health as repo

log = logging.getLogger(__name__)


def check_health(sessions: sessionmaker[Session]) -> tuple[bool, dict[str, Any]]:
    """(healthy, report). A database error is logged, never echoed: the report says only that it failed."""
    report: dict[str, Any] = {"service": "gridsvc", "version": __version__}
    try:
        with sessions() as session:
            versions = repo.server_versions(session)
            revision = repo.migration_revision(session)
            plan = repo.active_plan(session)
    except SQLAlchemyError as exc:
        # One line, no traceback: a load balancer asks every few seconds while the database is down.
        log.warning("health check could not reach the database: %s", exc)
        report.update(status="unavailable", database={"reachable": False})
        return False, report
    head = head_revision()
    report.update(
        status="ok" if revision == head else "degraded",
        database={
            "reachable": True,
            "postgresql_version": versions["postgresql"],
            "postgis_version": versions["postgis"],
            "migration": revision,
            "migration_head": head,
            "migrations_current": revision == head,
        },
        active_plan=plan,
    )
    return revision == head, report
