"""CDRs keyed by the switch's attempt id; the caller's Call-ID kept as ``sip_call_id``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

``cdrs.call_id`` was the caller's SIP Call-ID, which the caller chooses: every call after the
first with a reused Call-ID hit ``ON CONFLICT (call_id) DO NOTHING`` and was never stored or
billed.  From this revision the switch writes a ULID of its own into ``call_id`` (still unique,
still the key of ``rated_calls``) and the caller's Call-ID into the new ``sip_call_id`` (indexed,
not unique).

Rows stored before this revision get ``sip_call_id = call_id``: their key was the SIP Call-ID,
and it stays their key (a spool segment written before the upgrade still carries those values,
so a replay of it finds them stored).  SQLite: batch mode (the table is rebuilt with its rows,
named constraints and indexes; foreign keys are off during migrations, so ``rated_calls`` keeps
its rows).  PostgreSQL: the column is added, filled and made NOT NULL in place; the backfill
rewrites every row of ``cdrs`` once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        batch.add_column(sa.Column("sip_call_id", sa.Text(), nullable=True))
    op.execute(sa.text("UPDATE cdrs SET sip_call_id = call_id"))
    with op.batch_alter_table("cdrs") as batch:
        batch.alter_column("sip_call_id", existing_type=sa.Text(), nullable=False)
        batch.create_index("ix_cdrs_sip_call_id", ["sip_call_id"])


def downgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        batch.drop_index("ix_cdrs_sip_call_id")
        batch.drop_column("sip_call_id")
