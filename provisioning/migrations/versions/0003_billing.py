"""Billing: billing runs, rated calls and their levels, bundle usage, ledger entries tied to runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

``ledger_entries`` gains ``billing_run_id`` (SQLite: batch mode, the table is copied with its
rows and named constraints).  CDRs stored before this revision have no rated row: the billing
sidecar rates only what it ingests from now on, and ``trunkline rerate`` over their period
rates them (docs/billing.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(18, 6).with_variant(sa.BigInteger(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "billing_runs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("book_version", sa.BigInteger(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("since", TS, nullable=True),
        sa.Column("until", TS, nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.CheckConstraint("kind IN ('batch', 'rerate')", name=op.f("ck_billing_runs_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_runs")),
    )
    op.create_table(
        "rated_calls",
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("t_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(20), nullable=True),
        sa.Column("destination", sa.String(100), nullable=True),
        sa.Column("billed_seconds", sa.BigInteger(), nullable=True),
        sa.Column("bundle_seconds", sa.BigInteger(), nullable=True),
        sa.Column("bundle_id", sa.Integer(), nullable=True),
        sa.Column("bundle_month", sa.Integer(), nullable=True),
        sa.Column("debit", MONEY, nullable=True),
        sa.Column("charged", sa.Boolean(), nullable=False),
        sa.Column("carrier_id", sa.Integer(), nullable=True),
        sa.Column("carrier_cost", MONEY, nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("book_version", sa.BigInteger(), nullable=False),
        sa.Column("rated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('rated', 'unanswered', 'no_rate', 'internal', 'inbound', 'unbillable')",
            name=op.f("ck_rated_calls_status"),
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["cdrs.call_id"], name=op.f("fk_rated_calls_call_id_cdrs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["run_id"], ["billing_runs.id"], name=op.f("fk_rated_calls_run_id_billing_runs")),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_rated_calls")),
    )
    op.create_index("ix_rated_calls_customer_id_t_ms", "rated_calls", ["customer_id", "t_ms"])
    op.create_index(op.f("ix_rated_calls_run_id"), "rated_calls", ["run_id"])
    op.create_table(
        "rated_levels",
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount", MONEY, nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["rated_calls.call_id"],
            name=op.f("fk_rated_levels_call_id_rated_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("call_id", "level", name=op.f("pk_rated_levels")),
    )
    op.create_table(
        "bundle_usage",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("bundle_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("used_seconds", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "bundle_id", "month", name=op.f("pk_bundle_usage")),
    )
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("billing_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                   nullable=True))
        batch.create_foreign_key(
            op.f("fk_ledger_entries_billing_run_id_billing_runs"), "billing_runs", ["billing_run_id"], ["id"]
        )
        batch.create_index(op.f("ix_ledger_entries_billing_run_id"), ["billing_run_id"])


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_index(op.f("ix_ledger_entries_billing_run_id"))
        batch.drop_constraint(op.f("fk_ledger_entries_billing_run_id_billing_runs"), type_="foreignkey")
        batch.drop_column("billing_run_id")
    op.drop_table("bundle_usage")
    op.drop_table("rated_levels")
    op.drop_index(op.f("ix_rated_calls_run_id"), table_name="rated_calls")
    op.drop_index("ix_rated_calls_customer_id_t_ms", table_name="rated_calls")
    op.drop_table("rated_calls")
    op.drop_table("billing_runs")
