"""The map pages (issue 6): their HTML, and the little data they need that no other service answers.

A page is a folium map on the service's own copy of Leaflet (gis/planmap.page_map) plus a script from
``gridsvc/api/static/gridsvc/``; everything it shows comes from the JSON endpoints and the vector tiles,
called with the API key the user signed in with. So a page itself holds no data and can be served to
anyone: without a valid key of the right role it shows a sign-in form and nothing else.

The data beside the other services: the components of a class nearest a point (the field page), and a
plan review: the comparison with the active plan plus the boxes of the changed grids, so the review map
can fit to them and highlight them in the tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.orm import Session, sessionmaker

from gis import planmap
from gridsvc.errors import FieldProblem, InvalidInputError
from gridsvc.repositories import pages as repo
from gridsvc.repositories import reference as reference_repo
from gridsvc.services import locate, plan_compare
from gridsvc.services.access import Principal
from gridsvc.settings import Settings

DISPATCHER_ROLES = ("dispatcher", "gis_staff")
REVIEW_ROLES = ("gis_staff", "dispatcher")
FIELD_ROLES = ("field", "dispatcher", "gis_staff")


class PageSettings(BaseSettings):
    """What the pages take from the environment (``GRIDSVC_BASEMAP_*``)."""

    model_config = SettingsConfigDict(env_prefix="GRIDSVC_", env_file=".env", extra="ignore")

    basemap_url: str = Field(
        default="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="XYZ template of the pages' base map; empty: no base map (the grids still show).",
    )
    basemap_attribution: str = Field(default=planmap.OSM_ATTRIBUTION, description="The base map's credit.")
    basemap_max_zoom: int = Field(default=19, ge=0, le=22, description="Deepest zoom of the base map.")


@lru_cache(maxsize=1)
def get_page_settings() -> PageSettings:
    """The process-wide page settings, read once from the environment."""
    return PageSettings()


@dataclass(frozen=True)
class PageContext:
    """Where the page lives: the URL prefix the app is mounted under (``root_path``) and the settings."""

    root: str
    settings: Settings
    pages: PageSettings

    @property
    def static(self) -> str:
        """URL of the static files."""
        return f"{self.root}/static"


def _page(
    context: PageContext,
    *,
    title: str,
    script: str,
    style: str,
    start: str,
    config: dict[str, Any],
    centre: tuple[float, float],
    zoom: int,
) -> str:
    static = context.static
    fmap = planmap.page_map(
        centre=centre,
        zoom=zoom,
        leaflet_js=f"{static}/vendor/leaflet/leaflet.js",
        leaflet_css=f"{static}/vendor/leaflet/leaflet.css",
        basemap_url=context.pages.basemap_url.strip() or None,
        basemap_attribution=context.pages.basemap_attribution,
        basemap_max_zoom=context.pages.basemap_max_zoom,
    )
    return planmap.page_html(
        fmap,
        title=title,
        scripts=[
            f"{static}/vendor/leaflet.vectorgrid/Leaflet.VectorGrid.bundled.min.js",
            f"{static}/gridsvc/common.js",
            f"{static}/gridsvc/{script}",
        ],
        styles=[f"{static}/gridsvc/pages.css", f"{static}/gridsvc/{style}"],
        body=(
            '<div id="gs-signin" class="gs-signin" hidden></div>'
            '<aside id="gs-panel" class="gs-panel" hidden></aside>'
            "<noscript>这个页面需要 JavaScript。This page needs JavaScript.</noscript>"
        ),
        config={
            "title": title,
            "root": context.root,
            "cityName": context.settings.city_name,
            "timezone": context.settings.timezone,
            "baseLayer": planmap.base_layer_name(fmap),
            **config,
        },
        start=start,
    )


def _city_view(
    sessions: sessionmaker[Session], settings: Settings
) -> tuple[list[float], tuple[float, float]]:
    with sessions() as session:
        box = repo.loaded_extent(session)
    bounds = box or list(settings.city_bbox)
    return bounds, ((bounds[1] + bounds[3]) / 2, (bounds[0] + bounds[2]) / 2)


def dispatcher_page(sessions: sessionmaker[Session], context: PageContext) -> str:
    """The dispatcher's map (/map)."""
    bounds, centre = _city_view(sessions, context.settings)
    return _page(
        context,
        title=f"{context.settings.city_name}城管调度地图",
        script="map.js",
        style="map.css",
        start="gridsvc.startDispatcherMap",
        config={"page": "map", "roles": list(DISPATCHER_ROLES), "bounds": bounds},
        centre=centre,
        zoom=12,
    )


def plan_review_page(sessions: sessionmaker[Session], context: PageContext, plan_id: int) -> str:
    """The review map of a plan (/plans/{id}/map); the plan itself is read by the page, with the key."""
    bounds, centre = _city_view(sessions, context.settings)
    return _page(
        context,
        title=f"网格方案 {plan_id} 审阅",
        script="planreview.js",
        style="planreview.css",
        start="gridsvc.startPlanReview",
        config={"page": "plan_review", "roles": list(REVIEW_ROLES), "planId": plan_id, "bounds": bounds},
        centre=centre,
        zoom=12,
    )


def field_page(sessions: sessionmaker[Session], context: PageContext) -> str:
    """The field page (/field), for a phone."""
    bounds, centre = _city_view(sessions, context.settings)
    return _page(
        context,
        title="网格查询 · 现场",
        script="field.js",
        style="field.css",
        start="gridsvc.startField",
        config={"page": "field", "roles": list(FIELD_ROLES), "bounds": bounds},
        centre=centre,
        zoom=13,
    )


def nearest_components(
    sessions: sessionmaker[Session],
    x: float,
    y: float,
    *,
    class_code: str,
    crs: str = "wgs84",
    limit: int = 5,
    within_m: float = 500.0,
    actor: Principal,
) -> dict[str, Any]:
    """The components of a class nearest a point (given in ``crs``), nearest first, geodesic metres."""
    actor.require(*FIELD_ROLES)
    lon, lat = locate.to_cgcs2000([x], [y], crs)
    with sessions() as session:
        component_class = reference_repo.get_component_class(session, class_code)
        if component_class is None:
            raise InvalidInputError(
                f"unknown component class {class_code!r}", problems=[FieldProblem("class", class_code)]
            )
        rows = repo.nearest_components(
            session, class_code, float(lon[0]), float(lat[0]), limit=limit, within_m=within_m
        )
    return {
        "point": {"lon": round(float(lon[0]), 8), "lat": round(float(lat[0]), 8), "crs": "cgcs2000"},
        "class": {"code": component_class.code, "name": component_class.name_zh},
        "within_m": within_m,
        "components": [
            {
                "code": row["code"],
                "name": row["name"],
                "class_code": row["class_code"],
                "class_name": row["class_name"],
                "status": row["status"],
                "lon": round(float(row["lon"]), 8),
                "lat": round(float(row["lat"]), 8),
                "distance_m": round(float(row["distance_m"]), 1),
            }
            for row in rows
        ],
    }


def plan_review(
    sessions: sessionmaker[Session], plan_id: int, against: int | None = None, *, actor: Principal
) -> dict[str, Any]:
    """A plan beside the active one (or ``against``): the comparison's counts, every changed grid with
    its box (the draft's shape, or today's for a removed grid) and the box of them all."""
    actor.require(*REVIEW_ROLES)
    comparison = plan_compare.compare_plan(sessions, plan_id, against, actor=actor)
    changed = comparison.changed_grids()
    with sessions() as session:
        after = repo.grid_extents(
            session, plan=plan_id, codes=changed.loc[changed["change"] != "removed", "code"].tolist()
        )
        before = repo.grid_extents(
            session,
            plan=comparison.against_plan_id,
            codes=changed.loc[changed["change"] != "added", "code"].tolist(),
        )
    grids = []
    for row in changed.itertuples(index=False):
        box = _union(after.get(row.code), before.get(row.code))
        grids.append(
            {
                "code": row.code,
                "change": row.change,
                "community_code": row.community_code,
                "households_before": _int_or_none(row.households_before),
                "households_after": _int_or_none(row.households_after),
                "bbox": box,
            }
        )
    boxes = [g["bbox"] for g in grids if g["bbox"] is not None]
    return {
        **comparison.summary(),
        "bounds": _union(*boxes) if boxes else None,
        "changed_grids": grids,
    }


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or value != value else int(value)
    except (TypeError, ValueError):
        return None


def _union(*boxes: list[float] | None) -> list[float] | None:
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return [
        min(b[0] for b in present),
        min(b[1] for b in present),
        max(b[2] for b in present),
        max(b[3] for b in present),
    ]
