"""Maps of plans for people: a draft's changed grids drawn over today's (folium / Leaflet).

Colours say what happens to a grid: green added, orange reshaped, red removed (today's outline, dashed).
Every grid carries its code, community and households in a tooltip, so a reviewer can read the map
without a legend lookup; the legend and the comparison's counts sit in a box in the corner.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import folium
import geopandas as gpd

CHANGE_COLOURS = {"added": "#2ca25f", "reshaped": "#f28e2b", "removed": "#d62728", "unchanged": "#7f7f7f"}
CHANGE_NAMES = {"added": "新增", "reshaped": "调整", "removed": "撤销", "unchanged": "未变"}
# Tiles from AutoNavi are what Chinese users read; they are in GCJ-02 and our grids in CGCS2000, which
# puts them 300-500 m apart, so the base map is OpenStreetMap (WGS 84, within a metre of CGCS2000).
BASE_TILES = "OpenStreetMap"


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
