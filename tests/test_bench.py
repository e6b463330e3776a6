"""Benchmarks are not tests; this only checks each one runs and that ours and the anchor agree."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.harness import local_postmaster, server_cpu_seconds


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
            "bench.import",
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
    # The test server runs on this machine, so the server side's CPU is counted too.
    assert "| client CPU (s) | server CPU (s) |" in result.stdout
    assert "server not on this machine" not in result.stdout


def test_server_cpu_counts_a_backend_that_worked_and_exited(database_url: str) -> None:
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as conn:
        postmaster = local_postmaster(int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one()))
    assert postmaster is not None
    before = server_cpu_seconds(postmaster)
    with engine.connect() as conn:  # a new backend, gone (and reaped, or not yet) when counted again
        conn.execute(text("SELECT count(*) FROM generate_series(1, 3000000) g WHERE g % 7 = 3"))
    assert server_cpu_seconds(postmaster) - before >= 0.1
    assert local_postmaster(os.getpid()) is None  # not a PostgreSQL backend
