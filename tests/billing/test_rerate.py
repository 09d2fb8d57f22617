"""``trunkline rerate`` (SQLite and PostgreSQL): the difference booked per customer and month,
all or nothing, whole bundle months, one customer, CDRs never rated before, and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

import provisioning.billing.rerate as rerate_module
from cdr.schema import CDR_COLUMNS
from provisioning import repo
from provisioning.billing.book import BookLoader
from provisioning.billing.rerate import rerate
from provisioning.db import engine_of
from provisioning.errors import InvalidValue, NotFound
from provisioning.models import Base, billing_runs, cdrs
from provisioning.scope import PROVIDER
from rating.scalar import ScalarRater
from tests.billing.helpers import SF, Sidecar, balance, check_books_balance, ledger, rated, usage
from tests.billing.world import MIN, T0, World, build_world, call
from trunkline.cli import main as cli

D = Decimal
JAN1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB1 = datetime(2026, 2, 1, tzinfo=UTC)
DAY = 86_400_000


@pytest.fixture
def sidecar(migrated_db: SF, tmp_path: Path) -> Iterator[Sidecar]:
    sc = Sidecar(migrated_db, tmp_path / "spool")
    yield sc
    sc.close()


def _set_rate(sf: SF, tariff_id: int, prefix: str, **changes: Any) -> None:
    with sf.begin() as s:
        rate = next(r for r in s.scalars(repo.tariffs.list_rates(s, scope=PROVIDER, tariff_id=tariff_id).stmt)
                    if r.prefix == prefix)
        repo.tariffs.update_rate(s, scope=PROVIDER, tariff_id=tariff_id, rate_id=rate.id, changes=changes)


def _traffic(w: World) -> list[Any]:
    calls = []
    for day in range(0, 40, 3):  # January and into February
        t = T0 + day * DAY + 3_600_000
        calls.append(call(f"bob-{day}", w.bob, "442079460000", answer=t, duration_ms=90_000, carrier_id=w.carrier))
        calls.append(call(f"usa-{day}", w.bob, "15551234567", answer=t + 1000, duration_ms=30_000))
        calls.append(call(f"alice-{day}", w.alice, "442079460000", answer=t + 2000, duration_ms=150_000))
    return calls


def _dump(sf: SF) -> dict[str, list[tuple[Any, ...]]]:
    with sf() as s:
        return {
            t.name: sorted((tuple(r) for r in s.execute(select(t))), key=repr)
            for t in Base.metadata.sorted_tables
        }


def test_rerate_books_the_difference_per_customer_and_month(migrated_db: SF, sidecar: Sidecar) -> None:
    w = build_world(migrated_db, bundle_minutes=1000)  # alice's calls all inside her bundle
    sidecar.emit(_traffic(w))
    sidecar.drain()
    before = rated(migrated_db)
    bob_before = balance(migrated_db, w.bob)
    # 44 goes from 0.01 to 0.013 a minute for everybody on the wholesale deck (and, marked up,
    # for alice's retail deck, but her January calls are all covered by her bundle)
    _set_rate(migrated_db, w.wholesale, "44", rate=D("0.013"))
    result = rerate(migrated_db, since=JAN1, until=FEB1)
    after = rated(migrated_db)
    january = [k for k in before if before[k]["t_ms"] < T0 + 31 * DAY]
    assert result.in_range == len(january)
    for k in january:
        if k.startswith("call-bob"):
            assert (before[k]["debit"], after[k]["debit"]) == (D("0.0200"), D("0.0260"))  # 2 min
            assert after[k]["run_id"] == result.run_id
        elif k.startswith("call-usa"):
            assert after[k]["debit"] == before[k]["debit"] and after[k]["run_id"] == result.run_id
        else:
            assert after[k]["debit"] == D(0) and after[k]["bundle_seconds"] == 180
    for k in set(before) - set(january):  # February: untouched
        assert after[k] == before[k]
    bob_january = sum(1 for k in january if k.startswith("call-bob"))
    entries = [e for e in ledger(migrated_db) if e.billing_run_id == result.run_id]
    assert [(e.customer_id, e.kind, e.amount) for e in entries] == [(w.bob, "adjustment", -D("0.006") * bob_january)]
    assert entries[0].at < FEB1 and "2026-01" in entries[0].description
    assert balance(migrated_db, w.bob) == bob_before - D("0.006") * bob_january
    assert result.difference_micro == 6000 * bob_january and result.customers == 1
    check_books_balance(migrated_db)
    # nothing changed since: a second run books nothing
    again = rerate(migrated_db, since=JAN1, until=FEB1)
    assert (again.entries, again.difference_micro) == (0, 0)
    with migrated_db() as s:
        run = s.execute(select(billing_runs).where(billing_runs.c.id == again.run_id)).mappings().one()
        assert run["kind"] == "rerate" and run["calls"] == again.calls and run["finished_at"] is not None


@pytest.mark.parametrize("where", ["post_ledger", "write_rated", "rate_cdrs"])
def test_a_failed_rerate_changes_nothing(migrated_db: SF, sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch,
                                         where: str) -> None:
    w = build_world(migrated_db)
    sidecar.emit(_traffic(w))
    sidecar.drain()
    _set_rate(migrated_db, w.wholesale, "44", rate=D("0.02"))
    before = _dump(migrated_db)
    real = getattr(rerate_module, where)

    def fail_after(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise RuntimeError(f"{where} broke")

    monkeypatch.setattr(rerate_module, where, fail_after)
    with pytest.raises(RuntimeError, match="broke"):
        rerate(migrated_db, since=JAN1, until=FEB1)
    assert _dump(migrated_db) == before
    monkeypatch.undo()
    rerate(migrated_db, since=JAN1, until=FEB1)  # and then it works
    assert _dump(migrated_db) != before
    check_books_balance(migrated_db)


def test_bundle_customers_get_whole_months(migrated_db: SF, sidecar: Sidecar) -> None:
    """Cutting alice's bundle from 10 to 4 minutes and re-rating one day of January re-rates all
    of her January (answer-time order over the month) but only that day for bob."""
    w = build_world(migrated_db)
    sidecar.emit(_traffic(w))
    sidecar.drain()
    with migrated_db.begin() as s:
        repo.plans.update_bundle(s, scope=PROVIDER, plan_id=w.plan, bundle_id=w.bundle, changes={"minutes": 4})
    day = datetime(2026, 1, 10, tzinfo=UTC)
    result = rerate(migrated_db, since=day, until=datetime(2026, 1, 11, tzinfo=UTC))
    got = rated(migrated_db)
    alice_jan = sorted(k for k in got if k.startswith("call-alice") and got[k]["t_ms"] < T0 + 31 * DAY)
    assert all(got[k]["run_id"] == result.run_id for k in alice_jan)
    assert result.in_range == 3 and result.calls == 3 + len(alice_jan) - 1  # bob's two that day, alice's month
    with migrated_db() as s:
        loaded = BookLoader().load(s)
    month = [c for c in _traffic(w) if c.call_id in alice_jan]
    expected = {r.call_id: r for r in ScalarRater(loaded.book).rate_calls(
        [{"call_id": c.call_id, "customer_id": c.customer_id, "dialled_number": c.dialled_number,
          "start_ms": c.start_ms, "answer_ms": c.answer_ms, "duration_ms": c.duration_ms, "carrier_id": None}
         for c in month])}
    for k in alice_jan:
        assert got[k]["bundle_seconds"] == expected[k].bundle_seconds
        assert got[k]["debit"] == D(expected[k].debit or 0).scaleb(-2)
    assert usage(migrated_db)[(w.alice, w.bundle, 202601)] == 240
    check_books_balance(migrated_db)


def test_one_customer_only(migrated_db: SF, sidecar: Sidecar) -> None:
    w = build_world(migrated_db)
    sidecar.emit(_traffic(w))
    sidecar.drain()
    _set_rate(migrated_db, w.wholesale, "1", rate=D("0.5"))
    before = rated(migrated_db)
    result = rerate(migrated_db, since=JAN1, until=FEB1, customer_id=w.alice)
    after = rated(migrated_db)
    assert all(after[k] == before[k] for k in before if not k.startswith("call-alice"))
    assert result.entries == 0  # alice does not call the USA
    with pytest.raises(NotFound):
        rerate(migrated_db, since=JAN1, until=FEB1, customer_id=9999)
    with pytest.raises(InvalidValue):
        rerate(migrated_db, since=FEB1, until=JAN1)


def test_cdrs_never_rated_are_rated_and_charged(migrated_db: SF) -> None:
    """CDRs stored before billing existed (or by a sidecar without rating) have no rated row:
    re-rating their period rates and charges them."""
    w = build_world(migrated_db)
    records = [call(i, w.bob, "15551234567", answer=T0 + i * MIN, duration_ms=MIN) for i in range(4)]
    with migrated_db.begin() as s:
        s.execute(insert(cdrs), [{c: getattr(r, c) for c in CDR_COLUMNS} for r in records])
    result = rerate(migrated_db, since=JAN1, until=FEB1)
    assert (result.calls, result.entries, result.difference_micro) == (4, 1, 20_000)
    assert balance(migrated_db, w.bob) == D("-0.02")
    check_books_balance(migrated_db)


def _url(sf: SF) -> str:
    return engine_of(sf).url.render_as_string(hide_password=False)


def test_cli(migrated_db: SF, sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> None:
    w = build_world(migrated_db)
    sidecar.emit(_traffic(w))
    sidecar.drain()
    _set_rate(migrated_db, w.wholesale, "44", rate=D("0.011"))
    monkeypatch.setenv("TRUNKLINE_DATABASE_URL", _url(migrated_db))
    monkeypatch.setenv("TRUNKLINE_VAR_DIR", str(tmp_path / "var"))
    assert cli(["rerate", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01"]) == 2  # no offset
    capsys.readouterr()
    assert cli(["rerate", "--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z",
                "--customer", "9999"]) == 1
    assert "customer 9999 not found; nothing was changed" in capsys.readouterr().err
    assert cli(["rerate", "--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00+00:00"]) == 0
    out, err = capsys.readouterr()
    assert "call(s) re-rated" in out and "difference 0.022000" in out  # 11 of bob's calls, 2 min, +0.001 a minute
    assert "[" not in err  # not a terminal: no bar
    assert cli(["rerate", "--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z", "--progress"]) == 0
    out, err = capsys.readouterr()
    assert "%" in err and "rating" in err and "difference 0.000000" in out
    check_books_balance(migrated_db)


def test_rerate_while_the_sidecar_rates(migrated_db: SF, tmp_path: Path) -> None:
    """Re-rating runs and sidecar batches serialise on the billing lock: whatever the interleaving,
    the ledger holds exactly what the calls cost."""
    import threading

    w = build_world(migrated_db, bundle_minutes=30)
    sc = Sidecar(migrated_db, tmp_path / "spool", max_batch=50)
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while not stop.is_set():
                if sc.ingestor.step() == 0:
                    stop.wait(0.01)
            sc.drain()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        n = 0
        for price in ("0.011", "0.012", "0.013"):
            batch = [
                call(f"x{n + i}", (w.alice, w.bob)[i % 2], "442079460000",
                     answer=T0 + ((n + i) * 7919 % 600) * 60_000, duration_ms=60_000 + (i % 5) * 30_000)
                for i in range(300)
            ]
            n += len(batch)
            sc.emit(batch)
            _set_rate(migrated_db, w.wholesale, "44", rate=D(price))
            rerate(migrated_db, since=JAN1, until=FEB1)
    finally:
        stop.set()
        thread.join(60)
        sc.close()
    assert not errors
    assert len(rated(migrated_db)) == n
    check_books_balance(migrated_db)
    final = rerate(migrated_db, since=JAN1, until=FEB1)
    again = rerate(migrated_db, since=JAN1, until=FEB1)
    assert (again.entries, again.difference_micro) == (0, 0) and final.calls == again.calls == n
    check_books_balance(migrated_db)
