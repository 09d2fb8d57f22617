"""``trunkline rate --input DIR --output DIR``: the file-based batch rater (spec: "Batch rating
from files").  The file formats are a contract (an auditor's script reads them); see
docs/rating.md for every decision taken where the spec is silent.

Input directory::

    accounts.csv   id,parent_id,kind,tariff,billing_decimals,timezone
    tariffs.csv    name,derived_from,markup_percent
    tariffs/<name>.csv   deck rows (optional for a derived tariff: its overrides)
    carriers.csv   id,tariff                                   (optional file)
    bundles.csv    id,account_id,zone_prefixes,minutes,quantity (optional file)
    cdrs.csv or cdrs.parquet
                   call_id,account_id,carrier_id,destination,start_time,answer_time,duration_ms

Output directory (created if missing; files replaced atomically)::

    rated.csv          call_id,status,prefix,destination_name,billed_seconds,bundle_seconds,debit,carrier_cost
    rated_levels.csv   call_id,level,account_id,amount

Line numbers in error messages are CSV line numbers (header = line 1).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import polars as pl

from rating.book import Account, BookError, Bundle, Carrier, RatingBook
from rating.deck import Deck, DeckError, DeckProblem, derive_deck, parse_markup, read_deck_csv
from rating.engine import CompiledBook, RatingInputError, levels_frame, rate_frame
from rating.instants import parse_instant_columns
from rating.money import CARRIER_DECIMALS, DEFAULT_DECIMALS, MAX_DECIMALS
from rating.tuning import retain_freed_memory

RATED_COLUMNS = (
    "call_id",
    "status",
    "prefix",
    "destination_name",
    "billed_seconds",
    "bundle_seconds",
    "debit",
    "carrier_cost",
)
LEVEL_COLUMNS = ("call_id", "level", "account_id", "amount")
CDR_FILE_COLUMNS = (
    "call_id",
    "account_id",
    "carrier_id",
    "destination",
    "start_time",
    "answer_time",
    "duration_ms",
)
_INT_RE = r"^[+-]?[0-9]+$"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class InputError(ValueError):
    """The input directory cannot be rated; ``problems`` name files and lines."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:200]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__("input refused:\n  " + "\n  ".join(shown) + more)


@dataclass(frozen=True)
class RunStats:
    calls: int
    rated: int
    unanswered: int
    no_rate: int
    seconds: float


# ---------------------------------------------------------------------------------------------
# reading


def _read_text_csv(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> pl.DataFrame:
    """A CSV file with every column as text; refuses missing and unknown columns."""
    df = pl.read_csv(path, infer_schema=False)
    missing = [c for c in required if c not in df.columns]
    unknown = [c for c in df.columns if c not in required and c not in optional]
    problems = []
    if missing:
        problems.append(f"{path.name} line 1: missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"{path.name} line 1: unknown column(s) {', '.join(unknown)}")
    if problems:
        raise InputError(problems)
    for c in optional:
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    return df.with_columns(pl.all().str.strip_chars())


def _cell(v: str | None) -> str:
    return "" if v is None else v


def _int_cell(v: str | None, what: str, where: str, problems: list[str], *, default: int | None = None) -> int | None:
    s = _cell(v)
    if s == "":
        if default is None:
            problems.append(f"{where}: {what} is empty")
        return default
    if not re.match(_INT_RE, s):
        problems.append(f"{where}: {what} {s!r} is not an integer")
        return default
    return int(s)


def read_book(input_dir: str | Path) -> RatingBook:
    """Read accounts, tariffs (with decks), carriers and bundles.  Raises :class:`InputError`."""
    d = Path(input_dir)
    problems: list[str] = []
    for name in ("accounts.csv", "tariffs.csv"):
        if not (d / name).is_file():
            problems.append(f"{name}: file missing")
    if problems:
        raise InputError(problems)
    tariffs = _read_tariffs(d, problems)
    accounts: list[Account] = []
    df = _read_text_csv(d / "accounts.csv", ["id", "parent_id", "kind", "tariff"], ["billing_decimals", "timezone"])
    for i, r in enumerate(df.iter_rows(named=True)):
        where = f"accounts.csv line {i + 2}"
        aid = _int_cell(r["id"], "id", where, problems)
        parent = _int_cell(r["parent_id"], "parent_id", where, problems, default=None) if r["parent_id"] else None
        dec = _int_cell(r["billing_decimals"], "billing_decimals", where, problems, default=DEFAULT_DECIMALS)
        kind = _cell(r["kind"])
        if kind not in ("reseller", "customer"):
            problems.append(f"{where}: kind must be reseller or customer, got {kind!r}")
        if dec is not None and not 0 <= dec <= MAX_DECIMALS:
            problems.append(f"{where}: billing_decimals must be 0..{MAX_DECIMALS}")
        if aid is None or dec is None:
            continue
        accounts.append(
            Account(
                aid,
                parent,
                "reseller" if kind == "reseller" else "customer",
                _cell(r["tariff"]),
                dec,
                _cell(r["timezone"]) or "UTC",
            )
        )
    carriers: list[Carrier] = []
    if (d / "carriers.csv").is_file():
        df = _read_text_csv(d / "carriers.csv", ["id", "tariff"])
        for i, r in enumerate(df.iter_rows(named=True)):
            cid = _int_cell(r["id"], "id", f"carriers.csv line {i + 2}", problems)
            if cid is not None:
                carriers.append(Carrier(cid, _cell(r["tariff"])))
    bundles: list[Bundle] = []
    if (d / "bundles.csv").is_file():
        df = _read_text_csv(d / "bundles.csv", ["id", "account_id", "zone_prefixes", "minutes", "quantity"])
        for i, r in enumerate(df.iter_rows(named=True)):
            where = f"bundles.csv line {i + 2}"
            vals = [_int_cell(r[c], c, where, problems) for c in ("id", "account_id", "minutes", "quantity")]
            if any(v is None for v in vals):
                continue
            bid, acc, minutes, qty = (int(v) for v in vals if v is not None)
            bundles.append(Bundle(bid, acc, tuple(_cell(r["zone_prefixes"]).split()), minutes, qty))
    if problems:
        raise InputError(problems)
    try:
        return RatingBook(tariffs=tariffs, accounts=accounts, carriers=carriers, bundles=bundles)
    except BookError as exc:
        raise InputError(exc.problems) from exc


def _read_tariffs(d: Path, problems: list[str]) -> dict[str, Deck]:
    df = _read_text_csv(d / "tariffs.csv", ["name"], ["derived_from", "markup_percent"])
    spec: dict[str, tuple[str, str, int]] = {}
    for i, r in enumerate(df.iter_rows(named=True)):
        where = f"tariffs.csv line {i + 2}"
        name = _cell(r["name"])
        if not _NAME_RE.match(name):
            problems.append(f"{where}: tariff name {name!r} must be letters, digits, _ . -")
            continue
        if name in spec:
            problems.append(f"{where}: duplicate tariff {name!r}")
        base = _cell(r["derived_from"])
        markup = _cell(r["markup_percent"])
        if not base and markup:
            problems.append(f"{where}: markup_percent without derived_from")
        if base:
            try:
                parse_markup(markup or "0")
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
        spec[name] = (base, markup or "0", i + 2)
    deck_problems: list[DeckProblem] = []
    own: dict[str, Deck | None] = {}
    for name, (base, _markup, line) in spec.items():
        path = d / "tariffs" / f"{name}.csv"
        if not path.is_file():
            if not base:
                problems.append(f"tariffs.csv line {line}: tariffs/{name}.csv missing")
            own[name] = None
            continue
        try:
            own[name] = read_deck_csv(path, source=f"tariffs/{name}.csv")
        except DeckError as exc:
            deck_problems.extend(exc.problems)
    for name, (base, _m, line) in spec.items():
        if base and base not in spec:
            problems.append(f"tariffs.csv line {line}: {name} derives from unknown tariff {base!r}")
    if deck_problems:
        problems.extend(str(p) for p in DeckError(deck_problems).problems)
    if problems:
        return {}
    out: dict[str, Deck] = {}

    def build(name: str, seen: tuple[str, ...]) -> Deck | None:
        if name in out:
            return out[name]
        base, markup, line = spec[name]
        if name in seen:
            problems.append(f"tariffs.csv line {line}: derivation cycle through {name!r}")
            return None
        if not base:
            deck = own[name]
        else:
            parent = build(base, (*seen, name))
            if parent is None:
                return None
            try:
                deck = derive_deck(parent, markup, own[name], source=name)
            except DeckError as exc:
                problems.extend(str(p) for p in exc.problems)
                return None
        if deck is not None:
            out[name] = deck
        return deck

    for name in spec:
        build(name, ())
    return out


def read_cdrs(input_dir: str | Path) -> pl.DataFrame:
    """cdrs.csv or cdrs.parquet -> an engine frame (cdr.schema names).  Raises InputError."""
    d = Path(input_dir)
    csv, pq = d / "cdrs.csv", d / "cdrs.parquet"
    if csv.is_file() and pq.is_file():
        raise InputError(["cdrs.csv and cdrs.parquet both present: keep one"])
    if pq.is_file():
        raw = pl.read_parquet(pq)
        source = "cdrs.parquet"
    elif csv.is_file():
        raw = pl.read_csv(csv, infer_schema=False)
        source = "cdrs.csv"
    else:
        raise InputError(["cdrs.csv: file missing"])
    missing = [c for c in CDR_FILE_COLUMNS if c not in raw.columns]
    unknown = [c for c in raw.columns if c not in CDR_FILE_COLUMNS]
    if missing or unknown:
        raise InputError(
            [f"{source} line 1: missing column(s) {', '.join(missing)}"] * bool(missing)
            + [f"{source} line 1: unknown column(s) {', '.join(unknown)}"] * bool(unknown)
        )
    problems: list[str] = []
    unit = "line" if source.endswith(".csv") else "row"
    first = 2 if unit == "line" else 1

    def report(mask: pl.Series, message: str) -> None:
        rows = mask.arg_true()
        if len(rows):
            listed = ", ".join(str(int(r) + first) for r in rows.head(20).to_list())
            more = f" (+{len(rows) - 20} more)" if len(rows) > 20 else ""
            problems.append(f"{source} {unit}s {listed}{more}: {message}")

    def ints(name: str, *, required: bool) -> pl.Series:
        s = raw.get_column(name)
        if s.dtype.is_integer():
            out = s.cast(pl.Int64)
            empty = s.is_null()
        else:
            text = s.cast(pl.String).str.strip_chars()
            empty = text.is_null() | (text == "")
            out = text.cast(pl.Int64, strict=False)
            report(out.is_null() & ~empty, f"{name} is not an integer")
        if required:
            report(empty, f"{name} is empty")
        return out

    # text instants of both columns are parsed in one parallel pass
    text_cols = [c for c in ("start_time", "answer_time") if raw.schema[c] in (pl.String, pl.Null)]
    parsed, errors = parse_instant_columns(raw, text_cols) if text_cols else (pl.DataFrame(), [])
    for name, i, msg in errors[:20]:
        problems.append(f"{source} {unit} {i + first}: {name}: {msg}")
    if len(errors) > 20:
        problems.append(f"{source}: {len(errors) - 20} more bad start_time/answer_time values")

    def instants(name: str, *, required: bool) -> pl.Series:
        s = raw.get_column(name)
        if isinstance(s.dtype, pl.Datetime):
            if s.dtype.time_zone is None:
                problems.append(f"{source}: {name} is a datetime without time zone (ambiguous)")
                return pl.Series(name, [None] * len(s), dtype=pl.Int64)
            out = s.dt.epoch("ms").cast(pl.Int64)
        elif name in text_cols:
            out = parsed.get_column(name)
        else:
            problems.append(f"{source}: {name} must be an ISO 8601 text or a zoned datetime, got {s.dtype}")
            return pl.Series(name, [None] * len(s), dtype=pl.Int64)
        if required:
            blank = s.is_null() if isinstance(s.dtype, pl.Datetime) else s.is_null() | (s.cast(pl.String) == "")
            report(out.is_null() & blank, f"{name} is empty")
        return out

    call_id = raw.get_column("call_id").cast(pl.String)
    report(call_id.is_null() | (call_id.str.strip_chars() == ""), "call_id is empty")
    if _may_repeat(call_id):
        report(call_id.is_duplicated(), "call_id repeated")
    frame = pl.DataFrame(
        {
            "call_id": call_id,
            "customer_id": ints("account_id", required=True),
            "dialled_number": raw.get_column("destination").cast(pl.String).fill_null(""),
            "start_ms": instants("start_time", required=True),
            "answer_ms": instants("answer_time", required=False),
            "duration_ms": ints("duration_ms", required=True),
            "carrier_id": ints("carrier_id", required=False),
        }
    )
    if problems:
        raise InputError(problems)
    return frame


def _may_repeat(ids: pl.Series) -> bool:
    """False when every id is certainly distinct: distinct 64-bit hashes (a sort of integers is
    far cheaper than hashing the strings into a set); True means "check exactly"."""
    h = np.sort(ids.hash(seed=0x7261746E).to_numpy())
    return bool(len(h) > 1 and (h[1:] == h[:-1]).any())


# ---------------------------------------------------------------------------------------------
# writing


def format_amounts(amount: pl.Expr, decimals: pl.Expr | int, *, zero_decimals: bool = True) -> pl.Expr:
    """Int minor units -> plain decimal text with exactly ``decimals`` places (null stays null).

    ``zero_decimals=False`` promises that no row has 0 decimals (skips that branch: string
    building is the whole cost of writing 30M amounts)."""
    if isinstance(decimals, int):
        if decimals == 0:
            return amount.cast(pl.String)
        scale: pl.Expr = pl.lit(10**decimals, dtype=pl.Int64)
        zero_decimals = False
        dec = pl.lit(decimals)
    else:
        dec = decimals
        scale = dec.cast(pl.Int64).replace_strict({d: 10**d for d in range(MAX_DECIMALS + 1)}, return_dtype=pl.Int64)
    # (frac + scale) has exactly decimals + 1 digits: dropping its leading 1 zero-pads it
    text = pl.format("{}.{}", amount // scale, (amount % scale + scale).cast(pl.String).str.slice(1))
    return pl.when(dec == 0).then(amount.cast(pl.String)).otherwise(text) if zero_decimals else text


def _has_zero(rated: pl.DataFrame, column: str) -> bool:
    return bool((rated.get_column(column) == 0).any())


def rated_file_frame(rated: pl.DataFrame) -> pl.DataFrame:
    zero = _has_zero(rated, "debit_decimals")
    return rated.select(
        "call_id",
        pl.col("status").cast(pl.String),
        pl.col("prefix").cast(pl.String),
        pl.col("destination_name").cast(pl.String),
        "billed_seconds",
        "bundle_seconds",
        format_amounts(pl.col("debit"), pl.col("debit_decimals"), zero_decimals=zero).alias("debit"),
        format_amounts(pl.col("carrier_cost"), CARRIER_DECIMALS).alias("carrier_cost"),
    )


def levels_file_frame(rated: pl.DataFrame) -> pl.DataFrame:
    levels = levels_frame(rated)
    zero = _has_zero(levels, "decimals")
    return levels.select(
        "call_id",
        "level",
        "account_id",
        format_amounts(pl.col("amount"), pl.col("decimals"), zero_decimals=zero).alias("amount"),
    )


def _write_atomic(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.write_csv(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------------------------
# running


class Progress:
    """A one-line progress bar on a terminal, redrawn at most ten times a second (and always at
    the end of a stage); nothing at all without a stream.  Also drawn by `trunkline rerate`."""

    def __init__(self, stream: TextIO | None):
        self.stream = stream
        self.last = 0.0
        self.stage = ""

    def __call__(self, stage: str, done: int = 0, total: int = 0, *, force: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and stage == self.stage and now - self.last < 0.1 and done < total:
            return
        self.stage, self.last = stage, now
        if total:
            width = 30
            filled = width * done // total
            bar = "#" * filled + "." * (width - filled)
            line = f"\r[{bar}] {100 * done // total:3d}% {stage} {done:,}/{total:,}"
        else:
            line = f"\r{stage}..."
        self.stream.write(line.ljust(79)[:79])
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()


def run(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    progress: bool | None = None,
    threads: int | None = None,
) -> RunStats:
    """Rate the input directory into the output directory.

    ``progress=None`` draws a bar only when stderr is a terminal.  Raises :class:`InputError`
    (nothing is written) when any input is invalid.
    """
    started = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    bar = Progress(sys.stderr if show else None)
    try:
        bar("reading tariffs and accounts", force=True)
        book = read_book(input_dir)
        compiled = CompiledBook(book)
        bar("reading CDRs", force=True)
        cdrs = read_cdrs(input_dir)
        cb: Callable[[int, int], None] = lambda done, total: bar("rating", done, total)  # noqa: E731
        try:
            rated = rate_frame(cdrs, compiled, threads=threads, progress=cb)
        except RatingInputError as exc:
            raise InputError([f"{what}: {', '.join(ids[:20])}" for what, ids in exc.problems]) from exc
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        bar("writing rated.csv", force=True)
        _write_atomic(rated_file_frame(rated), out / "rated.csv")
        bar("writing rated_levels.csv", force=True)
        _write_atomic(levels_file_frame(rated), out / "rated_levels.csv")
        counts = dict(rated.get_column("status").cast(pl.String).value_counts().iter_rows())
    finally:
        bar.close()
    return RunStats(
        calls=rated.height,
        rated=int(counts.get("rated", 0)),
        unanswered=int(counts.get("unanswered", 0)),
        no_rate=int(counts.get("no_rate", 0)),
        seconds=time.perf_counter() - started,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``trunkline rate``).  This function, and only it, talks to the user:
    a summary on stdout, errors on stderr.  Exit status 0 done, 1 input refused."""
    parser = argparse.ArgumentParser(prog="trunkline rate", description="Rate a directory of CDRs and tariffs.")
    parser.add_argument("--input", required=True, metavar="DIR", help="directory with accounts.csv, tariffs.csv ...")
    parser.add_argument("--output", required=True, metavar="DIR", help="where rated.csv and rated_levels.csv go")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar (default: only when stderr is a terminal)",
    )
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: CPU count, max 4)")
    parser.add_argument(
        "--keep-freed-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep freed memory in the process instead of page-faulting it back (see rating.tuning)",
    )
    args = parser.parse_args(argv)
    if args.keep_freed_memory:
        retain_freed_memory()
    try:
        stats = run(args.input, args.output, progress=args.progress, threads=args.threads)
    except (InputError, DeckError) as exc:
        sys.stderr.write(f"trunkline rate: {exc}\n")
        return 1
    sys.stdout.write(
        f"rated {stats.calls} calls ({stats.rated} rated, {stats.unanswered} unanswered, "
        f"{stats.no_rate} no_rate) in {stats.seconds:.2f} s\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
