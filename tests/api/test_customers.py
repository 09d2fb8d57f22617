"""/api/v1/customers"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def _fields(response_json: dict[str, Any]) -> set[str]:
    return {str(err["loc"][1]) for err in response_json["detail"]}


def test_crud(client: TestClient) -> None:
    r = client.post("/api/v1/customers", json={"name": "Acme", "domain": "Acme.Example"})
    assert r.status_code == 201, r.text
    body = r.json()
    cid = body["id"]
    assert body["status"] == "active" and body["domain"] == "acme.example" and body["max_sessions"] == 0
    assert body["created_at"].endswith(("Z", "+00:00"))
    assert client.get(f"/api/v1/customers/{cid}").json() == body

    r = client.patch(f"/api/v1/customers/{cid}", json={"name": "Acme Ltd", "max_sessions": 10, "status": "stopped"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["max_sessions"], r.json()["status"]) == ("Acme Ltd", 10, "stopped")

    assert client.delete(f"/api/v1/customers/{cid}").status_code == 204
    assert client.get(f"/api/v1/customers/{cid}").status_code == 404
    assert client.delete(f"/api/v1/customers/{cid}").status_code == 404


def test_only_the_name_is_required(client: TestClient) -> None:
    r = client.post("/api/v1/customers", json={})
    assert r.status_code == 422 and _fields(r.json()) == {"name"}
    assert client.post("/api/v1/customers", json={"name": "Solo"}).status_code == 201


def test_invalid_fields_are_named(client: TestClient) -> None:
    cases = [
        ({"name": "x", "domain": "not a domain"}, {"domain"}),
        ({"name": "x", "status": "sleeping"}, {"status"}),
        ({"name": "x", "max_sessions": -1}, {"max_sessions"}),
        ({"name": "x", "cps": "many"}, {"cps"}),
        ({"name": "   "}, {"name"}),
        ({"name": "x", "colour": "red"}, {"colour"}),
        ({"name": "x", "reseller_id": 424242}, {"reseller_id"}),
    ]
    for payload, fields in cases:
        r = client.post("/api/v1/customers", json=payload)
        assert r.status_code == 422, (payload, r.text)
        assert _fields(r.json()) == fields, (payload, r.json())
    cid = client.post("/api/v1/customers", json={"name": "ok"}).json()["id"]
    r = client.patch(f"/api/v1/customers/{cid}", json={"name": None})
    assert r.status_code == 422 and _fields(r.json()) == {"name"}


def test_conflicts(client: TestClient) -> None:
    a = client.post("/api/v1/customers", json={"name": "A", "domain": "a.example"}).json()
    r = client.post("/api/v1/customers", json={"name": "B", "domain": "A.EXAMPLE"})
    assert r.status_code == 409 and r.json()["field"] == "domain" and "domain" in r.json()["detail"]
    r = client.patch(f"/api/v1/customers/{a['id']}", json={"domain": "other.example"})
    assert r.status_code == 409 and r.json()["field"] == "domain"
    assert client.patch(f"/api/v1/customers/{a['id']}", json={"status": "closed"}).status_code == 200
    r = client.patch(f"/api/v1/customers/{a['id']}", json={"status": "active"})
    assert r.status_code == 409 and r.json()["field"] == "status"


def test_delete_refused_while_devices_remain(client: TestClient) -> None:
    cid = client.post("/api/v1/customers", json={"name": "A"}).json()["id"]
    client.post(f"/api/v1/customers/{cid}/ip-devices", json={"ip": "192.0.2.1"})
    r = client.delete(f"/api/v1/customers/{cid}")
    assert r.status_code == 409 and "IP device" in r.json()["detail"]


def test_list_filters_and_pagination(client: TestClient) -> None:
    for name in ("Alpha", "alphabet", "Beta", "Gamma"):
        client.post("/api/v1/customers", json={"name": name})
    client.patch("/api/v1/customers/3", json={"status": "stopped"})
    r = client.get("/api/v1/customers", params={"name": "alpha"})
    assert [c["name"] for c in r.json()["items"]] == ["Alpha", "alphabet"]
    r = client.get("/api/v1/customers", params={"status": "stopped"})
    assert [c["name"] for c in r.json()["items"]] == ["Beta"]
    r = client.get("/api/v1/customers", params={"limit": 2, "offset": 2})
    assert [c["name"] for c in r.json()["items"]] == ["Beta", "Gamma"] and r.json()["total"] == 4
    for params, field in (({"limit": 0}, "limit"), ({"offset": -1}, "offset"), ({"status": "x"}, "status")):
        r = client.get("/api/v1/customers", params=params)
        assert r.status_code == 422 and _fields(r.json()) == {field}


def test_unknown_ids_are_404(client: TestClient) -> None:
    assert client.get("/api/v1/customers/999").status_code == 404
    assert client.patch("/api/v1/customers/999", json={"name": "x"}).status_code == 404
    assert client.get("/api/v1/customers/999/sip-devices").status_code == 404
    assert client.get("/api/v1/customers/abc").status_code == 422
