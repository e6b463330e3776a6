"""Imports: a staging table filled by COPY, then set-based SQL that versions, assigns grids and retires.

Row-by-row upserts would take hours for a city's census; here every step is one statement over the
whole staging table, inside the caller's transaction. Components arrive chunk by chunk as COPY text
(encoded by the service, see :data:`CHUNK_COLUMNS`); each chunk finds its grids in SQL on its way
into the stage, so that lookup runs while the service reads the next chunk.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, cast

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import psycopg2.errors
import psycopg2.extensions
import shapely
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from gis import validate
from gridsvc.db.models import STORAGE_SRID, SurveyBatch
from gridsvc.repositories import bulk
from gridsvc.repositories.grid_rule import GridRule, unit_grid_of

STAGE = "import_stage"
# One chunk of rows as COPY sends it, on its way into the stage when its grids are found in SQL.
CHUNK = "import_chunk"
CHUNK_COLUMNS = (
    "code",
    "class_code",
    "name",
    "status",
    "owner",
    "owner_department_code",
    "maintainer_department_code",
    "attributes",
    "geom",
    "unit_grid_id",
    "responsibility_grid_id",
)
_COPY_SQL = "COPY {table} ({columns}) FROM STDIN"
# psycopg2 sends a COPY in blocks of this many bytes (its default, 8 KiB, costs a call per block).
_COPY_BLOCK = 1 << 20
_TEXT = np.dtypes.StringDType()
# COPY's text format: backslash first, so the escapes added after it are not doubled.
_COPY_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_NULL = "\\N"
# SQLSTATEs of a lock not taken in time and of a deadlock, both answered by not rebuilding.
_LOCK_NOT_AVAILABLE = "55P03"
_DEADLOCK_DETECTED = "40P01"
# Sorting memory for the rebuild: enough to build the indexes of a few million components in memory.
_REBUILD_MEMORY = "256MB"
_HEX = np.array([f"{i:02X}".encode() for i in range(256)], dtype="S2")

# Two geometries of one component, boundary, station or road are the same shape when their vertices lie
# this close, in storage degrees (1e-7° is 1.1 cm of latitude and 0.9 cm of longitude at Jinan). A file
# exported in a Gauss-Krüger zone or GCJ-02 and imported again moves each vertex by under 1e-9°, FileGDB's
# coordinate grid by up to 5e-10°, GeoJSON written to 7 decimals by up to 5e-8°; the best survey accuracy
# class (A, ±0.5 m) is fifty times coarser. Compared byte for byte instead, a census exported in zone 39,
# checked in QGIS and imported unchanged gave nine in ten of its components a new version. The file's own
# rows are matched with the same tolerance (gis/validate: roads drawn twice in one file).
SAME_SHAPE_DEGREES: Final = validate.SAME_SHAPE_DEGREES


def same_shape(a: str, b: str) -> str:
    """SQL: whether geometry expressions ``a`` and ``b`` are the same shape: equal bytes, or the same type
    (a single-part multi geometry counting as its part) and the same vertices in the same order
    (matched by their path: part, ring, number), each within :data:`SAME_SHAPE_DEGREES` of its match.
    The byte comparison comes first, so a file imported again as it was costs nothing more; a point is
    one distance; a line or polygon one pass over its vertices (GEOS's Hausdorff distance measures every
    vertex against every segment: minutes for a boundary of 250,000 vertices), and a line drawn the
    other way is a change.

    A ring has no direction or first vertex of its own (a Shapefile writes shells clockwise, QGIS may
    start a ring anywhere), so polygons that do not match as written are matched again with their rings
    turned clockwise (first vertices kept), then normalised (ST_Normalize: each ring from its least
    vertex, parts in order). Normalising alone would not do: where two vertices tie for least (a grid
    cell's western edge), nanodegrees of a zone-39 round trip pick the start, and a cell would differ
    from itself."""
    tolerance = repr(SAME_SHAPE_DEGREES)

    def vertices_match(x: str, y: str) -> str:
        # Aliases no caller uses: ``a`` may be ``p.geom`` of an outer query.
        return (
            f"(SELECT count(*) = ST_NPoints({a}) AND bool_and(ST_DWithin(vertex_a.geom, vertex_b.geom, "
            f"{tolerance})) FROM ST_DumpPoints({x}) vertex_a JOIN ST_DumpPoints({y}) vertex_b USING (path))"
        )

    # Lines and polygons are compared as multi-part ones: QGIS, ArcGIS and every FileGDB write a polygon
    # as a MultiPolygon of one part, which is the same shape as the Polygon another format holds.
    multi_a, multi_b = f"ST_Multi({a})", f"ST_Multi({b})"
    polygon = f"GeometryType({multi_a}) = 'MULTIPOLYGON'"
    clockwise_a, clockwise_b = f"ST_ForcePolygonCW({multi_a})", f"ST_ForcePolygonCW({multi_b})"
    return (
        f"(ST_AsBinary({a}) = ST_AsBinary({b}) OR (GeometryType({multi_a}) = GeometryType({multi_b}) "
        f"AND ST_NPoints({a}) = ST_NPoints({b}) "
        f"AND CASE WHEN GeometryType({a}) = 'POINT' AND GeometryType({b}) = 'POINT' "
        f"THEN ST_DWithin({a}, {b}, {tolerance}) "
        f"ELSE coalesce({vertices_match(multi_a, multi_b)} "
        f"OR ({polygon} AND ({vertices_match(clockwise_a, clockwise_b)} "
        f"OR {vertices_match(f'ST_Normalize({multi_a})', f'ST_Normalize({multi_b})')})), false) END))"
    )


# A free attribute's value as the text a CSV of it reads: a number as written without trailing zeros
# (a GeoPackage Real 150.0 is the 150 a CSV, ogr2ogr's or Excel's, holds), true/false in lower case (pandas
# writes True), an empty text as no value. Other text stays as it is: "0531" is not 531.
_AS_CSV_TEXT = """
    CASE jsonb_typeof(value)
        WHEN 'number' THEN trim_scale((value #>> '{}')::numeric)::text
        WHEN 'string' THEN CASE WHEN lower(value #>> '{}') IN ('true', 'false') THEN lower(value #>> '{}')
                                ELSE nullif(value #>> '{}', '') END
        ELSE value #>> '{}'
    END
"""


def same_attributes(a: str, b: str) -> str:
    """SQL: whether jsonb objects ``a`` and ``b`` hold the same free attributes: equal, or equal once each
    value is read as the text a CSV holds of it. A CSV has no types, so a census surveyed again as CSV
    reads 灯杆高度 12.5 as "12.5", 功率 150.0 as "150" and 亮灯 true as "True": the same values GIS staff
    wrote, not changes (nor is "0531" 531: texts must match). Nor is an empty text against no value: a
    GeoPackage's "" is a CSV's blank cell, which reads as null. And a null is no value, as much as a key
    that is not there: a column added to an export and filled in on a few rows (QGIS fills the rest with
    NULL) changes those rows only."""
    a_text, b_text = (
        f"(SELECT coalesce(jsonb_object_agg(key, csv_text), '{{}}') FROM jsonb_each({o}),"
        f" LATERAL (SELECT {_AS_CSV_TEXT} AS csv_text) v WHERE csv_text IS NOT NULL)"
        for o in (a, b)
    )
    return f"coalesce({a} = {b} OR {a_text} = {b_text}, false)"


# Imports of one layer take turns: pg_advisory_xact_lock(IMPORT_LOCK, the layer's number) for each.
IMPORT_LOCK = 0x696D7074  # "impt"
_LAYER_NUMBERS = {"components": 1, "boundaries": 2, "stations": 3, "net": 4, "roads": 5}


def try_import_lock(session: Session, layer: str) -> bool:
    """Take ``layer``'s import lock for this transaction; False when another import of it holds it."""
    return bool(
        session.execute(
            text("SELECT pg_try_advisory_xact_lock(:k, :layer)"),
            {"k": IMPORT_LOCK, "layer": _LAYER_NUMBERS[layer]},
        ).scalar_one()
    )


def wait_for_import_lock(session: Session, layer: str) -> None:
    """Take ``layer``'s import lock for this transaction, waiting for the import that holds it to end."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(:k, :layer)"), {"k": IMPORT_LOCK, "layer": _LAYER_NUMBERS[layer]}
    )


def component_classes(session: Session) -> dict[str, str]:
    """Class code -> geometry kind."""
    rows = session.execute(text("SELECT code, geometry_kind FROM component_class")).all()
    return {code: kind for code, kind in rows}


def counties(session: Session) -> gpd.GeoDataFrame:
    """The loaded districts (code, name, geometry) for code-prefix checks."""
    return gpd.read_postgis(
        "SELECT code, name, geom FROM district ORDER BY code", session.connection(), geom_col="geom"
    )


def lock_active_plan(session: Session) -> tuple[int, int] | None:
    """The active plan's (id, version), share-locked until the transaction ends; None without one.

    Why the lock: an import gives its components the grids of the plan active when they are staged,
    and an activation re-grids only the components it can see, i.e. committed ones. Without the lock an
    activation committing while an import runs would leave the import's components on the retired
    plan's grids. Activation takes the active plan ``FOR UPDATE`` before it re-grids
    (services/plans.activate_plan), so it waits here until the import has committed and then re-grids
    its components too; an import that starts during an activation waits for it and uses the new plan.
    ``FOR SHARE`` does not conflict with itself, so imports still run side by side. Some lock is needed
    even when grids are found in the last statement (the race is then shorter, not gone); taking it only
    at the end would let an activation wait less, but would need a second grid pass whenever one slipped
    in between. Tested in tests/services/test_import_plan_lock.py.
    """
    # An activation that committed while we waited leaves the row we found retired (and this statement's
    # snapshot does not see its new plan as active yet): ask once more.
    for _ in range(2):
        row = session.execute(
            text("SELECT id, version FROM grid_plan WHERE status = 'active' FOR SHARE")
        ).one_or_none()
        if row is not None:
            return int(row[0]), int(row[1])
    return None


def active_plan(session: Session) -> tuple[int, int] | None:
    """The active plan's (id, version), unlocked: for a dry run, which writes nothing an activation could
    miss (see :func:`lock_active_plan`)."""
    row = session.execute(text("SELECT id, version FROM grid_plan WHERE status = 'active'")).one_or_none()
    return None if row is None else (int(row[0]), int(row[1]))


def clock(session: Session) -> dt.datetime:
    """The database's wall clock (not the transaction start, so two imports in one transaction order)."""
    return cast(dt.datetime, session.execute(text("SELECT clock_timestamp()")).scalar_one())


def department_codes(session: Session, names: Sequence[str]) -> dict[str, str | None]:
    """Which department each text names (by code, Chinese or English name, ignoring case), else None.

    The comparison is PostgreSQL's ``lower()``, so a name matches here exactly when it matches in SQL.
    """
    found: dict[str, str | None] = dict.fromkeys(names, None)
    if names:
        rows = session.execute(
            text(
                """
                SELECT t.name, min(d.code) FROM unnest(CAST(:names AS text[])) AS t(name)
                JOIN department d ON lower(t.name) IN (lower(d.code), lower(d.name_zh), lower(d.name_en))
                GROUP BY t.name
                """
            ),
            {"names": list(names)},
        ).all()
        found.update({str(name): str(code) for name, code in rows})
    return found


def create_component_stage(session: Session) -> None:
    """Temporary tables for this transaction: the stage, and one chunk on its way into it."""
    # Dropped at commit; dropped here too, for a second import inside one outer transaction (savepoints).
    session.execute(text(f"DROP TABLE IF EXISTS {STAGE}, {CHUNK}, import_diff, import_missing"))
    session.execute(
        text(
            f"""
            CREATE TEMP TABLE {CHUNK} (
                code text NOT NULL,
                class_code text NOT NULL,
                name text,
                status text NOT NULL,
                owner text,
                owner_department_code text,
                maintainer_department_code text,
                attributes jsonb NOT NULL,
                geom geometry(Geometry, {STORAGE_SRID}) NOT NULL,
                unit_grid_id integer,
                responsibility_grid_id integer
            ) ON COMMIT DROP
            """
        )
    )
    session.execute(text(f"CREATE TEMP TABLE {STAGE} ON COMMIT DROP AS SELECT * FROM {CHUNK} WITH NO DATA"))


# Staged or written rows as the report shows them, with the unit grid (for the counts; not a report column).
_AS_REPORTED = """
    code, class_code, name, status, owner, owner_department_code AS supervisor,
    maintainer_department_code AS maintainer, attributes, unit_grid_id, ST_AsBinary(geom) AS wkb
"""


def unstage_components(session: Session, codes: Sequence[str]) -> gpd.GeoDataFrame:
    """Take the staged rows of ``codes`` out of the stage; returns them as the report shows rows (code,
    class_code, name, status, owner, supervisor and maintainer as department codes, attributes, geometry)
    and their ``unit_grid_id``."""
    return _as_reported(
        session.execute(
            text(f"DELETE FROM {STAGE} WHERE code = ANY(CAST(:codes AS text[])) RETURNING {_AS_REPORTED}"),
            {"codes": list(codes)},
        )
    )


def unwrite_components(session: Session, codes: Sequence[str], *, batch_id: int) -> gpd.GeoDataFrame:
    """Take the rows of ``codes`` that :func:`write_new_components` wrote for batch ``batch_id`` out of
    component again; returns them as :func:`unstage_components` does."""
    return _as_reported(
        session.execute(
            text(
                f"""
                DELETE FROM component WHERE code = ANY(CAST(:codes AS text[])) AND valid_to IS NULL
                  AND survey_batch_id = :batch
                RETURNING {_AS_REPORTED}
                """
            ),
            {"codes": list(codes), "batch": batch_id},
        )
    )


def _as_reported(result: Any) -> gpd.GeoDataFrame:
    rows = result.mappings().all()
    columns = [
        "code",
        "class_code",
        "name",
        "status",
        "owner",
        "supervisor",
        "maintainer",
        "attributes",
        "unit_grid_id",
    ]
    return gpd.GeoDataFrame(
        {c: [r[c] for r in rows] for c in columns},
        geometry=shapely.from_wkb([bytes(r["wkb"]) for r in rows]),
        crs=STORAGE_SRID,
    )


def unit_grid_count(session: Session, plan_id: int) -> int:
    """How many unit grids plan ``plan_id`` has."""
    count = session.execute(text("SELECT count(*) FROM unit_grid WHERE plan_id = :plan"), {"plan": plan_id})
    return int(count.scalar_one())


def unit_grids_by_code(
    session: Session, plan_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Plan ``plan_id``'s unit grids ordered by code: (ids, responsibility grid ids or -1, geometries)."""
    rows = session.execute(
        text(
            "SELECT id, coalesce(responsibility_grid_id, -1), ST_AsBinary(geom) FROM unit_grid "
            "WHERE plan_id = :plan ORDER BY code"
        ),
        {"plan": plan_id},
    ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    responsibility = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    geoms = shapely.from_wkb(np.array([bytes(r[2]) for r in rows], dtype=object))
    return ids, responsibility, np.asarray(geoms, dtype=object)


# --- encoding rows for COPY --------------------------------------------------------------------------


def copy_text(values: Any) -> list[str]:
    """Text values (None, NaN or pd.NA for NULL) as COPY text-format fields: escaped, ``\\N`` for NULL.

    Plain Python over the values' list: a census column is a hundred thousand short strings, for which a
    list comprehension is several times faster than numpy's string dtype and pandas' missing-value scan.
    """
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    # Nearly every value is a str; anything else is missing (NULL) or a number or the like, written as text.
    texts = [v if type(v) is str or v is None else _other_text(v) for v in items]
    # One scan of the whole column finds whether anything needs escaping at all (it rarely does).
    if _COPY_SPECIAL.search("".join(filter(None, texts))):
        texts = [_escaped(v) if v else v for v in texts]
    return [_NULL if v is None else v for v in texts]


def _other_text(value: Any) -> str | None:
    """A value that is neither ``str`` nor None: None when missing (NaN, pd.NA), else its text."""
    return None if pd.api.types.is_scalar(value) and pd.isna(value) else str(value)


def _escaped(value: str) -> str:
    for old, new in _COPY_ESCAPES:
        if old in value:
            value = value.replace(old, new)
    return value


def point_ewkb_hex(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    """Hex EWKB of 2D points with the storage SRID, byte for byte what ``bulk.ewkb_hex`` makes of them."""
    record = np.dtype([("order", "u1"), ("type", "<u4"), ("srid", "<u4"), ("x", "<f8"), ("y", "<f8")])
    packed = np.empty(len(x), dtype=record)
    packed["order"] = 1  # little endian
    packed["type"] = 0x20000001  # Point, with the EWKB "has SRID" flag
    packed["srid"] = STORAGE_SRID
    packed["x"] = x
    packed["y"] = y
    raw = packed.view(np.uint8).reshape(len(x), record.itemsize)
    return _HEX[raw].view(f"S{2 * record.itemsize}").ravel().astype(_TEXT)


def copy_block(fields: Sequence[Sequence[str]]) -> bytes:
    """COPY text-format data, a line per row, from fields already made by :func:`copy_text` etc. (one
    sequence of field texts per column, all of the same length)."""
    if not fields or len(fields[0]) == 0:
        return b""
    return ("\n".join(map("\t".join, zip(*fields, strict=True))) + "\n").encode("utf-8")


def _copy_in(session: Session, table: str, block: bytes, extra: Sequence[str] = ()) -> None:
    """COPY ``block`` (rows of :data:`CHUNK_COLUMNS`, then of ``extra``) into ``table``."""
    data = io.BytesIO(block)
    statement = _COPY_SQL.format(table=table, columns=", ".join([*CHUNK_COLUMNS, *extra]))
    # COPY is psycopg2's own API, not DB-API: reach the driver connection under the session's transaction.
    raw = cast(psycopg2.extensions.connection, session.connection().connection.dbapi_connection)
    with raw.cursor() as cursor:
        cursor.copy_expert(statement, data, size=_COPY_BLOCK)


def stage_components(session: Session, block: bytes, *, grids_of_plan: GridRule | None = None) -> int:
    """Add encoded rows (:data:`CHUNK_COLUMNS`, from :func:`copy_block`) to the stage.

    With ``grids_of_plan``, each row's unit and responsibility grid are found here, in SQL, by that rule
    (:mod:`gridsvc.repositories.grid_rule`; the grid columns sent are ignored). Without it the rows keep the
    grids they were encoded with. Returns how many rows were staged.
    """
    if not block:
        return 0
    _copy_in(session, CHUNK if grids_of_plan else STAGE, block)
    if grids_of_plan is not None:
        columns = ", ".join(f"c.{name}" for name in CHUNK_COLUMNS[:-2])
        session.execute(
            text(
                f"""
                INSERT INTO {STAGE}
                SELECT {columns}, g.unit_grid_id, g.responsibility_grid_id FROM {CHUNK} c
                {unit_grid_of("c.geom")}
                """
            ),
            grids_of_plan.params(),
        )
        session.execute(text(f"TRUNCATE {CHUNK}"))
    # A row per line: the fields' own line breaks are escaped.
    return block.count(b"\n")


def write_new_components(
    session: Session, block: bytes, *, batch_id: int, now: dt.datetime
) -> tuple[int, int]:
    """Insert encoded rows (as :func:`stage_components` takes them, with their grids) into component as new
    components of batch ``batch_id``, valid from ``now``; a row whose code has a current component goes to
    the stage instead, for :func:`classify_components` to compare. Returns how many rows were inserted,
    and how many of them have a unit grid.

    This is how a first census is written while the file is still read: the server inserts one chunk while
    the service prepares the next, instead of all of them after the whole file is staged.
    """
    if not block:
        return 0, 0
    _copy_in(session, CHUNK, block)
    # A probe of the current-code index per row, not a hash of all of component per chunk: the planner,
    # which counts the rows this import has just added, would hash them again for each chunk (0.5 s a
    # chunk once the table holds 1 M rows, against 0.14 s).
    with _planner_settings(session, enable_hashjoin="off", enable_mergejoin="off"):
        session.execute(
            text(
                f"""
                WITH surveyed_before AS (
                    DELETE FROM {CHUNK} k USING component c WHERE c.code = k.code AND c.valid_to IS NULL
                    RETURNING k.*
                )
                INSERT INTO {STAGE} SELECT * FROM surveyed_before
                """
            )
        )
    inserted = session.execute(
        text(
            f"""
            WITH inserted AS (
                INSERT INTO component ({", ".join(CHUNK_COLUMNS)}, survey_batch_id, valid_from)
                SELECT {", ".join(CHUNK_COLUMNS)}, :batch, :now FROM {CHUNK}
                RETURNING unit_grid_id
            )
            SELECT count(*), count(unit_grid_id) FROM inserted
            """
        ),
        {"batch": batch_id, "now": now},
    ).one()
    session.execute(text(f"TRUNCATE {CHUNK}"))
    return int(inserted[0]), int(inserted[1])


def copy_new_components(session: Session, block: bytes, *, batch_id: int, now: dt.datetime) -> bool:
    """COPY encoded rows (as :func:`write_new_components` takes them) straight into component as new
    components of batch ``batch_id``, valid from ``now``, if none of their codes has a current component;
    returns False, with nothing written, if one has (the caller then writes them with
    :func:`write_new_components`, which sets those rows aside).

    For a census whose codes are all new this skips the chunk table: one COPY instead of a COPY and an
    INSERT of each row (about 2 s less server time per million rows). The current-code index tells a
    surveyed-before code by refusing it, so only a chunk that holds one is written twice.
    """
    if not block:
        return True
    # The two columns every row shares, added to each line (the fields' own line breaks are escaped).
    suffix = f"\t{int(batch_id)}\t{now.isoformat()}\n".encode()
    savepoint = session.begin_nested()
    try:
        _copy_in(session, "component", block.replace(b"\n", suffix), extra=("survey_batch_id", "valid_from"))
    except psycopg2.errors.UniqueViolation:
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


@contextmanager
def _planner_settings(session: Session, **settings: str) -> Iterator[None]:
    """Planner settings for the statements inside, put back as they were after them. Only this transaction
    sees them (``set_config(..., true)`` is SET LOCAL), so a failed statement, which ends it, leaves
    nothing behind: nothing is put back then, since the aborted transaction would refuse it."""
    names = list(settings)
    before = session.execute(
        text("SELECT " + ", ".join(f"current_setting(:name{i})" for i in range(len(names)))),
        {f"name{i}": name for i, name in enumerate(names)},
    ).one()
    _set_local(session, settings)
    yield
    _set_local(session, dict(zip(names, before, strict=True)))


def _set_local(session: Session, settings: Mapping[str, str]) -> None:
    items = list(settings.items())
    session.execute(
        text("SELECT " + ", ".join(f"set_config(:name{i}, :value{i}, true)" for i in range(len(items)))),
        {
            k: v
            for i, (name, value) in enumerate(items)
            for k, v in ((f"name{i}", name), (f"value{i}", value))
        },
    )


def current_codes_count(session: Session, codes: Sequence[str]) -> int:
    """How many of ``codes`` have a current component."""
    return int(
        session.execute(
            text(
                "SELECT count(*) FROM component WHERE code = ANY(CAST(:codes AS text[])) AND valid_to IS NULL"
            ),
            {"codes": list(codes)},
        ).scalar_one()
    )


def classify_components(session: Session) -> dict[str, int]:
    """Compare the stage with the current components: new, changed or unchanged (by code).

    Only the staged codes that already have a current component are written down (``import_diff``: code,
    current id, changed or unchanged); every other staged row is new. A first census thus copies none of
    its rows a second time, and a re-survey copies three columns, not the rows.
    """
    session.execute(
        text(
            f"""
            CREATE TEMP TABLE import_diff ON COMMIT DROP AS
            SELECT s.code, c.id AS current_id,
                   CASE
                     WHEN c.class_code = s.class_code
                      AND c.name IS NOT DISTINCT FROM s.name
                      AND c.status = s.status
                      AND c.in_use
                      AND c.owner IS NOT DISTINCT FROM s.owner
                      AND c.owner_department_code IS NOT DISTINCT FROM s.owner_department_code
                      AND c.maintainer_department_code IS NOT DISTINCT FROM s.maintainer_department_code
                      AND {same_attributes("c.attributes", "s.attributes")}
                      AND {same_shape("c.geom", "s.geom")}
                     THEN 'unchanged'
                     ELSE 'changed'
                   END AS change
            FROM {STAGE} s
            JOIN component c ON c.code = s.code AND c.valid_to IS NULL
            """
        )
    )
    staged = session.execute(text(f"SELECT count(*) FROM {STAGE}")).scalar_one()
    rows = session.execute(text("SELECT change, count(*) FROM import_diff GROUP BY change")).all()
    counts = {"changed": 0, "unchanged": 0}
    counts.update({change: int(n) for change, n in rows})
    counts["new"] = int(staged) - counts["changed"] - counts["unchanged"]
    return counts


def _rows_to_write(counts: Mapping[str, int]) -> str:
    """FROM and WHERE of the staged rows to write, new and changed, given :func:`classify_components`'
    counts: the join that leaves out the unchanged ones only when there are some (a hash join of a
    million rows for nothing is a second on a first census)."""
    if counts["unchanged"] == 0:
        return f"FROM {STAGE} s"
    return (
        f"FROM {STAGE} s WHERE NOT EXISTS "
        "(SELECT 1 FROM import_diff d WHERE d.code = s.code AND d.change = 'unchanged')"
    )


def apply_components(session: Session, *, batch_id: int, now: dt.datetime, counts: Mapping[str, int]) -> int:
    """Close changed components (valid_to) and insert new and changed versions with the grids they were
    staged with; ``counts`` are :func:`classify_components`' answer.

    Returns how many inserted rows have a unit grid.
    """
    if counts["changed"]:
        session.execute(
            text(
                "UPDATE component c SET valid_to = :now FROM import_diff d "
                "WHERE d.change = 'changed' AND c.id = d.current_id"
            ),
            {"now": now},
        )
    if counts["new"] + counts["changed"] == 0:
        return 0  # a file surveyed again unchanged rewrites nothing
    result = session.execute(
        text(
            f"""
            WITH inserted AS (
                INSERT INTO component (code, class_code, name, status, owner, owner_department_code,
                                       maintainer_department_code, attributes, survey_batch_id, unit_grid_id,
                                       responsibility_grid_id, valid_from, geom)
                SELECT s.code, s.class_code, s.name, s.status, s.owner, s.owner_department_code,
                       s.maintainer_department_code, s.attributes, :batch, s.unit_grid_id,
                       s.responsibility_grid_id, :now, s.geom
                {_rows_to_write(counts)}
                RETURNING unit_grid_id
            )
            SELECT count(unit_grid_id) FROM inserted
            """
        ),
        {"batch": batch_id, "now": now},
    )
    return int(result.scalar_one())


# --- a large insert: component's secondary indexes and foreign keys rebuilt around it --------------------

# The unique index of the current version of each code (models.Component), which a rebuild keeps.
CURRENT_CODE_INDEX = "uq_component_current_code"


@dataclass(frozen=True)
class SecondaryStructures:
    """Component's secondary indexes and foreign keys as the catalog defines them, to put back exactly."""

    indexes: tuple[tuple[str, str], ...]  # (name, CREATE INDEX statement)
    foreign_keys: tuple[tuple[str, str], ...]  # (name, constraint definition)


def component_rows_estimate(session: Session) -> int:
    """About how many rows ``component`` holds (the planner's estimate; counted if never analysed)."""
    estimate = session.execute(
        text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'component'::regclass")
    ).scalar_one()
    if estimate < 0:  # never vacuumed or analysed
        estimate = session.execute(text("SELECT count(*) FROM component")).scalar_one()
    return int(estimate)


def lock_component_exclusively(session: Session, *, timeout_ms: int) -> bool:
    """Take ``component`` for this transaction alone (no reader either), waiting at most ``timeout_ms``.

    Returns False, with nothing changed, when another transaction holds it longer (or the wait would
    deadlock): the caller then inserts with the indexes in place.
    """
    savepoint = session.begin_nested()
    try:
        previous = session.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
        session.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{int(timeout_ms)}ms"})
        session.execute(text("LOCK TABLE component IN ACCESS EXCLUSIVE MODE"))
        session.execute(text("SELECT set_config('lock_timeout', :was, true)"), {"was": previous})
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) not in (_LOCK_NOT_AVAILABLE, _DEADLOCK_DETECTED):
            raise
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def drop_component_secondary(session: Session) -> SecondaryStructures:
    """Drop component's secondary indexes and foreign keys and return their definitions for
    :func:`rebuild_component_secondary`. Hold :func:`lock_component_exclusively` first.

    The primary key stays, and so does :data:`CURRENT_CODE_INDEX`: every written chunk looks its codes up
    in it (:func:`write_new_components`), and keeping it up to date costs about what building it does.
    """
    indexes = session.execute(
        text(
            """
            SELECT c.relname, pg_get_indexdef(i.indexrelid)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = 'component'::regclass AND NOT i.indisprimary AND c.relname <> :kept
              AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                              WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid)
            ORDER BY c.relname
            """
        ),
        {"kept": CURRENT_CODE_INDEX},
    ).all()
    foreign_keys = session.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'component'::regclass AND contype = 'f' ORDER BY conname"
        )
    ).all()
    saved = SecondaryStructures(
        indexes=tuple((str(n), str(d)) for n, d in indexes),
        foreign_keys=tuple((str(n), str(d)) for n, d in foreign_keys),
    )
    if saved.foreign_keys:
        drops = ", ".join(f'DROP CONSTRAINT "{name}"' for name, _ in saved.foreign_keys)
        session.execute(text(f"ALTER TABLE component {drops}"))
    if saved.indexes:
        session.execute(text("DROP INDEX " + ", ".join(f'"{name}"' for name, _ in saved.indexes)))
    return saved


def rebuild_component_secondary(session: Session, saved: SecondaryStructures) -> None:
    """Build the indexes again over the whole table and re-add the foreign keys, which PostgreSQL checks
    against every row with one join each; a violation (or a duplicate current code) fails the import."""
    session.execute(
        text(
            "SELECT set_config('maintenance_work_mem', :mem, true) "
            "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes(:mem)"
        ),
        {"mem": _REBUILD_MEMORY},
    )
    for _, definition in saved.indexes:
        session.execute(text(definition))
    if saved.foreign_keys:
        adds = ", ".join(f'ADD CONSTRAINT "{name}" {definition}' for name, definition in saved.foreign_keys)
        session.execute(text(f"ALTER TABLE component {adds}"))


def count_assignable(session: Session, counts: Mapping[str, int]) -> int:
    """How many of the classified rows that would be written have a unit grid (a dry run's
    ``assigned_to_grid``; :func:`apply_components` counts the same when it writes them)."""
    return int(session.execute(text(f"SELECT count(s.unit_grid_id) {_rows_to_write(counts)}")).scalar_one())


def areas_without_communities(session: Session, area_codes: Sequence[str]) -> list[str]:
    """The given admin codes (district, street or community) that no loaded community lies in: a survey
    area :func:`find_missing` would find empty."""
    return list(
        session.execute(
            text(
                "SELECT a FROM unnest(CAST(:areas AS text[])) a WHERE NOT EXISTS ("
                "SELECT 1 FROM community c WHERE left(c.code, length(a)) = a)"
            ),
            {"areas": list(area_codes)},
        ).scalars()
    )


def find_missing(session: Session, *, area_codes: Sequence[str], kept_codes: Sequence[str]) -> int:
    """Find the current components of the surveyed classes inside the survey area that the file did not
    contain, for :func:`retire_missing`; returns how many.

    The area is the union of the given admin units (district, street or community codes); with none
    given, the communities the imported features fall in. ``kept_codes`` are codes the file did contain
    on rows it rejected: those components are not missing, only badly surveyed.
    """
    if area_codes:
        area = (
            "SELECT ST_Union(c.geom) AS geom FROM community c WHERE EXISTS ("
            "SELECT 1 FROM unnest(CAST(:areas AS text[])) a WHERE left(c.code, length(a)) = a)"
        )
    else:
        area = (
            "SELECT ST_Union(c.geom) AS geom FROM community c "
            f"WHERE EXISTS (SELECT 1 FROM {STAGE} s WHERE ST_Intersects(c.geom, s.geom))"
        )
    session.execute(
        text(
            f"""
            CREATE TEMP TABLE import_missing ON COMMIT DROP AS
            SELECT c.id FROM component c, ({area}) area
            WHERE c.valid_to IS NULL AND c.in_use
              AND c.class_code IN (SELECT DISTINCT class_code FROM {STAGE})
              AND NOT EXISTS (SELECT 1 FROM {STAGE} s WHERE s.code = c.code)
              AND c.code <> ALL (CAST(:kept AS text[]))
              AND ST_Intersects(area.geom, c.geom)
            """
        ),
        {"areas": list(area_codes), "kept": list(kept_codes)},
    )
    return int(session.execute(text("SELECT count(*) FROM import_missing")).scalar_one())


def retire_missing(session: Session, *, batch_id: int, now: dt.datetime) -> int:
    """Mark void (in_use = false, as a new version) the components :func:`find_missing` found. Nothing is
    deleted. Returns how many."""
    session.execute(
        text("UPDATE component c SET valid_to = :now FROM import_missing m WHERE c.id = m.id"), {"now": now}
    )
    result = session.execute(
        text(
            """
            WITH voided AS (
            INSERT INTO component (code, class_code, name, status, in_use, owner, owner_department_code,
                                   maintainer_department_code, attributes, survey_batch_id, unit_grid_id,
                                   responsibility_grid_id, valid_from, geom)
            SELECT c.code, c.class_code, c.name, c.status, false, c.owner, c.owner_department_code,
                   c.maintainer_department_code, c.attributes, :batch, c.unit_grid_id,
                   c.responsibility_grid_id, :now, c.geom
            FROM component c JOIN import_missing m ON m.id = c.id
            RETURNING 1
            )
            SELECT count(*) FROM voided
            """
        ),
        {"batch": batch_id, "now": now},
    )
    return int(result.scalar_one())


def add_batch(session: Session, **values: Any) -> SurveyBatch:
    """Insert a survey batch row (its id is set on return)."""
    batch = SurveyBatch(**values)
    session.add(batch)
    session.flush()
    return batch


def add_problems(session: Session, frame: pd.DataFrame) -> int:
    """COPY problem rows (survey_batch_id, source_row, field, value, reason, action, attributes, geom)."""
    return bulk.copy_frame(session, "import_problem", frame)


def get_batch(session: Session, batch_id: int) -> SurveyBatch | None:
    """One survey batch."""
    return session.get(SurveyBatch, batch_id)


def batches(
    session: Session,
    *,
    layer: str | None = None,
    file: str | None = None,
    checksum_sha256: str | None = None,
    limit: int,
) -> list[SurveyBatch]:
    """The latest survey batches first, at most ``limit``: of one layer, one file name, or one file's
    checksum, when given."""
    query = select(SurveyBatch)
    if layer is not None:
        query = query.where(SurveyBatch.layer == layer)
    if file is not None:
        query = query.where(SurveyBatch.source_file == file)
    if checksum_sha256 is not None:
        query = query.where(SurveyBatch.checksum_sha256 == checksum_sha256.lower())
    return list(session.scalars(query.order_by(SurveyBatch.id.desc()).limit(limit)))


def problems(session: Session, batch_id: int, limit: int | None = None) -> gpd.GeoDataFrame:
    """The problems of a batch, by source row."""
    sql = (
        "SELECT source_row, field, value, reason, action, attributes, geom FROM import_problem "
        f"WHERE survey_batch_id = {int(batch_id)} ORDER BY source_row, field"
        + (f" LIMIT {int(limit)}" if limit else "")
    )
    return gpd.read_postgis(sql, session.connection(), geom_col="geom")


# --- boundaries, stations, nets, roads: small layers, upserted by code -------------------------------

_UPSERT_COUNTS = """
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
"""


def existing_codes(session: Session, table: str) -> set[str]:
    """All codes of an admin table (to check that parents exist before children are written)."""
    return {str(c) for c in session.execute(text(f'SELECT code FROM "{table}"')).scalars()}


def admin_units(session: Session, table: str) -> gpd.GeoDataFrame:
    """The loaded districts or streets (code, name, geometry), to check where their children lie."""
    if table not in ("district", "street"):
        raise ValueError(f"admin_units reads district or street, not {table!r}")
    return gpd.read_postgis(
        f'SELECT code, name, geom FROM "{table}" ORDER BY code', session.connection(), geom_col="geom"
    )


def create_layer_stage(session: Session) -> None:
    """A generic staging table for the small layers."""
    session.execute(text("DROP TABLE IF EXISTS layer_stage"))
    session.execute(
        text(
            """
            CREATE TEMP TABLE layer_stage (
                source_row integer, code text, name text, parent_code text, households integer, phone text,
                road_class text, attributes jsonb NOT NULL DEFAULT '{}',
                geom geometry(Geometry, 4490) NOT NULL
            ) ON COMMIT DROP
            """
        )
    )


def unstage_layer(session: Session, codes: Sequence[str]) -> gpd.GeoDataFrame:
    """Take the staged rows of ``codes`` out of the layer stage; returns them with the values they were
    staged with (``parent_code`` as the stage holds it), for the report."""
    rows = (
        session.execute(
            text(
                "DELETE FROM layer_stage WHERE code = ANY(CAST(:codes AS text[])) RETURNING code, name,"
                " parent_code, households, phone, road_class, attributes, ST_AsBinary(geom) AS wkb"
            ),
            {"codes": list(codes)},
        )
        .mappings()
        .all()
    )
    columns = ["code", "name", "parent_code", "households", "phone", "road_class", "attributes"]
    return gpd.GeoDataFrame(
        {c: [r[c] for r in rows] for c in columns},
        geometry=shapely.from_wkb([bytes(r["wkb"]) for r in rows]),
        crs=STORAGE_SRID,
    )


def stage_layer(session: Session, frame: pd.DataFrame) -> int:
    """COPY prepared rows into the layer stage."""
    return bulk.copy_frame(session, "layer_stage", frame)


@dataclass(frozen=True)
class UnitOverlap:
    """A staged admin unit (district, street or community) that overlaps another of its level: a loaded one
    or another staged one."""

    code: str
    other: str
    other_staged: bool
    area_m2: float
    x: float  # a point inside the overlap, EPSG:4490
    y: float


def overlapping_units(
    session: Session, table: str, *, metric_srid: int, tolerance_m2: float
) -> list[UnitOverlap]:
    """Staged units of ``table`` (district, street or community) that overlap, by more than ``tolerance_m2``
    measured in ``metric_srid``, another staged unit or a loaded one of another code that the stage does not
    replace; each pair of staged units is reported from both sides. Indexes the stage (it holds every row
    of the file by now)."""
    if table not in ("district", "street", "community"):
        raise ValueError(f"not an admin level: {table}")
    session.execute(text("CREATE INDEX ON layer_stage USING gist (geom)"))
    session.execute(text("CREATE INDEX ON layer_stage (code)"))
    session.execute(text("ANALYZE layer_stage"))
    rows = session.execute(
        text(
            f"""
            WITH touching AS (
                SELECT s.code, o.code AS other, true AS other_staged, s.geom, o.geom AS other_geom
                FROM layer_stage s JOIN layer_stage o ON o.geom && s.geom AND o.code <> s.code
                UNION ALL
                SELECT s.code, c.code, false, s.geom, c.geom
                FROM layer_stage s JOIN {table} c ON c.geom && s.geom AND c.code <> s.code
                WHERE NOT EXISTS (SELECT 1 FROM layer_stage x WHERE x.code = c.code)
            ), shared AS (
                -- Interiors that meet: neighbours share edges, and only an area can overlap.
                SELECT code, other, other_staged,
                       ST_CollectionExtract(ST_Intersection(geom, other_geom), 3) AS part
                FROM touching WHERE ST_Relate(geom, other_geom, '2********')
            ), measured AS (
                SELECT code, other, other_staged, part, ST_Area(ST_Transform(part, :srid)) AS area_m2
                FROM shared
            )
            SELECT code, other, other_staged, area_m2, ST_X(p) AS x, ST_Y(p) AS y
            FROM (SELECT *, ST_PointOnSurface(part) AS p FROM measured WHERE area_m2 > :tolerance) big
            ORDER BY code, other
            """
        ),
        {"srid": metric_srid, "tolerance": tolerance_m2},
    ).all()
    return [
        UnitOverlap(str(r.code), str(r.other), bool(r.other_staged), float(r.area_m2), r.x, r.y) for r in rows
    ]


def redrawn_units(session: Session, level: str) -> list[str]:
    """The codes of the staged districts, streets or communities (``level``) that are new or drawn other
    than stored: those whose change can move what lies in them (a new name or new attributes cannot)."""
    rows = session.execute(
        text(
            f"SELECT s.code FROM layer_stage s LEFT JOIN {level} t ON t.code = s.code"
            f" WHERE t.code IS NULL OR NOT {same_shape('t.geom', 'ST_Multi(s.geom)')} ORDER BY s.code"
        )
    ).scalars()
    return [str(code) for code in rows]


def upsert_boundaries(session: Session, level: str) -> tuple[int, int, int]:
    """Insert or update districts, streets or communities by code; returns (new, changed, unchanged)."""
    parent_column = {"district": None, "street": "district_code", "community": "street_code"}[level]
    columns = ["code", "name", "attributes", "geom"] + ([parent_column] if parent_column else [])
    values = ["s.code", "s.name", "s.attributes", "ST_Multi(s.geom)"] + (
        ["s.parent_code"] if parent_column else []
    )
    if level == "community":
        # A file without households (no column, or a blank) keeps what is stored: an upsert has no history.
        columns.append("households")
        values.append(
            "coalesce(s.households, (SELECT c.households FROM community c WHERE c.code = s.code), 0)"
        )
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "code")
    differs = {
        "geom": f"NOT {same_shape('t.geom', 'EXCLUDED.geom')}",
        "attributes": f"NOT {same_attributes('t.attributes', 'EXCLUDED.attributes')}",
    }
    compare = " OR ".join(
        differs.get(c, f"t.{c} IS DISTINCT FROM EXCLUDED.{c}") for c in columns if c != "code"
    )
    total = int(session.execute(text("SELECT count(*) FROM layer_stage")).scalar_one())
    row = session.execute(
        text(
            f"""
            WITH upserted AS (
                INSERT INTO {level} AS t ({", ".join(columns)})
                SELECT {", ".join(values)} FROM layer_stage s
                ON CONFLICT (code) DO UPDATE SET {updates} WHERE {compare}
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
            """
        )
    ).one()
    new, changed = int(row[0]), int(row[1])
    return new, changed, total - new - changed


@dataclass(frozen=True)
class UnitAway:
    """A stored street or community whose representative point lies ``metres`` outside the unit its code
    names (``parent``: code and name)."""

    code: str
    name: str
    parent: str
    metres: float


def children_away_from_parent(
    session: Session, level: str, parent_codes: Sequence[str], *, metric_srid: int, beyond_m: float
) -> list[UnitAway]:
    """The stored streets of the given districts (``level`` district) or communities of the given streets
    (``level`` street) whose representative point lies more than ``beyond_m`` metres outside them,
    farthest first: what the import of the children would now refuse."""
    child, parent_column = {"district": ("street", "district_code"), "street": ("community", "street_code")}[
        level
    ]
    rows = session.execute(
        text(
            f"""
            SELECT u.code, u.name, concat_ws(' ', p.code, p.name),
                   ST_Distance(ST_Transform(u.point, :srid), ST_Transform(p.geom, :srid)) AS metres
            FROM (SELECT code, name, {parent_column} AS parent_code, ST_PointOnSurface(geom) AS point
                  FROM {child} WHERE {parent_column} = ANY(CAST(:parents AS text[]))) u
            JOIN {level} p ON p.code = u.parent_code
            WHERE NOT ST_Intersects(p.geom, u.point)
              AND NOT ST_DWithin(ST_Transform(u.point, :srid), ST_Transform(p.geom, :srid), :beyond)
            ORDER BY metres DESC, u.code
            """
        ),
        {"srid": metric_srid, "beyond": beyond_m, "parents": list(parent_codes)},
    ).all()
    return [UnitAway(str(r[0]), str(r[1] or ""), str(r[2]), float(r[3])) for r in rows]


@dataclass(frozen=True)
class StationAway:
    """A staged station that lies outside the community it is coded for, by ``metres``; ``lies_in`` is the
    loaded community (code and name) its point lies in, if any."""

    code: str
    name: str
    community: str
    metres: float
    lies_in: str | None


def stations_away_from_community(session: Session, *, metric_srid: int, beyond_m: float) -> list[StationAway]:
    """The staged stations farther than ``beyond_m`` metres outside their community, farthest first."""
    rows = session.execute(
        text(
            """
            SELECT s.code, s.name, concat_ws(' ', c.code, c.name) AS community,
                   ST_Distance(ST_Transform(s.geom, :srid), ST_Transform(c.geom, :srid)) AS metres,
                   (SELECT concat_ws(' ', o.code, o.name) FROM community o
                    WHERE ST_Intersects(o.geom, s.geom) ORDER BY o.code LIMIT 1) AS lies_in
            FROM layer_stage s JOIN community c ON c.code = s.parent_code
            WHERE NOT ST_Intersects(c.geom, s.geom)
              AND NOT ST_DWithin(ST_Transform(s.geom, :srid), ST_Transform(c.geom, :srid), :beyond)
            ORDER BY metres DESC, s.code
            """
        ),
        {"srid": metric_srid, "beyond": beyond_m},
    ).all()
    return [StationAway(str(r[0]), str(r[1] or ""), str(r[2]), float(r[3]), r[4]) for r in rows]


def upsert_stations(session: Session) -> tuple[int, int, int]:
    """Insert or update stations by code (staff lists are kept)."""
    total = int(session.execute(text("SELECT count(*) FROM layer_stage")).scalar_one())
    row = session.execute(
        text(
            f"""
            WITH upserted AS (
                INSERT INTO station AS t (code, community_code, name, phone, attributes, geom)
                SELECT s.code, s.parent_code, s.name,
                       -- no phone in the file keeps the stored one: an upsert has no history
                       coalesce(s.phone, (SELECT x.phone FROM station x WHERE x.code = s.code)),
                       s.attributes, s.geom
                FROM layer_stage s
                ON CONFLICT (code) DO UPDATE SET community_code = EXCLUDED.community_code,
                    name = EXCLUDED.name,
                    phone = EXCLUDED.phone, attributes = EXCLUDED.attributes, geom = EXCLUDED.geom
                WHERE t.community_code IS DISTINCT FROM EXCLUDED.community_code OR t.name IS DISTINCT FROM
                    EXCLUDED.name OR t.phone IS DISTINCT FROM EXCLUDED.phone
                    OR NOT {same_attributes("t.attributes", "EXCLUDED.attributes")}
                    OR NOT {same_shape("t.geom", "EXCLUDED.geom")}
                RETURNING (xmax = 0) AS inserted
            )
            {_UPSERT_COUNTS}
            """
        )
    ).one()
    new, changed = int(row[0]), int(row[1])
    return new, changed, total - new - changed


def replace_net(
    session: Session, *, code: str, name: str, department: str, batch_id: int | None
) -> tuple[int, int, int, int]:
    """Create or replace one net's polygons. Returns, by polygon code against the polygons it replaces,
    (new, changed, unchanged, gone). An empty ``department`` (not given) keeps the one stored."""
    net_id = session.execute(
        text(
            "INSERT INTO net AS t (code, name, department, survey_batch_id) VALUES (:c, :n, :d, :b) "
            "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, "
            "department = coalesce(nullif(EXCLUDED.department, ''), t.department), "
            "survey_batch_id = EXCLUDED.survey_batch_id RETURNING id"
        ),
        {"c": code, "n": name, "d": department, "b": batch_id},
    ).scalar_one()
    # Counted before the replacement: what the department will want to know is which cells it redrew.
    new, changed, unchanged, gone = session.execute(
        text(
            f"""
            SELECT count(*) FILTER (WHERE p.code IS NULL),
                   count(*) FILTER (WHERE p.code IS NOT NULL AND s.code IS NOT NULL AND (
                       p.name IS DISTINCT FROM s.name OR NOT {same_attributes("p.attributes", "s.attributes")}
                       OR NOT {same_shape("p.geom", "ST_Multi(s.geom)")})),
                   count(*) FILTER (WHERE p.code IS NOT NULL AND s.code IS NOT NULL AND NOT (
                       p.name IS DISTINCT FROM s.name OR NOT {same_attributes("p.attributes", "s.attributes")}
                       OR NOT {same_shape("p.geom", "ST_Multi(s.geom)")})),
                   count(*) FILTER (WHERE s.code IS NULL)
            FROM layer_stage s
            FULL JOIN (SELECT * FROM net_polygon WHERE net_id = :id) p ON p.code = s.code
            """
        ),
        {"id": net_id},
    ).one()
    # The file's cells replace the stored ones; a cell counted unchanged keeps its row as stored (its
    # numbers, where a CSV has their text; its vertices, where a zone-39 file moved them by nanometres).
    session.execute(
        text(
            "DELETE FROM net_polygon p WHERE p.net_id = :id "
            "AND NOT EXISTS (SELECT 1 FROM layer_stage s WHERE s.code = p.code)"
        ),
        {"id": net_id},
    )
    session.execute(
        text(
            f"""
            INSERT INTO net_polygon AS p (net_id, code, name, attributes, geom)
            SELECT :id, code, name, attributes, ST_Multi(geom) FROM layer_stage
            ON CONFLICT (net_id, code) DO UPDATE
            SET name = EXCLUDED.name, attributes = EXCLUDED.attributes, geom = EXCLUDED.geom
            WHERE p.name IS DISTINCT FROM EXCLUDED.name
               OR NOT {same_attributes("p.attributes", "EXCLUDED.attributes")}
               OR NOT {same_shape("p.geom", "EXCLUDED.geom")}
            """
        ),
        {"id": net_id},
    )
    return int(new), int(changed), int(unchanged), int(gone)


@dataclass(frozen=True)
class RoadUnderAnotherName:
    """A staged named road that is no stored road but has a stored road's line, under another name."""

    source_row: int
    name: str
    stored_name: str | None


def _same_road(road: str, staged: str) -> str:
    """SQL: the stored ``road`` is the road of the staged row ``staged`` (see :func:`insert_roads`)."""
    return (
        f"{road}.geom && ST_Expand({staged}.geom, {SAME_SHAPE_DEGREES!r})"
        f" AND ({staged}.name IS NULL OR {road}.name IS NOT DISTINCT FROM {staged}.name)"
        f" AND {same_shape(f'{road}.geom', f'ST_Multi({staged}.geom)')}"
    )


def roads_under_another_name(session: Session) -> list[RoadUnderAnotherName]:
    """Staged named roads that no stored road is (so they would be added) though a stored road of another
    name has their line: a renamed road, which added beside the old one is the same street twice."""
    rows = session.execute(
        text(
            f"""
            SELECT DISTINCT ON (s.source_row) s.source_row, s.name, r.name AS stored_name
            FROM layer_stage s
            JOIN road r ON r.geom && ST_Expand(s.geom, {SAME_SHAPE_DEGREES!r})
                AND {same_shape("r.geom", "ST_Multi(s.geom)")}
            WHERE s.name IS NOT NULL AND r.name IS DISTINCT FROM s.name
              AND NOT EXISTS (SELECT 1 FROM road o WHERE {_same_road("o", "s")})
            ORDER BY s.source_row, r.name
            """
        )
    ).all()
    return [RoadUnderAnotherName(int(r.source_row), r.name, r.stored_name) for r in rows]


@dataclass(frozen=True)
class RoadMoved:
    """A staged named road that no stored road is, near a stored road of its name the file does not have."""

    source_row: int
    name: str
    metres: float  # the Hausdorff distance between the two lines: every point of each is this near the other


def roads_moved_under_their_name(session: Session, *, metric_srid: int, within_m: float) -> list[RoadMoved]:
    """Staged named roads that no stored road is (so they would be added) though a stored road of the same
    name, which no staged row is, runs within ``within_m`` metres of their whole line: most often a road
    moved or redrawn, which added beside the old line is the same street twice. Measured by the Hausdorff
    distance, so a road's extension (which runs on beyond the stored line) and a parallel carriageway the
    file also has are not counted."""
    # A box in degrees a little larger than ``within_m`` anywhere in China, to find the candidates fast.
    expand = within_m / 80_000
    rows = session.execute(
        text(
            f"""
            SELECT DISTINCT ON (s.source_row) s.source_row, s.name, h.metres
            FROM layer_stage s
            JOIN road r ON r.name = s.name AND r.geom && ST_Expand(s.geom, :expand)
            CROSS JOIN LATERAL (
                SELECT ST_HausdorffDistance(
                    ST_Transform(r.geom, :srid), ST_Transform(ST_Multi(s.geom), :srid)
                ) AS metres
            ) h
            WHERE s.name IS NOT NULL AND h.metres <= :within
              AND NOT EXISTS (SELECT 1 FROM road o WHERE {_same_road("o", "s")})
              AND NOT EXISTS (SELECT 1 FROM layer_stage t WHERE {_same_road("r", "t")})
            ORDER BY s.source_row, h.metres
            """
        ),
        {"expand": expand, "srid": metric_srid, "within": within_m},
    ).all()
    return [RoadMoved(int(r.source_row), r.name, float(r.metres)) for r in rows]


def insert_roads(session: Session, *, batch_id: int | None, replace: bool) -> tuple[int, int, int, int]:
    """Add road centre lines (each given the district it mostly lies in); with ``replace``, delete the
    stored roads the file does not have. Roads have no code: a road already stored with the same name and
    the same line is that road, updated (its class, its free attributes) rather than added again, so
    importing a corrected file twice leaves one copy of each, and replacing the roads with it rewrites
    none that it has unchanged. A blank class keeps the stored one (a new road is a branch road), and so
    does a blank name: a row with no name is the stored road of its line, whatever that road's name.
    Returns (added, updated, unchanged, deleted)."""
    same_road = _same_road("r", "s")
    deleted = 0
    if replace:
        deleted = int(
            session.execute(
                text(
                    "WITH gone AS (DELETE FROM road r WHERE NOT EXISTS"
                    f" (SELECT 1 FROM layer_stage s WHERE {same_road}) RETURNING 1) SELECT count(*) FROM gone"
                )
            ).scalar_one()
        )
    updated = session.execute(
        text(
            f"""
            WITH updated AS (
                UPDATE road r
                SET road_class = coalesce(s.road_class, r.road_class), attributes = s.attributes,
                    survey_batch_id = :batch
                FROM layer_stage s
                WHERE {same_road} AND (
                    r.road_class IS DISTINCT FROM coalesce(s.road_class, r.road_class)
                    OR NOT {same_attributes("r.attributes", "s.attributes")}
                )
                RETURNING 1
            )
            SELECT count(*) FROM updated
            """
        ),
        {"batch": batch_id},
    ).scalar_one()
    added = session.execute(
        text(
            f"""
            WITH added AS (
                INSERT INTO road (name, road_class, district_code, survey_batch_id, attributes, geom)
                -- Most unnamed urban roads are branch roads; cutting along them is the cautious default.
                SELECT s.name, coalesce(s.road_class, 'branch'), d.code, :batch, s.attributes,
                       ST_Multi(s.geom)
                FROM layer_stage s
                LEFT JOIN LATERAL (
                    SELECT code FROM district WHERE ST_Intersects(geom, ST_LineInterpolatePoint(
                        ST_GeometryN(ST_Multi(s.geom), 1), 0.5)) ORDER BY code LIMIT 1
                ) d ON true
                WHERE NOT EXISTS (SELECT 1 FROM road r WHERE {same_road})
                RETURNING 1
            )
            SELECT count(*) FROM added
            """
        ),
        {"batch": batch_id},
    ).scalar_one()
    staged = int(session.execute(text("SELECT count(*) FROM layer_stage")).scalar_one())
    return int(added), int(updated), staged - int(added) - int(updated), deleted
