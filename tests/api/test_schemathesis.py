"""Schemathesis against the service's own OpenAPI: every operation, with a key of a role allowed for it.

Each operation gets a few generated requests, valid and invalid ones (schemathesis' positive and negative
modes), from a fixed seed so CI sees the same requests every run. No answer may be a 5xx, and every
answer must have a status code the schema documents and a body that fits the documented schema. The
requests go through the ASGI app to a real PostGIS holding the small demo city; every write is rolled back
when the test ends, so other tests see the demo as it was.

To look further than CI does: ``SCHEMATHESIS_EXAMPLES=100 SCHEMATHESIS_RANDOM=1 pytest
tests/api/test_schemathesis.py`` (more examples per operation, a new seed each run).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api.app import create_app
from gridsvc.services.access import LOCAL_OPERATOR, create_key
from gridsvc.settings import Settings

ROLES = ("gis_staff", "dispatcher", "field", "reporter")
# Content types are not checked: problem+json, Open311's XML, GeoJSON and HTML pages are documented in
# words, and a body is still validated against the schema of the type it came in.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# Eight examples per operation keep the test near a minute on two cores; derandomize makes the examples
# a function of the schema alone, so a failure in CI is the same failure on a laptop.
EXAMPLES_PER_OPERATION = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "8"))
SAME_EXAMPLES_EVERY_RUN = not os.environ.get("SCHEMATHESIS_RANDOM")

# The schema does not depend on the database, so it is read once, at collection, from an app that is never
# started; each test then calls its own app over the rolled-back demo database.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(_env_file=None), "postgresql://unused").openapi()  # type: ignore[call-arg]
)


@pytest.fixture
def api_app(demo_sessions: sessionmaker[Session], demo_url: str, test_settings: Settings) -> FastAPI:
    """The app over the demo city, sharing the test's rolled-back session factory, with a key per role."""
    app = create_app(test_settings, demo_url, sessions=demo_sessions)
    app.state.role_keys = {
        role: create_key(demo_sessions, name=f"schemathesis-{role}", role=role, actor=LOCAL_OPERATOR).secret
        for role in ROLES
    }
    return app


def role_for(operation: Any) -> str:
    """The first role the operation declares (x-roles); a public one still gets a valid key."""
    declared = operation.definition.raw.get("x-roles") or ["dispatcher"]
    return str(declared[0])


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=SAME_EXAMPLES_EVERY_RUN,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_every_operation_answers_as_documented(case: Any, api_app: FastAPI) -> None:
    key = api_app.state.role_keys[role_for(case.operation)]
    if case.operation.path.startswith("/open311") and isinstance(case.body, dict):
        case.body["api_key"] = key  # GeoReport v2 takes the key in the form
    case.call_and_validate(app=api_app, headers={"X-API-Key": key}, checks=CHECKS)


def test_every_route_is_an_operation_of_the_schema() -> None:
    app = create_app(Settings(_env_file=None), "postgresql://unused")  # type: ignore[call-arg]
    documented = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert len(documented) == sum(len(methods) for methods in app.openapi()["paths"].values()) > 40


# --- what schemathesis found, kept as plain tests -----------------------------------------------------------


def test_a_batch_located_on_a_date_before_any_plan_answers_without_grids(
    api_app: FastAPI,
) -> None:
    # The plan locator of a date with no plan holds no grids; indexing its station columns failed (500).
    points = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"id": "A1"},
                "geometry": {"type": "Point", "coordinates": [117.02, 36.66]},
            }
        ],
    }
    with TestClient(api_app) as client:
        response: httpx.Response = client.post(
            "/v1/locate/batch",
            params={"at": "2000-01-01"},
            json=points,
            headers={
                "X-API-Key": api_app.state.role_keys["dispatcher"],
                "Content-Type": "application/geo+json",
            },
        )
    assert response.status_code == 200, response.text
    feature = response.json()["features"][0]
    assert (
        feature["properties"]["unit_grid_code"] is None and feature["properties"]["district_code"] == "370102"
    )


@pytest.mark.parametrize("now", ["1132-04-13T10:03:56-17:46", "0001-01-01T00:00:00+14:00"])
def test_an_escalation_instant_postgresql_cannot_hold_is_422(api_app: FastAPI, now: str) -> None:
    with TestClient(api_app) as client:
        response = client.post(
            "/v1/escalations",
            params={"now": now},
            headers={"X-API-Key": api_app.state.role_keys["dispatcher"]},
        )
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "query.now"
