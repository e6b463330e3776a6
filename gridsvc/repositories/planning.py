"""What drawing a plan reads: communities, roads, other nets, households, today's grids and codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session


def _frame(session: Session, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    result = session.execute(text(sql), params or {})
    # Plain tuples: pandas probes Row objects attribute by attribute, which costs seconds on 200k rows.
    frame = pd.DataFrame([tuple(row) for row in result], columns=list(result.keys()))
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
    """Roads (with their class) and the polygons of the other departments' nets (net and polygon ids)."""
    return _frame(
        session,
        """
        SELECT 'road' AS kind, NULL::bigint AS net_id, NULL::bigint AS net_polygon_id, road_class,
               ST_AsBinary(geom) AS wkb
        FROM road
        UNION ALL
        SELECT 'net', net_id, id, NULL, ST_AsBinary(geom) FROM net_polygon
        """,
    )


def households(session: Session) -> pd.DataFrame:
    """Residential buildings: where the households are."""
    return _frame(session, "SELECT households, ST_AsBinary(geom) AS wkb FROM residential_building")


def component_points(session: Session) -> npt.NDArray[np.float64]:
    """Lon/lat of every current component (a point on the surface of line and polygon ones)."""
    rows = session.execute(
        text(
            """
            SELECT ST_X(p), ST_Y(p) FROM (
                SELECT CASE WHEN GeometryType(geom) = 'POINT' THEN geom ELSE ST_PointOnSurface(geom) END AS p
                FROM component WHERE valid_to IS NULL AND in_use
            ) AS c
            """
        )
    ).fetchall()
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def case_points(session: Session, *, days: int) -> npt.NDArray[np.float64]:
    """Lon/lat of the cases reported in the last ``days`` days (duplicates not counted twice)."""
    rows = session.execute(
        text(
            """
            SELECT ST_X(geom), ST_Y(geom) FROM case_record
            WHERE reported_at >= now() - make_interval(days => :days) AND duplicate_of_id IS NULL
              AND geom IS NOT NULL
            """
        ),
        {"days": days},
    ).fetchall()
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


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
    """Every unit and responsibility grid code of a plan that was ever in force: a retired number is never
    given again. Drafts do not count: a number only a draft used never named a place anyone worked."""
    return _frame(
        session,
        """
        SELECT g.community_code, g.code FROM unit_grid g JOIN grid_plan p ON p.id = g.plan_id
        WHERE p.status IN ('active', 'retired')
        UNION
        SELECT g.community_code, g.code FROM responsibility_grid g JOIN grid_plan p ON p.id = g.plan_id
        WHERE p.status IN ('active', 'retired')
        """,
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
            FROM responsibility_grid
            WHERE plan_id = :old AND community_code NOT IN (SELECT unnest(CAST(:drawn AS text[])))
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
            WHERE u.plan_id = :old AND u.community_code NOT IN (SELECT unnest(CAST(:drawn AS text[])))
            """
        ),
        params,
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


_PLAN_COLUMNS = """
    p.id, p.name, p.status, p.code_digits, p.effective_from, p.effective_to, p.parameters, p.quality,
    p.created_by, p.created_at, p.version,
    (SELECT count(*) FROM responsibility_grid r WHERE r.plan_id = p.id) AS responsibility_grids,
    (SELECT count(*) FROM unit_grid u WHERE u.plan_id = p.id) AS unit_grids
"""


def plan_rows(session: Session) -> list[dict[str, Any]]:
    """Every plan, newest first, without the per-community quality."""
    rows = session.execute(
        text(
            "SELECT "
            + _PLAN_COLUMNS.replace("p.quality,", "p.quality - 'per_community' AS quality,")
            + " FROM grid_plan p ORDER BY p.id DESC"
        )
    )
    return [dict(row._mapping) for row in rows]


def plan_row(session: Session, plan_id: int) -> dict[str, Any] | None:
    """One plan with its parameters and whole quality report."""
    row = session.execute(
        text(f"SELECT {_PLAN_COLUMNS} FROM grid_plan p WHERE p.id = :id"), {"id": plan_id}
    ).one_or_none()
    return dict(row._mapping) if row else None
