"""Imports: the source format, CRS and warnings of a survey batch, and the import_problem report table.

Revision ID: 0004_imports
Revises: 0003_seed_reference_data
Create Date: 2026-11-23 20:11:48.971190
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0004_imports"
down_revision: str | None = "0003_seed_reference_data"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_geospatial_table(
        "import_problem",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("survey_batch_id", sa.Integer(), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                srid=4490, dimension=2, spatial_index=False, from_text="ST_GeomFromEWKT", name="geometry"
            ),
            nullable=True,
        ),
        sa.CheckConstraint("action IN ('rejected', 'repaired')", name=op.f("ck_import_problem_action_known")),
        sa.ForeignKeyConstraint(
            ["survey_batch_id"],
            ["survey_batch.id"],
            name=op.f("fk_import_problem_survey_batch_id_survey_batch"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_problem")),
    )
    op.create_index(
        op.f("ix_import_problem_survey_batch_id"), "import_problem", ["survey_batch_id"], unique=False
    )
    op.add_column("survey_batch", sa.Column("source_format", sa.String(length=32), nullable=True))
    op.add_column("survey_batch", sa.Column("source_crs", sa.String(length=32), nullable=True))
    op.add_column(
        "survey_batch",
        sa.Column(
            "warnings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:

    op.drop_column("survey_batch", "warnings")
    op.drop_column("survey_batch", "source_crs")
    op.drop_column("survey_batch", "source_format")
    op.drop_index(op.f("ix_import_problem_survey_batch_id"), table_name="import_problem")
    op.drop_geospatial_table("import_problem")
