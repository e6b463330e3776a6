"""The real thing: `gridsvc serve` under uvicorn, asked over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import served_gridsvc


@pytest.fixture
def served(database_url: str) -> Iterator[str]:
    """`gridsvc serve` in its own process against the test database; yields its base URL."""
    with served_gridsvc(database_url) as base:
        yield base


def test_health_over_http(served: str) -> None:
    response = httpx.get(f"{served}/health")
    assert response.status_code == 200
    assert response.json()["database"]["postgis_version"].startswith("3.")
    docs = httpx.get(f"{served}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_mutation_without_key_over_http(served: str) -> None:
    response = httpx.post(f"{served}/v1/departments", json={"code": "x1", "name_zh": "某"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
