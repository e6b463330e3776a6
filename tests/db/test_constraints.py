"""The database itself refuses data that is not sane, whoever writes it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.engine import make_engine
from gridsvc.db.models import Case, Community, Component, District, ResponsibilityGrid, Station, UnitGrid
from gridsvc.services import plan_edits, plans
from gridsvc.settings import Settings
from tests.conftest import scratch_database
from tests.factories import SQUARE, add_admin_chain, add_plan, count, ewkt
from tests.services.test_plan_edits import (
    GIS,
    add_drawable,
    draw_draft,
    layout,
    line_across,
    movable,
    northwest_grid,
)

BOWTIE = "MULTIPOLYGON(((117.0 36.6, 117.1 36.7, 117.1 36.6, 117.0 36.7, 117.0 36.6)))"


def _refused(session: Session, obj: object, constraint: str) -> None:
    with pytest.raises(IntegrityError) as info, session.begin_nested():
        session.add(obj)
        session.flush()
    assert constraint in str(info.value)


def test_admin_codes_and_geometry_are_checked(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        _refused(session, District(code="37010", name="x", geom=ewkt(SQUARE)), "ck_district_code_format")
        _refused(session, District(code="370102", name="x", geom=ewkt(BOWTIE)), "ck_district_geom_valid")
        add_admin_chain(session)
        _refused(
            session,
            Community(code="370103001001", street_code="370102001", name="错", geom=ewkt(SQUARE)),
            "ck_community_code_in_street",
        )


def test_only_one_active_plan(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        add_plan(session, name="一", status="active")
        with pytest.raises(IntegrityError) as info, session.begin_nested():
            add_plan(session, name="二", status="active")
        assert "uq_grid_plan_one_active" in str(info.value)
        add_plan(session, name="三", status="retired")  # retired plans may be many


def test_unit_grid_code_must_be_in_its_community(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        add_admin_chain(session)
        plan = add_plan(session)
        grid = dict(plan_id=plan.id, community_code="370102001001", area_m2=10000, geom=ewkt(SQUARE))
        _refused(session, UnitGrid(code="3701020010010", **grid), "ck_unit_grid_code_format")
        _refused(session, UnitGrid(code="370102001002001", **grid), "ck_unit_grid_code_in_community")
        session.add(UnitGrid(code="370102001001001", **grid))
        session.flush()


def test_component_code_class_status_and_versions(sessions: sessionmaker[Session]) -> None:
    point = ewkt("POINT(117.02 36.665)")
    with sessions() as session:
        _refused(
            session, Component(code="3701020118000001", class_code="0305", geom=point), "code_matches_class"
        )
        _refused(
            session,
            Component(code="3701020118000001", class_code="0118", status="broken", geom=point),
            "ck_component_status_known",
        )
        # 16 or 17 ASCII digits: not 15 (18 is too long for the column), no letter, no full-width digit
        # (migration 0012 checks it without a regular expression).
        for code in ("370102011800001", "37010201180000A1", " 370102011800001", "3701020118００0001"):
            _refused(session, Component(code=code, class_code="0118", geom=point), "ck_component_code_format")
        session.add(Component(code="3701020118000001", class_code="0118", geom=point))
        session.flush()
        # A second current version of the same code is refused; history rows are fine.
        _refused(
            session,
            Component(code="3701020118000001", class_code="0118", geom=point),
            "uq_component_current_code",
        )


def test_station_phone_and_staff_shape(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        add_admin_chain(session)
        base = dict(
            code="s1",
            community_code="370102001001",
            name="甲社区城管工作站",
            geom=ewkt("POINT(117.02 36.665)"),
        )
        _refused(session, Station(phone="call me", **base), "ck_station_phone_format")
        _refused(session, Station(phone="0531-82071556转", **base), "ck_station_phone_format")
        _refused(session, Station(phone="82071556分机1", **base), "ck_station_phone_format")
        session.add(Station(phone="(0531)82071556转8001", staff=[{"name": "王芳", "role": "站长"}], **base))
        session.flush()


# --- grids of one plan do not overlap (migration 0009's triggers) --------------------------------------

COMMUNITY = "370102001001"


def box(x0: float, y0: float, x1: float, y1: float) -> str:
    return ewkt(f"MULTIPOLYGON((({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0})))")


# 0.002° x 0.002° squares inside the admin chain's community (about 180 m x 220 m).
WEST = box(117.010, 36.660, 117.012, 36.662)
EAST = box(117.012, 36.660, 117.014, 36.662)  # shares WEST's east edge
ACROSS = box(117.011, 36.660, 117.013, 36.662)  # half over WEST, half over EAST
# North of WEST, reaching 1e-10° (0.01 mm) into it: a 0.002 m² sliver, under the 0.1 m² tolerance.
SLIVER = box(117.010, 36.662 - 1e-10, 117.012, 36.664)
# North-east of WEST, reaching 1e-8° (1 mm) into EAST: 0.2 m², a real overlap.
SHAVE = box(117.012, 36.662 - 1e-8, 117.014, 36.664)
INSIDE_WEST = box(117.0105, 36.6605, 117.0115, 36.6615)  # within WEST, clear of EAST

GRID_KINDS = ["unit_grid", "responsibility_grid"]


def grid(table: str, plan_id: int, number: int, geom: str) -> UnitGrid | ResponsibilityGrid:
    if table == "unit_grid":
        code = f"{COMMUNITY}{number:03d}"
        return UnitGrid(plan_id=plan_id, code=code, community_code=COMMUNITY, area_m2=40000, geom=geom)
    code = f"{COMMUNITY}R{number:02d}"
    return ResponsibilityGrid(plan_id=plan_id, code=code, community_code=COMMUNITY, geom=geom)


def added(session: Session, row: UnitGrid | ResponsibilityGrid) -> int:
    session.add(row)
    session.flush()
    return int(row.id)


def refused_sql(session: Session, sql: str, params: dict[str, Any], rule: str) -> str:
    """Run ``sql`` in a savepoint; it must be refused by ``rule``. The database's message."""
    with pytest.raises(IntegrityError) as info, session.begin_nested():
        session.execute(text(sql), params)
    assert f'violates overlap rule "{rule}"' in str(info.value)
    return str(info.value.orig)


@pytest.mark.parametrize("table", GRID_KINDS)
def test_grids_of_one_plan_may_touch_but_not_overlap(sessions: sessionmaker[Session], table: str) -> None:
    with sessions() as session:
        add_admin_chain(session)
        plan, other, copy = (
            add_plan(session, name="甲"),
            add_plan(session, name="乙"),
            add_plan(session, name="丙"),
        )
        added(session, grid(table, plan.id, 1, WEST))
        _refused(session, grid(table, plan.id, 2, ACROSS), f"{table}_no_overlap")
        _refused(session, grid(table, plan.id, 2, WEST), f"{table}_no_overlap")  # the same shape twice
        added(session, grid(table, plan.id, 2, EAST))  # neighbours share an edge
        added(session, grid(table, plan.id, 3, SLIVER))  # floating-point crumbs are not overlaps
        _refused(session, grid(table, plan.id, 4, SHAVE), f"{table}_no_overlap")
        # Another plan is another drawing of the same ground: the same shapes, or others across them.
        for number, shape in enumerate((WEST, EAST, SLIVER), start=1):
            added(session, grid(table, copy.id, number, shape))
        added(session, grid(table, other.id, 1, ACROSS))
        assert count(session, table) == 7


@pytest.mark.parametrize("table", GRID_KINDS)
def test_one_statement_of_new_grids_is_checked_pair_by_pair(
    sessions: sessionmaker[Session], table: str
) -> None:
    """A bulk write (a draw COPYs a whole city) is checked once per statement, new grids against each other
    and against the grids already there; the message names the first pair."""
    prefix = "" if table == "unit_grid" else "R"
    insert = (
        f"INSERT INTO {table} (plan_id, code, community_code, "
        f"{'area_m2, ' if table == 'unit_grid' else ''}geom) "
        "SELECT :plan, :c || n, :c, "
        f"{'40000, ' if table == 'unit_grid' else ''}ST_GeomFromEWKT(g) "
        "FROM unnest(CAST(:numbers AS text[]), CAST(:shapes AS text[])) AS s(n, g)"
    )
    with sessions() as session:
        add_admin_chain(session)
        plan = add_plan(session)
        pair = {"plan": plan.id, "c": COMMUNITY, "numbers": [f"{prefix}01", f"{prefix}02"]}
        message = refused_sql(session, insert, {**pair, "shapes": [WEST, ACROSS]}, f"{table}_no_overlap")
        assert f"{COMMUNITY}{prefix}01 and {COMMUNITY}{prefix}02 of plan {plan.id} overlap by" in message
        # Listed the other way round: the pair is still found (each pair of new grids is related once).
        refused_sql(session, insert, {**pair, "shapes": [ACROSS, WEST]}, f"{table}_no_overlap")
        session.execute(text(insert), {**pair, "shapes": [WEST, EAST]})
        later = {"plan": plan.id, "c": COMMUNITY, "numbers": [f"{prefix}03", f"{prefix}04"]}
        refused_sql(session, insert, {**later, "shapes": [SLIVER, ACROSS]}, f"{table}_no_overlap")
        session.execute(text(insert), {**later, "shapes": [SLIVER, box(117.012, 36.662, 117.014, 36.664)]})
        assert count(session, table) == 4


def test_new_grids_with_ids_out_of_order_are_still_checked_against_the_old(
    sessions: sessionmaker[Session],
) -> None:
    """Each pair of new grids is related once, from its smaller id, when the new ids are one unbroken run.
    Here an old grid's id lies between two new ones: the run is broken, and every pair is related."""
    insert = (
        "INSERT INTO unit_grid (id, plan_id, code, community_code, area_m2, geom)"
        " SELECT i, :plan, :c || n, :c, 40000, ST_GeomFromEWKT(g) FROM unnest(CAST(:ids AS integer[]),"
        " CAST(:numbers AS text[]), CAST(:shapes AS text[])) AS s(i, n, g)"
    )
    with sessions() as session:
        add_admin_chain(session)
        plan = add_plan(session)
        values = {"plan": plan.id, "c": COMMUNITY}
        session.execute(text(insert), {**values, "ids": [900_002], "numbers": ["002"], "shapes": [WEST]})
        message = refused_sql(
            session,
            insert,
            {**values, "ids": [900_001, 900_003], "numbers": ["001", "003"], "shapes": [EAST, INSIDE_WEST]},
            "unit_grid_no_overlap",
        )
        assert f"{COMMUNITY}003 and {COMMUNITY}002 of plan {plan.id}" in message


@pytest.mark.parametrize("table", GRID_KINDS)
def test_a_new_shape_or_plan_is_checked_and_other_changes_cost_nothing(
    sessions: sessionmaker[Session], table: str
) -> None:
    with sessions() as session:
        add_admin_chain(session)
        plan, other = add_plan(session, name="甲"), add_plan(session, name="乙")
        west, east = (
            added(session, grid(table, plan.id, 1, WEST)),
            added(session, grid(table, plan.id, 2, EAST)),
        )
        across = added(session, grid(table, other.id, 3, ACROSS))
        update = f"UPDATE {table} SET {{}} WHERE id = :id"
        refused_sql(
            session,
            update.format("geom = ST_GeomFromEWKT(:g)"),
            {"id": east, "g": ACROSS},
            f"{table}_no_overlap",
        )
        refused_sql(
            session, update.format("plan_id = :p"), {"id": across, "p": plan.id}, f"{table}_no_overlap"
        )
        session.execute(text(update.format("geom = ST_GeomFromEWKT(:g)")), {"id": east, "g": SLIVER})

        # Overlapping rows written behind the triggers' back (as before migration 0009) show that other
        # changes do not run the check at all: only a new shape or a new plan does.
        session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_overlap_insert"))
        session.add(grid(table, plan.id, 4, ACROSS))
        session.flush()
        session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_no_overlap_insert"))
        other_columns = "area_m2 = 1" if table == "unit_grid" else "name = '王芳的网格', worker_name = '王芳'"
        session.execute(text(update.format(f"{other_columns}, geom = geom")), {"id": west})
        session.execute(
            text("UPDATE grid_plan SET status = 'active', effective_from = now() WHERE id = :p"),
            {"p": plan.id},
        )
        refused_sql(session, update.format("geom = ST_Reverse(geom)"), {"id": west}, f"{table}_no_overlap")


def test_two_writers_of_one_plan_cannot_each_add_half_an_overlap(database_url: str) -> None:
    """The check takes the plan's row lock first: the second writer waits for the first to commit, then
    sees its grid. Without the lock both would check before either committed, and both would pass."""
    url = scratch_database(database_url, "gridsvc_integrity_race")
    engine = make_engine(url)
    first, second = Session(engine), Session(engine)
    outcome: list[BaseException | None] = []

    def add_across() -> None:
        try:
            with second.begin():
                second.add(grid("unit_grid", plan_id, 2, ACROSS))
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    try:
        with Session(engine) as session, session.begin():
            add_admin_chain(session)
            plan_id = add_plan(session).id
        first.begin()
        first.add(grid("unit_grid", plan_id, 1, WEST))
        first.flush()
        writer = threading.Thread(target=add_across)
        writer.start()
        deadline = time.monotonic() + 10
        while not outcome and not _waits_for_a_lock(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not outcome, "the second writer did not wait for the first"
        first.commit()
        writer.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError)
        assert 'violates overlap rule "unit_grid_no_overlap"' in str(outcome[0])
    finally:
        first.close()
        second.close()
        engine.dispose()
        _drop_database(database_url, "gridsvc_integrity_race")


def _drop_database(database_url: str, name: str) -> None:
    admin = create_engine(make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def _waits_for_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def test_hand_edits_through_the_service_never_overlap_on_the_way(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    """Split, merge and move reshape several grids of a plan; they write them in an order that never
    overlaps (services/plan_edits.py), so the per-statement check lets every one of them through."""
    with sessions.begin() as session:
        add_drawable(session)
    draft = draw_draft(sessions, test_settings)
    grid_code = northwest_grid(sessions, draft)
    line, _ = line_across(sessions, draft, grid_code)
    split = plan_edits.split_grid(sessions, test_settings, draft, grid_code, line, version=1, actor=GIS)
    view = layout(sessions, draft)
    highest = view.grids()[-1]
    merge = plan_edits.merge_grids(
        sessions, test_settings, draft, highest, min(view.neighbours(highest)), version=2, actor=GIS
    )
    unit, _source, target = movable(layout(sessions, draft))
    move = plan_edits.move_unit_grids(sessions, test_settings, draft, [unit], target, version=3, actor=GIS)
    assert (split.version, merge.version, move.version) == (2, 3, 4)
    assert plans.check_plan(sessions, draft) == []


# --- components have a class; cases carry their routing ------------------------------------------------


def test_a_component_needs_a_known_class(sessions: sessionmaker[Session]) -> None:
    point = ewkt("POINT(117.02 36.665)")
    with sessions() as session:
        _refused(session, Component(code="3701020118000001", geom=point), 'null value in column "class_code"')
        _refused(
            session,
            Component(code="3701020999000001", class_code="0999", geom=point),
            "fk_component_class_code_component_class",
        )


def test_a_case_needs_a_routing_record(sessions: sessionmaker[Session]) -> None:
    def case(**changes: Any) -> Case:
        values: dict[str, Any] = {
            "routing": {"owner": {"how": "inside"}},
            "district_code": "370102",
            "handling_level": "community",
            **changes,
        }
        return Case(
            request_code=f"T{next(numbers)}",
            kind="event",
            event_class_code="0101",
            channel="patrol",
            geom=ewkt("POINT(117.02 36.665)"),
            **values,
        )

    numbers = iter(range(100))
    with sessions() as session:
        add_admin_chain(session)
        for routing in ({}, {"note": "no decision in it"}, ["owner"]):
            _refused(session, case(routing=routing), "ck_case_record_routing_recorded")
        _refused(session, case(district_code=None), "ck_case_record_routed_to_someone")
        _refused(session, case(handling_level=None), "ck_case_record_routed_to_someone")
        session.add_all(
            [
                case(),
                case(district_code=None, department_code="sanitation"),  # a department answers for it
                case(routing={"source": "demo"}),  # loaded with the routing its source made
            ]
        )
        session.flush()
