"""Engines and sessions: SQLite by default, PostgreSQL through ``postgresql+psycopg://``.

SQLite is the embedded default (``sqlite:///var/trunkline.db``).  Several threads share the file
(the API's worker threads, the snapshot watcher, the binding and CDR writers), so every
connection gets WAL journaling (readers never block the writer), foreign keys ON (SQLite leaves
them off by default) and a busy timeout (a writer waits for the lock instead of failing at once).

The sqlite3 driver's legacy transaction mode is kept on purpose for the runtime engine: it only
emits BEGIN before the first INSERT/UPDATE/DELETE, so a transaction takes the write lock on its
first write and cannot be refused later with SQLITE_BUSY_SNAPSHOT when it upgrades a read.  The
price is that SELECTs before the first write are not isolated; nothing here depends on them
(uniqueness is enforced by constraints, and the snapshot watcher reads its watermark first).
Migrations use a separate engine that does emit BEGIN so that SQLite DDL is transactional.

Timestamps are timezone-aware UTC datetimes in Python.  PostgreSQL stores ``timestamptz``;
SQLite has no such type, so :class:`UtcDateTime` stores UTC and re-attaches the zone on read.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, DateTime, Engine, Numeric, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (naive datetimes are refused)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive datetime is ambiguous (local time? UTC?): refuse rather than guess.
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def is_sqlite(engine_or_dialect: Engine | Dialect) -> bool:
    return engine_or_dialect.name == "sqlite"


def make_engine(url: str, *, echo: bool = False, transactional_sqlite: bool = False) -> Engine:
    """An engine for ``url``.

    ``transactional_sqlite`` makes SQLAlchemy emit BEGIN itself on SQLite so that DDL and reads
    are inside the transaction (used by migrations; see the module docstring for why the
    runtime engine does not).
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        engine = create_engine(parsed, **kwargs)
        _configure_sqlite(engine, transactional=transactional_sqlite)
        return engine
    if parsed.get_backend_name() == "postgresql":
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        engine = create_engine(parsed, **kwargs)
        _configure_postgresql(engine)
        return engine
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}")


def _configure_sqlite(engine: Engine, *, transactional: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # PRAGMAs must run outside a transaction; the legacy driver is in autocommit here.
        previous = dbapi_connection.isolation_level
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()
        dbapi_connection.isolation_level = None if transactional else previous

    if transactional:

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Server-side now() and any text rendering of timestamptz in UTC, whatever the server's zone.
        previous_autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            dbapi_connection.execute("SET TIME ZONE 'UTC'")
        finally:
            dbapi_connection.autocommit = previous_autocommit


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: routers return the objects they just committed without a reload.
    return sessionmaker(bind=engine, expire_on_commit=False)


def session_factory_from_url(url: str, *, echo: bool = False) -> sessionmaker[Session]:
    return make_session_factory(make_engine(url, echo=echo))


def engine_of(session_factory: sessionmaker[Session]) -> Engine:
    bind = session_factory.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError("session factory is not bound to an Engine")
    return bind


MONEY_SCALE = 6
_MICRO = 10**MONEY_SCALE


class Money(TypeDecorator[Decimal]):
    """An exact decimal with 6 places: NUMERIC(18,6) on PostgreSQL, integer micro-units on SQLite.

    SQLite has no decimal type: a NUMERIC column there holds a float, and SUM() adds floats.
    Storing micro-units as a 64-bit integer keeps every value and every SUM exact; the Python side
    always sees :class:`~decimal.Decimal`.  A value with more than 6 decimal places is refused
    rather than rounded (the caller decides where money is rounded, once).
    """

    impl = Numeric(18, MONEY_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(18, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
        if not amount.is_finite():
            raise ValueError("money must be a finite number")
        scaled = amount.scaleb(MONEY_SCALE)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{amount} has more than {MONEY_SCALE} decimal places")
        if dialect.name == "sqlite":
            return int(scaled)
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / _MICRO).quantize(Decimal(1).scaleb(-MONEY_SCALE))
        return Decimal(value).quantize(Decimal(1).scaleb(-MONEY_SCALE))


# The DDL type of a Money column, for migrations (which must not depend on the TypeDecorator).
MONEY_DDL = Numeric(18, MONEY_SCALE).with_variant(BigInteger(), "sqlite")
