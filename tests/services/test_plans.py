"""Plan activation: the rules checked, one transaction, components and open cases moved, one at a time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.models import ResponsibilityGrid, Station, UnitGrid
from gridsvc.errors import ConflictError, InvalidInputError, PermissionDeniedError
from gridsvc.repositories.plans import ACTIVATION_LOCK
from gridsvc.services import cases, locate, plans
from gridsvc.services.access import Principal
from gridsvc.settings import Settings
from tests.factories import GRID_ORIGIN, LAMP, add_plan, ewkt

GIS = Principal(name="规划员", role="gis_staff")
X0, Y0 = GRID_ORIGIN


def _box(x0: float, y0: float, x1: float, y1: float) -> str:
    return ewkt(f"MULTIPOLYGON((({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0})))")


def add_draft(
    session: Session,
    station_id: int,
    *,
    halves: list[tuple[float, float, float, float]],
    stations: list[int] | None = None,
) -> int:
    """A draft plan: one responsibility grid and one unit grid per box of the community, each answered by
    ``station_id``, or by its own of ``stations``."""
    plan = add_plan(session, name="新方案")
    for number, (x0, y0, x1, y1) in enumerate(halves, start=1):
        owner = ResponsibilityGrid(
            plan_id=plan.id,
            code=f"370102001001R1{number}",
            community_code="370102001001",
            station_id=stations[number - 1] if stations else station_id,
            worker_name=f"新网格员{number}",
            geom=_box(x0, y0, x1, y1),
        )
        session.add(owner)
        session.flush()
        session.add(
            UnitGrid(
                plan_id=plan.id,
                code=f"37010200100110{number}",
                community_code="370102001001",
                responsibility_grid_id=owner.id,
                area_m2=1,
                geom=_box(x0, y0, x1, y1),
            )
        )
    session.flush()
    return int(plan.id)


WEST_EAST = [(X0, Y0, X0 + 0.005, Y0 + 0.006), (X0 + 0.005, Y0, X0 + 0.010, Y0 + 0.006)]


@pytest.fixture
def draft(case_city: dict[str, Any], sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        station_id = session.execute(text("SELECT id FROM station")).scalar_one()
        return add_draft(session, station_id, halves=WEST_EAST)


def test_activation_moves_components_and_open_cases_and_keeps_the_old_plan_queryable(
    case_city: dict[str, Any], draft: int, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    reporter = Principal(name="app", role="reporter")
    code = cases.intake_case(
        sessions,
        test_settings,
        cases.CaseIntake(kind="event", class_code="0101", x=LAMP[0], y=LAMP[1], crs="cgcs2000"),
        actor=reporter,
    ).case["request_code"]
    assert plans.check_plan(sessions, draft) == []
    done = plans.activate_plan(sessions, draft, dt.date(2026, 12, 1), settings=test_settings, actor=GIS)
    assert done.retired_plan_id == case_city["plan_id"]
    assert done.components_regridded == 2 and done.open_cases_regridded >= 1
    with sessions() as session:
        statuses = dict(session.execute(text("SELECT id, status FROM grid_plan")).all())
        lamp_grid = session.execute(
            text(
                "SELECT u.code FROM component c JOIN unit_grid u ON u.id = c.unit_grid_id WHERE c.code = :c"
            ),
            {"c": "3701020118000001"},
        ).scalar_one()
        old_end = session.execute(
            text("SELECT effective_to FROM grid_plan WHERE id = :id"), {"id": case_city["plan_id"]}
        ).scalar_one()
    assert statuses[draft] == "active" and statuses[case_city["plan_id"]] == "retired"
    assert old_end == dt.date(2026, 12, 1)
    assert lamp_grid == "370102001001101"
    assert cases.get_case(sessions, code, personal=False)["routing"]  # history intact
    view = cases.get_case(sessions, code, personal=False)
    with sessions() as session:
        case_grid = session.execute(
            text(
                "SELECT u.code FROM case_record c JOIN unit_grid u ON u.id = c.unit_grid_id"
                " WHERE request_code = :c"
            ),
            {"c": view["request_code"]},
        ).scalar_one()
    assert case_grid == "370102001001101"
    now = locate.locate_point(sessions, test_settings, LAMP[0], LAMP[1], crs="cgcs2000")
    before = locate.locate_point(
        sessions, test_settings, LAMP[0], LAMP[1], crs="cgcs2000", at=dt.date(2026, 11, 1)
    )
    assert now.row and now.row["unit_grid_code"] == "370102001001101"
    assert before.row and before.row["unit_grid_code"] == "370102001001003"
    with pytest.raises(ConflictError, match="active"):
        plans.activate_plan(sessions, draft, dt.date(2027, 1, 1), settings=test_settings, actor=GIS)


def test_an_open_case_that_activation_gives_another_owner_follows_it_with_a_reassign_event(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    """The new plan gives the case's place a grid answered by another station: the case's grids, station
    and routing follow, and its history says why and keeps what it replaced, as a reassignment does."""
    with sessions.begin() as session:
        first = session.execute(text("SELECT id FROM station")).scalar_one()
        second = Station(
            code="S370102001001B",
            community_code="370102001001",
            name="甲社区第二工作站",
            phone="0531-86005678",
            geom=ewkt(f"POINT({X0 + 0.002} {Y0 + 0.002})"),
        )
        session.add(second)
        session.flush()
        draft = add_draft(session, first, halves=WEST_EAST, stations=[second.id, first])
    code = cases.intake_case(
        sessions,
        test_settings,
        cases.CaseIntake(kind="event", class_code="0101", x=LAMP[0], y=LAMP[1], crs="cgcs2000"),
        actor=Principal(name="app", role="reporter"),
    ).case["request_code"]
    before = cases.get_case(sessions, code, personal=False)
    assert before["station_id"] == first and before["routing"]["owner"]["unit_grid_code"] == "370102001001003"

    done = plans.activate_plan(sessions, draft, dt.date(2026, 12, 1), settings=test_settings, actor=GIS)
    assert done.open_cases_reassigned == 1 and done.to_dict()["open_cases_reassigned"] == 1

    after = cases.get_case(sessions, code, personal=False)
    assert after["station_id"] == second.id and after["station"]["name"] == "甲社区第二工作站"
    assert after["community_code"] == "370102001001" and after["status"] == before["status"]
    owner = after["routing"]["owner"]
    assert (owner["unit_grid_code"], owner["responsibility_grid_code"], owner["plan_id"]) == (
        "370102001001101",
        "370102001001R11",
        draft,
    )
    assert owner["regridded"] == "plan " + str(draft) + " in force from 2026-12-01: owned by its grids"
    event = after["history"][-1]
    assert (event["action"], event["actor"], event["from_status"], event["to_status"]) == (
        "reassign",
        GIS.name,
        before["status"],
        before["status"],
    )
    with sessions() as session:
        details = session.execute(
            text(
                "SELECT e.details FROM case_event e JOIN case_record c ON c.id = e.case_id"
                " WHERE c.request_code = :c AND e.seq = :seq"
            ),
            {"c": code, "seq": event["seq"]},
        ).scalar_one()
    assert details["before"]["station_id"] == first
    assert details["previous_routing"]["owner"]["unit_grid_code"] == "370102001001003"
    assert len(after["history"]) == len(before["history"]) + 1

    # The same grids drawn again: nothing changes owner, so no event, even for a case whose routing never
    # named its unit grid (the demo's cases, opened before routing did): the code of the grid it is in
    # counts, not the routing's (a tester saw 37 "reassigned" where 18 changed owner).
    with sessions.begin() as session:
        session.execute(
            text(
                "UPDATE case_record SET routing = routing #- '{owner,unit_grid_code}' WHERE request_code = :c"
            ),
            {"c": code},
        )
        again = add_draft(session, first, halves=WEST_EAST, stations=[second.id, first])
    redone = plans.activate_plan(sessions, again, dt.date(2026, 12, 2), settings=test_settings, actor=GIS)
    assert redone.open_cases_reassigned == 0
    assert len(cases.get_case(sessions, code, personal=False)["history"]) == len(after["history"])


def test_a_plan_that_breaks_the_rules_cannot_be_activated(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    with sessions.begin() as session:
        station_id = session.execute(text("SELECT id FROM station")).scalar_one()
        # The database refuses overlapping grids since migration 0009, but a plan stored before it may hold
        # some: written here behind the triggers' back (the test's transaction is rolled back).
        triggers = [(t, f"{t}_no_overlap_insert") for t in ("unit_grid", "responsibility_grid")]
        for table, trigger in triggers:
            session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}"))
        overlapping = add_draft(
            session,
            station_id,
            halves=[(X0, Y0, X0 + 0.006, Y0 + 0.006), (X0 + 0.004, Y0, X0 + 0.010, Y0 + 0.006)],
        )
        for table, trigger in triggers:
            session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}"))
        gap = add_draft(session, station_id, halves=[(X0, Y0, X0 + 0.005, Y0 + 0.006)])
    rules = {b["rule"] for b in plans.check_plan(sessions, overlapping)}
    assert "overlap" in rules
    with pytest.raises(InvalidInputError, match="cannot be activated") as caught:
        plans.activate_plan(sessions, overlapping, dt.date(2026, 12, 1), settings=test_settings, actor=GIS)
    assert any(p.field == "overlap" for p in caught.value.problems)
    # Each break names its grid, as `plan check` does: ten "responsibility grid is 2 pieces" said nothing.
    breaks = plans.check_plan(sessions, overlapping)
    assert [p.message for p in caught.value.problems] == [f"{b['code']}: {b['problem']}" for b in breaks]
    assert {b["rule"] for b in plans.check_plan(sessions, gap)} == {"coverage"}
    with sessions() as session:
        assert (
            session.execute(text("SELECT count(*) FROM grid_plan WHERE status = 'active'")).scalar_one() == 1
        )
    with pytest.raises(PermissionDeniedError):
        plans.activate_plan(
            sessions,
            gap,
            dt.date(2026, 12, 1),
            settings=test_settings,
            actor=Principal(name="d", role="dispatcher"),
        )
    with pytest.raises(InvalidInputError, match="must start after"):
        with sessions.begin() as session:
            station_id = session.execute(text("SELECT id FROM station")).scalar_one()
            fine = add_draft(session, station_id, halves=WEST_EAST)
        plans.activate_plan(sessions, fine, dt.date(2025, 1, 1), settings=test_settings, actor=GIS)


def test_two_activations_at_once_one_gets_a_conflict(
    draft: int, engine: Engine, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Another gis_staff member's activation holds the lock in its own transaction right now.
    with engine.connect() as other, other.begin():
        other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ACTIVATION_LOCK})
        with pytest.raises(ConflictError, match="another plan is being activated"):
            plans.activate_plan(sessions, draft, dt.date(2026, 12, 1), settings=test_settings, actor=GIS)
    with sessions() as session:
        assert (
            session.execute(text("SELECT status FROM grid_plan WHERE id = :id"), {"id": draft}).scalar_one()
            == "draft"
        )


def test_activation_over_http(
    draft: int, test_settings: Settings, database_url: str, sessions: sessionmaker[Session]
) -> None:
    from fastapi.testclient import TestClient

    from gridsvc.api.app import create_app
    from gridsvc.services.access import LOCAL_OPERATOR, create_key

    staff = {"X-API-Key": create_key(sessions, name="规划", role="gis_staff", actor=LOCAL_OPERATOR).secret}
    dispatcher = {
        "X-API-Key": create_key(sessions, name="调度", role="dispatcher", actor=LOCAL_OPERATOR).secret
    }
    with TestClient(create_app(test_settings, database_url, sessions=sessions)) as client:
        assert client.get(f"/v1/plans/{draft}/checks", headers=staff).json() == {
            "plan_id": draft,
            "breaks": [],
        }
        body = {"effective_from": "2026-12-01"}
        assert client.post(f"/v1/plans/{draft}/activate", json=body, headers=dispatcher).status_code == 403
        done = client.post(f"/v1/plans/{draft}/activate", json=body, headers=staff)
        assert done.status_code == 200 and done.json()["plan_id"] == draft
        assert client.post(f"/v1/plans/{draft}/activate", json=body, headers=staff).status_code == 409
        assert client.post("/v1/plans/999999/activate", json=body, headers=staff).status_code == 404
        bad = client.post(f"/v1/plans/{draft}/activate", json={"effective_from": "soon"}, headers=staff)
        assert bad.status_code == 422
