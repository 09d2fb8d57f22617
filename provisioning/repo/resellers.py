"""Resellers: the tenancy tree (issue 4 grows this into full reseller management)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.errors import InvalidValue, NotFound, NotPermitted
from provisioning.models import ENTITY_RESELLER, RESELLER_STATUSES, Reseller
from provisioning.repo._common import flush, record_change, require_one_of
from provisioning.scope import Scope
from provisioning.validation import is_valid_id


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


def reseller_ids_under(scope: Scope) -> object:
    """A subquery of the reseller ids inside a reseller scope (itself included)."""
    return select(Reseller.id).where(Reseller.path.startswith(scope.reseller_path, autoescape=True))


def create_reseller(
    session: Session,
    *,
    scope: Scope,
    name: str,
    parent_id: int | None = None,
    status: str = "active",
) -> Reseller:
    """A reseller under ``parent_id`` (None: directly under the service provider)."""
    if scope.kind == "customer":
        raise NotPermitted("customers cannot create resellers")
    require_one_of(status, RESELLER_STATUSES, field="status")
    if scope.kind == "reseller" and parent_id is None:
        parent_id = scope.reseller_id
    parent: Reseller | None = None
    if parent_id is not None:
        parent = session.get(Reseller, parent_id) if is_valid_id(parent_id) else None
        if parent is None or not _visible(scope, parent):
            raise InvalidValue(f"unknown reseller {parent_id}", field="parent_id")
    reseller = Reseller(name=name, parent_id=parent_id, status=status, path="")
    session.add(reseller)
    flush(session)  # the path needs the new id
    reseller.path = f"{parent.path if parent else '/'}{reseller.id}/"
    record_change(session, entity=ENTITY_RESELLER, entity_id=reseller.id)
    return reseller
