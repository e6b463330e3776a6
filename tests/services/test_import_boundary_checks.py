"""Boundaries and stations checked against the city and against where they lie (issue 3, item 5: "the
6-digit county prefix must match the county the feature lies in"), from real files.

The demo city has one district, 历下区 (370102), whose envelope ends at 117.175° E; its streets are
370102001-370102014 and its communities cover them.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.services.access import LOCAL_OPERATOR
from gridsvc.services.imports import ImportReport, ImportRequest, import_layer
from gridsvc.settings import Settings

# A made-up 市中区 east of 历下区, in no loaded district: 117.20-117.24° E, 36.60-36.64° N.
SHIZHONG = shapely.box(117.20, 36.60, 117.24, 36.64)


def _run(sessions: sessionmaker[Session], settings: Settings, path: Path, **kwargs: object) -> ImportReport:
    request = ImportRequest(path=path, **kwargs)  # type: ignore[arg-type]
    return import_layer(sessions, request, settings=settings, actor=LOCAL_OPERATOR)


def _scalar(sessions: sessionmaker[Session], sql: str, **params: object) -> object:
    with sessions() as session:
        return session.execute(text(sql), params).scalar()


def _point_of(sessions: sessionmaker[Session], table: str, code: str) -> shapely.Point:
    with sessions() as session:
        x, y = session.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM"
                f" (SELECT ST_PointOnSurface(geom) p FROM {table} WHERE code = :c) q"
            ),
            {"c": code},
        ).one()
    return shapely.Point(x, y)


def _square(centre: shapely.Point, half: float = 0.001) -> shapely.Polygon:
    return shapely.box(centre.x - half, centre.y - half, centre.x + half, centre.y + half)


def _boundaries(
    sessions: sessionmaker[Session],
    settings: Settings,
    path: Path,
    level: str,
    rows: list[tuple[str, str, shapely.Geometry]],
) -> ImportReport:
    gpd.GeoDataFrame(
        {"代码": [c for c, _, _ in rows], "名称": [n for _, n, _ in rows]},
        geometry=[g for _, _, g in rows],
        crs="EPSG:4490",
    ).to_file(path, driver="GPKG")
    return _run(sessions, settings, path, layer="boundaries", level=level)


def _reasons(report: ImportReport) -> list[tuple[int, str, str | None, str]]:
    return [(p.source_row, p.field, p.value, p.reason) for p in report.problems]


def test_a_county_of_another_city_is_rejected_at_every_level(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """东城区 (110101, Beijing) drawn inside Jinan's box is not one of 济南市's districts; nor are a street, a
    community or a station's community whose code starts with it."""
    other_city = "110101 is not a county of 济南市 (370100): the city's county codes start with 3701"
    districts = _boundaries(
        demo_sessions,
        test_settings,
        tmp_path / "dd.gpkg",
        "district",
        [("110101", "东城区", shapely.box(117.30, 36.60, 117.34, 36.64)), ("370199", "新区", SHIZHONG)],
    )
    assert (districts.new, districts.rejected) == (1, 1)
    assert _reasons(districts) == [(1, "code", "110101", other_city)]
    assert _scalar(demo_sessions, "SELECT count(*) FROM district WHERE code = '110101'") == 0

    streets = _boundaries(
        demo_sessions,
        test_settings,
        tmp_path / "streets.gpkg",
        "street",
        [("110101001", "东华门街道", shapely.box(117.30, 36.60, 117.31, 36.61))],
    )
    assert _reasons(streets) == [
        (
            1,
            "code",
            "110101001",
            "110101001 starts with county 110101, which is not a county of 济南市 (370100): the city's "
            "county codes start with 3701",
        )
    ]
    community = _point_of(demo_sessions, "community", "370102001001")
    stations = tmp_path / "stations.gpkg"
    gpd.GeoDataFrame(
        {"工作站名称": ["外市工作站"], "社区代码": ["110101001001"]}, geometry=[community], crs="EPSG:4490"
    ).to_file(stations, driver="GPKG")
    report = _run(demo_sessions, test_settings, stations, layer="stations", dry_run=True)
    assert (report.accepted, report.rejected) == (0, 1)
    assert [(p.field, p.reason) for p in report.problems] == [
        (
            "community_code",
            "110101001001 starts with county 110101, which is not a county of 济南市 (370100): the "
            "city's county codes start with 3701",
        )
    ]
