"""Responsibility grids from whole unit grids: contiguous, compact and balanced, one community at a time.

A responsibility grid (DOMAIN.md §2) is a union of whole unit grids of one community, worked by one grid
worker. :func:`redraw_community` groups a community's unit grids into grids whose *workload* is balanced,
each grid one connected piece, compact, and following the old nets' lines where that costs little balance.
:func:`plan_quality` reports how good a plan is, and :func:`balance_bound` how balanced any plan could be.
All geometry is in a projected CRS in metres.

Workload
    ``sum(weights[name] * loads[name])`` per unit, over the loads ``households``, ``components``,
    ``cases`` and ``area_m2`` (:func:`workload`).
How many grids
    With ``target_workload`` unset, from households: ``round(H / mid)`` with ``mid`` the middle of
    ``[households_min, households_max]``, moved into ``[ceil(H / max), floor(H / min)]`` when that range
    is not empty, at least 1. With ``target_workload`` set: ``round(W / target)``, at least 1. A unit that
    alone reaches the upper size (``households_max`` households, or ``target_workload``) becomes a grid of
    its own and the rest is counted without it. Each connected piece of the community (a community may be
    a MultiPolygon) is counted on its own, because a grid never spans two pieces (:func:`group_count`).
Objective
    The sum over grids of ``d ** 2 + 100 * max(0, d - band) ** 2`` with ``d = |W_g - m| / m`` (``m`` the
    mean workload of the piece's grids that are not single oversized units) and
    ``band = 0.9 * (max_ratio - 1) / (max_ratio + 1)`` (every grid inside the band keeps max/min under
    ``max_ratio``; the steep second term makes the search give up compactness and net lines before it
    lets a grid out of the band), plus ``compactness_weight * (P_g ** 2 / (4 * pi * A_g) - 1)`` (the inverse
    Polsby–Popper score minus one: 0 for a disc, about 0.27 for a square), plus
    ``net_penalty * L_cross / L_ref``: ``L_cross`` is the length of old-net boundary (between units whose
    ``net_ids`` differ; -1, "in no net", is a net id like any other) that runs *inside* a grid, and
    ``L_ref = sqrt(community area / number of grids)`` is the side of a typical grid. So ``net_penalty``
    is in units of squared relative workload deviation per grid side of old-net line crossed: at 0.1,
    straddling one grid side of old-net boundary costs as much as one grid being 32 % (``sqrt(0.1)``) off
    the mean. Plans are ranked by their max/min workload ratio (over all grids, as :func:`plan_quality`
    reports it) where it exceeds ``max_ratio`` (or the balance bound without contiguity, when higher),
    then by the objective: balance is what a plan is for, and the band only a smooth stand-in for it.
Algorithm
    1. Units are put in reading order (:func:`gis.plancodes.reading_order`: rows from the north, west to
       east), so nothing below depends on the input order; ties are broken by that order, and the random
       numbers below come from fixed seeds, so the same units always give the same plan.
    2. Seeds: per piece, farthest-point seeds on the unit centroids, refined by ten workload-weighted
       Lloyd (k-means) steps; each centre takes the nearest unit. Oversized units are seeds of their own.
    3. Region growing: the grid with the lowest workload grows first, taking the free adjacent unit
       closest to its centroid (distance in ``L_ref``), plus 1 when the unit lies in another old net than
       the seed (when ``net_penalty > 0``). Units no grid can reach (pockets walled in by oversized units)
       join the lightest adjacent grid.
    4. Local improvement: boundary units move to an adjacent grid when that lowers the objective and the
       grid they leave stays connected (a breadth-first search over its units), until no move helps.
       Gains and losses of area, perimeter and crossed net length are tracked per move from the shared
       edge lengths, so a move costs O(degree).
    5. Pair redraws, while a grid lies outside the band: the grid farthest outside it and an adjacent
       grid (the most opposite first: a heavy grid with its lightest neighbour) are merged and cut again
       along one edge of a random spanning tree of their units, the cut that lowers the objective most;
       both parts of a tree are connected, so contiguity holds at every step. Two trees in three keep
       each grid's own tree joined by one edge between them, so their cuts move a connected branch of
       one grid to the other: a path of units (zero-load ones included) ending at a loaded unit, which
       single moves cannot make because each step alone changes nothing or costs compactness. The third
       tree ignores the current line and redraws it freely. Area, perimeter, crossed net length and
       workload of every cut's two parts come from sums over subtrees (a pair of units lies inside a
       subtree when its lowest common ancestor does), so a tree costs O(pairs * log units). Load also
       travels by repeated pairs: the heavy grid's neighbour, made heavy, passes it on. Where no pair
       helps (lumpy loads: each pair can only swap which of its grids is off), chains do: along the
       shortest path of grids from a heavy grid to a light one (two to four hops, the three most
       opposite ends), each hop moves the branch whose load is closest to what the hop before passed, so
       only the ends change; the chain is kept if the objective drops, else undone. A pair or chain that
       could not be improved is not tried again until one of its grids changes. Step 4 runs again after.
    6. Steps 2–5 (without chains) run from three seedings (farthest-point starts from different first
       units). If the best plan still has max/min above the goal (``max_ratio``, or the balance bound
       without contiguity when higher), up to 16 tree plans follow, stopping at the first that reaches
       it: per piece, one grid at a time is cut off a random spanning tree of the units still free, at
       the edge whose part best fits the mean (with the mean left for the others, its compactness and
       the net line on the cut; up to eight trees per grid), then steps 4–5. With lumpy workloads (most
       units without households, a few with hundreds) these find balanced plans growing misses. Last,
       step 5 with chains runs on the best plan with 16 trees per pair. The best plan by the ranking
       above wins; ties to the earlier one.
Minimal change (``keep_current``)
    The current labels are repaired (a grid's disconnected pieces other than its largest, and unlabelled
    units, join the lightest adjacent grid). If every grid is then within the size bounds and the max/min
    workload ratio is at most ``max_ratio``, the current plan is returned as it is. Otherwise steps 4–5
    run from it (and step 5 again with 16 trees per pair while max/min is above ``max_ratio``), with
    ``keep_weight`` added to the objective for every unit taken out of its current grid. The number of
    grids is kept.
Balance bound
    :func:`balance_bound` is a lower bound on max/min for the grid count above, so a plan above
    ``max_ratio`` can be told apart: "the units do not allow it" (bound above ``max_ratio``) or "the
    search did not find it". The heaviest grid holds at least the largest unit and the mean, the
    lightest at most the mean and at most ``(W - S_j) / (k - j)`` (``S_j``: the ``j`` largest units);
    with integer workloads, grid workloads are subset sums (a bitset). Contiguity adds: the loaded units
    of a grid are linked through units without workload, so the loads a unit's grid can have are the
    linked sets holding it, enumerated (while under the mean) for units with few of them, singly and in
    pairs (two heavy units competing for one light neighbour). Oversized units count as grids of their
    own, and pieces with their own grids. Forced grids count like any other: a detached piece without
    workload makes both the ratio and the bound inf.
Labels
    ``0..k-1``. New plans name grids in reading order of their first unit, so the same shapes give the
    same labels whatever the input order. With ``keep_current``, kept grids are numbered in the order of
    their current label values (labels already ``0..k-1`` stay as they are).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from gis.plancodes import reading_order

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Adjacency = tuple[IntArray, IntArray, FloatArray]

LOAD_NAMES = ("households", "components", "cases", "area_m2")
# Moves must gain more than this to count, so float noise cannot make the search cycle.
_EPS = 1e-12
_SEEDINGS = 3
# Deviations beyond the band that keeps max/min <= max_ratio cost this much more (squared).
_BAND_WEIGHT = 100.0
_BAND_MARGIN = 0.9
_LLOYD_STEPS = 10
# Pair redraws: spanning trees tried per pair, attempts per grid, and the gain a redraw must beat.
_SPLIT_TREES = 3
_SPLIT_ATTEMPTS = 20
_SPLIT_EPS = 1e-9
# Chains: hops at most, and paths tried per grid outside the band.
_CHAIN_HOPS = 4
_CHAIN_TARGETS = 3
# Tree plans: how many per community, and trees drawn per grid cut off.
_TREE_PLANS = 16
_TREE_ATTEMPTS = 8
_HARD_TREES = 16
# Balance bound: subset sums up to this total; connected sets per unit; options per unit in pairs.
_SUBSET_SUM_LIMIT = 200_000
_ENUMERATION_LIMIT = 300
_PAIR_OPTIONS = 64


def _default_weights() -> dict[str, float]:
    return {"households": 1.0, "components": 0.0, "cases": 0.0, "area_m2": 0.0}


@dataclass(frozen=True)
class RedrawParams:
    """Parameters of a redraw; see the module docstring for what each one does to the plan."""

    target_workload: float | None = None
    households_min: int = 300
    households_max: int = 500
    weights: Mapping[str, float] = field(default_factory=_default_weights)
    # Squared relative workload deviation traded per typical grid side of old-net line crossed.
    net_penalty: float = 0.1
    keep_current: bool = False
    # Weight of (1 / Polsby-Popper - 1) per grid in the objective.
    compactness_weight: float = 0.05
    # A current plan whose max/min workload ratio is at most this (and sizes in bounds) is kept as is.
    max_ratio: float = 1.3
    # Objective cost of moving one unit out of its current grid (keep_current only).
    keep_weight: float = 0.05
    max_passes: int = 100

    def __post_init__(self) -> None:
        if self.target_workload is not None and not self.target_workload > 0:
            raise ValueError("target_workload must be positive")
        if not 0 < self.households_min <= self.households_max:
            raise ValueError("need 0 < households_min <= households_max")
        for name, weight in self.weights.items():
            if name not in LOAD_NAMES:
                raise ValueError(f"unknown load {name!r}; known: {', '.join(LOAD_NAMES)}")
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"weight of {name!r} must be finite and >= 0")
        if not any(weight > 0 for weight in self.weights.values()):
            raise ValueError("at least one weight must be positive")
        for name in ("net_penalty", "compactness_weight", "keep_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0")
        if not self.max_ratio >= 1:
            raise ValueError("max_ratio must be >= 1")


@dataclass(frozen=True)
class CommunityUnits:
    """The unit grids of one community (metric CRS), their loads, old nets and current grids."""

    geoms: npt.NDArray[np.object_]
    loads: Mapping[str, npt.NDArray[np.float64]]
    net_ids: npt.NDArray[np.int64] | None = None
    current: npt.NDArray[np.int64] | None = None


class GroupStats(TypedDict):
    """Quality of one responsibility grid."""

    label: int
    n_units: int
    workload: float
    households: float
    area_m2: float
    perimeter_m: float
    polsby_popper: float
    contiguous: bool
    forced: bool


class PlanQuality(TypedDict):
    """Quality of a community's plan; ``groups`` is ordered by label."""

    n_groups: int
    groups: list[GroupStats]
    max_min_ratio: float
    ratio_bound: float
    cv: float
    outside_bounds: int
    net_boundary_followed_share: float | None
    all_contiguous: bool
    covers_all: bool
    nested: bool


def unit_adjacency(
    geoms: Sequence[BaseGeometry] | npt.NDArray[np.object_], min_shared_m: float = 0.01
) -> Adjacency:
    """Rook adjacency: pairs of units sharing more than ``min_shared_m`` metres of edge.

    Parameters
    ----------
    geoms : sequence of shapely Polygons
        Unit grids in a metric CRS, forming a coverage (shared edges drawn identically).
    min_shared_m : float
        Shared boundary length above which two units are neighbours; corners alone never are.

    Returns
    -------
    (i, j, length) : int64, int64, float64 arrays
        One row per pair with ``i < j``, sorted by ``(i, j)``; ``length`` is the shared length in metres.
    """
    array = np.asarray(geoms, dtype=object)
    if len(array) < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0, dtype=np.float64)
    tree = shapely.STRtree(array)
    left, right = tree.query(array, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    boundaries = shapely.boundary(array)
    shared = np.asarray(
        shapely.length(shapely.intersection(boundaries[left], boundaries[right])), dtype=np.float64
    )
    keep = shared > min_shared_m
    left, right, shared = left[keep], right[keep], shared[keep]
    order = np.lexsort((right, left))
    return left[order].astype(np.int64), right[order].astype(np.int64), shared[order]


def workload(units: CommunityUnits, params: RedrawParams) -> FloatArray:
    """Workload per unit: the weighted sum of its loads.

    Parameters
    ----------
    units : CommunityUnits
    params : RedrawParams

    Returns
    -------
    ndarray of float64
        One value per unit, in input order.
    """
    n = len(units.geoms)
    total = np.zeros(n, dtype=np.float64)
    # Sorted names: the float sum is the same whatever order the mapping was built in.
    for name in sorted(params.weights):
        weight = params.weights[name]
        if weight == 0:
            continue
        total += weight * _load(units, name)
    return total


def group_count(units: CommunityUnits, params: RedrawParams) -> int:
    """How many responsibility grids the community gets (see "How many grids" in the module docstring).

    Parameters
    ----------
    units : CommunityUnits
    params : RedrawParams

    Returns
    -------
    int
        0 for a community without units, otherwise at least the number of its connected pieces.
    """
    problem = _Problem.build(units, params)
    return sum(len(piece.big) + piece.free_groups for piece in problem.pieces)


def redraw_community(units: CommunityUnits, params: RedrawParams) -> IntArray:
    """Group a community's unit grids into responsibility grids.

    Parameters
    ----------
    units : CommunityUnits
        Unit grids of one community in a metric CRS, with their loads (and old nets, current grids).
    params : RedrawParams

    Returns
    -------
    ndarray of int64
        A label ``0..k-1`` per unit, in input order; every label's units form one connected grid.
    """
    problem = _Problem.build(units, params)
    if problem.n == 0:
        return np.zeros(0, dtype=np.int64)
    if params.keep_current and units.current is not None:
        canonical = _keep_current(problem, np.asarray(units.current, dtype=np.int64)[problem.order])
    else:
        best = _search(problem)
        canonical = _first_seen_labels(np.asarray(best.label, dtype=np.int64))
    labels = np.empty(problem.n, dtype=np.int64)
    labels[problem.order] = canonical
    return labels


def balance_bound(units: CommunityUnits, params: RedrawParams) -> float:
    """A lower bound on the max/min workload ratio of any plan with :func:`group_count` grids.

    Parameters
    ----------
    units : CommunityUnits
    params : RedrawParams

    Returns
    -------
    float
        No plan of whole, contiguous grids of this community, with oversized units alone and each piece
        holding the grids :func:`group_count` gives it, has a max/min workload ratio below this. inf when
        some grid must have no workload while another has some (a detached piece without workload); nan
        for a community without units. See "Balance bound" in the module docstring.
    """
    problem = _Problem.build(units, params)
    return _balance_bound(problem)


def _balance_bound(problem: _Problem, contiguity: bool = True) -> float:
    """:func:`balance_bound` of a built problem (without the enumeration of connected sets if asked)."""
    pieces = [p for p in problem.pieces if p.free_groups > 0]
    his: list[float] = []
    los: list[float] = []
    for piece in problem.pieces:
        for u in piece.big:
            his.append(problem.work[u])
            los.append(problem.work[u])
    free_units = [[u for u in p.units if not problem.big[u]] for p in pieces]
    for piece, members in zip(pieces, free_units, strict=True):
        hi, lo = _piece_range([problem.work[u] for u in members], piece.free_groups)
        his.append(hi)
        los.append(lo)
    if not his:
        return math.nan
    bound = _ratio(max(his), min(los))
    if not contiguity:
        return bound
    # Contiguity: the grid holding a unit is a connected set; a few units have few ways to reach the mean.
    offset = len(his) - len(pieces)
    for n, (piece, members) in enumerate(zip(pieces, free_units, strict=True)):
        if piece.free_groups < 2:
            continue
        others_hi = max((h for m, h in enumerate(his) if m != offset + n), default=0.0)
        others_lo = min((x for m, x in enumerate(los) if m != offset + n), default=math.inf)
        bound = max(bound, _contiguity_bound(problem, members, piece.free_groups, others_hi, others_lo))
    return bound


def _ratio(high: float, low: float) -> float:
    """max/min as :func:`plan_quality` counts it: inf when only the minimum is 0, 1 when both are."""
    if low > 0:
        return high / low
    return 1.0 if high <= 0 else math.inf


def _piece_range(loads: list[float], k: int) -> tuple[float, float]:
    """(a lower bound on the heaviest, an upper bound on the lightest) of ``k`` grids of these unit loads.

    Contiguity ignored. The heaviest grid holds the largest unit and at least the mean; the lightest holds
    at most the mean, and at most ``(W - S_j) / (k - j)`` for every ``j < k`` (``S_j`` the ``j`` largest
    units: they sit in at most ``j`` grids, the other grids share the rest). Every grid's load is a sum of
    unit loads: with integer loads, the heaviest is at least the smallest such sum >= the mean, and the
    lightest at most the largest such sum <= the mean (a subset-sum bitset).
    """
    ordered = sorted(loads, reverse=True)
    total = sum(ordered)
    mean = total / k
    high = max(ordered[0], mean) if ordered else 0.0
    low = mean
    taken = 0.0
    for j in range(1, k):
        taken += ordered[j - 1] if j - 1 < len(ordered) else 0.0
        low = min(low, max(total - taken, 0.0) / (k - j))
    if total <= _SUBSET_SUM_LIMIT and all(float(x).is_integer() for x in ordered):
        sums = 1
        for x in ordered:
            if x > 0:
                sums |= sums << int(x)
        below = sums & ((1 << (math.floor(mean) + 1)) - 1)
        low = min(low, float(below.bit_length() - 1))
        above = sums >> math.ceil(mean)
        if above:
            high = max(high, float(math.ceil(mean) + (above & -above).bit_length() - 1))
    return high, low


def _contiguity_bound(
    problem: _Problem, members: list[int], k: int, others_hi: float, others_lo: float
) -> float:
    """A lower bound on max/min from the connected sets that can hold one unit, or two units, of a piece.

    A grid's units with workload (its "loaded" units) are linked: any two are joined through the grid, so
    each is reachable from another through units without workload. Per loaded unit, the loaded sets
    linked that way that contain it are enumerated while their load stays under the mean ``m`` (a set
    that reaches ``m`` is recorded and not extended: more units only add load), up to
    ``_ENUMERATION_LIMIT`` sets; a unit with more sets than that is left out. The grid holding the unit
    has one of these loads ``a`` exactly (below ``m``) or at least one of them (from ``m`` up), and the
    other ``k - 1`` grids share the rest, so max/min >= the best over ``a`` of
    ``max(a, y) / min(a, y)``, ``y = (W - a) / (k - 1)`` (with the other pieces' and oversized grids'
    bounds). For two units whose sets meet, either one grid holds both, or their grids hold disjoint
    sets: the best over pairs of disjoint sets, with ``(W - a - b) / (k - 2)`` for the others, catches
    two heavy units competing for one light neighbour.
    """
    work = problem.work
    loaded = [u for u in members if work[u] > 0]
    total = sum(work[u] for u in loaded)
    if not loaded or total <= 0:
        return 1.0
    mean = total / k
    inside = set(members)
    # Loaded units linked to each loaded unit through units without workload (of the same piece's free units).
    zone = {u: -1 for u in members if work[u] <= 0}
    zones: list[set[int]] = []
    for start in zone:
        if zone[start] >= 0:
            continue
        zone[start] = len(zones)
        touching: set[int] = set()
        stack = [start]
        while stack:
            x = stack.pop()
            for v, _, _ in problem.neighbours[x]:
                if v not in inside:
                    continue
                if work[v] > 0:
                    touching.add(v)
                elif zone[v] < 0:
                    zone[v] = len(zones)
                    stack.append(v)
        zones.append(touching)
    bit = {u: 1 << n for n, u in enumerate(loaded)}
    linked: dict[int, set[int]] = {}
    for u in loaded:
        near: set[int] = set()
        for v, _, _ in problem.neighbours[u]:
            if v not in inside:
                continue
            if work[v] > 0:
                near.add(v)
            else:
                near |= zones[zone[v]]
        near.discard(u)
        linked[u] = near

    def ratio(*loads: float) -> float:
        return _ratio(max(*loads, others_hi), min(*loads, others_lo))

    options: dict[int, list[tuple[float, int]]] = {}
    bound = 1.0
    for u in loaded:
        found = _connected_sets(u, linked, work, mean, bit)
        if found is None:
            continue
        options[u] = found
        best = math.inf
        for a, _ in found:
            best = min(best, ratio(a, (total - a) / (k - 1)))
        bound = max(bound, best)
    if k < 3:
        return bound
    for u in loaded:
        if u not in options or len(options[u]) > _PAIR_OPTIONS:
            continue
        reach = linked[u] | {u}
        for v in sorted(linked[u] | {w for x in linked[u] for w in linked[x]}):
            if (
                v <= u
                or v not in options
                or len(options[v]) > _PAIR_OPTIONS
                or not (linked[v] & reach or v in reach)
            ):
                continue
            # One grid holding both: a set of u's holding v, or a set of either that reached the mean
            # (the grid may hold the other unit beyond it).
            best = min(
                (
                    ratio(a, (total - a) / (k - 1))
                    for (a, set_a), other in [(o, v) for o in options[u]] + [(o, u) for o in options[v]]
                    if set_a & bit[other] or a >= mean
                ),
                default=math.inf,
            )
            for a, set_a in options[u]:
                if set_a & bit[v]:
                    continue
                for b, set_b in options[v]:
                    if set_b & (set_a | bit[u]):
                        continue
                    # Loads from the mean up are lower ends: take the best point of the range.
                    if a >= mean and b >= mean:
                        value = ratio(a, b, (total - a - b) / (k - 2))
                    elif a >= mean:
                        lifted = max(a, (total - b) / (k - 1))
                        value = ratio(lifted, b, (total - lifted - b) / (k - 2))
                    elif b >= mean:
                        lifted = max(b, (total - a) / (k - 1))
                        value = ratio(a, lifted, (total - a - lifted) / (k - 2))
                    else:
                        value = ratio(a, b, (total - a - b) / (k - 2))
                    best = min(best, value)
                    if best <= bound:
                        break
                if best <= bound:
                    break
            bound = max(bound, best)
    return bound


def _connected_sets(
    root: int, linked: dict[int, set[int]], work: list[float], mean: float, bit: dict[int, int]
) -> list[tuple[float, int]] | None:
    """Loads and member bitsets of the linked sets holding ``root``, grown while under ``mean``.

    Each set is made once: frontier units are taken in order, each either joins (and its links join the
    frontier) or is barred from the branch. None when there are more than ``_ENUMERATION_LIMIT``.
    """
    out: list[tuple[float, int]] = []
    stack: list[tuple[float, int, list[int], int]] = []
    # (load, members, frontier, barred)
    start = sorted(linked[root])
    out.append((work[root], bit[root]))
    if work[root] < mean:
        stack.append((work[root], bit[root], start, bit[root]))
    while stack:
        load, members, frontier, barred = stack.pop()
        for n, v in enumerate(frontier):
            if len(out) >= _ENUMERATION_LIMIT:
                return None
            # Branch: v joins, the frontier units before it are barred.
            joined = load + work[v]
            now = members | bit[v]
            out.append((joined, now))
            if joined < mean:
                blocked = barred | bit[v]
                for w in frontier[:n]:
                    blocked |= bit[w]
                rest = [w for w in frontier[n + 1 :]]
                seen = set(rest)
                for w in sorted(linked[v]):
                    if not (blocked & bit[w]) and not (now & bit[w]) and w not in seen:
                        rest.append(w)
                        seen.add(w)
                stack.append((joined, now, rest, blocked | now))
    return out


def plan_quality(units: CommunityUnits, labels: npt.ArrayLike, params: RedrawParams) -> PlanQuality:
    """Quality of a plan: balance, compactness, contiguity, nesting, coverage and old-net lines followed.

    Parameters
    ----------
    units : CommunityUnits
    labels : array of int
        A label per unit (as returned by :func:`redraw_community`); -1 means unlabelled.
    params : RedrawParams
        For the weights and the household bounds.

    Returns
    -------
    PlanQuality
        Per grid: workload, households, area, perimeter and Polsby–Popper score (``4 * pi * A / P ** 2``) of
        the union, ``contiguous`` (the union is one Polygon), ``forced`` (no plan can change its workload:
        it is a whole connected piece of the community, or a single oversized unit). For the community:
        ``max_min_ratio`` and ``cv`` (population standard deviation / mean) of the workloads of all grids,
        forced ones included (inf / nan when undefined; a forced grid without workload makes the ratio
        inf), ``ratio_bound`` (:func:`balance_bound`: no plan has a lower ``max_min_ratio``, so a plan
        with ``max_min_ratio > max(ratio_bound, max_ratio)`` could have been more balanced),
        ``outside_bounds`` (grids whose households lie outside ``[households_min, households_max]``),
        ``net_boundary_followed_share`` (share of the old-net boundary length between units that lies on
        grid boundaries; None when there is none, or when there is no grid boundary between units to
        follow it with, as when every piece is one grid), ``covers_all`` (every unit has a label
        ``0..k-1`` and every label is used), ``nested`` (no grid spans two connected pieces).
    """
    array = np.asarray(units.geoms, dtype=object)
    label = np.asarray(labels, dtype=np.int64)
    if label.shape != (len(array),):
        raise ValueError("labels must have one value per unit")
    problem = _Problem.build(units, params, validate=False)
    work = workload(units, params)
    households = _load(units, "households") if "households" in units.loads else np.zeros(len(array))
    # The problem is in reading order; back to input order.
    order = problem.order
    i, j, length = order[problem.pair_i], order[problem.pair_j], problem.pair_length
    pieces = np.empty(len(array), dtype=np.int64)
    pieces[order] = np.asarray(problem.piece, dtype=np.int64)
    piece_size = np.bincount(pieces) if len(pieces) else np.zeros(0, dtype=np.int64)
    big = np.zeros(len(array), dtype=bool)
    big[order] = np.asarray(problem.big, dtype=bool)
    used = np.unique(label[label >= 0])
    groups: list[GroupStats] = []
    for value in used:
        members = label == value
        union = shapely.union_all(array[members])
        area = float(shapely.area(union))
        perimeter = float(shapely.length(union))
        count = int(members.sum())
        in_pieces = np.unique(pieces[members])
        groups.append(
            GroupStats(
                label=int(value),
                n_units=count,
                workload=float(work[members].sum()),
                households=float(households[members].sum()),
                area_m2=area,
                perimeter_m=perimeter,
                polsby_popper=4 * math.pi * area / perimeter**2 if perimeter > 0 else 0.0,
                contiguous=union.geom_type == "Polygon",
                forced=bool(
                    len(in_pieces) == 1
                    and (count == int(piece_size[in_pieces[0]]) or (count == 1 and bool(big[members][0])))
                ),
            )
        )
    loads = np.asarray([g["workload"] for g in groups], dtype=np.float64)
    if len(loads) == 0:
        ratio, cv = math.nan, math.nan
    else:
        mean = float(loads.mean())
        ratio = _ratio(float(loads.max()), float(loads.min()))
        cv = float(loads.std()) / mean if mean > 0 else math.nan
    outside = sum(1 for g in groups if not params.households_min <= g["households"] <= params.households_max)
    share: float | None = None
    if units.net_ids is not None:
        nets = np.asarray(units.net_ids, dtype=np.int64)
        crossing = nets[i] != nets[j]
        total = float(length[crossing].sum())
        if total > 0 and bool(np.any(label[i] != label[j])):
            followed = crossing & (label[i] != label[j])
            share = float(length[followed].sum()) / total
    nested = all(len(np.unique(pieces[label == value])) == 1 for value in used)
    covers_all = bool(np.all(label >= 0)) and np.array_equal(used, np.arange(len(used)))
    return PlanQuality(
        n_groups=len(groups),
        groups=groups,
        max_min_ratio=ratio,
        ratio_bound=_balance_bound(problem),
        cv=cv,
        outside_bounds=outside,
        net_boundary_followed_share=share,
        all_contiguous=all(g["contiguous"] for g in groups),
        covers_all=covers_all,
        nested=nested,
    )


group_quality = plan_quality


def _load(units: CommunityUnits, name: str) -> FloatArray:
    n = len(units.geoms)
    if name not in units.loads:
        raise ValueError(f"load {name!r} is weighted or needed but missing")
    values = np.asarray(units.loads[name], dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"load {name!r} must have one value per unit")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"load {name!r} must be finite and >= 0")
    return values


def _pieces(n: int, i: IntArray, j: IntArray) -> IntArray:
    """Connected piece of each unit, numbered by the smallest unit index in the piece."""
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        neighbours[a].append(b)
        neighbours[b].append(a)
    piece = np.full(n, -1, dtype=np.int64)
    count = 0
    for start in range(n):
        if piece[start] >= 0:
            continue
        piece[start] = count
        stack = [start]
        while stack:
            u = stack.pop()
            for v in neighbours[u]:
                if piece[v] < 0:
                    piece[v] = count
                    stack.append(v)
        count += 1
    return piece


def _count_for(total: float, n_units: int, params: RedrawParams) -> int:
    """Grids for ``n_units`` units of total size ``total`` (households, or workload with a target)."""
    if n_units == 0:
        return 0
    if params.target_workload is not None:
        k = math.floor(total / params.target_workload + 0.5)
    else:
        middle = (params.households_min + params.households_max) / 2
        k = math.floor(total / middle + 0.5)
        low = math.ceil(total / params.households_max)
        high = math.floor(total / params.households_min)
        if low <= high:
            k = min(max(k, low), high)
    return min(max(k, 1), n_units)


def _first_seen_labels(label: IntArray) -> IntArray:
    """Rename labels ``0..k-1`` in order of first appearance."""
    mapping: dict[int, int] = {}
    out = np.empty_like(label)
    for index, value in enumerate(label.tolist()):
        out[index] = mapping.setdefault(value, len(mapping))
    return out


@dataclass
class _Piece:
    """A connected piece of the community: its units (reading order), oversized units, free grid count."""

    units: list[int]
    big: list[int]
    free_groups: int


@dataclass
class _Problem:
    """A community in reading order: loads, geometry measures and neighbour lists."""

    n: int
    order: IntArray
    work: list[float]
    households: list[float]
    area: list[float]
    perimeter: list[float]
    cx: FloatArray
    cy: FloatArray
    net: list[int]
    # Per unit: (neighbour, shared length, shared length if the nets differ else 0), neighbours ascending.
    neighbours: list[list[tuple[int, float, float]]]
    piece: list[int]
    pieces: list[_Piece]
    big: list[bool]
    l_ref: float
    params: RedrawParams
    work_array: FloatArray
    area_array: FloatArray
    perimeter_array: FloatArray
    # The adjacency as arrays (reading order, i < j), for the quality figures.
    pair_i: IntArray
    pair_j: IntArray
    pair_length: FloatArray

    @staticmethod
    def build(units: CommunityUnits, params: RedrawParams, validate: bool = True) -> _Problem:
        geoms = np.asarray(units.geoms, dtype=object)
        n = len(geoms)
        work_in = workload(units, params)
        if params.target_workload is None:
            size_in = _load(units, "households")
            oversized = float(params.households_max)
        else:
            size_in = work_in
            oversized = params.target_workload
        nets_in = (
            np.full(n, -1, dtype=np.int64)
            if units.net_ids is None
            else np.asarray(units.net_ids, dtype=np.int64)
        )
        if nets_in.shape != (n,):
            raise ValueError("net_ids must have one value per unit")
        if units.current is not None and np.shape(units.current) != (n,):
            raise ValueError("current must have one value per unit")
        if validate and n and not bool(np.all(shapely.is_valid(geoms))):
            raise ValueError("unit geometries must be valid")
        order = reading_order(geoms)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        geoms = geoms[order]
        i_in, j_in, length = unit_adjacency(geoms)
        centroids = shapely.centroid(geoms)
        nets = nets_in[order]
        neighbours: list[list[tuple[int, float, float]]] = [[] for _ in range(n)]
        for a, b, s in zip(i_in.tolist(), j_in.tolist(), length.tolist(), strict=True):
            cross = s if nets[a] != nets[b] else 0.0
            neighbours[a].append((b, s, cross))
            neighbours[b].append((a, s, cross))
        for row in neighbours:
            row.sort()
        piece = _pieces(n, i_in, j_in)
        size = size_in[order]
        big = size >= oversized
        pieces: list[_Piece] = []
        for p in range(int(piece.max()) + 1 if n else 0):
            members = [int(u) for u in np.flatnonzero(piece == p)]
            big_units = [u for u in members if big[u]]
            rest = [u for u in members if not big[u]]
            free = _count_for(float(size[rest].sum()), len(rest), params)
            pieces.append(_Piece(members, big_units, free))
        areas = np.asarray(shapely.area(geoms), dtype=np.float64)
        k = sum(len(p.big) + p.free_groups for p in pieces)
        l_ref = math.sqrt(float(areas.sum()) / k) if k and areas.sum() > 0 else 1.0
        return _Problem(
            n=n,
            order=order,
            work=work_in[order].tolist(),
            households=(
                _load(units, "households")[order] if "households" in units.loads else np.zeros(n)
            ).tolist(),
            area=areas.tolist(),
            perimeter=np.asarray(shapely.length(geoms), dtype=np.float64).tolist(),
            cx=np.asarray(shapely.get_x(centroids), dtype=np.float64),
            cy=np.asarray(shapely.get_y(centroids), dtype=np.float64),
            net=nets.tolist(),
            neighbours=neighbours,
            piece=piece.tolist(),
            pieces=pieces,
            big=big.tolist(),
            l_ref=l_ref,
            params=params,
            work_array=work_in[order],
            area_array=areas,
            perimeter_array=np.asarray(shapely.length(geoms), dtype=np.float64),
            pair_i=i_in,
            pair_j=j_in,
            pair_length=length,
        )


class _Plan:
    """A labelling under construction with per-grid sums, so a move is priced in O(degree)."""

    def __init__(self, problem: _Problem, label: list[int], locked: list[bool]) -> None:
        self.problem = problem
        self.label = label
        self.locked = locked
        k = len(locked)
        self.work = [0.0] * k
        self.area = [0.0] * k
        self.perimeter = [0.0] * k
        self.count = [0] * k
        self.members: list[set[int]] = [set() for _ in range(k)]
        self.cross = 0.0
        self.piece_of = [0] * k
        self.origin: list[int] | None = None
        # Every grid within +-band of the mean keeps max/min under max_ratio, with a little margin.
        self.band = _BAND_MARGIN * (problem.params.max_ratio - 1) / (problem.params.max_ratio + 1)
        for u in range(problem.n):
            g = label[u]
            self.work[g] += problem.work[u]
            self.area[g] += problem.area[u]
            self.perimeter[g] += problem.perimeter[u]
            self.count[g] += 1
            self.members[g].add(u)
            self.piece_of[g] = problem.piece[u]
            for v, s, cross in problem.neighbours[u]:
                if label[v] == g:
                    # Each internal pair is seen twice: from u and from v.
                    self.perimeter[g] -= s
                    self.cross += cross / 2
        self._update_means()

    def _update_means(self) -> None:
        """Mean workload of the free grids of each piece (the balance term's reference)."""
        totals: dict[int, float] = {}
        counts: dict[int, int] = {}
        for g in range(len(self.locked)):
            if not self.locked[g]:
                p = self.piece_of[g]
                totals[p] = totals.get(p, 0.0) + self.work[g]
                counts[p] = counts.get(p, 0) + 1
        self.mean = {p: totals[p] / counts[p] for p in totals}

    def _group_cost(self, g: int, work: float, area: float, perimeter: float) -> float:
        params = self.problem.params
        cost = 0.0
        if not self.locked[g]:
            mean = self.mean[self.piece_of[g]]
            if mean > 0:
                deviation = abs(work - mean) / mean
                excess = deviation - self.band
                cost += deviation * deviation + (_BAND_WEIGHT * excess * excess if excess > 0 else 0.0)
        if area > 0 and params.compactness_weight > 0:
            cost += params.compactness_weight * (perimeter * perimeter / (4 * math.pi * area) - 1)
        return cost

    def objective(self) -> float:
        """The plan's objective (module docstring)."""
        params = self.problem.params
        total = sum(
            self._group_cost(g, self.work[g], self.area[g], self.perimeter[g])
            for g in range(len(self.locked))
        )
        total += params.net_penalty * self.cross / self.problem.l_ref
        if self.origin is not None:
            moved = sum(1 for u in range(self.problem.n) if self.label[u] != self.origin[u])
            total += params.keep_weight * moved
        return total

    def ratio(self) -> float:
        """max/min workload over all grids, as :func:`plan_quality` reports it."""
        return _ratio(max(self.work), min(self.work)) if self.work else 1.0

    def key(self, goal: float) -> tuple[float, float]:
        """How plans are ranked: max/min where above ``goal``, then the objective."""
        return max(self.ratio(), goal), self.objective()

    def copy(self) -> _Plan:
        """An independent plan with the same labels (and origin)."""
        plan = _Plan(self.problem, list(self.label), list(self.locked))
        plan.origin = None if self.origin is None else list(self.origin)
        return plan

    def deviation(self, g: int) -> float:
        """Relative deviation of free grid ``g`` from its piece's mean workload (0 without workload)."""
        mean = self.mean[self.piece_of[g]]
        return (self.work[g] - mean) / mean if mean > 0 else 0.0

    def _shared(self, u: int) -> dict[int, tuple[float, float]]:
        """Per adjacent grid (u's own included): shared length with u, and net-crossing length."""
        out: dict[int, tuple[float, float]] = {}
        for v, s, cross in self.problem.neighbours[u]:
            g = self.label[v]
            old = out.get(g, (0.0, 0.0))
            out[g] = (old[0] + s, old[1] + cross)
        return out

    def _delta(self, u: int, a: int, b: int, shared: dict[int, tuple[float, float]]) -> float:
        problem = self.problem
        params = problem.params
        w, area, perimeter = problem.work[u], problem.area[u], problem.perimeter[u]
        s_a, x_a = shared.get(a, (0.0, 0.0))
        s_b, x_b = shared[b]
        before = self._group_cost(a, self.work[a], self.area[a], self.perimeter[a]) + self._group_cost(
            b, self.work[b], self.area[b], self.perimeter[b]
        )
        after = self._group_cost(
            a, self.work[a] - w, self.area[a] - area, self.perimeter[a] - perimeter + 2 * s_a
        ) + self._group_cost(
            b, self.work[b] + w, self.area[b] + area, self.perimeter[b] + perimeter - 2 * s_b
        )
        delta = after - before + params.net_penalty * (x_b - x_a) / problem.l_ref
        if self.origin is not None:
            if a == self.origin[u]:
                delta += params.keep_weight
            elif b == self.origin[u]:
                delta -= params.keep_weight
        return delta

    def _stays_connected(self, u: int, a: int) -> bool:
        """Whether grid ``a`` stays one connected piece without unit ``u``."""
        targets = [v for v, _, _ in self.problem.neighbours[u] if self.label[v] == a]
        if len(targets) <= 1:
            return True
        remaining = set(targets)
        seen = {u, targets[0]}
        stack = [targets[0]]
        remaining.discard(targets[0])
        while stack and remaining:
            x = stack.pop()
            for v, _, _ in self.problem.neighbours[x]:
                if v not in seen and self.label[v] == a:
                    seen.add(v)
                    remaining.discard(v)
                    stack.append(v)
        return not remaining

    def _move(self, u: int, a: int, b: int, shared: dict[int, tuple[float, float]]) -> None:
        problem = self.problem
        s_a, x_a = shared.get(a, (0.0, 0.0))
        s_b, x_b = shared[b]
        self.work[a] -= problem.work[u]
        self.work[b] += problem.work[u]
        self.area[a] -= problem.area[u]
        self.area[b] += problem.area[u]
        self.perimeter[a] += 2 * s_a - problem.perimeter[u]
        self.perimeter[b] += problem.perimeter[u] - 2 * s_b
        self.count[a] -= 1
        self.count[b] += 1
        self.members[a].discard(u)
        self.members[b].add(u)
        self.cross += x_b - x_a
        self.label[u] = b

    def improve(self) -> None:
        """Move boundary units between adjacent grids while the objective drops (first improvement)."""
        problem = self.problem
        for _ in range(problem.params.max_passes):
            moved = False
            for u in range(problem.n):
                a = self.label[u]
                if self.count[a] <= 1:
                    continue
                shared = self._shared(u)
                if len(shared) == 1:
                    continue
                options: list[tuple[float, int]] = []
                for b in sorted(shared):
                    if b == a or self.locked[b]:
                        continue
                    delta = self._delta(u, a, b, shared)
                    if delta < -_EPS:
                        options.append((delta, b))
                options.sort()
                for _, b in options:
                    if self._stays_connected(u, a):
                        self._move(u, a, b, shared)
                        moved = True
                    break
            if not moved:
                return

    def grid_neighbours(self) -> list[set[int]]:
        """Per grid, the grids that share an edge with it."""
        out: list[set[int]] = [set() for _ in self.locked]
        label = self.label
        for u in range(self.problem.n):
            g = label[u]
            for v, _, _ in self.problem.neighbours[u]:
                if label[v] != g:
                    out[g].add(label[v])
        return out

    def recombine(self, rng: random.Random, trees: int = _SPLIT_TREES, chains: bool = True) -> None:
        """Redraw lines between adjacent grids, pairwise or along chains, while a grid lies outside the band.

        The grid farthest outside the band goes first, paired with its neighbours from the most opposite
        deviation on (a heavy grid with its lightest neighbour, :meth:`_split`). When no pair helps, load
        is passed along a path of grids from a heavy grid to a light one (:meth:`_chain`), for the few
        most opposite grids within ``_CHAIN_HOPS`` hops. A pair or chain that could not be improved is not
        tried again until one of its grids changes.
        """
        k = len(self.locked)
        # A move's grids' versions when it last failed: it is worth trying again once one has changed.
        version = [0] * k
        failed: dict[tuple[int, ...], tuple[int, ...]] = {}
        for _ in range(_SPLIT_ATTEMPTS * k):
            neighbours = self.grid_neighbours()
            free = [g for g in range(k) if not self.locked[g]]
            deviation = {g: self.deviation(g) for g in free}
            moves: list[tuple[int, ...]] = []
            for g in sorted(free, key=lambda h: (-abs(deviation[h]), h)):
                if abs(deviation[g]) <= self.band:
                    break
                sign = 1.0 if deviation[g] > 0 else -1.0
                moves.extend(
                    (g, h)
                    for h in sorted(
                        (h for h in neighbours[g] if not self.locked[h]),
                        key=lambda h: (sign * deviation[h], h),
                    )
                )
                if chains:
                    moves.extend(tuple(path) for path in self._paths(g, deviation, neighbours))
            for move in moves:
                state = tuple(version[g] for g in move)
                if failed.get(move) == state:
                    continue
                if self._try(move, rng, trees):
                    for g in move:
                        version[g] += 1
                    break
                failed[move] = state
            else:
                return

    def _try(self, move: tuple[int, ...], rng: random.Random, trees: int) -> bool:
        """A pair redraw ``(a, b)``, or a chain along a path of grids from heavy to light."""
        if len(move) == 2:
            return self._split(move[0], move[1], rng, trees)
        mean = self.mean[self.piece_of[move[0]]]
        amount = min(self.work[move[0]] - mean, mean - self.work[move[-1]])
        return amount > 0 and self._chain(list(move), amount, rng, trees)

    def _paths(self, g: int, deviation: dict[int, float], neighbours: list[set[int]]) -> list[list[int]]:
        """Shortest paths of adjacent free grids from heavy to light, with ``g`` at one end.

        From ``g`` when it is heavy, to the lightest grids first; to ``g`` when it is light, from the
        heaviest first. Only paths of two to ``_CHAIN_HOPS`` hops (one hop is a pair), at most
        ``_CHAIN_TARGETS`` of them.
        """
        parent = {g: g}
        queue = [g]
        for x in queue:
            for y in sorted(neighbours[x]):
                if y not in parent and not self.locked[y]:
                    parent[y] = x
                    queue.append(y)
        heavy = deviation[g] > 0
        ends = sorted(
            (h for h in parent if h != g and (deviation[h] < 0 if heavy else deviation[h] > 0)),
            key=lambda h: (deviation[h] if heavy else -deviation[h], h),
        )
        out: list[list[int]] = []
        for h in ends:
            path = [h]
            while path[-1] != g:
                path.append(parent[path[-1]])
            if not 3 <= len(path) <= _CHAIN_HOPS + 1:
                continue
            # Built from h back to g: from g when g is heavy, else from h.
            out.append(path[::-1] if heavy else path)
            if len(out) == _CHAIN_TARGETS:
                break
        return out

    def _chain(self, path: list[int], amount: float, rng: random.Random, trees: int) -> bool:
        """Pass about ``amount`` of workload along ``path``, one connected branch per hop, if that helps.

        Each hop moves the branch of a random spanning tree of the two grids (:meth:`_branch`) whose load
        is closest to what the hop before passed, so the grids in between keep their workload; only the
        ends change. The chain is kept when the objective drops, else undone: the hops in between may
        each cost something that single moves and pair redraws would never accept.
        """
        saved = {u: self.label[u] for g in path for u in self.members[g]}
        before = self.objective()
        passing = amount
        for a, b in itertools.pairwise(path):
            option = self._branch(a, b, passing, rng, trees)
            if option is None:
                self._assign(saved)
                return False
            passing, moved = option
            self._assign({u: b for u in moved})
        if self.objective() < before - _SPLIT_EPS:
            return True
        self._assign(saved)
        return False

    def _branch(
        self, a: int, b: int, target: float, rng: random.Random, trees: int
    ) -> tuple[float, list[int]] | None:
        """A connected part of grid ``a`` next to ``b`` that can move to ``b``, of load near ``target``.

        From spanning trees of the two grids that keep each grid's own tree and join them by one edge:
        cutting an edge inside ``a``'s tree leaves the part of ``a`` on ``b``'s side joined to ``b``.
        Returns (its load, its units), the load closest to ``target`` (fewer units on ties), or None.
        """
        problem = self.problem
        units = sorted(self.members[a] | self.members[b])
        m = len(units)
        pairs = _Pairs.within(problem, units)
        label = self.label
        between = [label[units[i]] != label[units[j]] for i, j in zip(pairs.i, pairs.j, strict=True)]
        in_b = np.asarray([1.0 if label[u] == b else 0.0 for u in units])
        total_b = float(in_b.sum())
        work_b = self.work[b]
        best: tuple[float, float, float, list[int]] | None = None
        for _ in range(trees):
            tree = _Tree(problem, pairs, [rng.random() + (1.0 if crossing else 0.0) for crossing in between])
            sub_b = tree.subtree_sum(in_b)
            size = tree.size.astype(np.float64)
            # The subtree holds all of b: its units of a move. It holds none of b: the other units of a move.
            moved_count = np.where(
                sub_b == total_b, size - total_b, np.where(sub_b == 0, m - size - total_b, 0.0)
            )
            moved_load = np.where(sub_b == total_b, tree.work, tree.work[0] - tree.work) - work_b
            moved_count[0] = 0.0
            valid = np.flatnonzero(moved_count > 0)
            if not len(valid):
                continue
            miss = np.abs(moved_load[valid] - target)
            pick = int(valid[np.lexsort((moved_count[valid], miss))[0]])
            candidate = (float(abs(moved_load[pick] - target)), float(moved_count[pick]))
            if best is None or candidate < best[:2]:
                inside = set(tree.subtree(pick))
                keep_inside = bool(sub_b[pick] == 0)
                moved = [u for u in units if label[u] == a and ((u in inside) != keep_inside)]
                best = (candidate[0], candidate[1], float(moved_load[pick]), moved)
        if best is None:
            return None
        return best[2], best[3]

    def _split(self, a: int, b: int, rng: random.Random, trees: int) -> bool:
        """Redraw the line between adjacent free grids ``a`` and ``b`` if that lowers the objective.

        Candidates are the two-part cuts of spanning trees of the pair's units (:class:`_Tree`): cutting
        one tree edge leaves two connected parts, so every candidate keeps both grids contiguous. Two trees
        in three keep each grid's own tree and join them by one random edge between them; cutting inside
        a grid's tree then moves a connected branch across (a chain of units, zero-load ones included,
        that single moves cannot make). The third ignores the current line. The best cut of the first tree
        that improves the objective is applied.
        """
        problem = self.problem
        params = problem.params
        label = self.label
        units = sorted(self.members[a] | self.members[b])
        m = len(units)
        pairs = _Pairs.within(problem, units)
        between = [label[units[i]] != label[units[j]] for i, j in zip(pairs.i, pairs.j, strict=True)]
        cross_ab = float(pairs.cross[np.asarray(between, dtype=bool)].sum()) if between else 0.0
        now = np.asarray([label[u] for u in units], dtype=np.int64)
        in_a = (now == a).astype(np.float64)
        origin = self.origin
        was = np.asarray(origin, dtype=np.int64)[units] if origin is not None else np.full(m, -1)
        from_a = (was == a).astype(np.float64)
        from_b = (was == b).astype(np.float64)
        total_from_a, total_from_b, total_in_a = float(from_a.sum()), float(from_b.sum()), float(in_a.sum())
        costs = self._costs(self.piece_of[a])
        net = params.net_penalty / problem.l_ref
        keep = params.keep_weight if origin is not None else 0.0
        moved_now = float((now != was).sum()) if origin is not None else 0.0
        current = float(
            costs(
                np.asarray([self.work[a], self.work[b]]),
                np.asarray([self.area[a], self.area[b]]),
                np.asarray([self.perimeter[a], self.perimeter[b]]),
            ).sum()
            + keep * moved_now
            - net * cross_ab
        )
        for attempt in range(trees):
            bridge = attempt % 3 != 2
            keys = [rng.random() + (1.0 if bridge and crossing else 0.0) for crossing in between]
            tree = _Tree(problem, pairs, keys)
            value = (
                costs(tree.work, tree.area, tree.sub_perimeter)
                + costs(tree.work[0] - tree.work, tree.area[0] - tree.area, tree.rest_perimeter)
                - net * tree.cut_x
            )
            size = tree.size.astype(np.float64)
            rest = m - size
            sub_in_a = tree.subtree_sum(in_a)
            sub_from_a = tree.subtree_sum(from_a)
            sub_from_b = tree.subtree_sum(from_b)
            # The subtree to b (and the rest to a), or the other way round; churn breaks ties.
            churn_b = sub_in_a + rest - (total_in_a - sub_in_a)
            churn_a = m - churn_b
            moved_b = size - sub_from_b + rest - (total_from_a - sub_from_a)
            moved_a = size - sub_from_a + rest - (total_from_b - sub_from_b)
            total = np.concatenate((value + keep * moved_b, value + keep * moved_a))
            churn = np.concatenate((churn_b, churn_a))
            # Local unit 0 is the root: its subtree is the whole pair. No churn: the current line.
            total[0] = total[m] = np.inf
            total[churn == 0] = np.inf
            pick = int(np.lexsort((churn, total))[0])
            if total[pick] < current - _SPLIT_EPS:
                v, to_b = pick % m, pick < m
                subtree = set(tree.subtree(v))
                self._relabel(a, b, units, subtree if to_b else set(units) - subtree)
                return True
        return False

    def _costs(self, piece: int) -> Callable[[FloatArray, FloatArray, FloatArray], FloatArray]:
        """Free grids' costs in ``piece`` from their workload, area and perimeter, up to a constant."""
        mean = self.mean[piece]
        band = self.band
        compact = self.problem.params.compactness_weight / (4 * math.pi)

        def costs(work: FloatArray, area: FloatArray, perimeter: FloatArray) -> FloatArray:
            value = np.zeros(len(work))
            if mean > 0:
                deviation = np.abs(work - mean) / mean
                excess = np.maximum(deviation - band, 0.0)
                value = deviation * deviation + _BAND_WEIGHT * excess * excess
            if compact > 0:
                positive = area > 0
                value = value + np.where(
                    positive, compact * perimeter * perimeter / np.where(positive, area, 1.0), 0.0
                )
            return value

        return costs

    def _relabel(self, a: int, b: int, units: list[int], to_b: set[int]) -> None:
        """Give ``to_b`` of the pair's ``units`` to ``b`` and the rest to ``a``."""
        self._assign({u: b if u in to_b else a for u in units})

    def _assign(self, new: Mapping[int, int]) -> None:
        """Set the labels of some units; resum the grids involved exactly (no drift from increments)."""
        problem = self.problem
        grids = {self.label[u] for u in new} | set(new.values())
        units = sorted(set().union(*(self.members[g] for g in grids), new))
        self.cross -= self._inner_cross(units)
        for u, g in new.items():
            self.label[u] = g
        self.cross += self._inner_cross(units)
        for g in grids:
            self.members[g] = {u for u in units if self.label[u] == g}
            work = area = perimeter = 0.0
            for u in self.members[g]:
                work += problem.work[u]
                area += problem.area[u]
                perimeter += problem.perimeter[u]
                for v, s, _ in problem.neighbours[u]:
                    if self.label[v] == g:
                        perimeter -= s
            self.work[g], self.area[g], self.perimeter[g] = work, area, perimeter
            self.count[g] = len(self.members[g])

    def _inner_cross(self, units: list[int]) -> float:
        """Old-net boundary length inside the grids of ``units`` (each pair counted once)."""
        label = self.label
        total = 0.0
        for u in units:
            for v, _, x in self.problem.neighbours[u]:
                if x and v > u and label[v] == label[u]:
                    total += x
        return total


@dataclass
class _Pairs:
    """Adjacent pairs inside a set of units: local indices ``i < j``, shared and net-crossing lengths."""

    units: list[int]
    i: list[int]
    j: list[int]
    shared: FloatArray
    cross: FloatArray

    @staticmethod
    def within(problem: _Problem, units: list[int]) -> _Pairs:
        index = {u: n for n, u in enumerate(units)}
        left: list[int] = []
        right: list[int] = []
        shared: list[float] = []
        cross: list[float] = []
        for n, u in enumerate(units):
            for v, s, x in problem.neighbours[u]:
                other = index.get(v, -1)
                if other > n:
                    left.append(n)
                    right.append(other)
                    shared.append(s)
                    cross.append(x)
        return _Pairs(
            units, left, right, np.asarray(shared, dtype=np.float64), np.asarray(cross, dtype=np.float64)
        )


class _Tree:
    """A spanning tree of a connected set of units, with sums over every subtree.

    The tree is Kruskal's on ``keys`` (one per pair; random keys give a random tree). Units are put in
    preorder from local unit 0 (the root), so the subtree under local unit ``v`` is the run
    ``order[start[v]:stop[v]]`` and per-subtree sums of any value are differences of prefix sums
    (``work``, ``area``, ``size``). Per subtree, ``inner`` is the shared length of the adjacent pairs
    inside it, ``cut`` of those leaving it and ``cut_x`` their net-crossing length: a pair lies inside
    when its endpoints' lowest common ancestor does, and leaves when ``v`` is on the path from an
    endpoint up to that ancestor, so point values at the endpoints and ancestors summed over subtrees
    give all three. ``sub_perimeter`` and ``rest_perimeter`` are the perimeters of the subtree's union
    and of the rest's. ``spanning`` is False (and nothing else is set) when the units are not connected.
    """

    def __init__(self, problem: _Problem, pairs: _Pairs, keys: list[float]) -> None:
        units = pairs.units
        m = len(units)
        root_of = list(range(m))
        adjacent: list[list[int]] = [[] for _ in range(m)]
        left, right = pairs.i, pairs.j
        for n in sorted(range(len(keys)), key=keys.__getitem__):
            ri = left[n]
            while root_of[ri] != ri:
                root_of[ri] = root_of[root_of[ri]]
                ri = root_of[ri]
            rj = right[n]
            while root_of[rj] != rj:
                root_of[rj] = root_of[root_of[rj]]
                rj = root_of[rj]
            if ri != rj:
                root_of[ri] = rj
                adjacent[left[n]].append(right[n])
                adjacent[right[n]].append(left[n])
        parent = [-1] * m
        depth = [0] * m
        order: list[int] = []
        stack = [0]
        parent[0] = 0
        while stack:
            x = stack.pop()
            order.append(x)
            for y in adjacent[x]:
                if parent[y] == -1:
                    parent[y] = x
                    depth[y] = depth[x] + 1
                    stack.append(y)
        self.spanning = len(order) == m
        if not self.spanning:
            return
        size = [1] * m
        for x in reversed(order[1:]):
            size[parent[x]] += size[x]
        self.units = units
        self.order = np.asarray(order, dtype=np.int64)
        position = np.empty(m, dtype=np.int64)
        position[self.order] = np.arange(m)
        self.size = np.asarray(size, dtype=np.int64)
        self.start = position
        self.stop = position + self.size
        local = np.asarray(units, dtype=np.int64)
        self.work = self.subtree_sum(problem.work_array[local])
        self.area = self.subtree_sum(problem.area_array[local])
        perimeter = self.subtree_sum(problem.perimeter_array[local])
        a = np.asarray(left, dtype=np.int64)
        b = np.asarray(right, dtype=np.int64)
        top = _lowest_common_ancestors(
            np.asarray(parent, dtype=np.int64), np.asarray(depth, dtype=np.int64), a, b
        )
        # A pair lies inside v's subtree when v is an ancestor of (or is) its endpoints' lowest common
        # ancestor; it crosses the subtree's edge when v is on the path from an endpoint up to (not
        # including) that ancestor. Per-unit point values, summed over subtrees.
        self.inner = self.subtree_sum(_per_unit(top, pairs.shared, m))
        ends = _per_unit(a, pairs.shared, m) + _per_unit(b, pairs.shared, m)
        self.cut = self.subtree_sum(ends - 2 * _per_unit(top, pairs.shared, m))
        ends_x = _per_unit(a, pairs.cross, m) + _per_unit(b, pairs.cross, m)
        self.cut_x = self.subtree_sum(ends_x - 2 * _per_unit(top, pairs.cross, m))
        # Perimeter of a union = sum of the units' perimeters - twice the length shared inside it.
        self.sub_perimeter = perimeter - 2 * self.inner
        total_inner = float(self.inner[0])
        self.rest_perimeter = (float(perimeter[0]) - perimeter) - 2 * (total_inner - self.inner - self.cut)

    def subtree_sum(self, values: FloatArray) -> FloatArray:
        """Per local unit, the sum of ``values`` (one per local unit) over its subtree."""
        prefix = np.concatenate(([0.0], np.cumsum(np.asarray(values, dtype=np.float64)[self.order])))
        out: FloatArray = prefix[self.stop] - prefix[self.start]
        return out

    def subtree(self, v: int) -> list[int]:
        """The units (global indices) of the subtree under local unit ``v``."""
        return [self.units[x] for x in self.order[self.start[v] : self.stop[v]].tolist()]


def _per_unit(index: IntArray, weights: FloatArray, m: int) -> FloatArray:
    """Sum of ``weights`` per value of ``index`` in ``0..m-1``."""
    return np.bincount(index, weights=weights, minlength=m).astype(np.float64)


def _lowest_common_ancestors(parent: IntArray, depth: IntArray, a: IntArray, b: IntArray) -> IntArray:
    """Lowest common ancestor of each ``(a, b)`` in a tree (``parent[root] == root``): binary lifting."""
    levels = max(1, int(depth.max()).bit_length()) if len(depth) else 1
    up = [parent]
    for _ in range(1, levels):
        up.append(up[-1][up[-1]])
    deeper = depth[a] >= depth[b]
    x, y = np.where(deeper, a, b), np.where(deeper, b, a)
    gap = np.abs(depth[a] - depth[b])
    for level in range(levels):
        x = np.where((gap >> level) & 1 == 1, up[level][x], x)
    for level in range(levels - 1, -1, -1):
        ux, uy = up[level][x], up[level][y]
        differ = ux != uy
        x, y = np.where(differ, ux, x), np.where(differ, uy, y)
    out: IntArray = np.where(x == y, x, parent[x])
    return out


def _tree_plan(problem: _Problem, rng: random.Random) -> _Plan | None:
    """A plan cut from random spanning trees, one grid at a time (None when a piece's free units are split).

    Per piece, a random spanning tree of the units still free is drawn and the tree edge whose cut leaves
    the best part is cut: the part is scored by its workload against the piece's mean, the mean left for
    the other grids, and its compactness (the objective's own terms). Up to ``_TREE_ATTEMPTS`` trees are
    drawn per grid, stopping at the first whose best part keeps both workloads inside half the band. The
    part becomes a grid and the rest, one connected tree, goes on. With lumpy workloads the many cuts of
    many trees find balanced grids that growing from seeds misses.
    """
    params = problem.params
    band = _BAND_MARGIN * (params.max_ratio - 1) / (params.max_ratio + 1)
    compact = params.compactness_weight / (4 * math.pi)
    net = params.net_penalty / problem.l_ref
    label = [-1] * problem.n
    locked: list[bool] = []
    for piece in problem.pieces:
        for u in piece.big:
            label[u] = len(locked)
            locked.append(True)
        region = [u for u in piece.units if not problem.big[u]]
        k = piece.free_groups
        if k == 0:
            continue
        mean = sum(problem.work[u] for u in region) / k
        while k > 1:
            pairs = _Pairs.within(problem, region)
            m = len(region)
            best: tuple[float, int, int] | None = None
            best_tree: _Tree | None = None
            for _ in range(_TREE_ATTEMPTS):
                tree = _Tree(problem, pairs, [rng.random() for _ in pairs.i])
                if not tree.spanning:
                    return None
                total = float(tree.work[0])
                good = False
                for side in (0, 1):
                    if side == 0:
                        work, area, perimeter, size = tree.work, tree.area, tree.sub_perimeter, tree.size
                    else:
                        work, area = total - tree.work, tree.area[0] - tree.area
                        perimeter, size = tree.rest_perimeter, m - tree.size
                    left = (total - work) / (k - 1)
                    if mean > 0:
                        d_part = np.abs(work - mean) / mean
                        d_left = np.abs(left - mean) / mean
                    else:
                        d_part = d_left = np.zeros(m)
                    e_part = np.maximum(d_part - band, 0.0)
                    e_left = np.maximum(d_left - band, 0.0)
                    score = (
                        d_part**2
                        + _BAND_WEIGHT * e_part**2
                        + (k - 1) * (d_left**2 + _BAND_WEIGHT * e_left**2)
                    )
                    score = score + np.where(
                        area > 0, compact * perimeter**2 / np.where(area > 0, area, 1.0), 0.0
                    )
                    # Old-net line on the cut is line no grid straddles.
                    score = score - net * tree.cut_x
                    # The part leaves a unit for each grid still to cut; the root's subtree is everything.
                    score[(size < 1) | (m - size < k - 1)] = np.inf
                    score[0] = np.inf
                    v = int(np.argmin(score))
                    if not math.isfinite(float(score[v])):
                        continue
                    if best is None or float(score[v]) < best[0]:
                        best, best_tree = (float(score[v]), v, side), tree
                        good = max(float(d_part[v]), float(d_left[v])) <= band / 2
                if good:
                    break
            if best is None or best_tree is None:
                return None
            subtree = best_tree.subtree(best[1])
            part = subtree if best[2] == 0 else sorted(set(region) - set(subtree))
            taken = set(part)
            for u in part:
                label[u] = len(locked)
            locked.append(False)
            region = [u for u in region if u not in taken]
            k -= 1
        for u in region:
            label[u] = len(locked)
        locked.append(False)
    if any(g < 0 for g in label):
        return None
    return _Plan(problem, label, locked)


def _seeds(problem: _Problem, units: list[int], k: int, seeding: int) -> list[int]:
    """``k`` seed units among ``units``: farthest-point start, then workload-weighted Lloyd steps."""
    index = np.asarray(units, dtype=np.int64)
    x, y = problem.cx[index], problem.cy[index]
    w = np.asarray(problem.work, dtype=np.float64)[index]
    # Units without workload still pull a little, so an all-zero piece still has centres.
    w = w + (float(w.mean()) * 1e-3 if w.sum() > 0 else 1.0)
    mx, my = float((w * x).sum() / w.sum()), float((w * y).sum() / w.sum())
    if seeding == 0:
        first = int(np.argmax((x - mx) ** 2 + (y - my) ** 2))
    elif seeding == 1:
        first = int(np.argmin((x - mx) ** 2 + (y - my) ** 2))
    else:
        first = int(np.argmax(w))
    chosen = [first]
    nearest = (x - x[first]) ** 2 + (y - y[first]) ** 2
    while len(chosen) < k:
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, (x - x[nxt]) ** 2 + (y - y[nxt]) ** 2)
    centres_x, centres_y = x[chosen].copy(), y[chosen].copy()
    for _ in range(_LLOYD_STEPS):
        distance = (x[:, None] - centres_x[None, :]) ** 2 + (y[:, None] - centres_y[None, :]) ** 2
        assign = np.argmin(distance, axis=1)
        for c in range(k):
            members = assign == c
            if members.any():
                centres_x[c] = float((w[members] * x[members]).sum() / w[members].sum())
                centres_y[c] = float((w[members] * y[members]).sum() / w[members].sum())
    seeds: list[int] = []
    taken = np.zeros(len(units), dtype=bool)
    for c in range(k):
        distance = (x - centres_x[c]) ** 2 + (y - centres_y[c]) ** 2
        distance[taken] = np.inf
        pick = int(np.argmin(distance))
        taken[pick] = True
        seeds.append(units[pick])
    return seeds


def _grow(problem: _Problem, seeding: int) -> _Plan:
    """Seeds, then region growing (lightest grid first); pockets join the lightest adjacent grid."""
    label = [-1] * problem.n
    locked: list[bool] = []
    seed_net: list[int] = []
    for piece in problem.pieces:
        for u in piece.big:
            label[u] = len(locked)
            locked.append(True)
            seed_net.append(problem.net[u])
        free = [u for u in piece.units if not problem.big[u]]
        if piece.free_groups:
            for u in _seeds(problem, free, piece.free_groups, seeding):
                label[u] = len(locked)
                locked.append(False)
                seed_net.append(problem.net[u])
    k = len(locked)
    work = [0.0] * k
    sx, sy, sa = [0.0] * k, [0.0] * k, [0.0] * k
    # Per growing grid, the free units adjacent to it (some may have been taken since: skipped).
    frontier: list[set[int]] = [set() for _ in range(k)]
    cx, cy = problem.cx.tolist(), problem.cy.tolist()
    for u in range(problem.n):
        g = label[u]
        if g >= 0:
            a = problem.area[u]
            work[g] += problem.work[u]
            sx[g] += a * cx[u]
            sy[g] += a * cy[u]
            sa[g] += a
            if not locked[g]:
                frontier[g].update(
                    v for v, _, _ in problem.neighbours[u] if label[v] == -1 and not problem.big[v]
                )
    active = [not locked[g] for g in range(k)]
    check_net = problem.params.net_penalty > 0
    while True:
        candidates = [g for g in range(k) if active[g]]
        if not candidates:
            break
        g = min(candidates, key=lambda h: (work[h], h))
        gx = sx[g] / sa[g] if sa[g] > 0 else 0.0
        gy = sy[g] / sa[g] if sa[g] > 0 else 0.0
        best: tuple[float, int] | None = None
        taken = [v for v in frontier[g] if label[v] != -1]
        frontier[g].difference_update(taken)
        for v in frontier[g]:
            cost = math.hypot(cx[v] - gx, cy[v] - gy) / problem.l_ref
            if check_net and problem.net[v] != seed_net[g]:
                cost += 1.0
            if best is None or (cost, v) < best:
                best = (cost, v)
        if best is None:
            active[g] = False
            continue
        v = best[1]
        label[v] = g
        frontier[g].discard(v)
        frontier[g].update(w for w, _, _ in problem.neighbours[v] if label[w] == -1 and not problem.big[w])
        a = problem.area[v]
        work[g] += problem.work[v]
        sx[g] += a * cx[v]
        sy[g] += a * cy[v]
        sa[g] += a
    _attach_pockets(problem, label, locked)
    return _Plan(problem, label, locked)


def _search(problem: _Problem) -> _Plan:
    """The best plan found: grown from seeds, else cut from trees, then pair redraws with more trees.

    Plans are ranked by max/min where it is above the goal (balance is what a plan is for), then by the
    objective. The goal is ``max_ratio``, or the balance bound without contiguity when that is higher
    (an oversized unit, a detached piece: no plan does better, so searching on is no use).
    """
    goal = max(problem.params.max_ratio, _balance_bound(problem, contiguity=False))
    best: _Plan | None = None
    # With one free grid per piece every seeding gives the same plan, and there is nothing to balance.
    several = any(piece.free_groups > 1 for piece in problem.pieces)
    for seeding in range(_SEEDINGS if several else 1):
        plan = _grow(problem, seeding)
        plan.improve()
        if several:
            plan.recombine(random.Random(seeding), chains=False)
            plan.improve()
        if best is None or plan.key(goal) < best.key(goal):
            best = plan
    assert best is not None
    if not several or best.ratio() <= goal:
        return best
    for attempt in range(_TREE_PLANS):
        tree_plan = _tree_plan(problem, random.Random(attempt))
        if tree_plan is None:
            break
        tree_plan.improve()
        tree_plan.recombine(random.Random(attempt), chains=False)
        tree_plan.improve()
        if tree_plan.key(goal) < best.key(goal):
            best = tree_plan
        if best.ratio() <= goal:
            return best
    if _HARD_TREES:
        plan = best.copy()
        plan.recombine(random.Random(_SEEDINGS), _HARD_TREES)
        plan.improve()
        if plan.key(goal) < best.key(goal):
            best = plan
    return best


def _attach_pockets(problem: _Problem, label: list[int], locked: list[bool]) -> None:
    """Give every unlabelled connected pocket to its lightest adjacent grid (free grids first)."""
    work: dict[int, float] = {}
    for u in range(problem.n):
        if label[u] >= 0:
            work[label[u]] = work.get(label[u], 0.0) + problem.work[u]
    for start in range(problem.n):
        if label[start] != -1:
            continue
        pocket = [start]
        seen = {start}
        stack = [start]
        adjacent: set[int] = set()
        while stack:
            u = stack.pop()
            for v, _, _ in problem.neighbours[u]:
                if label[v] == -1 and v not in seen:
                    seen.add(v)
                    pocket.append(v)
                    stack.append(v)
                elif label[v] >= 0:
                    adjacent.add(label[v])
        if adjacent:
            target = min(adjacent, key=lambda g: (locked[g], work[g], g))
        else:
            # A piece with no grid at all (cannot happen for plans made here; guards repaired plans).
            target = len(locked)
            locked.append(False)
            work[target] = 0.0
        for u in pocket:
            label[u] = target
            work[target] += problem.work[u]


def _keep_current(problem: _Problem, current: IntArray) -> IntArray:
    """Repair the current plan, keep it if it is good, else improve it with a cost for every change."""
    values = sorted({int(v) for v in current.tolist() if v >= 0})
    rename = {v: r for r, v in enumerate(values)}
    label = [rename[int(v)] if v >= 0 else -1 for v in current.tolist()]
    k = len(values)
    # A grid's connected pieces (within the community's adjacency): keep the largest, free the rest.
    for g in range(k):
        members = [u for u in range(problem.n) if label[u] == g]
        parts: list[list[int]] = []
        seen: set[int] = set()
        for start in members:
            if start in seen:
                continue
            part = [start]
            seen.add(start)
            stack = [start]
            while stack:
                u = stack.pop()
                for v, _, _ in problem.neighbours[u]:
                    if label[v] == g and v not in seen:
                        seen.add(v)
                        part.append(v)
                        stack.append(v)
            parts.append(sorted(part))
        if len(parts) > 1:
            keep = max(parts, key=lambda part: (sum(problem.work[u] for u in part), len(part), -part[0]))
            for part in parts:
                if part is not keep:
                    for u in part:
                        label[u] = -1
    locked = [False] * k
    _attach_pockets(problem, label, locked)
    # Oversized single units stay out of the balance term, as in a new plan.
    for g in range(len(locked)):
        members = [u for u in range(problem.n) if label[u] == g]
        locked[g] = len(members) == 1 and problem.big[members[0]]
    plan = _Plan(problem, label, locked)
    if _is_good(problem, plan):
        return np.asarray(plan.label, dtype=np.int64)
    plan.origin = list(plan.label)
    plan.improve()
    plan.recombine(random.Random(0))
    plan.improve()
    if plan.ratio() > problem.params.max_ratio:
        plan.recombine(random.Random(1), _HARD_TREES)
        plan.improve()
    return np.asarray(plan.label, dtype=np.int64)


def _is_good(problem: _Problem, plan: _Plan) -> bool:
    """Every free grid within the size bounds and their max/min workload ratio at most ``max_ratio``."""
    params = problem.params
    free = [g for g in range(len(plan.locked)) if not plan.locked[g]]
    if not free:
        return True
    loads = [plan.work[g] for g in free]
    low, high = min(loads), max(loads)
    if high > 0 and (low <= 0 or high / low > params.max_ratio):
        return False
    if params.target_workload is not None:
        slack = math.sqrt(params.max_ratio)
        return all(params.target_workload / slack <= w <= params.target_workload * slack for w in loads)
    households = [0.0] * len(plan.locked)
    # Household bounds need the households themselves, which the plan does not track.
    for u in range(problem.n):
        households[plan.label[u]] += problem.households[u]
    return all(params.households_min <= households[g] <= params.households_max for g in free)
