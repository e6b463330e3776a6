"""Open311 GeoReport v2 under /open311/v2/, in XML (the spec's required format) and JSON.

The format is the path's suffix (``services.xml``, ``requests.json``). Errors never answer
problem+json here: they are the spec's list of ``{code, description}`` in the requested format
(``<errors><error><code/><description/></error></errors>`` in XML), with code = the HTTP status:
400 for a missing or malformed parameter, a POST body that is not a form (XML or JSON bodies are
refused unread, so no entity is ever expanded) or a form that is not text in its charset, 403 for a
missing, unknown, revoked or wrong-role api_key, 404 for an unknown service, request, path or format
(an unknown format answers in XML), 405 for a method a resource does not have, 409 for a conflict with
the case's state, 413 for a form over 256 KiB, 429 (with Retry-After) when one api_key or one client
address posts too often, 503 when the machine lacks something, 500 for any other failure inside the
service (logged, never echoed).
Parameters are read as plain strings and checked by the service, so FastAPI's own validation (and the
app's problem+json handlers) never answer for these routes. Extensions: see gridsvc/services/open311.py.
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridsvc.api.deps import AppSettings, Sessions
from gridsvc.api.problems import (
    BUSY_DETAIL,
    DATABASE_RETRY_AFTER_SECONDS,
    RETRY_AFTER_SECONDS,
    database_unavailable_text,
    is_database_unavailable,
)
from gridsvc.api.request_body import BoundedBodyRoute
from gridsvc.api.roles import PUBLIC, RateLimit, RoleRoute, admit_key, allow
from gridsvc.errors import (
    AuthenticationError,
    ConflictError,
    GridsvcError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    SetupProblemError,
)
from gridsvc.services import cases, open311
from gridsvc.services.rate_limit import RateLimitedError

log = logging.getLogger(__name__)

# GeoReport v2 posts a form; multipart is a form too. Anything else (XML, JSON) is refused unread.
FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# The largest honest form, a 4000-character Chinese description percent-encoded (9 bytes a character) and
# a dozen short fields, is under 40 KiB; no more than this is ever read or held for one request.
MAX_FORM_BYTES = 256 << 10
FORM_TOO_LARGE = (
    f"the form is larger than {MAX_FORM_BYTES >> 10} KiB: the description holds at most 4000 characters"
)
# As many fields as Starlette's own form parser allows; an honest report has about twenty.
MAX_FORM_FIELDS = 1000
URLENCODED = "application/x-www-form-urlencoded"


class Open311Route(BoundedBodyRoute, RoleRoute):
    """Roles as declared, and a body (a POSTed form) of at most MAX_FORM_BYTES, read bounded by the key
    check and the handler alike."""

    max_body_bytes = MAX_FORM_BYTES
    body_too_large = FORM_TOO_LARGE


# Every route answers these in the spec's error list (XML, or JSON for .json).
OPEN311_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a parameter is missing or malformed"},
    404: {"description": "unknown format (use .xml or .json), service, request or token"},
}
router = APIRouter(prefix="/open311/v2", tags=["open311"], route_class=Open311Route, responses=OPEN311_ERRORS)

MEDIA_TYPES = {"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}
# XML names the items of a list after the list: <services><service>, <service_requests><request>, ...
ITEM_TAGS = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "errors": "error",
}
# Domain error class -> HTTP status (GeoReport v2 uses 403 for every api_key problem).
STATUS_OF: tuple[tuple[type[GridsvcError], int], ...] = (
    (InvalidInputError, 400),
    (AuthenticationError, 403),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (SetupProblemError, 503),
)
# Characters XML 1.0 cannot carry at all; dropped from text rather than answering broken XML.
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
KNOWN_RESOURCE = re.compile(
    r"(discovery|services|requests|services/[^/]+|requests/[^/]+|tokens/[^/]+)\.[^/.]+"
)
ALLOWED = {"requests": "GET, POST"}
EXPOSED_HEADERS = "X-Total-Count, X-Page, X-Page-Size, X-Total-Pages, Link"

# The enum documents the two formats without FastAPI checking them: an unknown one is answered by the
# route itself, 404 in the spec's error list, never by a problem+json 422.
FormatPath = Annotated[str, Path(description="xml or json", json_schema_extra={"enum": ["xml", "json"]})]


def _fill(element: ET.Element, value: Any) -> None:
    """Put a JSON-like value into an element: dicts as children, lists as repeated item children."""
    if isinstance(value, dict):
        for key, item in value.items():
            _fill(ET.SubElement(element, key), item)
    elif isinstance(value, list):
        tag = ITEM_TAGS[element.tag]
        for item in value:
            _fill(ET.SubElement(element, tag), item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = XML_INVALID.sub("", str(value))


def render(
    fmt: str, root: str, body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A body as JSON (UTF-8, Chinese as is) or as XML under ``root`` with the UTF-8 declaration."""
    if fmt == "json":
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
    else:
        element = ET.Element(root)
        _fill(element, body)
        content = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(
            element, encoding="unicode"
        ).encode("utf-8")
    return Response(content, status_code=status, media_type=MEDIA_TYPES[fmt], headers=headers)


def errors(fmt: str, status: int, descriptions: list[str], headers: dict[str, str] | None = None) -> Response:
    """The spec's error list: one {code, description} per problem."""
    body = [{"code": status, "description": d} for d in descriptions]
    return render(fmt, "errors", body, status=status, headers=headers)


def _failure(fmt: str, exc: Exception) -> Response:
    if isinstance(exc, RateLimitedError):
        return errors(fmt, 429, [exc.detail], headers={"Retry-After": str(exc.retry_after)})
    status = next((s for cls, s in STATUS_OF if isinstance(exc, cls)), None)
    if isinstance(exc, GridsvcError) and status is not None:
        descriptions = [f"{p.field}: {p.message}" for p in exc.problems] or [exc.detail]
        if status >= 500:
            log.error("open311: %s", exc.detail)
        return errors(fmt, status, descriptions)
    if isinstance(exc, PoolTimeoutError):  # no free database connection: busy, retry soon (issue 7)
        log.warning("open311: no free database connection: %s", exc)
        return errors(fmt, 503, [BUSY_DETAIL], headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if is_database_unavailable(exc):  # down, restarting or the connection broke: retry later (issue 7)
        log.warning("open311: database unavailable: %s", exc)
        _, detail = database_unavailable_text(exc)
        return errors(fmt, 503, [detail], headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})
    log.exception("open311 request failed", exc_info=exc)
    return errors(fmt, 500, ["the request failed inside the service; it has been logged"])


def _format(fmt: str) -> str | None:
    fmt = fmt.lower()
    return fmt if fmt in MEDIA_TYPES else None


def _unknown_format(fmt: str) -> Response:
    return errors("xml", 404, [f"unknown format {fmt!r}: use .xml or .json"])


def _refused(request: Request, exc: GridsvcError) -> Response:
    """A request the route's role rule or rate limit refused (gridsvc/api/roles.py), in the spec's format."""
    return _failure(_format(str(request.path_params.get("fmt", ""))) or "xml", exc)


# Reports come from apps and the 12345 bridge (the key) on behalf of citizens' phones (the address):
# each is limited on its own (settings open311_post_per_minute_per_key / _per_address).
REPORTERS = allow(
    *cases.INTAKE_ROLES,
    key_in_query=True,
    key_in_form=True,
    rate_limit=RateLimit("open311_post_per_minute_per_key", "open311_post_per_minute_per_address"),
    refusal=_refused,
)


def _answer(fmt: str, produce: Callable[[str], Response]) -> Response:
    """Run a handler for a format; every failure answers in Open311's error format."""
    chosen = _format(fmt)
    if chosen is None:
        return _unknown_format(fmt)
    try:
        return produce(chosen)
    except Exception as exc:  # the spec's error list, never problem+json, whatever went wrong
        return _failure(chosen, exc)


@router.get(
    "/discovery.{fmt}",
    dependencies=[PUBLIC],
    summary="Service discovery: where the GeoReport v2 endpoint is and which formats it speaks",
)
def get_discovery(fmt: FormatPath, request: Request, sessions: Sessions, settings: AppSettings) -> Response:
    """The discovery document (<discovery> in XML)."""
    endpoint = str(request.base_url).rstrip("/") + router.prefix
    return _answer(fmt, lambda f: render(f, "discovery", open311.discovery(sessions, settings, endpoint)))


@router.get(
    "/services.{fmt}",
    dependencies=[PUBLIC],
    summary="Services: every case class, C + component class (C0118 路灯), E + event class (E0101 暴露垃圾)",
)
def get_services(fmt: FormatPath, sessions: Sessions) -> Response:
    """Every service (<services><service> in XML)."""
    return _answer(fmt, lambda f: render(f, "services", open311.list_services(sessions)))


@router.get(
    "/services/{service_code}.{fmt}",
    dependencies=[PUBLIC],
    summary="A service definition: the attributes it asks for",
)
def get_service_definition(service_code: str, fmt: FormatPath, sessions: Sessions) -> Response:
    """A service's attributes (<service_definition> in XML); 404 for an unknown service."""
    return _answer(
        fmt, lambda f: render(f, "service_definition", open311.service_definition(sessions, service_code))
    )


FORM_FIELDS = {
    "api_key": "a key with the reporter role (or dispatcher, field); the X-API-Key header works too",
    "service_code": "C + component class or E + event class, e.g. C0118",
    "lat": "latitude in the datum of crs (WGS 84 by default)",
    "long": "longitude in the datum of crs",
    "crs": "extension: datum of lat/long: wgs84 (default), gcj02 (Amap, Tencent), bd09 (Baidu), cgcs2000",
    "service_object_type": "extension: component",
    "service_object_id": "extension: the component's code (16 or 17 digits), e.g. 3701020118000123",
    "address_string": "address as the reporter gives it",
    "address_id": "address id of the reporter's app (kept with the case)",
    "email": "reporter's e-mail (never shown by GET)",
    "device_id": "reporter's device (never shown by GET)",
    "account_id": "reporter's account (never shown by GET)",
    "first_name": "reporter's first name (never shown by GET)",
    "last_name": "reporter's last name (never shown by GET)",
    "phone": "reporter's phone (never shown by GET)",
    "description": "what is wrong (at most 4000 characters)",
    "media_url": "http(s) URL of a photo",
    "attribute[severity]": "normal or urgent",
    "attribute[component_code]": "component services: same as service_object_id",
}


def _charset(content_type: str) -> str:
    """The charset parameter of a Content-Type, UTF-8 when there is none."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"'):
            return value.strip().strip('"')
    return "utf-8"


def _urlencoded_fields(body: bytes, charset: str) -> list[tuple[str, str]]:
    """The fields of an application/x-www-form-urlencoded body, raw and percent-encoded bytes alike read in
    ``charset``, as the WHATWG URL standard's urlencoded parser does (§5.1). Starlette's form parser reads
    the raw bytes as Latin-1 instead, which turns the UTF-8 that ``curl -d`` and many apps send unescaped
    into mojibake (路面 became è·¯é\x9d¢)."""
    try:
        text = body.decode(charset)
    except LookupError:
        raise InvalidInputError(
            f"the Content-Type names charset {charset!r}, which is not a known text encoding: "
            "send the form in UTF-8"
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"the form is not valid {charset} (byte 0x{body[exc.start]:02x} at offset {exc.start}): "
            "send it in UTF-8, raw or percent-encoded, or name its charset in the Content-Type"
        ) from None
    try:
        return parse_qsl(
            text, keep_blank_values=True, encoding=charset, errors="strict", max_num_fields=MAX_FORM_FIELDS
        )
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"a percent-encoded value is not valid {charset}: percent-encode the UTF-8 bytes of the text"
        ) from None
    except ValueError:  # more than MAX_FORM_FIELDS fields
        raise InvalidInputError(f"the form has more than {MAX_FORM_FIELDS} fields") from None


async def _form_fields(request: Request, media_type: str) -> dict[str, list[str]]:
    """Every value of every text field of the posted form (files ignored), read bounded by Open311Route."""
    if media_type == URLENCODED:
        fields = _urlencoded_fields(await request.body(), _charset(request.headers.get("content-type", "")))
    else:  # multipart (whose parts Starlette decodes in the charset they name), or no body at all
        form = await request.form()
        fields = [(key, value) for key, value in form.multi_items() if isinstance(value, str)]
    params: dict[str, list[str]] = {}
    for key, value in fields:
        params.setdefault(key, []).append(value)
    return params


def _not_a_form(media_type: str) -> str:
    what = "XML" if "xml" in media_type else media_type
    return (
        f"the body is {what} ({media_type}); GeoReport v2 requests are posted as a form "
        "(application/x-www-form-urlencoded or multipart/form-data); the body was not read"
    )


@router.post(
    "/requests.{fmt}",
    dependencies=[REPORTERS],
    summary="Report a problem: a new case, routed to its grid, station and department",
    status_code=201,
    responses={
        201: {
            "description": "[{service_request_id, service_notice, account_id}]; a duplicate gets the open "
            "case's id and a service_notice saying so"
        },
        400: {"description": "a parameter is missing or wrong"},
        403: {"description": "no api_key, or one that is unknown, revoked, or of a role that may not report"},
        429: {"description": "this api_key or this address posted too often: see Retry-After"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["api_key", "service_code", "lat", "long"],
                        "properties": {
                            k: {"type": "string", "description": v} for k, v in FORM_FIELDS.items()
                        },
                    }
                }
            },
        }
    },
)
async def post_request(
    fmt: FormatPath, request: Request, sessions: Sessions, settings: AppSettings
) -> Response:
    """POST requests (form-encoded, as the spec says)."""
    chosen = _format(fmt)
    if chosen is None:
        return _unknown_format(fmt)
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type and media_type not in FORM_MEDIA_TYPES:
        # Never parsed, so an XML body's entities (billion laughs, external files) cannot expand or be read.
        return errors(chosen, 400, [_not_a_form(media_type)])
    try:
        params = await _form_fields(request, media_type)
        in_url: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():  # some clients put api_key in the URL
            in_url.setdefault(key, []).append(value)
        for key, values in in_url.items():
            params.setdefault(key, values)
        # The key, its role and its rate limit, before any field is looked at (gridsvc/api/roles.py).
        api_key = next(iter(params.get("api_key", ())), None) or request.headers.get("x-api-key")
        await admit_key(request, api_key)
        submitted = await run_in_threadpool(
            open311.submit_request,
            sessions,
            settings,
            params,
            header_key=request.headers.get("x-api-key"),
        )
        return render(chosen, "service_requests", submitted.body, status=201 if submitted.created else 200)
    except StarletteHTTPException as exc:  # a body that cannot be parsed as a form
        return errors(chosen, exc.status_code, [str(exc.detail)])
    except Exception as exc:
        return _failure(chosen, exc)


@router.get(
    "/requests.{fmt}",
    dependencies=[PUBLIC],
    summary="Find requests: by id, service, status, dates, bbox; paged, with the total in X-Total-Count",
    description=(
        "Without start_date and end_date: the last 90 days. service_request_id (comma list) overrides every "
        "other filter. Extensions: `bbox=minlon,minlat,maxlon,maxlat`, `crs` (datum of bbox and of the "
        "answered lat/long), `page` (from 1) and `page_size` (default 50, at most 1000); the total is in the "
        "`X-Total-Count` header, pages in `X-Page`, `X-Page-Size`, `X-Total-Pages` and a `Link` header "
        "(rel next/prev/first/last). The reporter's contact is never shown."
    ),
)
def get_requests(
    fmt: FormatPath,
    request: Request,
    sessions: Sessions,
    settings: AppSettings,
    service_request_id: Annotated[
        str | None, Query(description="comma list; overrides all other filters")
    ] = None,
    service_code: Annotated[str | None, Query(description="comma list, e.g. C0118,E0101")] = None,
    start_date: Annotated[
        str | None, Query(description="W3C datetime, e.g. 2024-05-01T00:00:00+08:00")
    ] = None,
    end_date: Annotated[str | None, Query(description="W3C datetime")] = None,
    status: Annotated[str | None, Query(description="open, closed or open,closed")] = None,
    bbox: Annotated[str | None, Query(description="extension: minlon,minlat,maxlon,maxlat")] = None,
    page: Annotated[str | None, Query(description="extension: page number from 1")] = None,
    page_size: Annotated[str | None, Query(description="extension: 1-1000, default 50")] = None,
    crs: Annotated[str | None, Query(description="extension: wgs84 (default), gcj02, bd09, cgcs2000")] = None,
    jurisdiction_id: Annotated[
        str | None, Query(description="accepted and ignored: one jurisdiction")
    ] = None,
) -> Response:
    """GET requests (<service_requests><request> in XML)."""

    def produce(f: str) -> Response:
        query = open311.parse_request_query(
            settings,
            service_request_id=service_request_id,
            service_code=service_code,
            start_date=start_date,
            end_date=end_date,
            status=status,
            bbox=bbox,
            page=page,
            page_size=page_size,
            crs=crs,
        )
        found = open311.find_requests(sessions, settings, query)
        return render(f, "service_requests", found.requests, headers=_paging_headers(request, found))

    return _answer(fmt, produce)


def _paging_headers(request: Request, found: open311.RequestPage) -> dict[str, str]:
    def link(number: int, rel: str) -> str:
        return f'<{request.url.include_query_params(page=number, page_size=found.page_size)}>; rel="{rel}"'

    links = [link(1, "first"), link(found.pages, "last")]
    if found.page < found.pages:
        links.append(link(found.page + 1, "next"))
    if 1 < found.page <= found.pages:
        links.append(link(found.page - 1, "prev"))
    return {
        "X-Total-Count": str(found.total),
        "X-Page": str(found.page),
        "X-Page-Size": str(found.page_size),
        "X-Total-Pages": str(found.pages),
        "Link": ", ".join(links),
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
    }


@router.get("/requests/{service_request_id}.{fmt}", dependencies=[PUBLIC], summary="One request by its id")
def get_request(
    service_request_id: str,
    fmt: FormatPath,
    sessions: Sessions,
    settings: AppSettings,
    crs: Annotated[str | None, Query(description="extension: datum of lat/long, default wgs84")] = None,
    jurisdiction_id: Annotated[str | None, Query(description="accepted and ignored")] = None,
) -> Response:
    """GET a request: a one-element list, as the spec shows; 404 for an unknown id."""
    return _answer(
        fmt,
        lambda f: render(
            f, "service_requests", open311.get_request(sessions, settings, service_request_id, crs=crs)
        ),
    )


@router.get(
    "/tokens/{token_id}.{fmt}",
    dependencies=[PUBLIC],
    summary="A token's request id (every service is realtime: POST returns the id itself, this echoes it)",
)
def get_token(token_id: str, fmt: FormatPath, sessions: Sessions) -> Response:
    """GET a token: [{service_request_id, token}]."""
    return _answer(fmt, lambda f: render(f, "service_requests", open311.get_token(sessions, token_id)))


@router.api_route(
    "/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
    dependencies=[PUBLIC],
)
def not_a_resource(rest: str, request: Request) -> Response:
    """Anything else under /open311/v2/: the spec's error list, not problem+json."""
    suffix = rest.rsplit(".", 1)[-1].lower() if "." in rest.rsplit("/", 1)[-1] else ""
    fmt = suffix if suffix in MEDIA_TYPES else "xml"
    if KNOWN_RESOURCE.fullmatch(rest):
        allowed = ALLOWED.get(rest.rsplit(".", 1)[0], "GET")
        return errors(
            fmt,
            405,
            [f"{request.method} is not allowed on {rest}: use {allowed}"],
            headers={"Allow": allowed},
        )
    return errors(
        fmt,
        404,
        [f"no resource {rest!r}: discovery, services, services/<code>, requests, requests/<id>, tokens/<id>"],
    )
