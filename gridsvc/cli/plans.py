"""``gridsvc plan``: check a draft plan against the rules and activate it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer
from rich.table import Table

from gridsvc.cli.main import _sessions, _settings, app, console, err_console, friendly

plan_app = typer.Typer(help="Grid plans: check a draft against the rules, activate it from a date.")
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

    done = activate_plan(_sessions(_settings()), plan_id, effective_from.date(), actor=LOCAL_OPERATOR)
    console.print_json(json.dumps(done.to_dict()))


@plan_app.command("draw")
@friendly
def plan_draw_command(
    community: Annotated[
        list[str] | None, typer.Option("--community", help="Only these communities (repeat); default all.")
    ] = None,
    max_area: Annotated[
        float, typer.Option("--max-area", help="Largest unit grid in built-up areas, m².")
    ] = 10_000.0,
    rural_max_area: Annotated[
        float, typer.Option("--rural-max-area", help="Largest unit grid in villages, m².")
    ] = 50_000.0,
    households_min: Annotated[
        int, typer.Option("--households-min", help="Fewest households per grid.")
    ] = 300,
    households_max: Annotated[int, typer.Option("--households-max", help="Most households per grid.")] = 500,
    name: Annotated[str, typer.Option("--name", help="The draft plan's name.")] = "重新划分方案",
) -> None:
    """Draw a draft plan: unit grids cut along roads and other nets, balanced responsibility grids.

    Codes follow the standard (west→east, north→south); grids that did not change keep today's codes.
    Check it with `gridsvc plan check ID`, activate it with `gridsvc plan activate ID --from DATE`.

    Example: `gridsvc plan draw --community 370102001001 --households-min 300 --households-max 500`
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from gridsvc.services.access import LOCAL_OPERATOR
    from gridsvc.services.planning import DrawParams, draw_plan

    settings = _settings()
    params = DrawParams(
        max_area_m2=max_area,
        rural_max_area_m2=rural_max_area,
        households_min=households_min,
        households_max=households_max,
        communities=tuple(community or ()),
        name=name,
    )
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>6,} communities"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as bar:
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
