"""Shared helpers for the rating tests: building books and CDR frames, comparing raters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from rating.book import RatingBook
from rating.engine import CDR_INPUT_COLUMNS, CompiledBook, rate_frame
from rating.scalar import RatedCall, ScalarRater

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
DAY = 86_400_000


def cdr(
    call_id: str,
    customer_id: int,
    number: str,
    *,
    start: int = T0,
    answer: int | None = T0,
    duration_ms: int = 60_000,
    carrier_id: int | None = None,
) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "customer_id": customer_id,
        "dialled_number": number,
        "start_ms": start,
        "answer_ms": answer,
        "duration_ms": duration_ms,
        "carrier_id": carrier_id,
    }


def cdr_frame(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=CDR_INPUT_COLUMNS)


def scalar_view(call: RatedCall, depth: int) -> tuple[Any, ...]:
    levels: list[tuple[int | None, int | None, int | None]] = [
        (lv.account_id, lv.amount, lv.decimals) for lv in call.levels
    ]
    levels += [(None, None, None)] * (depth - len(levels))
    return (
        call.call_id,
        call.status,
        call.prefix,
        call.destination_name,
        call.billed_seconds,
        call.bundle_seconds,
        call.bundle_id,
        call.bundle_month,
        call.debit,
        call.debit_decimals,
        call.carrier_cost,
        tuple(levels),
    )


def engine_view(row: Mapping[str, Any], depth: int) -> tuple[Any, ...]:
    levels = [(row[f"account_l{k}"], row[f"amount_l{k}"], row[f"decimals_l{k}"]) for k in range(depth)]
    return (
        row["call_id"],
        row["status"],
        row["prefix"],
        row["destination_name"],
        row["billed_seconds"],
        row["bundle_seconds"],
        row["bundle_id"],
        row["bundle_month"],
        row["debit"],
        row["debit_decimals"],
        row["carrier_cost"],
        tuple(levels),
    )


def compare(book: RatingBook, rows: list[dict[str, Any]], **engine_kw: Any) -> pl.DataFrame:
    """Rate with both raters and assert they agree on every field of every call."""
    compiled = CompiledBook(book, **engine_kw)
    rated = rate_frame(cdr_frame(rows), compiled, threads=1)
    expected = ScalarRater(book).rate_calls(rows)
    depth = compiled.depth
    for got, exp in zip(rated.iter_rows(named=True), expected, strict=True):
        assert engine_view(got, depth) == scalar_view(exp, depth), (got, exp)
    return rated
