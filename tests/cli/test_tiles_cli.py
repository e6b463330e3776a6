"""gridsvc tiles seed / status / clear, as an operator runs them after an activation."""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from gridsvc.db.engine import make_engine
from tests.cli.test_commands import gridsvc
from tests.conftest import scratch_database
from tests.factories import add_case_city


def test_seed_status_and_clear(database_url: str) -> None:
    url = scratch_database(database_url, "gridsvc_tiles_cli")
    engine = make_engine(url)
    try:
        with sessionmaker(bind=engine).begin() as session:
            add_case_city(session)

        seeded = gridsvc(["tiles", "seed", "--max-zoom", "15"], url)
        assert seeded.returncode == 0, seeded.stderr
        rows = {
            m[0]: m[1:] for m in re.findall(r"│ (\w+) +│ +(\d+)–15 │ +([\d,]+) │ +([\d,]+) │", seeded.stdout)
        }
        assert set(rows) == {"responsibility_grids", "unit_grids", "components", "stations", "communities"}
        assert rows["unit_grids"][0] == "13" and rows["components"][0] == "15"
        assert all(tiles_with_data == rendered != "0" for _, tiles_with_data, rendered in rows.values())
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM tile_store")).scalar_one()
        assert stored == sum(int(rendered.replace(",", "")) for *_, rendered in rows.values())

        # Seeding again renders nothing: every stored tile is current.
        again = gridsvc(["tiles", "seed", "--layer", "unit_grids", "--max-zoom", "15"], url)
        assert again.returncode == 0 and re.search(r"│ unit_grids +│ +13–15 │ +\d+ │ +0 │", again.stdout)

        status = gridsvc(["tiles", "status"], url)
        assert status.returncode == 0 and re.search(r"│ unit_grids +│ +13 │ +(\d+) │ +\1 │", status.stdout)

        refused = gridsvc(["tiles", "seed", "--layer", "cases"], url)
        assert refused.returncode == 1 and "'cases' is not kept in the tile store" in refused.stderr

        cleared = gridsvc(["tiles", "clear", "--yes"], url)
        assert cleared.returncode == 0 and f"{stored:,} stored tiles deleted" in cleared.stdout
        assert "the tile store is empty" in gridsvc(["tiles", "status"], url).stdout
    finally:
        engine.dispose()
