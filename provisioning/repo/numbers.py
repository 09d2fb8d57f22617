"""Number translation rules and DIDs: the two things a customer's numbers go through.

Translation rules (OV500's four kinds): for a customer's outbound calls the caller number
(``source``) and the dialled number (``destination``); for calls to its DIDs the caller number
(``did_source``) and the DID (``did_destination``).  A rule replaces a leading ``match`` with
``replacement`` ("0" -> "44" turns 02079460000 into 442079460000); the first rule of a kind that
matches, in ``position`` order, applies.  Prefix rewriting rather than regular expressions: it is
what carriers' number plans need, cannot be made to backtrack forever, and the switch applies it
with one ``startswith``.

DIDs: a number held by a reseller (its stock) or the service provider, assigned to a customer
and routed to one destination.  Resellers need the ``manage_dids`` permission to create, assign
or delete them; a customer may re-point its own DIDs (self-care forwarding) but nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import false, or_, select
from sqlalchemy.orm import Session

from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted
from provisioning.models import (
    DEVICE_STATUSES,
    DID_DESTINATIONS,
    ENTITY_DID,
    ENTITY_TRANSLATION,
    TRANSLATION_KINDS,
    Customer,
    Did,
    Reseller,
    SipDevice,
    TranslationRule,
)
from provisioning.repo._common import (
    Listing,
    apply_changes,
    apply_sort,
    flush,
    record_change,
    require_match,
    require_non_negative,
    require_one_of,
    require_range,
    require_text,
)
from provisioning.repo.customers import get_customer, scoped_customers
from provisioning.repo.resellers import require_permission
from provisioning.scope import Scope
from provisioning.validation import CALLER_NUMBER_PATTERN, SIP_URI_PATTERN, TRANSLATION_PATTERN, is_valid_id

RULE_FIELDS = ("kind", "position", "match", "replacement", "description")
MAX_RULES_PER_CUSTOMER = 1000

DID_FIELDS = (
    "customer_id",
    "reseller_id",
    "destination_type",
    "destination",
    "max_sessions",
    "status",
    "description",
)
# What a customer may change on its own DIDs.
DID_SELF_CARE_FIELDS = ("destination_type", "destination", "description")
DID_SORTABLE = ("id", "number", "status", "destination_type", "created_at")
MAX_RANGE = 10_000
_APP_DESTINATIONS = ("ring_group", "queue", "ivr", "time_condition", "conference")


# -- translation rules --------------------------------------------------------------------------


def _writable_rules(scope: Scope) -> None:
    if scope.kind == "customer":
        raise NotPermitted("number translation is set by the reseller")


def _check_rule(values: Mapping[str, Any]) -> None:
    if "kind" in values:
        require_one_of(values["kind"], TRANSLATION_KINDS, field="kind")
    require_range(values, "position", 0, 1_000_000)
    require_match(values, {"match": TRANSLATION_PATTERN, "replacement": TRANSLATION_PATTERN})
    require_text(values, "description", max_length=100)


def list_rules(session: Session, *, scope: Scope, customer_id: int, kind: str | None = None) -> list[TranslationRule]:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    stmt = select(TranslationRule).where(TranslationRule.customer_id == customer.id)
    if kind:
        stmt = stmt.where(TranslationRule.kind == kind)
    return list(session.scalars(stmt.order_by(TranslationRule.kind, TranslationRule.position, TranslationRule.id)))


def get_rule(session: Session, *, scope: Scope, customer_id: int, rule_id: int) -> TranslationRule:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    rule = session.get(TranslationRule, rule_id) if is_valid_id(rule_id) else None
    if rule is None or rule.customer_id != customer.id:
        raise NotFound("translation rule", rule_id)
    return rule


def create_rule(
    session: Session,
    *,
    scope: Scope,
    customer_id: int,
    kind: str,
    match: str,
    replacement: str,
    position: int | None = None,
    description: str = "",
) -> TranslationRule:
    _writable_rules(scope)
    customer = get_customer(session, scope=scope, customer_id=customer_id, for_update=True)
    values = {
        "kind": kind,
        "match": match,
        "replacement": replacement,
        "position": position,
        "description": description,
    }
    _check_rule(values)
    existing = list_rules(session, scope=scope, customer_id=customer.id)
    if len(existing) >= MAX_RULES_PER_CUSTOMER:
        raise Conflict(f"a customer has at most {MAX_RULES_PER_CUSTOMER} translation rules")
    if position is None:
        # Appended after the last rule of its kind.
        position = max((r.position for r in existing if r.kind == kind), default=-1) + 1
    rule = TranslationRule(
        customer_id=customer.id,
        kind=kind,
        position=position,
        match=match,
        replacement=replacement,
        description=description,
    )
    session.add(rule)
    flush(session)
    record_change(session, entity=ENTITY_TRANSLATION, entity_id=customer.id)
    return rule


def update_rule(
    session: Session, *, scope: Scope, customer_id: int, rule_id: int, changes: Mapping[str, Any]
) -> TranslationRule:
    _writable_rules(scope)
    rule = get_rule(session, scope=scope, customer_id=customer_id, rule_id=rule_id)
    values = dict(changes)
    for field in RULE_FIELDS:
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    _check_rule(values)
    if apply_changes(rule, values, allowed=RULE_FIELDS):
        flush(session)
        record_change(session, entity=ENTITY_TRANSLATION, entity_id=rule.customer_id)
    return rule


def delete_rule(session: Session, *, scope: Scope, customer_id: int, rule_id: int) -> None:
    _writable_rules(scope)
    rule = get_rule(session, scope=scope, customer_id=customer_id, rule_id=rule_id)
    session.delete(rule)
    flush(session)
    record_change(session, entity=ENTITY_TRANSLATION, entity_id=rule.customer_id)


def translate(rules: list[TranslationRule], kind: str, number: str) -> str:
    """Apply the first matching rule of ``kind`` (what the switch does with its snapshot copy)."""
    for rule in sorted((r for r in rules if r.kind == kind), key=lambda r: (r.position, r.id)):
        if number.startswith(rule.match):
            return rule.replacement + number[len(rule.match) :]
    return number


# -- DIDs ---------------------------------------------------------------------------------------


def normalize_number(value: str, *, field: str = "number") -> str:
    """E.164 digits without the '+' (spaces, dashes, dots and brackets dropped)."""
    digits = re.sub(r"[\s\-.()]", "", value or "")
    digits = digits.removeprefix("+")
    if not re.fullmatch(r"[0-9]{1,20}", digits):
        raise InvalidValue("a DID number is 1 to 20 digits, optionally written with '+'", field=field)
    return digits


def _visible_clause(session: Session, scope: Scope) -> Any:
    if scope.kind == "provider":
        return None
    if scope.kind == "customer":
        return Did.customer_id == scope.customer_id
    held = Did.reseller_id.in_(
        select(Reseller.id).where(Reseller.path.startswith(scope.reseller_path, autoescape=True))
    )
    assigned = Did.customer_id.in_(scoped_customers(scope).with_only_columns(Customer.id))
    return or_(held, assigned)


def get_did(session: Session, *, scope: Scope, did_id: int) -> Did:
    did = session.get(Did, did_id) if is_valid_id(did_id) else None
    if did is None:
        raise NotFound("DID", did_id)
    clause = _visible_clause(session, scope)
    if clause is not None and session.scalar(select(Did.id).where(Did.id == did.id, clause)) is None:
        raise NotFound("DID", did_id)
    return did


def list_dids(
    session: Session,
    *,
    scope: Scope,
    number: str | None = None,
    customer_id: int | None = None,
    reseller_id: int | None = None,
    status: str | None = None,
    destination_type: str | None = None,
    assigned: bool | None = None,
    sort: str | None = None,
) -> Listing:
    """DIDs in scope; ``number`` lists the numbers starting with it."""
    stmt = select(Did)
    clause = _visible_clause(session, scope)
    if clause is not None:
        stmt = stmt.where(clause)
    if number:
        try:
            stmt = stmt.where(Did.number.startswith(normalize_number(number)))
        except InvalidValue:
            stmt = stmt.where(false())
    if customer_id is not None:
        stmt = stmt.where(Did.customer_id == customer_id)
    if reseller_id is not None:
        stmt = stmt.where(Did.reseller_id == reseller_id)
    if status:
        stmt = stmt.where(Did.status == status)
    if destination_type:
        stmt = stmt.where(Did.destination_type == destination_type)
    if assigned is not None:
        stmt = stmt.where(Did.customer_id.is_not(None) if assigned else Did.customer_id.is_(None))
    columns = {key: getattr(Did, key) for key in DID_SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=Did.id, default="number"))


def _holder(session: Session, scope: Scope, reseller_id: int | None, customer: Customer | None) -> int | None:
    """The reseller holding a DID: given, else the caller (a reseller) or the customer's reseller."""
    if reseller_id is None:
        if scope.kind == "reseller":
            return scope.reseller_id
        return customer.reseller_id if customer is not None else None
    reseller = session.get(Reseller, reseller_id) if is_valid_id(reseller_id) else None
    if reseller is None or not scope.sees_path(reseller.path):
        raise InvalidValue(f"unknown reseller {reseller_id}", field="reseller_id")
    return reseller.id


def _assignee(session: Session, scope: Scope, customer_id: int | None) -> Customer | None:
    if customer_id is None:
        return None
    try:
        customer = get_customer(session, scope=scope, customer_id=customer_id)
    except NotFound as error:
        raise InvalidValue(f"unknown customer {customer_id}", field="customer_id") from error
    if customer.status == "closed":
        raise Conflict("the customer is closed", field="customer_id")
    return customer


def _check_destination(session: Session, customer: Customer | None, kind: str | None, target: str) -> str:
    if kind is None:
        if target:
            raise InvalidValue("a destination needs a destination_type", field="destination_type")
        return ""
    require_one_of(kind, DID_DESTINATIONS, field="destination_type")
    target = (target or "").strip()
    if customer is None and kind in ("sip_device", *_APP_DESTINATIONS):
        raise InvalidValue(f"a {kind} destination needs the DID assigned to a customer", field="destination_type")
    if kind == "sip_device":
        device = session.get(SipDevice, int(target)) if target.isdigit() and is_valid_id(int(target)) else None
        if device is None or customer is None or device.customer_id != customer.id:
            raise InvalidValue("destination must be the id of one of the customer's SIP devices", field="destination")
        return str(device.id)
    if kind == "pstn":
        if not re.fullmatch(CALLER_NUMBER_PATTERN, target):
            raise InvalidValue("destination must be a telephone number", field="destination")
        return target
    if kind == "sip_uri":
        if not re.fullmatch(SIP_URI_PATTERN, target):
            raise InvalidValue("destination must be a sip: or sips: URI", field="destination")
        return target
    require_text({"destination": target}, "destination", max_length=100, required=True)
    return target


def _check_holder_and_customer(session: Session, holder: int | None, customer: Customer | None) -> None:
    """An assigned DID's customer is in the holder's subtree (the provider's stock goes anywhere)."""
    if holder is None or customer is None:
        return
    reseller = session.get(Reseller, holder)
    owner = session.get(Reseller, customer.reseller_id) if customer.reseller_id is not None else None
    if reseller is None or owner is None or not owner.path.startswith(reseller.path):
        raise InvalidValue("the customer is not under the reseller holding the DID", field="customer_id")


def _prepare(session: Session, scope: Scope, fields: Mapping[str, Any]) -> dict[str, Any]:
    if scope.kind == "customer":
        raise NotPermitted("customers cannot create DIDs")
    require_permission(session, scope, "manage_dids")
    values = {"destination": "", "max_sessions": 0, "status": "active", "description": "", **fields}
    unknown = set(values) - set(DID_FIELDS)
    if unknown:
        raise InvalidValue(f"unknown field {sorted(unknown)[0]}", field=sorted(unknown)[0])
    require_one_of(values["status"], DEVICE_STATUSES, field="status")
    require_non_negative(values, ("max_sessions",))
    require_text(values, "description", max_length=200)
    customer = _assignee(session, scope, values.get("customer_id"))
    values["reseller_id"] = _holder(session, scope, values.get("reseller_id"), customer)
    _check_holder_and_customer(session, values["reseller_id"], customer)
    values["destination"] = _check_destination(
        session, customer, values.get("destination_type"), values.get("destination", "")
    )
    return values


def create_did(session: Session, *, scope: Scope, number: str, **fields: Any) -> Did:
    values = _prepare(session, scope, fields)
    did = Did(number=normalize_number(number), **values)
    session.add(did)
    flush(session)
    record_change(session, entity=ENTITY_DID, entity_id=did.id)
    return did


def create_did_range(session: Session, *, scope: Scope, start: str, count: int, **fields: Any) -> list[Did]:
    """``count`` consecutive numbers from ``start`` (leading zeros and length kept); all or none."""
    first = normalize_number(start, field="start")
    require_range({"count": count}, "count", 1, MAX_RANGE)
    last = int(first) + count - 1
    if len(str(last)) > len(first):
        raise InvalidValue("the range runs past the number's length", field="count")
    numbers = [str(n).zfill(len(first)) for n in range(int(first), last + 1)]
    values = _prepare(session, scope, fields)
    taken: list[str] = []
    for chunk_start in range(0, len(numbers), 500):
        chunk = numbers[chunk_start : chunk_start + 500]
        taken.extend(session.scalars(select(Did.number).where(Did.number.in_(chunk))))
    if taken:
        shown = ", ".join(sorted(taken)[:5]) + (" ..." if len(taken) > 5 else "")
        raise Conflict(f"{len(taken)} number(s) of the range already exist: {shown}", field="number")
    dids = [Did(number=number, **values) for number in numbers]
    session.add_all(dids)
    flush(session)
    for did in dids:
        record_change(session, entity=ENTITY_DID, entity_id=did.id)
    return dids


def update_did(session: Session, *, scope: Scope, did_id: int, changes: Mapping[str, Any]) -> Did:
    did = get_did(session, scope=scope, did_id=did_id)
    values = dict(changes)
    if scope.kind == "customer":
        refused = set(values) - set(DID_SELF_CARE_FIELDS)
        if refused:
            raise NotPermitted(f"customers can change only {', '.join(DID_SELF_CARE_FIELDS)}")
    else:
        require_permission(session, scope, "manage_dids")
    for field in ("destination", "max_sessions", "status", "description"):
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    if "status" in values:
        require_one_of(values["status"], DEVICE_STATUSES, field="status")
    require_non_negative(values, ("max_sessions",))
    require_text(values, "description", max_length=200)
    customer_id = values.get("customer_id", did.customer_id)
    if "customer_id" in values and values["customer_id"] != did.customer_id:
        customer = _assignee(session, scope, customer_id)
        if "destination_type" not in values:
            # A new customer does not inherit the old customer's routing.
            values["destination_type"], values["destination"] = None, ""
    else:
        customer = session.get(Customer, customer_id) if customer_id is not None else None
    holder = did.reseller_id
    if "reseller_id" in values:
        holder = _holder(session, scope, values["reseller_id"], customer)
        values["reseller_id"] = holder
    _check_holder_and_customer(session, holder, customer)
    if "destination_type" in values or "destination" in values:
        values["destination"] = _check_destination(
            session,
            customer,
            values.get("destination_type", did.destination_type),
            values.get("destination", did.destination if "destination_type" not in values else ""),
        )
    if apply_changes(did, values, allowed=DID_FIELDS):
        flush(session)
        record_change(session, entity=ENTITY_DID, entity_id=did.id)
    return did


def delete_did(session: Session, *, scope: Scope, did_id: int) -> None:
    did = get_did(session, scope=scope, did_id=did_id)
    if scope.kind == "customer":
        raise NotPermitted("customers cannot delete DIDs")
    require_permission(session, scope, "manage_dids")
    session.delete(did)
    flush(session)
    record_change(session, entity=ENTITY_DID, entity_id=did_id)
