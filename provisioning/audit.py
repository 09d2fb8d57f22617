"""The audit log: every change to provisioning data, with who, when, and the values before and after.

Written by a Session ``after_flush`` hook rather than by each repository function, so no write
path can forget it: whatever the ORM inserts, updates or deletes in an audited table gets a row
in ``audit_log`` in the same transaction (a rolled-back change leaves no audit row, a committed
one always has one).  Bulk writes that bypass the ORM (the rate-deck import) call
:func:`record` themselves with a summary.

Who: ``session.info["actor"]`` (an :class:`Actor`, set by the admin API for each request);
changes made without one (migrations, the CLI, tests) are attributed to "system".  Secrets
(password hashes, HA1 digests, token hashes) are never copied into the log: a change to one is
shown as ``"***"``.

Each row carries the tenancy of the changed entity (``tenant_path``: the owning reseller's
path, "/" for the service provider's own data; ``customer_id``), so a reseller reads the part of
the log about its subtree and a customer the part about itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event, insert, inspect
from sqlalchemy.orm import Session, UOWTransaction

from provisioning.db import utcnow
from provisioning.models import (
    AdminUser,
    ApiToken,
    AuditEntry,
    CallBundle,
    Carrier,
    Customer,
    CustomerBundle,
    CustomerStatusEvent,
    Did,
    IpDevice,
    LedgerEntry,
    Rate,
    Reseller,
    Route,
    RouteCarrier,
    ServicePlan,
    SipDevice,
    Suspension,
    Tariff,
    TranslationRule,
)

ACTOR_KEY = "trunkline.actor"
SECRET_FIELDS = frozenset({"web_password_hash", "password_hash", "ha1_md5", "ha1_sha256", "token_hash"})
MASK = "***"
# Bookkeeping columns that change with everything and say nothing.
_SKIPPED_FIELDS = frozenset({"updated_at"})

AUDITED: dict[type[Any], str] = {
    Reseller: "reseller",
    AdminUser: "admin_user",
    Customer: "customer",
    SipDevice: "sip_device",
    IpDevice: "ip_device",
    Tariff: "tariff",
    Rate: "rate",
    ServicePlan: "service_plan",
    CallBundle: "call_bundle",
    CustomerBundle: "customer_bundle",
    LedgerEntry: "ledger_entry",
    Carrier: "carrier",
    Route: "route",
    RouteCarrier: "route_carrier",
    TranslationRule: "translation_rule",
    Did: "did",
    ApiToken: "api_token",
    Suspension: "suspension",
    CustomerStatusEvent: "customer_status_event",
}

PROVIDER_PATH = "/"
_MICRO = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes the changes of a session (for the audit log)."""

    label: str
    kind: str  # "admin", "reseller", "customer" or "system"
    id: int | None = None
    via: str | None = None  # switch-over: the parent principal really acting


SYSTEM = Actor(label="system", kind="system")


def set_actor(session: Session, actor: Actor) -> None:
    session.info[ACTOR_KEY] = actor


def actor_of(session: Session) -> Actor:
    actor = session.info.get(ACTOR_KEY)
    return actor if isinstance(actor, Actor) else SYSTEM


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        # The stored scale, so a value just written ("10") and one read back ("10.000000") match.
        return format(value.quantize(_MICRO), "f") if value.is_finite() else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _state(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr in inspect(obj).mapper.column_attrs:
        key = attr.key
        if key in _SKIPPED_FIELDS:
            continue
        out[key] = MASK if key in SECRET_FIELDS else _json(getattr(obj, key))
    return out


def _changed(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    state = inspect(obj)
    for attr in state.mapper.column_attrs:
        key = attr.key
        if key in _SKIPPED_FIELDS:
            continue
        history = state.attrs[key].history
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else None
        if old == new:
            continue
        if key in SECRET_FIELDS:
            before[key], after[key] = MASK, MASK
        else:
            before[key], after[key] = _json(old), _json(new)
    return before, after


def _customer_tenancy(session: Session, customer_id: int | None) -> tuple[str, int | None]:
    if customer_id is None:
        return PROVIDER_PATH, None
    customer = session.get(Customer, customer_id)
    if customer is None:
        return PROVIDER_PATH, customer_id
    return _reseller_path(session, customer.reseller_id), customer_id


def _reseller_path(session: Session, reseller_id: int | None) -> str:
    if reseller_id is None:
        return PROVIDER_PATH
    reseller = session.get(Reseller, reseller_id)
    if reseller is None:
        return PROVIDER_PATH
    return reseller.path or _new_reseller_path(session, reseller)


def _new_reseller_path(session: Session, reseller: Reseller) -> str:
    # A reseller just inserted gets its path in a second flush; compute what it will be.
    parent = _reseller_path(session, reseller.parent_id) if reseller.parent_id is not None else PROVIDER_PATH
    return f"{parent}{reseller.id}/"


def tenancy_of(session: Session, obj: Any) -> tuple[str, int | None]:
    """(tenant_path, customer_id) of an audited row."""
    if isinstance(obj, Reseller):
        return (obj.path or _new_reseller_path(session, obj)), None
    if isinstance(obj, Customer):
        return _reseller_path(session, obj.reseller_id), obj.id
    if isinstance(obj, AdminUser | Tariff):
        return _reseller_path(session, obj.reseller_id), None
    if isinstance(obj, Rate):
        tariff = session.get(Tariff, obj.tariff_id)
        return (_reseller_path(session, tariff.reseller_id) if tariff else PROVIDER_PATH), None
    if isinstance(obj, Did):
        if obj.customer_id is not None:
            return _customer_tenancy(session, obj.customer_id)
        return _reseller_path(session, obj.reseller_id), None
    if isinstance(obj, ApiToken):
        if obj.kind == "reseller":
            return _reseller_path(session, obj.owner_id), None
        if obj.kind == "customer":
            return _customer_tenancy(session, obj.owner_id)
        return PROVIDER_PATH, None
    if isinstance(obj, Route):
        return PROVIDER_PATH, obj.customer_id
    customer_id = getattr(obj, "customer_id", None)
    if customer_id is not None:
        return _customer_tenancy(session, customer_id)
    return PROVIDER_PATH, None


def record(
    session: Session,
    *,
    action: str,
    entity: str,
    entity_id: int | None,
    tenant_path: str,
    customer_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """An audit row for a change made without the ORM (bulk imports), in the caller's transaction."""
    row = _row(actor_of(session), utcnow(), action, entity, entity_id, tenant_path, customer_id, before, after)
    session.execute(insert(AuditEntry), [row])


def _row(actor: Actor, at: datetime, action: str, entity: str, entity_id: int | None, tenant_path: str,
         customer_id: int | None, before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """One ``audit_log`` row's values."""
    return {
        "at": at, "actor": actor.label, "actor_kind": actor.kind, "actor_id": actor.id, "via": actor.via,
        "action": action, "entity": entity, "entity_id": entity_id, "tenant_path": tenant_path,
        "customer_id": customer_id, "before": before, "after": after,
    }


_PENDING = "trunkline.audit_pending"


@event.listens_for(Session, "after_flush")
def _audit_flush(session: Session, _context: UOWTransaction) -> None:
    """Collect this flush's changes; they are written at commit (see :func:`_audit_commit`).

    Collected rather than inserted at once so that an entity created and then completed within
    one transaction (a customer's generated account code needs its id) is one "create" entry
    showing the final state, not a create and an update.
    """
    pending: dict[tuple[Any, ...], dict[str, Any]] = session.info.setdefault(_PENDING, {})
    actor = actor_of(session)
    now = utcnow()
    with session.no_autoflush:
        for action, objects in (("create", session.new), ("update", session.dirty), ("delete", session.deleted)):
            for obj in objects:
                entity = AUDITED.get(type(obj))
                if entity is None:
                    continue
                # The primary key attribute (the identity key is not set until the flush ends).
                entity_id = inspect(obj).mapper.primary_key_from_instance(obj)[0]
                created = pending.get(("create", entity, entity_id))
                if action == "update" and created is not None:
                    created["after"] = _state(obj)  # still one creation, now complete
                    continue
                if action == "create":
                    before, after = None, _state(obj)
                elif action == "delete":
                    before, after = _state(obj), None
                else:
                    before, after = _changed(obj)
                    if not after:
                        continue
                tenant_path, customer_id = tenancy_of(session, obj)
                row = _row(actor, now, action, entity, entity_id, tenant_path, customer_id, before, after)
                key: tuple[Any, ...] = (
                    (action, entity, entity_id) if action == "create" else (action, entity, entity_id, len(pending))
                )
                pending[key] = row


@event.listens_for(Session, "before_commit")
def _audit_commit(session: Session) -> None:
    session.flush()  # the commit's own flush would come after this hook
    pending = session.info.pop(_PENDING, None)
    if pending:
        session.execute(insert(AuditEntry), list(pending.values()))


@event.listens_for(Session, "after_rollback")
def _audit_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
