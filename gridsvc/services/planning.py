"""Drawing a draft plan: unit grids cut from every community, grouped into balanced responsibility grids,
coded to the standard, checked, stored as a draft to compare and activate.

Per community, in the city's metric CRS: ``gis.unitgrids`` cuts the community by the roads and the
other departments' net polygons, merges slivers and splits large blocks; ``gis.redraw`` groups the unit
grids into contiguous, compact responsibility grids balanced by workload — by default the households of
the residential buildings inside each unit grid; with weights, also current components, cases of the
last year and area — following the old nets' lines; ``gis.plancodes`` gives survivors of the active plan
their old codes and new grids new numbers (14- or 15-digit unit grid codes). Polygons are densified to
25 m before going back to lon/lat, as everywhere (a long straight edge bows otherwise). The draft and its
quality figures are written in one transaction.

A city-wide draw reads its inputs once, then forks one process per core; each draws whole communities
(they share nothing), and the results are gathered in community order, so the plan does not depend on
how many processes drew it.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyproj
import shapely
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gis import plancodes, redraw, unitgrids
from gis.geometry import drop_crumbs, repair_polygonal, to_multi
from gridsvc.errors import FieldProblem, InvalidInputError, NotFoundError
from gridsvc.repositories import access as access_repo
from gridsvc.repositories import bulk
from gridsvc.repositories import locate as locate_repo
from gridsvc.repositories import planning as repo
from gridsvc.repositories.grid_rule import analyze_grids
from gridsvc.services.access import Principal
from gridsvc.settings import Settings

DENSIFY_M = 25.0
LONLAT_DENSIFY_DEG = 0.0002
# Parts of a stored grid smaller than this are crumbs of a union or a reprojection, not places (about
# 0.01 m²; in degrees, 1e-12 deg² is about 0.012 m² at Jinan's latitude).
CRUMB_M2 = 0.01
CRUMB_DEG2 = 1e-12
# Forking pays off only when every process gets a few communities to draw.
MIN_COMMUNITIES_PER_WORKER = 8
# Grids follow these roads' lines where that costs little balance (arterial 主干道, secondary 次干道).
MAIN_ROAD_CLASSES = ("arterial", "secondary")


LOADS = redraw.LOAD_NAMES


def _default_weights() -> dict[str, float]:
    return {"households": 1.0}


@dataclass(frozen=True)
class DrawParams:
    """How to draw: unit grid sizes, the workload and its target, code width, how many processes."""

    max_area_m2: float = 10_000.0
    rural_max_area_m2: float = 50_000.0
    min_area_m2: float = 500.0
    households_min: int = 300
    households_max: int = 500
    # Workload = sum of weight * load per unit grid; loads: households, components (current ones),
    # cases (reported in the last ``cases_days`` days), area_m2.
    weights: Mapping[str, float] = field(default_factory=_default_weights)
    # With a target, a grid aims at this workload instead of the household range.
    target_workload: float | None = None
    cases_days: int = 365
    net_penalty: float = 0.1
    keep_current: bool = False
    # 14- or 15-digit unit grid codes; None: the city's setting (GRIDSVC_UNIT_GRID_CODE_DIGITS).
    code_digits: int | None = None
    communities: Sequence[str] = ()
    name: str = "重新划分方案"
    # Processes drawing communities side by side; 0: one per core when there is enough to share.
    workers: int = 0


@dataclass
class DrawReport:
    """What was drawn."""

    plan_id: int
    communities: int = 0
    unit_grids: int = 0
    responsibility_grids: int = 0
    kept_unit_grid_codes: int = 0
    copied_unit_grids: int = 0  # of the communities not drawn, copied from the active plan as they are
    seconds: dict[str, float] = field(default_factory=dict)
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
            "seconds": self.seconds,
            "quality": self.quality,
        }


def transformer(settings: Settings, inverse: bool = False) -> Callable[[Any], Any]:
    """Lon/lat (EPSG:4490) to the city's metric CRS, or back with ``inverse``, for arrays of geometries."""
    source, target = ("EPSG:4490", settings.metric_crs) if not inverse else (settings.metric_crs, "EPSG:4490")
    transformer = pyproj.Transformer.from_crs(source, target, always_xy=True)

    def apply(geoms: Any) -> Any:
        if not inverse:
            # A straight lon/lat edge is a curve in metres (a 1 km edge bows about 1 cm): give it vertices
            # every ~20 m first, so what is cut in metres still lies inside the stored community.
            geoms = shapely.segmentize(geoms, LONLAT_DENSIFY_DEG)
        return shapely.transform(geoms, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))

    return apply


def _metric_points(settings: Settings, xy: npt.NDArray[np.float64]) -> Any:
    transformer = pyproj.Transformer.from_crs("EPSG:4490", settings.metric_crs, always_xy=True)
    if len(xy) == 0:
        return np.zeros(0, dtype=object)
    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return shapely.points(np.asarray(x), np.asarray(y))


_OVERLAP_DETAIL = re.compile(r"(\S+) and (\S+) of plan \d+ overlap by (\S+) m²")


@contextmanager
def _overlaps_explained() -> Iterator[None]:
    """Say what a draft's overlapping grids mean. The database refuses them (migration 0009); most often a
    drawn community's grids overlap the grids a neighbour keeps from the active plan, because a community
    boundary imported since that plan was drawn no longer meets the neighbour's edge to edge."""
    try:
        yield
    except IntegrityError as exc:
        diag = getattr(exc.orig, "diag", None)
        found = _OVERLAP_DETAIL.search(getattr(diag, "message_detail", None) or "")
        if found is None or not str(getattr(diag, "constraint_name", "")).endswith("_no_overlap"):
            raise
        first, second, area = found.groups()
        communities = sorted({first[:12], second[:12]})
        raise InvalidInputError(
            f"the draft's grids {first} and {second} would overlap by {area} m² (tolerance 0.1 m²):"
            f" the boundaries of {' and '.join(communities)} do not meet edge to edge there (a boundary"
            " imported since the active plan was drawn, simplified or moved?). Redraw them in one draft ("
            + " ".join(f"--community {code}" for code in communities)
            + "); if they were, compare their shared edge. Nothing was stored",
            problems=[FieldProblem("overlap", f"{first} and {second}: {area} m²")],
        ) from exc


# A community the turn into metres leaves invalid is repaired when the repair changes its area by no more
# than this; beyond it, the boundary itself needs correcting.
_COMMUNITY_REPAIR_M2 = 1.0


def _metric_communities(communities: pd.DataFrame, settings: Settings) -> Any:
    """The communities in metres, valid. A boundary valid in lon/lat may cross itself once densified and
    turned into metres: a zero-width spike (a line drawn out and back, which a GEOS difference can leave
    in an imported boundary) turns into a sliver that touches itself. Such a ring is repaired (its area
    changes by a sliver); one whose repair would change its area by more than :data:`_COMMUNITY_REPAIR_M2`
    is refused, naming the community and where, rather than failing inside the cutting."""
    metric = transformer(settings)(communities["geometry"].to_numpy())
    invalid = np.flatnonzero(~shapely.is_valid(metric))
    if invalid.size == 0:  # nearly always: the validity test is the only cost
        return metric
    repaired = repair_polygonal(metric)
    for index in invalid:
        change = abs(shapely.area(repaired[index]) - shapely.area(metric[index]))
        if change > _COMMUNITY_REPAIR_M2:
            code = str(communities["code"].iloc[index])
            reason = shapely.is_valid_reason(metric[index])
            at = re.search(r"\[(\S+) (\S+)\]", reason)
            where = ""
            if at is not None:
                point = transformer(settings, inverse=True)(shapely.Point(float(at[1]), float(at[2])))
                where = f" at lon/lat ({point.x:.6f} {point.y:.6f})"
            raise InvalidInputError(
                f"community {code}'s boundary crosses itself in metres{where}"
                f" ({reason.split('[')[0].lower()}), and a repair would change its area by {change:.1f} m²:"
                " correct the boundary there and import it again (import boundaries --level community)",
                problems=[FieldProblem("community", f"{code}: {reason.split('[')[0]}{where}")],
            )
    return repaired


def _by_community(frame: pd.DataFrame, column: str = "community_code") -> dict[str, pd.DataFrame]:
    return {str(code): group for code, group in frame.groupby(column, sort=True)} if len(frame) else {}


@dataclass
class _PointLoad:
    """Points (metric) with a count each, indexed for "how many inside this unit grid"."""

    points: Any
    counts: npt.NDArray[np.float64]
    tree: shapely.STRtree

    @staticmethod
    def of(points: Any, counts: npt.NDArray[np.float64]) -> _PointLoad:
        return _PointLoad(points, counts, shapely.STRtree(points))

    def per_unit(self, units: Any) -> npt.NDArray[np.float64]:
        out = np.zeros(len(units))
        if len(self.points):
            pairs = self.tree.query(units, predicate="contains")
            np.add.at(out, pairs[0], self.counts[pairs[1]])
        return out


@dataclass
class _CityInputs:
    """Everything a community's drawing needs, read once and shared by the drawing processes."""

    params: DrawParams
    settings: Settings
    digits: Literal[2, 3]
    communities: pd.DataFrame
    community_geoms: Any
    cutter_geoms: Any
    cutter_tree: shapely.STRtree
    is_net: npt.NDArray[np.bool_]
    is_main_road: npt.NDArray[np.bool_]
    net_keys: list[tuple[int, int]]
    point_loads: dict[str, _PointLoad]
    old_units_of: dict[str, pd.DataFrame]
    old_owners_of: dict[str, pd.DataFrame]
    ever_of: dict[str, list[str]]


@dataclass
class _DrawnCommunity:
    unit_rows: list[dict[str, Any]]
    owner_rows: list[dict[str, Any]]
    quality: dict[str, Any]
    kept: int


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
    clock = _Clock()
    inputs = _read_inputs(sessions, settings, params)
    clock.lap("read")
    try:
        drawn = _draw_all(inputs, progress)
    except plancodes.CodesExhaustedError as exc:
        raise InvalidInputError(
            f"cannot code the new grids: {exc} (use 15-digit codes, or fewer grids)",
            problems=[FieldProblem("code_digits", str(exc))],
        ) from exc
    clock.lap("draw")
    unit_rows = [row for d in drawn for row in d.unit_rows]
    owner_rows = [row for d in drawn for row in d.owner_rows]
    summary = json_safe(quality_summary([d.quality for d in drawn]))
    with sessions.begin() as session, _overlaps_explained():
        plan_id = _store(session, params, inputs.digits, actor, unit_rows, owner_rows, summary)
        copied = 0
        active = locate_repo.active_plan(session)
        if active is not None:
            copied = repo.copy_communities_forward(
                session, from_plan=active.id, to_plan=plan_id, drawn=list(inputs.communities["code"])
            )
        analyze_grids(session)  # the whole draft, for compare and check to look grids up by the index
        access_repo.record_audit(
            session,
            actor=actor.name,
            api_key_id=actor.api_key_id,
            action="draw",
            entity="grid_plan",
            entity_id=str(plan_id),
            details={
                "communities": len(inputs.communities),
                "unit_grids": len(unit_rows),
                "copied_unit_grids": copied,
            },
        )
    clock.lap("store")
    return DrawReport(
        plan_id=plan_id,
        communities=len(inputs.communities),
        unit_grids=len(unit_rows),
        responsibility_grids=len(owner_rows),
        kept_unit_grid_codes=sum(d.kept for d in drawn),
        copied_unit_grids=copied,
        seconds=clock.laps,
        quality=summary,
    )


def list_plans(sessions: sessionmaker[Session], *, actor: Principal) -> list[dict[str, Any]]:
    """Every plan (drafts, the active one, retired ones), newest first, with its quality summary."""
    actor.require("gis_staff", "dispatcher")
    with sessions() as session:
        return [_plan_json(row) for row in repo.plan_rows(session)]


def plan_view(sessions: sessionmaker[Session], plan_id: int, *, actor: Principal) -> dict[str, Any]:
    """One plan: status, dates, parameters, version and the whole quality report (per community too)."""
    actor.require("gis_staff", "dispatcher")
    with sessions() as session:
        row = repo.plan_row(session, plan_id)
    if row is None:
        raise NotFoundError(f"no plan {plan_id}")
    return _plan_json(row)


def _plan_json(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("effective_from", "effective_to", "created_at"):
        out[key] = out[key].isoformat() if out[key] is not None else None
    return out


def cut_unit_grids(
    sessions: sessionmaker[Session],
    settings: Settings,
    params: DrawParams,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> gpd.GeoDataFrame:
    """The unit grids a draw would cut (EPSG:4490, no codes yet), for review before drawing; writes nothing.

    Columns: community_code, community, households (and the other weighted loads), area_m2, geometry.
    """
    _check_params(params)
    inputs = _read_inputs(sessions, settings, params, for_redraw=False)
    frames: list[pd.DataFrame] = []
    for index, community in enumerate(inputs.communities.itertuples(index=False)):
        parts = _cut(inputs, index)
        frame = pd.DataFrame({name: load for name, load in _loads(inputs, parts).items()})
        frame.insert(0, "community", community.name)
        frame.insert(0, "community_code", str(community.code))
        frame["geometry"] = parts
        frames.append(frame)
        if progress is not None:
            progress(index + 1, len(inputs.communities))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["geometry"])
    geoms = repair_polygonal(
        transformer(settings, inverse=True)(shapely.segmentize(frame["geometry"].to_numpy(), DENSIFY_M))
    )
    return gpd.GeoDataFrame(frame.drop(columns=["geometry"]), geometry=list(geoms), crs="EPSG:4490")


class _Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.start, 2)
        self.start = now


def _read_inputs(
    sessions: sessionmaker[Session], settings: Settings, params: DrawParams, *, for_redraw: bool = True
) -> _CityInputs:
    to_metric = transformer(settings)
    digits: Literal[2, 3] = 2 if (params.code_digits or settings.unit_grid_code_digits) == 14 else 3
    weighted = {name for name, weight in params.weights.items() if weight > 0}
    with sessions() as session:
        communities = repo.communities(session, params.communities)
        if communities.empty:
            raise NotFoundError("no community to draw: load boundaries first (gridsvc import boundaries)")
        missing = sorted(set(params.communities) - set(communities["code"]))
        if missing:
            raise NotFoundError(
                f"no community {', '.join(missing[:5])}",
                problems=[FieldProblem("communities", code) for code in missing[:20]],
            )
        cutters = repo.cutters(session)
        homes = repo.households(session)
        point_xy: dict[str, npt.NDArray[np.float64]] = {}
        if "components" in weighted:
            point_xy["components"] = repo.component_points(session)
        if "cases" in weighted:
            point_xy["cases"] = repo.case_points(session, days=params.cases_days)
        active = locate_repo.active_plan(session) if for_redraw else None
        empty = pd.DataFrame(columns=["community_code"])
        old_units = repo.plan_grids(session, active.id) if active else empty
        old_owners = repo.plan_responsibility_grids(session, active.id) if active else empty
        ever = repo.codes_ever_used(session) if for_redraw else empty
    cutter_geoms = to_metric(cutters["geometry"].to_numpy()) if len(cutters) else np.zeros(0, dtype=object)
    point_loads = {
        "households": _PointLoad.of(
            to_metric(homes["geometry"].to_numpy()) if len(homes) else np.zeros(0, dtype=object),
            homes["households"].to_numpy(dtype=np.float64) if len(homes) else np.zeros(0),
        )
    }
    for name, xy in point_xy.items():
        point_loads[name] = _PointLoad.of(_metric_points(settings, xy), np.ones(len(xy)))
    return _CityInputs(
        params=params,
        settings=settings,
        digits=digits,
        communities=communities,
        community_geoms=_metric_communities(communities, settings),
        cutter_geoms=cutter_geoms,
        cutter_tree=shapely.STRtree(cutter_geoms),
        is_net=(cutters["kind"] == "net").to_numpy(dtype=bool),
        is_main_road=cutters["road_class"].isin(MAIN_ROAD_CLASSES).to_numpy(dtype=bool),
        net_keys=list(
            zip(
                cutters["net_id"].fillna(-1).astype(np.int64).tolist(),
                cutters["net_polygon_id"].fillna(-1).astype(np.int64).tolist(),
                strict=True,
            )
        ),
        point_loads=point_loads,
        old_units_of=_by_community(old_units),
        old_owners_of=_by_community(old_owners),
        ever_of={str(k): list(v["code"]) for k, v in _by_community(ever).items()},
    )


# The inputs of the draw running in this process: set before the worker processes fork, so they share
# the (large) city inputs copy-on-write instead of receiving them pickled.
_SHARED: _CityInputs | None = None


def _draw_all(inputs: _CityInputs, progress: Callable[[int, int], None] | None) -> list[_DrawnCommunity]:
    global _SHARED
    total = len(inputs.communities)
    if inputs.params.workers:
        workers = inputs.params.workers
    elif total >= MIN_COMMUNITIES_PER_WORKER * 2:
        workers = os.cpu_count() or 1
    else:
        workers = 1
    workers = max(1, min(workers, total))
    drawn: list[_DrawnCommunity] = []
    if workers == 1 or "fork" not in mp.get_all_start_methods():
        for index in range(total):
            drawn.append(_draw_community(inputs, index))
            if progress is not None:
                progress(index + 1, total)
        return drawn
    _SHARED = inputs
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            # Results come back in community order whatever process drew them: the plan is the same
            # with one process or many.
            for result in pool.imap(_draw_shared, range(total), chunksize=4):
                drawn.append(result)
                if progress is not None:
                    progress(len(drawn), total)
    finally:
        _SHARED = None
    return drawn


def _draw_shared(index: int) -> _DrawnCommunity:
    assert _SHARED is not None
    return _draw_community(_SHARED, index)


def _cut(inputs: _CityInputs, index: int) -> Any:
    community = inputs.communities.iloc[index]
    geom = inputs.community_geoms[index]
    rural = community["kind"] == "village"
    cut_index = inputs.cutter_tree.query(geom, predicate="intersects")
    parts = unitgrids.unit_grids_for_community(
        geom,
        list(inputs.cutter_geoms[cut_index]),
        unitgrids.UnitGridParams(
            max_area_m2=inputs.params.rural_max_area_m2 if rural else inputs.params.max_area_m2,
            min_area_m2=inputs.params.min_area_m2,
        ),
    )
    return np.asarray(parts, dtype=object)


def _loads(inputs: _CityInputs, parts: Any) -> dict[str, npt.NDArray[np.float64]]:
    loads = {name: load.per_unit(parts) for name, load in inputs.point_loads.items()}
    loads["area_m2"] = np.asarray(shapely.area(parts), dtype=np.float64)
    return loads


def _redraw_params(params: DrawParams) -> redraw.RedrawParams:
    return redraw.RedrawParams(
        target_workload=params.target_workload,
        households_min=params.households_min,
        households_max=params.households_max,
        weights=dict(params.weights),
        net_penalty=params.net_penalty,
        keep_current=params.keep_current,
    )


def _draw_community(inputs: _CityInputs, index: int) -> _DrawnCommunity:
    """Cut, group and code one community (runs in a worker process for city-wide draws)."""
    community = inputs.communities.iloc[index]
    code = str(community["code"])
    to_metric = transformer(inputs.settings)
    part_array = _cut(inputs, index)
    loads = _loads(inputs, part_array)
    old_u = inputs.old_units_of.get(code)
    old_unit_geoms = (
        to_metric(old_u["geometry"].to_numpy()) if old_u is not None else np.zeros(0, dtype=object)
    )
    units = redraw.CommunityUnits(
        geoms=part_array,
        loads=loads,
        net_ids=_zones(inputs, index, part_array),
        current=_current_owner(part_array, old_u, old_unit_geoms) if inputs.params.keep_current else None,
    )
    redraw_params = _redraw_params(inputs.params)
    labels = redraw.redraw_community(units, redraw_params)
    quality: dict[str, Any] = dict(redraw.plan_quality(units, labels, redraw_params))
    scores = [g["polsby_popper"] for g in quality.pop("groups")]
    quality["polsby_popper_min"] = min(scores, default=None)
    quality["polsby_popper_mean"] = float(np.mean(scores)) if scores else None
    owners = [shapely.union_all(part_array[labels == label]) for label in range(int(labels.max()) + 1)]
    old_r = inputs.old_owners_of.get(code)
    old_unit_pairs = list(zip(old_u["code"], old_unit_geoms, strict=True)) if old_u is not None else []
    old_owner_pairs = (
        list(zip(old_r["code"], to_metric(old_r["geometry"].to_numpy()), strict=True))
        if old_r is not None
        else []
    )
    ever = inputs.ever_of.get(code, [])
    unit_codes = plancodes.code_unit_grids(
        code, part_array, old_unit_pairs, ever_used=ever, digits=inputs.digits
    )
    owner_codes = plancodes.code_responsibility_grids(code, owners, old_owner_pairs, ever_used=ever)
    work = redraw.workload(units, redraw_params)
    households = loads["households"]
    # Converted for storage here, in the drawing process, rather than all at once in the parent.
    to_storage = transformer(inputs.settings, inverse=True)
    owner_ewkb = _storage_ewkb(owners, to_storage)
    unit_ewkb = _storage_ewkb(part_array, to_storage)
    owner_rows = [
        {
            "code": owner_codes.codes[label],
            "community_code": code,
            "station_id": community["station_id"],
            "households": int(households[labels == label].sum()),
            "workload": float(work[labels == label].sum()),
            "ewkb": owner_ewkb[label],
        }
        for label in range(len(owners))
    ]
    unit_rows = [
        {
            "code": unit_code,
            "community_code": code,
            "owner_code": owner_codes.codes[label],
            "area_m2": round(float(part.area), 2),
            "ewkb": ewkb,
        }
        for part, unit_code, label, ewkb in zip(
            part_array, unit_codes.codes, labels.tolist(), unit_ewkb, strict=True
        )
    ]
    return _DrawnCommunity(
        unit_rows=unit_rows,
        owner_rows=owner_rows,
        quality={"community_code": code, **quality},
        kept=int(unit_codes.kept.sum()),
    )


def _current_owner(parts: Any, old_units: pd.DataFrame | None, old_geoms: Any) -> npt.NDArray[np.int64]:
    """Today's responsibility grid of each new unit grid (the one covering most of it), -1 for none."""
    out = np.full(len(parts), -1, dtype=np.int64)
    if old_units is None or len(old_units) == 0:
        return out
    owner_codes = old_units["responsibility_grid_code"].fillna("").to_numpy()
    numbering = {c: n for n, c in enumerate(sorted(set(owner_codes) - {""}))}
    tree = shapely.STRtree(old_geoms)
    pairs = tree.query(parts, predicate="intersects")
    overlap = shapely.area(shapely.intersection(parts[pairs[0]], old_geoms[pairs[1]]))
    best = np.zeros(len(parts))
    for part, old, area in zip(pairs[0].tolist(), pairs[1].tolist(), overlap.tolist(), strict=True):
        if area > best[part] and owner_codes[old]:
            best[part] = area
            out[part] = numbering[owner_codes[old]]
    return out


def _check_params(params: DrawParams) -> None:
    """Refuse impossible sizes and household ranges before reading anything (the gis modules say why)."""
    try:
        for area in (params.max_area_m2, params.rural_max_area_m2):
            unitgrids.UnitGridParams(max_area_m2=area, min_area_m2=params.min_area_m2)
        _redraw_params(params)
        if params.code_digits not in (None, 14, 15):
            raise ValueError("code_digits must be 14 or 15")
        if params.cases_days < 1:
            raise ValueError("cases_days must be at least 1")
        if params.workers < 0:
            raise ValueError("workers must be 0 (one per core) or more")
    except ValueError as exc:
        raise InvalidInputError(
            f"cannot draw with these parameters: {exc}", problems=[FieldProblem("params", str(exc))]
        ) from exc


def _zones(inputs: _CityInputs, index: int, parts: Any) -> Any:
    """Per unit grid, which side of the old nets' boundaries and the main roads it lies on."""
    geom = inputs.community_geoms[index]
    near = inputs.cutter_tree.query(geom, predicate="intersects")
    nets = near[inputs.is_net[near]]
    roads = near[inputs.is_main_road[near]]
    return unitgrids.line_zones(
        parts,
        geom,
        inputs.cutter_geoms[nets],
        [inputs.net_keys[i] for i in nets.tolist()],
        inputs.cutter_geoms[roads],
    )


def quality_summary(qualities: list[dict[str, Any]]) -> dict[str, Any]:
    """City-wide figures from the communities' quality entries (``gis.redraw.plan_quality`` without groups).

    Balance figures are over communities with more than one grid (one grid is trivially balanced);
    ``units_do_not_allow_1_3`` counts those whose proven lower bound (``ratio_bound``) is already over
    1.3, ``over_1_3_where_units_allow`` those over 1.3 although their bound is not (the search's misses,
    or a bound that is not tight).
    """
    multi = [q for q in qualities if (q.get("n_groups") or 0) > 1]
    ratios = [float(q["max_min_ratio"]) for q in multi if q.get("max_min_ratio") is not None]
    finite = [r for r in ratios if np.isfinite(r)]
    cvs = [float(q["cv"]) for q in multi if q.get("cv") is not None and np.isfinite(q["cv"])]
    compact = [float(q["polsby_popper_min"]) for q in qualities if q.get("polsby_popper_min") is not None]
    followed = [
        q["net_boundary_followed_share"]
        for q in qualities
        if q.get("net_boundary_followed_share") is not None
    ]

    def over(q: dict[str, Any], limit: float) -> bool:
        ratio = q.get("max_min_ratio")
        return ratio is None or not np.isfinite(ratio) or ratio > limit

    return {
        "communities": len(qualities),
        "multi_grid_communities": len(multi),
        "max_min_ratio_worst": max(finite, default=None),
        "max_min_ratio_median": float(np.median(finite)) if finite else None,
        "max_min_ratio_p90": float(np.quantile(finite, 0.9)) if finite else None,
        "cv_median": float(np.median(cvs)) if cvs else None,
        "communities_over_1_3": int(sum(over(q, 1.3) for q in multi)),
        "units_do_not_allow_1_3": int(sum(_bound_over(q, 1.3) for q in multi)),
        "over_1_3_where_units_allow": int(sum(over(q, 1.3) and not _bound_over(q, 1.3) for q in multi)),
        "communities_with_an_empty_grid": int(sum(r == np.inf for r in ratios)),
        "polsby_popper_min_median": float(np.median(compact)) if compact else None,
        "outside_bounds": int(sum(q.get("outside_bounds", 0) for q in qualities)),
        "all_contiguous": all(q.get("all_contiguous", True) for q in qualities),
        "all_nested": all(q.get("nested", True) for q in qualities),
        "covers_all": all(q.get("covers_all", True) for q in qualities),
        "net_boundary_followed_share_median": float(np.median(followed)) if followed else None,
        "per_community": qualities,
    }


def _bound_over(quality: dict[str, Any], limit: float) -> bool:
    """Whether a community's proven lower bound on max/min is over ``limit`` (null in JSON means infinite)."""
    if "ratio_bound" not in quality:
        return False
    bound = quality["ratio_bound"]
    return bound is None or not np.isfinite(bound) or bound > limit


def json_safe(value: Any) -> Any:
    """JSON without NaN or infinity (a community without households has no ratio): those become null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def storage_geoms(geoms: Any, to_storage: Callable[[Any], Any]) -> Any:
    """Metric polygons → MultiPolygons in lon/lat as the grid tables keep them: densified to 25 m, valid,
    without crumbs (a draw and a hand edit store grids the same way)."""
    # segmentize turns a one-part MultiPolygon into a Polygon: make them multi last.
    metric = drop_crumbs(np.asarray(geoms, dtype=object), CRUMB_M2)
    lonlat = repair_polygonal(to_storage(shapely.segmentize(metric, DENSIFY_M)))
    return to_multi(drop_crumbs(lonlat, CRUMB_DEG2))


def _storage_ewkb(geoms: Any, to_storage: Callable[[Any], Any]) -> Any:
    return bulk.ewkb_hex(storage_geoms(geoms, to_storage))


def _store(
    session: Session,
    params: DrawParams,
    digits: int,
    actor: Principal,
    unit_rows: list[dict[str, Any]],
    owner_rows: list[dict[str, Any]],
    summary: dict[str, Any],
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
                "code_digits": [12 + digits],
                "parameters": [
                    json.dumps(
                        {k: v for k, v in params.__dict__.items() if k not in ("communities", "workers")},
                        default=lambda value: dict(value) if isinstance(value, Mapping) else str(value),
                        ensure_ascii=False,
                    )
                ],
                "quality": [json.dumps(json_safe(summary))],
                "created_by": [actor.name],
            }
        ),
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
                "geom": owners["ewkb"],
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
                "geom": units["ewkb"],
            }
        ),
    )
    return plan_id
