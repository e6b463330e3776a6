"""Import a point-component GeoPackage: gridsvc beside ogr2ogr and to_postgis, same file, same run.

    python -m bench.import_components --rows 1000000      # the figure to quote
    python -m bench.import_components --rows 20000 --rounds 1 --no-record   # smoke test

gridsvc (``gridsvc import components`` in its own process, so its peak memory is its own) reads the
file in chunks, maps and validates every row (code format, county prefix, class, status, geometry),
versions by code and assigns each component its unit and responsibility grid. The anchors load the
same file raw: ``ogr2ogr -f PostgreSQL`` with PG_USE_COPY, and ``geopandas.read_file`` +
``to_postgis``. Before timing, all three must hold the same rows (count and coordinate checksum).
Runs in a scratch database (``gridsvc_bench_import``) with the small demo city (its 历下区 and grids).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from bench.harness import Contender, DisagreementError, Result, compare, record, table
from gridsvc.db import migrate
from gridsvc.services import demo
from gridsvc.services.database import database_url
from gridsvc.settings import get_settings

SCRATCH_DB = "gridsvc_bench_import"
CLASSES = ("0118", "0305", "0101", "0102", "0103")  # lamps, bins and manholes: 6-digit sequences per class


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


def main(argv: list[str]) -> int:
    """Run the benchmark; exit 1 when the three disagree."""
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
    gridsvc = [sys.executable, "-m", "gridsvc.cli", "import", "components", str(path)]
    peak_ours_mib = 0.0

    def reset_ours() -> None:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM component WHERE survey_batch_id <> 1"))
            conn.execute(text("DELETE FROM survey_batch WHERE id <> 1"))

    def ours() -> int:
        nonlocal peak_ours_mib
        subprocess.run(gridsvc, env=env, check=True, capture_output=True)
        if not peak_ours_mib:
            # The warm-up import is the first child this process waits for, so the children's peak is its own.
            peak_ours_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return args.rows

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
        return args.rows

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

    try:
        results = compare(
            [
                Contender("gridsvc import (validate + version + assign grids)", ours, setup=reset_ours),
                Contender("ogr2ogr -f PostgreSQL (PG_USE_COPY, raw)", ogr2ogr),
                Contender("read_file + to_postgis (raw)", to_postgis),
            ],
            agree,
            rounds=args.rounds,
        )
    except DisagreementError as exc:
        print(f"DISAGREEMENT: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rates = [Result(r.name, [args.rows / s for s in r.seconds]) for r in results]
    body = (
        f"{args.rows:,} point components from one GeoPackage, "
        f"{args.rounds} alternating rounds after a warm-up.\n\n"
        f"{table(results)}\n\nRows per second (median): "
        + ", ".join(f"{r.name} {np.median(r.seconds):,.0f}" for r in rates)
        + f"\n\nPeak RSS of the gridsvc import process: {peak_ours_mib:,.0f} MiB."
    )
    record(
        "Import components: gridsvc vs ogr2ogr vs to_postgis",
        body,
        module="bench.import_components",
        data_size=f"{args.rows:,} points (GeoPackage)",
        enabled=not args.no_record,
    )
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
