"""``gridsvc intake``, ``gridsvc cases`` and ``gridsvc report``: the case loop from the command line."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from gridsvc.cli.main import _sessions, _settings, app, console, err_console, friendly

intake_app = typer.Typer(help="Take cases in from other systems: the 12345 hotline's work-order exports.")
cases_app = typer.Typer(
    help="Cases: show one with its routing and history, take a step, escalate overdue ones."
)
app.add_typer(intake_app, name="intake")
app.add_typer(cases_app, name="cases")


@intake_app.command("hotline")
@friendly
def intake_hotline_command(
    file: Annotated[Path, typer.Argument(help="The 12345 work-order export (CSV, UTF-8 or GBK).")],
    crs: Annotated[
        str | None,
        typer.Option(
            "--crs",
            help="Datum of the coordinates: gcj02 (Amap-based systems) or bd09 (Baidu). Without it gcj02 is "
            "assumed, and the output says so.",
        ),
    ] = None,
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="Text encoding; detected when omitted.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the rows that could not be routed to this CSV.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Route every work order of a 12345 export to grid, station and department, in one transaction.

    Columns recognised: 工单编号 (order number), 受理时间/来电时间 (time), 诉求分类/问题分类 (category),
    事发地址/地址, 诉求内容, 来电号码, and coordinates as lng/lat, lon/lat or 经度/纬度. Categories map to
    case classes through the table `gridsvc intake categories` shows. Loading the same file again adds
    nothing: the order number identifies the case.

    Example: `gridsvc intake hotline 12345-2026-10.csv --crs bd09 --report not-routed.csv`
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from gridsvc.services.access import LOCAL_DISPATCHER
    from gridsvc.services.hotline import intake_hotline

    settings = _settings()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>8,} orders"),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task(f"routing {file.name}", total=None)
        result = intake_hotline(
            _sessions(settings),
            settings,
            file,
            crs=crs,
            encoding=encoding,
            actor=LOCAL_DISPATCHER,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if report is not None:
        import csv

        with report.open("w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["row", "field", "value", "reason"])
            writer.writeheader()
            writer.writerows(result.problems)
    for warning in result.warnings:
        err_console.print(f"[yellow]note:[/] {escape(warning)}", highlight=False)
    if as_json:
        console.print_json(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    table = Table(title=f"12345 work orders from {file.name} ({result.crs})")
    table.add_column("")
    table.add_column("orders", justify="right")
    table.add_row("in the file", f"{result.rows:,}")
    table.add_row("new cases", f"{len(result.created):,}")
    table.add_row("loaded before (skipped)", f"{result.already_loaded:,}")
    table.add_row("linked as likely duplicates", f"{result.duplicates_linked:,}")
    table.add_row("marked for a dispatcher to confirm", f"{result.needs_confirmation:,}")
    table.add_row("not routed", f"{len(result.problems):,}")
    console.print(table)
    for problem in result.problems[:20]:
        err_console.print(
            escape(
                f"  row {problem['row']}: {problem['field']} {problem['value'] or ''} — {problem['reason']}"
            ),
            highlight=False,
        )
    if len(result.problems) > 20:
        err_console.print(f"  ... and {len(result.problems) - 20} more (--report writes them all)")


@intake_app.command("categories")
@friendly
def categories_command() -> None:
    """Show how 12345 category texts map to case classes."""
    from gridsvc.services.hotline import list_categories

    table = Table(title="12345 categories → case classes")
    table.add_column("category text")
    table.add_column("kind")
    table.add_column("class")
    for text, (kind, class_code) in list_categories(_sessions(_settings())).items():
        table.add_row(escape(text), kind, class_code)
    console.print(table)


@intake_app.command("category-set")
@friendly
def category_set_command(
    text: Annotated[str, typer.Argument(help="The category text as the hotline writes it, e.g. 井盖丢失.")],
    kind: Annotated[str, typer.Option("--kind", help="component or event")],
    class_code: Annotated[str, typer.Option("--class", help="The class code, e.g. 0113 or 0403.")],
) -> None:
    """Map a category text to a case class (add or change)."""
    from gridsvc.services.access import LOCAL_DISPATCHER
    from gridsvc.services.hotline import set_category

    set_category(_sessions(_settings()), text, kind, class_code, actor=LOCAL_DISPATCHER)
    console.print(escape(f"{text.strip()} → {kind} {class_code}"))


@intake_app.command("category-remove")
@friendly
def category_remove_command(text: Annotated[str, typer.Argument(help="The category text to drop.")]) -> None:
    """Drop a category mapping."""
    from gridsvc.services.access import LOCAL_DISPATCHER
    from gridsvc.services.hotline import remove_category

    if not remove_category(_sessions(_settings()), text, actor=LOCAL_DISPATCHER):
        err_console.print(f"[bold red]error:[/] no category {escape(repr(text))}")
        raise typer.Exit(1)
    console.print(escape(f"removed {text.strip()}"))


# The view's times, shown in the city's time zone (settings.timezone).
TIME_FIELDS = ("reported_at", "dispatched_at", "deadline", "handle_deadline", "handled_at", "closed_at")


def _local(iso: str | None, zone: ZoneInfo) -> str:
    """An ISO time from the case view as the city's clock shows it: 2026-10-08 10:02:00+08:00."""
    if not iso:
        return "—"
    return dt.datetime.fromisoformat(iso).astimezone(zone).isoformat(sep=" ", timespec="seconds")


def _routing_rows(routing: dict[str, Any], zone: ZoneInfo) -> list[tuple[str, str, str]]:
    """(what, decided, why) for each routing decision the case records."""
    rows: list[tuple[str, str, str]] = []
    component = routing.get("component")
    if component:
        distance = f" ({component['distance_m']} m away)" if component.get("distance_m") is not None else ""
        rows.append(
            ("component", str(component.get("code") or "—"), f"{component.get('reason', '')}{distance}")
        )
    owner = routing.get("owner")
    if owner:
        located = f"located at the {owner.get('located_at', 'report')}: {owner.get('how')}"
        if owner.get("distance_m") is not None:
            located += f", {owner['distance_m']:.1f} m away"
        rows.append(("unit grid", str(owner.get("unit_grid_code") or "—"), located))
        rows.append(
            (
                "responsibility grid",
                str(owner.get("responsibility_grid_code") or "—"),
                f"plan {owner.get('plan_id')}",
            )
        )
        for note in owner.get("notes") or []:
            rows.append(("", "", str(note)))
    for key, label in (("department", "department"), ("handling_level", "handling level")):
        decided = routing.get(key)
        if decided:
            value = decided.get("code") if key == "department" else decided.get("level")
            rows.append((label, str(value or "—"), str(decided.get("reason", ""))))
    deadlines = routing.get("deadlines") or {}
    register, handle = deadlines.get("register") or {}, deadlines.get("handle") or {}
    if register.get("limit"):
        rows.append(("register within", str(register["limit"]), f"due {_local(register.get('due'), zone)}"))
    if handle.get("limit"):
        rows.append(
            ("handle within", str(handle["limit"]), f"counted from {handle.get('counts_from', 'dispatch')}")
        )
    duplicate = routing.get("duplicate")
    if duplicate:
        rows.append(("duplicate of", str(duplicate.get("of")), str(duplicate.get("reason", ""))))
    for reason in routing.get("confirm_reasons") or []:
        rows.append(("to confirm", "", str(reason)))
    return rows


def _print_case(view: dict[str, Any], zone: ZoneInfo) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key in (
        "request_code",
        "status",
        "kind",
        "class_code",
        "channel",
        "external_ref",
        "description",
        "address",
        "reported_at",
        "community_code",
        "street_code",
        "district_code",
        "station_id",
        "department_code",
        "handling_level",
        "dispatched_at",
        "deadline",
        "needs_confirmation",
        "duplicate_of",
    ):
        value = view.get(key)
        if key == "station_id" and view.get("station"):
            # The station the case went to, as field staff know it: its name, code and phone.
            station = view["station"]
            table.add_row(
                "station", escape(f"{station['name']} ({station['code']}) {station['phone'] or ''}".strip())
            )
            continue
        table.add_row(key, _local(value, zone) if key in TIME_FIELDS else escape(str(value)))
    console.print(table)
    routing = Table(title="routing: what was decided, and why")
    routing.add_column("", style="bold", no_wrap=True)
    routing.add_column("decided", no_wrap=True)
    routing.add_column("why")
    for row in _routing_rows(view.get("routing") or {}, zone):
        routing.add_row(*(escape(cell) for cell in row))
    console.print(routing)
    history = Table(title=f"history ({zone.key})")
    history.add_column("seq", no_wrap=True)
    # Never cut: the time is what a dispatcher reads the history for; the other columns fold, not cut.
    history.add_column("at", no_wrap=True, min_width=25)
    for column in ("action", "status", "actor", "note"):
        history.add_column(column, overflow="fold")
    for event in view.get("history", []):
        history.add_row(
            str(event["seq"]),
            _local(event["at"], zone),
            event["action"],
            f"{event['from_status']} → {event['to_status']}" if event["from_status"] else event["to_status"],
            escape(str(event["actor"] or "")),
            escape(str(event["note"] or "")),
        )
    console.print(history)


@cases_app.command("show")
@friendly
def case_show_command(
    request_code: Annotated[str, typer.Argument(help="e.g. JN202611230000001")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One case with its routing reasons and its history."""
    from gridsvc.services.cases import get_case

    settings = _settings()
    view = get_case(_sessions(settings), request_code, personal=True)
    if as_json:
        console.print_json(json.dumps(view, ensure_ascii=False, default=str))
    else:
        _print_case(view, ZoneInfo(settings.timezone))


@cases_app.command("step")
@friendly
def case_step_command(
    request_code: Annotated[str, typer.Argument(help="e.g. JN202611230000001")],
    action: Annotated[
        str,
        typer.Argument(
            help="register, reject, dispatch, handle, report_back, verify, rework, close, reassign, park, "
            "unpark, escalate"
        ),
    ],
    note: Annotated[
        str | None, typer.Option("--note", help="Why (needed to reject, rework, reassign, park).")
    ] = None,
    unit_grid: Annotated[
        str | None, typer.Option("--unit-grid", help="reassign: the owning unit grid")
    ] = None,
    department: Annotated[str | None, typer.Option("--department", help="reassign: the department")] = None,
) -> None:
    """Take one step of the loop as the dispatch centre."""
    from gridsvc.services.access import LOCAL_DISPATCHER
    from gridsvc.services.cases import TransitionRequest, transition

    settings = _settings()
    view = transition(
        _sessions(settings),
        settings,
        request_code,
        TransitionRequest(action=action, note=note, unit_grid_code=unit_grid, department_code=department),
        actor=LOCAL_DISPATCHER,
    )
    console.print(
        f"{request_code}: {view['status']} (deadline {_local(view['deadline'], ZoneInfo(settings.timezone))})"
    )


@cases_app.command("escalate")
@friendly
def escalate_command() -> None:
    """Move every case whose handling deadline has passed one level up (run it every few minutes)."""
    from gridsvc.services.access import LOCAL_DISPATCHER
    from gridsvc.services.cases import escalate_overdue

    settings = _settings()
    moved = escalate_overdue(_sessions(settings), settings, actor=LOCAL_DISPATCHER)
    zone = ZoneInfo(settings.timezone)
    for item in moved:
        due = _local(item["deadline"], zone)
        console.print(f"{item['request_code']}: {item['from_level']} → {item['to_level']} (due {due})")
    console.print(f"{len(moved)} case(s) escalated")


def _write_raw(content: str) -> None:
    """A machine format (CSV, HTML, JSON) on stdout in UTF-8, exactly as ``--out`` writes it: printed
    through rich it would be wrapped at the terminal's width (80 columns when redirected), splitting lines."""
    sys.stdout.flush()
    sys.stdout.buffer.write(content.encode("utf-8"))
    if not content.endswith("\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.buffer.flush()


report_app = typer.Typer(help="Reports: the monthly evaluation (月报) per grid, community, street, district.")
app.add_typer(report_app, name="report")


@report_app.command("monthly")
@friendly
def report_monthly_command(
    month: Annotated[str, typer.Option("--month", help="YYYY-MM, e.g. 2026-10")],
    level: Annotated[
        str, typer.Option("--level", help="grid, community, street, district or city")
    ] = "district",
    fmt: Annotated[str, typer.Option("--format", help="table (on screen), json, csv or html")] = "table",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of the screen.")
    ] = None,
) -> None:
    """Registered, dispatched, closed, on time, closure and on-time rates, rework, median handling time.

    The month's cohort is the cases registered in it (local time). Rates: closed / (due − deferred) and
    closed on time / (due − deferred), as in the bureau's evaluation rules.

    Example: `gridsvc report monthly --month 2026-10 --level street --format html --out 2026-10.html`
    """
    from gridsvc.services import stats

    settings = _settings()
    rows = stats.monthly(_sessions(settings), settings, month, level)
    if fmt == "table" and out is None:
        table = Table(title=f"{settings.city_name} {month} ({level})")
        for column in stats.COLUMNS[1:]:
            table.add_column(
                stats.HEADINGS_ZH[column], justify="left" if column in ("code", "name") else "right"
            )
        for row in rows:
            table.add_row(
                *(
                    "—" if row[c] is None else f"{row[c] * 100:.1f}%" if c.endswith("_rate") else str(row[c])
                    for c in stats.COLUMNS[1:]
                )
            )
        console.print(table)
        return
    if fmt == "csv":
        content = stats.to_csv(rows)
    elif fmt == "html":
        content = stats.to_html(rows, city=settings.city_name, month=month, level=level)
    elif fmt in ("json", "table"):
        content = json.dumps({"month": month, "level": level, "rows": rows}, ensure_ascii=False, indent=2)
    else:
        raise typer.BadParameter("table, json, csv or html", param_hint="--format")
    if out is None:
        _write_raw(content)
    else:
        out.write_text(content, encoding="utf-8")
        console.print(f"wrote {out}")
