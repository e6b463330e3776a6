"""Tests for gis.io: real files in the formats and datums staff use, and their classic mistakes."""

from __future__ import annotations

import codecs
import json
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import shapely

from gis import io
from gis.crs import resolve_crs, wgs84_to_gcj02
from gis.io import LayerError, LayerInfo, inspect_layer, iter_chunks, list_layers, read_layer

GEOD = pyproj.Geod(ellps="WGS84")
# The city box of the service's settings (EPSG:4490).
JINAN_BBOX = (116.1, 35.9, 118.1, 37.65)
CHINESE_FIELDS = ("标识码", "名称", "主管部门", "状态")


def jinan_lonlat(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points scattered over central Jinan (around Quancheng Square, 117.02E 36.66N)."""
    rng = np.random.default_rng(seed)
    return 117.02 + rng.uniform(-0.05, 0.05, n), 36.66 + rng.uniform(-0.05, 0.05, n)


def project(lon: np.ndarray, lat: np.ndarray, epsg: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = pyproj.Transformer.from_crs("EPSG:4490", f"EPSG:{epsg}", always_xy=True).transform(lon, lat)
    return np.asarray(x), np.asarray(y)


def components(n: int = 4) -> dict[str, list[str]]:
    names = ["路灯一号", "公共厕所", "报刊亭", "垃圾箱"]
    states = ["完好", "破损", "丢失", "占用"]
    return {
        "标识码": [f"3701020118{i:06d}" for i in range(1, n + 1)],
        "名称": [names[i % 4] for i in range(n)],
        "主管部门": ["历下区城管局" if i % 2 else "槐荫区市政" for i in range(n)],
        "状态": [states[i % 4] for i in range(n)],
    }


def coords_of(frame: gpd.GeoDataFrame) -> np.ndarray:
    return np.asarray(shapely.get_coordinates(frame.geometry.to_numpy()))


def write_gbk_shapefile(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A GBK shapefile in EPSG:4527 with Chinese field names and no .cpg, as Chinese desktop GIS writes."""
    folder.mkdir(parents=True, exist_ok=True)
    lon, lat = jinan_lonlat(4)
    x, y = project(lon, lat, 4527)
    frame = gpd.GeoDataFrame(components(), geometry=gpd.points_from_xy(x, y), crs="EPSG:4527")
    shp = folder / "部件.shp"
    pyogrio.write_dataframe(frame, shp, encoding="GBK")
    shp.with_suffix(".cpg").unlink()
    return shp, lon, lat


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def assert_gbk_components(info: LayerInfo, frame: gpd.GeoDataFrame, lon: np.ndarray, lat: np.ndarray) -> None:
    assert info.format == "ESRI Shapefile"
    assert info.crs == "EPSG:4527" and info.crs_from == "file"
    assert info.encoding == "GB18030"
    assert any("no .cpg" in w and "GB18030" in w for w in info.warnings)
    assert info.fields == CHINESE_FIELDS
    assert list(frame.columns) == [*CHINESE_FIELDS, "source_row", "geometry"]
    expected = components()
    for name in CHINESE_FIELDS:
        assert frame[name].tolist() == expected[name]
    assert frame["source_row"].tolist() == [1, 2, 3, 4]
    assert frame["source_row"].dtype == np.int64
    assert frame.crs == "EPSG:4490"
    np.testing.assert_allclose(coords_of(frame), np.column_stack([lon, lat]), rtol=0, atol=1e-7)


# ------------------------------------------------------------------------------------------ GeoPackage


@pytest.fixture
def two_layer_gpkg(tmp_path: Path) -> Path:
    path = tmp_path / "survey.gpkg"
    lon, lat = jinan_lonlat(5)
    lamps = gpd.GeoDataFrame(
        {"名称": [f"路灯{i}" for i in range(3)], "高度": [6.5, 8.0, 10.0]},
        geometry=gpd.points_from_xy(lon[:3], lat[:3]),
        crs="EPSG:4490",
    )
    toilets = gpd.GeoDataFrame(
        {"名称": ["公厕甲", "公厕乙"]}, geometry=gpd.points_from_xy(lon[3:], lat[3:]), crs="EPSG:4490"
    )
    pyogrio.write_dataframe(lamps, path, layer="lamps")
    pyogrio.write_dataframe(toilets, path, layer="toilets")
    return path


def test_gpkg_layer_picked_by_name(two_layer_gpkg: Path) -> None:
    info, frame = read_layer(two_layer_gpkg, layer="toilets", city_bbox=JINAN_BBOX)

    assert info.path == two_layer_gpkg
    assert (info.format, info.layer, info.layers) == ("GPKG", "toilets", ("lamps", "toilets"))
    assert (info.crs, info.crs_from, info.encoding) == ("cgcs2000", "file", "UTF-8")
    assert (info.feature_count, info.fields, info.geometry_type) == (2, ("名称",), "Point")
    assert info.warnings == ()
    assert frame["名称"].tolist() == ["公厕甲", "公厕乙"]
    assert frame["source_row"].tolist() == [1, 2]
    lon, lat = jinan_lonlat(5)
    np.testing.assert_array_equal(coords_of(frame), np.column_stack([lon[3:], lat[3:]]))
    assert list_layers(two_layer_gpkg) == ("lamps", "toilets")


def test_gpkg_with_several_layers_needs_a_name(two_layer_gpkg: Path) -> None:
    with pytest.raises(LayerError, match="holds 2 layers") as err:
        inspect_layer(two_layer_gpkg)
    assert "lamps, toilets" in str(err.value) and "--layer" in str(err.value)
    assert str(two_layer_gpkg) in str(err.value)


def test_gpkg_with_qgis_styles_reads_its_one_layer(tmp_path: Path) -> None:
    # QGIS saves a layer's style into the GeoPackage as the table layer_styles, which has no geometry.
    lon, lat = jinan_lonlat(2)
    path = tmp_path / "styled.gpkg"
    lamps = gpd.GeoDataFrame({"名称": ["甲", "乙"]}, geometry=gpd.points_from_xy(lon, lat), crs=4490)
    lamps.to_file(path, layer="路灯", driver="GPKG")
    styles = pd.DataFrame({"f_table_name": ["路灯"], "styleQML": ["<qgis/>"]})
    pyogrio.write_dataframe(styles, path, layer="layer_styles", driver="GPKG", append=True)
    assert len(pyogrio.list_layers(path)) == 2

    info, read = read_layer(path, city_bbox=JINAN_BBOX)
    assert (info.layer, len(read)) == ("路灯", 2)
    with pytest.raises(LayerError, match=r"'layer_styles' is a table without geometry; .* are 路灯"):
        read_layer(path, layer="layer_styles")


def test_gpkg_unknown_layer_lists_the_layers(two_layer_gpkg: Path) -> None:
    with pytest.raises(LayerError, match="has no layer 'roads'") as err:
        inspect_layer(two_layer_gpkg, layer="roads")
    assert "lamps, toilets" in str(err.value)


def test_missing_geometry_and_nan_coordinates_keep_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "gaps.gpkg"
    lon, lat = jinan_lonlat(4)
    geoms = [
        shapely.Point(lon[0], lat[0]),
        None,
        shapely.Point(math.nan, math.nan),
        shapely.Point(lon[3], lat[3]),
    ]
    frame = gpd.GeoDataFrame({"n": [1, 2, 3, 4]}, geometry=geoms, crs="EPSG:4548")
    x, y = project(lon, lat, 4548)
    frame.loc[[0, 3], "geometry"] = gpd.points_from_xy(x[[0, 3]], y[[0, 3]], crs="EPSG:4548")
    pyogrio.write_dataframe(frame, path)

    _, read = read_layer(path, city_bbox=JINAN_BBOX)

    assert read["source_row"].tolist() == [1, 2, 3, 4]
    assert read["n"].tolist() == [1, 2, 3, 4]
    assert read.geometry.iloc[1] is None
    third = read.geometry.iloc[2]
    assert third is None or third.is_empty or not np.isfinite(shapely.get_coordinates(third)).all()
    np.testing.assert_allclose(
        coords_of(read.iloc[[0, 3]]), np.column_stack([lon[[0, 3]], lat[[0, 3]]]), atol=1e-8
    )


def test_lines_and_polygons_are_converted(tmp_path: Path) -> None:
    path = tmp_path / "nets.gpkg"
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, 4548)
    line = shapely.LineString(np.column_stack([x, y]))
    polygon = shapely.Polygon(np.column_stack([x, y]))
    frame = gpd.GeoDataFrame({"kind": ["line", "polygon"]}, geometry=[line, polygon], crs="EPSG:4548")
    pyogrio.write_dataframe(frame, path, layer="nets", geometry_type="Unknown")

    info, read = read_layer(path, city_bbox=JINAN_BBOX)

    assert info.crs == "EPSG:4548"
    assert read.geometry.iloc[0].geom_type == "LineString" and read.geometry.iloc[1].geom_type == "Polygon"
    np.testing.assert_allclose(
        shapely.get_coordinates(read.geometry.iloc[0]), np.column_stack([lon, lat]), atol=1e-8
    )
    ring = shapely.get_coordinates(read.geometry.iloc[1].exterior)
    np.testing.assert_allclose(ring[:3], np.column_stack([lon, lat]), atol=1e-8)


def test_chunks_stream_in_order(tmp_path: Path) -> None:
    path = tmp_path / "lamps.gpkg"
    lon, lat = jinan_lonlat(25_000)
    frame = gpd.GeoDataFrame(
        {"seq": np.arange(25_000)}, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4490"
    )
    pyogrio.write_dataframe(frame, path)
    info = inspect_layer(path)

    chunks = list(iter_chunks(info, chunk_rows=10_000))

    assert info.feature_count == 25_000
    assert [len(c) for c in chunks] == [10_000, 10_000, 5_000]
    rows = np.concatenate([c["source_row"].to_numpy() for c in chunks])
    np.testing.assert_array_equal(rows, np.arange(1, 25_001))
    np.testing.assert_array_equal(np.concatenate([c["seq"].to_numpy() for c in chunks]), np.arange(25_000))
    assert all(c.crs == "EPSG:4490" for c in chunks)


# ------------------------------------------------------------------------------------------ Shapefile


def test_gbk_shapefile_without_cpg_is_detected(tmp_path: Path) -> None:
    shp, lon, lat = write_gbk_shapefile(tmp_path / "survey")

    info, frame = read_layer(shp, city_bbox=JINAN_BBOX)

    assert_gbk_components(info, frame, lon, lat)
    assert info.layer is None and info.layers == ("部件",)


@pytest.mark.parametrize("given_as", ["zip", "folder"])
def test_gbk_shapefile_zipped_or_as_a_folder(tmp_path: Path, given_as: str) -> None:
    shp, lon, lat = write_gbk_shapefile(tmp_path / "survey")
    if given_as == "zip":
        path = tmp_path / "survey.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for part in sorted(shp.parent.iterdir()):
                zf.write(part, f"survey/{part.name}")
    else:
        path = shp.parent

    info, frame = read_layer(path, city_bbox=JINAN_BBOX)

    assert info.path == path
    assert_gbk_components(info, frame, lon, lat)


@pytest.mark.parametrize("names_in", ["gbk", "utf-8"])
def test_a_zip_of_two_shapefiles_names_them_as_they_were_zipped(tmp_path: Path, names_in: str) -> None:
    # Windows' Explorer writes member names in GBK and Linux's zip in UTF-8, neither flagged as UTF-8, which
    # zipfile then reads as CP437 (路灯.shp as ┬╖╡╞.shp). Written here under ASCII stand-ins of the same
    # length, whose bytes are then swapped for the names' own, unflagged.
    shp, _, _ = write_gbk_shapefile(tmp_path / "survey")
    names = {
        "路灯": "Q1Z9" if names_in == "gbk" else "Q1Z9Q1",
        "井盖": "K7W3" if names_in == "gbk" else "K7W3K7",
    }
    path = tmp_path / "两个.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for stand_in in names.values():
            for part in sorted(shp.parent.iterdir()):
                zf.write(part, f"{stand_in}{part.suffix}")
    data = path.read_bytes()
    for name, stand_in in names.items():
        assert len(name.encode(names_in)) == len(stand_in)
        data = data.replace(stand_in.encode(), name.encode(names_in))
    path.write_bytes(data)
    assert not any(m.flag_bits & 0x800 for m in zipfile.ZipFile(path).infolist())

    with pytest.raises(LayerError) as refused:
        inspect_layer(path)
    assert f"{path} holds 2 shapefiles (井盖.shp, 路灯.shp): zip only the one to import" in str(refused.value)


def test_a_zip_of_a_geopackage_says_to_import_the_geopackage_itself(tmp_path: Path) -> None:
    # A zip is read for a shapefile or a FileGDB; a GeoPackage zipped to mail it is named, with what to do.
    gpkg = tmp_path / "路灯.gpkg"
    gpd.GeoDataFrame({"名称": ["路灯"]}, geometry=[shapely.Point(117.0, 36.6)], crs="EPSG:4490").to_file(gpkg)
    path = tmp_path / "成果.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(gpkg, "成果/路灯.gpkg")
    with pytest.raises(LayerError) as refused:
        inspect_layer(path)
    assert str(refused.value) == (
        f"{path} holds 成果/路灯.gpkg and no shapefile (.shp) or FileGDB (.gdb), which are what a zip is"
        " read for: import 成果/路灯.gpkg itself, unzipped"
    )


def test_explicit_encoding_overrides_detection(tmp_path: Path) -> None:
    shp, _, _ = write_gbk_shapefile(tmp_path)

    info, frame = read_layer(shp, encoding="GBK")

    assert info.encoding == "GBK" and info.warnings == ()
    assert info.fields == CHINESE_FIELDS and frame["主管部门"].tolist() == components()["主管部门"]


@pytest.mark.parametrize(
    ("written", "given", "refused_as", "advised"),
    [("UTF-8", "GB18030", "GB18030", "UTF-8"), ("GBK", "utf-8", "UTF-8", "GB18030")],
)
def test_text_in_another_encoding_than_given_is_refused_naming_the_likely_one(
    tmp_path: Path, written: str, given: str, refused_as: str, advised: str
) -> None:
    # Once "e.g. --encoding GB18030" whatever was refused, even GB18030 itself; and UTF-8 as "utf-8-sig".
    path = tmp_path / "c.csv"
    path.write_bytes("标识码,经度,纬度,名称\n3701020118000001,117.05,36.66,路灯甲\n".encode(written))
    with pytest.raises(LayerError) as err:
        read_layer(path, encoding=given, crs="EPSG:4490")
    assert err.value.field == "encoding"
    assert f"is not {refused_as} (" in str(err.value)
    assert f"(e.g. --encoding {advised}), or leave it out to detect it" in str(err.value)


def gbk_shapefile_with_cpg(tmp_path: Path, cpg: str) -> tuple[Path, dict[str, list[str]]]:
    """Three components written in GBK, beside a .cpg that says ``cpg``; returns the .shp and the data."""
    lon, lat = jinan_lonlat(3)
    data = {k: v[:3] for k, v in components(3).items()}
    frame = gpd.GeoDataFrame(data, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4490")
    shp = tmp_path / "gbk.shp"
    pyogrio.write_dataframe(frame, shp, encoding="GBK")
    shp.with_suffix(".cpg").write_text(cpg)
    return shp, data


@pytest.mark.parametrize("cpg", ["GBK", "936", "CP936"])
def test_gbk_shapefile_with_cpg(tmp_path: Path, cpg: str) -> None:
    # ArcGIS writes 936 (the Windows code page) or GBK; the .cpg is honoured, nothing is guessed.
    shp, data = gbk_shapefile_with_cpg(tmp_path, cpg)

    info, read = read_layer(shp)

    assert info.encoding == "GB18030"  # GBK's superset: reads every GBK byte the same, and more
    assert not any("cpg" in w for w in info.warnings)
    assert read["名称"].tolist() == data["名称"]


@pytest.mark.parametrize("cpg", ["UTF-8", "1252"])
def test_gbk_shapefile_with_a_cpg_naming_another_encoding_is_refused_saying_so(
    tmp_path: Path, cpg: str
) -> None:
    # Read as the .cpg says, the text was refused row by row (UTF-8) or became Latin letters (1252).
    shp, data = gbk_shapefile_with_cpg(tmp_path, cpg)

    with pytest.raises(LayerError, match=f"its .cpg says {cpg} .*read as Chinese in GBK") as err:
        read_layer(shp)
    assert err.value.field == "encoding" and "--encoding GB18030" in str(err.value)
    _, read = read_layer(shp, encoding="GB18030")  # told, it reads
    assert read["名称"].tolist() == data["名称"]


def test_utf8_shapefile_with_cpg(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(3)
    data = {k: v[:3] for k, v in components(3).items() if k != "主管部门"}  # 12 UTF-8 bytes: over .dbf's 10
    frame = gpd.GeoDataFrame(data, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4490")
    shp = tmp_path / "utf8.shp"
    pyogrio.write_dataframe(frame, shp, encoding="UTF-8")
    assert shp.with_suffix(".cpg").read_text().strip() == "UTF-8"

    info, read = read_layer(shp)

    assert (info.encoding, info.warnings) == ("UTF-8", ())
    assert info.fields == ("标识码", "名称", "状态")
    assert read["名称"].tolist() == data["名称"] and read["状态"].tolist() == data["状态"]
    np.testing.assert_array_equal(coords_of(read), np.column_stack([lon, lat]))


def test_utf8_field_names_cut_by_gdal_at_ten_bytes(tmp_path: Path) -> None:
    # GDAL cuts 主管部门 (12 bytes in UTF-8) to 10 bytes, mid-character; pyogrio alone cannot read that.
    lon, lat = jinan_lonlat(2)
    data = {"主管部门": ["历下区城管局", "市政"], "名称": ["路灯", "公厕"]}
    shp = tmp_path / "cut.shp"
    with pytest.warns(RuntimeWarning):
        pyogrio.write_dataframe(gpd.GeoDataFrame(data, geometry=gpd.points_from_xy(lon, lat), crs=4490), shp)

    info, frame = read_layer(shp)

    assert (info.encoding, info.fields) == ("UTF-8", ("主管部", "名称"))
    assert frame["主管部"].tolist() == data["主管部门"] and frame["名称"].tolist() == data["名称"]


def dbf_bytes(name: str, width: int, values: list[bytes]) -> bytes:
    """A dBASE III table with one character field, written by hand to control its width exactly."""
    header_len, record_len = 32 + 32 + 1, 1 + width
    head = b"\x03\x7c\x01\x01" + len(values).to_bytes(4, "little")
    head += header_len.to_bytes(2, "little") + record_len.to_bytes(2, "little") + bytes(20)
    field = name.encode("utf-8").ljust(11, b"\0") + b"C" + bytes(4) + bytes([width, 0]) + bytes(14)
    return head + field + b"\r" + b"".join(b" " + v.ljust(width, b" ") for v in values) + b"\x1a"


def test_utf8_value_cut_at_the_field_width_is_still_detected(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(2)
    shp = tmp_path / "narrow.shp"
    frame = gpd.GeoDataFrame({"名称": ["x", "y"]}, geometry=gpd.points_from_xy(lon, lat), crs=4490)
    pyogrio.write_dataframe(frame, shp)
    shp.with_suffix(".cpg").unlink()
    # 8 bytes hold 历下 and the first two bytes of 区.
    shp.with_suffix(".dbf").write_bytes(dbf_bytes("名称", 8, ["历下区".encode()[:8], "路灯".encode()]))

    info, read = read_layer(shp)

    assert (info.encoding, info.fields) == ("UTF-8", ("名称",))
    assert read["名称"].tolist() == ["历下", "路灯"]


def test_shapefile_needs_its_dbf(tmp_path: Path) -> None:
    shp, _, _ = write_gbk_shapefile(tmp_path)
    shp.with_suffix(".dbf").unlink()

    with pytest.raises(LayerError, match=r"has no \.dbf") as err:
        inspect_layer(shp)
    assert str(shp) in str(err.value) and "copy all of them" in str(err.value)


def test_folder_with_two_shapefiles_lists_them(tmp_path: Path) -> None:
    write_gbk_shapefile(tmp_path)
    lon, lat = jinan_lonlat(1)
    gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4490").to_file(tmp_path / "other.shp")

    with pytest.raises(LayerError, match="holds 2 shapefiles") as err:
        inspect_layer(tmp_path)
    assert "other.shp" in str(err.value) and "部件.shp" in str(err.value)


def test_shapefile_without_prj_needs_crs(tmp_path: Path) -> None:
    shp, lon, lat = write_gbk_shapefile(tmp_path)
    shp.with_suffix(".prj").unlink()

    with pytest.raises(LayerError) as err:
        inspect_layer(shp)
    assert str(err.value) == (
        f"{shp} has no coordinate reference system: say which with --crs (e.g. --crs EPSG:4527, --crs gcj02)"
    )

    info, frame = read_layer(shp, crs="4527")
    assert (info.crs, info.crs_from) == ("EPSG:4527", "override")
    np.testing.assert_allclose(coords_of(frame), np.column_stack([lon, lat]), atol=1e-7)


ESRI_PRJ_4548 = (
    'PROJCS["CGCS2000_3_Degree_GK_CM_117E",GEOGCS["GCS_China_Geodetic_Coordinate_System_2000",'
    'DATUM["D_China_2000",SPHEROID["CGCS2000",6378137.0,298.257222101]],PRIMEM["Greenwich",0.0],'
    'UNIT["Degree",0.0174532925199433]],PROJECTION["Gauss_Kruger"],PARAMETER["False_Easting",500000.0],'
    'PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",117.0],PARAMETER["Scale_Factor",1.0],'
    'PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]'
)


def test_arcgis_prj_is_matched_to_its_epsg_code(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(2)
    x, y = project(lon, lat, 4548)
    shp = tmp_path / "arcgis.shp"
    pyogrio.write_dataframe(gpd.GeoDataFrame({"n": [1, 2]}, geometry=gpd.points_from_xy(x, y), crs=4548), shp)
    shp.with_suffix(".prj").write_text(ESRI_PRJ_4548)

    info, frame = read_layer(shp, city_bbox=JINAN_BBOX)

    assert (info.crs, info.crs_from) == ("EPSG:4548", "file")
    np.testing.assert_allclose(coords_of(frame), np.column_stack([lon, lat]), atol=1e-8)


@pytest.mark.parametrize(
    ("name", "false_easting", "epsg"), [("Gauss_Kruger_117", 500_000, 4548), ("Zone39", 39_500_000, 4527)]
)
def test_a_prj_of_a_gauss_kruger_zone_under_a_name_of_its_own_is_that_zone(
    tmp_path: Path, name: str, false_easting: int, epsg: int
) -> None:
    """Survey software names the zone as it likes ("Gauss_Kruger_117"); PROJ then matches its EPSG codes at
    a lower confidence, and two at once without the prefix (4548 and 4509, the 6-degree CM 117E). Both
    place points alike, so the file is in that zone, as QGIS reads it; it was refused as having no code."""
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, epsg)
    shp = tmp_path / "custom.shp"
    pyogrio.write_dataframe(
        gpd.GeoDataFrame({"n": [1, 2, 3]}, geometry=gpd.points_from_xy(x, y), crs=epsg), shp
    )
    shp.with_suffix(".prj").write_text(
        ESRI_PRJ_4548.replace("CGCS2000_3_Degree_GK_CM_117E", name)
        .replace("Gauss_Kruger", "Transverse_Mercator")
        .replace("500000.0", f"{false_easting:.1f}")
    )

    info, frame = read_layer(shp, city_bbox=JINAN_BBOX)

    assert (info.crs, info.crs_from) == (f"EPSG:{epsg}", "file")
    np.testing.assert_allclose(coords_of(frame), np.column_stack([lon, lat]), atol=1e-8)
    # Another false easting is no zone of CGCS2000's: still refused, and said why.
    shp.with_suffix(".prj").write_text(ESRI_PRJ_4548.replace("500000.0", "400000.0"))
    with pytest.raises(LayerError, match="has no EPSG code"):
        inspect_layer(shp)


def test_crs_without_epsg_code(tmp_path: Path) -> None:
    local = "+proj=tmerc +lat_0=0 +lon_0=117.1 +k=1 +x_0=50000 +y_0=-4000000 +ellps=GRS80 +units=m +no_defs"
    path = tmp_path / "local_grid.gpkg"
    frame = gpd.GeoDataFrame(geometry=[shapely.Point(41_000.0, 58_000.0)], crs=pyproj.CRS(local))
    pyogrio.write_dataframe(frame, path, layer="grid")

    with pytest.raises(LayerError, match="has no EPSG code") as err:
        inspect_layer(path)
    name = pyproj.CRS.from_user_input(pyogrio.read_info(path)["crs"]).name
    assert repr(name) in str(err.value) and "--crs" in str(err.value)

    info = inspect_layer(path, crs="EPSG:4548")
    assert info.crs_from == "override" and "using --crs EPSG:4548" in info.warnings[0]


# ---------------------------------------------------------------------------------- GeoJSON, KML, FileGDB


def geojson_text(lon: np.ndarray, lat: np.ndarray, crs: str | None = None) -> str:
    features = [
        {
            "type": "Feature",
            "properties": {"名称": f"站{i}"},
            "geometry": {"type": "Point", "coordinates": [x, y]},
        }
        for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist(), strict=True))
    ]
    document: dict[str, object] = {"type": "FeatureCollection", "features": features}
    if crs is not None:
        document["crs"] = {"type": "name", "properties": {"name": crs}}
    return json.dumps(document, ensure_ascii=False)


def test_geojson_is_wgs84_by_its_spec(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(3)
    path = tmp_path / "stations.geojson"
    path.write_text(geojson_text(lon, lat), encoding="utf-8")

    info, frame = read_layer(path, city_bbox=JINAN_BBOX)

    assert (info.format, info.crs, info.crs_from, info.layer) == ("GeoJSON", "wgs84", "format", None)
    assert frame["名称"].tolist() == ["站0", "站1", "站2"]
    assert frame["source_row"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(coords_of(frame), np.column_stack([lon, lat]), atol=1e-9)


def test_a_beijing_1954_file_is_refused_whole(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, 4527)
    path = tmp_path / "bj54.gpkg"
    gpd.GeoDataFrame({"名称": ["甲", "乙", "丙"]}, geometry=gpd.points_from_xy(x, y), crs=2415).to_file(path)
    with pytest.raises(LayerError, match=r"the file's CRS EPSG:2415 .* Beijing 1954 datum") as raised:
        read_layer(path, city_bbox=JINAN_BBOX)
    assert raised.value.field == "crs"
    path = tmp_path / "cgcs.gpkg"
    gpd.GeoDataFrame({"名称": ["甲", "乙", "丙"]}, geometry=gpd.points_from_xy(x, y), crs=4527).to_file(path)
    with pytest.raises(LayerError, match=r"--crs EPSG:2363 .* Xian 1980 datum"):
        read_layer(path, crs="EPSG:2363", city_bbox=JINAN_BBOX)


def test_geojson_naming_gcj02_after_its_features(tmp_path: Path) -> None:
    # A tool that writes the members in its own order puts crs last, far past the file's first 64 KiB.
    lon, lat = jinan_lonlat(2000)
    gcj = tmp_path / "gcj.geojson"
    gcj.write_text(geojson_text(*wgs84_to_gcj02(lon, lat), "gcj02"), encoding="utf-8")
    assert gcj.stat().st_size > 100_000 and gcj.read_text(encoding="utf-8").rstrip().endswith("}}}")
    info, frame = read_layer(gcj)
    assert (info.crs, info.crs_from) == ("gcj02", "file")
    np.testing.assert_allclose(coords_of(frame), np.column_stack([lon, lat]), atol=1e-8)

    # A crs inside the first or the last feature's geometry (GeoJSON 2008 allowed it) is not the file's,
    # in a large file or a small one.
    for size in (2000, 3):
        for at in (0, -1):
            document = json.loads(geojson_text(*wgs84_to_gcj02(lon[:size], lat[:size])))
            document["features"][at]["geometry"]["crs"] = {"type": "name", "properties": {"name": "gcj02"}}
            inner = tmp_path / "inner.geojson"
            inner.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
            info, _ = read_layer(inner, city_bbox=JINAN_BBOX)
            assert (info.crs, info.crs_from) == ("wgs84", "format"), (size, at)


def test_geojson_declaring_a_crs_and_an_override_that_contradicts_it(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, 4548)
    declared = tmp_path / "declared.geojson"
    declared.write_text(geojson_text(x, y, "urn:ogc:def:crs:EPSG::4548"), encoding="utf-8")
    info, frame = read_layer(declared)
    assert (info.crs, info.crs_from) == ("EPSG:4548", "file")
    np.testing.assert_allclose(coords_of(frame), np.column_stack([lon, lat]), atol=1e-8)

    # Amap-derived GeoJSON says nothing, so it looks like WGS 84; staff know better and say gcj02.
    amap = tmp_path / "amap.geojson"
    amap.write_text(geojson_text(*wgs84_to_gcj02(lon, lat)), encoding="utf-8")
    info, frame = read_layer(amap, crs="gcj02")
    assert (info.crs, info.crs_from) == ("gcj02", "override")
    assert len(info.warnings) == 1 and "--crs gcj02" in info.warnings[0] and "wgs84" in info.warnings[0]
    np.testing.assert_allclose(coords_of(frame), np.column_stack([lon, lat]), atol=1e-8)


def test_kml(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(3)
    path = tmp_path / "toilets.kml"
    frame = gpd.GeoDataFrame(
        {"Name": ["公厕甲", "公厕乙", "公厕丙"]}, geometry=gpd.points_from_xy(lon, lat), crs=4326
    )
    pyogrio.write_dataframe(frame, path, driver="KML")

    info, read = read_layer(path, city_bbox=JINAN_BBOX)

    assert (info.format, info.crs, info.crs_from) == ("KML", "wgs84", "format")
    assert info.layer == info.layers[0] and info.feature_count == 3
    assert read["Name"].tolist() == ["公厕甲", "公厕乙", "公厕丙"]
    assert read["source_row"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(coords_of(read)[:, :2], np.column_stack([lon, lat]), atol=1e-9)


def _kml_with_times(path: Path, times: Sequence[tuple[str, str] | None]) -> Path:
    """A KML of placemarks, each with a <TimeStamp><when> or <TimeSpan><begin> (element, text), or none."""
    stamp = {
        None: "",
        "when": "<TimeStamp><when>{}</when></TimeStamp>",
        "begin": "<TimeSpan><begin>{}</begin></TimeSpan>",
    }
    placemarks = "".join(
        f"<Placemark><name>路灯{n}</name>{stamp[None] if t is None else stamp[t[0]].format(t[1])}"
        "<Point><coordinates>117.1228,36.7075</coordinates></Point></Placemark>"
        for n, t in enumerate(times)
    )
    path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
        f"{placemarks}</Document></kml>",
        encoding="utf-8",
    )
    return path


def test_a_kml_date_is_read_as_the_date_it_is(tmp_path: Path) -> None:
    # GDAL reads every <when> as a datetime: a date came back as 2023-05-01T00:00:00, a month (2023-05) as
    # 2023-05-01, a year (2023) not at all. A time of day, or midnight in a zone, stays as written.
    whens = ["2023-05-01", "2023-05-02T08:30:00+08:00", "2023-05-03T00:00:00Z", None, "2023-05", "2019"]
    path = _kml_with_times(tmp_path / "巡查.kml", [None if w is None else ("when", w) for w in whens])
    _, read = read_layer(path, city_bbox=JINAN_BBOX)
    assert [None if pd.isna(v) else v for v in read["timestamp"]] == whens
    # Read in chunks, each placemark keeps its own.
    info = inspect_layer(path, city_bbox=JINAN_BBOX)
    chunks = list(iter_chunks(info, chunk_rows=4, city_bbox=JINAN_BBOX))
    assert [None if pd.isna(v) else v for c in chunks for v in c["timestamp"]] == whens
    # Years alone, which GDAL loses in every placemark, are still a field.
    years = _kml_with_times(tmp_path / "年份.kml", [("begin", "2019"), ("begin", "2020")])
    _, read = read_layer(years, city_bbox=JINAN_BBOX)
    assert read["begin"].tolist() == ["2019", "2020"]


def _placemark(name: str, when: str | None = None) -> str:
    stamp = "" if when is None else f"<TimeStamp><when>{when}</when></TimeStamp>"
    point = "<Point><coordinates>117.1228,36.7075</coordinates></Point>"
    return f"<Placemark><name>{name}</name>{stamp}{point}</Placemark>"


def test_kml_months_and_years_in_a_file_of_several_layers(tmp_path: Path) -> None:
    # Google Earth saves a survey as folders, even nested ones and two of one name; GDAL's libkml makes a
    # layer of each (and of the document, for its own placemarks), and reads 2023-05 as 2023-05-01 and
    # 2023 as nothing in every one of them.
    document = (
        '<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
        f"<name>普查</name>{_placemark('总1', '2021')}"
        f"<Folder><name>路灯</name>{_placemark('灯1', '2023-05')}{_placemark('灯2', '2023')}"
        f"<Folder><name>灯杆</name>{_placemark('杆1', '2019')}</Folder>"
        f"{_placemark('灯3', '2023-06-02')}{_placemark('灯4')}</Folder>"
        f"<Folder><name>路灯</name>{_placemark('灯5', '2018-11')}</Folder>"
        "</Document></kml>"
    )
    kml = tmp_path / "普查.kml"
    kml.write_text(document, encoding="utf-8")
    kmz = tmp_path / "普查.kmz"
    with zipfile.ZipFile(kmz, "w") as archive:
        archive.writestr("doc.kml", document)
    expected = {
        "普查": ["2021"],
        "路灯": ["2023-05", "2023", "2023-06-02", None],
        "灯杆": ["2019"],
        "路灯 (#2)": ["2018-11"],
    }
    for path in (kml, kmz):
        assert list_layers(path) == tuple(expected)
        for layer, whens in expected.items():
            info, read = read_layer(path, layer=layer, city_bbox=JINAN_BBOX)
            assert [None if pd.isna(v) else v for v in read["timestamp"]] == whens, (path.name, layer)
            assert info.warnings == ()

    # A file an XML parser refuses (a gx: element with no namespace declared), which libkml reads: its
    # months and years cannot be matched to a layer's features, and the import says so.
    broken = tmp_path / "断.kml"
    broken.write_text(
        document.replace(
            "<name>路灯</name>", "<name>路灯</name><gx:balloonVisibility>1</gx:balloonVisibility>", 1
        ),
        encoding="utf-8",
    )
    info, read = read_layer(broken, layer="路灯", city_bbox=JINAN_BBOX)
    assert [None if pd.isna(v) else v for v in read["timestamp"]] == ["2023-05-01", None, "2023-06-02", None]
    assert len(info.warnings) == 1 and "5 time(s) of a year or a month alone" in info.warnings[0]
    # With one layer, its placemarks are still found in order.
    single = tmp_path / "单.kml"
    single.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
        "<gx:balloonVisibility>1</gx:balloonVisibility>"
        f"{_placemark('甲 &amp; 乙', '2023')}{_placemark('丙', '2023-05')}"
        "</Document></kml>",
        encoding="utf-8",
    )
    info, read = read_layer(single, city_bbox=JINAN_BBOX)
    assert read["timestamp"].tolist() == ["2023", "2023-05"] and info.warnings == ()


def test_kml_data_with_chinese_names_keeps_them(tmp_path: Path) -> None:
    # Google Earth and most Chinese survey apps write untyped <Data name="..."> (GDAL writes SchemaData, so
    # this file is written as they write it). 状态 and 编号 have the same UTF-8 length: laundered to
    # underscores they were one field, and 编号 overwrote 状态.
    path = tmp_path / "路灯.kml"
    placemarks = "".join(
        f"""<Placemark><name>路灯{n}</name><ExtendedData>
        <Data name="标识码"><value>370102011800000{n}</value></Data>
        <Data name="状态"><value>{status}</value></Data>
        <Data name="编号"><value>00{n}</value></Data>
        </ExtendedData><Point><coordinates>117.1228,36.7075,35.5</coordinates></Point></Placemark>"""
        for n, status in ((1, "完好"), (2, "破损"))
    )
    path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
        f"{placemarks}</Document></kml>",
        encoding="utf-8",
    )

    _, read = read_layer(path, city_bbox=JINAN_BBOX)

    assert read[["标识码", "状态", "编号"]].values.tolist() == [
        ["3701020118000001", "完好", "001"],
        ["3701020118000002", "破损", "002"],
    ]


def test_filegdb(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(4)
    x, y = project(lon, lat, 4527)
    path = tmp_path / "城管.gdb"
    roads = gpd.GeoDataFrame(
        {"名称": ["经十路", "泉城路"]}, geometry=gpd.points_from_xy(x[:2], y[:2]), crs=4527
    )
    grids = gpd.GeoDataFrame({"名称": ["甲", "乙"]}, geometry=gpd.points_from_xy(x[2:], y[2:]), crs=4527)
    pyogrio.write_dataframe(roads, path, layer="roads", driver="OpenFileGDB")
    pyogrio.write_dataframe(grids, path, layer="grids", driver="OpenFileGDB")

    info, frame = read_layer(path, layer="grids", city_bbox=JINAN_BBOX)

    assert (info.format, info.layer, set(info.layers)) == ("OpenFileGDB", "grids", {"roads", "grids"})
    assert (info.crs, info.crs_from) == ("EPSG:4527", "file")
    assert frame["名称"].tolist() == ["甲", "乙"] and frame["source_row"].tolist() == [1, 2]
    np.testing.assert_allclose(coords_of(frame), np.column_stack([lon[2:], lat[2:]]), atol=1e-7)
    with pytest.raises(LayerError, match="holds 2 layers"):
        inspect_layer(path)

    # The folder's files zipped without the folder (zip -r ../城管.zip . inside it), at the zip's root or in
    # a folder of another name, are the same FileGDB.
    for inside in ("", "成果/"):
        zipped = tmp_path / f"城管{len(inside)}.zip"
        with zipfile.ZipFile(zipped, "w") as zf:
            for part in sorted(path.iterdir()):
                zf.write(part, f"{inside}{part.name}")
        info, frame = read_layer(zipped, layer="grids", city_bbox=JINAN_BBOX)
        assert (info.format, set(info.layers), frame["名称"].tolist()) == (
            "OpenFileGDB",
            {"roads", "grids"},
            ["甲", "乙"],
        )


# ------------------------------------------------------------------------------------------------- CSV


def test_gcj02_csv_in_gbk(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(5)
    glon, glat = wgs84_to_gcj02(lon, lat)
    lines = ["名称,经度,纬度"] + [
        f"公厕{i},{a:.10f},{b:.10f}" for i, (a, b) in enumerate(zip(glon, glat, strict=True))
    ]
    path = write_csv(tmp_path / "toilets.csv", "\r\n".join(lines) + "\r\n", "gbk")

    info, frame = read_layer(path, crs="gcj02", city_bbox=JINAN_BBOX)

    assert (info.format, info.crs, info.crs_from, info.encoding) == ("CSV", "gcj02", "override", "GB18030")
    assert info.fields == ("名称", "经度", "纬度") and info.feature_count == 5
    assert frame["名称"].tolist() == [f"公厕{i}" for i in range(5)]
    assert frame["source_row"].tolist() == [2, 3, 4, 5, 6]
    got = coords_of(frame)
    _, _, metres = GEOD.inv(got[:, 0], got[:, 1], lon, lat)
    assert np.max(metres) < 0.01


def test_csv_empty_or_bad_coordinate_becomes_nan_on_its_line(tmp_path: Path) -> None:
    text = (
        '\ufeffID,Lon,Lat,备注\n1,117.01,36.65,ok\n2,  ,36.66,"two\nlines"\n\n'
        "3,abc,36.67,\n4,117.04,36.68,ok\n"
    )
    path = write_csv(tmp_path / "bom.csv", text)

    info, frame = read_layer(path, crs="wgs84", city_bbox=JINAN_BBOX)

    assert (info.encoding, info.fields, info.feature_count) == ("UTF-8", ("ID", "Lon", "Lat", "备注"), 4)
    assert frame["ID"].tolist() == ["1", "2", "3", "4"]
    # Line 3 holds a value that spans two lines and line 5 is blank, so the rows start on 2, 3, 6 and 7.
    assert frame["source_row"].tolist() == [2, 3, 6, 7]
    xy = coords_of(frame)
    assert math.isnan(xy[1, 0]) and math.isnan(xy[2, 0])
    np.testing.assert_allclose(xy[[0, 3]], [[117.01, 36.65], [117.04, 36.68]], atol=1e-9)
    assert frame["Lon"].tolist() == ["117.01", "  ", "abc", "117.04"]
    # Text that is no number is said as written, with its column; an empty cell (or spaces) as missing.
    found = frame.attrs[io.UNCONVERTIBLE]
    assert sorted(found) == [3, 6]
    assert found[3] == ("", "Lon is missing: this row has no position; fill in the coordinate")
    (value, reason) = found[6]
    assert value == "abc" and reason.startswith("Lon abc is not a number: write the coordinate")


def test_csv_header_cells_blank_or_given_twice_name_their_columns_plainly(tmp_path: Path) -> None:
    """Excel ends rows with ",," for columns once used, and a header may name 备注 twice or leave a cell
    blank. pandas named them "Unnamed: 7" and "备注.1", stored as attributes without a word."""
    text = (
        "标识码,名称,备注,备注,,经度,纬度,,\r\n"
        "3701020118900301,甲,a,b,c,117.05,36.65,,\r\n"
        "3701020118900302,乙,a2,,,117.051,36.651,,\r\n"
    )
    path = write_csv(tmp_path / "excel.csv", text)

    info, frame = read_layer(path, crs="cgcs2000")

    assert info.fields == ("标识码", "名称", "备注", "备注_2", "column_5", "经度", "纬度")
    assert frame.drop(columns=["geometry", "source_row"]).to_dict("records") == [
        {
            "标识码": "3701020118900301",
            "名称": "甲",
            "备注": "a",
            "备注_2": "b",
            "column_5": "c",
            "经度": "117.05",
            "纬度": "36.65",
        },
        {
            "标识码": "3701020118900302",
            "名称": "乙",
            "备注": "a2",
            "备注_2": None,
            "column_5": None,
            "经度": "117.051",
            "纬度": "36.651",
        },
    ]
    assert info.warnings[1:] == (
        f"{path}: column_5 has no name in the header but values in some rows: kept as free attributes under"
        " that name (name the column in the header to name the attribute)",
        f"{path}: the header names a column twice: column 4 is '备注' again, kept as 备注_2 (rename it in"
        " the header to name the attribute)",
    )
    # Read in chunks, as an import reads it: the same columns, the empty ones left out again.
    chunks = list(iter_chunks(inspect_layer(path, crs="cgcs2000"), chunk_rows=1))
    assert [tuple(c.columns) for c in chunks] == [(*info.fields, "source_row", "geometry")] * 2


@pytest.mark.parametrize(
    "title",
    # As Excel writes a title cell over five columns; typed above the header by hand; quoted.
    ["济南市城市部件普查成果表,,,,", "济南市城市部件普查成果表", '"济南市城市部件普查成果表"'],
)
def test_a_csv_with_a_title_line_above_its_header_says_so(tmp_path: Path, title: str) -> None:
    text = f"{title}\n标识码,名称,状态,经度,纬度\n3701020118900301,甲,完好,117.05,36.65\n"
    path = write_csv(tmp_path / "成果表.csv", text)
    with pytest.raises(LayerError) as info:
        inspect_layer(path, crs="cgcs2000")
    assert str(info.value) == (
        f"{path}: line 1 holds only '济南市城市部件普查成果表', a title, not the column names: delete"
        " the lines above the header so that it comes first"
    )


def test_utf16_csv_from_excel(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "unicode.csv", "名称\tX坐标\tY坐标\n公厕\t117.02\t36.66\n", "utf-16")

    info, frame = read_layer(path, crs="cgcs2000")

    assert (info.encoding, info.fields, info.warnings) == ("UTF-16", ("名称", "X坐标", "Y坐标"), ())
    assert frame["名称"].tolist() == ["公厕"] and coords_of(frame).tolist() == [[117.02, 36.66]]


def test_a_csv_pieced_together_from_two_encodings_is_refused_naming_the_lines(tmp_path: Path) -> None:
    """20 rows saved as UTF-8 and one appended from a GBK file: read as GB18030 (the file is not all UTF-8)
    the 20 names came in garbled (路灯0 as 璺伅0) with no error. Refused, saying where each encoding is."""
    lines = ["code,name,lon,lat"] + [f"37010201187{i:05d},路灯{i},117.05,36.65" for i in range(20)]
    path = tmp_path / "拼接.csv"
    path.write_bytes(
        ("\r\n".join(lines) + "\r\n").encode("utf-8")
        + "3701020118799999,东路灯,117.05,36.65\r\n".encode("gbk")
    )
    with pytest.raises(LayerError) as info:
        inspect_layer(path, crs="cgcs2000")
    assert str(info.value) == (
        f"{path} is in two encodings: line 2 has Chinese text in UTF-8, but 1 line(s) are not UTF-8, the"
        " first line 22 (GBK?). Read in either encoding, the other lines would come in garbled: save the"
        " whole file in one encoding (Excel: 另存为 CSV UTF-8) and import it again"
    )
    assert info.value.field == "encoding"
    # Saved by Excel as "CSV UTF-8" (a byte-order mark), then a GBK row appended: the file says it is UTF-8,
    # so the refusal names the lines that are not, rather than a bare decode error.
    path.write_bytes(
        codecs.BOM_UTF8
        + ("\r\n".join(lines) + "\r\n").encode("utf-8")
        + "3701020118799999,东路灯,117.05,36.65\r\n".encode("gbk")
    )
    with pytest.raises(LayerError) as info:
        inspect_layer(path, crs="cgcs2000")
    assert str(info.value) == (
        f"{path} starts with UTF-8's byte-order mark (as Excel's CSV UTF-8 does), but 1 line(s) are not"
        " UTF-8, the first line 22 (GBK?): pieced together from two encodings? Read as UTF-8 those lines"
        " cannot be read, and as GBK the others would come in garbled: save the whole file in one encoding"
        " (Excel: 另存为 CSV UTF-8) and import it again"
    )
    assert info.value.field == "encoding"
    # A file all in GBK is still detected, and one the user says is GB18030 is read as told.
    path.write_bytes("\r\n".join(lines).encode("gbk"))
    assert inspect_layer(path, crs="cgcs2000").encoding == "GB18030"


@pytest.mark.parametrize("magic", [b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"])
def test_an_excel_workbook_named_csv_is_said_to_be_one(tmp_path: Path, magic: bytes) -> None:
    path = tmp_path / "普查表.csv"
    path.write_bytes(magic + bytes(range(256)) * 4)
    with pytest.raises(LayerError) as info:
        inspect_layer(path, crs="cgcs2000")
    assert str(info.value) == (
        f"{path} is an Excel workbook (or another binary file), not CSV text: open it in Excel and save it"
        " as CSV (文件 > 另存为 > CSV UTF-8)"
    )


def test_csv_metres_in_a_gauss_kruger_crs_across_chunks(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(7)
    x, y = project(lon, lat, 4527)
    lines = ["东坐标\t北坐标\t名称"] + [
        f"{a:.4f}\t{b:.4f}\t井盖{i}" for i, (a, b) in enumerate(zip(x, y, strict=True))
    ]
    path = write_csv(tmp_path / "covers.csv", "\n".join(lines) + "\n")
    info = inspect_layer(path, crs="EPSG:4527", city_bbox=JINAN_BBOX)

    chunks = list(iter_chunks(info, chunk_rows=3, city_bbox=JINAN_BBOX))

    assert [c["source_row"].tolist() for c in chunks] == [[2, 3, 4], [5, 6, 7], [8]]
    got = np.concatenate([coords_of(c) for c in chunks])
    np.testing.assert_allclose(got, np.column_stack([lon, lat]), atol=1e-8)


def test_csv_with_wkt_column(tmp_path: Path) -> None:
    text = 'name,WKT\na,"POINT (117.01 36.65)"\nb,not wkt\nc,"LINESTRING (117 36.6, 117.1 36.7)"\n'
    path = write_csv(tmp_path / "wkt.csv", text)

    info, frame = read_layer(path, crs="cgcs2000")

    assert info.fields == ("name",) and info.geometry_type == "Unknown"
    assert frame["source_row"].tolist() == [2, 3, 4]
    assert frame.geometry.iloc[0].equals(shapely.Point(117.01, 36.65)) and frame.geometry.iloc[1] is None


# ---------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.gpkg"
    with pytest.raises(LayerError, match="does not exist") as err:
        inspect_layer(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["empty.gpkg", "empty.geojson", "empty.csv", "empty.zip"])
def test_an_empty_file_is_said_to_be_empty(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(LayerError, match=r"is empty \(0 bytes\)") as err:
        inspect_layer(path, crs="EPSG:4490")
    assert "GDAL" not in str(err.value)


def test_truncated_gpkg(two_layer_gpkg: Path, tmp_path: Path) -> None:
    data = two_layer_gpkg.read_bytes()
    cut = tmp_path / "cut.gpkg"
    cut.write_bytes(data[: len(data) // 2])

    with pytest.raises(LayerError, match="truncated or corrupt") as err:
        inspect_layer(cut, layer="lamps")
    assert str(cut) in str(err.value)


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.docx"
    path.write_bytes(b"PK\x03\x04 not really a document")
    with pytest.raises(LayerError, match="not a file format gridsvc can read") as err:
        inspect_layer(path)
    assert str(path) in str(err.value)


def test_csv_with_a_line_of_too_many_fields_names_that_line(tmp_path: Path) -> None:
    path = tmp_path / "井盖.csv"
    lines = [f"3701020101000{i:03d},117.05,36.65" for i in range(1, 200)]
    lines[149] += ",多出来的,值"  # line 151 of the file, after the header
    path.write_text("标识码,经度,纬度\n" + "\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(LayerError, match="line 151 has 5 fields where the header has 3: fix that line"):
        read_layer(path, crs="EPSG:4490")
    # A quoted value that spans lines (a 12345 order's content, a remark) moves the lines after it down.
    lines[0] += ',"两行\n备注"'
    path.write_text("标识码,经度,纬度,备注\n" + "\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(LayerError, match="line 152 has 5 fields where the header has 4: fix that line"):
        read_layer(path, crs="EPSG:4490")


def test_csv_without_crs(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "points.csv", "lng,lat\n117.0,36.6\n")
    with pytest.raises(LayerError) as err:
        inspect_layer(path)
    assert str(err.value) == (
        f"{path} has no coordinate reference system: say which with --crs (e.g. --crs EPSG:4527, --crs gcj02)"
    )


def test_csv_without_coordinate_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "names.csv", "名称,地址,east\n公厕,经十路,117.0\n")
    with pytest.raises(LayerError, match="no coordinate columns") as err:
        inspect_layer(path, crs="wgs84")
    message = str(err.value)
    assert "名称, 地址, east" in message and "经度/纬度" in message and str(path) in message


def test_metres_labelled_as_degrees(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, 4527)
    path = tmp_path / "mislabelled.gpkg"
    pyogrio.write_dataframe(gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs="EPSG:4490"), path)

    with pytest.raises(LayerError, match="are metres, not degrees") as err:
        inspect_layer(path)
    message = str(err.value)
    assert f"({float(x[0])!r}, {float(y[0])!r})" in message
    assert "the file says cgcs2000" in message and "try --crs EPSG:4527" in message


def test_swapped_lon_lat(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(3)
    lines = ["lon,lat"] + [f"{b},{a}" for a, b in zip(lon, lat, strict=True)]
    path = write_csv(tmp_path / "swapped.csv", "\n".join(lines) + "\n")

    with pytest.raises(LayerError, match="swapped") as err:
        inspect_layer(path, crs="wgs84", city_bbox=JINAN_BBOX)
    assert "swap the columns" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("epsg", [4527, 4548])  # with the zone number in front, and without
def test_a_survey_table_with_the_northing_in_x(tmp_path: Path, epsg: int) -> None:
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, epsg)
    lines = ["X,Y"] + [f"{b:.3f},{a:.3f}" for a, b in zip(x, y, strict=True)]
    path = write_csv(tmp_path / "测量成果.csv", "\n".join(lines) + "\n")

    with pytest.raises(LayerError, match="the easting and the northing are swapped") as err:
        inspect_layer(path, crs=f"EPSG:{epsg}", city_bbox=JINAN_BBOX)
    assert "name the columns 东坐标 and 北坐标" in str(err.value)
    # Named as the hint says, the same numbers read.
    named = ["北坐标,东坐标", *lines[1:]]
    good = write_csv(tmp_path / "测量成果_改.csv", "\n".join(named) + "\n")
    assert inspect_layer(good, crs=f"EPSG:{epsg}", city_bbox=JINAN_BBOX).feature_count == 3


@pytest.mark.parametrize("epsg", [4527, 4548, 4528])  # the city's zone with and without its number; zone 40
def test_metres_under_a_degree_crs_are_sent_to_the_code_that_puts_them_in_the_city(
    tmp_path: Path, epsg: int
) -> None:
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, epsg)
    rows = "".join(f"{e:.3f},{n:.3f}\n" for e, n in zip(x, y, strict=True))
    path = write_csv(tmp_path / "坐标.csv", "东坐标,北坐标\n" + rows)
    with pytest.raises(LayerError, match="are metres, not degrees") as err:
        inspect_layer(path, crs="cgcs2000", city_bbox=JINAN_BBOX)
    assert str(err.value).endswith(f"try --crs EPSG:{epsg}")


@pytest.mark.parametrize("epsg", [4527, 4548])
def test_a_survey_table_with_the_northing_in_x_under_a_degree_crs_is_told_both_mistakes(
    tmp_path: Path, epsg: int
) -> None:
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, epsg)
    rows = "".join(f"{n:.3f},{e:.3f}\n" for e, n in zip(x, y, strict=True))
    path = write_csv(tmp_path / "测量成果.csv", "X,Y\n" + rows)
    with pytest.raises(LayerError, match="are metres, not degrees") as err:
        inspect_layer(path, crs="wgs84", city_bbox=JINAN_BBOX)
    message = str(err.value)
    assert "the easting and the northing are swapped" in message and "东坐标 and 北坐标" in message
    assert message.endswith(f"then try --crs EPSG:{epsg}")
    # Done as it says, the file reads.
    fixed = write_csv(tmp_path / "测量成果_改.csv", "北坐标,东坐标\n" + rows)
    assert inspect_layer(fixed, crs=f"EPSG:{epsg}", city_bbox=JINAN_BBOX).feature_count == 3


def test_a_table_with_degrees_and_metres_is_read_by_the_pair_its_crs_is_in(tmp_path: Path) -> None:
    # Survey tables often carry both: X/Y in the local Gauss-Kruger zone, 经度/纬度 in degrees. The 4527 X/Y
    # here are moved 1 km east, so which pair was read shows in the positions.
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, 4527)
    rows = "".join(
        f"{float(a)!r},{float(b)!r},{e + 1000:.3f},{n:.3f},路灯\n"
        for a, b, e, n in zip(lon, lat, x, y, strict=True)
    )
    path = write_csv(tmp_path / "两套坐标.csv", "经度,纬度,X,Y,名称\n" + rows)
    in_degrees, frame = read_layer(path, crs="cgcs2000", city_bbox=JINAN_BBOX)
    assert in_degrees.coordinate_fields == ("经度", "纬度")
    assert any(
        "read from its 经度/纬度 columns" in w and "X/Y columns are kept" in w for w in in_degrees.warnings
    )
    assert np.allclose(frame.geometry.x, lon, atol=1e-9) and {"X", "Y"} <= set(frame.columns)
    in_metres, frame = read_layer(path, crs="EPSG:4527", city_bbox=JINAN_BBOX)
    assert in_metres.coordinate_fields == ("X", "Y")
    assert not np.allclose(frame.geometry.x, lon, atol=1e-5) and {"经度", "纬度"} <= set(frame.columns)


def test_zone_prefix_under_epsg_4548(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, 4527)
    path = tmp_path / "prefixed.shp"
    pyogrio.write_dataframe(
        gpd.GeoDataFrame({"n": [1, 2, 3]}, geometry=gpd.points_from_xy(x, y), crs=4548), path
    )

    with pytest.raises(LayerError, match="zone prefix 39") as err:
        inspect_layer(path)
    message = str(err.value)
    assert "EPSG:4527" in message and "instead of EPSG:4548" in message and "row 1" in message
    assert "at index" not in message


def test_eastings_without_a_prefix_under_another_zone_are_sent_to_the_citys_code(tmp_path: Path) -> None:
    # CM 117°E eastings labelled zone 40: the same zone without the prefix (CM 120°E) is wrong too.
    lon, lat = jinan_lonlat(3)
    x, y = project(lon, lat, 4548)
    path = tmp_path / "坐标.csv"
    path.write_text(
        "东坐标,北坐标\n" + "".join(f"{e},{n}\n" for e, n in zip(x, y, strict=True)), encoding="utf-8"
    )
    with pytest.raises(LayerError, match="use EPSG:4549") as err:
        inspect_layer(path, crs="EPSG:4528", city_bbox=JINAN_BBOX)
    assert str(err.value).endswith(
        "fall inside the city as " + resolve_crs(4548).description + ": try --crs EPSG:4548"
    )
    with pytest.raises(LayerError, match="use EPSG:4548") as err:  # the right zone: its hint is enough
        inspect_layer(path, crs="EPSG:4527", city_bbox=JINAN_BBOX)
    assert "not the city's" not in str(err.value)


def test_whole_file_outside_the_city(tmp_path: Path) -> None:
    # CM 117E eastings labelled with the CM 120E code (EPSG:4549), a common mislabel: 3 degrees east.
    lon, lat = jinan_lonlat(4)
    x, y = project(lon, lat, 4548)
    path = tmp_path / "wrong_zone.gpkg"
    pyogrio.write_dataframe(gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs="EPSG:4549"), path)

    inspect_layer(path)  # without a city box nothing is wrong
    with pytest.raises(LayerError, match="4 of 4 coordinates") as err:
        inspect_layer(path, city_bbox=JINAN_BBOX)
    message = str(err.value)
    assert "outside the city" in message and "row 1" in message and "try --crs EPSG:4548" in message


def test_points_far_away_without_a_better_crs(tmp_path: Path) -> None:
    beijing = [("116.40", "39.90"), ("116.41", "39.91"), ("117.02", "36.66")]
    path = write_csv(tmp_path / "beijing.csv", "x,y\n" + "".join(f"{a},{b}\n" for a, b in beijing))

    with pytest.raises(LayerError, match="2 of 3 coordinates") as err:
        inspect_layer(path, crs="wgs84", city_bbox=JINAN_BBOX)
    assert "row 2: (116.4, 39.9)" in str(err.value) and "--crs says wgs84 is right" in str(err.value)
    # One point outside the city is the row validator's business, not a whole-file error.
    inspect_layer(
        write_csv(tmp_path / "one.csv", "x,y\n116.40,39.90\n117.02,36.66\n117.03,36.67\n"), crs="wgs84"
    )


def test_a_gcj02_row_outside_china_is_that_rows_problem(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "london.csv", "lon,lat\n117.02,36.66\n117.03,36.67\n-0.1276,51.5072\n")
    (chunk,) = iter_chunks(inspect_layer(path, crs="gcj02"))
    # The row is handed on without geometry, with why, for the importer to reject; the others convert.
    assert chunk.geometry.isna().tolist() == [False, False, True]
    value, reason = chunk.attrs[io.UNCONVERTIBLE][4]
    assert value == "(-0.1276, 51.5072)"
    assert "outside China" in reason and "cannot be converted from gcj02" in reason
    # When most rows cannot be converted, the CRS is wrong, not the rows: the file is refused.
    most = write_csv(tmp_path / "most.csv", "lon,lat\n117.02,36.66\n-0.1276,51.5072\n-0.13,51.51\n")
    with pytest.raises(LayerError, match="row 3") as err:
        inspect_layer(most, crs="gcj02")
    assert "outside China" in str(err.value) and str(most) in str(err.value)


def test_heights_are_dropped(tmp_path: Path) -> None:
    # KML read by LIBKML, and many survey exports, carry a height (often 0); positions are stored in 2D.
    lon, lat = jinan_lonlat(2)
    path = tmp_path / "3d.gpkg"
    pyogrio.write_dataframe(
        gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat, [0.0, 31.5]), crs=4490), path
    )
    (chunk,) = iter_chunks(inspect_layer(path))
    assert not chunk.geometry.has_z.any()
    assert chunk.geometry.x.tolist() == pytest.approx(list(lon))


def test_one_easting_without_its_zone_prefix_is_that_rows_problem(tmp_path: Path) -> None:
    lon, lat = jinan_lonlat(4)
    x, y = project(lon, lat, 4527)
    x[2] -= 39_000_000  # row 3 lost its zone prefix
    path = tmp_path / "one_unprefixed.gpkg"
    pyogrio.write_dataframe(gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=4527), path)
    (chunk,) = iter_chunks(inspect_layer(path, city_bbox=JINAN_BBOX), city_bbox=JINAN_BBOX)
    assert chunk.geometry.isna().tolist() == [False, False, True, False]
    assert "has no zone prefix" in chunk.attrs[io.UNCONVERTIBLE][3][1]


@pytest.mark.parametrize("epsg", [4548, 4527, 4490])
def test_one_row_with_its_x_and_y_swapped_is_said_to_be_swapped(tmp_path: Path, epsg: int) -> None:
    """Under EPSG:4548 a zone-39 row written northing first converts to 147.5°E 3.9°N, and was rejected as
    lying there, a place in no file; under 4527 it "cannot be converted". Either way: swapped, as written."""
    lon, lat = jinan_lonlat(4)
    x, y = (a.tolist() for a in (project(lon, lat, epsg) if epsg != 4490 else (lon, lat)))
    x[2], y[2] = y[2], x[2]  # row 4 (line 4 of the CSV) written the other way round
    lines = ["名称,X,Y"] + [f"灯{i},{a!r},{b!r}" for i, (a, b) in enumerate(zip(x, y, strict=True))]
    path = write_csv(tmp_path / "one_swapped.csv", "\n".join(lines) + "\n")
    (chunk,) = iter_chunks(
        inspect_layer(path, crs=f"EPSG:{epsg}", city_bbox=JINAN_BBOX), city_bbox=JINAN_BBOX
    )
    assert chunk.geometry.isna().tolist() == [False, False, True, False]
    value, reason = chunk.attrs[io.UNCONVERTIBLE][4]
    axes, name = (
        ("longitude and latitude", "cgcs2000") if epsg == 4490 else ("easting and northing", f"EPSG:{epsg}")
    )
    assert value == f"({x[2]!r}, {y[2]!r})"
    assert reason == (
        f"coordinate ({x[2]!r}, {y[2]!r}) in {name} is not in the city, but it is with x and y the other"
        f" way round, at lon/lat ({lon[2]:.6f}, {lat[2]:.6f}): this row has its {axes} the wrong way round;"
        " swap them back; a GeoPackage problems report (a CSV one keeps X and Y as written) has this row"
        " with x and y swapped back: check it there, then import the report again"
    )
    # That report's geometry: the row swapped back.
    assert chunk.attrs[io.REPORT_GEOMETRIES][4].equals_exact(shapely.Point(lon[2], lat[2]), 1e-7)


def test_unknown_crs_override(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "points.csv", "lng,lat\n117.0,36.6\n")
    with pytest.raises(LayerError, match="--crs mars"):
        inspect_layer(path, crs="mars")


def test_public_names() -> None:
    assert set(io.__all__) >= {
        "LayerError",
        "LayerInfo",
        "inspect_layer",
        "iter_chunks",
        "read_layer",
        "list_layers",
    }
    assert issubclass(LayerError, ValueError)
