"""What an upload's mapping form field answers when it cannot be used (issue 3's exploratory test)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

CSV = "经度,纬度,标识码\n117.0,36.6,3701020101000001\n".encode()


def _upload(client: TestClient, key: str, mapping: str) -> dict[str, Any]:
    answer = client.post(
        "/v1/imports/components",
        files={"file": ("井盖.csv", CSV, "text/csv")},
        data={"crs": "EPSG:4490", "dry_run": "true", "mapping": mapping},
        headers={"X-API-Key": key},
    )
    assert answer.status_code == 422, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_number_for_a_field_name_is_refused_naming_its_key(
    client: TestClient, keys: dict[str, str]
) -> None:
    # A JSON object it is: the answer says which value is wrong and how to write a field called 5.
    body = _upload(client, keys["gis_staff"], '{"name": "名称", "code": 5}')
    assert body["detail"] == (
        "each value of mapping must be the name of one of the file's fields, as text: nothing was imported"
    )
    assert body["errors"] == [
        {
            "field": "mapping",
            "message": "'code' must name a file field as text, got the number 5; "
            'write {"code": "5"} if the field is called 5',
        }
    ]


def test_every_wrong_value_is_named(client: TestClient, keys: dict[str, str]) -> None:
    body = _upload(client, keys["gis_staff"], '{"code": 2023, "name": null, "status": ""}')
    assert [e["message"] for e in body["errors"]] == [
        "'code' must name a file field as text, got the number 2023; "
        'write {"code": "2023"} if the field is called 2023',
        "'name' must name a file field, got null",
        "'status' must name a file field, got \"\"",
    ]


def test_what_is_no_object_is_still_refused_as_such(client: TestClient, keys: dict[str, str]) -> None:
    body = _upload(client, keys["gis_staff"], '["code", "标识码"]')
    assert body["detail"] == "mapping must be a JSON object"
