"""Grid plans: compare a draft with the active plan, check it against the rules, activate it (gis_staff)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Body, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gridsvc.api.deps import AppSettings, Caller, Sessions
from gridsvc.api.roles import RoleRoute, allow
from gridsvc.services import plan_compare, planning, plans

router = APIRouter(prefix="/v1/plans", tags=["plans"], route_class=RoleRoute)


@router.get(
    "",
    dependencies=[allow("gis_staff", "dispatcher")],
    summary="Every plan, newest first, with its quality summary (gis_staff, dispatcher)",
)
def list_plans(sessions: Sessions, caller: Caller) -> JSONResponse:
    """Drafts, the active plan and retired ones, with counts of grids and the city-wide quality figures."""
    return JSONResponse({"plans": planning.list_plans(sessions, actor=caller)})


@router.get(
    "/{plan_id}",
    dependencies=[allow("gis_staff", "dispatcher")],
    summary="One plan: status, dates, drawing parameters, version and its quality report per community",
    responses={404: {"description": "no such plan"}},
)
def show(plan_id: int, sessions: Sessions, caller: Caller) -> JSONResponse:
    """The quality report gives, per community and city-wide, the max/min workload ratio, its coefficient
    of variation, compactness, contiguity, nesting, coverage, the share of old-net lines followed and the
    grids outside the size bounds."""
    view = planning.plan_view(sessions, plan_id, actor=caller)
    return JSONResponse(view, headers={"ETag": f'"{view["version"]}"'})


@router.get(
    "/{plan_id}/checks",
    dependencies=[allow("gis_staff", "dispatcher")],
    summary="What stops a plan from being activated (an empty list: nothing)",
    responses={404: {"description": "no such plan"}},
)
def check(plan_id: int, sessions: Sessions) -> JSONResponse:
    """Nesting, contiguity, overlap, coverage and unassigned unit grids, with the codes involved."""
    return JSONResponse({"plan_id": plan_id, "breaks": plans.check_plan(sessions, plan_id)})


@router.post(
    "/{plan_id}/activate",
    dependencies=[allow("gis_staff")],
    summary="Activate a draft plan from a date (gis_staff): one transaction, one activation at a time",
    responses={
        400: {"description": "the body cannot be read: not UTF-8 JSON"},
        404: {"description": "no such plan"},
        409: {"description": "another activation is running, or the plan is not a draft"},
        422: {"description": "the plan breaks nesting, contiguity or coverage, or the date is too early"},
    },
)
def activate(
    plan_id: int,
    sessions: Sessions,
    settings: AppSettings,
    caller: Caller,
    effective_from: Annotated[dt.date, Body(embed=True, examples=["2026-12-01"])],
) -> JSONResponse:
    """The active plan is retired from that date (and stays queryable with locate `at=`); components and
    open cases get their grids in the new plan: the grid at their point, else the nearest within
    `locate_nearest_tolerance_m`."""
    done = plans.activate_plan(sessions, plan_id, effective_from, settings=settings, actor=caller)
    return JSONResponse(done.to_dict())


@router.get(
    "/{plan_id}/compare",
    dependencies=[allow("gis_staff", "dispatcher")],
    summary="A plan beside the active one (or another): grids added, removed, reshaped; who changes owner",
    responses={
        200: {
            "description": "JSON counts and changed items; CSV one row per change; HTML a map of the changes",
            "content": {"text/csv": {}, "text/html": {}},
        },
        404: {"description": "no such plan"},
        422: {"description": "no active plan to compare with and none named, or a plan compared with itself"},
    },
)
def compare(
    plan_id: int,
    sessions: Sessions,
    caller: Caller,
    settings: AppSettings,
    against: Annotated[int | None, Query(description="Plan to compare with; default the active one.")] = None,
    format: Annotated[str, Query(pattern="^(json|csv|html)$", examples=["json"])] = "json",
    limit: Annotated[
        int, Query(ge=1, le=100_000, description="Items per list in JSON (counts are whole).")
    ] = 1000,
) -> Response:
    """Components, open cases, households (residential buildings) and stations that would change grid if
    this plan were activated. Grids are matched by code; a kept code with a shape differing by more than
    1 % of its area is *reshaped*."""
    comparison = plan_compare.compare_plan(sessions, plan_id, against, actor=caller, settings=settings)
    if format == "csv":
        return Response(
            comparison.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="plan-{plan_id}-compare.csv"'},
        )
    if format == "html":
        return HTMLResponse(plan_compare.comparison_map_html(sessions, comparison, actor=caller))
    return JSONResponse(comparison.to_dict(limit=limit))
