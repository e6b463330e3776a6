"""Hand edits of a drawn draft: split along a line, merge neighbours, move unit grids — each checked against
the activation rules, re-scored and versioned, and every refusal leaves the database as it was.

The draft is drawn by ``services.planning.draw_plan`` from the case city (a road across it, 48 buildings of
50 households). The tests do not assume which unit grids the redraw put together: they read the layout
back (owners, and which unit grids share an edge, from PostGIS) and choose their edits from it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from gis import crs as gcrs
from gridsvc.db.engine import make_engine
from gridsvc.db.models import ResidentialBuilding, Road
from gridsvc.errors import ConflictError, InvalidInputError, PermissionDeniedError
from gridsvc.services import plan_edits, planning, plans
from gridsvc.services.access import Principal
from gridsvc.settings import Settings
from tests.conftest import scratch_database
from tests.factories import GRID_ORIGIN, add_case_city, ewkt

GIS = Principal(name="规划员甲", role="gis_staff")
OTHER = Principal(name="规划员乙", role="gis_staff")
COMMUNITY = "370102001001"
X0, Y0 = GRID_ORIGIN


def add_drawable(session: Session) -> None:
    """A road across the case city's community (about 890 m x 670 m) and 48 buildings of 50 households."""
    session.add(
        Road(
            name="经十路",
            road_class="arterial",
            geom=ewkt(f"MULTILINESTRING(({X0 - 0.001} {Y0 + 0.003}, {X0 + 0.011} {Y0 + 0.003}))"),
        )
    )
    for i in range(8):
        for j in range(6):
            session.add(
                ResidentialBuilding(
                    community_code=COMMUNITY,
                    households=50,
                    geom=ewkt(f"POINT({X0 + 0.0006 + i * 0.00125} {Y0 + 0.0005 + j * 0.001})"),
                )
            )
    session.flush()


def draw_draft(sessions: sessionmaker[Session], settings: Settings) -> int:
    """The community drawn as a draft (about 60 unit grids in 6 responsibility grids of 400 households)."""
    params = planning.DrawParams(communities=[COMMUNITY])
    return planning.draw_plan(sessions, settings, params, actor=GIS).plan_id


@pytest.fixture
def draft(case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings) -> int:
    with sessions.begin() as session:
        add_drawable(session)
    return draw_draft(sessions, test_settings)


# --- reading the plan back: the tests' own view of it, from PostGIS ---------------------------------


@dataclass
class Layout:
    """Who owns which unit grid, and which unit grids share an edge (PostGIS's ST_Relate, not gis code)."""

    owner: dict[str, str]
    touching: set[frozenset[str]]

    def units(self, grid: str) -> set[str]:
        return {u for u, g in self.owner.items() if g == grid}

    def grids(self) -> list[str]:
        return sorted(set(self.owner.values()))

    def neighbours(self, grid: str) -> set[str]:
        mine = self.units(grid)
        return {self.owner[v] for pair in self.touching for u in pair if u in mine for v in pair - {u}} - {
            grid
        }

    def pieces(self, units: set[str]) -> int:
        left, count = set(units), 0
        while left:
            count += 1
            stack = [left.pop()]
            while stack:
                u = stack.pop()
                for v in [w for w in left if frozenset((u, w)) in self.touching]:
                    left.discard(v)
                    stack.append(v)
        return count


def layout(sessions: sessionmaker[Session], plan_id: int) -> Layout:
    with sessions() as session:
        owner = dict(
            session.execute(
                text(
                    "SELECT u.code, r.code FROM unit_grid u JOIN responsibility_grid r"
                    " ON r.id = u.responsibility_grid_id WHERE u.plan_id = :p AND u.community_code = :c"
                ),
                {"p": plan_id, "c": COMMUNITY},
            ).all()
        )
        pairs = session.execute(
            text(
                # Boundaries meeting along a line (DE-9IM boundary/boundary of dimension 1): a shared edge.
                "SELECT a.code, b.code FROM unit_grid a JOIN unit_grid b ON b.plan_id = a.plan_id"
                " AND a.code < b.code AND a.geom && b.geom AND ST_Relate(a.geom, b.geom, '****1****')"
                " WHERE a.plan_id = :p"
            ),
            {"p": plan_id},
        ).all()
    return Layout(owner=owner, touching={frozenset(p) for p in pairs})


def snapshot(sessions: sessionmaker[Session], plan_id: int) -> dict[str, Any]:
    """Everything an edit writes: the plan's version and quality, grids, owners, history and audit."""
    with sessions() as session:
        one = session.execute(
            text("SELECT version, quality FROM grid_plan WHERE id = :p"), {"p": plan_id}
        ).one()
        grids = session.execute(
            text(
                "SELECT code, households, workload, md5(ST_AsEWKB(geom)) FROM responsibility_grid"
                " WHERE plan_id = :p ORDER BY code"
            ),
            {"p": plan_id},
        ).all()
        owners = session.execute(
            text("SELECT code, responsibility_grid_id FROM unit_grid WHERE plan_id = :p ORDER BY code"),
            {"p": plan_id},
        ).all()
        edits = session.execute(text("SELECT count(*) FROM plan_edit")).scalar_one()
        audits = session.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    return {"plan": tuple(one), "grids": grids, "owners": owners, "edits": edits, "audits": audits}


def assert_grids_are_unions_of_their_unit_grids(sessions: sessionmaker[Session], plan_id: int) -> None:
    with sessions() as session:
        rows = session.execute(
            text(
                """
                SELECT r.code, ST_GeometryType(r.geom), ST_NumGeometries(r.geom), ST_IsValid(r.geom),
                       ST_Area(ST_SymDifference(r.geom, ST_Union(u.geom))::geography) AS difference_m2,
                       r.households, r.workload
                FROM responsibility_grid r JOIN unit_grid u ON u.responsibility_grid_id = r.id
                WHERE r.plan_id = :p GROUP BY r.id
                """
            ),
            {"p": plan_id},
        ).all()
    for code, kind, parts, valid, difference, households, workload in rows:
        assert (kind, parts, valid) == ("ST_MultiPolygon", 1, True), code
        assert difference < 1.0, code  # densified to 25 m and back to lon/lat: millimetres, not metres
        assert float(workload) == households, code  # drawn with the default weights: households only


def households_of(sessions: sessionmaker[Session], plan_id: int) -> dict[str, int]:
    with sessions() as session:
        return dict(
            session.execute(
                text(
                    "SELECT code, households FROM responsibility_grid"
                    " WHERE plan_id = :p AND community_code = :c"
                ),
                {"p": plan_id, "c": COMMUNITY},
            ).all()
        )


def stored_quality(sessions: sessionmaker[Session], plan_id: int) -> dict[str, Any]:
    with sessions() as session:
        quality: dict[str, Any] = session.execute(
            text("SELECT quality FROM grid_plan WHERE id = :p"), {"p": plan_id}
        ).scalar_one()
    return quality


def assert_quality_matches_the_grids(
    sessions: sessionmaker[Session], plan_id: int, answer: dict[str, Any]
) -> None:
    """The community's stored quality entry is the edit's answer, and its balance is the grids' balance."""
    quality = stored_quality(sessions, plan_id)
    entry = next(q for q in quality["per_community"] if q["community_code"] == COMMUNITY)
    assert entry == answer
    households = households_of(sessions, plan_id)
    assert entry["n_groups"] == len(households)
    assert entry["max_min_ratio"] == pytest.approx(max(households.values()) / min(households.values()))
    assert quality["max_min_ratio_worst"] == entry["max_min_ratio"]  # one community drawn
    assert entry["all_contiguous"] and entry["covers_all"] and entry["nested"]


def audit_rows(sessions: sessionmaker[Session], plan_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    with sessions() as session:
        return [
            tuple(row)  # type: ignore[misc]
            for row in session.execute(
                text(
                    "SELECT action, actor, details FROM audit_log"
                    " WHERE entity = 'grid_plan' AND entity_id = :p"
                    " AND action IN ('split', 'merge', 'move') ORDER BY id"
                ),
                {"p": str(plan_id)},
            )
        ]


def northwest_grid(sessions: sessionmaker[Session], plan_id: int) -> str:
    """The grid owning the community's north-west corner."""
    with sessions() as session:
        code: str = session.execute(
            text(
                "SELECT r.code FROM unit_grid u JOIN responsibility_grid r ON r.id = u.responsibility_grid_id"
                " WHERE u.plan_id = :p AND ST_Intersects(u.geom, ST_SetSRID(ST_Point(:x, :y), 4490))"
            ),
            {"p": plan_id, "x": X0 + 0.0001, "y": Y0 + 0.0059},
        ).scalar_one()
    return code


def line_across(sessions: sessionmaker[Session], plan_id: int, grid: str) -> tuple[str, float]:
    """A west-east line across the community that splits ``grid`` cleanly: it runs through some of its unit
    grids (none near half and half), and leaves each side in one piece. WKT and its latitude."""
    with sessions() as session:
        south, north = session.execute(
            text(
                "SELECT ST_YMin(geom), ST_YMax(geom) FROM responsibility_grid"
                " WHERE plan_id = :p AND code = :g"
            ),
            {"p": plan_id, "g": grid},
        ).one()
    view = layout(sessions, plan_id)
    for step in range(20, 81, 2):
        lat = south + step / 100 * (north - south)
        areas = sides(sessions, plan_id, grid, lat)
        above = {u for u, (n, s) in areas.items() if n > s}
        below = set(areas) - above
        clear = all(abs(n - s) > 0.2 * (n + s) for n, s in areas.values())
        cut = any(min(n, s) > 1.0 for n, s in areas.values())
        if clear and cut and above and below and view.pieces(above) == view.pieces(below) == 1:
            return f"LINESTRING({X0 - 0.001} {lat}, {X0 + 0.011} {lat})", lat
    raise AssertionError(f"no west-east line splits {grid} cleanly")


def sides(
    sessions: sessionmaker[Session], plan_id: int, grid: str, lat: float
) -> dict[str, tuple[float, float]]:
    """Area (m²) of each unit grid of ``grid`` north and south of latitude ``lat`` (PostGIS as the oracle)."""
    with sessions() as session:
        rows = session.execute(
            text(
                """
                SELECT u.code,
                       ST_Area(ST_Intersection(u.geom, ST_MakeEnvelope(116, :lat, 118, 37, 4490))::geography),
                       ST_Area(ST_Intersection(u.geom, ST_MakeEnvelope(116, 36, 118, :lat, 4490))::geography)
                FROM unit_grid u JOIN responsibility_grid r ON r.id = u.responsibility_grid_id
                WHERE u.plan_id = :p AND r.code = :g
                """
            ),
            {"p": plan_id, "g": grid, "lat": lat},
        ).all()
    return {code: (north, south) for code, north, south in rows}


def next_code_after(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        codes = session.execute(
            text("SELECT code FROM responsibility_grid WHERE community_code = :c"), {"c": COMMUNITY}
        )
        highest = max(int(code[13:]) for (code,) in codes)
    return f"{COMMUNITY}R{highest + 1:02d}"


# --- split ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line_crs", ["cgcs2000", "gcj02"])
def test_split_gives_each_unit_grid_to_the_side_holding_most_of_it(
    line_crs: str, draft: int, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    grid = northwest_grid(sessions, draft)
    wkt, lat = line_across(sessions, draft, grid)
    areas = sides(sessions, draft, grid, lat)
    north = {u for u, (n, s) in areas.items() if n > s}
    south = set(areas) - north
    cut = {u for u, (n, s) in areas.items() if min(n, s) > 1.0}
    households_before = households_of(sessions, draft)
    expected_code = next_code_after(sessions)
    if line_crs == "gcj02":  # what a phone map app would send: converted at the edge
        lon, lat_ = gcrs.from_storage([X0 - 0.001, X0 + 0.011], [lat, lat], "gcj02")
        wkt = f"LINESTRING({lon[0]:.10f} {lat_[0]:.10f}, {lon[1]:.10f} {lat_[1]:.10f})"

    done = plan_edits.split_grid(
        sessions, test_settings, draft, grid, wkt, version=1, actor=GIS, crs=line_crs
    )

    kept, new = (
        (north, south)
        if sum(sum(areas[u]) for u in north) > sum(sum(areas[u]) for u in south)
        else (
            south,
            north,
        )
    )
    after = layout(sessions, draft)
    assert done.version == 2 and done.kind == "split"
    assert done.details["new_grid"] == expected_code
    assert after.units(grid) == kept and after.units(expected_code) == new
    assert set(done.details["cut_unit_grids"]) == cut and done.details["cut"] == len(cut)
    assert set(done.details["moved_unit_grids"]) == new
    assert {g["code"] for g in done.grids} == {grid, expected_code}
    households = households_of(sessions, draft)
    assert households[grid] + households[expected_code] == households_before[grid]
    assert sum(households.values()) == 2400
    assert_grids_are_unions_of_their_unit_grids(sessions, draft)
    assert_quality_matches_the_grids(sessions, draft, done.quality)
    assert done.quality["n_groups"] == 7
    with sessions() as session:
        history = session.execute(
            text("SELECT version, kind, actor, details FROM plan_edit WHERE plan_id = :p"), {"p": draft}
        ).all()
        station = session.execute(
            text("SELECT count(DISTINCT station_id) FROM responsibility_grid WHERE plan_id = :p"),
            {"p": draft},
        ).scalar_one()
    assert [(v, k, a) for v, k, a, _ in history] == [(2, "split", "规划员甲")]
    assert history[0][3]["new_grid"] == expected_code and history[0][3]["crs"] == line_crs
    assert station == 1  # the new grid answers to the community's station, like the old one
    assert [(a, who) for a, who, _ in audit_rows(sessions, draft)] == [("split", "规划员甲")]
    assert plans.check_plan(sessions, draft) == []


def test_a_line_that_does_not_divide_the_grid_is_refused_and_nothing_is_written(
    draft: int, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    grid = northwest_grid(sessions, draft)
    before = snapshot(sessions, draft)
    misses = f"LINESTRING({X0 + 0.02} {Y0}, {X0 + 0.03} {Y0 + 0.01})"
    with pytest.raises(InvalidInputError, match="does not cross the grid") as caught:
        plan_edits.split_grid(sessions, test_settings, draft, grid, misses, version=1, actor=GIS)
    assert caught.value.problems[0].field == "line"
    # Into the grid and stopping there: nothing is cut off.
    dangling = f"LINESTRING({X0 - 0.001} {Y0 + 0.0055}, {X0 + 0.0005} {Y0 + 0.0055})"
    with pytest.raises(InvalidInputError, match="does not cross the grid"):
        plan_edits.split_grid(sessions, test_settings, draft, grid, dangling, version=1, actor=GIS)
    # Across a corner only: every unit grid stays mostly on one side.
    corner = f"LINESTRING({X0 - 0.0001} {Y0 + 0.0057}, {X0 + 0.0003} {Y0 + 0.0061})"
    with pytest.raises(InvalidInputError, match="mostly on one side"):
        plan_edits.split_grid(sessions, test_settings, draft, grid, corner, version=1, actor=GIS)
    for bad, message in [
        ("POINT(117.001 36.681)", "LineString"),
        ("LINESTRING(117.001 36.681, 117.009 36.685, 117.009 36.681, 117.001 36.685)", "crosses itself"),
        ("LINESTRING(116.39 39.9, 116.41 39.91)", "outside"),  # Beijing
    ]:
        with pytest.raises(InvalidInputError, match=message):
            plan_edits.split_grid(sessions, test_settings, draft, grid, bad, version=1, actor=GIS)
    assert snapshot(sessions, draft) == before


# --- merge ------------------------------------------------------------------------------------------


def test_merge_of_neighbours_keeps_the_smaller_code_and_the_other_is_never_given_again(
    draft: int, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    before = layout(sessions, draft)
    highest = before.grids()[-1]
    partner = min(before.neighbours(highest))
    households_before = households_of(sessions, draft)
    expected_next = next_code_after(sessions)  # one after the highest: the merged-away code is not reused

    done = plan_edits.merge_grids(sessions, test_settings, draft, highest, partner, version=1, actor=GIS)

    after = layout(sessions, draft)
    assert done.version == 2 and done.details["grid"] == partner and done.details["removed_grid"] == highest
    assert highest not in after.grids()
    assert after.units(partner) == before.units(partner) | before.units(highest)
    assert set(done.details["moved_unit_grids"]) == before.units(highest)
    assert households_of(sessions, draft)[partner] == households_before[partner] + households_before[highest]
    assert [g["code"] for g in done.grids] == [partner]
    assert_grids_are_unions_of_their_unit_grids(sessions, draft)
    assert_quality_matches_the_grids(sessions, draft, done.quality)
    assert done.quality["n_groups"] == 5
    assert [a for a, _, _ in audit_rows(sessions, draft)] == ["merge"]

    # The code merged away is gone for good: the next split gets the number after it.
    grid = northwest_grid(sessions, draft)
    wkt, _lat = line_across(sessions, draft, grid)
    split = plan_edits.split_grid(sessions, test_settings, draft, grid, wkt, version=2, actor=GIS)
    assert split.details["new_grid"] == expected_next != highest
    assert plans.check_plan(sessions, draft) == []


def test_merge_of_grids_that_do_not_touch_is_refused(
    draft: int, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    view = layout(sessions, draft)
    a = view.grids()[0]
    b = next(g for g in view.grids() if g != a and g not in view.neighbours(a))
    before = snapshot(sessions, draft)
    with pytest.raises(InvalidInputError, match="do not share an edge") as caught:
        plan_edits.merge_grids(sessions, test_settings, draft, a, b, version=1, actor=GIS)
    assert caught.value.problems[0].field == "contiguity"
    with pytest.raises(InvalidInputError, match="with itself"):
        plan_edits.merge_grids(sessions, test_settings, draft, a, a, version=1, actor=GIS)
    with pytest.raises(InvalidInputError, match=f"no {COMMUNITY}R77") as unknown:
        plan_edits.merge_grids(sessions, test_settings, draft, a, f"{COMMUNITY}R77", version=1, actor=GIS)
    assert unknown.value.problems[0].field == "grid"
    assert snapshot(sessions, draft) == before


# --- move -------------------------------------------------------------------------------------------


def movable(view: Layout) -> tuple[str, str, str]:
    """A unit grid on the edge between two grids whose own grid stays in one piece without it."""
    for pair in sorted(view.touching, key=sorted):
        for unit, other in (sorted(pair), sorted(pair)[::-1]):
            source, target = view.owner[unit], view.owner[other]
            rest = view.units(source) - {unit}
            if source != target and rest and view.pieces(rest) == 1:
                return unit, source, target
    raise AssertionError("the drawn plan has no unit grid that can move")


def test_move_unit_grid_to_a_neighbouring_grid(
    draft: int, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    before = layout(sessions, draft)
    unit, source, target = movable(before)
    households_before = households_of(sessions, draft)

    done = plan_edits.move_unit_grids(sessions, test_settings, draft, [unit], target, version=1, actor=GIS)

    after = layout(sessions, draft)
    assert done.version == 2 and done.details["from"] == {unit: source}
    assert after.units(target) == before.units(target) | {unit}
    assert after.units(source) == before.units(source) - {unit}
    households = households_of(sessions, draft)
    assert households[source] + households[target] == households_before[source] + households_before[target]
    assert {g["code"] for g in done.grids} == {source, target}
    assert_grids_are_unions_of_their_unit_grids(sessions, draft)
    assert_quality_matches_the_grids(sessions, draft, done.quality)
    assert plans.check_plan(sessions, draft) == []


def test_a_move_that_leaves_a_grid_in_pieces_or_empty_is_refused(
    draft: int, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    view = layout(sessions, draft)
    unit, source, target = movable(view)
    units = view.units(source)
    # Keep two unit grids of the source that do not touch: what is left of it is two pieces.
    a, b = next(
        (a, b)
        for a in sorted(units)
        for b in sorted(units)
        if a < b and frozenset((a, b)) not in view.touching
    )
    before = snapshot(sessions, draft)
    with pytest.raises(InvalidInputError, match=f"{source} would be 2 separate pieces") as caught:
        plan_edits.move_unit_grids(
            sessions, test_settings, draft, sorted(units - {a, b}), target, version=1, actor=GIS
        )
    assert any(p.field == "contiguity" and p.location == {"code": source} for p in caught.value.problems)
    with pytest.raises(InvalidInputError, match=f"{source} would have no unit grid left"):
        plan_edits.move_unit_grids(
            sessions, test_settings, draft, sorted(units), target, version=1, actor=GIS
        )
    far = next(
        u
        for u in sorted(view.owner)
        if view.owner[u] != target and target not in view.neighbours(view.owner[u])
    )
    with pytest.raises(InvalidInputError, match=f"{target} would be 2 separate pieces"):
        plan_edits.move_unit_grids(sessions, test_settings, draft, [far], target, version=1, actor=GIS)
    with pytest.raises(InvalidInputError, match="already"):
        plan_edits.move_unit_grids(sessions, test_settings, draft, [unit], source, version=1, actor=GIS)
    with pytest.raises(InvalidInputError, match="no 370102001001999"):
        plan_edits.move_unit_grids(
            sessions, test_settings, draft, ["370102001001999"], target, version=1, actor=GIS
        )
    assert snapshot(sessions, draft) == before


def test_the_activation_rules_refuse_what_the_geometry_check_let_through(
    draft: int, sessions: sessionmaker[Session], test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rules of activation are the last word: run inside the transaction, after the change."""
    view = layout(sessions, draft)
    _unit, source, target = movable(view)
    units = view.units(source)
    a, b = next(
        (a, b)
        for a in sorted(units)
        for b in sorted(units)
        if a < b and frozenset((a, b)) not in view.touching
    )
    monkeypatch.setattr(plan_edits.planedits, "piece_counts", lambda labels, adjacency: {})
    before = snapshot(sessions, draft)
    with pytest.raises(InvalidInputError, match="rule") as caught:
        plan_edits.move_unit_grids(
            sessions, test_settings, draft, sorted(units - {a, b}), target, version=1, actor=GIS
        )
    assert ("contiguity", {"code": source}) in [(p.field, p.location) for p in caught.value.problems]
    assert snapshot(sessions, draft) == before


# --- versions, roles, status ------------------------------------------------------------------------


def test_two_editors_of_the_same_version_the_second_is_told_who_changed_what(
    draft: int, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    view = layout(sessions, draft)
    unit, _source, target = movable(view)
    a = view.grids()[0]
    b = min(view.neighbours(a))
    plan_edits.move_unit_grids(sessions, test_settings, draft, [unit], target, version=1, actor=GIS)
    before = snapshot(sessions, draft)
    with pytest.raises(ConflictError, match="version 2, your edit was made against version 1") as caught:
        plan_edits.merge_grids(sessions, test_settings, draft, a, b, version=1, actor=OTHER)
    assert f"规划员甲 moved 1 unit grid(s) to {target}" in caught.value.detail
    assert caught.value.problems[0].location == {"current_version": 2}
    assert caught.value.problems[1].location == {"version": 2, "kind": "move", "actor": "规划员甲"}
    assert snapshot(sessions, draft) == before
    with pytest.raises(InvalidInputError, match="name the plan version"):
        plan_edits.merge_grids(sessions, test_settings, draft, a, b, version=None, actor=OTHER)
    # Made against the version the plan is at, the second editor's edit goes through.
    again = plan_edits.merge_grids(sessions, test_settings, draft, a, b, version=2, actor=OTHER)
    assert again.version == 3
    history = plan_edits.plan_edit_history(
        sessions, test_settings, draft, actor=Principal(name="d", role="dispatcher")
    )
    assert history["version"] == 3 and history["status"] == "draft"
    assert [(e["version"], e["kind"], e["actor"]) for e in history["edits"]] == [
        (2, "move", "规划员甲"),
        (3, "merge", "规划员乙"),
    ]
    assert history["edits"][1]["summary"] == f"merged {max(a, b)} into {min(a, b)}"


def test_only_drafts_are_edited_and_only_by_gis_staff(
    draft: int, case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    active = case_city["plan_id"]
    before = snapshot(sessions, active)
    with pytest.raises(ConflictError, match="is active: only a draft can be edited"):
        plan_edits.merge_grids(
            sessions, test_settings, active, f"{COMMUNITY}R01", f"{COMMUNITY}R02", version=1, actor=GIS
        )
    assert snapshot(sessions, active) == before
    dispatcher = Principal(name="调度", role="dispatcher")
    with pytest.raises(PermissionDeniedError):
        plan_edits.merge_grids(
            sessions, test_settings, draft, f"{COMMUNITY}R03", f"{COMMUNITY}R04", version=1, actor=dispatcher
        )
    with pytest.raises(PermissionDeniedError):
        plan_edits.plan_edit_history(sessions, test_settings, draft, actor=Principal(name="f", role="field"))


def test_an_edited_draft_passes_the_rules_and_can_be_activated(
    draft: int, sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    grid = northwest_grid(sessions, draft)
    wkt, _lat = line_across(sessions, draft, grid)
    split = plan_edits.split_grid(sessions, test_settings, draft, grid, wkt, version=1, actor=GIS)
    view = layout(sessions, draft)
    unit, _source, target = movable(view)
    plan_edits.move_unit_grids(
        sessions, test_settings, draft, [unit], target, version=split.version, actor=GIS
    )
    view = layout(sessions, draft)
    a = split.details["new_grid"]
    merged = plan_edits.merge_grids(
        sessions, test_settings, draft, a, min(view.neighbours(a)), version=3, actor=GIS
    )
    assert merged.version == 4
    assert_grids_are_unions_of_their_unit_grids(sessions, draft)
    assert stored_quality(sessions, draft)["communities"] == 1
    assert plans.check_plan(sessions, draft) == []
    done = plans.activate_plan(sessions, draft, dt.date(2026, 12, 1), settings=test_settings, actor=GIS)
    assert done.plan_id == draft
    with pytest.raises(ConflictError, match="only a draft"):
        plan_edits.move_unit_grids(sessions, test_settings, draft, [unit], target, version=5, actor=GIS)


# --- two editors at the same moment, on a database they both see -----------------------------------


@pytest.fixture(scope="module")
def shared_draft(database_url: str, test_settings: Settings) -> Iterator[tuple[Engine, int]]:
    """A drawn draft committed to a database of its own, so two connections can race for it."""
    url = scratch_database(database_url, "gridsvc_plan_edits_race")
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions.begin() as session:
        add_case_city(session)
        add_drawable(session)
    plan_id = draw_draft(sessions, test_settings.model_copy(update={"database_url": url}))
    yield engine, plan_id
    engine.dispose()


def test_an_edit_waits_for_the_one_in_progress_and_is_then_refused(
    shared_draft: tuple[Engine, int], test_settings: Settings
) -> None:
    engine, plan_id = shared_draft
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    view = layout(sessions, plan_id)
    unit, _source, target = movable(view)
    outcome: dict[str, Any] = {}

    def second_editor() -> None:
        try:
            plan_edits.move_unit_grids(
                sessions, test_settings, plan_id, [unit], target, version=1, actor=OTHER
            )
        except ConflictError as exc:
            outcome["conflict"] = exc.detail

    # The first editor holds the plan's row (an edit in progress) while the second one starts.
    with engine.connect() as first, first.begin():
        first.execute(text("SELECT id FROM grid_plan WHERE id = :p FOR UPDATE"), {"p": plan_id})
        racer = threading.Thread(target=second_editor)
        racer.start()
        time.sleep(0.5)
        assert racer.is_alive()  # waiting for the lock, not reading a version about to change
        first.execute(
            text(
                "UPDATE grid_plan SET version = 2 WHERE id = :p;"
                " INSERT INTO plan_edit (plan_id, version, kind, actor, details)"
                ' VALUES (:p, 2, \'merge\', \'规划员甲\', \'{"grid": "x", "removed_grid": "y"}\')'
            ),
            {"p": plan_id},
        )
    racer.join(timeout=30)
    assert "规划员甲 merged y into x" in outcome["conflict"]
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM plan_edit WHERE plan_id = :p"), {"p": plan_id}).scalar()
            == 1
        )


def test_the_rule_check_can_be_limited_to_the_edited_community(
    draft: int, sessions: sessionmaker[Session]
) -> None:
    from gridsvc.repositories.plans import rule_breaks

    with sessions.begin() as session:
        session.execute(
            text("UPDATE unit_grid SET responsibility_grid_id = NULL WHERE plan_id = :p AND code = :c"),
            {"p": draft, "c": min(layout(sessions, draft).owner)},
        )
        everywhere = rule_breaks(session, draft)
        assert [b["rule"] for b in everywhere] == ["unassigned"]
        assert rule_breaks(session, draft, communities=[COMMUNITY]) == everywhere
        assert rule_breaks(session, draft, communities=["370102001002"]) == []
