"""Fault tests: a PostGIS of their own with durable settings, and `gridsvc serve` as a process to kill.

Not the session ``cluster``: that one runs with fsync and synchronous_commit off (tests/conftest.py
FAST_UNSAFE), so what a crash leaves there says nothing about what a crash leaves in production, and
one of these tests stops its server the hard way. This cluster keeps PostgreSQL's durable defaults.

Each test gets a fresh copy of a small city (tests/factories.add_case_city: one community, four unit
grids of an active plan, two street lamps) with one API key per role, cloned from a template database
in a fraction of a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg2
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from gridsvc.db import migrate
from gridsvc.db.embedded import EmbeddedCluster, ensure_installation
from gridsvc.db.engine import make_engine
from gridsvc.services.access import LOCAL_OPERATOR, create_key
from tests.conftest import NEUTRAL_CWD, free_port, make_tmp_data_dir
from tests.factories import add_case_city

TEMPLATE_DB = "gridsvc_faults_template"
ROLES = ("gis_staff", "dispatcher", "field", "reporter")
# The service as these tests run it: no background escalation writing while a test holds a lock, and no
# per-client rate limit (every request comes from 127.0.0.1).
SERVE_SETTINGS = {
    "ESCALATION_INTERVAL_SECONDS": "0",
    "OPEN311_POST_PER_MINUTE_PER_KEY": "0",
    "OPEN311_POST_PER_MINUTE_PER_ADDRESS": "0",
}
# Bounds on waiting for something that should happen at once; a test fails rather than hang.
STARTUP_SECONDS = 60.0
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class FaultCity:
    """A database of its own holding the small city, with one API key per role."""

    url: str
    keys: dict[str, str]
    plan_id: int
    station_id: int

    @property
    def dsn(self) -> str:
        """The URL as libpq takes it (no SQLAlchemy driver name)."""
        return self.url.replace("postgresql+psycopg2://", "postgresql://", 1)


def database_url(cluster: EmbeddedCluster, name: str) -> str:
    """The cluster's URL for database ``name``."""
    return make_url(cluster.url()).set(database=name).render_as_string(hide_password=False)


def admin_execute(cluster: EmbeddedCluster, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE) on the maintenance database."""
    conn = psycopg2.connect(database_url(cluster, "postgres").replace("+psycopg2", ""))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def crash(cluster: EmbeddedCluster) -> None:
    """Stop PostgreSQL the way a power cut or an OOM kill would: ``pg_ctl stop -m immediate`` (no
    checkpoint, no clean shutdown; the next start replays the WAL)."""
    # EmbeddedCluster offers only a clean (fast) stop; its pg_ctl helper runs as the server's user.
    cluster._pg_ctl(ensure_installation(), "stop", "-w", "-m", "immediate")


@pytest.fixture(scope="package")
def durable_cluster() -> Iterator[EmbeddedCluster]:
    """An embedded PostGIS with PostgreSQL's durable defaults (fsync, synchronous_commit, full pages)."""
    data_dir = make_tmp_data_dir("gridsvc-faults-")
    pg = EmbeddedCluster(data_dir, port=free_port(), db_name="gridsvc_faults")
    pg.up()
    try:
        yield pg
    finally:
        pg.down()
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass(frozen=True)
class CityTemplate:
    keys: dict[str, str]
    plan_id: int
    station_id: int


@pytest.fixture(scope="package")
def city_template(durable_cluster: EmbeddedCluster) -> CityTemplate:
    """The template every test's city is cloned from: migrated, the small city, one key per role."""
    admin_execute(durable_cluster, f"CREATE DATABASE {TEMPLATE_DB}")
    url = database_url(durable_cluster, TEMPLATE_DB)
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        sessions = sessionmaker(bind=engine, expire_on_commit=False)
        with sessions.begin() as session:
            made = add_case_city(session)
            plan_id, station_id = int(made["plan"].id), int(made["station"].id)
        keys = {
            role: create_key(sessions, name=f"故障测试-{role}", role=role, actor=LOCAL_OPERATOR).secret
            for role in ROLES
        }
    finally:
        engine.dispose()  # a template must have no connections when it is copied
    return CityTemplate(keys=keys, plan_id=plan_id, station_id=station_id)


@pytest.fixture
def city(durable_cluster: EmbeddedCluster, city_template: CityTemplate) -> Iterator[FaultCity]:
    """A fresh copy of the small city for one test, dropped afterwards."""
    name = f"gridsvc_faults_{uuid.uuid4().hex[:10]}"
    # FILE_COPY, not PostgreSQL 15's default WAL_LOG: a WAL_LOG copy carries the template's sequence pages
    # with values counted as already logged, so after a crash the copy's sequences go back and hand out
    # ids again (duplicate keys). FILE_COPY checkpoints, and the first nextval after a checkpoint logs.
    admin_execute(durable_cluster, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB} STRATEGY FILE_COPY")
    try:
        yield FaultCity(
            url=database_url(durable_cluster, name),
            keys=city_template.keys,
            plan_id=city_template.plan_id,
            station_id=city_template.station_id,
        )
    finally:
        durable_cluster.up()  # a no-op unless a test stopped the server and failed before starting it
        admin_execute(durable_cluster, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class ServedGridsvc:
    """`gridsvc serve` (uvicorn, one process) against a database; a test may ``kill()`` it with SIGKILL."""

    def __init__(self, url: str, **settings: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
        env.update(GRIDSVC_DATABASE_URL=url, GRIDSVC_PORT=str(self.port))
        env.update({f"GRIDSVC_{name}": value for name, value in {**SERVE_SETTINGS, **settings}.items()})
        # The log goes to a file: a pipe nobody reads fills up and blocks a busy server. Closed by stop().
        self._log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gridsvc.cli", "serve"],
            env=env,
            cwd=NEUTRAL_CWD,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"gridsvc serve did not come up:\n{self.log()}")
            time.sleep(0.1)

    @property
    def alive(self) -> bool:
        """True while the server process runs."""
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown handler, no rollback by the service, open sockets simply vanish."""
        if self.alive:
            self.process.kill()
        self.process.wait(timeout=WAIT_SECONDS)

    def stop(self) -> None:
        """A clean stop (SIGTERM), SIGKILL if it does not end; the log is gone afterwards."""
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        """What the server printed so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()


@pytest.fixture
def serve() -> Iterator[Callable[..., ServedGridsvc]]:
    """Start `gridsvc serve` processes; every one still running is stopped when the test ends."""
    started: list[ServedGridsvc] = []

    def start(url: str, **settings: str) -> ServedGridsvc:
        served = ServedGridsvc(url, **settings)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class TableLock:
    """A test connection holding ``LOCK TABLE ... IN ACCESS EXCLUSIVE MODE`` until ``release()``: whatever
    touches the table next waits inside its own transaction, at a point the test knows."""

    def __init__(self, dsn: str, table: str) -> None:
        self.dsn = dsn
        self.conn = psycopg2.connect(dsn)
        self.table = table
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.pid = int(cur.fetchone()[0])  # type: ignore[index]
            cur.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')

    def waiting(self, statement_prefix: str) -> tuple[int, str] | None:
        """(pid, query) of a backend this lock blocks whose statement starts with ``statement_prefix``."""
        with psycopg2.connect(self.dsn) as probe, probe.cursor() as cur:
            cur.execute(
                "SELECT pid, query FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (self.pid,),
            )
            rows = cur.fetchall()
        probe.close()
        for pid, query in rows:
            if query.lstrip().upper().startswith(statement_prefix.upper()):
                return int(pid), str(query)
        return None

    def release(self) -> None:
        """End the lock's transaction (nothing was written in it)."""
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


@pytest.fixture
def table_lock() -> Iterator[Callable[[str, str], TableLock]]:
    """Take table locks from the test; every one is released when the test ends."""
    taken: list[TableLock] = []

    def take(dsn: str, table: str) -> TableLock:
        lock = TableLock(dsn, table)
        taken.append(lock)
        return lock

    yield take
    for lock in taken:
        lock.release()


def backend_gone(dsn: str, pid: int) -> bool:
    """True when the server process ``pid`` (a backend) has ended, its transaction with it."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
        gone = cur.fetchone() == (0,)
    conn.close()
    return gone


def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query on a fresh connection (what a new client sees: only committed data)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params or None)  # no parameters: a literal % stays a %
        rows = cur.fetchall()
    conn.close()
    return rows


def tables_written_by(dsn: str, pid: int) -> set[str]:
    """Tables the open transaction of backend ``pid`` has inserted into, updated or deleted from so far
    (the RowExclusiveLock each such statement takes and holds until the transaction ends)."""
    rows = query(
        dsn,
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.pid = %s AND l.granted AND l.mode = 'RowExclusiveLock' AND c.relkind = 'r'",
        pid,
    )
    return {str(name) for (name,) in rows}
