"""Cases: intake with routing, one case with its history, the steps of the loop, escalation."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field

from gridsvc.api.deps import AppSettings, Caller, Sessions
from gridsvc.api.roles import RoleRoute, allow
from gridsvc.services import cases

router = APIRouter(prefix="/v1/cases", tags=["cases"], route_class=RoleRoute)

READ_ROLES = ("dispatcher", "field", "gis_staff")
# Who may take some step of the loop; which step each role may take is the service's table (TRANSITIONS).
STEP_ROLES = tuple(sorted({role for step in cases.TRANSITIONS.values() for role in step.roles}))


def _without_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


# PostgreSQL's text cannot hold NUL: every text of these bodies is refused with its field named (422), not
# left to fail in the driver (500).
Text = Annotated[str, AfterValidator(_without_nul)]


class IntakeBody(BaseModel):
    """A report: what (kind and class), where (in which datum) and from whom."""

    kind: Literal["component", "event"] = Field(description="component (部件) or event (事件)")
    class_code: Text = Field(
        description="component class (0118 street lamp) or event class (0403 illegal parking)"
    )
    lon: float = Field(description="longitude, or easting for a projected crs")
    lat: float = Field(description="latitude, or northing")
    crs: Text = Field(default="wgs84", description="wgs84, cgcs2000, gcj02, bd09 or EPSG:n")
    channel: Text = Field(
        default="app", description="hotline_12345, online, app, mini_program, patrol, video, open311"
    )
    description: Text | None = Field(default=None, max_length=4000)
    address: Text | None = None
    reporter: dict[Text, Text] = Field(
        default_factory=dict, description="name, phone, email, device_id, account_id"
    )
    media_url: Text | None = Field(
        default=None, max_length=2000, description="a photo or video of it: an http or https URL"
    )
    severity: Literal["normal", "urgent"] = "normal"
    component_code: Text | None = Field(default=None, description="the component, when the reporter knows it")
    external_ref: Text | None = Field(default=None, description="the channel's own order number (idempotent)")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "kind": "component",
                    "class_code": "0118",
                    "lon": 117.0213,
                    "lat": 36.6615,
                    "crs": "gcj02",
                    "channel": "app",
                    "description": "路灯不亮",
                    "reporter": {"name": "李明", "phone": "13800000000"},
                }
            ]
        }
    }


class StepBody(BaseModel):
    """A step: why (a note; required to reject, rework, reassign and park) and, to reassign, where to."""

    note: Text | None = Field(default=None, max_length=2000)
    unit_grid_code: Text | None = Field(default=None, description="reassign: the unit grid that owns it now")
    department_code: Text | None = Field(default=None, description="reassign: the department that handles it")
    lon: float | None = Field(default=None, description="reassign: the corrected location")
    lat: float | None = None
    crs: Text = "wgs84"

    model_config = {"json_schema_extra": {"examples": [{"note": "已派遣照明处"}]}}


@router.post(
    "",
    dependencies=[allow(*cases.INTAKE_ROLES)],
    summary="Report a case: routed to component, grid, worker, station, department, level and deadline",
    status_code=201,
    responses={
        201: {"description": "a new case; `duplicate_of` names an open case it probably repeats"},
        200: {"description": "the same caller already sent this report under this external_ref: its case"},
        400: {"description": "the body cannot be read: not UTF-8 JSON"},
        403: {
            "description": "the role may not report, or not through this channel (hotline_12345: dispatchers)"
        },
        409: {"description": "the external_ref was sent before by another caller, or with other content"},
        422: {"description": "unknown class, bad coordinates, outside the city"},
    },
)
def report_case(body: IntakeBody, sessions: Sessions, settings: AppSettings, caller: Caller) -> JSONResponse:
    """Intake (reporter, dispatcher, field)."""
    result = cases.intake_case(
        sessions,
        settings,
        cases.CaseIntake(
            kind=body.kind,
            class_code=body.class_code,
            x=body.lon,
            y=body.lat,
            crs=body.crs,
            channel=body.channel,
            description=body.description,
            address=body.address,
            reporter=body.reporter,
            media_url=body.media_url,
            severity=body.severity,
            component_code=body.component_code,
            external_ref=body.external_ref,
            fields=cases.CASES_API_FIELDS,
        ),
        actor=caller,
    )
    payload: dict[str, Any] = dict(result.case)
    if caller.role == "reporter":
        payload = cases.reporter_view(payload)
    elif caller.role != "dispatcher":
        payload.pop("reporter", None)
    payload["duplicate_of"] = result.duplicate_of
    return JSONResponse(payload, status_code=201 if result.created else 200)


@router.get(
    "/{request_code}",
    dependencies=[allow(*READ_ROLES)],
    summary="One case with its routing reasons and its history",
    responses={404: {"description": "no such case"}},
)
def get_case(
    request_code: Annotated[str, Path(examples=["JN202611230000001"])], sessions: Sessions, caller: Caller
) -> JSONResponse:
    """A case (dispatcher, field, gis_staff); the reporter's contact only for dispatchers."""
    return JSONResponse(cases.get_case(sessions, request_code, personal=caller.role == "dispatcher"))


@router.post(
    "/{request_code}/{action}",
    dependencies=[allow(*STEP_ROLES)],
    summary="Take a step of the loop: register, reject, dispatch, handle, report_back, verify, rework, "
    "close, reassign, park, unpark, escalate",
    responses={
        400: {"description": "the body cannot be read: not UTF-8 JSON"},
        403: {"description": "the role may not take this step"},
        404: {"description": "no such case, or no such step"},
        409: {"description": "the case is not in a status this step starts from"},
        422: {"description": "a note is missing, or a reassignment target is unknown"},
    },
)
def take_step(
    request_code: str,
    action: Annotated[str, Path(examples=["dispatch"])],
    sessions: Sessions,
    settings: AppSettings,
    caller: Caller,
    body: StepBody | None = None,
) -> JSONResponse:
    """Roles: dispatchers register, reject, dispatch, close, reassign, park, unpark, escalate; field teams
    handle and report back; verification (and rework when it fails) by dispatchers or field verifiers."""
    step = body or StepBody()
    view = cases.transition(
        sessions,
        settings,
        request_code,
        cases.TransitionRequest(
            action=action,
            note=step.note,
            unit_grid_code=step.unit_grid_code,
            department_code=step.department_code,
            lon=step.lon,
            lat=step.lat,
            crs=step.crs,
        ),
        actor=caller,
    )
    if caller.role != "dispatcher":
        view.pop("reporter", None)
    return JSONResponse(view)


escalation_router = APIRouter(prefix="/v1/escalations", tags=["cases"], route_class=RoleRoute)

# No place is further from UTC than -12:00/+14:00, and PostgreSQL stores no offset beyond ±15:59: an
# instant outside these years or offsets is a typo, refused with 422 rather than failing in the database.
EARLIEST_NOW, LATEST_NOW = dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime(3000, 1, 1, tzinfo=dt.UTC)
# A `now` ahead of the server's clock would escalate cases not yet due and write history dated in the
# future; a caller's clock may run a little ahead of ours, hence the allowance.
CLOCK_SKEW = dt.timedelta(minutes=5)


def _plausible_now(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    offset = value.utcoffset()
    if offset is not None and abs(offset) > dt.timedelta(hours=14):
        raise ValueError("the UTC offset must lie between -12:00 and +14:00")
    aware = value if offset is not None else value.replace(tzinfo=dt.UTC)
    if not EARLIEST_NOW <= aware < LATEST_NOW:
        raise ValueError("the instant must lie between 1970 and 2999")
    if aware > dt.datetime.now(dt.UTC) + CLOCK_SKEW:
        minutes = int(CLOCK_SKEW.total_seconds() // 60)
        raise ValueError(f"must not be later than the server's clock (by more than {minutes} minutes)")
    return value


@escalation_router.post(
    "",
    dependencies=[allow(*cases.TRANSITIONS["escalate"].roles)],
    summary="Escalate every case whose handling deadline has passed (dispatcher)",
)
def escalate(
    sessions: Sessions,
    settings: AppSettings,
    caller: Caller,
    now: Annotated[
        dt.datetime | None,
        AfterValidator(_plausible_now),
        Query(
            description="escalate as if it were this instant (default: now; not later than the server's "
            "clock plus 5 minutes), e.g. 2026-11-23T18:00+08:00"
        ),
    ] = None,
) -> JSONResponse:
    """One level up per run: community → street → district → city, with a fresh handling limit."""
    return JSONResponse({"escalated": cases.escalate_overdue(sessions, settings, actor=caller, now=now)})
