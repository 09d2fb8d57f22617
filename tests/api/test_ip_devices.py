"""/api/v1/customers/{id}/ip-devices"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def _customer(client: TestClient) -> int:
    return int(client.post("/api/v1/customers", json={"name": "PBX owner"}).json()["id"])


def _fields(response_json: dict[str, Any]) -> set[str]:
    return {str(err["loc"][1]) for err in response_json["detail"]}


def test_crud(client: TestClient) -> None:
    base = f"/api/v1/customers/{_customer(client)}/ip-devices"
    r = client.post(base, json={"ip": "2001:DB8:0::10", "port": 5060, "tech_prefix": "0044", "max_sessions": 30})
    assert r.status_code == 201, r.text
    dev = r.json()
    assert (dev["ip"], dev["port"], dev["tech_prefix"], dev["status"]) == ("2001:db8::10", 5060, "0044", "active")
    assert client.get(f"{base}/{dev['id']}").json() == dev
    r = client.patch(f"{base}/{dev['id']}", json={"port": None, "status": "inactive"})
    assert r.status_code == 200 and r.json()["port"] is None and r.json()["status"] == "inactive"
    assert client.get(base, params={"ip": "2001:db8::10"}).json()["total"] == 1
    assert client.delete(f"{base}/{dev['id']}").status_code == 204
    assert client.get(f"{base}/{dev['id']}").status_code == 404


def test_validation_and_conflicts(client: TestClient) -> None:
    base = f"/api/v1/customers/{_customer(client)}/ip-devices"
    for payload, fields in (
        ({}, {"ip"}),
        ({"ip": "192.0.2.300"}, {"ip"}),
        ({"ip": "example.com"}, {"ip"}),
        ({"ip": "192.0.2.1", "port": 0}, {"port"}),
        ({"ip": "192.0.2.1", "port": 70000}, {"port"}),
        ({"ip": "192.0.2.1", "tech_prefix": "ab"}, {"tech_prefix"}),
    ):
        r = client.post(base, json=payload)
        assert r.status_code == 422 and _fields(r.json()) == fields, (payload, r.text)
    assert client.post(base, json={"ip": "192.0.2.1", "port": 5060}).status_code == 201
    assert client.post(base, json={"ip": "192.0.2.1"}).status_code == 201
    assert client.post(base, json={"ip": "192.0.2.1", "port": 5080}).status_code == 201
    for payload in ({"ip": "192.0.2.1", "port": 5060}, {"ip": "192.0.2.1"}):
        r = client.post(base, json=payload)
        assert r.status_code == 409 and r.json()["field"] == "ip", payload
