"""Small geometry helpers: promotion to multi-geometries and repair after reprojection."""

from __future__ import annotations

import shapely

from gis.geometry import repair_polygonal, to_multi


def test_to_multi_promotes_single_parts_only() -> None:
    square = shapely.box(0, 0, 1, 1)
    line = shapely.LineString([(0, 0), (1, 1)])
    point = shapely.Point(0, 0)
    out = to_multi([square, line, point])
    assert [g.geom_type for g in out] == ["MultiPolygon", "MultiLineString", "Point"]


def test_repair_polygonal_fixes_a_self_touching_ring_and_keeps_valid_ones_as_they_are() -> None:
    # A bow-tie: what reprojection makes of a ring whose two vertices nearly meet.
    bow_tie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])
    square = shapely.box(5, 5, 6, 6)
    out = repair_polygonal([bow_tie, square])
    assert all(shapely.is_valid(out))
    assert out[1] is square
    assert out[0].geom_type in ("Polygon", "MultiPolygon")
    assert abs(out[0].area - 2.0) < 1e-9


def test_repair_polygonal_drops_collapsed_parts() -> None:
    # A polygon that collapses to a line has no polygonal part left: an empty polygon, never a line.
    flat = shapely.Polygon([(0, 0), (1, 0), (2, 0), (0, 0)])
    out = repair_polygonal([flat])
    assert out[0].is_empty or out[0].geom_type in ("Polygon", "MultiPolygon")


def test_drop_crumbs_keeps_real_parts_and_the_largest_one() -> None:
    from gis.geometry import drop_crumbs

    grid = shapely.box(0, 0, 100, 100)
    crumb = shapely.box(100, 0, 100.001, 0.001)
    two_grids = shapely.MultiPolygon([grid, shapely.box(200, 0, 300, 100)])
    out = drop_crumbs(
        [shapely.MultiPolygon([grid, crumb]), two_grids, grid, shapely.MultiPolygon([crumb])], 0.01
    )
    assert out[0].equals(grid) and out[0].geom_type == "Polygon"
    assert out[1] is two_grids or out[1].equals(two_grids)
    assert out[2] is grid
    assert out[3].area > 0  # a crumb alone is still the largest part of its geometry
