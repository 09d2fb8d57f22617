"""Money never passes through binary floating point: decimal strings out; strings or integers in,
a JSON number with a fraction refused (422 naming the field)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.api.conftest import fields


def _post_raw(client: TestClient, url: str, body: str) -> tuple[int, dict[str, object]]:
    # Raw JSON text: the client's own encoder would turn a Python float into its shortest repr.
    r = client.post(url, content=body.encode(), headers={"content-type": "application/json"})
    return r.status_code, r.json()


def test_decimal_strings_and_integers_round_trip_exactly(client: TestClient) -> None:
    r = client.post("/api/v1/customers", json={"name": "Exact", "credit_limit": "123456789012.123456"})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert r.json()["credit_limit"] == "123456789012.123456"  # 18 digits, not rounded to a double's 17
    assert client.get(f"/api/v1/customers/{cid}").json()["credit_limit"] == "123456789012.123456"
    base = f"/api/v1/customers/{cid}"
    assert client.post(f"{base}/payments", json={"amount": "10.10"}).json()["amount"] == "10.100000"
    assert client.post(f"{base}/payments", json={"amount": "0.1"}).status_code == 201
    assert client.post(f"{base}/payments", json={"amount": "0.2"}).status_code == 201
    assert client.post(f"{base}/adjustments", json={"amount": 7}).json()["amount"] == "7.000000"  # integer: exact
    balance = client.get(f"{base}/balance").json()
    assert balance["balance"] == "17.400000"  # 10.10 + 0.1 + 0.2 + 7, no 0.30000000000000004
    assert all(isinstance(balance[k], str) for k in ("balance", "credit_limit", "available"))
    # A 20-digit value is refused, never silently rounded.
    r = client.post(f"{base}/payments", json={"amount": "12345678901234.567891"})
    assert r.status_code == 422 and fields(r.json()) == {"amount"}
    t = client.post("/api/v1/tariffs", json={"name": "exact"}).json()["id"]
    r = client.post(f"/api/v1/tariffs/{t}/rates", json={"prefix": "44", "rate": "0.123457", "connect_fee": 1})
    assert r.status_code == 201 and (r.json()["rate"], r.json()["connect_fee"]) == ("0.123457", "1.000000")


def test_json_numbers_with_a_fraction_are_refused_naming_the_field(client: TestClient) -> None:
    cid = client.post("/api/v1/customers", json={"name": "Floats"}).json()["id"]
    base = f"/api/v1/customers/{cid}"
    t = client.post("/api/v1/tariffs", json={"name": "floats"}).json()["id"]
    cases = [
        (f"{base}/payments", '{"amount": 123456789012.123456}', "amount"),  # a double would make it ...12346
        (f"{base}/payments", '{"amount": 10.10}', "amount"),
        (f"{base}/adjustments", '{"amount": -0.1}', "amount"),
        (f"{base}/charges", '{"amount": 1e2}', "amount"),
        ("/api/v1/customers", '{"name": "x", "credit_limit": 0.3}', "credit_limit"),
        ("/api/v1/customers", '{"name": "x", "fraud_limit_default": 5.5}', "fraud_limit_default"),
        ("/api/v1/customers", '{"name": "x", "tax_rate": 20.0}', "tax_rate"),
        (f"/api/v1/tariffs/{t}/rates", '{"prefix": "1", "rate": 0.1}', "rate"),
        ("/api/v1/tariffs", f'{{"name": "d", "base_tariff_id": {t}, "markup_percent": 25.5}}', "markup_percent"),
        ("/api/v1/service-plans", '{"name": "p", "fraud_limit_ceiling": 9.99}', "fraud_limit_ceiling"),
    ]
    for url, body, field in cases:
        status, answer = _post_raw(client, url, body)
        assert status == 422 and fields(answer) == {field}, (url, body, answer)
        assert "string" in json.dumps(answer)  # the message says how to send it
    r = client.patch(f"{base}", json={"credit_limit": 0.1})
    assert r.status_code == 422 and fields(r.json()) == {"credit_limit"}
    # Nothing was stored by the refused requests.
    assert client.get(f"{base}/ledger").json()["total"] == 0


def test_money_inputs_are_documented_as_strings_or_integers(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    amount = schemas["PaymentCreate"]["properties"]["amount"]
    assert {alt["type"] for alt in amount["anyOf"]} == {"string", "integer"}
