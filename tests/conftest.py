"""Test harness: one real PostGIS for the whole run, started by the run itself, migrated once.

Each test that touches data gets a session factory bound to one connection inside a transaction
that is rolled back afterwards, so tests never see each other's writes. Services still call
``sessions.begin()``; those become savepoints inside the test's transaction.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db import migrate
from gridsvc.db.embedded import EmbeddedCluster
from gridsvc.db.engine import make_engine
from gridsvc.settings import Settings

# Commands under test run from here, so a developer's .env in the checkout cannot reach them.
NEUTRAL_CWD = "/"

# Durability is not what tests check; these make the cluster several times faster.
FAST_UNSAFE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_tmp_data_dir(prefix: str) -> Path:
    """A data folder the unprivileged server user can reach (pytest's own tmp dirs are 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def cluster() -> Iterator[EmbeddedCluster]:
    """The run's own embedded PostGIS, stopped and removed at the end."""
    data_dir = make_tmp_data_dir("gridsvc-test-")
    pg = EmbeddedCluster(data_dir, port=free_port(), db_name="gridsvc_test", extra_conf=FAST_UNSAFE)
    pg.up()
    try:
        yield pg
    finally:
        pg.down()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(cluster: EmbeddedCluster) -> str:
    """URL of the test database, migrated to head once."""
    url = cluster.url()
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def test_settings(database_url: str) -> Settings:
    """Settings pointing at the test database."""
    # Tests change plans between one call and the next: never trust a cached plan index without asking.
    return Settings(database_url=database_url, locate_recheck_seconds=0, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """One engine for the run."""
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def rolled_back(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions on one connection inside a transaction rolled back at the end; services' own
    ``sessions.begin()`` become savepoints inside it."""
    connection = engine.connect()
    outer = connection.begin()
    factory = sessionmaker(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint")
    try:
        yield factory
    finally:
        outer.rollback()
        connection.close()


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory whose every write is rolled back when the test ends."""
    yield from rolled_back(engine)


def scratch_database(database_url: str, name: str) -> str:
    """A fresh, migrated database called ``name`` on the test cluster; returns its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def demo_url(database_url: str, test_settings: Settings) -> str:
    """A database of its own holding the small demo city (seed 2023), loaded once for the run."""
    from gridsvc.services import demo

    url = scratch_database(database_url, "gridsvc_demo_shared")
    engine = make_engine(url)
    demo.load_demo(
        sessionmaker(bind=engine, expire_on_commit=False),
        settings=test_settings,
        scale="small",
        seed=2023,
        replace=False,
    )
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def demo_engine_shared(demo_url: str) -> Iterator[Engine]:
    """One engine on the shared demo database."""
    eng = make_engine(demo_url)
    yield eng
    eng.dispose()


@pytest.fixture
def demo_sessions(demo_engine_shared: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions on the demo database whose writes are rolled back when the test ends."""
    yield from rolled_back(demo_engine_shared)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: it means something the suite promises was not checked."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    xfailed = len(reporter.stats.get("xfailed", [])) if reporter else 0
    if skipped or xfailed:
        if reporter:
            reporter.write_line(
                f"CI: {skipped} skipped and {xfailed} xfailed tests count as failures", red=True
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def case_city(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """A hand-made community with four unit grids, a station and two street lamps (tests/factories.py)."""
    from tests.factories import add_case_city

    with sessions.begin() as session:
        made = add_case_city(session)
        return {"plan_id": made["plan"].id}


@pytest.fixture
def drawable(case_city: dict[str, Any], sessions: sessionmaker[Session]) -> dict[str, Any]:
    """The case city's community (about 890 m x 670 m), a road across it, 48 buildings of 50 households."""
    from gridsvc.db.models import ResidentialBuilding, Road
    from tests.factories import GRID_ORIGIN, ewkt

    x0, y0 = GRID_ORIGIN
    with sessions.begin() as session:
        session.add(
            Road(
                name="经十路",
                road_class="arterial",
                geom=ewkt(f"MULTILINESTRING(({x0 - 0.001} {y0 + 0.003}, {x0 + 0.011} {y0 + 0.003}))"),
            )
        )
        for i in range(8):
            for j in range(6):
                session.add(
                    ResidentialBuilding(
                        community_code="370102001001",
                        households=50,
                        geom=ewkt(f"POINT({x0 + 0.0006 + i * 0.00125} {y0 + 0.0005 + j * 0.001})"),
                    )
                )
        session.flush()
    return case_city


@contextlib.contextmanager
def served_gridsvc(database_url: str, **settings: str) -> Iterator[str]:
    """`gridsvc serve` under uvicorn in its own process against ``database_url``; yields its base URL.

    ``settings`` are extra GRIDSVC_* variables without the prefix (e.g. ESCALATION_INTERVAL_SECONDS="0.5").
    """
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATABASE_URL=database_url, GRIDSVC_PORT=str(port))
    env.update({f"GRIDSVC_{name}": value for name, value in settings.items()})
    # The server's log goes to a file: a pipe nobody reads fills up and blocks a busy server.
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gridsvc.cli", "serve"],
            env=env,
            cwd=NEUTRAL_CWD,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=1)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        process.kill()
                        process.wait(timeout=10)
                        log.seek(0)
                        raise AssertionError(f"gridsvc serve did not come up:\n{log.read()}") from None
                    time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=10)
