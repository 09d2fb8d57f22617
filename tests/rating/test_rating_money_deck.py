"""Money arithmetic, instants and rate-deck validation, with hand-computed values."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from rating.deck import DeckError, deck_from_rows, derive_deck, parse_deck, read_deck_csv
from rating.instants import InstantError, format_instant, parse_instant, parse_instant_series
from rating.money import (
    MAX_BILLED_SECONDS,
    MAX_PRICE_MICRO,
    TIME_MAX,
    TIME_MIN,
    apply_markup,
    format_minor,
    parse_micro,
    round_numerator,
)

# -- money ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("0", 0),
        ("1", 1_000_000),
        ("0.5", 500_000),
        (".5", 500_000),
        ("1.", 1_000_000),
        ("0.000001", 1),
        ("12.345678", 12_345_678),
        ("0.1000000", 100_000),
        (" 2.5 ", 2_500_000),
        ("007.25", 7_250_000),
    ],
)
def test_parse_micro_accepts(text: str, micro: int) -> None:
    assert parse_micro(text) == micro


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-0.01", "negative"),
        ("0.0000001", "more than 6"),
        ("1e-3", "plain decimal"),
        ("", "plain decimal"),
        ("1,5", "plain decimal"),
        ("+1", "plain decimal"),
        ("abc", "plain decimal"),
        (".", "plain decimal"),
    ],
)
def test_parse_micro_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_micro(text)


def test_round_half_up_once() -> None:
    # 0.1125 at 2 decimals -> 0.11 ; 0.115 -> 0.12 ; numerator unit is 1/(60*10**6)
    def num(amount: str) -> int:
        return int(Decimal(amount) * 60 * 10**6)

    assert round_numerator(num("0.1125"), 2) == 11
    assert round_numerator(num("0.115"), 2) == 12
    assert round_numerator(num("0.09375"), 4) == 938
    assert round_numerator(num("0.5"), 0) == 1
    assert round_numerator(num("0.4999999"), 0) == 0
    assert round_numerator(num("1.2345675"), 6) == 1_234_568
    assert round_numerator(0, 6) == 0
    # rate 0.01/min for 1 s = 0.000166666.. -> 0.0002 at 4 places
    assert round_numerator(10_000 * 1, 4) == 2


def test_bounds_fit_int64() -> None:
    assert MAX_PRICE_MICRO * 60 + MAX_PRICE_MICRO * MAX_BILLED_SECONDS < 2**63 - 1


def test_format_minor() -> None:
    assert format_minor(1234, 2) == "12.34"
    assert format_minor(5, 4) == "0.0005"
    assert format_minor(7, 0) == "7"
    assert format_minor(0, 6) == "0.000000"


def test_markup_rounds_half_up_to_6_places() -> None:
    assert apply_markup(1, 50_000_000) == 2  # 0.000001 * 1.5 = 0.0000015 -> 0.000002
    assert apply_markup(3, 50_000_000) == 5  # 0.0000045 -> 0.000005
    assert apply_markup(1_000_000, 25_000_000) == 1_250_000
    assert apply_markup(100_000, 33_333_333) == 133_333  # 0.1333333333 -> 0.133333
    assert apply_markup(1, -50_000_000) == 1  # 0.0000005 -> 0.000001 (half up)


# -- instants ----------------------------------------------------------------------------------


def test_instants() -> None:
    assert parse_instant("2025-01-01T00:00:00Z") == 1_735_689_600_000
    assert parse_instant("2025-01-01T01:00:00+01:00") == 1_735_689_600_000
    assert parse_instant("2025-01-01T00:00:00.123Z") == 1_735_689_600_123
    assert format_instant(1_735_689_600_123) == "2025-01-01T00:00:00.123Z"
    for bad in ("2025-01-01", "2025-01-01T00:00:00", "2025-01-01T00:00:00.0001Z", "yesterday", "2025-W01-1"):
        with pytest.raises(InstantError):
            parse_instant(bad)


def test_instant_series_fast_and_slow_paths_agree() -> None:
    values = [
        "2025-01-01T00:00:00.000Z",
        "2025-01-01T00:00:00Z",
        "2025-01-01 00:00:00+00:00",
        "2025-01-01T02:00:00.5+02:00",
        "2025-01-01T00:00:00.000100Z",
        "2025-01-01T00:00:00",
        None,
        "",
    ]
    out, errors = parse_instant_series(pl.Series(values))
    assert out.to_list()[:4] == [1_735_689_600_000, 1_735_689_600_000, 1_735_689_600_000, 1_735_689_600_500]
    assert out.to_list()[6:] == [None, None]
    assert [i for i, _ in errors] == [4, 5]


# -- decks -----------------------------------------------------------------------------------


def test_deck_defaults() -> None:
    deck = deck_from_rows([{"prefix": "44", "rate": "0.01"}, {"prefix": "1", "rate": "2", "increment": "6"}])
    rows = deck.rows()
    assert rows[0] | {"source": ""} == {
        "row": 2,
        "prefix": "44",
        "destination": "",
        "rate": 10_000,
        "connect_fee": 0,
        "initial_increment": 60,
        "increment": 60,
        "grace_seconds": 0,
        "included_seconds": 0,
        "effective_from": TIME_MIN,
        "effective_to": TIME_MAX,
        "source": "",
    }
    # initial_increment defaults to the row's own increment
    assert rows[1]["initial_increment"] == 6 and rows[1]["increment"] == 6


def test_invalid_deck_refused_whole_naming_rows(tmp_path: Path) -> None:
    path = tmp_path / "deck.csv"
    path.write_text(
        "prefix,destination,rate,increment,effective_from,effective_to\n"
        "44,UK,0.01,60,,\n"  # line 2: fine
        "4a,Bad,0.01,60,,\n"  # line 3: bad digits
        "447,UK M,-0.02,60,,\n"  # line 4: negative rate
        "448,UK X,0.0000001,60,,\n"  # line 5: 7 places
        "449,UK Y,0.01,0,,\n"  # line 6: increment < 1
        "33,FR,0.01,60,2025-01-01T00:00:00Z,2025-03-01T00:00:00Z\n"  # line 7
        "33,FR,0.02,60,2025-02-01T00:00:00Z,\n"  # line 8: overlaps line 7
        "123456789012345678901,Long,0.01,60,,\n"  # line 9: 21 digits
        "34,ES,0.01,60,2025-01-01,\n"  # line 10: no offset
        "35,PT,0.01,60,2025-02-01T00:00:00Z,2025-01-01T00:00:00Z\n"  # line 11: empty window
    )
    with pytest.raises(DeckError) as err:
        read_deck_csv(path)
    assert err.value.rows == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    text = str(err.value)
    assert "deck.csv row 4 (rate): negative rate" in text
    assert "row 8 (effective_from): prefix 33: window overlaps row 7" in text
    assert "row 7 (effective_from): prefix 33: window overlaps row 8" in text


def test_deck_refuses_unknown_and_missing_columns() -> None:
    with pytest.raises(DeckError, match="unknown column"):
        parse_deck(pl.DataFrame({"prefix": ["1"], "rate": ["1"], "conect_fee": ["1"]}))
    with pytest.raises(DeckError, match="missing required column"):
        parse_deck(pl.DataFrame({"prefix": ["1"]}))
    with pytest.raises(DeckError, match="required value is empty"):
        parse_deck(pl.DataFrame({"prefix": ["1"], "rate": [None]}, schema={"prefix": pl.String, "rate": pl.String}))


def test_duplicate_prefix_without_windows_overlaps() -> None:
    with pytest.raises(DeckError) as err:
        deck_from_rows([{"prefix": "44", "rate": "1"}, {"prefix": "44", "rate": "2"}])
    assert err.value.rows == [2, 3]


def test_adjacent_windows_do_not_overlap() -> None:
    deck = deck_from_rows(
        [
            {"prefix": "44", "rate": "1", "effective_to": "2025-01-01T00:00:00Z"},
            {"prefix": "44", "rate": "2", "effective_from": "2025-01-01T00:00:00Z"},
        ]
    )
    assert len(deck) == 2


def test_derived_tariff_markup_and_overrides() -> None:
    base = deck_from_rows(
        [
            {"prefix": "44", "rate": "0.010001", "connect_fee": "0.1", "increment": "6"},
            {"prefix": "1", "rate": "0.02", "effective_to": "2025-01-01T00:00:00Z"},
            {"prefix": "1", "rate": "0.03", "effective_from": "2025-01-01T00:00:00Z"},
        ],
        source="base.csv",
    )
    overrides = deck_from_rows([{"prefix": "1", "rate": "0.5"}])
    derived = derive_deck(base, "25", overrides)
    rows = {(r["prefix"], r["rate"]): r for r in derived.rows()}
    # 0.010001 * 1.25 = 0.01250125 -> 0.012501 ; 0.1 * 1.25 = 0.125
    assert rows[("44", 12_501)]["connect_fee"] == 125_000
    assert rows[("44", 12_501)]["increment"] == 6 and rows[("44", 12_501)]["source"] == "base.csv"
    # the override replaced both windows of prefix 1 and is not marked up
    assert [k for k in rows if k[0] == "1"] == [("1", 500_000)]


def test_markup_over_maximum_refused() -> None:
    base = deck_from_rows([{"prefix": "44", "rate": "1000000"}])
    with pytest.raises(DeckError, match="exceeds"):
        derive_deck(base, "0.1")
    with pytest.raises(ValueError, match="greater than -100"):
        derive_deck(base, "-100")
