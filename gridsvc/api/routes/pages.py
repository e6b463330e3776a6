"""The map pages (dispatcher map, plan review, field page) and the small JSON endpoints only they need.

The pages are served to anyone: they carry no data. Their scripts sign in with an API key (``?key=``
once, or a form), keep it in the tab's sessionStorage and send it as ``X-API-Key`` on every data call and
tile request; without a valid key of the page's role nothing but the form is shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from gridsvc.api.deps import AppSettings, Caller, Sessions
from gridsvc.api.roles import PUBLIC, ROLES, RoleRoute, allow
from gridsvc.services import pages
from gridsvc.services.pages import PageContext, PageSettings

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["pages"], route_class=RoleRoute)

# A page is small and changes with the code: the browser asks again each time instead of guessing.
PAGE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _context(request: Request, settings: AppSettings, page_settings: PageSettings) -> PageContext:
    return PageContext(
        root=str(request.scope.get("root_path", "")).rstrip("/"), settings=settings, pages=page_settings
    )


PageSettingsDep = Annotated[PageSettings, Depends(pages.get_page_settings)]


@router.get(
    "/map",
    dependencies=[PUBLIC],
    response_class=HTMLResponse,
    summary="The dispatcher's map: grids by open cases or workload, cases, stations, components (HTML)",
)
def dispatcher_map(
    request: Request, sessions: Sessions, settings: AppSettings, page_settings: PageSettingsDep
) -> HTMLResponse:
    """Sign in with a dispatcher (or gis_staff) key: `/map?key=...` once, or the form. `lon`, `lat`, `z`
    open the map at a place."""
    html = pages.dispatcher_page(sessions, _context(request, settings, page_settings))
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get(
    "/plans/{plan_id}/map",
    dependencies=[PUBLIC],
    response_class=HTMLResponse,
    summary="Review a plan on a map: the draft over the active plan, changed grids, quality report (HTML)",
)
def plan_review_map(
    plan_id: int, request: Request, sessions: Sessions, settings: AppSettings, page_settings: PageSettingsDep
) -> HTMLResponse:
    """Sign in with a gis_staff or dispatcher key. `against=ID` compares with another plan than the
    active one."""
    html = pages.plan_review_page(sessions, _context(request, settings, page_settings), plan_id)
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get(
    "/field",
    dependencies=[PUBLIC],
    response_class=HTMLResponse,
    summary="The field page for a phone: owning grid, station to call, nearest components (HTML)",
)
def field(
    request: Request, sessions: Sessions, settings: AppSettings, page_settings: PageSettingsDep
) -> HTMLResponse:
    """Uses the phone's position (WGS 84), a tapped point, or `?lon=&lat=` (WGS 84; `crs=gcj02` for a
    point copied from Amap)."""
    html = pages.field_page(sessions, _context(request, settings, page_settings))
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get(
    "/v1/me",
    dependencies=[allow(*ROLES)],
    tags=["service"],
    summary="Who the API key belongs to: its name and role",
)
def me(caller: Caller) -> JSONResponse:
    """The pages ask this to check a key at sign-in; 401 for a missing, unknown or revoked key."""
    return JSONResponse({"name": caller.name, "role": caller.role})


NEAREST_EXAMPLE: dict[str, Any] = {
    "point": {"lon": 117.0213, "lat": 36.6615, "crs": "cgcs2000"},
    "class": {"code": "0118", "name": "路灯"},
    "within_m": 500.0,
    "components": [
        {
            "code": "3701020118000123",
            "name": "泉城路路灯123",
            "class_code": "0118",
            "class_name": "路灯",
            "status": "intact",
            "lon": 117.02141,
            "lat": 36.66163,
            "distance_m": 17.4,
        }
    ],
}


@router.get(
    "/v1/components/nearest",
    dependencies=[allow(*pages.FIELD_ROLES)],
    tags=["locate"],
    summary="The components of a class nearest a point (field, dispatcher, gis_staff)",
    responses={
        200: {"content": {"application/json": {"example": NEAREST_EXAMPLE}}},
        422: {"description": "unknown class, bad coordinates or datum"},
    },
)
def nearest_components(
    sessions: Sessions,
    caller: Caller,
    lon: Annotated[
        float, Query(description="Longitude (or easting for a projected EPSG)", examples=[117.0213])
    ],
    lat: Annotated[float, Query(description="Latitude (or northing)", examples=[36.6615])],
    class_code: Annotated[str, Query(alias="class", description="Component class", examples=["0118"])],
    crs: Annotated[
        str, Query(description="Datum of lon/lat: wgs84, cgcs2000, gcj02, bd09 or EPSG:n")
    ] = "wgs84",
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
    within_m: Annotated[float, Query(gt=0, le=2000, description="Search radius in metres")] = 500.0,
) -> JSONResponse:
    """Current, in-use components, nearest first, with their codes and geodesic distances in metres."""
    return JSONResponse(
        pages.nearest_components(
            sessions, lon, lat, class_code=class_code, crs=crs, limit=limit, within_m=within_m, actor=caller
        )
    )


@router.get(
    "/v1/plans/{plan_id}/review",
    dependencies=[allow(*pages.REVIEW_ROLES)],
    tags=["plans"],
    summary="What the review map needs: the comparison's counts and each changed grid with its box",
    responses={404: {"description": "no such plan"}, 422: {"description": "no active plan to compare with"}},
)
def plan_review(
    plan_id: int,
    sessions: Sessions,
    caller: Caller,
    against: Annotated[int | None, Query(description="Plan to compare with; default the active one.")] = None,
) -> JSONResponse:
    """Counts as in `/compare`, plus `changed_grids` (code, change, community, households, bbox) and the
    `bounds` of them all (gis_staff, dispatcher)."""
    return JSONResponse(pages.plan_review(sessions, plan_id, against, actor=caller))
