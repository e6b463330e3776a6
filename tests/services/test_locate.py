"""Locate: inside, on edges and vertices, near boundaries, in a gap, by territory, outside; every datum;
the same answers from the service, the CLI, one HTTP request, a batch request and a file."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gis import crs as gcrs
from gridsvc.api.app import create_app
from gridsvc.errors import InvalidInputError, NotFoundError
from gridsvc.services import locate
from gridsvc.services.access import LOCAL_OPERATOR, create_key
from gridsvc.settings import Settings
from tests.factories import add_grid_city

GEOD = pyproj.Geod(ellps="GRS80")

# name: (lon, lat, how, owner unit grid, candidate unit grids)
POINTS: dict[str, tuple[float, float, str, str | None, list[str]]] = {
    "inside": (117.001, 36.681, "inside", "370102001001003", []),
    "inside_by_same_owner_edge": (117.0005, 36.6821, "inside", "370102001001001", []),
    "near_other_owner": (117.0019, 36.681, "inside", "370102001001003", ["370102001001004"]),
    "on_shared_edge": (117.002, 36.681, "edge", "370102001001003", ["370102001001004"]),
    "on_shared_vertex": (117.002, 36.682, "edge", "370102001001001", ["370102001001002", "370102001001004"]),
    "in_gap_near": (117.0045, 36.681, "nearest", "370102001001004", []),
    "in_gap_far": (117.008, 36.685, "territory", None, []),
}


@pytest.fixture
def city(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions.begin() as session:
        made = add_grid_city(session, with_retired_plan=True)
        return {"plan_id": made["plan"].id, "station_id": made["station"].id}


@pytest.mark.parametrize("name", list(POINTS))
def test_one_point(
    name: str, city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    lon, lat, how, owner, candidates = POINTS[name]
    answer = locate.located_dict(locate.locate_point(sessions, test_settings, lon, lat, crs="cgcs2000"))
    assert answer["how"] == how
    assert (answer["unit_grid"] or {}).get("code") == owner
    assert [c["unit_grid_code"] for c in answer["candidates"]] == candidates
    assert answer["near_boundary"] == bool(candidates)
    assert answer["district"] == {"code": "370102", "name": "历下区"}
    assert answer["plan"]["id"] == city["plan_id"]
    assert answer["needs_confirmation"] == (bool(candidates) or how in ("nearest", "territory"))
    if owner is not None:
        assert answer["community"] == {"code": "370102001001", "name": "甲社区"}
        assert answer["street"]["code"] == "370102001"
        assert answer["station"]["name"] == "甲社区城管工作站"
        _, _, metres = GEOD.inv(lon, lat, answer["station"]["lon"], answer["station"]["lat"])
        assert answer["station"]["distance_m"] == pytest.approx(metres, abs=0.1)
        worker = answer["responsibility_grid"]["worker"]
        assert worker["name"] in ("王芳", "张伟")
    else:
        assert answer["unit_grid"] is None and answer["station"] is None
        assert any("属地兜底" in note for note in answer["notes"])


def test_distances_are_metres(
    city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    lon, lat = 117.0019, 36.681
    answer = locate.located_dict(locate.locate_point(sessions, test_settings, lon, lat, crs="cgcs2000"))
    _, _, expected = GEOD.inv(lon, lat, 117.002, lat)
    assert answer["candidates"][0]["distance_m"] == pytest.approx(expected, abs=0.2)
    assert answer["boundary_distance_m"] == pytest.approx(expected, abs=0.2)
    gap = locate.located_dict(locate.locate_point(sessions, test_settings, 117.0045, 36.681, crs="cgcs2000"))
    _, _, to_grid = GEOD.inv(117.0045, 36.681, 117.004, 36.681)
    assert gap["distance_m"] == pytest.approx(to_grid, abs=0.2)


def test_outside_the_city_is_not_found(
    city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    with pytest.raises(NotFoundError, match="outside"):
        locate.locate_point(sessions, test_settings, 117.05, 36.70, crs="cgcs2000")


@pytest.mark.parametrize("datum", ["wgs84", "gcj02", "bd09", "EPSG:4548", "EPSG:4527"])
def test_every_datum_gives_the_same_owner(
    datum: str, city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    lon, lat = 117.001, 36.681
    x, y = gcrs.from_storage(lon, lat, datum)
    answer = locate.located_dict(locate.locate_point(sessions, test_settings, float(x), float(y), crs=datum))
    assert answer["unit_grid"]["code"] == "370102001001003"
    assert answer["point"]["lon"] == pytest.approx(lon, abs=1e-7)


def test_bad_datum_and_coordinates_are_refused(
    city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    with pytest.raises(InvalidInputError, match="unknown CRS"):
        locate.locate_point(sessions, test_settings, 117.0, 36.68, crs="beijing54ish")
    with pytest.raises(InvalidInputError):
        locate.locate_point(sessions, test_settings, float("nan"), 36.68, crs="wgs84")
    with pytest.raises(InvalidInputError):
        locate.locate_point(sessions, test_settings, 200.0, 36.68, crs="gcj02")


def test_at_asks_the_plan_in_force_that_day(
    city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    before = locate.locate_point(
        sessions, test_settings, 117.001, 36.681, crs="cgcs2000", at=dt.date(2025, 3, 1)
    )
    after = locate.locate_point(
        sessions, test_settings, 117.001, 36.681, crs="cgcs2000", at=dt.date(2025, 7, 1)
    )
    assert before.row and before.row["unit_grid_code"] == "370102001001090"
    assert before.plan and before.plan.status == "retired"
    assert after.row and after.row["unit_grid_code"] == "370102001001003"
    # Before any plan: the territory still answers.
    earliest = locate.locate_point(
        sessions, test_settings, 117.001, 36.681, crs="cgcs2000", at=dt.date(2024, 1, 1)
    )
    assert earliest.how == "territory" and earliest.plan is None


# ---------------------------------------------------------------- the same answers through every door


@pytest.fixture
def client(
    city: dict[str, Any], test_settings: Settings, database_url: str, sessions: sessionmaker[Session]
) -> Iterator[tuple[TestClient, str]]:
    key = create_key(sessions, name="外业", role="field", actor=LOCAL_OPERATOR).secret
    with TestClient(create_app(test_settings, database_url, sessions=sessions)) as test_client:
        yield test_client, key


def _expected() -> dict[str, tuple[str, str | None]]:
    return {name: (how, owner) for name, (_, _, how, owner, _) in POINTS.items()}


def test_http_one_by_one(client: tuple[TestClient, str]) -> None:
    http, key = client
    for name, (lon, lat, how, owner, candidates) in POINTS.items():
        response = http.get(
            "/v1/locate", params={"lon": lon, "lat": lat, "crs": "cgcs2000"}, headers={"X-API-Key": key}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["how"], (body["unit_grid"] or {}).get("code")) == (how, owner), name
        assert [c["unit_grid_code"] for c in body["candidates"]] == candidates
    outside = http.get(
        "/v1/locate", params={"lon": 117.05, "lat": 36.7, "crs": "cgcs2000"}, headers={"X-API-Key": key}
    )
    assert outside.status_code == 404
    assert outside.headers["content-type"].startswith("application/problem+json")
    assert http.get("/v1/locate", params={"lon": 117.0, "lat": 36.68}).status_code == 401
    bad = http.get("/v1/locate", params={"lon": "east", "lat": 36.68}, headers={"X-API-Key": key})
    assert bad.status_code == 422


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lon": 200, "lat": 36.68}, "lon"),
        ({"lon": 117.0, "lat": -91}, "lat"),
        ({"lon": 217.0, "lat": 36.68, "crs": "gcj02"}, "lon"),
    ],
)
def test_http_a_longitude_past_180_is_bad_input_not_outside_the_city(
    client: tuple[TestClient, str], params: dict[str, Any], field: str
) -> None:
    http, key = client
    response = http.get("/v1/locate", params=params, headers={"X-API-Key": key})
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["field"] == field and "in degrees" in error["message"]


def test_http_batch_geojson_and_csv(client: tuple[TestClient, str]) -> None:
    http, key = client
    features = [
        {
            "type": "Feature",
            "properties": {"name": name},
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
        }
        for name, (lon, lat, *_rest) in POINTS.items()
    ]
    response = http.post(
        "/v1/locate/batch",
        params={"crs": "cgcs2000"},
        content=json.dumps({"type": "FeatureCollection", "features": features}),
        headers={"X-API-Key": key, "Content-Type": "application/geo+json"},
    )
    assert response.status_code == 200, response.text
    got = {
        f["properties"]["name"]: (f["properties"]["how"], f["properties"]["unit_grid_code"])
        for f in response.json()["features"]
    }
    assert got == _expected()

    lines = ["name,经度,纬度"] + [f"{name},{lon},{lat}" for name, (lon, lat, *_r) in POINTS.items()]
    response = http.post(
        "/v1/locate/batch",
        params={"crs": "cgcs2000"},
        content="\n".join(lines).encode("utf-8"),
        headers={"X-API-Key": key, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(response.text.splitlines()))
    assert {r["name"]: (r["how"], r["unit_grid_code"] or None) for r in rows} == _expected()

    wrong = http.post(
        "/v1/locate/batch", content=b"<xml/>", headers={"X-API-Key": key, "Content-Type": "application/xml"}
    )
    assert wrong.status_code == 422


@pytest.mark.parametrize(
    ("content_type", "body", "field", "words"),
    [
        (
            "text/csv",
            b"x,y\n509553.843,4064028.655\n",
            "body",
            ("the posted CSV", "metres, not degrees", "?crs=EPSG:4548"),
        ),
        (
            "application/geo+json",
            b'{"type":"FeatureCollection","features":[{"type":"Feature"}\n{"x":1}]}',
            "body",
            ("the posted GeoJSON cannot be read", "send it again"),
        ),
        ("text/csv", b"a,b\n1,2\n", "body", ("the posted CSV has no coordinate columns",)),
    ],
)
def test_http_batch_errors_speak_of_the_request_not_the_server(
    client: tuple[TestClient, str], content_type: str, body: bytes, field: str, words: tuple[str, ...]
) -> None:
    http, key = client
    response = http.post(
        "/v1/locate/batch", content=body, headers={"X-API-Key": key, "Content-Type": content_type}
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == [field]
    said = problem["detail"] + " " + problem["errors"][0]["message"]
    for word in words:
        assert word in said, said
    for internal in ("/tmp", "gridsvc-locate", "points.", "--crs", "--encoding"):
        assert internal not in said, said


def test_file_and_batch_agree_with_one_by_one(
    city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    names = list(POINTS)
    # The file comes in GCJ-02 (as a phone app would export it) and as a GeoPackage.
    lon = [POINTS[n][0] for n in names]
    lat = [POINTS[n][1] for n in names]
    gx, gy = gcrs.from_storage(lon, lat, "gcj02")
    wx, wy = gcrs.to_storage(gx, gy, "gcj02")  # what gridsvc will read back: within 1 cm of the original
    frame = gpd.GeoDataFrame({"name": names}, geometry=shapely.points(wx, wy), crs="EPSG:4490")
    source = tmp_path / "points.gpkg"
    frame.to_file(source, layer="points", engine="pyogrio")
    report = locate.locate_file(sessions, test_settings, source, tmp_path / "answers.geojson")
    answers = gpd.read_file(tmp_path / "answers.geojson")
    one_by_one = {
        n: (a.how, (a.row or {}).get("unit_grid_code"))
        for n, a in (
            (n, locate.locate_point(sessions, test_settings, float(x), float(y), crs="cgcs2000"))
            for n, x, y in zip(names, wx, wy, strict=True)
        )
    }
    from_file = {
        r["name"]: (r["how"], r["unit_grid_code"] if isinstance(r["unit_grid_code"], str) else None)
        for _, r in answers.iterrows()
    }
    assert from_file == one_by_one
    assert report.rows == len(names)
    batch = locate.locate_many(sessions, test_settings, gx, gy, crs="gcj02")
    codes = [None if pd.isna(c) else c for c in batch["unit_grid_code"]]
    assert list(zip(batch["how"], codes, strict=True)) == [one_by_one[n] for n in names]


def test_file_with_a_non_point_row_is_refused(
    city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    frame = gpd.GeoDataFrame(
        {"name": ["ok", "line"]},
        geometry=[shapely.Point(117.001, 36.681), shapely.LineString([(117.0, 36.68), (117.001, 36.681)])],
        crs="EPSG:4490",
    )
    frame.to_file(tmp_path / "mixed.geojson")
    with pytest.raises(InvalidInputError, match="row 2") as caught:
        locate.locate_file(sessions, test_settings, tmp_path / "mixed.geojson", tmp_path / "out.csv")
    assert caught.value.problems[0].location == {"row": 2}
    assert not (tmp_path / "out.csv").exists()
