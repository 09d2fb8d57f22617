"""/api/v1/dids: DID numbers, one at a time or as a range."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.exports import FILE_RESPONSES
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset
from admin_api.schemas.common import EntityStatus, Page
from admin_api.schemas.routing import DidCreate, DidDestination, DidPublic, DidRangeCreate, DidUpdate
from provisioning import repo

router = APIRouter(prefix="/dids", tags=["DIDs"])


@router.post("", status_code=201, summary="Create a DID")
def create_did(body: DidCreate, db: DbSession, principal: CurrentPrincipal) -> DidPublic:
    did = repo.numbers.create_did(db, scope=principal.scope, **body.model_dump())
    db.commit()
    return DidPublic.model_validate(did)


@router.post("/range", status_code=201, summary="Create a range of consecutive DIDs (all or none)")
def create_did_range(body: DidRangeCreate, db: DbSession, principal: CurrentPrincipal) -> list[DidPublic]:
    dids = repo.numbers.create_did_range(db, scope=principal.scope, **body.model_dump())
    db.commit()
    return [DidPublic.model_validate(d) for d in dids]


@router.get("", summary="List DIDs", response_model=Page[DidPublic], responses=FILE_RESPONSES)
def list_dids(
    db: DbSession,
    principal: CurrentPrincipal,
    number: Annotated[str | None, Query(max_length=32, pattern=r"^\+?[0-9]*$", description="Starting with")] = None,
    customer_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    reseller_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    status: EntityStatus | None = None,
    destination_type: DidDestination | None = None,
    assigned: bool | None = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.numbers.list_dids(
        db,
        scope=principal.scope,
        number=number,
        customer_id=customer_id,
        reseller_id=reseller_id,
        status=status,
        destination_type=destination_type,
        assigned=assigned,
        sort=sort,
    )
    return respond(db, listing, DidPublic, limit=limit, offset=offset, fmt=format, name="dids")


@router.get("/{did_id}", summary="Get a DID")
def get_did(did_id: int, db: DbSession, principal: CurrentPrincipal) -> DidPublic:
    return DidPublic.model_validate(repo.numbers.get_did(db, scope=principal.scope, did_id=did_id))


@router.patch("/{did_id}", summary="Assign, route or change a DID (customers: its destination only)")
def update_did(did_id: int, body: DidUpdate, db: DbSession, principal: CurrentPrincipal) -> DidPublic:
    did = repo.numbers.update_did(db, scope=principal.scope, did_id=did_id, changes=body.model_dump(exclude_unset=True))
    db.commit()
    return DidPublic.model_validate(did)


@router.delete("/{did_id}", status_code=204, summary="Delete a DID")
def delete_did(did_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.numbers.delete_did(db, scope=principal.scope, did_id=did_id)
    db.commit()
    return Response(status_code=204)
