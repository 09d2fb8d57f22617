"""API bearer tokens: stored as SHA-256 hashes, verified with a short in-memory cache.

A token is 32 random bytes (``secrets.token_urlsafe``), so a plain SHA-256 is enough: there is
nothing to brute-force that a slow password hash would protect.  The database only ever holds
the hash; the token itself is shown once, when it is created.

The service provider's admin token comes from ``TRUNKLINE_ADMIN_TOKEN`` when set, else it is
generated on the first start (see :func:`ensure_admin_token`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from provisioning.db import utcnow
from provisioning.errors import NotFound
from provisioning.models import TOKEN_KINDS, ApiToken, Customer, Reseller
from provisioning.scope import PROVIDER, Scope

log = logging.getLogger(__name__)

TokenKind = Literal["admin", "reseller", "customer"]

# Verified tokens are remembered this long; a revocation takes effect within it.
CACHE_TTL = 0.5


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's kind and owner, and the scope that follows from it."""

    token_id: int
    kind: TokenKind
    owner_id: int | None
    scope: Scope
    label: str = ""
    # Switch-over: the principal of the parent's token this one was issued to.
    via: Principal | None = None
    user_id: int | None = None

    def describe(self) -> str:
        """For the audit log: "reseller 5 (token 12: login bob@example.com)"."""
        who = "service provider" if self.kind == "admin" else f"{self.kind} {self.owner_id}"
        return f"{who} (token {self.token_id}{': ' + self.label if self.label else ''})"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    kind: TokenKind,
    owner_id: int | None = None,
    label: str = "",
    expires_at: datetime | None = None,
    user_id: int | None = None,
    parent_token_id: int | None = None,
) -> str:
    """Store a new token's hash in the caller's transaction and return the token (shown once)."""
    return issue_token(
        session,
        kind=kind,
        owner_id=owner_id,
        label=label,
        expires_at=expires_at,
        user_id=user_id,
        parent_token_id=parent_token_id,
    )[0]


def issue_token(
    session: Session,
    *,
    kind: TokenKind,
    owner_id: int | None = None,
    label: str = "",
    expires_at: datetime | None = None,
    user_id: int | None = None,
    parent_token_id: int | None = None,
) -> tuple[str, ApiToken]:
    """Like :func:`create_token`, also returning the stored row (id, expiry)."""
    if kind not in TOKEN_KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    if (kind == "admin") != (owner_id is None):
        raise ValueError("admin tokens have no owner; reseller and customer tokens need one")
    token = secrets.token_urlsafe(32)
    row = ApiToken(
        kind=kind,
        owner_id=owner_id,
        token_hash=hash_token(token),
        label=label[:100],
        expires_at=expires_at,
        user_id=user_id,
        parent_token_id=parent_token_id,
    )
    session.add(row)
    session.flush()
    return token, row


def revoke_token(session: Session, *, token_id: int) -> None:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound("token", token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()


def ensure_admin_token(
    session_factory: sessionmaker[Session], *, env_token: str | None, token_file: Path
) -> str | None:
    """Make sure the service provider can authenticate; returns a token to print once, or None.

    * ``env_token`` set (TRUNKLINE_ADMIN_TOKEN): its hash is made a valid admin token (added,
      or un-revoked: the environment is the operator's explicit word).  Nothing to print.
    * otherwise, if no usable admin token exists (first start, or all were revoked): a new one
      is generated, written to ``token_file`` with mode 0600 and returned for printing.  The
      file is written before the hash is committed, so a failure cannot leave a stored token
      nobody knows.
    * otherwise: None.
    """
    if env_token:
        if len(env_token) < 16:
            log.warning("TRUNKLINE_ADMIN_TOKEN is short (%d characters): use 16 or more", len(env_token))
        digest = hash_token(env_token)
        with session_factory.begin() as session:
            existing = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).one_or_none()
            if existing is None:
                session.add(ApiToken(kind="admin", owner_id=None, token_hash=digest, label="environment"))
            elif existing.kind != "admin":
                raise ValueError("TRUNKLINE_ADMIN_TOKEN is already in use as a non-admin token")
            elif existing.revoked_at is not None:
                log.warning("TRUNKLINE_ADMIN_TOKEN had been revoked; it is valid again")
                existing.revoked_at = None
        return None

    with session_factory() as session:
        active = session.scalar(
            select(ApiToken.id).where(ApiToken.kind == "admin", ApiToken.revoked_at.is_(None)).limit(1)
        )
    if active is not None:
        return None

    token = secrets.token_urlsafe(32)
    _write_secret_file(token_file, token)
    try:
        with session_factory.begin() as session:
            session.add(ApiToken(kind="admin", owner_id=None, token_hash=hash_token(token), label="generated"))
    except BaseException:
        token_file.unlink(missing_ok=True)
        raise
    log.info("generated the admin API token and wrote it to %s", token_file)
    return token


# Labels of the service provider's own token (the first start's, then each rotation's).
_PROVIDER_TOKEN_LABELS = ("generated", "rotated")


def rotate_admin_token(session_factory: sessionmaker[Session], *, token_file: Path) -> str:
    """Replace the service provider's token: a new one is stored (its hash only) and written to
    ``token_file`` (mode 0600); the previous generated or rotated ones are revoked in the same
    transaction.  Returns the new token, to be shown once.

    API tokens of kind ``admin`` issued through ``POST /tokens``, administrators' login tokens and
    the TRUNKLINE_ADMIN_TOKEN one are not touched (revoke those with ``DELETE /tokens/{id}``, or
    change the variable).  If the database write fails, the previous file is put back.
    """
    previous = token_file.read_text() if token_file.exists() else None
    token = secrets.token_urlsafe(32)
    _write_secret_file(token_file, token)
    try:
        with session_factory.begin() as session:
            now = utcnow()
            for old in session.scalars(
                select(ApiToken).where(
                    ApiToken.kind == "admin",
                    ApiToken.user_id.is_(None),
                    ApiToken.label.in_(_PROVIDER_TOKEN_LABELS),
                    ApiToken.revoked_at.is_(None),
                )
            ):
                old.revoked_at = now
            session.add(ApiToken(kind="admin", owner_id=None, token_hash=hash_token(token), label="rotated"))
    except BaseException:
        if previous is None:
            token_file.unlink(missing_ok=True)
        else:
            _write_secret_file(token_file, previous.rstrip("\n"))
        raise
    log.info("rotated the admin API token and wrote it to %s", token_file)
    return token


def _write_secret_file(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` readable by the owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the start: never world-readable, not even for an instant.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case a stale temp file existed with other bits
        os.write(fd, (content + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class TokenVerifier:
    """Checks bearer tokens against the database, caching positive answers for ``ttl`` seconds."""

    def __init__(self, session_factory: sessionmaker[Session], *, ttl: float = CACHE_TTL) -> None:
        self._session_factory = session_factory
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal | None:
        if not token or len(token) > 512:
            return None
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = self._lookup(digest)
        with self._lock:
            if principal is None:
                self._cache.pop(digest, None)
            else:
                if len(self._cache) > 10_000:  # bounded: drop everything rather than track age
                    self._cache.clear()
                self._cache[digest] = (now + self._ttl, principal)
        return principal

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def _lookup(self, digest: str) -> Principal | None:
        with self._session_factory() as session:
            row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).one_or_none()
            # The lookup is by hash (an index seek whose timing says nothing useful about the
            # token); the explicit constant-time compare keeps the check honest if the lookup
            # ever becomes a prefix or case-insensitive match.
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                return None
            return principal_for(session, row)


def principal_for(session: Session, row: ApiToken, *, depth: int = 0) -> Principal | None:
    """The principal of a stored token, or None when it is revoked, expired or its owner is gone
    (for a switch-over token: also when the parent's token is no longer valid)."""
    if row.revoked_at is not None or depth > 8:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    via: Principal | None = None
    if row.parent_token_id is not None:
        parent = session.get(ApiToken, row.parent_token_id)
        via = principal_for(session, parent, depth=depth + 1) if parent is not None else None
        if via is None:
            return None
    scope = _scope_for(session, row)
    if scope is None:
        return None
    kind: TokenKind = row.kind  # type: ignore[assignment]
    return Principal(
        token_id=row.id, kind=kind, owner_id=row.owner_id, scope=scope, label=row.label, via=via, user_id=row.user_id
    )


def reseller_chain_active(session: Session, reseller: Reseller) -> bool:
    """A reseller can act only while it and every reseller above it are active."""
    ids = [int(part) for part in reseller.path.strip("/").split("/") if part]
    if not ids:
        return reseller.status == "active"
    inactive = session.scalar(
        select(func.count()).select_from(Reseller).where(Reseller.id.in_(ids), Reseller.status != "active")
    )
    return not inactive


def _scope_for(session: Session, row: ApiToken) -> Scope | None:
    if row.kind == "admin":
        return PROVIDER
    if row.owner_id is None:
        return None
    if row.kind == "reseller":
        reseller = session.get(Reseller, row.owner_id)
        if reseller is None or not reseller_chain_active(session, reseller):
            return None
        return Scope.for_reseller(reseller.id, reseller.path)
    if row.kind == "customer":
        customer = session.get(Customer, row.owner_id)
        if customer is None or customer.status == "closed":
            return None
        return Scope.for_customer(row.owner_id)
    return None


_verifiers: weakref.WeakKeyDictionary[sessionmaker[Session], TokenVerifier] = weakref.WeakKeyDictionary()
_verifiers_lock = threading.Lock()


def verifier_for(session_factory: sessionmaker[Session]) -> TokenVerifier:
    """The shared verifier (and cache) of a session factory."""
    with _verifiers_lock:
        verifier = _verifiers.get(session_factory)
        if verifier is None:
            verifier = _verifiers[session_factory] = TokenVerifier(session_factory)
        return verifier


def verify_token(session_factory: sessionmaker[Session], token: str) -> Principal | None:
    """The principal a bearer token stands for, or None (unknown, revoked, owner gone)."""
    return verifier_for(session_factory).verify(token)
