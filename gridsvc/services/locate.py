"""Which grid owns a place, and who answers for it: one point, or millions.

Both doors (one point over HTTP or the CLI, many points from a file or a batch request) go through one
in-memory :class:`gis.locate.GridLocator` per plan, so they give the same answers by construction.
The locator is built from the database on first use and rebuilt when the plan, its version, or the
boundaries and stations change (a cheap stamp query on every call sees that).

Rules users see (also in the README):
- a point strictly inside a unit grid belongs to it ("inside");
- a point on a shared edge or vertex belongs to the grid with the smallest code ("edge");
- a point within the boundary tolerance (30 m by default) of a unit grid with a different
  responsibility grid is ``near_boundary``, with those candidates and their distances: those are the
  reports that go to the wrong owner elsewhere, so they are marked for a dispatcher to confirm;
- a point in no grid falls to the nearest grid within the nearest tolerance ("nearest"), flagged;
- beyond it, to the district that contains it (属地兜底, "territory"), flagged;
- a point in no district is outside the city: a 404 problem for one point, a row marked "outside"
  in a batch.
"""

from __future__ import annotations

import datetime as dt
import gc
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyproj
import shapely
from sqlalchemy.orm import Session, sessionmaker

from gis import crs as gcrs
from gis import export as gexport
from gis import io as gio
from gis.locate import HOW_LABELS, GridLocator, How, LocateResult
from gridsvc.errors import FieldProblem, InvalidInputError, NotFoundError
from gridsvc.repositories import locate as repo
from gridsvc.repositories.locate import PlanRow
from gridsvc.settings import Settings

# CGCS2000's ellipsoid is GRS80 to within 0.1 mm: geodesic distances to stations use it.
_GEOD = pyproj.Geod(ellps="GRS80")
_CACHE_SIZE = 3
CONFIRM_HOWS = ("nearest", "territory")


@dataclass(frozen=True)
class PlanLocator:
    """A plan's grids in memory with their owner chain, and the stamp it was built for."""

    key: tuple[Any, ...]
    plan: PlanRow | None
    grids: pd.DataFrame
    districts: pd.DataFrame
    locator: GridLocator | None  # None when there is no plan or it has no grids: districts answer alone
    columns: dict[str, npt.NDArray[Any]]  # grid and district columns as arrays, ready to index per point

    @property
    def row_columns(self) -> dict[str, npt.NDArray[Any]]:
        """The columns of one grid's answer (its owner chain), without the districts of the territory."""
        return {k: v for k, v in self.columns.items() if not k.startswith("territory_")}

    def locate(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> LocateResult:
        """Locate CGCS2000 points with this plan (see the module docstring for the rules)."""
        if self.locator is not None:
            return self.locator.locate(lon, lat)
        return _territory_only(
            self.districts, np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        )


def _territory_only(
    districts: pd.DataFrame, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
) -> LocateResult:
    """Answers without grids: the district by territory (smallest code on a shared border), else outside."""
    gcrs.check_finite(lon, lat)
    n = len(lon)
    territory = np.full(n, -1, dtype=np.int64)
    geoms = districts["geometry"].to_numpy()
    # Districts are in code order, so the first district covering a point has the smallest code.
    for index in range(len(geoms) - 1, -1, -1):
        territory[shapely.intersects_xy(geoms[index], lon, lat)] = index
    how = np.where(territory >= 0, How.TERRITORY, How.OUTSIDE).astype(np.int8)
    nan = np.full(n, np.nan)
    return LocateResult(
        grid_index=np.full(n, -1, dtype=np.int64),
        how=how,
        territory_index=territory,
        distance_m=nan,
        boundary_distance_m=nan.copy(),
        near_boundary=np.zeros(n, dtype=bool),
        candidate_offsets=np.zeros(n + 1, dtype=np.int64),
        candidate_index=np.zeros(0, dtype=np.int64),
        candidate_distance_m=np.zeros(0, dtype=np.float64),
    )


_cache: OrderedDict[tuple[Any, ...], PlanLocator] = OrderedDict()
_cache_lock = threading.Lock()
_build_lock = threading.Lock()
# (database, date asked) -> (when the stamp was last read, the locator's cache key then)
_checked: dict[tuple[str, dt.date | None], tuple[float, tuple[Any, ...]]] = {}


def _database_key(sessions: sessionmaker[Session]) -> str:
    """The database a session factory talks to (an Engine, or a Connection in the tests)."""
    bind = sessions.kw.get("bind")
    engine = getattr(bind, "engine", bind)
    url = getattr(engine, "url", None)
    return url.render_as_string(hide_password=True) if url is not None else str(id(bind))


def _plan_for(session: Session, at: dt.date | None) -> PlanRow | None:
    return repo.plan_on(session, at) if at is not None else repo.active_plan(session)


def plan_locator(
    sessions: sessionmaker[Session], settings: Settings, at: dt.date | None = None
) -> PlanLocator:
    """The locator of the plan active now (or on ``at``), built once and reused until the data change.

    Whether the data changed (another plan, a new plan version, new boundaries or stations) is read from
    the database at most every ``locate_recheck_seconds``: one query less per locate under load, at the
    price of an activation being seen up to that many seconds late.
    """
    database = _database_key(sessions)
    now = time.monotonic()
    with _cache_lock:
        seen = _checked.get((database, at))
        if seen is not None and now - seen[0] < settings.locate_recheck_seconds and seen[1] in _cache:
            return _cache[seen[1]]
    with sessions() as session:
        plan = _plan_for(session, at)
        stamp = repo.territory_stamp(session)
        key = (
            database,
            plan.id if plan else None,
            plan.version if plan else None,
            stamp,
            settings.metric_crs,
            settings.locate_boundary_tolerance_m,
            settings.locate_nearest_tolerance_m,
        )
    found = _cached(database, at, now, key)
    if found is not None:
        return found
    # One build at a time: the startup warm-up and the first requests must not each read and index the
    # whole plan (seconds and gigabytes at city scale); the others wait and take the result.
    with _build_lock:
        found = _cached(database, at, now, key)
        if found is not None:
            return found
        return _build(sessions, settings, database, at, now, key, plan)


def _cached(database: str, at: dt.date | None, now: float, key: tuple[Any, ...]) -> PlanLocator | None:
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            _checked[(database, at)] = (now, key)
        return found


def _build(
    sessions: sessionmaker[Session],
    settings: Settings,
    database: str,
    at: dt.date | None,
    now: float,
    key: tuple[Any, ...],
    plan: PlanRow | None,
) -> PlanLocator:
    with sessions() as session:
        grids = repo.plan_unit_grids(session, plan.id if plan else -1)
        districts = repo.districts(session)
    locator = None
    if len(grids) and len(districts):
        locator = GridLocator(
            grid_geoms_lonlat=grids["geometry"].to_numpy(),
            grid_keys=grids["unit_grid_id"].to_numpy(dtype=np.int64),
            grid_codes=grids["unit_grid_code"].to_numpy(dtype=object),
            grid_owner_keys=grids["responsibility_grid_id"].to_numpy(dtype=np.int64),
            territory_geoms_lonlat=districts["geometry"].to_numpy(),
            territory_keys=districts["district_code"].to_numpy(dtype=object),
            metric_crs=settings.metric_crs,
            boundary_tolerance_m=settings.locate_boundary_tolerance_m,
            nearest_tolerance_m=settings.locate_nearest_tolerance_m,
        )
    columns = {name: grids[name].to_numpy(dtype=object) for name in grids.columns if name != "geometry"}
    for name in ("station_lon", "station_lat"):
        columns[name] = pd.to_numeric(grids[name], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    for name in ("district_code", "district_name"):
        columns[f"territory_{name}"] = districts[name].to_numpy(dtype=object)
    built = PlanLocator(
        key=key, plan=plan, grids=grids, districts=districts, locator=locator, columns=columns
    )
    with _cache_lock:
        _cache[key] = built
        _checked[(database, at)] = (now, key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    # A city's plan is millions of long-lived Python objects; left to the cyclic collector, every full
    # collection walks them all and stalls requests for a few hundred milliseconds (seen as p99 spikes
    # under load). Freezing moves everything alive now out of its reach (an evicted locator is then
    # freed by reference counting alone, which is all it needs: it holds no cycles).
    gc.collect()
    gc.freeze()
    return built


def _check_degrees(
    x: npt.ArrayLike, y: npt.ArrayLike, crs: gcrs.ResolvedCRS, x_field: str, y_field: str
) -> None:
    """InvalidInputError for a longitude outside ±180° or a latitude outside ±90°: no place on Earth, so
    bad input (422), not a place outside the city (404)."""
    problems = []
    for values, name, limit, what in ((x, x_field, 180.0, "longitude"), (y, y_field, 90.0, "latitude")):
        array = np.atleast_1d(np.asarray(values, dtype=np.float64))
        wrong = ~(np.abs(array) <= limit)  # NaN is wrong too
        if wrong.any():
            problems.append(
                FieldProblem(
                    name, f"{array[wrong][0]:g} is not a {what} in degrees (-{limit:g} to {limit:g})"
                )
            )
    if problems:
        raise InvalidInputError(
            f"not a position in {crs.description}: " + "; ".join(f"{p.field}: {p.message}" for p in problems),
            problems=problems,
        )


def to_cgcs2000(
    x: npt.ArrayLike, y: npt.ArrayLike, crs: str, *, x_field: str = "lon", y_field: str = "lat"
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Coordinates in any supported datum to storage lon/lat, or InvalidInputError naming the field."""
    try:
        resolved = gcrs.resolve_crs(crs)
    except gcrs.CoordinateError as exc:
        raise InvalidInputError(str(exc), problems=[FieldProblem("crs", str(exc))]) from exc
    try:
        lon, lat = gcrs.to_storage(x, y, resolved)
    except gcrs.CoordinateError as exc:
        raise InvalidInputError(
            f"cannot read the coordinates as {resolved.description}: {exc}",
            problems=[FieldProblem(f"{x_field}/{y_field}", str(exc))],
        ) from exc
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


@dataclass(frozen=True)
class Candidate:
    """Another unit grid, of another owner, within the boundary tolerance."""

    unit_grid_code: str
    responsibility_grid_code: str | None
    community_code: str
    distance_m: float


@dataclass(frozen=True)
class Located:
    """The answer for one point: the grid, its owners, and how sure the answer is."""

    lon: float
    lat: float
    how: str
    needs_confirmation: bool
    plan: PlanRow | None
    row: dict[str, Any] | None
    district_code: str | None
    district_name: str | None
    distance_m: float | None
    station_distance_m: float | None
    near_boundary: bool
    boundary_distance_m: float | None
    candidates: list[Candidate]

    @property
    def notes(self) -> list[str]:
        """Why the answer needs a human's eye, in words a dispatcher reads."""
        notes = []
        if self.how == "edge":
            notes.append("on a shared edge or vertex: owned by the grid with the smallest code")
        if self.how == "nearest":
            notes.append(f"in no grid: given to the nearest grid, {self.distance_m:.1f} m away")
        if self.how == "territory" and self.plan is None:
            notes.append(
                "no grid plan was in force on the date asked (or none is active now): falls to the district "
                "by territory (属地兜底)"
            )
        elif self.how == "territory":
            notes.append("in no grid and none nearby: falls to the district by territory (属地兜底)")
        if self.near_boundary:
            notes.append(
                f"{len(self.candidates)} other owner(s) within the boundary tolerance: confirm the owner"
            )
        return notes


def _none(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _answer(pl: PlanLocator, result: LocateResult, i: int, lon: float, lat: float) -> Located:
    how = HOW_LABELS[int(result.how[i])]
    grid_index = int(result.grid_index[i])
    row = (
        {name: _none(values[grid_index]) for name, values in pl.row_columns.items()}
        if grid_index >= 0
        else None
    )
    territory = int(result.territory_index[i])
    district_code = district_name = None
    if row is not None:
        district_code, district_name = row["district_code"], row["district_name"]
    elif territory >= 0:
        district_code = str(pl.columns["territory_district_code"][territory])
        district_name = str(pl.columns["territory_district_name"][territory])
    station_distance = None
    if row is not None and row.get("station_lon") is not None:
        _, _, metres = _GEOD.inv(lon, lat, row["station_lon"], row["station_lat"])
        station_distance = round(float(metres), 1)
    candidates = [
        Candidate(
            unit_grid_code=str(pl.columns["unit_grid_code"][c]),
            responsibility_grid_code=_none(pl.columns["responsibility_grid_code"][c]),
            community_code=str(pl.columns["community_code"][c]),
            distance_m=round(d, 1),
        )
        for c, d in result.candidates(i)
    ]
    distance = _none(float(result.distance_m[i]))
    boundary = _none(float(result.boundary_distance_m[i]))
    near = bool(result.near_boundary[i])
    return Located(
        lon=lon,
        lat=lat,
        how=how,
        needs_confirmation=near or how in CONFIRM_HOWS,
        plan=pl.plan,
        row=row,
        district_code=district_code,
        district_name=district_name,
        distance_m=round(distance, 1) if distance is not None else None,
        station_distance_m=station_distance,
        near_boundary=near,
        boundary_distance_m=round(boundary, 1) if boundary is not None else None,
        candidates=candidates,
    )


def answer_one(pl: PlanLocator, lon: float, lat: float) -> Located:
    """Locate one CGCS2000 point with a plan's locator (outside the city: ``how == "outside"``)."""
    return _answer(pl, pl.locate([lon], [lat]), 0, lon, lat)


def locate_point(
    sessions: sessionmaker[Session],
    settings: Settings,
    x: float,
    y: float,
    *,
    crs: str = "wgs84",
    at: dt.date | None = None,
) -> Located:
    """Locate one point given in ``crs``; NotFoundError when it is outside the city, InvalidInputError when
    it is no place at all (a longitude past 180°)."""
    try:
        resolved = gcrs.resolve_crs(crs)
    except gcrs.CoordinateError:
        resolved = None  # to_cgcs2000 says why
    if resolved is not None and resolved.is_geographic:
        _check_degrees([x], [y], resolved, "lon", "lat")
    lon, lat = to_cgcs2000([x], [y], crs)
    located = answer_one(plan_locator(sessions, settings, at), float(lon[0]), float(lat[0]))
    if located.how == "outside":
        raise NotFoundError(
            f"({x}, {y}) in {crs} is CGCS2000 ({lon[0]:.6f}, {lat[0]:.6f}): outside {settings.city_name}, "
            "no district contains it",
            problems=[FieldProblem("lon/lat", "outside the city", {"lon": x, "lat": y, "crs": crs})],
        )
    return located


def _part(row: dict[str, Any] | None, prefix: str, **extra: Any) -> dict[str, Any] | None:
    if row is None or row.get(f"{prefix}_code") is None:
        return None
    return {"code": row[f"{prefix}_code"], "name": row.get(f"{prefix}_name"), **extra}


def plan_dict(plan: PlanRow | None) -> dict[str, Any] | None:
    """A plan as the API shows it."""
    if plan is None:
        return None
    return {
        "id": plan.id,
        "name": plan.name,
        "status": plan.status,
        "effective_from": plan.effective_from.isoformat() if plan.effective_from else None,
        "effective_to": plan.effective_to.isoformat() if plan.effective_to else None,
    }


def located_dict(located: Located) -> dict[str, Any]:
    """The one-point answer as JSON (GET /v1/locate, ``gridsvc locate --json``)."""
    row = located.row
    unit = {"id": row["unit_grid_id"], "code": row["unit_grid_code"]} if row else None
    rgrid = None
    if row and row.get("responsibility_grid_code") is not None:
        rgrid = {
            "id": row["responsibility_grid_id"],
            "code": row["responsibility_grid_code"],
            "name": row["responsibility_grid_name"],
            "worker": {"name": row["worker_name"], "phone": row["worker_phone"]},
        }
    station = None
    if row and row.get("station_id") is not None:
        station = {
            "id": row["station_id"],
            "name": row["station_name"],
            "phone": row["station_phone"],
            "lon": row["station_lon"],
            "lat": row["station_lat"],
            "distance_m": located.station_distance_m,
        }
    district = (
        {"code": located.district_code, "name": located.district_name} if located.district_code else None
    )
    return {
        "point": {"lon": round(located.lon, 8), "lat": round(located.lat, 8), "crs": "cgcs2000"},
        "how": located.how,
        "needs_confirmation": located.needs_confirmation,
        "notes": located.notes,
        "unit_grid": unit,
        "responsibility_grid": rgrid,
        "community": _part(row, "community"),
        "street": _part(row, "street"),
        "district": district,
        "station": station,
        "plan": plan_dict(located.plan),
        "distance_m": located.distance_m,
        "near_boundary": located.near_boundary,
        "boundary_distance_m": located.boundary_distance_m,
        "candidates": [
            {
                "unit_grid_code": c.unit_grid_code,
                "responsibility_grid_code": c.responsibility_grid_code,
                "community_code": c.community_code,
                "distance_m": c.distance_m,
            }
            for c in located.candidates
        ],
    }


# What a unit grid's answer carries: its owners, then its station.
_OWNER_COLUMNS = (
    "unit_grid_code",
    "responsibility_grid_code",
    "responsibility_grid_name",
    "worker_name",
    "worker_phone",
    "community_code",
    "community_name",
    "street_code",
    "street_name",
)
_STATION_COLUMNS = ("station_name", "station_phone")
_GRID_COLUMNS = (*_OWNER_COLUMNS, *_STATION_COLUMNS)
# The flat columns of a batch answer (file, CSV and GeoJSON properties): the one-point answer, flattened.
BATCH_COLUMNS = (
    "how",
    "needs_confirmation",
    *_OWNER_COLUMNS,
    "district_code",
    "district_name",
    *_STATION_COLUMNS,
    "station_distance_m",
    "distance_m",
    "near_boundary",
    "boundary_distance_m",
    "candidates",
    "plan_id",
)


def _take(values: npt.NDArray[Any], index: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """values[index] with None where index is -1."""
    out = np.full(len(index), None, dtype=object)
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out


def locate_many(
    sessions: sessionmaker[Session],
    settings: Settings,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    crs: str = "wgs84",
    at: dt.date | None = None,
) -> pd.DataFrame:
    """Locate many points given in ``crs``: a row of :data:`BATCH_COLUMNS` per point, as one by one."""
    lon, lat = to_cgcs2000(x, y, crs, x_field="x", y_field="y")
    pl = plan_locator(sessions, settings, at)
    result = pl.locate(lon, lat)
    return answers_frame(pl, result, lon, lat)


def answers_frame(
    pl: PlanLocator, result: LocateResult, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
) -> pd.DataFrame:
    """The flat table of answers for located points (text columns hold None where there is no answer)."""
    columns = pl.columns
    grid_index = np.asarray(result.grid_index, dtype=np.int64)
    has_grid = grid_index >= 0
    how = result.how_labels.astype(object)
    near = np.asarray(result.near_boundary, dtype=bool)
    out: dict[str, Any] = {"how": how, "needs_confirmation": near | np.isin(how, CONFIRM_HOWS)}
    for column in _GRID_COLUMNS:
        out[column] = _take(columns[column], grid_index)
    territory = np.asarray(result.territory_index, dtype=np.int64)
    for column in ("district_code", "district_name"):
        out[column] = np.where(
            has_grid, _take(columns[column], grid_index), _take(columns[f"territory_{column}"], territory)
        )
    # Indexed only where there is a grid: a date before any plan has no grids at all to index.
    station_lon = np.full(len(grid_index), np.nan)
    station_lat = np.full(len(grid_index), np.nan)
    station_lon[has_grid] = columns["station_lon"][grid_index[has_grid]]
    station_lat[has_grid] = columns["station_lat"][grid_index[has_grid]]
    has_station = ~np.isnan(station_lon)
    station_distance = np.full(len(grid_index), np.nan)
    if has_station.any():
        _, _, metres = _GEOD.inv(
            lon[has_station], lat[has_station], station_lon[has_station], station_lat[has_station]
        )
        station_distance[has_station] = np.round(metres, 1)
    out["station_distance_m"] = station_distance
    out["distance_m"] = np.round(np.asarray(result.distance_m, dtype=float), 1)
    out["near_boundary"] = near
    out["boundary_distance_m"] = np.round(np.asarray(result.boundary_distance_m, dtype=float), 1)
    out["candidates"] = _candidate_text(columns["unit_grid_code"], result, near)
    out["plan_id"] = pl.plan.id if pl.plan else None
    # Object columns stay object: pandas would otherwise turn text into its string type, slowly, and None
    # into NaN.
    return pd.DataFrame(
        {
            name: pd.Series(out[name], dtype=object) if name in _TEXT_COLUMNS else out[name]
            for name in BATCH_COLUMNS
        },
        columns=list(BATCH_COLUMNS),
    )


_TEXT_COLUMNS = frozenset({"how", *_GRID_COLUMNS, "district_code", "district_name", "candidates"})


def _candidate_text(
    codes: npt.NDArray[Any], result: LocateResult, near: npt.NDArray[np.bool_]
) -> npt.NDArray[Any]:
    """ "code:metres; code:metres" per point, nearest first; empty where there is no other owner near."""
    text = np.full(len(near), "", dtype=object)
    pieces = [
        f"{code}:{metres:.1f}"
        for code, metres in zip(codes[result.candidate_index], result.candidate_distance_m, strict=True)
    ]
    offsets = result.candidate_offsets
    for i in np.flatnonzero(near):
        text[i] = "; ".join(pieces[offsets[i] : offsets[i + 1]])
    return text


@dataclass(frozen=True)
class LocateFileReport:
    """What ``gridsvc locate-file`` did: rows in and out, and how they were answered."""

    output: Path
    rows: int
    by_how: dict[str, int]
    needs_confirmation: int
    plan_id: int | None


def locate_file(
    sessions: sessionmaker[Session],
    settings: Settings,
    source: Path,
    target: Path,
    *,
    layer: str | None = None,
    crs: str | None = None,
    encoding: str | None = None,
    at: dt.date | None = None,
    out_crs: str = "cgcs2000",
    progress: Callable[[int], None] | None = None,
) -> LocateFileReport:
    """Answer every point of a CSV/GeoPackage/GeoJSON/... file; write its rows with the answers added."""
    try:
        info = gio.inspect_layer(source, layer=layer, crs=crs, encoding=encoding)
        chunks = gio.iter_chunks(info)
        answered = []
        for chunk in chunks:
            _check_points(chunk)
            geoms = chunk.geometry.to_numpy()
            lon = shapely.get_x(geoms)
            lat = shapely.get_y(geoms)
            pl = plan_locator(sessions, settings, at)
            result = pl.locate(lon, lat)
            answers = answers_frame(pl, result, lon, lat)
            # Keep the file's own columns, renamed where an answer column or the written coordinates
            # (lon/lat, x/y in a CSV) take their name: lat_in is then the coordinate as it came.
            taken = {*answers.columns, "lon", "lat", "x", "y", "wkt"}
            clashes = [c for c in chunk.columns if str(c).casefold() in taken and c != "geometry"]
            base = chunk.rename(columns={c: f"{c}_in" for c in clashes})
            answered.append(
                gpd.GeoDataFrame(
                    pd.concat([base.drop(columns="geometry").reset_index(drop=True), answers], axis=1),
                    geometry=base.geometry.reset_index(drop=True),
                    crs=gcrs.STORAGE_CRS,
                )
            )
            if progress is not None:
                progress(len(chunk))
    except gio.LayerError as exc:
        raise InvalidInputError(str(exc), problems=[FieldProblem(exc.field, str(exc))]) from exc
    if answered:
        frame = gpd.GeoDataFrame(pd.concat(answered, ignore_index=True), crs=gcrs.STORAGE_CRS)
    else:
        frame = gpd.GeoDataFrame({"how": []}, geometry=gpd.GeoSeries([], crs=gcrs.STORAGE_CRS))
    try:
        written = gexport.write_layer(frame.drop(columns="source_row", errors="ignore"), target, crs=out_crs)
    except (ValueError, gcrs.CoordinateError) as exc:
        raise InvalidInputError(
            f"cannot write {target}: {exc}", problems=[FieldProblem("out", str(exc))]
        ) from exc
    hows = frame["how"].value_counts().to_dict() if len(frame) else {}
    return LocateFileReport(
        output=written,
        rows=len(frame),
        by_how={str(k): int(v) for k, v in hows.items()},
        needs_confirmation=int(frame["needs_confirmation"].sum()) if len(frame) else 0,
        plan_id=int(frame["plan_id"].iloc[0])
        if len(frame) and frame["plan_id"].iloc[0] is not None
        else None,
    )


def _check_points(chunk: gpd.GeoDataFrame) -> None:
    """Every row must be one finite point: say which rows are not."""
    geoms = chunk.geometry.to_numpy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    not_point = ~missing & (shapely.get_type_id(geoms) != 0)
    xs = np.where(missing | not_point, 0.0, shapely.get_x(np.where(missing | not_point, None, geoms)))
    ys = np.where(missing | not_point, 0.0, shapely.get_y(np.where(missing | not_point, None, geoms)))
    bad_coords = ~np.isfinite(xs) | ~np.isfinite(ys)
    problems = []
    for mask, why in (
        (missing, "no geometry"),
        (not_point, "not a point"),
        (bad_coords, "NaN or infinite coordinate"),
    ):
        for i in np.flatnonzero(mask)[:20]:
            problems.append(FieldProblem("geometry", why, {"row": int(chunk["source_row"].iloc[i])}))
    if problems:
        raise InvalidInputError(
            f"{len(problems)} row(s) cannot be located (first: row {problems[0].location['row']}, "
            f"{problems[0].message}); nothing was written",
            problems=problems,
        )


MAX_BATCH_BYTES = 64 << 20


# The file door's advice (gis.io, locate_file) in the batch's terms: the request body, not a file on the
# server (whose temporary path means nothing to the client and is not its business), and query parameters,
# not command-line options. Applied in order.
POSTED_TERMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"--crs says ([^\s;,]+)"), r"the datum is \1 (query parameter crs; wgs84 when not given)"),
    (re.compile(r"--crs (?=\()"), "the query parameter crs "),
    (re.compile(r"--crs ([^\s;,)]+)"), r"?crs=\1"),
    (
        re.compile(
            r"give the (right )?encoding \(e\.g\. --encoding [^)]+\)(, or leave it out to detect it)?"
        ),
        "send the text in UTF-8",
    ),
    (re.compile(r"copy it again or re-export it"), "check it and send it again"),
    (re.compile(r"; nothing was written"), ""),
)


def _as_posted(exc: InvalidInputError, folder: str, posted: str) -> InvalidInputError:
    """The error of a batch's temporary file told of the request body, in HTTP terms."""

    def said(text: str) -> str:
        text = re.sub(re.escape(folder) + r"/\S+?\.(csv|geojson)", posted, text)
        for pattern, replacement in POSTED_TERMS:
            text = pattern.sub(replacement, text)
        return text

    problems = [
        FieldProblem("body" if p.field == "file" else p.field, said(p.message), p.location)
        for p in exc.problems
    ]
    return InvalidInputError(said(exc.detail), problems=problems)


def locate_document(
    sessions: sessionmaker[Session],
    settings: Settings,
    body: bytes,
    *,
    fmt: str,
    crs: str | None,
    at: dt.date | None = None,
) -> tuple[bytes, LocateFileReport]:
    """Locate the points of a posted GeoJSON FeatureCollection or CSV; answer in the same format.

    The document goes through exactly the path ``gridsvc locate-file`` takes, so a batch answer is a
    file answer is a one-point answer.
    """
    if fmt not in ("csv", "geojson"):
        raise InvalidInputError(
            "unsupported format", problems=[FieldProblem("Content-Type", "geo+json or csv")]
        )
    if not body.strip():
        raise InvalidInputError("the request body is empty", problems=[FieldProblem("body", "no points")])
    if len(body) > MAX_BATCH_BYTES:
        raise InvalidInputError(
            "the request body is too large",
            problems=[FieldProblem("body", f"over {MAX_BATCH_BYTES >> 20} MiB: use gridsvc locate-file")],
        )
    with tempfile.TemporaryDirectory(prefix="gridsvc-locate-") as folder:
        source = Path(folder) / f"points.{fmt}"
        target = Path(folder) / f"answers.{fmt}"
        source.write_bytes(body)
        # A CSV has no datum of its own; like GET /v1/locate, the default is WGS 84 (GPS, Open311).
        # GeoJSON is WGS 84 by definition (RFC 7946) unless crs says otherwise.
        source_crs = crs if crs is not None else ("wgs84" if fmt == "csv" else None)
        try:
            report = locate_file(sessions, settings, source, target, crs=source_crs, at=at, out_crs="wgs84")
        except InvalidInputError as exc:
            posted = "the posted CSV" if fmt == "csv" else "the posted GeoJSON"
            raise _as_posted(exc, folder, posted) from None
        # The file door writes a BOM for Excel; an HTTP client reading CSV does not expect one.
        return target.read_bytes().removeprefix(b"\xef\xbb\xbf"), report
