"""Registrations written behind to the database (switch.registrar.location BindingSink/Source).

The registrar calls :meth:`DbBindingStore.saved` and :meth:`DbBindingStore.removed` on the event
loop thread, thousands of times a second under load, so they only append a tuple to a deque
(thread-safe and allocation-light: about a microsecond).  A background thread drains the deque
every ``flush_interval`` (0.1 s), keeps only the last operation per (aor, contact) (a binding
refreshed five times in one interval is written once), and writes the batch in one
transaction: an executemany upsert (INSERT .. ON CONFLICT (aor, contact) DO UPDATE, on SQLite
and PostgreSQL alike) and an executemany delete.

If the database is unavailable the coalesced batch is kept and retried; because it is keyed by
binding it cannot grow beyond the number of distinct bindings.

``conn_id`` (the TCP connection a binding arrived on) is stored but :meth:`load_bindings`
returns it as None: connection ids belong to the process that assigned them, and after a
restart the same number may name a different peer's connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from sqlalchemy import Engine, bindparam, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from provisioning.db import engine_of
from provisioning.models import SipDevice, registrations
from switch.registrar.location import Binding

log = logging.getLogger(__name__)

# The column order of the tuples saved() enqueues.
_COLUMNS = (
    "aor",
    "contact",
    "device_id",
    "expires_at",
    "call_id",
    "cseq",
    "source_ip",
    "source_port",
    "transport",
    "local_port",
    "q",
    "user_agent",
    "conn_id",
    "params",
)
_UPDATE_COLUMNS = _COLUMNS[2:]  # everything but the conflict key
_DEVICE_ID = _COLUMNS.index("device_id")

_DELETE_ONE = delete(registrations).where(
    registrations.c.aor == bindparam("b_aor"), registrations.c.contact == bindparam("b_contact")
)

# Errors that say "not now" rather than "not this row".
_TRANSIENT = (OperationalError, InterfaceError)

_SAVE = 0
_REMOVE = 1
_REMOVE_DEVICE = 2


def upsert_sql(engine: Engine) -> str:
    """The same upsert as driver-level SQL with positional parameters in the driver's style.

    Rows go to the DB-API cursor's executemany as the tuples saved() enqueued: SQLAlchemy's
    per-row parameter processing cost ~20 us a binding and held the GIL the switch needs at
    thousands of REGISTERs a second.  SQLite (3.24+) and PostgreSQL both accept this ON CONFLICT.
    """
    style = engine.dialect.paramstyle
    if style == "qmark":
        mark = "?"
    elif style in ("format", "pyformat"):
        mark = "%s"
    else:
        raise ValueError(f"unsupported paramstyle {style!r}")
    updates = ", ".join(f"{name} = excluded.{name}" for name in _UPDATE_COLUMNS)
    return (f"INSERT INTO registrations ({', '.join(_COLUMNS)}) VALUES ({', '.join([mark] * len(_COLUMNS))}) "
            f"ON CONFLICT (aor, contact) DO UPDATE SET {updates}")


def upsert_statement(engine: Engine) -> Any:
    """INSERT .. ON CONFLICT (aor, contact) DO UPDATE for the engine's dialect."""
    dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(registrations)
    return stmt.on_conflict_do_update(
        index_elements=[registrations.c.aor, registrations.c.contact],
        set_={name: stmt.excluded[name] for name in _UPDATE_COLUMNS},
    )


class DbBindingStore:
    """BindingSink + BindingSource on the ``registrations`` table."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        flush_interval: float = 0.1,
        purge_interval: float = 60.0,
        purge_grace: float = 60.0,
        autostart: bool = True,
    ) -> None:
        self._session_factory = session_factory
        self._engine = engine_of(session_factory)
        self._upsert = upsert_statement(self._engine)
        self._upsert_sql = upsert_sql(self._engine)
        self._flush_interval = flush_interval
        self._purge_interval = purge_interval
        self._purge_grace = purge_grace
        self._ops: deque[tuple[int, Any]] = deque()
        # Coalesced, not yet written: (aor, contact) -> row tuple in _COLUMNS order (save) or None.
        self._pending: dict[tuple[str, str], tuple[Any, ...] | None] = {}
        self._pending_devices: set[int] = set()
        self._flush_lock = threading.Lock()  # the thread's periodic flush vs. flush()/close()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = time.monotonic()
        self._failing = False
        if autostart:
            self.start()

    # BindingSink (event loop thread): enqueue only ----------------------------------------------

    def saved(self, binding: Binding) -> None:
        # A tuple snapshot of the fields, so later in-place changes by the registrar cannot
        # tear the row the flusher writes.
        b = binding
        self._ops.append(
            (
                _SAVE,
                (
                    b.aor,
                    b.contact,
                    b.device_id,
                    b.expires_at,
                    b.call_id,
                    b.cseq,
                    b.source_ip,
                    b.source_port,
                    b.transport,
                    b.local_port,
                    b.q,
                    b.user_agent,
                    b.conn_id,
                    b.params,
                ),
            )
        )

    def removed(self, aor: str, contact: str) -> None:
        self._ops.append((_REMOVE, (aor, contact)))

    def remove_device(self, device_id: int) -> None:
        """Forget every stored binding of a device (e.g. it was deleted or deactivated).

        Ordered with the other operations: a save enqueued earlier for the device is dropped,
        one enqueued later (a new registration) is kept.
        """
        self._ops.append((_REMOVE_DEVICE, device_id))

    # BindingSource -------------------------------------------------------------------------------

    def load_bindings(self, now: float | None = None) -> list[Binding]:
        """Unexpired bindings of devices that still exist, for the registrar at start."""
        now = time.time() if now is None else now
        t = registrations.c
        stmt = (
            select(*(t[name] for name in _COLUMNS))
            .where(t.expires_at > now)
            .where(exists().where(SipDevice.id == t.device_id))
            .order_by(t.aor, t.id)
        )
        with self._session_factory() as session:
            rows = session.execute(stmt).all()
        out: list[Binding] = []
        for row in rows:
            values = dict(zip(_COLUMNS, row, strict=True))
            values["conn_id"] = None  # see the module docstring
            out.append(Binding(**values))
        return out

    # Lifecycle ------------------------------------------------------------------------------------

    def start(self) -> DbBindingStore:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="binding-writer", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and write whatever is queued (raises if the final write fails)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self.flush()

    def __enter__(self) -> DbBindingStore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backlog(self) -> int:
        """Operations queued or coalesced but not yet written (for metrics and tests)."""
        return len(self._ops) + len(self._pending) + len(self._pending_devices)

    def flush(self) -> int:
        """Write everything enqueued so far; returns the number of rows written or deleted."""
        with self._flush_lock:
            self._drain()
            return self._write()

    # Internals ------------------------------------------------------------------------------------

    def _drain(self) -> None:
        pending = self._pending
        ops = self._ops
        while True:
            try:
                kind, payload = ops.popleft()
            except IndexError:
                return
            if kind == _SAVE:
                pending[(payload[0], payload[1])] = payload
            elif kind == _REMOVE:
                pending[payload] = None
            else:
                # Saves of this device so far are superseded by the removal; removals of single
                # contacts stay (harmless) so that no ordering question arises.
                for key in [k for k, row in pending.items() if row is not None and row[_DEVICE_ID] == payload]:
                    del pending[key]
                self._pending_devices.add(payload)

    def _write(self) -> int:
        if not self._pending and not self._pending_devices:
            return 0
        saves = [row for row in self._pending.values() if row is not None]
        removes = [{"b_aor": aor, "b_contact": contact} for (aor, contact), row in self._pending.items() if row is None]
        devices = sorted(self._pending_devices)
        try:
            self._execute(devices=devices, saves=saves, removes=removes)
        except _TRANSIENT:
            raise  # the database is away or busy: keep the batch, the thread retries
        except Exception:
            # A malformed binding must not block every other one forever: retry one by one and
            # drop (loudly) whatever is refused on its own.  Every write is idempotent, so
            # repeating the good ones is harmless.
            log.exception("batch of registrations refused; retrying row by row")
            self._execute_singly(devices=devices, saves=saves, removes=removes)
        # Only forget the batch once it is committed.
        self._pending.clear()
        self._pending_devices.clear()
        return len(saves) + len(removes) + len(devices)

    def _execute(self, *, devices: list[int], saves: list[tuple[Any, ...]], removes: list[dict[str, Any]]) -> None:
        with self._session_factory.begin() as session:
            if devices:
                # Before the upserts: a save that followed remove_device() must survive.
                session.execute(delete(registrations).where(registrations.c.device_id.in_(devices)))
            if saves:
                dbapi = session.connection().connection.dbapi_connection
                assert dbapi is not None
                cursor = dbapi.cursor()
                try:
                    cursor.executemany(self._upsert_sql, saves)
                finally:
                    cursor.close()
            if removes:
                session.execute(_DELETE_ONE, removes)

    def _execute_singly(
        self, *, devices: list[int], saves: list[tuple[Any, ...]], removes: list[dict[str, Any]]
    ) -> None:
        batches: list[dict[str, Any]] = [
            *({"devices": [d], "saves": [], "removes": []} for d in devices),
            *({"devices": [], "saves": [row], "removes": []} for row in saves),
            *({"devices": [], "saves": [], "removes": [row]} for row in removes),
        ]
        for batch in batches:
            try:
                self._execute(**batch)
            except _TRANSIENT:
                raise
            except Exception:
                log.error("dropping a registration write the database refuses: %r", batch)

    def _purge_expired(self) -> None:
        cutoff = time.time() - self._purge_grace
        with self._session_factory.begin() as session:
            session.execute(delete(registrations).where(registrations.c.expires_at < cutoff))

    def _run(self) -> None:
        while not self._stop.wait(self._flush_interval):
            try:
                self.flush()
                now = time.monotonic()
                if now - self._last_purge >= self._purge_interval:
                    self._last_purge = now
                    self._purge_expired()
            except Exception:
                if not self._failing:
                    log.exception("writing registrations failed; keeping %d pending", self.backlog)
                self._failing = True
                self._stop.wait(min(1.0, self._flush_interval * 10))  # back off while the DB is away
            else:
                if self._failing:
                    log.info("writing registrations recovered")
                self._failing = False
