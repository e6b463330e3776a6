"""Which unit grid owns a point: one point or millions, in memory, exactly as PostGIS would answer.

:class:`GridLocator` is built once from the unit grids, their responsibility grids and the districts, and
then answers :meth:`GridLocator.locate` for arrays of CGCS2000 (EPSG:4490) lon/lat points. The rules below
are the contract the service documents to its users.

Rules
-----
Containment
    Tested on the lon/lat polygons exactly as stored, with *covers* semantics (a point on a grid's boundary
    is in that grid). Every answer agrees with PostGIS ``ST_Covers(grid, point)`` and with
    ``geopandas.sjoin(..., predicate="intersects")`` on the same geometries; ``predicate="within"`` differs
    only for points exactly on a boundary.
Tie rule
    A point covered by exactly one grid is ``"inside"`` it (this includes a point on the outer boundary of
    a grid that faces a gap). A point covered by several grids (on a shared edge or vertex) is ``"edge"``
    and belongs to the grid with the smallest code (string order; equal codes: the smaller index).
Nearest grid
    A point in no grid but inside a district is given the grid nearest to it if that grid is within
    ``nearest_tolerance_m`` (``"nearest"``, ``distance_m`` set; equal distances: smallest code). Otherwise
    it is ``"territory"``: no grid, but the district is known.
Outside
    A point in no grid and in no district is ``"outside"``, even when a grid is within
    ``nearest_tolerance_m``: the city ends at the districts' union.
District (``territory_index``)
    For a point owned by a grid (``"inside"``/``"edge"``): the district that covers that whole grid
    (grids nest inside districts; smallest key if several do). If no district covers the whole grid (bad
    data), the district covering the point, or -1 if none does; ``how`` stays ``"inside"``/``"edge"``,
    because a grid's own polygon is the finer truth. For every other point: the district covering the
    point, smallest key if it is on a shared district boundary.
Distances
    Metres in ``metric_crs`` (EPSG:4548 for Jinan), measured between the query point and a copy of the
    grid polygons with every vertex transformed to that CRS (pyproj, ``always_xy=True``). Containment never
    uses the metric copy. An edge straight in lon/lat bows away from the straight metric edge (near Jinan
    at most 0.01 mm for a 25 m edge, 0.2 mm for 100 m, 16 mm for 1 km), so a point on a lon/lat boundary
    may be that far from the metric one; distances are measured to the metric boundary as is, except that
    a grid covering the point (in lon/lat) is at exactly 0.0.
Near-boundary candidates
    For every point with an owning grid (inside, edge or nearest): every *other* grid within
    ``boundary_tolerance_m`` whose ``grid_owner_keys`` value differs from the owning grid's (another
    responsibility grid, i.e. another person could be responsible), sorted by distance, then code. -1
    ("no responsibility grid") is compared like any other key. ``boundary_distance_m`` is the distance to
    the first candidate, NaN when there is none; ``near_boundary`` is True exactly when there is one.
Input
    NaN or infinite coordinates raise :class:`gis.crs.NonFiniteCoordinateError` (a ``ValueError``) naming
    the first bad index. Grid and district polygons must be valid (checked on construction). Grids must not
    overlap each other (a polygonal coverage, gaps allowed), as the import checks enforce; where they do
    overlap the answers are still those of ``ST_Covers`` plus the tie rule.

How it is fast
--------------
Most points never reach GEOS. A lattice of small lon/lat cells (about 8 per grid side) is classified
once: a cell that no grid boundary comes near lies wholly inside one grid or wholly in a gap; a cell
crossed by a single boundary segment, or holding one vertex where two segments bend, is split by that
boundary, so one or two exact orientation tests (Shewchuk's error-bounded filter, the same sign GEOS
computes) decide the side. Only points in the remaining cells (corners where three or more grids meet,
several vertices) and points too close to a boundary to be sure go to prepared GEOS ``intersects_xy``
tests against bounding-box candidates. What the lattice cannot prove, GEOS decides, so the lattice
changes speed, never answers.

Near-boundary distances are NumPy point-to-segment distances: a second lattice flag marks the cells where
a point can be within tolerance of another owner's grid at all, and for each grid, cut into 3 x 3
sub-boxes, only the segments of other-owner grids that can come within tolerance of the sub-box are
measured. Points in gaps get their nearest grid by branch and bound on bounding-box distances.

The locator is immutable after construction and safe to share between threads: the prepared GEOS indexes
are built eagerly.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt
import pyproj
import shapely

from gis.crs import STORAGE_CRS, check_finite
from gis.crs import metric_crs as validate_metric_crs

__all__ = [
    "HOW_LABELS",
    "GridLocator",
    "How",
    "LocateResult",
    "LocatedPoint",
]

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
Int32Array: TypeAlias = npt.NDArray[np.int32]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
GeomArray: TypeAlias = npt.NDArray[np.object_]


class How(enum.IntEnum):
    """How a point's grid was decided; the values are what ``LocateResult.how`` holds."""

    INSIDE = 0
    EDGE = 1
    NEAREST = 2
    TERRITORY = 3
    OUTSIDE = 4

    @property
    def label(self) -> str:
        """The lower-case name the service shows, e.g. ``"inside"``."""
        return HOW_LABELS[self.value]


HOW_LABELS: Final = ("inside", "edge", "nearest", "territory", "outside")

# Shewchuk's orient2d filter bound is (3 + 16 eps) * eps ~ 3.33e-16 relative; three times that keeps a margin.
# Outside the bound the float sign is the exact sign, the one GEOS's robust orientation returns.
_ORIENT_ERRBOUND: Final = 1e-15
# Lattice margins in degrees (1e-9 deg ~ 0.1 mm). A point computed into a cell lies within ~1e-13 deg of it
# (rounding of the floor), well inside _POINT_SLACK; segments are listed for cells within _SEG_MARGIN of
# them and vertices for cells within _VERTEX_MARGIN: slack < segment margin < vertex margin is what makes a
# one-segment cell provably split by that segment alone (see _PolygonLattice).
_POINT_SLACK: Final = 1e-10
_SEG_MARGIN: Final = 1e-9
_VERTEX_MARGIN: Final = 2e-9
# Lattice cell codes; codes <= _SEG0 are cells split by one segment or one bend (shape id = _SEG0 - code).
_FAR: Final = -1  # in no polygon, and provably beyond the reach distance of every polygon
_EMPTY: Final = -2  # in no polygon
_COMPLEX: Final = -3  # decided per point by GEOS
_SEG0: Final = -4
_GRID_CELLS_PER_SIDE: Final = 8
_GRID_MAX_CELLS: Final = 1 << 25  # 128 MiB of int32 at most
_TERRITORY_CELLS_PER_SIDE: Final = 256
_TERRITORY_MAX_CELLS: Final = 1 << 22
# Pruning by distance keeps this slack (metres) on top of the measured bow of lon/lat edges in metres.
_METRIC_SLACK_M: Final = 1.0
# Safety factor on the degrees-per-metre bound used to prove a lattice cell far from every grid.
_DEGREE_SAFETY: Final = 1.1
# Near-boundary work cuts each grid's metric box into this many sub-boxes per side (see _build_hazards).
_SPLIT: Final = 3
_CHUNK: Final = 1 << 21
# Box lower bounds and exact distances round differently; a prefilter keeps this much (metres) extra.
_ROUNDING_M: Final = 1e-6
_UNCERTAIN: Final = -2  # grid not covered by one district: look the district up per point


@dataclass(frozen=True, slots=True)
class LocatedPoint:
    """The answer for one point (see the module docstring for the rules).

    Attributes
    ----------
    grid_index : int
        Index of the owning unit grid in the locator's arrays, -1 if none.
    how : How
        How the grid was decided.
    territory_index : int
        Index of the district, -1 if none.
    distance_m : float
        0.0 for inside/edge, the metric distance for nearest, NaN otherwise.
    boundary_distance_m : float
        Distance to the nearest grid of another responsibility grid within tolerance, else NaN.
    near_boundary : bool
        True when ``candidates`` is not empty.
    candidates : tuple of (int, float)
        Other grids of other owners within tolerance: ``(grid_index, distance_m)``, nearest first.
    """

    grid_index: int
    how: How
    territory_index: int
    distance_m: float
    boundary_distance_m: float
    near_boundary: bool
    candidates: tuple[tuple[int, float], ...]


@dataclass(frozen=True, eq=False)
class LocateResult:
    """Answers for n points, one entry per point; all arrays are read-only.

    Attributes
    ----------
    grid_index : ndarray of int64, shape (n,)
        Owning unit grid (index into the locator's arrays), -1 if none.
    how : ndarray of int8, shape (n,)
        A :class:`How` value; ``HOW_LABELS[how]`` is its name.
    territory_index : ndarray of int64, shape (n,)
        District index, -1 if none.
    distance_m : ndarray of float64, shape (n,)
        0.0 for inside/edge, metres to the grid for nearest, NaN otherwise.
    boundary_distance_m : ndarray of float64, shape (n,)
        Metres to the nearest other-owner grid within tolerance (the first candidate), NaN if none.
    near_boundary : ndarray of bool, shape (n,)
        At least one candidate.
    candidate_offsets : ndarray of int64, shape (n + 1,)
        Point i's candidates are ``candidate_index[candidate_offsets[i]:candidate_offsets[i + 1]]``.
    candidate_index : ndarray of int64
        Candidate grids, per point sorted by distance then code.
    candidate_distance_m : ndarray of float64
        Their distances in metres.
    """

    grid_index: IntArray
    how: npt.NDArray[np.int8]
    territory_index: IntArray
    distance_m: FloatArray
    boundary_distance_m: FloatArray
    near_boundary: BoolArray
    candidate_offsets: IntArray
    candidate_index: IntArray
    candidate_distance_m: FloatArray

    def __len__(self) -> int:
        return len(self.grid_index)

    @property
    def how_labels(self) -> npt.NDArray[np.str_]:
        """``how`` as strings (``"inside"``, ``"edge"``, ...)."""
        return np.asarray(HOW_LABELS)[self.how]

    def candidates(self, i: int) -> list[tuple[int, float]]:
        """Near-boundary candidates of point ``i`` as ``(grid_index, distance_m)``, nearest first.

        Parameters
        ----------
        i : int
            Point index.

        Returns
        -------
        list of (int, float)
        """
        lo, hi = int(self.candidate_offsets[i]), int(self.candidate_offsets[i + 1])
        grids: list[int] = self.candidate_index[lo:hi].tolist()
        distances: list[float] = self.candidate_distance_m[lo:hi].tolist()
        return list(zip(grids, distances, strict=True))

    def point(self, i: int) -> LocatedPoint:
        """The answer for point ``i`` as a :class:`LocatedPoint`.

        Parameters
        ----------
        i : int
            Point index.

        Returns
        -------
        LocatedPoint
        """
        return LocatedPoint(
            grid_index=int(self.grid_index[i]),
            how=How(int(self.how[i])),
            territory_index=int(self.territory_index[i]),
            distance_m=float(self.distance_m[i]),
            boundary_distance_m=float(self.boundary_distance_m[i]),
            near_boundary=bool(self.near_boundary[i]),
            candidates=tuple(self.candidates(i)),
        )


# ------------------------------------------------------------------------------------------- helpers


def _expand(counts: IntArray) -> tuple[IntArray, IntArray]:
    """Row of every item and its position within the row, for rows of ``counts`` items."""
    row = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    start = np.cumsum(counts) - counts
    return row, np.arange(len(row), dtype=np.int64) - start[row]


def _cell(v: FloatArray, origin: float, size: float) -> IntArray:
    return np.floor((v - origin) / size).astype(np.int64)


def _group_starts(keys: IntArray) -> IntArray:
    """Start positions of the runs of equal values in sorted ``keys``."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


def _min_rank(
    point: IntArray, poly: IntArray, rank: IntArray, by_rank: IntArray, n: int
) -> tuple[IntArray, IntArray]:
    """Per point: how many (point, poly) pairs it has, and its poly of smallest rank (-1 if none).

    ``by_rank`` is the inverse permutation of ``rank``.
    """
    count = np.bincount(point, minlength=n).astype(np.int64)
    best = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, point, rank[poly])
    owner = np.full(n, -1, dtype=np.int64)
    has = count > 0
    owner[has] = by_rank[best[has]]
    return count, owner


def _stable_order(keys: IntArray, bits: int) -> IntArray:
    """Stable argsort of non-negative ``keys`` below ``2**bits``: 16-bit radix passes (NumPy sorts uint16
    by radix), many times faster than a comparison sort of int64."""
    order = np.arange(len(keys), dtype=np.int64)
    for shift in range(0, max(bits, 1), 16):
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
    return order


def _order_within_groups(groups: IntArray, key: FloatArray, tie: IntArray) -> IntArray:
    """Permutation putting each run of equal (sorted) ``groups`` in (key, tie) order.

    Runs are short (a point has a few candidates), so an odd-even transposition sort, one vectorised
    compare-and-swap pass per element of the longest run, beats a full lexsort; long runs fall back to it.
    """
    order = np.arange(len(groups), dtype=np.int64)
    if len(groups) < 2:
        return order
    longest = int(np.diff(np.r_[_group_starts(groups), len(groups)]).max())
    if longest > 16:
        return np.lexsort((tie, key, groups))
    same = groups[:-1] == groups[1:]
    for step in range(longest):
        i = np.flatnonzero(same[step % 2 :: 2]) * 2 + step % 2
        a, b = order[i], order[i + 1]
        swap = (key[a] > key[b]) | ((key[a] == key[b]) & (tie[a] > tie[b]))
        order[i[swap]], order[i[swap] + 1] = b[swap], a[swap]
    return order


def _rank(keys: npt.NDArray[np.str_]) -> IntArray:
    """Position of each key in (key, index) order: the tie order of the rules."""
    order = np.lexsort((np.arange(len(keys)), keys))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys), dtype=np.int64)
    return rank


def _check_polygons(geoms: GeomArray, what: str) -> None:
    kinds = shapely.get_type_id(geoms)
    bad = ~np.isin(kinds, [shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON])
    if bad.any():
        i = int(np.argmax(bad))
        kind = shapely.GeometryType(int(kinds[i])).name
        raise ValueError(f"{what} {i} is {kind}, not a Polygon or MultiPolygon")
    bad = shapely.is_empty(geoms) | ~shapely.is_valid(geoms)
    if bad.any():
        i = int(np.argmax(bad))
        reason = shapely.is_valid_reason(geoms[i])
        raise ValueError(f"{what} {i} is not a valid non-empty polygon: {reason}")


def _segments(geoms: GeomArray) -> tuple[FloatArray, IntArray, IntArray]:
    """Boundary segments of polygons, all rings of all parts.

    Returns ``(xy, polygon, first)``: ``xy`` holds every ring's vertices, and segment k runs from
    ``xy[first[k]]`` to ``xy[first[k] + 1]`` on the boundary of polygon ``polygon[k]``, in polygon order.
    Zero-length segments (repeated vertices) are dropped: they bound nothing.
    """
    parts, part_of = shapely.get_parts(geoms, return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    xy, coord_ring = shapely.get_coordinates(rings, return_index=True)
    same_ring = coord_ring[:-1] == coord_ring[1:]
    moves = (xy[:-1, 0] != xy[1:, 0]) | (xy[:-1, 1] != xy[1:, 1])
    first = np.flatnonzero(same_ring & moves).astype(np.int64)
    polygon = np.asarray(part_of, dtype=np.int64)[np.asarray(ring_of, dtype=np.int64)[coord_ring[first]]]
    return np.asarray(xy, dtype=np.float64), polygon, first


@dataclass(frozen=True, slots=True)
class _Hits:
    """Per point: the covering polygon of smallest rank (-1), covered by several, not provably beyond the
    lattice's reach from every polygon, lattice cell (``nx * ny`` outside the lattice); and every
    (point, polygon) pair of the points covered by several polygons."""

    owner: IntArray
    several: BoolArray
    near: BoolArray
    cell: IntArray
    pair_point: IntArray
    pair_poly: IntArray


class _BoxIndex:
    """Bounding-box candidates of points, from a regular lattice of polygon bounding boxes (CSR)."""

    def __init__(self, bounds: FloatArray, size: tuple[float, float], margin: float) -> None:
        self.bounds = bounds
        n = len(bounds)
        self.x0, self.y0 = float(bounds[:, 0].min()), float(bounds[:, 1].min())
        width = max(float(bounds[:, 2].max()) - self.x0, 1e-9)
        height = max(float(bounds[:, 3].max()) - self.y0, 1e-9)
        sx, sy = size
        # About as many cells as polygons keeps a few candidates per point and the table small.
        scale = max(1.0, np.sqrt((width / sx) * (height / sy) / max(4 * n, 1024)))
        self.sx, self.sy = sx * scale, sy * scale
        self.nx = int(width // self.sx) + 1
        self.ny = int(height // self.sy) + 1
        # Boxes are listed a margin beyond their edges, so a point on an edge that rounds into the next
        # cell still finds them.
        c0 = np.clip(_cell(bounds[:, 0] - margin, self.x0, self.sx), 0, self.nx - 1)
        c1 = np.clip(_cell(bounds[:, 2] + margin, self.x0, self.sx), 0, self.nx - 1)
        r0 = np.clip(_cell(bounds[:, 1] - margin, self.y0, self.sy), 0, self.ny - 1)
        r1 = np.clip(_cell(bounds[:, 3] + margin, self.y0, self.sy), 0, self.ny - 1)
        ncol = c1 - c0 + 1
        poly, pos = _expand(ncol * (r1 - r0 + 1))
        cells = (r0[poly] + pos // ncol[poly]) * self.nx + c0[poly] + pos % ncol[poly]
        order = np.argsort(cells, kind="stable")
        self.items = poly[order].astype(np.int32)
        self.start = np.searchsorted(cells[order], np.arange(self.nx * self.ny + 1)).astype(np.int64)

    def candidates(self, x: FloatArray, y: FloatArray) -> tuple[IntArray, IntArray]:
        """``(point, polygon)`` pairs whose polygon bounding box contains the point (boundary included)."""
        fx = (x - self.x0) / self.sx
        fy = (y - self.y0) / self.sy
        ok = (fx >= 0) & (fx < self.nx) & (fy >= 0) & (fy < self.ny)
        cell = np.zeros(len(x), dtype=np.int64)
        cell[ok] = fy[ok].astype(np.int64) * self.nx + fx[ok].astype(np.int64)
        lo = self.start[cell]
        counts = np.where(ok, self.start[cell + 1] - lo, 0)
        point, pos = _expand(counts)
        poly = self.items[lo[point] + pos].astype(np.int64)
        b = self.bounds[poly]
        px, py = x[point], y[point]
        inside = (b[:, 0] <= px) & (px <= b[:, 2]) & (b[:, 1] <= py) & (py <= b[:, 3])
        return point[inside], poly[inside]


def _orient(
    ax: FloatArray, ay: FloatArray, bx: FloatArray, by: FloatArray, px: FloatArray, py: FloatArray
) -> npt.NDArray[np.int8]:
    """Exact sign of Shewchuk's orient2d(a, b, p): +1 when p is left of a -> b, -1 right, 0 when on the line
    or too close to tell in floating point (the caller then asks GEOS)."""
    det_left = (ax - px) * (by - py)
    det_right = (ay - py) * (bx - px)
    det = det_left - det_right
    bound = np.abs(det_left)
    bound += np.abs(det_right)
    bound *= _ORIENT_ERRBOUND
    return (det > bound).astype(np.int8) - (det < -bound).astype(np.int8)


def _unique_rows(xy: FloatArray) -> tuple[FloatArray, IntArray]:
    """Distinct (x, y) rows and, for every input row, the index of its distinct row."""
    order = np.lexsort((xy[:, 1], xy[:, 0]))
    ordered = xy[order]
    new = np.ones(len(xy), dtype=bool)
    new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    inverse = np.empty(len(xy), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


class _PolygonLattice:
    """Exact "which polygons cover this point" for a polygon layer, decided by a lattice where it can be.

    Each cell is classified once, from every boundary segment within ``_SEG_MARGIN`` of it and every vertex
    within ``_VERTEX_MARGIN`` (the larger margin):

    * no segment, no vertex: the cell is wholly inside one polygon's interior or in none. One GEOS test per
      horizontal run of such cells decides (no boundary can separate two neighbours in a run).
    * one segment, no vertex: the segment's ends are outside the cell, so it crosses the cell and is the
      only boundary in it. The point's side of the segment decides.
    * one vertex with exactly two segments, and only those: the boundary in the cell is two rays from the
      vertex; the point's side of that bend decides.
    * anything else (corners where three or more grids meet, several vertices): GEOS ``intersects_xy`` on
      prepared polygons for every bounding-box candidate.

    Side tests use an error-bounded orientation; a point too close to a boundary to be certain goes to
    GEOS, so an exact boundary point is always decided by GEOS. The polygons recorded on each side of a
    segment are checked with a GEOS test of the cell centre, which catches overlapping polygons.
    """

    def __init__(
        self,
        geoms: GeomArray,
        rank: IntArray,
        *,
        cells_per_side: int,
        max_cells: int,
        reach: tuple[float, float] | None,
    ) -> None:
        self.geoms = geoms
        self.rank = rank
        self.by_rank = np.argsort(rank)
        shapely.prepare(geoms)
        bounds = np.asarray(shapely.bounds(geoms), dtype=np.float64)
        width = bounds[:, 2] - bounds[:, 0]
        height = bounds[:, 3] - bounds[:, 1]
        typical = (float(np.median(width)), float(np.median(height)))
        self.boxes = _BoxIndex(bounds, typical, _SEG_MARGIN)
        # Build each prepared index now: GEOS builds them lazily, which would race between threads.
        vertex = shapely.get_point(shapely.get_exterior_ring(shapely.get_geometry(geoms, 0)), 0)
        shapely.intersects_xy(geoms, shapely.get_x(vertex), shapely.get_y(vertex))

        reach_x, reach_y = reach if reach is not None else (0.0, 0.0)
        sx = typical[0] / cells_per_side
        sy = typical[1] / cells_per_side
        minx, miny = float(bounds[:, 0].min()) - reach_x, float(bounds[:, 1].min()) - reach_y
        maxx, maxy = float(bounds[:, 2].max()) + reach_x, float(bounds[:, 3].max()) + reach_y
        cells = ((maxx - minx) / sx + 3) * ((maxy - miny) / sy + 3)
        if cells > max_cells:
            grow = float(np.sqrt(cells / max_cells)) * 1.01
            sx, sy = sx * grow, sy * grow
        self.sx, self.sy = sx, sy
        self.x0, self.y0 = minx - sx, miny - sy
        self.nx = int((maxx - self.x0) // sx) + 2
        self.ny = int((maxy - self.y0) // sy) + 2
        self._build(reach)

    # ----------------------------------------------------------------------------------------- build

    def _build(self, reach: tuple[float, float] | None) -> None:
        ncell = self.nx * self.ny
        xy, polygon, first = _segments(shapely.orient_polygons(self.geoms, exterior_cw=False))
        a, b = xy[first], xy[first + 1]
        del xy, first
        # Normalise every segment to run from its lexicographically smaller end; oriented rings have the
        # interior on the left, so a flipped segment has its polygon on the right.
        flip = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
        a, b = np.where(flip[:, None], b, a), np.where(flip[:, None], a, b)
        order = np.lexsort((b[:, 1], b[:, 0], a[:, 1], a[:, 0]))
        a, b, polygon, flip = a[order], b[order], polygon[order], flip[order]
        new = np.ones(len(a), dtype=bool)
        new[1:] = np.any(a[1:] != a[:-1], axis=1) | np.any(b[1:] != b[:-1], axis=1)
        starts = np.flatnonzero(new)
        on_left = np.add.reduceat((~flip).astype(np.int64), starts)
        on_right = np.add.reduceat(flip.astype(np.int64), starts)
        left = np.maximum.reduceat(np.where(flip, -1, polygon), starts)
        right = np.maximum.reduceat(np.where(flip, polygon, -1), starts)
        # Two polygons on one side of a segment overlap: cells near it are left to GEOS.
        bad = (on_left > 1) | (on_right > 1)
        a, b = a[starts], b[starts]
        del polygon, flip, order, new, starts, on_left, on_right
        n_seg = len(a)
        vxy, vertex = _unique_rows(np.concatenate([a, b]))
        self.vx, self.vy = np.ascontiguousarray(vxy[:, 0]), np.ascontiguousarray(vxy[:, 1])
        seg_va, seg_vb = vertex[:n_seg], vertex[n_seg:]
        del vertex

        # Per cell: how many segments and vertices, and the lowest and highest segment (which are the
        # two segments where there are two). int32 keeps these lattice-sized arrays small.
        seg, cell = self._supercover(a, b)
        seg32 = seg.astype(np.int32)
        seg_count = np.bincount(cell, minlength=ncell).astype(np.int32)
        seg_lo = np.full(ncell, np.iinfo(np.int32).max, dtype=np.int32)
        np.minimum.at(seg_lo, cell, seg32)
        seg_hi = np.full(ncell, -1, dtype=np.int32)
        np.maximum.at(seg_hi, cell, seg32)
        complex_cell = np.zeros(ncell, dtype=bool)
        complex_cell[cell[bad[seg]]] = True
        del seg, seg32, cell
        vert, cell = self._vertex_cells(vxy)
        vert_count = np.bincount(cell, minlength=ncell).astype(np.int32)
        vert_of = np.zeros(ncell, dtype=np.int32)
        vert_of[cell] = vert
        del vert, cell

        # Vertices where exactly two segments meet: the bend P -> V -> Q with the same polygons on its two
        # sides along both segments (always so in a coverage; otherwise the cells go to GEOS).
        degree = np.bincount(np.concatenate([seg_va, seg_vb]), minlength=len(vxy))
        incident = np.argsort(np.concatenate([seg_va, seg_vb]), kind="stable") % n_seg
        inc_start = np.zeros(len(vxy) + 1, dtype=np.int64)
        np.cumsum(degree, out=inc_start[1:])
        bend = np.flatnonzero(degree == 2)
        s1, s2 = incident[inc_start[bend]], incident[inc_start[bend] + 1]
        # s1 runs P-V: along P -> V its left is s1's left when V is s1's end b.
        p_id = np.where(seg_vb[s1] == bend, seg_va[s1], seg_vb[s1])
        q_id = np.where(seg_va[s2] == bend, seg_vb[s2], seg_va[s2])
        left1 = np.where(seg_vb[s1] == bend, left[s1], right[s1])
        right1 = np.where(seg_vb[s1] == bend, right[s1], left[s1])
        left2 = np.where(seg_va[s2] == bend, left[s2], right[s2])
        right2 = np.where(seg_va[s2] == bend, right[s2], left[s2])
        vx, vy = self.vx, self.vy
        turn = _orient(vx[p_id], vy[p_id], vx[bend], vy[bend], vx[q_id], vy[q_id])
        good = (left1 == left2) & (right1 == right2) & ~bad[s1] & ~bad[s2] & (turn != 0)
        bend, s1, s2, p_id, q_id, left1, right1, turn = (
            arr[good] for arr in (bend, s1, s2, p_id, q_id, left1, right1, turn)
        )
        bend_ok = np.full(len(vxy), -1, dtype=np.int64)
        bend_ok[bend] = np.arange(len(bend))
        del degree, incident, inc_start, left2, right2, good

        one_mask = (seg_count == 1) & (vert_count == 0) & ~complex_cell
        k = bend_ok[vert_of]
        two_mask = (vert_count == 1) & (seg_count == 2) & ~complex_cell & (k >= 0)
        # The two segments listed must be exactly the bend's two.
        kk = np.maximum(k, 0)
        two_mask &= (seg_lo == np.minimum(s1, s2)[kk]) & (seg_hi == np.maximum(s1, s2)[kk])
        free_mask = (seg_count == 0) & (vert_count == 0) & ~complex_cell
        del seg_count, vert_count, seg_hi, complex_cell, kk

        code = np.full(ncell, _COMPLEX, dtype=np.int32)
        # Horizontal runs of free cells: one GEOS test each decides the whole run.
        free = np.flatnonzero(free_mask)
        del free_mask
        run_start = np.ones(len(free), dtype=bool)
        run_start[1:] = (np.diff(free) != 1) | (free[1:] % self.nx == 0)
        hx, hy = self._centres(free[run_start])
        n_cover, owner = self.cover(hx, hy)
        region = np.where(n_cover == 0, _EMPTY, np.where(n_cover == 1, owner, _COMPLEX)).astype(np.int32)
        code[free] = region[np.cumsum(run_start) - 1]
        del free, run_start

        # Shapes in use, renumbered densely: one-segment shapes first, then bends.
        one = np.flatnonzero(one_mask)
        used_seg, seg_local = np.unique(seg_lo[one], return_inverse=True)
        self.seg_a, self.seg_b = seg_va[used_seg].astype(np.int32), seg_vb[used_seg].astype(np.int32)
        self.seg_left, self.seg_right = left[used_seg].astype(np.int32), right[used_seg].astype(np.int32)
        code[one] = _SEG0 - seg_local.astype(np.int32)
        two = np.flatnonzero(two_mask)
        used_bend, bend_local = np.unique(k[two], return_inverse=True)
        self.bend_p, self.bend_v, self.bend_q = (
            ids[used_bend].astype(np.int32) for ids in (p_id, bend, q_id)
        )
        self.bend_left, self.bend_right = (
            left1[used_bend].astype(np.int32),
            right1[used_bend].astype(np.int32),
        )
        self.bend_turn = turn[used_bend]
        self.n_seg_shapes = len(used_seg)
        code[two] = _SEG0 - self.n_seg_shapes - bend_local.astype(np.int32)
        del seg_lo, vert_of, k, one_mask, two_mask

        # A polygon other than the recorded two covering a shape cell's centre covers the whole cell (its
        # boundary is not in the cell): an overlap. Those cells go to GEOS.
        shaped = np.concatenate([one, two])
        left_of = np.concatenate([self.seg_left[seg_local], self.bend_left[bend_local]])
        right_of = np.concatenate([self.seg_right[seg_local], self.bend_right[bend_local]])
        cx, cy = self._centres(shaped)
        point, _ = self.cover_pairs(cx, cy, exclude=(left_of, right_of))
        code[shaped[point]] = _COMPLEX

        if reach is not None:
            code[(code == _EMPTY) & ~self._dilate(code != _EMPTY, reach)] = _FAR
        # One extra cell, _FAR, stands for everywhere outside the lattice.
        self.code = np.r_[code, np.int32(_FAR)]

    def _centres(self, cells: IntArray) -> tuple[FloatArray, FloatArray]:
        row, col = np.divmod(cells, self.nx)
        return self.x0 + (col + 0.5) * self.sx, self.y0 + (row + 0.5) * self.sy

    def _supercover(self, a: FloatArray, b: FloatArray) -> tuple[IntArray, IntArray]:
        """``(segment, cell)`` for every cell whose box grown by ``_SEG_MARGIN`` a segment meets."""
        segs: list[IntArray] = []
        cells: list[IntArray] = []
        m = _SEG_MARGIN
        for lo in range(0, len(a), _CHUNK):
            ax, ay = a[lo : lo + _CHUNK, 0], a[lo : lo + _CHUNK, 1]
            bx, by = b[lo : lo + _CHUNK, 0], b[lo : lo + _CHUNK, 1]
            miny, maxy = np.minimum(ay, by), np.maximum(ay, by)
            # Normalised segments have ax <= bx: walk the columns, then the rows the segment spans in each.
            c0 = _cell(ax - m, self.x0, self.sx)
            c1 = _cell(bx + m, self.x0, self.sx)
            seg, pos = _expand(c1 - c0 + 1)
            col = c0[seg] + pos
            xl = np.maximum(self.x0 + col * self.sx - m, ax[seg])
            xr = np.minimum(self.x0 + (col + 1) * self.sx + m, bx[seg])
            dx = (bx - ax)[seg]
            vertical = dx == 0
            slope = np.where(vertical, 0.0, (by - ay)[seg] / np.where(vertical, 1.0, dx))
            yl = ay[seg] + (xl - ax[seg]) * slope
            yr = ay[seg] + (xr - ax[seg]) * slope
            ylo = np.where(vertical, miny[seg], np.clip(np.minimum(yl, yr), miny[seg], maxy[seg]))
            yhi = np.where(vertical, maxy[seg], np.clip(np.maximum(yl, yr), miny[seg], maxy[seg]))
            r0 = _cell(ylo - m, self.y0, self.sy)
            r1 = _cell(yhi + m, self.y0, self.sy)
            item, rpos = _expand(r1 - r0 + 1)
            segs.append(seg[item] + lo)
            cells.append((r0[item] + rpos) * self.nx + col[item])
        return np.concatenate(segs), np.concatenate(cells)

    def _vertex_cells(self, v: FloatArray) -> tuple[IntArray, IntArray]:
        """``(vertex, cell)`` for every cell whose box grown by ``_VERTEX_MARGIN`` holds a vertex."""
        m = _VERTEX_MARGIN
        c0 = _cell(v[:, 0] - m, self.x0, self.sx)
        c1 = _cell(v[:, 0] + m, self.x0, self.sx)
        r0 = _cell(v[:, 1] - m, self.y0, self.sy)
        r1 = _cell(v[:, 1] + m, self.y0, self.sy)
        index = np.arange(len(v), dtype=np.int64)
        # The margin is far below a cell, so a vertex touches at most 2 x 2 cells; drop the repeats.
        more_x, more_y = c1 != c0, r1 != r0
        vert = np.concatenate([index, index[more_x], index[more_y], index[more_x & more_y]])
        cell = np.concatenate(
            [
                r0 * self.nx + c0,
                (r0 * self.nx + c1)[more_x],
                (r1 * self.nx + c0)[more_y],
                (r1 * self.nx + c1)[more_x & more_y],
            ]
        )
        return vert, cell

    def _dilate(self, mask: BoolArray, reach: tuple[float, float]) -> BoolArray:
        """Cells within ``reach`` degrees (plus one cell) of a True cell, via a summed-area table."""
        kx = int(np.ceil(reach[0] / self.sx)) + 1
        ky = int(np.ceil(reach[1] / self.sy)) + 1
        grid = mask.reshape(self.ny, self.nx)
        table = np.zeros((self.ny + 1, self.nx + 1), dtype=np.int32)
        np.cumsum(grid, axis=0, dtype=np.int32, out=table[1:, 1:])
        np.cumsum(table[1:, 1:], axis=1, dtype=np.int32, out=table[1:, 1:])
        r0 = np.clip(np.arange(self.ny) - ky, 0, self.ny)[:, None]
        r1 = np.clip(np.arange(self.ny) + ky + 1, 0, self.ny)[:, None]
        c0 = np.clip(np.arange(self.nx) - kx, 0, self.nx)[None, :]
        c1 = np.clip(np.arange(self.nx) + kx + 1, 0, self.nx)[None, :]
        total = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
        return np.asarray(total > 0).ravel()

    # ----------------------------------------------------------------------------------------- query

    def cover_pairs(
        self, x: FloatArray, y: FloatArray, exclude: tuple[Int32Array, Int32Array] | None = None
    ) -> tuple[IntArray, IntArray]:
        """Every ``(point, polygon)`` with the polygon covering the point, by exact GEOS tests.

        ``exclude`` gives, per point, two polygons not to test (already known).
        """
        points: list[IntArray] = [np.zeros(0, dtype=np.int64)]
        polys: list[IntArray] = [np.zeros(0, dtype=np.int64)]
        for lo in range(0, len(x), _CHUNK):
            xs, ys = x[lo : lo + _CHUNK], y[lo : lo + _CHUNK]
            point, poly = self.boxes.candidates(xs, ys)
            if exclude is not None:
                keep = (poly != exclude[0][lo + point]) & (poly != exclude[1][lo + point])
                point, poly = point[keep], poly[keep]
            # Polygon order keeps each prepared index hot in cache across its points (about 3x faster).
            order = np.argsort(poly, kind="stable")
            point, poly = point[order], poly[order]
            hit = shapely.intersects_xy(self.geoms[poly], xs[point], ys[point])
            points.append(point[hit] + lo)
            polys.append(poly[hit])
        return np.concatenate(points), np.concatenate(polys)

    def cover(self, x: FloatArray, y: FloatArray) -> tuple[IntArray, IntArray]:
        """How many polygons cover each point, and the one with the smallest rank (-1 if none)."""
        point, poly = self.cover_pairs(x, y)
        return _min_rank(point, poly, self.rank, self.by_rank, len(x))

    def locate(self, x: FloatArray, y: FloatArray) -> _Hits:
        """Which polygons cover each point (see :class:`_Hits`)."""
        n = len(x)
        # Clipping first keeps far-away coordinates castable; they land on the outside cell.
        fx = np.clip((x - self.x0) / self.sx, -1.0, self.nx)
        fy = np.clip((y - self.y0) / self.sy, -1.0, self.ny)
        ok = (fx >= 0) & (fx < self.nx) & (fy >= 0) & (fy < self.ny)
        outside = self.nx * self.ny
        cell = np.where(ok, fy.astype(np.int64) * self.nx + fx.astype(np.int64), outside)
        code = self.code[cell]
        owner = code.astype(np.int64)
        owner[code < 0] = -1

        shaped = np.flatnonzero(code <= _SEG0)
        shape = _SEG0 - code[shaped].astype(np.int64)
        undecided = [np.flatnonzero(code == _COMPLEX)]
        on_seg = shape < self.n_seg_shapes
        if on_seg.any():
            i, k = shaped[on_seg], shape[on_seg]
            a, b = self.seg_a[k], self.seg_b[k]
            side = _orient(self.vx[a], self.vy[a], self.vx[b], self.vy[b], x[i], y[i])
            owner[i] = np.where(side > 0, self.seg_left[k], np.where(side < 0, self.seg_right[k], -1))
            undecided.append(i[side == 0])
        if not on_seg.all():
            i, k = shaped[~on_seg], shape[~on_seg] - self.n_seg_shapes
            p, v, q = self.bend_p[k], self.bend_v[k], self.bend_q[k]
            px, py, vx, vy = self.vx[p], self.vy[p], self.vx[v], self.vy[v]
            o1 = _orient(px, py, vx, vy, x[i], y[i])
            o2 = _orient(vx, vy, self.vx[q], self.vy[q], x[i], y[i])
            # At a left turn the left side is the wedge between the rays; at a right turn the right side
            # is. A point certainly outside the wedge is on the other side; anything unsure goes to GEOS.
            turn_left = self.bend_turn[k] > 0
            is_left = np.where(turn_left, (o1 > 0) & (o2 > 0), (o1 > 0) | (o2 > 0))
            is_right = np.where(turn_left, (o1 < 0) | (o2 < 0), (o1 < 0) & (o2 < 0))
            owner[i] = np.where(is_left, self.bend_left[k], np.where(is_right, self.bend_right[k], -1))
            undecided.append(i[~(is_left | is_right)])

        several = np.zeros(n, dtype=bool)
        pair_point = pair_poly = np.zeros(0, dtype=np.int64)
        rest = np.concatenate(undecided)
        if len(rest):
            point, poly = self.cover_pairs(x[rest], y[rest])
            count, best = _min_rank(point, poly, self.rank, self.by_rank, len(rest))
            owner[rest] = best
            several[rest] = count > 1
            keep = count[point] > 1
            pair_point, pair_poly = rest[point[keep]], poly[keep]
        return _Hits(owner, several, code != _FAR, cell, pair_point, pair_poly)


def _bbox_distance(px: FloatArray, py: FloatArray, box: FloatArray) -> FloatArray:
    """Distance from points to boxes ``(minx, miny, maxx, maxy)``: a lower bound of the distance to
    anything inside the box."""
    dx = np.maximum(np.maximum(box[:, 0] - px, px - box[:, 2]), 0.0)
    dy = np.maximum(np.maximum(box[:, 1] - py, py - box[:, 3]), 0.0)
    dx *= dx
    dy *= dy
    dx += dy
    return np.sqrt(dx)


def _argmin_per_group(groups: IntArray, key: FloatArray, tie: IntArray | None = None) -> IntArray:
    """Position of the row with the smallest ``key`` (then ``tie``) in every run of equal ``groups``.

    ``groups`` must be sorted; a linear pass per key instead of a sort.
    """
    rows = np.arange(len(groups))
    for values in (key, tie):
        if values is None or len(rows) == 0:
            continue
        starts = _group_starts(groups[rows])
        lowest = np.minimum.reduceat(values[rows], starts)
        rows = rows[values[rows] == np.repeat(lowest, np.diff(np.r_[starts, len(rows)]))]
    return rows[_group_starts(groups[rows])]


# --------------------------------------------------------------------------------------------- locator


class GridLocator:
    """Find the unit grid owning each point, with near-boundary alternatives; rules in the module docstring.

    Parameters
    ----------
    grid_geoms_lonlat : ndarray of shapely Polygon/MultiPolygon
        Unit grids in CGCS2000 lon/lat (EPSG:4490), as stored in PostGIS; valid, and normally a coverage
        (no overlaps; gaps allowed). They are prepared in place (:func:`shapely.prepare`).
    grid_keys : ndarray of int64
        ``unit_grid.id`` of each grid.
    grid_codes : ndarray of str
        Unit grid codes; the tie order (smallest wins).
    grid_owner_keys : ndarray of int64
        Responsibility-grid id of each unit grid, -1 if none.
    territory_geoms_lonlat : ndarray of shapely Polygon/MultiPolygon
        District polygons in lon/lat; the city is their union. Prepared in place.
    territory_keys : ndarray of str
        District codes; the tie order on shared district boundaries.
    metric_crs : str
        Projected CRS in metres for distances.
    boundary_tolerance_m : float
        Radius for near-boundary candidates.
    nearest_tolerance_m : float
        How far from a grid a point in a gap may be and still be given that grid.

    Raises
    ------
    ValueError
        If the arrays differ in length, a geometry is not a valid non-empty (Multi)Polygon, a tolerance is
        negative or not finite, or ``metric_crs`` is not a projected CRS in metres.

    Attributes
    ----------
    grid_keys, grid_codes, grid_owner_keys, territory_keys : ndarray
        The constructor's arrays (read-only); result indices point into them.
    grid_geoms_metric : ndarray of shapely Polygon/MultiPolygon
        The grids in ``metric_crs``, which every distance is measured to (built on first use).
    metric_crs, boundary_tolerance_m, nearest_tolerance_m
        As given.
    """

    def __init__(
        self,
        *,
        grid_geoms_lonlat: GeomArray,
        grid_keys: npt.ArrayLike,
        grid_codes: npt.ArrayLike,
        grid_owner_keys: npt.ArrayLike,
        territory_geoms_lonlat: GeomArray,
        territory_keys: npt.ArrayLike,
        metric_crs: str = "EPSG:4548",
        boundary_tolerance_m: float = 30.0,
        nearest_tolerance_m: float = 100.0,
    ) -> None:
        grids = np.asarray(grid_geoms_lonlat, dtype=object)
        territories = np.asarray(territory_geoms_lonlat, dtype=object)
        self.grid_keys = np.asarray(grid_keys, dtype=np.int64)
        self.grid_codes = np.asarray(grid_codes).astype(str)
        self.grid_owner_keys = np.asarray(grid_owner_keys, dtype=np.int64)
        self.territory_keys = np.asarray(territory_keys).astype(str)
        n = len(grids)
        for name, values in (
            ("grid_keys", self.grid_keys),
            ("grid_codes", self.grid_codes),
            ("grid_owner_keys", self.grid_owner_keys),
        ):
            if values.shape != (n,):
                raise ValueError(f"{name} has shape {values.shape}, expected ({n},) like grid_geoms_lonlat")
        if self.territory_keys.shape != (len(territories),):
            raise ValueError(
                f"territory_keys has shape {self.territory_keys.shape}, expected ({len(territories)},)"
            )
        if n == 0 or len(territories) == 0:
            raise ValueError("a locator needs at least one unit grid and one district")
        for name, tol in (
            ("boundary_tolerance_m", boundary_tolerance_m),
            ("nearest_tolerance_m", nearest_tolerance_m),
        ):
            if not (np.isfinite(tol) and tol >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")
        metric_crs_checked = validate_metric_crs(metric_crs)
        _check_polygons(grids, "grid")
        _check_polygons(territories, "district")
        for array in (self.grid_keys, self.grid_codes, self.grid_owner_keys, self.territory_keys):
            array.flags.writeable = False

        self.metric_crs = metric_crs
        self.boundary_tolerance_m = float(boundary_tolerance_m)
        self.nearest_tolerance_m = float(nearest_tolerance_m)
        self._to_metric = pyproj.Transformer.from_crs(STORAGE_CRS, metric_crs_checked, always_xy=True)
        self._grid_rank = _rank(self.grid_codes)

        metric = self._metric_geoms(grids)
        self._metric_bounds = np.asarray(shapely.bounds(metric), dtype=np.float64)
        # The same bounds as flat columns, which NumPy gathers faster than rows.
        self._mb_minx, self._mb_miny, self._mb_maxx, self._mb_maxy = (
            np.ascontiguousarray(self._metric_bounds[:, i]) for i in range(4)
        )
        # Grids whose box is within reach of a point, for points in gaps: a NumPy lattice, cheaper per
        # point than an STRtree query with a box.
        reach = max(self.nearest_tolerance_m, self.boundary_tolerance_m) + _ROUNDING_M
        mb = self._metric_bounds
        self._reach_boxes = _BoxIndex(
            mb + np.array([-reach, -reach, reach, reach]),
            (float(np.median(mb[:, 2] - mb[:, 0])), float(np.median(mb[:, 3] - mb[:, 1]))),
            _ROUNDING_M,
        )
        # The metric copy as flat vertex columns (NumPy gathers those faster than rows); segment k runs from
        # vertex _seg_first[k] to the next, and a grid's segments are _grid_seg_start[g]:[g + 1].
        mxy, seg_grid, first = _segments(metric)
        self._mx, self._my = np.ascontiguousarray(mxy[:, 0]), np.ascontiguousarray(mxy[:, 1])
        self._seg_first = first.astype(np.int32 if len(mxy) < 2**31 - 1 else np.int64)
        del mxy, first
        self._grid_seg_start = np.searchsorted(seg_grid, np.arange(n + 1)).astype(np.int64)
        # A point in a lon/lat grid can lie outside the metric copy by the bow of the grid's edges; every
        # pruning by distance keeps this much slack.
        self._slack_m = _METRIC_SLACK_M + 3.0 * self._bow_m()

        self._grids = _PolygonLattice(
            grids,
            self._grid_rank,
            cells_per_side=_GRID_CELLS_PER_SIDE,
            max_cells=_GRID_MAX_CELLS,
            reach=self._degrees(grids, self.nearest_tolerance_m + self._slack_m),
        )
        self._territories = _PolygonLattice(
            territories,
            _rank(self.territory_keys),
            cells_per_side=_TERRITORY_CELLS_PER_SIDE,
            max_cells=_TERRITORY_MAX_CELLS,
            reach=None,
        )
        self._grid_territory = self._territory_of_grids(grids)
        self._build_hazards(metric)

    @functools.cached_property
    def grid_geoms_metric(self) -> GeomArray:
        """The grids in ``metric_crs``: every vertex transformed, the geometry distances are measured to.

        Built on first use; the locator itself keeps this copy as flat arrays of segments.
        """
        return self._metric_geoms(self._grids.geoms)

    # ----------------------------------------------------------------------------------------- build

    def _metric_geoms(self, geoms: GeomArray) -> GeomArray:
        def to_metric(coords: FloatArray) -> FloatArray:
            mx, my = self._to_metric.transform(coords[:, 0], coords[:, 1])
            return np.column_stack([mx, my])

        return np.asarray(shapely.transform(geoms, to_metric), dtype=object)

    def _bow_m(self) -> float:
        """How far the longest grid edges, straight in lon/lat, bow away from their straight metric copies
        (measured at their midpoints, where the bow peaks)."""
        first = self._seg_first.astype(np.int64)
        length = np.hypot(self._mx[first + 1] - self._mx[first], self._my[first + 1] - self._my[first])
        top = np.argsort(length)[-1000:]
        ax, ay = self._mx[first[top]], self._my[first[top]]
        dx, dy = self._mx[first[top] + 1] - ax, self._my[first[top] + 1] - ay
        back = pyproj.Transformer.from_crs(self._to_metric.target_crs, STORAGE_CRS, always_xy=True)
        lon0, lat0 = back.transform(ax, ay)
        lon1, lat1 = back.transform(ax + dx, ay + dy)
        mx, my = self._to_metric.transform((lon0 + lon1) / 2, (lat0 + lat1) / 2)
        off = np.abs(dx * (my - ay) - dy * (mx - ax)) / np.maximum(length[top], 1e-9)
        return float(off.max(initial=0.0))

    def _degrees(self, geoms: GeomArray, metres: float) -> tuple[float, float]:
        """The most degrees of lon and of lat that ``metres`` can span anywhere near ``geoms``."""
        minx, miny, maxx, maxy = (float(v) for v in shapely.total_bounds(geoms))
        pad = 0.05
        lon, lat = (
            a.ravel()
            for a in np.meshgrid(
                np.linspace(minx - pad, maxx + pad, 7), np.linspace(miny - pad, maxy + pad, 7)
            )
        )
        step = 1e-4
        x0, y0 = self._to_metric.transform(lon, lat)
        xe, ye = self._to_metric.transform(lon + step, lat)
        xn, yn = self._to_metric.transform(lon, lat + step)
        jac = np.stack([[xe - x0, xn - x0], [ye - y0, yn - y0]]).transpose(2, 0, 1) / step
        # d(lon, lat) = J^-1 d(x, y): a row norm of J^-1 bounds that coordinate's change per metre. The
        # Jacobian varies by far less than the safety factor across a city.
        rows = np.linalg.norm(np.linalg.inv(jac), axis=2).max(axis=0) * _DEGREE_SAFETY
        return metres * float(rows[0]), metres * float(rows[1])

    def _territory_of_grids(self, grids: GeomArray) -> IntArray:
        """The district covering each whole grid (smallest key), ``_UNCERTAIN`` where none does."""
        lattice = self._territories
        n = len(grids)
        out = np.full(n, _UNCERTAIN, dtype=np.int64)
        bounds = self._grids.boxes.bounds
        c0 = _cell(bounds[:, 0] - _SEG_MARGIN, lattice.x0, lattice.sx)
        c1 = _cell(bounds[:, 2] + _SEG_MARGIN, lattice.x0, lattice.sx)
        r0 = _cell(bounds[:, 1] - _SEG_MARGIN, lattice.y0, lattice.sy)
        r1 = _cell(bounds[:, 3] + _SEG_MARGIN, lattice.y0, lattice.sy)
        inside = (c0 >= 0) & (r0 >= 0) & (c1 < lattice.nx) & (r1 < lattice.ny)
        ncol = np.where(inside, c1 - c0 + 1, 0)
        grid, pos = _expand(ncol * np.where(inside, r1 - r0 + 1, 0))
        code = lattice.code[(r0[grid] + pos // ncol[grid]) * lattice.nx + c0[grid] + pos % ncol[grid]]
        # A grid whose bounding box lies in cells wholly inside one district is covered by it alone.
        lowest = np.full(n, np.iinfo(np.int32).max, dtype=np.int64)
        highest = np.full(n, np.iinfo(np.int32).min, dtype=np.int64)
        np.minimum.at(lowest, grid, code)
        np.maximum.at(highest, grid, code)
        pure = inside & (lowest == highest) & (lowest >= 0)
        out[pure] = lowest[pure]
        rest = np.flatnonzero(~pure)
        if len(rest):
            tree = shapely.STRtree(lattice.geoms)
            grid_i, district = tree.query(grids[rest], predicate="covered_by")
            _, best = _min_rank(grid_i, district, lattice.rank, lattice.by_rank, len(rest))
            out[rest[best >= 0]] = best[best >= 0]
        return out

    def _build_hazards(self, metric: GeomArray) -> None:
        """Per grid, the other-owner grids that may come within tolerance of its points, the segments of
        theirs that may, and the lattice cells where a point may; bounding boxes prove the rest too far."""
        reach = self.boundary_tolerance_m + self._slack_m
        mb = self._metric_bounds
        boxes = shapely.box(mb[:, 0] - reach, mb[:, 1] - reach, mb[:, 2] + reach, mb[:, 3] + reach)
        g, h = shapely.STRtree(metric).query(boxes)
        g, h = np.asarray(g, dtype=np.int64), np.asarray(h, dtype=np.int64)
        keep = (g != h) & (self.grid_owner_keys[g] != self.grid_owner_keys[h])
        g, h = g[keep], h[keep]
        keep = _box_gap(mb[g], mb[h]) <= reach
        g, h = g[keep], h[keep]
        order = np.lexsort((h, g))
        g, h = g[order], h[order]

        # Each grid's metric box is cut into _SPLIT x _SPLIT sub-boxes; for every sub-box, the other-owner
        # grids within reach of it and, of each, only the segments within reach. A point then measures to
        # a handful of segments instead of to every segment of every neighbour.
        first = self._seg_first.astype(np.int64)
        x0, y0, x1, y1 = self._mx[first], self._my[first], self._mx[first + 1], self._my[first + 1]
        seg_box = np.column_stack(
            [np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1)]
        )
        del x0, y0, x1, y1
        k = _SPLIT
        sub_w = (mb[:, 2] - mb[:, 0]) / k
        sub_h = (mb[:, 3] - mb[:, 1]) / k
        start = self._grid_seg_start
        items: list[tuple[IntArray, IntArray, IntArray]] = []  # (key, other grid, segment count)
        # Kept as the segments' first vertices, which is what the distance kernel reads.
        refs: list[npt.NDArray[np.integer]] = []
        most = int((start[1:] - start[:-1]).max(initial=1))
        step = max(1, _CHUNK // (k * k * most))
        for lo in range(0, len(g), step):
            gg, hh = g[lo : lo + step], h[lo : lo + step]
            pair, q = _expand(np.full(len(gg), k * k, dtype=np.int64))
            gp, hp = gg[pair], hh[pair]
            col, row = q % k, q // k
            sub = np.column_stack(
                [
                    mb[gp, 0] + col * sub_w[gp],
                    mb[gp, 1] + row * sub_h[gp],
                    mb[gp, 0] + (col + 1) * sub_w[gp],
                    mb[gp, 1] + (row + 1) * sub_h[gp],
                ]
            )
            near = _box_gap(sub, mb[hp]) <= reach
            gp, hp, q, sub = gp[near], hp[near], q[near], sub[near]
            item, pos = _expand(start[hp + 1] - start[hp])
            seg = start[hp][item] + pos
            close = _box_gap(seg_box[seg], sub[item]) <= reach
            refs.append(self._seg_first[seg[close]])
            items.append((gp * (k * k) + q, hp, np.bincount(item[close], minlength=len(hp))))
        # Items in (grid, sub-box, other grid) order; their segments follow in the same order.
        key = np.concatenate([np.zeros(0, dtype=np.int64), *(i[0] for i in items)])
        other = np.concatenate([np.zeros(0, dtype=np.int64), *(i[1] for i in items)])
        counts = np.concatenate([np.zeros(0, dtype=np.int64), *(i[2] for i in items)])
        seg_refs = np.concatenate([np.zeros(0, dtype=self._seg_first.dtype), *refs])
        del items, refs, seg_box
        order = np.lexsort((other, key))
        seg_lo = np.cumsum(counts) - counts
        item_of_ref, pos = _expand(counts[order])
        self._hz_seg = seg_refs[seg_lo[order][item_of_ref] + pos]
        self._hz_seg_start = np.r_[0, np.cumsum(counts[order])].astype(np.int64)
        self._hz_grid = other[order].astype(np.int32)
        self._hz_start = np.searchsorted(key[order], np.arange(len(mb) * k * k + 1)).astype(np.int64)
        del key, other, counts, seg_refs, order, seg_lo, item_of_ref, pos

        # Lattice cells where a point of g can be within tolerance of h: g's lon/lat box cut with h's box
        # grown by the tolerance in degrees. A point elsewhere has no candidates and skips all of this.
        lattice = self._grids
        rx, ry = self._degrees(lattice.geoms, reach)
        ll = lattice.boxes.bounds
        s = _POINT_SLACK
        box = np.column_stack(
            [
                np.maximum(ll[g, 0], ll[h, 0] - rx) - s,
                np.maximum(ll[g, 1], ll[h, 1] - ry) - s,
                np.minimum(ll[g, 2], ll[h, 2] + rx) + s,
                np.minimum(ll[g, 3], ll[h, 3] + ry) + s,
            ]
        )
        box = box[(box[:, 0] <= box[:, 2]) & (box[:, 1] <= box[:, 3])]
        c0 = _cell(box[:, 0], lattice.x0, lattice.sx)
        c1 = _cell(box[:, 2], lattice.x0, lattice.sx)
        r0 = _cell(box[:, 1], lattice.y0, lattice.sy)
        r1 = _cell(box[:, 3], lattice.y0, lattice.sy)
        ncol = c1 - c0 + 1
        area = ncol * (r1 - r0 + 1)
        # Like the lattice's codes, one extra cell (False) for outside the lattice.
        self._near_cell = np.zeros(lattice.nx * lattice.ny + 1, dtype=bool)
        step = max(1, _CHUNK // max(1, int(area.max(initial=1))))
        for lo in range(0, len(box), step):
            b, pos = _expand(area[lo : lo + step])
            b += lo
            self._near_cell[(r0[b] + pos // ncol[b]) * lattice.nx + c0[b] + pos % ncol[b]] = True

    # ----------------------------------------------------------------------------------------- query

    def locate(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> LocateResult:
        """Locate points.

        Parameters
        ----------
        lon, lat : array_like of float
            CGCS2000 (EPSG:4490) degrees, one-dimensional (or scalars), same shape.

        Returns
        -------
        LocateResult
            One entry per point.

        Raises
        ------
        gis.crs.NonFiniteCoordinateError
            A ``ValueError`` naming the first NaN or infinite coordinate.
        gis.crs.CoordinateError
            A ``ValueError`` if the shapes differ or the input is not numeric.
        ValueError
            If the input is not one-dimensional.
        """
        check_finite(lon, lat)
        x = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        y = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        if x.ndim != 1:
            raise ValueError(f"lon and lat must be one-dimensional, got shape {x.shape}")
        n = len(x)

        hits = self._grids.locate(x, y)
        grid = hits.owner
        owned = grid >= 0
        how = np.where(owned, np.where(hits.several, How.EDGE, How.INSIDE), How.OUTSIDE).astype(np.int8)
        distance = np.where(owned, 0.0, np.nan)

        territory = np.full(n, -1, dtype=np.int64)
        territory[owned] = self._grid_territory[grid[owned]]
        lookup = np.flatnonzero(~owned | (territory == _UNCERTAIN))
        if len(lookup):
            territory[lookup] = self._territories.locate(x[lookup], y[lookup]).owner

        stray = np.flatnonzero(~owned & (territory >= 0))
        how[stray] = How.TERRITORY
        found: list[tuple[IntArray, IntArray, FloatArray]] = []
        seek = stray[hits.near[stray]]
        if len(seek) and self.nearest_tolerance_m > 0:
            found.append(self._nearest(x, y, seek, grid, how, distance))
        at_risk = np.flatnonzero(owned & self._near_cell[hits.cell])
        if len(at_risk):
            found.append(self._boundary(x, y, at_risk, grid, hits.pair_point, hits.pair_poly))

        point = np.concatenate([np.zeros(0, dtype=np.int64), *(p for p, _, _ in found)])
        other = np.concatenate([np.zeros(0, dtype=np.int64), *(o for _, o, _ in found)])
        dist = np.concatenate([np.zeros(0), *(d for _, _, d in found)])
        # Each part is already in point order, so this stable sort is a cheap merge.
        order = np.argsort(point, kind="stable")
        point, other, dist = point[order], other[order], dist[order]
        order = _order_within_groups(point, dist, self._grid_rank[other])
        other, dist = other[order], dist[order]
        counts = np.bincount(point, minlength=n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        near_boundary = counts > 0
        boundary = np.full(n, np.nan)
        boundary[near_boundary] = dist[offsets[:-1][near_boundary]]

        arrays = (grid, how, territory, distance, boundary, near_boundary, offsets, other, dist)
        for array in arrays:
            array.flags.writeable = False
        return LocateResult(*arrays)

    def locate_one(self, lon: float, lat: float) -> LocatedPoint:
        """Locate a single point (the same code path as :meth:`locate`).

        Parameters
        ----------
        lon, lat : float
            CGCS2000 (EPSG:4490) degrees.

        Returns
        -------
        LocatedPoint

        Raises
        ------
        gis.crs.NonFiniteCoordinateError
            A ``ValueError`` if a coordinate is NaN or infinite.
        ValueError
            If ``lon`` or ``lat`` is not a scalar.
        """
        if np.ndim(lon) != 0 or np.ndim(lat) != 0:
            raise ValueError("locate_one takes one point: use locate() for arrays")
        return self.locate(np.array([lon], dtype=np.float64), np.array([lat], dtype=np.float64)).point(0)

    def _metric(self, lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
        if len(lon) == 0:
            return np.zeros(0), np.zeros(0)
        mx, my = self._to_metric.transform(lon, lat)
        return np.asarray(mx, dtype=np.float64), np.asarray(my, dtype=np.float64)

    def _segment_distance(
        self, px: FloatArray, py: FloatArray, item: IntArray, start: npt.NDArray[np.integer]
    ) -> FloatArray:
        """For n items (point ``px[i], py[i]``): the distance to the nearest of its segments, given as
        ``(item, first vertex)`` rows sorted by item; inf for an item without segments."""
        start = start.astype(np.int64)
        x0, y0 = self._mx[start], self._my[start]
        start += 1
        dx, dy = self._mx[start], self._my[start]
        dx -= x0
        dy -= y0
        qx = px[item]
        qx -= x0
        qy = py[item]
        qy -= y0
        # Parameter of the closest point along the segment, clamped to it; in place to spare temporaries.
        t = qx * dx
        t += qy * dy
        length2 = dx * dx
        length2 += dy * dy
        t /= length2
        np.clip(t, 0.0, 1.0, out=t)
        dx *= t
        dy *= t
        qx -= dx
        qy -= dy
        qx *= qx
        qy *= qy
        qx += qy
        out = np.full(len(px), np.inf)
        if len(item):
            starts = _group_starts(item)
            out[item[starts]] = np.sqrt(np.minimum.reduceat(qx, starts))
        return out

    def _grid_distance(self, mx: FloatArray, my: FloatArray, point: IntArray, grid: IntArray) -> FloatArray:
        """Metric distance from ``(mx, my)[point]`` to the boundary of each ``grid``."""
        lo = self._grid_seg_start[grid]
        item, pos = _expand(self._grid_seg_start[grid + 1] - lo)
        return self._segment_distance(mx[point], my[point], item, self._seg_first[lo[item] + pos])

    def _nearest(
        self,
        x: FloatArray,
        y: FloatArray,
        seek: IntArray,
        grid: IntArray,
        how: npt.NDArray[np.int8],
        distance: FloatArray,
    ) -> tuple[IntArray, IntArray, FloatArray]:
        """Give points in gaps their nearest grid within tolerance (in place); return their candidates."""
        ntol, btol = self.nearest_tolerance_m, self.boundary_tolerance_m
        mx, my = self._metric(x[seek], y[seek])
        # Rows come in point order: every grid whose box is within reach (in both axes) of the point.
        point, other = self._reach_boxes.candidates(mx, my)
        low = _bbox_distance(mx[point], my[point], self._metric_bounds[other])
        keep = low <= max(ntol, btol) + _ROUNDING_M
        point, other, low = point[keep], other[keep], low[keep]

        # Branch and bound: the exact distance to the grid with the smallest lower bound caps the nearest
        # distance, so only grids whose lower bound is within that cap need an exact distance.
        close = np.flatnonzero(low <= ntol + _ROUNDING_M)
        first = close[_argmin_per_group(point[close], low[close])]
        exact = np.full(len(point), np.inf)
        exact[first] = self._grid_distance(mx, my, point[first], other[first])
        cap = np.full(len(seek), -np.inf)
        cap[point[first]] = exact[first]
        more = close[
            (low[close] <= np.maximum(cap[point[close]], 0.0) + _ROUNDING_M) & np.isinf(exact[close])
        ]
        exact[more] = self._grid_distance(mx, my, point[more], other[more])
        close = close[exact[close] <= ntol]
        best = close[_argmin_per_group(point[close], exact[close], self._grid_rank[other[close]])]
        owner = np.full(len(seek), -1, dtype=np.int64)
        owner[point[best]] = other[best]
        hit = seek[point[best]]
        grid[hit] = other[best]
        how[hit] = How.NEAREST
        distance[hit] = exact[best]

        mine = owner[point]
        cand = np.flatnonzero(
            (mine >= 0)
            & (low <= btol + _ROUNDING_M)
            & (other != mine)
            & (self.grid_owner_keys[other] != self.grid_owner_keys[np.maximum(mine, 0)])
        )
        known = np.isfinite(exact[cand])
        exact[cand[~known]] = self._grid_distance(mx, my, point[cand[~known]], other[cand[~known]])
        cand = cand[exact[cand] <= btol]
        return seek[point[cand]], other[cand], exact[cand]

    def _boundary(
        self,
        x: FloatArray,
        y: FloatArray,
        at_risk: IntArray,
        grid: IntArray,
        pair_point: IntArray,
        pair_grid: IntArray,
    ) -> tuple[IntArray, IntArray, FloatArray]:
        """Near-boundary candidates of inside/edge points: other-owner grids within tolerance."""
        tol = self.boundary_tolerance_m
        # In grid order the points of one grid share its hazard rows and segments, which stay in cache.
        at_risk = at_risk[_stable_order(grid[at_risk], len(self.grid_keys).bit_length())]
        mx, my = self._metric(x[at_risk], y[at_risk])
        g = grid[at_risk]
        k = _SPLIT
        # The sub-box of its grid's metric box the point is in (clamped: a point on a lon/lat edge may lie
        # a hair outside the metric box, which the reach slack covers).
        col = np.clip(np.floor((mx - self._mb_minx[g]) / (self._mb_maxx[g] - self._mb_minx[g]) * k), 0, k - 1)
        row = np.clip(np.floor((my - self._mb_miny[g]) / (self._mb_maxy[g] - self._mb_miny[g]) * k), 0, k - 1)
        key = g * (k * k) + (row * k + col).astype(np.int64)
        lo = self._hz_start[key]
        point, pos = _expand(self._hz_start[key + 1] - lo)
        pair = lo[point] + pos
        other = self._hz_grid[pair].astype(np.int64)
        # The sub-box lists hold every grid that may be within tolerance of some point of the sub-box; the
        # point's own distance to a grid's box, a lower bound, drops most of them before the exact work.
        px, py = mx[point], my[point]
        gap_x = np.maximum(np.maximum(self._mb_minx[other] - px, px - self._mb_maxx[other]), 0.0)
        gap_y = np.maximum(np.maximum(self._mb_miny[other] - py, py - self._mb_maxy[other]), 0.0)
        close = np.flatnonzero(gap_x * gap_x + gap_y * gap_y <= (tol + _ROUNDING_M) ** 2)
        point, pair, other = point[close], pair[close], other[close]

        seg_lo = self._hz_seg_start[pair]
        item, pos = _expand(self._hz_seg_start[pair + 1] - seg_lo)
        dist = self._segment_distance(mx[point], my[point], item, self._hz_seg[seg_lo[item] + pos])
        point = at_risk[point]
        if len(pair_point):
            # A grid covering the point (shared edge or vertex) is at distance 0, not a float residue.
            n_grids = len(self.grid_keys)
            dist[np.isin(point * n_grids + other, pair_point * n_grids + pair_grid)] = 0.0
        keep = np.flatnonzero(dist <= tol)
        keep = keep[_stable_order(point[keep], len(grid).bit_length())]
        return point[keep], other[keep], dist[keep]


def _box_gap(a: FloatArray, b: FloatArray) -> FloatArray:
    """Distance between boxes ``a`` and ``b`` (row by row): a lower bound of the distance between anything
    inside them."""
    gx = np.maximum(np.maximum(a[:, 0] - b[:, 2], b[:, 0] - a[:, 2]), 0.0)
    gy = np.maximum(np.maximum(a[:, 1] - b[:, 3], b[:, 1] - a[:, 3]), 0.0)
    return np.asarray(np.hypot(gx, gy))
