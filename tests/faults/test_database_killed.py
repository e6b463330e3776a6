"""PostgreSQL crashes under load: the service answers 503 while it is down, recovers by itself when it is
back, and every report it accepted is still there.

The crash is ``pg_ctl stop -m immediate`` (what a power cut or an OOM kill does to the server: no
checkpoint, the next start replays the WAL) on the fault tests' own cluster, which keeps PostgreSQL's
durable defaults. The service stays up throughout and is never restarted.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from gridsvc.db.embedded import EmbeddedCluster
from gridsvc.db.engine import make_engine
from tests.factories import CELL, GRID_ORIGIN
from tests.faults.conftest import FaultCity, ServedGridsvc, crash, query, wait_for

pytestmark = pytest.mark.slow

# A request that takes longer than this has hung: the service must answer, if only 503, at once.
REQUEST_BOUND_SECONDS = 15.0
POSTERS = 3  # threads posting Open311 reports
# Longer than the locator's recheck (2 s) and the API key cache (5 s): reads from memory run out, and
# every request has to ask the database for its key.
DOWN_SECONDS = 6.0


@dataclass
class Answer:
    """One request of the load and what came back (or the transport error instead)."""

    kind: str  # post, locate, health
    started: float
    ended: float
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error: str | None = None
    token: str | None = None  # the post's unique description


class Load:
    """Threads posting Open311 reports and locating points at the served process until stopped."""

    def __init__(self, served: ServedGridsvc, city: FaultCity) -> None:
        self.served = served
        self.city = city
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(kind, seed), daemon=True)
            for seed, kind in enumerate(["post"] * POSTERS + ["locate", "health"])
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_BOUND_SECONDS * 2)

    def accepted_posts_since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.kind == "post" and a.status == 201 and a.started > moment)

    def _run(self, kind: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        x0, y0 = GRID_ORIGIN
        with httpx.Client(base_url=self.served.base, timeout=REQUEST_BOUND_SECONDS) as client:
            while not self._stop.is_set():
                # Points inside the four unit grids (two cells square from the origin).
                lon, lat = (
                    x0 + rng.uniform(0.0001, 2 * CELL - 0.0001),
                    y0 + rng.uniform(0.0001, 2 * CELL - 0.0001),
                )
                answer = Answer(kind=kind, started=time.monotonic(), ended=0.0)
                try:
                    response = self._ask(client, kind, float(lon), float(lat), answer)
                    answer.status = response.status_code
                    answer.headers = dict(response.headers)
                    answer.body = response.json()
                except httpx.HTTPError as exc:
                    answer.error = f"{type(exc).__name__}: {exc}"
                answer.ended = time.monotonic()
                with self._lock:
                    self.answers.append(answer)
                time.sleep(0.01)

    def _ask(self, client: httpx.Client, kind: str, lon: float, lat: float, answer: Answer) -> httpx.Response:
        if kind == "post":
            answer.token = f"数据库故障测试 {uuid.uuid4()}"
            return client.post(
                "/open311/v2/requests.json",
                data={
                    "api_key": self.city.keys["reporter"],
                    "service_code": "E0101",
                    "lat": f"{lat:.7f}",
                    "long": f"{lon:.7f}",
                    "crs": "cgcs2000",
                    "description": answer.token,
                },
            )
        if kind == "locate":
            return client.get(
                "/v1/locate",
                params={"lon": lon, "lat": lat, "crs": "cgcs2000"},
                headers={"X-API-Key": self.city.keys["field"]},
            )
        return client.get("/health")


def check_unavailable(answer: Answer) -> None:
    """A 503 as each kind of client expects it, with Retry-After."""
    assert answer.status == 503, answer
    assert int(answer.headers["retry-after"]) > 0, answer
    if answer.kind == "post":  # GeoReport v2's own error list
        assert answer.headers["content-type"].startswith("application/json"), answer
        assert [e["code"] for e in answer.body] == [503], answer
    elif answer.kind == "locate":
        assert answer.headers["content-type"] == "application/problem+json", answer
        assert answer.body["status"] == 503 and answer.body["type"].endswith("/unavailable"), answer
    else:
        assert answer.body["database"] == {"reachable": False}, answer


def test_database_crash_under_load_answers_503_recovers_by_itself_and_loses_no_accepted_report(
    city: FaultCity, durable_cluster: EmbeddedCluster, serve: Callable[..., ServedGridsvc]
) -> None:
    # Durable before the answer: the service's own connections commit synchronously to an fsync'd WAL.
    engine = make_engine(city.url)
    with engine.connect() as conn:
        assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
        assert conn.execute(text("SHOW fsync")).scalar_one() == "on"
    engine.dispose()

    served = serve(city.url)
    load = Load(served, city)
    load.start()
    try:
        wait_for("reports accepted before the crash", lambda: load.accepted_posts_since(0) >= 10)
        crash(durable_cluster)
        down = time.monotonic()
        time.sleep(DOWN_SECONDS)
        restarting = time.monotonic()
        durable_cluster.up()
        # Recovered by itself: the same process accepts reports again.
        wait_for("a report accepted after the restart", lambda: load.accepted_posts_since(restarting))
        recovered = time.monotonic()
        wait_for("more reports after recovery", lambda: load.accepted_posts_since(recovered) >= 10)
    finally:
        load.stop()
    assert served.alive, served.log()
    answers = load.answers

    # Never a transport error or a hang, never a 500: 2xx, or 503 with Retry-After.
    assert [a for a in answers if a.error is not None] == []
    for answer in answers:
        if answer.status not in (200, 201):
            check_unavailable(answer)
    # While the database was down, everything that needed it answered 503. A locate may still be answered
    # from the plan index in memory until its recheck (2 s) comes due.
    while_down = [a for a in answers if down < a.started and a.ended < restarting]
    assert {a.kind for a in while_down} == {"post", "locate", "health"}
    for answer in while_down:
        if not (answer.kind == "locate" and answer.status == 200 and answer.started < down + 2.5):
            check_unavailable(answer)

    # Every report answered 201 or 200 (before, during or after the crash) is in the database with the id
    # it was given, and every stored case has its intake in its history.
    accepted = [a for a in answers if a.kind == "post" and a.status in (200, 201)]
    stored = dict(query(city.dsn, "SELECT description, request_code FROM case_record"))
    lost = [a for a in accepted if a.token not in stored]
    assert lost == [], f"{len(lost)} of {len(accepted)} accepted reports lost"
    for answer in accepted:
        given = answer.body[0]["service_request_id"]
        assert given == stored[answer.token] or given in stored.values()  # a duplicate names the original
    assert query(
        city.dsn,
        "SELECT count(*) FROM case_record c WHERE NOT EXISTS "
        "(SELECT 1 FROM case_event e WHERE e.case_id = c.id AND e.action = 'intake')",
    ) == [(0,)]
