"""The SQL behind the map pages that no other resource answers: nearest components, grid extents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridsvc.repositories.cases import DEGREES_PER_METRE_BOUND


def nearest_components(
    session: Session, class_code: str, lon: float, lat: float, *, limit: int, within_m: float
) -> list[dict[str, Any]]:
    """The current, in-use components of a class within ``within_m`` metres of a point, nearest first.

    Distances are geodesic; the index prefilter in degrees keeps every point the geodesic test keeps
    (``DEGREES_PER_METRE_BOUND``), so the answer is exact, not the planar KNN's approximation.
    """
    rows = session.execute(
        text(
            """
            WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) AS g)
            SELECT c.code, c.name, c.class_code, k.name_zh AS class_name, c.status,
                   ST_X(cp) AS lon, ST_Y(cp) AS lat,
                   ST_Distance(c.geom::geography, pt.g::geography) AS distance_m
            FROM component c JOIN component_class k ON k.code = c.class_code, pt,
                 LATERAL ST_ClosestPoint(c.geom, pt.g) AS cp
            WHERE c.class_code = :cls AND c.valid_to IS NULL AND c.in_use
              AND ST_DWithin(c.geom, pt.g, :deg)
              AND ST_DWithin(c.geom::geography, pt.g::geography, :m)
            ORDER BY distance_m, c.code
            LIMIT :limit
            """
        ),
        {
            "lon": lon,
            "lat": lat,
            "cls": class_code,
            "m": within_m,
            "deg": within_m * DEGREES_PER_METRE_BOUND,
            "limit": limit,
        },
    ).mappings()
    return [dict(row) for row in rows]


def grid_extents(session: Session, *, plan: int, codes: list[str]) -> dict[str, list[float]]:
    """The box (minx, miny, maxx, maxy) of each of these responsibility grids of a plan."""
    rows = session.execute(
        text(
            """
            SELECT r.code, ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b)
            FROM responsibility_grid r, LATERAL ST_Envelope(r.geom) AS b
            WHERE r.plan_id = :plan AND r.code = ANY(:codes)
            """
        ),
        {"plan": plan, "codes": codes},
    )
    return {str(code): [float(v) for v in box] for code, *box in rows}


def loaded_extent(session: Session) -> list[float] | None:
    """The box of the districts loaded (the demo's one district, or the whole city); None when empty."""
    row = session.execute(
        text(
            """
            SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
            FROM (SELECT ST_Extent(geom) AS e FROM district) AS x
            WHERE e IS NOT NULL
            """
        )
    ).one_or_none()
    return [float(v) for v in row] if row else None
