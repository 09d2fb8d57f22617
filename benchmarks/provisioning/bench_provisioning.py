"""Provisioning and admin API benchmark on PostgreSQL: a 100,000-row rate-deck import and a
customer listing over 100,000 customers (filtered, sorted, paginated, and exported as CSV).

    .venv/bin/python -m benchmarks.provisioning.bench_provisioning [--rows 100000]
        [--customers 100000] [--runs 5] [--dsn "host=127.0.0.1 port=5432 user=postgres"]

A throwaway database is created on the server (127.0.0.1:5432, user postgres, unless --dsn
says otherwise), migrated, used and dropped.  Requests go through the real FastAPI application
in-process (Starlette's TestClient: routing, auth, validation, serialisation; no sockets), with
a reseller's bearer token for the listing (its scope is the whole tree under it) and the service
provider's for the import.  Everything is seeded (random.Random(42)); timings are
time.perf_counter, median of ``--runs`` after one warm-up.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import secrets
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import polars as pl
import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from admin_api import create_app
from provisioning import repo
from provisioning.db import engine_of, session_factory_from_url
from provisioning.migrate import upgrade
from provisioning.models import Customer, IpDevice, Reseller, SipDevice
from provisioning.scope import PROVIDER
from provisioning.tokens import create_token
from rating.deck import parse_deck


def machine() -> str:
    def first(path: str, key: str) -> str:
        try:
            with open(path, encoding="utf-8") as fh:
                return next((line.split(":", 1)[1].strip() for line in fh if line.startswith(key)), "")
        except OSError:
            return ""

    cpu = first("/proc/cpuinfo", "model name") or platform.processor()
    mem_kb = first("/proc/meminfo", "MemTotal").split()
    mem = f"{int(mem_kb[0]) / 1024 / 1024:.1f} GiB" if mem_kb else "?"
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return f"nproc={os.cpu_count()}, CPU {cpu}, RAM {mem}, {pg}, Python {platform.python_version()}"


def deck_csv(rows: int, rng: random.Random) -> bytes:
    """``rows`` distinct prefixes; one in ten has a second effective window (a price change)."""
    lines = ["prefix,destination,rate,connect_fee,initial_increment,increment,grace_seconds,included_seconds,"
             "effective_from,effective_to"]  # fmt: skip
    prefixes: set[str] = set()
    while len(lines) - 1 < rows:
        prefix = str(rng.randint(1, 999)) + str(rng.randint(0, 10 ** rng.randint(2, 7)))
        if prefix in prefixes:
            continue
        prefixes.add(prefix)
        rate = f"{rng.randint(1, 500_000) / 1_000_000:.6f}"
        fee = "0" if rng.random() < 0.9 else "0.01"
        inc = rng.choice(("60,60", "1,1", "30,6"))
        if rng.random() < 0.1 and len(lines) < rows:
            lines.append(f"{prefix},Dest {prefix},{rate},{fee},{inc},0,0,,2026-07-01T00:00:00Z")
            lines.append(f"{prefix},Dest {prefix},{rate},{fee},{inc},0,0,2026-07-01T00:00:00Z,")
        else:
            lines.append(f"{prefix},Dest {prefix},{rate},{fee},{inc},0,0,,")
    return ("\n".join(lines[: rows + 1]) + "\n").encode()


def seed_customers(sf: Any, n: int, rng: random.Random) -> tuple[int, list[int]]:
    """A top reseller with 10 children; ``n`` customers spread over them, a SIP device each, and
    an IP device for one in five.  Bulk inserts: this is set-up, not what is measured."""
    with sf() as s:
        top = repo.create_reseller(s, scope=PROVIDER, name="Bench top")
        s.flush()
        children = [repo.create_reseller(s, scope=PROVIDER, name=f"Bench {i}", parent_id=top.id) for i in range(10)]
        s.commit()
        owners = [top.id] + [c.id for c in children]
    words = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Hooli", "Vandelay"]
    stamp = datetime.now(UTC)
    engine = engine_of(sf)
    batch = 10_000
    with engine.begin() as conn:
        for start in range(0, n, batch):
            rows = []
            for i in range(start, min(n, start + batch)):
                rows.append(
                    {
                        "id": i + 1,
                        "reseller_id": owners[i % len(owners)],
                        "name": f"{rng.choice(words)} {rng.choice(words)} {i}",
                        "company": f"{rng.choice(words)} Holdings {i % 997}",
                        "status": "active" if i % 20 else "stopped",
                        "max_sessions": 0,
                        "cps": 0,
                        "max_call_seconds": 0,
                        "account_code": f"C{i + 1:09d}",
                        "web_username": f"user{i}" if i % 2 == 0 else None,
                        "codecs": ["PCMA", "PCMU"],
                        "created_at": stamp,
                        "updated_at": stamp,
                    }
                )
            conn.execute(insert(Customer), rows)
            conn.execute(
                insert(SipDevice),
                [
                    {"customer_id": r["id"], "username": f"sip{r['id']}", "realm": "bench", "ha1_md5": "0" * 32,
                     "ha1_sha256": "0" * 64, "status": "active", "max_sessions": 0, "cps": 0, "allowed_ips": [],
                     "created_at": stamp, "updated_at": stamp}
                    for r in rows
                ],
            )  # fmt: skip
            conn.execute(
                insert(IpDevice),
                [
                    {"customer_id": r["id"], "ip": f"10.{r['id'] // 65536}.{r['id'] // 256 % 256}.{r['id'] % 256}",
                     "tech_prefix": "", "status": "active", "max_sessions": 0, "cps": 0, "created_at": stamp,
                     "updated_at": stamp}
                    for r in rows
                    if r["id"] % 5 == 0
                ],
            )  # fmt: skip
        conn.exec_driver_sql("SELECT setval('customers_id_seq', (SELECT max(id) FROM customers))")
        conn.exec_driver_sql("ANALYZE")
    return top.id, owners


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    fn()  # warm-up
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres")
    args = parser.parse_args(argv)
    rng = random.Random(42)
    name = f"trunkline_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.dsn + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(args.dsn)
    user, host, port = info.get("user", "postgres"), info.get("host", "127.0.0.1"), info.get("port", 5432)
    url = f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    sf = None
    try:
        upgrade(url)
        sf = session_factory_from_url(url)
        with sf() as s:
            admin = create_token(s, kind="admin", label="bench")
            s.commit()
        app = create_app(session_factory=sf)
        client = TestClient(app)
        as_admin = {"Authorization": f"Bearer {admin}"}
        print(f"machine: {machine()}")
        print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        print()

        # -- rate deck import ---------------------------------------------------------------
        deck = deck_csv(args.rows, rng)
        tariff_id = client.post("/api/v1/tariffs", json={"name": "Bench deck"}, headers=as_admin).json()["id"]

        def import_via_api() -> Any:
            r = client.post(
                f"/api/v1/tariffs/{tariff_id}/rates/import",
                files={"file": ("deck.csv", deck, "text/csv")},
                headers=as_admin,
            )
            assert r.status_code == 200, r.text[:500]
            return r.json()

        def validate_only() -> Any:
            return parse_deck(pl.read_csv(io.BytesIO(deck), infer_schema=False), source="deck.csv")

        seconds, parsed = timed(validate_only, args.runs)
        print(f"rate-deck validation alone (rating.deck.parse_deck, {len(parsed):,} rows): {seconds:.2f} s median")
        seconds, result = timed(import_via_api, args.runs)
        print(f"rate-deck import, {result['rows']:,} rows ({len(deck) / 1e6:.1f} MB CSV), replace mode, via the API: "
              f"{seconds:.2f} s median ({result['rows'] / seconds:,.0f} rows/s)")  # fmt: skip
        bad = deck.replace(b"\n12", b"\n1x", 1)

        def reject_via_api() -> Any:
            r = client.post(
                f"/api/v1/tariffs/{tariff_id}/rates/import", files={"file": ("bad.csv", bad)}, headers=as_admin
            )
            assert r.status_code == 422
            return r.json()

        seconds, rejected = timed(reject_via_api, args.runs)
        print(f"rate-deck import refused (one bad row of {args.rows:,}, all rows checked): {seconds:.2f} s median, "
              f"{rejected['error_count']} problem(s) reported")  # fmt: skip
        print()

        # -- customer listing ---------------------------------------------------------------
        start = time.perf_counter()
        top_id, _owners = seed_customers(sf, args.customers, rng)
        took = time.perf_counter() - start
        print(f"seeded {args.customers:,} customers, {args.customers:,} SIP devices, {args.customers // 5:,} "
              f"IP devices under 11 resellers in {took:.1f} s (bulk insert, not measured)")  # fmt: skip
        with sf() as s:
            top = s.scalars(select(Reseller).where(Reseller.id == top_id)).one()
            reseller_token = create_token(s, kind="reseller", owner_id=top.id, label="bench")
            s.commit()
        as_reseller = {"Authorization": f"Bearer {reseller_token}"}
        cases: list[tuple[str, dict[str, Any]]] = [
            ("first page (100), default order", {}),
            ("name contains 'acme', sorted by name, offset 5,000",
             {"name": "acme", "sort": "name", "offset": 5000}),
            ("company contains 'holdings 42', sorted by -created_at",
             {"company": "holdings 42", "sort": "-created_at"}),
            ("status stopped, sorted by company,name, offset 2,000",
             {"status": "stopped", "sort": "company,name", "offset": 2000}),
            ("login username contains 'user777'", {"web_username": "user777"}),
            ("account id exact", {"account": "C000054321"}),
            ("IP address of an IP device", {"ip": "10.0.212.48"}),
            ("SIP user contains 'sip9999'", {"sip_user": "sip9999"}),
            (f"last page (offset {args.customers - 100:,}), sorted by -name",
             {"sort": "-name", "offset": args.customers - 100}),
        ]  # fmt: skip
        print(f"customer listing over {args.customers:,} customers (reseller token, whole tree in scope), "
              f"limit 100, through the API:")  # fmt: skip
        for label, params in cases:

            def listing(params: dict[str, Any] = params) -> Any:
                r = client.get("/api/v1/customers", params=params, headers=as_reseller)
                assert r.status_code == 200, r.text[:500]
                return r.json()

            seconds, page = timed(listing, args.runs)
            print(f"  {label:<70} {seconds * 1000:8.1f} ms  (total {page['total']:,})")

        def export_csv() -> Any:
            r = client.get("/api/v1/customers", params={"format": "csv", "sort": "name"}, headers=as_reseller)
            assert r.status_code == 200
            return r.content

        seconds, body = timed(export_csv, max(1, args.runs // 2))
        lines = body.count(b"\n") - 1
        print(f"  {'CSV export of every customer, sorted by name':<70} {seconds * 1000:8.1f} ms  "
              f"({lines:,} rows, {len(body) / 1e6:.1f} MB)")  # fmt: skip

        def export_xlsx() -> Any:
            r = client.get("/api/v1/customers", params={"format": "xlsx", "status": "stopped"}, headers=as_reseller)
            assert r.status_code == 200
            return r.content

        seconds, body = timed(export_xlsx, max(1, args.runs // 2))
        label = "XLSX export of the stopped customers (one in twenty)"
        print(f"  {label:<70} {seconds * 1000:8.1f} ms  ({len(body) / 1e6:.1f} MB)")
    finally:
        if sf is not None:
            engine_of(sf).dispose()
        with psycopg.connect(args.dsn + " dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
