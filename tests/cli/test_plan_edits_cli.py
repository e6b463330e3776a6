"""`gridsvc plan split|merge|move|edits` as a user types them: JSON answers, versions, one-line refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.engine import make_engine
from gridsvc.settings import Settings
from tests.cli.test_commands import gridsvc
from tests.conftest import scratch_database
from tests.factories import add_case_city
from tests.services.test_plan_edits import (
    add_drawable,
    draw_draft,
    layout,
    line_across,
    movable,
    northwest_grid,
)


@pytest.fixture(scope="module")
def drawn(database_url: str, test_settings: Settings) -> Iterator[tuple[str, sessionmaker[Session], int]]:
    """A database of its own holding the case city and a drawn draft (committed: the CLI runs elsewhere)."""
    url = scratch_database(database_url, "gridsvc_plan_edits_cli")
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions.begin() as session:
        add_case_city(session)
        add_drawable(session)
    plan_id = draw_draft(sessions, test_settings.model_copy(update={"database_url": url}))
    yield url, sessions, plan_id
    engine.dispose()


def test_split_then_a_stale_merge_is_refused_then_move_and_history(
    drawn: tuple[str, sessionmaker[Session], int], tmp_path: Path
) -> None:
    url, sessions, plan = drawn
    start = gridsvc(["plan", "edits", str(plan)], url)
    assert start.returncode == 0, start.stderr
    assert json.loads(start.stdout)["version"] == 1

    grid = northwest_grid(sessions, plan)
    wkt, _lat = line_across(sessions, plan, grid)
    line_file = tmp_path / "cut.wkt"
    line_file.write_text(wkt, encoding="utf-8")
    args = [
        "plan",
        "split",
        str(plan),
        grid,
        "--line",
        f"@{line_file}",
        "--crs",
        "cgcs2000",
        "--version",
        "1",
    ]
    split = gridsvc([*args, "--editor", "张三"], url)
    assert split.returncode == 0, split.stderr
    answer = json.loads(split.stdout)
    assert answer["version"] == 2 and answer["grid"] == grid and answer["quality"]["n_groups"] == 7

    view = layout(sessions, plan)
    a = view.grids()[0]
    stale = gridsvc(["plan", "merge", str(plan), a, min(view.neighbours(a)), "--version", "1"], url)
    assert stale.returncode == 1 and "Traceback" not in stale.stderr
    assert "made against version 1" in stale.stderr and "张三 split" in stale.stderr

    unit, _source, target = movable(view)
    moved = gridsvc(["plan", "move", str(plan), "--unit", unit, "--to", target, "--version", "2"], url)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["moved_unit_grids"] == [unit]

    history = json.loads(gridsvc(["plan", "edits", str(plan)], url).stdout)
    assert [(e["version"], e["kind"]) for e in history["edits"]] == [(2, "split"), (3, "move")]
    assert history["edits"][0]["actor"] == "张三" and history["edits"][1]["actor"].startswith("cli")
    assert gridsvc(["plan", "check", str(plan)], url).returncode == 0

    bad_line = gridsvc(
        ["plan", "split", str(plan), grid, "--line", "POINT(117 36.68)", "--version", "3"], url
    )
    assert bad_line.returncode == 1 and "LineString" in bad_line.stderr


def test_edit_help_teaches_with_examples() -> None:
    for command in ("split", "merge", "move", "edits"):
        shown = gridsvc(["plan", command, "--help"])
        assert shown.returncode == 0 and "Example: gridsvc plan " + command in shown.stdout, command
