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
