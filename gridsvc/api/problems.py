"""RFC 9457 problem+json answers: one table maps each domain error class to its HTTP status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

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

# Domain error class -> (HTTP status, problem type slug).
STATUS_OF: dict[type[GridsvcError], tuple[int, str]] = {
    InvalidInputError: (422, "invalid-input"),
    NotFoundError: (404, "not-found"),
    ConflictError: (409, "conflict"),
    AuthenticationError: (401, "unauthorized"),
    PermissionDeniedError: (403, "forbidden"),
    SetupProblemError: (503, "unavailable"),
}


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": str(request.url.path),
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _status_for(exc: GridsvcError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400, "bad-request"


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through problem+json; driver messages are logged, never sent."""

    @app.exception_handler(GridsvcError)
    async def _domain(request: Request, exc: GridsvcError) -> JSONResponse:
        status, kind = _status_for(exc)
        errors = [{"field": p.field, "message": p.message, **p.location} for p in exc.problems]
        headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if status == 401 else None
        return problem(request, status, exc.title, exc.detail, kind=kind, errors=errors, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(part) for part in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        return problem(
            request,
            422,
            "Invalid input",
            "the request is not valid; see errors",
            kind="invalid-input",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed"}
        return problem(
            request,
            exc.status_code,
            titles.get(exc.status_code, "HTTP error"),
            str(exc.detail),
            kind=f"http-{exc.status_code}",
        )

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.exception("database unavailable")
        return problem(
            request, 503, "Database unavailable", "the database cannot be reached", kind="unavailable"
        )

    @app.exception_handler(SQLAlchemyError)
    async def _db(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.exception("database error")
        return problem(
            request, 500, "Internal error", "the request failed inside the service", kind="internal"
        )
