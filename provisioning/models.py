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
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
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
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cdr.schema import CDR_TYPES
from provisioning.db import UtcDateTime, utcnow

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
# Allowed lifecycle moves; "closed" is final.  Issue 4 turns these into operations with a reason.
CUSTOMER_TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"active", "closed"}),
    "active": frozenset({"stopped", "closed"}),
    "stopped": frozenset({"active", "closed"}),
    "closed": frozenset(),
}
DEVICE_STATUSES = ("active", "inactive")
RESELLER_STATUSES = ("active", "inactive")
TOKEN_KINDS = ("admin", "reseller", "customer")

# Entity names written to ``changes.entity``.
ENTITY_RESELLER = "reseller"
ENTITY_CUSTOMER = "customer"
ENTITY_SIP_DEVICE = "sip_device"
ENTITY_IP_DEVICE = "ip_device"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class Reseller(TimestampMixin, Base):
    __tablename__ = "resellers"
    __table_args__ = (CheckConstraint(_in("status", RESELLER_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # "/<root id>/.../<own id>/": a reseller's descendants are the rows whose path starts with it.
    path: Mapped[str] = mapped_column(String(512), default="", index=True)


class Customer(TimestampMixin, Base):
    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint(_in("status", CUSTOMER_STATUSES), name="status"),
        CheckConstraint("domain = lower(domain)", name="domain_lowercase"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reseller_id: Mapped[int | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    # Lowercase, unique, immutable once set; NULL = devices use the switch's default realm.
    domain: Mapped[str | None] = mapped_column(String(253), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    max_sessions: Mapped[int] = mapped_column(Integer, default=0)  # 0 = no limit
    cps: Mapped[int] = mapped_column(Integer, default=0)
    max_call_seconds: Mapped[int] = mapped_column(Integer, default=0)


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
)


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
api_tokens = cast(Table, ApiToken.__table__)
