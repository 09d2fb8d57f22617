"""Authentication, health, metrics and the OpenAPI document."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_every_api_route_needs_a_token(anon: TestClient) -> None:
    schema = anon.get("/openapi.json").json()
    routes = [
        (path, method)
        for path, item in schema["paths"].items()
        for method in item
        if path.startswith("/api/") and path != "/api/v1/auth/login"
    ]
    assert len(routes) >= 80
    for path, method in routes:
        url = re.sub(r"\{[a-z_]+\}", "1", path)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
            r = anon.request(method.upper(), url, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"


def test_token_grants_access(client: TestClient) -> None:
    r = client.get("/api/v1/customers")
    assert r.status_code == 200
    assert r.json() == {"items": [], "total": 0, "limit": 100, "offset": 0}


def test_healthz_and_metrics_need_no_token(anon: TestClient) -> None:
    r = anon.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = anon.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "trunkline_test_requests_total 1.0" in r.text


def test_docs_are_served(anon: TestClient) -> None:
    assert anon.get("/docs").status_code == 200
    schema = anon.get("/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    # The password is accepted on writes and never part of what the API returns.
    assert "password" in schema["components"]["schemas"]["SipDeviceCreate"]["properties"]
    assert "password" not in schema["components"]["schemas"]["SipDevicePublic"]["properties"]
