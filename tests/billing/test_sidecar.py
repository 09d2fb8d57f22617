"""The billing sidecar's rating hook (SQLite and PostgreSQL): amounts per level, statuses, the
ledger, exactly-once across replays and restarts, bundles in answer-time order across batches,
and a rating book that follows provisioning changes."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdr.spool import POSITION_FILE
from provisioning import repo
from provisioning.billing.book import BookLoader
from provisioning.models import billing_runs, cdrs, rated_calls
from provisioning.scope import PROVIDER
from rating.scalar import ScalarRater
from tests.billing.helpers import SF, Sidecar, balance, check_books_balance, ledger, levels, rated, usage
from tests.billing.world import MIN, T0, build_world, call

D = Decimal


@pytest.fixture
def sidecar(migrated_db: SF, tmp_path: Path) -> Sidecar:
    sc = Sidecar(migrated_db, tmp_path / "spool")
    yield sc  # type: ignore[misc]
    sc.close()


def test_amounts_per_level_statuses_and_the_ledger(migrated_db: SF, sidecar: Sidecar) -> None:
    w = build_world(migrated_db)
    sidecar.emit([
        call("usa", w.bob, "+1 555 123 4567", carrier_id=w.carrier, duration_ms=61_500),
        call("fr", w.alice, "33123456", carrier_id=w.carrier, duration_ms=61_500),
        call("grace", w.alice, "33123456", duration_ms=5_000),
        call("busy", w.bob, "33123456", answer=None),
        call("nowhere", w.bob, "999123", duration_ms=61_500),
        call("ext", w.alice, "1002", call_type="extension", direction="internal"),
        call("did", w.alice, "442079460000", call_type="did", direction="inbound"),
        call("ghost", 424242, "33123456"),
        call("anon", None, "33123456"),
        call("badcarrier", w.bob, "15551234567", carrier_id=777, duration_ms=1_000),
        call("demo", w.demo, "33123456", duration_ms=61_500),
        call("negative", w.bob, "33123456", duration_ms=-5),
    ])
    assert sidecar.drain() == 12
    got = rated(migrated_db)
    lv = levels(migrated_db)
    # bob: wholesale, 4 decimals.  USA 0.005/min per second: 62 s -> 0.0051666 -> 0.0052.
    # Carrier: 0.002/min per minute: 120 s -> 0.0040.
    usa = got["call-usa"]
    assert (usa["status"], usa["prefix"], usa["destination"], usa["billed_seconds"]) == ("rated", "1", "USA", 62)
    assert (usa["debit"], usa["carrier_cost"], usa["charged"]) == (D("0.0052"), D("0.0040"), True)
    assert lv["call-usa"] == {0: (w.bob, D("0.0052"))}
    # alice: retail = wholesale x 1.1 x 1.2 x 1.4; France 0.02 -> 0.03696/min, 2 decimals;
    # 62 s in 60 s blocks = 120 s -> 0.07392 -> 0.07.  sub (3 decimals) 0.0264 x 2 = 0.053,
    # top (4 decimals) 0.022 x 2 = 0.0440.  The carrier has no row for 33: no cost.
    fr = got["call-fr"]
    assert (fr["billed_seconds"], fr["debit"], fr["carrier_cost"]) == (120, D("0.07"), None)
    assert lv["call-fr"] == {0: (w.alice, D("0.07")), 1: (w.sub, D("0.053")), 2: (w.top, D("0.0440"))}
    assert (got["call-grace"]["billed_seconds"], got["call-grace"]["debit"]) == (0, D(0))
    assert (got["call-busy"]["status"], got["call-busy"]["debit"]) == ("unanswered", D(0))
    assert (got["call-nowhere"]["status"], got["call-nowhere"]["debit"]) == ("no_rate", None)
    assert lv["call-nowhere"] == {0: (w.bob, None)}
    ext = got["call-ext"]
    assert (ext["status"], ext["debit"], ext["charged"]) == ("internal", D(0), False)
    assert (got["call-did"]["status"], got["call-did"]["debit"]) == ("inbound", D(0))
    assert "call-ext" not in lv and "call-did" not in lv
    assert (got["call-ghost"]["status"], got["call-ghost"]["note"]) == ("unbillable", "unknown customer 424242")
    assert (got["call-anon"]["status"], got["call-anon"]["note"]) == ("unbillable", "no customer")
    assert got["call-negative"]["status"] == "unbillable" and "duration" in got["call-negative"]["note"]
    bad = got["call-badcarrier"]
    assert (bad["status"], bad["carrier_id"], bad["carrier_cost"]) == ("rated", None, None)
    assert bad["note"] == "unknown carrier 777: no carrier cost"
    demo = got["call-demo"]
    assert (demo["status"], demo["debit"], demo["charged"]) == ("rated", D("0.0400"), False)
    # One charge per customer and month: bob 0.0052 + 0.0001 (1 s of USA); alice 0.07; demo nothing.
    entries = ledger(migrated_db)
    assert {(e.customer_id, e.kind, e.amount) for e in entries} == {
        (w.bob, "charge", D("-0.005300")),
        (w.alice, "charge", D("-0.070000")),
    }
    (run,) = {e.billing_run_id for e in entries}
    assert all(e.reference == f"billing-run:{run}" for e in entries)
    assert all(e.at == e.at.replace(year=2026, month=1, day=1) for e in entries)  # dated at the calls
    assert balance(migrated_db, w.demo) == 0
    check_books_balance(migrated_db)


def test_rates_exactly_once_across_replays_and_restarts(migrated_db: SF, sidecar: Sidecar, tmp_path: Path) -> None:
    w = build_world(migrated_db)
    first = [call(i, w.bob, "15551234567", answer=T0 + i * 1000, duration_ms=60_000) for i in range(30)]
    sidecar.emit(first)
    assert sidecar.drain() == 30
    before = balance(migrated_db, w.bob)
    assert before == D("-0.150000")  # 30 x 0.005
    # A crash after the commit, before the position was saved: the batch is read again.
    (tmp_path / "spool" / POSITION_FILE).unlink()
    sidecar.start()
    sidecar.emit([call(100 + i, w.bob, "15551234567", duration_ms=120_000) for i in range(5)])
    assert sidecar.drain() == 35
    assert balance(migrated_db, w.bob) == before - D("0.05")
    assert len(rated(migrated_db)) == 35
    # A restart replays nothing more; the same call id spooled again is ignored too.
    sidecar.start()
    sidecar.emit([call(0, w.bob, "15551234567", duration_ms=999_000)])
    sidecar.drain()
    assert balance(migrated_db, w.bob) == before - D("0.05")
    with migrated_db() as s:
        assert s.scalar(select(func.count()).select_from(cdrs)) == 35
        assert s.scalar(select(func.count()).select_from(rated_calls)) == 35
        assert s.scalar(select(func.count()).select_from(billing_runs)) == 2
    check_books_balance(migrated_db)


def test_calls_sharing_one_sip_call_id_are_each_stored_rated_and_charged(
        migrated_db: SF, sidecar: Sidecar, tmp_path: Path) -> None:
    """The caller chooses its SIP Call-ID: calls that reuse one (a fraudster, two colliding
    devices, a retry after a failed INVITE) are distinct attempts with distinct keys, each stored,
    rated and charged; a replay of the spooled batch still stores and charges each once."""
    w = build_world(migrated_db)
    same = "reused-by-every-call@192.0.2.66"
    attempts = [call(f"attempt-{i}", w.bob, "15551234567", answer=T0 + i * MIN, duration_ms=60_000,
                     sip_call_id=same) for i in range(3)]
    sidecar.emit(attempts)
    assert sidecar.drain() == 3
    with migrated_db() as s:
        rows = s.execute(select(cdrs.c.call_id, cdrs.c.sip_call_id).order_by(cdrs.c.call_id)).all()
        assert [tuple(r) for r in rows] == [(f"call-attempt-{i}", same) for i in range(3)]
        listing = repo.cdrs.list_cdrs(s, scope=PROVIDER, sip_call_id=same)
        assert listing.page(s, limit=10, offset=0).total == 3
    got = rated(migrated_db)
    assert sorted(got) == [f"call-attempt-{i}" for i in range(3)]
    assert all((r["status"], r["debit"], r["charged"]) == ("rated", D("0.0050"), True) for r in got.values())
    assert balance(migrated_db, w.bob) == D("-0.015000")  # 3 x 0.005, not 1 x
    # A crash after the commit, before the position was saved: the same spool entries again.
    (tmp_path / "spool" / POSITION_FILE).unlink()
    sidecar.start()
    assert sidecar.drain() == 3
    assert balance(migrated_db, w.bob) == D("-0.015000")
    with migrated_db() as s:
        assert s.scalar(select(func.count()).select_from(cdrs)) == 3
        assert s.scalar(select(func.count()).select_from(rated_calls)) == 3
        assert s.scalar(select(func.count()).select_from(billing_runs)) == 1
    check_books_balance(migrated_db)


def test_a_failing_batch_leaves_nothing_and_is_retried(migrated_db: SF, sidecar: Sidecar,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    w = build_world(migrated_db)
    sidecar.emit([call(i, w.bob, "15551234567") for i in range(3)])
    import provisioning.billing.charging as charging

    real = charging.post_ledger

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("ledger down")

    monkeypatch.setattr(charging, "post_ledger", broken)
    with pytest.raises(Exception, match="ledger down"):
        sidecar.ingestor.step()
    with migrated_db() as s:
        assert s.scalar(select(func.count()).select_from(cdrs)) == 0  # the CDRs rolled back with it
        assert s.scalar(select(func.count()).select_from(rated_calls)) == 0
    monkeypatch.setattr(charging, "post_ledger", real)
    assert sidecar.drain() == 3
    assert balance(migrated_db, w.bob) == D("-0.015000")
    check_books_balance(migrated_db)


def _expected_bundle(migrated_db: SF, calls_: list) -> dict[str, tuple[int | None, int | None]]:  # type: ignore[type-arg]
    """(bundle seconds, debit in minor units) per call from the scalar rater over all the calls
    at once: the spec's answer-time order."""
    with migrated_db() as s:
        loaded = BookLoader().load(s)
    rows = [
        {"call_id": c.call_id, "customer_id": c.customer_id, "dialled_number": c.dialled_number,
         "start_ms": c.start_ms, "answer_ms": c.answer_ms, "duration_ms": c.duration_ms, "carrier_id": None}
        for c in calls_
    ]
    return {r.call_id: (r.bundle_seconds, r.debit) for r in ScalarRater(loaded.book).rate_calls(rows)}


def test_bundle_consumption_in_answer_time_order_across_batches(migrated_db: SF, sidecar: Sidecar) -> None:
    """alice has 10 bundle minutes for 44.  Calls end (and reach the sidecar) in another order
    than they were answered: a long call answered early arrives after later, shorter ones, once
    the allowance has run out among them.  The stored calls are re-rated so that the bundle is
    consumed in answer-time order, exactly as the scalar rater does over all calls at once."""
    w = build_world(migrated_db)
    a = call("a", w.alice, "442079460001", answer=T0, duration_ms=4 * MIN)  # 240 s
    c = call("c", w.alice, "442079460003", answer=T0 + 5 * MIN, duration_ms=3 * MIN)  # 180 s
    d = call("d", w.alice, "442079460004", answer=T0 + 6 * MIN, duration_ms=2 * MIN)  # 120 s
    b = call("b", w.alice, "442079460002", answer=T0 + 1 * MIN, duration_ms=5 * MIN)  # 300 s, ends last
    e = call("e", w.alice, "442079460005", answer=T0 + 20 * MIN, duration_ms=1 * MIN)
    sidecar.emit([a, c, d])
    sidecar.drain()
    assert [rated(migrated_db)[k]["bundle_seconds"] for k in ("call-a", "call-c", "call-d")] == [240, 180, 120]
    sidecar.emit([b])
    sidecar.drain()
    sidecar.emit([e])
    sidecar.drain()
    got = rated(migrated_db)
    # answer order a (240), b (300), c (60 of 180), d (0 of 120), e (0)
    assert [got[f"call-{k}"]["bundle_seconds"] for k in "abcde"] == [240, 300, 60, 0, 0]
    expected = _expected_bundle(migrated_db, [a, b, c, d, e])
    for k in "abcde":
        seconds, debit = expected[f"call-{k}"]
        assert got[f"call-{k}"]["bundle_seconds"] == seconds
        assert got[f"call-{k}"]["debit"] == Decimal(debit or 0).scaleb(-2)
    assert sidecar.biller.rerated == 2  # c and d were stored already and moved
    assert usage(migrated_db) == {(w.alice, w.bundle, 202601): 600}
    # the ledger holds what the calls cost now: c 120 s + d 120 s + e 60 s at 0.01848/min
    assert balance(migrated_db, w.alice) == -(D("0.04") + D("0.04") + D("0.02"))
    check_books_balance(migrated_db)


def test_bundles_are_per_local_calendar_month(migrated_db: SF, sidecar: Sidecar) -> None:
    """alice is in Europe/London: 2026-06-30T23:30Z is already July there (BST)."""
    w = build_world(migrated_db, bundle_minutes=1)
    june = 1_782_861_000_000  # 2026-06-30T23:30:00Z
    sidecar.emit([
        call("june", w.alice, "4420", answer=june - 3_600_000, duration_ms=MIN),
        call("july", w.alice, "4420", answer=june, duration_ms=MIN),
    ])
    sidecar.drain()
    got = rated(migrated_db)
    assert (got["call-june"]["bundle_month"], got["call-july"]["bundle_month"]) == (202606, 202607)
    assert got["call-june"]["bundle_seconds"] == got["call-july"]["bundle_seconds"] == 60
    entries = ledger(migrated_db, w.alice)
    assert entries == []  # both fully covered


def test_the_book_follows_provisioning(migrated_db: SF, sidecar: Sidecar) -> None:
    w = build_world(migrated_db)
    sidecar.emit([call(1, w.bob, "15551234567")])
    sidecar.drain()
    assert rated(migrated_db)["call-1"]["debit"] == D("0.0050")
    with migrated_db.begin() as s:  # a new customer and a new price
        carol = repo.create_customer(s, scope=PROVIDER, name="carol", tariff_id=w.wholesale)
        rate = next(r for r in s.scalars(repo.tariffs.list_rates(s, scope=PROVIDER, tariff_id=w.wholesale).stmt)
                    if r.prefix == "1")
        repo.tariffs.update_rate(s, scope=PROVIDER, tariff_id=w.wholesale, rate_id=rate.id,
                                 changes={"rate": D("0.006")})
        carol_id = carol.id
    sidecar.emit([call(2, carol_id, "15551234567")])  # an unknown customer: the book reloads first
    sidecar.drain()
    got = rated(migrated_db)
    assert (got["call-2"]["status"], got["call-2"]["debit"]) == ("rated", D("0.0060"))
    version = got["call-2"]["book_version"]
    assert version > got["call-1"]["book_version"]
    # a change that does not concern rating reuses the compiled book
    compiled = sidecar.biller.cache.get().compiled
    with migrated_db.begin() as s:
        repo.update_customer(s, scope=PROVIDER, customer_id=carol_id, changes={"company": "Carol Ltd"})
    assert sidecar.biller.cache.refresh().compiled is compiled
    with migrated_db.begin() as s:  # a bundle edit does not
        repo.plans.update_bundle(s, scope=PROVIDER, plan_id=w.plan, bundle_id=w.bundle, changes={"minutes": 20})
    refreshed = sidecar.biller.cache.refresh()
    assert refreshed.compiled is not compiled
    assert next(iter(refreshed.bundles.values())).seconds == 1200
