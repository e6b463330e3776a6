"""A station's phone may have an area code in brackets and an extension: (0531)86001234转8001.

Community stations answer on a switchboard more often than not, and their public number is written the
way the bureau's own directory writes it: ``0531-86001234转8001``, ``(0531)86001234``. The first rule
(digits, spaces, ``+`` and ``-``, 5 to 20 characters) refused both, so a station file listing them lost its
phones row by row.

Revision ID: 0013_station_phone_extension
Revises: 0012_component_code_check
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_station_phone_extension"
down_revision: str | None = "0012_component_code_check"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ck_station_phone_format"
WITH_EXTENSION = r"phone IS NULL OR phone ~ '^[0-9+() -]{5,20}(转[0-9]{1,6})?$'"
FIRST = r"phone IS NULL OR phone ~ '^[0-9+\- ]{5,20}$'"


def upgrade() -> None:
    op.drop_constraint(op.f(NAME), "station", type_="check")
    op.create_check_constraint(op.f(NAME), "station", WITH_EXTENSION)


def downgrade() -> None:
    # A phone the first rule refuses keeps its number and loses what it cannot hold: the brackets, and
    # the extension (the switchboard still answers); one that is then too short is dropped. The new rule
    # goes first, since the shortened phone may break it ((05)1 is 051).
    op.drop_constraint(op.f(NAME), "station", type_="check")
    op.execute(
        "UPDATE station SET phone = nullif(translate(split_part(phone, '转', 1), '()', ''), '') "
        r"WHERE phone !~ '^[0-9+\- ]{5,20}$'"
    )
    op.execute(r"UPDATE station SET phone = NULL WHERE phone !~ '^[0-9+\- ]{5,20}$'")
    op.create_check_constraint(op.f(NAME), "station", FIRST)
