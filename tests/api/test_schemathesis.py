"""Schemathesis against the app's own OpenAPI document, in-process: no input gives a 5xx.

Every operation of the document gets generated requests (valid and invalid bodies, path ids,
query strings) sent with the service provider's token, over a database seeded so that small ids
exist.  The number of examples per operation is kept small so that the run stays a few tens of
seconds on both databases; ``TRUNKLINE_FUZZ_EXAMPLES=200`` makes a deeper run.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from sqlalchemy.orm import Session, sessionmaker

from provisioning.tokens import create_token
from tests.api.conftest import Tenants

EXAMPLES = int(os.environ.get("TRUNKLINE_FUZZ_EXAMPLES", "5"))


@pytest.fixture
def api_schema(client: TestClient, tenants: Tenants) -> Any:
    # Something for generated ids to hit: customers 1-2, devices, a tariff with a rate, a DID, a plan.
    for i in (1, 2):
        c = client.post("/api/v1/customers", json={"name": f"fuzz {i}"}).json()["id"]
        client.post(f"/api/v1/customers/{c}/sip-devices", json={"username": f"fuzz{i}", "password": "12345678"})
        client.post(f"/api/v1/customers/{c}/ip-devices", json={"ip": f"192.0.2.{i}"})
        client.post(
            f"/api/v1/customers/{c}/translation-rules", json={"kind": "source", "match": "0", "replacement": "1"}
        )
    t = client.post("/api/v1/tariffs", json={"name": "fuzz"}).json()["id"]
    client.post(f"/api/v1/tariffs/{t}/rates", json={"prefix": "1", "rate": "0.1"})
    client.post("/api/v1/dids", json={"number": "100", "customer_id": 1})
    p = client.post("/api/v1/service-plans", json={"name": "fuzz"}).json()["id"]
    client.post(f"/api/v1/service-plans/{p}/bundles", json={"name": "b", "minutes": 1, "zone_prefixes": ["1"]})
    c = client.post("/api/v1/carriers", json={"name": "fuzz", "host": "192.0.2.9"}).json()["id"]
    client.post("/api/v1/routes", json={"name": "fuzz", "carriers": [{"carrier_id": c}]})
    return schemathesis.openapi.from_asgi("/openapi.json", client.app)


@pytest.mark.fuzz
@pytest.mark.timeout(600)
def test_no_server_errors(api_schema: Any, admin_token: str, migrated_db: sessionmaker[Session]) -> None:
    # Operation by operation with plain Hypothesis (schemathesis's own pytest plugin does not
    # work with this pytest): each operation's strategy yields cases, each case is one request.
    headers = {"Authorization": f"Bearer {admin_token}"}
    failures: list[str] = []
    operations = 0
    statuses: Counter[int] = Counter()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # Valid inputs reach the repositories; invalid ones (wrong types, out-of-range values,
        # missing fields) test the edges of validation.
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
                  database=None)  # fmt: skip
        @given(case=strategy)
        def call(case: Any) -> None:
            # The document declares the bearer scheme, so generated cases may carry an
            # Authorization header of their own: ours replaces it, to reach past authentication.
            case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
            response = case.call(headers=headers)
            if response.status_code == 401 and case.path != "/api/v1/auth/login":
                # A generated logout or token revocation may have revoked our own token.
                with migrated_db() as s:
                    headers["Authorization"] = f"Bearer {create_token(s, kind='admin', label='fuzz')}"
                    s.commit()
                response = case.call(headers=headers)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} {case.body!r}: {response.text[:200]}"
                )

        call()
    assert operations > 80
    assert statuses[200] + statuses[201] > operations // 2, statuses  # not everything bounced off validation
    assert not failures, "\n".join(failures[:20])
