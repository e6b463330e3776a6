"""``gridsvc plan``: check a draft plan against the rules and activate it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer
from rich.table import Table

from gridsvc.cli.main import _sessions, _settings, app, console, friendly

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
