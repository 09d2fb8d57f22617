"""Customers: the service provider's or a reseller's accounts, each owning devices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from provisioning.db import utcnow
from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted
from provisioning.models import (
    CUSTOMER_STATUSES,
    CUSTOMER_TRANSITIONS,
    ENTITY_CUSTOMER,
    ApiToken,
    Customer,
    IpDevice,
    Reseller,
    SipDevice,
)
from provisioning.repo._common import (
    Page,
    apply_changes,
    flush,
    paginate,
    record_change,
    require_match,
    require_non_negative,
    require_one_of,
)
from provisioning.repo.resellers import reseller_ids_under
from provisioning.scope import Scope
from provisioning.validation import NO_CONTROL_PATTERN, is_valid_id, normalize_domain

# What PATCH may touch.  reseller_id moves (re-parenting) come with issue 4's reseller API.
UPDATABLE_FIELDS = ("name", "domain", "status", "max_sessions", "cps", "max_call_seconds")
_LIMIT_FIELDS = ("max_sessions", "cps", "max_call_seconds")


def scoped_customers(scope: Scope) -> Select[Any]:
    """SELECT customers visible to ``scope``; every customer read starts here."""
    stmt = select(Customer)
    if scope.kind == "customer":
        stmt = stmt.where(Customer.id == scope.customer_id)
    elif scope.kind == "reseller":
        stmt = stmt.where(Customer.reseller_id.in_(reseller_ids_under(scope)))  # type: ignore[arg-type]
    return stmt


def get_customer(session: Session, *, scope: Scope, customer_id: int, for_update: bool = False) -> Customer:
    if not is_valid_id(customer_id):
        raise NotFound("customer", customer_id)
    stmt = scoped_customers(scope).where(Customer.id == customer_id)
    if for_update:
        stmt = stmt.with_for_update()
    customer = session.scalars(stmt).one_or_none()
    if customer is None:
        raise NotFound("customer", customer_id)
    return customer


def list_customers(
    session: Session,
    *,
    scope: Scope,
    name: str | None = None,
    status: str | None = None,
    domain: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page[Customer]:
    """Customers in scope, ordered by id; ``name`` matches a case-insensitive substring."""
    stmt = scoped_customers(scope)
    if name:
        stmt = stmt.where(Customer.name.icontains(name, autoescape=True))
    if status:
        stmt = stmt.where(Customer.status == status)
    if domain:
        stmt = stmt.where(Customer.domain == domain.lower())
    return paginate(session, stmt.order_by(Customer.id), limit=limit, offset=offset)


def _check_reseller(session: Session, scope: Scope, reseller_id: int | None) -> int | None:
    if reseller_id is not None and not is_valid_id(reseller_id):
        raise InvalidValue(f"unknown reseller {reseller_id}", field="reseller_id")
    if scope.kind == "reseller":
        if reseller_id is None:
            return scope.reseller_id
        allowed = session.scalar(
            select(Reseller.id).where(
                Reseller.id == reseller_id, Reseller.path.startswith(scope.reseller_path, autoescape=True)
            )
        )
        if allowed is None:
            raise InvalidValue(f"unknown reseller {reseller_id}", field="reseller_id")
        return reseller_id
    if reseller_id is not None and session.get(Reseller, reseller_id) is None:
        raise InvalidValue(f"unknown reseller {reseller_id}", field="reseller_id")
    return reseller_id


def create_customer(
    session: Session,
    *,
    scope: Scope,
    name: str,
    domain: str | None = None,
    status: str = "active",
    max_sessions: int = 0,
    cps: int = 0,
    max_call_seconds: int = 0,
    reseller_id: int | None = None,
) -> Customer:
    """A new customer.

    ``status`` defaults to ``active`` (not ``created``) so that a customer made through the API
    can place calls at once, as issue 3 asks; issue 4's lifecycle starts from ``created`` when
    an order-management system wants the explicit activation step.
    """
    if scope.kind == "customer":
        raise NotPermitted("customers cannot create customers")
    if not name or not name.strip():
        raise InvalidValue("name is required", field="name")
    require_match({"name": name}, {"name": NO_CONTROL_PATTERN})
    require_one_of(status, CUSTOMER_STATUSES, field="status")
    require_non_negative(
        {"max_sessions": max_sessions, "cps": cps, "max_call_seconds": max_call_seconds}, _LIMIT_FIELDS
    )
    customer = Customer(
        reseller_id=_check_reseller(session, scope, reseller_id),
        name=name.strip(),
        domain=_domain(domain),
        status=status,
        max_sessions=max_sessions,
        cps=cps,
        max_call_seconds=max_call_seconds,
    )
    session.add(customer)
    flush(session)
    record_change(session, entity=ENTITY_CUSTOMER, entity_id=customer.id)
    return customer


def _domain(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_domain(value)
    except ValueError as error:
        raise InvalidValue(str(error), field="domain") from error


def update_customer(session: Session, *, scope: Scope, customer_id: int, changes: Mapping[str, Any]) -> Customer:
    """Apply a partial update (the keys given are the fields to change)."""
    if scope.kind == "customer":
        # Self-care customers must not raise their own limits or reopen themselves.
        raise NotPermitted("customers cannot change their account settings")
    customer = get_customer(session, scope=scope, customer_id=customer_id, for_update=True)
    values = dict(changes)
    if "name" in values:
        if values["name"] is None or not str(values["name"]).strip():
            raise InvalidValue("name is required", field="name")
        values["name"] = str(values["name"]).strip()
        require_match(values, {"name": NO_CONTROL_PATTERN})
    if "domain" in values:
        new_domain = _domain(values["domain"])
        if customer.domain is not None and new_domain != customer.domain:
            # Immutable once set: the domain names the customer's SIP realm and URIs.
            raise Conflict("the domain cannot be changed once set", field="domain")
        values["domain"] = new_domain
    if "status" in values and values["status"] != customer.status:
        require_one_of(values["status"], CUSTOMER_STATUSES, field="status")
        if values["status"] not in CUSTOMER_TRANSITIONS[customer.status]:
            raise Conflict(f"status cannot change from {customer.status} to {values['status']}", field="status")
    require_non_negative(values, _LIMIT_FIELDS)
    for field in _LIMIT_FIELDS:
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} must be a non-negative integer", field=field)
    if apply_changes(customer, values, allowed=UPDATABLE_FIELDS):
        flush(session)
        record_change(session, entity=ENTITY_CUSTOMER, entity_id=customer.id)
    return customer


def delete_customer(session: Session, *, scope: Scope, customer_id: int) -> None:
    """Delete a customer that has no devices left (its CDRs stay: they reference it by id only)."""
    if scope.kind == "customer":
        raise NotPermitted("customers cannot delete customers")
    customer = get_customer(session, scope=scope, customer_id=customer_id, for_update=True)
    sip = session.scalar(select(func.count()).where(SipDevice.customer_id == customer.id)) or 0
    ip = session.scalar(select(func.count()).where(IpDevice.customer_id == customer.id)) or 0
    if sip or ip:
        raise Conflict(f"the customer still has {sip} SIP device(s) and {ip} IP device(s); delete them first")
    session.execute(
        update(ApiToken)
        .where(ApiToken.kind == "customer", ApiToken.owner_id == customer.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    session.delete(customer)
    flush(session)
    record_change(session, entity=ENTITY_CUSTOMER, entity_id=customer_id)
