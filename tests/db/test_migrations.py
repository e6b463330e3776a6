"""Migrations: up, down, up again, and no drift between the models and the migrations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from geoalchemy2 import alembic_helpers
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from gridsvc.db import migrate
from gridsvc.db.embedded import EmbeddedCluster
from gridsvc.db.models import Base


@pytest.fixture
def scratch_url(cluster: EmbeddedCluster, database_url: str) -> Iterator[str]:
    """A separate, empty database on the test cluster (the main test database stays at head)."""
    admin = create_engine(make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS gridsvc_migration_check"))
        conn.execute(text("CREATE DATABASE gridsvc_migration_check"))
    url = make_url(database_url).set(database="gridsvc_migration_check").render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS gridsvc_migration_check WITH (FORCE)"))
    admin.dispose()


def _include(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    if type_ == "table" and reflected and compare_to is None:
        return False  # PostGIS's own tables
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)


def _drift(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={"include_object": _include, "compare_type": True, "target_metadata": Base.metadata},
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"spatial_ref_sys"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_without_drift(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    assert _drift(scratch_url) == []
    expected = {t.name for t in Base.metadata.sorted_tables} | {"gridsvc_alembic_version"}
    assert _tables(scratch_url) == expected

    migrate.downgrade(scratch_url, "base")
    assert _tables(scratch_url) <= {"gridsvc_alembic_version"}

    migrate.upgrade(scratch_url)
    assert _drift(scratch_url) == []
    engine = create_engine(scratch_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM component_class WHERE code = '0118'")).scalar() == 1
        assert conn.execute(text("SELECT extname FROM pg_extension WHERE extname = 'postgis'")).scalar()
    engine.dispose()


def test_revision_one_creates_postgis(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0001_postgis")
    engine = create_engine(scratch_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT postgis_lib_version()")).scalar()
    engine.dispose()


def test_database_is_at_head(database_url: str) -> None:
    engine = create_engine(database_url)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()
