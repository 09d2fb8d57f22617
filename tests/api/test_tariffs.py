"""Tariffs and rates: the columns of docs/rating-spec.md, deck imports all-or-nothing, derivation."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import Tenants, fields

DATA = Path(__file__).resolve().parents[1] / "data" / "imports"


def _tariff(client: TestClient, **kw: object) -> int:
    r = client.post("/api/v1/tariffs", json={"name": "Wholesale", **kw})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _upload(client: TestClient, tariff_id: int, path: Path, **params: str) -> object:
    with path.open("rb") as fh:
        return client.post(
            f"/api/v1/tariffs/{tariff_id}/rates/import", files={"file": (path.name, fh, "text/csv")}, params=params
        )


def test_rates_crud_with_the_spec_rules(client: TestClient) -> None:
    tid = _tariff(client)
    base = f"/api/v1/tariffs/{tid}/rates"
    r = client.post(base, json={"prefix": "44", "destination": "UK", "rate": "0.0125", "increment": 6})
    assert r.status_code == 201, r.text
    rate = r.json()
    assert (rate["rate"], rate["connect_fee"], rate["initial_increment"], rate["increment"]) == (
        "0.012500",
        "0.000000",
        6,
        6,
    )
    assert rate["effective_from"] is None and rate["effective_to"] is None
    # The same prefix in an overlapping window is a conflict naming the other rate.
    r = client.post(base, json={"prefix": "44", "rate": "0.02", "effective_from": "2026-01-01T00:00:00Z"})
    assert r.status_code == 409 and str(rate["id"]) in r.json()["detail"]
    for payload, field in (
        ({"prefix": "4a", "rate": "1"}, "prefix"),
        ({"prefix": "44", "rate": "-1"}, "rate"),
        ({"prefix": "44", "rate": "0.0000001"}, "rate"),
        ({"prefix": "44", "rate": "1", "increment": 0}, "increment"),
        ({"prefix": "44", "rate": "1", "effective_from": "2026-01-01T00:00:00"}, "effective_from"),
    ):
        r = client.post(base, json=payload)
        assert r.status_code == 422 and fields(r.json()) == {field}, (payload, r.text)
    r = client.post(
        base,
        json={
            "prefix": "44",
            "rate": "0.01",
            "effective_from": "2027-01-01T00:00:00Z",
            "effective_to": "2026-01-01T00:00:00Z",
        },
    )
    assert r.status_code == 422 and fields(r.json()) == {"effective_to"}
    r = client.patch(f"{base}/{rate['id']}", json={"effective_to": "2026-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["effective_to"].startswith("2026-01-01T00:00:00")
    r = client.post(base, json={"prefix": "44", "rate": "0.02", "effective_from": "2026-01-01T00:00:00Z"})
    assert r.status_code == 201  # adjacent windows do not overlap
    assert client.get(base, params={"prefix": "4"}).json()["total"] == 2
    assert client.delete(f"{base}/{rate['id']}").status_code == 204


def test_deck_import_stores_all_rows_or_none(client: TestClient) -> None:
    tid = _tariff(client)
    r = _upload(client, tid, DATA / "deck_ok.csv")
    assert r.status_code == 200, r.text  # type: ignore[attr-defined]
    assert r.json() == {"tariff_id": tid, "mode": "replace", "rows": 4, "replaced": 0}  # type: ignore[attr-defined]
    rows = client.get(f"/api/v1/tariffs/{tid}/rates", params={"sort": "prefix,effective_from"}).json()["items"]
    assert [(x["prefix"], x["rate"]) for x in rows] == [
        ("1", "0.005000"),
        ("44", "0.010000"),
        ("447", "0.045000"),
        ("447", "0.040000"),
    ]
    assert rows[0]["increment"] == 60 and rows[0]["initial_increment"] == 60  # spec defaults
    r = _upload(client, tid, DATA / "deck_bad.csv")
    assert r.status_code == 422  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    problems = {(e["line"], e["column"]) for e in body["errors"]}
    assert {(3, "prefix"), (4, "rate"), (5, "rate"), (2, "effective_from"), (6, "effective_from")} <= problems
    overlap = [e["message"] for e in body["errors"] if e["line"] == 6]
    assert any("row 2" in m for m in overlap)  # both rows of the overlap are named
    # Nothing of the bad file was stored; the good deck is intact.
    assert client.get(f"/api/v1/tariffs/{tid}/rates").json()["total"] == 4
    # Append: a new prefix is added; an overlap with a stored row is refused.
    extra = b"prefix,rate\n33,0.02\n"
    r = client.post(f"/api/v1/tariffs/{tid}/rates/import", files={"file": ("x.csv", extra)}, params={"mode": "append"})
    assert r.status_code == 200 and r.json()["rows"] == 1
    clash = b"prefix,rate\n49,0.02\n44,0.03\n"
    r = client.post(f"/api/v1/tariffs/{tid}/rates/import", files={"file": ("x.csv", clash)}, params={"mode": "append"})
    assert r.status_code == 422 and r.json()["errors"][0]["line"] == 3
    assert client.get(f"/api/v1/tariffs/{tid}/rates").json()["total"] == 5
    for garbage in (b"", b"\xff\xfe\x00", b"not,a,deck\n1,2,3\n"):
        r = client.post(f"/api/v1/tariffs/{tid}/rates/import", files={"file": ("g.csv", garbage)})
        assert r.status_code == 422, garbage


def test_deck_export_reads_back_unchanged(client: TestClient) -> None:
    tid = _tariff(client)
    _upload(client, tid, DATA / "deck_ok.csv")
    exported = client.get(f"/api/v1/tariffs/{tid}/deck.csv")
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows[0].keys() == {
        "prefix", "destination", "rate", "connect_fee", "initial_increment", "increment", "grace_seconds",
        "included_seconds", "effective_from", "effective_to",
    }  # fmt: skip
    other = _tariff(client, name="Copy")
    r = client.post(f"/api/v1/tariffs/{other}/rates/import", files={"file": ("copy.csv", exported.content)})
    assert r.status_code == 200 and r.json()["rows"] == 4
    assert client.get(f"/api/v1/tariffs/{other}/deck.csv").text == exported.text


def test_derived_tariffs_and_who_sees_them(client: TestClient, tenants: Tenants) -> None:
    wholesale = _tariff(client)
    client.post(f"/api/v1/tariffs/{wholesale}/rates", json={"prefix": "44", "rate": "0.01"})
    # The provider sells to A on the wholesale deck; A derives its retail deck with +25%.
    assert client.patch(f"/api/v1/resellers/{tenants.a_id}", json={"tariff_id": wholesale}).status_code == 200
    r = client.post(
        "/api/v1/tariffs",
        json={"name": "A retail", "base_tariff_id": wholesale, "markup_percent": "25"},
        headers=tenants.a,
    )
    assert r.status_code == 201, r.text
    retail = r.json()
    assert retail["reseller_id"] == tenants.a_id and retail["markup_percent"] == "25.000000"
    # A reads the tariff it buys on but cannot change it; B sees neither.
    assert client.get(f"/api/v1/tariffs/{wholesale}", headers=tenants.a).status_code == 200
    assert client.patch(f"/api/v1/tariffs/{wholesale}", json={"name": "x"}, headers=tenants.a).status_code == 403
    assert client.get(f"/api/v1/tariffs/{wholesale}", headers=tenants.b).status_code == 404
    assert client.get(f"/api/v1/tariffs/{retail['id']}", headers=tenants.b).status_code == 404
    r = client.post("/api/v1/tariffs", json={"name": "x", "base_tariff_id": wholesale}, headers=tenants.b)
    assert r.status_code == 422 and fields(r.json()) == {"base_tariff_id"}
    # A customer of A can only be put on A's tariffs.
    r = client.post("/api/v1/customers", json={"name": "c", "tariff_id": wholesale}, headers=tenants.a)
    assert r.status_code == 422 and fields(r.json()) == {"tariff_id"}
    r = client.post("/api/v1/customers", json={"name": "c", "tariff_id": retail["id"]}, headers=tenants.a)
    assert r.status_code == 201
    assert client.delete(f"/api/v1/tariffs/{retail['id']}", headers=tenants.a).status_code == 409  # in use
    assert client.delete(f"/api/v1/tariffs/{wholesale}").status_code == 409


def test_service_plans_bundles_and_fraud_defaults(client: TestClient, tenants: Tenants) -> None:
    r = client.post(
        "/api/v1/service-plans",
        json={"name": "Standard", "fraud_limit_default": "100", "fraud_limit_ceiling": "1200"},
    )
    assert r.status_code == 201
    plan = r.json()["id"]
    assert client.post("/api/v1/service-plans", json={"name": "Mine"}, headers=tenants.a).status_code == 403
    r = client.post(
        f"/api/v1/service-plans/{plan}/bundles",
        json={"name": "UK 300", "minutes": 300, "zone_prefixes": ["44", "441"]},
    )
    assert r.status_code == 201
    bundle = r.json()["id"]
    bad = client.post(f"/api/v1/service-plans/{plan}/bundles", json={"name": "x", "minutes": 0, "zone_prefixes": []})
    assert bad.status_code == 422 and fields(bad.json()) == {"minutes", "zone_prefixes"}
    c = client.post("/api/v1/customers", json={"name": "Planned", "service_plan_id": plan}, headers=tenants.a).json()
    assert (c["fraud_limit_default"], c["fraud_limit_ceiling"]) == ("100.000000", "1200.000000")
    r = client.put(f"/api/v1/customers/{c['id']}/bundles/{bundle}", json={"quantity": 2}, headers=tenants.a)
    assert r.status_code == 200 and r.json()["quantity"] == 2
    other = client.post("/api/v1/customers", json={"name": "Planless"}).json()["id"]
    r = client.put(f"/api/v1/customers/{other}/bundles/{bundle}", json={"quantity": 1})
    assert r.status_code == 422 and fields(r.json()) == {"bundle_id"}
    assert client.get(f"/api/v1/customers/{c['id']}/bundles").json()[0]["quantity"] == 2
    assert client.delete(f"/api/v1/service-plans/{plan}").status_code == 409
    assert client.put(f"/api/v1/customers/{c['id']}/bundles/{bundle}", json={"quantity": 0}).status_code == 204
    # A user's own fraud limit may not pass the customer's ceiling.
    dev = f"/api/v1/customers/{c['id']}/sip-devices"
    r = client.post(dev, json={"username": "fraudy", "password": "12345678", "fraud_limit": "1500"})
    assert r.status_code == 422 and fields(r.json()) == {"fraud_limit"}
    r = client.post(dev, json={"username": "fraudy", "password": "12345678", "fraud_limit": "250"})
    assert r.status_code == 201 and r.json()["fraud_limit"] == "250.000000"
