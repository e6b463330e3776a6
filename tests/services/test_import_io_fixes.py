"""What a user sees importing files whose details the survey tools write but gis.io once misread: integer
fields with a null, a polygon that lost its zone prefix, GeoPackage fids, CSV cells left empty, a BOM."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.settings import Settings
from tests.services.test_imports import LAMP, _current, _grid_points, _run


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
