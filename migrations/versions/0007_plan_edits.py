"""Plan edits: the versioned history of hand edits (split, merge, move) to draft grid plans.

Revision ID: 0007_plan_edits
Revises: 0006_cases
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_plan_edits"
down_revision: str | None = "0006_cases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plan_edit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('split', 'merge', 'move')", name=op.f("ck_plan_edit_kind_known")),
        sa.CheckConstraint("version > 1", name=op.f("ck_plan_edit_version_after_an_edit")),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["grid_plan.id"], name=op.f("fk_plan_edit_plan_id_grid_plan"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_edit")),
        # One edit per version of a plan; plan_id leads, so this is also the index a plan's history is read by.
        sa.UniqueConstraint("plan_id", "version", name="uq_plan_edit_plan_version"),
    )


def downgrade() -> None:
    op.drop_table("plan_edit")
