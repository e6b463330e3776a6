"""The data model. Every geometry is stored in CGCS2000 lon/lat (EPSG:4490, see docs/ARCHITECTURE.md).

The constraints here are the last line of defence: services validate and explain first, but
nothing that breaks a code format, a geometry's validity or the one-active-plan rule can be
written even by a buggy caller or a hand-made SQL session. Neither can overlapping grids of one
plan: that rule is a pair of triggers per grid table (migration 0009), which the models cannot
express; the docstrings of ``UnitGrid`` and ``ResponsibilityGrid`` say so.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STORAGE_SRID = 4490

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

COMPONENT_STATUSES = ("intact", "damaged", "missing", "occupied", "abandoned", "removed")
GEOMETRY_KINDS = ("point", "line", "polygon")
PLAN_STATUSES = ("draft", "active", "retired")
PLAN_EDIT_KINDS = ("split", "merge", "move")
CASE_KINDS = ("component", "event")
CASE_STATUSES = (
    "reported",
    "registered",
    "rejected",
    "dispatched",
    "in_progress",
    "reported_back",
    "verified",
    "closed",
    "parked",
)
CASE_ACTIONS = (
    "intake",
    "register",
    "reject",
    "dispatch",
    "handle",
    "report_back",
    "verify",
    "rework",
    "close",
    "reassign",
    "park",
    "unpark",
    "link_duplicate",
    "escalate",
)
OPEN311_CLOSED_STATUSES = ("closed", "rejected")
CHANNELS = ("hotline_12345", "online", "app", "mini_program", "patrol", "video", "open311")
HANDLING_LEVELS = ("community", "street", "district", "city")
ROLES = ("gis_staff", "dispatcher", "field", "reporter")
LIMIT_UNITS = ("working_minutes", "working_hours", "working_days", "calendar_hours")
CASE_STAGES = ("register", "dispatch", "handle", "verify", "close")


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def _valid(column: str = "geom") -> str:
    return f"ST_IsValid({column}) AND NOT ST_IsEmpty({column})"


def _geom(kind: str, *, nullable: bool = False) -> Mapped[Any]:
    return mapped_column(Geometry(kind, srid=STORAGE_SRID, spatial_index=True), nullable=nullable)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints predictably."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


# --- administrative hierarchy (GB/T 2260 and the statistics codes) -------------------------------


class District(Base):
    """A county-level unit (区/县): 6-digit code."""

    __tablename__ = "district"
    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    # Fields of the imported file that map to no column (never dropped; migration 0011).
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    geom: Mapped[Any] = _geom("MULTIPOLYGON")
    __table_args__ = (
        CheckConstraint(r"code ~ '^\d{6}$'", name="code_format"),
        CheckConstraint("jsonb_typeof(attributes) = 'object'", name="attributes_is_object"),
        CheckConstraint(_valid(), name="geom_valid"),
    )


class Street(Base):
    """A street (街道) or town (镇/乡): 9-digit code = district code + 3."""

    __tablename__ = "street"
    code: Mapped[str] = mapped_column(String(9), primary_key=True)
    district_code: Mapped[str] = mapped_column(ForeignKey("district.code"), index=True)
    name: Mapped[str] = mapped_column(Text)
    # Fields of the imported file that map to no column (never dropped; migration 0011).
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    geom: Mapped[Any] = _geom("MULTIPOLYGON")
    __table_args__ = (
        CheckConstraint(r"code ~ '^\d{9}$'", name="code_format"),
        CheckConstraint("jsonb_typeof(attributes) = 'object'", name="attributes_is_object"),
        CheckConstraint("left(code, 6) = district_code", name="code_in_district"),
        CheckConstraint(_valid(), name="geom_valid"),
    )


class Community(Base):
    """A community (社区) or village (村): 12-digit code = street code + 3."""

    __tablename__ = "community"
    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    street_code: Mapped[str] = mapped_column(ForeignKey("street.code"), index=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), server_default="community")
    households: Mapped[int] = mapped_column(Integer, server_default="0")
    # Fields of the imported file that map to no column (never dropped; migration 0011).
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    geom: Mapped[Any] = _geom("MULTIPOLYGON")
    __table_args__ = (
        CheckConstraint(r"code ~ '^\d{12}$'", name="code_format"),
        CheckConstraint("jsonb_typeof(attributes) = 'object'", name="attributes_is_object"),
        CheckConstraint("left(code, 9) = street_code", name="code_in_street"),
        CheckConstraint("kind IN ('community', 'village')", name="kind_known"),
        CheckConstraint("households >= 0", name="households_nonnegative"),
        CheckConstraint(_valid(), name="geom_valid"),
    )


class Station(Base):
    """A community urban-management station (城管工作站): where a community's issues go."""

    __tablename__ = "station"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    community_code: Mapped[str] = mapped_column(ForeignKey("community.code"), index=True)
    name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(32))
    staff: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # Fields of the imported file that map to no column (never dropped; migration 0011).
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    geom: Mapped[Any] = _geom("POINT")
    __table_args__ = (
        CheckConstraint("jsonb_typeof(attributes) = 'object'", name="attributes_is_object"),
        CheckConstraint(r"phone IS NULL OR phone ~ '^[0-9+() -]{5,20}(转[0-9]{1,6})?$'", name="phone_format"),
        CheckConstraint("jsonb_typeof(staff) = 'array'", name="staff_is_list"),
        CheckConstraint(_valid(), name="geom_valid"),
    )


class ResidentialBuilding(Base):
    """A residential building with its household count: the households load of grids."""

    __tablename__ = "residential_building"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    community_code: Mapped[str] = mapped_column(ForeignKey("community.code"), index=True)
    households: Mapped[int] = mapped_column(Integer)
    geom: Mapped[Any] = _geom("POINT")
    __table_args__ = (
        CheckConstraint("households >= 0", name="households_nonnegative"),
        CheckConstraint(_valid(), name="geom_valid"),
    )


# --- departments and classes (seeded data, not enums: a city changes them) ----------------------


class Department(Base):
    """A department that owns or maintains components and handles cases (照明, 环卫, ...)."""

    __tablename__ = "department"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name_zh: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(32))
    __table_args__ = (CheckConstraint("code ~ '^[a-z][a-z0-9_]*$'", name="code_format"),)


class ComponentClass(Base):
    """A component class (CJ/T 214 major + minor code, or a city extension)."""

    __tablename__ = "component_class"
    code: Mapped[str] = mapped_column(String(5), primary_key=True)
    major_code: Mapped[str] = mapped_column(String(2))
    minor_code: Mapped[str] = mapped_column(String(3))
    name_zh: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str] = mapped_column(Text)
    default_department_code: Mapped[str | None] = mapped_column(ForeignKey("department.code"))
    geometry_kind: Mapped[str] = mapped_column(String(8), server_default="point")
    is_city_extension: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    snap_distance_m: Mapped[float] = mapped_column(Numeric(8, 1), server_default="50")
    duplicate_radius_m: Mapped[float] = mapped_column(Numeric(8, 1), server_default="50")
    duplicate_window_hours: Mapped[float] = mapped_column(Numeric(8, 1), server_default="72")
    __table_args__ = (
        CheckConstraint(r"code ~ '^\d{4,5}$'", name="code_format"),
        CheckConstraint("code = major_code || minor_code", name="code_parts"),
        CheckConstraint(_in("geometry_kind", GEOMETRY_KINDS), name="geometry_kind_known"),
    )


class EventClass(Base):
    """An event class (事件): something wrong that is not a component (exposed garbage, illegal parking)."""

    __tablename__ = "event_class"
    code: Mapped[str] = mapped_column(String(5), primary_key=True)
    major_code: Mapped[str] = mapped_column(String(2))
    major_name_zh: Mapped[str] = mapped_column(Text)
    name_zh: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str] = mapped_column(Text)
    default_department_code: Mapped[str | None] = mapped_column(ForeignKey("department.code"))
    duplicate_radius_m: Mapped[float] = mapped_column(Numeric(8, 1), server_default="100")
    duplicate_window_hours: Mapped[float] = mapped_column(Numeric(8, 1), server_default="24")
    __table_args__ = (
        CheckConstraint(r"code ~ '^\d{4,5}$'", name="code_format"),
        CheckConstraint("left(code, 2) = major_code", name="code_parts"),
    )


# --- survey data: components, roads, other departments' nets -------------------------------------


class SurveyBatch(Base):
    """One import of one file: what came in, from whom, and what happened to it."""

    __tablename__ = "survey_batch"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer: Mapped[str] = mapped_column(String(32))
    source_file: Mapped[str] = mapped_column(Text)
    checksum_sha256: Mapped[str | None] = mapped_column(String(64))
    imported_by: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[dt.datetime] = _now()
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    source_format: Mapped[str | None] = mapped_column(String(32))
    source_crs: Mapped[str | None] = mapped_column(String(32))
    warnings: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    __table_args__ = (
        CheckConstraint(
            "layer IN ('components', 'boundaries', 'stations', 'net', 'roads', 'demo')", name="layer_known"
        ),
    )


class ImportProblem(Base):
    """One rejected or repaired row of an import, with where and why: the report GIS staff fix in QGIS."""

    __tablename__ = "import_problem"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    survey_batch_id: Mapped[int] = mapped_column(
        ForeignKey("survey_batch.id", ondelete="CASCADE"), index=True
    )
    source_row: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(10))
    # json, not jsonb: the served report lists a row's fields in the file's order (migration 0015).
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, server_default=text("'{}'::json"))
    # The row's geometry as it came (it may be invalid: that is often why it is here), so no validity check.
    geom: Mapped[Any] = mapped_column(
        Geometry("GEOMETRY", srid=STORAGE_SRID, spatial_index=False), nullable=True
    )
    __table_args__ = (CheckConstraint("action IN ('rejected', 'repaired')", name="action_known"),)


class Component(Base):
    """One version of one urban component (部件); an update closes the old row (valid_to), adds a new one."""

    __tablename__ = "component"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(17))
    # NOT NULL and a foreign key: no component without a known class.
    class_code: Mapped[str] = mapped_column(ForeignKey("component_class.code"))
    name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="intact")
    in_use: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    owner: Mapped[str | None] = mapped_column(Text)
    owner_department_code: Mapped[str | None] = mapped_column(ForeignKey("department.code"))
    maintainer_department_code: Mapped[str | None] = mapped_column(ForeignKey("department.code"))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    survey_batch_id: Mapped[int | None] = mapped_column(ForeignKey("survey_batch.id"))
    unit_grid_id: Mapped[int | None] = mapped_column(ForeignKey("unit_grid.id", ondelete="SET NULL"))
    responsibility_grid_id: Mapped[int | None] = mapped_column(
        ForeignKey("responsibility_grid.id", ondelete="SET NULL")
    )
    valid_from: Mapped[dt.datetime] = _now()
    valid_to: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    geom: Mapped[Any] = _geom("GEOMETRY")
    __table_args__ = (
        # 16 or 17 ASCII digits, without the regular-expression engine on every row (migration 0012).
        CheckConstraint(
            "octet_length(code) IN (16, 17) AND ltrim(code, '0123456789') = ''", name="code_format"
        ),
        CheckConstraint("substr(code, 7, length(class_code)) = class_code", name="code_matches_class"),
        CheckConstraint(_in("status", COMPONENT_STATUSES), name="status_known"),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="validity_ordered"),
        CheckConstraint("jsonb_typeof(attributes) = 'object'", name="attributes_is_object"),
        CheckConstraint(
            "GeometryType(geom) IN ('POINT', 'LINESTRING', 'MULTILINESTRING', 'POLYGON', 'MULTIPOLYGON')",
            name="geom_type",
        ),
        CheckConstraint(_valid(), name="geom_valid"),
        # One current version per code; history rows (valid_to set) may repeat it.
        Index("uq_component_current_code", "code", unique=True, postgresql_where=text("valid_to IS NULL")),
        Index("ix_component_class_code", "class_code"),
        Index("ix_component_unit_grid_id", "unit_grid_id"),
        Index("ix_component_responsibility_grid_id", "responsibility_grid_id"),
        Index("ix_component_survey_batch_id", "survey_batch_id"),
    )


class Road(Base):
    """A road centre line: unit grids are cut along roads."""

    __tablename__ = "road"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    road_class: Mapped[str] = mapped_column(String(16))
    district_code: Mapped[str | None] = mapped_column(ForeignKey("district.code"))
    survey_batch_id: Mapped[int | None] = mapped_column(ForeignKey("survey_batch.id"))
    # Fields of the imported file that map to no column (never dropped; migration 0011).
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    geom: Mapped[Any] = _geom("MULTILINESTRING")
    __table_args__ = (
        CheckConstraint("jsonb_typeof(attributes) = 'object'", name="attributes_is_object"),
        CheckConstraint(
            "road_class IN ('arterial', 'secondary', 'branch', 'rural')", name="road_class_known"
        ),
        CheckConstraint(_valid(), name="geom_valid"),
    )


class Net(Base):
    """Another department's grid (综治, 党建, 公安, ...): merged under multi-net-in-one."""

    __tablename__ = "net"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(Text)
    department: Mapped[str] = mapped_column(Text)
    survey_batch_id: Mapped[int | None] = mapped_column(ForeignKey("survey_batch.id"))
    __table_args__ = (CheckConstraint("code ~ '^[a-z][a-z0-9_]*$'", name="code_format"),)


class NetPolygon(Base):
    """One polygon of another department's net."""

    __tablename__ = "net_polygon"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    net_id: Mapped[int] = mapped_column(ForeignKey("net.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    geom: Mapped[Any] = _geom("MULTIPOLYGON")
    __table_args__ = (
        UniqueConstraint("net_id", "code", name="uq_net_polygon_net_code"),
        CheckConstraint(_valid(), name="geom_valid"),
    )


# --- grid plans ---------------------------------------------------------------------------------


class GridPlan(Base):
    """A versioned set of unit and responsibility grids: draft, then active, then retired."""

    __tablename__ = "grid_plan"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), server_default="draft")
    code_digits: Mapped[int] = mapped_column(SmallInteger, server_default="15")
    effective_from: Mapped[dt.date | None] = mapped_column(Date)
    effective_to: Mapped[dt.date | None] = mapped_column(Date)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _now()
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    __table_args__ = (
        CheckConstraint(_in("status", PLAN_STATUSES), name="status_known"),
        CheckConstraint("code_digits IN (14, 15)", name="code_digits_known"),
        CheckConstraint("status = 'draft' OR effective_from IS NOT NULL", name="effective_from_set"),
        CheckConstraint("status <> 'retired' OR effective_to IS NOT NULL", name="retired_has_end"),
        CheckConstraint("effective_to IS NULL OR effective_to >= effective_from", name="effective_ordered"),
        # At most one active plan, enforced by the database so two concurrent activations cannot both win.
        Index("uq_grid_plan_one_active", "status", unique=True, postgresql_where=text("status = 'active'")),
    )


class ResponsibilityGrid(Base):
    """A responsibility grid (责任网格): one worker, one station; a union of whole unit grids.

    Grids of one plan may not overlap (more than a 0.1 m² sliver): the triggers
    ``responsibility_grid_no_overlap_insert``/``_update`` of migration 0009 refuse it, which SQLAlchemy
    cannot express (an EXCLUDE constraint with ``&&`` would refuse neighbours too).
    """

    __tablename__ = "responsibility_grid"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("grid_plan.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(24))
    name: Mapped[str | None] = mapped_column(Text)
    community_code: Mapped[str] = mapped_column(ForeignKey("community.code"), index=True)
    station_id: Mapped[int | None] = mapped_column(ForeignKey("station.id"))
    worker_name: Mapped[str | None] = mapped_column(Text)
    worker_phone: Mapped[str | None] = mapped_column(String(32))
    households: Mapped[int] = mapped_column(Integer, server_default="0")
    workload: Mapped[Decimal | None] = mapped_column(Numeric(12, 3))
    geom: Mapped[Any] = _geom("MULTIPOLYGON")
    __table_args__ = (
        UniqueConstraint("plan_id", "code", name="uq_responsibility_grid_plan_code"),
        CheckConstraint("left(code, 12) = community_code", name="code_in_community"),
        CheckConstraint(_valid(), name="geom_valid"),
    )


class UnitGrid(Base):
    """A unit grid (单元网格): the atomic cell, inside exactly one community; 14- or 15-digit code.

    Unit grids of one plan may not overlap (more than a 0.1 m² sliver): triggers of migration 0009
    (``unit_grid_no_overlap_insert``/``_update``), as for responsibility grids.
    """

    __tablename__ = "unit_grid"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("grid_plan.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(15))
    community_code: Mapped[str] = mapped_column(ForeignKey("community.code"), index=True)
    responsibility_grid_id: Mapped[int | None] = mapped_column(
        ForeignKey("responsibility_grid.id", ondelete="SET NULL"), index=True
    )
    area_m2: Mapped[float] = mapped_column(Numeric(14, 2))
    geom: Mapped[Any] = _geom("MULTIPOLYGON")
    __table_args__ = (
        UniqueConstraint("plan_id", "code", name="uq_unit_grid_plan_code"),
        CheckConstraint(r"code ~ '^\d{14,15}$'", name="code_format"),
        CheckConstraint("left(code, 12) = community_code", name="code_in_community"),
        CheckConstraint(_valid(), name="geom_valid"),
    )


class PlanEdit(Base):
    """One hand edit of a draft plan (split, merge, move): the plan's version after it, who, and what."""

    __tablename__ = "plan_edit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("grid_plan.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    actor: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[dt.datetime] = _now()
    __table_args__ = (
        # One edit per version: two edits made against the same version cannot both be written, and the
        # unique index (plan_id first) is the one a plan's history is read by.
        UniqueConstraint("plan_id", "version", name="uq_plan_edit_plan_version"),
        CheckConstraint(_in("kind", PLAN_EDIT_KINDS), name="kind_known"),
        CheckConstraint("version > 1", name="version_after_an_edit"),
    )


# --- cases, their history, time limits and the working calendar ----------------------------------


class Case(Base):
    """A case (案件): a component or event problem, from intake to closure."""

    __tablename__ = "case_record"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    request_code: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    component_class_code: Mapped[str | None] = mapped_column(ForeignKey("component_class.code"))
    event_class_code: Mapped[str | None] = mapped_column(ForeignKey("event_class.code"))
    status: Mapped[str] = mapped_column(String(16), server_default="reported")
    channel: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    reporter_contact: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    component_id: Mapped[int | None] = mapped_column(ForeignKey("component.id", ondelete="SET NULL"))
    unit_grid_id: Mapped[int | None] = mapped_column(ForeignKey("unit_grid.id", ondelete="SET NULL"))
    responsibility_grid_id: Mapped[int | None] = mapped_column(
        ForeignKey("responsibility_grid.id", ondelete="SET NULL")
    )
    community_code: Mapped[str | None] = mapped_column(ForeignKey("community.code"))
    street_code: Mapped[str | None] = mapped_column(ForeignKey("street.code"))
    district_code: Mapped[str | None] = mapped_column(ForeignKey("district.code"))
    station_id: Mapped[int | None] = mapped_column(ForeignKey("station.id"))
    department_code: Mapped[str | None] = mapped_column(ForeignKey("department.code"))
    handling_level: Mapped[str | None] = mapped_column(String(10))
    needs_confirmation: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    routing: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("case_record.id"))
    # The order number of the channel that sent it (a 12345 work order): re-loading a file finds it again.
    external_ref: Mapped[str | None] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16), server_default="normal")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    media_url: Mapped[str | None] = mapped_column(Text)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("grid_plan.id", ondelete="SET NULL"))
    rework_count: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    parked_from: Mapped[str | None] = mapped_column(String(16))
    reported_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _now()
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    deadline: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The handling deadline the handler works to now: set at dispatch, renewed by escalation and rework.
    handle_deadline: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The handling deadline set at dispatch, moved only by the working time the case spent parked (挂账 stops
    # the clock, DOMAIN.md §4): a report-back by then is on time (按期), whatever escalation or rework
    # later gave the handler (migration 0014). NULL before dispatch, and on rows loaded without it (the demo
    # loader): those are scored against handle_deadline.
    on_time_deadline: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    handled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    geom: Mapped[Any] = _geom("POINT")
    __table_args__ = (
        CheckConstraint(_in("kind", CASE_KINDS), name="kind_known"),
        CheckConstraint(
            "(kind = 'component' AND component_class_code IS NOT NULL AND event_class_code IS NULL) OR "
            "(kind = 'event' AND event_class_code IS NOT NULL AND component_class_code IS NULL)",
            name="one_class",
        ),
        CheckConstraint(_in("status", CASE_STATUSES), name="status_known"),
        CheckConstraint(_in("channel", CHANNELS), name="channel_known"),
        CheckConstraint(
            f"handling_level IS NULL OR {_in('handling_level', HANDLING_LEVELS)}", name="level_known"
        ),
        CheckConstraint("closed_at IS NULL OR closed_at >= reported_at", name="closed_after_reported"),
        CheckConstraint("rework_count >= 0", name="rework_count_nonnegative"),
        CheckConstraint(
            f"parked_from IS NULL OR {_in('parked_from', CASE_STATUSES)}", name="parked_from_known"
        ),
        CheckConstraint(_valid(), name="geom_valid"),
        # A routing record (migration 0009): the decisions with their reasons (route()'s "owner" and the
        # rest), or where loaded cases got their routing ("source"); and someone who answers for the case,
        # the district it lies in (属地兜底) or a department, at a known handling level.
        CheckConstraint(
            "jsonb_typeof(routing) = 'object' AND routing ?| ARRAY['owner', 'source']",
            name="routing_recorded",
        ),
        CheckConstraint(
            "handling_level IS NOT NULL AND (district_code IS NOT NULL OR department_code IS NOT NULL)",
            name="routed_to_someone",
        ),
        UniqueConstraint("channel", "external_ref", name="uq_case_record_channel_external_ref"),
        Index("ix_case_record_status", "status"),
        Index("ix_case_record_reported_at", "reported_at"),
        Index("ix_case_record_responsibility_grid_id", "responsibility_grid_id"),
        Index("ix_case_record_district_code", "district_code"),
        # Foreign keys that other tables' deletes look up: without these, retiring a survey scans the cases.
        Index("ix_case_record_component_id", "component_id"),
        Index("ix_case_record_unit_grid_id", "unit_grid_id"),
        Index("ix_case_record_duplicate_of_id", "duplicate_of_id"),
    )


class CaseEvent(Base):
    """One step in a case's history: who did what, when, and the status it moved between."""

    __tablename__ = "case_event"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_record.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(SmallInteger)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    __table_args__ = (
        UniqueConstraint("case_id", "seq", name="uq_case_event_case_seq"),
        CheckConstraint(_in("action", CASE_ACTIONS), name="action_known"),
        CheckConstraint(_in("to_status", CASE_STATUSES), name="to_status_known"),
    )


class TimeLimitRule(Base):
    """How long a stage may take for a class (and severity/area), in working or calendar time."""

    __tablename__ = "time_limit_rule"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_kind: Mapped[str] = mapped_column(String(10))
    class_code: Mapped[str | None] = mapped_column(String(5))
    severity: Mapped[str] = mapped_column(String(16), server_default="normal")
    area_type: Mapped[str] = mapped_column(String(16), server_default="any")
    stage: Mapped[str] = mapped_column(String(16))
    limit_value: Mapped[Decimal] = mapped_column(Numeric(8, 2))
    limit_unit: Mapped[str] = mapped_column(String(16))
    handling_level: Mapped[str | None] = mapped_column(String(10))
    __table_args__ = (
        UniqueConstraint(
            "case_kind", "class_code", "severity", "area_type", "stage", name="uq_time_limit_rule_key"
        ),
        CheckConstraint(_in("case_kind", CASE_KINDS), name="kind_known"),
        CheckConstraint(_in("stage", CASE_STAGES), name="stage_known"),
        CheckConstraint(_in("limit_unit", LIMIT_UNITS), name="unit_known"),
        CheckConstraint("limit_value > 0", name="limit_positive"),
    )


class HotlineCategory(Base):
    """How a 12345 work order's category text maps to a case class: a table dispatchers edit."""

    __tablename__ = "hotline_category"
    category_text: Mapped[str] = mapped_column(Text, primary_key=True)
    case_kind: Mapped[str] = mapped_column(String(10))
    class_code: Mapped[str] = mapped_column(String(5))
    __table_args__ = (
        CheckConstraint(_in("case_kind", CASE_KINDS), name="kind_known"),
        CheckConstraint(r"class_code ~ '^\d{4,5}$'", name="class_code_format"),
    )


class RequestCounter(Base):
    """The last request-code sequence used on a day: one row lock hands out the next number."""

    __tablename__ = "request_counter"
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)
    __table_args__ = (CheckConstraint("last_seq >= 0", name="last_seq_nonnegative"),)


class WorkingPeriod(Base):
    """Working hours of an ordinary working day (ISO weekday 1 = Monday)."""

    __tablename__ = "working_period"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    weekday: Mapped[int] = mapped_column(SmallInteger)
    start_time: Mapped[dt.time] = mapped_column(Time)
    end_time: Mapped[dt.time] = mapped_column(Time)
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 1 AND 7", name="weekday_range"),
        CheckConstraint("end_time > start_time", name="period_ordered"),
    )


class CalendarDay(Base):
    """An exception to the weekly pattern: a holiday, or a weekend day worked (调休)."""

    __tablename__ = "calendar_day"
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    is_working: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str | None] = mapped_column(Text)


# --- access: API keys and the audit log ----------------------------------------------------------


class ApiKey(Base):
    """An API key; only its SHA-256 is stored, the key itself is shown once when made."""

    __tablename__ = "api_key"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = _now()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # A key that nobody renews stops working by itself (a lost phone, a contractor who left).
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role_known"),
        CheckConstraint("key_sha256 ~ '^[0-9a-f]{64}$'", name="hash_format"),
        CheckConstraint("expires_at IS NULL OR expires_at > created_at", name="expires_after_created"),
    )


class TileStore(Base):
    """A rendered vector tile (MVT bytes) of one layer, with the data stamp it was drawn at.

    UNLOGGED (migration 0010): derived data, rendered again after a crash empties it. Only the tiles every
    user sees alike are kept (no class or status filter, the active plan); a row whose stamp is not the
    layer's current one is stale and simply not used.
    """

    __tablename__ = "tile_store"
    layer: Mapped[str] = mapped_column(String(32), primary_key=True)
    z: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    x: Mapped[int] = mapped_column(Integer, primary_key=True)
    y: Mapped[int] = mapped_column(Integer, primary_key=True)
    stamp: Mapped[str] = mapped_column(Text)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    features: Mapped[int] = mapped_column(Integer)
    truncated: Mapped[bool] = mapped_column(Boolean)
    rendered_at: Mapped[dt.datetime] = _now()
    __table_args__ = (
        CheckConstraint("z BETWEEN 0 AND 22", name="zoom_range"),
        CheckConstraint(
            "x >= 0 AND y >= 0 AND x < (1::bigint << z) AND y < (1::bigint << z)", name="xy_in_zoom"
        ),
        CheckConstraint("features >= 0", name="features_counted"),
        {"prefixes": ["UNLOGGED"]},
    )


class AuditLog(Base):
    """Every change made through the service: who, what, when. Append-only (a trigger, migration 0008)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[dt.datetime] = _now()
    actor: Mapped[str] = mapped_column(Text)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id"))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    __table_args__ = (Index("ix_audit_log_at", "at"),)
