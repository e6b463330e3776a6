"""OGC API - Features under /ogc: grids, components, stations and boundaries as GeoJSON, for QGIS and others.

Landing page, conformance and collection documents are open; boundaries (districts, streets,
communities) are open to read; the other collections need a gis_staff or dispatcher key, in the
X-API-Key header (QGIS: an "API header" authentication) or the ``api_key`` parameter, which the
paging links then carry on.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from gridsvc.api.deps import AppSettings, OptionalCaller, Sessions
from gridsvc.api.roles import PUBLIC, RoleRoute, allow
from gridsvc.api.routes.tiles import key_query_items
from gridsvc.services import features

router = APIRouter(prefix="/ogc", tags=["ogc features"], route_class=RoleRoute)
# Boundaries are open to read; the other collections need a reader's key (header or ?api_key= for QGIS).
FEATURE_READERS = allow(
    *features.READ_ROLES,
    key_in_query=True,
    only_when=("collectionId", frozenset(c.id for c in features.COLLECTIONS.values() if not c.open)),
)

CollectionId = Annotated[
    str,
    Path(
        alias="collectionId",
        description="responsibility_grids, unit_grids, components, stations, communities, streets, districts",
        examples=["unit_grids"],
    ),
]
CrsQuery = Annotated[
    str | None,
    Query(
        description="CRS of the coordinates, by URI: http://www.opengis.net/def/crs/OGC/1.3/CRS84 (default, "
        "lon/lat), .../EPSG/0/4326 or .../EPSG/0/4490 (lat/lon), .../EPSG/0/4548 or .../EPSG/0/4527 "
        "(Gauss-Krüger metres, northing/easting). EPSG:n is accepted too.",
    ),
]
PlanQuery = Annotated[
    int | None, Query(description="Grid collections: another plan than the active one (a draft under review)")
]

FEATURES_EXAMPLE: dict[str, Any] = {
    "type": "FeatureCollection",
    "timeStamp": "2026-12-01T08:00:00Z",
    "numberReturned": 1,
    "numberMatched": 4,
    "links": [
        {
            "href": "http://127.0.0.1:8000/ogc/collections/unit_grids/items?limit=1&offset=1",
            "rel": "next",
            "type": "application/geo+json",
            "title": "Next page",
        }
    ],
    "features": [
        {
            "type": "Feature",
            "id": "370102001001001",
            "geometry": {"type": "MultiPolygon", "coordinates": [[[[117.0, 36.682], [117.002, 36.682]]]]},
            "properties": {
                "code": "370102001001001",
                "community_code": "370102001001",
                "responsibility_grid_code": "370102001001R01",
                "area_m2": 40000.0,
                "plan_id": 1,
            },
        }
    ],
}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _geojson(answer: features.GeoJsonAnswer) -> Response:
    return Response(answer.body, media_type=features.GEOJSON, headers={"Content-Crs": f"<{answer.crs.uri}>"})


@router.get("", dependencies=[PUBLIC], summary="Landing page of the OGC API - Features layer")
def landing(request: Request, settings: AppSettings) -> JSONResponse:
    """Links to the API definition, the conformance classes and the collections."""
    return JSONResponse(features.landing(settings, base=_base(request), key=key_query_items(request)))


@router.get(
    "/conformance",
    dependencies=[PUBLIC],
    summary="Conformance classes: Features Part 1 core and GeoJSON, Part 2 CRS",
)
def conformance() -> JSONResponse:
    """The standards' parts this layer implements."""
    return JSONResponse(features.conformance())


@router.get("/collections", dependencies=[PUBLIC], summary="The feature collections")
def list_collections(request: Request, sessions: Sessions, settings: AppSettings) -> JSONResponse:
    """Grids (following the active plan), components, stations and boundaries, with their CRSs."""
    return JSONResponse(
        features.collections(sessions, settings, base=_base(request), key=key_query_items(request))
    )


@router.get(
    "/collections/{collectionId}",
    dependencies=[PUBLIC],
    summary="One feature collection",
    responses={404: {"description": "no such collection"}},
)
def get_collection(
    request: Request, sessions: Sessions, settings: AppSettings, collection_id: CollectionId
) -> JSONResponse:
    """Its extent (CRS84), the CRSs it can be given in, and the link to its items."""
    return JSONResponse(
        features.collection(
            sessions, settings, collection_id, base=_base(request), key=key_query_items(request)
        )
    )


@router.get(
    "/collections/{collectionId}/items",
    dependencies=[FEATURE_READERS],
    summary="Features of a collection: bbox, paging (limit/offset with next links), crs",
    response_class=Response,
    responses={
        200: {"content": {"application/geo+json": {"example": FEATURES_EXAMPLE}}},
        400: {"description": "a bad bbox, crs or bbox-crs, or plan on a collection not drawn per plan"},
        401: {"description": "no or unknown API key (collections other than boundaries)"},
        403: {"description": "the key's role may not read this collection"},
        404: {"description": "no such collection or plan"},
    },
)
def get_items(
    request: Request,
    sessions: Sessions,
    settings: AppSettings,
    caller: OptionalCaller,
    collection_id: CollectionId,
    bbox: Annotated[
        str | None,
        Query(
            description="minx,miny,maxx,maxy in the axis order of bbox-crs (CRS84: lon,lat)",
            examples=["117.0,36.6,117.1,36.7"],
        ),
    ] = None,
    bbox_crs: Annotated[
        str | None, Query(alias="bbox-crs", description="CRS of bbox (default CRS84)")
    ] = None,
    crs: CrsQuery = None,
    limit: Annotated[
        int, Query(ge=1, description=f"Features per page (at most {features.MAX_LIMIT})")
    ] = features.DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, description="Features to skip")] = 0,
    plan: PlanQuery = None,
) -> Response:
    """Ordered by code. `next` and `prev` links keep every parameter (and `api_key` when given in the
    query). `numberMatched` is left out for components without a bbox (counting millions for every page
    would cost more than the page)."""
    answer = features.items(
        sessions,
        settings,
        collection_id,
        actor=caller,
        bbox=bbox,
        bbox_crs=bbox_crs,
        crs=crs,
        limit=limit,
        offset=offset,
        plan=plan,
        base=_base(request),
        query=list(request.query_params.multi_items()),
    )
    return _geojson(answer)


@router.get(
    "/collections/{collectionId}/items/{featureId}",
    dependencies=[FEATURE_READERS],
    summary="One feature by its code",
    response_class=Response,
    responses={
        200: {"content": {"application/geo+json": {}}},
        400: {"description": "a bad crs, or plan on a collection not drawn per plan"},
        404: {"description": "no such collection, plan or feature"},
    },
)
def get_item(
    request: Request,
    sessions: Sessions,
    settings: AppSettings,
    caller: OptionalCaller,
    collection_id: CollectionId,
    feature_id: Annotated[str, Path(alias="featureId", examples=["370102001001001"])],
    crs: CrsQuery = None,
    plan: PlanQuery = None,
) -> Response:
    """A grid (of the active plan, or `plan`), a component, a station or a boundary, by its code."""
    answer = features.item(
        sessions,
        settings,
        collection_id,
        feature_id,
        actor=caller,
        crs=crs,
        plan=plan,
        base=_base(request),
        query=list(request.query_params.multi_items()),
    )
    return _geojson(answer)
