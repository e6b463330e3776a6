"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from gridsvc import __version__
from gridsvc.api.problems import install_problem_handlers
from gridsvc.api.routes import health, imports, reference
from gridsvc.db.engine import make_engine, make_session_factory
from gridsvc.settings import Settings

DESCRIPTION = """
gridsvc serves a city's urban-management grids (单元网格, 责任网格), its census of urban
components (部件) and the case loop (立案 → 派遣 → 处置 → 核查 → 结案).

**Authentication**: read-only reference endpoints are open; every change needs an API key in the
`X-API-Key` header (make one with `gridsvc keys create --role gis_staff --name 张三`). Roles:
`gis_staff`, `dispatcher`, `field`, `reporter`.

**Errors** are RFC 9457 `application/problem+json` with `errors` listing each field's problem.

**Coordinates** are stored in CGCS2000 (EPSG:4490, lon/lat).
"""


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
            yield
            return
        engine = make_engine(database_url)
        app.state.engine = engine
        app.state.sessions = make_session_factory(engine)
        try:
            yield
        finally:
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
        ],
    )
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(reference.router)
    app.include_router(imports.router)
    return app
