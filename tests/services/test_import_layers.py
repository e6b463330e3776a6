"""Importing boundaries, stations, another department's net and roads, from real files."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api.app import create_app
from gridsvc.errors import InvalidInputError
from gridsvc.services.access import LOCAL_OPERATOR, create_key
from gridsvc.services.imports import ImportReport, ImportRequest, import_layer
from gridsvc.settings import Settings


def _run(sessions: sessionmaker[Session], settings: Settings, path: Path, **kwargs: object) -> ImportReport:
    request = ImportRequest(path=path, **kwargs)  # type: ignore[arg-type]
    return import_layer(sessions, request, settings=settings, actor=LOCAL_OPERATOR)


def _inside_lixia(sessions: sessionmaker[Session], n: int) -> list[shapely.Point]:
    with sessions() as session:
        rows = session.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM"
                " (SELECT ST_PointOnSurface(geom) p FROM community ORDER BY code LIMIT :n) x"
            ),
            {"n": n},
        ).all()
    return [shapely.Point(x, y) for x, y in rows]


def _in_a_district_without_streets(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> shapely.Point:
    """Load a made-up 市中区 (370103) east of 历下区, which has no streets yet, and return its centre: new
    streets drawn inside 历下区 would overlap its streets, which the import refuses."""
    district = gpd.GeoDataFrame(
        {"区划代码": ["370103"], "名称": ["市中区"]},
        geometry=[shapely.box(117.20, 36.60, 117.24, 36.64)],
        crs="EPSG:4490",
    )
    path = tmp_path / "市中区.gpkg"
    district.to_file(path, driver="GPKG")
    assert _run(sessions, settings, path, layer="boundaries", level="district").new == 1
    return shapely.Point(117.22, 36.62)


def _scalar(sessions: sessionmaker[Session], sql: str, **params: object) -> object:
    with sessions() as session:
        return session.execute(text(sql), params).scalar()


def test_boundaries_upsert_by_code_and_need_their_parent(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    centre = _in_a_district_without_streets(demo_sessions, test_settings, tmp_path)
    square = shapely.box(centre.x - 0.002, centre.y - 0.002, centre.x + 0.002, centre.y + 0.002)
    streets = gpd.GeoDataFrame(
        {"区划代码": ["370103099", "370199001"], "名称": ["新建街道", "无主街道"], "人口": [52000, 800]},
        geometry=[square, square],
        crs="EPSG:4490",
    )
    path = tmp_path / "街道.shp"
    streets.to_crs("EPSG:4548").to_file(path, encoding="GBK")
    report = _run(demo_sessions, test_settings, path, layer="boundaries", level="street")
    assert (report.new, report.changed, report.rejected) == (1, 0, 1)
    # 370199 is no loaded district, and the street lies in 市中区: its code is wrong, not a district missing.
    assert report.problems[0].reason.startswith(
        "code district 370199 is not loaded, but the street lies in 370103"
    )
    assert report.problems[0].source_row == 2
    assert _scalar(demo_sessions, "SELECT name FROM street WHERE code = '370103099'") == "新建街道"
    # A field that maps to no column is kept in the free attributes, not dropped.
    assert _scalar(demo_sessions, "SELECT attributes FROM street WHERE code = '370103099'") == {"人口": 52000}

    again = _run(demo_sessions, test_settings, path, layer="boundaries", level="street")
    assert (again.new, again.changed, again.unchanged) == (0, 0, 1)
    renamed = streets.head(1).assign(名称=["更名街道"])
    renamed.to_crs("EPSG:4548").to_file(path, encoding="GBK")
    third = _run(demo_sessions, test_settings, path, layer="boundaries", level="street")
    assert (third.new, third.changed) == (0, 1)
    assert _scalar(demo_sessions, "SELECT name FROM street WHERE code = '370103099'") == "更名街道"


def test_a_layer_delivered_again_in_another_crs_is_the_same_layer(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """A street and two roads delivered in CGCS2000 degrees, then again in Gauss-Krüger zone 39: converting
    moves their vertices by nanometres, so the street is unchanged and no road is added twice."""
    a = _in_a_district_without_streets(demo_sessions, test_settings, tmp_path)
    b = shapely.Point(a.x + 0.003, a.y + 0.001)
    street = gpd.GeoDataFrame(
        {"区划代码": ["370103098"], "名称": ["换算街道"]},
        geometry=[shapely.Polygon([(a.x, a.y), (a.x + 0.0031, a.y + 0.0007), (a.x + 0.0017, a.y + 0.0029)])],
        crs="EPSG:4490",
    )
    roads = gpd.GeoDataFrame(
        {"道路名称": ["换算路", "换算东路"], "道路等级": ["主干道", "支路"]},
        geometry=[shapely.LineString([a, b]), shapely.LineString([b, (b.x + 0.0013, b.y + 0.0002)])],
        crs="EPSG:4490",
    )
    for crs in ("EPSG:4490", "EPSG:4527"):
        street.to_crs(crs).to_file(tmp_path / f"街道_{crs[5:]}.gpkg", driver="GPKG")
        roads.to_crs(crs).to_file(tmp_path / f"道路_{crs[5:]}.gpkg", driver="GPKG")
    first = _run(
        demo_sessions, test_settings, tmp_path / "街道_4490.gpkg", layer="boundaries", level="street"
    )
    again = _run(
        demo_sessions, test_settings, tmp_path / "街道_4527.gpkg", layer="boundaries", level="street"
    )
    assert (first.new, again.new, again.changed, again.unchanged) == (1, 0, 0, 1)
    last_batch = _scalar(demo_sessions, "SELECT max(id) FROM survey_batch")
    preview = _run(demo_sessions, test_settings, tmp_path / "道路_4490.gpkg", layer="roads", dry_run=True)
    first = _run(demo_sessions, test_settings, tmp_path / "道路_4490.gpkg", layer="roads")
    again = _run(demo_sessions, test_settings, tmp_path / "道路_4527.gpkg", layer="roads")
    assert (preview.new, preview.batch_id, first.new, again.new, again.changed, again.unchanged) == (
        2,
        None,
        2,
        0,
        0,
        2,
    )
    assert first.batch_id == last_batch + 1  # the dry run took no batch id
    assert _scalar(demo_sessions, "SELECT count(*) FROM road WHERE name LIKE '换算%'") == 2
    # One corner 5 cm further east is a redrawn boundary, and a road moved 5 cm is another line.
    moved = shapely.Polygon([(a.x, a.y), (a.x + 0.0031 + 5e-7, a.y + 0.0007), (a.x + 0.0017, a.y + 0.0029)])
    street.set_geometry([moved], crs="EPSG:4490").to_file(tmp_path / "街道_moved.gpkg", driver="GPKG")
    again = _run(
        demo_sessions, test_settings, tmp_path / "街道_moved.gpkg", layer="boundaries", level="street"
    )
    assert (again.changed, again.unchanged) == (1, 0)
    shifted = roads.iloc[[0]].set_geometry([shapely.LineString([(a.x + 5e-7, a.y), b])], crs="EPSG:4490")
    shifted.to_file(tmp_path / "道路_moved.gpkg", driver="GPKG")
    assert _run(demo_sessions, test_settings, tmp_path / "道路_moved.gpkg", layer="roads").new == 1


@pytest.mark.parametrize("suffix", [".gpkg", ".shp", ".geojson", ".csv"])
def test_a_boundaries_export_imported_again_untouched_changes_nothing(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, suffix: str
) -> None:
    """Communities exported in zone 39 and imported back as they are: unchanged, their free attributes read
    back (not nested one level deeper each round) and their households kept; the parent code the export
    adds for reading is left out, since the import takes it from the code."""
    from gridsvc.services.export import export_layer

    with demo_sessions.begin() as session:
        session.execute(
            text(
                'UPDATE community SET attributes = \'{"网格员": "张三", "楼栋数": 12}\' '
                "WHERE code = (SELECT min(code) FROM community)"
            )
        )
    query = "SELECT jsonb_agg(jsonb_build_array(code, households, attributes) ORDER BY code) FROM community"
    before = _scalar(demo_sessions, query)
    exported, count = export_layer(
        demo_sessions, "boundaries", tmp_path / f"社区{suffix}", crs="EPSG:4527", level="community"
    )
    told = {"crs": "EPSG:4527"} if suffix == ".csv" else {}
    for _ in range(2):
        report = _run(demo_sessions, test_settings, exported, layer="boundaries", level="community", **told)
        assert (report.rejected, report.new, report.changed, report.unchanged) == (0, 0, 0, count)
        assert any("gridsvc boundaries export" in w for w in report.warnings)
    assert _scalar(demo_sessions, query) == before
    if suffix == ".gpkg":
        # The parent code deleted in QGIS first: its attributes column still says what the file is.
        trimmed = tmp_path / "社区-无上级.gpkg"
        pyogrio.read_dataframe(exported).drop(columns="parent_code").to_file(trimmed, driver="GPKG")
        report = _run(demo_sessions, test_settings, trimmed, layer="boundaries", level="community")
        assert (report.rejected, report.changed, report.unchanged) == (0, 0, count)
        assert _scalar(demo_sessions, query) == before


def test_a_boundary_code_used_twice_rejects_both_rows_with_their_values_whatever_the_chunk_size(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    centre = _in_a_district_without_streets(demo_sessions, test_settings, tmp_path)
    squares = [
        shapely.box(centre.x + i * 0.001, centre.y, centre.x + (i + 1) * 0.001, centre.y + 0.001)
        for i in range(3)
    ]
    streets = gpd.GeoDataFrame(
        {
            "区划代码": ["370103097", "370103098", "370103097"],
            "名称": ["甲街道", "乙街道", "丙街道"],
            "人口": [1, 2, 3],
        },
        geometry=squares,
        crs="EPSG:4490",
    )
    path = tmp_path / "街道.gpkg"
    streets.to_file(path, driver="GPKG")
    answers = []
    for chunk_rows in (100, 1):  # rows 1 and 3 in one chunk, then in different chunks
        report_path = tmp_path / f"问题-{chunk_rows}.csv"
        report = _run(
            demo_sessions,
            test_settings,
            path,
            layer="boundaries",
            level="street",
            chunk_rows=chunk_rows,
            dry_run=True,
            report_path=report_path,
        )
        written = pd.read_csv(report_path, encoding="utf-8-sig", dtype=str)
        answers.append(
            (
                report.accepted,
                report.rejected,
                written["source_row"].tolist(),
                written["code"].tolist(),
                written["name"].tolist(),
                written["人口"].tolist(),
            )
        )
    assert answers[0] == answers[1] == (1, 2, ["1", "3"], ["370103097"] * 2, ["甲街道", "丙街道"], ["1", "3"])


def test_boundary_level_is_required(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "x.geojson"
    gpd.GeoDataFrame(
        {"代码": ["370102"]}, geometry=[shapely.box(117, 36.6, 117.01, 36.61)], crs=4326
    ).to_file(path)
    with pytest.raises(InvalidInputError) as info:
        _run(demo_sessions, test_settings, path, layer="boundaries")
    assert info.value.problems[0].field == "level"


def test_stations_update_phone_of_existing_station(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    community = str(_scalar(demo_sessions, "SELECT code FROM community ORDER BY code LIMIT 1"))
    point = _inside_lixia(demo_sessions, 1)[0]
    stations = gpd.GeoDataFrame(
        {
            "工作站名称": ["甲社区城管工作站", "幽灵工作站"],
            "社区代码": [community, "370102999999"],
            "联系电话": ["0531-88886666", "0531-1"],
            "值班时间": ["8:00-20:00", ""],
        },
        geometry=[point, point],
        crs="EPSG:4490",
    )
    path = tmp_path / "工作站.gpkg"
    stations.to_file(path, driver="GPKG")
    report = _run(demo_sessions, test_settings, path, layer="stations")
    assert (report.new, report.changed, report.rejected) == (
        0,
        1,
        1,
    )  # the code is community + 01: the demo's station
    assert (
        _scalar(demo_sessions, "SELECT phone FROM station WHERE code = :c", c=community + "01")
        == "0531-88886666"
    )
    assert {p.source_row for p in report.problems} == {2}
    attributes = _scalar(demo_sessions, "SELECT attributes FROM station WHERE code = :c", c=community + "01")
    assert attributes == {"值班时间": "8:00-20:00"}
    # A later file without phones keeps the stored one; two code-less stations of one community are one
    # station twice (community code + 01), both rejected by row rather than failing the whole import.
    stations.head(1).drop(columns="联系电话").assign(工作站名称="甲社区城管站").pipe(
        lambda one: pd.concat([one, one.assign(工作站名称="甲站二")])
    ).to_file(path, driver="GPKG")
    twice = _run(demo_sessions, test_settings, path, layer="stations")
    assert (twice.accepted, twice.rejected) == (0, 2)
    assert [p.value for p in twice.problems] == [community + "01"] * 2
    stations.head(1).drop(columns="联系电话").assign(工作站名称="甲社区城管站").to_file(path, driver="GPKG")
    renamed = _run(demo_sessions, test_settings, path, layer="stations")
    assert renamed.changed == 1
    assert (
        _scalar(demo_sessions, "SELECT phone FROM station WHERE code = :c", c=community + "01")
        == "0531-88886666"
    )


def test_a_station_outside_the_city_is_rejected_not_stored(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    community = str(_scalar(demo_sessions, "SELECT code FROM community ORDER BY code LIMIT 1"))
    stations = gpd.GeoDataFrame(
        {"工作站名称": ["近处工作站", "远方工作站"], "社区代码": [community] * 2, "编码": ["NEAR1", "FAR01"]},
        geometry=[_inside_lixia(demo_sessions, 1)[0], shapely.Point(116.0, 36.0)],
        crs="EPSG:4490",
    )
    stations.to_file(tmp_path / "远方.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "远方.gpkg", layer="stations", dry_run=True)
    assert (report.accepted, report.rejected) == (1, 1)
    [problem] = report.problems
    assert (problem.source_row, problem.field) == (2, "geometry")  # the file's second feature
    assert problem.reason.startswith("the station lies at (116.000000 36.000000), outside the city")


def test_a_station_outside_its_community_is_imported_with_a_warning(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # A station put in the next community (a point on the wrong street, or the wrong community code) is
    # still a station: the import takes it, and says which row lies where, and how far from its own.
    with demo_sessions() as session:
        first, second = session.execute(text("SELECT code FROM community ORDER BY code LIMIT 2")).scalars()
    at_home, next_door = _inside_lixia(demo_sessions, 2)
    stations = gpd.GeoDataFrame(
        {"工作站名称": ["本社区站", "隔壁站"], "社区代码": [first, first], "编码": ["HOME1", "AWAY1"]},
        geometry=[at_home, next_door],
        crs="EPSG:4490",
    )
    stations.to_file(tmp_path / "工作站.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "工作站.gpkg", layer="stations")
    assert (report.new, report.rejected) == (2, 0)
    metres = _scalar(
        demo_sessions,
        "SELECT ST_Distance(ST_Transform(s.geom, 4548), ST_Transform(c.geom, 4548)) FROM station s"
        " JOIN community c ON c.code = :first WHERE s.code = 'AWAY1'",
        first=first,
    )
    assert isinstance(metres, float) and metres > test_settings.locate_boundary_tolerance_m
    second_name = _scalar(demo_sessions, "SELECT name FROM community WHERE code = :c", c=second)
    first_name = _scalar(demo_sessions, "SELECT name FROM community WHERE code = :c", c=first)
    [warning] = [w for w in report.warnings if "station" in w]
    assert warning == (
        "1 station(s) lie more than 30 m outside the community they are coded for (check the point, or the"
        f" community code): row 2, AWAY1 隔壁站: {metres:,.0f} m outside {first} {first_name},"
        f" in {second} {second_name}"
    )


def test_net_is_replaced_whole(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    points = _inside_lixia(demo_sessions, 3)
    cells = [p.buffer(0.003) for p in points]
    net = gpd.GeoDataFrame(
        {"网格编码": ["DJ01", "DJ02", "DJ03"], "网格名称": ["党建一", "党建二", "党建三"]},
        geometry=cells,
        crs=4490,
    )
    path = tmp_path / "党建网格.geojson"
    net.to_crs(4326).to_file(path)
    first = _run(
        demo_sessions,
        test_settings,
        path,
        layer="net",
        net_code="dangjian",
        net_name="党建网格",
        net_department="组织部",
    )
    assert first.new == 3
    net.head(2).to_crs(4326).to_file(path)
    preview = _run(
        demo_sessions,
        test_settings,
        path,
        layer="net",
        net_code="dangjian",
        net_name="党建网格",
        dry_run=True,
    )
    assert (preview.unchanged, preview.retired, preview.batch_id) == (2, 1, None)
    second = _run(demo_sessions, test_settings, path, layer="net", net_code="dangjian", net_name="党建网格")
    # The dry run took no batch id: the numbers have no gap GIS staff would wonder about.
    assert second.batch_id == first.batch_id + 1
    # Counted by cell code against the cells replaced: two as they were, one gone.
    assert (second.new, second.changed, second.unchanged, second.retired) == (0, 0, 2, 1)
    net.head(2).assign(网格名称=["党建一区", "党建二"]).to_crs(4326).to_file(path)
    renamed = _run(demo_sessions, test_settings, path, layer="net", net_code="dangjian", net_name="党建网格")
    assert (renamed.new, renamed.changed, renamed.unchanged, renamed.retired) == (0, 1, 1, 0)
    assert (
        _scalar(
            demo_sessions,
            "SELECT count(*) FROM net_polygon p JOIN net n ON n.id = p.net_id WHERE n.code = 'dangjian'",
        )
        == 2
    )
    # Not given again, the department stays as the first import set it.
    assert _scalar(demo_sessions, "SELECT department FROM net WHERE code = 'dangjian'") == "组织部"
    with pytest.raises(InvalidInputError) as info:
        _run(demo_sessions, test_settings, path, layer="net", net_code="Bad Code", net_name="")
    assert {p.field for p in info.value.problems} == {"net_code", "net_name"}

    # A re-import with a rejected row is refused whole: replacing would delete the cell that row stands for.
    net.assign(网格编码=["DJ01", None, "DJ03"]).to_crs(4326).to_file(path)
    with pytest.raises(InvalidInputError) as refused:
        _run(demo_sessions, test_settings, path, layer="net", net_code="dangjian", net_name="党建网格")
    assert "1 row was rejected and the file replaces every polygon of net dangjian" in refused.value.detail
    assert [(p.field, p.location["source_row"]) for p in refused.value.problems] == [("code", 2)]
    assert (
        _scalar(
            demo_sessions,
            "SELECT string_agg(p.code, ',' ORDER BY p.code) FROM net_polygon p JOIN net n ON n.id = p.net_id"
            " WHERE n.code = 'dangjian'",
        )
        == "DJ01,DJ02"
    )

    # Surveyed again with the numbers as text: unchanged, and the cells keep their stored values.
    net.head(2).assign(户数=[120, 80]).to_crs(4326).to_file(path)
    numbered = _run(demo_sessions, test_settings, path, layer="net", net_code="dangjian", net_name="党建网格")
    assert (numbered.changed, numbered.unchanged) == (2, 0)
    net.head(2).assign(户数=["120", "80"]).to_crs(4326).to_file(path)
    as_text = _run(demo_sessions, test_settings, path, layer="net", net_code="dangjian", net_name="党建网格")
    assert (as_text.new, as_text.changed, as_text.unchanged, as_text.retired) == (0, 0, 2, 0)
    kept = "SELECT p.attributes FROM net_polygon p JOIN net n ON n.id = p.net_id WHERE p.code = 'DJ01'"
    assert _scalar(demo_sessions, kept) == {"户数": 120}


def test_roads_with_chinese_classes(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    a, b = _inside_lixia(demo_sessions, 2)
    roads = gpd.GeoDataFrame(
        {"道路名称": ["经十路", "文化东路"], "道路等级": ["主干道", "次干道"], "车道数": [8, 4]},
        geometry=[shapely.LineString([a, b]), shapely.LineString([b, (b.x + 0.001, b.y)])],
        crs="EPSG:4490",
    )
    path = tmp_path / "道路.gpkg"
    roads.to_file(path, driver="GPKG")
    before = int(_scalar(demo_sessions, "SELECT count(*) FROM road"))  # type: ignore[arg-type]
    report = _run(demo_sessions, test_settings, path, layer="roads")
    assert report.new == 2
    classes = _scalar(
        demo_sessions,
        "SELECT string_agg(road_class || ':' || district_code, ',' ORDER BY name) FROM road"
        " WHERE survey_batch_id = :b",
        b=report.batch_id,
    )
    assert classes == "secondary:370102,arterial:370102"  # 文化东路 sorts before 经十路
    lanes = _scalar(
        demo_sessions,
        "SELECT attributes FROM road WHERE survey_batch_id = :b AND name = '经十路'",
        b=report.batch_id,
    )
    assert lanes == {"车道数": 8}
    # The same file again adds nothing: roads have no code, but the same name and line is the same road.
    again = _run(demo_sessions, test_settings, path, layer="roads")
    assert (again.new, again.changed, again.unchanged) == (0, 0, 2)
    # A corrected class is that road updated, not a second copy of its line.
    roads.assign(道路等级=["主干道", "支路"]).to_file(path, driver="GPKG")
    corrected = _run(demo_sessions, test_settings, path, layer="roads")
    assert (corrected.new, corrected.changed, corrected.unchanged) == (0, 1, 1)
    assert (
        _scalar(demo_sessions, "SELECT road_class FROM road WHERE survey_batch_id = :b", b=corrected.batch_id)
        == "branch"
    )
    assert int(_scalar(demo_sessions, "SELECT count(*) FROM road")) == before + 2  # type: ignore[arg-type]
    # A blank class keeps the stored one (a road new to the store is a branch road).
    roads.assign(道路等级=[None, "支路"]).to_file(path, driver="GPKG")
    blank = _run(demo_sessions, test_settings, path, layer="roads")
    assert (blank.new, blank.changed, blank.unchanged) == (0, 0, 2)
    kept = "SELECT road_class FROM road WHERE name = '经十路' AND survey_batch_id = :b"
    assert _scalar(demo_sessions, kept, b=report.batch_id) == "arterial"
    # So does a blank name: the row is the stored road of its line, not a second, unnamed copy of it.
    roads.assign(道路名称=[None, "文化东路"], 道路等级=[None, "支路"]).to_file(path, driver="GPKG")
    unnamed = _run(demo_sessions, test_settings, path, layer="roads")
    assert (unnamed.new, unnamed.changed, unnamed.unchanged) == (0, 0, 2)
    assert int(_scalar(demo_sessions, "SELECT count(*) FROM road")) == before + 2  # type: ignore[arg-type]
    assert _scalar(demo_sessions, kept, b=report.batch_id) == "arterial"

    # Replacing every road with a file that has a rejected row (a polygon is no road) is refused whole.
    with_polygon = pd.concat(
        [roads, gpd.GeoDataFrame({"道路名称": ["广场"]}, geometry=[a.buffer(0.001)], crs="EPSG:4490")]
    )
    bad = tmp_path / "道路_含面.gpkg"
    with_polygon.to_file(bad, driver="GPKG")
    with pytest.raises(InvalidInputError) as refused:
        _run(demo_sessions, test_settings, bad, layer="roads", replace=True)
    assert "the file replaces every road" in refused.value.detail
    assert int(_scalar(demo_sessions, "SELECT count(*) FROM road")) == before + 2  # type: ignore[arg-type]

    # Replacing every road with the file deletes the roads it does not have and rewrites none it has
    # unchanged: they keep their batch.
    replaced = _run(demo_sessions, test_settings, path, layer="roads", replace=True)
    assert (replaced.new, replaced.changed, replaced.unchanged, replaced.retired) == (0, 0, 2, before)
    assert int(_scalar(demo_sessions, "SELECT count(*) FROM road")) == 2  # type: ignore[arg-type]
    assert _scalar(demo_sessions, kept, b=report.batch_id) == "arterial"
    # A road renamed is another road: the file's is added and the stored one, which it no longer has, goes.
    roads.assign(道路名称=["经十东路", "文化东路"], 道路等级=[None, "支路"]).to_file(path, driver="GPKG")
    renamed = _run(demo_sessions, test_settings, path, layer="roads", replace=True)
    assert (renamed.new, renamed.changed, renamed.unchanged, renamed.retired) == (1, 0, 1, 1)
    assert (
        _scalar(demo_sessions, "SELECT string_agg(name, ',' ORDER BY name) FROM road") == "文化东路,经十东路"
    )
    assert not renamed.warnings
    # Renamed without --replace, the road is added beside the old one, as asked, with a warning that says
    # so and how to rename; the file's unchanged road draws none.
    roads.assign(道路名称=["经十西路", "文化东路"], 道路等级=[None, "支路"]).to_file(path, driver="GPKG")
    beside = _run(demo_sessions, test_settings, path, layer="roads")
    assert (beside.new, beside.changed, beside.unchanged, beside.retired) == (1, 0, 1, 0)
    assert beside.warnings == [
        "1 road(s) are added beside a stored road of the same line and another name (row 1, 经十西路: the"
        " line of stored road 经十东路). If they are renamed roads, the old names stay too: import the"
        " whole road layer with --replace to rename them."
    ]
    assert int(_scalar(demo_sessions, "SELECT count(*) FROM road")) == 3  # type: ignore[arg-type]
    assert not _run(demo_sessions, test_settings, path, layer="roads").warnings  # now both are stored


def test_a_road_moved_under_its_name_is_added_with_a_warning_unless_the_file_replaces_the_roads(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    a, b = _inside_lixia(demo_sessions, 2)
    jingshi = shapely.LineString([a, b])
    side = shapely.LineString([b, (b.x + 0.001, b.y)])
    path = tmp_path / "道路.gpkg"

    def write(names: list[str], lines: list[shapely.LineString]) -> Path:
        gpd.GeoDataFrame({"道路名称": names}, geometry=lines, crs="EPSG:4490").to_file(path, driver="GPKG")
        return path

    assert (
        _run(demo_sessions, test_settings, write(["经十路", "文化东路"], [jingshi, side]), layer="roads").new
        == 2
    )
    moved = shapely.affinity.translate(jingshi, yoff=0.00018)  # about 20 m north
    # A second carriageway beside a stored road the file also has is no move; nor is a road's extension,
    # which runs on beyond the stored line.
    carriageways = write(["经十路", "经十路", "文化东路"], [jingshi, moved, side])
    assert not _run(demo_sessions, test_settings, carriageways, layer="roads", dry_run=True).warnings
    extension = shapely.LineString([b, (b.x + 0.01, b.y + 0.01)])
    extended = write(["经十路", "文化东路"], [extension, side])
    assert not _run(demo_sessions, test_settings, extended, layer="roads", dry_run=True).warnings

    # Moved without --replace, the road is added beside its old line, as asked, with a warning that says
    # so and how to move it.
    before = int(_scalar(demo_sessions, "SELECT count(*) FROM road WHERE name = '经十路'"))  # type: ignore[arg-type]
    beside = _run(demo_sessions, test_settings, write(["经十路", "文化东路"], [moved, side]), layer="roads")
    assert (beside.new, beside.unchanged) == (1, 1)
    assert beside.warnings == [
        "1 road(s) are added beside a stored road of the same name that this file does not have, within 50 m"
        " of its line (row 1, 经十路: 20 m from its stored line). If they are moved or redrawn roads, the old"
        " lines stay too: import the whole road layer with --replace to move them."
    ]
    after = int(_scalar(demo_sessions, "SELECT count(*) FROM road WHERE name = '经十路'"))  # type: ignore[arg-type]
    assert after == before + 1
    # With --replace the old line goes and nothing is warned of.
    replaced = _run(demo_sessions, test_settings, path, layer="roads", replace=True)
    assert not replaced.warnings
    assert int(_scalar(demo_sessions, "SELECT count(*) FROM road WHERE name = '经十路'")) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk_rows", [2, 100])
def test_a_road_twice_in_one_file_is_imported_once_and_the_copy_reported(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, chunk_rows: int
) -> None:
    a, b = _inside_lixia(demo_sessions, 2)
    jingshi = shapely.LineString([a, b])
    side = shapely.LineString([b, (b.x + 0.001, b.y)])
    roads = gpd.GeoDataFrame(
        {
            "道路名称": ["经十路", "文化东路", "经十路", None, None, "文化西路", "文化东路", None],
            "道路等级": ["主干道", "次干道", "主干道", "支路", "支路", "次干道", "次干道", "次干道"],
            "车道数": [8, 4, 8, 2, 2, 4, 6, 4],
        },
        # Row 3 is row 1 again, as a one-part MultiLineString (how a road is stored); row 5 repeats the
        # unnamed row 4; row 6 shares row 2's line under another name, so it is another road; row 7 is
        # row 2's road with other lanes: a conflict, not a copy; row 8 is row 2 with its name left blank.
        geometry=[
            jingshi,
            side,
            shapely.MultiLineString([jingshi]),
            side.reverse(),
            side.reverse(),
            side,
            side,
            side,
        ],
        crs="EPSG:4490",
    )
    path = tmp_path / "道路.geojson"
    roads.to_file(path, driver="GeoJSON")
    before = int(_scalar(demo_sessions, "SELECT count(*) FROM road"))  # type: ignore[arg-type]
    report = _run(demo_sessions, test_settings, path, layer="roads", chunk_rows=chunk_rows)
    assert (report.accepted, report.rejected, report.new) == (4, 4, 4)
    assert [(p.source_row, p.field, p.value, p.reason) for p in report.problems] == [
        (
            3,
            "copy_of_row",
            "1",
            "road 经十路 is a copy of row 1 of this file (same name, line, class and attributes)",
        ),
        (
            5,
            "copy_of_row",
            "4",
            "road (no name) is a copy of row 4 of this file (same name, line, class and attributes)",
        ),
        (
            7,
            "geometry",
            "文化东路",
            "road 文化东路 has the same name and line as row 2 of this file but another class or other "
            "attributes: row 2 is imported, not this one; correct or delete one of them",
        ),
        (
            8,
            "copy_of_row",
            "2",
            "road (no name) is a copy of row 2 of this file (no name of its own, same line, class and "
            "attributes)",
        ),
    ]
    assert _scalar(demo_sessions, "SELECT attributes FROM road WHERE name = '文化东路'") == {"车道数": 4}
    assert int(_scalar(demo_sessions, "SELECT count(*) FROM road")) == before + 4  # type: ignore[arg-type]

    # Replacing every road: a conflict refuses the file, an exact copy does not (it loses nothing).
    with pytest.raises(InvalidInputError) as refused:
        _run(demo_sessions, test_settings, path, layer="roads", replace=True, chunk_rows=chunk_rows)
    assert refused.value.detail.startswith("1 row was rejected and the file replaces every road")
    roads.drop(index=6).to_file(path, driver="GeoJSON")
    replaced = _run(demo_sessions, test_settings, path, layer="roads", replace=True, chunk_rows=chunk_rows)
    # The file's roads are the ones stored: they stay, and the roads loaded before them go.
    assert (replaced.new, replaced.unchanged, replaced.rejected, replaced.retired) == (0, 4, 3, before)
    assert int(_scalar(demo_sessions, "SELECT count(*) FROM road")) == 4  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk_rows", [1, 100])  # the copy in the same chunk, then in the next
def test_one_road_from_two_map_sheets_a_millimetre_apart_is_imported_once(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, chunk_rows: int
) -> None:
    """One road as two sheets delivered it, one at full precision and one rounded to the millimetre in
    its Gauss-Krüger zone (a GBK Shapefile in EPSG:4527): the copy check compared bytes, so both were
    stored, and the next import of the road counted "changed 2, unchanged -1". Lines are the same within
    1e-7° (a centimetre), as stored roads are matched."""
    full = [(39503456.78912, 4062345.12345), (39503956.45678, 4062398.98765)]
    rounded = [(round(x, 3), round(y, 3)) for x, y in full]
    sheets = gpd.GeoDataFrame(
        {"道路名称": ["图幅路", "图幅路"], "道路等级": ["支路", "支路"]},
        geometry=[shapely.LineString(full), shapely.LineString(rounded)],
        crs="EPSG:4527",
    )
    path = tmp_path / "图幅路.shp"
    sheets.to_file(path, encoding="GBK")
    before = int(_scalar(demo_sessions, "SELECT count(*) FROM road"))  # type: ignore[arg-type]
    report = _run(demo_sessions, test_settings, path, layer="roads", chunk_rows=chunk_rows)
    assert (report.new, report.rejected) == (1, 1)
    assert [(p.source_row, p.field, p.value) for p in report.problems] == [(2, "copy_of_row", "1")]
    assert int(_scalar(demo_sessions, "SELECT count(*) FROM road")) == before + 1  # type: ignore[arg-type]
    # The road again with another class: one road changed.
    sheets.iloc[:1].assign(道路等级="次干道").to_file(path, encoding="GBK")
    again = _run(demo_sessions, test_settings, path, layer="roads", chunk_rows=chunk_rows)
    assert (again.changed, again.unchanged, again.new) == (1, 0, 0)


def test_roads_export_in_every_format_and_come_back_unchanged(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """`import roads --replace` takes a file as every road, so staff need today's whole road layer to edit:
    it could not be exported (a tester's finding). Exported as GeoPackage, a GBK Shapefile in a
    Gauss-Krüger zone, GeoJSON and CSV, each file imported again with --replace changes nothing."""
    from gridsvc.services.export import export_layer

    a, b = _inside_lixia(demo_sessions, 2)
    gpd.GeoDataFrame(
        {"道路名称": ["经十路", None], "道路等级": ["主干道", "支路"], "车道数": [8, 2]},
        geometry=[shapely.LineString([a, b]), shapely.LineString([b, (b.x + 0.001, b.y + 0.0005)])],
        crs="EPSG:4490",
    ).to_file(tmp_path / "道路.gpkg")
    _run(demo_sessions, test_settings, tmp_path / "道路.gpkg", layer="roads", replace=True)
    stored = (
        "SELECT count(*), md5(string_agg(coalesce(name, '') || road_class || attributes::text, ','"
        " ORDER BY id)) FROM road"
    )
    with demo_sessions() as session:
        before = tuple(session.execute(text(stored)).one())
    assert before[0] == 2
    for name, crs, encoding in [
        ("导出.gpkg", "EPSG:4490", "UTF-8"),
        ("导出.shp", "EPSG:4527", "GBK"),
        ("导出.geojson", "EPSG:4326", "UTF-8"),
        ("导出.csv", "EPSG:4490", "UTF-8"),
    ]:
        written, count = export_layer(demo_sessions, "roads", tmp_path / name, crs=crs, encoding=encoding)
        assert count == 2
        report = _run(demo_sessions, test_settings, written, layer="roads", replace=True, crs=crs)
        assert (report.unchanged, report.new, report.changed, report.retired) == (2, 0, 0, 0), name
        with demo_sessions() as session:
            assert tuple(session.execute(text(stored)).one()) == before, name
    with pytest.raises(InvalidInputError) as refused:
        export_layer(demo_sessions, "roads", tmp_path / "x.gpkg", level="street")
    assert (
        refused.value.problems[0].message
        == "--level chooses boundaries, not roads: leave it out (roads are exported whole)"
    )


def test_http_boundaries_upload(
    demo_sessions: sessionmaker[Session], test_settings: Settings, demo_url: str, tmp_path: Path
) -> None:
    # A new community where no community is yet: in a new street of a new district east of 历下区 (a
    # community may not overlap a loaded one).
    for level, code, name, square in [
        ("district", "370103", "市中区", shapely.box(117.20, 36.60, 117.24, 36.64)),
        ("street", "370103001", "市中街道", shapely.box(117.20, 36.60, 117.21, 36.61)),
    ]:
        gpd.GeoDataFrame({"代码": [code], "名称": [name]}, geometry=[square], crs=4490).to_file(
            tmp_path / f"{level}.gpkg"
        )
        assert _run(
            demo_sessions, test_settings, tmp_path / f"{level}.gpkg", layer="boundaries", level=level
        ).new
    centre = shapely.Point(117.205, 36.605)
    path = tmp_path / "c.geojson"
    gpd.GeoDataFrame(
        {"代码": ["370103001999"], "名称": ["新社区"], "户数": [420]},
        geometry=[centre.buffer(0.001)],
        crs=4490,
    ).to_crs(4326).to_file(path)
    key = create_key(demo_sessions, name="测绘员", role="gis_staff", actor=LOCAL_OPERATOR).secret
    with TestClient(create_app(test_settings, demo_url, sessions=demo_sessions)) as client:
        files = {"file": ("社区.geojson", path.read_bytes(), "application/geo+json")}
        missing_level = client.post("/v1/imports/boundaries", files=files, headers={"X-API-Key": key})
        assert missing_level.status_code == 422 and missing_level.json()["errors"][0]["field"] == "level"
        ok = client.post(
            "/v1/imports/boundaries", files=files, data={"level": "community"}, headers={"X-API-Key": key}
        )
        assert ok.status_code == 201, ok.text
        assert ok.json()["new"] == 1
        unknown = client.post("/v1/imports/lakes", files=files, headers={"X-API-Key": key})
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "path.kind"
        # A form field of another layer is refused, not ignored: boundaries keep no history to retire.
        misplaced = client.post(
            "/v1/imports/boundaries",
            files=files,
            data={"level": "community", "retire_missing": "true", "replace": "true"},
            headers={"X-API-Key": key},
        )
        assert misplaced.status_code == 422, misplaced.text
        assert [(e["field"], e["message"]) for e in misplaced.json()["errors"]] == [
            ("retire_missing", "only for importing components, not boundaries"),
            ("replace", "only for importing roads, not boundaries"),
        ]
    assert _scalar(demo_sessions, "SELECT households FROM community WHERE code = '370103001999'") == 420
    # A later file without households (a renamed community) keeps the stored count: an upsert has no history.
    gpd.GeoDataFrame(
        {"代码": ["370103001999"], "名称": ["新建社区"]}, geometry=[centre.buffer(0.001)], crs=4490
    ).to_file(path)
    renamed = _run(demo_sessions, test_settings, path, layer="boundaries", level="community")
    assert (renamed.changed, renamed.unchanged) == (1, 0)
    assert _scalar(demo_sessions, "SELECT households FROM community WHERE code = '370103001999'") == 420


def test_components_in_no_grid_are_counted_in_a_warning_a_dry_run_words_as_to_come(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """Lamps in a district the active plan has no grids in: imported without a grid, and said so. A dry run
    said they were "written" under its "nothing written"."""
    centre = _in_a_district_without_streets(demo_sessions, test_settings, tmp_path)
    lamps = gpd.GeoDataFrame(
        {"标识码": ["3701030118000001", "3701030118000002"], "状态": ["完好", "完好"]},
        geometry=[centre, shapely.Point(centre.x + 0.001, centre.y)],
        crs="EPSG:4490",
    )
    lamps.to_file(tmp_path / "市中区路灯.gpkg", driver="GPKG")
    plan = _scalar(demo_sessions, "SELECT id FROM grid_plan WHERE status = 'active'")
    tail = (
        f"lie in no unit grid of the active plan {plan} and more than 100 m from every one: they {{}} no"
        " grid, and no one answers for them until a plan covers them"
    )
    preview = _run(demo_sessions, test_settings, tmp_path / "市中区路灯.gpkg", dry_run=True)
    assert preview.warnings == ["2 of the 2 components would be written " + tail.format("would have")]
    done = _run(demo_sessions, test_settings, tmp_path / "市中区路灯.gpkg")
    assert (done.new, done.assigned_to_grid) == (2, 0)
    assert done.warnings == ["2 of the 2 components written " + tail.format("have")]


def test_a_file_of_another_layer_says_which_when_every_row_is_rejected(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # Each row's problem alone ("has 9 digits; it must have 12") did not say the file was streets.
    centre = _in_a_district_without_streets(demo_sessions, test_settings, tmp_path)
    squares = [
        shapely.box(centre.x + i / 200, centre.y, centre.x + (i + 0.5) / 200, centre.y + 0.0025)
        for i in range(3)
    ]
    streets = gpd.GeoDataFrame(
        {"区划代码": [f"370103{i:03d}" for i in range(1, 4)], "名称": ["甲街道", "乙街道", "丙街道"]},
        geometry=squares,
        crs="EPSG:4490",
    )
    path = tmp_path / "街道.gpkg"
    streets.to_file(path)

    as_communities = _run(demo_sessions, test_settings, path, layer="boundaries", level="community")
    assert (as_communities.rejected, as_communities.new) == (3, 0)
    assert as_communities.warnings[-1] == (
        "every row of the file was rejected (3), so nothing was imported: their codes are street codes, not "
        "community ones: was --level street meant?"
    )
    as_roads = _run(demo_sessions, test_settings, path, layer="roads", dry_run=True)
    assert as_roads.warnings[-1] == (
        "every row of the file was rejected (3), so nothing would be imported: the file holds Polygon "
        "geometries where roads need a line: is it the right file, and the right layer?"
    )
    as_components = _run(
        demo_sessions, test_settings, path, layer="components", mapping={"code": "区划代码"}, dry_run=True
    )
    assert as_components.warnings[-1] == (
        "every row of the file was rejected (3), so nothing would be imported: their codes are street codes: "
        "is it a boundary layer (import boundaries --level street)?"
    )
    # One row of three rejected is the rows' business alone.
    streets.loc[2, "区划代码"] = "3701030030"
    streets.to_file(path)
    some = _run(demo_sessions, test_settings, path, layer="boundaries", level="street", dry_run=True)
    assert (some.new, some.rejected) == (2, 1) and not any(w.startswith("every row") for w in some.warnings)
