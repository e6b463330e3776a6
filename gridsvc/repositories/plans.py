"""Grid plans: the SQL of checking and activating a plan and moving components and open cases to it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridsvc.repositories.grid_rule import GridRule, unit_grid_of

# One number for "a plan is being activated": pg_try_advisory_xact_lock on it serialises activations.
ACTIVATION_LOCK = 0x67726964  # "grid"


def try_activation_lock(session: Session) -> bool:
    """Take the activation lock for this transaction; False when another activation holds it."""
    return bool(
        session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": ACTIVATION_LOCK}).scalar_one()
    )


def plan_for_update(session: Session, plan_id: int) -> dict[str, Any] | None:
    """A plan's row, locked."""
    row = session.execute(
        text("SELECT id, name, status, version, effective_from FROM grid_plan WHERE id = :id FOR UPDATE"),
        {"id": plan_id},
    ).one_or_none()
    return dict(row._mapping) if row else None


def active_plan_for_update(session: Session) -> dict[str, Any] | None:
    """The active plan's row, locked."""
    row = session.execute(
        text("SELECT id, name, effective_from FROM grid_plan WHERE status = 'active' FOR UPDATE")
    ).one_or_none()
    return dict(row._mapping) if row else None


def rule_breaks(
    session: Session, plan_id: int, *, tolerance_m2: float = 1.0, communities: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """What stops a plan from being activated: grids outside their community, split responsibility grids,
    unit grids overlapping each other, communities not covered. Each with the codes involved.
    With ``communities``, only the breaks inside those communities (a hand edit checks its own)."""
    params: dict[str, Any] = {"plan": plan_id, "tol": tolerance_m2}
    if communities is not None:
        params["communities"] = list(communities)

    def only(*columns: str) -> str:
        if communities is None:
            return ""
        return " AND (" + " OR ".join(f"{c} = ANY(:communities)" for c in columns) + ")"

    checks = {
        # The prepared "covered by" test first; the exact area outside only for the few that fail it
        # (cut in metres and stored in lon/lat, an edge may wander a few millimetres).
        "nesting": f"""
            SELECT u.code AS code, 'unit grid sticks out of community ' || u.community_code AS problem
            FROM unit_grid u JOIN community c ON c.code = u.community_code
            WHERE u.plan_id = :plan{only("u.community_code")}
              AND NOT ST_CoveredBy(u.geom, c.geom)
              AND ST_Area(ST_Difference(u.geom, c.geom)::geography) > :tol
        """,
        "contiguity": f"""
            SELECT r.code AS code,
                   'responsibility grid is ' || ST_NumGeometries(r.geom) || ' separate pieces' AS problem
            FROM responsibility_grid r WHERE r.plan_id = :plan AND ST_NumGeometries(r.geom) > 1
              {only("r.community_code")}
        """,
        # One union per community answers both: a gap is community area the union misses; an overlap is
        # unit grid area the union counts once but the grids count twice. Only communities with an
        # overlap pay for the pairwise search that names the grids. (Unit grids of different communities
        # cannot overlap: each lies inside its community, checked above, and communities do not overlap.)
        "coverage": f"""
            WITH per AS (
                SELECT community_code, ST_Union(geom) AS g, sum(ST_Area(geom::geography)) AS area_sum
                FROM unit_grid WHERE plan_id = :plan{only("community_code")}
                GROUP BY community_code
            ),
            measured AS (
                SELECT p.community_code, ST_Area(ST_Difference(c.geom, p.g)::geography) AS gap,
                       p.area_sum - ST_Area(p.g::geography) AS overlap
                FROM per p JOIN community c ON c.code = p.community_code
            ),
            gaps AS (
                SELECT 'coverage' AS rule, community_code AS code,
                       'community not covered by its unit grids' AS problem
                FROM measured WHERE gap > :tol
            ),
            overlapping AS (
                SELECT 'overlap' AS rule, a.code || ' / ' || b.code AS code, 'unit grids overlap' AS problem
                FROM measured m
                JOIN unit_grid a ON a.plan_id = :plan AND a.community_code = m.community_code
                JOIN unit_grid b ON b.plan_id = :plan AND b.community_code = m.community_code
                 AND a.id < b.id AND a.geom && b.geom AND ST_Relate(a.geom, b.geom, '2********')
                WHERE m.overlap > :tol AND ST_Area(ST_Intersection(a.geom, b.geom)::geography) > :tol
            )
            SELECT * FROM gaps UNION ALL SELECT * FROM overlapping
        """,
        "missing": f"""
            SELECT c.code AS code, 'community has no unit grid in this plan' AS problem
            FROM community c
            WHERE NOT EXISTS (SELECT 1 FROM unit_grid u WHERE u.plan_id = :plan AND u.community_code = c.code)
              {only("c.code")}
        """,
        "unassigned": f"""
            SELECT u.code AS code, 'unit grid belongs to no responsibility grid' AS problem
            FROM unit_grid u WHERE u.plan_id = :plan AND u.responsibility_grid_id IS NULL
              {only("u.community_code")}
        """,
    }
    breaks: list[dict[str, Any]] = []
    for rule, sql in checks.items():
        if rule == "coverage":
            rows = session.execute(text(f"SELECT * FROM ({sql}) AS b ORDER BY 1, 2 LIMIT 100"), params)
            breaks.extend({"rule": row.rule, "code": row.code, "problem": row.problem} for row in rows)
            continue
        for row in session.execute(text(sql + " ORDER BY 1 LIMIT 50"), params):
            breaks.append({"rule": rule, "code": row.code, "problem": row.problem})
    return breaks


def count_unit_grids(session: Session, plan_id: int) -> int:
    """Unit grids in a plan."""
    return int(
        session.execute(
            text("SELECT count(*) FROM unit_grid WHERE plan_id = :p"), {"p": plan_id}
        ).scalar_one()
    )


def retire(session: Session, plan_id: int, end: dt.date) -> None:
    """Retire a plan from ``end`` on (it answered up to the day before)."""
    session.execute(
        text("UPDATE grid_plan SET status = 'retired', effective_to = :end WHERE id = :id"),
        {"id": plan_id, "end": end},
    )


def make_active(session: Session, plan_id: int, start: dt.date) -> None:
    """Make a plan the active one from ``start``."""
    session.execute(
        text(
            "UPDATE grid_plan SET status = 'active', effective_from = :start, version = version + 1"
            " WHERE id = :id"
        ),
        {"id": plan_id, "start": start},
    )


# The owner by the import's rule (repositories/grid_rule.py).
_REGRID = """
    UPDATE {table} AS t
    SET {extra} unit_grid_id = g.unit_grid_id, responsibility_grid_id = g.responsibility_grid_id
    FROM {table} AS t2
    {grid_of}
    WHERE t.id = t2.id AND {where}
"""


def regrid_components(session: Session, rule: GridRule) -> int:
    """Give every current component the unit and responsibility grid of the rule's plan."""
    sql = _REGRID.format(
        table="component", extra="", grid_of=unit_grid_of("t2.geom"), where="t2.valid_to IS NULL"
    )
    result = session.execute(text(sql), rule.params())
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def regrid_open_cases(session: Session, rule: GridRule) -> int:
    """Give every open case the unit and responsibility grid of the rule's plan; closed cases keep their
    history."""
    sql = _REGRID.format(
        table="case_record",
        extra="plan_id = :plan,",
        grid_of=unit_grid_of("t2.geom"),
        where="t2.status NOT IN ('closed', 'rejected')",
    )
    result = session.execute(text(sql), rule.params())
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
