"""The real thing: `gridsvc serve` under uvicorn, asked over loopback HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import NEUTRAL_CWD, free_port


@pytest.fixture
def served(database_url: str) -> Iterator[str]:
    """`gridsvc serve` in its own process against the test database; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATABASE_URL=database_url, GRIDSVC_PORT=str(port))
    process = subprocess.Popen(
        [sys.executable, "-m", "gridsvc.cli", "serve"],
        env=env,
        cwd=NEUTRAL_CWD,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read() if process.stdout else ""
                    raise AssertionError(f"gridsvc serve did not come up:\n{output}") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


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
