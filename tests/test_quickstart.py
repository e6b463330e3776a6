"""The README's run path on a fresh data folder: db up, demo, serve; then /health answers 200."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import httpx

from tests.conftest import NEUTRAL_CWD, free_port, make_tmp_data_dir


def test_quickstart_brings_everything_up_and_serves() -> None:
    data_dir = make_tmp_data_dir("gridsvc-quickstart-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATA_DIR=str(data_dir), GRIDSVC_PG_PORT=str(free_port()), COLUMNS="200")
    process = subprocess.Popen(
        [sys.executable, "-m", "gridsvc.cli", "quickstart", "--port", str(port)],
        env=env,
        cwd=NEUTRAL_CWD,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    output = process.stdout.read() if process.stdout else ""
                    raise AssertionError(f"quickstart did not serve:\n{output}") from None
                time.sleep(0.5)
        assert response.status_code == 200
        body = response.json()
        assert body["database"]["postgis_version"].startswith("3.")
        assert body["active_plan"]["unit_grids"] > 0
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        subprocess.run(
            [sys.executable, "-m", "gridsvc.cli", "db", "down"],
            env=env,
            cwd=NEUTRAL_CWD,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(data_dir, ignore_errors=True)
    # What the user is told: where the API, health and docs are.
    assert f"http://127.0.0.1:{port}/docs" in output
    assert "demo city loaded" in output
