"""Migrations: up, down, up again, and no drift between the models and the migrations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from geoalchemy2 import alembic_helpers
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from gridsvc.db import migrate
from gridsvc.db.embedded import EmbeddedCluster
from gridsvc.db.models import Base


@pytest.fixture
def scratch_url(cluster: EmbeddedCluster, database_url: str) -> Iterator[str]:
    """A separate, empty database on the test cluster (the main test database stays at head)."""
    admin = create_engine(make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS gridsvc_migration_check"))
        conn.execute(text("CREATE DATABASE gridsvc_migration_check"))
    url = make_url(database_url).set(database="gridsvc_migration_check").render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS gridsvc_migration_check WITH (FORCE)"))
    admin.dispose()


def _include(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    if type_ == "table" and reflected and compare_to is None:
        return False  # PostGIS's own tables
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)


def _drift(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={"include_object": _include, "compare_type": True, "target_metadata": Base.metadata},
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"spatial_ref_sys"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_without_drift(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    assert _drift(scratch_url) == []
    expected = {t.name for t in Base.metadata.sorted_tables} | {"gridsvc_alembic_version"}
    assert _tables(scratch_url) == expected

    migrate.downgrade(scratch_url, "base")
    assert _tables(scratch_url) <= {"gridsvc_alembic_version"}

    migrate.upgrade(scratch_url)
    assert _drift(scratch_url) == []
    engine = create_engine(scratch_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM component_class WHERE code = '0118'")).scalar() == 1
        assert conn.execute(text("SELECT extname FROM pg_extension WHERE extname = 'postgis'")).scalar()
    engine.dispose()


def test_revision_one_creates_postgis(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0001_postgis")
    engine = create_engine(scratch_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT postgis_lib_version()")).scalar()
    engine.dispose()


def test_database_is_at_head(database_url: str) -> None:
    engine = create_engine(database_url)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_0014_backfills_the_on_time_deadline_from_the_history(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0013_station_phone_extension")
    engine = create_engine(scratch_url)

    def add_case(code: str, handle_deadline: str | None, events: list[tuple[str, str, str]]) -> None:
        with engine.begin() as conn:
            case_id = conn.execute(
                text(
                    "INSERT INTO case_record (request_code, kind, event_class_code, status, channel, "
                    "department_code, handling_level, routing, reported_at, dispatched_at, handle_deadline, "
                    "geom) VALUES (:code, 'event', '0403', 'dispatched', 'app', 'traffic', 'street', "
                    """'{"source": "test"}', '2026-10-12 08:40+08', """
                    ":dispatched, :due, ST_SetSRID(ST_MakePoint(117.0, 36.68), 4490)) RETURNING id"
                ),
                {
                    "code": code,
                    "dispatched": "2026-10-12 09:00+08" if events else None,
                    "due": handle_deadline,
                },
            ).scalar_one()
            for seq, (action, at, details) in enumerate(events, start=1):
                conn.execute(
                    text(
                        "INSERT INTO case_event (case_id, seq, at, action, to_status, details) "
                        "VALUES (:id, :seq, :at, :action, 'dispatched', CAST(:details AS jsonb))"
                    ),
                    {"id": case_id, "seq": seq, "at": at, "action": action, "details": details},
                )

    dispatch = ("dispatch", "2026-10-12 09:00+08", '{"deadline": "2026-10-12T10:00:00+08:00"}')
    # Dispatched through the API, then escalated: the deadline the dispatch event wrote.
    add_case(
        "JN202610120000001",
        "2026-10-13 10:00+08",
        [dispatch, ("escalate", "2026-10-13 09:00+08", '{"overdue_since": "2026-10-12T10:00:00+08:00"}')],
    )
    # Parked 30 minutes and back into handling (the old unpark gave a fresh limit): the parked time is added.
    add_case(
        "JN202610120000002",
        "2026-10-12 11:40+08",
        [
            dispatch,
            ("park", "2026-10-12 09:10+08", '{"parked_from": "dispatched"}'),
            ("unpark", "2026-10-12 09:40+08", '{"back_to": "dispatched"}'),
        ],
    )
    # Loaded by the demo (no event details), escalated by the job: the deadline the first escalation replaced.
    add_case(
        "JN202610120000003",
        "2026-10-14 10:00+08",
        [
            ("dispatch", "2026-10-12 09:00+08", "{}"),
            ("escalate", "2026-10-13 09:00+08", '{"overdue_since": "2026-10-12T10:00:00+08:00"}'),
            ("escalate", "2026-10-14 09:00+08", '{"overdue_since": "2026-10-13T10:00:00+08:00"}'),
        ],
    )
    # Loaded by the demo, never escalated: its handling deadline.
    add_case("JN202610120000004", "2026-10-12 10:00+08", [("dispatch", "2026-10-12 09:00+08", "{}")])
    add_case("JN202610120000005", None, [])  # not dispatched

    migrate.upgrade(scratch_url, "0014_on_time_deadline")
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                text(
                    "SELECT request_code, to_char(on_time_deadline AT TIME ZONE 'Asia/Shanghai', "
                    "'YYYY-MM-DD HH24:MI') FROM case_record"
                )
            ).all()
        )
    assert rows == {
        "JN202610120000001": "2026-10-12 10:00",
        "JN202610120000002": "2026-10-12 10:30",
        "JN202610120000003": "2026-10-12 10:00",
        "JN202610120000004": "2026-10-12 10:00",
        "JN202610120000005": None,
    }
    migrate.downgrade(scratch_url, "0013_station_phone_extension")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM case_record")).scalar() == 5
        columns = {c["name"] for c in inspect(conn).get_columns("case_record")}
    assert "on_time_deadline" not in columns and "handle_deadline" in columns
    engine.dispose()


def test_0015_keeps_each_problem_row_and_then_its_field_order(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0014_on_time_deadline")
    engine = create_engine(scratch_url)
    insert = text(
        "INSERT INTO survey_batch (layer, source_file, checksum_sha256, imported_by) "
        "VALUES ('components', 'a.gpkg', repeat('0', 64), 'test') RETURNING id"
    )
    problem = text(
        "INSERT INTO import_problem (survey_batch_id, source_row, field, value, reason, action, attributes) "
        "VALUES (:b, 1, 'code', NULL, 'code is missing', 'rejected', "
        """'{"施工单位名称": "甲", "灯型": "LED"}')"""
    )
    with engine.begin() as conn:
        conn.execute(problem, {"b": conn.execute(insert).scalar_one()})
    values = text("SELECT attributes::text FROM import_problem")
    with engine.connect() as conn:
        assert conn.execute(values).scalar_one() == '{"灯型": "LED", "施工单位名称": "甲"}'  # jsonb's order
    migrate.upgrade(scratch_url, "0015_import_problem_json")
    with engine.begin() as conn:
        assert conn.execute(values).scalar_one() == '{"灯型": "LED", "施工单位名称": "甲"}'  # kept as it was
        conn.execute(text("DELETE FROM import_problem"))
        conn.execute(problem, {"b": conn.execute(text("SELECT id FROM survey_batch")).scalar_one()})
        assert conn.execute(values).scalar_one() == '{"施工单位名称": "甲", "灯型": "LED"}'  # as written
    migrate.downgrade(scratch_url, "0014_on_time_deadline")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM import_problem")).scalar_one() == 1
    engine.dispose()
