"""Dependencies shared by routes: the session factory and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.services import access
from gridsvc.services.access import Principal
from gridsvc.settings import Settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    """The app's session factory (made in the lifespan)."""
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


def get_settings_dep(request: Request) -> Settings:
    """The settings the app was made with."""
    settings: Settings = request.app.state.settings
    return settings


Sessions = Annotated[sessionmaker[Session], Depends(get_sessions)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


def get_principal(
    sessions: Sessions,
    x_api_key: Annotated[str | None, Header(description="API key, e.g. gs_1a2b3c4d_...")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The caller behind the X-API-Key (or Authorization: Bearer) header; 401 without a valid key."""
    raw = x_api_key
    if raw is None and authorization and authorization.lower().startswith("bearer "):
        raw = authorization[7:]
    return access.authenticate(sessions, raw)


Caller = Annotated[Principal, Depends(get_principal)]
