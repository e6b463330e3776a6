"""Mixed load on the running service, open loop: how much two cores hold with p99 under 50 ms, and shedding.

    python -m bench.load --scale city --find-max                  # the figure to quote
    python -m bench.load --scale city --rate 150                  # one rate
    python -m bench.load --scale small --rate 40 --seconds 2      # seconds (the smoke test)

The service runs as users run it (``gridsvc serve``: uvicorn, one process, its settings from the
environment) on a free loopback port, against a **copy** of the demo city of ``bench.locate`` at the scale
(``CREATE DATABASE gridsvc_bench_load TEMPLATE gridsvc_bench_locate``, made for the run and dropped after
it; ``--template`` names another database to copy), so the cases and reports the load adds never grow
the shared bench database. Before timing, the overdue demo cases are escalated until none is left to move
(the service would otherwise do it in bursts during the first minutes), every tile of the list is asked
once, and the Open311 POST limits per key and per address are switched off for the service: one key on
one loopback address speaks for the whole city here.

A load generator in a second process sends a mix of requests over keep-alive connections (``--connections``
threads, one connection each), **open loop**: request i is due at t0 + i/rate and its latency is measured
from that due time, so a slow answer delays the requests queued behind it and they count it. The mix
(``--mix``, weights) draws each request's kind from a fixed-seed sequence:

- ``locate``: a field worker's ``GET /v1/locate`` (field key) at a random point inside a unit grid;
- ``tile``: the dispatcher's map, ``GET /v1/tiles/{cases|responsibility_grids}/z/x/y.mvt`` (dispatcher key,
  gzip), tiles at zooms 12-16 where random components are;
- ``open311_post``: a citizen's report, ``POST /open311/v2/requests.json`` (reporter key, form-encoded)
  ~10 m from a random point component, service ``C`` + its class;
- ``open311_get``: a citizen app's list, ``GET /open311/v2/requests.json?bbox=`` (~2 km around a point);
- ``transition``: a dispatcher's step ``POST /v1/cases/{code}/{step}`` on a case whose next step is legal,
  round the loop dispatched -handle-> in_progress -report_back-> reported_back -verify-> verified
  -rework-> dispatched, so the mix never runs out of cases; a case is stepped by one request at a time.

Per endpoint: requests, achieved requests/s, p50/p99 latency, and errors (any answer that is not 2xx/3xx,
by status; 0 = no answer or timeout). ``--find-max`` steps the offered rate up by ``--step`` from ``--rate``
until the goal breaks (p99 >= 50 ms at any endpoint, or any error) and halves the last step once: the
highest rate that held is the figure. Then the shedding demonstration: ``--shed-factor`` times that rate
over ``--shed-connections`` connections, more than the service admits at once
(``GRIDSVC_MAX_REQUESTS_IN_FLIGHT``): the excess must get 503 with Retry-After, not errors or timeouts,
and the admitted requests keep a bounded p99; a short run at half the held rate afterwards shows the
service answering normally again.

Same answers first (and last): before timing, one request of each kind must succeed; after the run, the
copy must hold exactly one new case per Open311 report answered 2xx and one event per step answered 200
(nothing accepted was lost, nothing refused was half-done); otherwise the run exits 1.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bench.harness import DisagreementError, record
from bench.locate import SCRATCH_DB, demo_database, self_rss_mib
from bench.locate_http import Service, pct, vm_hwm_mib
from bench.tiles import tile_of
from gridsvc.db.engine import make_engine, make_session_factory
from gridsvc.services import access
from gridsvc.services.database import database_url
from gridsvc.settings import Settings, get_settings

HOST = "127.0.0.1"
COPY_DB = "gridsvc_bench_load"
GOAL_P99_MS = 50.0
KINDS = ("locate", "tile", "open311_post", "open311_get", "transition")
LABELS = {
    "locate": "GET /v1/locate (field)",
    "tile": "GET /v1/tiles/…/z/x/y.mvt (dispatcher)",
    "open311_post": "POST /open311/v2/requests.json (reporter)",
    "open311_get": "GET /open311/v2/requests.json?bbox (public)",
    "transition": "POST /v1/cases/{code}/{step} (dispatcher)",
}
DEFAULT_MIX = "locate=35,tile=35,open311_post=10,open311_get=10,transition=10"
# The loop the transitions go round: each status's next step and where it leads.
NEXT_STEP = {
    "dispatched": ("handle", "in_progress"),
    "in_progress": ("report_back", "reported_back"),
    "reported_back": ("verify", "verified"),
    "verified": ("rework", "dispatched"),
}
TILE_LAYERS = ("cases", "responsibility_grids")
ZOOMS = (12, 13, 14, 15, 16)
NOTE = "负载测试 bench.load"
# uvicorn closes a keep-alive connection idle for 5 s; a client reconnects before that, as browsers do.
IDLE_RECONNECT_S = 4.0
OPEN311_LIMITS_OFF = {
    "GRIDSVC_OPEN311_POST_PER_MINUTE_PER_KEY": "0",
    "GRIDSVC_OPEN311_POST_PER_MINUTE_PER_ADDRESS": "0",
}
NO_CASE = -1  # a transition was due but every case was being stepped (the pool was too small)


# --- the workload (made in the main process, sent to the generator once) ------------------------------------


def parse_mix(text_: str) -> dict[str, float]:
    """``locate=35,tile=35,...`` -> weights; every kind must be known, at least one positive."""
    weights: dict[str, float] = {}
    for part in text_.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in KINDS:
            raise ValueError(f"unknown kind {name.strip()!r} in --mix: one of {', '.join(KINDS)}")
        weights[name.strip()] = float(value)
    if not any(w > 0 for w in weights.values()):
        raise ValueError("--mix needs a positive weight")
    return {kind: weights.get(kind, 0.0) for kind in KINDS}


def kind_sequence(weights: dict[str, float], n: int = 10_000, seed: int = 5) -> list[int]:
    """A fixed-seed sequence of kind indices in the proportions of ``weights``."""
    rng = random.Random(seed)
    return rng.choices(range(len(KINDS)), weights=[weights[k] for k in KINDS], k=n)


def make_workload(url: str, plan_id: int, n_points: int, tiles_per_zoom: int) -> dict[str, Any]:
    """Points, reports, boxes, tiles and the cases whose next step is legal, read from the copy."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            # A random point inside each of n unit grids (fixed seed): where field workers stand.
            locate = conn.execute(
                text(
                    "SELECT ST_X(p), ST_Y(p) FROM ("
                    " SELECT (ST_Dump(ST_GeneratePoints(geom, 1, 7))).geom AS p FROM ("
                    "  SELECT geom FROM unit_grid WHERE plan_id = :plan ORDER BY md5(code) LIMIT :n) g) q"
                ),
                {"plan": plan_id, "n": n_points},
            ).all()
            low, high = conn.execute(text("SELECT min(id), max(id) FROM component")).one()
            rng = random.Random(11)
            ids = [rng.randint(int(low), int(high)) for _ in range(4 * n_points)]
            components = conn.execute(
                text(
                    "SELECT class_code, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
                    "FROM component WHERE id = ANY(:ids) AND valid_to IS NULL AND in_use ORDER BY id"
                ),
                {"ids": ids},
            ).all()
            cases = conn.execute(
                text(
                    "SELECT request_code, status FROM case_record WHERE status = ANY(:statuses) "
                    "AND department_code IS NOT NULL ORDER BY request_code"
                ),
                {"statuses": list(NEXT_STEP)},
            ).all()
    finally:
        engine.dispose()
    if not locate or not components:
        raise RuntimeError("the demo city has no unit grids or no components: is it loaded?")
    components = list(components)
    rng.shuffle(components)  # ids follow the survey's order, which is by place: spread the tiles out
    jitter = random.Random(13)
    # ~10 m from the component (a phone's fix beside the lamp), service C + its class.
    reports = [
        (f"C{cls}", float(x) + jitter.gauss(0, 10 / 89_000), float(y) + jitter.gauss(0, 10 / 111_000))
        for cls, x, y in components
    ]
    # ~2 km boxes around the reports: what a citizen app's map of "reports near me" asks.
    boxes = [f"{x - 0.011:.6f},{y - 0.009:.6f},{x + 0.011:.6f},{y + 0.009:.6f}" for _, x, y in reports]
    tiles: list[str] = []
    for z in ZOOMS:
        chosen = list(dict.fromkeys(tile_of(x, y, z) for _, x, y in components))[:tiles_per_zoom]
        tiles += [f"/v1/tiles/{layer}/{z}/{tx}/{ty}.mvt" for layer in TILE_LAYERS for tx, ty in chosen]
    random.Random(17).shuffle(tiles)
    return {
        "locate": [(float(x), float(y)) for x, y in locate],
        "reports": reports,
        "boxes": boxes,
        "tiles": tiles,
        "cases": [(str(code), str(status)) for code, status in cases],
    }


def request_for(
    kind: str, k: int, work: dict[str, Any], keys: dict[str, str], case: tuple[str, str] | None
) -> tuple[str, str, bytes | None, dict[str, str]]:
    """(method, path, body, headers) of the k-th request of a kind."""
    if kind == "locate":
        x, y = work["locate"][k % len(work["locate"])]
        return "GET", f"/v1/locate?lon={x!r}&lat={y!r}&crs=cgcs2000", None, {"X-API-Key": keys["field"]}
    if kind == "tile":
        path = work["tiles"][k % len(work["tiles"])]
        return "GET", path, None, {"X-API-Key": keys["dispatcher"], "Accept-Encoding": "gzip"}
    if kind == "open311_post":
        code, x, y = work["reports"][k % len(work["reports"])]
        form = {
            "api_key": keys["reporter"],
            "service_code": code,
            "lat": repr(y),
            "long": repr(x),
            "crs": "cgcs2000",
            "description": NOTE,
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return "POST", "/open311/v2/requests.json", urlencode(form).encode(), headers
    if kind == "open311_get":
        box = work["boxes"][k % len(work["boxes"])]
        return "GET", f"/open311/v2/requests.json?bbox={box}&crs=cgcs2000", None, {}
    assert case is not None
    step = NEXT_STEP[case[1]][0]
    body = json.dumps({"note": NOTE}, ensure_ascii=False).encode()
    headers = {"X-API-Key": keys["dispatcher"], "Content-Type": "application/json"}
    return "POST", f"/v1/cases/{case[0]}/{step}", body, headers


# --- the load generator (its own process) ----------------------------------------------------------------


class HttpClient:
    """One keep-alive connection; reconnects when idle long enough for the server to have closed it."""

    def __init__(self, port: int, timeout_s: float) -> None:
        self.port, self.timeout_s = port, timeout_s
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
        self.used_at = time.perf_counter()

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bool]:
        """(status, whether a Retry-After came with it); status 0 when no answer came."""
        if time.perf_counter() - self.used_at > IDLE_RECONNECT_S:
            self.conn.close()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            response.read()
            status, retry_after = response.status, response.getheader("Retry-After") is not None
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout_s)
            status, retry_after = 0, False
        self.used_at = time.perf_counter()
        return status, retry_after

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class CasePool:
    """Cases ready for their next step; a case is out of the pool while a request steps it."""

    def __init__(self, cases: list[tuple[str, str]]) -> None:
        self.ready = deque(cases)
        self.lock = threading.Lock()
        self.dropped = 0

    def take(self) -> tuple[str, str] | None:
        """The case waiting longest, or None when every case is being stepped."""
        with self.lock:
            return self.ready.popleft() if self.ready else None

    def give_back(self, case: tuple[str, str], status: int) -> None:
        """A stepped case returns with its new status; a refused one (503) as it was; any other is dropped."""
        with self.lock:
            if 200 <= status < 300:
                self.ready.append((case[0], NEXT_STEP[case[1]][1]))
            elif status == 503:
                self.ready.append(case)
            else:
                self.dropped += 1


def run_load(
    port: int,
    work: dict[str, Any],
    keys: dict[str, str],
    pool: CasePool,
    sequence: list[int],
    *,
    rate: float,
    seconds: float,
    connections: int,
    timeout_s: float,
) -> dict[str, Any]:
    """Send ``rate * seconds`` requests open loop; per request: kind, latency and send lag from the due
    time (ms), status, Retry-After; and the wall time from t0 to the last answer."""
    planned = max(1, int(rate * seconds))
    counter = itertools.count()
    per_kind = [itertools.count() for _ in KINDS]
    start: list[float] = []
    barrier = threading.Barrier(connections, action=lambda: start.append(time.perf_counter() + 0.02))
    rows: list[list[tuple[int, float, float, float, int, bool]]] = [[] for _ in range(connections)]

    def worker(records: list[tuple[int, float, float, float, int, bool]]) -> None:
        client = HttpClient(port, timeout_s)
        try:
            barrier.wait()
            t0 = start[0]
            while True:
                i = next(counter)
                if i >= planned:
                    break
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                kind_index = sequence[i % len(sequence)]
                kind = KINDS[kind_index]
                case = pool.take() if kind == "transition" else None
                if kind == "transition" and case is None:
                    now = time.perf_counter()
                    records.append((kind_index, due, now, now, NO_CASE, False))
                    continue
                method, path, body, headers = request_for(kind, next(per_kind[kind_index]), work, keys, case)
                sent = time.perf_counter()
                status, retry_after = client.send(method, path, body, headers)
                records.append((kind_index, due, sent, time.perf_counter(), status, retry_after))
                if case is not None:
                    pool.give_back(case, status)
        except threading.BrokenBarrierError:
            return
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(r,)) for r in rows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = sorted(itertools.chain.from_iterable(rows), key=lambda r: r[1])
    due = np.array([r[1] for r in flat])
    done = np.array([r[3] for r in flat])
    return {
        "kind": np.array([r[0] for r in flat], dtype=np.int64),
        "latency_ms": (done - due) * 1000,
        "lag_ms": (np.array([r[2] for r in flat]) - due) * 1000,
        "status": np.array([r[4] for r in flat], dtype=np.int64),
        "retry_after": np.array([r[5] for r in flat], dtype=bool),
        "wall_s": float(done.max() - start[0]) if flat else 0.0,
        "rate": rate,
        "seconds": seconds,
        "connections": connections,
    }


def loadgen_main(conn: Connection) -> None:
    """The load generator's process: keeps the workload and the case pool between loads."""
    port = 0
    work: dict[str, Any] = {}
    keys: dict[str, str] = {}
    sequence: list[int] = []
    pool = CasePool([])
    while True:
        command, payload = conn.recv()
        if command == "stop":
            break
        try:
            if command == "setup":
                port, work, keys = payload["port"], payload["work"], payload["keys"]
                sequence = payload["sequence"]
                pool = CasePool(work["cases"])
                conn.send(("ok", None))
            elif command == "counts":
                conn.send(("ok", {"cases_ready": len(pool.ready), "cases_dropped": pool.dropped}))
            else:
                conn.send(("ok", run_load(port, work, keys, pool, sequence, **payload)))
        except Exception as exc:
            conn.send(("error", repr(exc)))


class LoadGenerator:
    """The load generator process, driven over a pipe."""

    def __init__(self, port: int, work: dict[str, Any], keys: dict[str, str], sequence: list[int]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=loadgen_main, args=(child,), daemon=True)
        self.process.start()
        self._call("setup", {"port": port, "work": work, "keys": keys, "sequence": sequence})

    def _call(self, command: str, payload: Any) -> Any:
        self.conn.send((command, payload))
        status, answer = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"load generator: {answer}")
        return answer

    def run(self, **load: Any) -> dict[str, Any]:
        """One load (see :func:`run_load`)."""
        return dict(self._call("run", load))

    def counts(self) -> dict[str, int]:
        """Cases ready for a step, and cases dropped from the pool after a failed step."""
        return dict(self._call("counts", None))

    def peak_rss_mib(self) -> float:
        """Peak resident memory of the load generator so far."""
        return vm_hwm_mib(self.process.pid)

    def stop(self) -> None:
        """Stop the process."""
        self.conn.send(("stop", None))
        self.process.join(timeout=10)


# --- the copy of the demo city -----------------------------------------------------------------------------


def copy_database(base_url: str, source: str, wait_s: float = 900) -> tuple[str, float]:
    """A fresh copy of ``source`` called COPY_DB (a file copy: seconds even at city scale); returns its URL
    and the seconds the copy took.

    PostgreSQL copies a template only while nobody else is connected to it: a busy source is waited for
    (up to ``wait_s``), never disturbed.
    """
    admin = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + wait_s
    told = False
    try:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {COPY_DB} WITH (FORCE)"))
            while True:
                try:
                    started = time.perf_counter()
                    conn.execute(text(f"CREATE DATABASE {COPY_DB} TEMPLATE {source} STRATEGY FILE_COPY"))
                    copy_s = time.perf_counter() - started
                    break
                except OperationalError as exc:
                    if "being accessed by other users" not in str(exc):
                        raise
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"cannot copy {source}: another session stayed connected to it for "
                            f"{wait_s:.0f} s (see pg_stat_activity)"
                        ) from None
                    if not told:
                        print(f"waiting for the other sessions on {source} to end ...", flush=True)
                        told = True
                    time.sleep(5)
    finally:
        admin.dispose()
    return make_url(base_url).set(database=COPY_DB).render_as_string(hide_password=False), copy_s


def drop_copy(base_url: str) -> None:
    """Drop the copy and everything the load wrote into it."""
    admin = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {COPY_DB} WITH (FORCE)"))
    finally:
        admin.dispose()


def written(url: str, since_case_id: int, since_event_id: int, actor: str) -> tuple[int, int]:
    """(Open311 cases, steps by ``actor``) written after the given ids."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            reports = conn.execute(
                text("SELECT count(*) FROM case_record WHERE id > :id AND channel = 'open311'"),
                {"id": since_case_id},
            ).scalar_one()
            steps = conn.execute(
                text(
                    "SELECT count(*) FROM case_event WHERE id > :id AND actor = :actor "
                    "AND action IN ('handle', 'report_back', 'verify', 'rework')"
                ),
                {"id": since_event_id, "actor": actor},
            ).scalar_one()
    finally:
        engine.dispose()
    return int(reports), int(steps)


def last_ids(url: str) -> tuple[int, int]:
    """The highest case and case event ids now."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT (SELECT coalesce(max(id), 0) FROM case_record), "
                    "(SELECT coalesce(max(id), 0) FROM case_event)"
                )
            ).one()
    finally:
        engine.dispose()
    return int(row[0]), int(row[1])


def active_plan(url: str) -> int:
    """The id of the active plan."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT id FROM grid_plan WHERE status = 'active'")).scalar_one())
    finally:
        engine.dispose()


def data_sizes(url: str, plan_id: int) -> dict[str, int]:
    """Unit grids of the plan, current components, cases."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT 'unit grids', count(*) FROM unit_grid WHERE plan_id = :p UNION ALL "
                    "SELECT 'components', count(*) FROM component WHERE valid_to IS NULL UNION ALL "
                    "SELECT 'cases', count(*) FROM case_record"
                ),
                {"p": plan_id},
            ).all()
    finally:
        engine.dispose()
    return {str(name): int(n) for name, n in rows}


# --- statistics ----------------------------------------------------------------------------------------


def ok_mask(status: np.ndarray) -> np.ndarray:
    """Answers that count as served: 2xx and 3xx (a 304 is a served tile)."""
    return (status >= 200) & (status < 400)


def summarize(load: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per kind (and "all"): requests, achieved req/s, p50/p99/max latency of every request, errors."""
    out: dict[str, dict[str, Any]] = {}
    wall = load["wall_s"] or load["seconds"]
    for index, kind in [*enumerate(KINDS), (-1, "all")]:
        mask = np.ones(len(load["kind"]), dtype=bool) if index < 0 else load["kind"] == index
        if not mask.any():
            continue
        status = load["status"][mask]
        latency = load["latency_ms"][mask]
        bad = status[~ok_mask(status)]
        out[kind] = {
            "requests": int(mask.sum()),
            "rate": float(mask.sum() / wall),
            "p50": pct(latency, 50),
            "p99": pct(latency, 99),
            "max": float(latency.max()),
            "errors": dict(sorted(Counter(int(s) for s in bad).items())),
            "lag_p99": pct(load["lag_ms"][mask], 99),
        }
    return out


def goal_held(summary: dict[str, dict[str, Any]], rate: float) -> tuple[bool, str]:
    """(held, why not): every endpoint's p99 under the goal, no error, and the rate achieved."""
    worst_kind = max((k for k in summary if k != "all"), key=lambda k: summary[k]["p99"])
    worst = summary[worst_kind]["p99"]
    errors = sum(sum(s["errors"].values()) for k, s in summary.items() if k != "all")
    achieved = summary["all"]["rate"]
    if errors:
        return False, f"{errors} error(s)"
    if worst >= GOAL_P99_MS:
        return False, f"p99 {worst:.1f} ms at {worst_kind}"
    if achieved < 0.95 * rate:
        return False, f"only {achieved:.0f} req/s achieved"
    return True, f"worst p99 {worst:.1f} ms ({worst_kind})"


def errors_text(errors: dict[int, int]) -> str:
    """``503×3, 0×1`` (0: no answer; -1: no case ready), or 0."""
    if not errors:
        return "0"
    return ", ".join(f"{status}×{n}" for status, n in errors.items())


def endpoint_table(summary: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per endpoint and one for all."""
    lines = [
        "| endpoint | requests | req/s | p50 (ms) | p99 (ms) | max (ms) | errors (status×n) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for kind, s in summary.items():
        name = "**all**" if kind == "all" else LABELS[kind]
        lines.append(
            f"| {name} | {s['requests']:,} | {s['rate']:,.1f} | {s['p50']:.2f} | {s['p99']:.2f} | "
            f"{s['max']:.1f} | {errors_text(s['errors'])} |"
        )
    return "\n".join(lines)


def shed_table(load: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """Markdown per endpoint: sent, served, 503 + Retry-After, other answers, no answer, p50/p99 served."""
    lines = [
        "| endpoint | sent | served (2xx/3xx) | 503 + Retry-After | other errors | no answer | "
        "p50 served (ms) | p99 served (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    totals: Counter[str] = Counter()
    for index, kind in [*enumerate(KINDS), (-1, "all")]:
        mask = np.ones(len(load["kind"]), dtype=bool) if index < 0 else load["kind"] == index
        if not mask.any():
            continue
        status, retry = load["status"][mask], load["retry_after"][mask]
        served = ok_mask(status)
        shed = (status == 503) & retry
        none = status == 0
        other = ~served & ~shed & ~none
        latency = load["latency_ms"][mask][served]
        name = "**all**" if kind == "all" else LABELS[kind]
        lines.append(
            f"| {name} | {int(mask.sum()):,} | {int(served.sum()):,} | {int(shed.sum()):,} | "
            f"{int(other.sum()):,} | {int(none.sum()):,} | {pct(latency, 50):.2f} | {pct(latency, 99):.2f} |"
        )
        if kind == "all":
            totals.update(
                sent=int(mask.sum()),
                served=int(served.sum()),
                shed=int(shed.sum()),
                other=int(other.sum()),
                none=int(none.sum()),
            )
    return "\n".join(lines), dict(totals)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (as ``uptime`` shows them)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --- preparing the service ---------------------------------------------------------------------------------


def top_up_cases(port: int, keys: dict[str, str], work: dict[str, Any], wanted: int) -> int:
    """Make dispatched cases over HTTP (report, register, dispatch) until ``wanted`` are ready; returns how
    many were made. The small demo has few cases in the loop; the city has enough."""
    made = 0
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    headers = {"X-API-Key": keys["dispatcher"], "Content-Type": "application/json"}
    try:
        k = 0
        while len(work["cases"]) < wanted and k < 4 * wanted:
            code, x, y = work["reports"][k % len(work["reports"])]
            k += 1
            report = {
                "kind": "component",
                "class_code": code[1:],
                "lon": x,
                "lat": y,
                "crs": "cgcs2000",
                "description": NOTE,
            }
            conn.request("POST", "/v1/cases", body=json.dumps(report).encode(), headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 201:
                continue
            request_code = json.loads(body)["request_code"]
            ok = True
            for step in ("register", "dispatch"):
                conn.request("POST", f"/v1/cases/{request_code}/{step}", body=b"{}", headers=headers)
                answer = conn.getresponse()
                answer.read()
                ok = ok and answer.status == 200
            if ok:
                work["cases"].append((request_code, "dispatched"))
                made += 1
    finally:
        conn.close()
    return made


def settle_escalations(port: int, keys: dict[str, str], rounds: int = 6) -> int:
    """Escalate overdue cases (``POST /v1/escalations``) until nothing moves; returns how many moved.

    The demo city's open cases are long past their deadlines: the service's own escalation thread would
    move hundreds of them a level up every minute of the first few, a burst a running city only sees
    once. The load is measured in the steady state after it, where only newly overdue cases move.
    """
    moved = 0
    conn = http.client.HTTPConnection(HOST, port, timeout=600)
    try:
        for _ in range(rounds):
            conn.request("POST", "/v1/escalations", headers={"X-API-Key": keys["dispatcher"]})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"POST /v1/escalations answered {response.status}: {body[:300]!r}")
            escalated = json.loads(body)["escalated"]
            if not escalated:
                break
            moved += len(escalated)
    finally:
        conn.close()
    return moved


def first_of_each(port: int, work: dict[str, Any], keys: dict[str, str]) -> list[str]:
    """One request of each kind (no case stepped), then every tile once: problems, if any answer is not
    served."""
    problems = []
    client = HttpClient(port, timeout_s=600)  # the first locate may wait for the plan's locator
    try:
        for kind in KINDS:
            if kind == "transition":
                continue
            method, path, body, headers = request_for(kind, 0, work, keys, None)
            status, _ = client.send(method, path, body, headers)
            if not 200 <= status < 400:
                problems.append(f"{LABELS[kind]}: {method} {path.split('?')[0]} answered {status}")
        # Every tile once, so that each timed step finds the same tiles cached (the grid layer's stay
        # cached; the cases layer's are rendered again whenever a case changes, in every step alike).
        for path in work["tiles"]:
            status, _ = client.send("GET", path, None, {"X-API-Key": keys["dispatcher"]})
            if not 200 <= status < 400:
                problems.append(f"{LABELS['tile']}: GET {path} answered {status}")
                break
    finally:
        client.close()
    return problems


def service_settings(settings: Settings) -> str:
    """The load settings the service runs with (its environment is this process's)."""
    return (
        f"pool {settings.db_pool_size} + overflow {settings.db_max_overflow} connections, pool timeout "
        f"{settings.db_pool_timeout_seconds:g} s, at most {settings.max_requests_in_flight} requests in "
        "flight"
    )


# --- the report ---------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One timed rate: its summary per endpoint and whether the goal held."""

    rate: float
    summary: dict[str, dict[str, Any]]
    held: bool
    why: str


@dataclass
class Writes:
    """Open311 reports and steps: answered as served, written in the copy, and what disagrees."""

    reports_served: int
    reports_written: int
    steps_served: int
    steps_written: int
    unanswered: int
    problems: list[str]


def check_writes(url: str, loads: list[dict[str, Any]], since_case: int, since_event: int) -> Writes:
    """Every served report and step is in the database; nothing refused was written (an unanswered request,
    timed out by the client, may or may not have been)."""
    post, step = KINDS.index("open311_post"), KINDS.index("transition")
    reports_served = sum(int(ok_mask(ld["status"][ld["kind"] == post]).sum()) for ld in loads)
    steps_served = sum(int(ok_mask(ld["status"][ld["kind"] == step]).sum()) for ld in loads)
    unanswered = sum(
        int((ld["status"][(ld["kind"] == post) | (ld["kind"] == step)] == 0).sum()) for ld in loads
    )
    reports_written, steps_written = written(url, since_case, since_event, "bench.load dispatcher")
    problems = []
    for name, served, wrote in (
        ("Open311 reports", reports_served, reports_written),
        ("steps", steps_served, steps_written),
    ):
        if wrote < served:
            problems.append(f"{name}: {served} answered as served, only {wrote} written (lost)")
        if wrote > served + unanswered:
            problems.append(f"{name}: {wrote} written, only {served} served (a refused request wrote)")
    return Writes(reports_served, reports_written, steps_served, steps_written, unanswered, problems)


@dataclass
class Facts:
    """What the report says besides the tables."""

    settings: str
    load_before: str
    load_after: str
    health_s: float
    ready_s: float
    copy_s: float
    loop_cases: int
    made_cases: int
    escalated: int
    counts: dict[str, int]
    writes: Writes
    service_peak: float
    loadgen_peak: float


def steps_table(steps: list[Step]) -> str:
    """Markdown: one row per timed rate, p99 per endpoint."""
    kinds = [k for k in KINDS if any(k in s.summary for s in steps)]
    head = " | ".join(f"p99 {k} (ms)" for k in kinds)
    lines = [
        f"| offered req/s | achieved req/s | {head} | errors | goal |",
        "| ---: | ---: | " + " | ".join("---:" for _ in kinds) + " | --- | --- |",
    ]
    for s in steps:
        p99s = " | ".join(f"{s.summary[k]['p99']:.1f}" if k in s.summary else "–" for k in kinds)
        lines.append(
            f"| {s.rate:,.0f} | {s.summary['all']['rate']:,.0f} | {p99s} | "
            f"{errors_text(s.summary['all']['errors'])} | {'held' if s.held else 'broke: ' + s.why} |"
        )
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    weights: dict[str, float],
    steps: list[Step],
    held_rate: float | None,
    shed: dict[str, Any] | None,
    recovery: Step | None,
    facts: Facts,
) -> str:
    """The Markdown body."""
    total = sum(weights.values())
    mix = ", ".join(f"{LABELS[k]} {100 * w / total:.0f}%" for k, w in weights.items() if w > 0)
    parts = [
        f"Open loop over {args.connections} keep-alive connections from a load generator in its own process "
        f"(loopback), {args.seconds:g} s per rate after every tile of the list once and a "
        f"{args.warmup_seconds:g} s warm-up; latency from "
        "each request's due time, so queueing anywhere counts. Mix: "
        f"{mix}. Service: `gridsvc serve` (uvicorn, one process) with {facts.settings}. "
        f"Goal (issue 7): no errors and p99 under {GOAL_P99_MS:g} ms at every endpoint. The machine is "
        f"shared with other agents' work: load average (1/5/15 min, as `uptime` shows it) "
        f"{facts.load_before} before the run, {facts.load_after} after it.",
    ]
    if args.find_max:
        if held_rate is not None:
            parts.append(
                f"**Highest rate that held: {held_rate:,.0f} requests/s** (stepped up by {args.step:g} from "
                f"{args.rate:g} until the goal broke, then half a step)."
            )
        else:
            parts.append(f"**The goal did not hold even at the first rate, {args.rate:g} requests/s.**")
    parts.append(steps_table(steps))
    best = next((s for s in reversed(steps) if s.held and s.rate == held_rate), None)
    if best is not None:
        parts.append(
            f"Per endpoint at {best.rate:,.0f} requests/s (held):\n\n" + endpoint_table(best.summary)
        )
    broken = [s for s in steps if not s.held]
    if broken:
        first = min(broken, key=lambda s: s.rate)
        parts.append(
            f"Per endpoint at {first.rate:,.0f} requests/s (broke: {first.why}):\n\n"
            + endpoint_table(first.summary)
        )
    if shed is not None:
        table_, totals = shed_table(shed)
        parts.append(
            f"Shedding: {shed['rate']:,.0f} requests/s offered ({args.shed_factor:g}× "
            f"{held_rate or args.rate:,.0f}) for {args.shed_seconds:g} s over {shed['connections']} "
            "connections, more than the service admits at once:\n\n" + table_
        )
        verdict = (
            f"{totals.get('shed', 0):,} of {totals.get('sent', 0):,} requests were refused with 503 + "
            f"Retry-After, {totals.get('served', 0):,} served; other errors {totals.get('other', 0)}, "
            f"unanswered (client timeout {args.timeout:g} s) {totals.get('none', 0)}."
        )
        if recovery is not None:
            verdict += (
                f" Afterwards, {recovery.rate:,.0f} requests/s (half the held rate) for "
                f"{args.recovery_seconds:g} s: "
                f"{'held' if recovery.held else 'broke'} ({recovery.why}; "
                f"errors {errors_text(recovery.summary['all']['errors'])})."
            )
        parts.append(verdict)
    w, ready, dropped = facts.writes, facts.counts["cases_ready"], facts.counts["cases_dropped"]
    parts.append(
        f"Written as answered: {w.reports_served:,} Open311 reports served and {w.reports_written:,} new "
        f"Open311 cases in the database; {w.steps_served:,} steps served and {w.steps_written:,} step "
        f"events ({w.unanswered} report/step requests unanswered). Cases in the loop: "
        f"{facts.loop_cases:,} from the demo city + {facts.made_cases:,} made for the run; {ready:,} ready "
        f"at the end, {dropped} dropped after a failed step. Before timing, {facts.escalated:,} overdue "
        "demo cases were escalated until none was left to move (`POST /v1/escalations`). One-off: /health "
        f"answered {facts.health_s:.1f} s after start; the first request of each kind (the plan's locator "
        f"built in the service) and every tile once {facts.ready_s:.1f} s later. Peak RSS: service "
        f"{facts.service_peak:,.0f} MiB, load generator {facts.loadgen_peak:,.0f} MiB, this process "
        f"{self_rss_mib()[1]:,.0f} MiB."
    )
    return "\n\n".join(parts)


# --- main ---------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Run the load; exit 1 when a kind fails before timing or the rows written disagree with the answers."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=["small", "city"], default="small")
    parser.add_argument("--seed", type=int, default=2023, help="seed of the demo city")
    parser.add_argument(
        "--rate", type=float, default=100, help="offered requests/s (find-max: the first step)"
    )
    parser.add_argument("--seconds", type=float, default=30, help="seconds per step")
    parser.add_argument("--find-max", action="store_true", help="step the rate up until the goal breaks")
    parser.add_argument("--step", type=float, default=50, help="find-max: requests/s added per step")
    parser.add_argument("--max-rate", type=float, default=3000, help="find-max: never offer more than this")
    parser.add_argument("--connections", type=int, default=48, help="client keep-alive connections")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"weights of the kinds (default {DEFAULT_MIX})")
    parser.add_argument("--warmup-seconds", type=float, default=10, help="untimed load at --rate first")
    parser.add_argument("--settle-seconds", type=float, default=3, help="pause between steps")
    parser.add_argument(
        "--shed-factor", type=float, default=10, help="shedding: times the held rate (0: skip it)"
    )
    parser.add_argument("--shed-seconds", type=float, default=10, help="shedding: seconds")
    parser.add_argument("--shed-connections", type=int, default=256, help="shedding: client connections")
    parser.add_argument(
        "--recovery-seconds", type=float, default=5, help="after shedding: seconds at half the held rate"
    )
    parser.add_argument("--timeout", type=float, default=10, help="client timeout per request (s)")
    parser.add_argument("--points", type=int, default=5000, help="distinct locate points and reports")
    parser.add_argument("--tiles-per-zoom", type=int, default=40, help="distinct tiles per zoom and layer")
    parser.add_argument(
        "--reload", action="store_true", help="load the demo city into bench.locate's database anew"
    )
    parser.add_argument(
        "--template",
        help="copy this gridsvc database (with an active plan) instead of bench.locate's demo city",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not append to docs/BENCHMARKS.md"
    )
    parser.add_argument(
        "--allow-external",
        action="store_true",
        help="use the server GRIDSVC_DATABASE_URL names (creates scratch databases there)",
    )
    args = parser.parse_args(argv)
    try:
        weights = parse_mix(args.mix)
    except ValueError as exc:
        parser.error(str(exc))

    settings = get_settings()
    if settings.database_url and not args.allow_external:
        parser.error(
            "GRIDSVC_DATABASE_URL is set: this benchmark creates (and may drop and re-create) scratch "
            "databases on that server; pass --allow-external if that is what you want"
        )
    base = database_url(settings)
    load_before = loadavg()
    if args.template:
        source, described = args.template, f"database {args.template} as it was"
    else:
        demo_database(base, scale=args.scale, seed=args.seed, reload=args.reload)  # loaded when missing
        source, described = SCRATCH_DB, f"demo city scale {args.scale}, seed {args.seed}"
    url, copy_s = copy_database(base, source)
    folder = Path(tempfile.mkdtemp(prefix="gridsvc-bench-load-"))
    service: Service | None = None
    loadgen: LoadGenerator | None = None
    every_load: list[dict[str, Any]] = []
    steps: list[Step] = []
    try:
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        keys = {
            role: access.create_key(
                sessions, name=f"bench.load {role}", role=role, actor=access.LOCAL_OPERATOR
            ).secret
            for role in ("field", "dispatcher", "reporter")
        }
        engine.dispose()
        plan_id = active_plan(url)
        sizes = data_sizes(url, plan_id)
        work = make_workload(url, plan_id, args.points, args.tiles_per_zoom)
        # One loopback address and one key speak for a whole city's citizens here: the per-key and
        # per-address Open311 POST limits (issue 7, access) would refuse the load itself, so they are off.
        os.environ.update(OPEN311_LIMITS_OFF)
        service = Service(url, folder)
        health_s = service.wait_healthy()
        started = time.perf_counter()
        problems = first_of_each(service.port, work, keys)
        ready_s = time.perf_counter() - started
        if problems:
            raise DisagreementError("\n  ".join(["a request failed before timing:", *problems]))
        escalated = settle_escalations(service.port, keys)
        loop_cases = len(work["cases"])
        made = top_up_cases(service.port, keys, work, wanted=2 * max(args.connections, args.shed_connections))
        since_case, since_event = last_ids(url)
        loadgen = LoadGenerator(service.port, work, keys, kind_sequence(weights))

        def run(rate: float, seconds: float, connections: int) -> dict[str, Any]:
            assert loadgen is not None
            load = loadgen.run(rate=rate, seconds=seconds, connections=connections, timeout_s=args.timeout)
            every_load.append(load)
            return load

        def measure(rate: float) -> bool:
            summary = summarize(run(rate, args.seconds, args.connections))
            held, why = goal_held(summary, rate)
            steps.append(Step(rate, summary, held, why))
            print(f"{rate:,.0f} req/s offered: {'held' if held else 'broke'} ({why})", flush=True)
            time.sleep(args.settle_seconds)
            return held

        if args.warmup_seconds > 0:
            run(args.rate, args.warmup_seconds, args.connections)
            time.sleep(args.settle_seconds)
        held_rate: float | None = None
        if args.find_max:
            rate, broke = args.rate, False
            while rate <= args.max_rate:
                if not measure(rate):
                    broke = True
                    break
                held_rate = rate
                rate += args.step
            if broke and held_rate is not None and args.step >= 20 and measure(held_rate + args.step / 2):
                held_rate += args.step / 2
        elif measure(args.rate):
            held_rate = args.rate

        shed: dict[str, Any] | None = None
        recovery: Step | None = None
        base_rate = held_rate or args.rate
        if args.shed_factor > 0:
            shed = run(args.shed_factor * base_rate, args.shed_seconds, args.shed_connections)
            time.sleep(args.settle_seconds)
            if args.recovery_seconds > 0:
                calm = base_rate / 2
                summary = summarize(run(calm, args.recovery_seconds, args.connections))
                recovery = Step(calm, summary, *goal_held(summary, calm))
        counts = loadgen.counts()
        loadgen_peak = loadgen.peak_rss_mib()
        writes = check_writes(url, every_load, since_case, since_event)
        if writes.problems:
            raise DisagreementError(
                "\n  ".join(["the rows written disagree with the answers:", *writes.problems])
            )
    except DisagreementError as exc:
        print(f"DISAGREEMENT: {exc}", file=sys.stderr)
        return 1
    finally:
        if loadgen is not None:
            loadgen.stop()
        service_peak = service.stop() if service is not None else 0.0
        drop_copy(base)
        shutil.rmtree(folder, ignore_errors=True)

    facts = Facts(
        settings=service_settings(settings),
        load_before=load_before,
        load_after=loadavg(),
        health_s=health_s,
        ready_s=ready_s,
        copy_s=copy_s,
        loop_cases=loop_cases,
        made_cases=made,
        escalated=escalated,
        counts=counts,
        writes=writes,
        service_peak=service_peak,
        loadgen_peak=loadgen_peak,
    )
    body = report(args, weights, steps, held_rate, shed, recovery, facts)
    described = (
        f"{described}: "
        + ", ".join(f"{n:,} {name}" for name, n in sizes.items())
        + f" (a copy of {source} made for the run in {copy_s:.0f} s and dropped after it)"
    )
    title = "Mixed load over HTTP" + (": the highest rate that holds" if args.find_max else "")
    record(
        f"{title} ({args.scale})", body, module="bench.load", data_size=described, enabled=not args.no_record
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
