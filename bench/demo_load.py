"""Generate and load the demo city; then the components layer by our COPY path beside GeoDataFrame.to_postgis.

    python -m bench.demo_load --scale small          # seconds
    python -m bench.demo_load --scale city           # the figure to quote (minutes)

Runs in a scratch database (``gridsvc_bench``) on the configured server (the embedded PostGIS must be
up: ``gridsvc db up``), so the demo data you work with is not touched. Generation and the full load
have no anchor (nobody else generates this city); they are timed once and recorded. The components
layer is then written by ours (COPY of hex EWKB) and by the anchor (``GeoDataFrame.to_postgis``,
appending) into two identical copies of the constrained, indexed ``component`` table, in alternating
rounds, after checking both tables hold the same rows.
"""

from __future__ import annotations

import argparse
import sys
import time

import geopandas as gpd
import numpy as np
import pandas as pd
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from bench.harness import Contender, DisagreementError, Result, compare, record, table
from gridsvc.db import migrate
from gridsvc.repositories import bulk
from gridsvc.services import demo
from gridsvc.services.database import database_url
from gridsvc.settings import get_settings

SCRATCH_DB = "gridsvc_bench"


def scratch_engine(base_url: str) -> Engine:
    """A fresh, migrated scratch database on the same server."""
    admin = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {SCRATCH_DB}"))
    admin.dispose()
    url = make_url(base_url).set(database=SCRATCH_DB).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return create_engine(url)


def main(argv: list[str]) -> int:
    """Run the benchmark; exit 1 when ours and the anchor disagree."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=["small", "city"], default="small")
    parser.add_argument("--seed", type=int, default=2023)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--sample",
        type=int,
        default=200_000,
        help="components written per round in the COPY vs to_postgis comparison (to_postgis is slow)",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not append to docs/BENCHMARKS.md"
    )
    parser.add_argument(
        "--allow-external",
        action="store_true",
        help=f"use the server GRIDSVC_DATABASE_URL names (drops and re-creates {SCRATCH_DB} there)",
    )
    args = parser.parse_args(argv)

    settings = get_settings()
    if settings.database_url and not args.allow_external:
        parser.error(
            f"GRIDSVC_DATABASE_URL is set: this benchmark drops and re-creates the database {SCRATCH_DB} "
            "on that server; pass --allow-external if that is what you want"
        )
    engine = scratch_engine(database_url(settings))
    sessions = sessionmaker(bind=engine, expire_on_commit=False)

    started = time.perf_counter()
    city = demo.generate(settings, scale=args.scale, seed=args.seed)
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    counts = demo.load_city(sessions, city, scale=args.scale, seed=args.seed, replace=False)
    load_s = time.perf_counter() - started
    sizes = ", ".join(f"{name} {count:,}" for name, count in counts.items() if count > 1)

    components = city.components.iloc[: args.sample]
    frame = pd.DataFrame(
        {
            "code": components["code"].to_numpy(),
            "class_code": components["class_code"].to_numpy(),
            "status": components["status"].to_numpy(),
            "geom": bulk.ewkb_hex(components.geometry.to_numpy()),
        }
    )
    anchor_frame = gpd.GeoDataFrame(
        {"code": frame["code"], "class_code": frame["class_code"], "status": frame["status"]},
        geometry=components.geometry.to_numpy(),
        crs="EPSG:4490",
    ).rename_geometry("geom")
    with engine.begin() as conn:
        # Both write into identical copies of the real table: LIKE ... INCLUDING ALL copies the CHECK
        # constraints (ST_IsValid, code formats) and the indexes, not the foreign keys.
        for name in ("bench_component", "bench_component_anchor"):
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
            conn.execute(text(f"CREATE TABLE {name} (LIKE component INCLUDING ALL)"))

    def ours() -> int:
        with sessions.begin() as session:
            session.execute(text("TRUNCATE bench_component"))
            return bulk.copy_frame(session, "bench_component", frame)

    def anchor() -> int:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE bench_component_anchor"))
        anchor_frame.to_postgis(
            "bench_component_anchor", engine, if_exists="append", index=False, chunksize=50_000
        )
        return len(anchor_frame)

    def agree(answers: dict[str, object]) -> None:
        checksum = (
            "SELECT count(*), round(sum(ST_X(geom) + ST_Y(geom))::numeric, 6), count(DISTINCT code) FROM {}"
        )
        with engine.connect() as conn:
            ours_row = tuple(conn.execute(text(checksum.format("bench_component"))).one())
            anchor_row = tuple(conn.execute(text(checksum.format("bench_component_anchor"))).one())
        if ours_row != anchor_row or ours_row[0] != len(frame):
            raise DisagreementError(f"tables differ: ours {ours_row}, to_postgis {anchor_row}")

    try:
        results = compare(
            [Contender("gridsvc COPY (hex EWKB)", ours), Contender("GeoDataFrame.to_postgis", anchor)],
            agree,
            rounds=args.rounds,
        )
    except DisagreementError as exc:
        print(f"DISAGREEMENT: {exc}", file=sys.stderr)
        return 1
    rows_per_s = [Result(r.name, [len(frame) / s for s in r.seconds]) for r in results]
    body = (
        f"Generation of the synthetic city: **{generate_s:.1f} s**; full load into PostGIS in one "
        f"transaction: **{load_s:.1f} s** ({sizes}).\n\n"
        f"Writing {len(frame):,} point components, {args.rounds} alternating rounds after one warm-up:\n\n"
        f"{table(results)}\n\nThroughput (rows/s; higher is better): "
        + ", ".join(f"{r.name} {np.median(r.seconds):,.0f}" for r in rows_per_s)
    )
    record(
        f"Demo city ({args.scale}): generate, load, and COPY vs to_postgis",
        body,
        module="bench.demo_load",
        data_size=f"scale {args.scale}, seed {args.seed}",
        enabled=not args.no_record,
    )
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
