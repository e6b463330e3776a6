"""What comparing two plans reads: grids matched by code, and who owns each point in either plan."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

# A grid whose symmetric difference with its namesake is above this share of its area was reshaped; the
# same tolerance as code survival in gis/plancodes (1 %).
RESHAPED_SHARE = 0.01


def _frame(session: Session, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    result = session.execute(text(sql), params)
    return pd.DataFrame([tuple(row) for row in result], columns=list(result.keys()))


def plan_row(session: Session, plan_id: int) -> dict[str, Any] | None:
    """A plan's id, name and status, or None."""
    row = session.execute(
        text("SELECT id, name, status FROM grid_plan WHERE id = :id"), {"id": plan_id}
    ).one_or_none()
    return dict(row._mapping) if row else None


def _changes_sql(table: str) -> str:
    """Grids of two plans matched by code: added, removed, reshaped or unchanged.

    Identical geometry (a grid copied forward) is recognised without any geometry computation."""
    return f"""
        SELECT coalesce(d.code, b.code) AS code,
               coalesce(d.community_code, b.community_code) AS community_code,
               CASE WHEN b.id IS NULL THEN 'added'
                    WHEN d.id IS NULL THEN 'removed'
                    WHEN b.geom = d.geom THEN 'unchanged'
                    WHEN ST_Area(ST_SymDifference(b.geom, d.geom)::geography)
                         > :share * ST_Area(b.geom::geography) THEN 'reshaped'
                    ELSE 'unchanged' END AS change,
               b.id AS before_id, d.id AS after_id{{extra}}
        FROM (SELECT * FROM {table} WHERE plan_id = :base) AS b
        FULL JOIN (SELECT * FROM {table} WHERE plan_id = :draft) AS d ON d.code = b.code
    """


def responsibility_grid_changes(session: Session, *, base: int, draft: int) -> pd.DataFrame:
    """One row per responsibility grid code of either plan, with its change, households and area."""
    extra = """,
               b.households AS households_before, d.households AS households_after,
               b.workload AS workload_before, d.workload AS workload_after,
               round(ST_Area(b.geom::geography)::numeric) AS area_before_m2,
               round(ST_Area(d.geom::geography)::numeric) AS area_after_m2,
               b.station_id AS station_before, d.station_id AS station_after"""
    sql = _changes_sql("responsibility_grid").replace("{extra}", extra) + " ORDER BY 1"
    return _frame(session, sql, {"base": base, "draft": draft, "share": RESHAPED_SHARE})


def unit_grid_change_counts(session: Session, *, base: int, draft: int) -> dict[str, int]:
    """How many unit grids were added, removed, reshaped or left as they were."""
    sql = f"SELECT change, count(*) FROM ({_changes_sql('unit_grid').replace('{extra}', '')}) AS c GROUP BY 1"
    rows = session.execute(text(sql), {"base": base, "draft": draft, "share": RESHAPED_SHARE})
    counts = {"added": 0, "removed": 0, "reshaped": 0, "unchanged": 0}
    counts.update({str(change): int(n) for change, n in rows})
    return counts


# Points whose owner may differ: those inside a grid that is new or changed in either plan (a grid kept
# with its code and shape keeps every point inside it). The owner at a point is the responsibility grid
# of the unit grid there, smallest unit grid code on a shared edge: the rule locate and import use.
_OWNER_CHANGES = """
    WITH changed AS (
        SELECT d.geom FROM responsibility_grid d
        LEFT JOIN responsibility_grid b ON b.plan_id = :base AND b.code = d.code
        WHERE d.plan_id = :draft AND (b.id IS NULL OR NOT b.geom = d.geom)
        UNION ALL
        SELECT b.geom FROM responsibility_grid b
        LEFT JOIN responsibility_grid d ON d.plan_id = :draft AND d.code = b.code
        WHERE b.plan_id = :base AND (d.id IS NULL OR NOT b.geom = d.geom)
    ),
    candidates AS (
        SELECT DISTINCT t.id FROM {table} t JOIN changed c ON ST_Intersects(c.geom, t.geom)
        WHERE {where}
    ),
    owners AS (
        SELECT t.id, {columns},
               (SELECT r.code FROM unit_grid u JOIN responsibility_grid r ON r.id = u.responsibility_grid_id
                WHERE u.plan_id = :base AND ST_Intersects(u.geom, ST_PointOnSurface(t.geom))
                ORDER BY u.code LIMIT 1) AS before,
               (SELECT r.code FROM unit_grid u JOIN responsibility_grid r ON r.id = u.responsibility_grid_id
                WHERE u.plan_id = :draft AND ST_Intersects(u.geom, ST_PointOnSurface(t.geom))
                ORDER BY u.code LIMIT 1) AS after
        FROM {table} t WHERE t.id IN (SELECT id FROM candidates)
    )
    SELECT * FROM owners WHERE before IS DISTINCT FROM after ORDER BY id
"""


def component_owner_changes(session: Session, *, base: int, draft: int) -> pd.DataFrame:
    """Current components whose responsibility grid differs between the plans."""
    sql = _OWNER_CHANGES.format(
        table="component",
        where="t.valid_to IS NULL AND t.in_use",
        columns="t.code, t.class_code, t.name",
    )
    return _frame(session, sql, {"base": base, "draft": draft})


def open_case_owner_changes(session: Session, *, base: int, draft: int) -> pd.DataFrame:
    """Open cases (not closed, not rejected) whose responsibility grid differs between the plans."""
    sql = _OWNER_CHANGES.format(
        table="case_record",
        where="t.status NOT IN ('closed', 'rejected') AND t.geom IS NOT NULL",
        columns=(
            "t.request_code AS code, t.status,"
            " coalesce(t.component_class_code, t.event_class_code) AS class_code"
        ),
    )
    return _frame(session, sql, {"base": base, "draft": draft})


def household_owner_changes(session: Session, *, base: int, draft: int) -> pd.DataFrame:
    """Residential buildings whose responsibility grid differs between the plans, with their households."""
    sql = _OWNER_CHANGES.format(
        table="residential_building",
        where="true",
        columns="t.community_code, t.households",
    )
    return _frame(session, sql, {"base": base, "draft": draft})


def station_grids(session: Session, *, plan: int) -> pd.DataFrame:
    """Per station: its responsibility grid codes and households in a plan."""
    return _frame(
        session,
        """
        SELECT s.id AS station_id, s.name, array_agg(r.code ORDER BY r.code) AS grids,
               coalesce(sum(r.households), 0)::bigint AS households
        FROM responsibility_grid r JOIN station s ON s.id = r.station_id
        WHERE r.plan_id = :plan GROUP BY s.id, s.name
        """,
        {"plan": plan},
    )


def grid_shapes(session: Session, *, plan: int, codes: list[str]) -> pd.DataFrame:
    """GeoJSON of some responsibility grids of a plan, simplified to about a metre for a map."""
    return _frame(
        session,
        """
        SELECT r.code, r.community_code, r.households,
               ST_AsGeoJSON(ST_SimplifyPreserveTopology(r.geom, 0.00001), 6) AS geojson
        FROM responsibility_grid r WHERE r.plan_id = :plan AND r.code = ANY(:codes) ORDER BY r.code
        """,
        {"plan": plan, "codes": codes},
    )
