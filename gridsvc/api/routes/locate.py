"""Locate: which grid owns a point, and who answers for it (field, dispatcher, gis_staff)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from gridsvc.api.deps import AppSettings, Sessions
from gridsvc.api.request_body import BoundedBodyRoute
from gridsvc.api.roles import RoleRoute, allow
from gridsvc.errors import FieldProblem, InvalidInputError
from gridsvc.services import locate


class LocateRoute(BoundedBodyRoute, RoleRoute):
    """Roles as declared; a batch is read whole, so its body is cut off at 256 MiB (a million points as
    GeoJSON are some 150 MB) with 413 rather than filling memory (issue 7)."""

    max_body_bytes = 256 << 20
    body_too_large = "the batch is larger than 256 MiB: send it in parts of up to a million points"


router = APIRouter(prefix="/v1/locate", tags=["locate"], route_class=LocateRoute)

STAFF_ROLES = ("field", "dispatcher", "gis_staff")

LOCATE_EXAMPLE: dict[str, Any] = {
    "point": {"lon": 117.021302, "lat": 36.661513, "crs": "cgcs2000"},
    "how": "inside",
    "needs_confirmation": True,
    "notes": ["1 other owner(s) within the boundary tolerance: confirm the owner"],
    "unit_grid": {"id": 4711, "code": "370102001001005"},
    "responsibility_grid": {
        "id": 233,
        "code": "370102001001R02",
        "name": "泉城路社区第2责任网格",
        "worker": {"name": "王芳", "phone": "13905310002"},
    },
    "community": {"code": "370102001001", "name": "泉城路社区"},
    "street": {"code": "370102001", "name": "泉城路街道"},
    "district": {"code": "370102", "name": "历下区"},
    "station": {
        "id": 12,
        "name": "泉城路社区城管工作站",
        "phone": "0531-86001234",
        "lon": 117.0201,
        "lat": 36.6609,
        "distance_m": 132.4,
    },
    "plan": {
        "id": 1,
        "name": "演示初始网格方案",
        "status": "active",
        "effective_from": "2025-01-01",
        "effective_to": None,
    },
    "distance_m": None,
    "near_boundary": True,
    "boundary_distance_m": 12.3,
    "candidates": [
        {
            "unit_grid_code": "370102001001011",
            "responsibility_grid_code": "370102001001R03",
            "community_code": "370102001001",
            "distance_m": 12.3,
        }
    ],
}

CrsQuery = Annotated[
    str,
    Query(
        description="Datum of lon/lat: wgs84 (GPS), cgcs2000, gcj02 (Amap/Tencent), bd09 (Baidu) or EPSG:n"
    ),
]
AtQuery = Annotated[
    dt.date | None,
    Query(description="Ask the plan in force on this date (YYYY-MM-DD); default the active plan"),
]


@router.get(
    "",
    dependencies=[allow(*STAFF_ROLES)],
    summary="Which grid owns this point, and who answers for it",
    description=(
        "Unit grid, responsibility grid and its worker, community, street, district, the community "
        "station with its distance, and the plan that answered. `how` says how sure: `inside`, `edge` (on a "
        "shared edge or vertex: the grid with the smallest code owns it), `nearest` (in no grid: the nearest "
        "grid within the nearest tolerance), `territory` (属地兜底: the district that contains it). "
        "`near_boundary` lists the other owners within the boundary tolerance (30 m by default). A point in "
        "no district is outside the city: 404."
    ),
    responses={
        200: {"content": {"application/json": {"example": LOCATE_EXAMPLE}}},
        404: {"description": "the point is outside the city"},
        422: {"description": "bad coordinates or datum"},
    },
)
def locate_one(
    sessions: Sessions,
    settings: AppSettings,
    lon: Annotated[
        float, Query(description="Longitude (or easting for a projected EPSG)", examples=[117.0213])
    ],
    lat: Annotated[float, Query(description="Latitude (or northing)", examples=[36.6615])],
    crs: CrsQuery = "wgs84",
    at: AtQuery = None,
) -> JSONResponse:
    """One point."""
    located = locate.locate_point(sessions, settings, lon, lat, crs=crs, at=at)
    return JSONResponse(locate.located_dict(located))


@router.post(
    "/batch",
    dependencies=[allow(*STAFF_ROLES)],
    summary="Locate many points: a GeoJSON FeatureCollection or a CSV, answered in the same format",
    description=(
        "Send `Content-Type: application/geo+json` (a FeatureCollection of points, WGS 84 unless `crs` says "
        "otherwise) or `text/csv` (columns lon/lat, lng/lat, x/y, 经度/纬度 or 东坐标/北坐标; WGS 84 "
        "unless `crs` "
        "says otherwise). The answer repeats every feature or row with the owner columns added (`how`, "
        "`unit_grid_code`, `responsibility_grid_code`, `worker_name`, ..., `candidates`), points in WGS 84. "
        "Same answers as GET /v1/locate one by one. Up to 64 MiB per request; use `gridsvc locate-file` "
        "for more."
    ),
    responses={
        200: {
            "content": {
                "application/geo+json": {"example": {"type": "FeatureCollection", "features": []}},
                "text/csv": {
                    "example": "lon,lat,how,unit_grid_code,...\n117.0213,36.6615,inside,370102001001005"
                },
            }
        },
        413: {"description": "the batch is larger than 256 MiB"},
        422: {"description": "not a point collection, a row that is not a point, a bad datum"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/geo+json": {
                    "example": {
                        "type": "FeatureCollection",
                        "features": [
                            {
                                "type": "Feature",
                                "properties": {"id": "A1"},
                                "geometry": {"type": "Point", "coordinates": [117.0213, 36.6615]},
                            }
                        ],
                    }
                },
                "text/csv": {"example": "id,lon,lat\nA1,117.0213,36.6615\n"},
            },
        }
    },
)
async def locate_batch(
    request: Request,
    sessions: Sessions,
    settings: AppSettings,
    crs: Annotated[str | None, Query(description="Datum of the points when not WGS 84")] = None,
    at: AtQuery = None,
) -> Response:
    """Many points."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/geo+json", "application/json"):
        fmt, media = "geojson", "application/geo+json"
    elif content_type in ("text/csv", "application/csv"):
        fmt, media = "csv", "text/csv; charset=utf-8"
    else:
        raise InvalidInputError(
            "unsupported Content-Type",
            problems=[
                FieldProblem(
                    "Content-Type", f"{content_type or 'none'}: send application/geo+json or text/csv"
                )
            ],
        )
    body = await request.body()
    from starlette.concurrency import run_in_threadpool

    answer, _report = await run_in_threadpool(
        locate.locate_document, sessions, settings, body, fmt=fmt, crs=crs, at=at
    )
    return Response(answer, media_type=media)
