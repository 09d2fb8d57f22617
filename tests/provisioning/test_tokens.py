"""Admin token bootstrap and bearer token verification."""

from __future__ import annotations

import stat
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provisioning import repo
from provisioning.models import ApiToken
from provisioning.scope import PROVIDER
from provisioning.tokens import (
    TokenVerifier,
    create_token,
    ensure_admin_token,
    hash_token,
    revoke_token,
    verify_token,
)

SF = sessionmaker[Session]


def _stored(sf: SF) -> list[ApiToken]:
    with sf() as s:
        return list(s.scalars(select(ApiToken).order_by(ApiToken.id)))


def test_first_start_generates_once_and_stores_only_the_hash(migrated_db: SF, tmp_path: Path) -> None:
    token_file = tmp_path / "var" / "admin-token"
    token = ensure_admin_token(migrated_db, env_token=None, token_file=token_file)
    assert token and len(token) >= 40
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    rows = _stored(migrated_db)
    assert [(r.kind, r.token_hash) for r in rows] == [("admin", hash_token(token))]
    assert all(token not in str(getattr(r, c.key)) for r in rows for c in ApiToken.__table__.c)
    principal = verify_token(migrated_db, token)
    assert principal is not None and principal.kind == "admin" and principal.scope == PROVIDER
    # Later starts: nothing new, nothing to print, the file is left alone.
    assert ensure_admin_token(migrated_db, env_token=None, token_file=token_file) is None
    assert len(_stored(migrated_db)) == 1 and token_file.read_text().strip() == token


def test_env_token_is_accepted_and_not_written(migrated_db: SF, tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    env = "operator-chosen-token-0123456789"
    assert ensure_admin_token(migrated_db, env_token=env, token_file=token_file) is None
    assert ensure_admin_token(migrated_db, env_token=env, token_file=token_file) is None  # idempotent
    assert not token_file.exists()
    assert [r.token_hash for r in _stored(migrated_db)] == [hash_token(env)]
    principal = verify_token(migrated_db, env)
    assert principal is not None and principal.kind == "admin"
    # With an admin token in place, a start without the variable generates nothing.
    assert ensure_admin_token(migrated_db, env_token=None, token_file=token_file) is None


def test_unknown_and_revoked_tokens_are_refused(migrated_db: SF) -> None:
    verifier = TokenVerifier(migrated_db, ttl=0.3)
    with migrated_db() as s:
        token = create_token(s, kind="admin", label="ops")
        s.commit()
        token_id = s.scalars(select(ApiToken.id)).one()
    assert verifier.verify("nope") is None and verifier.verify("") is None
    assert verifier.verify(token) is not None
    with migrated_db() as s:
        revoke_token(s, token_id=token_id)
        s.commit()
    deadline = time.monotonic() + 1.0  # revocation is honoured within a second
    while verifier.verify(token) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_reseller_and_customer_tokens_carry_their_scope(migrated_db: SF) -> None:
    with migrated_db() as s:
        r = repo.create_reseller(s, scope=PROVIDER, name="R")
        c = repo.create_customer(s, scope=PROVIDER, name="C", reseller_id=r.id)
        s.flush()
        rt = create_token(s, kind="reseller", owner_id=r.id)
        ct = create_token(s, kind="customer", owner_id=c.id)
        s.commit()
        rid, rpath, cid = r.id, r.path, c.id
    rp, cp = verify_token(migrated_db, rt), verify_token(migrated_db, ct)
    assert rp is not None and rp.scope.kind == "reseller" and rp.scope.reseller_path == rpath
    assert rp.scope.reseller_id == rid
    assert cp is not None and cp.scope.kind == "customer" and cp.scope.customer_id == cid
