"""Responsibility grids from whole unit grids: contiguous, compact and balanced, one community at a time.

A responsibility grid (DOMAIN.md §2) is a union of whole unit grids of one community, worked by one grid
worker. :func:`redraw_community` groups a community's unit grids into grids whose *workload* is balanced,
each grid one connected piece, compact, and following the old nets' lines where that costs little balance.
:func:`plan_quality` reports how good a plan is. All geometry is in a projected CRS in metres.

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
    the mean.
Algorithm
    1. Units are put in reading order (:func:`gis.plancodes.reading_order`: rows from the north, west to
       east), so nothing below depends on the input order; ties are broken by that order.
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
    5. Steps 2–4 run from a few seedings (farthest-point starts from different first units); the plan
       with the lowest objective wins, ties to the earlier seeding.
Minimal change (``keep_current``)
    The current labels are repaired (a grid's disconnected pieces other than its largest, and unlabelled
    units, join the lightest adjacent grid). If every grid is then within the size bounds and the max/min
    workload ratio is at most ``max_ratio``, the current plan is returned as it is. Otherwise local
    improvement (step 4) runs from it, with ``keep_weight`` added to the objective for every unit taken
    out of its current grid. The number of grids is kept.
Labels
    ``0..k-1``. New plans name grids in reading order of their first unit, so the same shapes give the
    same labels whatever the input order. With ``keep_current``, kept grids are numbered in the order of
    their current label values (labels already ``0..k-1`` stay as they are).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


class PlanQuality(TypedDict):
    """Quality of a community's plan; ``groups`` is ordered by label."""

    n_groups: int
    groups: list[GroupStats]
    max_min_ratio: float
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
        best: _Plan | None = None
        for seeding in range(_SEEDINGS):
            plan = _grow(problem, seeding)
            plan.improve()
            if best is None or plan.objective() < best.objective() - _EPS:
                best = plan
        assert best is not None
        canonical = _first_seen_labels(np.asarray(best.label, dtype=np.int64))
    labels = np.empty(problem.n, dtype=np.int64)
    labels[problem.order] = canonical
    return labels


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
        the union, ``contiguous`` (the union is one Polygon). For the community: ``max_min_ratio`` and
        ``cv`` (population standard deviation / mean) of grid workloads (inf / nan when undefined),
        ``outside_bounds`` (grids whose households lie outside ``[households_min, households_max]``),
        ``net_boundary_followed_share`` (share of the old-net boundary length between units that lies on
        grid boundaries; None when there is none), ``covers_all`` (every unit has a label ``0..k-1`` and
        every label is used), ``nested`` (no grid spans two connected pieces of the community).
    """
    array = np.asarray(units.geoms, dtype=object)
    label = np.asarray(labels, dtype=np.int64)
    if label.shape != (len(array),):
        raise ValueError("labels must have one value per unit")
    work = workload(units, params)
    households = _load(units, "households") if "households" in units.loads else np.zeros(len(array))
    used = np.unique(label[label >= 0])
    groups: list[GroupStats] = []
    for value in used:
        members = label == value
        union = shapely.union_all(array[members])
        area = float(shapely.area(union))
        perimeter = float(shapely.length(union))
        groups.append(
            GroupStats(
                label=int(value),
                n_units=int(members.sum()),
                workload=float(work[members].sum()),
                households=float(households[members].sum()),
                area_m2=area,
                perimeter_m=perimeter,
                polsby_popper=4 * math.pi * area / perimeter**2 if perimeter > 0 else 0.0,
                contiguous=union.geom_type == "Polygon",
            )
        )
    loads = np.asarray([g["workload"] for g in groups], dtype=np.float64)
    if len(loads) == 0:
        ratio, cv = math.nan, math.nan
    else:
        low, high, mean = float(loads.min()), float(loads.max()), float(loads.mean())
        ratio = high / low if low > 0 else (1.0 if high == 0 else math.inf)
        cv = float(loads.std()) / mean if mean > 0 else math.nan
    outside = sum(1 for g in groups if not params.households_min <= g["households"] <= params.households_max)
    i, j, length = unit_adjacency(array)
    share: float | None = None
    if units.net_ids is not None:
        nets = np.asarray(units.net_ids, dtype=np.int64)
        crossing = nets[i] != nets[j]
        total = float(length[crossing].sum())
        if total > 0:
            followed = crossing & (label[i] != label[j])
            share = float(length[followed].sum()) / total
    pieces = _pieces(len(array), i, j)
    nested = all(len(np.unique(pieces[label == value])) == 1 for value in used)
    covers_all = bool(np.all(label >= 0)) and np.array_equal(used, np.arange(len(used)))
    return PlanQuality(
        n_groups=len(groups),
        groups=groups,
        max_min_ratio=ratio,
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

    @staticmethod
    def build(units: CommunityUnits, params: RedrawParams) -> _Problem:
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
        if n and not bool(np.all(shapely.is_valid(geoms))):
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
    for u in range(problem.n):
        g = label[u]
        if g >= 0:
            a = problem.area[u]
            work[g] += problem.work[u]
            sx[g] += a * float(problem.cx[u])
            sy[g] += a * float(problem.cy[u])
            sa[g] += a
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
        for u in range(problem.n):
            if label[u] != g:
                continue
            for v, _, _ in problem.neighbours[u]:
                if label[v] != -1 or problem.big[v]:
                    continue
                cost = math.hypot(float(problem.cx[v]) - gx, float(problem.cy[v]) - gy) / problem.l_ref
                if check_net and problem.net[v] != seed_net[g]:
                    cost += 1.0
                if best is None or (cost, v) < best:
                    best = (cost, v)
        if best is None:
            active[g] = False
            continue
        v = best[1]
        label[v] = g
        a = problem.area[v]
        work[g] += problem.work[v]
        sx[g] += a * float(problem.cx[v])
        sy[g] += a * float(problem.cy[v])
        sa[g] += a
    _attach_pockets(problem, label, locked)
    return _Plan(problem, label, locked)


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
