"""The redraw benchmark is not a test; this checks it runs at small scale and that every contender's plan
covers every unit, on the demo city and on a made-up community with two pieces.

The run uses the scratch database ``gridsvc_bench_locate`` on the test cluster, shared with the locate
benchmarks' tests: the first of them to run loads the small demo city, the others reuse it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import shapely

from bench.redraw import (
    OURS,
    MaxPSettings,
    Solved,
    TimeLimitError,
    community,
    coverage_problems,
    solve_maxp,
    solve_ours,
    solve_region_kmeans,
    time_limit,
)
from gis.redraw import RedrawParams

ROOT = Path(__file__).resolve().parent.parent
PARAMS = RedrawParams(households_min=300, households_max=500)


def run_bench(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench.redraw args`` on the test cluster, from the checkout (bench/ is not installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env["GRIDSVC_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "bench.redraw", *args, "--no-record", "--allow-external"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_redraw_bench_runs_and_every_plan_covers_every_unit(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "redraw.json"
    result = run_bench(
        database_url,
        *("--scale", "small", "--sample", "2", "--rounds", "1", "--time-limit", "30"),
        # Max-p at spopt's defaults takes minutes per community: one construction, one annealing.
        *("--maxp-construction", "1", "--maxp-annealing", "1", "--json", str(out)),
    )
    assert result.returncode == 0, result.stderr
    assert "ratio to ours" in result.stdout and "Polsby" in result.stdout
    assert "RegionKMeansHeuristic" in result.stdout and "MaxPHeuristic" in result.stdout
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert len(figures["communities"]) == 2
    assert all(row["group_count"] >= 2 for row in figures["communities"])
    assert len(figures["contenders"]) == 3 and sum("spopt" in n for n in figures["contenders"]) == 2
    assert figures["contenders"][OURS]["solved"] == 2


def _two_pieces() -> tuple[np.ndarray, np.ndarray]:
    """A 6 × 4 block of 100 m squares and, 1 km away, two more squares: one community in two pieces."""
    block = [shapely.box(x * 100, y * 100, (x + 1) * 100, (y + 1) * 100) for y in range(4) for x in range(6)]
    island = [shapely.box(2000 + x * 100, 0, 2100 + x * 100, 100) for x in range(2)]
    households = np.concatenate([np.random.default_rng(7).integers(20, 140, len(block)), [40, 60]]).astype(
        np.float64
    )
    return np.asarray(block + island, dtype=object), households


# spopt's max-p calls GeoDataFrame.drop(inplace=True), which pandas 3.1 deprecates: not ours to fix.
@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_every_contender_covers_every_unit_and_no_grid_spans_two_pieces() -> None:
    geoms, households = _two_pieces()
    c = community("370102001001", [f"{i:03d}" for i in range(len(geoms))], geoms, households, PARAMS)
    assert [len(p.units) for p in c.pieces] == [24, 2]
    assert c.k == sum(p.k for p in c.pieces) and c.pieces[1].k == 1
    piece_of = np.zeros(len(geoms), dtype=np.int64)
    piece_of[c.pieces[1].units] = 1
    answers = {
        "ours": solve_ours(c, PARAMS, 0),
        "region k-means": solve_region_kmeans(c, PARAMS, 0),
        "max-p": solve_maxp(c, PARAMS, 0, MaxPSettings(construction=5, annealing=1)),
    }
    for name, answer in answers.items():
        assert coverage_problems(name, [c], [answer]) == [], name
        for label in range(answer.k):
            assert len(set(piece_of[answer.labels == label])) == 1, name
    assert answers["region k-means"].k == c.k
    # The island holds 100 households, under max-p's threshold: it is one grid without calling spopt.
    assert answers["max-p"].trivial_pieces == 1
    # Seeds are fixed: the same labels again.
    again = solve_maxp(c, PARAMS, 0, MaxPSettings(construction=5, annealing=1))
    assert np.array_equal(again.labels, answers["max-p"].labels)


def test_labels_that_miss_a_unit_are_named() -> None:
    geoms, households = _two_pieces()
    c = community("370102001001", [f"{i:03d}" for i in range(len(geoms))], geoms, households, PARAMS)
    labels = np.zeros(len(geoms), dtype=np.int64)
    labels[3] = -1
    assert coverage_problems("x", [c], [Solved(labels, 1)]) == [
        "x, community 370102001001: 1 units without a grid"
    ]
    assert coverage_problems("x", [c], [None]) == []  # a failure is counted apart, not a coverage problem
    assert coverage_problems("x", [c], [Solved(labels[:5], 1)]) == [
        "x, community 370102001001: 5 labels for 26 units"
    ]


def test_time_limit_stops_a_contender() -> None:
    started = time.perf_counter()
    with pytest.raises(TimeLimitError), time_limit(0.05):
        time.sleep(5)
    assert time.perf_counter() - started < 1
