"""Migrations: from an empty database to head, idempotent, and in step with the models."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cdr.schema import CDR_COLUMNS
from provisioning.db import make_engine, make_session_factory
from provisioning.migrate import current_revision, upgrade
from provisioning.models import Base, Customer, LedgerEntry, Reseller, SipDevice

TABLES = {
    "resellers",
    "customers",
    "sip_devices",
    "ip_devices",
    "registrations",
    "cdrs",
    "api_tokens",
    "changes",
    "tariffs",
    "rates",
    "service_plans",
    "call_bundles",
    "customer_bundles",
    "admin_users",
    "customer_status_events",
    "customer_suspensions",
    "ledger_entries",
    "carriers",
    "routes",
    "route_carriers",
    "translation_rules",
    "dids",
    "audit_log",
    "login_history",
    "billing_runs",
    "rated_calls",
    "rated_levels",
    "bundle_usage",
}
HEAD = "0004"


def test_upgrade_from_empty_creates_every_table_and_matches_the_models(db_url: str) -> None:
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    upgrade(db_url)  # a second run is a no-op
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            assert names >= TABLES
            cdr_columns = [c["name"] for c in inspect(conn).get_columns("cdrs")]
            # 0004 appends sip_call_id (PostgreSQL cannot insert a column in the middle); the
            # code always names the columns, so only the set matters.
            assert sorted(cdr_columns) == sorted(["id", *CDR_COLUMNS])
            indexes = {ix["name"]: ix for ix in inspect(conn).get_indexes("cdrs")}
            assert indexes["ix_cdrs_sip_call_id"]["column_names"] == ["sip_call_id"]
            assert not indexes["ix_cdrs_sip_call_id"]["unique"]
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


def test_upgrade_from_0001_keeps_the_data_and_fills_the_defaults(db_url: str) -> None:
    upgrade(db_url, "0001")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO resellers (id, parent_id, name, status, path, created_at, updated_at) "
                "VALUES (1, NULL, 'R', 'active', '/1/', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
            conn.exec_driver_sql(
                "INSERT INTO customers (id, reseller_id, name, domain, status, max_sessions, cps, max_call_seconds,"
                " created_at, updated_at) VALUES (7, 1, 'Old', 'old.example', 'stopped', 3, 2, 60,"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
            conn.exec_driver_sql(
                "INSERT INTO sip_devices (customer_id, username, realm, ha1_md5, ha1_sha256, status, max_sessions,"
                " cps, allowed_ips, created_at, updated_at) VALUES (7, 'old', 'old.example', 'm', 's', 'active',"
                " 0, 0, '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        upgrade(db_url)
        assert current_revision(db_url) == HEAD
        sf = make_session_factory(engine)
        with sf() as s:
            customer = s.get(Customer, 7)
            assert customer is not None
            assert (customer.name, customer.status, customer.domain, customer.max_sessions) == (
                "Old", "stopped", "old.example", 3
            )
            assert customer.account_code == "C000000007"
            assert (customer.customer_type, customer.billing_type, customer.payment_term_days) == (
                "LIVE", "postpaid", 30
            )
            assert customer.credit_limit == Decimal(0) and customer.codecs == ["PCMA", "PCMU"]
            assert customer.call_with_media is True and customer.timezone == "UTC"
            device = s.scalars(select(SipDevice)).one()
            assert (device.username, device.voicemail_enabled) == ("old", False)
            reseller = s.get(Reseller, 1)
            assert reseller is not None and reseller.permissions == [] and reseller.currency == "GBP"
        # The CHECK constraints of 0001 survive SQLite's table rebuilds.
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql("UPDATE customers SET status = 'sleeping' WHERE id = 7")
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql("UPDATE customers SET payment_term_days = 31 WHERE id = 7")
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
            assert diff == []
    finally:
        engine.dispose()


def test_money_is_exact_on_both_backends(migrated_db: sessionmaker[Session]) -> None:
    from provisioning import repo
    from provisioning.scope import PROVIDER

    with migrated_db() as s:
        cid = repo.create_customer(s, scope=PROVIDER, name="Money").id
        for amount in ("0.1", "0.2", "1234567.123456", "-0.000001"):
            repo.ledger.add_entry(s, scope=PROVIDER, customer_id=cid, kind="adjustment", amount=Decimal(amount))
        s.commit()
    with migrated_db() as s:
        assert repo.ledger.balance(s, scope=PROVIDER, customer_id=cid) == Decimal("1234567.423455")


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    from provisioning.migrate import make_config

    engine = make_engine(url, transactional_sqlite=True)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            cfg = make_config()
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, revision)
            connection.commit()
    finally:
        engine.dispose()


def test_upgrade_from_0002_keeps_the_ledger_and_cdrs(db_url: str) -> None:
    """0003 adds the billing tables and ``ledger_entries.billing_run_id`` (SQLite: batch mode):
    existing entries and CDRs stay, the ledger's CHECK survives, and downgrading works."""
    upgrade(db_url, "0002")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO customers (id, name, status, max_sessions, cps, max_call_seconds, customer_type,"
                " billing_type, payment_term_days, credit_limit, billing_decimals, tax_type, tax_rate, codecs,"
                " call_with_media, company, address, city, province, timezone, currency, created_at, updated_at)"
                " VALUES (7, 'Old', 'active', 0, 0, 0, 'LIVE', 'postpaid', 30, 0, 4, 'NONE', 0, '[]', true, '', '',"
                " '', '', 'UTC', 'GBP', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
            conn.exec_driver_sql(
                "INSERT INTO ledger_entries (customer_id, kind, amount, at, description, reference, created_at,"
                " created_by) VALUES (7, 'payment', 12500000, CURRENT_TIMESTAMP, 'old', 'r1', CURRENT_TIMESTAMP, 'x')"
                if engine.dialect.name == "sqlite" else
                "INSERT INTO ledger_entries (customer_id, kind, amount, at, description, reference, created_at,"
                " created_by) VALUES (7, 'payment', 12.5, CURRENT_TIMESTAMP, 'old', 'r1', CURRENT_TIMESTAMP, 'x')"
            )
            conn.exec_driver_sql(
                "INSERT INTO cdrs (call_id, customer_id, caller_number, dialled_number, start_ms, end_ms,"
                " duration_ms, sip_code, q850_cause, disposition, direction, call_type, source_ip, hangup_by,"
                " reseller_path, did, codecs) VALUES ('old-call', 7, '1', '442079460000', 1, 2, 1, 200, 16,"
                " 'ANSWERED', 'outbound', 'outbound', '192.0.2.1', 'caller', '', '', '')"
            )
        upgrade(db_url)
        assert current_revision(db_url) == HEAD
        sf = make_session_factory(engine)
        with sf() as s:
            entry = s.scalars(select(LedgerEntry)).one()
            assert (entry.customer_id, entry.amount, entry.billing_run_id) == (7, Decimal("12.5"), None)
            assert s.execute(text("SELECT call_id FROM cdrs")).scalar_one() == "old-call"
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql("UPDATE ledger_entries SET kind = 'gift'")
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the new foreign key holds
            conn.exec_driver_sql("UPDATE ledger_entries SET billing_run_id = 99")
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
            assert diff == []
        downgrade(db_url, "0002")
        assert current_revision(db_url) == "0002"
        with engine.connect() as conn:
            assert "rated_calls" not in inspect(conn).get_table_names()
            assert conn.exec_driver_sql("SELECT count(*) FROM ledger_entries").scalar_one() == 1
    finally:
        engine.dispose()


def test_upgrade_from_0003_backfills_sip_call_id_and_keeps_rated_calls(db_url: str) -> None:
    """0004 adds ``cdrs.sip_call_id`` (SQLite: batch mode, the table is rebuilt): existing CDRs
    get their old key (the caller's Call-ID) as ``sip_call_id``, keep ``call_id``, and their
    ``rated_calls`` rows survive the rebuild; ``call_id`` stays unique, ``sip_call_id`` may repeat."""
    upgrade(db_url, "0003")
    engine = make_engine(db_url)
    columns = ("customer_id, caller_number, dialled_number, start_ms, end_ms, duration_ms, sip_code, q850_cause,"
               " disposition, direction, call_type, source_ip, hangup_by, reseller_path, did, codecs")
    values = "NULL, '1', '442079460000', 1, 2, 1, 200, 16, 'ANSWERED', 'outbound', 'outbound', '192.0.2.1', " \
             "'caller', '', '', ''"
    try:
        with engine.begin() as conn:
            for call_id in ("old-a@192.0.2.1", "old-b@192.0.2.1"):
                conn.exec_driver_sql(f"INSERT INTO cdrs (call_id, {columns}) VALUES ('{call_id}', {values})")
            conn.exec_driver_sql(
                "INSERT INTO billing_runs (id, kind, started_at, book_version, calls, created_by)"
                " VALUES (1, 'batch', CURRENT_TIMESTAMP, 0, 2, 'test')"
            )
            for call_id in ("old-a@192.0.2.1", "old-b@192.0.2.1"):
                conn.exec_driver_sql(
                    "INSERT INTO rated_calls (call_id, t_ms, status, note, charged, run_id, book_version, rated_at)"
                    f" VALUES ('{call_id}', 1, 'unbillable', '', false, 1, 0, CURRENT_TIMESTAMP)"
                )
        upgrade(db_url)
        assert current_revision(db_url) == HEAD
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT call_id, sip_call_id FROM cdrs ORDER BY call_id").all()
            assert [tuple(r) for r in rows] == [("old-a@192.0.2.1", "old-a@192.0.2.1"),
                                                ("old-b@192.0.2.1", "old-b@192.0.2.1")]
            assert conn.exec_driver_sql("SELECT count(*) FROM rated_calls").scalar_one() == 2
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
            assert diff == []
        with engine.begin() as conn:  # the caller's Call-ID may repeat under new attempt ids
            for call_id in ("01J0000000000000000000000A", "01J0000000000000000000000B"):
                conn.exec_driver_sql(
                    f"INSERT INTO cdrs (call_id, sip_call_id, {columns}) VALUES ('{call_id}', 'same@x', {values})"
                )
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the attempt id may not
            conn.exec_driver_sql(f"INSERT INTO cdrs (call_id, sip_call_id, {columns})"
                                 f" VALUES ('01J0000000000000000000000A', 'y', {values})")
        with pytest.raises(IntegrityError), engine.begin() as conn:  # and sip_call_id is required
            conn.exec_driver_sql(f"INSERT INTO cdrs (call_id, {columns})"
                                 f" VALUES ('01J0000000000000000000000C', {values})")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM cdrs WHERE sip_call_id = 'same@x'").scalar_one() == 2
        downgrade(db_url, "0003")
        assert current_revision(db_url) == "0003"
        with engine.connect() as conn:
            assert "sip_call_id" not in [c["name"] for c in inspect(conn).get_columns("cdrs")]
            assert conn.exec_driver_sql("SELECT count(*) FROM cdrs").scalar_one() == 4
            assert conn.exec_driver_sql("SELECT count(*) FROM rated_calls").scalar_one() == 2
    finally:
        engine.dispose()
