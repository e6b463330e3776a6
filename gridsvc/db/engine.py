"""Engines and sessions; nothing connects at import time."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for the gridsvc database; connections are checked before use and talk UTC and UTF-8."""
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"options": "-c timezone=UTC", "client_encoding": "utf8", "application_name": "gridsvc"},
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that do not expire objects on commit, so services can return what they wrote."""
    return sessionmaker(bind=engine, expire_on_commit=False)
