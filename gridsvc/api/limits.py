"""Load shedding: at most ``max_requests_in_flight`` requests at once; the rest get 503 + Retry-After at once.

Why refuse rather than queue: two cores finish a few hundred requests a second. Beyond that a queue only
grows, every answer comes later than the one before, clients time out and send again, and the service
falls over doing work nobody waits for any more. A refusal costs microseconds and tells the client when
to come back (RFC 9110 §15.6.4 503, §10.2.3 Retry-After), and the requests already admitted keep their
latency. ``/health`` is never refused: a load balancer must be able to tell "busy" from "down".

The answer is problem+json, except under ``/open311/`` where GeoReport v2 clients expect the spec's
error list (``[{code, description}]``, or ``<errors>`` in XML when the path does not end in ``.json``).
"""

from __future__ import annotations

import json
import logging
import time
from xml.sax.saxutils import escape

from starlette.types import ASGIApp, Receive, Scope, Send

from gridsvc.api.problems import BUSY_DETAIL, BUSY_TITLE, PROBLEM_JSON, RETRY_AFTER_SECONDS, TYPE_BASE

log = logging.getLogger(__name__)

EXEMPT_PATHS = frozenset({"/health"})
OPEN311_PREFIX = "/open311/"
# Under overload every refusal would log a line; one summary per interval says the same.
LOG_EVERY_SECONDS = 10.0


def busy_body(path: str) -> tuple[bytes, str]:
    """(body, media type) of the 503 for a request to ``path``."""
    if path.startswith(OPEN311_PREFIX):
        if path.rsplit("/", 1)[-1].lower().endswith(".json"):
            body = json.dumps([{"code": 503, "description": BUSY_DETAIL}], ensure_ascii=False)
            return body.encode("utf-8"), "application/json; charset=utf-8"
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<errors><error><code>503</code><description>{escape(BUSY_DETAIL)}</description></error></errors>"
        )
        return xml.encode("utf-8"), "text/xml; charset=utf-8"
    problem = {
        "type": TYPE_BASE + "busy",
        "title": BUSY_TITLE,
        "status": 503,
        "detail": BUSY_DETAIL,
        "instance": path,
    }
    return json.dumps(problem, ensure_ascii=False).encode("utf-8"), PROBLEM_JSON


class InFlightLimit:
    """ASGI middleware bounding the HTTP requests in flight; the excess is answered 503 + Retry-After.

    The count lives on the event loop's thread (ASGI calls arrive there), so a plain integer is enough:
    it is read and changed only between awaits.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0
        self.refused = 0
        self._refused_logged = 0
        self._logged_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or refuse it when ``limit`` requests are already in flight."""
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await self._refuse(scope, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Scope, send: Send) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            log.warning(
                "busy: %d request(s) in flight, the limit; refused %d with 503 since the last report",
                self.in_flight,
                self.refused - self._refused_logged,
            )
            self._logged_at, self._refused_logged = now, self.refused
        body, media_type = busy_body(scope["path"])
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", media_type.encode("latin-1")),
                    (b"content-length", str(len(body)).encode("latin-1")),
                    (b"retry-after", str(RETRY_AFTER_SECONDS).encode("latin-1")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
