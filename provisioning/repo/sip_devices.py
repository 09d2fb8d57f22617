"""SIP devices: phones and soft clients that register with digest credentials."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from provisioning.credentials import compute_ha1
from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted
from provisioning.models import DEVICE_STATUSES, ENTITY_SIP_DEVICE, Customer, Did, Registration, SipDevice
from provisioning.repo._common import (
    Listing,
    apply_changes,
    apply_sort,
    flush,
    record_change,
    require_match,
    require_money,
    require_non_negative,
    require_one_of,
)
from provisioning.repo.customers import get_customer
from provisioning.repo.resellers import require_permission
from provisioning.scope import Scope
from provisioning.validation import (
    CALLER_NUMBER_PATTERN,
    DISPLAY_NAME_PATTERN,
    EMAIL_PATTERN,
    EXTENSION_PATTERN,
    PASSWORD_MIN_LENGTH,
    USERNAME_PATTERN,
    is_valid_id,
    normalize_network,
)

UPDATABLE_FIELDS = (
    "username",
    "password",
    "extension",
    "caller_number",
    "display_name",
    "status",
    "max_sessions",
    "cps",
    "allowed_ips",
    "voicemail_enabled",
    "voicemail_email",
    "fraud_limit",
)
_NOT_NULL = ("username", "password", "status", "max_sessions", "cps", "allowed_ips", "voicemail_enabled")
_PATTERNS = {
    "username": USERNAME_PATTERN,
    "extension": EXTENSION_PATTERN,
    "caller_number": CALLER_NUMBER_PATTERN,
    "display_name": DISPLAY_NAME_PATTERN,
}
SORTABLE = ("id", "username", "extension", "status", "created_at")
# What a customer's own (self-care) token may set on its devices: the secret and voicemail.
# Caller number, limits, allowed addresses, fraud limit, status, username and extension are the
# reseller's business (docs/api.md "Tenancy").
SELF_CARE_FIELDS = ("password", "voicemail_enabled", "voicemail_email")


def _check_writer(session: Session, scope: Scope, fields: Iterable[str]) -> None:
    """Resellers need manage_devices; customers may set only :data:`SELF_CARE_FIELDS`.

    Checked before any id is looked up: the same 403 for every id, so it reveals nothing.
    """
    if scope.kind == "reseller":
        require_permission(session, scope, "manage_devices")
    elif scope.kind == "customer":
        refused = sorted(set(fields) - set(SELF_CARE_FIELDS))
        if refused:
            raise NotPermitted(
                f"customers cannot set {', '.join(refused)} (self-care: {', '.join(SELF_CARE_FIELDS)})",
                field=refused[0],
            )


def _check_extras(session: Session, customer: Customer, values: Mapping[str, Any]) -> None:
    """Voicemail e-mail and the user's fraud limit (at most the customer's ceiling)."""
    email = values.get("voicemail_email")
    if email is not None and (not isinstance(email, str) or len(email) > 254 or not re.fullmatch(EMAIL_PATTERN, email)):
        raise InvalidValue("voicemail_email must be a valid e-mail address", field="voicemail_email")
    require_money(values, "fraud_limit")
    limit = values.get("fraud_limit")
    ceiling = customer.fraud_limit_ceiling
    if limit is not None and ceiling is not None and limit > ceiling:
        raise InvalidValue(f"fraud_limit may not exceed the customer's ceiling of {ceiling}", field="fraud_limit")


def realm_for(customer: Customer, default_realm: str) -> str:
    """The digest realm of a customer's devices: its domain, else the switch's default realm."""
    return customer.domain or default_realm


def get_sip_device(session: Session, *, scope: Scope, customer_id: int, device_id: int) -> SipDevice:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    device = session.get(SipDevice, device_id) if is_valid_id(device_id) else None
    if device is None or device.customer_id != customer.id:
        raise NotFound("SIP device", device_id)
    return device


def list_sip_devices(
    session: Session,
    *,
    scope: Scope,
    customer_id: int,
    username: str | None = None,
    extension: str | None = None,
    status: str | None = None,
    sort: str | None = None,
) -> Listing:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    stmt = select(SipDevice).where(SipDevice.customer_id == customer.id)
    if username:
        stmt = stmt.where(SipDevice.username.icontains(username, autoescape=True))
    if extension:
        stmt = stmt.where(SipDevice.extension == extension)
    if status:
        stmt = stmt.where(SipDevice.status == status)
    columns = {key: getattr(SipDevice, key) for key in SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=SipDevice.id))


def _allowed_ips(values: Iterable[str]) -> list[str]:
    try:
        normalised = [normalize_network(v) for v in values]
    except ValueError as error:
        raise InvalidValue(f"not an IP address or network: {error}", field="allowed_ips") from error
    return list(dict.fromkeys(normalised))  # de-duplicated, order kept


def _check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise InvalidValue(f"password must have at least {PASSWORD_MIN_LENGTH} characters", field="password")


def create_sip_device(
    session: Session,
    *,
    scope: Scope,
    customer_id: int,
    default_realm: str,
    username: str,
    password: str,
    extension: str | None = None,
    caller_number: str | None = None,
    display_name: str | None = None,
    status: str = "active",
    max_sessions: int = 0,
    cps: int = 0,
    allowed_ips: Iterable[str] = (),
    voicemail_enabled: bool = False,
    voicemail_email: str | None = None,
    fraud_limit: Decimal | None = None,
) -> SipDevice:
    """A new device; only the HA1 digests of ``password`` are stored.

    A customer creates its own devices with the defaults for everything but the username,
    extension, display name, secret and voicemail (the reseller's fields stay unset).
    """
    allowed_ips = list(allowed_ips)
    reseller_fields = {
        "caller_number": caller_number is not None,
        "status": status != "active",
        "max_sessions": max_sessions != 0,
        "cps": cps != 0,
        "allowed_ips": bool(allowed_ips),
        "fraud_limit": fraud_limit is not None,
    }
    _check_writer(
        session,
        scope,
        [*SELF_CARE_FIELDS, *(field for field, given in reseller_fields.items() if given)],
    )
    customer = get_customer(session, scope=scope, customer_id=customer_id, for_update=True)
    if customer.status == "closed":
        raise Conflict("the customer is closed")
    _check_password(password)
    require_match(
        {
            "username": username,
            "extension": extension,
            "caller_number": caller_number,
            "display_name": display_name,
        },
        _PATTERNS,
    )
    require_one_of(status, DEVICE_STATUSES, field="status")
    require_non_negative({"max_sessions": max_sessions, "cps": cps}, ("max_sessions", "cps"))
    _check_extras(session, customer, {"voicemail_email": voicemail_email, "fraud_limit": fraud_limit})
    realm = realm_for(customer, default_realm)
    ha1_md5, ha1_sha256 = compute_ha1(username, realm, password)
    device = SipDevice(
        customer_id=customer.id,
        username=username,
        realm=realm,
        ha1_md5=ha1_md5,
        ha1_sha256=ha1_sha256,
        extension=extension,
        caller_number=caller_number,
        display_name=display_name,
        status=status,
        max_sessions=max_sessions,
        cps=cps,
        allowed_ips=_allowed_ips(allowed_ips),
        voicemail_enabled=voicemail_enabled,
        voicemail_email=voicemail_email,
        fraud_limit=fraud_limit,
    )
    session.add(device)
    flush(session)
    record_change(session, entity=ENTITY_SIP_DEVICE, entity_id=device.id)
    return device


def update_sip_device(
    session: Session,
    *,
    scope: Scope,
    customer_id: int,
    device_id: int,
    default_realm: str,
    changes: Mapping[str, Any],
) -> SipDevice:
    """Partial update.  A new password recomputes both HA1s for the customer's current realm.

    The HA1s hash the username too, so a username change needs the password in the same call.
    """
    _check_writer(session, scope, changes)
    device = get_sip_device(session, scope=scope, customer_id=customer_id, device_id=device_id)
    values = dict(changes)
    for field in _NOT_NULL:
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    if "status" in values:
        require_one_of(values["status"], DEVICE_STATUSES, field="status")
    require_non_negative(values, ("max_sessions", "cps"))
    require_match(values, _PATTERNS)
    if "allowed_ips" in values:
        values["allowed_ips"] = _allowed_ips(values["allowed_ips"])
    owner = session.get(Customer, device.customer_id)
    assert owner is not None  # the foreign key guarantees it
    _check_extras(session, owner, values)
    password = values.pop("password", None)
    username_changes = "username" in values and values["username"] != device.username
    if username_changes and password is None:
        raise InvalidValue("password is required when the username changes", field="password")
    if password is not None:
        _check_password(password)
        customer = session.get(Customer, device.customer_id)
        assert customer is not None  # the foreign key guarantees it
        realm = realm_for(customer, default_realm)
        username = values.get("username", device.username)
        values["realm"] = realm
        values["ha1_md5"], values["ha1_sha256"] = compute_ha1(username, realm, password)
    changed = apply_changes(device, values, allowed=(*UPDATABLE_FIELDS, "realm", "ha1_md5", "ha1_sha256"))
    if changed:
        flush(session)
        record_change(session, entity=ENTITY_SIP_DEVICE, entity_id=device.id)
    return device


def delete_sip_device(session: Session, *, scope: Scope, customer_id: int, device_id: int) -> None:
    """Delete a device and its stored bindings (the switch drops the live ones on the change)."""
    _check_writer(session, scope, ())
    device = get_sip_device(session, scope=scope, customer_id=customer_id, device_id=device_id)
    routed = session.scalars(
        select(Did.number).where(Did.destination_type == "sip_device", Did.destination == str(device.id))
    ).first()
    if routed is not None:
        raise Conflict(f"DID {routed} is routed to this device; change the DID first")
    session.execute(delete(Registration).where(Registration.device_id == device.id))
    session.delete(device)
    flush(session)
    record_change(session, entity=ENTITY_SIP_DEVICE, entity_id=device_id)
