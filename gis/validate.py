"""Validate mapped survey chunks row by row, before the database loads them.

STYLE.md: validate geometry once, at the edge where it enters, and store only valid geometry.

Every check is vectorised over the chunk; only the messages for problem rows are built one by one. A row
may have several problems; it is rejected when any of them is a rejection. Problems are written for GIS
staff: they name the row (``source_row``, as they see it), the field, the offending value and, in plain
words, what is wrong and where, so the file can be fixed and loaded again.

Geometry is repaired only when the repair cannot change what the surveyor drew: ``shapely.make_valid``
(the "structure" method, which drops collapsed spikes) must keep the kind (point, line, polygon), keep a
single part single, and for polygons change the area by less than 0.5 % measured in a metric CRS.
Everything else is rejected with the reason GEOS gives and its location.

Code formats follow :mod:`gis.codes`. For speed the codes are screened with one regular expression per
format, which mirrors the rules of :mod:`gis.codes`; the message for a failing code comes from
:mod:`gis.codes` itself.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from gis import codes
from gis.crs import STORAGE_CRS, CoordinateError, metric_crs, resolve_crs, transform_geometry
from gis.fieldmap import (
    COMPONENT_STATUSES,
    ROAD_CLASS_LABELS,
    ROAD_CLASSES,
    STATUS_LABELS,
    clean_text,
    normalise_road_class,
    normalise_status,
)
from gis.geometry import representative_points

__all__ = [
    "MAX_REPAIR_AREA_CHANGE",
    "Action",
    "BoundaryLevel",
    "ComponentRules",
    "GeometryKind",
    "Problem",
    "SeenCodes",
    "SeenRoads",
    "ValidationResult",
    "check_duplicates_of_refused",
    "level_of_code_length",
    "validate_boundaries",
    "validate_components",
    "validate_net_polygons",
    "validate_roads",
    "validate_stations",
]

Action = Literal["rejected", "repaired"]
GeometryKind = Literal["point", "line", "polygon"]
BoundaryLevel = Literal["district", "street", "community"]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]
ObjectArray = npt.NDArray[np.object_]

# A repair may change a polygon's area by less than this fraction (0.5 %).
MAX_REPAIR_AREA_CHANGE: Final = 0.005
# A repair that multiplies the area by ten or more undid a bow-tie, whose two lobes cancel in the area of
# the outline as drawn: said so, rather than as a change of millions of per cent.
_CANCELLED_AREA_CHANGE: Final = 10.0
# A polygon whose repair leaves one real part and crumbs smaller than this (in all) is that one part: a ring
# that touches itself after reprojection between two CRSs leaves a crumb of square millimetres, far below
# what a survey draws. The same 0.1 m² the store tolerates as overlap between grids (migration 0009).
CRUMB_M2: Final = 0.1
# Jinan's metric CRS (DOMAIN.md §5), the default for the lighter validators; components take it from rules.
_DEFAULT_METRIC_CRS: Final = "EPSG:4548"
_WKT_CHARS: Final = 100
_MAX_ROWS_NAMED: Final = 10

# Indexed by shapely type id: Point, LineString, LinearRing, Polygon, MultiPoint, MultiLineString,
# MultiPolygon, GeometryCollection.
_FAMILY: Final = np.array(
    ["point", "line", "line", "polygon", "point", "line", "polygon", None], dtype=object
)
_TYPE_NAMES: Final = np.array(
    [
        "Point",
        "LineString",
        "LinearRing",
        "Polygon",
        "MultiPoint",
        "MultiLineString",
        "MultiPolygon",
        "GeometryCollection",
    ],
    dtype=object,
)
_SINGLE_TYPES: Final = (0, 1, 2, 3)
_MULTIPOINT: Final = 4
_KINDS: Final = ("point", "line", "polygon")
_VALID_REASON_RE: Final = re.compile(r"^(?P<what>[^\[]*)\[(?P<x>\S+) (?P<y>\S+)\]$")

# Code screens mirroring gis.codes: county 6 with neither the prefecture nor the county part 00, then street
# and community sequences that are not 000.
_COUNTY_RE: Final = r"[0-9]{2}(?!00)[0-9]{2}(?!00)[0-9]{2}"
_STREET_RE: Final = _COUNTY_RE + r"(?!000)[0-9]{3}"
_COMMUNITY_RE: Final = _STREET_RE + r"(?!000)[0-9]{3}"
_LEVELS: Final[Mapping[str, tuple[int, str, Callable[[str], str]]]] = {
    "district": (6, _COUNTY_RE, codes.validate_county_code),
    "street": (9, _STREET_RE, codes.validate_street_code),
    "community": (12, _COMMUNITY_RE, codes.validate_community_code),
}
# Mirrors the station.phone check constraint.
# A switchboard's extension after 转, an area code in brackets: (0531)86001234转8001.
_PHONE_RE: Final = r"[0-9+() -]{5,20}(?:转[0-9]{1,6})?"
_STATION_CODE_CHARS: Final = 32
_NET_CODE_CHARS: Final = 64


@dataclass(frozen=True)
class Problem:
    """One problem of one row, as shown to GIS staff in the problems report.

    Attributes
    ----------
    source_row : int
        The row number GIS staff see.
    field : str
        ``"geometry"``, ``"code"``, ``"class_code"``, ``"status"``, ...
    value : str or None
        The offending value as text; for geometry the WKT (cut to 100 characters) or the coordinate.
    reason : str
        What is wrong and where, in plain words.
    action : {"rejected", "repaired"}
        Whether the row was rejected for it, or repaired and accepted.
    """

    source_row: int
    field: str
    value: str | None
    reason: str
    action: Action


@dataclass(frozen=True)
class ComponentRules:
    """What a component chunk is checked against; all of it is data a city configures (DOMAIN.md §3).

    Attributes
    ----------
    classes : mapping of str to str
        Component class code -> geometry kind ``"point"``, ``"line"`` or ``"polygon"`` (the seeded
        ``component_class`` table).
    counties : geopandas.GeoDataFrame
        County polygons in EPSG:4490 with a 6-digit ``code`` column and optionally ``name``.
    city_bbox : tuple of float
        ``(minx, miny, maxx, maxy)`` in EPSG:4490.
    metric_crs : str
        A projected CRS in metres for metric checks, e.g. ``"EPSG:4548"``.
    code_digits : tuple of int
        Allowed component code lengths: 16 (2-digit minor class), 17 (3-digit) or both.
    city_code : str or None
        The city's prefecture-level code (370100): a code whose county is not one of its counties is
        rejected, whether or not that county is loaded. None skips the check.
    city_name : str
        The city's name, for that message.
    """

    classes: Mapping[str, str]
    counties: gpd.GeoDataFrame
    city_bbox: tuple[float, float, float, float]
    metric_crs: str
    code_digits: tuple[int, ...] = (16, 17)
    city_code: str | None = None
    city_name: str = ""

    def __post_init__(self) -> None:
        bad_kinds = sorted({k for k in self.classes.values() if k not in _KINDS})
        if bad_kinds:
            raise ValueError(f"class geometry kinds must be point, line or polygon, got {bad_kinds}")
        if not self.code_digits or not set(self.code_digits) <= {16, 17}:
            raise ValueError(f"code_digits must be 16, 17 or both, got {self.code_digits!r}")
        minx, miny, maxx, maxy = self.city_bbox
        if not (minx <= maxx and miny <= maxy):
            raise ValueError(f"city_bbox {self.city_bbox!r} must be (minx, miny, maxx, maxy)")
        if "code" not in self.counties.columns:
            raise ValueError("counties must have a code column (6-digit county codes)")
        metric_crs(self.metric_crs)


def level_of_code_length(length: int) -> str | None:
    """The boundary level whose codes have ``length`` digits (district 6, street 9, community 12), or
    None: what a layer whose codes are all one wrong length was probably meant as."""
    return next((level for level, (digits, _, _) in _LEVELS.items() if length == digits), None)


def _empty_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=STORAGE_CRS))


@dataclass
class ValidationResult:
    """The outcome of validating one chunk.

    Attributes
    ----------
    accepted : geopandas.GeoDataFrame
        Valid rows, with repaired geometry where repaired and normalised values (class_code filled,
        status normalised for components).
    problems : list of Problem
        Every problem of every rejected or repaired row, sorted by source_row, then field.
    rejected : geopandas.GeoDataFrame
        The rejected rows as they came (with ``source_row``), for the report.
    repaired : geopandas.GeoDataFrame
        The accepted rows that were repaired, as they came; ``pd.concat([rejected, repaired])`` gives the
        report every problem row's geometry and attributes.
    """

    accepted: gpd.GeoDataFrame
    problems: list[Problem]
    rejected: gpd.GeoDataFrame
    repaired: gpd.GeoDataFrame = field(default_factory=_empty_frame)


# --------------------------------------------------------------------------------------- collecting


class _Findings:
    """The problems of one chunk, added a whole check at a time."""

    def __init__(self, source_row: npt.NDArray[np.int64]) -> None:
        self.source_row = source_row
        self.rejected = np.zeros(len(source_row), dtype=bool)
        self.repaired = np.zeros(len(source_row), dtype=bool)
        self._problems: list[Problem] = []

    def add(
        self,
        positions: IntArray,
        field: str,
        values: Sequence[str | None],
        reasons: Sequence[str],
        action: Action = "rejected",
    ) -> None:
        for pos, value, reason in zip(positions, values, reasons, strict=True):
            self._problems.append(Problem(int(self.source_row[pos]), field, value, reason, action))
        if action == "rejected":
            self.rejected[positions] = True
        else:
            self.repaired[positions] = True

    def problems(self) -> list[Problem]:
        # sorted() is stable: problems of one row and field keep the order of the checks.
        return sorted(self._problems, key=lambda p: (p.source_row, p.field))


def _require(frame: gpd.GeoDataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in ("source_row", *columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks column(s) {', '.join(missing)}: map it with gis.fieldmap first")
    if frame.crs is not None and resolve_crs(frame.crs).epsg != resolve_crs(STORAGE_CRS).epsg:
        raise ValueError(f"the frame must be in {STORAGE_CRS}, got {frame.crs}")


def _geometries(frame: gpd.GeoDataFrame) -> ObjectArray:
    return np.asarray(frame.geometry.to_numpy(), dtype=object)


def _xy(x: float, y: float) -> str:
    # Six decimals of a degree are about 0.1 m: enough to find the vertex in QGIS.
    return f"({x:.6f} {y:.6f})"


def _wkt(geometries: ObjectArray) -> list[str | None]:
    if len(geometries) == 0:
        return []
    texts = shapely.to_wkt(geometries, rounding_precision=7)
    return [
        None if t is None else (t if len(t) <= _WKT_CHARS else t[: _WKT_CHARS - 3] + "...") for t in texts
    ]


class SeenCodes:
    """The codes of one file's earlier chunks, for the duplicate check across chunks.

    Every row of a duplicated code is rejected, wherever its copies are, so the answer does not depend on
    the chunk size. A later chunk can only reject its own rows: the earlier rows of a code it uses again,
    accepted with their chunk, are listed in :attr:`taken_back` (one problem each) for the caller to take
    out of what it kept.
    """

    def __init__(self) -> None:
        self.first_row: dict[str, int] = {}
        self.taken_back: list[Problem] = []
        self._taken: set[str] = set()

    def __contains__(self, code: object) -> bool:
        return code in self.first_row

    def __len__(self) -> int:
        return len(self.first_row)

    def taken_back_codes(self) -> list[str]:
        """The codes whose earlier rows were taken back, in the order met."""
        return [str(p.value) for p in self.taken_back]

    def _met_again(self, codes: ObjectArray, rows: IntArray, *, field: str, what: str) -> list[str]:
        """Reasons for this chunk's rows of earlier codes; the earlier rows go to :attr:`taken_back`."""
        later: dict[str, list[int]] = {}
        for code, row in zip(codes, rows, strict=True):
            later.setdefault(str(code), []).append(int(row))
        for code, later_rows in later.items():
            if code not in self._taken:
                self._taken.add(code)
                self.taken_back.append(
                    Problem(
                        self.first_row[code],
                        field,
                        code,
                        f"{what} {code} is also used by {_rows_text(later_rows)} of this file; every row "
                        "with a duplicated code is rejected",
                        "rejected",
                    )
                )
        return [
            f"{what} {code} is also used by row {self.first_row[str(code)]} of this file; every row with a "
            "duplicated code is rejected"
            for code in codes
        ]

    def _add(self, codes: ObjectArray, rows: IntArray) -> None:
        """Remember the first row of each code not met before (``codes`` holds none that was)."""
        # Reversed, so the first row of a code repeated inside the chunk is the one kept; one C-level update.
        self.first_row.update(zip(codes[::-1].tolist(), rows[::-1].tolist(), strict=True))


class SeenRoads:
    """The roads of one file's earlier rows, for the copy check across chunks.

    A road has no code: its name and line are what it is (as when matching the roads stored before). A
    later row with the same name and the same line is the same road, digitised twice or merged from two
    sheets. It is rejected and the first row stays, so the road is imported once whatever the chunk size.
    An exact copy (class and attributes too) loses nothing: its problem is on :data:`COPY_FIELD`, which
    a whole-file refusal (strict, replace) does not count. A copy that says something else is a real
    conflict, on ``geometry``.
    """

    def __init__(self) -> None:
        # 16-byte digests per road, not its line: a city's road file stays a few MB in memory.
        self.first_row: dict[bytes, tuple[int, bytes]] = {}  # name and line -> (first row, its values)
        # line -> the name-and-line key of the first row that drew it: a row with no name whose line an
        # earlier row drew is that road (a blank name says nothing, as a blank class keeps the stored one).
        self.first_of_line: dict[bytes, bytes] = {}
        self.lines = _LineKeys()


# Two lines are the same when their vertices, part by part and in order, lie this close in degrees (1e-7° is
# about a centimetre): the tolerance a stored road is matched by (gridsvc/repositories/imports.py). One road
# from two map sheets, one at full precision and one rounded to the millimetre in its Gauss-Krüger zone,
# differs by about 1e-8°; compared byte for byte it was imported twice.
SAME_SHAPE_DEGREES: Final = 1e-7
# The cell, in degrees, lines are filed under by their first vertex: a line's match lies in its cell or a
# neighbouring one.
_LINE_CELL_DEGREES: Final = 1e-4


class _LineKeys:
    """Each line's key: the exact digest of the first line of the file within :data:`SAME_SHAPE_DEGREES`
    of it (the same vertex count per part), else its own. Keeps the vertices of every line it has seen:
    a city's road file is a few thousand lines."""

    def __init__(self) -> None:
        self._filed: dict[tuple[tuple[int, ...], int, int], list[tuple[npt.NDArray[np.float64], bytes]]] = {}

    def key(self, line: shapely.Geometry) -> bytes:
        own = _line_key(line)
        parts = shapely.get_parts(line)
        shape = tuple(int(n) for n in shapely.get_num_coordinates(parts))
        xy = shapely.get_coordinates(line)
        cx, cy = (int(np.floor(v / _LINE_CELL_DEGREES)) for v in xy[0])
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for vertices, key in self._filed.get((shape, cx + dx, cy + dy), ()):
                    if np.abs(vertices - xy).max() <= SAME_SHAPE_DEGREES:
                        return key
        self._filed.setdefault((shape, cx, cy), []).append((xy, own))
        return own


# The field of an exact copy's problem: the value is the row it copies.
COPY_FIELD: Final = "copy_of_row"


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _line_key(line: shapely.Geometry) -> bytes:
    # One part or many, a road is stored as a MultiLineString: a LineString and the MultiLineString of
    # that one line are the same road.
    if line.geom_type == "LineString":
        line = shapely.multilinestrings([line])
    return _digest(shapely.to_wkb(line))


def _road_key(name: str | None, line_key: bytes) -> bytes:
    return _digest(line_key + b"\x00" + (name or "").encode())


def _missing(value: object) -> bool:
    """None, NaN, NA or NaT: one missing value, however pandas read it."""
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _check_road_copies(
    findings: _Findings,
    names: pd.Series,
    geometries: ObjectArray,
    others: pd.DataFrame,
    seen: SeenRoads | None,
) -> None:
    """Reject a row whose name and line an earlier row of the file has (``seen`` holds earlier chunks'):
    on :data:`COPY_FIELD` when its other values (``others``: class and free attributes) are the same too."""
    first_row = seen.first_row if seen is not None else {}
    first_of_line = seen.first_of_line if seen is not None else {}
    lines = seen.lines if seen is not None else _LineKeys()
    copies: tuple[list[int], list[str | None], list[str]] = ([], [], [])
    conflicts: tuple[list[int], list[str | None], list[str]] = ([], [], [])
    for pos in np.flatnonzero(~findings.rejected):
        name = names.iloc[pos]
        name = None if pd.isna(name) else str(name)
        road = f"road {name or '(no name)'}"
        row = int(findings.source_row[pos])
        values = _digest(repr([None if _missing(v) else v for v in others.iloc[pos]]).encode())
        line = lines.key(geometries[pos])
        own_key = _road_key(name, line)
        key = first_of_line.setdefault(line, own_key) if name is None else own_key
        first_of_line.setdefault(line, own_key)
        first, first_values = first_row.setdefault(key, (row, values))
        if first == row:
            continue
        named = key == own_key  # else a row with no name, on the line of an earlier named row
        value: str | None
        if values == first_values:
            found, value = copies, str(first)
            same = "same name, line," if named else "no name of its own, same line,"
            reason = f"{road} is a copy of row {first} of this file ({same} class and attributes)"
        else:
            found, value = conflicts, name
            same = "the same name and line" if named else "no name of its own and the same line"
            reason = (
                f"{road} has {same} as row {first} of this file but another class or other attributes: "
                f"row {first} is imported, not this one; correct or delete one of them"
            )
        found[0].append(int(pos))
        found[1].append(value)
        found[2].append(reason)
    for (positions, values_shown, reasons), field_name in ((copies, COPY_FIELD), (conflicts, "geometry")):
        findings.add(np.array(positions, dtype=np.int64), field_name, values_shown, reasons)


def _lost_zero_hint(given: object, meant: object) -> str:
    """A hint when a class code is ``meant`` without its leading zeros (a spreadsheet made it a number)."""
    text = str(given)
    if text.isdigit() and text != str(meant) and text.zfill(len(str(meant))) == str(meant):
        return f" ({meant}, with the leading zero a spreadsheet drops? store the column as text)"
    return ""


def _rows_text(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_MAX_ROWS_NAMED])
    more = len(rows) - _MAX_ROWS_NAMED
    word = "row" if len(rows) == 1 else "rows"
    return f"{word} {shown}" + (f" and {more} more" if more > 0 else "")


def _objects(values: pd.Series | ObjectArray, index: pd.Index) -> pd.Series:
    """Object dtype with None for every missing value; pandas 3 infers a ``str`` dtype that uses NaN."""
    array = values.to_numpy(dtype=object, na_value=None) if isinstance(values, pd.Series) else values
    return pd.Series(array, index=index, dtype=object)


def _sliced(values: pd.Series | ObjectArray, start: int, stop: int | None) -> ObjectArray:
    """``value[start:stop]`` of each text value, None where missing (pandas' .str.slice, without its
    per-value overhead on a chunk of codes)."""
    array = values.to_numpy(dtype=object, na_value=None) if isinstance(values, pd.Series) else values
    out = np.empty(len(array), dtype=object)
    out[:] = [None if v is None else v[start:stop] for v in array.tolist()]
    return out


def _fullmatches(values: pd.Series, pattern: str) -> BoolArray:
    """Whether each value is text matching ``pattern`` whole (False where missing)."""
    matcher = re.compile(pattern).fullmatch
    array = values.to_numpy(dtype=object, na_value=None).tolist()
    return np.fromiter(
        (isinstance(v, str) and matcher(v) is not None for v in array), dtype=bool, count=len(array)
    )


def _true(values: pd.Series) -> BoolArray:
    """A possibly-NA boolean series as a plain mask, NA counting as False."""
    return np.asarray(values.to_numpy(dtype=bool, na_value=False), dtype=bool)


# ------------------------------------------------------------------------------------------ geometry


def _check_coordinates(findings: _Findings, geometries: ObjectArray, positions: IntArray) -> BoolArray:
    """Reject NaN/inf and impossible lon/lat coordinates; returns the rows (all of them) that have some."""
    bad_rows = np.zeros(len(geometries), dtype=bool)
    if positions.size == 0:
        return bad_rows
    coords, owner = shapely.get_coordinates(geometries[positions], return_index=True)
    finite = np.isfinite(coords).all(axis=1)
    in_range = finite & (np.abs(coords[:, 0]) <= 180.0) & (np.abs(coords[:, 1]) <= 90.0)
    bad = ~in_range
    if not bad.any():
        return bad_rows
    bad_at = np.flatnonzero(bad)
    # The first bad coordinate of each geometry, and its index within that geometry (owner is sorted).
    geoms, first = np.unique(owner[bad_at], return_index=True)
    counts = np.bincount(owner[bad_at], minlength=positions.size)
    vertices = np.bincount(owner, minlength=positions.size)
    starts = np.searchsorted(owner, geoms)
    rows = positions[geoms]
    values, reasons = [], []
    for g, at, start in zip(geoms, bad_at[first], starts, strict=True):
        x, y = float(coords[at, 0]), float(coords[at, 1])
        if finite[at]:
            reason = f"({x!r} {y!r}) is not a longitude/latitude in degrees"
        else:
            # Which one, said plainly: a CSV's 经度 holding "117.0°" arrives here as x = nan.
            axes = [axis for axis, value in (("x", x), ("y", y)) if not np.isfinite(value)]
            verb = "are" if len(axes) == 2 else "is"
            reason = f"{' and '.join(axes)} {verb} not a finite number: ({x!r} {y!r})"
        if vertices[g] > 1:
            reason = f"vertex {int(at - start) + 1} of {vertices[g]}: {reason}"
        if counts[g] > 1:
            reason += f"; {counts[g]} vertices of this geometry are bad"
        values.append(f"({x!r} {y!r})")
        reasons.append(reason)
    findings.add(rows, "geometry", values, reasons)
    bad_rows[rows] = True
    return bad_rows


def _metric_areas(geometries: ObjectArray, metric: str) -> npt.NDArray[np.float64]:
    """Areas in square metres; NaN for a geometry PROJ cannot project (far outside the metric CRS's zone)."""
    try:
        return np.asarray(shapely.area(transform_geometry(geometries, STORAGE_CRS, metric)), dtype=np.float64)
    except CoordinateError:
        pass
    areas = np.full(len(geometries), np.nan)
    for i, geometry in enumerate(geometries):
        try:
            areas[i] = shapely.area(transform_geometry(geometry, STORAGE_CRS, metric))
        except CoordinateError:
            continue
    return areas


def _repair_reason(what: str, change: float | None) -> str:
    return what + "; repaired" + ("" if change is None else f" (area change {100 * change:.2f} %)")


def _drop_crumbs(repaired: ObjectArray, split: IntArray, metric: str) -> npt.NDArray[np.float64]:
    """Where the repair of a single polygon (at ``split``) left one part and crumbs under
    :data:`CRUMB_M2` in all, keep that part alone (in place). Returns the crumbs' area per geometry."""
    crumbs_m2 = np.zeros(len(repaired))
    for i in split:
        pieces = shapely.get_parts(repaired[i])
        areas = _metric_areas(pieces, metric)
        if np.isnan(areas).any():
            continue
        largest = int(np.argmax(areas))
        rest = float(areas.sum() - areas[largest])
        if rest < CRUMB_M2:
            repaired[i] = pieces[largest]
            crumbs_m2[i] = rest
    return crumbs_m2


def _check_validity(
    findings: _Findings, geometries: ObjectArray, positions: IntArray, metric: str
) -> tuple[ObjectArray, BoolArray]:
    """Repair invalid geometries when safe, reject them otherwise.

    Returns the geometries (repaired where repaired) and the rows whose geometry could not be repaired.
    """
    fixed = geometries.copy()
    unrepairable = np.zeros(len(geometries), dtype=bool)
    if positions.size == 0:
        return fixed, unrepairable
    invalid = positions[~shapely.is_valid(geometries[positions])]
    if invalid.size == 0:
        return fixed, unrepairable
    original = geometries[invalid]
    repaired = shapely.make_valid(original, method="structure", keep_collapsed=False)
    t0 = shapely.get_type_id(original)
    t1 = shapely.get_type_id(repaired)
    is_polygon = _FAMILY[t0] == "polygon"
    crumbs_m2 = _drop_crumbs(
        repaired, np.flatnonzero(np.isin(t0, _SINGLE_TYPES) & (t1 != t0) & is_polygon), metric
    )
    t1 = shapely.get_type_id(repaired)
    parts = shapely.get_num_geometries(repaired)
    change = np.full(invalid.size, np.nan)
    area_before = np.full(invalid.size, np.nan)
    area_after = np.full(invalid.size, np.nan)
    if is_polygon.any():
        # Areas in degrees are not comparable across latitudes; the metric CRS gives square metres.
        a0 = _metric_areas(original[is_polygon], metric)
        a1 = _metric_areas(repaired[is_polygon], metric)
        area_before[is_polygon], area_after[is_polygon] = a0, a1
        with np.errstate(divide="ignore", invalid="ignore"):
            # inf: zero area to compare with; NaN: an area PROJ could not measure.
            change[is_polygon] = np.where(a0 > 0, np.abs(a1 - a0) / a0, np.where(a0 == 0, np.inf, np.nan))
    empty = shapely.is_empty(repaired)
    single_in = np.isin(t0, _SINGLE_TYPES)
    ok_values, ok_reasons, ok_rows = [], [], []
    bad_values, bad_reasons, bad_rows = [], [], []
    wkts = _wkt(original)
    for i, reason in enumerate(shapely.is_valid_reason(original)):
        match = _VALID_REASON_RE.match(reason)
        if match:
            # GEOS capitalises each word ("Ring Self-intersection"); a sentence reads better without.
            what = match["what"].strip().lower()
            where = f"{what} at {_xy(float(match['x']), float(match['y']))}"
        else:
            where = reason.lower()
        if empty[i]:
            why = "the repair leaves nothing"
        elif _FAMILY[t1[i]] != _FAMILY[t0[i]]:
            why = f"the repair turns it into a {_TYPE_NAMES[t1[i]]}"
        elif single_in[i] and t1[i] != t0[i]:
            why = f"the repair splits it into {parts[i]} parts"
        elif is_polygon[i] and not change[i] < MAX_REPAIR_AREA_CHANGE:
            if np.isinf(change[i]):
                why = "its area is zero"
            elif np.isnan(change[i]):
                why = f"its area cannot be measured in {metric}"
            elif change[i] >= _CANCELLED_AREA_CHANGE:
                why = (
                    f"its outline crosses itself so that its parts cancel out ({area_before[i]:,.1f} m² as "
                    f"drawn, {area_after[i]:,.0f} m² repaired): redraw it"
                )
            else:
                why = f"the repair changes the area by {100 * change[i]:.2f} %"
        else:
            ok_rows.append(invalid[i])
            ok_values.append(wkts[i])
            reason = _repair_reason(where, float(change[i]) if is_polygon[i] else None)
            if crumbs_m2[i] > 0:
                reason += f"; a crumb of {crumbs_m2[i]:.2g} m² it left beside the polygon was dropped"
            ok_reasons.append(reason)
            fixed[invalid[i]] = repaired[i]
            continue
        bad_rows.append(invalid[i])
        bad_values.append(wkts[i])
        bad_reasons.append(f"{where}; not safely repairable: {why}")
    findings.add(np.asarray(bad_rows, dtype=np.intp), "geometry", bad_values, bad_reasons)
    findings.add(np.asarray(ok_rows, dtype=np.intp), "geometry", ok_values, ok_reasons, "repaired")
    unrepairable[bad_rows] = True
    return fixed, unrepairable


def _check_geometry(
    findings: _Findings, geometries: ObjectArray, metric: str
) -> tuple[ObjectArray, BoolArray]:
    """Missing, empty, non-finite and invalid geometry; returns the repaired geometries and usable rows."""
    missing = shapely.is_missing(geometries)
    empty = ~missing & shapely.is_empty(geometries)
    at = np.flatnonzero(missing)
    findings.add(at, "geometry", [None] * at.size, ["geometry is missing"] * at.size)
    at = np.flatnonzero(empty)
    findings.add(at, "geometry", _wkt(geometries[at]), ["geometry is empty"] * at.size)
    present = ~missing & ~empty
    bad_coordinates = _check_coordinates(findings, geometries, np.flatnonzero(present))
    usable = present & ~bad_coordinates
    fixed, unrepairable = _check_validity(findings, geometries, np.flatnonzero(usable), metric)
    # A geometry that could not be repaired stays unusable for the checks that need a sound shape.
    return fixed, usable & ~unrepairable


def _check_kind(
    findings: _Findings,
    geometries: ObjectArray,
    usable: BoolArray,
    expected: ObjectArray,
    subject: Callable[[int], str],
) -> ObjectArray:
    """Reject geometry of the wrong kind; a MultiPoint of one point becomes that point.

    Multi-part lines and polygons are accepted, MultiPoints are not: the database stores points as POINT.
    """
    fixed = geometries.copy()
    positions = np.flatnonzero(usable & (expected != None))  # noqa: E711 - elementwise on an object array
    if positions.size == 0:
        return fixed
    ids = shapely.get_type_id(geometries[positions])
    family = _FAMILY[ids]
    want = expected[positions]
    wrong = family != want
    multipoint = ~wrong & (ids == _MULTIPOINT)
    parts = shapely.get_num_geometries(geometries[positions])
    one = multipoint & (parts == 1)
    several = multipoint & (parts > 1)
    rows = positions[wrong]
    findings.add(
        rows,
        "geometry",
        _wkt(geometries[rows]),
        [
            f"{subject(int(r))} needs a {k}, but the geometry is a {_TYPE_NAMES[t]}"
            for r, k, t in zip(rows, want[wrong], ids[wrong], strict=True)
        ],
    )
    rows = positions[several]
    findings.add(
        rows,
        "geometry",
        _wkt(geometries[rows]),
        [
            f"{subject(int(r))} needs a single point, but the geometry is a MultiPoint of {n} points"
            for r, n in zip(rows, parts[several], strict=True)
        ],
    )
    rows = positions[one]
    findings.add(
        rows,
        "geometry",
        _wkt(geometries[rows]),
        ["a MultiPoint of one point; stored as a Point"] * rows.size,
        "repaired",
    )
    fixed[rows] = shapely.get_geometry(geometries[rows], 0)
    return fixed


# --------------------------------------------------------------------------------------------- codes


# A long number as Excel shows and saves it once the cell is no longer text: 3.70102E+15 for
# 3701020118000001. Its digits after the first six are gone.
_EXCEL_NUMBER_RE: Final = re.compile(r"[0-9](?:\.[0-9]+)?[Ee]\+?[0-9]+")


def _code_reason(value: str, what: str, lengths: Sequence[int], validator: Callable[[str], str]) -> str:
    want = " or ".join(str(n) for n in lengths)
    if _EXCEL_NUMBER_RE.fullmatch(value.strip()):
        return (
            f"{what} {value} is a number as Excel writes it once a code column is not text: its digits are "
            f"lost ({want} needed). Take the codes from the original file, or in Excel set the column to "
            "Text before pasting them, and save again"
        )
    if not (value.isascii() and value.isdigit()):
        return f"{what} {value} must contain only the digits 0-9 ({want} of them)"
    if len(value) not in lengths:
        return f"{what} {value} has {len(value)} digits; it must have {want}"
    try:
        validator(value)
    except ValueError as exc:
        return str(exc)
    return f"{what} {value} is not a valid {what}"  # only if the screen and gis.codes ever disagree


def _check_code(
    findings: _Findings,
    values: pd.Series,
    *,
    field: str,
    what: str,
    pattern: str | None,
    lengths: Sequence[int] = (),
    validator: Callable[[str], str] | None = None,
    max_chars: int | None = None,
    required: bool = True,
) -> BoolArray:
    """Reject missing and malformed codes; returns the rows whose code is present and well-formed."""
    present = values.notna().to_numpy()
    if required:
        at = np.flatnonzero(~present)
        findings.add(at, field, [None] * at.size, [f"{what} is missing"] * at.size)
    ok = present.copy()
    if pattern is not None and validator is not None:
        ok &= _fullmatches(values, pattern)
        at = np.flatnonzero(present & ~ok)
        shown = values.to_numpy()[at]
        findings.add(at, field, list(shown), [_code_reason(v, what, lengths, validator) for v in shown])
    if max_chars is not None:
        long = present & _true(values.str.len() > max_chars)
        at = np.flatnonzero(long)
        shown = values.to_numpy()[at]
        findings.add(
            at,
            field,
            list(shown),
            [f"{what} is {len(v)} characters long; at most {max_chars}" for v in shown],
        )
        ok &= ~long
    return np.asarray(ok, dtype=bool)


def _check_duplicates(
    findings: _Findings, values: pd.Series, seen: SeenCodes | None, *, field: str, what: str
) -> None:
    """Reject every row of a code used twice in the chunk, and of a code met in earlier chunks (whose
    earlier rows ``seen`` takes back)."""
    present = values.notna().to_numpy()
    positions = np.flatnonzero(present)
    codes_present = pd.Series(values.to_numpy()[positions], dtype=object)
    duplicated = codes_present.duplicated(keep=False).to_numpy()
    if duplicated.any():
        at = positions[duplicated]
        dup_codes = codes_present.to_numpy()[duplicated]
        rows = findings.source_row[at]
        groups: dict[str, list[int]] = {}
        for code, row in zip(dup_codes, rows, strict=True):
            groups.setdefault(code, []).append(int(row))
        others = [
            _rows_text([r for r in groups[code] if r != row])
            for code, row in zip(dup_codes, rows, strict=True)
        ]
        reasons = [
            f"{what} {code} is also used by {other} of this file; every row with a duplicated code is "
            "rejected"
            for code, other in zip(dup_codes, others, strict=True)
        ]
        findings.add(at, field, list(dup_codes), reasons)
    if seen is None:
        return
    # One dict lookup per row: Series.isin would turn the whole growing set into an array for every chunk.
    codes = codes_present.to_numpy()
    earlier = np.fromiter(map(seen.first_row.__contains__, codes), dtype=bool, count=codes.size)
    if earlier.any():
        at = positions[earlier]
        shown = codes[earlier]
        reasons = seen._met_again(shown, findings.source_row[at], field=field, what=what)
        findings.add(at, field, list(shown), reasons)
    seen._add(codes[~earlier], findings.source_row[positions[~earlier]])


# -------------------------------------------------------------------------------------------- places


# How far outside the county its code names a component in no loaded county may lie and still be taken
# as in it: boundaries are generalised, and edge roads and the slivers between districts carry lamps.
COUNTY_EDGE_METRES: Final = 50.0


def _check_location(
    findings: _Findings,
    geometries: ObjectArray,
    usable: BoolArray,
    code: pd.Series,
    code_ok: BoolArray,
    rules: ComponentRules,
    *,
    what: str = "component",
) -> None:
    """Outside the city, and the code's county prefix against the county the component (or street:
    ``what``) lies in."""
    positions = np.flatnonzero(usable)
    if positions.size == 0:
        return
    counties = rules.counties
    if counties.crs is not None and resolve_crs(counties.crs).epsg != resolve_crs(STORAGE_CRS).epsg:
        counties = counties.to_crs(STORAGE_CRS)
    county_codes = counties["code"].astype(str).to_numpy(dtype=object)
    county_names = (
        counties["name"].to_numpy(dtype=object, na_value=None)
        if "name" in counties.columns
        else np.full(len(counties), None, dtype=object)
    )
    points = representative_points(geometries[positions])
    # The tree holds the points and the counties ask it: the query prepares each county once (a few large
    # polygons), where asking a tree of counties would test every point against unprepared polygons.
    # "intersects" rather than "within": a point on a shared boundary belongs to both counties.
    county, hit = shapely.STRtree(points).query(
        np.asarray(counties.geometry.to_numpy(), dtype=object), predicate="intersects"
    )
    in_county = np.zeros(positions.size, dtype=bool)
    in_county[hit] = True
    x, y = shapely.get_x(points), shapely.get_y(points)
    minx, miny, maxx, maxy = rules.city_bbox
    in_box = (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)
    outside = np.flatnonzero(~in_county & ~in_box)
    box = ", ".join(f"{v:g}" for v in rules.city_bbox)
    findings.add(
        positions[outside],
        "geometry",
        _wkt(geometries[positions[outside]]),
        [
            f"the {what} lies at {_xy(x[i], y[i])}, outside the city: in none of its counties and "
            f"outside the city box ({box})"
            for i in outside
        ],
    )
    shown = code.to_numpy()[positions]
    prefix = _sliced(code.to_numpy(dtype=object, na_value=None)[positions], 0, 6)
    # In no loaded county, but inside the box: boundaries may be loaded for part of the city only, so
    # where it lies is unknown. Its code's county is known, though, when that county is loaded: the
    # component is not in it, unless it is only just outside (a lamp on the city's edge road, a sliver
    # between two generalised boundaries).
    astray = np.flatnonzero(code_ok[positions] & ~in_county & in_box)
    astray = astray[np.isin(prefix[astray], county_codes)]
    if astray.size:
        geometry_of = dict(zip(county_codes, counties.geometry.to_numpy(), strict=True))
        metres = np.empty(astray.size)
        for county_code in pd.unique(prefix[astray]):
            these = prefix[astray] == county_code
            metres[these] = shapely.distance(
                transform_geometry(points[astray[these]], STORAGE_CRS, rules.metric_crs),
                transform_geometry(geometry_of[county_code], STORAGE_CRS, rules.metric_crs),
            )
        astray, metres = astray[metres > COUNTY_EDGE_METRES], metres[metres > COUNTY_EDGE_METRES]
        name_of = dict(zip(county_codes, county_names, strict=True))
        findings.add(
            positions[astray],
            "code",
            list(shown[astray]),
            [
                f"code county {prefix[i]}{_named(name_of[prefix[i]])} but the {what} lies at "
                f"{_xy(x[i], y[i])}, {m:,.0f} m outside it and in no other loaded county"
                for i, m in zip(astray, metres, strict=True)
            ],
        )
    checkable = code_ok[positions] & in_county
    keep = checkable[hit]
    hit, county = hit[keep], county[keep]
    matched = np.zeros(positions.size, dtype=bool)
    matched[hit[county_codes[county] == prefix[hit]]] = True
    wrong = checkable & ~matched
    if not wrong.any():
        return
    # Only the mismatched rows from here on: name the first of their counties by code.
    pairs = pd.DataFrame({"at": hit, "county": county_codes[county], "name": county_names[county]})
    first = pairs[wrong[hit]].sort_values(["at", "county"]).drop_duplicates("at")
    at = first["at"].to_numpy()
    reasons = [
        f"code county {p} but the {what} lies in {c}{_named(name)}"
        for p, c, name in zip(prefix[at], first["county"], first["name"], strict=True)
    ]
    findings.add(positions[at], "code", list(shown[at]), reasons)


def _named(name: object) -> str:
    """`` 历下区`` after a county code, when the county has a name."""
    return f" {name}" if isinstance(name, str) and name else ""


# ----------------------------------------------------------------------------------------- components


def _component_code_pattern(lengths: Sequence[int]) -> str:
    sizes = set(lengths)
    minor = "[0-9]{2,3}" if sizes == {16, 17} else ("[0-9]{2}" if sizes == {16} else "[0-9]{3}")
    # county, major class (not 00), minor class, sequence (not all zeros): gis.codes.validate_component_code.
    return _COUNTY_RE + "(?!00)[0-9]{2}" + minor + "(?!0{6})[0-9]{6}"


def _known_list(values: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _result(
    mapped: gpd.GeoDataFrame, findings: _Findings, geometries: ObjectArray, columns: Mapping[str, pd.Series]
) -> ValidationResult:
    keep = ~findings.rejected
    kept = np.flatnonzero(keep)
    accepted = mapped.iloc[kept].copy()
    for name, values in columns.items():
        # Positional, not by label: a chunk's index need not be unique. `.array` keeps nullable dtypes.
        accepted[name] = pd.Series(values.iloc[kept].array, index=accepted.index)
    accepted[mapped.geometry.name] = gpd.GeoSeries(geometries[keep], index=accepted.index, crs=mapped.crs)
    return ValidationResult(
        accepted=accepted,
        problems=findings.problems(),
        rejected=mapped.iloc[np.flatnonzero(findings.rejected)].copy(),
        repaired=mapped.iloc[np.flatnonzero(keep & findings.repaired)].copy(),
    )


def validate_components(
    mapped: gpd.GeoDataFrame, rules: ComponentRules, *, seen_codes: SeenCodes | None = None
) -> ValidationResult:
    """Validate a mapped component chunk (see :func:`gis.fieldmap.map_fields`).

    Checks geometry (missing, empty, non-finite, invalid, wrong kind for the class), code (missing,
    format, duplicates in the chunk and across chunks), class (from the field or the code's class digits;
    disagreement; unknown), status (unknown after normalisation; missing becomes ``"intact"``), dates
    (:data:`DATE_FIELDS`, written as ISO 8601 by :func:`iso_date`; text that is no date), and place
    (outside the city; county prefix of the code against the county the component lies in).

    Parameters
    ----------
    mapped : geopandas.GeoDataFrame
        A mapped chunk in EPSG:4490 with ``source_row``, ``code``, ``class_code`` and ``status``.
    rules : ComponentRules
        Classes, counties, city box, metric CRS and code lengths.
    seen_codes : SeenCodes, optional
        Codes of earlier chunks of the same import, updated in place. A row whose code is found in it is
        rejected, and the earlier rows of that code are listed in ``seen_codes.taken_back`` for the caller
        to take out of what it staged.

    Returns
    -------
    ValidationResult
        Accepted rows with class_code filled and status normalised; problems; rejected and repaired rows.

    Raises
    ------
    ValueError
        If the frame lacks the mapped columns or is not in EPSG:4490.
    """
    _require(mapped, ("code", "class_code", "status"))
    findings = _Findings(mapped["source_row"].to_numpy(dtype=np.int64))
    geometries, usable = _check_geometry(findings, _geometries(mapped), rules.metric_crs)

    code = clean_text(mapped["code"])
    digits = tuple(sorted(set(rules.code_digits)))
    code_ok = _check_code(
        findings,
        code,
        field="code",
        what="code",
        pattern=_component_code_pattern(digits),
        lengths=digits,
        validator=codes.validate_component_code,
    )
    code_ok = _check_county_of_city(
        findings, code, code_ok, field="code", city_code=rules.city_code, city_name=rules.city_name
    )
    _check_duplicates(findings, code, seen_codes, field="code", what="code")

    # Class digits: 7-10 of a 16-digit code, 7-11 of a 17-digit one (county 6 first, sequence 6 last).
    carried = _objects(_sliced(code, 6, -6), code.index)
    carried[~code_ok] = None
    given = clean_text(mapped["class_code"])
    class_code = _objects(np.where(given.notna(), given.to_numpy(), carried.to_numpy()), code.index)
    disagree = np.flatnonzero(_true(given.notna() & carried.notna() & (given != carried)))
    findings.add(
        disagree,
        "class_code",
        list(given.to_numpy()[disagree]),
        [
            f"code {c} carries class {k} but class_code is {g}" + _lost_zero_hint(g, k)
            for c, k, g in zip(
                code.to_numpy()[disagree],
                carried.to_numpy()[disagree],
                given.to_numpy()[disagree],
                strict=True,
            )
        ],
    )
    kinds = _objects(class_code.map(dict(rules.classes)), code.index)
    unknown = np.flatnonzero(_true(class_code.notna() & kinds.isna()))
    known = _known_list(sorted(rules.classes))
    findings.add(
        unknown,
        "class_code",
        list(class_code.to_numpy()[unknown]),
        [
            f"class {k} is not a known component class"
            + (
                _lost_zero_hint(k, str(k).zfill(4))
                if str(k).zfill(4) in rules.classes
                else f" (known: {known})"
            )
            for k in class_code.to_numpy()[unknown]
        ],
    )
    kinds_array = kinds.to_numpy()
    class_array = class_code.to_numpy()
    geometries = _check_kind(
        findings,
        geometries,
        usable,
        kinds_array,
        lambda pos: f"class {class_array[pos]}",
    )

    status, unknown_status = normalise_status(mapped["status"])
    at = np.flatnonzero(unknown_status.to_numpy())
    names = ", ".join(f"{STATUS_LABELS[s]} {s}" for s in COMPONENT_STATUSES)
    findings.add(
        at,
        "status",
        list(status.to_numpy()[at]),
        [f"status {s} is not known; use one of: {names}" for s in status.to_numpy()[at]],
    )
    # A survey that records no status found the component in place and working.
    status[status.isna()] = "intact"

    _check_location(findings, geometries, usable, code, code_ok, rules)
    columns = {"code": code, "class_code": class_code, "status": status}
    for date_field in DATE_FIELDS:
        if date_field in mapped.columns:
            columns[date_field] = _check_date(findings, mapped[date_field], date_field)
    return _result(mapped, findings, geometries, columns)


# The standard fields that hold a date: stored as ISO 8601 text, so one date read from a GeoPackage DATE, a
# FileGDB datetime (2023-05-01T00:00:00Z) and a CSV's 2023/5/1 is one value, and a re-survey is no change.
DATE_FIELDS: Final = ("initial_date", "change_date")
_DATE_RE: Final = re.compile(
    r"(?P<year>[0-9]{4})"
    r"(?:[-/.](?P<month>[0-9]{1,2})(?:[-/.](?P<day>[0-9]{1,2}))?"
    r"|年(?:(?P<cn_month>[0-9]{1,2})月(?:(?P<cn_day>[0-9]{1,2})日?)?)?"
    r"|(?P<packed_month>[0-9]{2})(?P<packed_day>[0-9]{2}))?"
    # A time, as GeoPackage DATETIME and FileGDB dates carry (midnight, for a date), with its zone if any.
    r"(?:[T ](?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:\.[0-9]+)?)?"
    r"\s*(?P<zone>Z|UTC|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
# Years a survey date can have; a four-digit number outside them is no year (a code, a count).
_DATE_YEARS: Final = range(1900, 2101)
# Day 0 of Excel's and Access's date serials (1899-12-30; 1899-12-31 in some exports): what an empty date
# cell becomes when a table passes through them (ADO, ODBC), not a date anyone surveyed.
_EMPTY_OFFICE_DATES: Final = frozenset({(1899, 12, 30), (1899, 12, 31)})


def _zone_text(zone: str | None) -> str:
    """A zone designator as ISO 8601 writes it: +08:00; UTC and Z as +00:00; none as nothing."""
    if not zone:
        return ""
    if zone in ("Z", "UTC"):
        return "+00:00"
    digits = zone[1:].replace(":", "")
    return f"{zone[0]}{digits[:2]}:{digits[2:4] or '00'}"


def iso_date(text: str) -> str | None:
    """A survey date as ISO 8601 text, or None if ``text`` is no date.

    Reads 2023-05-01, 2023/5/1, 2023.5.1, 20230501 and 2023年5月1日, each with a time or not, and a year
    or a month alone (2019, 2019年, 2019-06, 2023年5月), which surveys of old components write. The result
    is the date alone when the time is midnight or absent (``2023-05-01``; ``2019``; ``2019-06``), else the
    date and the time with the zone as written (``2023-05-01T14:30:00``, ``2023-05-01T01:30:00+00:00``).

    Parameters
    ----------
    text : str
        The value as the file holds it.

    Returns
    -------
    str or None
        ISO 8601 text, or None for text that is no date or a date that does not exist (2023-13-45).
    """
    found = _DATE_RE.fullmatch(text.strip())
    if found is None or int(found["year"]) not in _DATE_YEARS:
        return None
    year = int(found["year"])
    month_text = found["month"] or found["cn_month"] or found["packed_month"]
    day_text = found["day"] or found["cn_day"] or found["packed_day"]
    if day_text is None:
        if found["hour"] is not None:
            return None  # a time needs its day
        if month_text is None:
            return f"{year:04d}"
        return f"{year:04d}-{int(month_text):02d}" if 1 <= int(month_text) <= 12 else None
    try:
        date = dt.date(year, int(month_text), int(day_text))
        time = dt.time(int(found["hour"] or 0), int(found["minute"] or 0), int(found["second"] or 0))
    except ValueError:
        return None
    if time == dt.time(0, 0):
        return date.isoformat()
    return dt.datetime.combine(date, time).isoformat() + _zone_text(found["zone"])


def _check_date(findings: _Findings, values: pd.Series, field: str) -> pd.Series:
    """Reject rows whose ``field`` is no date; returns the values as ISO 8601 text (see :func:`iso_date`)."""
    present = values.to_numpy(dtype=object, na_value=None)
    # A census has few distinct dates: each is read once.
    read = {v: iso_date(str(v)) for v in pd.unique(present[~pd.isna(present)])}
    out = np.array([None if v is None else read[v] for v in present.tolist()], dtype=object)
    at = np.flatnonzero(np.array([v is not None and read[v] is None for v in present.tolist()], dtype=bool))
    reasons = {v: _date_problem(field, str(v)) for v, iso in read.items() if iso is None}
    findings.add(at, field, [str(present[i]) for i in at], [reasons[present[i]] for i in at])
    return pd.Series(out, index=values.index, dtype=object)


def _date_problem(field: str, text: str) -> str:
    """Why ``text``, which :func:`iso_date` did not read, is refused: the message GIS staff are shown.

    A value written as a date but for a year outside :data:`_DATE_YEARS` or a day the month does not have
    is told so, not told to write what it already is; Excel's and Access's empty date gets how to leave it
    empty. Anything else is told the forms that are read.
    """
    found = _DATE_RE.fullmatch(text.strip())
    month_text = None if found is None else found["month"] or found["cn_month"] or found["packed_month"]
    if found is not None and month_text is not None and 1 <= int(month_text) <= 12:
        year, month = int(found["year"]), int(month_text)
        day_text = found["day"] or found["cn_day"] or found["packed_day"]
        day = None if day_text is None else int(day_text)
        if day is None or 1 <= day <= 31:
            if (year, month, day) in _EMPTY_OFFICE_DATES:
                return (
                    f"{field} {text} is outside the years 1900–2100 a survey date may have: it is the date "
                    "Excel and Access give an empty date cell; leave the cell blank if the date is not known"
                )
            if year not in _DATE_YEARS:
                return (
                    f"{field} {text}: the year {year} is outside the years 1900–2100 a survey date may have"
                )
            days = calendar.monthrange(year, month)[1]
            if day is not None and day > days:
                return f"{field} {text} is no day of the calendar: {year}-{month:02d} has {days} days"
    return (
        f"{field} {text} is not a date: write it as YYYY-MM-DD (2023/5/1, 20230501 and 2023年5月1日 are "
        "read too)"
        + (
            "; a five-digit number is how Excel stores a date: format the column as a date before saving"
            if text.isdigit() and len(text) == 5
            else ""
        )
    )


# ------------------------------------------------------------------------------------- other layers


def _check_required_text(findings: _Findings, values: pd.Series, field: str) -> None:
    at = np.flatnonzero(values.isna().to_numpy())
    findings.add(at, field, [None] * at.size, [f"{field} is missing"] * at.size)


def _check_in_city_box(
    findings: _Findings,
    geometries: ObjectArray,
    usable: BoolArray,
    city_bbox: tuple[float, float, float, float] | None,
    what: str,
) -> BoolArray:
    """Reject features whose representative point lies outside the city box: a boundary, station, road or
    net cell moved 3° east, or another city's, would otherwise be stored without a word (a component is
    checked against the counties too, see _check_location). Returns the rows rejected for it."""
    outside_rows = np.zeros(len(geometries), dtype=bool)
    if city_bbox is None:
        return outside_rows
    positions = np.flatnonzero(usable & ~shapely.is_missing(geometries))
    if positions.size == 0:
        return outside_rows
    points = representative_points(geometries[positions])
    x, y = shapely.get_x(points), shapely.get_y(points)
    minx, miny, maxx, maxy = city_bbox
    outside = np.flatnonzero(~((x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)))
    box = ", ".join(f"{v:g}" for v in city_bbox)
    findings.add(
        positions[outside],
        "geometry",
        _wkt(geometries[positions[outside]]),
        [f"the {what} lies at {_xy(x[i], y[i])}, outside the city box ({box})" for i in outside],
    )
    outside_rows[positions[outside]] = True
    return outside_rows


def _check_county_of_city(
    findings: _Findings,
    values: pd.Series,
    ok: BoolArray,
    *,
    field: str,
    city_code: str | None,
    city_name: str,
) -> BoolArray:
    """Reject well-formed codes whose county (the first 6 digits) is not one of the city's
    (:func:`gis.codes.validate_county_of_city`); returns ``ok`` without them."""
    if city_code is None:
        return ok
    codes.validate_county_of_city(city_code, city_code)  # a wrong setting fails once, not on every row
    wrong = ok & np.asarray(_sliced(values, 0, 4) != city_code[:4], dtype=bool)
    at = np.flatnonzero(wrong)
    shown = values.to_numpy(dtype=object, na_value=None)[at]
    reasons = []
    for value in shown:
        try:
            codes.validate_county_of_city(value, city_code, city_name)
        except ValueError as exc:
            reasons.append(str(exc))
    findings.add(at, field, list(shown), reasons)
    return np.asarray(ok & ~wrong, dtype=bool)


def _units(frame: gpd.GeoDataFrame) -> tuple[ObjectArray, ObjectArray, ObjectArray]:
    """Codes, names (None where there is none) and geometries in EPSG:4490 of loaded admin units."""
    if frame.crs is not None and resolve_crs(frame.crs).epsg != resolve_crs(STORAGE_CRS).epsg:
        frame = frame.to_crs(STORAGE_CRS)
    names = (
        frame["name"].to_numpy(dtype=object, na_value=None)
        if "name" in frame.columns
        else np.full(len(frame), None, dtype=object)
    )
    return frame["code"].astype(str).to_numpy(dtype=object), names, _geometries(frame)


def _check_street_in_district(
    findings: _Findings,
    geometries: ObjectArray,
    usable: BoolArray,
    code: pd.Series,
    code_ok: BoolArray,
    districts: gpd.GeoDataFrame,
    metric: str,
) -> None:
    """A street's county prefix against the loaded district it lies in: the components' rule, with their
    tolerance of COUNTY_EDGE_METRES for generalised boundaries (_check_location). A street of a district
    that is not loaded is left to the import, which refuses it for its missing district."""
    loaded = set(_units(districts)[0])
    of_loaded = np.fromiter((p in loaded for p in _sliced(code, 0, 6)), dtype=bool, count=len(code))
    # The whole world as the box: a street outside the city box has been rejected for it already.
    rules = ComponentRules(
        classes={}, counties=districts, city_bbox=(-180.0, -90.0, 180.0, 90.0), metric_crs=metric
    )
    _check_location(findings, geometries, usable, code, code_ok & of_loaded, rules, what="street")


def _check_community_in_street(
    findings: _Findings,
    geometries: ObjectArray,
    usable: BoolArray,
    code: pd.Series,
    code_ok: BoolArray,
    streets: gpd.GeoDataFrame,
    metric: str,
) -> None:
    """Reject a community that lies outside the loaded street its code names: its representative point
    more than COUNTY_EDGE_METRES from the street (boundaries are generalised, and neighbouring layers
    drawn apart meet only roughly). A community of a street that is not loaded is left to the import,
    which refuses it for its missing street."""
    street_codes, street_names, street_geometries = _units(streets)
    index_of = {c: i for i, c in enumerate(street_codes)}
    positions = np.flatnonzero(usable & code_ok)
    street_of = _sliced(code.to_numpy(dtype=object, na_value=None)[positions], 0, 9)
    have = np.fromiter((s in index_of for s in street_of), dtype=bool, count=street_of.size)
    positions, street_of = positions[have], street_of[have]
    if positions.size == 0:
        return
    points = representative_points(geometries[positions])
    metres = np.empty(positions.size)
    for street in pd.unique(street_of):
        these = street_of == street
        metres[these] = shapely.distance(
            transform_geometry(points[these], STORAGE_CRS, metric),
            transform_geometry(street_geometries[index_of[street]], STORAGE_CRS, metric),
        )
    far = np.flatnonzero(metres > COUNTY_EDGE_METRES)
    if far.size == 0:
        return
    # Name the street it does lie in, when a loaded one holds it: usually the code's or the drawing's slip.
    point, street = shapely.STRtree(street_geometries).query(points[far], predicate="intersects")
    lies_in: dict[int, int] = {}
    for p, t in zip(point.tolist(), street.tolist(), strict=True):
        lies_in.setdefault(p, t)
    x, y = shapely.get_x(points[far]), shapely.get_y(points[far])
    reasons = []
    for k, i in enumerate(far):
        own = index_of[street_of[i]]
        where = ""
        if k in lies_in:
            where = f", in street {street_codes[lies_in[k]]}{_named(street_names[lies_in[k]])}"
        reasons.append(
            f"code street {street_codes[own]}{_named(street_names[own])} but the community lies at "
            f"{_xy(x[k], y[k])}, {metres[i]:,.0f} m outside it{where}"
        )
    shown = code.to_numpy(dtype=object, na_value=None)[positions[far]]
    findings.add(positions[far], "code", list(shown), reasons)


def _expected(kind: GeometryKind, n: int) -> ObjectArray:
    return np.full(n, kind, dtype=object)


def validate_boundaries(
    mapped: gpd.GeoDataFrame,
    level: BoundaryLevel,
    *,
    metric_crs: str = _DEFAULT_METRIC_CRS,
    city_bbox: tuple[float, float, float, float] | None = None,
    seen_codes: SeenCodes | None = None,
    city_code: str | None = None,
    city_name: str = "",
    parents: gpd.GeoDataFrame | None = None,
) -> ValidationResult:
    """Validate mapped admin boundaries of one level (see ``map_layer_fields(frame, "boundaries")``).

    Parameters
    ----------
    mapped : geopandas.GeoDataFrame
        EPSG:4490 with ``source_row``, ``code``, ``name`` and optionally ``households``.
    level : {"district", "street", "community"}
        County-level units (6-digit codes), streets/towns (9) or communities/villages (12).
    metric_crs : str, optional
        Projected CRS in metres for the area check of repairs (default EPSG:4548).
    city_bbox : tuple of float, optional
        (minx, miny, maxx, maxy) in degrees: a feature whose representative point lies outside is rejected.
    seen_codes : SeenCodes, optional
        Codes of earlier chunks, updated in place (see :func:`validate_components`).
    city_code : str, optional
        The city's prefecture-level code (``"370100"``): a code whose county is not one of the city's
        (3701xx) is rejected (:func:`gis.codes.validate_county_of_city`).
    city_name : str, optional
        The city's name, for that message.
    parents : geopandas.GeoDataFrame, optional
        The loaded units one level up (``code``, optionally ``name``, polygons): districts for streets,
        streets for communities. A street whose code's county is a loaded district but which lies in
        another district, or more than COUNTY_EDGE_METRES outside its own, is rejected; so is a community
        more than COUNTY_EDGE_METRES outside its loaded street.

    Returns
    -------
    ValidationResult
        Accepted polygons (repaired where safe); ``households`` as a nullable integer column.

    Raises
    ------
    ValueError
        If ``level`` is unknown or the frame lacks the mapped columns.
    """
    if level not in _LEVELS:
        raise ValueError(f"unknown boundary level {level!r}: use district, street or community")
    _require(mapped, ("code", "name"))
    digits, pattern, validator = _LEVELS[level]
    findings = _Findings(mapped["source_row"].to_numpy(dtype=np.int64))
    geometries, usable = _check_geometry(findings, _geometries(mapped), metric_crs)
    geometries = _check_kind(
        findings, geometries, usable, _expected("polygon", len(mapped)), lambda _: f"a {level} boundary"
    )
    outside = _check_in_city_box(findings, geometries, usable, city_bbox, level)
    code = clean_text(mapped["code"])
    what = f"{level} code"
    code_ok = _check_code(
        findings, code, field="code", what=what, pattern=pattern, lengths=(digits,), validator=validator
    )
    code_ok = _check_county_of_city(
        findings, code, code_ok, field="code", city_code=city_code, city_name=city_name
    )
    if parents is not None and level == "street":
        _check_street_in_district(findings, geometries, usable & ~outside, code, code_ok, parents, metric_crs)
    elif parents is not None and level == "community":
        _check_community_in_street(
            findings, geometries, usable & ~outside, code, code_ok, parents, metric_crs
        )
    _check_duplicates(findings, code, seen_codes, field="code", what=what)
    name = clean_text(mapped["name"])
    _check_required_text(findings, name, "name")
    columns = {"code": code, "name": name}
    if "households" in mapped.columns:
        text = clean_text(mapped["households"])
        number = pd.to_numeric(text, errors="coerce")
        whole = _true(number.notna() & (number >= 0) & (number == np.floor(number)))
        at = np.flatnonzero(text.notna().to_numpy() & ~whole)
        findings.add(
            at,
            "households",
            list(text.to_numpy()[at]),
            [f"households {v} is not a whole number of households (0 or more)" for v in text.to_numpy()[at]],
        )
        columns["households"] = number.where(pd.Series(whole, index=number.index)).astype("Int64")
    return _result(mapped, findings, geometries, columns)


_STATION_CODE_LIKE: Final = re.compile(r"\d{13,16}")


def _reject_station_codes_not_read(
    findings: _Findings, attributes: pd.Series, community: pd.Series, derived: pd.Series
) -> None:
    """Reject rows that would be taken for their community's first station (no code read; ``derived`` is
    missing where a row has its own) though a column of theirs holds another station code of that
    community: a code column under a name not recognised (站点编号), whose rows would otherwise overwrite
    the first station."""
    rows, values, reasons = [], [], []
    for position, (held, community_code, first) in enumerate(
        zip(attributes, community, derived, strict=True)
    ):
        if not isinstance(held, dict) or not isinstance(first, str):  # a code of its own, or no community
            continue
        for column, value in held.items():
            text = str(value).strip() if value is not None else ""
            if _STATION_CODE_LIKE.fullmatch(text) and text.startswith(str(community_code)) and text != first:
                rows.append(position)
                values.append(text)
                reasons.append(
                    f"column {column} holds {text}, a station code of community {community_code}, but no"
                    f" column is read as the station code, so this row would be taken for the community's"
                    f" first station {first}: give --map code={column}"
                )
                break
    findings.add(np.asarray(rows, dtype=np.intp), "code", values, reasons)


def _station_codes(own: pd.Series, community: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The code each station row derives from its community, and the code it has (its own, else that).

    A station without a code of its own is its community's first station: community code + 01. Two such
    rows of one community are one station twice, so the duplicate check sees these codes too."""
    derived = (community.astype(str) + "01").where(community.notna(), None)
    return derived, own.where(own.notna(), derived)


def check_duplicates_of_refused(
    refused: pd.DataFrame, seen: SeenCodes, *, layer: str, level: str | None = None
) -> list[Problem]:
    """The duplicate check for rows rejected before validation (a coordinate that cannot be converted, an
    infinite number): every copy of a duplicated code is rejected, also when one copy is rejected for
    something else, or the other copy would be imported alone and a corrected report would later
    overwrite it. ``seen`` holds the file's codes validated so far, this chunk's included; the earlier row
    of a code met again goes to its ``taken_back``, as for any later row. Returns the refused rows' own
    duplicate problems. Roads have no code: none."""
    if layer == "stations":
        own = (
            clean_text(refused["code"]) if "code" in refused.columns else pd.Series(None, index=refused.index)
        )
        _, codes = _station_codes(own, clean_text(refused["community_code"]))
    elif "code" in refused.columns:
        codes = clean_text(refused["code"])
    else:
        return []
    what = {"components": "code", "stations": "station code", "net": "net polygon code"}.get(
        layer, f"{level} code"
    )
    problems = []
    for code, row in zip(codes, refused["source_row"], strict=True):
        if code is None:
            continue
        one_code, one_row = np.array([code], dtype=object), np.array([int(row)], dtype=np.int64)
        if code in seen:
            (reason,) = seen._met_again(one_code, one_row, field="code", what=what)
            problems.append(Problem(int(row), "code", code, reason, "rejected"))
        else:
            seen._add(one_code, one_row)
    return problems


def validate_stations(
    mapped: gpd.GeoDataFrame,
    *,
    metric_crs: str = _DEFAULT_METRIC_CRS,
    city_bbox: tuple[float, float, float, float] | None = None,
    seen_codes: SeenCodes | None = None,
    city_code: str | None = None,
    city_name: str = "",
) -> ValidationResult:
    """Validate mapped urban-management stations (see ``map_layer_fields(frame, "stations")``).

    Parameters
    ----------
    mapped : geopandas.GeoDataFrame
        EPSG:4490 with ``source_row``, ``name``, ``community_code``, and optionally ``code`` and ``phone``.
        A row without a code gets its community's code + ``01`` (the community's first station).
    metric_crs : str, optional
        Projected CRS in metres (used only if a polygon has to be checked for repair).
    city_bbox : tuple of float, optional
        (minx, miny, maxx, maxy) in degrees: a feature whose representative point lies outside is rejected.
    seen_codes : SeenCodes, optional
        Station codes of earlier chunks, updated in place.
    city_code, city_name : str, optional
        The city's code and name: a community code whose county is not one of the city's is rejected (see
        :func:`validate_boundaries`).

    Returns
    -------
    ValidationResult
        Accepted stations as points; phone numbers with full-width characters folded to ASCII.

    Raises
    ------
    ValueError
        If the frame lacks the mapped columns.
    """
    _require(mapped, ("name", "community_code"))
    findings = _Findings(mapped["source_row"].to_numpy(dtype=np.int64))
    geometries, usable = _check_geometry(findings, _geometries(mapped), metric_crs)
    geometries = _check_kind(
        findings, geometries, usable, _expected("point", len(mapped)), lambda _: "a station"
    )
    _check_in_city_box(findings, geometries, usable, city_bbox, "station")
    name = clean_text(mapped["name"])
    _check_required_text(findings, name, "name")
    community = clean_text(mapped["community_code"])
    community_ok = _check_code(
        findings,
        community,
        field="community_code",
        what="community code",
        pattern=_COMMUNITY_RE,
        lengths=(12,),
        validator=codes.validate_community_code,
    )
    _check_county_of_city(
        findings, community, community_ok, field="community_code", city_code=city_code, city_name=city_name
    )
    columns = {"name": name, "community_code": community}
    own = pd.Series(None, index=mapped.index, dtype=object)
    if "code" in mapped.columns:
        own = clean_text(mapped["code"])
        _check_code(
            findings,
            own,
            field="code",
            what="station code",
            pattern=None,
            max_chars=_STATION_CODE_CHARS,
            required=False,
        )
    derived, code = _station_codes(own, community)
    if "attributes" in mapped.columns:
        _reject_station_codes_not_read(findings, mapped["attributes"], community, derived.where(own.isna()))
    _check_duplicates(findings, code, seen_codes, field="code", what="station code")
    columns["code"] = code
    if "phone" in mapped.columns:
        # Full-width digits and dashes (０５３１－…) are common in Chinese tables and mean the same number.
        phone = _objects(clean_text(mapped["phone"]).str.normalize("NFKC"), mapped.index)
        bad = np.flatnonzero(phone.notna().to_numpy() & ~_true(phone.str.fullmatch(_PHONE_RE)))
        findings.add(
            bad,
            "phone",
            list(phone.to_numpy()[bad]),
            [
                "phone may hold only digits, spaces, brackets, + and -, 5 to 20 characters, then an "
                "extension after 转 (0531-86001234转8001)"
            ]
            * bad.size,
        )
        columns["phone"] = phone
    return _result(mapped, findings, geometries, columns)


def validate_net_polygons(
    mapped: gpd.GeoDataFrame,
    *,
    metric_crs: str = _DEFAULT_METRIC_CRS,
    city_bbox: tuple[float, float, float, float] | None = None,
    seen_codes: SeenCodes | None = None,
) -> ValidationResult:
    """Validate the mapped polygons of another department's net (see ``map_layer_fields(frame, "net")``).

    Parameters
    ----------
    mapped : geopandas.GeoDataFrame
        EPSG:4490 with ``source_row``, ``code`` and optionally ``name``.
    metric_crs : str, optional
        Projected CRS in metres for the area check of repairs (default EPSG:4548).
    city_bbox : tuple of float, optional
        (minx, miny, maxx, maxy) in degrees: a feature whose representative point lies outside is rejected.
    seen_codes : SeenCodes, optional
        Codes of earlier chunks, updated in place.

    Returns
    -------
    ValidationResult
        Accepted polygons, repaired where safe.

    Raises
    ------
    ValueError
        If the frame lacks the mapped columns.
    """
    _require(mapped, ("code",))
    findings = _Findings(mapped["source_row"].to_numpy(dtype=np.int64))
    geometries, usable = _check_geometry(findings, _geometries(mapped), metric_crs)
    geometries = _check_kind(
        findings, geometries, usable, _expected("polygon", len(mapped)), lambda _: "a net cell"
    )
    _check_in_city_box(findings, geometries, usable, city_bbox, "net cell")
    code = clean_text(mapped["code"])
    _check_code(
        findings, code, field="code", what="net polygon code", pattern=None, max_chars=_NET_CODE_CHARS
    )
    _check_duplicates(findings, code, seen_codes, field="code", what="net polygon code")
    columns = {"code": code}
    if "name" in mapped.columns:
        columns["name"] = clean_text(mapped["name"])
    return _result(mapped, findings, geometries, columns)


def validate_roads(
    mapped: gpd.GeoDataFrame,
    *,
    metric_crs: str = _DEFAULT_METRIC_CRS,
    city_bbox: tuple[float, float, float, float] | None = None,
    seen_roads: SeenRoads | None = None,
) -> ValidationResult:
    """Validate mapped road centre lines (see ``map_layer_fields(frame, "roads")``).

    Parameters
    ----------
    mapped : geopandas.GeoDataFrame
        EPSG:4490 with ``source_row``, ``road_class`` and optionally ``name``.
    metric_crs : str, optional
        Projected CRS in metres (used only if a polygon has to be checked for repair).
    city_bbox : tuple of float, optional
        (minx, miny, maxx, maxy) in degrees: a feature whose representative point lies outside is rejected.
    seen_roads : SeenRoads, optional
        The roads of earlier chunks of the same import, updated in place. A row with the same name and
        line as an earlier row, in this chunk or before, is rejected as a copy.

    Returns
    -------
    ValidationResult
        Accepted lines; ``road_class`` normalised to arterial, secondary, branch or rural, missing where
        the file gives none (the store keeps a known road's class then, and takes a new one as branch).

    Raises
    ------
    ValueError
        If the frame lacks the mapped columns.
    """
    _require(mapped, ("road_class",))
    findings = _Findings(mapped["source_row"].to_numpy(dtype=np.int64))
    geometries, usable = _check_geometry(findings, _geometries(mapped), metric_crs)
    geometries = _check_kind(findings, geometries, usable, _expected("line", len(mapped)), lambda _: "a road")
    _check_in_city_box(findings, geometries, usable, city_bbox, "road")
    road_class, unknown = normalise_road_class(mapped["road_class"])
    at = np.flatnonzero(unknown.to_numpy())
    names = ", ".join(f"{ROAD_CLASS_LABELS[c]} {c}" for c in ROAD_CLASSES)
    findings.add(
        at,
        "road_class",
        list(road_class.to_numpy()[at]),
        [f"road class {c} is not known; use one of: {names}" for c in road_class.to_numpy()[at]],
    )
    columns = {"road_class": road_class}
    names = clean_text(mapped["name"]) if "name" in mapped.columns else pd.Series([None] * len(mapped))
    if "name" in mapped.columns:
        columns["name"] = names
    others = mapped.drop(columns=["source_row", "name", "road_class", mapped.geometry.name], errors="ignore")
    others.insert(0, "road_class", road_class.to_numpy())
    _check_road_copies(findings, names, geometries, others, seen_roads)
    return _result(mapped, findings, geometries, columns)
