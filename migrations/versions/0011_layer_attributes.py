"""Free attributes for boundaries, stations and roads: the fields of an imported file that map to no column.

Components and net polygons kept them from the start; without this, importing a community layer with a
人口 or 面积 field dropped those fields, and issue 3 says unknown fields are never dropped.

Revision ID: 0011_layer_attributes
Revises: 0010_tile_store
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0011_layer_attributes"
down_revision: str | None = "0010_tile_store"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("district", "street", "community", "station", "road")


def upgrade() -> None:
    for table in TABLES:
        # A constant default: PostgreSQL adds the column without rewriting the table.
        op.add_column(
            table, sa.Column("attributes", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False)
        )
        op.create_check_constraint(
            op.f(f"ck_{table}_attributes_is_object"), table, "jsonb_typeof(attributes) = 'object'"
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_constraint(op.f(f"ck_{table}_attributes_is_object"), table, type_="check")
        op.drop_column(table, "attributes")
