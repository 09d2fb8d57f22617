"""Rotating the service provider's token: `trunkline admin-token --rotate`."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provisioning.models import ApiToken
from provisioning.tokens import ensure_admin_token, hash_token, rotate_admin_token
from tests.api.conftest import bearer
from tests.waiting import wait_for
from trunkline.cli import main


def _me(anon: TestClient, token: str) -> int:
    return anon.get("/api/v1/auth/me", headers=bearer(token)).status_code


def test_rotation_revokes_the_old_token_and_stores_only_the_new_hash(
    anon: TestClient,
    migrated_db: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token_file = tmp_path / "admin-token"
    first = ensure_admin_token(migrated_db, env_token=None, token_file=token_file)
    assert first is not None and _me(anon, first) == 200
    second = rotate_admin_token(migrated_db, token_file=token_file)
    assert token_file.read_text().strip() == second and token_file.stat().st_mode & 0o777 == 0o600
    wait_for(lambda: _me(anon, first) == 401, 1.0)  # the verification cache keeps a positive answer 0.5 s
    assert _me(anon, first) == 401 and _me(anon, second) == 200
    with migrated_db() as s:
        hashes = set(s.scalars(select(ApiToken.token_hash)))
    assert hash_token(second) in hashes and second not in hashes  # only the hash is stored
    # A restart does not generate yet another one: the rotated token is the provider's.
    assert ensure_admin_token(migrated_db, env_token=None, token_file=token_file) is None

    # The command: prints the new token once, saves it, revokes the previous one.
    bind = migrated_db.kw["bind"]
    monkeypatch.setenv("TRUNKLINE_DATABASE_URL", bind.url.render_as_string(hide_password=False))
    monkeypatch.setenv("TRUNKLINE_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("TRUNKLINE_ADMIN_TOKEN", raising=False)
    assert main(["admin-token", "--rotate"]) == 0
    third = token_file.read_text().strip()
    assert third in capsys.readouterr().out and third != second
    wait_for(lambda: _me(anon, second) == 401, 1.0)
    assert _me(anon, second) == 401 and _me(anon, third) == 200
    assert main(["admin-token"]) == 2  # nothing to do without --rotate
    monkeypatch.setenv("TRUNKLINE_ADMIN_TOKEN", "x" * 32)
    assert main(["admin-token", "--rotate"]) == 2  # the environment's token is changed there
    assert _me(anon, third) == 200
