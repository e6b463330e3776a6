"""What comparing two plans reads: grids matched by code, and who owns each point in either plan."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridsvc.repositories.grid_rule import GridRule, unit_grid_of

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


# The owner of a point in either plan is found by the rule activation applies (repositories/grid_rule):
# the unit grid at its representative point, the smallest code on a shared edge, else the nearest within
# nearest_m; its responsibility grid owns it. Only items within nearest_m of a unit grid of a community
# whose grids changed are asked: grids elsewhere are copied forward whole (same code, shape and owner), so
# an item farther from every changed grid gets the same answer from both plans. The box test is wider than
# nearest_m (the longitude margin is taken at the grid's latitude farthest from the equator): a superset.
_CANDIDATES = """
    SELECT DISTINCT t.id
    FROM unit_grid u
    JOIN {table} t ON t.geom && ST_Expand(
        u.geom,
        :nearest_m / (:metres_per_degree * cos(radians(least(89, greatest(abs(ST_YMin(u.geom)),
                                                                          abs(ST_YMax(u.geom))))))),
        :nearest_m / :metres_per_degree
    )
    WHERE u.plan_id IN (:base, :draft) AND u.community_code IN (SELECT code FROM changed_communities)
      AND {where}
"""
_OWNER_CHANGES = """
    WITH changed_communities AS (
        SELECT DISTINCT coalesce(d.community_code, b.community_code) AS code
        FROM (SELECT * FROM responsibility_grid WHERE plan_id = :base) AS b
        FULL JOIN (SELECT * FROM responsibility_grid WHERE plan_id = :draft) AS d ON d.code = b.code
        WHERE b.id IS NULL OR d.id IS NULL OR NOT b.geom = d.geom
    ),
    candidates AS ({candidates})
    SELECT t.id, {columns}, rb.code AS before, ra.code AS after
    FROM candidates c
    JOIN {table} t ON t.id = c.id
    {before}
    LEFT JOIN responsibility_grid rb ON rb.id = gb.responsibility_grid_id
    {after}
    LEFT JOIN responsibility_grid ra ON ra.id = ga.responsibility_grid_id
    WHERE rb.code IS DISTINCT FROM ra.code
    ORDER BY t.id
"""


def _owner_changes_sql(table: str, where: str, columns: str) -> str:
    return _OWNER_CHANGES.format(
        candidates=_CANDIDATES.format(table=table, where=where),
        before=unit_grid_of("t.geom", alias="gb", plan_param="base"),
        after=unit_grid_of("t.geom", alias="ga", plan_param="draft"),
        table=table,
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
