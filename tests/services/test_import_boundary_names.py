"""Boundaries known by the names of their level (社区代码, 街道名称, 区县代码, ...)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.errors import InvalidInputError
from gridsvc.services.access import LOCAL_OPERATOR
from gridsvc.services.imports import ImportRequest, import_layer
from gridsvc.settings import Settings


def test_a_street_file_with_its_district_s_fields_is_read_by_its_own(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # A street of the demo drawn again (a new one would overlap its neighbours, which is refused), renamed.
    with demo_sessions() as session:
        wkb = session.execute(text("SELECT ST_AsBinary(geom) FROM street WHERE code = '370102001'")).scalar()
    streets = gpd.GeoDataFrame(
        {
            "区县代码": ["370102"],
            "区县名称": ["历下区"],
            "街道代码": ["370102001"],
            "街道名称": ["新建街道"],
        },
        geometry=[shapely.from_wkb(bytes(wkb))],
        crs="EPSG:4490",
    )
    path = tmp_path / "街道.gpkg"
    streets.to_file(path, driver="GPKG")
    request = ImportRequest(path=path, layer="boundaries", level="street")
    report = import_layer(demo_sessions, request, settings=test_settings, actor=LOCAL_OPERATOR)
    assert (report.changed, report.rejected) == (1, 0), report.problems
    with demo_sessions() as session:
        street = session.execute(text("SELECT name, attributes FROM street WHERE code = '370102001'")).one()
    assert street.name == "新建街道"
    assert street.attributes == {"区县代码": "370102", "区县名称": "历下区"}  # the parent's, kept as written


def test_a_file_with_no_code_is_told_every_name_a_code_is_known_by(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    streets = gpd.GeoDataFrame(
        {"编号": ["370102098"], "街道名称": ["新建街道"]},
        geometry=[shapely.box(117.02, 36.66, 117.022, 36.662)],
        crs="EPSG:4490",
    )
    path = tmp_path / "街道.gpkg"
    streets.to_file(path, driver="GPKG")
    request = ImportRequest(path=path, layer="boundaries", level="street")
    with pytest.raises(InvalidInputError) as refused:
        import_layer(demo_sessions, request, settings=test_settings, actor=LOCAL_OPERATOR)
    assert [p.message for p in refused.value.problems] == [
        "no field of the file is the code (known as 代码, 行政区划代码, 区划代码, 统计用区划代码, XZQDM, "
        "XZQHDM, ADCODE, CODE, 社区代码, 街道代码, 区县代码); the file's fields are: 编号, 街道名称; say "
        "which with --map code=FIELD"
    ]


def test_a_community_whose_street_code_contradicts_its_own_code_is_rejected(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # Once it was stored, its contradicting 街道代码 kept as an attribute without a word.
    with demo_sessions() as session:
        rows = session.execute(
            text("SELECT code, name, ST_AsBinary(geom) FROM community ORDER BY code LIMIT 2")
        ).all()
    codes = [code for code, _, _ in rows]
    communities = gpd.GeoDataFrame(
        {
            "社区代码": codes,
            "社区名称": [f"{name}新" for _, name, _ in rows],
            "街道代码": [codes[0][:9], "370102099"],
            "区县代码": ["370102", "370102"],
        },
        geometry=[shapely.from_wkb(bytes(wkb)) for _, _, wkb in rows],
        crs="EPSG:4490",
    )
    path = tmp_path / "社区.gpkg"
    communities.to_file(path, driver="GPKG")
    request = ImportRequest(path=path, layer="boundaries", level="community")
    report = import_layer(demo_sessions, request, settings=test_settings, actor=LOCAL_OPERATOR)
    assert (report.changed, report.rejected) == (1, 1), report.problems
    (problem,) = report.problems
    assert (problem.source_row, problem.field, problem.value) == (2, "街道代码", "370102099")
    assert problem.reason == (
        f"街道代码 370102099 contradicts the code {codes[1]}, whose first 9 digits name its street "
        f"{codes[1][:9]}: correct one of them"
    )
    with demo_sessions() as session:
        names = session.execute(
            text("SELECT name FROM community WHERE code = ANY(:c) ORDER BY code"), {"c": codes}
        )
        assert [n for (n,) in names] == [f"{rows[0][1]}新", rows[1][1]]
