"""Tests for gis.locate: which unit grid owns a point; ties, gaps, districts and near-boundary candidates.

Grids are drawn in EPSG:4548 metres near Jinan and stored in EPSG:4490, as in PostGIS, so every expected
distance can be read off the drawing.
"""

from __future__ import annotations

import dataclasses

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pyproj
import pytest
import shapely

from gis.crs import NonFiniteCoordinateError
from gis.locate import HOW_LABELS, GridLocator, How, LocatedPoint, LocateResult

METRIC = "EPSG:4548"
STORAGE = "EPSG:4490"
X0, Y0 = 500_000.0, 4_060_000.0
ORIGIN = np.array([X0, Y0])
TO_LONLAT = pyproj.Transformer.from_crs(METRIC, STORAGE, always_xy=True)
TO_METRIC = pyproj.Transformer.from_crs(STORAGE, METRIC, always_xy=True)


def lonlat(x: float, y: float) -> tuple[float, float]:
    """A point given in metres from the drawing's origin, in storage lon/lat."""
    lon, lat = TO_LONLAT.transform(X0 + x, Y0 + y)
    return float(lon), float(lat)


def stored(geoms: list[shapely.Geometry], densify_m: float | None = 25.0) -> npt.NDArray[np.object_]:
    """Polygons drawn in local metres, as PostGIS stores them: vertices every 25 m, then lon/lat."""
    array = shapely.transform(np.asarray(geoms, dtype=object), lambda c: c + ORIGIN)
    if densify_m is not None:
        array = shapely.segmentize(array, densify_m)
    return np.asarray(
        shapely.transform(array, lambda c: np.column_stack(TO_LONLAT.transform(c[:, 0], c[:, 1]))),
        dtype=object,
    )


# ----------------------------------------------------------------------------- the hand-drawn world
#
#   y
#  300 +------+------+------+------+------+
#      | c0r2 | c1r2 | c2r2 | c3r2 | c4r2 |        owners: columns 0-1 -> 10, column 2 -> 20,
#  200 +------+------+------+------+------+                columns 3-4 -> 30
#      | c0r1 | c1r1 | c2r1 | gap  | c4r1 |
#  100 +------+------+------+------+------+        districts: west x <= 200, east x >= 200,
#      | c0r0 | c1r0 | c2r0 | c3r0 | c4r0 |        both 0 <= y <= 1000
#    0 +------+------+------+------+------+ x
#      0     100    200    300    400    500
#
# East of it: a ring grid (1000..1300 with a hole 1100..1200) holding an inner grid, a two-part grid, and
# near (1700, 750) two grids drawn in lon/lat whose shared edge is a meridian, so points exactly on it
# between its vertices are easy to write down.

SQUARES = [(i, j) for j in range(3) for i in range(5) if (i, j) != (3, 1)]
NAMES = [f"c{i}r{j}" for i, j in SQUARES] + ["ring", "inner", "multi", "meridian_w", "meridian_e"]
MERIDIAN = round(TO_LONLAT.transform(X0 + 1700, Y0 + 750)[0], 4)
PARALLEL = round(TO_LONLAT.transform(X0 + 1700, Y0 + 750)[1], 4)
# Codes make the tie rule visible: c1r1 < c1r0 < c0r0 < c0r1 < everything else, unlike index order.
FIRST_CODES = {"c1r1": 1, "c1r0": 2, "c0r0": 3, "c0r1": 4, "meridian_e": 5}
OWNERS = {f"c{i}r{j}": (10 if i < 2 else 20 if i == 2 else 30) for i, j in SQUARES} | {
    "ring": 40,
    "inner": 41,
    "multi": 42,
    "meridian_w": 43,
    "meridian_e": 44,
}


def hand_drawn_layers() -> dict[str, npt.NDArray[np.generic]]:
    squares = [shapely.box(100 * i, 100 * j, 100 * i + 100, 100 * j + 100) for i, j in SQUARES]
    hole = shapely.box(1100, 100, 1200, 200)
    ring = shapely.Polygon(shapely.box(1000, 0, 1300, 300).exterior, [hole.exterior])
    multi = shapely.MultiPolygon([shapely.box(1400, 0, 1450, 50), shapely.box(1500, 0, 1550, 50)])
    later = iter(range(10, 100))
    codes = [f"3701020010010{FIRST_CODES[n] if n in FIRST_CODES else next(later):02d}" for n in NAMES]
    meridian = [
        shapely.box(MERIDIAN - 0.0005, PARALLEL, MERIDIAN, PARALLEL + 0.0004),
        shapely.box(MERIDIAN, PARALLEL, MERIDIAN + 0.0005, PARALLEL + 0.0004),
    ]
    return {
        "grids": np.array([*stored([*squares, ring, hole, multi]), *meridian], dtype=object),
        "codes": np.array(codes),
        "owners": np.array([OWNERS[name] for name in NAMES], dtype=np.int64),
        # Keys put the east district first in string order, so the grid-district rule is visible.
        "districts": stored([shapely.box(-1000, 0, 200, 1000), shapely.box(200, 0, 2000, 1000)]),
        "district_keys": np.array(["370103", "370102"]),
    }


WEST, EAST = 0, 1


@pytest.fixture(scope="module")
def layers() -> dict[str, npt.NDArray[np.generic]]:
    return hand_drawn_layers()


@pytest.fixture(scope="module")
def locator(layers: dict[str, npt.NDArray[np.generic]]) -> GridLocator:
    return GridLocator(
        grid_geoms_lonlat=layers["grids"],
        grid_keys=np.arange(len(NAMES), dtype=np.int64) + 5000,
        grid_codes=layers["codes"],
        grid_owner_keys=layers["owners"],
        territory_geoms_lonlat=layers["districts"],
        territory_keys=layers["district_keys"],
        metric_crs=METRIC,
    )


def at(locator: GridLocator, x: float, y: float) -> LocatedPoint:
    return locator.locate_one(*lonlat(x, y))


def named(candidates: tuple[tuple[int, float], ...]) -> list[tuple[str, float]]:
    return [(NAMES[g], round(d, 3)) for g, d in candidates]


# ------------------------------------------------------------------------------------ the rules


def test_point_inside_one_grid(locator: GridLocator) -> None:
    p = at(locator, 50, 50)
    assert (NAMES[p.grid_index], p.how, p.territory_index) == ("c0r0", How.INSIDE, WEST)
    assert p.distance_m == 0.0
    assert p.candidates == () and not p.near_boundary and np.isnan(p.boundary_distance_m)


def test_point_on_shared_edge_goes_to_smaller_code(locator: GridLocator) -> None:
    # (100, 50) is a vertex in the middle of the edge c0r0 | c1r0, so it lies exactly on both grids.
    p = at(locator, 100, 50)
    assert (NAMES[p.grid_index], p.how) == ("c1r0", How.EDGE)
    assert p.distance_m == 0.0


def test_point_between_vertices_of_a_shared_edge_goes_to_smaller_code(locator: GridLocator) -> None:
    # Exactly on the meridian edge, away from its vertices: the lattice sees the point on the segment and
    # leaves it to GEOS, which finds it on both grids.
    for lat in np.linspace(PARALLEL + 0.0001, PARALLEL + 0.0003, 5):
        p = locator.locate_one(MERIDIAN, float(lat))
        assert (NAMES[p.grid_index], p.how, p.territory_index) == ("meridian_e", How.EDGE, EAST)
        assert named(p.candidates) == [("meridian_w", 0.0)]
    inside = locator.locate_one(MERIDIAN - 1e-9, PARALLEL + 0.0002)
    assert (NAMES[inside.grid_index], inside.how) == ("meridian_w", How.INSIDE)


def test_point_on_vertex_of_four_grids_goes_to_smallest_code(locator: GridLocator) -> None:
    p = at(locator, 100, 100)
    assert (NAMES[p.grid_index], p.how, p.territory_index) == ("c1r1", How.EDGE, WEST)


def test_edge_between_owners_lists_the_other_grid_at_zero(locator: GridLocator) -> None:
    # (200, 50) lies on c1r0 (owner 10) and c2r0 (owner 20) and on both districts' shared boundary.
    p = at(locator, 200, 50)
    assert (NAMES[p.grid_index], p.how) == ("c1r0", How.EDGE)
    assert named(p.candidates) == [("c2r0", 0.0)]
    assert p.boundary_distance_m == 0.0
    # The district of the owning grid, although the east district has the smaller key.
    assert p.territory_index == WEST


def test_gap_point_gets_nearest_grid_with_distance(locator: GridLocator) -> None:
    p = at(locator, 310, 175)
    assert (NAMES[p.grid_index], p.how, p.territory_index) == ("c2r1", How.NEAREST, EAST)
    assert p.distance_m == pytest.approx(10.0, abs=0.01)
    # c3r2 (owner 30) is 25 m away; c2r2 is 26.9 m away but has c2r1's owner.
    assert named(p.candidates) == [("c3r2", 25.0)]
    assert p.boundary_distance_m == pytest.approx(25.0, abs=0.01)


def test_gap_point_far_from_grids_is_territory(locator: GridLocator) -> None:
    p = at(locator, 1800, 500)
    assert (p.grid_index, p.how, p.territory_index) == (-1, How.TERRITORY, EAST)
    assert np.isnan(p.distance_m) and p.candidates == ()


def test_point_on_shared_district_boundary_takes_smaller_key(locator: GridLocator) -> None:
    p = at(locator, 200, 800)
    assert (p.grid_index, p.how, p.territory_index) == (-1, How.TERRITORY, EAST)


def test_point_outside_every_district_is_outside_even_next_to_a_grid(locator: GridLocator) -> None:
    for x, y in [(50, -20), (10_000, 500)]:
        p = at(locator, x, y)
        assert (p.grid_index, p.how, p.territory_index) == (-1, How.OUTSIDE, -1)
        assert np.isnan(p.distance_m) and np.isnan(p.boundary_distance_m) and p.candidates == ()


def test_near_other_owner_lists_candidates_sorted_by_distance(locator: GridLocator) -> None:
    p = at(locator, 190, 80)
    assert (NAMES[p.grid_index], p.how) == ("c1r0", How.INSIDE)
    # c2r0 is 10 m east, c2r1 is 10 m east and 20 m north; c1r1 is nearer but has the same owner.
    assert named(p.candidates) == [("c2r0", 10.0), ("c2r1", round(np.hypot(10, 20), 3))]
    assert p.near_boundary and p.boundary_distance_m == pytest.approx(10.0, abs=0.01)


def test_near_same_owner_lists_nothing(locator: GridLocator) -> None:
    p = at(locator, 95, 50)
    assert (NAMES[p.grid_index], p.how) == ("c0r0", How.INSIDE)
    assert p.candidates == () and not p.near_boundary


def test_grid_with_hole_and_the_grid_inside_it(locator: GridLocator) -> None:
    assert NAMES[at(locator, 1050, 50).grid_index] == "ring"
    assert NAMES[at(locator, 1150, 150).grid_index] == "inner"
    p = at(locator, 1100, 150)
    assert (NAMES[p.grid_index], p.how) == ("ring", How.EDGE)
    assert named(p.candidates) == [("inner", 0.0)]


def test_multipolygon_grid(locator: GridLocator) -> None:
    p = at(locator, 1525, 25)
    assert (NAMES[p.grid_index], p.how, p.territory_index) == ("multi", How.INSIDE, EAST)
    gap = at(locator, 1475, 25)
    assert (NAMES[gap.grid_index], gap.how) == ("multi", How.NEAREST)
    assert gap.distance_m == pytest.approx(25.0, abs=0.01)


def test_nan_and_infinity_raise_naming_the_first_bad_index(locator: GridLocator) -> None:
    lon, lat = lonlat(50, 50)
    with pytest.raises(ValueError, match="index 1") as caught:
        locator.locate([lon, np.nan, lon], [lat, lat, np.inf])
    assert isinstance(caught.value, NonFiniteCoordinateError)
    assert caught.value.index == 1
    with pytest.raises(ValueError, match="not finite"):
        locator.locate_one(lon, float("inf"))


def test_bad_input_shapes(locator: GridLocator) -> None:
    lon, lat = lonlat(50, 50)
    with pytest.raises(ValueError, match="shape"):
        locator.locate([lon, lon], [lat])
    with pytest.raises(ValueError, match="one-dimensional"):
        locator.locate([[lon]], [[lat]])
    with pytest.raises(ValueError, match="numbers"):
        locator.locate(["east"], [lat])
    with pytest.raises(ValueError, match="one point"):
        locator.locate_one([lon], [lat])  # type: ignore[arg-type]
    assert locator.locate(lon, lat).how.tolist() == [How.INSIDE]


def test_tolerances_are_the_constructors(layers: dict[str, npt.NDArray[np.generic]]) -> None:
    tight = GridLocator(
        grid_geoms_lonlat=layers["grids"],
        grid_keys=np.arange(len(NAMES)),
        grid_codes=layers["codes"],
        grid_owner_keys=layers["owners"],
        territory_geoms_lonlat=layers["districts"],
        territory_keys=layers["district_keys"],
        boundary_tolerance_m=5.0,
        nearest_tolerance_m=5.0,
    )
    assert tight.locate_one(*lonlat(310, 175)).how == How.TERRITORY
    assert tight.locate_one(*lonlat(190, 80)).candidates == ()
    assert named(tight.locate_one(*lonlat(197, 80)).candidates) == [("c2r0", 3.0)]
    gap = tight.locate_one(*lonlat(303, 150))
    assert (NAMES[gap.grid_index], gap.how) == ("c2r1", How.NEAREST)
    assert gap.distance_m == pytest.approx(3.0, abs=0.01)


def test_result_arrays_and_helpers(locator: GridLocator) -> None:
    points = [(50, 50), (190, 80), (1800, 500), (10_000, 500)]
    result = locator.locate(*np.array([lonlat(x, y) for x, y in points]).T)
    assert isinstance(result, LocateResult) and len(result) == 4
    assert result.how_labels.tolist() == ["inside", "inside", "territory", "outside"]
    assert [HOW_LABELS[h] for h in result.how] == [How(h).label for h in result.how]
    assert result.candidate_offsets.tolist() == [0, 0, 2, 2, 2]
    assert result.near_boundary.tolist() == [False, True, False, False]
    assert [NAMES[g] for g, _ in result.candidates(1)] == ["c2r0", "c2r1"]
    assert result.grid_index.dtype == np.int64 and result.distance_m.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        result.grid_index[0] = 3


def test_empty_input(locator: GridLocator) -> None:
    result = locator.locate([], [])
    assert len(result) == 0 and result.candidate_offsets.tolist() == [0]


def test_vectorised_answers_equal_one_by_one(locator: GridLocator) -> None:
    rng = np.random.default_rng(5)
    drawn = [(50, 50), (100, 50), (100, 100), (200, 50), (310, 175), (190, 80), (1100, 150), (50, -20)]
    xy = np.vstack([drawn, rng.uniform([-150, -150], [1700, 450], (300, 2))])
    lon, lat = TO_LONLAT.transform(X0 + xy[:, 0], Y0 + xy[:, 1])
    result = locator.locate(lon, lat)
    assert set(result.how.tolist()) == set(How)
    for i in range(len(xy)):
        one = locator.locate_one(float(lon[i]), float(lat[i]))
        np.testing.assert_equal(dataclasses.astuple(one), dataclasses.astuple(result.point(i)))


def test_constructor_rejects_bad_input(layers: dict[str, npt.NDArray[np.generic]]) -> None:
    good = {
        "grid_geoms_lonlat": layers["grids"],
        "grid_keys": np.arange(len(NAMES)),
        "grid_codes": layers["codes"],
        "grid_owner_keys": layers["owners"],
        "territory_geoms_lonlat": layers["districts"],
        "territory_keys": layers["district_keys"],
    }
    bow_tie = shapely.Polygon([(117.0, 36.6), (117.01, 36.61), (117.01, 36.6), (117.0, 36.61)])
    for change, message in [
        ({"grid_keys": np.arange(3)}, "grid_keys has shape"),
        (
            {"grid_geoms_lonlat": np.array([*layers["grids"][:-1], bow_tie])},
            f"grid {len(NAMES) - 1} is not a valid",
        ),
        ({"grid_geoms_lonlat": np.array([*layers["grids"][:-1], shapely.Point(117, 36)])}, "not a Polygon"),
        ({"boundary_tolerance_m": -1.0}, "boundary_tolerance_m must be"),
        ({"nearest_tolerance_m": float("nan")}, "nearest_tolerance_m must be"),
        ({"metric_crs": "EPSG:4490"}, "geographic"),
    ]:
        with pytest.raises(ValueError, match=message):
            GridLocator(**(good | change))


# ------------------------------------------------------------- agreement with GEOS on irregular grids


def voronoi_world(seed: int) -> dict[str, npt.NDArray[np.generic]]:
    """About 380 irregular grids (Voronoi cells, some removed as gaps), owners in clusters, and two
    districts whose border cuts through grids."""
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, 2000, (400, 2))
    # A ring of guard seeds bounds the cells of the real ones; the guards' own cells are dropped.
    guard = np.linspace(-200, 2200, 25)
    ring = np.vstack([np.column_stack([guard, np.full(25, v)]) for v in (-200, 2200)])
    ring = np.unique(np.vstack([ring, ring[:, ::-1]]), axis=0)
    diagram = shapely.voronoi_polygons(shapely.multipoints(np.vstack([seeds, ring])), ordered=True)
    cells = shapely.get_parts(diagram)[: len(seeds)]
    cells = cells[rng.random(len(cells)) > 0.05]
    centres = np.column_stack(
        [shapely.get_x(shapely.centroid(cells)), shapely.get_y(shapely.centroid(cells))]
    )
    hubs = rng.uniform(0, 2000, (25, 2))
    owners = np.argmin(np.linalg.norm(centres[:, None] - hubs[None], axis=2), axis=1).astype(np.int64)
    owners[rng.random(len(cells)) < 0.05] = -1
    return {
        "grids": stored(list(cells), densify_m=None),
        "codes": np.array([f"370102{k:09d}" for k in rng.permutation(len(cells))]),
        "owners": owners,
        "districts": stored([shapely.box(-3000, -3000, 1000, 5000), shapely.box(1000, -3000, 5000, 5000)]),
        "district_keys": np.array(["370104", "370103"]),
    }


def test_answers_agree_with_geos_brute_force() -> None:
    world = voronoi_world(11)
    grids, codes, owners = world["grids"], world["codes"], world["owners"]
    districts, district_keys = world["districts"], world["district_keys"]
    locator = GridLocator(
        grid_geoms_lonlat=grids,
        grid_keys=np.arange(len(grids)),
        grid_codes=codes,
        grid_owner_keys=owners,
        territory_geoms_lonlat=districts,
        territory_keys=district_keys,
    )
    rng = np.random.default_rng(12)
    xy = rng.uniform(-400, 2400, (3000, 2))
    lon, lat = TO_LONLAT.transform(X0 + xy[:, 0], Y0 + xy[:, 1])
    # Points exactly on vertices, a hair off them, and the float midpoints of edges: within an ulp of an
    # edge, where only an exact orientation test agrees with GEOS.
    vertices = np.unique(shapely.get_coordinates(grids), axis=0)
    rings = shapely.get_exterior_ring(grids)
    ring_xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[1:] == ring_of[:-1]
    middles = (ring_xy[:-1][same] + ring_xy[1:][same]) / 2
    lon = np.concatenate([lon, vertices[:, 0], vertices[::3, 0] + 1e-12, middles[:, 0]])
    lat = np.concatenate([lat, vertices[:, 1], vertices[::3, 1] - 1e-12, middles[:, 1]])
    result = locator.locate(lon, lat)

    points = shapely.points(lon, lat)
    metric_points = shapely.points(*TO_METRIC.transform(lon, lat))
    point_i, grid_i = shapely.STRtree(grids).query(points, predicate="intersects")
    covering: list[list[int]] = [[] for _ in lon]
    for p, g in zip(point_i, grid_i, strict=True):
        covering[p].append(int(g))
    grid_in_district = shapely.covered_by(grids[:, None], districts[None, :])
    point_in_district = shapely.covers(districts[None, :], points[:, None])
    district_order = np.argsort(district_keys)

    def first_district(mask: npt.NDArray[np.bool_]) -> int:
        hits = [d for d in district_order if mask[d]]
        return int(hits[0]) if hits else -1

    metric = locator.grid_geoms_metric
    assert result.how[: len(xy)].tolist().count(How.EDGE) == 0
    assert (result.how == How.EDGE).sum() > 100
    for i in range(len(lon)):
        cover = sorted(covering[i], key=lambda g: codes[g])
        distances = np.asarray(shapely.distance(metric, metric_points[i]))
        if cover:
            owner, how = cover[0], How.EDGE if len(cover) > 1 else How.INSIDE
            territory = first_district(grid_in_district[owner])
            if territory < 0:
                territory = first_district(point_in_district[i])
            distance = 0.0
        else:
            territory = first_district(point_in_district[i])
            if distances.min() < 1e-3:
                # A gap point a hair from a vertex: GEOS may see it inside the metric copy (distance 0)
                # where the locator measures to the boundary, so equal-looking ties may break differently.
                continue
            near = np.flatnonzero(distances <= 100.0)
            if territory < 0:
                owner, how = -1, How.OUTSIDE
            elif len(near):
                owner = int(min(near, key=lambda g: (distances[g], codes[g])))
                how, distance = How.NEAREST, float(distances[owner])
            else:
                owner, how = -1, How.TERRITORY
        assert (result.grid_index[i], result.how[i], result.territory_index[i]) == (owner, how, territory), i
        expected: dict[int, float] = {}
        if owner >= 0:
            assert result.distance_m[i] == pytest.approx(distance, abs=5e-3)
            others = np.flatnonzero((distances <= 30.0) & (owners != owners[owner]))
            expected = {int(g): 0.0 if g in cover else float(distances[g]) for g in others if g != owner}
        got = result.candidates(i)
        assert sorted(g for g, _ in got) == sorted(expected), i
        for g, d in got:
            # A grid covering the point is at exactly 0, not at a rounding residue. Others may differ from
            # GEOS by the bow between an edge straight in lon/lat and in metres (1 mm for 250 m edges).
            assert d == 0.0 if g in cover else d == pytest.approx(expected[g], abs=5e-3), (i, g)
        assert got == sorted(got, key=lambda c: (c[1], codes[c[0]]))


def test_inside_answers_agree_with_geopandas_sjoin() -> None:
    world = voronoi_world(21)
    locator = GridLocator(
        grid_geoms_lonlat=world["grids"],
        grid_keys=np.arange(len(world["grids"])),
        grid_codes=world["codes"],
        grid_owner_keys=world["owners"],
        territory_geoms_lonlat=world["districts"],
        territory_keys=world["district_keys"],
    )
    rng = np.random.default_rng(22)
    xy = rng.uniform(-300, 2300, (20_000, 2))
    lon, lat = TO_LONLAT.transform(X0 + xy[:, 0], Y0 + xy[:, 1])
    result = locator.locate(lon, lat)
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs=STORAGE)
    grids = gpd.GeoDataFrame(geometry=world["grids"], crs=STORAGE)
    joined = gpd.sjoin(points, grids, predicate="within")
    expected = np.full(len(lon), -1)
    expected[joined.index.to_numpy()] = joined["index_right"].to_numpy()
    assert joined.index.is_unique  # random points never land on a shared edge
    inside = (result.how == How.INSIDE) | (result.how == How.EDGE)
    np.testing.assert_array_equal(np.where(inside, result.grid_index, -1), expected)
    assert inside.sum() > 10_000


def covering_answers(
    grids: npt.NDArray[np.object_], codes: npt.NDArray[np.str_], lon: npt.ArrayLike, lat: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    """Owner and how by brute force: ST_Covers on every grid, the smallest code wins."""
    point_i, grid_i = shapely.STRtree(grids).query(shapely.points(lon, lat), predicate="intersects")
    owner = np.full(len(np.asarray(lon)), -1, dtype=np.int64)
    count = np.bincount(point_i, minlength=len(owner))
    for p, g in zip(point_i, grid_i, strict=True):
        if owner[p] < 0 or codes[g] < codes[owner[p]]:
            owner[p] = g
    how = np.where(count > 1, How.EDGE, How.INSIDE).astype(np.int8)
    return owner, how


def assert_containment_agrees(grids: npt.NDArray[np.object_], lon: npt.ArrayLike, lat: npt.ArrayLike) -> None:
    codes = np.array([f"370102001001{k:03d}" for k in range(len(grids))])[::-1]
    locator = GridLocator(
        grid_geoms_lonlat=grids,
        grid_keys=np.arange(len(grids)),
        grid_codes=codes,
        grid_owner_keys=np.arange(len(grids)),
        territory_geoms_lonlat=stored([shapely.box(-1000, -1000, 2000, 2000)]),
        territory_keys=np.array(["370102"]),
    )
    result = locator.locate(lon, lat)
    owner, how = covering_answers(grids, codes, lon, lat)
    covered = owner >= 0
    np.testing.assert_array_equal(result.grid_index[covered], owner[covered])
    np.testing.assert_array_equal(result.how[covered], how[covered])
    assert not np.isin(result.how[~covered], [How.INSIDE, How.EDGE]).any()


def test_containment_agrees_with_geos_at_sharp_bends() -> None:
    # Columns split by zigzag lines (a vertex every 20 m, turning left and right by 90 degrees), rows cut
    # every 100 m: most boundary cells of the locator hold one bend, decided without GEOS.
    def zigzag(k: int) -> list[tuple[float, float]]:
        return [(100.0 * k + (10.0 if (y // 20) % 2 else -10.0), float(y)) for y in range(0, 401, 20)]

    cells = []
    for k in range(4):
        for j in range(4):
            left = [(x, y) for x, y in zigzag(k) if 100 * j <= y <= 100 * j + 100]
            right = [(x, y) for x, y in zigzag(k + 1) if 100 * j <= y <= 100 * j + 100]
            cells.append(shapely.Polygon(left + right[::-1]))
    grids = stored(cells, densify_m=None)
    rng = np.random.default_rng(31)
    bends = shapely.get_coordinates(np.asarray(cells, dtype=object))
    xy = np.vstack([np.repeat(bends, 20, axis=0) + rng.normal(0, 2.0, (20 * len(bends), 2))])
    xy = np.vstack([xy, rng.uniform(-20, 420, (5000, 2))])
    lon, lat = TO_LONLAT.transform(X0 + xy[:, 0], Y0 + xy[:, 1])
    assert_containment_agrees(grids, lon, lat)


def test_overlapping_grids_follow_covers_and_the_tie_rule() -> None:
    # Not a valid coverage, but the answers must still be ST_Covers plus the tie rule: "edge" in overlaps.
    cells = [shapely.box(0, 0, 200, 200), shapely.box(100, 100, 300, 300), shapely.box(200, 0, 300, 100)]
    grids = stored(cells)
    rng = np.random.default_rng(41)
    xy = rng.uniform(-20, 320, (5000, 2))
    lon, lat = TO_LONLAT.transform(X0 + xy[:, 0], Y0 + xy[:, 1])
    assert_containment_agrees(grids, lon, lat)
    locator_codes = np.array(["b", "a", "c"])
    locator = GridLocator(
        grid_geoms_lonlat=grids,
        grid_keys=np.arange(3),
        grid_codes=locator_codes,
        grid_owner_keys=np.array([1, 2, 3]),
        territory_geoms_lonlat=stored([shapely.box(-1000, -1000, 2000, 2000)]),
        territory_keys=np.array(["370102"]),
    )
    p = locator.locate_one(*lonlat(150, 150))
    assert (p.grid_index, p.how) == (1, How.EDGE)
    assert p.candidates == ((0, 0.0),)
