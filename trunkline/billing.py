"""The billing sidecar (``trunkline billing``): CDRs from the spool into the ``cdrs`` table.

Delivery is at-least-once into an idempotent store, which makes it exactly once:

1. read up to ``max_batch`` records after the saved position (:class:`cdr.spool.SpoolReader`);
2. insert them in one transaction with ``INSERT .. ON CONFLICT (call_id) DO NOTHING``, so a
   record stored before a crash and read again afterwards is not stored twice;
3. after the commit, save the position (temp file, fsync, rename: :func:`cdr.spool.save_position`);
4. delete, or move to ``archive/``, the segments wholly before the saved position.

A crash between 2 and 3 replays the batch into the idempotent insert; a crash before 2 loses
nothing because the spool still has it.  The spool is polled every ``batch_interval`` (0.2 s),
so a CDR is in the database well within a second of the call ending.

Rating plugs in at :data:`BatchHook`: a function called inside the insert's transaction with
the records that this transaction actually inserted (never those already stored), so whatever
it writes (rated amounts, ledger entries) commits or rolls back with the CDRs themselves, and a
replayed batch is not rated twice.  :func:`records_frame` turns a batch into a polars frame.
:class:`SidecarBiller` is that hook in production (docs/billing.md): it keeps a compiled rating
book of the database (refreshed from the change feed by a thread of its own) and books every
batch with :func:`provisioning.billing.charging.bill_batch`.

Failures: a database that is down or not migrated yet is retried with backoff, keeping the
position; a record the database refuses (a data error) is quarantined into the spool's
``rejected.jsonl`` and the rest of the batch is stored.

:class:`SidecarSupervisor` is how ``trunkline run`` starts this as a child process, restarts it
(with backoff) when it dies, and stops it on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from cdr.schema import CDR_COLUMNS, CdrRecord, polars_schema
from cdr.spool import (
    CONSUMER_LOCK,
    POSITION_FILE,
    DirLock,
    SpoolEntry,
    SpoolPosition,
    SpoolReader,
    encode_record,
    load_position,
    remove_consumed,
    save_position,
)
from provisioning.cdr_writer import insert_ignore_statement
from provisioning.db import engine_of, session_factory_from_url
from provisioning.models import cdrs
from trunkline.config import Settings

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger("trunkline.billing")

BatchHook = Callable[[Session, list[CdrRecord]], None]
"""Called with the session of the transaction that stored a batch and the records it inserted
(never empty).  Raising rolls the batch back; it is retried after a pause.  Rating goes here."""

PrepareHook = Callable[[list[CdrRecord]], None]
"""Called with a batch's records before its transaction starts (slow work that must not hold the
database's locks, e.g. loading a rating book).  Raising keeps the batch for a retry."""

_values_of = operator.attrgetter(*CDR_COLUMNS)
_STAGE = "cdr_stage"  # PostgreSQL: the temporary table a batch is copied into (per connection)


def records_frame(records: Sequence[CdrRecord]) -> pl.DataFrame:
    """A batch as a polars frame with :func:`cdr.schema.polars_schema` (what rating consumes)."""
    import polars as pl

    return pl.DataFrame([_values_of(r) for r in records], schema=polars_schema(), orient="row")


class HookError(RuntimeError):
    """The batch hook failed: the batch is rolled back and retried, never quarantined."""


def _is_data_error(exc: BaseException) -> bool:
    """Does the database refuse these values (quarantine the row), rather than fail to work at
    all (retry later)?  A missing table or a lost connection must never quarantine CDRs."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return True  # a value the driver could not even send (e.g. a lone surrogate)
    if _driver_data_error(exc):
        return True  # raised by the driver itself (the staged COPY on PostgreSQL)
    return isinstance(exc, ValueError | OverflowError | UnicodeError)


def _driver_data_error(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.DataError | psycopg.IntegrityError)


class CdrIngestor:
    """Moves CDRs from a spool directory into the ``cdrs`` table (the sidecar's work, without
    the process around it: tests and benchmarks drive :meth:`step` directly)."""

    def __init__(self, session_factory: sessionmaker[Session], spool_dir: str | Path, *,
                 max_batch: int = 5000, batch_interval: float = 0.2, archive: bool = False,
                 on_batch: BatchHook | None = None, position_path: str | Path | None = None,
                 prepare: PrepareHook | None = None) -> None:
        self.session_factory = session_factory
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.position_path = Path(position_path) if position_path else self.spool_dir / POSITION_FILE
        self.max_batch = max_batch
        self.batch_interval = batch_interval
        self.archive = archive
        self.on_batch = on_batch
        self.prepare = prepare
        self._insert = insert_ignore_statement(engine_of(session_factory))
        self._insert_returning = self._insert.returning(cdrs.c.call_id)
        self._postgresql = engine_of(session_factory).dialect.name == "postgresql"
        self.saved: SpoolPosition | None = load_position(self.position_path)
        self.reader = SpoolReader(self.spool_dir, self.saved)
        # A batch read but not yet committed (kept across a failed attempt, retried as is).
        self._pending: tuple[list[SpoolEntry], SpoolPosition | None] | None = None
        self.committed = 0  # records in committed batches (new, or already stored)
        # New rows and replays (call id already stored), when the driver says: always with a
        # hook (RETURNING), on SQLite without one; psycopg does not report executemany counts.
        self.inserted = 0
        self.duplicates = 0
        self.quarantined = 0  # records the database refused

    def close(self) -> None:
        self.reader.close()

    def step(self) -> int:
        """Read, store and commit one batch, then save the position; the number of records read.

        Raises when the database fails; the batch is kept and the next call retries it."""
        if self._pending is None:
            try:
                entries = list(self.reader.entries(self.max_batch))
            except Exception:
                # The reader moved past records this batch never got: go back to the last
                # saved position so the retry reads them again.
                self.reader.seek(self.saved)
                raise
            self._pending = (entries, self.reader.position)
        entries, position = self._pending
        if entries:
            if self.prepare is not None:
                self.prepare([e.record for e in entries])
            self._store(entries)
        if position is not None and position != self.saved:
            save_position(self.position_path, position)
            self.saved = position
            removed = remove_consumed(self.spool_dir, position, archive=self.archive)
            if removed:
                log.debug("%s consumed spool segment(s) %s", "archived" if self.archive else "deleted",
                          ", ".join(removed))
        self._pending = None
        return len(entries)

    def drain(self, timeout: float = 10.0) -> int:
        """Store everything in the spool now (used on a clean stop); gives up after ``timeout``."""
        total = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                n = self.step()
            except Exception:
                log.exception("storing CDRs failed while stopping; they stay in the spool")
                break
            total += n
            if n < self.max_batch:
                break
        return total

    def run(self, stop: threading.Event, *, should_stop: Callable[[], bool] | None = None) -> None:
        """Loop until ``stop`` is set (or ``should_stop()`` says so), then drain and return."""
        backoff = 0.0
        failing_since: float | None = None
        while not stop.is_set():
            if should_stop is not None and should_stop():
                stop.set()
                break
            try:
                n = self.step()
            except Exception as exc:
                backoff = min(5.0, max(0.5, backoff * 2))
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.exception("storing CDRs failed (%s); retrying in %.1f s, position kept", exc, backoff)
                else:
                    log.error("storing CDRs still failing for %.0f s: %s", time.monotonic() - failing_since, exc)
                stop.wait(backoff)
                continue
            if failing_since is not None:
                log.info("storing CDRs recovered after %.1f s", time.monotonic() - failing_since)
                failing_since, backoff = None, 0.0
            if n < self.max_batch:
                stop.wait(self.batch_interval)
        self.drain()

    # -- storing ---------------------------------------------------------------------------------
    def _store(self, entries: list[SpoolEntry]) -> None:
        rows = [dict(zip(CDR_COLUMNS, _values_of(e.record), strict=True)) for e in entries]
        try:
            with self.session_factory.begin() as session:
                self._insert_rows(session, rows, [e.record for e in entries])
        except HookError:
            raise
        except Exception as exc:
            if not _is_data_error(exc):
                raise
            log.warning("the database refused a batch of %d CDRs (%s); storing them one by one", len(rows), exc)
            self._store_singly(entries, rows)
            return
        self.committed += len(entries)

    def _store_singly(self, entries: list[SpoolEntry], rows: list[dict[str, Any]]) -> None:
        for entry, row in zip(entries, rows, strict=True):
            try:
                with self.session_factory.begin() as session:
                    self._insert_rows(session, [row], [entry.record])
            except HookError:
                raise
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
                self.quarantined += 1
                self.reader.reject(entry.segment, entry.offset, f"refused by the database: {exc}"[:2000],
                                   encode_record(entry.record))
                continue
            self.committed += 1

    def _insert_rows(self, session: Session, rows: list[dict[str, Any]], records: list[CdrRecord]) -> None:
        if self.on_batch is None:
            # Without RETURNING the driver pipelines the rows (psycopg: 3-4x faster than the
            # multi-VALUES statements RETURNING needs); SQLite still reports the inserted count.
            result = session.execute(self._insert, rows)
            n = result.rowcount if isinstance(result, CursorResult) else -1
            if n >= 0:
                self.inserted += n
                self.duplicates += len(rows) - n
            return
        # The hook needs to know exactly which rows are new: RETURNING answers that atomically.
        if self._postgresql:
            inserted = self._insert_staged(session, records)
        else:
            inserted = set(session.execute(self._insert_returning, rows).scalars())
        self.inserted += len(inserted)
        self.duplicates += len(rows) - len(inserted)
        self._hook(session, records, inserted)

    def _insert_staged(self, session: Session, records: list[CdrRecord]) -> set[str]:
        """PostgreSQL: COPY the batch into a temporary table, then one ``INSERT .. SELECT .. ON
        CONFLICT DO NOTHING RETURNING call_id``.  Same effect as the multi-VALUES statements
        RETURNING needs, several times cheaper (no client-side parameter conversion): the rows
        go in spool order, so the first record of a call id is the one stored."""
        columns = ", ".join(CDR_COLUMNS)
        dbapi = session.connection().connection.dbapi_connection
        assert dbapi is not None
        with dbapi.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS "
                f"SELECT 0::bigint AS seq, {columns} FROM cdrs WITH NO DATA"
            )
            with cursor.copy(f"COPY {_STAGE} (seq, {columns}) FROM STDIN") as copy:
                for seq, record in enumerate(records):
                    copy.write_row((seq, *_values_of(record)))
            cursor.execute(
                f"INSERT INTO cdrs ({columns}) SELECT {columns} FROM {_STAGE} ORDER BY seq "
                "ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
            )
            return {row[0] for row in cursor.fetchall()}

    def _hook(self, session: Session, records: list[CdrRecord], inserted: set[str]) -> None:
        if self.on_batch is None or not inserted:
            return
        new: list[CdrRecord] = []
        fresh = set(inserted)
        for record in records:  # the first record of each inserted call id, in spool order
            if record.call_id in fresh:
                fresh.discard(record.call_id)
                new.append(record)
        try:
            self.on_batch(session, new)
        except Exception as exc:
            raise HookError(f"the CDR batch hook failed: {exc!r}") from exc


class SidecarBiller:
    """The sidecar's rating hook: every stored batch is rated, written per level, charged to the
    customers' ledgers and its bundle use recorded, inside the batch's own transaction.

    The compiled rating book is refreshed by a thread every ``refresh_interval`` seconds from the
    change feed (a rebuild never holds up a batch: batches use the previous book meanwhile), and
    at once, before the batch's transaction, when a batch names a customer the book does not
    know yet (one created a moment ago)."""

    def __init__(self, session_factory: sessionmaker[Session], *, refresh_interval: float = 0.5) -> None:
        from provisioning.billing.book import BookCache

        self.cache = BookCache(session_factory)
        self.refresh_interval = refresh_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.calls = 0
        self.rerated = 0

    def start(self) -> SidecarBiller:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rating-book", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.refresh_interval):
            try:
                self.cache.refresh()
            except Exception:
                if not failing:
                    log.exception("refreshing the rating book failed; batches wait for a book")
                failing = True
            else:
                failing = False

    def prepare(self, records: list[CdrRecord]) -> None:
        loaded = self.cache.current
        if loaded is None:
            self.cache.refresh()
            return
        wanted = {r.customer_id for r in records if r.customer_id is not None}
        if not wanted.issubset(loaded.customers.keys()):
            self.cache.refresh()

    def __call__(self, session: Session, records: list[CdrRecord]) -> None:
        from provisioning.billing.charging import bill_batch

        loaded = self.cache.get()
        outcome = bill_batch(session, loaded, records_frame(records), created_by="billing sidecar")
        self.batches += 1
        self.calls += outcome.calls
        self.rerated += outcome.rerated
        unbillable = outcome.statuses.get("unbillable", 0) + outcome.statuses.get("no_rate", 0)
        if unbillable:
            log.warning("billing run %d: %d of %d call(s) could not be charged (no rate, unknown customer or "
                        "invalid; see rated_calls.status and note)", outcome.run_id, unbillable, outcome.calls)
        log.debug("billing run %d: %d call(s) rated (%s), %d stored call(s) re-rated for bundle order",
                  outcome.run_id, outcome.calls, outcome.statuses, outcome.rerated)


def run_billing(settings: Settings, *, stop: threading.Event | None = None, on_batch: BatchHook | None = None,
                parent_pid: int | None = None, rate: bool = True) -> int:
    """The sidecar: take the spool's consumer lock, ingest (and, with ``rate``, rate and charge)
    until ``stop``, drain, return 0.  ``on_batch`` replaces the rating hook.

    With ``parent_pid`` (``trunkline run`` passes its own) the sidecar also stops when that
    process is gone, so a switch killed with SIGKILL does not leave an orphan consumer behind."""
    stop = stop or threading.Event()
    spool = settings.spool_dir
    spool.mkdir(parents=True, exist_ok=True)
    b = settings.billing

    def orphaned() -> bool:
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("the switch (pid %d) is gone; the billing sidecar stops", parent_pid)
            return True
        return False

    lock = DirLock(spool / CONSUMER_LOCK)
    waited = False
    while not lock.acquire():
        if not waited:
            log.warning("another billing sidecar consumes %s (it holds %s); waiting for it to stop", spool,
                        CONSUMER_LOCK)
            waited = True
        if stop.wait(1.0) or orphaned():
            return 0
    session_factory = session_factory_from_url(settings.database_url)
    biller: SidecarBiller | None = None
    prepare: PrepareHook | None = None
    if on_batch is None and rate:
        biller = SidecarBiller(session_factory).start()
        on_batch, prepare = biller, biller.prepare
    ingestor = CdrIngestor(session_factory, spool, max_batch=b.max_batch, batch_interval=b.batch_interval,
                           archive=b.archive, on_batch=on_batch, prepare=prepare)
    log.info("billing sidecar consuming %s from %s (batches every %.2f s, consumed segments %s)", spool,
             ingestor.saved or "the oldest segment", b.batch_interval, "archived" if b.archive else "deleted")
    try:
        ingestor.run(stop, should_stop=orphaned if parent_pid is not None else None)
    finally:
        if biller is not None:
            biller.stop()
        ingestor.close()
        engine_of(session_factory).dispose()
        lock.release()
    log.info("billing sidecar stopped: %d CDR(s) committed (%d new, %d already stored, as far as the database "
             "reports), %d quarantined", ingestor.committed, ingestor.inserted, ingestor.duplicates,
             ingestor.quarantined)
    if biller is not None:
        log.info("billing: %d batch(es) rated, %d call(s), %d stored call(s) re-rated to keep bundle order",
                 biller.batches, biller.calls, biller.rerated)
    return 0


class SidecarSupervisor:
    """Runs the billing sidecar as a child of ``trunkline run``: restarts it when it dies
    (0.5 s doubling to 30 s; back to 0.5 s once a child ran for a minute) and stops it with
    SIGTERM (SIGKILL after ``stop_timeout``)."""

    def __init__(self, argv: list[str], *, min_backoff: float = 0.5, max_backoff: float = 30.0,
                 stable_after: float = 60.0, stop_timeout: float = 15.0) -> None:
        self.argv = argv
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="billing-sidecar")

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.min_backoff
        while not self._stopping:
            started = loop.time()
            try:
                # A session of its own: a Ctrl-C on the terminal reaches only `trunkline run`,
                # which then stops the sidecar in order (instead of both racing to exit).
                proc = await asyncio.create_subprocess_exec(*self.argv, stdin=subprocess.DEVNULL,
                                                            start_new_session=True)
            except OSError as exc:
                log.error("cannot start the billing sidecar: %s; retrying in %.1f s", exc, backoff)
            else:
                self._proc = proc
                log.info("billing sidecar started (pid %d)", proc.pid)
                if self._stopping:
                    self._signal(proc, signal.SIGTERM)
                rc = await proc.wait()
                if self._stopping:
                    return
                how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with status {rc}"
                if loop.time() - started >= self.stable_after:
                    backoff = self.min_backoff
                log.error("billing sidecar (pid %d) %s; restarting it in %.1f s", proc.pid, how, backoff)
                self.restarts += 1
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            backoff = min(backoff * 2, self.max_backoff)

    @staticmethod
    def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._signal(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                log.error("billing sidecar (pid %d) did not stop in %.0f s; killing it", proc.pid,
                          self.stop_timeout)
                self._signal(proc, signal.SIGKILL)
                await proc.wait()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, self.stop_timeout)
