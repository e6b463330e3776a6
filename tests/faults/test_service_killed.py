"""kill -9 of the service (or of the command line) in the middle of a write leaves nothing half-written.

Each write is one database transaction (docs/ARCHITECTURE.md): a process that dies before COMMIT takes
its transaction with it, because PostgreSQL rolls back what a vanished client did not commit. These tests
kill the process at known points inside the transaction. To hold a write at such a point, the test locks
``audit_log``, which every write touches last (after the rows it exists for): the writer then waits
inside its transaction with everything else written; the test sees it wait (pg_blocking_pids) and what
it has written (its row locks), kills it, releases the lock and looks at what is left. Afterwards the
same write succeeds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import numpy as np
import pyogrio
import pytest
import shapely
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.engine import make_engine
from gridsvc.services import cases
from gridsvc.services.access import Principal
from gridsvc.settings import Settings
from tests.conftest import NEUTRAL_CWD
from tests.factories import GRID_ORIGIN, LAMP
from tests.faults.conftest import (
    WAIT_SECONDS,
    FaultCity,
    ServedGridsvc,
    TableLock,
    backend_gone,
    query,
    tables_written_by,
    wait_for,
)
from tests.services.test_plans import WEST_EAST, add_draft

pytestmark = pytest.mark.slow

# Street lamps spread over the city's one district (0.010° x 0.006° from GRID_ORIGIN), away from its edge;
# enough that the import runs for a few seconds on a small machine.
LAMPS = 60_000
CODE_PREFIX = "37010201181"  # county 370102, class 0118 (street lamp), serials 100000-199999


def write_lamp_census(path: Path, count: int = LAMPS) -> list[str]:
    """A GeoPackage of ``count`` street lamps with standard Chinese fields; returns their codes."""
    rng = np.random.default_rng(7)
    x0, y0 = GRID_ORIGIN
    lon = rng.uniform(x0 + 0.0002, x0 + 0.0098, count)
    lat = rng.uniform(y0 + 0.0002, y0 + 0.0058, count)
    codes = [f"{CODE_PREFIX}{i:05d}" for i in range(count)]
    pyogrio.write_dataframe(
        gpd.GeoDataFrame(
            {"标识码": codes, "名称": [f"故障测试路灯{i}" for i in range(count)], "状态": ["完好"] * count},
            geometry=shapely.points(lon, lat),
            crs="EPSG:4490",
        ),
        path,
        layer="路灯",
        driver="GPKG",
    )
    return codes


def post_in_background(call: Callable[[], httpx.Response]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run an HTTP call in a thread; the outcome (answer or error) lands in the returned dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["response"] = call()
        except httpx.HTTPError as exc:  # the server was killed under the request
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def upload(served: ServedGridsvc, city: FaultCity, census: Path) -> httpx.Response:
    with census.open("rb") as handle:
        return httpx.post(
            f"{served.base}/v1/imports/components",
            headers={"X-API-Key": city.keys["gis_staff"]},
            files={"file": (census.name, handle, "application/geopackage+sqlite3")},
            data={"layer": "路灯"},
            timeout=WAIT_SECONDS * 4,
        )


def import_traces(city: FaultCity) -> dict[str, int]:
    """Everything an import of the census writes, counted."""
    counts = {
        "survey_batch": "SELECT count(*) FROM survey_batch",
        "component": f"SELECT count(*) FROM component WHERE code LIKE '{CODE_PREFIX}%'",
        "import_problem": "SELECT count(*) FROM import_problem",
        "audit_log": "SELECT count(*) FROM audit_log WHERE action = 'import'",
    }
    return {table: int(query(city.dsn, sql)[0][0]) for table, sql in counts.items()}


NO_IMPORT = {"survey_batch": 0, "component": 0, "import_problem": 0, "audit_log": 0}


def test_service_killed_during_an_import_leaves_no_trace_and_the_import_then_succeeds(
    city: FaultCity,
    serve: Callable[..., ServedGridsvc],
    table_lock: Callable[[str, str], TableLock],
    tmp_path: Path,
) -> None:
    census = tmp_path / "路灯普查.gpkg"
    codes = write_lamp_census(census)

    # 1. Killed while the rows stream in: the import's transaction is open and has written (it holds a
    # transaction id: the staging table and the COPY), and the upload has not been answered.
    served = serve(city.url)
    thread, outcome = post_in_background(lambda: upload(served, city, census))
    wait_for(
        "the import to write inside its transaction",
        lambda: query(
            city.dsn,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'gridsvc' "
            "AND datname = current_database() AND backend_xid IS NOT NULL",
        ),
    )
    assert "response" not in outcome
    served.kill()
    thread.join(WAIT_SECONDS)
    assert "error" in outcome
    wait_for("the killed import's backend to end", lambda: not _gridsvc_backends(city))
    assert import_traces(city) == NO_IMPORT

    # 2. Killed with every row written (survey batch, components, problems) and only the audit entry and
    # COMMIT to go.
    served = serve(city.url)
    audit = table_lock(city.dsn, "audit_log")
    thread, outcome = post_in_background(lambda: upload(served, city, census))
    pid, _ = wait_for("the import to reach its audit entry", lambda: audit.waiting("INSERT INTO audit_log"))
    assert {"survey_batch", "component"} <= tables_written_by(city.dsn, pid)
    served.kill()
    audit.release()
    thread.join(WAIT_SECONDS)
    assert "error" in outcome and "response" not in outcome
    wait_for("the killed import's backend to end", lambda: backend_gone(city.dsn, pid))
    assert import_traces(city) == NO_IMPORT

    # 3. Restarted, the same file imports completely.
    served = serve(city.url)
    done = upload(served, city, census)
    assert done.status_code == 201, done.text
    report = done.json()
    assert (report["rows_read"], report["accepted"], report["new"], report["rejected"]) == (
        LAMPS,
        LAMPS,
        LAMPS,
        0,
    )
    assert import_traces(city) == {"survey_batch": 1, "component": LAMPS, "import_problem": 0, "audit_log": 1}
    stored = {code for (code,) in query(city.dsn, "SELECT code FROM component WHERE valid_to IS NULL")}
    assert set(codes) <= stored


def _gridsvc_backends(city: FaultCity) -> list[tuple[Any, ...]]:
    """The service's connections to the city's database."""
    return query(
        city.dsn,
        "SELECT pid FROM pg_stat_activity "
        "WHERE application_name = 'gridsvc' AND datname = current_database()",
    )


def _sessions(city: FaultCity) -> tuple[Engine, sessionmaker[Session]]:
    engine = make_engine(city.url)
    return engine, sessionmaker(bind=engine, expire_on_commit=False)


def _rows(city: FaultCity, sql: str) -> list[tuple[Any, ...]]:
    """Rows as text, so whole rows (geometries, JSON, times) compare exactly."""
    return query(city.dsn, f"SELECT t::text FROM ({sql}) AS t ORDER BY 1")


def plan_state(city: FaultCity) -> dict[str, list[tuple[Any, ...]]]:
    """What an activation changes: plans, the grids of components and cases, the audit log."""
    return {
        "grid_plan": _rows(city, "SELECT * FROM grid_plan"),
        "component": _rows(city, "SELECT code, unit_grid_id, responsibility_grid_id FROM component"),
        "case_record": _rows(city, "SELECT * FROM case_record"),
        "audit_log": _rows(city, "SELECT * FROM audit_log"),
    }


def test_command_killed_during_a_plan_activation_leaves_the_old_plan_active(
    city: FaultCity, table_lock: Callable[[str, str], TableLock]
) -> None:
    engine, sessions = _sessions(city)
    try:
        with sessions.begin() as session:
            draft = add_draft(session, city.station_id, halves=WEST_EAST)
        # An open case, which the activation moves to the new plan's grids with the components.
        cases.intake_case(
            sessions,
            Settings(database_url=city.url, _env_file=None),  # type: ignore[call-arg]
            cases.CaseIntake(kind="event", class_code="0101", x=LAMP[0], y=LAMP[1], crs="cgcs2000"),
            actor=Principal(name="市民应用", role="reporter"),
        )
    finally:
        engine.dispose()
    before = plan_state(city)
    activate = [sys.executable, "-m", "gridsvc.cli", "plan", "activate", str(draft), "--from", "2026-12-01"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env["GRIDSVC_DATABASE_URL"] = city.url

    # Killed after retiring the old plan, activating the draft and moving components and cases, with only
    # the audit entry and COMMIT to go.
    audit = table_lock(city.dsn, "audit_log")
    command = subprocess.Popen(
        activate, env=env, cwd=NEUTRAL_CWD, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        pid, _ = wait_for(
            "the activation to reach its audit entry", lambda: audit.waiting("INSERT INTO audit_log")
        )
        assert {"grid_plan", "component", "case_record"} <= tables_written_by(city.dsn, pid)
    finally:
        command.kill()
        output = command.communicate(timeout=WAIT_SECONDS)[0]
    assert command.returncode == -signal.SIGKILL, output
    audit.release()
    wait_for("the killed activation's backend to end", lambda: backend_gone(city.dsn, pid))

    assert plan_state(city) == before
    statuses = dict(query(city.dsn, "SELECT id, status FROM grid_plan"))
    assert statuses == {city.plan_id: "active", draft: "draft"}

    # Run again, it activates: the old plan retired from that day, components and the case moved.
    done = subprocess.run(
        activate, env=env, cwd=NEUTRAL_CWD, capture_output=True, text=True, timeout=WAIT_SECONDS * 4
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["retired_plan_id"] == city.plan_id
    assert query(
        city.dsn, "SELECT id, status, effective_from::text, effective_to::text FROM grid_plan ORDER BY id"
    ) == [
        (city.plan_id, "retired", "2025-06-30", "2026-12-01"),
        (draft, "active", "2026-12-01", None),
    ]
    assert query(
        city.dsn,
        "SELECT DISTINCT u.plan_id FROM component c JOIN unit_grid u ON u.id = c.unit_grid_id "
        "UNION SELECT DISTINCT u.plan_id FROM case_record c JOIN unit_grid u ON u.id = c.unit_grid_id",
    ) == [(draft,)]


def case_state(city: FaultCity, code: str) -> dict[str, list[tuple[Any, ...]]]:
    """One case's row, its history and the audit log, whole rows as text."""
    return {
        "case_record": _rows(city, f"SELECT * FROM case_record WHERE request_code = '{code}'"),
        "case_event": _rows(
            city,
            "SELECT e.* FROM case_event e JOIN case_record c ON c.id = e.case_id "
            f"WHERE c.request_code = '{code}'",
        ),
        "audit_log": _rows(city, "SELECT * FROM audit_log"),
    }


def test_service_killed_during_a_case_transition_leaves_the_case_as_it_was(
    city: FaultCity,
    serve: Callable[..., ServedGridsvc],
    table_lock: Callable[[str, str], TableLock],
) -> None:
    served = serve(city.url)
    reported = httpx.post(
        f"{served.base}/v1/cases",
        headers={"X-API-Key": city.keys["reporter"]},
        json={"kind": "event", "class_code": "0101", "lon": LAMP[0], "lat": LAMP[1], "crs": "cgcs2000"},
        timeout=WAIT_SECONDS,
    )
    assert reported.status_code == 201, reported.text
    code = reported.json()["request_code"]
    before = case_state(city, code)
    assert len(before["case_event"]) == 1  # its intake

    def register() -> httpx.Response:
        return httpx.post(
            f"{served.base}/v1/cases/{code}/register",
            headers={"X-API-Key": city.keys["dispatcher"]},
            timeout=WAIT_SECONDS * 4,
        )

    # Killed with the case's new status and its new event written, only the audit entry and COMMIT to go.
    audit = table_lock(city.dsn, "audit_log")
    thread, outcome = post_in_background(register)
    pid, _ = wait_for("the step to reach its audit entry", lambda: audit.waiting("INSERT INTO audit_log"))
    assert {"case_record", "case_event"} <= tables_written_by(city.dsn, pid)
    served.kill()
    audit.release()
    thread.join(WAIT_SECONDS)
    assert "error" in outcome and "response" not in outcome
    wait_for("the killed step's backend to end", lambda: backend_gone(city.dsn, pid))

    assert case_state(city, code) == before  # same status, deadlines and history: no orphan event

    served = serve(city.url)
    done = register()
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "registered"
    events = query(
        city.dsn,
        "SELECT e.seq, e.action, e.from_status, e.to_status FROM case_event e "
        "JOIN case_record c ON c.id = e.case_id WHERE c.request_code = %s ORDER BY e.seq",
        code,
    )
    assert events == [(1, "intake", None, "reported"), (2, "register", "reported", "registered")]
