"""Evaluation figures per grid, community, street or district over the cases registered in a period."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

# level -> (key expression, name expression, joins)
_GROUPS: dict[str, tuple[str, str, str]] = {
    "city": ("'city'", "'全市'", ""),
    "district": ("c.district_code", "d.name", "LEFT JOIN district d ON d.code = c.district_code"),
    "street": ("c.street_code", "s.name", "LEFT JOIN street s ON s.code = c.street_code"),
    "community": ("c.community_code", "m.name", "LEFT JOIN community m ON m.code = c.community_code"),
    "grid": ("r.code", "r.name", "LEFT JOIN responsibility_grid r ON r.id = c.responsibility_grid_id"),
}
LEVELS = tuple(_GROUPS)


def monthly_figures(
    session: Session, level: str, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    """Counts and times per group for the cases registered in [start, end)."""
    key, name, join = _GROUPS[level]
    sql = f"""
        WITH cohort AS (
            SELECT DISTINCT e.case_id FROM case_event e
            WHERE e.action = 'register' AND e.at >= :start AND e.at < :end
        ), reworks AS (
            SELECT e.case_id, count(*) AS n FROM case_event e JOIN cohort USING (case_id)
            WHERE e.action = 'rework' GROUP BY e.case_id
        ), dispatches AS (
            SELECT DISTINCT e.case_id FROM case_event e JOIN cohort USING (case_id)
            WHERE e.action = 'dispatch'
        )
        SELECT {key} AS code, {name} AS name,
               count(*) AS registered,
               count(dp.case_id) AS dispatched,
               count(*) FILTER (WHERE c.status = 'parked') AS deferred,
               count(*) FILTER (WHERE c.status = 'closed') AS closed,
               count(*) FILTER (
                   WHERE c.status = 'closed' AND c.handled_at IS NOT NULL
                     -- by the deadline set at dispatch (rows loaded without it: the working one)
                     AND (coalesce(c.on_time_deadline, c.handle_deadline) IS NULL
                          OR c.handled_at <= coalesce(c.on_time_deadline, c.handle_deadline))
               ) AS closed_on_time,
               coalesce(sum(rw.n), 0) AS rework_count,
               percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY extract(epoch FROM c.handled_at - c.dispatched_at) / 3600.0
               ) FILTER (WHERE c.handled_at IS NOT NULL AND c.dispatched_at IS NOT NULL)
                 AS median_handling_hours
        FROM cohort JOIN case_record c ON c.id = cohort.case_id
        LEFT JOIN reworks rw ON rw.case_id = c.id
        LEFT JOIN dispatches dp ON dp.case_id = c.id
        {join}
        GROUP BY 1, 2
        ORDER BY 1 NULLS LAST
    """
    result = session.execute(text(sql), {"start": start, "end": end})
    return [dict(row._mapping) for row in result]
