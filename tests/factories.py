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
