"""The locate benchmarks are not tests; this only checks each runs at small scale and that all agree.

Both use the scratch database ``gridsvc_bench_locate`` on the test cluster: the first to run loads the
small demo city into it, the other reuses it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from bench.locate import disagreements

ROOT = Path(__file__).resolve().parent.parent


def run_bench(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <bench> args`` against the test cluster, from the checkout (bench/ is not installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env["GRIDSVC_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", *args, "--no-record", "--allow-external"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_locate_bench_runs_and_agrees(database_url: str) -> None:
    result = run_bench(database_url, "bench.locate", "--scale", "small", "--points", "3000", "--rounds", "1")
    assert result.returncode == 0, result.stderr
    assert "geopandas.sjoin" in result.stdout and "PostGIS" in result.stdout
    assert "ratio to ours" in result.stdout and "plan_locator" in result.stdout


def test_locate_http_bench_runs_and_agrees(database_url: str) -> None:
    result = run_bench(
        database_url,
        "bench.locate_http",
        "--scale",
        "small",
        "--rate",
        "100",
        "--seconds",
        "1",
        "--closed-seconds",
        "0.5",
        "--rounds",
        "1",
        "--connections",
        "2",
        "--closed-connections",
        "2",
        "--points",
        "200",
    )
    assert result.returncode == 0, result.stderr
    assert "GET /v1/locate" in result.stdout and "psycopg2" in result.stdout
    assert "p99" in result.stdout and "Closed loop" in result.stdout


def test_locate_bench_names_every_disagreement() -> None:
    grids = gpd.GeoDataFrame(
        {"code": ["A", "B"]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(2, 0, 3, 1)], crs="EPSG:4490"
    )
    ours = pd.DataFrame(
        {"how": ["inside", "inside", "nearest", "outside"], "unit_grid_code": ["A", "A", "B", None]}
    )
    lon = np.array([0.5, 1.0, 1.5, 9.0])  # the second point is on A's boundary: not "within" for sjoin
    lat = np.array([0.5, 0.5, 0.5, 9.0])
    same = np.array(["A", "A", None, None], dtype=object)
    sjoin = np.array(["A", None, None, None], dtype=object)
    assert disagreements(ours, sjoin, same, lon, lat, grids) == []

    wrong_grid = np.array(["B", "A", None, None], dtype=object)
    matched_a_gap = np.array(["A", "A", "B", None], dtype=object)
    problems = disagreements(ours, wrong_grid, matched_a_gap, lon, lat, grids)
    assert len(problems) == 2
    assert "ours inside A, geopandas.sjoin B" in problems[0]
    assert "ours nearest B, PostGIS join B" in problems[1]
