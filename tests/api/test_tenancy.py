"""Tenancy through the API: another tenant's ids are 404, exactly like ids that do not exist."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from provisioning import repo
from provisioning.scope import PROVIDER
from provisioning.tokens import create_token


def test_reseller_and_customer_tokens_see_only_their_own(
    client: TestClient, migrated_db: sessionmaker[Session]
) -> None:
    with migrated_db() as s:
        mine = repo.create_reseller(s, scope=PROVIDER, name="Mine")
        other = repo.create_reseller(s, scope=PROVIDER, name="Other")
        s.flush()
        reseller_token = create_token(s, kind="reseller", owner_id=mine.id)
        s.commit()
        other_id = other.id
    theirs = client.post("/api/v1/customers", json={"name": "Theirs", "reseller_id": other_id}).json()["id"]
    client.post(f"/api/v1/customers/{theirs}/sip-devices", json={"username": "theirs", "password": "12345678"})

    as_reseller = {"Authorization": f"Bearer {reseller_token}"}
    r = client.post("/api/v1/customers", json={"name": "Own"}, headers=as_reseller)
    assert r.status_code == 201, r.text
    own = r.json()["id"]
    listing = client.get("/api/v1/customers", headers=as_reseller).json()
    assert [c["id"] for c in listing["items"]] == [own]
    for method, url in (
        ("GET", f"/api/v1/customers/{theirs}"),
        ("PATCH", f"/api/v1/customers/{theirs}"),
        ("DELETE", f"/api/v1/customers/{theirs}"),
        ("GET", f"/api/v1/customers/{theirs}/sip-devices"),
        ("POST", f"/api/v1/customers/{theirs}/sip-devices"),
        ("GET", f"/api/v1/customers/{theirs}/sip-devices/1"),
    ):
        body = {"username": "x", "password": "12345678"} if method == "POST" else {}
        r = client.request(method, url, headers=as_reseller, json=body)
        assert r.status_code == 404, (method, url, r.text)
    r = client.post("/api/v1/customers", json={"name": "Sneaky", "reseller_id": other_id}, headers=as_reseller)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "reseller_id"]

    with migrated_db() as s:
        customer_token = create_token(s, kind="customer", owner_id=own)
        s.commit()
    as_customer = {"Authorization": f"Bearer {customer_token}"}
    assert [c["id"] for c in client.get("/api/v1/customers", headers=as_customer).json()["items"]] == [own]
    assert client.get(f"/api/v1/customers/{theirs}", headers=as_customer).status_code == 404
    # Self-care manages its own devices, but not its account settings.
    r = client.post(
        f"/api/v1/customers/{own}/sip-devices", json={"username": "me", "password": "12345678"}, headers=as_customer
    )
    assert r.status_code == 201
    assert client.patch(f"/api/v1/customers/{own}", json={"max_sessions": 999}, headers=as_customer).status_code == 403
    assert client.post("/api/v1/customers", json={"name": "New"}, headers=as_customer).status_code == 403
