"""Small vectorised geometry helpers shared by loaders and algorithms."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely


def to_multi(geometries: Any) -> np.ndarray[Any, Any]:
    """Promote Polygons to MultiPolygons and LineStrings to MultiLineStrings; others pass through.

    Parameters
    ----------
    geometries : array-like of shapely geometries

    Returns
    -------
    numpy.ndarray
        Object array of the same length; a column typed MULTI* in PostGIS accepts every element.
    """
    array = np.asarray(geometries, dtype=object).copy()
    kinds = shapely.get_type_id(array)
    polygons = kinds == shapely.GeometryType.POLYGON
    lines = kinds == shapely.GeometryType.LINESTRING
    if polygons.any():
        array[polygons] = shapely.multipolygons(array[polygons, np.newaxis].tolist())
    if lines.any():
        array[lines] = shapely.multilinestrings(array[lines, np.newaxis].tolist())
    return array


def repair_polygonal(geometries: Any) -> np.ndarray[Any, Any]:
    """Make invalid (Multi)Polygons valid, keeping only their polygonal parts; valid ones pass through.

    Reprojection can leave a ring touching itself where two vertices a few nanometres apart in metres
    land on the same side of each other in degrees; the ``structure`` repair rebuilds such a ring by its
    area, so the result differs from the input only by that sliver.

    Parameters
    ----------
    geometries : array-like of shapely (Multi)Polygons

    Returns
    -------
    numpy.ndarray
        Object array of the same length; every element valid and Polygon or MultiPolygon.
    """
    array = np.asarray(geometries, dtype=object).copy()
    bad = ~shapely.is_valid(array)
    if bad.any():
        repaired = shapely.make_valid(array[bad], method="structure", keep_collapsed=False)
        polygonal = []
        for geom in repaired:
            if geom.geom_type in ("Polygon", "MultiPolygon"):
                polygonal.append(geom)
            else:
                parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
                polygonal.append(shapely.union_all(parts))
        array[bad] = np.asarray(polygonal, dtype=object)
    return array


def drop_crumbs(geometries: Any, min_area: float) -> np.ndarray[Any, Any]:
    """Drop the parts of (Multi)Polygons smaller than ``min_area``, always keeping each one's largest part.

    A union of polygons that share edges drawn a hair apart, or a ring rebuilt after reprojection, can
    leave a crumb of no area beside the real polygon; a grid would then count as "in two pieces".

    Parameters
    ----------
    geometries : array-like of shapely (Multi)Polygons
    min_area : float
        In the geometries' units squared.

    Returns
    -------
    numpy.ndarray
        Object array of the same length; single-part results are Polygons.
    """
    array = np.asarray(geometries, dtype=object).copy()
    multi = shapely.get_type_id(array) == shapely.GeometryType.MULTIPOLYGON
    for index in np.flatnonzero(multi):
        parts = shapely.get_parts(array[index])
        areas = shapely.area(parts)
        keep = (areas >= min_area) | (np.arange(len(parts)) == int(np.argmax(areas)))
        if not keep.all():
            kept = parts[keep]
            array[index] = kept[0] if len(kept) == 1 else shapely.multipolygons(list(kept))
    return array


def representative_points(geometries: Any) -> np.ndarray[Any, Any]:
    """Each geometry's representative point: a point itself, else GEOS's point on surface (what PostGIS's
    ``ST_PointOnSurface`` returns). Points, nearly every row of a census, are not sent through GEOS."""
    features = np.asarray(geometries, dtype=object)
    points = features.copy()
    other = shapely.get_type_id(features) != shapely.GeometryType.POINT
    if other.any():
        points[other] = shapely.point_on_surface(features[other])
    return points
