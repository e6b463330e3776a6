"""The mixed-load benchmark is not a test; this checks it runs at small scale, end to end, for seconds.

It uses the test cluster's ``gridsvc_bench_locate`` (the small demo city, loaded by whichever locate or
load benchmark runs first) and works on a copy of it that it drops afterwards. No timing is asserted:
only that every kind of request was sent and answered, the shedding step ran, and the rows written
match the answers (the benchmark exits 1 otherwise).
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.load import COPY_DB, LABELS, parse_mix
from tests.test_bench_locate import run_bench


def test_load_bench_runs_every_kind_and_sheds(database_url: str) -> None:
    result = run_bench(
        database_url,
        "bench.load",
        "--scale",
        "small",
        "--rate",
        "40",
        "--seconds",
        "1",
        "--warmup-seconds",
        "0.5",
        "--settle-seconds",
        "0.2",
        "--connections",
        "4",
        "--shed-factor",
        "2",
        "--shed-seconds",
        "1",
        "--shed-connections",
        "8",
        "--recovery-seconds",
        "0.5",
        "--points",
        "200",
        "--tiles-per-zoom",
        "3",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for label in LABELS.values():
        assert label in result.stdout
    assert "Shedding:" in result.stdout and "Written as answered" in result.stdout
    # The copy is gone: the bench database does not grow from run to run.
    admin = create_engine(make_url(database_url).set(database="postgres"))
    with admin.connect() as conn:
        left = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": COPY_DB}).all()
    admin.dispose()
    assert left == []


def test_mix_names_known_kinds_only() -> None:
    assert parse_mix("locate=1,tile=3") == {
        "locate": 1.0,
        "tile": 3.0,
        "open311_post": 0.0,
        "open311_get": 0.0,
        "transition": 0.0,
    }
    with pytest.raises(ValueError, match="unknown kind 'nap'"):
        parse_mix("locate=1,nap=2")
    with pytest.raises(ValueError, match="positive"):
        parse_mix("locate=0")
