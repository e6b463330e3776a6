"""Every route declares who may call it (gridsvc/api/roles.py); this walks them all with every kind of caller.

The callers: a key of each role, a revoked key, an expired key and no key. What is checked is the access
table, not the routes' work: an unauthorised caller gets 401 (no key, or an unknown, revoked or expired
one) or 403 (a role the route does not list) before anything else, which is why every request carries a
body that is not even JSON; an allowed role never gets 401 or 403. Open311 answers in GeoReport's own
error list, with 403 for every key problem.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api.app import create_app
from gridsvc.api.roles import ROLES, RoleRoute, RoleRule, rule_of
from gridsvc.db.models import ApiKey
from gridsvc.services import cases
from gridsvc.services.access import LOCAL_DISPATCHER, LOCAL_OPERATOR, create_key, hash_key, revoke_key
from gridsvc.settings import Settings
from tests.factories import LAMP

# What the framework serves by itself: the API documents and the static files of the pages.
UNDECLARED = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static/{path}"}
CALLERS = (*ROLES, "revoked", "expired", "none")
NOT_JSON = b"{this is not json"


def add_expired_key(sessions: sessionmaker[Session], *, role: str, name: str = "过期的钥匙") -> str:
    """A key that stopped working yesterday (written straight to the table: the service refuses that)."""
    prefix = secrets.token_hex(4)
    secret = f"gs_{prefix}_{secrets.token_urlsafe(32)}"
    now = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:
        session.add(
            ApiKey(
                name=name,
                prefix=prefix,
                key_sha256=hash_key(secret),
                role=role,
                created_at=now - dt.timedelta(days=400),
                expires_at=now - dt.timedelta(days=1),
            )
        )
    return secret


@dataclass(frozen=True)
class Operation:
    """One method of one route, with the rule it declares."""

    method: str
    path: str
    rule: RoleRule | None
    route: APIRoute


def operations(app: FastAPI) -> list[Operation]:
    """Every method of every route of the app; routes that are not APIRoutes must be the framework's own."""
    found = []
    for context in iter_route_contexts(app.routes):
        path = context.path_format or context.path or ""
        if not isinstance(context.original_route, APIRoute):
            assert path in UNDECLARED, f"{path} is served outside the API routes: give it a role rule"
            continue
        for method in sorted(context.methods or ()):
            if method != "HEAD":
                found.append(Operation(method, path, rule_of(context.original_route), context.original_route))
    return found


@pytest.fixture
def app(test_settings: Settings, database_url: str, sessions: sessionmaker[Session]) -> FastAPI:
    return create_app(test_settings, database_url, sessions=sessions)


def test_every_route_declares_its_roles_and_the_docs_show_them(app: FastAPI) -> None:
    ops = operations(app)
    assert len(ops) > 40  # the whole API, not an empty walk
    missing = [f"{op.method} {op.path}" for op in ops if op.rule is None]
    assert not missing, f"routes without dependencies=[allow(...)] or [PUBLIC]: {missing}"
    # RoleRoute applies the rule before the body is read; a plain APIRoute would only after it.
    ungated = [f"{op.method} {op.path}" for op in ops if not isinstance(op.route, RoleRoute)]
    assert not ungated, f"routes on a router without route_class=RoleRoute: {ungated}"
    schema = app.openapi()
    for op in ops:
        assert op.rule is not None
        if not op.route.include_in_schema:
            continue
        documented = schema["paths"][op.path][op.method.lower()]
        assert documented["x-roles"] == list(op.rule.roles), op.path
        assert "**Roles**" in documented["description"], op.path
        if op.rule.public:
            assert "security" not in documented, op.path
        else:
            assert {"X-API-Key": list(op.rule.roles)} in documented["security"], op.path
            assert ("401" in documented["responses"]) == (op.rule.refusal is None), op.path
            assert "403" in documented["responses"], op.path
    assert schema["components"]["securitySchemes"]["X-API-Key"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schema["components"]["securitySchemes"]["X-API-Key"]["description"],
    }


@dataclass(frozen=True)
class City:
    client: TestClient
    keys: dict[str, str | None]
    values: dict[str, str]


@pytest.fixture
def city(
    case_city: dict[str, Any], app: FastAPI, sessions: sessionmaker[Session], test_settings: Settings
) -> Iterator[City]:
    """The case city with one case, a key per role, a revoked and an expired key."""
    keys: dict[str, str | None] = {
        role: create_key(sessions, name=f"门禁-{role}", role=role, actor=LOCAL_OPERATOR).secret
        for role in ROLES
    }
    revoked = create_key(sessions, name="门禁-吊销", role="gis_staff", actor=LOCAL_OPERATOR)
    revoke_key(sessions, prefix=revoked.prefix, actor=LOCAL_OPERATOR)
    keys["revoked"] = revoked.secret
    keys["expired"] = add_expired_key(sessions, role="gis_staff")
    keys["none"] = None
    case = cases.intake_case(
        sessions,
        test_settings,
        cases.CaseIntake(kind="event", class_code="0403", x=LAMP[0], y=LAMP[1], crs="cgcs2000"),
        actor=LOCAL_DISPATCHER,
    )
    code = str(case.case["request_code"])
    values = {
        "request_code": code,
        "action": "handle",  # a step both roles that take steps may take: only the case's status decides
        "plan_id": str(case_city["plan_id"]),
        "batch_id": "1",
        "report_id": "AAAAAAAAAAAAAAAAAAAAAA",
        "job_id": "AAAAAAAAAAAAAAAAAAAAAA",
        "fmt": "json",
        "kind": "components",
        "layer": "cases",
        "z": "15",
        "x": "27034",
        "y": "12801",
        "collectionId": "unit_grids",
        "featureId": "370102001001001",
        "service_code": "E0403",
        "service_request_id": code,
        "token_id": code,
        "rest": "nothing-here.json",
    }
    with TestClient(app) as client:
        yield City(client, keys, values)


def _url(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no example value for a parameter of {path}"
    return path


def _expected(rule: RoleRule, caller: str, path_values: dict[str, str]) -> str:
    """'open', 'unauthenticated' (401) or 'forbidden' (403)."""
    if not rule.guards(path_values):
        # A public route ignores keys; one public only for some values still refuses a dead key.
        dead_key_refused = rule.only_when is not None and caller in ("revoked", "expired")
        return "unauthenticated" if dead_key_refused else "open"
    if caller in ("revoked", "expired", "none"):
        return "unauthenticated"
    return "open" if caller in rule.roles else "forbidden"


def _ask(city: City, op: Operation, url: str, key: str | None, where: str) -> Any:
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    data: dict[str, str] | None = None
    if key is not None and where == "header":
        headers["X-API-Key"] = key
    elif key is not None and where == "query":
        params["api_key"] = key
    elif key is not None and where == "form":
        data = {"api_key": key}
    if op.method == "GET":
        return city.client.request(op.method, url, headers=headers, params=params)
    if op.rule is not None and op.rule.key_in_form:
        return city.client.request(op.method, url, headers=headers, params=params, data=data or {})
    headers["Content-Type"] = "application/json"
    return city.client.request(op.method, url, headers=headers, params=params, content=NOT_JSON)


def test_every_route_answers_every_caller_as_its_rule_says(city: City, app: FastAPI) -> None:
    seen = 0
    for op in operations(app):
        rule = op.rule
        assert rule is not None
        variants = [dict(city.values)]
        if rule.only_when is not None:  # the roles apply to some values of a path parameter only
            name, _ = rule.only_when
            variants.append({**city.values, name: "districts"})
        places = ["header"] + ["query"] * rule.key_in_query + ["form"] * rule.key_in_form
        for path_values in variants:
            url = _url(op.path, path_values)
            open311 = url.startswith("/open311/")
            for caller in CALLERS:
                for where in places if caller != "none" else ["header"]:
                    response = _ask(city, op, url, city.keys[caller], where)
                    expected = _expected(rule, caller, path_values)
                    what = f"{op.method} {url} as {caller} (key in the {where}): {response.status_code}"
                    seen += 1
                    if expected == "open":
                        assert response.status_code not in (401, 403), f"{what} {response.text[:300]}"
                        continue
                    status = 403 if open311 else (401 if expected == "unauthenticated" else 403)
                    assert response.status_code == status, f"{what}, expected {status}: {response.text[:300]}"
                    if open311:
                        body = response.json()
                        assert body and all(e["code"] == 403 for e in body), what
                    else:
                        assert response.headers["content-type"] == "application/problem+json", what
                        detail = response.json()["detail"]
                        if caller == "expired":
                            assert "expired on" in detail, what
                        elif expected == "forbidden":
                            assert all(role in detail for role in rule.roles), what
    assert seen > 300


def test_the_gate_comes_before_the_body_is_read(city: City) -> None:
    """A stranger's upload is refused before it is read: no 413, no 422, just 401."""
    big = b"x" * (1 << 20)
    response = city.client.post(
        "/v1/imports/components", files={"file": ("big.gpkg", big, "application/geopackage+sqlite3")}
    )
    assert response.status_code == 401
    field = {"X-API-Key": city.keys["field"] or ""}
    assert city.client.post("/v1/imports/components", content=NOT_JSON, headers=field).status_code == 403
