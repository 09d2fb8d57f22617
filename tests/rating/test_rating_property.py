"""The vectorised engine and the scalar rater agree on every call, amount by amount.

Hypothesis draws small but nasty books: nested prefixes, several effective windows with gaps,
19-20 digit prefixes, derived tariffs with markups and overrides, reseller trees up to three
levels with mixed billing decimals and time zones, carriers, bundles with overlapping zones;
and CDRs with separators, leading zeros, numbers shorter than the prefixes, unanswered calls,
ties in answer time, very long calls.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rating.book import Account, Bundle, Carrier, RatingBook
from rating.deck import Deck, DeckError, deck_from_rows, derive_deck
from rating.instants import format_instant
from rating.money import MAX_CALL_SECONDS
from tests.rating.rating_helpers import DAY, T0, cdr, compare

ZONES = ["UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]
# window edges: around month ends so bundle months and windows interact
EDGES = [T0 + k * DAY for k in (0, 14, 30, 31, 45, 59)]


@st.composite
def prefixes(draw: st.DrawFn) -> list[str]:
    short = draw(st.lists(st.text("0123", min_size=1, max_size=4), min_size=1, max_size=8, unique=True))
    out = list(short)
    if draw(st.booleans()):
        base = draw(st.sampled_from(short))
        out.append((base + "1" * 20)[: draw(st.integers(19, 20))])
    return out


@st.composite
def deck_rows(draw: st.DrawFn, pool: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True)):
        # non-overlapping windows from sorted distinct edges, maybe with gaps, maybe open-ended
        cuts = sorted(draw(st.lists(st.sampled_from(EDGES), max_size=3, unique=True)))
        bounds: list[int | None] = [None, *cuts, None]
        for i in range(len(bounds) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            if draw(st.integers(0, 4)) == 0 and len(bounds) > 2:
                continue  # a gap
            inc = draw(st.sampled_from([1, 6, 30, 60, 7]))
            rows.append(
                {
                    "prefix": p,
                    "destination": f"d{p[:3]}",
                    "rate": _dec(draw(st.sampled_from([0, 1, 5, 999_999, 12_345, 100_000, 1_234_567, 10**12]))),
                    "connect_fee": _dec(draw(st.sampled_from([0, 0, 1, 50_000, 333_333]))),
                    "initial_increment": draw(st.sampled_from([None, 0, 1, 30, 60])),
                    "increment": inc,
                    "grace_seconds": draw(st.sampled_from([0, 0, 3, 10])),
                    "included_seconds": draw(st.sampled_from([0, 0, 5, 61])),
                    "effective_from": None if lo is None else format_instant(lo),
                    "effective_to": None if hi is None else format_instant(hi),
                }
            )
    return rows


def _dec(micro: int) -> str:
    return f"{micro // 10**6}.{micro % 10**6:06d}"


@st.composite
def books(draw: st.DrawFn) -> RatingBook:
    pool = draw(prefixes())
    decks: dict[str, Deck] = {}
    for i in range(draw(st.integers(1, 3))):
        rows = draw(deck_rows(pool))
        decks[f"base{i}"] = deck_from_rows(rows, source=f"base{i}")
        if draw(st.booleans()):
            # same prefixes and windows (so the engine shares the match) but other increments
            inc = draw(st.sampled_from([1, 6, 60]))
            decks[f"clone{i}"] = deck_from_rows(
                [r | {"increment": inc, "initial_increment": None} for r in rows], source=f"clone{i}"
            )
    for i in range(draw(st.integers(0, 3))):
        base = draw(st.sampled_from(sorted(decks)))
        overrides = deck_from_rows(draw(deck_rows(pool))) if draw(st.booleans()) else None
        markup = draw(st.sampled_from(["0", "10", "25", "33.333333", "-50", "12.5", "0.000001"]))
        # a markup may push a price over the maximum: refused, as it should be
        with contextlib.suppress(DeckError):
            decks[f"derived{i}"] = derive_deck(decks[base], markup, overrides, source=f"derived{i}")
    names = sorted(decks)
    # half the time every reseller shares one tariff and every customer another: the shape in
    # which the engine reuses a level's match (and billed seconds) for the level above
    uniform = draw(st.booleans())
    reseller_tariff, customer_tariff = draw(st.sampled_from(names)), draw(st.sampled_from(names))
    accounts: list[Account] = []
    resellers: list[int] = []
    next_id = 1
    for _ in range(draw(st.integers(0, 3))):
        parent = draw(st.sampled_from([None, *resellers]))
        tariff = reseller_tariff if uniform else draw(st.sampled_from(names))
        accounts.append(Account(next_id, parent, "reseller", tariff, draw(st.integers(0, 6)), "UTC"))
        resellers.append(next_id)
        next_id += 1
    customers: list[int] = []
    for _ in range(draw(st.integers(1, 4))):
        accounts.append(
            Account(
                next_id,
                draw(st.sampled_from([None, *resellers])),
                "customer",
                customer_tariff if uniform else draw(st.sampled_from(names)),
                draw(st.integers(0, 6)),
                draw(st.sampled_from(ZONES)),
            )
        )
        customers.append(next_id)
        next_id += 1
    carriers = [Carrier(100 + i, draw(st.sampled_from(names))) for i in range(draw(st.integers(0, 2)))]
    bundles = []
    for i in range(draw(st.integers(0, 3))):
        zones = draw(st.lists(st.sampled_from([*pool, "0", "1", "2"]), min_size=1, max_size=2, unique=True))
        bundles.append(
            Bundle(
                10 + draw(st.integers(0, 5)) * 10 + i,
                draw(st.sampled_from(customers)),
                tuple(zones),
                draw(st.integers(0, 3)),
                draw(st.integers(1, 2)),
            )
        )
    return RatingBook(tariffs=decks, accounts=accounts, carriers=carriers, bundles=bundles)


@st.composite
def calls(draw: st.DrawFn, book: RatingBook) -> list[dict[str, Any]]:
    customers = [a.id for a in book.accounts if a.kind == "customer"]
    pool = sorted({p for d in book.tariffs.values() for p in d.frame.get_column("prefix").to_list()}) or ["4"]
    rows = []
    for i in range(draw(st.integers(1, 40))):
        base = draw(st.sampled_from(pool))
        how = draw(st.integers(0, 5))
        if how == 0:
            digits = base[: draw(st.integers(0, len(base)))]  # shorter than the prefix
        else:
            digits = base + draw(st.text("0123456789", max_size=6))
        if how == 1:
            number = "+" + digits
        elif how == 2:
            number = "-".join(digits[j : j + 3] for j in range(0, len(digits), 3)) or "x"
        elif how == 3:
            number = "00" + digits
        else:
            number = digits
        start = T0 + draw(st.integers(-2, 62)) * DAY // 2 + draw(st.sampled_from([0, 1, 999, 3_600_000]))
        answered = draw(st.integers(0, 5)) > 0
        duration = draw(
            st.one_of(
                st.integers(0, 200_000),
                st.sampled_from([0, 1, 999, 1000, 1001, 59_999, 60_000, 60_001, MAX_CALL_SECONDS * 1000]),
            )
        )
        carrier = draw(st.sampled_from([None, *[c.id for c in book.carriers]]))
        rows.append(
            cdr(
                draw(st.sampled_from(["a", "b", "c"])) + str(i),
                draw(st.sampled_from(customers)),
                number,
                start=start,
                answer=start + draw(st.sampled_from([0, 0, 5_000])) if answered else None,
                duration_ms=duration if answered else draw(st.sampled_from([0, 0, 5_000])),
                carrier_id=carrier,
            )
        )
    return rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_engine_equals_scalar(data: st.DataObject) -> None:
    book = data.draw(books())
    rows = data.draw(calls(book))
    compare(book, rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_engine_equals_scalar_with_split_groups_and_big_tables(data: st.DataObject) -> None:
    """The same property through the other code paths: one match group per deck, 10**6 tables."""
    book = data.draw(books())
    rows = data.draw(calls(book))
    compare(book, rows, max_group_table=1, first_level_digits=6)
