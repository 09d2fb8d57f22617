"""/api/v1/customers/{id}/sip-devices"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from provisioning.credentials import compute_ha1
from provisioning.models import SipDevice
from provisioning.snapshot import SnapshotWatcher


def _customer(client: TestClient, **kw: object) -> int:
    r = client.post("/api/v1/customers", json={"name": "Acme", **kw})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _fields(response_json: dict[str, Any]) -> set[str]:
    return {str(err["loc"][1]) for err in response_json["detail"]}


def test_crud_and_digests(client: TestClient, migrated_db: sessionmaker[Session]) -> None:
    cid = _customer(client)
    base = f"/api/v1/customers/{cid}/sip-devices"
    r = client.post(
        base,
        json={
            "username": "alice",
            "password": "correct horse",
            "extension": "100",
            "caller_number": "+15551230100",
            "display_name": "Alice A.",
            "allowed_ips": ["192.0.2.0/24", "2001:db8::1"],
        },
    )
    assert r.status_code == 201, r.text
    dev = r.json()
    assert "password" not in dev and not any(k.startswith("ha1") for k in dev)
    assert dev["realm"] == "test-realm" and dev["status"] == "active"
    assert dev["allowed_ips"] == ["192.0.2.0/24", "2001:db8::1"]
    with migrated_db() as s:
        row = s.get(SipDevice, dev["id"])
        assert row is not None
        assert (row.ha1_md5, row.ha1_sha256) == compute_ha1("alice", "test-realm", "correct horse")

    assert client.get(f"{base}/{dev['id']}").json() == dev
    r = client.patch(f"{base}/{dev['id']}", json={"password": "battery staple", "status": "inactive"})
    assert r.status_code == 200 and r.json()["status"] == "inactive"
    with migrated_db() as s:
        row = s.get(SipDevice, dev["id"])
        assert row is not None and row.ha1_md5 == compute_ha1("alice", "test-realm", "battery staple")[0]

    listing = client.get(base, params={"username": "ALI"}).json()
    assert [d["username"] for d in listing["items"]] == ["alice"]
    assert client.get(base, params={"status": "active"}).json()["total"] == 0

    assert client.delete(f"{base}/{dev['id']}").status_code == 204
    assert client.get(f"{base}/{dev['id']}").status_code == 404


def test_validation_names_the_field(client: TestClient) -> None:
    base = f"/api/v1/customers/{_customer(client)}/sip-devices"
    good = {"username": "bob", "password": "12345678"}
    cases = [
        ({"password": "12345678"}, {"username"}),
        ({"username": "bob"}, {"password"}),
        ({**good, "username": "bad name"}, {"username"}),
        ({**good, "username": "x" * 65}, {"username"}),
        ({**good, "username": "bob@example"}, {"username"}),
        ({**good, "password": "short"}, {"password"}),
        ({**good, "extension": "12a"}, {"extension"}),
        ({**good, "extension": "1234567890123456"}, {"extension"}),
        ({**good, "caller_number": "call me"}, {"caller_number"}),
        ({**good, "display_name": 'evil"\r\nVia: x'}, {"display_name"}),
        ({**good, "status": "on"}, {"status"}),
        ({**good, "cps": -1}, {"cps"}),
        ({**good, "allowed_ips": ["300.1.1.1"]}, {"allowed_ips"}),
        ({**good, "pasword": "typo-typo"}, {"pasword"}),
    ]
    for payload, fields in cases:
        r = client.post(base, json=payload)
        assert r.status_code == 422, (payload, r.text)
        assert _fields(r.json()) == fields, (payload, r.json())
    dev = client.post(base, json=good).json()
    r = client.patch(f"{base}/{dev['id']}", json={"username": "robert"})
    assert r.status_code == 422 and _fields(r.json()) == {"password"}
    r = client.patch(f"{base}/{dev['id']}", json={"status": None})
    assert r.status_code == 422 and _fields(r.json()) == {"status"}
    r = client.patch(f"{base}/{dev['id']}", json={"username": "robert", "password": "new-secret"})
    assert r.status_code == 200 and r.json()["username"] == "robert"


def test_conflicts(client: TestClient) -> None:
    c1, c2 = _customer(client), _customer(client, name="Other")
    client.post(
        f"/api/v1/customers/{c1}/sip-devices", json={"username": "alice", "password": "12345678", "extension": "100"}
    )
    r = client.post(f"/api/v1/customers/{c2}/sip-devices", json={"username": "alice", "password": "12345678"})
    assert r.status_code == 409 and r.json()["field"] == "username"
    r = client.post(
        f"/api/v1/customers/{c1}/sip-devices", json={"username": "bob", "password": "12345678", "extension": "100"}
    )
    assert r.status_code == 409 and r.json()["field"] == "extension"
    r = client.post(
        f"/api/v1/customers/{c2}/sip-devices", json={"username": "bob", "password": "12345678", "extension": "100"}
    )
    assert r.status_code == 201
    bob = r.json()["id"]
    r = client.patch(f"/api/v1/customers/{c2}/sip-devices/{bob}", json={"username": "alice", "password": "12345678"})
    assert r.status_code == 409 and r.json()["field"] == "username"


def test_devices_are_reached_through_their_own_customer_only(client: TestClient) -> None:
    c1, c2 = _customer(client), _customer(client, name="Other")
    dev = client.post(f"/api/v1/customers/{c1}/sip-devices", json={"username": "alice", "password": "12345678"}).json()
    for method in ("GET", "PATCH", "DELETE"):
        r = client.request(method, f"/api/v1/customers/{c2}/sip-devices/{dev['id']}", json={})
        assert r.status_code == 404, method
    assert (
        client.post("/api/v1/customers/999/sip-devices", json={"username": "x", "password": "12345678"}).status_code
        == 404
    )


def test_device_created_through_the_api_reaches_the_switch_within_a_second(
    client: TestClient, migrated_db: sessionmaker[Session]
) -> None:
    import time

    watcher = SnapshotWatcher(migrated_db).start()
    try:
        cid = _customer(client, domain="pbx.example")
        r = client.post(f"/api/v1/customers/{cid}/sip-devices", json={"username": "carol", "password": "12345678"})
        created = time.monotonic()
        while (info := watcher.device_by_username("carol")) is None:
            assert time.monotonic() - created < 1.0
            time.sleep(0.01)
        # What the registrar needs to challenge and verify is there, and correct.
        assert info.realm == "pbx.example" and info.id == r.json()["id"]
        assert info.ha1_md5 == compute_ha1("carol", "pbx.example", "12345678")[0]
        client.delete(f"/api/v1/customers/{cid}/sip-devices/{info.id}")
        deleted = time.monotonic()
        while watcher.device_by_username("carol") is not None:
            assert time.monotonic() - deleted < 1.0
            time.sleep(0.01)
    finally:
        watcher.stop()
