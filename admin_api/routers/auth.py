"""/api/v1/auth (login, logout, who am I, switch-over) and /api/v1/tokens (API tokens)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from admin_api.deps import ClientIp, CurrentPrincipal, DbSession, PublicDb
from admin_api.exports import FILE_RESPONSES
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset
from admin_api.schemas.auth import LoginRequest, Me, SwitchOverRequest, TokenCreate, TokenIssued, TokenKind, TokenPublic
from admin_api.schemas.common import ErrorDetail, Page
from provisioning import repo
from provisioning.audit import Actor, set_actor
from provisioning.tokens import TokenVerifier

# The login is the one /api/v1 route without a bearer token.
public = APIRouter(prefix="/auth", tags=["authentication"])
router = APIRouter(prefix="/auth", tags=["authentication"])
tokens = APIRouter(prefix="/tokens", tags=["authentication"])


@public.post(
    "/login",
    summary="Web login (customer web username, or administrator name@domain) -> bearer token",
    responses={
        401: {"model": ErrorDetail, "description": "Wrong username or password (never says which)"},
        429: {"model": ErrorDetail, "description": "Five failures in five minutes: blocked for five minutes"},
    },
)
def login(body: LoginRequest, db: PublicDb, ip: ClientIp) -> Any:
    set_actor(db, Actor(label=f"login {body.username.strip()[:100]}", kind="system"))
    result = repo.auth.login(db, username=body.username, password=body.password, ip=ip)
    # Failures are committed too: they are what the block counts.
    db.commit()
    if result.outcome == "blocked":
        return JSONResponse(
            status_code=429,
            content={"detail": "too many failed logins; try again later"},
            headers={"Retry-After": str(result.retry_after)},
        )
    if result.outcome != "success" or result.token is None or result.kind is None:
        return JSONResponse(
            status_code=401,
            content={"detail": "invalid username or password"},
            headers={"WWW-Authenticate": "Bearer"},
        )
    return TokenIssued(token=result.token, kind=result.kind, owner_id=result.owner_id, expires_at=result.expires_at)


def _forget_cached(request: Request) -> None:
    # This process stops accepting a revoked token at once; other nodes within the cache's 0.5 s.
    verifier: TokenVerifier = request.app.state.token_verifier
    verifier.forget()


@router.post("/logout", status_code=204, summary="Revoke the token this request carries")
def logout(request: Request, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.auth.revoke(db, scope=principal.scope, token_id=principal.token_id)
    db.commit()
    _forget_cached(request)
    return Response(status_code=204)


@router.get("/me", summary="Who this token is")
def whoami(principal: CurrentPrincipal) -> Me:
    return Me(
        token_id=principal.token_id,
        kind=principal.kind,
        owner_id=principal.owner_id,
        label=principal.label,
        acting_for=principal.via.describe() if principal.via is not None else None,
    )


@router.post(
    "/switch-over",
    summary="Act as a descendant reseller or one of the caller's customers (a short-lived, audited token)",
)
def switch_over(body: SwitchOverRequest, db: DbSession, principal: CurrentPrincipal, ip: ClientIp) -> TokenIssued:
    result = repo.auth.switch_over(
        db, principal=principal, reseller_id=body.reseller_id, customer_id=body.customer_id, ip=ip
    )
    db.commit()
    assert result.token is not None and result.kind is not None
    return TokenIssued(token=result.token, kind=result.kind, owner_id=result.owner_id, expires_at=result.expires_at)


@tokens.post("", status_code=201, summary="Issue an API token for an account in the caller's scope")
def create_token(body: TokenCreate, db: DbSession, principal: CurrentPrincipal) -> TokenIssued:
    token, row = repo.auth.create_api_token(
        db, scope=principal.scope, kind=body.kind, owner_id=body.owner_id, label=body.label, expires_at=body.expires_at
    )
    db.commit()
    return TokenIssued(token=token, token_id=row.id, kind=body.kind, owner_id=row.owner_id, expires_at=row.expires_at)


@tokens.get("", summary="List tokens (never the secrets)", response_model=Page[TokenPublic], responses=FILE_RESPONSES)
def list_tokens(
    db: DbSession,
    principal: CurrentPrincipal,
    kind: TokenKind | None = None,
    active: Annotated[bool | None, Query(description="true: usable now; false: revoked or expired")] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.auth.list_tokens(db, scope=principal.scope, kind=kind, active=active, sort=sort)
    return respond(db, listing, TokenPublic, limit=limit, offset=offset, fmt=format, name="tokens")


@tokens.get("/{token_id}", summary="Get a token's record")
def get_token(token_id: int, db: DbSession, principal: CurrentPrincipal) -> TokenPublic:
    return TokenPublic.model_validate(repo.auth.get_token(db, scope=principal.scope, token_id=token_id))


@tokens.delete("/{token_id}", status_code=204, summary="Revoke a token (within half a second everywhere)")
def revoke_token(request: Request, token_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.auth.revoke(db, scope=principal.scope, token_id=token_id)
    db.commit()
    _forget_cached(request)
    return Response(status_code=204)
