"""A large import rebuilds component's secondary indexes and foreign keys around its insert: the schema
comes back exactly as it was, a kill part-way leaves it (and the rows) untouched, and readers of
component that stay too long make it insert with the indexes in place instead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.repositories import imports as imports_repo
from gridsvc.services import imports as imports_service
from gridsvc.services.access import LOCAL_OPERATOR
from gridsvc.services.imports import ImportReport, ImportRequest, import_components
from gridsvc.settings import Settings
from tests.conftest import NEUTRAL_CWD

LAMP = "0118"
# Everything about component's indexes and constraints that a rebuild must put back.
SCHEMA = """
    SELECT 'index', c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid::text
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'component'::regclass
    UNION ALL
    SELECT 'constraint', conname, pg_get_constraintdef(oid), convalidated::text
    FROM pg_constraint WHERE conrelid = 'component'::regclass OR confrelid = 'component'::regclass
    ORDER BY 1, 2
"""


def _schema(conn: Connection | Session) -> list[tuple[str, ...]]:
    return [tuple(r) for r in conn.execute(text(SCHEMA)).all()]


def _census(conn: Connection | Session, n: int, path: Path, first_seq: int = 1) -> Path:
    """A GeoPackage of n lamps at random inside 历下区 (the county their codes name; most in a grid)."""
    district = shapely.from_wkb(
        bytes(conn.execute(text("SELECT ST_AsBinary(geom) FROM district")).scalar_one())
    )
    shapely.prepare(district)
    rng = np.random.default_rng(n)
    minx, miny, maxx, maxy = district.bounds
    inside: list[np.ndarray] = []
    while sum(len(p) for p in inside) < n:
        candidates = shapely.points(rng.uniform(minx, maxx, n), rng.uniform(miny, maxy, n))
        inside.append(candidates[shapely.contains(district, candidates)])
    frame = gpd.GeoDataFrame(
        {"标识码": [f"370102{LAMP}{first_seq + i:06d}" for i in range(n)], "状态": "完好"},
        geometry=np.concatenate(inside)[:n],
        crs="EPSG:4490",
    )
    frame.to_file(path, driver="GPKG")
    return path


def _run(sessions: sessionmaker[Session], settings: Settings, path: Path, **kwargs: object) -> ImportReport:
    request = ImportRequest(path=path, **kwargs)  # type: ignore[arg-type]
    return import_components(sessions, request, settings=settings, actor=LOCAL_OPERATOR)


def _rows_to_rebuild(session: Session) -> int:
    """The fewest new rows for which the size rule rebuilds: at least a third of what the table holds. The
    rule reads the planner's estimate, which earlier tests' rolled-back imports can leave above the count:
    the file is sized by what the rule will see."""
    table_rows = imports_repo.component_rows_estimate(session)
    return max(imports_service.REBUILD_MIN_ROWS, table_rows // imports_service.REBUILD_TABLE_FACTOR + 1)


def test_a_large_first_census_rebuilds_and_the_schema_is_as_before(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    with demo_sessions() as session:
        schema = _schema(session)
        n = _rows_to_rebuild(session)
        path = _census(session, n, tmp_path / "census.gpkg", first_seq=800_001)
    phases: list[str] = []
    report = import_components(
        demo_sessions,
        ImportRequest(path=path),
        settings=test_settings,
        actor=LOCAL_OPERATOR,
        phase=phases.append,
    )
    assert report.indexes_rebuilt and report.new == n
    # What the CLI's progress line shows once the file is read: its rows were written as it was read.
    assert phases == [
        "comparing with the current components",
        "rebuilding the component table's indexes and checking its foreign keys",
    ]
    with demo_sessions() as session:
        assert _schema(session) == schema
        stored = session.execute(
            text("SELECT count(*), count(unit_grid_id) FROM component WHERE survey_batch_id = :b"),
            {"b": report.batch_id},
        ).one()
        assert tuple(stored) == (n, report.assigned_to_grid)
        # The rebuilt unique index and foreign keys are enforced.
        code = session.execute(
            text("SELECT code FROM component WHERE survey_batch_id = :b LIMIT 1"), {"b": report.batch_id}
        ).scalar_one()
        for bad in (
            f"INSERT INTO component (code, class_code, geom) SELECT code, class_code, geom FROM component "
            f"WHERE code = '{code}'",
            f"UPDATE component SET owner_department_code = 'no-such-department' WHERE code = '{code}'",
        ):
            with pytest.raises(Exception, match=r"unique|foreign key"), session.begin_nested():
                session.execute(text(bad))
    # A small update of the same table keeps the indexes in place.
    with demo_sessions() as session:
        small = _census(session, 50, tmp_path / "small.gpkg", first_seq=990_001)
    assert not _run(demo_sessions, test_settings, small).indexes_rebuilt


def test_a_census_written_as_read_takes_back_duplicates_and_versions_codes_surveyed_before(
    demo_sessions: sessionmaker[Session],
    test_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small chunks, so the census is written into component over several of them while it is read; its
    # first row's code comes again in its last chunk, and two codes of its third chunk are components
    # surveyed before: the first two chunks are COPYed straight into component, the rest set those aside.
    with demo_sessions() as session:
        schema = _schema(session)
        # With a margin: the rule is met by the share of new codes in the first chunk times the rows.
        n = _rows_to_rebuild(session) + 1_000
        path = _census(session, n, tmp_path / "census.gpkg", first_seq=700_001)
        surveyed_before = session.execute(
            text(
                "SELECT code, id FROM component WHERE valid_to IS NULL AND code LIKE '370102%' "
                "ORDER BY code LIMIT 2"
            )
        ).all()
    census = gpd.read_file(path)
    duplicated = census.loc[0, "标识码"]
    census.loc[n - 1, "标识码"] = duplicated
    census.loc[[25_000, 25_001], "标识码"] = [code for code, _ in surveyed_before]
    census.to_file(path, driver="GPKG")
    copied_straight: list[bool] = []

    def copy_new_components(*args: Any, **kwargs: Any) -> bool:
        copied_straight.append(copy_new(*args, **kwargs))
        return copied_straight[-1]

    copy_new = imports_repo.copy_new_components
    monkeypatch.setattr(imports_repo, "copy_new_components", copy_new_components)
    phases: list[str] = []
    request = ImportRequest(path=path, chunk_rows=10_000)
    report = import_components(
        demo_sessions, request, settings=test_settings, actor=LOCAL_OPERATOR, phase=phases.append
    )
    assert report.indexes_rebuilt
    assert copied_straight == [True, True, False]  # and never tried again after the third chunk
    # The new rows were written as the file was read; the two surveyed before are written after comparing.
    assert phases[1] == "writing 2 components surveyed before"
    assert (report.new, report.changed, report.unchanged, report.rejected) == (n - 4, 2, 0, 2)
    assert sorted((p.source_row, p.field) for p in report.problems) == [(1, "code"), (n, "code")]
    with demo_sessions() as session:
        assert _schema(session) == schema
        stored = session.execute(
            text("SELECT count(*), count(unit_grid_id) FROM component WHERE survey_batch_id = :b"),
            {"b": report.batch_id},
        ).one()
        assert tuple(stored) == (n - 2, report.assigned_to_grid)
        # Rows COPYed straight in, rows inserted after the first surveyed-before code and the new versions
        # all begin at the import's one time, the time its batch was imported.
        assert session.execute(
            text(
                "SELECT array_agg(DISTINCT c.valid_from) = ARRAY[b.imported_at] FROM component c"
                " JOIN survey_batch b ON b.id = c.survey_batch_id WHERE b.id = :b GROUP BY b.imported_at"
            ),
            {"b": report.batch_id},
        ).scalar_one()
        # The earlier row of the duplicated code was written, then taken back out: nothing of it is left.
        assert not session.execute(
            text("SELECT count(*) FROM component WHERE code = :c"), {"c": duplicated}
        ).scalar_one()
        # The components surveyed before got a new version; the old ones end when it begins.
        for code, old_id in surveyed_before:
            versions = session.execute(
                text("SELECT id, valid_from, valid_to FROM component WHERE code = :c ORDER BY valid_from"),
                {"c": code},
            ).all()
            assert len(versions) == 2 and versions[0].id == old_id
            assert versions[0].valid_to == versions[1].valid_from and versions[1].valid_to is None
    # The same file again: its first chunk tells it is no census, so nothing is dropped, nothing written.
    again = _run(demo_sessions, test_settings, path, chunk_rows=10_000)
    assert not again.indexes_rebuilt
    assert (again.new, again.changed, again.unchanged, again.rejected) == (0, 0, n - 2, 2)


def test_readers_that_stay_make_the_import_keep_the_indexes(
    demo_sessions: sessionmaker[Session],
    demo_engine_shared: Engine,
    test_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imports_service, "REBUILD_LOCK_TIMEOUT_MS", 300)
    with demo_sessions() as session:
        path = _census(session, 200, tmp_path / "census.gpkg", first_seq=970_001)
        schema = _schema(session)
    with demo_engine_shared.connect() as reader:
        reader.execute(text("SELECT count(*) FROM component"))  # holds its share lock until it ends
        started = time.monotonic()
        report = _run(demo_sessions, test_settings, path, rebuild_indexes=True)
        waited = time.monotonic() - started
        reader.rollback()
    assert not report.indexes_rebuilt and report.new == 200
    assert waited < 30
    with demo_sessions() as session:
        assert _schema(session) == schema


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("CREATE %INDEX%", id="during-the-rebuild"),
        # The census is written into component while it is read: killed with rows of it in the table.
        pytest.param("%INSERT INTO component%", id="while-writing-as-read"),
    ],
)
def test_a_kill_leaves_rows_and_schema_unchanged(
    demo_url: str, demo_engine_shared: Engine, tmp_path: Path, statement: str
) -> None:
    with demo_engine_shared.connect() as conn:
        path = _census(conn, 200_000, tmp_path / "big.gpkg")
        before = (_schema(conn), tuple(conn.execute(text("SELECT count(*), max(id) FROM component")).one()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATABASE_URL=demo_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "gridsvc.cli", "import", "components", str(path), "--rebuild-indexes"],
        env=env,
        cwd=NEUTRAL_CWD,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seen = False
    try:
        deadline = time.monotonic() + 180
        while not seen and process.poll() is None and time.monotonic() < deadline:
            with demo_engine_shared.connect() as conn:
                seen = bool(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gridsvc'"
                            " AND state = 'active' AND query LIKE :statement"
                        ),
                        {"statement": statement},
                    ).scalar_one()
                )
            time.sleep(0.01)
        if seen:
            process.send_signal(signal.SIGKILL)
    finally:
        _, err = process.communicate(timeout=60)
    assert seen, f"the import never ran {statement}: {err.decode()[-1000:]}"
    deadline = time.monotonic() + 30
    while True:  # the server notices the dropped connection and rolls back
        with demo_engine_shared.connect() as conn:
            after = (
                _schema(conn),
                tuple(conn.execute(text("SELECT count(*), max(id) FROM component")).one()),
            )
        if after == before or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after == before
