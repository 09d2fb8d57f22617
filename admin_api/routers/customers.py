"""/api/v1/customers"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.routers._params import PageLimit, PageOffset, text_filter
from admin_api.schemas.common import Page
from admin_api.schemas.customers import CustomerCreate, CustomerPublic, CustomerStatus, CustomerUpdate
from provisioning import repo

router = APIRouter(prefix="/customers", tags=["customers"])


@router.post("", status_code=201, summary="Create a customer")
def create_customer(body: CustomerCreate, db: DbSession, principal: CurrentPrincipal) -> CustomerPublic:
    customer = repo.create_customer(db, scope=principal.scope, **body.model_dump())
    db.commit()
    return CustomerPublic.model_validate(customer)


@router.get("", summary="List customers")
def list_customers(
    db: DbSession,
    principal: CurrentPrincipal,
    name: Annotated[str | None, text_filter(100, "Substring, any case")] = None,
    status: CustomerStatus | None = None,
    domain: Annotated[str | None, text_filter(253)] = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> Page[CustomerPublic]:
    page = repo.list_customers(
        db, scope=principal.scope, name=name, status=status, domain=domain, limit=limit, offset=offset
    )
    return Page[CustomerPublic](
        items=[CustomerPublic.model_validate(c) for c in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/{customer_id}", summary="Get a customer")
def get_customer(customer_id: int, db: DbSession, principal: CurrentPrincipal) -> CustomerPublic:
    return CustomerPublic.model_validate(repo.get_customer(db, scope=principal.scope, customer_id=customer_id))


@router.patch("/{customer_id}", summary="Change a customer")
def update_customer(
    customer_id: int, body: CustomerUpdate, db: DbSession, principal: CurrentPrincipal
) -> CustomerPublic:
    customer = repo.update_customer(
        db, scope=principal.scope, customer_id=customer_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return CustomerPublic.model_validate(customer)


@router.delete("/{customer_id}", status_code=204, summary="Delete a customer without devices")
def delete_customer(customer_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.delete_customer(db, scope=principal.scope, customer_id=customer_id)
    db.commit()
    return Response(status_code=204)
