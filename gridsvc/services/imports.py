"""Import survey layers: read, map, validate row by row, stage with COPY, apply set-based, report.

One import is one transaction: a crash, a cancel (Ctrl+C) or a refused file leaves the database exactly
as it was. A dry run does all the work, including the new/changed/unchanged comparison, then rolls back.

Components are read, mapped, validated and encoded for COPY chunk by chunk on the calling thread while a
database thread stages the previous chunk (COPY, then its grids found in SQL): both sides work at once,
and only the versioning and the insert into ``component`` wait for the whole file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import hashlib
import json
import logging
import os
import re
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal, TypeVar, cast

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gis import fieldmap, gridindex, io, validate
from gis.crs import resolve_crs
from gis.export import DERIVED_COMPONENT_COLUMNS, REPORT_COLUMNS, shapefile_field_names, write_problems
from gis.geometry import representative_points
from gridsvc.db import engine as db_engine
from gridsvc.db.models import STORAGE_SRID, SurveyBatch
from gridsvc.errors import (
    FieldProblem,
    GridsvcError,
    ImportRefusedError,
    InvalidInputError,
    NotFoundError,
)
from gridsvc.repositories import access as audit
from gridsvc.repositories import bulk
from gridsvc.repositories import imports as repo
from gridsvc.repositories import plans as plans_repo
from gridsvc.repositories.grid_rule import GridRule
from gridsvc.services import held_reports
from gridsvc.services.access import Principal
from gridsvc.services.uploads import UPLOAD_FOLDER_PREFIX, archive_limits
from gridsvc.settings import Settings

log = logging.getLogger(__name__)

LAYERS = ("components", "boundaries", "stations", "net", "roads")
AREA_CODE = re.compile(r"\d{6}|\d{9}|\d{12}")
# Standard fields that have no column of their own: kept in the free attributes under these keys.
EXTRA_STANDARD_FIELDS = ("initial_date", "change_date", "data_source", "remarks", "photo")
# Most problems kept with a recorded import (import_problem) or held for an HTTP upload's download: a file
# of a million bad rows gives a report as large as itself, which the CLI's --report writes whole.
STORED_PROBLEMS_LIMIT = 100_000
# Chunks handed to the database thread and not yet staged: one being written while the next waits; more
# would only hold more memory, since PostgreSQL is the slower side.
_IN_FLIGHT = 2
# When an import rebuilds component's secondary indexes and foreign keys instead of inserting with them in
# place. Inserting costs about 22 µs per row for them; rebuilding about 5 µs per row the table ends with
# (both measured on the bench database, docs/BENCHMARKS.md), so rebuilding is cheaper while the table holds
# less than about 3.8 times the rows inserted. Taken at 3, and only from 50,000 rows: meanwhile every
# reader of component waits, so it is for a first census or a large re-survey, not a daily update.
REBUILD_MIN_ROWS = 50_000
REBUILD_TABLE_FACTOR = 3
# How long to wait for readers of component to finish before inserting with the indexes in place instead.
REBUILD_LOCK_TIMEOUT_MS = 2_000

# The import serves both doors and names its options as the CLI spells them; an upload sets them as form
# fields (ImportRequest.form_words): "--crs EPSG:4527" reads "crs=EPSG:4527" there, "with --layer" reads
# "with layer". A value starts with a capital or a digit, or has one (gcj02); "--crs says ..." is no value.
# Other options appear only inside whole CLI commands ("gridsvc import boundaries FILE --level district")
# and stay as they are.
_CLI_OPTION = re.compile(
    r"--(crs|encoding|layer|retire-missing|strict)\b(?: ((?:[A-Z0-9]|[a-z]+\d)[\w:.-]*))?"
)


def as_form_fields(message: str) -> str:
    """A service message with the CLI's option names replaced by the upload's form fields."""

    def field(match: re.Match[str]) -> str:
        name = match.group(1).replace("-", "_")
        return f"{name}={match.group(2)}" if match.group(2) else name

    return _CLI_OPTION.sub(field, message)


RowsFn = Callable[[int, int], None]  # (rows just read, rows in the file)
PhaseFn = Callable[[str], None]  # what the import does now, once the file is read (for a progress line)
T = TypeVar("T")


@dataclass
class ImportRequest:
    """What to import and how; the same for the CLI and the HTTP upload."""

    path: Path
    layer: str = "components"
    source_layer: str | None = None
    crs: str | None = None
    encoding: str | None = None
    mapping: dict[str, str] | None = None
    dry_run: bool = False
    retire_missing: bool = False
    area_codes: tuple[str, ...] = ()
    strict: bool = False
    chunk_rows: int = 100_000
    display_name: str | None = None
    report_path: Path | None = None
    # Hold the report for download when the import stores no batch to keep it (a dry run, a refused
    # file): the HTTP door's way of giving it, see services/held_reports.py.
    hold_report: bool = False
    # Messages kept or held name the upload's form fields (crs=EPSG:4527) rather than the CLI's options.
    form_words: bool = False
    level: str | None = None  # boundaries: district, street or community
    net_code: str | None = None  # net: which department's net this file is
    net_name: str | None = None
    net_department: str | None = None
    replace: bool = False  # roads: the file is every road; delete the stored roads it does not have
    # components: rebuild component's secondary indexes and foreign keys around the insert (True), insert
    # with them in place (False), or choose by size (None, see _rebuild_or_not)
    rebuild_indexes: bool | None = None


@dataclass
class ImportReport:
    """What an import found and did."""

    layer: str
    file: str
    checksum_sha256: str
    format: str
    source_layer: str | None
    crs: str
    crs_from: str
    encoding: str | None
    dry_run: bool
    # A CSV's columns read as each row's position (东坐标, 北坐标): a problem row keeps them as written.
    coordinate_fields: list[str] = field(default_factory=list)
    batch_id: int | None = None
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    repaired: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    retired: int = 0
    assigned_to_grid: int = 0
    indexes_rebuilt: bool = False
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    problems: list[validate.Problem] = field(default_factory=list)
    report_file: str | None = None
    held_report: str | None = None  # the id of the report held for download (ImportRequest.hold_report)

    def counts(self) -> dict[str, int]:
        """The numbers, for the survey batch record and summaries."""
        keys = ("rows_read", "accepted", "rejected", "repaired", "new", "changed", "unchanged", "retired")
        return {k: int(getattr(self, k)) for k in (*keys, "assigned_to_grid")}

    def to_dict(self, problem_limit: int | None = None) -> dict[str, Any]:
        """JSON-ready form (problems possibly truncated)."""
        data = {k: v for k, v in asdict(self).items() if k != "problems"}
        shown = self.problems if problem_limit is None else self.problems[:problem_limit]
        data["problems"] = [asdict(p) for p in shown]
        data["problems_total"] = len(self.problems)
        return data


class _DryRunDoneError(Exception):
    """Raised inside the transaction to roll a dry run back after it has counted everything."""


class ImportCancelled(KeyboardInterrupt):
    """Ctrl+C or a :class:`Cancellation` stopped the import before its commit: its transaction (if it had
    begun) is rolled back, and nothing was written. ``reason`` says who or what stopped it.

    A plain KeyboardInterrupt from an import came while it was committing: it may be in the database.
    """

    def __init__(self, reason: str = "interrupted (Ctrl+C)") -> None:
        super().__init__(reason)
        self.reason = reason


class Cancellation:
    """A request to stop one import, made from another thread: a background job cancelled over HTTP, a
    service that is stopping, Ctrl+C seen by the CLI's signal watcher.

    The import checks it between chunks and steps. A statement running on the import's connection is
    cancelled at once (:func:`db_engine.cancel_statement`, safe from any thread and never holding the
    GIL), so a cancel does not wait for an index build or a lock. From the commit on a cancel is refused
    (:meth:`cancel` answers False): the import may then be in the database already, and is left to finish.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None
        # The import's engine and server process, once bound.
        self._backend: tuple[Engine, db_engine.Backend] | None = None
        self._too_late = False

    @property
    def reason(self) -> str | None:
        """Why the import was asked to stop; None while nobody has asked."""
        return self._reason

    def cancel(self, reason: str) -> bool:
        """Ask the import to stop, rolling back. False when it is too late: committing, or ended."""
        with self._lock:
            if self._too_late:
                return False
            if self._reason is None:
                self._reason = reason
                if self._backend is not None:
                    try:
                        db_engine.cancel_statement(*self._backend)
                    except Exception:  # the server unreachable, or full: the next check stops it
                        log.warning("could not send the cancel request for an import", exc_info=True)
            return True

    @contextmanager
    def bound(self, session: Session) -> Iterator[None]:
        """Within: cancel the statements of ``session``'s connection too. Leave it before the session
        ends, so that no cancel request reaches the connection once it is back in the pool, serving
        someone else (leaving waits for a request being sent)."""
        backend = (session.connection().engine, db_engine.current_backend(session))
        with self._lock:
            self._backend = backend
        try:
            self.check()
            yield
        finally:
            with self._lock:
                self._backend = None

    def check(self) -> None:
        """Raise :class:`ImportCancelled` if a cancel was asked for."""
        if self._reason is not None:
            raise ImportCancelled(self._reason)

    def commit_now(self) -> None:
        """Refuse cancels from here on, unless one came already (then raise it): the commit is next."""
        with self._lock:
            self.check()
            self._too_late = True

    @property
    def committing(self) -> bool:
        return self._too_late

    def end(self) -> None:
        """The import is over, however it ended: later cancels are too late."""
        with self._lock:
            self._too_late = True


def _raise_if_cancelled(stop: Cancellation, exc: BaseException) -> None:
    """Raise :class:`ImportCancelled` from ``exc`` (an import's failure) when ``exc`` is the cancel: an
    interrupt before the commit, or a statement failing because ``stop`` cancelled it. The session's
    context manager has rolled back by then. Otherwise return, for the caller to re-raise ``exc``: an
    interrupt while committing stays a plain KeyboardInterrupt, since the commit may have finished."""
    if isinstance(exc, ImportCancelled) or stop.committing:
        return
    if isinstance(exc, KeyboardInterrupt):
        raise ImportCancelled(stop.reason or "interrupted (Ctrl+C)") from exc
    # A refusal or a bad file found meanwhile is answered as it is; a database error after a cancel is the
    # cancel (the statement it stopped, or one its cancel request reached as it began).
    if isinstance(exc, Exception) and stop.reason is not None and not isinstance(exc, GridsvcError):
        raise ImportCancelled(stop.reason) from exc


def _checking(stop: Cancellation, progress: RowsFn | None, phase: PhaseFn | None) -> tuple[RowsFn, PhaseFn]:
    """The progress and phase callbacks, each checking ``stop`` first: every chunk and step is a point
    where a cancel is taken."""

    def rows(read: int, total: int) -> None:
        stop.check()
        if progress is not None:
            progress(read, total)

    def say(text: str) -> None:
        stop.check()
        if phase is not None:
            phase(text)

    return rows, say


def _freeze_older_objects() -> None:
    """Take the objects alive now out of the cyclic garbage collector's walks, before a file is read.

    Why: reading makes Python objects that the collector tracks (a shapely geometry per row among them),
    and each time enough of them pile up it walks every tracked object again, the loaded modules' too.
    That cost 1 s per million rows, a tenth of the reading thread (py-spy; docs/BENCHMARKS.md). Frozen
    objects are left out of those walks; the rows' own objects are still collected as before, and a frozen
    object is still freed when its last reference goes. Collected first, so no garbage is frozen; never
    unfrozen, like the plan locator's freeze (services/locate.py), which an unfreeze here could undo from
    another thread of the server.
    """
    gc.collect()
    gc.freeze()


# The parts of a Shapefile that hold its content (its indexes and metadata do not): its attributes are in
# the .dbf, so a corrected file with the same points must not have the first one's checksum.
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


def _parts_of(stem: str, names: Sequence[str]) -> dict[str, str]:
    """The names among ``names`` that are parts of the Shapefile ``stem`` (路灯 or shp/路灯), by suffix."""
    return {
        name[len(stem) :].lower(): name
        for name in names
        if name.startswith(stem) and name[len(stem) :].lower() in _SHAPEFILE_PARTS
    }


def _shapefile_parts(names: Sequence[str]) -> dict[str, str] | None:
    """Of the file names (paths) in a folder or a zip, the parts of its one Shapefile by suffix (.shp,
    .dbf, ...); None unless it holds exactly one."""
    shps = [name for name in names if name.lower().endswith(".shp")]
    return _parts_of(shps[0][: -len(".shp")], names) if len(shps) == 1 else None


def file_checksum(path: Path) -> str:
    """SHA-256 of what a file holds. A Shapefile's is of its content parts, however it comes: its ``.shp``,
    a folder or a ``.zip`` holding it (a contractor sends it zipped; staff import the unzipped folder), so
    that the same content has one checksum. Any other folder (a FileGDB) is hashed whole, by relative path;
    any other file as it is."""
    digest = hashlib.sha256()

    def add(label: str, handle: IO[bytes]) -> None:
        digest.update(label.encode())
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)

    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            parts = _shapefile_parts([m.filename for m in archive.infolist() if not m.is_dir()])
            if parts is not None:
                for suffix in _SHAPEFILE_PARTS:
                    if suffix in parts:
                        with archive.open(parts[suffix]) as handle:
                            add("" if suffix == ".shp" else suffix, handle)
                return digest.hexdigest()
    files: list[tuple[str, Path]]
    if path.is_dir():
        inside = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
        parts = None if path.suffix.lower() == ".gdb" else _shapefile_parts(inside)
        if parts is None:
            files = [(name, path / name) for name in inside]
        else:
            files = [("" if s == ".shp" else s, path / parts[s]) for s in _SHAPEFILE_PARTS if s in parts]
    elif path.suffix.lower() == ".shp":
        parts = _parts_of(path.stem, [p.name for p in path.parent.iterdir() if p.is_file()])
        files = [("" if s == ".shp" else s, path.parent / parts[s]) for s in _SHAPEFILE_PARTS if s in parts]
    else:
        files = [("", path)]
    for label, file in files:
        with file.open("rb") as handle:
            add(label, handle)
    return digest.hexdigest()


def _check_request(request: ImportRequest) -> None:
    problems = []
    if request.layer not in LAYERS:
        problems.append(FieldProblem("layer", f"one of {', '.join(LAYERS)}"))
    if not request.path.exists():
        problems.append(FieldProblem("file", f"{request.path} does not exist"))
    if request.chunk_rows < 1:
        problems.append(FieldProblem("chunk_rows", "must be at least 1"))
    bad_areas = [a for a in request.area_codes if not AREA_CODE.fullmatch(a)]
    if bad_areas:
        problems.append(FieldProblem("area", f"{', '.join(bad_areas)}: use 6-, 9- or 12-digit admin codes"))
    if request.area_codes and not request.retire_missing:
        problems.append(FieldProblem("area", "an area only matters with --retire-missing"))
    problems.extend(_options_of_other_layers(request))
    problems.extend(_report_path_problems(request.report_path))
    if problems:
        raise InvalidInputError("the import request is not valid", problems=problems)


def _report_path_problems(path: Path | None) -> list[FieldProblem]:
    """A report file that could not be written, found before the import: written after the commit, it
    would fail an import that had in fact been committed."""
    if path is None:
        return []
    if path.suffix.lower() not in (".gpkg", ".csv"):
        return [FieldProblem("report", f"{path}: a report is a .gpkg or a .csv file")]
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return [FieldProblem("report", f"{path}: the folder {folder} does not exist; create it first")]
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return [FieldProblem("report", f"{path}: cannot write there (permission denied)")]
    return []


def _options_of_other_layers(request: ImportRequest) -> list[FieldProblem]:
    """Options given for a layer they do not belong to (possible over HTTP, where every form field is
    accepted for every layer): refused, not silently ignored."""
    given = {
        "retire_missing": ("components", request.retire_missing),
        "rebuild_indexes": ("components", request.rebuild_indexes is not None),
        "level": ("boundaries", request.level is not None),
        "net_code": ("net", request.net_code is not None),
        "net_name": ("net", request.net_name is not None),
        "net_department": ("net", request.net_department is not None),
        "replace": ("roads", request.replace),
    }
    return [
        FieldProblem(name, f"only for importing {owner}, not {request.layer}")
        for name, (owner, present) in given.items()
        if present and owner != request.layer and request.layer in LAYERS
    ]


# The columns a problems report adds (gis.export.write_problems; its source_row is replaced on reading).
# GIS staff correct a report in place and import it again: these describe the last import, not the
# component, so they are left out rather than kept in its free attributes.
_REPORT_ONLY_COLUMNS = tuple(c for c in REPORT_COLUMNS if c != "source_row")


# What an export adds besides the fields an import of its layer reads, also as a Shapefile's 10-byte
# field names: GIS staff export, correct in QGIS and import again. Components add
# gis.export.DERIVED_COMPONENT_COLUMNS; boundaries their parent's code, which the import takes from the
# code itself (a street's first 6 digits, a community's first 9). Both write their free attributes as
# one column, ``attributes``.
_EXPORT_ONLY_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    layer: (names, tuple(shapefile_field_names(list(names)).values()))
    for layer, names in (("components", DERIVED_COMPONENT_COLUMNS), ("boundaries", ("parent_code",)))
}


def _left_out_columns(info: io.LayerInfo, layer: str) -> tuple[str, ...]:
    """The columns to leave out of a file gridsvc wrote: a corrected problems report's own columns, or an
    export's derived ones (a component's class name, grids and validity, a boundary's parent: the import
    finds them itself). An export is known by all of them, or by two or more of them beside its
    ``attributes`` column: GIS staff may delete one in QGIS before importing the file again, and the rest
    would then make every row a change. Any other file keeps such columns in its free attributes (a
    boundaries file with a ``parent_code`` alone, or one of them beside an ``attributes`` column)."""
    fields = set(info.fields)
    if set(_REPORT_ONLY_COLUMNS) <= fields:
        return _REPORT_ONLY_COLUMNS
    # The names as written, or as a Shapefile cut them (unit_grid_): whichever the file has more of.
    names, present = max(
        (
            (names, tuple(name for name in names if name in fields))
            for names in _EXPORT_ONLY_COLUMNS.get(layer, ())
        ),
        key=lambda candidate: len(candidate[1]),
        default=((), ()),
    )
    whole = len(present) == len(names) and (layer != "boundaries" or "attributes" in fields)
    # Some deleted: at least two left beside ``attributes``, so that a contractor's own valid_from (an
    # installation date) beside an attributes column is not taken for an export's and left out.
    return present if whole or (len(present) >= 2 and "attributes" in fields) else ()


def _is_export(info: io.LayerInfo, layer: str) -> bool:
    """Whether the file's ``attributes`` column is read back into the free attributes rather than kept as
    one attribute: an export's, whatever derived columns were deleted from it (see _left_out_columns),
    or any file's column of that name holding JSON objects (a cell that is not one stays as it is)."""
    return "attributes" in info.fields and _left_out_columns(info, layer) != _REPORT_ONLY_COLUMNS


def _exported_attributes_merged(outer: dict[str, Any]) -> dict[str, Any] | None:
    """A row's free attributes with the ``attributes`` member an export wrote (JSON text, or the object
    itself from a GeoJSON) read back into them; None when that member is not a JSON object."""
    inner = outer.get("attributes")
    try:
        exported = json.loads(inner) if isinstance(inner, str) else inner
    except json.JSONDecodeError:
        return None
    if not isinstance(exported, dict):
        return None
    return {**exported, **{k: v for k, v in outer.items() if k != "attributes"}}


# Why an export's attributes cell that holds no JSON object is rejected rather than imported.
_UNREADABLE_ATTRIBUTES: Final = (
    "the attributes column holds no JSON object (a Shapefile keeps only 254 bytes of a text, so a long one "
    "arrives cut): the free attributes it held cannot be read back, and importing the row would replace "
    "them. Import this row from a GeoPackage or GeoJSON export, which keeps the column whole, or repair "
    "its JSON text"
)


def _with_exported_attributes(
    mapped: gpd.GeoDataFrame, *, exported: bool
) -> tuple[gpd.GeoDataFrame, dict[int, tuple[str, str]]]:
    """An export's ``attributes`` column is the rows' free attributes: read it back into them, rather than
    keep it as one attribute inside them (where every export and import would nest it one level deeper). A
    column GIS staff added to the export stays an attribute of its own, and wins over a key of the same
    name. Attributes may be dicts or, on their way to COPY, JSON text. A blank cell is no attributes.

    Returns the rows, and, when the file is ``exported`` by gridsvc (known by its derived columns, see
    _left_out_columns), each row whose cell holds text that is no JSON object (cut at a Shapefile's 254
    bytes, edited by hand) with its value and why it is rejected: imported, it would replace the stored
    attributes with a fragment. In any other file such text stays an attribute, as the file has it."""
    unreadable: dict[int, tuple[str, str]] = {}

    def merged(row: int, value: Any) -> Any:
        if value is None:
            return None
        as_text = isinstance(value, str)
        outer = json.loads(value) if as_text else value
        inner = outer.get("attributes")
        if isinstance(inner, str) and not inner.strip():
            result: dict[str, Any] | None = {k: v for k, v in outer.items() if k != "attributes"}
        else:
            result = _exported_attributes_merged(outer)
        if result is None:
            if exported and inner is not None:
                unreadable[row] = (str(inner), _UNREADABLE_ATTRIBUTES)
            return value
        return json.dumps(result, ensure_ascii=False) if as_text else result

    out = mapped.copy()
    rows = mapped["source_row"].to_numpy(dtype=np.int64).tolist()
    values = mapped["attributes"].to_numpy(dtype=object, na_value=None).tolist()
    out["attributes"] = [merged(row, value) for row, value in zip(rows, values, strict=True)]
    return out, unreadable


def _with_dates_of_attributes(rows: gpd.GeoDataFrame, *, skip: Mapping[int, Any]) -> gpd.GeoDataFrame:
    """Take the standard dates (``validate.DATE_FIELDS``) an export writes inside its attributes JSON out
    into their columns, where a row has none of its own, so that a date edited there is checked and
    written as ISO 8601 as a date column's is (2023/5/8 is 2023-05-08; 2023-02-29 is refused), not stored
    as typed. They go back into the free attributes with the other standard fields without a column. The
    source rows in ``skip`` (attributes that are no JSON object, rejected) are left as they are."""
    out = rows.copy()
    attributes = out["attributes"].to_numpy(dtype=object, na_value=None).tolist()
    source_rows = out["source_row"].to_numpy(dtype=np.int64).tolist()
    for date_field in validate.DATE_FIELDS:
        column = (
            out[date_field].to_numpy(dtype=object, na_value=None).tolist()
            if date_field in out.columns
            else [None] * len(out)
        )
        lifted = False
        for i, value in enumerate(attributes):
            if column[i] is not None or value is None or source_rows[i] in skip:
                continue
            as_text = isinstance(value, str)
            if as_text and f'"{date_field}"' not in value:
                continue  # most rows: no need to parse them
            members = json.loads(value) if as_text else value
            if not isinstance(members, dict) or members.get(date_field) is None:
                continue
            members = dict(members)
            column[i] = str(members.pop(date_field))
            attributes[i] = json.dumps(members, ensure_ascii=False) if as_text else members
            lifted = True
        if lifted:
            out[date_field] = pd.Series(column, index=out.index, dtype=object)
    out["attributes"] = pd.Series(attributes, index=out.index, dtype=object)
    return out


def _open(request: ImportRequest, settings: Settings) -> io.LayerInfo:
    info = _inspect(request, settings)
    left_out = _left_out_columns(info, request.layer)
    if left_out:
        exported = left_out != _REPORT_ONLY_COLUMNS
        what = f"{request.layer} export" if exported else "problems report"
        note = (
            f"this file is a gridsvc {what}: its columns {', '.join(left_out)} were left out (the import "
            "finds them itself); every other column was read as in any file"
            + (", its attributes JSON into the free attributes" if exported else "")
        )
        info = dataclasses.replace(info, warnings=(*info.warnings, note))
    return info


def _inspect(request: ImportRequest, settings: Settings) -> io.LayerInfo:
    try:
        return io.inspect_layer(
            request.path,
            layer=request.source_layer,
            crs=request.crs,
            encoding=request.encoding,
            city_bbox=settings.city_bbox,
            archive_limits=archive_limits(settings),
        )
    except io.LayerError as exc:
        raise _file_refused(exc, request) from exc


def _file_refused(exc: io.LayerError, request: ImportRequest) -> InvalidInputError:
    """The whole-file error under the option it is about (crs, encoding, layer, else file), naming an
    upload by the name it was sent with rather than the temporary path the server gave it."""
    message = _as_sent(request, str(exc))
    return InvalidInputError(message, problems=[FieldProblem(exc.field, message)])


def _as_sent(request: ImportRequest, message: str) -> str:
    """``message`` naming an upload by the name it was sent with: no path on the server goes out (the
    temporary file, or the folder a zip was unpacked into)."""
    if not request.display_name:
        return message
    message = message.replace(str(request.path), request.display_name)
    folder = next((p for p in request.path.parents if p.name.startswith(UPLOAD_FOLDER_PREFIX)), None)
    return message if folder is None else message.replace(f"{folder}/", "")


def _chunks(info: io.LayerInfo, request: ImportRequest, settings: Settings) -> Iterator[gpd.GeoDataFrame]:
    report_only = list(_left_out_columns(info, request.layer))
    try:
        for chunk in io.iter_chunks(info, chunk_rows=request.chunk_rows, city_bbox=settings.city_bbox):
            yield chunk.drop(columns=report_only) if report_only else chunk
    except io.LayerError as exc:
        raise _file_refused(exc, request) from exc


# The fields every row of a layer needs. A file with no column for one (its code under a name no alias
# knows, such as BM) would have every row rejected for it and an empty batch recorded: it is refused whole
# instead, with the file's fields to choose from.
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "components": ("code",),
    "boundaries": ("code", "name"),
    "stations": ("name", "community_code"),
    "net": ("code",),
}


def _mapping(info: io.LayerInfo, request: ImportRequest) -> dict[str, str]:
    left_out = {*_left_out_columns(info, request.layer), *info.coordinate_fields}
    fields = [f for f in info.fields if f not in left_out]
    try:
        mapping = fieldmap.resolve_mapping(fields, request.mapping, layer=request.layer)
    except fieldmap.MappingError as exc:
        raise InvalidInputError(str(exc), problems=[FieldProblem("mapping", str(exc))]) from exc
    missing = [f for f in _REQUIRED_FIELDS.get(request.layer, ()) if f not in mapping]
    if missing:
        aliases = fieldmap.LAYER_ALIASES[request.layer]
        # Said as the door the file came through spells it.
        how = 'mapping={{"{}": "FIELD"}}' if request.form_words else "--map {}=FIELD"
        problems = [
            FieldProblem(
                "mapping",
                f"no field of the file is the {f} (known as {', '.join(aliases.get(f, ())) or f}); the "
                f"file's fields are: {', '.join(fields) or '(none)'}; say which with {how.format(f)}",
            )
            for f in missing
        ]
        raise InvalidInputError(
            f"{request.display_name or request.path.name}: no field holds the {' or the '.join(missing)}, "
            "so every row would be rejected; nothing was imported",
            problems=problems,
        )
    return mapping


def _with_mapping_notes(info: io.LayerInfo, request: ImportRequest, mapping: dict[str, str]) -> io.LayerInfo:
    """``info`` with a warning for each standard field that several of the file's fields are named as
    (标识码 and OBJCODE): one is read, the others are kept as free attributes, and staff should know."""
    left_out = {*_left_out_columns(info, request.layer), *info.coordinate_fields}
    fields = [f for f in info.fields if f not in left_out]
    alternatives = fieldmap.unread_alternatives(fields, mapping, request.mapping, layer=request.layer)
    if not alternatives:
        return info
    how = 'mapping={{"{}": "{}"}}' if request.form_words else "--map {}={}"
    notes = [
        f"{request.display_name or request.path.name}: the {field} is read from its {mapping[field]} field; "
        f"{' and '.join(others)} {'is' if len(others) == 1 else 'are'} named as the {field} too and kept as "
        f"{'a free attribute' if len(others) == 1 else 'free attributes'} (to read {others[0]} instead, give "
        f"{how.format(field, others[0])})"
        for field, others in alternatives.items()
    ]
    return dataclasses.replace(info, warnings=(*info.warnings, *notes))


def _without_positions(chunk: gpd.GeoDataFrame, info: io.LayerInfo) -> gpd.GeoDataFrame:
    """The chunk without the columns its positions were read from (a CSV's x and y): they are its geometry
    now, not free attributes as well, which would hold a GCJ-02 text beside the stored CGCS2000 point and
    make a census re-surveyed in another format differ in every row. A problem report shows them again
    (see _collect)."""
    return chunk.drop(columns=list(info.coordinate_fields)) if info.coordinate_fields else chunk


def _refused_before_validation(
    mapped: gpd.GeoDataFrame,
    chunk: gpd.GeoDataFrame,
    max_vertices: int,
    unreadable_attributes: Mapping[int, tuple[str, str]] | None = None,
    contradictions: Mapping[int, tuple[str, str, str]] | None = None,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, list[validate.Problem]]:
    """Split off, with their problems, the rows the reader could not convert from the file's CRS (it
    left them without geometry, see ``gis.io.UNCONVERTIBLE``), those whose exported attributes cannot be
    read back (see :func:`_with_exported_attributes`), those with an infinite number (see
    :func:`_infinite_numbers`), those with a field that contradicts their code (``contradictions``: by
    row, the field, its value and why) and those with too many vertices."""
    unconvertible: Mapping[int, tuple[str, str]] = chunk.attrs.get(io.UNCONVERTIBLE, {})
    found: dict[int, list[tuple[str, str | None, str]]] = {}
    for field_name, of_rows in (
        ("geometry", unconvertible),
        ("attributes", unreadable_attributes or {}),
    ):
        for row, (value, reason) in of_rows.items():
            found.setdefault(int(row), []).append((field_name, value, reason))
    for row, problem in [*_infinite_numbers(chunk).items(), *(contradictions or {}).items()]:
        found.setdefault(row, []).append(problem)
    problems: list[validate.Problem] = []
    refused = mapped.iloc[:0]
    if found:
        bad = mapped["source_row"].isin(list(found)).to_numpy()
        refused = mapped[bad]
        if unconvertible:
            refused = _placed_for_report(refused, chunk.attrs.get(io.REPORT_GEOMETRIES, {}))
        mapped = mapped[~bad].reset_index(drop=True)
        for row in refused["source_row"]:
            for where, shown, why in found[int(row)]:
                problems.append(validate.Problem(int(row), where, shown, why, action="rejected"))
    mapped, oversized, too_many_vertices = _without_oversized(mapped, max_vertices)
    return mapped, pd.concat([refused, oversized]), [*problems, *too_many_vertices]


def _contradicting_parent_codes(
    chunk: gpd.GeoDataFrame, code_field: str | None
) -> dict[int, tuple[str, str, str]]:
    """The boundary rows whose 街道代码 or 区县代码 is not the start of their code (a community 370102001001
    with 街道代码 370102002): one of the two is wrong, and the import cannot tell which, so the row is
    rejected rather than stored under its code with the other kept as an attribute. By row: the field, its
    value and why."""
    if code_field is None or code_field not in chunk.columns:
        return {}
    codes = fieldmap.clean_text(chunk[code_field]).to_numpy(dtype=object)
    rows = chunk["source_row"].to_numpy()
    found: dict[int, tuple[str, str, str]] = {}
    for field_name, digits in fieldmap.LEVEL_CODE_FIELDS.items():
        if field_name == code_field or field_name not in chunk.columns:
            continue
        level = validate.level_of_code_length(digits)
        parents = fieldmap.clean_text(chunk[field_name]).to_numpy(dtype=object)
        for row, code, parent in zip(rows, codes, parents, strict=True):
            if code is None or parent is None or len(code) <= digits or code[:digits] == parent:
                continue
            found.setdefault(
                int(row),
                (
                    field_name,
                    parent,
                    f"{field_name} {parent} contradicts the code {code}, whose first {digits} digits name "
                    f"its {level} {code[:digits]}: correct one of them",
                ),
            )
    return found


def _infinite_numbers(chunk: gpd.GeoDataFrame) -> dict[int, tuple[str, str, str]]:
    """The rows with an infinite number (a GeoPackage or FileGDB REAL holding inf, typically a division by
    zero in the contractor's spreadsheet) in any field: no field can hold one (JSON has no infinity), and
    storing it as empty would lose that the survey gave something there. By row: its first such field."""
    found: dict[int, tuple[str, str, str]] = {}
    rows = chunk["source_row"].to_numpy()
    for column in chunk.columns:
        values = chunk[column]
        if column == chunk.geometry.name or not pd.api.types.is_float_dtype(values.dtype):
            continue
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        for at in np.flatnonzero(np.isinf(array)):
            shown = "inf" if array[at] > 0 else "-inf"
            found.setdefault(
                int(rows[at]),
                (
                    str(column),
                    shown,
                    f"{column} is {shown}, an infinite number, which no field can keep: write the value "
                    "measured, or leave the field empty",
                ),
            )
    return found


def _placed_for_report(
    refused: gpd.GeoDataFrame, geometries: Mapping[int, shapely.Geometry]
) -> gpd.GeoDataFrame:
    """The rows the reader could not convert, with the geometry it placed for the report where it could
    (see ``gis.io.REPORT_GEOMETRIES``): a line with one vertex swapped is corrected there, not drawn again."""
    if not geometries:
        return refused
    placed = refused.copy()
    placed[placed.geometry.name] = gpd.GeoSeries(
        [geometries.get(int(row)) for row in placed["source_row"]], index=placed.index, crs=placed.crs
    )
    return placed


def _without_oversized(
    mapped: gpd.GeoDataFrame, max_vertices: int
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, list[validate.Problem]]:
    """Split off the rows whose geometry has more than ``max_vertices`` vertices, rejected with a problem.

    They are taken out before validation: repairing or measuring a million-vertex polygon is the slow
    part, and storing it would slow every later locate, tile and plan check touching it. Their report
    rows keep the attributes but not the geometry. Returns (rows to validate, refused rows, problems).
    """
    counts = shapely.get_num_coordinates(np.asarray(mapped.geometry.to_numpy(), dtype=object))
    over = counts > max_vertices
    if not over.any():
        return mapped, mapped.iloc[0:0], []
    refused = mapped[over].copy()
    refused_counts = counts[over]
    kinds = [str(g.geom_type) for g in refused.geometry.to_numpy()]
    refused[refused.geometry.name] = None
    problems = [
        validate.Problem(
            source_row=int(row),
            field="geometry",
            value=f"{kind} of {int(n):,} vertices",
            reason=f"the geometry has {int(n):,} vertices, more than the {max_vertices:,} allowed "
            "(GRIDSVC_MAX_GEOMETRY_VERTICES): simplify it (QGIS: Vector > Geometry Tools > Simplify, a "
            "tolerance of 0.1 m keeps its shape) and import it again",
            action="rejected",
        )
        for row, kind, n in zip(refused["source_row"], kinds, refused_counts, strict=True)
    ]
    return mapped[~over].reset_index(drop=True), refused, problems


def _with_refused(mapped: gpd.GeoDataFrame, refused: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The chunk's rows again, for the problem report: validated ones and those refused before."""
    return mapped if refused.empty else pd.concat([mapped, refused], ignore_index=True)


def _finite_or_none(geoms: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Geometries that can be stored as they came (possibly invalid), else None (empty, NaN, inf)."""
    out = np.asarray(geoms, dtype=object).copy()
    present = ~shapely.is_missing(out)
    bad = np.zeros(len(out), dtype=bool)
    if present.any():
        coords_ok = np.array(
            [np.isfinite(shapely.get_coordinates(g)).all() and not g.is_empty for g in out[present]],
            dtype=bool,
        )
        bad[np.flatnonzero(present)[~coords_ok]] = True
    out[bad] = None
    return out


def _problem_rows(problems: list[validate.Problem], rows: gpd.GeoDataFrame, batch_id: int) -> pd.DataFrame:
    """Problems joined with their source rows' values and geometry, ready to COPY.

    A row's standard fields (code, name, status, ...) are stored with its free attributes, in that order,
    so the report served later (``import_problems_file``) has the same columns as the one the import
    writes, and can be corrected and imported again like it.
    """
    if not problems:
        return pd.DataFrame()
    table = pd.DataFrame([asdict(p) for p in problems])
    by_row = rows.drop_duplicates("source_row").set_index("source_row")
    geoms = _finite_or_none(by_row.geometry.reindex(table["source_row"]).to_numpy())
    present = ~shapely.is_missing(geoms)
    hexes = np.full(len(table), None, dtype=object)
    if present.any():
        hexes[present] = bulk.ewkb_hex(geoms[present])
    return pd.DataFrame(
        {
            "survey_batch_id": batch_id,
            "source_row": table["source_row"].astype(np.int64).to_numpy(),
            "field": table["field"].to_numpy(),
            "value": table["value"].to_numpy(),
            "reason": table["reason"].to_numpy(),
            "action": table["action"].to_numpy(),
            "attributes": bulk.json_column(_row_values(by_row).reindex(table["source_row"]).tolist()),
            "geom": hexes,
        }
    )


def _row_values(by_row: pd.DataFrame) -> pd.Series:
    """Each row's values as one dict: its fields as text (none left out but empty ones), then its free
    attributes."""
    geometry = by_row.geometry.name if isinstance(by_row, gpd.GeoDataFrame) else None
    fields = [c for c in by_row.columns if c not in ("attributes", geometry)]
    free = (
        by_row["attributes"] if "attributes" in by_row else pd.Series([{}] * len(by_row), index=by_row.index)
    )
    values = []
    for record, attributes in zip(
        by_row[fields].astype(object).to_dict("records"), free.tolist(), strict=True
    ):
        row = {k: str(v) for k, v in record.items() if not (v is None or (np.ndim(v) == 0 and pd.isna(v)))}
        values.append({**row, **(attributes if isinstance(attributes, dict) else {})})
    return pd.Series(values, index=by_row.index, dtype=object)


# --- components: encoded for COPY here, staged by a database thread ------------------------------------


class _Writer:
    """One thread that does the import's database work while rows are read, so one chunk is staged while the
    next is read, mapped and validated (PostgreSQL works in its own process; psycopg2 releases the GIL while
    it waits). Calls run in the order made, on the session's connection, in its transaction; the calling
    thread leaves the session alone until :meth:`close`.

    The thread also finishes each chunk's COPY data (:func:`_chunk_block`): GEOS's tree query releases the
    GIL, so it runs beside the next chunk's validation. Once :attr:`written` is set, chunks go straight
    into component (see :class:`_Written`) rather than to the stage.
    """

    def __init__(
        self, session: Session, grids: gridindex.UnitGridIndex | None, grids_of_plan: GridRule | None
    ) -> None:
        self._session = session
        self._grids = grids
        self._grids_of_plan = grids_of_plan
        # Taken here, on the caller's thread: close() may need them while the thread uses the session.
        self._engine = session.connection().engine
        self._backend = db_engine.current_backend(session)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridsvc-import")
        self._pending: deque[Future[None]] = deque()
        self.written: _Written | None = None

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(session, *args)`` after the work handed over so far, and return its result."""
        return self._pool.submit(function, self._session, *args).result()

    def stage(self, chunk: _EncodedChunk) -> None:
        """Hand over one encoded chunk; waits only while :data:`_IN_FLIGHT` chunks are still being staged."""
        while len(self._pending) >= _IN_FLIGHT:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._stage, chunk))

    def _stage(self, chunk: _EncodedChunk) -> None:
        block, with_grid = _chunk_block(chunk, self._grids)
        written = self.written
        if written is None:
            repo.stage_components(self._session, block, grids_of_plan=self._grids_of_plan)
            return
        if written.all_new:
            written.all_new = repo.copy_new_components(
                self._session, block, batch_id=written.batch.id, now=written.now
            )
            if written.all_new:
                written.new += len(chunk.geoms)
                written.assigned_to_grid += with_grid
                return
        inserted, with_grid = repo.write_new_components(
            self._session, block, batch_id=written.batch.id, now=written.now
        )
        written.new += inserted
        written.assigned_to_grid += with_grid

    def finish(self) -> None:
        """Wait for every chunk to be staged (raising its error, if one failed)."""
        while self._pending:
            self._pending.popleft().result()

    def close(self, *, failed: bool) -> None:
        """Stop the thread; after a failure, cancel the statement it runs so the rollback need not wait."""
        if failed and any(not f.done() for f in self._pending):
            try:
                db_engine.cancel_statement(self._engine, self._backend)
            except Exception:  # the server unreachable: the rollback then waits for the statement
                log.warning("could not cancel the import's running statement", exc_info=True)
        self._pool.shutdown(wait=True, cancel_futures=True)


def _department_names(accepted: gpd.GeoDataFrame) -> set[str]:
    names: set[str] = set()
    for column in ("supervisor", "maintainer"):
        values = accepted[column].to_numpy(dtype=object)
        names.update(str(v) for v in pd.unique(values[~pd.isna(values)]))
    return names


def _copy_ids(ids: npt.NDArray[np.int64]) -> list[str]:
    """Ids as COPY fields, :data:`gridindex.NO_GRID` as NULL."""
    fields = ids.astype(np.dtypes.StringDType())  # straight to StringDType: via str is six times slower
    fields[ids == gridindex.NO_GRID] = "\\N"
    return cast(list[str], fields.tolist())


@dataclass(frozen=True)
class _EncodedChunk:
    """Accepted rows as COPY fields of ``repo.CHUNK_COLUMNS`` but the two grid columns, and their shapes,
    from which :func:`_chunk_block` finds the grids and makes the COPY data."""

    fields: list[list[str]]
    geoms: npt.NDArray[Any]


def _encode_components(accepted: gpd.GeoDataFrame, departments: dict[str, str | None]) -> _EncodedChunk:
    """Accepted rows (attributes as JSON text) encoded for COPY, all but their grids."""
    geoms = np.asarray(accepted.geometry.to_numpy(), dtype=object)
    points = (shapely.get_type_id(geoms) == shapely.GeometryType.POINT) & ~shapely.has_z(geoms)
    geom = np.empty(len(accepted), dtype=np.dtypes.StringDType())
    # Points, nearly every row of a census, are packed by numpy; the rest by GEOS.
    geom[points] = repo.point_ewkb_hex(shapely.get_x(geoms[points]), shapely.get_y(geoms[points]))
    if not points.all():
        geom[~points] = bulk.ewkb_hex(geoms[~points]).astype(np.dtypes.StringDType())
    # Supervisor and maintainer text naming a department becomes its code; other text stays in the free
    # attributes, after the standard fields that have no column of their own.
    codes: dict[str, npt.NDArray[Any]] = {}
    members = {c: accepted[c] for c in EXTRA_STANDARD_FIELDS if c in accepted.columns}
    for column in ("supervisor", "maintainer"):
        text_values = accepted[column]
        named = text_values.map(departments).to_numpy(dtype=object, na_value=None)
        codes[column] = named
        members[column] = text_values.where(pd.isna(named))
    attributes = fieldmap.add_json_members(accepted["attributes"].to_numpy(dtype=object), members)
    fields = [
        repo.copy_text(accepted["code"].to_numpy(dtype=object)),
        repo.copy_text(accepted["class_code"].to_numpy(dtype=object)),
        repo.copy_text(accepted["name"].to_numpy(dtype=object)),
        repo.copy_text(accepted["status"].to_numpy(dtype=object)),
        repo.copy_text(accepted["owner"].to_numpy(dtype=object)),
        repo.copy_text(codes["supervisor"]),
        repo.copy_text(codes["maintainer"]),
        repo.copy_text(attributes),
        geom.tolist(),
    ]
    return _EncodedChunk(fields, geoms)


def _chunk_block(chunk: _EncodedChunk, grids: gridindex.UnitGridIndex | None) -> tuple[bytes, int]:
    """COPY data of ``repo.CHUNK_COLUMNS``, with the unit and responsibility grids ``grids`` finds (NULL
    without it: none, or found in SQL), and how many rows it gave a unit grid."""
    if grids is None:
        unit = responsibility = ["\\N"] * len(chunk.geoms)
        return repo.copy_block([*chunk.fields, unit, responsibility]), 0
    unit_ids, responsibility_ids = grids.assign(chunk.geoms)
    block = repo.copy_block([*chunk.fields, _copy_ids(unit_ids), _copy_ids(responsibility_ids)])
    return block, int((unit_ids != gridindex.NO_GRID).sum())


def import_components(
    sessions: sessionmaker[Session],
    request: ImportRequest,
    *,
    settings: Settings,
    actor: Principal,
    progress: RowsFn | None = None,
    phase: PhaseFn | None = None,
    cancellation: Cancellation | None = None,
) -> ImportReport:
    """Import a component census file in one transaction and return what happened, row by row.
    ``cancellation`` lets another thread stop it before its commit (see :class:`Cancellation`)."""
    stop = cancellation or Cancellation()
    progress, say = _checking(stop, progress, phase)
    actor.require("gis_staff")
    _check_request(request)
    started = time.perf_counter()
    try:
        info = _open(request, settings)
        mapping = _mapping(info, request)
        info = _with_mapping_notes(info, request, mapping)
        report = _new_report(request, info, "components")
        problem_rows: list[gpd.GeoDataFrame] = []
        _freeze_older_objects()
        with sessions.begin() as session, stop.bound(session):
            rules = validate.ComponentRules(
                classes=repo.component_classes(session),
                counties=repo.counties(session),
                city_bbox=settings.city_bbox,
                metric_crs=settings.metric_crs,
                city_code=settings.city_code,
                city_name=settings.city_name,
            )
            if rules.counties.empty:
                raise InvalidInputError(
                    "no district boundaries are loaded, so component codes cannot be checked against their "
                    "county: import the boundaries first (gridsvc import boundaries FILE --level district)"
                )
            _check_area(session, request.area_codes)
            _take_turn(session, "components", request, say)
            # A dry run writes nothing, so it reads the active plan without the lock an activation would
            # wait for: its grids are what the report shows, not what gets stored.
            plan = repo.active_plan(session) if request.dry_run else repo.lock_active_plan(session)
            repo.create_component_stage(session)
            run = _Run(request, settings, info, mapping, report, problem_rows, progress, actor)
            _stage_components(run, session, rules, plan[0] if plan else None)
            _take_back_earlier_duplicates(run, session)
            _settle(report, request, problem_rows, settings)
            say("comparing with the current components")
            diff = repo.classify_components(session)
            written = run.written
            report.new, report.changed, report.unchanged = diff["new"], diff["changed"], diff["unchanged"]
            if written is not None:
                report.new += written.new
            if request.retire_missing:
                # Found before anything is written, so a dry run shows what a real run would void.
                report.retired = repo.find_missing(
                    session, area_codes=request.area_codes, kept_codes=sorted(run.rejected_codes)
                )
                if run.rejected_without_code:
                    report.warnings.append(
                        f"rejected rows with no code: {run.rejected_without_code}. --retire-missing cannot "
                        "tell which components they stand for, so those may be among the "
                        f"{report.retired} marked void: fix their codes and import again"
                    )
            if request.dry_run:
                report.assigned_to_grid = repo.count_assignable(session, diff)
                _warn_of_components_without_grid(report, plan, settings)
                raise _DryRunDoneError
            if written is None:
                # The wall clock after the whole file is staged, not the transaction start: two imports in
                # one transaction still order, and a version another import committed meanwhile ends after
                # it began. (A census written as it is read took it with component to itself.)
                now = repo.clock(session)
                batch = _new_batch(session, report, request, info, actor, imported_at=now)
                rebuild = _rebuild_or_not(session, request, report.new + report.changed)
                say(f"writing {report.new + report.changed:,} components")
            else:
                now, batch, rebuild = written.now, written.batch, written.rebuild
                report.assigned_to_grid = written.assigned_to_grid
                if diff["new"] + diff["changed"]:
                    say(f"writing {diff['new'] + diff['changed']:,} components surveyed before")
            report.assigned_to_grid += repo.apply_components(session, batch_id=batch.id, now=now, counts=diff)
            _warn_of_components_without_grid(report, plan, settings)
            if rebuild is not None:
                say("rebuilding the component table's indexes and checking its foreign keys")
                repo.rebuild_component_secondary(session, rebuild)
                report.indexes_rebuilt = True
            if request.retire_missing:
                say("retiring the components the file no longer has")
                report.retired = repo.retire_missing(session, batch_id=batch.id, now=now)
            _record(session, batch, report, request, actor, problem_rows)
            stop.commit_now()  # what is left is the commit
    except _DryRunDoneError:
        report.batch_id = None
    except BaseException as exc:
        _raise_if_cancelled(stop, exc)
        raise
    finally:
        stop.end()
    return _done(report, request, problem_rows, started, settings)


def _take_turn(session: Session, layer: str, request: ImportRequest, say: PhaseFn) -> None:
    """Wait for an import of the same layer that runs now to end (a dry run, which writes nothing, does
    not). Two imports of the same codes at once would each version what the other is writing, and the
    second to commit would fail on the one-current-version rule; in turn, the second compares its rows with
    what the first committed."""
    if request.dry_run or repo.try_import_lock(session, layer):
        return
    say(f"waiting for another import of {layer} to end")
    repo.wait_for_import_lock(session, layer)
    say("reading the file")


def _check_area(session: Session, area_codes: Sequence[str]) -> None:
    """Refuse a survey area with a code no loaded community lies in, before the file is read: a mistyped
    code would otherwise make an empty area, and ``--retire-missing`` would quietly void nothing."""
    empty = repo.areas_without_communities(session, area_codes)
    if empty:
        raise InvalidInputError(
            "the survey area is not valid",
            problems=[
                FieldProblem(
                    "area",
                    f"{code}: no loaded community lies in it (check the code, or import its boundaries)",
                    {"value": code},
                )
                for code in empty
            ],
        )


def _rebuild_wanted(session: Session, request: ImportRequest, inserting: int) -> bool:
    """Whether inserting ``inserting`` rows should rebuild component's secondary indexes and foreign keys
    around the insert (the request's choice, else the size rule of :data:`REBUILD_MIN_ROWS`)."""
    wanted = request.rebuild_indexes
    if wanted is None:
        wanted = inserting >= REBUILD_MIN_ROWS and (
            repo.component_rows_estimate(session) <= REBUILD_TABLE_FACTOR * inserting
        )
    return bool(wanted) and inserting > 0


def _drop_for_rebuild(session: Session, inserting: int) -> repo.SecondaryStructures | None:
    """Drop component's secondary indexes and foreign keys, returning what to rebuild; None, with nothing
    dropped, when other transactions keep component longer than :data:`REBUILD_LOCK_TIMEOUT_MS`:
    rebuilding needs it alone until the import commits, so the import inserts with them in place."""
    if not repo.lock_component_exclusively(session, timeout_ms=REBUILD_LOCK_TIMEOUT_MS):
        log.info("component is in use: inserting about %s rows with its indexes in place", inserting)
        return None
    return repo.drop_component_secondary(session)


def _rebuild_or_not(
    session: Session, request: ImportRequest, inserting: int
) -> repo.SecondaryStructures | None:
    """For the staged rows: drop component's secondary indexes and foreign keys when inserting them is
    large, returning what to rebuild; None to insert with them in place."""
    if not _rebuild_wanted(session, request, inserting):
        return None
    return _drop_for_rebuild(session, inserting)


@dataclass
class _Run:
    """What one import reads and reports to, handed to its steps together."""

    request: ImportRequest
    settings: Settings
    info: io.LayerInfo
    mapping: dict[str, str]
    report: ImportReport
    problem_rows: list[gpd.GeoDataFrame]
    progress: RowsFn | None
    actor: Principal
    # Set when the file is written into component as it is read (a large first census, see _Written).
    written: _Written | None = None
    # Codes of rejected rows, and how many rejected rows had none: --retire-missing must not void the
    # component a rejected row stands for (a typo in its status is no reason to retire a lamp).
    rejected_codes: set[str] = field(default_factory=set)
    rejected_without_code: int = 0
    seen: validate.SeenCodes = field(default_factory=validate.SeenCodes)


@dataclass
class _Written:
    """A large first census written into component chunk by chunk while the file is read, so that the
    server inserts one chunk while the service reads and validates the next, instead of inserting them all
    after the whole file is staged (docs/BENCHMARKS.md). Its rows are new components of ``batch``, valid
    from ``now``; rows whose code has a current component are staged and compared as usual.

    It needs component alone from the first chunk to the commit, with its secondary indexes and foreign
    keys dropped (``rebuild``), and is never a dry run's or --retire-missing's (see
    :func:`_may_write_while_reading`).
    """

    batch: SurveyBatch
    now: dt.datetime
    rebuild: repo.SecondaryStructures
    new: int = 0
    assigned_to_grid: int = 0
    # Whether every chunk so far was new throughout, and so COPYed straight into component: the first that
    # is not, and every one after it, goes through repo.write_new_components instead.
    all_new: bool = True


def _may_write_while_reading(request: ImportRequest, grids_in_sql: bool) -> bool:
    """Whether an import may write as it reads (:class:`_Written`): not a dry run, which writes nothing;
    not with --retire-missing, which finds what is missing by what is staged; not when told to keep the
    indexes, nor when each chunk's grids are found in SQL on its way into the stage (a small file)."""
    return not (request.dry_run or request.retire_missing or request.rebuild_indexes is False or grids_in_sql)


def _begin_writing(session: Session, run: _Run, first: gpd.GeoDataFrame) -> _Written | None:
    """Start writing as the file is read (:class:`_Written`) if ``first``, the first accepted rows, tell
    that the whole file inserts enough rows to rebuild component's indexes around it, and component can be
    had alone; None to stage the file."""
    if not len(first):
        return None
    new_share = 1 - repo.current_codes_count(session, first["code"].tolist()) / len(first)
    inserting = round(new_share * max(run.info.feature_count, len(first)))
    if not _rebuild_wanted(session, run.request, inserting):
        return None
    rebuild = _drop_for_rebuild(session, inserting)
    if rebuild is None:
        return None
    now = repo.clock(session)
    batch = _new_batch(session, run.report, run.request, run.info, run.actor, imported_at=now)
    return _Written(batch=batch, now=now, rebuild=rebuild)


def _take_back_earlier_duplicates(run: _Run, session: Session) -> None:
    """Take out of the stage (or out of component, for rows written as they were read), into the report, the
    earlier rows of codes a later chunk used again (see ``gis.validate.SeenCodes``): every row of a
    duplicated code is rejected, whatever the chunk size."""
    problems = run.seen.taken_back
    if not problems:
        return
    codes = run.seen.taken_back_codes()
    removed = repo.unstage_components(session, codes)
    if run.written is not None:
        unwritten = repo.unwrite_components(session, codes, batch_id=run.written.batch.id)
        run.written.new -= len(unwritten)
        run.written.assigned_to_grid -= int(unwritten["unit_grid_id"].notna().sum())
        removed = pd.concat([removed, unwritten], ignore_index=True)
    removed = removed.drop(columns="unit_grid_id")
    removed["source_row"] = removed["code"].map({str(p.value): p.source_row for p in problems})
    run.report.accepted -= len(removed)
    run.report.problems.extend(problems)
    run.problem_rows.append(removed)
    run.rejected_codes.update(codes)


def _note_rejected_codes(run: _Run, problems: list[validate.Problem], read: gpd.GeoDataFrame) -> None:
    """Remember the codes of a chunk's rejected rows (see _Run.rejected_codes)."""
    rejected = {p.source_row for p in problems if p.action == "rejected"}
    if not rejected:
        return
    codes = read.loc[read["source_row"].isin(rejected), "code"]
    run.rejected_codes.update(str(c) for c in codes.dropna())
    run.rejected_without_code += int(codes.isna().sum())


def _warn_of_components_without_grid(
    report: ImportReport, plan: tuple[int, int] | None, settings: Settings
) -> None:
    """Say how many components written (by a dry run: that would be) lie in no unit grid of the active
    plan, nor near one."""
    written = report.new + report.changed
    if plan is None or report.assigned_to_grid >= written:
        return
    would = "would be written" if report.dry_run else "written"
    consequence = "would have" if report.dry_run else "have"
    report.warnings.append(
        f"{written - report.assigned_to_grid:,} of the {written:,} components {would} lie in no unit grid "
        f"of the active plan {plan[0]} and more than {settings.locate_nearest_tolerance_m:g} m from every "
        f"one: they {consequence} no grid, and no one answers for them until a plan covers them"
    )


def grid_rule(plan_id: int, settings: Settings) -> GridRule:
    """Which unit grid of plan ``plan_id`` holds a feature: the one at its representative point, else the
    nearest within ``locate_nearest_tolerance_m`` (as a located point in a gap gets), for imports and
    plan activations alike."""
    return GridRule(
        plan_id=plan_id,
        nearest_m=settings.locate_nearest_tolerance_m,
        metric_srid=resolve_crs(settings.metric_crs).epsg,
    )


def _grids_in_memory(rows: int, unit_grids: int) -> bool:
    """Whether a file of ``rows`` finds its grids in memory rather than in SQL (see _stage_components)."""
    return rows >= unit_grids


def _stage_components(
    run: _Run, session: Session, rules: validate.ComponentRules, plan_id: int | None
) -> None:
    """Read, map, validate and encode the file chunk by chunk; stage each chunk (with the unit and
    responsibility grids of plan ``plan_id``) on the database thread while the next is prepared.

    Where the grids are found depends on the file's size: a file with at least as many rows as the plan
    has unit grids reads the grids once and finds them in memory (gis.gridindex, the same rule), since
    reading a grid costs about what looking up one row in SQL does; a smaller file looks them up in SQL,
    chunk by chunk, on the database thread.

    A large first census is written into component as it is read, from its first accepted chunk on
    (:class:`_Written`, set on ``run``).
    """
    grids = None
    rule = None if plan_id is None else grid_rule(plan_id, run.settings)
    if rule is not None and _grids_in_memory(
        run.info.feature_count, repo.unit_grid_count(session, rule.plan_id)
    ):
        grids = gridindex.UnitGridIndex(
            *repo.unit_grids_by_code(session, rule.plan_id),
            nearest_within_m=rule.nearest_m,
            lon_lat_crs=STORAGE_SRID,
            metric_crs=run.settings.metric_crs,
        )
    grids_in_sql = rule is not None and grids is None
    writer = _Writer(session, grids, grids_of_plan=rule if grids_in_sql else None)
    undecided = _may_write_while_reading(run.request, grids_in_sql)
    failed = True
    departments: dict[str, str | None] = {}
    try:
        for chunk in _chunks(run.info, run.request, run.settings):
            # Attributes as JSON text, built column by column: the rows are on their way to COPY.
            mapped = fieldmap.map_fields(_without_positions(chunk, run.info), run.mapping, attributes="json")
            unreadable: dict[int, tuple[str, str]] = {}
            if _is_export(run.info, "components"):
                mapped, unreadable = _with_exported_attributes(
                    mapped, exported=bool(_left_out_columns(run.info, "components"))
                )
                mapped = _with_dates_of_attributes(mapped, skip=unreadable)
            mapped, oversized, refusals = _refused_before_validation(
                mapped, chunk, run.settings.max_geometry_vertices, unreadable
            )
            result = validate.validate_components(mapped, rules, seen_codes=run.seen)
            copies = validate.check_duplicates_of_refused(oversized, run.seen, layer="components")
            problems = [*result.problems, *refusals, *copies]
            read = _with_refused(mapped, oversized)
            _collect(run.report, problems, read, run.problem_rows, chunk, run.info.coordinate_fields)
            _note_rejected_codes(run, problems, read)
            accepted = result.accepted
            if len(accepted):
                unknown = _department_names(accepted) - departments.keys()
                if unknown:
                    departments.update(writer.call(repo.department_codes, sorted(unknown)))
                if undecided:
                    run.written = writer.written = writer.call(_begin_writing, run, accepted)
                    undecided = False
                writer.stage(_encode_components(accepted, departments))
            run.report.accepted += len(accepted)
            if run.progress:
                run.progress(len(chunk), run.info.feature_count)
        writer.finish()
        failed = False
    finally:
        writer.close(failed=failed)


# --- pieces every layer's import shares --------------------------------------------------------------


def _new_report(request: ImportRequest, info: io.LayerInfo, layer: str) -> ImportReport:
    return ImportReport(
        layer=layer,
        file=request.display_name or request.path.name,
        checksum_sha256=file_checksum(request.path),
        format=info.format,
        source_layer=info.layer,
        crs=info.crs,
        crs_from=info.crs_from,
        encoding=info.encoding,
        dry_run=request.dry_run,
        coordinate_fields=list(info.coordinate_fields),
        warnings=[_as_sent(request, w) for w in info.warnings],
    )


def _collect(
    report: ImportReport,
    problems: list[validate.Problem],
    mapped: gpd.GeoDataFrame,
    problem_rows: list[gpd.GeoDataFrame],
    chunk: gpd.GeoDataFrame,
    coordinate_fields: tuple[str, ...] = (),
) -> None:
    """Count a chunk and keep its problem rows (with geometry and attributes) for the report. The columns
    ``coordinate_fields`` of ``chunk`` (the file as read) go back among a problem row's attributes, as
    written: a coordinate that is not a number (``117.0°``) is fixed there, and the report imported again
    by them."""
    report.rows_read += len(chunk)
    report.problems.extend(problems)
    if problems:
        touched = {p.source_row for p in problems}
        rows = mapped[mapped["source_row"].isin(touched)].copy()
        if "attributes" in rows.columns:
            # The report shows attributes as fields: the few problem rows get back their dicts.
            dicts = [json.loads(a) if isinstance(a, str) else a for a in rows["attributes"]]
            if coordinate_fields:
                written = chunk.set_index("source_row").loc[rows["source_row"], list(coordinate_fields)]
                dicts = [
                    {**dict(zip(coordinate_fields, values, strict=True)), **attributes}
                    for values, attributes in zip(written.itertuples(index=False), dicts, strict=True)
                ]
            rows["attributes"] = dicts
        problem_rows.append(rows)


# How validate says a geometry of the wrong kind: "... needs a line, but the geometry is a Polygon".
_WRONG_KIND_RE: Final = re.compile(r"needs an? (\w+), but the geometry is an? (\w+)")


def _every_row_rejected(report: ImportReport, request: ImportRequest) -> str | None:
    """A word when every row of the file was rejected, with what they share: most often the file is
    another layer than the one asked for (streets given as communities, grid polygons given as roads),
    which the rows' problems one by one do not say."""
    if not report.rows_read or report.rejected < report.rows_read:
        return None
    rejected = [p for p in report.problems if p.action == "rejected"]
    would = "would be" if request.dry_run else "was"
    text = f"every row of the file was rejected ({report.rejected:,}), so nothing {would} imported"
    lengths = {len(p.value) for p in rejected if p.field == "code" and p.value}
    coded = {p.source_row for p in rejected if p.field == "code"}
    meant = validate.level_of_code_length(lengths.pop()) if len(lengths) == 1 else None
    if len(coded) == report.rejected and meant is not None and meant != request.level:
        if request.layer == "boundaries":
            return (
                f"{text}: their codes are {meant} codes, not {request.level} ones: was --level {meant} meant?"
            )
        return (
            f"{text}: their codes are {meant} codes: is it a boundary layer (import boundaries "
            f"--level {meant})?"
        )
    kinds = {p.source_row: m.groups() for p in rejected if (m := _WRONG_KIND_RE.search(p.reason))}
    given = {g for _, g in kinds.values()}
    if len(kinds) == report.rejected and len(given) == 1:
        needed = " or ".join(sorted({n for n, _ in kinds.values()}))
        return (
            f"{text}: the file holds {given.pop()} geometries where {request.layer} need a {needed}: is it "
            "the right file, and the right layer?"
        )
    if report.rows_read < 2:
        return None  # its problem says it all
    rows_of_field: dict[str, set[int]] = {}
    for p in rejected:
        rows_of_field.setdefault(p.field, set()).add(p.source_row)
    shared = next((f for f, rows in rows_of_field.items() if len(rows) == report.rejected), None)
    if shared is None:
        return f"{text}: is it the right file, and the right layer?"
    first = next(p for p in rejected if p.field == shared)
    return (
        f"{text}, every one for its {shared} (row {first.source_row}: {first.reason}): is it the right "
        "file, and the right layer?"
    )


def _settle(
    report: ImportReport, request: ImportRequest, problem_rows: list[gpd.GeoDataFrame], settings: Settings
) -> None:
    """Count rejected and repaired rows; in strict mode a rejected row refuses the whole file, after writing
    the report file asked for (the refusal is when GIS staff need it most)."""
    report.problems.sort(key=lambda p: (p.source_row, p.field))
    rejected_rows = {p.source_row for p in report.problems if p.action == "rejected"}
    report.rejected = len(rejected_rows)
    report.repaired = len({p.source_row for p in report.problems if p.action == "repaired"} - rejected_rows)
    replacing = _replaced_whole(request)
    if replacing and not report.accepted and not report.rejected:
        raise InvalidInputError(
            f"the file has no rows: it would replace {replacing} with nothing; nothing was written",
            problems=[FieldProblem("file", "no rows")],
        )
    if not report.rows_read:
        # Most often the wrong layer, or an export that failed half-way: worth a word, not a refusal.
        what = f"the file's layer {report.source_layer}" if report.source_layer else "the file"
        report.warnings.append(
            f"{what} has no rows, so nothing was imported: is it the right file and layer?"
        )
    every_row = _every_row_rejected(report, request)
    if every_row:
        report.warnings.append(every_row)
    # An exact copy of an earlier row (a road digitised twice) loses nothing: the first row is imported.
    lost = {
        p.source_row for p in report.problems if p.action == "rejected" and p.field != validate.COPY_FIELD
    }
    if (request.strict or replacing) and lost:
        _write_report(report, request, problem_rows, settings)
        # The CLI lists the problems below the message; only a written or held report is somewhere else.
        see = (
            f"; see the report in {report.report_file}"
            if report.report_file
            else ("; see the report" if report.held_report else "")
        )
        why = (
            "strict mode refuses a file with any rejected row"
            if not replacing
            else f"the file replaces {replacing}, which would lose what the rejected rows stand for"
        )
        raise ImportRefusedError(
            f"{len(lost)} {'row was' if len(lost) == 1 else 'rows were'} rejected and {why}; nothing was "
            f"written (fix them and import again{see})",
            problems=[
                FieldProblem(p.field, p.reason, {"source_row": p.source_row, "value": p.value})
                for p in report.problems[:1000]
            ],
            held_report=report.held_report,
            warnings=report.warnings,
        )


def _replaced_whole(request: ImportRequest) -> str | None:
    """What the import deletes to put the file in its place (a net's polygons, with --replace every road),
    else None. Such an import takes the file as the whole layer, so it refuses a file with rejected rows
    as strict mode does: they would be deleted, not kept."""
    if request.layer == "net":
        return f"every polygon of net {request.net_code}"
    if request.layer == "roads" and request.replace:
        return "every road"
    return None


def _new_batch(
    session: Session,
    report: ImportReport,
    request: ImportRequest,
    info: io.LayerInfo,
    actor: Principal,
    imported_at: dt.datetime | None = None,
) -> SurveyBatch:
    """The import's survey batch; ``imported_at`` is the time its versions start (so a component's
    valid_from is its batch's imported_at), else the transaction's start."""
    stamp = {} if imported_at is None else {"imported_at": imported_at}
    batch = repo.add_batch(
        session,
        **stamp,
        layer=request.layer,
        source_file=report.file,
        checksum_sha256=report.checksum_sha256,
        imported_by=actor.name,
        source_format=info.format,
        source_crs=info.crs,
        warnings=[_word(request, w) for w in report.warnings],  # a new list: _record may set another
        parameters={**_parameters(request), "coordinate_fields": report.coordinate_fields},
    )
    report.batch_id = batch.id
    return batch


def _problem_frame(problem_rows: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    return pd.concat(problem_rows) if problem_rows else gpd.GeoDataFrame()


def _record(
    session: Session,
    batch: SurveyBatch,
    report: ImportReport,
    request: ImportRequest,
    actor: Principal,
    problem_rows: list[gpd.GeoDataFrame],
) -> None:
    """Store the problems, the batch's counts and the audit entry, in the import's transaction."""
    if report.problems:
        stored = _in_request_words(request, _capped(report, "kept with the import"))
        repo.add_problems(session, _problem_rows(stored, _problem_frame(problem_rows), batch.id))
    # With the cut's, if any, and those found after a census written as read made its batch.
    batch.warnings = [_word(request, w) for w in report.warnings]
    batch.counts = report.counts()
    audit.record_audit(
        session,
        actor=actor.name,
        api_key_id=actor.api_key_id,
        action="import",
        entity="survey_batch",
        entity_id=str(batch.id),
        details={"layer": report.layer, "file": report.file, "counts": report.counts()},
    )


def _word(request: ImportRequest, message: str) -> str:
    """``message`` as a report kept or held says it: for an upload, in form-field words and without the
    server's paths."""
    message = _as_sent(request, message)
    return as_form_fields(message) if request.form_words else message


def _in_request_words(request: ImportRequest, problems: list[validate.Problem]) -> list[validate.Problem]:
    """``problems`` with their reasons as :func:`_word` says them."""
    if not (request.form_words or request.display_name):
        return problems
    return [dataclasses.replace(p, reason=_word(request, p.reason)) for p in problems]


def _capped(report: ImportReport, where: str) -> list[validate.Problem]:
    """The problems a report kept or held lists: those of the first rows, up to STORED_PROBLEMS_LIMIT and
    never cutting a row's problems apart. Says so in the warnings when some are left out."""
    problems = report.problems  # sorted by source row (_settle)
    if len(problems) <= STORED_PROBLEMS_LIMIT:
        return problems
    cut = STORED_PROBLEMS_LIMIT
    while cut < len(problems) and problems[cut].source_row == problems[cut - 1].source_row:
        cut += 1
    last_row = problems[cut - 1].source_row
    report.warnings.append(
        f"the report {where} lists the problems of rows up to {last_row} ({cut:,} of {len(problems):,}); "
        "`gridsvc import ... --report FILE` on the server writes them all"
    )
    return problems[:cut]


def _done(
    report: ImportReport,
    request: ImportRequest,
    problem_rows: list[gpd.GeoDataFrame],
    started: float,
    settings: Settings,
) -> ImportReport:
    report.seconds = round(time.perf_counter() - started, 3)
    _write_report(report, request, problem_rows, settings)
    return report


def _write_report(
    report: ImportReport, request: ImportRequest, problem_rows: list[gpd.GeoDataFrame], settings: Settings
) -> None:
    if not report.problems:
        return
    positions = report.coordinate_fields
    if request.report_path and report.report_file is None:
        report.report_file = str(
            write_problems(
                report.problems, _problem_frame(problem_rows), request.report_path, position_fields=positions
            )
        )
    if request.hold_report and report.batch_id is None and report.held_report is None:
        listed = _in_request_words(request, _capped(report, "held for download"))
        frame = _problem_frame(problem_rows)

        def write(folder: Path) -> None:
            for fmt in held_reports.FORMATS:
                write_problems(listed, frame, folder / f"problems.{fmt}", position_fields=positions)

        report.held_report = held_reports.hold(settings, write)


def _parameters(request: ImportRequest) -> dict[str, Any]:
    return {
        "source_layer": request.source_layer,
        "crs": request.crs,
        "encoding": request.encoding,
        "mapping": request.mapping,
        "retire_missing": request.retire_missing,
        "area_codes": list(request.area_codes),
        "strict": request.strict,
        "level": request.level,
        "net_code": request.net_code,
    }


def get_import(sessions: sessionmaker[Session], batch_id: int) -> dict[str, Any]:
    """A recorded import (survey batch) with its counts and problem count."""
    with sessions() as session:
        batch = repo.get_batch(session, batch_id)
        if batch is None:
            raise NotFoundError(f"no import {batch_id}")
        problems = repo.problems(session, batch_id, limit=1000)
    return {**_batch_record(batch), "problems": _json_records(problems.drop(columns="geom"))}


def list_imports(
    sessions: sessionmaker[Session],
    *,
    layer: str | None = None,
    file: str | None = None,
    checksum_sha256: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The recorded imports (survey batches), the latest first, without their problems: was this file
    imported (by its name or its checksum), and what did the last imports of a layer do."""
    problems = []
    if layer is not None and layer not in LAYERS:
        problems.append(FieldProblem("layer", f"{layer!r}: one of {', '.join(LAYERS)}"))
    if checksum_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", checksum_sha256):
        problems.append(FieldProblem("checksum_sha256", "64 hexadecimal digits (a file's SHA-256)"))
    if not 1 <= limit <= 1000:
        problems.append(FieldProblem("limit", f"{limit}: from 1 to 1000"))
    if problems:
        raise InvalidInputError("cannot list imports like that", problems=problems)
    with sessions() as session:
        found = repo.batches(session, layer=layer, file=file, checksum_sha256=checksum_sha256, limit=limit)
        return [{**_batch_record(batch), "links": {"self": f"/v1/imports/{batch.id}"}} for batch in found]


def _batch_record(batch: SurveyBatch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "layer": batch.layer,
        "file": batch.source_file,
        "checksum_sha256": batch.checksum_sha256,
        "imported_by": batch.imported_by,
        "imported_at": batch.imported_at.isoformat(),
        "format": batch.source_format,
        "crs": batch.source_crs,
        "counts": batch.counts,
        "warnings": batch.warnings,
    }


def _json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with None where a value is missing: pandas gives a text column with NULLs NaN, which
    JSON cannot carry (a recorded import with one problem without a value answered 500)."""
    return list(frame.astype(object).where(frame.notna(), None).to_dict("records"))


def import_problems_file(sessions: sessionmaker[Session], batch_id: int, path: Path) -> Path:
    """Write a recorded import's problem report (GeoPackage or CSV by suffix)."""
    with sessions() as session:
        batch = repo.get_batch(session, batch_id)
        if batch is None:
            raise NotFoundError(f"no import {batch_id}")
        rows = repo.problems(session, batch_id)
    problems = [
        validate.Problem(
            source_row=int(r.source_row), field=r.field, value=r.value, reason=r.reason, action=r.action
        )
        for r in rows.itertuples()
    ]
    # The layer's standard fields come first and all of them, empty or not, as in the report the import
    # wrote: a row's stored values leave out the empty ones (_row_values). The rest are its free
    # attributes, handed over as such, so a GeoPackage gets their numbers as number columns (a corrected
    # 12.5 comes back as 12.5, not "12.5"), as the report the import wrote has them.
    stored = [r if isinstance(r, dict) else {} for r in rows["attributes"].tolist()]
    standard = list(fieldmap.LAYER_FIELDS.get(batch.layer, ()))
    values = pd.DataFrame(
        {f: pd.Series([r.get(f) for r in stored], index=rows.index, dtype=object) for f in standard},
        index=rows.index,
    )
    values["attributes"] = pd.Series(
        [{k: v for k, v in r.items() if k not in standard} for r in stored], index=rows.index, dtype=object
    )
    frame = gpd.GeoDataFrame(
        pd.concat([rows[["source_row"]], values], axis=1), geometry=rows.geometry, crs=4490
    )
    positions = (batch.parameters or {}).get("coordinate_fields") or []
    return write_problems(problems, frame, path, position_fields=positions)


# --- boundaries, stations, nets, roads ---------------------------------------------------------------

PARENT_OF = {"street": ("district", 6), "community": ("street", 9)}
# Two districts, streets or communities may overlap by at most this (m², in Settings.metric_crs). The unit
# grids of a plan are cut inside their communities and the database refuses two grids that overlap by more
# than 0.1 m² (migration 0009), so a larger overlap between communities would be stored now and break the
# next grid draw later; two streets or districts that overlap would each own the places between them (which
# county a component's code must name, which street a case goes to). Neighbours whose shared edges were
# converted separately cross by slivers far below it (the demo's largest is 0.002 m²).
UNIT_OVERLAP_TOLERANCE_M2: Final = 0.1
# What an overlap of two units of a level would break, as the rejection says it.
_OVERLAP_BREAKS = {
    "district": "a place would lie in both",
    "street": "a place would lie in both",
    "community": "the grids drawn in both would overlap",
}
NET_CODE = re.compile(r"[a-z][a-z0-9_]{1,31}")


def check_request(request: ImportRequest) -> None:
    """Refuse a request whose options cannot work, before anything is read (what the imports check first;
    for a caller that starts the import later, as the HTTP door's background jobs do)."""
    _check_request(request)
    if request.layer != "components":
        _check_layer_request(request)


def check_before_start(sessions: sessionmaker[Session], request: ImportRequest, *, settings: Settings) -> int:
    """Refuse what the import would refuse before reading its rows: the options (:func:`check_request`),
    the file as a whole (its format, layer, encoding, CRS and the classic datum mistakes, from its first
    features), the field mapping and the survey area. For a caller that answers before the import runs, as
    a background job's 202 does: a job that could only fail is not started. It costs the file's inspection
    (a CSV, GeoJSON or KML is read through once to count its rows), which the job repeats. Returns the
    number of rows in the file, for the job's progress from its start."""
    check_request(request)
    info = _open(request, settings)
    _mapping(info, request)
    if request.area_codes:
        with sessions() as session:
            _check_area(session, request.area_codes)
    return info.feature_count


def _check_layer_request(request: ImportRequest) -> None:
    problems = []
    if request.layer == "boundaries" and request.level not in ("district", "street", "community"):
        problems.append(FieldProblem("level", "district, street or community"))
    if request.layer == "net":
        if not request.net_code or not NET_CODE.fullmatch(request.net_code):
            problems.append(FieldProblem("net_code", "lower-case letters, digits and _, e.g. zongzhi"))
        if not request.net_name:
            problems.append(FieldProblem("net_name", "the net's name, e.g. 综治网格"))
    if problems:
        raise InvalidInputError("the import request is not valid", problems=problems)


def _validated(
    chunk_mapped: gpd.GeoDataFrame,
    request: ImportRequest,
    settings: Settings,
    seen: validate.SeenCodes,
    seen_roads: validate.SeenRoads,
    parents: gpd.GeoDataFrame | None = None,
) -> validate.ValidationResult:
    metric, box = settings.metric_crs, settings.city_bbox
    city = {"city_code": settings.city_code, "city_name": settings.city_name}
    if request.layer == "boundaries":
        level = cast(Literal["district", "street", "community"], request.level)  # checked on entry
        return validate.validate_boundaries(
            chunk_mapped, level, metric_crs=metric, city_bbox=box, seen_codes=seen, parents=parents, **city
        )
    if request.layer == "stations":
        return validate.validate_stations(
            chunk_mapped, metric_crs=metric, city_bbox=box, seen_codes=seen, **city
        )
    if request.layer == "net":
        return validate.validate_net_polygons(chunk_mapped, metric_crs=metric, city_bbox=box, seen_codes=seen)
    return validate.validate_roads(chunk_mapped, metric_crs=metric, city_bbox=box, seen_roads=seen_roads)


def _parent_units(session: Session, request: ImportRequest) -> gpd.GeoDataFrame | None:
    """The loaded units a street or community layer must lie in (districts, streets), else None."""
    if request.layer == "boundaries" and request.level in PARENT_OF:
        return repo.admin_units(session, PARENT_OF[request.level][0])
    return None


def _missing_parents(
    accepted: gpd.GeoDataFrame,
    request: ImportRequest,
    session: Session,
    parent_units: gpd.GeoDataFrame | None = None,
) -> tuple[gpd.GeoDataFrame, list[validate.Problem]]:
    """Drop rows whose parent (district of a street, street of a community, community of a station) is not
    loaded, with a problem naming it. A street or community that lies in a loaded parent (``parent_units``)
    of another code has a wrong code, not a parent to load first: the problem says where it lies."""
    if request.layer == "boundaries" and request.level in PARENT_OF:
        table, digits = PARENT_OF[request.level]
        parents = accepted["code"].str[:digits]
    elif request.layer == "stations":
        table, parents = "community", accepted["community_code"]
    else:
        return accepted, []
    known = repo.existing_codes(session, table)
    missing = ~parents.isin(known)
    if not missing.any():
        return accepted, []
    lies_in = _loaded_parent_at(accepted.geometry[missing], parent_units) if table != "community" else None
    problems = []
    for i, (row, parent) in enumerate(
        zip(accepted.loc[missing, "source_row"], parents[missing], strict=True)
    ):
        if table == "community":
            field, value = "community_code", str(parent)
            reason = f"no community {parent} is loaded: import the community layer first"
        else:
            field, value = "code", str(accepted.loc[missing, "code"].iloc[i])
            where = None if lies_in is None else lies_in[i]
            if where is None:
                reason = f"no {table} {parent} is loaded: import the {table} layer first"
            else:
                reason = (
                    f"code {table} {parent} is not loaded, but the {request.level} lies in {where}: "
                    f"its code should start with {where.split()[0]}"
                )
        problems.append(validate.Problem(int(row), field, value, reason, "rejected"))
    return accepted[~missing], problems


# How many stations, units or rule breaks a warning names before it only counts the rest.
_NAMED: Final = 5


def _named_and_more(named: list[str], total: int) -> str:
    more = total - len(named)
    return "; ".join(named) + (f"; and {more:,} more" if more else "")


def _upsert_boundaries(session: Session, report: ImportReport, settings: Settings, level: str) -> None:
    """Write the staged units of ``level`` and warn of what the redrawn ones no longer hold. A redrawn
    district or street can leave its stored streets or communities outside it (which their next import,
    checked against it, refuses: import the redrawn children next); redrawn communities can leave the
    active plan's unit grids sticking out of them or their area uncovered (redraw the grids there): the
    breaks of its rules the redraw made, not those the plan had already (and children it put outside, not
    those already out). Neither is refused: the children
    and the plan can only follow the boundaries once these are in. A unit renamed, or given other
    attributes, is redrawn in nothing."""
    redrawn = repo.redrawn_units(session, level)
    plan = repo.active_plan(session) if level == "community" and redrawn else None
    had = (
        set()
        if plan is None
        else {_break(b) for b in plans_repo.rule_breaks(session, plan[0], communities=redrawn)}
    )

    def children_away() -> list[repo.UnitAway]:
        return repo.children_away_from_parent(
            session,
            level,
            redrawn,
            metric_srid=resolve_crs(settings.metric_crs).epsg,
            beyond_m=validate.COUNTY_EDGE_METRES,
        )

    # Children already outside their parent as stored are no news of this redraw (as the plan's old breaks).
    away_before = {u.code for u in children_away()} if level != "community" and redrawn else set()
    report.new, report.changed, report.unchanged = repo.upsert_boundaries(session, level)
    if not redrawn:
        return
    if level in ("district", "street"):
        child = {"district": "street", "street": "community"}[level]
        away = [u for u in children_away() if u.code not in away_before]
        if away:
            named = [f"{u.code} {u.name}: {u.metres:,.0f} m outside {u.parent}" for u in away[:_NAMED]]
            report.warnings.append(
                f"{len(away):,} stored {child}(s) now lie more than {validate.COUNTY_EDGE_METRES:g} m outside"
                f" the {level} they are coded for: {_named_and_more(named, len(away))}. Import the redrawn"
                f" {child} layer next: an import of them as they are would now refuse them"
            )
        return
    if plan is None:
        return
    breaks = [
        b for b in plans_repo.rule_breaks(session, plan[0], communities=redrawn) if _break(b) not in had
    ]
    if breaks:
        named = [f"{b['code']}: {b['problem']}" for b in breaks[:_NAMED]]
        report.warnings.append(
            f"the active plan no longer fits the new and redrawn communities: {len(breaks):,} break(s) of"
            f" the rules an activation checks ({_named_and_more(named, len(breaks))}). Redraw the grids of"
            " the communities named (`gridsvc plan redraw --community CODE`) and activate the draft; until"
            " then, the active plan's grids answer for these places"
        )


def _break(rule_break: Mapping[str, Any]) -> tuple[str, str]:
    return str(rule_break["code"]), str(rule_break["problem"])


def _warn_of_stations_away(
    session: Session, report: ImportReport, settings: Settings, staged_rows: dict[str, int]
) -> None:
    """Warn of stations that lie outside the community they are coded for, beyond the distance a point
    near a boundary is given (``locate_boundary_tolerance_m``): a point put on the wrong street, or a code
    of the wrong community. They are imported: a station may serve its community from next door."""
    beyond = settings.locate_boundary_tolerance_m
    away = repo.stations_away_from_community(
        session, metric_srid=resolve_crs(settings.metric_crs).epsg, beyond_m=beyond
    )
    if not away:
        return
    named = [
        f"row {staged_rows.get(s.code, '?')}, {s.code} {s.name}: {s.metres:,.0f} m outside {s.community}"
        + ("" if s.lies_in is None else f", in {s.lies_in}")
        for s in away[:_NAMED]
    ]
    report.warnings.append(
        f"{len(away):,} station(s) lie more than {beyond:g} m outside the community they are coded for"
        f" (check the point, or the community code): {_named_and_more(named, len(away))}"
    )


def _warn_of_roads_under_another_name(session: Session, report: ImportReport) -> None:
    """Warn of named rows that will be added as new roads though a stored road of another name has their
    line: most often a renamed road, which then stands twice. They are added as the file asks (two roads
    may share a line: an elevated road over a street); ``--replace`` with the whole road layer renames."""
    renamed = repo.roads_under_another_name(session)
    if not renamed:
        return
    named = [
        f"row {r.source_row}, {r.name}: the line of stored road {r.stored_name or '(no name)'}"
        for r in renamed[:_NAMED]
    ]
    report.warnings.append(
        f"{len(renamed):,} road(s) are added beside a stored road of the same line and another name"
        f" ({_named_and_more(named, len(renamed))}). If they are renamed roads, the old names stay too:"
        " import the whole road layer with --replace to rename them."
    )


# A moved or redrawn road lies within this of its old line; farther, it is more likely another road.
_ROAD_MOVED_WITHIN_M = 50.0


def _warn_of_roads_moved_under_their_name(session: Session, report: ImportReport, settings: Settings) -> None:
    """Warn of named rows that will be added as new roads beside a stored road of the same name that the
    file does not have and whose line theirs follows: most often a road moved or redrawn, which then
    stands twice. They are added as the file asks (a delivery may hold only the new roads);
    ``--replace`` with the whole road layer moves them."""
    moved = repo.roads_moved_under_their_name(
        session, metric_srid=resolve_crs(settings.metric_crs).epsg, within_m=_ROAD_MOVED_WITHIN_M
    )
    if not moved:
        return
    named = [f"row {r.source_row}, {r.name}: {r.metres:.0f} m from its stored line" for r in moved[:_NAMED]]
    report.warnings.append(
        f"{len(moved):,} road(s) are added beside a stored road of the same name that this file does not"
        f" have, within {_ROAD_MOVED_WITHIN_M:g} m of its line ({_named_and_more(named, len(moved))})."
        " If they are moved or redrawn roads, the old lines stay too: import the whole road layer with"
        " --replace to move them."
    )


def _loaded_parent_at(geometries: gpd.GeoSeries, units: gpd.GeoDataFrame | None) -> list[str | None]:
    """For each street or community, the loaded district or street (code and name) its representative
    point lies in, the smallest code on a shared edge; None where none is loaded there."""
    found: list[str | None] = [None] * len(geometries)
    if units is None or units.empty:
        return found
    points = representative_points(np.asarray(geometries.to_numpy(), dtype=object))
    row_at, unit_at = shapely.STRtree(np.asarray(units.geometry.to_numpy(), dtype=object)).query(
        points, predicate="intersects"
    )
    codes, names = units["code"].astype(str).tolist(), units["name"].tolist()
    for row, unit in sorted(zip(row_at.tolist(), unit_at.tolist(), strict=True)):  # units in code order
        if found[row] is None:
            found[row] = f"{codes[unit]} {names[unit]}" if isinstance(names[unit], str) else codes[unit]
    return found


def _layer_stage_frame(accepted: gpd.GeoDataFrame, request: ImportRequest) -> pd.DataFrame:
    n = len(accepted)

    def column(name: str) -> Any:
        return accepted[name].to_numpy() if name in accepted.columns else np.full(n, None, dtype=object)

    parent = np.full(n, None, dtype=object)
    if request.layer == "boundaries" and request.level in PARENT_OF:
        parent = accepted["code"].str[: PARENT_OF[request.level][1]].to_numpy()
    elif request.layer == "stations":
        parent = column("community_code")
    code = column("code")  # a station's is its own or, without one, its community's + 01 (validate_stations)
    households = pd.array(accepted["households"], dtype="Int64") if "households" in accepted else None
    return pd.DataFrame(
        {
            "source_row": accepted["source_row"].astype(np.int64).to_numpy(),
            "code": code,
            "name": column("name"),
            "parent_code": parent,
            "households": households if households is not None else pd.array([None] * n, dtype="Int64"),
            "phone": column("phone"),
            "road_class": column("road_class"),
            "attributes": bulk.json_column(
                accepted["attributes"].tolist() if "attributes" in accepted else [{}] * n
            ),
            "geom": bulk.ewkb_hex(accepted.geometry.to_numpy()),
        }
    )


def _take_out_overlapping_units(
    session: Session,
    settings: Settings,
    request: ImportRequest,
    report: ImportReport,
    problem_rows: list[gpd.GeoDataFrame],
    staged_rows: Mapping[str, int],
) -> None:
    """Take out of the stage, into the report, every district, street or community (the import's level)
    that overlaps a loaded unit of its level and another code, or another row of the file, by more than
    UNIT_OVERLAP_TOLERANCE_M2. Both rows of an overlapping pair in the file are rejected: which one is drawn
    wrong is for GIS staff to say."""
    level = str(request.level)
    srid = resolve_crs(settings.metric_crs).epsg
    overlaps = repo.overlapping_units(
        session, level, metric_srid=srid, tolerance_m2=UNIT_OVERLAP_TOLERANCE_M2
    )
    if not overlaps:
        return
    levels = {"district": "districts", "street": "streets", "community": "communities"}[level]
    problems = []
    for o in overlaps:
        other = f"row {staged_rows[o.other]} of this file" if o.other_staged else "loaded"
        problems.append(
            validate.Problem(
                source_row=staged_rows[o.code],
                field="geometry",
                value=f"POINT ({o.x:.6f} {o.y:.6f})",
                reason=(
                    f"the {level} overlaps {level} {o.other} ({other}) by {o.area_m2:,.2f} m² around "
                    f"({o.x:.6f} {o.y:.6f}); {levels} may overlap by at most "
                    f"{UNIT_OVERLAP_TOLERANCE_M2:g} m² ({_OVERLAP_BREAKS[level]})"
                ),
                action="rejected",
            )
        )
    removed = _as_read(repo.unstage_layer(session, sorted({o.code for o in overlaps})), request)
    removed["source_row"] = removed["code"].map(staged_rows)
    report.accepted -= len(removed)
    report.problems.extend(problems)
    problem_rows.append(removed)


def _as_read(unstaged: gpd.GeoDataFrame, request: ImportRequest) -> gpd.GeoDataFrame:
    """Rows taken back out of the layer stage with the columns the report shows for the layer: a
    station's parent is its community (a boundary's is only its code's prefix), and columns this layer
    has no use for are left out."""
    unstaged = unstaged.rename(columns={"parent_code": "community_code"})
    unused = {
        "boundaries": ["community_code", "phone", "road_class"],
        "stations": ["households", "road_class"],
        "net": ["community_code", "households", "phone", "road_class"],
        "roads": ["community_code", "households", "phone"],
    }[request.layer]
    return unstaged.drop(columns=unused)


def import_layer(
    sessions: sessionmaker[Session],
    request: ImportRequest,
    *,
    settings: Settings,
    actor: Principal,
    progress: RowsFn | None = None,
    phase: PhaseFn | None = None,
    cancellation: Cancellation | None = None,
) -> ImportReport:
    """Import any survey layer: components, boundaries (by level), stations, another department's net or
    roads. One transaction; bad rows reported like components'. ``cancellation`` lets another thread stop
    it before its commit (see :class:`Cancellation`)."""
    if request.layer == "components":
        return import_components(
            sessions,
            request,
            settings=settings,
            actor=actor,
            progress=progress,
            phase=phase,
            cancellation=cancellation,
        )
    stop = cancellation or Cancellation()
    progress, say = _checking(stop, progress, phase)
    actor.require("gis_staff")
    _check_request(request)
    _check_layer_request(request)
    started = time.perf_counter()
    try:
        info = _open(request, settings)
        mapping = _mapping(info, request)
        info = _with_mapping_notes(info, request, mapping)
        report = _new_report(
            request, info, request.layer if request.layer != "boundaries" else f"boundaries:{request.level}"
        )
        problem_rows: list[gpd.GeoDataFrame] = []
        _freeze_older_objects()
        with sessions.begin() as session, stop.bound(session):
            _take_turn(session, request.layer, request, say)
            repo.create_layer_stage(session)
            seen, seen_roads = validate.SeenCodes(), validate.SeenRoads()
            parents = _parent_units(session, request)
            staged_rows: dict[str, int] = {}  # code -> source row of what is staged, for later problems
            for chunk in _chunks(info, request, settings):
                mapped = fieldmap.map_layer_fields(_without_positions(chunk, info), request.layer, mapping)
                unreadable: dict[int, tuple[str, str]] = {}
                if _is_export(info, request.layer):
                    mapped, unreadable = _with_exported_attributes(
                        mapped, exported=bool(_left_out_columns(info, request.layer))
                    )
                contradictions = (
                    _contradicting_parent_codes(chunk, mapping.get("code"))
                    if request.layer == "boundaries"
                    else None
                )
                mapped, oversized, refusals = _refused_before_validation(
                    mapped, chunk, settings.max_geometry_vertices, unreadable, contradictions
                )
                result = _validated(mapped, request, settings, seen, seen_roads, parents)
                copies = validate.check_duplicates_of_refused(
                    oversized, seen, layer=request.layer, level=request.level
                )
                accepted, orphans = _missing_parents(result.accepted, request, session, parents)
                problems = [*result.problems, *orphans, *refusals, *copies]
                read = _with_refused(mapped, oversized)
                _collect(report, problems, read, problem_rows, chunk, info.coordinate_fields)
                if len(accepted):
                    repo.stage_layer(session, _layer_stage_frame(accepted, request))
                    if "code" in accepted.columns:  # roads have none
                        staged_rows.update(
                            zip(accepted["code"], accepted["source_row"].astype(int), strict=True)
                        )
                report.accepted += len(accepted)
                progress(len(chunk), info.feature_count)  # a cancel is taken here
            if seen.taken_back:  # see _take_back_earlier_duplicates
                removed = _as_read(repo.unstage_layer(session, seen.taken_back_codes()), request)
                removed["source_row"] = removed["code"].map(
                    {str(p.value): p.source_row for p in seen.taken_back}
                )
                report.accepted -= len(removed)
                report.problems.extend(seen.taken_back)
                problem_rows.append(removed)
            if request.layer == "boundaries":
                _take_out_overlapping_units(session, settings, request, report, problem_rows, staged_rows)
            if request.layer == "stations":
                _warn_of_stations_away(session, report, settings, staged_rows)
            _settle(report, request, problem_rows, settings)
            # A dry run records no batch: a batch id taken and rolled back would leave a gap in the numbers.
            batch = None if request.dry_run else _new_batch(session, report, request, info, actor)
            batch_id = batch.id if batch is not None else None
            if request.layer == "boundaries":
                _upsert_boundaries(session, report, settings, str(request.level))
            elif request.layer == "stations":
                report.new, report.changed, report.unchanged = repo.upsert_stations(session)
            elif request.layer == "net":
                report.new, report.changed, report.unchanged, report.retired = repo.replace_net(
                    session,
                    code=str(request.net_code),
                    name=str(request.net_name),
                    department=request.net_department or "",
                    batch_id=batch_id,
                )
            else:
                if not request.replace:
                    _warn_of_roads_under_another_name(session, report)
                    _warn_of_roads_moved_under_their_name(session, report, settings)
                report.new, report.changed, report.unchanged, report.retired = repo.insert_roads(
                    session, batch_id=batch_id, replace=request.replace
                )
            if batch is None:  # a dry run
                raise _DryRunDoneError
            _record(session, batch, report, request, actor, problem_rows)
            stop.commit_now()  # what is left is the commit
    except _DryRunDoneError:
        report.batch_id = None
    except BaseException as exc:
        _raise_if_cancelled(stop, exc)
        raise
    finally:
        stop.end()
    return _done(report, request, problem_rows, started, settings)
