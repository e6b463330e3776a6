"""Open311 GeoReport v2 over real HTTP: `gridsvc serve` under uvicorn, asked with httpx in JSON and XML.

The server commits for real, so it runs against a database of its own holding the small demo city:
the cases and keys these tests make cannot reach any other test. Every report here is at its own
place (or of its own class), so none is merged into another by duplicate detection unless a test
means it to be.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gis import crs as gcrs
from gridsvc.db.engine import make_engine
from gridsvc.services import demo
from gridsvc.services.access import LOCAL_OPERATOR, create_key, revoke_key
from gridsvc.settings import Settings
from tests.conftest import scratch_database, served_gridsvc

PERSONAL = {
    "first_name": "张",
    "last_name": "小明",
    "phone": "13812345678",
    "email": "zhang.xiaoming@example.cn",
    "device_id": "device-7f3a9c",
    "account_id": "account-550e8400",
}


@dataclass(frozen=True)
class Place:
    """A point inside a unit grid of the active plan (CGCS2000 = WGS 84 within a metre)."""

    lon: float
    lat: float
    unit_grid_code: str


@dataclass(frozen=True)
class City:
    """The served city: its base URL, keys, far-apart places and a street lamp."""

    base: str
    keys: dict[str, str]
    places: list[Place]
    lamp_code: str
    lamp_lon: float
    lamp_lat: float

    @property
    def api(self) -> str:
        return f"{self.base}/open311/v2"


def _far_apart(rows: list[Any], wanted: int, min_deg: float = 0.01) -> list[Place]:
    """Greedily pick points at least ``min_deg`` (about 1 km) from each other."""
    picked: list[Place] = []
    for code, lon, lat in rows:
        if all(abs(lon - p.lon) > min_deg or abs(lat - p.lat) > min_deg for p in picked):
            picked.append(Place(float(lon), float(lat), str(code)))
        if len(picked) == wanted:
            break
    assert len(picked) == wanted, "the demo city has too few unit grids for these tests"
    return picked


@pytest.fixture(scope="module")
def city(database_url: str, test_settings: Settings) -> Iterator[City]:
    """`gridsvc serve` on a database of its own with the small demo city, keys of every kind, places."""
    url = scratch_database(database_url, "gridsvc_open311")
    engine = make_engine(url)
    sessions: sessionmaker[Session] = sessionmaker(bind=engine, expire_on_commit=False)
    demo.load_demo(sessions, settings=test_settings, scale="small", seed=2023, replace=False)
    keys = {
        role: create_key(sessions, name=f"open311-{role}", role=role, actor=LOCAL_OPERATOR).secret
        for role in ("reporter", "dispatcher", "gis_staff")
    }
    revoked = create_key(sessions, name="open311-revoked", role="reporter", actor=LOCAL_OPERATOR)
    revoke_key(sessions, prefix=revoked.prefix, actor=LOCAL_OPERATOR)
    keys["revoked"] = revoked.secret
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT u.code, ST_X(p), ST_Y(p)
                FROM unit_grid u JOIN grid_plan g ON g.id = u.plan_id AND g.status = 'active',
                     LATERAL ST_PointOnSurface(u.geom) AS p
                WHERE u.area_m2 > 5000
                ORDER BY u.code
                """
            )
        ).all()
        lamp = conn.execute(
            text(
                """
                SELECT code, ST_X(geom), ST_Y(geom) FROM component
                WHERE class_code = '0118' AND valid_to IS NULL AND in_use AND GeometryType(geom) = 'POINT'
                ORDER BY code LIMIT 1
                """
            )
        ).one()
    engine.dispose()
    places = _far_apart(list(rows), 10)

    # Every test here posts from one address: more than the 60 a minute a citizen's phone may
    # (tests/api/test_rate_limit.py tests that limit).
    with served_gridsvc(url, OPEN311_POST_PER_MINUTE_PER_ADDRESS="600") as base:
        yield City(base, keys, places, str(lamp[0]), float(lamp[1]), float(lamp[2]))


def xml_of(response: httpx.Response) -> ET.Element:
    """The XML body, after checking the content type and the UTF-8 declaration the spec asks for."""
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(response.content)


def json_of(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    return response.json()


def assert_json_error(response: httpx.Response, status: int, *words: str) -> None:
    """The spec's error list in JSON: [{code, description}], code = the HTTP status; never problem+json."""
    assert response.status_code == status, response.text
    body = json_of(response)
    assert isinstance(body, list) and body
    assert all(set(e) == {"code", "description"} and e["code"] == status for e in body)
    text_ = " ".join(e["description"] for e in body)
    for word in words:
        assert word in text_, text_


def assert_xml_error(response: httpx.Response, status: int, *words: str) -> None:
    """<errors><error><code/><description/></error></errors>."""
    assert response.status_code == status, response.text
    root = xml_of(response)
    assert root.tag == "errors"
    errors = root.findall("error")
    assert errors
    assert all([c.tag for c in e] == ["code", "description"] for e in errors)
    assert all(e.findtext("code") == str(status) for e in errors)
    text_ = " ".join(e.findtext("description") or "" for e in errors)
    for word in words:
        assert word in text_, text_


def post(
    city: City,
    place: Place | None,
    service: str,
    *,
    fmt: str = "json",
    key: str | None = "reporter",
    **extra: Any,
) -> httpx.Response:
    """POST requests.{fmt} with a form body; ``key`` names one of the city's keys (None: no key)."""
    form: dict[str, Any] = {"service_code": service}
    if place is not None:
        form.update(lat=repr(place.lat), long=repr(place.lon))
    if key is not None:
        form["api_key"] = city.keys.get(key, key)
    form.update(extra)
    return httpx.post(f"{city.api}/requests.{fmt}", data=form, timeout=30)


def new_request(city: City, place: Place, service: str, **extra: Any) -> str:
    response = post(city, place, service, **extra)
    assert response.status_code == 201, response.text
    (answer,) = response.json()
    return str(answer["service_request_id"])


def get_one(city: City, request_id: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{city.api}/requests/{request_id}.json", params=params)
    assert response.status_code == 200, response.text
    (item,) = json_of(response)
    return dict(item)


def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["service_request_id"] for r in json_of(response)]


# --- discovery and services ---------------------------------------------------------------------


def test_discovery_in_json_and_xml(city: City) -> None:
    body = json_of(httpx.get(f"{city.api}/discovery.json"))
    assert set(body) == {"changeset", "contact", "key_service", "endpoints"}
    (endpoint,) = body["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == city.api
    assert endpoint["type"] == "production"
    assert endpoint["formats"] == ["text/xml", "application/json"]
    assert dt.datetime.fromisoformat(body["changeset"]).tzinfo is not None

    root = xml_of(httpx.get(f"{city.api}/discovery.xml"))
    assert root.tag == "discovery"
    assert [e.text for e in root.findall("endpoints/endpoint/formats/format")] == [
        "text/xml",
        "application/json",
    ]
    assert root.findtext("endpoints/endpoint/url") == city.api
    assert root.findtext("changeset") == body["changeset"]


def test_services_in_json_and_xml_keep_chinese_names(city: City) -> None:
    services = json_of(httpx.get(f"{city.api}/services.json"))
    by_code = {s["service_code"]: s for s in services}
    # Component class 0101 and event class 0101 are two services, told apart by the prefix.
    assert by_code["C0101"]["service_name"] == "上水井盖"
    assert by_code["E0101"]["service_name"] == "暴露垃圾"
    lamp = by_code["C0118"]
    assert lamp == {
        "service_code": "C0118",
        "service_name": "路灯",
        "description": lamp["description"],
        "metadata": True,
        "type": "realtime",
        "keywords": "部件,公用设施,Street lamp",
        "group": "部件/公用设施",
    }
    assert by_code["E0403"]["group"] == "事件/街面秩序"
    assert all(s["service_code"][0] in "CE" for s in services)

    response = httpx.get(f"{city.api}/services.xml")
    assert "路灯".encode() in response.content  # UTF-8 as is, not character references
    root = xml_of(response)
    assert root.tag == "services"
    xml_services = {s.findtext("service_code"): s for s in root.findall("service")}
    assert set(xml_services) == set(by_code)
    assert xml_services["C0118"].findtext("service_name") == "路灯"
    assert xml_services["C0118"].findtext("metadata") == "true"
    assert xml_services["E0101"].findtext("type") == "realtime"


def test_service_definition_in_json_and_xml(city: City) -> None:
    body = json_of(httpx.get(f"{city.api}/services/C0118.json"))
    assert body["service_code"] == "C0118"
    assert [a["code"] for a in body["attributes"]] == ["severity", "component_code"]
    severity = body["attributes"][0]
    assert severity["datatype"] == "singlevaluelist"
    assert severity["required"] is False and severity["variable"] is True and severity["order"] == 1
    assert severity["values"] == [{"key": "normal", "name": "一般"}, {"key": "urgent", "name": "紧急"}]
    assert body["attributes"][1]["datatype"] == "string"
    events = json_of(httpx.get(f"{city.api}/services/E0403.json"))
    assert [a["code"] for a in events["attributes"]] == ["severity"]

    root = xml_of(httpx.get(f"{city.api}/services/C0118.xml"))
    assert root.tag == "service_definition"
    assert root.findtext("service_code") == "C0118"
    attribute = root.find("attributes/attribute")
    assert attribute is not None
    assert [c.tag for c in attribute][:6] == [
        "variable",
        "code",
        "datatype",
        "required",
        "datatype_description",
        "order",
    ]
    assert [(v.findtext("key"), v.findtext("name")) for v in attribute.findall("values/value")] == [
        ("normal", "一般"),
        ("urgent", "紧急"),
    ]


@pytest.mark.parametrize("code", ["C9999", "E9999", "0118", "X0118"])
def test_unknown_service_is_404_in_both_formats(city: City, code: str) -> None:
    assert_json_error(httpx.get(f"{city.api}/services/{code}.json"), 404, code)
    assert_xml_error(httpx.get(f"{city.api}/services/{code}.xml"), 404, code)


def test_unknown_paths_formats_and_methods_answer_the_error_list(city: City) -> None:
    assert_xml_error(httpx.get(f"{city.api}/services.csv"), 404, "csv")
    assert_json_error(httpx.get(f"{city.api}/nothing.json"), 404, "nothing")
    assert_xml_error(httpx.get(f"{city.api}/nothing"), 404)
    response = httpx.delete(f"{city.api}/requests.json")
    assert_json_error(response, 405, "DELETE")
    assert response.headers["allow"] == "GET, POST"
    assert_xml_error(httpx.put(f"{city.api}/services.xml"), 405)
    assert_json_error(httpx.get(f"{city.api}/requests/JN000.json"), 404, "JN000")
    assert_xml_error(httpx.get(f"{city.api}/requests/JN000.xml"), 404, "JN000")
    assert_json_error(httpx.get(f"{city.api}/tokens/JN000.json"), 404)


# --- POST requests and reading them back --------------------------------------------------------


def test_post_in_json_and_xml_then_get_it_back(city: City) -> None:
    place = city.places[0]
    response = post(
        city,
        place,
        "E0101",
        description="路边有一堆垃圾",
        address_string="经十路 88 号",
        media_url="https://example.cn/p/1.jpg",
        **{"attribute[severity]": "urgent"},
    )
    assert response.status_code == 201, response.text
    (answer,) = json_of(response)
    assert set(answer) == {"service_request_id", "service_notice", "account_id"}
    request_id = answer["service_request_id"]
    assert request_id.startswith("JN")
    assert request_id in answer["service_notice"]
    assert "工作小时" in answer["service_notice"]  # exposed garbage: handled within 4 working hours
    assert answer["account_id"] is None

    item = get_one(city, request_id)
    assert item["service_request_id"] == request_id
    assert item["status"] == "open"
    assert item["service_code"] == "E0101"
    assert item["service_name"] == "暴露垃圾"
    assert item["description"] == "路边有一堆垃圾"
    assert item["address"] == "经十路 88 号"
    assert item["media_url"] == "https://example.cn/p/1.jpg"
    assert item["agency_responsible"] == "环卫"
    assert item["unit_grid_code"] == place.unit_grid_code
    assert item["lat"] == pytest.approx(place.lat, abs=1e-6)
    assert item["long"] == pytest.approx(place.lon, abs=1e-6)
    requested = dt.datetime.fromisoformat(item["requested_datetime"])
    assert requested.utcoffset() == dt.timedelta(hours=8)
    assert abs(dt.datetime.now(dt.UTC) - requested) < dt.timedelta(minutes=5)
    assert list(item)[:17] == [
        "service_request_id",
        "status",
        "status_notes",
        "service_name",
        "service_code",
        "description",
        "agency_responsible",
        "service_notice",
        "requested_datetime",
        "updated_datetime",
        "expected_datetime",
        "address",
        "address_id",
        "zipcode",
        "lat",
        "long",
        "media_url",
    ]

    xml_place = city.places[1]
    response = post(city, xml_place, "E0403", fmt="xml", description="人行道上违章停车")
    assert response.status_code == 201, response.text
    root = xml_of(response)
    assert root.tag == "service_requests"
    xml_id = root.findtext("request/service_request_id")
    assert xml_id and xml_id.startswith("JN")
    assert root.find("request/account_id") is not None

    one = xml_of(httpx.get(f"{city.api}/requests/{xml_id}.xml"))
    assert one.tag == "service_requests"
    (request,) = one.findall("request")
    assert request.findtext("service_request_id") == xml_id
    assert request.findtext("status") == "open"
    assert request.findtext("service_code") == "E0403"
    assert request.findtext("service_name") == "违章停车"
    assert request.findtext("description") == "人行道上违章停车"
    assert request.findtext("agency_responsible") == "交通"
    assert float(request.findtext("lat") or 0) == pytest.approx(xml_place.lat, abs=1e-6)
    zipcode = request.find("zipcode")
    assert zipcode is not None and zipcode.text is None  # present, empty

    # The token resource echoes the id: every service is realtime.
    assert json_of(httpx.get(f"{city.api}/tokens/{xml_id}.json")) == [
        {"service_request_id": xml_id, "token": xml_id}
    ]


def test_get_requests_filters(city: City) -> None:
    a_place, b_place = city.places[2], city.places[3]
    a = new_request(city, a_place, "E0201", description="电线杆上贴满小广告")
    b = new_request(city, b_place, "E0102")
    api = f"{city.api}/requests.json"

    assert set(ids_of(httpx.get(api, params={"service_request_id": f"{a},{b}"}))) == {a, b}
    # service_request_id overrides every other filter (GeoReport v2).
    assert ids_of(httpx.get(api, params={"service_request_id": a, "status": "closed"})) == [a]
    assert ids_of(httpx.get(api, params={"service_request_id": "JN000"})) == []

    by_code = ids_of(httpx.get(api, params={"service_code": "E0201", "page_size": 1000}))
    assert a in by_code and b not in by_code
    both = ids_of(httpx.get(api, params={"service_code": "E0201,E0102", "page_size": 1000}))
    assert {a, b} <= set(both)

    assert a in ids_of(httpx.get(api, params={"status": "open", "page_size": 1000}))
    assert a not in ids_of(httpx.get(api, params={"status": "closed", "page_size": 1000}))
    assert a in ids_of(httpx.get(api, params={"status": "open,closed", "page_size": 1000}))

    requested = dt.datetime.fromisoformat(get_one(city, a)["requested_datetime"])
    window = {
        "start_date": (requested - dt.timedelta(minutes=1)).isoformat(),
        "end_date": (requested + dt.timedelta(minutes=1)).isoformat(),
        "page_size": 1000,
    }
    assert a in ids_of(httpx.get(api, params=window))
    utc = {
        "start_date": (requested - dt.timedelta(minutes=1)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    }
    assert a in ids_of(httpx.get(api, params={**utc, "page_size": 1000}))
    past = {"start_date": "2020-01-01T00:00:00+08:00", "end_date": "2020-12-31T23:59:59+08:00"}
    assert ids_of(httpx.get(api, params=past)) == []
    # The demo's cases are from 2025: only the last 90 days show without dates.
    default = httpx.get(api, params={"page_size": 1000})
    assert a in ids_of(default)
    older = httpx.get(api, params={"start_date": "2025-01-01T00:00:00+08:00", "page_size": 1})
    assert int(older.headers["x-total-count"]) > int(default.headers["x-total-count"])

    d = 0.001
    box = f"{a_place.lon - d},{a_place.lat - d},{a_place.lon + d},{a_place.lat + d}"
    in_box = ids_of(httpx.get(api, params={"bbox": box, "page_size": 1000}))
    assert a in in_box and b not in in_box
    # The same box as an Amap (GCJ-02) app sees it.
    (gx0, gx1), (gy0, gy1) = gcrs.wgs84_to_gcj02(
        [a_place.lon - d, a_place.lon + d], [a_place.lat - d, a_place.lat + d]
    )
    gcj_box = f"{gx0},{gy0},{gx1},{gy1}"
    assert a in ids_of(httpx.get(api, params={"bbox": gcj_box, "crs": "gcj02"}))
    # Read as WGS 84, the GCJ-02 box is some 500 m east: the report is not in it.
    assert a not in ids_of(httpx.get(api, params={"bbox": gcj_box}))

    root = xml_of(httpx.get(f"{city.api}/requests.xml", params={"service_request_id": f"{a},{b}"}))
    assert root.tag == "service_requests"
    assert {r.findtext("service_request_id") for r in root.findall("request")} == {a, b}


def test_paging_gives_totals_and_links(city: City) -> None:
    made = [new_request(city, place, "E0103") for place in city.places[4:7]]
    api = f"{city.api}/requests.json"
    ids = ",".join(made)
    first = httpx.get(api, params={"service_request_id": ids, "page_size": 2})
    assert first.headers["x-total-count"] == "3"
    assert first.headers["x-total-pages"] == "2"
    assert first.headers["x-page"] == "1" and first.headers["x-page-size"] == "2"
    assert 'rel="next"' in first.headers["link"] and 'rel="prev"' not in first.headers["link"]
    second = httpx.get(api, params={"service_request_id": ids, "page_size": 2, "page": 2})
    assert second.headers["x-total-count"] == "3"
    assert 'rel="prev"' in second.headers["link"] and 'rel="next"' not in second.headers["link"]
    pages = ids_of(first) + ids_of(second)
    assert len(ids_of(first)) == 2 and len(ids_of(second)) == 1
    assert sorted(pages) == sorted(made)
    assert pages == list(reversed(made))  # newest first
    beyond = httpx.get(api, params={"service_request_id": ids, "page_size": 2, "page": 3})
    assert ids_of(beyond) == [] and beyond.headers["x-total-count"] == "3"
    # The next link works as given.
    next_url = next(
        p.split(">")[0].lstrip(" <") for p in first.headers["link"].split(",") if 'rel="next"' in p
    )
    assert ids_of(httpx.get(next_url)) == ids_of(second)
    # XML pages the same way.
    xml_first = httpx.get(f"{city.api}/requests.xml", params={"service_request_id": ids, "page_size": 2})
    assert xml_first.headers["x-total-count"] == "3"
    assert len(xml_of(xml_first).findall("request")) == 2


def test_status_follows_the_case_loop(city: City) -> None:
    dispatcher = {"X-API-Key": city.keys["dispatcher"]}
    handled = new_request(city, city.places[8], "E0102", description="路面有油污")
    for action in ("register", "dispatch"):
        step = httpx.post(f"{city.base}/v1/cases/{handled}/{action}", headers=dispatcher, json={})
        assert step.status_code == 200, step.text
    item = get_one(city, handled)
    assert item["status"] == "open"
    assert item["expected_datetime"] is not None  # the handling deadline, set at dispatch
    assert dt.datetime.fromisoformat(item["expected_datetime"]) > dt.datetime.fromisoformat(
        item["requested_datetime"]
    )

    rejected = new_request(city, city.places[9], "E0601", description="楼道里很吵")
    note = "不属于城市管理范围，已转 12345"
    step = httpx.post(f"{city.base}/v1/cases/{rejected}/reject", headers=dispatcher, json={"note": note})
    assert step.status_code == 200, step.text
    item = get_one(city, rejected)
    assert item["status"] == "closed"
    assert item["status_notes"] == note
    api = f"{city.api}/requests.json"
    assert rejected in ids_of(httpx.get(api, params={"status": "closed", "page_size": 1000}))
    assert rejected not in ids_of(httpx.get(api, params={"status": "open", "page_size": 1000}))
    root = xml_of(httpx.get(f"{city.api}/requests/{rejected}.xml"))
    assert root.findtext("request/status") == "closed"
    assert root.findtext("request/status_notes") == note


def test_personal_data_never_shows_in_get(city: City) -> None:
    place = city.places[7]
    response = post(city, place, "E0301", description="工地扬尘很大", **PERSONAL)
    assert response.status_code == 201, response.text
    (answer,) = response.json()
    assert answer["account_id"] == PERSONAL["account_id"]  # the poster's own, echoed
    request_id = answer["service_request_id"]
    readings = [
        httpx.get(f"{city.api}/requests/{request_id}.json"),
        httpx.get(f"{city.api}/requests/{request_id}.xml"),
        httpx.get(f"{city.api}/requests.json", params={"service_request_id": request_id}),
        httpx.get(f"{city.api}/requests.xml", params={"service_code": "E0301"}),
    ]
    for reading in readings:
        assert reading.status_code == 200
        assert request_id in reading.text
        for value in PERSONAL.values():
            assert value not in reading.text, (value, reading.url)


def test_gcj02_report_lands_on_the_grid_of_the_wgs84_point(city: City) -> None:
    place = city.places[0]
    (glon,), (glat,) = gcrs.wgs84_to_gcj02([place.lon], [place.lat])
    # In Jinan GCJ-02 is some 500 m off WGS 84: read as WGS 84 it would be another place.
    assert abs(glon - place.lon) > 0.004
    wgs = new_request(city, place, "E0401")
    gcj = new_request(city, Place(float(glon), float(glat), place.unit_grid_code), "E0402", crs="gcj02")
    a, b = get_one(city, wgs), get_one(city, gcj)
    assert a["unit_grid_code"] == b["unit_grid_code"] == place.unit_grid_code
    assert b["lat"] == pytest.approx(a["lat"], abs=1e-6)
    assert b["long"] == pytest.approx(a["long"], abs=1e-6)
    # Asked for in GCJ-02, the answer is where the app showed it.
    shown = get_one(city, gcj, crs="gcj02")
    assert shown["long"] == pytest.approx(glon, abs=1e-6)
    assert shown["lat"] == pytest.approx(glat, abs=1e-6)
    # BD-09 (Baidu) too.
    (blon,), (blat,) = gcrs.wgs84_to_bd09([place.lon], [place.lat])
    bd = new_request(city, Place(float(blon), float(blat), place.unit_grid_code), "E0501", crs="bd09")
    assert get_one(city, bd)["unit_grid_code"] == place.unit_grid_code


def test_service_object_id_names_the_component(city: City) -> None:
    # Reported 20 m north of the lamp, naming it by its code.
    near = Place(city.lamp_lon, city.lamp_lat + 0.00018, "")
    request_id = new_request(
        city, near, "C0118", service_object_type="component", service_object_id=city.lamp_code
    )
    item = get_one(city, request_id)
    assert item["service_object_type"] == "component"
    assert item["service_object_id"] == city.lamp_code
    assert item["service_code"] == "C0118"
    assert item["service_name"] == "路灯"
    assert item["agency_responsible"] is not None

    # A component code on an event service, a malformed one, an unknown one.
    assert_json_error(post(city, near, "E0101", service_object_id=city.lamp_code), 400, "service_object_id")
    assert_json_error(post(city, near, "C0118", service_object_id="12345"), 400, "service_object_id")
    assert_xml_error(
        post(city, near, "C0118", fmt="xml", service_object_id="3701029999000001"), 400, "service_object_id"
    )


def test_second_report_at_the_same_spot_gets_the_existing_request(city: City) -> None:
    place = city.places[5]
    first = new_request(city, place, "E0302", description="工地废料堆在路边")
    response = post(city, place, "E0302", fmt="xml", key="dispatcher", description="又看到了")
    assert response.status_code == 201, response.text
    request = xml_of(response).find("request")
    assert request is not None
    assert request.findtext("service_request_id") == first
    assert first in (request.findtext("service_notice") or "")


# --- the spec's error cases ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "words"),
    [
        (None, ("api_key",)),
        ("revoked", ("unknown or revoked",)),
        ("gs_00000000_not-a-real-key", ("unknown or revoked",)),
        ("gis_staff", ("reporter",)),
    ],
)
def test_post_without_a_valid_reporter_key_is_403(
    city: City, key: str | None, words: tuple[str, ...]
) -> None:
    place = city.places[0]
    assert_json_error(post(city, place, "E0601", key=key), 403, *words)
    assert_xml_error(post(city, place, "E0601", key=key, fmt="xml"), 403, *words)


def test_post_with_the_key_in_the_header_works(city: City) -> None:
    response = httpx.post(
        f"{city.api}/requests.json",
        data={"service_code": "E0601", "lat": repr(city.places[6].lat), "long": repr(city.places[6].lon)},
        headers={"X-API-Key": city.keys["reporter"]},
    )
    assert response.status_code == 201, response.text


def _raw_form(city: City, place: Place, service: str, **fields: str) -> str:
    """A urlencoded body with the Chinese text unescaped, as `curl -d` and many apps send it."""
    form = {"api_key": city.keys["reporter"], "service_code": service, "lat": repr(place.lat)}
    form.update({"long": repr(place.lon), **fields})
    return "&".join(f"{name}={value}" for name, value in form.items())


@pytest.mark.parametrize(
    ("content_type", "charset", "place_index", "service"),
    [
        ("application/x-www-form-urlencoded", "utf-8", 1, "E0101"),
        ("application/x-www-form-urlencoded; charset=utf-8", "utf-8", 2, "E0101"),
        ("application/x-www-form-urlencoded; charset=GB18030", "gb18030", 3, "E0101"),
    ],
)
def test_post_with_raw_chinese_in_the_form_keeps_the_text(
    city: City, content_type: str, charset: str, place_index: int, service: str
) -> None:
    body = _raw_form(city, city.places[place_index], service, description="路面脏乱请清扫", first_name="张三")
    response = httpx.post(
        f"{city.api}/requests.json", content=body.encode(charset), headers={"Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    (answer,) = json_of(response)
    request_id = answer["service_request_id"]
    assert get_one(city, request_id)["description"] == "路面脏乱请清扫"
    case = httpx.get(f"{city.base}/v1/cases/{request_id}", headers={"X-API-Key": city.keys["dispatcher"]})
    assert case.status_code == 200, case.text
    assert case.json()["reporter"]["first_name"] == "张三"


@pytest.mark.parametrize(
    ("content_type", "body", "words"),
    [
        (
            "application/x-www-form-urlencoded",
            "description=路面".encode("gbk"),
            ("not valid utf-8", "offset"),
        ),
        ("application/x-www-form-urlencoded", b"description=%C2%28", ("percent-encoded", "utf-8")),
        ("application/x-www-form-urlencoded; charset=klingon", b"description=x", ("klingon",)),
    ],
)
def test_post_with_a_form_that_is_not_text_is_400(
    city: City, content_type: str, body: bytes, words: tuple[str, ...]
) -> None:
    content = (
        b"api_key=" + city.keys["reporter"].encode() + b"&service_code=E0101&lat=36.6&long=117.0&" + body
    )
    for fmt, check in (("json", assert_json_error), ("xml", assert_xml_error)):
        response = httpx.post(
            f"{city.api}/requests.{fmt}", content=content, headers={"Content-Type": content_type}
        )
        check(response, 400, *words)


@pytest.mark.parametrize("field", ["description", "first_name", "address_string"])
def test_post_with_a_nul_character_is_400_naming_the_field(city: City, field: str) -> None:
    # PostgreSQL text cannot hold U+0000: refused as bad input, not a 500 from the driver.
    place = city.places[4]
    assert_json_error(post(city, place, "E0101", **{field: "abc\x00def"}), 400, field, "NUL")
    assert_xml_error(post(city, place, "E0101", fmt="xml", **{field: "abc\x00def"}), 400, field, "NUL")


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({"service_code": "E0101", "long": "117.0"}, ("lat",)),
        ({"service_code": "E0101", "lat": "36.6"}, ("long",)),
        ({"service_code": "E0101", "lat": "north", "long": "117.0"}, ("lat",)),
        ({"lat": "36.6", "long": "117.0"}, ("service_code",)),
        ({"service_code": "E9999", "lat": "36.6", "long": "117.0"}, ("service_code", "9999")),
        ({"service_code": "fixme", "lat": "36.6", "long": "117.0"}, ("service_code",)),
        ({"service_code": "E0101", "lat": "36.6", "long": "117.0", "crs": "mars"}, ("crs",)),
        ({"service_code": "E0101", "lat": "39.9", "long": "116.4"}, ("outside",)),  # Beijing
        ({"service_code": "E0101", "lat": "36.6", "long": "117.0", "attribute[colour]": "red"}, ("colour",)),
        (
            {"service_code": "E0101", "lat": "36.6", "long": "117.0", "attribute[severity]": "huge"},
            ("severity",),
        ),
        ({"service_code": "E0101", "lat": "36.6", "long": "117.0", "email": "not-mail"}, ("email",)),
        (
            {"service_code": "E0101", "lat": "36.6", "long": "117.0", "media_url": "file:///etc"},
            ("media_url",),
        ),
    ],
)
def test_post_with_bad_parameters_is_400(city: City, form: dict[str, str], words: tuple[str, ...]) -> None:
    data = {**form, "api_key": city.keys["reporter"]}
    assert_json_error(httpx.post(f"{city.api}/requests.json", data=data), 400, *words)
    assert_xml_error(httpx.post(f"{city.api}/requests.xml", data=data), 400, *words)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"start_date": "2024-13-01T00:00:00Z"}, ("start_date",)),
        ({"start_date": "yesterday"}, ("start_date",)),
        ({"end_date": "2024-05-01T00:00:00"}, ("end_date", "time zone")),
        ({"start_date": "2024-05-02T00:00:00Z", "end_date": "2024-05-01T00:00:00Z"}, ("end_date",)),
        ({"bbox": "117.0,36.6,117.1"}, ("bbox",)),
        ({"bbox": "117.1,36.6,117.0,36.7"}, ("bbox",)),
        ({"bbox": "a,b,c,d"}, ("bbox",)),
        ({"page_size": "0"}, ("page_size",)),
        ({"page_size": "1001"}, ("page_size",)),
        ({"page": "-1"}, ("page",)),
        ({"page": "two"}, ("page",)),
        ({"status": "pending"}, ("status",)),
        ({"service_code": "E9999"}, ("service_code",)),
        ({"service_code": "lamp"}, ("service_code",)),
        ({"service_request_id": "JN1;DROP"}, ("service_request_id",)),
        ({"crs": "mars"}, ("crs",)),
    ],
)
def test_get_requests_with_malformed_values_is_400(
    city: City, params: dict[str, str], words: tuple[str, ...]
) -> None:
    assert_json_error(httpx.get(f"{city.api}/requests.json", params=params), 400, *words)
    assert_xml_error(httpx.get(f"{city.api}/requests.xml", params=params), 400, *words)
