"""Maps of plans for people: a draft's changed grids drawn over today's (folium / Leaflet).

Colours say what happens to a grid: green added, orange reshaped, red removed (today's outline, dashed).
Every grid carries its code, community and households in a tooltip, so a reviewer can read the map
without a legend lookup; the legend and the comparison's counts sit in a box in the corner.

``page_map`` and ``page_html`` make the service's map pages: a folium map whose Leaflet comes from the
service's own static files (no CDN), an optional base layer, and the page's own scripts and styles.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import folium
import geopandas as gpd
from branca.element import Figure

CHANGE_COLOURS = {"added": "#2ca25f", "reshaped": "#f28e2b", "removed": "#d62728", "unchanged": "#7f7f7f"}
CHANGE_NAMES = {"added": "新增", "reshaped": "调整", "removed": "撤销", "unchanged": "未变"}
# Tiles from AutoNavi are what Chinese users read; they are in GCJ-02 and our grids in CGCS2000, which
# puts them 300-500 m apart, so the base map is OpenStreetMap (WGS 84, within a metre of CGCS2000).
BASE_TILES = "OpenStreetMap"
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'


def comparison_map(
    before: gpd.GeoDataFrame,
    after: gpd.GeoDataFrame,
    *,
    title: str,
    summary: Mapping[str, Any] | None = None,
) -> folium.Map:
    """A map of the changed grids: ``before`` (today's, dashed) under ``after`` (the draft's, filled).

    Parameters
    ----------
    before, after : GeoDataFrame
        Responsibility grids in lon/lat with columns ``code``, ``community_code``, ``households`` and
        ``change`` (added / reshaped / removed / unchanged).
    title : str
        Shown in the legend box.
    summary : mapping, optional
        The comparison's counts; ``responsibility_grids`` and the ``*_changing_owner`` figures are shown.

    Returns
    -------
    folium.Map
        Fitted to the changed grids (or centred on nothing in particular when nothing changed).
    """
    frames = [frame for frame in (before, after) if len(frame)]
    if frames:
        bounds = gpd.GeoDataFrame(
            geometry=[geom for frame in frames for geom in frame.geometry], crs="EPSG:4490"
        ).total_bounds
        centre = [(bounds[1] + bounds[3]) / 2, (bounds[0] + bounds[2]) / 2]
    else:
        bounds, centre = None, [36.65, 117.0]
    fmap = folium.Map(location=centre, zoom_start=13, tiles=BASE_TILES, control_scale=True)
    _layer(before, "今日网格 (before)", dashed=True).add_to(fmap)
    _layer(after, "草案网格 (after)", dashed=False).add_to(fmap)
    folium.LayerControl(collapsed=False).add_to(fmap)
    fmap.get_root().html.add_child(folium.Element(_legend(title, summary)))  # type: ignore[attr-defined]
    if bounds is not None:
        fmap.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    return fmap


def _layer(frame: gpd.GeoDataFrame, name: str, *, dashed: bool) -> folium.FeatureGroup:
    group = folium.FeatureGroup(name=name, show=True)
    if not len(frame):
        return group
    data = frame[["code", "community_code", "households", "change", "geometry"]].copy()
    data["households"] = data["households"].fillna(0).astype(int)
    data["change_name"] = [CHANGE_NAMES.get(c, c) for c in data["change"]]

    def style(feature: dict[str, Any]) -> dict[str, Any]:
        colour = CHANGE_COLOURS.get(feature["properties"]["change"], CHANGE_COLOURS["unchanged"])
        if dashed:
            return {"color": colour, "weight": 2, "dashArray": "6 4", "fillOpacity": 0.0}
        return {"color": colour, "weight": 2, "fillColor": colour, "fillOpacity": 0.25}

    folium.GeoJson(
        data.to_json(),
        style_function=style,
        tooltip=folium.GeoJsonTooltip(
            fields=["code", "change_name", "community_code", "households"],
            aliases=["网格编码", "变化", "社区", "户数"],
        ),
    ).add_to(group)
    return group


def _legend(title: str, summary: Mapping[str, Any] | None) -> str:
    rows = "".join(
        f'<div><span style="display:inline-block;width:12px;height:12px;background:{CHANGE_COLOURS[k]};'
        f'margin-right:6px"></span>{CHANGE_NAMES[k]} {k}</div>'
        for k in ("added", "reshaped", "removed")
    )
    figures = ""
    if summary:
        grids = summary.get("responsibility_grids", {})
        lines = [
            f"网格 新增 {grids.get('added', 0)} · 调整 {grids.get('reshaped', 0)}"
            f" · 撤销 {grids.get('removed', 0)}",
            f"部件换属 {summary.get('components_changing_owner', 0)}",
            f"在办案件换属 {summary.get('open_cases_changing_owner', 0)}",
            f"户数换属 {summary.get('households_changing_owner', 0)}",
        ]
        figures = "".join(f"<div>{html.escape(line)}</div>" for line in lines)
    return (
        '<div id="plan-legend" style="position:fixed;bottom:24px;left:24px;z-index:9999;background:white;'
        'padding:8px 12px;border:1px solid #999;border-radius:4px;font:13px sans-serif">'
        f"<b>{html.escape(title)}</b>{rows}{figures}</div>"
    )


def page_map(
    *,
    centre: Sequence[float],
    zoom: int,
    leaflet_js: str,
    leaflet_css: str,
    basemap_url: str | None,
    basemap_attribution: str = OSM_ATTRIBUTION,
    basemap_max_zoom: int = 19,
) -> folium.Map:
    """A folium map that loads Leaflet from the given URLs instead of folium's CDN defaults.

    Parameters
    ----------
    centre : (lat, lon)
        Where the map opens before the page's script fits it to its data.
    zoom : int
        The opening zoom.
    leaflet_js, leaflet_css : str
        URLs of Leaflet's script and style sheet (the service's vendored copies).
    basemap_url : str or None
        An XYZ raster template (``{z}/{x}/{y}``) for the base layer; None or empty: no base layer.
    basemap_attribution : str
        The base layer's attribution (HTML).
    basemap_max_zoom : int
        The deepest zoom the base layer has tiles for; deeper zooms scale its tiles.

    Returns
    -------
    folium.Map
        With the base layer (named ``底图``) when one is given, and nothing else.
    """
    fmap = folium.Map(
        location=list(centre), zoom_start=zoom, tiles=None, control_scale=True, max_zoom=22, zoom_control=True
    )
    # Instance lists, never the class's (folium's add_js_link would change every map): Leaflet only, the
    # pages use neither jQuery nor Bootstrap nor awesome-markers, and CI reaches no CDN.
    fmap.default_js = [("leaflet", leaflet_js)]
    fmap.default_css = [("leaflet_css", leaflet_css)]
    if basemap_url:
        folium.TileLayer(
            basemap_url,
            attr=basemap_attribution,
            name="底图",
            max_zoom=22,
            max_native_zoom=basemap_max_zoom,
            overlay=False,
            control=False,
        ).add_to(fmap)
    return fmap


def base_layer_name(fmap: folium.Map) -> str | None:
    """The JavaScript name of the map's base tile layer, if it has one."""
    for child in fmap._children.values():
        if isinstance(child, folium.TileLayer):
            return str(child.get_name())
    return None


def page_html(
    fmap: folium.Map,
    *,
    title: str,
    scripts: Sequence[str],
    styles: Sequence[str],
    body: str,
    config: Mapping[str, Any],
    start: str,
) -> str:
    """The whole page: ``fmap`` with the page's scripts and styles (after Leaflet), ``body`` beside the map
    and ``start(map, config)`` called once the document is parsed.

    ``config`` is embedded as JSON; ``start`` is the name of a global function (e.g.
    ``gridsvc.startDispatcherMap``), not code taken from a request.
    """
    fmap.default_js = [*fmap.default_js, *((f"page_js_{i}", src) for i, src in enumerate(scripts))]
    fmap.default_css = [*fmap.default_css, *((f"page_css_{i}", href) for i, href in enumerate(styles))]
    root = fmap.get_root()
    if not isinstance(root, Figure):  # a Map is always made inside a Figure
        raise TypeError("the map is not in a Figure")
    # "</script>" or "<!--" inside a string would end or break the script element: escape "<" in the JSON.
    config_json = json.dumps({**config, "mapVar": fmap.get_name()}, ensure_ascii=False).replace(
        "<", "\\u003c"
    )
    root.header.add_child(
        folium.Element(
            f"<title>{html.escape(title)}</title>\n"
            '<meta name="referrer" content="strict-origin-when-cross-origin">\n'
            '<link rel="icon" href="data:,">\n'
            f"<script>window.GRIDSVC_PAGE = {config_json};\n"
            "document.addEventListener('DOMContentLoaded', function () {\n"
            f"  {start}(window[window.GRIDSVC_PAGE.mapVar], window.GRIDSVC_PAGE);\n"
            "});</script>"
        ),
        name="gridsvc_page",
    )
    root.html.add_child(folium.Element(body), name="gridsvc_body")
    return str(root.render())
