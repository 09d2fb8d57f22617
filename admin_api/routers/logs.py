"""/api/v1/audit-log, /api/v1/login-history and /api/v1/cdrs: read-only records."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.exports import FILE_RESPONSES
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset, text_filter
from admin_api.schemas.auth import AuditEntryPublic, CdrPublic, LoginEventPublic
from admin_api.schemas.common import Instant, Page
from provisioning import repo

router = APIRouter(tags=["logs and CDRs"])
IdQuery = Annotated[int | None, Query(ge=1, le=2**31 - 1)]
Ms = Annotated[int | None, Query(ge=0, le=2**53, description="Epoch milliseconds (UTC)")]


@router.get(
    "/audit-log",
    summary="Who changed what, when, before and after (newest first)",
    response_model=Page[AuditEntryPublic],
    responses=FILE_RESPONSES,
)
def list_audit(
    db: DbSession,
    principal: CurrentPrincipal,
    entity: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
    entity_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    customer_id: IdQuery = None,
    action: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
    since: Annotated[Instant | None, Query()] = None,
    until: Annotated[Instant | None, Query()] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.auth.list_audit(
        db,
        scope=principal.scope,
        entity=entity,
        entity_id=entity_id,
        customer_id=customer_id,
        action=action,
        since=since,
        until=until,
        sort=sort,
    )
    return respond(db, listing, AuditEntryPublic, limit=limit, offset=offset, fmt=format, name="audit-log")


@router.get(
    "/login-history",
    summary="Login attempts, failures, blocks and switch-overs (newest first)",
    response_model=Page[LoginEventPublic],
    responses=FILE_RESPONSES,
)
def list_logins(
    db: DbSession,
    principal: CurrentPrincipal,
    login: Annotated[str | None, text_filter(170, "Substring, any case")] = None,
    outcome: Literal["success", "failure", "blocked", "switch_over"] | None = None,
    since: Annotated[Instant | None, Query()] = None,
    until: Annotated[Instant | None, Query()] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.auth.list_logins(
        db, scope=principal.scope, login=login, outcome=outcome, since=since, until=until, sort=sort
    )
    return respond(db, listing, LoginEventPublic, limit=limit, offset=offset, fmt=format, name="login-history")


@router.get(
    "/cdrs", summary="Call detail records (read-only)", response_model=Page[CdrPublic], responses=FILE_RESPONSES
)
def list_cdrs(
    db: DbSession,
    principal: CurrentPrincipal,
    customer_id: IdQuery = None,
    since_ms: Ms = None,
    until_ms: Ms = None,
    number: Annotated[
        str | None, Query(max_length=32, pattern=r"^\+?[0-9]*$", description="Dialled, starting with")
    ] = None,
    disposition: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]*$")] = None,
    direction: Annotated[str | None, Query(max_length=16, pattern=r"^[a-z_]*$")] = None,
    sip_call_id: Annotated[
        str | None, Query(max_length=255, description="The caller's SIP Call-ID (exact; several CDRs may have it)")
    ] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.cdrs.list_cdrs(
        db,
        scope=principal.scope,
        customer_id=customer_id,
        since_ms=since_ms,
        until_ms=until_ms,
        number=number,
        disposition=disposition,
        direction=direction,
        sip_call_id=sip_call_id,
        sort=sort,
    )
    # Which carrier terminated a call is the reseller's business, not its customer's.
    hidden = frozenset({"carrier_id"}) if principal.scope.kind == "customer" else frozenset()
    return respond(db, listing, CdrPublic, limit=limit, offset=offset, fmt=format, name="cdrs", hidden=hidden)
