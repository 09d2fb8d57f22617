"""Resellers: the tenancy tree under the service provider, of any depth.

A reseller sees itself and its descendants; it manages its descendants (with the
``manage_child_resellers`` permission) but not its own record, which its parent manages (iPECS
OMS: "the logged-in reseller cannot change its own record").  A reseller can grant a child only
the permissions it holds itself.

Money settings: each reseller buys on a tariff owned by its parent (or by the service provider
for a top-level reseller) and has a default tariff of its own for new customers; currency, time
zone and billing decimals are inherited from the parent when not given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted
from provisioning.models import (
    ENTITY_RESELLER,
    RESELLER_PERMISSIONS,
    RESELLER_STATUSES,
    AdminUser,
    Customer,
    Did,
    Reseller,
    Tariff,
)
from provisioning.repo._common import (
    Listing,
    apply_changes,
    apply_sort,
    flush,
    record_change,
    require_one_of,
    require_range,
    require_text,
)
from provisioning.scope import Scope
from provisioning.validation import CURRENCIES, is_time_zone, is_valid_id, normalize_domain

DEFAULT_CURRENCY = "GBP"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_BILLING_DECIMALS = 4

UPDATABLE_FIELDS = (
    "name",
    "company",
    "domain",
    "status",
    "permissions",
    "tariff_id",
    "default_tariff_id",
    "billing_decimals",
    "timezone",
    "currency",
)
SORTABLE = ("id", "name", "company", "status", "created_at")


def _visible(scope: Scope, reseller: Reseller) -> bool:
    if scope.kind == "provider":
        return True
    if scope.kind == "reseller":
        return reseller.path.startswith(scope.reseller_path)
    return False


def get_reseller(session: Session, *, scope: Scope, reseller_id: int) -> Reseller:
    reseller = session.get(Reseller, reseller_id) if is_valid_id(reseller_id) else None
    if reseller is None or not _visible(scope, reseller):
        raise NotFound("reseller", reseller_id)
    return reseller


def reseller_ids_under(scope: Scope) -> Select[Any]:
    """A subquery of the reseller ids inside a reseller scope (itself included)."""
    return select(Reseller.id).where(Reseller.path.startswith(scope.reseller_path, autoescape=True))


def path_of(session: Session, reseller_id: int | None) -> str:
    """The tenancy path of data owned by ``reseller_id`` ("/" for the service provider)."""
    if reseller_id is None:
        return "/"
    reseller = session.get(Reseller, reseller_id)
    return reseller.path if reseller is not None else "/"


def acting_reseller(session: Session, scope: Scope) -> Reseller | None:
    """The reseller a reseller scope stands for (None for the service provider)."""
    if scope.kind != "reseller":
        return None
    assert scope.reseller_id is not None
    reseller = session.get(Reseller, scope.reseller_id)
    if reseller is None:
        raise NotPermitted("the reseller no longer exists")
    return reseller


def require_permission(session: Session, scope: Scope, permission: str) -> None:
    """Resellers need ``permission`` (granted by their parent); the service provider has them all."""
    if scope.kind == "customer":
        raise NotPermitted("customers cannot do this")
    reseller = acting_reseller(session, scope)
    if reseller is not None and permission not in (reseller.permissions or []):
        raise NotPermitted(f"this reseller lacks the {permission} permission")


def list_resellers(
    session: Session,
    *,
    scope: Scope,
    name: str | None = None,
    company: str | None = None,
    status: str | None = None,
    parent_id: int | None = None,
    sort: str | None = None,
) -> Listing:
    if scope.kind == "customer":
        raise NotPermitted("customers cannot list resellers")
    stmt = select(Reseller)
    if scope.kind == "reseller":
        stmt = stmt.where(Reseller.path.startswith(scope.reseller_path, autoescape=True))
    if name:
        stmt = stmt.where(Reseller.name.icontains(name, autoescape=True))
    if company:
        stmt = stmt.where(Reseller.company.icontains(company, autoescape=True))
    if status:
        stmt = stmt.where(Reseller.status == status)
    if parent_id is not None:
        stmt = stmt.where(Reseller.parent_id == parent_id)
    columns = {key: getattr(Reseller, key) for key in SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=Reseller.id))


def _domain(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_domain(value)
    except ValueError as error:
        raise InvalidValue(str(error), field="domain") from error


def _permissions(session: Session, scope: Scope, values: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(values))
    for permission in wanted:
        if permission not in RESELLER_PERMISSIONS:
            raise InvalidValue(f"unknown permission {permission!r}", field="permissions")
    acting = acting_reseller(session, scope)
    if acting is not None:
        missing = [p for p in wanted if p not in (acting.permissions or [])]
        if missing:
            raise InvalidValue(
                f"cannot grant permissions this reseller lacks: {', '.join(missing)}", field="permissions"
            )
    return wanted


def _default_permissions(session: Session, scope: Scope) -> list[str]:
    """What a new reseller gets when none are named: what its creator holds (the provider: all)."""
    acting = acting_reseller(session, scope)
    return list(RESELLER_PERMISSIONS) if acting is None else list(acting.permissions or [])


def _settings(values: Mapping[str, Any]) -> None:
    require_range(values, "billing_decimals", 0, 6)
    if values.get("timezone") is not None and not is_time_zone(values["timezone"]):
        raise InvalidValue("timezone must be an IANA time zone name such as Europe/London", field="timezone")
    if values.get("currency") is not None and values["currency"] not in CURRENCIES:
        raise InvalidValue("currency must be an ISO 4217 code such as GBP", field="currency")


def check_tariff_owned_by(
    session: Session, tariff_id: int | None, owner_id: int | None, *, field: str, currency: str | None = None
) -> None:
    """A tariff reference must name a tariff owned by ``owner_id`` (None = the service provider)
    and, when ``currency`` is given, priced in that currency (the account's: no conversion)."""
    if tariff_id is None:
        return
    tariff = session.get(Tariff, tariff_id) if is_valid_id(tariff_id) else None
    if tariff is None or tariff.reseller_id != owner_id:
        raise InvalidValue(f"unknown tariff {tariff_id} (it must belong to the account's parent)", field=field)
    if currency is not None and tariff.currency != currency:
        raise InvalidValue(
            f"tariff {tariff_id} is in {tariff.currency}, the account's currency is {currency}", field=field
        )


def create_reseller(
    session: Session,
    *,
    scope: Scope,
    name: str,
    parent_id: int | None = None,
    status: str = "active",
    company: str = "",
    domain: str | None = None,
    permissions: Iterable[str] | None = None,
    tariff_id: int | None = None,
    billing_decimals: int | None = None,
    timezone: str | None = None,
    currency: str | None = None,
) -> Reseller:
    """A reseller under ``parent_id`` (None: directly under the service provider, or for a
    reseller's scope under that reseller)."""
    if scope.kind == "customer":
        raise NotPermitted("customers cannot create resellers")
    if scope.kind == "reseller":
        require_permission(session, scope, "manage_child_resellers")
    require_text({"name": name}, "name", max_length=100, required=True)
    require_text({"company": company}, "company", max_length=100)
    require_one_of(status, RESELLER_STATUSES, field="status")
    if scope.kind == "reseller" and parent_id is None:
        parent_id = scope.reseller_id
    parent: Reseller | None = None
    if parent_id is not None:
        parent = session.get(Reseller, parent_id) if is_valid_id(parent_id) else None
        if parent is None or not _visible(scope, parent):
            raise InvalidValue(f"unknown reseller {parent_id}", field="parent_id")
    settings = {"billing_decimals": billing_decimals, "timezone": timezone, "currency": currency}
    _settings(settings)
    own_currency = currency or (parent.currency if parent else DEFAULT_CURRENCY)
    check_tariff_owned_by(session, tariff_id, parent_id, field="tariff_id", currency=own_currency)
    reseller = Reseller(
        name=name.strip(),
        parent_id=parent_id,
        status=status,
        path="",
        company=company.strip(),
        domain=_domain(domain),
        permissions=_permissions(
            session, scope, _default_permissions(session, scope) if permissions is None else permissions
        ),
        tariff_id=tariff_id,
        billing_decimals=billing_decimals
        if billing_decimals is not None
        else (parent.billing_decimals if parent else DEFAULT_BILLING_DECIMALS),
        timezone=timezone or (parent.timezone if parent else DEFAULT_TIMEZONE),
        currency=currency or (parent.currency if parent else DEFAULT_CURRENCY),
    )
    session.add(reseller)
    flush(session)  # the path needs the new id
    reseller.path = f"{parent.path if parent else '/'}{reseller.id}/"
    flush(session)
    record_change(session, entity=ENTITY_RESELLER, entity_id=reseller.id)
    return reseller


def _managed(session: Session, scope: Scope, reseller_id: int) -> Reseller:
    """A reseller the caller may change: a strict descendant (or any, for the service provider)."""
    reseller = get_reseller(session, scope=scope, reseller_id=reseller_id)
    if scope.kind == "reseller":
        if reseller.id == scope.reseller_id:
            raise NotPermitted("a reseller's own record is managed by its parent")
        require_permission(session, scope, "manage_child_resellers")
    return reseller


def update_reseller(session: Session, *, scope: Scope, reseller_id: int, changes: Mapping[str, Any]) -> Reseller:
    reseller = _managed(session, scope, reseller_id)
    values = dict(changes)
    for field in ("name", "status", "permissions", "billing_decimals", "timezone", "currency", "company"):
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    if "name" in values:
        require_text(values, "name", max_length=100, required=True)
        values["name"] = values["name"].strip()
    require_text(values, "company", max_length=100)
    if "status" in values:
        require_one_of(values["status"], RESELLER_STATUSES, field="status")
    if "domain" in values:
        values["domain"] = _domain(values["domain"])
    if "permissions" in values:
        values["permissions"] = _permissions(session, scope, values["permissions"])
    _settings(values)
    own_currency = values.get("currency") or reseller.currency
    for field, owner in (("tariff_id", reseller.parent_id), ("default_tariff_id", reseller.id)):
        if field in values or "currency" in values:
            # A tariff is priced in the account's currency: checked when either changes.
            check_tariff_owned_by(
                session, values.get(field, getattr(reseller, field)), owner, field=field, currency=own_currency
            )
    if apply_changes(reseller, values, allowed=UPDATABLE_FIELDS):
        flush(session)
        record_change(session, entity=ENTITY_RESELLER, entity_id=reseller.id)
    return reseller


def delete_reseller(session: Session, *, scope: Scope, reseller_id: int) -> None:
    """Only an empty reseller can go: no child resellers, customers, tariffs, DIDs or users."""
    reseller = _managed(session, scope, reseller_id)
    counts = {
        "child reseller": select(func.count()).where(Reseller.parent_id == reseller.id),
        "customer": select(func.count()).where(Customer.reseller_id == reseller.id),
        "tariff": select(func.count()).where(Tariff.reseller_id == reseller.id),
        "DID": select(func.count()).where(Did.reseller_id == reseller.id),
    }
    remaining = {what: session.scalar(stmt) or 0 for what, stmt in counts.items()}
    busy = ", ".join(f"{n} {what}(s)" for what, n in remaining.items() if n)
    if busy:
        raise Conflict(f"the reseller still has {busy}")
    for user in session.scalars(select(AdminUser).where(AdminUser.reseller_id == reseller.id)):
        session.delete(user)
    # Imported here: repo.auth builds on this module (scopes, resellers), not the other way round.
    from provisioning.repo.auth import revoke_tokens_of

    revoke_tokens_of(session, kind="reseller", owner_id=reseller.id)
    session.delete(reseller)
    flush(session)
    record_change(session, entity=ENTITY_RESELLER, entity_id=reseller_id)
