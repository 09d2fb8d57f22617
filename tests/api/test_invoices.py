"""Invoices and rated calls through the admin API: shapes, PDF, and tenancy (a customer sees its
own, a reseller its descendants', anyone else gets the answer of an id that does not exist)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from provisioning import repo
from provisioning.scope import PROVIDER
from provisioning.tokens import create_token
from tests.api.conftest import Tenants, bearer
from tests.billing.helpers import Sidecar
from tests.billing.world import MIN, T0, call


def _customer_with_calls(sf: sessionmaker[Session], tenants: Tenants, spool: Path) -> tuple[int, dict[str, str]]:
    with sf.begin() as s:
        tariff = repo.tariffs.create_tariff(s, scope=PROVIDER, name="a1 retail", reseller_id=tenants.a1_id)
        repo.tariffs.create_rate(s, scope=PROVIDER, tariff_id=tariff.id,
                                 values={"prefix": "44", "destination": "UK", "rate": "0.1", "increment": 60})
        customer = repo.create_customer(s, scope=PROVIDER, name="invoiced", reseller_id=tenants.a1_id,
                                        tariff_id=tariff.id, billing_decimals=2, tax_type="VAT",
                                        tax_rate=Decimal("20"))
        token = create_token(s, kind="customer", owner_id=customer.id, label="self-care")
        cid = customer.id
    sc = Sidecar(sf, spool)
    sc.emit([call(i, cid, "442079460000", answer=T0 + i * MIN, duration_ms=90_000) for i in range(3)])
    sc.drain()
    sc.close()
    return cid, bearer(token)


def test_invoice_json_pdf_and_tenancy(client: TestClient, tenants: Tenants, migrated_db: sessionmaker[Session],
                                      tmp_path: Path) -> None:
    cid, own = _customer_with_calls(migrated_db, tenants, tmp_path / "spool")
    url = f"/api/v1/customers/{cid}/invoice"
    r = client.get(url, params={"month": "2026-01"}, headers=tenants.admin)
    assert r.status_code == 200, r.text
    body = r.json()
    # 3 calls of 90 s in 60 s blocks at 0.10 a minute: 0.20 each; VAT 20 % of 0.60 = 0.12
    assert body["calls"] == [
        {"destination": "UK", "calls": 3, "seconds": 360, "minutes": "6.00", "amount": "0.600000"}
    ]
    assert (body["usage_total"], body["subtotal"], body["tax"], body["total"]) == (
        "0.600000", "0.600000", "0.120000", "0.720000"
    )
    assert (body["tax_type"], body["tax_rate"], body["month"]) == ("VAT", "20.000000", "2026-01")
    assert body["since"].startswith("2026-01-01T00:00:00") and body["until"].startswith("2026-02-01T00:00:00")
    for headers in (tenants.a, tenants.a1, own):  # an ancestor reseller, the customer's reseller, itself
        assert client.get(url, params={"month": "2026-01"}, headers=headers).json() == body
    pdf = client.get(url, params={"month": "2026-01", "format": "pdf"}, headers=own)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and "invoice-" in pdf.headers["content-disposition"]
    ghost = client.get("/api/v1/customers/987654/invoice", params={"month": "2026-01"}, headers=tenants.b)
    theirs = client.get(url, params={"month": "2026-01"}, headers=tenants.b)
    assert theirs.status_code == ghost.status_code == 404
    assert theirs.json()["detail"].replace(str(cid), "N") == ghost.json()["detail"].replace("987654", "N")
    with migrated_db.begin() as s:
        other = repo.create_customer(s, scope=PROVIDER, name="other", reseller_id=tenants.a1_id).id
    assert client.get(f"/api/v1/customers/{other}/invoice", params={"month": "2026-01"}, headers=own).status_code == 404
    # the period: a month, or since and until, not both, not neither
    assert client.get(url, headers=own).status_code == 422
    assert client.get(url, params={"month": "2026-1"}, headers=own).status_code == 422
    both = {"month": "2026-01", "since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}
    assert client.get(url, params=both, headers=own).status_code == 422
    span = client.get(url, params={"since": "2026-01-01T00:01:00Z", "until": "2026-02-01T00:00:00Z"}, headers=own)
    assert span.json()["calls_count"] == 2


def test_rated_calls_listing(client: TestClient, tenants: Tenants, migrated_db: sessionmaker[Session],
                             tmp_path: Path) -> None:
    cid, own = _customer_with_calls(migrated_db, tenants, tmp_path / "spool")
    url = f"/api/v1/customers/{cid}/rated-calls"
    page = client.get(url, headers=own).json()
    assert page["total"] == 3
    first = page["items"][0]
    assert (first["call_id"], first["status"], first["debit"], first["charged"]) == (
        "call-0", "rated", "0.200000", True
    )
    assert "carrier_cost" not in first  # never shown: the provider's buy price
    assert first["note"] == ""  # the billing's note can name carriers and tariffs above the customer
    run = first["run_id"]
    assert client.get(url, params={"run_id": run, "status": "rated"}, headers=tenants.a).json()["total"] == 3
    assert client.get(url, params={"since": "2026-01-01T00:01:00Z"}, headers=own).json()["total"] == 2
    csv = client.get(url, params={"format": "csv", "sort": "-t_ms"}, headers=own)
    assert csv.status_code == 200 and csv.text.splitlines()[1].startswith("call-2,")
    assert "note" not in csv.text.splitlines()[0].split(",")
    assert "note" in client.get(url, params={"format": "csv"}, headers=tenants.a).text.splitlines()[0].split(",")
    assert client.get(url, headers=tenants.b).status_code == 404
    # the statement shows the charge the calls made, with the billing run as its reference
    st = client.get(f"/api/v1/customers/{cid}/statement",
                    params={"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}, headers=own).json()
    assert [(e["kind"], e["amount"], e["reference"]) for e in st["entries"]] == [
        ("charge", "-0.600000", f"billing-run:{run}")
    ]
    assert (st["opening_balance"], st["closing_balance"]) == ("0.000000", "-0.600000")
