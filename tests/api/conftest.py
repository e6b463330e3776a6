"""An in-process client whose writes roll back with the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.api.app import create_app
from gridsvc.services.access import LOCAL_OPERATOR, create_key
from gridsvc.settings import Settings


@pytest.fixture
def client(
    test_settings: Settings, database_url: str, sessions: sessionmaker[Session]
) -> Iterator[TestClient]:
    """A TestClient over the app, sharing the test's rolled-back session factory."""
    app = create_app(test_settings, database_url, sessions=sessions)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def keys(sessions: sessionmaker[Session]) -> dict[str, str]:
    """One API key per role."""
    return {
        role: create_key(sessions, name=f"测试-{role}", role=role, actor=LOCAL_OPERATOR).secret
        for role in ("gis_staff", "dispatcher", "field", "reporter")
    }
