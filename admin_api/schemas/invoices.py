"""Invoice and rated-call schemas."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import Field

from admin_api.schemas.common import MoneyOut, ReadModel
from admin_api.schemas.money import LedgerEntryPublic


class InvoiceLine(ReadModel):
    destination: str = Field(description="The destination name of the customer's tariff (or its prefix)")
    calls: int
    seconds: int = Field(description="Billed seconds")
    minutes: Decimal = Field(description="Billed minutes, two places (display)")
    amount: MoneyOut


class InvoiceBundle(ReadModel):
    bundle_id: int
    name: str
    month: str = Field(examples=["2026-01"], description="Calendar month in the customer's time zone")
    allowance_seconds: int | None = Field(description="Per month (minutes x quantity x 60); empty if no longer held")
    used_seconds: int


class InvoicePublic(ReadModel):
    customer_id: int
    account_code: str | None
    name: str
    company: str
    currency: str
    timezone: str
    billing_decimals: int
    month: str | None = Field(description="The calendar month asked for, if any")
    since: datetime
    until: datetime
    calls: list[InvoiceLine] = Field(description="Charged calls of the period grouped by destination")
    calls_count: int
    calls_seconds: int
    usage_total: MoneyOut = Field(description="What the calls cost (the sum of their debits)")
    bundles: list[InvoiceBundle]
    payments: list[LedgerEntryPublic]
    payments_total: MoneyOut
    other_charges: list[LedgerEntryPublic] = Field(description="Charges and adjustments posted by hand")
    other_total: MoneyOut = Field(description="What those add to the bill (charges positive, credits negative)")
    subtotal: MoneyOut = Field(description="usage_total + other_total")
    tax_type: str = Field(description="NONE, VAT or TAX")
    tax_rate: MoneyOut = Field(description="Percent")
    tax: MoneyOut = Field(description="subtotal x tax_rate / 100, rounded half-up once to billing_decimals")
    total: MoneyOut = Field(description="subtotal + tax")
    uncharged_calls: int = Field(description="Calls of the period not charged: free, unanswered, unrated, DEMO")


class RatedCallPublic(ReadModel):
    call_id: str
    t_ms: int = Field(description="The instant rating used (answer time, else start), epoch ms UTC")
    status: str = Field(description="rated, unanswered, no_rate, internal, inbound or unbillable")
    note: str = Field(default="", description="Why a call is not charged; empty for a customer's token")
    prefix: str | None
    destination: str | None
    billed_seconds: int | None
    bundle_seconds: int | None
    bundle_id: int | None
    bundle_month: int | None = Field(description="yyyymm in the customer's time zone")
    debit: MoneyOut | None = Field(description="What the call cost the customer")
    charged: bool = Field(description="Whether the debit is in the customer's ledger")
    run_id: int = Field(description="The billing run that rated it (a sidecar batch or a re-rating)")
    rated_at: datetime
