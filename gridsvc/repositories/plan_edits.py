"""Hand edits of a draft plan: the SQL of reading one community's grids and regrouping its unit grids."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridsvc.db.models import STORAGE_SRID, PlanEdit


def _frame(session: Session, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    result = session.execute(text(sql), params)
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    if "wkb" in frame.columns:
        frame["geometry"] = shapely.from_wkb([bytes(w) for w in frame["wkb"]]) if len(frame) else []
        frame = frame.drop(columns=["wkb"])
    return frame


def plan_for_update(session: Session, plan_id: int) -> dict[str, Any] | None:
    """A plan's row with its drawing parameters and quality, locked until the transaction ends."""
    row = session.execute(
        text(
            "SELECT id, name, status, version, parameters, quality FROM grid_plan WHERE id = :id FOR UPDATE"
        ),
        {"id": plan_id},
    ).one_or_none()
    return dict(row._mapping) if row else None


def plan_version(session: Session, plan_id: int) -> dict[str, Any] | None:
    """A plan's status and version (not locked)."""
    row = session.execute(
        text("SELECT id, status, version FROM grid_plan WHERE id = :id"), {"id": plan_id}
    ).one_or_none()
    return dict(row._mapping) if row else None


def edits(session: Session, plan_id: int, *, after_version: int = 0) -> list[dict[str, Any]]:
    """A plan's edits made after ``after_version``, oldest first."""
    rows = session.execute(
        text(
            "SELECT version, kind, actor, created_at, details FROM plan_edit"
            " WHERE plan_id = :p AND version > :v ORDER BY version"
        ),
        {"p": plan_id, "v": after_version},
    )
    return [dict(row._mapping) for row in rows]


def responsibility_grid_communities(session: Session, plan_id: int, codes: Sequence[str]) -> dict[str, str]:
    """The community of each of these responsibility grids of a plan (unknown codes are left out)."""
    rows = session.execute(
        text("SELECT code, community_code FROM responsibility_grid WHERE plan_id = :p AND code = ANY(:c)"),
        {"p": plan_id, "c": list(codes)},
    )
    return {str(code): str(community) for code, community in rows}


def unit_grid_communities(session: Session, plan_id: int, codes: Sequence[str]) -> dict[str, str]:
    """The community of each of these unit grids of a plan (unknown codes are left out)."""
    rows = session.execute(
        text("SELECT code, community_code FROM unit_grid WHERE plan_id = :p AND code = ANY(:c)"),
        {"p": plan_id, "c": list(codes)},
    )
    return {str(code): str(community) for code, community in rows}


def community_unit_grids(session: Session, plan_id: int, community: str) -> pd.DataFrame:
    """A community's unit grids in a plan with their responsibility grid's code, in code order."""
    return _frame(
        session,
        """
        SELECT u.id, u.code, r.code AS grid_code, ST_AsBinary(u.geom) AS wkb
        FROM unit_grid u LEFT JOIN responsibility_grid r ON r.id = u.responsibility_grid_id
        WHERE u.plan_id = :p AND u.community_code = :c ORDER BY u.code
        """,
        {"p": plan_id, "c": community},
    )


def community_responsibility_grids(session: Session, plan_id: int, community: str) -> pd.DataFrame:
    """A community's responsibility grids in a plan, in code order."""
    return _frame(
        session,
        "SELECT id, code, station_id FROM responsibility_grid WHERE plan_id = :p AND community_code = :c"
        " ORDER BY code",
        {"p": plan_id, "c": community},
    )


# The box of a community's unit grids in a plan: the loads counted for it are read inside this box.
_UNITS_EXTENT = """
    (SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4490)
     FROM unit_grid WHERE plan_id = :p AND community_code = :c)
"""


def households_near(session: Session, plan_id: int, community: str) -> pd.DataFrame:
    """Residential buildings inside the box of a community's unit grids: where its households are."""
    return _frame(
        session,
        "SELECT households, ST_AsBinary(geom) AS wkb FROM residential_building"
        f" WHERE geom && {_UNITS_EXTENT}",
        {"p": plan_id, "c": community},
    )


def component_points_near(session: Session, plan_id: int, community: str) -> npt.NDArray[np.float64]:
    """Lon/lat of the current components in the box of a community's unit grids (a point on the surface of
    line and polygon ones), as the draw counts them."""
    rows = session.execute(
        text(
            f"""
            SELECT ST_X(p), ST_Y(p) FROM (
                SELECT CASE WHEN GeometryType(geom) = 'POINT' THEN geom ELSE ST_PointOnSurface(geom) END AS p
                FROM component WHERE valid_to IS NULL AND in_use AND geom && {_UNITS_EXTENT}
            ) AS c
            """
        ),
        {"p": plan_id, "c": community},
    ).fetchall()
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def case_points_near(session: Session, plan_id: int, community: str, *, days: int) -> npt.NDArray[np.float64]:
    """Lon/lat of the cases of the last ``days`` days in the box of a community's unit grids (duplicates not
    counted twice), as the draw counts them."""
    rows = session.execute(
        text(
            f"""
            SELECT ST_X(geom), ST_Y(geom) FROM case_record
            WHERE reported_at >= now() - make_interval(days => :days) AND duplicate_of_id IS NULL
              AND geom && {_UNITS_EXTENT}
            """
        ),
        {"p": plan_id, "c": community, "days": days},
    ).fetchall()
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def net_polygons_near(session: Session, plan_id: int, community: str) -> pd.DataFrame:
    """The other departments' net polygons touching the box of a community's unit grids, by id."""
    return _frame(
        session,
        f"SELECT id, net_id, ST_AsBinary(geom) AS wkb FROM net_polygon"
        f" WHERE geom && {_UNITS_EXTENT} ORDER BY id",
        {"p": plan_id, "c": community},
    )


def community_and_main_roads(
    session: Session, community: str, road_classes: Sequence[str]
) -> tuple[Any, pd.DataFrame]:
    """A community's boundary (WKB) and the main roads crossing it: the lines its grids should follow."""
    boundary = session.execute(
        text("SELECT ST_AsBinary(geom) FROM community WHERE code = :c"), {"c": community}
    ).scalar_one()
    roads = _frame(
        session,
        "SELECT r.id, ST_AsBinary(r.geom) AS wkb FROM road r JOIN community c ON c.code = :c"
        " WHERE r.road_class = ANY(:classes) AND ST_Intersects(r.geom, c.geom) ORDER BY r.id",
        {"c": community, "classes": list(road_classes)},
    )
    return bytes(boundary), roads


def responsibility_grid_codes_taken(session: Session, plan_id: int, community: str) -> list[str]:
    """The responsibility grid codes a new grid of a community in this draft may not take: those of every plan
    that was in force (as ``repositories.planning.codes_ever_used``), of this draft, and those a merge
    removed from this draft (its history keeps them)."""
    rows = session.execute(
        text(
            """
            SELECT r.code FROM responsibility_grid r JOIN grid_plan p ON p.id = r.plan_id
            WHERE r.community_code = :c AND (p.status IN ('active', 'retired') OR p.id = :p)
            UNION
            SELECT removed.code
            FROM plan_edit e, jsonb_array_elements_text(e.details -> 'removed_codes') AS removed(code)
            WHERE e.plan_id = :p AND left(removed.code, 12) = :c
            """
        ),
        {"p": plan_id, "c": community},
    )
    return sorted(str(code) for (code,) in rows)


def add_responsibility_grid(
    session: Session,
    *,
    plan_id: int,
    code: str,
    community_code: str,
    station_id: int | None,
    households: int,
    workload: float,
    wkb: bytes,
) -> int:
    """Insert a responsibility grid; its id."""
    return int(
        session.execute(
            text(
                """
                INSERT INTO responsibility_grid
                    (plan_id, code, community_code, station_id, households, workload, geom)
                VALUES (:p, :code, :c, :station, :households, :workload, ST_GeomFromWKB(:wkb, :srid))
                RETURNING id
                """
            ),
            {
                "p": plan_id,
                "code": code,
                "c": community_code,
                "station": station_id,
                "households": households,
                "workload": round(workload, 3),
                "wkb": wkb,
                "srid": STORAGE_SRID,
            },
        ).scalar_one()
    )


def reshape_responsibility_grids(session: Session, grids: Sequence[tuple[int, int, float, bytes]]) -> None:
    """Give responsibility grids (id, households, workload, WKB) their new shapes and figures.

    One statement for all of them: the database checks that a plan's grids do not overlap at the end of
    each statement (migration 0009), and grids trading unit grids overlap until all of them are written.
    """
    if not grids:
        return
    ids, households, workloads, shapes = zip(*grids, strict=True)
    session.execute(
        text(
            """
            UPDATE responsibility_grid AS r
            SET households = g.households, workload = g.workload, geom = ST_GeomFromWKB(g.wkb, :srid)
            FROM unnest(CAST(:ids AS integer[]), CAST(:households AS integer[]),
                        CAST(:workloads AS numeric[]), CAST(:wkbs AS bytea[]))
                 AS g(id, households, workload, wkb)
            WHERE r.id = g.id
            """
        ),
        {
            "ids": list(ids),
            "households": list(households),
            "workloads": [round(w, 3) for w in workloads],
            "wkbs": list(shapes),
            "srid": STORAGE_SRID,
        },
    )


def assign_unit_grids(session: Session, unit_ids: Sequence[int], grid_id: int) -> None:
    """Put unit grids into a responsibility grid."""
    session.execute(
        text("UPDATE unit_grid SET responsibility_grid_id = :g WHERE id = ANY(:ids)"),
        {"g": grid_id, "ids": [int(i) for i in unit_ids]},
    )


def delete_responsibility_grid(session: Session, grid_id: int) -> None:
    """Remove a responsibility grid (its unit grids have been given to another first)."""
    session.execute(text("DELETE FROM responsibility_grid WHERE id = :id"), {"id": grid_id})


def finish_edit(
    session: Session, plan_id: int, *, quality: dict[str, Any], kind: str, actor: str, details: dict[str, Any]
) -> int:
    """Store the plan's new quality, count its version up and add the edit to its history; the new version."""
    version = int(
        session.execute(
            text(
                "UPDATE grid_plan SET version = version + 1, quality = CAST(:q AS jsonb) WHERE id = :id"
                " RETURNING version"
            ),
            {"id": plan_id, "q": json.dumps(quality, ensure_ascii=False)},
        ).scalar_one()
    )
    session.add(PlanEdit(plan_id=plan_id, version=version, kind=kind, actor=actor, details=details))
    session.flush()
    return version
