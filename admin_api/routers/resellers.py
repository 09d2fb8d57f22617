"""/api/v1/resellers and /api/v1/admin-users: the reseller tree and its administrators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.exports import FILE_RESPONSES
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset, text_filter
from admin_api.schemas.common import EntityStatus, Page
from admin_api.schemas.resellers import (
    AdminUserCreate,
    AdminUserPublic,
    AdminUserUpdate,
    ResellerCreate,
    ResellerPublic,
    ResellerUpdate,
)
from provisioning import repo

router = APIRouter(prefix="/resellers", tags=["resellers"])
admins = APIRouter(prefix="/admin-users", tags=["resellers"])


@router.post("", status_code=201, summary="Create a reseller under the caller (or under parent_id)")
def create_reseller(body: ResellerCreate, db: DbSession, principal: CurrentPrincipal) -> ResellerPublic:
    reseller = repo.create_reseller(db, scope=principal.scope, **body.model_dump())
    db.commit()
    return ResellerPublic.model_validate(reseller)


@router.get("", summary="List resellers (the caller and its descendants)", response_model=Page[ResellerPublic],
            responses=FILE_RESPONSES)  # fmt: skip
def list_resellers(
    db: DbSession,
    principal: CurrentPrincipal,
    name: Annotated[str | None, text_filter(100, "Substring, any case")] = None,
    company: Annotated[str | None, text_filter(100, "Substring, any case")] = None,
    status: EntityStatus | None = None,
    parent_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.list_resellers(
        db, scope=principal.scope, name=name, company=company, status=status, parent_id=parent_id, sort=sort
    )
    return respond(db, listing, ResellerPublic, limit=limit, offset=offset, fmt=format, name="resellers")


@router.get("/{reseller_id}", summary="Get a reseller")
def get_reseller(reseller_id: int, db: DbSession, principal: CurrentPrincipal) -> ResellerPublic:
    return ResellerPublic.model_validate(repo.get_reseller(db, scope=principal.scope, reseller_id=reseller_id))


@router.patch("/{reseller_id}", summary="Change a descendant reseller (its own record: by its parent)")
def update_reseller(
    reseller_id: int, body: ResellerUpdate, db: DbSession, principal: CurrentPrincipal
) -> ResellerPublic:
    reseller = repo.update_reseller(
        db, scope=principal.scope, reseller_id=reseller_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return ResellerPublic.model_validate(reseller)


@router.delete("/{reseller_id}", status_code=204, summary="Delete an empty reseller")
def delete_reseller(reseller_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.delete_reseller(db, scope=principal.scope, reseller_id=reseller_id)
    db.commit()
    return Response(status_code=204)


@admins.post("", status_code=201, summary="Create an administrator login")
def create_admin_user(body: AdminUserCreate, db: DbSession, principal: CurrentPrincipal) -> AdminUserPublic:
    user = repo.auth.create_admin_user(db, scope=principal.scope, **body.model_dump())
    db.commit()
    return AdminUserPublic.model_validate(user)


@admins.get("", summary="List administrator logins", response_model=Page[AdminUserPublic], responses=FILE_RESPONSES)
def list_admin_users(
    db: DbSession,
    principal: CurrentPrincipal,
    reseller_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    username: Annotated[str | None, text_filter(170, "Substring, any case")] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.auth.list_admin_users(
        db, scope=principal.scope, reseller_id=reseller_id, username=username, sort=sort
    )
    return respond(db, listing, AdminUserPublic, limit=limit, offset=offset, fmt=format, name="admin-users")


@admins.get("/{user_id}", summary="Get an administrator login")
def get_admin_user(user_id: int, db: DbSession, principal: CurrentPrincipal) -> AdminUserPublic:
    return AdminUserPublic.model_validate(repo.auth.get_admin_user(db, scope=principal.scope, user_id=user_id))


@admins.patch("/{user_id}", summary="Change an administrator login (a new password ends its sessions)")
def update_admin_user(
    user_id: int, body: AdminUserUpdate, db: DbSession, principal: CurrentPrincipal
) -> AdminUserPublic:
    user = repo.auth.update_admin_user(
        db, scope=principal.scope, user_id=user_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return AdminUserPublic.model_validate(user)


@admins.delete("/{user_id}", status_code=204, summary="Delete an administrator login")
def delete_admin_user(user_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.auth.delete_admin_user(db, scope=principal.scope, user_id=user_id)
    db.commit()
    return Response(status_code=204)
