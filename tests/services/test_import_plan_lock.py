"""An import and a plan activation at the same time: the import's components end up on the new plan's grids;
and two imports of the same components at the same time, which take turns.

An import finds each component's grids while it stages the file, long before it commits; an activation
re-grids only the components it can see. The import share-locks the active plan for its whole
transaction (repositories/imports.lock_active_plan), so the two are put in order whichever starts first.
These run on a committed database of their own (the small case city and a draft plan), because the two
must be separate transactions on separate connections.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import psycopg2
import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.engine import make_engine
from gridsvc.services import plans
from gridsvc.services.access import Principal
from gridsvc.services.imports import ImportReport, ImportRequest, import_components
from gridsvc.settings import Settings
from tests.conftest import scratch_database
from tests.factories import add_case_city
from tests.services.test_plans import WEST_EAST, add_draft

GIS = Principal(name="测绘员", role="gis_staff")
LAMPS = 6
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class City:
    url: str
    sessions: sessionmaker[Session]
    plan_id: int
    draft_id: int
    census: Path


def _dsn(url: str, database: str | None = None) -> str:
    """The URL as libpq takes it, optionally for another database of the same server."""
    libpq = make_url(url).set(drivername="postgresql")
    return (libpq.set(database=database) if database else libpq).render_as_string(hide_password=False)


@pytest.fixture
def city(database_url: str, tmp_path: Path) -> Iterator[City]:
    """The case city with a draft plan, committed, and a census of lamps inside the old plan's grids."""
    url = scratch_database(database_url, "gridsvc_import_plan_lock")
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    try:
        with sessions.begin() as session:
            made = add_case_city(session)
            draft_id = add_draft(session, int(made["station"].id), halves=WEST_EAST)
            points = session.execute(
                text(
                    "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM unit_grid"
                    " WHERE plan_id = :p ORDER BY code) g"
                ),
                {"p": made["plan"].id},
            ).all()
        lon = [points[i % len(points)][0] + 1e-5 * i for i in range(LAMPS)]
        lat = [points[i % len(points)][1] for i in range(LAMPS)]
        census = tmp_path / "路灯.gpkg"
        gpd.GeoDataFrame(
            {"标识码": [f"3701020118{100_001 + i:06d}" for i in range(LAMPS)], "状态": ["完好"] * LAMPS},
            geometry=shapely.points(lon, lat),
            crs="EPSG:4490",
        ).to_file(census, driver="GPKG")
        yield City(url, sessions, int(made["plan"].id), draft_id, census)
    finally:
        engine.dispose()
        admin = psycopg2.connect(_dsn(url, "postgres"))
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS gridsvc_import_plan_lock WITH (FORCE)")
        admin.close()


def _in_background(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as exc:  # handed to the test, which fails on it
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _waiting_for_a_lock(city: City, statement_prefix: str) -> bool:
    """True when a backend of the city's database waits for a lock while running ``statement_prefix``."""
    with psycopg2.connect(_dsn(city.url)) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
            " AND cardinality(pg_blocking_pids(pid)) > 0"
        )
        queries = [str(q) for (q,) in cursor.fetchall()]
    conn.close()
    return any(q.lstrip().upper().startswith(statement_prefix.upper()) for q in queries)


def _wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _plans_of_imported(city: City, report: ImportReport) -> list[int]:
    with city.sessions() as session:
        rows = session.execute(
            text(
                "SELECT u.plan_id FROM component c LEFT JOIN unit_grid u ON u.id = c.unit_grid_id"
                " WHERE c.survey_batch_id = :b ORDER BY c.code"
            ),
            {"b": report.batch_id},
        ).scalars()
        return list(rows)


def _import(
    city: City, settings: Settings, progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    request = ImportRequest(path=city.census, chunk_rows=2)
    return import_components(city.sessions, request, settings=settings, actor=GIS, progress=progress)


def _held_after_the_first_chunk() -> tuple[threading.Event, threading.Event, Callable[[int, int], None]]:
    """A progress callback that stops an import after its first chunk until ``go_on`` is set, and the
    event ``staged`` it sets when it does."""
    staged, go_on = threading.Event(), threading.Event()

    def hold(rows: int, total: int) -> None:
        if not staged.is_set():
            staged.set()
            go_on.wait(WAIT_SECONDS)

    return staged, go_on, hold


def _activate(city: City, settings: Settings) -> plans.Activation:
    return plans.activate_plan(
        city.sessions, city.draft_id, dt.date(2026, 12, 1), settings=settings, actor=GIS
    )


def test_an_activation_during_an_import_waits_and_then_regrids_its_components(
    city: City, test_settings: Settings
) -> None:
    staged, go_on, hold_after_the_first_chunk = _held_after_the_first_chunk()
    importing, imported = _in_background(lambda: _import(city, test_settings, hold_after_the_first_chunk))
    assert staged.wait(WAIT_SECONDS)
    activating, activated = _in_background(lambda: _activate(city, test_settings))
    # The activation has checked the draft and now waits for the import's lock on the active plan.
    _wait_for("the activation to wait for the import", lambda: _waiting_for_a_lock(city, "SELECT id, name"))
    assert "result" not in activated
    go_on.set()
    importing.join(WAIT_SECONDS)
    activating.join(WAIT_SECONDS)
    assert "error" not in imported and "error" not in activated, (imported, activated)

    report: ImportReport = imported["result"]
    assert (report.new, report.assigned_to_grid) == (LAMPS, LAMPS)
    assert activated["result"].components_regridded == 2 + LAMPS  # the city's two lamps and the import's
    assert _plans_of_imported(city, report) == [city.draft_id] * LAMPS


def test_an_import_during_an_activation_waits_and_takes_the_new_plans_grids(
    city: City, test_settings: Settings
) -> None:
    # Hold the activation just before it commits: everything written, only its audit entry to go.
    audit = psycopg2.connect(_dsn(city.url))
    try:
        with audit.cursor() as cursor:
            cursor.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
        activating, activated = _in_background(lambda: _activate(city, test_settings))
        _wait_for(
            "the activation to reach its audit entry", lambda: _waiting_for_a_lock(city, "INSERT INTO audit")
        )
        importing, imported = _in_background(lambda: _import(city, test_settings))
        _wait_for(
            "the import to wait for the activation", lambda: _waiting_for_a_lock(city, "SELECT id, version")
        )
    finally:
        audit.rollback()
        audit.close()
    activating.join(WAIT_SECONDS)
    importing.join(WAIT_SECONDS)
    assert "error" not in imported and "error" not in activated, (imported, activated)

    report: ImportReport = imported["result"]
    assert activated["result"].components_regridded == 2  # the import was not committed yet
    assert (report.new, report.assigned_to_grid) == (LAMPS, LAMPS)
    assert _plans_of_imported(city, report) == [city.draft_id] * LAMPS


def test_a_second_import_of_the_same_lamps_waits_for_the_first_and_finds_them_unchanged(
    city: City, test_settings: Settings
) -> None:
    # Imports of one layer take turns (repositories/imports.IMPORT_LOCK): at once, the second would version
    # what the first is writing and fail on the one-current-version index when it commits.
    staged, go_on, hold_after_the_first_chunk = _held_after_the_first_chunk()
    first, first_outcome = _in_background(lambda: _import(city, test_settings, hold_after_the_first_chunk))
    assert staged.wait(WAIT_SECONDS)
    phases: list[str] = []
    second_request = ImportRequest(path=city.census, chunk_rows=2)
    second, second_outcome = _in_background(
        lambda: import_components(
            city.sessions, second_request, settings=test_settings, actor=GIS, phase=phases.append
        )
    )
    _wait_for("the second import to wait", lambda: _waiting_for_a_lock(city, "SELECT pg_advisory_xact_lock"))
    assert phases == ["waiting for another import of components to end"]
    # A dry run writes nothing, so it does not wait.
    dry = import_components(
        city.sessions, ImportRequest(path=city.census, dry_run=True), settings=test_settings, actor=GIS
    )
    assert dry.new == LAMPS and "result" not in second_outcome
    go_on.set()
    first.join(WAIT_SECONDS)
    second.join(WAIT_SECONDS)
    assert "error" not in first_outcome and "error" not in second_outcome, (first_outcome, second_outcome)
    assert (first_outcome["result"].new, second_outcome["result"].unchanged) == (LAMPS, LAMPS)
    assert phases[:2] == ["waiting for another import of components to end", "reading the file"]
