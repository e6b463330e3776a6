"""The audit log: every change made through the service names the API key that made it and what changed,
and the log itself cannot be changed, neither through the service nor in SQL (migration 0008's trigger)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

import gridsvc
from gridsvc.settings import Settings
from tests.factories import LAMP
from tests.services.test_imports import _lamps
from tests.services.test_plan_edits import add_drawable, draw_draft, layout


@pytest.fixture
def draft(case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings) -> int:
    with sessions.begin() as session:
        add_drawable(session)
    return draw_draft(sessions, test_settings)


def _entries_since(sessions: sessionmaker[Session], last_id: int) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.execute(
            text(
                "SELECT a.id, a.actor, a.api_key_id, k.name AS key_name, a.action, a.entity, a.entity_id,"
                " a.details FROM audit_log a LEFT JOIN api_key k ON k.id = a.api_key_id"
                " WHERE a.id > :last ORDER BY a.id"
            ),
            {"last": last_id},
        ).mappings()
        return [dict(r) for r in rows]


def _last_id(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.execute(text("SELECT coalesce(max(id), 0) FROM audit_log")).scalar_one())


def test_every_change_route_audits_who_and_what(
    draft: int, client: TestClient, keys: dict[str, str], sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    as_role = {role: {"X-API-Key": secret} for role, secret in keys.items()}
    census = tmp_path / "路灯.geojson"
    _lamps(pd.DataFrame({"lon": [LAMP[0] + 0.0003], "lat": [LAMP[1]]})).to_file(census, driver="GeoJSON")
    view = layout(sessions, draft)
    a = view.grids()[0]
    merge = {"grids": [a, min(view.neighbours(a))], "version": 1}

    def report(role: str) -> str:
        body = {"kind": "event", "class_code": "0403", "lon": LAMP[0], "lat": LAMP[1], "crs": "cgcs2000"}
        made = client.post("/v1/cases", json=body, headers=as_role[role])
        assert made.status_code == 201, made.text
        return str(made.json()["request_code"])

    code: list[str] = []
    # (what to do, the role doing it, the (entity, action) it must leave in the audit log)
    changes: list[tuple[Any, str, tuple[str, str]]] = [
        (
            lambda h: client.post(
                "/v1/departments", json={"code": "water_affairs", "name_zh": "水务"}, headers=h
            ),
            "gis_staff",
            ("department", "create"),
        ),
        (
            lambda h: client.post(
                "/v1/component-classes",
                json={"code": "0392", "name_zh": "大件垃圾投放点", "default_department_code": "sanitation"},
                headers=h,
            ),
            "gis_staff",
            ("component_class", "create"),
        ),
        (lambda h: code.append(report("reporter")), "reporter", ("case", "intake")),
        (
            lambda h: client.post(f"/v1/cases/{code[0]}/register", headers=h),
            "dispatcher",
            ("case", "register"),
        ),
        (
            lambda h: client.post(f"/v1/cases/{code[0]}/dispatch", headers=h),
            "dispatcher",
            ("case", "dispatch"),
        ),
        (
            lambda h: client.post(f"/v1/cases/{code[0]}/escalate", headers=h),
            "dispatcher",
            ("case", "escalate"),
        ),
        (
            lambda h: client.post(
                "/open311/v2/requests.json",
                data={
                    "service_code": "E0403",
                    "lat": repr(LAMP[1] + 0.004),
                    "long": repr(LAMP[0] + 0.004),
                    "crs": "cgcs2000",
                },
                headers=h,
            ),
            "field",
            ("case", "intake"),
        ),
        (
            lambda h: client.post(
                "/v1/imports/components",
                files={"file": (census.name, census.read_bytes(), "application/geo+json")},
                headers=h,
            ),
            "gis_staff",
            ("survey_batch", "import"),
        ),
        (
            lambda h: client.post(f"/v1/plans/{draft}/edits/merge", json=merge, headers=h),
            "gis_staff",
            ("grid_plan", "merge"),
        ),
        (
            lambda h: client.post(
                f"/v1/plans/{draft}/activate", json={"effective_from": "2026-12-01"}, headers=h
            ),
            "gis_staff",
            ("grid_plan", "activate"),
        ),
    ]
    for change, role, (entity, action) in changes:
        before = _last_id(sessions)
        answer = change(as_role[role])
        if answer is not None:
            assert answer.status_code in (200, 201), answer.text
        entries = _entries_since(sessions, before)
        assert entries, f"{entity} {action}: nothing audited"
        for entry in entries:
            assert entry["key_name"] == entry["actor"] == f"测试-{role}", entry  # who: the key and its name
        assert (entity, action) in {(e["entity"], e["action"]) for e in entries}, entries
        assert all(e["entity_id"] for e in entries), entries  # what: the thing changed


def test_the_audit_log_refuses_update_delete_and_truncate(
    sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM audit_log")).scalar_one() > 0  # the keys' creation
    for statement in (
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with (
            sessions() as session,
            pytest.raises(ProgrammingError, match="append-only") as refused,
            session.begin_nested(),
        ):
            session.execute(text(statement))
        assert refused.value.orig is not None
        assert refused.value.orig.pgcode == "42501"  # insufficient_privilege


def test_no_code_in_the_service_changes_the_audit_log() -> None:
    """The service only appends: no UPDATE, DELETE or TRUNCATE of audit_log, in SQL or through the ORM."""
    root = Path(gridsvc.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                sql = " ".join(node.value.lower().split())
                if any(f"{verb} audit_log" in sql for verb in ("update", "delete from", "truncate")):
                    offenders.append(f"{path}: {node.value[:60]!r}")
            orm_change = isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("update", "delete")
            if orm_change and any(getattr(arg, "id", "") == "AuditLog" for arg in node.args):  # type: ignore[attr-defined]
                offenders.append(f"{path}: {ast.unparse(node)[:60]}")
    assert offenders == [], offenders
