"""A draft plan beside the active one: which grids change, and who and what would change owner.

Responsibility grids are matched by code (a grid that survived a redraw kept its code, gis/plancodes):
a code only in the draft was *added*, only in the base plan *removed*; a code in both is *reshaped* when
the two shapes differ by more than 1 % of the area. Components, open cases and residential buildings
(households) are looked up in both plans by the rule activation then applies to them (the grid at the
point, the smallest code on a shared edge, else the nearest within the locate tolerance), only near grids
that are new or changed (a grid kept as it was keeps everything in and around it), so the list is what
activating the draft would change. Stations change when the set of grids they answer for changes.

The comparison is read-only and can be asked any time, by GIS staff and dispatchers; as JSON (counts and
the changed items), as CSV (one row per change, for a spreadsheet) and as a map (gis/planmap).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy.orm import Session, sessionmaker

from gis import planmap
from gridsvc.errors import FieldProblem, InvalidInputError, NotFoundError
from gridsvc.repositories import locate as locate_repo
from gridsvc.repositories import plan_compare as repo
from gridsvc.services.access import Principal
from gridsvc.services.imports import grid_rule
from gridsvc.settings import Settings, get_settings

CSV_COLUMNS = ["kind", "code", "community_code", "detail", "before", "after", "change", "households"]


@dataclass
class PlanComparison:
    """Everything that changes when ``plan_id`` replaces ``against_plan_id``."""

    plan_id: int
    against_plan_id: int
    grids: pd.DataFrame
    unit_grid_counts: dict[str, int]
    components: pd.DataFrame
    open_cases: pd.DataFrame
    households: pd.DataFrame
    stations: list[dict[str, Any]] = field(default_factory=list)

    def grid_counts(self) -> dict[str, int]:
        """Responsibility grids added, removed, reshaped and unchanged."""
        counts = {"added": 0, "removed": 0, "reshaped": 0, "unchanged": 0}
        counts.update({str(k): int(v) for k, v in self.grids["change"].value_counts().items()})
        return counts

    def changed_grids(self) -> pd.DataFrame:
        """The responsibility grids that are added, removed or reshaped."""
        return self.grids[self.grids["change"] != "unchanged"]

    def summary(self) -> dict[str, Any]:
        """Counts only."""
        by_class = (
            {str(k): int(v) for k, v in self.components["class_code"].value_counts().sort_index().items()}
            if len(self.components)
            else {}
        )
        return {
            "plan_id": self.plan_id,
            "against_plan_id": self.against_plan_id,
            "responsibility_grids": self.grid_counts(),
            "unit_grids": self.unit_grid_counts,
            "components_changing_owner": len(self.components),
            "components_changing_owner_by_class": by_class,
            "open_cases_changing_owner": len(self.open_cases),
            "households_changing_owner": int(self.households["households"].sum())
            if len(self.households)
            else 0,
            "buildings_changing_owner": len(self.households),
            "stations_changing_grids": len(self.stations),
        }

    def to_dict(self, limit: int | None = 1000) -> dict[str, Any]:
        """Counts and the changed items (each list cut at ``limit``; the counts are always whole)."""

        def items(frame: pd.DataFrame) -> list[dict[str, Any]]:
            cut = frame if limit is None else frame.head(limit)
            records: list[dict[str, Any]] = json.loads(cut.to_json(orient="records", force_ascii=False))
            return records

        grids = self.changed_grids().drop(columns=["before_id", "after_id"])
        return {
            **self.summary(),
            "limit": limit,
            "changed_grids": items(grids),
            "components": items(self.components.drop(columns=["id"])),
            "open_cases": items(self.open_cases.drop(columns=["id"])),
            "buildings": items(self.households.drop(columns=["id"])),
            "stations": self.stations if limit is None else self.stations[:limit],
        }

    def rows(self) -> pd.DataFrame:
        """One row per change, every kind in one table (the CSV)."""
        frames = []
        grids = self.changed_grids()
        if len(grids):
            frames.append(
                pd.DataFrame(
                    {
                        "kind": "responsibility_grid",
                        "code": grids["code"],
                        "community_code": grids["community_code"],
                        "detail": "",
                        "before": grids["households_before"],
                        "after": grids["households_after"],
                        "change": grids["change"],
                        "households": grids["households_after"].fillna(0)
                        - grids["households_before"].fillna(0),
                    }
                )
            )
        for kind, frame, detail in (
            ("component", self.components, "class_code"),
            ("open_case", self.open_cases, "status"),
        ):
            if len(frame):
                frames.append(
                    pd.DataFrame(
                        {
                            "kind": kind,
                            "code": frame["code"],
                            "community_code": "",
                            "detail": frame[detail],
                            "before": frame["before"],
                            "after": frame["after"],
                            "change": "owner",
                            "households": None,
                        }
                    )
                )
        if len(self.households):
            frames.append(
                pd.DataFrame(
                    {
                        "kind": "building",
                        "code": self.households["id"].astype(str),
                        "community_code": self.households["community_code"],
                        "detail": "",
                        "before": self.households["before"],
                        "after": self.households["after"],
                        "change": "owner",
                        "households": self.households["households"],
                    }
                )
            )
        for station in self.stations:
            frames.append(
                pd.DataFrame(
                    [
                        {
                            "kind": "station",
                            "code": str(station["station_id"]),
                            "community_code": "",
                            "detail": station["name"],
                            "before": " ".join(station["grids_before"]),
                            "after": " ".join(station["grids_after"]),
                            "change": "grids",
                            "households": station["households_after"] - station["households_before"],
                        }
                    ]
                )
            )
        if not frames:
            return pd.DataFrame(columns=CSV_COLUMNS)
        return pd.concat(frames, ignore_index=True)[CSV_COLUMNS]

    def to_csv(self) -> bytes:
        """The rows as UTF-8 CSV with a byte-order mark, so Excel shows the Chinese names."""
        buffer = io.StringIO()
        self.rows().to_csv(buffer, index=False)
        return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def compare_plan(
    sessions: sessionmaker[Session],
    plan_id: int,
    against: int | None = None,
    *,
    actor: Principal,
    settings: Settings | None = None,
) -> PlanComparison:
    """Compare ``plan_id`` with ``against`` (default: the active plan); see the module docstring. Who owns
    what in each plan is found by the rule activation applies (``settings``' nearest-grid distance)."""
    actor.require("gis_staff", "dispatcher")
    with sessions() as session:
        base = _base_plan(session, plan_id, against)
        rule = grid_rule(plan_id, settings or get_settings())
        grids = repo.responsibility_grid_changes(session, base=base, draft=plan_id)
        comparison = PlanComparison(
            plan_id=plan_id,
            against_plan_id=base,
            grids=grids,
            unit_grid_counts=repo.unit_grid_change_counts(session, base=base, draft=plan_id),
            components=repo.component_owner_changes(session, rule, base=base, draft=plan_id),
            open_cases=repo.open_case_owner_changes(session, rule, base=base, draft=plan_id),
            households=repo.household_owner_changes(session, rule, base=base, draft=plan_id),
            stations=_station_changes(
                repo.station_grids(session, plan=base), repo.station_grids(session, plan=plan_id)
            ),
        )
    return comparison


def comparison_map_html(
    sessions: sessionmaker[Session], comparison: PlanComparison, *, actor: Principal
) -> str:
    """A self-contained HTML map of the changed grids: today's outlines under the draft's, by change."""
    actor.require("gis_staff", "dispatcher")
    changed = comparison.changed_grids()
    before_codes = changed.loc[changed["change"] != "added", "code"].tolist()
    after_codes = changed.loc[changed["change"] != "removed", "code"].tolist()
    with sessions() as session:
        before = _shapes(repo.grid_shapes(session, plan=comparison.against_plan_id, codes=before_codes))
        after = _shapes(repo.grid_shapes(session, plan=comparison.plan_id, codes=after_codes))
    change_of = dict(zip(changed["code"], changed["change"], strict=True))
    after["change"] = [change_of.get(code, "unchanged") for code in after["code"]]
    before["change"] = [change_of.get(code, "unchanged") for code in before["code"]]
    title = f"方案 {comparison.plan_id} 对比 {comparison.against_plan_id}"
    return (
        planmap.comparison_map(before, after, title=title, summary=comparison.summary()).get_root().render()
    )


def _shapes(frame: pd.DataFrame) -> gpd.GeoDataFrame:
    geoms = [shapely.from_geojson(text) for text in frame["geojson"]] if len(frame) else []
    return gpd.GeoDataFrame(frame.drop(columns=["geojson"]), geometry=geoms, crs="EPSG:4490")


def _base_plan(session: Session, plan_id: int, against: int | None) -> int:
    if repo.plan_row(session, plan_id) is None:
        raise NotFoundError(f"no plan {plan_id}")
    if against is None:
        active = locate_repo.active_plan(session)
        if active is None:
            raise InvalidInputError(
                "there is no active plan to compare with: name one",
                problems=[FieldProblem("against", "missing")],
            )
        against = int(active.id)
    elif repo.plan_row(session, against) is None:
        raise NotFoundError(f"no plan {against}")
    if against == plan_id:
        raise InvalidInputError(
            f"plan {plan_id} compared with itself", problems=[FieldProblem("against", str(against))]
        )
    return against


def _station_changes(before: pd.DataFrame, after: pd.DataFrame) -> list[dict[str, Any]]:
    """Stations whose set of grids differs, with their grids and households in both plans."""
    merged = before.merge(after, on=["station_id", "name"], how="outer", suffixes=("_before", "_after"))
    out: list[dict[str, Any]] = []
    for row in merged.sort_values("station_id").itertuples(index=False):
        grids_before = list(row.grids_before) if isinstance(row.grids_before, list) else []
        grids_after = list(row.grids_after) if isinstance(row.grids_after, list) else []
        if grids_before != grids_after:
            out.append(
                {
                    "station_id": int(row.station_id),
                    "name": row.name,
                    "grids_before": grids_before,
                    "grids_after": grids_after,
                    "households_before": int(row.households_before) if pd.notna(row.households_before) else 0,
                    "households_after": int(row.households_after) if pd.notna(row.households_after) else 0,
                }
            )
    return out
