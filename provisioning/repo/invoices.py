"""Invoices and rated calls: what the billing booked, per customer and period (tenancy-scoped).

An invoice is computed from the books when asked for (nothing is issued or stored): the
customer's *charged* calls whose rating instant (answer time, else start) falls in the period,
grouped by destination; the bundles used in the months of the period; the payments, and the
other charges and adjustments posted by hand; VAT or TAX on the period's total, rounded once
with the customer's billing decimals (docs/rating-spec.md "Taxes"); the total.

Calls re-rated after a tariff change show what they cost now (the ledger holds the difference
as an adjustment of the re-rating run, dated in the calls' month), so an invoice for a calendar
month of the customer's time zone always equals the billing's ledger entries of that month.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioning.errors import InvalidValue
from provisioning.models import CallBundle, Customer, CustomerBundle, LedgerEntry, RatedCall, bundle_usage
from provisioning.repo._common import Listing, apply_sort
from provisioning.repo.customers import get_customer
from provisioning.scope import Scope

RATED_SORTABLE = ("t_ms", "debit", "billed_seconds", "status", "destination")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    return (moment.astimezone(UTC) - _EPOCH) // _MS


def month_period(customer: Customer, month: str) -> tuple[datetime, datetime]:
    """[first instant, first instant of the next month) of ``YYYY-MM`` in the customer's zone."""
    try:
        year, mon = (int(part) for part in month.split("-"))
        if not (1 <= mon <= 12 and 1970 <= year <= 2100):
            raise ValueError
    except ValueError as exc:
        raise InvalidValue("month must be YYYY-MM", field="month", location="query") from exc
    zone = ZoneInfo(customer.timezone)
    start = datetime(year, mon, 1, tzinfo=zone)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _months(customer: Customer, since: datetime, until: datetime) -> list[int]:
    zone = ZoneInfo(customer.timezone)
    first = since.astimezone(zone)
    last = (until - _MS).astimezone(zone)
    out = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(y * 100 + m)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


@dataclass(frozen=True)
class DestinationLine:
    destination: str
    calls: int
    seconds: int  # billed seconds
    amount: Decimal


@dataclass(frozen=True)
class BundleLine:
    bundle_id: int
    name: str
    month: int  # yyyymm
    allowance_seconds: int | None  # None: the customer no longer holds the bundle
    used_seconds: int


@dataclass
class Invoice:
    customer: Customer
    since: datetime
    until: datetime
    month: str | None
    lines: list[DestinationLine]
    bundles: list[BundleLine]
    payments: list[LedgerEntry]
    other: list[LedgerEntry]  # charges and adjustments posted by hand in the period
    uncharged_calls: int  # free, unanswered, unrated or DEMO calls in the period (not on the invoice)
    decimals: int = field(init=False)

    def __post_init__(self) -> None:
        self.decimals = self.customer.billing_decimals

    @property
    def calls(self) -> int:
        return sum(line.calls for line in self.lines)

    @property
    def seconds(self) -> int:
        return sum(line.seconds for line in self.lines)

    @property
    def usage_total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))

    @property
    def payments_total(self) -> Decimal:
        return sum((e.amount for e in self.payments), Decimal(0))

    @property
    def other_total(self) -> Decimal:
        """What the manual entries add to the bill (a charge of 5 is stored as -5: adds 5)."""
        return -sum((e.amount for e in self.other), Decimal(0))

    @property
    def subtotal(self) -> Decimal:
        return self.usage_total + self.other_total

    @property
    def tax_type(self) -> str:
        return self.customer.tax_type

    @property
    def tax_rate(self) -> Decimal:
        return self.customer.tax_rate if self.customer.tax_type != "NONE" else Decimal(0)

    @property
    def tax(self) -> Decimal:
        """On the period's total, rounded half-up once with the customer's billing decimals."""
        if self.tax_type == "NONE":
            return Decimal(0)
        return (self.subtotal * self.tax_rate / 100).quantize(Decimal(1).scaleb(-self.decimals), rounding=ROUND_HALF_UP)

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax

    def shown(self, value: Decimal) -> Decimal:
        """A value as printed: the customer's billing decimals, rounded half-up (display only)."""
        return value.quantize(Decimal(1).scaleb(-self.decimals), rounding=ROUND_HALF_UP)


def _period(customer: Customer, month: str | None, since: datetime | None, until: datetime | None
            ) -> tuple[datetime, datetime]:
    if month is not None:
        if since is not None or until is not None:
            raise InvalidValue("give either month or since and until", field="month", location="query")
        return month_period(customer, month)
    if since is None or until is None:
        raise InvalidValue("give month, or since and until", field="since", location="query")
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidValue("the period needs UTC offsets", field="since", location="query")
    if until <= since:
        raise InvalidValue("until must be after since", field="until", location="query")
    return since.astimezone(UTC), until.astimezone(UTC)


def invoice(
    session: Session,
    *,
    scope: Scope,
    customer_id: int,
    month: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Invoice:
    """The invoice of a calendar month (``YYYY-MM``, the customer's time zone) or of [since, until)."""
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    start, end = _period(customer, month, since, until)
    lo, hi = to_ms(start), to_ms(end)
    in_period = (RatedCall.customer_id == customer.id, RatedCall.t_ms >= lo, RatedCall.t_ms < hi)
    grouped: dict[str, tuple[int, int, Decimal]] = {}
    for destination, prefix, n, seconds, amount in session.execute(
        select(
            RatedCall.destination,
            RatedCall.prefix,
            func.count(),
            func.coalesce(func.sum(RatedCall.billed_seconds), 0),
            func.coalesce(func.sum(RatedCall.debit), 0),
        )
        .where(*in_period, RatedCall.charged.is_(True), RatedCall.status == "rated")
        .group_by(RatedCall.destination, RatedCall.prefix)
    ).all():
        # one line per destination name (a deck without names: per prefix)
        name = destination or (f"prefix {prefix}" if prefix else "unknown")
        calls0, seconds0, amount0 = grouped.get(name, (0, 0, Decimal(0)))
        grouped[name] = (calls0 + int(n), seconds0 + int(seconds or 0), amount0 + Decimal(amount or 0))
    lines = [DestinationLine(name, *values) for name, values in sorted(grouped.items())]
    uncharged = session.scalar(
        select(func.count()).where(*in_period, (RatedCall.charged.is_(False)) | (RatedCall.status != "rated"))
    ) or 0
    months = _months(customer, start, end)
    held = {
        b: q
        for b, q in session.execute(
            select(CustomerBundle.bundle_id, CustomerBundle.quantity).where(CustomerBundle.customer_id == customer.id)
        ).all()
    }
    bundles = [
        BundleLine(
            bundle_id=bid,
            name=name,
            month=mon,
            allowance_seconds=minutes * held[bid] * 60 if bid in held else None,
            used_seconds=int(used),
        )
        for bid, mon, used, name, minutes in session.execute(
            select(bundle_usage.c.bundle_id, bundle_usage.c.month, bundle_usage.c.used_seconds, CallBundle.name,
                   CallBundle.minutes)
            .join(CallBundle, CallBundle.id == bundle_usage.c.bundle_id)
            .where(bundle_usage.c.customer_id == customer.id, bundle_usage.c.month.in_(months))
            .order_by(bundle_usage.c.month, bundle_usage.c.bundle_id)
        ).all()
    ]
    entries = list(
        session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.customer_id == customer.id, LedgerEntry.at >= start, LedgerEntry.at < end)
            .order_by(LedgerEntry.at, LedgerEntry.id)
        )
    )
    return Invoice(
        customer=customer,
        since=start,
        until=end,
        month=month,
        lines=lines,
        bundles=bundles,
        payments=[e for e in entries if e.kind == "payment"],
        other=[e for e in entries if e.kind != "payment" and e.billing_run_id is None],
        uncharged_calls=int(uncharged),
    )


def list_rated_calls(
    session: Session,
    *,
    scope: Scope,
    customer_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    run_id: int | None = None,
    sort: str | None = None,
) -> Listing:
    """A customer's rated calls (what each call cost it; never the reseller or carrier levels)."""
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    stmt = select(RatedCall).where(RatedCall.customer_id == customer.id)
    if since is not None:
        stmt = stmt.where(RatedCall.t_ms >= to_ms(since))
    if until is not None:
        stmt = stmt.where(RatedCall.t_ms < to_ms(until))
    if status:
        stmt = stmt.where(RatedCall.status == status)
    if run_id is not None:
        stmt = stmt.where(RatedCall.run_id == run_id)
    columns = {key: getattr(RatedCall, key) for key in RATED_SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=RatedCall.call_id, default="t_ms"))
