"""12345 hotline loads (routing every row, reporting the rest, idempotent re-loads) and monthly figures."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gis import crs as gcrs
from gridsvc.errors import InvalidInputError
from gridsvc.services import cases, hotline, stats
from gridsvc.services.access import LOCAL_DISPATCHER
from gridsvc.settings import Settings
from tests.services.test_cases import DISPATCHER, FIELD, _intake, _step

BEIJING = ZoneInfo("Asia/Shanghai")
# When the exports below are loaded: order times are checked against it (none later, none a year older).
LOADED_AT = dt.datetime(2026, 11, 1, 9, 0, tzinfo=BEIJING)


def _gcj(lon: float, lat: float) -> tuple[str, str]:
    x, y = gcrs.from_storage(lon, lat, "gcj02")
    return f"{float(x):.8f}", f"{float(y):.8f}"


def write_export(path: Path, rows: list[list[str]], encoding: str = "gbk") -> Path:
    header = "工单编号,受理时间,诉求分类,事发地址,诉求内容,来电号码,经度,纬度"
    lines = [header] + [",".join(row) for row in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


@pytest.fixture
def export(tmp_path: Path) -> Path:
    parking = _gcj(117.0010, 36.6810)
    lamp = _gcj(117.0012, 36.6810)
    outside = _gcj(117.0500, 36.7000)
    return write_export(
        tmp_path / "12345-2026-10.csv",
        [
            [
                "GD001",
                "2026-10-08 09:30:00",
                "违章停车",
                "甲社区东门",
                "东门口车辆乱停",
                "13800000001",
                *parking,
            ],
            ["GD002", "2026/10/08 10:00", "路灯不亮", "甲社区1号路灯", "路灯晚上不亮", "13800000002", *lamp],
            ["GD003", "2026-10-08 10:05", "外星人", "甲社区", "不明飞行物", "", *parking],
            ["GD004", "2026-10-08 10:10", "暴露垃圾", "甲社区", "垃圾堆放", "", "", ""],
            ["GD005", "昨天下午", "暴露垃圾", "甲社区", "垃圾堆放", "", *parking],
            ["GD001", "2026-10-08 09:30:00", "违章停车", "甲社区东门", "重复行", "", *parking],
            ["GD006", "2026-10-08 11:00", "积水", "城外", "积水", "", *outside],
        ],
    )


def test_hotline_routes_good_rows_reports_the_rest_and_reloads_nothing(
    case_city: dict[str, Any], export: Path, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    report = hotline.intake_hotline(
        sessions, test_settings, export, crs="gcj02", actor=LOCAL_DISPATCHER, now=LOADED_AT
    )
    assert report.rows == 7 and len(report.created) == 2 and report.already_loaded == 0
    reasons = {p["row"]: p["reason"] for p in report.problems}
    assert set(reasons) == {4, 5, 6, 7, 8}  # CSV line numbers (the header is line 1)
    assert "mapping table" in reasons[4]
    assert "no coordinates" in reasons[5]
    assert "not a time" in reasons[6]
    assert "twice" in reasons[7]
    assert "outside" in reasons[8]
    # Intake's problem names the work order's own columns, not Open311's lat/long.
    assert {p["row"]: p["field"] for p in report.problems}[8] == "经度/纬度"
    parking = cases.get_case(sessions, report.created[0], personal=True)
    assert parking["channel"] == "hotline_12345" and parking["external_ref"] == "GD001"
    assert parking["class_code"] == "0403" and parking["department_code"] == "traffic"
    assert parking["routing"]["owner"]["unit_grid_code"] == "370102001001003"
    assert parking["reporter"] == {"phone": "13800000001"}
    assert dt.datetime.fromisoformat(parking["reported_at"]) == dt.datetime(
        2026, 10, 8, 9, 30, tzinfo=BEIJING
    )
    assert parking["description"] == "东门口车辆乱停"  # GBK text read as it was written
    lamp = cases.get_case(sessions, report.created[1], personal=False)
    assert lamp["routing"]["component"]["code"] == "3701020118000001"

    again = hotline.intake_hotline(
        sessions, test_settings, export, crs="gcj02", actor=LOCAL_DISPATCHER, now=LOADED_AT
    )
    assert again.created == [] and again.already_loaded == 2
    # Loaded again in another datum (or with a category remapped): the orders loaded before stay as they
    # were, counted as loaded before and named, not listed as orders that could not be routed.
    other = hotline.intake_hotline(
        sessions, test_settings, export, crs="bd09", actor=LOCAL_DISPATCHER, now=LOADED_AT
    )
    assert other.created == [] and other.already_loaded == 2
    assert {p["row"] for p in other.problems} <= {4, 5, 6, 7, 8}
    assert any(
        w.startswith("2 orders loaded before now say something else (GD001, GD002)") for w in other.warnings
    )
    with sessions() as session:
        loaded = session.execute(
            text("SELECT count(*) FROM case_record WHERE channel = 'hotline_12345'")
        ).scalar_one()
    assert loaded == 2


def test_hotline_category_table_is_editable(
    case_city: dict[str, Any], export: Path, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    hotline.set_category(sessions, "外星人", "event", "0601", actor=LOCAL_DISPATCHER)
    assert hotline.list_categories(sessions)["外星人"] == ("event", "0601")
    report = hotline.intake_hotline(
        sessions, test_settings, export, crs="gcj02", actor=LOCAL_DISPATCHER, now=LOADED_AT
    )
    assert len(report.created) == 3
    with pytest.raises(InvalidInputError, match="unknown event class"):
        hotline.set_category(sessions, "坏分类", "event", "9999", actor=LOCAL_DISPATCHER)
    assert hotline.remove_category(sessions, "外星人", actor=LOCAL_DISPATCHER)
    assert not hotline.remove_category(sessions, "外星人", actor=LOCAL_DISPATCHER)


def test_category_changes_are_audited_and_set_and_remove_read_the_text_alike(
    sessions: sessionmaker[Session],
) -> None:
    hotline.set_category(sessions, " 审计测试类 ", "event", "0102", actor=LOCAL_DISPATCHER)
    hotline.set_category(sessions, "审计测试类", "event", "0102", actor=LOCAL_DISPATCHER)  # no change
    hotline.set_category(sessions, "审计测试类", "event", "0101", actor=LOCAL_DISPATCHER)
    assert hotline.list_categories(sessions)["审计测试类"] == ("event", "0101")
    assert hotline.remove_category(sessions, "审计测试类 ", actor=LOCAL_DISPATCHER)
    assert "审计测试类" not in hotline.list_categories(sessions)
    assert not hotline.remove_category(sessions, "审计测试类", actor=LOCAL_DISPATCHER)
    with pytest.raises(InvalidInputError, match="empty"):
        hotline.set_category(sessions, "  ", "event", "0101", actor=LOCAL_DISPATCHER)
    with sessions() as session:
        entries = session.execute(
            text(
                "SELECT actor, action, entity_id, details FROM audit_log "
                "WHERE entity = 'hotline_category' ORDER BY id"
            )
        ).all()
    assert [tuple(e) for e in entries] == [
        ("cli", "create", "审计测试类", {"kind": "event", "class_code": "0102"}),
        (
            "cli",
            "update",
            "审计测试类",
            {"kind": "event", "class_code": "0101", "before": {"kind": "event", "class_code": "0102"}},
        ),
        ("cli", "delete", "审计测试类", {"before": {"kind": "event", "class_code": "0101"}}),
    ]


def test_hotline_without_a_datum_says_it_assumed_gcj02(
    case_city: dict[str, Any], export: Path, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    assumed = hotline.intake_hotline(sessions, test_settings, export, actor=LOCAL_DISPATCHER, now=LOADED_AT)
    assert assumed.crs == "gcj02" and len(assumed.created) == 2
    (warning,) = assumed.warnings
    assert "GCJ-02" in warning and "--crs bd09" in warning
    assert assumed.to_dict()["warnings"] == [warning]
    told = hotline.intake_hotline(
        sessions, test_settings, export, crs="gcj02", actor=LOCAL_DISPATCHER, now=LOADED_AT
    )
    assert told.crs == "gcj02" and told.warnings == []


def test_hotline_file_without_the_needed_columns_is_refused(
    case_city: dict[str, Any], tmp_path: Path, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("编号,经度,纬度\nA,117.0,36.68\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no time column"):
        hotline.intake_hotline(
            sessions, test_settings, path, crs="gcj02", actor=LOCAL_DISPATCHER, now=LOADED_AT
        )


def test_hotline_row_with_a_nul_character_is_reported_and_the_rest_loaded(
    case_city: dict[str, Any], tmp_path: Path, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    place = _gcj(117.0010, 36.6810)
    path = write_export(
        tmp_path / "nul.csv",
        [
            ["NUL1", "2026-10-08 09:30:00", "其他", "甲社区", "正常", "1", *place],
            ["NUL2", "2026-10-08 09:40:00", "违章停车", "甲社区", "bad\x00content", "1", *place],
        ],
        encoding="utf-8",
    )
    report = hotline.intake_hotline(
        sessions, test_settings, path, crs="gcj02", actor=LOCAL_DISPATCHER, now=LOADED_AT
    )
    assert len(report.created) == 1
    (problem,) = report.problems
    assert problem["row"] == 3 and problem["field"] == "诉求内容"
    assert problem["value"] == "bad\\u0000content"
    assert "NUL" in problem["reason"]


def test_hotline_row_with_swapped_or_broken_coordinates_says_what_is_wrong_with_them(
    case_city: dict[str, Any], tmp_path: Path, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    lon, lat = _gcj(117.0010, 36.6810)
    path = write_export(
        tmp_path / "coordinates.csv",
        [
            ["XY1", "2026-10-08 09:30:00", "违章停车", "甲社区", "正常", "1", lon, lat],
            ["XY2", "2026-10-08 09:31:00", "爆管", "甲社区", "坐标颠倒", "1", lat, lon],
            ["XY3", "2026-10-08 09:32:00", "爆管", "甲社区", "经度不是数", "1", "117度", lat],
            ["XY4", "2026-10-08 09:33:00", "爆管", "甲社区", "缺纬度", "1", lon, ""],
        ],
    )
    report = hotline.intake_hotline(
        sessions, test_settings, path, crs="gcj02", actor=LOCAL_DISPATCHER, now=LOADED_AT
    )
    assert len(report.created) == 1
    by_row = {p["row"]: p for p in report.problems}
    assert set(by_row) == {3, 4, 5}
    assert {p["field"] for p in report.problems} == {"经度/纬度"}
    assert by_row[3]["value"] == f"经度 {lat}, 纬度 {lon}"
    assert by_row[3]["reason"].startswith("longitude and latitude are swapped")
    assert by_row[4]["value"] == f"经度 117度, 纬度 {lat}"
    assert by_row[4]["reason"] == "经度 '117度' is not a number in decimal degrees"
    assert by_row[5]["reason"] == "纬度 is blank"


def test_hotline_orders_later_than_now_or_over_a_year_old_are_reported(
    case_city: dict[str, Any], tmp_path: Path, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    place = _gcj(117.0010, 36.6810)
    path = write_export(
        tmp_path / "times.csv",
        [
            ["T1", "2031-05-01 09:00:00", "其他", "甲社区", "未来", "1", *place],
            ["T2", "2026-11-01 09:05:00", "其他", "甲社区", "时钟略快", "1", *place],
            ["T3", "2026-11-01 09:11:00", "其他", "甲社区", "稍后", "1", *place],
            ["T4", "1999-05-01 09:00:00", "其他", "甲社区", "过去", "1", *place],
            ["T5", "2025-10-30 09:00:00", "其他", "甲社区", "一年前", "1", *place],
            ["T6", "2025-11-02 09:00:00", "其他", "甲社区", "不到一年", "1", *place],
        ],
    )
    report = hotline.intake_hotline(
        sessions, test_settings, path, crs="gcj02", actor=LOCAL_DISPATCHER, now=LOADED_AT
    )
    assert len(report.created) == 2  # T2 (within the clocks' skew) and T6
    by_row = {p["row"]: p for p in report.problems}
    assert set(by_row) == {2, 4, 5, 6}
    assert {p["field"] for p in report.problems} == {"受理时间"}
    assert by_row[2]["value"] == "2031-05-01 09:00:00"
    assert by_row[2]["reason"].startswith("later than now (2026-11-01 09:00)")
    assert by_row[5]["reason"].startswith("more than a year before now (2026-11-01)")
    with sessions() as session:
        refs = session.execute(
            text("SELECT external_ref FROM case_record WHERE channel = 'hotline_12345' ORDER BY 1")
        ).scalars()
        assert list(refs) == ["T2", "T6"]


def _run(
    sessions: sessionmaker[Session], settings: Settings, code: str, steps: list[tuple[str, dt.datetime]]
) -> None:
    for action, moment in steps:
        note = "说明" if action in ("rework", "park") else None
        actor = FIELD if action in ("handle", "report_back") else DISPATCHER
        _step(sessions, settings, code, action, actor=actor, at=moment, note=note)


def test_monthly_figures_follow_the_bureau_formulas(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime(2026, 10, day, hour, minute, tzinfo=BEIJING)

    # Illegal parking, 60 working minutes to handle from dispatch.
    def new(lon: float) -> str:
        return _intake(
            sessions,
            test_settings,
            kind="event",
            class_code="0403",
            x=lon,
            y=36.6812,
            reported_at=at(12, 8, 40),
        ).case["request_code"]

    on_time, late, reworked, parked, open_case = (new(117.0002 + i * 0.0006) for i in range(5))
    _run(
        sessions,
        test_settings,
        on_time,
        [
            ("register", at(12, 9)),
            ("dispatch", at(12, 9)),
            ("handle", at(12, 9, 10)),
            ("report_back", at(12, 9, 40)),
            ("verify", at(12, 10)),
            ("close", at(12, 10, 5)),
        ],
    )
    _run(
        sessions,
        test_settings,
        late,
        [
            ("register", at(12, 9)),
            ("dispatch", at(12, 9)),
            ("report_back", at(12, 13, 0)),
            ("verify", at(12, 14)),
            ("close", at(12, 14, 5)),
        ],
    )
    _run(
        sessions,
        test_settings,
        reworked,
        [
            ("register", at(12, 9)),
            ("dispatch", at(12, 9)),
            ("report_back", at(12, 9, 20)),
            ("rework", at(12, 9, 30)),
            ("report_back", at(12, 9, 50)),
            ("verify", at(12, 10)),
            ("close", at(12, 10, 10)),
        ],
    )
    _run(
        sessions,
        test_settings,
        parked,
        [("register", at(12, 9)), ("dispatch", at(12, 9)), ("park", at(12, 9, 5))],
    )
    _run(sessions, test_settings, open_case, [("register", at(12, 9))])

    rows = stats.monthly(sessions, test_settings, "2026-10", "community")
    assert len(rows) == 1
    row = rows[0]
    assert (row["code"], row["name"]) == ("370102001001", "甲社区")
    assert row["registered"] == row["due"] == 5
    assert row["dispatched"] == 4
    assert row["closed"] == 3
    assert row["closed_on_time"] == 2  # on_time and reworked (reported back within 60 min of the rework)
    assert row["deferred"] == 1
    assert row["closure_rate"] == pytest.approx(3 / 4)
    assert row["on_time_rate"] == pytest.approx(2 / 4)
    assert row["rework_count"] == 1
    # Handling times (report-back − first dispatch): 40 min, 4 h, 50 min -> median 50 min.
    assert row["median_handling_hours"] == pytest.approx(50 / 60, abs=0.01)
    assert stats.monthly(sessions, test_settings, "2026-09", "community") == []
    city_row = stats.monthly(sessions, test_settings, "2026-10", "city")[0]
    assert city_row["registered"] == 5 and city_row["name"] == "全市"
    grid_rows = stats.monthly(sessions, test_settings, "2026-10", "grid")
    assert sum(r["registered"] for r in grid_rows) == 5
    assert "按期结案率" in stats.to_html(rows, city="济南市", month="2026-10", level="community")
    assert stats.to_csv(rows).startswith("\ufefflevel,code,name")
    with pytest.raises(InvalidInputError):
        stats.monthly(sessions, test_settings, "2026-13", "community")
    with pytest.raises(InvalidInputError):
        stats.monthly(sessions, test_settings, "2026-10", "planet")
