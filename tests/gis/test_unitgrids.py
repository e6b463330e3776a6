"""Tests for gis.unitgrids: hand-made communities whose unit grids are known.

Coordinates are EPSG:4548-like metres around (500000, 4060000). Every case checks the rules of
DOMAIN.md §2: each unit grid is one valid Polygon inside its community (nesting, contiguity), and the
unit grids cover the community as a coverage, with no gap and no overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import shapely
from shapely import LineString, MultiLineString, MultiPolygon, Point, Polygon, box
from shapely.affinity import rotate
from shapely.geometry.base import BaseGeometry

from gis.unitgrids import (
    AREA_RTOL,
    UnitGridParams,
    coverage_problems,
    cut_blocks,
    is_sliver,
    merge_slivers,
    split_block,
    unit_grids_for_community,
)

X0, Y0 = 500_000.0, 4_060_000.0
SQUARE = box(X0, Y0, X0 + 200, Y0 + 200)
# Two roads crossing the square through its centre, overshooting its edges as real roads do.
CROSS_ROADS = [
    LineString([(X0 - 50, Y0 + 100), (X0 + 250, Y0 + 100)]),
    LineString([(X0 + 100, Y0 - 50), (X0 + 100, Y0 + 250)]),
]
QUADRANTS = {
    "NW": box(X0, Y0 + 100, X0 + 100, Y0 + 200),
    "NE": box(X0 + 100, Y0 + 100, X0 + 200, Y0 + 200),
    "SW": box(X0, Y0, X0 + 100, Y0 + 100),
    "SE": box(X0 + 100, Y0, X0 + 200, Y0 + 100),
}


def polsby_popper(part: Polygon) -> float:
    return float(4 * math.pi * part.area / part.length**2)


def assert_unit_grids(
    community: Polygon | MultiPolygon, parts: Sequence[Polygon], params: UnitGridParams
) -> None:
    """The rules every result obeys: a coverage of the community by single valid polygons, none too big."""
    assert coverage_problems(community, parts) == []
    assert shapely.coverage_is_valid(np.array(parts, dtype=object))
    for part in parts:
        assert part.geom_type == "Polygon"
        assert part.is_valid
        assert shapely.difference(part, community).area <= 1e-6
        assert part.area <= params.max_area_m2 * (1 + AREA_RTOL)
    assert sum(part.area for part in parts) == pytest.approx(community.area, abs=1e-6)


def same_shape(left: BaseGeometry, right: BaseGeometry) -> bool:
    """Equal up to vertex order and nodes along straight edges."""
    return bool(shapely.symmetric_difference(left, right).area < 1e-6)


def run(community: Polygon | MultiPolygon, cutters: Sequence[BaseGeometry], **sizes: float) -> list[Polygon]:
    params = UnitGridParams(**sizes)
    parts = unit_grids_for_community(community, cutters, params)
    assert_unit_grids(community, parts, params)
    return parts


# --- the hand-made communities ------------------------------------------------------------------------


def test_square_cut_in_four_by_two_crossing_roads() -> None:
    parts = run(SQUARE, CROSS_ROADS, max_area_m2=12_000)

    assert len(parts) == 4
    assert [part.area for part in parts] == pytest.approx([10_000.0] * 4)
    # Reading order: north row west to east, then the south row.
    for part, name in zip(parts, ["NW", "NE", "SW", "SE"], strict=True):
        assert same_shape(part, QUADRANTS[name]), name


def test_blocks_of_exactly_the_maximum_are_not_split() -> None:
    parts = run(SQUARE, CROSS_ROADS)

    assert len(parts) == 4
    assert all(same_shape(part, QUADRANTS[name]) for part, name in zip(parts, QUADRANTS, strict=True))


def test_square_blocks_above_the_maximum_split_in_compact_parts() -> None:
    parts = run(SQUARE, CROSS_ROADS, max_area_m2=5_000)

    for quadrant in QUADRANTS.values():
        inside = [part for part in parts if quadrant.contains(part.point_on_surface())]
        assert 2 <= len(inside) <= 3
        # Each part nests in its block: splitting never crosses a road.
        assert all(shapely.difference(part, quadrant).area < 1e-6 for part in inside)
        assert [part.area for part in inside] == pytest.approx([10_000 / len(inside)] * len(inside))
        assert all(polsby_popper(part) > 0.6 for part in inside)


def test_river_polygon_across_a_community_is_its_own_grid() -> None:
    river = box(X0 - 100, Y0 + 90, X0 + 300, Y0 + 110)

    parts = run(SQUARE, [river], max_area_m2=20_000)

    assert len(parts) == 3
    north, water, south = parts
    assert same_shape(north, box(X0, Y0 + 110, X0 + 200, Y0 + 200))
    assert same_shape(water, box(X0, Y0 + 90, X0 + 200, Y0 + 110))
    assert same_shape(south, box(X0, Y0, X0 + 200, Y0 + 90))


def test_river_as_two_bank_lines_cuts_the_same() -> None:
    banks = MultiLineString(
        [[(X0 - 100, Y0 + 90), (X0 + 300, Y0 + 90)], [(X0 - 100, Y0 + 110), (X0 + 300, Y0 + 110)]]
    )

    parts = run(SQUARE, [banks], max_area_m2=20_000)

    assert [round(part.area) for part in parts] == [18_000, 4_000, 18_000]


def test_a_ditch_thinner_than_the_minimum_width_merges_into_a_bank() -> None:
    ditch = box(X0 - 100, Y0 + 99, X0 + 300, Y0 + 101)  # 2 m wide, 400 m²

    parts = run(SQUARE, [ditch], max_area_m2=40_000)

    assert len(parts) == 2
    assert sorted(round(part.area) for part in parts) == [19_800, 20_200]


def test_l_shaped_community_splits_into_single_polygons() -> None:
    l_shape = Polygon(
        [
            (X0, Y0),
            (X0 + 200, Y0),
            (X0 + 200, Y0 + 100),
            (X0 + 100, Y0 + 100),
            (X0 + 100, Y0 + 200),
            (X0, Y0 + 200),
        ]
    )

    parts = run(l_shape, [])

    assert len(parts) == 3
    assert [part.area for part in parts] == pytest.approx([10_000.0] * 3)


def test_l_shaped_community_with_a_road_along_its_inner_corner() -> None:
    l_shape = Polygon(
        [
            (X0, Y0),
            (X0 + 200, Y0),
            (X0 + 200, Y0 + 100),
            (X0 + 100, Y0 + 100),
            (X0 + 100, Y0 + 200),
            (X0, Y0 + 200),
        ]
    )
    road = LineString([(X0 - 20, Y0 + 100), (X0 + 120, Y0 + 100)])

    parts = run(l_shape, [road], max_area_m2=20_000)

    assert len(parts) == 2
    assert same_shape(parts[0], box(X0, Y0 + 100, X0 + 100, Y0 + 200))
    assert same_shape(parts[1], box(X0, Y0, X0 + 200, Y0 + 100))


def test_community_too_small_to_split_is_one_grid() -> None:
    tiny = box(X0, Y0, X0 + 60, Y0 + 50)  # 3,000 m²

    parts = run(tiny, [])

    assert len(parts) == 1
    assert same_shape(parts[0], tiny)


def test_community_smaller_than_a_sliver_stays_whole() -> None:
    crumb = box(X0, Y0, X0 + 10, Y0 + 10)
    road = LineString([(X0 + 5, Y0 - 1), (X0 + 5, Y0 + 11)])

    parts = run(crumb, [road])

    # Both halves are slivers; one absorbs the other, and what is left has no neighbour.
    assert len(parts) == 1
    assert same_shape(parts[0], crumb)


def test_one_huge_block_splits_into_compact_parts_of_at_most_the_maximum() -> None:
    huge = box(X0, Y0, X0 + 1_000, Y0 + 1_000)

    parts = run(huge, [])

    assert len(parts) == 100
    assert [part.area for part in parts] == pytest.approx([10_000.0] * 100, rel=1e-6)
    scores = [polsby_popper(part) for part in parts]
    assert min(scores) > 0.5
    assert sum(score > 0.7 for score in scores) >= 90


def test_huge_rural_community_with_a_larger_maximum() -> None:
    village = Polygon(
        [
            (X0, Y0),
            (X0 + 2_000, Y0 + 100),
            (X0 + 1_900, Y0 + 1_100),
            (X0 + 300, Y0 + 1_000),
            (X0 - 100, Y0 + 500),
        ]
    )
    lane = LineString([(X0 - 200, Y0 + 300), (X0 + 2_200, Y0 + 700)])

    parts = run(village, [lane], max_area_m2=50_000)

    assert len(parts) == math.ceil(
        sum(math.ceil(block.area / 50_000) for block in cut_blocks(village, [lane])) - 1e-9
    )
    assert sum(polsby_popper(part) > 0.5 for part in parts) >= 0.9 * len(parts)


def test_slivers_from_a_road_clipping_a_corner_are_merged() -> None:
    corner_road = LineString([(X0 - 10, Y0 + 20), (X0 + 20, Y0 - 10)])  # cuts a 50 m² triangle off SW

    parts = run(SQUARE, [corner_road], max_area_m2=40_000)

    assert len(parts) == 1
    assert same_shape(parts[0], SQUARE)


def test_strip_between_a_road_and_the_boundary_is_merged() -> None:
    near_edge = LineString([(X0 - 10, Y0 + 198), (X0 + 210, Y0 + 198)])  # a 2 m x 200 m strip in the north
    middle = LineString([(X0 + 100, Y0 - 10), (X0 + 100, Y0 + 210)])

    parts = run(SQUARE, [near_edge, middle], max_area_m2=20_000)

    assert len(parts) == 2
    assert same_shape(parts[0], box(X0, Y0, X0 + 100, Y0 + 200))
    assert same_shape(parts[1], box(X0 + 100, Y0, X0 + 200, Y0 + 200))


def test_dangling_roads_cut_nothing() -> None:
    dead_end = LineString([(X0 - 30, Y0 + 50), (X0 + 60, Y0 + 50)])
    inner_lane = LineString([(X0 + 120, Y0 + 40), (X0 + 150, Y0 + 160)])
    middle = LineString([(X0 + 100, Y0 - 10), (X0 + 100, Y0 + 210)])

    parts = run(SQUARE, [dead_end, inner_lane, middle], max_area_m2=20_000)

    assert len(parts) == 2
    assert same_shape(parts[0], box(X0, Y0, X0 + 100, Y0 + 200))
    assert same_shape(parts[1], box(X0 + 100, Y0, X0 + 200, Y0 + 200))


def test_road_ending_a_few_millimetres_short_of_the_boundary_still_cuts() -> None:
    short = LineString([(X0 + 100, Y0 + 0.005), (X0 + 100, Y0 + 250)])

    parts = run(SQUARE, [short], max_area_m2=20_000)

    assert len(parts) == 2
    assert same_shape(parts[0], box(X0, Y0, X0 + 100, Y0 + 200))


def test_net_boundaries_given_as_polygons_cut_too() -> None:
    nets = [box(X0 - 50, Y0 - 50, X0 + 100, Y0 + 250), box(X0 + 100, Y0 - 50, X0 + 250, Y0 + 250)]

    parts = run(SQUARE, nets, max_area_m2=20_000)

    assert len(parts) == 2
    assert same_shape(parts[0], box(X0, Y0, X0 + 100, Y0 + 200))
    assert same_shape(parts[1], box(X0 + 100, Y0, X0 + 200, Y0 + 200))


def test_net_boundary_a_millimetre_off_the_community_edge_leaves_no_sliver() -> None:
    net = box(X0 + 0.001, Y0 - 0.001, X0 + 100, Y0 + 200.001)

    parts = run(SQUARE, [net], max_area_m2=20_000)

    assert len(parts) == 2
    assert [round(part.area) for part in parts] == [20_000, 20_000]


def test_community_with_an_enclave_is_covered_around_it() -> None:
    enclave = box(X0 + 80, Y0 + 80, X0 + 120, Y0 + 120)
    holed = SQUARE.difference(enclave)

    parts = run(holed, CROSS_ROADS, max_area_m2=12_000)

    assert len(parts) == 4
    assert all(part.intersection(enclave).area == 0 for part in parts)


def test_community_in_two_pieces() -> None:
    island = box(X0 + 300, Y0, X0 + 350, Y0 + 50)
    community = MultiPolygon([SQUARE, island])

    parts = run(community, CROSS_ROADS, max_area_m2=12_000)

    assert len(parts) == 5
    assert any(same_shape(part, island) for part in parts)


def test_rotated_community_with_a_road_grid() -> None:
    centre = Point(X0 + 500, Y0 + 500)
    square = rotate(box(X0, Y0, X0 + 1_000, Y0 + 1_000), 30, origin=centre)
    roads = [
        rotate(LineString([(X0 - 10, Y0 + step), (X0 + 1_010, Y0 + step)]), 30, origin=centre)
        for step in range(130, 1_000, 130)
    ] + [
        rotate(LineString([(X0 + step, Y0 - 10), (X0 + step, Y0 + 1_010)]), 30, origin=centre)
        for step in range(170, 1_000, 170)
    ]

    parts = run(square, roads)

    assert len(parts) > 100


@pytest.mark.parametrize("seed", range(6))
def test_irregular_communities_with_random_roads(seed: int) -> None:
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * math.pi, 14))
    radii = rng.uniform(300, 700, 14)
    community = Polygon(np.column_stack([X0 + radii * np.cos(angles), Y0 + radii * np.sin(angles)])).buffer(0)
    origin = np.array([X0, Y0])
    roads = [LineString(origin + rng.uniform(-800, 800, (int(rng.integers(2, 5)), 2))) for _ in range(12)]

    parts = run(community, roads)

    scores = [polsby_popper(part) for part in parts]
    assert np.median(scores) > 0.5


@pytest.mark.parametrize("seed", [0, 17, 33])
def test_spiky_communities_where_straight_cuts_leave_strays(seed: int) -> None:
    # Radii jump between 50 and 600 m, so most straight cuts cross several spikes and leave stray pieces
    # on one side, which merge into their neighbours.
    rng = np.random.default_rng(seed)
    count = int(rng.integers(8, 40))
    angles = np.linspace(0, 2 * math.pi, count, endpoint=False)
    radii = rng.uniform(50, 600, count)
    community = Polygon(np.column_stack([X0 + radii * np.cos(angles), Y0 + radii * np.sin(angles)]))

    parts = run(community, [])

    assert len(parts) >= math.ceil(community.area / 10_000)


def test_same_input_gives_the_same_grids() -> None:
    roads = [*CROSS_ROADS, LineString([(X0 + 30, Y0 - 10), (X0 + 170, Y0 + 210)])]
    village = box(X0, Y0, X0 + 400, Y0 + 300)

    first = [part.wkt for part in unit_grids_for_community(village, roads)]
    second = [part.wkt for part in unit_grids_for_community(village, roads)]
    reversed_cutters = [part.wkt for part in unit_grids_for_community(village, roads[::-1])]

    assert first == second
    assert first == reversed_cutters


def test_exterior_rings_are_counter_clockwise() -> None:
    parts = run(SQUARE, CROSS_ROADS, max_area_m2=5_000)

    assert all(part.exterior.is_ccw for part in parts)


# --- the steps -------------------------------------------------------------------------------------


def test_cut_blocks_keeps_only_faces_inside_the_community() -> None:
    ring_road = box(X0 - 100, Y0 - 100, X0 + 300, Y0 + 300).exterior  # encloses it, cuts nothing
    blocks = cut_blocks(SQUARE, [*CROSS_ROADS, ring_road, Point(X0 + 10, Y0 + 10)])

    assert sorted(round(block.area) for block in blocks) == [10_000] * 4


def test_cut_blocks_without_cutters_returns_the_community() -> None:
    blocks = cut_blocks(SQUARE, [])

    assert len(blocks) == 1
    assert same_shape(blocks[0], SQUARE)


def test_merge_slivers_picks_the_neighbour_sharing_the_longest_edge() -> None:
    sliver = box(X0 + 100, Y0, X0 + 110, Y0 + 20)  # 200 m²: 20 m shared west, 10 m north
    west = box(X0, Y0, X0 + 100, Y0 + 100)
    north = box(X0 + 100, Y0 + 20, X0 + 200, Y0 + 100)
    east = box(X0 + 110, Y0, X0 + 200, Y0 + 20)  # shares 20 m too, but comes after west

    merged = merge_slivers([west, sliver, north, east], UnitGridParams())

    assert len(merged) == 3
    assert same_shape(merged[0], west.union(sliver))
    assert merged[1:] == [north, east]


def test_merge_slivers_leaves_a_lonely_sliver() -> None:
    lonely = box(X0, Y0, X0 + 5, Y0 + 5)
    far = box(X0 + 100, Y0, X0 + 200, Y0 + 100)

    assert merge_slivers([far, lonely], UnitGridParams()) == [far, lonely]


def test_is_sliver_by_area_and_by_width() -> None:
    params = UnitGridParams()

    assert is_sliver(box(0, 0, 20, 20), params)  # 400 m²
    assert is_sliver(box(0, 0, 2.5, 400), params)  # 1,000 m² but 2.5 m wide
    assert not is_sliver(box(0, 0, 30, 30), params)


def test_split_block_returns_a_fitting_block_unchanged() -> None:
    block = box(X0, Y0, X0 + 50, Y0 + 50)

    assert split_block(block, 10_000) == [block]


def test_split_block_of_a_u_shape_gives_single_polygons() -> None:
    u_shape = Polygon(
        [
            (X0, Y0),
            (X0 + 300, Y0),
            (X0 + 300, Y0 + 300),
            (X0 + 250, Y0 + 300),
            (X0 + 250, Y0 + 50),
            (X0 + 50, Y0 + 50),
            (X0 + 50, Y0 + 300),
            (X0, Y0 + 300),
        ]
    )

    parts = split_block(u_shape, 7_000)

    assert all(part.geom_type == "Polygon" and part.is_valid for part in parts)
    assert all(part.area <= 7_000 * (1 + AREA_RTOL) for part in parts)
    assert coverage_problems(u_shape, parts) == []


def test_split_block_parts_match_vertex_for_vertex() -> None:
    huge = box(X0, Y0, X0 + 1_000, Y0 + 1_000)

    parts = split_block(huge, 10_000)

    assert len(parts) == 100
    assert coverage_problems(huge, parts) == []


def test_split_block_rejects_a_multipolygon() -> None:
    with pytest.raises(ValueError, match="must be a Polygon"):
        split_block(MultiPolygon([box(0, 0, 1, 1), box(2, 2, 3, 3)]), 10)


def test_invalid_community_is_refused() -> None:
    bowtie = Polygon([(X0, Y0), (X0 + 10, Y0 + 10), (X0 + 10, Y0), (X0, Y0 + 10)])

    with pytest.raises(ValueError, match="not valid: Self-intersection"):
        unit_grids_for_community(bowtie, [])


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="max_area_m2 must be positive"):
        UnitGridParams(max_area_m2=0)
    with pytest.raises(ValueError, match="must not be negative"):
        UnitGridParams(min_width_m=-1)


# --- coverage_problems ---------------------------------------------------------------------------------


def test_coverage_problems_names_each_problem() -> None:
    west = box(X0, Y0, X0 + 110, Y0 + 200)  # overlaps east by 10 m x 180 m
    east = box(X0 + 100, Y0, X0 + 200, Y0 + 180)  # leaves a 90 m x 20 m gap in the north-east...
    outside = box(X0 + 150, Y0 + 180, X0 + 250, Y0 + 190)  # ...of which this covers 50 m x 10 m
    pieces = MultiPolygon([box(X0, Y0 - 20, X0 + 1, Y0 - 10), box(X0 + 5, Y0 - 20, X0 + 6, Y0 - 10)])
    bowtie = Polygon([(X0, Y0), (X0 + 10, Y0 + 10), (X0 + 10, Y0), (X0, Y0 + 10)])

    problems = coverage_problems(SQUARE, [west, east, outside, pieces, bowtie])

    assert "part 3 is a MultiPolygon, not a single Polygon" in problems
    assert any(problem.startswith("part 4 is not valid: Self-intersection") for problem in problems)
    assert "part 2 reaches 500.00 m² outside the community" in problems
    assert "parts 0 and 1 overlap by 1800.00 m²" in problems
    assert "1300.00 m² of the community is covered by no part" in problems
    assert any(problem.startswith("part 0 has") and "do not match" in problem for problem in problems)


def test_coverage_problems_flags_a_t_junction() -> None:
    west = box(X0, Y0, X0 + 100, Y0 + 200)
    east_south = box(X0 + 100, Y0, X0 + 200, Y0 + 100)
    east_north = box(X0 + 100, Y0 + 100, X0 + 200, Y0 + 200)

    problems = coverage_problems(SQUARE, [west, east_south, east_north])

    assert len(problems) == 3
    assert all("do not match its neighbours" in problem for problem in problems)


def test_coverage_problems_of_no_parts() -> None:
    assert coverage_problems(SQUARE, []) == ["no parts: the community is not covered"]


def test_line_zones_tell_the_sides_of_old_nets_and_main_roads() -> None:
    from gis.unitgrids import line_zones

    community = box(0, 0, 400, 200)
    parts = [box(x, y, x + 100, y + 100) for y in (100, 0) for x in (0, 100, 200, 300)]
    # Net 1 splits the community west | east at x = 200; net 2 covers it with one polygon; a main road
    # runs along y = 100.
    nets = [box(0, 0, 200, 200), box(200, 0, 400, 200), box(-10, -10, 410, 210)]
    keys = [(1, 10), (1, 11), (2, 20)]
    road = shapely.LineString([(-50, 100), (450, 100)])
    zones = line_zones(parts, community, nets, keys, [road])
    assert zones.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert line_zones(parts, community, nets, keys).tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert line_zones(parts, community, [], []).tolist() == [0] * 8
    assert line_zones([], community, nets, keys).tolist() == []
