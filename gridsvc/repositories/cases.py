"""Cases: the SQL behind intake, routing, duplicates, transitions and the case lists."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from geoalchemy2.elements import WKTElement
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from gridsvc.db.models import STORAGE_SRID, Case, CaseEvent, HotlineCategory, Station

# Degrees per metre is at most 1/88,000 in Jinan's latitudes (a degree of longitude at 37.6°N is 88.3 km):
# an index prefilter with this factor never drops a point that the exact geodesic test keeps.
DEGREES_PER_METRE_BOUND = 1.0 / 80_000.0


def point(lon: float, lat: float) -> WKTElement:
    """A storage-CRS point for the ORM."""
    return WKTElement(f"POINT({lon!r} {lat!r})", srid=STORAGE_SRID)


@dataclass(frozen=True)
class SnappedComponent:
    """The component a case names: the nearest one of its class within the snap distance."""

    id: int
    code: str
    name: str | None
    maintainer_department_code: str | None
    owner_department_code: str | None
    lon: float
    lat: float
    distance_m: float


_SNAP_COLUMNS = """
    c.id, c.code, c.name, c.maintainer_department_code, c.owner_department_code,
    ST_X(cp) AS lon, ST_Y(cp) AS lat,
    ST_Distance(c.geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490)::geography) AS distance_m
"""


def nearest_component(
    session: Session, class_code: str, lon: float, lat: float, max_m: float
) -> SnappedComponent | None:
    """The current, in-use component of a class nearest to a point, if one is within ``max_m`` metres."""
    row = session.execute(
        text(
            f"""
            WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) AS g)
            SELECT {_SNAP_COLUMNS}
            FROM component c, pt, LATERAL ST_ClosestPoint(c.geom, pt.g) AS cp
            WHERE c.class_code = :cls AND c.valid_to IS NULL AND c.in_use
              AND ST_DWithin(c.geom, pt.g, :deg)
              AND ST_DWithin(c.geom::geography, pt.g::geography, :m)
            ORDER BY c.geom <-> pt.g, c.code
            LIMIT 1
            """
        ),
        {"lon": lon, "lat": lat, "cls": class_code, "m": max_m, "deg": max_m * DEGREES_PER_METRE_BOUND},
    ).one_or_none()
    return SnappedComponent(*row) if row else None


def component_by_code(
    session: Session, code: str, lon: float, lat: float
) -> tuple[SnappedComponent, str] | None:
    """A current component by its code (Open311 service_object_id) with its class."""
    row = session.execute(
        text(
            f"""
            WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) AS g)
            SELECT {_SNAP_COLUMNS}, c.class_code
            FROM component c, pt, LATERAL ST_ClosestPoint(c.geom, pt.g) AS cp
            WHERE c.code = :code AND c.valid_to IS NULL
            """
        ),
        {"lon": lon, "lat": lat, "code": code},
    ).one_or_none()
    if row is None:
        return None
    return SnappedComponent(*row[:-1]), str(row[-1])


@dataclass(frozen=True)
class TimeLimit:
    """One stage's limit for a case class (the class's own rule, else the kind's default)."""

    rule_id: int
    stage: str
    value: float
    unit: str
    handling_level: str | None
    class_specific: bool


def time_limits(
    session: Session, kind: str, class_code: str, severity: str = "normal"
) -> dict[str, TimeLimit]:
    """Per stage, the most specific time-limit rule: this class and severity, else the kind's default."""
    rows = session.execute(
        text(
            """
            SELECT DISTINCT ON (stage)
                   id, stage, limit_value, limit_unit, handling_level, class_code IS NOT NULL
            FROM time_limit_rule
            WHERE case_kind = :kind AND (class_code = :cls OR class_code IS NULL)
              AND severity IN (:sev, 'normal') AND area_type = 'any'
            ORDER BY stage, (class_code IS NOT NULL) DESC, (severity = :sev) DESC, id
            """
        ),
        {"kind": kind, "cls": class_code, "sev": severity},
    ).all()
    return {
        r[1]: TimeLimit(
            rule_id=r[0], stage=r[1], value=float(r[2]), unit=r[3], handling_level=r[4], class_specific=r[5]
        )
        for r in rows
    }


def calendar_rows(session: Session) -> tuple[list[tuple[int, dt.time, dt.time]], list[tuple[dt.date, bool]]]:
    """The working periods and the calendar exceptions."""
    periods = [
        (int(r[0]), r[1], r[2])
        for r in session.execute(text("SELECT weekday, start_time, end_time FROM working_period")).all()
    ]
    days = [
        (r[0], bool(r[1])) for r in session.execute(text("SELECT day, is_working FROM calendar_day")).all()
    ]
    return periods, days


def find_open_duplicate(
    session: Session,
    *,
    kind: str,
    class_code: str,
    component_id: int | None,
    lon: float,
    lat: float,
    radius_m: float,
    reported_at: dt.datetime,
    window: dt.timedelta,
    exclude_id: int | None = None,
) -> tuple[int, str, float] | None:
    """The nearest open, original case of the same class reported within ``window`` of ``reported_at``
    (before or after it) that is about the same thing: the same component when the report names one,
    else one naming none within the radius."""
    class_column = "component_class_code" if kind == "component" else "event_class_code"
    # Two lamps ten metres apart are two cases, one lamp reported from both ends of a street is one: a
    # named component decides, and the radius only stands in for it when neither report names one.
    same_thing = (
        "c.component_id = :component"
        if component_id is not None
        else """c.component_id IS NULL
              AND ST_DWithin(c.geom, pt.g, :deg)
              AND ST_DWithin(c.geom::geography, pt.g::geography, :m)"""
    )
    row = session.execute(
        text(
            f"""
            WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) AS g)
            SELECT c.id, c.request_code, ST_Distance(c.geom::geography, pt.g::geography) AS d
            FROM case_record c, pt
            WHERE c.kind = :kind AND c.{class_column} = :cls
              AND c.status NOT IN ('closed', 'rejected') AND c.duplicate_of_id IS NULL
              -- Both ways: a hotline file loads old orders after newer cases were reported.
              AND c.reported_at BETWEEN :earliest AND :latest AND c.id IS DISTINCT FROM :exclude
              AND {same_thing}
            ORDER BY d, c.id LIMIT 1
            """
        ),
        {
            "lon": lon,
            "lat": lat,
            "kind": kind,
            "cls": class_code,
            "component": component_id,
            "earliest": reported_at - window,
            "latest": reported_at + window,
            "exclude": exclude_id,
            "m": radius_m,
            "deg": radius_m * DEGREES_PER_METRE_BOUND,
        },
    ).one_or_none()
    return (int(row[0]), str(row[1]), float(row[2])) if row else None


def next_request_seq(session: Session, day: dt.date) -> int:
    """The next request-code sequence of a day; the row lock serialises concurrent intakes of that day."""
    low, high = "JN" + day.strftime("%Y%m%d"), "JN" + (day + dt.timedelta(days=1)).strftime("%Y%m%d")
    value = session.execute(
        text(
            """
            INSERT INTO request_counter (day, last_seq)
            VALUES (:day, 1 + coalesce((
                SELECT max(substr(request_code, 11)::int) FROM case_record
                WHERE request_code >= :low AND request_code < :high), 0))
            ON CONFLICT (day) DO UPDATE SET last_seq = request_counter.last_seq + 1
            RETURNING last_seq
            """
        ),
        {"day": day, "low": low, "high": high},
    ).scalar_one()
    return int(value)


def add_case(session: Session, case: Case) -> Case:
    """Insert a case (flushed, so its id is known)."""
    session.add(case)
    session.flush()
    return case


def add_event(session: Session, case: Case, **values: Any) -> CaseEvent:
    """Append an event to a case's history with the next sequence number."""
    seq = session.execute(
        select(func.coalesce(func.max(CaseEvent.seq), 0)).where(CaseEvent.case_id == case.id)
    ).scalar_one()
    event = CaseEvent(case_id=case.id, seq=int(seq) + 1, **values)
    session.add(event)
    session.flush()
    return event


def case_by_code(session: Session, request_code: str, *, for_update: bool = False) -> Case | None:
    """One case by its request code; ``for_update`` locks it so two transitions cannot interleave."""
    if "\x00" in request_code:
        return None  # no code holds NUL, and PostgreSQL's driver refuses to send one
    query = select(Case).where(Case.request_code == request_code)
    if for_update:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def case_by_external_ref(session: Session, channel: str, external_ref: str) -> Case | None:
    """The case a channel already sent under this order number."""
    return session.execute(
        select(Case).where(Case.channel == channel, Case.external_ref == external_ref)
    ).scalar_one_or_none()


def intake_event(session: Session, case_id: int) -> CaseEvent | None:
    """A case's first event: who took it in, and what it said then."""
    return (
        session.execute(
            select(CaseEvent)
            .where(CaseEvent.case_id == case_id, CaseEvent.action == "intake")
            .order_by(CaseEvent.seq)
        )
        .scalars()
        .first()
    )


def case_events(session: Session, case_id: int) -> list[CaseEvent]:
    """A case's history in order."""
    return list(
        session.execute(
            select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq)
        ).scalars()
    )


def last_event_at(session: Session, case_id: int, action: str) -> dt.datetime | None:
    """When a case last took a step (e.g. when it was parked)."""
    return session.execute(
        select(func.max(CaseEvent.at)).where(CaseEvent.case_id == case_id, CaseEvent.action == action)
    ).scalar_one_or_none()


def case_codes(session: Session, ids: list[int]) -> dict[int, str]:
    """Request codes of cases by id."""
    if not ids:
        return {}
    rows = session.execute(select(Case.id, Case.request_code).where(Case.id.in_(ids))).all()
    return {int(r[0]): str(r[1]) for r in rows}


def station_summary(session: Session, station_id: int) -> dict[str, Any] | None:
    """A station's code, name and phone, as a case shows whom it went to; None if there is none."""
    row = session.execute(
        select(Station.code, Station.name, Station.phone).where(Station.id == station_id)
    ).one_or_none()
    return None if row is None else {"code": row[0], "name": row[1], "phone": row[2]}


def case_point(session: Session, case_id: int) -> tuple[float, float]:
    """A case's location (CGCS2000 lon/lat)."""
    row = session.execute(
        text("SELECT ST_X(geom), ST_Y(geom) FROM case_record WHERE id = :id"), {"id": case_id}
    ).one()
    return float(row[0]), float(row[1])


def overdue_cases(session: Session, now: dt.datetime) -> list[Case]:
    """Cases being handled whose deadline has passed and that can still go up a level (locked)."""
    return list(
        session.execute(
            select(Case)
            .where(
                Case.status.in_(("dispatched", "in_progress")),
                Case.deadline < now,
                Case.handling_level.is_distinct_from("city"),
            )
            .order_by(Case.deadline, Case.id)
            .with_for_update(skip_locked=True)
        ).scalars()
    )


def hotline_categories(session: Session) -> dict[str, tuple[str, str]]:
    """Category text -> (case kind, class code)."""
    rows = session.execute(select(HotlineCategory)).scalars()
    return {r.category_text: (r.case_kind, r.class_code) for r in rows}


def set_hotline_category(session: Session, category_text: str, kind: str, class_code: str) -> None:
    """Add or change a category mapping."""
    existing = session.get(HotlineCategory, category_text)
    if existing is None:
        session.add(HotlineCategory(category_text=category_text, case_kind=kind, class_code=class_code))
    else:
        existing.case_kind, existing.class_code = kind, class_code
    session.flush()


def delete_hotline_category(session: Session, category_text: str) -> bool:
    """Remove a category mapping; False when there was none."""
    existing = session.get(HotlineCategory, category_text)
    if existing is None:
        return False
    session.delete(existing)
    session.flush()
    return True


def unit_grid_point(session: Session, code: str, plan_id: int | None) -> tuple[float, float] | None:
    """A point surely inside a unit grid (of the plan, else the active plan): where a reassigned case goes."""
    row = session.execute(
        text(
            """
            SELECT ST_X(p), ST_Y(p) FROM unit_grid u
            JOIN grid_plan g ON g.id = u.plan_id, LATERAL ST_PointOnSurface(u.geom) AS p
            WHERE u.code = :code AND (u.plan_id = :plan OR (:plan IS NULL AND g.status = 'active'))
            """
        ),
        {"code": code, "plan": plan_id},
    ).one_or_none()
    return (float(row[0]), float(row[1])) if row else None
