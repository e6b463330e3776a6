"""Map the fields of survey files to gridsvc's standard attributes (DOMAIN.md §3).

Survey files name the same attribute in many ways: CJ/T 214 tables use 部件标识码 / OBJCODE, contractors
write 标识码, BSM or CODE, and desktop GIS upper-cases or truncates names. A mapping says which file field
holds which standard field, as ``{standard_field: file_field}``. It comes from an explicit profile saved by
GIS staff (:func:`load_mapping`), completed by the built-in aliases (:func:`resolve_mapping`).

:func:`map_fields` then turns a chunk read by ``gis.io`` into the standard shape: ``source_row``, one text
column per standard field, an ``attributes`` column holding every other field as a JSON-ready dict, or as its
JSON text when the rows go straight to the database (nothing the surveyors recorded is dropped), and the
geometry. Values are not judged here; ``gis.validate`` does that.

Besides components, the lighter layers (boundaries, stations, other departments' nets, roads) have their own
small field lists and alias tables (:data:`LAYER_FIELDS`, :data:`LAYER_ALIASES`, :func:`map_layer_fields`).
"""

from __future__ import annotations

import codecs
import datetime as dt
import decimal
import json
import math
import os
import re
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

__all__ = [
    "BUILTIN_ALIASES",
    "COMPONENT_STATUSES",
    "LAYERS",
    "LAYER_ALIASES",
    "LAYER_FIELDS",
    "LEVEL_CODE_FIELDS",
    "ROAD_CLASSES",
    "ROAD_CLASS_ALIASES",
    "ROAD_CLASS_LABELS",
    "STANDARD_FIELDS",
    "STATUS_ALIASES",
    "STATUS_LABELS",
    "MappingError",
    "add_json_members",
    "clean_text",
    "field_name_problem",
    "json_objects",
    "load_mapping",
    "map_fields",
    "map_layer_fields",
    "normalise_road_class",
    "normalise_status",
    "resolve_mapping",
]


class MappingError(ValueError):
    """A field mapping (profile or explicit entry) that cannot be applied to a file."""


STANDARD_FIELDS: Final = (
    "code",
    "name",
    "class_code",
    "status",
    "owner",
    "supervisor",
    "maintainer",
    "initial_date",
    "change_date",
    "data_source",
    "remarks",
    "photo",
)

# Order matters: when a file has several columns matching one field, the alias listed first wins and the
# others stay in `attributes`. The list holds the CJ/T 214 attribute table names (部件标识码/OBJCODE,
# DEPTNAME1..3, OBJSTATE, ORDATE, CHDATE, DATASOURCE, NOTE, PICTURE), contractors' variants and the pinyin
# initials some tables use (MC 名称, ZT 状态, BZ 备注). Latin names match case-insensitively. Department
# codes (DEPTCODE1..3) and the unit grid (BGID, 所在单元网格) are not standard fields: the database
# resolves departments and grids itself, so they stay in `attributes`.
BUILTIN_ALIASES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "code": (
            "标识码",
            "部件标识码",
            "部件编码",
            "部件编号",
            "部件代码",
            "OBJCODE",
            "OBJ_CODE",
            "BSM",
            "CODE",
        ),
        "name": ("名称", "部件名称", "部件名", "OBJNAME", "OBJ_NAME", "NAME", "MC"),
        "class_code": (
            "小类代码",
            "部件小类代码",
            "类别代码",
            "小类",
            "部件小类",
            "部件类型代码",
            "CLASSCODE",
            "CLASS_CODE",
            "XLDM",
            "TYPECODE",
        ),
        "status": ("状态", "部件状态", "使用状态", "OBJSTATE", "OBJ_STATE", "STATUS", "STATE", "ZT"),
        "owner": ("权属单位", "权属单位名称", "产权单位", "OWNER", "OWNERNAME", "DEPTNAME2"),
        "supervisor": ("主管部门", "主管部门名称", "主管单位", "DEPTNAME1", "SUPERVISOR"),
        "maintainer": ("养护单位", "养护单位名称", "维护单位", "管理单位", "DEPTNAME3", "MAINTAINER"),
        "initial_date": ("初始日期", "初始时间", "设立日期", "ORDATE", "INITIAL_DATE", "INITDATE"),
        "change_date": ("变更日期", "变更时间", "更新日期", "CHDATE", "CHANGE_DATE", "UPDATEDATE"),
        "data_source": ("数据来源", "来源", "DATASOURCE", "DATA_SOURCE", "SOURCE"),
        "remarks": ("备注", "说明", "NOTE", "REMARK", "REMARKS", "BZ"),
        "photo": ("照片", "图片", "PICTURE", "PHOTO", "PIC"),
    }
)

LAYERS: Final = ("components", "boundaries", "stations", "net", "roads")

# The standard fields of each layer; `households` is the community household count (DOMAIN.md §2, the
# load measure of responsibility grids). Layer names follow survey_batch.layer in the database.
LAYER_FIELDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "components": STANDARD_FIELDS,
        "boundaries": ("code", "name", "households"),
        "stations": ("code", "name", "community_code", "phone"),
        "net": ("code", "name"),
        "roads": ("name", "road_class"),
    }
)

LAYER_ALIASES: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = MappingProxyType(
    {
        "components": BUILTIN_ALIASES,
        "boundaries": MappingProxyType(
            {
                # XZQDM/XZQMC are the land-survey (三调) names for admin code and name. The names of one
                # level (社区代码, 街道代码, 区县代码) come finest first: a file of one level may carry
                # the codes and names of the levels above it (a community's street), never of those below,
                # so the finest present is the file's own whatever the level imported.
                "code": (
                    "代码",
                    "行政区划代码",
                    "区划代码",
                    "统计用区划代码",
                    "XZQDM",
                    "XZQHDM",
                    "ADCODE",
                    "CODE",
                    "社区代码",
                    "街道代码",
                    "区县代码",
                ),
                "name": (
                    "名称",
                    "行政区划名称",
                    "区划名称",
                    "XZQMC",
                    "NAME",
                    "社区名称",
                    "街道名称",
                    "区县名称",
                ),
                "households": ("户数", "总户数", "HOUSEHOLDS", "HS"),
            }
        ),
        "stations": MappingProxyType(
            {
                "code": ("编码", "工作站编码", "站点编码", "工作站代码", "站点代码", "代码", "CODE"),
                "name": ("名称", "工作站名称", "站点名称", "NAME"),
                "community_code": ("社区代码", "社区编码", "所属社区代码", "COMMUNITY_CODE", "SQDM"),
                "phone": ("电话", "联系电话", "值班电话", "PHONE", "TEL"),
            }
        ),
        "net": MappingProxyType(
            {
                "code": ("网格编码", "网格代码", "编码", "代码", "WGBM", "GRIDCODE", "CODE"),
                "name": ("网格名称", "名称", "WGMC", "NAME"),
            }
        ),
        "roads": MappingProxyType(
            {
                "name": ("道路名称", "路名", "名称", "DLMC", "NAME"),
                "road_class": ("道路等级", "等级", "道路类型", "DLDJ", "ROAD_CLASS", "ROADCLASS", "CLASS"),
            }
        ),
    }
)

# The code fields of one boundary level each, with the digits of that level's codes. A file's finest is its
# own code; the others name the units above each row, which its code's first digits already name.
LEVEL_CODE_FIELDS: Final[Mapping[str, int]] = MappingProxyType({"社区代码": 12, "街道代码": 9, "区县代码": 6})

# Mirrors gridsvc.db.models.COMPONENT_STATUSES (gis may not import gridsvc).
COMPONENT_STATUSES: Final = ("intact", "damaged", "missing", "occupied", "abandoned", "removed")

# The Chinese name of each status, as survey tables and messages to GIS staff write it.
STATUS_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "intact": "完好",
        "damaged": "破损",
        "missing": "丢失",
        "occupied": "占用",
        "abandoned": "废弃",
        "removed": "移除",
    }
)

# Keys are matched after stripping and case-folding. 完好/破损/丢失/占用 are the CJ/T 214 states, 废弃 and
# 移除 the newer ones (DOMAIN.md §3); the rest are variants seen in contractors' data.
STATUS_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{status: status for status in COMPONENT_STATUSES},
        **{label: status for status, label in STATUS_LABELS.items()},
        "正常": "intact",
        "良好": "intact",
        "完整": "intact",
        "normal": "intact",
        "good": "intact",
        "损坏": "damaged",
        "损毁": "damaged",
        "毁坏": "damaged",
        "残缺": "damaged",
        "broken": "damaged",
        "缺失": "missing",
        "遗失": "missing",
        "被盗": "missing",
        "lost": "missing",
        "被占用": "occupied",
        "占压": "occupied",
        "报废": "abandoned",
        "停用": "abandoned",
        "拆除": "removed",
        "已拆除": "removed",
    }
)

# Mirrors the road.road_class check constraint.
ROAD_CLASSES: Final = ("arterial", "secondary", "branch", "rural")

ROAD_CLASS_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {"arterial": "主干路", "secondary": "次干路", "branch": "支路", "rural": "乡村道路"}
)

# CJJ 37 urban road classes (快速路, 主干路, 次干路, 支路) plus rural roads; expressways are cut along like
# arterials, so they share a class.
ROAD_CLASS_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{road_class: road_class for road_class in ROAD_CLASSES},
        **{label: road_class for road_class, label in ROAD_CLASS_LABELS.items()},
        "快速路": "arterial",
        "主干道": "arterial",
        "次干道": "secondary",
        "街巷": "branch",
        "村道": "rural",
        "乡道": "rural",
        "expressway": "arterial",
    }
)

_PROFILE_SUFFIXES: Final = (".yml", ".yaml", ".json")


# A dBASE field name holds at most 10 bytes.
SHAPEFILE_NAME_LIMIT = 10


def _key(name: object) -> str:
    """How a field name is compared: surrounding spaces ignored, Latin letters case-insensitive."""
    return str(name).strip().casefold()


def _layer(layer: str) -> tuple[tuple[str, ...], Mapping[str, tuple[str, ...]]]:
    if layer not in LAYER_FIELDS:
        raise MappingError(f"unknown layer {layer!r}: use one of {', '.join(LAYERS)}")
    return LAYER_FIELDS[layer], LAYER_ALIASES[layer]


# ------------------------------------------------------------------------------------------- profiles


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would otherwise resolve silently to the last."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


class _ProfileLoader(_UniqueKeyLoader):
    """Reads a profile's plain scalars as the text written, but for an empty value (``code:``, ``null``).

    A profile's values are field names: YAML 1.1 would read ``2023`` as a number, ``0117`` as the octal
    number 79, ``NO`` (a common field for 编号) as false and ``2023-05-01`` as a date, so the name used would
    not be the one written, or the entry would be refused for a value that is fine.
    """


_ProfileLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _unique_json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise MappingError(f"duplicate key(s) {', '.join(map(repr, duplicated))}")
    return dict(pairs)


def field_name_problem(standard: str, value: object, *, as_json: bool = False) -> str | None:
    """What is wrong with ``value`` as the file field a mapping entry gives ``standard`` from, or None.

    A number is refused, not read as a name: in JSON a name is written in quotes, so ``{"code": 5}`` is a
    slip more often than a field called 5, and the answer says how to write one that is.

    Parameters
    ----------
    standard : str
        The entry's key, a standard field.
    value : object
        The entry's value as read from JSON or YAML.
    as_json : bool, optional
        Quote a wrong value as JSON writes it (``null``, ``true``), for a caller who wrote JSON; else as
        Python's repr.

    Returns
    -------
    str or None
        The problem, naming the key; None for a name (non-empty text).
    """
    if isinstance(value, str) and value.strip():
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = json.dumps(value)
        return (
            f"{standard!r} must name a file field as text, got the number {number}; "
            f'write {{"{standard}": "{number}"}} if the field is called {number}'
        )
    shown = json.dumps(value, ensure_ascii=False, default=str) if as_json else repr(value)
    return f"{standard!r} must name a file field, got {shown}"


def _profile_text(data: bytes) -> str | None:
    """A profile's text: UTF-8 (with or without a BOM), UTF-16 with its BOM, else GB18030; None if none fits.

    Windows Notepad saves "ANSI" as GBK on a Chinese system and "Unicode" as UTF-16. A profile holds a few
    field names, and text that is not valid UTF-8 is almost never valid by chance, so UTF-8 is tried first
    and a GBK file (GB18030 reads every GBK text) is read, not refused.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings: tuple[str, ...] = ("utf-16",)
    else:
        encodings = ("utf-8-sig", "gb18030")
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def load_mapping(path: str | os.PathLike[str], *, layer: str = "components") -> dict[str, str]:
    """Read a saved field-mapping profile ``{standard_field: file_field}`` from YAML or JSON.

    Parameters
    ----------
    path : str or path-like
        A ``.yml``/``.yaml`` or ``.json`` file in UTF-8 (a BOM, as Windows Notepad writes, is allowed), or in
        GBK or UTF-16 with a BOM (Notepad's "ANSI" and "Unicode" on a Chinese system).
    layer : str, optional
        The layer whose standard fields the keys must name (default ``"components"``).

    Returns
    -------
    dict of str to str
        The profile, as written.

    Raises
    ------
    MappingError
        If the file is missing, unreadable or malformed, is not a flat mapping of names to names, has a
        duplicate key, or names a field that is not a standard field of ``layer``.
    """
    fields, _ = _layer(layer)
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in _PROFILE_SUFFIXES:
        raise MappingError(f"mapping profile {file}: unknown format {suffix!r}; use .yaml, .yml or .json")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise MappingError(f"mapping profile {file} cannot be read: {exc.strerror or exc}") from exc
    text = _profile_text(data)
    if text is None:
        raise MappingError(
            f"mapping profile {file} is neither UTF-8 nor GBK text: open it in a text editor and save it "
            "as UTF-8"
        )
    try:
        if suffix == ".json":
            data = json.loads(text, object_pairs_hook=_unique_json_object)
        else:
            data = yaml.load(text, Loader=_ProfileLoader)  # a SafeLoader subclass: no arbitrary objects
    except (json.JSONDecodeError, yaml.YAMLError, MappingError) as exc:
        raise MappingError(f"mapping profile {file} is malformed: {exc}") from exc
    if not isinstance(data, dict):
        raise MappingError(
            f"mapping profile {file} must be a mapping of standard field to file field, "
            f"e.g. 'code: 部件标识码'; got {type(data).__name__}"
        )
    profile: dict[str, str] = {}
    for key, value in data.items():
        if key not in fields:
            raise MappingError(
                f"mapping profile {file}: {key!r} is not a standard field; use one of {', '.join(fields)}"
            )
        problem = field_name_problem(key, value)
        if problem is not None:
            raise MappingError(f"mapping profile {file}: {problem}")
        profile[key] = value
    return profile


# -------------------------------------------------------------------------------------------- mapping


def _find_column(columns: list[str], wanted: str) -> str | None:
    """The file column named ``wanted``: an exact match, else the only case-insensitive one."""
    if wanted in columns:
        return wanted
    matches = [c for c in columns if _key(c) == _key(wanted)]
    return matches[0] if len(matches) == 1 else None


def resolve_mapping(
    columns: Iterable[Hashable],
    explicit: Mapping[str, str] | None = None,
    *,
    layer: str = "components",
) -> dict[str, str]:
    """Decide which file column holds each standard field: explicit entries first, then built-in aliases.

    Parameters
    ----------
    columns : iterable of str
        The file's columns in file order (``source_row`` and the geometry are ignored).
    explicit : mapping of str to str, optional
        ``{standard_field: file_field}`` from a profile or the user. These always win; a file field is
        matched exactly, or case-insensitively when that is unambiguous.
    layer : str, optional
        Which layer's fields and aliases to use (default ``"components"``).

    Returns
    -------
    dict of str to str
        ``{standard_field: file_column}`` for every field found, in standard-field order. A column named
        exactly as the field (``code``) wins; when several columns match one field through aliases, the
        one whose alias comes first wins (then file order); the others are left unmapped, so they end up
        in ``attributes``.

    Raises
    ------
    MappingError
        If an explicit key is not a standard field, an explicit file field is not in the file (the
        message lists the file's fields), or two explicit entries name the same column.
    """
    fields, aliases = _layer(layer)
    names = [str(c) for c in columns if str(c) not in ("source_row", "geometry")]
    resolved: dict[str, str] = {}
    used: set[str] = set()
    for field, wanted in (explicit or {}).items():
        if field not in fields:
            raise MappingError(f"{field!r} is not a standard field; use one of {', '.join(fields)}")
        column = _find_column(names, str(wanted))
        alike = [c for c in names if _key(c) == _key(str(wanted))]
        if column is None and len(alike) > 1:
            raise MappingError(
                f"the mapping gives {field} from field {wanted!r}, and the file has {len(alike)} fields of "
                f"that name in other letter cases ({', '.join(alike)}): give the one meant as written"
            )
        if column is None:
            raise MappingError(
                f"the mapping gives {field} from field {wanted!r}, which the file does not have; "
                f"the file's fields are: {', '.join(names) or '(none)'}"
            )
        if column in used:
            other = next(f for f, c in resolved.items() if c == column)
            raise MappingError(f"the mapping gives both {other} and {field} from field {column!r}")
        resolved[field] = column
        used.add(column)
    # A column named exactly as the standard field comes first: gridsvc's own exports and problem reports
    # write the field read as `code` beside the file's other code fields (OBJCODE beside 标识码 read as
    # the code), and importing them again must read the same one.
    for field in fields:
        if field not in resolved and field in names and field not in used:
            resolved[field] = field
            used.add(field)
    by_key: dict[str, list[str]] = {}
    for name in names:
        by_key.setdefault(_key(name), []).append(name)
    # Then the aliases: exact names first; then names a Shapefile cut at its 10-byte limit (主管部门 is
    # 12 bytes in UTF-8, so a GDAL-written .dbf holds 主管部), so a cut name never takes a field an exact
    # name would match.
    for match in (_key, _cut_keys):
        for field in fields:
            if field in resolved:
                continue
            for alias in (*aliases.get(field, ()), field):
                free = [c for key in _as_tuple(match(alias)) for c in by_key.get(key, []) if c not in used]
                if free:
                    resolved[field] = free[0]
                    used.add(free[0])
                    break
    return {field: resolved[field] for field in fields if field in resolved}


def unread_alternatives(
    columns: Iterable[Hashable],
    resolved: Mapping[str, str],
    explicit: Mapping[str, str] | None = None,
    *,
    layer: str = "components",
) -> dict[str, list[str]]:
    """For each standard field :func:`resolve_mapping` found by its aliases, the file's other columns
    named as that field too and left unmapped (标识码 read as the code, OBJCODE beside it): they go to the
    free attributes, and staff should know which one was read. Fields the mapping gave are not listed."""
    fields, aliases = _layer(layer)
    used = set(resolved.values())
    names = [str(c) for c in columns if str(c) not in ("source_row", "geometry") and str(c) not in used]
    found: dict[str, list[str]] = {}
    for field in fields:
        if field not in resolved or field in (explicit or {}):
            continue
        keys = {_key(alias) for alias in (*aliases.get(field, ()), field)}
        others = [name for name in names if _key(name) in keys]
        if others:
            found[field] = others
    return found


def _as_tuple(keys: str | tuple[str, ...]) -> tuple[str, ...]:
    return (keys,) if isinstance(keys, str) else keys


def _cut_keys(name: str) -> tuple[str, ...]:
    """The keys of ``name`` cut at a Shapefile's 10-byte field-name limit, in UTF-8 and in GBK."""
    keys = []
    for encoding in ("utf-8", "gb18030"):
        raw = name.strip().encode(encoding)
        if len(raw) > SHAPEFILE_NAME_LIMIT:
            keys.append(_key(raw[:SHAPEFILE_NAME_LIMIT].decode(encoding, errors="ignore")))
    return tuple(k for k in keys if k)


# ----------------------------------------------------------------------------------- value cleaning


def _object(values: Any, index: pd.Index) -> pd.Series:
    # Explicit object dtype: pandas 3 would otherwise infer its `str` dtype, whose missing value is NaN.
    return pd.Series(np.asarray(values, dtype=object), index=index, dtype=object)


def _none_for_missing(values: pd.Series) -> pd.Series:
    """Object dtype with None for NaN, NaT and pd.NA (``where(..., None)`` keeps NaN in a ``str`` column)."""
    return _object(values.to_numpy(dtype=object, na_value=None), values.index)


def _iso_datetimes(values: pd.Series) -> pd.Series:
    """ISO 8601 text for a datetime64 series: a date alone when the time is midnight (the usual case)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        text = values.map(lambda t: None if pd.isna(t) else t.isoformat())
        return _object(text, values.index)
    missing = values.isna().to_numpy()
    midnight = (values == values.dt.normalize()).to_numpy()
    dates = values.dt.strftime("%Y-%m-%d").to_numpy(dtype=object, na_value=None)
    stamps = values.dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy(dtype=object, na_value=None)
    out = np.where(midnight, dates, stamps)
    out[missing] = None
    return _object(out, values.index)


def _json_scalar(value: Any) -> Any:
    """One value as something ``json.dumps`` accepts, for columns of mixed Python types."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        # A GeoJSON array (GDAL's StringList, IntegerList, RealList): kept as the JSON array it was.
        return [_json_scalar(v) for v in value.tolist()]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict | list):
        return value
    return str(value)


def _json_values(values: pd.Series) -> pd.Series:
    """A column as JSON-ready Python values: NaN/NaT as None, numpy scalars unboxed, dates as ISO text."""
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _iso_datetimes(values)
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        # astype(object) unboxes numpy ints and bools to Python ones; nullable dtypes keep pd.NA.
        return _none_for_missing(values.astype(object))
    if pd.api.types.is_float_dtype(dtype):
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        out = array.astype(object)
        # Infinity is not JSON either (PostgreSQL's jsonb refuses it).
        out[~np.isfinite(array)] = None
        return _object(out, values.index)
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("string", "empty"):
        return _none_for_missing(values)
    return _object(values.map(_json_scalar).to_numpy(dtype=object), values.index)


_TEXT: Final = np.dtypes.StringDType()
# JSON needs these escaped inside strings; json.dumps writes the control characters, rare in survey text,
# so the rows holding any are encoded one by one.
_JSON_ESCAPES: Final = (("\\", "\\\\"), ('"', '\\"'))
_CONTROL_RE: Final = re.compile("[\x00-\x1f]")


def _json_strings(values: npt.NDArray[Any], missing: npt.NDArray[np.bool_]) -> npt.NDArray[Any]:
    """JSON string literals of ``str`` values (``null`` where missing), vectorised."""
    plain = np.where(missing, "", values)
    text: Any = plain.astype(_TEXT)
    for old, new in _JSON_ESCAPES:
        if np.strings.find(text, old).max(initial=-1) >= 0:
            text = np.strings.replace(text, old, new)
    out: Any = np.strings.add(np.strings.add('"', text), '"')
    starts = [m.start() for m in _CONTROL_RE.finditer("".join(plain.tolist()))]
    if starts:
        # Positions in the joined values -> their rows, by the cumulative lengths of the values as joined.
        ends = np.cumsum(np.strings.str_len(plain.astype(_TEXT)))
        for row in np.unique(np.searchsorted(ends, starts, side="right")):
            out[row] = json.dumps(values[row], ensure_ascii=False)
    out[missing] = "null"
    return np.asarray(out)


def _json_text(values: pd.Series) -> npt.NDArray[Any]:
    """Each value as JSON text (``null`` where missing): what ``json.dumps`` writes of :func:`_json_values`,
    vectorised for the usual column types."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        present = values.to_numpy(dtype=object, na_value=None)
        missing = np.asarray(pd.isna(present), dtype=bool)
        out = np.where(present == True, "true", "false").astype(_TEXT)  # noqa: E712 - elementwise, NA-safe
    elif pd.api.types.is_integer_dtype(dtype):
        missing = values.isna().to_numpy(dtype=bool)
        out = values.to_numpy(dtype=np.int64, na_value=0).astype(_TEXT)
    elif pd.api.types.is_float_dtype(dtype):
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        # Infinity is not JSON either (PostgreSQL's jsonb refuses it); numpy writes floats as repr does.
        missing = ~np.isfinite(array)
        out = np.where(missing, 0.0, array).astype(_TEXT)
    else:
        ready = _json_values(values).to_numpy(dtype=object)
        missing = np.asarray(pd.isna(ready), dtype=bool)
        kinds = {type(v) for v in ready[~missing]}
        if kinds <= {str}:
            return _json_strings(ready, missing)
        # Mixed Python values (numbers, lists, dicts): rare, so one json.dumps per value.
        return np.array(
            ["null" if m else json.dumps(v, ensure_ascii=False) for v, m in zip(ready, missing, strict=True)],
            dtype=_TEXT,
        )
    out[missing] = "null"
    return out


def _json_key(name: object) -> str:
    return json.dumps(str(name), ensure_ascii=False)


def json_objects(columns: Mapping[Hashable, pd.Series], length: int) -> npt.NDArray[Any]:
    """One JSON object per row holding every column, ``null`` where a value is missing.

    The same objects :func:`map_layer_fields` builds as dicts for ``attributes``, as text (vectorised:
    no Python work per row unless a value needs an unusual encoding).

    Parameters
    ----------
    columns : mapping of str to pandas.Series
        Key -> values, all of the same length, in key order.
    length : int
        The number of rows (when there are no columns, every row is ``{}``).

    Returns
    -------
    numpy.ndarray
        ``StringDType`` JSON object texts.
    """
    out: Any = np.full(length, "{", dtype=_TEXT)
    separator = ""
    for name, values in columns.items():
        member = _json_key(name) + ": "
        out = np.strings.add(np.strings.add(out, separator + member), _json_text(values))
        separator = ", "
    return np.strings.add(out, "}")


def add_json_members(objects: npt.ArrayLike, members: Mapping[str, pd.Series]) -> npt.NDArray[Any]:
    """Add members to JSON object texts where their value is not missing, as ``dict.update`` would.

    A key already in an object is written again after it: PostgreSQL's jsonb and ``json.loads`` both keep
    the last value of a duplicated key, so the added value wins, exactly as with ``dict.update``.

    Parameters
    ----------
    objects : array_like of str
        JSON object texts, e.g. from :func:`json_objects` or ``map_fields(..., attributes="json")``.
    members : mapping of str to pandas.Series
        Key -> values (same length as ``objects``); a missing value (None, NaN) adds nothing.

    Returns
    -------
    numpy.ndarray
        ``StringDType`` JSON object texts.
    """
    out: Any = np.asarray(objects, dtype=_TEXT)
    for name, values in members.items():
        present = ~values.isna().to_numpy(dtype=bool)
        if not present.any():
            continue
        text = _json_text(values)[present]
        body = np.strings.slice(out[present], 0, -1)  # without its closing brace
        empty = np.strings.str_len(body) == 1  # "{" alone: no member yet
        separator = np.where(empty, "", ", ").astype(_TEXT)
        added = np.strings.add(np.strings.add(body, separator), _json_key(name) + ": ")
        out[present] = np.strings.add(np.strings.add(added, text), "}")
    return np.asarray(out)


def _numeric_text(values: pd.Series) -> pd.Series:
    """Numbers as text: whole numbers without ``.0``, so a code read as a float keeps its digits."""
    array = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(array)
    # Below 2**53 every whole float is exact, so the int conversion cannot change a digit.
    whole = finite & (np.abs(array) < 2.0**53) & (array == np.floor(array))
    out = np.full(array.shape, None, dtype=object)
    if whole.any():
        out[whole] = array[whole].astype(np.int64).astype(str)
    rest = finite & ~whole
    if rest.any():
        out[rest] = array[rest].astype(str)
    return _object(out, values.index)


def clean_text(values: pd.Series) -> pd.Series:
    """A column as stripped text, the form every standard field takes.

    Numbers lose a spurious ``.0`` (a code read as a float keeps its digits), dates become ISO 8601 text.

    Parameters
    ----------
    values : pandas.Series
        Any column as read from a file.

    Returns
    -------
    pandas.Series
        Object dtype, same index: ``str`` values, or None where missing or empty after stripping.
    """
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        text = _iso_datetimes(values)
    elif pd.api.types.is_bool_dtype(dtype):
        text = _object(values.astype(object).map({True: "true", False: "false"}), values.index)
    elif pd.api.types.is_integer_dtype(dtype):
        text = _none_for_missing(values.astype(object)).map(str, na_action="ignore")
    elif pd.api.types.is_float_dtype(dtype):
        text = _numeric_text(values)
    else:
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind in ("string", "empty"):
            text = values
        elif kind in ("integer", "floating", "mixed-integer-float", "decimal"):
            text = _numeric_text(values)
        else:
            text = values.map(_json_scalar).map(
                lambda v: v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False),
                na_action="ignore",
            )
    # Every value is now str or missing. One pass of plain Python strips them: pandas' .str.strip, the
    # missing-value scans around it and the comparison with "" cost several times more on a census column.
    present = text.to_numpy(dtype=object, na_value=None)
    stripped = np.empty(present.size, dtype=object)
    stripped[:] = [None if v is None else (v.strip() or None) for v in present.tolist()]
    return pd.Series(stripped, index=values.index, dtype=object)


def _class_text(values: pd.Series) -> pd.Series:
    """Class codes as text; a numeric column lost the leading zero of 0118, so pad it back to 4 digits."""
    text = clean_text(values)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        text = _none_for_missing(text.str.zfill(4))
    return text


# ------------------------------------------------------------------------------------ mapping frames


def map_layer_fields(
    frame: gpd.GeoDataFrame,
    layer: str,
    mapping: Mapping[str, str] | None = None,
    *,
    attributes: Literal["dict", "json"] = "dict",
) -> gpd.GeoDataFrame:
    """Rename a chunk's fields to a layer's standard fields and gather the rest in ``attributes``.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        A chunk from ``gis.io``: the file's own columns, ``source_row`` and the geometry.
    layer : str
        One of :data:`LAYERS`.
    mapping : mapping of str to str, optional
        ``{standard_field: file_field}``; completed with the layer's aliases by :func:`resolve_mapping`
        (so its output may be passed here too).
    attributes : {"dict", "json"}, optional
        ``"json"`` gives each row's ``attributes`` as the JSON text of that dict, built column by column
        (for rows on their way to the database, where a dict per row would be made only to be dumped).

    Returns
    -------
    geopandas.GeoDataFrame
        Same index and CRS; columns ``source_row``, every standard field of the layer (stripped text,
        None when missing or empty), ``attributes`` (one dict per row of every other field, JSON-ready,
        keys as in the file; or its JSON text) and ``geometry``.

    Raises
    ------
    MappingError
        If the frame has no ``source_row`` or the mapping cannot be applied (see :func:`resolve_mapping`).
    """
    fields, _ = _layer(layer)
    if "source_row" not in frame.columns:
        raise MappingError("the frame has no source_row column (the row number shown to GIS staff)")
    geometry_name = frame.geometry.name
    resolved = resolve_mapping(
        [c for c in frame.columns if c not in ("source_row", geometry_name)], mapping, layer=layer
    )
    index = frame.index
    data: dict[str, Any] = {"source_row": frame["source_row"].to_numpy(dtype=np.int64)}
    for field in fields:
        if field not in resolved:
            data[field] = _object([None] * len(frame), index)
        elif field == "class_code":
            data[field] = _class_text(frame[resolved[field]])
        else:
            data[field] = clean_text(frame[resolved[field]])
    mapped_columns = set(resolved.values())
    free = [c for c in frame.columns if c not in ("source_row", geometry_name) and c not in mapped_columns]
    if attributes == "json":
        texts = json_objects({str(c): frame[c] for c in free}, len(frame)).astype(object)
        data["attributes"] = pd.Series(texts, index=index, dtype=object)
        out = pd.DataFrame(data, index=index)
        return gpd.GeoDataFrame(out, geometry=frame.geometry.to_numpy(), crs=frame.crs)
    if free:
        cleaned = pd.DataFrame({str(c): _json_values(frame[c]) for c in free}, index=index)
        records = cleaned.to_dict("records")
    else:
        records = [{} for _ in range(len(frame))]
    # Filled element by element: numpy would try to broadcast a list of dicts given to np.asarray.
    dicts = np.empty(len(frame), dtype=object)
    dicts[:] = records
    data["attributes"] = pd.Series(dicts, index=index, dtype=object)
    out = pd.DataFrame(data, index=index)
    return gpd.GeoDataFrame(out, geometry=frame.geometry.to_numpy(), crs=frame.crs)


def map_fields(
    frame: gpd.GeoDataFrame,
    mapping: Mapping[str, str] | None = None,
    *,
    attributes: Literal["dict", "json"] = "dict",
) -> gpd.GeoDataFrame:
    """Map a component chunk to :data:`STANDARD_FIELDS` (see :func:`map_layer_fields`).

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        A chunk from ``gis.io`` with ``source_row`` and the geometry.
    mapping : mapping of str to str, optional
        ``{standard_field: file_field}``, completed with :data:`BUILTIN_ALIASES`.
    attributes : {"dict", "json"}, optional
        Each row's free attributes as a dict, or as its JSON text (see :func:`map_layer_fields`).

    Returns
    -------
    geopandas.GeoDataFrame
        ``source_row``, the twelve standard fields, ``attributes`` and ``geometry``.

    Raises
    ------
    MappingError
        If the mapping cannot be applied.
    """
    return map_layer_fields(frame, "components", mapping, attributes=attributes)


# ------------------------------------------------------------------------------------ normalisation


def _normalise(values: pd.Series, aliases: Mapping[str, str]) -> tuple[pd.Series, pd.Series]:
    # A status or a road class has a handful of distinct values in a million rows: clean and look up each
    # once, then spread the answers back over the rows. Text only: factorize would take 1, 1.0 and True for
    # one value, and cannot hash a JSON list or object.
    if pd.api.types.infer_dtype(values, skipna=True) != "string":
        return _normalise_each(values, aliases)
    positions, distinct = pd.factorize(values, use_na_sentinel=True)
    canonical, unknown = _normalise_each(pd.Series(distinct), aliases)
    present = positions >= 0
    canonical_rows = np.full(len(values), None, dtype=object)
    canonical_rows[present] = canonical.to_numpy(dtype=object)[positions[present]]
    unknown_rows = np.zeros(len(values), dtype=bool)
    unknown_rows[present] = unknown.to_numpy(dtype=bool)[positions[present]]
    return _object(canonical_rows, values.index), pd.Series(unknown_rows, index=values.index)


def _normalise_each(values: pd.Series, aliases: Mapping[str, str]) -> tuple[pd.Series, pd.Series]:
    text = clean_text(values)
    lookup = {_key(k): v for k, v in aliases.items()}
    canonical = _none_for_missing(text.str.casefold().map(lookup))
    unknown = text.notna() & canonical.isna()
    # Unknown values keep their text so messages can quote them; missing ones stay None.
    canonical[unknown] = text[unknown]
    return canonical, unknown.astype(bool)


def normalise_status(
    series: pd.Series, aliases: Mapping[str, str] = STATUS_ALIASES
) -> tuple[pd.Series, pd.Series]:
    """Normalise component statuses (完好, 破损, Damaged, ...) to :data:`COMPONENT_STATUSES`.

    Parameters
    ----------
    series : pandas.Series
        Status text as in the file.
    aliases : mapping of str to str, optional
        Alias -> status; matched after stripping and case-folding. Default :data:`STATUS_ALIASES`.

    Returns
    -------
    normalised : pandas.Series
        Object dtype: the canonical status, None where the value is missing, and the original (stripped)
        text where it is unknown.
    unknown_mask : pandas.Series of bool
        True where a value is present but not recognised.
    """
    return _normalise(series, aliases)


def normalise_road_class(
    series: pd.Series, aliases: Mapping[str, str] = ROAD_CLASS_ALIASES
) -> tuple[pd.Series, pd.Series]:
    """Normalise road classes (主干路, 支路, Arterial, ...) to :data:`ROAD_CLASSES`.

    Parameters
    ----------
    series : pandas.Series
        Road class text as in the file.
    aliases : mapping of str to str, optional
        Alias -> class; default :data:`ROAD_CLASS_ALIASES`.

    Returns
    -------
    normalised : pandas.Series
        As for :func:`normalise_status`.
    unknown_mask : pandas.Series of bool
        True where a value is present but not recognised.
    """
    return _normalise(series, aliases)
