"""What locating a point needs from the database: the plan that answers, its grids and their owners."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class PlanRow:
    """The plan that answers a locate question."""

    id: int
    name: str
    status: str
    version: int
    effective_from: dt.date | None
    effective_to: dt.date | None


_PLAN_COLUMNS = "id, name, status, version, effective_from, effective_to"


def active_plan(session: Session) -> PlanRow | None:
    """The active plan, if any."""
    row = session.execute(
        text(f"SELECT {_PLAN_COLUMNS} FROM grid_plan WHERE status = 'active'")
    ).one_or_none()
    return PlanRow(*row) if row else None


def plan_on(session: Session, day: dt.date) -> PlanRow | None:
    """The plan in force on ``day``: effective_from <= day < effective_to (the end day is the successor's)."""
    row = session.execute(
        text(
            f"""
            SELECT {_PLAN_COLUMNS} FROM grid_plan
            WHERE status IN ('active', 'retired') AND effective_from <= :day
              AND (effective_to IS NULL OR effective_to > :day)
            ORDER BY effective_from DESC, id DESC LIMIT 1
            """
        ),
        {"day": day},
    ).one_or_none()
    return PlanRow(*row) if row else None


def territory_stamp(session: Session) -> int:
    """Changes whenever boundaries, stations or the demo city are loaded: cached owners must be re-read."""
    value = session.execute(
        text(
            "SELECT coalesce(max(id), 0) FROM survey_batch WHERE layer IN ('boundaries', 'stations', 'demo')"
        )
    ).scalar_one()
    return int(value)


def plan_unit_grids(session: Session, plan_id: int) -> pd.DataFrame:
    """Every unit grid of a plan with its owner chain, as WKB geometry and plain columns."""
    sql = """
        SELECT u.id AS unit_grid_id, u.code AS unit_grid_code,
               coalesce(u.responsibility_grid_id, -1) AS responsibility_grid_id,
               r.code AS responsibility_grid_code, r.name AS responsibility_grid_name,
               r.worker_name, r.worker_phone,
               c.code AS community_code, c.name AS community_name,
               s.code AS street_code, s.name AS street_name,
               d.code AS district_code, d.name AS district_name,
               st.id AS station_id, st.name AS station_name, st.phone AS station_phone,
               ST_X(st.geom) AS station_lon, ST_Y(st.geom) AS station_lat,
               ST_AsBinary(u.geom) AS wkb
        FROM unit_grid u
        JOIN community c ON c.code = u.community_code
        JOIN street s ON s.code = c.street_code
        JOIN district d ON d.code = s.district_code
        LEFT JOIN responsibility_grid r ON r.id = u.responsibility_grid_id
        LEFT JOIN LATERAL (
            SELECT id, name, phone, geom FROM station
            WHERE id = r.station_id OR (r.station_id IS NULL AND community_code = u.community_code)
            ORDER BY (id = r.station_id) DESC NULLS LAST, id LIMIT 1
        ) st ON true
        WHERE u.plan_id = :plan
        ORDER BY u.code
    """
    return _frame(session, sql, {"plan": plan_id})


def districts(session: Session) -> pd.DataFrame:
    """The districts: the city's territory, and the owner of last resort (属地兜底)."""
    return _frame(
        session,
        "SELECT code AS district_code, name AS district_name, ST_AsBinary(geom) AS wkb"
        " FROM district ORDER BY code",
        {},
    )


def _frame(session: Session, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    result = session.execute(text(sql), params)
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    frame["geometry"] = shapely.from_wkb([bytes(w) for w in frame["wkb"]]) if len(frame) else []
    return frame.drop(columns=["wkb"])
