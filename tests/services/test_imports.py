"""Importing component censuses from real files of every format GIS staff have, into the demo city."""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import geopandas as gpd
import httpx
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from gis.crs import wgs84_to_gcj02
from gridsvc.api.app import create_app
from gridsvc.errors import InvalidInputError
from gridsvc.repositories import bulk
from gridsvc.repositories import imports as imports_repo
from gridsvc.repositories import plans as plans_repo
from gridsvc.services import import_jobs
from gridsvc.services import imports as imports_service
from gridsvc.services.access import LOCAL_OPERATOR, Principal, create_key
from gridsvc.services.imports import ImportReport, ImportRequest, import_components
from gridsvc.settings import Settings
from tests.conftest import NEUTRAL_CWD, served_gridsvc

LAMP = "0118"
GREEN_BELT = "0490"


def _grid_points(sessions: sessionmaker[Session], n: int, offset: int = 0) -> pd.DataFrame:
    """n points well inside distinct unit grids of the demo's 历下区, with the grid that owns each."""
    with sessions() as session:
        rows = session.execute(
            text(
                "SELECT code, ST_X(p) AS lon, ST_Y(p) AS lat FROM ("
                " SELECT code, ST_PointOnSurface(geom) AS p FROM unit_grid"
                " WHERE ST_Area(ST_Transform(geom, 4548)) > 5000 ORDER BY code OFFSET :o LIMIT :n) x"
            ),
            {"n": n, "o": offset},
        ).all()
    return pd.DataFrame(rows, columns=["unit_grid_code", "lon", "lat"])


def _lamps(points: pd.DataFrame, first_seq: int = 900_001, class_code: str = LAMP) -> gpd.GeoDataFrame:
    """A lamp census as survey contractors deliver it: Chinese field names, one unknown field."""
    n = len(points)
    return gpd.GeoDataFrame(
        {
            "标识码": [f"370102{class_code}{first_seq + i:06d}" for i in range(n)],
            "名称": [f"经十路路灯{i + 1}号" for i in range(n)],
            "主管部门": ["照明"] * n,
            "养护单位": ["济南市路灯养护中心"] * n,
            "状态": ["完好"] * n,
            "灯杆高度": np.full(n, 12.5),
        },
        geometry=shapely.points(points["lon"], points["lat"]),
        crs="EPSG:4490",
    )


def _run(
    sessions: sessionmaker[Session],
    settings: Settings,
    path: Path,
    actor: Principal = LOCAL_OPERATOR,
    **kwargs: object,
) -> ImportReport:
    return import_components(sessions, ImportRequest(path=path, **kwargs), settings=settings, actor=actor)  # type: ignore[arg-type]


def _current(sessions: sessionmaker[Session], codes: list[str]) -> pd.DataFrame:
    with sessions() as session:
        rows = session.execute(
            text(
                "SELECT c.code, c.name, c.status, c.owner_department_code, c.attributes,"
                " u.code AS unit_grid_code,"
                " r.code AS responsibility_grid_code, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat"
                " FROM component c LEFT JOIN unit_grid u ON u.id = c.unit_grid_id"
                " LEFT JOIN responsibility_grid r ON r.id = c.responsibility_grid_id"
                " WHERE c.valid_to IS NULL AND c.code = ANY(:codes) ORDER BY c.code"
            ),
            {"codes": codes},
        ).mappings()
        return pd.DataFrame([dict(r) for r in rows])


def _count(sessions: sessionmaker[Session], sql: str = "SELECT count(*) FROM component") -> int:
    with sessions() as session:
        return int(session.execute(text(sql)).scalar_one())


def _metres_apart(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray) -> np.ndarray:
    from pyproj import Geod

    return np.asarray(Geod(ellps="GRS80").inv(lon1, lat1, lon2, lat2)[2])


def _check_imported(
    sessions: sessionmaker[Session], lamps: gpd.GeoDataFrame, points: pd.DataFrame, report: ImportReport
) -> None:
    assert (report.rows_read, report.accepted, report.rejected, report.new) == (len(lamps),) * 2 + (
        0,
        len(lamps),
    )
    assert report.assigned_to_grid == len(lamps)
    got = _current(sessions, list(lamps["标识码"]))
    assert list(got["code"]) == sorted(lamps["标识码"])
    assert list(got["unit_grid_code"]) == list(points["unit_grid_code"])
    assert got["responsibility_grid_code"].notna().all()
    assert set(got["owner_department_code"]) == {"lighting"}  # 主管部门 照明 is the lighting department
    assert set(got["status"]) == {"intact"}  # 完好
    # An unknown field is kept, not dropped (as text from a CSV; a UTF-8 .dbf cuts its name to 10 bytes).
    height = next(v for k, v in got["attributes"].iloc[0].items() if k.startswith("灯杆高"))
    assert float(height) == 12.5
    assert got["attributes"].iloc[0]["maintainer"] == "济南市路灯养护中心"  # not a department: kept as text
    assert got["name"].iloc[0].startswith("经十路路灯")
    assert _metres_apart(got["lon"], got["lat"], points["lon"], points["lat"]).max() < 1.0


# --- every format ----------------------------------------------------------------------------------


def test_geopackage_layer_by_name(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 40)
    lamps = _lamps(points)
    path = tmp_path / "普查.gpkg"
    lamps.to_file(path, layer="路灯", driver="GPKG")
    lamps.head(3).to_file(path, layer="other", driver="GPKG")
    report = _run(demo_sessions, test_settings, path, source_layer="路灯")
    _check_imported(demo_sessions, lamps, points, report)
    assert report.format == "GPKG" and report.source_layer == "路灯"
    with demo_sessions() as session:
        batch = session.execute(
            text("SELECT source_file, checksum_sha256, imported_by, counts FROM survey_batch WHERE id = :id"),
            {"id": report.batch_id},
        ).one()
    assert batch.source_file == "普查.gpkg" and len(batch.checksum_sha256) == 64
    assert batch.imported_by == "cli" and batch.counts["new"] == 40


def test_gbk_shapefile_in_gauss_kruger_zone_39(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 30)
    lamps = _lamps(points)
    shp = tmp_path / "lamps" / "路灯.shp"
    shp.parent.mkdir()
    lamps.to_crs("EPSG:4527").to_file(shp, encoding="GBK")
    shp.with_suffix(".cpg").unlink(missing_ok=True)  # as old desktop GIS leaves it: no .cpg, GBK text
    report = _run(demo_sessions, test_settings, shp.parent)
    _check_imported(demo_sessions, lamps, points, report)
    assert report.crs == "EPSG:4527" and report.encoding and report.encoding.upper() in ("GB18030", "GBK")


def test_zipped_shapefile(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 10)
    lamps = _lamps(points)
    shp = tmp_path / "路灯.shp"
    lamps.to_file(shp, encoding="UTF-8")
    archive = tmp_path / "路灯.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for part in tmp_path.glob("路灯.*"):
            if part.suffix != ".zip":
                zipped.write(part, part.name)
    _check_imported(demo_sessions, lamps, points, _run(demo_sessions, test_settings, archive))


def test_gcj02_csv_with_chinese_coordinate_columns(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 25)
    lamps = _lamps(points)
    gcj_lon, gcj_lat = wgs84_to_gcj02(points["lon"].to_numpy(), points["lat"].to_numpy())
    table = pd.DataFrame(lamps.drop(columns="geometry")).assign(经度=gcj_lon, 纬度=gcj_lat)
    path = tmp_path / "路灯.csv"
    table.to_csv(path, index=False, encoding="utf-8-sig")
    with pytest.raises(InvalidInputError, match="--crs"):
        _run(demo_sessions, test_settings, path)  # a CSV carries no CRS: refuse to guess
    _check_imported(demo_sessions, lamps, points, _run(demo_sessions, test_settings, path, crs="gcj02"))


def test_a_kml_brings_its_placemark_data_not_how_google_earth_draws_it(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """The lamps of a GeoPackage census surveyed again as KML are unchanged: GDAL's KML fields for drawing
    (tessellate, extrude, visibility, ...), its placemark ids and the placemark elements no placemark has
    are not attributes; a description that placemarks have is."""
    points = _grid_points(demo_sessions, 3, offset=70)
    lamps = _lamps(points, first_seq=970_001).drop(columns="灯杆高度")  # KML text has no number type
    lamps.to_file(tmp_path / "普查.gpkg", driver="GPKG")
    assert _run(demo_sessions, test_settings, tmp_path / "普查.gpkg").new == 3
    lamps.to_crs("EPSG:4326").to_file(tmp_path / "复查.kml", driver="KML")
    report = _run(demo_sessions, test_settings, tmp_path / "复查.kml")
    assert (report.accepted, report.unchanged, report.changed) == (3, 3, 0)

    described = lamps.assign(Description=["杆体倾斜", None, None]).to_crs("EPSG:4326")
    described.to_file(tmp_path / "复查.kml", driver="KML")
    report = _run(demo_sessions, test_settings, tmp_path / "复查.kml")
    # The file now has a description field, null where a placemark has none: as a new column filled in
    # on one row would, it changes that row only (a null is no value, as a field not there is).
    assert (report.unchanged, report.changed) == (2, 1)
    got = _current(demo_sessions, list(lamps["标识码"]))
    assert got["attributes"].iloc[0] == {"description": "杆体倾斜", "maintainer": "济南市路灯养护中心"}
    assert got["attributes"].iloc[1] == {"maintainer": "济南市路灯养护中心"}


def test_a_csv_position_is_its_geometry_not_an_attribute_but_a_broken_one_is_reported_as_written(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """A census loaded from a GeoPackage and surveyed again as a CSV is unchanged: the coordinate columns
    made the position and are not kept as attributes too. A coordinate that is not a number stays in the
    report as written, is fixed there, and the report imports by it."""
    points = _grid_points(demo_sessions, 3, offset=60)
    # Text attributes only: a CSV has no types, so a number from a GeoPackage would differ as text.
    lamps = _lamps(points, first_seq=960_001).drop(columns="灯杆高度").assign(灯型="LED")
    lamps.to_file(tmp_path / "普查.gpkg", driver="GPKG")
    assert _run(demo_sessions, test_settings, tmp_path / "普查.gpkg").new == 3
    table = pd.DataFrame(lamps.drop(columns="geometry")).assign(
        经度=[repr(x) for x in points["lon"]], 纬度=[repr(y) for y in points["lat"]]
    )
    table.loc[1, "经度"] = "117.0°"
    table.to_csv(tmp_path / "复查.csv", index=False, encoding="utf-8-sig")
    report_file = tmp_path / "问题.csv"
    report = _run(
        demo_sessions, test_settings, tmp_path / "复查.csv", crs="EPSG:4490", report_path=report_file
    )
    assert (report.accepted, report.rejected, report.unchanged, report.changed) == (2, 1, 2, 0)
    for attributes in _current(demo_sessions, list(lamps["标识码"]))["attributes"]:
        assert not {"经度", "纬度"} & attributes.keys()

    fixed = pd.read_csv(report_file, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert (fixed.loc[0, "source_row"], fixed.loc[0, "经度"]) == ("3", "117.0°")  # line 3 of the CSV
    fixed.loc[0, "经度"] = repr(float(points["lon"].iloc[1]))
    fixed.to_csv(report_file, index=False, encoding="utf-8-sig")
    again = _run(demo_sessions, test_settings, report_file, crs="EPSG:4490")
    # Unchanged: the report's wkt beside the corrected 经度/纬度 is not an attribute either.
    assert (again.accepted, again.rejected, again.unchanged) == (1, 0, 1), again.problems
    assert any("its wkt column is the same position written again" in w for w in again.warnings)


def test_the_geopackage_report_of_a_csv_has_the_position_as_its_geometry_not_the_coordinate_columns(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """In a GeoPackage report the geometry is the position: the CSV's coordinate columns beside it would
    come back as free attributes (stale once the point is moved in QGIS), and a coordinate typed there
    would be ignored. The row without a usable position gets its point drawn, and imports by it. The CSV
    report, and the served CSV report, keep the columns: they are how a CSV's position is corrected."""
    points = _grid_points(demo_sessions, 3, offset=61)
    lamps = _lamps(points, first_seq=961_001).drop(columns="灯杆高度")
    table = pd.DataFrame(lamps.drop(columns="geometry")).assign(
        东坐标=[repr(x) for x in points["lon"]], 北坐标=[repr(y) for y in points["lat"]]
    )
    table.loc[1, "东坐标"] = "117.0°"
    table.loc[2, "状态"] = "坏了吗"  # rejected for its status, with a usable position
    table.to_csv(tmp_path / "普查.csv", index=False, encoding="utf-8-sig")
    report_file = tmp_path / "问题.gpkg"
    report = _run(
        demo_sessions, test_settings, tmp_path / "普查.csv", crs="EPSG:4490", report_path=report_file
    )
    assert (report.accepted, report.rejected) == (1, 2)
    assert report.coordinate_fields == ["东坐标", "北坐标"]

    fixed = gpd.read_file(report_file)
    assert not {"东坐标", "北坐标"} & set(fixed.columns)
    assert fixed["source_row"].tolist() == [3, 4]
    assert fixed.geometry.iloc[0] is None and fixed.geometry.iloc[1] is not None
    fixed.loc[0, "geometry"] = shapely.Point(points["lon"].iloc[1], points["lat"].iloc[1])  # drawn in QGIS
    fixed.loc[1, "status"] = "完好"
    fixed.to_file(report_file, driver="GPKG", layer="problems")
    again = _run(demo_sessions, test_settings, report_file)
    assert (again.accepted, again.rejected, again.new) == (2, 0, 2), again.problems
    stored = _current(demo_sessions, list(lamps["标识码"]))
    for attributes in stored["attributes"]:
        assert not {"东坐标", "北坐标"} & attributes.keys()
    assert stored.loc[1, "lon"] == pytest.approx(points["lon"].iloc[1], abs=1e-9)
    assert stored.loc[1, "lat"] == pytest.approx(points["lat"].iloc[1], abs=1e-9)

    # The recorded import serves both reports the same way.
    assert report.batch_id is not None
    served_gpkg = imports_service.import_problems_file(
        demo_sessions, report.batch_id, tmp_path / "served.gpkg"
    )
    assert not {"东坐标", "北坐标"} & set(gpd.read_file(served_gpkg).columns)
    served_csv = imports_service.import_problems_file(demo_sessions, report.batch_id, tmp_path / "served.csv")
    written = pd.read_csv(served_csv, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert written["东坐标"].tolist() == ["117.0°", repr(float(points["lon"].iloc[2]))]


@pytest.mark.parametrize(
    ("suffix", "driver"), [(".geojson", "GeoJSON"), (".kml", "KML"), (".gdb", "OpenFileGDB")]
)
def test_geojson_kml_filegdb(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, suffix: str, driver: str
) -> None:
    points = _grid_points(demo_sessions, 12)
    lamps = _lamps(points)
    path = tmp_path / f"lamps{suffix}"
    frame = lamps.to_crs("EPSG:4326") if driver in ("GeoJSON", "KML") else lamps
    frame.to_file(path, driver=driver, **({"layer": "lamps"} if driver == "OpenFileGDB" else {}))
    _check_imported(demo_sessions, lamps, points, _run(demo_sessions, test_settings, path))


# --- broken rows and broken files ------------------------------------------------------------------


def test_bad_rows_are_reported_and_good_rows_imported(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 8)
    lamps = _lamps(points)
    lon, lat = points["lon"].to_numpy(), points["lat"].to_numpy()
    geoms = list(lamps.geometry)
    codes = list(lamps["标识码"])
    geoms[1] = shapely.Point(np.nan, lat[1])  # row 2: NaN coordinate
    codes[3] = codes[2]  # rows 3 and 4: the same code twice
    codes[5] = f"370103{LAMP}900006"  # row 6: 市中区 code for a lamp in 历下区
    belt = shapely.Polygon(
        [(lon[6], lat[6]), (lon[6] + 1e-4, lat[6] + 1e-4), (lon[6] + 1e-4, lat[6]), (lon[6], lat[6] + 1e-4)]
    )
    codes[6] = f"370102{GREEN_BELT}900007"  # row 7: a self-intersecting (bowtie) green belt
    geoms[6] = belt
    lamps = lamps.assign(标识码=codes).set_geometry(gpd.GeoSeries(geoms, crs="EPSG:4490"))
    path = tmp_path / "问题.gpkg"
    lamps.to_file(path, driver="GPKG")
    before = _count(demo_sessions)

    report = _run(demo_sessions, test_settings, path, report_path=tmp_path / "report.csv")
    rejected = {(p.source_row, p.field) for p in report.problems if p.action == "rejected"}
    assert {2, 3, 4, 6, 7} == {row for row, _ in rejected}
    assert (2, "geometry") in rejected and (3, "code") in rejected and (4, "code") in rejected
    assert (6, "code") in rejected and (7, "geometry") in rejected
    reasons = {p.source_row: p.reason for p in report.problems}
    assert "370103" in reasons[6] and "370102" in reasons[6]
    assert report.accepted == 3 and report.rejected == 5
    assert _count(demo_sessions) == before + 3
    written = pd.read_csv(tmp_path / "report.csv", encoding="utf-8-sig")
    assert set(written["source_row"]) == {2, 3, 4, 6, 7}
    with demo_sessions() as session:
        stored = session.execute(
            text("SELECT count(DISTINCT source_row) FROM import_problem WHERE survey_batch_id = :b"),
            {"b": report.batch_id},
        ).scalar_one()
    assert stored == 5


@pytest.mark.parametrize("kept_as", ["written by the import", "stored with the import"])
def test_the_report_is_fixed_in_place_and_imported_again(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, kept_as: str
) -> None:
    points = _grid_points(demo_sessions, 4, offset=20)
    lamps = _lamps(points, first_seq=980_001)
    lamps.loc[1, "状态"] = "坏了"  # row 2: one problem
    lamps.loc[2, "状态"] = "坏了"  # row 3: two problems, an unknown status and a code too short
    lamps.loc[2, "标识码"] = "37010201189"
    # Free fields in an order the database's jsonb would change (it puts shorter keys first).
    lamps["施工单位名称"] = "济南市政工程公司"
    lamps["灯型"] = "LED"
    path = tmp_path / "普查.gpkg"
    lamps.to_file(path, driver="GPKG")
    report_file = tmp_path / "问题.csv"
    first = _run(demo_sessions, test_settings, path, report_path=report_file)
    assert (first.accepted, first.rejected, len(first.problems)) == (2, 2, 3)
    written_columns = list(pd.read_csv(report_file, encoding="utf-8-sig", nrows=0).columns)
    assert {"class_code", "remarks"} <= set(written_columns)  # standard fields, though empty in every row
    assert written_columns.index("施工单位名称") < written_columns.index("灯型")  # as the file has them
    if kept_as == "stored with the import":  # what GET /v1/imports/{id}/problems.csv serves
        imports_service.import_problems_file(demo_sessions, int(first.batch_id or 0), report_file)
        assert list(pd.read_csv(report_file, encoding="utf-8-sig", nrows=0).columns) == written_columns

    # GIS staff open the report, correct the values in place and import it as it is.
    fixed = pd.read_csv(report_file, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert fixed["source_row"].tolist() == ["2", "3"]  # one row per rejected row, whatever its problems
    assert fixed.loc[1, "field"] == "code | status"
    fixed["status"] = "完好"
    fixed.loc[1, "code"] = f"370102{LAMP}980003"
    fixed.to_csv(report_file, index=False, encoding="utf-8-sig")
    again = _run(demo_sessions, test_settings, report_file, crs="EPSG:4490")
    assert (again.accepted, again.rejected, again.new) == (2, 0, 2), again.problems
    assert any("this file is a gridsvc problems report" in w for w in again.warnings)
    got = _current(demo_sessions, [f"370102{LAMP}980002", f"370102{LAMP}980003"])
    assert got["status"].tolist() == ["intact", "intact"]
    assert got["owner_department_code"].tolist() == ["lighting", "lighting"]
    assert got["name"].tolist() == ["经十路路灯2号", "经十路路灯3号"]
    # The report's own columns are not components' attributes; the file's unknown field still is.
    for attributes in got["attributes"]:
        assert not {"source_row", "field", "value", "reason", "action"} & attributes.keys()
        assert any(k.startswith("灯杆高") for k in attributes)
    assert _metres_apart(got["lon"], got["lat"], points["lon"][1:3], points["lat"][1:3]).max() < 1.0


def test_the_served_geopackage_report_keeps_numbers_as_numbers_as_the_written_one_does(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """GET /v1/imports/{id}/problems.gpkg is the report --report wrote: a free attribute of numbers is a
    number column, so a corrected row comes back with 12.5 and 150, not "12.5" and "150"."""
    points = _grid_points(demo_sessions, 3, offset=22)
    lamps = _lamps(points, first_seq=982_001).assign(功率=pd.array([100, 150, None], dtype="Int64"))
    lamps.loc[1, "状态"] = "坏了"
    path = tmp_path / "普查.gpkg"
    lamps.to_file(path, driver="GPKG")
    first = _run(demo_sessions, test_settings, path, report_path=tmp_path / "written.gpkg")
    assert (first.accepted, first.rejected) == (2, 1)
    served = imports_service.import_problems_file(
        demo_sessions, int(first.batch_id or 0), tmp_path / "s.gpkg"
    )
    for report in (tmp_path / "written.gpkg", served):
        info = pyogrio.read_info(report)
        kinds = dict(zip(info["fields"], info["dtypes"], strict=True))
        assert (kinds["灯杆高度"], kinds["功率"]) == ("float64", "int64"), report
    fixed = gpd.read_file(served)
    fixed.loc[0, "status"] = "完好"
    fixed.to_file(served, driver="GPKG", layer="problems")
    again = _run(demo_sessions, test_settings, served)
    assert (again.accepted, again.new) == (1, 1), again.problems
    attributes = _current(demo_sessions, [lamps.loc[1, "标识码"]])["attributes"].iloc[0]
    assert (attributes["灯杆高度"], attributes["功率"]) == (12.5, 150)


def test_a_row_whose_coordinate_cannot_be_converted_is_rejected_alone(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 5, offset=40)
    lamps = _lamps(points, first_seq=985_001).to_crs("EPSG:4527")
    geoms = list(lamps.geometry)
    geoms[3] = shapely.Point(geoms[3].x - 39_000_000, geoms[3].y)  # row 4: the zone prefix lost
    lamps = lamps.set_geometry(gpd.GeoSeries(geoms, crs="EPSG:4527"))
    path = tmp_path / "4527.gpkg"
    lamps.to_file(path, driver="GPKG")
    before = _count(demo_sessions)
    report = _run(demo_sessions, test_settings, path, report_path=tmp_path / "问题.gpkg")
    assert (report.accepted, report.rejected) == (4, 1)
    (problem,) = report.problems
    assert (problem.source_row, problem.field, problem.action) == (4, "geometry", "rejected")
    assert "cannot be converted from EPSG:4527" in problem.reason and "no zone prefix" in problem.reason
    assert _count(demo_sessions) == before + 4
    written = gpd.read_file(tmp_path / "问题.gpkg")
    assert written["source_row"].tolist() == [4] and written["code"].tolist() == [lamps["标识码"].iloc[3]]


@pytest.mark.parametrize("suffix", [".gpkg", ".shp"])
def test_an_export_corrected_in_qgis_imports_again_as_the_changes_it_holds(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, suffix: str
) -> None:
    from gridsvc.services.export import export_layer

    # Covers from two surveys with different free attributes (a number; a text, a yes/no with a gap, a
    # data source), and departments, as imports leave them.
    points = _grid_points(demo_sessions, 8, offset=400)
    first, second = tmp_path / "v1.gpkg", tmp_path / "v2.gpkg"
    _lamps(points.iloc[:5], first_seq=940_001, class_code="0114").to_file(first, driver="GPKG")
    gpd.GeoDataFrame(
        {
            "标识码": [f"3701020114{940_101 + i:06d}" for i in range(3)],
            "状态": "完好",
            "数据来源": "2023普查",
            "灯型": ["LED", "钠灯", None],
            "是否智能": [True, None, False],
        },
        geometry=shapely.points(points["lon"].iloc[5:], points["lat"].iloc[5:]),
        crs="EPSG:4490",
    ).to_file(second, driver="GPKG")
    assert _run(demo_sessions, test_settings, first).new == 5
    assert _run(demo_sessions, test_settings, second).new == 3
    # A Shapefile in GBK, as desktop GIS in China reads it.
    encoding = "GBK" if suffix == ".shp" else "UTF-8"
    exported, count = export_layer(
        demo_sessions, "components", tmp_path / f"导出{suffix}", class_codes=("0114",), encoding=encoding
    )
    assert count == 8
    edited = gpd.read_file(exported)
    assert {"supervisor", "maintainer", "attributes"} <= set(edited.columns)
    row = int(np.flatnonzero(edited["attributes"].str.contains("灯杆高度"))[0])
    edited.loc[row, "attributes"] = edited.loc[row, "attributes"].replace("12.5", "9.0")
    if suffix == ".shp":
        edited.to_file(exported, encoding=encoding)
    else:
        edited.to_file(exported, driver="GPKG")

    report = _run(demo_sessions, test_settings, exported)
    assert (report.rejected, report.new, report.changed, report.unchanged) == (0, 0, 1, 7)
    assert any("gridsvc components export" in w for w in report.warnings)
    changed = _current(demo_sessions, [edited.loc[row, "code"]]).iloc[0]
    # No grid codes or class name among them; the maintainer no department matches stays as it was.
    assert changed["attributes"] == {"灯杆高度": 9.0, "maintainer": "济南市路灯养护中心"}
    assert changed["owner_department_code"] == "lighting"


@pytest.mark.parametrize(
    ("suffix", "crs", "classes"),
    [
        (".gpkg", "EPSG:4527", ("0113", GREEN_BELT)),  # the Gauss-Krüger zone Jinan's GIS staff work in
        (".shp", "EPSG:4527", ("0113",)),  # a Shapefile holds one kind of geometry
        (".geojson", "EPSG:4490", ("0113", GREEN_BELT)),  # the free attributes as a JSON object
        (".csv", "EPSG:4490", ("0113",)),  # lon and lat columns
        (".csv", "EPSG:4490", ("0113", GREEN_BELT)),  # a wkt column, to nine decimals
        (".gpkg", "gcj02", ("0113", GREEN_BELT)),  # for a web map; the file cannot say its datum
        (".geojson", "gcj02", ("0113", GREEN_BELT)),  # its crs member names it, for gridsvc alone
        (".geojson", "bd09", ("0113",)),
    ],
)
def test_an_export_imported_again_untouched_changes_nothing(
    demo_sessions: sessionmaker[Session],
    test_settings: Settings,
    tmp_path: Path,
    suffix: str,
    crs: str,
    classes: tuple[str, ...],
) -> None:
    """Export, look in QGIS, import the file back as it was: no component gets a new version, though
    converting to the file's CRS and back moved every vertex by nanometres and the file may have rounded
    it. A move of a few centimetres is still a change."""
    from gridsvc.services.export import export_layer

    points = _grid_points(demo_sessions, 6, offset=420)
    lamps = _lamps(points.iloc[:4], first_seq=950_001, class_code="0113")
    lon, lat = points["lon"].to_numpy(), points["lat"].to_numpy()
    belts = gpd.GeoDataFrame(
        {
            "标识码": [f"370102{GREEN_BELT}9500{11 + i}" for i in range(2)],
            "状态": "完好",
            "绿地类型": ["街旁绿地", None],
        },
        # A belt along a street, a few vertices that no grid of round numbers holds.
        geometry=[
            shapely.Polygon(
                [(x, y), (x + 2.3e-4, y + 1.7e-5), (x + 2.1e-4, y + 1.3e-4), (x - 1.1e-5, y + 1.1e-4)]
            )
            for x, y in zip(lon[4:], lat[4:], strict=True)
        ],
        crs="EPSG:4490",
    )
    census = tmp_path / "census.gpkg"
    pd.concat([lamps, belts], ignore_index=True).to_file(census, driver="GPKG")
    assert _run(demo_sessions, test_settings, census).new == 6

    exported, count = export_layer(
        demo_sessions, "components", tmp_path / f"导出{suffix}", crs=crs, class_codes=classes
    )
    assert count == (6 if GREEN_BELT in classes else 4)
    # A CSV, and a GCJ-02 GeoPackage, do not say their CRS.
    told = {"crs": crs} if suffix == ".csv" or (crs == "gcj02" and suffix == ".gpkg") else {}
    before = _count(demo_sessions)
    report = _run(demo_sessions, test_settings, exported, **told)
    assert (report.rejected, report.new, report.changed, report.unchanged) == (0, 0, 0, count)
    assert _count(demo_sessions) == before
    if suffix == ".gpkg" and crs == "EPSG:4527":
        # Columns the import finds itself, deleted in QGIS first: the rest are still left out.
        trimmed = tmp_path / "导出-删列.gpkg"
        gpd.read_file(exported).drop(columns=["valid_from", "unit_grid_code"]).to_file(trimmed, driver="GPKG")
        report = _run(demo_sessions, test_settings, trimmed)
        assert (report.rejected, report.changed, report.unchanged) == (0, 0, count)
        # A column added in QGIS and filled in on one row (QGIS fills the others with NULL): that row
        # changed, the others did not, though their NULL is a key their stored attributes lack.
        added = tmp_path / "导出-加列.gpkg"
        edited = gpd.read_file(exported)
        edited["养护等级"] = pd.Series([None] * len(edited), dtype=object)
        edited.loc[0, "养护等级"] = "一级"
        edited.to_file(added, driver="GPKG")
        report = _run(demo_sessions, test_settings, added)
        assert (report.rejected, report.changed, report.unchanged) == (0, 1, count - 1)

    # Three centimetres north is a move GIS staff made: a new version.
    moved = lamps.iloc[[0]].set_geometry(shapely.points([lon[0]], [lat[0] + 3e-7]), crs="EPSG:4490")
    moved.to_file(tmp_path / "moved.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "moved.gpkg")
    assert (report.changed, report.unchanged) == (1, 0)


def test_dates_edited_inside_an_exports_attributes_are_checked_as_date_columns_are(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """An export writes a component's dates inside its attributes JSON, where GIS staff edit them: there
    they are read as a date column is (ISO 8601; a day the month lacks refused), not stored as typed."""
    from gridsvc.services.export import export_layer

    lamps = _lamps(_grid_points(demo_sessions, 4, offset=560), first_seq=956_001)
    lamps["设立日期"] = ["2023-05-01", "2023-05-02", "2023-05-03", "2023-05-04"]
    lamps.to_file(tmp_path / "census.gpkg", driver="GPKG")
    assert _run(demo_sessions, test_settings, tmp_path / "census.gpkg").new == 4
    codes = list(lamps["标识码"])
    exported, _ = export_layer(demo_sessions, "components", tmp_path / "导出.geojson", class_codes=(LAMP,))
    edited = gpd.read_file(exported)
    edited = edited[edited["code"].isin(codes)].sort_values("code").reset_index(drop=True)
    typed = {codes[0]: "2023/5/8", codes[1]: "2023-02-29", codes[2]: "2023年5月3日"}
    members = [a if isinstance(a, dict) else json.loads(a) for a in edited["attributes"]]
    edited["attributes"] = [
        json.dumps({**m, "initial_date": typed.get(c, m["initial_date"])}, ensure_ascii=False)
        for c, m in zip(edited["code"], members, strict=True)
    ]
    edited.to_file(tmp_path / "改日期.geojson", driver="GeoJSON")
    report = _run(demo_sessions, test_settings, tmp_path / "改日期.geojson")
    # 2023/5/8 is a new date; 2023年5月3日 is the stored 2023-05-03 written otherwise; 2023-02-29 is no day.
    assert (report.changed, report.unchanged, report.rejected) == (1, 2, 1)
    assert [(p.source_row, p.field, p.value) for p in report.problems] == [(2, "initial_date", "2023-02-29")]
    stored = _current(demo_sessions, codes)
    assert [a["initial_date"] for a in stored["attributes"]] == [
        "2023-05-08",
        "2023-05-02",
        "2023-05-03",
        "2023-05-04",
    ]


def test_an_export_at_a_past_time_holds_the_versions_of_then_and_imported_restores_them(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """`export --at`: the census as it stood before a re-survey, each component in the version then in
    force, with its valid_from; imported again, the components the re-survey changed get those values back
    (as new versions: history is never rewritten), the others are unchanged."""
    from gridsvc.services.export import export_layer

    lamps = _lamps(_grid_points(demo_sessions, 3, offset=590), first_seq=957_001)
    lamps.to_file(tmp_path / "census.gpkg", driver="GPKG")
    first = _run(demo_sessions, test_settings, tmp_path / "census.gpkg")
    lamps.loc[1, "名称"] = "改名路灯"
    lamps.to_file(tmp_path / "复测.gpkg", driver="GPKG")
    second = _run(demo_sessions, test_settings, tmp_path / "复测.gpkg")
    assert (first.new, second.changed, second.unchanged) == (3, 1, 2)
    with demo_sessions() as session:
        stamps = dict(
            session.execute(
                text("SELECT id, imported_at FROM survey_batch WHERE id IN (:a, :b)"),
                {"a": first.batch_id, "b": second.batch_id},
            ).all()
        )
    codes = list(lamps["标识码"])

    def exported(at: dt.datetime | None, name: str) -> gpd.GeoDataFrame:
        path, _ = export_layer(demo_sessions, "components", tmp_path / name, class_codes=(LAMP,), at=at)
        frame = gpd.read_file(path)
        return frame[frame["code"].isin(codes)].sort_values("code").reset_index(drop=True)

    between = stamps[second.batch_id] - dt.timedelta(microseconds=1)
    before = exported(between, "之前.gpkg")
    now = exported(None, "现在.gpkg")
    assert before["name"].tolist() == ["经十路路灯1号", "经十路路灯2号", "经十路路灯3号"]
    assert now["name"].tolist() == ["经十路路灯1号", "改名路灯", "经十路路灯3号"]
    # (A GeoPackage keeps a date-time to the millisecond.)
    assert all(
        abs(t.to_pydatetime() - stamps[first.batch_id]) < dt.timedelta(milliseconds=1)
        for t in before["valid_from"]
    )
    # Before the first import, none of them stood yet.
    assert exported(stamps[first.batch_id] - dt.timedelta(microseconds=1), "更早.gpkg").empty

    restored = _run(demo_sessions, test_settings, tmp_path / "之前.gpkg")
    assert (restored.changed, restored.new) == (1, 0)
    assert _current(demo_sessions, codes)["name"].tolist() == [
        "经十路路灯1号",
        "经十路路灯2号",
        "经十路路灯3号",
    ]


def test_a_shapefile_export_whose_attributes_were_cut_rejects_those_rows(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """A Shapefile keeps 254 bytes of a text: a component with a long remark comes back with its
    attributes JSON cut. Imported, it would replace the stored attributes with a fragment; it is
    rejected, saying why, and keeps its stored version. The others are unchanged."""
    from gridsvc.services.export import export_layer

    lamps = _lamps(_grid_points(demo_sessions, 3, offset=530), first_seq=955_001)
    lamps["备注"] = ["灯杆锈蚀，需要除锈刷漆，基础松动，周边有小广告。" * 4, "无", None]
    lamps.to_file(tmp_path / "census.gpkg", driver="GPKG")
    assert _run(demo_sessions, test_settings, tmp_path / "census.gpkg").new == 3
    stored = _current(demo_sessions, list(lamps["标识码"]))
    exported, count = export_layer(demo_sessions, "components", tmp_path / "导出.shp", class_codes=(LAMP,))

    before = _count(demo_sessions)
    report = _run(demo_sessions, test_settings, exported)

    assert (report.rejected, report.new, report.changed) == (1, 0, 0)
    assert report.unchanged == count - 1
    (problem,) = report.problems
    assert (problem.field, problem.action) == ("attributes", "rejected")
    assert problem.reason.startswith("the attributes column holds no JSON object (a Shapefile keeps only")
    assert problem.value.startswith('{"remarks": "灯杆锈蚀')  # 备注 is the standard field remarks
    assert _count(demo_sessions) == before
    after = _current(demo_sessions, list(lamps["标识码"]))
    assert after["attributes"].tolist() == stored["attributes"].tolist()


def test_dates_are_stored_as_iso_and_one_date_in_another_format_is_no_change(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """A FileGDB holds a date as a datetime (2023-05-01T00:00:00Z as GDAL reads it), a GeoPackage as a
    DATE, a CSV as any text: one date each time, stored as 2023-05-01, and a re-survey in another format
    is no change. Text that is no date rejects its row."""
    lamps = _lamps(_grid_points(demo_sessions, 3, offset=560), first_seq=956_001)[["标识码", "geometry"]]
    census = lamps.assign(初始日期=pd.to_datetime(["2023-05-01", "2023-05-01", "2024-02-29"]))
    census.to_file(tmp_path / "census.gdb", driver="OpenFileGDB")
    assert _run(demo_sessions, test_settings, tmp_path / "census.gdb").new == 3
    stored = _current(demo_sessions, list(lamps["标识码"]))["attributes"].tolist()
    assert [a["initial_date"] for a in stored] == ["2023-05-01", "2023-05-01", "2024-02-29"]

    resurvey = pd.DataFrame(
        {
            "标识码": lamps["标识码"],
            "初始日期": ["2023/5/1", "2023年5月1日", "45047"],
            "经度": lamps.geometry.x,
            "纬度": lamps.geometry.y,
        }
    )
    resurvey.to_csv(tmp_path / "resurvey.csv", index=False)
    report = _run(demo_sessions, test_settings, tmp_path / "resurvey.csv", crs="EPSG:4490")
    assert (report.rejected, report.changed, report.unchanged) == (1, 0, 2)
    (problem,) = report.problems
    assert (problem.field, problem.value) == ("initial_date", "45047")
    assert problem.reason.startswith("initial_date 45047 is not a date: write it as YYYY-MM-DD")


def test_a_polygon_with_its_ring_turned_or_started_elsewhere_is_unchanged(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """A ring has no direction or first vertex of its own: a Shapefile writes shells clockwise, QGIS may
    start a ring anywhere. The same belt drawn so is unchanged; a vertex moved 3 cm is still a change."""
    points = _grid_points(demo_sessions, 3, offset=460)
    rings = [
        [(x, y), (x + 2.3e-4, y + 1.7e-5), (x + 2.1e-4, y + 1.3e-4), (x - 1.1e-5, y + 1.1e-4)]
        for x, y in zip(points["lon"], points["lat"], strict=True)
    ]

    def belts(drawn: list[list[tuple[float, float]]]) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame(
            {"标识码": [f"370102{GREEN_BELT}9520{11 + i}" for i in range(3)], "状态": "完好"},
            geometry=[shapely.Polygon(ring) for ring in drawn],
            crs="EPSG:4490",
        )

    belts(rings).to_file(tmp_path / "belts.gpkg", driver="GPKG")
    assert _run(demo_sessions, test_settings, tmp_path / "belts.gpkg").new == 3
    turned = [rings[0][::-1], rings[1][2:] + rings[1][:2], rings[2][::-1][1:] + rings[2][::-1][:1]]
    assert not any(shapely.Polygon(ring).exterior.is_ccw for ring in (turned[0], turned[2]))
    belts(turned).to_file(tmp_path / "turned.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "turned.gpkg")
    assert (report.new, report.changed, report.unchanged) == (0, 0, 3)

    moved = [list(ring) for ring in turned]
    x, y = moved[2][1]
    moved[2][1] = (x, y + 3e-7)
    belts(moved).to_file(tmp_path / "moved.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "moved.gpkg")
    assert (report.changed, report.unchanged) == (1, 2)


def test_rectangles_surveyed_again_in_zone_39_are_unchanged(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """A rectangle's two western vertices tie for least x: after a zone-39 round trip nanodegrees pick
    which comes first if rings are normalised, so the match keeps each ring's own first vertex."""
    points = _grid_points(demo_sessions, 6, offset=480)
    cells = gpd.GeoDataFrame(
        {"标识码": [f"370102{GREEN_BELT}9530{11 + i}" for i in range(6)], "状态": "完好"},
        geometry=[
            shapely.box(x, y, x + 1e-3, y + 5e-4) for x, y in zip(points["lon"], points["lat"], strict=True)
        ],
        crs="EPSG:4490",
    )
    cells.to_file(tmp_path / "cells.gpkg", driver="GPKG")
    assert _run(demo_sessions, test_settings, tmp_path / "cells.gpkg").new == 6
    for suffix in (".gpkg", ".shp"):  # a Shapefile also turns the shells clockwise
        cells.to_crs("EPSG:4527").to_file(tmp_path / f"cells-4527{suffix}", encoding="UTF-8")
        report = _run(demo_sessions, test_settings, tmp_path / f"cells-4527{suffix}")
        assert (report.new, report.changed, report.unchanged) == (0, 0, 6), suffix


def test_single_part_multi_geometries_surveyed_again_are_unchanged(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """QGIS, ArcGIS and FileGDB write a polygon as a MultiPolygon of one part: the same green belt either
    way, in either order of the surveys, is unchanged; a second part is a change."""
    points = _grid_points(demo_sessions, 4, offset=490)
    belts = gpd.GeoDataFrame(
        {"标识码": [f"370102{GREEN_BELT}9540{11 + i}" for i in range(4)], "状态": "完好"},
        geometry=[
            shapely.box(x, y, x + 1e-3, y + 5e-4) for x, y in zip(points["lon"], points["lat"], strict=True)
        ],
        crs="EPSG:4490",
    )
    belts.to_file(tmp_path / "single.gpkg", driver="GPKG")
    belts.assign(geometry=[shapely.MultiPolygon([g]) for g in belts.geometry]).to_file(
        tmp_path / "multi.gpkg", driver="GPKG"
    )
    assert _run(demo_sessions, test_settings, tmp_path / "single.gpkg").new == 4
    report = _run(demo_sessions, test_settings, tmp_path / "multi.gpkg")
    assert (report.new, report.changed, report.unchanged) == (0, 0, 4)
    belts.to_file(tmp_path / "belts.gdb", driver="OpenFileGDB")  # GDAL writes MultiPolygon there
    report = _run(demo_sessions, test_settings, tmp_path / "belts.gdb")
    assert (report.new, report.changed, report.unchanged) == (0, 0, 4)

    two_parts = belts.copy()
    first = two_parts.geometry.iloc[0]
    two_parts.loc[0, "geometry"] = shapely.MultiPolygon([first, shapely.affinity.translate(first, 0.002)])
    two_parts.to_file(tmp_path / "two.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "two.gpkg")
    assert (report.new, report.changed, report.unchanged) == (0, 1, 3)


def test_a_survey_file_with_one_export_like_column_keeps_it(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """A contractor's own valid_from (an installation date) beside an attributes column is no export's
    derived column: it is kept in the free attributes, and the attributes object read into them."""
    lamps = _lamps(_grid_points(demo_sessions, 2, offset=500), first_seq=954_001)
    lamps = lamps.assign(valid_from="2023-05-04", attributes='{"灯型": "LED"}')
    lamps.to_file(tmp_path / "survey.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "survey.gpkg")
    assert report.new == 2 and not any("export" in w for w in report.warnings)
    attributes = _current(demo_sessions, list(lamps["标识码"]))["attributes"].iloc[0]
    assert attributes["valid_from"] == "2023-05-04" and attributes["灯型"] == "LED"


def test_a_survey_files_own_attributes_text_is_kept_not_rejected(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """Only a gridsvc export's attributes column that holds no JSON object rejects its row; a contractor's
    own column of that name keeps its text as an attribute, and a blank cell is no attributes."""
    lamps = _lamps(_grid_points(demo_sessions, 2, offset=570), first_seq=957_001)
    lamps = lamps.assign(attributes=["钢杆 6米", ""])
    lamps.to_file(tmp_path / "survey.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "survey.gpkg")
    assert (report.rejected, report.new) == (0, 2)
    stored = _current(demo_sessions, list(lamps["标识码"]))["attributes"].tolist()
    assert stored[0]["attributes"] == "钢杆 6米" and "attributes" not in stored[1]


def test_a_census_surveyed_again_as_csv_keeps_its_numeric_attributes_unchanged(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """A CSV has no types: the GeoPackage census's 灯杆高度 12.5 comes back from a CSV re-survey as the text
    "12.5", the same value, and no component gets a new version for it; a different text is a change. An
    empty text in the GeoPackage is a blank cell in the CSV, read as no value: the same, too."""
    points = _grid_points(demo_sessions, 3, offset=440)
    # 功率 a GeoPackage Real whose values are whole (150.0), which a CSV writes as 150; 亮灯 a boolean, which
    # pandas writes as True/False (ogr2ogr as 1/0 is another text, and a change).
    lamps = _lamps(points, first_seq=951_001).assign(
        灯杆数=np.array([1, 2, 3], dtype=np.int64),
        备注说明=["", None, "x"],
        功率=[150.0, 40.0, 12.5],
        亮灯=[True, False, True],
    )
    lamps.to_file(tmp_path / "census.gpkg", driver="GPKG")
    assert _run(demo_sessions, test_settings, tmp_path / "census.gpkg").new == 3
    stored = _current(demo_sessions, list(lamps["标识码"]))["attributes"].tolist()
    assert [(a["灯杆高度"], a["灯杆数"]) for a in stored] == [(12.5, 1), (12.5, 2), (12.5, 3)]

    as_csv = pd.DataFrame(lamps.drop(columns="geometry")).assign(经度=points["lon"], 纬度=points["lat"])
    as_csv.loc[2, "灯杆数"] = 4  # one lamp really got a fourth pole
    as_csv.to_csv(tmp_path / "resurvey.csv", index=False, float_format="%.15g")
    before = _count(demo_sessions)
    report = _run(demo_sessions, test_settings, tmp_path / "resurvey.csv", crs="EPSG:4490")
    assert (report.rejected, report.new, report.changed, report.unchanged) == (0, 0, 1, 2)
    assert _count(demo_sessions) == before + 1
    after = _current(demo_sessions, list(lamps["标识码"]))["attributes"].tolist()
    assert after[:2] == stored[:2]  # not rewritten: the stored numbers stay numbers
    assert after[2]["灯杆数"] == "4"
    # The GeoPackage again: only the lamp whose poles it counts otherwise is a change (back to 3).
    again = _run(demo_sessions, test_settings, tmp_path / "census.gpkg")
    assert (again.new, again.changed, again.unchanged) == (0, 1, 2)


def test_duplicate_codes_are_rejected_alike_whatever_the_chunk_size(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 6, offset=50)
    lamps = _lamps(points, first_seq=990_001)
    codes = list(lamps["标识码"])
    codes[4] = codes[1]  # rows 2 and 5: one code twice, three rows apart
    lamps = lamps.assign(标识码=codes)
    path = tmp_path / "dup.gpkg"
    lamps.to_file(path, driver="GPKG")
    answers = []
    for chunk_rows in (100_000, 2):  # rows 2 and 5 in one chunk, then in different chunks
        report = _run(demo_sessions, test_settings, path, dry_run=True, chunk_rows=chunk_rows)
        answers.append(
            (report.accepted, report.rejected, report.new, [(p.source_row, p.field) for p in report.problems])
        )
    assert answers[0] == answers[1] == (4, 2, 4, [(2, "code"), (5, "code")])
    before = _count(demo_sessions)
    report = _run(demo_sessions, test_settings, path, chunk_rows=2, report_path=tmp_path / "dup.csv")
    assert (report.accepted, report.new) == (4, 4) and _count(demo_sessions) == before + 4
    assert _current(demo_sessions, [codes[1]]).empty  # neither copy was imported
    written = pd.read_csv(tmp_path / "dup.csv", encoding="utf-8-sig", dtype=str)
    assert written["source_row"].tolist() == ["2", "5"]
    assert written["name"].tolist() == [
        "经十路路灯2号",
        "经十路路灯5号",
    ]  # the taken-back row keeps its values
    assert "also used by row 5" in written.loc[0, "reason"]


def test_strict_refuses_and_writes_nothing(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 5)
    lamps = _lamps(points)
    lamps.loc[2, "状态"] = "坏了"  # not a known status
    path = tmp_path / "strict.gpkg"
    lamps.to_file(path, driver="GPKG")
    before = (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch"))
    report_file = tmp_path / "strict-report.csv"
    with pytest.raises(InvalidInputError) as info:
        _run(demo_sessions, test_settings, path, strict=True, report_path=report_file)
    assert info.value.problems[0].location["source_row"] == 3
    # The refusal still writes the report asked for: it is what GIS staff fix the file with.
    assert str(report_file) in info.value.detail
    assert list(pd.read_csv(report_file, encoding="utf-8-sig")["source_row"]) == [3]
    assert "坏了" in str(info.value.problems[0].location["value"])
    assert (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch")) == before


@pytest.mark.parametrize("breakage", ["truncated", "degrees_label", "missing"])
def test_broken_files_are_refused_whole(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, breakage: str
) -> None:
    points = _grid_points(demo_sessions, 20)
    lamps = _lamps(points)
    path = tmp_path / "broken.gpkg"
    if breakage == "truncated":
        lamps.to_file(path, driver="GPKG")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        expected = "broken.gpkg"
    elif breakage == "degrees_label":
        # Gauss-Krüger metres in a file that says it is CGCS2000 degrees.
        metres = lamps.to_crs("EPSG:4527")
        metres.set_crs("EPSG:4490", allow_override=True).to_file(path, driver="GPKG")
        expected = "EPSG:4527"
    else:
        expected = "does not exist"
    before = _count(demo_sessions)
    with pytest.raises(InvalidInputError) as info:
        _run(demo_sessions, test_settings, path)
    message = info.value.detail + " ".join(p.message for p in info.value.problems)
    assert expected in message
    assert _count(demo_sessions) == before


# --- history ---------------------------------------------------------------------------------------


def test_reimport_versions_changes_and_retires_only_when_asked(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 10, offset=100)
    # Power manhole covers (0105): the demo city has none, so this file is the full survey of its class.
    lamps = _lamps(points, first_seq=950_001, class_code="0105")
    first = tmp_path / "v1.gpkg"
    lamps.to_file(first, driver="GPKG")
    _run(demo_sessions, test_settings, first)

    again = _run(demo_sessions, test_settings, first)
    assert (again.new, again.changed, again.unchanged) == (0, 0, 10)

    corrected = lamps.copy()
    corrected.loc[0, "状态"] = "破损"
    corrected = corrected.drop(index=9)  # one lamp gone from the re-survey
    second = tmp_path / "v2.gpkg"
    corrected.to_file(second, driver="GPKG")
    report = _run(demo_sessions, test_settings, second)
    assert (report.new, report.changed, report.unchanged, report.retired) == (0, 1, 8, 0)
    code0, code9 = lamps["标识码"].iloc[0], lamps["标识码"].iloc[9]
    with demo_sessions() as session:
        versions = session.execute(
            text("SELECT status, valid_to IS NULL FROM component WHERE code = :c ORDER BY valid_from"),
            {"c": code0},
        ).all()
    assert versions == [("intact", False), ("damaged", True)]  # the old version keeps its valid-to
    assert _current(demo_sessions, [code9])["status"].tolist() == ["intact"]  # not retired silently

    retired = _run(demo_sessions, test_settings, second, retire_missing=True)
    assert retired.retired == 1 and retired.unchanged == 9
    with demo_sessions() as session:
        in_use = session.execute(
            text("SELECT in_use FROM component WHERE code = :c AND valid_to IS NULL"), {"c": code9}
        ).scalar_one()
    assert in_use is False


def test_retire_missing_spares_rejected_rows_and_a_dry_run_shows_what_it_would_void(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 6, offset=300)
    # Police manhole covers (0112): the demo city has none and no other test imports them, so this file is
    # the full survey of its class.
    covers = _lamps(points, first_seq=970_001, class_code="0112")
    first = tmp_path / "v1.gpkg"
    covers.to_file(first, driver="GPKG")
    assert _run(demo_sessions, test_settings, first).new == 6
    codes = list(covers["标识码"])

    resurvey = covers.copy()
    resurvey.loc[1, "状态"] = "坏了"  # rejected, but its cover is still there: only badly surveyed
    resurvey.loc[2, "标识码"] = None  # rejected, and nothing says which cover it is
    resurvey = resurvey.drop(index=5)  # gone from the re-survey
    second = tmp_path / "v2.gpkg"
    resurvey.to_file(second, driver="GPKG")
    before = (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch"))
    preview = _run(demo_sessions, test_settings, second, retire_missing=True, dry_run=True)
    assert (preview.rejected, preview.unchanged, preview.retired) == (2, 3, 2)
    assert any("rejected rows with no code: 1" in w for w in preview.warnings)
    assert (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch")) == before

    report = _run(demo_sessions, test_settings, second, retire_missing=True)
    assert (report.rejected, report.unchanged, report.retired) == (2, 3, 2)
    with demo_sessions() as session:
        in_use = dict(
            session.execute(
                text("SELECT code, in_use FROM component WHERE code = ANY(:codes) AND valid_to IS NULL"),
                {"codes": codes},
            ).all()
        )
    assert in_use == {
        codes[0]: True,
        codes[1]: True,
        codes[2]: False,
        codes[3]: True,
        codes[4]: True,
        codes[5]: False,
    }


def _points_in_communities(
    sessions: sessionmaker[Session], per_community: int, codes: list[str]
) -> pd.DataFrame:
    """``per_community`` points inside each of the given communities (inside unit grids too)."""
    with sessions() as session:
        rows = session.execute(
            text(
                "SELECT community, lon, lat FROM ("
                " SELECT cm.code AS community, ST_X(u.p) AS lon, ST_Y(u.p) AS lat,"
                "  row_number() OVER (PARTITION BY cm.code ORDER BY u.code) AS n"
                " FROM (SELECT code, ST_PointOnSurface(geom) AS p FROM unit_grid) u"
                " JOIN community cm ON ST_Within(u.p, cm.geom) WHERE cm.code = ANY(:codes)) x"
                " WHERE n <= :per ORDER BY community, n"
            ),
            {"codes": codes, "per": per_community},
        ).all()
    points = pd.DataFrame(rows, columns=["community", "lon", "lat"])
    assert (points.groupby("community").size() == per_community).all() and len(points) == len(
        codes
    ) * per_community
    return points


def test_retire_missing_voids_only_inside_the_area_asked_for(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # Two communities of one street (A, B) and one of another street (C); other manhole covers (0114):
    # the demo city has none, so these files are the whole survey of the class.
    a, b, c = "370102001001", "370102001002", "370102002001"
    points = _points_in_communities(demo_sessions, 2, [a, b, c])
    covers = _lamps(points, first_seq=960_001, class_code="0114")
    covers["community"] = points["community"].to_numpy()
    first = tmp_path / "v1.gpkg"
    covers.drop(columns="community").to_file(first, driver="GPKG")
    assert _run(demo_sessions, test_settings, first).new == 6

    # The re-survey of community A found only its first cover.
    resurvey = covers[covers["community"] == a].iloc[:1].drop(columns="community")
    second = tmp_path / "v2.gpkg"
    resurvey.to_file(second, driver="GPKG")
    gone_from_a = covers[covers["community"] == a]["标识码"].iloc[1]
    in_b = list(covers[covers["community"] == b]["标识码"])

    def voided() -> set[str]:
        with demo_sessions() as session:
            return set(
                session.execute(
                    text(
                        "SELECT code FROM component"
                        " WHERE class_code = '0114' AND valid_to IS NULL AND NOT in_use"
                    )
                ).scalars()
            )

    # Asked for the street, a dry run would void A's missing cover and both of B's; C is another street.
    street = _run(
        demo_sessions, test_settings, second, retire_missing=True, area_codes=(a[:9],), dry_run=True
    )
    assert (street.unchanged, street.retired, street.batch_id) == (1, 3, None)
    assert voided() == set()

    only_a = _run(demo_sessions, test_settings, second, retire_missing=True, area_codes=(a,))
    assert (only_a.unchanged, only_a.retired) == (1, 1)
    assert voided() == {gone_from_a}

    # Without --area the area is the communities the file touches: A again, where nothing is left to void.
    touched = _run(demo_sessions, test_settings, second, retire_missing=True, dry_run=True)
    assert touched.retired == 0
    assert voided() == {gone_from_a} and not set(in_b) & voided()


def test_an_area_no_community_lies_in_is_refused_before_the_file_is_read(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "v.gpkg"
    _lamps(_grid_points(demo_sessions, 2), first_seq=960_101, class_code="0114").to_file(path, driver="GPKG")
    before = (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch"))
    with pytest.raises(InvalidInputError) as refused:
        _run(
            demo_sessions, test_settings, path, retire_missing=True, area_codes=("370102001001", "370102099")
        )
    assert [(p.field, p.location) for p in refused.value.problems] == [("area", {"value": "370102099"})]
    assert "370102099: no loaded community lies in it" in refused.value.problems[0].message
    assert (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch")) == before


def test_one_import_starts_all_its_versions_at_one_instant(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 3, offset=200)
    lamps = _lamps(points, first_seq=960_001, class_code="0105")
    first = tmp_path / "v1.gpkg"
    lamps.head(2).to_file(first, driver="GPKG")
    _run(demo_sessions, test_settings, first)
    changed = lamps.copy()
    changed.loc[0, "状态"] = "破损"
    second = tmp_path / "v2.gpkg"
    changed.to_file(second, driver="GPKG")
    # A dry run counts the grids of the rows a real run writes: the new and the changed, not the unchanged.
    preview = _run(demo_sessions, test_settings, second, dry_run=True)
    assert (preview.new, preview.changed, preview.unchanged, preview.assigned_to_grid) == (1, 1, 1, 2)
    report = _run(demo_sessions, test_settings, second)
    assert (report.new, report.changed, report.unchanged, report.assigned_to_grid) == (1, 1, 1, 2)
    with demo_sessions() as session:
        rows = session.execute(
            text(
                "SELECT code, survey_batch_id = :b, valid_from, valid_to FROM component"
                " WHERE code = ANY(:codes) ORDER BY code, valid_from"
            ),
            {"b": report.batch_id, "codes": list(lamps["标识码"])},
        ).all()
        imported_at = session.execute(
            text("SELECT imported_at FROM survey_batch WHERE id = :b"), {"b": report.batch_id}
        ).scalar_one()
    # The changed lamp's old version ends exactly when the batch's versions (changed and new) begin, and
    # that is when the batch says it was imported.
    (_, _, old_from, old_to), (_, ours0, new_from, _), (_, ours1, _, _), (_, ours2, newest_from, _) = rows
    assert (ours0, ours1, ours2) == (True, False, True)
    assert old_from < old_to == new_from == newest_from == imported_at


def test_dry_run_writes_nothing(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 6)
    path = tmp_path / "dry.gpkg"
    _lamps(points).to_file(path, driver="GPKG")
    before = (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch"))
    report = _run(demo_sessions, test_settings, path, dry_run=True)
    assert report.dry_run and report.new == 6 and report.batch_id is None
    assert report.assigned_to_grid == 6  # the grids a real run would give, from the active plan
    assert (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch")) == before


def test_only_gis_staff_may_import(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    from gridsvc.errors import PermissionDeniedError

    path = tmp_path / "x.gpkg"
    _lamps(_grid_points(demo_sessions, 2)).to_file(path, driver="GPKG")
    with pytest.raises(PermissionDeniedError):
        _run(demo_sessions, test_settings, path, actor=Principal(name="调度员", role="dispatcher"))


# --- the two doors: HTTP upload and the CLI ---------------------------------------------------------


def test_http_upload_returns_the_import_and_its_report(
    demo_sessions: sessionmaker[Session], test_settings: Settings, demo_url: str, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 7)
    lamps = _lamps(points)
    lamps.loc[4, "状态"] = "坏了"
    lamps.loc[5, "geometry"] = None  # a problem without a value, beside one with: JSON has no NaN
    path = tmp_path / "upload.gpkg"
    lamps.to_file(path, driver="GPKG")
    staff = create_key(demo_sessions, name="测绘员", role="gis_staff", actor=LOCAL_OPERATOR).secret
    field_key = create_key(demo_sessions, name="网格员", role="field", actor=LOCAL_OPERATOR).secret
    with TestClient(create_app(test_settings, demo_url, sessions=demo_sessions)) as client:
        files = {"file": ("路灯普查.gpkg", path.read_bytes(), "application/geopackage+sqlite3")}
        assert client.post("/v1/imports/components", files=files).status_code == 401
        assert (
            client.post("/v1/imports/components", files=files, headers={"X-API-Key": field_key}).status_code
            == 403
        )
        response = client.post(
            "/v1/imports/components",
            files=files,
            data={"rebuild_indexes": "true"},  # a small file, told to rebuild all the same
            headers={"X-API-Key": staff},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["accepted"] == 5 and body["rejected"] == 2 and body["file"] == "路灯普查.gpkg"
        assert body["indexes_rebuilt"] is True
        assert body["problems"][0]["source_row"] == 5 and body["problems"][0]["field"] == "status"
        assert client.get(body["links"]["self"]).status_code == 401  # imports are GIS staff's business
        recorded = client.get(body["links"]["self"], headers={"X-API-Key": staff})
        assert recorded.status_code == 200, recorded.text
        job = recorded.json()
        assert job["counts"]["new"] == 5 and job["imported_by"] == "测绘员"
        assert [(p["source_row"], p["value"]) for p in job["problems"]] == [(5, "坏了"), (6, None)]
        csv = client.get(body["links"]["problems_csv"], headers={"X-API-Key": staff})
        assert csv.status_code == 200 and "坏了" in csv.content.decode("utf-8-sig")
        bad = client.post(
            "/v1/imports/components",
            files={"file": ("notes.txt", b"hello", "text/plain")},
            headers={"X-API-Key": staff},
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "file"
        # No file part, or a text value in its place: said in the client's words, not the framework's.
        for data, said in (
            ({"dry_run": "true"}, "missing: send the layer's file as the multipart form part named file"),
            (
                {"file": "a.gpkg"},
                'must be a file: a multipart form part with a filename="…", not a text value (RFC 7578 has a'
                ' part named only by filename*= read as text: give filename="…", UTF-8 for a Chinese name)',
            ),
        ):
            no_file = client.post("/v1/imports/components", data=data, headers={"X-API-Key": staff})
            assert no_file.status_code == 422
            assert no_file.json()["errors"] == [{"field": "file", "message": said}]
            assert no_file.json()["detail"] == f"the request is not valid: file: {said}"
        # A file part named only by RFC 5987's filename*= (the form parser reads it as a text value), and
        # an upload cut off in its file part, before the form's closing boundary (the parser keeps the parts
        # it completed, so the form would seem to have no file): each said as what it is.
        head = b'--cut\r\nContent-Disposition: form-data; name="dry_run"\r\n\r\ntrue\r\n--cut\r\n'
        gpkg = path.read_bytes()
        for disposition, body, status, said in (
            (
                "filename*=UTF-8''%E8%B7%AF%E7%81%AF.gpkg",
                gpkg + b"\r\n--cut--\r\n",
                422,
                "the request is not valid: file: must be a file",
            ),
            (
                'filename="路灯.gpkg"',
                gpkg[: len(gpkg) // 2],
                400,
                "the multipart body ends before its closing boundary (--cut--): the upload was cut off on"
                " the way; nothing was imported, send it again",
            ),
        ):
            part = f'Content-Disposition: form-data; name="file"; {disposition}\r\n\r\n'.encode()
            answer = client.post(
                "/v1/imports/components",
                content=head + part + body,
                headers={"Content-Type": "multipart/form-data; boundary=cut", "X-API-Key": staff},
            )
            assert answer.status_code == status, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["detail"].startswith(said)
        # A form value far past any real one is refused, not echoed back at its length.
        long_encoding = client.post(
            "/v1/imports/components",
            files={"file": ("notes.csv", b"lon,lat\n117,36\n", "text/csv")},
            data={"encoding": "x" * 100_000},
            headers={"X-API-Key": staff},
        )
        assert long_encoding.status_code == 422 and len(long_encoding.content) < 1_000
        assert long_encoding.json()["errors"][0]["field"] == "encoding"
        # One past the form parser's 1 MiB for a field (a mapping pasted from the wrong file) is said to be
        # that, with what to send instead, in the problem's errors like any other refusal.
        huge_mapping = client.post(
            "/v1/imports/components",
            files={"file": ("notes.csv", b"lon,lat\n117,36\n", "text/csv")},
            data={"mapping": "{" + " " * (2 << 20) + "}"},
            headers={"X-API-Key": staff},
        )
        assert huge_mapping.status_code == 400, huge_mapping.text
        assert huge_mapping.json()["errors"] == [
            {
                "field": "body",
                "message": "a form field other than the file is larger than 1 MiB: send the layer as the"
                ' part named file, with a filename="…", and the other fields (mapping, crs, layer, …) as'
                " short text",
            }
        ]
        # A mistyped option is refused, not ignored: dry-run (the CLI's spelling) would import for real.
        before = _count(demo_sessions, "SELECT count(*) FROM survey_batch")
        typo = client.post(
            "/v1/imports/components", files=files, data={"dry-run": "true"}, headers={"X-API-Key": staff}
        )
        assert typo.status_code == 422, typo.text
        assert typo.json()["errors"] == [
            {"field": "dry-run", "message": "not a form field of an import; did you mean dry_run?"}
        ]
        assert _count(demo_sessions, "SELECT count(*) FROM survey_batch") == before
        # Nor is an option sent twice read as its last value (dry_run true, then false, imported for real),
        # nor a second file imported instead of the first.
        twice = client.post(
            "/v1/imports/components",
            files=files,
            data={"dry_run": ["true", "false"]},
            headers={"X-API-Key": staff},
        )
        assert twice.status_code == 422, twice.text
        assert twice.json()["errors"] == [
            {"field": "dry_run", "message": "sent 2 times; send it once (one file per upload)"}
        ]
        two_files = client.post(
            "/v1/imports/components",
            files=[("file", files["file"]), ("file", files["file"])],
            data={"dry_run": "true"},
            headers={"X-API-Key": staff},
        )
        assert two_files.status_code == 422 and two_files.json()["errors"][0]["field"] == "file"
        assert _count(demo_sessions, "SELECT count(*) FROM survey_batch") == before

        # What is wrong with an option is said under that option, naming the file as it was sent.
        no_crs = client.post(
            "/v1/imports/components",
            files={
                "file": ("井盖.csv", "经度,纬度,标识码\n117.0,36.6,3701020101000001\n".encode(), "text/csv")
            },
            headers={"X-API-Key": staff},
        )
        problem = no_crs.json()["errors"][0]
        assert no_crs.status_code == 422 and problem["field"] == "crs"
        assert (
            problem["message"].startswith("井盖.csv has no coordinate reference system")
            and "/tmp" not in problem["message"]
        )
        # Said in the upload's words: the form field crs, not the CLI's --crs.
        assert "say which with crs (e.g. crs=EPSG:4527, crs=gcj02)" in problem["message"]
        assert "--" not in no_crs.text
        wrong_crs = client.post(
            "/v1/imports/components", files=files, data={"crs": "EPSG:999999"}, headers={"X-API-Key": staff}
        )
        assert wrong_crs.status_code == 422 and wrong_crs.json()["errors"][0]["field"] == "crs"
        no_layer = client.post(
            "/v1/imports/components", files=files, data={"layer": "路灯"}, headers={"X-API-Key": staff}
        )
        assert no_layer.status_code == 422 and no_layer.json()["errors"][0]["field"] == "layer"
        assert "路灯普查.gpkg has no layer '路灯'" in no_layer.json()["errors"][0]["message"]


def test_http_zip_refusals_name_the_upload_as_sent(
    demo_sessions: sessionmaker[Session], test_settings: Settings, demo_url: str, tmp_path: Path
) -> None:
    """A zip refused for its members names the upload, never the server's temporary folder; one holding a
    shapefile and a FileGDB is refused (the FileGDB was passed over without a word)."""
    points = _grid_points(demo_sessions, 2, offset=80)
    _lamps(points, first_seq=981_001).to_file(tmp_path / "lamps.shp", encoding="UTF-8")
    _lamps(points, first_seq=981_101).to_file(tmp_path / "survey.gdb", driver="OpenFileGDB", layer="lamps")
    parts = sorted(tmp_path.glob("lamps.*"))
    climbing, both = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(climbing, "w") as zipped:
        for part in parts:
            zipped.write(part, f"../../{part.name}")
    with zipfile.ZipFile(both, "w") as zipped:
        for part in [*parts, *sorted((tmp_path / "survey.gdb").iterdir())]:
            zipped.write(part, part.relative_to(tmp_path).as_posix())
    staff = create_key(demo_sessions, name="测绘员", role="gis_staff", actor=LOCAL_OPERATOR).secret
    with TestClient(create_app(test_settings, demo_url, sessions=demo_sessions)) as client:
        answers = {
            name: client.post(
                "/v1/imports/components",
                files={"file": (name, data.getvalue(), "application/zip")},
                data={"dry_run": "true"},
                headers={"X-API-Key": staff},
            )
            for name, data in (("路灯.zip", climbing), ("两种.zip", both))
        }
    climbed = answers["路灯.zip"].json()
    assert answers["路灯.zip"].status_code == 422 and "/tmp" not in answers["路灯.zip"].text
    assert climbed["detail"].startswith("路灯.zip: member '../../lamps.")
    assert answers["两种.zip"].status_code == 422
    assert "两种.zip holds a shapefile (lamps.shp) and a FileGDB (survey.gdb)" in answers["两种.zip"].text

    # Names as their senders read them: GBK bytes (which the form parser reads as Latin-1), a UTF-8 name
    # of Latin letters (to be left alone), a path (dropped); a contractor's name of 101 Chinese characters
    # (303 bytes, more than Linux takes for one name), and names with a tab or a NUL in them.
    _lamps(points, first_seq=981_201).to_file(tmp_path / "lamps.gpkg", driver="GPKG")
    data = (tmp_path / "lamps.gpkg").read_bytes()
    boundary = b"gridsvc-test-boundary"
    named = {}
    with TestClient(create_app(test_settings, demo_url, sessions=demo_sessions)) as client:
        long_name = "济南市历下区城市管理部件普查成果" * 6 + "路灯普查.gpkg"
        for sent in (
            "../../路灯普查.gpkg".encode("gbk"),
            "Müller.gpkg".encode(),
            long_name.encode(),
            "路灯\t普查.gpkg".encode(),
            "路灯\x00普查.gpkg".encode(),
        ):
            body = (
                b"--" + boundary + b'\r\nContent-Disposition: form-data; name="dry_run"\r\n\r\ntrue\r\n'
                b"--"
                + boundary
                + b'\r\nContent-Disposition: form-data; name="file"; filename="'
                + sent
                + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
                + data
                + b"\r\n--"
                + boundary
                + b"--\r\n"
            )
            answer = client.post(
                "/v1/imports/components",
                content=body,
                headers={
                    "Content-Type": f"multipart/form-data; boundary={boundary.decode()}",
                    "X-API-Key": staff,
                },
            )
            assert answer.status_code == 200, answer.text
            named[sent] = answer.json()["file"]
    assert list(named.values()) == [
        "路灯普查.gpkg",
        "Müller.gpkg",
        long_name,
        "路灯 普查.gpkg",
        "路灯 普查.gpkg",
    ]

    # A GeoPackage zipped to send it (with a macOS resource fork beside it) is read; a zip of two is
    # refused, naming them.
    one_gpkg, two_gpkgs = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(one_gpkg, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("成果/路灯.gpkg", data)
        zipped.writestr("__MACOSX/成果/._路灯.gpkg", b"\0" * 64)
    with zipfile.ZipFile(two_gpkgs, "w") as zipped:
        zipped.writestr("路灯.gpkg", data)
        zipped.writestr("井盖.gpkg", data)
    with TestClient(create_app(test_settings, demo_url, sessions=demo_sessions)) as client:
        zipped_answers = [
            client.post(
                "/v1/imports/components",
                files={"file": ("路灯.zip", sent.getvalue(), "application/zip")},
                data={"dry_run": "true"},
                headers={"X-API-Key": staff},
            )
            for sent in (one_gpkg, two_gpkgs)
        ]
    assert zipped_answers[0].status_code == 200, zipped_answers[0].text
    assert (zipped_answers[0].json()["format"], zipped_answers[0].json()["new"]) == ("GPKG", 2)
    assert zipped_answers[1].status_code == 422
    assert zipped_answers[1].json()["errors"] == [
        {
            "field": "file",
            "message": "路灯.zip holds 井盖.gpkg, 路灯.gpkg and no shapefile (.shp) or FileGDB (.gdb), which"
            " are what a zip is read for: import the one you mean itself, unzipped",
        }
    ]


def test_http_dry_run_and_refusal_hold_their_report_for_download(
    demo_sessions: sessionmaker[Session], test_settings: Settings, demo_url: str, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 5, offset=40)
    lamps = _lamps(points, first_seq=996_001)
    lamps.loc[2, "状态"] = "坏了"  # not a known status: row 3 is rejected
    path = tmp_path / "路灯.gpkg"
    lamps.to_file(path, driver="GPKG")
    settings = test_settings.model_copy(update={"data_dir": tmp_path / "data"})
    held_root = tmp_path / "data" / "import-reports"
    staff = create_key(demo_sessions, name="测绘员", role="gis_staff", actor=LOCAL_OPERATOR).secret
    field_key = create_key(demo_sessions, name="网格员", role="field", actor=LOCAL_OPERATOR).secret
    before = (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch"))
    files = {"file": ("路灯.gpkg", path.read_bytes(), "application/geopackage+sqlite3")}
    staff_header = {"X-API-Key": staff}
    with TestClient(create_app(settings, demo_url, sessions=demo_sessions)) as client:
        dry = client.post(
            "/v1/imports/components", files=files, data={"dry_run": "true"}, headers=staff_header
        )
        assert dry.status_code == 200, dry.text
        body = dry.json()
        assert (body["batch_id"], body["rejected"], body["new"]) == (None, 1, 4)
        assert body["report_file"] is None  # no server path goes out
        expires_in = datetime.fromisoformat(body["report_expires_at"]) - datetime.now(UTC)
        assert timedelta(hours=23) < expires_in <= timedelta(hours=24)  # GRIDSVC_HELD_REPORT_HOURS
        csv_link, gpkg_link = body["links"]["problems_csv"], body["links"]["problems_gpkg"]
        assert client.get(csv_link).status_code == 401
        assert client.get(csv_link, headers={"X-API-Key": field_key}).status_code == 403
        csv = client.get(csv_link, headers=staff_header)
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        table = pd.read_csv(io.BytesIO(csv.content), encoding="utf-8-sig", dtype=str)
        assert list(table["source_row"]) == ["3"] and table.loc[0, "field"] == "status"
        assert table.loc[0, "value"] == "坏了" and table.loc[0, "wkt"].startswith("POINT (117.")
        gpkg = client.get(gpkg_link, headers=staff_header)
        assert gpkg.status_code == 200
        (tmp_path / "held.gpkg").write_bytes(gpkg.content)
        layer = gpd.read_file(tmp_path / "held.gpkg")
        assert list(layer["source_row"]) == [3] and layer.crs.to_epsg() == 4490
        assert layer.geometry.iloc[0].distance(lamps.to_crs(4490).geometry.iloc[2]) < 1e-9

        # A strict upload refused for that row: 422, nothing written, and the report to fix it with.
        refused = client.post(
            "/v1/imports/components", files=files, data={"strict": "true"}, headers=staff_header
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["source_row"] == 3
        refused_csv = client.get(refused.json()["links"]["problems_csv"], headers=staff_header)
        assert refused_csv.status_code == 200 and "坏了" in refused_csv.content.decode("utf-8-sig")
        assert (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch")) == before
        assert len(list(held_root.iterdir())) == 2

        # A clean dry run and a recorded import hold nothing: the first has no report, the second keeps
        # its report with its batch.
        clean = lamps.drop(index=2)
        clean.to_file(tmp_path / "clean.gpkg", driver="GPKG")
        clean_files = {
            "file": ("clean.gpkg", (tmp_path / "clean.gpkg").read_bytes(), "application/octet-stream")
        }
        clean_dry = client.post(
            "/v1/imports/components", files=clean_files, data={"dry_run": "true"}, headers=staff_header
        )
        assert clean_dry.status_code == 200 and "links" not in clean_dry.json()
        recorded = client.post("/v1/imports/components", files=files, headers=staff_header)
        assert recorded.status_code == 201 and recorded.json()["links"]["self"].endswith(
            str(recorded.json()["batch_id"])
        )
        assert len(list(held_root.iterdir())) == 2

        # What an upload keeps with its import is in the upload's words too: crs=, not the CLI's --crs.
        wgs84 = tmp_path / "wgs84.gpkg"
        clean.to_crs(4326).to_file(wgs84, driver="GPKG")  # no problems: the warnings are kept all the same
        overridden = client.post(
            "/v1/imports/components",
            files={"file": ("wgs84.gpkg", wgs84.read_bytes(), "application/octet-stream")},
            data={"crs": "cgcs2000"},
            headers=staff_header,
        )
        assert overridden.status_code == 201, overridden.text
        kept = client.get(overridden.json()["links"]["self"], headers=staff_header).json()["warnings"]
        assert any("but crs=cgcs2000 was given" in w for w in kept), kept
        assert not any("--crs" in w or "gridsvc-upload" in w for w in kept), kept  # nor the server's path
        assert overridden.json()["warnings"] == kept

        # Expired, unknown or malformed ids are 404, and an expired report is removed when asked for.
        folder = held_root / csv_link.split("/")[-2]
        day_ago = time.time() - 25 * 3600
        os.utime(folder, (day_ago, day_ago))
        gone = client.get(csv_link, headers=staff_header)
        assert gone.status_code == 404 and "expired" in gone.json()["detail"]
        assert not folder.exists()
        for bad in ("AAAAAAAAAAAAAAAAAAAAAA", "..%2F..%2Fetc", "x" * 22):
            assert (
                client.get(f"/v1/imports/reports/{bad}/problems.csv", headers=staff_header).status_code == 404
            )
        assert client.get(refused.json()["links"]["problems_gpkg"], headers=staff_header).status_code == 200


def _job_ended(client: TestClient | httpx.Client, link: str, headers: dict[str, str]) -> dict[str, object]:
    """Poll a job over HTTP until it ends. Only where its key checks do not share the job's connection:
    a served app, or a job that does not touch the database."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state: dict[str, object] = client.get(link, headers=headers).json()
        if state["status"] != "running":
            return state
        time.sleep(0.1)
    raise AssertionError(f"the job at {link} did not end in 120 s")


def _wait_for_job(settings: Settings, link: str) -> None:
    """Wait for a job of an app on the test's one rolled-back connection to end, reading its state file.

    Polling over HTTP would check the key on that connection while the job's transaction runs on it: two
    threads' savepoints interleave there, and releasing one can take the other with it."""
    deadline = time.monotonic() + 120
    while import_jobs.job(settings, link.rsplit("/", 1)[1])["status"] == "running":
        assert time.monotonic() < deadline, f"the job at {link} did not end in 120 s"
        time.sleep(0.1)


def test_http_upload_in_the_background_is_a_job_to_poll(
    demo_sessions: sessionmaker[Session],
    test_settings: Settings,
    demo_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lamps = _lamps(_grid_points(demo_sessions, 6, offset=70), first_seq=998_001)
    lamps.loc[3, "状态"] = "坏了"
    path = tmp_path / "路灯.gpkg"
    lamps.to_file(path, driver="GPKG")
    settings = test_settings.model_copy(update={"data_dir": tmp_path / "data"})
    staff = {
        "X-API-Key": create_key(demo_sessions, name="测绘员", role="gis_staff", actor=LOCAL_OPERATOR).secret
    }
    field_key = create_key(demo_sessions, name="网格员", role="field", actor=LOCAL_OPERATOR).secret
    files = {"file": ("路灯.gpkg", path.read_bytes(), "application/geopackage+sqlite3")}
    with TestClient(create_app(settings, demo_url, sessions=demo_sessions)) as client:
        started = client.post(
            "/v1/imports/components", files=files, data={"background": "true"}, headers=staff
        )
        assert started.status_code == 202, started.text
        link = started.json()["links"]["self"]
        assert started.headers["location"] == link and started.json()["file"] == "路灯.gpkg"
        assert "process" not in started.json()
        assert started.json()["rows_in_file"] == 6  # counted by the check before the 202, not left null
        _wait_for_job(settings, link)
        assert client.get(link).status_code == 401
        assert client.get(link, headers={"X-API-Key": field_key}).status_code == 403
        done = client.get(link, headers=staff).json()
        assert done["status"] == "done" and done["rows_read"] == 6 and done["rows_in_file"] == 6
        result = cast(dict[str, Any], done["result"])
        assert (result["accepted"], result["rejected"], result["new"]) == (5, 1, 5)
        assert result["problems"][0]["source_row"] == 4
        batch = client.get(result["links"]["self"], headers=staff).json()
        assert batch["counts"]["new"] == 5 and batch["imported_by"] == "测绘员"

        # Options that cannot work, and a file the import would refuse whole before reading its rows (its
        # CRS, its layer, an area no community lies in), are refused before any job starts.
        wrong = client.post(
            "/v1/imports/components",
            files=files,
            data={"background": "true", "area": "370102"},
            headers=staff,
        )
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "area"
        csv = "经度,纬度,标识码,状态\n117.0,36.6,3701020101000001,坏了\n".encode()
        for form, field, said in (
            ({}, "crs", "has no coordinate reference system: say which with crs (e.g. crs=EPSG:4527"),
            ({"crs": "foo"}, "crs", "foo"),
            ({"crs": "EPSG:4490", "retire_missing": "true", "area": "999999999"}, "area", "999999999"),
            ({"crs": "EPSG:4490", "mapping": '{"code": "编号"}'}, "mapping", "编号"),
        ):
            answer = client.post(
                "/v1/imports/components",
                files={"file": ("井盖.csv", csv, "text/csv")},
                data={"background": "true", **form},
                headers=staff,
            )
            assert answer.status_code == 422, answer.text
            assert (
                answer.json()["errors"][0]["field"] == field and said in answer.json()["errors"][0]["message"]
            )
        no_code = client.post(
            "/v1/imports/components",
            files={"file": ("井盖.csv", "经度,纬度,BM\n117.0,36.6,3701020101000001\n".encode(), "text/csv")},
            data={"background": "true", "crs": "EPSG:4490"},
            headers=staff,
        )
        assert no_code.status_code == 422 and no_code.json()["errors"][0]["field"] == "mapping"
        assert 'say which with mapping={"code": "FIELD"}' in no_code.json()["errors"][0]["message"]
        assert not list(Path(tempfile.gettempdir()).glob("gridsvc-upload-*/井盖.csv"))  # uploads removed
        # A file refused for its rows fails its job with the problem a synchronous upload would answer.
        strict = client.post(
            "/v1/imports/components",
            files={"file": ("井盖.csv", csv, "text/csv")},
            data={"background": "true", "crs": "EPSG:4490", "strict": "true"},
            headers=staff,
        )
        assert strict.status_code == 202, strict.text
        _wait_for_job(settings, strict.json()["links"]["self"])
        failed = client.get(strict.json()["links"]["self"], headers=staff).json()
        error = cast(dict[str, Any], failed["error"])
        assert failed["status"] == "failed" and error["status"] == 422
        assert "strict mode refuses a file with any rejected row" in error["detail"]
        # The jobs still held, the latest first, without their (large) results; a status narrows them.
        listed = client.get("/v1/imports/jobs", headers=staff).json()
        assert [j["links"]["self"] for j in listed["jobs"]] == [strict.json()["links"]["self"], link]
        assert listed["count"] == 2 and {j["started_by"] for j in listed["jobs"]} == {"测绘员"}
        assert all("result" not in j and "process" not in j for j in listed["jobs"])
        assert "errors" in error and listed["jobs"][0]["error"]["detail"] == error["detail"]
        assert "errors" not in listed["jobs"][0]["error"]  # the failed job's rows: at its own link
        # One damaged state (a disk that filled up mid-write) does not hide the others.
        (settings.resolved_data_dir / "import-jobs" / f"{'x' * 22}.json").write_text("{", encoding="utf-8")
        assert client.get("/v1/imports/jobs", headers=staff).json()["count"] == 2
        done_only = client.get("/v1/imports/jobs/?status=done", headers=staff).json()["jobs"]
        assert [(j["status"], j["file"]) for j in done_only] == [("done", "路灯.gpkg")]
        assert client.get("/v1/imports/jobs", headers={"X-API-Key": field_key}).status_code == 403
        unknown_status = client.get("/v1/imports/jobs?status=stuck", headers=staff)
        assert unknown_status.status_code == 422
        assert unknown_status.json()["errors"][0]["field"] == "query.status"

        # A job whose service process is gone is failed, nothing imported: its transaction died with it.
        gone = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        )
        state_file = tmp_path / "data" / "import-jobs" / f"{link.rsplit('/', 1)[1]}.json"
        state = json.loads(state_file.read_text(encoding="utf-8"))
        state.update(status="running", process={**state["process"], "pid": int(gone.stdout)})
        state_file.write_text(json.dumps(state), encoding="utf-8")
        died = client.get(link, headers=staff).json()
        assert died["status"] == "failed" and "nothing of the file was imported" in died["error"]["detail"]
        # Its advice is a link that answers: this job had in fact committed, and its batch is listed.
        advised = died["error"]["detail"].split("(GET ")[1].split(")")[0]
        assert advised == "/v1/imports?file=%E8%B7%AF%E7%81%AF.gpkg"
        latest = client.get(advised, headers=staff).json()["imports"][0]  # the latest first
        assert (latest["file"], latest["links"]["self"]) == ("路灯.gpkg", result["links"]["self"])
        assert latest["counts"] == batch["counts"] and "problems" not in latest
        by_checksum = client.get(
            "/v1/imports",
            params={"checksum_sha256": hashlib.sha256(path.read_bytes()).hexdigest().upper(), "limit": 1},
            headers=staff,
        ).json()
        assert by_checksum["count"] == 1 and by_checksum["imports"][0]["id"] == latest["id"]
        assert client.get("/v1/imports?layer=roads&file=路灯.gpkg", headers=staff).json()["count"] == 0
        assert client.get("/v1/imports", headers={"X-API-Key": field_key}).status_code == 403
        assert client.get("/v1/imports?checksum_sha256=abc", headers=staff).status_code == 422
        # A live process with that pid is the job's only if it started when the job's did (pid reuse).
        for started, status in (("1", "failed"), (state["process"]["started"], "running")):
            state.update(process={**state["process"], "pid": os.getpid(), "started": started})
            state_file.write_text(json.dumps(state), encoding="utf-8")
            assert client.get(link, headers=staff).json()["status"] == status
        assert client.get("/v1/imports/jobs/nope", headers=staff).status_code == 404

    # Past GRIDSVC_MAX_IMPORT_JOBS running in this process, a background upload is 503 with Retry-After.
    one_job = settings.model_copy(update={"max_import_jobs": 1})
    release, cleaned = threading.Event(), threading.Event()
    busy = import_jobs.start(
        one_job,
        lambda _: (release.wait(60), ("done", {}))[1],
        layer="components",
        file="x",
        cleanup=lambda: None,
    )
    with TestClient(create_app(one_job, demo_url, sessions=demo_sessions)) as client:
        refused = client.post(
            "/v1/imports/components", files=files, data={"background": "true"}, headers=staff
        )
        assert refused.status_code == 503 and refused.headers["retry-after"] == "30"
        assert "GRIDSVC_MAX_IMPORT_JOBS" in refused.json()["detail"]
        with pytest.raises(import_jobs.JobsFullError):
            import_jobs.start(one_job, lambda _: ("done", {}), layer="roads", file="y", cleanup=cleaned.set)
        assert cleaned.is_set()  # the refused job's upload is removed all the same
        # Once a job reads done its place is free: a client uploading the next file at once gets no 503.
        # (The final state's write is slowed down, to hold open the moment between the two, if any.)
        real_write = import_jobs._write

        def slow_final_write(settings: Settings, job_id: str, state: dict[str, Any]) -> None:
            real_write(settings, job_id, state)
            if state["status"] != "running":
                time.sleep(0.5)

        monkeypatch.setattr(import_jobs, "_write", slow_final_write)
        release.set()
        while import_jobs.job(one_job, busy["job_id"])["status"] == "running":
            time.sleep(0.01)
        assert import_jobs.has_room(one_job)
        assert _job_ended(client, f"/v1/imports/jobs/{busy['job_id']}", staff)["status"] == "done"

    # A job whose upload cannot be removed still ends with its state written and its place free.
    def cleanup_fails() -> None:
        raise OSError("the upload folder is gone")

    unclean = import_jobs.start(
        one_job, lambda _: ("done", {}), layer="roads", file="z", cleanup=cleanup_fails
    )
    while import_jobs.job(one_job, unclean["job_id"])["status"] == "running":
        time.sleep(0.01)
    assert import_jobs.job(one_job, unclean["job_id"])["status"] == "done"
    assert import_jobs.has_room(one_job)


def test_a_long_report_is_kept_and_held_up_to_the_limit_and_says_so(
    demo_sessions: sessionmaker[Session],
    test_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imports_service, "STORED_PROBLEMS_LIMIT", 2)
    lamps = _lamps(_grid_points(demo_sessions, 4, offset=50), first_seq=997_001)
    lamps.loc[[0, 1, 3], "状态"] = "坏了"
    lamps.loc[1, "标识码"] = "12345"  # row 2 has two problems: the cut must not part them
    path = tmp_path / "坏.gpkg"
    lamps.to_file(path, driver="GPKG")
    settings = test_settings.model_copy(update={"data_dir": tmp_path / "data"})
    held_root = tmp_path / "data" / "import-reports"
    request = ImportRequest(path=path, dry_run=True, report_path=tmp_path / "all.csv", hold_report=True)
    report = import_components(demo_sessions, request, settings=settings, actor=LOCAL_OPERATOR)
    assert report.rejected == 3 and len(report.problems) == 4 and report.held_report is not None
    assert report.warnings[-1] == (
        "the report held for download lists the problems of rows up to 2 (3 of 4); "
        "`gridsvc import ... --report FILE` on the server writes them all"
    )
    held = held_root / report.held_report / "problems.csv"
    assert list(pd.read_csv(held, encoding="utf-8-sig")["source_row"]) == [1, 2]
    assert list(pd.read_csv(tmp_path / "all.csv", encoding="utf-8-sig")["source_row"]) == [1, 2, 4]
    # A recorded import keeps as many with its batch, and its stored warnings say so too; it holds nothing.
    recorded = import_components(
        demo_sessions, ImportRequest(path=path, hold_report=True), settings=settings, actor=LOCAL_OPERATOR
    )
    stored = imports_service.get_import(demo_sessions, int(recorded.batch_id or 0))
    assert sorted(p["source_row"] for p in stored["problems"]) == [1, 2, 2]
    assert stored["warnings"][-1].startswith(
        "the report kept with the import lists the problems of rows up to 2"
    )
    assert [f.name for f in held_root.iterdir()] == [report.held_report]


def test_http_upload_of_a_kmz(
    demo_sessions: sessionmaker[Session], test_settings: Settings, demo_url: str, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 3, offset=60)
    lamps = _lamps(points, first_seq=995_001)
    # Zipped KML as GDAL's LIBKML driver writes it (an ASCII layer name: LIBKML cannot read back the hex
    # it makes of a Chinese one).
    kmz = tmp_path / "lamps.kmz"
    lamps.to_crs(4326).to_file(kmz, driver="LIBKML", layer="lamps")
    staff = create_key(demo_sessions, name="测绘员", role="gis_staff", actor=LOCAL_OPERATOR).secret
    with TestClient(create_app(test_settings, demo_url, sessions=demo_sessions)) as client:
        response = client.post(
            "/v1/imports/components",
            files={"file": ("路灯.kmz", kmz.read_bytes(), "application/vnd.google-earth.kmz")},
            headers={"X-API-Key": staff},
        )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["format"], body["accepted"], body["new"]) == ("KML", 3, 3), body["problems"]


def _unit_grid_points(engine: Engine, n: int) -> pd.DataFrame:
    """n points inside the first unit grids of the shared demo database (seen by a CLI process)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom))"
                " FROM unit_grid ORDER BY code LIMIT :n"
            ),
            {"n": n},
        ).all()
    return pd.DataFrame(rows, columns=["lon", "lat"])


def _cli_dry_run(database_url: str, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`gridsvc import components PATH --dry-run ...` as a user types it (a dry run: the shared database
    is left as it was)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATABASE_URL=database_url, COLUMNS="200")
    command = [sys.executable, "-m", "gridsvc.cli", "import", "components", str(path), "--dry-run", *extra]
    return subprocess.run(command, env=env, cwd=NEUTRAL_CWD, capture_output=True, text=True, timeout=300)


def test_cli_dry_run_with_report(demo_url: str, demo_engine_shared: Engine, tmp_path: Path) -> None:
    lamps = _lamps(_unit_grid_points(demo_engine_shared, 4))
    lamps.loc[1, "标识码"] = "12345"
    path = tmp_path / "cli.gpkg"
    lamps.to_file(path, driver="GPKG")
    result = _cli_dry_run(demo_url, path, "--report", str(tmp_path / "问题.gpkg"))
    assert result.returncode == 0, result.stderr
    assert "dry run: nothing written" in result.stdout and "12345" in result.stdout
    problems = gpd.read_file(tmp_path / "问题.gpkg")
    assert problems["source_row"].tolist() == [2]


def _contractor_fields(lamps: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The same census under a contractor's own field names, which nothing recognises by itself."""
    return lamps.rename(columns={"标识码": "LAMP_ID", "名称": "LAMP_TXT", "状态": "COND"}).assign(
        SET_UP=["2023-05-04"] * len(lamps), FROM_WHO=["2023年部件普查"] * len(lamps)
    )


def test_a_mapping_names_the_fields_nothing_recognises(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 3, offset=70)
    lamps = _lamps(points, first_seq=996_001)
    path = tmp_path / "contractor.gpkg"
    _contractor_fields(lamps).to_file(path, driver="GPKG")
    mapping = {
        "code": "LAMP_ID",
        "name": "LAMP_TXT",
        "status": "COND",
        "initial_date": "SET_UP",
        "data_source": "FROM_WHO",
    }
    report = _run(demo_sessions, test_settings, path, mapping=mapping)
    assert (report.accepted, report.new) == (3, 3)
    got = _current(demo_sessions, list(lamps["标识码"]))
    assert got["name"].tolist() == list(lamps["名称"]) and set(got["status"]) == {"intact"}
    attributes = got["attributes"].iloc[0]
    # Standard fields without a column of their own, kept under their standard names.
    assert attributes["initial_date"] == "2023-05-04" and attributes["data_source"] == "2023年部件普查"
    assert "LAMP_ID" not in attributes and "LAMP_TXT" not in attributes


def test_a_file_with_two_fields_named_as_the_code_says_which_it_read(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # A census merged from two contractors' tables: 标识码 from one, OBJCODE (an older code) from the other.
    points = _grid_points(demo_sessions, 2, offset=71)
    lamps = _lamps(points, first_seq=997_001).assign(OBJCODE=["旧编号1", "旧编号2"])
    path = tmp_path / "合并.gpkg"
    lamps.to_file(path, driver="GPKG")
    report = _run(demo_sessions, test_settings, path)
    assert report.accepted == 2
    assert (
        "合并.gpkg: the code is read from its 标识码 field; OBJCODE is named as the code too and kept as "
        "a free attribute (to read OBJCODE instead, give --map code=OBJCODE)"
    ) in report.warnings
    assert [a["OBJCODE"] for a in _current(demo_sessions, list(lamps["标识码"]))["attributes"]] == [
        "旧编号1",
        "旧编号2",
    ]
    # Said once the mapping gives it: no warning.
    again = _run(demo_sessions, test_settings, path, mapping={"code": "标识码"}, dry_run=True)
    assert not any("named as the code" in w for w in again.warnings)


def test_cli_mapping_profile(demo_url: str, demo_engine_shared: Engine, tmp_path: Path) -> None:
    lamps = _lamps(_unit_grid_points(demo_engine_shared, 3), first_seq=997_001)
    path = tmp_path / "contractor.gpkg"
    _contractor_fields(lamps).to_file(path, driver="GPKG")
    profile = tmp_path / "承包商.yml"
    profile.write_text("code: LAMP_ID\nname: LAMP_TXT\nstatus: COND\n", encoding="utf-8")
    # LAMP_ID means nothing by itself: with no field for the code every row would be rejected, so the
    # file is refused whole, naming its fields and the option that says which one it is.
    without = _cli_dry_run(demo_url, path)
    assert without.returncode == 1 and "Traceback" not in without.stderr
    said = " ".join(without.stderr.split())
    assert "contractor.gpkg: no field holds the code, so every row would be rejected" in said
    assert "LAMP_ID" in said and "--map code=FIELD" in said
    with_profile = _cli_dry_run(demo_url, path, "--mapping", str(profile), "--map", "data_source=FROM_WHO")
    assert with_profile.returncode == 0, with_profile.stderr
    assert "│ accepted" in with_profile.stdout and "problems" not in with_profile.stdout


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_an_import_killed_or_cancelled_while_staging_leaves_the_database_unchanged(
    stop: signal.Signals, demo_url: str, demo_engine_shared: Engine, tmp_path: Path
) -> None:
    with demo_engine_shared.connect() as conn:
        box = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)"
                " FROM (SELECT ST_Extent(geom) e FROM district) d"
            )
        ).one()
        before = conn.execute(
            text("SELECT count(*), (SELECT count(*) FROM survey_batch) FROM component")
        ).one()
    rng = np.random.default_rng(1)
    n = 300_000
    lon = rng.uniform(box[0] + 0.01, box[2] - 0.01, n)
    lat = rng.uniform(box[1] + 0.01, box[3] - 0.01, n)
    big = gpd.GeoDataFrame(
        {"标识码": [f"370102{LAMP}{i:06d}" for i in range(n)], "状态": "完好"},
        geometry=shapely.points(lon, lat),
        crs="EPSG:4490",
    )
    path = tmp_path / "big.gpkg"
    big.to_file(path, driver="GPKG")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATABASE_URL=demo_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "gridsvc.cli", "import", "components", str(path), "--chunk-rows", "5000"],
        env=env,
        cwd=NEUTRAL_CWD,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until the import is COPYing rows into its stage, then stop it
            with demo_engine_shared.connect() as conn:
                copying = conn.execute(
                    # Its transaction has an id once it has written anything (plan lock, staging tables).
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gridsvc'"
                        " AND backend_xid IS NOT NULL AND query LIKE 'COPY %'"
                    )
                ).scalar_one()
            if copying or process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the import finished before it could be stopped"
        time.sleep(0.3)
        process.send_signal(stop)
    finally:
        _, err = process.communicate(timeout=60)
    if stop == signal.SIGINT:  # Ctrl+C: rolled back by the import itself, and it says so
        assert process.returncode == 130, err
        assert "cancelled: nothing of big.gpkg was imported; the database is as it was before" in err
        assert "Traceback" not in err
    time.sleep(0.5)  # after a kill, the server notices the dropped connection and rolls back
    with demo_engine_shared.connect() as conn:
        after = conn.execute(
            text("SELECT count(*), (SELECT count(*) FROM survey_batch) FROM component")
        ).one()
    assert tuple(after) == tuple(before)


# The CLI, with Ctrl+C pressed while `gridsvc import` loads its libraries (pandas): the interrupt raised
# there, or lost there (as pandas' loading code can lose it), must cancel all the same.
_CTRL_C_WHILE_LOADING = """
import builtins, os, signal, sys, time
from gridsvc.cli.main import app
real_import = builtins.__import__
def loading(name, *args, **kwargs):
    if name == "gis.fieldmap" and not loading.done:
        loading.done = True
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the KeyboardInterrupt comes here
        except KeyboardInterrupt:
            if sys.argv[1] == "lost":
                pass
            else:
                raise
    return real_import(name, *args, **kwargs)
loading.done = False
builtins.__import__ = loading
app(sys.argv[2:], prog_name="gridsvc")
"""


@pytest.mark.parametrize("interrupt", ["raised", "lost"])
def test_ctrl_c_while_the_cli_loads_its_libraries_cancels_the_import(
    interrupt: str, demo_url: str, demo_sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "早按.gpkg"
    _lamps(_grid_points(demo_sessions, 3, offset=300), first_seq=982_001).to_file(path, driver="GPKG")
    before = (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATABASE_URL=demo_url)
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_WHILE_LOADING, interrupt, "import", "components", str(path)],
        env=env,
        cwd=NEUTRAL_CWD,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 130, done.stderr
    assert "cancelled: nothing of 早按.gpkg was imported; the database is as it was before" in done.stderr
    assert (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch")) == before


# Rows, the newest id, current versions and survey batches: what an import that was stopped must leave.
_COMPONENT_STATE = text(
    "SELECT count(*), max(id), count(*) FILTER (WHERE valid_to IS NULL),"
    " (SELECT count(*) FROM survey_batch) FROM component"
)


def _resurvey_held_up(engine: Engine, tmp_path: Path) -> tuple[Path, Connection]:
    """A re-survey of 200 of the demo's lamps that finds them all damaged, and a connection holding the
    last of them. Each lamp gets a new version, and the import first closes the current one (UPDATE ... SET
    valid_to): that UPDATE waits for the held lamp, so a test can stop the import exactly then. Roll the
    connection back to let the import go on."""
    with engine.connect() as conn:
        lamps = gpd.read_postgis(
            text(
                "SELECT code AS 标识码, '破损' AS 状态, geom FROM component"
                " WHERE class_code = :lamp AND valid_to IS NULL AND status = 'intact' ORDER BY code LIMIT 200"
            ),
            conn,
            params={"lamp": LAMP},
        )
    assert len(lamps) == 200
    path = tmp_path / "复查.gpkg"
    lamps.to_file(path, driver="GPKG")
    holder = engine.connect()
    holder.execute(
        text("SELECT id FROM component WHERE code = :c AND valid_to IS NULL FOR UPDATE"),
        {"c": lamps["标识码"].iloc[-1]},
    )
    return path, holder


def _wait_for_import_held_up(engine: Engine, still_running: Callable[[], bool]) -> None:
    """Wait until an import's UPDATE waits for the lamp :func:`_resurvey_held_up` holds."""
    deadline = time.monotonic() + 120
    while still_running() and time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gridsvc'"
                    " AND wait_event_type = 'Lock' AND query LIKE 'UPDATE component%'"
                )
            ).scalar_one():
                return
        time.sleep(0.02)
    raise AssertionError("the import never reached the closing of versions")


def _component_state_returns_to(engine: Engine, before: tuple[Any, ...]) -> tuple[Any, ...]:
    deadline = time.monotonic() + 30
    while True:  # after a kill, the server notices the dropped connection and rolls back
        with engine.connect() as conn:
            after = tuple(conn.execute(_COMPONENT_STATE).one())
        if after == before or time.monotonic() > deadline:
            return after
        time.sleep(0.2)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_a_reimport_killed_or_cancelled_while_closing_versions_leaves_them_as_they_were(
    stop: signal.Signals, demo_url: str, demo_engine_shared: Engine, tmp_path: Path
) -> None:
    with demo_engine_shared.connect() as conn:
        before = tuple(conn.execute(_COMPONENT_STATE).one())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATABASE_URL=demo_url)
    path, holder = _resurvey_held_up(demo_engine_shared, tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "gridsvc.cli", "import", "components", str(path)],
        env=env,
        cwd=NEUTRAL_CWD,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = ""
    try:
        _wait_for_import_held_up(demo_engine_shared, lambda: process.poll() is None)
        process.send_signal(stop)
        if stop == signal.SIGINT:
            # Ctrl+C cancels the statement the import waits in: it ends while the lamp is still held.
            _, err = process.communicate(timeout=30)
    finally:
        holder.rollback()
        holder.close()
        if process.returncode is None:
            _, err = process.communicate(timeout=60)
    if stop == signal.SIGINT:
        assert process.returncode == 130, err
        assert "cancelled: nothing of 复查.gpkg was imported" in err
    assert _component_state_returns_to(demo_engine_shared, before) == before


def test_a_cancel_is_taken_until_the_commit_begins_and_refused_from_then_on() -> None:
    early = imports_service.Cancellation()
    assert early.cancel("cancelled by 测绘员") and early.reason == "cancelled by 测绘员"
    with pytest.raises(imports_service.ImportCancelled) as stopped:
        early.commit_now()  # the commit does not begin
    assert stopped.value.reason == "cancelled by 测绘员"
    late = imports_service.Cancellation()
    late.commit_now()
    assert late.cancel("cancelled by 测绘员") is False and late.reason is None
    ended = imports_service.Cancellation()
    ended.end()
    assert ended.cancel("the service stopped while the import ran") is False


def test_a_background_import_cancelled_or_stopped_with_the_service_rolls_back(
    demo_url: str, demo_engine_shared: Engine, tmp_path: Path
) -> None:
    # The real server (uvicorn in its own process), the import held up in the middle of a statement: a cancel
    # over HTTP, and then a service stopped under a running job, each end it at once and roll it back.
    with demo_engine_shared.connect() as conn:
        before = tuple(conn.execute(_COMPONENT_STATE).one())
    # Committed (the served process must see it), and deleted at the end: the shared demo city has no keys.
    issued = create_key(
        sessionmaker(bind=demo_engine_shared), name="测绘员", role="gis_staff", actor=LOCAL_OPERATOR
    )
    staff = {"X-API-Key": issued.secret}
    path, holder = _resurvey_held_up(demo_engine_shared, tmp_path)
    files = {"file": ("复查.gpkg", path.read_bytes(), "application/geopackage+sqlite3")}
    data_dir = tmp_path / "data"
    try:
        with served_gridsvc(demo_url, DATA_DIR=str(data_dir)) as base, httpx.Client(base_url=base) as http:
            started = http.post(
                "/v1/imports/components", files=files, data={"background": "true"}, headers=staff
            )
            assert started.status_code == 202, started.text
            link = started.json()["links"]["self"]
            _wait_for_import_held_up(
                demo_engine_shared, lambda: http.get(link, headers=staff).json()["status"] == "running"
            )
            asked = http.post(f"{link}/cancel", headers=staff)
            assert asked.status_code == 202, asked.text
            assert asked.json()["status"] == "running" and asked.json()["cancel_requested"]["by"] == "测绘员"
            ended = _job_ended(http, link, staff)  # the lamp is still held: the cancel did not wait for it
            assert ended["status"] == "cancelled", ended
            detail = cast(dict[str, Any], ended["error"])["detail"]
            assert detail.startswith("cancelled by 测绘员: nothing of 复查.gpkg was imported"), detail
            again = http.post(f"{link}/cancel", headers=staff)
            assert again.status_code == 409 and "has ended (cancelled)" in again.json()["detail"]
            assert (
                http.post("/v1/imports/jobs/AAAAAAAAAAAAAAAAAAAAAA/cancel", headers=staff).status_code == 404
            )
            second = http.post(
                "/v1/imports/components", files=files, data={"background": "true"}, headers=staff
            )
            job_id = second.json()["job_id"]
            _wait_for_import_held_up(demo_engine_shared, lambda: True)
        # Out of the block: the server was stopped (SIGTERM) under the second job, which was running.
        state = json.loads((data_dir / "import-jobs" / f"{job_id}.json").read_text(encoding="utf-8"))
        assert state["status"] == "cancelled", state
        assert state["error"]["detail"].startswith("the service stopped while the import ran: nothing of")
    finally:
        holder.rollback()
        holder.close()
        with demo_engine_shared.begin() as conn:
            conn.execute(text("DELETE FROM api_key WHERE id = :id"), {"id": issued.id})
    assert _component_state_returns_to(demo_engine_shared, before) == before


def test_report_json_is_serialisable(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "j.gpkg"
    _lamps(_grid_points(demo_sessions, 3)).to_file(path, driver="GPKG")
    report = _run(demo_sessions, test_settings, path)
    assert json.loads(json.dumps(report.to_dict()))["new"] == 3


def test_line_and_polygon_components_where_the_class_says_so(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 2)
    (x1, y1), (x2, y2) = points[["lon", "lat"]].to_numpy()
    fence = shapely.LineString([(x1, y1), (x1 + 0.0005, y1)])  # 道路护栏 0290: a line class
    belt = shapely.box(x2, y2, x2 + 0.0003, y2 + 0.0002)  # 绿化带 0490: a polygon class
    frame = gpd.GeoDataFrame(
        {"标识码": ["3701020290900001", "3701020490900001"], "名称": ["护栏", "绿化带"]},
        geometry=[fence, belt],
        crs="EPSG:4490",
    )
    path = tmp_path / "线面部件.gpkg"
    frame.to_file(path, driver="GPKG")
    report = _run(demo_sessions, test_settings, path)
    assert (report.accepted, report.assigned_to_grid) == (2, 2)
    with demo_sessions() as session:
        kinds = session.execute(
            text(
                "SELECT class_code, GeometryType(geom) FROM component"
                " WHERE survey_batch_id = :b ORDER BY code"
            ),
            {"b": report.batch_id},
        ).all()
    assert kinds == [("0290", "LINESTRING"), ("0490", "POLYGON")]
    # A point class given a line is refused.
    frame.loc[0, "标识码"] = "3701020118900099"
    frame.to_file(path, driver="GPKG")
    mismatch = _run(demo_sessions, test_settings, path, dry_run=True)
    assert [(p.source_row, p.field) for p in mismatch.problems] == [(1, "geometry")]


# --- grids at edges, COPY encoding, a failure part way -----------------------------------------------


@pytest.mark.parametrize("found", ["in SQL", "in memory"])
def test_grids_at_shared_vertices_in_gaps_and_outside_are_the_rules_answer(
    demo_sessions: sessionmaker[Session],
    test_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    found: str,
) -> None:
    # A small file finds its grids in SQL; a file with as many rows as the plan has grids, in memory
    # (gis.gridindex). Both must give every component the grid of the rule, which plan activation's SQL
    # gives it too: the grid at its representative point (smallest code on shared edges), else the nearest
    # within locate_nearest_tolerance_m (100 m) in the metric CRS, else none.
    monkeypatch.setattr(imports_service, "_grids_in_memory", lambda rows, grids: found == "in memory")
    with demo_sessions() as session:
        # Grid vertices are shared by two to four grids: the smallest code must win, as in SQL.
        vertices = session.execute(
            text(
                "SELECT DISTINCT ST_X(p), ST_Y(p) FROM (SELECT (ST_DumpPoints(geom)).geom AS p FROM"
                " (SELECT geom FROM unit_grid ORDER BY code LIMIT 40) g) v"
            )
        ).all()
        district = shapely.from_wkb(
            bytes(session.execute(text("SELECT ST_AsBinary(geom) FROM district")).scalar_one())
        )
    rng = np.random.default_rng(7)
    # Random points over the district's box: inside grids, in gaps between them, and outside the district
    # but inside the city box (accepted: with the nearest grid when one is within 100 m, else none), and
    # points around the district's edge some 45 m and 140 m outside it. Those outside are coded for 历城区,
    # whose boundary the demo does not load: coded for 历下区, they would not be where their code says.
    minx, miny, maxx, maxy = district.bounds
    around = [
        shapely.line_interpolate_point(
            district.buffer(degrees).exterior, np.linspace(0, 1, 30), normalized=True
        )
        for degrees in (0.0005, 0.0015)
    ]
    edge = np.concatenate(around)
    lon = np.concatenate(
        [[v[0] for v in vertices], rng.uniform(minx - 0.02, maxx + 0.02, 300), shapely.get_x(edge)]
    )
    lat = np.concatenate(
        [[v[1] for v in vertices], rng.uniform(miny - 0.02, maxy + 0.02, 300), shapely.get_y(edge)]
    )
    n = len(lon)

    def county(geometries: np.ndarray) -> np.ndarray:
        inside = shapely.intersects(district, shapely.point_on_surface(geometries))
        return np.where(inside, "370102", "370112")

    geometries = shapely.points(lon, lat)
    points = gpd.GeoDataFrame(
        {"标识码": [f"{c}{LAMP}{800_001 + i:06d}" for i, c in enumerate(county(geometries))], "状态": "完好"},
        geometry=geometries,
        crs="EPSG:4490",
    )
    assert (points["标识码"].str[:6] == "370112").sum() > 50
    # Green belts (polygons) are placed by their point on surface, as in SQL.
    belt_geometries = shapely.box(lon[-40:], lat[-40:], lon[-40:] + 0.0007, lat[-40:] + 0.0003)
    belts = gpd.GeoDataFrame(
        {
            "标识码": [f"{c}{GREEN_BELT}{800_001 + i:06d}" for i, c in enumerate(county(belt_geometries))],
            "状态": "完好",
        },
        geometry=belt_geometries,
        crs="EPSG:4490",
    )
    frame = pd.concat([points, belts], ignore_index=True)
    n = len(frame)
    path = tmp_path / "edges.gpkg"
    frame.to_file(path, driver="GPKG")
    report = _run(demo_sessions, test_settings, path, chunk_rows=100)  # grids found chunk by chunk
    assert report.accepted == n
    reference = """
        SELECT c.unit_grid_id, c.responsibility_grid_id, coalesce(g.id, n.id),
               CASE WHEN g.id IS NOT NULL THEN g.responsibility_grid_id ELSE n.responsibility_grid_id END,
               g.owners, n.metres
        FROM component c
        LEFT JOIN LATERAL (
            SELECT u.id, u.responsibility_grid_id, count(*) OVER () AS owners
            FROM unit_grid u JOIN grid_plan p ON p.id = u.plan_id AND p.status = 'active'
            WHERE ST_Intersects(u.geom, ST_PointOnSurface(c.geom)) ORDER BY u.code LIMIT 1
        ) g ON true
        LEFT JOIN LATERAL (  -- every grid of the plan measured, no index: the rule as written
            SELECT u.id, u.responsibility_grid_id,
                   ST_Distance(
                       ST_Transform(u.geom, 4548), ST_Transform(ST_PointOnSurface(c.geom), 4548)
                   ) AS metres
            FROM unit_grid u JOIN grid_plan p ON p.id = u.plan_id AND p.status = 'active'
            WHERE g.id IS NULL ORDER BY metres, u.code LIMIT 1
        ) n ON n.metres <= :near
        WHERE c.survey_batch_id = :b ORDER BY c.code
    """
    params = {"b": report.batch_id, "near": test_settings.locate_nearest_tolerance_m}
    with demo_sessions() as session:
        rows = session.execute(text(reference), params).all()
        # Activating the plan again gives every component the same grid (rolled back).
        plan_id = session.execute(text("SELECT id FROM grid_plan WHERE status = 'active'")).scalar_one()
        plans_repo.regrid_components(session, imports_service.grid_rule(plan_id, test_settings))
        regridded = session.execute(text(reference), params).all()
        session.rollback()
    assert len(rows) == n
    assert [(r[0], r[1]) for r in rows] == [(r[2], r[3]) for r in rows]
    assert [(r[0], r[1]) for r in regridded] == [(r[0], r[1]) for r in rows]
    owners = [r[4] or 0 for r in rows]
    nearest = [r[5] for r in rows if r[5] is not None]
    assert max(owners) >= 2  # shared vertices were tested
    assert len(nearest) > 20 and max(nearest) > 30  # points near the district, given the nearest grid
    assert sum(1 for r in rows if r[2] is None) > 30  # and points farther away, given none
    assert report.assigned_to_grid == sum(1 for r in rows if r[0] is not None)
    assert any("no unit grid" in w for w in report.warnings)


def test_text_that_copy_and_json_must_escape_is_stored_as_written(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 4)
    lamps = _lamps(points)
    awkward = ["路灯\t1号", "路灯\t2号 \\N", 'say "hi"\r\n然后', "tab\tand\\backslash"]
    lamps["名称"] = awkward
    lamps["灯杆高度"] = awkward  # a free attribute: JSON inside COPY
    lamps["主管部门"] = ["照明", "LIGHTING", "不存在的部门\t甲", None]
    path = tmp_path / "awkward.gpkg"
    lamps.to_file(path, driver="GPKG")
    report = _run(demo_sessions, test_settings, path)
    assert report.accepted == 4
    got = _current(demo_sessions, list(lamps["标识码"]))
    assert got["name"].tolist() == awkward
    assert [a["灯杆高度"] for a in got["attributes"]] == awkward
    # 照明 and LIGHTING name the lighting department; text naming none is kept in the attributes.
    departments = [v if isinstance(v, str) else None for v in got["owner_department_code"]]
    assert departments == ["lighting", "lighting", None, None]
    assert got["attributes"].iloc[2]["supervisor"] == "不存在的部门\t甲"
    assert "supervisor" not in got["attributes"].iloc[3]


def test_point_ewkb_is_what_shapely_writes() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-180, 180, 1000), [0.0, -0.0, 117.123456789012345, 1e-300]])
    y = np.concatenate([rng.uniform(-90, 90, 1000), [0.0, 36.5, -0.0, -1e300]])
    ours = imports_repo.point_ewkb_hex(x, y).astype(object)
    assert list(ours) == list(bulk.ewkb_hex(shapely.points(x, y)))


def test_copy_text_escapes_and_nulls() -> None:
    fields = imports_repo.copy_text(
        np.array(["a\tb", "c\\d", "e\nf\rg", None, float("nan"), pd.NA, "中", "", 12.5], dtype=object)
    )
    assert fields == ["a\\tb", "c\\\\d", "e\\nf\\rg", "\\N", "\\N", "\\N", "中", "", "12.5"]


def test_copy_block_is_a_line_per_row() -> None:
    block = imports_repo.copy_block([imports_repo.copy_text(["a\nb", None]), ["1", "2"]])
    assert block == b"a\\nb\t1\n\\N\t2\n"
    assert imports_repo.copy_block([[], []]) == b""


def test_a_failure_part_way_leaves_nothing_and_stops_the_writer(
    demo_sessions: sessionmaker[Session],
    test_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    points = _grid_points(demo_sessions, 40)
    path = tmp_path / "fails.gpkg"
    _lamps(points).to_file(path, driver="GPKG")
    before = (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch"))
    real_write, real_encode = imports_repo.stage_components, imports_service._encode_components
    calls = []

    def slow_write(*args: object, **kwargs: object) -> object:
        time.sleep(0.3)  # still writing when the next chunk fails
        return real_write(*args, **kwargs)  # type: ignore[arg-type]

    def encode_then_fail(*args: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real_encode(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(imports_repo, "stage_components", slow_write)
    monkeypatch.setattr(imports_service, "_encode_components", encode_then_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        _run(demo_sessions, test_settings, path, chunk_rows=10)
    assert (_count(demo_sessions), _count(demo_sessions, "SELECT count(*) FROM survey_batch")) == before
    # The connection is usable afterwards: nothing is left running on it.
    monkeypatch.setattr(imports_repo, "stage_components", real_write)
    monkeypatch.setattr(imports_service, "_encode_components", real_encode)
    assert _run(demo_sessions, test_settings, path).new == 40


def test_objects_alive_before_reading_are_frozen_out_of_the_collector(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _grid_points(demo_sessions, 20)
    path = tmp_path / "frozen.gpkg"
    _lamps(points, first_seq=950_001).to_file(path, driver="GPKG")
    frozen_while_reading: list[int] = []

    def progress(rows: int, total: int) -> None:
        frozen_while_reading.append(gc.get_freeze_count())

    gc.unfreeze()  # whatever earlier tests froze (the plan locator does) goes back to the collector
    request = ImportRequest(path=path, dry_run=True, chunk_rows=10)
    report = import_components(
        demo_sessions, request, settings=test_settings, actor=LOCAL_OPERATOR, progress=progress
    )
    assert report.new == 20
    assert len(frozen_while_reading) == 2 and all(frozen_while_reading)


def test_an_empty_layer_imports_nothing_and_says_so(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "路灯.gpkg"
    empty = gpd.GeoDataFrame({"标识码": pd.Series(dtype=str)}, geometry=gpd.GeoSeries([], crs="EPSG:4490"))
    empty.to_file(path, layer="路灯", driver="GPKG", geometry_type="Point")
    before = _count(demo_sessions)
    report = _run(demo_sessions, test_settings, path)
    assert (report.rows_read, report.new) == (0, 0) and _count(demo_sessions) == before
    assert report.warnings == [
        "the file's layer 路灯 has no rows, so nothing was imported: is it the right file and layer?"
    ]


def test_a_component_coded_in_another_city_is_rejected_naming_the_city(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # 110101 is 东城区 of Beijing: no county of 济南市, loaded or not, whatever the point lies in.
    lamps = _lamps(_grid_points(demo_sessions, 2, offset=460), first_seq=953_001)
    lamps.loc[1, "标识码"] = "110101" + lamps.loc[1, "标识码"][6:]
    lamps.to_file(tmp_path / "lamps.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "lamps.gpkg", dry_run=True)
    assert (report.accepted, report.rejected) == (1, 1)
    assert [(p.source_row, p.field, p.reason) for p in report.problems] == [
        (
            2,
            "code",
            f"{lamps.loc[1, '标识码']} starts with county 110101, which is not a county of 济南市 (370100): "
            "the city's county codes start with 3701",
        )
    ]


def test_a_shapefile_has_one_checksum_however_it_comes(tmp_path: Path) -> None:
    """Its .shp, its folder, a zip of it (flat or in a folder, with upper-case names) are the same
    content; a corrected .dbf, or a changed .cpg, is another. Index and metadata files do not count."""
    from gridsvc.services.imports import file_checksum

    folder = tmp_path / "路灯"
    folder.mkdir()
    points = pd.DataFrame({"lon": [117.05, 117.051], "lat": [36.65, 36.651]})
    lamps = _lamps(points, first_seq=990_001).to_crs("EPSG:4527")
    lamps.to_file(folder / "路灯.shp", encoding="GBK")
    (folder / "路灯.shp.xml").write_text("<metadata/>")  # ArcGIS's metadata: not content
    shp = folder / "路灯.shp"
    flat, nested = tmp_path / "flat.zip", tmp_path / "nested.zip"
    with zipfile.ZipFile(flat, "w") as a, zipfile.ZipFile(nested, "w") as b:
        for part in sorted(folder.iterdir()):
            a.write(part, part.name)
            b.write(part, f"普查/{part.stem}{part.suffix.upper()}")
    same = {file_checksum(path) for path in (shp, folder, flat, nested)}
    assert len(same) == 1
    assert (folder / "路灯.cpg").read_text() == "GBK"  # pyogrio wrote it
    (folder / "路灯.cpg").write_text("936")  # the same code page, said otherwise: another file
    assert file_checksum(shp) not in same and file_checksum(folder) == file_checksum(shp)
    lamps.assign(名称="改过").to_file(shp, encoding="GBK")
    assert file_checksum(shp) not in same | {file_checksum(flat)}
