"""``gridsvc plan``: cut unit grids, redraw responsibility grids, compare, check and activate a plan."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gridsvc.cli.main import _sessions, _settings, app, console, err_console, friendly

plan_app = typer.Typer(
    help="Grid plans: cut unit grids, redraw a balanced draft, compare it with today's, activate it."
)
app.add_typer(plan_app, name="plan")


@plan_app.command("check")
@friendly
def plan_check_command(plan_id: Annotated[int, typer.Argument(help="The plan's id.")]) -> None:
    """What stops a plan from being activated: nesting, contiguity, overlaps, coverage, unassigned grids."""
    from gridsvc.services.plans import check_plan

    breaks = check_plan(_sessions(_settings()), plan_id)
    if not breaks:
        console.print(f"plan {plan_id}: no rule broken, it can be activated")
        return
    table = Table(title=f"plan {plan_id}: {len(breaks)} rule break(s)")
    for column in ("rule", "code", "problem"):
        table.add_column(column)
    for item in breaks:
        table.add_row(item["rule"], item["code"], item["problem"])
    console.print(table)
    raise typer.Exit(1)


@plan_app.command("activate")
@friendly
def plan_activate_command(
    plan_id: Annotated[int, typer.Argument(help="The draft plan's id.")],
    effective_from: Annotated[
        dt.datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First day the plan is in force.")
    ],
) -> None:
    """Activate a draft plan: the active one is retired from that day (and stays queryable with
    `gridsvc locate --at`), components and open cases get their new grids; one transaction.

    Example: `gridsvc plan activate 7 --from 2026-12-01`
    """
    from gridsvc.services.access import LOCAL_OPERATOR
    from gridsvc.services.plans import activate_plan

    settings = _settings()
    done = activate_plan(
        _sessions(settings), plan_id, effective_from.date(), settings=settings, actor=LOCAL_OPERATOR
    )
    console.print_json(json.dumps(done.to_dict()))


def _weights(pairs: list[str] | None) -> dict[str, float]:
    """``households=1 components=0.2`` → a weights mapping (households 1 when none are given)."""
    if not pairs:
        return {"households": 1.0}
    weights: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise typer.BadParameter(f"{pair!r}: write LOAD=WEIGHT, e.g. households=1", param_hint="--weight")
    return weights


Communities = Annotated[
    list[str] | None, typer.Option("--community", help="Only these communities (repeat); default all.")
]
MaxArea = Annotated[float, typer.Option("--max-area", help="Largest unit grid in built-up areas, m².")]
RuralMaxArea = Annotated[float, typer.Option("--rural-max-area", help="Largest unit grid in villages, m².")]
MinArea = Annotated[
    float, typer.Option("--min-area", help="Smaller blocks are slivers, merged into a neighbour, m².")
]


def _progress_bar() -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>6,}/{task.total} communities"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )


@plan_app.command("list")
@friendly
def plan_list_command() -> None:
    """Every plan, newest first: status, dates, grids and the quality summary.

    Example: `gridsvc plan list`
    """
    from gridsvc.services.access import LOCAL_OPERATOR
    from gridsvc.services.planning import list_plans

    table = Table(title="grid plans")
    for column in (
        "id",
        "name",
        "status",
        "from",
        "to",
        "resp. grids",
        "unit grids",
        "worst max/min",
        "over 1.3",
    ):
        table.add_column(column, justify="right" if column not in ("name", "status") else "left")
    for plan in list_plans(_sessions(_settings()), actor=LOCAL_OPERATOR):
        quality = plan["quality"] or {}
        worst = quality.get("max_min_ratio_worst")
        table.add_row(
            str(plan["id"]),
            plan["name"],
            plan["status"],
            plan["effective_from"] or "",
            plan["effective_to"] or "",
            f"{plan['responsibility_grids']:,}",
            f"{plan['unit_grids']:,}",
            f"{worst:.2f}" if isinstance(worst, int | float) else "-",
            str(quality.get("communities_over_1_3", "-")),
        )
    console.print(table)


@plan_app.command("show")
@friendly
def plan_show_command(
    plan_id: Annotated[int, typer.Argument(help="The plan's id.")],
    worst: Annotated[
        int, typer.Option("--worst", help="How many of the least balanced communities to list.")
    ] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole plan and quality report as JSON.")
    ] = False,
) -> None:
    """A plan's parameters and quality report: city-wide figures and the least balanced communities.

    Example: `gridsvc plan show 7 --worst 20`
    """
    from gridsvc.services.access import LOCAL_OPERATOR
    from gridsvc.services.planning import plan_view

    plan = plan_view(_sessions(_settings()), plan_id, actor=LOCAL_OPERATOR)
    if as_json:
        console.print_json(json.dumps(plan, ensure_ascii=False, default=str))
        return
    quality = dict(plan["quality"] or {})
    communities = quality.pop("per_community", [])
    console.print(
        f"[bold]plan {plan['id']}[/bold] {plan['name']} — {plan['status']}, version {plan['version']}"
    )
    console.print_json(json.dumps(quality, ensure_ascii=False, default=str))
    ranked = sorted(
        (c for c in communities if c.get("n_groups", 0) > 1),
        key=lambda c: -(c.get("max_min_ratio") or float("inf")),
    )[:worst]
    if ranked:
        table = Table(title=f"least balanced communities (of {len(communities):,})")
        for column in ("community", "grids", "max/min", "cv", "outside bounds", "old-net lines followed"):
            table.add_column(column, justify="right")
        for c in ranked:
            ratio, cv, share = c.get("max_min_ratio"), c.get("cv"), c.get("net_boundary_followed_share")
            table.add_row(
                c["community_code"],
                str(c.get("n_groups")),
                f"{ratio:.2f}" if ratio is not None else "∞",
                f"{cv:.2f}" if cv is not None else "-",
                str(c.get("outside_bounds")),
                f"{share:.0%}" if share is not None else "-",
            )
        console.print(table)


@plan_app.command("compare")
@friendly
def plan_compare_command(
    plan_id: Annotated[int, typer.Argument(help="The draft plan's id.")],
    against: Annotated[
        int | None, typer.Option("--against", help="Plan to compare with; default the active one.")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write every change to this CSV (UTF-8 with BOM).")
    ] = None,
    map_file: Annotated[
        Path | None, typer.Option("--map", help="Write a map of the changed grids to this HTML file.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (counts and items) instead of a table.")
    ] = False,
) -> None:
    """Compare a draft plan with the active one before activating it.

    Shows grids added, removed and reshaped, and the components, open cases, households and stations that
    would change owner.

    Example: `gridsvc plan compare 7 --csv changes.csv --map changes.html`
    """
    from gridsvc.services.access import LOCAL_OPERATOR
    from gridsvc.services.plan_compare import compare_plan, comparison_map_html

    settings = _settings()
    sessions = _sessions(settings)
    comparison = compare_plan(sessions, plan_id, against, actor=LOCAL_OPERATOR, settings=settings)
    if csv is not None:
        csv.write_bytes(comparison.to_csv())
    if map_file is not None:
        map_file.write_text(comparison_map_html(sessions, comparison, actor=LOCAL_OPERATOR), encoding="utf-8")
    if as_json:
        console.print_json(json.dumps(comparison.to_dict(limit=None), ensure_ascii=False, default=str))
        return
    summary = comparison.summary()
    table = Table(title=f"plan {plan_id} against plan {summary['against_plan_id']}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for change, count in summary["responsibility_grids"].items():
        table.add_row(f"responsibility grids {change}", f"{count:,}")
    for change, count in summary["unit_grids"].items():
        table.add_row(f"unit grids {change}", f"{count:,}")
    table.add_row("components changing owner", f"{summary['components_changing_owner']:,}")
    table.add_row("open cases changing owner", f"{summary['open_cases_changing_owner']:,}")
    table.add_row("households changing owner", f"{summary['households_changing_owner']:,}")
    table.add_row("stations whose grids change", f"{summary['stations_changing_grids']:,}")
    console.print(table)
    for path in (csv, map_file):
        if path is not None:
            console.print(f"wrote {path}")


@plan_app.command("unit-grids")
@friendly
def plan_unit_grids_command(
    out: Annotated[
        Path, typer.Option("--out", help="File to write (.gpkg, .geojson, .shp, .csv) for review in QGIS.")
    ],
    community: Communities = None,
    max_area: MaxArea = 10_000.0,
    rural_max_area: RuralMaxArea = 50_000.0,
    min_area: MinArea = 500.0,
    crs: Annotated[str, typer.Option("--crs", help="CRS of the file (EPSG:4490, EPSG:4527, gcj02...).")] = (
        "EPSG:4490"
    ),
) -> None:
    """Cut communities into unit grids (by roads and the other departments' nets) and write them to a file.

    Nothing is stored: look at the cut in QGIS, then draw the plan with `gridsvc plan redraw` using the
    same sizes. Every unit grid carries its community and households.

    Example: `gridsvc plan unit-grids --community 370102001001 --max-area 8000 --out units.gpkg`
    """
    from gis.export import write_layer
    from gridsvc.services.export import check_target
    from gridsvc.services.planning import DrawParams, cut_unit_grids

    check_target(out, crs, "UTF-8")
    settings = _settings()
    params = DrawParams(
        max_area_m2=max_area,
        rural_max_area_m2=rural_max_area,
        min_area_m2=min_area,
        communities=tuple(community or ()),
    )
    with _progress_bar() as bar:
        task = bar.add_task("cutting", total=None)
        frame = cut_unit_grids(
            _sessions(settings),
            settings,
            params,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    path = write_layer(frame, out, crs=crs)
    table = Table(title=f"unit grids → {path}")
    for column in ("communities", "unit grids", "households", "median m²", "largest m²"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{frame['community_code'].nunique():,}",
        f"{len(frame):,}",
        f"{int(frame['households'].sum()):,}",
        f"{frame['area_m2'].median():,.0f}" if len(frame) else "-",
        f"{frame['area_m2'].max():,.0f}" if len(frame) else "-",
    )
    console.print(table)


@plan_app.command("redraw")
@friendly
def plan_redraw_command(
    community: Communities = None,
    max_area: MaxArea = 10_000.0,
    rural_max_area: RuralMaxArea = 50_000.0,
    min_area: MinArea = 500.0,
    households_min: Annotated[
        int, typer.Option("--households-min", help="Fewest households per grid.")
    ] = 300,
    households_max: Annotated[int, typer.Option("--households-max", help="Most households per grid.")] = 500,
    weight: Annotated[
        list[str] | None,
        typer.Option(
            "--weight",
            help="Workload weight LOAD=W (repeat). Loads: households, components, cases (last --cases-days "
            "days), area_m2. Default households=1.",
        ),
    ] = None,
    target_workload: Annotated[
        float | None,
        typer.Option(
            "--target-workload", help="Aim every grid at this workload instead of the household range."
        ),
    ] = None,
    cases_days: Annotated[int, typer.Option("--cases-days", help="History counted by the cases load.")] = 365,
    net_penalty: Annotated[
        float,
        typer.Option(
            "--net-penalty", help="How hard grids avoid straddling the old nets' lines (0: ignore)."
        ),
    ] = 0.1,
    keep_current: Annotated[
        bool,
        typer.Option(
            "--keep-current", help="Minimal change: keep today's grids where they are already balanced."
        ),
    ] = False,
    code_digits: Annotated[
        int | None,
        typer.Option("--code-digits", help="14 or 15-digit unit grid codes (default: the city's)."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Processes drawing side by side (0: one per core).")
    ] = 0,
    name: Annotated[str, typer.Option("--name", help="The draft plan's name.")] = "重新划分方案",
) -> None:
    """Draw a draft plan: unit grids cut along roads and other nets, grouped into balanced grids.

    Workload is a weighted sum of loads per unit grid; grids aim at 300–500 households (or
    --target-workload), stay in one piece, compact, and follow the old nets' lines where that costs little
    balance. Codes follow the standard (west→east, north→south); grids that did not change keep today's
    codes. The draft's quality report is printed and stored with it.

    Next: `gridsvc plan compare ID`, `gridsvc plan check ID`, `gridsvc plan activate ID --from DATE`.

    Examples:

      gridsvc plan redraw --community 370102001001 --households-min 300 --households-max 500

      gridsvc plan redraw --weight households=1 --weight components=0.5 --target-workload 600 --keep-current
    """
    from gridsvc.services.access import LOCAL_OPERATOR
    from gridsvc.services.planning import DrawParams, draw_plan

    settings = _settings()
    params = DrawParams(
        max_area_m2=max_area,
        rural_max_area_m2=rural_max_area,
        min_area_m2=min_area,
        households_min=households_min,
        households_max=households_max,
        weights=_weights(weight),
        target_workload=target_workload,
        cases_days=cases_days,
        net_penalty=net_penalty,
        keep_current=keep_current,
        code_digits=code_digits,
        communities=tuple(community or ()),
        name=name,
        workers=workers,
    )
    with _progress_bar() as bar:
        task = bar.add_task("drawing", total=None)
        report = draw_plan(
            _sessions(settings),
            settings,
            params,
            actor=LOCAL_OPERATOR,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    summary = report.to_dict()
    summary["quality"] = {k: v for k, v in summary["quality"].items() if k != "per_community"}
    console.print_json(json.dumps(summary, ensure_ascii=False, default=str))


# `plan draw` was the first name of `plan redraw`; kept so scripts written against it still run.
plan_app.command("draw", hidden=True)(plan_redraw_command)
