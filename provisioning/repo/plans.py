"""Service plans, their call bundles, and the bundles a customer has.

Plans are the service provider's (iPECS OMS: the reseller only reads them); a plan carries the
per-user daily fraud limits its customers start with and the call bundles they may take.  A
customer can only take bundles of its own plan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted
from provisioning.models import (
    DEVICE_STATUSES,
    ENTITY_CUSTOMER,
    ENTITY_PLAN,
    CallBundle,
    Customer,
    CustomerBundle,
    ServicePlan,
)
from provisioning.repo._common import (
    Listing,
    apply_changes,
    apply_sort,
    flush,
    record_change,
    require_money,
    require_one_of,
    require_range,
    require_text,
)
from provisioning.repo.customers import get_customer
from provisioning.scope import Scope
from provisioning.validation import DIGITS_PATTERN, is_valid_id

PLAN_FIELDS = ("name", "description", "status", "fraud_limit_default", "fraud_limit_ceiling")
BUNDLE_FIELDS = ("name", "minutes", "zone_prefixes")
PLAN_SORTABLE = ("id", "name", "status", "created_at")
MAX_BUNDLE_MINUTES = 1_000_000


def _provider_only(scope: Scope) -> None:
    if scope.kind != "provider":
        raise NotPermitted("service plans are managed by the service provider")


def get_plan(session: Session, *, scope: Scope, plan_id: int) -> ServicePlan:
    plan = session.get(ServicePlan, plan_id) if is_valid_id(plan_id) else None
    if plan is None:
        raise NotFound("service plan", plan_id)
    if scope.kind == "customer":
        customer = session.get(Customer, scope.customer_id)
        if customer is None or customer.service_plan_id != plan.id:
            raise NotFound("service plan", plan_id)
    return plan


def list_plans(session: Session, *, scope: Scope, name: str | None = None, sort: str | None = None) -> Listing:
    stmt = select(ServicePlan)
    if scope.kind == "customer":
        customer = session.get(Customer, scope.customer_id)
        stmt = stmt.where(ServicePlan.id == (customer.service_plan_id if customer else None))
    if name:
        stmt = stmt.where(ServicePlan.name.icontains(name, autoescape=True))
    columns = {key: getattr(ServicePlan, key) for key in PLAN_SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=ServicePlan.id))


def _check_plan_values(values: Mapping[str, Any]) -> None:
    require_text(values, "name", max_length=100, required="name" in values)
    require_text(values, "description", max_length=1000)
    if "status" in values:
        require_one_of(values["status"], DEVICE_STATUSES, field="status")
    require_money(values, "fraud_limit_default")
    require_money(values, "fraud_limit_ceiling")


def _check_fraud(default: Decimal | None, ceiling: Decimal | None) -> None:
    if default is not None and ceiling is not None and default > ceiling:
        raise InvalidValue("fraud_limit_default may not exceed fraud_limit_ceiling", field="fraud_limit_default")


def create_plan(
    session: Session,
    *,
    scope: Scope,
    name: str,
    description: str = "",
    status: str = "active",
    fraud_limit_default: Decimal | None = None,
    fraud_limit_ceiling: Decimal | None = None,
) -> ServicePlan:
    _provider_only(scope)
    values = {
        "name": name,
        "description": description,
        "status": status,
        "fraud_limit_default": fraud_limit_default,
        "fraud_limit_ceiling": fraud_limit_ceiling,
    }
    _check_plan_values(values)
    _check_fraud(fraud_limit_default, fraud_limit_ceiling)
    plan = ServicePlan(**{**values, "name": name.strip()})
    session.add(plan)
    flush(session)
    return plan


def update_plan(session: Session, *, scope: Scope, plan_id: int, changes: Mapping[str, Any]) -> ServicePlan:
    _provider_only(scope)
    plan = get_plan(session, scope=scope, plan_id=plan_id)
    values = dict(changes)
    for field in ("name", "description", "status"):
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    _check_plan_values(values)
    _check_fraud(
        values.get("fraud_limit_default", plan.fraud_limit_default),
        values.get("fraud_limit_ceiling", plan.fraud_limit_ceiling),
    )
    apply_changes(plan, values, allowed=PLAN_FIELDS)
    flush(session)
    record_change(session, entity=ENTITY_PLAN, entity_id=plan.id)
    return plan


def delete_plan(session: Session, *, scope: Scope, plan_id: int) -> None:
    _provider_only(scope)
    plan = get_plan(session, scope=scope, plan_id=plan_id)
    users = session.scalar(select(func.count()).where(Customer.service_plan_id == plan.id)) or 0
    if users:
        raise Conflict(f"{users} customer(s) are on this plan")
    for bundle in session.scalars(select(CallBundle).where(CallBundle.service_plan_id == plan.id)):
        session.delete(bundle)
    session.delete(plan)
    flush(session)
    record_change(session, entity=ENTITY_PLAN, entity_id=plan_id)


# -- bundles of a plan --------------------------------------------------------------------------


def _prefixes(values: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(values))
    if not wanted:
        raise InvalidValue("at least one zone prefix is required", field="zone_prefixes")
    for prefix in wanted:
        if not isinstance(prefix, str) or not re.fullmatch(DIGITS_PATTERN, prefix):
            raise InvalidValue(f"zone prefix {prefix!r} is not 1-20 digits", field="zone_prefixes")
    return wanted


def list_bundles(session: Session, *, scope: Scope, plan_id: int) -> list[CallBundle]:
    plan = get_plan(session, scope=scope, plan_id=plan_id)
    return list(
        session.scalars(select(CallBundle).where(CallBundle.service_plan_id == plan.id).order_by(CallBundle.id))
    )


def get_bundle(session: Session, *, scope: Scope, plan_id: int, bundle_id: int) -> CallBundle:
    plan = get_plan(session, scope=scope, plan_id=plan_id)
    bundle = session.get(CallBundle, bundle_id) if is_valid_id(bundle_id) else None
    if bundle is None or bundle.service_plan_id != plan.id:
        raise NotFound("call bundle", bundle_id)
    return bundle


def create_bundle(
    session: Session, *, scope: Scope, plan_id: int, name: str, minutes: int, zone_prefixes: Iterable[str]
) -> CallBundle:
    _provider_only(scope)
    plan = get_plan(session, scope=scope, plan_id=plan_id)
    require_text({"name": name}, "name", max_length=100, required=True)
    require_range({"minutes": minutes}, "minutes", 1, MAX_BUNDLE_MINUTES)
    bundle = CallBundle(
        service_plan_id=plan.id, name=name.strip(), minutes=minutes, zone_prefixes=_prefixes(zone_prefixes)
    )
    session.add(bundle)
    flush(session)
    record_change(session, entity=ENTITY_PLAN, entity_id=plan.id)
    return bundle


def update_bundle(
    session: Session, *, scope: Scope, plan_id: int, bundle_id: int, changes: Mapping[str, Any]
) -> CallBundle:
    _provider_only(scope)
    bundle = get_bundle(session, scope=scope, plan_id=plan_id, bundle_id=bundle_id)
    values = dict(changes)
    for field in BUNDLE_FIELDS:
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    require_text(values, "name", max_length=100, required="name" in values)
    require_range(values, "minutes", 1, MAX_BUNDLE_MINUTES)
    if "zone_prefixes" in values:
        values["zone_prefixes"] = _prefixes(values["zone_prefixes"])
    apply_changes(bundle, values, allowed=BUNDLE_FIELDS)
    flush(session)
    record_change(session, entity=ENTITY_PLAN, entity_id=bundle.service_plan_id)
    return bundle


def delete_bundle(session: Session, *, scope: Scope, plan_id: int, bundle_id: int) -> None:
    _provider_only(scope)
    bundle = get_bundle(session, scope=scope, plan_id=plan_id, bundle_id=bundle_id)
    used = session.scalar(select(func.count()).where(CustomerBundle.bundle_id == bundle.id)) or 0
    if used:
        raise Conflict(f"{used} customer(s) have this bundle")
    session.delete(bundle)
    flush(session)
    record_change(session, entity=ENTITY_PLAN, entity_id=plan_id)


# -- a customer's bundles -----------------------------------------------------------------------


def list_customer_bundles(session: Session, *, scope: Scope, customer_id: int) -> list[CustomerBundle]:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    return list(
        session.scalars(
            select(CustomerBundle).where(CustomerBundle.customer_id == customer.id).order_by(CustomerBundle.id)
        )
    )


def set_customer_bundle(
    session: Session, *, scope: Scope, customer_id: int, bundle_id: int, quantity: int
) -> CustomerBundle | None:
    """Give the customer ``quantity`` of a bundle of its plan (0 removes it)."""
    if scope.kind == "customer":
        raise NotPermitted("customers cannot change their bundles")
    customer = get_customer(session, scope=scope, customer_id=customer_id, for_update=True)
    require_range({"quantity": quantity}, "quantity", 0, 10_000)
    bundle = session.get(CallBundle, bundle_id) if is_valid_id(bundle_id) else None
    if bundle is None or customer.service_plan_id is None or bundle.service_plan_id != customer.service_plan_id:
        raise InvalidValue(f"bundle {bundle_id} is not one of the customer's plan", field="bundle_id")
    current = session.scalars(
        select(CustomerBundle).where(CustomerBundle.customer_id == customer.id, CustomerBundle.bundle_id == bundle.id)
    ).one_or_none()
    if quantity == 0:
        if current is not None:
            session.delete(current)
            flush(session)
        record_change(session, entity=ENTITY_CUSTOMER, entity_id=customer.id)
        return None
    if current is None:
        current = CustomerBundle(customer_id=customer.id, bundle_id=bundle.id, quantity=quantity)
        session.add(current)
    else:
        current.quantity = quantity
    flush(session)
    record_change(session, entity=ENTITY_CUSTOMER, entity_id=customer.id)
    return current
