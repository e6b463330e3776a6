"""Seed the reference tables: departments, component and event classes, time limits, working calendar.

These are data, not code: a city edits them (DOMAIN.md marks them as practice). The component classes
follow CJ/T 214 (2-digit major + 2-digit minor) plus Jinan's extension classes for garbage transfer
stations and sorting points, which have no national code.

Revision ID: 0003_seed_reference_data
Revises: 0002_schema
Create Date: 2026-11-23
"""

from collections.abc import Sequence
from datetime import date, time

import sqlalchemy as sa
from alembic import op

revision: str = "0003_seed_reference_data"
down_revision: str | None = "0002_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEPARTMENTS = [
    ("lighting", "照明", "Street lighting"),
    ("sanitation", "环卫", "Sanitation"),
    ("landscaping", "园林", "Landscaping and greening"),
    ("municipal", "市政", "Municipal engineering"),
    ("enforcement", "执法", "Urban-management enforcement"),
    ("heating", "热力", "District heating"),
    ("water", "供排水", "Water supply and drainage"),
    ("power", "电力", "Electric power"),
    ("telecom", "通信", "Telecommunications"),
    ("traffic", "交通", "Traffic management"),
]

# (code, name_zh, name_en, default department, geometry kind, city extension, snap m, duplicate m)
COMPONENT_CLASSES = [
    ("0101", "上水井盖", "Water supply manhole cover", "water", "point", False, 20, 30),
    ("0102", "污水井盖", "Sewage manhole cover", "water", "point", False, 20, 30),
    ("0103", "雨水井盖", "Storm-water manhole cover", "water", "point", False, 20, 30),
    ("0104", "雨水箅子", "Storm-water grate", "municipal", "point", False, 20, 30),
    ("0105", "电力井盖", "Power manhole cover", "power", "point", False, 20, 30),
    ("0106", "路灯井盖", "Street-lamp manhole cover", "lighting", "point", False, 20, 30),
    ("0107", "通信井盖", "Telecom manhole cover", "telecom", "point", False, 20, 30),
    ("0108", "电视井盖", "Cable-TV manhole cover", "telecom", "point", False, 20, 30),
    ("0109", "网络井盖", "Network manhole cover", "telecom", "point", False, 20, 30),
    ("0110", "热力井盖", "Heating manhole cover", "heating", "point", False, 20, 30),
    ("0111", "燃气井盖", "Gas manhole cover", "municipal", "point", False, 20, 30),
    ("0112", "公安井盖", "Police manhole cover", "municipal", "point", False, 20, 30),
    ("0113", "无主井盖", "Ownerless manhole cover", "municipal", "point", False, 20, 30),
    ("0114", "其他井盖", "Other manhole cover", "municipal", "point", False, 20, 30),
    ("0118", "路灯", "Street lamp", "lighting", "point", False, 50, 50),
    ("0121", "报刊亭", "News kiosk", "enforcement", "point", False, 50, 50),
    ("0137", "售货亭", "Sales kiosk", "enforcement", "point", False, 50, 50),
    ("0301", "公共厕所", "Public toilet", "sanitation", "point", False, 100, 100),
    ("0302", "化粪池", "Septic tank", "sanitation", "point", False, 50, 50),
    ("0303", "公厕指示牌", "Public toilet sign", "sanitation", "point", False, 50, 50),
    ("0304", "垃圾间(楼)", "Garbage room", "sanitation", "point", False, 80, 80),
    ("0305", "垃圾箱", "Garbage bin", "sanitation", "point", False, 30, 30),
    # City extensions (no national code): 90-99 minor codes are kept for the city's own classes.
    ("0390", "垃圾中转站", "Garbage transfer station", "sanitation", "point", True, 150, 150),
    ("0391", "垃圾分类投放点", "Waste sorting point", "sanitation", "point", True, 50, 50),
    ("0290", "道路护栏", "Road fence", "municipal", "line", True, 30, 50),
    ("0490", "绿化带", "Green belt", "landscaping", "polygon", True, 30, 100),
]

# (code, major name, name_zh, name_en, default department, duplicate radius m)
EVENT_CLASSES = [
    ("0101", "市容环境", "暴露垃圾", "Exposed garbage", "sanitation", 100),
    ("0102", "市容环境", "道路不洁", "Dirty road", "sanitation", 150),
    ("0103", "市容环境", "积水", "Standing water", "municipal", 150),
    ("0201", "宣传广告", "非法小广告", "Illegal flyers", "enforcement", 100),
    ("0301", "施工管理", "施工扬尘", "Construction dust", "enforcement", 200),
    ("0302", "施工管理", "施工废弃物", "Construction waste", "enforcement", 200),
    ("0401", "街面秩序", "无照经营游商", "Unlicensed street vending", "enforcement", 100),
    ("0402", "街面秩序", "店外经营", "Outside-shop business", "enforcement", 50),
    ("0403", "街面秩序", "违章停车", "Illegal parking", "traffic", 50),
    ("0501", "突发事件", "爆管", "Burst pipe", "water", 200),
    ("0601", "其他", "其他事件", "Other event", "enforcement", 100),
]

# (kind, class or None for the default, stage, value, unit, handling level)
TIME_LIMITS = [
    ("component", None, "register", 30, "working_minutes", None),
    ("component", None, "dispatch", 30, "working_minutes", None),
    ("component", None, "handle", 3, "working_days", "district"),
    ("component", None, "verify", 30, "working_minutes", None),
    ("component", "0118", "handle", 2, "working_days", "district"),
    ("component", "0305", "handle", 4, "working_hours", "community"),
    ("component", "0110", "handle", 2, "working_hours", "district"),
    ("component", "0113", "handle", 2, "working_hours", "district"),
    ("event", None, "register", 30, "working_minutes", None),
    ("event", None, "dispatch", 30, "working_minutes", None),
    ("event", None, "handle", 1, "working_days", "street"),
    ("event", None, "verify", 30, "working_minutes", None),
    ("event", "0101", "handle", 4, "working_hours", "community"),
    ("event", "0403", "handle", 60, "working_minutes", "community"),
    ("event", "0401", "handle", 2, "working_hours", "street"),
    ("event", "0501", "handle", 2, "calendar_hours", "city"),
]

WORKING_PERIODS = [(weekday, time(8, 30), time(12, 0)) for weekday in range(1, 6)] + [
    (weekday, time(13, 0), time(17, 30)) for weekday in range(1, 6)
]


def _days(first: date, last: date) -> list[date]:
    return [date.fromordinal(n) for n in range(first.toordinal(), last.toordinal() + 1)]


# Public holidays and make-up working days (调休) from the State Council's notices; a city edits this table.
HOLIDAYS_2025 = (
    [(date(2025, 1, 1), "元旦")]
    + [(d, "春节") for d in _days(date(2025, 1, 28), date(2025, 2, 4))]
    + [(d, "清明节") for d in _days(date(2025, 4, 4), date(2025, 4, 6))]
    + [(d, "劳动节") for d in _days(date(2025, 5, 1), date(2025, 5, 5))]
    + [(d, "端午节") for d in _days(date(2025, 5, 31), date(2025, 6, 2))]
    + [(d, "国庆节、中秋节") for d in _days(date(2025, 10, 1), date(2025, 10, 8))]
)
MAKEUP_2025 = [date(2025, 1, 26), date(2025, 2, 8), date(2025, 4, 27), date(2025, 9, 28), date(2025, 10, 11)]
HOLIDAYS_2026 = (
    [(d, "元旦") for d in _days(date(2026, 1, 1), date(2026, 1, 3))]
    + [(d, "春节") for d in _days(date(2026, 2, 15), date(2026, 2, 23))]
    + [(d, "清明节") for d in _days(date(2026, 4, 4), date(2026, 4, 6))]
    + [(d, "劳动节") for d in _days(date(2026, 5, 1), date(2026, 5, 5))]
    + [(d, "端午节") for d in _days(date(2026, 6, 19), date(2026, 6, 21))]
    + [(d, "中秋节") for d in _days(date(2026, 9, 25), date(2026, 9, 27))]
    + [(d, "国庆节") for d in _days(date(2026, 10, 1), date(2026, 10, 7))]
)
MAKEUP_2026 = [
    date(2026, 1, 4),
    date(2026, 2, 14),
    date(2026, 2, 28),
    date(2026, 5, 9),
    date(2026, 9, 20),
    date(2026, 10, 10),
]


def upgrade() -> None:
    department = sa.table("department", sa.column("code"), sa.column("name_zh"), sa.column("name_en"))
    op.bulk_insert(department, [{"code": c, "name_zh": zh, "name_en": en} for c, zh, en in DEPARTMENTS])

    component_class = sa.table(
        "component_class",
        sa.column("code"),
        sa.column("major_code"),
        sa.column("minor_code"),
        sa.column("name_zh"),
        sa.column("name_en"),
        sa.column("default_department_code"),
        sa.column("geometry_kind"),
        sa.column("is_city_extension"),
        sa.column("snap_distance_m"),
        sa.column("duplicate_radius_m"),
    )
    op.bulk_insert(
        component_class,
        [
            {
                "code": code,
                "major_code": code[:2],
                "minor_code": code[2:],
                "name_zh": zh,
                "name_en": en,
                "default_department_code": dept,
                "geometry_kind": kind,
                "is_city_extension": ext,
                "snap_distance_m": snap,
                "duplicate_radius_m": dup,
            }
            for code, zh, en, dept, kind, ext, snap, dup in COMPONENT_CLASSES
        ],
    )

    event_class = sa.table(
        "event_class",
        sa.column("code"),
        sa.column("major_code"),
        sa.column("major_name_zh"),
        sa.column("name_zh"),
        sa.column("name_en"),
        sa.column("default_department_code"),
        sa.column("duplicate_radius_m"),
    )
    op.bulk_insert(
        event_class,
        [
            {
                "code": code,
                "major_code": code[:2],
                "major_name_zh": major,
                "name_zh": zh,
                "name_en": en,
                "default_department_code": dept,
                "duplicate_radius_m": dup,
            }
            for code, major, zh, en, dept, dup in EVENT_CLASSES
        ],
    )

    time_limit_rule = sa.table(
        "time_limit_rule",
        sa.column("case_kind"),
        sa.column("class_code"),
        sa.column("stage"),
        sa.column("limit_value"),
        sa.column("limit_unit"),
        sa.column("handling_level"),
    )
    op.bulk_insert(
        time_limit_rule,
        [
            {
                "case_kind": kind,
                "class_code": cls,
                "stage": stage,
                "limit_value": value,
                "limit_unit": unit,
                "handling_level": level,
            }
            for kind, cls, stage, value, unit, level in TIME_LIMITS
        ],
    )

    working_period = sa.table(
        "working_period", sa.column("weekday"), sa.column("start_time"), sa.column("end_time")
    )
    op.bulk_insert(
        working_period, [{"weekday": w, "start_time": s, "end_time": e} for w, s, e in WORKING_PERIODS]
    )

    calendar_day = sa.table("calendar_day", sa.column("day"), sa.column("is_working"), sa.column("name"))
    rows = [{"day": d, "is_working": False, "name": n} for d, n in HOLIDAYS_2025 + HOLIDAYS_2026]
    rows += [{"day": d, "is_working": True, "name": "调休上班"} for d in MAKEUP_2025 + MAKEUP_2026]
    op.bulk_insert(calendar_day, rows)


def downgrade() -> None:
    for table in (
        "calendar_day",
        "working_period",
        "time_limit_rule",
        "event_class",
        "component_class",
        "department",
    ):
        op.execute(sa.text(f"DELETE FROM {table}"))
