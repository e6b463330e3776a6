"""Redraw responsibility grids: gridsvc's ``redraw_community`` beside PySAL spopt, same communities, one run.

    python -m bench.redraw --database gridsvc_bench --sample 60 --time-limit 5 --maxp-annealing 1
    python -m bench.redraw --scale city --sample 300     # loads the demo city into a scratch database
    python -m bench.redraw --scale small --sample 3 --maxp-construction 5 --maxp-annealing 1   # seconds

Per community (the active plan's unit grids, turned into the city's metric CRS the way
``gridsvc.services.planning`` does: densified in lon/lat first) the households of each unit grid are the
sum of ``residential_building.households`` whose point lies in it (a building on a shared edge counts
once, for the smallest code: gridsvc's tie rule). Only communities that get at least two grids by
``gis.redraw.group_count`` take part; they are drawn at random (``--seed``) from the active plan's.
Three contenders get the same units, the same rook adjacency (``gis.redraw.unit_adjacency``; the libpysal
``W`` is built from its pairs, shared lengths as weights) and the same household attribute:

- ours: ``gis.redraw.redraw_community`` with ``RedrawParams(households_min=300, households_max=500)``
  (workload = households; no old nets, which spopt could not use);
- ``spopt.region.RegionKMeansHeuristic`` on households with ``k = group_count(units, params)``;
- ``spopt.region.MaxPHeuristic`` with ``threshold = households_min`` (300) on households; it picks its
  own number of grids, which is reported. Its iteration counts are spopt's defaults (99 construction,
  10 annealing) unless ``--maxp-construction`` / ``--maxp-annealing`` say otherwise; the annealing
  takes seconds to minutes per community and only makes the households inside a grid more alike.

A grid never spans two connected pieces of a community (a community may be a MultiPolygon; units may
touch only at a corner). Ours handles pieces itself. spopt is given one piece at a time: its
region k-means never ends when a piece of the ``W`` gets no seed, and max-p would link pieces with
made-up joins (its ``policy="single"``). Region k-means gets ``group_count`` of the piece (they add up to
the community's); a piece that gets one grid, or that holds fewer households than max-p's threshold
(max-p refuses it: "No feasible components"), is one grid without calling spopt. The ``W``s are built
before timing; ours' time includes computing its own adjacency. Seeds are fixed (``--seed``: region
k-means' ``seed``, ``numpy.random.seed`` before each max-p solve) and every timed round must give the
warm-up's labels again (exit 1 otherwise).

A contender that raises on a community, or takes longer than ``--time-limit`` seconds on it, has not
solved it: the failure is reported and its time counts up to the failure or the limit (so a total with
failures is a lower bound). Before timing, every plan a contender returned must cover every unit (one
label per unit, none missing); the benchmark exits non-zero otherwise. Quality is
``gis.redraw.plan_quality`` of each plan, with the same parameters: max/min and cv of grid households,
Polsby–Popper per grid, contiguity (a grid whose union is not one Polygon) and grids without
households. Each anchor is compared with ours on the communities the anchor solved.

Without ``--database`` it runs in the scratch database of ``bench.locate`` (``gridsvc_bench_locate``),
loading the demo city at ``--scale`` when it does not hold it. With ``--database NAME`` it reads that
database on the configured server in read-only transactions and never writes to it. ``--json PATH``
writes every figure, per contender and per community.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pyproj
import shapely
from libpysal.weights import W  # type: ignore[import-untyped]
from spopt.region import MaxPHeuristic, RegionKMeansHeuristic  # type: ignore[import-untyped]
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.harness import Contender, DisagreementError, Result, compare, machine, peak_rss_mib, record, table
from bench.locate import SCRATCH_DB, demo_database
from gis.redraw import (
    CommunityUnits,
    RedrawParams,
    group_count,
    plan_quality,
    redraw_community,
    unit_adjacency,
)
from gridsvc.services.database import database_url, masked
from gridsvc.services.planning import LONLAT_DENSIFY_DEG
from gridsvc.settings import get_settings

IntArray = npt.NDArray[np.int64]
Labels = IntArray | None  # None: the contender failed on the community

DEFAULT_SAMPLE = 300
GOAL_RATIO = 1.3
OURS, RKM, MAXP = (
    "gridsvc redraw_community",
    "spopt RegionKMeansHeuristic (k = group_count)",
    "spopt MaxPHeuristic (threshold 300 households)",
)

UNITS_SQL = """
    SELECT code, community_code, ST_AsBinary(geom) AS wkb
    FROM unit_grid WHERE plan_id = :plan AND community_code = ANY(:codes)
    ORDER BY community_code, code
"""
# Households per unit grid: the buildings in or on the chosen communities' unit grids, each given to the
# smallest code of all the plan's unit grids it touches (a building on a shared edge counts once).
HOUSEHOLDS_SQL = """
    WITH near AS (
        SELECT DISTINCT b.id, b.households, b.geom
        FROM unit_grid c JOIN residential_building b ON ST_Intersects(c.geom, b.geom)
        WHERE c.plan_id = :plan AND c.community_code = ANY(:codes)
    )
    SELECT o.code, sum(n.households)::float8
    FROM near n
    JOIN LATERAL (
        SELECT u.code, u.community_code FROM unit_grid u
        WHERE u.plan_id = :plan AND ST_Intersects(u.geom, n.geom)
        ORDER BY u.code LIMIT 1
    ) o ON true
    WHERE o.community_code = ANY(:codes)
    GROUP BY o.code
"""


# --- the communities ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One connected piece of a community: its units (indices into the community), ``W`` and grid count."""

    units: IntArray
    w: Any  # libpysal.weights.W over 0..len(units)-1, or None for a single unit
    k: int
    households: float


@dataclass(frozen=True)
class Community:
    """One community's units in the metric CRS, with everything the contenders need."""

    code: str
    unit_codes: list[str]
    units: CommunityUnits
    k: int
    pieces: list[Piece]

    @property
    def n(self) -> int:
        """Number of unit grids."""
        return len(self.unit_codes)


def _pieces(n: int, i: IntArray, j: IntArray) -> IntArray:
    """Connected piece of each unit under the adjacency pairs, numbered from 0 in order of first unit."""
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = [root(x) for x in range(n)]
    numbering: dict[int, int] = {}
    return np.asarray([numbering.setdefault(r, len(numbering)) for r in roots], dtype=np.int64)


def piece_weights(units: IntArray, i: IntArray, j: IntArray, length: npt.NDArray[np.float64]) -> Any:
    """The libpysal ``W`` of one piece from ``unit_adjacency``'s pairs (ids 0..m-1, shared lengths)."""
    local = {int(u): r for r, u in enumerate(units.tolist())}
    neighbours: dict[int, list[int]] = {r: [] for r in range(len(units))}
    weights: dict[int, list[float]] = {r: [] for r in range(len(units))}
    for a, b, s in zip(i.tolist(), j.tolist(), length.tolist(), strict=True):
        if a in local and b in local:
            la, lb = local[a], local[b]
            neighbours[la].append(lb)
            weights[la].append(s)
            neighbours[lb].append(la)
            weights[lb].append(s)
    return W(neighbours, weights, silence_warnings=True)


def community(
    code: str, unit_codes: list[str], geoms: npt.NDArray[np.object_], households: Any, params: RedrawParams
) -> Community:
    """Units, adjacency, pieces and their ``W`` and grid counts of one community."""
    households = np.asarray(households, dtype=np.float64)
    units = CommunityUnits(geoms=geoms, loads={"households": households, "area_m2": shapely.area(geoms)})
    i, j, length = unit_adjacency(geoms)
    piece = _pieces(len(geoms), i, j)
    pieces: list[Piece] = []
    for p in range(int(piece.max()) + 1):
        members = np.flatnonzero(piece == p).astype(np.int64)
        sub = CommunityUnits(
            geoms=geoms[members],
            loads={"households": households[members], "area_m2": shapely.area(geoms[members])},
        )
        pieces.append(
            Piece(
                units=members,
                w=piece_weights(members, i, j, length) if len(members) > 1 else None,
                k=group_count(sub, params),
                households=float(households[members].sum()),
            )
        )
    return Community(code, unit_codes, units, group_count(units, params), pieces)


def _metric(crs: str) -> Callable[[npt.NDArray[np.object_]], npt.NDArray[np.object_]]:
    """EPSG:4490 lon/lat to ``crs``, densified first as ``gridsvc.services.planning`` does."""
    transformer = pyproj.Transformer.from_crs("EPSG:4490", crs, always_xy=True)

    def apply(geoms: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
        dense = shapely.segmentize(geoms, LONLAT_DENSIFY_DEG)
        out = shapely.transform(dense, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
        # Unit grids are stored as MultiPolygons of one part: hand redraw the Polygon, as planning does.
        single = shapely.get_num_geometries(out) == 1
        out[single] = shapely.get_geometry(out[single], 0)
        return np.asarray(out, dtype=object)

    return apply


@dataclass
class Sample:
    """The sampled communities and how they were chosen."""

    communities: list[Community]
    looked_at: int = 0
    single_grid: int = 0
    invalid: list[str] = field(default_factory=list)
    with_units: int = 0


def load_sample(
    engine: Engine, plan_id: int, metric_crs: str, params: RedrawParams, *, sample: int, seed: int
) -> Sample:
    """``sample`` communities with at least two grids, in a random order fixed by ``seed``."""
    to_metric = _metric(metric_crs)
    with engine.connect() as conn:
        codes = [
            str(c)
            for c in conn.execute(
                text("SELECT DISTINCT community_code FROM unit_grid WHERE plan_id = :plan ORDER BY 1"),
                {"plan": plan_id},
            ).scalars()
        ]
    order = [codes[i] for i in np.random.default_rng(seed).permutation(len(codes))]
    out = Sample(communities=[], with_units=len(codes))
    start = 0
    while len(out.communities) < sample and start < len(order):
        # Most communities get two grids or more: read a little more than still needed.
        chunk = order[start : start + max(32, 2 * (sample - len(out.communities)))]
        start += len(chunk)
        with engine.connect() as conn:
            rows = conn.execute(text(UNITS_SQL), {"plan": plan_id, "codes": chunk}).all()
            homes: dict[str, float] = {
                str(code): float(total)
                for code, total in conn.execute(text(HOUSEHOLDS_SQL), {"plan": plan_id, "codes": chunk})
            }
        by_code: dict[str, list[Any]] = {}
        for row in rows:
            by_code.setdefault(str(row.community_code), []).append(row)
        for code in chunk:
            if len(out.communities) == sample:
                break
            out.looked_at += 1
            members = by_code[code]
            geoms = to_metric(shapely.from_wkb([bytes(r.wkb) for r in members]))
            if not bool(shapely.is_valid(geoms).all()):
                out.invalid.append(code)
                continue
            unit_codes = [str(r.code) for r in members]
            households = [homes.get(c, 0.0) for c in unit_codes]
            item = community(code, unit_codes, geoms, households, params)
            if item.k < 2:
                out.single_grid += 1
                continue
            out.communities.append(item)
    return out


# --- the contenders ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Solved:
    """A contender's labels for one community (``0..k-1`` per unit), its grid count, and pieces it skipped."""

    labels: IntArray
    k: int
    trivial_pieces: int = 0


Solver = Callable[[Community, RedrawParams, int], Solved]


def solve_ours(c: Community, params: RedrawParams, seed: int) -> Solved:
    """gridsvc: the whole community at once (it finds its pieces itself)."""
    labels = redraw_community(c.units, params)
    return Solved(labels, len(np.unique(labels)))


def _by_piece(c: Community, solve: Callable[[Piece], IntArray | None]) -> Solved:
    """Labels over the community from each piece's labels (None from ``solve``: the piece is one grid)."""
    out = np.full(c.n, -1, dtype=np.int64)
    offset, trivial = 0, 0
    for piece in c.pieces:
        local = solve(piece)
        if local is None:
            local = np.zeros(len(piece.units), dtype=np.int64)
            trivial += 1
        if local.shape != piece.units.shape:
            raise ValueError(f"{len(local)} labels for a piece of {len(piece.units)} units")
        _, dense = np.unique(local, return_inverse=True)
        out[piece.units] = dense.reshape(-1) + offset
        offset += int(dense.max()) + 1
    return Solved(out, offset, trivial)


def solve_region_kmeans(c: Community, params: RedrawParams, seed: int) -> Solved:
    """spopt region k-means on households, piece by piece, ``k`` = the piece's ``group_count``."""
    households = np.asarray(c.units.loads["households"], dtype=np.float64)

    def solve(piece: Piece) -> IntArray | None:
        if piece.k <= 1 or piece.w is None:
            return None
        model = RegionKMeansHeuristic(households[piece.units].reshape(-1, 1), piece.k, piece.w, seed=seed)
        model.solve()
        return np.asarray(model.labels_, dtype=np.int64)

    return _by_piece(c, solve)


@dataclass(frozen=True)
class MaxPSettings:
    """Max-p's iteration counts; the defaults are ``MaxPHeuristic``'s own."""

    construction: int = 99
    annealing: int = 10


def solve_maxp(
    c: Community, params: RedrawParams, seed: int, settings: MaxPSettings = MaxPSettings()
) -> Solved:
    """spopt max-p on households with threshold ``households_min``, piece by piece."""
    households = np.asarray(c.units.loads["households"], dtype=np.float64)
    geoms = np.asarray(c.units.geoms, dtype=object)

    def solve(piece: Piece) -> IntArray | None:
        if piece.w is None or piece.households < params.households_min:
            return None
        frame = gpd.GeoDataFrame({"households": households[piece.units]}, geometry=list(geoms[piece.units]))
        np.random.seed(seed)  # max-p shuffles and anneals with numpy's global generator
        model = MaxPHeuristic(
            frame,
            piece.w,
            ["households"],
            "households",
            params.households_min,
            max_iterations_construction=settings.construction,
            max_iterations_sa=settings.annealing,
        )
        model.solve()
        return np.asarray(model.labels_, dtype=np.int64)

    return _by_piece(c, solve)


class TimeLimitError(BaseException):
    """A contender took longer than the time limit on one community.

    A BaseException, so that no ``except Exception`` inside a contender can swallow it and run on.
    """


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `TimeLimitError` in the block once ``seconds`` of wall time have passed (main thread only)."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeLimitError(f"over the limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Runner:
    """Runs one solver over every community: one call is one round; keeps per-community times and answers."""

    def __init__(
        self,
        name: str,
        solve: Solver,
        communities: Sequence[Community],
        params: RedrawParams,
        seed: int,
        limit_s: float,
    ) -> None:
        self.name = name
        self.limit_s = limit_s
        self.solve = solve
        self.communities = communities
        self.params = params
        self.seed = seed
        self.rounds: list[list[float]] = []
        self.first: list[Solved | None] | None = None
        self.errors: dict[str, str] = {}
        self.warnings: Counter[str] = Counter()
        self.unrepeatable: set[str] = set()
        self.round_failures: list[int] = []

    def __call__(self) -> list[Solved | None]:
        seconds: list[float] = []
        answers: list[Solved | None] = []
        errors: dict[str, str] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for c in self.communities:
                started = time.perf_counter()
                try:
                    with time_limit(self.limit_s):
                        answer: Solved | None = self.solve(c, self.params, self.seed)
                except (Exception, TimeLimitError) as exc:  # a failure on a community is a result
                    answer = None
                    errors[c.code] = f"{type(exc).__name__}: {exc}"
                seconds.append(time.perf_counter() - started)
                answers.append(answer)
        print(
            f"  {'warm-up' if self.first is None else f'round {len(self.rounds) + 1}'}: {self.name} "
            f"{sum(seconds):.1f} s",
            file=sys.stderr,
            flush=True,
        )
        if self.first is None:
            self.first = answers
            self.errors = errors
            self.warnings.update(f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught)
        else:
            self.rounds.append(seconds)
            self.round_failures.append(len(errors))
            for c, a, b in zip(self.communities, self.first, answers, strict=True):
                # A community over the time limit in one round and not in another is the clock, not chance.
                if a is not None and b is not None and not np.array_equal(a.labels, b.labels):
                    self.unrepeatable.add(c.code)
        return answers

    def per_community_seconds(self) -> list[float]:
        """Median over the timed rounds of each community's time."""
        return [statistics.median(times) for times in zip(*self.rounds, strict=True)]


def coverage_problems(
    name: str, communities: Sequence[Community], answers: Sequence[Solved | None]
) -> list[str]:
    """Communities where a contender's labels do not give every unit one grid ``0..k-1``."""
    problems: list[str] = []
    for c, answer in zip(communities, answers, strict=True):
        if answer is None:
            continue
        labels = np.asarray(answer.labels)
        if labels.shape != (c.n,):
            problems.append(f"{name}, community {c.code}: {labels.size} labels for {c.n} units")
        elif (labels < 0).any():
            problems.append(f"{name}, community {c.code}: {(labels < 0).sum()} units without a grid")
        elif not np.array_equal(np.unique(labels), np.arange(answer.k)):
            problems.append(f"{name}, community {c.code}: labels are not 0..{answer.k - 1}")
    return problems


# --- quality -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quality:
    """``plan_quality`` of one contender's plan for one community, boiled down."""

    k: int
    ratio: float
    cv: float
    pp_mean: float
    pp_min: float
    non_contiguous: int
    empty: int
    outside_bounds: int


def quality(c: Community, answer: Solved, params: RedrawParams) -> Quality:
    """Balance, compactness and contiguity of one plan, by ``gis.redraw.plan_quality``."""
    q = plan_quality(c.units, answer.labels, params)
    pp = [g["polsby_popper"] for g in q["groups"]]
    return Quality(
        k=q["n_groups"],
        ratio=q["max_min_ratio"],
        cv=q["cv"],
        pp_mean=float(np.mean(pp)),
        pp_min=float(np.min(pp)),
        non_contiguous=sum(1 for g in q["groups"] if not g["contiguous"]) + (0 if q["nested"] else 1),
        empty=sum(1 for g in q["groups"] if g["households"] == 0),
        outside_bounds=q["outside_bounds"],
    )


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by nearest rank (works with infinities, unlike interpolation)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def median(values: Sequence[float]) -> float:
    """Median that tolerates infinities and NaN (NaN values are left out)."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def summary(
    runner: Runner, result: Result, qualities: Sequence[Quality | None], compared: Sequence[bool]
) -> dict[str, Any]:
    """One contender's figures: times over every community, quality over the ``compared`` ones."""
    kept = [q for q, use in zip(qualities, compared, strict=True) if use and q is not None]
    ratios = [q.ratio for q in kept]
    per_community = runner.per_community_seconds()
    trivial = sum(a.trivial_pieces for a in (runner.first or []) if a is not None)
    return {
        "communities": len(qualities),
        "solved": sum(q is not None for q in qualities),
        "compared": len(kept),
        "grids": sum(q.k for q in kept),
        "total_seconds_median": result.median,
        "total_seconds_rounds": result.seconds,
        "per_community_seconds_median": median(per_community),
        "per_community_seconds_p90": nearest_rank(per_community, 0.9),
        "per_community_seconds_max": max(per_community, default=math.nan),
        "ratio_median": median(ratios),
        "ratio_p90": nearest_rank(ratios, 0.9),
        "ratio_share_within_goal": sum(r <= GOAL_RATIO for r in ratios) / len(ratios) if ratios else math.nan,
        "cv_median": median([q.cv for q in kept]),
        "polsby_popper_mean_median": median([q.pp_mean for q in kept]),
        "polsby_popper_min_median": median([q.pp_min for q in kept]),
        "non_contiguous_grids": sum(q.non_contiguous for q in kept),
        "communities_with_non_contiguous": sum(q.non_contiguous > 0 for q in kept),
        "grids_without_households": sum(q.empty for q in kept),
        "grids_outside_bounds": sum(q.outside_bounds for q in kept),
        "pieces_given_one_grid_without_solver": trivial,
        "errors": dict(sorted(runner.errors.items())),
        "warnings": dict(runner.warnings.most_common()),
        "unrepeatable": sorted(runner.unrepeatable),
        "failures_in_timed_rounds": runner.round_failures,
    }


def quality_table(
    names: Sequence[str], summaries: Sequence[dict[str, Any]], beside: Sequence[dict[str, Any]]
) -> str:
    """Markdown: balance, compactness and contiguity; each anchor followed by ours on the same communities."""
    lines = [
        "| contender | communities | grids | max/min median | max/min p90 | share ≤ 1.3 | cv median "
        "| PP mean (median) | PP min (median) | non-contiguous grids | grids with 0 households "
        "| grids outside 300–500 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [(names[0], summaries[0])]
    for name, s, ours in zip(names[1:], summaries[1:], beside, strict=True):
        rows += [(name, s), (f"… {names[0]} on the same {ours['compared']}", ours)]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['compared']} | {s['grids']:,} | {s['ratio_median']:.3f} "
            f"| {s['ratio_p90']:.3f} | {100 * s['ratio_share_within_goal']:.1f} % | {s['cv_median']:.3f} "
            f"| {s['polsby_popper_mean_median']:.3f} | {s['polsby_popper_min_median']:.3f} "
            f"| {s['non_contiguous_grids']} ({s['communities_with_non_contiguous']} communities) "
            f"| {s['grids_without_households']} | {s['grids_outside_bounds']:,} |"
        )
    return "\n".join(lines)


def time_table(names: Sequence[str], summaries: Sequence[dict[str, Any]]) -> str:
    """Markdown: per-community time (median over the rounds) per contender."""
    ours = summaries[0]["per_community_seconds_median"]
    lines = [
        "| contender | solved | per community median (ms) | p90 (ms) | max (ms) | median ratio to ours |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in zip(names, summaries, strict=True):
        lines.append(
            f"| {name} | {s['solved']}/{s['communities']} | {1000 * s['per_community_seconds_median']:.1f} "
            f"| {1000 * s['per_community_seconds_p90']:.1f} | {1000 * s['per_community_seconds_max']:.1f} "
            f"| {s['per_community_seconds_median'] / ours:.2f}× |"
        )
    return "\n".join(lines)


def goals(summaries: Sequence[dict[str, Any]], beside: Sequence[dict[str, Any]]) -> str:
    """The issue's goals, met or not; each anchor against ours on the communities the anchor solved."""
    ours, anchors = summaries[0], summaries[1:]

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**NOT met**"

    pairs = list(zip(beside, anchors, strict=True))
    balance = all(o["ratio_median"] < a["ratio_median"] and o["cv_median"] < a["cv_median"] for o, a in pairs)
    compact = all(
        o["polsby_popper_mean_median"] > a["polsby_popper_mean_median"]
        and o["polsby_popper_min_median"] > a["polsby_popper_min_median"]
        for o, a in pairs
    )
    fastest = min(a["total_seconds_median"] for a in anchors)
    return "\n".join(
        [
            f"- max/min ≤ {GOAL_RATIO} per community: ours in {100 * ours['ratio_share_within_goal']:.1f} % "
            f"of communities (p90 {ours['ratio_p90']:.3f}); whether the units allow it elsewhere is not "
            "computed here.",
            "- better balance than spopt (lower median max/min and cv than each, on the communities it "
            f"solved): {verdict(balance)}.",
            "- more compact than spopt (higher median of per-community mean and minimum Polsby–Popper than "
            f"each, on the communities it solved): {verdict(compact)}.",
            f"- a fraction of spopt's time: {verdict(ours['total_seconds_median'] < fastest)} (ours "
            f"{ours['total_seconds_median']:.2f} s, the faster anchor {fastest:.2f} s: "
            f"{ours['total_seconds_median'] / fastest:.2f}×; an anchor's time is a lower bound when it hit "
            "the time limit).",
        ]
    )


def _finite(value: Any) -> Any:
    """JSON without NaN or infinity: those become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- main --------------------------------------------------------------------------------------------


def read_only_engine(url: str) -> Engine:
    """An engine whose every transaction is read only: the benchmark never writes to the city."""
    return create_engine(url, connect_args={"options": "-c default_transaction_read_only=on -c jit=off"})


def main(argv: list[str]) -> int:
    """Run the benchmark; exit 1 when a contender's labels miss units or a round is not repeatable."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=["small", "city"], default="small", help="demo city to load")
    parser.add_argument("--demo-seed", type=int, default=2023, help="seed of the demo city")
    parser.add_argument(
        "--database",
        default=None,
        help="read this existing database on the configured server instead (read only; nothing is loaded)",
    )
    parser.add_argument(
        "--sample", type=int, default=DEFAULT_SAMPLE, help="communities with two grids or more to redraw"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample and of spopt's random draws")
    parser.add_argument("--rounds", type=int, default=5, help="timed alternating rounds after the warm-up")
    parser.add_argument(
        "--maxp-construction",
        type=int,
        default=MaxPSettings.construction,
        help="max-p's construction iterations (spopt's default 99)",
    )
    parser.add_argument(
        "--maxp-annealing",
        type=int,
        default=MaxPSettings.annealing,
        help="max-p's simulated-annealing iterations per candidate (spopt's default 10; each one takes "
        "seconds on a community of a hundred units)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=60.0,
        help="seconds one contender may spend on one community; past it the community counts as unsolved",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
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
    if min(args.sample, args.rounds, args.maxp_construction, args.maxp_annealing) < 1:
        parser.error("--sample, --rounds and max-p's iterations must be at least 1")
    if not args.time_limit > 0:
        parser.error("--time-limit must be positive")

    settings = get_settings()
    params = RedrawParams(households_min=300, households_max=500)
    maxp_settings = MaxPSettings(construction=args.maxp_construction, annealing=args.maxp_annealing)
    base = database_url(settings)
    if args.database:
        url = make_url(base).set(database=args.database).render_as_string(hide_password=False)
        source = f"database {args.database} (read only)"
    else:
        if settings.database_url and not args.allow_external:
            parser.error(
                f"GRIDSVC_DATABASE_URL is set: this benchmark creates (and may drop and re-create) the "
                f"database {SCRATCH_DB} on that server; pass --allow-external, or --database to read one"
            )
        db = demo_database(base, scale=args.scale, seed=args.demo_seed, reload=args.reload)
        url = db.url
        how = "reused" if db.loaded_seconds is None else f"loaded in {db.loaded_seconds:.0f} s"
        source = f"demo city scale {args.scale}, seed {args.demo_seed} (database {SCRATCH_DB}, {how})"
    engine = read_only_engine(url)
    try:
        with engine.connect() as conn:
            plan_id = conn.execute(
                text("SELECT id FROM grid_plan WHERE status = 'active'")
            ).scalar_one_or_none()
        if plan_id is None:
            print(f"no active plan in {masked(url)}: nothing to redraw", file=sys.stderr)
            return 1
        started = time.perf_counter()
        chosen = load_sample(
            engine, int(plan_id), settings.metric_crs, params, sample=args.sample, seed=args.seed
        )
        read_s = time.perf_counter() - started
    finally:
        engine.dispose()
    communities = chosen.communities
    if not communities:
        print("no community gets two grids or more: nothing to compare", file=sys.stderr)
        return 1

    names = [OURS, RKM, MAXP]
    solvers: list[Solver] = [
        solve_ours,
        solve_region_kmeans,
        lambda c, p, seed: solve_maxp(c, p, seed, maxp_settings),
    ]
    runners = [
        Runner(name, solve, communities, params, args.seed, args.time_limit)
        for name, solve in zip(names, solvers, strict=True)
    ]

    def agree(answers: dict[str, Any]) -> None:
        problems: list[str] = []
        for name in names:
            problems += coverage_problems(name, communities, answers[name])
        if problems:
            raise DisagreementError("\n  ".join(["labels that do not cover every unit:", *problems[:20]]))

    print(
        f"read {len(communities)} communities in {read_s:.1f} s; redrawing them with 3 contenders, "
        f"a warm-up and {args.rounds} alternating rounds ...",
        file=sys.stderr,
        flush=True,
    )
    try:
        results = compare(
            [Contender(n, r) for n, r in zip(names, runners, strict=True)], agree, rounds=args.rounds
        )
    except DisagreementError as exc:
        print(f"DISAGREEMENT: {exc}", file=sys.stderr)
        return 1
    failed = False
    for runner in runners:
        if runner.unrepeatable:
            codes = sorted(runner.unrepeatable)
            print(
                f"NOT REPEATABLE: {runner.name} changed its labels between rounds in {codes[:10]}",
                file=sys.stderr,
            )
            failed = True
    if failed:
        return 1

    answers = [runner.first or [] for runner in runners]
    qualities = [
        [quality(c, a, params) if a is not None else None for c, a in zip(communities, these, strict=True)]
        for these in answers
    ]
    solved = [[q is not None for q in these] for these in qualities]
    summaries = [
        summary(runner, result, q, mask)
        for runner, result, q, mask in zip(runners, results, qualities, solved, strict=True)
    ]
    # Each anchor is judged against ours on the communities the anchor solved: the same input for both.
    beside = [
        summary(runners[0], results[0], qualities[0], [a and o for a, o in zip(mask, solved[0], strict=True)])
        for mask in solved[1:]
    ]
    per_community: list[dict[str, Any]] = []
    for i, c in enumerate(communities):
        row: dict[str, Any] = {
            "code": c.code,
            "units": c.n,
            "pieces": len(c.pieces),
            "group_count": c.k,
            "households": float(np.sum(c.units.loads["households"])),
        }
        for name, runner, q in zip(names, runners, qualities, strict=True):
            mine = q[i]
            row[name] = {
                "seconds": runner.per_community_seconds()[i],
                **(asdict(mine) if mine is not None else {"failed": runner.errors.get(c.code, "?")}),
            }
        per_community.append(row)

    body = describe(args, chosen, read_s, maxp_settings, names, results, summaries, beside, qualities)
    units = sum(c.n for c in communities)
    record(
        f"Redraw {len(communities)} communities: gridsvc vs spopt region k-means and max-p",
        body,
        module="bench.redraw",
        data_size=f"{len(communities)} communities, {units:,} unit grids; {source}",
        enabled=not args.no_record,
    )
    if args.json:
        document = {
            "command": " ".join(["python -m bench.redraw", *sys.argv[1:]]),
            "machine": machine(),
            "data": source,
            "peak_rss_mib": peak_rss_mib(),
            "seed": args.seed,
            "rounds": args.rounds,
            "params": {"households_min": params.households_min, "households_max": params.households_max},
            "maxp": asdict(maxp_settings),
            "contenders": dict(zip(names, summaries, strict=True)),
            "communities": per_community,
        }
        args.json.write_text(json.dumps(_finite(document), indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


def describe(
    args: argparse.Namespace,
    chosen: Sample,
    read_s: float,
    maxp_settings: MaxPSettings,
    names: Sequence[str],
    results: Sequence[Result],
    summaries: Sequence[dict[str, Any]],
    beside: Sequence[dict[str, Any]],
    qualities: Sequence[Sequence[Quality | None]],
) -> str:
    """The Markdown section: what ran, the tables, what went wrong, the goals."""
    communities = chosen.communities
    units = sum(c.n for c in communities)
    homes = sum(float(np.sum(c.units.loads["households"])) for c in communities)
    multi = sum(len(c.pieces) > 1 for c in communities)
    maxp_k = [float(q.k) for q in qualities[2] if q is not None]
    defaults = maxp_settings == MaxPSettings()
    notes: list[str] = []
    for name, s in zip(names, summaries, strict=True):
        if s["errors"]:
            kinds = Counter(message.split(":")[0] for message in s["errors"].values())
            first_code, first = next(iter(s["errors"].items()))
            notes.append(
                f"{name} failed on {len(s['errors'])} of {len(communities)} communities "
                f"({', '.join(f'{n}× {k}' for k, n in kinds.most_common())}; "
                f"first: {first_code}: {first[:200]})"
            )
        if s["warnings"]:
            listed = "; ".join(f"{count}× {message}" for message, count in list(s["warnings"].items())[:3])
            notes.append(f"{name} warned {sum(s['warnings'].values())} times in the warm-up ({listed})")
    return (
        f"{len(communities)} communities (sample seed {args.seed}) with two grids or more by `group_count`: "
        f"{units:,} unit grids, {homes:,.0f} households. {chosen.looked_at} communities looked at, "
        f"{chosen.single_grid} of them get one grid"
        + (f", {len(chosen.invalid)} skipped for invalid geometry" if chosen.invalid else "")
        + f"; {multi} of the sample have more than one connected piece (spopt was given each piece apart). "
        f"Households 300–500 per grid. Same units, same rook adjacency (`unit_adjacency`), same household "
        f"attribute for all three; spopt's seeds fixed ({args.seed}). Max-p: "
        f"{maxp_settings.construction} construction and {maxp_settings.annealing} annealing iterations"
        + (" (spopt's defaults)" if defaults else " (**not** spopt's defaults of 99 and 10)")
        + f". Each contender may spend {args.time_limit:g} s on a community; past that the community counts "
        "as unsolved, and its time as the limit (totals are then lower bounds). Every contender's labels "
        "covered every unit, and every timed round repeated the warm-up's labels where both had any. "
        f"Reading and preparing the sample (not timed): {read_s:.1f} s.\n\n"
        f"Whole sample, a warm-up and {args.rounds} alternating rounds (a failure's time counts up to the "
        f"failure):\n\n{table(results)}\n\n"
        f"Per community (median over the rounds):\n\n{time_table(names, summaries)}\n\n"
        f"Quality (`plan_quality`) of each contender's plans over the communities it solved, each anchor "
        f"followed by ours on the same communities; medians are "
        f"over communities:\n\n{quality_table(names, summaries, beside)}\n\n"
        f"Grids in all: {sum(c.k for c in communities):,} by `group_count` (ours and region k-means' k); "
        f"max-p chose {sum(maxp_k):,.0f} (median per community {median(maxp_k):.0f}, group_count's "
        f"{median([float(c.k) for c in communities]):.0f}). Pieces made one grid without calling spopt (one "
        f"grid by group_count, or fewer households than max-p's threshold): region k-means "
        f"{summaries[1]['pieces_given_one_grid_without_solver']}, max-p "
        f"{summaries[2]['pieces_given_one_grid_without_solver']}.\n\n"
        + ("".join(f"- {n}\n" for n in notes) + "\n" if notes else "")
        + f"Goals (issue):\n\n{goals(summaries, beside)}"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
