"""Grid plans: the SQL of checking and activating a plan and moving components and open cases to it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridsvc.repositories.grid_rule import GridRule, nearest_unit_grid, unit_grid_of, unit_grids_at

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


# The owner by the import's rule (repositories/grid_rule.py): the grid at each component's point, found
# from the grids' side for all of them at once; the nearest grid only for a component in none.
_REGRID_COMPONENTS = f"""
    WITH inside AS ({unit_grids_at("component", "t.valid_to IS NULL")})
    UPDATE component AS t
    SET unit_grid_id = CASE WHEN i.id IS NOT NULL THEN i.unit_grid_id ELSE nearest.id END,
        responsibility_grid_id = CASE WHEN i.id IS NOT NULL THEN i.responsibility_grid_id
                                      ELSE nearest.responsibility_grid_id END
    FROM component AS t2
    LEFT JOIN inside i ON i.id = t2.id
    LEFT JOIN LATERAL ({nearest_unit_grid("ST_PointOnSurface(t2.geom)", when="i.id IS NULL")}) AS nearest
        ON true
    WHERE t.id = t2.id AND t2.valid_to IS NULL
"""


def regrid_components(session: Session, rule: GridRule) -> int:
    """Give every current component the unit and responsibility grid of the rule's plan."""
    result = session.execute(text(_REGRID_COMPONENTS), rule.params())
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def regrid_open_cases(session: Session, rule: GridRule, *, actor: str, note: str) -> tuple[int, int]:
    """Give every open case the unit and responsibility grid of the rule's plan, and the owner that comes
    with them (community, street, district, station, as intake routes a case: the responsibility grid's
    station, else the community's first), in its columns and its ``routing.owner``. A case whose owner
    changes (another unit grid code, community or station; the code of the grid it was in, or its
    routing's for a case kept in none) gets a ``reassign`` event by ``actor`` with
    ``note``, keeping what it replaced (``before``, ``previous_routing``) as a dispatcher's reassignment
    does. Closed cases keep their history. A case the rule finds no grid for keeps its community, station
    and routing. Returns (cases re-gridded, cases whose owner changed)."""
    sql = f"""
        WITH owner AS (
            SELECT t2.id, g.unit_grid_id, g.responsibility_grid_id, u.code AS unit_grid_code,
                   r.code AS responsibility_grid_code, c.code AS community_code, s.code AS street_code,
                   s.district_code, st.id AS station_id
            FROM case_record t2
            {unit_grid_of("t2.geom")}
            LEFT JOIN unit_grid u ON u.id = g.unit_grid_id
            LEFT JOIN community c ON c.code = u.community_code
            LEFT JOIN street s ON s.code = c.street_code
            LEFT JOIN responsibility_grid r ON r.id = g.responsibility_grid_id
            LEFT JOIN LATERAL (
                SELECT id FROM station
                WHERE id = r.station_id OR (r.station_id IS NULL AND community_code = u.community_code)
                ORDER BY (id = r.station_id) DESC NULLS LAST, id LIMIT 1
            ) st ON true
            WHERE t2.status NOT IN ('closed', 'rejected')
        ),
        regridded AS (
            UPDATE case_record AS t
            SET plan_id = :plan, unit_grid_id = o.unit_grid_id,
                responsibility_grid_id = o.responsibility_grid_id,
                community_code = coalesce(o.community_code, t.community_code),
                street_code = coalesce(o.street_code, t.street_code),
                district_code = coalesce(o.district_code, t.district_code),
                station_id = CASE WHEN o.unit_grid_id IS NULL THEN t.station_id ELSE o.station_id END,
                routing = CASE WHEN o.unit_grid_id IS NULL THEN t.routing ELSE jsonb_set(
                    t.routing, '{{owner}}',
                    coalesce(t.routing -> 'owner', '{{}}'::jsonb) || jsonb_build_object(
                        'unit_grid_code', o.unit_grid_code,
                        'responsibility_grid_code', o.responsibility_grid_code,
                        'plan_id', CAST(:plan AS integer),
                        'regridded', :note
                    )
                ) END
            FROM owner o, case_record AS old
            WHERE t.id = o.id AND old.id = t.id
            RETURNING t.id, t.status, old.routing AS old_routing,
                      coalesce((SELECT ou.code FROM unit_grid ou WHERE ou.id = old.unit_grid_id),
                               old.routing -> 'owner' ->> 'unit_grid_code') AS old_unit_grid_code,
                      o.unit_grid_code, old.community_code AS old_community_code,
                      t.community_code, old.station_id AS old_station_id, t.station_id,
                      old.unit_grid_id AS old_unit_grid_id,
                      old.responsibility_grid_id AS old_responsibility_grid_id,
                      old.street_code AS old_street_code, old.district_code AS old_district_code,
                      old.plan_id AS old_plan_id
        ),
        reassigned AS (
            INSERT INTO case_event (case_id, seq, at, action, from_status, to_status, actor, note, details)
            SELECT x.id, coalesce((SELECT max(e.seq) FROM case_event e WHERE e.case_id = x.id), 0) + 1,
                   now(), 'reassign', x.status, x.status, :actor, :note,
                   jsonb_build_object(
                       'before', jsonb_build_object(
                           'unit_grid_id', x.old_unit_grid_id,
                           'responsibility_grid_id', x.old_responsibility_grid_id,
                           'community_code', x.old_community_code, 'street_code', x.old_street_code,
                           'district_code', x.old_district_code, 'station_id', x.old_station_id,
                           'plan_id', x.old_plan_id
                       ),
                       'previous_routing', x.old_routing
                   )
            FROM regridded x
            WHERE x.unit_grid_code IS NOT NULL AND (
                x.old_unit_grid_code IS DISTINCT FROM x.unit_grid_code
                OR x.old_community_code IS DISTINCT FROM x.community_code
                OR x.old_station_id IS DISTINCT FROM x.station_id
            )
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM regridded) AS regridded, (SELECT count(*) FROM reassigned) AS reassigned
    """
    row = session.execute(text(sql), {**rule.params(), "actor": actor, "note": note}).one()
    return int(row.regridded), int(row.reassigned)
