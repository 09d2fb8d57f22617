"""End to end: the real ``trunkline billing`` process (the sidecar ``trunkline run`` starts) fed
by a ``SpoolWriter`` (the switch's side of the spool), on SQLite and PostgreSQL.

The switch cannot route calls to carriers yet, so instead of SIPp calls the test writes the CDRs
such calls would leave (outbound, a customer, a dialled number, answer time and duration) at a
steady rate, and checks that each is rated and charged within a second of being written; then
it SIGKILLs the sidecar in the middle of a stream, restarts it, and checks that every call is
rated and charged exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdr.spool import SpoolWriter
from provisioning.db import engine_of
from provisioning.models import billing_runs, cdrs, rated_calls
from tests.billing.helpers import SF, balance, check_books_balance
from tests.billing.world import T0, World, build_world, call
from tests.waiting import wait_for

RATE = 250  # CDRs per second written
SECONDS = 3


def _env(sf: SF, var: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "TRUNKLINE_DATABASE_URL": engine_of(sf).url.render_as_string(hide_password=False),
        "TRUNKLINE_VAR_DIR": str(var),
        "TRUNKLINE_LOG_LEVEL": "INFO",
    })
    return env


class SidecarProcess:
    def __init__(self, sf: SF, var: Path) -> None:
        self.env = _env(sf, var)
        self.log = var / "sidecar.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "trunkline", "billing"], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def world(migrated_db: SF) -> World:
    return build_world(migrated_db)


@pytest.fixture
def sidecar(migrated_db: SF, tmp_path: Path) -> Iterator[SidecarProcess]:
    process = SidecarProcess(migrated_db, tmp_path)
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


def _rated_count(sf: SF) -> int:
    with sf() as s:
        return int(s.scalar(select(func.count()).select_from(rated_calls)) or 0)


def _wait_rated(sf: SF, n: int, timeout: float = 30.0) -> None:
    wait_for(lambda: _rated_count(sf) >= n, timeout, 0.05)
    assert _rated_count(sf) == n


def _calls(w: World, first: int, n: int) -> list:  # type: ignore[type-arg]
    customers = [w.alice, w.bob]
    return [
        call(i, customers[i % 2], "15551234567" if i % 3 else "442079460000", answer=T0 + i * 1000,
             duration_ms=30_000 + (i % 7) * 10_000, carrier_id=w.carrier)
        for i in range(first, first + n)
    ]


@pytest.mark.timeout(120)
def test_cdrs_are_rated_and_charged_within_a_second(migrated_db: SF, world: World, sidecar: SidecarProcess,
                                                    tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path / "spool")
    try:
        sidecar.start()
        spool.emit(_calls(world, 0, 1)[0])  # the first batch also waits for the process to start
        _wait_rated(migrated_db, 1)
        records = _calls(world, 1, RATE * SECONDS)
        emitted: dict[str, float] = {}
        t0 = time.perf_counter()
        for i, record in enumerate(records):
            pause = t0 + i / RATE - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            spool.emit(record)
            emitted[record.call_id] = time.time()
        _wait_rated(migrated_db, len(records) + 1)
        assert sidecar.stop() == 0
    finally:
        spool.close()
    with migrated_db() as s:
        done = dict(
            s.execute(
                select(rated_calls.c.call_id, billing_runs.c.finished_at)
                .join(billing_runs, billing_runs.c.id == rated_calls.c.run_id)
                .where(rated_calls.c.call_id.in_(list(emitted)))
            ).all()
        )
        statuses = set(s.scalars(select(rated_calls.c.status).distinct()))
    delays = sorted(done[k].timestamp() - emitted[k] for k in emitted)
    # each CDR is in the books (rated, levels, ledger) when its batch commits: within a second
    assert delays[-1] < 1.0, (delays[len(delays) // 2], delays[int(len(delays) * 0.99)], delays[-1])
    assert statuses == {"rated"}
    assert balance(migrated_db, world.bob) < 0 and balance(migrated_db, world.alice) < 0
    check_books_balance(migrated_db)


@pytest.mark.timeout(180)
def test_sigkill_and_restart_rate_and_charge_exactly_once(migrated_db: SF, world: World, sidecar: SidecarProcess,
                                                         tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path / "spool")
    total = 0
    try:
        sidecar.start()
        for round_ in range(3):
            for record in _calls(world, total, 400):
                spool.emit(record)
            total += 400
            time.sleep(0.15 + 0.1 * round_)  # somewhere in the middle of a batch, or between two
            sidecar.kill()
            sidecar.start()
        _wait_rated(migrated_db, total)
        assert sidecar.stop() == 0
    finally:
        spool.close()
    with migrated_db() as s:
        assert s.scalar(select(func.count()).select_from(cdrs)) == total
    check_books_balance(migrated_db)
    # what the books say is what the calls cost: each call once
    with migrated_db() as s:
        debits = s.scalar(select(func.sum(rated_calls.c.debit)).where(rated_calls.c.charged.is_(True)))
    assert balance(migrated_db, world.alice) + balance(migrated_db, world.bob) == -Decimal(debits)
