"""The tile benchmark is not a test; this checks it runs at small scale and agrees, without tipg.

It serves the shared small demo city (``demo_url``) as it is; the comparison with tipg needs tipg's own
virtual environment and is run by hand (see bench/tiles.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.tiles import LIMIT, Pass, TileAddress, disagreements

ROOT = Path(__file__).resolve().parent.parent


def test_tile_bench_runs_and_agrees_with_postgis(demo_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env["GRIDSVC_DATABASE_URL"] = demo_url
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.tiles",
            "--database-url",
            demo_url,
            "--without-tipg",
            "--tiles-per-zoom",
            "3",
            "--rounds",
            "1",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "PostGIS count" in result.stdout and "p95 (ms)" in result.stdout
    assert "from its tile store" in result.stdout and "Peak RSS" in result.stdout
    assert "`gridsvc tiles seed` filled before the run" in result.stdout


def _pass(counts: list[int], codes: list[set[str]], statuses: list[int] | None = None) -> Pass:
    return Pass(
        latency_ms=[1.0] * len(counts),
        counts=counts,
        codes=[frozenset(c) for c in codes],
        statuses=statuses or [200] * len(counts),
    )


def test_tile_bench_names_every_disagreement() -> None:
    tiles = [
        TileAddress("unit_grids", 15, 1, 2),
        TileAddress("components", 16, 3, 4),
        TileAddress("x", 12, 0, 0),
    ]
    ours = _pass([2, LIMIT, 0], [{"a", "b"}, {"p"}, set()], [200, 200, 204])
    same = _pass([2, LIMIT, 0], [{"a", "b"}, {"q"}, set()])  # at the limit each keeps other features
    assert disagreements(tiles, ours, same, None) == []
    assert disagreements(tiles, ours, None, [2, LIMIT + 5, 0]) == []

    other = _pass([2, 9, 0], [{"a", "c"}, {"p"}, set()])
    problems = disagreements(tiles, ours, other, None)
    assert len(problems) == 2
    assert "unit_grids 15/1/2: different features (only gridsvc ['b'], only tipg ['c'])" in problems[0]
    assert "components 16/3/4: gridsvc 10000 features, tipg 9" in problems[1]
    assert disagreements(tiles, ours, None, [3, LIMIT, 0]) == [
        "unit_grids 15/1/2: gridsvc 2 features, PostGIS counts 3"
    ]
