"""Index the case foreign keys that deletes and re-versioning of components and grids look up.

Revision ID: 0005_foreign_key_indexes
Revises: 0004_imports
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_foreign_key_indexes"
down_revision: str | None = "0004_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_case_record_component_id": "component_id",
    "ix_case_record_unit_grid_id": "unit_grid_id",
    "ix_case_record_duplicate_of_id": "duplicate_of_id",
}


def upgrade() -> None:
    for name, column in INDEXES.items():
        op.create_index(name, "case_record", [column], unique=False)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="case_record")
