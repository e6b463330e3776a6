"""Open311 GeoReport v2: the SQL behind GET requests (filters, bbox, paging with a total) and discovery.

Nothing here selects the reporter's contact (``case_record.reporter_contact``): these rows are what
the public may read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridsvc.db.models import OPEN311_CLOSED_STATUSES, STORAGE_SRID

# History notes a citizen may read as status_notes: why a case was rejected, closed, sent back, parked or
# merged. Reassignment notes are the dispatchers' own business.
PUBLIC_NOTE_ACTIONS = ("reject", "report_back", "rework", "verify", "close", "park", "link_duplicate")


@dataclass(frozen=True)
class RequestFilter:
    """What GET requests asks for; every part is optional and they combine with AND.

    ``request_codes`` replaces every other filter (GeoReport v2: service_request_id "overrides all other
    arguments"); the bbox is in storage lon/lat (CGCS2000); the date range is inclusive.
    """

    request_codes: tuple[str, ...] | None = None
    component_classes: tuple[str, ...] = ()
    event_classes: tuple[str, ...] = ()
    open311_statuses: tuple[str, ...] = ()
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    bbox: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class RequestRow:
    """One case as Open311 shows it to anyone: no reporter contact."""

    request_code: str
    kind: str
    class_code: str
    class_name: str
    status: str
    description: str | None
    address: str | None
    media_url: str | None
    department_name: str | None
    reported_at: dt.datetime
    updated_at: dt.datetime
    handle_deadline: dt.datetime | None
    lon: float
    lat: float
    component_code: str | None
    unit_grid_code: str | None
    duplicate_of: str | None
    status_note: str | None


_SELECT = """
    SELECT c.request_code, c.kind,
           coalesce(c.component_class_code, c.event_class_code) AS class_code,
           coalesce(cc.name_zh, ec.name_zh) AS class_name,
           c.status, c.description, c.address, c.media_url, d.name_zh AS department_name,
           c.reported_at, c.updated_at, c.handle_deadline,
           ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
           comp.code AS component_code, u.code AS unit_grid_code, dup.request_code AS duplicate_of,
           (SELECT e.note FROM case_event e
             WHERE e.case_id = c.id AND e.note IS NOT NULL AND e.action = ANY(:note_actions)
             ORDER BY e.seq DESC LIMIT 1) AS status_note
    FROM case_record c
    LEFT JOIN component_class cc ON cc.code = c.component_class_code
    LEFT JOIN event_class ec ON ec.code = c.event_class_code
    LEFT JOIN department d ON d.code = c.department_code
    LEFT JOIN component comp ON comp.id = c.component_id
    LEFT JOIN unit_grid u ON u.id = c.unit_grid_id
    LEFT JOIN case_record dup ON dup.id = c.duplicate_of_id
"""


def _where(query: RequestFilter) -> tuple[str, dict[str, Any]]:
    """The WHERE clause and its parameters for a filter (every value bound, nothing spliced)."""
    if query.request_codes is not None:
        return "WHERE c.request_code = ANY(:codes)", {"codes": list(query.request_codes)}
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if query.component_classes or query.event_classes:
        clauses.append("(c.component_class_code = ANY(:ccls) OR c.event_class_code = ANY(:ecls))")
        params["ccls"] = list(query.component_classes)
        params["ecls"] = list(query.event_classes)
    statuses = set(query.open311_statuses)
    if statuses == {"open"}:
        clauses.append("c.status <> ALL(:closed)")
        params["closed"] = list(OPEN311_CLOSED_STATUSES)
    elif statuses == {"closed"}:
        clauses.append("c.status = ANY(:closed)")
        params["closed"] = list(OPEN311_CLOSED_STATUSES)
    if query.start is not None:
        clauses.append("c.reported_at >= :start")
        params["start"] = query.start
    if query.end is not None:
        clauses.append("c.reported_at <= :end")
        params["end"] = query.end
    if query.bbox is not None:
        # && compares bounding boxes; a point's box is the point, so this is exact containment (GiST index).
        clauses.append(f"c.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, {STORAGE_SRID})")
        params.update(dict(zip(("x0", "y0", "x1", "y1"), query.bbox, strict=True)))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _row(values: Any) -> RequestRow:
    return RequestRow(
        request_code=values.request_code,
        kind=values.kind,
        class_code=values.class_code,
        class_name=values.class_name,
        status=values.status,
        description=values.description,
        address=values.address,
        media_url=values.media_url,
        department_name=values.department_name,
        reported_at=values.reported_at,
        updated_at=values.updated_at,
        handle_deadline=values.handle_deadline,
        lon=float(values.lon),
        lat=float(values.lat),
        component_code=values.component_code,
        unit_grid_code=values.unit_grid_code,
        duplicate_of=values.duplicate_of,
        status_note=values.status_note,
    )


def find_requests(session: Session, query: RequestFilter, *, limit: int, offset: int) -> list[RequestRow]:
    """One page of the cases a filter matches, newest first."""
    where, params = _where(query)
    rows = session.execute(
        text(f"{_SELECT} {where} ORDER BY c.reported_at DESC, c.id DESC LIMIT :limit OFFSET :offset"),
        {**params, "note_actions": list(PUBLIC_NOTE_ACTIONS), "limit": limit, "offset": offset},
    ).all()
    return [_row(r) for r in rows]


def count_requests(session: Session, query: RequestFilter) -> int:
    """How many cases a filter matches (the total behind the pages)."""
    where, params = _where(query)
    return int(session.execute(text(f"SELECT count(*) FROM case_record c {where}"), params).scalar_one())


def get_request(session: Session, request_code: str) -> RequestRow | None:
    """One case by its request code."""
    rows = find_requests(session, RequestFilter(request_codes=(request_code,)), limit=1, offset=0)
    return rows[0] if rows else None


def services_changed_at(session: Session) -> dt.datetime | None:
    """When the service list last changed through the service (a class or department added or edited)."""
    value = session.execute(
        text("SELECT max(at) FROM audit_log WHERE entity IN ('component_class', 'event_class', 'department')")
    ).scalar_one()
    return value if isinstance(value, dt.datetime) else None
