"""Ledger (payments, adjustments, charges), balance and statement schemas."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from admin_api.schemas.common import (
    UNSIGNED_DECIMAL,
    Instant,
    MoneyOut,
    ReadModel,
    SignedMoney,
    WriteModel,
    exact_decimal,
    text,
)

PositiveMoney = Annotated[
    Decimal, Field(gt=0, max_digits=18, decimal_places=6, examples=["50.00"]), *exact_decimal(UNSIGNED_DECIMAL)
]


class PaymentCreate(WriteModel):
    amount: PositiveMoney
    reference: Annotated[str, text(100)] = Field(default="", description="Receipt or transaction id")
    description: Annotated[str, text(200)] = ""
    at: Instant | None = Field(default=None, description="When it takes effect; empty = now")


class AdjustmentCreate(WriteModel):
    amount: SignedMoney = Field(description="Positive credits the customer, negative debits it; never 0")
    reference: Annotated[str, text(100)] = ""
    description: Annotated[str, text(200)] = ""
    at: Instant | None = None


class ChargeCreate(WriteModel):
    amount: PositiveMoney = Field(description="Debited from the balance")
    reference: Annotated[str, text(100)] = ""
    description: Annotated[str, text(200)] = ""
    at: Instant | None = None


class LedgerEntryPublic(ReadModel):
    id: int
    customer_id: int
    kind: Literal["payment", "adjustment", "charge"]
    amount: MoneyOut = Field(description="Signed: charges are negative")
    at: datetime
    description: str
    reference: str
    created_at: datetime
    created_by: str


class BalancePublic(ReadModel):
    customer_id: int
    currency: str
    balance: MoneyOut = Field(description="The sum of the ledger")
    credit_limit: MoneyOut
    available: MoneyOut = Field(description="balance + credit_limit: what calls may still spend")
    billing_type: str


class StatementPublic(ReadModel):
    customer_id: int
    currency: str
    since: datetime
    until: datetime
    opening_balance: MoneyOut
    entries: list[LedgerEntryPublic]
    closing_balance: MoneyOut
    total_credits: MoneyOut
    total_debits: MoneyOut
