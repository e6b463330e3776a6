"""OGC API - Features (Part 1 core + GeoJSON, Part 2 CRS by reference) over grids, components and boundaries.

So QGIS ("Add OGC API - Features layer") and other tools read the layers directly. Decisions:

- The grid collections (``responsibility_grids``, ``unit_grids``) follow the **active plan**, so a saved
  QGIS project keeps working across activations; ``plan=<id>`` on items shows another plan (a draft
  under review). Collection ids never change.
- Feature ids are codes (a grid's code is unique within its plan, a component's among current ones).
- Coordinates in the asked ``crs`` **in that CRS's axis order**, as Part 2 requires: CRS84 is lon/lat,
  EPSG:4326 and EPSG:4490 are lat/lon, the Gauss-Krüger CRSs (EPSG:4527, 4548) are northing/easting.
  ``bbox`` is read the same way in ``bbox-crs``. The answer names its CRS in ``Content-Crs``.
- Boundaries (districts, streets, communities) are open to read, like the reference data; grids,
  components and stations need a gis_staff or dispatcher key.
- Reporters' personal data are in no collection (there is no cases collection), nor are workers' phones
  or a station's staff list.
- A bad parameter value is a 400 (the standard's status), not our usual 422.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pyproj
from sqlalchemy.orm import Session, sessionmaker

from gis import crs as gcrs
from gridsvc.errors import AuthenticationError, FieldProblem, GridsvcError, NotFoundError
from gridsvc.repositories import features as repo
from gridsvc.services.access import Principal
from gridsvc.settings import Settings

GEOJSON = "application/geo+json"
JSON = "application/json"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
READ_ROLES = ("gis_staff", "dispatcher")
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
]


class InvalidParameterError(GridsvcError):
    """A query parameter OGC API Features defines has a value it cannot take: 400 by the standard."""

    title = "Bad request"


@dataclass(frozen=True)
class Collection:
    """A feature collection: id, title, description, whether anyone may read it."""

    id: str
    title: str
    description: str
    open: bool = False
    per_plan: bool = False


COLLECTIONS: dict[str, Collection] = {
    c.id: c
    for c in (
        Collection(
            "responsibility_grids",
            "Responsibility grids (责任网格)",
            "The active plan's responsibility grids (plan=<id> for another plan): worker, station, "
            "households and workload.",
            per_plan=True,
        ),
        Collection(
            "unit_grids",
            "Unit grids (单元网格)",
            "The active plan's unit grids (plan=<id> for another plan) with their responsibility grid.",
            per_plan=True,
        ),
        Collection(
            "components",
            "Urban components (部件)",
            "Current components in use, with their class, status, departments and grids.",
        ),
        Collection("stations", "Urban-management stations (城管工作站)", "One per community, public phone."),
        Collection(
            "communities", "Communities (社区/村)", "Community boundaries (12-digit codes).", open=True
        ),
        Collection("streets", "Streets and towns (街道/镇)", "Street boundaries (9-digit codes).", open=True),
        Collection("districts", "Districts (区/县)", "District boundaries (6-digit codes).", open=True),
    )
}


# --- coordinate reference systems ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputCrs:
    """A CRS features can be given in: its URI, SRID, axis order and the decimals worth writing."""

    uri: str
    srid: int
    north_first: bool
    digits: int


def _epsg(code: int) -> OutputCrs:
    crs = pyproj.CRS.from_epsg(code)
    north_first = crs.axis_info[0].direction.lower() == "north"
    # 1e-8 degree is about a millimetre; so is 1e-3 metre.
    return OutputCrs(EPSG_URI + str(code), code, north_first, 8 if crs.is_geographic else 3)


@functools.lru_cache(maxsize=8)
def supported_crs(metric_crs: str) -> tuple[OutputCrs, ...]:
    """CRS84 first (the default), then EPSG:4326, EPSG:4490 and the city's Gauss-Krüger CRS in both forms
    (CM and zone-prefixed eastings, e.g. 4548 and 4527 for Jinan)."""
    out = [OutputCrs(CRS84, 4326, False, 8), _epsg(4326), _epsg(4490)]
    zone = gcrs.gauss_kruger_zone(metric_crs)
    codes = [zone.cm_epsg, zone.zoned_epsg] if zone else [gcrs.resolve_crs(metric_crs).epsg]
    out += [_epsg(int(code)) for code in codes if code]
    return tuple(out)


_ALIASES = {"ogc:crs84": CRS84, "crs84": CRS84, "urn:ogc:def:crs:ogc:1.3:crs84": CRS84}


def parse_crs(value: str | None, settings: Settings, *, name: str = "crs") -> OutputCrs:
    """A CRS from its URI (http://www.opengis.net/def/crs/EPSG/0/4527) or EPSG:4527; 400 when unsupported."""
    supported = supported_crs(settings.metric_crs)
    if value is None or not value.strip():
        return supported[0]
    raw = value.strip().strip("[]")
    lowered = raw.lower().replace("https://", "http://")
    uri = _ALIASES.get(lowered)
    if uri is None:
        code = None
        for prefix in ("http://www.opengis.net/def/crs/epsg/0/", "epsg:", "urn:ogc:def:crs:epsg::"):
            if lowered.startswith(prefix) and lowered[len(prefix) :].isdigit():
                code = int(lowered[len(prefix) :])
        uri = EPSG_URI + str(code) if code is not None else (CRS84 if lowered == CRS84.lower() else None)
    for candidate in supported:
        if candidate.uri == uri:
            return candidate
    raise InvalidParameterError(
        f"{name} {value!r} is not supported; use one of {', '.join(c.uri for c in supported)}",
        problems=[FieldProblem(name, value)],
    )


@functools.lru_cache(maxsize=16)
def _to_storage(srid: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(srid, 4490, always_xy=True)


def parse_bbox(value: str | None, bbox_crs: OutputCrs) -> tuple[float, float, float, float] | None:
    """The storage lon/lat box of ``bbox`` given in ``bbox_crs`` (its axis order); 400 when malformed."""
    if value is None or not value.strip():
        return None
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) == 6:  # 3D boxes: drop the heights
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or any(n != n or abs(n) == float("inf") for n in numbers):
        raise InvalidParameterError(
            "bbox takes four numbers: lower corner then upper corner, in the axis order of bbox-crs",
            problems=[FieldProblem("bbox", value)],
        )
    a1, b1, a2, b2 = numbers
    if bbox_crs.north_first:
        a1, b1, a2, b2 = b1, a1, b2, a2
    if a1 > a2 or b1 > b2:
        raise InvalidParameterError(
            "bbox: the lower corner comes first", problems=[FieldProblem("bbox", value)]
        )
    if bbox_crs.srid in (4326, 4490):
        return (a1, b1, a2, b2)
    minx, miny, maxx, maxy = _to_storage(bbox_crs.srid).transform_bounds(a1, b1, a2, b2, densify_pts=21)
    return (float(minx), float(miny), float(maxx), float(maxy))


# --- documents ----------------------------------------------------------------------------------------------


def collection_of(collection_id: str) -> Collection:
    """A collection, or NotFoundError listing them."""
    found = COLLECTIONS.get(collection_id)
    if found is None:
        raise NotFoundError(
            f"no collection {collection_id!r}; the collections are {', '.join(COLLECTIONS)}",
            problems=[FieldProblem("collectionId", collection_id)],
        )
    return found


def landing(settings: Settings, *, base: str, key: list[tuple[str, str]]) -> dict[str, Any]:
    """The landing page: what this is and where everything is."""
    q = f"?{urlencode(key)}" if key else ""
    return {
        "title": f"gridsvc — {settings.city_name} urban-management layers",
        "description": "Grids, components, stations and boundaries as OGC API - Features (GeoJSON).",
        "links": [
            {"href": f"{base}/ogc{q}", "rel": "self", "type": JSON, "title": "This document"},
            {"href": f"{base}/openapi.json", "rel": "service-desc", "type": JSON, "title": "API definition"},
            {"href": f"{base}/docs", "rel": "service-doc", "type": "text/html", "title": "API documentation"},
            {
                "href": f"{base}/ogc/conformance{q}",
                "rel": "conformance",
                "type": JSON,
                "title": "Conformance",
            },
            {"href": f"{base}/ogc/collections{q}", "rel": "data", "type": JSON, "title": "Collections"},
        ],
    }


def conformance() -> dict[str, Any]:
    """The conformance classes."""
    return {"conformsTo": CONFORMANCE}


def _extent(sessions: sessionmaker[Session], settings: Settings) -> list[float]:
    with sessions() as session:
        box = repo.city_extent(session)
    return list(box if box is not None else settings.city_bbox)


def _collection_doc(
    collection: Collection, settings: Settings, extent: list[float], *, base: str, key: list[tuple[str, str]]
) -> dict[str, Any]:
    q = f"?{urlencode(key)}" if key else ""
    href = f"{base}/ogc/collections/{collection.id}"
    return {
        "id": collection.id,
        "title": collection.title,
        "description": collection.description
        + ("" if collection.open else " Needs a gis_staff or dispatcher API key."),
        "itemType": "feature",
        "extent": {"spatial": {"bbox": [extent], "crs": CRS84}},
        "crs": [c.uri for c in supported_crs(settings.metric_crs)],
        "storageCrs": EPSG_URI + "4490",
        "links": [
            {"href": href + q, "rel": "self", "type": JSON, "title": collection.title},
            {"href": f"{href}/items{q}", "rel": "items", "type": GEOJSON, "title": "Items"},
        ],
    }


def collections(
    sessions: sessionmaker[Session], settings: Settings, *, base: str, key: list[tuple[str, str]]
) -> dict[str, Any]:
    """Every collection."""
    extent = _extent(sessions, settings)
    q = f"?{urlencode(key)}" if key else ""
    return {
        "links": [
            {"href": f"{base}/ogc/collections{q}", "rel": "self", "type": JSON, "title": "Collections"}
        ],
        "collections": [
            _collection_doc(c, settings, extent, base=base, key=key) for c in COLLECTIONS.values()
        ],
    }


def collection(
    sessions: sessionmaker[Session],
    settings: Settings,
    collection_id: str,
    *,
    base: str,
    key: list[tuple[str, str]],
) -> dict[str, Any]:
    """One collection."""
    found = collection_of(collection_id)
    return _collection_doc(found, settings, _extent(sessions, settings), base=base, key=key)


def _check_reader(collection: Collection, actor: Principal | None) -> None:
    if collection.open:
        return
    if actor is None:
        raise AuthenticationError(
            f"the {collection.id} collection needs an API key (header X-API-Key or the api_key parameter)"
        )
    actor.require(*READ_ROLES)


def _plan(session: Session, collection: Collection, plan: int | None) -> int | None:
    if not collection.per_plan:
        if plan is not None:
            raise InvalidParameterError(
                f"{collection.id} is not drawn per plan", problems=[FieldProblem("plan", str(plan))]
            )
        return None
    active, known = repo.plan_ids(session)
    if plan is None:
        return active
    if plan not in known:
        raise NotFoundError(f"no plan {plan}", problems=[FieldProblem("plan", str(plan))])
    return plan


@dataclass(frozen=True)
class GeoJsonAnswer:
    """A GeoJSON document as text, and the CRS its coordinates are in (for Content-Crs)."""

    body: str
    crs: OutputCrs


def items(
    sessions: sessionmaker[Session],
    settings: Settings,
    collection_id: str,
    *,
    actor: Principal | None,
    bbox: str | None = None,
    bbox_crs: str | None = None,
    crs: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    plan: int | None = None,
    base: str,
    query: list[tuple[str, str]],
) -> GeoJsonAnswer:
    """A page of features as a GeoJSON FeatureCollection with next/prev links (``query``: the request's
    parameters besides limit and offset, which the links carry on)."""
    found = collection_of(collection_id)
    _check_reader(found, actor)
    out = parse_crs(crs, settings)
    box = parse_bbox(bbox, parse_crs(bbox_crs, settings, name="bbox-crs"))
    limit = max(1, min(limit, MAX_LIMIT))  # above the maximum: the maximum (Part 1, /req/core/fc-limit)
    if offset < 0:
        raise InvalidParameterError(
            "offset cannot be negative", problems=[FieldProblem("offset", str(offset))]
        )
    with sessions() as session:
        plan_id = _plan(session, found, plan)
        features: list[str] = []
        more = False
        matched: int | None = 0
        if not found.per_plan or plan_id is not None:
            # Counting millions of components for every page costs more than the page: only when a bbox
            # narrows it down (numberMatched is optional in the standard).
            count = found.id != "components" or box is not None
            features, more, matched = repo.items(
                session,
                found.id,
                plan_id=plan_id,
                bbox=box,
                limit=limit,
                offset=offset,
                srid=out.srid,
                north_first=out.north_first,
                digits=out.digits,
                count=count,
            )
    href = f"{base}/ogc/collections/{found.id}/items"
    links = [
        {"href": _link(href, query, limit, offset), "rel": "self", "type": GEOJSON, "title": "This page"},
        {
            "href": f"{base}/ogc/collections/{found.id}",
            "rel": "collection",
            "type": JSON,
            "title": found.title,
        },
    ]
    if more:
        links.append(
            {
                "href": _link(href, query, limit, offset + limit),
                "rel": "next",
                "type": GEOJSON,
                "title": "Next page",
            }
        )
    if offset > 0:
        links.append(
            {
                "href": _link(href, query, limit, max(0, offset - limit)),
                "rel": "prev",
                "type": GEOJSON,
                "title": "Previous page",
            }
        )
    head: dict[str, Any] = {
        "type": "FeatureCollection",
        "timeStamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "numberReturned": len(features),
        "links": links,
    }
    if matched is not None:
        head["numberMatched"] = matched
    prefix = json.dumps(head, ensure_ascii=False)[:-1]
    return GeoJsonAnswer(prefix + ', "features": [' + ",".join(features) + "]}", out)


def _link(href: str, query: list[tuple[str, str]], limit: int, offset: int) -> str:
    items = [(k, v) for k, v in query if k not in ("limit", "offset")]
    items += [("limit", str(limit)), ("offset", str(offset))]
    return f"{href}?{urlencode(items)}"


def item(
    sessions: sessionmaker[Session],
    settings: Settings,
    collection_id: str,
    feature_id: str,
    *,
    actor: Principal | None,
    crs: str | None = None,
    plan: int | None = None,
    base: str,
    query: list[tuple[str, str]],
) -> GeoJsonAnswer:
    """One feature by its code, with links to itself and its collection."""
    found = collection_of(collection_id)
    _check_reader(found, actor)
    out = parse_crs(crs, settings)
    with sessions() as session:
        plan_id = _plan(session, found, plan)
        body = repo.item(
            session,
            found.id,
            feature_id,
            plan_id=plan_id,
            srid=out.srid,
            north_first=out.north_first,
            digits=out.digits,
        )
    if body is None:
        raise NotFoundError(
            f"no feature {feature_id!r} in {found.id}", problems=[FieldProblem("featureId", feature_id)]
        )
    href = f"{base}/ogc/collections/{found.id}"
    q = f"?{urlencode(query)}" if query else ""
    links = [
        {
            "href": f"{href}/items/{quote(feature_id)}{q}",
            "rel": "self",
            "type": GEOJSON,
            "title": "This feature",
        },
        {"href": href, "rel": "collection", "type": JSON, "title": found.title},
    ]
    return GeoJsonAnswer(body[:-1] + ', "links": ' + json.dumps(links, ensure_ascii=False) + "}", out)
