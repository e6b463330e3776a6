"""Grid plans: check a draft against the rules, activate it (gis_staff)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from gridsvc.api.deps import Caller, Sessions
from gridsvc.services import plans

router = APIRouter(prefix="/v1/plans", tags=["plans"])


@router.get("/{plan_id}/checks", summary="What stops a plan from being activated (an empty list: nothing)")
def check(plan_id: int, sessions: Sessions, caller: Caller) -> JSONResponse:
    """Nesting, contiguity, overlap, coverage and unassigned unit grids, with the codes involved."""
    caller.require("gis_staff", "dispatcher")
    return JSONResponse({"plan_id": plan_id, "breaks": plans.check_plan(sessions, plan_id)})


@router.post(
    "/{plan_id}/activate",
    summary="Activate a draft plan from a date (gis_staff): one transaction, one activation at a time",
    responses={
        409: {"description": "another activation is running, or the plan is not a draft"},
        422: {"description": "the plan breaks nesting, contiguity or coverage, or the date is too early"},
    },
)
def activate(
    plan_id: int,
    sessions: Sessions,
    caller: Caller,
    effective_from: Annotated[dt.date, Body(embed=True, examples=["2026-12-01"])],
) -> JSONResponse:
    """The active plan is retired from that date (and stays queryable with locate `at=`); components and
    open cases get their grids in the new plan."""
    return JSONResponse(plans.activate_plan(sessions, plan_id, effective_from, actor=caller).to_dict())
