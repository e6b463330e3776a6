"""Drawing a plan from the data: unit grids cut by roads, balanced responsibility grids, codes that
survive a second redraw, a draft that passes the activation rules."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pandas as pd
import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from gridsvc.services import plan_compare, planning, plans
from gridsvc.services.access import Principal
from gridsvc.settings import Settings
from tests.factories import GRID_ORIGIN, ewkt

GIS = Principal(name="规划员", role="gis_staff")
X0, Y0 = GRID_ORIGIN


def test_draw_a_plan_that_passes_the_rules_and_keeps_codes_on_a_redraw(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    params = planning.DrawParams(communities=["370102001001"])
    first = planning.draw_plan(sessions, test_settings, params, actor=GIS)
    assert first.unit_grids >= 50  # about 0.6 km2 in parts of at most 10,000 m2
    assert first.responsibility_grids == 6  # 2,400 households in grids of 300-500
    assert first.quality["max_min_ratio_worst"] <= 1.3
    assert first.quality["all_contiguous"]
    with sessions() as session:
        stats = session.execute(
            text(
                "SELECT max(area_m2), count(*) FILTER (WHERE NOT ST_IsValid(geom)), "
                "count(*) FILTER (WHERE code !~ '^370102001001[0-9]{3}$') FROM unit_grid WHERE plan_id = :p"
            ),
            {"p": first.plan_id},
        ).one()
        crossing = session.execute(
            text(
                # Cut in metres, stored in lon/lat: edges may wander a few millimetres off the road.
                "SELECT count(*) FROM unit_grid u, road r WHERE u.plan_id = :p "
                "AND ST_Intersects(ST_Buffer(ST_Transform(u.geom, 4548), -0.5), ST_Transform(r.geom, 4548))"
            ),
            {"p": first.plan_id},
        ).scalar_one()
    assert float(stats[0]) <= 10_000.01 and stats[1] == 0 and stats[2] == 0
    assert crossing == 0  # no unit grid straddles the road: it was cut along it
    # 1,200 households on each side of the main road: the six grids follow it rather than straddle it.
    assert first.quality["per_community"][0]["net_boundary_followed_share"] == 1.0
    assert plans.check_plan(sessions, first.plan_id) == []
    plans.activate_plan(sessions, first.plan_id, dt.date(2026, 12, 1), settings=test_settings, actor=GIS)

    again = planning.draw_plan(sessions, test_settings, params, actor=GIS)
    assert again.kept_unit_grid_codes == again.unit_grids  # same data, same grids, same codes
    with sessions() as session:
        codes = [
            set(session.execute(text("SELECT code FROM unit_grid WHERE plan_id = :p"), {"p": p}).scalars())
            for p in (first.plan_id, again.plan_id)
        ]
    assert codes[0] == codes[1]


def test_draw_needs_gis_staff_and_communities(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    with pytest.raises(PermissionDeniedError):
        planning.draw_plan(
            sessions, test_settings, planning.DrawParams(), actor=Principal(name="d", role="dispatcher")
        )
    with pytest.raises(NotFoundError):
        planning.draw_plan(
            sessions, test_settings, planning.DrawParams(communities=["999999999999"]), actor=GIS
        )


def _add_eastern_neighbour(sessions: sessionmaker[Session], plan_id: int) -> str:
    """Community 370102001002 east of the case city's, with one grid in the plan; returns its WKT."""
    from gridsvc.db.models import Community, ResponsibilityGrid, UnitGrid

    east = f"MULTIPOLYGON((({X0 + 0.010} {Y0}, {X0 + 0.012} {Y0}, {X0 + 0.012} {Y0 + 0.006}, "
    east += f"{X0 + 0.010} {Y0 + 0.006}, {X0 + 0.010} {Y0})))"
    with sessions.begin() as session:
        session.execute(
            text("UPDATE district SET geom = ST_Multi(ST_Union(geom, ST_GeomFromText(:g, 4490)))"),
            {"g": east},
        )
        session.execute(
            text("UPDATE street SET geom = ST_Multi(ST_Union(geom, ST_GeomFromText(:g, 4490)))"), {"g": east}
        )
        session.add(Community(code="370102001002", street_code="370102001", name="乙社区", geom=ewkt(east)))
        session.flush()
        owner = ResponsibilityGrid(
            plan_id=plan_id,
            code="370102001002R01",
            community_code="370102001002",
            worker_name="乙网格员",
            geom=ewkt(east),
        )
        session.add(owner)
        session.flush()
        session.add(
            UnitGrid(
                plan_id=plan_id,
                code="370102001002001",
                community_code="370102001002",
                responsibility_grid_id=owner.id,
                area_m2=1,
                geom=ewkt(east),
            )
        )
    return east


def test_a_partial_draw_copies_the_other_communities_and_a_plan_missing_one_is_refused(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    _add_eastern_neighbour(sessions, drawable["plan_id"])
    drawn = planning.draw_plan(
        sessions, test_settings, planning.DrawParams(communities=["370102001001"]), actor=GIS
    )
    assert drawn.copied_unit_grids == 1
    with sessions() as session:
        copied = session.execute(
            text(
                "SELECT u.code, r.code, r.worker_name FROM unit_grid u JOIN responsibility_grid r "
                "ON r.id = u.responsibility_grid_id "
                "WHERE u.plan_id = :p AND u.community_code = '370102001002'"
            ),
            {"p": drawn.plan_id},
        ).one()
    assert tuple(copied) == ("370102001002001", "370102001002R01", "乙网格员")
    assert plans.check_plan(sessions, drawn.plan_id) == []
    # A draft that lacks a community altogether cannot be activated.
    with sessions.begin() as session:
        session.execute(
            text("DELETE FROM unit_grid WHERE plan_id = :p AND community_code = '370102001002'"),
            {"p": drawn.plan_id},
        )
    assert {b["rule"] for b in plans.check_plan(sessions, drawn.plan_id)} == {"missing"}


def test_a_drawn_community_that_no_longer_meets_its_neighbour_is_refused_naming_both(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    """Its boundary, imported since the plan was drawn, reaches 2 m into the neighbour's grid: the drawn
    grids would overlap the grid copied forward. The database refuses that; the refusal says why and
    what to do, and no draft is stored."""
    _add_eastern_neighbour(sessions, drawable["plan_id"])
    with sessions.begin() as session:
        session.execute(
            text(
                "UPDATE community SET geom = ST_Multi(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490))"
                " WHERE code = '370102001001'"
            ),
            {"x0": X0, "y0": Y0, "x1": X0 + 0.01002, "y1": Y0 + 0.006},
        )
        plans_before = session.execute(text("SELECT count(*) FROM grid_plan")).scalar_one()
    with pytest.raises(InvalidInputError) as refused:
        planning.draw_plan(
            sessions, test_settings, planning.DrawParams(communities=["370102001001"]), actor=GIS
        )
    message = str(refused.value)
    assert re.match(
        r"the draft's grids 370102001002R01 and 370102001001R\d\d would overlap by [\d.]+ m²", message
    )
    assert "the boundaries of 370102001001 and 370102001002 do not meet edge to edge there" in message
    assert "(--community 370102001001 --community 370102001002)" in message
    assert message.endswith("Nothing was stored")
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM grid_plan")).scalar_one() == plans_before


@pytest.mark.parametrize(
    "params",
    [
        planning.DrawParams(max_area_m2=-5),
        planning.DrawParams(households_min=600, households_max=500),
    ],
)
def test_impossible_parameters_are_refused_before_anything_is_drawn(
    params: planning.DrawParams,
    drawable: dict[str, Any],
    sessions: sessionmaker[Session],
    test_settings: Settings,
) -> None:
    with sessions() as session:
        before = session.execute(text("SELECT count(*) FROM grid_plan")).scalar_one()
    with pytest.raises(InvalidInputError, match="cannot draw"):
        planning.draw_plan(sessions, test_settings, params, actor=GIS)
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM grid_plan")).scalar_one() == before


def test_many_processes_draw_the_same_plan_as_one_and_codes_can_be_14_digits(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    def shapes(plan_id: int) -> list[tuple[str, str, str]]:
        with sessions() as session:
            rows = session.execute(
                text(
                    "SELECT u.code, r.code, ST_AsText(u.geom) FROM unit_grid u JOIN responsibility_grid r "
                    "ON r.id = u.responsibility_grid_id WHERE u.plan_id = :p ORDER BY u.code"
                ),
                {"p": plan_id},
            )
            return [tuple(row) for row in rows]

    one = planning.draw_plan(
        sessions, test_settings, planning.DrawParams(communities=["370102001001"], workers=1), actor=GIS
    )
    two = planning.draw_plan(
        sessions, test_settings, planning.DrawParams(communities=["370102001001"], workers=2), actor=GIS
    )
    assert shapes(one.plan_id) == shapes(two.plan_id)
    short = planning.draw_plan(
        sessions,
        test_settings,
        planning.DrawParams(communities=["370102001001"], code_digits=14),
        actor=GIS,
    )
    with sessions() as session:
        digits, codes = session.execute(
            text(
                "SELECT p.code_digits, array_agg(DISTINCT length(u.code)) FROM grid_plan p "
                "JOIN unit_grid u ON u.plan_id = p.id WHERE p.id = :p GROUP BY p.code_digits"
            ),
            {"p": short.plan_id},
        ).one()
    assert digits == 14 and codes == [14]


def test_weights_and_a_target_workload_set_the_number_of_grids(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Area only: 0.6 km2 at a target of 150,000 m2 of workload per grid is 4 grids.
    by_area = planning.draw_plan(
        sessions,
        test_settings,
        planning.DrawParams(communities=["370102001001"], weights={"area_m2": 1.0}, target_workload=150_000),
        actor=GIS,
    )
    assert by_area.responsibility_grids == 4
    with sessions() as session:
        workloads = (
            session.execute(
                text("SELECT workload FROM responsibility_grid WHERE plan_id = :p"), {"p": by_area.plan_id}
            )
            .scalars()
            .all()
        )
        stored = session.execute(
            text("SELECT parameters FROM grid_plan WHERE id = :p"), {"p": by_area.plan_id}
        ).scalar_one()
    assert max(workloads) / min(workloads) <= 1.3
    assert stored["weights"] == {"area_m2": 1.0} and stored["target_workload"] == 150_000
    # Components count too when weighted; an unknown load is refused before anything is read.
    with_components = planning.draw_plan(
        sessions,
        test_settings,
        planning.DrawParams(communities=["370102001001"], weights={"households": 1, "components": 10}),
        actor=GIS,
    )
    assert with_components.responsibility_grids >= 1
    with pytest.raises(InvalidInputError, match="unknown load"):
        planning.draw_plan(sessions, test_settings, planning.DrawParams(weights={"people": 1.0}), actor=GIS)


def test_unit_grids_are_cut_for_review_without_writing(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    with sessions() as session:
        before = session.execute(text("SELECT count(*) FROM unit_grid")).scalar_one()
    frame = planning.cut_unit_grids(
        sessions, test_settings, planning.DrawParams(communities=["370102001001"], max_area_m2=20_000)
    )
    assert len(frame) >= 25 and frame.crs.to_epsg() == 4490
    assert frame["households"].sum() == 2400 and frame["area_m2"].max() <= 20_000.01
    assert set(frame["community_code"]) == {"370102001001"} and frame.geometry.is_valid.all()
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM unit_grid")).scalar_one() == before


def test_compare_a_draft_with_the_active_plan(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    from gridsvc.services import plan_compare

    drawn = planning.draw_plan(
        sessions, test_settings, planning.DrawParams(communities=["370102001001"]), actor=GIS
    )
    with sessions.begin() as session:
        # An open case at the first lamp, and a closed one beside it: only the open one is counted.
        for status, ref in (("dispatched", "A"), ("closed", "B")):
            session.execute(
                text(
                    "INSERT INTO case_record (request_code, kind, component_class_code, status, channel, "
                    "routing, district_code, handling_level, geom) VALUES (:code, 'component', '0118', "
                    """:status, 'patrol', '{"source": "test"}', '370102', 'community', """
                    "ST_SetSRID(ST_MakePoint(117.0025, 36.6815), 4490))"
                ),
                {"code": f"TEST-{ref}", "status": status},
            )
    comparison = plan_compare.compare_plan(sessions, drawn.plan_id, actor=GIS)
    summary = comparison.summary()
    assert summary["against_plan_id"] == drawable["plan_id"]
    grids = summary["responsibility_grids"]
    # Today's two grids are gone; the draft's six are new (none has the shape of an old one).
    assert grids == {"added": 6, "removed": 2, "reshaped": 0, "unchanged": 0}
    assert summary["unit_grids"]["added"] == drawn.unit_grids and summary["unit_grids"]["removed"] == 4
    assert summary["components_changing_owner"] == 2
    assert summary["components_changing_owner_by_class"] == {"0118": 2}
    assert summary["open_cases_changing_owner"] == 1
    assert summary["households_changing_owner"] == 2400 and summary["buildings_changing_owner"] == 48
    assert summary["stations_changing_grids"] == 1
    station = comparison.stations[0]
    assert len(station["grids_after"]) == 6 and station["households_after"] == 2400

    body = comparison.to_dict(limit=1)
    assert len(body["components"]) == 1 and body["components_changing_owner"] == 2
    component = body["components"][0]
    assert component["code"] == "3701020118000001" and component["before"] != component["after"]
    csv = comparison.to_csv()
    assert csv.startswith("\ufeff".encode())
    lines = csv.decode("utf-8-sig").splitlines()
    assert lines[0] == "kind,code,community_code,detail,before,after,change,households"
    kinds = [line.split(",")[0] for line in lines[1:]]
    assert kinds.count("responsibility_grid") == 8 and kinds.count("component") == 2
    assert kinds.count("open_case") == 1 and kinds.count("building") == 48 and kinds.count("station") == 1
    page = plan_compare.comparison_map_html(sessions, comparison, actor=GIS)
    assert "plan-legend" in page and "新增" in page
    assert "370102001001R01" in page  # today's removed grid, dashed under the new ones

    # The active plan against itself is refused; so is a plan that does not exist.
    with pytest.raises(InvalidInputError, match="itself"):
        plan_compare.compare_plan(sessions, drawable["plan_id"], actor=GIS)
    with pytest.raises(NotFoundError):
        plan_compare.compare_plan(sessions, 999_999, actor=GIS)
    with pytest.raises(PermissionDeniedError):
        plan_compare.compare_plan(sessions, drawn.plan_id, actor=Principal(name="f", role="field"))


def test_compare_sees_grids_copied_forward_as_unchanged(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    from gridsvc.services import plan_compare

    first = planning.draw_plan(
        sessions, test_settings, planning.DrawParams(communities=["370102001001"]), actor=GIS
    )
    plans.activate_plan(sessions, first.plan_id, dt.date(2026, 12, 1), settings=test_settings, actor=GIS)
    again = planning.draw_plan(
        sessions, test_settings, planning.DrawParams(communities=["370102001001"]), actor=GIS
    )
    summary = plan_compare.compare_plan(sessions, again.plan_id, actor=GIS).summary()
    assert summary["responsibility_grids"] == {"added": 0, "removed": 0, "reshaped": 0, "unchanged": 6}
    assert summary["components_changing_owner"] == 0 and summary["households_changing_owner"] == 0
    assert summary["stations_changing_grids"] == 0


def test_keep_current_keeps_a_balanced_plan_as_it_is(
    drawable: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    from gridsvc.services import plan_compare

    first = planning.draw_plan(
        sessions, test_settings, planning.DrawParams(communities=["370102001001"]), actor=GIS
    )
    plans.activate_plan(sessions, first.plan_id, dt.date(2026, 12, 1), settings=test_settings, actor=GIS)
    # Other parameters (no main-road penalty) could group the units differently; keep_current keeps
    # today's grids because they are already balanced and in the household range.
    kept = planning.draw_plan(
        sessions,
        test_settings,
        planning.DrawParams(communities=["370102001001"], keep_current=True, net_penalty=0.0),
        actor=GIS,
    )
    summary = plan_compare.compare_plan(sessions, kept.plan_id, actor=GIS).summary()
    assert summary["responsibility_grids"]["unchanged"] == first.responsibility_grids
    assert summary["households_changing_owner"] == 0


def test_a_drawn_draft_is_looked_up_by_the_spatial_index_not_walked_in_code_order(
    demo_sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    """A draft of one community copies the city's other grids forward after the drawn ones were counted: the
    planner, told the new plan holds a few dozen grids, walked them in code order (the (plan_id, code)
    index, for ORDER BY code LIMIT 1) testing each against every component. Activating such a draft on the
    small demo took 6 minutes; the grid tables are analyzed once the draft is whole, and at activation."""
    from gridsvc.repositories.grid_rule import GridRule, unit_grid_of

    with demo_sessions() as session:
        community = session.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar_one()
    drawn = planning.draw_plan(
        demo_sessions, test_settings, planning.DrawParams(communities=[community]), actor=GIS
    )
    assert drawn.copied_unit_grids > 10_000
    rule = GridRule(plan_id=drawn.plan_id, nearest_m=100, metric_srid=4548)
    lookup = "SELECT g.unit_grid_id FROM component c " + unit_grid_of("c.geom") + " WHERE c.valid_to IS NULL"
    with demo_sessions() as session:
        explained = "\n".join(r[0] for r in session.execute(text("EXPLAIN " + lookup), rule.params()))
    assert "uq_unit_grid_plan_code" not in explained and "idx_unit_grid_geom" in explained, explained


def test_compare_lists_exactly_the_owner_changes_activation_then_makes(
    demo_sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    """A community shrunk by 25 m and redrawn leaves a ring of components in no draft grid: activation gives
    them the nearest grid (often the next community's), and a component on an edge the smallest code. The
    comparison looked only inside the changed community's grids, so it said such components would lose
    their grid, named wrong "before" grids on edges, and missed void ones. It now asks the same rule."""
    from gridsvc.repositories.grid_rule import unit_grid_of
    from gridsvc.repositories.plans import regrid_components
    from gridsvc.services.imports import grid_rule

    with demo_sessions.begin() as session:
        community = session.execute(
            text(
                "SELECT c.code FROM community c JOIN component k ON ST_Intersects(c.geom, k.geom)"
                " WHERE k.valid_to IS NULL GROUP BY c.code ORDER BY count(*) DESC, c.code LIMIT 1"
            )
        ).scalar_one()
        session.execute(
            text(
                "UPDATE community SET geom = ST_Multi(ST_Transform(ST_Buffer(ST_Transform(geom, 4548), -25),"
                " 4490)) WHERE code = :c"
            ),
            {"c": community},
        )
        # A component marked void keeps a grid, and activation gives it the new one too.
        session.execute(
            text(
                "UPDATE component SET in_use = false WHERE id = (SELECT k.id FROM component k"
                " JOIN community c ON ST_Intersects(c.geom, k.geom)"
                " WHERE c.code = :c AND k.valid_to IS NULL ORDER BY k.code LIMIT 1)"
            ),
            {"c": community},
        )
    drawn = planning.draw_plan(
        demo_sessions, test_settings, planning.DrawParams(communities=[community]), actor=GIS
    )
    comparison = plan_compare.compare_plan(demo_sessions, drawn.plan_id, actor=GIS, settings=test_settings)
    owners = (
        "SELECT c.code, r.code FROM component c"
        " LEFT JOIN responsibility_grid r ON r.id = c.responsibility_grid_id WHERE c.valid_to IS NULL"
    )
    with demo_sessions() as session:
        before = dict(session.execute(text(owners)).all())
    # What activation then does to the components: its statement, rolled back. (The demo's own plan breaks
    # rules the draft copies forward, so activating it is refused; see test_plans for activation itself.)
    rule = grid_rule(drawn.plan_id, test_settings)
    with demo_sessions() as session:
        regrid_components(session, rule)
        after = dict(session.execute(text(owners)).all())
        session.rollback()
    # Activation asks the rule from the grids' side (unit_grids_at); one lookup per component
    # (unit_grid_of, what imports and the case loop ask) must give every component the same grid.
    with demo_sessions() as session:
        one_by_one = session.execute(
            text(
                "SELECT c.code, r.code FROM component c"
                f" {unit_grid_of('c.geom')}"
                " LEFT JOIN responsibility_grid r ON r.id = g.responsibility_grid_id WHERE c.valid_to IS NULL"
            ),
            rule.params(),
        ).all()
    assert dict(one_by_one) == after
    changed = {code: (before[code], after[code]) for code in after if before[code] != after[code]}
    listed = {row.code: (row.before, row.after) for row in comparison.components.itertuples()}
    assert listed == changed
    ring = [code for code, (_, new) in changed.items() if new is not None and not new.startswith(community)]
    assert ring, "the ring's components go to a neighbour's grid"


def test_a_community_that_crosses_itself_in_metres_is_repaired_before_cutting(
    test_settings: Settings,
) -> None:
    """A boundary valid in lon/lat may cross itself once densified and turned into metres: here the edge
    runs 11 m past a corner and back (vertices as a GEOS difference left them in an imported community,
    found by a tester), which in metres is a sliver touching itself. The redraw failed with a traceback;
    the sliver is now repaired before cutting, the area kept."""
    spike = shapely.Polygon(
        [
            (117.10959032692305, 36.70767857692308),
            (117.11008419230771, 36.70770569230768),
            (117.11033112495726, 36.70771925025617),  # 11 m past the corner...
            (117.11020288816567, 36.70771220935729),  # ...and back
            (117.11018513815938, 36.70753983720251),
            (117.11011653696548, 36.706873636041486),
            (117.10959032692305, 36.706873636041486),
        ]
    )
    assert shapely.is_valid(spike)
    in_metres = planning.transformer(test_settings)(spike)
    assert shapely.is_valid_reason(in_metres).startswith("Self-intersection")
    communities = pd.DataFrame({"code": ["370102001001"], "geometry": [spike]})
    repaired = planning._metric_communities(communities, test_settings)
    assert shapely.is_valid(repaired).all()
    assert abs(shapely.area(repaired[0]) - shapely.area(in_metres)) < 0.01
