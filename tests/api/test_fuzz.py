"""Hostile input never produces a 500 (a small in-house stand-in for schemathesis)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIELDS = [
    "name", "domain", "status", "max_sessions", "cps", "max_call_seconds", "reseller_id",
    "username", "password", "extension", "caller_number", "display_name", "allowed_ips",
    "ip", "port", "tech_prefix",
]  # fmt: skip
nasty_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "%", "_", "' OR 1=1 --", "ACTIVE", "1" * 300, "::1", "0.0.0.0"]),
)
values = st.one_of(
    nasty_text,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(nasty_text, max_size=3),
)
payloads = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=5)), values, max_size=6)
ids = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.just(1))
PATHS = [
    "/api/v1/customers",
    "/api/v1/customers/{a}",
    "/api/v1/customers/{a}/sip-devices",
    "/api/v1/customers/{a}/sip-devices/{b}",
    "/api/v1/customers/{a}/ip-devices",
    "/api/v1/customers/{a}/ip-devices/{b}",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(PATHS),
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE"]),
    a=ids,
    b=ids,
    body=payloads,
    query=st.dictionaries(st.sampled_from(["name", "status", "limit", "offset", "ip", "username"]), values, max_size=3),
)
def test_no_server_errors(
    client: TestClient, path: str, method: str, a: int, b: int, body: dict[str, Any], query: dict[str, Any]
) -> None:
    if not client.get("/api/v1/customers/1").is_success:  # something for the ids to hit
        client.post("/api/v1/customers", json={"name": "target"})
        client.post("/api/v1/customers/1/sip-devices", json={"username": "target", "password": "12345678"})
        client.post("/api/v1/customers/1/ip-devices", json={"ip": "192.0.2.1"})
    # Encoded by hand, as a hostile client would: JSON escapes and raw bytes that httpx itself
    # would refuse to produce from a lone surrogate.
    qs = "&".join(
        f"{k}={quote(str(v).encode('utf-8', 'surrogatepass'))}"
        for k, v in query.items()
        if v is not None and not isinstance(v, list)
    )
    url = path.format(a=a, b=b) + (f"?{qs}" if qs else "")
    r = client.request(method, url, content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code < 500, (method, url, body, r.text)
