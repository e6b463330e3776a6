"""Cancelling a running statement from another thread: it stops at once, and a server that does not
answer never stalls the rest of the process."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator

import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from gridsvc.db.engine import (
    CONNECT_TIMEOUT_SECONDS,
    Backend,
    cancel_statement,
    current_backend,
    make_engine,
    make_session_factory,
)


def test_a_running_statement_is_cancelled_from_another_thread(engine: Engine) -> None:
    failed: list[BaseException] = []
    started = threading.Event()

    def sleep_long(session: Session) -> None:
        started.set()
        try:
            session.execute(text("SELECT pg_sleep(60)"))
        except BaseException as exc:  # the test reads what ended it
            failed.append(exc)

    with make_session_factory(engine)() as session:
        backend = current_backend(session)
        sleeper = threading.Thread(target=sleep_long, args=(session,))
        sleeper.start()
        started.wait()
        # Another process that had this pid once (started at another time) is not this one: nothing stops.
        earlier = Backend(pid=backend.pid, started=backend.started - dt.timedelta(seconds=1))
        assert not cancel_statement(engine, earlier)
        assert sleeper.is_alive()
        # Until the statement is on the server, a cancel finds nothing to stop; send until it does.
        while sleeper.is_alive():
            assert cancel_statement(engine, backend)
            sleeper.join(timeout=0.2)
        session.rollback()
    assert len(failed) == 1
    assert isinstance(getattr(failed[0], "orig", None), psycopg2.errors.QueryCanceled)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that takes no connection and never refuses one, like a server behind a dropped route: its
    accept queue is filled until a connect times out, and from then on the kernel drops every SYN."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            filler = socket.socket()
            filler.settimeout(0.5)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break  # silent now: this connect got no answer
        else:
            pytest.fail("the listening socket kept taking connections: no silent server to test against")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_cancel_to_a_silent_server_gives_up_and_never_stalls_the_process(silent_server: int) -> None:
    engine: Engine = make_engine(f"postgresql+psycopg2://gridsvc:secret@127.0.0.1:{silent_server}/gridsvc")
    failed: list[BaseException] = []

    def cancel() -> None:
        try:
            cancel_statement(engine, Backend(pid=4242, started=dt.datetime.now(dt.UTC)))
        except BaseException as exc:  # the test reads what ended it
            failed.append(exc)

    canceller = threading.Thread(target=cancel)
    canceller.start()
    # This thread wakes while the cancel still waits for its connection: it does not hold the GIL (as
    # psycopg2's connection.cancel() does, for as long as TCP tries).
    threading.Event().wait(0.5)
    assert canceller.is_alive()
    canceller.join(timeout=CONNECT_TIMEOUT_SECONDS * 6)
    assert not canceller.is_alive()
    assert len(failed) == 1 and isinstance(failed[0], psycopg2.OperationalError)
    assert "timeout expired" in str(failed[0])
    engine.dispose()
