"""The provisioning schema (SQLAlchemy 2 typed declarative).

Tenancy: the service provider owns everything; resellers form a tree (``parent_id``) whose
materialised ``path`` ("/1/5/": the ids from the root down to this reseller) lets a reseller's
scope be one prefix test; a customer with ``reseller_id`` NULL sits directly under the service
provider.

Credentials are never stored in clear: a SIP device keeps its RFC 7616 HA1 digests (for the
realm it was given when its password was last set) and an API token only its SHA-256.

``registrations`` is the registrar's location service written through by
:class:`provisioning.bindings.DbBindingStore`; ``cdrs`` mirrors :data:`cdr.schema.CDR_TYPES`
column for column; ``changes`` is the change feed the switch's snapshot watcher polls.

Changing a table here needs a new migration in ``provisioning/migrations/versions``; the test
suite compares the migrated database with this metadata and fails on any drift.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cdr.schema import CDR_TYPES
from provisioning.db import Money, UtcDateTime, utcnow

# Deterministic constraint names: Alembic batch mode on SQLite needs them to alter a table, and
# the API maps a violated unique constraint back to the field it concerns by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; BIGINT keys would stay NULL there.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Customer lifecycle (iPECS OMS guide); the same strings as switch.ports.CUSTOMER_*.
CUSTOMER_STATUSES = ("created", "active", "stopped", "closed")
# Allowed lifecycle moves; "closed" is final (repo.customers' operations enforce them).
CUSTOMER_TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"active", "closed"}),
    "active": frozenset({"stopped", "closed"}),
    "stopped": frozenset({"active", "closed"}),
    "closed": frozenset(),
}
DEVICE_STATUSES = ("active", "inactive")
RESELLER_STATUSES = ("active", "inactive")
TOKEN_KINDS = ("admin", "reseller", "customer")
# OV500 customer form.
CUSTOMER_TYPES = ("LIVE", "DEMO")
BILLING_TYPES = ("prepaid", "postpaid")
TAX_TYPES = ("NONE", "VAT", "TAX")
DEFAULT_CODECS = ("PCMA", "PCMU")
# iPECS partner permissions (section 2.7.1.5) that matter outside order paperwork.
RESELLER_PERMISSIONS = (
    "manage_dids",
    "manage_devices",
    "manage_child_resellers",
    "approve_stop_resume",
    "approve_customer_close",
)
LEDGER_KINDS = ("payment", "adjustment", "charge")
# Billing runs: a micro-batch of the billing sidecar, or a `trunkline rerate`.
BILLING_RUN_KINDS = ("batch", "rerate")
# A rated call's status: the rating engine's three (docs/rating-spec.md), and the billing
# sidecar's own for calls it does not rate with a tariff (docs/billing.md).
RATED_STATUSES = ("rated", "unanswered", "no_rate", "internal", "inbound", "unbillable")
TRANSPORTS = ("udp", "tcp", "tls")
ROUTE_STRATEGIES = ("priority", "least_cost", "weighted")
TRANSLATION_KINDS = ("source", "destination", "did_source", "did_destination")
DID_DESTINATIONS = (
    "sip_device",
    "ring_group",
    "queue",
    "ivr",
    "time_condition",
    "conference",
    "pstn",
    "sip_uri",
)
LOGIN_OUTCOMES = ("success", "failure", "blocked", "switch_over")

# Entity names written to ``changes.entity``.
ENTITY_RESELLER = "reseller"
ENTITY_CUSTOMER = "customer"
ENTITY_SIP_DEVICE = "sip_device"
ENTITY_IP_DEVICE = "ip_device"
ENTITY_DID = "did"
# Routing tables (carriers, routes): small, reloaded as a whole by the snapshot.
ENTITY_ROUTING = "routing"
# A customer's translation rules, reloaded together (entity id = the customer's id).
ENTITY_TRANSLATION = "translation"
# A tariff or its rates changed (entity id = the tariff's id): only the billing sidecar's
# rating book cares.
ENTITY_TARIFF = "tariff"
# A service plan or its call bundles changed (entity id = the plan's id): billing only.
ENTITY_PLAN = "plan"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class Reseller(TimestampMixin, Base):
    __tablename__ = "resellers"
    __table_args__ = (
        CheckConstraint(_in("status", RESELLER_STATUSES), name="status"),
        CheckConstraint("billing_decimals BETWEEN 0 AND 6", name="billing_decimals"),
        CheckConstraint("domain = lower(domain)", name="domain_lowercase"),
        Index("uq_resellers_domain", "domain", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # "/<root id>/.../<own id>/": a reseller's descendants are the rows whose path starts with it.
    path: Mapped[str] = mapped_column(String(512), default="", index=True)
    company: Mapped[str] = mapped_column(String(100), default="", server_default="")
    domain: Mapped[str | None] = mapped_column(String(253))
    # Permission names (RESELLER_PERMISSIONS) granted by the parent.
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # The tariff this reseller buys on (owned by its parent, or by the service provider).
    # use_alter: resellers and tariffs reference each other.
    tariff_id: Mapped[int | None] = mapped_column(
        ForeignKey("tariffs.id", use_alter=True, name="fk_resellers_tariff_id_tariffs")
    )
    # The tariff new customers of this reseller get when none is given (owned by this reseller).
    default_tariff_id: Mapped[int | None] = mapped_column(
        ForeignKey("tariffs.id", use_alter=True, name="fk_resellers_default_tariff_id_tariffs")
    )
    billing_decimals: Mapped[int] = mapped_column(Integer, default=4, server_default="4")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    currency: Mapped[str] = mapped_column(String(3), default="GBP", server_default="GBP")


class AdminUser(TimestampMixin, Base):
    """A web login of the service provider (reseller_id NULL) or of a reseller's administrators."""

    __tablename__ = "admin_users"
    __table_args__ = (CheckConstraint(_in("status", RESELLER_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reseller_id: Mapped[int | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    username: Mapped[str] = mapped_column(String(170), unique=True)
    name: Mapped[str] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_chief: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")


class Customer(TimestampMixin, Base):
    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint(_in("status", CUSTOMER_STATUSES), name="status"),
        CheckConstraint("domain = lower(domain)", name="domain_lowercase"),
        CheckConstraint(_in("customer_type", CUSTOMER_TYPES), name="customer_type"),
        CheckConstraint(_in("billing_type", BILLING_TYPES), name="billing_type"),
        CheckConstraint(_in("tax_type", TAX_TYPES), name="tax_type"),
        CheckConstraint("payment_term_days BETWEEN 1 AND 30", name="payment_term_days"),
        CheckConstraint("billing_decimals BETWEEN 0 AND 6", name="billing_decimals"),
        CheckConstraint("trunk_channel_max BETWEEN 0 AND 1000", name="trunk_channel_max"),
        Index("uq_customers_account_code", "account_code", unique=True),
        Index("uq_customers_web_username", "web_username", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reseller_id: Mapped[int | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    # Lowercase, unique, immutable once set; NULL = devices use the switch's default realm.
    domain: Mapped[str | None] = mapped_column(String(253), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    max_sessions: Mapped[int] = mapped_column(Integer, default=0)  # 0 = no limit
    cps: Mapped[int] = mapped_column(Integer, default=0)
    max_call_seconds: Mapped[int] = mapped_column(Integer, default=0)
    # OV500 "Account Code": given by the tenant or generated ("C" + 9 digits of the id).
    account_code: Mapped[str | None] = mapped_column(String(20))
    customer_type: Mapped[str] = mapped_column(String(8), default="LIVE", server_default="LIVE")
    web_username: Mapped[str | None] = mapped_column(String(30))
    web_password_hash: Mapped[str | None] = mapped_column(String(200))
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id"), index=True)
    service_plan_id: Mapped[int | None] = mapped_column(ForeignKey("service_plans.id"), index=True)
    billing_type: Mapped[str] = mapped_column(String(8), default="postpaid", server_default="postpaid")
    payment_term_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    credit_limit: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0), server_default="0")
    billing_decimals: Mapped[int] = mapped_column(Integer, default=4, server_default="4")
    tax_type: Mapped[str] = mapped_column(String(4), default="NONE", server_default="NONE")
    tax_rate: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0), server_default="0")  # percent
    codecs: Mapped[list[str]] = mapped_column(JSON, default=lambda: list(DEFAULT_CODECS))
    call_with_media: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    company: Mapped[str] = mapped_column(String(100), default="", server_default="", index=True)
    email: Mapped[str | None] = mapped_column(String(30))
    address: Mapped[str] = mapped_column(String(200), default="", server_default="")
    city: Mapped[str] = mapped_column(String(100), default="", server_default="")
    province: Mapped[str] = mapped_column(String(100), default="", server_default="")
    pin: Mapped[str | None] = mapped_column(String(12))
    country: Mapped[str | None] = mapped_column(String(2))
    phone: Mapped[str | None] = mapped_column(String(16))
    mobile: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    currency: Mapped[str] = mapped_column(String(3), default="GBP", server_default="GBP")
    # iPECS "Customer CLI": the company's outgoing caller number.
    cli: Mapped[str | None] = mapped_column(String(32))
    # iPECS "SIP Trunk Max" (0-1000): concurrent calls through the customer's IP devices; NULL = no cap.
    trunk_channel_max: Mapped[int | None] = mapped_column(Integer)
    # iPECS per-user daily outgoing fraud limit, in the customer's currency: the default applied to
    # every user, and the ceiling a user's own limit may not exceed.  NULL = no limit.
    fraud_limit_default: Mapped[Decimal | None] = mapped_column(Money())
    fraud_limit_ceiling: Mapped[Decimal | None] = mapped_column(Money())
    activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class CustomerStatusEvent(Base):
    """One lifecycle operation (activate, stop, resume, close) with its reason."""

    __tablename__ = "customer_status_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    operation: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(String(1000), default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200), default="")


class Suspension(Base):
    """A period during which a customer was stopped (iPECS "Suspend Period"); open while ended_at is NULL."""

    __tablename__ = "customer_suspensions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(String(200))
    resume_reason: Mapped[str | None] = mapped_column(String(200))


class SipDevice(TimestampMixin, Base):
    __tablename__ = "sip_devices"
    __table_args__ = (
        UniqueConstraint("customer_id", "extension"),
        CheckConstraint(_in("status", DEVICE_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    # The SIP login: globally unique because REGISTER finds the device by it alone.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # The realm the HA1s were computed for (the customer's domain or the default realm at the
    # time the password was set): the registrar must challenge with exactly this realm.
    realm: Mapped[str] = mapped_column(String(253))
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    extension: Mapped[str | None] = mapped_column(String(15))
    caller_number: Mapped[str | None] = mapped_column(String(32))
    display_name: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    max_sessions: Mapped[int] = mapped_column(Integer, default=0)
    cps: Mapped[int] = mapped_column(Integer, default=0)
    # Normalised addresses or networks (ipaddress); empty = from anywhere.
    allowed_ips: Mapped[list[str]] = mapped_column(JSON, default=list)
    voicemail_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    voicemail_email: Mapped[str | None] = mapped_column(String(254))
    # This user's own daily outgoing limit (<= the customer's ceiling); NULL = the customer's default.
    fraud_limit: Mapped[Decimal | None] = mapped_column(Money())


class IpDevice(TimestampMixin, Base):
    __tablename__ = "ip_devices"
    __table_args__ = (
        UniqueConstraint("ip", "port"),
        # NULLs are distinct in a UNIQUE constraint, so "this address, any port" needs its own
        # partial index to stay unique.
        Index(
            "uq_ip_devices_ip_anyport",
            "ip",
            unique=True,
            sqlite_where=text("port IS NULL"),
            postgresql_where=text("port IS NULL"),
        ),
        CheckConstraint(_in("status", DEVICE_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    ip: Mapped[str] = mapped_column(String(45))  # ipaddress-normalised text
    port: Mapped[int | None] = mapped_column(Integer)  # NULL = any source port
    tech_prefix: Mapped[str] = mapped_column(String(16), default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    max_sessions: Mapped[int] = mapped_column(Integer, default=0)
    cps: Mapped[int] = mapped_column(Integer, default=0)
    caller_number: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(200), default="", server_default="")


class Tariff(TimestampMixin, Base):
    """A named rate deck (docs/rating-spec.md), owned by the service provider or a reseller."""

    __tablename__ = "tariffs"
    __table_args__ = (
        UniqueConstraint("reseller_id", "name"),
        Index(
            "uq_tariffs_name_provider",
            "name",
            unique=True,
            sqlite_where=text("reseller_id IS NULL"),
            postgresql_where=text("reseller_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reseller_id: Mapped[int | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(200), default="")
    currency: Mapped[str] = mapped_column(String(3), default="GBP")
    # A derived tariff: the base's rows times (1 + markup/100), then this tariff's own rows as overrides.
    base_tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id"), index=True)
    markup_percent: Mapped[Decimal | None] = mapped_column(Money())


class Rate(Base):
    """One row of a rate deck; the columns are exactly those of docs/rating-spec.md."""

    __tablename__ = "rates"
    __table_args__ = (
        Index("ix_rates_tariff_id_prefix", "tariff_id", "prefix"),
        CheckConstraint("rate >= 0", name="rate"),
        CheckConstraint("connect_fee >= 0", name="connect_fee"),
        CheckConstraint("increment >= 1", name="increment"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(20))
    destination: Mapped[str] = mapped_column(String(100), default="")
    rate: Mapped[Decimal] = mapped_column(Money())
    connect_fee: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))
    initial_increment: Mapped[int] = mapped_column(Integer)
    increment: Mapped[int] = mapped_column(Integer, default=60)
    grace_seconds: Mapped[int] = mapped_column(Integer, default=0)
    included_seconds: Mapped[int] = mapped_column(Integer, default=0)
    effective_from: Mapped[datetime | None] = mapped_column(UtcDateTime())  # NULL = beginning of time
    effective_to: Mapped[datetime | None] = mapped_column(UtcDateTime())  # NULL = end of time


class ServicePlan(TimestampMixin, Base):
    """The service provider's offer a customer is on: its bundles and fraud defaults."""

    __tablename__ = "service_plans"
    __table_args__ = (CheckConstraint(_in("status", DEVICE_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(1000), default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    fraud_limit_default: Mapped[Decimal | None] = mapped_column(Money())
    fraud_limit_ceiling: Mapped[Decimal | None] = mapped_column(Money())


class CallBundle(TimestampMixin, Base):
    """Free minutes per calendar month for numbers starting with one of the zone prefixes."""

    __tablename__ = "call_bundles"
    __table_args__ = (UniqueConstraint("service_plan_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_plan_id: Mapped[int] = mapped_column(ForeignKey("service_plans.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    minutes: Mapped[int] = mapped_column(Integer)
    zone_prefixes: Mapped[list[str]] = mapped_column(JSON, default=list)


class CustomerBundle(Base):
    __tablename__ = "customer_bundles"
    __table_args__ = (UniqueConstraint("customer_id", "bundle_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    bundle_id: Mapped[int] = mapped_column(ForeignKey("call_bundles.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LedgerEntry(Base):
    """A movement of a customer's balance; the balance is the sum of these, never a stored column."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(_in("kind", LEDGER_KINDS), name="kind"),
        Index("ix_ledger_entries_customer_id_at", "customer_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    # Signed, in the customer's currency: payments and credits are positive, charges negative.
    amount: Mapped[Decimal] = mapped_column(Money())
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)  # when it takes effect
    description: Mapped[str] = mapped_column(String(200), default="")
    reference: Mapped[str] = mapped_column(String(100), default="")  # receipt, transaction id
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    # Set on the entries the billing posts (call charges of a sidecar batch, differences of a
    # re-rating run): the calls behind the entry are the rated calls of that run.
    billing_run_id: Mapped[int | None] = mapped_column(ForeignKey("billing_runs.id"), index=True)


class Carrier(TimestampMixin, Base):
    """A termination gateway the service provider sends calls to."""

    __tablename__ = "carriers"
    __table_args__ = (
        CheckConstraint(_in("status", DEVICE_STATUSES), name="status"),
        CheckConstraint(_in("transport", TRANSPORTS), name="transport"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer, default=5060)
    transport: Mapped[str] = mapped_column(String(4), default="udp")
    # Applied to the dialled number: strip_prefix is removed if the number starts with it, then
    # add_prefix is put in front (e.g. strip "00", add "+" or a carrier's tech prefix).
    strip_prefix: Mapped[str] = mapped_column(String(20), default="")
    add_prefix: Mapped[str] = mapped_column(String(20), default="")
    max_sessions: Mapped[int] = mapped_column(Integer, default=0)
    cps: Mapped[int] = mapped_column(Integer, default=0)
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id"), index=True)  # buy tariff
    status: Mapped[str] = mapped_column(String(16), default="active")


class Route(TimestampMixin, Base):
    """Dialing route: numbers starting with ``dial_pattern`` go to its carriers, by ``strategy``.

    ``customer_id`` NULL: for every customer; set: only for that customer (OV500's per-customer
    dialing routes), preferred over a general route of the same or a shorter pattern.
    """

    __tablename__ = "routes"
    __table_args__ = (
        CheckConstraint(_in("status", DEVICE_STATUSES), name="status"),
        CheckConstraint(_in("strategy", ROUTE_STRATEGIES), name="strategy"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    dial_pattern: Mapped[str] = mapped_column(String(20), default="")
    strategy: Mapped[str] = mapped_column(String(16), default="priority")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")


class RouteCarrier(Base):
    __tablename__ = "route_carriers"
    __table_args__ = (UniqueConstraint("route_id", "carrier_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    route_id: Mapped[int] = mapped_column(ForeignKey("routes.id", ondelete="CASCADE"), index=True)
    carrier_id: Mapped[int] = mapped_column(ForeignKey("carriers.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 0 first (priority strategy)
    weight: Mapped[int] = mapped_column(Integer, default=1)  # weighted strategy


class TranslationRule(Base):
    """OV500 number translation: a number starting with ``match`` has that part replaced.

    ``kind``: source / destination for the customer's outbound calls, did_source /
    did_destination for calls to its DIDs.  Rules of one kind are tried in ``position`` order and
    the first match applies.
    """

    __tablename__ = "translation_rules"
    __table_args__ = (
        CheckConstraint(_in("kind", TRANSLATION_KINDS), name="kind"),
        Index("ix_translation_rules_customer_id_kind", "customer_id", "kind", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer, default=0)
    match: Mapped[str] = mapped_column(String(21))
    replacement: Mapped[str] = mapped_column(String(21))
    description: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Did(TimestampMixin, Base):
    """A DID (direct dial number): owned by a reseller, assigned to a customer, routed to a target."""

    __tablename__ = "dids"
    __table_args__ = (
        CheckConstraint(_in("status", DEVICE_STATUSES), name="status"),
        CheckConstraint(_in("destination_type", DID_DESTINATIONS), name="destination_type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)  # E.164 digits, no '+'
    reseller_id: Mapped[int | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    destination_type: Mapped[str | None] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(255), default="")
    max_sessions: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    description: Mapped[str] = mapped_column(String(200), default="")


class AuditEntry(Base):
    """Who changed what, when, with the values before and after (secrets masked)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity_entity_id", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    # A parent acting as a child ("switch over login"): who really did it.
    via: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    # Tenancy of the changed row: the owning reseller's path ("/" for the service provider's own)
    # and the customer it belongs to, so that each tenant can read its part of the log.
    tenant_path: Mapped[str] = mapped_column(String(512), index=True)
    customer_id: Mapped[int | None] = mapped_column(Integer, index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class LoginEvent(Base):
    """One web login attempt (success, failure or refusal while blocked), or a switch-over."""

    __tablename__ = "login_history"
    __table_args__ = (Index("ix_login_history_login_at", "login", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    login: Mapped[str] = mapped_column(String(170))
    outcome: Mapped[str] = mapped_column(String(16))  # LOGIN_OUTCOMES
    principal_kind: Mapped[str | None] = mapped_column(String(16))
    principal_id: Mapped[int | None] = mapped_column(Integer)
    ip: Mapped[str] = mapped_column(String(45), default="")
    tenant_path: Mapped[str] = mapped_column(String(512), default="/", index=True)
    customer_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(String(200), default="")


class Registration(Base):
    """One binding (switch.registrar.location.Binding) of an AOR to a contact."""

    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("aor", "contact"),)

    # BIGINT: PostgreSQL's INSERT .. ON CONFLICT takes a sequence value even when it updates, and
    # a busy registrar refreshes thousands of bindings per second.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    aor: Mapped[str] = mapped_column(String(64))
    # No foreign key: bindings are written behind, and one may land just after its device was
    # deleted; load_bindings() ignores bindings whose device is gone.
    device_id: Mapped[int] = mapped_column(Integer, index=True)
    contact: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[float] = mapped_column(Double, index=True)  # epoch seconds, UTC
    call_id: Mapped[str] = mapped_column(String(255))
    cseq: Mapped[int] = mapped_column(BigInteger)
    source_ip: Mapped[str] = mapped_column(String(45))
    source_port: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(8))
    local_port: Mapped[int] = mapped_column(Integer)
    q: Mapped[float | None] = mapped_column(Double)
    user_agent: Mapped[str] = mapped_column(Text, default="")
    conn_id: Mapped[int | None] = mapped_column(BigInteger)
    params: Mapped[str] = mapped_column(Text, default="")


def _cdr_columns() -> list[Column[Any]]:
    columns: list[Column[Any]] = []
    for name, (typ, nullable) in CDR_TYPES.items():
        # Milliseconds since the epoch overflow 32 bits, so every integer is 64-bit.
        sqltype = BigInteger() if typ is int else Text()
        columns.append(Column(name, sqltype, nullable=nullable, unique=(name == "call_id")))
    return columns


# A Core table derived from cdr.schema so the model can never disagree with the record; the
# migration spells the columns out (migrations must not move when the code does) and a test
# checks the two against each other.
cdrs = Table(
    "cdrs",
    Base.metadata,
    Column("id", BigId, primary_key=True),
    *_cdr_columns(),
    Index("ix_cdrs_customer_id", "customer_id"),
    Index("ix_cdrs_start_ms", "start_ms"),
    Index("ix_cdrs_sip_call_id", "sip_call_id"),  # the caller's Call-ID: not unique (migration 0004)
)


class BillingRun(Base):
    """One rating pass over CDRs: a billing sidecar batch, or a ``trunkline rerate`` run."""

    __tablename__ = "billing_runs"
    __table_args__ = (CheckConstraint(_in("kind", BILLING_RUN_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The rating book the run used: the change-feed id it was loaded at.
    book_version: Mapped[int] = mapped_column(BigInteger, default=0)
    calls: Mapped[int] = mapped_column(Integer, default=0)  # calls (re-)rated by the run
    # A re-rating run's range and customer filter (NULL for batches).
    since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    customer_id: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RatedCall(Base):
    """What one CDR cost: the customer's side (debit, bundle use) and the carrier cost.

    One row per stored CDR once the billing sidecar has seen it (whatever its status), replaced
    as a whole when the call is re-rated.  Amounts are exact (:class:`Money`); ``t_ms`` is the
    instant rating used (the answer time of an answered call, else its start), which also
    decides its bundle month and the invoice period it belongs to.
    """

    __tablename__ = "rated_calls"
    __table_args__ = (
        CheckConstraint(_in("status", RATED_STATUSES), name="status"),
        Index("ix_rated_calls_customer_id_t_ms", "customer_id", "t_ms"),
    )

    call_id: Mapped[str] = mapped_column(Text, ForeignKey("cdrs.call_id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(Integer)
    t_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(200), default="")  # why a call is unbillable
    prefix: Mapped[str | None] = mapped_column(String(20))
    destination: Mapped[str | None] = mapped_column(String(100))
    billed_seconds: Mapped[int | None] = mapped_column(BigInteger)
    bundle_seconds: Mapped[int | None] = mapped_column(BigInteger)
    bundle_id: Mapped[int | None] = mapped_column(Integer)  # call_bundles.id
    bundle_month: Mapped[int | None] = mapped_column(Integer)  # yyyymm, the customer's time zone
    debit: Mapped[Decimal | None] = mapped_column(Money())
    # Whether the debit is in the customer's ledger (not for DEMO customers or unrated calls).
    charged: Mapped[bool] = mapped_column(Boolean, default=False)
    carrier_id: Mapped[int | None] = mapped_column(Integer)
    carrier_cost: Mapped[Decimal | None] = mapped_column(Money())
    run_id: Mapped[int] = mapped_column(ForeignKey("billing_runs.id"), index=True)
    book_version: Mapped[int] = mapped_column(BigInteger)
    rated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class RatedLevel(Base):
    """One level of a rated call's account tree: 0 the customer (= its debit), 1 its reseller
    (what that reseller owes its parent), and so on up (docs/rating-spec.md "Who pays whom")."""

    __tablename__ = "rated_levels"

    call_id: Mapped[str] = mapped_column(
        Text, ForeignKey("rated_calls.call_id", ondelete="CASCADE"), primary_key=True
    )
    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(Integer)  # a customer id at level 0, reseller ids above
    amount: Mapped[Decimal | None] = mapped_column(Money())  # NULL: that level's tariff has no row


class BundleUsage(Base):
    """Seconds of a customer's call bundle used in one calendar month (its time zone)."""

    __tablename__ = "bundle_usage"

    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bundle_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # call_bundles.id
    month: Mapped[int] = mapped_column(Integer, primary_key=True)  # yyyymm
    used_seconds: Mapped[int] = mapped_column(BigInteger, default=0)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint(_in("kind", TOKEN_KINDS), name="kind"),
        Index("ix_api_tokens_kind_owner_id", "kind", "owner_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int | None] = mapped_column(Integer)  # reseller or customer id; NULL for admin
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the token
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Tokens issued by a web login or a switch-over expire; API tokens made by hand need not.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The admin user who logged in (NULL for API tokens and customer logins).
    user_id: Mapped[int | None] = mapped_column(Integer)
    # Switch-over: the parent's token this one was issued to; revoking that one ends this one too.
    parent_token_id: Mapped[int | None] = mapped_column(Integer)


class Change(Base):
    """One provisioning change, inserted in the same transaction as the change itself."""

    __tablename__ = "changes"
    # AUTOINCREMENT: SQLite would otherwise reuse ids after pruning, and a watcher that has seen
    # id N would miss a new change numbered N again.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


registrations = cast(Table, Registration.__table__)
changes = cast(Table, Change.__table__)
billing_runs = cast(Table, BillingRun.__table__)
rated_calls = cast(Table, RatedCall.__table__)
rated_levels = cast(Table, RatedLevel.__table__)
bundle_usage = cast(Table, BundleUsage.__table__)
ledger_entries = cast(Table, LedgerEntry.__table__)
api_tokens = cast(Table, ApiToken.__table__)
