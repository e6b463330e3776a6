"""What comparing two plans reads: grids matched by code, and who owns each point in either plan."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridsvc.repositories.grid_rule import GridRule, nearest_unit_grid, unit_grids_at

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


# The owner of an item in either plan is found by the rule activation applies (repositories/grid_rule):
# the unit grid at its representative point, the smallest code on a shared edge, else the nearest within
# nearest_m; its responsibility grid owns it. Only items near a community whose grids changed are asked:
# grids elsewhere are copied forward whole (same code, shape and owner), so an item farther than nearest_m
# from every changed grid gets the same answer from both plans.
#
# The candidates are the items whose representative point lies in the *changed area*: each changed
# community's box (its grids in both plans) widened by nearest_m, a little more (the longitude margin is
# taken at the box's latitude farthest from the equator, and 1e-7 degrees, about a centimetre, covers the
# union's rounding): a superset. Every grid holding a candidate meets that area, so "the grid at the point"
# is asked only of those grids, set-based (grid_rule.unit_grids_at). Asked one item and plan at a time
# (grid_rule.unit_grid_of), after a join of every changed grid's widened box with the items, a whole-city
# redraw's 3.5 million components did not finish in 24 minutes. Only an item in no grid asks for the
# nearest one.
_CHANGED_AREA = """
    SELECT ST_Union(ST_SetSRID(ST_Expand(
        ext,
        1e-7 + :nearest_m / (:metres_per_degree * cos(radians(least(89, greatest(abs(ST_YMin(ext)),
                                                                               abs(ST_YMax(ext))))))),
        1e-7 + :nearest_m / :metres_per_degree
    )::geometry, srid)) AS area
    FROM (
        SELECT ST_Extent(u.geom)::box2d AS ext, min(ST_SRID(u.geom)) AS srid FROM unit_grid u
        WHERE u.plan_id IN (:base, :draft) AND u.community_code IN (SELECT code FROM changed_communities)
        GROUP BY u.community_code
    ) AS boxes
"""
_MEETS_CHANGED_AREA = "ST_Intersects(u.geom, (SELECT area FROM changed_area))"
_OWNER_CHANGES = """
    WITH changed_communities AS (
        SELECT DISTINCT coalesce(d.community_code, b.community_code) AS code
        FROM (SELECT * FROM responsibility_grid WHERE plan_id = :base) AS b
        FULL JOIN (SELECT * FROM responsibility_grid WHERE plan_id = :draft) AS d ON d.code = b.code
        WHERE b.id IS NULL OR d.id IS NULL OR NOT b.geom = d.geom
    ),
    changed_area AS ({changed_area}),
    inside_before AS ({inside_before}),
    inside_after AS ({inside_after}),
    candidates AS (
        SELECT t.id, rep.p
        FROM {table} t
        CROSS JOIN LATERAL (SELECT ST_PointOnSurface(t.geom) AS p) AS rep
        WHERE t.geom && (SELECT area FROM changed_area) AND {where}
          AND ST_Intersects((SELECT area FROM changed_area), rep.p)
    )
    SELECT t.id, {columns}, rb.code AS before, ra.code AS after
    FROM candidates c
    JOIN {table} t ON t.id = c.id
    LEFT JOIN inside_before ib ON ib.id = c.id
    LEFT JOIN LATERAL ({nearest_before}) AS nb ON true
    LEFT JOIN responsibility_grid rb
        ON rb.id = CASE WHEN ib.id IS NOT NULL THEN ib.responsibility_grid_id
                        ELSE nb.responsibility_grid_id END
    LEFT JOIN inside_after ia ON ia.id = c.id
    LEFT JOIN LATERAL ({nearest_after}) AS na ON true
    LEFT JOIN responsibility_grid ra
        ON ra.id = CASE WHEN ia.id IS NOT NULL THEN ia.responsibility_grid_id
                        ELSE na.responsibility_grid_id END
    WHERE rb.code IS DISTINCT FROM ra.code
    ORDER BY t.id
"""


def _owner_changes_sql(table: str, where: str, columns: str) -> str:
    return _OWNER_CHANGES.format(
        changed_area=_CHANGED_AREA,
        inside_before=unit_grids_at(table, where, "base", grids_where=_MEETS_CHANGED_AREA),
        inside_after=unit_grids_at(table, where, "draft", grids_where=_MEETS_CHANGED_AREA),
        nearest_before=nearest_unit_grid("c.p", "base", when="ib.id IS NULL"),
        nearest_after=nearest_unit_grid("c.p", "draft", when="ia.id IS NULL"),
        table=table,
        where=where,
        columns=columns,
    )


def _rule_params(rule: GridRule, base: int, draft: int) -> dict[str, Any]:
    params = rule.params()
    del params["plan"]
    return {**params, "base": base, "draft": draft}


def component_owner_changes(session: Session, rule: GridRule, *, base: int, draft: int) -> pd.DataFrame:
    """Current components (void ones too: activation gives them their grids as well) whose responsibility
    grid differs between the plans."""
    sql = _owner_changes_sql(
        table="component",
        where="t.valid_to IS NULL",
        columns="t.code, t.class_code, t.name",
    )
    return _frame(session, sql, _rule_params(rule, base, draft))


def open_case_owner_changes(session: Session, rule: GridRule, *, base: int, draft: int) -> pd.DataFrame:
    """Open cases (not closed, not rejected) whose responsibility grid differs between the plans."""
    sql = _owner_changes_sql(
        table="case_record",
        where="t.status NOT IN ('closed', 'rejected') AND t.geom IS NOT NULL",
        columns=(
            "t.request_code AS code, t.status,"
            " coalesce(t.component_class_code, t.event_class_code) AS class_code"
        ),
    )
    return _frame(session, sql, _rule_params(rule, base, draft))


def household_owner_changes(session: Session, rule: GridRule, *, base: int, draft: int) -> pd.DataFrame:
    """Residential buildings whose responsibility grid differs between the plans, with their households."""
    sql = _owner_changes_sql(
        table="residential_building",
        where="true",
        columns="t.community_code, t.households",
    )
    return _frame(session, sql, _rule_params(rule, base, draft))


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
