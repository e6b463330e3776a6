"""OGC API - Features under /ogc: landing, conformance, collections, items (bbox, paging, CRS), one item."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyproj
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api.app import create_app
from gridsvc.services.access import LOCAL_OPERATOR, create_key
from gridsvc.settings import Settings

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/"


@pytest.fixture
def ogc(
    demo_sessions: sessionmaker[Session], test_settings: Settings, demo_url: str
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], sessionmaker[Session]]]:
    """A client over the small demo city, a key per role (rolled back)."""
    keys = {
        role: {
            "X-API-Key": create_key(demo_sessions, name=f"ogc-{role}", role=role, actor=LOCAL_OPERATOR).secret
        }
        for role in ("gis_staff", "dispatcher", "field", "reporter")
    }
    with TestClient(create_app(test_settings, demo_url, sessions=demo_sessions)) as client:
        yield client, keys, demo_sessions


def _rows(sessions: sessionmaker[Session], sql: str, **params: Any) -> list[Any]:
    with sessions() as session:
        return list(session.execute(text(sql), params).all())


def _first_ring_point(feature: dict[str, Any]) -> list[float]:
    coordinates = feature["geometry"]["coordinates"]
    while isinstance(coordinates[0], list):
        coordinates = coordinates[0]
    return coordinates


def test_landing_conformance_and_collections_are_open(ogc: Any) -> None:
    client, _, _ = ogc
    landing = client.get("/ogc")
    assert landing.status_code == 200
    rels = {link["rel"]: link["href"] for link in landing.json()["links"]}
    assert set(rels) == {"self", "service-desc", "service-doc", "conformance", "data"}
    assert rels["data"] == "http://testserver/ogc/collections"
    assert client.get(rels["service-desc"]).status_code == 200
    conforms = client.get("/ogc/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conforms
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conforms
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in conforms
    listed = client.get("/ogc/collections").json()["collections"]
    assert [c["id"] for c in listed] == [
        "responsibility_grids",
        "unit_grids",
        "components",
        "stations",
        "communities",
        "streets",
        "districts",
    ]
    grids = client.get("/ogc/collections/unit_grids").json()
    assert grids["crs"][0] == CRS84
    assert {EPSG + "4326", EPSG + "4490", EPSG + "4527", EPSG + "4548"} <= set(grids["crs"])
    assert grids["storageCrs"] == EPSG + "4490"
    minx, miny, maxx, maxy = grids["extent"]["spatial"]["bbox"][0]
    assert 116 < minx < maxx < 118 and 36 < miny < maxy < 37.7
    items_link = next(link for link in grids["links"] if link["rel"] == "items")
    assert items_link["href"] == "http://testserver/ogc/collections/unit_grids/items"
    assert items_link["type"] == "application/geo+json"
    missing = client.get("/ogc/collections/parks")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert client.get("/ogc/collections/parks/items").status_code == 404


def test_boundaries_are_open_and_the_rest_needs_a_staff_key(ogc: Any) -> None:
    client, keys, sessions = ogc
    for boundary in ("districts", "streets", "communities"):
        answer = client.get(f"/ogc/collections/{boundary}/items")
        assert answer.status_code == 200, boundary
        assert answer.headers["content-type"] == "application/geo+json"
    districts = client.get("/ogc/collections/districts/items").json()
    assert [f["id"] for f in districts["features"]] == [
        c for (c,) in _rows(sessions, "SELECT code FROM district")
    ]
    for collection in ("responsibility_grids", "unit_grids", "components", "stations"):
        url = f"/ogc/collections/{collection}/items"
        assert client.get(url).status_code == 401, collection
        assert client.get(url, headers=keys["field"]).status_code == 403, collection
        assert client.get(url, headers=keys["reporter"]).status_code == 403, collection
        assert client.get(url, headers=keys["gis_staff"]).status_code == 200, collection
        assert client.get(url, params={"api_key": keys["dispatcher"]["X-API-Key"]}).status_code == 200
    assert (
        client.get("/ogc/collections/districts/items", headers={"X-API-Key": "gs_wrong"}).status_code == 401
    )


def test_no_personal_or_staff_data_in_any_collection(ogc: Any) -> None:
    client, keys, _ = ogc
    allowed = {
        "responsibility_grids": {
            "code",
            "name",
            "community_code",
            "community_name",
            "station_name",
            "worker_name",
            "households",
            "workload",
            "plan_id",
        },
        "stations": {"code", "name", "phone", "community_code"},
        "components": {
            "code",
            "class_code",
            "class_name",
            "name",
            "status",
            "owner",
            "owner_department_code",
            "maintainer_department_code",
            "unit_grid_code",
            "responsibility_grid_code",
            "valid_from",
        },
    }
    for collection, fields in allowed.items():
        body = client.get(f"/ogc/collections/{collection}/items", headers=keys["gis_staff"]).json()
        assert body["features"], collection
        assert {k for f in body["features"] for k in f["properties"]} == fields, collection


def test_paging_follows_next_links_through_the_whole_plan_in_code_order(ogc: Any) -> None:
    client, keys, sessions = ogc
    expected = [
        code
        for (code,) in _rows(
            sessions,
            "SELECT u.code FROM unit_grid u JOIN grid_plan p ON p.id = u.plan_id"
            " WHERE p.status = 'active' ORDER BY u.code",
        )
    ]
    key = keys["dispatcher"]["X-API-Key"]
    url: str | None = f"/ogc/collections/unit_grids/items?limit={len(expected) // 3 + 1}&api_key={key}"
    seen: list[str] = []
    pages = 0
    while url:
        page = client.get(url)
        assert page.status_code == 200
        body = page.json()
        assert body["numberMatched"] == len(expected)
        assert body["numberReturned"] == len(body["features"])
        seen += [f["id"] for f in body["features"]]
        links = {link["rel"]: link["href"] for link in body["links"]}
        if pages:
            assert "prev" in links
        url = links.get("next")
        if url:
            assert f"api_key={key}" in url  # the key given in the query travels on
        pages += 1
    assert seen == expected and pages == 3
    huge = client.get(
        "/ogc/collections/unit_grids/items", params={"limit": 1_000_000}, headers=keys["gis_staff"]
    )
    assert huge.status_code == 200 and huge.json()["numberReturned"] == min(len(expected), 10_000)  # clamped
    past = client.get(
        "/ogc/collections/unit_grids/items", params={"offset": 10**6}, headers=keys["gis_staff"]
    )
    assert past.json()["features"] == [] and "next" not in {link["rel"] for link in past.json()["links"]}


def test_bbox_in_any_crs_finds_the_grids_it_touches(ogc: Any) -> None:
    client, keys, sessions = ogc
    lon, lat = _rows(
        sessions,
        "SELECT ST_X(ST_PointOnSurface(u.geom)), ST_Y(ST_PointOnSurface(u.geom)) FROM unit_grid u"
        " JOIN grid_plan p ON p.id = u.plan_id WHERE p.status = 'active' ORDER BY u.code LIMIT 1",
    )[0]
    box = (lon - 0.003, lat - 0.002, lon + 0.003, lat + 0.002)
    expected = {
        code
        for (code,) in _rows(
            sessions,
            "SELECT u.code FROM unit_grid u JOIN grid_plan p ON p.id = u.plan_id WHERE p.status = 'active'"
            " AND ST_Intersects(u.geom, ST_MakeEnvelope(:a, :b, :c, :d, 4490))",
            a=box[0],
            b=box[1],
            c=box[2],
            d=box[3],
        )
    }
    assert len(expected) > 1

    def codes(**params: Any) -> set[str]:
        answer = client.get(
            "/ogc/collections/unit_grids/items", params={"limit": 1000, **params}, headers=keys["gis_staff"]
        )
        assert answer.status_code == 200, answer.text
        return {f["id"] for f in answer.json()["features"]}

    assert codes(bbox=",".join(map(str, box))) == expected
    # EPSG:4326 names latitude first: the same box, axes swapped.
    lat_lon = f"{box[1]},{box[0]},{box[3]},{box[2]}"
    assert codes(bbox=lat_lon, **{"bbox-crs": EPSG + "4326"}) == expected
    # In Gauss-Krüger metres (northing first), a box around the same place finds the same grids and
    # maybe a neighbour more (a metric box around a lon/lat box is a little larger).
    to_gk = pyproj.Transformer.from_crs(4490, 4527, always_xy=True)
    (e1, e2), (n1, n2) = to_gk.transform([box[0], box[2]], [box[1], box[3]])
    in_metres = codes(bbox=f"{n1},{e1},{n2},{e2}", **{"bbox-crs": "EPSG:4527"})
    assert expected <= in_metres and len(in_metres) <= len(expected) + 8
    for bad in ("1,2,3", "a,b,c,d", "117.1,36.7,117.0,36.6"):
        answer = client.get(
            "/ogc/collections/unit_grids/items", params={"bbox": bad}, headers=keys["gis_staff"]
        )
        assert answer.status_code == 400, bad
        assert answer.json()["errors"][0]["field"] == "bbox"


def test_crs_gives_coordinates_in_metres_northing_first(ogc: Any) -> None:
    client, keys, _ = ogc
    params = {"limit": 1}
    plain = client.get("/ogc/collections/unit_grids/items", params=params, headers=keys["gis_staff"])
    assert plain.headers["content-crs"] == f"<{CRS84}>"
    lon, lat = _first_ring_point(plain.json()["features"][0])
    assert 116 < lon < 118 and 36 < lat < 38

    gk = client.get(
        "/ogc/collections/unit_grids/items",
        params={**params, "crs": EPSG + "4527"},
        headers=keys["gis_staff"],
    )
    assert gk.status_code == 200 and gk.headers["content-crs"] == f"<{EPSG}4527>"
    northing, easting = _first_ring_point(gk.json()["features"][0])
    assert 39_000_000 < easting < 40_000_000 and 3_900_000 < northing < 4_200_000
    want_e, want_n = pyproj.Transformer.from_crs(4490, 4527, always_xy=True).transform(lon, lat)
    assert abs(easting - want_e) < 0.01 and abs(northing - want_n) < 0.01

    cm = client.get(
        "/ogc/collections/unit_grids/items", params={**params, "crs": "EPSG:4548"}, headers=keys["gis_staff"]
    )
    northing_cm, easting_cm = _first_ring_point(cm.json()["features"][0])
    assert abs(easting_cm - (easting - 39_000_000)) < 0.01 and abs(northing_cm - northing) < 0.01

    latlon = client.get(
        "/ogc/collections/unit_grids/items",
        params={**params, "crs": EPSG + "4490"},
        headers=keys["gis_staff"],
    )
    assert _first_ring_point(latlon.json()["features"][0]) == [lat, lon]

    bad = client.get(
        "/ogc/collections/unit_grids/items", params={"crs": "EPSG:4549"}, headers=keys["gis_staff"]
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "crs"


def test_one_item_by_code(ogc: Any) -> None:
    client, keys, sessions = ogc
    code, community, owner = _rows(
        sessions,
        "SELECT u.code, u.community_code, r.code FROM unit_grid u"
        " JOIN grid_plan p ON p.id = u.plan_id AND p.status = 'active'"
        " JOIN responsibility_grid r ON r.id = u.responsibility_grid_id ORDER BY u.code LIMIT 1",
    )[0]
    answer = client.get(f"/ogc/collections/unit_grids/items/{code}", headers=keys["gis_staff"])
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/geo+json"
    feature = answer.json()
    assert feature["type"] == "Feature" and feature["id"] == code
    assert feature["properties"]["community_code"] == community
    assert feature["properties"]["responsibility_grid_code"] == owner
    assert feature["geometry"]["type"] == "MultiPolygon"
    assert {link["rel"] for link in feature["links"]} == {"self", "collection"}
    in_metres = client.get(
        f"/ogc/collections/unit_grids/items/{code}", params={"crs": "EPSG:4527"}, headers=keys["gis_staff"]
    )
    assert in_metres.headers["content-crs"] == f"<{EPSG}4527>"
    assert _first_ring_point(in_metres.json())[1] > 39_000_000
    community_feature = client.get(f"/ogc/collections/communities/items/{community}").json()
    assert community_feature["id"] == community and community_feature["properties"]["code"] == community
    assert client.get("/ogc/collections/unit_grids/items/nope", headers=keys["gis_staff"]).status_code == 404
    assert client.get("/ogc/collections/communities/items/999999999999").status_code == 404
    unknown_plan = client.get(
        f"/ogc/collections/unit_grids/items/{code}", params={"plan": 99999}, headers=keys["gis_staff"]
    )
    assert unknown_plan.status_code == 404
    assert client.get("/ogc/collections/districts/items", params={"plan": 1}).status_code == 400
