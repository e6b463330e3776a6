"""Write layers and problem reports for GIS staff: GeoPackage, GeoJSON, Shapefile and CSV.

Chinese text must survive every format. GeoPackage and GeoJSON are UTF-8 by definition. Shapefiles
may be written in UTF-8 or, for old desktop GIS on Chinese Windows, in GBK; either way a ``.cpg`` file
names the encoding, and field names are fitted to the DBF limit of 10 *bytes* here rather than by GDAL,
which cuts UTF-8 names in the middle of a character. CSV files are written in UTF-8 with a byte-order
mark, without which Excel on Chinese Windows shows UTF-8 text as mojibake.

Warnings (renamed or truncated Shapefile fields, files without a CRS) go to the ``gis.export`` logger;
:func:`write_layer` returns only the path.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyogrio
import shapely

from gis.crs import STORAGE_CRS, ResolvedCRS, resolve_crs, transform_geometry
from gis.validate import Problem

__all__ = [
    "DERIVED_COMPONENT_COLUMNS",
    "REPORT_COLUMNS",
    "REPORT_SEPARATOR",
    "SHAPEFILE_NAME_BYTES",
    "SHAPEFILE_TEXT_BYTES",
    "shapefile_field_names",
    "write_layer",
    "write_problems",
]

logger = logging.getLogger(__name__)

SHAPEFILE_NAME_BYTES: Final = 10
SHAPEFILE_TEXT_BYTES: Final = 254
REPORT_COLUMNS: Final = ("source_row", "field", "value", "reason", "action")
REPORT_LAYER: Final = "problems"
REPORT_SEPARATOR: Final = " | "
# Nine decimals: 0.1 mm in degrees, 1 nm in metres. GEOS's full precision (-1) prints 36.651 as
# 36.650999999999996, which reads as an error to GIS staff.
_WKT_DECIMALS: Final = 9
# Where GDAL's GeoJSON writer puts "features": within the first few members it writes.
_GEOJSON_HEAD_BYTES: Final = 4096

_DRIVERS: Final[Mapping[str, str]] = {
    ".gpkg": "GPKG",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".shp": "ESRI Shapefile",
    ".csv": "CSV",
}
# Names GDAL and pyogrio give the geometry and feature-id columns; attributes must not take them.
_GPKG_RESERVED: Final = ("fid", "geom", "geometry")
_FAMILY: Final = np.array(["point", "line", "line", "polygon", "point", "line", "polygon", "collection"])


# ------------------------------------------------------------------------------------------ helpers


def _driver(path: Path, allowed: Iterable[str] = _DRIVERS) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"cannot write {path.name}: use one of {', '.join(allowed)}")
    return _DRIVERS[suffix]


def _codec(encoding: str) -> tuple[str, str]:
    """Python's codec name and the label written to .cpg files and given to GDAL (``UTF-8``, ``GBK``)."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}: use UTF-8 or GBK") from None
    return codec, "UTF-8" if codec == "utf-8" else encoding.upper()


def _fit_bytes(text: str, limit: int, codec: str) -> str:
    """The longest prefix of ``text`` that fits ``limit`` bytes, never cutting a character in two."""
    out, used = [], 0
    for char in text:
        size = len(char.encode(codec))
        if used + size > limit:
            break
        out.append(char)
        used += size
    return "".join(out)


def _encodable(name: str, codec: str) -> str:
    return "".join(c if _can_encode(c, codec) else "_" for c in name)


def _can_encode(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _unique_names(names: Sequence[str], reserved: Iterable[str]) -> list[str]:
    """Names made unique case-insensitively (GeoPackage and DBF ignore case) by a ``_2``, ``_3`` suffix."""
    used = {r.casefold() for r in reserved}
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate.casefold() in used:
            n += 1
            candidate = f"{name}_{n}"
        used.add(candidate.casefold())
        out.append(candidate)
    return out


def _is_text(values: pd.Series) -> bool:
    return bool(pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values.dtype))


# The columns a components export (gridsvc's layers.components) carries that an import does not read
# back: they are found again from the class and the position, and the validity is the import's own.
DERIVED_COMPONENT_COLUMNS: Final = (
    "class_name",
    "in_use",
    "unit_grid_code",
    "responsibility_grid_code",
    "valid_from",
)


def _plain_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns GDAL can write: dict and list values (such as ``attributes``) become JSON text."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_object_dtype(values.dtype) and pd.api.types.infer_dtype(values) == "mixed":
            out[column] = values.map(
                lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
            ).astype(object)
    return out


def _check_encodable(frame: pd.DataFrame, codec: str, label: str, path: Path) -> None:
    if codec == "utf-8":
        return
    for column in frame.columns:
        values = frame[column]
        if not _is_text(values):
            continue
        # One encode of the joined column is far faster than one per value; per value only on failure.
        cells = values.to_numpy(dtype=object, na_value=None).tolist()
        if _can_encode("\n".join(str(t) for t in cells if t is not None), codec):
            continue
        row = next(i for i, t in enumerate(cells) if t is not None and not _can_encode(str(t), codec))
        # Named by its code where the layer has one (what GIS staff search for in QGIS), else by its row.
        where = f"code {frame['code'].iloc[row]}" if "code" in frame.columns else f"feature {row + 1}"
        # GB18030 holds every Unicode character and old desktop GIS read it as GBK for the GBK part.
        instead = "GB18030 or UTF-8" if codec == "gbk" else "UTF-8"
        raise ValueError(
            f"cannot write {path.name} in {label}: column {column} of {where} holds {cells[row]!r}, which "
            f"{label} cannot represent; write the file in {instead}"
        )


# ----------------------------------------------------------------------------------------- Shapefile


def shapefile_field_names(columns: Sequence[str], encoding: str = "UTF-8") -> dict[str, str]:
    """DBF field names for ``columns``: at most 10 bytes in ``encoding``, unique ignoring case.

    A name that fits is kept (in GBK a Chinese character takes 2 bytes, so up to five characters fit;
    in UTF-8 it takes 3). A longer one is cut at a character boundary; a name that then collides with an
    earlier one is cut further and given a ``_2``, ``_3`` ... suffix, in column order, so the result is
    deterministic. Characters the encoding cannot represent become ``_``.

    Parameters
    ----------
    columns : sequence of str
        Column names in order.
    encoding : str, optional
        The Shapefile's encoding, e.g. ``"UTF-8"`` (default) or ``"GBK"``.

    Returns
    -------
    dict of str to str
        Column -> DBF field name, for every column.

    Raises
    ------
    ValueError
        If the encoding is unknown.
    """
    codec, _ = _codec(encoding)
    used: set[str] = set()
    out: dict[str, str] = {}
    for column in columns:
        base = _encodable(str(column), codec)
        candidate = _fit_bytes(base, SHAPEFILE_NAME_BYTES, codec) or "field"
        n = 1
        while candidate.casefold() in used:
            n += 1
            suffix = f"_{n}"
            candidate = _fit_bytes(base, SHAPEFILE_NAME_BYTES - len(suffix), codec) + suffix
        used.add(candidate.casefold())
        out[str(column)] = candidate
    return out


def _fit_text_values(frame: pd.DataFrame, codec: str, path: Path) -> pd.DataFrame:
    """Cut text longer than a DBF field holds ourselves, so no character is cut in two."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if not _is_text(values):
            continue
        # Our own copy: pandas may hand back its own buffer, read-only, and the long values are cut in it.
        array = values.to_numpy(dtype=object, na_value=None, copy=True)
        # No character takes more than 4 bytes, so only strings longer than 254 / 4 characters need encoding.
        chars = pd.Series(array, dtype=object).str.len().to_numpy(dtype=np.float64, na_value=0.0)
        long = chars > SHAPEFILE_TEXT_BYTES // 4
        if long.any():
            at = np.flatnonzero(long)
            long[at] = [len(str(v).encode(codec)) > SHAPEFILE_TEXT_BYTES for v in array[at]]
        if long.any():
            logger.warning(
                "%s: %d value(s) of field %s are longer than the %d bytes a Shapefile field holds; cut",
                path.name,
                int(long.sum()),
                column,
                SHAPEFILE_TEXT_BYTES,
            )
            array[long] = [_fit_bytes(str(v), SHAPEFILE_TEXT_BYTES, codec) for v in array[long]]
            out[column] = pd.Series(array, index=values.index, dtype=object)
    return out


# The files a Shapefile may be made of (besides .shp itself), as GDAL, ArcGIS and QGIS write them.
_SHAPEFILE_PARTS: Final = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".shp.xml", ".qmd")


def _timestamps_as_text(table: pd.DataFrame) -> pd.DataFrame:
    """Date-times as ISO 8601 text in one form, to the microsecond (2023-05-04T08:00:00.000000+08:00).

    A DBF field holds a date or text, and GDAL would otherwise write the text itself, with a warning that
    means nothing to the user; pandas's CSV and GDAL's GeoJSON leave out the fraction where it is zero (and
    GDAL cuts it to milliseconds), so one file's rows, or two exports, would read differently.
    """
    stamps = [c for c in table.columns if pd.api.types.is_datetime64_any_dtype(table[c])]
    if not stamps:
        return table
    table = table.copy()
    for column in stamps:
        values = table[column]
        text = values.map(lambda v: v.isoformat(timespec="microseconds"), na_action="ignore")
        table[column] = text.astype(object).where(values.notna(), None)
    return table


def _write_shapefile(
    table: pd.DataFrame, geometries: npt.NDArray[np.object_], path: Path, file_crs: str | None, encoding: str
) -> None:
    codec, label = _codec(encoding)
    ids = shapely.get_type_id(geometries)
    families = sorted(set(_FAMILY[ids[ids >= 0]].tolist()))
    if len(families) > 1 or "collection" in families:
        raise ValueError(
            f"cannot write {path.name}: a Shapefile holds one kind of geometry but this layer has "
            f"{', '.join(families)}; write a GeoPackage or split the layer"
        )
    names = shapefile_field_names([str(c) for c in table.columns], label)
    for column, name in names.items():
        if name != column:
            logger.warning(
                "%s: field %s does not fit the Shapefile's %d-byte field names in %s; written as %s",
                path.name,
                column,
                SHAPEFILE_NAME_BYTES,
                label,
                name,
            )
    table = table.set_axis([names[str(c)] for c in table.columns], axis=1)
    _check_encodable(table, codec, label, path)
    table = _fit_text_values(table, codec, path)
    frame = gpd.GeoDataFrame(table, geometry=geometries, crs=file_crs)
    # The old file's parts go first: a .prj left from an export in another CRS would place the new
    # coordinates wrongly (a GCJ-02 or BD-09 file has no .prj to overwrite it), an old .cpg or index lie.
    for part in _SHAPEFILE_PARTS:
        path.with_suffix(part).unlink(missing_ok=True)
    pyogrio.write_dataframe(frame, path, driver="ESRI Shapefile", encoding=label)
    # GDAL writes a .cpg when given an encoding; writing it ourselves guarantees it names this one.
    path.with_suffix(".cpg").write_text(label, encoding="ascii")


# ----------------------------------------------------------------------------------------------- CSV


def _write_csv(
    table: pd.DataFrame, geometries: npt.NDArray[np.object_], path: Path, target: ResolvedCRS, encoding: str
) -> None:
    codec, label = _codec(encoding)
    out = table.copy()
    ids = shapely.get_type_id(geometries)
    present = (ids >= 0) & ~shapely.is_empty(geometries)
    if present.any() and (ids[present] == shapely.GeometryType.POINT).all():
        names = ("lon", "lat") if target.is_geographic else ("x", "y")
        columns = {names[0]: shapely.get_x(geometries), names[1]: shapely.get_y(geometries)}
    else:
        columns = {
            "wkt": np.asarray(shapely.to_wkt(geometries, rounding_precision=_WKT_DECIMALS), dtype=object)
        }
    clash = [c for c in columns if c in {str(k).casefold() for k in out.columns}]
    if clash:
        raise ValueError(f"cannot write {path.name}: the layer already has column(s) {', '.join(clash)}")
    for name, values in columns.items():
        out[name] = values
    _check_encodable(out, codec, label, path)
    # The BOM is what makes Excel on Chinese Windows read the file as UTF-8.
    out.to_csv(path, index=False, encoding="utf-8-sig" if codec == "utf-8" else codec)


# ------------------------------------------------------------------------------------------- layers


def write_layer(
    frame: gpd.GeoDataFrame,
    path: str | os.PathLike[str],
    *,
    crs: str = STORAGE_CRS,
    encoding: str = "UTF-8",
    layer: str | None = None,
) -> Path:
    """Write a layer in the format its file suffix names, converted to ``crs``.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        The layer, normally in EPSG:4490; its CRS must be set. Dict and list values (``attributes``) are
        written as JSON text.
    path : str or path-like
        ``.gpkg``, ``.geojson``/``.json``, ``.shp`` or ``.csv``. An existing GeoPackage keeps its other
        layers; the named layer is replaced. Other formats are overwritten.
    crs : str, optional
        Anything :func:`gis.crs.resolve_crs` accepts, including ``"gcj02"`` and ``"bd09"`` (which have no
        EPSG code, so the file then carries no CRS and a warning is logged). Default EPSG:4490.
    encoding : str, optional
        ``"UTF-8"`` (default) or, for Shapefiles and CSV, e.g. ``"GBK"`` for old desktop GIS and Excel.
        GeoPackage and GeoJSON are always UTF-8.
    layer : str, optional
        Layer name in a GeoPackage (and the GeoJSON ``name``); default the file's stem.

    Returns
    -------
    pathlib.Path
        The file written. Renamed or cut Shapefile fields are logged as warnings on ``gis.export``
        (see :func:`shapefile_field_names`).

    Raises
    ------
    ValueError
        For an unknown suffix or encoding, a non-UTF-8 GeoPackage/GeoJSON, a frame without CRS, text the
        encoding cannot represent, mixed geometry kinds in a Shapefile, or a CSV coordinate-column clash.
    gis.crs.CoordinateError
        If a coordinate cannot be converted to ``crs``.
    """
    out_path = Path(path)
    driver = _driver(out_path)
    codec, label = _codec(encoding)
    if driver in ("GPKG", "GeoJSON") and codec != "utf-8":
        raise ValueError(f"{driver} text is always UTF-8; {label} is only for Shapefiles and CSV")
    if frame.crs is None:
        raise ValueError(f"the layer has no CRS; set it (normally {STORAGE_CRS}) before writing it")
    source = resolve_crs(frame.crs)
    target = resolve_crs(crs)
    geometries = np.asarray(frame.geometry.to_numpy(), dtype=object)
    if source != target:
        geometries = np.asarray(transform_geometry(geometries, source, target), dtype=object)
    file_crs = f"EPSG:{target.epsg}" if target.kind == "epsg" else None
    if file_crs is None and driver != "CSV":
        carries = (
            "other GIS read the file as WGS 84 (its crs member names it for gridsvc alone)"
            if driver == "GeoJSON"
            else "so the file carries no CRS"
        )
        logger.warning(
            "%s: %s has no EPSG code, %s; say so wherever it is shared",
            out_path.name,
            target.description,
            carries,
        )
    table = _plain_columns(pd.DataFrame(frame.drop(columns=frame.geometry.name)))
    if driver != "GPKG":  # a GeoPackage has a date-time type, written in the form its standard names
        table = _timestamps_as_text(table)
    if not out_path.parent.is_dir():
        raise ValueError(f"cannot write {out_path.name}: the folder {out_path.parent} does not exist")
    try:
        with warnings.catch_warnings():
            # A GCJ-02 or BD-09 file has no CRS GDAL can write, by design (logged above): pyogrio's
            # warning that none was given, with its source line, told GIS staff nothing they had not chosen.
            warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
            if driver == "CSV":
                _write_csv(table, geometries, out_path, target, encoding)
            elif driver == "ESRI Shapefile":
                _write_shapefile(table, geometries, out_path, file_crs, encoding)
            else:
                if driver == "GeoJSON" and out_path.exists():
                    # GDAL's GeoJSON driver refuses to overwrite; a GeoPackage only has its layer replaced.
                    out_path.unlink()
                out = gpd.GeoDataFrame(table, geometry=geometries, crs=file_crs)
                pyogrio.write_dataframe(out, out_path, layer=layer or out_path.stem, driver=driver)
                if driver == "GeoJSON" and file_crs is None:
                    _name_geojson_datum(out_path, target.name)
    except (OSError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        # A folder that is not writable, a full disk, a file another program holds open.
        raise ValueError(f"cannot write {out_path.name}: {exc}") from exc
    return out_path


def _name_geojson_datum(path: Path, name: str) -> None:
    """Add to a GeoJSON GDAL wrote a ``crs`` member naming its datum (``gcj02``, ``bd09``: no EPSG code, so
    GDAL wrote none). GIS tools read the file as WGS 84 whatever it says, as the GeoJSON spec has them;
    gridsvc's import reads the name, so a GCJ-02 export imported again is not put 500 m off."""
    with path.open("rb") as fh:
        head = fh.read(_GEOJSON_HEAD_BYTES)
    at = head.find(b'\n"features": [') + 1  # on a line of its own, not a layer named "features"
    if at == 0:
        raise ValueError(f"cannot write {path.name}: GDAL wrote no features member where expected")
    member = json.dumps({"type": "name", "properties": {"name": name}}).encode()
    written = path.with_name(path.name + ".part")
    try:
        with path.open("rb") as source, written.open("wb") as target:
            target.write(head[:at] + b'"crs": ' + member + b",\n")
            source.seek(at)
            shutil.copyfileobj(source, target, 1 << 20)
        written.replace(path)
    finally:
        written.unlink(missing_ok=True)  # a full disk leaves no half copy behind


# ------------------------------------------------------------------------------------------- reports


def _report_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float | np.floating) and float(value).is_integer() and abs(float(value)) < 2.0**53:
        # A FileGDB Double 150.0 is written 150, as the CSV export writes it and as the import reads a
        # number as text: "150.0" imported again would be a change of every such row.
        return str(int(value))
    return str(value)


def _as_report_text(values: pd.Series) -> pd.Series:
    """Original values as text: one column may hold numbers in one chunk and garbage in another."""
    return values.map(_report_text, na_action="ignore").astype(object).where(values.notna(), None)


def _number_kind(value: object) -> str | None:
    """``"integer"``, ``"real"`` or None (anything else, booleans too) for one attribute value."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return "integer" if -(2**63) <= value < 2**63 else None  # beyond a GeoPackage INTEGER: text
    if isinstance(value, float | np.floating):
        return "real"
    return None


def _as_attribute_column(values: pd.Series) -> pd.Series:
    """A free attribute's values in the type they had: integers if every value is one, real numbers if every
    value is a number, else text. The report corrected and imported again then gives back 12.5, not "12.5"."""
    kinds = {_number_kind(v) for v in values[values.notna()]}
    if kinds == {"integer"}:
        return values.astype("Int64")
    if kinds and kinds <= {"integer", "real"}:
        return values.astype("Float64")
    return _as_report_text(values)


def _joined(values: Sequence[str | None]) -> str | None:
    """One report cell for a row's problems: the value itself for one, joined text for several."""
    if len(values) == 1 or all(v is None for v in values):
        return values[0]
    return REPORT_SEPARATOR.join("" if v is None else str(v) for v in values)


def _originals(
    rows: gpd.GeoDataFrame, wanted: npt.NDArray[np.int64], reserved: Sequence[str], typed: bool = False
) -> tuple[pd.DataFrame, npt.NDArray[np.object_]]:
    """The rows' own values and geometries for each report row; None where a row is not given.

    Columns are the rows' fields, then the keys of their ``attributes``, renamed with a suffix where they
    clash with ``reserved`` or each other (a file may well have a field called ``value`` or ``CODE``).
    Values are text, but with ``typed`` the attributes keep their numbers (see
    :func:`_as_attribute_column`). The fields stay text, as the report stored with an import has them.
    """
    geometries = np.full(len(wanted), None, dtype=object)
    if "source_row" not in rows.columns:
        if len(rows):
            raise ValueError("the rejected rows must have a source_row column")
        return pd.DataFrame(index=pd.RangeIndex(len(wanted))), geometries
    rows = rows.drop_duplicates("source_row")
    at = pd.Index(rows["source_row"].to_numpy(dtype=np.int64)).get_indexer(wanted)
    found = at >= 0
    take = at[found]
    geometry_name = None
    if isinstance(rows, gpd.GeoDataFrame) and rows.active_geometry_name is not None:
        geometry_name = rows.geometry.name
        geometries[found] = np.asarray(rows.geometry.to_numpy(), dtype=object)[take]
    names: list[str] = []
    columns: list[npt.NDArray[np.object_]] = []
    attribute_columns: set[int] = set()

    def add(name: object, source: npt.NDArray[np.object_]) -> None:
        values = np.full(len(wanted), None, dtype=object)
        values[found] = source
        names.append(str(name))
        columns.append(values)

    for column in rows.columns:
        if column in ("source_row", "attributes", geometry_name):
            continue
        add(column, rows[column].to_numpy(dtype=object)[take])
    if "attributes" in rows.columns:
        records = [a if isinstance(a, dict) else {} for a in rows["attributes"].to_numpy(dtype=object)[take]]
        # Object columns by hand: from_records would turn a column of 1 and None into 1.0 and NaN.
        for key in dict.fromkeys(k for record in records for k in record):
            attribute_columns.add(len(columns))
            add(key, np.array([r.get(key) for r in records], dtype=object))
    unique = _unique_names(names, reserved)
    data = {
        name: (_as_attribute_column if typed and at in attribute_columns else _as_report_text)(
            pd.Series(values, dtype=object)
        )
        for at, (name, values) in enumerate(zip(unique, columns, strict=True))
    }
    return pd.DataFrame(data, index=pd.RangeIndex(len(wanted))), geometries


def _drop_nonfinite(geometries: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    # GeoPackage readers differ on NaN coordinates, and a CSV's POINT (NaN 4057000) is no position to
    # correct: the value column still shows them.
    out = geometries.copy()
    coords, owner = shapely.get_coordinates(out, return_index=True)
    out[np.unique(owner[~np.isfinite(coords).all(axis=1)])] = None
    return out


def write_problems(
    problems: Sequence[Problem],
    rejected: gpd.GeoDataFrame,
    path: str | os.PathLike[str],
    *,
    position_fields: Sequence[str] = (),
) -> Path:
    """Write the problems report: one row per source row with problems, with its geometry and values.

    A row with several problems is one row of the report, its fields, values and reasons joined by
    :data:`REPORT_SEPARATOR`: GIS staff correct the values in place and import the report again, and
    two copies of one row would come back as a duplicate code.

    Parameters
    ----------
    problems : sequence of Problem
        From :class:`gis.validate.ValidationResult` (of one or many chunks).
    rejected : geopandas.GeoDataFrame
        The problem rows as they came, joined on ``source_row``: ``result.rejected``, or
        ``pd.concat([result.rejected, result.repaired])`` so repaired rows show their geometry too. A
        problem whose row is not here gets a null geometry and empty values.
    path : str or path-like
        ``.gpkg`` (layer ``problems``, one geometry column, null where the row has no usable geometry; an
        attribute whose values are all numbers is a number column) or ``.csv`` (UTF-8 with BOM, the
        geometry as a ``wkt`` column).
    position_fields : sequence of str
        The source's coordinate columns (a CSV's 东坐标 and 北坐标), among the values. A CSV report keeps
        them: they are where a position is corrected, and what the report is imported again by. A
        GeoPackage leaves them out: its geometry is the position (a missing one is drawn in QGIS), and
        columns beside it would come back as stale free attributes that no edit of the point changes.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        For another suffix, or rows without ``source_row``.
    """
    out_path = Path(path)
    driver = _driver(out_path, (".gpkg", ".csv"))
    by_row: dict[int, list[Problem]] = {}
    for problem in problems:
        by_row.setdefault(int(problem.source_row), []).append(problem)
    source_rows = np.array(list(by_row), dtype=np.int64)
    groups = list(by_row.values())
    report = pd.DataFrame(
        {
            "source_row": source_rows,
            "field": pd.Series([_joined([p.field for p in g]) for g in groups], dtype=object),
            "value": pd.Series([_joined([p.value for p in g]) for g in groups], dtype=object),
            "reason": pd.Series([_joined([p.reason for p in g]) for g in groups], dtype=object),
            # A row is rejected if any of its problems rejects it.
            "action": pd.Series(
                ["rejected" if any(p.action == "rejected" for p in g) else g[0].action for g in groups],
                dtype=object,
            ),
        }
    )
    reserved = (*REPORT_COLUMNS, *(_GPKG_RESERVED if driver == "GPKG" else ("wkt",)))
    # A GeoPackage has column types, and its numbers must come back as numbers; CSV is text anyway.
    originals, geometries = _originals(rejected, source_rows, reserved, typed=driver == "GPKG")
    if driver == "GPKG":
        originals = originals.drop(columns=[c for c in position_fields if c in originals.columns])
    if driver == "CSV":
        wkt = pd.Series(
            shapely.to_wkt(_drop_nonfinite(geometries), rounding_precision=_WKT_DECIMALS),
            dtype=object,
            name="wkt",
        )
        table = pd.concat([report, wkt, originals], axis=1)
        table.to_csv(out_path, index=False, encoding="utf-8-sig")
        return out_path
    # A GeoDataFrame without a geometry column (e.g. an empty one) has no CRS at all, not even None.
    has_geometry = isinstance(rejected, gpd.GeoDataFrame) and rejected.active_geometry_name is not None
    crs = rejected.crs if has_geometry and rejected.crs is not None else STORAGE_CRS
    frame = gpd.GeoDataFrame(
        pd.concat([report, originals], axis=1), geometry=_drop_nonfinite(geometries), crs=crs
    )
    pyogrio.write_dataframe(frame, out_path, layer=REPORT_LAYER, driver="GPKG")
    return out_path
