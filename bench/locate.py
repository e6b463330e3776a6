"""Locate many points: gridsvc's in-memory locator beside geopandas.sjoin and a PostGIS join, same points.

    python -m bench.locate --scale city       # 1,000,000 points, the figure to quote
    python -m bench.locate --scale small      # 20,000 points, seconds

The points (fixed seed) are where reports happen: half at randomly drawn components, moved by a
Gaussian of 25 m (a phone's fix near a lamp or a bin: dense in town, many near grid boundaries), half
uniform in the bounding box of the active plan's unit grids (countryside, gaps, outside the city).
CGCS2000 lon/lat. Three ways answer "which unit grid holds each point":

- ours: ``gridsvc.services.locate.locate_many(..., crs="cgcs2000")`` with the plan's locator already
  built (its one-off build, reading the grids from PostGIS included, is timed and reported apart);
- ``geopandas.sjoin(points, unit_grids, predicate="within", how="left")``, the grids read from PostGIS
  once beforehand (that read is reported apart too: the same courtesy as our build); points on a
  shared edge keep the smallest code, our tie rule;
- a PostGIS join: COPY the points into a temporary table, then a ``LEFT JOIN LATERAL`` on
  ``ST_Intersects`` with the smallest code; timed with the COPY, which is what its user pays.

A fourth row times ours' geometric core alone (``GridLocator.locate``, indices only), to show how much
of ours is building the answer table.

Before timing they must agree: a point ours calls "inside" or "edge" gets the same code from both
anchors (sjoin's "within" excludes the boundary, so a point exactly on one is unmatched there), and a
point ours gives to the "nearest" grid, its district ("territory") or nobody ("outside") is unmatched
by both. Ours computes more than containment (owners, boundary candidates, station distances): that
is the answer a user gets.

Runs in a scratch database (``gridsvc_bench_locate``) holding the demo city at the scale; it is
loaded (in a child process, so this process's peak memory is the locating's own) when missing and
reused when it already holds that scale and seed; ``--reload`` loads it afresh.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bench.harness import Contender, DisagreementError, Result, compare, record, table
from gridsvc.db import migrate
from gridsvc.db.engine import make_engine, make_session_factory
from gridsvc.services import demo
from gridsvc.services.database import database_url
from gridsvc.services.locate import locate_many, plan_locator
from gridsvc.settings import Settings, get_settings

SCRATCH_DB = "gridsvc_bench_locate"
DEFAULT_POINTS = {"small": 20_000, "city": 1_000_000}
POINT_SEED = 20240611
CONTAINED = ("inside", "edge")

# The anchor's join: one index probe per point, the smallest code wins on a shared edge (our tie rule).
POSTGIS_JOIN = """
    SELECT g.code
    FROM bench_points p
    LEFT JOIN LATERAL (
        SELECT u.code FROM unit_grid u
        WHERE u.plan_id = %(plan)s AND ST_Intersects(u.geom, p.geom)
        ORDER BY u.code LIMIT 1
    ) g ON true
    ORDER BY p.i
"""


# --- the demo city, shared with bench.locate_http ---------------------------------------------------


@dataclass(frozen=True)
class DemoDatabase:
    """The scratch database holding the demo city, and what getting it ready cost."""

    url: str
    plan_id: int
    unit_grids: int
    bbox: tuple[float, float, float, float]
    loaded_seconds: float | None  # None when an earlier run's load was reused


def _load_demo_child(url: str, scale: str, seed: int) -> None:
    """Load the demo city (runs in a spawned child process)."""
    engine = create_engine(url)
    try:
        demo.load_demo(
            sessionmaker(bind=engine, expire_on_commit=False),
            settings=get_settings(),
            scale=scale,
            seed=seed,
            replace=False,
        )
    finally:
        engine.dispose()


def _loaded_demo(url: str) -> dict[str, Any] | None:
    """The scale and seed of the demo city the database holds, or None."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT to_regclass('survey_batch')")).scalar_one() is None:
                return None
            params = conn.execute(
                text("SELECT parameters FROM survey_batch WHERE layer = 'demo' ORDER BY id DESC LIMIT 1")
            ).scalar_one_or_none()
    finally:
        engine.dispose()
    if isinstance(params, str):
        params = json.loads(params)
    return params if isinstance(params, dict) else None


def demo_database(base_url: str, *, scale: str, seed: int, reload: bool) -> DemoDatabase:
    """The scratch database with the demo city at ``scale``: reused when it already holds it, else loaded."""
    admin = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    url = make_url(base_url).set(database=SCRATCH_DB).render_as_string(hide_password=False)
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": SCRATCH_DB}
            ).scalar_one_or_none()
        held = _loaded_demo(url) if exists and not reload else None
        loaded_seconds: float | None = None
        if held != {"scale": scale, "seed": seed}:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)"))
                conn.execute(text(f"CREATE DATABASE {SCRATCH_DB}"))
            migrate.upgrade(url)
            print(f"loading the {scale} demo city (seed {seed}) into {SCRATCH_DB} ...", flush=True)
            started = time.perf_counter()
            child = multiprocessing.get_context("spawn").Process(
                target=_load_demo_child, args=(url, scale, seed)
            )
            child.start()
            child.join()
            if child.exitcode != 0:
                raise RuntimeError(f"loading the demo city failed (exit code {child.exitcode})")
            loaded_seconds = time.perf_counter() - started
        else:
            migrate.upgrade(url)
    finally:
        admin.dispose()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            plan_id = conn.execute(text("SELECT id FROM grid_plan WHERE status = 'active'")).scalar_one()
            row = conn.execute(
                text(
                    "SELECT count(*), ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), "
                    "ST_XMax(ST_Extent(geom)), ST_YMax(ST_Extent(geom)) FROM unit_grid WHERE plan_id = :plan"
                ),
                {"plan": plan_id},
            ).one()
    finally:
        engine.dispose()
    return DemoDatabase(
        url=url,
        plan_id=int(plan_id),
        unit_grids=int(row[0]),
        bbox=(float(row[1]), float(row[2]), float(row[3]), float(row[4])),
        loaded_seconds=loaded_seconds,
    )


def random_points(
    bbox: tuple[float, float, float, float], n: int, seed: int = POINT_SEED
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``n`` points uniformly in ``bbox`` (minx, miny, maxx, maxy), the same for the same seed."""
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = bbox
    return rng.uniform(minx, maxx, n), rng.uniform(miny, maxy, n)


# 25 m in degrees at Jinan's latitude (36.7 N): a degree of latitude is 111 km, of longitude 89 km.
_JITTER_DEG = (25 / 89_000, 25 / 111_000)


def report_points(
    url: str, bbox: tuple[float, float, float, float], n: int, seed: int = POINT_SEED
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Half the points at random point components moved by ~25 m, half uniform in ``bbox``."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT ST_X(geom), ST_Y(geom) FROM component "
                    "WHERE valid_to IS NULL AND GeometryType(geom) = 'POINT' ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    at = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    near = n // 2
    if len(at) == 0:
        near = 0
    pick = rng.integers(0, max(len(at), 1), near)
    lon_near = at[pick, 0] + rng.normal(0, _JITTER_DEG[0], near) if near else np.zeros(0)
    lat_near = at[pick, 1] + rng.normal(0, _JITTER_DEG[1], near) if near else np.zeros(0)
    lon_far, lat_far = random_points(bbox, n - near, seed + 1)
    return np.concatenate([lon_near, lon_far]), np.concatenate([lat_near, lat_far])


def demo_description(db: DemoDatabase, scale: str, seed: int) -> str:
    """One line on the data: scale, grids, and whether it was loaded now or reused."""
    how = (
        f"loaded in {db.loaded_seconds:.1f} s"
        if db.loaded_seconds is not None
        else "reused from a run before"
    )
    return (
        f"demo city scale {scale}, seed {seed}: {db.unit_grids:,} unit grids in the active plan "
        f"(database {SCRATCH_DB}, {how})"
    )


def self_rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process alone, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
    return current, peak


# --- the contenders ----------------------------------------------------------------------------------


def ours_contender(
    sessions: sessionmaker[Session],
    settings: Settings,
    lon: npt.NDArray[np.float64],
    lat: npt.NDArray[np.float64],
) -> Callable[[], pd.DataFrame]:
    """gridsvc's batch locate: one row per point, the full answer."""

    def run() -> pd.DataFrame:
        return locate_many(sessions, settings, lon, lat, crs="cgcs2000")

    return run


def sjoin_contender(
    grids: gpd.GeoDataFrame, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
) -> Callable[[], npt.NDArray[Any]]:
    """geopandas.sjoin within, smallest code per point; the points frame is made afresh every round."""

    def run() -> npt.NDArray[Any]:
        # A new frame each time: sjoin "within" indexes the points (left) side and caches that index on
        # the frame, and a user's new batch of points pays for it every time.
        points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs=grids.crs)
        joined = gpd.sjoin(points, grids, predicate="within", how="left")
        smallest = joined["code"].groupby(level=0).min()
        codes: npt.NDArray[Any] = smallest.reindex(range(len(lon))).to_numpy(dtype=object)
        codes[pd.isna(codes)] = None
        return codes

    return run


def copy_binary(lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]) -> bytes:
    """PostgreSQL's binary COPY of (i int4, lon float8, lat float8): exact doubles, no text formatting."""
    n = len(lon)
    rows = np.empty(
        n,
        dtype=[
            ("fields", ">i2"),
            ("i_len", ">i4"),
            ("i", ">i4"),
            ("lon_len", ">i4"),
            ("lon", ">f8"),
            ("lat_len", ">i4"),
            ("lat", ">f8"),
        ],
    )
    rows["fields"] = 3
    rows["i_len"] = 4
    rows["i"] = np.arange(n, dtype=np.int32)
    rows["lon_len"] = 8
    rows["lon"] = lon
    rows["lat_len"] = 8
    rows["lat"] = lat
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return header + rows.tobytes() + (-1).to_bytes(2, "big", signed=True)


def postgis_contender(
    engine: Engine, plan_id: int, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
) -> Callable[[], npt.NDArray[Any]]:
    """COPY the points into a temporary table and join them to the plan's unit grids in PostGIS."""

    def run() -> npt.NDArray[Any]:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(
                "CREATE TEMP TABLE bench_points (i int4 PRIMARY KEY, lon float8, lat float8, "
                "geom geometry(Point, 4490) "
                "GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4490)) STORED) ON COMMIT DROP"
            )
            cur.copy_expert(
                "COPY bench_points (i, lon, lat) FROM STDIN WITH (FORMAT binary)",
                io.BytesIO(copy_binary(lon, lat)),
            )
            cur.execute(POSTGIS_JOIN, {"plan": plan_id})
            codes = np.array([row[0] for row in cur.fetchall()], dtype=object)
            cur.close()
            raw.commit()
        finally:
            raw.close()
        return codes

    return run


# --- agreement ---------------------------------------------------------------------------------------


def disagreements(
    ours: pd.DataFrame,
    sjoin_codes: npt.NDArray[Any],
    postgis_codes: npt.NDArray[Any],
    lon: npt.NDArray[np.float64],
    lat: npt.NDArray[np.float64],
    grids: gpd.GeoDataFrame,
) -> list[str]:
    """Every point where an anchor contradicts ours, described (an empty list means they agree)."""
    how = ours["how"].to_numpy(dtype=str)
    code = ours["unit_grid_code"].to_numpy(dtype=object, copy=True)
    code[pd.isna(code)] = None
    contained = np.isin(how, CONTAINED)
    expected = np.where(contained, code, None)
    problems: list[str] = []
    for name, got in (("geopandas.sjoin", sjoin_codes), ("PostGIS join", postgis_codes)):
        if len(got) != len(how):
            problems.append(f"{name} answered {len(got):,} points of {len(how):,}")
            continue
        wrong = got != expected
        if name == "geopandas.sjoin":
            # "within" excludes the boundary, ours (like ST_Intersects) includes it: a point exactly on
            # its grid's boundary is in no grid for sjoin. Random points practically never are.
            unmatched = np.flatnonzero(wrong & contained & pd.isna(got))
            if len(unmatched):
                by_code = grids.set_index("code").geometry
                boundary = shapely.boundary(by_code.loc[code[unmatched]].to_numpy())
                on = shapely.intersects(boundary, shapely.points(lon[unmatched], lat[unmatched]))
                wrong[unmatched[on]] = False
        for i in np.flatnonzero(wrong)[:5]:
            problems.append(
                f"point {i} ({lon[i]:.9f}, {lat[i]:.9f}): ours {how[i]} {code[i]}, {name} {got[i]}"
            )
        if wrong.sum() > 5:
            problems.append(f"... {int(wrong.sum()):,} points in all where {name} disagrees")
    return problems


def main(argv: list[str]) -> int:
    """Run the benchmark; exit 1 when ours and an anchor disagree."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=["small", "city"], default="small")
    parser.add_argument("--seed", type=int, default=2023, help="seed of the demo city")
    parser.add_argument(
        "--points", type=int, default=None, help="points to locate (default 20,000 small, 1,000,000 city)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed alternating rounds after the warm-up")
    parser.add_argument(
        "--reload", action="store_true", help=f"load the demo city into {SCRATCH_DB} even if it is there"
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not append to docs/BENCHMARKS.md"
    )
    parser.add_argument(
        "--allow-external",
        action="store_true",
        help=f"use the server GRIDSVC_DATABASE_URL names (creates or re-creates {SCRATCH_DB} there)",
    )
    args = parser.parse_args(argv)
    n_points = args.points or DEFAULT_POINTS[args.scale]

    settings = get_settings()
    if settings.database_url and not args.allow_external:
        parser.error(
            f"GRIDSVC_DATABASE_URL is set: this benchmark creates (and may drop and re-create) the database "
            f"{SCRATCH_DB} on that server; pass --allow-external if that is what you want"
        )
    db = demo_database(database_url(settings), scale=args.scale, seed=args.seed, reload=args.reload)
    engine = make_engine(db.url)
    sessions = make_session_factory(engine)
    lon, lat = report_points(db.url, db.bbox, n_points)
    rss_data, _ = self_rss_mib()

    started = time.perf_counter()
    plan = plan_locator(sessions, settings)
    build_s = time.perf_counter() - started
    locator = plan.locator
    if locator is None:
        print(f"the active plan in {SCRATCH_DB} has no unit grids: nothing to benchmark", file=sys.stderr)
        return 1
    rss_built, _ = self_rss_mib()

    started = time.perf_counter()
    with engine.connect() as conn:
        grids = gpd.read_postgis(
            text("SELECT code, geom FROM unit_grid WHERE plan_id = :plan ORDER BY code"),
            conn,
            geom_col="geom",
            params={"plan": db.plan_id},
        )
    read_s = time.perf_counter() - started

    peaks: dict[str, float] = {}

    def measured(name: str, run: Callable[[], Any]) -> Callable[[], Any]:
        # ru_maxrss only grows: the peak right after a contender's first run bounds what it needed.
        def wrapped() -> Any:
            answer = run()
            peaks.setdefault(name, self_rss_mib()[1])
            return answer

        return wrapped

    def core() -> Any:
        return locator.locate(lon, lat)

    ours_name, sjoin_name, postgis_name = (
        "gridsvc locate_many (locator built)",
        "geopandas.sjoin within (grids read)",
        "PostGIS COPY + ST_Intersects join",
    )
    core_name = "of ours: GridLocator.locate alone (no answer table)"
    contenders = [
        Contender(ours_name, measured("ours", ours_contender(sessions, settings, lon, lat))),
        Contender(sjoin_name, measured("sjoin", sjoin_contender(grids, lon, lat))),
        Contender(postgis_name, measured("postgis", postgis_contender(engine, db.plan_id, lon, lat))),
        Contender(core_name, core),
    ]
    hows: dict[str, int] = {}

    def agree(answers: dict[str, Any]) -> None:
        ours_frame = answers[ours_name]
        hows.update(ours_frame["how"].value_counts().to_dict())
        problems = disagreements(ours_frame, answers[sjoin_name], answers[postgis_name], lon, lat, grids)
        # The core's indices must be the table's codes: the row shows where ours spends its time.
        codes = plan.grids["unit_grid_code"].to_numpy(dtype=object)
        index = np.asarray(answers[core_name].grid_index)
        core_codes = np.where(index >= 0, codes[np.maximum(index, 0)], None)
        table_codes = ours_frame["unit_grid_code"].to_numpy(dtype=object, copy=True)
        table_codes[pd.isna(table_codes)] = None
        if (core_codes != table_codes).any():
            problems.append("GridLocator.locate and locate_many give different grids")
        if problems:
            raise DisagreementError("\n  ".join(["ours and an anchor disagree:", *problems]))

    try:
        results = compare(contenders, agree, rounds=args.rounds)
    except DisagreementError as exc:
        print(f"DISAGREEMENT: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()

    rates = [Result(r.name, [n_points / s for s in r.seconds]) for r in results[:3]]
    ratio_sjoin = results[1].median / results[0].median
    goal = "met" if ratio_sjoin >= 3 else "NOT met"
    counts = ", ".join(
        f"{how} {hows.get(how, 0):,}" for how in ("inside", "edge", "nearest", "territory", "outside")
    )
    round_s = sum(r.median for r in results)
    rounds_note = f"{args.rounds} alternating rounds after a warm-up (one round of all four: {round_s:.0f} s)"
    if args.rounds < 5:
        rounds_note += f"; fewer than the usual 5, as asked (--rounds {args.rounds})"
    body = (
        f"{n_points:,} random points (seed {POINT_SEED}): half at random components moved by ~25 m, half "
        f"uniform in the bounding box of the plan's {db.unit_grids:,} unit grids; ours answered {counts}. "
        f"{rounds_note}. All three agreed on every "
        "point before timing. Ours returns the full answer table (owners, station distance, boundary "
        "candidates); the last row times its geometric core alone, for where the time goes.\n\n"
        f"{table(results)}\n\n"
        "Points per second (median): "
        + ", ".join(f"{r.name} {np.median(r.seconds):,.0f}" for r in rates)
        + f"\n\nGoal (issue): at least 3× faster than geopandas.sjoin — **{goal}** ({ratio_sjoin:.1f}×).\n\n"
        f"One-off costs, not in the timed rounds: building our locator (`plan_locator`: reading the plan's "
        f"grids, owners and districts from PostGIS and indexing them) **{build_s:.2f} s**; reading the "
        f"unit grids for sjoin (`read_postgis`) **{read_s:.2f} s**.\n\n"
        f"Memory of this process (MiB): {rss_data:,.0f} before locating; {rss_built:,.0f} with the locator "
        f"built; peak {peaks.get('ours', 0):,.0f} after ours, {peaks.get('sjoin', 0):,.0f} after sjoin, "
        f"{peaks.get('postgis', 0):,.0f} after the PostGIS join (peaks only grow, in that order)."
        + (
            " The demo city was loaded by a child process in this run, whose peak is in the line above."
            if db.loaded_seconds is not None
            else ""
        )
    )
    record(
        f"Locate {n_points:,} points ({args.scale}): gridsvc vs geopandas.sjoin vs PostGIS join",
        body,
        module="bench.locate",
        data_size=f"{n_points:,} points; {demo_description(db, args.scale, args.seed)}",
        enabled=not args.no_record,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
