"""Resellers (a tree of any depth), administrators, logins with lockout, switch-over, tokens,
the audit log and the login history."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provisioning.models import LoginEvent
from tests.api.conftest import Tenants, bearer, fields


def test_reseller_tree_of_any_depth(client: TestClient, tenants: Tenants) -> None:
    # A creates A1's child A1x through its own token; depth does not matter.
    r = client.post("/api/v1/resellers", json={"name": "A1x", "parent_id": tenants.a1_id}, headers=tenants.a)
    assert r.status_code == 201, r.text
    deep = r.json()
    assert deep["path"] == f"/{tenants.a_id}/{tenants.a1_id}/{deep['id']}/"
    mine = client.get("/api/v1/resellers", headers=tenants.a).json()
    assert sorted(x["id"] for x in mine["items"]) == sorted([tenants.a_id, tenants.a1_id, deep["id"]])
    assert [x["id"] for x in client.get("/api/v1/resellers", headers=tenants.a1).json()["items"]] == [
        tenants.a1_id,
        deep["id"],
    ]
    # B sees nothing of A's tree: 404, the same as an id that does not exist.
    for rid in (tenants.a_id, tenants.a1_id, deep["id"], 999):
        assert client.get(f"/api/v1/resellers/{rid}", headers=tenants.b).status_code == 404
        assert client.patch(f"/api/v1/resellers/{rid}", json={"name": "x"}, headers=tenants.b).status_code == 404
    # A reseller's own record is its parent's to change.
    assert client.patch(f"/api/v1/resellers/{tenants.a_id}", json={"name": "x"}, headers=tenants.a).status_code == 403
    r = client.patch(f"/api/v1/resellers/{tenants.a1_id}", json={"company": "A1 GmbH"}, headers=tenants.a)
    assert r.status_code == 200 and r.json()["company"] == "A1 GmbH"
    # A customer of the deepest reseller is visible to every ancestor and to nobody else.
    c = client.post("/api/v1/customers", json={"name": "Deep customer", "reseller_id": deep["id"]}, headers=tenants.a)
    assert c.status_code == 201
    for headers, visible in ((tenants.a, True), (tenants.a1, True), (tenants.b, False), (tenants.admin, True)):
        code = client.get(f"/api/v1/customers/{c.json()['id']}", headers=headers).status_code
        assert code == (200 if visible else 404)


def test_settings_are_inherited_and_validated(client: TestClient, tenants: Tenants) -> None:
    r = client.patch(f"/api/v1/resellers/{tenants.a_id}", json={"currency": "EUR", "timezone": "Europe/Berlin"})
    assert r.status_code == 200
    child = client.post("/api/v1/resellers", json={"name": "Child"}, headers=tenants.a).json()
    assert (child["currency"], child["timezone"], child["billing_decimals"]) == ("EUR", "Europe/Berlin", 4)
    for payload, field in (
        ({"timezone": "Europe/Nowhere"}, "timezone"),
        ({"currency": "EURO"}, "currency"),
        ({"billing_decimals": 9}, "billing_decimals"),
        ({"permissions": ["fly"]}, "permissions"),
        ({"domain": "bad domain"}, "domain"),
    ):
        r = client.post("/api/v1/resellers", json={"name": "x", **payload})
        assert r.status_code == 422 and fields(r.json()) == {field}, (payload, r.text)
    client.patch(f"/api/v1/resellers/{tenants.a_id}", json={"domain": "a.example"})
    r = client.post("/api/v1/resellers", json={"name": "dup", "domain": "A.example"})
    assert r.status_code == 409 and r.json()["field"] == "domain"


def test_permissions_are_granted_by_the_parent(client: TestClient, tenants: Tenants) -> None:
    client.patch(f"/api/v1/resellers/{tenants.a_id}", json={"permissions": ["manage_dids"]})
    assert client.post("/api/v1/resellers", json={"name": "no"}, headers=tenants.a).status_code == 403
    cid = client.post("/api/v1/customers", json={"name": "C"}, headers=tenants.a).json()["id"]
    assert client.post(f"/api/v1/customers/{cid}/stop", json={"reason": "r"}, headers=tenants.a).status_code == 403
    assert client.post("/api/v1/dids", json={"number": "4420700001"}, headers=tenants.a).status_code == 201
    # A child cannot be given what the parent lacks.
    r = client.patch(
        f"/api/v1/resellers/{tenants.a1_id}", json={"permissions": ["approve_stop_resume"]}, headers=tenants.a
    )
    assert r.status_code in (403, 422)


def test_admin_users_and_login(client: TestClient, anon: TestClient, tenants: Tenants) -> None:
    r = client.post(
        "/api/v1/admin-users",
        json={"username": "Boss@A.example", "password": "Boss-pass-1", "name": "Boss"},
        headers=tenants.a,
    )
    assert r.status_code == 201, r.text
    boss = r.json()
    assert boss["username"] == "boss@a.example" and boss["is_chief"] and boss["reseller_id"] == tenants.a_id
    assert "password" not in boss and "password_hash" not in boss
    r = client.post("/api/v1/admin-users", json={"username": "boss@a.example", "password": "Boss-pass-1", "name": "x"})
    assert r.status_code == 409 and r.json()["field"] == "username"
    r = client.post("/api/v1/admin-users", json={"username": "weak@a.example", "password": "weakweak", "name": "x"})
    assert r.status_code == 422 and fields(r.json()) == {"password"}
    assert client.get(f"/api/v1/admin-users/{boss['id']}", headers=tenants.b).status_code == 404

    r = anon.post("/api/v1/auth/login", json={"username": "BOSS@a.example", "password": "Boss-pass-1"})
    assert r.status_code == 200, r.text
    token = r.json()
    assert token["kind"] == "reseller" and token["owner_id"] == tenants.a_id and token["expires_at"]
    me = anon.get("/api/v1/auth/me", headers=bearer(token["token"])).json()
    assert me["kind"] == "reseller" and me["owner_id"] == tenants.a_id
    # Customer self-care login with the web username.
    cid = client.post(
        "/api/v1/customers", json={"name": "Self", "web_username": "self.care", "web_password": "Self-care-1"}
    ).json()["id"]
    r = anon.post("/api/v1/auth/login", json={"username": "self.care", "password": "Self-care-1"})
    assert r.status_code == 200 and r.json()["kind"] == "customer" and r.json()["owner_id"] == cid
    own = bearer(r.json()["token"])
    assert anon.get(f"/api/v1/customers/{cid}", headers=own).status_code == 200
    assert anon.patch(f"/api/v1/customers/{cid}", json={"credit_limit": "1000"}, headers=own).status_code == 403
    assert anon.post("/api/v1/auth/logout", headers=own).status_code == 204
    assert anon.get(f"/api/v1/customers/{cid}", headers=own).status_code == 401
    # An inactive administrator cannot log in; the answer does not say why.
    client.patch(f"/api/v1/admin-users/{boss['id']}", json={"status": "inactive"})
    r = anon.post("/api/v1/auth/login", json={"username": "boss@a.example", "password": "Boss-pass-1"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid username or password"
    r2 = anon.post("/api/v1/auth/login", json={"username": "nobody@a.example", "password": "whatever"})
    assert r2.status_code == 401 and r2.json() == r.json()


def test_five_failures_in_five_minutes_block_for_five_minutes(
    client: TestClient, anon: TestClient, migrated_db: sessionmaker[Session]
) -> None:
    client.post("/api/v1/customers", json={"name": "Lock", "web_username": "lock", "web_password": "Lock-pass-1"})
    for _ in range(5):
        assert anon.post("/api/v1/auth/login", json={"username": "lock", "password": "wrong"}).status_code == 401
    r = anon.post("/api/v1/auth/login", json={"username": "lock", "password": "Lock-pass-1"})
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 300
    # Another login is not affected, and unknown logins are blocked the same way.
    for _ in range(5):
        anon.post("/api/v1/auth/login", json={"username": "ghost", "password": "x"})
    assert anon.post("/api/v1/auth/login", json={"username": "ghost", "password": "x"}).status_code == 429
    # Five minutes later (moved by hand), the right password works again.
    with migrated_db() as s:
        for event in s.scalars(select(LoginEvent)):
            event.at -= timedelta(minutes=5, seconds=1)
        s.commit()
    assert anon.post("/api/v1/auth/login", json={"username": "lock", "password": "Lock-pass-1"}).status_code == 200
    history = client.get("/api/v1/login-history", params={"login": "lock"}).json()["items"]
    outcomes = [h["outcome"] for h in history]
    assert outcomes == ["success", "blocked", *["failure"] * 5]  # newest first
    assert history[0]["ip"] == "testclient"


def test_switch_over_is_audited_and_tied_to_the_parent(client: TestClient, anon: TestClient, tenants: Tenants) -> None:
    cid = client.post("/api/v1/customers", json={"name": "Of A1"}, headers=tenants.a1).json()["id"]
    r = client.post("/api/v1/auth/switch-over", json={"reseller_id": tenants.a1_id}, headers=tenants.a)
    assert r.status_code == 200, r.text
    as_a1 = bearer(r.json()["token"])
    me = anon.get("/api/v1/auth/me", headers=as_a1).json()
    assert me["owner_id"] == tenants.a1_id and me["acting_for"].startswith(f"reseller {tenants.a_id}")
    assert anon.patch(f"/api/v1/customers/{cid}", json={"company": "Switched"}, headers=as_a1).status_code == 200
    entry = client.get("/api/v1/audit-log", params={"entity": "customer", "entity_id": cid, "action": "update"})
    latest = entry.json()["items"][0]
    assert latest["actor"].startswith(f"reseller {tenants.a1_id}") and latest["via"].startswith(
        f"reseller {tenants.a_id}"
    )
    assert latest["before"] == {"company": ""} and latest["after"] == {"company": "Switched"}
    # Upwards or sideways is not possible; the customer scope cannot switch at all.
    assert (
        client.post("/api/v1/auth/switch-over", json={"reseller_id": tenants.a_id}, headers=tenants.a1).status_code
        == 404
    )
    assert (
        client.post("/api/v1/auth/switch-over", json={"reseller_id": tenants.a_id}, headers=tenants.b).status_code
        == 404
    )
    r = client.post("/api/v1/auth/switch-over", json={"customer_id": cid}, headers=tenants.a)
    as_customer = bearer(r.json()["token"])
    assert anon.get(f"/api/v1/customers/{cid}", headers=as_customer).status_code == 200
    # Revoking the parent's token ends the switched-over tokens too.
    a_token_id = anon.get("/api/v1/auth/me", headers=tenants.a).json()["token_id"]
    assert client.delete(f"/api/v1/tokens/{a_token_id}").status_code == 204
    client.app.state.token_verifier.forget()  # the cache would otherwise keep them for 0.5 s
    assert anon.get(f"/api/v1/customers/{cid}", headers=as_a1).status_code == 401
    assert anon.get(f"/api/v1/customers/{cid}", headers=as_customer).status_code == 401
    switch = client.get("/api/v1/login-history", params={"outcome": "switch_over"}).json()["items"]
    assert len(switch) == 2


def test_tokens_are_issued_listed_and_revoked_in_scope(client: TestClient, anon: TestClient, tenants: Tenants) -> None:
    cid = client.post("/api/v1/customers", json={"name": "Tok"}, headers=tenants.a).json()["id"]
    r = client.post("/api/v1/tokens", json={"kind": "customer", "owner_id": cid, "label": "pbx"}, headers=tenants.a)
    assert r.status_code == 201
    issued = r.json()
    assert anon.get(f"/api/v1/customers/{cid}", headers=bearer(issued["token"])).status_code == 200
    listed = client.get("/api/v1/tokens", headers=tenants.a).json()["items"]
    assert issued["token_id"] in [t["id"] for t in listed]
    assert all("token_hash" not in t and "token" not in t for t in listed)
    assert client.get(f"/api/v1/tokens/{issued['token_id']}", headers=tenants.b).status_code == 404
    assert client.delete(f"/api/v1/tokens/{issued['token_id']}", headers=tenants.b).status_code == 404
    r = client.post("/api/v1/tokens", json={"kind": "customer", "owner_id": cid}, headers=tenants.b)
    assert r.status_code == 422 and fields(r.json()) == {"owner_id"}
    assert client.post("/api/v1/tokens", json={"kind": "admin"}, headers=tenants.a).status_code == 403
    assert client.delete(f"/api/v1/tokens/{issued['token_id']}", headers=tenants.a).status_code == 204
    client.app.state.token_verifier.forget()
    assert anon.get(f"/api/v1/customers/{cid}", headers=bearer(issued["token"])).status_code == 401


def test_audit_log_records_every_change_and_is_scoped(client: TestClient, tenants: Tenants) -> None:
    r = client.post("/api/v1/customers", json={"name": "Audited", "web_username": "aud", "web_password": "Aud-it-123"},
                    headers=tenants.a)  # fmt: skip
    cid = r.json()["id"]
    client.patch(
        f"/api/v1/customers/{cid}", json={"credit_limit": "10", "web_password": "Aud-it-456"}, headers=tenants.a
    )
    client.post(f"/api/v1/customers/{cid}/payments", json={"amount": "5"}, headers=tenants.a)
    entries = client.get("/api/v1/audit-log", params={"customer_id": cid}, headers=tenants.a).json()["items"]
    actions = [(e["entity"], e["action"]) for e in entries]
    assert ("customer", "create") in actions and ("customer", "update") in actions
    assert ("ledger_entry", "create") in actions
    update_entry = next(e for e in entries if e["action"] == "update" and e["entity"] == "customer")
    assert update_entry["before"]["credit_limit"] == "0.000000" and update_entry["after"]["credit_limit"] == "10.000000"
    assert update_entry["after"]["web_password_hash"] == "***"  # secrets never reach the log
    assert all("scrypt" not in str(e) for e in entries)
    assert client.get("/api/v1/audit-log", params={"customer_id": cid}, headers=tenants.b).json()["items"] == []
    csv_text = client.get("/api/v1/audit-log", params={"format": "csv"}, headers=tenants.a).text
    assert csv_text.startswith("id,at,actor")
