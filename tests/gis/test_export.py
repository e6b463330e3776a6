"""Tests for gis.export: layers round-trip through every format with Chinese text, and the problems report."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from shapely import LineString, Point, Polygon

from gis.crs import transform
from gis.export import REPORT_COLUMNS, shapefile_field_names, write_layer, write_problems
from gis.validate import Problem

POINTS = [Point(117.0201234, 36.6602345), Point(117.0312345, 36.6723456), Point(117.0423456, 36.6834567)]
NAMES = ["泉城路路灯", "大明湖“东门”垃圾箱", "芙蓉街路灯"]
DEG = 1e-7  # about 1 cm
METRE = 0.01


@pytest.fixture
def lamps() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "source_row": np.array([2, 3, 4], dtype=np.int64),
            "code": ["3701020118000001", "3701020305000002", "3701020118000003"],
            "名称": NAMES,
            "权属单位": ["历下区城市管理局", "环卫处", None],
            "灯高": [8.5, 6.0, np.nan],
            "数量": np.array([1, 2, 3], dtype=np.int64),
            "attributes": [{"所在网格": "370102001001001"}, {}, {"备注": "新增"}],
        },
        geometry=POINTS,
        crs="EPSG:4490",
    )


def texts(values: pd.Series) -> list[object]:
    """Values as read back, missing ones as None (pandas 3 reads missing text as NaN)."""
    return list(values.to_numpy(dtype=object, na_value=None))


def xy(geometries: object) -> np.ndarray:
    return np.asarray(shapely.get_coordinates(np.asarray(geometries, dtype=object)))


def assert_lamps_round_trip(back: pd.DataFrame, name_column: str = "名称") -> None:
    assert texts(back["code"]) == ["3701020118000001", "3701020305000002", "3701020118000003"]
    assert back[name_column].tolist() == NAMES
    assert back["source_row"].astype(int).tolist() == [2, 3, 4]
    assert back["灯高"].astype(float).tolist()[:2] == [8.5, 6.0]
    assert np.isnan(float(back["灯高"].iloc[2]))


# ----------------------------------------------------------------------------------------- layers


def test_geopackage_round_trip(tmp_path: Path, lamps: gpd.GeoDataFrame) -> None:
    path = write_layer(lamps, tmp_path / "部件.gpkg", layer="路灯")
    assert path == tmp_path / "部件.gpkg"
    assert pyogrio.list_layers(path)[:, 0].tolist() == ["路灯"]
    back = pyogrio.read_dataframe(path, layer="路灯")
    assert back.crs == "EPSG:4490"
    assert_lamps_round_trip(back)
    assert texts(back["权属单位"]) == ["历下区城市管理局", "环卫处", None]
    assert back["数量"].tolist() == [1, 2, 3]
    # The attributes dict is kept as JSON text with its Chinese keys.
    assert back["attributes"].tolist() == ['{"所在网格": "370102001001001"}', "{}", '{"备注": "新增"}']
    np.testing.assert_allclose(xy(back.geometry), xy(POINTS), atol=DEG, rtol=0)


def test_geopackage_keeps_its_other_layers(tmp_path: Path, lamps: gpd.GeoDataFrame) -> None:
    write_layer(lamps, tmp_path / "城管.gpkg", layer="路灯")
    write_layer(lamps.iloc[:1], tmp_path / "城管.gpkg", layer="垃圾箱")
    write_layer(lamps.iloc[:2], tmp_path / "城管.gpkg", layer="路灯")
    assert sorted(pyogrio.list_layers(tmp_path / "城管.gpkg")[:, 0].tolist()) == ["垃圾箱", "路灯"]
    assert len(pyogrio.read_dataframe(tmp_path / "城管.gpkg", layer="路灯")) == 2


def test_geojson_round_trip(tmp_path: Path, lamps: gpd.GeoDataFrame) -> None:
    path = write_layer(lamps, tmp_path / "lamps.geojson")
    # Written twice: the second write replaces the file.
    write_layer(lamps, tmp_path / "lamps.geojson")
    assert "泉城路路灯" in path.read_text(encoding="utf-8")
    back = pyogrio.read_dataframe(path)
    assert back.crs == "EPSG:4490"
    assert_lamps_round_trip(back)
    np.testing.assert_allclose(xy(back.geometry), xy(POINTS), atol=DEG, rtol=0)


def test_gbk_shapefile_with_chinese_field_names(
    tmp_path: Path, lamps: gpd.GeoDataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    frame = lamps.assign(**{"养护单位名称": ["历下区路灯管理处", "历下区环卫处", "历下区路灯管理处"]})
    with caplog.at_level(logging.WARNING, logger="gis.export"):
        path = write_layer(frame, tmp_path / "lamps.shp", encoding="GBK")
    assert path.with_suffix(".cpg").read_text(encoding="ascii") == "GBK"
    # Names that fit 10 GBK bytes are kept; 养护单位名称 (12 bytes) becomes 养护单位名 (10), with a warning.
    assert [r.getMessage() for r in caplog.records] == [
        "lamps.shp: field 养护单位名称 does not fit the Shapefile's 10-byte field names in GBK; "
        "written as 养护单位名"
    ]
    dbf = path.with_suffix(".dbf").read_bytes()
    assert "泉城路路灯".encode("gbk") in dbf
    assert "养护单位名".encode("gbk") in dbf
    back = pyogrio.read_dataframe(path)
    assert back.columns.tolist() == [
        "source_row",
        "code",
        "名称",
        "权属单位",
        "灯高",
        "数量",
        "attributes",
        "养护单位名",
        "geometry",
    ]
    assert_lamps_round_trip(back)
    assert back["养护单位名"].tolist() == ["历下区路灯管理处", "历下区环卫处", "历下区路灯管理处"]
    assert back.crs == "EPSG:4490"
    np.testing.assert_allclose(xy(back.geometry), xy(POINTS), atol=DEG, rtol=0)


def test_utf8_shapefile_cuts_names_between_characters(tmp_path: Path, lamps: gpd.GeoDataFrame) -> None:
    path = write_layer(lamps.rename(columns={"权属单位": "权属单位名称"}), tmp_path / "lamps.shp")
    assert path.with_suffix(".cpg").read_text(encoding="ascii") == "UTF-8"
    back = pyogrio.read_dataframe(path)
    # Three UTF-8 bytes per character: 名称 (6 bytes) fits, 权属单位名称 becomes 权属单 (9 bytes).
    assert back.columns.tolist() == [
        "source_row",
        "code",
        "名称",
        "权属单",
        "灯高",
        "数量",
        "attributes",
        "geometry",
    ]
    assert back["权属单"].tolist()[:2] == ["历下区城市管理局", "环卫处"]


def test_shapefile_writes_date_times_as_iso_text_without_gdal_noise(
    tmp_path: Path, lamps: gpd.GeoDataFrame
) -> None:
    stamped = lamps.assign(
        valid_from=pd.to_datetime(["2023-05-04 08:00:00", "2024-12-01 00:00:00", None]).tz_localize("UTC")
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_layer(stamped, tmp_path / "lamps.shp")
    # Not GDAL's "Field valid_from created as String field, though DateTime requested".
    assert [str(w.message) for w in caught] == []
    back = pyogrio.read_dataframe(path)
    assert texts(back["valid_from"]) == [
        "2023-05-04T08:00:00.000000+00:00",
        "2024-12-01T00:00:00.000000+00:00",
        None,
    ]


def test_shapefile_field_names_are_deterministic() -> None:
    columns = [
        "名称",
        "权属单位",
        "权属单位名称",
        "权属单位名称甲",
        "source_row",
        "very_long_field_name",
        "NAME",
        "name",
    ]
    assert shapefile_field_names(columns, "GBK") == {
        "名称": "名称",
        "权属单位": "权属单位",
        "权属单位名称": "权属单位名",
        "权属单位名称甲": "权属单位_2",
        "source_row": "source_row",
        "very_long_field_name": "very_long_",
        "NAME": "NAME",
        "name": "name_2",
    }
    assert shapefile_field_names(["权属单位", "权属单位名称", "权属单位名称甲"]) == {
        "权属单位": "权属单",
        "权属单位名称": "权属_2",
        "权属单位名称甲": "权属_3",
    }


def test_shapefile_cuts_long_text_between_characters(
    tmp_path: Path, lamps: gpd.GeoDataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    frame = lamps.assign(备注=["路" * 200, "短", None])
    with caplog.at_level(logging.WARNING, logger="gis.export"):
        path = write_layer(frame, tmp_path / "lamps.shp", encoding="GBK")
    assert "2 value" not in caplog.text
    assert "1 value(s) of field 备注 are longer than the 254 bytes" in caplog.text
    assert texts(pyogrio.read_dataframe(path)["备注"]) == ["路" * 127, "短", None]


def test_csv_points_as_lon_lat(tmp_path: Path, lamps: gpd.GeoDataFrame) -> None:
    path = write_layer(lamps, tmp_path / "lamps.csv")
    # Excel on Chinese Windows needs the byte-order mark to read UTF-8.
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    back = pd.read_csv(path, encoding="utf-8-sig", dtype={"code": str})
    assert back.columns.tolist() == [
        "source_row",
        "code",
        "名称",
        "权属单位",
        "灯高",
        "数量",
        "attributes",
        "lon",
        "lat",
    ]
    assert_lamps_round_trip(back)
    np.testing.assert_allclose(back[["lon", "lat"]].to_numpy(), xy(POINTS), atol=DEG, rtol=0)


def test_csv_other_geometries_as_wkt(tmp_path: Path) -> None:
    shapes = [
        LineString([(117.0201234, 36.6602345), (117.03, 36.67)]),
        Polygon([(117.05, 36.65), (117.06, 36.65), (117.06, 36.66)]),
        None,
    ]
    frame = gpd.GeoDataFrame({"名称": ["护栏", "绿化带", "无"]}, geometry=shapes, crs="EPSG:4490")
    path = write_layer(frame, tmp_path / "shapes.csv")
    back = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False)
    assert back.columns.tolist() == ["名称", "wkt"]
    assert back["名称"].tolist() == ["护栏", "绿化带", "无"]
    assert back["wkt"].iloc[2] == ""
    read = shapely.from_wkt(back["wkt"].iloc[:2].to_numpy())
    assert shapely.equals_exact(read, np.asarray(shapes[:2], dtype=object), tolerance=DEG).all()


def test_gbk_csv(tmp_path: Path, lamps: gpd.GeoDataFrame) -> None:
    path = write_layer(lamps, tmp_path / "lamps.csv", encoding="GBK")
    assert not path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert_lamps_round_trip(pd.read_csv(path, encoding="gbk", dtype={"code": str}))


def test_crs_round_trip_through_epsg_4527(tmp_path: Path, lamps: gpd.GeoDataFrame) -> None:
    lon, lat = xy(POINTS).T
    east, north = transform(lon, lat, "EPSG:4490", "EPSG:4527")
    assert (east > 39_000_000).all()  # zone 39 in front of the easting
    back = pyogrio.read_dataframe(write_layer(lamps, tmp_path / "lamps.gpkg", crs="EPSG:4527"))
    assert back.crs == "EPSG:4527"
    np.testing.assert_allclose(xy(back.geometry), np.column_stack([east, north]), atol=METRE, rtol=0)
    table = pd.read_csv(write_layer(lamps, tmp_path / "lamps.csv", crs="EPSG:4527"), encoding="utf-8-sig")
    assert table.columns.tolist()[-2:] == ["x", "y"]
    np.testing.assert_allclose(
        table[["x", "y"]].to_numpy(), np.column_stack([east, north]), atol=METRE, rtol=0
    )
    lon2, lat2 = transform(table["x"], table["y"], "EPSG:4527", "EPSG:4490")
    np.testing.assert_allclose(np.column_stack([lon2, lat2]), xy(POINTS), atol=DEG, rtol=0)


def test_gcj02_export_carries_no_crs(
    tmp_path: Path, lamps: gpd.GeoDataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gis.export"), warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        path = write_layer(lamps, tmp_path / "amap.geojson", crs="gcj02")
        write_layer(lamps, tmp_path / "amap.shp", crs="gcj02")
    assert "no EPSG code" in caplog.text
    # Ours is the logged line; pyogrio's own warning (with its source line) no longer reaches GIS staff.
    assert [str(w.message) for w in raw if "crs" in str(w.message)] == []
    back = pyogrio.read_dataframe(path)
    lon, lat = xy(POINTS).T
    expected = np.column_stack(transform(lon, lat, "EPSG:4490", "gcj02"))
    # GCJ-02 is offset by hundreds of metres in Jinan: the file must hold the shifted coordinates.
    assert np.abs(expected - xy(POINTS)).max() > 1e-3
    np.testing.assert_allclose(xy(back.geometry), expected, atol=DEG, rtol=0)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("lamps.geojson", {"encoding": "GBK"}, "GeoJSON text is always UTF-8"),
        ("lamps.gpkg", {"encoding": "GBK"}, "GPKG text is always UTF-8"),
        ("lamps.kml", {}, "cannot write lamps.kml: use one of .gpkg, .geojson, .json, .shp, .csv"),
        ("lamps.shp", {"encoding": "KLINGON"}, "unknown encoding 'KLINGON'"),
    ],
)
def test_bad_layer_requests(
    tmp_path: Path, lamps: gpd.GeoDataFrame, name: str, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_layer(lamps, tmp_path / name, **kwargs)


def test_text_gbk_cannot_hold(tmp_path: Path, lamps: gpd.GeoDataFrame) -> None:
    frame = lamps.assign(名称=["b", "路灯😀", "c"])
    with pytest.raises(ValueError) as info:
        write_layer(frame, tmp_path / "lamps.shp", encoding="GBK")
    assert str(info.value) == (
        "cannot write lamps.shp in GBK: column 名称 of code 3701020305000002 holds '路灯😀', which GBK"
        " cannot represent; write the file in GB18030 or UTF-8"
    )
    # As the message says: GB18030 holds every character, and reads back as written.
    written = write_layer(frame, tmp_path / "lamps.shp", encoding="GB18030")
    assert written.with_suffix(".cpg").read_text().strip().upper() == "GB18030"
    assert pyogrio.read_dataframe(written)["名称"].tolist() == ["b", "路灯😀", "c"]


def test_layer_without_crs(tmp_path: Path, lamps: gpd.GeoDataFrame) -> None:
    with pytest.raises(ValueError, match="the layer has no CRS"):
        write_layer(lamps.set_crs(None, allow_override=True), tmp_path / "lamps.gpkg")


def test_shapefile_refuses_mixed_kinds(tmp_path: Path, lamps: gpd.GeoDataFrame) -> None:
    mixed = lamps.set_geometry([POINTS[0], POINTS[1], shapely.box(117.0, 36.6, 117.1, 36.7)], crs="EPSG:4490")
    with pytest.raises(
        ValueError, match="a Shapefile holds one kind of geometry but this layer has point, polygon"
    ):
        write_layer(mixed, tmp_path / "mixed.shp")


# ---------------------------------------------------------------------------------------- reports

BOWTIE = Polygon([(117.05, 36.65), (117.051, 36.651), (117.051, 36.65), (117.05, 36.651)])
BOWTIE_WKT = "POLYGON ((117.05 36.65, 117.051 36.651, 117.051 36.65, 117.05 36.651, 117.05 36.65))"
BOWTIE_REASON = (
    "self-intersection at (117.050500 36.650500); not safely repairable: the repair splits it into 2 parts"
)
REPORT = [
    Problem(2, "geometry", BOWTIE_WKT, BOWTIE_REASON, "rejected"),
    Problem(3, "code", None, "code is missing", "rejected"),
    Problem(3, "geometry", None, "geometry is missing", "rejected"),
    Problem(
        4,
        "geometry",
        "MULTIPOINT ((117.05 36.65))",
        "a MultiPoint of one point; stored as a Point",
        "repaired",
    ),
    Problem(
        5,
        "geometry",
        "(nan 36.6)",
        "x is not a finite number: (nan 36.6)",
        "rejected",
    ),
]

ROW_3_REASONS = "code is missing | geometry is missing"


@pytest.fixture
def rejected() -> gpd.GeoDataFrame:
    with np.errstate(invalid="ignore"):
        nan_point = Point(np.nan, 36.6)
    return gpd.GeoDataFrame(
        {
            "source_row": np.array([2, 3, 5], dtype=np.int64),
            "code": ["3701020490000001", None, "3701020118000005"],
            "name": ["绿化带", "路灯", None],
            # File fields called "value" or "Code" must not overwrite the report's own columns.
            "attributes": [{"灯杆材质": "钢", "value": 1, "Code": "L-1"}, {"灯杆材质": "铝"}, {}],
        },
        geometry=[BOWTIE, None, nan_point],
        crs="EPSG:4490",
    )


def test_problems_report_in_geopackage(tmp_path: Path, rejected: gpd.GeoDataFrame) -> None:
    path = write_problems(REPORT, rejected, tmp_path / "problems.gpkg")
    assert pyogrio.list_layers(path)[:, 0].tolist() == ["problems"]
    back = pyogrio.read_dataframe(path, layer="problems")
    assert back.columns.tolist() == [
        *REPORT_COLUMNS,
        "code",
        "name",
        "灯杆材质",
        "value_2",
        "Code_2",
        "geometry",
    ]
    assert back.crs == "EPSG:4490"
    # One row per source row: row 3's two problems are one row, to correct once and import again.
    assert back["source_row"].tolist() == [2, 3, 4, 5]
    assert back["field"].tolist() == ["geometry", "code | geometry", "geometry", "geometry"]
    assert texts(back["value"]) == [BOWTIE_WKT, None, "MULTIPOINT ((117.05 36.65))", "(nan 36.6)"]
    assert back["reason"].tolist() == [REPORT[0].reason, ROW_3_REASONS, *(p.reason for p in REPORT[3:])]
    assert back["action"].tolist() == ["rejected", "rejected", "repaired", "rejected"]
    assert texts(back["code"]) == ["3701020490000001", None, None, "3701020118000005"]
    assert texts(back["name"]) == ["绿化带", "路灯", None, None]
    assert texts(back["灯杆材质"]) == ["钢", "铝", None, None]
    assert texts(back["value_2"]) == [1.0, None, None, None]
    assert texts(back["Code_2"]) == ["L-1", None, None, None]
    # One geometry column; null where the row has none, was not given (row 4), or has NaN coordinates.
    assert back.geometry.iloc[0].equals_exact(BOWTIE, 1e-12)
    assert back.geometry.iloc[1:].isna().all()


def test_problems_report_in_csv(tmp_path: Path, rejected: gpd.GeoDataFrame) -> None:
    path = write_problems(REPORT, rejected, tmp_path / "problems.csv")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    back = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert back.columns.tolist() == [*REPORT_COLUMNS, "wkt", "code", "name", "灯杆材质", "value_2", "Code_2"]
    assert back["source_row"].tolist() == ["2", "3", "4", "5"]
    assert back["reason"].tolist() == [REPORT[0].reason, ROW_3_REASONS, *(p.reason for p in REPORT[3:])]
    # A NaN coordinate is no position: it could not be converted, so its other number is still in the
    # source's CRS (POINT (NaN 4057000) among CGCS2000 degrees). The value column shows it.
    assert back["wkt"].tolist() == [BOWTIE_WKT, "", "", ""]
    assert back["value"].tolist()[3] == "(nan 36.6)"
    assert texts(back["name"]) == ["绿化带", "路灯", "", ""]
    assert texts(back["灯杆材质"]) == ["钢", "铝", "", ""]
    # A whole real number as the CSV export and the import write it as text: 1.0 would come back a change.
    assert back["value_2"].tolist() == ["1", "", "", ""]


def test_repaired_rows_get_their_geometry_when_given(tmp_path: Path, rejected: gpd.GeoDataFrame) -> None:
    repaired = gpd.GeoDataFrame(
        {"source_row": [4], "code": ["3701020118000004"], "name": ["路灯"], "attributes": [{}]},
        geometry=[shapely.MultiPoint([(117.05, 36.65)])],
        crs="EPSG:4490",
    )
    path = write_problems(REPORT, pd.concat([rejected, repaired]), tmp_path / "problems.gpkg")
    back = pyogrio.read_dataframe(path)
    assert back.loc[2, "code"] == "3701020118000004"
    assert back.geometry.iloc[2].equals(shapely.MultiPoint([(117.05, 36.65)]))


def test_empty_problems_report(tmp_path: Path, rejected: gpd.GeoDataFrame) -> None:
    path = write_problems([], rejected.iloc[:0], tmp_path / "problems.gpkg")
    info = pyogrio.read_info(path, layer="problems")
    assert info["features"] == 0
    assert info["fields"].tolist()[:5] == list(REPORT_COLUMNS)


def test_problems_report_without_rows(tmp_path: Path) -> None:
    # Callers with no problem rows at hand pass an empty frame: the report still lists every problem.
    back = pyogrio.read_dataframe(write_problems(REPORT, gpd.GeoDataFrame(), tmp_path / "problems.gpkg"))
    assert back.columns.tolist() == [*REPORT_COLUMNS, "geometry"]
    assert back["reason"].tolist() == [REPORT[0].reason, ROW_3_REASONS, *(p.reason for p in REPORT[3:])]
    assert back.geometry.isna().all()
    assert back.crs == "EPSG:4490"


def test_problems_report_format(tmp_path: Path, rejected: gpd.GeoDataFrame) -> None:
    with pytest.raises(ValueError, match=r"use one of \.gpkg, \.csv"):
        write_problems(REPORT, rejected, tmp_path / "problems.shp")
