"""Read whole layers out of PostGIS as GeoDataFrames (for export and analysis)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import geopandas as gpd
from sqlalchemy import text
from sqlalchemy.orm import Session


def components(
    session: Session,
    class_codes: Sequence[str] = (),
    include_void: bool = False,
    at: dt.datetime | None = None,
) -> gpd.GeoDataFrame:
    """Current components (optionally of some classes) with their grid codes; the standard fields are named
    as an import reads them (supervisor and maintainer are department codes), the free attributes are one
    JSON text column. With ``at``, the versions in force at that instant instead (valid_from <= at <
    valid_to), with the grids they had then."""
    where = (
        ["c.valid_to IS NULL"]
        if at is None
        else ["c.valid_from <= :at", "(c.valid_to IS NULL OR c.valid_to > :at)"]
    )
    if not include_void:
        where.append("c.in_use")
    if class_codes:
        where.append("c.class_code = ANY(:classes)")
    sql = f"""
        SELECT c.code, c.class_code, k.name_zh AS class_name, c.name, c.status, c.in_use, c.owner,
               c.owner_department_code AS supervisor, c.maintainer_department_code AS maintainer,
               u.code AS unit_grid_code, r.code AS responsibility_grid_code, c.valid_from,
               c.attributes::text AS attributes, c.geom
        FROM component c
        JOIN component_class k ON k.code = c.class_code
        LEFT JOIN unit_grid u ON u.id = c.unit_grid_id
        LEFT JOIN responsibility_grid r ON r.id = c.responsibility_grid_id
        WHERE {" AND ".join(where)}
        ORDER BY c.code
    """
    return gpd.read_postgis(
        text(sql), session.connection(), geom_col="geom", params={"classes": list(class_codes), "at": at}
    )


def grids(session: Session, plan_id: int, kind: str) -> gpd.GeoDataFrame:
    """The unit or responsibility grids of one plan."""
    if kind == "unit":
        sql = """
            SELECT u.code, u.community_code, r.code AS responsibility_grid_code, u.area_m2, u.geom
            FROM unit_grid u LEFT JOIN responsibility_grid r ON r.id = u.responsibility_grid_id
            WHERE u.plan_id = :plan ORDER BY u.code
        """
    else:
        sql = """
            SELECT r.code, r.name, r.community_code, r.worker_name, r.worker_phone, r.households, r.geom
            FROM responsibility_grid r WHERE r.plan_id = :plan ORDER BY r.code
        """
    return gpd.read_postgis(text(sql), session.connection(), geom_col="geom", params={"plan": plan_id})


def boundaries(session: Session, level: str) -> gpd.GeoDataFrame:
    """District, street or community boundaries, in the fields an import of them reads (and households, for
    communities), with their parent's code for reading."""
    parent = {"district": "NULL::text", "street": "district_code", "community": "street_code"}[level]
    households = "households, " if level == "community" else ""
    sql = (
        f"SELECT code, name, {households}{parent} AS parent_code, attributes, geom FROM {level} ORDER BY code"
    )
    return gpd.read_postgis(text(sql), session.connection(), geom_col="geom")


def roads(session: Session) -> gpd.GeoDataFrame:
    """Every road, in the fields an import of roads reads (name, road_class, and the free attributes), in
    the order they were stored: the layer GIS staff edit and give back with ``import roads --replace``."""
    sql = "SELECT name, road_class, attributes, geom FROM road ORDER BY id"
    return gpd.read_postgis(text(sql), session.connection(), geom_col="geom")


def plan_id(session: Session, plan: str) -> int | None:
    """A plan's id from its id or 'active'."""
    if plan == "active":
        value = session.execute(text("SELECT id FROM grid_plan WHERE status = 'active'")).scalar()
    else:
        value = session.execute(text("SELECT id FROM grid_plan WHERE id = :id"), {"id": int(plan)}).scalar()
    return int(value) if value is not None else None
