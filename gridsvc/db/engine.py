"""Engines and sessions; nothing connects at import time."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

# libpq's connect_timeout is in whole seconds.
CONNECT_TIMEOUT_SECONDS = 5


def make_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 10, pool_timeout: float = 30.0
) -> Engine:
    """An engine for the gridsvc database; connections are checked before use and talk UTC and UTF-8.

    The pool holds ``pool_size`` connections and opens up to ``max_overflow`` more under load; a caller
    finding all of them busy waits ``pool_timeout`` seconds, then gets ``sqlalchemy.exc.TimeoutError``
    (the service answers that 503 + Retry-After, see gridsvc/api/problems.py).
    """
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        connect_args={
            "options": "-c timezone=UTC",
            "client_encoding": "utf8",
            "application_name": "gridsvc",
            # A server that accepts the connection and never answers (a hung host, a dropped route) would hold
            # a request for ever without these; the pool timeout does not bound a connect. With them the
            # request fails in seconds and the service answers 503 + Retry-After.
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that do not expire objects on commit, so services can return what they wrote."""
    return sessionmaker(bind=engine, expire_on_commit=False)
