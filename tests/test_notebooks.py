"""The notebooks in notebooks/: stored without outputs, and each one runs on the demo city and shows what it
promises (tables, figures, maps, and figures that agree with the database)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ("case_stats", "import_qa", "redraw_review")
CELL_TIMEOUT_S = 120
COPY_NAME = "gridsvc_notebooks"

# What a cell tagged so must show: the tags say which outputs a reader is promised.
PROMISED = {
    "table": ("text/html", "<table"),
    "figure": ("image/png", ""),
    "map": ("text/html", "leaflet"),
}


def stored_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_issue_s_notebooks_are_there() -> None:
    assert {path.stem for path in stored_notebooks()} >= set(EXPECTED)


@pytest.mark.parametrize("path", stored_notebooks(), ids=lambda path: path.stem)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{path.name} cell {index} keeps outputs: clear them before committing"
        assert cell.execution_count is None, f"{path.name} cell {index} keeps its execution count"
        assert "execution" not in cell.metadata, f"{path.name} cell {index} keeps execution timings"
    assert "widgets" not in notebook.metadata


@pytest.fixture(scope="module")
def notebook_url(demo_url: str, demo_engine_shared: Engine) -> Iterator[str]:
    """A copy of the demo city the notebooks may write into (a sample import, a draft plan), so the shared
    demo database stays as the other tests expect it. A template copy takes a fraction of a second."""
    demo = make_url(demo_url)
    # CREATE DATABASE ... TEMPLATE needs the template to have no other sessions: close the shared pool's.
    demo_engine_shared.dispose()
    admin = create_engine(demo.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {COPY_NAME} WITH (FORCE)"))
            try:
                conn.execute(text(f"CREATE DATABASE {COPY_NAME} TEMPLATE {demo.database}"))
            except OperationalError as exc:
                if "being accessed by other users" not in str(exc):
                    raise
                # Idle connections left in other tests' pools; those pools reconnect (pre-ping) when used.
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :name AND state = 'idle' AND pid <> pg_backend_pid()"
                    ),
                    {"name": demo.database},
                )
                conn.execute(text(f"CREATE DATABASE {COPY_NAME} TEMPLATE {demo.database}"))
        yield demo.set(database=COPY_NAME).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {COPY_NAME} WITH (FORCE)"))
    finally:
        admin.dispose()


@pytest.fixture
def run_notebook(notebook_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Execute a notebook in a fresh kernel against the copy; the executed copy goes to tmp_path only."""
    for key in [k for k in os.environ if k.startswith("GRIDSVC_")]:
        monkeypatch.delenv(key)
    # A backend set in the environment (Agg) would keep the figures out of the notebook: use the inline one.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    # The kernel inherits this process's environment: the notebook finds the database as the service does.
    monkeypatch.setenv("GRIDSVC_DATABASE_URL", notebook_url)

    def run(name: str) -> nbformat.NotebookNode:
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            # The kernel's working folder: a neutral one, so no .env of the checkout is read.
            resources={"metadata": {"path": str(tmp_path)}},
        )
        try:
            client.execute()
        finally:
            nbformat.write(notebook, tmp_path / f"{name}.executed.ipynb")
        return notebook

    yield run


def check_promised_outputs(notebook: nbformat.NotebookNode) -> None:
    """Every tagged cell shows its table, figure or map; no cell writes to stderr (warnings included)."""
    tagged = 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        streams = [o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
        assert not streams, f"cell {index} wrote to stderr: {streams[0].text}"
        shown = [o.data for o in cell.outputs if o.output_type in ("display_data", "execute_result")]
        for tag in cell.metadata.get("tags", []):
            if tag not in PROMISED:
                continue
            tagged += 1
            mime, marker = PROMISED[tag]
            assert any(mime in data and marker in data[mime].lower() for data in shown), (
                f"cell {index} is tagged {tag} but shows no {mime} with {marker!r}"
            )
    assert tagged >= 3


def summary_of(notebook: nbformat.NotebookNode) -> dict[str, Any]:
    """The JSON line the cell tagged `summary` prints."""
    (cell,) = [c for c in notebook.cells if "summary" in c.metadata.get("tags", [])]
    printed = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
    result: dict[str, Any] = json.loads(printed.strip().splitlines()[-1])
    return result


def scalar(url: str, sql: str, **params: Any) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()
    finally:
        engine.dispose()


def test_import_qa_imports_a_sample_survey_and_finds_what_it_hides(
    run_notebook: Any, notebook_url: str
) -> None:
    notebook = run_notebook("import_qa")
    check_promised_outputs(notebook)
    summary = summary_of(notebook)
    # The sample re-surveys 30 lamps (5 moved), adds 11 (one a single-point MultiPoint, repaired; one 0.5 m
    # from a lamp; one west of the only loaded county) and has 5 rows the import must reject.
    assert summary["layer"] == "components" and summary["file"] == "路灯复测_样例.gpkg"
    assert summary["counts"] == {
        "rows_read": 46,
        "accepted": 41,
        "rejected": 5,
        "repaired": 1,
        "new": 11,
        "changed": 5,
        "unchanged": 25,
        "retired": 0,
        "assigned_to_grid": 15,
    }
    assert summary["counts_add_up"] is True
    assert summary["problem_rows"] == 6
    assert (summary["near_duplicates"], summary["outside_unit_grids"], summary["county_mismatches"]) == (
        1,
        1,
        1,
    )
    stored = scalar(
        notebook_url,
        "SELECT counts FROM survey_batch WHERE id = :id AND layer = 'components'",
        id=summary["batch_id"],
    )
    assert stored == summary["counts"]


def test_redraw_review_draws_a_draft_and_compares_it(run_notebook: Any, notebook_url: str) -> None:
    notebook = run_notebook("redraw_review")
    check_promised_outputs(notebook)
    summary = summary_of(notebook)
    plan = scalar(
        notebook_url, "SELECT status || ' ' || name FROM grid_plan WHERE id = :id", id=summary["plan_id"]
    )
    assert plan == "draft 笔记本评审草案"
    assert summary["against_plan_id"] == scalar(
        notebook_url, "SELECT id FROM grid_plan WHERE status = 'active'"
    )
    assert summary["communities_changed"] == 3
    assert summary["responsibility_grids"]["added"] > 0 and summary["households_changing_owner"] > 0
    # The three least balanced communities of the demo plan are far better balanced in the draft.
    assert summary["ratio_worst_before"] > 3 > 2 > summary["ratio_worst_after"]


def test_case_stats_agree_with_the_case_records(run_notebook: Any, notebook_url: str) -> None:
    notebook = run_notebook("case_stats")
    check_promised_outputs(notebook)
    summary = summary_of(notebook)
    assert (summary["first_month"], summary["last_month"], summary["months"]) == ("2025-01", "2025-12", 12)
    assert summary["registered"] == scalar(
        notebook_url, "SELECT count(DISTINCT case_id) FROM case_event WHERE action = 'register'"
    )
    assert summary["districts"] == scalar(
        notebook_url, "SELECT count(DISTINCT district_code) FROM case_record"
    )
    overdue = scalar(
        notebook_url,
        "SELECT count(*) FROM case_record"
        " WHERE status NOT IN ('closed', 'rejected', 'parked') AND deadline < now()",
    )
    assert summary["overdue_open_cases"] == overdue > 0
