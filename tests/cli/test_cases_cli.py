"""`gridsvc intake`, `cases` and `report` as a user types them, on a terminal 80 columns wide."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.engine import make_engine
from gridsvc.services import cases, stats
from gridsvc.settings import Settings
from tests.cli.test_commands import gridsvc
from tests.conftest import scratch_database
from tests.factories import LAMP, add_case_city
from tests.services.test_cases import DISPATCHER, REPORTER

BEIJING = ZoneInfo("Asia/Shanghai")
REPORTED_AT = dt.datetime(2026, 10, 8, 9, 30, tzinfo=BEIJING)
REGISTERED_AT = dt.datetime(2026, 10, 8, 10, 2, tzinfo=BEIJING)


@dataclass(frozen=True)
class CaseCity:
    """The served database and the one case in it, registered on 2026-10-08 at 10:02 Beijing time."""

    url: str
    request_code: str


@pytest.fixture(scope="module")
def case_city_db(database_url: str, test_settings: Settings) -> Iterator[CaseCity]:
    """A database of its own (the commands commit) holding the hand-made case city and one lamp case."""
    url = scratch_database(database_url, "gridsvc_cases_cli")
    engine = make_engine(url)
    sessions: sessionmaker[Session] = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions.begin() as session:
        add_case_city(session)
    settings = test_settings.model_copy(update={"database_url": url})
    intake = cases.CaseIntake(
        kind="component",
        class_code="0118",
        x=LAMP[0] + 0.0002,
        y=LAMP[1],
        crs="cgcs2000",
        # Text a reporter wrote, which rich would read as markup: shown as written, never an error.
        description="路灯不亮[/图片]",
        reported_at=REPORTED_AT,
    )
    made = cases.intake_case(sessions, settings, intake, actor=REPORTER)
    code = str(made.case["request_code"])
    cases.transition(
        sessions,
        settings,
        code,
        cases.TransitionRequest(action="register", at=REGISTERED_AT),
        actor=DISPATCHER,
    )
    engine.dispose()
    yield CaseCity(url, code)


@pytest.fixture(scope="module")
def case_city_url(case_city_db: CaseCity) -> str:
    return case_city_db.url


@pytest.mark.parametrize("fmt", ["csv", "html", "json"])
def test_report_to_stdout_is_the_file_not_wrapped_at_the_terminal_width(
    case_city_url: str, tmp_path: Path, fmt: str
) -> None:
    args = ["report", "monthly", "--month", "2026-10", "--level", "street", "--format", fmt]
    shown = gridsvc(args, case_city_url, columns=80)
    assert shown.returncode == 0, shown.stderr
    written = tmp_path / f"report.{fmt}"
    assert gridsvc([*args, "--out", str(written)], case_city_url, columns=80).returncode == 0
    assert shown.stdout.rstrip("\n") == written.read_text(encoding="utf-8").rstrip("\n")
    if fmt == "csv":
        header, *rows = list(csv.reader(io.StringIO(shown.stdout.lstrip("\ufeff"))))
        assert header == list(stats.COLUMNS) and rows
        assert all(len(row) == len(header) for row in rows)


def test_cases_show_gives_the_routing_and_local_times_in_80_columns(case_city_db: CaseCity) -> None:
    shown = gridsvc(["cases", "show", case_city_db.request_code], case_city_db.url, columns=80)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    # The routing: which lamp, which grids, which department, and why.
    assert "3701020118000001" in out and "nearest 路灯 within" in out
    assert "370102001001003" in out and "370102001001R01" in out
    assert "power" in out and "maintainer of component" in out
    # Times on the city's clock, whole: registered 10:02 Beijing time, due 30 working minutes later.
    assert "deadline" in out and "2026-10-08 10:32:00+08:00" in out
    assert "+00:00" not in out
    assert "2026-10-08 09:30:00+08:00" in out  # reported
    assert "2026-10-08 10:02:00+08:00" in out  # the register step in the history
    assert "…" not in out
    assert "路灯不亮[/图片]" in out
