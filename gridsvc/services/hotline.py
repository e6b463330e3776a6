"""12345 hotline work orders: read the export, map categories, route every row, report the rest.

A work-order export is a CSV (UTF-8 or GB18030, detected) with an order number, a time, a category
text, an address and coordinates (GCJ-02 from Amap-based systems, BD-09 from Baidu-based ones: say
which with ``crs``). Categories map to case classes through ``hotline_category``, a table dispatchers
edit (``gridsvc intake categories``). The file is one transaction: the rows that can be routed are
taken in together, the others are reported with their line and reason. The order number is the
case's ``external_ref`` on the ``hotline_12345`` channel, so loading a file again adds nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import shapely
from sqlalchemy.orm import Session, sessionmaker

from gis import io as gio
from gridsvc.errors import FieldProblem, GridsvcError, InvalidInputError
from gridsvc.repositories import access as access_repo
from gridsvc.repositories import cases as cases_repo
from gridsvc.services import cases
from gridsvc.services.access import Principal
from gridsvc.settings import Settings

CHANNEL = "hotline_12345"
# Column names seen in 12345 exports (compared without case and spaces), in order of preference.
COLUMNS: dict[str, tuple[str, ...]] = {
    "order": ("工单编号", "工单号", "order_no", "order_number", "orderno", "编号"),
    "time": ("受理时间", "来电时间", "登记时间", "创建时间", "reported_at", "time"),
    "category": ("诉求分类", "问题分类", "事项分类", "分类", "category"),
    "address": ("事发地址", "问题地址", "地址", "address"),
    "content": ("诉求内容", "问题描述", "内容", "description", "content"),
    "phone": ("来电号码", "联系电话", "phone"),
}

# The datum assumed when the caller does not say: most 12345 systems draw on Amap (GCJ-02). Assumed aloud,
# never silently (DOMAIN §5): the report says so, since a Baidu-based export read this way lands ~1 km off.
DEFAULT_CRS = "gcj02"
ASSUMED_CRS = (
    "coordinates read as GCJ-02 (gcj02), the datum of Amap-based 12345 systems, as no datum was given: "
    "an export from a Baidu-based system needs --crs bd09 (its cases would lie about 1 km off; an order "
    "already loaded is not loaded again, so correct such cases by hand: gridsvc cases step CODE reassign)"
)
# An order time later than now by more than the clocks of the hotline system and this one may differ is a
# wrong time (a mistyped year: 2031 for 2021); taken in, it would make a case numbered and due years ahead.
CLOCK_SKEW = dt.timedelta(minutes=10)
# An export is of recent orders. One over a year old is a mistyped year too (2016 for 2026, or a 1900/1970
# placeholder); taken in, it would be past every deadline at once (escalated straight up), counted in a
# month whose evaluation is long reported, and routed by today's plan rather than the one then in force.
MAX_ORDER_AGE = dt.timedelta(days=366)
# PostgreSQL text cannot hold U+0000; in an export it is a damaged row (binary pasted into a cell).
NUL_SHOWN = "\\u0000"
NUL_REASON = "contains a NUL character (\\u0000), which text cannot hold: the export is damaged in this row"


@dataclass
class HotlineReport:
    """What a hotline load did."""

    source: str
    crs: str = DEFAULT_CRS
    rows: int = 0
    created: list[str] = field(default_factory=list)
    already_loaded: int = 0
    duplicates_linked: int = 0
    needs_confirmation: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON for the CLI's --json and for logs."""
        return {
            "source": self.source,
            "crs": self.crs,
            "warnings": self.warnings,
            "rows": self.rows,
            "created": len(self.created),
            "already_loaded": self.already_loaded,
            "duplicates_linked": self.duplicates_linked,
            "needs_confirmation": self.needs_confirmation,
            "not_routed": len(self.problems),
            "problems": self.problems,
        }


def _column(frame: pd.DataFrame, role: str, required: bool) -> str | None:
    names = {str(c).strip().lower().replace(" ", ""): str(c) for c in frame.columns}
    for candidate in COLUMNS[role]:
        if candidate.lower() in names:
            return names[candidate.lower()]
    if required:
        raise InvalidInputError(
            f"the file has no {role} column",
            problems=[FieldProblem(role, f"name one column {' or '.join(COLUMNS[role])}")],
        )
    return None


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _time(value: Any, zone: ZoneInfo) -> dt.datetime | None:
    text = _text(value)
    if text is None:
        return None
    try:
        stamp = pd.Timestamp(text.replace("/", "-"))
    except (ValueError, TypeError):
        return None
    if pd.isna(stamp):
        return None
    moment: dt.datetime = stamp.to_pydatetime()
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _read(
    path: Path, crs: str, encoding: str | None
) -> tuple[gio.LayerInfo, pd.DataFrame, dict[int, tuple[str, str]]]:
    """The export in EPSG:4490, and its rows whose coordinates could not be converted ({line: (the
    coordinate as written, why)}), gathered from every chunk (a concatenated frame would lose them)."""
    try:
        info = gio.inspect_layer(path, crs=crs, encoding=encoding)
        chunks = list(gio.iter_chunks(info))
    except gio.LayerError as exc:
        raise InvalidInputError(str(exc), problems=[FieldProblem(exc.field, str(exc))]) from exc
    unconvertible = {
        line: why for chunk in chunks for line, why in chunk.attrs.get(gio.UNCONVERTIBLE, {}).items()
    }
    if not chunks:
        return info, pd.DataFrame(columns=[*info.fields, "source_row", "geometry"]), unconvertible
    return info, pd.concat(chunks, ignore_index=True), unconvertible


def _coordinate_problem(
    row: pd.Series, info: gio.LayerInfo, unconvertible: tuple[str, str] | None, settings: Settings
) -> tuple[str, str | None, str]:
    """(field, value as written, reason) for a row without a usable position: no coordinates at all, text
    that is not a number, longitude and latitude swapped, or a coordinate the datum cannot convert."""
    names = info.coordinate_fields[:2]
    if len(names) < 2:
        return "coordinates", None, "no coordinates: cannot route by address alone"
    field_name = "/".join(names)
    texts = [_text(row[name]) for name in names]
    written = ", ".join(f"{name} {text or '(blank)'}" for name, text in zip(names, texts, strict=True))
    if texts[0] is None and texts[1] is None:
        return field_name, None, "no coordinates: cannot route by address alone"
    x, y = (_number(text) for text in texts)
    if x is None or y is None:
        wrong = [
            f"{name} is blank" if text is None else f"{name} {text!r} is not a number in decimal degrees"
            for name, text, number in zip(names, texts, (x, y), strict=True)
            if number is None
        ]
        return field_name, written, "; ".join(wrong)
    west, south, east, north = settings.city_bbox
    if west <= y <= east and south <= x <= north:
        return (
            field_name,
            written,
            f"longitude and latitude are swapped: {names[0]} holds a latitude and {names[1]} a longitude "
            f"of {settings.city_name}; swap the two values in this row",
        )
    why = unconvertible[1] if unconvertible is not None else "not a position"
    return field_name, written, why


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and np.isfinite(value) else None


def intake_hotline(
    sessions: sessionmaker[Session],
    settings: Settings,
    path: Path,
    *,
    crs: str | None = None,
    encoding: str | None = None,
    actor: Principal,
    progress: Callable[[int, int], None] | None = None,
    now: dt.datetime | None = None,
) -> HotlineReport:
    """Route every work order of a 12345 export in one transaction; report the rows that could not be.

    ``crs`` is the datum of the coordinates; without it DEFAULT_CRS is assumed and the report's warnings
    say so. ``now`` (default: the current time) bounds the order times: none later than ``now`` +
    CLOCK_SKEW, none older than MAX_ORDER_AGE.
    """
    actor.require(*cases.INTAKE_ROLES)
    info, frame, unconvertible = _read(path, crs or DEFAULT_CRS, encoding)
    columns = {role: _column(frame, role, required=role in ("order", "time", "category")) for role in COLUMNS}
    text_columns = [name for name in columns.values() if name is not None]
    # Intake's problems name the work order's own columns, as the not-routed report's other rows do.
    x_name, y_name = (*info.coordinate_fields[:2], "lon", "lat")[:2]
    fields = cases.IntakeFields(
        class_code=str(columns["category"]), component_code="component", x=x_name, y=y_name
    )
    zone = ZoneInfo(settings.timezone)
    loaded_at = (now or dt.datetime.now(dt.UTC)).astimezone(zone)
    report = HotlineReport(
        source=str(path),
        crs=info.crs,
        rows=len(frame),
        warnings=[] if crs else [ASSUMED_CRS],
    )
    geoms = frame.geometry.to_numpy()
    with sessions.begin() as session:
        categories = cases_repo.hotline_categories(session)
        seen: set[str] = set()
        changed: list[str] = []  # orders loaded before that the export now tells otherwise
        for i in range(len(frame)):
            row = frame.iloc[i]
            line = int(row["source_row"])

            def problem(field_name: str, value: Any, reason: str, line: int = line) -> None:
                report.problems.append(
                    {"row": line, "field": field_name, "value": _text(value), "reason": reason}
                )

            order = _text(row[columns["order"]])
            category = _text(row[columns["category"]])
            reported_at = _time(row[columns["time"]], zone)
            geom = geoms[i]
            with_nul = next((c for c in text_columns if "\x00" in str(row[c])), None)
            if with_nul is not None:
                problem(with_nul, str(row[with_nul]).replace("\x00", NUL_SHOWN), NUL_REASON)
            elif order is None:
                problem(str(columns["order"]), None, "no order number")
            elif order in seen:
                problem(str(columns["order"]), order, "the order number appears twice in the file")
            elif reported_at is None:
                problem(str(columns["time"]), row[columns["time"]], "not a time (e.g. 2026-10-08 09:30:00)")
            elif reported_at > loaded_at + CLOCK_SKEW:
                problem(
                    str(columns["time"]),
                    row[columns["time"]],
                    f"later than now ({loaded_at:%Y-%m-%d %H:%M}): a mistyped year or date?",
                )
            elif reported_at < loaded_at - MAX_ORDER_AGE:
                problem(
                    str(columns["time"]),
                    row[columns["time"]],
                    f"more than a year before now ({loaded_at:%Y-%m-%d}): a mistyped year? Orders that old "
                    "are past every deadline and are not taken in",
                )
            elif category is None or category not in categories:
                problem(
                    str(columns["category"]),
                    category,
                    "category not in the mapping table: add it with `gridsvc intake category-set`",
                )
            elif (
                geom is None or shapely.is_empty(geom) or not np.isfinite(shapely.get_coordinates(geom)).all()
            ):
                where, written, reason = _coordinate_problem(row, info, unconvertible.get(line), settings)
                problem(where, written, reason)
            else:
                seen.add(order)
                kind, class_code = categories[category]
                intake = cases.CaseIntake(
                    kind=kind,
                    class_code=class_code,
                    x=float(shapely.get_x(geom)),
                    y=float(shapely.get_y(geom)),
                    crs="cgcs2000",
                    channel=CHANNEL,
                    description=_text(row[columns["content"]]) if columns["content"] else None,
                    address=_text(row[columns["address"]]) if columns["address"] else None,
                    reporter=(
                        {"phone": phone}
                        if columns["phone"] and (phone := _text(row[columns["phone"]]))
                        else {}
                    ),
                    attributes={"hotline_category": category},
                    external_ref=order,
                    reported_at=reported_at,
                    fields=fields,
                )
                try:
                    with session.begin_nested():
                        result = cases.intake_case(sessions, settings, intake, actor=actor, session=session)
                except cases.ReportChangedError:
                    # Loaded before, and the export now says something else of it (another datum given,
                    # a category remapped, the content edited): the loaded case stays as it is.
                    report.already_loaded += 1
                    changed.append(order)
                except GridsvcError as exc:
                    problem(exc.problems[0].field if exc.problems else "row", order, exc.detail)
                else:
                    if not result.created:
                        report.already_loaded += 1
                    else:
                        report.created.append(result.case["request_code"])
                        report.duplicates_linked += result.duplicate_of is not None
                        report.needs_confirmation += bool(result.case["needs_confirmation"])
            if progress is not None and (i % 200 == 199 or i == len(frame) - 1):
                progress(i + 1, len(frame))
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        report.warnings.append(
            f"{len(changed)} orders loaded before now say something else ({shown}): their cases were kept "
            "as first loaded; correct a case by hand (gridsvc cases step CODE reassign --unit-grid ...)"
        )
    return report


def list_categories(sessions: sessionmaker[Session]) -> dict[str, tuple[str, str]]:
    """The category table."""
    with sessions() as session:
        return dict(sorted(cases_repo.hotline_categories(session).items()))


def _category_text(category_text: str) -> str:
    """The text as stored and looked up: without the spaces around it (exports pad their cells)."""
    text = category_text.strip()
    if not text:
        raise InvalidInputError(
            "the category text is empty",
            problems=[FieldProblem("category", "give the text as 12345 writes it")],
        )
    return text


def set_category(
    sessions: sessionmaker[Session], category_text: str, kind: str, class_code: str, *, actor: Principal
) -> None:
    """Map a category text to a class (checked against the class tables); the change is audited."""
    actor.require("dispatcher", "gis_staff")
    text = _category_text(category_text)
    with sessions.begin() as session:
        cases.class_name(session, kind, class_code)
        before = cases_repo.hotline_categories(session).get(text)
        if before == (kind, class_code):
            return  # nothing changes, nothing to audit
        cases_repo.set_hotline_category(session, text, kind, class_code)
        details: dict[str, Any] = {"kind": kind, "class_code": class_code}
        if before is not None:
            details["before"] = {"kind": before[0], "class_code": before[1]}
        access_repo.record_audit(
            session,
            actor=actor.name,
            api_key_id=actor.api_key_id,
            action="create" if before is None else "update",
            entity="hotline_category",
            entity_id=text,
            details=details,
        )


def remove_category(sessions: sessionmaker[Session], category_text: str, *, actor: Principal) -> bool:
    """Drop a category mapping (the text stripped as set_category stores it); audited. False when none."""
    actor.require("dispatcher", "gis_staff")
    text = _category_text(category_text)
    with sessions.begin() as session:
        before = cases_repo.hotline_categories(session).get(text)
        if before is None or not cases_repo.delete_hotline_category(session, text):
            return False
        access_repo.record_audit(
            session,
            actor=actor.name,
            api_key_id=actor.api_key_id,
            action="delete",
            entity="hotline_category",
            entity_id=text,
            details={"before": {"kind": before[0], "class_code": before[1]}},
        )
        return True
