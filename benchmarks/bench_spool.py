"""CDR spool and ingestion: how fast the switch can append CDRs, and the sidecar store them.

    .venv/bin/python -m benchmarks.bench_spool                       # ~1-2 min
    .venv/bin/python -m benchmarks.bench_spool --records 200000 --ingest 100000 --no-pg

1. **Write**: ``SpoolWriter.emit`` in a loop (one thread, as the event loop calls it) with the
   default batched fdatasync (every 20 ms on a background thread): records/s and the latency
   of each ``emit`` (what one call's end costs the event loop), then the time for ``close()``
   to make everything durable.  For contrast, ``fsync_interval=0`` (fdatasync inside every
   emit) on a small sample.
2. **Ingest**: ``CdrIngestor.step`` (the sidecar's loop without the sleeps) over a spool written
   beforehand, into a freshly migrated SQLite database and PostgreSQL database: records/s from
   spool to committed rows, batches of ``--max-batch`` (5,000, the default), position saved and
   consumed segments deleted after each batch as in production.
3. **Delay at a steady rate**: the switch's side emits ``--rate`` CDRs per second (1,500: about
   the switch's maximum call rate, docs/benchmarks.md) for ``--seconds``, while a separate
   ingestor process runs the sidecar's loop (``batch_interval`` 0.2 s); the delay of each CDR is
   the time from its ``emit`` to the commit of the batch that stored it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.delays import consume, measure_delays, stop_flag
from cdr.spool import SpoolWriter
from provisioning.db import engine_of, make_engine, make_session_factory
from provisioning.migrate import upgrade
from tests.cdr.records import cdr
from trunkline.billing import CdrIngestor


def _records(n: int) -> list:  # type: ignore[type-arg]
    return [cdr(i, caller_device_id=i % 5000, dialled_number=f"4420{i % 10_000_000:07d}") for i in range(n)]


def bench_write(directory: Path, n: int) -> None:
    records = _records(n)
    w = SpoolWriter(directory)
    lat: list[int] = []
    clock = time.perf_counter_ns
    t0 = time.perf_counter()
    for r in records:
        a = clock()
        w.emit(r)
        lat.append(clock() - a)
    t_emit = time.perf_counter() - t0
    synced_during = w.synced
    t1 = time.perf_counter()
    w.close()
    t_close = time.perf_counter() - t1
    size = sum(p.stat().st_size for p in directory.glob("cdr-*.spool"))
    lat.sort()
    print(f"write, fsync every 20 ms: {n:,} records in {t_emit:.2f} s = {n / t_emit:,.0f} records/s "
          f"({size / n:.0f} bytes/record, {size / 2**20:.0f} MiB, "
          f"{len(list(directory.glob('cdr-*.spool')))} segments)")
    print(f"  emit latency: median {lat[n // 2] / 1000:.1f} us, p99 {lat[int(n * 0.99)] / 1000:.1f} us, "
          f"p99.9 {lat[int(n * 0.999)] / 1000:.1f} us, max {lat[-1] / 1000:.0f} us")
    print(f"  synced while writing: {synced_during:,} records; close() made the rest durable in {t_close:.3f} s")
    sync_dir = directory / "sync0"
    m = min(n, 2000)
    w0 = SpoolWriter(sync_dir, fsync_interval=0)
    t0 = time.perf_counter()
    for r in records[:m]:
        w0.emit(r)
    t_sync = time.perf_counter() - t0
    w0.close()
    print(f"write, fdatasync in every emit (fsync_interval=0): {m:,} records in {t_sync:.2f} s = "
          f"{m / t_sync:,.0f} records/s ({t_sync / m * 1e6:.0f} us per emit)")


def bench_ingest(label: str, url: str, spool_src: Path, n: int, max_batch: int) -> None:
    upgrade(url)
    sf = make_session_factory(make_engine(url))
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        spool = work / "spool"
        shutil.copytree(spool_src, spool)
        ing = CdrIngestor(sf, spool, max_batch=max_batch)
        batches: list[float] = []
        t0 = time.perf_counter()
        total = 0
        while True:
            a = time.perf_counter()
            k = ing.step()
            if k == 0:
                break
            batches.append(time.perf_counter() - a)
            total += k
        t = time.perf_counter() - t0
        ing.close()
        assert total == n and ing.committed == n, (total, ing.committed)
        print(f"ingest into {label}: {n:,} records in {t:.2f} s = {n / t:,.0f} records/s "
              f"(batches of {max_batch:,}: median {statistics.median(batches) * 1000:.0f} ms, "
              f"max {max(batches) * 1000:.0f} ms)")
    finally:
        engine_of(sf).dispose()
        shutil.rmtree(work, ignore_errors=True)


def ingest_child(url: str, spool: str, log_path: str, batch_interval: float) -> None:
    """The sidecar's loop in its own process, logging "<unix time> <records committed>" per batch."""
    stop = stop_flag()
    sf = make_session_factory(make_engine(url))
    consume(CdrIngestor(sf, spool, batch_interval=batch_interval), log_path, stop)
    engine_of(sf).dispose()


def bench_delay(label: str, url: str, base: Path, rate: int, seconds: int, batch_interval: float) -> None:
    upgrade(url)
    spool = base / f"delay-{label.split()[0].lower()}"
    log_path = base / f"delay-{label.split()[0].lower()}.log"
    n = rate * seconds
    argv = [sys.executable, "-m", "benchmarks.bench_spool", "--ingest-child", url, str(spool), str(log_path),
            str(batch_interval)]
    delays, commits = measure_delays(argv, spool, log_path, _records(n), rate, timeout=60)
    print(f"delay into {label} at {rate:,} CDRs/s for {seconds} s ({len(commits)} batches): "
          f"median {delays[n // 2] * 1000:.0f} ms, p99 {delays[int(n * 0.99)] * 1000:.0f} ms, "
          f"max {delays[-1] * 1000:.0f} ms")


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--ingest-child":
        ingest_child(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000, help="records written in the write benchmark")
    ap.add_argument("--ingest", type=int, default=200_000, help="records ingested per database")
    ap.add_argument("--max-batch", type=int, default=5000)
    ap.add_argument("--rate", type=int, default=1500, help="CDRs per second in the delay measurement")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--batch-interval", type=float, default=0.2)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432",
                    help="PostgreSQL server URL (a scratch database is created and dropped)")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory under /tmp)")
    args = ap.parse_args()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               platform.processor())
    base = Path(tempfile.mkdtemp(prefix="bench-spool-", dir=args.dir))
    fs = os.statvfs(base)
    print(f"# bench_spool {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  host={platform.node()} "
          f"cores={os.cpu_count()} cpu={cpu}  python={platform.python_version()}  dir={base} "
          f"(free {fs.f_bavail * fs.f_frsize / 2**30:.0f} GiB)  load={os.getloadavg()[0]:.2f}", flush=True)
    try:
        bench_write(base / "write", args.records)
        shutil.rmtree(base / "write")
        src = base / "ingest-src"
        with SpoolWriter(src) as w:
            for r in _records(args.ingest):
                w.emit(r)
        bench_ingest("SQLite (WAL)", f"sqlite:///{base / 'ingest.db'}", src, args.ingest, args.max_batch)
        bench_delay("SQLite (WAL)", f"sqlite:///{base / 'delay.db'}", base, args.rate, args.seconds,
                    args.batch_interval)
        if not args.no_pg:
            import psycopg
            from sqlalchemy.engine import make_url

            server = make_url(args.pg)
            admin = f"host={server.host} port={server.port or 5432} user={server.username} dbname=postgres"
            name = f"trunkline_bench_{secrets.token_hex(4)}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                bench_ingest("PostgreSQL", f"{args.pg}/{name}", src, args.ingest, args.max_batch)
                with psycopg.connect(f"{admin[:-len('dbname=postgres')]}dbname={name}", autocommit=True) as conn:
                    conn.execute("DELETE FROM cdrs")
                bench_delay("PostgreSQL", f"{args.pg}/{name}", base, args.rate, args.seconds, args.batch_interval)
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
