"""Boundaries known by the names of their level (社区代码, 街道名称, 区县代码, ...)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.services.access import LOCAL_OPERATOR
from gridsvc.services.imports import ImportRequest, import_layer
from gridsvc.settings import Settings


def test_a_street_file_with_its_district_s_fields_is_read_by_its_own(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    with demo_sessions() as session:
        x, y = session.execute(
            text(
                "SELECT ST_X(p), ST_Y(p)"
                " FROM (SELECT ST_PointOnSurface(geom) p FROM district WHERE code = '370102') d"
            )
        ).one()
    streets = gpd.GeoDataFrame(
        {
            "区县代码": ["370102"],
            "区县名称": ["历下区"],
            "街道代码": ["370102098"],
            "街道名称": ["新建街道"],
        },
        geometry=[shapely.box(x - 0.002, y - 0.002, x + 0.002, y + 0.002)],
        crs="EPSG:4490",
    )
    path = tmp_path / "街道.gpkg"
    streets.to_file(path, driver="GPKG")
    request = ImportRequest(path=path, layer="boundaries", level="street")
    report = import_layer(demo_sessions, request, settings=test_settings, actor=LOCAL_OPERATOR)
    assert (report.new, report.rejected) == (1, 0), report.problems
    with demo_sessions() as session:
        street = session.execute(text("SELECT name, attributes FROM street WHERE code = '370102098'")).one()
    assert street.name == "新建街道"
    assert street.attributes == {"区县代码": "370102", "区县名称": "历下区"}  # the parent's, kept as written
