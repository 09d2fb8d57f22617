"""Rate decks: parsing, validation and derivation (spec: "Rate decks (tariffs)").

A :class:`Deck` wraps a polars frame in canonical, integer form (see :data:`DECK_SCHEMA`):
prices in micro-units, durations in whole seconds, window bounds in epoch milliseconds with
:data:`~rating.money.TIME_MIN` / :data:`~rating.money.TIME_MAX` for the open ends.

An invalid deck is refused whole: :class:`DeckError` lists every problem found, each naming
its row.  Row numbers are CSV line numbers: the header is line 1, the first data row is line 2
(for a deck given as a frame, row ``i`` of the frame is reported as ``i + 2``, as if the frame
had been written to CSV).  Rows of a derived tariff that come from its base keep the base's
row numbers and source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl

from rating.instants import InstantError, parse_instant
from rating.money import (
    MAX_FREE_SECONDS,
    MAX_INCREMENT,
    MAX_PREFIX_DIGITS,
    MAX_PRICE_MICRO,
    MICRO,
    TIME_MAX,
    TIME_MIN,
    apply_markup,
    micro_to_decimal,
    parse_micro,
    parse_signed_micro,
)

DECK_COLUMNS: tuple[str, ...] = (
    "prefix",
    "destination",
    "rate",
    "connect_fee",
    "initial_increment",
    "increment",
    "grace_seconds",
    "included_seconds",
    "effective_from",
    "effective_to",
)

DECK_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "prefix": pl.String(),
    "destination": pl.String(),
    "rate": pl.Int64(),  # micro-units per minute
    "connect_fee": pl.Int64(),  # micro-units
    "initial_increment": pl.Int64(),
    "increment": pl.Int64(),
    "grace_seconds": pl.Int64(),
    "included_seconds": pl.Int64(),
    "effective_from": pl.Int64(),  # epoch ms, inclusive; TIME_MIN = beginning of time
    "effective_to": pl.Int64(),  # epoch ms, exclusive; TIME_MAX = end of time
    "source": pl.String(),  # file (or tariff) the row came from, for messages
}

DEFAULT_INCREMENT = 60
_PREFIX_RE = rf"^[0-9]{{1,{MAX_PREFIX_DIGITS}}}$"
_INT_RE = re.compile(r"^\d+$")
# Listing thousands of problems helps nobody; the count is still exact.
MAX_LISTED_PROBLEMS = 200


@dataclass(frozen=True, slots=True)
class DeckProblem:
    row: int | None
    column: str | None
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = self.source or "deck"
        if self.row is not None:
            where += f" row {self.row}"
        if self.column:
            where += f" ({self.column})"
        return f"{where}: {self.message}"


class DeckError(ValueError):
    """A deck (or a set of decks) is invalid; nothing of it may be used."""

    def __init__(self, problems: list[DeckProblem]):
        self.problems = sorted(problems, key=lambda p: (p.source, p.row or 0, p.column or ""))
        shown = [str(p) for p in self.problems[:MAX_LISTED_PROBLEMS]]
        more = len(self.problems) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more problems")
        super().__init__(f"invalid deck, {len(self.problems)} problem(s):\n  " + "\n  ".join(shown))

    @property
    def rows(self) -> list[int]:
        return sorted({p.row for p in self.problems if p.row is not None})


@dataclass(frozen=True, eq=False)
class Deck:
    """A validated rate deck in canonical integer form (frame columns: :data:`DECK_SCHEMA`)."""

    frame: pl.DataFrame
    source: str = ""
    _cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return self.frame.height

    def rows(self) -> list[dict[str, object]]:
        return self.frame.to_dicts()

    def to_csv_frame(self) -> pl.DataFrame:
        """Back to the textual CSV form (decimal strings, ISO instants, empty open ends)."""
        from rating.instants import format_instant

        def price(v: int) -> str:
            return format(micro_to_decimal(v).normalize(), "f")

        def instant(v: int) -> str:
            return "" if v in (TIME_MIN, TIME_MAX) else format_instant(v)

        f = self.frame
        return pl.DataFrame(
            {
                "prefix": f["prefix"],
                "destination": f["destination"],
                "rate": [price(v) for v in f["rate"].to_list()],
                "connect_fee": [price(v) for v in f["connect_fee"].to_list()],
                "initial_increment": f["initial_increment"],
                "increment": f["increment"],
                "grace_seconds": f["grace_seconds"],
                "included_seconds": f["included_seconds"],
                "effective_from": [instant(v) for v in f["effective_from"].to_list()],
                "effective_to": [instant(v) for v in f["effective_to"].to_list()],
            }
        )


def _empty(s: pl.Series) -> pl.Series:
    return s.is_null() | (s.str.strip_chars() == "")


def _parse_by_value(
    values: pl.Series,
    rows: pl.Series,
    column: str,
    parse: Callable[[str], int],
    default: int | None,
    problems: list[DeckProblem],
    source: str,
) -> pl.Series:
    """Parse a string column once per distinct value; empty cells take ``default``."""
    empty = _empty(values)
    table: dict[str, int] = {}
    bad: dict[str, str] = {}
    for v in values.filter(~empty).unique().to_list():
        try:
            table[v] = parse(v)
        except ValueError as exc:
            bad[v] = str(exc)
    if bad:
        hit = pl.DataFrame({"row": rows, "v": values}).filter(pl.col("v").is_in(list(bad)))
        for row, v in hit.iter_rows():
            problems.append(DeckProblem(row, column, bad[v], source))
    if default is None and empty.any():
        for row in rows.filter(empty).to_list():
            problems.append(DeckProblem(row, column, "required value is empty", source))
    mapped = values.replace_strict(table, default=None, return_dtype=pl.Int64)
    return mapped if default is None else mapped.fill_null(default)


def _bounded_int(lo: int, hi: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        s = text.strip()
        if s.startswith("-") and _INT_RE.match(s[1:]):
            raise ValueError(f"{what} must be >= {lo}, got {s}")
        if not _INT_RE.match(s):
            raise ValueError(f"{what} {text!r} is not a whole number of seconds")
        v = int(s)
        if v < lo:
            raise ValueError(f"{what} must be >= {lo}, got {v}")
        if v > hi:
            raise ValueError(f"{what} must be <= {hi}, got {v}")
        return v

    return parse


def _price(what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        v = parse_micro(text, what=what)
        if v > MAX_PRICE_MICRO:
            raise ValueError(f"{what} {text.strip()} exceeds the maximum {MAX_PRICE_MICRO // MICRO}")
        return v

    return parse


def _instant(text: str) -> int:
    try:
        return parse_instant(text)
    except InstantError as exc:
        raise ValueError(str(exc)) from exc


def parse_deck(raw: pl.DataFrame, *, source: str = "", first_row: int = 2) -> Deck:
    """Validate a textual deck frame (columns of :data:`DECK_COLUMNS`) into a :class:`Deck`.

    Every column is read as text, exactly as in the CSV file.  Unknown columns are refused (a
    misspelt ``conect_fee`` would otherwise silently default to 0).  Raises :class:`DeckError`.
    """
    problems: list[DeckProblem] = []
    unknown = [c for c in raw.columns if c not in DECK_COLUMNS]
    missing = [c for c in ("prefix", "rate") if c not in raw.columns]
    if unknown:
        problems.append(DeckProblem(1, None, f"unknown column(s): {', '.join(unknown)}", source))
    if missing:
        problems.append(DeckProblem(1, None, f"missing required column(s): {', '.join(missing)}", source))
    if problems:
        raise DeckError(problems)
    n = raw.height
    rows = pl.Series("row", range(first_row, first_row + n), dtype=pl.Int64)

    def col(name: str) -> pl.Series:
        if name in raw.columns:
            return raw.get_column(name).cast(pl.String)
        return pl.Series(name, [None] * n, dtype=pl.String)

    prefix = col("prefix").str.strip_chars()
    bad_prefix = ~prefix.fill_null("").str.contains(_PREFIX_RE)
    for row, p in pl.DataFrame({"r": rows, "p": col("prefix")}).filter(bad_prefix).iter_rows():
        problems.append(DeckProblem(row, "prefix", f"prefix {p!r} is not 1-{MAX_PREFIX_DIGITS} digits", source))

    rate = _parse_by_value(col("rate"), rows, "rate", _price("rate"), None, problems, source)
    fee = _parse_by_value(col("connect_fee"), rows, "connect_fee", _price("connect fee"), 0, problems, source)
    inc = _parse_by_value(
        col("increment"),
        rows,
        "increment",
        _bounded_int(1, MAX_INCREMENT, "increment"),
        DEFAULT_INCREMENT,
        problems,
        source,
    )
    init_raw = col("initial_increment")
    init = _parse_by_value(
        init_raw,
        rows,
        "initial_increment",
        _bounded_int(0, MAX_INCREMENT, "initial_increment"),
        -1,
        problems,
        source,
    )
    # Spec: initial_increment defaults to the row's own increment.
    init = pl.select(pl.when(init == -1).then(inc).otherwise(init)).to_series()
    grace = _parse_by_value(
        col("grace_seconds"),
        rows,
        "grace_seconds",
        _bounded_int(0, MAX_FREE_SECONDS, "grace_seconds"),
        0,
        problems,
        source,
    )
    incl = _parse_by_value(
        col("included_seconds"),
        rows,
        "included_seconds",
        _bounded_int(0, MAX_FREE_SECONDS, "included_seconds"),
        0,
        problems,
        source,
    )
    eff_from = _parse_by_value(col("effective_from"), rows, "effective_from", _instant, TIME_MIN, problems, source)
    eff_to = _parse_by_value(col("effective_to"), rows, "effective_to", _instant, TIME_MAX, problems, source)
    dest = col("destination").fill_null("")

    frame = pl.DataFrame(
        {
            "row": rows,
            "prefix": prefix,
            "destination": dest,
            "rate": rate,
            "connect_fee": fee,
            "initial_increment": init,
            "increment": inc,
            "grace_seconds": grace,
            "included_seconds": incl,
            "effective_from": eff_from,
            "effective_to": eff_to,
            "source": pl.Series("source", [source] * n, dtype=pl.String),
        },
        schema=DECK_SCHEMA,
    )
    # windows are checked even when other cells are bad, so one run reports every problem
    _check_windows(
        frame.filter(
            pl.col("effective_from").is_not_null()
            & pl.col("effective_to").is_not_null()
            & ~pl.Series(bad_prefix).fill_null(True)
        ),
        problems,
    )
    if problems:
        raise DeckError(problems)
    return Deck(frame, source)


def _check_windows(frame: pl.DataFrame, problems: list[DeckProblem]) -> None:
    """Empty windows, and two rows of one prefix whose windows overlap (both rows named)."""
    for row, source in (
        frame.filter(pl.col("effective_from") >= pl.col("effective_to")).select("row", "source").iter_rows()
    ):
        problems.append(DeckProblem(row, "effective_to", "effective_to must be after effective_from", source))
    multi = (
        frame.filter(pl.col("prefix").is_duplicated())
        .select("prefix", "effective_from", "effective_to", "row", "source")
        .sort("prefix", "effective_from", "row")
    )
    last_prefix: str | None = None
    reach = TIME_MIN
    reach_row = 0
    reach_source = ""
    for prefix, start, end, row, source in multi.iter_rows():
        if prefix != last_prefix:
            last_prefix, reach, reach_row, reach_source = prefix, end, row, source
            continue
        if start < reach:
            where = f"{reach_source} row {reach_row}" if reach_source != source else f"row {reach_row}"
            problems.append(DeckProblem(row, "effective_from", f"prefix {prefix}: window overlaps {where}", source))
            problems.append(
                DeckProblem(reach_row, "effective_from", f"prefix {prefix}: window overlaps row {row}", reach_source)
            )
        if end > reach:
            reach, reach_row, reach_source = end, row, source


def read_deck_csv(path: str | Path, *, source: str | None = None) -> Deck:
    """Read and validate one deck CSV file (header line required)."""
    p = Path(path)
    raw = pl.read_csv(p, infer_schema=False)
    return parse_deck(raw, source=source if source is not None else p.name)


def deck_from_rows(rows: Iterable[Mapping[str, object]], *, source: str = "") -> Deck:
    """Build a deck from Python mappings (values as text, ints or Decimals; None = empty)."""
    recs = list(rows)
    cols = [c for c in DECK_COLUMNS if any(c in r for r in recs)] or ["prefix", "rate"]
    for r in recs:
        for k in r:
            if k not in DECK_COLUMNS:
                cols.append(k)
    data: dict[str, list[str | None]] = {c: [] for c in dict.fromkeys(cols)}
    for r in recs:
        for c in data:
            v = r.get(c)
            data[c].append(None if v is None else (format(v, "f") if isinstance(v, Decimal) else str(v)))
    raw = pl.DataFrame(data, schema={c: pl.String for c in data})
    return parse_deck(raw, source=source)


def parse_markup(text: str | Decimal | int) -> int:
    """Markup percentage (e.g. ``25`` or ``-10.5``) -> micro-percent.  Must be > -100."""
    t = format(text, "f") if isinstance(text, Decimal) else str(text)
    v = parse_signed_micro(t, what="markup_percent")
    if v <= -100 * MICRO:
        raise ValueError(f"markup_percent {t} must be greater than -100")
    return v


def derive_deck(
    base: Deck, markup_percent: str | Decimal | int, overrides: Deck | None = None, *, source: str = ""
) -> Deck:
    """A derived tariff: the base's rows with ``rate`` and ``connect_fee`` times (1 + markup/100),
    rounded half-up to 6 places, other columns copied; then ``overrides``.

    Decision: an override row for a prefix replaces *all* of the base's rows for that prefix
    (every window); the override rows are the derived tariff's own prices and are not marked up.
    """
    m = parse_markup(markup_percent)
    f = base.frame
    if m:
        rates = [apply_markup(v, m) for v in f["rate"].to_list()]
        fees = [apply_markup(v, m) for v in f["connect_fee"].to_list()]
        f = f.with_columns(pl.Series("rate", rates, dtype=pl.Int64), pl.Series("connect_fee", fees, dtype=pl.Int64))
        too_big = f.filter((pl.col("rate") > MAX_PRICE_MICRO) | (pl.col("connect_fee") > MAX_PRICE_MICRO))
        if too_big.height:
            raise DeckError(
                [
                    DeckProblem(row, "rate", f"marked-up price exceeds {MAX_PRICE_MICRO // MICRO}", src)
                    for row, src in too_big.select("row", "source").iter_rows()
                ]
            )
    if overrides is not None and overrides.frame.height:
        f = f.filter(~pl.col("prefix").is_in(overrides.frame["prefix"].unique().to_list()))
        f = pl.concat([f, overrides.frame], how="vertical")
    return Deck(f, source or base.source)
