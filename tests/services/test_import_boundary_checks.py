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

from gridsvc.repositories.plans import rule_breaks
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


def test_a_street_must_lie_in_the_district_its_code_names(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """The components' rule for streets: the code's county is the loaded district the street lies in, or
    one it lies at most 50 m outside of (generalised boundaries); a district that is not loaded is reported
    as missing, as before."""
    added = _boundaries(
        demo_sessions, test_settings, tmp_path / "d.gpkg", "district", [("370103", "市中区", SHIZHONG)]
    )
    assert added.new == 1
    in_lixia = _point_of(demo_sessions, "street", "370102009")  # 营园街道
    in_shizhong = shapely.Point(117.22, 36.62)
    # 30 m east of 市中区's edge (0.000336° of longitude is 30 m at 36.6° N), in no loaded district.
    just_outside = shapely.box(117.24 + 0.000336 - 1e-5, 36.62, 117.24 + 0.000336 + 1e-5, 36.62002)
    report = _boundaries(
        demo_sessions,
        test_settings,
        tmp_path / "s.gpkg",
        "street",
        [
            ("370102090", "错区街道", _square(in_shizhong)),
            ("370103001", "错放街道", _square(in_lixia)),
            ("370103002", "市中街道", _square(shapely.Point(117.21, 36.61))),
            ("370103003", "边上街道", just_outside),
            ("370102091", "远处街道", _square(shapely.Point(117.5, 36.9))),
            ("370104001", "无区街道", _square(in_lixia, 0.0005)),
        ],
    )
    assert (report.new, report.rejected) == (2, 4)
    problems = _reasons(report)
    assert problems[:2] == [
        (1, "code", "370102090", "code county 370102 but the street lies in 370103 市中区"),
        (2, "code", "370103001", "code county 370103 but the street lies in 370102 历下区"),
    ]
    assert problems[2][:3] == (5, "code", "370102091")
    assert problems[2][3].startswith(
        "code county 370102 历下区 but the street lies at (117.500000 36.900000), "
    )
    assert problems[2][3].endswith(" m outside it and in no other loaded county")
    # In loaded 历下区, coded for 370104, which is not loaded: the code is wrong, not a district missing.
    assert problems[3] == (
        6,
        "code",
        "370104001",
        "code district 370104 is not loaded, but the street lies in 370102 历下区: its code should start "
        "with 370102",
    )
    codes = "SELECT string_agg(code, ',' ORDER BY code) FROM street WHERE code LIKE '370103%'"
    assert _scalar(demo_sessions, codes) == "370103002,370103003"


def test_a_community_must_lie_in_its_street(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """A community more than 50 m outside the street its code names is rejected, naming the street it lies
    in; one inside its street, or only just outside it, is taken."""
    _boundaries(
        demo_sessions, test_settings, tmp_path / "d.gpkg", "district", [("370103", "市中区", SHIZHONG)]
    )
    _boundaries(
        demo_sessions,
        test_settings,
        tmp_path / "s.gpkg",
        "street",
        [("370103001", "市中街道", shapely.box(117.20, 36.60, 117.21, 36.61))],
    )
    in_wenshui = _point_of(demo_sessions, "street", "370102001")  # 文水街道
    report = _boundaries(
        demo_sessions,
        test_settings,
        tmp_path / "c.gpkg",
        "community",
        [
            ("370103001001", "甲社区", shapely.box(117.201, 36.601, 117.203, 36.603)),
            # 20 m north of its street's edge (0.00018° of latitude), between it and the next street.
            ("370103001002", "乙社区", shapely.box(117.204, 36.61, 117.205, 36.61 + 0.00036)),
            ("370103001003", "丙社区", _square(in_wenshui, 0.0002)),
            ("370103001004", "丁社区", shapely.box(117.204, 36.62, 117.205, 36.621)),
            ("370103099001", "戊社区", _square(in_wenshui, 0.0002)),  # its street is not loaded
        ],
    )
    assert (report.new, report.rejected) == (2, 3)
    problems = _reasons(report)
    assert [(row, field, value) for row, field, value, _ in problems] == [
        (3, "code", "370103001003"),
        (4, "code", "370103001004"),
        (5, "code", "370103099001"),
    ]
    assert problems[2][3] == (
        "code street 370103099 is not loaded, but the community lies in 370102001 文水街道: its code should "
        "start with 370102001"
    )
    assert problems[0][3].startswith(
        f"code street 370103001 市中街道 but the community lies at ({in_wenshui.x:.6f} "
    )
    assert problems[0][3].endswith(" m outside it, in street 370102001 文水街道")
    assert problems[1][3] == (
        "code street 370103001 市中街道 but the community lies at (117.204500 36.620500), 1,165 m outside it"
    )


def test_a_community_that_overlaps_another_is_rejected_naming_it_and_the_area(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """An overlap of more than 0.1 m² with a loaded community of another code, or with another row of the
    file, rejects the community (both rows, in the file), naming the other and the area in EPSG:4548; a
    sliver below it, as neighbours converted separately leave, is taken. Before, such a community was
    stored and the next grid draw over it failed on the database's overlap rule."""
    _boundaries(
        demo_sessions, test_settings, tmp_path / "d.gpkg", "district", [("370103", "市中区", SHIZHONG)]
    )
    _boundaries(
        demo_sessions,
        test_settings,
        tmp_path / "s.gpkg",
        "street",
        [("370103001", "市中街道", shapely.box(117.20, 36.60, 117.21, 36.61))],
    )
    loaded = _point_of(demo_sessions, "community", "370102001001")
    inside_loaded = _square(loaded, 0.0001)
    with demo_sessions() as session:
        wkb = session.execute(
            text("SELECT ST_AsBinary(geom) FROM community WHERE code = '370102001001'")
        ).scalar()
    shared = shapely.intersection(inside_loaded, shapely.from_wkb(bytes(wkb)))
    shared_m2 = gpd.GeoSeries([shared], crs="EPSG:4490").to_crs("EPSG:4548").area[0]
    sliver = 2e-9  # of longitude: 0.2 mm along 222 m, 0.04 m²
    report = _boundaries(
        demo_sessions,
        test_settings,
        tmp_path / "c.gpkg",
        "community",
        [
            ("370103001001", "甲社区", shapely.box(117.201, 36.601, 117.203, 36.603)),
            ("370103001002", "乙社区", shapely.box(117.202, 36.602, 117.204, 36.604)),
            ("370103001003", "丙社区", shapely.box(117.205 - sliver, 36.601, 117.207, 36.603)),
            ("370103001004", "丁社区", shapely.box(117.203, 36.6045, 117.205, 36.6065)),
            ("370102001099", "叠社区", inside_loaded),
        ],
    )
    assert (report.new, report.rejected) == (2, 3)
    rule = "communities may overlap by at most 0.1 m² (the grids drawn in both would overlap)"
    between = gpd.GeoSeries([shapely.box(117.202, 36.602, 117.203, 36.603)], crs=4490).to_crs(4548).area[0]
    problems = _reasons(report)
    assert [(row, field) for row, field, _, _ in problems] == [
        (1, "geometry"),
        (2, "geometry"),
        (5, "geometry"),
    ]
    assert problems[0][3].startswith(
        f"the community overlaps community 370103001002 (row 2 of this file) by {between:,.2f} m² around "
        "(117.20"
    )
    assert problems[0][3].endswith(rule)
    assert problems[1][3].startswith(
        f"the community overlaps community 370103001001 (row 1 of this file) by {between:,.2f} m²"
    )
    assert problems[2][3].startswith(
        f"the community overlaps community 370102001001 (loaded) by {shared_m2:,.2f} m²"
    )
    stored = "SELECT string_agg(code, ',' ORDER BY code) FROM community WHERE code IN (:a, :b, :c, :d, :e)"
    assert (
        _scalar(
            demo_sessions,
            stored,
            a="370103001001",
            b="370103001002",
            c="370103001003",
            d="370103001004",
            e="370102001099",
        )
        == "370103001003,370103001004"
    )


def test_streets_and_districts_that_overlap_are_rejected_as_communities_are(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """Two streets of the file that overlap are both rejected, and so is a district that overlaps a loaded
    one: a place in both would belong to two streets (or counties). Before, only communities were
    checked. Streets that only share an edge are taken."""
    _boundaries(
        demo_sessions, test_settings, tmp_path / "d.gpkg", "district", [("370103", "市中区", SHIZHONG)]
    )
    districts = _boundaries(
        demo_sessions,
        test_settings,
        tmp_path / "d2.gpkg",
        "district",
        [("370104", "槐荫区", shapely.box(117.23, 36.60, 117.27, 36.64))],
    )
    in_both = gpd.GeoSeries([shapely.box(117.23, 36.60, 117.24, 36.64)], crs=4490).to_crs(4548).area[0]
    assert (districts.new, districts.rejected) == (0, 1)
    assert _reasons(districts)[0][:2] == (1, "geometry")
    assert _reasons(districts)[0][3].startswith(
        f"the district overlaps district 370103 (loaded) by {in_both:,.2f} m² around (117.23"
    )
    assert _reasons(districts)[0][3].endswith(
        "; districts may overlap by at most 0.1 m² (a place would lie in both)"
    )
    streets = _boundaries(
        demo_sessions,
        test_settings,
        tmp_path / "s.gpkg",
        "street",
        [
            ("370103001", "甲街道", shapely.box(117.20, 36.60, 117.21, 36.61)),
            ("370103002", "乙街道", shapely.box(117.205, 36.60, 117.215, 36.61)),
            ("370103003", "丙街道", shapely.box(117.22, 36.60, 117.23, 36.61)),
            ("370103004", "丁街道", shapely.box(117.23, 36.60, 117.24, 36.61)),
        ],
    )
    between = gpd.GeoSeries([shapely.box(117.205, 36.60, 117.21, 36.61)], crs=4490).to_crs(4548).area[0]
    assert (streets.new, streets.rejected) == (2, 2)
    assert [(row, field) for row, field, _, _ in _reasons(streets)] == [(1, "geometry"), (2, "geometry")]
    assert _reasons(streets)[0][3].startswith(
        f"the street overlaps street 370103002 (row 2 of this file) by {between:,.2f} m² around "
    )
    assert _reasons(streets)[1][3].startswith("the street overlaps street 370103001 (row 1 of this file)")
    stored = "SELECT string_agg(code, ',' ORDER BY code) FROM street WHERE code LIKE '370103%'"
    assert _scalar(demo_sessions, stored) == "370103003,370103004"
    assert _scalar(demo_sessions, "SELECT count(*) FROM district WHERE code = '370104'") == 0


def _units_of(sessions: sessionmaker[Session], table: str, codes: list[str]) -> gpd.GeoDataFrame:
    with sessions() as session:
        rows = session.execute(
            text(f"SELECT code, name, ST_AsBinary(geom) FROM {table} WHERE code = ANY(:c) ORDER BY code"),
            {"c": codes},
        ).all()
    return gpd.GeoDataFrame(
        {"代码": [r[0] for r in rows], "名称": [r[1] for r in rows]},
        geometry=shapely.from_wkb([bytes(r[2]) for r in rows]),
        crs="EPSG:4490",
    )


def test_a_redrawn_street_or_community_warns_of_what_no_longer_fits_it(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """A redrawn street that leaves a stored community outside it, or redrawn communities that leave the
    active plan's unit grids sticking out of them, are taken (the communities and the plan can only follow
    once the new boundaries are in), with a warning that names what no longer fits."""
    # 100 m along their shared edge moves from 370102001001 to 370102001002.
    pair = _units_of(demo_sessions, "community", ["370102001001", "370102001002"])
    first, second = pair.geometry
    edge = gpd.GeoSeries([first.intersection(second)], crs=4490).to_crs(4548).buffer(100).to_crs(4490)
    strip = edge.iloc[0].intersection(first)
    pair.geometry = [first.difference(strip), second.union(strip)]
    pair.to_file(tmp_path / "社区.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "社区.gpkg", layer="boundaries", level="community")
    assert (report.changed, report.rejected) == (2, 0), report.problems
    with demo_sessions() as session:
        plan = session.execute(text("SELECT id FROM grid_plan WHERE status = 'active'")).scalar_one()
        breaks = rule_breaks(session, plan, communities=["370102001001", "370102001002"])
    assert {b["rule"] for b in breaks} == {"nesting", "coverage"}
    [warning] = report.warnings
    assert warning.startswith(
        f"the active plan no longer fits the new and redrawn communities: {len(breaks)} break(s) of the"
        f" rules an activation checks ({breaks[0]['code']}: {breaks[0]['problem']}; "
    )
    assert warning.endswith(
        "Redraw the grids of the communities named (`gridsvc plan redraw --community CODE`) and activate"
        " the draft; until then, the active plan's grids answer for these places"
    )
    # Renamed, as drawn now: the breaks are still there, but a new name redraws nothing, so no warning.
    renamed = _units_of(demo_sessions, "community", ["370102001001", "370102001002"])
    renamed.loc[0, "名称"] = "改名社区"
    renamed.to_file(tmp_path / "社区改名.gpkg", driver="GPKG")
    report = _run(
        demo_sessions, test_settings, tmp_path / "社区改名.gpkg", layer="boundaries", level="community"
    )
    assert (report.changed, report.unchanged, report.warnings) == (1, 1, [])

    # The street of 370102001001 redrawn without it.
    street = _units_of(demo_sessions, "street", ["370102001"])
    community = _units_of(demo_sessions, "community", ["370102001001"]).geometry.iloc[0]
    street.geometry = street.geometry.difference(community.buffer(0.00001))
    street.to_file(tmp_path / "街道.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "街道.gpkg", layer="boundaries", level="street")
    assert (report.changed, report.rejected) == (1, 0)
    metres = _scalar(
        demo_sessions,
        "SELECT ST_Distance(ST_Transform(ST_PointOnSurface(c.geom), 4548), ST_Transform(s.geom, 4548))"
        " FROM community c JOIN street s ON s.code = c.street_code WHERE c.code = '370102001001'",
    )
    assert isinstance(metres, float) and metres > 50
    name = _scalar(demo_sessions, "SELECT name FROM community WHERE code = '370102001001'")
    assert report.warnings == [
        f"1 stored community(s) now lie more than 50 m outside the street they are coded for: 370102001001"
        f" {name}: {metres:,.0f} m outside 370102001 {street['名称'].iloc[0]}. Import the redrawn community"
        " layer next: an import of them as they are would now refuse them"
    ]
    # Redrawn once more, 370102001001 still outside: it was out before this redraw, so it is no news.
    street.geometry = street.geometry.buffer(-0.00001)
    street.to_file(tmp_path / "街道2.gpkg", driver="GPKG")
    report = _run(demo_sessions, test_settings, tmp_path / "街道2.gpkg", layer="boundaries", level="street")
    assert (report.changed, report.warnings) == (1, [])
