"""What drawing a plan reads: communities, roads, other nets, households, today's grids and codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session


def _frame(session: Session, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    result = session.execute(text(sql), params or {})
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    if "wkb" in frame.columns:
        frame["geometry"] = shapely.from_wkb([bytes(w) for w in frame["wkb"]]) if len(frame) else []
        frame = frame.drop(columns=["wkb"])
    return frame


def communities(session: Session, codes: Sequence[str] = ()) -> pd.DataFrame:
    """Communities (all, or these codes) with their station, in code order."""
    where = "WHERE c.code = ANY(:codes)" if codes else ""
    return _frame(
        session,
        f"""
        SELECT c.code, c.name, c.kind, (SELECT min(s.id) FROM station s WHERE s.community_code = c.code)
               AS station_id, ST_AsBinary(c.geom) AS wkb
        FROM community c {where} ORDER BY c.code
        """,
        {"codes": list(codes)},
    )


def cutters(session: Session) -> pd.DataFrame:
    """Roads and the polygons of the other departments' nets (with a net polygon id)."""
    return _frame(
        session,
        """
        SELECT 'road' AS kind, NULL::bigint AS net_polygon_id, ST_AsBinary(geom) AS wkb FROM road
        UNION ALL
        SELECT 'net', id, ST_AsBinary(geom) FROM net_polygon
        """,
    )


def households(session: Session) -> pd.DataFrame:
    """Residential buildings: where the households are."""
    return _frame(session, "SELECT households, ST_AsBinary(geom) AS wkb FROM residential_building")


def plan_grids(session: Session, plan_id: int) -> pd.DataFrame:
    """A plan's unit grids with their responsibility grid codes (to keep codes across a redraw)."""
    return _frame(
        session,
        """
        SELECT u.code, u.community_code, r.code AS responsibility_grid_code, ST_AsBinary(u.geom) AS wkb
        FROM unit_grid u LEFT JOIN responsibility_grid r ON r.id = u.responsibility_grid_id
        WHERE u.plan_id = :plan
        """,
        {"plan": plan_id},
    )


def plan_responsibility_grids(session: Session, plan_id: int) -> pd.DataFrame:
    """A plan's responsibility grids."""
    return _frame(
        session,
        "SELECT code, community_code, ST_AsBinary(geom) AS wkb FROM responsibility_grid"
        " WHERE plan_id = :plan",
        {"plan": plan_id},
    )


def codes_ever_used(session: Session) -> pd.DataFrame:
    """Every unit and responsibility grid code of any plan: a retired number is never given again."""
    return _frame(
        session,
        "SELECT community_code, code FROM unit_grid"
        " UNION SELECT community_code, code FROM responsibility_grid",
    )


def copy_communities_forward(session: Session, *, from_plan: int, to_plan: int, drawn: Sequence[str]) -> int:
    """Copy the grids of every community not drawn from ``from_plan`` into ``to_plan`` (same codes, workers):
    a draft is always a whole-city plan, so activating it never leaves a community without grids."""
    params = {"old": from_plan, "new": to_plan, "drawn": list(drawn)}
    session.execute(
        text(
            """
            INSERT INTO responsibility_grid (plan_id, code, name, community_code, station_id, worker_name,
                                             worker_phone, households, workload, geom)
            SELECT :new, code, name, community_code, station_id, worker_name, worker_phone, households,
                   workload, geom
            FROM responsibility_grid WHERE plan_id = :old AND community_code <> ALL(:drawn)
            """
        ),
        params,
    )
    result = session.execute(
        text(
            """
            INSERT INTO unit_grid (plan_id, code, community_code, responsibility_grid_id, area_m2, geom)
            SELECT :new, u.code, u.community_code, nr.id, u.area_m2, u.geom
            FROM unit_grid u
            LEFT JOIN responsibility_grid r ON r.id = u.responsibility_grid_id
            LEFT JOIN responsibility_grid nr ON nr.plan_id = :new AND nr.code = r.code
            WHERE u.plan_id = :old AND u.community_code <> ALL(:drawn)
            """
        ),
        params,
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
