"""ISO 8601 instants <-> integer milliseconds since the Unix epoch (UTC).

Decision (the spec says "ISO 8601 instant" and nothing more): an instant must carry its UTC
offset (``Z``, ``+01:00``, ``+0100``).  A naive date-time or a bare date is refused, because
reading it as UTC or as some local time would silently shift windows and calendar months.
Fractions of a second are allowed down to the millisecond; a finer fraction that is not a
whole number of milliseconds is refused rather than truncated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InstantError(ValueError):
    pass


def parse_instant(text: str) -> int:
    """One ISO 8601 instant -> epoch milliseconds.  Raises :class:`InstantError`."""
    s = text.strip()
    if len(s) < 11 or not s[:4].isdigit():
        # fromisoformat also accepts bare dates and week dates; neither is an instant.
        raise InstantError(f"{text!r} is not an ISO 8601 instant (date, time and UTC offset)")
    try:
        dt = datetime.fromisoformat(s)
    except ValueError as exc:
        raise InstantError(f"{text!r} is not an ISO 8601 instant") from exc
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InstantError(f"{text!r} has no UTC offset (write Z or +hh:mm)")
    if dt.microsecond % 1000:
        raise InstantError(f"{text!r} is finer than a millisecond")
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_instant(ms: int) -> str:
    """Epoch milliseconds -> ``YYYY-MM-DDTHH:MM:SS.sssZ`` (the form the batch rater prefers)."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


FAST_FORMAT = "%Y-%m-%dT%H:%M:%S%.3f%#z"


def _fast(col: str) -> pl.Expr:
    return (
        pl.col(col)
        .cast(pl.String)
        .str.to_datetime(format=FAST_FORMAT, time_unit="ms", time_zone="UTC", strict=False)
        .dt.epoch("ms")
        .cast(pl.Int64)
    )


def parse_instant_columns(frame: pl.DataFrame, columns: list[str]) -> tuple[pl.DataFrame, list[tuple[str, int, str]]]:
    """Vectorised :func:`parse_instant` over text columns of a frame (nulls and blanks stay null).

    Returns (frame of Int64 epoch-ms columns, [(column, row index, message)] of refused values).
    The common form ``2025-01-31T12:00:00.000Z`` / ``+01:00`` goes through polars' parser, all
    columns in one parallel pass; anything it does not take (other spellings, finer fractions,
    garbage) is decided by :func:`parse_instant`, once per distinct value.
    """
    fast = frame.select([_fast(c) for c in columns])
    out: dict[str, pl.Series] = {}
    errors: list[tuple[str, int, str]] = []
    for c in columns:
        parsed_col, errs = _settle(frame.get_column(c).cast(pl.String), fast.get_column(c))
        out[c] = parsed_col
        errors.extend((c, i, m) for i, m in errs)
    return pl.DataFrame(out), errors


def parse_instant_series(s: pl.Series) -> tuple[pl.Series, list[tuple[int, str]]]:
    """:func:`parse_instant_columns` for one Series: (Int64 epoch ms, [(index, message)])."""
    s = s.cast(pl.String)
    fast = pl.DataFrame({"v": s}).select(_fast("v")).to_series()
    return _settle(s, fast)


def _settle(s: pl.Series, fast: pl.Series) -> tuple[pl.Series, list[tuple[int, str]]]:
    """Decide the values the fast parser left null (and are not null or empty) one by one."""
    todo = fast.is_null() & s.is_not_null() & (s != "")
    errors: list[tuple[int, str]] = []
    if not todo.any():
        return fast.rename(s.name), errors
    frame = pl.DataFrame({"v": s, "todo": todo}).with_row_index("i").filter(pl.col("todo"))
    parsed: dict[str, int | None] = {}
    for value in frame.get_column("v").unique().to_list():
        if not value.strip():
            parsed[value] = None  # blank: stays null, like an empty cell
            continue
        try:
            parsed[value] = parse_instant(value)
        except InstantError:
            parsed[value] = None
    bad = [v for v, ms in parsed.items() if ms is None and v.strip()]
    if bad:
        bad_rows = frame.filter(pl.col("v").is_in(bad))
        for i, v in zip(bad_rows.get_column("i").to_list(), bad_rows.get_column("v").to_list(), strict=True):
            try:
                parse_instant(v)
            except InstantError as exc:
                errors.append((i, str(exc)))
    good = {v: ms for v, ms in parsed.items() if ms is not None}
    frame = frame.filter(pl.col("v").is_in(list(good)))
    if frame.height:
        values = frame.get_column("v").replace_strict(good, return_dtype=pl.Int64)
        fast = fast.clone().scatter(frame.get_column("i"), values)
    return fast.rename(s.name), errors
