"""Rating engine benchmark: 10,000,000 CDRs against a 50,000-prefix deck, four tariff lookups each
(customer, two reseller levels, carrier), side by side with row-by-row SQL in PostgreSQL and a plain
Python loop.

    .venv/bin/python -m benchmarks.rating.bench_rating [--cdrs 10000000] [--prefixes 50000]
        [--pg-sample 20000] [--pg-seconds 60] [--loop-sample 200000] [--loop-seconds 30]
        [--no-disk] [--no-pg] [--dsn "host=127.0.0.1 user=postgres dbname=test"]

Everything is seeded (numpy default_rng(42)).  Timings use time.perf_counter.  The in-memory
figure is ``rate_frame`` on a polars frame already in memory (compiled book reused, as the billing
sidecar does); the disk figures are whole ``trunkline rate`` runs (read, validate, compile, rate,
write rated.csv and rated_levels.csv) from Parquet and from CSV.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.rating.gen import make_book, make_cdrs
from rating import batch
from rating.book import RatingBook
from rating.engine import CompiledBook, rate_frame
from rating.instants import format_instant
from rating.money import MAX_DECIMALS
from rating.scalar import ScalarRater, digits_of
from rating.tuning import retain_freed_memory


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(
            line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
        )
        ram = f"{int(mem) / 1024**2:.1f} GiB"
    except (OSError, StopIteration):
        ram = "?"
    return f"{os.cpu_count()} CPUs, {cpu}, {ram} RAM, Python {platform.python_version()}, polars {pl.__version__}"


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# -- files for the batch rater ------------------------------------------------------------------


def write_inputs(d: Path, book: RatingBook, raw: dict[str, pl.DataFrame], derived: list[tuple[str, str, str]]) -> None:
    (d / "tariffs").mkdir(parents=True, exist_ok=True)
    rows = [(name, "", "") for name in raw] + derived
    pl.DataFrame(rows, schema=["name", "derived_from", "markup_percent"], orient="row").write_csv(d / "tariffs.csv")
    for name, frame in raw.items():
        frame.write_csv(d / "tariffs" / f"{name}.csv")
    pl.DataFrame(
        [
            (a.id, "" if a.parent_id is None else str(a.parent_id), a.kind, a.tariff, a.billing_decimals, a.timezone)
            for a in book.accounts
        ],
        schema=["id", "parent_id", "kind", "tariff", "billing_decimals", "timezone"],
        orient="row",
    ).write_csv(d / "accounts.csv")
    pl.DataFrame([(c.id, c.tariff) for c in book.carriers], schema=["id", "tariff"], orient="row").write_csv(
        d / "carriers.csv"
    )
    pl.DataFrame(
        [(b.id, b.account_id, " ".join(b.zone_prefixes), b.minutes, b.quantity) for b in book.bundles],
        schema=["id", "account_id", "zone_prefixes", "minutes", "quantity"],
        orient="row",
    ).write_csv(d / "bundles.csv")


def cdr_file_frame(cdrs: pl.DataFrame, *, text_times: bool) -> pl.DataFrame:
    def ts(col: str) -> pl.Expr:
        dt = pl.from_epoch(pl.col(col), time_unit="ms").dt.replace_time_zone("UTC")
        return dt.dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ") if text_times else dt

    return cdrs.select(
        "call_id",
        pl.col("customer_id").alias("account_id"),
        "carrier_id",
        pl.col("dialled_number").alias("destination"),
        ts("start_ms").alias("start_time"),
        ts("answer_ms").alias("answer_time"),
        "duration_ms",
    )


# -- PostgreSQL, one call at a time ---------------------------------------------------------------

PG_FUNCTION = """
CREATE FUNCTION {s}.rate(p_tariff text, p_number text, p_at timestamptz, p_d int, p_dec int)
RETURNS TABLE(prefix text, billed int, amount numeric) LANGUAGE sql STABLE AS $$
  WITH r AS (
    SELECT * FROM {s}.tariff_rows t
    WHERE t.tariff = p_tariff
      AND t.prefix = ANY (ARRAY(SELECT left(p_number, n) FROM generate_series(1, length(p_number)) n))
      AND t.effective_from <= p_at AND p_at < t.effective_to
    ORDER BY length(t.prefix) DESC
    LIMIT 1
  ), b AS (
    SELECT r.*, greatest(0, p_d - r.included_seconds) AS bb FROM r
  ), c AS (
    SELECT b.prefix,
      CASE WHEN p_d = 0 OR p_d <= b.grace_seconds THEN -1
           WHEN b.bb = 0 THEN 0
           WHEN b.bb <= b.initial_increment THEN b.initial_increment
           ELSE b.initial_increment + ceil((b.bb - b.initial_increment)::numeric / b.increment)::int * b.increment
      END AS billed, b.rate, b.connect_fee
    FROM b
  )
  SELECT c.prefix, greatest(c.billed, 0),
         CASE WHEN c.billed < 0 THEN 0 ELSE round(c.connect_fee + c.rate * c.billed / 60, p_dec) END
  FROM c
$$;
"""


def pg_bench(
    dsn: str, book: RatingBook, compiled: CompiledBook, sample: pl.DataFrame, budget_s: float
) -> dict[str, Any] | None:
    try:
        import psycopg
    except ImportError:
        print("PostgreSQL: psycopg not installed, skipped")
        return None
    try:
        conn = psycopg.connect(dsn, connect_timeout=3, autocommit=True)
    except psycopg.Error as exc:
        print(f"PostgreSQL: no server answers at {dsn!r} ({exc.__class__.__name__}), skipped")
        return None
    schema = f"rating_bench_{os.getpid()}_{secrets.token_hex(3)}"
    out: dict[str, Any] = {}
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
            cur.execute(
                f"CREATE TABLE {schema}.tariff_rows (tariff text, prefix text, destination text, rate numeric,"
                " connect_fee numeric, initial_increment int, increment int, grace_seconds int,"
                " included_seconds int, effective_from timestamptz, effective_to timestamptz)"
            )
            t0 = time.perf_counter()
            used = {a.tariff for a in book.accounts} | {c.tariff for c in book.carriers}
            with cur.copy(f"COPY {schema}.tariff_rows FROM STDIN") as copy:
                for name in sorted(used):
                    for r in book.tariffs[name].frame.iter_rows(named=True):
                        copy.write_row(
                            (
                                name,
                                r["prefix"],
                                r["destination"],
                                f"{r['rate'] / 10**MAX_DECIMALS:.6f}",
                                f"{r['connect_fee'] / 10**MAX_DECIMALS:.6f}",
                                r["initial_increment"],
                                r["increment"],
                                r["grace_seconds"],
                                r["included_seconds"],
                                "-infinity" if r["effective_from"] < 0 else format_instant(r["effective_from"]),
                                "infinity" if r["effective_to"] > 2**60 else format_instant(r["effective_to"]),
                            )
                        )
            cur.execute(f"CREATE INDEX ON {schema}.tariff_rows (tariff, prefix)")
            cur.execute(f"ANALYZE {schema}.tariff_rows")
            cur.execute(PG_FUNCTION.format(s=schema))
            out["load_s"] = time.perf_counter() - t0
            accounts = book.account_by_id
            rows = sample.to_dicts()
            done = 0
            agree = 0
            compared = 0
            t0 = time.perf_counter()
            for row in rows:
                t_ms = row["answer_ms"] if row["answer_ms"] is not None else row["start_ms"]
                at = format_instant(t_ms)
                d = -(-row["duration_ms"] // 1000) if row["answer_ms"] is not None else 0
                number = digits_of(row["dialled_number"])
                amounts = []
                for acc_id in book.chains[row["customer_id"]]:
                    acc = accounts[acc_id]
                    cur.execute(
                        f"SELECT * FROM {schema}.rate(%s, %s, %s, %s, %s)",
                        (acc.tariff, number, at, d, acc.billing_decimals),
                        prepare=True,
                    )
                    res = cur.fetchone()
                    amounts.append(None if res is None else res[2])
                if row["carrier_id"] is not None:
                    cur.execute(
                        f"SELECT * FROM {schema}.rate(%s, %s, %s, %s, %s)",
                        (book.carrier_by_id[row["carrier_id"]].tariff, number, at, d, 4),
                        prepare=True,
                    )
                    cur.fetchone()
                done += 1
                # reseller amounts are untouched by bundles: compare them with the engine's
                if len(amounts) > 1 and amounts[1] is not None:
                    compared += 1
                    agree += int(
                        round(amounts[1] * 10 ** accounts[book.chains[row["customer_id"]][1]].billing_decimals)
                        == row["_l1"]
                    )
                if time.perf_counter() - t0 > budget_s:
                    break
            out["seconds"] = time.perf_counter() - t0
            out["calls"] = done
            out["agree"] = (agree, compared)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()
    return out


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cdrs", type=int, default=10_000_000)
    ap.add_argument("--prefixes", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3, help="timed in-memory runs after one warm-up run")
    ap.add_argument(
        "--independent-runs",
        type=int,
        default=2,
        help="also time in memory with unrelated decks on every level (0: skip)",
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--pg-sample", type=int, default=20_000)
    ap.add_argument("--pg-seconds", type=float, default=60.0, help="stop the SQL loop after this long")
    ap.add_argument("--loop-sample", type=int, default=200_000)
    ap.add_argument("--loop-seconds", type=float, default=30.0)
    ap.add_argument("--no-disk", action="store_true")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    ap.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="leave glibc's default of returning freed memory to the kernel (see rating.tuning)",
    )
    args = ap.parse_args(argv)
    tuned = False if args.no_malloc_tuning else retain_freed_memory()

    print(f"machine: {machine()}")
    print(f"load average at start: {load()}; freed memory kept in process (rating.tuning): {tuned}")
    rng = np.random.default_rng(42)
    t0 = time.perf_counter()
    book, raw, derived = make_book(rng, args.prefixes)
    cdrs = make_cdrs(rng, book, args.cdrs)
    print(f"generated {args.cdrs:,} CDRs and {len(book.tariffs)} tariffs in {time.perf_counter() - t0:.1f} s")
    for name in ("wholesale", "carrier_a", "carrier_b"):
        deck = book.tariffs[name].frame
        print(f"  deck {name}: {deck['prefix'].n_unique():,} prefixes, {deck.height:,} rows")

    t0 = time.perf_counter()
    compiled = CompiledBook(book)
    compile_s = time.perf_counter() - t0
    print(f"compile book: {compile_s:.2f} s ({compiled.groups[0].n_seg:,} segments)")

    times = []
    rated = pl.DataFrame()
    for i in range(args.runs + 1):
        del rated
        c0 = time.process_time()
        t0 = time.perf_counter()
        rated = rate_frame(cdrs, compiled, threads=args.threads)
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
        times.append(dt)
        label = "warm-up (cold memory)" if i == 0 else f"run {i}"
        print(
            f"in memory, {label}: {dt:.2f} s = {args.cdrs / dt:,.0f} CDRs/s "
            f"(CPU {cpu:.2f} s over all threads; load {load().split()[0]})"
        )
    best = min(times[1:])
    median = statistics.median(times[1:])
    mem_rate = args.cdrs / median
    print(f"in memory: median {median:.2f} s = {mem_rate:,.0f} CDRs/s, best {args.cdrs / best:,.0f} CDRs/s")
    counts = dict(rated.get_column("status").cast(pl.String).value_counts().iter_rows())
    print(f"  statuses: {counts}; bundle seconds used: {rated['bundle_seconds'].sum():,}")

    indep_rate = None
    if args.independent_runs:
        ibook, _raw, _derived = make_book(np.random.default_rng(43), args.prefixes, independent=True)
        icdrs = make_cdrs(np.random.default_rng(44), ibook, args.cdrs)
        icompiled = CompiledBook(ibook)
        itimes = []
        for i in range(args.independent_runs + 1):
            t0 = time.perf_counter()
            irated = rate_frame(icdrs, icompiled, threads=args.threads)
            itimes.append(time.perf_counter() - t0)
            if i:
                print(f"in memory, unrelated decks per level, run {i}: {args.cdrs / itimes[-1]:,.0f} CDRs/s")
        indep_rate = args.cdrs / statistics.median(itimes[1:])
        no_row = {k: int(irated[f"amount_l{k}"].is_null().sum()) for k in range(compiled.depth)}
        print(
            f"in memory, unrelated decks per level: median {indep_rate:,.0f} CDRs/s "
            f"({icompiled.groups[0].n_seg:,} segments; calls without a row per level: {no_row})"
        )
        del irated, icdrs, icompiled

    disk: dict[str, float] = {}
    if not args.no_disk:
        tmp = Path(tempfile.mkdtemp(prefix="rating_bench_"))
        try:
            for kind in ("parquet", "csv"):
                d = tmp / f"in_{kind}"
                write_inputs(d, book, raw, derived)
                t0 = time.perf_counter()
                if kind == "parquet":
                    cdr_file_frame(cdrs, text_times=False).write_parquet(d / "cdrs.parquet")
                else:
                    cdr_file_frame(cdrs, text_times=True).write_csv(d / "cdrs.csv")
                size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
                print(f"wrote {kind} input ({size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f} s")
                t0 = time.perf_counter()
                stats = batch.run(d, tmp / f"out_{kind}", progress=False, threads=args.threads)
                dt = time.perf_counter() - t0
                disk[kind] = args.cdrs / dt
                out_mb = sum(f.stat().st_size for f in (tmp / f"out_{kind}").iterdir()) / 1e6
                print(
                    f"trunkline rate from {kind}: {dt:.2f} s = {args.cdrs / dt:,.0f} CDRs/s "
                    f"({stats.calls:,} calls, {out_mb:,.0f} MB written)"
                )
            same = (tmp / "out_parquet" / "rated.csv").read_bytes() == (tmp / "out_csv" / "rated.csv").read_bytes()
            print(f"  parquet and csv runs wrote identical rated.csv: {same}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # a sample for the slow baselines, drawn from the same CDRs
    sample_n = max(args.pg_sample, args.loop_sample)
    pick = np.sort(np.random.default_rng(7).choice(args.cdrs, size=min(sample_n, args.cdrs), replace=False))
    sample = cdrs[pick].with_columns(rated["amount_l1"].gather(pick).alias("_l1"))

    pg_rate = None
    if not args.no_pg:
        res = pg_bench(args.dsn, book, compiled, sample.head(args.pg_sample), args.pg_seconds)
        if res:
            pg_rate = res["calls"] / res["seconds"]
            agree, compared = res["agree"]
            print(
                f"PostgreSQL row by row ({res['calls']:,} of a {args.pg_sample:,}-CDR sample in "
                f"{res['seconds']:.1f} s, 4 lookups per call): {pg_rate:,.0f} CDRs/s; "
                f"{args.cdrs:,} CDRs would take {args.cdrs / pg_rate / 3600:.1f} h (extrapolated); "
                f"reseller amounts equal to the engine's: {agree:,}/{compared:,}"
            )

    rater = ScalarRater(book)
    loop_rows = sample.head(args.loop_sample).drop("_l1").to_dicts()
    t0 = time.perf_counter()
    done = 0
    step = 5_000
    while done < len(loop_rows) and time.perf_counter() - t0 < args.loop_seconds:
        rater.rate_calls(loop_rows[done : done + step])
        done += len(loop_rows[done : done + step])
    loop_s = time.perf_counter() - t0
    loop_rate = done / loop_s
    print(
        f"plain Python loop (ScalarRater, dict lookups longest prefix first; {done:,} CDRs in {loop_s:.1f} s): "
        f"{loop_rate:,.0f} CDRs/s; {args.cdrs:,} CDRs would take {args.cdrs / loop_rate / 60:.1f} min (extrapolated)"
    )

    print("\nsummary (CDRs per second, 4 tariff lookups each)")
    print(f"  engine in memory       {mem_rate:>14,.0f}")
    if indep_rate:
        print(f"  (unrelated decks)      {indep_rate:>14,.0f}")
    for kind, r in disk.items():
        print(f"  trunkline rate ({kind:7s}) {r:>13,.0f}")
    if pg_rate:
        print(f"  PostgreSQL row by row  {pg_rate:>14,.0f}   engine/PostgreSQL = {mem_rate / pg_rate:,.0f}x")
        for kind, r in disk.items():
            print(f"    trunkline rate ({kind}) / PostgreSQL = {r / pg_rate:,.0f}x")
    print(f"  Python loop            {loop_rate:>14,.0f}   engine/Python loop = {mem_rate / loop_rate:,.0f}x")
    print(f"load average at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
