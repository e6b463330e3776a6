"""The in-memory rule for which unit grid holds a feature (smallest code on a shared edge)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from gis.gridindex import NO_GRID, UnitGridIndex


def test_a_feature_goes_to_the_grid_at_its_representative_point_and_edges_to_the_first_code() -> None:
    # Two grids side by side, given in code order: 11 (west, no responsibility grid) then 12 (east).
    index = UnitGridIndex([11, 12], [NO_GRID, 7], [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)])
    features = np.array(
        [
            shapely.Point(0.5, 0.5),  # inside the west grid
            shapely.Point(1.5, 0.5),  # inside the east grid
            shapely.Point(1.0, 0.5),  # on the shared edge: the first in code order
            shapely.Point(5.0, 5.0),  # in no grid
            shapely.box(1.2, 0.2, 1.8, 0.4),  # a polygon, placed by its point on surface
            shapely.LineString([(0.1, 0.1), (0.1, 0.9)]),  # a line, likewise
            None,  # no geometry: no grid
        ],
        dtype=object,
    )
    unit, responsibility = index.assign(features)
    assert unit.tolist() == [11, 12, 11, NO_GRID, 12, 11, NO_GRID]
    assert responsibility.tolist() == [NO_GRID, 7, NO_GRID, NO_GRID, 7, NO_GRID, NO_GRID]
    assert len(index) == 2


def test_arrays_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one entry per grid"):
        UnitGridIndex([1, 2], [3], [shapely.box(0, 0, 1, 1)])


def test_a_feature_in_no_grid_goes_to_the_nearest_within_the_distance_measured_in_metres() -> None:
    # Two 0.001° grids near Jinan, either side of EPSG:4548's central meridian (117° E) with a 0.001° gap
    # (about 89 m east-west) between them, in code order. The projection is symmetric about that meridian,
    # so a point on it is exactly as far from both.
    west, east = (
        shapely.box(116.9985, 36.650, 116.9995, 36.651),
        shapely.box(117.0005, 36.650, 117.0015, 36.651),
    )
    index = UnitGridIndex(
        [21, 22], [5, 6], [west, east], nearest_within_m=50, lon_lat_crs="EPSG:4490", metric_crs="EPSG:4548"
    )
    metres_per_degree_east = 111_320 * np.cos(np.radians(36.6505))  # about 89,300 m
    features = np.array(
        [
            shapely.Point(116.9995 + 20 / metres_per_degree_east, 36.6505),  # 20 m east of the west grid
            shapely.Point(117.0005 - 30 / metres_per_degree_east, 36.6505),  # 30 m west of the east grid
            shapely.Point(117.0, 36.6505),  # on the meridian: 44.7 m from both, the first code wins
            shapely.Point(117.0, 36.6505 + 0.0009),  # north of the gap: 63 m from both, too far
            shapely.Point(117.0015 + 45 / metres_per_degree_east, 36.6505),  # 45 m east of the east grid
            shapely.Point(117.0015 + 60 / metres_per_degree_east, 36.6505),  # 60 m: too far
        ],
        dtype=object,
    )
    unit, responsibility = index.assign(features)
    assert unit.tolist() == [21, 22, 21, NO_GRID, 22, NO_GRID]
    assert responsibility.tolist() == [5, 6, 5, NO_GRID, 6, NO_GRID]
    # Without the distance, the same points in the gap get no grid.
    plain = UnitGridIndex([21, 22], [5, 6], [west, east])
    assert plain.assign(features)[0].tolist() == [NO_GRID] * 6


def test_the_nearest_grid_needs_both_crs() -> None:
    with pytest.raises(ValueError, match="metric CRS"):
        UnitGridIndex([1], [2], [shapely.box(0, 0, 1, 1)], nearest_within_m=10)
