"""Engines and sessions; nothing connects at import time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

# libpq's connect_timeout is in whole seconds.
CONNECT_TIMEOUT_SECONDS = 5

_CONNECT_ARGS: dict[str, Any] = {
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
}


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
        connect_args=dict(_CONNECT_ARGS),
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that do not expire objects on commit, so services can return what they wrote."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@dataclass(frozen=True)
class Backend:
    """One server process, as the server itself names it: pid and start time (a pid alone may be reused)."""

    pid: int
    started: dt.datetime


def current_backend(session: Session) -> Backend:
    """The server process running ``session``'s transaction, asked of the server: behind a connection
    pooler the pid libpq was told is not the server's, and the transaction keeps its server process."""
    pid, started = session.execute(
        text("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
    ).one()
    return Backend(pid=int(pid), started=started)


def cancel_statement(engine: Engine, backend: Backend) -> bool:
    """Cancel the statement ``backend`` runs, from any thread: ``pg_cancel_backend`` over a connection
    opened for it alone, outside the pool (which may be busy), and closed.

    Why not psycopg2's ``connection.cancel()``: it sends libpq's cancel request holding the GIL, and
    libpq connects for that with no timeout. Against a server that stopped answering, every thread of
    the process (a service's requests too) would stand still until TCP gives up, minutes later. This
    connect releases the GIL and gives up after :data:`CONNECT_TIMEOUT_SECONDS` per address with
    ``psycopg2.OperationalError``. The process is matched by pid and start time, so a connection that
    reached another server of a multi-host URL stops nothing there. It needs a free connection slot,
    which libpq's request did not. Returns whether the server found the process.
    """
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    arguments = {
        **cparams,
        **_CONNECT_ARGS,
        "application_name": "gridsvc cancel",
        # A server that takes the connection and then hangs holds the canceller no longer than this.
        "options": f"{_CONNECT_ARGS['options']} -c statement_timeout={CONNECT_TIMEOUT_SECONDS * 1000}",
    }
    connection = engine.dialect.loaded_dbapi.connect(*cargs, **arguments)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = %s AND backend_start = %s",
                (backend.pid, backend.started),
            )
            found = cursor.fetchone()
            return bool(found and found[0])
    finally:
        connection.close()
