# noqa: N999 -- issue 3 names this bench `bench/import.py`; `python -m bench.import` runs it, nothing imports it.
"""Import a point-component GeoPackage: gridsvc beside ogr2ogr and to_postgis, same file, same run.

    python -m bench.import --rows 1000000      # the figure to quote
    python -m bench.import --rows 20000 --rounds 1 --no-record   # smoke test

gridsvc (``gridsvc import components`` in its own process, so its peak memory is its own) reads the
file in chunks, maps and validates every row (code format, county prefix, class, status, geometry),
versions by code and assigns each component its unit and responsibility grid. The anchors load the
same file raw: ``ogr2ogr -f PostgreSQL`` with PG_USE_COPY, and ``geopandas.read_file`` +
``to_postgis``. Before timing, all of them must hold the same rows (count and coordinate checksum).
Runs in a scratch database (``gridsvc_bench_import``) with the small demo city (its 历下区 and grids).

The warm-up import also versions the demo's components whose codes the file repeats; the timed rounds
then import into a table where none of the file's codes is current (a first census of these classes), so
every row is new, and the import rebuilds the table's secondary indexes and foreign keys around its insert
(the table holds fewer than three times the file's rows). Each round starts from a vacuumed table, as a
first census finds it, not one holding the million rows the last round deleted. A last row times, of
ours, the COPY of the very rows the import wrote back into ``component`` on its own, rebuilt the same
way: the least any import of these rows into this table can take. One re-import of the same file
(every row unchanged, nothing written) is timed once.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import geopandas as gpd
import numpy as np
import psycopg2.extensions
import shapely
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from bench.harness import (
    Contender,
    DisagreementError,
    Result,
    compare,
    local_postmaster,
    process_cpu_seconds,
    record,
    server_cpu_seconds,
    table,
)
from gridsvc.db import migrate
from gridsvc.repositories import imports as imports_repo
from gridsvc.services import demo
from gridsvc.services.database import database_url
from gridsvc.settings import get_settings

SCRATCH_DB = "gridsvc_bench_import"
CLASSES = ("0118", "0305", "0101", "0102", "0103")  # lamps, bins and manholes: 6-digit sequences per class
# Every column of a component row but its id, for the COPY-alone row.
COMPONENT_COLUMNS = (
    "code, class_code, name, status, in_use, owner, owner_department_code, maintainer_department_code, "
    "attributes, survey_batch_id, unit_grid_id, responsibility_grid_id, valid_from, valid_to, geom"
)
OURS = "gridsvc import (validate + version + assign grids)"
# Runs the CLI and reports its own peak RSS (VmHWM) as it exits. The kernel's figure for a waited-for child
# would not do: a child spawned by this process starts its high-water mark at this process's size.
MEASURED_CLI = """
import atexit, runpy, sys

def _peak():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    print(f"peak-rss-kib {kib}", file=sys.stderr)

atexit.register(_peak)
runpy.run_module("gridsvc.cli", run_name="__main__", alter_sys=True)
"""
OGR2OGR = "ogr2ogr -f PostgreSQL (PG_USE_COPY, raw)"
TO_POSTGIS = "read_file + to_postgis (raw)"
COPY_ALONE = (
    "of ours: COPY of the imported rows alone into component, indexes and foreign keys rebuilt around it"
)


def scratch(base_url: str) -> str:
    """A fresh migrated database with the small demo city; returns its URL."""
    admin = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {SCRATCH_DB}"))
    admin.dispose()
    url = make_url(base_url).set(database=SCRATCH_DB).render_as_string(hide_password=False)
    migrate.upgrade(url)
    engine = create_engine(url)
    demo.load_demo(
        sessionmaker(bind=engine, expire_on_commit=False),
        settings=get_settings(),
        scale="small",
        seed=2023,
        replace=False,
    )
    engine.dispose()
    return url


def make_file(engine: Engine, rows: int, folder: Path) -> Path:
    """A census GeoPackage of ``rows`` points inside 历下区 with Chinese field names."""
    with engine.connect() as conn:
        district = gpd.read_postgis("SELECT geom FROM district", conn, geom_col="geom").geometry.iloc[0]
    rng = np.random.default_rng(2023)
    minx, miny, maxx, maxy = district.bounds
    points: list[np.ndarray] = []
    shapely.prepare(district)
    while sum(len(p) for p in points) < rows:
        candidates = shapely.points(rng.uniform(minx, maxx, rows), rng.uniform(miny, maxy, rows))
        points.append(candidates[shapely.contains(district, candidates)])
    geoms = np.concatenate(points)[:rows]
    per_class = -(-rows // len(CLASSES))
    classes = np.repeat(np.array(CLASSES), per_class)[:rows]
    sequence = np.tile(np.arange(1, per_class + 1), len(CLASSES))[:rows]
    codes = np.char.add(np.char.add("370102", classes), np.char.zfill(sequence.astype(str), 6))
    frame = gpd.GeoDataFrame(
        {"标识码": codes, "状态": "完好", "主管部门": "环卫", "备注": "基准测试"},
        geometry=geoms,
        crs="EPSG:4490",
    )
    path = folder / "census.gpkg"
    frame.to_file(path, layer="components", driver="GPKG")
    return path


def cpu_table(cpu: dict[str, list[tuple[float, float | None]]], rounds: int, results: list[Result]) -> str:
    """Median CPU seconds per timed round, client and server side, as a Markdown table."""
    lines = [
        "CPU seconds per round (median of the timed rounds; the server's include whatever else it did "
        "meanwhile, such as autovacuum):\n",
        "| contender | client CPU (s) | server CPU (s) | both (s) | cores busy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        name = result.name
        timed = cpu[name][1 : 1 + rounds]  # the first call is the warm-up
        client = float(np.median([c for c, _ in timed]))
        servers = [s for _, s in timed if s is not None]
        if len(servers) != len(timed):
            lines.append(f"| {name} | {client:.1f} | (server not on this machine) | | |")
            continue
        server = float(np.median(servers))
        busy = (client + server) / result.median
        lines.append(f"| {name} | {client:.1f} | {server:.1f} | {client + server:.1f} | {busy:.2f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run the benchmark; exit 1 when the contenders disagree."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not append to docs/BENCHMARKS.md"
    )
    parser.add_argument(
        "--allow-external", action="store_true", help="use the server GRIDSVC_DATABASE_URL names"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    if settings.database_url and not args.allow_external:
        parser.error(
            f"GRIDSVC_DATABASE_URL is set: this re-creates {SCRATCH_DB} there; pass --allow-external"
        )
    if shutil.which("ogr2ogr") is None:
        parser.error("ogr2ogr is not installed (Debian: apt-get install gdal-bin)")

    url = scratch(database_url(settings))
    engine = create_engine(url)
    folder = Path(tempfile.mkdtemp(prefix="gridsvc-bench-"))
    path = make_file(engine, args.rows, folder)
    pg = make_url(url)
    ogr_dsn = (
        f"PG:host={pg.host} port={pg.port} dbname={pg.database} user={pg.username} password={pg.password}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env["GRIDSVC_DATABASE_URL"] = url
    gridsvc = [sys.executable, "-c", MEASURED_CLI, "import", "components", str(path)]
    peak_ours_mib = 0.0

    with engine.begin() as conn:
        # The rows the COPY-alone row writes need a survey batch of their own, kept across rounds.
        copy_batch = conn.execute(
            text(
                "INSERT INTO survey_batch (layer, source_file, checksum_sha256, imported_by, source_format,"
                " source_crs) VALUES ('components', 'COPY alone', repeat('0', 64), 'bench', 'GPKG',"
                " 'EPSG:4490') RETURNING id"
            )
        ).scalar_one()
    copy_columns = COMPONENT_COLUMNS.replace("survey_batch_id", f"{int(copy_batch)} AS survey_batch_id")

    def vacuum_component() -> None:
        """Clear the rows the last round deleted, as a first census finds the table: otherwise the timed
        round pays for them (its index rebuild and foreign-key checks read them, and autovacuum, started
        by the delete, competes for the two cores and the table's lock)."""
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM component"))

    def reset_ours() -> None:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM component WHERE survey_batch_id <> 1"))
            conn.execute(text("DELETE FROM survey_batch WHERE id NOT IN (1, :keep)"), {"keep": copy_batch})
        vacuum_component()

    def ours() -> int:
        nonlocal peak_ours_mib
        done = subprocess.run(gridsvc, env=env, check=True, capture_output=True, text=True)
        peak = re.search(r"^peak-rss-kib (\d+)$", done.stderr, re.MULTILINE)
        if peak is None:
            raise DisagreementError(f"the import did not report its memory: {done.stderr[-500:]}")
        peak_ours_mib = max(peak_ours_mib, int(peak.group(1)) / 1024)
        return int(args.rows)

    imported = io.BytesIO()  # the rows ours wrote, as COPY text, taken once

    def on_raw(work: Callable[[psycopg2.extensions.cursor], object]) -> None:
        """Run COPY work on psycopg2 itself and commit."""
        proxied = engine.raw_connection()
        try:
            raw = cast(psycopg2.extensions.connection, proxied.dbapi_connection)
            with raw.cursor() as cursor:
                work(cursor)
            raw.commit()
        finally:
            proxied.close()

    def take_ours_rows() -> None:
        def take(cursor: psycopg2.extensions.cursor) -> None:
            if not imported.getbuffer().nbytes:
                cursor.copy_expert(
                    f"COPY (SELECT {copy_columns} FROM component "
                    "WHERE survey_batch_id <> 1 AND valid_to IS NULL) TO STDOUT",
                    imported,
                )
            cursor.execute("DELETE FROM component WHERE survey_batch_id <> 1 AND valid_to IS NULL")

        on_raw(take)
        vacuum_component()

    def copy_alone() -> int:
        """The least any import of these rows into component can take: the rows, already valid and with
        their grids, COPYed straight in, with the table's secondary indexes and foreign keys dropped and
        rebuilt around them as a large import does (its checks still run on every row)."""
        imported.seek(0)
        with sessionmaker(bind=engine).begin() as session:
            if not imports_repo.lock_component_exclusively(session, timeout_ms=60_000):
                raise DisagreementError("component stayed in use: the COPY alone could not take it")
            saved = imports_repo.drop_component_secondary(session)
            raw = cast(psycopg2.extensions.connection, session.connection().connection.dbapi_connection)
            with raw.cursor() as cursor:
                cursor.copy_expert(f"COPY component ({COMPONENT_COLUMNS}) FROM STDIN", imported, size=1 << 20)
            imports_repo.rebuild_component_secondary(session, saved)
        return int(args.rows)

    def ogr2ogr() -> int:
        subprocess.run(
            [
                "ogr2ogr",
                "-f",
                "PostgreSQL",
                ogr_dsn,
                str(path),
                "components",
                "-nln",
                "bench_ogr",
                "-overwrite",
                "-lco",
                "GEOMETRY_NAME=geom",
                "--config",
                "PG_USE_COPY",
                "YES",
            ],
            check=True,
            capture_output=True,
        )
        return int(args.rows)

    def to_postgis() -> int:
        frame = gpd.read_file(path, layer="components")
        frame.rename_geometry("geom").to_postgis(
            "bench_gpd", engine, if_exists="replace", index=False, chunksize=100_000
        )
        return len(frame)

    def agree(answers: dict[str, object]) -> None:
        checks = {
            "gridsvc": "SELECT count(*), round(sum(ST_X(geom) + ST_Y(geom))::numeric, 4) FROM component "
            "WHERE survey_batch_id <> 1 AND valid_to IS NULL",
            "ogr2ogr": "SELECT count(*), round(sum(ST_X(geom) + ST_Y(geom))::numeric, 4) FROM bench_ogr",
            "to_postgis": "SELECT count(*), round(sum(ST_X(geom) + ST_Y(geom))::numeric, 4) FROM bench_gpd",
        }
        with engine.connect() as conn:
            got = {name: tuple(conn.execute(text(sql)).one()) for name, sql in checks.items()}
            assigned = conn.execute(
                text("SELECT count(unit_grid_id) FROM component WHERE survey_batch_id <> 1")
            ).scalar_one()
        if len(set(got.values())) != 1 or got["gridsvc"][0] != args.rows:
            raise DisagreementError(f"row counts or coordinates differ: {got}")
        if assigned != args.rows:
            raise DisagreementError(f"gridsvc assigned grids to {assigned} of {args.rows} components")

    with engine.connect() as conn:
        postmaster = local_postmaster(int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one()))
    # CPU seconds of each call, client side (this process and the commands it runs) and server side.
    cpu: dict[str, list[tuple[float, float | None]]] = {}

    def metered(name: str, run: Callable[[], int]) -> Callable[[], int]:
        def measured() -> int:
            client = process_cpu_seconds()
            server = server_cpu_seconds(postmaster) if postmaster else None
            answer = run()
            server_used = (
                server_cpu_seconds(postmaster) - server if postmaster and server is not None else None
            )
            cpu.setdefault(name, []).append((process_cpu_seconds() - client, server_used))
            return answer

        return measured

    try:
        results = compare(
            [
                Contender(OURS, metered(OURS, ours), setup=reset_ours),
                Contender(OGR2OGR, metered(OGR2OGR, ogr2ogr)),
                Contender(TO_POSTGIS, metered(TO_POSTGIS, to_postgis)),
                Contender(COPY_ALONE, metered(COPY_ALONE, copy_alone), setup=take_ours_rows),
            ],
            agree,
            rounds=args.rounds,
        )
        # The table now holds exactly what ours imported: the same file again changes nothing.
        started = time.perf_counter()
        ours()
        reimport_s = time.perf_counter() - started
        with engine.connect() as conn:
            last = conn.execute(text("SELECT id, counts FROM survey_batch ORDER BY id DESC LIMIT 1")).one()
            counts = last.counts
            written = conn.execute(
                text("SELECT count(*) FROM component WHERE survey_batch_id = :b"), {"b": last.id}
            ).scalar_one()
        if counts["unchanged"] != args.rows or written:
            raise DisagreementError(f"re-importing the same file changed rows: {counts}, {written} written")
    except DisagreementError as exc:
        print(f"DISAGREEMENT: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    medians = {r.name: float(np.median(r.seconds)) for r in results}
    rates = {name: args.rows / seconds for name, seconds in medians.items()}
    ratio = rates[OURS] / rates[OGR2OGR]
    goal_rate = "met" if ratio >= 1 else "not met"
    goal_memory = "met" if peak_ours_mib < 2048 else "not met"
    body = (
        f"{args.rows:,} point components from one GeoPackage, "
        f"{args.rounds} alternating rounds after a warm-up. In the timed rounds every row is new (a first "
        "census of these classes); the warm-up also versioned the demo's components with the same codes. "
        "The last row is part of ours on its own: the rows our import wrote, COPYed back into `component` "
        "by themselves with the table's 6 secondary indexes and 6 foreign keys rebuilt around them (as the "
        "import does) and its checks run on every row: the least any import of these rows into this table "
        "can take.\n\n"
        f"{table(results)}\n\nRows per second (median): "
        + ", ".join(f"{name} {rate:,.0f}" for name, rate in rates.items())
        + f"\n\n{cpu_table(cpu, args.rounds, results)}"
        + "\n\nPeak RSS of the gridsvc import process (the largest of its runs): "
        f"{peak_ours_mib:,.0f} MiB.\n\n"
        f"Re-importing the same file once (all {args.rows:,} rows unchanged, none rewritten): "
        f"{reimport_s:.1f} s ({args.rows / reimport_s:,.0f} rows/s).\n\n"
        f"Goal (issue 3, item 9): at least ogr2ogr's rows per second — **{goal_rate}** ({ratio:.2f}×); "
        f"peak memory under 2 GiB — **{goal_memory}** ({peak_ours_mib:,.0f} MiB). The COPY of our rows alone "
        f"takes {medians[COPY_ALONE] / medians[OURS]:.0%} of our import's time, and "
        f"{medians[COPY_ALONE] / medians[OGR2OGR]:.2f}× ogr2ogr's whole load."
    )
    record(
        "Import components: gridsvc vs ogr2ogr vs to_postgis",
        body,
        module="bench.import",
        data_size=f"{args.rows:,} points (GeoPackage)",
        enabled=not args.no_record,
    )
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
