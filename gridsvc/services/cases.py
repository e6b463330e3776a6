"""The case loop: intake with routing and duplicate detection, then register → dispatch → handle →
report back → verify → close, with rework, reassignment, parking (挂账) and escalation.

Routing a case (on intake, and again on reassignment):
1. a component case snaps to the nearest current component of its class within the class's snap
   distance (or names one: Open311 ``service_object_id``), so a lamp case names the lamp; the owner is
   then found at the component, not at the reporter's thumb;
2. the locator (services/locate.py) gives unit grid, responsibility grid, worker, community, street,
   district and station; near-boundary, nearest-grid and territory answers need a dispatcher's
   confirmation;
3. the department is the component's maintainer, else the class's default department;
4. the handling level and the limits come from ``time_limit_rule`` (the class's own rule, else the
   kind's default), the deadlines from the working calendar (gis/workcalendar.py);
5. every decision is stored in ``case_record.routing`` with its reason, and the intake event keeps it;
6. a likely duplicate is an open case of the same component when the case names one, else of the same
   class naming none within the class's radius; both within the class's window.

Deadlines: the case's ``deadline`` is the one of its current stage: register (from intake), dispatch
(from registration), handle (from dispatch, kept in ``handle_deadline``), verify (from report-back).
Escalation moves a case whose handling deadline passed one level up (community → street → district →
city) and gives the new level a fresh handling limit from that moment; rework gives a fresh limit too.
Those fresh limits are what the handler works to, never what evaluation counts: a report-back is on time
(按期) by ``on_time_deadline``, the handling deadline set at dispatch (DOMAIN.md §4: the clock starts at
dispatch). Parking (挂账) stops both clocks: a parked case has no deadline, and unparking it moves the
handling and the on-time deadline on by the time it spent parked (working time, or elapsed time for a
limit in calendar hours), so it comes back exactly as late, or as early, as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from gis import workcalendar
from gis.workcalendar import WorkingCalendar
from gridsvc.db.models import CASE_KINDS, CHANNELS, HANDLING_LEVELS, OPEN311_CLOSED_STATUSES, Case
from gridsvc.errors import (
    ConflictError,
    FieldProblem,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from gridsvc.repositories import access as access_repo
from gridsvc.repositories import cases as repo
from gridsvc.repositories import reference as reference_repo
from gridsvc.services import locate
from gridsvc.services.access import Principal
from gridsvc.settings import Settings

INTAKE_ROLES = ("reporter", "dispatcher", "field")
SEVERITIES = ("normal", "urgent")
CONTACT_FIELDS = ("first_name", "last_name", "name", "phone", "email", "device_id", "account_id")
# Channels only some roles may claim. A 12345 work order comes in through the hotline import, which acts as
# the dispatch centre (services/hotline.py, `gridsvc intake hotline`); a citizen's app claiming the channel
# could take an order number before the real order is loaded, and the real one would be skipped.
CHANNEL_ROLES: dict[str, tuple[str, ...]] = {"hotline_12345": ("dispatcher",)}
# Open311 serves media_url publicly and the map links it: only a web address, never javascript: or data:
# (the rule Open311's own POST applies, services/open311.py).
MEDIA_URL = re.compile(r"https?://\S+")
MAX_MEDIA_URL = 2000


@dataclass(frozen=True)
class IntakeFields:
    """What the caller's request calls the fields that errors point at, so a 422 names the client's field."""

    class_code: str
    component_code: str
    x: str
    y: str

    @property
    def point(self) -> str:
        return f"{self.x}/{self.y}"


OPEN311_FIELDS = IntakeFields(
    class_code="service_code", component_code="service_object_id", x="long", y="lat"
)
CASES_API_FIELDS = IntakeFields(class_code="class_code", component_code="component_code", x="lon", y="lat")


@dataclass
class CaseIntake:
    """A new report: what, where (in which datum), through which channel, from whom; ``fields``: what the
    caller's request calls them (Open311's unless told: the Open311 and hotline doors pass none)."""

    kind: str
    class_code: str
    x: float
    y: float
    crs: str = "wgs84"
    channel: str = "open311"
    description: str | None = None
    address: str | None = None
    reporter: dict[str, str] = field(default_factory=dict)
    media_url: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    severity: str = "normal"
    component_code: str | None = None
    external_ref: str | None = None
    reported_at: dt.datetime | None = None
    fields: IntakeFields = OPEN311_FIELDS


@dataclass(frozen=True)
class IntakeResult:
    """The case made (or found again), and the open case it probably repeats."""

    case: dict[str, Any]
    created: bool
    duplicate_of: str | None


def _problem(field_name: str, message: str) -> InvalidInputError:
    return InvalidInputError(message, problems=[FieldProblem(field_name, message)])


def _calendar(session: Session, settings: Settings) -> WorkingCalendar:
    periods, days = repo.calendar_rows(session)
    return WorkingCalendar.from_rows(periods, days, ZoneInfo(settings.timezone))


def _limit_text(limit: repo.TimeLimit) -> str:
    value = f"{Decimal(str(limit.value)).normalize():f}"
    return f"{value} {limit.unit.replace('_', ' ')}"


def _due(calendar: WorkingCalendar, start: dt.datetime, limit: repo.TimeLimit | None) -> dt.datetime | None:
    if limit is None:
        return None
    return workcalendar.add_limit(calendar, start, Decimal(str(limit.value)), limit.unit)


def _class_info(
    session: Session, kind: str, class_code: str, field_name: str = "class_code"
) -> tuple[str, str | None, float, float]:
    """(name, default department, snap distance, duplicate radius) of a class, or an error naming
    ``field_name``."""
    if kind not in CASE_KINDS:
        raise _problem("kind", f"unknown case kind {kind!r}: component or event")
    if kind == "component":
        component_class = reference_repo.get_component_class(session, class_code)
        if component_class is None:
            raise _problem(field_name, f"unknown component class {class_code!r}")
        return (
            component_class.name_zh,
            component_class.default_department_code,
            float(component_class.snap_distance_m),
            float(component_class.duplicate_radius_m),
        )
    event_class = reference_repo.get_event_class(session, class_code)
    if event_class is None:
        raise _problem(field_name, f"unknown event class {class_code!r}")
    return (
        event_class.name_zh,
        event_class.default_department_code,
        0.0,
        float(event_class.duplicate_radius_m),
    )


def class_name(session: Session, kind: str, class_code: str) -> str:
    """The Chinese name of a case class, or InvalidInputError when there is no such class."""
    return _class_info(session, kind, class_code)[0]


def _duplicate_window(session: Session, kind: str, class_code: str) -> dt.timedelta:
    if kind == "component":
        component_class = reference_repo.get_component_class(session, class_code)
        hours = float(component_class.duplicate_window_hours) if component_class else 72.0
    else:
        event_class = reference_repo.get_event_class(session, class_code)
        hours = float(event_class.duplicate_window_hours) if event_class else 24.0
    return dt.timedelta(hours=hours)


@dataclass(frozen=True)
class Routing:
    """Where a case goes and why."""

    values: dict[str, Any]
    reasons: dict[str, Any]
    needs_confirmation: bool


def route(
    session: Session,
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    kind: str,
    class_code: str,
    lon: float,
    lat: float,
    component_code: str | None = None,
    severity: str = "normal",
    start: dt.datetime,
    calendar: WorkingCalendar,
    fields: IntakeFields = CASES_API_FIELDS,
) -> Routing:
    """Decide component, grids, worker, station, department, level and register deadline of a case."""
    class_name, default_department, snap_m, _ = _class_info(session, kind, class_code, fields.class_code)
    reasons: dict[str, Any] = {"class": {"kind": kind, "code": class_code, "name": class_name}}
    confirm: list[str] = []
    snapped: repo.SnappedComponent | None = None
    if component_code:
        found = repo.component_by_code(session, component_code, lon, lat)
        if found is None:
            raise _problem(fields.component_code, f"no current component with code {component_code!r}")
        snapped, found_class = found
        if kind != "component" or found_class != class_code:
            raise _problem(
                fields.component_code,
                f"component {component_code} is of class {found_class}, not {class_code}",
            )
        reasons["component"] = {
            "code": snapped.code,
            "reason": "named by the reporter",
            "distance_m": round(snapped.distance_m, 1),
        }
        if snapped.distance_m > snap_m:
            # A mistyped code or a report from the wrong place: either way a dispatcher looks before the
            # case goes to the component's owner.
            confirm.append(
                f"component {snapped.code} is {snapped.distance_m:.0f} m from the reported point "
                f"(more than the {snap_m:g} m snap distance of class {class_code})"
            )
    elif kind == "component":
        snapped = repo.nearest_component(session, class_code, lon, lat, snap_m)
        if snapped is None:
            reasons["component"] = {
                "code": None,
                "reason": f"no {class_name} ({class_code}) within {snap_m:g} m",
            }
        else:
            reasons["component"] = {
                "code": snapped.code,
                "reason": f"nearest {class_name} within {snap_m:g} m",
                "distance_m": round(snapped.distance_m, 1),
            }
    at_lon, at_lat = (snapped.lon, snapped.lat) if snapped else (lon, lat)
    pl = locate.plan_locator(sessions, settings)
    answer = locate.answer_one(pl, at_lon, at_lat)
    if answer.how == "outside":
        raise _problem(fields.point, f"({lon:.6f}, {lat:.6f}) is outside {settings.city_name}")
    row = answer.row or {}
    reasons["owner"] = {
        "how": answer.how,
        "located_at": "component" if snapped else "report",
        "unit_grid_code": row.get("unit_grid_code"),
        "responsibility_grid_code": row.get("responsibility_grid_code"),
        "plan_id": pl.plan.id if pl.plan else None,
        "distance_m": answer.distance_m,
        "near_boundary": answer.near_boundary,
        "candidates": [c.__dict__ for c in answer.candidates],
        "notes": answer.notes,
    }
    if answer.needs_confirmation:
        confirm.extend(answer.notes)
    department = None
    if snapped is not None and snapped.maintainer_department_code:
        department = snapped.maintainer_department_code
        reasons["department"] = {"code": department, "reason": f"maintainer of component {snapped.code}"}
    elif default_department:
        department = default_department
        reasons["department"] = {"code": department, "reason": f"default department of class {class_code}"}
    else:
        reasons["department"] = {
            "code": None,
            "reason": "no maintainer and no default: the dispatcher decides",
        }
        confirm.append("no department found")
    limits = repo.time_limits(session, kind, class_code, severity)
    handle = limits.get("handle")
    level = handle.handling_level if handle and handle.handling_level else "community"
    reasons["handling_level"] = {
        "level": level,
        "reason": (
            f"time-limit rule {handle.rule_id} "
            f"({'class ' + class_code if handle.class_specific else kind + ' default'})"
            if handle and handle.handling_level
            else "no rule names a level: the community handles it"
        ),
    }
    register_due = _due(calendar, start, limits.get("register"))
    handle_due_now = _due(calendar, start, handle)
    reasons["deadlines"] = {
        "register": {
            "limit": _limit_text(limits["register"]) if "register" in limits else None,
            "due": register_due.isoformat() if register_due else None,
        },
        "handle": {
            "limit": _limit_text(handle) if handle else None,
            "due_if_dispatched_now": handle_due_now.isoformat() if handle_due_now else None,
            "counts_from": "dispatch",
        },
    }
    reasons["needs_confirmation"] = bool(confirm)
    reasons["confirm_reasons"] = confirm
    values = {
        "component_id": snapped.id if snapped else None,
        "unit_grid_id": row.get("unit_grid_id"),
        "responsibility_grid_id": row.get("responsibility_grid_id")
        if row.get("responsibility_grid_id", -1) != -1
        else None,
        "community_code": row.get("community_code"),
        "street_code": row.get("street_code"),
        "district_code": answer.district_code,
        "station_id": row.get("station_id"),
        "department_code": department,
        "handling_level": level,
        "plan_id": pl.plan.id if pl.plan else None,
        "deadline": register_due,
    }
    return Routing(values=values, reasons=reasons, needs_confirmation=bool(confirm))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _local_day(moment: dt.datetime, settings: Settings) -> dt.date:
    return moment.astimezone(ZoneInfo(settings.timezone)).date()


def _audit(session: Session, actor: Principal, action: str, case: Case, details: dict[str, Any]) -> None:
    access_repo.record_audit(
        session,
        actor=actor.name,
        api_key_id=actor.api_key_id,
        action=action,
        entity="case",
        entity_id=case.request_code,
        details=details,
    )


NUL_MESSAGE = "must not contain the NUL character (\\u0000)"


def _refuse_nul(texts: dict[str, str | None]) -> None:
    """PostgreSQL's text cannot hold NUL: name the field rather than fail in the driver."""
    for name, value in texts.items():
        if value is not None and "\x00" in value:
            raise _problem(name, NUL_MESSAGE)


def _check_intake(intake: CaseIntake) -> None:
    _refuse_nul(
        {
            "class_code": intake.class_code,
            "crs": intake.crs,
            "channel": intake.channel,
            "description": intake.description,
            "address": intake.address,
            "media_url": intake.media_url,
            "component_code": intake.component_code,
            "external_ref": intake.external_ref,
            **{f"reporter.{name}": value for name, value in intake.reporter.items()},
            "reporter": "".join(intake.reporter),  # the contact fields' names
        }
    )
    if intake.channel not in CHANNELS:
        raise _problem("channel", f"unknown channel {intake.channel!r}: one of {', '.join(CHANNELS)}")
    if intake.severity not in SEVERITIES:
        raise _problem("severity", f"unknown severity {intake.severity!r}: one of {', '.join(SEVERITIES)}")
    unknown = sorted(set(intake.reporter) - set(CONTACT_FIELDS))
    if unknown:
        raise _problem("reporter", f"unknown contact fields {unknown}")
    if intake.description is not None and len(intake.description) > 4000:
        raise _problem("description", "longer than 4000 characters")
    if intake.media_url is not None and (
        len(intake.media_url) > MAX_MEDIA_URL or not MEDIA_URL.fullmatch(intake.media_url)
    ):
        raise _problem("media_url", f"must be an http or https URL of at most {MAX_MEDIA_URL} characters")
    if intake.reported_at is not None and intake.reported_at.tzinfo is None:
        raise _problem("reported_at", "needs a time zone (e.g. +08:00)")


def intake_case(
    sessions: sessionmaker[Session],
    settings: Settings,
    intake: CaseIntake,
    *,
    actor: Principal,
    session: Session | None = None,
) -> IntakeResult:
    """Take a report in: route it, link a likely duplicate, store it with its history, in one transaction.

    A report a channel already sent (same channel and external_ref) is found again, not made twice.
    ``session`` lets a bulk intake (the hotline file) run many reports in its own transaction.
    """
    actor.require(*INTAKE_ROLES)
    _check_intake(intake)
    channel_roles = CHANNEL_ROLES.get(intake.channel)
    if channel_roles is not None and actor.role not in channel_roles:
        message = f"the {intake.channel} channel is for {', '.join(channel_roles)} keys, not {actor.role}"
        raise PermissionDeniedError(
            f"the API key {actor.name!r} may not report through the {intake.channel} channel",
            problems=[FieldProblem("channel", message)],
        )
    lon_a, lat_a = locate.to_cgcs2000(
        [intake.x], [intake.y], intake.crs, x_field=intake.fields.x, y_field=intake.fields.y
    )
    lon, lat = float(lon_a[0]), float(lat_a[0])
    if session is None:
        with sessions.begin() as own:
            return _intake(own, sessions, settings, intake, lon, lat, actor, _calendar(own, settings))
    return _intake(session, sessions, settings, intake, lon, lat, actor, _calendar(session, settings))


def _intake(
    session: Session,
    sessions: sessionmaker[Session],
    settings: Settings,
    intake: CaseIntake,
    lon: float,
    lat: float,
    actor: Principal,
    calendar: WorkingCalendar,
) -> IntakeResult:
    if intake.external_ref:
        existing = repo.case_by_external_ref(session, intake.channel, intake.external_ref)
        if existing is not None:
            _check_replay(session, existing, intake, actor)
            original = (
                repo.case_codes(session, [existing.duplicate_of_id]) if existing.duplicate_of_id else {}
            )
            return IntakeResult(
                case=case_view(session, existing, personal=True),
                created=False,
                duplicate_of=next(iter(original.values()), None),
            )
    now = _now()
    reported_at = intake.reported_at or now
    routing = route(
        session,
        sessions,
        settings,
        kind=intake.kind,
        class_code=intake.class_code,
        lon=lon,
        lat=lat,
        component_code=intake.component_code,
        severity=intake.severity,
        start=reported_at,
        calendar=calendar,
        fields=intake.fields,
    )
    _, _, _, radius = _class_info(session, intake.kind, intake.class_code, intake.fields.class_code)
    duplicate = repo.find_open_duplicate(
        session,
        kind=intake.kind,
        class_code=intake.class_code,
        component_id=routing.values["component_id"],
        lon=lon,
        lat=lat,
        radius_m=radius,
        reported_at=reported_at,
        window=_duplicate_window(session, intake.kind, intake.class_code),
    )
    reasons = dict(routing.reasons)
    if duplicate is not None:
        component = reasons.get("component", {}).get("code") if routing.values["component_id"] else None
        reasons["duplicate"] = {
            "of": duplicate[1],
            "distance_m": round(duplicate[2], 1),
            "reason": (
                f"an open case of the same component {component}, {duplicate[2]:.0f} m away"
                if component
                else f"an open case of the same class {duplicate[2]:.0f} m away (radius {radius:g} m)"
            ),
        }
    seq = repo.next_request_seq(session, _local_day(reported_at, settings))
    from gis.codes import format_request_code

    case = Case(
        request_code=format_request_code(_local_day(reported_at, settings), seq),
        kind=intake.kind,
        component_class_code=intake.class_code if intake.kind == "component" else None,
        event_class_code=intake.class_code if intake.kind == "event" else None,
        status="reported",
        channel=intake.channel,
        description=intake.description,
        address=intake.address,
        reporter_contact=dict(intake.reporter),
        media_url=intake.media_url,
        attributes=dict(intake.attributes),
        severity=intake.severity,
        external_ref=intake.external_ref,
        needs_confirmation=routing.needs_confirmation or duplicate is not None,
        routing=reasons,
        duplicate_of_id=duplicate[0] if duplicate else None,
        reported_at=reported_at,
        updated_at=now,
        geom=repo.point(lon, lat),
        **routing.values,
    )
    repo.add_case(session, case)
    repo.add_event(
        session,
        case,
        at=now,
        action="intake",
        from_status=None,
        to_status="reported",
        actor=actor.name,
        details={
            "channel": intake.channel,
            "routing": reasons,
            "sender": _sender(actor),
            "request_digest": _request_digest(intake),
        },
    )
    if duplicate is not None:
        repo.add_event(
            session,
            case,
            at=now,
            action="link_duplicate",
            from_status="reported",
            to_status="reported",
            actor="gridsvc",
            note=f"likely duplicate of {duplicate[1]}",
            details=reasons["duplicate"],
        )
    _audit(
        session,
        actor,
        "intake",
        case,
        {"channel": intake.channel, "duplicate_of": duplicate[1] if duplicate else None},
    )
    return IntakeResult(
        case=case_view(session, case, personal=True),
        created=True,
        duplicate_of=duplicate[1] if duplicate else None,
    )


def _sender(actor: Principal) -> dict[str, Any]:
    return {"name": actor.name, "api_key_id": actor.api_key_id}


def _request_digest(intake: CaseIntake) -> str:
    """A digest of what a report said, so a replay under the same external_ref can be told from a change."""
    said = {
        "kind": intake.kind,
        "class_code": intake.class_code,
        "x": intake.x,
        "y": intake.y,
        "crs": intake.crs,
        "description": intake.description,
        "address": intake.address,
        "reporter": intake.reporter,
        "media_url": intake.media_url,
        "attributes": intake.attributes,
        "severity": intake.severity,
        "component_code": intake.component_code,
        "reported_at": _iso(intake.reported_at),
    }
    return hashlib.sha256(json.dumps(said, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ReportChangedError(ConflictError):
    """The caller sent again, under its external_ref, a report that now says something else."""


def _check_replay(session: Session, existing: Case, intake: CaseIntake, actor: Principal) -> None:
    """A report sent again under its external_ref is answered with its case only when the same caller
    sends the same report: anyone else, or other content, collides with the order already taken."""
    event = repo.intake_event(session, existing.id)
    details = event.details if event is not None and isinstance(event.details, dict) else {}
    sender = details.get("sender")
    # Cases taken in before senders were recorded: the intake event's actor is the caller's name.
    same_sender = sender == _sender(actor) if sender else event is not None and event.actor == actor.name
    where = [FieldProblem("external_ref", f"{intake.channel} {intake.external_ref} is taken")]
    if not same_sender:
        raise ConflictError(
            f"{intake.channel} order {intake.external_ref!r} was reported by another caller", problems=where
        )
    digest = details.get("request_digest")
    same_report = (
        digest == _request_digest(intake)
        if digest
        else (
            existing.kind == intake.kind
            and (existing.component_class_code or existing.event_class_code) == intake.class_code
            and existing.description == intake.description
            and existing.address == intake.address
        )
    )
    if not same_report:
        raise ReportChangedError(
            f"{intake.channel} order {intake.external_ref!r} was reported before with other content",
            problems=where,
        )


# --- transitions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One step of the loop: from which statuses, to which, and who may take it."""

    from_statuses: tuple[str, ...]
    to_status: str | None  # None: stays where it is (reassign, escalate) or goes back (unpark)
    roles: tuple[str, ...]
    needs_note: bool = False


ACTIVE = ("registered", "dispatched", "in_progress")
TRANSITIONS: dict[str, Transition] = {
    "register": Transition(("reported",), "registered", ("dispatcher",)),
    "reject": Transition(("reported",), "rejected", ("dispatcher",), needs_note=True),
    "dispatch": Transition(("registered",), "dispatched", ("dispatcher",)),
    "handle": Transition(("dispatched",), "in_progress", ("field", "dispatcher")),
    "report_back": Transition(("dispatched", "in_progress"), "reported_back", ("field", "dispatcher")),
    "verify": Transition(("reported_back",), "verified", ("dispatcher", "field")),
    "rework": Transition(
        ("reported_back", "verified"), "dispatched", ("dispatcher", "field"), needs_note=True
    ),
    "close": Transition(("verified",), "closed", ("dispatcher",)),
    "reassign": Transition((*ACTIVE, "reported"), None, ("dispatcher",), needs_note=True),
    "park": Transition(ACTIVE, "parked", ("dispatcher",), needs_note=True),
    "unpark": Transition(("parked",), None, ("dispatcher",)),
    "escalate": Transition(("dispatched", "in_progress"), None, ("dispatcher",)),
}


@dataclass
class TransitionRequest:
    """A step asked for: the action, why, and for a reassignment where the case goes now."""

    action: str
    note: str | None = None
    unit_grid_code: str | None = None
    department_code: str | None = None
    lon: float | None = None
    lat: float | None = None
    crs: str = "wgs84"
    at: dt.datetime | None = None


def transition(
    sessions: sessionmaker[Session],
    settings: Settings,
    request_code: str,
    step: TransitionRequest,
    *,
    actor: Principal,
) -> dict[str, Any]:
    """Take one step of the loop on a case, checking the role and the status; timestamped and audited."""
    rule = TRANSITIONS.get(step.action)
    if rule is None:
        # The step is the last segment of the resource's path (/v1/cases/{code}/{action}): no such step is
        # no such resource, as the OpenAPI says.
        known = f"one of {', '.join(TRANSITIONS)}"
        raise NotFoundError(
            f"no step {step.action!r}: {known}", problems=[FieldProblem("action", f"unknown step: {known}")]
        )
    actor.require(*rule.roles)
    _refuse_nul(
        {
            "note": step.note,
            "unit_grid_code": step.unit_grid_code,
            "department_code": step.department_code,
            "crs": step.crs,
        }
    )
    if rule.needs_note and not (step.note and step.note.strip()):
        raise _problem("note", f"{step.action} needs a note that says why")
    with sessions.begin() as session:
        case = repo.case_by_code(session, request_code, for_update=True)
        if case is None:
            raise NotFoundError(f"no case {request_code!r}")
        if case.status not in rule.from_statuses:
            raise ConflictError(
                f"case {request_code} is {case.status}: {step.action} needs it to be "
                f"{' or '.join(rule.from_statuses)}",
                problems=[FieldProblem("status", case.status)],
            )
        now = step.at or _now()
        calendar = _calendar(session, settings)
        before = case.status
        details = _apply(session, sessions, settings, case, step, now, calendar)
        case.updated_at = now
        repo.add_event(
            session,
            case,
            at=now,
            action=step.action,
            from_status=before,
            to_status=case.status,
            actor=actor.name,
            note=step.note,
            details=details,
        )
        _audit(session, actor, step.action, case, {"from": before, "to": case.status, **details})
        session.flush()
        return case_view(session, case, personal=True)


def _limit(session: Session, case: Case, stage: str) -> repo.TimeLimit | None:
    class_code = case.component_class_code or case.event_class_code or ""
    return repo.time_limits(session, case.kind, class_code, case.severity).get(stage)


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _apply(
    session: Session,
    sessions: sessionmaker[Session],
    settings: Settings,
    case: Case,
    step: TransitionRequest,
    now: dt.datetime,
    calendar: WorkingCalendar,
) -> dict[str, Any]:
    """Change the case for one step; return what the history should keep about it."""
    action = step.action
    rule = TRANSITIONS[action]
    before = case.status
    if rule.to_status is not None:
        case.status = rule.to_status
    if action == "register":
        case.deadline = _due(calendar, now, _limit(session, case, "dispatch"))
    elif action == "reject":
        case.deadline, case.closed_at = None, now
    elif action in ("dispatch", "rework"):
        if case.department_code is None:
            raise _problem("department_code", "the case has no department: reassign it to one first")
        handle = _limit(session, case, "handle")
        if action == "dispatch":
            case.dispatched_at = now
            case.on_time_deadline = _due(calendar, now, handle)
        else:
            # A failed verification gives the handler time to redo it, not the case a new on-time clock.
            _hold_on_time_deadline(case)
            case.rework_count += 1
        case.handle_deadline = case.deadline = _due(calendar, now, handle)
        case.handled_at = None
        return {
            "deadline": _iso(case.deadline),
            "limit": _limit_text(handle) if handle else None,
            "on_time_deadline": _iso(case.on_time_deadline),
        }
    elif action == "report_back":
        case.handled_at = now
        case.deadline = _due(calendar, now, _limit(session, case, "verify"))
        return {"handled_on_time": handled_on_time(case), "deadline": _iso(case.deadline)}
    elif action == "verify":
        case.deadline = None
    elif action == "close":
        case.closed_at, case.deadline = now, None
        return {"closed_on_time": handled_on_time(case)}
    elif action == "park":
        case.parked_from, case.deadline = before, None
        return {"parked_from": case.parked_from}
    elif action == "unpark":
        return _unpark(session, case, now, calendar)
    elif action == "escalate":
        return _escalate(session, case, now, calendar, "by a dispatcher")
    elif action == "reassign":
        return _reassign(session, sessions, settings, case, step, now, calendar)
    return {"deadline": _iso(case.deadline)}


def _hold_on_time_deadline(case: Case) -> None:
    """Keep the dispatch deadline before the working one moves (rows loaded without it have only that)."""
    if case.on_time_deadline is None:
        case.on_time_deadline = case.handle_deadline


def handled_on_time(case: Case) -> bool:
    """Reported back by the handling deadline set at dispatch (moved on only by parked time)."""
    deadline = case.on_time_deadline if case.on_time_deadline is not None else case.handle_deadline
    return case.handled_at is not None and (deadline is None or case.handled_at <= deadline)


def _after_pause(
    calendar: WorkingCalendar, deadline: dt.datetime, paused_from: dt.datetime, until: dt.datetime, unit: str
) -> dt.datetime:
    """``deadline`` moved on by the time from ``paused_from`` to ``until``, counted as its limit counts."""
    if unit == "calendar_hours":
        return deadline + max(until - paused_from, dt.timedelta(0))
    minutes = workcalendar.working_minutes_between(calendar, paused_from, until)
    if minutes <= 0:
        return deadline
    return workcalendar.add_limit(calendar, deadline, Decimal(str(minutes)), "working_minutes")


def _unpark(session: Session, case: Case, now: dt.datetime, calendar: WorkingCalendar) -> dict[str, Any]:
    """Back where it was; a case in handling gets its clocks back as they stood, moved on by the pause."""
    back = case.parked_from or "registered"
    case.status, case.parked_from = back, None
    if back == "registered" or case.handle_deadline is None:
        # Not dispatched yet (or no handling limit): the stage starts afresh, no on-time clock runs.
        stage = "dispatch" if back == "registered" else "handle"
        case.deadline = _due(calendar, now, _limit(session, case, stage))
        return {"back_to": back, "deadline": _iso(case.deadline)}
    parked_at = repo.last_event_at(session, case.id, "park") or now
    handle = _limit(session, case, "handle")
    unit = handle.unit if handle else "working_minutes"
    _hold_on_time_deadline(case)
    case.handle_deadline = case.deadline = _after_pause(calendar, case.handle_deadline, parked_at, now, unit)
    if case.on_time_deadline is not None:
        case.on_time_deadline = _after_pause(calendar, case.on_time_deadline, parked_at, now, unit)
    return {
        "back_to": back,
        "parked_since": _iso(parked_at),
        "deadline": _iso(case.deadline),
        "on_time_deadline": _iso(case.on_time_deadline),
    }


def _escalate(
    session: Session, case: Case, now: dt.datetime, calendar: WorkingCalendar, why: str
) -> dict[str, Any]:
    level = case.handling_level or "community"
    index = HANDLING_LEVELS.index(level)
    if index + 1 >= len(HANDLING_LEVELS):
        raise ConflictError(f"case {case.request_code} is already handled at city level")
    case.handling_level = HANDLING_LEVELS[index + 1]
    routing = dict(case.routing) if isinstance(case.routing, dict) else {}
    previous_level = routing.get("handling_level")
    case.routing = {
        **routing,
        "handling_level": {"level": case.handling_level, "reason": f"escalated from {level}: {why}"},
    }
    handle = _limit(session, case, "handle")
    # The new level works to a fresh limit; evaluation still counts from dispatch.
    _hold_on_time_deadline(case)
    case.handle_deadline = case.deadline = _due(calendar, now, handle)
    return {
        "from_level": level,
        "to_level": case.handling_level,
        "deadline": _iso(case.deadline),
        "previous_routing": {"handling_level": previous_level},
    }


def _reassign(
    session: Session,
    sessions: sessionmaker[Session],
    settings: Settings,
    case: Case,
    step: TransitionRequest,
    now: dt.datetime,
    calendar: WorkingCalendar,
) -> dict[str, Any]:
    """Send the case to another place, grid or department; the old routing stays in the history."""
    old = {
        "unit_grid_id": case.unit_grid_id,
        "responsibility_grid_id": case.responsibility_grid_id,
        "department_code": case.department_code,
        "routing": case.routing,
    }
    if step.department_code is None and step.lon is None and step.unit_grid_code is None:
        raise _problem("target", "reassign needs a department_code, a unit_grid_code or a new point")
    # The stored routing follows the case (README: every decision and its reason is in it); what it said
    # before is in this event's previous_routing.
    routing = dict(case.routing) if isinstance(case.routing, dict) else {}
    if step.department_code is not None:
        if reference_repo.get_department(session, step.department_code) is None:
            raise _problem("department_code", f"unknown department {step.department_code!r}")
        case.department_code = step.department_code
        routing["department"] = {
            "code": step.department_code,
            "reason": "reassigned by a dispatcher (reassign_note says why)",
        }
    lon = lat = None
    if step.lon is not None and step.lat is not None:
        lon_a, lat_a = locate.to_cgcs2000([step.lon], [step.lat], step.crs)
        lon, lat = float(lon_a[0]), float(lat_a[0])
    elif step.unit_grid_code is not None:
        found = repo.unit_grid_point(session, step.unit_grid_code, case.plan_id)
        if found is None:
            raise _problem("unit_grid_code", f"no unit grid {step.unit_grid_code!r} in the case's plan")
        lon, lat = found
    if lon is not None and lat is not None:
        class_code = case.component_class_code or case.event_class_code or ""
        found_routing = route(
            session,
            sessions,
            settings,
            kind=case.kind,
            class_code=class_code,
            lon=lon,
            lat=lat,
            severity=case.severity,
            start=now,
            calendar=calendar,
        )
        keep_department = step.department_code
        # A new point re-snaps the component; a grid named by hand only changes the owner.
        moved_point = step.lon is not None
        for key in (
            *(("component_id",) if moved_point else ()),
            "unit_grid_id",
            "responsibility_grid_id",
            "community_code",
            "street_code",
            "district_code",
            "station_id",
            "plan_id",
        ):
            setattr(case, key, found_routing.values[key])
        # The place decides the owner; the level (perhaps escalated since) and the deadlines stay the case's.
        routing["owner"] = found_routing.reasons["owner"]
        if moved_point:
            case.geom = repo.point(lon, lat)
            if "component" in found_routing.reasons:
                routing["component"] = found_routing.reasons["component"]
            if keep_department is None:
                case.department_code = found_routing.values["department_code"]
                routing["department"] = found_routing.reasons["department"]
    # The dispatcher who reassigned it has confirmed it.
    case.needs_confirmation = False
    case.routing = {
        **routing,
        "needs_confirmation": False,
        "confirm_reasons": [],
        "reassigned_at": now.isoformat(),
        "reassign_note": step.note,
    }
    return {"before": {k: v for k, v in old.items() if k != "routing"}, "previous_routing": old["routing"]}


# --- views --------------------------------------------------------------------------------------


def open311_status(status: str) -> str:
    """Open311 knows only open and closed."""
    return "closed" if status in OPEN311_CLOSED_STATUSES else "open"


def case_view(session: Session, case: Case, *, personal: bool, history: bool = True) -> dict[str, Any]:
    """A case as the API shows it; ``personal`` includes the reporter's contact (dispatchers only)."""
    lon, lat = repo.case_point(session, case.id)
    duplicate = (
        repo.case_codes(session, [case.duplicate_of_id]).get(case.duplicate_of_id or -1)
        if case.duplicate_of_id
        else None
    )
    view: dict[str, Any] = {
        "request_code": case.request_code,
        "kind": case.kind,
        "class_code": case.component_class_code or case.event_class_code,
        "status": case.status,
        "open311_status": open311_status(case.status),
        "channel": case.channel,
        "severity": case.severity,
        "description": case.description,
        "address": case.address,
        "media_url": case.media_url,
        "attributes": case.attributes,
        "lon": lon,
        "lat": lat,
        "component_id": case.component_id,
        "unit_grid_id": case.unit_grid_id,
        "responsibility_grid_id": case.responsibility_grid_id,
        "community_code": case.community_code,
        "street_code": case.street_code,
        "district_code": case.district_code,
        "station_id": case.station_id,
        "station": repo.station_summary(session, case.station_id) if case.station_id else None,
        "department_code": case.department_code,
        "handling_level": case.handling_level,
        "needs_confirmation": case.needs_confirmation,
        "duplicate_of": duplicate,
        "external_ref": case.external_ref,
        "rework_count": case.rework_count,
        "reported_at": _iso(case.reported_at),
        "updated_at": _iso(case.updated_at),
        "dispatched_at": _iso(case.dispatched_at),
        "deadline": _iso(case.deadline),
        "handle_deadline": _iso(case.handle_deadline),
        "on_time_deadline": _iso(case.on_time_deadline),
        "handled_at": _iso(case.handled_at),
        "closed_at": _iso(case.closed_at),
        "routing": case.routing,
    }
    if personal:
        view["reporter"] = case.reporter_contact
    if history:
        view["history"] = [
            {
                "seq": e.seq,
                "at": _iso(e.at),
                "action": e.action,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "actor": e.actor,
                "note": e.note,
            }
            for e in repo.case_events(session, case.id)
        ]
    return view


def reporter_view(view: dict[str, Any]) -> dict[str, Any]:
    """What a reporter sees of a case: no contact details, no staff names, no dispatchers' notes."""
    shown = {k: v for k, v in view.items() if k != "reporter"}
    if isinstance(shown.get("routing"), dict):
        shown["routing"] = {k: v for k, v in shown["routing"].items() if k != "reassign_note"}
    if "history" in shown:
        shown["history"] = [
            {k: v for k, v in e.items() if k not in ("actor", "note")} for e in shown["history"]
        ]
    return shown


def get_case(sessions: sessionmaker[Session], request_code: str, *, personal: bool) -> dict[str, Any]:
    """One case with its history."""
    with sessions() as session:
        case = repo.case_by_code(session, request_code)
        if case is None:
            raise NotFoundError(f"no case {request_code!r}")
        return case_view(session, case, personal=personal)


def escalate_overdue(
    sessions: sessionmaker[Session], settings: Settings, *, actor: Principal, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Move every case whose handling deadline has passed one level up; returns what moved."""
    actor.require(*TRANSITIONS["escalate"].roles)
    moment = now or _now()
    moved = []
    with sessions.begin() as session:
        calendar = _calendar(session, settings)
        for case in repo.overdue_cases(session, moment):
            before, overdue_since = case.status, case.deadline
            details = _escalate(
                session, case, moment, calendar, f"handling deadline {_iso(overdue_since)} passed"
            )
            details["overdue_since"] = _iso(overdue_since)
            case.updated_at = moment
            repo.add_event(
                session,
                case,
                at=moment,
                action="escalate",
                from_status=before,
                to_status=case.status,
                actor=actor.name,
                note="handling deadline passed",
                details=details,
            )
            _audit(session, actor, "escalate", case, details)
            moved.append(
                {
                    "request_code": case.request_code,
                    **{k: v for k, v in details.items() if k != "previous_routing"},
                }
            )
    return moved
