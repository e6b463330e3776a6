"""Cases: routing and intake columns, duplicate windows, the hotline category table, request counters.

Revision ID: 0006_cases
Revises: 0005_foreign_key_indexes
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_cases"
down_revision: str | None = "0005_foreign_key_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ACTIONS = (
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
)
NEW_ACTIONS = (*OLD_ACTIONS, "escalate")
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

# What 12345 operators type most often, mapped to the seeded classes; dispatchers edit the table.
HOTLINE_CATEGORIES = [
    ("路灯不亮", "component", "0118"),
    ("路灯损坏", "component", "0118"),
    ("井盖缺失", "component", "0113"),
    ("井盖破损", "component", "0114"),
    ("热力井盖", "component", "0110"),
    ("垃圾箱满溢", "component", "0305"),
    ("垃圾箱损坏", "component", "0305"),
    ("公厕问题", "component", "0301"),
    ("报刊亭", "component", "0121"),
    ("暴露垃圾", "event", "0101"),
    ("市容环境-暴露垃圾", "event", "0101"),
    ("道路不洁", "event", "0102"),
    ("路面积水", "event", "0103"),
    ("积水", "event", "0103"),
    ("小广告", "event", "0201"),
    ("非法小广告", "event", "0201"),
    ("施工扬尘", "event", "0301"),
    ("施工垃圾", "event", "0302"),
    ("流动摊贩", "event", "0401"),
    ("无照经营", "event", "0401"),
    ("占道经营", "event", "0402"),
    ("店外经营", "event", "0402"),
    ("违章停车", "event", "0403"),
    ("违停", "event", "0403"),
    ("爆管", "event", "0501"),
    ("其他", "event", "0601"),
]


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def upgrade() -> None:
    op.add_column(
        "component_class",
        sa.Column("duplicate_window_hours", sa.Numeric(8, 1), server_default="72", nullable=False),
    )
    op.add_column(
        "event_class",
        sa.Column("duplicate_window_hours", sa.Numeric(8, 1), server_default="24", nullable=False),
    )
    op.add_column("case_record", sa.Column("external_ref", sa.Text(), nullable=True))
    op.add_column(
        "case_record", sa.Column("severity", sa.String(16), server_default="normal", nullable=False)
    )
    op.add_column(
        "case_record",
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("case_record", sa.Column("media_url", sa.Text(), nullable=True))
    op.add_column("case_record", sa.Column("plan_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_case_record_plan_id_grid_plan"),
        "case_record",
        "grid_plan",
        ["plan_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column(
        "case_record", sa.Column("rework_count", sa.SmallInteger(), server_default="0", nullable=False)
    )
    op.add_column("case_record", sa.Column("parked_from", sa.String(16), nullable=True))
    op.add_column("case_record", sa.Column("handle_deadline", sa.DateTime(timezone=True), nullable=True))
    op.add_column("case_record", sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "case_record",
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.execute("UPDATE case_record SET updated_at = coalesce(closed_at, dispatched_at, reported_at)")
    op.create_check_constraint("rework_count_nonnegative", "case_record", "rework_count >= 0")
    op.create_check_constraint(
        "parked_from_known", "case_record", f"parked_from IS NULL OR {_in('parked_from', CASE_STATUSES)}"
    )
    op.create_unique_constraint(
        op.f("uq_case_record_channel_external_ref"), "case_record", ["channel", "external_ref"]
    )
    op.drop_constraint(op.f("ck_case_event_action_known"), "case_event", type_="check")
    op.create_check_constraint("action_known", "case_event", _in("action", NEW_ACTIONS))

    hotline_category = op.create_table(
        "hotline_category",
        sa.Column("category_text", sa.Text(), nullable=False),
        sa.Column("case_kind", sa.String(10), nullable=False),
        sa.Column("class_code", sa.String(5), nullable=False),
        sa.CheckConstraint(
            "case_kind IN ('component', 'event')", name=op.f("ck_hotline_category_kind_known")
        ),
        sa.CheckConstraint(r"class_code ~ '^\d{4,5}$'", name=op.f("ck_hotline_category_class_code_format")),
        sa.PrimaryKeyConstraint("category_text", name=op.f("pk_hotline_category")),
    )
    op.bulk_insert(
        hotline_category,
        [{"category_text": t, "case_kind": k, "class_code": c} for t, k, c in HOTLINE_CATEGORIES],
    )
    op.create_table(
        "request_counter",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.CheckConstraint("last_seq >= 0", name=op.f("ck_request_counter_last_seq_nonnegative")),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_request_counter")),
    )


def downgrade() -> None:
    op.drop_table("request_counter")
    op.drop_table("hotline_category")
    op.execute(f"DELETE FROM case_event WHERE NOT ({_in('action', OLD_ACTIONS)})")
    op.drop_constraint(op.f("ck_case_event_action_known"), "case_event", type_="check")
    op.create_check_constraint("action_known", "case_event", _in("action", OLD_ACTIONS))
    op.drop_constraint(op.f("uq_case_record_channel_external_ref"), "case_record", type_="unique")
    op.drop_constraint(op.f("ck_case_record_parked_from_known"), "case_record", type_="check")
    op.drop_constraint(op.f("ck_case_record_rework_count_nonnegative"), "case_record", type_="check")
    op.drop_constraint(op.f("fk_case_record_plan_id_grid_plan"), "case_record", type_="foreignkey")
    for column in (
        "updated_at",
        "handled_at",
        "handle_deadline",
        "parked_from",
        "rework_count",
        "plan_id",
        "media_url",
        "attributes",
    ):
        op.drop_column("case_record", column)
    for column in ("severity", "external_ref"):
        op.drop_column("case_record", column)
    op.drop_column("event_class", "duplicate_window_hours")
    op.drop_column("component_class", "duplicate_window_hours")
