"""GET /v1/stats: the month's evaluation figures per grid, community, street or district."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gridsvc.api.deps import AppSettings, Sessions
from gridsvc.api.roles import RoleRoute, allow
from gridsvc.services import stats

router = APIRouter(prefix="/v1/stats", tags=["cases"], route_class=RoleRoute)


@router.get(
    "",
    dependencies=[allow("dispatcher", "gis_staff")],
    summary="Evaluation figures (综合考评) of the cases registered in a month",
    description=(
        "Per `level` (grid, community, street, district or city): registered, dispatched, closed, closed on "
        "time, deferred, due, closure rate = closed / (due − deferred), on-time rate = closed on time / "
        "(due − deferred), rework count, median handling hours (report-back − dispatch). `format` json, csv "
        "(UTF-8 with BOM for Excel) or html (a readable page)."
    ),
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "month": "2026-10",
                        "level": "district",
                        "rows": [
                            {
                                "level": "district",
                                "code": "370102",
                                "name": "历下区",
                                "registered": 812,
                                "dispatched": 790,
                                "closed": 701,
                                "closed_on_time": 655,
                                "deferred": 12,
                                "due": 812,
                                "closure_rate": 0.8763,
                                "on_time_rate": 0.8188,
                                "rework_count": 23,
                                "median_handling_hours": 5.5,
                            }
                        ],
                    }
                },
                "text/csv": {},
                "text/html": {},
            }
        }
    },
)
def get_stats(
    sessions: Sessions,
    settings: AppSettings,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", examples=["2026-10"])],
    level: Annotated[Literal["grid", "community", "street", "district", "city"], Query()] = "district",
    format: Annotated[Literal["json", "csv", "html"], Query()] = "json",
) -> Response:
    """Dispatchers and GIS staff."""
    rows = stats.monthly(sessions, settings, month, level)
    if format == "csv":
        return Response(
            stats.to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="stats-{month}-{level}.csv"'},
        )
    if format == "html":
        return HTMLResponse(stats.to_html(rows, city=settings.city_name, month=month, level=level))
    return JSONResponse({"month": month, "level": level, "rows": rows})
