"""`gridsvc locate` and `gridsvc locate-file` as a user types them: the same answers as the service."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pyogrio
import pytest
from sqlalchemy.orm import sessionmaker

from gridsvc.db.engine import make_engine
from gridsvc.services import locate
from gridsvc.settings import Settings
from tests.cli.test_commands import gridsvc
from tests.conftest import scratch_database, served_gridsvc
from tests.factories import add_grid_city
from tests.services.test_locate import POINTS


@pytest.fixture(scope="module")
def grid_city_url(database_url: str) -> Iterator[str]:
    url = scratch_database(database_url, "gridsvc_locate_cli")
    engine = make_engine(url)
    with sessionmaker(bind=engine, expire_on_commit=False).begin() as session:
        add_grid_city(session)
    engine.dispose()
    yield url


def test_locate_prints_the_owner_and_json_matches_the_service(
    grid_city_url: str, test_settings: Settings
) -> None:
    shown = gridsvc(["locate", "117.002", "36.681", "--crs", "cgcs2000"], grid_city_url)
    assert shown.returncode == 0, shown.stderr
    assert "370102001001003" in shown.stdout and "甲社区城管工作站" in shown.stdout
    assert "smallest code" in shown.stderr  # the edge note
    engine = make_engine(grid_city_url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    settings = test_settings.model_copy(update={"database_url": grid_city_url})
    for name, (lon, lat, how, owner, _candidates) in POINTS.items():
        printed = gridsvc(["locate", str(lon), str(lat), "--crs", "cgcs2000", "--json"], grid_city_url)
        assert printed.returncode == 0, printed.stderr
        answer = json.loads(printed.stdout)
        service = locate.located_dict(locate.locate_point(sessions, settings, lon, lat, crs="cgcs2000"))
        assert answer == service, name
        assert (answer["how"], (answer["unit_grid"] or {}).get("code")) == (how, owner)
    engine.dispose()


def test_locate_at_a_date_before_the_plan_falls_to_the_district(grid_city_url: str) -> None:
    printed = gridsvc(
        ["locate", "117.001", "36.681", "--crs", "cgcs2000", "--at", "2024-01-01", "--json"], grid_city_url
    )
    assert printed.returncode == 0, printed.stderr
    answer = json.loads(printed.stdout)
    assert answer["how"] == "territory" and answer["plan"] is None and answer["district"]["code"] == "370102"
    bad = gridsvc(["locate", "117.001", "36.681", "--at", "yesterday"], grid_city_url)
    assert bad.returncode != 0 and "yesterday" in bad.stderr
    shown = gridsvc(["locate", "117.001", "36.681", "--crs", "cgcs2000", "--at", "2024-01-01"], grid_city_url)
    assert shown.returncode == 0, shown.stderr
    assert "none was in force on 2024-01-01" in shown.stdout
    assert "no grid plan was in force" in shown.stderr and "none nearby" not in shown.stderr


def test_locate_outside_and_bad_datum_say_why(grid_city_url: str) -> None:
    outside = gridsvc(["locate", "117.05", "36.70", "--crs", "cgcs2000"], grid_city_url)
    assert outside.returncode == 1 and "outside" in outside.stderr and "Traceback" not in outside.stderr
    bad = gridsvc(["locate", "117.0", "36.68", "--crs", "mars"], grid_city_url)
    assert bad.returncode == 1 and "unknown CRS" in bad.stderr
    nowhere = gridsvc(["locate", "200", "36.68"], grid_city_url)
    assert nowhere.returncode == 1 and "200 is not a longitude" in nowhere.stderr
    assert "outside" not in nowhere.stderr


def test_locate_file_csv_in_gcj02(grid_city_url: str, tmp_path: Path) -> None:
    from gis import crs as gcrs

    source = tmp_path / "reports.csv"
    with source.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["编号", "lng", "lat"])
        for name, (lon, lat, *_rest) in POINTS.items():
            gx, gy = gcrs.from_storage(lon, lat, "gcj02")
            writer.writerow([name, f"{float(gx):.9f}", f"{float(gy):.9f}"])
    target = tmp_path / "answers.csv"
    done = gridsvc(["locate-file", str(source), str(target), "--crs", "gcj02"], grid_city_url)
    assert done.returncode == 0, done.stderr
    assert f"{len(POINTS)} points" in done.stdout
    rows = {r["编号"]: r for r in csv.DictReader(target.open(encoding="utf-8-sig"))}
    for name, (_lon, _lat, how, owner, _c) in POINTS.items():
        if how == "edge":
            continue  # a GCJ-02 round trip moves a point by < 1 cm: off the exact edge
        assert (rows[name]["how"], rows[name]["unit_grid_code"] or None) == (how, owner), name


def test_hotline_intake_and_monthly_report_from_the_command_line(grid_city_url: str, tmp_path: Path) -> None:
    from gis import crs as gcrs

    x, y = gcrs.from_storage(117.001, 36.681, "gcj02")
    # Recent orders: the load refuses order times later than now or over a year old.
    taken = (dt.datetime.now() - dt.timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
    export = tmp_path / "12345.csv"
    export.write_bytes(
        (
            "工单编号,受理时间,诉求分类,事发地址,经度,纬度\r\n"
            f"GD9001,{taken},违章停车,甲社区东门,{float(x):.8f},{float(y):.8f}\r\n"
            f"GD9002,{taken},外星人,甲社区,{float(x):.8f},{float(y):.8f}\r\n"
        ).encode("gbk")
    )
    report = tmp_path / "not-routed.csv"
    first = gridsvc(["intake", "hotline", str(export), "--report", str(report), "--json"], grid_city_url)
    assert first.returncode == 0, first.stderr
    assert "read as GCJ-02" in first.stderr  # no --crs: the datum assumed is said, not silent
    assert json.loads(first.stdout)["created"] == 1
    assert "外星人" in report.read_text(encoding="utf-8-sig")
    again = gridsvc(["intake", "hotline", str(export), "--json"], grid_city_url)
    assert json.loads(again.stdout)["created"] == 0 and json.loads(again.stdout)["already_loaded"] == 1
    listed = gridsvc(["intake", "categories"], grid_city_url)
    assert "违章停车" in listed.stdout
    code = json.loads(first.stdout)["problems"] and None  # the report names rows, not cases
    assert code is None
    shown = gridsvc(["report", "monthly", "--month", "2026-10", "--level", "community"], grid_city_url)
    assert shown.returncode == 0, shown.stderr
    page = tmp_path / "2026-10.html"
    written = gridsvc(
        ["report", "monthly", "--month", "2026-10", "--format", "html", "--out", str(page)], grid_city_url
    )
    assert written.returncode == 0 and "结案率" in page.read_text(encoding="utf-8")
    bad = gridsvc(["report", "monthly", "--month", "2026-13"], grid_city_url)
    assert bad.returncode == 1 and "not a month" in bad.stderr


def test_served_locate_over_real_http_matches_the_cli(grid_city_url: str, test_settings: Settings) -> None:
    """`gridsvc serve` under uvicorn, asked over loopback: the same answers as `gridsvc locate --json`."""
    import httpx

    made = gridsvc(["keys", "create", "--role", "field", "--name", "外业终端"], grid_city_url)
    key = made.stdout.strip()
    with served_gridsvc(grid_city_url) as base:
        for name, (lon, lat, _how, _owner, _c) in POINTS.items():
            over_http = httpx.get(
                f"{base}/v1/locate",
                params={"lon": lon, "lat": lat, "crs": "cgcs2000"},
                headers={"X-API-Key": key},
            )
            assert over_http.status_code == 200, over_http.text
            printed = gridsvc(["locate", str(lon), str(lat), "--crs", "cgcs2000", "--json"], grid_city_url)
            assert over_http.json() == json.loads(printed.stdout), name
        outside = httpx.get(
            f"{base}/v1/locate", params={"lon": 117.05, "lat": 36.7}, headers={"X-API-Key": key}
        )
        assert outside.status_code == 404 and "outside" in outside.json()["detail"]


def test_the_served_service_escalates_overdue_cases_by_itself(
    grid_city_url: str, test_settings: Settings
) -> None:
    import datetime as dt
    import time

    from gridsvc.services import cases
    from gridsvc.services.access import Principal

    engine = make_engine(grid_city_url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    settings = test_settings.model_copy(update={"database_url": grid_city_url})
    dispatcher = Principal(name="调度员", role="dispatcher")
    made = cases.intake_case(
        sessions,
        settings,
        cases.CaseIntake(kind="event", class_code="0403", x=117.0015, y=36.6825, crs="cgcs2000"),
        actor=Principal(name="app", role="reporter"),
    )
    code = made.case["request_code"]
    long_ago = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
    for action in ("register", "dispatch"):
        cases.transition(
            sessions, settings, code, cases.TransitionRequest(action=action, at=long_ago), actor=dispatcher
        )
    try:
        with served_gridsvc(grid_city_url, ESCALATION_INTERVAL_SECONDS="0.5"):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                view = cases.get_case(sessions, code, personal=False)
                if view["handling_level"] != "community":
                    break
                time.sleep(0.3)
            # One level up, with a fresh handling limit from now: the next round finds it no longer overdue.
            assert view["handling_level"] == "street"
            time.sleep(1.5)
            view = cases.get_case(sessions, code, personal=False)
        escalations = [e for e in view["history"] if e["action"] == "escalate"]
        assert view["handling_level"] == "street" and len(escalations) == 1
        assert escalations[0]["actor"] == "gridsvc-escalation"
        assert escalations[0]["note"] == "handling deadline passed"
        assert dt.datetime.fromisoformat(view["deadline"]) > dt.datetime.now(dt.UTC)
    finally:
        engine.dispose()


def test_plan_check_and_activate_from_the_command_line(grid_city_url: str) -> None:
    engine = make_engine(grid_city_url)
    with sessionmaker(bind=engine, expire_on_commit=False).begin() as session:
        from sqlalchemy import text

        from tests.services.test_plans import WEST_EAST, add_draft

        station_id = session.execute(text("SELECT id FROM station")).scalar_one()
        draft = add_draft(session, station_id, halves=WEST_EAST)
        broken = add_draft(session, station_id, halves=WEST_EAST[:1])
    engine.dispose()
    checked = gridsvc(["plan", "check", str(broken)], grid_city_url)
    assert checked.returncode == 1 and "coverage" in checked.stdout
    assert gridsvc(["plan", "check", str(draft)], grid_city_url).returncode == 0
    done = gridsvc(["plan", "activate", str(draft), "--from", "2026-12-01"], grid_city_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["plan_id"] == draft
    now = json.loads(
        gridsvc(["locate", "117.001", "36.681", "--crs", "cgcs2000", "--json"], grid_city_url).stdout
    )
    assert now["unit_grid"]["code"] == "370102001001101" and now["plan"]["id"] == draft
    before = gridsvc(
        ["locate", "117.001", "36.681", "--crs", "cgcs2000", "--at", "2026-11-01", "--json"], grid_city_url
    )
    assert json.loads(before.stdout)["unit_grid"]["code"] == "370102001001003"
    again = gridsvc(["plan", "activate", str(draft), "--from", "2027-01-01"], grid_city_url)
    assert again.returncode == 1 and "only a draft" in again.stderr


def test_plan_unit_grids_redraw_and_compare_from_the_command_line(grid_city_url: str, tmp_path: Path) -> None:
    units = tmp_path / "单元网格.gpkg"
    cut = gridsvc(["plan", "unit-grids", "--community", "370102001001", "--out", str(units)], grid_city_url)
    assert cut.returncode == 0, cut.stderr
    frame = pyogrio.read_dataframe(units)
    assert len(frame) > 10 and set(frame["community_code"]) == {"370102001001"}

    drawn = gridsvc(
        ["plan", "redraw", "--community", "370102001001", "--name", "命令行方案", "--code-digits", "14"],
        grid_city_url,
    )
    assert drawn.returncode == 0, drawn.stderr
    report = json.loads(drawn.stdout)
    assert report["unit_grids"] == len(frame) and report["responsibility_grids"] >= 1
    plan_id = str(report["plan_id"])
    assert gridsvc(["plan", "check", plan_id], grid_city_url).returncode == 0

    changes, page = tmp_path / "changes.csv", tmp_path / "changes.html"
    compared = gridsvc(["plan", "compare", plan_id, "--csv", str(changes), "--map", str(page)], grid_city_url)
    assert compared.returncode == 0, compared.stderr
    assert "responsibility grids added" in compared.stdout and "households changing owner" in compared.stdout
    assert changes.read_bytes().startswith("\ufeffkind,code".encode())
    assert "plan-legend" in page.read_text(encoding="utf-8")
    as_json = json.loads(gridsvc(["plan", "compare", plan_id, "--json"], grid_city_url).stdout)
    assert as_json["unit_grids"]["added"] == report["unit_grids"]
    listed = gridsvc(["plan", "list"], grid_city_url)
    assert listed.returncode == 0 and "命令行方案" in listed.stdout and "draft" in listed.stdout
    shown = json.loads(gridsvc(["plan", "show", plan_id, "--json"], grid_city_url).stdout)
    assert (
        shown["code_digits"] == 14
        and shown["quality"]["per_community"][0]["community_code"] == "370102001001"
    )
    assert gridsvc(["plan", "show", plan_id], grid_city_url).returncode == 0

    # The old name still runs; bad input is refused with a clear message.
    assert gridsvc(["plan", "draw", "--community", "999999999999"], grid_city_url).returncode == 1
    bad = gridsvc(["plan", "redraw", "--weight", "households"], grid_city_url)
    assert bad.returncode == 2 and "LOAD=WEIGHT" in bad.stderr
    assert gridsvc(["plan", "compare", "999999"], grid_city_url).returncode == 1
