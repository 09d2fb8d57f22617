"""Re-rating stored CDRs (``trunkline rerate``): all of a range, or nothing.

One transaction: the billing lock (PostgreSQL: an advisory lock the sidecar's batches take
too; SQLite: the database's write lock, taken by the run's first insert), a fresh rating book,
the CDRs of the range read in bulk, rated with :func:`rate_cdrs`, their ``rated_calls`` and
``rated_levels`` rows replaced, the bundle usage of the affected months rebuilt, and one ledger
adjustment per customer and month for the difference between what the calls were charged and
what they cost now.  Any failure rolls everything back.

Which calls (docs/billing.md "Re-rating"): those whose rating instant (answer time, else start)
is in ``[since, until)``, optionally of one customer.  A customer with call bundles (now, or
with bundle usage recorded in those months) has the *whole* calendar months (its time zone)
that the range touches re-rated: bundle seconds are consumed in answer-time order over the
month, so changing one call can move the bundle coverage of every later call of that month.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import bindparam, delete, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from cdr.schema import CDR_COLUMNS, polars_schema
from provisioning import audit
from provisioning.billing.book import BookLoader, LoadedBook
from provisioning.billing.bulk import dialect, drop_ids_table, ids_table, read_frame
from provisioning.billing.charging import (
    finish_run,
    new_run,
    post_ledger,
    rate_cdrs,
    take_lock,
    usage_of,
    write_rated,
)
from provisioning.errors import InvalidValue, NotFound
from provisioning.models import Customer, billing_runs, bundle_usage, rated_calls, rated_levels
from rating.engine import month_starts

# A call rings for minutes at most; its start is never more than this before its answer.
MAX_RING_MS = 86_400_000
Progress = Callable[[str, int, int], None]
_TMP = "rerate_ids"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class RerateResult:
    run_id: int
    calls: int  # CDRs re-rated (the range plus the completed bundle months)
    in_range: int  # of which in [since, until)
    customers: int  # customers whose ledger moved
    entries: int  # ledger adjustments posted
    difference_micro: int  # what the customers owe more (negative: less), micro-units
    seconds: float


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise InvalidValue("instants need a UTC offset", field="since")
    return (moment - _EPOCH) // _ONE_MS


def _month_bounds(zone: str, since_ms: int, until_ms: int) -> tuple[int, int, int, int]:
    """Start of the local month holding ``since``, start of the one after the month holding
    ``until - 1``, and those two months as yyyymm."""
    starts, labels = month_starts(zone, since_ms, max(since_ms, until_ms - 1))
    i = int((starts <= since_ms).sum()) - 1
    j = int((starts <= max(since_ms, until_ms - 1)).sum()) - 1
    return int(starts[i]), int(starts[j + 1]), int(labels[i]), int(labels[j])


def _months_between(first: int, last: int) -> list[int]:
    out = []
    y, m = divmod(first, 100)
    while y * 100 + m <= last:
        out.append(y * 100 + m)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _utc_month(ms: int) -> int:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.year * 100 + moment.month


def _bundle_customers(session: Session, loaded: LoadedBook, since_ms: int, until_ms: int,
                      customer_id: int | None) -> set[int]:
    """Customers whose bundle months must be re-run whole: they hold bundles now, or bundle
    usage was recorded for them in the months around the range."""
    day = 86_400_000
    stmt = select(bundle_usage.c.customer_id).distinct().where(
        bundle_usage.c.month >= _utc_month(max(0, since_ms - day)), bundle_usage.c.month <= _utc_month(until_ms + day)
    )
    found = set(loaded.bundle_customers) | set(session.scalars(stmt))
    if customer_id is not None:
        found &= {customer_id}
    return found


def _cdr_query(session: Session, customer_id: int | None) -> str:
    columns = ", ".join(CDR_COLUMNS)
    query = f"SELECT {columns} FROM cdrs WHERE start_ms >= :lo AND start_ms < :hi"
    if customer_id is not None:
        query += " AND customer_id = :customer"
    return query + " ORDER BY id"


def rerate(
    session_factory: sessionmaker[Session],
    *,
    since: datetime,
    until: datetime,
    customer_id: int | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
    created_by: str = "trunkline rerate",
) -> RerateResult:
    """Re-rate the range in one transaction (see the module docstring); raises and changes
    nothing on any failure."""
    started = time.perf_counter()
    since_ms, until_ms = _ms(since), _ms(until)
    if until_ms <= since_ms:
        raise InvalidValue("--to must be after --from", field="until")
    say: Progress = progress or (lambda _stage, _done, _total: None)
    with session_factory.begin() as session:
        take_lock(session)
        if customer_id is not None and session.get(Customer, customer_id) is None:
            raise NotFound("customer", customer_id)
        # On SQLite this first write takes the database's write lock: from here on nothing
        # else writes, so everything read below is one consistent state.
        run_id = new_run(session, kind="rerate", book_version=0, created_by=created_by, since=since.astimezone(UTC),
                         until=until.astimezone(UTC), customer_id=customer_id)
        say("loading the rating book", 0, 0)
        loaded = BookLoader().load(session)

        # -- which calls ---------------------------------------------------------------------------
        whole = _bundle_customers(session, loaded, since_ms, until_ms, customer_id)
        ext_rows = []
        months: dict[int, list[int]] = {}
        for cid in sorted(whole):
            info = loaded.customers.get(cid)
            zone = info.timezone if info is not None else "UTC"
            ZoneInfo(zone)
            lo, hi, first, last = _month_bounds(zone, since_ms, until_ms)
            ext_rows.append((cid, lo, hi))
            months[cid] = _months_between(first, last)
        ext = pl.DataFrame(ext_rows, schema={"customer_id": pl.Int64, "_lo": pl.Int64, "_hi": pl.Int64},
                           orient="row")
        window_lo = min([since_ms, *(r[1] for r in ext_rows)])
        window_hi = max([until_ms, *(r[2] for r in ext_rows)])
        say("reading CDRs", 0, 0)
        params: dict[str, int] = {"lo": window_lo - MAX_RING_MS, "hi": window_hi}
        if customer_id is not None:
            params["customer"] = customer_id
        candidates = read_frame(session, _cdr_query(session, customer_id), params, polars_schema())
        t = pl.coalesce("answer_ms", "start_ms")
        selected = (
            candidates.join(ext, on="customer_id", how="left")
            .filter(
                ((t >= since_ms) & (t < until_ms))
                | (pl.col("_lo").is_not_null() & (t >= pl.col("_lo")) & (t < pl.col("_hi")))
            )
            .with_columns(((t >= since_ms) & (t < until_ms)).alias("_in_range"))
        )
        in_range = int(selected.get_column("_in_range").sum())
        selected = selected.drop("_lo", "_hi", "_in_range")

        # -- what they were charged ----------------------------------------------------------------
        debit = "CAST(r.debit * 1000000 AS BIGINT)" if dialect(session) == "postgresql" else "r.debit"
        old_query = (
            f"SELECT r.call_id, r.customer_id, r.t_ms, {debit}, r.charged FROM rated_calls r "
            "JOIN cdrs c ON c.call_id = r.call_id WHERE c.start_ms >= :lo AND c.start_ms < :hi"
        )
        if customer_id is not None:
            old_query += " AND c.customer_id = :customer"
        old = read_frame(
            session,
            old_query,
            params,
            {"call_id": pl.String(), "customer_id": pl.Int64(), "t_ms": pl.Int64(), "debit": pl.Int64(),
             "charged": pl.Boolean()},
        ).join(selected.select("call_id"), on="call_id", how="semi")

        # -- rate ------------------------------------------------------------------------------------
        total = selected.height
        rated, levels = rate_cdrs(
            selected, loaded, threads=threads, progress=lambda done, n: say("rating", done, n)
        )

        # -- replace the rows ------------------------------------------------------------------------
        say("writing rated calls", 0, total)
        ids = selected.get_column("call_id")
        ids_table(session, _TMP, ids)
        session.execute(text(f"DELETE FROM {rated_levels.name} WHERE call_id IN (SELECT call_id FROM {_TMP})"))
        session.execute(text(f"DELETE FROM {rated_calls.name} WHERE call_id IN (SELECT call_id FROM {_TMP})"))
        drop_ids_table(session, _TMP)
        write_rated(session, rated, levels, run_id=run_id, book_version=loaded.version)
        say("writing rated calls", total, total)

        # -- bundle usage of the re-run months -------------------------------------------------------
        if months:
            session.execute(
                delete(bundle_usage).where(
                    bundle_usage.c.customer_id == bindparam("c"),
                    bundle_usage.c.month >= bindparam("first"),
                    bundle_usage.c.month <= bindparam("last"),
                ),
                [{"c": cid, "first": ms[0], "last": ms[-1]} for cid, ms in months.items()],
            )
            fresh = usage_of(rated).filter(pl.col("used_seconds") != 0)
            keep = pl.DataFrame(
                [(cid, m) for cid, ms in months.items() for m in ms],
                schema={"customer_id": pl.Int64, "month": pl.Int64},
                orient="row",
            )
            fresh = fresh.join(keep, on=["customer_id", "month"], how="semi")
            if fresh.height:
                session.execute(insert(bundle_usage), fresh.to_dicts())

        # -- the ledger --------------------------------------------------------------------------------
        say("posting ledger adjustments", 0, 0)
        keys = ("call_id", "customer_id", "t_ms")
        owed = pl.concat(
            [
                rated.filter(pl.col("charged")).select(*keys, pl.col("debit").alias("owed")),
                old.filter(pl.col("charged")).select(*keys, (-pl.col("debit")).alias("owed")),
            ]
        )
        what = f"re-rating {since.astimezone(UTC):%Y-%m-%d %H:%M}..{until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        posted = post_ledger(session, loaded, owed, run_id=run_id, kind="adjustment", what=what,
                             created_by=created_by)
        difference = int(posted.get_column("owed").sum() or 0)
        summary = {
            "calls": total,
            "in_range": in_range,
            "customers": posted.get_column("customer_id").n_unique(),
            "entries": posted.height,
            "difference_micro": difference,
            "book_version": loaded.version,
        }
        finish_run(session, run_id, calls=total, summary=summary)
        session.execute(billing_runs.update().where(billing_runs.c.id == run_id).values(book_version=loaded.version))
        audit.record(
            session,
            action="rerate",
            entity="billing_run",
            entity_id=run_id,
            tenant_path="/",
            customer_id=customer_id,
            after={
                "since": since.astimezone(UTC).isoformat(),
                "until": until.astimezone(UTC).isoformat(),
                **summary,
            },
        )
    return RerateResult(
        run_id=run_id,
        calls=total,
        in_range=in_range,
        customers=int(summary["customers"]),
        entries=posted.height,
        difference_micro=difference,
        seconds=time.perf_counter() - started,
    )
