"""Dependencies shared by routes: the session factory and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api import roles
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


async def get_principal(request: Request) -> Principal:
    """The caller the route's role rule admitted (gridsvc/api/roles.py); 401 without a valid key."""
    admitted: Principal | None = request.scope.get(roles.ADMITTED)
    if admitted is not None:
        return admitted
    # A route without a rule, or a public one that still asks who calls: the key in the headers.
    rule = roles.rule_of(request.scope.get("route"))
    key = roles.raw_key(request, in_query=bool(rule and rule.key_in_query))
    return await roles.authenticate(request, key)


async def get_optional_principal(request: Request) -> Principal | None:
    """The caller the route's rule admitted, or None on a public route called without a key."""
    if roles.ADMITTED in request.scope:
        admitted: Principal | None = request.scope[roles.ADMITTED]
        return admitted
    rule = roles.rule_of(request.scope.get("route"))
    key = roles.raw_key(request, in_query=bool(rule and rule.key_in_query))
    return None if key is None else await roles.authenticate(request, key)


Caller = Annotated[Principal, Depends(get_principal)]
"""The caller (401 without a valid key); who may call is the route's rule (``dependencies=[allow(...)]``)."""
OptionalCaller = Annotated[Principal | None, Depends(get_optional_principal)]
