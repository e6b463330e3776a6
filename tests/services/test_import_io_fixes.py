"""What a user sees importing files whose details the survey tools write but gis.io once misread: integer
fields with a null, a polygon that lost its zone prefix, GeoPackage fids, CSV cells left empty, a BOM."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.errors import InvalidInputError
from gridsvc.services.access import LOCAL_OPERATOR
from gridsvc.services.imports import ImportRequest, import_layer
from gridsvc.settings import Settings
from tests.services.test_import_layers import _in_a_district_without_streets
from tests.services.test_imports import GREEN_BELT, LAMP, _count, _current, _grid_points, _run


def test_integer_fields_with_a_null_keep_every_digit(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # pyogrio hands an integer column with a null over as float64: 150.0, and 3701020118000123457 as
    # 3701020118000123400.
    points = _grid_points(demo_sessions, 3, offset=60)
    codes = [f"370102{LAMP}96{i:04d}" for i in range(1, 4)]
    census = gpd.GeoDataFrame(
        {
            "标识码": codes,
            "原系统编号": pd.array([3701020118000123457, None, 9007199254740993], dtype="Int64"),
            "灯头数": pd.array([150, None, 3], dtype="Int32"),
        },
        geometry=shapely.points(points["lon"], points["lat"]),
        crs="EPSG:4490",
    )
    path = tmp_path / "types.gpkg"
    census.to_file(path, layer="t")
    report = _run(demo_sessions, test_settings, path)
    assert (report.accepted, report.rejected) == (3, 0), report.problems
    attributes = _current(demo_sessions, codes)["attributes"].tolist()
    assert [a.get("原系统编号") for a in attributes] == [3701020118000123457, None, 9007199254740993]
    assert [a.get("灯头数") for a in attributes] == [150, None, 3]


def test_an_infinite_number_rejects_its_row_naming_the_field(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # It was stored as an empty attribute with no word: JSON has no infinity.
    points = _grid_points(demo_sessions, 4, offset=64)
    codes = [f"370102{LAMP}95{i:04d}" for i in range(1, 5)]
    census = gpd.GeoDataFrame(
        {"标识码": codes, "灯杆高度": [12.5, np.inf, -np.inf, np.nan]},
        geometry=shapely.points(points["lon"], points["lat"]),
        crs="EPSG:4490",
    )
    path = tmp_path / "高度.gpkg"
    census.to_file(path, layer="路灯")
    report = _run(demo_sessions, test_settings, path, report_path=tmp_path / "问题.gpkg")
    assert (report.accepted, report.rejected) == (2, 2)
    assert [(p.source_row, p.field, p.value) for p in report.problems] == [
        (2, "灯杆高度", "inf"),
        (3, "灯杆高度", "-inf"),
    ]
    assert report.problems[0].reason == (
        "灯杆高度 is inf, an infinite number, which no field can keep: write the value measured, or leave "
        "the field empty"
    )
    assert [a.get("灯杆高度") for a in _current(demo_sessions, codes)["attributes"]] == [12.5, None]
    written = gpd.read_file(tmp_path / "问题.gpkg")
    assert written["source_row"].tolist() == [2, 3] and written.geometry.notna().all()


def test_geojson_arrays_are_kept_as_json_arrays(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # GDAL reads them as string, integer and real lists; they were stored as numpy's printout "[101 102]".
    (lon, lat) = _grid_points(demo_sessions, 1, offset=66)[["lon", "lat"]].iloc[0]
    code = f"370102{LAMP}950001"
    feature = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {
            "OBJCODE": code,
            "照片文件": ["p1.jpg", "p2.jpg"],
            "杆号": [101, 102],
            "读数": [1.5, 2.25],
        },
    }
    path = tmp_path / "数组.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}, ensure_ascii=False))
    assert _run(demo_sessions, test_settings, path).accepted == 1
    (attributes,) = _current(demo_sessions, [code])["attributes"]
    assert (attributes["照片文件"], attributes["杆号"], attributes["读数"]) == (
        ["p1.jpg", "p2.jpg"],
        [101, 102],
        [1.5, 2.25],
    )
    assert _run(demo_sessions, test_settings, path, dry_run=True).unchanged == 1


def test_boolean_fields_with_a_null_stay_true_and_false(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # A GeoPackage BOOLEAN is an integer subtype to GDAL: pyogrio hands one with a null over as float64,
    # which the free attributes once kept as 1.0 and 0.0.
    points = _grid_points(demo_sessions, 3, offset=68)
    codes = [f"370102{LAMP}97{i:04d}" for i in range(1, 4)]
    census = gpd.GeoDataFrame(
        {
            "标识码": codes,
            "是否亮灯": pd.array([True, None, False], dtype="boolean"),
            "有编号牌": [True, False, True],
        },
        geometry=shapely.points(points["lon"], points["lat"]),
        crs="EPSG:4490",
    )
    path = tmp_path / "booleans.gpkg"
    census.to_file(path, layer="t")
    report = _run(demo_sessions, test_settings, path)
    assert (report.accepted, report.rejected) == (3, 0), report.problems
    attributes = _current(demo_sessions, codes)["attributes"].tolist()
    # As JSON: 1 == True in Python, and the column once came back as 1, null, 0.
    assert json.dumps([a.get("是否亮灯") for a in attributes]) == "[true, null, false]"
    assert json.dumps([a.get("有编号牌") for a in attributes]) == "[true, false, true]"


def _with_coded_value_domains(gpkg: Path, layer: str, domains: dict[str, dict[int, str]]) -> None:
    """Give fields of a GeoPackage layer coded-value domains (field -> {code: name}), as GDAL and ArcGIS
    write them: a gpkg_data_column_constraints enum per domain, named 域_FIELD."""
    with contextlib.closing(sqlite3.connect(gpkg)) as db, db:
        db.executescript(
            "CREATE TABLE gpkg_data_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL, name TEXT,"
            " title TEXT, description TEXT, mime_type TEXT, constraint_name TEXT,"
            " PRIMARY KEY (table_name, column_name));"
            "CREATE TABLE gpkg_data_column_constraints (constraint_name TEXT NOT NULL, constraint_type TEXT"
            " NOT NULL, value TEXT, min NUMERIC, min_is_inclusive BOOLEAN, max NUMERIC, max_is_inclusive"
            " BOOLEAN, description TEXT);"
        )
        for field, codes in domains.items():
            db.execute(
                "INSERT INTO gpkg_data_columns VALUES (?, ?, NULL, NULL, NULL, NULL, ?)",
                (layer, field, f"域_{field}"),
            )
            db.executemany(
                "INSERT INTO gpkg_data_column_constraints VALUES (?, 'enum', ?, NULL, NULL, NULL, NULL, ?)",
                [(f"域_{field}", str(code), name) for code, name in codes.items()],
            )


def test_codes_of_a_coded_value_domain_are_read_as_their_names(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # ArcGIS keeps 状态 as an integer with a coded-value domain (1 完好, 2 破损, ...) and shows the names;
    # read as the bare numbers, every row was rejected for an unknown status 1, 2 or 3.
    points = _grid_points(demo_sessions, 4, offset=72)
    codes = [f"370102{LAMP}98{i:04d}" for i in range(1, 5)]
    census = gpd.GeoDataFrame(
        {
            "标识码": codes,
            "状态": pd.array([1, 2, 3, 7], dtype="Int32"),  # ArcGIS integers are 32-bit
            "灯型": pd.array([1, None, 2, 1], dtype="Int32"),
        },
        geometry=shapely.points(points["lon"], points["lat"]),
        crs="EPSG:4490",
    )
    gpkg = tmp_path / "有域.gpkg"
    census.to_file(gpkg, layer="路灯")
    _with_coded_value_domains(
        gpkg, "路灯", {"状态": {1: "完好", 2: "破损", 3: "丢失"}, "灯型": {1: "LED", 2: "高压钠灯"}}
    )
    # ogr2ogr carries the domains over to the FileGDB, into its GDB_Items, as ArcGIS keeps them.
    gdb = tmp_path / "有域.gdb"
    subprocess.run(["ogr2ogr", "-f", "OpenFileGDB", str(gdb), str(gpkg)], check=True, capture_output=True)
    for path, dry_run in ((gdb, True), (gpkg, False)):
        report = _run(demo_sessions, test_settings, path, dry_run=dry_run)
        assert (report.accepted, report.rejected) == (3, 1), report.problems
        # A code the domain does not list stays as it is, and is refused as such.
        assert [(p.source_row, p.field, p.value) for p in report.problems] == [(4, "status", "7")]
        assert [w for w in report.warnings if "coded-value domain" in w] == [
            f"{path} (layer 路灯): field 状态 holds the codes of its coded-value domain 域_状态 (1 完好,"
            " 2 破损, 3 丢失); they are read as their names, as ArcGIS and QGIS show them",
            f"{path} (layer 路灯): field 灯型 holds the codes of its coded-value domain 域_灯型 (1 LED,"
            " 2 高压钠灯); they are read as their names, as ArcGIS and QGIS show them",
        ]
    stored = _current(demo_sessions, codes[:3])
    assert stored["status"].tolist() == ["intact", "damaged", "missing"]
    assert [a.get("灯型") for a in stored["attributes"]] == ["LED", None, "高压钠灯"]


def test_an_integer64_code_column_with_a_null_keeps_its_17_digit_codes(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # A CJ/T 214 OBJCODE typed Integer64: one null row once made every code "3.7010203092e+16", rejected
    # as not digits and all "duplicates" of one another. Now each is read as written: the demo city has no
    # 5-digit class 03092, and that is all the report says about them.
    points = _grid_points(demo_sessions, 4, offset=64)
    codes = [37010203092000001, None, 37010203092000003, 37010203092000004]
    census = gpd.GeoDataFrame(
        {"OBJCODE": pd.array(codes, dtype="Int64"), "状态": ["完好"] * 4},
        geometry=shapely.points(points["lon"], points["lat"]),
        crs="EPSG:4490",
    )
    path = tmp_path / "objcode.gpkg"
    census.to_file(path, layer="部件")
    report = _run(demo_sessions, test_settings, path)
    assert (report.accepted, report.rejected) == (0, 4)
    by_row = {(p.source_row, p.field): p.value for p in report.problems}
    assert by_row == {
        (1, "class_code"): "03092",
        (2, "code"): None,
        (3, "class_code"): "03092",
        (4, "class_code"): "03092",
    }


def _lost_zone_prefix(geometry: shapely.Geometry) -> shapely.Geometry:
    """A zone 39 (EPSG:4527) geometry whose eastings lost their zone prefix 39."""
    return shapely.transform(geometry, lambda c: c - [39_000_000, 0])


def test_a_polygon_that_lost_its_zone_prefix_is_rejected_alone(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # Its vertices cannot be converted; they once became NaN, and GEOS failed the whole import with
    # "Points of LinearRing do not form a closed linestring".
    points = _grid_points(demo_sessions, 4, offset=70)
    belts = gpd.GeoDataFrame(
        {
            "标识码": [f"370102{GREEN_BELT}97{i:04d}" for i in range(1, 5)],
            "名称": list("ABCD"),
            "状态": ["完好"] * 4,
        },
        geometry=[
            shapely.box(x, y, x + 1e-4, y + 5e-5) for x, y in zip(points["lon"], points["lat"], strict=True)
        ],
        crs="EPSG:4490",
    ).to_crs("EPSG:4527")
    drawn = belts.to_crs("EPSG:4490").geometry[2]
    belts.loc[2, "geometry"] = _lost_zone_prefix(belts.geometry[2])  # row 3
    belts.loc[3, "geometry"] = shapely.MultiPolygon([belts.geometry[3]])  # row 4: a multipolygon, fine
    path = tmp_path / "绿化带_混.gpkg"
    belts.to_file(path, layer="绿化带")
    before = _count(demo_sessions)
    report = _run(demo_sessions, test_settings, path, report_path=tmp_path / "问题.gpkg")
    assert (report.accepted, report.rejected) == (3, 1)
    (problem,) = report.problems
    assert (problem.source_row, problem.field, problem.action) == (3, "geometry", "rejected")
    assert "cannot be converted from EPSG:4527" in problem.reason and "no zone prefix" in problem.reason
    assert problem.reason.startswith("vertex 1 of 5: ") and ", nor can 4 other vertices;" in problem.reason
    assert _count(demo_sessions) == before + 3
    # The report draws the polygon with its prefix put back, for staff to check, not to draw again.
    (written,) = gpd.read_file(tmp_path / "问题.gpkg").geometry
    assert shapely.hausdorff_distance(written, drawn) < 1e-8  # ~1 mm


FENCE = "0290"  # 道路护栏, a line class


def _vertex_changed(
    line: shapely.Geometry, index: int, change: Callable[[np.ndarray], np.ndarray]
) -> shapely.Geometry:
    coords = shapely.get_coordinates(line)
    coords[index] = change(coords[index])
    return shapely.LineString(coords)


@pytest.mark.parametrize("epsg", [4527, 4490])
def test_a_line_rejected_for_its_coordinates_is_in_the_report_put_right_where_the_mistake_is_plain(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, epsg: int
) -> None:
    # Once the report had no geometry for such a row and its value held one vertex: staff drew it again.
    points = _grid_points(demo_sessions, 5, offset=90 + epsg % 7)
    codes = [f"370102{FENCE}9{epsg % 10}{i:04d}" for i in range(1, 6)]
    drawn = [
        shapely.LineString([(x, y), (x + 2e-4, y + 1e-4), (x + 4e-4, y)])
        for x, y in zip(points["lon"], points["lat"], strict=True)
    ]
    fences = gpd.GeoDataFrame(
        {"标识码": codes, "名称": [f"护栏{i}" for i in range(1, 6)], "状态": ["完好"] * 5},
        geometry=drawn,
        crs="EPSG:4490",
    ).to_crs(f"EPSG:{epsg}")
    if epsg == 4527:
        fences.loc[1, "geometry"] = _vertex_changed(fences.geometry[1], 1, lambda c: c - [39_000_000, 0])
    fences.loc[2, "geometry"] = shapely.LineString(shapely.get_coordinates(fences.geometry[2])[:, ::-1])
    fences.loc[3, "geometry"] = _vertex_changed(fences.geometry[3], 2, lambda c: c + 1e12)
    as_written = fences.geometry.copy()
    path = tmp_path / "护栏.gpkg"
    fences.to_file(path, layer="护栏")
    report_file = tmp_path / "问题.gpkg"
    before = _count(demo_sessions)

    report = _run(demo_sessions, test_settings, path, report_path=report_file)

    bad_rows = [2, 3, 4] if epsg == 4527 else [3, 4]
    assert (report.accepted, report.rejected) == (5 - len(bad_rows), len(bad_rows)), report.problems
    assert _count(demo_sessions) == before + 5 - len(bad_rows)
    problems = {p.source_row: p for p in report.problems}
    assert sorted(problems) == bad_rows
    assert {p.field for p in problems.values()} == {"geometry"}
    if epsg == 4527:
        assert problems[2].reason.startswith("vertex 2 of 3: coordinate (") and "has no zone prefix" in (
            problems[2].reason
        )
        assert problems[2].reason.endswith(
            "the problems report has this row with the zone prefix put right: check it there, then import "
            "the report again"
        )
    assert problems[3].reason.startswith("vertex 1 of 3: coordinate (")
    assert "the wrong way round; swap them back; the problems report has this row with x and y swapped " in (
        problems[3].reason
    )
    # A vertex nothing places: the report cannot draw the row, so the value is the whole line as written.
    assert problems[4].reason.startswith("vertex 3 of 3: coordinate (")
    assert problems[4].reason.endswith(f"its value is the row's geometry as written, in {report.crs}")
    assert shapely.equals_exact(shapely.from_wkt(problems[4].value), as_written[3], tolerance=1e-6)

    written = gpd.read_file(report_file).set_index("source_row")
    assert written.crs.to_epsg() == 4490
    for row in bad_rows[:-1]:
        assert shapely.equals_exact(written.geometry[row], drawn[row - 1], tolerance=1e-8), row  # ~1 mm
    assert written.geometry[4] is None

    # GIS staff check the rows put right, draw the last vertex of row 4 again, and import the report.
    written = written.reset_index()
    written.loc[written["source_row"] == 4, "geometry"] = drawn[3]
    written.to_file(report_file, layer="problems")
    again = _run(demo_sessions, test_settings, report_file)
    assert (again.accepted, again.rejected) == (len(bad_rows), 0), again.problems
    with demo_sessions() as session:
        stored = dict(
            session.execute(
                text("SELECT code, ST_AsText(geom) FROM component WHERE valid_to IS NULL AND code = ANY(:c)"),
                {"c": codes},
            ).all()
        )
    assert sorted(stored) == codes
    for code, line in zip(codes, drawn, strict=True):
        assert shapely.hausdorff_distance(shapely.from_wkt(stored[code]), line) < 1e-8, code


def test_a_boundary_multipolygon_that_lost_its_zone_prefix_is_rejected_alone(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    centre = _in_a_district_without_streets(demo_sessions, test_settings, tmp_path)
    square = shapely.MultiPolygon([shapely.box(centre.x - 0.002, centre.y - 0.002, centre.x, centre.y)])
    streets = gpd.GeoDataFrame(
        {"区划代码": ["370103097", "370103098"], "名称": ["甲街道", "乙街道"]},
        geometry=[square, square],
        crs="EPSG:4490",
    ).to_crs("EPSG:4527")
    streets.loc[1, "geometry"] = _lost_zone_prefix(streets.geometry[1])
    path = tmp_path / "街道.gpkg"
    streets.to_file(path)
    request = ImportRequest(path=path, layer="boundaries", level="street")
    report = import_layer(demo_sessions, request, settings=test_settings, actor=LOCAL_OPERATOR)
    assert (report.new, report.rejected) == (1, 1)
    (problem,) = report.problems
    assert (problem.source_row, problem.field, problem.action) == (2, "geometry", "rejected")
    assert "cannot be converted from EPSG:4527" in problem.reason and "no zone prefix" in problem.reason


def test_a_geopackage_with_deleted_rows_reports_them_by_fid_and_its_report_imports_again(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # Rows deleted in QGIS (or ogr2ogr -preserve_fid) leave the fids 3, 7, 9, 12: QGIS shows those, so
    # the report says them, not the positions 1..4.
    points = _grid_points(demo_sessions, 4, offset=80)
    codes = [f"370102{LAMP}98{i:04d}" for i in range(1, 5)]
    codes[3] = codes[1]  # fids 7 and 12: one code twice
    census = gpd.GeoDataFrame(
        {"fid": [3, 7, 9, 12], "标识码": codes, "状态": ["完好", "完好", "坏了", "完好"]},
        geometry=shapely.points(points["lon"], points["lat"]),
        crs="EPSG:4490",
    )
    path = tmp_path / "删过.gpkg"
    census.to_file(path, layer="路灯")
    report_file = tmp_path / "问题.gpkg"
    report = _run(demo_sessions, test_settings, path, report_path=report_file)
    assert (report.accepted, report.rejected) == (1, 3)
    reasons = {(p.source_row, p.field): p.reason for p in report.problems}
    assert set(reasons) == {(7, "code"), (9, "status"), (12, "code")}
    assert "also used by row 12 of this file" in reasons[7, "code"]
    assert "also used by row 7 of this file" in reasons[12, "code"]
    written = gpd.read_file(report_file)
    assert written["source_row"].tolist() == [7, 9, 12]

    # GIS staff correct the report in place and import it as it is.
    written["status"] = "完好"
    written.loc[written["source_row"] == 12, "code"] = f"370102{LAMP}980004"
    written.to_file(report_file, layer="problems")
    again = _run(demo_sessions, test_settings, report_file)
    assert (again.accepted, again.rejected) == (3, 0), again.problems
    assert _current(demo_sessions, [*codes[:3], f"370102{LAMP}980004"])["status"].tolist() == ["intact"] * 4


def _lamp_table(sessions: sessionmaker[Session], n: int, offset: int, first_seq: int) -> pd.DataFrame:
    """A lamp census as a CSV table with 经度/纬度 columns, in EPSG:4490."""
    points = _grid_points(sessions, n, offset=offset)
    return pd.DataFrame(
        {
            "标识码": [f"370102{LAMP}{first_seq + i:06d}" for i in range(n)],
            "状态": ["完好"] * n,
            "经度": [repr(x) for x in points["lon"]],
            "纬度": [repr(y) for y in points["lat"]],
        }
    )


def test_a_csv_row_with_an_empty_coordinate_cell_says_which_column_is_missing(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    table = _lamp_table(demo_sessions, 4, offset=90, first_seq=990_001)
    table.loc[1, "纬度"] = ""  # line 3
    table.loc[2, "纬度"] = "   "  # line 4: spaces are empty too
    table.loc[3, ["经度", "纬度"]] = ""  # line 5
    path = tmp_path / "井盖.csv"
    table.to_csv(path, index=False, encoding="utf-8-sig")
    report = _run(demo_sessions, test_settings, path, crs="EPSG:4490")
    assert (report.accepted, report.rejected) == (1, 3)
    assert [(p.source_row, p.field, p.action) for p in report.problems] == [
        (3, "geometry", "rejected"),
        (4, "geometry", "rejected"),
        (5, "geometry", "rejected"),
    ]
    reasons = [p.reason for p in report.problems]
    assert reasons[0] == reasons[1] == "纬度 is missing: this row has no position; fill in the coordinate"
    assert reasons[2] == "经度 and 纬度 are missing: this row has no position; fill in the coordinate"


@pytest.mark.parametrize("layer", ["components", "stations"])
def test_a_duplicated_code_rejects_every_copy_also_when_one_has_no_position(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, layer: str
) -> None:
    # The copy without a position was rejected before the duplicate check saw its code, so the other
    # copy was imported alone, and the corrected report later overwrote it.
    table = _lamp_table(demo_sessions, 3, offset=98, first_seq=998_001)
    if layer == "stations":
        with demo_sessions() as session:
            community = session.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar_one()
        table = table.rename(columns={"标识码": "编码"}).drop(columns="状态")
        table["名称"], table["社区代码"] = ["丙站", "丁站", "戊站"], community
    code = table.iloc[0, 0]
    table.iloc[1, 0] = code  # line 3 uses line 2's code
    table.loc[0, "经度"] = ""  # line 2 has no position
    path = tmp_path / "重复.csv"
    table.to_csv(path, index=False, encoding="utf-8-sig")
    what = "code" if layer == "components" else "station code"

    request = ImportRequest(path=path, crs="EPSG:4490", layer=layer, dry_run=True)  # type: ignore[arg-type]
    report = import_layer(demo_sessions, request, settings=test_settings, actor=LOCAL_OPERATOR)

    assert report.rejected == 2, report.problems
    assert [(p.source_row, p.field) for p in report.problems] == [(2, "code"), (2, "geometry"), (3, "code")]
    assert report.problems[0].reason == (
        f"{what} {code} is also used by row 3 of this file; every row with a duplicated code is rejected"
    )
    assert report.problems[2].reason == (
        f"{what} {code} is also used by row 2 of this file; every row with a duplicated code is rejected"
    )


def test_a_corrected_report_of_a_file_with_two_code_fields_reads_the_one_the_import_read(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # The report writes the field read as the code as `code`, and OBJCODE beside it; OBJCODE once came
    # first again, and the corrected row became a new version of another lamp.
    table = _lamp_table(demo_sessions, 2, offset=100, first_seq=999_101)
    other = f"370102{LAMP}999109"
    table.insert(1, "OBJCODE", [other, other])
    table.loc[1, "状态"] = "坏了"  # line 3
    path = tmp_path / "两个编码.csv"
    table.to_csv(path, index=False, encoding="utf-8-sig")
    first = _run(demo_sessions, test_settings, path, crs="EPSG:4490", report_path=tmp_path / "问题.csv")
    assert (first.accepted, first.rejected) == (1, 1)
    corrected = pd.read_csv(tmp_path / "问题.csv", dtype=str, encoding="utf-8-sig")
    assert corrected[["code", "OBJCODE"]].values.tolist() == [[table.loc[1, "标识码"], other]]
    corrected["status"] = "破损"
    corrected.to_csv(tmp_path / "问题.csv", index=False, encoding="utf-8-sig")

    again = _run(demo_sessions, test_settings, tmp_path / "问题.csv", crs="EPSG:4490")

    assert (again.new, again.changed, again.rejected) == (1, 0, 0), again.problems
    stored = _current(demo_sessions, [*table["标识码"], other])
    assert stored["code"].tolist() == table["标识码"].tolist()
    assert stored["status"].tolist() == ["intact", "damaged"]
    assert [a.get("OBJCODE") for a in stored["attributes"]] == [other, other]


def test_a_field_named_as_a_standard_field_is_read_as_it_and_its_alias_kept(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # 备注 (an alias of remarks) and remarks both wrote the remarks: one of the two was lost.
    table = _lamp_table(demo_sessions, 1, offset=102, first_seq=999_201)
    table["备注"], table["remarks"] = "现场备注", "contractor note"
    path = tmp_path / "备注.csv"
    table.to_csv(path, index=False, encoding="utf-8-sig")
    report = _run(demo_sessions, test_settings, path, crs="EPSG:4490")
    assert report.accepted == 1
    assert any("the remarks is read from its remarks field; 备注 is named as" in w for w in report.warnings)
    (attributes,) = _current(demo_sessions, table["标识码"].tolist())["attributes"]
    assert (attributes.get("remarks"), attributes.get("备注")) == ("contractor note", "现场备注")


@pytest.mark.parametrize(
    ("report_name", "said"),
    [
        ("没有的文件夹/问题.gpkg", "the folder {folder} does not exist; create it first"),
        ("问题.txt", "a report is a .gpkg or a .csv file"),
    ],
)
def test_a_report_that_cannot_be_written_refuses_the_import_before_it_starts(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, report_name: str, said: str
) -> None:
    # Written after the commit, it failed with a traceback an import that had been committed.
    table = _lamp_table(demo_sessions, 1, offset=104, first_seq=999_301)
    path = tmp_path / "路灯.csv"
    table.to_csv(path, index=False, encoding="utf-8-sig")
    report_path = tmp_path / report_name
    before = _count(demo_sessions, "SELECT count(*) FROM survey_batch")
    with pytest.raises(InvalidInputError) as refused:
        _run(demo_sessions, test_settings, path, crs="EPSG:4490", report_path=report_path)
    assert [(p.field, p.message) for p in refused.value.problems] == [
        ("report", f"{report_path}: {said.format(folder=report_path.parent)}")
    ]
    assert _count(demo_sessions, "SELECT count(*) FROM survey_batch") == before


def test_a_csv_with_a_utf8_byte_order_mark_is_not_said_to_have_a_guessed_encoding(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    table = _lamp_table(demo_sessions, 2, offset=95, first_seq=995_001)
    table.to_csv(tmp_path / "excel.csv", index=False, encoding="utf-8-sig")  # Excel's "CSV UTF-8"
    table.to_csv(tmp_path / "plain.csv", index=False, encoding="utf-8")
    with_bom = _run(demo_sessions, test_settings, tmp_path / "excel.csv", crs="EPSG:4490", dry_run=True)
    assert with_bom.accepted == 2
    assert not [w for w in with_bom.warnings if "encoding" in w], with_bom.warnings
    without = _run(demo_sessions, test_settings, tmp_path / "plain.csv", crs="EPSG:4490", dry_run=True)
    assert any("a CSV file does not say its encoding" in w for w in without.warnings)
