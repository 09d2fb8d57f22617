"""DIDs (single and ranges), number translation rules, carriers and dialing routes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import Tenants, bearer, fields


def test_dids_single_range_conflicts_and_destinations(client: TestClient, tenants: Tenants) -> None:
    cid = client.post("/api/v1/customers", json={"name": "DID owner"}, headers=tenants.a).json()["id"]
    dev = client.post(f"/api/v1/customers/{cid}/sip-devices", json={"username": "reception", "password": "12345678"})
    device_id = dev.json()["id"]
    r = client.post(
        "/api/v1/dids",
        json={"number": "+44 20 7946 0000", "customer_id": cid, "destination_type": "sip_device",
              "destination": str(device_id)},
        headers=tenants.a,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    did = r.json()
    assert (did["number"], did["reseller_id"], did["customer_id"]) == ("442079460000", tenants.a_id, cid)
    r = client.post("/api/v1/dids", json={"number": "442079460000"}, headers=tenants.a)
    assert r.status_code == 409 and r.json()["field"] == "number"
    r = client.post("/api/v1/dids/range", json={"start": "0201230000", "count": 100}, headers=tenants.a)
    assert r.status_code == 201 and len(r.json()) == 100
    assert r.json()[0]["number"] == "0201230000" and r.json()[-1]["number"] == "0201230099"
    r = client.post("/api/v1/dids/range", json={"start": "0201230090", "count": 20}, headers=tenants.a)
    assert r.status_code == 409 and "10 number(s)" in r.json()["detail"]
    assert client.get("/api/v1/dids", params={"number": "020123", "limit": 1}, headers=tenants.a).json()["total"] == 100
    for payload, field in (
        ({"number": "12ab"}, "number"),
        ({"number": "4412", "destination_type": "sip_device", "destination": "1"}, "destination_type"),
        ({"number": "4413", "customer_id": cid, "destination_type": "sip_device", "destination": "999"}, "destination"),
        ({"number": "4414", "customer_id": cid, "destination_type": "pstn", "destination": "call me"}, "destination"),
        (
            {"number": "4415", "customer_id": cid, "destination_type": "sip_uri", "destination": "http://x"},
            "destination",
        ),
        ({"number": "4416", "destination_type": "fax"}, "destination_type"),
        ({"number": "4417", "customer_id": 99999}, "customer_id"),
    ):
        r = client.post("/api/v1/dids", json=payload, headers=tenants.a)
        assert r.status_code == 422 and fields(r.json()) == {field}, (payload, r.text)
    r = client.post(
        "/api/v1/dids",
        json={
            "number": "4418",
            "customer_id": cid,
            "destination_type": "sip_uri",
            "destination": "sip:pbx@example.com",
        },
        headers=tenants.a,
    )
    assert r.status_code == 201
    # The device a DID points at cannot be deleted from under it.
    r = client.delete(f"/api/v1/customers/{cid}/sip-devices/{device_id}")
    assert r.status_code == 409 and "442079460000" in r.json()["detail"]
    # Another reseller sees none of it; the customer may re-point its own DID, nothing more.
    assert client.get(f"/api/v1/dids/{did['id']}", headers=tenants.b).status_code == 404
    assert client.get("/api/v1/dids", headers=tenants.b).json()["total"] == 0
    customer = bearer(client.post("/api/v1/tokens", json={"kind": "customer", "owner_id": cid}).json()["token"])
    r = client.patch(f"/api/v1/dids/{did['id']}", json={"destination_type": "pstn", "destination": "+442079460001"},
                     headers=customer)  # fmt: skip
    assert r.status_code == 200 and r.json()["destination_type"] == "pstn"
    assert client.patch(f"/api/v1/dids/{did['id']}", json={"max_sessions": 99}, headers=customer).status_code == 403
    assert client.delete(f"/api/v1/dids/{did['id']}", headers=customer).status_code == 403
    assert client.get("/api/v1/dids", headers=customer).json()["total"] == 2
    # Closing the customer is refused while it holds DIDs.
    r = client.post(f"/api/v1/customers/{cid}/close", json={"reason": "done"})
    assert r.status_code == 409 and "DID: 2" in r.json()["detail"]


def test_translation_rules_of_the_four_kinds(client: TestClient, tenants: Tenants) -> None:
    cid = client.post("/api/v1/customers", json={"name": "Translated"}, headers=tenants.a).json()["id"]
    base = f"/api/v1/customers/{cid}/translation-rules"
    for kind, match, replacement in (
        ("destination", "0", "44"),
        ("destination", "00", ""),
        ("source", "", "+44"),
        ("did_source", "+", "00"),
        ("did_destination", "44", "0"),
    ):
        r = client.post(base, json={"kind": kind, "match": match, "replacement": replacement}, headers=tenants.a)
        assert r.status_code == 201, r.text
    rules = client.get(base, params={"kind": "destination"}).json()
    assert [(x["match"], x["position"]) for x in rules] == [("0", 0), ("00", 1)]
    r = client.patch(f"{base}/{rules[1]['id']}", json={"position": 0}, headers=tenants.a)
    assert r.status_code == 200
    for payload, field in (
        ({"kind": "both", "match": "0", "replacement": "1"}, "kind"),
        ({"kind": "source", "match": "0.*", "replacement": "1"}, "match"),
        ({"kind": "source", "match": "0", "replacement": "abc"}, "replacement"),
    ):
        r = client.post(base, json=payload)
        assert r.status_code == 422 and fields(r.json()) == {field}
    customer = bearer(client.post("/api/v1/tokens", json={"kind": "customer", "owner_id": cid}).json()["token"])
    assert len(client.get(base, headers=customer).json()) == 5
    r = client.post(base, json={"kind": "source", "match": "1", "replacement": "2"}, headers=customer)
    assert r.status_code == 403
    assert client.get(base, headers=tenants.b).status_code == 404


def test_carriers_and_routes_are_the_providers(client: TestClient, tenants: Tenants) -> None:
    r = client.post(
        "/api/v1/carriers",
        json={"name": "Carrier One", "host": "SBC.Carrier-One.example", "transport": "tcp", "strip_prefix": "00",
              "add_prefix": "+", "max_sessions": 300},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    one = r.json()
    assert one["host"] == "sbc.carrier-one.example" and one["port"] == 5060
    two = client.post("/api/v1/carriers", json={"name": "Carrier Two", "host": "192.0.2.50"}).json()
    assert client.post("/api/v1/carriers", json={"name": "Carrier Two", "host": "h"}).status_code == 409
    for payload, field in (
        ({"name": "x", "host": "bad host!"}, "host"),
        ({"name": "x", "host": "h", "port": 70000}, "port"),
        ({"name": "x", "host": "h", "transport": "sctp"}, "transport"),
        ({"name": "x", "host": "h", "strip_prefix": "a"}, "strip_prefix"),
    ):
        r = client.post("/api/v1/carriers", json=payload)
        assert r.status_code == 422 and fields(r.json()) == {field}, (payload, r.text)
    r = client.post(
        "/api/v1/routes",
        json={"name": "UK", "dial_pattern": "44", "strategy": "weighted",
              "carriers": [{"carrier_id": one["id"], "weight": 3}, {"carrier_id": two["id"], "weight": 1}]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    route = r.json()
    assert [(c["carrier_id"], c["position"], c["weight"]) for c in route["carriers"]] == [
        (one["id"], 0, 3),
        (two["id"], 1, 1),
    ]
    r = client.patch(f"/api/v1/routes/{route['id']}", json={"carriers": [{"carrier_id": two["id"]}]})
    assert r.status_code == 200 and [c["carrier_id"] for c in r.json()["carriers"]] == [two["id"]]
    r = client.post("/api/v1/routes", json={"name": "dup", "carriers": [{"carrier_id": 1}, {"carrier_id": 1}]})
    assert r.status_code == 422 and fields(r.json()) == {"carriers"}
    assert client.delete(f"/api/v1/carriers/{two['id']}").status_code == 409  # still in a route
    # Resellers get 403 whatever the id: the answer says nothing about what exists.
    for url in ("/api/v1/carriers", f"/api/v1/carriers/{one['id']}", "/api/v1/carriers/999", "/api/v1/routes"):
        assert client.get(url, headers=tenants.a).status_code == 403
    csv_text = client.get("/api/v1/routes", params={"format": "csv"}).text
    assert csv_text.splitlines()[0].startswith("id,name,dial_pattern,strategy")
