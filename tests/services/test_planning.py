"""Drawing a plan from the data: unit grids cut by roads, balanced responsibility grids, codes that
survive a second redraw, a draft that passes the activation rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.models import ResidentialBuilding, Road
from gridsvc.errors import NotFoundError, PermissionDeniedError
from gridsvc.services import planning, plans
from gridsvc.services.access import Principal
from gridsvc.settings import Settings
from tests.factories import GRID_ORIGIN, ewkt

GIS = Principal(name="规划员", role="gis_staff")
X0, Y0 = GRID_ORIGIN


@pytest.fixture
def drawable(case_city: dict[str, Any], sessions: sessionmaker[Session]) -> dict[str, Any]:
    """The case city's community (about 890 m x 670 m), a road across it, 48 buildings of 50 households."""
    with sessions.begin() as session:
        session.add(
            Road(
                name="经十路",
                road_class="arterial",
                geom=ewkt(f"MULTILINESTRING(({X0 - 0.001} {Y0 + 0.003}, {X0 + 0.011} {Y0 + 0.003}))"),
            )
        )
        for i in range(8):
            for j in range(6):
                session.add(
                    ResidentialBuilding(
                        community_code="370102001001",
                        households=50,
                        geom=ewkt(f"POINT({X0 + 0.0006 + i * 0.00125} {Y0 + 0.0005 + j * 0.001})"),
                    )
                )
        session.flush()
    return case_city


def test_draw_a_plan_that_passes_the_rules_and_keeps_codes_on_a_redraw(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    params = planning.DrawParams(communities=["370102001001"])
    first = planning.draw_plan(sessions, test_settings, params, actor=GIS)
    assert first.unit_grids >= 50  # about 0.6 km2 in parts of at most 10,000 m2
    assert first.responsibility_grids == 6  # 2,400 households in grids of 300-500
    assert first.quality["max_min_ratio_worst"] <= 1.3
    assert first.quality["all_contiguous"]
    with sessions() as session:
        stats = session.execute(
            text(
                "SELECT max(area_m2), count(*) FILTER (WHERE NOT ST_IsValid(geom)), "
                "count(*) FILTER (WHERE code !~ '^370102001001[0-9]{3}$') FROM unit_grid WHERE plan_id = :p"
            ),
            {"p": first.plan_id},
        ).one()
        crossing = session.execute(
            text(
                # Cut in metres, stored in lon/lat: edges may wander a few millimetres off the road.
                "SELECT count(*) FROM unit_grid u, road r WHERE u.plan_id = :p "
                "AND ST_Intersects(ST_Buffer(ST_Transform(u.geom, 4548), -0.5), ST_Transform(r.geom, 4548))"
            ),
            {"p": first.plan_id},
        ).scalar_one()
    assert float(stats[0]) <= 10_000.01 and stats[1] == 0 and stats[2] == 0
    assert crossing == 0  # no unit grid straddles the road: it was cut along it
    assert plans.check_plan(sessions, first.plan_id) == []
    plans.activate_plan(sessions, first.plan_id, dt.date(2026, 12, 1), actor=GIS)

    again = planning.draw_plan(sessions, test_settings, params, actor=GIS)
    assert again.kept_unit_grid_codes == again.unit_grids  # same data, same grids, same codes
    with sessions() as session:
        codes = [
            set(session.execute(text("SELECT code FROM unit_grid WHERE plan_id = :p"), {"p": p}).scalars())
            for p in (first.plan_id, again.plan_id)
        ]
    assert codes[0] == codes[1]


def test_draw_needs_gis_staff_and_communities(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    with pytest.raises(PermissionDeniedError):
        planning.draw_plan(
            sessions, test_settings, planning.DrawParams(), actor=Principal(name="d", role="dispatcher")
        )
    with pytest.raises(NotFoundError):
        planning.draw_plan(
            sessions, test_settings, planning.DrawParams(communities=["999999999999"]), actor=GIS
        )


def test_a_partial_draw_copies_the_other_communities_and_a_plan_missing_one_is_refused(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    from gridsvc.db.models import Community, ResponsibilityGrid, UnitGrid

    east = f"MULTIPOLYGON((({X0 + 0.010} {Y0}, {X0 + 0.012} {Y0}, {X0 + 0.012} {Y0 + 0.006}, "
    east += f"{X0 + 0.010} {Y0 + 0.006}, {X0 + 0.010} {Y0})))"
    with sessions.begin() as session:
        session.execute(
            text("UPDATE district SET geom = ST_Multi(ST_Union(geom, ST_GeomFromText(:g, 4490)))"),
            {"g": east},
        )
        session.execute(
            text("UPDATE street SET geom = ST_Multi(ST_Union(geom, ST_GeomFromText(:g, 4490)))"), {"g": east}
        )
        session.add(Community(code="370102001002", street_code="370102001", name="乙社区", geom=ewkt(east)))
        session.flush()
        owner = ResponsibilityGrid(
            plan_id=drawable["plan_id"],
            code="370102001002R01",
            community_code="370102001002",
            worker_name="乙网格员",
            geom=ewkt(east),
        )
        session.add(owner)
        session.flush()
        session.add(
            UnitGrid(
                plan_id=drawable["plan_id"],
                code="370102001002001",
                community_code="370102001002",
                responsibility_grid_id=owner.id,
                area_m2=1,
                geom=ewkt(east),
            )
        )
        session.flush()
    drawn = planning.draw_plan(
        sessions, test_settings, planning.DrawParams(communities=["370102001001"]), actor=GIS
    )
    assert drawn.copied_unit_grids == 1
    with sessions() as session:
        copied = session.execute(
            text(
                "SELECT u.code, r.code, r.worker_name FROM unit_grid u JOIN responsibility_grid r "
                "ON r.id = u.responsibility_grid_id "
                "WHERE u.plan_id = :p AND u.community_code = '370102001002'"
            ),
            {"p": drawn.plan_id},
        ).one()
    assert tuple(copied) == ("370102001002001", "370102001002R01", "乙网格员")
    assert plans.check_plan(sessions, drawn.plan_id) == []
    # A draft that lacks a community altogether cannot be activated.
    with sessions.begin() as session:
        session.execute(
            text("DELETE FROM unit_grid WHERE plan_id = :p AND community_code = '370102001002'"),
            {"p": drawn.plan_id},
        )
    assert {b["rule"] for b in plans.check_plan(sessions, drawn.plan_id)} == {"missing"}


@pytest.mark.parametrize(
    "params",
    [
        planning.DrawParams(max_area_m2=-5),
        planning.DrawParams(households_min=600, households_max=500),
    ],
)
def test_impossible_parameters_are_refused_before_anything_is_drawn(
    params: planning.DrawParams,
    drawable: dict[str, Any],
    sessions: sessionmaker[Session],
    test_settings: Settings,
) -> None:
    from gridsvc.errors import InvalidInputError

    with sessions() as session:
        before = session.execute(text("SELECT count(*) FROM grid_plan")).scalar_one()
    with pytest.raises(InvalidInputError, match="cannot draw"):
        planning.draw_plan(sessions, test_settings, params, actor=GIS)
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM grid_plan")).scalar_one() == before
