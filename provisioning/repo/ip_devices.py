"""IP devices: a customer's PBX or gateway, recognised by its source address instead of digest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted
from provisioning.models import DEVICE_STATUSES, ENTITY_IP_DEVICE, IpDevice
from provisioning.repo._common import (
    Listing,
    apply_changes,
    apply_sort,
    flush,
    record_change,
    require_match,
    require_non_negative,
    require_one_of,
    require_text,
)
from provisioning.repo.customers import get_customer
from provisioning.repo.resellers import require_permission
from provisioning.scope import Scope
from provisioning.validation import CALLER_NUMBER_PATTERN, TECH_PREFIX_PATTERN, is_valid_id, normalize_ip

UPDATABLE_FIELDS = ("ip", "port", "tech_prefix", "status", "max_sessions", "cps", "caller_number", "description")
_NOT_NULL = ("ip", "tech_prefix", "status", "max_sessions", "cps", "description")
SORTABLE = ("id", "ip", "port", "status", "created_at")


def _writable(session: Session, scope: Scope) -> None:
    # An IP device is trusted by its source address alone: only the provider or a reseller may
    # vouch for an address (a customer could otherwise claim someone else's PBX).  A reseller
    # needs manage_devices; checked before any id is looked up (the same 403 for every id).
    if scope.kind == "customer":
        raise NotPermitted("IP devices are managed by the reseller")
    require_permission(session, scope, "manage_devices")
_PATTERNS = {"tech_prefix": TECH_PREFIX_PATTERN, "caller_number": CALLER_NUMBER_PATTERN}


def _ip(value: str) -> str:
    try:
        return normalize_ip(value)
    except ValueError as error:
        raise InvalidValue(str(error), field="ip") from error


def _port(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= 65535:
        raise InvalidValue("port must be between 1 and 65535", field="port")
    return value


def get_ip_device(session: Session, *, scope: Scope, customer_id: int, device_id: int) -> IpDevice:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    device = session.get(IpDevice, device_id) if is_valid_id(device_id) else None
    if device is None or device.customer_id != customer.id:
        raise NotFound("IP device", device_id)
    return device


def list_ip_devices(
    session: Session,
    *,
    scope: Scope,
    customer_id: int,
    ip: str | None = None,
    status: str | None = None,
    sort: str | None = None,
) -> Listing:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    stmt = select(IpDevice).where(IpDevice.customer_id == customer.id)
    if ip:
        try:
            stmt = stmt.where(IpDevice.ip == normalize_ip(ip))
        except ValueError as error:
            raise InvalidValue("ip must be an IP address", field="ip", location="query") from error
    if status:
        stmt = stmt.where(IpDevice.status == status)
    columns = {key: getattr(IpDevice, key) for key in SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=IpDevice.id))


def create_ip_device(
    session: Session,
    *,
    scope: Scope,
    customer_id: int,
    ip: str,
    port: int | None = None,
    tech_prefix: str = "",
    status: str = "active",
    max_sessions: int = 0,
    cps: int = 0,
    caller_number: str | None = None,
    description: str = "",
) -> IpDevice:
    _writable(session, scope)
    customer = get_customer(session, scope=scope, customer_id=customer_id, for_update=True)
    if customer.status == "closed":
        raise Conflict("the customer is closed")
    require_one_of(status, DEVICE_STATUSES, field="status")
    require_non_negative({"max_sessions": max_sessions, "cps": cps}, ("max_sessions", "cps"))
    require_match({"tech_prefix": tech_prefix, "caller_number": caller_number}, _PATTERNS)
    require_text({"description": description}, "description", max_length=200)
    device = IpDevice(
        customer_id=customer.id,
        ip=_ip(ip),
        port=_port(port),
        tech_prefix=tech_prefix,
        status=status,
        max_sessions=max_sessions,
        cps=cps,
        caller_number=caller_number,
        description=description,
    )
    session.add(device)
    flush(session)
    record_change(session, entity=ENTITY_IP_DEVICE, entity_id=device.id)
    return device


def update_ip_device(
    session: Session, *, scope: Scope, customer_id: int, device_id: int, changes: Mapping[str, Any]
) -> IpDevice:
    _writable(session, scope)
    device = get_ip_device(session, scope=scope, customer_id=customer_id, device_id=device_id)
    values = dict(changes)
    require_text(values, "description", max_length=200)
    for field in _NOT_NULL:
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    if "ip" in values:
        values["ip"] = _ip(values["ip"])
    if "port" in values:
        values["port"] = _port(values["port"])
    if "status" in values:
        require_one_of(values["status"], DEVICE_STATUSES, field="status")
    require_non_negative(values, ("max_sessions", "cps"))
    require_match(values, _PATTERNS)
    if apply_changes(device, values, allowed=UPDATABLE_FIELDS):
        flush(session)
        record_change(session, entity=ENTITY_IP_DEVICE, entity_id=device.id)
    return device


def delete_ip_device(session: Session, *, scope: Scope, customer_id: int, device_id: int) -> None:
    _writable(session, scope)
    device = get_ip_device(session, scope=scope, customer_id=customer_id, device_id=device_id)
    session.delete(device)
    flush(session)
    record_change(session, entity=ENTITY_IP_DEVICE, entity_id=device_id)
