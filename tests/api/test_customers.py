"""/api/v1/customers: defaults, OV500 field rules, conflicts, lifecycle, listing filters, exports."""

from __future__ import annotations

import csv
import io

import openpyxl
from fastapi.testclient import TestClient

from tests.api.conftest import Tenants, fields


def test_crud(client: TestClient) -> None:
    r = client.post("/api/v1/customers", json={"name": "Acme", "domain": "Acme.Example"})
    assert r.status_code == 201, r.text
    body = r.json()
    cid = body["id"]
    assert body["status"] == "active" and body["domain"] == "acme.example" and body["max_sessions"] == 0
    assert body["created_at"].endswith(("Z", "+00:00"))
    assert client.get(f"/api/v1/customers/{cid}").json() == body

    r = client.patch(f"/api/v1/customers/{cid}", json={"name": "Acme Ltd", "max_sessions": 10, "credit_limit": "25.5"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["max_sessions"], r.json()["credit_limit"]) == ("Acme Ltd", 10, "25.500000")

    assert client.delete(f"/api/v1/customers/{cid}").status_code == 204
    assert client.get(f"/api/v1/customers/{cid}").status_code == 404
    assert client.delete(f"/api/v1/customers/{cid}").status_code == 404


def test_only_the_name_is_required_and_defaults_are_documented(client: TestClient) -> None:
    r = client.post("/api/v1/customers", json={})
    assert r.status_code == 422 and fields(r.json()) == {"name"}
    c = client.post("/api/v1/customers", json={"name": "Solo"}).json()
    assert c["account_code"] == f"C{c['id']:09d}"
    expected = {
        "status": "active",
        "customer_type": "LIVE",
        "billing_type": "postpaid",
        "payment_term_days": 30,
        "credit_limit": "0.000000",
        "billing_decimals": 4,
        "tax_type": "NONE",
        "tax_rate": "0.000000",
        "codecs": ["PCMA", "PCMU"],
        "call_with_media": True,
        "timezone": "UTC",
        "currency": "GBP",
        "trunk_channel_max": None,
        "fraud_limit_default": None,
        "tariff_id": None,
    }
    assert {k: c[k] for k in expected} == expected
    assert "web_password" not in c and "web_password_hash" not in c
    schema = client.get("/openapi.json").json()["components"]["schemas"]["CustomerCreate"]
    assert schema["required"] == ["name"]


def test_reseller_defaults_flow_to_its_customers(client: TestClient, tenants: Tenants) -> None:
    # The default tariff is priced in the reseller's (new) currency: a GBP one is refused.
    gbp = client.post("/api/v1/tariffs", json={"name": "A retail GBP"}, headers=tenants.a).json()
    r = client.patch(f"/api/v1/resellers/{tenants.a_id}", json={"default_tariff_id": gbp["id"], "currency": "EUR"})
    assert r.status_code == 422 and fields(r.json()) == {"default_tariff_id"}
    tariff = client.post("/api/v1/tariffs", json={"name": "A retail", "currency": "EUR"}, headers=tenants.a).json()
    r = client.patch(
        f"/api/v1/resellers/{tenants.a_id}",
        json={"default_tariff_id": tariff["id"], "currency": "EUR", "timezone": "Europe/Paris", "billing_decimals": 2},
    )
    assert r.status_code == 200, r.text
    c = client.post("/api/v1/customers", json={"name": "Client of A"}, headers=tenants.a).json()
    assert (c["reseller_id"], c["tariff_id"], c["currency"], c["timezone"], c["billing_decimals"]) == (
        tenants.a_id,
        tariff["id"],
        "EUR",
        "Europe/Paris",
        2,
    )


def test_ov500_field_rules_are_named(client: TestClient) -> None:
    cases = [
        ({"domain": "not a domain"}, {"domain"}),
        ({"status": "sleeping"}, {"status"}),
        ({"max_sessions": -1}, {"max_sessions"}),
        ({"cps": "many"}, {"cps"}),
        ({"name": "   "}, {"name"}),
        ({"colour": "red"}, {"colour"}),
        ({"reseller_id": 424242}, {"reseller_id"}),
        ({"customer_type": "TRIAL"}, {"customer_type"}),
        ({"web_username": "x" * 31}, {"web_username"}),
        ({"web_username": "bob@example.com"}, {"web_username"}),
        ({"web_username": "bob", "web_password": "short1!"}, {"web_password"}),
        ({"web_username": "bob", "web_password": "nocapital1!"}, {"web_password"}),
        ({"web_username": "bob", "web_password": "NoDigits!!"}, {"web_password"}),
        ({"web_username": "bob", "web_password": "NoSpecial11"}, {"web_password"}),
        ({"web_password": "Good-pass-1"}, {"web_password"}),  # no username to log in with
        ({"payment_term_days": 0}, {"payment_term_days"}),
        ({"payment_term_days": 31}, {"payment_term_days"}),
        ({"billing_type": "credit"}, {"billing_type"}),
        ({"credit_limit": "-1"}, {"credit_limit"}),
        ({"credit_limit": "1.0000001"}, {"credit_limit"}),
        ({"billing_decimals": 7}, {"billing_decimals"}),
        ({"tax_type": "GST"}, {"tax_type"}),
        ({"tax_rate": "101"}, {"tax_rate"}),
        ({"codecs": ["PCMA", "AMR"]}, {"codecs"}),
        ({"codecs": []}, {"codecs"}),
        ({"email": "not-an-email"}, {"email"}),
        ({"email": "a-very-long-name@example-company.com"}, {"email"}),  # OV500: at most 30
        ({"address": "x" * 201}, {"address"}),
        ({"phone": "12ab"}, {"phone"}),
        ({"country": "XX"}, {"country"}),
        ({"country": "gb"}, {"country"}),
        ({"timezone": "Mars/Olympus"}, {"timezone"}),
        ({"currency": "XYZ"}, {"currency"}),
        ({"trunk_channel_max": 1001}, {"trunk_channel_max"}),
        ({"account_code": "C000000042"}, {"account_code"}),  # reserved for generated codes
        ({"fraud_limit_default": "100", "fraud_limit_ceiling": "50"}, {"fraud_limit_default"}),
        ({"tariff_id": 999}, {"tariff_id"}),
        ({"service_plan_id": 999}, {"service_plan_id"}),
    ]
    for payload, expected in cases:
        r = client.post("/api/v1/customers", json={"name": "x", **payload})
        assert r.status_code == 422, (payload, r.text)
        assert fields(r.json()) == expected, (payload, r.json())
        assert "Good-pass-1" not in r.text  # passwords are never echoed
    good = {
        "name": "Full",
        "customer_type": "DEMO",
        "web_username": "full.user",
        "web_password": "Str0ng!pass",
        "billing_type": "prepaid",
        "payment_term_days": 15,
        "credit_limit": "100.25",
        "billing_decimals": 2,
        "tax_type": "VAT",
        "tax_rate": "20",
        "codecs": ["G722", "PCMA"],
        "call_with_media": False,
        "company": "Full Co",
        "email": "ops@full.example",
        "address": "1 High Street",
        "phone": "+442079460000",
        "country": "GB",
        "pin": "SW1A 1AA",
        "timezone": "Europe/London",
        "currency": "EUR",
        "trunk_channel_max": 30,
        "fraud_limit_default": "50",
        "fraud_limit_ceiling": "300",
        "max_call_seconds": 7200,
    }
    r = client.post("/api/v1/customers", json=good)
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["codecs"] == ["G722", "PCMA"] and c["tax_rate"] == "20.000000" and c["trunk_channel_max"] == 30
    cid = c["id"]
    r = client.patch(f"/api/v1/customers/{cid}", json={"name": None})
    assert r.status_code == 422 and fields(r.json()) == {"name"}
    r = client.patch(f"/api/v1/customers/{cid}", json={"status": "closed"})
    assert r.status_code == 422 and fields(r.json()) == {"status"}


def test_conflicts_name_the_field(client: TestClient) -> None:
    a = client.post(
        "/api/v1/customers",
        json={
            "name": "A",
            "domain": "a.example",
            "web_username": "alice",
            "web_password": "Aa-123456",
            "account_code": "ACC1",
        },
    ).json()
    for payload, field in (
        ({"domain": "A.EXAMPLE"}, "domain"),
        ({"web_username": "alice"}, "web_username"),
        ({"account_code": "ACC1"}, "account_code"),
    ):
        r = client.post("/api/v1/customers", json={"name": "B", **payload})
        assert r.status_code == 409 and r.json()["field"] == field, r.text
    r = client.patch(f"/api/v1/customers/{a['id']}", json={"domain": "other.example"})
    assert r.status_code == 409 and r.json()["field"] == "domain"


def test_lifecycle_operations_with_reasons(client: TestClient) -> None:
    cid = client.post("/api/v1/customers", json={"name": "Life", "status": "created"}).json()["id"]
    base = f"/api/v1/customers/{cid}"
    assert client.post(f"{base}/stop", json={"reason": "x"}).status_code == 409  # not active yet
    r = client.post(f"{base}/activate", json={})
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["activated_at"]
    r = client.post(f"{base}/stop", json={})
    assert r.status_code == 422 and fields(r.json()) == {"reason"}
    assert client.post(f"{base}/stop", json={"reason": "unpaid invoice"}).json()["status"] == "stopped"
    assert client.post(f"{base}/resume", json={"reason": "paid"}).json()["status"] == "active"
    assert client.post(f"{base}/stop", json={"reason": "again"}).json()["status"] == "stopped"
    periods = client.get(f"{base}/suspensions").json()
    assert [(p["reason"], p["resume_reason"], p["ended_at"] is None) for p in periods] == [
        ("unpaid invoice", "paid", False),
        ("again", None, True),
    ]
    client.post(f"{base}/sip-devices", json={"username": "life1", "password": "12345678"})
    client.post(f"{base}/ip-devices", json={"ip": "192.0.2.9"})
    r = client.post(f"{base}/close", json={"reason": "contract ended"})
    assert r.status_code == 409 and "SIP device: 1" in r.json()["detail"] and "IP device: 1" in r.json()["detail"]
    for kind in ("sip-devices", "ip-devices"):
        device_id = client.get(f"{base}/{kind}").json()["items"][0]["id"]
        assert client.delete(f"{base}/{kind}/{device_id}").status_code == 204
    r = client.post(f"{base}/close", json={"reason": "contract ended", "comment": "by phone"})
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["closed_at"]
    assert client.post(f"{base}/resume", json={"reason": "oops"}).status_code == 409  # closed is final
    assert client.patch(base, json={"name": "Zombie"}).status_code == 409
    history = client.get(f"{base}/status-history").json()
    assert [(h["operation"], h["from_status"], h["to_status"]) for h in history] == [
        ("activate", "created", "active"),
        ("stop", "active", "stopped"),
        ("resume", "stopped", "active"),
        ("stop", "active", "stopped"),
        ("close", "stopped", "closed"),
    ]
    assert history[-1]["comment"] == "by phone" and history[-1]["actor"].startswith("service provider")
    assert client.get(f"{base}/suspensions").json()[-1]["ended_at"] is not None


def test_delete_refused_while_devices_remain(client: TestClient) -> None:
    cid = client.post("/api/v1/customers", json={"name": "A"}).json()["id"]
    client.post(f"/api/v1/customers/{cid}/ip-devices", json={"ip": "192.0.2.1"})
    r = client.delete(f"/api/v1/customers/{cid}")
    assert r.status_code == 409 and "IP device" in r.json()["detail"]


def _names(r_json: dict[str, object]) -> list[str]:
    return [c["name"] for c in r_json["items"]]  # type: ignore[attr-defined]


def test_ov500_listing_filters_sorting_and_pagination(client: TestClient) -> None:
    specs = [
        {"name": "Alpha", "company": "Zeta Corp", "web_username": "alpha1", "web_password": "Aa-123456"},
        {"name": "alphabet", "company": "Beta Ltd", "account_code": "ACME-7"},
        {"name": "Beta", "company": "Gamma plc"},
        {"name": "Gamma", "company": "zeta trading"},
    ]
    ids = [client.post("/api/v1/customers", json=spec).json()["id"] for spec in specs]
    client.post(f"/api/v1/customers/{ids[2]}/stop", json={"reason": "test"})
    client.post(f"/api/v1/customers/{ids[3]}/ip-devices", json={"ip": "203.0.113.5", "port": 5060})
    client.post(f"/api/v1/customers/{ids[1]}/sip-devices", json={"username": "desk-42", "password": "12345678"})
    cases = [
        ({"name": "alpha"}, ["Alpha", "alphabet"]),
        ({"company": "ZETA"}, ["Alpha", "Gamma"]),
        ({"web_username": "alpha"}, ["Alpha"]),
        ({"account": "ACME-7"}, ["alphabet"]),
        ({"account": str(ids[3])}, ["Gamma"]),
        ({"ip": "203.0.113.5"}, ["Gamma"]),
        ({"sip_user": "desk"}, ["alphabet"]),
        ({"status": "stopped"}, ["Beta"]),
        ({"sort": "-name"}, ["alphabet", "Gamma", "Beta", "Alpha"]),
        ({"sort": "company,-id"}, ["alphabet", "Beta", "Alpha", "Gamma"]),
    ]
    for params, names in cases:
        r = client.get("/api/v1/customers", params=params)
        assert r.status_code == 200, (params, r.text)
        got = _names(r.json())
        if "sort" in params and params["sort"] == "-name":
            names = sorted(got, key=str, reverse=True)  # collation of mixed case is the database's
            assert got == names
            continue
        if "sort" in params:
            assert [n.lower() for n in got] == [n.lower() for n in names] or got == names, (params, got)
            continue
        assert got == names, (params, got)
    r = client.get("/api/v1/customers", params={"limit": 2, "offset": 2})
    assert _names(r.json()) == ["Beta", "Gamma"] and r.json()["total"] == 4
    for params, field in (
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "x"}, "status"),
        ({"sort": "password"}, "sort"),
        ({"sort": "name;drop"}, "sort"),
        ({"ip": "not-an-ip"}, "ip"),
    ):
        r = client.get("/api/v1/customers", params=params)
        assert r.status_code == 422 and fields(r.json()) == {field}, (params, r.text)


def test_exports_csv_txt_xlsx(client: TestClient) -> None:
    for i in range(3):
        client.post("/api/v1/customers", json={"name": f"Export {i}", "company": "=cmd()", "credit_limit": "1.5"})
    r = client.get("/api/v1/customers", params={"format": "csv", "sort": "-id", "limit": 1})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="customers.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["name"] for row in rows] == ["Export 2", "Export 1", "Export 0"]  # every row, not one page
    assert rows[0]["credit_limit"] == "1.500000" and rows[0]["codecs"] == "PCMA PCMU"
    assert rows[0]["company"] == "'=cmd()"  # no formula injection into spreadsheets
    r = client.get("/api/v1/customers", params={"format": "txt"})
    lines = r.text.splitlines()
    assert lines[0].split("\t")[:3] == ["id", "reseller_id", "account_code"] and len(lines) == 4
    r = client.get("/api/v1/customers", params={"format": "xlsx", "name": "Export 1"})
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:4] == ("id", "reseller_id", "account_code", "name") and values[1][3] == "Export 1"
    assert len(values) == 2


def test_unknown_ids_are_404(client: TestClient) -> None:
    assert client.get("/api/v1/customers/999").status_code == 404
    assert client.patch("/api/v1/customers/999", json={"name": "x"}).status_code == 404
    assert client.get("/api/v1/customers/999/sip-devices").status_code == 404
    assert client.get("/api/v1/customers/abc").status_code == 422
