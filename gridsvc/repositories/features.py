"""The SQL behind the OGC API Features layer: GeoJSON features built by PostGIS, a page at a time.

Each feature is made by one ``json_build_object`` per row (geometry by ``ST_AsGeoJSON`` in the asked CRS
and axis order), so Python only joins the texts: no geometry or JSON passes through Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class CollectionSql:
    """Where a collection's rows come from, their id and properties (``key``: ``'value expression'``)."""

    source: str
    alias: str
    id_column: str
    properties: dict[str, str]
    where: str = "true"
    per_plan: bool = False

    @property
    def properties_sql(self) -> str:
        """``json_build_object('name', expr, ...)``."""
        pairs = ", ".join(f"'{name}', {expr}" for name, expr in self.properties.items())
        return f"json_build_object({pairs})"


_STATION_NAME = (
    "coalesce(st.name, (SELECT s2.name FROM station s2 WHERE s2.community_code = r.community_code"
    " ORDER BY s2.id LIMIT 1))"
)

COLLECTIONS: dict[str, CollectionSql] = {
    "responsibility_grids": CollectionSql(
        source="responsibility_grid r JOIN community c ON c.code = r.community_code"
        " LEFT JOIN station st ON st.id = r.station_id",
        alias="r",
        id_column="r.code",
        properties={
            "code": "r.code",
            "name": "r.name",
            "community_code": "r.community_code",
            "community_name": "c.name",
            "station_name": _STATION_NAME,
            "worker_name": "r.worker_name",
            "households": "r.households",
            "workload": "r.workload",
            "plan_id": "r.plan_id",
        },
        where="r.plan_id = :plan",
        per_plan=True,
    ),
    "unit_grids": CollectionSql(
        source="unit_grid u LEFT JOIN responsibility_grid r ON r.id = u.responsibility_grid_id",
        alias="u",
        id_column="u.code",
        properties={
            "code": "u.code",
            "community_code": "u.community_code",
            "responsibility_grid_code": "r.code",
            "area_m2": "u.area_m2",
            "plan_id": "u.plan_id",
        },
        where="u.plan_id = :plan",
        per_plan=True,
    ),
    "components": CollectionSql(
        source="component c JOIN component_class k ON k.code = c.class_code"
        " LEFT JOIN unit_grid u ON u.id = c.unit_grid_id"
        " LEFT JOIN responsibility_grid r ON r.id = c.responsibility_grid_id",
        alias="c",
        id_column="c.code",
        properties={
            "code": "c.code",
            "class_code": "c.class_code",
            "class_name": "k.name_zh",
            "name": "c.name",
            "status": "c.status",
            "owner": "c.owner",
            "owner_department_code": "c.owner_department_code",
            "maintainer_department_code": "c.maintainer_department_code",
            "unit_grid_code": "u.code",
            "responsibility_grid_code": "r.code",
            "valid_from": "c.valid_from",
        },
        where="c.valid_to IS NULL AND c.in_use",
    ),
    # The station's public phone, never its staff list.
    "stations": CollectionSql(
        source="station s",
        alias="s",
        id_column="s.code",
        properties={
            "code": "s.code",
            "name": "s.name",
            "phone": "s.phone",
            "community_code": "s.community_code",
        },
    ),
    "communities": CollectionSql(
        source="community m",
        alias="m",
        id_column="m.code",
        properties={
            "code": "m.code",
            "name": "m.name",
            "street_code": "m.street_code",
            "kind": "m.kind",
            "households": "m.households",
        },
    ),
    "streets": CollectionSql(
        source="street t",
        alias="t",
        id_column="t.code",
        properties={"code": "t.code", "name": "t.name", "district_code": "t.district_code"},
    ),
    "districts": CollectionSql(
        source="district d",
        alias="d",
        id_column="d.code",
        properties={"code": "d.code", "name": "d.name"},
    ),
}

_BBOX = "ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4490)"


def _geometry(alias: str, *, srid: int, north_first: bool, digits: int) -> str:
    """GeoJSON of the row's geometry in ``srid`` (CGCS2000 rows are WGS 84 to PROJ: no transform for
    4326/CRS84), with the axes swapped when the CRS names north first (EPSG:4326, 4490, Gauss-Krüger)."""
    geom = f"{alias}.geom" if srid in (4326, 4490) else f"ST_Transform({alias}.geom, {int(srid)})"
    if north_first:
        geom = f"ST_FlipCoordinates({geom})"
    return f"ST_AsGeoJSON({geom}, {int(digits)})::json"


def _feature(sql: CollectionSql, *, srid: int, north_first: bool, digits: int) -> str:
    geometry = _geometry(sql.alias, srid=srid, north_first=north_first, digits=digits)
    return (
        f"json_build_object('type', 'Feature', 'id', {sql.id_column}, 'geometry', {geometry},"
        f" 'properties', {sql.properties_sql})::text"
    )


def items(
    session: Session,
    collection: str,
    *,
    plan_id: int | None,
    bbox: tuple[float, float, float, float] | None,
    limit: int,
    offset: int,
    srid: int,
    north_first: bool,
    digits: int,
    count: bool,
) -> tuple[list[str], bool, int | None]:
    """(feature texts, whether more follow, how many match or None) for one page ordered by id."""
    sql = COLLECTIONS[collection]
    where = [sql.where]
    params: dict[str, Any] = {"plan": plan_id, "limit": limit + 1, "offset": offset}
    if bbox is not None:
        geom = f"{sql.alias}.geom"
        where.append(f"{geom} && {_BBOX} AND ST_Intersects({geom}, {_BBOX})")
        params.update(minx=bbox[0], miny=bbox[1], maxx=bbox[2], maxy=bbox[3])
    condition = " AND ".join(where)
    rows = session.execute(
        text(
            f"SELECT {_feature(sql, srid=srid, north_first=north_first, digits=digits)}"
            f" FROM {sql.source} WHERE {condition} ORDER BY {sql.id_column} LIMIT :limit OFFSET :offset"
        ),
        params,
    ).scalars()
    features = list(rows)
    more = len(features) > limit
    matched = None
    if count:
        matched = int(
            session.execute(text(f"SELECT count(*) FROM {sql.source} WHERE {condition}"), params).scalar_one()
        )
    return features[:limit], more, matched


def item(
    session: Session,
    collection: str,
    feature_id: str,
    *,
    plan_id: int | None,
    srid: int,
    north_first: bool,
    digits: int,
) -> str | None:
    """One feature's GeoJSON text, or None."""
    sql = COLLECTIONS[collection]
    value = session.execute(
        text(
            f"SELECT {_feature(sql, srid=srid, north_first=north_first, digits=digits)}"
            f" FROM {sql.source} WHERE {sql.where} AND {sql.id_column} = :id"
        ),
        {"plan": plan_id, "id": feature_id},
    ).scalar_one_or_none()
    return str(value) if value is not None else None


def plan_ids(session: Session) -> tuple[int | None, set[int]]:
    """(the active plan's id or None, every plan's id)."""
    rows = session.execute(text("SELECT id, status FROM grid_plan")).all()
    active = next((int(i) for i, status in rows if status == "active"), None)
    return active, {int(i) for i, _ in rows}


def city_extent(session: Session) -> tuple[float, float, float, float] | None:
    """The districts' bounding box (lon/lat), or None when none are loaded."""
    row = session.execute(
        text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)"
            " FROM (SELECT ST_Extent(geom) AS e FROM district) x"
        )
    ).one()
    return None if row[0] is None else (float(row[0]), float(row[1]), float(row[2]), float(row[3]))
