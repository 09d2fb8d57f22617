"""Customer schemas: OV500's customer form plus the iPECS OMS fields.

Only ``name`` is required; every other field's default is documented here and in docs/api.md.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator

from admin_api.schemas.common import (
    Domain,
    Id,
    Limit,
    Money,
    MoneyOut,
    Percent,
    ReadModel,
    WriteModel,
    not_enforced,
    not_null,
    text,
)
from provisioning.validation import (
    ACCOUNT_CODE_PATTERN,
    CALLER_NUMBER_PATTERN,
    CUSTOMER_EMAIL_MAX_LENGTH,
    EMAIL_PATTERN,
    NO_CONTROL_PATTERN,
    PHONE_PATTERN,
    PIN_PATTERN,
    WEB_PASSWORD_MAX_LENGTH,
    WEB_PASSWORD_RULE,
    WEB_USERNAME_PATTERN,
    is_strong_web_password,
)

CustomerStatus = Literal["created", "active", "stopped", "closed"]
CustomerType = Literal["LIVE", "DEMO"]
BillingType = Literal["prepaid", "postpaid"]
TaxType = Literal["NONE", "VAT", "TAX"]
Codec = Literal["PCMU", "PCMA", "G722", "G729", "GSM", "iLBC", "opus", "telephone-event"]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_CONTROL_PATTERN)
]


def _not_reserved(value: str) -> str:
    if not re.fullmatch(ACCOUNT_CODE_PATTERN, value):
        raise ValueError("C followed by 9 digits is reserved for generated account codes")
    return value


AccountCode = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9_-]{1,20}$", description="1-20 letters, digits, '_' or '-' (C + 9 digits is reserved)"),
    AfterValidator(_not_reserved),
]
WebUsername = Annotated[str, Field(pattern=WEB_USERNAME_PATTERN, description="Self-care login, at most 30, no '@'")]
Email = Annotated[str, Field(max_length=CUSTOMER_EMAIL_MAX_LENGTH, pattern=EMAIL_PATTERN)]
Phone = Annotated[str, Field(pattern=PHONE_PATTERN, description="6-15 digits, optional leading +")]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code, e.g. GB")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. GBP")]
TimeZone = Annotated[str, Field(max_length=64, description="IANA time zone, e.g. Europe/London")]
Pin = Annotated[str, Field(pattern=PIN_PATTERN, description="Postal (PIN) code")]
Cli = Annotated[str, Field(pattern=CALLER_NUMBER_PATTERN, description="Company outgoing caller number")]
TrunkMax = Annotated[int, Field(ge=0, le=1000)]
PaymentTerm = Annotated[int, Field(ge=1, le=30)]
Decimals = Annotated[int, Field(ge=0, le=6)]
Codecs = Annotated[list[Codec], Field(min_length=1, max_length=8)]


def _strong(value: str | None) -> str | None:
    if value is not None and not is_strong_web_password(value):
        raise ValueError(f"must have {WEB_PASSWORD_RULE}")
    return value


WebPassword = Annotated[
    str,
    Field(
        max_length=WEB_PASSWORD_MAX_LENGTH,
        description=f"Self-care password: {WEB_PASSWORD_RULE}; stored hashed, never returned",
        json_schema_extra={"writeOnly": True},
    ),
]


# Kept for the billing and the switch's next steps; the switch admits calls on status alone today.
CUSTOMER_NOT_ENFORCED = (
    "max_sessions",
    "cps",
    "max_call_seconds",
    "billing_type",
    "credit_limit",
    "codecs",
    "call_with_media",
    "cli",
    "trunk_channel_max",
    "fraud_limit_default",
    "fraud_limit_ceiling",
)


def _default_codecs() -> list[Codec]:
    return ["PCMA", "PCMU"]


@not_enforced(*CUSTOMER_NOT_ENFORCED)
class CustomerCreate(WriteModel):
    name: Name
    reseller_id: Id | None = Field(
        default=None,
        description="Owning reseller; empty = directly under the service provider "
        "(for a reseller's token: that reseller)",
    )
    domain: Domain | None = Field(
        default=None,
        description="SIP domain, lowercase and unique; immutable once set. Devices of a customer "
        "without a domain use the switch's default realm.",
    )
    status: Literal["created", "active"] = Field(
        default="active",
        description="active: can call at once (default); created: waits for POST .../activate (Service Start)",
    )
    max_sessions: Limit = Field(default=0, description="Concurrent calls; 0 = no limit")
    cps: Limit = Field(default=0, description="Call attempts per second; 0 = no limit")
    max_call_seconds: Limit = Field(default=0, description="Longest call; 0 = no limit")
    account_code: AccountCode | None = Field(default=None, description="Empty: generated as C + 9 digits")
    customer_type: CustomerType = Field(default="LIVE", description="DEMO customers are not charged")
    web_username: WebUsername | None = None
    web_password: WebPassword | None = None
    tariff_id: Id | None = Field(default=None, description="Empty: the owning reseller's default tariff")
    service_plan_id: Id | None = None
    billing_type: BillingType = "postpaid"
    payment_term_days: PaymentTerm = 30
    credit_limit: Money = Decimal(0)
    billing_decimals: Decimals | None = Field(default=None, description="Empty: the reseller's (4 at the top)")
    tax_type: TaxType = "NONE"
    tax_rate: Percent = Field(default=Decimal(0), description="Percent, applied on invoices")
    codecs: Codecs = Field(default_factory=_default_codecs)
    call_with_media: bool = Field(default=True, description="The switch relays the media (RTP)")
    company: Annotated[str, text(100)] = ""
    email: Email | None = None
    address: Annotated[str, text(200)] = ""
    city: Annotated[str, text(100)] = ""
    province: Annotated[str, text(100)] = ""
    pin: Pin | None = None
    country: Country | None = None
    phone: Phone | None = None
    mobile: Phone | None = None
    timezone: TimeZone | None = Field(default=None, description="Empty: the reseller's (UTC at the top)")
    currency: Currency | None = Field(default=None, description="Empty: the reseller's (GBP at the top)")
    cli: Cli | None = None
    trunk_channel_max: TrunkMax | None = Field(default=None, description="SIP trunk channels (0-1000); empty = no cap")
    fraud_limit_default: Money | None = Field(
        default=None, description="Per-user daily outgoing limit; empty = the service plan's (or none)"
    )
    fraud_limit_ceiling: Money | None = Field(
        default=None, description="Highest per-user limit allowed; empty = the service plan's (or none)"
    )

    _password = field_validator("web_password")(_strong)


@not_enforced(*CUSTOMER_NOT_ENFORCED)
class CustomerUpdate(WriteModel):
    name: Name | None = None
    domain: Domain | None = Field(default=None, description="May be set once, never changed")
    reseller_id: Id | None = Field(default=None, description="Move to another reseller (takes its default tariff)")
    max_sessions: Limit | None = None
    cps: Limit | None = None
    max_call_seconds: Limit | None = None
    account_code: AccountCode | None = None
    customer_type: CustomerType | None = None
    web_username: WebUsername | None = None
    web_password: WebPassword | None = None
    tariff_id: Id | None = None
    service_plan_id: Id | None = None
    billing_type: BillingType | None = None
    payment_term_days: PaymentTerm | None = None
    credit_limit: Money | None = None
    billing_decimals: Decimals | None = None
    tax_type: TaxType | None = None
    tax_rate: Percent | None = None
    codecs: Codecs | None = None
    call_with_media: bool | None = None
    company: Annotated[str, text(100)] | None = None
    email: Email | None = None
    address: Annotated[str, text(200)] | None = None
    city: Annotated[str, text(100)] | None = None
    province: Annotated[str, text(100)] | None = None
    pin: Pin | None = None
    country: Country | None = None
    phone: Phone | None = None
    mobile: Phone | None = None
    timezone: TimeZone | None = None
    currency: Currency | None = None
    cli: Cli | None = None
    trunk_channel_max: TrunkMax | None = None
    fraud_limit_default: Money | None = None
    fraud_limit_ceiling: Money | None = None

    _not_null = field_validator(
        "name",
        "max_sessions",
        "cps",
        "max_call_seconds",
        "account_code",
        "customer_type",
        "billing_type",
        "payment_term_days",
        "credit_limit",
        "billing_decimals",
        "tax_type",
        "tax_rate",
        "codecs",
        "call_with_media",
        "company",
        "address",
        "city",
        "province",
        "timezone",
        "currency",
    )(not_null)
    _password = field_validator("web_password")(_strong)


@not_enforced(*CUSTOMER_NOT_ENFORCED)
class CustomerPublic(ReadModel):
    id: int
    reseller_id: int | None
    account_code: str | None
    name: str
    company: str
    domain: str | None
    status: CustomerStatus
    customer_type: CustomerType
    web_username: str | None
    tariff_id: int | None
    service_plan_id: int | None
    billing_type: BillingType
    payment_term_days: int
    credit_limit: MoneyOut
    billing_decimals: int
    tax_type: TaxType
    tax_rate: MoneyOut
    max_sessions: int
    cps: int
    max_call_seconds: int
    codecs: list[str]
    call_with_media: bool
    email: str | None
    address: str
    city: str
    province: str
    pin: str | None
    country: str | None
    phone: str | None
    mobile: str | None
    timezone: str
    currency: str
    cli: str | None
    trunk_channel_max: int | None
    fraud_limit_default: MoneyOut | None
    fraud_limit_ceiling: MoneyOut | None
    activated_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SuspensionPublic(ReadModel):
    id: int
    customer_id: int
    started_at: datetime
    ended_at: datetime | None
    reason: str
    resume_reason: str | None


class StatusEventPublic(ReadModel):
    id: int
    customer_id: int
    operation: str
    from_status: str
    to_status: str
    reason: str
    comment: str
    at: datetime
    actor: str


class CustomerImportResult(ReadModel):
    customers: int
    sip_devices: int
    translation_rules: int
    customer_ids: list[int]
