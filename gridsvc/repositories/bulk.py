"""Bulk writes with COPY: the only way to load millions of rows in minutes rather than hours.

Geometries travel as hex EWKB (SRID included), which PostGIS's geometry input accepts directly,
so there is no per-row function call on the server.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridsvc.db.models import STORAGE_SRID

# Tables that hold survey, plan and case data (not reference data), children first.
DATA_TABLES = (
    "case_event",
    "case_record",
    "component",
    "unit_grid",
    "responsibility_grid",
    "plan_edit",
    "grid_plan",
    "net_polygon",
    "net",
    "road",
    "station",
    "residential_building",
    "community",
    "street",
    "district",
    "import_problem",
    "survey_batch",
)

CHUNK_ROWS = 250_000

# progress(table, rows just written, rows in all for this table)
ProgressFn = Callable[[str, int, int], None]


def ewkb_hex(geometries: Any, srid: int = STORAGE_SRID) -> np.ndarray[Any, Any]:
    """Hex EWKB strings of an array of shapely geometries, tagged with the storage SRID."""
    array = np.asarray(geometries, dtype=object)
    return np.asarray(
        shapely.to_wkb(shapely.set_srid(array, srid), hex=True, include_srid=True), dtype=object
    )


def json_column(values: Sequence[Any]) -> list[str]:
    """JSON text of each value, keeping Chinese as it is."""
    return [json.dumps(v, ensure_ascii=False) for v in values]


def copy_frame(
    session: Session,
    table: str,
    frame: pd.DataFrame,
    *,
    progress: ProgressFn | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> int:
    """COPY a DataFrame's columns into ``table`` in the session's transaction; returns the row count.

    Column names of the frame are the table's column names; None/NaN/NaT become NULL.
    """
    if frame.empty:
        return 0
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    statement = f"COPY \"{table}\" ({columns}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
    # COPY is psycopg2's own API, not DB-API: reach the driver connection under the session's transaction.
    raw = cast(psycopg2.extensions.connection, session.connection().connection.dbapi_connection)
    with raw.cursor() as cursor:
        for start in range(0, len(frame), chunk_rows):
            chunk = frame.iloc[start : start + chunk_rows]
            buffer = io.StringIO()
            chunk.to_csv(buffer, header=False, index=False, na_rep="\\N")
            buffer.seek(0)
            cursor.copy_expert(statement, buffer)
            if progress:
                progress(table, len(chunk), len(frame))
    return len(frame)


def reserve_ids(session: Session, table: str, count: int) -> np.ndarray[Any, Any]:
    """``count`` fresh ids for ``table``, assigned here so parents and children can be linked before COPY.

    The table is locked against other writers for the rest of the transaction, so the ids stay free.
    """
    session.execute(text(f'LOCK TABLE "{table}" IN EXCLUSIVE MODE'))
    start = int(session.execute(text(f'SELECT coalesce(max(id), 0) FROM "{table}"')).scalar_one()) + 1
    sequence = session.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar_one()
    if count:
        session.execute(text("SELECT setval(:s, :v)"), {"s": sequence, "v": start + count - 1})
    return np.arange(start, start + count, dtype=np.int64)


def has_rows(session: Session, table: str) -> bool:
    """True when the table holds at least one row."""
    return bool(session.execute(text(f'SELECT EXISTS (SELECT 1 FROM "{table}")')).scalar_one())


def truncate_data(session: Session) -> None:
    """Delete all survey, plan and case data (reference tables and API keys stay)."""
    tables = ", ".join(f'"{t}"' for t in DATA_TABLES)
    session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))


def analyze(session: Session, tables: Sequence[str]) -> None:
    """Refresh planner statistics after a bulk load."""
    for table in tables:
        session.execute(text(f'ANALYZE "{table}"'))
