"""Bounded request bodies: refused when Content-Length says they are too large, stopped when counting does.

FastAPI reads a form (and spools its files to disk) before a route's code runs, so a limit checked in the
route would come after the damage. :class:`UploadLimitRoute` checks first: a declared length over the limit is
answered 413 before a byte of the body is read, and a body without one (chunked) is counted as it arrives
and cut off at the limit (RFC 9110 §15.5.14 413 Content Too Large).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import Message

from gridsvc.api.problems import problem
from gridsvc.services.uploads import too_large


class BodyTooLargeError(HTTPException):
    """The body is larger than allowed. An HTTPException, so FastAPI's body parsing lets it through as is."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


def declared_length(request: Request) -> int | None:
    """The Content-Length the client sent, if it is a number."""
    raw = request.headers.get("content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def bounded(request: Request, limit: int, detail: str, tail: bytearray | None = None) -> Request:
    """The same request, whose body raises :class:`BodyTooLargeError` when it is read: at once when
    Content-Length is over ``limit``, else as soon as more than ``limit`` bytes have arrived. ``tail``, if
    given, keeps the last :data:`TAIL_BYTES` of what was read."""
    declared_too_large = (declared_length(request) or 0) > limit
    upstream = request.receive
    received = 0

    async def receive() -> Message:
        nonlocal received
        if declared_too_large:
            raise BodyTooLargeError(detail)
        message = await upstream()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            received += len(body)
            if received > limit:
                raise BodyTooLargeError(detail)
            if tail is not None:
                tail.extend(body[-TAIL_BYTES:])
                del tail[:-TAIL_BYTES]
        return message

    return Request(request.scope, receive)


# Enough of a body's end to hold a multipart form's closing delimiter (a boundary is at most 70 bytes).
TAIL_BYTES = 256


def multipart_cut_off(request: Request, tail: bytes) -> str | None:
    """What to say of a multipart form whose body ends before its closing delimiter (``--boundary--``),
    given the body's last bytes; None for any other body. The form parser takes such a body for the
    parts it completed, so an upload cut off in its file part would read as a form with no file."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    boundary = next(
        (
            value.strip().strip('"')
            for name, _, value in (p.partition("=") for p in content_type.split(";")[1:])
            if name.strip().lower() == "boundary"
        ),
        "",
    )
    if not boundary or f"--{boundary}--".encode("latin-1", "replace") in tail:
        return None
    return (
        f"the multipart body ends before its closing boundary (--{boundary}--): the upload was cut off on "
        "the way; nothing was imported, send it again"
    )


class BoundedBodyRoute(APIRoute):
    """A route whose body is cut off past ``max_body_bytes``: reading more raises :class:`BodyTooLargeError`
    (an HTTPException with status 413), for the route to answer in its own format.

    Subclass it with the two class attributes set, first among the bases: ``class R(BoundedBodyRoute,
    RoleRoute)``, so that whatever reads the body (a key in a form, the handler) reads it bounded.
    """

    max_body_bytes: ClassVar[int] = 1 << 20
    body_too_large: ClassVar[str] = "the request body is larger than 1 MiB"

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, given the request with its body bounded."""
        handler = super().get_route_handler()

        async def with_bounded_body(request: Request) -> Response:
            return await handler(bounded(request, self.max_body_bytes, self.body_too_large))

        return with_bounded_body


class UploadLimitRoute(APIRoute):
    """A route whose request body may be at most the app's ``max_upload_bytes`` (GRIDSVC_MAX_UPLOAD_BYTES).

    Combine it with another route class by putting it first: ``class R(UploadLimitRoute, RoleRoute)``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler behind the size check."""
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            limit = int(request.app.state.settings.max_upload_bytes)
            tail = bytearray()
            try:
                if (declared_length(request) or 0) > limit:
                    raise BodyTooLargeError(too_large(limit))  # before the key is even looked at
                return await handler(bounded(request, limit, too_large(limit), tail))
            except BodyTooLargeError as exc:
                return problem(request, 413, "Content too large", str(exc.detail), kind="too-large")
            except RequestValidationError:
                # A form cut off reads as one missing what it lost (the file, most often): say what is
                # wrong with the request itself, not with the fields it seems to lack.
                cut_off = multipart_cut_off(request, bytes(tail))
                if cut_off is None:
                    raise
                return problem(request, 400, "Bad request", cut_off, kind="bad-request")

        return limited
