"""Plain factory functions for test rows (a tiny admin hierarchy near Quancheng Square)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridsvc.db.models import Community, District, GridPlan, Street

SQUARE = "MULTIPOLYGON(((117.01 36.66, 117.03 36.66, 117.03 36.67, 117.01 36.67, 117.01 36.66)))"


def ewkt(wkt: str, srid: int = 4490) -> str:
    """EWKT text GeoAlchemy2 accepts for a geometry column."""
    return f"SRID={srid};{wkt}"


def add_admin_chain(session: Session, *, wkt: str = SQUARE) -> dict[str, Any]:
    """One district, street and community sharing one square."""
    district = District(code="370102", name="历下区", geom=ewkt(wkt))
    street = Street(code="370102001", district_code="370102", name="解放路街道", geom=ewkt(wkt))
    community = Community(code="370102001001", street_code="370102001", name="甲社区", geom=ewkt(wkt))
    for row in (district, street, community):  # no ORM relationships, so flush parents first
        session.add(row)
        session.flush()
    return {"district": district, "street": street, "community": community}


def add_plan(session: Session, *, name: str = "方案", status: str = "draft", **kwargs: Any) -> GridPlan:
    """A grid plan; active/retired plans get an effective date."""
    if status != "draft":
        kwargs.setdefault("effective_from", dt.date(2025, 1, 1))
    if status == "retired":
        kwargs.setdefault("effective_to", dt.date(2025, 6, 30))
    plan = GridPlan(name=name, status=status, created_by="test", **kwargs)
    session.add(plan)
    session.flush()
    return plan


def count(session: Session, table: str) -> int:
    """Rows in a table."""
    return int(session.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())


# A hand-made city in lon/lat so shared edges are exact: a 0.010° x 0.006° district (about 900 m x 670 m)
# holding one community; four unit grids of 0.002° x 0.002° in its south-west corner, west pair in one
# responsibility grid, east pair in another; a gap east of them; open land in the north-east.
GRID_ORIGIN: tuple[float, float] = (117.000, 36.680)
CELL = 0.002


def _box(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"MULTIPOLYGON((({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0})))"


def add_grid_city(session: Session, *, with_retired_plan: bool = False) -> dict[str, Any]:
    """District, street, community, station, an active plan of 4 unit grids in 2 responsibility grids.

    With ``with_retired_plan`` a plan retired on 2025-06-30 holds one unit grid over the same four cells.
    """
    from gridsvc.db.models import ResponsibilityGrid, Station, UnitGrid

    x0, y0 = GRID_ORIGIN
    district_box = _box(x0, y0, x0 + 0.010, y0 + 0.006)
    chain = add_admin_chain(session, wkt=district_box)
    station = Station(
        code="S370102001001",
        community_code="370102001001",
        name="甲社区城管工作站",
        phone="0531-86001234",
        geom=ewkt(f"POINT({x0 + 0.001} {y0 + 0.003})"),
    )
    session.add(station)
    session.flush()
    if with_retired_plan:
        old = add_plan(session, name="旧方案", status="retired")
        old_grid = ResponsibilityGrid(
            plan_id=old.id,
            code="370102001001R90",
            community_code="370102001001",
            worker_name="旧网格员",
            station_id=station.id,
            geom=ewkt(_box(x0, y0, x0 + 2 * CELL, y0 + 2 * CELL)),
        )
        session.add(old_grid)
        session.flush()
        session.add(
            UnitGrid(
                plan_id=old.id,
                code="370102001001090",
                community_code="370102001001",
                responsibility_grid_id=old_grid.id,
                area_m2=160000,
                geom=ewkt(_box(x0, y0, x0 + 2 * CELL, y0 + 2 * CELL)),
            )
        )
        session.flush()
    plan = add_plan(session, name="测试方案", status="active", effective_from=dt.date(2025, 6, 30))
    west = ResponsibilityGrid(
        plan_id=plan.id,
        code="370102001001R01",
        name="甲社区第1责任网格",
        community_code="370102001001",
        station_id=station.id,
        worker_name="王芳",
        worker_phone="13905310001",
        geom=ewkt(_box(x0, y0, x0 + CELL, y0 + 2 * CELL)),
    )
    east = ResponsibilityGrid(
        plan_id=plan.id,
        code="370102001001R02",
        name="甲社区第2责任网格",
        community_code="370102001001",
        station_id=station.id,
        worker_name="张伟",
        worker_phone="13905310002",
        geom=ewkt(_box(x0 + CELL, y0, x0 + 2 * CELL, y0 + 2 * CELL)),
    )
    session.add_all([west, east])
    session.flush()
    cells = {
        "370102001001001": (0, 1, west),  # north-west
        "370102001001002": (1, 1, east),  # north-east
        "370102001001003": (0, 0, west),  # south-west
        "370102001001004": (1, 0, east),  # south-east
    }
    for code, (i, j, owner) in cells.items():
        session.add(
            UnitGrid(
                plan_id=plan.id,
                code=code,
                community_code="370102001001",
                responsibility_grid_id=owner.id,
                area_m2=40000,
                geom=ewkt(_box(x0 + i * CELL, y0 + j * CELL, x0 + (i + 1) * CELL, y0 + (j + 1) * CELL)),
            )
        )
    session.flush()
    return {**chain, "plan": plan, "station": station, "west": west, "east": east}


LAMP = (117.0010, 36.6810)  # a street lamp inside the south-west unit grid, far from other owners


def add_case_city(session: Session) -> dict[str, Any]:
    """The grid city with two street lamps: the one at LAMP is maintained by the power company."""
    from gridsvc.db.models import Component

    made = add_grid_city(session)
    session.add(
        Component(
            code="3701020118000001",
            class_code="0118",
            name="路灯1",
            maintainer_department_code="power",
            geom=ewkt(f"POINT({LAMP[0]} {LAMP[1]})"),
        )
    )
    session.add(
        Component(
            code="3701020118000002", class_code="0118", name="路灯2", geom=ewkt("POINT(117.0035 36.6815)")
        )
    )
    session.flush()
    return made
