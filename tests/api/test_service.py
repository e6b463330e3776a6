"""Health, OpenAPI, problem+json errors, API keys and roles, and the audit log."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api.app import create_app
from gridsvc.db.migrate import head_revision
from gridsvc.settings import Settings


def test_health_reports_postgis_and_migration(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["postgis_version"].startswith("3.")
    assert body["database"]["migration"] == head_revision()
    assert "active_plan" in body


def test_openapi_docs_have_examples(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/departments" in spec["paths"]
    assert "examples" in spec["components"]["schemas"]["DepartmentIn"]


def test_reference_data_is_readable_without_a_key(client: TestClient) -> None:
    classes = {c["code"]: c for c in client.get("/v1/component-classes").json()}
    assert classes["0118"]["name_zh"] == "路灯"
    assert classes["0390"]["is_city_extension"] is True
    assert classes["0391"]["name_zh"] == "垃圾分类投放点"
    departments = {d["code"]: d["name_zh"] for d in client.get("/v1/departments").json()}
    assert departments["sanitation"] == "环卫"
    events = {e["code"]: e["name_zh"] for e in client.get("/v1/event-classes").json()}
    assert events["0403"] == "违章停车"


NEW_DEPARTMENT = {"code": "water_affairs", "name_zh": "水务", "name_en": "Water affairs"}


def test_mutation_without_key_is_401_problem(client: TestClient) -> None:
    response = client.post("/v1/departments", json=NEW_DEPARTMENT)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 401 and body["instance"] == "/v1/departments"
    assert "API key" in body["detail"]
    assert (
        client.post("/v1/departments", json=NEW_DEPARTMENT, headers={"X-API-Key": "gs_nope"}).status_code
        == 401
    )


def test_mutation_with_wrong_role_is_403(client: TestClient, keys: dict[str, str]) -> None:
    for role in ("dispatcher", "field", "reporter"):
        response = client.post("/v1/departments", json=NEW_DEPARTMENT, headers={"X-API-Key": keys[role]})
        assert response.status_code == 403, role
        assert "gis_staff" in response.json()["detail"]


def test_gis_staff_adds_department_and_it_is_audited(
    client: TestClient, keys: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    response = client.post("/v1/departments", json=NEW_DEPARTMENT, headers={"X-API-Key": keys["gis_staff"]})
    assert response.status_code == 201
    assert response.json()["name_zh"] == "水务"
    with sessions() as session:
        actor, entity_id = session.execute(
            text(
                "SELECT actor, entity_id FROM audit_log WHERE entity = 'department' ORDER BY id DESC LIMIT 1"
            )
        ).one()
    assert (actor, entity_id) == ("测试-gis_staff", "water_affairs")
    again = client.post(
        "/v1/departments", json=NEW_DEPARTMENT, headers={"Authorization": f"Bearer {keys['gis_staff']}"}
    )
    assert again.status_code == 409


def test_invalid_body_lists_each_field(client: TestClient, keys: dict[str, str]) -> None:
    response = client.post(
        "/v1/component-classes",
        json={"code": "18", "name_zh": "", "geometry_kind": "blob"},
        headers={"X-API-Key": keys["gis_staff"]},
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"code", "geometry_kind", "name_zh"}


def test_a_body_that_is_not_json_says_where_it_breaks(client: TestClient, keys: dict[str, str]) -> None:
    response = client.post(
        "/v1/component-classes",
        content=b'{"code": "0392", "name_zh": ',
        headers={"X-API-Key": keys["gis_staff"], "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "body", "message": "JSON decode error (at character 28)"}]


def test_extension_class_needs_known_department(client: TestClient, keys: dict[str, str]) -> None:
    body = {"code": "0392", "name_zh": "大件垃圾投放点", "default_department_code": "nobody"}
    response = client.post("/v1/component-classes", json=body, headers={"X-API-Key": keys["gis_staff"]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "default_department_code"
    body["default_department_code"] = "sanitation"
    created = client.post("/v1/component-classes", json=body, headers={"X-API-Key": keys["gis_staff"]})
    assert created.status_code == 201 and created.json()["is_city_extension"] is True


def test_unknown_path_is_problem_json(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_revoked_key_no_longer_works(
    client: TestClient, keys: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    from gridsvc.services.access import LOCAL_OPERATOR, revoke_key

    prefix = keys["gis_staff"].split("_")[1]
    revoke_key(sessions, prefix=prefix, actor=LOCAL_OPERATOR)
    response = client.post("/v1/departments", json=NEW_DEPARTMENT, headers={"X-API-Key": keys["gis_staff"]})
    assert response.status_code == 401
    # Named as the key begins (gs_…), or by the whole key pasted, it is the same key.
    for given in (f"gs_{keys['dispatcher'].split('_')[1]}", keys["field"]):
        revoke_key(sessions, prefix=given, actor=LOCAL_OPERATOR)
    for role in ("dispatcher", "field"):  # 401 for an unknown key, not the 403 of a known one's role
        headers = {"X-API-Key": keys[role]}
        assert client.post("/v1/departments", json=NEW_DEPARTMENT, headers=headers).status_code == 401


def test_health_is_503_when_the_database_is_down(test_settings: Settings) -> None:
    from gridsvc.api.app import create_app
    from tests.conftest import free_port

    dead = f"postgresql+psycopg2://gridsvc:wrong@127.0.0.1:{free_port()}/gridsvc"
    with TestClient(create_app(test_settings, dead)) as offline:
        response = offline.get("/health")
        assert response.status_code == 503
        assert response.json()["database"] == {"reachable": False}
        assert "wrong" not in response.text  # no URL or driver message leaks out
        departments = offline.get("/v1/departments")
        assert departments.status_code == 503
        assert departments.json()["detail"] == "the database cannot be reached"


def test_a_statement_the_database_cancels_is_a_503_that_says_so(
    client: TestClient, database_url: str
) -> None:
    """A statement cancelled by an administrator (or a statement timeout) was answered "the database cannot
    be reached": psycopg2 raises one OperationalError for both. Still 503 + Retry-After (the service is
    fine, the request may be retried), but said as it is. The request waits on a table held locked here,
    so the cancel lands on its statement."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as holder, ThreadPoolExecutor(1) as pool:
            holder.execute(text("LOCK TABLE department IN ACCESS EXCLUSIVE MODE"))
            answer = pool.submit(client.get, "/v1/departments")
            waiting = None
            for _ in range(300):
                holder.execute(text("SELECT pg_stat_clear_snapshot()"))  # else one snapshot per transaction
                waiting = holder.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query ILIKE '%department%' AND pid <> pg_backend_pid()"
                    )
                ).scalar()
                if waiting is not None or answer.done():
                    break
                time.sleep(0.1)
            assert waiting is not None
            holder.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": waiting})
            response = answer.result(timeout=60)
            holder.rollback()
    finally:
        engine.dispose()
    assert response.status_code == 503 and response.headers["Retry-After"]
    body = response.json()
    assert body["title"] == "Database could not finish the request"
    assert (
        body["detail"].startswith("the database cancelled the statement")
        and "nothing was changed" in body["detail"]
    )
    assert client.get("/v1/departments").status_code == 200  # and the next request is answered


def test_code_with_trailing_newline_is_422_not_500(client: TestClient, keys: dict[str, str]) -> None:
    body = {"code": "water\n", "name_zh": "水"}
    response = client.post("/v1/departments", json=body, headers={"X-API-Key": keys["gis_staff"]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "code"
    # Domain validation and request validation name the same problem type.
    schema_error = client.post("/v1/departments", json={"code": 1}, headers={"X-API-Key": keys["gis_staff"]})
    assert response.json()["type"] == schema_error.json()["type"]


def test_a_write_a_database_rule_refuses_is_409_naming_the_rule(
    test_settings: Settings, database_url: str, sessions: sessionmaker[Session]
) -> None:
    """A constraint the services did not foresee (a race, a missing check) answers 409, not 500."""
    from gridsvc.api.app import create_app

    app = create_app(test_settings, database_url, sessions=sessions)

    def two_active_plans() -> None:  # what a racing writer would do; the partial unique index refuses it
        with sessions.begin() as session:
            for name in ("一", "二"):
                session.execute(
                    text(
                        "INSERT INTO grid_plan (name, status, created_by, effective_from) "
                        "VALUES (:name, 'active', 'test', now())"
                    ),
                    {"name": name},
                )

    app.add_api_route("/test/two-active-plans", two_active_plans, methods=["POST"])
    with TestClient(app) as client:
        response = client.post("/test/two-active-plans")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "uq_grid_plan_one_active" in response.json()["detail"]
    assert "INSERT" not in response.text  # the driver's message stays in the log


def test_a_fault_inside_the_service_is_500_problem_json_without_its_words(
    test_settings: Settings, database_url: str, sessions: sessionmaker[Session]
) -> None:
    # A bug no handler knows of (here a route made to fail as an upload saved under a too-long name did):
    # the client still gets problem+json, not Starlette's plain text, and not the error's words.
    app = create_app(test_settings, database_url, sessions=sessions)

    @app.get("/v1/test-fault")
    def fault() -> None:
        raise OSError(36, "File name too long", "/tmp/gridsvc-upload-x/路灯.gpkg")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/v1/test-fault")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["title"] == "Internal error" and "/tmp" not in answer.text
