"""Open311 POST is rate-limited per API key and per client address, over real HTTP (`gridsvc serve`).

The limits count every POST, so these posts leave out service_code: each is a cheap 400 that writes
nothing, and the database needs no city. X-Forwarded-For names the client only when the peer is a
proxy listed in GRIDSVC_TRUSTED_PROXIES.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import sessionmaker

from gridsvc.db.engine import make_engine
from gridsvc.services.access import LOCAL_OPERATOR, create_key
from tests.conftest import scratch_database, served_gridsvc

FORM = {"lat": "36.66", "long": "117.02"}  # no service_code: 400 once admitted


@pytest.fixture(scope="module")
def limited_db(database_url: str) -> Iterator[tuple[str, list[str]]]:
    """A database of its own with four reporter keys."""
    url = scratch_database(database_url, "gridsvc_rate_limit")
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    keys = [
        create_key(sessions, name=f"市民App-{i}", role="reporter", actor=LOCAL_OPERATOR).secret
        for i in range(4)
    ]
    engine.dispose()
    yield url, keys


def post(base: str, key: str | None, *, fmt: str = "json", client: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": client} if client else {}
    data = {**FORM, **({"api_key": key} if key else {})}
    return httpx.post(f"{base}/open311/v2/requests.{fmt}", data=data, headers=headers, timeout=10)


def assert_too_many(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 60
    if response.headers["content-type"].startswith("application/json"):
        body = response.json()
        assert [e["code"] for e in body] == [429]
        description = body[0]["description"]
    else:
        error = ET.fromstring(response.content).find("error")
        assert error is not None and error.findtext("code") == "429"
        description = error.findtext("description") or ""
    for word in words:
        assert word in description, description


def test_one_address_is_limited_and_x_forwarded_for_is_not_believed(
    limited_db: tuple[str, list[str]],
) -> None:
    url, keys = limited_db
    settings = {"OPEN311_POST_PER_MINUTE_PER_ADDRESS": "3", "OPEN311_POST_PER_MINUTE_PER_KEY": "100"}
    with served_gridsvc(url, **settings) as base:
        for i in range(3):  # a minute's worth at once, each from "another" client that nobody vouches for
            assert post(base, keys[0], client=f"203.0.113.{i}").status_code == 400
        assert_too_many(post(base, keys[1], client="203.0.113.99"), "per address")
        assert_too_many(post(base, keys[1], fmt="xml"), "per address")
        assert_too_many(post(base, None))  # before a key is even looked up
        # Reads are not limited.
        assert httpx.get(f"{base}/open311/v2/requests.json").status_code == 200


def test_one_key_is_limited_across_addresses_behind_a_trusted_proxy(
    limited_db: tuple[str, list[str]],
) -> None:
    url, keys = limited_db
    settings = {
        "OPEN311_POST_PER_MINUTE_PER_ADDRESS": "3",
        "OPEN311_POST_PER_MINUTE_PER_KEY": "5",
        "TRUSTED_PROXIES": "127.0.0.1",
    }
    with served_gridsvc(url, **settings) as base:
        # One app key posting for five phones: each phone is within its limit, the key reaches its own.
        for i in range(5):
            assert post(base, keys[2], client=f"198.51.100.{i}").status_code == 400
        assert_too_many(post(base, keys[2], client="198.51.100.77"), "per key")
        # The proxy's X-Forwarded-For is believed: one phone posting with another key meets its address limit.
        for _ in range(3):
            assert post(base, keys[3], client="198.51.100.200").status_code == 400
        assert_too_many(post(base, keys[3], fmt="xml", client="198.51.100.200"), "per address")
        assert post(base, keys[3], client="198.51.100.201").status_code == 400
