"""CDRs into the ``cdrs`` table (cdr.sink.CdrSink), batched on a background thread.

``emit()`` runs on the event loop and only appends to a deque.  Every ``flush_interval`` (0.2 s)
the thread inserts what has accumulated with one executemany in one transaction, with
``ON CONFLICT (call_id) DO NOTHING`` so that a record written twice (a retry after an
ambiguous failure, or a replay) is stored once.

Not durable across a crash: records still queued when the process dies are lost.  A later issue
puts an fsync'd spool in front of the database; this writer stays the simple in-process path.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cdr.schema import CDR_COLUMNS, CdrRecord
from provisioning.db import engine_of
from provisioning.models import cdrs

log = logging.getLogger(__name__)

_TRANSIENT = (OperationalError, InterfaceError)


def insert_ignore_statement(engine: Engine) -> Any:
    """INSERT .. ON CONFLICT (call_id) DO NOTHING for the engine's dialect."""
    dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    return dialect_insert(cdrs).on_conflict_do_nothing(index_elements=[cdrs.c.call_id])


class DbCdrWriter:
    """Batches CDRs into the database; idempotent by call id."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        flush_interval: float = 0.2,
        max_batch: int = 5000,
        autostart: bool = True,
    ) -> None:
        self._session_factory = session_factory
        self._insert = insert_ignore_statement(engine_of(session_factory))
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._queue: deque[CdrRecord] = deque()
        self._retry: list[dict[str, Any]] = []  # a batch that failed transiently, written first
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        if autostart:
            self.start()

    def emit(self, record: CdrRecord) -> None:
        self._queue.append(record)  # the record is frozen: no copy needed

    @property
    def backlog(self) -> int:
        return len(self._queue) + len(self._retry)

    def start(self) -> DbCdrWriter:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cdr-writer", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and write everything still queued (raises if that write fails)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self.flush()

    def __enter__(self) -> DbCdrWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> int:
        """Write everything queued so far; returns the number of records handed to the database."""
        written = 0
        with self._flush_lock:
            while True:
                batch = self._retry or self._take()
                if not batch:
                    return written
                self._retry = batch
                self._write(batch)
                self._retry = []
                written += len(batch)

    def _take(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        queue = self._queue
        while len(batch) < self._max_batch:
            try:
                record = queue.popleft()
            except IndexError:
                break
            batch.append({name: getattr(record, name) for name in CDR_COLUMNS})
        return batch

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            with self._session_factory.begin() as session:
                session.execute(self._insert, batch)
        except _TRANSIENT:
            raise  # kept in self._retry; the thread tries again
        except Exception:
            # One bad record must not hold back every other CDR: insert singly, drop the refused.
            log.exception("a batch of %d CDRs was refused; retrying one by one", len(batch))
            for row in batch:
                try:
                    with self._session_factory.begin() as session:
                        session.execute(self._insert, [row])
                except _TRANSIENT:
                    raise
                except Exception:
                    log.error("dropping a CDR the database refuses: %r", row)

    def _run(self) -> None:
        while not self._stop.wait(self._flush_interval):
            try:
                self.flush()
            except Exception:
                if not self._failing:
                    log.exception("writing CDRs failed; %d waiting", self.backlog)
                self._failing = True
                self._stop.wait(1.0)
            else:
                if self._failing:
                    log.info("writing CDRs recovered")
                self._failing = False
