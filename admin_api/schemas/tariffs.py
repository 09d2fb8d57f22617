"""Tariff, rate, service plan and call bundle schemas.  Rate columns: docs/rating-spec.md."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import Field, field_validator

from admin_api.schemas.common import (
    SIGNED_DECIMAL,
    UNSIGNED_DECIMAL,
    EntityStatus,
    Id,
    Instant,
    Money,
    MoneyOut,
    ReadModel,
    WriteModel,
    exact_decimal,
    not_null,
    text,
)
from admin_api.schemas.customers import Currency

Prefix = Annotated[str, Field(pattern=r"^[0-9]{1,20}$", description="1-20 digits")]
Price = Annotated[
    Decimal, Field(ge=0, le=1_000_000, max_digits=18, decimal_places=6), *exact_decimal(UNSIGNED_DECIMAL, minimum=0)
]
Seconds = Annotated[int, Field(ge=0, le=31 * 86_400)]
Increment = Annotated[int, Field(ge=1, le=86_400)]
InitialIncrement = Annotated[int, Field(ge=0, le=86_400)]
Markup = Annotated[
    Decimal, Field(gt=-100, le=100_000, max_digits=18, decimal_places=6), *exact_decimal(SIGNED_DECIMAL)
]


class TariffCreate(WriteModel):
    name: Annotated[str, text(100, min_length=1)]
    reseller_id: Id | None = Field(default=None, description="Owner; empty = the caller's reseller (or the provider)")
    description: Annotated[str, text(200)] = ""
    currency: Currency | None = Field(default=None, description="Empty: the owner's currency")
    base_tariff_id: Id | None = Field(
        default=None, description="Derive from this tariff (the owner's own, or the one it buys on)"
    )
    markup_percent: Markup | None = Field(default=None, description="Derived rates = base x (1 + markup/100)")


class TariffUpdate(WriteModel):
    name: Annotated[str, text(100, min_length=1)] | None = None
    description: Annotated[str, text(200)] | None = None
    currency: Currency | None = None
    base_tariff_id: Id | None = None
    markup_percent: Markup | None = None

    _not_null = field_validator("name", "description", "currency")(not_null)


class TariffCustomerView(ReadModel):
    """A tariff as a customer's token sees it: without the base tariff and markup (its reseller's
    buy price and margin are not the customer's business)."""

    id: int
    reseller_id: int | None
    name: str
    description: str
    currency: str
    created_at: datetime
    updated_at: datetime


class TariffPublic(TariffCustomerView):
    base_tariff_id: int | None = Field(default=None, description="Always empty for a customer's token")
    markup_percent: MoneyOut | None = Field(default=None, description="Always empty for a customer's token")


class RateCreate(WriteModel):
    prefix: Prefix
    destination: Annotated[str, text(100)] = ""
    rate: Price = Field(description="Per minute")
    connect_fee: Price = Decimal(0)
    initial_increment: InitialIncrement | None = Field(default=None, description="Empty: = increment")
    increment: Increment = 60
    grace_seconds: Seconds = 0
    included_seconds: Seconds = 0
    effective_from: Instant | None = Field(default=None, description="Inclusive; empty = beginning of time")
    effective_to: Instant | None = Field(default=None, description="Exclusive; empty = end of time")


class RateUpdate(WriteModel):
    prefix: Prefix | None = None
    destination: Annotated[str, text(100)] | None = None
    rate: Price | None = None
    connect_fee: Price | None = None
    initial_increment: InitialIncrement | None = None
    increment: Increment | None = None
    grace_seconds: Seconds | None = None
    included_seconds: Seconds | None = None
    effective_from: Instant | None = None
    effective_to: Instant | None = None

    _not_null = field_validator(
        "prefix", "destination", "rate", "connect_fee", "initial_increment", "increment", "grace_seconds",
        "included_seconds",
    )(not_null)  # fmt: skip


class RatePublic(ReadModel):
    id: int
    tariff_id: int
    prefix: str
    destination: str
    rate: MoneyOut
    connect_fee: MoneyOut
    initial_increment: int
    increment: int
    grace_seconds: int
    included_seconds: int
    effective_from: datetime | None
    effective_to: datetime | None


class DeckImportResult(ReadModel):
    tariff_id: int
    mode: str
    rows: int = Field(description="Rows stored")
    replaced: int = Field(description="Rows the import replaced")


class ServicePlanCreate(WriteModel):
    name: Annotated[str, text(100, min_length=1)]
    description: Annotated[str, text(1000)] = ""
    status: EntityStatus = "active"
    fraud_limit_default: Money | None = Field(default=None, description="Per-user daily limit its customers start with")
    fraud_limit_ceiling: Money | None = Field(default=None, description="Highest per-user limit on this plan")


class ServicePlanUpdate(WriteModel):
    name: Annotated[str, text(100, min_length=1)] | None = None
    description: Annotated[str, text(1000)] | None = None
    status: EntityStatus | None = None
    fraud_limit_default: Money | None = None
    fraud_limit_ceiling: Money | None = None

    _not_null = field_validator("name", "description", "status")(not_null)


class ServicePlanPublic(ReadModel):
    id: int
    name: str
    description: str
    status: EntityStatus
    fraud_limit_default: MoneyOut | None
    fraud_limit_ceiling: MoneyOut | None
    created_at: datetime
    updated_at: datetime


ZonePrefixes = Annotated[list[Prefix], Field(min_length=1, max_length=100)]


class CallBundleCreate(WriteModel):
    name: Annotated[str, text(100, min_length=1)]
    minutes: Annotated[int, Field(ge=1, le=1_000_000, description="Free minutes per calendar month, per unit")]
    zone_prefixes: ZonePrefixes


class CallBundleUpdate(WriteModel):
    name: Annotated[str, text(100, min_length=1)] | None = None
    minutes: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    zone_prefixes: ZonePrefixes | None = None

    _not_null = field_validator("name", "minutes", "zone_prefixes")(not_null)


class CallBundlePublic(ReadModel):
    id: int
    service_plan_id: int
    name: str
    minutes: int
    zone_prefixes: list[str]


class CustomerBundleSet(WriteModel):
    quantity: Annotated[int, Field(ge=0, le=10_000, description="0 removes the bundle")]


class CustomerBundlePublic(ReadModel):
    id: int
    customer_id: int
    bundle_id: int
    quantity: int
