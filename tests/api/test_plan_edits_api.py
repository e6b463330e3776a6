"""Hand edits over HTTP: ETag on reads and edits, If-Match (or a version field) on edits, problem+json
refusals with the rule breaks or the edits made since, gis_staff only."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.settings import Settings
from tests.services.test_plan_edits import (
    COMMUNITY,
    X0,
    Y0,
    add_drawable,
    draw_draft,
    layout,
    line_across,
    movable,
    northwest_grid,
)


@pytest.fixture
def draft(case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings) -> int:
    with sessions.begin() as session:
        add_drawable(session)
    return draw_draft(sessions, test_settings)


def test_edit_with_if_match_and_etag_then_a_stale_edit_is_a_conflict(
    draft: int, client: TestClient, keys: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    staff = {"X-API-Key": keys["gis_staff"]}
    read = client.get(f"/v1/plans/{draft}/edits", headers=staff)
    assert read.status_code == 200 and read.headers["ETag"] == '"1"'
    assert read.json() == {"plan_id": draft, "status": "draft", "version": 1, "edits": []}

    grid = northwest_grid(sessions, draft)
    wkt, _lat = line_across(sessions, draft, grid)
    body = {"grid": grid, "line": wkt, "crs": "cgcs2000"}
    done = client.post(f"/v1/plans/{draft}/edits/split", json=body, headers={**staff, "If-Match": '"1"'})
    assert done.status_code == 200, done.text
    assert done.headers["ETag"] == '"2"'
    answer = done.json()
    assert answer["version"] == 2 and answer["kind"] == "split" and answer["grid"] == grid
    assert answer["quality"]["community_code"] == COMMUNITY and answer["quality"]["n_groups"] == 7
    assert {g["code"] for g in answer["grids"]} == {grid, answer["new_grid"]}

    # A second editor still looking at version 1: refused, told what changed and by whom.
    view = layout(sessions, draft)
    unit, _source, target = movable(view)
    stale = client.post(
        f"/v1/plans/{draft}/edits/move",
        json={"unit_grids": [unit], "to": target},
        headers={**staff, "If-Match": '"1"'},
    )
    assert stale.status_code == 409
    assert stale.headers["content-type"] == "application/problem+json"
    problem = stale.json()
    assert "your edit was made against version 1" in problem["detail"] and "split" in problem["detail"]
    assert problem["errors"][0] == {
        "field": "version",
        "message": "the plan is at version 2",
        "current_version": 2,
    }
    assert problem["errors"][1]["kind"] == "split" and problem["errors"][1]["actor"] == "测试-gis_staff"

    # The same edit against the current version, named in the body this time.
    moved = client.post(
        f"/v1/plans/{draft}/edits/move",
        json={"unit_grids": [unit], "to": target, "version": 2},
        headers=staff,
    )
    assert moved.status_code == 200, moved.text
    assert moved.headers["ETag"] == '"3"' and moved.json()["moved_unit_grids"] == [unit]

    history = client.get(f"/v1/plans/{draft}/edits", headers={"X-API-Key": keys["dispatcher"]})
    assert history.headers["ETag"] == '"3"'
    assert [(e["version"], e["kind"]) for e in history.json()["edits"]] == [(2, "split"), (3, "move")]
    assert client.get(f"/v1/plans/{draft}/checks", headers=staff).json()["breaks"] == []


def test_refusals_are_problem_json(
    draft: int, client: TestClient, keys: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    staff = {"X-API-Key": keys["gis_staff"]}
    view = layout(sessions, draft)
    a = view.grids()[0]
    far = next(g for g in view.grids() if g != a and g not in view.neighbours(a))
    url = f"/v1/plans/{draft}/edits/merge"

    not_neighbours = client.post(url, json={"grids": [a, far], "version": 1}, headers=staff)
    assert not_neighbours.status_code == 422
    assert not_neighbours.json()["errors"][0]["field"] == "contiguity"
    assert "do not share an edge" in not_neighbours.json()["detail"]

    merge = {"grids": [a, min(view.neighbours(a))]}
    assert client.post(url, json=merge, headers={"X-API-Key": keys["dispatcher"]}).status_code == 403
    assert client.get(f"/v1/plans/{draft}/edits", headers={"X-API-Key": keys["field"]}).status_code == 403
    assert client.post(url, json=merge).status_code == 401
    no_version = client.post(url, json=merge, headers=staff)
    assert no_version.status_code == 422 and no_version.json()["errors"][0]["field"] == "version"
    disagree = client.post(url, json={**merge, "version": 2}, headers={**staff, "If-Match": '"1"'})
    assert disagree.status_code == 422 and "name one" in disagree.json()["detail"]
    for tag in ("*", 'W/"1"', '"1", "2"'):
        assert client.post(url, json=merge, headers={**staff, "If-Match": tag}).status_code == 422
    assert client.post(url, json={"grids": [a], "version": 1}, headers=staff).status_code == 422
    assert (
        client.post("/v1/plans/999999/edits/merge", json={**merge, "version": 1}, headers=staff).status_code
        == 404
    )

    grid = northwest_grid(sessions, draft)
    misses = {"grid": grid, "line": f"LINESTRING({X0 + 0.02} {Y0}, {X0 + 0.03} {Y0})", "crs": "cgcs2000"}
    missed = client.post(f"/v1/plans/{draft}/edits/split", json=misses, headers={**staff, "If-Match": '"1"'})
    assert missed.status_code == 422 and missed.json()["errors"][0]["field"] == "line"
    geojson = {
        "grid": grid,
        "line": {"type": "Point", "coordinates": [117.0, 36.68]},
        "crs": "cgcs2000",
        "version": 1,
    }
    assert (
        "LineString"
        in client.post(f"/v1/plans/{draft}/edits/split", json=geojson, headers=staff).json()["detail"]
    )
    assert client.get(f"/v1/plans/{draft}/edits", headers=staff).json()["version"] == 1  # nothing was written


def test_the_edit_bodies_have_examples(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("SplitBody", "MergeBody", "MoveBody"):
        assert schemas[name]["examples"], name
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/plans/{plan_id}/edits/split", "/v1/plans/{plan_id}/edits/merge"} <= set(paths)
    parameters = paths["/v1/plans/{plan_id}/edits/move"]["post"]["parameters"]
    assert any(p["name"] == "if-match" for p in parameters)
