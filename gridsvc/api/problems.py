"""RFC 9457 problem+json answers: one table maps each domain error class to its HTTP status."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import psycopg2
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridsvc.db.failures import server_failure
from gridsvc.errors import (
    AuthenticationError,
    ConflictError,
    GridsvcError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    SetupProblemError,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://gridsvc.example/problems/"
# A busy service (too many requests in flight, or no free database connection) answers 503 with this
# Retry-After (RFC 9110 §10.2.3): soon enough for a burst to pass, late enough not to feed it.
RETRY_AFTER_SECONDS = 1
BUSY_TITLE = "Service busy"
BUSY_DETAIL = f"the service is at its load limit; retry after {RETRY_AFTER_SECONDS} s"

# The database is down or the connection to it broke (stopped, restarting, crashed, network). The request did
# not complete; the service itself is fine: pool_pre_ping (gridsvc/db/engine.py) replaces dead connections,
# so it answers again by itself as soon as the database does. 503 + Retry-After (RFC 9110 §15.6.4,
# §10.2.3): a restart of PostgreSQL takes seconds. SQLAlchemy wraps driver errors; code on the raw driver
# (bulk COPY) raises psycopg2's own.
DATABASE_RETRY_AFTER_SECONDS = 5
DATABASE_DOWN_TITLE = "Database unavailable"
DATABASE_DOWN_DETAIL = "the database cannot be reached"
# The server took the statement and could not finish it (cancelled, out of disk, a lock timeout):
# still 503 + Retry-After, but said as it is (gridsvc/db/failures.py).
DATABASE_FAILED_TITLE = "Database could not finish the request"
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
)


def database_unavailable_text(exc: BaseException) -> tuple[str, str]:
    """Title and detail of the 503 for ``exc``: unreachable, or what the server could not finish."""
    failure = server_failure(exc)
    return (
        (DATABASE_DOWN_TITLE, DATABASE_DOWN_DETAIL) if failure is None else (DATABASE_FAILED_TITLE, failure)
    )


def is_database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database cannot be reached or dropped the connection."""
    if isinstance(exc, DATABASE_DOWN_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


# Domain error class -> (HTTP status, problem type slug).
STATUS_OF: dict[type[GridsvcError], tuple[int, str]] = {
    InvalidInputError: (422, "invalid-input"),
    NotFoundError: (404, "not-found"),
    ConflictError: (409, "conflict"),
    AuthenticationError: (401, "unauthorized"),
    PermissionDeniedError: (403, "forbidden"),
    SetupProblemError: (503, "unavailable"),
}


def problem_body(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    instance: str,
    errors: list[dict[str, Any]] | None = None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The members of a problem+json body (RFC 9457)."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    for name, value in (extensions or {}).items():
        body.setdefault(name, value)  # never over the standard members
    return body


def domain_problem(exc: GridsvcError, instance: str) -> dict[str, Any]:
    """The problem+json body of a domain error, as its handler answers it (also kept in a failed import
    job's state)."""
    status, kind = _status_for(exc)
    errors = [{"field": p.field, "message": p.message, **p.location} for p in exc.problems]
    return problem_body(
        status, exc.title, exc.detail, kind=kind, instance=instance, errors=errors, extensions=exc.extensions
    )


def exception_problem(exc: Exception, instance: str) -> dict[str, Any]:
    """The problem+json body the handlers below answer ``exc`` with (for a failed import job's state,
    which no handler sees): a domain error as itself, the database's as 503 or 409, anything else 500."""
    if isinstance(exc, GridsvcError):
        return domain_problem(exc, instance)
    if isinstance(exc, PoolTimeoutError):
        return problem_body(503, BUSY_TITLE, BUSY_DETAIL, kind="busy", instance=instance)
    if is_database_unavailable(exc):
        title, detail = database_unavailable_text(exc)
        return problem_body(503, title, detail, kind="unavailable", instance=instance)
    if isinstance(exc, IntegrityError):
        rule = getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or "a database rule"
        return problem_body(
            409,
            "Conflict with a database rule",
            f"the change would break {rule}; nothing was written",
            kind="conflict",
            instance=instance,
            errors=[{"field": "database", "message": f"refused by {rule}"}],
        )
    return problem_body(
        500, "Internal error", "the request failed inside the service", kind="internal", instance=instance
    )


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body = problem_body(
        status, title, detail, kind=kind, instance=str(request.url.path), errors=errors, extensions=extensions
    )
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _status_for(exc: GridsvcError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400, "bad-request"


def _request_error(err: Mapping[str, Any]) -> dict[str, str]:
    """One of FastAPI's validation errors in the client's words. A body's own fields are named as the
    client sent them (a form field, a JSON member: ``file``, ``location.lat``), not as ``body.file``; a
    query or path parameter keeps where it is (``query.limit``). The messages the framework words for its
    own types say what to send instead."""
    where = [str(part) for part in err["loc"]]
    field = ".".join(where[1:] if where[0] == "body" and len(where) > 1 else where)
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "json_invalid":  # where[1] is a character position, not a member
        field, message = "body", f"{message} (at character {where[1] if len(where) > 1 else '?'})"
    elif err["type"] == "missing":
        message = "required, and missing from the request"
        if where == ["body", "file"]:
            message = "missing: send the layer's file as the multipart form part named file"
    elif "Expected UploadFile" in message:
        message = (
            'must be a file: a multipart form part with a filename="…", not a text value (RFC 7578 has a'
            ' part named only by filename*= read as text: give filename="…", UTF-8 for a Chinese name)'
        )
    return {"field": field, "message": message}


# The form parser's limits (Starlette's Request.form defaults), as it words them, and what to tell a client.
_FORM_LIMITS: Final = {
    "Part exceeded maximum size": (
        "a form field other than the file is larger than 1 MiB: send the layer as the part named file, with"
        ' a filename="…", and the other fields (mapping, crs, layer, …) as short text'
    ),
    "Too many fields": "the form has more than 1,000 fields: send the file and the options the route lists",
    "Too many files": "the form has more than 1,000 files: send one file, as the part named file",
}


def _form_limit_message(detail: str) -> str | None:
    return next((said for start, said in _FORM_LIMITS.items() if detail.startswith(start)), None)


def _request_detail(errors: list[dict[str, str]]) -> str:
    said = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
    more = f" (and {len(errors) - 3} more, see errors)" if len(errors) > 3 else ""
    return f"the request is not valid: {said}{more}"


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through problem+json; driver messages are logged, never sent."""

    @app.exception_handler(GridsvcError)
    async def _domain(request: Request, exc: GridsvcError) -> JSONResponse:
        body = domain_problem(exc, str(request.url.path))
        headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if body["status"] == 401 else None
        return JSONResponse(
            jsonable_encoder(body), status_code=body["status"], media_type=PROBLEM_JSON, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_request_error(err) for err in exc.errors()]
        return problem(
            request, 422, "Invalid input", _request_detail(errors), kind="invalid-input", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed"}
        detail = str(exc.detail)
        form_limit = _form_limit_message(detail) if exc.status_code == 400 else None
        if form_limit is not None:
            errors = [{"field": "body", "message": form_limit}]
            return problem(
                request, 400, "Bad request", f"{form_limit} ({detail})", kind="http-400", errors=errors
            )
        return problem(
            request,
            exc.status_code,
            titles.get(exc.status_code, "HTTP error"),
            detail,
            kind=f"http-{exc.status_code}",
        )

    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        # One line, no traceback: while the database is down every request ends here.
        # (Open311 routes catch it themselves and answer in GeoReport v2's format: routes/open311.py.)
        log.warning("database unavailable for %s %s: %s", request.method, request.url.path, exc)
        title, detail = database_unavailable_text(exc)
        return problem(
            request,
            503,
            title,
            detail,
            kind="unavailable",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    for error_class in DATABASE_DOWN_ERRORS:
        app.add_exception_handler(error_class, _db_down)

    @app.exception_handler(PoolTimeoutError)
    async def _pool_exhausted(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        # Every pooled connection stayed busy for the pool timeout: load, not a fault; the client retries.
        log.warning("no free database connection for %s %s: %s", request.method, request.url.path, exc)
        return problem(
            request,
            503,
            BUSY_TITLE,
            BUSY_DETAIL,
            kind="busy",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(SQLAlchemyError)
    async def _db(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        if is_database_unavailable(exc):  # any driver error SQLAlchemy recognised as a lost connection
            return await _db_down(request, exc)
        if isinstance(exc, IntegrityError):
            # The services check first and explain; a database rule that still refuses a write (a race
            # the service could not see, or a check it lacks) is a conflict with the stored data, not a
            # crash. Only the rule's name goes out: the driver's message may quote stored values.
            log.warning("database rule refused %s %s: %s", request.method, request.url.path, exc.orig)
        else:
            log.exception("database error")
        body = exception_problem(exc, str(request.url.path))  # 409 for the rule, else 500
        return JSONResponse(jsonable_encoder(body), status_code=body["status"], media_type=PROBLEM_JSON)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # A fault no handler above knows (a bug): still problem+json, never Starlette's plain text, and
        # never the exception's words, which may name server paths. Starlette raises it on after this
        # answer, so its traceback goes to the server's log.
        body = exception_problem(exc, str(request.url.path))
        return JSONResponse(jsonable_encoder(body), status_code=body["status"], media_type=PROBLEM_JSON)
