"""Payments, adjustments, charges; the balance is the ledger's sum; statements in every format."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from provisioning.models import LedgerEntry
from tests.api.conftest import Tenants, bearer, fields


def _customer(client: TestClient, **kw: object) -> int:
    return int(client.post("/api/v1/customers", json={"name": "Payer", "billing_decimals": 2, **kw}).json()["id"])


def test_balance_is_the_sum_of_the_ledger(client: TestClient, migrated_db: sessionmaker[Session]) -> None:
    cid = _customer(client, credit_limit="20", billing_type="prepaid")
    base = f"/api/v1/customers/{cid}"
    assert client.post(f"{base}/payments", json={"amount": "100.10", "reference": "INV-1"}).status_code == 201
    assert client.post(f"{base}/adjustments", json={"amount": "-0.10", "description": "rounding"}).status_code == 201
    r = client.post(f"{base}/charges", json={"amount": "30.000001", "description": "monthly fee"})
    assert r.status_code == 201 and r.json()["amount"] == "-30.000001"
    balance = client.get(f"{base}/balance").json()
    assert balance == {
        "customer_id": cid,
        "currency": "GBP",
        "balance": "69.999999",
        "credit_limit": "20.000000",
        "available": "89.999999",
        "billing_type": "prepaid",
    }
    with migrated_db() as s:
        total = s.scalar(select(func.sum(LedgerEntry.amount)).where(LedgerEntry.customer_id == cid))
        assert total == Decimal("69.999999")  # nothing but the ledger holds the balance
    for payload, field in (
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "1.0000001"}, "amount"),
        ({"amount": "5", "at": "2026-01-01T00:00:00"}, "at"),  # a naive instant is refused
        ({"amount": "nan"}, "amount"),
    ):
        r = client.post(f"{base}/payments", json=payload)
        assert r.status_code == 422 and fields(r.json()) == {field}, (payload, r.text)
    assert client.post(f"{base}/adjustments", json={"amount": "0"}).status_code == 422


def test_statement_for_a_period(client: TestClient) -> None:
    cid = _customer(client, account_code="STMT-1", company="Statement Co")
    base = f"/api/v1/customers/{cid}"
    for at, kind, amount in (
        ("2026-01-15T10:00:00Z", "payments", "50"),
        ("2026-02-01T00:00:00Z", "charges", "12.345"),
        ("2026-02-10T09:30:00+01:00", "payments", "20"),
        ("2026-02-28T23:59:59Z", "adjustments", "-1.005"),
        ("2026-03-01T00:00:00Z", "charges", "5"),
    ):
        assert client.post(f"{base}/{kind}", json={"amount": amount, "at": at}).status_code == 201
    params = {"since": "2026-02-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}
    st = client.get(f"{base}/statement", params=params).json()
    assert st["opening_balance"] == "50.000000"
    assert [e["amount"] for e in st["entries"]] == ["-12.345000", "20.000000", "-1.005000"]
    assert st["closing_balance"] == "56.650000"
    assert (st["total_credits"], st["total_debits"]) == ("20.000000", "13.350000")
    rows = list(csv.reader(io.StringIO(client.get(f"{base}/statement", params={**params, "format": "csv"}).text)))
    assert rows[0] == ["at", "kind", "description", "reference", "amount", "balance"]
    assert rows[1][1] == "opening balance" and rows[-1][1:] == ["closing balance", "", "", "", "56.650000"]
    assert rows[-2][-1] == "56.650000"  # the running balance ends at the closing balance
    pdf = client.get(f"{base}/statement", params={**params, "format": "pdf"})
    assert (
        pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
    )
    assert 'filename="statement-STMT-1-2026-02-01.pdf"' in pdf.headers["content-disposition"]
    r = client.get(f"{base}/statement", params={"since": params["until"], "until": params["since"]})
    assert r.status_code == 422 and fields(r.json()) == {"until"}
    ledger = client.get(f"{base}/ledger", params={"kind": "charge"}).json()
    assert [e["amount"] for e in ledger["items"]] == ["-12.345000", "-5.000000"]


def test_customers_read_their_money_but_cannot_write_it(client: TestClient, anon: TestClient, tenants: Tenants) -> None:
    cid = _customer(client)
    client.post(f"/api/v1/customers/{cid}/payments", json={"amount": "10"})
    token = client.post("/api/v1/tokens", json={"kind": "customer", "owner_id": cid}).json()["token"]
    me = bearer(token)
    assert anon.get(f"/api/v1/customers/{cid}/balance", headers=me).json()["balance"] == "10.000000"
    assert anon.get(f"/api/v1/customers/{cid}/ledger", headers=me).json()["total"] == 1
    assert anon.post(f"/api/v1/customers/{cid}/payments", json={"amount": "1000"}, headers=me).status_code == 403
    assert anon.get(f"/api/v1/customers/{cid}/balance", headers=tenants.b).status_code == 404
