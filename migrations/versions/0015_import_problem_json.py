"""An import problem's row values keep the file's field order.

``import_problem.attributes`` was jsonb, which stores an object's keys shorter first, then byte by byte: the
report served later (``GET /v1/imports/{id}/problems.csv``, ``import_problems_file``) listed a row's free
fields in that order, where the report the import itself wrote keeps the file's. json keeps the text as
written. Nothing queries these values inside the database; they are only read back whole.

Rows stored before keep the jsonb order they already have.

Revision ID: 0015_import_problem_json
Revises: 0014_on_time_deadline
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_import_problem_json"
down_revision: str | None = "0014_on_time_deadline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE import_problem ALTER attributes DROP DEFAULT, "
        "ALTER attributes TYPE json USING attributes::json, "
        "ALTER attributes SET DEFAULT '{}'::json"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE import_problem ALTER attributes DROP DEFAULT, "
        "ALTER attributes TYPE jsonb USING attributes::jsonb, "
        "ALTER attributes SET DEFAULT '{}'::jsonb"
    )
