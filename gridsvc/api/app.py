"""The FastAPI application factory."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from gridsvc import __version__
from gridsvc.api.limits import InFlightLimit
from gridsvc.api.problems import install_problem_handlers
from gridsvc.api.routes import (
    cases,
    features,
    health,
    imports,
    locate,
    open311,
    pages,
    plan_edits,
    plans,
    reference,
    stats,
    tiles,
)
from gridsvc.db.engine import make_engine, make_session_factory
from gridsvc.services import cases as cases_service
from gridsvc.services import import_jobs
from gridsvc.services import locate as locate_service
from gridsvc.services.access import Principal
from gridsvc.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """
gridsvc serves a city's urban-management grids (单元网格, 责任网格), its census of urban
components (部件) and the case loop (立案 → 派遣 → 处置 → 核查 → 结案).

**Authentication**: every operation states who may call it (its **Roles** line and `x-roles`; public
ones need no key). A key goes in the `X-API-Key` header (or `Authorization: Bearer`); tiles and `/ogc`
also take `?api_key=`. Make one with `gridsvc keys create --role gis_staff --name 张三`. Roles:
`gis_staff`, `dispatcher`, `field`, `reporter`. No key, or an unknown, revoked or expired one, is 401
(Open311: 403); a role the operation does not list is 403.

**Busy or database down**: 503 with `Retry-After` (seconds): wait, then send the request again.
Open311 posts over the per-key or per-address limit get 429 with `Retry-After`.

**Errors** are RFC 9457 `application/problem+json` with `errors` listing each field's problem —
except under `/open311/v2/`, which answers GeoReport v2's own error list (`[{code, description}]`
or `<errors>` in XML) with its status codes (400, 403, 404).

**Open311 GeoReport v2** (`/open311/v2/`): service codes are `C` + a component class (`C0118`
street lamp) or `E` + an event class (`E0403` illegal parking). Extensions: `crs` (wgs84, gcj02,
bd09, cgcs2000) for the datum of lat/long, `bbox`, `page`/`page_size` with `X-Total-Count` and `Link`
headers, and `service_object_type=component` + `service_object_id` naming a component by its code.

**Coordinates** are stored in CGCS2000 (EPSG:4490, lon/lat).
"""


def _warm_locator(sessions: sessionmaker[Session], settings: Settings) -> None:
    try:
        locate_service.plan_locator(sessions, settings)
    except Exception:  # a warm-up: the first request will say what is wrong
        log.warning("could not prepare the plan locator at startup", exc_info=True)


# Deadlines pass whether or not anyone looks: the service escalates overdue cases by itself.
ESCALATION_ACTOR = Principal(name="gridsvc-escalation", role="dispatcher")


def _escalate_every(sessions: sessionmaker[Session], settings: Settings, stop: threading.Event) -> None:
    while not stop.wait(settings.escalation_interval_seconds):
        try:
            moved = cases_service.escalate_overdue(sessions, settings, actor=ESCALATION_ACTOR)
            if moved:
                log.info("escalated %d overdue case(s)", len(moved))
        except Exception:  # the next round tries again; one bad round must not end the loop
            log.warning("escalation round failed", exc_info=True)


def create_app(
    settings: Settings, database_url: str, *, sessions: sessionmaker[Session] | None = None
) -> FastAPI:
    """Build the app for these settings; the engine is made at startup and disposed at shutdown.

    ``sessions`` lets a caller (the tests) supply its own session factory instead of an engine.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        if sessions is not None:
            app.state.sessions = sessions
            try:
                yield
            finally:
                import_jobs.stop_all()
            return
        engine = make_engine(
            database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_seconds,
        )
        app.state.engine = engine
        app.state.sessions = make_session_factory(engine)
        # Build the active plan's locator now, in the background: at city scale it takes seconds, which the
        # first field worker's request should not pay. Failing here (no database yet) is not fatal.
        threading.Thread(target=_warm_locator, args=(app.state.sessions, settings), daemon=True).start()
        stop = threading.Event()
        if settings.escalation_interval_seconds > 0:
            threading.Thread(
                target=_escalate_every, args=(app.state.sessions, settings, stop), daemon=True
            ).start()
        try:
            yield
        finally:
            stop.set()
            # Background imports are cancelled and rolled back, not cut off with the connections: their
            # jobs then read cancelled, "the service stopped", rather than failed.
            import_jobs.stop_all()
            engine.dispose()

    app = FastAPI(
        title=f"gridsvc — {settings.city_name} urban-management grids",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "service", "description": "Health and status."},
            {"name": "reference data", "description": "Departments, component classes, event classes."},
            {"name": "imports", "description": "Survey layer imports with row-by-row reports (gis_staff)."},
            {"name": "locate", "description": "Which grid owns a place, and who answers for it."},
            {"name": "cases", "description": "The case loop: intake, routing, transitions, escalation."},
            {"name": "open311", "description": "Open311 GeoReport v2 (JSON and XML) for citizen apps."},
            {"name": "plans", "description": "Grid plans: quality, compare, hand edits, checks, activation."},
            {"name": "tiles", "description": "Vector tiles (MVT) and TileJSON for web maps."},
            {"name": "ogc features", "description": "OGC API - Features (GeoJSON) for QGIS and other tools."},
        ],
    )
    install_problem_handlers(app)
    # More requests than two cores can finish are refused at once (503 + Retry-After), not queued.
    app.add_middleware(InFlightLimit, limit=settings.max_requests_in_flight)
    app.include_router(health.router)
    app.include_router(reference.router)
    app.include_router(imports.router)
    app.include_router(locate.router)
    app.include_router(cases.router)
    app.include_router(cases.escalation_router)
    app.include_router(stats.router)
    app.include_router(plans.router)
    app.include_router(plan_edits.router)
    app.include_router(open311.router)
    app.include_router(tiles.router)
    app.include_router(features.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    return app
