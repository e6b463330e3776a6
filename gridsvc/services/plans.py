"""Activating a grid plan: checked against the rules, one transaction, one activation at a time.

Activation (gis_staff) with an effective date retires the active plan from that date (it stays in the
database and answers ``locate at=`` for the days it was in force), makes the draft active, and gives
every current component and every open case its grids in the new plan (by the import's rule:
``services.imports.grid_rule``) — all in one transaction, so a
crash leaves the old plan in force untouched. A plan that breaks nesting (a unit grid outside its
community), contiguity (a responsibility grid in pieces), coverage (overlapping unit grids, a community
not covered) or leaves a unit grid without a responsibility grid cannot be activated: the answer lists
what is wrong, with the codes. Two activations at the same moment: the first takes a database lock,
the second is refused with a conflict at once instead of waiting and silently undoing the first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from gridsvc.errors import ConflictError, FieldProblem, InvalidInputError, NotFoundError
from gridsvc.repositories import access as access_repo
from gridsvc.repositories import plans as repo
from gridsvc.repositories.grid_rule import analyze_grids
from gridsvc.services.access import Principal
from gridsvc.services.imports import grid_rule
from gridsvc.settings import Settings


@dataclass(frozen=True)
class Activation:
    """What an activation did."""

    plan_id: int
    effective_from: dt.date
    retired_plan_id: int | None
    components_regridded: int
    open_cases_regridded: int
    # Of those, the cases the new plan gave another owner (unit grid code, community or station): each has a
    # reassign event in its history.
    open_cases_reassigned: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON for the API and the CLI."""
        return {
            "plan_id": self.plan_id,
            "effective_from": self.effective_from.isoformat(),
            "retired_plan_id": self.retired_plan_id,
            "components_regridded": self.components_regridded,
            "open_cases_regridded": self.open_cases_regridded,
            "open_cases_reassigned": self.open_cases_reassigned,
        }


def check_plan(sessions: sessionmaker[Session], plan_id: int) -> list[dict[str, Any]]:
    """The rule breaks that stop a plan from being activated (empty: it may be activated)."""
    with sessions() as session:
        if repo.plan_for_update(session, plan_id) is None:
            raise NotFoundError(f"no plan {plan_id}")
        return repo.rule_breaks(session, plan_id)


def activate_plan(
    sessions: sessionmaker[Session],
    plan_id: int,
    effective_from: dt.date,
    *,
    settings: Settings,
    actor: Principal,
) -> Activation:
    """Make a draft plan the active one from ``effective_from`` (see the module docstring)."""
    actor.require("gis_staff")
    with sessions.begin() as session:
        if not repo.try_activation_lock(session):
            raise ConflictError("another plan is being activated right now: try again when it has finished")
        plan = repo.plan_for_update(session, plan_id)
        if plan is None:
            raise NotFoundError(f"no plan {plan_id}")
        if plan["status"] != "draft":
            raise ConflictError(
                f"plan {plan_id} is {plan['status']}: only a draft can be activated",
                problems=[FieldProblem("status", plan["status"])],
            )
        if repo.count_unit_grids(session, plan_id) == 0:
            raise InvalidInputError(
                f"plan {plan_id} has no unit grids", problems=[FieldProblem("plan", "empty")]
            )
        breaks = repo.rule_breaks(session, plan_id)
        if breaks:
            raise InvalidInputError(
                f"plan {plan_id} breaks {len(breaks)} rule(s) and cannot be activated "
                f"(first: {breaks[0]['code']}: {breaks[0]['problem']})",
                problems=[
                    FieldProblem(b["rule"], f"{b['code']}: {b['problem']}", {"code": b["code"]})
                    for b in breaks
                ],
            )
        current = repo.active_plan_for_update(session)
        if current is not None:
            if current["effective_from"] is not None and effective_from <= current["effective_from"]:
                raise InvalidInputError(
                    f"the active plan {current['id']} is in force from {current['effective_from']}: "
                    "the new plan must start after that",
                    problems=[FieldProblem("effective_from", effective_from.isoformat())],
                )
            repo.retire(session, current["id"], effective_from)
            # The one-active-plan index is checked per statement: retire first, then activate.
            session.flush()
        repo.make_active(session, plan_id, effective_from)
        rule = grid_rule(plan_id, settings)
        analyze_grids(session)  # hand edits since the draft was drawn may have added grids unseen
        components = repo.regrid_components(session, rule)
        open_cases, reassigned = repo.regrid_open_cases(
            session,
            rule,
            actor=actor.name,
            note=f"plan {plan_id} in force from {effective_from.isoformat()}: owned by its grids",
        )
        activation = Activation(
            plan_id=plan_id,
            effective_from=effective_from,
            retired_plan_id=current["id"] if current else None,
            components_regridded=components,
            open_cases_regridded=open_cases,
            open_cases_reassigned=reassigned,
        )
        access_repo.record_audit(
            session,
            actor=actor.name,
            api_key_id=actor.api_key_id,
            action="activate",
            entity="grid_plan",
            entity_id=str(plan_id),
            details=activation.to_dict(),
        )
        return activation
