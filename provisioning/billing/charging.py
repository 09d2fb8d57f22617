"""Rating CDRs from the database's book and booking the result, in the caller's transaction.

:func:`rate_cdrs` turns a CDR frame (:mod:`cdr.schema` columns) into rows of ``rated_calls`` and
``rated_levels`` (money as integer micro-units); :func:`bill_batch` is what the billing
sidecar runs for every stored micro-batch: rate, keep bundle consumption in answer-time order
across batches, write the rows, move the bundle usage and charge the customers' ledgers.  The
re-rating (:mod:`provisioning.billing.rerate`) uses the same pieces.

What is rated with a tariff (docs/billing.md "Which calls are charged"): calls of type
``outbound`` of a known customer.  Extension-to-extension calls are ``internal`` (free), calls
to a DID are ``inbound`` (free), and a call that cannot be rated (no or unknown customer, an
impossible CDR) is ``unbillable`` with a note; every stored CDR gets exactly one rated row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import polars as pl
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from cdr.schema import CALL_TYPE_DID, CALL_TYPE_EXTENSION, CALL_TYPE_OUTBOUND, polars_schema
from provisioning.billing.book import RESELLER_ID_OFFSET, LoadedBook, engine_bundle_id
from provisioning.billing.bulk import dialect, write_frame
from provisioning.db import utcnow
from provisioning.models import billing_runs, bundle_usage, cdrs, ledger_entries, rated_calls, rated_levels
from rating.book import MAX_DURATION_MS
from rating.engine import T_MAX, RatingInputError, levels_frame, month_starts, rate_frame

log = logging.getLogger(__name__)

# Serialises the sidecar's batches and re-rating runs on PostgreSQL (pg_advisory_xact_lock).
BILLING_LOCK = 0x62696C6C696E67  # "billing"

RATED_SCHEMA: dict[str, pl.DataType] = {
    "call_id": pl.String(),
    "customer_id": pl.Int64(),
    "t_ms": pl.Int64(),
    "status": pl.String(),
    "note": pl.String(),
    "prefix": pl.String(),
    "destination": pl.String(),
    "billed_seconds": pl.Int64(),
    "bundle_seconds": pl.Int64(),
    "bundle_id": pl.Int64(),
    "bundle_month": pl.Int64(),
    "debit": pl.Int64(),  # micro-units
    "charged": pl.Boolean(),
    "carrier_id": pl.Int64(),
    "carrier_cost": pl.Int64(),  # micro-units
    "engine_bundle": pl.Int64(),  # not stored: the engine's bundle id
}
LEVEL_SCHEMA: dict[str, pl.DataType] = {
    "call_id": pl.String(),
    "level": pl.Int64(),
    "account_id": pl.Int64(),
    "amount": pl.Int64(),  # micro-units
}
STORED_RATED = [c for c in RATED_SCHEMA if c != "engine_bundle"]
_SCALE = {d: 10 ** (6 - d) for d in range(7)}
_MONEY_RATED = ("debit", "carrier_cost")


def take_lock(session: Session) -> None:
    """Serialise billing writers (the sidecar's batches, re-rating) on PostgreSQL; on SQLite the
    first write of the transaction takes the database's single write lock anyway."""
    if dialect(session) == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": BILLING_LOCK})


# -- rating ------------------------------------------------------------------------------------------


def _classify(cdrs_frame: pl.DataFrame, loaded: LoadedBook) -> pl.DataFrame:
    """The CDRs with ``_i`` (input order), ``t_ms``, and ``_status``/``note`` set for the calls
    that are not rated with a tariff (null ``_status``: rate it)."""
    known = list(loaded.customers)
    carriers = sorted(loaded.carriers)
    customer = pl.col("customer_id")
    start, answer, duration = pl.col("start_ms"), pl.col("answer_ms"), pl.col("duration_ms")
    invalid = (
        pl.when((duration < 0) | (duration > MAX_DURATION_MS))
        .then(pl.lit("invalid CDR: duration out of range"))
        .when((start < 0) | (start >= T_MAX))
        .then(pl.lit("invalid CDR: start out of range"))
        .when(answer.is_not_null() & ((answer < start) | (answer >= T_MAX)))
        .then(pl.lit("invalid CDR: answer time"))
        .when(pl.col("call_id").is_null())
        .then(pl.lit("invalid CDR: no call id"))
    )
    call_type = pl.col("call_type")
    frame = cdrs_frame.select(
        "call_id",
        "customer_id",
        "dialled_number",
        "start_ms",
        "answer_ms",
        "duration_ms",
        "carrier_id",
        "call_type",
    ).with_row_index("_i")
    return frame.with_columns(
        pl.coalesce(answer, start).alias("t_ms"),
        pl.when(call_type == CALL_TYPE_EXTENSION)
        .then(pl.lit("internal"))
        .when(call_type == CALL_TYPE_DID)
        .then(pl.lit("inbound"))
        .when((call_type != CALL_TYPE_OUTBOUND) | customer.is_null() | ~customer.is_in(known) | invalid.is_not_null())
        .then(pl.lit("unbillable"))
        .alias("_status"),
        pl.when((call_type == CALL_TYPE_EXTENSION) | (call_type == CALL_TYPE_DID))
        .then(pl.lit(""))
        .when(call_type != CALL_TYPE_OUTBOUND)
        .then(pl.lit("call type ") + call_type + pl.lit(" is not rated"))
        .when(customer.is_null())
        .then(pl.lit("no customer"))
        .when(~customer.is_in(known))
        .then(pl.lit("unknown customer ") + customer.cast(pl.String))
        .when(invalid.is_not_null())
        .then(invalid)
        .when(pl.col("carrier_id").is_not_null() & ~pl.col("carrier_id").is_in(carriers))
        .then(pl.lit("unknown carrier ") + pl.col("carrier_id").cast(pl.String) + pl.lit(": no carrier cost"))
        .otherwise(pl.lit(""))
        .alias("note"),
        # a carrier rating does not know (deleted since) rates without a carrier cost
        pl.when(pl.col("carrier_id").is_in(carriers)).then(pl.col("carrier_id")).alias("carrier_id"),
    )


def _scaled(value: str, decimals: str) -> pl.Expr:
    return pl.col(value) * pl.col(decimals).cast(pl.Int64).replace_strict(_SCALE, return_dtype=pl.Int64)


def _engine(
    ratable: pl.DataFrame,
    loaded: LoadedBook,
    usage: pl.DataFrame | None,
    threads: int | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    out = rate_frame(ratable, loaded.compiled, bundle_usage=usage, threads=threads, progress=progress)
    live = [c.id for c in loaded.customers.values() if c.live]
    rated = pl.DataFrame(
        {
            "_i": ratable.get_column("_i"),
            "call_id": out.get_column("call_id"),
            "customer_id": ratable.get_column("customer_id"),
            "t_ms": ratable.get_column("t_ms"),
            "status": out.get_column("status").cast(pl.String),
            "note": ratable.get_column("note"),
            "prefix": out.get_column("prefix").cast(pl.String),
            "destination": out.get_column("destination_name").cast(pl.String),
            "billed_seconds": out.get_column("billed_seconds"),
            "bundle_seconds": out.get_column("bundle_seconds"),
            "engine_bundle": out.get_column("bundle_id"),
            "bundle_month": out.get_column("bundle_month"),
            "debit": out.get_column("debit"),
            "debit_decimals": out.get_column("debit_decimals"),
            "carrier_id": ratable.get_column("carrier_id"),
            "carrier_cost": out.get_column("carrier_cost"),
        }
    ).with_columns(
        _scaled("debit", "debit_decimals").alias("debit"),
        (pl.col("carrier_cost") * 100).alias("carrier_cost"),
        (pl.col("engine_bundle") // (1 << 32)).alias("bundle_id"),
        (pl.col("debit").is_not_null() & pl.col("customer_id").is_in(live)).alias("charged"),
    )
    levels = levels_frame(out).select(
        "call_id",
        pl.col("level").cast(pl.Int64),
        pl.when(pl.col("level") > 0)
        .then(pl.col("account_id") - RESELLER_ID_OFFSET)
        .otherwise(pl.col("account_id"))
        .alias("account_id"),
        _scaled("amount", "decimals").alias("amount"),
    )
    return rated, levels


def rate_cdrs(
    cdrs_frame: pl.DataFrame,
    loaded: LoadedBook,
    *,
    usage: pl.DataFrame | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rated rows (:data:`RATED_SCHEMA`, in input order) and level rows (:data:`LEVEL_SCHEMA`).

    ``usage``: ``bundle_id`` (the engine's), ``bundle_month``, ``used_seconds`` already used
    before these calls."""
    frame = _classify(cdrs_frame, loaded)
    refused: dict[str, str] = {}
    while True:
        if refused:
            ids = list(refused)
            frame = frame.with_columns(
                pl.when(pl.col("call_id").is_in(ids)).then(pl.lit("unbillable")).otherwise(pl.col("_status"))
                .alias("_status"),
                pl.when(pl.col("call_id").is_in(ids))
                .then(pl.col("call_id").replace_strict(refused, default=""))
                .otherwise(pl.col("note"))
                .alias("note"),
            )
        ratable = frame.filter(pl.col("_status").is_null())
        try:
            rated, levels = _engine(ratable, loaded, usage, threads, progress)
        except RatingInputError as exc:  # the checks above should leave nothing for it
            listed = {cid: f"refused by rating: {what}"[:200] for what, ids in exc.problems for cid in ids}
            if not listed or set(listed) <= set(refused):
                raise
            refused.update(listed)
            continue
        break
    others = frame.filter(pl.col("_status").is_not_null())
    free = others.get_column("_status") != "unbillable"
    rest = pl.DataFrame(
        {
            "_i": others.get_column("_i"),
            "call_id": others.get_column("call_id"),
            "customer_id": others.get_column("customer_id"),
            "t_ms": others.get_column("t_ms"),
            "status": others.get_column("_status"),
            "note": others.get_column("note"),
            "_free": free,
        }
    ).with_columns(pl.when(pl.col("_free")).then(pl.lit(0, dtype=pl.Int64)).alias("debit")).drop("_free")
    columns = ["_i", *RATED_SCHEMA]
    rated_all = (
        pl.concat([rated.select([c for c in columns if c in rated.columns]), rest], how="diagonal_relaxed")
        .with_columns(pl.col("charged").fill_null(False))
        .sort("_i")
        .select(columns)
        .cast(RATED_SCHEMA)  # type: ignore[arg-type]
        .drop("_i")
    )
    return rated_all, levels.cast(LEVEL_SCHEMA)  # type: ignore[arg-type]


# -- months, bundle usage ----------------------------------------------------------------------------


def local_months(t_ms: pl.Series, zones: pl.Series) -> pl.Series:
    """yyyymm of each instant in its time zone (computed like the engine's bundle months)."""
    t = t_ms.to_numpy().astype(np.int64)
    z = zones.to_numpy()
    out = np.zeros(len(t), dtype=np.int64)
    for zone in np.unique(z).tolist():
        sel = np.flatnonzero(z == zone)
        starts, labels = month_starts(str(zone), int(t[sel].min()), int(t[sel].max()))
        out[sel] = labels[np.searchsorted(starts, t[sel], side="right") - 1]
    return pl.Series(t_ms.name, out, dtype=pl.Int64)


def _utc_month(ms: int) -> int:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.year * 100 + moment.month


def load_usage(session: Session, loaded: LoadedBook, customers: Iterable[int], t_lo: int, t_hi: int) -> pl.DataFrame:
    """Stored bundle usage of these customers' bundles for the months around [t_lo, t_hi], keyed
    by the engine's bundle ids (the shape :func:`rating.engine.rate_frame` takes)."""
    wanted = sorted(set(customers) & loaded.bundle_customers)
    schema = {"bundle_id": pl.Int64, "bundle_month": pl.Int64, "used_seconds": pl.Int64}
    if not wanted:
        return pl.DataFrame(schema=schema)
    day = 86_400_000
    lo, hi = _utc_month(max(t_lo - day, 0)), _utc_month(t_hi + day)
    rows = session.execute(
        select(bundle_usage.c.customer_id, bundle_usage.c.bundle_id, bundle_usage.c.month, bundle_usage.c.used_seconds)
        .where(bundle_usage.c.customer_id.in_(wanted), bundle_usage.c.month >= lo, bundle_usage.c.month <= hi)
    ).all()
    data = [
        (engine_bundle_id(c, b), m, used) for c, b, m, used in rows if engine_bundle_id(c, b) in loaded.bundles
    ]
    return pl.DataFrame(data, schema=schema, orient="row")


def add_usage(session: Session, deltas: pl.DataFrame) -> None:
    """Add ``used_seconds`` (may be negative) per (customer_id, bundle_id, month)."""
    deltas = deltas.filter(pl.col("used_seconds") != 0)
    if deltas.height == 0:
        return
    rows = deltas.select("customer_id", "bundle_id", "month", "used_seconds").to_dicts()
    if dialect(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    stmt = upsert(bundle_usage)
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer_id", "bundle_id", "month"],
        set_={"used_seconds": bundle_usage.c.used_seconds + stmt.excluded.used_seconds},
    )
    session.execute(stmt, rows)


def usage_of(rated: pl.DataFrame, *, sign: int = 1) -> pl.DataFrame:
    """Seconds used per (customer_id, bundle_id, month) by rated rows."""
    return (
        rated.filter(pl.col("bundle_id").is_not_null() & (pl.col("bundle_seconds") > 0))
        .group_by("customer_id", "bundle_id", pl.col("bundle_month").alias("month"))
        .agg((pl.col("bundle_seconds").sum() * sign).alias("used_seconds"))
    )


# -- writing -----------------------------------------------------------------------------------------


def timestamp_text(session: Session, moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    if dialect(session) == "postgresql":
        return moment.isoformat()
    return moment.replace(tzinfo=None).isoformat(sep=" ")


def new_run(session: Session, *, kind: str, book_version: int, created_by: str, **extra: object) -> int:
    now = utcnow()
    run_id = session.execute(
        insert(billing_runs).returning(billing_runs.c.id),
        {
            "kind": kind,
            "started_at": now,
            "book_version": book_version,
            "calls": 0,
            "created_by": created_by,
            **extra,
        },
    ).scalar_one()
    return int(run_id)


def finish_run(session: Session, run_id: int, *, calls: int, summary: Mapping[str, object] | None = None) -> None:
    session.execute(
        update(billing_runs)
        .where(billing_runs.c.id == run_id)
        .values(finished_at=utcnow(), calls=calls, summary=dict(summary) if summary is not None else None)
    )


def write_rated(
    session: Session, rated: pl.DataFrame, levels: pl.DataFrame, *, run_id: int, book_version: int
) -> None:
    stamp = timestamp_text(session, utcnow())
    calls = rated.select(STORED_RATED).with_columns(
        pl.lit(run_id, dtype=pl.Int64).alias("run_id"),
        pl.lit(book_version, dtype=pl.Int64).alias("book_version"),
        pl.lit(stamp).alias("rated_at"),
    )
    write_frame(session, rated_calls.name, calls, money=_MONEY_RATED)
    write_frame(session, rated_levels.name, levels.select(list(LEVEL_SCHEMA)), money=("amount",))


def delete_rated(session: Session, call_ids: list[str]) -> None:
    for start in range(0, len(call_ids), 5000):
        part = call_ids[start : start + 5000]
        session.execute(rated_levels.delete().where(rated_levels.c.call_id.in_(part)))
        session.execute(rated_calls.delete().where(rated_calls.c.call_id.in_(part)))


# -- the ledger ---------------------------------------------------------------------------------------


def post_ledger(
    session: Session,
    loaded: LoadedBook,
    deltas: pl.DataFrame,
    *,
    run_id: int,
    kind: str | None,
    what: str,
    created_by: str,
) -> pl.DataFrame:
    """Ledger entries for ``deltas`` (``[call_id,] customer_id, t_ms, owed``: micro-units more owed by the
    customer), one per customer and calendar month of the calls (the customer's time zone),
    dated at the latest call of the group.  ``kind`` None: a charge when the customer owes
    more, an adjustment (credit) otherwise.  Returns the entries' (customer_id, month, amount,
    calls) rows."""
    if deltas.height == 0:
        return pl.DataFrame(schema={"customer_id": pl.Int64, "month": pl.Int64, "owed": pl.Int64, "calls": pl.UInt32})
    zones = pl.DataFrame(
        {"customer_id": list(loaded.customers), "_zone": [c.timezone for c in loaded.customers.values()]},
        schema={"customer_id": pl.Int64, "_zone": pl.String},
    )
    deltas = deltas.join(zones, on="customer_id", how="left").with_columns(pl.col("_zone").fill_null("UTC"))
    grouped = (
        deltas.with_columns(local_months(deltas.get_column("t_ms"), deltas.get_column("_zone")).alias("month"))
        .group_by("customer_id", "month")
        .agg(
            pl.col("owed").sum(),
            pl.col("t_ms").max(),
            (pl.col("call_id").n_unique() if "call_id" in deltas.columns else pl.len()).alias("calls"),
        )
        .filter(pl.col("owed") != 0)
        .sort("customer_id", "month")
    )
    now = utcnow()
    rows = []
    for customer_id, month, owed, t_ms, n in grouped.iter_rows():
        amount = -Decimal(owed).scaleb(-6)
        entry_kind = kind or ("charge" if owed > 0 else "adjustment")
        rows.append(
            {
                "customer_id": customer_id,
                "kind": entry_kind,
                "amount": amount,
                "at": datetime.fromtimestamp(t_ms // 1000, UTC).replace(microsecond=(t_ms % 1000) * 1000),
                "description": f"{what}, {month // 100:04d}-{month % 100:02d}: {n} call(s) "
                f"(billing run {run_id})"[:200],
                "reference": f"billing-run:{run_id}",
                "created_at": now,
                "created_by": created_by,
                "billing_run_id": run_id,
            }
        )
    if rows:
        session.execute(insert(ledger_entries), rows)
    return grouped.select("customer_id", "month", "owed", "calls")


# -- the sidecar's batch ------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    run_id: int
    calls: int
    rerated: int  # stored calls re-rated to keep bundle consumption in answer-time order
    charged_micro: int
    statuses: dict[str, int]


def _cdr_rows(session: Session, call_ids: list[str]) -> pl.DataFrame:
    rows = session.execute(select(cdrs).where(cdrs.c.call_id.in_(call_ids))).mappings().all()
    schema = polars_schema()
    return pl.DataFrame([{k: r[k] for k in schema} for r in rows], schema=schema)


def _keep_answer_time_order(
    session: Session,
    loaded: LoadedBook,
    cdrs_frame: pl.DataFrame,
    rated: pl.DataFrame,
    levels: pl.DataFrame,
    usage: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Calls reach the sidecar in the order they *end*; bundles are consumed in the order calls
    were *answered*.  When a batch brings a call answered before calls already rated in the same
    bundle and month, and the allowance runs out among them, those stored calls are re-rated
    with the new one in its place (the answer-time order of the spec), here in the same
    transaction.  Returns the new ``rated`` and ``levels`` (including the re-rated stored calls)
    and the stored rows they replace (``call_id, customer_id, t_ms, debit, charged,
    bundle_id, bundle_month, bundle_seconds``)."""
    old_schema = {
        "call_id": pl.String,
        "customer_id": pl.Int64,
        "t_ms": pl.Int64,
        "debit": pl.Int64,
        "charged": pl.Boolean,
        "bundle_id": pl.Int64,
        "bundle_month": pl.Int64,
        "bundle_seconds": pl.Int64,
    }
    replaced: list[pl.DataFrame] = []
    in_bundle = rated.filter(pl.col("engine_bundle").is_not_null())
    if in_bundle.height == 0:
        return rated, levels, pl.DataFrame(schema=old_schema)
    used = {(b, m): u for b, m, u in usage.iter_rows()}
    groups = in_bundle.group_by("engine_bundle", "bundle_month").agg(
        pl.col("billed_seconds").sum().alias("demand"),
        pl.col("call_id"),
        pl.col("t_ms"),
        pl.col("customer_id").first(),
        pl.col("bundle_id").first(),
    )
    debit_sql = "CAST(debit * 1000000 AS BIGINT)" if dialect(session) == "postgresql" else "debit"
    for engine_id, month, demand, ids, times, customer_id, bundle_id in groups.iter_rows():
        allowance = loaded.bundles[engine_id].seconds
        before_batch = used.get((engine_id, month), 0)
        if before_batch + demand <= allowance:
            continue  # everything is covered whatever the order
        first_t, first_id = min(zip(times, ids, strict=True))
        stored = session.execute(
            text(
                f"SELECT call_id, customer_id, t_ms, {debit_sql}, charged, bundle_id, bundle_month, bundle_seconds "
                "FROM rated_calls WHERE customer_id = :c AND t_ms >= :t AND bundle_id = :b AND bundle_month = :m"
            ),
            {"c": customer_id, "t": first_t, "b": bundle_id, "m": month},
        ).all()
        later = [r for r in stored if (r[2], r[0]) > (first_t, first_id)]
        if not later:
            continue  # the new calls are the latest: the running total was right
        used_before = before_batch - sum(int(r[7] or 0) for r in later)
        if used_before >= allowance:
            continue  # exhausted before any of them: nothing covered, in any order
        old = pl.DataFrame([tuple(r) for r in later], schema=old_schema, orient="row")
        again = pl.concat([_cdr_rows(session, old.get_column("call_id").to_list()),
                           cdrs_frame.filter(pl.col("call_id").is_in(list(ids)))])
        redo_usage = usage.filter(~((pl.col("bundle_id") == engine_id) & (pl.col("bundle_month") == month)))
        redo_usage = pl.concat(
            [
                redo_usage,
                pl.DataFrame(
                    {"bundle_id": [engine_id], "bundle_month": [month], "used_seconds": [used_before]},
                    schema=usage.schema,
                ),
            ]
        )
        new_rated, new_levels = rate_cdrs(again, loaded, usage=redo_usage)
        mine = list(ids)
        # the batch's calls of this bundle-month take their new rows; the stored ones come back
        rated = pl.concat([rated.filter(~pl.col("call_id").is_in(mine)), new_rated])
        levels = pl.concat([levels.filter(~pl.col("call_id").is_in(mine)), new_levels])
        replaced.append(old)
        log.debug("bundle %d month %d: %d stored call(s) re-rated to keep answer-time order", bundle_id, month,
                  old.height)
    if not replaced:
        return rated, levels, pl.DataFrame(schema=old_schema)
    return rated, levels, pl.concat(replaced)


def bill_batch(
    session: Session, loaded: LoadedBook, cdrs_frame: pl.DataFrame, *, created_by: str = "billing"
) -> BatchOutcome:
    """Rate and book CDRs just stored by this transaction (the billing sidecar's hook)."""
    take_lock(session)
    run_id = new_run(session, kind="batch", book_version=loaded.version, created_by=created_by)
    span = cdrs_frame.select(
        pl.coalesce("answer_ms", "start_ms").min().alias("lo"), pl.coalesce("answer_ms", "start_ms").max().alias("hi")
    ).row(0)
    customers = cdrs_frame.get_column("customer_id").drop_nulls().unique().to_list()
    usage = load_usage(session, loaded, customers, int(span[0] or 0), int(span[1] or 0))
    rated, levels = rate_cdrs(cdrs_frame, loaded, usage=usage, threads=1)
    rated, levels, old = _keep_answer_time_order(session, loaded, cdrs_frame, rated, levels, usage)
    if old.height:
        delete_rated(session, old.get_column("call_id").to_list())
    write_rated(session, rated, levels, run_id=run_id, book_version=loaded.version)
    add_usage(
        session,
        pl.concat([usage_of(rated), usage_of(old, sign=-1)])
        .group_by("customer_id", "bundle_id", "month")
        .agg(pl.col("used_seconds").sum()),
    )
    owed = pl.concat(
        [
            rated.filter(pl.col("charged")).select("call_id", "customer_id", "t_ms", pl.col("debit").alias("owed")),
            old.filter(pl.col("charged")).select("call_id", "customer_id", "t_ms", (-pl.col("debit")).alias("owed")),
        ]
    )
    post_ledger(session, loaded, owed, run_id=run_id, kind=None, what="calls", created_by=created_by)
    statuses = dict(rated.group_by("status").len().iter_rows())
    finish_run(session, run_id, calls=rated.height, summary={"statuses": statuses, "rerated": old.height})
    return BatchOutcome(
        run_id=run_id,
        calls=rated.height - old.height,
        rerated=old.height,
        charged_micro=int(owed.get_column("owed").sum() or 0),
        statuses={str(k): int(v) for k, v in statuses.items()},
    )


def ledger_sum_micro(session: Session, customer_id: int) -> int:
    value = session.scalar(
        select(func.coalesce(func.sum(ledger_entries.c.amount), 0)).where(ledger_entries.c.customer_id == customer_id)
    )
    return int(Decimal(value or 0).scaleb(6))

