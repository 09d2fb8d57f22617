"""Reseller permissions are enforced; customers' self-care tokens change only their own business;
customers never see their reseller's commercial data; tariffs are in the account's currency."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from provisioning import passwords
from provisioning.models import cdrs
from provisioning.repo import auth as auth_repo
from provisioning.repo import customers as customers_repo
from provisioning.tokens import create_token
from tests.api.conftest import Tenants, bearer, fields


def _customer_token(migrated_db: sessionmaker[Session], customer_id: int) -> dict[str, str]:
    with migrated_db() as s:
        token = create_token(s, kind="customer", owner_id=customer_id, label="self-care")
        s.commit()
    return bearer(token)


def _without(client: TestClient, tenants: Tenants, permission: str) -> None:
    from provisioning.models import RESELLER_PERMISSIONS

    keep = [p for p in RESELLER_PERMISSIONS if p != permission]
    r = client.patch(f"/api/v1/resellers/{tenants.a_id}", json={"permissions": keep})
    assert r.status_code == 200, r.text


def test_manage_devices_is_enforced_for_sip_and_ip_devices(client: TestClient, tenants: Tenants) -> None:
    cid = client.post("/api/v1/customers", json={"name": "C", "reseller_id": tenants.a_id}).json()["id"]
    sip = f"/api/v1/customers/{cid}/sip-devices"
    ipd = f"/api/v1/customers/{cid}/ip-devices"
    dev = client.post(sip, json={"username": "perm1", "password": "12345678"}, headers=tenants.a).json()["id"]
    ip = client.post(ipd, json={"ip": "192.0.2.50"}, headers=tenants.a).json()["id"]
    _without(client, tenants, "manage_devices")
    refused = [
        client.post(sip, json={"username": "perm2", "password": "12345678"}, headers=tenants.a),
        client.patch(f"{sip}/{dev}", json={"max_sessions": 3}, headers=tenants.a),
        client.delete(f"{sip}/{dev}", headers=tenants.a),
        client.post(ipd, json={"ip": "192.0.2.51"}, headers=tenants.a),
        client.patch(f"{ipd}/{ip}", json={"cps": 3}, headers=tenants.a),
        client.delete(f"{ipd}/{ip}", headers=tenants.a),
        # The same answer for an id that does not exist: the permission is checked first.
        client.patch(f"{sip}/999999", json={"max_sessions": 3}, headers=tenants.a),
    ]
    for r in refused:
        assert r.status_code == 403 and "manage_devices" in r.json()["detail"], r.text
    # Reading stays allowed; a child of A cannot hold what A lacks, and A's customer is unchanged.
    assert client.get(f"{sip}/{dev}", headers=tenants.a).json()["max_sessions"] == 0
    assert client.get(ipd, headers=tenants.a).json()["total"] == 1
    # With the permission back, the same calls work.
    _without(client, tenants, "none")
    assert client.patch(f"{sip}/{dev}", json={"max_sessions": 3}, headers=tenants.a).status_code == 200
    assert client.delete(f"{ipd}/{ip}", headers=tenants.a).status_code == 204


@pytest.mark.parametrize(
    "permission",
    ["manage_dids", "manage_child_resellers", "approve_stop_resume", "approve_customer_close"],
)
def test_every_other_permission_is_enforced(client: TestClient, tenants: Tenants, permission: str) -> None:
    cid = client.post("/api/v1/customers", json={"name": "C", "reseller_id": tenants.a_id}).json()["id"]
    did = client.post("/api/v1/dids", json={"number": "4420700009", "customer_id": cid}, headers=tenants.a).json()
    _without(client, tenants, permission)
    calls: dict[str, list[Any]] = {
        "manage_dids": [
            lambda: client.post("/api/v1/dids", json={"number": "4420700010"}, headers=tenants.a),
            lambda: client.patch(f"/api/v1/dids/{did['id']}", json={"customer_id": None}, headers=tenants.a),
            lambda: client.delete(f"/api/v1/dids/{did['id']}", headers=tenants.a),
        ],
        "manage_child_resellers": [
            lambda: client.post("/api/v1/resellers", json={"name": "child"}, headers=tenants.a),
            lambda: client.patch(f"/api/v1/resellers/{tenants.a1_id}", json={"company": "x"}, headers=tenants.a),
            lambda: client.delete(f"/api/v1/resellers/{tenants.a1_id}", headers=tenants.a),
        ],
        "approve_stop_resume": [
            lambda: client.post(f"/api/v1/customers/{cid}/stop", json={"reason": "r"}, headers=tenants.a),
            lambda: client.post(f"/api/v1/customers/{cid}/resume", json={"reason": "r"}, headers=tenants.a),
        ],
        "approve_customer_close": [
            lambda: client.post(f"/api/v1/customers/{cid}/close", json={"reason": "r"}, headers=tenants.a),
        ],
    }
    for call in calls[permission]:
        r = call()
        assert r.status_code == 403 and permission in r.json()["detail"], r.text


def test_customer_self_care_changes_only_its_own_business(
    client: TestClient, anon: TestClient, migrated_db: sessionmaker[Session]
) -> None:
    tariff = client.post("/api/v1/tariffs", json={"name": "other"}).json()["id"]
    cid = client.post("/api/v1/customers", json={"name": "Self", "web_username": "selfie"}).json()["id"]
    own = _customer_token(migrated_db, cid)
    before = client.get(f"/api/v1/customers/{cid}").json()
    reseller_fields = {
        "max_sessions": 100,
        "cps": 50,
        "trunk_channel_max": 10,
        "fraud_limit_default": "1000",
        "fraud_limit_ceiling": "1000",
        "credit_limit": "1000",
        "tariff_id": tariff,
        "billing_type": "prepaid",
        "codecs": ["PCMU"],
        "cli": "442079460000",
        "name": "Renamed",
        "customer_type": "DEMO",
    }
    for field, value in reseller_fields.items():
        r = anon.patch(f"/api/v1/customers/{cid}", json={field: value}, headers=own)
        assert r.status_code == 403 and r.json()["field"] == field and field in r.json()["detail"], r.text
    r = anon.patch(f"/api/v1/customers/{cid}", json={"status": "closed"}, headers=own)
    assert r.status_code in (403, 422)  # not a field of PATCH at all (the schema refuses it first)
    r = anon.patch(f"/api/v1/customers/{cid}", json={"email": "me@self.example", "cps": 5}, headers=own)
    assert r.status_code == 403 and r.json()["field"] == "cps"
    assert client.get(f"/api/v1/customers/{cid}").json() == before  # nothing of a refused PATCH was applied
    # Contact details and the web password are the customer's own.
    contact = {"email": "me@self.example", "phone": "+442079460001", "address": "1 Road", "city": "London"}
    r = anon.patch(f"/api/v1/customers/{cid}", json={**contact, "web_password": "New-pass-1!"}, headers=own)
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in contact} == contact
    assert anon.post("/api/v1/auth/login", json={"username": "selfie", "password": "New-pass-1!"}).status_code == 200

    # Devices: the secret and voicemail are the customer's; limits, caller number, addresses are not.
    base = f"/api/v1/customers/{cid}/sip-devices"
    dev = client.post(base, json={"username": "selfdev", "password": "12345678"}).json()["id"]
    for field, value in {
        "caller_number": "442079460000",
        "max_sessions": 10,
        "cps": 10,
        "allowed_ips": ["0.0.0.0/0"],
        "fraud_limit": "5",
        "status": "inactive",
        "username": "renamed",
    }.items():
        r = anon.patch(f"{base}/{dev}", json={field: value}, headers=own)
        assert r.status_code == 403 and r.json()["field"] == field, r.text
    r = anon.patch(
        f"{base}/{dev}",
        json={"password": "another-secret", "voicemail_enabled": True, "voicemail_email": "vm@self.example"},
        headers=own,
    )
    assert r.status_code == 200 and r.json()["voicemail_enabled"], r.text
    # A customer may create a device, but not with the reseller's settings.
    r = anon.post(base, json={"username": "selfdev2", "password": "12345678", "max_sessions": 5}, headers=own)
    assert r.status_code == 403 and r.json()["field"] == "max_sessions"
    assert anon.post(base, json={"username": "selfdev2", "password": "12345678"}, headers=own).status_code == 201
    r = anon.post(f"/api/v1/customers/{cid}/ip-devices", json={"ip": "192.0.2.77"}, headers=own)
    assert r.status_code == 403


def test_customers_do_not_see_the_resellers_commercial_data(
    client: TestClient, tenants: Tenants, migrated_db: sessionmaker[Session]
) -> None:
    wholesale = client.post("/api/v1/tariffs", json={"name": "wholesale"}).json()["id"]
    client.post(f"/api/v1/tariffs/{wholesale}/rates", json={"prefix": "44", "rate": "0.010000"})
    assert client.patch(f"/api/v1/resellers/{tenants.a_id}", json={"tariff_id": wholesale}).status_code == 200
    derived = {"name": "retail", "base_tariff_id": wholesale, "markup_percent": "25"}
    retail = client.post("/api/v1/tariffs", json=derived, headers=tenants.a).json()["id"]
    cid = client.post("/api/v1/customers", json={"name": "C", "tariff_id": retail}, headers=tenants.a).json()["id"]
    own = _customer_token(migrated_db, cid)
    # The reseller sees its own margin; its customer does not, in any form.
    assert client.get(f"/api/v1/tariffs/{retail}", headers=tenants.a).json()["markup_percent"] == "25.000000"
    mine = client.get(f"/api/v1/tariffs/{retail}", headers=own)
    assert mine.status_code == 200 and mine.json()["markup_percent"] is None and mine.json()["base_tariff_id"] is None
    listed = client.get("/api/v1/tariffs", headers=own).json()["items"]
    assert [t["id"] for t in listed] == [retail] and listed[0]["markup_percent"] is None
    assert listed[0]["base_tariff_id"] is None
    exported = client.get("/api/v1/tariffs", params={"format": "csv"}, headers=own).text
    header = next(csv.reader(io.StringIO(exported)))
    assert "markup_percent" not in header and "base_tariff_id" not in header
    # The reseller's buy tariff and its rates are not the customer's to read.
    assert client.get(f"/api/v1/tariffs/{wholesale}", headers=own).status_code == 404
    assert client.get(f"/api/v1/tariffs/{wholesale}/rates", headers=own).status_code == 404
    # Rated calls and invoices carry only the customer's own amounts.
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert not {"carrier_cost", "carrier_id", "reseller_debit"} & set(schemas["RatedCallPublic"]["properties"])
    assert not {"markup_percent", "carrier_cost"} & set(schemas["CustomerPublic"]["properties"])
    # CDRs: the carrier that terminated a call is the reseller's business, not the customer's.
    with migrated_db() as s:
        s.execute(insert(cdrs), [{
            "call_id": "01JCUSTOMERVIEW0000000000", "sip_call_id": "cv@test", "customer_id": cid,
            "caller_number": "1001", "dialled_number": "441234", "start_ms": 1, "end_ms": 2, "duration_ms": 1,
            "sip_code": 200, "q850_cause": 16, "disposition": "ANSWERED", "direction": "outbound",
            "call_type": "outbound", "source_ip": "192.0.2.1", "hangup_by": "caller",
            "reseller_path": f"/{tenants.a_id}/", "did": "", "codecs": "PCMA", "carrier_id": 7,
        }])
        s.commit()
    as_customer = client.get("/api/v1/cdrs", headers=own).json()["items"]
    as_reseller = client.get("/api/v1/cdrs", params={"customer_id": cid}, headers=tenants.a).json()["items"]
    assert len(as_customer) == len(as_reseller) == 1
    assert as_customer[0]["carrier_id"] is None and as_reseller[0]["carrier_id"] == 7
    exported = client.get("/api/v1/cdrs", params={"format": "csv"}, headers=own).text
    assert "carrier_id" not in next(csv.reader(io.StringIO(exported)))


def test_tariffs_and_ledger_are_in_the_accounts_currency(client: TestClient, tenants: Tenants) -> None:
    usd = client.post("/api/v1/tariffs", json={"name": "usd", "currency": "USD"}, headers=tenants.a).json()["id"]
    gbp = client.post("/api/v1/tariffs", json={"name": "gbp"}, headers=tenants.a).json()["id"]
    r = client.post("/api/v1/customers", json={"name": "C", "tariff_id": usd}, headers=tenants.a)
    assert r.status_code == 422 and fields(r.json()) == {"tariff_id"} and "USD" in r.text
    r = client.post("/api/v1/customers", json={"name": "C", "tariff_id": usd, "currency": "USD"}, headers=tenants.a)
    assert r.status_code == 201, r.text
    cid = client.post("/api/v1/customers", json={"name": "D", "tariff_id": gbp}, headers=tenants.a).json()["id"]
    r = client.patch(f"/api/v1/customers/{cid}", json={"tariff_id": usd}, headers=tenants.a)
    assert r.status_code == 422 and fields(r.json()) == {"tariff_id"}
    r = client.patch(f"/api/v1/customers/{cid}", json={"currency": "EUR"}, headers=tenants.a)
    assert r.status_code == 422 and fields(r.json()) == {"currency"}
    # A tariff in use cannot change its currency away from its accounts'.
    r = client.patch(f"/api/v1/tariffs/{gbp}", json={"currency": "EUR"}, headers=tenants.a)
    assert r.status_code == 422 and fields(r.json()) == {"currency"}
    # A reseller's buy tariff is in the reseller's currency.
    provider_usd = client.post("/api/v1/tariffs", json={"name": "p-usd", "currency": "USD"}).json()["id"]
    r = client.patch(f"/api/v1/resellers/{tenants.a_id}", json={"tariff_id": provider_usd})
    assert r.status_code == 422 and fields(r.json()) == {"tariff_id"}
    # Payments carry no currency: they are in the customer's; a currency field is refused.
    r = client.post(f"/api/v1/customers/{cid}/payments", json={"amount": "5", "currency": "USD"}, headers=tenants.a)
    assert r.status_code == 422 and fields(r.json()) == {"currency"}


def test_lockout_for_customers_and_administrators_burns_no_scrypt(
    client: TestClient, anon: TestClient, tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.post("/api/v1/customers", json={"name": "L", "web_username": "lockme", "web_password": "Lock-pass-1"})
    r = client.post(
        "/api/v1/admin-users",
        json={"username": "lock@a.example", "password": "Lock-pass-1", "name": "L"},
        headers=tenants.a,
    )
    assert r.status_code == 201, r.text
    checks: list[str] = []
    real_verify = auth_repo.verify_password

    def counting(password: str, stored: str | None) -> bool:
        checks.append(password)
        return real_verify(password, stored)

    monkeypatch.setattr(auth_repo, "verify_password", counting)
    for login in ("lockme", "lock@a.example"):
        for _ in range(5):
            assert anon.post("/api/v1/auth/login", json={"username": login, "password": "Wrong-1!"}).status_code == 401
        checked = len(checks)
        for _ in range(3):
            r = anon.post("/api/v1/auth/login", json={"username": login, "password": "Lock-pass-1"})
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert len(checks) == checked  # refused before any password hash is computed


def test_passwords_are_hashed_before_the_write_transaction_locks(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real_hash, real_get = passwords.hash_password, customers_repo.get_customer
    real_owner = customers_repo._owner_reseller

    def hashing(password: str, *, n: int | None = None) -> str:
        order.append("hash")
        return real_hash(password, n=n)

    def locking(*args: Any, **kwargs: Any) -> Any:
        order.append("lock" if kwargs.get("for_update") else "read")
        return real_get(*args, **kwargs)

    def owner(*args: Any, **kwargs: Any) -> Any:
        order.append("query")
        return real_owner(*args, **kwargs)

    monkeypatch.setattr(customers_repo, "hash_password", hashing)
    monkeypatch.setattr(customers_repo, "get_customer", locking)
    monkeypatch.setattr(customers_repo, "_owner_reseller", owner)
    r = client.post("/api/v1/customers", json={"name": "H", "web_username": "hashy", "web_password": "Hash-pass-1"})
    assert r.status_code == 201 and order[:2] == ["hash", "query"], order
    order.clear()
    r = client.patch(f"/api/v1/customers/{r.json()['id']}", json={"web_password": "Hash-pass-2"})
    assert r.status_code == 200 and order[:2] == ["hash", "lock"], order
