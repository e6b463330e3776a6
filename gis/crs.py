"""Coordinate reference systems for the Jinan grid service.

Everything stored in PostGIS is CGCS2000 geographic lon/lat (``STORAGE_CRS``, EPSG:4490). Data arrives
in other systems and is converted here, at the edge:

* WGS84 (EPSG:4326) from GPS devices. PROJ treats EPSG:4490 and EPSG:4326 as the same datum and performs
  a null ("ballpark") transformation between them. The two frames differ by a few centimetres, far below
  what a city grid can resolve, so this is expected and not corrected.
* GCJ-02 ("Mars coordinates") from AMap/Tencent and BD-09 from Baidu: obfuscated WGS84 that no EPSG code
  describes. They are converted with the well-known public formulas; their inverses are iterated to
  sub-millimetre accuracy. Both are defined only inside China: a point outside China's rough bounding box
  is an ``OutsideChinaError``, never passed through unchanged as many public implementations do.
* CGCS2000 3-degree Gauss-Kruger survey data. Jinan lies in zone 39 (central meridian 117E): EPSG:4548
  ("CM 117E", eastings around 500 000 m) or EPSG:4527 ("zone 39", eastings carrying the zone number in
  front, around 39 500 000 m). Confusing the two is the most common survey-data mistake, so eastings are
  checked against the CRS they are declared in (``ZonePrefixError``).

Coordinates are always in (x, y) = (lon, lat) / (easting, northing) order and every function is told its
CRS explicitly; boxes are ``(minx, miny, maxx, maxy)``. All errors derive from ``CoordinateError``, a
``ValueError``, and name the offending coordinate (index and value).
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pyproj
import pyproj.exceptions
import shapely

__all__ = [
    "CHINA_BBOX",
    "DEFAULT_MAX_ITERATIONS",
    "DEFAULT_TOLERANCE_DEG",
    "STORAGE_CRS",
    "WGS84",
    "BBox",
    "CRSError",
    "CRSKind",
    "CRSLike",
    "CoordinateError",
    "DatumShiftError",
    "GaussKrugerZone",
    "NonFiniteCoordinateError",
    "OutsideAreaError",
    "OutsideChinaError",
    "ResolvedCRS",
    "UnknownCRSError",
    "ZonePrefixError",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "check_datum_shift",
    "check_finite",
    "check_within",
    "detect_gk_zone_prefix",
    "from_storage",
    "gauss_kruger_zone",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "gk_zone_epsg",
    "metric_crs",
    "project_from_metric",
    "project_to_metric",
    "resolve_crs",
    "to_storage",
    "transform",
    "transform_geometry",
    "transform_point",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

STORAGE_CRS: Final = "EPSG:4490"
WGS84: Final = "EPSG:4326"

BBox: TypeAlias = tuple[float, float, float, float]
# The bounding box of the widely used public `out_of_china` test; GCJ-02 and BD-09 exist only inside it.
CHINA_BBOX: Final[BBox] = (72.004, 0.8293, 137.8347, 55.8271)

CRSKind: TypeAlias = Literal["epsg", "gcj02", "bd09"]
FloatArray: TypeAlias = npt.NDArray[np.float64]
XY: TypeAlias = tuple[FloatArray, FloatArray]

_STORAGE_EPSG: Final = 4490
_WGS84_EPSG: Final = 4326

# Public GCJ-02 constants (Krasovsky 1940 semi-major axis and eccentricity squared) and Baidu's constant.
_GCJ_A: Final = 6378245.0
_GCJ_EE: Final = 0.00669342162296594323
_X_PI: Final = math.pi * 3000.0 / 180.0

# Round-trip error, in degrees, the iterative inverses stop at: 1e-9 degrees is about 0.1 mm.
DEFAULT_TOLERANCE_DEG: Final = 1e-9
DEFAULT_MAX_ITERATIONS: Final = 10

# Eastings at or above this carry a two-digit zone number in front (e.g. 39 500 000 m).
_PREFIXED_MIN_EASTING: Final = 10_000_000.0
# A 3-degree or 6-degree Gauss-Kruger easting without prefix is 500 000 +/- a few hundred km.
_UNPREFIXED_MAX_EASTING: Final = 1_000_000.0


# --------------------------------------------------------------------------------------------- errors


class CoordinateError(ValueError):
    """Base class for every coordinate or CRS problem raised by :mod:`gis.crs`.

    ``index`` is the flat index of the first offending coordinate (``None`` for scalars or when the
    problem is not tied to one coordinate) and ``coordinate`` its (x, y) value, so callers can point
    users at the bad feature without parsing the message.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        coordinate: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.coordinate = coordinate


# Both names are part of the contract other modules code against; one class keeps `except CRSError`
# and `except CoordinateError` equivalent instead of letting them silently catch different subsets.
CRSError = CoordinateError


class UnknownCRSError(CoordinateError):
    """The CRS name or code is not recognised, or is not a horizontal (2D) CRS."""


class OutsideChinaError(CoordinateError):
    """A GCJ-02/BD-09 coordinate lies outside China, where those systems are undefined."""


class OutsideAreaError(CoordinateError):
    """A coordinate lies outside the area it must be in (e.g. the city's bounding box)."""


class ZonePrefixError(CoordinateError):
    """Gauss-Kruger eastings disagree with the CRS about the zone-number prefix."""


class NonFiniteCoordinateError(CoordinateError):
    """A coordinate is NaN or infinite."""


class DatumShiftError(CoordinateError):
    """PROJ knows no shift between the two CRSs' datums, and would convert as if there were none."""


# ----------------------------------------------------------------------------------- CRS resolution


@dataclass(frozen=True, slots=True)
class ResolvedCRS:
    """A CRS name resolved to what this module knows how to transform.

    Attributes
    ----------
    name : str
        Canonical name: ``"wgs84"``, ``"cgcs2000"``, ``"gcj02"``, ``"bd09"`` or ``"EPSG:<code>"``.
    kind : {"epsg", "gcj02", "bd09"}
        ``"epsg"`` for anything PROJ handles; the other two are the Chinese obfuscated systems.
    epsg : int
        The EPSG code PROJ works in; GCJ-02 and BD-09 are offsets on WGS84 (4326).
    is_geographic : bool
        True when coordinates are lon/lat degrees.
    """

    name: str
    kind: CRSKind
    epsg: int
    is_geographic: bool

    @property
    def base_crs(self) -> pyproj.CRS:
        """The :class:`pyproj.CRS` of ``epsg`` (WGS84 for GCJ-02 and BD-09)."""
        return _pyproj_crs(self.epsg)

    @property
    def description(self) -> str:
        """Human-readable name for messages, e.g. ``EPSG:4548 (CGCS2000 / 3-degree Gauss-Kruger CM 117E)``."""
        if self.kind == "gcj02":
            return "gcj02 (GCJ-02, AMap/Tencent)"
        if self.kind == "bd09":
            return "bd09 (BD-09, Baidu)"
        return f"{self.name} ({_pyproj_crs(self.epsg).name})"

    def __str__(self) -> str:
        return self.name


CRSLike: TypeAlias = str | int | ResolvedCRS | pyproj.CRS

_UNKNOWN_HINT: Final = "use wgs84, cgcs2000, gcj02, bd09 or EPSG:<code>"
_NAMED: Final[dict[str, ResolvedCRS]] = {
    "wgs84": ResolvedCRS("wgs84", "epsg", _WGS84_EPSG, True),
    "cgcs2000": ResolvedCRS("cgcs2000", "epsg", _STORAGE_EPSG, True),
    "gcj02": ResolvedCRS("gcj02", "gcj02", _WGS84_EPSG, True),
    "bd09": ResolvedCRS("bd09", "bd09", _WGS84_EPSG, True),
}
_CANONICAL_EPSG_NAMES: Final = {_WGS84_EPSG: "wgs84", _STORAGE_EPSG: "cgcs2000"}
_EPSG_RE: Final = re.compile(r"(?:epsg:)?(\d{1,9})")
# Spaces, hyphens and underscores vary freely in how people write "WGS 84", "GCJ-02", "bd_09".
_SEPARATORS_RE: Final = re.compile(r"[\s_\-]+")


@functools.lru_cache(maxsize=256)
def _pyproj_crs(epsg: int) -> pyproj.CRS:
    return pyproj.CRS.from_epsg(epsg)


@functools.lru_cache(maxsize=256)
def _resolve_epsg(code: int, original: str) -> ResolvedCRS:
    try:
        crs = pyproj.CRS.from_user_input(f"EPSG:{code}")
    except pyproj.exceptions.CRSError as exc:
        raise UnknownCRSError(f"unknown CRS {original}: {_UNKNOWN_HINT}") from exc
    if not (crs.is_geographic or crs.is_projected):
        raise UnknownCRSError(
            f"CRS {original} ({crs.name}) is not a horizontal geographic or projected CRS: {_UNKNOWN_HINT}"
        )
    name = _CANONICAL_EPSG_NAMES.get(code, f"EPSG:{code}")
    return ResolvedCRS(name, "epsg", code, bool(crs.is_geographic))


def resolve_crs(name: CRSLike) -> ResolvedCRS:
    """Resolve a CRS name or code to a :class:`ResolvedCRS`.

    Parameters
    ----------
    name : str, int, ResolvedCRS or pyproj.CRS
        Case-insensitive, surrounding spaces ignored: ``"wgs84"``/``"wgs 84"``, ``"cgcs2000"``,
        ``"gcj02"``/``"gcj-02"``, ``"bd09"``/``"bd-09"``, ``"EPSG:<code>"``, ``"<code>"`` or an int code
        for any geographic or projected CRS PROJ knows. A ``pyproj.CRS`` must have an EPSG code.

    Returns
    -------
    ResolvedCRS
        The canonical description; EPSG:4326 resolves to ``"wgs84"`` and EPSG:4490 to ``"cgcs2000"``.

    Raises
    ------
    UnknownCRSError
        If the name is not recognised, PROJ does not know the code, or the CRS is not horizontal.
    """
    if isinstance(name, ResolvedCRS):
        return name
    if isinstance(name, pyproj.CRS):
        code = name.to_epsg()
        if code is None:
            raise UnknownCRSError(f"unknown CRS {name.name!r}: it has no EPSG code; {_UNKNOWN_HINT}")
        return _resolve_epsg(code, repr(name.name))
    # bool is an int subclass, but True/False as a CRS is always a bug upstream.
    if isinstance(name, int) and not isinstance(name, bool):
        if name <= 0:
            raise UnknownCRSError(f"unknown CRS {name!r}: {_UNKNOWN_HINT}")
        return _resolve_epsg(name, repr(name))
    if not isinstance(name, str):
        raise UnknownCRSError(f"unknown CRS {name!r}: {_UNKNOWN_HINT}")
    key = _SEPARATORS_RE.sub("", name.strip().lower())
    if key in _NAMED:
        return _NAMED[key]
    match = _EPSG_RE.fullmatch(key)
    if match is None:
        raise UnknownCRSError(f"unknown CRS {name!r}: {_UNKNOWN_HINT}")
    return _resolve_epsg(int(match.group(1)), repr(name))


# ------------------------------------------------------------------------------- array validation


def _as_xy(x: npt.ArrayLike, y: npt.ArrayLike) -> XY:
    try:
        xa = np.asarray(x, dtype=np.float64)
        ya = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CoordinateError(f"coordinates must be numbers: {exc}") from exc
    if xa.shape != ya.shape:
        raise CoordinateError(f"x has shape {xa.shape} but y has shape {ya.shape}: they must match")
    return xa, ya


def _fmt(value: float) -> str:
    return repr(float(value))


def _at(flat_index: int, shape: tuple[int, ...]) -> str:
    """`` at index i`` for arrays; nothing for scalars, whose value alone identifies them."""
    if not shape:
        return ""
    if len(shape) == 1:
        return f" at index {flat_index}"
    return f" at index {tuple(int(i) for i in np.unravel_index(flat_index, shape))}"


def _first(mask: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """Flat index of the first True in ``mask`` and how many are True."""
    flat = mask.ravel()
    return int(np.argmax(flat)), int(np.count_nonzero(flat))


def _point(xa: FloatArray, ya: FloatArray, i: int) -> tuple[float, float]:
    return float(xa.flat[i]), float(ya.flat[i])


def _point_str(p: tuple[float, float]) -> str:
    return f"({_fmt(p[0])}, {_fmt(p[1])})"


def _count(n: int, total: int, what: str) -> str:
    """Trailing ``; 3 of 10 coordinates are …`` for arrays; empty for a single coordinate."""
    return f"; {n} of {total} coordinates {what}" if total > 1 else ""


def check_finite(x: npt.ArrayLike, y: npt.ArrayLike) -> None:
    """Reject NaN and infinite coordinates.

    Parameters
    ----------
    x, y : array_like
        Coordinates of the same shape, in any CRS.

    Raises
    ------
    NonFiniteCoordinateError
        Naming the first non-finite coordinate (index and value) and how many there are.
    CoordinateError
        If the shapes differ or the values are not numbers.
    """
    xa, ya = _as_xy(x, y)
    bad = ~(np.isfinite(xa) & np.isfinite(ya))
    if bad.any():
        i, n = _first(bad)
        p = _point(xa, ya, i)
        raise NonFiniteCoordinateError(
            f"coordinate {_point_str(p)}{_at(i, xa.shape)} is not finite (NaN or infinity)"
            + _count(n, xa.size, "are not finite"),
            index=i,
            coordinate=p,
        )


def _check_bbox(bbox: BBox) -> BBox:
    try:
        minx, miny, maxx, maxy = (float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise CoordinateError(f"bbox {bbox!r} must be four numbers (minx, miny, maxx, maxy)") from exc
    if not (minx <= maxx and miny <= maxy):
        raise CoordinateError(f"bbox {bbox!r} must be (minx, miny, maxx, maxy) with min <= max")
    return minx, miny, maxx, maxy


def _outside(xa: FloatArray, ya: FloatArray, bbox: BBox) -> npt.NDArray[np.bool_]:
    minx, miny, maxx, maxy = bbox
    return (xa < minx) | (xa > maxx) | (ya < miny) | (ya > maxy)


def check_within(lon: npt.ArrayLike, lat: npt.ArrayLike, bbox: BBox, *, what: str = "the city") -> None:
    """Reject coordinates that cannot be in the area, e.g. a Beijing point sent to the Jinan service.

    Parameters
    ----------
    lon, lat : array_like
        Coordinates of the same shape, in the same CRS as ``bbox`` (normally ``STORAGE_CRS``).
    bbox : tuple of float
        ``(minx, miny, maxx, maxy)``, bounds inclusive.
    what : str, optional
        Name of the area for the message.

    Raises
    ------
    OutsideAreaError
        Naming the first coordinate outside (index and value) and how many are outside.
    NonFiniteCoordinateError
        If a coordinate is NaN or infinite (NaN would otherwise compare as "inside").
    """
    box = _check_bbox(bbox)
    xa, ya = _as_xy(lon, lat)
    check_finite(xa, ya)
    outside = _outside(xa, ya, box)
    if outside.any():
        i, n = _first(outside)
        p = _point(xa, ya, i)
        raise OutsideAreaError(
            f"coordinate {_point_str(p)}{_at(i, xa.shape)} is outside the bbox of {what} "
            f"({', '.join(_fmt(v) for v in box)}), so it cannot be in {what}"
            + _count(n, xa.size, "are outside"),
            index=i,
            coordinate=p,
        )


def _check_in_china(
    lon: FloatArray,
    lat: FloatArray,
    system: str,
    *,
    shown: XY | None = None,
    shown_crs: str | None = None,
) -> None:
    """Raise OutsideChinaError for the first lon/lat outside China.

    ``shown`` are the caller's original coordinates when ``lon``/``lat`` had to be converted first, so the
    message names the value the user actually sent.
    """
    outside = _outside(lon, lat, CHINA_BBOX)
    if not outside.any():
        return
    i, n = _first(outside)
    ll = _point(lon, lat, i)
    if shown is None:
        p, where = ll, ""
    else:
        p = _point(shown[0], shown[1], i)
        where = f" ({shown_crs}; lon/lat {_point_str(ll)})"
    minx, miny, maxx, maxy = CHINA_BBOX
    raise OutsideChinaError(
        f"coordinate {_point_str(p)}{where}{_at(i, lon.shape)} is outside China "
        f"(lon {minx} to {maxx}, lat {miny} to {maxy}): {system} is only defined inside China"
        + _count(n, lon.size, "are outside China"),
        index=i,
        coordinate=p,
    )


def _check_latitude(xa: FloatArray, ya: FloatArray, crs: ResolvedCRS) -> None:
    bad = np.abs(ya) > 90.0
    if bad.any():
        i, n = _first(bad)
        p = _point(xa, ya, i)
        raise CoordinateError(
            f"latitude {_fmt(p[1])} of coordinate {_point_str(p)}{_at(i, xa.shape)} in {crs.name} is "
            "outside [-90, 90]: are longitude and latitude swapped? Coordinates are (lon, lat)"
            + _count(n, xa.size, "have an invalid latitude"),
            index=i,
            coordinate=p,
        )


# ----------------------------------------------------------------------------------- GCJ-02, BD-09


def _gcj02_offset(lon: FloatArray, lat: FloatArray) -> XY:
    """The public GCJ-02 offset (degrees) to add to a WGS84 lon/lat."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    shared = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + shared
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + shared
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - _GCJ_EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_GCJ_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return dlon, dlat


def _wgs84_to_gcj02(lon: FloatArray, lat: FloatArray) -> XY:
    dlon, dlat = _gcj02_offset(lon, lat)
    return lon + dlon, lat + dlat


def _gcj02_to_bd09(lon: FloatArray, lat: FloatArray) -> XY:
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd09_to_gcj02_one_step(lon: FloatArray, lat: FloatArray) -> XY:
    """Baidu's published approximate inverse, only the starting point of the exact inverse."""
    x = lon - 0.0065
    y = lat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def _invert(
    forward: Callable[[FloatArray, FloatArray], XY],
    target: XY,
    start: XY,
    tolerance: float,
    max_iterations: int,
) -> XY:
    """Solve ``forward(x, y) == target`` for all points at once by fixed-point iteration.

    Both forward transforms are the identity plus an offset whose derivative is ~1e-3, so subtracting
    the residual (Newton with the identity as Jacobian) shrinks the error ~1000x per step: two or three
    steps reach 1e-9 degrees anywhere in China, and the cap only guards against a bug looping forever.
    """
    if tolerance <= 0.0 or max_iterations < 0:
        raise ValueError(
            f"tolerance ({tolerance!r}) must be > 0 and max_iterations ({max_iterations!r}) >= 0"
        )
    tx, ty = target
    x, y = start
    if tx.size == 0:
        return x, y
    for _ in range(max_iterations):
        fx, fy = forward(x, y)
        ex = fx - tx
        ey = fy - ty
        if max(float(np.max(np.abs(ex))), float(np.max(np.abs(ey)))) < tolerance:
            break
        x = x - ex
        y = y - ey
    return x, y


def _gcj02_to_wgs84(lon: FloatArray, lat: FloatArray, tolerance: float, max_iterations: int) -> XY:
    dlon, dlat = _gcj02_offset(lon, lat)
    return _invert(_wgs84_to_gcj02, (lon, lat), (lon - dlon, lat - dlat), tolerance, max_iterations)


def _bd09_to_gcj02(lon: FloatArray, lat: FloatArray, tolerance: float, max_iterations: int) -> XY:
    start = _bd09_to_gcj02_one_step(lon, lat)
    return _invert(_gcj02_to_bd09, (lon, lat), start, tolerance, max_iterations)


def _checked_lonlat(lon: npt.ArrayLike, lat: npt.ArrayLike, system: str) -> XY:
    xa, ya = _as_xy(lon, lat)
    check_finite(xa, ya)
    _check_in_china(xa, ya, system)
    return xa, ya


def wgs84_to_gcj02(lon: npt.ArrayLike, lat: npt.ArrayLike) -> XY:
    """Convert WGS84 lon/lat to GCJ-02 with the public formula.

    Parameters
    ----------
    lon, lat : array_like
        WGS84 degrees, same shape, inside China.

    Returns
    -------
    lon, lat : ndarray of float64
        GCJ-02 degrees, same shape as the input.

    Raises
    ------
    OutsideChinaError
        If a point is outside China, where GCJ-02 is undefined.
    NonFiniteCoordinateError
        If a coordinate is NaN or infinite.
    """
    xa, ya = _checked_lonlat(lon, lat, "GCJ-02")
    return _wgs84_to_gcj02(xa, ya)


def gcj02_to_wgs84(
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    *,
    tolerance: float = DEFAULT_TOLERANCE_DEG,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> XY:
    """Convert GCJ-02 lon/lat to WGS84 by iterating the forward formula.

    Parameters
    ----------
    lon, lat : array_like
        GCJ-02 degrees, same shape, inside China.
    tolerance : float, optional
        Stop once ``wgs84_to_gcj02`` of the result is within this many degrees of the input for every
        point (1e-9 degrees is about 0.1 mm).
    max_iterations : int, optional
        Upper bound on iterations (two or three are needed in practice).

    Returns
    -------
    lon, lat : ndarray of float64
        WGS84 degrees, same shape as the input.

    Raises
    ------
    OutsideChinaError
        If a point is outside China, where GCJ-02 is undefined.
    NonFiniteCoordinateError
        If a coordinate is NaN or infinite.
    """
    xa, ya = _checked_lonlat(lon, lat, "GCJ-02")
    return _gcj02_to_wgs84(xa, ya, tolerance, max_iterations)


def gcj02_to_bd09(lon: npt.ArrayLike, lat: npt.ArrayLike) -> XY:
    """Convert GCJ-02 lon/lat to BD-09 with Baidu's public formula.

    Parameters
    ----------
    lon, lat : array_like
        GCJ-02 degrees, same shape, inside China.

    Returns
    -------
    lon, lat : ndarray of float64
        BD-09 degrees, same shape as the input.

    Raises
    ------
    OutsideChinaError
        If a point is outside China, where BD-09 is undefined.
    NonFiniteCoordinateError
        If a coordinate is NaN or infinite.
    """
    xa, ya = _checked_lonlat(lon, lat, "BD-09")
    return _gcj02_to_bd09(xa, ya)


def bd09_to_gcj02(
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    *,
    tolerance: float = DEFAULT_TOLERANCE_DEG,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> XY:
    """Convert BD-09 lon/lat to GCJ-02: Baidu's approximate inverse refined by iteration.

    Parameters
    ----------
    lon, lat : array_like
        BD-09 degrees, same shape, inside China.
    tolerance : float, optional
        Stop once ``gcj02_to_bd09`` of the result is within this many degrees of the input.
    max_iterations : int, optional
        Upper bound on iterations.

    Returns
    -------
    lon, lat : ndarray of float64
        GCJ-02 degrees, same shape as the input.

    Raises
    ------
    OutsideChinaError
        If a point is outside China, where BD-09 is undefined.
    NonFiniteCoordinateError
        If a coordinate is NaN or infinite.
    """
    xa, ya = _checked_lonlat(lon, lat, "BD-09")
    return _bd09_to_gcj02(xa, ya, tolerance, max_iterations)


def wgs84_to_bd09(lon: npt.ArrayLike, lat: npt.ArrayLike) -> XY:
    """Convert WGS84 lon/lat to BD-09 (via GCJ-02).

    Parameters
    ----------
    lon, lat : array_like
        WGS84 degrees, same shape, inside China.

    Returns
    -------
    lon, lat : ndarray of float64
        BD-09 degrees, same shape as the input.

    Raises
    ------
    OutsideChinaError
        If a point is outside China, where BD-09 is undefined.
    NonFiniteCoordinateError
        If a coordinate is NaN or infinite.
    """
    xa, ya = _checked_lonlat(lon, lat, "BD-09")
    return _gcj02_to_bd09(*_wgs84_to_gcj02(xa, ya))


def bd09_to_wgs84(
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    *,
    tolerance: float = DEFAULT_TOLERANCE_DEG,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> XY:
    """Convert BD-09 lon/lat to WGS84 (via GCJ-02), both inverses iterated.

    Parameters
    ----------
    lon, lat : array_like
        BD-09 degrees, same shape, inside China.
    tolerance : float, optional
        Per-stage round-trip tolerance in degrees.
    max_iterations : int, optional
        Upper bound on iterations per stage.

    Returns
    -------
    lon, lat : ndarray of float64
        WGS84 degrees, same shape as the input.

    Raises
    ------
    OutsideChinaError
        If a point is outside China, where BD-09 is undefined.
    NonFiniteCoordinateError
        If a coordinate is NaN or infinite.
    """
    xa, ya = _checked_lonlat(lon, lat, "BD-09")
    gx, gy = _bd09_to_gcj02(xa, ya, tolerance, max_iterations)
    return _gcj02_to_wgs84(gx, gy, tolerance, max_iterations)


# --------------------------------------------------------------------------------- Gauss-Kruger


@dataclass(frozen=True, slots=True)
class GaussKrugerZone:
    """A CGCS2000 Gauss-Kruger projected CRS (EPSG 4491-4554).

    Attributes
    ----------
    epsg : int
        The EPSG code.
    width : {3, 6}
        Zone width in degrees.
    zone : int
        Zone number (13-23 for 6-degree, 25-45 for 3-degree zones).
    central_meridian : int
        Degrees east.
    zone_prefixed : bool
        True for the "zone N" codes whose eastings carry the zone number (false easting N*1e6 + 500 000);
        False for the "CM" codes (false easting 500 000).
    """

    epsg: int
    width: Literal[3, 6]
    zone: int
    central_meridian: int
    zone_prefixed: bool

    @property
    def zoned_epsg(self) -> int:
        """The EPSG code of this zone with zone-prefixed eastings."""
        return _gk_epsg(self.width, self.zone, zone_prefixed=True)

    @property
    def cm_epsg(self) -> int:
        """The EPSG code of this zone without the prefix ("CM" code)."""
        return _gk_epsg(self.width, self.zone, zone_prefixed=False)


# CGCS2000 Gauss-Kruger EPSG blocks: (first code, first zone, zone count, width, zone_prefixed).
_GK_BLOCKS: Final[tuple[tuple[int, int, int, Literal[3, 6], bool], ...]] = (
    (4491, 13, 11, 6, True),  # CGCS2000 / Gauss-Kruger zone 13 .. zone 23
    (4502, 13, 11, 6, False),  # CGCS2000 / Gauss-Kruger CM 75E .. CM 135E
    (4513, 25, 21, 3, True),  # CGCS2000 / 3-degree Gauss-Kruger zone 25 .. zone 45
    (4534, 25, 21, 3, False),  # CGCS2000 / 3-degree Gauss-Kruger CM 75E .. CM 135E
)


def _gk_epsg(width: int, zone: int, *, zone_prefixed: bool) -> int:
    for first_code, first_zone, count, block_width, prefixed in _GK_BLOCKS:
        if block_width == width and prefixed == zone_prefixed and first_zone <= zone < first_zone + count:
            return first_code + zone - first_zone
    raise ValueError(f"no CGCS2000 {width}-degree Gauss-Kruger EPSG code for zone {zone}")


def _gk_zone_of_prefix(prefix: int) -> tuple[Literal[3, 6], int] | None:
    # 6-degree zones (13-23) and 3-degree zones (25-45) over China do not overlap, so the prefix alone
    # says which family the data belongs to.
    if 13 <= prefix <= 23:
        return 6, prefix
    if 25 <= prefix <= 45:
        return 3, prefix
    return None


def gauss_kruger_zone(crs: CRSLike) -> GaussKrugerZone | None:
    """Describe a CGCS2000 Gauss-Kruger CRS.

    Parameters
    ----------
    crs : str, int, ResolvedCRS or pyproj.CRS
        Any CRS accepted by :func:`resolve_crs`.

    Returns
    -------
    GaussKrugerZone or None
        The zone, or None if ``crs`` is not one of the CGCS2000 Gauss-Kruger codes 4491-4554.
    """
    resolved = resolve_crs(crs)
    if resolved.kind != "epsg":
        return None
    for first_code, first_zone, count, width, prefixed in _GK_BLOCKS:
        if first_code <= resolved.epsg < first_code + count:
            zone = first_zone + resolved.epsg - first_code
            cm = 3 * zone if width == 3 else 6 * zone - 3
            return GaussKrugerZone(resolved.epsg, width, zone, cm, prefixed)
    return None


def gk_zone_epsg(lon: float, *, zone_prefixed: bool) -> int:
    """The CGCS2000 3-degree Gauss-Kruger EPSG code for a longitude.

    Parameters
    ----------
    lon : float
        Longitude in degrees east. A longitude exactly on a zone boundary (3*n + 1.5) goes to the eastern
        zone.
    zone_prefixed : bool
        True for the "zone N" code (eastings like 39 500 000, EPSG 4513-4533), False for the "CM" code
        (eastings like 500 000, EPSG 4534-4554).

    Returns
    -------
    int
        E.g. 4548 (CM 117E) or 4527 (zone 39) for Jinan.

    Raises
    ------
    OutsideChinaError
        If the longitude is outside the zones 25-45 (73.5E-136.5E) that the codes cover.
    NonFiniteCoordinateError
        If ``lon`` is NaN or infinite.
    """
    value = float(lon)
    if not math.isfinite(value):
        raise NonFiniteCoordinateError(f"longitude {_fmt(value)} is not finite (NaN or infinity)")
    # floor(x + 0.5) rather than round(): Python's round() sends halves to the even zone.
    zone = math.floor(value / 3.0 + 0.5)
    if not 25 <= zone <= 45:
        raise OutsideChinaError(
            f"longitude {_fmt(value)} is in 3-degree zone {zone}, outside the CGCS2000 3-degree "
            "Gauss-Kruger zones 25 to 45 (73.5E to 136.5E)"
        )
    return _gk_epsg(3, zone, zone_prefixed=zone_prefixed)


def _suggest_for_prefix(prefix: int) -> str:
    family = _gk_zone_of_prefix(prefix)
    if family is None:
        return (
            f"{prefix} is not a CGCS2000 Gauss-Kruger zone (13 to 23 for 6-degree, 25 to 45 for 3-degree "
            "zones); check the easting"
        )
    code = _gk_epsg(family[0], family[1], zone_prefixed=True)
    return f"use {resolve_crs(code).description}"


def detect_gk_zone_prefix(x: npt.ArrayLike, crs: CRSLike) -> int | None:
    """Check Gauss-Kruger eastings against the zone-prefix convention of their declared CRS.

    A "CM" code such as EPSG:4548 expects eastings around 500 000 m; a "zone N" code such as EPSG:4527
    expects the zone number in front (39 500 000 m). Mixing them up shifts data by thousands of km, or
    (worse, for the same zone) by nothing PROJ would notice, so it is an error rather than a guess.
    Eastings between 1 000 000 and 10 000 000 and NaN are left to the other checks.

    Parameters
    ----------
    x : array_like
        Eastings in metres.
    crs : str, int, ResolvedCRS or pyproj.CRS
        The CRS the eastings are declared in.

    Returns
    -------
    int or None
        The zone number the eastings carry in front (the CRS's zone for "zone N" codes), or None for
        "CM" codes and CRSs that are not CGCS2000 Gauss-Kruger.

    Raises
    ------
    ZonePrefixError
        If a "CM" easting carries a zone prefix, a "zone N" easting lacks one, or carries another zone.
    """
    gk = gauss_kruger_zone(crs)
    if gk is None:
        return None
    xa = np.asarray(x, dtype=np.float64)
    declared = resolve_crs(gk.epsg).description
    prefixed = xa >= _PREFIXED_MIN_EASTING
    if not gk.zone_prefixed:
        if prefixed.any():
            i, n = _first(prefixed)
            value = float(xa.flat[i])
            prefix = int(value // 1_000_000)
            raise ZonePrefixError(
                f"easting {_fmt(value)}{_at(i, xa.shape)} carries the zone prefix {prefix}: "
                f"{_suggest_for_prefix(prefix)} instead of EPSG:{gk.epsg}"
                + _count(n, xa.size, "carry a zone prefix"),
                index=i,
            )
        return None
    unprefixed = xa < _UNPREFIXED_MAX_EASTING
    if unprefixed.any():
        i, n = _first(unprefixed)
        value = float(xa.flat[i])
        raise ZonePrefixError(
            f"easting {_fmt(value)}{_at(i, xa.shape)} has no zone prefix but {declared} expects eastings "
            f"like {gk.zone}500000: use {resolve_crs(gk.cm_epsg).description} instead of EPSG:{gk.epsg}"
            + _count(n, xa.size, "lack the zone prefix"),
            index=i,
        )
    prefixes = np.floor_divide(xa, 1_000_000)
    wrong = prefixed & (prefixes != gk.zone)
    if wrong.any():
        i, n = _first(wrong)
        value = float(xa.flat[i])
        prefix = int(value // 1_000_000)
        raise ZonePrefixError(
            f"easting {_fmt(value)}{_at(i, xa.shape)} carries the zone prefix {prefix} but EPSG:{gk.epsg} "
            f"is zone {gk.zone}: {_suggest_for_prefix(prefix)} instead of EPSG:{gk.epsg}"
            + _count(n, xa.size, "carry another zone prefix"),
            index=i,
        )
    return gk.zone


# ---------------------------------------------------------------------------------- transforming


@functools.lru_cache(maxsize=64)
def _transformer(from_epsg: int, to_epsg: int) -> pyproj.Transformer:
    # Transformer construction costs milliseconds (database look-ups); pyproj >= 3.1 transformers are
    # thread-safe, so one cached instance per pair serves every request thread.
    return pyproj.Transformer.from_crs(f"EPSG:{from_epsg}", f"EPSG:{to_epsg}", always_xy=True)


# Datums that realise one terrestrial frame to within a few decimetres at city scale (CGCS2000 is tied to
# ITRF97; WGS 84 follows the ITRF): PROJ's "ballpark" transformation between them, a null shift, is right.
_ONE_FRAME_DATUMS: Final = ("China 2000", "World Geodetic System 1984", "International Terrestrial Reference")


def _one_frame(datum: str) -> bool:
    return datum.startswith(_ONE_FRAME_DATUMS)


def _datum_name(epsg: int) -> str:
    crs = _pyproj_crs(epsg)
    return crs.datum.name if crs.datum is not None else crs.name


@functools.lru_cache(maxsize=64)
def _datum_shift_problem(from_epsg: int, to_epsg: int) -> str | None:
    a, b = _datum_name(from_epsg), _datum_name(to_epsg)
    if a == b or (_one_frame(a) and _one_frame(b)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "best transformation is not available": a grid
        candidates = pyproj.transformer.TransformerGroup(
            f"EPSG:{from_epsg}", f"EPSG:{to_epsg}", always_xy=True
        ).transformers
    # A transformation with parameters (NAD83 to WGS 84, ...) is fine; PROJ's last resort is the ballpark.
    if any("Ballpark geographic offset" not in t.description for t in candidates):
        return None
    return (
        f"the {a} datum, and PROJ has no shift between it and {b}: converting would leave out the whole "
        "datum difference, tens of metres or more, without a word. Convert between the two with the "
        "bureau's own transformation parameters (a 7-parameter set, e.g. in QGIS or ArcGIS), and give "
        "gridsvc CGCS2000 (EPSG:4490, or a Gauss-Krüger zone such as EPSG:4527 or EPSG:4548)"
    )


def check_datum_shift(from_crs: CRSLike, to_crs: CRSLike) -> None:
    """Refuse a conversion between datums PROJ knows no shift for (DOMAIN: never guess silently).

    Beijing 1954 and Xi'an 1980 to CGCS2000 are the usual case: PROJ has no parameters for them in
    China, and its fallback moves nothing, so the result would be off by the whole datum difference.
    CGCS2000, WGS 84 and the ITRF realisations count as one frame (decimetres apart).

    Parameters
    ----------
    from_crs, to_crs : str, int, ResolvedCRS or pyproj.CRS
        Anything :func:`resolve_crs` accepts.

    Raises
    ------
    DatumShiftError
        If converting from ``from_crs`` to ``to_crs`` would drop an unknown datum shift.
    """
    src, dst = resolve_crs(from_crs), resolve_crs(to_crs)
    problem = _datum_shift_problem(src.epsg, dst.epsg)
    if problem is not None:
        raise DatumShiftError(f"{src.description} is on {problem}")


def _proj_transform(xa: FloatArray, ya: FloatArray, src: ResolvedCRS, dst: ResolvedCRS) -> XY:
    check_datum_shift(src, dst)
    tx, ty = _transformer(src.epsg, dst.epsg).transform(xa.ravel(), ya.ravel())
    ox = np.asarray(tx, dtype=np.float64).reshape(xa.shape)
    oy = np.asarray(ty, dtype=np.float64).reshape(ya.shape)
    # PROJ signals points outside a projection's domain with inf rather than an exception.
    failed = ~(np.isfinite(ox) & np.isfinite(oy))
    if failed.any():
        i, n = _first(failed)
        p = _point(xa, ya, i)
        raise CoordinateError(
            f"coordinate {_point_str(p)}{_at(i, xa.shape)} cannot be transformed from "
            f"{src.description} to {dst.description}" + _count(n, xa.size, "cannot be transformed"),
            index=i,
            coordinate=p,
        )
    return ox, oy


def _validate_source(xa: FloatArray, ya: FloatArray, src: ResolvedCRS) -> None:
    check_finite(xa, ya)
    if src.kind == "gcj02":
        _check_in_china(xa, ya, "GCJ-02")
    elif src.kind == "bd09":
        _check_in_china(xa, ya, "BD-09")
    elif src.is_geographic:
        _check_latitude(xa, ya, src)
    else:
        detect_gk_zone_prefix(xa, src)


def transform(x: npt.ArrayLike, y: npt.ArrayLike, from_crs: CRSLike, to_crs: CRSLike) -> XY:
    """Transform coordinates between any two CRSs, including GCJ-02 and BD-09.

    GCJ-02 and BD-09 go through WGS84 (except GCJ-02 <-> BD-09, which is direct); everything else is
    one PROJ transformation. EPSG:4490 <-> EPSG:4326 is a null transformation in PROJ (see module docs).

    Parameters
    ----------
    x, y : array_like
        Coordinates of the same shape in ``from_crs`` (lon/lat or easting/northing order).
    from_crs, to_crs : str, int, ResolvedCRS or pyproj.CRS
        Anything :func:`resolve_crs` accepts.

    Returns
    -------
    x, y : ndarray of float64
        Coordinates in ``to_crs``, same shape as the input (0-d for scalars), always new arrays.

    Raises
    ------
    UnknownCRSError
        If either CRS is not recognised.
    OutsideChinaError
        If a GCJ-02/BD-09 point, given or produced, lies outside China.
    ZonePrefixError
        If Gauss-Kruger eastings contradict ``from_crs`` (see :func:`detect_gk_zone_prefix`).
    NonFiniteCoordinateError
        If a coordinate is NaN or infinite.
    CoordinateError
        If a latitude is outside [-90, 90] or PROJ cannot transform a point.
    """
    src = resolve_crs(from_crs)
    dst = resolve_crs(to_crs)
    xa, ya = _as_xy(x, y)
    _validate_source(xa, ya, src)
    tol, iters = DEFAULT_TOLERANCE_DEG, DEFAULT_MAX_ITERATIONS
    if src == dst:
        return xa.copy(), ya.copy()
    # Direct formulas between the two obfuscated systems avoid a needless round trip through WGS84.
    if src.kind == "gcj02" and dst.kind == "bd09":
        return _gcj02_to_bd09(xa, ya)
    if src.kind == "bd09" and dst.kind == "gcj02":
        return _bd09_to_gcj02(xa, ya, tol, iters)

    if src.kind == "gcj02":
        ox, oy = _gcj02_to_wgs84(xa, ya, tol, iters)
    elif src.kind == "bd09":
        ox, oy = _gcj02_to_wgs84(*_bd09_to_gcj02(xa, ya, tol, iters), tol, iters)
    else:
        ox, oy = xa, ya
    if src.epsg != dst.epsg:
        ox, oy = _proj_transform(ox, oy, resolve_crs(src.epsg), resolve_crs(dst.epsg))
    if dst.kind in ("gcj02", "bd09"):
        system = "GCJ-02" if dst.kind == "gcj02" else "BD-09"
        converted = src.kind != "epsg" or src.epsg != _WGS84_EPSG
        _check_in_china(ox, oy, system, shown=(xa, ya) if converted else None, shown_crs=src.name)
        ox, oy = _wgs84_to_gcj02(ox, oy)
        if dst.kind == "bd09":
            ox, oy = _gcj02_to_bd09(ox, oy)
    return ox, oy


def to_storage(x: npt.ArrayLike, y: npt.ArrayLike, crs: CRSLike) -> XY:
    """Transform coordinates from ``crs`` to the storage CRS (EPSG:4490 lon/lat).

    Parameters
    ----------
    x, y : array_like
        Coordinates of the same shape in ``crs``.
    crs : str, int, ResolvedCRS or pyproj.CRS
        The CRS the coordinates are in.

    Returns
    -------
    lon, lat : ndarray of float64
        CGCS2000 degrees, same shape as the input.

    Raises
    ------
    CoordinateError
        Any of the errors of :func:`transform`.
    """
    return transform(x, y, crs, STORAGE_CRS)


def from_storage(lon: npt.ArrayLike, lat: npt.ArrayLike, crs: CRSLike) -> XY:
    """Transform storage-CRS (EPSG:4490) lon/lat to ``crs``.

    Parameters
    ----------
    lon, lat : array_like
        CGCS2000 degrees, same shape.
    crs : str, int, ResolvedCRS or pyproj.CRS
        The CRS to return coordinates in.

    Returns
    -------
    x, y : ndarray of float64
        Coordinates in ``crs``, same shape as the input.

    Raises
    ------
    CoordinateError
        Any of the errors of :func:`transform`.
    """
    return transform(lon, lat, STORAGE_CRS, crs)


def transform_point(x: float, y: float, from_crs: CRSLike, to_crs: CRSLike) -> tuple[float, float]:
    """Transform a single point.

    Parameters
    ----------
    x, y : float
        The point in ``from_crs``.
    from_crs, to_crs : str, int, ResolvedCRS or pyproj.CRS
        Anything :func:`resolve_crs` accepts.

    Returns
    -------
    tuple of float
        ``(x, y)`` in ``to_crs``.

    Raises
    ------
    CoordinateError
        If ``x`` or ``y`` is not a scalar, or any of the errors of :func:`transform`.
    """
    if np.ndim(x) != 0 or np.ndim(y) != 0:
        raise CoordinateError(
            f"transform_point takes one point, got x of shape {np.shape(x)} and y of shape "
            f"{np.shape(y)}: use transform() for arrays"
        )
    ox, oy = transform(x, y, from_crs, to_crs)
    return float(ox), float(oy)


def _metric(crs: CRSLike) -> ResolvedCRS:
    resolved = resolve_crs(crs)
    if resolved.kind != "epsg" or resolved.is_geographic:
        raise UnknownCRSError(
            f"metric CRS {resolved.name!r} is geographic (degrees): use a projected CRS such as EPSG:4548"
        )
    units = {axis.unit_name for axis in resolved.base_crs.axis_info}
    if units != {"metre"}:
        raise UnknownCRSError(
            f"metric CRS {resolved.description} has axis units {sorted(units)}, not metres: use a "
            "projected CRS in metres such as EPSG:4548"
        )
    return resolved


def metric_crs(settings_crs: CRSLike) -> pyproj.CRS:
    """Validate the configured metric CRS (used for lengths, areas and buffers).

    Parameters
    ----------
    settings_crs : str, int, ResolvedCRS or pyproj.CRS
        E.g. ``"EPSG:4548"`` from the settings.

    Returns
    -------
    pyproj.CRS
        The projected CRS.

    Raises
    ------
    UnknownCRSError
        If it is not recognised, not projected, or not in metres.
    """
    return _metric(settings_crs).base_crs


def project_to_metric(lon: npt.ArrayLike, lat: npt.ArrayLike, metric_crs: CRSLike) -> XY:
    """Project storage-CRS lon/lat into the metric CRS.

    Parameters
    ----------
    lon, lat : array_like
        CGCS2000 (EPSG:4490) degrees, same shape.
    metric_crs : str, int, ResolvedCRS or pyproj.CRS
        A projected CRS in metres, e.g. EPSG:4548.

    Returns
    -------
    x, y : ndarray of float64
        Metres, same shape as the input.

    Raises
    ------
    CoordinateError
        If ``metric_crs`` is not metric, or any of the errors of :func:`transform`.
    """
    return transform(lon, lat, STORAGE_CRS, _metric(metric_crs))


def project_from_metric(x: npt.ArrayLike, y: npt.ArrayLike, metric_crs: CRSLike) -> XY:
    """Unproject metric-CRS coordinates to storage-CRS lon/lat.

    Parameters
    ----------
    x, y : array_like
        Metres in ``metric_crs``, same shape.
    metric_crs : str, int, ResolvedCRS or pyproj.CRS
        A projected CRS in metres, e.g. EPSG:4548.

    Returns
    -------
    lon, lat : ndarray of float64
        CGCS2000 (EPSG:4490) degrees, same shape as the input.

    Raises
    ------
    CoordinateError
        If ``metric_crs`` is not metric, or any of the errors of :func:`transform`.
    """
    return transform(x, y, _metric(metric_crs), STORAGE_CRS)


def transform_geometry(geometry: Any, from_crs: CRSLike, to_crs: CRSLike) -> Any:
    """Transform a shapely geometry or an array of geometries.

    All coordinates of all geometries are transformed in one vectorised call; Z values are kept
    unchanged (heights are not datum-shifted) and None entries stay None.

    Parameters
    ----------
    geometry : shapely.Geometry or array_like of shapely.Geometry
        Geometries in ``from_crs``.
    from_crs, to_crs : str, int, ResolvedCRS or pyproj.CRS
        Anything :func:`resolve_crs` accepts, including ``"gcj02"`` and ``"bd09"``.

    Returns
    -------
    shapely.Geometry or ndarray of shapely.Geometry
        Same structure as the input, in ``to_crs``.

    Raises
    ------
    CoordinateError
        Any of the errors of :func:`transform`; the index then counts coordinates, not geometries.
    """
    src = resolve_crs(from_crs)
    dst = resolve_crs(to_crs)

    def apply(x: FloatArray, y: FloatArray, z: FloatArray | None = None) -> tuple[FloatArray, ...]:
        tx, ty = transform(x, y, src, dst)
        return (tx, ty) if z is None else (tx, ty, z)

    # include_z=None keeps each geometry's own dimensionality instead of dropping Z everywhere.
    return shapely.transform(geometry, apply, include_z=None, interleaved=False)
