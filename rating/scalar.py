"""The scalar rater: one call at a time, Python integers only.

Used at call admission (prepaid maximum duration, fraud caps, the cost of a live call) and as
the reference the vectorised engine is tested against, amount by amount.  It is written
straight from the spec, independently of :mod:`rating.engine`: a dict of prefixes tried from
the longest to the shortest, windows scanned in order, bundles consumed in a Python loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from zoneinfo import ZoneInfo

from rating.book import MAX_DURATION_MS, RatingBook
from rating.deck import Deck
from rating.money import (
    CARRIER_DECIMALS,
    DEFAULT_DECIMALS,
    MAX_CALL_SECONDS,
    MAX_PREFIX_DIGITS,
    minor_to_decimal,
    rounding_denominator,
)

RATED = "rated"
UNANSWERED = "unanswered"
NO_RATE = "no_rate"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def digits_of(number: str) -> str:
    """The dialled number reduced to its ASCII digits (``+``, spaces, dashes... dropped)."""
    return "".join(ch for ch in number if "0" <= ch <= "9")


@dataclass(frozen=True, slots=True)
class TariffRow:
    prefix: str
    destination: str
    rate: int  # micro-units per minute
    connect_fee: int  # micro-units
    initial_increment: int
    increment: int
    grace_seconds: int
    included_seconds: int
    effective_from: int
    effective_to: int
    row: int
    source: str


def billed_seconds(d: int, r: TariffRow) -> int:
    """Billed seconds for ``d`` answered seconds (``d > grace``), per the spec's formula."""
    b = max(0, d - r.included_seconds)
    if b == 0:
        return 0
    if b <= r.initial_increment:
        return r.initial_increment
    extra = b - r.initial_increment
    return r.initial_increment + (-(-extra // r.increment)) * r.increment


def amount_minor(r: TariffRow, billed: int, decimals: int) -> int:
    """round_half_up(connect_fee + rate * billed / 60, decimals) in minor units."""
    den = rounding_denominator(decimals)
    q, rem = divmod(r.connect_fee * 60 + r.rate * billed, den)
    return q + 1 if 2 * rem >= den else q


@dataclass(frozen=True, slots=True)
class Cost:
    """The cost of one call under one tariff."""

    status: str  # rated / unanswered / no_rate
    row: TariffRow | None
    billed_seconds: int
    amount: int | None  # minor units (amount * 10**decimals); None when no_rate
    decimals: int

    @property
    def decimal(self) -> Decimal | None:
        return None if self.amount is None else minor_to_decimal(self.amount, self.decimals)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Call admission says no; ``reason`` is meant for logs and the CDR."""

    code: str  # "no_rate" or "insufficient_funds"
    reason: str


@dataclass(frozen=True, slots=True)
class Level:
    account_id: int
    amount: int | None
    decimals: int


@dataclass(frozen=True, slots=True)
class RatedCall:
    call_id: str
    status: str
    prefix: str | None
    destination_name: str | None
    billed_seconds: int | None  # None when no_rate
    bundle_seconds: int | None  # None when no_rate
    bundle_id: int | None
    bundle_month: int | None  # yyyymm in the customer's time zone
    debit: int | None
    debit_decimals: int
    carrier_cost: int | None
    levels: tuple[Level, ...]


class ScalarRater:
    """Rates single calls against a :class:`RatingBook` (or bare decks via :meth:`from_decks`)."""

    def __init__(self, book: RatingBook):
        self.book = book
        self._index: dict[str, dict[str, list[TariffRow]]] = {}
        self._maxlen: dict[str, int] = {}
        for name, deck in book.tariffs.items():
            self._add_deck(name, deck)
        self._zones: dict[str, ZoneInfo] = {}
        self._bundles: dict[int, list[tuple[int, int, str, int]]] = {}
        for b in book.bundles:
            for p in b.zone_prefixes:
                # sort key: longest zone prefix first, then lowest bundle id
                self._bundles.setdefault(b.account_id, []).append((-len(p), b.id, p, b.seconds))
        for lst in self._bundles.values():
            lst.sort()

    @classmethod
    def from_decks(cls, decks: Mapping[str, Deck]) -> ScalarRater:
        return cls(RatingBook(tariffs=dict(decks), accounts=()))

    def _add_deck(self, name: str, deck: Deck) -> None:
        idx: dict[str, list[TariffRow]] = {}
        maxlen = 0
        for rec in deck.frame.sort("effective_from").iter_rows(named=True):
            row = TariffRow(
                rec["prefix"],
                rec["destination"],
                rec["rate"],
                rec["connect_fee"],
                rec["initial_increment"],
                rec["increment"],
                rec["grace_seconds"],
                rec["included_seconds"],
                rec["effective_from"],
                rec["effective_to"],
                rec["row"],
                rec["source"],
            )
            idx.setdefault(row.prefix, []).append(row)
            maxlen = max(maxlen, len(row.prefix))
        self._index[name] = idx
        self._maxlen[name] = maxlen

    # -- one tariff ---------------------------------------------------------------------------

    def match(self, tariff: str, number: str, t_ms: int) -> TariffRow | None:
        """Longest prefix of ``number`` among the rows whose window contains ``t_ms``."""
        idx = self._index[tariff]
        digits = digits_of(number)
        for n in range(min(len(digits), self._maxlen[tariff], MAX_PREFIX_DIGITS), 0, -1):
            rows = idx.get(digits[:n])
            if rows is None:
                continue
            for r in rows:
                if r.effective_from <= t_ms < r.effective_to:
                    return r
        return None

    def cost(
        self,
        tariff: str,
        number: str,
        t_ms: int,
        duration_ms: int,
        decimals: int = DEFAULT_DECIMALS,
        *,
        answered: bool = True,
    ) -> Cost:
        """What the call costs under ``tariff`` (``t_ms``: answer time, else start time)."""
        if duration_ms < 0 or duration_ms > MAX_DURATION_MS:
            raise ValueError(f"duration_ms {duration_ms} out of range 0..{MAX_DURATION_MS}")
        rounding_denominator(decimals)  # validates decimals
        row = self.match(tariff, number, t_ms)
        if row is None:
            return Cost(NO_RATE, None, 0, None, decimals)
        d = -(-duration_ms // 1000)
        if not answered or d == 0:
            return Cost(UNANSWERED, row, 0, 0, decimals)
        if d <= row.grace_seconds:
            return Cost(RATED, row, 0, 0, decimals)
        billed = billed_seconds(d, row)
        return Cost(RATED, row, billed, amount_minor(row, billed, decimals), decimals)

    def max_duration(
        self,
        tariff: str,
        number: str,
        t_ms: int,
        available: int | Decimal,
        decimals: int = DEFAULT_DECIMALS,
    ) -> int | Refusal:
        """Largest whole number of seconds ``d`` whose amount is <= ``available``.

        ``available`` is ``balance + credit_limit - reserved`` (or ``cap - spent_today -
        reserved``): an ``int`` in minor units or a ``Decimal`` in currency units.  When even
        the first billable block (connect fee plus initial increment) does not fit, the call is
        refused.  A free destination (rate 0) is capped at the longest call the raters accept,
        ``MAX_CALL_SECONDS``.
        """
        den = rounding_denominator(decimals)
        if isinstance(available, Decimal):
            avail = int(available.scaleb(decimals).to_integral_value(rounding=ROUND_FLOOR))
        else:
            avail = available
        row = self.match(tariff, number, t_ms)
        if row is None:
            return Refusal(NO_RATE, f"no rate for {number!r} in tariff {tariff!r}")
        # An initial increment of 0 means the first block is one ordinary increment.
        first_block = row.initial_increment or row.increment
        first_cost = amount_minor(row, first_block, decimals)
        if avail < first_cost:
            return Refusal(
                "insufficient_funds",
                f"available {minor_to_decimal(avail, decimals)} does not cover the first block "
                f"({first_block} s costs {minor_to_decimal(first_cost, decimals)})",
            )
        if row.rate == 0:
            return MAX_CALL_SECONDS
        # Largest numerator whose half-up rounding is still <= avail.
        n_max = (avail + 1) * den - den // 2 - 1
        billed_max = (n_max - row.connect_fee * 60) // row.rate
        if row.initial_increment > 0:
            allowed = row.initial_increment + (billed_max - row.initial_increment) // row.increment * row.increment
        else:
            allowed = billed_max // row.increment * row.increment
        # d <= grace is free; above it the amount grows with d and fits up to included + allowed.
        return min(max(row.grace_seconds, row.included_seconds + allowed), MAX_CALL_SECONDS)

    # -- whole calls through the account tree ---------------------------------------------------

    def _month(self, account_id: int, t_ms: int) -> int:
        tz_name = self.book.account_by_id[account_id].timezone
        tz = self._zones.get(tz_name)
        if tz is None:
            tz = self._zones[tz_name] = ZoneInfo(tz_name)
        local = (_EPOCH + timedelta(milliseconds=t_ms)).astimezone(tz)
        return local.year * 100 + local.month

    def _bundle_for(self, account_id: int, digits: str) -> tuple[int, int] | None:
        for _neglen, bid, p, seconds in self._bundles.get(account_id, ()):
            if digits.startswith(p):
                return bid, seconds
        return None

    def rate_calls(
        self,
        cdrs: Iterable[Mapping[str, object]],
        *,
        bundle_usage: Mapping[tuple[int, int], int] | None = None,
    ) -> list[RatedCall]:
        """Rate CDRs (mappings with the :mod:`cdr.schema` names ``call_id, customer_id,
        dialled_number, start_ms, answer_ms, duration_ms, carrier_id``), results in input order.

        Bundles are consumed in answer-time order (then call id); ``bundle_usage`` holds the
        seconds already used per ``(bundle_id, yyyymm)`` and is not modified.
        """
        calls = list(cdrs)
        used: dict[tuple[int, int], int] = dict(bundle_usage or {})
        order = sorted(
            range(len(calls)),
            key=lambda i: (
                calls[i]["answer_ms"] is None,
                calls[i]["answer_ms"] or 0,
                str(calls[i]["call_id"]),
            ),
        )
        out: list[RatedCall | None] = [None] * len(calls)
        for i in order:
            out[i] = self._rate_one(calls[i], used)
        return [r for r in out if r is not None]

    def _rate_one(self, cdr: Mapping[str, object], used: dict[tuple[int, int], int]) -> RatedCall:
        book = self.book
        call_id = str(cdr["call_id"])
        account_id = _as_int(cdr["customer_id"])
        number = str(cdr["dialled_number"])
        answer_ms = cdr.get("answer_ms")
        start_ms = _as_int(cdr["start_ms"])
        duration_ms = _as_int(cdr["duration_ms"])
        carrier_id = cdr.get("carrier_id")
        answered = answer_ms is not None
        t = _as_int(answer_ms) if answered else start_ms
        chain = book.chains[account_id]
        customer = book.account_by_id[account_id]
        dec0 = customer.billing_decimals
        first = self.cost(customer.tariff, number, t, duration_ms, dec0, answered=answered)
        if first.status == NO_RATE:
            levels = tuple(Level(a, None, book.account_by_id[a].billing_decimals) for a in chain)
            return RatedCall(call_id, NO_RATE, None, None, None, None, None, None, None, dec0, None, levels)
        row = first.row
        assert row is not None and first.amount is not None
        debit = first.amount
        bundle_seconds = 0
        bundle_id: int | None = None
        bundle_month: int | None = None
        if first.status == RATED and first.billed_seconds > 0:
            hit = self._bundle_for(account_id, digits_of(number))
            if hit is not None:
                bundle_id, allowance = hit
                bundle_month = self._month(account_id, t)
                key = (bundle_id, bundle_month)
                remaining = max(0, allowance - used.get(key, 0))
                bundle_seconds = min(first.billed_seconds, remaining)
                used[key] = used.get(key, 0) + bundle_seconds
                if bundle_seconds == first.billed_seconds:
                    debit = 0
                elif bundle_seconds > 0:
                    debit = amount_minor(row, first.billed_seconds - bundle_seconds, dec0)
        chain_levels = [Level(account_id, debit, dec0)]
        for acc_id in chain[1:]:
            acc = book.account_by_id[acc_id]
            c = self.cost(acc.tariff, number, t, duration_ms, acc.billing_decimals, answered=answered)
            chain_levels.append(Level(acc_id, c.amount, acc.billing_decimals))
        carrier_cost: int | None = None
        if carrier_id is not None:
            carrier = book.carrier_by_id[_as_int(carrier_id)]
            carrier_cost = self.cost(carrier.tariff, number, t, duration_ms, CARRIER_DECIMALS, answered=answered).amount
        return RatedCall(
            call_id,
            first.status,
            row.prefix,
            row.destination,
            first.billed_seconds,
            bundle_seconds,
            bundle_id,
            bundle_month,
            debit,
            dec0,
            carrier_cost,
            tuple(chain_levels),
        )


def _as_int(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected an int, got {v!r}")
    return v


def levels_of(calls: Sequence[RatedCall]) -> list[tuple[str, int, int, int | None]]:
    """(call_id, level, account_id, amount) rows, the shape of ``rated_levels.csv``."""
    return [(c.call_id, i, lv.account_id, lv.amount) for c in calls for i, lv in enumerate(c.levels)]
