"""Billing sidecar and re-rating: throughput, rating delay at the switch's call rate, a month re-rated.

    .venv/bin/python -m benchmarks.bench_billing                      # ~5-10 min
    .venv/bin/python -m benchmarks.bench_billing --no-pg --ingest 50000 --rerate-sqlite 100000

The provisioned world (through the repositories, as the admin API would): a 50,000-prefix
wholesale deck and a carrier deck of the same size (imported as CSV), 2 top resellers buying on
the wholesale deck at +10 %, 10 sub-resellers buying on their parent's at +20 %, one retail
tariff per sub-reseller at +40 %, 1,000 customers in 4 time zones with 2 or 4 billing
decimals, 100 of them with a 500-minute bundle; CDRs to numbers under the deck's prefixes (1 %
nowhere), 85 % answered, exponential durations (mean 2 min), two carriers.

1. **Throughput**: N CDRs spooled beforehand, then the sidecar's loop without its sleeps
   (``CdrIngestor.step`` with the ``SidecarBiller`` hook): CDRs/s from spool to committed
   ``cdrs`` + ``rated_calls`` + ``rated_levels`` + bundle usage + ledger entries, batches of 5,000.
2. **Rating delay at the switch's rate**: 1,500 and 2,000 CDRs/s written for ``--seconds``
   while a separate process runs the sidecar's loop (``batch_interval`` 0.2 s, book loaded
   before the clock starts); the delay of a CDR is from its ``emit`` to the commit of the batch
   that rated and charged it.
3. **Re-rating a month**: ``--rerate-pg`` (1,000,000) CDRs of one month COPY'd into ``cdrs``,
   a first ``rerate`` (rates them all: nothing rated before), a markup change of one top
   reseller's buy tariff (+10 % -> +12 %, half the customers' amounts move), a second
   ``rerate`` (deletes and rewrites every rated row, ledger differences): CDRs/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.delays import consume, measure_delays, stop_flag
from benchmarks.rating.gen import country_codes, make_deck
from cdr.schema import CDR_COLUMNS, CdrRecord, polars_schema
from cdr.spool import SpoolWriter
from provisioning import repo
from provisioning.billing.bulk import write_frame
from provisioning.billing.rerate import rerate
from provisioning.db import engine_of, make_engine, make_session_factory
from provisioning.migrate import upgrade
from provisioning.scope import PROVIDER
from trunkline.billing import CdrIngestor, SidecarBiller

JAN_2026_MS = 1_767_225_600_000
FEB_2026_MS = 1_769_904_000_000
MAR_2026_MS = 1_772_323_200_000
APR_2026_MS = 1_775_001_600_000
MONTH_MS = 31 * 86_400_000
ZONES = ["Europe/London", "Europe/Berlin", "America/New_York", "UTC"]


def provision(url: str, prefixes: int) -> dict[str, object]:
    upgrade(url)
    sf = make_session_factory(make_engine(url))
    rng = np.random.default_rng(7)
    cc = country_codes(rng)
    wholesale_deck = make_deck(rng, prefixes, name="W", countries=cc)
    carrier_deck = make_deck(rng, prefixes, name="C", countries=cc)
    started = time.perf_counter()
    with sf.begin() as s:
        wholesale = repo.tariffs.create_tariff(s, scope=PROVIDER, name="wholesale")
        repo.tariffs.import_rates(s, scope=PROVIDER, tariff_id=wholesale.id, data=wholesale_deck.write_csv().encode())
        carrier_t = repo.tariffs.create_tariff(s, scope=PROVIDER, name="carrier")
        repo.tariffs.import_rates(s, scope=PROVIDER, tariff_id=carrier_t.id, data=carrier_deck.write_csv().encode())
        carriers = [
            repo.routing.create_carrier(s, scope=PROVIDER, name=f"carrier {i}", host=f"192.0.2.{i + 1}",
                                        tariff_id=carrier_t.id).id
            for i in range(2)
        ]
        plan = repo.plans.create_plan(s, scope=PROVIDER, name="plan")
        short = sorted({p for p in wholesale_deck.get_column("prefix").to_list() if len(p) <= 3})
        bundles = [
            repo.plans.create_bundle(s, scope=PROVIDER, plan_id=plan.id, name=f"bundle {i}", minutes=500,
                                     zone_prefixes=[short[(i * 7) % len(short)], short[(i * 7 + 3) % len(short)]]).id
            for i in range(10)
        ]
        customers: list[int] = []
        subs = []
        for t in range(2):
            top_buy = repo.tariffs.create_tariff(s, scope=PROVIDER, name=f"top{t} buys", base_tariff_id=wholesale.id,
                                                 markup_percent=Decimal(10))
            top = repo.create_reseller(s, scope=PROVIDER, name=f"top {t}", tariff_id=top_buy.id)
            for k in range(5):
                sub_buy = repo.tariffs.create_tariff(s, scope=PROVIDER, name=f"sub{t}.{k} buys", reseller_id=top.id,
                                                     base_tariff_id=top_buy.id, markup_percent=Decimal(20))
                sub = repo.create_reseller(s, scope=PROVIDER, name=f"sub {t}.{k}", parent_id=top.id,
                                           tariff_id=sub_buy.id)
                retail = repo.tariffs.create_tariff(s, scope=PROVIDER, name=f"retail {t}.{k}", reseller_id=sub.id,
                                                    base_tariff_id=sub_buy.id, markup_percent=Decimal(40))
                subs.append((sub.id, retail.id))
        for i in range(1000):
            sub_id, retail_id = subs[i % len(subs)]
            c = repo.create_customer(s, scope=PROVIDER, name=f"customer {i}", reseller_id=sub_id, tariff_id=retail_id,
                                     billing_decimals=4 if i % 5 else 2, timezone=ZONES[i % 4],
                                     service_plan_id=plan.id if i % 10 == 0 else None)
            customers.append(c.id)
            if i % 10 == 0:
                repo.plans.set_customer_bundle(s, scope=PROVIDER, customer_id=c.id, bundle_id=bundles[i // 10 % 10],
                                               quantity=1)
    print(f"  provisioned in {time.perf_counter() - started:.1f} s ({prefixes:,}-prefix decks, 22 tariffs, "
          f"12 resellers, 1,000 customers, 100 bundles)", flush=True)
    engine_of(sf).dispose()
    return {"customers": customers, "carriers": carriers, "prefixes": wholesale_deck.get_column("prefix").to_list()}


def cdr_frame(world: dict[str, object], n: int, seed: int, *, first: int = 0, start_ms: int = JAN_2026_MS,
              span_ms: int = MONTH_MS) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    prefixes = np.array(world["prefixes"])
    customers = np.array(world["customers"])
    carriers = np.array(world["carriers"])
    pick = prefixes[rng.integers(0, len(prefixes), n)]
    tails = rng.integers(0, 10**6, n)
    numbers = [f"{'999' if x < 0.01 else ''}{p}{t:06d}" for p, t, x in zip(pick, tails, rng.random(n), strict=True)]
    start = start_ms + rng.integers(0, span_ms, n)
    answered = rng.random(n) < 0.85
    answer = start + rng.integers(1000, 20_000, n)
    duration = np.where(answered, rng.exponential(120_000, n).astype(np.int64), 0)
    return pl.DataFrame(
        {
            "call_id": [f"bench-{seed}-{i}" for i in range(first, first + n)],
            "sip_call_id": [f"bench-{seed}-{i}@192.0.2.10" for i in range(first, first + n)],
            "customer_id": customers[rng.integers(0, len(customers), n)],
            "caller_device_id": None,
            "callee_device_id": None,
            "caller_number": "442070000001",
            "dialled_number": numbers,
            "start_ms": start,
            "answer_ms": pl.Series(np.where(answered, answer, 0)).set(pl.Series(~answered), None),
            "end_ms": np.where(answered, answer + duration, start + 5000),
            "duration_ms": duration,
            "sip_code": np.where(answered, 200, 486),
            "q850_cause": np.where(answered, 16, 17),
            "disposition": np.where(answered, "ANSWERED", "BUSY"),
            "direction": "outbound",
            "call_type": "outbound",
            "source_ip": "192.0.2.10",
            "hangup_by": "caller",
            "reseller_path": "",
            "ip_device_id": None,
            "carrier_id": carriers[rng.integers(0, len(carriers), n)],
            "did": "",
            "codecs": "PCMA",
        },
        schema=polars_schema(),
    )


def records(frame: pl.DataFrame) -> list[CdrRecord]:
    return [CdrRecord(*row) for row in frame.select(CDR_COLUMNS).iter_rows()]


def bench_throughput(label: str, url: str, world: dict[str, object], n: int, base: Path) -> None:
    spool = base / f"through-{label.split()[0].lower()}"
    with SpoolWriter(spool) as w:
        for r in records(cdr_frame(world, n, seed=1)):
            w.emit(r)
    sf = make_session_factory(make_engine(url))
    biller = SidecarBiller(sf)
    t0 = time.perf_counter()
    biller.cache.refresh()
    t_book = time.perf_counter() - t0
    ing = CdrIngestor(sf, spool, on_batch=biller, prepare=biller.prepare, max_batch=5000)
    batches = []
    t0 = time.perf_counter()
    while True:
        a = time.perf_counter()
        k = ing.step()
        if k == 0:
            break
        batches.append(time.perf_counter() - a)
    t = time.perf_counter() - t0
    ing.close()
    engine_of(sf).dispose()
    assert biller.calls == n, (biller.calls, n)
    batches.sort()
    print(f"throughput into {label}: {n:,} CDRs spool -> rated + levels + ledger in {t:.2f} s = {n / t:,.0f} CDRs/s "
          f"(batches of 5,000: median {batches[len(batches) // 2] * 1000:.0f} ms, max {batches[-1] * 1000:.0f} ms; "
          f"book loaded and compiled in {t_book:.1f} s; {biller.rerated} stored calls re-rated for bundle order)",
          flush=True)


def sidecar_child(url: str, spool: str, log_path: str, batch_interval: float) -> None:
    """The sidecar's loop in its own process, logging "<unix time> <records committed>" per batch."""
    stop = stop_flag()
    sf = make_session_factory(make_engine(url))
    biller = SidecarBiller(sf).start()
    biller.cache.refresh()
    ing = CdrIngestor(sf, spool, on_batch=biller, prepare=biller.prepare, batch_interval=batch_interval)
    consume(ing, log_path, stop)
    biller.stop()
    engine_of(sf).dispose()


def bench_delay(label: str, url: str, world: dict[str, object], base: Path, rate: int, seconds: int,
                batch_interval: float) -> None:
    tag = f"{label.split()[0].lower()}-{rate}"
    spool = base / f"delay-{tag}"
    log_path = base / f"delay-{tag}.log"
    n = rate * seconds
    recs = records(cdr_frame(world, n, seed=rate, start_ms=FEB_2026_MS, span_ms=27 * 86_400_000))
    argv = [sys.executable, "-m", "benchmarks.bench_billing", "--sidecar-child", url, str(spool), str(log_path),
            str(batch_interval)]
    delays, commits = measure_delays(argv, spool, log_path, recs, rate, timeout=120)
    sizes = [b - a for (_, a), (_, b) in zip([(0.0, 0), *commits[:-1]], commits, strict=True)]
    print(f"delay into {label} at {rate:,} CDRs/s for {seconds} s ({len(commits)} batches, median "
          f"{sorted(sizes)[len(sizes) // 2]} CDRs): median {delays[n // 2] * 1000:.0f} ms, "
          f"p99 {delays[int(n * 0.99)] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms", flush=True)


def bench_rerate(label: str, url: str, world: dict[str, object], n: int) -> None:
    sf = make_session_factory(make_engine(url))
    t0 = time.perf_counter()
    chunk = 200_000
    for first in range(0, n, chunk):
        frame = cdr_frame(world, min(chunk, n - first), seed=1000 + first, first=first, start_ms=MAR_2026_MS,
                          span_ms=30 * 86_400_000)
        with sf.begin() as s:
            write_frame(s, "cdrs", frame)
    print(f"  {n:,} CDRs of one month stored in {time.perf_counter() - t0:.1f} s", flush=True)
    since = dt.datetime.fromtimestamp(MAR_2026_MS / 1000, dt.UTC)
    until = dt.datetime.fromtimestamp(APR_2026_MS / 1000, dt.UTC)
    first_run = rerate(sf, since=since, until=until)
    print(f"rerate {label}, nothing rated before: {first_run.calls:,} CDRs in {first_run.seconds:.1f} s = "
          f"{first_run.calls / first_run.seconds:,.0f} CDRs/s ({first_run.entries} ledger entries)", flush=True)
    with sf.begin() as s:
        # A price change every call feels: the first top reseller's buy tariff goes from +10 % to
        # +12 % over wholesale, which moves every amount of its sub-resellers' customers.
        tariff = next(t for t in s.scalars(repo.tariffs.list_tariffs(s, scope=PROVIDER, name="top0 buys").stmt))
        repo.tariffs.update_tariff(s, scope=PROVIDER, tariff_id=tariff.id, changes={"markup_percent": Decimal(12)})
    second = rerate(sf, since=since, until=until)
    print(f"rerate {label} after a tariff change: {second.calls:,} CDRs in {second.seconds:.1f} s = "
          f"{second.calls / second.seconds:,.0f} CDRs/s ({second.entries} ledger adjustments, "
          f"{second.customers} customers)", flush=True)
    engine_of(sf).dispose()


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--sidecar-child":
        sidecar_child(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefixes", type=int, default=50_000)
    ap.add_argument("--ingest", type=int, default=100_000, help="CDRs in the throughput measurement")
    ap.add_argument("--rates", default="1500 2000", help="CDRs per second in the delay measurements")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--batch-interval", type=float, default=0.2)
    ap.add_argument("--rerate-pg", type=int, default=1_000_000, help="CDRs of the month re-rated on PostgreSQL")
    ap.add_argument("--rerate-sqlite", type=int, default=200_000, help="... and on SQLite")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432",
                    help="PostgreSQL server URL (a scratch database is created and dropped)")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory under /tmp)")
    args = ap.parse_args()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               platform.processor())
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    base = Path(tempfile.mkdtemp(prefix="bench-billing-", dir=args.dir))
    print(f"# bench_billing {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  host={platform.node()} "
          f"nproc={os.cpu_count()} cpu={cpu} ram={mem / 2**20:.1f} GiB python={platform.python_version()} "
          f"load={os.getloadavg()[0]:.2f}", flush=True)
    rates = [int(x) for x in args.rates.split()]
    try:
        if not args.no_sqlite:
            url = f"sqlite:///{base / 'billing.db'}"
            world = provision(url, args.prefixes)
            bench_throughput("SQLite (WAL)", url, world, args.ingest, base)
            for rate in rates:
                bench_delay("SQLite (WAL)", url, world, base, rate, args.seconds, args.batch_interval)
            if args.rerate_sqlite:
                bench_rerate("SQLite", url, world, args.rerate_sqlite)
        if not args.no_pg:
            import psycopg
            from sqlalchemy.engine import make_url

            server = make_url(args.pg)
            admin = f"host={server.host} port={server.port or 5432} user={server.username} dbname=postgres"
            name = f"trunkline_bench_{secrets.token_hex(4)}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                url = f"{args.pg}/{name}"
                world = provision(url, args.prefixes)
                bench_throughput("PostgreSQL", url, world, args.ingest, base)
                for rate in rates:
                    bench_delay("PostgreSQL", url, world, base, rate, args.seconds, args.batch_interval)
                if args.rerate_pg:
                    bench_rerate("PostgreSQL", url, world, args.rerate_pg)
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
