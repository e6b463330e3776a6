"""Vector tiles: one SQL statement per tile (``ST_AsMVT``), and the stamp that says when tiles go stale.

Every layer's statement has the same shape: the rows whose geometry meets the tile (``&&`` on the GiST
index, then ``ST_Intersects`` with the tile's envelope in the storage CRS), simplified in lon/lat by a
tolerance the service derives from the zoom (before ``ST_Transform``, so fewer vertices are projected),
clipped by ``ST_AsMVTGeom`` into the tile's 4096-unit grid with a 256-unit buffer, at most ``limit`` rows
in a stable pseudo-random order (``hashint8(id)``: a truncated tile thins evenly instead of losing a
corner; a tile at the limit is flagged).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
from sqlalchemy import Engine, TextClause, text
from sqlalchemy.orm import Session, sessionmaker

# MVT grid and buffer, in tile units (the usual 4096 / 256, as tipg and pg_tileserv use).
EXTENT = 4096
BUFFER = 256

_ENVELOPE = "ST_Transform(ST_TileEnvelope(:z, :x, :y), 4490)"


def _geometry(column: str, *, simplify: bool) -> str:
    """The clipped tile geometry of ``column`` (simplified first, in lon/lat, when asked)."""
    source = f"ST_Simplify({column}, :tolerance, true)" if simplify else column
    return (
        f"ST_AsMVTGeom(ST_Transform({source}, 3857), ST_TileEnvelope(:z, :x, :y), {EXTENT}, {BUFFER}, true)"
    )


def _meets_tile(column: str) -> str:
    return f"{column} && {_ENVELOPE} AND ST_Intersects({column}, {_ENVELOPE})"


@dataclass(frozen=True)
class LayerSql:
    """The row query of one layer: columns (``_fid``, when there, becomes the MVT feature id), FROM, WHERE."""

    columns: str
    source: str
    geom: str
    where: str  # which rows the layer shows (the tile's own condition is added to it)
    order: str  # a stable pseudo-random order: which rows a truncated tile keeps
    simplify: bool
    feature_id: bool = True
    prefix: str = ""  # CTEs the row query needs (ends with a comma)


# The open statuses are listed (not "NOT IN closed, rejected") so the status index finds them.
_OPEN_CASES = """
    open_cases AS (
        SELECT responsibility_grid_id AS id, count(*) AS n FROM case_record
        WHERE status = ANY(:open_statuses) AND responsibility_grid_id IS NOT NULL
        GROUP BY responsibility_grid_id
    ),
"""

LAYERS: dict[str, LayerSql] = {
    "responsibility_grids": LayerSql(
        prefix=_OPEN_CASES,
        columns="""
            r.id AS _fid, r.code, r.community_code, c.name AS community_name,
            coalesce(st.name, (SELECT s2.name FROM station s2 WHERE s2.community_code = r.community_code
                               ORDER BY s2.id LIMIT 1)) AS station_name,
            r.worker_name, r.households, r.workload::float8 AS workload, coalesce(oc.n, 0)::int AS open_cases
        """,
        source="""
            responsibility_grid r
            JOIN community c ON c.code = r.community_code
            LEFT JOIN station st ON st.id = r.station_id
            LEFT JOIN open_cases oc ON oc.id = r.id
        """,
        geom="r.geom",
        where="r.plan_id = :plan",
        order="hashint8(r.id)",
        simplify=True,
    ),
    "unit_grids": LayerSql(
        columns="u.id AS _fid, u.code, u.community_code, r.code AS responsibility_grid_code",
        source="unit_grid u LEFT JOIN responsibility_grid r ON r.id = u.responsibility_grid_id",
        geom="u.geom",
        where="u.plan_id = :plan",
        order="hashint8(u.id)",
        simplify=True,
    ),
    "components": LayerSql(
        columns="c.id AS _fid, c.code, c.class_code, k.name_zh AS class_name, c.name, c.status",
        source="component c JOIN component_class k ON k.code = c.class_code",
        geom="c.geom",
        where="c.valid_to IS NULL AND c.in_use",
        order="hashint8(c.id)",
        simplify=True,  # lines and polygons may be components too; a point is left as it is
    ),
    # Never reporter_contact, description or address: what a reporter wrote stays out of tiles.
    "cases": LayerSql(
        columns="""
            k.id AS _fid, k.request_code, k.status, k.kind,
            coalesce(k.component_class_code, k.event_class_code) AS class_code,
            coalesce(cc.name_zh, ec.name_zh) AS class_name,
            to_char(k.deadline, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM') AS deadline,
            (k.deadline IS NOT NULL AND k.deadline < now() AND k.status <> ALL(:closed_statuses)) AS overdue
        """,
        source="""
            case_record k
            LEFT JOIN component_class cc ON cc.code = k.component_class_code
            LEFT JOIN event_class ec ON ec.code = k.event_class_code
        """,
        geom="k.geom",
        where="k.status = ANY(:statuses)",
        order="hashint8(k.id)",
        simplify=False,
    ),
    "stations": LayerSql(
        columns="s.id AS _fid, s.id, s.code, s.name, s.phone, s.community_code",
        source="station s",
        geom="s.geom",
        where="true",
        order="hashint8(s.id)",
        simplify=False,
    ),
    "communities": LayerSql(
        columns="c.code, c.name",
        source="community c",
        geom="c.geom",
        where="true",
        order="hashtext(c.code)",
        simplify=True,
        feature_id=False,
    ),
}


@dataclass(frozen=True)
class RenderedTile:
    """A tile's bytes, its feature count, and whether it reached the feature limit (there may be more)."""

    content: bytes
    features: int
    truncated: bool


@functools.lru_cache(maxsize=64)
def _statement(layer: str, *, classes: bool, overdue_only: bool) -> TextClause:
    """The tile statement of a layer (made once per variant: building and parsing it is not free)."""
    sql = LAYERS[layer]
    where = [sql.where, _meets_tile(sql.geom)]
    if classes:
        if layer == "components":
            where.append("c.class_code = ANY(:classes)")
        else:
            where.append(
                "(coalesce(k.component_class_code, k.event_class_code) = ANY(:classes)"
                " OR 'C' || k.component_class_code = ANY(:classes)"
                " OR 'E' || k.event_class_code = ANY(:classes))"
            )
    if overdue_only:
        where.append("k.deadline < now()")
    feature_id = "'_fid'" if sql.feature_id else "NULL"
    prefix = f"WITH {sql.prefix.strip().rstrip(',')}" if sql.prefix else ""
    # jit off: a tile is a few milliseconds of work, LLVM compilation costs more than it saves. The time
    # zone makes deadlines read in the city's local time. Both are local to the transaction, which the
    # caller rolls back.
    return text(
        f"""
        SELECT set_config('jit', 'off', true), set_config('TimeZone', :timezone, true);
        {prefix}
        SELECT ST_AsMVT(t, :layer, {EXTENT}, 'geom', {feature_id}), count(t.geom), count(*)
        FROM (
            SELECT {sql.columns}, {_geometry(sql.geom, simplify=sql.simplify)} AS geom
            FROM {sql.source}
            WHERE {" AND ".join(where)}
            ORDER BY {sql.order}
            LIMIT :limit
        ) t
        """
    )


def render_tile(
    session: Session,
    layer: str,
    *,
    z: int,
    x: int,
    y: int,
    tolerance: float,
    limit: int,
    timezone: str,
    params: dict[str, Any],
    class_codes: Sequence[str] = (),
    overdue_only: bool = False,
) -> RenderedTile:
    """One tile of ``layer`` in one statement; ``params`` fills the layer's own placeholders.

    ``class_codes`` filters components (their class) and cases (their class, ``C``/``E`` prefixed to
    name the kind, as Open311 service codes do); ``overdue_only`` keeps the cases past their deadline.
    """
    values: dict[str, Any] = {
        "z": z,
        "x": x,
        "y": y,
        "tolerance": tolerance,
        "limit": limit,
        "layer": layer,
        "timezone": timezone,
        "classes": list(class_codes),
        **params,
    }
    statement = _statement(layer, classes=bool(class_codes), overdue_only=overdue_only)
    content, features, rows = session.execute(statement, values).one()
    return RenderedTile(
        content=bytes(content) if content is not None else b"",
        features=int(features),
        truncated=rows >= limit,
    )


# --- the tile store (migration 0010): rendered tiles kept with the stamp they were drawn at -------------

# Web mercator's half width in metres: tile x/y of a 3857 coordinate are (half + x) / size, (half - y) / size.
_MERCATOR_HALF = 20037508.342789244


def stored_tile(session: Session, layer: str, *, z: int, x: int, y: int, stamp: str) -> RenderedTile | None:
    """The stored tile, when there is one drawn at ``stamp`` (a row of another stamp is stale: None)."""
    row = session.execute(
        text(
            "SELECT content, features, truncated FROM tile_store "
            "WHERE layer = :layer AND z = :z AND x = :x AND y = :y AND stamp = :stamp"
        ),
        {"layer": layer, "z": z, "x": x, "y": y, "stamp": stamp},
    ).first()
    if row is None:
        return None
    return RenderedTile(content=bytes(row.content), features=row.features, truncated=row.truncated)


_STORED_TILE = (
    "SELECT content, features, truncated FROM tile_store "
    "WHERE layer = %s AND z = %s AND x = %s AND y = %s AND stamp = %s"
)


def stored_tile_autocommit(
    dbapi_connection: Any, layer: str, *, z: int, x: int, y: int, stamp: str
) -> RenderedTile | None:
    """``stored_tile`` on a bare psycopg2 connection in autocommit: one round trip instead of three (no
    BEGIN, no ROLLBACK), which is most of what answering from the store costs."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute(_STORED_TILE, (layer, z, x, y, stamp))
        row = cursor.fetchone()
    if row is None:
        return None
    return RenderedTile(content=bytes(row[0]), features=int(row[1]), truncated=bool(row[2]))


def look_up_stored(
    sessions: sessionmaker[Session], layer: str, *, z: int, x: int, y: int, stamp: str
) -> RenderedTile | None:
    """The stored tile at ``stamp``, if any. On the service's engine it is read on a pooled connection in
    autocommit (one statement needs no transaction around it: that saves two of three round trips);
    bound to a connection (the tests' transaction), through a session on it."""
    bind = sessions.kw.get("bind")
    if isinstance(bind, Engine):
        raw = bind.raw_connection()
        driver: Any = raw.driver_connection
        try:
            driver.autocommit = True
            try:
                return stored_tile_autocommit(driver, layer, z=z, x=x, y=y, stamp=stamp)
            finally:
                driver.autocommit = False  # never back to the pool in autocommit, whatever happened
        except psycopg2.Error:
            # The bare driver's error is not SQLAlchemy's: drop the connection and ask again through a
            # session, whose error (the database went away: 503) the service knows how to answer.
            raw.invalidate()
        finally:
            raw.close()  # back to the pool (or, invalidated, replaced)
    with sessions() as session:
        return stored_tile(session, layer, z=z, x=x, y=y, stamp=stamp)


def store_tiles(
    session: Session, layer: str, stamp: str, tiles: Sequence[tuple[int, int, int, RenderedTile]]
) -> None:
    """Keep rendered tiles (z, x, y, tile) of ``layer`` drawn at ``stamp``, replacing what was there."""
    if not tiles:
        return
    session.execute(
        text(
            """
            INSERT INTO tile_store (layer, z, x, y, stamp, content, features, truncated)
            VALUES (:layer, :z, :x, :y, :stamp, :content, :features, :truncated)
            ON CONFLICT (layer, z, x, y) DO UPDATE SET
                stamp = EXCLUDED.stamp, content = EXCLUDED.content, features = EXCLUDED.features,
                truncated = EXCLUDED.truncated, rendered_at = now()
            """
        ),
        [
            {
                "layer": layer,
                "z": z,
                "x": x,
                "y": y,
                "stamp": stamp,
                "content": tile.content,
                "features": tile.features,
                "truncated": tile.truncated,
            }
            for z, x, y, tile in tiles
        ],
    )


def forget_stale_tiles(session: Session, layer: str, stamp: str) -> int:
    """Delete the stored tiles of ``layer`` drawn at any other stamp; how many."""
    result = session.execute(
        text("DELETE FROM tile_store WHERE layer = :layer AND stamp <> :stamp"),
        {"layer": layer, "stamp": stamp},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def stored_addresses(session: Session, layer: str, *, z: int, stamp: str) -> set[tuple[int, int]]:
    """(x, y) of the tiles of ``layer`` at zoom ``z`` already stored at ``stamp``."""
    rows = session.execute(
        text("SELECT x, y FROM tile_store WHERE layer = :layer AND z = :z AND stamp = :stamp"),
        {"layer": layer, "z": z, "stamp": stamp},
    ).all()
    return {(int(x), int(y)) for x, y in rows}


def tiles_with_data(session: Session, layer: str, *, z: int, params: dict[str, Any]) -> list[tuple[int, int]]:
    """(x, y) of every tile at zoom ``z`` that the bounding box of one of the layer's rows meets.

    A superset of the tiles with features (a box may meet a tile its shape misses); computed from the
    boxes in one statement, so even the 50,000 tiles of a city at zoom 16 are listed in seconds.
    """
    sql = LAYERS[layer]
    size = 2 * _MERCATOR_HALF / (1 << z)
    rows = session.execute(
        text(
            f"""
            {f"WITH {sql.prefix.strip().rstrip(',')}" if sql.prefix else ""}
            SELECT DISTINCT tx, ty FROM (
                SELECT ST_Transform(ST_Envelope({sql.geom}), 3857) AS box
                FROM {sql.source} WHERE {sql.where}
            ) b,
            LATERAL generate_series(
                greatest(floor((ST_XMin(box) + :half) / :size)::int, 0),
                least(floor((ST_XMax(box) + :half) / :size)::int, :last)) tx,
            LATERAL generate_series(
                greatest(floor((:half - ST_YMax(box)) / :size)::int, 0),
                least(floor((:half - ST_YMin(box)) / :size)::int, :last)) ty
            ORDER BY tx, ty
            """
        ),
        {"half": _MERCATOR_HALF, "size": size, "last": (1 << z) - 1, **params},
    ).all()
    return [(int(x), int(y)) for x, y in rows]


def store_contents(session: Session) -> list[tuple[str, int, str, int, int]]:
    """(layer, zoom, stamp, tiles, bytes) of the tile store."""
    rows = session.execute(
        text(
            "SELECT layer, z, stamp, count(*), sum(octet_length(content)) FROM tile_store "
            "GROUP BY layer, z, stamp ORDER BY layer, z"
        )
    ).all()
    return [(str(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4] or 0)) for r in rows]


def clear_store(session: Session) -> int:
    """Delete every stored tile; how many."""
    result = session.execute(text("DELETE FROM tile_store"))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DataStamp:
    """What tiles depend on, read in one query: the plans, the last import of each layer, the last case
    event."""

    plans: tuple[tuple[int, int, str], ...]  # (id, version, status) of every plan
    last_batches: tuple[tuple[str, int], ...]  # (layer, id of its last survey batch) per imported layer
    last_case_event: int

    def last_batch_of(self, *layers: str) -> int:
        """The id of the last survey batch that imported one of ``layers`` (0 when none did)."""
        return max((i for layer, i in self.last_batches if layer in layers), default=0)

    @property
    def active_plan(self) -> tuple[int, int] | None:
        """(id, version) of the active plan, if any."""
        return next(((i, v) for i, v, status in self.plans if status == "active"), None)

    def plan_version(self, plan_id: int) -> int | None:
        """A plan's version, or None when there is no such plan."""
        return next((v for i, v, _ in self.plans if i == plan_id), None)


def data_stamp(session: Session) -> DataStamp:
    """The stamp: a handful of rows (plans, survey batches) and an index look-up (max of a primary key)."""
    row = session.execute(
        text(
            """
            SELECT (SELECT coalesce(json_agg(json_build_array(id, version, status) ORDER BY id), '[]')
                    FROM grid_plan),
                   (SELECT coalesce(json_agg(json_build_array(layer, last) ORDER BY layer), '[]')
                    FROM (SELECT layer, max(id) AS last FROM survey_batch GROUP BY layer) b),
                   (SELECT coalesce(max(id), 0) FROM case_event)
            """
        )
    ).one()
    plans = tuple((int(i), int(v), str(s)) for i, v, s in row[0])
    batches = tuple((str(layer), int(last)) for layer, last in row[1])
    return DataStamp(plans=plans, last_batches=batches, last_case_event=int(row[2]))
