"""Unit grids (单元网格): cut a community into blocks, merge slivers, split large blocks.

DOMAIN.md §2: a unit grid is the atomic cell, about 10,000 m² in built-up areas ("万米单元网格", a nominal
target), bounded by permanent features (roads, rivers, walls). Every unit grid lies inside exactly one
community, and the unit grids of a community cover it with no gap and no overlap.

All geometry is in a projected metric CRS (metres); the caller transforms (see :mod:`gis.crs`).

How exactness is kept
---------------------
Parts are only ever made in two ways whose union is, vertex for vertex, the input:

* faces of ``shapely.polygonize`` over noded linework that contains the community's (or block's) own
  boundary, so every input vertex is kept and shared edges between faces are identical;
* unions of neighbours that share whole edges.

A split adds a node where its cut line crosses a block edge, and the neighbour across that edge does not
have it (a T-junction). GEOS's coverage rules demand matching vertices along shared edges, so a last pass
snaps every part to the vertices of its neighbours within :data:`NODE_SNAP_M`, which inserts the missing
nodes without moving anything by more than that. :func:`coverage_problems` checks the result as a
coverage (``shapely.coverage_invalid_edges``) and by area.

Order of the result
-------------------
:func:`unit_grids_for_community` returns the parts in reading order, the order the caller numbers them in
(DOMAIN.md §2: west→east, then north→south): parts are put in rows of height ``sqrt(max_area_m2)``
counted down from the community's northern edge by the y of their representative point
(``shapely.point_on_surface``); rows run north→south, and within a row parts run west→east by that
point's x, then north→south by its y.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import shapely
from shapely import LineString, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

__all__ = [
    "AREA_RTOL",
    "NODE_SNAP_M",
    "UnitGridParams",
    "coverage_problems",
    "cut_blocks",
    "is_sliver",
    "merge_slivers",
    "split_block",
    "unit_grids_for_community",
]

FloatArray = npt.NDArray[np.float64]

# A block "fits" when its area is at most max_area_m2 * (1 + AREA_RTOL): 0.01 m² at 10,000 m², far below
# survey accuracy, and it spares splitting a 100 m x 100 m block in two over a rounding error.
AREA_RTOL: Final = 1e-6
# Vertices of neighbouring parts closer than this to a part's edge are inserted into it (T-junction repair).
NODE_SNAP_M: Final = 1e-6
# The cut offset is found when the cut-off area is within this fraction of the block's area of its target.
_CUT_RTOL: Final = 1e-9
_CUT_MAX_STEPS: Final = 60
# Beyond this depth split_block gives up on a piece that no straight cut divides (it never happens with
# real blocks; it bounds the recursion).
_MAX_SPLIT_DEPTH: Final = 64
_POLYGON: Final = int(shapely.GeometryType.POLYGON)
_MULTIPOLYGON: Final = int(shapely.GeometryType.MULTIPOLYGON)


@dataclass(frozen=True)
class UnitGridParams:
    """Sizes for unit grids; rural communities pass a larger ``max_area_m2``.

    Parameters
    ----------
    max_area_m2 : float
        Blocks larger than this are split into compact parts of at most this area (DOMAIN.md §2: about
        10,000 m² in built-up areas).
    min_area_m2 : float
        Blocks smaller than this are slivers and merge into the neighbour sharing the longest edge.
    min_width_m : float
        Blocks whose mean width ``2 * area / perimeter`` is below this are slivers too (a strip between a
        road and a parallel boundary).
    snap_m : float
        Cutter vertices and dangling ends this close to the community boundary are snapped onto it, so a
        road drawn a few millimetres short still cuts.
    """

    max_area_m2: float = 10_000.0
    min_area_m2: float = 500.0
    min_width_m: float = 3.0
    snap_m: float = 0.01

    def __post_init__(self) -> None:
        if not self.max_area_m2 > 0:
            raise ValueError(f"max_area_m2 must be positive, got {self.max_area_m2}")
        if self.min_area_m2 < 0 or self.min_width_m < 0 or self.snap_m < 0:
            raise ValueError("min_area_m2, min_width_m and snap_m must not be negative")


def cut_blocks(
    community: Polygon | MultiPolygon, cutters: Sequence[BaseGeometry], snap_m: float = 0.01
) -> list[Polygon]:
    """Cut a community into blocks along road centre lines and the boundaries of nets.

    Parameters
    ----------
    community : Polygon or MultiPolygon
        A valid community boundary.
    cutters : sequence of geometries
        Lines cut as they are; polygons cut along their boundaries (rings); points are ignored. Parts
        outside the community do not matter, and a line ending inside the community (a dangle) cuts
        nothing.
    snap_m : float
        Cutter vertices within this distance of a community vertex are snapped to it, and line ends within
        this distance of the community boundary are extended onto it.

    Returns
    -------
    list of Polygon
        The faces inside the community, in polygonize order; their union is the community and they share
        edges vertex for vertex.
    """
    _require_valid_polygonal(community, "community")
    boundary = community.boundary
    lines = _cutter_lines(community, cutters, snap_m)
    # Lines are not clipped to the community: clipping would put their ends a rounding error off its
    # boundary, and the noder would leave them dangling. Crossing lines are noded exactly instead, and the
    # faces outside the community are dropped below.
    linework = shapely.union_all(np.concatenate([[boundary], lines]))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(linework)))
    faces = faces[shapely.area(faces) > 0]
    if faces.size == 0:
        return []
    points = shapely.point_on_surface(faces)
    shapely.prepare(community)
    inside = shapely.contains(community, points)
    return list(faces[inside])


def is_sliver(block: Polygon, params: UnitGridParams) -> bool:
    """Return whether a block is a sliver: smaller than ``min_area_m2`` or thinner than ``min_width_m``."""
    return bool(_sliver_mask(np.array([block], dtype=object), params)[0])


def merge_slivers(blocks: list[Polygon], params: UnitGridParams) -> list[Polygon]:
    """Merge every sliver into the neighbour with which it shares the longest boundary.

    Parameters
    ----------
    blocks : list of Polygon
        A coverage (blocks meet along shared edges and do not overlap), e.g. from :func:`cut_blocks`.
    params : UnitGridParams
        ``min_area_m2`` and ``min_width_m`` say what a sliver is (see :func:`is_sliver`).

    Returns
    -------
    list of Polygon
        The surviving blocks in input order; a block that absorbed slivers keeps its place. The smallest
        sliver goes first (ties by its representative point's x, then y); a merged block that is still a
        sliver goes on merging; a sliver with no neighbour along an edge stays as it is.
    """
    array = np.array(blocks, dtype=object)
    if array.size < 2:
        return list(blocks)
    flags = _sliver_mask(array, params)
    if not flags.any():
        return list(blocks)

    def recheck(_receiver_flag: bool, merged: Polygon) -> bool:
        return bool(_sliver_mask(np.array([merged], dtype=object), params)[0])

    return _absorb(array, flags, recheck)


def split_block(block: Polygon, max_area_m2: float) -> list[Polygon]:
    """Split a block into compact, roughly equal parts of at most ``max_area_m2`` each.

    The block is cut in ``n = ceil(area / max_area_m2)`` parts by recursive bisection: each piece is cut
    straight across the longer side of its minimum rotated rectangle, at the offset that leaves areas in
    proportion to the part counts of the two sides (``n // 2`` and the rest). If that cut leaves a side
    in several pieces, the short side of the rectangle and then the diagonals are tried; if every cut
    does, the stray pieces merge into the neighbour sharing the longest edge, and sides are counted
    again from their areas.

    Parameters
    ----------
    block : Polygon
        A valid polygon.
    max_area_m2 : float
        The largest area of a part; parts may exceed it by the rounding allowance :data:`AREA_RTOL`.

    Returns
    -------
    list of Polygon
        The parts, a coverage whose union is the block. ``[block]`` when it already fits.
    """
    _require_valid_polygonal(block, "block")
    if shapely.get_type_id(block) != _POLYGON:
        raise ValueError(f"block must be a Polygon, got {block.geom_type}")
    if not max_area_m2 > 0:
        raise ValueError(f"max_area_m2 must be positive, got {max_area_m2}")
    parts = _split(block, _part_count(block.area, max_area_m2), max_area_m2, 0)
    return list(_node_coverage(np.array(parts, dtype=object), block)) if len(parts) > 1 else parts


def unit_grids_for_community(
    community: Polygon | MultiPolygon,
    cutters: Sequence[BaseGeometry],
    params: UnitGridParams = UnitGridParams(),
) -> list[Polygon]:
    """Draw the unit grids of one community: cut by cutters, merge slivers, split large blocks.

    Parameters
    ----------
    community : Polygon or MultiPolygon
        A valid community boundary in a metric CRS.
    cutters : sequence of geometries
        Road centre lines, rivers and walls as lines or polygons, and the net polygons being merged.
    params : UnitGridParams
        Sizes; the defaults suit built-up areas, rural communities pass a larger ``max_area_m2``.

    Returns
    -------
    list of Polygon
        Valid single polygons covering the community exactly (a valid coverage, see
        :func:`coverage_problems`), in reading order (see the module docstring), each ring normalised
        with the exterior counter-clockwise, so the same input always gives the same WKT.
    """
    blocks = merge_slivers(cut_blocks(community, cutters, params.snap_m), params)
    parts: list[Polygon] = []
    for block in blocks:
        # Noded once for the whole community below, not block by block.
        parts.extend(_split(block, _part_count(block.area, params.max_area_m2), params.max_area_m2, 0))
    array = _node_coverage(np.array(parts, dtype=object), community)
    array = shapely.orient_polygons(shapely.normalize(array), exterior_cw=False)
    order = _reading_order(array, community, math.sqrt(params.max_area_m2))
    return list(array[order])


def coverage_problems(
    community: Polygon | MultiPolygon, parts: Sequence[Polygon], tolerance_m2: float = 0.01
) -> list[str]:
    """Say, in plain words, why parts are not an exact coverage of the community; ``[]`` when they are.

    Parameters
    ----------
    community : Polygon or MultiPolygon
        The community the parts should cover.
    parts : sequence of Polygon
        The unit grids.
    tolerance_m2 : float
        Areas of overlap, gap or spill at or below this are rounding, not problems.

    Returns
    -------
    list of str
        One message per problem: a part that is empty, invalid or not a single Polygon; a part reaching
        outside the community; edges that do not match a neighbour's vertex for vertex (overlaps and
        T-junctions, by ``shapely.coverage_invalid_edges``); overlapping area between two parts; the gap
        left uncovered. Parts are named by their position, from 0.
    """
    problems: list[str] = []
    array = np.array(list(parts), dtype=object)
    if array.size == 0:
        return ["no parts: the community is not covered"]
    kinds = shapely.get_type_id(array)
    valid = shapely.is_valid(array)
    usable = np.zeros(array.size, dtype=bool)
    for index, part in enumerate(array):
        if part is None or shapely.is_empty(part):
            problems.append(f"part {index} is empty")
        elif kinds[index] != _POLYGON:
            problems.append(f"part {index} is a {part.geom_type}, not a single Polygon")
        elif not valid[index]:
            problems.append(f"part {index} is not valid: {shapely.is_valid_reason(part)}")
        else:
            usable[index] = True
    good = array[usable]
    good_index = np.flatnonzero(usable)
    if good.size == 0:
        return problems

    outside = shapely.area(shapely.difference(good, community))
    for position, area in zip(good_index.tolist(), outside.tolist(), strict=True):
        if area > tolerance_m2:
            problems.append(f"part {position} reaches {area:.2f} m² outside the community")

    edges = shapely.coverage_invalid_edges(good)
    for position, edge in zip(good_index.tolist(), edges, strict=True):
        if edge is not None and not shapely.is_empty(edge):
            x, y = shapely.get_coordinates(edge)[0]
            problems.append(
                f"part {position} has {shapely.length(edge):.2f} m of edges that do not match its neighbours "
                f"vertex for vertex (overlap or missing node), near ({x:.2f}, {y:.2f})"
            )

    tree = shapely.STRtree(good)
    pairs = tree.query(good, predicate="intersects")
    pairs = pairs[:, pairs[0] < pairs[1]]
    if pairs.size:
        overlap = shapely.area(shapely.intersection(good[pairs[0]], good[pairs[1]]))
        for left, right, area in zip(pairs[0], pairs[1], overlap, strict=True):
            if area > tolerance_m2:
                problems.append(f"parts {good_index[left]} and {good_index[right]} overlap by {area:.2f} m²")

    union = shapely.union_all(good)
    gap = shapely.area(shapely.difference(community, union))
    if gap > tolerance_m2:
        problems.append(f"{gap:.2f} m² of the community is covered by no part")
    return problems


# --- cutting -----------------------------------------------------------------------------------------


def _require_valid_polygonal(geometry: Any, name: str) -> None:
    kind = shapely.get_type_id(geometry)
    if kind not in (_POLYGON, _MULTIPOLYGON) or shapely.is_empty(geometry):
        raise ValueError(f"{name} must be a non-empty Polygon or MultiPolygon, got {geometry}")
    if not shapely.is_valid(geometry):
        raise ValueError(f"{name} is not valid: {shapely.is_valid_reason(geometry)}")


def _cutter_lines(community: Any, cutters: Sequence[BaseGeometry], snap_m: float) -> npt.NDArray[Any]:
    """The cutters as single LineStrings near the community, snapped to its boundary."""
    parts = shapely.get_parts(np.array(list(cutters), dtype=object))
    if parts.size == 0:
        return np.empty(0, dtype=object)
    # Polygons cut along their rings; collections were exploded above.
    polygonal = np.isin(shapely.get_type_id(parts), [_POLYGON, _MULTIPOLYGON])
    parts[polygonal] = shapely.boundary(parts[polygonal])
    lines: npt.NDArray[Any] = shapely.get_parts(parts)
    lines = lines[shapely.get_dimensions(lines) == 1]
    if lines.size == 0:
        return lines
    # Keep what may touch the community; clip long roads to a margin around it (not to it, see cut_blocks).
    minx, miny, maxx, maxy = community.bounds
    margin = max(1.0, 10 * snap_m)
    lines = lines[
        shapely.intersects(lines, shapely.box(minx - margin, miny - margin, maxx + margin, maxy + margin))
    ]
    lines = shapely.clip_by_rect(lines, minx - margin, miny - margin, maxx + margin, maxy + margin)
    lines = shapely.get_parts(lines)
    lines = lines[(shapely.get_dimensions(lines) == 1) & (shapely.length(lines) > 0)]
    if lines.size == 0 or snap_m <= 0:
        return lines
    boundary = community.boundary
    lines = shapely.snap(lines, boundary, snap_m)
    gaps = shapely.distance(np.stack([shapely.get_point(lines, 0), shapely.get_point(lines, -1)]), boundary)
    for index in np.flatnonzero(((gaps > 0) & (gaps <= snap_m)).any(axis=0)).tolist():
        lines[index] = _extend_ends(lines[index], boundary, snap_m)
    return lines


def _extend_ends(line: Any, boundary: Any, snap_m: float) -> Any:
    """Extend a line end lying within ``snap_m`` of the boundary (but not on it) just across it."""
    coords = shapely.get_coordinates(line)
    if len(coords) < 2:
        return line
    head: list[FloatArray] = []
    tail: list[FloatArray] = []
    for end, extension in ((0, head), (-1, tail)):
        point = shapely.points(coords[end])
        if 0 < shapely.distance(point, boundary) <= snap_m:
            nearest = shapely.get_coordinates(shapely.shortest_line(point, boundary))[1]
            step = nearest - coords[end]
            norm = float(np.hypot(*step))
            if norm > 0:
                # Overshoot the boundary a little along the approach, so the crossing is a proper one that
                # the noder cannot miss; the overshoot lies outside and is dropped with the outer faces.
                beyond = nearest + step / norm * snap_m
                extension.extend([nearest, beyond] if end == -1 else [beyond, nearest])
    if not head and not tail:
        return line
    return shapely.linestrings(np.vstack([*head, coords, *tail]))


# --- merging -----------------------------------------------------------------------------------------


def _sliver_mask(blocks: npt.NDArray[Any], params: UnitGridParams) -> npt.NDArray[np.bool_]:
    area = shapely.area(blocks)
    perimeter = shapely.length(blocks)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = np.where(perimeter > 0, 2 * area / perimeter, 0.0)
    mask: npt.NDArray[np.bool_] = (area < params.min_area_m2) | (width < params.min_width_m)
    return mask


def _absorb(
    blocks: npt.NDArray[Any],
    flags: npt.NDArray[np.bool_],
    flag_after: Callable[[bool, Polygon], bool],
) -> list[Polygon]:
    """Merge flagged blocks, smallest first, into the neighbour sharing the longest boundary.

    ``flag_after(receiver_flag, merged)`` says whether a merged block is still to be merged. Shared
    lengths are found once with an STRtree and then kept up to date by adding: the boundary a merged
    block shares with a third block is the sum of what its two halves shared with it.
    """
    geoms: dict[int, Any] = dict(enumerate(blocks))
    flag: dict[int, bool] = {i: bool(f) for i, f in enumerate(flags)}
    shared: dict[int, dict[int, float]] = {i: {} for i in geoms}
    tree = shapely.STRtree(blocks)
    pairs = tree.query(blocks, predicate="intersects")
    pairs = pairs[:, pairs[0] < pairs[1]]
    if pairs.size:
        boundaries = shapely.boundary(blocks)
        lengths = shapely.length(shapely.intersection(boundaries[pairs[0]], boundaries[pairs[1]]))
        for i, j, length in zip(pairs[0].tolist(), pairs[1].tolist(), lengths.tolist(), strict=True):
            if length > 0:
                shared[i][j] = length
                shared[j][i] = length

    version = dict.fromkeys(geoms, 0)
    heap: list[tuple[float, float, float, int, int]] = []

    def push(i: int) -> None:
        point = shapely.point_on_surface(geoms[i])
        heapq.heappush(heap, (float(geoms[i].area), float(point.x), float(point.y), i, version[i]))

    for i in geoms:
        if flag[i]:
            push(i)
    while heap:
        _, _, _, i, seen = heapq.heappop(heap)
        if i not in geoms or seen != version[i] or not flag[i]:
            continue
        if not shared[i]:
            continue  # no neighbour along an edge: it stays
        # Longest shared boundary; ties go to the earlier block, so the result does not depend on hashing.
        j = min(shared[i], key=lambda k: (-shared[i][k], k))
        merged = _union_pair(geoms[j], geoms[i])
        geoms[j] = merged
        del geoms[i]
        for k, length in shared.pop(i).items():
            del shared[k][i]
            if k != j:
                shared[j][k] = shared[j].get(k, 0.0) + length
                shared[k][j] = shared[k].get(j, 0.0) + length
        flag[j] = flag_after(flag[j], merged)
        version[j] += 1
        if flag[j]:
            push(j)
    return [geoms[i] for i in sorted(geoms)]


def _union_pair(receiver: Any, piece: Any) -> Any:
    """Union of two polygons sharing an edge, as one Polygon."""
    merged = shapely.union_all([receiver, piece])
    if shapely.get_type_id(merged) == _POLYGON:
        return merged
    # Neighbours along an edge always union to one polygon; rounding could leave crumbs, which go.
    parts = shapely.get_parts(merged)
    return parts[np.argmax(shapely.area(parts))]


# --- splitting ---------------------------------------------------------------------------------------


def _part_count(area: float, max_area_m2: float) -> int:
    return max(1, math.ceil(area / max_area_m2 - AREA_RTOL))


def _split(piece: Any, count: int, max_area_m2: float, depth: int) -> list[Any]:
    count = max(count, _part_count(piece.area, max_area_m2))
    if count <= 1 or depth >= _MAX_SPLIT_DEPTH:
        return [piece]
    left_count = count // 2
    sides = _bisect(piece, left_count / count)
    if sides is None:
        return [piece]
    left, right = sides
    area = piece.area
    # Stray pieces may have moved area across; give each side its share of the count again.
    left_count = min(count - 1, max(1, round(count * left.area / area)))
    return _split(left, left_count, max_area_m2, depth + 1) + _split(
        right, count - left_count, max_area_m2, depth + 1
    )


def _bisect(piece: Any, fraction: float) -> tuple[Any, Any] | None:
    """Cut a piece in two single polygons, ``fraction`` of its area on the first."""
    best: list[Any] | None = None
    for axis in _cut_axes(piece):
        faces, on_left = _cut_faces(piece, axis, fraction)
        if faces is None or on_left is None:
            continue
        if len(faces) == 2 and on_left.sum() == 1:
            first = int(np.flatnonzero(on_left)[0])
            return faces[first], faces[1 - first]
        if best is None:
            best = [faces, on_left]
    if best is None:
        return None
    faces, on_left = best
    # Every cut leaves strays: merge all but the largest face of each side into their neighbours.
    areas = shapely.area(faces)
    keep = np.zeros(len(faces), dtype=bool)
    for side in (on_left, ~on_left):
        if side.any():
            candidates = np.flatnonzero(side)
            keep[candidates[np.argmax(areas[candidates])]] = True
    merged = _absorb(faces, ~keep, lambda receiver_flag, _merged: receiver_flag)
    if len(merged) != 2:
        return None
    # Kept faces are never absorbed and _absorb keeps input order: the survivors are the kept faces.
    kept = np.flatnonzero(keep)
    first = 0 if on_left[kept[0]] else 1
    return merged[first], merged[1 - first]


def _cut_axes(piece: Any) -> list[FloatArray]:
    """Unit vectors to cut along, best first: the long side of the minimum rotated rectangle, the short
    side, then the two diagonal directions."""
    rectangle = shapely.oriented_envelope(piece)
    coords = shapely.get_coordinates(rectangle)
    if len(coords) < 4:
        return [np.array([1.0, 0.0]), np.array([0.0, 1.0])]
    first = coords[1] - coords[0]
    second = coords[2] - coords[1]
    long_side, short_side = (first, second) if np.hypot(*first) >= np.hypot(*second) else (second, first)
    axes = []
    for vector in (long_side, short_side):
        norm = float(np.hypot(*vector))
        if norm > 0:
            axes.append(vector / norm)
    if len(axes) == 2:
        axes.append((axes[0] + axes[1]) / math.sqrt(2))
        axes.append((axes[0] - axes[1]) / math.sqrt(2))
    return axes


def _cut_faces(
    piece: Any, axis: FloatArray, fraction: float
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]] | tuple[None, None]:
    """The faces of the piece cut square to ``axis`` at the area-balanced offset, and which lie before it."""
    normal = np.array([-axis[1], axis[0]])
    coords = shapely.get_coordinates(piece)
    along = coords @ axis
    across = coords @ normal
    low, high = float(along.min()), float(along.max())
    span_low, span_high = float(across.min()) - 1.0, float(across.max()) + 1.0
    if not high > low:
        return None, None
    area = float(piece.area)
    target = fraction * area

    def half_plane(offset: float) -> Any:
        corners = [
            axis * (low - 1.0) + normal * span_low,
            axis * offset + normal * span_low,
            axis * offset + normal * span_high,
            axis * (low - 1.0) + normal * span_high,
        ]
        return Polygon(corners)

    def excess(offset: float) -> float:
        return float(shapely.area(shapely.intersection(piece, half_plane(offset)))) - target

    offset = _find_offset(excess, low, -target, high, area - target, _CUT_RTOL * area)
    line = LineString([axis * offset + normal * span_low, axis * offset + normal * span_high])
    linework = shapely.union_all([piece.boundary, line])
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(linework)))
    faces = faces[shapely.area(faces) > 0]
    if faces.size < 2:
        return None, None
    points = shapely.point_on_surface(faces)
    shapely.prepare(piece)
    faces = faces[shapely.contains(piece, points)]
    if faces.size < 2:
        return None, None
    on_left: npt.NDArray[np.bool_] = shapely.get_coordinates(shapely.point_on_surface(faces)) @ axis < offset
    if on_left.all() or not on_left.any():
        return None, None
    return faces, on_left


def _find_offset(
    excess: Callable[[float], float],
    low: float,
    f_low: float,
    high: float,
    f_high: float,
    tolerance: float,
) -> float:
    """Root of a non-decreasing function bracketed by ``[low, high]`` (Illinois false position)."""
    side = 0
    offset = (low + high) / 2
    for _ in range(_CUT_MAX_STEPS):
        if f_high == f_low:
            offset = (low + high) / 2
        else:
            offset = (low * f_high - high * f_low) / (f_high - f_low)
            if not low < offset < high:
                offset = (low + high) / 2
        value = excess(offset)
        if abs(value) <= tolerance or high - low <= 1e-9:
            return offset
        if value < 0:
            low, f_low = offset, value
            if side == -1:
                f_high /= 2
            side = -1
        else:
            high, f_high = offset, value
            if side == 1:
                f_low /= 2
            side = 1
    return offset


# --- finishing ---------------------------------------------------------------------------------------


def _node_coverage(parts: npt.NDArray[Any], community: Any) -> npt.NDArray[Any]:
    """Make neighbouring parts match vertex for vertex, as a coverage must.

    Two cuts that should meet at one point can miss each other by a rounding error (a grid of equal
    blocks cut at the same offset from both sides of a line), and a cut adds a node that the part across
    the cut edge lacks. Vertices closer than :data:`NODE_SNAP_M` are first unified (to the community's
    own vertex when there is one, else to the lexicographically smallest), then every part is snapped to
    the vertices of its neighbours, which inserts the nodes it lacks.
    """
    if parts.size < 2:
        return parts
    coords = shapely.get_coordinates(parts)
    unique, inverse = np.unique(coords, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    points = shapely.points(unique)
    close = shapely.STRtree(points).query(points, predicate="dwithin", distance=NODE_SNAP_M)
    close = close[:, close[0] < close[1]]
    result = parts
    if close.size:
        representative = np.arange(len(unique))
        # Union-find over the few near-duplicate pairs; the root is the smallest index (np.unique sorts).
        for i, j in zip(close[0].tolist(), close[1].tolist(), strict=True):
            root_i, root_j = _root(representative, i), _root(representative, j)
            representative[max(root_i, root_j)] = min(root_i, root_j)
        roots = np.array([_root(representative, i) for i in range(len(unique))])
        own = {tuple(xy) for xy in shapely.get_coordinates(community).tolist()}
        for root in np.unique(roots[np.flatnonzero(roots != np.arange(len(unique)))]).tolist():
            members = np.flatnonzero(roots == root)
            ours = [m for m in members.tolist() if tuple(unique[m].tolist()) in own]
            if ours:
                roots[members] = ours[0]
        moved = shapely.set_coordinates(parts.copy(), unique[roots[inverse]])
        moved = shapely.remove_repeated_points(moved)
        keep = (shapely.get_type_id(moved) == _POLYGON) & shapely.is_valid(moved)
        result = np.where(keep, moved, parts)

    tree = shapely.STRtree(result)
    pairs = tree.query(result, predicate="dwithin", distance=NODE_SNAP_M)
    pairs = pairs[:, pairs[0] != pairs[1]]
    snapped_parts = result.copy()
    for index in np.unique(pairs[0]).tolist():
        neighbours = pairs[1][pairs[0] == index]
        vertices = shapely.multipoints(shapely.get_coordinates(result[neighbours]))
        snapped = shapely.snap(result[index], vertices, NODE_SNAP_M)
        if shapely.get_type_id(snapped) == _POLYGON and shapely.is_valid(snapped):
            snapped_parts[index] = snapped
    return snapped_parts


def _root(parent: npt.NDArray[np.intp], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = int(parent[i])
    return i


def _reading_order(parts: npt.NDArray[Any], community: Any, row_height: float) -> npt.NDArray[np.intp]:
    points = shapely.get_coordinates(shapely.point_on_surface(parts))
    if points.size == 0:
        return np.empty(0, dtype=np.intp)
    top = community.bounds[3]
    rows = np.floor((top - points[:, 1]) / row_height)
    order: npt.NDArray[np.intp] = np.lexsort((-points[:, 1], points[:, 0], rows))
    return order


def line_zones(
    parts: Sequence[BaseGeometry] | npt.NDArray[np.object_],
    community: Polygon | MultiPolygon,
    net_polygons: Sequence[BaseGeometry] | npt.NDArray[np.object_],
    net_keys: Sequence[tuple[int, int]],
    main_roads: Sequence[BaseGeometry] | npt.NDArray[np.object_] = (),
) -> npt.NDArray[np.int64]:
    """Which side of every line worth following each unit grid lies on, as one zone number per unit.

    Two unit grids are in the same zone when, for every old net, the same polygon of that net holds their
    representative points (or none does), and no main road runs between them (they lie in the same face
    of the community cut by its main roads). A responsibility grid that spans two zones straddles an old
    net's boundary or a main road; ``gis.redraw`` charges for that (``net_ids``).

    Parameters
    ----------
    parts : sequence of Polygon
        The community's unit grids (metric CRS).
    community : Polygon or MultiPolygon
        The community.
    net_polygons : sequence of polygons
        Polygons of the nets being merged, any number of nets.
    net_keys : sequence of (net id, polygon id)
        One per net polygon: which net it belongs to and which polygon it is.
    main_roads : sequence of lines
        Main road centre lines near the community.

    Returns
    -------
    ndarray of int64
        Zone per unit, numbered from 0 in order of first appearance (so the same input gives the same
        numbers).
    """
    array = np.asarray(parts, dtype=object)
    if len(array) == 0:
        return np.zeros(0, dtype=np.int64)
    points = shapely.point_on_surface(array)
    keys: list[list[tuple[int, int]]] = [[] for _ in range(len(array))]
    polygons = np.asarray(net_polygons, dtype=object)
    if len(polygons):
        part_index, polygon_index = shapely.STRtree(polygons).query(points, predicate="within")
        for part, polygon in sorted(zip(part_index.tolist(), polygon_index.tolist(), strict=True)):
            keys[part].append(tuple(net_keys[polygon]))
    roads = [road for road in main_roads if road is not None and not road.is_empty]
    if roads:
        linework = shapely.union_all([shapely.boundary(community), *roads])
        faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(linework)))
        if len(faces) > 1:
            part_index, face_index = shapely.STRtree(faces).query(points, predicate="within")
            for part, face in zip(part_index.tolist(), face_index.tolist(), strict=True):
                keys[part].append((-1, face))
    numbering: dict[tuple[tuple[int, int], ...], int] = {}
    return np.asarray(
        [numbering.setdefault(tuple(sorted(set(k))), len(numbering)) for k in keys], dtype=np.int64
    )
