"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2): the use cases behind /open311/v2/.

Services are the case classes. Component classes and event classes share codes (0101 is a water
manhole cover and exposed garbage), so a service code carries the kind in front: ``C0118`` is the
component class 0118 路灯 (street lamp), ``E0101`` the event class 0101 暴露垃圾 (exposed garbage).

Extensions beyond the spec, each optional, so plain GeoReport v2 clients work unchanged:

- ``crs`` on POST and GET requests: the datum of lat/long and of bbox: ``wgs84`` (the spec's, the
  default), ``gcj02`` (Amap, Tencent, WeChat), ``bd09`` (Baidu) or ``cgcs2000``;
- ``service_object_type=component`` + ``service_object_id=<component code>`` on POST (the Open311
  asset convention FixMyStreet and Mark-a-Spot clients send): the report names the component;
- ``bbox=minlon,minlat,maxlon,maxlat`` on GET requests;
- ``page`` (from 1) and ``page_size`` (default 50, at most 1000) on GET requests; the route gives the
  total in ``X-Total-Count`` and the neighbouring pages in a ``Link`` header, the body stays the spec's;
- extra fields on each request: ``service_object_type``, ``service_object_id``, ``unit_grid_code``,
  ``duplicate_of``.

Nothing a GET answers carries the reporter's contact: GeoReport reads are public.
This module returns plain dicts in the spec's field order; the route renders them as JSON or XML.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from gis import crs as gcrs
from gridsvc.errors import AuthenticationError, FieldProblem, InvalidInputError, NotFoundError
from gridsvc.repositories import open311 as repo
from gridsvc.repositories import reference as reference_repo
from gridsvc.services import access, cases, locate
from gridsvc.settings import Settings

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
FORMATS = ("text/xml", "application/json")
COMPONENT_PREFIX = "C"
EVENT_PREFIX = "E"
PREFIX_OF_KIND = {"component": COMPONENT_PREFIX, "event": EVENT_PREFIX}
KIND_OF_PREFIX = {COMPONENT_PREFIX: "component", EVENT_PREFIX: "event"}
SERVICE_CODE = re.compile(r"([CE])(\d{4,5})")
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
COMPONENT_CODE = re.compile(r"\d{16,17}")

# The datums a lat/long may come in (extension parameter ``crs``); wgs84 is the spec's.
DATUMS = ("wgs84", "gcj02", "bd09", "cgcs2000")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_REQUEST_IDS = 1000
# GeoReport v2: without start_date and end_date, GET requests covers the most recent 90 days.
DEFAULT_DAYS = 90
MAX_TEXT = 200
MAX_URL = 2000

# CJ/T 214 major classes of components (the class table keeps only the codes).
COMPONENT_MAJORS = {
    "01": "公用设施",
    "02": "道路交通",
    "03": "市容环境",
    "04": "园林绿化",
    "05": "房屋土地",
    "06": "其他",
}
SEVERITY_NAMES = {"normal": "一般", "urgent": "紧急"}
LIMIT_UNITS_ZH = {
    "working minutes": "工作分钟",
    "working hours": "工作小时",
    "working days": "个工作日",
    "calendar hours": "小时",
}
CONTACT_PARAMS = ("first_name", "last_name", "email", "phone", "device_id", "account_id")

# Services' changeset when no class was changed through the service: the class tables as seeded.
SEEDED_CHANGESET = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _problem(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"{field}: {message}", problems=[FieldProblem(field, message)])


def service_code(kind: str, class_code: str) -> str:
    """The Open311 service code of a case class: C + component class, E + event class."""
    return PREFIX_OF_KIND[kind] + class_code


def parse_service_code(code: str) -> tuple[str, str] | None:
    """(kind, class code) of a service code, or None when it is not one."""
    match = SERVICE_CODE.fullmatch(code.strip())
    if match is None:
        return None
    return KIND_OF_PREFIX[match.group(1)], match.group(2)


def _w3(moment: dt.datetime | None, settings: Settings) -> str | None:
    """A W3C datetime with the city's offset (+08:00)."""
    if moment is None:
        return None
    return moment.astimezone(ZoneInfo(settings.timezone)).isoformat(timespec="seconds")


# --- discovery and services ---------------------------------------------------------------------


def discovery(sessions: sessionmaker[Session], settings: Settings, endpoint_url: str) -> dict[str, Any]:
    """The Service Discovery document (http://wiki.open311.org/Service_Discovery)."""
    with sessions() as session:
        changed = repo.services_changed_at(session) or SEEDED_CHANGESET
    changeset = _w3(changed, settings)
    return {
        "changeset": changeset,
        "contact": f"{settings.city_name} 12345 市民服务热线 (citizen hotline)",
        "key_service": "API keys with the reporter role are issued by the operator: "
        "gridsvc keys create --role reporter --name <app>",
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": endpoint_url,
                "changeset": changeset,
                "type": "production",
                "formats": list(FORMATS),
            }
        ],
    }


def list_services(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    """Every case class as an Open311 service: component classes, then event classes."""
    with sessions() as session:
        components = reference_repo.list_component_classes(session)
        events = reference_repo.list_event_classes(session)
    services: list[dict[str, Any]] = []
    for c in components:
        major = COMPONENT_MAJORS.get(c.major_code, "其他")
        services.append(
            {
                "service_code": service_code("component", c.code),
                "service_name": c.name_zh,
                "description": f"部件问题：{c.name_zh}（{c.name_en}）破损、丢失、被占用等。"
                "可用 service_object_id 给出部件编码。",
                "metadata": True,
                "type": "realtime",
                "keywords": ",".join(k for k in ("部件", major, c.name_en) if k),
                "group": f"部件/{major}",
            }
        )
    for e in events:
        services.append(
            {
                "service_code": service_code("event", e.code),
                "service_name": e.name_zh,
                "description": f"事件：{e.major_name_zh}—{e.name_zh}（{e.name_en}）。",
                "metadata": True,
                "type": "realtime",
                "keywords": ",".join(k for k in ("事件", e.major_name_zh, e.name_en) if k),
                "group": f"事件/{e.major_name_zh}",
            }
        )
    return services


def _attributes(kind: str) -> list[dict[str, Any]]:
    """The attributes a service asks for: severity for all, the component's code for component services."""
    attributes: list[dict[str, Any]] = [
        {
            "variable": True,
            "code": "severity",
            "datatype": "singlevaluelist",
            "required": False,
            "datatype_description": "normal 或 urgent；不填为 normal",
            "order": 1,
            "description": "紧急程度 (severity): 紧急的问题处置时限更短",
            "values": [{"key": key, "name": name} for key, name in SEVERITY_NAMES.items()],
        }
    ]
    if kind == "component":
        attributes.append(
            {
                "variable": True,
                "code": "component_code",
                "datatype": "string",
                "required": False,
                "datatype_description": "16 或 17 位数字的部件编码，如 3701020118000123",
                "order": 2,
                "description": "部件编码（部件铭牌上的编号），与参数 service_object_id 相同；"
                "不填时取 50 米内最近的同类部件",
            }
        )
    return attributes


def _class_exists(session: Session, kind: str, class_code: str) -> bool:
    if kind == "component":
        return reference_repo.get_component_class(session, class_code) is not None
    return reference_repo.get_event_class(session, class_code) is not None


def service_definition(sessions: sessionmaker[Session], code: str) -> dict[str, Any]:
    """A service's definition: its attributes; NotFoundError for an unknown service code."""
    parsed = parse_service_code(code)
    exists = False
    if parsed is not None:
        with sessions() as session:
            exists = _class_exists(session, *parsed)
    if parsed is None or not exists:
        raise NotFoundError(f"no service {code!r}: GET services for the service codes")
    return {"service_code": service_code(*parsed), "attributes": _attributes(parsed[0])}


# --- POST requests ------------------------------------------------------------------------------

ATTRIBUTE_KEY = re.compile(r"attribute\[([^\[\]]+)\](?:\[\])?")


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    """A single-valued parameter, stripped; None when absent or empty."""
    values = [v for v in params.get(name, ()) if v.strip()]
    if len(values) > 1:
        raise _problem(name, "given more than once")
    return values[0].strip() if values else None


def _datum(value: str | None) -> str:
    key = (value or "wgs84").strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in DATUMS:
        raise _problem("crs", f"unknown datum {value!r}: one of {', '.join(DATUMS)}")
    return key


def _coordinate(params: Mapping[str, Sequence[str]], name: str, limit: float) -> float:
    raw = _one(params, name)
    if raw is None:
        raise _problem(name, "required: the place of the problem as lat and long (decimal degrees)")
    try:
        value = float(raw)
    except ValueError:
        raise _problem(name, f"{raw!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > limit:
        raise _problem(name, f"{raw!r} is not a {name} in degrees")
    return value


def _text(params: Mapping[str, Sequence[str]], name: str, limit: int = MAX_TEXT) -> str | None:
    value = _one(params, name)
    if value is not None and len(value) > limit:
        raise _problem(name, f"longer than {limit} characters")
    return value


def _submitted_attributes(
    params: Mapping[str, Sequence[str]], kind: str
) -> tuple[dict[str, str], str, str | None]:
    """The attribute[code] values: (what to store, severity, component code)."""
    known = {a["code"]: a for a in _attributes(kind)}
    given: dict[str, str] = {}
    for key, values in params.items():
        match = ATTRIBUTE_KEY.fullmatch(key)
        if match is None:
            continue
        code = match.group(1)
        if code not in known:
            raise _problem(f"attribute[{code}]", f"this service has no attribute {code!r}")
        kept = [v.strip() for v in values if v.strip()]
        if len(kept) > 1:
            raise _problem(f"attribute[{code}]", "takes one value")
        if kept:
            given[code] = kept[0]
    severity = given.get("severity", "normal")
    if severity not in SEVERITY_NAMES:
        raise _problem("attribute[severity]", f"{severity!r} is not one of {', '.join(SEVERITY_NAMES)}")
    return given, severity, given.get("component_code")


def _component_code(params: Mapping[str, Sequence[str]], kind: str, from_attribute: str | None) -> str | None:
    object_type = _one(params, "service_object_type")
    object_id = _one(params, "service_object_id")
    if object_type is not None and object_type.lower() != "component":
        raise _problem("service_object_type", f"{object_type!r}: only component is known")
    if object_id is not None and from_attribute is not None and object_id != from_attribute:
        raise _problem("service_object_id", "differs from attribute[component_code]")
    code = object_id or from_attribute
    if code is None:
        return None
    if kind != "component":
        raise _problem("service_object_id", "names a component: use a component service (C....)")
    if not COMPONENT_CODE.fullmatch(code):
        raise _problem("service_object_id", f"{code!r} is not a component code (16 or 17 digits)")
    return code


def _reporter(params: Mapping[str, Sequence[str]]) -> dict[str, str]:
    reporter = {name: value for name in CONTACT_PARAMS if (value := _text(params, name)) is not None}
    email = reporter.get("email")
    if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise _problem("email", f"{email!r} is not an e-mail address")
    return reporter


def _media_url(params: Mapping[str, Sequence[str]]) -> str | None:
    url = _text(params, "media_url", MAX_URL)
    if url is not None and not re.match(r"https?://[^\s]+$", url):
        raise _problem("media_url", "must be an http or https URL")
    return url


def _notice(result: cases.IntakeResult) -> tuple[str, str]:
    """The request id the reporter should follow and what to tell them."""
    if result.duplicate_of is not None:
        original = result.duplicate_of
        return original, (
            f"该问题已有人上报，正在办理，您的上报已并入案件 {original}。"
            f" (Already reported: your report was merged into {original}.)"
        )
    code = str(result.case["request_code"])
    routing = result.case.get("routing") or {}
    limit = ((routing.get("deadlines") or {}).get("handle") or {}).get("limit")
    notice = f"已受理，案件编号 {code}。"
    if limit:
        notice += f"处置时限 {_limit_zh(str(limit))}（自派遣起计）。"
    return code, notice


def _limit_zh(limit: str) -> str:
    """'2 working days' -> '2 个工作日' (cases.py writes limits in English units)."""
    value, _, unit = limit.partition(" ")
    return f"{value} {LIMIT_UNITS_ZH[unit]}" if unit in LIMIT_UNITS_ZH else limit


def _refuse_nul(params: Mapping[str, Sequence[str]]) -> None:
    """InvalidInputError naming the first field holding a NUL character: PostgreSQL text cannot store one,
    and no honest report has one (it is binary pasted into a text field)."""
    for name, values in params.items():
        if "\x00" in name or any("\x00" in value for value in values):
            raise _problem(
                name.replace("\x00", "\\u0000"), "contains a NUL character (\\u0000), which text cannot hold"
            )


@dataclass(frozen=True)
class Submitted:
    """What POST requests answers: the spec's one-element list, and whether a case was made."""

    body: list[dict[str, Any]]
    created: bool


def submit_request(
    sessions: sessionmaker[Session],
    settings: Settings,
    params: Mapping[str, Sequence[str]],
    *,
    header_key: str | None = None,
) -> Submitted:
    """POST requests: a citizen's report as a case (channel open311), routed and checked for duplicates.

    ``params`` are the form fields (every value of each). The api_key field (else the X-API-Key header)
    must belong to an intake role (reporter, dispatcher, field): AuthenticationError or
    PermissionDeniedError otherwise, before anything else is looked at.
    """
    raw_key = _one(params, "api_key") or header_key
    if not raw_key:
        raise AuthenticationError("api_key is required: a key with the reporter role")
    principal = access.authenticate(sessions, raw_key)
    principal.require(*cases.INTAKE_ROLES)
    _refuse_nul(params)
    raw_code = _one(params, "service_code")
    if raw_code is None:
        raise _problem("service_code", "required: GET services for the service codes")
    parsed = parse_service_code(raw_code)
    if parsed is None:
        raise _problem("service_code", f"no service {raw_code!r}: GET services for the service codes")
    kind, class_code = parsed
    lat = _coordinate(params, "lat", 90.0)
    lon = _coordinate(params, "long", 180.0)
    datum = _datum(_one(params, "crs"))
    stored, severity, attribute_component = _submitted_attributes(params, kind)
    component_code = _component_code(params, kind, attribute_component)
    address_id = _text(params, "address_id")
    if address_id is not None:
        stored["address_id"] = address_id
    intake = cases.CaseIntake(
        kind=kind,
        class_code=class_code,
        x=lon,
        y=lat,
        crs=datum,
        channel="open311",
        description=_text(params, "description", 4000),
        address=_text(params, "address_string", 500),
        reporter=_reporter(params),
        media_url=_media_url(params),
        attributes=stored,
        severity=severity,
        component_code=component_code,
    )
    result = cases.intake_case(sessions, settings, intake, actor=principal)
    request_id, notice = _notice(result)
    body = {
        "service_request_id": request_id,
        "service_notice": notice,
        # The poster's own account id, echoed: never the one stored on an original they were merged into.
        "account_id": intake.reporter.get("account_id"),
    }
    return Submitted(body=[body], created=result.created)


# --- GET requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestQuery:
    """A checked GET requests query."""

    filter: repo.RequestFilter
    page: int
    page_size: int
    crs: str


@dataclass(frozen=True)
class RequestPage:
    """One page of requests and the total the filter matches."""

    requests: list[dict[str, Any]]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        """How many pages the total makes (at least 1)."""
        return max(1, math.ceil(self.total / self.page_size))


def _list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def parse_w3_datetime(value: str, field: str) -> dt.datetime:
    """A W3C datetime with its offset (2024-05-01T08:00:00+08:00 or ...Z); InvalidInputError otherwise."""
    text = value.strip()
    try:
        moment = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        moment = None
    if moment is None or "T" not in text.upper():
        raise _problem(field, f"{value!r} is not a W3C datetime such as 2024-05-01T08:00:00+08:00")
    if moment.tzinfo is None:
        raise _problem(field, f"{value!r} has no time zone: add Z or an offset such as +08:00")
    return moment


def _positive(value: str | None, field: str, default: int, maximum: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise _problem(field, f"{value!r} is not a whole number") from None
    if not 1 <= number <= maximum:
        raise _problem(field, f"{number} is not between 1 and {maximum}")
    return number


def _bbox(value: str, datum: str) -> tuple[float, float, float, float]:
    """minlon,minlat,maxlon,maxlat in ``datum`` -> the storage box."""
    parts = value.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        raise _problem("bbox", f"{value!r} is not minlon,minlat,maxlon,maxlat")
    x0, y0, x1, y1 = numbers
    if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
        raise _problem(
            "bbox", f"{value!r}: needs -180 <= minlon < maxlon <= 180 and -90 <= minlat < maxlat <= 90"
        )
    if datum == "cgcs2000":
        return x0, y0, x1, y1
    try:
        lon, lat = locate.to_cgcs2000(
            [x0, x1, x0, x1], [y0, y0, y1, y1], datum, x_field="bbox", y_field="bbox"
        )
    except InvalidInputError as exc:
        raise _problem("bbox", exc.detail) from exc
    return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())


def parse_request_query(
    settings: Settings,
    *,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
    bbox: str | None = None,
    page: str | None = None,
    page_size: str | None = None,
    crs: str | None = None,
    now: dt.datetime | None = None,
) -> RequestQuery:
    """Check the GET requests parameters; InvalidInputError names the first one that is wrong."""
    datum = _datum(crs)
    page_number = _positive(page, "page", 1, 10_000_000)
    size = _positive(page_size, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    ids = _list(service_request_id)
    for request_id in ids:
        if not REQUEST_ID.fullmatch(request_id):
            raise _problem("service_request_id", f"{request_id!r} is not a service request id")
    if len(ids) > MAX_REQUEST_IDS:
        raise _problem("service_request_id", f"at most {MAX_REQUEST_IDS} ids at once")
    components: list[str] = []
    events: list[str] = []
    for code in _list(service_code):
        parsed = parse_service_code(code)
        if parsed is None:
            raise _problem("service_code", f"no service {code!r}: GET services for the service codes")
        (components if parsed[0] == "component" else events).append(parsed[1])
    statuses = _list(status)
    for value in statuses:
        if value not in ("open", "closed"):
            raise _problem("status", f"{value!r} is not open or closed")
    start = parse_w3_datetime(start_date, "start_date") if start_date and start_date.strip() else None
    end = parse_w3_datetime(end_date, "end_date") if end_date and end_date.strip() else None
    if start is not None and end is not None and start > end:
        raise _problem("end_date", "is before start_date")
    if start is None and end is None:
        start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=DEFAULT_DAYS)
    box = _bbox(bbox, datum) if bbox and bbox.strip() else None
    query = repo.RequestFilter(
        # GeoReport v2: service_request_id "overrides all other arguments".
        request_codes=tuple(ids) if ids else None,
        component_classes=tuple(components),
        event_classes=tuple(events),
        open311_statuses=tuple(statuses),
        start=start,
        end=end,
        bbox=box,
    )
    return RequestQuery(filter=query, page=page_number, page_size=size, crs=datum)


def _request_dicts(rows: Sequence[repo.RequestRow], settings: Settings, datum: str) -> list[dict[str, Any]]:
    if not rows:
        return []
    lon = np.array([r.lon for r in rows], dtype=np.float64)
    lat = np.array([r.lat for r in rows], dtype=np.float64)
    if datum != "cgcs2000":
        lon, lat = gcrs.from_storage(lon, lat, datum)
    answers = []
    for row, x, y in zip(rows, lon.tolist(), lat.tolist(), strict=True):
        answers.append(
            {
                "service_request_id": row.request_code,
                "status": cases.open311_status(row.status),
                "status_notes": row.status_note,
                "service_name": row.class_name,
                "service_code": service_code(row.kind, row.class_code),
                "description": row.description,
                "agency_responsible": row.department_name,
                "service_notice": (
                    f"可能与 {row.duplicate_of} 重复 (likely a duplicate of {row.duplicate_of})"
                    if row.duplicate_of
                    else None
                ),
                "requested_datetime": _w3(row.reported_at, settings),
                "updated_datetime": _w3(row.updated_at, settings),
                "expected_datetime": _w3(row.handle_deadline, settings),
                "address": row.address,
                "address_id": None,
                "zipcode": None,
                "lat": round(y, 7),
                "long": round(x, 7),
                "media_url": row.media_url,
                "service_object_type": "component" if row.component_code else None,
                "service_object_id": row.component_code,
                "unit_grid_code": row.unit_grid_code,
                "duplicate_of": row.duplicate_of,
            }
        )
    return answers


def find_requests(sessions: sessionmaker[Session], settings: Settings, query: RequestQuery) -> RequestPage:
    """GET requests: one page of the matching cases, newest first, with the total."""
    with sessions() as session:
        for kind, codes in (
            ("component", query.filter.component_classes),
            ("event", query.filter.event_classes),
        ):
            for code in codes:
                if not _class_exists(session, kind, code):
                    raise _problem(
                        "service_code",
                        f"no service {service_code(kind, code)!r}: GET services for the service codes",
                    )
        total = repo.count_requests(session, query.filter)
        rows = repo.find_requests(
            session, query.filter, limit=query.page_size, offset=(query.page - 1) * query.page_size
        )
    return RequestPage(
        requests=_request_dicts(rows, settings, query.crs),
        total=total,
        page=query.page,
        page_size=query.page_size,
    )


def get_request(
    sessions: sessionmaker[Session], settings: Settings, request_id: str, *, crs: str | None = None
) -> list[dict[str, Any]]:
    """GET a request: a one-element list (the spec's shape); NotFoundError for an unknown id."""
    datum = _datum(crs)
    row = None
    if REQUEST_ID.fullmatch(request_id):
        with sessions() as session:
            row = repo.get_request(session, request_id)
    if row is None:
        raise NotFoundError(f"no service request {request_id!r}")
    return _request_dicts([row], settings, datum)


def get_token(sessions: sessionmaker[Session], token_id: str) -> list[dict[str, Any]]:
    """GET a token: every service is realtime, so a token is the request id itself (spec's shape)."""
    row = None
    if REQUEST_ID.fullmatch(token_id):
        with sessions() as session:
            row = repo.get_request(session, token_id)
    if row is None:
        raise NotFoundError(f"no token {token_id!r}")
    return [{"service_request_id": row.request_code, "token": token_id}]
