"""The handling deadline set at dispatch, kept apart from the one the handler works to.

Escalation, rework and unparking gave a case a fresh ``handle_deadline``, and "on time" (按期) was judged
against it: a case overdue for a year, escalated by the once-a-minute job, then reported back the day before
its new deadline, counted as closed on time. ``on_time_deadline`` holds the deadline set at dispatch;
only parking (挂账) moves it, by the time the case spent parked. ``handle_deadline`` stays the working
deadline shown to the handler (and Open311's ``expected_datetime``).

Existing rows are backfilled with the best record of the dispatch deadline there is:
1. the ``deadline`` the dispatch event wrote into its details (every case dispatched through the API or
   the command line), plus the time the case then spent parked and came back into handling: the old
   unpark gave a fresh limit instead, so the parked time is given back, counted in calendar time (SQL
   knows no working calendar; that errs in the handler's favour);
2. otherwise (cases loaded by the demo, whose events have no details) the earlier of ``handle_deadline``
   and the ``overdue_since`` of the case's escalations, which is the deadline in force when the first
   escalation replaced it.

Revision ID: 0014_on_time_deadline
Revises: 0013_station_phone_extension
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_on_time_deadline"
down_revision: str | None = "0013_station_phone_extension"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = """
UPDATE case_record c
SET on_time_deadline = CASE
        WHEN dispatch.deadline IS NOT NULL THEN dispatch.deadline + coalesce(parked.time, interval '0')
        ELSE least(c.handle_deadline, escalated.overdue_since)
    END
FROM case_record r
LEFT JOIN LATERAL (
    SELECT e.seq, (e.details ->> 'deadline')::timestamptz AS deadline
    FROM case_event e
    WHERE e.case_id = r.id AND e.action = 'dispatch'
    ORDER BY e.seq
    LIMIT 1
) dispatch ON true
LEFT JOIN LATERAL (
    SELECT sum(u.at - p.at) AS time
    FROM case_event u
    CROSS JOIN LATERAL (
        SELECT max(p.at) AS at FROM case_event p
        WHERE p.case_id = u.case_id AND p.action = 'park' AND p.seq < u.seq AND p.seq > dispatch.seq
    ) p
    WHERE u.case_id = r.id AND u.action = 'unpark' AND u.details ->> 'back_to' IN ('dispatched', 'in_progress')
) parked ON true
LEFT JOIN LATERAL (
    SELECT min((e.details ->> 'overdue_since')::timestamptz) AS overdue_since
    FROM case_event e
    WHERE e.case_id = r.id AND e.action = 'escalate'
) escalated ON true
WHERE c.id = r.id AND (c.dispatched_at IS NOT NULL OR c.handle_deadline IS NOT NULL)
"""


def upgrade() -> None:
    op.add_column("case_record", sa.Column("on_time_deadline", sa.DateTime(timezone=True), nullable=True))
    op.execute(BACKFILL)


def downgrade() -> None:
    # handle_deadline was never touched by the upgrade: dropping the column gives back the old state.
    op.drop_column("case_record", "on_time_deadline")
