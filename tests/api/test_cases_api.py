"""The case routes: intake, steps with their roles and statuses, one case, escalation, monthly figures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api.app import create_app
from gridsvc.services.access import LOCAL_OPERATOR, create_key
from gridsvc.settings import Settings
from tests.factories import LAMP


@pytest.fixture
def api(
    case_city: dict[str, Any], test_settings: Settings, database_url: str, sessions: sessionmaker[Session]
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    headers = {
        role: {"X-API-Key": create_key(sessions, name=f"api-{role}", role=role, actor=LOCAL_OPERATOR).secret}
        for role in ("gis_staff", "dispatcher", "field", "reporter")
    }
    with TestClient(create_app(test_settings, database_url, sessions=sessions)) as client:
        yield client, headers


REPORT = {
    "kind": "component",
    "class_code": "0118",
    "lon": LAMP[0] + 0.0002,
    "lat": LAMP[1],
    "crs": "cgcs2000",
    "description": "路灯不亮",
    "reporter": {"name": "李明", "phone": "13800000000"},
}


def test_report_then_walk_the_loop_over_http(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, keys = api
    made = client.post("/v1/cases", json=REPORT, headers=keys["reporter"])
    assert made.status_code == 201, made.text
    body = made.json()
    code = body["request_code"]
    assert body["routing"]["component"]["code"] == "3701020118000001"
    assert "reporter" not in body  # only dispatchers see the reporter's contact
    assert (
        client.get(f"/v1/cases/{code}", headers=keys["dispatcher"]).json()["reporter"]["phone"]
        == "13800000000"
    )
    assert "reporter" not in client.get(f"/v1/cases/{code}", headers=keys["field"]).json()
    assert client.get(f"/v1/cases/{code}", headers=keys["reporter"]).status_code == 403

    def step(action: str, role: str, **body: Any) -> Any:
        return client.post(f"/v1/cases/{code}/{action}", json=body or None, headers=keys[role])

    assert step("dispatch", "dispatcher").status_code == 409  # not registered yet
    assert step("register", "field").status_code == 403
    for action, role in (
        ("register", "dispatcher"),
        ("dispatch", "dispatcher"),
        ("handle", "field"),
        ("report_back", "field"),
        ("verify", "dispatcher"),
        ("close", "dispatcher"),
    ):
        answer = step(action, role)
        assert answer.status_code == 200, (action, answer.text)
    final = answer.json()
    assert final["status"] == "closed" and final["open311_status"] == "closed"
    assert [e["action"] for e in final["history"]][-1] == "close"
    assert step("reject", "dispatcher").status_code == 422  # a note is required (and it is closed anyway)
    fly = step("fly", "dispatcher")
    assert fly.status_code == 404 and fly.json()["errors"][0]["field"] == "action"  # as the OpenAPI says
    assert (
        "404"
        in client.get("/openapi.json").json()["paths"]["/v1/cases/{request_code}/{action}"]["post"][
            "responses"
        ]
    )
    assert client.post("/v1/cases/JN202611239999999/register", headers=keys["dispatcher"]).status_code == 404


def test_bad_reports_are_refused_with_the_field_named(
    api: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, keys = api
    unknown = client.post("/v1/cases", json={**REPORT, "class_code": "9999"}, headers=keys["reporter"])
    assert unknown.status_code == 422
    # This API's own field names, not Open311's (service_code, service_object_id, lat/long).
    assert unknown.json()["errors"][0]["field"] == "class_code"
    outside = client.post("/v1/cases", json={**REPORT, "lon": 117.05, "lat": 36.70}, headers=keys["reporter"])
    assert outside.status_code == 422 and "outside" in outside.json()["detail"]
    assert outside.json()["errors"][0]["field"] == "lon/lat"
    no_lamp = client.post(
        "/v1/cases", json={**REPORT, "component_code": "3701020118999999"}, headers=keys["reporter"]
    )
    assert no_lamp.status_code == 422 and no_lamp.json()["errors"][0]["field"] == "component_code"
    assert client.post("/v1/cases", json=REPORT).status_code == 401
    assert client.post("/v1/cases", json=REPORT, headers=keys["gis_staff"]).status_code == 403
    assert (
        client.post("/v1/cases", json={**REPORT, "lat": "north"}, headers=keys["reporter"]).status_code == 422
    )


def test_escalation_and_stats_routes(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, keys = api
    assert client.post("/v1/escalations", headers=keys["field"]).status_code == 403
    assert client.post("/v1/escalations", headers=keys["dispatcher"]).json() == {"escalated": []}
    # Not in the future: that would escalate cases not yet due and date their history ahead of time.
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    future = client.post("/v1/escalations", params={"now": ahead}, headers=keys["dispatcher"])
    assert future.status_code == 422, future.text
    assert future.json()["errors"][0]["field"] == "query.now"
    assert "server's clock" in future.json()["errors"][0]["message"]
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    assert client.post("/v1/escalations", params={"now": past}, headers=keys["dispatcher"]).status_code == 200
    stats = client.get(
        "/v1/stats", params={"month": "2026-10", "level": "district"}, headers=keys["dispatcher"]
    )
    assert stats.status_code == 200 and stats.json()["level"] == "district"
    page = client.get("/v1/stats", params={"month": "2026-10", "format": "html"}, headers=keys["gis_staff"])
    assert page.headers["content-type"].startswith("text/html") and "按期结案率" in page.text
    sheet = client.get("/v1/stats", params={"month": "2026-10", "format": "csv"}, headers=keys["dispatcher"])
    assert sheet.text.startswith("\ufefflevel,code,name")
    assert client.get("/v1/stats", params={"month": "October"}, headers=keys["dispatcher"]).status_code == 422
    assert client.get("/v1/stats", params={"month": "2026-10"}, headers=keys["field"]).status_code == 403


def test_a_reporter_key_neither_takes_nor_reads_other_callers_orders(
    api: tuple[TestClient, dict[str, dict[str, str]]], sessions: sessionmaker[Session]
) -> None:
    client, keys = api
    # A citizen app cannot claim a 12345 order number: the hotline import (the dispatch centre) owns them.
    claimed = client.post(
        "/v1/cases",
        json={**REPORT, "channel": "hotline_12345", "external_ref": "HJ1"},
        headers=keys["reporter"],
    )
    assert claimed.status_code == 403, claimed.text
    assert claimed.json()["errors"][0]["field"] == "channel"
    hotline = client.post(
        "/v1/cases",
        json={**REPORT, "channel": "hotline_12345", "external_ref": "H001"},
        headers=keys["dispatcher"],
    )
    assert hotline.status_code == 201
    # An app's own order: sent again by the same key it is the same case, without the dispatchers' notes.
    order = {**REPORT, "channel": "app", "external_ref": "APP-1"}
    made = client.post("/v1/cases", json=order, headers=keys["reporter"])
    code = made.json()["request_code"]
    note = "内部：电力公司联系人王工"
    moved = client.post(
        f"/v1/cases/{code}/reassign",
        json={"note": note, "department_code": "lighting"},
        headers=keys["dispatcher"],
    )
    assert moved.status_code == 200, moved.text
    again = client.post("/v1/cases", json=order, headers=keys["reporter"])
    assert again.status_code == 200 and again.json()["request_code"] == code
    assert note not in again.text and "api-dispatcher" not in again.text and "reporter" not in again.json()
    other_key = {
        "X-API-Key": create_key(sessions, name="另一个App", role="reporter", actor=LOCAL_OPERATOR).secret
    }
    for body, headers in ((order, other_key), ({**order, "description": "路灯倒了"}, keys["reporter"])):
        refused = client.post("/v1/cases", json=body, headers=headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["errors"][0]["field"] == "external_ref" and code not in refused.text


def test_media_url_is_a_web_address(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, keys = api
    for url in ("javascript:alert(document.cookie)", "data:text/html,<script>1</script>", "ftp://x/a.jpg"):
        refused = client.post("/v1/cases", json={**REPORT, "media_url": url}, headers=keys["reporter"])
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["errors"] == [
            {"field": "media_url", "message": "must be an http or https URL of at most 2000 characters"}
        ]
    photo = "https://img.example.cn/2026/11/25/lamp.jpg"
    made = client.post("/v1/cases", json={**REPORT, "media_url": photo}, headers=keys["reporter"])
    assert made.status_code == 201 and made.json()["media_url"] == photo


def test_a_nul_character_is_refused_with_its_field_named(
    api: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, keys = api
    message = "must not contain the NUL character (\\u0000)"
    for body, field in (
        ({**REPORT, "description": "abc\u0000def"}, "description"),
        ({**REPORT, "reporter": {"name": "a\u0000b"}}, "reporter.name"),
        ({**REPORT, "address": "\u0000"}, "address"),
        ({**REPORT, "external_ref": "X\u00001"}, "external_ref"),
    ):
        refused = client.post("/v1/cases", json=body, headers=keys["reporter"])
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"] == [{"field": field, "message": message}]
    code = client.post("/v1/cases", json=REPORT, headers=keys["reporter"]).json()["request_code"]
    step = client.post(f"/v1/cases/{code}/reject", json={"note": "非\u0000城管"}, headers=keys["dispatcher"])
    assert step.status_code == 422 and step.json()["errors"] == [{"field": "note", "message": message}]
    assert client.get("/v1/cases/JN%00", headers=keys["dispatcher"]).status_code == 404
    assert client.post("/v1/cases/JN%00/register", headers=keys["dispatcher"]).status_code == 404
