"""Invoices from the books (SQLite and PostgreSQL): calls by destination, bundles, payments,
other charges, VAT/TAX on the period's total rounded once, totals; the PDF."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from admin_api.exports import invoice_pdf
from provisioning import repo
from provisioning.errors import InvalidValue, NotFound
from provisioning.scope import PROVIDER, Scope
from tests.billing.helpers import SF, Sidecar
from tests.billing.world import MIN, T0, World, build_world, call

D = Decimal
FEB = T0 + 31 * 86_400_000


@pytest.fixture
def booked(migrated_db: SF, tmp_path: Path) -> Iterator[World]:
    w = build_world(migrated_db)
    sc = Sidecar(migrated_db, tmp_path / "spool")
    sc.emit([
        *(call(f"usa{i}", w.bob, "15551234567", answer=T0 + i * MIN, duration_ms=61_500) for i in range(3)),
        *(call(f"uk{i}", w.bob, "442079460000", answer=T0 + 3600_000 + i * MIN, duration_ms=90_000) for i in range(2)),
        call("mob", w.bob, "447700900123", answer=T0 + 7200_000, duration_ms=95_000),
        call("feb", w.bob, "15551234567", answer=FEB + MIN, duration_ms=600_000),  # February: not in January
        call("busy", w.bob, "15551234567", answer=None, start=T0 + 10 * MIN),
        call("a1", w.alice, "442079460000", answer=T0 + 3600_000, duration_ms=8 * MIN),  # in the bundle
        call("a2", w.alice, "442079460000", answer=T0 + 7200_000, duration_ms=5 * MIN),  # 2 min in, 3 out
        call("a3", w.alice, "33123456", answer=T0 + 9000_000, duration_ms=61_500),
        call("d1", w.demo, "33123456", answer=T0 + MIN, duration_ms=61_500),
    ])
    sc.drain()
    sc.close()
    with migrated_db.begin() as s:
        for kind, amount, at in (
            ("payment", D("10"), datetime(2026, 1, 15, tzinfo=UTC)),
            ("payment", D("5"), datetime(2026, 2, 3, tzinfo=UTC)),
            ("charge", D("1.23"), datetime(2026, 1, 20, tzinfo=UTC)),
            ("adjustment", D("0.5"), datetime(2026, 1, 21, tzinfo=UTC)),
        ):
            repo.ledger.add_entry(s, scope=PROVIDER, customer_id=w.bob, kind=kind, amount=amount, at=at,
                                  reference=f"{kind}-ref")
    yield w


def test_invoice_totals_and_tax_rounded_once(migrated_db: SF, booked: World) -> None:
    w = booked
    with migrated_db() as s:
        inv = repo.invoices.invoice(s, scope=PROVIDER, customer_id=w.bob, month="2026-01")
        # bob: wholesale deck, 4 decimals, TAX 7.5 %
        assert [(x.destination, x.calls, x.seconds, x.amount) for x in inv.lines] == [
            ("UK", 2, 240, D("0.0400")),  # 90 s in 60 s blocks at 0.01
            ("UK Mobile", 1, 96, D("0.0900")),  # 0.01 + 0.05 x 96 / 60
            ("USA", 3, 186, D("0.0156")),  # 62 s per second at 0.005 -> 0.0052 each
        ]
        assert (inv.calls, inv.seconds, inv.usage_total) == (6, 522, D("0.1456"))
        assert inv.uncharged_calls == 1  # the busy one
        assert [e.amount for e in inv.payments] == [D("10")] and inv.payments_total == D("10")
        assert [(e.kind, e.amount) for e in inv.other] == [("charge", D("-1.23")), ("adjustment", D("0.5"))]
        assert inv.other_total == D("0.73")
        assert inv.subtotal == D("0.8756")
        # 7.5 % of the total, rounded once: 0.06567 -> 0.0657 (per call and entry it would be 0.0658)
        assert (inv.tax_type, inv.tax_rate, inv.tax, inv.total) == ("TAX", D("7.5"), D("0.0657"), D("0.9413"))
        # the calls of a calendar month are exactly the billing's ledger entries of that month
        statement = repo.ledger.statement(s, scope=PROVIDER, customer_id=w.bob, since=inv.since, until=inv.until)
        billed = [e for e in statement.entries if e.billing_run_id is not None]
        assert -sum(e.amount for e in billed) == inv.usage_total

        alice = repo.invoices.invoice(s, scope=PROVIDER, customer_id=w.alice, month="2026-01")
        # 2 decimals, VAT 20 %: UK 8 min in the bundle (0), then 2 min in and 3 min beyond it at
        # 0.01848 = 0.05544 -> 0.06; France 0.07
        assert [(x.destination, x.calls, x.seconds, x.amount) for x in alice.lines] == [
            ("France", 1, 120, D("0.07")), ("UK", 2, 780, D("0.06"))
        ]
        assert alice.uncharged_calls == 0
        assert [(b.bundle_id, b.month, b.allowance_seconds, b.used_seconds) for b in alice.bundles] == [
            (w.bundle, 202601, 600, 600)
        ]
        assert (alice.subtotal, alice.tax, alice.total) == (D("0.13"), D("0.03"), D("0.16"))  # 0.026 -> 0.03
        demo = repo.invoices.invoice(s, scope=PROVIDER, customer_id=w.demo, month="2026-01")
        assert (demo.lines, demo.total, demo.uncharged_calls) == ([], D(0), 1)  # DEMO: rated, never charged
        feb = repo.invoices.invoice(s, scope=PROVIDER, customer_id=w.bob, month="2026-02")
        assert [(x.destination, x.calls) for x in feb.lines] == [("USA", 1)] and feb.payments_total == D(5)


def test_invoice_period_and_scope(migrated_db: SF, booked: World) -> None:
    w = booked
    with migrated_db() as s:
        # alice is in Europe/London (GMT in January): her month is the UTC month
        inv = repo.invoices.invoice(s, scope=PROVIDER, customer_id=w.alice, month="2026-01")
        assert (inv.since, inv.until) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
        part = repo.invoices.invoice(s, scope=PROVIDER, customer_id=w.bob,
                                     since=datetime(2026, 1, 1, 1, tzinfo=UTC), until=datetime(2026, 1, 2, tzinfo=UTC))
        assert [x.destination for x in part.lines] == ["UK", "UK Mobile"]
        for bad in ({"month": "2026-13"}, {}, {"month": "2026-01", "since": datetime(2026, 1, 1, tzinfo=UTC)}):
            with pytest.raises(InvalidValue):
                repo.invoices.invoice(s, scope=PROVIDER, customer_id=w.bob, **bad)  # type: ignore[arg-type]
        mine = repo.invoices.invoice(s, scope=Scope.for_customer(w.bob), customer_id=w.bob, month="2026-01")
        assert mine.total == D("0.9413")
        with pytest.raises(NotFound):
            repo.invoices.invoice(s, scope=Scope.for_customer(w.bob), customer_id=w.alice, month="2026-01")


def test_invoice_pdf(migrated_db: SF, booked: World, tmp_path: Path) -> None:
    with migrated_db() as s:
        inv = repo.invoices.invoice(s, scope=PROVIDER, customer_id=booked.bob, month="2026-01")
        body = invoice_pdf(inv)
        alice = invoice_pdf(repo.invoices.invoice(s, scope=PROVIDER, customer_id=booked.alice, month="2026-01"))
    assert body.startswith(b"%PDF-") and body.rstrip().endswith(b"%%EOF") and len(body) > 1500
    assert alice.startswith(b"%PDF-")
    (tmp_path / "invoice.pdf").write_bytes(body)
