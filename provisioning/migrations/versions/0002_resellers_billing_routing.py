"""Reseller tree, full customer record and lifecycle, tariffs and rates, service plans and bundles,
balance ledger, carriers and routes, number translation, DIDs, admin logins, audit and login history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Existing rows get the documented defaults (server defaults on every new NOT NULL column) and
existing customers a generated account code.  SQLite alters tables in batch mode (copy and
swap), which keeps the named CHECK and foreign key constraints of 0001.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Exact money: NUMERIC(18,6) on PostgreSQL, integer micro-units on SQLite (see provisioning.db.Money).
MONEY = sa.Numeric(18, 6).with_variant(sa.BigInteger(), "sqlite")
TS = sa.DateTime(timezone=True)

ACTIVE_INACTIVE = "status IN ('active', 'inactive')"


def _timestamps() -> list[sa.Column[datetime]]:
    return [sa.Column("created_at", TS, nullable=False), sa.Column("updated_at", TS, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "tariffs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reseller_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("base_tariff_id", sa.Integer(), nullable=True),
        sa.Column("markup_percent", MONEY, nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["reseller_id"], ["resellers.id"], name=op.f("fk_tariffs_reseller_id_resellers")),
        sa.ForeignKeyConstraint(["base_tariff_id"], ["tariffs.id"], name=op.f("fk_tariffs_base_tariff_id_tariffs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tariffs")),
        sa.UniqueConstraint("reseller_id", "name", name=op.f("uq_tariffs_reseller_id_name")),
    )
    op.create_index(op.f("ix_tariffs_reseller_id"), "tariffs", ["reseller_id"])
    op.create_index(op.f("ix_tariffs_base_tariff_id"), "tariffs", ["base_tariff_id"])
    # NULLs are distinct in UNIQUE (reseller_id, name): the provider's own names need their own index.
    op.create_index(
        "uq_tariffs_name_provider",
        "tariffs",
        ["name"],
        unique=True,
        sqlite_where=sa.text("reseller_id IS NULL"),
        postgresql_where=sa.text("reseller_id IS NULL"),
    )

    op.create_table(
        "rates",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("tariff_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(20), nullable=False),
        sa.Column("destination", sa.String(100), nullable=False),
        sa.Column("rate", MONEY, nullable=False),
        sa.Column("connect_fee", MONEY, nullable=False),
        sa.Column("initial_increment", sa.Integer(), nullable=False),
        sa.Column("increment", sa.Integer(), nullable=False),
        sa.Column("grace_seconds", sa.Integer(), nullable=False),
        sa.Column("included_seconds", sa.Integer(), nullable=False),
        sa.Column("effective_from", TS, nullable=True),
        sa.Column("effective_to", TS, nullable=True),
        sa.CheckConstraint("rate >= 0", name=op.f("ck_rates_rate")),
        sa.CheckConstraint("connect_fee >= 0", name=op.f("ck_rates_connect_fee")),
        sa.CheckConstraint("increment >= 1", name=op.f("ck_rates_increment")),
        sa.ForeignKeyConstraint(
            ["tariff_id"], ["tariffs.id"], name=op.f("fk_rates_tariff_id_tariffs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rates")),
    )
    op.create_index("ix_rates_tariff_id_prefix", "rates", ["tariff_id", "prefix"])

    op.create_table(
        "service_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fraud_limit_default", MONEY, nullable=True),
        sa.Column("fraud_limit_ceiling", MONEY, nullable=True),
        *_timestamps(),
        sa.CheckConstraint(ACTIVE_INACTIVE, name=op.f("ck_service_plans_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_plans")),
        sa.UniqueConstraint("name", name=op.f("uq_service_plans_name")),
    )
    op.create_table(
        "call_bundles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_plan_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("zone_prefixes", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["service_plan_id"], ["service_plans.id"], name=op.f("fk_call_bundles_service_plan_id_service_plans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_bundles")),
        sa.UniqueConstraint("service_plan_id", "name", name=op.f("uq_call_bundles_service_plan_id_name")),
    )
    op.create_index(op.f("ix_call_bundles_service_plan_id"), "call_bundles", ["service_plan_id"])

    with op.batch_alter_table("resellers") as batch:
        batch.add_column(sa.Column("company", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("domain", sa.String(253), nullable=True))
        batch.add_column(sa.Column("permissions", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("tariff_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("default_tariff_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("billing_decimals", sa.Integer(), nullable=False, server_default="4"))
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))
        batch.add_column(sa.Column("currency", sa.String(3), nullable=False, server_default="GBP"))
        batch.create_foreign_key("fk_resellers_tariff_id_tariffs", "tariffs", ["tariff_id"], ["id"])
        batch.create_foreign_key("fk_resellers_default_tariff_id_tariffs", "tariffs", ["default_tariff_id"], ["id"])
        batch.create_check_constraint(op.f("ck_resellers_billing_decimals"), "billing_decimals BETWEEN 0 AND 6")
        batch.create_check_constraint(op.f("ck_resellers_domain_lowercase"), "domain = lower(domain)")
    op.create_index("uq_resellers_domain", "resellers", ["domain"], unique=True)

    op.create_table(
        "admin_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reseller_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(170), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("is_chief", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(ACTIVE_INACTIVE, name=op.f("ck_admin_users_status")),
        sa.ForeignKeyConstraint(["reseller_id"], ["resellers.id"], name=op.f("fk_admin_users_reseller_id_resellers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_users")),
        sa.UniqueConstraint("username", name=op.f("uq_admin_users_username")),
    )
    op.create_index(op.f("ix_admin_users_reseller_id"), "admin_users", ["reseller_id"])

    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("account_code", sa.String(20), nullable=True))
        batch.add_column(sa.Column("customer_type", sa.String(8), nullable=False, server_default="LIVE"))
        batch.add_column(sa.Column("web_username", sa.String(30), nullable=True))
        batch.add_column(sa.Column("web_password_hash", sa.String(200), nullable=True))
        batch.add_column(sa.Column("tariff_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("service_plan_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("billing_type", sa.String(8), nullable=False, server_default="postpaid"))
        batch.add_column(sa.Column("payment_term_days", sa.Integer(), nullable=False, server_default="30"))
        batch.add_column(sa.Column("credit_limit", MONEY, nullable=False, server_default="0"))
        batch.add_column(sa.Column("billing_decimals", sa.Integer(), nullable=False, server_default="4"))
        batch.add_column(sa.Column("tax_type", sa.String(4), nullable=False, server_default="NONE"))
        batch.add_column(sa.Column("tax_rate", MONEY, nullable=False, server_default="0"))
        batch.add_column(sa.Column("codecs", sa.JSON(), nullable=False, server_default='["PCMA", "PCMU"]'))
        batch.add_column(sa.Column("call_with_media", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("company", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("email", sa.String(30), nullable=True))
        batch.add_column(sa.Column("address", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("city", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("province", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("pin", sa.String(12), nullable=True))
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("phone", sa.String(16), nullable=True))
        batch.add_column(sa.Column("mobile", sa.String(16), nullable=True))
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))
        batch.add_column(sa.Column("currency", sa.String(3), nullable=False, server_default="GBP"))
        batch.add_column(sa.Column("cli", sa.String(32), nullable=True))
        batch.add_column(sa.Column("trunk_channel_max", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("fraud_limit_default", MONEY, nullable=True))
        batch.add_column(sa.Column("fraud_limit_ceiling", MONEY, nullable=True))
        batch.add_column(sa.Column("activated_at", TS, nullable=True))
        batch.add_column(sa.Column("closed_at", TS, nullable=True))
        batch.create_foreign_key(op.f("fk_customers_tariff_id_tariffs"), "tariffs", ["tariff_id"], ["id"])
        batch.create_foreign_key(
            op.f("fk_customers_service_plan_id_service_plans"), "service_plans", ["service_plan_id"], ["id"]
        )
        batch.create_check_constraint(op.f("ck_customers_customer_type"), "customer_type IN ('LIVE', 'DEMO')")
        batch.create_check_constraint(op.f("ck_customers_billing_type"), "billing_type IN ('prepaid', 'postpaid')")
        batch.create_check_constraint(op.f("ck_customers_tax_type"), "tax_type IN ('NONE', 'VAT', 'TAX')")
        batch.create_check_constraint(op.f("ck_customers_payment_term_days"), "payment_term_days BETWEEN 1 AND 30")
        batch.create_check_constraint(op.f("ck_customers_billing_decimals"), "billing_decimals BETWEEN 0 AND 6")
        batch.create_check_constraint(op.f("ck_customers_trunk_channel_max"), "trunk_channel_max BETWEEN 0 AND 1000")
    # Customers of 0001 get their generated account code ("C" + the id on 9 digits).
    conn = op.get_bind()
    customers = sa.table("customers", sa.column("id", sa.Integer()), sa.column("account_code", sa.String()))
    ids = [row[0] for row in conn.execute(sa.select(customers.c.id))]
    for customer_id in ids:
        conn.execute(customers.update().where(customers.c.id == customer_id).values(account_code=f"C{customer_id:09d}"))
    op.create_index("uq_customers_account_code", "customers", ["account_code"], unique=True)
    op.create_index("uq_customers_web_username", "customers", ["web_username"], unique=True)
    op.create_index(op.f("ix_customers_status"), "customers", ["status"])
    op.create_index(op.f("ix_customers_company"), "customers", ["company"])
    op.create_index(op.f("ix_customers_tariff_id"), "customers", ["tariff_id"])
    op.create_index(op.f("ix_customers_service_plan_id"), "customers", ["service_plan_id"])

    op.create_table(
        "customer_status_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("comment", sa.String(1000), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_status_events_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_status_events")),
    )
    op.create_index(op.f("ix_customer_status_events_customer_id"), "customer_status_events", ["customer_id"])

    op.create_table(
        "customer_suspensions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("resume_reason", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_suspensions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_suspensions")),
    )
    op.create_index(op.f("ix_customer_suspensions_customer_id"), "customer_suspensions", ["customer_id"])

    op.create_table(
        "customer_bundles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("bundle_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_bundles_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["bundle_id"], ["call_bundles.id"], name=op.f("fk_customer_bundles_bundle_id_call_bundles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_bundles")),
        sa.UniqueConstraint("customer_id", "bundle_id", name=op.f("uq_customer_bundles_customer_id_bundle_id")),
    )
    op.create_index(op.f("ix_customer_bundles_customer_id"), "customer_bundles", ["customer_id"])
    op.create_index(op.f("ix_customer_bundles_bundle_id"), "customer_bundles", ["bundle_id"])

    op.create_table(
        "ledger_entries",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.CheckConstraint("kind IN ('payment', 'adjustment', 'charge')", name=op.f("ck_ledger_entries_kind")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_ledger_entries_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index("ix_ledger_entries_customer_id_at", "ledger_entries", ["customer_id", "at"])

    with op.batch_alter_table("sip_devices") as batch:
        batch.add_column(sa.Column("voicemail_enabled", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("voicemail_email", sa.String(254), nullable=True))
        batch.add_column(sa.Column("fraud_limit", MONEY, nullable=True))
    with op.batch_alter_table("ip_devices") as batch:
        batch.add_column(sa.Column("description", sa.String(200), nullable=False, server_default=""))

    op.create_table(
        "carriers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("host", sa.String(253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(4), nullable=False),
        sa.Column("strip_prefix", sa.String(20), nullable=False),
        sa.Column("add_prefix", sa.String(20), nullable=False),
        sa.Column("max_sessions", sa.Integer(), nullable=False),
        sa.Column("cps", sa.Integer(), nullable=False),
        sa.Column("tariff_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(ACTIVE_INACTIVE, name=op.f("ck_carriers_status")),
        sa.CheckConstraint("transport IN ('udp', 'tcp', 'tls')", name=op.f("ck_carriers_transport")),
        sa.ForeignKeyConstraint(["tariff_id"], ["tariffs.id"], name=op.f("fk_carriers_tariff_id_tariffs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carriers")),
        sa.UniqueConstraint("name", name=op.f("uq_carriers_name")),
    )
    op.create_index(op.f("ix_carriers_tariff_id"), "carriers", ["tariff_id"])

    op.create_table(
        "routes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("dial_pattern", sa.String(20), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(ACTIVE_INACTIVE, name=op.f("ck_routes_status")),
        sa.CheckConstraint("strategy IN ('priority', 'least_cost', 'weighted')", name=op.f("ck_routes_strategy")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_routes_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routes")),
        sa.UniqueConstraint("name", name=op.f("uq_routes_name")),
    )
    op.create_index(op.f("ix_routes_customer_id"), "routes", ["customer_id"])

    op.create_table(
        "route_carriers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("route_id", sa.Integer(), nullable=False),
        sa.Column("carrier_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["route_id"], ["routes.id"], name=op.f("fk_route_carriers_route_id_routes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["carrier_id"], ["carriers.id"], name=op.f("fk_route_carriers_carrier_id_carriers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_route_carriers")),
        sa.UniqueConstraint("route_id", "carrier_id", name=op.f("uq_route_carriers_route_id_carrier_id")),
    )
    op.create_index(op.f("ix_route_carriers_route_id"), "route_carriers", ["route_id"])
    op.create_index(op.f("ix_route_carriers_carrier_id"), "route_carriers", ["carrier_id"])

    op.create_table(
        "translation_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("match", sa.String(21), nullable=False),
        sa.Column("replacement", sa.String(21), nullable=False),
        sa.Column("description", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "kind IN ('source', 'destination', 'did_source', 'did_destination')", name=op.f("ck_translation_rules_kind")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_translation_rules_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_translation_rules")),
    )
    op.create_index("ix_translation_rules_customer_id_kind", "translation_rules", ["customer_id", "kind", "position"])

    op.create_table(
        "dids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("reseller_id", sa.Integer(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("destination_type", sa.String(16), nullable=True),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("max_sessions", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(ACTIVE_INACTIVE, name=op.f("ck_dids_status")),
        sa.CheckConstraint(
            "destination_type IN ('sip_device', 'ring_group', 'queue', 'ivr', 'time_condition', 'conference', "
            "'pstn', 'sip_uri')",
            name=op.f("ck_dids_destination_type"),
        ),
        sa.ForeignKeyConstraint(["reseller_id"], ["resellers.id"], name=op.f("fk_dids_reseller_id_resellers")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_dids_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dids")),
        sa.UniqueConstraint("number", name=op.f("uq_dids_number")),
    )
    op.create_index(op.f("ix_dids_reseller_id"), "dids", ["reseller_id"])
    op.create_index(op.f("ix_dids_customer_id"), "dids", ["customer_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("via", sa.String(200), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=True),
        sa.Column("tenant_path", sa.String(512), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index("ix_audit_log_entity_entity_id", "audit_log", ["entity", "entity_id"])
    op.create_index(op.f("ix_audit_log_tenant_path"), "audit_log", ["tenant_path"])
    op.create_index(op.f("ix_audit_log_customer_id"), "audit_log", ["customer_id"])

    op.create_table(
        "login_history",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("login", sa.String(170), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("principal_kind", sa.String(16), nullable=True),
        sa.Column("principal_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("tenant_path", sa.String(512), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_history")),
    )
    op.create_index(op.f("ix_login_history_at"), "login_history", ["at"])
    op.create_index("ix_login_history_login_at", "login_history", ["login", "at"])
    op.create_index(op.f("ix_login_history_tenant_path"), "login_history", ["tenant_path"])

    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", TS, nullable=True))
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("parent_token_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("parent_token_id")
        batch.drop_column("user_id")
        batch.drop_column("expires_at")
    for table in (
        "login_history",
        "audit_log",
        "dids",
        "translation_rules",
        "route_carriers",
        "routes",
        "carriers",
    ):
        op.drop_table(table)
    with op.batch_alter_table("ip_devices") as batch:
        batch.drop_column("description")
    with op.batch_alter_table("sip_devices") as batch:
        batch.drop_column("fraud_limit")
        batch.drop_column("voicemail_email")
        batch.drop_column("voicemail_enabled")
    for table in ("ledger_entries", "customer_bundles", "customer_suspensions", "customer_status_events"):
        op.drop_table(table)
    for index in (
        "ix_customers_service_plan_id",
        "ix_customers_tariff_id",
        "ix_customers_company",
        "ix_customers_status",
        "uq_customers_web_username",
        "uq_customers_account_code",
    ):
        op.drop_index(index, table_name="customers")
    with op.batch_alter_table("customers") as batch:
        for constraint in (
            "ck_customers_trunk_channel_max",
            "ck_customers_billing_decimals",
            "ck_customers_payment_term_days",
            "ck_customers_tax_type",
            "ck_customers_billing_type",
            "ck_customers_customer_type",
        ):
            batch.drop_constraint(constraint, type_="check")
        batch.drop_constraint("fk_customers_service_plan_id_service_plans", type_="foreignkey")
        batch.drop_constraint("fk_customers_tariff_id_tariffs", type_="foreignkey")
        for column in (
            "closed_at", "activated_at", "fraud_limit_ceiling", "fraud_limit_default", "trunk_channel_max", "cli",
            "currency", "timezone", "mobile", "phone", "country", "pin", "province", "city", "address", "email",
            "company", "call_with_media", "codecs", "tax_rate", "tax_type", "billing_decimals", "credit_limit",
            "payment_term_days", "billing_type", "service_plan_id", "tariff_id", "web_password_hash",
            "web_username", "customer_type", "account_code",
        ):  # fmt: skip
            batch.drop_column(column)
    op.drop_table("admin_users")
    op.drop_index("uq_resellers_domain", table_name="resellers")
    with op.batch_alter_table("resellers") as batch:
        batch.drop_constraint("ck_resellers_domain_lowercase", type_="check")
        batch.drop_constraint("ck_resellers_billing_decimals", type_="check")
        batch.drop_constraint("fk_resellers_default_tariff_id_tariffs", type_="foreignkey")
        batch.drop_constraint("fk_resellers_tariff_id_tariffs", type_="foreignkey")
        for column in (
            "currency", "timezone", "billing_decimals", "default_tariff_id", "tariff_id", "permissions",
            "domain", "company",
        ):  # fmt: skip
            batch.drop_column(column)
    op.drop_table("call_bundles")
    op.drop_table("service_plans")
    op.drop_table("rates")
    op.drop_index("uq_tariffs_name_provider", table_name="tariffs")
    op.drop_table("tariffs")
