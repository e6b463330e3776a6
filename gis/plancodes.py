"""Codes for the grids of a new plan: reading order, survivors keep their codes, new grids new numbers.

The standard (DOMAIN.md §2) numbers a community's unit grids west→east, then north→south: rows from the
north, each read from the west. Grids are not laid out in rows, so "row" is made precise here: grids are
taken from the north by their representative point, and a grid joins the current row when its point lies
within half a typical grid height (the square root of the median area) of the row's first grid. Within a
row, west to east. The same shapes always give the same order.

A redraw must not renumber what did not change: a new grid whose shape matches an old grid of the same
community (symmetric difference under ``area_tolerance`` of the old area, and the Hausdorff distance
under ``distance_tolerance_m``) keeps the old code. Every other new grid takes the next unused number of
the community, in reading order, after the highest number ever used there — a retired number is never
given to another place, so an old report naming it cannot be confused with a new grid.

All geometry is in a projected CRS in metres.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from gis.codes import format_responsibility_grid_code, format_unit_grid_code

IntArray = npt.NDArray[np.int64]


def reading_order(geoms: Sequence[BaseGeometry] | npt.NDArray[np.object_]) -> IntArray:
    """Indices of ``geoms`` in reading order: rows from the north, each row west to east.

    Parameters
    ----------
    geoms : sequence of shapely geometries
        Polygons of one community, in a metric CRS.

    Returns
    -------
    ndarray of int64
        A permutation of ``range(len(geoms))``.
    """
    array = np.asarray(geoms, dtype=object)
    n = len(array)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    points = shapely.point_on_surface(array)
    x = shapely.get_x(points)
    y = shapely.get_y(points)
    areas = shapely.area(array)
    band = 0.5 * float(np.sqrt(np.median(areas))) if n else 0.0
    # North first; ties broken by x then by index so the order never depends on anything but the shapes.
    by_north = np.lexsort((np.arange(n), x, -y))
    rows: list[list[int]] = []
    row_top = np.inf
    for index in by_north:
        if not rows or row_top - y[index] > band:
            rows.append([])
            row_top = y[index]
        rows[-1].append(int(index))
    order = [i for row in rows for i in sorted(row, key=lambda i: (x[i], -y[i], i))]
    return np.asarray(order, dtype=np.int64)


def same_shape(
    a: BaseGeometry, b: BaseGeometry, *, area_tolerance: float = 0.01, distance_tolerance_m: float = 1.0
) -> bool:
    """True when two grids are the same place: small symmetric difference and small Hausdorff distance."""
    area = max(float(b.area), 1e-9)
    difference = float(shapely.area(shapely.symmetric_difference(a, b)))
    if difference > area_tolerance * area:
        return False
    return bool(shapely.hausdorff_distance(a, b) <= distance_tolerance_m)


def match_survivors(
    new: Sequence[BaseGeometry] | npt.NDArray[np.object_],
    old: Sequence[BaseGeometry] | npt.NDArray[np.object_],
    *,
    area_tolerance: float = 0.01,
    distance_tolerance_m: float = 1.0,
) -> IntArray:
    """For each new grid, the index of the old grid it is the same shape as, or -1.

    An old grid survives into at most one new grid (the closest in symmetric difference).
    """
    new_array = np.asarray(new, dtype=object)
    old_array = np.asarray(old, dtype=object)
    match = np.full(len(new_array), -1, dtype=np.int64)
    if len(new_array) == 0 or len(old_array) == 0:
        return match
    tree = shapely.STRtree(old_array)
    i_all, j_all = tree.query(new_array, predicate="intersects")
    # Cheap necessary conditions first (most pairs are mere neighbours): a Hausdorff distance under d
    # moves no side of the bounding box by more than d, and a symmetric difference under t * A changes
    # the area by less than t * A.
    new_bounds, old_bounds = shapely.bounds(new_array), shapely.bounds(old_array)
    new_area, old_area = shapely.area(new_array), np.maximum(shapely.area(old_array), 1e-9)
    close = np.all(np.abs(new_bounds[i_all] - old_bounds[j_all]) <= distance_tolerance_m, axis=1) & (
        np.abs(new_area[i_all] - old_area[j_all]) <= area_tolerance * old_area[j_all]
    )
    candidates: list[tuple[float, int, int]] = []
    for i, j in zip(i_all[close].tolist(), j_all[close].tolist(), strict=True):
        if same_shape(
            new_array[i],
            old_array[j],
            area_tolerance=area_tolerance,
            distance_tolerance_m=distance_tolerance_m,
        ):
            difference = float(shapely.area(shapely.symmetric_difference(new_array[i], old_array[j])))
            candidates.append((difference, i, j))
    taken_old: set[int] = set()
    for _difference, i, j in sorted(candidates):
        if match[i] == -1 and j not in taken_old:
            match[i] = j
            taken_old.add(j)
    return match


class CodesExhaustedError(ValueError):
    """A community has used every number its code width allows."""


@dataclass(frozen=True)
class CodedGrids:
    """The codes of a community's new grids, in the input order, and which kept an old code."""

    codes: list[str]
    kept: npt.NDArray[np.bool_]


def _assign(
    new: Sequence[BaseGeometry] | npt.NDArray[np.object_],
    old: Sequence[tuple[str, BaseGeometry]],
    ever_used: Iterable[str],
    *,
    prefix: str,
    make: Callable[[int], str],
    last_number: int,
    area_tolerance: float,
    distance_tolerance_m: float,
) -> CodedGrids:
    """Survivors keep their codes; the others take numbers after the highest ever used, in reading order."""
    old_codes = [code for code, _ in old]
    match = match_survivors(
        new,
        [geom for _, geom in old],
        area_tolerance=area_tolerance,
        distance_tolerance_m=distance_tolerance_m,
    )
    # Unit and responsibility grid codes share the community prefix, and 14- and 15-digit unit grid codes
    # share it too: count only the numbers of this kind and width.
    width = len(make(1))
    used = {
        int(c[len(prefix) :])
        for c in (*old_codes, *ever_used)
        if c.startswith(prefix) and len(c) == width and c[len(prefix) :].isdigit()
    }
    next_number = max(used, default=0) + 1
    codes: list[str | None] = [old_codes[j] if j >= 0 else None for j in match.tolist()]
    for index in reading_order(new).tolist():
        if codes[index] is None:
            if next_number > last_number:
                raise CodesExhaustedError(
                    f"every number up to {last_number} after {prefix} is used: no code is left"
                )
            codes[index] = make(next_number)
            next_number += 1
    return CodedGrids(codes=[str(c) for c in codes], kept=match >= 0)


def code_unit_grids(
    community_code: str,
    new: Sequence[BaseGeometry] | npt.NDArray[np.object_],
    old: Sequence[tuple[str, BaseGeometry]] = (),
    *,
    ever_used: Iterable[str] = (),
    digits: Literal[2, 3] = 3,
    area_tolerance: float = 0.01,
    distance_tolerance_m: float = 1.0,
) -> CodedGrids:
    """Unit grid codes for a community's new grids (see the module docstring for the rules).

    Parameters
    ----------
    community_code : str
        12-digit community code.
    new : sequence of polygons
        The community's new unit grids (metric CRS).
    old : sequence of (code, polygon)
        The community's grids in the plan being replaced.
    ever_used : iterable of str
        Every unit grid code this community has had in any plan (retired ones too): never reused.
    digits : {2, 3}
        14- or 15-digit codes.

    Returns
    -------
    CodedGrids

    Raises
    ------
    ValueError
        When the community runs out of numbers for the code width (99 for 14-digit codes: use 15).
    """
    return _assign(
        new,
        old,
        ever_used,
        prefix=community_code,
        make=lambda n: format_unit_grid_code(community_code, n, digits),
        last_number=10**digits - 1,
        area_tolerance=area_tolerance,
        distance_tolerance_m=distance_tolerance_m,
    )


def code_responsibility_grids(
    community_code: str,
    new: Sequence[BaseGeometry] | npt.NDArray[np.object_],
    old: Sequence[tuple[str, BaseGeometry]] = (),
    *,
    ever_used: Iterable[str] = (),
    area_tolerance: float = 0.01,
    distance_tolerance_m: float = 1.0,
) -> CodedGrids:
    """Responsibility grid codes (``…R01``) by the same rules: survivors keep theirs, others get new ones."""
    return _assign(
        new,
        old,
        ever_used,
        prefix=community_code + "R",
        make=lambda n: format_responsibility_grid_code(community_code, n),
        last_number=99,
        area_tolerance=area_tolerance,
        distance_tolerance_m=distance_tolerance_m,
    )
