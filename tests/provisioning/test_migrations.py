"""Migrations: from an empty database to head, idempotent, and in step with the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cdr.schema import CDR_COLUMNS
from provisioning.db import make_engine
from provisioning.migrate import current_revision, upgrade
from provisioning.models import Base

TABLES = {
    "resellers",
    "customers",
    "sip_devices",
    "ip_devices",
    "registrations",
    "cdrs",
    "api_tokens",
    "changes",
}


def test_upgrade_from_empty_creates_every_table_and_matches_the_models(db_url: str) -> None:
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == "0001"
    upgrade(db_url)  # a second run is a no-op
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            assert names >= TABLES
            cdr_columns = [c["name"] for c in inspect(conn).get_columns("cdrs")]
            assert cdr_columns == ["id", *CDR_COLUMNS]
            # Autogenerate finds nothing to do: the migration and the models agree exactly.
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
            assert diff == []
    finally:
        engine.dispose()


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 1000
    finally:
        engine.dispose()
