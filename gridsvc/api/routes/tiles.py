"""Vector tiles (MVT) and TileJSON for the dispatcher's map and the field page (gis_staff, dispatcher, field).

The key may come as the ``api_key`` query parameter as well as the ``X-API-Key`` header here, because
Leaflet's tile loaders fetch plain URLs and cannot set headers. Only these routes (and the OGC features
under /ogc) read it: every other route keeps taking keys from headers alone.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from gridsvc.api.deps import AppSettings, Caller, Sessions, get_sessions, get_settings_dep
from gridsvc.api.roles import PUBLIC, RoleRoute, allow
from gridsvc.services import tiles

router = APIRouter(prefix="/v1/tiles", tags=["tiles"], route_class=RoleRoute)
# Tile loaders fetch plain URLs: these routes take the key from ?api_key= as well as from the headers.
TILE_READERS = allow(*tiles.ROLES, key_in_query=True)

# Tiles change whenever the data do: a browser keeps them but asks again each time (ETag -> 304).
CACHE_CONTROL = "private, no-cache"

_KEY_IN_QUERY = re.compile(r"(?i)([?&]api_key=)[^&\s]*")


class RedactKeyInQuery(logging.Filter):
    """Keeps a key given as ``?api_key=`` out of uvicorn's access log (it logs the full query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the logged path; never drops a record."""
        if isinstance(record.args, tuple) and any(
            isinstance(a, str) and "api_key=" in a for a in record.args
        ):
            record.args = tuple(
                _KEY_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        return True


_access_log = logging.getLogger("uvicorn.access")
if not any(isinstance(f, RedactKeyInQuery) for f in _access_log.filters):
    _access_log.addFilter(RedactKeyInQuery())


def key_query_items(request: Request) -> list[tuple[str, str]]:
    """``[("api_key", key)]`` when the caller gave the key in the query: links must carry it on."""
    key = request.query_params.get("api_key")
    return [("api_key", key)] if key else []


Z = Annotated[int, Path(ge=0, le=tiles.MAX_ZOOM, description="Zoom level", examples=[15])]
X = Annotated[int, Path(ge=0, description="Column, 0 at 180° W", examples=[27034])]
Y = Annotated[int, Path(ge=0, description="Row, 0 at the north edge (XYZ, not TMS)", examples=[12801])]
PlanQuery = Annotated[
    int | None,
    Query(
        description="Grid layers: the plan to draw; default the active plan. Another plan (a draft under "
        "review, a retired one) for gis_staff and dispatcher."
    ),
]
ClassQuery = Annotated[
    list[str] | None,
    Query(
        alias="class",
        description="components, cases: class codes to keep, repeatable or comma-separated (0118; for "
        "cases C0118 or E0403 name the kind)",
    ),
]
StatusQuery = Annotated[
    list[str] | None, Query(description="cases: statuses to show (repeatable); default the open ones")
]
OverdueQuery = Annotated[bool, Query(description="cases: only those past their deadline")]

LAYER_EXAMPLE = "components"
TILEJSON_EXAMPLE: dict[str, Any] = {
    "tilejson": "3.0.0",
    "name": "unit_grids",
    "description": "The atomic cells; each lies in one community and one responsibility grid.",
    "version": "1.0.0",
    "attribution": "济南市",
    "scheme": "xyz",
    "tiles": ["http://127.0.0.1:8000/v1/tiles/unit_grids/{z}/{x}/{y}.mvt?api_key=gs_1a2b3c4d_..."],
    "minzoom": 13,
    "maxzoom": 18,
    "bounds": [116.1, 35.9, 118.1, 37.65],
    "center": [117.1, 36.775, 13],
    "vector_layers": [
        {
            "id": "unit_grids",
            "description": "Unit grids (单元网格): The atomic cells; ...",
            "minzoom": 13,
            "maxzoom": 18,
            "fields": {"code": "String", "community_code": "String", "responsibility_grid_code": "String"},
        }
    ],
}


def _query(
    plan: int | None, classes: list[str] | None, status: list[str] | None, overdue: bool
) -> tiles.TileQuery:
    return tiles.TileQuery(
        plan=plan,
        classes=tiles.parse_classes(classes),
        statuses=tiles.parse_classes(status),
        overdue=overdue,
    )


@router.get("", dependencies=[PUBLIC], summary="The tile layers: names, minimum zooms, fields, filters")
def list_layers(request: Request) -> JSONResponse:
    """Every layer with the link of its TileJSON (the layer list itself needs no key)."""
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "layers": [
                {**layer, "tilejson": f"{base}/v1/tiles/{layer['name']}.json"} for layer in tiles.layer_list()
            ]
        }
    )


@router.get(
    "/{layer}.json",
    dependencies=[TILE_READERS],
    summary="TileJSON 3.0 of a layer: the tile URL template, zooms, bounds and fields",
    responses={
        200: {"content": {"application/json": {"example": TILEJSON_EXAMPLE}}},
        401: {"description": "no or unknown API key"},
        403: {"description": "the key's role may not read tiles (reporter)"},
        404: {"description": "no such layer, or no such plan"},
        422: {"description": "a filter the layer does not have, or a bad class/status"},
    },
)
def layer_tilejson(
    request: Request,
    sessions: Sessions,
    settings: AppSettings,
    caller: Caller,
    layer: Annotated[str, Path(description="Layer name", examples=["unit_grids"])],
    plan: PlanQuery = None,
    classes: ClassQuery = None,
    status: StatusQuery = None,
    overdue: OverdueQuery = False,
) -> JSONResponse:
    """The `tiles` template carries the same filters (and `api_key` when the key came in the query, so a
    map library can fetch the tiles with it). Without `plan` the template follows the active plan."""
    query = _query(plan, classes, status, overdue)
    items = [*tiles.check_query(tiles.layer_of(layer), query).query_items(), *key_query_items(request)]
    base = str(request.base_url).rstrip("/")
    url = f"{base}/v1/tiles/{layer}/{{z}}/{{x}}/{{y}}.mvt" + (f"?{urlencode(items)}" if items else "")
    body = tiles.tilejson(sessions, settings, layer, query, actor=caller, tiles_url=url)
    return JSONResponse(body, headers={"Cache-Control": CACHE_CONTROL})


@router.get(
    "/{layer}/{z}/{x}/{y}.mvt",
    dependencies=[TILE_READERS],
    summary="One vector tile (Mapbox Vector Tile, EPSG:3857 XYZ); the MVT layer is named like the layer",
    response_class=Response,
    responses={
        200: {
            "content": {tiles.MVT_MEDIA_TYPE: {}},
            "description": "the tile; `X-Tile-Truncated: true` when it reached the 10,000-feature limit",
        },
        204: {"description": "an empty tile: below the layer's minimum zoom, or nothing there"},
        304: {"description": "the tile named in If-None-Match is still current"},
        401: {"description": "no or unknown API key"},
        403: {"description": "the key's role may not read tiles (reporter)"},
        404: {"description": "no such layer, plan or tile (x or y beyond 2^z - 1)"},
        422: {"description": "z, x or y not a number, z beyond 22, or a filter the layer does not have"},
    },
)
async def get_tile(
    request: Request,
    caller: Caller,
    layer: Annotated[str, Path(description="Layer name", examples=[LAYER_EXAMPLE])],
    z: Z,
    x: X,
    y: Y,
    plan: PlanQuery = None,
    classes: ClassQuery = None,
    status: StatusQuery = None,
    overdue: OverdueQuery = False,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
    accept_encoding: Annotated[str | None, Header(include_in_schema=False)] = None,
    cache_control: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Layers: `responsibility_grids` (minzoom 10), `unit_grids` (13), `components` (15), `cases` (12),
    `stations` (11), `communities` (8); see GET /v1/tiles for their fields. Responses carry an ETag and
    `Cache-Control: private, no-cache`; a request with `Cache-Control: no-cache` is rendered afresh."""
    sessions, settings = get_sessions(request), get_settings_dep(request)
    query = _query(plan, classes, status, overdue)

    def answer_tile() -> tiles.TileAnswer:
        return tiles.tile(
            sessions,
            settings,
            layer,
            z,
            x,
            y,
            query,
            actor=caller,
            if_none_match=if_none_match,
            accept_gzip="gzip" in (accept_encoding or "").lower(),
            revalidate="no-cache" in (cache_control or "").lower(),
        )

    # The map's hottest route: one trip to the thread pool for the cache and (on a miss) the database,
    # instead of one per synchronous dependency (the key was checked on the event loop from the key cache
    # before: gridsvc/api/roles.py). A busy machine delays every trip.
    answer = await run_in_threadpool(answer_tile)
    headers = {"ETag": answer.etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
    if answer.status != 200:
        return Response(status_code=answer.status, headers=headers)
    if answer.content_encoding:
        headers["Content-Encoding"] = answer.content_encoding
    if answer.truncated:
        headers["X-Tile-Truncated"] = "true"
    return Response(answer.content, media_type=tiles.MVT_MEDIA_TYPE, headers=headers)
