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
