"""Tests for gis.crs: CRS resolution, GCJ-02/BD-09, Gauss-Kruger zones and coordinate validation."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
import shapely

from gis import crs
from gis.crs import (
    STORAGE_CRS,
    WGS84,
    CoordinateError,
    CRSError,
    NonFiniteCoordinateError,
    OutsideAreaError,
    OutsideChinaError,
    UnknownCRSError,
    ZonePrefixError,
)

GEOD = pyproj.Geod(ellps="WGS84")

# Quancheng Square / Baotu Spring, Jinan, in WGS84.
LANDMARK = (117.0195, 36.6617)
JINAN_BBOX = (116.2, 36.0, 117.9, 37.8)
BEIJING = (116.4074, 39.9042)
LONDON = (-0.1276, 51.5072)
CHINA_CITIES = [
    (116.4074, 39.9042),  # Beijing
    (121.4737, 31.2304),  # Shanghai
    (113.2644, 23.1291),  # Guangzhou
    (87.6168, 43.8256),  # Urumqi
    (91.1409, 29.6456),  # Lhasa
    (126.5350, 45.8038),  # Harbin
    (109.5120, 18.2528),  # Sanya
    (75.9897, 39.4704),  # Kashgar
]


# ------------------------------------------------- independent reference of the public GCJ-02 / BD-09 formula

_A = 6378245.0
_EE = 0.00669342162296594323


def _ref_wgs84_to_gcj02(lng: float, lat: float) -> tuple[float, float]:
    x, y = lng - 105.0, lat - 35.0
    pi = math.pi
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    dlat += (20.0 * math.sin(6.0 * x * pi) + 20.0 * math.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat += (20.0 * math.sin(y * pi) + 40.0 * math.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(y / 12.0 * pi) + 320 * math.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlng = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    dlng += (20.0 * math.sin(6.0 * x * pi) + 20.0 * math.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlng += (20.0 * math.sin(x * pi) + 40.0 * math.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlng += (150.0 * math.sin(x / 12.0 * pi) + 300.0 * math.sin(x / 30.0 * pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * pi
    magic = 1 - _EE * math.sin(radlat) ** 2
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * pi)
    dlng = (dlng * 180.0) / (_A / sqrtmagic * math.cos(radlat) * pi)
    return lng + dlng, lat + dlat


def _ref_gcj02_to_bd09(lng: float, lat: float) -> tuple[float, float]:
    x_pi = math.pi * 3000.0 / 180.0
    z = math.sqrt(lng * lng + lat * lat) + 0.00002 * math.sin(lat * x_pi)
    theta = math.atan2(lat, lng) + 0.000003 * math.cos(lng * x_pi)
    return z * math.cos(theta) + 0.0065, z * math.sin(theta) + 0.006


def _geod_dist(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


def _jinan_grid(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = np.meshgrid(np.linspace(116.2, 117.9, n), np.linspace(36.0, 37.8, n))
    return lon.ravel(), lat.ravel()


def _test_points() -> tuple[np.ndarray, np.ndarray]:
    """~10 000 points spanning Jinan plus a few cities across China."""
    lon, lat = _jinan_grid()
    cities = np.array(CHINA_CITIES)
    return np.concatenate([lon, cities[:, 0]]), np.concatenate([lat, cities[:, 1]])


# ----------------------------------------------------------------------------------------- resolve_crs


@pytest.mark.parametrize(
    ("name", "canonical", "kind", "epsg", "geographic"),
    [
        ("wgs84", "wgs84", "epsg", 4326, True),
        (" WGS 84 ", "wgs84", "epsg", 4326, True),
        ("epsg:4326", "wgs84", "epsg", 4326, True),
        (4326, "wgs84", "epsg", 4326, True),
        ("CGCS2000", "cgcs2000", "epsg", 4490, True),
        ("EPSG:4490", "cgcs2000", "epsg", 4490, True),
        ("gcj02", "gcj02", "gcj02", 4326, True),
        ("GCJ-02", "gcj02", "gcj02", 4326, True),
        ("bd09", "bd09", "bd09", 4326, True),
        (" bd-09", "bd09", "bd09", 4326, True),
        ("EPSG:4548", "EPSG:4548", "epsg", 4548, False),
        ("4548", "EPSG:4548", "epsg", 4548, False),
        (4527, "EPSG:4527", "epsg", 4527, False),
        ("epsg:3857", "EPSG:3857", "epsg", 3857, False),
        (pyproj.CRS.from_epsg(4548), "EPSG:4548", "epsg", 4548, False),
    ],
)
def test_resolve_crs(name: object, canonical: str, kind: str, epsg: int, geographic: bool) -> None:
    resolved = crs.resolve_crs(name)  # type: ignore[arg-type]
    assert (resolved.name, resolved.kind, resolved.epsg, resolved.is_geographic) == (
        canonical,
        kind,
        epsg,
        geographic,
    )
    assert crs.resolve_crs(resolved) is resolved


def test_constants_resolve() -> None:
    assert crs.resolve_crs(STORAGE_CRS).name == "cgcs2000"
    assert crs.resolve_crs(WGS84).name == "wgs84"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("gcj03", "'gcj03'"),
        ("EPSG:999999", "'EPSG:999999'"),
        ("", "''"),
        ("foo", "'foo'"),
        (999999, "999999"),
        (-4326, "-4326"),
        (True, "True"),
        ("EPSG:5773", "'EPSG:5773'"),  # a vertical CRS: known to PROJ, but not horizontal
    ],
)
def test_resolve_crs_unknown(name: object, shown: str) -> None:
    with pytest.raises(UnknownCRSError) as info:
        crs.resolve_crs(name)  # type: ignore[arg-type]
    assert shown in str(info.value)
    assert "use wgs84, cgcs2000, gcj02, bd09 or EPSG:<code>" in str(info.value)


def test_unknown_crs_message_exact() -> None:
    with pytest.raises(
        UnknownCRSError, match=r"^unknown CRS 'foo': use wgs84, cgcs2000, gcj02, bd09 or EPSG"
    ):
        crs.resolve_crs("foo")


@pytest.mark.parametrize(
    "cls", [UnknownCRSError, OutsideChinaError, OutsideAreaError, ZonePrefixError, NonFiniteCoordinateError]
)
def test_error_hierarchy(cls: type[Exception]) -> None:
    assert issubclass(cls, CoordinateError)
    assert issubclass(cls, CRSError)
    assert issubclass(cls, ValueError)


# --------------------------------------------------------------------------------------- GCJ-02 / BD-09


def test_gcj02_matches_reference_formula() -> None:
    lon, lat = _test_points()
    sample = slice(None, None, 97)
    got_lon, got_lat = crs.wgs84_to_gcj02(lon[sample], lat[sample])
    expected = np.array([_ref_wgs84_to_gcj02(a, b) for a, b in zip(lon[sample], lat[sample], strict=True)])
    np.testing.assert_allclose(got_lon, expected[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_lat, expected[:, 1], rtol=0, atol=1e-12)


def test_bd09_matches_reference_formula() -> None:
    expected = _ref_gcj02_to_bd09(*_ref_wgs84_to_gcj02(*LANDMARK))
    got = crs.wgs84_to_bd09(*LANDMARK)
    assert got[0] == pytest.approx(expected[0], abs=1e-12)
    assert got[1] == pytest.approx(expected[1], abs=1e-12)
    via_gcj = crs.gcj02_to_bd09(*_ref_wgs84_to_gcj02(*LANDMARK))
    assert via_gcj[0] == pytest.approx(expected[0], abs=1e-12)


def test_gcj02_shift_in_jinan() -> None:
    g_lon, g_lat = _ref_wgs84_to_gcj02(*LANDMARK)
    assert crs.transform_point(*LANDMARK, "wgs84", "gcj02") == pytest.approx((g_lon, g_lat), abs=1e-12)
    east = GEOD.inv(LANDMARK[0], LANDMARK[1], g_lon, LANDMARK[1])[2]
    north = GEOD.inv(LANDMARK[0], LANDMARK[1], LANDMARK[0], g_lat)[2]
    assert g_lon > LANDMARK[0] and g_lat > LANDMARK[1]
    assert 500 < east < 600
    assert 0 < north < 100


def test_bd09_shift_in_jinan() -> None:
    b_lon, b_lat = crs.transform_point(*LANDMARK, "wgs84", "bd09")
    assert 1000 < GEOD.inv(*LANDMARK, b_lon, b_lat)[2] < 1500


@pytest.mark.parametrize(
    ("forward", "inverse"),
    [
        (crs.wgs84_to_gcj02, crs.gcj02_to_wgs84),
        (crs.gcj02_to_bd09, crs.bd09_to_gcj02),
        (crs.wgs84_to_bd09, crs.bd09_to_wgs84),
    ],
    ids=["gcj02", "bd09-from-gcj02", "bd09"],
)
def test_iterative_inverse_round_trip(forward, inverse) -> None:  # type: ignore[no-untyped-def]
    lon, lat = _test_points()
    assert lon.size > 10_000
    # forward then inverse gets back to the start ...
    back_lon, back_lat = inverse(*forward(lon, lat))
    assert _geod_dist(lon, lat, back_lon, back_lat).max() < 0.01
    # ... and the inverse of a given point maps forward onto that point.
    inv_lon, inv_lat = inverse(lon, lat)
    again_lon, again_lat = forward(inv_lon, inv_lat)
    assert _geod_dist(lon, lat, again_lon, again_lat).max() < 0.01


def test_one_step_inverse_is_worse_than_iterative() -> None:
    lon, lat = _test_points()
    g_lon, g_lat = crs.wgs84_to_gcj02(lon, lat)
    # The naive inverse: subtract the offset evaluated at the GCJ-02 point instead of the WGS84 one.
    f_lon, f_lat = crs.wgs84_to_gcj02(g_lon, g_lat)
    naive_err = _geod_dist(lon, lat, 2 * g_lon - f_lon, 2 * g_lat - f_lat)
    it_lon, it_lat = crs.gcj02_to_wgs84(g_lon, g_lat)
    iter_err = _geod_dist(lon, lat, it_lon, it_lat)
    assert naive_err.max() > 0.1
    assert iter_err.max() < naive_err.max() / 1000
    assert crs.gcj02_to_wgs84(g_lon, g_lat, max_iterations=0)[0] == pytest.approx(2 * g_lon - f_lon)


def test_gcj02_bd09_direct_transform_matches_formulas() -> None:
    g = _ref_wgs84_to_gcj02(*LANDMARK)
    b = _ref_gcj02_to_bd09(*g)
    assert crs.transform_point(*g, "gcj02", "bd09") == pytest.approx(b, abs=1e-12)
    # Each iterated inverse stops once within 1e-9 degrees (~0.1 mm); BD-09 -> WGS84 chains two.
    assert crs.transform_point(*b, "bd09", "gcj02") == pytest.approx(g, abs=1e-9)
    assert crs.transform_point(*b, "bd09", "wgs84") == pytest.approx(LANDMARK, abs=2e-9)
    assert crs.transform_point(*g, "gcj02", STORAGE_CRS) == pytest.approx(LANDMARK, abs=1e-9)


@pytest.mark.parametrize("point", [LONDON, (0.0, 0.0)], ids=["london", "null-island"])
@pytest.mark.parametrize(
    "call",
    [
        lambda x, y: crs.to_storage(x, y, "gcj02"),
        lambda x, y: crs.to_storage(x, y, "bd09"),
        lambda x, y: crs.from_storage(x, y, "gcj02"),
        lambda x, y: crs.transform(x, y, "wgs84", "bd09"),
        crs.gcj02_to_wgs84,
        crs.wgs84_to_gcj02,
        crs.bd09_to_wgs84,
        crs.bd09_to_gcj02,
        crs.gcj02_to_bd09,
        crs.wgs84_to_bd09,
    ],
)
def test_outside_china_is_an_error(point: tuple[float, float], call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OutsideChinaError) as info:
        call(*point)
    assert repr(point[0]) in str(info.value) and repr(point[1]) in str(info.value)


def test_outside_china_names_index_in_arrays() -> None:
    lon = [LANDMARK[0], LONDON[0], 0.0]
    lat = [LANDMARK[1], LONDON[1], 0.0]
    with pytest.raises(OutsideChinaError, match=r"\(-0\.1276, 51\.5072\) at index 1 .*2 of 3") as info:
        crs.to_storage(lon, lat, "gcj02")
    assert info.value.index == 1


# -------------------------------------------------------------------------------------- Gauss-Kruger


def _independent_4548(lon: float, lat: float) -> tuple[float, float]:
    t = pyproj.Transformer.from_crs(pyproj.CRS.from_epsg(4490), pyproj.CRS.from_epsg(4548), always_xy=True)
    x, y = t.transform(lon, lat)
    return float(x), float(y)


def test_landmark_in_epsg_4548_and_4527() -> None:
    expected = _independent_4548(*LANDMARK)
    x, y = crs.from_storage(*LANDMARK, "EPSG:4548")
    assert (float(x), float(y)) == pytest.approx(expected, abs=1e-6)
    assert 500_000 < x < 505_000
    assert 501_700 < x < 501_800
    assert 4_057_000 < y < 4_060_000
    zx, zy = crs.from_storage(*LANDMARK, "EPSG:4527")
    assert float(zx) == pytest.approx(39_000_000 + float(x), abs=1e-6)
    assert float(zy) == pytest.approx(float(y), abs=1e-6)
    # and back to storage
    assert crs.transform_point(float(x), float(y), 4548, STORAGE_CRS) == pytest.approx(LANDMARK, abs=1e-9)
    assert crs.transform_point(float(zx), float(zy), 4527, STORAGE_CRS) == pytest.approx(LANDMARK, abs=1e-9)


def test_project_to_and_from_metric() -> None:
    lon, lat = _jinan_grid(20)
    x, y = crs.project_to_metric(lon, lat, "EPSG:4548")
    ref = pyproj.Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True).transform(lon, lat)
    np.testing.assert_allclose(x, ref[0], atol=1e-6)
    back_lon, back_lat = crs.project_from_metric(x, y, crs.metric_crs("EPSG:4548"))
    np.testing.assert_allclose(back_lon, lon, atol=1e-9)
    np.testing.assert_allclose(back_lat, lat, atol=1e-9)


def test_metric_crs() -> None:
    assert crs.metric_crs("EPSG:4548") == pyproj.CRS.from_epsg(4548)
    for bad in ("wgs84", "EPSG:4490", "gcj02"):
        with pytest.raises(UnknownCRSError, match="geographic"):
            crs.metric_crs(bad)


@pytest.mark.parametrize(
    ("lon", "prefixed", "expected"),
    [
        (117.0195, False, 4548),
        (117.0195, True, 4527),
        (116.2, False, 4548),
        (115.4, False, 4547),  # west of 115.5E is CM 114E
        (118.5, False, 4549),  # exact boundary goes east
        (75.0, False, 4534),
        (75.0, True, 4513),
        (135.0, False, 4554),
        (135.0, True, 4533),
    ],
)
def test_gk_zone_epsg(lon: float, prefixed: bool, expected: int) -> None:
    assert crs.gk_zone_epsg(lon, zone_prefixed=prefixed) == expected


@pytest.mark.parametrize("lon", [-0.1276, 70.0, 140.0])
def test_gk_zone_epsg_outside(lon: float) -> None:
    with pytest.raises(OutsideChinaError, match=repr(lon)):
        crs.gk_zone_epsg(lon, zone_prefixed=False)


def _projection_params(code: int) -> tuple[str, float, float]:
    c = pyproj.CRS.from_epsg(code)
    params = {p["name"]: p["value"] for p in c.to_json_dict()["conversion"]["parameters"]}
    return c.name, params["Longitude of natural origin"], params["False easting"]


@pytest.mark.parametrize("code", range(4491, 4555))
def test_gauss_kruger_table_matches_pyproj(code: int) -> None:
    gk = crs.gauss_kruger_zone(code)
    assert gk is not None
    name, cm, false_easting = _projection_params(code)
    assert gk.central_meridian == cm
    assert false_easting == (gk.zone * 1_000_000 + 500_000 if gk.zone_prefixed else 500_000)
    assert ("CM" in name) != gk.zone_prefixed
    assert ("3-degree" in name) == (gk.width == 3)
    assert crs.gauss_kruger_zone(gk.cm_epsg).central_meridian == cm  # type: ignore[union-attr]
    assert crs.gauss_kruger_zone(gk.zoned_epsg).zone == gk.zone  # type: ignore[union-attr]


def test_jinan_codes_per_pyproj() -> None:
    assert _projection_params(4548) == ("CGCS2000 / 3-degree Gauss-Kruger CM 117E", 117.0, 500_000.0)
    assert _projection_params(4527) == ("CGCS2000 / 3-degree Gauss-Kruger zone 39", 117.0, 39_500_000.0)
    assert crs.gauss_kruger_zone("wgs84") is None
    assert crs.gauss_kruger_zone("EPSG:3857") is None


def test_zone_prefix_under_cm_code() -> None:
    message = (
        "easting 39512345.0 carries the zone prefix 39: use EPSG:4527 "
        "(CGCS2000 / 3-degree Gauss-Kruger zone 39) instead of EPSG:4548"
    )
    with pytest.raises(ZonePrefixError) as info:
        crs.to_storage(39512345.0, 4058968.0, "EPSG:4548")
    assert str(info.value) == message
    with pytest.raises(ZonePrefixError, match=r"easting 39512345\.0 at index 1 carries the zone prefix 39"):
        crs.detect_gk_zone_prefix([501743.0, 39512345.0], 4548)


@pytest.mark.parametrize(
    ("easting", "code", "fragment"),
    [
        (501743.4, "EPSG:4527", "easting 501743.4 has no zone prefix"),
        (501743.4, "EPSG:4527", "use EPSG:4548 (CGCS2000 / 3-degree Gauss-Kruger CM 117E)"),
        (38512345.0, "EPSG:4527", "easting 38512345.0 carries the zone prefix 38 but EPSG:4527 is zone 39"),
        (38512345.0, "EPSG:4527", "use EPSG:4526"),
        (20512345.0, "EPSG:4548", "use EPSG:4498 (CGCS2000 / Gauss-Kruger zone 20)"),
        (99512345.0, "EPSG:4548", "99 is not a CGCS2000 Gauss-Kruger zone"),
    ],
)
def test_zone_prefix_errors(easting: float, code: str, fragment: str) -> None:
    with pytest.raises(ZonePrefixError) as info:
        crs.to_storage(easting, 4058968.0, code)
    assert fragment in str(info.value)


def test_detect_gk_zone_prefix_accepts_consistent_eastings() -> None:
    assert crs.detect_gk_zone_prefix([501743.0, 450000.0], "EPSG:4548") is None
    assert crs.detect_gk_zone_prefix([39501743.0, 39450000.0], 4527) == 39
    assert crs.detect_gk_zone_prefix([39501743.0], "wgs84") is None


# -------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("x", "y", "shown"),
    [
        ([117.0, float("nan")], [36.6, 36.7], "(nan, 36.7) at index 1"),
        ([117.0, 117.1], [36.6, float("inf")], "(117.1, inf) at index 1"),
        (float("-inf"), 36.6, "(-inf, 36.6)"),
    ],
)
def test_check_finite(x: object, y: object, shown: str) -> None:
    with pytest.raises(NonFiniteCoordinateError) as info:
        crs.check_finite(x, y)  # type: ignore[arg-type]
    assert shown in str(info.value)
    with pytest.raises(CoordinateError, match="not finite"):
        crs.to_storage(x, y, "wgs84")  # type: ignore[arg-type]


def test_check_within_rejects_beijing() -> None:
    lon = [LANDMARK[0], BEIJING[0], BEIJING[0]]
    lat = [LANDMARK[1], BEIJING[1], BEIJING[1]]
    with pytest.raises(OutsideAreaError) as info:
        crs.check_within(lon, lat, JINAN_BBOX, what="Jinan")
    message = str(info.value)
    assert "(116.4074, 39.9042) at index 1" in message
    assert "Jinan" in message and "2 of 3" in message
    assert info.value.index == 1 and info.value.coordinate == BEIJING
    with pytest.raises(OutsideAreaError, match=r"\(116\.4074, 39\.9042\)"):
        crs.check_within(*BEIJING, JINAN_BBOX)


def test_check_within_accepts_jinan() -> None:
    crs.check_within(*_jinan_grid(10), JINAN_BBOX)
    crs.check_within(*LANDMARK, JINAN_BBOX)


def test_check_within_bad_bbox() -> None:
    with pytest.raises(CoordinateError, match="min <= max"):
        crs.check_within(*LANDMARK, (117.9, 37.8, 116.2, 36.0))


def test_swapped_lon_lat_is_reported() -> None:
    with pytest.raises(CoordinateError, match=r"latitude 117\.0195 .*swapped"):
        crs.to_storage(LANDMARK[1], LANDMARK[0], "wgs84")


def test_shape_mismatch() -> None:
    with pytest.raises(CoordinateError, match=r"shape \(2,\) but y has shape \(3,\)"):
        crs.to_storage([1.0, 2.0], [1.0, 2.0, 3.0], "wgs84")


# ----------------------------------------------------------------------------------- array handling


def test_scalar_and_array_shapes() -> None:
    lon, lat = crs.to_storage(*LANDMARK, "wgs84")
    for out in (lon, lat):
        assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == ()
    grid_lon, grid_lat = _jinan_grid(4)
    x, y = crs.from_storage(grid_lon.reshape(4, 4), grid_lat.reshape(4, 4), 4548)
    assert x.shape == y.shape == (4, 4) and x.dtype == y.dtype == np.float64
    ix, iy = crs.to_storage([117, 118], [36, 37], "wgs84")  # ints become float64
    assert ix.dtype == iy.dtype == np.float64
    assert isinstance(crs.transform_point(*LANDMARK, "wgs84", 4548)[0], float)
    with pytest.raises(CoordinateError, match="one point"):
        crs.transform_point([1.0, 2.0], [1.0, 2.0], "wgs84", 4548)  # type: ignore[arg-type]


def test_wgs84_and_cgcs2000_are_a_null_transform() -> None:
    lon, lat = _jinan_grid(5)
    s_lon, s_lat = crs.to_storage(lon, lat, "wgs84")
    np.testing.assert_array_equal(s_lon, lon)
    np.testing.assert_array_equal(s_lat, lat)
    assert s_lon is not lon


@pytest.mark.parametrize(
    ("source", "datum"),
    [("EPSG:2415", "Beijing 1954"), ("EPSG:2363", "Xian 1980"), ("EPSG:4214", "Beijing 1954")],
)
def test_datums_proj_has_no_shift_for_are_refused(source: str, datum: str) -> None:
    # PROJ's fallback for these in China moves nothing: a silent error of tens of metres or more.
    with pytest.raises(crs.DatumShiftError, match=f"on the {datum} datum.*no shift") as raised:
        crs.transform(117.0, 36.66, source, "EPSG:4490")
    assert "EPSG:4527" in str(raised.value)
    with pytest.raises(crs.DatumShiftError):
        crs.transform(117.0, 36.66, "EPSG:4490", source)  # the other way too (an export)
    # A projection on one datum is not a datum shift.
    crs.check_datum_shift(source, "EPSG:4214" if datum == "Beijing 1954" else "EPSG:4610")


def test_cgcs2000_wgs84_and_itrf_count_as_one_frame() -> None:
    for source in ("EPSG:4326", "EPSG:32650", "EPSG:3857", "EPSG:9000", "EPSG:4527", "gcj02", "bd09"):
        crs.check_datum_shift(source, "EPSG:4490")
    # A datum shift PROJ has parameters for is no problem, though its accuracy is known only per point.
    crs.check_datum_shift("EPSG:4269", "EPSG:4326")  # NAD83 to WGS 84


def test_identity_transform_returns_copies() -> None:
    lon = np.array([117.0])
    out, _ = crs.transform(lon, np.array([36.6]), "cgcs2000", "EPSG:4490")
    out[0] = 0.0
    assert lon[0] == 117.0


# ------------------------------------------------------------------------------------ geometries


def test_transform_geometry_array_from_gcj02() -> None:
    g = _ref_wgs84_to_gcj02(*LANDMARK)
    geoms = np.array(
        [
            shapely.Point(*g),
            shapely.LineString([(117.0, 36.6, 10.0), (117.1, 36.7, 20.0)]),
            None,
            shapely.box(117.0, 36.6, 117.1, 36.7),
        ],
        dtype=object,
    )
    out = crs.transform_geometry(geoms, "gcj02", "EPSG:4548")
    assert out[2] is None
    expected = _independent_4548(*LANDMARK)
    assert (out[0].x, out[0].y) == pytest.approx(expected, abs=1e-3)
    assert out[1].has_z and list(shapely.get_coordinates(out[1], include_z=True)[:, 2]) == [10.0, 20.0]
    coords = shapely.get_coordinates(geoms[3])
    ex, ey = crs.transform(coords[:, 0], coords[:, 1], "gcj02", 4548)
    np.testing.assert_allclose(shapely.get_coordinates(out[3]), np.column_stack([ex, ey]))


def test_transform_geometry_single_and_bd09() -> None:
    b = _ref_gcj02_to_bd09(*_ref_wgs84_to_gcj02(*LANDMARK))
    out = crs.transform_geometry(shapely.Point(*b), "bd09", STORAGE_CRS)
    assert isinstance(out, shapely.Point)
    assert GEOD.inv(out.x, out.y, *LANDMARK)[2] < 0.01


def test_transform_geometry_outside_china() -> None:
    with pytest.raises(OutsideChinaError, match=r"-0\.1276"):
        crs.transform_geometry(shapely.Point(*LONDON), "gcj02", STORAGE_CRS)
