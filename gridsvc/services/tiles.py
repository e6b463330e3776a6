"""Vector tiles of grids, components, cases, stations and communities, with a cache that knows when to forget.

A tile is Mapbox Vector Tile bytes rendered by PostGIS in one statement (``repositories/tiles.py``),
in EPSG:3857 web-mercator XYZ addressing. Around it:

- **Layers** (``LAYERS``): the MVT layer inside each tile has the layer's name; each layer has a minimum
  zoom below which its tiles are empty (a city's 3.5 million components make no sense at zoom 10).
- **An in-process LRU cache of tile bytes** (``tile_cache_mb``), keyed by database, layer, z/x/y, the
  parameters and the *data stamp* of what the layer shows. Nothing is ever invalidated by hand: a plan
  activation or hand edit changes the plan's version, an import adds a survey batch, every case step
  appends a case event, and a key with the new stamp simply misses. The stamp is one small query, read
  at most every ``locate_recheck_seconds`` (2 s) per database, so a change is seen within that time.
- **ETags** come from the same key, so a client's ``If-None-Match`` is answered with 304 before the cache
  or the database is touched.
- **The tile store** (table ``tile_store``, ``tile_store`` setting): a tile every user sees alike (no
  filter, the active plan) is also kept in the database with the stamp it was drawn at. A process whose
  memory cache is cold (just started, another worker, another machine) answers from it with one look-up
  by primary key; ``seed`` renders a whole city's tiles into it ahead of time, after an activation or an
  import, so no dispatcher waits for PostGIS to draw a street. Cases are never stored (they change by the
  minute).
- Concurrent requests for the same missing tile render it once (the others wait for the first).
- Empty tiles (below a layer's minimum zoom, or nothing there) are answered 204 No Content.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.models import CASE_STATUSES, OPEN311_CLOSED_STATUSES
from gridsvc.errors import FieldProblem, InvalidInputError, NotFoundError
from gridsvc.repositories import tiles as repo
from gridsvc.repositories.tiles import DataStamp
from gridsvc.services.access import Principal
from gridsvc.settings import Settings

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
MAX_ZOOM = 22  # tiles are served up to here; TileJSON advertises MAX_DATA_ZOOM and clients overzoom
MAX_DATA_ZOOM = 18
# At most this many features in one tile (tipg's default too); more is not a map a person can read. A
# tile that reached the limit (there may be more) says so in the X-Tile-Truncated header.
MAX_FEATURES = 10_000
# Geometries are simplified by this many tile units (of 4096 per tile, i.e. 1/8 of a pixel on a 256-px
# tile): invisible, and at zoom 12 it drops most of the 25 m densification vertices of grid edges.
SIMPLIFY_UNITS = 2.0
OPEN_STATUSES = tuple(s for s in CASE_STATUSES if s not in OPEN311_CLOSED_STATUSES)
ROLES = ("gis_staff", "dispatcher", "field")
# Plans other than the active one (drafts under review, retired ones) are shown to those who see plans.
PLAN_ROLES = ("gis_staff", "dispatcher")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layer:
    """A tile layer: its name (also the MVT layer's), minimum zoom, fields and what it depends on."""

    name: str
    title: str
    description: str
    minzoom: int
    fields: dict[str, str]  # name -> TileJSON type (String, Number, Boolean)
    depends_on: tuple[str, ...]  # stamp parts: plan, batch:<imported layer>, cases, minute
    per_plan: bool = False
    filters: tuple[str, ...] = ()  # query parameters besides plan: class, status, overdue


LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer(
            "responsibility_grids",
            "Responsibility grids (责任网格)",
            "One worker and one station each; open_cases counts the open cases routed to the grid.",
            10,
            {
                "code": "String",
                "community_code": "String",
                "community_name": "String",
                "station_name": "String",
                "worker_name": "String",
                "households": "Number",
                "workload": "Number",
                "open_cases": "Number",
            },
            ("plan", "batch:boundaries", "batch:stations", "cases"),  # community and station names
            per_plan=True,
        ),
        Layer(
            "unit_grids",
            "Unit grids (单元网格)",
            "The atomic cells; each lies in one community and one responsibility grid.",
            13,
            {"code": "String", "community_code": "String", "responsibility_grid_code": "String"},
            ("plan",),
            per_plan=True,
        ),
        Layer(
            "components",
            "Urban components (部件)",
            "Current components in use; `class` (repeatable) keeps some classes (e.g. 0118 street lamps).",
            15,
            {
                "code": "String",
                "class_code": "String",
                "class_name": "String",
                "name": "String",
                "status": "String",
            },
            ("batch:components",),
            filters=("class",),
        ),
        Layer(
            "cases",
            "Cases (案件)",
            "Open cases by default; `status`, `class` (C/E prefix for the kind) and `overdue=true` filter. "
            "No reporter data.",
            12,
            {
                "request_code": "String",
                "status": "String",
                "kind": "String",
                "class_code": "String",
                "class_name": "String",
                "deadline": "String",
                "overdue": "Boolean",
            },
            ("cases", "minute"),
            filters=("class", "status", "overdue"),
        ),
        Layer(
            "stations",
            "Urban-management stations (城管工作站)",
            "One per community; the phone is the station's public number.",
            11,
            {
                "id": "Number",
                "code": "String",
                "name": "String",
                "phone": "String",
                "community_code": "String",
            },
            ("batch:stations",),
        ),
        Layer(
            "communities",
            "Communities (社区/村)",
            "Community boundaries.",
            8,
            {"code": "String", "name": "String"},
            ("batch:boundaries",),
        ),
    )
}


@dataclass(frozen=True)
class TileQuery:
    """The parameters of one tile request besides z/x/y."""

    plan: int | None = None
    classes: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    overdue: bool = False

    def query_items(self) -> list[tuple[str, str]]:
        """The query string items that ask for the same tiles (plan only when one was named)."""
        items: list[tuple[str, str]] = []
        if self.plan is not None:
            items.append(("plan", str(self.plan)))
        items += [("class", c) for c in self.classes]
        items += [("status", s) for s in self.statuses]
        if self.overdue:
            items.append(("overdue", "true"))
        return items


def layer_of(name: str) -> Layer:
    """A layer by name, or NotFoundError listing the layers."""
    layer = LAYERS.get(name)
    if layer is None:
        raise NotFoundError(f"no tile layer {name!r}; the layers are {', '.join(LAYERS)}")
    return layer


def _class_code_ok(code: str, *, kinds: bool) -> bool:
    body = code[1:] if kinds and code[:1] in ("C", "E") else code
    return body.isdigit() and len(body) in (4, 5)


def check_query(layer: Layer, query: TileQuery) -> TileQuery:
    """The query normalised (sorted, deduplicated), or InvalidInputError naming what does not apply."""
    problems: list[FieldProblem] = []
    if query.plan is not None and not layer.per_plan:
        problems.append(FieldProblem("plan", f"{layer.name} is not drawn per plan"))
    for name, given in (("class", query.classes), ("status", query.statuses), ("overdue", query.overdue)):
        if given and name not in layer.filters:
            problems.append(FieldProblem(name, f"{layer.name} has no {name} filter"))
    kinds = layer.name == "cases"
    for code in query.classes:
        if not _class_code_ok(code, kinds=kinds):
            form = "4 or 5 digits, C/E prefixed for a kind" if kinds else "4 or 5 digits (e.g. 0118)"
            problems.append(FieldProblem("class", f"{code!r} is not a class code: {form}"))
    for status in query.statuses:
        if status not in CASE_STATUSES:
            problems.append(FieldProblem("status", f"{status!r} is not one of {', '.join(CASE_STATUSES)}"))
    if problems:
        raise InvalidInputError(f"the {layer.name} tiles cannot be asked like this", problems=problems)
    return TileQuery(
        plan=query.plan,
        classes=tuple(sorted(set(query.classes))),
        statuses=tuple(sorted(set(query.statuses))),
        overdue=query.overdue,
    )


def check_tile(z: int, x: int, y: int) -> None:
    """InvalidInputError for a zoom beyond MAX_ZOOM, NotFoundError for x or y beyond the zoom's edge."""
    if not (0 <= z <= MAX_ZOOM):
        raise InvalidInputError(f"zoom {z} is outside 0-{MAX_ZOOM}", problems=[FieldProblem("z", str(z))])
    side = 1 << z
    if not (0 <= x < side and 0 <= y < side):
        raise NotFoundError(f"there is no tile {z}/{x}/{y}: at zoom {z}, x and y run from 0 to {side - 1}")


# --- the data stamp ------------------------------------------------------------------------------------

_stamps: dict[str, tuple[float, DataStamp]] = {}
_stamps_lock = threading.Lock()


def _database_key(sessions: sessionmaker[Session]) -> str:
    """The database a session factory talks to (an Engine, or a Connection in the tests)."""
    bind = sessions.kw.get("bind")
    engine = getattr(bind, "engine", bind)
    url = getattr(engine, "url", None)
    return url.render_as_string(hide_password=True) if url is not None else str(id(bind))


def current_stamp(sessions: sessionmaker[Session], settings: Settings, *, fresh: bool = False) -> DataStamp:
    """The data stamp, re-read when older than ``locate_recheck_seconds`` (or when ``fresh``)."""
    database = _database_key(sessions)
    now = time.monotonic()
    with _stamps_lock:
        seen = _stamps.get(database)
    if seen is not None and not fresh and now - seen[0] < settings.locate_recheck_seconds:
        return seen[1]
    with sessions() as session:
        stamp = repo.data_stamp(session)
    with _stamps_lock:
        _stamps[database] = (now, stamp)
    return stamp


def _resolve_plan(
    sessions: sessionmaker[Session],
    settings: Settings,
    stamp: DataStamp,
    plan: int | None,
    actor: Principal,
) -> tuple[DataStamp, tuple[int, int] | None]:
    """(stamp, (plan id, version)) of the plan asked (or the active one; None when there is none)."""
    if plan is None or (stamp.active_plan is not None and stamp.active_plan[0] == plan):
        return stamp, stamp.active_plan
    actor.require(*PLAN_ROLES)
    version = stamp.plan_version(plan)
    if version is None:  # made in the last seconds? Ask the database before saying it does not exist.
        stamp = current_stamp(sessions, settings, fresh=True)
        version = stamp.plan_version(plan)
    if version is None:
        raise NotFoundError(f"no plan {plan}", problems=[FieldProblem("plan", str(plan))])
    return stamp, (plan, version)


def _layer_stamp(
    layer: Layer, stamp: DataStamp, plan: tuple[int, int] | None, now: dt.datetime
) -> tuple[Any, ...]:
    """The parts of the stamp this layer's tiles depend on."""
    parts: list[Any] = []
    for part in layer.depends_on:
        if part == "plan":
            parts.append(plan)
        elif part.startswith("batch:"):  # an import of that layer, or a demo load (which writes all)
            parts.append(stamp.last_batch_of(part.removeprefix("batch:"), "demo"))
        elif part == "cases":
            parts.append(stamp.last_case_event)
        elif part == "minute":  # "overdue" turns true as time passes, without any event
            parts.append(now.replace(second=0, microsecond=0).isoformat())
    return tuple(parts)


# --- the tile cache ------------------------------------------------------------------------------------


@dataclass
class CachedTile:
    """A tile as cached: its bytes (and gzip of them, made on first demand)."""

    content: bytes
    features: int
    truncated: bool
    gzipped: bytes | None = field(default=None)

    @property
    def size(self) -> int:
        """Bytes held."""
        return len(self.content) + len(self.gzipped or b"") + 200


_cache: OrderedDict[tuple[Any, ...], CachedTile] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()
_inflight: dict[tuple[Any, ...], threading.Event] = {}


def _cache_get(key: tuple[Any, ...]) -> CachedTile | None:
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return found


def _cache_put(key: tuple[Any, ...], tile: CachedTile, limit: int) -> None:
    global _cache_bytes
    if tile.size > limit:
        return
    with _cache_lock:
        old = _cache.pop(key, None)
        if old is not None:
            _cache_bytes -= old.size
        _cache[key] = tile
        _cache_bytes += tile.size
        while _cache_bytes > limit and _cache:
            _, evicted = _cache.popitem(last=False)
            _cache_bytes -= evicted.size


def _add_gzip(key: tuple[Any, ...], tile: CachedTile) -> bytes:
    """Compress a cached tile once (level 5: most of level 9's gain at a third of its time)."""
    global _cache_bytes
    packed = gzip.compress(tile.content, compresslevel=5, mtime=0)
    with _cache_lock:
        if tile.gzipped is None:
            tile.gzipped = packed
            if _cache.get(key) is tile:
                _cache_bytes += len(packed)
        return tile.gzipped


def clear_cache() -> None:
    """Forget every cached tile and stamp (tests; a process that changed data behind gridsvc's back)."""
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0
    with _stamps_lock:
        _stamps.clear()


def cache_info() -> dict[str, int]:
    """Tiles and bytes in the cache."""
    with _cache_lock:
        return {"tiles": len(_cache), "bytes": _cache_bytes}


# --- tiles ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TileAnswer:
    """What to send: 200 with bytes, 204 for an empty tile, 304 when the client's copy is current."""

    status: int
    etag: str
    content: bytes = b""
    content_encoding: str | None = None
    truncated: bool = False
    features: int = 0


def _etag(key: tuple[Any, ...]) -> str:
    return 'W/"' + hashlib.sha256(repr(key).encode()).hexdigest()[:24] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of If-None-Match against our ETag."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))


def tile(
    sessions: sessionmaker[Session],
    settings: Settings,
    layer_name: str,
    z: int,
    x: int,
    y: int,
    query: TileQuery,
    *,
    actor: Principal,
    if_none_match: str | None = None,
    accept_gzip: bool = False,
    revalidate: bool = False,
) -> TileAnswer:
    """One tile: from the cache, or rendered by PostGIS (``revalidate``: rendered anew and re-cached)."""
    actor.require(*ROLES)
    layer = layer_of(layer_name)
    query = check_query(layer, query)
    check_tile(z, x, y)
    stamp = current_stamp(sessions, settings)
    plan: tuple[int, int] | None = None
    if layer.per_plan:
        stamp, plan = _resolve_plan(sessions, settings, stamp, query.plan, actor)
    now = dt.datetime.now(dt.UTC)
    layer_stamp = _layer_stamp(layer, stamp, plan, now)
    key = (_database_key(sessions), layer.name, z, x, y, query, layer_stamp)
    etag = _etag(key[1:])
    if _matches(if_none_match, etag):
        return TileAnswer(304, etag)
    if z < layer.minzoom or (layer.per_plan and plan is None):
        return TileAnswer(204, etag)
    cached = None if revalidate else _cache_get(key)
    if cached is None:
        stored = _store_stamp(settings, layer, query, plan, stamp, layer_stamp)
        cached = _render_once(
            sessions, settings, layer, z, x, y, query, plan, key, stored=stored, revalidate=revalidate
        )
    if not cached.content:
        return TileAnswer(204, etag)
    if accept_gzip and len(cached.content) > 1024:
        packed = cached.gzipped or _add_gzip(key, cached)
        return TileAnswer(200, etag, packed, "gzip", cached.truncated, cached.features)
    return TileAnswer(200, etag, cached.content, None, cached.truncated, cached.features)


def _render_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    layer: Layer,
    z: int,
    x: int,
    y: int,
    query: TileQuery,
    plan: tuple[int, int] | None,
    key: tuple[Any, ...],
    *,
    stored: str | None,
    revalidate: bool,
) -> CachedTile:
    """A tile missing from the memory cache: from the tile store (``stored``: its stamp there, None for a
    tile never stored), else rendered (and stored); a second request for the same tile meanwhile waits
    for this one. ``revalidate`` renders anew whatever is kept."""
    while True:
        with _cache_lock:
            waiting = _inflight.get(key)
            if waiting is None:
                mine = threading.Event()
                _inflight[key] = mine
                break
        waiting.wait(timeout=30)
        found = _cache_get(key)
        if found is not None and not revalidate:
            return found
    try:
        found_stored = None
        if stored is not None and not revalidate:
            found_stored = repo.look_up_stored(sessions, layer.name, z=z, x=x, y=y, stamp=stored)
        rendered = found_stored or _render(sessions, settings, layer, z, x, y, query, plan)
        if stored is not None and found_stored is None and not revalidate:
            _keep(sessions, layer.name, stored, [(z, x, y, rendered)])
        tile = CachedTile(rendered.content, rendered.features, rendered.truncated)
        _cache_put(key, tile, settings.tile_cache_mb * 1024 * 1024)
        return tile
    finally:
        with _cache_lock:
            del _inflight[key]
        mine.set()


def _store_stamp(
    settings: Settings,
    layer: Layer,
    query: TileQuery,
    plan: tuple[int, int] | None,
    stamp: DataStamp,
    layer_stamp: tuple[Any, ...],
) -> str | None:
    """The stamp a tile is kept under in the tile store, or None when it is not kept there: a filtered
    tile, another plan than the active one, a case tile (stale within a minute), or the store is off."""
    if not settings.tile_store or "minute" in layer.depends_on:
        return None
    if query.classes or query.statuses or query.overdue:
        return None
    if layer.per_plan and (plan is None or plan != stamp.active_plan):
        return None
    return repr(layer_stamp)


def _keep(
    sessions: sessionmaker[Session],
    layer: str,
    stamp: str,
    tiles: list[tuple[int, int, int, repo.RenderedTile]],
) -> None:
    """Write rendered tiles to the store. A failure is logged, not raised: the user has the tile already,
    and the store is only a cache (the next request renders again)."""
    try:
        with sessions.begin() as session:
            repo.store_tiles(session, layer, stamp, tiles)
    except SQLAlchemyError:
        log.warning("could not keep %d tile(s) of %s in the tile store", len(tiles), layer, exc_info=True)


def _params(layer: Layer, query: TileQuery, plan: tuple[int, int] | None) -> dict[str, Any]:
    """The values a layer's statement needs besides the tile and the common ones."""
    params: dict[str, Any] = {}
    if layer.per_plan:
        params["plan"] = plan[0] if plan else -1
    if layer.name == "responsibility_grids":
        params["open_statuses"] = list(OPEN_STATUSES)
    if layer.name == "cases":
        params["statuses"] = list(query.statuses or OPEN_STATUSES)
        params["closed_statuses"] = list(OPEN311_CLOSED_STATUSES)
    return params


def _render(
    sessions: sessionmaker[Session],
    settings: Settings,
    layer: Layer,
    z: int,
    x: int,
    y: int,
    query: TileQuery,
    plan: tuple[int, int] | None,
) -> repo.RenderedTile:
    params = _params(layer, query, plan)
    # The tolerance in degrees of longitude of SIMPLIFY_UNITS tile units (a tile spans 360 / 2^z degrees).
    tolerance = SIMPLIFY_UNITS * 360.0 / (1 << z) / repo.EXTENT
    # Read-only; closing the session rolls back, which also ends the transaction-local settings.
    with sessions() as session:
        return repo.render_tile(
            session,
            layer.name,
            z=z,
            x=x,
            y=y,
            tolerance=tolerance,
            limit=MAX_FEATURES,
            timezone=settings.timezone,
            params=params,
            class_codes=query.classes,
            overdue_only=query.overdue,
        )


# --- seeding the tile store ------------------------------------------------------------------------------

# Seeding goes up to the zoom a dispatcher reads streets at; closer tiles are rendered when first asked.
SEED_MAX_ZOOM = 16
# Tiles rendered by one worker before it writes them to the store in one statement.
SEED_BATCH = 64


@dataclass(frozen=True)
class SeedResult:
    """What seeding one layer did."""

    layer: str
    min_zoom: int
    max_zoom: int
    tiles: int  # tiles that a bounding box of the layer's rows meets
    rendered: int  # of those, rendered now (the rest were stored at the current stamp already)
    features: int
    stored_bytes: int
    stale_forgotten: int  # stored tiles of an older stamp deleted first
    seconds: float


def seedable_layers() -> list[str]:
    """The layers kept in the tile store (all but those that change by the minute)."""
    return [name for name, layer in LAYERS.items() if "minute" not in layer.depends_on]


def seed(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    actor: Principal,
    layers: Sequence[str] = (),
    min_zoom: int | None = None,
    max_zoom: int = SEED_MAX_ZOOM,
    workers: int = 2,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[SeedResult]:
    """Render every tile with data of ``layers`` (default: all that are stored) from each layer's minimum
    zoom (or ``min_zoom``) to ``max_zoom`` into the tile store, at the data's current stamp.

    Tiles already stored at that stamp are skipped, so a seed that was stopped resumes where it stopped,
    and after an import only the layers it changed are drawn again. ``workers`` render in parallel (each
    with its own connection: the work is PostGIS's). ``progress(layer, done, total)`` is called as tiles
    are written.
    """
    actor.require("gis_staff")
    names = list(layers) or seedable_layers()
    problems = [
        FieldProblem(
            "layer", f"{name!r} is not kept in the tile store; the layers are {', '.join(seedable_layers())}"
        )
        for name in names
        if name not in seedable_layers()
    ]
    if not (0 <= max_zoom <= MAX_DATA_ZOOM):
        problems.append(FieldProblem("max_zoom", f"{max_zoom} is outside 0-{MAX_DATA_ZOOM}"))
    if min_zoom is not None and not (0 <= min_zoom <= max_zoom):
        problems.append(FieldProblem("min_zoom", f"{min_zoom} is outside 0-{max_zoom}"))
    if problems:
        raise InvalidInputError("the tile store cannot be seeded like this", problems=problems)
    if not settings.tile_store:
        raise InvalidInputError(
            "the tile store is off (GRIDSVC_TILE_STORE=false): nothing would use the seeded tiles",
            problems=[FieldProblem("tile_store", "false")],
        )
    stamp = current_stamp(sessions, settings, fresh=True)
    now = dt.datetime.now(dt.UTC)
    results = []
    for name in names:
        layer = LAYERS[name]
        plan = stamp.active_plan if layer.per_plan else None
        if layer.per_plan and plan is None:
            continue  # no active plan: its grid layers have no tiles to seed
        stored = repr(_layer_stamp(layer, stamp, plan, now))
        results.append(
            _seed_layer(sessions, settings, layer, plan, stored, min_zoom, max_zoom, workers, progress)
        )
    return results


def _seed_layer(
    sessions: sessionmaker[Session],
    settings: Settings,
    layer: Layer,
    plan: tuple[int, int] | None,
    stored: str,
    min_zoom: int | None,
    max_zoom: int,
    workers: int,
    progress: Callable[[str, int, int], None] | None,
) -> SeedResult:
    started = time.perf_counter()
    params = _params(layer, TileQuery(), plan)
    lowest = max(layer.minzoom, min_zoom if min_zoom is not None else layer.minzoom)
    zooms = range(lowest, max_zoom + 1)
    with sessions.begin() as session:
        forgotten = repo.forget_stale_tiles(session, layer.name, stored)
    todo: list[tuple[int, int, int]] = []
    listed = 0
    with sessions() as session:
        for z in zooms:
            addresses = repo.tiles_with_data(session, layer.name, z=z, params=params)
            listed += len(addresses)
            have = repo.stored_addresses(session, layer.name, z=z, stamp=stored)
            todo += [(z, x, y) for x, y in addresses if (x, y) not in have]
    batches = [todo[i : i + SEED_BATCH] for i in range(0, len(todo), SEED_BATCH)]
    done = features = size = 0
    lock = threading.Lock()

    def render_batch(batch: list[tuple[int, int, int]]) -> None:
        nonlocal done, features, size
        rendered = [
            (z, x, y, _render(sessions, settings, layer, z, x, y, TileQuery(), plan)) for z, x, y in batch
        ]
        with sessions.begin() as session:
            repo.store_tiles(session, layer.name, stored, rendered)
        with lock:
            done += len(batch)
            features += sum(tile.features for *_, tile in rendered)
            size += sum(len(tile.content) for *_, tile in rendered)
            if progress is not None:
                progress(layer.name, done, len(todo))

    if progress is not None:
        progress(layer.name, 0, len(todo))
    if workers <= 1:  # also for sessions bound to one connection (the tests'), which threads may not share
        for batch in batches:
            render_batch(batch)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for finished in [pool.submit(render_batch, batch) for batch in batches]:
                finished.result()  # the first failure stops the seed and says why
    return SeedResult(
        layer=layer.name,
        min_zoom=zooms.start,
        max_zoom=max_zoom,
        tiles=listed,
        rendered=done,
        features=features,
        stored_bytes=size,
        stale_forgotten=forgotten,
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class StoreRow:
    """Stored tiles of one layer at one zoom; ``current`` of them drawn at the data's current stamp."""

    layer: str
    z: int
    tiles: int
    current: int
    stored_bytes: int


def store_status(sessions: sessionmaker[Session], settings: Settings) -> list[StoreRow]:
    """What the tile store holds, per layer and zoom."""
    stamp = current_stamp(sessions, settings, fresh=True)
    now = dt.datetime.now(dt.UTC)
    with sessions() as session:
        contents = repo.store_contents(session)
    rows: dict[tuple[str, int], StoreRow] = {}
    for name, z, stored, n, size in contents:
        layer = LAYERS.get(name)
        plan = stamp.active_plan if layer is not None and layer.per_plan else None
        current = layer is not None and stored == repr(_layer_stamp(layer, stamp, plan, now))
        old = rows.get((name, z), StoreRow(name, z, 0, 0, 0))
        rows[(name, z)] = StoreRow(
            name, z, old.tiles + n, old.current + (n if current else 0), old.stored_bytes + size
        )
    return list(rows.values())


def clear_store(sessions: sessionmaker[Session], *, actor: Principal) -> int:
    """Empty the tile store; how many tiles were deleted."""
    actor.require("gis_staff")
    with sessions.begin() as session:
        return repo.clear_store(session)


# --- TileJSON -------------------------------------------------------------------------------------------


def tilejson(
    sessions: sessionmaker[Session],
    settings: Settings,
    layer_name: str,
    query: TileQuery,
    *,
    actor: Principal,
    tiles_url: str,
) -> dict[str, Any]:
    """TileJSON 3.0.0 of a layer; ``tiles_url`` is the tile URL template with its query string."""
    actor.require(*ROLES)
    layer = layer_of(layer_name)
    query = check_query(layer, query)
    if layer.per_plan and query.plan is not None:
        _resolve_plan(sessions, settings, current_stamp(sessions, settings), query.plan, actor)
    minx, miny, maxx, maxy = settings.city_bbox
    return {
        "tilejson": "3.0.0",
        "name": layer.name,
        "description": layer.description,
        "version": "1.0.0",
        "attribution": settings.city_name,
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": layer.minzoom,
        "maxzoom": MAX_DATA_ZOOM,
        "bounds": [minx, miny, maxx, maxy],
        "center": [round((minx + maxx) / 2, 6), round((miny + maxy) / 2, 6), max(layer.minzoom, 12)],
        "vector_layers": [
            {
                "id": layer.name,
                "description": f"{layer.title}: {layer.description}",
                "minzoom": layer.minzoom,
                "maxzoom": MAX_DATA_ZOOM,
                "fields": layer.fields,
            }
        ],
    }


def layer_list() -> list[dict[str, Any]]:
    """The layers, for the index of /v1/tiles."""
    return [
        {
            "name": layer.name,
            "title": layer.title,
            "description": layer.description,
            "minzoom": layer.minzoom,
            "per_plan": layer.per_plan,
            "filters": list(layer.filters),
            "fields": layer.fields,
        }
        for layer in LAYERS.values()
    ]


def parse_classes(values: Sequence[str] | None) -> tuple[str, ...]:
    """Class codes from repeated or comma-separated parameters."""
    return tuple(part.strip() for value in values or () for part in value.split(",") if part.strip())
