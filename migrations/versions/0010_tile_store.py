"""The tile store: rendered vector tiles kept in the database, so a tile is rendered once per change of data.

Revision ID: 0010_tile_store
Revises: 0009_integrity
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_tile_store"
down_revision: str | None = "0009_integrity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # UNLOGGED: every row can be rendered again from the tables it was drawn from, so it is not worth a
    # write-ahead log record; after a crash PostgreSQL empties the table and tiles are rendered anew.
    op.create_table(
        "tile_store",
        sa.Column("layer", sa.String(32), nullable=False),
        sa.Column("z", sa.SmallInteger(), nullable=False),
        sa.Column("x", sa.Integer(), nullable=False),
        sa.Column("y", sa.Integer(), nullable=False),
        sa.Column("stamp", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("features", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("rendered_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("z BETWEEN 0 AND 22", name=op.f("ck_tile_store_zoom_range")),
        sa.CheckConstraint(
            "x >= 0 AND y >= 0 AND x < (1::bigint << z) AND y < (1::bigint << z)",
            name=op.f("ck_tile_store_xy_in_zoom"),
        ),
        sa.CheckConstraint("features >= 0", name=op.f("ck_tile_store_features_counted")),
        sa.PrimaryKeyConstraint("layer", "z", "x", "y", name=op.f("pk_tile_store")),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("tile_store")
