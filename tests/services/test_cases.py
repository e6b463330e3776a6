"""Cases: routing on intake, duplicates, every step of the loop and its roles, deadlines, escalation."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from gridsvc.services import cases, stats
from gridsvc.services.access import Principal
from gridsvc.settings import Settings
from tests.factories import LAMP

BEIJING = ZoneInfo("Asia/Shanghai")
DISPATCHER = Principal(name="调度员", role="dispatcher")
FIELD = Principal(name="网格员", role="field")
REPORTER = Principal(name="市民App", role="reporter")


def _intake(
    sessions: sessionmaker[Session], settings: Settings, actor: Principal = REPORTER, **values: Any
) -> cases.IntakeResult:
    defaults: dict[str, Any] = {
        "kind": "component",
        "class_code": "0118",
        "x": LAMP[0] + 0.0002,
        "y": LAMP[1],
        "crs": "cgcs2000",
    }
    return cases.intake_case(sessions, settings, cases.CaseIntake(**{**defaults, **values}), actor=actor)


def _step(
    sessions: sessionmaker[Session],
    settings: Settings,
    code: str,
    action: str,
    actor: Principal = DISPATCHER,
    **values: Any,
) -> dict[str, Any]:
    return cases.transition(
        sessions, settings, code, cases.TransitionRequest(action=action, **values), actor=actor
    )


def test_a_lamp_case_names_the_lamp_and_its_owners(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    result = _intake(
        sessions, test_settings, description="路灯不亮", reporter={"name": "李明", "phone": "13800000000"}
    )
    case = result.case
    assert result.created and result.duplicate_of is None
    assert case["status"] == "reported" and case["request_code"].startswith("JN")
    routing = case["routing"]
    assert routing["component"]["code"] == "3701020118000001"
    assert 15 < routing["component"]["distance_m"] < 20
    assert routing["owner"]["unit_grid_code"] == "370102001001003"
    assert routing["owner"]["located_at"] == "component"
    assert case["department_code"] == "power"  # the lamp's maintainer beats the class default (lighting)
    assert "maintainer" in routing["department"]["reason"]
    assert case["handling_level"] == "district"  # time-limit rule for class 0118
    assert case["community_code"] == "370102001001" and case["district_code"] == "370102"
    assert case["needs_confirmation"] is False
    assert case["reporter"] == {"name": "李明", "phone": "13800000000"}
    assert [e["action"] for e in case["history"]] == ["intake"]
    # The register deadline is 30 working minutes after the report.
    assert routing["deadlines"]["register"]["limit"] == "30 working minutes"


def test_no_lamp_near_means_no_component_and_the_class_default(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    result = _intake(sessions, test_settings, x=117.0010, y=36.6835)  # ~280 m north of both lamps
    assert result.case["routing"]["component"]["code"] is None
    assert "within 50 m" in result.case["routing"]["component"]["reason"]
    assert result.case["department_code"] == "lighting"


def test_event_case_routes_by_class(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    result = _intake(sessions, test_settings, kind="event", class_code="0403", x=117.001, y=36.681)
    assert result.case["department_code"] == "traffic"
    assert result.case["handling_level"] == "community"
    assert "component" not in result.case["routing"]


def test_near_boundary_and_fallback_cases_need_confirmation(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    near = _intake(sessions, test_settings, kind="event", class_code="0101", x=117.0019, y=36.681)
    assert near.case["needs_confirmation"] and near.case["routing"]["owner"]["near_boundary"]
    far = _intake(sessions, test_settings, kind="event", class_code="0102", x=117.008, y=36.685)
    assert far.case["needs_confirmation"] and far.case["routing"]["owner"]["how"] == "territory"
    assert far.case["district_code"] == "370102" and far.case["unit_grid_id"] is None
    with pytest.raises(InvalidInputError, match="outside"):
        _intake(sessions, test_settings, kind="event", class_code="0102", x=117.05, y=36.70)


def test_a_second_report_nearby_is_linked_as_a_duplicate(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    first = _intake(sessions, test_settings, kind="event", class_code="0101", x=117.001, y=36.681)
    second = _intake(sessions, test_settings, kind="event", class_code="0101", x=117.0012, y=36.6811)
    assert second.duplicate_of == first.case["request_code"]
    assert second.case["needs_confirmation"]
    assert [e["action"] for e in second.case["history"]] == ["intake", "link_duplicate"]
    other_class = _intake(sessions, test_settings, kind="event", class_code="0102", x=117.0012, y=36.6811)
    assert other_class.duplicate_of is None
    far_away = _intake(sessions, test_settings, kind="event", class_code="0101", x=117.0035, y=36.6835)
    assert far_away.duplicate_of is None


def test_the_same_channel_order_is_not_taken_twice(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    order = {"channel": "hotline_12345", "external_ref": "GD20261123001", "description": "路灯不亮"}
    first = _intake(sessions, test_settings, actor=DISPATCHER, **order)
    again = _intake(sessions, test_settings, actor=DISPATCHER, **order)
    assert not again.created and again.case["request_code"] == first.case["request_code"]
    # Another caller, or other content, under an order number already taken: a conflict, not the case.
    with pytest.raises(ConflictError, match="another caller") as other_caller:
        _intake(
            sessions,
            test_settings,
            actor=Principal(name="另一调度员", role="dispatcher", api_key_id=7),
            **order,
        )
    assert other_caller.value.problems[0].field == "external_ref"
    with pytest.raises(ConflictError, match="other content"):
        _intake(sessions, test_settings, actor=DISPATCHER, **{**order, "description": "路灯倒了"})


def test_only_the_hotline_import_and_dispatchers_report_as_12345(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    for actor in (REPORTER, FIELD):
        with pytest.raises(PermissionDeniedError, match="hotline_12345") as refused:
            _intake(
                sessions, test_settings, actor=actor, channel="hotline_12345", external_ref="GD20261124009"
            )
        assert refused.value.problems[0].field == "channel"
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM case_record")).scalar_one() == 0


def test_bad_intake_is_refused_and_nothing_is_stored(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    with sessions() as session:
        before = session.execute(text("SELECT count(*) FROM case_record")).scalar_one()
    for values, match in (
        ({"class_code": "9999"}, "unknown component class"),
        ({"kind": "event", "class_code": "0118x"}, "unknown event class"),
        ({"channel": "fax"}, "unknown channel"),
        ({"crs": "mars"}, "unknown CRS"),
        ({"component_code": "3701020118999999"}, "no current component"),
        ({"reporter": {"password": "x"}}, "unknown contact"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            _intake(sessions, test_settings, **values)
    with pytest.raises(PermissionDeniedError):
        cases.intake_case(
            sessions,
            test_settings,
            cases.CaseIntake(kind="event", class_code="0101", x=117.001, y=36.681),
            actor=Principal(name="gis", role="gis_staff"),
        )
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM case_record")).scalar_one() == before


def test_the_whole_loop_with_rework(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    code = _intake(sessions, test_settings).case["request_code"]
    assert _step(sessions, test_settings, code, "register")["status"] == "registered"
    dispatched = _step(sessions, test_settings, code, "dispatch", note="派照明处")
    assert dispatched["status"] == "dispatched" and dispatched["handle_deadline"] is not None
    assert _step(sessions, test_settings, code, "handle", actor=FIELD)["status"] == "in_progress"
    assert (
        _step(sessions, test_settings, code, "report_back", actor=FIELD, note="已修复")["status"]
        == "reported_back"
    )
    reworked = _step(sessions, test_settings, code, "rework", note="现场核查仍不亮")
    assert reworked["status"] == "dispatched" and reworked["rework_count"] == 1
    _step(sessions, test_settings, code, "report_back", actor=FIELD, note="更换灯泡")
    assert _step(sessions, test_settings, code, "verify")["status"] == "verified"
    closed = _step(sessions, test_settings, code, "close")
    assert closed["status"] == "closed" and closed["open311_status"] == "closed" and closed["closed_at"]
    actions = [e["action"] for e in closed["history"]]
    assert actions == [
        "intake",
        "register",
        "dispatch",
        "handle",
        "report_back",
        "rework",
        "report_back",
        "verify",
        "close",
    ]
    assert [e["seq"] for e in closed["history"]] == list(range(1, 10))
    with sessions() as session:
        audited = session.execute(
            text("SELECT count(*) FROM audit_log WHERE entity = 'case' AND entity_id = :c"), {"c": code}
        ).scalar_one()
    assert audited == 9


def test_roles_and_statuses_are_checked(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    code = _intake(sessions, test_settings).case["request_code"]
    with pytest.raises(PermissionDeniedError):
        _step(sessions, test_settings, code, "register", actor=FIELD)
    with pytest.raises(PermissionDeniedError):
        _step(sessions, test_settings, code, "register", actor=REPORTER)
    with pytest.raises(ConflictError, match="reported"):
        _step(sessions, test_settings, code, "close")
    with pytest.raises(InvalidInputError, match="note"):
        _step(sessions, test_settings, code, "reject")
    with pytest.raises(NotFoundError, match="no step 'teleport'"):
        _step(sessions, test_settings, code, "teleport")
    with pytest.raises(NotFoundError):
        _step(sessions, test_settings, "JN202611239999999", "register")
    rejected = _step(sessions, test_settings, code, "reject", note="非城管职责")
    assert rejected["status"] == "rejected" and rejected["open311_status"] == "closed"


def test_park_and_unpark_return_to_where_it_was(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    code = _intake(sessions, test_settings).case["request_code"]
    _step(sessions, test_settings, code, "register")
    _step(sessions, test_settings, code, "dispatch")
    parked = _step(sessions, test_settings, code, "park", note="需协调电力公司")
    assert parked["status"] == "parked" and parked["deadline"] is None
    back = _step(sessions, test_settings, code, "unpark")
    assert back["status"] == "dispatched" and back["deadline"] is not None
    # A dispatcher can also escalate by hand: lamps are a district matter, one level up is the city.
    up = _step(sessions, test_settings, code, "escalate")
    assert up["handling_level"] == "city" and up["status"] == "dispatched"
    with pytest.raises(ConflictError, match="city level"):
        _step(sessions, test_settings, code, "escalate")


def test_reassignment_keeps_the_old_routing(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    code = _intake(sessions, test_settings, kind="event", class_code="0101", x=117.001, y=36.681).case[
        "request_code"
    ]
    _step(sessions, test_settings, code, "register")
    moved = _step(
        sessions, test_settings, code, "reassign", note="应属东侧网格", unit_grid_code="370102001001004"
    )
    assert moved["routing"]["owner"]["unit_grid_code"] == "370102001001004"
    to_department = _step(
        sessions, test_settings, code, "reassign", note="转执法", department_code="enforcement"
    )
    assert to_department["department_code"] == "enforcement"
    with sessions() as session:
        details = (
            session.execute(
                text(
                    "SELECT e.details FROM case_event e JOIN case_record c ON c.id = e.case_id "
                    "WHERE c.request_code = :c AND e.action = 'reassign' ORDER BY e.seq"
                ),
                {"c": code},
            )
            .scalars()
            .all()
        )
    assert details[0]["previous_routing"]["owner"]["unit_grid_code"] == "370102001001003"
    with pytest.raises(InvalidInputError, match="unknown department"):
        _step(sessions, test_settings, code, "reassign", note="x", department_code="nobody")


def test_deadlines_skip_weekends_and_holidays(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Illegal parking: 60 working minutes from dispatch.
    code = _intake(sessions, test_settings, kind="event", class_code="0403", x=117.001, y=36.681).case[
        "request_code"
    ]
    _step(sessions, test_settings, code, "register", at=dt.datetime(2026, 11, 20, 16, 0, tzinfo=BEIJING))
    friday = _step(
        sessions, test_settings, code, "dispatch", at=dt.datetime(2026, 11, 20, 17, 0, tzinfo=BEIJING)
    )
    # 30 minutes on Friday until 17:30, then Monday from 08:30.
    assert dt.datetime.fromisoformat(friday["deadline"]) == dt.datetime(2026, 11, 23, 9, 0, tzinfo=BEIJING)

    code = _intake(sessions, test_settings, kind="event", class_code="0403", x=117.0012, y=36.6835).case[
        "request_code"
    ]
    _step(sessions, test_settings, code, "register", at=dt.datetime(2026, 9, 30, 16, 0, tzinfo=BEIJING))
    holiday = _step(
        sessions, test_settings, code, "dispatch", at=dt.datetime(2026, 9, 30, 17, 0, tzinfo=BEIJING)
    )
    # National Day, 1-7 October 2026: the clock resumes on Thursday 8 October.
    assert dt.datetime.fromisoformat(holiday["deadline"]) == dt.datetime(2026, 10, 8, 9, 0, tzinfo=BEIJING)


def test_overdue_cases_escalate_level_by_level(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    code = _intake(sessions, test_settings, kind="event", class_code="0403", x=117.001, y=36.681).case[
        "request_code"
    ]
    _step(sessions, test_settings, code, "register", at=dt.datetime(2026, 11, 16, 9, 0, tzinfo=BEIJING))
    _step(sessions, test_settings, code, "dispatch", at=dt.datetime(2026, 11, 16, 9, 0, tzinfo=BEIJING))
    levels = []
    now = dt.datetime(2026, 11, 16, 10, 30, tzinfo=BEIJING)
    for _ in range(4):
        moved = cases.escalate_overdue(sessions, test_settings, actor=DISPATCHER, now=now)
        levels.append([m["to_level"] for m in moved if m["request_code"] == code])
        now += dt.timedelta(days=7)
    assert levels == [["street"], ["district"], ["city"], []]
    with pytest.raises(PermissionDeniedError):
        cases.escalate_overdue(sessions, test_settings, actor=FIELD)
    history = cases.get_case(sessions, code, personal=False)["history"]
    assert [e["action"] for e in history].count("escalate") == 3


def test_reassigning_a_lamp_case_to_a_grid_keeps_the_lamp(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    code = _intake(sessions, test_settings).case["request_code"]
    moved = _step(
        sessions, test_settings, code, "reassign", note="东侧网格员负责", unit_grid_code="370102001001004"
    )
    assert moved["routing"]["owner"]["unit_grid_code"] == "370102001001004"
    assert moved["routing"]["component"]["code"] == "3701020118000001"
    assert moved["department_code"] == "power" and moved["component_id"] is not None
    again = _step(
        sessions, test_settings, code, "reassign", note="位置更正", lon=117.0035, lat=36.6815, crs="cgcs2000"
    )
    assert again["routing"]["component"]["code"] == "3701020118000002"  # a new point snaps anew
    assert again["department_code"] == "lighting"


def _event_case(
    sessions: sessionmaker[Session], settings: Settings, lon: float, reported_at: dt.datetime
) -> str:
    """An illegal-parking case (60 working minutes to handle, community level), one per spot."""
    return str(
        _intake(
            sessions, settings, kind="event", class_code="0403", x=lon, y=36.6812, reported_at=reported_at
        ).case["request_code"]
    )


def _event_details(sessions: sessionmaker[Session], code: str, action: str) -> list[dict[str, Any]]:
    with sessions() as session:
        return list(
            session.execute(
                text(
                    "SELECT e.details FROM case_event e JOIN case_record c ON c.id = e.case_id "
                    "WHERE c.request_code = :c AND e.action = :a ORDER BY e.seq"
                ),
                {"c": code, "a": action},
            ).scalars()
        )


def test_escalation_rework_and_parking_do_not_make_a_late_case_on_time(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Dispatched Monday 12 October 2026 at 09:00 with 60 working minutes: due at 10:00 that day.
    def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime(2026, 10, day, hour, minute, tzinfo=BEIJING)

    escalated, parked, reworked = (
        _event_case(sessions, test_settings, 117.0002 + i * 0.0006, at(12, 8, 40)) for i in range(3)
    )
    for code in (escalated, parked, reworked):
        _step(sessions, test_settings, code, "register", at=at(12, 9))
        dispatched = _step(sessions, test_settings, code, "dispatch", at=at(12, 9))
        assert dt.datetime.fromisoformat(dispatched["on_time_deadline"]) == at(12, 10)

    # The escalation job finds all three overdue the next morning and gives the street a fresh hour.
    moved = cases.escalate_overdue(sessions, test_settings, actor=DISPATCHER, now=at(13, 9))
    assert sorted(m["request_code"] for m in moved) == sorted([escalated, parked, reworked])
    back = _step(sessions, test_settings, escalated, "report_back", actor=FIELD, at=at(13, 9, 30))
    assert dt.datetime.fromisoformat(back["handle_deadline"]) == at(13, 10)  # the handler's new deadline
    assert dt.datetime.fromisoformat(back["on_time_deadline"]) == at(12, 10)  # evaluation's, from dispatch

    # Parked and unparked five working minutes later: the clock moves on by five minutes, still a day late.
    _step(sessions, test_settings, parked, "park", note="挂账", at=at(13, 9, 10))
    unparked = _step(sessions, test_settings, parked, "unpark", at=at(13, 9, 15))
    assert dt.datetime.fromisoformat(unparked["on_time_deadline"]) == at(12, 10, 5)
    _step(sessions, test_settings, parked, "report_back", actor=FIELD, at=at(13, 9, 20))

    # Reported back late, reworked, reported back within the rework's hour: still late.
    _step(sessions, test_settings, reworked, "report_back", actor=FIELD, at=at(13, 9, 20))
    _step(sessions, test_settings, reworked, "rework", note="仍有车辆", at=at(13, 9, 30))
    _step(sessions, test_settings, reworked, "report_back", actor=FIELD, at=at(13, 10))

    for code in (escalated, parked, reworked):
        assert _event_details(sessions, code, "report_back")[-1]["handled_on_time"] is False
        _step(sessions, test_settings, code, "verify", at=at(13, 11))
        _step(sessions, test_settings, code, "close", at=at(13, 11, 5))
        assert _event_details(sessions, code, "close") == [{"closed_on_time": False}]
    row = stats.monthly(sessions, test_settings, "2026-10", "city")[0]
    assert (row["closed"], row["closed_on_time"], row["on_time_rate"]) == (3, 0, 0.0)


def test_parked_working_time_does_not_count_against_the_handler(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime(2026, 10, day, hour, minute, tzinfo=BEIJING)

    code = _event_case(sessions, test_settings, 117.0002, at(12, 8, 40))
    _step(sessions, test_settings, code, "register", at=at(12, 9))
    _step(sessions, test_settings, code, "dispatch", at=at(12, 9))  # due 10:00
    _step(sessions, test_settings, code, "park", note="需协调交警", at=at(12, 9, 30))  # 30 minutes left
    unparked = _step(sessions, test_settings, code, "unpark", at=at(13, 9))
    # The 30 minutes left run from the unpark: due at 09:30 the next morning, for the handler and evaluation.
    assert dt.datetime.fromisoformat(unparked["deadline"]) == at(13, 9, 30)
    assert dt.datetime.fromisoformat(unparked["on_time_deadline"]) == at(13, 9, 30)
    _step(sessions, test_settings, code, "report_back", actor=FIELD, at=at(13, 9, 20))
    _step(sessions, test_settings, code, "verify", at=at(13, 10))
    closed = _step(sessions, test_settings, code, "close", at=at(13, 10, 5))
    assert closed["status"] == "closed"
    assert _event_details(sessions, code, "close") == [{"closed_on_time": True}]
    assert stats.monthly(sessions, test_settings, "2026-10", "city")[0]["closed_on_time"] == 1


def test_a_named_lamp_decides_what_is_a_duplicate(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Two lamps named from one spot are two cases, however close the reporters stood.
    lamp_2 = _intake(sessions, test_settings, x=LAMP[0], y=LAMP[1], component_code="3701020118000002")
    lamp_1 = _intake(sessions, test_settings, x=LAMP[0], y=LAMP[1], component_code="3701020118000001")
    assert lamp_2.duplicate_of is None and lamp_1.duplicate_of is None
    # Lamp 1 again, from 70 m east of it (beyond the 50 m radius): the same case.
    east = _intake(sessions, test_settings, x=LAMP[0] + 0.00078, y=LAMP[1], component_code="3701020118000001")
    assert 65 < east.case["routing"]["component"]["distance_m"] < 75
    assert east.duplicate_of == lamp_1.case["request_code"]
    assert "same component 3701020118000001" in east.case["routing"]["duplicate"]["reason"]
    # A report naming no lamp repeats another naming none within the radius, never a named lamp's case.
    no_lamp = {"x": 117.0010, "y": 36.6835}  # ~280 m north of both lamps: nothing to snap to
    unnamed = _intake(sessions, test_settings, **no_lamp)
    again = _intake(sessions, test_settings, x=no_lamp["x"] + 0.0002, y=no_lamp["y"])
    assert again.duplicate_of == unnamed.case["request_code"]


def test_a_named_component_far_from_the_report_needs_a_dispatcher(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    near = _intake(sessions, test_settings, component_code="3701020118000001")  # 18 m away
    assert near.case["needs_confirmation"] is False
    far = _intake(sessions, test_settings, x=117.0010, y=36.6835, component_code="3701020118000002")
    routing = far.case["routing"]
    assert far.case["needs_confirmation"] and routing["needs_confirmation"]
    assert routing["confirm_reasons"] == [
        "component 3701020118000002 is 315 m from the reported point "
        "(more than the 50 m snap distance of class 0118)"
    ]


def test_the_duplicate_window_looks_both_ways(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Manhole covers (event 0101): 24 h window. A 12345 file loads an order of September after a case of
    # November at the same spot: months apart, not a duplicate.
    def report(moment: dt.datetime) -> cases.IntakeResult:
        return _intake(
            sessions, test_settings, kind="event", class_code="0101", x=117.001, y=36.681, reported_at=moment
        )

    november = report(dt.datetime(2026, 11, 23, 9, 30, tzinfo=BEIJING))
    assert report(dt.datetime(2026, 9, 1, 9, 0, tzinfo=BEIJING)).duplicate_of is None
    assert (
        report(dt.datetime(2026, 11, 24, 9, 0, tzinfo=BEIJING)).duplicate_of == november.case["request_code"]
    )
    assert (
        report(dt.datetime(2026, 11, 22, 10, 0, tzinfo=BEIJING)).duplicate_of == november.case["request_code"]
    )


def test_the_stored_routing_follows_escalation_and_reassignment(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    code = _intake(sessions, test_settings, kind="event", class_code="0403", x=117.001, y=36.681).case[
        "request_code"
    ]
    _step(sessions, test_settings, code, "register")
    _step(sessions, test_settings, code, "dispatch")
    for _ in range(3):
        _step(sessions, test_settings, code, "escalate")
    _step(sessions, test_settings, code, "reassign", note="改派执法", department_code="enforcement")
    case = _step(sessions, test_settings, code, "reassign", note="改派网格", unit_grid_code="370102001001004")
    routing = case["routing"]
    assert case["department_code"] == routing["department"]["code"] == "enforcement"
    assert routing["department"]["reason"] == "reassigned by a dispatcher (reassign_note says why)"
    assert case["handling_level"] == routing["handling_level"]["level"] == "city"
    assert routing["handling_level"]["reason"] == "escalated from district: by a dispatcher"
    assert routing["owner"]["unit_grid_code"] == "370102001001004"
    assert case["needs_confirmation"] is routing["needs_confirmation"] is False
    # What the routing said before each change is in the history.
    escalations = _event_details(sessions, code, "escalate")
    assert [e["previous_routing"]["handling_level"]["level"] for e in escalations] == [
        "community",
        "street",
        "district",
    ]
    reassignments = _event_details(sessions, code, "reassign")
    assert reassignments[0]["previous_routing"]["department"]["code"] == "traffic"
    assert reassignments[1]["previous_routing"]["owner"]["unit_grid_code"] == "370102001001003"


def test_the_service_refuses_nul_characters_for_every_door(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    for values, field in (
        ({"address": "泉城路\u00009号"}, "address"),
        ({"reporter": {"phone": "138\u0000"}}, "reporter.phone"),
        ({"reporter": {"na\u0000me": "x"}}, "reporter"),
    ):
        with pytest.raises(InvalidInputError, match="NUL") as refused:
            _intake(sessions, test_settings, **values)
        assert refused.value.problems[0].field == field
    code = _intake(sessions, test_settings).case["request_code"]
    with pytest.raises(InvalidInputError, match="NUL") as refused:
        _step(sessions, test_settings, code, "reject", note="\u0000")
    assert refused.value.problems[0].field == "note"


def test_a_case_shows_the_station_it_went_to(demo_sessions: sessionmaker[Session]) -> None:
    """Field teams ask which station answers for a case: its name, code and phone, not a database id."""
    with demo_sessions() as session:
        code, station = session.execute(
            text(
                "SELECT c.request_code, json_build_object('code', s.code, 'name', s.name, 'phone', s.phone) "
                "FROM case_record c JOIN station s ON s.id = c.station_id ORDER BY c.id LIMIT 1"
            )
        ).one()
    view = cases.get_case(demo_sessions, code, personal=False)
    assert view["station"] == station and view["station"]["name"]
