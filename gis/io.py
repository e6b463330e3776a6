"""Open the survey files GIS staff really have and stream their features into the storage CRS.

:func:`inspect_layer` decides a file's format, layer, attribute text encoding and CRS, and checks the
first rows for the classic CRS mistakes (metres labelled as degrees, longitude and latitude swapped, a
Gauss-Kruger zone prefix under the wrong EPSG code, a whole file outside the city). :func:`iter_chunks`
then streams the features in bounded chunks converted to EPSG:4490, each row numbered as GIS staff see
it (``source_row``). Rows are never dropped for bad geometry: validating rows is the caller's job.

Formats: GeoPackage, ESRI Shapefile (a ``.shp``, a folder holding one, or a ``.zip``), GeoJSON, CSV with
coordinate or WKT columns, KML and FileGDB (a ``.gdb`` folder). Whole-file problems raise
:class:`LayerError`, whose message names the file and says what to do.

A ``.zip`` (or ``.kmz``) is read in place by GDAL, which trusts neither the archive's member names nor
its declared sizes: :func:`check_archive` refuses, before anything reads it, an archive with too many
members, a member named outside the archive (``../``, an absolute path, a symlink), a nested archive, or
members that unpack (really, not only as declared) to more than the limits allow.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import csv
import dataclasses
import html
import io
import itertools
import re
import sqlite3
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final, Literal, TypeAlias
from xml.etree import ElementTree

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyogrio
import pyogrio.errors
import pyproj
import pyproj.exceptions
import shapely

from gis.crs import (
    CHINA_BBOX,
    STORAGE_CRS,
    BBox,
    CoordinateError,
    ResolvedCRS,
    ZonePrefixError,
    check_datum_shift,
    detect_gk_zone_prefix,
    gauss_kruger_zone,
    gk_zone_epsg,
    resolve_crs,
    transform,
)

__all__ = [
    "DEFAULT_ARCHIVE_LIMITS",
    "FORMATS",
    "REPORT_GEOMETRIES",
    "UNCONVERTIBLE",
    "ArchiveLimits",
    "LayerError",
    "LayerInfo",
    "check_archive",
    "inspect_layer",
    "iter_chunks",
    "list_layers",
    "read_layer",
]

FORMATS: Final = ("GPKG", "ESRI Shapefile", "GeoJSON", "CSV", "KML", "OpenFileGDB")
# The key in a chunk's ``attrs`` of its rows whose coordinates cannot be converted from the file's CRS
# while most rows' can: {source_row: (the coordinate as written, why)}. Those rows' geometry is None.
UNCONVERTIBLE: Final = "unconvertible"
# The key in a chunk's ``attrs`` of the geometry (EPSG:4490) the problems report shows for rows in
# UNCONVERTIBLE: {source_row: geometry}, for those whose every vertex converts, or converts once the
# plain mistake is put right (x and y swapped, a zone prefix lost). The rest have none.
REPORT_GEOMETRIES: Final = "report_geometries"

FloatArray: TypeAlias = npt.NDArray[np.float64]
RowArray: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
GeomArray: TypeAlias = npt.NDArray[np.object_]
CrsSource: TypeAlias = Literal["file", "override", "format"]
# One chunk as read: attributes, geometries in the source CRS, and each row's source_row.
Frame: TypeAlias = tuple[pd.DataFrame, GeomArray, RowArray]
Frames: TypeAlias = Generator[Frame, None, None]

# GDAL driver -> our format name; GDAL reads KML with LIBKML when it can and falls back to KML.
_DRIVER_FORMATS: Final = {
    "GPKG": "GPKG",
    "ESRI Shapefile": "ESRI Shapefile",
    "GeoJSON": "GeoJSON",
    "KML": "KML",
    "LIBKML": "KML",
    "OpenFileGDB": "OpenFileGDB",
}
_SUFFIX_FORMATS: Final = {
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".csv": "CSV",
    ".kml": "KML",
    ".kmz": "KML",
}
# Formats of one file, read as they are (never from a zip).
ONE_FILE_SUFFIXES: Final = (".gpkg", ".geojson", ".json", ".csv", ".kml")
_SHAPEFILE_PARTS: Final = (".shx", ".dbf", ".prj", ".cpg", ".sbn", ".sbx", ".qix", ".xml")
# Formats whose features keep a stored fid (a GeoPackage's primary key, a FileGDB's OBJECTID), which
# QGIS's attribute table shows and which deleting rows leaves with gaps: their source row is the fid.
_FID_FORMATS: Final = frozenset({"GPKG", "OpenFileGDB"})
# Formats that hold several layers, so LayerInfo.layer names the one read.
_MULTI_LAYER: Final = frozenset({"GPKG", "OpenFileGDB", "KML"})
# RFC 7946 (GeoJSON) and OGC KML 2.3 both fix the CRS to WGS 84 lon/lat.
_WGS84_BY_SPEC: Final = frozenset({"GeoJSON", "KML"})
# GeoPackage, GeoJSON, KML and FileGDB store text as UTF-8 by their specs; GDAL decodes it.
_UTF8_BY_SPEC: Final = frozenset({"GPKG", "GeoJSON", "KML", "OpenFileGDB"})
# The fields GDAL's KML drivers give every placemark besides its data: its own elements, read only when
# some placemark of the layer has one, and its XML id (which GDAL writes as layer.fid) and how Google
# Earth draws it, never survey data. Kept, they would become attributes of every component, and a census
# surveyed again as KML would differ from the GeoPackage it was first loaded from in every row.
_KML_ELEMENT_FIELDS: Final = ("Name", "description", "Description", "timestamp", "begin", "end")
_KML_DISPLAY_FIELDS: Final = (
    "id",
    "altitudeMode",
    "tessellate",
    "extrude",
    "visibility",
    "drawOrder",
    "icon",
)

# GDAL's LIBKML driver launders <Data name="..."> field names by default, turning every non-ASCII byte into
# "_": Google Earth's 标识码 and 养护单位 became "_________" and "____________", and two names of one byte
# length collided, so one value silently overwrote the other. The names as written are what gets mapped.
pyogrio.set_gdal_config_options({"LIBKML_LAUNDER_FIELD_NAMES": "NO"})

_SUPPORTED: Final = (
    "GeoPackage (.gpkg), Shapefile (.shp, a folder or a .zip holding one), GeoJSON, "
    "CSV with coordinate columns, KML or FileGDB (.gdb folder)"
)
_CRS_EXAMPLES: Final = "(e.g. --crs EPSG:4527, --crs gcj02)"

# Recognised CSV coordinate columns, compared case-insensitively: (x, y) in order of preference.
_COORD_PAIRS: Final = (
    ("lon", "lat"),
    ("lng", "lat"),
    ("long", "lat"),
    ("longitude", "latitude"),
    ("x", "y"),
    ("经度", "纬度"),
    ("东坐标", "北坐标"),
    ("x坐标", "y坐标"),
)
# Pairs whose names say degrees: with a geographic CRS, a table that also has X/Y (a projected copy of the
# same points, common in survey tables) is read by these; with a projected CRS, by the others.
_DEGREE_PAIRS: Final = frozenset(
    {("lon", "lat"), ("lng", "lat"), ("long", "lat"), ("longitude", "latitude"), ("经度", "纬度")}
)
_WKT_COLUMNS: Final = ("wkt", "geometry")
_CSV_SEPARATORS: Final = (",", "\t", ";", "|")
_GEOMETRY_NAMES: Final = {
    int(shapely.GeometryType.POINT): "Point",
    int(shapely.GeometryType.LINESTRING): "LineString",
    int(shapely.GeometryType.POLYGON): "Polygon",
    int(shapely.GeometryType.MULTIPOINT): "MultiPoint",
    int(shapely.GeometryType.MULTILINESTRING): "MultiLineString",
    int(shapely.GeometryType.MULTIPOLYGON): "MultiPolygon",
    int(shapely.GeometryType.GEOMETRYCOLLECTION): "GeometryCollection",
}

# Features inspect_layer reads to check for CRS mistakes; the whole first chunk is checked again later.
_SAMPLE_ROWS: Final = 10_000
# Reading a shapefile "in" ISO-8859-1 passes every byte through as one character, to decode here.
_BYTES: Final = "ISO-8859-1"
# GDAL's integer field types; a float64 holds every integer below 2**53 exactly.
_OGR_INTEGERS: Final = frozenset({"OFTInteger", "OFTInteger64"})
_FLOAT_EXACT: Final = float(2**53)
# GDAL's subtype of an integer field that holds true (1) or false (0): GeoPackage's BOOLEAN, FileGDB's.
_OGR_BOOLEAN: Final = "OFSTBoolean"
# Bytes per read when scanning a .dbf or CSV for its encoding, so huge files stay out of memory.
_SCAN_BYTES: Final = 4 << 20
# Eastings from 39 000 000 to 39 999 999 carry the zone number of Jinan's 3-degree zone (EPSG:4527).
_ZONE39_MIN: Final = 39_000_000.0
_ZONE39_MAX: Final = 40_000_000.0
# Gauss-Kruger numbers in China: northings run from about 2 000 km (18 deg N) to 6 000 km (54 deg N);
# eastings lie within ~300 km of the central meridian's 500 000 m, with or without the zone number in
# front (13 500 000 to 45 500 000). The two ranges never overlap, so a swap is plain to see.
_NORTHING_RANGE: Final = (1_900_000.0, 6_100_000.0)
_EASTING_RANGE: Final = (150_000.0, 850_000.0)


def _gk_northing(v: FloatArray) -> npt.NDArray[np.bool_]:
    return (v >= _NORTHING_RANGE[0]) & (v <= _NORTHING_RANGE[1])


def _gk_easting(v: FloatArray) -> npt.NDArray[np.bool_]:
    within_zone = np.where(v >= 1_000_000.0, np.mod(v, 1_000_000.0), v)
    zone = np.floor_divide(v, 1_000_000.0)
    known_zone = (zone == 0) | ((zone >= 13) & (zone <= 45))
    return np.asarray(
        known_zone & (within_zone >= _EASTING_RANGE[0]) & (within_zone <= _EASTING_RANGE[1]), dtype=bool
    )


# gis.crs names a coordinate by its array index (" at index 12"); messages here name the row instead.
_INDEX_RE: Final = re.compile(r" at index \d+")
# Archives inside an archive are never opened: GDAL would follow them (/vsizip/ nests), and each level
# multiplies what a small upload can unpack to.
_ARCHIVE_SUFFIXES: Final = (".zip", ".kmz", ".7z", ".rar", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".zst")
# The ratio limit applies to members at least this large: a 200-byte .prj may compress 1:1 or 10:1.
_RATIO_FLOOR_BYTES: Final = 1 << 20
# A zip member's local header: signature, 22 bytes of fields, name length and extra length (APPNOTE 4.3.7).
_LOCAL_HEADER: Final = struct.Struct("<4s22xHH")
_LOCAL_SIGNATURE: Final = b"PK\x03\x04"
# The end record (22 bytes), a comment of at most 64 KiB before it, and the zip64 end record and locator.
_EOCD_SEARCH_BYTES: Final = 22 + 0xFFFF + 56 + 20


class LayerError(ValueError):
    """A whole-file problem: the message names the file (and layer), what is wrong and what to do.

    ``field`` is the option to change when that is what is wrong (``crs``, ``encoding``, ``layer``),
    else ``file``.
    """

    def __init__(self, message: str, *, field: str = "file") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ArchiveLimits:
    """How large a ``.zip`` may be once unpacked (see :func:`check_archive`).

    Attributes
    ----------
    max_members : int
        Most files (and folders) the archive may list.
    max_bytes : int
        Most bytes all members may unpack to together, as declared and as really inflated.
    max_ratio : float
        Largest unpacked/packed size ratio of one member of 1 MiB or more.
    """

    max_members: int = 10_000
    max_bytes: int = 4 << 30
    max_ratio: float = 200.0


DEFAULT_ARCHIVE_LIMITS: Final = ArchiveLimits()


@dataclass(frozen=True)
class LayerInfo:
    """What :func:`inspect_layer` decided about a file; :func:`iter_chunks` reads by it.

    Attributes
    ----------
    path : Path
        The path as given.
    format : str
        ``"GPKG"``, ``"ESRI Shapefile"``, ``"GeoJSON"``, ``"CSV"``, ``"KML"`` or ``"OpenFileGDB"``.
    layer : str or None
        The layer read, for the multi-layer formats (GPKG, FileGDB, KML); else None.
    layers : tuple of str
        All layers in the source.
    crs : str
        Canonical name from :func:`gis.crs.resolve_crs`, e.g. ``"EPSG:4527"``, ``"gcj02"``, ``"wgs84"``.
    crs_from : {"file", "override", "format"}
        Where the CRS came from; ``"format"`` for GeoJSON and KML, WGS 84 by their specs.
    encoding : str or None
        The attribute text encoding, e.g. ``"UTF-8"`` or ``"GB18030"``.
    feature_count : int
        Features in the layer (for CSV, data rows that are not blank).
    fields : tuple of str
        Attribute field names as decoded.
    coordinate_fields : tuple of str
        The fields among ``fields`` that hold the positions: a CSV's x and y columns, and a WKT column
        beside them. They come in each chunk too, so a problem report can show a broken one as written;
        else empty.
    geometry_type : str or None
        As GDAL reports it, e.g. ``"Point"``; None for a table without geometry.
    warnings : tuple of str
        Things the user should know, e.g. that the encoding was guessed or ``--crs`` overrode the file.
    integer_fields : tuple of str
        The fields among ``fields`` the file types as integers (GDAL's OFTInteger and OFTInteger64); a
        chunk holds them as pandas' nullable ``Int64`` when a null in them would make them floats.
    boolean_fields : tuple of str
        The fields among ``fields`` the file types as booleans (GDAL's OFSTBoolean, an integer subtype); a
        chunk holds them as pandas' nullable ``boolean`` when a null in them would make them floats.
    coded_values : tuple of (field, ((code, name), ...))
        The fields of a FileGDB or GeoPackage whose values are the codes of a coded-value domain (状态 1 for
        完好), with the domain's codes as text and their names; a chunk holds the names, as ArcGIS and QGIS
        show them (a code the domain does not list stays as it is).
    """

    path: Path
    format: str
    layer: str | None
    layers: tuple[str, ...]
    crs: str
    crs_from: str
    encoding: str | None
    feature_count: int
    fields: tuple[str, ...]
    geometry_type: str | None
    warnings: tuple[str, ...]
    coordinate_fields: tuple[str, ...] = ()
    integer_fields: tuple[str, ...] = ()
    boolean_fields: tuple[str, ...] = ()
    coded_values: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()


# ------------------------------------------------------------------------------------------ public API


def list_layers(
    path: str | Path, *, archive_limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS
) -> tuple[str, ...]:
    """List the layers of a file.

    Parameters
    ----------
    path : str or Path
        A file, a shapefile folder or ``.zip``, or a ``.gdb`` folder.
    archive_limits : ArchiveLimits, optional
        Limits for a ``.zip`` or ``.kmz`` (see :func:`check_archive`).

    Returns
    -------
    tuple of str
        Layer names in the order the file stores them; one name for single-layer formats.

    Raises
    ------
    LayerError
        If the path does not exist, is not a supported format, cannot be read, or is an archive that
        :func:`check_archive` refuses.
    """
    source = _locate(Path(path), archive_limits)
    if source.format == "CSV":
        return (Path(path).stem,)
    return _gdal_layers(source)


def inspect_layer(
    path: str | Path,
    *,
    layer: str | None = None,
    crs: str | None = None,
    encoding: str | None = None,
    city_bbox: tuple[float, float, float, float] | None = None,
    archive_limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
) -> LayerInfo:
    """Decide a file's format, layer, encoding and CRS, and check its first rows for CRS mistakes.

    Parameters
    ----------
    path : str or Path
        A ``.gpkg``, ``.shp`` (or a folder or ``.zip`` holding one), ``.geojson``/``.json``, ``.csv``,
        ``.kml``/``.kmz`` file or a ``.gdb`` folder.
    layer : str, optional
        The layer to read; required when a GeoPackage, FileGDB or KML holds several.
    crs : str, optional
        The CRS the coordinates are really in, anything :func:`gis.crs.resolve_crs` accepts
        (``"EPSG:4527"``, ``"gcj02"``, ``"bd09"``, ``"wgs84"``, ``"cgcs2000"``, ``"4548"``). It always
        wins over the file's own CRS; required for CSV and for a shapefile without ``.prj``.
    encoding : str, optional
        The attribute text encoding of a shapefile or CSV (e.g. ``"GBK"``); detected when omitted.
    city_bbox : tuple of float, optional
        ``(minx, miny, maxx, maxy)`` in EPSG:4490; when given, a file whose first rows mostly fall
        outside it is rejected.
    archive_limits : ArchiveLimits, optional
        Limits for a ``.zip`` or ``.kmz``, checked before GDAL opens it (see :func:`check_archive`).

    Returns
    -------
    LayerInfo
        Pass it to :func:`iter_chunks` to read the features.

    Raises
    ------
    LayerError
        For a missing, unreadable, corrupt or unsupported file, an unknown or ambiguous layer, a missing
        or unknown CRS, a classic CRS mistake found in the first rows, or an archive that
        :func:`check_archive` refuses.
    """
    given = Path(path)
    if given.is_file() and given.stat().st_size == 0:
        # Said plainly, rather than as GDAL's "not recognized as being in a supported file format".
        raise LayerError(f"{given} is empty (0 bytes): it was not copied or exported whole; do it again")
    source = _locate(given, archive_limits)
    box = _check_bbox(city_bbox)
    override = _resolve_override(crs)
    if source.format == "CSV":
        info, sample = _inspect_csv(given, source, layer, override, encoding)
    else:
        info, sample = _inspect_gdal(given, source, layer, override, encoding)
    try:
        check_datum_shift(info.crs, STORAGE_CRS)
    except CoordinateError as exc:
        origin = "--crs" if info.crs_from == "override" else "the file's CRS"
        raise LayerError(f"{source.label}: {origin} {exc}", field="crs") from exc
    # Converting the first rows runs every whole-file check; the rows themselves are not kept.
    with contextlib.closing(_converted(info, sample, box)) as checked:
        next(checked, None)
    return info


def iter_chunks(
    info: LayerInfo,
    *,
    chunk_rows: int = 100_000,
    city_bbox: tuple[float, float, float, float] | None = None,
) -> Iterator[gpd.GeoDataFrame]:
    """Stream a layer's features in chunks, converted to the storage CRS (EPSG:4490).

    Each chunk holds every attribute field (decoded text or numbers), ``source_row`` (int64: the row as
    QGIS's attribute table shows it: a GeoPackage's or FileGDB's fid, which rows deleted leave with gaps;
    for Shapefile, GeoJSON and KML the 1-based feature number; for CSV the line number in the file, the
    header being line 1) and the geometry. Features without geometry keep None; NaN or infinite
    coordinates stay as they are. Only ``chunk_rows`` features are in memory at a time.

    Parameters
    ----------
    info : LayerInfo
        From :func:`inspect_layer`.
    chunk_rows : int, optional
        Features per chunk.
    city_bbox : tuple of float, optional
        ``(minx, miny, maxx, maxy)`` in EPSG:4490; when given, the first chunk must mostly fall inside.

    Returns
    -------
    Iterator of geopandas.GeoDataFrame
        Chunks in EPSG:4490, each indexed 0..n-1, columns ``*info.fields``, ``source_row``, ``geometry``.

    Raises
    ------
    LayerError
        For a classic CRS mistake in the first chunk, a coordinate that cannot be converted (naming its
        row), or a file that fails to read part-way.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    box = _check_bbox(city_bbox)
    # inspect_layer checked an archive already; inflating it once more would double the work.
    source = _locate(info.path, None)
    if info.format == "CSV":
        layout = _csv_layout(
            info.path,
            _python_codec(info.encoding or "UTF-8", csv=True),
            source.label,
            geographic=resolve_crs(info.crs).is_geographic,
        )
        # The columns without name or value, found when the file was inspected, are not among its fields.
        layout = dataclasses.replace(layout, dropped=frozenset(set(layout.blank) - set(info.fields)))
        frames = _csv_frames(info.path, layout, source.label, chunk_rows)
    else:
        frames = _gdal_frames(source, info, chunk_rows)
    # Not a generator itself, so a bad argument or a vanished file is reported at the call.
    return _converted(info, frames, box)


def read_layer(
    path: str | Path,
    *,
    layer: str | None = None,
    crs: str | None = None,
    encoding: str | None = None,
    city_bbox: tuple[float, float, float, float] | None = None,
) -> tuple[LayerInfo, gpd.GeoDataFrame]:
    """Inspect a file and read all of it into one GeoDataFrame in EPSG:4490.

    For small files and tests; large imports should loop over :func:`iter_chunks` instead.

    Parameters
    ----------
    path, layer, crs, encoding, city_bbox
        As for :func:`inspect_layer`.

    Returns
    -------
    tuple of (LayerInfo, geopandas.GeoDataFrame)
        The layer description and its features, shaped as the chunks of :func:`iter_chunks`.

    Raises
    ------
    LayerError
        As for :func:`inspect_layer` and :func:`iter_chunks`.
    """
    info = inspect_layer(path, layer=layer, crs=crs, encoding=encoding, city_bbox=city_bbox)
    chunks = list(iter_chunks(info, city_bbox=city_bbox))
    if not chunks:
        empty = pd.DataFrame({name: pd.Series(dtype=object) for name in info.fields})
        empty["source_row"] = pd.Series(dtype=np.int64)
        return info, gpd.GeoDataFrame(empty, geometry=gpd.GeoSeries([], crs=STORAGE_CRS), crs=STORAGE_CRS)
    return info, gpd.GeoDataFrame(pd.concat(chunks, ignore_index=True), crs=STORAGE_CRS)


# ------------------------------------------------------------------------------------ finding the file


@dataclass(frozen=True)
class _Source:
    format: str
    gdal_path: str
    label: str
    # A shapefile's .shp on disk, or its member name inside ``archive``: where .dbf and .cpg are found.
    shp: str | None = None
    archive: Path | None = None


def _locate(path: Path, archive_limits: ArchiveLimits | None) -> _Source:
    label = str(path)
    if not path.exists():
        raise LayerError(f"{label} does not exist: check the path, and that the whole file was copied")
    if path.is_dir():
        if path.suffix.lower() == ".gdb":
            return _Source("OpenFileGDB", str(path), label)
        return _shapefile_in_folder(path)
    suffix = path.suffix.lower()
    if suffix in (".zip", ".kmz") and archive_limits is not None:
        check_archive(path, archive_limits)
    if suffix == ".zip":
        return _shapefile_in_zip(path)
    if suffix in _SHAPEFILE_PARTS:
        raise LayerError(f"{label} is one part of a shapefile: give the .shp file ({path.stem}.shp)")
    fmt = _SUFFIX_FORMATS.get(suffix)
    if fmt == "ESRI Shapefile":
        _check_shapefile_parts(label, lambda ext: _sibling(path, ext) is not None)
        return _Source(fmt, str(path), label, shp=str(path))
    if fmt is not None:
        return _Source(fmt, str(path), label)
    # Unknown extension: let GDAL say what it is, and accept it only if it is a format we read.
    try:
        driver = str(pyogrio.read_info(str(path))["driver"])
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, RuntimeError) as exc:
        raise LayerError(f"{label} is not a file format gridsvc can read: export it as {_SUPPORTED}") from exc
    if driver == "CSV":
        return _Source("CSV", str(path), label)
    if driver not in _DRIVER_FORMATS or _DRIVER_FORMATS[driver] == "ESRI Shapefile":
        raise LayerError(
            f"{label} is a {driver} file, which gridsvc does not read: export it as {_SUPPORTED}"
        )
    return _Source(_DRIVER_FORMATS[driver], str(path), label)


def _sibling(shp: Path, ext: str) -> Path | None:
    # GDAL finds a part in lower or upper case (x.shp beside x.DBF), so do the same.
    for candidate in (shp.with_suffix(ext), shp.with_suffix(ext.upper())):
        if candidate.is_file():
            return candidate
    return None


def _check_shapefile_parts(label: str, has: Callable[[str], bool]) -> None:
    # GDAL opens a .shp without its .dbf and silently returns no attributes; refuse instead.
    missing = [ext for ext in (".shx", ".dbf") if not has(ext)]
    if missing:
        raise LayerError(
            f"{label} has no {' or '.join(missing)} beside it: a shapefile is several files (.shp, .shx, "
            ".dbf, .prj, .cpg) with the same name; copy all of them, or send them zipped together"
        )


def _shapefile_in_folder(folder: Path) -> _Source:
    shps = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".shp")
    if not shps:
        raise LayerError(
            f"{folder} is a folder with no shapefile (.shp) in it: give the path of a file to import "
            f"({_SUPPORTED})"
        )
    if len(shps) > 1:
        names = ", ".join(p.name for p in shps)
        raise LayerError(
            f"{folder} holds {len(shps)} shapefiles ({names}): give the path of the one to import"
        )
    shp = shps[0]
    _check_shapefile_parts(str(shp), lambda ext: _sibling(shp, ext) is not None)
    return _Source("ESRI Shapefile", str(shp), str(folder), shp=str(shp))


def _shapefile_in_zip(archive: Path) -> _Source:
    label = str(archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            shown = {m.filename: _member_label(m) for m in zf.infolist()}
            names = list(shown)
    except (zipfile.BadZipFile, OSError) as exc:
        raise LayerError(
            f"{label} is not a readable .zip ({exc}): it may be truncated; copy it again"
        ) from exc
    names = [n for n in names if not is_resource_fork(n)]
    shps = sorted(n for n in names if n.lower().endswith(".shp"))
    gdbs = sorted({part for n in names for part in n.split("/")[:-1] if part.lower().endswith(".gdb")})
    shown_gdbs = ", ".join(
        sorted({part for n in names for part in shown[n].split("/")[:-1] if part.lower().endswith(".gdb")})
    )
    vsi = f"/vsizip/{archive.resolve()}"
    if len(shps) > 1:
        listed = ", ".join(sorted(shown[n] for n in shps))
        raise LayerError(f"{label} holds {len(shps)} shapefiles ({listed}): zip only the one to import")
    if shps and gdbs:
        # Reading the shapefile would pass over the FileGDB without a word; which one is meant is unknown.
        raise LayerError(
            f"{label} holds a shapefile ({shown[shps[0]]}) and a FileGDB ({shown_gdbs}): zip only the"
            " one to import"
        )
    if len(shps) == 1:
        shp = shps[0]
        lowered = {n.lower() for n in names}
        _check_shapefile_parts(f"{label} ({shp})", lambda ext: (shp[:-4] + ext).lower() in lowered)
        return _Source("ESRI Shapefile", f"{vsi}/{shp}", label, shp=shp, archive=archive)
    if len(gdbs) > 1:
        raise LayerError(f"{label} holds {len(gdbs)} FileGDBs ({shown_gdbs}): zip only the one to import")
    if len(gdbs) == 1:
        prefix = next(n for n in names if f"{gdbs[0]}/" in n).split(f"{gdbs[0]}/")[0]
        return _Source("OpenFileGDB", f"{vsi}/{prefix}{gdbs[0]}", label)
    # The files of a .gdb folder zipped without the folder (zip -r ../x.zip . inside it): GDAL reads the
    # folder they are in as the FileGDB.
    tables = {n.rpartition("/")[0] for n in names if n.lower().endswith(".gdbtable")}
    if len(tables) == 1:
        folder = tables.pop()
        return _Source("OpenFileGDB", f"{vsi}/{folder}" if folder else vsi, label)
    # A GeoPackage, GeoJSON, CSV or KML is zipped to mail it; read from a zip, its own checks (a CSV's
    # encoding, a KML's times) would read the archive instead of it.
    layer_files = sorted(shown[n] for n in names if PurePosixPath(n).suffix.lower() in ONE_FILE_SUFFIXES)
    if layer_files:
        which = layer_files[0] if len(layer_files) == 1 else "the one you mean"
        raise LayerError(
            f"{label} holds {', '.join(layer_files)} and no shapefile (.shp) or FileGDB (.gdb), which are"
            f" what a zip is read for: import {which} itself, unzipped"
        )
    raise LayerError(
        f"{label} holds no shapefile (.shp) or FileGDB (.gdb): zip the files of the layer to import"
    )


def is_resource_fork(name: str) -> bool:
    """Whether a zip member is one of the __MACOSX/._name resource forks macOS archivers add beside the files
    zipped: they look like shapefiles (._路灯.shp) but are no part of any layer."""
    return name.startswith("__MACOSX/") or "/._" in f"/{name}"


def _member_label(member: zipfile.ZipInfo) -> str:
    """A member's name as its archiver wrote it, for messages. zipfile reads a name not flagged UTF-8 as
    CP437, where Windows' Explorer writes GBK and Linux's zip UTF-8 (路灯.shp would read ┬╖╡╞.shp); GDAL
    reads it as zipfile does, so the name zipfile gives stays the one to open."""
    if member.flag_bits & 0x800:
        return member.filename
    raw = member.filename.encode("cp437")
    for encoding in ("utf-8", "gb18030"):
        with contextlib.suppress(UnicodeDecodeError):
            return raw.decode(encoding)
    return member.filename


# ------------------------------------------------------------------------------------------- archives


def check_archive(path: str | Path, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS) -> None:
    """Refuse a zip archive that is unsafe to read or unpack; return quietly for a safe one.

    The central directory is checked first (member count, names, symlinks, nested archives, encryption,
    compression method, declared sizes and ratios), then every member is inflated once without keeping
    anything, counting the bytes it really gives: GDAL reads a member's whole deflate stream whatever
    size the archive declares, so a declared size proves nothing until it is counted.

    Parameters
    ----------
    path : str or Path
        A ``.zip`` (or ``.kmz``) file.
    limits : ArchiveLimits, optional
        Most members, most unpacked bytes, largest ratio.

    Raises
    ------
    LayerError
        Naming the archive, the member and what is wrong with it.
    """
    archive = Path(path)
    label = str(archive)
    try:
        # Counted from the end record first: zipfile keeps an object per member, so a million of them
        # would cost hundreds of MB before any check could run.
        listed = _listed_members(archive)
        if listed is not None and listed > limits.max_members:
            raise LayerError(
                f"{label} holds {listed:,} files, more than the {limits.max_members:,} allowed: zip only "
                "the files of the layer to import"
            )
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check_members(label, members, limits)
            with archive.open("rb") as raw:
                inflated = 0
                for member in members:
                    inflated += _inflated_size(
                        raw, member, label, already=inflated, max_bytes=limits.max_bytes
                    )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise LayerError(
            f"{label} is not a readable .zip ({exc}): it may be truncated; copy it again"
        ) from exc


def _listed_members(archive: Path) -> int | None:
    """The member count an archive's end record gives (APPNOTE 4.3.16, 4.3.14), or None if not found."""
    with archive.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - _EOCD_SEARCH_BYTES))
        tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 12 > len(tail):
        return None
    (count,) = struct.unpack_from("<H", tail, at + 10)
    if count != 0xFFFF:
        return int(count)
    at64 = tail.rfind(b"PK\x06\x06", 0, at)
    if at64 < 0 or at64 + 40 > len(tail):
        return None
    (count64,) = struct.unpack_from("<Q", tail, at64 + 32)
    return int(count64)


def _unsafe_name(member: zipfile.ZipInfo) -> str | None:
    """Why a member's name or kind could reach outside the archive, or None."""
    name = member.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in parts:
        return "a path that climbs out of the archive (..)"
    if "\0" in name:
        return "a name with a NUL character"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "a symbolic link"
    return None


def _check_members(label: str, members: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    if len(members) > limits.max_members:
        raise LayerError(
            f"{label} holds {len(members):,} files, more than the {limits.max_members:,} allowed: zip only "
            "the files of the layer to import"
        )
    declared = 0
    for member in members:
        name, shown = member.filename, _member_label(member)
        why = _unsafe_name(member)
        if why is not None:
            raise LayerError(f"{label}: member {shown!r} is {why}; refused, nothing was unpacked")
        if name.lower().endswith(_ARCHIVE_SUFFIXES):
            raise LayerError(
                f"{label}: member {shown!r} is an archive inside the archive; unpack it and zip the layer's "
                "files themselves"
            )
        if member.flag_bits & 0x1:
            raise LayerError(f"{label}: member {shown!r} is encrypted; zip the layer without a password")
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise LayerError(
                f"{label}: member {shown!r} uses compression method {member.compress_type}; zip it with the "
                "usual Deflate (or no compression)"
            )
        declared += member.file_size
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size >= _RATIO_FLOOR_BYTES and ratio > limits.max_ratio:
            raise LayerError(
                f"{label}: member {shown!r} would unpack {ratio:,.0f} times larger ({member.file_size:,} "
                f"bytes from {member.compress_size:,}), more than the {limits.max_ratio:,.0f} allowed: this "
                "is not a survey file (a zip bomb?)"
            )
    if declared > limits.max_bytes:
        raise LayerError(
            f"{label} would unpack to {declared:,} bytes, more than the {limits.max_bytes:,} allowed: "
            "split the layer, or zip only the files to import"
        )


def _inflated_size(
    raw: IO[bytes], member: zipfile.ZipInfo, label: str, *, already: int, max_bytes: int
) -> int:
    """Bytes a member really unpacks to (inflating its stored bytes, keeping nothing).

    Stops as soon as the member gives more than it declares or the archive more than ``max_bytes`` in all
    (``already`` unpacked by the members before it).
    """
    raw.seek(member.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size:
        raise LayerError(
            f"{label}: member {_member_label(member)!r} lies past the end of the file; copy it again"
        )
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    if signature != _LOCAL_SIGNATURE:
        raise LayerError(f"{label}: member {_member_label(member)!r} has no local header; the zip is corrupt")
    raw.seek(member.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    inflate = zlib.decompressobj(-zlib.MAX_WBITS) if member.compress_type == zipfile.ZIP_DEFLATED else None
    budget = max_bytes - already
    limit = min(member.file_size, budget)
    left = member.compress_size
    size = 0
    while left > 0:
        block = raw.read(min(left, _SCAN_BYTES))
        if not block:
            break
        left -= len(block)
        if inflate is None:
            size += len(block)
        else:
            pending = block
            while pending:
                # At most a little past the limit is produced at a time, so a bomb never fills memory.
                size += len(inflate.decompress(pending, _SCAN_BYTES))
                pending = inflate.unconsumed_tail
                if size > limit:
                    break
        if size > limit:
            break
    if inflate is not None and size <= limit:
        size += len(inflate.flush())  # what zlib still holds: less than its 32 KiB window
    if size > budget:
        raise LayerError(
            f"{label} unpacks to more than the {max_bytes:,} bytes allowed (member"
            f" {_member_label(member)!r} gives over {size:,}): this is not a survey file (a zip bomb?)"
        )
    if size > member.file_size:
        raise LayerError(
            f"{label}: member {_member_label(member)!r} declares {member.file_size:,} bytes but unpacks to"
            " more; the archive lies about its sizes (a zip bomb?)"
        )
    return size


@contextlib.contextmanager
def _open_part(source: _Source, ext: str) -> Iterator[IO[bytes] | None]:
    """Open one part of a shapefile (``.dbf``, ``.cpg``) on disk or inside its zip; None if absent."""
    assert source.shp is not None
    if source.archive is None:
        part = _sibling(Path(source.shp), ext)
        if part is None:
            yield None
            return
        with part.open("rb") as fh:
            yield fh
        return
    with zipfile.ZipFile(source.archive) as zf:
        wanted = (source.shp[:-4] + ext).lower()
        member = next((n for n in zf.namelist() if n.lower() == wanted), None)
        if member is None:
            yield None
            return
        with zf.open(member) as fh:
            yield fh


# ------------------------------------------------------------------------------------------- encodings


def _display_encoding(name: str) -> str:
    """``"gbk"`` -> ``"GBK"``, ``"utf8"`` -> ``"UTF-8"``: Python's canonical codec name in capitals."""
    return codecs.lookup(name).name.upper()


def _python_codec(encoding: str, *, csv: bool = False) -> str:
    codec = codecs.lookup(encoding).name
    # utf-8-sig also reads files without a BOM, and Excel writes "UTF-8 CSV" with one.
    return "utf-8-sig" if csv and codec == "utf-8" else codec


def _explicit_encoding(encoding: str, label: str) -> str:
    try:
        return _display_encoding(encoding)
    except LookupError as exc:
        raise LayerError(
            f"{label}: unknown encoding {encoding!r}: use e.g. UTF-8 or GB18030, or leave it out to "
            "detect it",
            field="encoding",
        ) from exc


def _cpg_encoding(text: str) -> str | None:
    """The encoding a .cpg names, or None if it names none we know.

    A .cpg holds a name (``UTF-8``, ``GBK``) or a Windows code page (``936``, ``65001``). GBK, GB2312 and
    code page 936 are read as GB18030, their superset: Chinese desktop GIS labels files GBK that hold
    characters only GB18030 has.
    """
    name = text.strip().upper().removeprefix("ANSI").strip()
    if name.isdigit():
        name = {"65001": "UTF-8", "936": "GB18030", "20936": "GB18030", "54936": "GB18030"}.get(
            name, f"CP{name}"
        )
    if name in {"GBK", "GB2312", "CP936", "EUC-CN", "GB18030"}:
        return "GB18030"
    try:
        return _display_encoding(name)
    except LookupError:
        return None


def _decode_cut(raw: str, encoding: str) -> str:
    """Decode .dbf text read byte for byte (as ISO-8859-1) in its real encoding.

    A character cut in half at the end is dropped: .dbf fields have a fixed width in bytes, and GDAL cuts
    long UTF-8 field names at 10 bytes (主管部门 is 12), which pyogrio cannot decode. Anything else that
    does not decode still raises UnicodeDecodeError.
    """
    return codecs.getincrementaldecoder(encoding)().decode(raw.encode("latin-1"), final=False)


def _blank_cut_utf8_tails(values: npt.NDArray[np.uint8]) -> None:
    """Blank, in place, a UTF-8 character cut in half at the end of each fixed-width value (a row)."""
    width = values.shape[1]
    continuation = (values & 0xC0) == 0x80
    # A cut character leaves its lead byte and up to two continuation bytes at the end of the field.
    for kept in (1, 2, 3):
        if width < kept:
            break
        lead = values[:, width - kept]
        needs = np.select([lead >= 0xF0, lead >= 0xE0, lead >= 0xC0], [4, 3, 2], 0)
        cut = (needs > kept) & continuation[:, width - kept + 1 :].all(axis=1)
        values[cut, width - kept :] = 0x20


def _dbf_text_is_utf8(fh: IO[bytes]) -> bool:
    """True if the field names and text fields of a .dbf decode as strict UTF-8.

    Only names and character fields are decoded: the header's binary counts and the numeric fields could
    hold any byte and would make a UTF-8 file look like GBK. A character cut at the end of a field (see
    :func:`_decode_cut`) does not count against UTF-8.
    """
    head = fh.read(32)
    if len(head) < 32:
        return True
    records = int.from_bytes(head[4:8], "little")
    header_len = int.from_bytes(head[8:10], "little")
    record_len = int.from_bytes(head[10:12], "little")
    descriptors = fh.read(max(header_len - 32, 0))
    names: list[bytes] = []
    text_columns: list[npt.NDArray[np.intp]] = []
    offset = 1  # each record starts with its deletion flag
    for start in range(0, len(descriptors) - 31, 32):
        desc = descriptors[start : start + 32]
        if desc[0] == 0x0D:
            break
        kind = chr(desc[11])
        # shapelib (and so GDAL) reads the decimals byte as the high byte of a long character field.
        width = desc[16] + (desc[17] << 8 if kind == "C" else 0)
        names.append(desc[:11].split(b"\0", 1)[0])
        if kind == "C":
            text_columns.append(np.arange(offset, offset + width, dtype=np.intp))
        offset += width
    try:
        for name in names:
            codecs.getincrementaldecoder("utf-8")().decode(name, final=False)
    except UnicodeDecodeError:
        return False
    if not text_columns or record_len < offset:
        return True
    per_block = max(1, _SCAN_BYTES // record_len)
    remaining = records
    while remaining > 0:
        block = fh.read(min(per_block, remaining) * record_len)
        count = len(block) // record_len
        if count == 0:
            break
        table = np.frombuffer(block, dtype=np.uint8, count=count * record_len).reshape(count, record_len)
        fields = [table[:, columns] for columns in text_columns]  # fancy indexing copies
        for values in fields:
            _blank_cut_utf8_tails(values)
        try:
            np.hstack(fields).tobytes().decode("utf-8")
        except UnicodeDecodeError:
            return False
        remaining -= count
    return True


def _text_is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    try:
        with path.open("rb") as fh:
            while block := fh.read(_SCAN_BYTES):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _guessed_warning(label: str, encoding: str, what: str) -> str:
    return (
        f"{label}: {what}, so the text encoding was detected as {encoding}; if names look garbled, "
        "give the encoding (e.g. --encoding GBK)"
    )


_CJK_RE: Final = re.compile("[\u4e00-\u9fff]")


def _dbf_field_names(fh: IO[bytes]) -> list[bytes]:
    """The raw bytes of a .dbf's field names (its header's descriptors)."""
    head = fh.read(32)
    if len(head) < 32:
        return []
    descriptors = fh.read(max(int.from_bytes(head[8:10], "little") - 32, 0))
    names = []
    for start in range(0, len(descriptors) - 31, 32):
        if descriptors[start] == 0x0D:
            break
        names.append(descriptors[start : start + 11].split(b"\0", 1)[0])
    return names


def _check_cpg(source: _Source, declared: str, encoding: str) -> None:
    """Refuse a .cpg that names an encoding the .dbf's text is not in, saying which it is: read as the
    .cpg says, GBK text is either refused row by row or turns into Latin letters without a word."""
    if encoding == "GB18030":
        return
    with _open_part(source, ".dbf") as fh:
        utf8 = True if fh is None else _dbf_text_is_utf8(fh)
    if utf8:
        return
    with _open_part(source, ".dbf") as fh:
        names = [] if fh is None else _dbf_field_names(fh)
    chinese = [n.decode("gb18030", errors="replace") for n in names if not n.isascii()]
    if any(_CJK_RE.search(name) for name in chinese):
        said = f"its field names read as Chinese in GBK ({', '.join(chinese[:3])})"
        fix = "give --encoding GB18030"
    elif encoding == "UTF-8":
        said = "its text is not UTF-8"
        fix = "give the encoding it is in with --encoding (GB18030 for Chinese, CP1252 for Western European)"
    else:
        return  # a single-byte code page reads any byte: nothing here says it is wrong
    raise LayerError(
        f"{source.label}: its .cpg says {declared} ({encoding}), but {said}: {fix}, or correct the .cpg",
        field="encoding",
    )


def _shapefile_encoding(source: _Source, explicit: str | None) -> tuple[str, list[str]]:
    if explicit is not None:
        return _explicit_encoding(explicit, source.label), []
    notes: list[str] = []
    with _open_part(source, ".cpg") as fh:
        declared = None if fh is None else fh.read(256).decode("ascii", errors="replace")
    if declared is not None:
        found = _cpg_encoding(declared)
        if found is not None:
            _check_cpg(source, declared.strip(), found)
            return found, notes
        notes.append(
            f"{source.label}: ignored its .cpg file, which names no known encoding ({declared.strip()!r})"
        )
    with _open_part(source, ".dbf") as fh:
        utf8 = True if fh is None else _dbf_text_is_utf8(fh)
    encoding = "UTF-8" if utf8 else "GB18030"
    notes.append(_guessed_warning(source.label, encoding, "the shapefile has no .cpg file"))
    return encoding, notes


# ------------------------------------------------------------------------------------------------- CRS


def _resolve_override(crs: str | None) -> ResolvedCRS | None:
    if crs is None:
        return None
    try:
        return resolve_crs(crs)
    except CoordinateError as exc:
        raise LayerError(f"--crs {crs}: {exc}", field="crs") from exc


def _file_crs(raw: str | None, where: str) -> ResolvedCRS | None:
    """The file's CRS as gis.crs knows it; None if the file has none."""
    if not raw:
        return None
    try:
        crs = pyproj.CRS.from_user_input(raw)
    except pyproj.exceptions.CRSError as exc:
        raise LayerError(
            f"{where}: its coordinate reference system cannot be read ({exc}): say which it is with --crs "
            f"{_CRS_EXAMPLES}"
        ) from exc
    if crs.is_compound and crs.sub_crs_list:
        crs = crs.sub_crs_list[0]  # heights do not matter here; the horizontal part does
    # .prj files written by ArcGIS carry ESRI names that PROJ matches to an EPSG code only loosely.
    code = crs.to_epsg(min_confidence=70)
    if code is None:
        code = _code_of_same_definition(crs)
    if code is None:
        raise LayerError(
            f"{where}: its coordinate reference system {crs.name!r} has no EPSG code: reproject the file "
            f"(e.g. to EPSG:4490 or EPSG:4548 in QGIS) or say which it is with --crs {_CRS_EXAMPLES}"
        )
    try:
        return resolve_crs(code)
    except CoordinateError as exc:
        raise LayerError(f"{where}: {exc}") from exc


def _code_of_same_definition(crs: pyproj.CRS) -> int | None:
    """The EPSG code of a CRS defined as the file's CRS is, under a name of its own.

    Survey software writes a Gauss-Krüger zone as its own PROJCS ("Gauss_Kruger_117", "Zone39") with
    CGCS2000's ellipsoid and the zone's parameters. PROJ then matches EPSG codes at a lower confidence, and
    sometimes two at once: a transverse Mercator at 117°E with no prefix is EPSG:4548 (3-degree zone 39) and
    EPSG:4509 (6-degree zone 20) alike. A candidate is taken only if it places points across its area of
    use where the file's definition does (to a millimetre); of several that all do, which are then one
    projection under two codes, the 3-degree zone's, which city surveys use.
    """
    candidates = [
        pyproj.CRS.from_epsg(int(match.code))
        for match in crs.list_authority(min_confidence=50)
        if match.auth_name == "EPSG"
    ][:4]
    same = [candidate for candidate in candidates if _places_points_alike(crs, candidate)]
    if not same:
        return None
    same.sort(key=lambda c: ("3-degree" not in c.name, c.to_epsg() or 0))
    return same[0].to_epsg()


def _places_points_alike(crs: pyproj.CRS, candidate: pyproj.CRS) -> bool:
    if candidate.is_projected != crs.is_projected or candidate.area_of_use is None:
        return False
    west, south, east, north = candidate.area_of_use.bounds
    lon, lat = np.meshgrid(np.linspace(west, east, 3), np.linspace(south, north, 3))
    geodetic = candidate.geodetic_crs or pyproj.CRS.from_epsg(4490)
    theirs = pyproj.Transformer.from_crs(geodetic, candidate, always_xy=True).transform(lon, lat)
    ours = pyproj.Transformer.from_crs(geodetic, crs, always_xy=True).transform(lon, lat)
    tolerance = 1e-3 if crs.is_projected else 1e-8  # a millimetre, in metres or in degrees
    return bool(np.all(np.abs(np.subtract(theirs, ours)) < tolerance))


def _decide_crs(
    fmt: str, raw: str | None, override: ResolvedCRS | None, where: str, label: str
) -> tuple[ResolvedCRS, CrsSource, list[str]]:
    by_spec = fmt in _WGS84_BY_SPEC
    try:
        declared = _file_crs(raw, where)
    except LayerError as exc:
        if override is None:
            raise
        return override, "override", [f"{exc}; using --crs {override.name}"]
    # GDAL reports WGS 84 for a GeoJSON or KML that declares nothing, as RFC 7946 says.
    if declared is None and by_spec:
        declared = resolve_crs("wgs84")
    origin: CrsSource = "format" if by_spec and declared is not None and declared.name == "wgs84" else "file"
    if override is not None:
        notes = []
        if declared is not None and declared.name != override.name:
            says = f"says {declared.name}" + (f" (WGS 84 by the {fmt} spec)" if origin == "format" else "")
            notes.append(f"{where}: the file {says}, but --crs {override.name} was given and is used")
        return override, "override", notes
    if declared is None:
        raise LayerError(
            f"{label} has no coordinate reference system: say which with --crs {_CRS_EXAMPLES}", field="crs"
        )
    return declared, origin, []


# A GeoJSON's old-style ``crs`` member is looked for in this many bytes at its start, before "features".
_GEOJSON_HEAD_BYTES: Final = 64 << 10
_GEOJSON_CRS_NAME = re.compile(
    rb'"crs"\s*:\s*\{\s*"type"\s*:\s*"name"\s*,\s*"properties"\s*:\s*\{\s*"name"\s*:\s*"([^"]{1,64})"'
)
_GEOJSON_FEATURES = re.compile(rb'"features"\s*:')
# The same member written after "features" (a tool that writes members in another order): the last thing
# in the file but for scalar members, so a ``crs`` inside the last feature's geometry is not taken for it.
_GEOJSON_CRS_NAME_LAST = re.compile(
    _GEOJSON_CRS_NAME.pattern
    + rb'\s*\}\s*\}\s*(?:,\s*"[^"]*"\s*:\s*(?:"[^"]*"|[-+.0-9eE]+|true|false|null)\s*)*\}\s*$'
)


def _geojson_named_datum(source: _Source) -> ResolvedCRS | None:
    """The GCJ-02 or BD-09 a GeoJSON's ``crs`` member names (as gridsvc's export writes it; GDAL knows
    only EPSG names there and reads such a file as WGS 84, 500 m away); None for any other file."""
    path = Path(source.gdal_path)
    if not path.is_file():  # inside an archive: GDAL's word stands
        return None
    with path.open("rb") as fh:
        head = fh.read(_GEOJSON_HEAD_BYTES)
        fh.seek(max(0, path.stat().st_size - _GEOJSON_HEAD_BYTES))
        tail = fh.read()
    # Only what comes before the features is the file's: a "crs" after them is looked for at the end.
    head = _GEOJSON_FEATURES.split(head, 1)[0]
    found = _GEOJSON_CRS_NAME.search(head) or _GEOJSON_CRS_NAME_LAST.search(tail)
    if found is None:
        return None
    try:
        named = resolve_crs(found.group(1).decode("utf-8", "replace"))
    except CoordinateError:
        return None
    return named if named.kind != "epsg" else None


def _named_datum(
    named: ResolvedCRS, override: ResolvedCRS | None, where: str
) -> tuple[ResolvedCRS, CrsSource, list[str]]:
    if override is None:
        return named, "file", []
    notes = (
        []
        if override.name == named.name
        else [f"{where}: the file says {named.name}, but --crs {override.name} was given and is used"]
    )
    return override, "override", notes


# -------------------------------------------------------------------------------------- GDAL formats


def _gdal_error(label: str, exc: BaseException, doing: str = "cannot be read") -> LayerError:
    return LayerError(
        f"{label} {doing}: it may be truncated or corrupt; copy it again or re-export it (GDAL: {exc})"
    )


def _gdal_layer_kinds(source: _Source) -> dict[str, str | None]:
    """Each layer's name and geometry type (None for a table without geometry)."""
    try:
        found = pyogrio.list_layers(source.gdal_path)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, RuntimeError, OSError) as exc:
        raise _gdal_error(source.label, exc) from exc
    return {str(name): None if kind is None else str(kind) for name, kind in found}


def _gdal_layers(source: _Source) -> tuple[str, ...]:
    return tuple(_gdal_layer_kinds(source))


def _pick_layer(source: _Source, kinds: dict[str, str | None], layer: str | None) -> str | None:
    """The layer to read: the one named, else the only one, else the only one with geometry (QGIS saves
    its styles in a GeoPackage as the table ``layer_styles``, which is no layer to import)."""
    layers = tuple(kinds)
    listed = ", ".join(layers) if layers else "none"
    spatial = [name for name, kind in kinds.items() if kind is not None]
    if layer is not None:
        if layer not in layers:
            raise LayerError(f"{source.label} has no layer {layer!r}: its layers are {listed}", field="layer")
        if kinds[layer] is None and spatial:
            raise LayerError(
                f"{source.label}: {layer!r} is a table without geometry; the layers with geometry are "
                f"{', '.join(spatial)}",
                field="layer",
            )
        return layer
    if not layers:
        raise LayerError(f"{source.label} holds no layers: export the data to import into it first")
    if len(layers) > 1 and len(spatial) == 1:
        return spatial[0]
    if len(layers) > 1:
        raise LayerError(
            f"{source.label} holds {len(layers)} layers ({listed}): say which to import with --layer",
            field="layer",
        )
    return layers[0]


def _where(label: str, layer: str | None) -> str:
    return label if layer is None else f"{label} (layer {layer})"


def _gdal_read(
    source: _Source,
    layer: str | None,
    encoding: str | None,
    skip: int,
    limit: int,
    where: str,
    columns: list[str] | None = None,
) -> Any:
    def read(text_encoding: str | None) -> Any:
        return pyogrio.read_dataframe(
            source.gdal_path,
            layer=layer,
            encoding=text_encoding,
            columns=columns,
            skip_features=skip,
            max_features=limit,
            # Unclosed rings are closed; other unreadable geometries become None, keeping their row.
            on_invalid="fix",
            # Dates come as text, like every other attribute the validator parses.
            datetime_as_string=True,
            fid_as_index=source.format in _FID_FORMATS,
        )

    try:
        try:
            return read(encoding)
        except UnicodeDecodeError:
            if encoding is None:
                raise
        # Read the bytes as they are (ISO-8859-1 maps each byte to one character) and decode them here,
        # where a character cut at the end of a field can be dropped instead of failing the file.
        frame = read(_BYTES)
        frame.columns = [_decode_cut(str(c), encoding) if c != "geometry" else c for c in frame.columns]
        text = [c for c in frame.columns if c != "geometry" and pd.api.types.is_string_dtype(frame[c].dtype)]
        for column in text:
            values = frame[column]
            try:
                decoded = values.str.encode(_BYTES).str.decode(encoding)
            except UnicodeDecodeError:
                # Only a value cut at the field width gets here; decode that column one value at a time.
                decoded = values.map(lambda v: v if pd.isna(v) else _decode_cut(v, encoding))
            frame[column] = decoded.astype(object).where(values.notna(), None)
        return frame
    except UnicodeDecodeError as exc:
        raise LayerError(
            f"{where}: the attribute text {_not_in_encoding(str(encoding), exc)}",
            field="encoding",
        ) from exc
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, RuntimeError, OSError) as exc:
        raise _gdal_error(where, exc, f"failed reading features {skip + 1} to {skip + limit}") from exc


def _split_frame(frame: Any, first_row: int, by_fid: bool) -> tuple[pd.DataFrame, GeomArray, RowArray]:
    """A chunk's attributes, geometries and source rows: its fids when ``by_fid``, else its positions
    from ``first_row`` on."""
    count = len(frame)
    if by_fid:
        rows = frame.index.to_numpy(dtype=np.int64)
    else:
        rows = np.arange(first_row, first_row + count, dtype=np.int64)
    if isinstance(frame, gpd.GeoDataFrame):
        geoms = np.asarray(frame.geometry.to_numpy(), dtype=object)
        attrs = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    else:  # a table without geometry
        geoms = np.full(count, None, dtype=object)
        attrs = pd.DataFrame(frame)
    return attrs.reset_index(drop=True), geoms, rows


def _layer_args(info: LayerInfo) -> tuple[str | None, str | None]:
    """The layer and encoding for pyogrio: only multi-layer formats have names, only shapefiles encodings."""
    layer = info.layer if info.format in _MULTI_LAYER else None
    encoding = info.encoding if info.format == "ESRI Shapefile" else None
    return layer, encoding


def _inspect_gdal(
    given: Path, source: _Source, layer: str | None, override: ResolvedCRS | None, encoding: str | None
) -> tuple[LayerInfo, Iterator[Frame]]:
    kinds = _gdal_layer_kinds(source)
    layers = tuple(kinds)
    chosen = _pick_layer(source, kinds, layer)
    notes: list[str] = []
    if source.format == "ESRI Shapefile":
        text_encoding: str | None
        text_encoding, found = _shapefile_encoding(source, encoding)
        notes.extend(found)
    else:
        text_encoding = "UTF-8" if source.format in _UTF8_BY_SPEC else None
        if encoding is not None:
            notes.append(
                f"{source.label}: ignored the encoding {encoding!r}: {source.format} text is always UTF-8"
            )
    shown_layer = chosen if source.format in _MULTI_LAYER else None
    where = _where(source.label, shown_layer)

    def read_info(name_encoding: str | None) -> Any:
        return pyogrio.read_info(
            source.gdal_path, layer=chosen, encoding=name_encoding, force_feature_count=True
        )

    try:
        if source.format != "ESRI Shapefile":
            meta = read_info(None)
        else:
            assert text_encoding is not None
            try:
                meta = read_info(text_encoding)
            except UnicodeDecodeError:
                # Field names cut mid-character (see _decode_cut): decode them here instead.
                meta = read_info(_BYTES)
                meta["fields"] = [_decode_cut(str(name), text_encoding) for name in meta["fields"]]
    except UnicodeDecodeError as exc:
        raise LayerError(
            f"{where}: the field names {_not_in_encoding(str(text_encoding), exc, plural=True)}",
            field="encoding",
        ) from exc
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, RuntimeError, OSError) as exc:
        raise _gdal_error(where, exc) from exc
    driver = str(meta["driver"])
    if _DRIVER_FORMATS.get(driver) != source.format:
        raise LayerError(
            f"{source.label} is a {driver} file, which gridsvc does not read: export it as {_SUPPORTED}"
        )
    named = _geojson_named_datum(source) if source.format == "GeoJSON" else None
    if named is not None:
        crs, origin, crs_notes = _named_datum(named, override, where)
    else:
        crs, origin, crs_notes = _decide_crs(source.format, meta["crs"], override, where, source.label)
    notes.extend(crs_notes)
    geometry_type = meta["geometry_type"]
    fields = tuple(str(name) for name in meta["fields"])
    integers = {name for name, kind in zip(fields, meta["ogr_types"], strict=True) if kind in _OGR_INTEGERS}
    booleans = {name for name, kind in zip(fields, meta["ogr_subtypes"], strict=True) if kind == _OGR_BOOLEAN}
    if source.format == "KML":
        kml_times = _kml_partial_times(source, chosen)
        fields = _kml_data_fields(source, chosen, fields, where, kml_times)
        if kml_times.unmatched:
            notes.append(
                f"{where}: the file gives {kml_times.unmatched} time(s) of a year or a month alone (such as"
                " <when>2023</when>) that gridsvc could not match to this layer's features, so they are read"
                " as GDAL reads them: 2023-05 as 2023-05-01, 2023 as empty. Write them as whole dates"
                " (2023-05-01), or in a <Data> field, to keep them as written"
            )
    coded = {name: found for name, found in _coded_value_domains(source, chosen).items() if name in fields}
    for name, (domain, codes) in coded.items():
        shown = ", ".join(f"{code} {label}" for code, label in list(codes.items())[:_CODES_SHOWN])
        more = f" and {len(codes) - _CODES_SHOWN} more" if len(codes) > _CODES_SHOWN else ""
        notes.append(
            f"{where}: field {name} holds the codes of its coded-value domain {domain} ({shown}{more});"
            " they are read as their names, as ArcGIS and QGIS show them"
        )
    info = LayerInfo(
        path=given,
        format=source.format,
        layer=shown_layer,
        layers=layers,
        crs=crs.name,
        crs_from=origin,
        encoding=text_encoding,
        feature_count=max(int(meta["features"]), 0),
        fields=fields,
        geometry_type=None if geometry_type is None else str(geometry_type),
        warnings=tuple(notes),
        integer_fields=tuple(name for name in fields if name in integers - booleans),
        boolean_fields=tuple(name for name in fields if name in booleans),
        coded_values=tuple((name, tuple(codes.items())) for name, (_, codes) in coded.items()),
    )
    return info, _gdal_frames(source, info, _SAMPLE_ROWS, limit_chunks=1)


def _kml_data_fields(
    source: _Source, layer: str | None, fields: tuple[str, ...], where: str, times: _KmlTimes
) -> tuple[str, ...]:
    """A KML layer's fields without the placemark elements no placemark has and without the display
    fields (see _KML_ELEMENT_FIELDS)."""
    elements = [f for f in fields if f in _KML_ELEMENT_FIELDS]
    unused: set[str] = set()
    if elements:
        try:
            values = pyogrio.read_dataframe(
                source.gdal_path, layer=layer, columns=elements, read_geometry=False, datetime_as_string=True
            )
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, RuntimeError, OSError) as exc:
            raise _gdal_error(where, exc) from exc
        # A time GDAL could not read (<when>2023</when>) is still a time the placemark has.
        partial = {f for placemark in times.matched.values() for f in placemark}
        unused = {f for f in elements if values[f].isna().all() and f not in partial}
    return tuple(f for f in fields if f not in unused and f not in _KML_DISPLAY_FIELDS)


def _gdal_frames(
    source: _Source, info: LayerInfo, chunk_rows: int, *, limit_chunks: int | None = None
) -> Frames:
    layer, encoding = _layer_args(info)
    where = _where(source.label, info.layer)
    # A KML layer is read without the fields _kml_data_fields left out; other formats whole (a
    # Shapefile's field names may be cut mid-character, so its decoded names cannot be asked for).
    columns = list(info.fields) if info.format == "KML" else None
    partial_times = _kml_partial_times(source, layer).matched if info.format == "KML" else {}
    skip = 0
    chunks = 0
    # skip_features/max_features keep one chunk in memory; features come in the order QGIS lists them,
    # so the 1-based position is the row number staff see, except where the format has a fid column
    # (_FID_FORMATS): QGIS shows that, and rows deleted in QGIS leave gaps in it.
    while limit_chunks is None or chunks < limit_chunks:
        frame = _gdal_read(source, layer, encoding, skip, chunk_rows, where, columns)
        if len(frame) == 0:
            return
        _exact_integers(frame, info, source, skip, where)
        _coded_values_named(frame, info)
        if info.format == "KML":
            _kml_dates(frame, partial_times, skip)
        yield _split_frame(frame, skip + 1, info.format in _FID_FORMATS)
        chunks += 1
        if len(frame) < chunk_rows:
            return
        skip += len(frame)


# A placemark's time elements as GDAL names its fields, which it reads as datetimes.
_KML_TIME_FIELDS: Final = {"when": "timestamp", "begin": "begin", "end": "end"}
# A KML time of a year or a month alone (xsd:gYear, xsd:gYearMonth): GDAL reads 2023-05 as 2023-05-01
# and loses 2023.
_PARTIAL_DATE_RE: Final = re.compile(r"[0-9]{4}(?:-[0-9]{2})?")
_KML_PARTIAL_TIME_RE: Final = re.compile(rb"<(?:\w+:)?(?:when|begin|end)\s*>\s*[0-9]{4}(?:-[0-9]{2})?\s*<")


@dataclass
class _KmlContainer:
    """A <Document> or <Folder> (or the file's root), with its own placemarks in the file's order: the
    <name> of each and the times of a year or a month alone, by position."""

    kind: str
    names: list[str | None]
    partial_times: dict[int, dict[str, str]]
    children: list[_KmlContainer]

    def layers(self) -> list[_KmlContainer]:
        """The containers GDAL's LIBKML driver makes layers of, in its order: every folder, and a document
        or the root only when placemarks of their own are in it; a container before those it holds."""
        own = [self] if self.kind == "Folder" or self.names else []
        return own + [layer for child in self.children for layer in child.layers()]


@dataclass(frozen=True)
class _KmlTimes:
    """The times of a year or a month alone of one KML layer's placemarks: ``matched`` by feature
    position (``{position: {GDAL field: text}}``), and how many there were that could not be matched to
    GDAL's features (``unmatched``)."""

    matched: dict[int, dict[str, str]]
    unmatched: int = 0


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _kml_document(source: _Source) -> bytes | None:
    """The KML text GDAL reads: the .kml file, or in a .kmz its doc.kml (else its first .kml, as libkml
    takes it); None when there is none to read."""
    path = Path(source.gdal_path)
    suffix = path.suffix.lower()
    if suffix == ".kml" and path.is_file():
        return path.read_bytes()
    if suffix == ".kmz" and path.is_file():
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".kml")]
            chosen = "doc.kml" if "doc.kml" in names else (names[0] if names else None)
            return None if chosen is None else archive.read(chosen)
    return None


def _kml_containers(data: bytes) -> _KmlContainer:
    """The file's containers and their placemarks (see _KmlContainer)."""
    root = _KmlContainer("kml", [], {}, [])
    stack = [root]
    for event, element in ElementTree.iterparse(io.BytesIO(data), events=("start", "end")):
        tag = _local(element.tag)
        if tag in ("Document", "Folder"):
            if event == "start":
                container = _KmlContainer(tag, [], {}, [])
                stack[-1].children.append(container)
                stack.append(container)
            else:
                stack.pop()
        elif tag == "Placemark" and event == "end":
            owner = stack[-1]
            position = len(owner.names)
            name = next((child.text for child in element if _local(child.tag) == "name"), None)
            owner.names.append(None if name is None else name.strip())
            for child in element:
                if _local(child.tag) not in ("TimeStamp", "TimeSpan"):
                    continue
                for time in child:
                    field = _KML_TIME_FIELDS.get(_local(time.tag))
                    text = (time.text or "").strip()
                    if field is not None and _PARTIAL_DATE_RE.fullmatch(text):
                        owner.partial_times.setdefault(position, {})[field] = text
            element.clear()
    return root


_KML_PLACEMARK_RE: Final = re.compile(rb"<(?:\w+:)?Placemark\b.*?</(?:\w+:)?Placemark\s*>", re.S)
_KML_NAME_RE: Final = re.compile(rb"<(?:\w+:)?name\s*>\s*([^<]*?)\s*</")
_KML_TIME_RE: Final = re.compile(rb"<(?:\w+:)?(when|begin|end)\s*>\s*([^<]*?)\s*</")


def _kml_scanned_placemarks(data: bytes) -> _KmlContainer:
    """Every placemark of the file, in order, found by a scan of its bytes rather than parsed."""
    found = _KmlContainer("kml", [], {}, [])
    for position, match in enumerate(_KML_PLACEMARK_RE.finditer(data)):
        name = _KML_NAME_RE.search(match.group(0))
        found.names.append(None if name is None else html.unescape(name.group(1).decode("utf-8", "replace")))
        for element, value in _KML_TIME_RE.findall(match.group(0)):
            text = value.decode("utf-8", errors="replace")
            if _PARTIAL_DATE_RE.fullmatch(text):
                found.partial_times.setdefault(position, {})[_KML_TIME_FIELDS[element.decode()]] = text
    return found


def _kml_partial_times(source: _Source, layer: str | None) -> _KmlTimes:
    """The times of a year or a month alone that one KML layer's placemarks give, as written (GDAL reads
    ``2023-05`` as ``2023-05-01`` and loses ``2023``).

    GDAL's features of a layer are the placemarks of one container in the file's order; the container is
    found by the order of the layers (_KmlContainer.layers) and taken only when its placemarks are as
    many as GDAL's features and have the same names, else the times are counted as ``unmatched``.
    """
    data = _kml_document(source)
    if data is None or _KML_PARTIAL_TIME_RE.search(data) is None:
        return _KmlTimes({})
    layers = _gdal_layers(source)
    try:
        containers = _kml_containers(data).layers()
    except ElementTree.ParseError:
        # libkml reads some files an XML parser refuses (a gx: element whose namespace is not declared):
        # the placemarks of a file of one layer are still found in order.
        containers = [_kml_scanned_placemarks(data)] if len(layers) == 1 else []
    position = layers.index(layer) if layer in layers else 0 if len(layers) == 1 else None
    if len(containers) != len(layers) or position is None:
        return _KmlTimes({}, unmatched=len(_KML_PARTIAL_TIME_RE.findall(data)))
    container = containers[position]
    if not container.partial_times:
        return _KmlTimes({})
    try:
        meta = pyogrio.read_info(source.gdal_path, layer=layer)
        gdal_names: list[str | None] = [None] * int(meta["features"])
        if "Name" in meta["fields"]:
            read = pyogrio.read_dataframe(
                source.gdal_path, layer=layer, columns=["Name"], read_geometry=False
            )
            gdal_names = [None if pd.isna(v) else str(v).strip() or None for v in read["Name"]]
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, RuntimeError, OSError):
        return _KmlTimes({}, unmatched=sum(map(len, container.partial_times.values())))
    if gdal_names != [name or None for name in container.names]:
        return _KmlTimes({}, unmatched=sum(map(len, container.partial_times.values())))
    return _KmlTimes(container.partial_times)


def _kml_dates(frame: Any, partial_times: dict[int, dict[str, str]], skip: int) -> None:
    """A KML date as the date it is: GDAL reads every time element as a datetime, so
    ``<when>2023-05-01</when>`` came back as ``2023-05-01T00:00:00``, which a GeoPackage of the same
    census does not hold, ``2023-05`` as ``2023-05-01`` and ``2023`` not at all; those two are taken as
    the file writes them (``partial_times``, by placemark, ``skip`` placemarks before this chunk). A time
    of day, or midnight in a zone, is kept as written."""
    for name in _KML_TIME_FIELDS.values():
        if name in frame.columns:
            frame[name] = (
                frame[name]
                .map(lambda v: v.removesuffix("T00:00:00") if isinstance(v, str) else v, na_action="ignore")
                .astype(object)
            )
    for position in range(skip, skip + len(frame)):
        for name, text in partial_times.get(position, {}).items():
            if name in frame.columns:
                frame.iloc[position - skip, frame.columns.get_loc(name)] = text


def _exact_integers(frame: Any, info: LayerInfo, source: _Source, skip: int, where: str) -> None:
    """Give the chunk's integer fields that a null turned into floats as pandas' nullable Int64, and its
    boolean fields as pandas' nullable boolean (a lamp's 是否亮灯 true, not 1.0).

    pyogrio turns an integer column into float64 at its first null: 150 comes back as 150.0 and an
    Integer64 code such as 3701020118000123457 as 3701020118000123400 (a float64 holds 53 bits). A column
    whose floats all stay below 2**53 is exact already; one with a larger value is read again as text.
    Int64 rather than Python ints in an object column: gis.fieldmap writes an integer dtype's values as
    they are, where it takes a column of mixed Python numbers through float64 again.
    """
    for name in info.integer_fields:
        if name not in frame.columns or frame[name].dtype.kind != "f":
            continue  # no null in this chunk: still int64, exact
        numbers = frame[name].to_numpy()
        if np.nanmax(np.abs(numbers), initial=0.0) < _FLOAT_EXACT:
            exact = pd.array(numbers, dtype="Int64")  # NaN -> <NA>
        else:
            text = _integer_text(source, info, name, skip, len(frame), where)
            exact = pd.array([None if v is None else int(v) for v in text], dtype="Int64")
        frame[name] = pd.Series(exact, index=frame.index)
    for name in info.boolean_fields:
        if name in frame.columns and frame[name].dtype.kind == "f":
            numbers = frame[name].to_numpy()
            truth = pd.array(numbers != 0, dtype="boolean")
            truth[np.isnan(numbers)] = pd.NA
            frame[name] = pd.Series(truth, index=frame.index)


# A coded-value domain's codes named in the note that says its field is read by it.
_CODES_SHOWN: Final = 6
# A domain in a FileGDB's GDB_Items, and the field infos of a feature class or table naming theirs.
_CODED_DOMAIN_TAG: Final = "GPCodedValueDomain2"
_CLASS_INFO_TAGS: Final = frozenset({"DEFeatureClassInfo", "DETableInfo"})


def _coded_value_domains(source: _Source, layer: str | None) -> dict[str, tuple[str, dict[str, str]]]:
    """The layer's fields that a coded-value domain describes: field -> (domain, {code as text: name}).

    pyogrio does not read GDAL's field domains, so they are read where the formats keep them: a FileGDB's
    GDB_Items table (the domains' and the classes' XML definitions), a GeoPackage's
    gpkg_data_column_constraints of type enum (value and description, as GDAL writes a domain). A file
    without them, or whose metadata cannot be read, has none: its values are read as they are."""
    try:
        if source.format == "OpenFileGDB":
            return _filegdb_coded_values(source.gdal_path, layer)
        if source.format == "GPKG" and not source.gdal_path.startswith("/vsi"):
            return _gpkg_coded_values(Path(source.gdal_path), layer)
    except (
        pyogrio.errors.DataSourceError,
        pyogrio.errors.DataLayerError,
        RuntimeError,
        OSError,
        ElementTree.ParseError,
        sqlite3.Error,
    ):
        return {}  # no GDB_Items (a FileGDB of ArcGIS 9), no data columns tables, or unreadable ones
    return {}


def _filegdb_coded_values(path: str, layer: str | None) -> dict[str, tuple[str, dict[str, str]]]:
    items = pyogrio.read_dataframe(path, layer="GDB_Items", columns=["Definition"], read_geometry=False)
    domains: dict[str, dict[str, str]] = {}
    field_domains: dict[str, str] = {}
    for definition in items["Definition"].dropna():
        root = ElementTree.fromstring(str(definition))
        kind = _local(root.get("{http://www.w3.org/2001/XMLSchema-instance}type", root.tag).split(":")[-1])
        if kind == _CODED_DOMAIN_TAG:
            codes = {
                (_child_text(value, "Code") or ""): (_child_text(value, "Name") or "")
                for value in root.iter()
                if _local(value.tag) == "CodedValue"
            }
            domains[_child_text(root, "DomainName") or ""] = codes
        elif kind in _CLASS_INFO_TAGS and _child_text(root, "Name") == layer:
            for info in root.iter():
                if _local(info.tag) == "GPFieldInfoEx" and _child_text(info, "DomainName"):
                    field_domains[_child_text(info, "Name") or ""] = _child_text(info, "DomainName") or ""
    return {name: (domain, domains[domain]) for name, domain in field_domains.items() if domains.get(domain)}


def _child_text(element: ElementTree.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def _gpkg_coded_values(path: Path, layer: str | None) -> dict[str, tuple[str, dict[str, str]]]:
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT d.column_name, c.constraint_name, c.value, c.description FROM gpkg_data_columns d"
            " JOIN gpkg_data_column_constraints c ON c.constraint_name = d.constraint_name"
            " WHERE c.constraint_type = 'enum' AND d.table_name = ? ORDER BY c.rowid",
            (layer,),
        ).fetchall()
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for column, domain, value, description in rows:
        # An enum without descriptions lists the values themselves: nothing to name.
        if value is not None and description not in (None, "", value):
            found.setdefault(str(column), (str(domain), {}))[1][str(value)] = str(description)
    return found


def _coded_values_named(frame: Any, info: LayerInfo) -> None:
    """Replace the chunk's codes of coded-value domains by their names (see LayerInfo.coded_values)."""
    for name, codes in info.coded_values:
        if name not in frame.columns:
            continue
        names = dict(codes)
        frame[name] = pd.Series(
            [v if _is_missing(v) else names.get(_code_text(v), v) for v in frame[name].tolist()],
            index=frame.index,
            dtype=object,
        )


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _code_text(value: Any) -> str:
    """A code as a domain's XML or table writes it: 1, not 1.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _integer_text(
    source: _Source, info: LayerInfo, name: str, skip: int, limit: int, where: str
) -> list[str | None]:
    """One integer field of a chunk's features as the digits the file holds (None for a null)."""
    layer, encoding = _layer_args(info)
    table = layer if layer is not None else _gdal_layers(source)[0]
    # OGR SQL (not the GeoPackage's own SQLite) reads the features in the layer's order, as
    # skip_features/max_features count them for the chunk itself.
    sql = f"SELECT CAST({_sql_name(name)} AS character(24)) AS digits FROM {_sql_name(table)}"
    try:
        values = pyogrio.read_dataframe(
            source.gdal_path,
            sql=sql,
            sql_dialect="OGRSQL",
            encoding=encoding,
            read_geometry=False,
            skip_features=skip,
            max_features=limit,
        )["digits"]
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, RuntimeError, OSError) as exc:
        raise _gdal_error(
            where, exc, f"failed reading {name} of features {skip + 1} to {skip + limit}"
        ) from exc
    if len(values) != limit:
        raise LayerError(f"{where}: failed reading {name} of features {skip + 1} to {skip + limit}")
    return [None if pd.isna(v) else str(v).strip() for v in values.tolist()]


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ------------------------------------------------------------------------------------------------- CSV


@dataclass(frozen=True)
class _CsvLayout:
    codec: str
    sep: str
    columns: tuple[str, ...]
    x: str | None
    y: str | None
    wkt: str | None
    first_line: int
    # Other coordinate column pairs the file has, not read (kept as free attributes).
    unread_pairs: tuple[tuple[str, str], ...] = ()
    # Columns with a blank header cell, named column_<n> (pandas would say "Unnamed: <n-1>"), and those of
    # them with no value in any row (Excel's trailing separators), which are left out.
    blank: tuple[str, ...] = ()
    dropped: frozenset[str] = frozenset()
    # What the header's own names became: a blank cell, or a name given again (备注 twice: 备注, 备注_2).
    renamed: tuple[str, ...] = ()


def _csv_encoding(path: Path, label: str, explicit: str | None) -> tuple[str, list[str]]:
    if explicit is not None:
        return _explicit_encoding(explicit, label), []
    with path.open("rb") as fh:
        start = fh.read(4)
    # Excel's "Unicode text" export is UTF-16 with a byte-order mark; it can be neither UTF-8 nor GB18030.
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16", []
    # Excel's "CSV UTF-8" starts with a byte-order mark: the file says its encoding, nothing was guessed.
    if start.startswith(codecs.BOM_UTF8):
        if not _text_is_utf8(path):
            _refuse_lines_not_utf8(path, label)
        return "UTF-8", []
    if start.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        # A zip (.xlsx) or an OLE compound file (.xls) renamed to .csv: no encoding reads it as text.
        raise LayerError(
            f"{label} is an Excel workbook (or another binary file), not CSV text: open it in Excel and save"
            " it as CSV (文件 > 另存为 > CSV UTF-8)",
            field="file",
        )
    if _text_is_utf8(path):
        encoding = "UTF-8"
    else:
        _refuse_two_encodings(path, label)
        encoding = "GB18030"
    return encoding, [_guessed_warning(label, encoding, "a CSV file does not say its encoding")]


def _lines_in_and_not_in_utf8(path: Path) -> tuple[int, int, int]:
    """The first line with Chinese text in UTF-8, the number of lines that are not UTF-8 and the first of
    them (0 where there is none)."""
    utf8_line = other_line = 0
    others = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.isascii():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                others += 1
                other_line = other_line or number
                continue
            if not utf8_line and _CJK_RE.search(text):
                utf8_line = number
    return utf8_line, others, other_line


_SAVE_IN_ONE_ENCODING = "save the whole file in one encoding (Excel: 另存为 CSV UTF-8) and import it again"


def _refuse_two_encodings(path: Path, label: str) -> None:
    """Refuse a CSV that is not all UTF-8 yet has lines of Chinese in UTF-8: files saved in two encodings
    and pieced together (a row appended from a GBK file). Read as GB18030 every UTF-8 line would come in
    garbled, with no error; read as UTF-8 the others are refused. GBK text almost never decodes as UTF-8
    into Chinese characters (none of 200,000 random GBK lines did), so one such line is evidence enough."""
    utf8_line, others, other_line = _lines_in_and_not_in_utf8(path)
    if utf8_line and other_line:
        raise LayerError(
            f"{label} is in two encodings: line {utf8_line} has Chinese text in UTF-8, but {others:,} line(s)"
            f" are not UTF-8, the first line {other_line} (GBK?). Read in either encoding, the other lines"
            f" would come in garbled: {_SAVE_IN_ONE_ENCODING}",
            field="encoding",
        )


def _refuse_lines_not_utf8(path: Path, label: str) -> None:
    """Refuse a CSV that says it is UTF-8 (it starts with UTF-8's byte-order mark, as Excel's "CSV UTF-8"
    does) but has lines that are not: most often rows appended from a GBK file."""
    _, others, other_line = _lines_in_and_not_in_utf8(path)
    raise LayerError(
        f"{label} starts with UTF-8's byte-order mark (as Excel's CSV UTF-8 does), but {others:,} line(s)"
        f" are not UTF-8, the first line {other_line} (GBK?): pieced together from two encodings? Read as"
        " UTF-8 those lines cannot be read, and as GBK the others would come in garbled: "
        + _SAVE_IN_ONE_ENCODING,
        field="encoding",
    )


# Chinese encodings: text refused in one of them is most likely UTF-8, and the other way round.
_GB_CODECS: Final = frozenset({"gb18030", "gbk", "gb2312", "cp936", "936"})


def _not_in_encoding(codec: str, exc: UnicodeDecodeError, *, plural: bool = False) -> str:
    """The end of a message about text that ``codec`` cannot read: the encoding as GIS staff know it
    (UTF-8, not Python's utf-8-sig) and the likely right one to give instead."""
    name = codec.lower().replace("_", "-")
    shown = "UTF-8" if name in ("utf-8-sig", "utf-8", "utf8") else codec.upper()
    likely = "UTF-8" if name in _GB_CODECS else "GB18030"
    return (
        f"{'are' if plural else 'is'} not {shown} ({exc.reason}): give the right "
        f"encoding (e.g. --encoding {likely}), or leave it out to detect it"
    )


def _csv_layout(path: Path, codec: str, label: str, geographic: bool | None) -> _CsvLayout:
    """The CSV's separator, columns and coordinate columns. Of several coordinate pairs, those that say
    degrees (经度/纬度) are read when the CRS (``geographic``) is in degrees, the others (X/Y, 东坐标/北坐标)
    when it is in metres; else the first in :data:`_COORD_PAIRS`."""
    try:
        with path.open(encoding=codec, newline="") as fh:
            first, second = fh.readline(), fh.readline()
        counts = {sep: first.count(sep) for sep in _CSV_SEPARATORS}
        sep = max(counts, key=lambda s: counts[s]) if max(counts.values()) > 0 else ","
        header = pd.read_csv(
            path, sep=sep, encoding=codec, nrows=1, header=None, dtype=str, keep_default_na=False
        )
    except UnicodeDecodeError as exc:
        raise LayerError(
            f"{label}: the text {_not_in_encoding(codec, exc)}",
            field="encoding",
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise LayerError(f"{label} is empty: a CSV needs a header line and data rows") from exc
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        raise LayerError(f"{label} cannot be read as CSV ({exc}): check it opens in a spreadsheet") from exc
    cells = [str(c) for c in header.iloc[0].tolist()] if len(header) else []
    columns, blank, renamed = _csv_column_names(cells)
    keys = {c.strip().casefold(): c for c in reversed(columns)}
    x = y = wkt = None
    present = [pair for pair in _COORD_PAIRS if pair[0] in keys and pair[1] in keys]
    # "lng/lat" and "lon/lat" share their lat: a pair whose columns another pair already uses is not another.
    distinct: list[tuple[str, str]] = []
    for pair in present:
        if not any(set(pair) & set(other) for other in distinct):
            distinct.append(pair)
    unread: tuple[tuple[str, str], ...] = ()
    if distinct:
        chosen = distinct[0]
        if geographic is not None:
            chosen = next((p for p in distinct if (p in _DEGREE_PAIRS) == geographic), chosen)
        x, y = keys[chosen[0]], keys[chosen[1]]
        unread = tuple((keys[a], keys[b]) for a, b in distinct if (a, b) != chosen)
    else:
        wkt = next((keys[name] for name in _WKT_COLUMNS if name in keys), None)
        if wkt is None:
            named = [c for c in cells if c.strip()]
            # A spreadsheet's title row (济南市城市部件普查成果表) above the header: one cell, with the
            # separators Excel writes after it (标题,,,,) or none, over a line of several columns.
            several_below = any(second.count(sep) >= 2 for sep in _CSV_SEPARATORS)
            if len(named) == 1 and (len(cells) > 2 or (len(cells) == 1 and several_below)):
                raise LayerError(
                    f"{label}: line 1 holds only {named[0]!r}, a title, not the column names: delete the"
                    " lines above the header so that it comes first"
                )
            pairs = ", ".join(f"{a}/{b}" for a, b in _COORD_PAIRS)
            raise LayerError(
                f"{label} has no coordinate columns: found {', '.join(columns) or 'no columns'}; name them "
                f"as one of {pairs} (or give a WKT column called wkt or geometry)"
            )
    # A quoted header cell that spans lines pushes every data line down.
    first_line = 2 + sum(c.count("\n") for c in cells)
    return _CsvLayout(codec, sep, columns, x, y, wkt, first_line, unread, blank=blank, renamed=renamed)


def _csv_column_names(cells: list[str]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The CSV's column names from its header cells: a blank cell is column_<n> (its 1-based position), a
    name given again gets _2, _3 ... as a Shapefile export names a cut field, so no value is lost and each
    column can be mapped. Returns the names, the blank ones, and a note for each renamed one."""
    names: list[str] = []
    blank: list[str] = []
    notes: list[str] = []
    used: set[str] = set()
    for position, cell in enumerate(cells, start=1):
        base = cell if cell.strip() else f"column_{position}"
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        names.append(name)
        if not cell.strip():
            blank.append(name)
        elif name != cell:
            notes.append(f"column {position} is {cell!r} again, kept as {name}")
    return tuple(names), tuple(blank), tuple(notes)


_CSV_FIELD_COUNT_RE: Final = re.compile(r"Expected ([0-9]+) fields in line ([0-9]+), saw ([0-9]+)")


def _csv_record_line(path: Path, layout: _CsvLayout, record: int) -> int:
    """The line the ``record``-th record of a CSV (the header is record 1) starts on."""
    start = 1
    with path.open(encoding=layout.codec, newline="", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=layout.sep)
        for number, _ in enumerate(reader, start=1):
            if number == record:
                return start
            start = reader.line_num + 1
    return start


def _csv_raw(
    path: Path, layout: _CsvLayout, label: str, chunk_rows: int
) -> Generator[tuple[pd.DataFrame, RowArray], None, None]:
    """Chunks of a CSV as text, blank lines dropped, each row with the line number it starts on."""
    try:
        reader = pd.read_csv(
            path,
            sep=layout.sep,
            encoding=layout.codec,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            # Blank lines are kept here, then dropped below, so line numbers stay right.
            skip_blank_lines=False,
            chunksize=chunk_rows,
            # The header's names as _csv_column_names made them (pandas's own would be "Unnamed: 4").
            header=0,
            names=list(layout.columns),
        )
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise LayerError(f"{label} cannot be read as CSV ({exc})") from exc
    line = layout.first_line
    with reader:
        chunks = iter(reader)
        while True:
            try:
                frame = next(chunks)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise LayerError(
                    f"{label}: the text after line {line} {_not_in_encoding(layout.codec, exc)}",
                    field="encoding",
                ) from exc
            except (pd.errors.ParserError, ValueError) as exc:
                fields = _CSV_FIELD_COUNT_RE.search(str(exc))
                if fields is not None:
                    # pandas numbers records, header included; a quoted value may span lines, so the
                    # record's own line is found by reading the file again to it.
                    expected, record, saw = fields.groups()
                    at = _csv_record_line(path, layout, int(record))
                    raise LayerError(
                        f"{label} cannot be read as CSV: line {at} has {saw} fields where the header has "
                        f"{expected}: fix that line (a value holding the separator needs quotes)"
                    ) from exc
                raise LayerError(
                    f"{label} cannot be read as CSV after line {line} ({exc}): fix that line"
                ) from exc
            count = len(frame)
            # Quoted values may hold line breaks; each one moves the following rows a line down.
            breaks = np.zeros(count, dtype=np.int64)
            for column in frame.columns:
                breaks += frame[column].str.count("\n").fillna(0).to_numpy(dtype=np.int64)
            starts = line + np.arange(count, dtype=np.int64) + np.cumsum(breaks) - breaks
            line += count + int(breaks.sum())
            keep = ~frame.isna().all(axis=1).to_numpy(dtype=bool)
            if layout.dropped:
                frame = frame.drop(columns=list(layout.dropped))
            yield frame.loc[keep].reset_index(drop=True), starts[keep]


def _numbers(column: pd.Series) -> FloatArray:
    # Anything that is not a number (empty, "abc", "117.0°") becomes NaN in that row, not an error.
    return np.asarray(pd.to_numeric(column.str.strip(), errors="coerce"), dtype=np.float64)


def _not_numbers(frame: pd.DataFrame, columns: tuple[str, str], rows: RowArray) -> dict[int, tuple[str, str]]:
    """Rows whose coordinate cell holds text that is no number (117°07′12″, 117.0°, 东经117): the column and
    the text as written, which the row's NaN coordinate would not show. Empty cells are missing, not here."""
    found: dict[int, tuple[str, str]] = {}
    for column in columns:
        text = frame[column]
        written = text.str.strip().fillna("").to_numpy(dtype=object) != ""  # blank is missing, not text
        bad = written & np.isnan(_numbers(text))
        for at in np.flatnonzero(bad):
            if int(rows[at]) not in found:
                value = str(text.iloc[at])
                found[int(rows[at])] = (
                    value,
                    f"{column} {value} is not a number: write the coordinate as a decimal number (degrees "
                    "as 117.12, not 117°07′12″; metres without units)",
                )
    return found


def _blank_coordinates(
    frame: pd.DataFrame, columns: tuple[str, str], rows: RowArray
) -> dict[int, tuple[str, str]]:
    """Rows whose coordinate cell is empty (or only spaces), named by the file's own column: the row's NaN
    would otherwise be reported as "y is not a finite number"."""
    blank = [frame[column].str.strip().fillna("").to_numpy(dtype=object) == "" for column in columns]
    found: dict[int, tuple[str, str]] = {}
    for at in np.flatnonzero(blank[0] | blank[1]):
        missing = [column for column, empty in zip(columns, blank, strict=True) if empty[at]]
        verb = "are" if len(missing) == 2 else "is"
        found[int(rows[at])] = (
            "",
            f"{' and '.join(missing)} {verb} missing: this row has no position; fill in the coordinate",
        )
    return found


def _csv_frames(path: Path, layout: _CsvLayout, label: str, chunk_rows: int) -> Frames:
    for frame, rows in _csv_raw(path, layout, label, chunk_rows):
        if layout.x is not None and layout.y is not None:
            geoms = np.asarray(
                shapely.points(_numbers(frame[layout.x]), _numbers(frame[layout.y])), dtype=object
            )
            attrs = frame.copy()
            coordinates = (layout.x, layout.y)
            attrs.attrs[UNCONVERTIBLE] = {
                **_blank_coordinates(frame, coordinates, rows),
                **_not_numbers(frame, coordinates, rows),
            }
        else:
            assert layout.wkt is not None
            text = frame[layout.wkt].astype(object).where(frame[layout.wkt].notna(), None)
            geoms = np.asarray(shapely.from_wkt(text.to_numpy(dtype=object), on_invalid="fix"), dtype=object)
            attrs = frame.drop(columns=[layout.wkt])
        unreadable = attrs.attrs.get(UNCONVERTIBLE, {})
        attrs = attrs.astype(object).where(attrs.notna(), None)
        attrs.attrs[UNCONVERTIBLE] = unreadable
        yield attrs, geoms, rows


def _inspect_csv(
    given: Path, source: _Source, layer: str | None, override: ResolvedCRS | None, encoding: str | None
) -> tuple[LayerInfo, Iterator[Frame]]:
    label = source.label
    layers = (given.stem,)
    if layer is not None and layer != given.stem:
        raise LayerError(f"{label} has no layer {layer!r}: a CSV has one layer, {given.stem}", field="layer")
    text_encoding, notes = _csv_encoding(given, label, encoding)
    geographic = None if override is None else override.is_geographic
    layout = _csv_layout(given, _python_codec(text_encoding, csv=True), label, geographic)
    if override is None:
        raise LayerError(
            f"{label} has no coordinate reference system: say which with --crs {_CRS_EXAMPLES}", field="crs"
        )
    count = 0
    filled: set[str] = set()  # columns without a name that hold a value somewhere
    for frame, _ in _csv_raw(given, layout, label, 100_000):
        count += len(frame)
        filled.update(c for c in layout.blank if c not in filled and frame[c].notna().any())
    # Columns with neither a name nor a value (a row of Excel's ends with ",,") hold nothing to keep.
    layout = dataclasses.replace(layout, dropped=frozenset(layout.blank) - filled)
    if filled:
        notes.append(
            f"{label}: {', '.join(sorted(filled, key=layout.columns.index))} ha"
            f"{'s' if len(filled) == 1 else 've'} no name in the header but values in some rows: kept as"
            " free attributes under that name (name the column in the header to name the attribute)"
        )
    if layout.renamed:
        notes.append(
            f"{label}: the header names a column twice: {'; '.join(layout.renamed)} (rename it in the header"
            " to name the attribute)"
        )
    fields = tuple(c for c in layout.columns if c != layout.wkt and c not in layout.dropped)
    sample: list[Frame] = []
    if count:
        with contextlib.closing(_csv_frames(given, layout, label, _SAMPLE_ROWS)) as frames:
            sample.extend(itertools.islice(frames, 1))
    geometry_type = "Point" if layout.x is not None else _sample_geometry_type(sample)
    coordinates = _csv_coordinate_fields(layout)
    if layout.unread_pairs:
        others = " and ".join(f"{a}/{b}" for a, b in layout.unread_pairs)
        unit = "degrees" if geographic else "metres"
        notes.append(
            f"{label}: the positions are read from its {layout.x}/{layout.y} columns, as --crs "
            f"{override.name} is in {unit}; its {others} columns are kept as free attributes, not read "
            f"(give a --crs in {'metres' if geographic else 'degrees'} to read those instead)"
        )
    if len(coordinates) > 2:
        notes.append(
            f"{label}: the positions are read from its {coordinates[0]}/{coordinates[1]} columns; its "
            f"{coordinates[2]} column is the same position written again and is left out (correct "
            f"{coordinates[0]}/{coordinates[1]})"
        )
    info = LayerInfo(
        path=given,
        format="CSV",
        layer=None,
        layers=layers,
        crs=override.name,
        crs_from="override",
        encoding=text_encoding,
        feature_count=count,
        fields=fields,
        geometry_type=geometry_type,
        warnings=tuple(notes),
        coordinate_fields=coordinates,
    )
    return info, iter(sample)


def _csv_coordinate_fields(layout: _CsvLayout) -> tuple[str, ...]:
    """The x and y columns a CSV's positions are read from, and a WKT column beside them (a problem
    report's ``wkt``): the same position written again, not an attribute."""
    if layout.x is None or layout.y is None:
        return ()
    keys = {c.strip().casefold(): c for c in layout.columns}
    return (layout.x, layout.y, *(keys[name] for name in _WKT_COLUMNS if name in keys))


def _sample_geometry_type(sample: list[Frame]) -> str | None:
    """The geometry type of a WKT column's first rows, named as GDAL names layer types."""
    if not sample:
        return None
    kinds = np.unique(shapely.get_type_id(sample[0][1]))
    kinds = kinds[kinds >= 0]  # -1 is a missing geometry
    if kinds.size == 0:
        return None
    return _GEOMETRY_NAMES.get(int(kinds[0]), "Unknown") if kinds.size == 1 else "Unknown"


# ----------------------------------------------------------------------------- checking and converting


def _check_bbox(bbox: tuple[float, float, float, float] | None) -> BBox | None:
    if bbox is None:
        return None
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    if not (minx <= maxx and miny <= maxy):
        raise ValueError(f"city_bbox {bbox!r} must be (minx, miny, maxx, maxy) with min <= max")
    return minx, miny, maxx, maxy


@dataclass(frozen=True)
class _Coords:
    """The finite vertices of a chunk: source x/y, and the source row each belongs to."""

    x: FloatArray
    y: FloatArray
    rows: RowArray


def _pt(x: float, y: float) -> str:
    return f"({float(x)!r}, {float(y)!r})"


def _inside(x: FloatArray, y: FloatArray, box: BBox) -> npt.NDArray[np.bool_]:
    minx, miny, maxx, maxy = box
    return (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)


def _says(info: LayerInfo) -> str:
    if info.crs_from == "override":
        return f"--crs says {info.crs}"
    if info.crs_from == "format":
        return f"the file says {info.crs} (the {info.format} default)"
    return f"the file says {info.crs}"


def _check_source_coords(
    coords: _Coords, crs: ResolvedCRS, info: LayerInfo, where: str, box: BBox | None
) -> None:
    """Catch the classic whole-file CRS mistakes before converting anything."""
    x, y = coords.x, coords.y
    if crs.is_geographic:
        area, area_box = ("the city", box) if box is not None else ("China", CHINA_BBOX)
        swapped = _inside(y, x, area_box)
        if np.mean(swapped) > 0.5 and np.mean(_inside(x, y, area_box)) <= 0.5:
            i = int(np.argmax(swapped))
            raise LayerError(
                f"{where}: longitude and latitude are swapped: coordinates like {_pt(x[i], y[i])} fall in "
                f"{area} only as {_pt(y[i], x[i])}. Put the longitude (east) in x and the latitude (north) "
                "in y: swap the columns, or fix the file"
            )
        metres = (np.abs(x) > 180.0) | (np.abs(y) > 90.0)
        if np.mean(metres) > 0.5:
            i = int(np.argmax(metres))
            if _northing_easting(x, y):
                # Survey tables' X is the northing: say both mistakes at once, and the code for the
                # coordinates once swapped back.
                code = (_gk_code_in_city(y, x, box) if box is not None else None) or _guessed_gk_code(y[i])
                raise LayerError(
                    f"{where}: coordinates like {_pt(x[i], y[i])} are metres, not degrees ({_says(info)}), "
                    f"and the easting and the northing are swapped: x holds a northing ({x[i]:,.0f} m) and "
                    f"y an easting ({y[i]:,.0f} m). Chinese survey tables call the northing X: put the "
                    "easting in x and the northing in y (in a CSV, name the columns 东坐标 and 北坐标), "
                    f"then try --crs EPSG:{code}"
                )
            code = (_gk_code_in_city(x, y, box) if box is not None else None) or _guessed_gk_code(x[i])
            raise LayerError(
                f"{where}: coordinates like {_pt(x[i], y[i])} are metres, not degrees: {_says(info)}; "
                f"try --crs EPSG:{code}"
            )
        return
    degrees = (np.abs(x) <= 180.0) & (np.abs(y) <= 90.0)
    if np.mean(degrees) > 0.5:
        i = int(np.argmax(degrees))
        raise LayerError(
            f"{where}: coordinates like {_pt(x[i], y[i])} are degrees, not metres: {_says(info)}; "
            "try --crs cgcs2000 (or --crs gcj02 for points from Amap or Tencent maps)"
        )
    # Chinese surveying calls the northing X and the easting Y, the other way round from GIS: a table with
    # X/Y columns often holds them so.
    if gauss_kruger_zone(crs) is not None and _northing_easting(x, y):
        i = int(np.argmax(_gk_northing(x) & _gk_easting(y)))
        raise LayerError(
            f"{where}: the easting and the northing are swapped: coordinates like {_pt(x[i], y[i])} "
            f"hold a northing ({x[i]:,.0f} m) in x and an easting ({y[i]:,.0f} m) in y. Chinese survey "
            "tables call the northing X: put the easting in x and the northing in y (in a CSV, name "
            "the columns 东坐标 and 北坐标), or swap them in the file"
        )
    try:
        detect_gk_zone_prefix(x, crs)
    except ZonePrefixError as exc:
        # A few wrong eastings are wrong rows, rejected one by one when converted (_to_storage).
        if np.mean(_failing(coords, lambda xs, _: detect_gk_zone_prefix(xs, crs))) > 0.5:
            # The hint names the code of the same zone with(out) the prefix; when the zone itself is wrong
            # too (CM 117°E eastings given as zone 40), the code under which they lie in the city is said.
            better = _better_crs(coords, crs, box) if box is not None else None
            if better is not None and better.name not in str(exc):
                raise LayerError(
                    f"{where}: {_in_row(exc, coords)}. But that zone is not the city's either: the "
                    f"coordinates fall inside the city as {better.description}: try --crs {better.name}"
                ) from exc
            raise LayerError(f"{where}: {_in_row(exc, coords)}") from exc


def _in_row(exc: CoordinateError, coords: _Coords) -> str:
    """The error's message with its array index (meaningless to users) replaced by the source row."""
    if exc.index is None:
        return str(exc)
    row = int(coords.rows[exc.index])
    message, found = _INDEX_RE.subn(f" in row {row}", str(exc), count=1)
    return message if found else f"row {row}: {message}"


def _convert(
    geoms: GeomArray,
    rows: RowArray,
    crs: ResolvedCRS,
    info: LayerInfo,
    where: str,
    box: BBox | None,
    first: bool,
) -> tuple[GeomArray, bool, dict[int, tuple[str, str]], dict[int, shapely.Geometry]]:
    """Convert a chunk's geometries to EPSG:4490; with ``first``, check the file for CRS mistakes first.

    Returns the geometries, whether the checks ran (they need at least one finite coordinate), the rows
    whose coordinates cannot be converted (see :data:`UNCONVERTIBLE`), whose geometry is None, and the
    geometries the problems report shows for them (see :data:`REPORT_GEOMETRIES`).
    """
    found, index = shapely.get_coordinates(geoms, include_z=True, return_index=True)
    coords = np.asarray(found, dtype=np.float64)
    owner = np.asarray(index, dtype=np.intp)
    x, y = coords[:, 0], coords[:, 1]
    finite = np.isfinite(x) & np.isfinite(y)
    source = _Coords(x[finite], y[finite], rows[owner[finite]])
    checked = first and source.x.size > 0
    if checked:
        _check_source_coords(source, crs, info, where, box)
    lon, lat, failed = _to_storage(source, crs, where)
    if checked and box is not None:
        converted = ~failed
        kept = _Coords(source.x[converted], source.y[converted], source.rows[converted])
        _check_city(kept, lon[converted], lat[converted], crs, info, where, box)
    vertex = _vertex_numbers(owner, len(geoms))
    source_vertex = _Vertices(vertex.number[finite], vertex.count[finite])
    # Where the report shows each vertex (EPSG:4490): as converted, or put right where the mistake is
    # plain (below); NaN where it cannot be placed.
    placed_lon, placed_lat = lon.copy(), lat.copy()
    unconvertible = _unconvertible(source, failed, crs, source_vertex)
    put_right: dict[int, str] = {}
    if box is not None:
        swapped = _swapped(source, lon, lat, failed, crs, box, source_vertex)
        unconvertible.update({row: found[:2] for row, found in swapped.items()})
        for row, (_, _, at, fixed_lon, fixed_lat) in swapped.items():
            placed_lon[at], placed_lat[at] = fixed_lon, fixed_lat
            put_right[row] = "with x and y swapped back"
        for row, (at, fixed_lon, fixed_lat) in _zone_prefix_put_right(source, failed, crs, box).items():
            if row in unconvertible and row not in put_right:
                placed_lon[at], placed_lat[at] = fixed_lon, fixed_lat
                put_right[row] = "with the zone prefix put right"
    dropped = np.isin(rows, list(unconvertible)) if unconvertible else np.zeros(rows.size, dtype=bool)
    if crs == resolve_crs(STORAGE_CRS):
        # Already in the storage CRS: the conversion above only checked the coordinates.
        out_geoms = geoms
    else:
        out = coords.copy()
        out[finite, 0] = lon
        out[finite, 1] = lat
        # The unconvertible rows are left out before their coordinates go back: a polygon ring whose
        # vertices were all NaN is "not closed" to GEOS, which would fail the whole import.
        still = ~dropped[owner]
        inputs = geoms.copy()
        inputs[dropped] = None
        # NaN and infinite coordinates are left as they were, for the row validator to report.
        out_geoms = np.asarray(shapely.set_coordinates(inputs, out[still]), dtype=object)
    if unconvertible:
        out_geoms = out_geoms.copy()
        out_geoms[dropped] = None
    if shapely.has_z(out_geoms).any():
        # Positions are stored in 2D; KML (LIBKML) and many survey exports carry a height, often 0.
        out_geoms = np.asarray(shapely.force_2d(out_geoms), dtype=object)
    report_geometries: dict[int, shapely.Geometry] = {}
    if unconvertible:
        placed = coords.copy()
        placed[finite, 0], placed[finite, 1] = placed_lon, placed_lat
        report_geometries = _report_geometries(geoms, rows, owner, placed, unconvertible)
        # A CSV report keeps a CSV's coordinate columns as written (they are where it is corrected, and
        # what it is imported again by); a GeoPackage report has the geometry only.
        which = (
            f"a GeoPackage problems report (a CSV one keeps {' and '.join(info.coordinate_fields[:2])} as "
            "written)"
            if info.coordinate_fields
            else "the problems report"
        )
        for row, (value, reason) in list(unconvertible.items()):
            if row in report_geometries:
                if row in put_right:
                    unconvertible[row] = (
                        value,
                        f"{reason}; {which} has this row {put_right[row]}: check it there, then import "
                        "the report again",
                    )
                continue
            (g,) = np.flatnonzero(rows == row)
            if shapely.get_num_coordinates(geoms[g]) > 1:
                # Nothing is lost: the report cannot draw it, so the value holds the whole geometry.
                unconvertible[row] = (
                    shapely.to_wkt(geoms[g], rounding_precision=-1),
                    f"{reason}; the problems report cannot draw this row, so its value is the row's "
                    f"geometry as written, in {crs.name}",
                )
    return out_geoms, checked, unconvertible, report_geometries


@dataclass(frozen=True)
class _Vertices:
    """Each coordinate's place in its geometry: its number there (from 1) and the geometry's vertex count."""

    number: RowArray
    count: RowArray

    def said(self, at: int) -> str:
        """``vertex 3 of 12: `` for a geometry of several vertices, else nothing."""
        return f"vertex {int(self.number[at])} of {int(self.count[at])}: " if self.count[at] > 1 else ""


def _vertex_numbers(owner: npt.NDArray[np.intp], geometry_count: int) -> _Vertices:
    counts = np.bincount(owner, minlength=geometry_count)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))  # owner is sorted: shapely lists in order
    return _Vertices(np.arange(owner.size) - starts[owner] + 1, counts[owner])


def _report_geometries(
    geoms: GeomArray,
    rows: RowArray,
    owner: npt.NDArray[np.intp],
    placed: FloatArray,
    unconvertible: Mapping[int, tuple[str, str]],
) -> dict[int, shapely.Geometry]:
    """The geometry, in EPSG:4490, the problems report shows for each row in ``unconvertible`` whose every
    vertex could be placed (``placed``: NaN where not), so GIS staff correct the row instead of drawing it
    again. A row with a vertex that cannot be placed has none: its value says the coordinate as written."""
    found: dict[int, shapely.Geometry] = {}
    for g in np.flatnonzero(np.isin(rows, list(unconvertible))):
        mine = placed[owner == g]
        if mine.size and np.isfinite(mine[:, :2]).all():
            # set_coordinates fills the array it is given with new geometries: one of its own.
            geometry = shapely.set_coordinates(np.array([geoms[g]], dtype=object), mine)[0]
            found[int(rows[g])] = shapely.force_2d(geometry)
    return found


def _to_storage(coords: _Coords, crs: ResolvedCRS, where: str) -> tuple[FloatArray, FloatArray, BoolArray]:
    """The coordinates in EPSG:4490, and which could not be converted (NaN there).

    When most cannot, the CRS is wrong and the file is refused; a few are wrong rows.
    """
    try:
        lon, lat = transform(coords.x, coords.y, crs, STORAGE_CRS)
        return lon, lat, np.zeros(coords.x.size, dtype=bool)
    except CoordinateError as exc:
        failed = _failing(coords, lambda xs, ys: transform(xs, ys, crs, STORAGE_CRS))
        if np.mean(failed) > 0.5:
            raise LayerError(
                f"{where}: {_in_row(exc, coords)}; fix that row, or check the CRS ({crs.name})"
            ) from exc
    lon = np.full(coords.x.size, np.nan)
    lat = np.full(coords.x.size, np.nan)
    kept = _Coords(coords.x[~failed], coords.y[~failed], coords.rows[~failed])
    try:
        lon[~failed], lat[~failed] = transform(kept.x, kept.y, crs, STORAGE_CRS)
    except CoordinateError as exc:  # a check that judges the coordinates together, should one ever do so
        raise LayerError(
            f"{where}: {_in_row(exc, kept)}; fix that row, or check the CRS ({crs.name})"
        ) from exc
    return lon, lat, failed


def _failing(coords: _Coords, convert: Callable[[FloatArray, FloatArray], object]) -> BoolArray:
    """Which coordinates ``convert`` refuses, found by halving the ranges it refuses: a few bad ones among
    many cost a few dozen calls, not one per coordinate."""
    failed = np.zeros(coords.x.size, dtype=bool)
    ranges = [(0, coords.x.size)]
    while ranges:
        start, stop = ranges.pop()
        try:
            convert(coords.x[start:stop], coords.y[start:stop])
        except CoordinateError:
            if stop - start == 1:
                failed[start] = True
            else:
                middle = (start + stop) // 2
                ranges += [(start, middle), (middle, stop)]
    return failed


def _unconvertible(
    coords: _Coords, failed: BoolArray, crs: ResolvedCRS, vertices: _Vertices
) -> dict[int, tuple[str, str]]:
    """For each row with a coordinate that cannot be converted: its first such coordinate, and why."""
    found: dict[int, tuple[str, str]] = {}
    bad_at = np.flatnonzero(failed)
    bad_in_row = collections.Counter(int(r) for r in coords.rows[bad_at])
    for at in bad_at:
        row = int(coords.rows[at])
        if row in found:
            continue
        x, y = float(coords.x[at]), float(coords.y[at])
        try:
            transform(x, y, crs, STORAGE_CRS)
            why = "it cannot be converted"
        except CoordinateError as exc:
            why = str(exc)
        others = bad_in_row[row] - 1
        found[row] = (
            _pt(x, y),
            f"{vertices.said(int(at))}coordinate {_pt(x, y)} cannot be converted from {crs.name} ({why})"
            + (f", nor can {_count_of(others, 'other vertex', 'other vertices')}" if others else "")
            + "; the file's other rows convert, so this row's coordinates are probably wrong",
        )
    return found


def _count_of(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _where_converted(coords: _Coords, crs: ResolvedCRS) -> tuple[FloatArray, FloatArray]:
    """The coordinates in EPSG:4490, NaN for those ``crs`` cannot convert."""

    def convert(xs: FloatArray, ys: FloatArray) -> tuple[FloatArray, FloatArray]:
        return transform(xs, ys, crs, STORAGE_CRS)

    refused = _failing(coords, convert)
    lon = np.full(coords.x.size, np.nan)
    lat = np.full(coords.x.size, np.nan)
    if (~refused).any():
        lon[~refused], lat[~refused] = convert(coords.x[~refused], coords.y[~refused])
    return lon, lat


# A row whose x and y are the other way round: (the coordinate as written, why, which coordinates of
# the chunk, and where they lie swapped back).
_Swap: TypeAlias = tuple[str, str, npt.NDArray[np.intp], FloatArray, FloatArray]


def _swapped(
    coords: _Coords,
    lon: FloatArray,
    lat: FloatArray,
    failed: BoolArray,
    crs: ResolvedCRS,
    box: BBox,
    vertices: _Vertices,
) -> dict[int, _Swap]:
    """Rows with a coordinate far from the city (or that cannot be converted) that lies in the city once
    its x and y are swapped: a row whose northing went into the x column. Said so, with the coordinate as
    written; the city check would have named only where the swapped numbers happen to land (147.5°E 3.9°N
    for a zone-39 easting and northing the other way round), which is in no file. The whole file swapped is
    caught before (the first chunk's checks); this is the one row among right ones."""
    far = failed | ~_inside(lon, lat, box)
    if not far.any():
        return {}
    at = np.flatnonzero(far)
    swapped = _Coords(coords.y[at], coords.x[at], coords.rows[at])
    swapped_lon, swapped_lat = _where_converted(swapped, crs)
    back = np.flatnonzero(_inside(swapped_lon, swapped_lat, box))
    found: dict[int, _Swap] = {}
    for i in back:
        row = int(swapped.rows[i])
        if row in found:
            continue
        x, y = float(coords.x[at[i]]), float(coords.y[at[i]])
        axes = "longitude and latitude" if crs.is_geographic else "easting and northing"
        mine = back[swapped.rows[back] == row]
        found[row] = (
            _pt(x, y),
            f"{vertices.said(int(at[i]))}coordinate {_pt(x, y)} in {crs.name} is not in the city, but it is "
            f"with x and y the other way round, at lon/lat ({swapped_lon[i]:.6f}, {swapped_lat[i]:.6f}): "
            f"this row has its {axes} the wrong way round; swap them back",
            at[mine],
            swapped_lon[mine],
            swapped_lat[mine],
        )
    return found


def _zone_prefix_put_right(
    coords: _Coords, failed: BoolArray, crs: ResolvedCRS, box: BBox
) -> dict[int, tuple[npt.NDArray[np.intp], FloatArray, FloatArray]]:
    """Where the coordinates that cannot be converted under a Gauss-Kruger code lie under the same zone's
    other code (with the zone prefix, or without it), for the rows they put in the city: an easting that
    lost its prefix 39 among eastings that have it. By row: which coordinates, and their lon/lat."""
    zone = gauss_kruger_zone(crs)
    if zone is None or not failed.any():
        return {}
    sibling = resolve_crs(zone.cm_epsg if zone.zone_prefixed else zone.zoned_epsg)
    at = np.flatnonzero(failed)
    tried = _Coords(coords.x[at], coords.y[at], coords.rows[at])
    fixed_lon, fixed_lat = _where_converted(tried, sibling)
    inside = np.flatnonzero(_inside(fixed_lon, fixed_lat, box))
    found: dict[int, tuple[npt.NDArray[np.intp], FloatArray, FloatArray]] = {}
    for row in np.unique(tried.rows[inside]):
        mine = inside[tried.rows[inside] == row]
        found[int(row)] = (at[mine], fixed_lon[mine], fixed_lat[mine])
    return found


def _check_city(
    coords: _Coords,
    lon: FloatArray,
    lat: FloatArray,
    crs: ResolvedCRS,
    info: LayerInfo,
    where: str,
    box: BBox,
) -> None:
    outside = ~_inside(lon, lat, box)
    count = int(outside.sum())
    if count * 2 <= lon.size:
        return
    i = int(np.argmax(outside))
    message = (
        f"{where}: {count} of {lon.size} coordinates in the first rows fall outside the city "
        f"({', '.join(repr(v) for v in box)}), e.g. row {int(coords.rows[i])}: "
        f"{_pt(coords.x[i], coords.y[i])} in {crs.name} is "
        f"{_pt(round(lon[i], 6), round(lat[i], 6))} in EPSG:4490"
    )
    better = _better_crs(coords, crs, box)
    if better is not None:
        raise LayerError(f"{message}. They fall inside as {better.description}: try --crs {better.name}")
    raise LayerError(f"{message}. Check that the file covers the city and that {_says(info)} is right")


def _better_crs(coords: _Coords, crs: ResolvedCRS, box: BBox) -> ResolvedCRS | None:
    """A Gauss-Kruger code near the city under which the coordinates fall inside it, if there is one.

    Only projected data is retried: a wrong zone or zone prefix moves points by hundreds of km, while
    GCJ-02 or BD-09 read as WGS 84 are off by under 2 km, too little to tell from a city box.
    """
    if crs.is_geographic:
        return None
    code = _gk_code_in_city(coords.x, coords.y, box, not_code=crs.epsg)
    return None if code is None else resolve_crs(code)


def _gk_code_in_city(x: FloatArray, y: FloatArray, box: BBox, not_code: int | None = None) -> int | None:
    """The EPSG code of a CGCS2000 Gauss-Kruger 3-degree zone near the city (with or without the zone
    number in the eastings) under which most of the metres ``x``, ``y`` fall inside it, if one does."""
    centre = (box[0] + box[2]) / 2.0
    tried = set()
    for lon in (centre, centre - 3.0, centre + 3.0):
        for prefixed in (False, True):
            try:
                code = gk_zone_epsg(lon, zone_prefixed=prefixed)
            except CoordinateError:
                continue
            if code == not_code or code in tried:
                continue
            tried.add(code)
            try:
                lon2, lat2 = transform(x, y, code, STORAGE_CRS)
            except CoordinateError:
                continue
            if np.mean(_inside(lon2, lat2, box)) > 0.5:
                return code
    return None


def _guessed_gk_code(easting: float) -> int:
    """Jinan's zone: prefixed (EPSG:4527) for an easting that carries the zone number 39, else EPSG:4548.
    Only when no code puts the coordinates in the city (or there is no city box) to say better."""
    return 4527 if _ZONE39_MIN <= easting < _ZONE39_MAX else 4548


def _northing_easting(x: FloatArray, y: FloatArray) -> bool:
    """Whether most coordinates hold a Gauss-Kruger northing in x and an easting in y, not the other way."""
    swapped = _gk_northing(x) & _gk_easting(y)
    return bool(np.mean(swapped) > 0.5 and np.mean(_gk_northing(y) & _gk_easting(x)) <= 0.5)


def _converted(
    info: LayerInfo, frames: Iterator[Frame], box: BBox | None
) -> Generator[gpd.GeoDataFrame, None, None]:
    crs = resolve_crs(info.crs)
    where = _where(str(info.path), info.layer)
    unchecked = True
    for attrs, geoms, rows in frames:
        # The checks run on the first chunk that has coordinates at all.
        converted, checked, unconvertible, report_geometries = _convert(
            geoms, rows, crs, info, where, box, unchecked
        )
        unchecked = unchecked and not checked
        # A CSV's coordinate text that is no number, said as written (the reader found it).
        unconvertible = {**attrs.attrs.get(UNCONVERTIBLE, {}), **unconvertible}
        attrs["source_row"] = rows
        frame = gpd.GeoDataFrame(attrs, geometry=gpd.GeoSeries(converted, crs=STORAGE_CRS), crs=STORAGE_CRS)
        frame.attrs[UNCONVERTIBLE] = unconvertible
        frame.attrs[REPORT_GEOMETRIES] = report_geometries
        yield frame
