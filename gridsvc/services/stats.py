"""Evaluation (综合考评): per grid, community, street and district, the figures of DOMAIN.md §4.

The cohort of a month is the cases registered (立案) in it, in the city's local time. For them:
- registered (立案数), dispatched (派遣数), closed (结案数), deferred (parked, 挂账);
- due to close (应结案数) = registered; closure rate (结案率) = closed / (due − deferred);
- closed on time (按期结案数): closed, and reported back by the handling deadline set at dispatch
  (``on_time_deadline``: escalation and rework never move it, parked time does; services/cases.py);
  on-time rate (按期结案率) = closed on time / (due − deferred);
- rework count (返工数): rework steps of those cases; median handling time: report-back − dispatch, hours.
Rates are None when the denominator is 0.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from gridsvc.errors import FieldProblem, InvalidInputError
from gridsvc.repositories import stats as repo
from gridsvc.settings import Settings

LEVELS = repo.LEVELS
COLUMNS = (
    "level",
    "code",
    "name",
    "registered",
    "dispatched",
    "closed",
    "closed_on_time",
    "deferred",
    "due",
    "closure_rate",
    "on_time_rate",
    "rework_count",
    "median_handling_hours",
)
HEADINGS_ZH = {
    "level": "层级",
    "code": "编码",
    "name": "名称",
    "registered": "立案数",
    "dispatched": "派遣数",
    "closed": "结案数",
    "closed_on_time": "按期结案数",
    "deferred": "挂账数",
    "due": "应结案数",
    "closure_rate": "结案率",
    "on_time_rate": "按期结案率",
    "rework_count": "返工数",
    "median_handling_hours": "处置时长中位数(小时)",
}


def parse_month(month: str) -> tuple[int, int]:
    """'2026-10' -> (2026, 10), or InvalidInputError."""
    try:
        year, number = (int(part) for part in month.split("-"))
        dt.date(year, number, 1)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"not a month: {month!r}", problems=[FieldProblem("month", "YYYY-MM, e.g. 2026-10")]
        ) from exc
    return year, number


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator > 0 else None


def monthly(
    sessions: sessionmaker[Session], settings: Settings, month: str, level: str
) -> list[dict[str, Any]]:
    """The figures for every group of a level for a month."""
    if level not in LEVELS:
        raise InvalidInputError(
            f"unknown level {level!r}", problems=[FieldProblem("level", ", ".join(LEVELS))]
        )
    year, number = parse_month(month)
    zone = ZoneInfo(settings.timezone)
    start = dt.datetime(year, number, 1, tzinfo=zone)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    with sessions() as session:
        rows = repo.monthly_figures(session, level, start, end)
    out = []
    for row in rows:
        due = int(row["registered"])
        basis = due - int(row["deferred"])
        median = row["median_handling_hours"]
        out.append(
            {
                "level": level,
                "code": row["code"],
                "name": row["name"],
                "registered": int(row["registered"]),
                "dispatched": int(row["dispatched"]),
                "closed": int(row["closed"]),
                "closed_on_time": int(row["closed_on_time"]),
                "deferred": int(row["deferred"]),
                "due": due,
                "closure_rate": _rate(int(row["closed"]), basis),
                "on_time_rate": _rate(int(row["closed_on_time"]), basis),
                "rework_count": int(row["rework_count"]),
                "median_handling_hours": round(float(median), 2)
                if isinstance(median, float | Decimal)
                else None,
            }
        )
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV with a UTF-8 BOM so Excel shows the Chinese names."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_html(rows: list[dict[str, Any]], *, city: str, month: str, level: str) -> str:
    """A page a bureau head can read: one table, Chinese headings, rates as percentages."""

    def cell(column: str, value: Any) -> str:
        if value is None:
            return "—"
        if column.endswith("_rate"):
            return f"{value * 100:.1f}%"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(HEADINGS_ZH[c])}</th>" for c in COLUMNS[1:])
    body = "\n".join(
        "<tr>" + "".join(f"<td>{cell(c, row[c])}</td>" for c in COLUMNS[1:]) + "</tr>" for row in rows
    )
    title = html.escape(f"{city} {month} 城市管理案件考评（{level}）")
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:right}}td:nth-child(-n+2){{text-align:left}}
th{{background:#eef}}</style></head>
<body><h1>{title}</h1>
<p>立案于本月的案件。结案率 = 结案数 / (应结案数 − 挂账数)；
按期结案率 = 按期结案数 / (应结案数 − 挂账数)。</p>
<table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></body></html>
"""
