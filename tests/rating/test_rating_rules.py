"""Every rule of the spec, hand-computed, checked on both raters (scalar and vectorised)."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from rating.book import Account, BookError, Bundle, Carrier, RatingBook
from rating.deck import Deck, deck_from_rows, derive_deck
from rating.engine import CompiledBook, RatingInputError, bundle_consumption, levels_frame, rate_frame
from rating.scalar import Refusal, ScalarRater, digits_of
from tests.rating.rating_helpers import DAY, T0, cdr, cdr_frame, compare

JAN15 = "2025-01-15T00:00:00Z"
T_JAN15 = T0 + 14 * DAY


def one_customer(deck: Deck, *, decimals: int = 4, tz: str = "UTC", bundles: tuple[Bundle, ...] = ()) -> RatingBook:
    return RatingBook(tariffs={"t": deck}, accounts=[Account(1, None, "customer", "t", decimals, tz)], bundles=bundles)


def debit(book: RatingBook, number: str, duration_ms: int, *, answer: int | None = T0, start: int = T0) -> int | None:
    """Rate one call with both raters; they must agree; return the customer's debit."""
    rated = compare(book, [cdr("x", 1, number, start=start, answer=answer, duration_ms=duration_ms)])
    return rated.get_column("debit")[0]


# -- the cost formula ------------------------------------------------------------------------


def test_increments_and_rounding_once() -> None:
    deck = deck_from_rows([{"prefix": "44", "rate": "0.0100", "initial_increment": "30", "increment": "6"}])
    book = one_customer(deck, decimals=4)
    # d = ceil(61.001) = 62 -> 30 + ceil(32/6)*6 = 66 s -> 0.011 exactly
    assert debit(book, "44123", 61_001) == 110
    # d = 1 -> first block of 30 s -> 0.005
    assert debit(book, "44123", 1) == 50
    # d = 30 -> 30 s; d = 31 -> 36 s -> 0.006
    assert debit(book, "44123", 30_000) == 50
    assert debit(book, "44123", 30_001) == 60
    # 7 s at 0.01/min under 1-second billing is 0.0011666.. -> 0.0012 (rounded once, half up)
    per_second = one_customer(deck_from_rows([{"prefix": "44", "rate": "0.01", "increment": "1"}]))
    assert debit(per_second, "44", 7_000) == 12


def test_connect_fee_grace_included() -> None:
    deck = deck_from_rows(
        [
            {
                "prefix": "1",
                "rate": "0.06",
                "connect_fee": "0.015",
                "increment": "60",
                "grace_seconds": "5",
                "included_seconds": "20",
            }
        ]
    )
    book = one_customer(deck, decimals=2)
    assert debit(book, "1555", 5_000) == 0  # within grace: free, no connect fee
    assert debit(book, "1555", 5_001) == 2  # d=6 <= included: billed 0, connect fee 0.015 -> 0.02
    assert debit(book, "1555", 20_000) == 2  # b = 0
    assert debit(book, "1555", 21_000) == 8  # b = 1 -> 60 s -> 0.015 + 0.06 = 0.075 -> 0.08


def test_initial_increment_zero() -> None:
    deck = deck_from_rows([{"prefix": "1", "rate": "0.6", "initial_increment": "0", "increment": "10"}])
    book = one_customer(deck)
    assert debit(book, "1", 1_000) == 1000  # ceil(1/10)*10 = 10 s -> 0.1
    assert debit(book, "1", 11_000) == 2000


def test_unanswered_and_zero_duration() -> None:
    deck = deck_from_rows([{"prefix": "1", "rate": "1", "connect_fee": "1"}])
    book = one_customer(deck)
    rated = compare(
        book,
        [
            cdr("a", 1, "1", answer=None, duration_ms=0),
            cdr("b", 1, "1", duration_ms=0),
            cdr("c", 1, "1", duration_ms=1),
        ],
    )
    assert rated.get_column("status").cast(pl.String).to_list() == ["unanswered", "unanswered", "rated"]
    assert rated.get_column("debit").to_list() == [0, 0, 20_000]  # 1 + 1 * 60 s / 60 = 2.0000
    assert rated.get_column("billed_seconds").to_list() == [0, 0, 60]


def test_longest_prefix_and_number_cleaning() -> None:
    deck = deck_from_rows(
        [
            {"prefix": "4", "rate": "1"},
            {"prefix": "44", "rate": "2"},
            {"prefix": "4477", "rate": "3"},
            {"prefix": "0044", "rate": "9"},
        ]
    )
    book = one_customer(deck, decimals=0)
    rated = compare(
        book,
        [
            cdr("a", 1, "+44 7712 345"),
            cdr("b", 1, "44-70"),
            cdr("c", 1, "447"),
            cdr("d", 1, "0044 77"),
            cdr("e", 1, "4"),
            cdr("f", 1, "+"),
            cdr("g", 1, ""),
            cdr("h", 1, "٤٤"),
        ],
    )
    assert rated.get_column("prefix").cast(pl.String).to_list() == ["4477", "44", "44", "0044", "4", None, None, None]
    assert digits_of("+1 (555) 010-9999") == "15550109999"


def test_number_shorter_than_prefix_does_not_match_it() -> None:
    deck = deck_from_rows(
        [{"prefix": "44", "rate": "1"}, {"prefix": "440", "rate": "2"}, {"prefix": "4400", "rate": "3"}]
    )
    rated = compare(one_customer(deck), [cdr("a", 1, "44"), cdr("b", 1, "440"), cdr("c", 1, "4400")])
    assert rated.get_column("prefix").cast(pl.String).to_list() == ["44", "440", "4400"]


def test_long_prefixes_19_and_20_digits() -> None:
    deck = deck_from_rows(
        [
            {"prefix": "1234567890123456789", "rate": "1"},
            {"prefix": "12345678901234567890", "rate": "2"},
            {"prefix": "123456789012345678", "rate": "3"},
            {"prefix": "1", "rate": "4"},
        ]
    )
    rated = compare(
        one_customer(deck),
        [
            cdr("a", 1, "123456789012345678901"),
            cdr("b", 1, "12345678901234567891"),
            cdr("c", 1, "1234567890123456781"),
            cdr("d", 1, "123456789012345678"),
            cdr("e", 1, "19"),
        ],
    )
    assert rated.get_column("prefix").cast(pl.String).to_list() == [
        "12345678901234567890",
        "1234567890123456789",
        "123456789012345678",
        "123456789012345678",
        "1",
    ]


def test_effective_windows_and_fallback_to_shorter_prefix() -> None:
    deck = deck_from_rows(
        [
            {"prefix": "44", "rate": "1"},
            {"prefix": "447", "rate": "2", "effective_to": JAN15},
            {"prefix": "447", "rate": "3", "effective_from": "2025-02-01T00:00:00Z"},  # gap Jan 15 - Feb 1
        ]
    )
    book = one_customer(deck, decimals=0)
    t_gap = T0 + 20 * DAY
    rated = compare(
        book,
        [
            cdr("a", 1, "4471", start=T_JAN15 - 1, answer=T_JAN15 - 1),  # last ms of window 1
            cdr("b", 1, "4471", start=T_JAN15 - 1, answer=T_JAN15),  # answer time decides: in the gap
            cdr("c", 1, "4471", start=t_gap, answer=t_gap),
            cdr("d", 1, "4471", start=T0 + 31 * DAY, answer=T0 + 31 * DAY),  # window 2 starts inclusive
            cdr("e", 1, "4471", start=T_JAN15 - 1, answer=None, duration_ms=0),  # unanswered: start time
        ],
    )
    assert rated.get_column("prefix").cast(pl.String).to_list() == ["447", "44", "44", "447", "447"]
    assert rated.get_column("debit").to_list() == [2, 1, 1, 3, 0]


def test_no_rate() -> None:
    book = one_customer(deck_from_rows([{"prefix": "44", "rate": "1"}]))
    rated = compare(book, [cdr("a", 1, "33123")])
    row = rated.row(0, named=True)
    assert row["status"] == "no_rate"
    assert row["debit"] is None and row["billed_seconds"] is None and row["prefix"] is None


# -- who pays whom -------------------------------------------------------------------------


def chain_book() -> RatingBook:
    wholesale = deck_from_rows([{"prefix": "44", "rate": "0.01", "increment": "1"}, {"prefix": "1", "rate": "0.02"}])
    carrier = deck_from_rows([{"prefix": "44", "rate": "0.004", "increment": "1"}])
    decks = {
        "wholesale": wholesale,
        "top": derive_deck(wholesale, "10"),
        "sub": derive_deck(wholesale, "20", deck_from_rows([{"prefix": "1", "rate": "0.5"}])),
        "retail": derive_deck(wholesale, "50"),
        "carrier": carrier,
        "uk_only": deck_from_rows([{"prefix": "44", "rate": "1"}]),
    }
    return RatingBook(
        tariffs=decks,
        accounts=[
            Account(10, None, "reseller", "top", 4),
            Account(11, 10, "reseller", "sub", 6),
            Account(12, 11, "customer", "retail", 2),
            Account(13, None, "customer", "uk_only", 4),
        ],
        carriers=[Carrier(7, "carrier")],
    )


def test_reseller_chain_and_carrier() -> None:
    book = chain_book()
    rated = compare(
        book,
        [
            cdr("a", 12, "4420", duration_ms=90_000, carrier_id=7),
            cdr("b", 12, "1555", duration_ms=30_000, carrier_id=7),
            cdr("c", 13, "1555"),
        ],
    )
    a = rated.row(0, named=True)
    # 90 s: retail 0.015/min -> 0.0225 -> 0.02 (2 dp); sub 0.012 -> 0.018 (6 dp); top 0.011 -> 0.0165
    assert (a["debit"], a["amount_l1"], a["amount_l2"], a["carrier_cost"]) == (2, 18_000, 165, 60)
    assert (a["account_l0"], a["account_l1"], a["account_l2"]) == (12, 11, 10)
    b = rated.row(1, named=True)
    # the carrier has no row for 1: the call is still rated, carrier cost empty; sub's override 0.5
    assert b["status"] == "rated" and b["carrier_cost"] is None
    assert (b["debit"], b["amount_l1"], b["amount_l2"]) == (3, 500_000, 220)
    levels = levels_frame(rated)
    assert levels.filter(pl.col("call_id") == "a").select("level", "account_id", "amount").rows() == [
        (0, 12, 2),
        (1, 11, 18_000),
        (2, 10, 165),
    ]
    assert levels.filter(pl.col("call_id") == "c").rows() == [("c", 0, 13, None, 4)]


def test_reseller_without_row_gets_empty_amount() -> None:
    decks = {"a": deck_from_rows([{"prefix": "4", "rate": "1"}]), "b": deck_from_rows([{"prefix": "5", "rate": "1"}])}
    book = RatingBook(tariffs=decks, accounts=[Account(1, None, "reseller", "b"), Account(2, 1, "customer", "a")])
    rated = compare(book, [cdr("x", 2, "41")])
    assert rated.row(0, named=True)["amount_l1"] is None and rated.row(0, named=True)["status"] == "rated"


# -- bundles -------------------------------------------------------------------------------


def test_bundles_order_partial_and_month_in_customer_time_zone() -> None:
    deck = deck_from_rows([{"prefix": "44", "rate": "0.6", "connect_fee": "0.1", "increment": "1"}])
    book = one_customer(deck, decimals=2, tz="America/New_York", bundles=(Bundle(5, 1, ("44",), 1, 2),))
    feb1_utc = T0 + 31 * DAY  # 2025-02-01T00:00Z is still January 31 in New York
    rows = [
        cdr("b", 1, "441", start=T0 + DAY, answer=T0 + DAY, duration_ms=100_000),  # 2nd in order: 20 of 100 s covered
        cdr("a", 1, "441", start=T0 + DAY - 9, answer=T0 + DAY - 1, duration_ms=100_000),  # 1st: fully covered
        cdr("c", 1, "441", start=feb1_utc, answer=feb1_utc, duration_ms=10_000),  # January (NY): nothing left
        cdr("d", 1, "441", start=feb1_utc + 5 * 3_600_000, answer=feb1_utc + 5 * 3_600_000, duration_ms=10_000),
    ]
    rated = compare(book, rows)
    assert rated.get_column("bundle_seconds").to_list() == [20, 100, 0, 10]
    # partial: 0.1 + 0.6 * 80 / 60 = 0.9 ; full: 0 ; none left: 0.1 + 0.1 = 0.2
    assert rated.get_column("debit").to_list() == [90, 0, 20, 0]
    assert rated.get_column("bundle_month").to_list() == [202501, 202501, 202501, 202502]
    usage = bundle_consumption(rated)
    assert usage.rows() == [(5, 202501, 120), (5, 202502, 10)]
    # carried over into the next batch: January is used up
    again = rate_frame(cdr_frame([rows[2]]), CompiledBook(book), bundle_usage=usage)
    assert again.get_column("bundle_seconds").to_list() == [0]


def test_bundle_longest_zone_then_lowest_id_no_spill() -> None:
    deck = deck_from_rows([{"prefix": "4", "rate": "0.6", "increment": "1"}])
    bundles = (Bundle(9, 1, ("44",), 1, 1), Bundle(3, 1, ("44", "4"), 1, 1), Bundle(2, 1, ("447",), 0, 1))
    book = one_customer(deck, bundles=bundles)
    rated = compare(
        book,
        [
            cdr("a", 1, "441", duration_ms=30_000),
            cdr("b", 1, "4471", duration_ms=30_000),
            cdr("c", 1, "45", duration_ms=30_000),
        ],
    )
    # "44" is shared by bundles 9 and 3: lowest id 3; "447" wins for b (longest) even though empty
    assert rated.get_column("bundle_id").to_list() == [3, 2, 3]
    assert rated.get_column("bundle_seconds").to_list() == [30, 0, 30]


# -- admission -----------------------------------------------------------------------------


def test_max_duration() -> None:
    deck = deck_from_rows(
        [
            {"prefix": "44", "rate": "0.06", "connect_fee": "0.05", "initial_increment": "30", "increment": "6"},
            {"prefix": "1", "rate": "0", "connect_fee": "0.01"},
        ]
    )
    rater = ScalarRater(one_customer(deck))
    # 0.05 + 0.001/s: 0.20 available -> 150 billed seconds allowed -> 150 s
    assert rater.max_duration("t", "4420", T0, Decimal("0.20"), 2) == 150
    assert rater.max_duration("t", "4420", T0, 20, 2) == 150
    # 0.0799 at 4 dp: the first block (30 s) costs 0.08 -> refused
    refusal = rater.max_duration("t", "4420", T0, Decimal("0.0799"), 4)
    assert isinstance(refusal, Refusal) and refusal.code == "insufficient_funds"
    assert isinstance(rater.max_duration("t", "33", T0, 100, 2), Refusal)
    # free destination: capped at the longest call accepted
    assert rater.max_duration("t", "1", T0, 1, 2) == 31 * 86_400


@pytest.mark.parametrize("decimals", [0, 2, 4, 6])
def test_max_duration_is_the_largest_affordable(decimals: int) -> None:
    deck = deck_from_rows(
        [
            {
                "prefix": "4",
                "rate": "0.123457",
                "connect_fee": "0.0133",
                "initial_increment": "7",
                "increment": "13",
                "grace_seconds": "4",
                "included_seconds": "9",
            }
        ]
    )
    rater = ScalarRater(one_customer(deck))
    for available in (1, 2, 3, 5, 17, 100, 1234):
        got = rater.max_duration("t", "4", T0, available, decimals)
        if isinstance(got, Refusal):
            continue
        assert rater.cost("t", "4", T0, got * 1000, decimals).amount <= available  # type: ignore[operator]
        assert rater.cost("t", "4", T0, (got + 1) * 1000, decimals).amount > available  # type: ignore[operator]


# -- refusals --------------------------------------------------------------------------------


def test_invalid_cdrs_refused_whole() -> None:
    book = chain_book()
    bad = [
        cdr("neg", 12, "44", duration_ms=-1),
        cdr("early", 12, "44", start=T0, answer=T0 - 1),
        cdr("who", 99, "44"),
        cdr("res", 11, "44"),
        cdr("car", 12, "44", carrier_id=8),
        cdr("long", 12, "44", duration_ms=32 * 86_400_000),
        cdr("ok", 12, "44"),
    ]
    with pytest.raises(RatingInputError) as err:
        rate_frame(cdr_frame(bad), book)
    problems = dict(err.value.problems)
    assert problems["answer_ms before start_ms"] == ["early"]
    assert problems["unknown customer_id"] == ["who"]
    assert problems["customer_id is a reseller, not a customer"] == ["res"]
    assert problems["unknown carrier_id"] == ["car"]
    assert sorted(problems["duration_ms not in 0..2678400000"]) == ["long", "neg"]


def test_book_validation() -> None:
    deck = deck_from_rows([{"prefix": "4", "rate": "1"}])
    with pytest.raises(BookError, match="cycle"):
        RatingBook(tariffs={"t": deck}, accounts=[Account(1, 2, "reseller", "t"), Account(2, 1, "reseller", "t")])
    with pytest.raises(BookError, match="not a reseller"):
        RatingBook(tariffs={"t": deck}, accounts=[Account(1, None, "customer", "t"), Account(2, 1, "customer", "t")])
    with pytest.raises(BookError, match="unknown tariff"):
        RatingBook(tariffs={"t": deck}, accounts=[Account(1, None, "customer", "x")])
    with pytest.raises(BookError, match="time zone"):
        RatingBook(tariffs={"t": deck}, accounts=[Account(1, None, "customer", "t", 4, "Mars/Olympus")])


# -- engine mechanics -------------------------------------------------------------------------


def test_threads_chunks_and_big_ids_agree() -> None:
    deck = deck_from_rows([{"prefix": str(p), "rate": f"0.0{p % 10}", "increment": "1"} for p in range(10, 99)])
    book = RatingBook(
        tariffs={"t": deck},
        accounts=[Account(10**12, None, "customer", "t", 4), Account(5, None, "customer", "t", 2)],
    )
    rows = [cdr(f"c{i}", 10**12 if i % 3 else 5, str(1000 + i * 7), duration_ms=i * 37) for i in range(70_000)]
    frame = cdr_frame(rows)
    compiled = CompiledBook(book)
    one = rate_frame(frame, compiled, threads=1)
    two = rate_frame(frame, compiled, threads=2)
    assert one.equals(two)
    expected = ScalarRater(book).rate_calls(rows[:2000])
    assert one.get_column("debit").head(2000).to_list() == [c.debit for c in expected]


def test_progress_callback() -> None:
    book = one_customer(deck_from_rows([{"prefix": "4", "rate": "1"}]))
    seen: list[tuple[int, int]] = []
    rate_frame(cdr_frame([cdr(str(i), 1, "4") for i in range(40_000)]), book, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (40_000, 40_000)


def test_empty_decks() -> None:
    empty = deck_from_rows([])
    book = RatingBook(tariffs={"e": empty}, accounts=[Account(1, None, "customer", "e")], carriers=[Carrier(3, "e")])
    rated = compare(book, [cdr("a", 1, "4", carrier_id=3)])
    assert rated.get_column("status").cast(pl.String).to_list() == ["no_rate"]


def test_empty_frame_and_full_cdr_schema_frame() -> None:
    from cdr.schema import CdrRecord, polars_schema

    book = one_customer(deck_from_rows([{"prefix": "44", "rate": "0.6", "increment": "1"}]), decimals=2)
    empty = rate_frame(cdr_frame([]), book)
    assert empty.height == 0 and "debit" in empty.columns
    rec = CdrRecord(
        call_id="x1",
        sip_call_id="x1@192.0.2.1",
        customer_id=1,
        caller_device_id=None,
        callee_device_id=None,
        caller_number="100",
        dialled_number="+44 20 7946 0000",
        start_ms=T0,
        answer_ms=T0 + 1000,
        end_ms=T0 + 31_000,
        duration_ms=30_000,
        sip_code=200,
        q850_cause=16,
        disposition="ANSWERED",
        direction="outbound",
        call_type="outbound",
        source_ip="192.0.2.1",
        hangup_by="caller",
    )
    full = pl.DataFrame([rec.as_dict()], schema=polars_schema())
    rated = rate_frame(full, book)
    assert rated.select("call_id", "debit", "billed_seconds").row(0) == ("x1", 30, 30)  # 0.6 * 30/60 = 0.30


def test_tiny_chunks_on_threads_with_odd_and_slow_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    import rating.engine as engine

    monkeypatch.setattr(engine, "CHUNK", 3)
    deck = deck_from_rows(
        [
            {"prefix": "44", "rate": "1", "effective_to": JAN15},
            {"prefix": "44", "rate": "2", "effective_from": JAN15},
            {"prefix": "4", "rate": "3"},
            {"prefix": "1234567890123456789", "rate": "4"},
            {"prefix": "12", "rate": "5"},
        ]
    )
    book = one_customer(deck, decimals=3, bundles=(Bundle(1, 1, ("4",), 1, 1),))
    numbers = ["+44 1", "4", "1234567890123456789012", "12-3", "441", "x", "12345678901234567890", "0044"]
    rows = [
        cdr(
            f"c{i}",
            1,
            numbers[i % len(numbers)],
            start=T0 + i * DAY // 3,
            answer=T0 + i * DAY // 3,
            duration_ms=i * 7_001,
        )
        for i in range(60)
    ]
    compiled = CompiledBook(book)
    expected = ScalarRater(book).rate_calls(rows)
    for threads in (1, 2):
        rated = rate_frame(cdr_frame(rows), compiled, threads=threads)
        assert rated.get_column("debit").to_list() == [c.debit for c in expected]
        assert rated.get_column("prefix").cast(pl.String).to_list() == [c.prefix for c in expected]


def test_same_prefixes_different_increments_on_two_levels() -> None:
    """Two decks with identical prefixes and windows share the engine's match, not the billing."""
    rows = [{"prefix": "44", "rate": "0.6", "increment": "60"}, {"prefix": "1", "rate": "0.6", "increment": "60"}]
    per_minute = deck_from_rows(rows)
    per_second = deck_from_rows([r | {"increment": "1"} for r in rows])
    book = RatingBook(
        tariffs={"min": per_minute, "sec": per_second, "min2": derive_deck(per_minute, "10")},
        accounts=[
            Account(1, None, "reseller", "min2"),
            Account(2, 1, "reseller", "sec"),
            Account(3, 2, "customer", "min"),
        ],
    )
    compiled = CompiledBook(book)
    assert compiled.lvl_same_rows == [False, True, True]
    assert compiled.lvl_same_billed == [False, False, False]
    rated = compare(book, [cdr("a", 3, "4412", duration_ms=61_000)])
    # customer 120 s -> 1.2 ; sub-reseller per second 61 s -> 0.61 ; top 120 s at 0.66 -> 1.32
    assert rated.select("amount_l0", "amount_l1", "amount_l2").row(0) == (12_000, 6_100, 13_200)
