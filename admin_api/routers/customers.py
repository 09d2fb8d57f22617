"""/api/v1/customers: the record, its lifecycle operations, bundles and translation rules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.exports import FILE_RESPONSES
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset, text_filter
from admin_api.schemas.common import Page, Reason
from admin_api.schemas.customers import (
    BillingType,
    CustomerCreate,
    CustomerPublic,
    CustomerStatus,
    CustomerType,
    CustomerUpdate,
    StatusEventPublic,
    SuspensionPublic,
)
from admin_api.schemas.routing import (
    TranslationKind,
    TranslationRuleCreate,
    TranslationRulePublic,
    TranslationRuleUpdate,
)
from admin_api.schemas.tariffs import CustomerBundlePublic, CustomerBundleSet
from provisioning import repo

router = APIRouter(prefix="/customers", tags=["customers"])


@router.post("", status_code=201, summary="Create a customer (only the name is required)")
def create_customer(body: CustomerCreate, db: DbSession, principal: CurrentPrincipal) -> CustomerPublic:
    customer = repo.create_customer(db, scope=principal.scope, **body.model_dump())
    db.commit()
    return CustomerPublic.model_validate(customer)


@router.get(
    "",
    summary="List customers (OV500 filters), sorted and paginated, or exported",
    response_model=Page[CustomerPublic],
    responses=FILE_RESPONSES,
)
def list_customers(
    db: DbSession,
    principal: CurrentPrincipal,
    name: Annotated[str | None, text_filter(100, "Substring, any case")] = None,
    company: Annotated[str | None, text_filter(100, "Substring, any case")] = None,
    web_username: Annotated[str | None, text_filter(30, "Login username: substring, any case")] = None,
    account: Annotated[str | None, text_filter(20, "Account code or customer id, exact")] = None,
    ip: Annotated[str | None, text_filter(64, "Address of one of its IP devices")] = None,
    sip_user: Annotated[str | None, text_filter(64, "Username of one of its SIP devices: substring")] = None,
    status: CustomerStatus | None = None,
    domain: Annotated[str | None, text_filter(253)] = None,
    customer_type: CustomerType | None = None,
    billing_type: BillingType | None = None,
    reseller_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    include_children: Annotated[bool, Query(description="With reseller_id: its descendants' too")] = True,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.list_customers(
        db,
        scope=principal.scope,
        name=name,
        company=company,
        web_username=web_username,
        account=account,
        ip=ip,
        sip_user=sip_user,
        status=status,
        domain=domain,
        customer_type=customer_type,
        billing_type=billing_type,
        reseller_id=reseller_id,
        include_children=include_children,
        sort=sort,
    )
    return respond(db, listing, CustomerPublic, limit=limit, offset=offset, fmt=format, name="customers")


@router.get("/{customer_id}", summary="Get a customer")
def get_customer(customer_id: int, db: DbSession, principal: CurrentPrincipal) -> CustomerPublic:
    return CustomerPublic.model_validate(repo.get_customer(db, scope=principal.scope, customer_id=customer_id))


@router.patch("/{customer_id}", summary="Change a customer (status: use the lifecycle operations)")
def update_customer(
    customer_id: int, body: CustomerUpdate, db: DbSession, principal: CurrentPrincipal
) -> CustomerPublic:
    customer = repo.update_customer(
        db, scope=principal.scope, customer_id=customer_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return CustomerPublic.model_validate(customer)


@router.delete("/{customer_id}", status_code=204, summary="Delete a customer without devices or history")
def delete_customer(customer_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.delete_customer(db, scope=principal.scope, customer_id=customer_id)
    db.commit()
    return Response(status_code=204)


def _lifecycle(operation: str, doc: str) -> None:
    def operate(customer_id: int, body: Reason, db: DbSession, principal: CurrentPrincipal) -> CustomerPublic:
        customer = repo.change_status(
            db,
            scope=principal.scope,
            customer_id=customer_id,
            operation=operation,
            reason=body.reason,
            comment=body.comment,
        )
        db.commit()
        return CustomerPublic.model_validate(customer)

    operate.__name__ = f"{operation}_customer"
    router.post(f"/{{customer_id}}/{operation}", summary=doc)(operate)


_lifecycle("activate", "Service start: created -> active")
_lifecycle("stop", "Stop (suspend) an active customer: its calls are refused; a reason is required")
_lifecycle("resume", "Resume a stopped customer")
_lifecycle("close", "Close a customer for good (refused while devices, DIDs or routes remain)")


@router.get("/{customer_id}/suspensions", summary="Suspend periods (stop to resume)")
def list_suspensions(customer_id: int, db: DbSession, principal: CurrentPrincipal) -> list[SuspensionPublic]:
    items = repo.customers.list_suspensions(db, scope=principal.scope, customer_id=customer_id)
    return [SuspensionPublic.model_validate(item) for item in items]


@router.get("/{customer_id}/status-history", summary="Lifecycle operations with their reasons")
def list_status_events(customer_id: int, db: DbSession, principal: CurrentPrincipal) -> list[StatusEventPublic]:
    items = repo.customers.list_status_events(db, scope=principal.scope, customer_id=customer_id)
    return [StatusEventPublic.model_validate(item) for item in items]


@router.get("/{customer_id}/bundles", summary="The customer's call bundles")
def list_customer_bundles(customer_id: int, db: DbSession, principal: CurrentPrincipal) -> list[CustomerBundlePublic]:
    items = repo.plans.list_customer_bundles(db, scope=principal.scope, customer_id=customer_id)
    return [CustomerBundlePublic.model_validate(item) for item in items]


@router.put(
    "/{customer_id}/bundles/{bundle_id}",
    summary="Set the quantity of a bundle of the customer's plan (0 removes it)",
    responses={204: {"description": "Removed"}},
)
def set_customer_bundle(
    customer_id: int, bundle_id: int, body: CustomerBundleSet, db: DbSession, principal: CurrentPrincipal
) -> Any:
    item = repo.plans.set_customer_bundle(
        db, scope=principal.scope, customer_id=customer_id, bundle_id=bundle_id, quantity=body.quantity
    )
    db.commit()
    if item is None:
        return Response(status_code=204)
    return CustomerBundlePublic.model_validate(item)


@router.get("/{customer_id}/translation-rules", summary="Number translation rules, in order")
def list_rules(
    customer_id: int, db: DbSession, principal: CurrentPrincipal, kind: TranslationKind | None = None
) -> list[TranslationRulePublic]:
    rules = repo.numbers.list_rules(db, scope=principal.scope, customer_id=customer_id, kind=kind)
    return [TranslationRulePublic.model_validate(rule) for rule in rules]


@router.post("/{customer_id}/translation-rules", status_code=201, summary="Add a number translation rule")
def create_rule(
    customer_id: int, body: TranslationRuleCreate, db: DbSession, principal: CurrentPrincipal
) -> TranslationRulePublic:
    rule = repo.numbers.create_rule(db, scope=principal.scope, customer_id=customer_id, **body.model_dump())
    db.commit()
    return TranslationRulePublic.model_validate(rule)


@router.get("/{customer_id}/translation-rules/{rule_id}", summary="Get a translation rule")
def get_rule(customer_id: int, rule_id: int, db: DbSession, principal: CurrentPrincipal) -> TranslationRulePublic:
    rule = repo.numbers.get_rule(db, scope=principal.scope, customer_id=customer_id, rule_id=rule_id)
    return TranslationRulePublic.model_validate(rule)


@router.patch("/{customer_id}/translation-rules/{rule_id}", summary="Change a translation rule")
def update_rule(
    customer_id: int, rule_id: int, body: TranslationRuleUpdate, db: DbSession, principal: CurrentPrincipal
) -> TranslationRulePublic:
    rule = repo.numbers.update_rule(
        db, scope=principal.scope, customer_id=customer_id, rule_id=rule_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return TranslationRulePublic.model_validate(rule)


@router.delete("/{customer_id}/translation-rules/{rule_id}", status_code=204, summary="Delete a translation rule")
def delete_rule(customer_id: int, rule_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.numbers.delete_rule(db, scope=principal.scope, customer_id=customer_id, rule_id=rule_id)
    db.commit()
    return Response(status_code=204)
