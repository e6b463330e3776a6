"""Hand edits of a draft plan, as geometry: the sides of a drawn line, shared edges, grids in one piece.

A responsibility grid is a union of whole unit grids of one community (DOMAIN.md §2), so every hand edit
regroups unit grids; no unit grid is ever cut. This module answers the geometric questions of the three
edits, in a projected CRS in metres:

Split by a line (:func:`split_by_line`)
    The line cuts the grid's area into pieces (a line that runs into the grid and stops there cuts
    nothing). Crossing the line changes side, so the pieces are coloured with two colours, neighbours
    across the line apart: a line that crosses the grid once makes two sides, one that crosses a bent
    grid twice makes three pieces on two sides (and the side of two pieces is then refused by the
    contiguity rule). Each unit grid goes to the side holding most of its area (the side holding its
    representative point on a tie); a unit grid the line runs through, with more than ``min_cut_m2`` on
    each side, is reported as *cut*. Side 0, which keeps the grid's code, is the one whose unit grids
    hold more area (on a tie, the side of the unit grid first in reading order). The line must leave at
    least one unit grid on each side.
Shared edges and pieces (:func:`shared_edge_m`, :func:`piece_counts`)
    Rook adjacency of the unit grids (:func:`gis.redraw.unit_adjacency`: more than 1 cm of shared edge; a
    corner alone is not a neighbour), the same adjacency the redraw grows its grids with. Two grids are
    neighbours when one of their unit grids shares an edge with one of the other's; a grid is in one
    piece when its unit grids are connected by shared edges (its union is then one Polygon).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.errors import GEOSException, ShapelyError
from shapely.geometry import LineString, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import split

from gis.codes import format_responsibility_grid_code
from gis.plancodes import reading_order
from gis.redraw import Adjacency

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


class EditGeometryError(ValueError):
    """An edit the geometry does not allow (a line that misses the grid, ...); the message says why."""


def parse_line(value: str | Mapping[str, Any]) -> LineString:
    """Read a drawn line from WKT, GeoJSON text or a GeoJSON mapping (a geometry or a Feature).

    Parameters
    ----------
    value : str or mapping
        ``LINESTRING(117.001 36.683, 117.009 36.683)``, ``{"type": "LineString", "coordinates": ...}``, or
        a Feature holding one. A MultiLineString of one part is taken as that part.

    Returns
    -------
    shapely.LineString
        In the coordinates given (no CRS is assumed here): at least two distinct points, all finite, and
        not crossing itself.

    Raises
    ------
    EditGeometryError
        When the text is neither WKT nor GeoJSON, or the geometry is not such a line.
    """
    try:
        geometry = _read_geometry(value)
    except EditGeometryError:
        raise
    except (GEOSException, ShapelyError, ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise EditGeometryError(f"the line is neither WKT nor GeoJSON: {exc}") from exc
    if geometry is None or geometry.is_empty:
        raise EditGeometryError("the line is empty")
    if geometry.geom_type == "MultiLineString" and len(geometry.geoms) == 1:
        geometry = geometry.geoms[0]
    if geometry.geom_type != "LineString":
        raise EditGeometryError(f"the line must be a LineString, not a {geometry.geom_type}")
    line = LineString(geometry)
    coords = shapely.get_coordinates(line)
    if not np.all(np.isfinite(coords)):
        raise EditGeometryError("the line has a coordinate that is not a finite number")
    if len(np.unique(coords, axis=0)) < 2:
        raise EditGeometryError("the line needs at least two different points")
    if not line.is_simple:
        raise EditGeometryError("the line crosses itself: draw it without loops")
    return line


def _read_geometry(value: str | Mapping[str, Any]) -> BaseGeometry | None:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if not text.startswith("{"):
            return shapely.from_wkt(text)
        value = json.loads(text)
    if not isinstance(value, Mapping):
        raise EditGeometryError("the line is neither WKT nor a GeoJSON object")
    if value.get("type") == "Feature":
        value = value.get("geometry")  # type: ignore[assignment]
        if not isinstance(value, Mapping):
            raise EditGeometryError("the Feature has no geometry")
    return shape(value)


@dataclass(frozen=True)
class LineSplit:
    """Where a line puts each unit grid of a responsibility grid."""

    side: IntArray  # 0 (keeps the grid's code) or 1 (the new grid), one per unit grid
    cut: BoolArray  # the line runs through the unit grid (it went to the side holding most of it)
    minority_m2: FloatArray  # area of each unit grid on the side it did not go to
    pieces: int  # pieces the line cuts the grid's area into (2 for a line crossing once)


def split_by_line(
    units: Iterable[BaseGeometry] | npt.NDArray[np.object_], line: LineString, *, min_cut_m2: float = 1.0
) -> LineSplit:
    """Split a responsibility grid's unit grids by a drawn line (see the module docstring).

    Parameters
    ----------
    units : sequence of shapely Polygons
        The grid's unit grids, metric CRS.
    line : shapely.LineString
        The drawn line, same CRS.
    min_cut_m2 : float
        Area on each side above which a unit grid counts as cut by the line.

    Returns
    -------
    LineSplit

    Raises
    ------
    EditGeometryError
        When the line does not cross the grid, or leaves every unit grid on one side.
    """
    array = np.asarray(list(units) if not isinstance(units, np.ndarray) else units, dtype=object)
    if len(array) == 0:
        raise EditGeometryError("the grid has no unit grids")
    grid = shapely.union_all(array)
    pieces = np.asarray(list(shapely.get_parts(split(grid, line))), dtype=object)
    if len(pieces) < 2:
        raise EditGeometryError(
            "the line does not cross the grid: draw it from one side of the grid to the other"
        )
    colour = _two_colours(pieces)
    sides = [shapely.union_all(pieces[colour == c]) for c in (0, 1)]
    on = np.column_stack([shapely.area(shapely.intersection(array, s)) for s in sides])
    side = (on[:, 1] > on[:, 0]).astype(np.int64)
    tie = np.isclose(on[:, 0], on[:, 1], rtol=0.0, atol=1e-9 * max(float(on.max()), 1.0))
    if tie.any():
        points = shapely.point_on_surface(array[tie])
        side[tie] = np.where(shapely.covers(sides[1], points), 1, 0)
    minority = np.where(side == 1, on[:, 0], on[:, 1])
    if np.all(side == side[0]):
        raise EditGeometryError(
            "the line crosses the grid but leaves every unit grid mostly on one side: "
            "nothing would be split off (a unit grid goes to the side holding most of its area)"
        )
    areas = shapely.area(array)
    held = np.asarray([areas[side == 0].sum(), areas[side == 1].sum()])
    first = int(reading_order(array)[0])
    if held[1] > held[0] or (math.isclose(held[0], held[1]) and side[first] == 1):
        side = 1 - side
    return LineSplit(side=side, cut=minority > min_cut_m2, minority_m2=minority, pieces=len(pieces))


def _two_colours(pieces: npt.NDArray[np.object_]) -> IntArray:
    """Colour pieces cut by a line so that pieces sharing a stretch of the line differ."""
    n = len(pieces)
    boundaries = shapely.boundary(pieces)
    neighbours: list[list[int]] = [[] for _ in range(n)]
    left, right = shapely.STRtree(pieces).query(pieces, predicate="intersects")
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        if a < b and shapely.length(shapely.intersection(boundaries[a], boundaries[b])) > 0:
            neighbours[a].append(b)
            neighbours[b].append(a)
    colour = np.full(n, -1, dtype=np.int64)
    for start in range(n):
        if colour[start] >= 0:
            continue
        colour[start] = 0
        stack = [start]
        while stack:
            u = stack.pop()
            for v in neighbours[u]:
                if colour[v] < 0:
                    colour[v] = 1 - colour[u]
                    stack.append(v)
                elif colour[v] == colour[u]:
                    raise EditGeometryError("the line's sides cannot be told apart: draw a simpler line")
    return colour


def piece_counts(labels: npt.ArrayLike, adjacency: Adjacency) -> dict[int, int]:
    """How many connected pieces each grid's unit grids form.

    Parameters
    ----------
    labels : array of int
        The grid of each unit grid; negative for none (not counted).
    adjacency : (i, j, length)
        Rook adjacency of the unit grids (:func:`gis.redraw.unit_adjacency`).

    Returns
    -------
    dict
        Grid label -> number of pieces (1: the grid is in one piece), for every label used.
    """
    label = np.asarray(labels, dtype=np.int64)
    i, j, _length = adjacency
    parent = list(range(len(label)))

    def root(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        if label[a] == label[b] >= 0:
            parent[root(a)] = root(b)
    roots: dict[int, set[int]] = {}
    for u, value in enumerate(label.tolist()):
        if value >= 0:
            roots.setdefault(value, set()).add(root(u))
    return {value: len(found) for value, found in sorted(roots.items())}


def shared_edge_m(labels: npt.ArrayLike, adjacency: Adjacency, a: int, b: int) -> float:
    """Length in metres of the edge grids ``a`` and ``b`` share (0: they are not neighbours).

    Parameters
    ----------
    labels : array of int
        The grid of each unit grid.
    adjacency : (i, j, length)
        Rook adjacency of the unit grids (:func:`gis.redraw.unit_adjacency`).
    a, b : int
        The two grids' labels.

    Returns
    -------
    float
    """
    label = np.asarray(labels, dtype=np.int64)
    i, j, length = adjacency
    between = ((label[i] == a) & (label[j] == b)) | ((label[i] == b) & (label[j] == a))
    return float(length[between].sum())


def next_responsibility_grid_code(community_code: str, ever_used: Iterable[str]) -> str:
    """The next responsibility grid code of a community: one more than the highest number ever used there.

    Parameters
    ----------
    community_code : str
        12-digit community code.
    ever_used : iterable of str
        The responsibility grid codes the community may not reuse (those of plans in force, of the draft,
        and those an edit removed): a number is never given to a second place (see :mod:`gis.plancodes`).
        Other communities' codes and unit grid codes are ignored.

    Returns
    -------
    str
        ``<community>R<nn>``.

    Raises
    ------
    ValueError
        When every number up to 99 has been used.
    """
    prefix = community_code + "R"
    used = [int(c[len(prefix) :]) for c in ever_used if c.startswith(prefix) and c[len(prefix) :].isdigit()]
    number = max(used, default=0) + 1
    if number > 99:
        raise ValueError(f"every responsibility grid number of community {community_code} is used")
    return format_responsibility_grid_code(community_code, number)
