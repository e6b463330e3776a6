"""The demo city loads completely, consistently, and all-or-nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.errors import ConflictError
from gridsvc.repositories import bulk
from gridsvc.services import demo
from gridsvc.services.health import check_health
from gridsvc.settings import Settings
from tests.conftest import scratch_database


@pytest.fixture(scope="module")
def demo_engine(database_url: str) -> Iterator[Engine]:
    """A database of its own with the small demo city loaded once (seed 2023)."""
    url = scratch_database(database_url, "gridsvc_demo_test")
    engine = create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def loaded(demo_engine: Engine, test_settings: Settings) -> demo.DemoReport:
    sessions = sessionmaker(bind=demo_engine, expire_on_commit=False)
    return demo.load_demo(sessions, settings=test_settings, scale="small", seed=2023, replace=False)


def _scalar(engine: Engine, sql: str) -> object:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def test_small_demo_is_one_district_with_everything(loaded: demo.DemoReport, demo_engine: Engine) -> None:
    counts = loaded.counts
    assert counts["district"] == 1
    assert _scalar(demo_engine, "SELECT name FROM district") == "历下区"
    for table in (
        "street",
        "community",
        "station",
        "road",
        "residential_building",
        "unit_grid",
        "responsibility_grid",
        "component",
        "case_record",
        "case_event",
        "net_polygon",
    ):
        assert counts[table] > 0, table
    # One station per community, every component and case on a grid of the active plan.
    assert counts["station"] == counts["community"]
    assert _scalar(demo_engine, "SELECT count(*) FROM component WHERE unit_grid_id IS NULL") == 0
    assert _scalar(demo_engine, "SELECT count(*) FROM case_record WHERE responsibility_grid_id IS NULL") == 0
    assert _scalar(demo_engine, "SELECT count(*) FROM grid_plan WHERE status = 'active'") == 1


def test_demo_cases_are_scored_against_the_deadline_of_their_dispatch(
    loaded: demo.DemoReport, demo_engine: Engine
) -> None:
    # Every dispatched case has the deadline evaluation counts; a reworked one works to one no earlier.
    missing = "SELECT count(*) FROM case_record WHERE dispatched_at IS NOT NULL AND on_time_deadline IS NULL"
    assert _scalar(demo_engine, missing) == 0
    later = "SELECT bool_and(handle_deadline >= on_time_deadline) FROM case_record WHERE rework_count > 0"
    assert _scalar(demo_engine, later) is True
    same = "SELECT bool_and(handle_deadline = on_time_deadline) FROM case_record WHERE rework_count = 0"
    assert _scalar(demo_engine, same) is True


def test_demo_is_spatially_consistent(loaded: demo.DemoReport, demo_engine: Engine) -> None:
    # Components lie in their unit grid; unit grids in their community; codes carry the parent's prefix.
    outside = _scalar(
        demo_engine,
        "SELECT count(*) FROM component c JOIN unit_grid u ON u.id = c.unit_grid_id "
        "WHERE NOT ST_Intersects(u.geom, c.geom)",
    )
    assert outside == 0
    # Unit grids lie in their community up to GEOS intersection noise: < 10 cm² on ~10,000 m² cells.
    worst_outside_m2 = _scalar(
        demo_engine,
        "SELECT max(ST_Area(ST_Transform(ST_Difference(u.geom, c.geom), 4548))) "
        "FROM unit_grid u JOIN community c ON c.code = u.community_code",
    )
    assert float(worst_outside_m2) < 1e-3, worst_outside_m2  # type: ignore[arg-type]
    assert _scalar(demo_engine, "SELECT count(*) FROM component WHERE left(code, 6) <> '370102'") == 0
    assert (
        _scalar(
            demo_engine,
            "SELECT count(*) FROM case_event e JOIN case_record c ON c.id = e.case_id "
            "WHERE e.seq = 1 AND e.action <> 'intake'",
        )
        == 0
    )


def test_health_names_the_active_plan(loaded: demo.DemoReport, demo_engine: Engine) -> None:
    healthy, report = check_health(sessionmaker(bind=demo_engine))
    assert healthy
    assert report["active_plan"]["name"] == demo.DEMO_PLAN_NAME
    assert report["active_plan"]["unit_grids"] == loaded.counts["unit_grid"]


def test_second_load_without_replace_is_refused(
    loaded: demo.DemoReport, demo_engine: Engine, test_settings: Settings
) -> None:
    sessions = sessionmaker(bind=demo_engine)
    with pytest.raises(ConflictError, match="--replace"):
        demo.load_demo(sessions, settings=test_settings, scale="small", seed=1, replace=False)
    assert _scalar(demo_engine, "SELECT count(*) FROM component") == loaded.counts["component"]


def test_a_crash_mid_load_leaves_the_database_as_it_was(
    loaded: demo.DemoReport, demo_engine: Engine, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_copy = bulk.copy_frame

    def copy_then_crash(session: Session, table: str, frame: object, **kwargs: object) -> int:
        if table == "case_record":
            raise RuntimeError("simulated crash half-way through the load")
        return real_copy(session, table, frame, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bulk, "copy_frame", copy_then_crash)
    sessions = sessionmaker(bind=demo_engine)
    with pytest.raises(RuntimeError, match="simulated crash"):
        demo.load_demo(sessions, settings=test_settings, scale="small", seed=7, replace=True)
    # The replace (TRUNCATE) and the partial load were rolled back together.
    assert _scalar(demo_engine, "SELECT count(*) FROM component") == loaded.counts["component"]
    assert _scalar(demo_engine, "SELECT count(*) FROM case_record") == loaded.counts["case_record"]
    assert _scalar(demo_engine, "SELECT parameters->>'seed' FROM survey_batch") == "2023"


def test_same_seed_same_city(loaded: demo.DemoReport, demo_engine: Engine, test_settings: Settings) -> None:
    checksum = "SELECT md5(string_agg(code || ST_AsText(geom), ',' ORDER BY code)) FROM unit_grid"
    before = _scalar(demo_engine, checksum)
    sessions = sessionmaker(bind=demo_engine, expire_on_commit=False)
    again = demo.load_demo(sessions, settings=test_settings, scale="small", seed=2023, replace=True)
    assert again.counts == loaded.counts
    assert _scalar(demo_engine, checksum) == before


def test_demo_load_is_audited(loaded: demo.DemoReport, demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        action, details = conn.execute(
            text(
                "SELECT action, details FROM audit_log WHERE entity = 'survey_batch' ORDER BY id DESC LIMIT 1"
            )
        ).one()
    assert action in ("load_demo", "replace_with_demo")
    assert details["counts"]["component"] == loaded.counts["component"]


def test_city_box_holds_every_county(test_settings: Settings) -> None:
    minx, miny, maxx, maxy = demo.read_counties(test_settings.city_code).total_bounds
    box = test_settings.city_bbox
    assert box[0] < minx and box[1] < miny and maxx < box[2] and maxy < box[3]
