"""/api/v1/service-plans: plans, their call bundles and fraud defaults (the service provider's)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.exports import FILE_RESPONSES
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset, text_filter
from admin_api.schemas.common import Page
from admin_api.schemas.tariffs import (
    CallBundleCreate,
    CallBundlePublic,
    CallBundleUpdate,
    ServicePlanCreate,
    ServicePlanPublic,
    ServicePlanUpdate,
)
from provisioning import repo

router = APIRouter(prefix="/service-plans", tags=["service plans"])


@router.post("", status_code=201, summary="Create a service plan")
def create_plan(body: ServicePlanCreate, db: DbSession, principal: CurrentPrincipal) -> ServicePlanPublic:
    plan = repo.plans.create_plan(db, scope=principal.scope, **body.model_dump())
    db.commit()
    return ServicePlanPublic.model_validate(plan)


@router.get("", summary="List service plans", response_model=Page[ServicePlanPublic], responses=FILE_RESPONSES)
def list_plans(
    db: DbSession,
    principal: CurrentPrincipal,
    name: Annotated[str | None, text_filter(100, "Substring, any case")] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.plans.list_plans(db, scope=principal.scope, name=name, sort=sort)
    return respond(db, listing, ServicePlanPublic, limit=limit, offset=offset, fmt=format, name="service-plans")


@router.get("/{plan_id}", summary="Get a service plan")
def get_plan(plan_id: int, db: DbSession, principal: CurrentPrincipal) -> ServicePlanPublic:
    return ServicePlanPublic.model_validate(repo.plans.get_plan(db, scope=principal.scope, plan_id=plan_id))


@router.patch("/{plan_id}", summary="Change a service plan")
def update_plan(plan_id: int, body: ServicePlanUpdate, db: DbSession, principal: CurrentPrincipal) -> ServicePlanPublic:
    plan = repo.plans.update_plan(
        db, scope=principal.scope, plan_id=plan_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return ServicePlanPublic.model_validate(plan)


@router.delete("/{plan_id}", status_code=204, summary="Delete a service plan no customer is on")
def delete_plan(plan_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.plans.delete_plan(db, scope=principal.scope, plan_id=plan_id)
    db.commit()
    return Response(status_code=204)


@router.get("/{plan_id}/bundles", summary="The plan's call bundles")
def list_bundles(plan_id: int, db: DbSession, principal: CurrentPrincipal) -> list[CallBundlePublic]:
    return [
        CallBundlePublic.model_validate(b) for b in repo.plans.list_bundles(db, scope=principal.scope, plan_id=plan_id)
    ]


@router.post("/{plan_id}/bundles", status_code=201, summary="Add a call bundle to the plan")
def create_bundle(plan_id: int, body: CallBundleCreate, db: DbSession, principal: CurrentPrincipal) -> CallBundlePublic:
    bundle = repo.plans.create_bundle(db, scope=principal.scope, plan_id=plan_id, **body.model_dump())
    db.commit()
    return CallBundlePublic.model_validate(bundle)


@router.get("/{plan_id}/bundles/{bundle_id}", summary="Get a call bundle")
def get_bundle(plan_id: int, bundle_id: int, db: DbSession, principal: CurrentPrincipal) -> CallBundlePublic:
    bundle = repo.plans.get_bundle(db, scope=principal.scope, plan_id=plan_id, bundle_id=bundle_id)
    return CallBundlePublic.model_validate(bundle)


@router.patch("/{plan_id}/bundles/{bundle_id}", summary="Change a call bundle")
def update_bundle(
    plan_id: int, bundle_id: int, body: CallBundleUpdate, db: DbSession, principal: CurrentPrincipal
) -> CallBundlePublic:
    bundle = repo.plans.update_bundle(
        db, scope=principal.scope, plan_id=plan_id, bundle_id=bundle_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return CallBundlePublic.model_validate(bundle)


@router.delete("/{plan_id}/bundles/{bundle_id}", status_code=204, summary="Delete a call bundle no customer has")
def delete_bundle(plan_id: int, bundle_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.plans.delete_bundle(db, scope=principal.scope, plan_id=plan_id, bundle_id=bundle_id)
    db.commit()
    return Response(status_code=204)
