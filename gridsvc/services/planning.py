"""Drawing a draft plan: unit grids cut from every community, grouped into balanced responsibility grids,
coded to the standard, checked, stored as a draft to compare and activate.

Per community, in the city's metric CRS: ``gis.unitgrids`` cuts the community by the roads and the
other departments' net polygons, merges slivers and splits large blocks; ``gis.redraw`` groups the unit
grids into contiguous, compact responsibility grids balanced by households (households of the
residential buildings inside each unit grid), following the old nets' lines; ``gis.plancodes`` gives
survivors of the active plan their old codes and new grids new numbers. Polygons are densified to 25 m
before going back to lon/lat, as everywhere (a long straight edge bows otherwise). The draft and its
quality figures are written in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import shapely
from sqlalchemy.orm import Session, sessionmaker

from gis import plancodes, redraw, unitgrids
from gis.geometry import repair_polygonal
from gridsvc.errors import FieldProblem, InvalidInputError, NotFoundError
from gridsvc.repositories import access as access_repo
from gridsvc.repositories import bulk
from gridsvc.repositories import locate as locate_repo
from gridsvc.repositories import planning as repo
from gridsvc.services.access import Principal
from gridsvc.settings import Settings

DENSIFY_M = 25.0
LONLAT_DENSIFY_DEG = 0.0002


@dataclass(frozen=True)
class DrawParams:
    """How to draw: unit grid sizes and the responsibility grids' household range."""

    max_area_m2: float = 10_000.0
    rural_max_area_m2: float = 50_000.0
    min_area_m2: float = 500.0
    households_min: int = 300
    households_max: int = 500
    net_penalty: float = 0.1
    communities: Sequence[str] = ()
    name: str = "重新划分方案"


@dataclass
class DrawReport:
    """What was drawn."""

    plan_id: int
    communities: int = 0
    unit_grids: int = 0
    responsibility_grids: int = 0
    kept_unit_grid_codes: int = 0
    copied_unit_grids: int = 0  # of the communities not drawn, copied from the active plan as they are
    quality: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON for the CLI and the API."""
        return {
            "plan_id": self.plan_id,
            "communities": self.communities,
            "unit_grids": self.unit_grids,
            "responsibility_grids": self.responsibility_grids,
            "kept_unit_grid_codes": self.kept_unit_grid_codes,
            "copied_unit_grids": self.copied_unit_grids,
            "quality": self.quality,
        }


def _transformer(settings: Settings, inverse: bool = False) -> Callable[[Any], Any]:
    source, target = ("EPSG:4490", settings.metric_crs) if not inverse else (settings.metric_crs, "EPSG:4490")
    transformer = pyproj.Transformer.from_crs(source, target, always_xy=True)

    def apply(geoms: Any) -> Any:
        if not inverse:
            # A straight lon/lat edge is a curve in metres (a 1 km edge bows about 1 cm): give it vertices
            # every ~20 m first, so what is cut in metres still lies inside the stored community.
            geoms = shapely.segmentize(geoms, LONLAT_DENSIFY_DEG)
        return shapely.transform(geoms, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))

    return apply


def _by_community(frame: pd.DataFrame, column: str = "community_code") -> dict[str, pd.DataFrame]:
    return {str(code): group for code, group in frame.groupby(column, sort=True)} if len(frame) else {}


def draw_plan(
    sessions: sessionmaker[Session],
    settings: Settings,
    params: DrawParams,
    *,
    actor: Principal,
    progress: Callable[[int, int], None] | None = None,
) -> DrawReport:
    """Draw a draft plan for the city (or some communities) and store it (see the module docstring)."""
    actor.require("gis_staff")
    _check_params(params)
    to_metric = _transformer(settings)
    to_storage = _transformer(settings, inverse=True)
    with sessions() as session:
        communities = repo.communities(session, params.communities)
        if communities.empty:
            raise NotFoundError("no community to draw: load boundaries first (gridsvc import boundaries)")
        cutters = repo.cutters(session)
        homes = repo.households(session)
        active = locate_repo.active_plan(session)
        old_units = (
            repo.plan_grids(session, active.id) if active else pd.DataFrame(columns=["community_code"])
        )
        old_owners = (
            repo.plan_responsibility_grids(session, active.id)
            if active
            else pd.DataFrame(columns=["community_code"])
        )
        ever = repo.codes_ever_used(session)
    cutter_geoms = to_metric(cutters["geometry"].to_numpy()) if len(cutters) else np.zeros(0, dtype=object)
    cutter_tree = shapely.STRtree(cutter_geoms)
    net_ids = np.where(cutters["kind"] == "net", cutters["net_polygon_id"].fillna(-1), -1).astype(np.int64)
    home_points = to_metric(homes["geometry"].to_numpy()) if len(homes) else np.zeros(0, dtype=object)
    home_tree = shapely.STRtree(home_points)
    home_counts = homes["households"].to_numpy(dtype=np.float64) if len(homes) else np.zeros(0)
    old_units_of, old_owners_of = _by_community(old_units), _by_community(old_owners)
    ever_of = {str(k): list(v["code"]) for k, v in _by_community(ever).items()}

    unit_rows: list[dict[str, Any]] = []
    owner_rows: list[dict[str, Any]] = []
    qualities: list[dict[str, Any]] = []
    kept = 0
    community_geoms = to_metric(communities["geometry"].to_numpy())
    for index, community in enumerate(communities.itertuples(index=False)):
        geom = community_geoms[index]
        rural = community.kind == "village"
        cut_index = cutter_tree.query(geom, predicate="intersects")
        parts = unitgrids.unit_grids_for_community(
            geom,
            list(cutter_geoms[cut_index]),
            unitgrids.UnitGridParams(
                max_area_m2=params.rural_max_area_m2 if rural else params.max_area_m2,
                min_area_m2=params.min_area_m2,
            ),
        )
        part_array = np.asarray(parts, dtype=object)
        households = np.zeros(len(parts))
        if len(home_points):
            pairs = home_tree.query(part_array, predicate="contains")
            np.add.at(households, pairs[0], home_counts[pairs[1]])
        nets = _net_of(part_array, cutter_geoms, cutter_tree, net_ids)
        units = redraw.CommunityUnits(
            geoms=part_array,
            loads={"households": households, "area_m2": shapely.area(part_array)},
            net_ids=nets,
        )
        redraw_params = redraw.RedrawParams(
            households_min=params.households_min,
            households_max=params.households_max,
            net_penalty=params.net_penalty,
        )
        labels = redraw.redraw_community(units, redraw_params)
        quality = dict(redraw.plan_quality(units, labels, redraw_params))
        quality.pop("groups", None)
        qualities.append({"community_code": community.code, **quality})
        owners = [shapely.union_all(part_array[labels == label]) for label in range(int(labels.max()) + 1)]
        code = str(community.code)
        old_u = old_units_of.get(code)
        old_unit_pairs = (
            list(zip(old_u["code"], to_metric(old_u["geometry"].to_numpy()), strict=True))
            if old_u is not None
            else []
        )
        old_r = old_owners_of.get(code)
        old_owner_pairs = (
            list(zip(old_r["code"], to_metric(old_r["geometry"].to_numpy()), strict=True))
            if old_r is not None
            else []
        )
        unit_codes = plancodes.code_unit_grids(
            code, part_array, old_unit_pairs, ever_used=ever_of.get(code, [])
        )
        owner_codes = plancodes.code_responsibility_grids(
            code, owners, old_owner_pairs, ever_used=ever_of.get(code, [])
        )
        kept += int(unit_codes.kept.sum())
        for label, owner in enumerate(owners):
            owner_rows.append(
                {
                    "code": owner_codes.codes[label],
                    "community_code": code,
                    "station_id": community.station_id,
                    "households": int(households[labels == label].sum()),
                    "workload": float(households[labels == label].sum()),
                    "geom": owner,
                }
            )
        for part, unit_code, label in zip(part_array, unit_codes.codes, labels.tolist(), strict=True):
            unit_rows.append(
                {
                    "code": unit_code,
                    "community_code": code,
                    "owner_code": owner_codes.codes[label],
                    "area_m2": round(float(part.area), 2),
                    "geom": part,
                }
            )
        if progress is not None:
            progress(index + 1, len(communities))
    summary = _json_safe(_summary(qualities))
    with sessions.begin() as session:
        plan_id = _store(session, params, settings, actor, unit_rows, owner_rows, summary, to_storage)
        copied = 0
        if active is not None:
            copied = repo.copy_communities_forward(
                session, from_plan=active.id, to_plan=plan_id, drawn=list(communities["code"])
            )
        access_repo.record_audit(
            session,
            actor=actor.name,
            api_key_id=actor.api_key_id,
            action="draw",
            entity="grid_plan",
            entity_id=str(plan_id),
            details={
                "communities": len(communities),
                "unit_grids": len(unit_rows),
                "copied_unit_grids": copied,
            },
        )
    return DrawReport(
        plan_id=plan_id,
        communities=len(communities),
        unit_grids=len(unit_rows),
        responsibility_grids=len(owner_rows),
        kept_unit_grid_codes=kept,
        copied_unit_grids=copied,
        quality=summary,
    )


def _check_params(params: DrawParams) -> None:
    """Refuse impossible sizes and household ranges before reading anything (the gis modules say why)."""
    try:
        for area in (params.max_area_m2, params.rural_max_area_m2):
            unitgrids.UnitGridParams(max_area_m2=area, min_area_m2=params.min_area_m2)
        redraw.RedrawParams(
            households_min=params.households_min,
            households_max=params.households_max,
            net_penalty=params.net_penalty,
        )
    except ValueError as exc:
        raise InvalidInputError(
            f"cannot draw with these parameters: {exc}", problems=[FieldProblem("params", str(exc))]
        ) from exc


def _net_of(parts: Any, cutter_geoms: Any, tree: shapely.STRtree, net_ids: Any) -> Any:
    """The old net polygon each unit grid lies in (by its representative point), -1 for none."""
    out = np.full(len(parts), -1, dtype=np.int64)
    if len(cutter_geoms) == 0:
        return out
    points = shapely.point_on_surface(parts)
    pairs = tree.query(points, predicate="within")
    for part, cutter in zip(pairs[0].tolist(), pairs[1].tolist(), strict=True):
        if net_ids[cutter] >= 0 and out[part] == -1:
            out[part] = net_ids[cutter]
    return out


def _summary(qualities: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [q["max_min_ratio"] for q in qualities if q.get("max_min_ratio") is not None]
    followed = [
        q["net_boundary_followed_share"]
        for q in qualities
        if q.get("net_boundary_followed_share") is not None
    ]
    return {
        "communities": len(qualities),
        "max_min_ratio_worst": max(ratios, default=None),
        "max_min_ratio_median": float(np.median(ratios)) if ratios else None,
        "communities_over_1_3": int(sum(r > 1.3 for r in ratios)),
        "outside_bounds": int(sum(q.get("outside_bounds", 0) for q in qualities)),
        "all_contiguous": all(q.get("all_contiguous", True) for q in qualities),
        "net_boundary_followed_share_median": float(np.median(followed)) if followed else None,
        "per_community": qualities,
    }


def _json_safe(value: Any) -> Any:
    """JSON without NaN or infinity (a community without households has no ratio): those become null."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _store(
    session: Session,
    params: DrawParams,
    settings: Settings,
    actor: Principal,
    unit_rows: list[dict[str, Any]],
    owner_rows: list[dict[str, Any]],
    summary: dict[str, Any],
    to_storage: Callable[[Any], Any],
) -> int:
    if not unit_rows:
        raise InvalidInputError("nothing was drawn: the communities produced no unit grids")
    plan_id = int(bulk.reserve_ids(session, "grid_plan", 1)[0])
    bulk.copy_frame(
        session,
        "grid_plan",
        pd.DataFrame(
            {
                "id": [plan_id],
                "name": [params.name],
                "status": ["draft"],
                "code_digits": [15],
                "parameters": [
                    json.dumps({k: v for k, v in params.__dict__.items() if k != "communities"}, default=str)
                ],
                "quality": [json.dumps(_json_safe(summary))],
                "created_by": [actor.name],
            }
        ),
    )

    def stored(geoms: list[Any]) -> Any:
        # segmentize turns a one-part MultiPolygon into a Polygon: make them multi last.
        lonlat = repair_polygonal(to_storage(shapely.segmentize(np.asarray(geoms, dtype=object), DENSIFY_M)))
        return np.asarray(
            [shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in lonlat], dtype=object
        )

    owners = pd.DataFrame(owner_rows)
    owner_ids = bulk.reserve_ids(session, "responsibility_grid", len(owners))
    bulk.copy_frame(
        session,
        "responsibility_grid",
        pd.DataFrame(
            {
                "id": owner_ids,
                "plan_id": plan_id,
                "code": owners["code"],
                "community_code": owners["community_code"],
                "station_id": pd.array(owners["station_id"], dtype="Int64"),
                "households": owners["households"].astype(np.int64),
                "workload": owners["workload"].round(3),
                "geom": bulk.ewkb_hex(stored(list(owners["geom"]))),
            }
        ),
    )
    owner_id_of = dict(zip(owners["code"], owner_ids.tolist(), strict=True))
    units = pd.DataFrame(unit_rows)
    bulk.copy_frame(
        session,
        "unit_grid",
        pd.DataFrame(
            {
                "id": bulk.reserve_ids(session, "unit_grid", len(units)),
                "plan_id": plan_id,
                "code": units["code"],
                "community_code": units["community_code"],
                "responsibility_grid_id": [owner_id_of[c] for c in units["owner_code"]],
                "area_m2": units["area_m2"],
                "geom": bulk.ewkb_hex(stored(list(units["geom"]))),
            }
        ),
    )
    return plan_id
