"""Seeded synthetic data for the rating benchmark: decks, an account tree, CDRs."""

from __future__ import annotations

import numpy as np
import polars as pl

from rating.book import Account, Bundle, Carrier, RatingBook
from rating.deck import Deck, derive_deck, parse_deck

JAN_2025_MS = 1_735_689_600_000
MONTH_MS = 31 * 86_400_000


def country_codes(rng: np.random.Generator, n: int = 250) -> list[str]:
    """``n`` distinct country-code-like prefixes of 1-3 digits."""
    countries: set[str] = set()
    while len(countries) < n:
        k = int(rng.choice([1, 2, 3], p=[0.02, 0.3, 0.68]))
        countries.add(str(rng.integers(10 ** (k - 1) if k > 1 else 1, 10**k)))
    return sorted(countries)


def make_deck(rng: np.random.Generator, n_prefixes: int, *, name: str, countries: list[str]) -> pl.DataFrame:
    """A textual deck of ``n_prefixes`` distinct prefixes shaped like a real one: the country
    codes, the rest area and mobile ranges of 4-9 digits under them (drawn independently for
    every deck); 5% of the prefixes carry a rate change (two effective windows)."""
    cc = countries
    prefixes: set[str] = set(cc)
    while len(prefixes) < n_prefixes:
        c = cc[int(rng.integers(len(cc)))]
        extra = int(rng.integers(1, 7))
        prefixes.add(c + str(rng.integers(0, 10**extra)).zfill(extra))
    plist = sorted(prefixes)
    n = len(plist)
    rate_micro = rng.integers(1_000, 500_000, n)  # 0.001 .. 0.5 per minute
    kind = rng.choice(3, n, p=[0.7, 0.2, 0.1])
    inc = np.choose(kind, [60, 1, 6])
    init = np.choose(kind, [60, 1, 30])
    fee = np.where(rng.random(n) < 0.1, rng.integers(0, 50_000, n), 0)
    grace = np.where(rng.random(n) < 0.05, 3, 0)
    two = rng.random(n) < 0.05
    change = "2025-01-16T00:00:00Z"

    def dec(v: np.ndarray) -> pl.Series:
        s = pl.Series(v)
        return (s // 1_000_000).cast(pl.String) + "." + (s % 1_000_000).cast(pl.String).str.zfill(6)

    base = pl.DataFrame(
        {
            "prefix": plist,
            "destination": [f"{name} {p[:3]}" for p in plist],
            "rate": dec(rate_micro),
            "connect_fee": dec(fee),
            "initial_increment": pl.Series(init).cast(pl.String),
            "increment": pl.Series(inc).cast(pl.String),
            "grace_seconds": pl.Series(grace).cast(pl.String),
            "included_seconds": pl.Series(np.zeros(n, np.int64)).cast(pl.String),
            "effective_from": pl.Series([""] * n),
            "effective_to": pl.Series(np.where(two, change, "")),
        }
    )
    later = base.filter(pl.Series(two)).with_columns(
        pl.lit(change).alias("effective_from"),
        pl.lit("").alias("effective_to"),
        (dec(rate_micro[two] + 1000)).alias("rate"),
    )
    return pl.concat([base, later]).sort("prefix")


def make_book(
    rng: np.random.Generator, n_prefixes: int = 50_000, *, independent: bool = False
) -> tuple[RatingBook, dict[str, pl.DataFrame], list[tuple[str, str, str]]]:
    """2 top resellers, 10 sub-resellers, 1,000 customers; bundles for 10% of the customers;
    two carriers with their own decks.  By default the customer and reseller tariffs are all
    derived from one wholesale deck (markups), the usual reseller setup; ``independent=True``
    gives the top resellers, the sub-resellers and the customers decks of their own (different
    prefixes), so that no two levels share a prefix match."""
    cc = country_codes(rng)
    names = ["wholesale", "carrier_a", "carrier_b"] + (["top_deck", "sub_deck"] if independent else [])
    raw = {k: make_deck(rng, n_prefixes, name=k[:1].upper(), countries=cc) for k in names}
    decks: dict[str, Deck] = {k: parse_deck(v, source=f"{k}.csv") for k, v in raw.items()}
    if independent:
        derived = [
            ("top", "top_deck", "0"),
            ("sub", "sub_deck", "0"),
            ("retail", "wholesale", "40"),
            ("retail_premium", "wholesale", "55.5"),
        ]
    else:
        derived = [
            ("top", "wholesale", "10"),
            ("sub", "wholesale", "20"),
            ("retail", "wholesale", "40"),
            ("retail_premium", "wholesale", "55.5"),
        ]
    for name, base, markup in derived:
        decks[name] = derive_deck(decks[base], markup, source=name)
    accounts: list[Account] = []
    aid = 1
    tops = []
    for _ in range(2):
        accounts.append(Account(aid, None, "reseller", "top", 4))
        tops.append(aid)
        aid += 1
    subs = []
    for i in range(10):
        accounts.append(Account(aid, tops[i % 2], "reseller", "sub", 4))
        subs.append(aid)
        aid += 1
    customers = []
    zones = ["Europe/London", "Europe/Berlin", "America/New_York", "UTC"]
    for i in range(1000):
        tariff = "retail" if i % 3 else "retail_premium"
        accounts.append(Account(aid, subs[i % 10], "customer", tariff, 4 if i % 5 else 2, zones[i % 4]))
        customers.append(aid)
        aid += 1
    carriers = [Carrier(1, "carrier_a"), Carrier(2, "carrier_b")]
    wholesale_cc = (
        raw["wholesale"]
        .get_column("prefix")
        .filter(raw["wholesale"].get_column("prefix").str.len_bytes() <= 3)
        .to_list()
    )
    bundles = [
        Bundle(
            i + 1,
            customers[i * 10],
            tuple(sorted({wholesale_cc[(i * 7 + j) % len(wholesale_cc)] for j in range(2)})),
            int(rng.integers(100, 2000)),
            int(rng.integers(1, 3)),
        )
        for i in range(100)
    ]
    book = RatingBook(tariffs=decks, accounts=accounts, carriers=carriers, bundles=bundles)
    return book, raw, derived


def make_cdrs(rng: np.random.Generator, book: RatingBook, n: int) -> pl.DataFrame:
    """``n`` CDRs (cdr.schema names): numbers under uniformly drawn deck prefixes (1% to no
    deck at all, 1% written with a leading +), 85% answered, exponential durations (mean 2 min)."""
    deck = book.tariffs["wholesale"].frame.get_column("prefix").unique().sort()
    plist = deck.to_numpy()
    pick = rng.integers(0, len(plist), n)
    prefix = pl.Series(plist).gather(pick)
    plen = prefix.str.len_bytes().to_numpy().astype(np.int64)
    total = rng.integers(10, 14, n)
    extra = np.maximum(total - plen, 1)
    tail = rng.integers(0, 10**12, n) % (10**extra)
    tail_s = pl.Series(tail).cast(pl.String).str.zfill(12)
    # zero-padded tail cut to the wanted length
    tail_s = pl.DataFrame({"t": tail_s, "k": extra}).select(pl.col("t").str.slice(12 - pl.col("k"))).to_series()
    numbers = prefix + tail_s
    nowhere = rng.random(n) < 0.01
    numbers = pl.select(pl.when(pl.Series(nowhere)).then(pl.lit("999") + numbers).otherwise(numbers)).to_series()
    plus = rng.random(n) < 0.01
    numbers = pl.select(pl.when(pl.Series(plus)).then(pl.lit("+") + numbers).otherwise(numbers)).to_series()
    customers = np.array([a.id for a in book.accounts if a.kind == "customer"], dtype=np.int64)
    start = JAN_2025_MS + rng.integers(0, MONTH_MS, n)
    answered = rng.random(n) < 0.85
    answer = start + rng.integers(1_000, 30_000, n)
    duration = np.where(answered, rng.exponential(120_000, n).astype(np.int64), 0)
    return pl.DataFrame(
        {
            "call_id": pl.select(
                pl.lit("c") + pl.int_range(0, n, dtype=pl.Int64).cast(pl.String).str.zfill(10)
            ).to_series(),
            "customer_id": customers[rng.integers(0, len(customers), n)],
            "dialled_number": numbers,
            "start_ms": start,
            "answer_ms": pl.Series(np.where(answered, answer, 0)).set(pl.Series(~answered), None),
            "duration_ms": duration,
            "carrier_id": rng.integers(1, 3, n),
        }
    )
