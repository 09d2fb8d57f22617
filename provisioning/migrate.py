"""Run the provisioning migrations from code: no alembic.ini needed on disk.

``upgrade(url)`` is what ``trunkline run`` (and ``make run``) calls before starting.  Developers
adding a migration can use ``python -m provisioning.migrate --url URL revision -m "what"
--autogenerate`` and then review the generated file by hand.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from provisioning.db import make_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant: concurrent nodes starting against one PostgreSQL take turns migrating.
_PG_MIGRATION_LOCK = 0x7472756E6B  # "trunk"


def make_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates '%', which URL-encoded passwords contain.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision`` (``alembic upgrade head``)."""
    engine = make_engine(url, transactional_sqlite=True)
    try:
        _upgrade(engine, revision)
    finally:
        engine.dispose()


def _upgrade(engine: Engine, revision: str) -> None:
    cfg = make_config()
    with engine.connect() as connection:
        dialect = connection.dialect.name
        if dialect == "sqlite":
            # Batch migrations drop and recreate tables, which foreign keys would forbid; the
            # PRAGMA only works outside a transaction, so it goes to the driver directly.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        elif dialect == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_MIGRATION_LOCK})")
            connection.commit()
        try:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
            connection.commit()
            if dialect == "sqlite":
                problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                connection.commit()
                if problems:
                    raise RuntimeError(f"migration left foreign key violations: {problems[:10]}")
        finally:
            if dialect == "sqlite":
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
            elif dialect == "postgresql":
                connection.rollback()
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_MIGRATION_LOCK})")
                connection.commit()
    log.info("database migrated to %s", revision)


def current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m provisioning.migrate")
    parser.add_argument("--url", required=True, help="database URL, e.g. sqlite:///var/trunkline.db")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("upgrade")
    up.add_argument("revision", nargs="?", default="head")
    rev = sub.add_parser("revision")
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--autogenerate", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.cmd == "upgrade":
        upgrade(args.url, args.revision)
    else:
        command.revision(make_config(args.url), message=args.message, autogenerate=args.autogenerate)


if __name__ == "__main__":
    main()
