"""Benchmarks are not tests; this only checks each one runs and that ours and the anchor agree."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_load_bench_runs_and_agrees(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env["GRIDSVC_DATABASE_URL"] = database_url
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.demo_load",
            "--scale",
            "small",
            "--rounds",
            "1",
            "--sample",
            "2000",
            "--no-record",
            "--allow-external",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "GeoDataFrame.to_postgis" in result.stdout and "ratio to ours" in result.stdout


def test_import_bench_runs_and_agrees(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env["GRIDSVC_DATABASE_URL"] = database_url
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.import_components",
            "--rows",
            "5000",
            "--rounds",
            "1",
            "--no-record",
            "--allow-external",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "ogr2ogr" in result.stdout and "to_postgis" in result.stdout and "Peak RSS" in result.stdout
