"""Vector tiles: gridsvc beside tipg serving the same tables, the same tile list, alternating rounds.

    python -m bench.tiles --scale city --record                # the figure to quote
    python -m bench.tiles --scale small --tiles-per-zoom 4 --rounds 1 --without-tipg   # the smoke test

Both servers run as users run them, each in its own process on a free loopback port: ours is
``gridsvc serve`` (uvicorn); the anchor is tipg (uvicorn, ``tipg.main:app``) from its own virtual
environment (``--tipg-python``, default ``.gridsvc/tipg-venv/bin/python``; make it with
``python3 -m venv .gridsvc/tipg-venv && .gridsvc/tipg-venv/bin/pip install tipg "uvicorn[standard]"``;
it never goes into gridsvc's own environment). This process is the client: one keep-alive connection
per server, tiles asked one after the other, latency per request.

The tile list is where people look: random current components (fixed seed) give the tile holding each
at every zoom from 12 to 16; ``--tiles-per-zoom`` distinct tiles per zoom. The layers tipg can serve
from the same tables with the same rows are compared (a layer only at zooms from its minimum zoom):

| gridsvc layer | tipg collection and filter |
| --- | --- |
| responsibility_grids (12-16) | public.responsibility_grid, plan_id = the active plan |
| unit_grids (13-16) | public.unit_grid, plan_id = the active plan |
| components (15-16) | public.component, CQL2 ``valid_to IS NULL AND in_use = true`` |
| stations (12-16) | public.station |
| communities (12-16) | public.community |

Same answer first: every tile of the list is fetched from both and decoded; the feature counts must be
equal, and so must the sets of codes where a tile holds fewer than the 10,000-feature limit (both cut
there; tipg keeps the lowest ids, ours an even pseudo-random thinning). Without tipg (not installed, or
``--without-tipg``) ours is checked against a PostGIS count of the rows meeting each tile. Any
disagreement exits 1 before anything is timed.

Then ``--rounds`` timed rounds over the list in which every tile is asked of each contender in turn
(the first of them rotating from round to round), so that a busy moment of a shared machine falls on
all alike: ours rendering every tile (``Cache-Control: no-cache`` makes gridsvc render afresh: PostGIS
time, as tipg pays it), tipg, and ours answering from its tile store (the tiles ``gridsvc tiles seed``
rendered for the whole city before the run; the service runs with its in-process tile cache off,
``GRIDSVC_TILE_CACHE_MB=0``, so every such answer is a look-up in PostgreSQL, as for a process that just
started). p50/p95 per zoom, the median of the rounds' p95s and its ratio to tipg's; peak RSS of both
servers and of this process. The seed itself (``--clear-store`` empties the store first, so it renders
the whole city) is timed and reported.

Runs in the scratch database of ``bench.locate`` (the demo city at the scale, loaded when missing);
``--database-url`` names an existing gridsvc database instead (it is only read, but for an API key that
is made for the run and revoked after it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.harness import ROOT, DisagreementError, record
from bench.locate import demo_database, demo_description
from bench.locate_http import Service, pct, vm_hwm_mib
from gridsvc.db.engine import make_engine, make_session_factory
from gridsvc.services import access
from gridsvc.services.database import database_url
from gridsvc.settings import get_settings

HOST = "127.0.0.1"
ZOOMS = (12, 13, 14, 15, 16)
LIMIT = 10_000  # features per tile, ours and tipg's default alike
POINT_SEED = 20240612
DEFAULT_TIPG_PYTHON = ROOT / ".gridsvc" / "tipg-venv" / "bin" / "python"
OURS_COLD = "gridsvc, rendered (no-cache)"
OURS_STORED = "gridsvc, from its tile store"
TIPG = "tipg"


@dataclass(frozen=True)
class LayerPair:
    """A gridsvc layer and the tipg collection serving the same rows."""

    layer: str
    minzoom: int
    table: str
    tipg_query: str  # query string after the tile path ({plan} filled in)
    count_sql: str  # PostGIS: rows meeting tile :z/:x/:y (the check without tipg)


def _meets(column: str) -> str:
    envelope = "ST_Transform(ST_TileEnvelope(:z, :x, :y), 4490)"
    return f"{column} && {envelope} AND ST_Intersects({column}, {envelope})"


PAIRS = (
    LayerPair(
        "responsibility_grids",
        10,
        "responsibility_grid",
        "plan_id={plan}&properties=code,community_code,worker_name,households,workload",
        f"SELECT count(*) FROM responsibility_grid r WHERE r.plan_id = :plan AND {_meets('r.geom')}",
    ),
    LayerPair(
        "unit_grids",
        13,
        "unit_grid",
        "plan_id={plan}&properties=code,community_code,responsibility_grid_id",
        f"SELECT count(*) FROM unit_grid u WHERE u.plan_id = :plan AND {_meets('u.geom')}",
    ),
    LayerPair(
        "components",
        15,
        "component",
        "properties=code,class_code,name,status&filter=" + quote("valid_to IS NULL AND in_use = true"),
        f"SELECT count(*) FROM component c WHERE c.valid_to IS NULL AND c.in_use AND {_meets('c.geom')}",
    ),
    LayerPair(
        "stations",
        11,
        "station",
        "properties=id,code,name,phone,community_code",
        f"SELECT count(*) FROM station s WHERE {_meets('s.geom')}",
    ),
    LayerPair(
        "communities",
        8,
        "community",
        "properties=code,name",
        f"SELECT count(*) FROM community m WHERE {_meets('m.geom')}",
    ),
)


@dataclass(frozen=True)
class TileAddress:
    """One tile of one layer."""

    layer: str
    z: int
    x: int
    y: int


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding a lon/lat point."""
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def tile_list(url: str, per_zoom: int, seed: int = POINT_SEED) -> list[TileAddress]:
    """``per_zoom`` distinct tiles per zoom where random components are, for every compared layer."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            low, high = conn.execute(text("SELECT min(id), max(id) FROM component")).one()
            rng = random.Random(seed)
            ids = [rng.randint(int(low), int(high)) for _ in range(50 * per_zoom)] if low is not None else []
            rows = conn.execute(
                text(
                    "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM component"
                    " WHERE valid_to IS NULL AND id = ANY(:ids) ORDER BY id"
                ),
                {"ids": ids},
            ).all()
    finally:
        engine.dispose()
    points = list(rows)
    rng.shuffle(points)
    tiles: list[TileAddress] = []
    for z in ZOOMS:
        chosen = list(dict.fromkeys(tile_of(lon, lat, z) for lon, lat in points))[:per_zoom]
        for pair in PAIRS:
            if z >= pair.minzoom:
                tiles += [TileAddress(pair.layer, z, x, y) for x, y in chosen]
    return tiles


# --- the servers -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """What ``gridsvc tiles seed`` did before the run."""

    seconds: float
    rendered: int
    stored: int
    stored_mib: float

    def describe(self) -> str:
        """One phrase for the record."""
        return (
            f"{self.rendered:,} tiles rendered in {self.seconds:,.0f} s (the store then held {self.stored:,} "
            f"tiles, {self.stored_mib:,.0f} MiB)"
        )


def seed_store(url: str, *, clear: bool) -> Seed:
    """Run ``gridsvc tiles seed`` (after ``tiles clear`` when ``clear``) on the database, as an operator
    does after an activation, and say what it did."""
    env = {**os.environ, "GRIDSVC_DATABASE_URL": url}
    command = [sys.executable, "-m", "gridsvc.cli", "tiles"]
    engine = create_engine(url)
    try:
        if clear:
            subprocess.run([*command, "clear", "--yes"], env=env, check=True, capture_output=True)
        with engine.connect() as conn:
            began = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        started = time.perf_counter()
        subprocess.run([*command, "seed"], env=env, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            count, size, rendered = conn.execute(
                text(
                    "SELECT count(*), coalesce(sum(octet_length(content)), 0), "
                    "count(*) FILTER (WHERE rendered_at >= :began) FROM tile_store"
                ),
                {"began": began},
            ).one()
    finally:
        engine.dispose()
    return Seed(seconds=seconds, rendered=int(rendered), stored=int(count), stored_mib=int(size) / 2**20)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Tipg:
    """tipg under uvicorn in its own virtual environment and process, against the same database."""

    def __init__(self, python: Path, url: str, folder: Path) -> None:
        self.port = free_port()
        self.log = folder / "tipg.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TIPG_", "GRIDSVC_"))}
        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        env.update(
            DATABASE_URL=plain,
            TIPG_DB_TABLES=json.dumps([f"public.{pair.table}" for pair in PAIRS]),
            # Extents are catalog metadata; computing them scans the tables at startup. Tiles do not use them.
            TIPG_DB_SPATIAL_EXTENT="false",
            TIPG_DB_DATETIME_EXTENT="false",
            TIPG_MAX_FEATURES_PER_TILE=str(LIMIT),
        )
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(python), "-m", "uvicorn", "tipg.main:app", "--host", HOST, "--port", str(self.port)],
                env=env,
                cwd=folder,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log_tail(self) -> str:
        """The end of tipg's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def wait_ready(self, timeout_s: float = 120) -> float:
        """Wait for GET /collections to answer 200; returns the seconds it took."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"tipg exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
                conn.request("GET", "/collections")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"tipg did not answer in {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> float:
        """Stop tipg; returns its peak resident memory in MiB."""
        peak = vm_hwm_mib(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return peak


class TileClient:
    """One keep-alive connection asking tiles of gridsvc or of tipg."""

    def __init__(self, port: int, *, kind: str, api_key: str = "", plan: int = 0, cache: bool = True) -> None:
        self.port = port
        self.kind = kind
        self.plan = plan
        self.headers = {"Connection": "keep-alive"}
        if kind == "gridsvc":
            self.headers["X-API-Key"] = api_key
            if not cache:
                self.headers["Cache-Control"] = "no-cache"
        self.conn = http.client.HTTPConnection(HOST, port, timeout=120)

    def path(self, tile: TileAddress) -> str:
        """The URL path of a tile."""
        if self.kind == "gridsvc":
            return f"/v1/tiles/{tile.layer}/{tile.z}/{tile.x}/{tile.y}.mvt"
        pair = next(p for p in PAIRS if p.layer == tile.layer)
        query = pair.tipg_query.format(plan=self.plan)
        return f"/collections/public.{pair.table}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}?{query}"

    def get(self, tile: TileAddress) -> tuple[int, bytes]:
        """(status, body) of one tile."""
        try:
            self.conn.request("GET", self.path(tile), headers=self.headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
            raise

    def reconnect(self) -> None:
        """A fresh connection (uvicorn closes one idle for 5 s: the other contenders' passes take longer)."""
        self.conn.close()
        self.conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
        self.conn.connect()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


@dataclass
class Pass:
    """One pass over the tile list: latency (ms), feature count and codes per tile."""

    latency_ms: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    codes: list[frozenset[str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


def run_pass(client: TileClient, tiles: Sequence[TileAddress], *, decode: bool) -> Pass:
    """Ask every tile once, in order; decode the answers when ``decode`` (the agreement pass)."""
    result = Pass()
    client.reconnect()
    for tile in tiles:
        started = time.perf_counter()
        status, body = client.get(tile)
        result.latency_ms.append((time.perf_counter() - started) * 1000)
        result.statuses.append(status)
        if decode:
            features = [f for layer in decode_mvt(body).values() for f in layer] if status == 200 else []
            result.counts.append(len(features))
            result.codes.append(frozenset(str(f.properties.get("code")) for f in features))
    return result


def interleaved_rounds(
    contenders: dict[str, TileClient], tiles: Sequence[TileAddress], *, rounds: int
) -> dict[str, list[Pass]]:
    """``rounds`` timed passes, alternating contenders tile by tile (the first one rotates each round)."""
    names = list(contenders)
    passes: dict[str, list[Pass]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        current = {name: Pass() for name in names}
        for name in names:
            contenders[name].reconnect()
        for tile in tiles:
            for name in order:
                started = time.perf_counter()
                status, _ = contenders[name].get(tile)
                current[name].latency_ms.append((time.perf_counter() - started) * 1000)
                current[name].statuses.append(status)
        for name in names:
            passes[name].append(current[name])
    return passes


# --- agreement ------------------------------------------------------------------------------------------


def disagreements(
    tiles: Sequence[TileAddress], ours: Pass, anchor: Pass | None, postgis: Sequence[int] | None
) -> list[str]:
    """Every tile where ours and the anchor (tipg, else the PostGIS count) differ, described."""
    problems: list[str] = []
    for i, tile in enumerate(tiles):
        where = f"{tile.layer} {tile.z}/{tile.x}/{tile.y}"
        if ours.statuses[i] not in (200, 204):
            problems.append(f"{where}: gridsvc answered {ours.statuses[i]}")
            continue
        if anchor is not None:
            if anchor.statuses[i] != 200:
                problems.append(f"{where}: tipg answered {anchor.statuses[i]}")
            elif ours.counts[i] != anchor.counts[i]:
                problems.append(f"{where}: gridsvc {ours.counts[i]} features, tipg {anchor.counts[i]}")
            elif ours.counts[i] < LIMIT and ours.codes[i] != anchor.codes[i]:
                only_ours = sorted(ours.codes[i] - anchor.codes[i])[:3]
                only_tipg = sorted(anchor.codes[i] - ours.codes[i])[:3]
                problems.append(
                    f"{where}: different features (only gridsvc {only_ours}, only tipg {only_tipg})"
                )
        elif postgis is not None and ours.counts[i] != min(postgis[i], LIMIT):
            problems.append(f"{where}: gridsvc {ours.counts[i]} features, PostGIS counts {postgis[i]}")
    return problems


def postgis_counts(url: str, tiles: Sequence[TileAddress], plan: int) -> list[int]:
    """Rows meeting each tile, counted by PostGIS (the check when tipg is not there)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                int(
                    conn.execute(
                        text(next(p for p in PAIRS if p.layer == t.layer).count_sql),
                        {"z": t.z, "x": t.x, "y": t.y, "plan": plan},
                    ).scalar_one()
                )
                for t in tiles
            ]
    finally:
        engine.dispose()


# --- the report -------------------------------------------------------------------------------------------


def _round_p95(passes: Sequence[Pass], mask: npt.NDArray[np.bool_]) -> float:
    """The median over rounds of each round's p95: one noisy round does not decide."""
    return float(np.median([pct(np.asarray(p.latency_ms)[mask], 95) for p in passes]))


def zoom_table(tiles: Sequence[TileAddress], runs: dict[str, list[Pass]], anchor: str | None) -> str:
    """p50/p95 per zoom and contender (all rounds pooled), the median of the rounds' p95s, and its ratio
    to the anchor's."""
    zooms = np.array([t.z for t in tiles])
    lines = [
        "| zoom | contender | requests | p50 (ms) | p95 (ms) | max (ms) | p95, median of rounds (ms) "
        "| vs tipg |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for z in ZOOMS:
        mask = zooms == z
        if not mask.any():
            continue
        rounds = {name: _round_p95(passes, mask) for name, passes in runs.items()}
        for name, passes in runs.items():
            latency = _pooled(passes, mask)
            ratio = f"{rounds[name] / rounds[anchor]:.2f}×" if anchor else "–"
            lines.append(
                f"| {z} | {name} | {len(latency):,} | {pct(latency, 50):.2f} | {pct(latency, 95):.2f} | "
                f"{latency.max():.2f} | {rounds[name]:.2f} | {ratio} |"
            )
    return "\n".join(lines)


def layer_table(tiles: Sequence[TileAddress], runs: dict[str, list[Pass]]) -> str:
    """p95 per layer and contender (all zooms)."""
    layers = [t.layer for t in tiles]
    names = list(runs)
    lines = ["| layer | tiles | " + " | ".join(f"{n} p95 (ms)" for n in names) + " |"]
    lines.append("| --- | ---: | " + " | ".join("---:" for _ in names) + " |")
    for pair in PAIRS:
        mask = np.array([layer == pair.layer for layer in layers])
        if mask.any():
            cells = " | ".join(f"{pct(_pooled(runs[n], mask), 95):.2f}" for n in names)
            lines.append(f"| {pair.layer} | {int(mask.sum())} | {cells} |")
    return "\n".join(lines)


def _pooled(passes: Sequence[Pass], mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    return np.concatenate([np.asarray(p.latency_ms)[mask] for p in passes])


def goal_line(tiles: Sequence[TileAddress], runs: dict[str, list[Pass]]) -> str:
    """Whether ours' p95 (median of rounds) is at most half of tipg's at every zoom 12-16, rendered and
    from the tile store."""
    zooms = np.array([t.z for t in tiles])
    parts = []
    for name in (OURS_COLD, OURS_STORED):
        ratios = {}
        for z in ZOOMS:
            mask = zooms == z
            if mask.any():
                ratios[z] = _round_p95(runs[name], mask) / _round_p95(runs[TIPG], mask)
        verdict = "met" if max(ratios.values()) <= 0.5 else "NOT met"
        parts.append(f"{name}: **{verdict}** (" + ", ".join(f"z{z} {r:.2f}" for z, r in ratios.items()) + ")")
    return (
        "Goal (issue): p95 tile latency at most half of tipg's at zooms 12–16 (p95 as the median of the "
        "rounds' p95s; ratio to tipg per zoom) — " + "; ".join(parts) + "."
    )


def main(argv: list[str]) -> int:
    """Run the benchmark; exit 1 when gridsvc and the anchor disagree on a tile."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=["small", "city"], default="small")
    parser.add_argument("--seed", type=int, default=2023, help="seed of the demo city")
    parser.add_argument("--tiles-per-zoom", type=int, default=40, help="distinct tiles per zoom and layer")
    parser.add_argument("--rounds", type=int, default=5, help="timed alternating rounds after the warm-up")
    parser.add_argument("--tipg-python", type=Path, default=DEFAULT_TIPG_PYTHON, help="python of tipg's venv")
    parser.add_argument("--without-tipg", action="store_true", help="time ours only; check counts in PostGIS")
    parser.add_argument(
        "--database-url", help="an existing gridsvc database to use instead of the scratch one"
    )
    parser.add_argument(
        "--reload", action="store_true", help="load the demo city into the scratch database anew"
    )
    parser.add_argument(
        "--clear-store", action="store_true", help="empty the tile store first, so the seed renders the city"
    )
    parser.add_argument("--record", action="store_true", help="append the results to docs/BENCHMARKS.md")
    parser.add_argument(
        "--allow-external",
        action="store_true",
        help="use the server GRIDSVC_DATABASE_URL names (creates or re-creates the scratch database there)",
    )
    args = parser.parse_args(argv)

    settings = get_settings()
    if args.database_url:
        url, described = args.database_url, f"database {make_url(args.database_url).database} as it is"
    else:
        if settings.database_url and not args.allow_external:
            parser.error(
                "GRIDSVC_DATABASE_URL is set: this benchmark creates (and may drop and re-create) a scratch "
                "database on that server; pass --allow-external if that is what you want"
            )
        db = demo_database(database_url(settings), scale=args.scale, seed=args.seed, reload=args.reload)
        url, described = db.url, demo_description(db, args.scale, args.seed)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with engine.connect() as conn:
        plan = conn.execute(text("SELECT id FROM grid_plan WHERE status = 'active'")).scalar_one()
        sizes: dict[str, int] = {
            str(name): int(n)
            for name, n in conn.execute(
                text(
                    "SELECT 'unit grids', count(*) FROM unit_grid WHERE plan_id = :p UNION ALL "
                    "SELECT 'components', count(*) FROM component WHERE valid_to IS NULL UNION ALL "
                    "SELECT 'communities', count(*) FROM community"
                ),
                {"p": plan},
            ).all()
        }
    tiles = tile_list(url, args.tiles_per_zoom)
    use_tipg = not args.without_tipg and args.tipg_python.exists()
    if not args.without_tipg and not use_tipg:
        print(f"tipg is not installed at {args.tipg_python}: timing gridsvc alone", file=sys.stderr)
    key = access.create_key(sessions, name="bench.tiles", role="dispatcher", actor=access.LOCAL_OPERATOR)
    folder = Path(tempfile.mkdtemp(prefix="gridsvc-bench-tiles-"))
    seed = seed_store(url, clear=args.clear_store)
    service = Service(url, folder, env={"GRIDSVC_TILE_CACHE_MB": "0"})
    tipg = Tipg(args.tipg_python, url, folder) if use_tipg else None
    clients: list[TileClient] = []
    try:
        health_s = service.wait_healthy()
        tipg_s = tipg.wait_ready() if tipg else 0.0
        # gridsvc builds the plan's locator in the background at startup (seconds and gigabytes at city
        # scale); one locate waits for it, so the tiles are not timed against that build.
        settled_s = _settle(service.port, key.secret, tiles)
        cold = TileClient(service.port, kind="gridsvc", api_key=key.secret, cache=False)
        stored = TileClient(service.port, kind="gridsvc", api_key=key.secret)
        clients += [cold, stored]
        contenders = {OURS_COLD: cold}
        if tipg:
            contenders[TIPG] = TileClient(tipg.port, kind="tipg", plan=plan)
            clients.append(contenders[TIPG])
        contenders[OURS_STORED] = stored
        # Warm-up: one decoded pass of each, then the agreement check, before anything is timed.
        warmup = {name: run_pass(client, tiles, decode=True) for name, client in contenders.items()}
        expected = None if tipg else postgis_counts(url, tiles, plan)
        problems = disagreements(tiles, warmup[OURS_COLD], warmup.get(TIPG), expected)
        problems += [
            f"tile {tiles[i]}: the store gave {n} features, rendering {warmup[OURS_COLD].counts[i]}"
            for i, n in enumerate(warmup[OURS_STORED].counts)
            if n != warmup[OURS_COLD].counts[i]
        ][:5]
        if problems:
            raise DisagreementError("\n  ".join([f"{len(problems)} tile(s) disagree:", *problems[:20]]))
        passes = interleaved_rounds(contenders, tiles, rounds=args.rounds)
        truncated = sum(1 for n in warmup[OURS_COLD].counts if n >= LIMIT)
        features = sum(warmup[OURS_COLD].counts)
    except DisagreementError as exc:
        print(f"DISAGREEMENT: {exc}", file=sys.stderr)
        return 1
    finally:
        for client in clients:
            client.close()
        service_peak = service.stop()
        tipg_peak = tipg.stop() if tipg else 0.0
        access.revoke_key(sessions, prefix=key.prefix, actor=access.LOCAL_OPERATOR)
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)

    timed = passes
    anchor_name = TIPG if TIPG in timed else None
    by_layer = {pair.layer: sum(1 for t in tiles if t.layer == pair.layer) for pair in PAIRS}
    check = (
        "the feature count of every tile was the same from gridsvc and tipg, and so were the codes in every "
        "tile under the limit"
        if anchor_name
        else "gridsvc's feature count of every tile matched a PostGIS count of the rows meeting it (tipg "
        "not run)"
    )
    body = (
        f"{len(tiles):,} tiles per pass ({', '.join(f'{n} {k}' for k, n in by_layer.items())}), "
        f"{args.tiles_per_zoom} distinct tiles per zoom 12–16 where random components are, each layer from "
        f"its minimum zoom; {features:,} features in all, {truncated} tile(s) at the {LIMIT:,}-feature "
        "limit. "
        f"Before timing, {check}. Then {args.rounds} rounds; in each, every tile is asked of each contender "
        "in turn (ours rendering, tipg, ours from the tile store; the order rotates each round), so a busy "
        "moment of the machine falls on all of them alike. One keep-alive connection per contender, one "
        "request at a time, uncompressed (no Accept-Encoding). "
        f'"{OURS_COLD}" sends `Cache-Control: no-cache`, so every tile is rendered by PostGIS; '
        f'"{OURS_STORED}" asks the same tiles without it and is answered from the tile store, which '
        f"`gridsvc tiles seed` filled before the run: {seed.describe()}; the service ran with its "
        "in-process tile cache off (`GRIDSVC_TILE_CACHE_MB=0`), so every such answer was a look-up in "
        "PostgreSQL.\n\n"
        + zoom_table(tiles, timed, anchor_name)
        + "\n\np95 per layer (ms, all zooms):\n\n"
        + layer_table(tiles, timed)
        + "\n\n"
        + (goal_line(tiles, timed) + "\n\n" if anchor_name else "")
        + f"One-off: gridsvc answered /health {health_s:.1f} s after start and had built its plan locator "
        f"(locate, not tiles) {settled_s:.1f} s later"
        + (f", tipg its catalog {tipg_s:.1f} s after start" if tipg else "")
        + f". Peak RSS: gridsvc {service_peak:,.0f} MiB"
        + (f", tipg {tipg_peak:,.0f} MiB" if tipg else "")
        + f", this client {_self_peak_mib():,.0f} MiB. Data: "
        + ", ".join(f"{n:,} {k}" for k, n in sizes.items())
        + f" (plan {plan})."
    )
    record(
        f"Vector tiles ({args.scale}): gridsvc vs tipg, zooms 12–16",
        body,
        module="bench.tiles",
        data_size=described,
        enabled=args.record,
    )
    return 0


def _settle(port: int, api_key: str, tiles: Sequence[TileAddress]) -> float:
    """Ask one locate and wait for it; returns the seconds it took."""
    n = 1 << tiles[0].z
    lon = (tiles[0].x + 0.5) / n * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (tiles[0].y + 0.5) / n))))
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=600)
    conn.request("GET", f"/v1/locate?lon={lon}&lat={lat}&crs=cgcs2000", headers={"X-API-Key": api_key})
    conn.getresponse().read()
    conn.close()
    return time.perf_counter() - started


def _self_peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- a small Mapbox Vector Tile reader (protobuf wire format, MVT spec 2.1) -----------------------------


@dataclass
class MvtFeature:
    """One decoded feature: id, geometry type (1 point, 2 line, 3 polygon), properties, geometry."""

    id: int | None
    type: int
    properties: dict[str, Any]
    geometry: list[list[tuple[int, int]]] = field(default_factory=list)  # parts in tile units


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message; length-delimited values are bytes."""
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            length, i = _varint(data, i)
            value, i = data[i : i + length], i + length
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _packed(data: bytes) -> list[int]:
    values, i = [], 0
    while i < len(data):
        value, i = _varint(data, i)
        values.append(value)
    return values


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _value(data: bytes) -> Any:
    for number, _wire, raw in _fields(data):
        if number == 1:
            return raw.decode("utf-8")
        if number == 2:
            return struct.unpack("<f", raw)[0]
        if number == 3:
            return struct.unpack("<d", raw)[0]
        if number in (4, 5):
            return raw if number == 5 or raw < 1 << 63 else raw - (1 << 64)
        if number == 6:
            return _zigzag(raw)
        if number == 7:
            return bool(raw)
    return None


def _geometry(commands: list[int]) -> list[list[tuple[int, int]]]:
    parts: list[list[tuple[int, int]]] = []
    x = y = i = 0
    while i < len(commands):
        command, count = commands[i] & 7, commands[i] >> 3
        i += 1
        if command == 7:  # ClosePath
            if parts and parts[-1]:
                parts[-1].append(parts[-1][0])
            continue
        for _ in range(count):
            x += _zigzag(commands[i])
            y += _zigzag(commands[i + 1])
            i += 2
            if command == 1:  # MoveTo starts a part
                parts.append([(x, y)])
            else:
                parts[-1].append((x, y))
    return parts


def decode_mvt(data: bytes) -> dict[str, list[MvtFeature]]:
    """The features of each layer of a vector tile, by layer name (an empty tile: no layers)."""
    layers: dict[str, list[MvtFeature]] = {}
    for number, _, layer_bytes in _fields(data):
        if number != 3:
            continue
        name = ""
        keys: list[str] = []
        values: list[Any] = []
        raw_features: list[bytes] = []
        for lnumber, _, lvalue in _fields(layer_bytes):
            if lnumber == 1:
                name = lvalue.decode("utf-8")
            elif lnumber == 2:
                raw_features.append(lvalue)
            elif lnumber == 3:
                keys.append(lvalue.decode("utf-8"))
            elif lnumber == 4:
                values.append(_value(lvalue))
        features = []
        for raw in raw_features:
            fid: int | None = None
            kind = 0
            tags: list[int] = []
            commands: list[int] = []
            for fnumber, _, fvalue in _fields(raw):
                if fnumber == 1:
                    fid = fvalue
                elif fnumber == 2:
                    tags = _packed(fvalue)
                elif fnumber == 3:
                    kind = fvalue
                elif fnumber == 4:
                    commands = _packed(fvalue)
            properties = {keys[tags[j]]: values[tags[j + 1]] for j in range(0, len(tags), 2)}
            features.append(MvtFeature(fid, kind, properties, _geometry(commands)))
        layers[name] = features
    return layers


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
