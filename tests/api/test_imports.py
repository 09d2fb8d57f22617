"""Customer import from the cloud reseller guide's CSV: all rows or none, bad rows by line."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import Tenants

DATA = Path(__file__).resolve().parents[1] / "data" / "imports"


def _import(client: TestClient, name: str, **kw: object) -> object:
    with (DATA / name).open("rb") as fh:
        return client.post("/api/v1/imports/customers", files={"file": (name, fh, "text/csv")}, **kw)


def test_good_file_creates_customers_devices_rules_and_balances(client: TestClient, tenants: Tenants) -> None:
    r = _import(client, "customers_ok.csv", headers=tenants.a)
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    result = r.json()  # type: ignore[attr-defined]
    assert (result["customers"], result["sip_devices"], result["translation_rules"]) == (3, 2, 4)
    first, second, third = result["customer_ids"]
    c = client.get(f"/api/v1/customers/{first}").json()
    assert (c["name"], c["company"], c["account_code"], c["web_username"]) == ("Jan de Vries", "Vries BV", "ACC-1001",
                                                                             "ACC-1001")  # fmt: skip
    assert (c["max_sessions"], c["cps"], c["credit_limit"], c["pin"], c["reseller_id"]) == (
        10, 5, "100.000000", "1012 LG", tenants.a_id
    )  # fmt: skip
    assert client.get(f"/api/v1/customers/{first}/balance").json()["balance"] == "25.500000"
    assert client.get(f"/api/v1/customers/{third}/balance").json()["balance"] == "-3.250000"
    assert client.get(f"/api/v1/customers/{third}").json()["name"] == "Widgets Ltd"
    assert client.get(f"/api/v1/customers/{second}").json()["web_username"] is None  # no password, no login
    rules = client.get(f"/api/v1/customers/{first}/translation-rules").json()
    assert [(x["kind"], x["match"], x["replacement"]) for x in rules] == [
        ("destination", "0", "31"),
        ("destination", "00", ""),
        ("source", "0", "31"),
    ]
    devices = client.get(f"/api/v1/customers/{first}/sip-devices").json()["items"]
    assert [d["username"] for d in devices] == ["acc1001"]
    login = client.post("/api/v1/auth/login", json={"username": "ACC-1001", "password": "Secret-101"})
    assert login.status_code == 200 and login.json()["owner_id"] == first
    # The same file again: every row now conflicts, and nothing more is created.
    r = _import(client, "customers_ok.csv", headers=tenants.a)
    assert r.status_code == 422  # type: ignore[attr-defined]
    assert {e["line"] for e in r.json()["errors"]} == {2, 3, 4}  # type: ignore[attr-defined]
    assert client.get("/api/v1/customers").json()["total"] == 3


def test_bad_file_reports_every_row_and_stores_nothing(client: TestClient) -> None:
    r = _import(client, "customers_bad.csv")
    assert r.status_code == 422  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    by_line = {e["line"]: e for e in body["errors"]}
    assert set(by_line) == {3, 4, 5, 6, 7, 8, 9}, body  # line 2 is the only good row
    assert by_line[3]["column"] == "password" and "capital" in by_line[3]["message"]
    assert by_line[4]["column"] == "first_name"
    assert by_line[5]["column"] == "email"
    assert "repeats line 2" in by_line[6]["message"]
    assert by_line[7]["column"] == "concurrent_calls"
    assert by_line[8]["column"] == "balance"
    assert "repeats line 2" in by_line[9]["message"] and by_line[9]["column"] == "SIP username"
    assert body["error_count"] == 7
    assert client.get("/api/v1/customers").json()["total"] == 0
    assert client.get("/api/v1/audit-log", params={"entity": "customer"}).json()["total"] == 0


def test_unknown_columns_and_garbage(client: TestClient) -> None:
    for content, line in ((b"Account Number,Favourite Colour\nA1,red\n", 1), (b"", 1), (b"First Name\n", 2)):
        r = client.post("/api/v1/imports/customers", files={"file": ("x.csv", content)})
        assert r.status_code == 422 and r.json()["errors"][0]["line"] == line, (content, r.text)
    r = client.post("/api/v1/imports/customers", files={"file": ("x.csv", b"\xff\xfe")})
    assert r.status_code == 422
