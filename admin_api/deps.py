"""Typed dependencies: ``DbSession`` (one Session per request, its changes attributed to the
caller in the audit log), ``CurrentPrincipal``, ``PublicDb`` (no token: the login endpoint)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from provisioning.audit import Actor, set_actor
from provisioning.tokens import Principal, TokenVerifier

_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer <token>`")


def get_session_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


def get_public_db(request: Request) -> Iterator[Session]:
    """A Session for a request without a principal; routers commit, anything else is rolled back."""
    session = get_session_factory(request)()
    try:
        yield session
    finally:
        session.close()


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # A sync dependency: FastAPI runs it in the thread pool, so a cache miss that queries the
    # database never blocks the event loop.
    if credentials is None or not credentials.credentials:
        raise _unauthorized("missing bearer token")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = verifier.verify(credentials.credentials)
    if principal is None:
        raise _unauthorized("invalid, expired or revoked token")
    return principal


def actor_for(principal: Principal) -> Actor:
    return Actor(
        label=principal.describe(),
        kind=principal.kind,
        id=principal.owner_id,
        via=principal.via.describe() if principal.via is not None else None,
    )


def get_db(request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> Iterator[Session]:
    """A Session for the request whose changes the audit log attributes to the caller."""
    session = get_session_factory(request)()
    set_actor(session, actor_for(principal))
    try:
        yield session
    finally:
        session.close()


def get_realm_default(request: Request) -> str:
    realm: str = request.app.state.realm_default
    return realm


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def _unauthorized(detail: str) -> HTTPException:
    # RFC 6750 section 3: a 401 names the scheme the client should use.
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


DbSession = Annotated[Session, Depends(get_db)]
PublicDb = Annotated[Session, Depends(get_public_db)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
RealmDefault = Annotated[str, Depends(get_realm_default)]
ClientIp = Annotated[str, Depends(client_ip)]
