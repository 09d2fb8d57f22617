"""An admin API over a migrated database, with an admin token, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.orm import Session, sessionmaker

from admin_api import create_app
from provisioning import passwords, repo
from provisioning.scope import PROVIDER
from provisioning.tokens import create_token


@pytest.fixture
def admin_token(migrated_db: sessionmaker[Session]) -> str:
    with migrated_db() as s:
        token = create_token(s, kind="admin", label="tests")
        s.commit()
    return token


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("trunkline_test_requests", "a metric only this registry has", registry=reg).inc()
    return reg


@pytest.fixture
def anon(migrated_db: sessionmaker[Session], registry: CollectorRegistry) -> Iterator[TestClient]:
    app = create_app(session_factory=migrated_db, realm_default="test-realm", metrics_registry=registry)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def client(anon: TestClient, admin_token: str) -> TestClient:
    anon.headers["Authorization"] = f"Bearer {admin_token}"
    return anon


def fields(response_json: dict[str, Any]) -> set[str]:
    """The (top-level) field names a 422 answer names."""
    return {str(err["loc"][1] if len(err["loc"]) > 1 else err["loc"][0]) for err in response_json["detail"]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Tenants:
    """The service provider, reseller A with child A1, and an unrelated reseller B, each with a token."""

    admin: dict[str, str]
    a: dict[str, str]
    a1: dict[str, str]
    b: dict[str, str]
    a_id: int
    a1_id: int
    b_id: int


@pytest.fixture
def tenants(client: TestClient, migrated_db: sessionmaker[Session], admin_token: str) -> Tenants:
    with migrated_db() as s:
        a = repo.create_reseller(s, scope=PROVIDER, name="Reseller A", company="A Ltd")
        a1 = repo.create_reseller(s, scope=PROVIDER, name="Reseller A1", parent_id=a.id)
        b = repo.create_reseller(s, scope=PROVIDER, name="Reseller B", company="B Ltd")
        tokens = [create_token(s, kind="reseller", owner_id=r.id, label=r.name) for r in (a, a1, b)]
        s.commit()
        ids = (a.id, a1.id, b.id)
    return Tenants(
        admin=bearer(admin_token),
        a=bearer(tokens[0]),
        a1=bearer(tokens[1]),
        b=bearer(tokens[2]),
        a_id=ids[0],
        a1_id=ids[1],
        b_id=ids[2],
    )


@pytest.fixture(autouse=True)
def _cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    # scrypt at full cost takes ~50 ms a hash; tests hash hundreds of passwords.  The cost is a
    # parameter of the stored hash, so verification still exercises the real code path.
    monkeypatch.setattr(passwords, "SCRYPT_N", 2**10)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: generated requests against the API (schemathesis); run by make test")
