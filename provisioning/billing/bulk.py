"""Bulk rows between polars frames and the database, inside the caller's transaction.

PostgreSQL: ``COPY ... FROM STDIN`` / ``COPY (query) TO STDOUT`` in CSV, written and parsed by
polars (one round trip, no Python object per value).  SQLite: ``executemany`` / ``fetchall`` on
the driver's cursor.  Money columns travel as integer micro-units in the frames: SQLite stores
exactly that (:class:`provisioning.db.Money`), PostgreSQL gets ``<micro>e-6`` (NUMERIC reads
it exactly).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session


def _dbapi(session: Session) -> Any:
    dbapi = session.connection().connection.dbapi_connection
    assert dbapi is not None
    return dbapi


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def write_frame(session: Session, table: str, frame: pl.DataFrame, *, money: Sequence[str] = ()) -> None:
    """Insert every row of ``frame`` (its columns named as the table's) into ``table``."""
    if frame.height == 0:
        return
    columns = ", ".join(frame.columns)
    if dialect(session) == "postgresql":
        booleans = [c for c, t in frame.schema.items() if t == pl.Boolean]
        out = frame.with_columns(
            *[(pl.col(c).cast(pl.String) + "e-6").alias(c) for c in money],
            *[pl.when(pl.col(c)).then(pl.lit("t")).when(~pl.col(c)).then(pl.lit("f")).alias(c) for c in booleans],
        )
        data = out.write_csv(include_header=False, null_value="").encode("utf-8")
        with _dbapi(session).cursor() as cursor, cursor.copy(
            f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)"
        ) as copy:
            for start in range(0, len(data), 1 << 20):
                copy.write(data[start : start + (1 << 20)])
        return
    cursor = _dbapi(session).cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * frame.width)})", frame.iter_rows()
        )
    finally:
        cursor.close()


def read_frame(
    session: Session, query: str, params: Mapping[str, Any], schema: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    """The rows of a SELECT whose columns are ``schema``'s, in order.  ``query`` uses ``:name``
    parameters; money columns must be selected as integer micro-units by the query itself."""
    if dialect(session) == "postgresql":
        # COPY cannot take bind parameters: render them as literals first (integers and text
        # only, through the driver's own quoting).
        dbapi = _dbapi(session)
        from psycopg import sql

        rendered = sql.SQL(_psycopg_style(query)).format(**{k: sql.Literal(v) for k, v in params.items()})
        buffer = io.BytesIO()
        with dbapi.cursor() as cursor, cursor.copy(
            sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(rendered)
        ) as copy:
            for block in copy:
                buffer.write(block)
        if buffer.tell() == 0:
            return pl.DataFrame(schema=dict(schema))
        buffer.seek(0)
        # Every column as text first: quoted "" is an empty string, an empty field is NULL.
        raw = pl.read_csv(buffer, has_header=False, new_columns=list(schema), infer_schema=False)
        return raw.select(
            [
                (pl.col(name).is_in(["t", "true", "1"]) if dtype == pl.Boolean else pl.col(name).cast(dtype))
                .alias(name)
                for name, dtype in schema.items()
            ]
        )
    rows = session.execute(text(query), dict(params)).all()
    loose = {name: (pl.Int64() if dtype == pl.Boolean else dtype) for name, dtype in schema.items()}
    return pl.DataFrame([tuple(r) for r in rows], schema=loose, orient="row").cast(dict(schema))  # type: ignore[arg-type]


def _psycopg_style(query: str) -> str:
    """``:name`` parameters as psycopg.sql placeholders ``{name}`` (braces in the query escaped)."""
    import re

    escaped = query.replace("{", "{{").replace("}", "}}")
    return re.sub(r"(?<![:\w]):([a-z_][a-z0-9_]*)", r"{\1}", escaped)


def money_sql(session: Session, column: str) -> str:
    if dialect(session) == "postgresql":
        return f"CAST({column} * 1000000 AS BIGINT)"
    return column


def ids_table(session: Session, name: str, ids: pl.Series) -> None:
    """A temporary table ``name(call_id)`` holding ``ids`` (dropped at commit on PostgreSQL;
    SQLite's is dropped by :func:`drop_ids_table`)."""
    if dialect(session) == "postgresql":
        session.execute(text(f"CREATE TEMP TABLE {name} (call_id text PRIMARY KEY) ON COMMIT DROP"))
    else:
        session.execute(text(f"CREATE TEMP TABLE {name} (call_id text PRIMARY KEY)"))
    write_frame(session, name, pl.DataFrame({"call_id": ids}).unique())


def drop_ids_table(session: Session, name: str) -> None:
    if dialect(session) != "postgresql":
        session.execute(text(f"DROP TABLE IF EXISTS temp.{name}"))
