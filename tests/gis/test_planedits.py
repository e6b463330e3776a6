"""Tests for gis.planedits: the sides of a drawn line, shared edges, grids in one piece, drawn lines, codes.

Unit grids are 100 m squares in local metres; ``square(col, row)`` is ``box(100 * col, 100 * row, ...)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import shapely
from shapely.geometry import LineString

from gis.planedits import (
    EditGeometryError,
    next_responsibility_grid_code,
    parse_line,
    piece_counts,
    shared_edge_m,
    split_by_line,
)
from gis.redraw import unit_adjacency


def squares(cells: list[tuple[int, int]]) -> npt.NDArray[np.object_]:
    return np.asarray(
        [shapely.box(100 * c, 100 * r, 100 * (c + 1), 100 * (r + 1)) for c, r in cells], dtype=object
    )


# South-west, south-east, north-west, north-east.
FOUR = squares([(0, 0), (1, 0), (0, 1), (1, 1)])


def test_a_line_along_the_middle_edge_splits_a_square_of_four_without_cutting_any() -> None:
    split = split_by_line(FOUR, LineString([(-10, 100), (210, 100)]))
    # Equal halves: the side of the unit first in reading order (north-west) keeps the code.
    assert split.side.tolist() == [1, 1, 0, 0]
    assert split.cut.tolist() == [False] * 4
    assert split.pieces == 2


def test_a_cut_unit_goes_to_the_side_holding_most_of_it() -> None:
    split = split_by_line(FOUR, LineString([(-10, 130), (210, 130)]))
    assert split.side.tolist() == [1, 1, 0, 0]  # the north units are 70 % north of the line
    assert split.cut.tolist() == [False, False, True, True]
    assert split.minority_m2 == pytest.approx([0, 0, 3000, 3000])

    diagonal = split_by_line(FOUR, LineString([(-10, -10), (210, 180)]))
    # South-west: 41.8 % above the line, so below; south-east: 98.7 % below; north-east: 70.5 % above.
    assert diagonal.side.tolist() == [0, 1, 0, 0]
    assert diagonal.minority_m2 == pytest.approx([4182.894737, 130.263158, 0, 2948.444976])
    assert diagonal.cut.tolist() == [True, True, False, True]


def test_the_side_holding_more_area_keeps_the_code() -> None:
    six = squares([(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)])
    split = split_by_line(six, LineString([(100, -10), (100, 210)]))
    assert split.side.tolist() == [1, 0, 0, 1, 0, 0]  # the west column is split off


def test_a_line_crossing_twice_makes_three_pieces_on_two_sides() -> None:
    strip = squares([(0, 0), (1, 0), (2, 0), (3, 0)])
    bent = LineString([(70, -10), (70, 110), (330, 110), (330, -10)])
    split = split_by_line(strip, bent)
    assert split.pieces == 3
    # West and east pieces are outside the bend, the middle inside: the ends go together.
    assert split.side.tolist() == [0, 1, 1, 0]
    assert split.cut.tolist() == [True, False, False, True]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (LineString([(300, 0), (400, 300)]), "does not cross the grid"),  # misses
        (LineString([(-10, 150), (150, 150)]), "does not cross the grid"),  # runs in and stops
        (LineString([(-10, 190), (210, 190)]), "mostly on one side"),  # only a sliver off the north
        (LineString([(-10, 200), (210, 200)]), "does not cross the grid"),  # along the edge
    ],
)
def test_a_line_that_does_not_divide_the_grid_is_refused(line: LineString, message: str) -> None:
    with pytest.raises(EditGeometryError, match=message):
        split_by_line(FOUR, line)


def test_pieces_and_shared_edges_follow_rook_adjacency() -> None:
    adjacency = unit_adjacency(FOUR)
    assert piece_counts([0, 0, 1, 1], adjacency) == {0: 1, 1: 1}
    # Diagonal pairs touch at a corner only: each grid is two pieces.
    assert piece_counts([0, 1, 1, 0], adjacency) == {0: 2, 1: 2}
    assert piece_counts([0, 0, 0, -1], adjacency) == {0: 1}  # -1: no grid, not counted
    assert shared_edge_m([0, 0, 1, 1], adjacency, 0, 1) == pytest.approx(200.0)
    assert shared_edge_m([0, 1, 2, 2], adjacency, 0, 1) == pytest.approx(100.0)
    assert shared_edge_m([0, 1, 1, 2], adjacency, 0, 2) == 0.0  # a corner is not an edge


def test_parse_line_reads_wkt_and_geojson() -> None:
    expected = LineString([(117.001, 36.683), (117.009, 36.683)])
    assert parse_line("LINESTRING(117.001 36.683, 117.009 36.683)").equals(expected)
    assert parse_line('{"type": "LineString", "coordinates": [[117.001, 36.683], [117.009, 36.683]]}').equals(
        expected
    )
    feature = {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(expected)}
    assert parse_line(feature).equals(expected)
    assert parse_line("MULTILINESTRING((117.001 36.683, 117.009 36.683))").equals(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("POINT(117 36.68)", "must be a LineString"),
        ("MULTILINESTRING((0 0, 1 1), (2 2, 3 3))", "must be a LineString"),
        ("LINESTRING(0 0, 0 0)", "two different points"),
        ("LINESTRING(0 0, 2 2, 2 0, 0 2)", "crosses itself"),
        ("LINESTRIN(0 0, 1 1)", "neither WKT nor GeoJSON"),
        ('{"type": "LineString"}', "neither WKT nor GeoJSON"),
        ({"type": "Feature", "geometry": None}, "no geometry"),
        ("  ", "empty"),
    ],
)
def test_parse_line_says_what_is_wrong(value: object, message: str) -> None:
    with pytest.raises(EditGeometryError, match=message):
        parse_line(value)  # type: ignore[arg-type]


def test_next_code_follows_the_highest_number_ever_used() -> None:
    used = ["370102001001R03", "370102001001R08", "370102001001005", "370102001002R40"]
    assert next_responsibility_grid_code("370102001001", used) == "370102001001R09"
    assert next_responsibility_grid_code("370102001001", []) == "370102001001R01"
    with pytest.raises(ValueError, match="every responsibility grid number"):
        next_responsibility_grid_code("370102001001", ["370102001001R99"])
