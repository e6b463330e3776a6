"""A service whose database cannot be reached answers 503 + Retry-After everywhere, in each client's format.

The database here is a loopback port nobody listens on (connection refused), so every way a request can
need the database fails for real: the key lookup, a read, an Open311 report, the health check.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from gridsvc.api.app import create_app
from gridsvc.api.problems import DATABASE_RETRY_AFTER_SECONDS
from gridsvc.settings import Settings
from tests.conftest import free_port

RETRY_AFTER = str(DATABASE_RETRY_AFTER_SECONDS)
SOME_KEY = "gs_0123abcd_a-key-that-has-to-be-looked-up"


@pytest.fixture(scope="module")
def unreachable() -> Iterator[TestClient]:
    """The app against a PostgreSQL that is not there."""
    url = f"postgresql+psycopg2://gridsvc:secret@127.0.0.1:{free_port()}/gridsvc"
    settings = Settings(database_url=url, escalation_interval_seconds=0, _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings, url), raise_server_exceptions=False) as client:
        yield client


def assert_problem_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == RETRY_AFTER
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["title"]) == (503, "Database unavailable")
    assert body["type"].endswith("/unavailable")
    assert "psycopg2" not in response.text and "127.0.0.1" not in response.text  # logged, never echoed


def test_health_says_the_database_is_down(unreachable: TestClient) -> None:
    response = unreachable.get("/health")
    assert response.status_code == 503
    assert response.headers["retry-after"] == RETRY_AFTER
    assert response.json()["status"] == "unavailable"
    assert response.json()["database"] == {"reachable": False}


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/v1/departments", {}),  # an open read
        ("GET", "/v1/locate?lon=117.0213&lat=36.6615", {"X-API-Key": SOME_KEY}),  # the key needs the database
        ("POST", "/v1/cases", {"X-API-Key": SOME_KEY}),
    ],
)
def test_the_api_answers_problem_json_503(
    unreachable: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    body = (
        {"kind": "event", "class_code": "0101", "lon": 117.0213, "lat": 36.6615} if method == "POST" else None
    )
    assert_problem_503(unreachable.request(method, path, headers=headers, json=body))


def test_open311_answers_its_own_error_list_with_503(unreachable: TestClient) -> None:
    report = unreachable.post(
        "/open311/v2/requests.json",
        data={"api_key": SOME_KEY, "service_code": "E0101", "lat": "36.6615", "long": "117.0213"},
    )
    assert report.status_code == 503
    assert report.headers["retry-after"] == RETRY_AFTER
    assert report.headers["content-type"].startswith("application/json")
    assert [error["code"] for error in report.json()] == [503]

    services = unreachable.get("/open311/v2/services.xml")
    assert services.status_code == 503
    assert services.headers["retry-after"] == RETRY_AFTER
    root = ET.fromstring(services.content)
    assert root.tag == "errors" and root.findtext("error/code") == "503"

    one = unreachable.get("/open311/v2/requests/JN202611230000001.json")
    assert one.status_code == 503 and one.headers["retry-after"] == RETRY_AFTER
