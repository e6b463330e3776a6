"""Vector tiles and TileJSON: contents per layer, empty tiles, ETag/304, invalidation, roles, bad tiles."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from bench.tiles import decode_mvt
from gridsvc.api.app import create_app
from gridsvc.api.routes.tiles import RedactKeyInQuery
from gridsvc.services import plans, tiles
from gridsvc.services.access import LOCAL_OPERATOR, Principal, create_key
from gridsvc.services.imports import ImportRequest, import_components
from gridsvc.settings import Settings
from tests.conftest import served_gridsvc
from tests.factories import GRID_ORIGIN
from tests.services.test_plans import WEST_EAST, add_draft

ROLES = ("gis_staff", "dispatcher", "field", "reporter")
MVT = "application/vnd.mapbox-vector-tile"


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding a lon/lat point."""
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


@pytest.fixture(autouse=True)
def fresh_tile_cache() -> Iterator[None]:
    """Each test starts with no cached tiles or stamps (rolled-back data can repeat a stamp)."""
    tiles.clear_cache()
    yield
    tiles.clear_cache()


def _keys(sessions: sessionmaker[Session]) -> dict[str, dict[str, str]]:
    return {
        role: {
            "X-API-Key": create_key(sessions, name=f"tiles-{role}", role=role, actor=LOCAL_OPERATOR).secret
        }
        for role in ROLES
    }


@pytest.fixture
def demo_api(
    demo_sessions: sessionmaker[Session], test_settings: Settings, demo_url: str
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], sessionmaker[Session]]]:
    """A client over the small demo city, a key per role, and the sessions (all rolled back)."""
    keys = _keys(demo_sessions)
    with TestClient(create_app(test_settings, demo_url, sessions=demo_sessions)) as client:
        yield client, keys, demo_sessions


@pytest.fixture
def city_api(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings, database_url: str
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], sessionmaker[Session]]]:
    """A client over the hand-made case city (four unit grids, two lamps)."""
    keys = _keys(sessions)
    with TestClient(create_app(test_settings, database_url, sessions=sessions)) as client:
        yield client, keys, sessions


def _rows(sessions: sessionmaker[Session], sql: str, **params: Any) -> list[Any]:
    with sessions() as session:
        return list(session.execute(text(sql), params).all())


def _in_tile(column: str) -> str:
    envelope = "ST_Transform(ST_TileEnvelope(:z, :x, :y), 4490)"
    return f"{column} && {envelope} AND ST_Intersects({column}, {envelope})"


def _get_tile(client: TestClient, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    return client.get(f"/v1/tiles/{path}.mvt", headers=headers, params=params)


def _features(response: httpx.Response, layer: str) -> list[Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == MVT
    decoded = decode_mvt(response.content)
    assert list(decoded) == [layer]
    return decoded[layer]


def _busiest_tile(sessions: sessionmaker[Session], z: int, table_sql: str) -> tuple[int, int]:
    """The tile at zoom z holding the most points of ``table_sql`` (lon, lat rows)."""
    counts: dict[tuple[int, int], int] = {}
    for lon, lat in _rows(sessions, table_sql):
        tile = tile_of(lon, lat, z)
        counts[tile] = counts.get(tile, 0) + 1
    return max(counts, key=lambda t: counts[t])


# --- contents ------------------------------------------------------------------------------------------


def test_component_tile_holds_exactly_the_current_components_with_their_class(demo_api: Any) -> None:
    client, keys, sessions = demo_api
    z = 16
    x, y = _busiest_tile(sessions, z, "SELECT ST_X(geom), ST_Y(geom) FROM component WHERE valid_to IS NULL")
    expected = {
        code: (class_code, class_name, status)
        for code, class_code, class_name, status in _rows(
            sessions,
            "SELECT c.code, c.class_code, k.name_zh, c.status FROM component c"
            " JOIN component_class k ON k.code = c.class_code"
            f" WHERE c.valid_to IS NULL AND c.in_use AND {_in_tile('c.geom')}",
            z=z,
            x=x,
            y=y,
        )
    }
    assert len(expected) >= 3
    features = _features(_get_tile(client, f"components/{z}/{x}/{y}", keys["field"]), "components")
    got = {
        f.properties["code"]: (f.properties["class_code"], f.properties["class_name"], f.properties["status"])
        for f in features
    }
    assert got == expected
    assert all(f.type == 1 and f.id is not None for f in features)  # points, with feature ids
    assert {k for f in features for k in f.properties} <= {
        "code",
        "class_code",
        "class_name",
        "name",
        "status",
    }
    # Points land inside the tile's 4096-unit grid.
    assert all(0 <= px <= 4096 and 0 <= py <= 4096 for f in features for px, py in f.geometry[0])

    one_class = next(iter(expected.values()))[0]
    only = _features(
        _get_tile(client, f"components/{z}/{x}/{y}", keys["dispatcher"], **{"class": one_class}),
        "components",
    )
    assert {f.properties["code"] for f in only} == {c for c, v in expected.items() if v[0] == one_class}


def test_grid_tiles_carry_their_owners_and_open_case_counts_but_no_phones(demo_api: Any) -> None:
    client, keys, sessions = demo_api
    z = 13
    plan_id = _rows(sessions, "SELECT id FROM grid_plan WHERE status = 'active'")[0][0]
    x, y = _busiest_tile(
        sessions,
        z,
        f"SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM unit_grid"
        f" WHERE plan_id = {plan_id}",
    )
    grids = _features(
        _get_tile(client, f"responsibility_grids/{z}/{x}/{y}", keys["field"]), "responsibility_grids"
    )
    expected = {
        code: (name, open_cases)
        for code, name, open_cases in _rows(
            sessions,
            "SELECT r.code, c.name, (SELECT count(*) FROM case_record k WHERE k.responsibility_grid_id = r.id"
            "   AND k.status NOT IN ('closed', 'rejected'))"
            " FROM responsibility_grid r JOIN community c ON c.code = r.community_code"
            f" WHERE r.plan_id = :plan AND {_in_tile('r.geom')}",
            plan=plan_id,
            z=z,
            x=x,
            y=y,
        )
    }
    assert {
        f.properties["code"]: (f.properties["community_name"], f.properties["open_cases"]) for f in grids
    } == (expected)
    assert any(f.properties["open_cases"] > 0 for f in grids)
    assert all(f.type == 3 for f in grids)
    keys_seen = {k for f in grids for k in f.properties}
    assert {
        "code",
        "community_code",
        "community_name",
        "worker_name",
        "households",
        "open_cases",
    } <= keys_seen
    assert "worker_phone" not in keys_seen and not any(
        str(v).startswith("139") for f in grids for v in f.properties.values()
    )

    units = _features(_get_tile(client, f"unit_grids/{z}/{x}/{y}", keys["gis_staff"]), "unit_grids")
    expected_units = dict(
        _rows(
            sessions,
            "SELECT u.code, r.code FROM unit_grid u"
            " LEFT JOIN responsibility_grid r ON r.id = u.responsibility_grid_id"
            f" WHERE u.plan_id = :plan AND {_in_tile('u.geom')}",
            plan=plan_id,
            z=z,
            x=x,
            y=y,
        )
    )
    assert {f.properties["code"]: f.properties["responsibility_grid_code"] for f in units} == expected_units
    # Asked for by its id, the active plan draws the same tile.
    same = _features(
        _get_tile(client, f"unit_grids/{z}/{x}/{y}", keys["gis_staff"], plan=plan_id), "unit_grids"
    )
    assert sorted(f.properties["code"] for f in same) == sorted(expected_units)


def test_case_tiles_show_open_cases_with_deadlines_and_no_reporter_data(demo_api: Any) -> None:
    client, keys, sessions = demo_api
    z = 12
    x, y = _busiest_tile(
        sessions,
        z,
        "SELECT ST_X(geom), ST_Y(geom) FROM case_record WHERE status NOT IN ('closed', 'rejected')",
    )
    with sessions.begin() as session:  # a reporter's contact on every case, to be sure none leaks
        session.execute(
            text(
                "UPDATE case_record SET reporter_contact ="
                ' \'{"name": "李明", "phone": "13800000000", "email": "li@example.cn"}\''
            )
        )
        # One open case overdue, one not, so both values of "overdue" are seen.
        session.execute(
            text(
                "UPDATE case_record SET deadline = CASE WHEN id % 2 = 0 THEN now() - interval '1 hour'"
                " ELSE now() + interval '1 day' END WHERE status NOT IN ('closed', 'rejected')"
            )
        )
    rows = _rows(
        sessions,
        "SELECT request_code, status, deadline < now() FROM case_record"
        f" WHERE status NOT IN ('closed', 'rejected') AND {_in_tile('geom')}",
        z=z,
        x=x,
        y=y,
    )
    features = _features(_get_tile(client, f"cases/{z}/{x}/{y}", keys["dispatcher"]), "cases")
    assert {
        f.properties["request_code"]: (f.properties["status"], f.properties["overdue"]) for f in features
    } == {code: (status, overdue) for code, status, overdue in rows}
    assert {True, False} <= {f.properties["overdue"] for f in features}
    fields = {"request_code", "status", "kind", "class_code", "class_name", "deadline", "overdue"}
    assert {k for f in features for k in f.properties} == fields
    values = {str(v) for f in features for v in f.properties.values()}
    assert not values & {"李明", "13800000000", "li@example.cn"}
    deadline = dt.datetime.fromisoformat(features[0].properties["deadline"])
    assert deadline.utcoffset() == dt.timedelta(hours=8)  # the city's local time

    overdue = _features(_get_tile(client, f"cases/{z}/{x}/{y}", keys["dispatcher"], overdue="true"), "cases")
    assert {f.properties["request_code"] for f in overdue} == {code for code, _, late in rows if late}
    closed = _features(_get_tile(client, f"cases/{z}/{x}/{y}", keys["dispatcher"], status="closed"), "cases")
    assert closed and {f.properties["status"] for f in closed} == {"closed"}
    assert {f.properties["overdue"] for f in closed} == {False}


def test_station_and_community_tiles(demo_api: Any) -> None:
    client, keys, sessions = demo_api
    lon, lat, station_id, code, name, phone, community = _rows(
        sessions, "SELECT ST_X(geom), ST_Y(geom), id, code, name, phone, community_code FROM station LIMIT 1"
    )[0]
    x, y = tile_of(lon, lat, 15)
    stations = _features(_get_tile(client, f"stations/15/{x}/{y}", keys["field"]), "stations")
    mine = next(f for f in stations if f.properties["code"] == code)
    assert mine.properties == {
        "id": station_id,
        "code": code,
        "name": name,
        "phone": phone,
        "community_code": community,
    }
    x8, y8 = tile_of(lon, lat, 8)
    communities = _features(_get_tile(client, f"communities/8/{x8}/{y8}", keys["field"]), "communities")
    expected = dict(_rows(sessions, "SELECT code, name FROM community"))
    assert {f.properties["code"]: f.properties["name"] for f in communities} == expected
    assert all(f.id is None for f in communities)


def test_below_its_minimum_zoom_a_layer_answers_204(demo_api: Any) -> None:
    client, keys, sessions = demo_api
    lon, lat = _rows(sessions, "SELECT ST_X(geom), ST_Y(geom) FROM component LIMIT 1")[0]
    for layer, z in (("components", 14), ("unit_grids", 12), ("responsibility_grids", 9), ("cases", 11)):
        x, y = tile_of(lon, lat, z)
        answer = _get_tile(client, f"{layer}/{z}/{x}/{y}", keys["field"])
        assert answer.status_code == 204, layer
        assert answer.content == b"" and answer.headers["etag"]
    # Nothing there: the same 204.
    assert _get_tile(client, "components/16/0/0", keys["field"]).status_code == 204


# --- HTTP caching and invalidation -------------------------------------------------------------------------


def test_etag_answers_304_and_gzip_on_request(demo_api: Any) -> None:
    client, keys, sessions = demo_api
    x, y = _busiest_tile(sessions, 15, "SELECT ST_X(geom), ST_Y(geom) FROM component")
    first = _get_tile(client, f"components/15/{x}/{y}", keys["field"])
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and first.headers["cache-control"] == "private, no-cache"
    again = _get_tile(client, f"components/15/{x}/{y}", {**keys["dispatcher"], "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = _get_tile(
        client, f"components/15/{x}/{y}", {**keys["field"], "If-None-Match": '"something-else"'}
    )
    assert other.status_code == 200 and other.content == first.content
    # httpx asks for gzip and unpacks it: the same tile, sent compressed.
    zipped = client.get(
        f"/v1/tiles/components/15/{x}/{y}.mvt", headers={**keys["field"], "Accept-Encoding": "gzip"}
    )
    assert zipped.headers["content-encoding"] == "gzip" and zipped.content == first.content
    assert int(zipped.headers["content-length"]) < len(first.content)
    # A hard reload (Cache-Control: no-cache) renders afresh: same tile, same ETag.
    fresh = client.get(
        f"/v1/tiles/components/15/{x}/{y}.mvt", headers={**keys["field"], "Cache-Control": "no-cache"}
    )
    assert fresh.headers["etag"] == etag and decode_mvt(fresh.content) == decode_mvt(first.content)


def _unit_codes(client: TestClient, headers: dict[str, str], **params: Any) -> set[str]:
    x, y = tile_of(GRID_ORIGIN[0] + 0.001, GRID_ORIGIN[1] + 0.001, 13)
    answer = _get_tile(client, f"unit_grids/13/{x}/{y}", headers, **params)
    return {f.properties["code"] for f in _features(answer, "unit_grids")}


def test_activating_a_plan_changes_the_grid_tiles_at_once(
    city_api: Any, case_city: dict[str, Any], test_settings: Settings
) -> None:
    client, keys, sessions = city_api
    assert _unit_codes(client, keys["field"]) == {f"37010200100100{i}" for i in range(1, 5)}
    x, y = tile_of(GRID_ORIGIN[0] + 0.001, GRID_ORIGIN[1] + 0.001, 13)
    before = _get_tile(client, f"unit_grids/13/{x}/{y}", keys["field"]).headers["etag"]
    with sessions.begin() as session:
        station_id = session.execute(text("SELECT id FROM station")).scalar_one()
        draft = add_draft(session, station_id, halves=WEST_EAST)
    # A draft is drawn when asked for by id, and leaves the active plan's tiles as they were.
    assert _unit_codes(client, keys["gis_staff"], plan=draft) == {"370102001001101", "370102001001102"}
    field_on_draft = _get_tile(client, f"unit_grids/13/{x}/{y}", keys["field"], plan=draft)
    assert field_on_draft.status_code == 403  # drafts are for those who review plans
    assert _unit_codes(client, keys["field"]) == {f"37010200100100{i}" for i in range(1, 5)}
    plans.activate_plan(
        sessions,
        draft,
        dt.date(2026, 12, 1),
        settings=test_settings,
        actor=Principal(name="规划员", role="gis_staff"),
    )
    assert _unit_codes(client, keys["field"]) == {"370102001001101", "370102001001102"}
    stale = _get_tile(client, f"unit_grids/13/{x}/{y}", {**keys["field"], "If-None-Match": before})
    assert stale.status_code == 200 and stale.headers["etag"] != before
    # The retired plan is still drawn by id.
    assert _unit_codes(client, keys["gis_staff"], plan=case_city["plan_id"]) == {
        f"37010200100100{i}" for i in range(1, 5)
    }


def test_an_import_changes_the_component_tiles_at_once(
    city_api: Any, test_settings: Settings, tmp_path: Path
) -> None:
    client, keys, sessions = city_api
    lon, lat = GRID_ORIGIN[0] + 0.0015, GRID_ORIGIN[1] + 0.0005
    x, y = tile_of(lon, lat, 16)

    def codes() -> set[str]:
        answer = _get_tile(client, f"components/16/{x}/{y}", keys["dispatcher"])
        return {f.properties["code"] for f in _features(answer, "components")}

    assert codes() == {"3701020118000001", "3701020118000002"}
    path = tmp_path / "lamps.geojson"
    gpd.GeoDataFrame(
        {"标识码": ["3701020118000777"], "名称": ["新路灯"], "状态": ["完好"]},
        geometry=[shapely.Point(lon, lat)],
        crs="EPSG:4490",
    ).to_file(path, driver="GeoJSON")
    report = import_components(
        sessions, ImportRequest(path=path), settings=test_settings, actor=LOCAL_OPERATOR
    )
    assert report.accepted == 1
    assert codes() == {"3701020118000001", "3701020118000002", "3701020118000777"}


# --- TileJSON, roles, addresses ---------------------------------------------------------------------------


def test_tilejson_names_the_template_zooms_and_fields(demo_api: Any) -> None:
    client, keys, _ = demo_api
    index = client.get("/v1/tiles").json()["layers"]
    assert [layer["name"] for layer in index] == [
        "responsibility_grids",
        "unit_grids",
        "components",
        "cases",
        "stations",
        "communities",
    ]
    minzooms = {layer["name"]: layer["minzoom"] for layer in index}
    assert minzooms == {
        "responsibility_grids": 10,
        "unit_grids": 13,
        "components": 15,
        "cases": 12,
        "stations": 11,
        "communities": 8,
    }
    body = client.get("/v1/tiles/unit_grids.json", headers=keys["field"]).json()
    assert body["tilejson"] == "3.0.0" and body["minzoom"] == 13 and body["scheme"] == "xyz"
    assert body["tiles"] == ["http://testserver/v1/tiles/unit_grids/{z}/{x}/{y}.mvt"]
    assert body["vector_layers"][0]["id"] == "unit_grids"
    assert body["vector_layers"][0]["fields"] == {
        "code": "String",
        "community_code": "String",
        "responsibility_grid_code": "String",
    }
    key = keys["field"]["X-API-Key"]
    leaflet = client.get(
        "/v1/tiles/components.json", params={"api_key": key, "class": ["0118", "0305"]}
    ).json()
    template = leaflet["tiles"][0]
    assert template.startswith("http://testserver/v1/tiles/components/{z}/{x}/{y}.mvt?")
    assert "class=0118&class=0305" in template and f"api_key={key}" in template
    assert client.get("/v1/tiles/parks.json", headers=keys["field"]).status_code == 404
    assert (
        client.get("/v1/tiles/unit_grids.json", headers=keys["gis_staff"], params={"plan": 99999}).status_code
        == 404
    )


def test_roles_and_the_key_in_the_query(demo_api: Any) -> None:
    client, keys, sessions = demo_api
    x, y = _busiest_tile(sessions, 15, "SELECT ST_X(geom), ST_Y(geom) FROM component")
    path = f"/v1/tiles/components/15/{x}/{y}.mvt"
    missing = client.get(path)
    assert missing.status_code == 401 and missing.headers["content-type"] == "application/problem+json"
    assert client.get(path, headers={"X-API-Key": "gs_nope_nope"}).status_code == 401
    assert client.get(path, params={"api_key": "gs_nope_nope"}).status_code == 401
    assert client.get(path, headers=keys["reporter"]).status_code == 403
    assert client.get(path, params={"api_key": keys["reporter"]["X-API-Key"]}).status_code == 403
    assert client.get("/v1/tiles/unit_grids.json", headers=keys["reporter"]).status_code == 403
    for role in ("gis_staff", "dispatcher", "field"):
        assert client.get(path, headers=keys[role]).status_code == 200, role
        assert client.get(path, params={"api_key": keys[role]["X-API-Key"]}).status_code == 200, role
    # The header wins over the query: a bad header is refused even with a good key in the query.
    assert (
        client.get(path, headers={"X-API-Key": "gs_nope"}, params={"api_key": keys["field"]["X-API-Key"]})
    ).status_code == 401
    # Other routes do not read keys from the query.
    assert client.get("/v1/plans", params={"api_key": keys["gis_staff"]["X-API-Key"]}).status_code == 401


def test_bad_tile_addresses_and_filters(demo_api: Any) -> None:
    client, keys, _ = demo_api
    headers = keys["field"]
    for path, status in (
        ("components/23/0/0", 422),
        ("components/15/abc/1", 422),
        ("components/15/-1/1", 422),
        ("components/2/4/0", 404),
        ("components/2/0/4", 404),
        ("parks/15/1/1", 404),
    ):
        answer = _get_tile(client, path, headers)
        assert answer.status_code == status, path
        assert answer.headers["content-type"] == "application/problem+json"
    assert _get_tile(client, "unit_grids/15/1/1", keys["dispatcher"], plan=99999).status_code == 404
    wrong = _get_tile(client, "unit_grids/15/1/1", headers, **{"class": "0118"})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "class"
    assert _get_tile(client, "components/15/1/1", headers, **{"class": "lamp"}).status_code == 422
    assert _get_tile(client, "cases/15/1/1", headers, status="lost").status_code == 422
    assert _get_tile(client, "cases/15/1/1", headers, **{"class": "E0403"}).status_code == 204
    assert _get_tile(client, "components/15/1/1", headers, plan=1).status_code == 422


def test_keys_in_the_query_are_kept_out_of_the_access_log() -> None:
    import logging

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        (
            "127.0.0.1:5",
            "GET",
            "/v1/tiles/cases/12/1/2.mvt?status=closed&api_key=gs_ab_secret&x=1",
            "1.1",
            200,
        ),
        None,
    )
    assert RedactKeyInQuery().filter(record)
    assert "secret" not in record.getMessage()
    assert "api_key=***&x=1" in record.getMessage()


# --- over real HTTP ---------------------------------------------------------------------------------------


def test_tiles_over_http_as_a_leaflet_tile_layer_asks(demo_url: str, test_settings: Settings) -> None:
    from gridsvc.db.engine import make_engine, make_session_factory

    engine = make_engine(demo_url)
    sessions = make_session_factory(engine)
    issued = create_key(sessions, name="tiles-http", role="field", actor=LOCAL_OPERATOR)
    try:
        lon, lat = _rows(sessions, "SELECT ST_X(geom), ST_Y(geom) FROM component ORDER BY id LIMIT 1")[0]
        x, y = tile_of(lon, lat, 16)
        with served_gridsvc(demo_url) as base:
            template = httpx.get(f"{base}/v1/tiles/components.json", params={"api_key": issued.secret}).json()
            url = template["tiles"][0].replace("{z}", "16").replace("{x}", str(x)).replace("{y}", str(y))
            first = httpx.get(url, headers={"Accept-Encoding": "gzip"})
            assert first.status_code == 200 and first.headers["content-encoding"] == "gzip"
            assert any(f.properties for f in decode_mvt(first.content)["components"])
            again = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
            assert again.status_code == 304
    finally:
        # The key goes; its creation stays in the audit log, which is append-only (migration 0008).
        with sessions.begin() as session:
            session.execute(text("DELETE FROM api_key WHERE id = :id"), {"id": issued.id})
        engine.dispose()
