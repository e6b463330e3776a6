"""GET /health: database, PostGIS version, migrations, active plan."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gridsvc.api.deps import Sessions
from gridsvc.api.problems import DATABASE_RETRY_AFTER_SECONDS
from gridsvc.api.roles import PUBLIC, RoleRoute
from gridsvc.services.health import check_health

router = APIRouter(tags=["service"], route_class=RoleRoute)

HEALTH_EXAMPLE = {
    "service": "gridsvc",
    "version": "0.1.0",
    "status": "ok",
    "database": {
        "reachable": True,
        "postgresql_version": "15.18 (Debian 15.18-0+deb12u1)",
        "postgis_version": "3.3.2",
        "migration": "0003_seed_reference_data",
        "migration_head": "0003_seed_reference_data",
        "migrations_current": True,
    },
    "active_plan": {"id": 1, "name": "演示初始网格方案", "effective_from": "2025-01-01", "unit_grids": 9500},
}


@router.get(
    "/health",
    dependencies=[PUBLIC],
    summary="Service health",
    description="200 when the database answers and its migrations are current; 503 otherwise.",
    responses={
        200: {"content": {"application/json": {"example": HEALTH_EXAMPLE}}},
        503: {"description": "database unreachable (with Retry-After) or not migrated"},
    },
)
def health(sessions: Sessions) -> JSONResponse:
    """Report the database, PostGIS version and the active plan."""
    healthy, report = check_health(sessions)
    body: dict[str, Any] = report
    if healthy:
        return JSONResponse(body)
    # Unreachable is a fault the service recovers from by itself: say when to look again. A database
    # behind on its migrations waits for an operator, so no Retry-After.
    down = not body["database"]["reachable"]
    retry = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)} if down else None
    return JSONResponse(body, status_code=503, headers=retry)
