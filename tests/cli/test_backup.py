"""gridsvc db backup / restore: a round trip gives back every table as it was; a bad file changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from gridsvc.db.engine import make_engine
from tests.cli.test_commands import gridsvc
from tests.conftest import scratch_database
from tests.factories import add_case_city


def snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row of every table (and the migration version)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                text(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                    "AND table_type = 'BASE TABLE' ORDER BY 1"
                )
            ).scalars()
            out = {}
            for table in tables:
                out[table] = tuple(
                    conn.execute(
                        text(
                            f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
                            f'FROM "{table}" AS t'
                        )
                    ).one()
                )
            return out
    finally:
        engine.dispose()


@pytest.fixture
def city_url(database_url: str) -> str:
    url = scratch_database(database_url, "gridsvc_backup")
    engine = make_engine(url)
    with sessionmaker(bind=engine, expire_on_commit=False).begin() as session:
        add_case_city(session)
    engine.dispose()
    return url


def test_backup_then_restore_gives_back_every_table(city_url: str, tmp_path: Path) -> None:
    before = snapshot(city_url)
    assert before["component"][0] == 2 and before["gridsvc_alembic_version"][0] == 1
    dump = tmp_path / "城市备份.dump"
    made = gridsvc(["db", "backup", str(dump)], city_url)
    assert made.returncode == 0, made.stderr
    assert dump.stat().st_size > 0 and "tables" in made.stdout
    assert not list(tmp_path.glob(".*partial"))

    engine = make_engine(city_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM component"))
        conn.execute(text("UPDATE community SET name = '改过的名字'"))
    engine.dispose()
    assert snapshot(city_url) != before

    restored = gridsvc(["db", "restore", str(dump), "--yes"], city_url)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(city_url) == before


def test_a_truncated_or_foreign_file_is_refused_and_nothing_changes(city_url: str, tmp_path: Path) -> None:
    dump = tmp_path / "full.dump"
    assert gridsvc(["db", "backup", str(dump)], city_url).returncode == 0
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    foreign = tmp_path / "notes.dump"
    foreign.write_text("这不是备份", encoding="utf-8")
    before = snapshot(city_url)
    for bad in (truncated, foreign, tmp_path / "missing.dump"):
        refused = gridsvc(["db", "restore", str(bad), "--yes"], city_url)
        assert refused.returncode == 1, refused.stdout
        assert snapshot(city_url) == before
    assert (
        gridsvc(["db", "restore", str(foreign), "--yes"], city_url).stderr.count("not a gridsvc backup") == 1
    )
    assert gridsvc(["db", "backup", str(tmp_path / "no" / "such" / "dir.dump")], city_url).returncode == 1
