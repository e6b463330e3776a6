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


# Owners are compared only in communities whose grids changed (a community whose grids are all kept
# keeps every point in it). The owner at a point is the responsibility grid of the unit grid there,
# smallest unit grid code on a shared edge: the rule of locate and import. The joins run from the unit
# grids to the points (by the points' spatial index), so PostGIS prepares each polygon once for all the
# points inside it, instead of testing every point against a fresh polygon.
_OWNER = """
    SELECT DISTINCT ON (t.id) t.id, r.code
    FROM unit_grid u
    JOIN responsibility_grid r ON r.id = u.responsibility_grid_id
    JOIN {table} t ON ST_Intersects(u.geom, t.geom)
    WHERE u.plan_id = :{plan} AND u.community_code IN (SELECT code FROM changed_communities) AND {where}
      AND (GeometryType(t.geom) = 'POINT' OR ST_Intersects(u.geom, ST_PointOnSurface(t.geom)))
    ORDER BY t.id, u.code
"""
_OWNER_CHANGES = """
    WITH changed_communities AS (
        SELECT DISTINCT coalesce(d.community_code, b.community_code) AS code
        FROM (SELECT * FROM responsibility_grid WHERE plan_id = :base) AS b
        FULL JOIN (SELECT * FROM responsibility_grid WHERE plan_id = :draft) AS d ON d.code = b.code
        WHERE b.id IS NULL OR d.id IS NULL OR NOT b.geom = d.geom
    ),
    owner_before AS ({before}),
    owner_after AS ({after})
    SELECT t.id, {columns}, b.code AS before, a.code AS after
    FROM owner_before b
    FULL JOIN owner_after a ON a.id = b.id
    JOIN {table} t ON t.id = coalesce(a.id, b.id)
    WHERE b.code IS DISTINCT FROM a.code
    ORDER BY t.id
"""


def _owner_changes_sql(table: str, where: str, columns: str) -> str:
    return _OWNER_CHANGES.format(
        before=_OWNER.format(table=table, plan="base", where=where),
        after=_OWNER.format(table=table, plan="draft", where=where),
        table=table,
        columns=columns,
    )


def component_owner_changes(session: Session, *, base: int, draft: int) -> pd.DataFrame:
    """Current components whose responsibility grid differs between the plans."""
    sql = _owner_changes_sql(
        table="component",
        where="t.valid_to IS NULL AND t.in_use",
        columns="t.code, t.class_code, t.name",
    )
    return _frame(session, sql, {"base": base, "draft": draft})


def open_case_owner_changes(session: Session, *, base: int, draft: int) -> pd.DataFrame:
    """Open cases (not closed, not rejected) whose responsibility grid differs between the plans."""
    sql = _owner_changes_sql(
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
    sql = _owner_changes_sql(
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
