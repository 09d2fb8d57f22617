"""Initial schema: tenancy, devices, location service, CDRs, API tokens, change feed.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Runs on SQLite and PostgreSQL.  Spelled out rather than derived from provisioning.models (or
cdr.schema): a migration must keep meaning what it meant when it was written.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "resellers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("status IN ('active', 'inactive')", name=op.f("ck_resellers_status")),
        sa.ForeignKeyConstraint(["parent_id"], ["resellers.id"], name=op.f("fk_resellers_parent_id_resellers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resellers")),
    )
    op.create_index(op.f("ix_resellers_parent_id"), "resellers", ["parent_id"])
    op.create_index(op.f("ix_resellers_path"), "resellers", ["path"])

    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reseller_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("max_sessions", sa.Integer(), nullable=False),
        sa.Column("cps", sa.Integer(), nullable=False),
        sa.Column("max_call_seconds", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("status IN ('created', 'active', 'stopped', 'closed')", name=op.f("ck_customers_status")),
        sa.CheckConstraint("domain = lower(domain)", name=op.f("ck_customers_domain_lowercase")),
        sa.ForeignKeyConstraint(["reseller_id"], ["resellers.id"], name=op.f("fk_customers_reseller_id_resellers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("domain", name=op.f("uq_customers_domain")),
    )
    op.create_index(op.f("ix_customers_name"), "customers", ["name"])
    op.create_index(op.f("ix_customers_reseller_id"), "customers", ["reseller_id"])

    op.create_table(
        "sip_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("realm", sa.String(length=253), nullable=False),
        sa.Column("ha1_md5", sa.String(length=32), nullable=False),
        sa.Column("ha1_sha256", sa.String(length=64), nullable=False),
        sa.Column("extension", sa.String(length=15), nullable=True),
        sa.Column("caller_number", sa.String(length=32), nullable=True),
        sa.Column("display_name", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("max_sessions", sa.Integer(), nullable=False),
        sa.Column("cps", sa.Integer(), nullable=False),
        sa.Column("allowed_ips", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("status IN ('active', 'inactive')", name=op.f("ck_sip_devices_status")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_sip_devices_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sip_devices")),
        sa.UniqueConstraint("customer_id", "extension", name=op.f("uq_sip_devices_customer_id_extension")),
        sa.UniqueConstraint("username", name=op.f("uq_sip_devices_username")),
    )
    op.create_index(op.f("ix_sip_devices_customer_id"), "sip_devices", ["customer_id"])

    op.create_table(
        "ip_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("tech_prefix", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("max_sessions", sa.Integer(), nullable=False),
        sa.Column("cps", sa.Integer(), nullable=False),
        sa.Column("caller_number", sa.String(length=32), nullable=True),
        *_timestamps(),
        sa.CheckConstraint("status IN ('active', 'inactive')", name=op.f("ck_ip_devices_status")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_ip_devices_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_devices")),
        sa.UniqueConstraint("ip", "port", name=op.f("uq_ip_devices_ip_port")),
    )
    op.create_index(op.f("ix_ip_devices_customer_id"), "ip_devices", ["customer_id"])
    # NULLs are distinct in UNIQUE (ip, port): "any port of this address" needs its own index.
    op.create_index(
        "uq_ip_devices_ip_anyport",
        "ip_devices",
        ["ip"],
        unique=True,
        sqlite_where=sa.text("port IS NULL"),
        postgresql_where=sa.text("port IS NULL"),
    )

    op.create_table(
        "registrations",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("aor", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("cseq", sa.BigInteger(), nullable=False),
        sa.Column("source_ip", sa.String(length=45), nullable=False),
        sa.Column("source_port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("local_port", sa.Integer(), nullable=False),
        sa.Column("q", sa.Double(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.Column("conn_id", sa.BigInteger(), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
        sa.UniqueConstraint("aor", "contact", name=op.f("uq_registrations_aor_contact")),
    )
    op.create_index(op.f("ix_registrations_device_id"), "registrations", ["device_id"])
    op.create_index(op.f("ix_registrations_expires_at"), "registrations", ["expires_at"])

    # The columns of cdr.schema.CDR_TYPES as of this revision; integers are 64-bit (ms times).
    op.create_table(
        "cdrs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("caller_device_id", sa.BigInteger(), nullable=True),
        sa.Column("callee_device_id", sa.BigInteger(), nullable=True),
        sa.Column("caller_number", sa.Text(), nullable=False),
        sa.Column("dialled_number", sa.Text(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("answer_ms", sa.BigInteger(), nullable=True),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("sip_code", sa.BigInteger(), nullable=False),
        sa.Column("q850_cause", sa.BigInteger(), nullable=False),
        sa.Column("disposition", sa.Text(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("call_type", sa.Text(), nullable=False),
        sa.Column("source_ip", sa.Text(), nullable=False),
        sa.Column("hangup_by", sa.Text(), nullable=False),
        sa.Column("reseller_path", sa.Text(), nullable=False),
        sa.Column("ip_device_id", sa.BigInteger(), nullable=True),
        sa.Column("carrier_id", sa.BigInteger(), nullable=True),
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("codecs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdrs")),
        sa.UniqueConstraint("call_id", name=op.f("uq_cdrs_call_id")),
    )
    op.create_index("ix_cdrs_customer_id", "cdrs", ["customer_id"])
    op.create_index("ix_cdrs_start_ms", "cdrs", ["start_ms"])

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('admin', 'reseller', 'customer')", name=op.f("ck_api_tokens_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index("ix_api_tokens_kind_owner_id", "api_tokens", ["kind", "owner_id"])

    op.create_table(
        "changes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
        # Never reuse an id on SQLite, even after pruning: watchers remember the last one seen.
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_changes_at"), "changes", ["at"])


def downgrade() -> None:
    for table in (
        "changes",
        "api_tokens",
        "cdrs",
        "registrations",
        "ip_devices",
        "sip_devices",
        "customers",
        "resellers",
    ):
        op.drop_table(table)
