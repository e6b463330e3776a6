"""The database itself refuses data that is not sane, whoever writes it."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.models import Community, Component, District, Station, UnitGrid
from tests.factories import SQUARE, add_admin_chain, add_plan, ewkt

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
        session.add(Station(phone="0531-82071556", staff=[{"name": "王芳", "role": "站长"}], **base))
        session.flush()
