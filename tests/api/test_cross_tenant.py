"""Every route of the OpenAPI document, called by another reseller's token: nothing leaks, nothing
changes, and an id the caller may not see is answered exactly like an id that does not exist.

Reseller A's world holds one of everything, each carrying the marker ``zzleak`` in a name or a
description.  Reseller B (same depth, its own tree) then calls every method of every path with
A's ids in the path, bodies and query filters aimed at A's data, and the listings as CSV too.
The test fails when:

* a route of the document has no entry below (a new route must be added to the walk);
* any answer is a 5xx, any write succeeds, or any answer contains the marker;
* the answer for one of A's ids differs from the answer for an id that does not exist;
* the database (every table, every row) differs in any way after the walk.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from provisioning.models import Base, billing_runs, cdrs, rated_calls
from tests.api.conftest import Tenants

MARK = "zzleak"
GHOST = 987654  # an id that exists nowhere
# The service provider's plans and their bundles are offered to every reseller: B reads them.
SHARED_READS = {
    "/api/v1/service-plans/{plan_id}",
    "/api/v1/service-plans/{plan_id}/bundles",
    "/api/v1/service-plans/{plan_id}/bundles/{bundle_id}",
}


@dataclass
class World:
    ids: dict[str, int]  # path parameter name -> one of A's (or the provider's) ids


def _ok(r: Any) -> dict[str, Any]:
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


def _build_world(client: TestClient, tenants: Tenants) -> World:
    a = tenants.a
    plan = _ok(client.post("/api/v1/service-plans", json={"name": "Shared plan"}))["id"]
    bundle = _ok(
        client.post(f"/api/v1/service-plans/{plan}/bundles", json={"name": "b", "minutes": 10, "zone_prefixes": ["44"]})
    )["id"]
    carrier = _ok(client.post("/api/v1/carriers", json={"name": "Provider carrier", "host": "192.0.2.1"}))["id"]
    route = _ok(client.post("/api/v1/routes", json={"name": "Provider route", "carriers": [{"carrier_id": carrier}]}))[
        "id"
    ]
    tariff = _ok(client.post("/api/v1/tariffs", json={"name": f"{MARK} tariff"}, headers=a))["id"]
    rate = _ok(
        client.post(f"/api/v1/tariffs/{tariff}/rates", json={"prefix": "44", "rate": "0.1", "destination": MARK})
    )["id"]
    customer = _ok(
        client.post(
            "/api/v1/customers",
            json={
                "name": f"{MARK} customer",
                "company": MARK,
                "web_username": "zzleakuser",
                "web_password": "Leak-pass-1",
                "service_plan_id": plan,
                "tariff_id": tariff,
            },
            headers=a,
        )
    )["id"]
    base = f"/api/v1/customers/{customer}"
    device = _ok(
        client.post(f"{base}/sip-devices", json={"username": f"{MARK}dev", "password": "12345678"}, headers=a)
    )["id"]
    _ok(client.post(f"{base}/ip-devices", json={"ip": "198.51.100.7", "description": MARK}, headers=a))
    rule = _ok(
        client.post(
            f"{base}/translation-rules",
            json={"kind": "source", "match": "0", "replacement": "44", "description": MARK},
            headers=a,
        )
    )["id"]
    _ok(client.put(f"{base}/bundles/{bundle}", json={"quantity": 1}, headers=a))
    _ok(client.post(f"{base}/payments", json={"amount": "10", "description": MARK}, headers=a))
    _ok(client.post(f"{base}/stop", json={"reason": MARK}, headers=a))
    _ok(client.post(f"{base}/resume", json={"reason": MARK}, headers=a))
    did = _ok(client.post("/api/v1/dids", json={"number": "4420700999", "customer_id": customer, "description": MARK}))[
        "id"
    ]
    user = _ok(
        client.post(
            "/api/v1/admin-users",
            json={"username": f"{MARK}@a.example", "password": "Leak-pass-1", "name": MARK},
            headers=a,
        )
    )["id"]
    token = _ok(client.post("/api/v1/tokens", json={"kind": "customer", "owner_id": customer, "label": MARK}))[
        "token_id"
    ]
    child = _ok(client.post("/api/v1/resellers", json={"name": f"{MARK} child"}, headers=a))["id"]
    return World(
        ids={
            "customer_id": customer,
            "device_id": device,
            "rule_id": rule,
            "bundle_id": bundle,
            "did_id": did,
            "tariff_id": tariff,
            "rate_id": rate,
            "plan_id": plan,
            "carrier_id": carrier,
            "route_id": route,
            "reseller_id": child,
            "user_id": user,
            "token_id": token,
        }
    )


CSV_ROW = b"Account Number,First Name\nWALK-1,Walker\n"
DECK = b"prefix,rate\n1,0.1\n"


def _bodies(method: str, template: str, w: World, tenants: Tenants) -> list[dict[str, Any]]:
    """Request bodies aimed at A's data for a write route (always including an empty one)."""
    i = w.ids
    aimed: dict[tuple[str, str], list[dict[str, Any]]] = {
        ("POST", "/api/v1/auth/switch-over"): [{"reseller_id": tenants.a_id}, {"customer_id": i["customer_id"]}],
        ("POST", "/api/v1/tokens"): [
            {"kind": "customer", "owner_id": i["customer_id"]},
            {"kind": "reseller", "owner_id": tenants.a_id},
            {"kind": "admin"},
        ],
        ("POST", "/api/v1/resellers"): [{"name": "walk", "parent_id": tenants.a_id}],
        ("PATCH", "/api/v1/resellers/{reseller_id}"): [{"name": "walk", "status": "inactive"}],
        ("POST", "/api/v1/admin-users"): [
            {"username": "walk@b.example", "password": "Walk-pass-1", "name": "w", "reseller_id": tenants.a_id}
        ],
        ("PATCH", "/api/v1/admin-users/{user_id}"): [{"password": "Walk-pass-1"}],
        ("POST", "/api/v1/customers"): [{"name": "walk", "reseller_id": tenants.a_id}],
        ("PATCH", "/api/v1/customers/{customer_id}"): [{"name": "walk", "credit_limit": "999"}],
        ("PUT", "/api/v1/customers/{customer_id}/bundles/{bundle_id}"): [{"quantity": 0}],
        ("POST", "/api/v1/customers/{customer_id}/translation-rules"): [
            {"kind": "source", "match": "1", "replacement": "2"}
        ],
        ("PATCH", "/api/v1/customers/{customer_id}/translation-rules/{rule_id}"): [{"match": "9"}],
        ("POST", "/api/v1/customers/{customer_id}/sip-devices"): [{"username": "walk", "password": "12345678"}],
        ("PATCH", "/api/v1/customers/{customer_id}/sip-devices/{device_id}"): [{"status": "inactive"}],
        ("POST", "/api/v1/customers/{customer_id}/ip-devices"): [{"ip": "203.0.113.99"}],
        ("PATCH", "/api/v1/customers/{customer_id}/ip-devices/{device_id}"): [{"status": "inactive"}],
        ("POST", "/api/v1/dids"): [{"number": "4499001", "customer_id": i["customer_id"]}],
        ("POST", "/api/v1/dids/range"): [{"start": "4499100", "count": 2, "customer_id": i["customer_id"]}],
        ("PATCH", "/api/v1/dids/{did_id}"): [{"status": "inactive", "destination_type": "pstn", "destination": "1"}],
        ("POST", "/api/v1/tariffs"): [
            {"name": "walk", "reseller_id": tenants.a_id},
            {"name": "walk", "base_tariff_id": i["tariff_id"], "markup_percent": "10"},
        ],
        ("PATCH", "/api/v1/tariffs/{tariff_id}"): [{"name": "walk"}],
        ("POST", "/api/v1/tariffs/{tariff_id}/rates"): [{"prefix": "1", "rate": "1"}],
        ("PATCH", "/api/v1/tariffs/{tariff_id}/rates/{rate_id}"): [{"rate": "2"}],
        ("POST", "/api/v1/service-plans"): [{"name": "walk"}],
        ("PATCH", "/api/v1/service-plans/{plan_id}"): [{"name": "walk"}],
        ("POST", "/api/v1/service-plans/{plan_id}/bundles"): [{"name": "w", "minutes": 1, "zone_prefixes": ["1"]}],
        ("PATCH", "/api/v1/service-plans/{plan_id}/bundles/{bundle_id}"): [{"minutes": 2}],
        ("POST", "/api/v1/carriers"): [{"name": "walk", "host": "192.0.2.2"}],
        ("PATCH", "/api/v1/carriers/{carrier_id}"): [{"status": "inactive"}],
        ("POST", "/api/v1/routes"): [{"name": "walk", "customer_id": i["customer_id"]}],
        ("PATCH", "/api/v1/routes/{route_id}"): [{"status": "inactive"}],
    }
    for operation in ("activate", "stop", "resume", "close"):
        aimed[("POST", f"/api/v1/customers/{{customer_id}}/{operation}")] = [{"reason": "walk"}]
    for kind in ("payments", "adjustments", "charges"):
        aimed[("POST", f"/api/v1/customers/{{customer_id}}/{kind}")] = [{"amount": "1"}]
    return [{}, *aimed.get((method, template), [])]


# Query filters aimed at A for the listings (B must get nothing of A's, or 404).
def _queries(template: str, w: World, tenants: Tenants) -> list[dict[str, Any]]:
    i = w.ids
    extra: dict[str, list[dict[str, Any]]] = {
        "/api/v1/customers": [
            {"reseller_id": tenants.a_id},
            {"name": MARK},
            {"account": str(i["customer_id"])},
            {"web_username": MARK},
            {"ip": "198.51.100.7"},
            {"sip_user": MARK},
        ],
        "/api/v1/dids": [{"customer_id": i["customer_id"]}, {"number": "44207"}],
        "/api/v1/tariffs": [{"reseller_id": tenants.a_id}],
        "/api/v1/admin-users": [{"reseller_id": tenants.a_id}],
        "/api/v1/resellers": [{"parent_id": tenants.a_id}],
        "/api/v1/audit-log": [{"customer_id": i["customer_id"]}, {"entity": "customer"}],
        "/api/v1/login-history": [{"login": MARK}],
        "/api/v1/cdrs": [{"customer_id": i["customer_id"]}],
        "/api/v1/customers/{customer_id}/invoice": [
            {"month": "2026-01"},
            {"month": "2026-01", "format": "pdf"},
            {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
        ],
        "/api/v1/customers/{customer_id}/rated-calls": [
            {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
            {"status": "rated", "run_id": 1},
        ],
        "/api/v1/customers/{customer_id}/statement": [
            {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
            {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z", "format": "pdf"},
        ],
    }
    return [{}, *extra.get(template, [])]


def _dump(sf: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    with sf() as s:
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table in Base.metadata.sorted_tables:
            order = list(table.primary_key.columns)
            out[table.name] = [tuple(row) for row in s.execute(select(table).order_by(*order))]
        return out


def _normalise(response: Any) -> tuple[int, str]:
    # The same answer for A's id and for a missing id, once the numbers themselves are set aside.
    return response.status_code, re.sub(r"\d+", "N", response.text)


def _file(template: str) -> dict[str, Any] | None:
    if template == "/api/v1/imports/customers":
        return {"file": ("walk.csv", CSV_ROW, "text/csv")}
    if template.endswith("/rates/import"):
        return {"file": ("deck.csv", DECK, "text/csv")}
    return None


@pytest.mark.timeout(300)
def test_another_resellers_token_sees_and_changes_nothing(
    client: TestClient, anon: TestClient, tenants: Tenants, migrated_db: sessionmaker[Session]
) -> None:
    world = _build_world(client, tenants)
    with migrated_db() as s:  # a CDR of A's customer
        s.execute(
            insert(cdrs),
            [
                {
                    "call_id": f"{MARK}-call",
                    "sip_call_id": f"{MARK}-call",
                    "customer_id": world.ids["customer_id"],
                    "caller_number": "1",
                    "dialled_number": "2",
                    "start_ms": 1,
                    "end_ms": 2,
                    "duration_ms": 1,
                    "sip_code": 200,
                    "q850_cause": 16,
                    "disposition": "answered",
                    "direction": "outbound",
                    "call_type": "sip",
                    "source_ip": "192.0.2.1",
                    "hangup_by": "caller",
                    "reseller_path": f"/{tenants.a_id}/",
                    "did": "",
                    "codecs": "PCMA",
                }
            ],
        )
        # ... and what the billing made of it
        run = s.execute(insert(billing_runs).returning(billing_runs.c.id),
                        {"kind": "batch", "started_at": datetime(2026, 1, 1, tzinfo=UTC), "book_version": 0,
                         "calls": 1, "created_by": MARK}).scalar_one()
        s.execute(insert(rated_calls), [{
            "call_id": f"{MARK}-call", "customer_id": world.ids["customer_id"], "t_ms": 1, "status": "rated",
            "note": MARK, "prefix": "2", "destination": MARK, "billed_seconds": 60, "bundle_seconds": 0,
            "debit": Decimal("0.5"), "charged": True, "run_id": run, "book_version": 0,
            "rated_at": datetime(2026, 1, 1, tzinfo=UTC),
        }])
        s.commit()
    schema = anon.get("/openapi.json").json()
    before = _dump(migrated_db)
    calls = 0
    for template, item in schema["paths"].items():
        if not template.startswith("/api/") or template in ("/api/v1/auth/login", "/api/v1/auth/logout"):
            continue  # no token / acts on the caller's own token only
        for method in (m.upper() for m in item):
            params = re.findall(r"\{([a-z_]+)\}", template)
            missing = [p for p in params if p not in world.ids]
            assert not missing, f"{template}: add {missing} to the walk"
            real = template.format(**{p: world.ids[p] for p in params})
            ghost = template.format(**dict.fromkeys(params, GHOST))
            writes = method in ("POST", "PUT", "PATCH", "DELETE")
            bodies = _bodies(method, template, world, tenants) if writes and method != "DELETE" else [None]
            queries = _queries(template, world, tenants) if method == "GET" else [{}]
            if template == "/api/v1/imports/customers":
                queries = [
                    {"reseller_id": tenants.a_id},
                    {"reseller_id": tenants.a_id, "tariff_id": world.ids["tariff_id"]},
                ]
            if method == "GET" and "format" in str(item["get"].get("parameters", "")):
                queries += [{**q, "format": "csv"} for q in queries]
            for body in bodies:
                for query in queries:
                    answers = []
                    for url in (real, ghost) if params else (real,):
                        files = _file(template)
                        if files is not None:
                            r = client.request(method, url, params=query, files=files, headers=tenants.b)
                        else:
                            content = None if body is None else json.dumps(body)
                            r = client.request(
                                method,
                                url,
                                params=query,
                                content=content,
                                headers={**tenants.b, "content-type": "application/json"},
                            )
                        calls += 1
                        where = (method, url, query, body, r.status_code, r.text[:300])
                        assert r.status_code < 500, where
                        assert MARK not in r.text, where
                        if writes:
                            assert r.status_code >= 400, where
                        answers.append(_normalise(r))
                    if method == "GET" and template in SHARED_READS:
                        assert answers[0][0] == 200, (template, answers)
                    elif params:
                        assert answers[0] == answers[1], (method, template, query, body, answers)
                        assert answers[0][0] in (403, 404, 422), (method, template, answers[0])
    assert calls > 250
    assert _dump(migrated_db) == before
