"""Hand edits of a draft plan: split a responsibility grid along a drawn line, merge two neighbouring grids,
move unit grids to a neighbouring grid — each checked against the activation rules, re-scored, versioned.

A responsibility grid is a union of whole unit grids of one community (DOMAIN.md §2), so an edit only
regroups unit grids; unit grids and their codes never change. The geometry (which side of the line, shared
edges, one piece) is :mod:`gis.planedits`, in the city's metric CRS.

Split
    Each unit grid of the grid goes to the side of the line holding most of its area; the side whose unit
    grids hold more area keeps the code, the other side becomes a new grid numbered after the highest
    number the community has used — in a plan that was in force (the draw's rule,
    ``repositories.planning.codes_ever_used``), in this draft, or removed from it by a merge. The answer
    says which unit grids the line cut through (they went whole to their larger side).
Merge
    Two grids of one community that share an edge become one with the smaller code; the other code is
    gone for good (the edit's history keeps it, so no later split of the draft reuses it).
Move
    Unit grids go to a grid of their community; every grid must stay in one piece and keep a unit grid
    (to empty a grid, merge it).

Every edit is refused (422, nothing written) when it breaks a rule that held before it: first the
geometry says why in the editor's terms (the line misses the grid, the grids do not touch, a grid would
fall in two pieces), then the activation rules (``repositories.plans.rule_breaks``) are run on the
community before and after the change, inside the transaction. After the edit the changed grids get
their union of unit grids as geometry (densified to 25 m, as a draw stores them), households and
workload; the community's quality entry in the plan's ``quality`` is recomputed with ``gis.redraw``'s
figures and the plan summary with it.

Versions: an edit names the plan version it was made against. The plan row is locked (``SELECT … FOR
UPDATE``) for the whole edit, so two edits of one plan run one after the other; one made against an old
version is refused with a conflict (409) naming the edits made since — no editor silently undoes
another's work (QGIS on PostGIS: last save wins). A successful edit counts the version up by one and is
written to the plan's history (``plan_edit``) and the audit log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyproj
import shapely
from sqlalchemy.orm import Session, sessionmaker

from gis import crs as gcrs
from gis import planedits, redraw, unitgrids
from gridsvc.errors import ConflictError, FieldProblem, InvalidInputError, NotFoundError
from gridsvc.repositories import access as access_repo
from gridsvc.repositories import plan_edits as repo
from gridsvc.repositories import plans as plans_repo
from gridsvc.services import planning
from gridsvc.services.access import Principal
from gridsvc.settings import Settings

EDIT_ROLE = "gis_staff"
READ_ROLES = ("gis_staff", "dispatcher")
# A unit grid counts as cut by a split line when each side holds more than this much of it.
CUT_MIN_M2 = 1.0
DEFAULT_CASES_DAYS = 365


@dataclass(frozen=True)
class EditResult:
    """What an edit did: the plan's new version, the edit's details, the changed grids, the new quality."""

    plan_id: int
    version: int
    kind: str
    summary: str
    details: dict[str, Any]
    grids: list[dict[str, Any]]
    quality: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON for the API and the CLI."""
        return {
            "plan_id": self.plan_id,
            "version": self.version,
            "kind": self.kind,
            "summary": self.summary,
            **self.details,
            "grids": self.grids,
            "quality": self.quality,
        }


def split_grid(
    sessions: sessionmaker[Session],
    settings: Settings,
    plan_id: int,
    grid: str,
    line: str | Mapping[str, Any],
    *,
    version: int | None,
    actor: Principal,
    crs: str = "wgs84",
) -> EditResult:
    """Split responsibility grid ``grid`` of a draft along ``line`` (WKT or GeoJSON in ``crs``)."""
    actor.require(EDIT_ROLE)
    expected = _required_version(version)
    drawn = _line_to_storage(line, crs, settings)

    def change(session: Session, state: _Community) -> _Change:
        members = np.flatnonzero(state.owners == grid)
        try:
            cut = planedits.split_by_line(state.geoms[members], state.to_metric(drawn), min_cut_m2=CUT_MIN_M2)
            new_code = planedits.next_responsibility_grid_code(
                state.code, repo.responsibility_grid_codes_taken(session, state.plan_id, state.code)
            )
        except ValueError as exc:  # EditGeometryError, or no number left
            raise InvalidInputError(
                f"cannot split {grid}: {exc}", problems=[FieldProblem("line", str(exc), {"grid": grid})]
            ) from exc
        owners = state.owners.copy()
        owners[members[cut.side == 1]] = new_code
        return _Change(
            owners=owners,
            new_grid=new_code,
            new_grid_station=state.station_of[grid],
            details={
                "grid": grid,
                "new_grid": new_code,
                "line": shapely.to_wkt(drawn, rounding_precision=9),
                "crs": crs,
                "cut": int(cut.cut.sum()),
                "cut_unit_grids": [state.unit_codes[i] for i in members[cut.cut].tolist()],
                "moved_unit_grids": [state.unit_codes[i] for i in members[cut.side == 1].tolist()],
            },
        )

    return _edit(sessions, settings, plan_id, expected, actor, "split", grids=[grid], units=[], change=change)


def merge_grids(
    sessions: sessionmaker[Session],
    settings: Settings,
    plan_id: int,
    grid_a: str,
    grid_b: str,
    *,
    version: int | None,
    actor: Principal,
) -> EditResult:
    """Merge two neighbouring responsibility grids of one community of a draft; the smaller code stays."""
    actor.require(EDIT_ROLE)
    expected = _required_version(version)
    if grid_a == grid_b:
        raise InvalidInputError(
            f"cannot merge {grid_a} with itself: name two grids", problems=[FieldProblem("grids", grid_a)]
        )
    kept, removed = sorted((grid_a, grid_b))

    def change(session: Session, state: _Community) -> _Change:
        labels = state.labels(state.owners)
        shared = planedits.shared_edge_m(
            labels, state.adjacency, state.grid_codes.index(kept), state.grid_codes.index(removed)
        )
        if shared <= 0:
            message = (
                f"{kept} and {removed} do not share an edge (a corner is not enough): only neighbours merge"
            )
            raise InvalidInputError(
                f"cannot merge: {message}",
                problems=[FieldProblem("contiguity", message, {"code": f"{kept} / {removed}"})],
            )
        owners = state.owners.copy()
        moved = np.flatnonzero(owners == removed)
        owners[moved] = kept
        return _Change(
            owners=owners,
            removed_grid=removed,
            details={
                "grid": kept,
                "removed_grid": removed,
                "shared_edge_m": round(shared, 1),
                "moved_unit_grids": [state.unit_codes[i] for i in moved.tolist()],
                "removed_codes": [removed],
            },
        )

    return _edit(
        sessions, settings, plan_id, expected, actor, "merge", grids=[kept, removed], units=[], change=change
    )


def move_unit_grids(
    sessions: sessionmaker[Session],
    settings: Settings,
    plan_id: int,
    unit_grids: Sequence[str],
    to: str,
    *,
    version: int | None,
    actor: Principal,
) -> EditResult:
    """Move unit grids of a draft to the neighbouring responsibility grid ``to`` of their community."""
    actor.require(EDIT_ROLE)
    expected = _required_version(version)
    codes = list(dict.fromkeys(unit_grids))
    if not codes:
        raise InvalidInputError("name the unit grids to move", problems=[FieldProblem("unit_grids", "empty")])

    def change(session: Session, state: _Community) -> _Change:
        index = {code: i for i, code in enumerate(state.unit_codes)}
        already = [code for code in codes if state.owners[index[code]] == to]
        if already:
            raise InvalidInputError(
                f"{', '.join(already[:5])} already belong(s) to {to}",
                problems=[FieldProblem("unit_grids", f"already in {to}", {"code": c}) for c in already],
            )
        owners = state.owners.copy()
        moved = np.asarray([index[code] for code in codes], dtype=np.int64)
        sources = {code: state.owners[index[code]] for code in codes}
        owners[moved] = to
        return _Change(
            owners=owners,
            details={"grid": to, "moved_unit_grids": codes, "from": sources},
        )

    return _edit(sessions, settings, plan_id, expected, actor, "move", grids=[to], units=codes, change=change)


def plan_edit_history(
    sessions: sessionmaker[Session], settings: Settings, plan_id: int, *, actor: Principal
) -> dict[str, Any]:
    """A plan's status, version (what the next edit names) and its edits, oldest first."""
    actor.require(*READ_ROLES)
    with sessions() as session:
        plan = repo.plan_version(session, plan_id)
        if plan is None:
            raise NotFoundError(f"no plan {plan_id}")
        edits = repo.edits(session, plan_id)
    return {
        "plan_id": plan_id,
        "status": plan["status"],
        "version": int(plan["version"]),
        "edits": [_history_entry(edit, settings) for edit in edits],
    }


# --- the steps every edit shares -------------------------------------------------------------------


@dataclass
class _Community:
    """One community of the plan as the edit sees it: unit grids in metres, their grids and loads."""

    plan_id: int
    code: str
    unit_ids: npt.NDArray[np.int64]
    unit_codes: list[str]
    owners: npt.NDArray[np.object_]  # responsibility grid code of each unit grid (None: none)
    geoms: npt.NDArray[np.object_]
    units: redraw.CommunityUnits
    params: redraw.RedrawParams
    grid_ids: dict[str, int]
    station_of: dict[str, int | None]
    adjacency: redraw.Adjacency
    to_metric: Callable[[Any], Any]

    @property
    def grid_codes(self) -> list[str]:
        return sorted(self.grid_ids)

    def labels(self, owners: npt.NDArray[np.object_], codes: Sequence[str] | None = None) -> Any:
        number = {code: n for n, code in enumerate(codes if codes is not None else self.grid_codes)}
        return np.asarray([number.get(owner, -1) for owner in owners.tolist()], dtype=np.int64)


@dataclass
class _Change:
    """An edit's new grid of every unit grid, the grid it adds or removes, and its details for the history."""

    owners: npt.NDArray[np.object_]
    details: dict[str, Any]
    new_grid: str | None = None
    new_grid_station: int | None = None
    removed_grid: str | None = None


def _edit(
    sessions: sessionmaker[Session],
    settings: Settings,
    plan_id: int,
    expected: int,
    actor: Principal,
    kind: str,
    *,
    grids: Sequence[str],
    units: Sequence[str],
    change: Callable[[Session, _Community], _Change],
) -> EditResult:
    with sessions.begin() as session:
        plan = _lock_draft(session, settings, plan_id, expected)
        community = _community_of(session, plan_id, grids, units)
        state = _read_community(session, settings, plan, community)
        edit = change(session, state)
        return _apply(session, settings, plan, state, edit, kind, actor)


def _required_version(version: int | None) -> int:
    if version is None:
        raise InvalidInputError(
            "name the plan version your edit was made against (the plan's ETag, or `version` in its edits)",
            problems=[FieldProblem("version", "required")],
        )
    return int(version)


def _lock_draft(session: Session, settings: Settings, plan_id: int, expected: int) -> dict[str, Any]:
    plan = repo.plan_for_update(session, plan_id)
    if plan is None:
        raise NotFoundError(f"no plan {plan_id}")
    if plan["status"] != "draft":
        raise ConflictError(
            f"plan {plan_id} is {plan['status']}: only a draft can be edited (draw a new one to change it)",
            problems=[FieldProblem("status", plan["status"])],
        )
    current = int(plan["version"])
    if current != expected:
        since = repo.edits(session, plan_id, after_version=expected)
        told = "; ".join(
            f"{e['actor']} {_describe(e['kind'], e['details'])} "
            f"(version {e['version']}, {_local(e['created_at'], settings)})"
            for e in since
        )
        raise ConflictError(
            f"plan {plan_id} is at version {current}, your edit was made against version {expected}"
            + (f": since then {told}" if told else "")
            + f". Look at the plan again and make your edit against version {current}.",
            problems=[
                FieldProblem("version", f"the plan is at version {current}", {"current_version": current}),
                *(
                    FieldProblem(
                        "edit",
                        f"{e['actor']} {_describe(e['kind'], e['details'])}",
                        {"version": e["version"], "kind": e["kind"], "actor": e["actor"]},
                    )
                    for e in since
                ),
            ],
        )
    return plan


def _community_of(session: Session, plan_id: int, grids: Sequence[str], units: Sequence[str]) -> str:
    """The one community the named grids and unit grids belong to; 422 for unknown codes or several."""
    grid_community = repo.responsibility_grid_communities(session, plan_id, grids)
    unit_community = repo.unit_grid_communities(session, plan_id, units)
    unknown = [
        FieldProblem("grid", f"no responsibility grid {code} in plan {plan_id}", {"code": code})
        for code in grids
        if code not in grid_community
    ] + [
        FieldProblem("unit_grids", f"no unit grid {code} in plan {plan_id}", {"code": code})
        for code in units
        if code not in unit_community
    ]
    if unknown:
        raise InvalidInputError(
            f"plan {plan_id} has no {', '.join(p.location['code'] for p in unknown[:5])}", problems=unknown
        )
    communities = {*grid_community.values(), *unit_community.values()}
    if len(communities) > 1:
        codes = {**grid_community, **unit_community}
        raise InvalidInputError(
            "a responsibility grid is made of unit grids of one community: these lie in "
            f"{len(communities)} communities ({', '.join(sorted(communities))})",
            problems=[
                FieldProblem("community", community, {"code": code}) for code, community in codes.items()
            ],
        )
    return communities.pop()


def _read_community(
    session: Session, settings: Settings, plan: Mapping[str, Any], community: str
) -> _Community:
    plan_id = int(plan["id"])
    units = repo.community_unit_grids(session, plan_id, community)
    grids = repo.community_responsibility_grids(session, plan_id, community)
    to_metric = planning.transformer(settings)
    geoms = np.asarray(to_metric(units["geometry"].to_numpy()), dtype=object)
    params, cases_days = _redraw_params(plan.get("parameters"))
    weighted = {name for name, weight in params.weights.items() if weight > 0}
    homes = repo.households_near(session, plan_id, community)
    loads = {
        "households": _per_unit(
            geoms,
            to_metric(homes["geometry"].to_numpy()) if len(homes) else np.zeros(0, dtype=object),
            homes["households"].to_numpy(dtype=np.float64) if len(homes) else np.zeros(0),
        ),
        "area_m2": np.asarray(shapely.area(geoms), dtype=np.float64),
    }
    if "components" in weighted:
        loads["components"] = _per_unit(
            geoms, *_points(settings, repo.component_points_near(session, plan_id, community))
        )
    if "cases" in weighted:
        loads["cases"] = _per_unit(
            geoms, *_points(settings, repo.case_points_near(session, plan_id, community, days=cases_days))
        )
    nets = repo.net_polygons_near(session, plan_id, community)
    # The same lines a draw follows (services.planning._zones): every old net's polygons and main roads.
    boundary, roads = repo.community_and_main_roads(session, community, planning.MAIN_ROAD_CLASSES)
    return _Community(
        plan_id=plan_id,
        code=community,
        unit_ids=units["id"].to_numpy(dtype=np.int64),
        unit_codes=[str(c) for c in units["code"]],
        owners=np.asarray([c if isinstance(c, str) else None for c in units["grid_code"]], dtype=object),
        geoms=geoms,
        units=redraw.CommunityUnits(
            geoms=geoms,
            loads=loads,
            net_ids=unitgrids.line_zones(
                geoms,
                to_metric(shapely.from_wkb(boundary)),
                to_metric(nets["geometry"].to_numpy()) if len(nets) else [],
                list(zip(nets["net_id"].tolist(), nets["id"].tolist(), strict=True)) if len(nets) else [],
                to_metric(roads["geometry"].to_numpy()) if len(roads) else [],
            ),
        ),
        params=params,
        grid_ids={str(c): int(i) for c, i in zip(grids["code"], grids["id"], strict=True)},
        station_of={
            str(c): (None if s is None or s != s else int(s))
            for c, s in zip(grids["code"], grids["station_id"], strict=True)
        },
        adjacency=redraw.unit_adjacency(geoms),
        to_metric=to_metric,
    )


def _apply(
    session: Session,
    settings: Settings,
    plan: Mapping[str, Any],
    state: _Community,
    edit: _Change,
    kind: str,
    actor: Principal,
) -> EditResult:
    plan_id = int(plan["id"])
    old, new = state.owners, edit.owners
    changed = np.flatnonzero(old != new)
    if len(changed) == 0:
        raise InvalidInputError("the edit changes nothing", problems=[FieldProblem("edit", "no change")])
    codes = sorted({*state.grid_ids, *([edit.new_grid] if edit.new_grid else [])} - {edit.removed_grid})
    affected = sorted({c for c in (*old[changed].tolist(), *new[changed].tolist()) if c in codes})
    _refuse_broken_grids(state, new, codes, affected, kind)

    before = {_key(b) for b in plans_repo.rule_breaks(session, plan_id, communities=[state.code])}
    labels = state.labels(new, codes)
    work = redraw.workload(state.units, state.params)
    households = state.units.loads["households"]
    shapes = _stored_wkb(settings, [shapely.union_all(state.geoms[new == code]) for code in affected])
    figures = {
        code: (round(float(households[new == code].sum())), float(work[new == code].sum()), wkb)
        for code, wkb in zip(affected, shapes, strict=True)
    }
    grid_ids = dict(state.grid_ids)
    # The database refuses overlapping grids of a plan at the end of every statement (migration 0009), so
    # the regrouping is written in an order that never overlaps: the grid merged away goes first (its unit
    # grids wait unassigned for a moment), the grids that stay change shape together, a new grid comes last.
    if edit.removed_grid is not None:
        repo.delete_responsibility_grid(session, grid_ids.pop(edit.removed_grid))
    repo.reshape_responsibility_grids(
        session, [(grid_ids[code], *figures[code]) for code in affected if code != edit.new_grid]
    )
    if edit.new_grid is not None and edit.new_grid in figures:
        grid_households, grid_work, wkb = figures[edit.new_grid]
        grid_ids[edit.new_grid] = repo.add_responsibility_grid(
            session,
            plan_id=plan_id,
            code=edit.new_grid,
            community_code=state.code,
            station_id=edit.new_grid_station,
            households=grid_households,
            workload=grid_work,
            wkb=wkb,
        )
    for code in affected:
        gained = (new == code) & (old != code)
        if gained.any():
            repo.assign_unit_grids(session, state.unit_ids[gained].tolist(), grid_ids[code])
    session.flush()
    broken = [
        b for b in plans_repo.rule_breaks(session, plan_id, communities=[state.code]) if _key(b) not in before
    ]
    if broken:
        raise InvalidInputError(
            f"the {kind} would break {len(broken)} rule(s) of activation "
            f"(first: {broken[0]['code']}: {broken[0]['problem']}); nothing was changed",
            problems=[FieldProblem(b["rule"], b["problem"], {"code": b["code"]}) for b in broken],
        )

    scored = redraw.plan_quality(state.units, labels, state.params)
    groups = scored["groups"]
    quality = {k: v for k, v in scored.items() if k != "groups"}
    entry = planning.json_safe({"community_code": state.code, **quality})
    grids = [
        planning.json_safe(
            {
                "code": codes[g["label"]],
                "unit_grids": g["n_units"],
                "households": round(g["households"]),
                "workload": round(g["workload"], 3),
                "area_m2": round(g["area_m2"], 1),
                "polsby_popper": round(g["polsby_popper"], 4),
                "contiguous": g["contiguous"],
            }
        )
        for g in groups
        if codes[g["label"]] in affected
    ]
    details = {"community_code": state.code, **edit.details}
    version = repo.finish_edit(
        session,
        plan_id,
        quality=_with_community(plan.get("quality"), entry),
        kind=kind,
        actor=actor.name,
        details=details,
    )
    access_repo.record_audit(
        session,
        actor=actor.name,
        api_key_id=actor.api_key_id,
        action=kind,
        entity="grid_plan",
        entity_id=str(plan_id),
        details={"version": version, **details},
    )
    return EditResult(
        plan_id=plan_id,
        version=version,
        kind=kind,
        summary=_describe(kind, details),
        details=details,
        grids=grids,
        quality=entry,
    )


def _refuse_broken_grids(
    state: _Community, owners: npt.NDArray[np.object_], codes: list[str], affected: list[str], kind: str
) -> None:
    """Say in the editor's terms when a changed grid would be empty or fall apart (before any write)."""
    problems: list[FieldProblem] = []
    for code in affected:
        if not np.any(owners == code):
            problems.append(
                FieldProblem(
                    "contiguity",
                    f"{code} would have no unit grid left: merge it with a neighbour instead",
                    {"code": code},
                )
            )
    pieces = planedits.piece_counts(state.labels(owners, codes), state.adjacency)
    for label, count in pieces.items():
        code = codes[label]
        if count > 1 and code in affected:
            problems.append(
                FieldProblem(
                    "contiguity",
                    f"{code} would be {count} separate pieces: a grid's unit grids must be joined by edges",
                    {"code": code},
                )
            )
    if problems:
        raise InvalidInputError(
            f"the {kind} would break a grid: {problems[0].message}; nothing was changed", problems=problems
        )


def _key(rule_break: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(rule_break["rule"]), str(rule_break["code"]), str(rule_break["problem"]))


def _with_community(stored: Mapping[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any]:
    """The plan's quality with one community's entry replaced (or added) and the summary recomputed."""
    before = dict(stored or {})
    others = [
        q for q in before.get("per_community", []) if q.get("community_code") != entry["community_code"]
    ]
    per_community = sorted([*others, entry], key=lambda q: str(q.get("community_code")))
    summary: dict[str, Any] = planning.json_safe(planning.quality_summary(per_community))
    return {**before, **summary}


def _stored_wkb(settings: Settings, geoms: list[Any]) -> list[bytes]:
    """Metric polygons as stored: densified to 25 m, back to lon/lat, valid, MultiPolygon (as a draw does)."""
    if not geoms:
        return []
    multi = planning.storage_geoms(geoms, planning.transformer(settings, inverse=True))
    return [bytes(shapely.to_wkb(g)) for g in multi]


def _redraw_params(parameters: Mapping[str, Any] | None) -> tuple[redraw.RedrawParams, int]:
    """The scoring parameters the plan was drawn with (its ``parameters``), the defaults where none."""
    given = dict(parameters or {})
    kwargs: dict[str, Any] = {
        name: given[name]
        for name in ("households_min", "households_max", "net_penalty", "target_workload")
        if given.get(name) is not None
    }
    if isinstance(given.get("weights"), Mapping) and given["weights"]:
        kwargs["weights"] = {str(k): float(v) for k, v in given["weights"].items()}
    try:
        params = redraw.RedrawParams(**kwargs)
    except (TypeError, ValueError):
        params = redraw.RedrawParams()
    days = given.get("cases_days")
    return params, int(days) if isinstance(days, int) and days > 0 else DEFAULT_CASES_DAYS


def _per_unit(units: Any, points: Any, counts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The count of the points inside each unit grid (as the draw counts households)."""
    out = np.zeros(len(units))
    if len(points):
        pairs = shapely.STRtree(points).query(units, predicate="contains")
        np.add.at(out, pairs[0], counts[pairs[1]])
    return out


def _points(settings: Settings, xy: npt.NDArray[np.float64]) -> tuple[Any, npt.NDArray[np.float64]]:
    if len(xy) == 0:
        return np.zeros(0, dtype=object), np.zeros(0)
    transformer = pyproj.Transformer.from_crs("EPSG:4490", settings.metric_crs, always_xy=True)
    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return shapely.points(np.asarray(x), np.asarray(y)), np.ones(len(xy))


def _line_to_storage(line: str | Mapping[str, Any], crs: str, settings: Settings) -> Any:
    """The drawn line in storage lon/lat, checked: a LineString inside the city."""
    try:
        parsed = planedits.parse_line(line)
    except planedits.EditGeometryError as exc:
        raise InvalidInputError(
            f"cannot read the line: {exc}", problems=[FieldProblem("line", str(exc))]
        ) from exc
    xy = shapely.get_coordinates(parsed)
    try:
        resolved = gcrs.resolve_crs(crs)
    except gcrs.CoordinateError as exc:
        raise InvalidInputError(str(exc), problems=[FieldProblem("crs", str(exc))]) from exc
    try:
        lon, lat = gcrs.to_storage(xy[:, 0], xy[:, 1], resolved)
        gcrs.check_within(lon, lat, settings.city_bbox, what=settings.city_name)
    except gcrs.CoordinateError as exc:
        raise InvalidInputError(
            f"cannot read the line as {resolved.description}: {exc}",
            problems=[FieldProblem("line", str(exc))],
        ) from exc
    return shapely.LineString(np.column_stack([lon, lat]))


def _describe(kind: str, details: Mapping[str, Any]) -> str:
    """One line for a person: what an edit did."""
    if kind == "split":
        return (
            f"split {details.get('grid')} along a line: {len(details.get('moved_unit_grids', []))} "
            f"unit grid(s) went to the new grid {details.get('new_grid')}"
        )
    if kind == "merge":
        return f"merged {details.get('removed_grid')} into {details.get('grid')}"
    if kind == "move":
        return f"moved {len(details.get('moved_unit_grids', []))} unit grid(s) to {details.get('grid')}"
    return kind


def _local(moment: dt.datetime, settings: Settings) -> str:
    """A moment in the city's time zone, to the second (ISO 8601 with its offset)."""
    return moment.astimezone(ZoneInfo(settings.timezone)).isoformat(timespec="seconds")


def _history_entry(edit: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    return {
        "version": int(edit["version"]),
        "kind": edit["kind"],
        "actor": edit["actor"],
        "at": _local(edit["created_at"], settings),
        "summary": _describe(edit["kind"], edit["details"]),
        "details": dict(edit["details"]),
    }
