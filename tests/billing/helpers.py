"""Driving the billing sidecar in-process, and reading what it booked."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cdr.schema import CdrRecord
from cdr.spool import SpoolWriter
from provisioning.models import LedgerEntry, bundle_usage, ledger_entries, rated_calls, rated_levels
from trunkline.billing import CdrIngestor, SidecarBiller

SF = sessionmaker[Session]


class Sidecar:
    """A spool writer and the sidecar's ingestor with its rating hook (no threads: ``step``)."""

    def __init__(self, sf: SF, spool: Path, *, max_batch: int = 5000) -> None:
        self.sf = sf
        self.spool = spool
        self.writer = SpoolWriter(spool)
        self.max_batch = max_batch
        self.start()

    def start(self) -> None:
        """(Re)start the sidecar: a new biller and ingestor, as after a process restart."""
        self.biller = SidecarBiller(self.sf)
        self.ingestor = CdrIngestor(self.sf, self.spool, on_batch=self.biller, prepare=self.biller.prepare,
                                    max_batch=self.max_batch)

    def emit(self, records: Iterable[CdrRecord]) -> None:
        for r in records:
            self.writer.emit(r)

    def drain(self) -> int:
        total = 0
        while True:
            n = self.ingestor.step()
            total += n
            if n == 0:
                return total

    def close(self) -> None:
        self.ingestor.close()
        self.writer.close()


def rated(sf: SF) -> dict[str, dict[str, Any]]:
    with sf() as s:
        return {r["call_id"]: dict(r) for r in s.execute(select(rated_calls)).mappings()}


def levels(sf: SF) -> dict[str, dict[int, tuple[int, Decimal | None]]]:
    out: dict[str, dict[int, tuple[int, Decimal | None]]] = {}
    with sf() as s:
        for r in s.execute(select(rated_levels)).mappings():
            out.setdefault(r["call_id"], {})[r["level"]] = (r["account_id"], r["amount"])
    return out


def ledger(sf: SF, customer_id: int | None = None) -> list[LedgerEntry]:
    with sf() as s:
        stmt = select(LedgerEntry).order_by(LedgerEntry.id)
        if customer_id is not None:
            stmt = stmt.where(LedgerEntry.customer_id == customer_id)
        return list(s.scalars(stmt))


def balance(sf: SF, customer_id: int) -> Decimal:
    with sf() as s:
        value = s.scalar(
            select(func.coalesce(func.sum(ledger_entries.c.amount), 0))
            .where(ledger_entries.c.customer_id == customer_id)
        )
        return Decimal(value or 0).quantize(Decimal("0.000001"))


def usage(sf: SF) -> dict[tuple[int, int, int], int]:
    with sf() as s:
        return {(c, b, m): u for c, b, m, u in s.execute(select(bundle_usage)).all()}


def check_books_balance(sf: SF) -> None:
    """The invariants: every customer's billing entries are exactly what its charged calls cost,
    and the stored bundle usage is the sum of its calls' bundle seconds."""
    with sf() as s:
        charged = dict(
            s.execute(
                select(rated_calls.c.customer_id, func.sum(rated_calls.c.debit))
                .where(rated_calls.c.charged.is_(True))
                .group_by(rated_calls.c.customer_id)
            ).all()
        )
        booked = dict(
            s.execute(
                select(ledger_entries.c.customer_id, func.sum(ledger_entries.c.amount))
                .where(ledger_entries.c.billing_run_id.is_not(None))
                .group_by(ledger_entries.c.customer_id)
            ).all()
        )
        for customer in set(charged) | set(booked):
            assert Decimal(charged.get(customer) or 0) == -Decimal(booked.get(customer) or 0), customer
        from_calls = {
            (c, b, m): int(u)
            for c, b, m, u in s.execute(
                select(rated_calls.c.customer_id, rated_calls.c.bundle_id, rated_calls.c.bundle_month,
                       func.sum(rated_calls.c.bundle_seconds))
                .where(rated_calls.c.bundle_id.is_not(None))
                .group_by(rated_calls.c.customer_id, rated_calls.c.bundle_id, rated_calls.c.bundle_month)
            ).all()
            if u
        }
        stored = {k: v for k, v in usage(sf).items() if v}
        assert from_calls == stored
