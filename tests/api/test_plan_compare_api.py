"""GET /v1/plans, /v1/plans/{id} and /v1/plans/{id}/compare (JSON, CSV, a map): GIS staff and dispatchers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api.app import create_app
from gridsvc.services import planning
from gridsvc.services.access import LOCAL_OPERATOR, Principal, create_key
from gridsvc.settings import Settings


@pytest.fixture
def api(
    drawable: dict[str, Any], test_settings: Settings, database_url: str, sessions: sessionmaker[Session]
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], int]]:
    headers = {
        role: {"X-API-Key": create_key(sessions, name=f"api-{role}", role=role, actor=LOCAL_OPERATOR).secret}
        for role in ("gis_staff", "dispatcher", "field")
    }
    drawn = planning.draw_plan(
        sessions,
        test_settings,
        planning.DrawParams(communities=["370102001001"]),
        actor=Principal(name="规划员", role="gis_staff"),
    )
    with TestClient(create_app(test_settings, database_url, sessions=sessions)) as client:
        yield client, headers, drawn.plan_id


def test_compare_over_http_in_three_formats(
    api: tuple[TestClient, dict[str, dict[str, str]], int],
) -> None:
    client, keys, plan_id = api
    answer = client.get(f"/v1/plans/{plan_id}/compare", headers=keys["dispatcher"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["responsibility_grids"]["added"] == 6 and body["households_changing_owner"] == 2400
    assert len(body["buildings"]) == 48
    short = client.get(f"/v1/plans/{plan_id}/compare?limit=5", headers=keys["gis_staff"]).json()
    assert len(short["buildings"]) == 5 and short["buildings_changing_owner"] == 48

    csv = client.get(f"/v1/plans/{plan_id}/compare?format=csv", headers=keys["gis_staff"])
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.content.startswith("\ufeffkind,code".encode())
    page = client.get(f"/v1/plans/{plan_id}/compare?format=html", headers=keys["gis_staff"])
    assert page.status_code == 200 and "plan-legend" in page.text and "leaflet" in page.text.lower()


def test_compare_refuses_strangers_unknown_plans_and_bad_formats(
    api: tuple[TestClient, dict[str, dict[str, str]], int],
) -> None:
    client, keys, plan_id = api
    assert client.get(f"/v1/plans/{plan_id}/compare").status_code == 401
    assert client.get(f"/v1/plans/{plan_id}/compare", headers=keys["field"]).status_code == 403
    missing = client.get("/v1/plans/999999/compare", headers=keys["gis_staff"])
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/plans/{plan_id}/compare?format=pdf", headers=keys["gis_staff"]).status_code == 422
    itself = client.get(f"/v1/plans/{plan_id}/compare?against={plan_id}", headers=keys["gis_staff"])
    assert itself.status_code == 422 and "itself" in itself.json()["detail"]


def test_plans_are_listed_and_shown_with_their_quality(
    api: tuple[TestClient, dict[str, dict[str, str]], int],
) -> None:
    client, keys, plan_id = api
    listed = client.get("/v1/plans", headers=keys["dispatcher"]).json()["plans"]
    assert [p["status"] for p in listed][:2] == ["draft", "active"] and listed[0]["id"] == plan_id
    assert "per_community" not in listed[0]["quality"] and listed[0]["responsibility_grids"] == 6
    shown = client.get(f"/v1/plans/{plan_id}", headers=keys["gis_staff"])
    assert shown.status_code == 200 and shown.headers["etag"] == '"1"'
    quality = shown.json()["quality"]
    assert quality["max_min_ratio_worst"] <= 1.3 and len(quality["per_community"]) == 1
    assert client.get("/v1/plans/999999", headers=keys["gis_staff"]).status_code == 404
    assert client.get("/v1/plans", headers=keys["field"]).status_code == 403
