"""A customer's money: a ledger of payments, adjustments and charges, and statements from it.

There is no balance column that could drift from its history: the balance is the sum of the
ledger (payments and credits positive, charges negative), computed in the database in one
aggregate.  An entry is never changed or deleted; a mistake is corrected by an adjustment, so a
statement printed last month still adds up today.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioning.audit import actor_of
from provisioning.db import utcnow
from provisioning.errors import InvalidValue, NotPermitted
from provisioning.models import Customer, LedgerEntry
from provisioning.repo._common import Listing, apply_sort, flush, require_money, require_text
from provisioning.repo.customers import get_customer
from provisioning.scope import Scope

SORTABLE = ("id", "at", "amount", "kind")


def _check_writer(scope: Scope) -> None:
    if scope.kind == "customer":
        raise NotPermitted("customers cannot post to their own balance")


def add_entry(
    session: Session,
    *,
    scope: Scope,
    customer_id: int,
    kind: str,
    amount: Decimal,
    description: str = "",
    reference: str = "",
    at: datetime | None = None,
) -> LedgerEntry:
    """A payment (amount > 0), an adjustment (either sign, not 0) or a charge (amount > 0, booked
    as a debit)."""
    _check_writer(scope)
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    if kind not in ("payment", "adjustment", "charge"):
        raise InvalidValue("kind must be payment, adjustment or charge", field="kind")
    require_money({"amount": amount}, "amount", minimum=None)
    if kind in ("payment", "charge") and amount <= 0:
        raise InvalidValue(f"a {kind} amount must be positive", field="amount")
    if kind == "adjustment" and amount == 0:
        raise InvalidValue("an adjustment of 0 changes nothing", field="amount")
    require_text({"description": description}, "description", max_length=200)
    require_text({"reference": reference}, "reference", max_length=100)
    if at is not None and at.tzinfo is None:
        raise InvalidValue("at needs a UTC offset", field="at")
    entry = LedgerEntry(
        customer_id=customer.id,
        kind=kind,
        amount=-amount if kind == "charge" else amount,
        at=at or utcnow(),
        description=description,
        reference=reference,
        created_by=actor_of(session).label,
    )
    session.add(entry)
    flush(session)
    return entry


def balance(session: Session, *, scope: Scope, customer_id: int, at: datetime | None = None) -> Decimal:
    """The sum of the customer's ledger (entries effective before ``at`` when given)."""
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    return _sum(session, customer.id, before=at)


def _sum(
    session: Session, customer_id: int, *, before: datetime | None = None, since: datetime | None = None
) -> Decimal:
    stmt = select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.customer_id == customer_id)
    if before is not None:
        stmt = stmt.where(LedgerEntry.at < before)
    if since is not None:
        stmt = stmt.where(LedgerEntry.at >= since)
    value = session.scalar(stmt)
    return Decimal(value or 0).quantize(Decimal("0.000001"))


def list_entries(
    session: Session,
    *,
    scope: Scope,
    customer_id: int,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sort: str | None = None,
) -> Listing:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    stmt = select(LedgerEntry).where(LedgerEntry.customer_id == customer.id)
    if kind:
        stmt = stmt.where(LedgerEntry.kind == kind)
    if since is not None:
        stmt = stmt.where(LedgerEntry.at >= since)
    if until is not None:
        stmt = stmt.where(LedgerEntry.at < until)
    columns = {key: getattr(LedgerEntry, key) for key in SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=LedgerEntry.id, default="at"))


@dataclass(frozen=True, slots=True)
class Statement:
    customer: Customer
    since: datetime
    until: datetime
    opening_balance: Decimal
    entries: list[LedgerEntry]
    closing_balance: Decimal
    decimals: int

    def money(self, value: Decimal) -> Decimal:
        """A value shown with the customer's billing decimals (rounded half-up, once, for display)."""
        return value.quantize(Decimal(1).scaleb(-self.decimals), rounding=ROUND_HALF_UP)


MAX_STATEMENT_ENTRIES = 100_000


def statement(session: Session, *, scope: Scope, customer_id: int, since: datetime, until: datetime) -> Statement:
    """Opening balance at ``since``, the entries in [since, until), closing balance at ``until``."""
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidValue("the period needs UTC offsets", field="since", location="query")
    if until <= since:
        raise InvalidValue("until must be after since", field="until", location="query")
    opening = _sum(session, customer.id, before=since)
    entries = list(
        session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.customer_id == customer.id, LedgerEntry.at >= since, LedgerEntry.at < until)
            .order_by(LedgerEntry.at, LedgerEntry.id)
            .limit(MAX_STATEMENT_ENTRIES)
        )
    )
    closing = _sum(session, customer.id, before=until)
    return Statement(
        customer=customer,
        since=since,
        until=until,
        opening_balance=opening,
        entries=entries,
        closing_balance=closing,
        decimals=customer.billing_decimals,
    )
