"""A reporter's name, phone and e-mail are shown to dispatchers only: never in public Open311 reads, tiles,
OGC features, pages, stats, plan comparisons or exports, and not to the other roles.

Two reports carry personal data (one through Open311, one through /v1/cases); then every read path is
asked as each role and without a key, and the personal strings may appear only where a dispatcher reads
the case itself.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api.app import create_app
from gridsvc.services import planning, tiles
from gridsvc.services.access import LOCAL_OPERATOR, Principal, create_key
from gridsvc.services.export import export_layer
from gridsvc.settings import Settings
from tests.api.test_tiles import tile_of
from tests.factories import LAMP

OPEN311_CONTACT = {
    "first_name": "慕容",
    "last_name": "复兴",
    "phone": "13912345678",
    "email": "murong.fuxing@example.cn",
}
CASE_CONTACT = {"name": "上官婉儿", "phone": "13700001111", "email": "wan.er@example.cn"}
PERSONAL = [*OPEN311_CONTACT.values(), *CASE_CONTACT.values()]
CALLERS = ("gis_staff", "dispatcher", "field", "reporter", "none")


def leaks(content: bytes) -> list[str]:
    """The personal strings in a body: as UTF-8, or escaped the way JSON may write them."""
    found = []
    for value in PERSONAL:
        forms = {
            value.encode(),
            json.dumps(value)[1:-1].encode(),
            json.dumps(value, ensure_ascii=False).encode(),
        }
        if any(form.strip(b'"') in content for form in forms):
            found.append(value)
    return found


@pytest.fixture
def reported(
    drawable: dict[str, Any], test_settings: Settings, database_url: str, sessions: sessionmaker[Session]
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], list[str], int]]:
    """The case city with a draft plan beside the active one, keys, and two reports with contact data."""
    keys = {
        role: {"X-API-Key": create_key(sessions, name=f"隐私-{role}", role=role, actor=LOCAL_OPERATOR).secret}
        for role in CALLERS
        if role != "none"
    }
    keys["none"] = {}
    draft = planning.draw_plan(
        sessions,
        test_settings,
        planning.DrawParams(communities=["370102001001"]),
        actor=Principal(name="规划员", role="gis_staff"),
    ).plan_id
    tiles.clear_cache()
    with TestClient(create_app(test_settings, database_url, sessions=sessions)) as client:
        by_open311 = client.post(
            "/open311/v2/requests.json",
            data={
                "api_key": keys["reporter"]["X-API-Key"],
                "service_code": "C0118",
                "lat": repr(LAMP[1]),
                "long": repr(LAMP[0]),
                "crs": "cgcs2000",
                "description": "路灯不亮",
                **OPEN311_CONTACT,
            },
        )
        assert by_open311.status_code == 201, by_open311.text
        assert not leaks(by_open311.content)
        by_api = client.post(
            "/v1/cases",
            headers=keys["reporter"],
            json={
                "kind": "event",
                "class_code": "0403",
                "lon": LAMP[0] + 0.004,
                "lat": LAMP[1] + 0.003,
                "crs": "cgcs2000",
                "description": "违章停车",
                "reporter": CASE_CONTACT,
            },
        )
        assert by_api.status_code == 201, by_api.text
        assert not leaks(by_api.content)  # not even to the reporter role that sent it
        codes = [by_open311.json()[0]["service_request_id"], by_api.json()["request_code"]]
        yield client, keys, codes, draft
    tiles.clear_cache()


def _read_paths(codes: list[str], draft: int) -> list[str]:
    month = dt.datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    x, y = tile_of(LAMP[0], LAMP[1], 15)
    paths = [
        "/open311/v2/requests.json",
        "/open311/v2/requests.xml",
        f"/open311/v2/requests.json?service_request_id={','.join(codes)}",
        "/v1/tiles/cases.json",
        f"/v1/tiles/cases/15/{x}/{y}.mvt",
        f"/v1/tiles/cases/15/{x}/{y}.mvt?status=reported&status=registered&status=dispatched",
        "/ogc/collections",
        "/map",
        "/field",
        f"/plans/{draft}/map",
        f"/v1/stats?month={month}&level=grid",
        f"/v1/stats?month={month}&level=community&format=csv",
        f"/v1/stats?month={month}&level=district&format=html",
        f"/v1/plans/{draft}/compare",
        f"/v1/plans/{draft}/compare?format=csv",
        f"/v1/plans/{draft}/compare?format=html",
        f"/v1/plans/{draft}/review",
    ]
    for code in codes:
        paths += [
            f"/open311/v2/requests/{code}.json",
            f"/open311/v2/requests/{code}.xml",
            f"/open311/v2/tokens/{code}.json",
            f"/v1/cases/{code}",
        ]
    for collection in ("unit_grids", "responsibility_grids", "components", "stations", "communities"):
        paths.append(f"/ogc/collections/{collection}/items?limit=1000")
    return paths


def test_contact_data_is_shown_to_dispatchers_reading_a_case_and_nowhere_else(
    reported: tuple[TestClient, dict[str, dict[str, str]], list[str], int],
) -> None:
    client, keys, codes, draft = reported
    shown: dict[str, set[str]] = {}
    answered: dict[tuple[str, str], int] = {}
    for caller in CALLERS:
        for path in _read_paths(codes, draft):
            response = client.get(path, headers=keys[caller])
            answered[(caller, path)] = response.status_code
            for value in leaks(response.content):
                shown.setdefault(f"{caller} {path}", set()).add(value)
    dispatcher_reads = {f"dispatcher /v1/cases/{code}" for code in codes}
    assert set(shown) == dispatcher_reads, shown
    assert shown[f"dispatcher /v1/cases/{codes[0]}"] == set(OPEN311_CONTACT.values())
    assert shown[f"dispatcher /v1/cases/{codes[1]}"] == set(CASE_CONTACT.values())
    # The walk read real answers: the public Open311 list, the cases tile and the comparison have the cases.
    x, y = tile_of(LAMP[0], LAMP[1], 15)
    assert answered[("none", "/open311/v2/requests.json")] == 200
    assert answered[("field", f"/v1/tiles/cases/15/{x}/{y}.mvt")] == 200
    assert answered[("dispatcher", f"/v1/plans/{draft}/compare?format=csv")] == 200
    for code in codes:
        assert answered[("field", f"/v1/cases/{code}")] == 200
        assert code in client.get("/open311/v2/requests.json").text


def test_the_steps_of_the_loop_answer_contact_data_to_dispatchers_only(
    reported: tuple[TestClient, dict[str, dict[str, str]], list[str], int],
) -> None:
    client, keys, codes, _ = reported
    code = codes[1]

    def step(action: str, role: str) -> bytes:
        response = client.post(f"/v1/cases/{code}/{action}", headers=keys[role], json={})
        assert response.status_code == 200, response.text
        return response.content

    assert leaks(step("register", "dispatcher")) == list(CASE_CONTACT.values())
    step("dispatch", "dispatcher")
    assert not leaks(step("handle", "field"))
    assert not leaks(step("report_back", "field"))
    escalated = client.post("/v1/escalations", headers=keys["dispatcher"])
    assert escalated.status_code == 200 and not leaks(escalated.content)


def test_exports_carry_no_contact_data(
    reported: tuple[TestClient, dict[str, dict[str, str]], list[str], int],
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    for what, options in (
        ("components", {}),
        ("grids", {"kind": "unit"}),
        ("grids", {"kind": "responsibility"}),
        ("boundaries", {"level": "community"}),
    ):
        for suffix in (".csv", ".geojson"):
            path, count = export_layer(
                sessions,
                what,
                tmp_path / f"{what}-{options}{suffix}",
                **options,  # type: ignore[arg-type]
            )
            assert count > 0 and not leaks(path.read_bytes()), (what, options, suffix)
