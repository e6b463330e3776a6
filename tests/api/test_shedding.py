"""Load shedding over real HTTP: past its limits the service answers 503 + Retry-After, never 500.

Requests are made slow deterministically: the test holds a case's row lock, so every step on that case
waits inside the service (in flight, holding a database connection) until the test lets go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.orm import sessionmaker

from gridsvc.db.engine import make_engine
from gridsvc.services.access import LOCAL_OPERATOR, create_key
from tests.conftest import scratch_database, served_gridsvc
from tests.factories import LAMP, add_case_city

DB_NAME = "gridsvc_shedding"
REPORT = {
    "kind": "component",
    "class_code": "0118",
    "lon": LAMP[0] + 0.0002,
    "lat": LAMP[1],
    "crs": "cgcs2000",
    "description": "路灯不亮",
}
# Nothing else may run in the served process: the escalation thread would take connections too.
QUIET = {"ESCALATION_INTERVAL_SECONDS": "0"}


@dataclass
class ShedCity:
    url: str
    dispatcher: dict[str, str]
    reporter: dict[str, str]


@pytest.fixture(scope="module")
def shed_city(database_url: str) -> Iterator[ShedCity]:
    """A database of its own with the hand-made case city and two keys (committed: a served process reads
    it)."""
    url = scratch_database(database_url, DB_NAME)
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions.begin() as session:
        add_case_city(session)
    keys = {
        role: {"X-API-Key": create_key(sessions, name=f"shed-{role}", role=role, actor=LOCAL_OPERATOR).secret}
        for role in ("dispatcher", "reporter")
    }
    engine.dispose()
    yield ShedCity(url, keys["dispatcher"], keys["reporter"])


def new_case(base: str, city: ShedCity) -> str:
    made = httpx.post(f"{base}/v1/cases", json=REPORT, headers=city.reporter, timeout=30)
    assert made.status_code == 201, made.text
    return str(made.json()["request_code"])


class HeldCase:
    """The case's row locked by the test (``SELECT ... FOR UPDATE``), so steps on it wait in the service."""

    def __init__(self, url: str, code: str) -> None:
        self.engine = make_engine(url)
        self.conn: Connection = self.engine.connect()
        self.conn.begin()
        self.conn.execute(
            text("SELECT id FROM case_record WHERE request_code = :code FOR UPDATE"), {"code": code}
        )
        self.watcher = self.engine.connect()

    def wait_for_waiters(self, n: int, timeout_s: float = 20) -> None:
        """Until ``n`` of the service's connections wait for the lock."""
        deadline = time.monotonic() + timeout_s
        waiting = -1
        while time.monotonic() < deadline:
            waiting = self.watcher.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                    "AND application_name = 'gridsvc' AND wait_event_type = 'Lock'"
                ),
                {"db": DB_NAME},
            ).scalar_one()
            self.watcher.rollback()
            if waiting >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"{waiting} request(s) wait for the lock, expected {n}")

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()
        self.watcher.close()
        self.engine.dispose()


def in_threads(calls: list[tuple[str, str, dict[str, Any]]]) -> tuple[list[httpx.Response | None], Any]:
    """Start each (method, url, kwargs) in its own thread; returns the answers' list (filled as they come)
    and a function that joins the threads."""
    answers: list[httpx.Response | None] = [None] * len(calls)

    def call(i: int, method: str, url: str, kwargs: dict[str, Any]) -> None:
        answers[i] = httpx.request(method, url, timeout=60, **kwargs)

    threads = [threading.Thread(target=call, args=(i, *c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()

    def join() -> None:
        for thread in threads:
            thread.join(timeout=60)

    return answers, join


def wait_answered(answers: list[httpx.Response | None], n: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(a is not None for a in answers) < n:
        assert time.monotonic() < deadline, f"only {sum(a is not None for a in answers)} answered"
        time.sleep(0.02)


def assert_busy_problem(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 503 and body["type"].endswith("/busy") and "retry" in body["detail"]


def test_requests_beyond_the_limit_get_503_with_retry_after(shed_city: ShedCity) -> None:
    with served_gridsvc(shed_city.url, MAX_REQUESTS_IN_FLIGHT="2", **QUIET) as base:
        code = new_case(base, shed_city)
        held = HeldCase(shed_city.url, code)
        try:
            # Ten at once, two may be in flight: the two admitted wait for the lock, the rest are refused.
            step = ("POST", f"{base}/v1/cases/{code}/register", {"headers": shed_city.dispatcher})
            answers, join = in_threads([step] * 10)
            wait_answered(answers, 8)
            held.wait_for_waiters(2)
            refused = [a for a in answers if a is not None]
            assert len(refused) == 8
            for response in refused:
                assert_busy_problem(response)

            # Still saturated: health answers; Open311 clients get the spec's error list, JSON or XML.
            health = httpx.get(f"{base}/health", timeout=10)
            assert health.status_code == 200 and health.json()["status"] == "ok"
            as_json = httpx.get(f"{base}/open311/v2/requests.json", timeout=10)
            assert as_json.status_code == 503 and as_json.headers["retry-after"] == "1"
            assert as_json.headers["content-type"] == "application/json; charset=utf-8"
            assert [e["code"] for e in as_json.json()] == [503]
            as_xml = httpx.get(f"{base}/open311/v2/services.xml", timeout=10)
            assert as_xml.status_code == 503 and as_xml.headers["retry-after"] == "1"
            assert as_xml.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<errors><error>')
            assert_busy_problem(httpx.get(f"{base}/v1/cases/{code}", headers=shed_city.dispatcher))
        finally:
            held.release()
        join()
        # The two admitted finish: one registers the case, the other finds it registered. No 500.
        assert sorted(a.status_code for a in answers if a is not None) == [200, 409] + [503] * 8

        # And the service answers normally again.
        after = httpx.get(f"{base}/v1/cases/{code}", headers=shed_city.dispatcher, timeout=10)
        assert after.status_code == 200 and after.json()["status"] == "registered"
        assert httpx.get(f"{base}/open311/v2/services.json", timeout=10).status_code == 200


def test_no_free_database_connection_is_503_with_retry_after(shed_city: ShedCity) -> None:
    pool = {"DB_POOL_SIZE": "1", "DB_MAX_OVERFLOW": "0", "DB_POOL_TIMEOUT_SECONDS": "0.3"}
    with served_gridsvc(shed_city.url, MAX_REQUESTS_IN_FLIGHT="10", **pool, **QUIET) as base:
        code = new_case(base, shed_city)
        held = HeldCase(shed_city.url, code)
        try:
            # One step holds the only connection while it waits for the lock.
            answers, join = in_threads(
                [("POST", f"{base}/v1/cases/{code}/register", {"headers": shed_city.dispatcher})]
            )
            held.wait_for_waiters(1)
            waited = httpx.get(f"{base}/v1/cases/{code}", headers=shed_city.dispatcher, timeout=10)
            assert_busy_problem(waited)
            as_json = httpx.get(f"{base}/open311/v2/requests.json", timeout=10)
            assert as_json.status_code == 503 and as_json.headers["retry-after"] == "1"
            assert [e["code"] for e in as_json.json()] == [503]
        finally:
            held.release()
        join()
        assert answers[0] is not None and answers[0].status_code == 200, answers[0]
        after = httpx.get(f"{base}/v1/cases/{code}", headers=shed_city.dispatcher, timeout=10)
        assert after.status_code == 200 and after.json()["status"] == "registered"
