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
