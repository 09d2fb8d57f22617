"""Database fixtures: every database test runs on SQLite and on a real PostgreSQL.

* ``db_backend``: "sqlite" or "postgresql" (the parametrisation; PostgreSQL cases carry the
  ``postgres`` marker, so ``-m "not postgres"`` runs the SQLite half alone).
* ``db_url``: the URL of an empty database for one test (migrations start from here).
* ``migrated_db``: a session factory on a migrated, empty database for one test.

PostgreSQL: if a server answers on 127.0.0.1:5432 (user postgres, trust authentication; the
port can be changed with TRUNKLINE_TEST_PG_PORT), the session creates one uniquely named
database there and drops it at the end.  Otherwise it starts a throwaway cluster (initdb +
pg_ctl from /usr/lib/postgresql/*/bin, in a temporary directory, on a free loopback port, as
the ``postgres`` user when running as root) and stops it at the end.  Within the session each
``db_url`` gets its own schema (search_path in the URL), and ``migrated_db`` shares one migrated
schema whose tables are emptied before each test: a migration per test would be too slow.
SQLite: ``db_url`` is a fresh file; ``migrated_db`` copies a database migrated once per session.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from provisioning.db import engine_of, make_engine, make_session_factory
from provisioning.migrate import upgrade

PG_HOST = "127.0.0.1"
PG_PORT_ENV = "TRUNKLINE_TEST_PG_PORT"
PG_USER = "postgres"


def _answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _accepts_us(port: int) -> bool:
    """The server answers *and* lets the postgres user in without a password (trust).  Debian's
    packaged cluster asks for a password on 127.0.0.1: then the throwaway cluster is used."""
    try:
        with psycopg.connect(f"host={PG_HOST} port={port} user={PG_USER} dbname=postgres", connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((PG_HOST, 0))
        return int(sock.getsockname()[1])


def _pg_bindir() -> Path | None:
    candidates = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates = [p for p in candidates if (p / "initdb").exists() and (p / "pg_ctl").exists()]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in path.parent.name.split(".") if x.isdigit())

    return max(candidates, key=version) if candidates else None


class _Cluster:
    """A throwaway PostgreSQL cluster in a temporary directory."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            pytest.skip("no PostgreSQL server on 127.0.0.1 and no initdb/pg_ctl to start one")
        self.bindir = bindir
        # Not under pytest's tmp dir: that one is 0700 root-owned and the postgres user must
        # be able to reach the data directory.
        self.root = Path(tempfile.mkdtemp(prefix="trunkline-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self._run(
            str(bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            PG_USER,
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={PG_HOST} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )

    def _run(self, *argv: str) -> None:
        result = subprocess.run([*self.prefix, *argv], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}{tail}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The base URL (no database) of a PostgreSQL server for this test session."""
    port = int(os.environ.get(PG_PORT_ENV, "5432"))
    if _answers(PG_HOST, port) and _accepts_us(port):
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{port}"
        return
    cluster = _Cluster()
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{cluster.port}"
    finally:
        cluster.stop()


def _admin_conninfo(base_url: str, dbname: str = "postgres") -> str:
    url = make_url(base_url)
    return f"host={url.host} port={url.port} user={url.username} dbname={dbname}"


@pytest.fixture(scope="session")
def pg_database(pg_server: str) -> Iterator[str]:
    """A database of our own on the server for the whole session, dropped at the end."""
    name = f"trunkline_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(_admin_conninfo(pg_server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_server}/{name}"
    finally:
        with psycopg.connect(_admin_conninfo(pg_server), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_search_path(url: str, schema: str) -> str:
    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@contextlib.contextmanager
def _pg_schema(database_url: str, schema: str) -> Iterator[str]:
    conninfo = _admin_conninfo(database_url, make_url(database_url).database or "postgres")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _with_search_path(database_url, schema)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for this test."""
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    database = request.getfixturevalue("pg_database")
    with _pg_schema(database, f"t_{secrets.token_hex(6)}") as url:
        yield url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        # Fold the WAL into the main file so that copying the one file copies everything.
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_migrated_url(request: pytest.FixtureRequest) -> Iterator[str]:
    database = request.getfixturevalue("pg_database")
    with _pg_schema(database, "migrated") as url:
        upgrade(url)
        yield url


def _empty_all_tables(session_factory: sessionmaker[Session]) -> None:
    """Delete every row and restart every sequence in the current schema.

    DELETE rather than TRUNCATE: TRUNCATE gives each table new files (and fsyncs them), which
    costs a quarter of a second per test on a stock server; deleting a test's few rows costs
    milliseconds.  Foreign keys are not enforced meanwhile (replication role), so the order
    does not matter.
    """
    with session_factory.begin() as session:
        session.execute(text("SET LOCAL lock_timeout = '10s'"))
        session.execute(text("SET LOCAL session_replication_role = replica"))
        tables = session.scalars(
            text(
                "SELECT quote_ident(tablename) FROM pg_tables "
                "WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )
        ).all()
        for table in tables:
            session.execute(text(f"DELETE FROM {table}"))
        sequences = session.scalars(
            text(
                "SELECT quote_ident(sequencename) FROM pg_sequences "
                "WHERE schemaname = current_schema() AND last_value IS NOT NULL"
            )
        ).all()
        for sequence in sequences:
            session.execute(text("SELECT setval(:s, 1, false)"), {"s": sequence})


@pytest.fixture
def migrated_db(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A session factory on a migrated database with no rows, private to this test."""
    if db_backend == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "trunkline.db"
        shutil.copyfile(template, path)
        factory = make_session_factory(make_engine(f"sqlite:///{path}"))
    else:
        url = request.getfixturevalue("_pg_migrated_url")
        factory = make_session_factory(make_engine(url))
        _empty_all_tables(factory)
    try:
        yield factory
    finally:
        engine_of(factory).dispose()
