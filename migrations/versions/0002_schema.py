"""Create the gridsvc schema: admin hierarchy, stations, classes, components, nets, plans, cases, access.

Revision ID: 0002_schema
Revises: 0001_postgis
Create Date: 2026-11-23 19:24:27.614522
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0002_schema"
down_revision: str | None = "0001_postgis"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("key_sha256 ~ '^[0-9a-f]{64}$'", name=op.f("ck_api_key_hash_format")),
        sa.CheckConstraint(
            "role IN ('gis_staff', 'dispatcher', 'field', 'reporter')", name=op.f("ck_api_key_role_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_api_key_key_sha256")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_key_prefix")),
    )
    op.create_table(
        "calendar_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("is_working", sa.Boolean(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_calendar_day")),
    )
    op.create_table(
        "department",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name_zh", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.CheckConstraint("code ~ '^[a-z][a-z0-9_]*$'", name=op.f("ck_department_code_format")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_department")),
    )
    op.create_geospatial_table(
        "district",
        sa.Column("code", sa.String(length=6), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^\\d{6}$'", name=op.f("ck_district_code_format")),
        sa.CheckConstraint("ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_district_geom_valid")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_district")),
    )
    op.create_geospatial_index(
        "idx_district_geom", "district", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_table(
        "grid_plan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=8), server_default="draft", nullable=False),
        sa.Column("code_digits", sa.SmallInteger(), server_default="15", nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=True),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column(
            "parameters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("quality", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "status <> 'retired' OR effective_to IS NOT NULL", name=op.f("ck_grid_plan_retired_has_end")
        ),
        sa.CheckConstraint(
            "status = 'draft' OR effective_from IS NOT NULL", name=op.f("ck_grid_plan_effective_from_set")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'retired')", name=op.f("ck_grid_plan_status_known")
        ),
        sa.CheckConstraint("code_digits IN (14, 15)", name=op.f("ck_grid_plan_code_digits_known")),
        sa.CheckConstraint(
            "effective_to IS NULL OR effective_to >= effective_from",
            name=op.f("ck_grid_plan_effective_ordered"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_plan")),
    )
    op.create_index(
        "uq_grid_plan_one_active",
        "grid_plan",
        ["status"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "survey_batch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("layer", sa.String(length=32), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=False),
        sa.Column("checksum_sha256", sa.String(length=64), nullable=True),
        sa.Column("imported_by", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "counts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "parameters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "layer IN ('components', 'boundaries', 'stations', 'net', 'roads', 'demo')",
            name=op.f("ck_survey_batch_layer_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_batch")),
    )
    op.create_table(
        "time_limit_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_kind", sa.String(length=10), nullable=False),
        sa.Column("class_code", sa.String(length=5), nullable=True),
        sa.Column("severity", sa.String(length=16), server_default="normal", nullable=False),
        sa.Column("area_type", sa.String(length=16), server_default="any", nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("limit_value", sa.Numeric(precision=8, scale=2), nullable=False),
        sa.Column("limit_unit", sa.String(length=16), nullable=False),
        sa.Column("handling_level", sa.String(length=10), nullable=True),
        sa.CheckConstraint("case_kind IN ('component', 'event')", name=op.f("ck_time_limit_rule_kind_known")),
        sa.CheckConstraint(
            "limit_unit IN ('working_minutes', 'working_hours', 'working_days', 'calendar_hours')",
            name=op.f("ck_time_limit_rule_unit_known"),
        ),
        sa.CheckConstraint(
            "stage IN ('register', 'dispatch', 'handle', 'verify', 'close')",
            name=op.f("ck_time_limit_rule_stage_known"),
        ),
        sa.CheckConstraint("limit_value > 0", name=op.f("ck_time_limit_rule_limit_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_time_limit_rule")),
        sa.UniqueConstraint(
            "case_kind", "class_code", "severity", "area_type", "stage", name="uq_time_limit_rule_key"
        ),
    )
    op.create_table(
        "working_period",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.SmallInteger(), nullable=False),
        sa.Column("start_time", sa.Time(), nullable=False),
        sa.Column("end_time", sa.Time(), nullable=False),
        sa.CheckConstraint("end_time > start_time", name=op.f("ck_working_period_period_ordered")),
        sa.CheckConstraint("weekday BETWEEN 1 AND 7", name=op.f("ck_working_period_weekday_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_working_period")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_key.id"], name=op.f("fk_audit_log_api_key_id_api_key")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)
    op.create_table(
        "component_class",
        sa.Column("code", sa.String(length=5), nullable=False),
        sa.Column("major_code", sa.String(length=2), nullable=False),
        sa.Column("minor_code", sa.String(length=3), nullable=False),
        sa.Column("name_zh", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=False),
        sa.Column("default_department_code", sa.String(length=32), nullable=True),
        sa.Column("geometry_kind", sa.String(length=8), server_default="point", nullable=False),
        sa.Column("is_city_extension", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("snap_distance_m", sa.Numeric(precision=8, scale=1), server_default="50", nullable=False),
        sa.Column(
            "duplicate_radius_m", sa.Numeric(precision=8, scale=1), server_default="50", nullable=False
        ),
        sa.CheckConstraint("code ~ '^\\d{4,5}$'", name=op.f("ck_component_class_code_format")),
        sa.CheckConstraint(
            "geometry_kind IN ('point', 'line', 'polygon')",
            name=op.f("ck_component_class_geometry_kind_known"),
        ),
        sa.CheckConstraint("code = major_code || minor_code", name=op.f("ck_component_class_code_parts")),
        sa.ForeignKeyConstraint(
            ["default_department_code"],
            ["department.code"],
            name=op.f("fk_component_class_default_department_code_department"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_component_class")),
    )
    op.create_table(
        "event_class",
        sa.Column("code", sa.String(length=5), nullable=False),
        sa.Column("major_code", sa.String(length=2), nullable=False),
        sa.Column("major_name_zh", sa.Text(), nullable=False),
        sa.Column("name_zh", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=False),
        sa.Column("default_department_code", sa.String(length=32), nullable=True),
        sa.Column(
            "duplicate_radius_m", sa.Numeric(precision=8, scale=1), server_default="100", nullable=False
        ),
        sa.CheckConstraint("code ~ '^\\d{4,5}$'", name=op.f("ck_event_class_code_format")),
        sa.CheckConstraint("left(code, 2) = major_code", name=op.f("ck_event_class_code_parts")),
        sa.ForeignKeyConstraint(
            ["default_department_code"],
            ["department.code"],
            name=op.f("fk_event_class_default_department_code_department"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_event_class")),
    )
    op.create_table(
        "net",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("survey_batch_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("code ~ '^[a-z][a-z0-9_]*$'", name=op.f("ck_net_code_format")),
        sa.ForeignKeyConstraint(
            ["survey_batch_id"], ["survey_batch.id"], name=op.f("fk_net_survey_batch_id_survey_batch")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_net")),
        sa.UniqueConstraint("code", name=op.f("uq_net_code")),
    )
    op.create_geospatial_table(
        "road",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("road_class", sa.String(length=16), nullable=False),
        sa.Column("district_code", sa.String(length=6), nullable=True),
        sa.Column("survey_batch_id", sa.Integer(), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTILINESTRING",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint(
            "road_class IN ('arterial', 'secondary', 'branch', 'rural')",
            name=op.f("ck_road_road_class_known"),
        ),
        sa.CheckConstraint("ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_road_geom_valid")),
        sa.ForeignKeyConstraint(
            ["district_code"], ["district.code"], name=op.f("fk_road_district_code_district")
        ),
        sa.ForeignKeyConstraint(
            ["survey_batch_id"], ["survey_batch.id"], name=op.f("fk_road_survey_batch_id_survey_batch")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_road")),
    )
    op.create_geospatial_index(
        "idx_road_geom", "road", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_geospatial_table(
        "street",
        sa.Column("code", sa.String(length=9), nullable=False),
        sa.Column("district_code", sa.String(length=6), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^\\d{9}$'", name=op.f("ck_street_code_format")),
        sa.CheckConstraint("ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_street_geom_valid")),
        sa.CheckConstraint("left(code, 6) = district_code", name=op.f("ck_street_code_in_district")),
        sa.ForeignKeyConstraint(
            ["district_code"], ["district.code"], name=op.f("fk_street_district_code_district")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_street")),
    )
    op.create_geospatial_index(
        "idx_street_geom", "street", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_index(op.f("ix_street_district_code"), "street", ["district_code"], unique=False)
    op.create_geospatial_table(
        "community",
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("street_code", sa.String(length=9), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="community", nullable=False),
        sa.Column("households", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^\\d{12}$'", name=op.f("ck_community_code_format")),
        sa.CheckConstraint("kind IN ('community', 'village')", name=op.f("ck_community_kind_known")),
        sa.CheckConstraint("ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_community_geom_valid")),
        sa.CheckConstraint("households >= 0", name=op.f("ck_community_households_nonnegative")),
        sa.CheckConstraint("left(code, 9) = street_code", name=op.f("ck_community_code_in_street")),
        sa.ForeignKeyConstraint(
            ["street_code"], ["street.code"], name=op.f("fk_community_street_code_street")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_community")),
    )
    op.create_geospatial_index(
        "idx_community_geom", "community", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_index(op.f("ix_community_street_code"), "community", ["street_code"], unique=False)
    op.create_geospatial_table(
        "net_polygon",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("net_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint(
            "ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_net_polygon_geom_valid")
        ),
        sa.ForeignKeyConstraint(
            ["net_id"], ["net.id"], name=op.f("fk_net_polygon_net_id_net"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_net_polygon")),
        sa.UniqueConstraint("net_id", "code", name="uq_net_polygon_net_code"),
    )
    op.create_geospatial_index(
        "idx_net_polygon_geom",
        "net_polygon",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(op.f("ix_net_polygon_net_id"), "net_polygon", ["net_id"], unique=False)
    op.create_geospatial_table(
        "residential_building",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("community_code", sa.String(length=12), nullable=False),
        sa.Column("households", sa.Integer(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint(
            "ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_residential_building_geom_valid")
        ),
        sa.CheckConstraint("households >= 0", name=op.f("ck_residential_building_households_nonnegative")),
        sa.ForeignKeyConstraint(
            ["community_code"],
            ["community.code"],
            name=op.f("fk_residential_building_community_code_community"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_residential_building")),
    )
    op.create_geospatial_index(
        "idx_residential_building_geom",
        "residential_building",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        op.f("ix_residential_building_community_code"),
        "residential_building",
        ["community_code"],
        unique=False,
    )
    op.create_geospatial_table(
        "station",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("community_code", sa.String(length=12), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column(
            "staff",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint("jsonb_typeof(staff) = 'array'", name=op.f("ck_station_staff_is_list")),
        sa.CheckConstraint(
            "phone IS NULL OR phone ~ '^[0-9+\\- ]{5,20}$'", name=op.f("ck_station_phone_format")
        ),
        sa.CheckConstraint("ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_station_geom_valid")),
        sa.ForeignKeyConstraint(
            ["community_code"], ["community.code"], name=op.f("fk_station_community_code_community")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_station")),
        sa.UniqueConstraint("code", name=op.f("uq_station_code")),
    )
    op.create_geospatial_index(
        "idx_station_geom", "station", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_index(op.f("ix_station_community_code"), "station", ["community_code"], unique=False)
    op.create_geospatial_table(
        "responsibility_grid",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=24), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("community_code", sa.String(length=12), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=True),
        sa.Column("worker_name", sa.Text(), nullable=True),
        sa.Column("worker_phone", sa.String(length=32), nullable=True),
        sa.Column("households", sa.Integer(), server_default="0", nullable=False),
        sa.Column("workload", sa.Numeric(precision=12, scale=3), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint(
            "ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_responsibility_grid_geom_valid")
        ),
        sa.CheckConstraint(
            "left(code, 12) = community_code", name=op.f("ck_responsibility_grid_code_in_community")
        ),
        sa.ForeignKeyConstraint(
            ["community_code"],
            ["community.code"],
            name=op.f("fk_responsibility_grid_community_code_community"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["grid_plan.id"],
            name=op.f("fk_responsibility_grid_plan_id_grid_plan"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["station_id"], ["station.id"], name=op.f("fk_responsibility_grid_station_id_station")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_responsibility_grid")),
        sa.UniqueConstraint("plan_id", "code", name="uq_responsibility_grid_plan_code"),
    )
    op.create_geospatial_index(
        "idx_responsibility_grid_geom",
        "responsibility_grid",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        op.f("ix_responsibility_grid_community_code"), "responsibility_grid", ["community_code"], unique=False
    )
    op.create_geospatial_table(
        "unit_grid",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=15), nullable=False),
        sa.Column("community_code", sa.String(length=12), nullable=False),
        sa.Column("responsibility_grid_id", sa.Integer(), nullable=True),
        sa.Column("area_m2", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^\\d{14,15}$'", name=op.f("ck_unit_grid_code_format")),
        sa.CheckConstraint("ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_unit_grid_geom_valid")),
        sa.CheckConstraint("left(code, 12) = community_code", name=op.f("ck_unit_grid_code_in_community")),
        sa.ForeignKeyConstraint(
            ["community_code"], ["community.code"], name=op.f("fk_unit_grid_community_code_community")
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["grid_plan.id"], name=op.f("fk_unit_grid_plan_id_grid_plan"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["responsibility_grid_id"],
            ["responsibility_grid.id"],
            name=op.f("fk_unit_grid_responsibility_grid_id_responsibility_grid"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unit_grid")),
        sa.UniqueConstraint("plan_id", "code", name="uq_unit_grid_plan_code"),
    )
    op.create_geospatial_index(
        "idx_unit_grid_geom", "unit_grid", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_index(op.f("ix_unit_grid_community_code"), "unit_grid", ["community_code"], unique=False)
    op.create_index(
        op.f("ix_unit_grid_responsibility_grid_id"), "unit_grid", ["responsibility_grid_id"], unique=False
    )
    op.create_geospatial_table(
        "component",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=17), nullable=False),
        sa.Column("class_code", sa.String(length=5), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="intact", nullable=False),
        sa.Column("in_use", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("owner_department_code", sa.String(length=32), nullable=True),
        sa.Column("maintainer_department_code", sa.String(length=32), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("survey_batch_id", sa.Integer(), nullable=True),
        sa.Column("unit_grid_id", sa.Integer(), nullable=True),
        sa.Column("responsibility_grid_id", sa.Integer(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint(
            "GeometryType(geom) IN ('POINT', 'LINESTRING', 'MULTILINESTRING', 'POLYGON', 'MULTIPOLYGON')",
            name=op.f("ck_component_geom_type"),
        ),
        sa.CheckConstraint("code ~ '^\\d{16,17}$'", name=op.f("ck_component_code_format")),
        sa.CheckConstraint(
            "jsonb_typeof(attributes) = 'object'", name=op.f("ck_component_attributes_is_object")
        ),
        sa.CheckConstraint(
            "status IN ('intact', 'damaged', 'missing', 'occupied', 'abandoned', 'removed')",
            name=op.f("ck_component_status_known"),
        ),
        sa.CheckConstraint("ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_component_geom_valid")),
        sa.CheckConstraint(
            "substr(code, 7, length(class_code)) = class_code", name=op.f("ck_component_code_matches_class")
        ),
        sa.CheckConstraint(
            "valid_to IS NULL OR valid_to > valid_from", name=op.f("ck_component_validity_ordered")
        ),
        sa.ForeignKeyConstraint(
            ["class_code"], ["component_class.code"], name=op.f("fk_component_class_code_component_class")
        ),
        sa.ForeignKeyConstraint(
            ["maintainer_department_code"],
            ["department.code"],
            name=op.f("fk_component_maintainer_department_code_department"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_department_code"],
            ["department.code"],
            name=op.f("fk_component_owner_department_code_department"),
        ),
        sa.ForeignKeyConstraint(
            ["responsibility_grid_id"],
            ["responsibility_grid.id"],
            name=op.f("fk_component_responsibility_grid_id_responsibility_grid"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["survey_batch_id"], ["survey_batch.id"], name=op.f("fk_component_survey_batch_id_survey_batch")
        ),
        sa.ForeignKeyConstraint(
            ["unit_grid_id"],
            ["unit_grid.id"],
            name=op.f("fk_component_unit_grid_id_unit_grid"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_component")),
    )
    op.create_geospatial_index(
        "idx_component_geom", "component", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_index("ix_component_class_code", "component", ["class_code"], unique=False)
    op.create_index(
        "ix_component_responsibility_grid_id", "component", ["responsibility_grid_id"], unique=False
    )
    op.create_index("ix_component_survey_batch_id", "component", ["survey_batch_id"], unique=False)
    op.create_index("ix_component_unit_grid_id", "component", ["unit_grid_id"], unique=False)
    op.create_index(
        "uq_component_current_code",
        "component",
        ["code"],
        unique=True,
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "case_record",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("request_code", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("component_class_code", sa.String(length=5), nullable=True),
        sa.Column("event_class_code", sa.String(length=5), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="reported", nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column(
            "reporter_contact",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("component_id", sa.BigInteger(), nullable=True),
        sa.Column("unit_grid_id", sa.Integer(), nullable=True),
        sa.Column("responsibility_grid_id", sa.Integer(), nullable=True),
        sa.Column("community_code", sa.String(length=12), nullable=True),
        sa.Column("street_code", sa.String(length=9), nullable=True),
        sa.Column("district_code", sa.String(length=6), nullable=True),
        sa.Column("station_id", sa.Integer(), nullable=True),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("handling_level", sa.String(length=10), nullable=True),
        sa.Column("needs_confirmation", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "routing",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("duplicate_of_id", sa.BigInteger(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(kind = 'component' AND component_class_code IS NOT NULL AND event_class_code IS NULL) OR (kind = 'event' AND event_class_code IS NOT NULL AND component_class_code IS NULL)",
            name=op.f("ck_case_record_one_class"),
        ),
        sa.CheckConstraint(
            "channel IN ('hotline_12345', 'online', 'app', 'mini_program', 'patrol', 'video', 'open311')",
            name=op.f("ck_case_record_channel_known"),
        ),
        sa.CheckConstraint(
            "handling_level IS NULL OR handling_level IN ('community', 'street', 'district', 'city')",
            name=op.f("ck_case_record_level_known"),
        ),
        sa.CheckConstraint("kind IN ('component', 'event')", name=op.f("ck_case_record_kind_known")),
        sa.CheckConstraint(
            "status IN ('reported', 'registered', 'rejected', 'dispatched', 'in_progress', 'reported_back', 'verified', 'closed', 'parked')",
            name=op.f("ck_case_record_status_known"),
        ),
        sa.CheckConstraint(
            "ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name=op.f("ck_case_record_geom_valid")
        ),
        sa.CheckConstraint(
            "closed_at IS NULL OR closed_at >= reported_at", name=op.f("ck_case_record_closed_after_reported")
        ),
        sa.ForeignKeyConstraint(
            ["community_code"], ["community.code"], name=op.f("fk_case_record_community_code_community")
        ),
        sa.ForeignKeyConstraint(
            ["component_class_code"],
            ["component_class.code"],
            name=op.f("fk_case_record_component_class_code_component_class"),
        ),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["component.id"],
            name=op.f("fk_case_record_component_id_component"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["department_code"], ["department.code"], name=op.f("fk_case_record_department_code_department")
        ),
        sa.ForeignKeyConstraint(
            ["district_code"], ["district.code"], name=op.f("fk_case_record_district_code_district")
        ),
        sa.ForeignKeyConstraint(
            ["duplicate_of_id"], ["case_record.id"], name=op.f("fk_case_record_duplicate_of_id_case_record")
        ),
        sa.ForeignKeyConstraint(
            ["event_class_code"],
            ["event_class.code"],
            name=op.f("fk_case_record_event_class_code_event_class"),
        ),
        sa.ForeignKeyConstraint(
            ["responsibility_grid_id"],
            ["responsibility_grid.id"],
            name=op.f("fk_case_record_responsibility_grid_id_responsibility_grid"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["station_id"], ["station.id"], name=op.f("fk_case_record_station_id_station")
        ),
        sa.ForeignKeyConstraint(
            ["street_code"], ["street.code"], name=op.f("fk_case_record_street_code_street")
        ),
        sa.ForeignKeyConstraint(
            ["unit_grid_id"],
            ["unit_grid.id"],
            name=op.f("fk_case_record_unit_grid_id_unit_grid"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_record")),
        sa.UniqueConstraint("request_code", name=op.f("uq_case_record_request_code")),
    )
    op.create_geospatial_index(
        "idx_case_record_geom",
        "case_record",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index("ix_case_record_district_code", "case_record", ["district_code"], unique=False)
    op.create_index("ix_case_record_reported_at", "case_record", ["reported_at"], unique=False)
    op.create_index(
        "ix_case_record_responsibility_grid_id", "case_record", ["responsibility_grid_id"], unique=False
    )
    op.create_index("ix_case_record_status", "case_record", ["status"], unique=False)
    op.create_table(
        "case_event",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.SmallInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "action IN ('intake', 'register', 'reject', 'dispatch', 'handle', 'report_back', 'verify', 'rework', 'close', 'reassign', 'park', 'unpark', 'link_duplicate')",
            name=op.f("ck_case_event_action_known"),
        ),
        sa.CheckConstraint(
            "to_status IN ('reported', 'registered', 'rejected', 'dispatched', 'in_progress', 'reported_back', 'verified', 'closed', 'parked')",
            name=op.f("ck_case_event_to_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["case_record.id"],
            name=op.f("fk_case_event_case_id_case_record"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_event")),
        sa.UniqueConstraint("case_id", "seq", name="uq_case_event_case_seq"),
    )


def downgrade() -> None:

    op.drop_table("case_event")
    op.drop_index("ix_case_record_status", table_name="case_record")
    op.drop_index("ix_case_record_responsibility_grid_id", table_name="case_record")
    op.drop_index("ix_case_record_reported_at", table_name="case_record")
    op.drop_index("ix_case_record_district_code", table_name="case_record")
    op.drop_geospatial_index(
        "idx_case_record_geom", table_name="case_record", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("case_record")
    op.drop_index(
        "uq_component_current_code", table_name="component", postgresql_where=sa.text("valid_to IS NULL")
    )
    op.drop_index("ix_component_unit_grid_id", table_name="component")
    op.drop_index("ix_component_survey_batch_id", table_name="component")
    op.drop_index("ix_component_responsibility_grid_id", table_name="component")
    op.drop_index("ix_component_class_code", table_name="component")
    op.drop_geospatial_index(
        "idx_component_geom", table_name="component", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("component")
    op.drop_index(op.f("ix_unit_grid_responsibility_grid_id"), table_name="unit_grid")
    op.drop_index(op.f("ix_unit_grid_community_code"), table_name="unit_grid")
    op.drop_geospatial_index(
        "idx_unit_grid_geom", table_name="unit_grid", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("unit_grid")
    op.drop_index(op.f("ix_responsibility_grid_community_code"), table_name="responsibility_grid")
    op.drop_geospatial_index(
        "idx_responsibility_grid_geom",
        table_name="responsibility_grid",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("responsibility_grid")
    op.drop_index(op.f("ix_station_community_code"), table_name="station")
    op.drop_geospatial_index(
        "idx_station_geom", table_name="station", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("station")
    op.drop_index(op.f("ix_residential_building_community_code"), table_name="residential_building")
    op.drop_geospatial_index(
        "idx_residential_building_geom",
        table_name="residential_building",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("residential_building")
    op.drop_index(op.f("ix_net_polygon_net_id"), table_name="net_polygon")
    op.drop_geospatial_index(
        "idx_net_polygon_geom", table_name="net_polygon", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("net_polygon")
    op.drop_index(op.f("ix_community_street_code"), table_name="community")
    op.drop_geospatial_index(
        "idx_community_geom", table_name="community", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("community")
    op.drop_index(op.f("ix_street_district_code"), table_name="street")
    op.drop_geospatial_index(
        "idx_street_geom", table_name="street", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("street")
    op.drop_geospatial_index("idx_road_geom", table_name="road", postgresql_using="gist", column_name="geom")
    op.drop_geospatial_table("road")
    op.drop_table("net")
    op.drop_table("event_class")
    op.drop_table("component_class")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("working_period")
    op.drop_table("time_limit_rule")
    op.drop_table("survey_batch")
    op.drop_index(
        "uq_grid_plan_one_active", table_name="grid_plan", postgresql_where=sa.text("status = 'active'")
    )
    op.drop_table("grid_plan")
    op.drop_geospatial_index(
        "idx_district_geom", table_name="district", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("district")
    op.drop_table("department")
    op.drop_table("calendar_day")
    op.drop_table("api_key")
