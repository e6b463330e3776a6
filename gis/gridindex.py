"""Which unit grid holds each feature: the rule of imports and plan activations, done in memory.

A feature belongs to the unit grid its representative point intersects: the point itself, or for a line
or polygon GEOS's point on surface (what PostGIS's ``ST_PointOnSurface`` returns). A point on an edge
shared by several grids goes to the one with the smallest code. A point in no grid goes to the grid
nearest to it within ``nearest_within_m`` metres, measured in the city's metric CRS (equal distances:
the smallest code): a lamp on the city's edge road lies a few metres outside the generalised district
boundary the grids are drawn to, and still needs an owner. PostGIS applies the same rule in SQL
(gridsvc/repositories/grid_rule.py, for plan activations and small imports). In memory, a million
points take about a second against the city's 347,207 unit grids; the SQL lookup takes 12-18 s for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from gis.crs import CRSLike, transform_geometry
from gis.geometry import representative_points

IntArray = npt.NDArray[np.int64]
NO_GRID = -1

# Metres in a degree of latitude, rounded down (110,574 m at the equator): so that the box of
# :func:`degree_margins` holds every point within that many metres, and a little more.
METRES_PER_DEGREE = 110_000.0


def degree_margins(metres: float, latitudes: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], float]:
    """Half-widths in degrees (longitude at each latitude, latitude) of a box around a lon/lat point that
    holds everything within ``metres`` of it: the cheap first filter before the metric distance. The SQL
    of the same rule computes the same box."""
    lat = np.radians(np.asarray(latitudes, dtype=np.float64))
    return metres / (METRES_PER_DEGREE * np.cos(lat)), metres / METRES_PER_DEGREE


class UnitGridIndex:
    """The unit grids of one plan, in code order, indexed to find the grid holding each feature.

    Parameters
    ----------
    ids, responsibility_ids : int arrays
        Each unit grid's id and its responsibility grid's id (:data:`NO_GRID` for none), ordered by the
        grids' codes: on a shared edge the first in this order wins.
    geoms : array of shapely polygons
        The grids, in the features' CRS: lon/lat when ``nearest_within_m`` is set.
    nearest_within_m, lon_lat_crs, metric_crs
        A feature in no grid goes to the nearest grid within ``nearest_within_m`` metres, measured in
        ``metric_crs`` from ``lon_lat_crs`` (the features' and grids' CRS). 0 (the default): to none.
    """

    def __init__(
        self,
        ids: npt.ArrayLike,
        responsibility_ids: npt.ArrayLike,
        geoms: Any,
        *,
        nearest_within_m: float = 0.0,
        lon_lat_crs: CRSLike | None = None,
        metric_crs: CRSLike | None = None,
    ) -> None:
        self._nearest_within_m = nearest_within_m
        self._crs: tuple[CRSLike, CRSLike] | None = None
        if nearest_within_m > 0:
            if lon_lat_crs is None or metric_crs is None:
                raise ValueError("nearest_within_m needs the lon/lat CRS of the grids and a metric CRS")
            self._crs = (lon_lat_crs, metric_crs)
        self._ids = np.asarray(ids, dtype=np.int64)
        self._responsibility_ids = np.asarray(responsibility_ids, dtype=np.int64)
        geoms = np.asarray(geoms, dtype=object)
        if not len(self._ids) == len(self._responsibility_ids) == len(geoms):
            raise ValueError("ids, responsibility_ids and geoms must have one entry per grid")
        self._geoms = geoms
        self._tree = shapely.STRtree(geoms)

    def __len__(self) -> int:
        return len(self._ids)

    def assign(self, geoms: Any) -> tuple[IntArray, IntArray]:
        """(unit grid id, responsibility grid id) of each feature; :data:`NO_GRID` where none holds it."""
        features = np.asarray(geoms, dtype=object)
        points = representative_points(features)
        feature_at, grid_at = self._tree.query(points, predicate="intersects")
        # Grids are in code order, so the smallest position among a feature's hits is its smallest code.
        best = np.full(len(features), len(self._ids), dtype=np.int64)
        np.minimum.at(best, feature_at, grid_at)
        found = best < len(self._ids)
        if self._crs is not None and not found.all():
            lost = np.flatnonzero(~found & ~shapely.is_missing(points))
            nearest = self._nearest(points[lost])
            best[lost] = nearest
            found[lost] = nearest < len(self._ids)
        unit = np.full(len(features), NO_GRID, dtype=np.int64)
        responsibility = np.full(len(features), NO_GRID, dtype=np.int64)
        unit[found] = self._ids[best[found]]
        responsibility[found] = self._responsibility_ids[best[found]]
        return unit, responsibility

    def _nearest(self, points: Any) -> IntArray:
        """Position of the grid nearest each point within the distance (smallest position on equal
        distances), ``len(self)`` where none is that near."""
        best = np.full(len(points), len(self._ids), dtype=np.int64)
        if len(points) == 0 or self._crs is None:
            return best
        x, y = shapely.get_x(points), shapely.get_y(points)
        dx, dy = degree_margins(self._nearest_within_m, y)
        boxes = shapely.box(x - dx, y - dy, x + dx, y + dy)
        point_at, grid_at = self._tree.query(boxes)  # bounding boxes that overlap, as PostGIS's &&
        if point_at.size == 0:
            return best
        lon_lat, metric = self._crs
        near_grids, grid_pair = np.unique(grid_at, return_inverse=True)
        metric_grids = transform_geometry(self._geoms[near_grids], lon_lat, metric)
        metric_points = transform_geometry(points, lon_lat, metric)
        metres = shapely.distance(metric_points[point_at], metric_grids[grid_pair])
        close = metres <= self._nearest_within_m
        point_at, grid_at, metres = point_at[close], grid_at[close], metres[close]
        # Nearest first, then the smallest position (code): the first pair of each point is its grid.
        order = np.lexsort((grid_at, metres, point_at))
        point_at, grid_at = point_at[order], grid_at[order]
        first = np.r_[True, point_at[1:] != point_at[:-1]] if point_at.size else np.zeros(0, dtype=bool)
        best[point_at[first]] = grid_at[first]
        return best
