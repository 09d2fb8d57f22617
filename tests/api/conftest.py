"""An admin API over a migrated database, with an admin token, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.orm import Session, sessionmaker

from admin_api import create_app
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
