"""IP devices: a customer's PBX or gateway, recognised by its source address instead of digest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.errors import Conflict, InvalidValue, NotFound
from provisioning.models import DEVICE_STATUSES, ENTITY_IP_DEVICE, IpDevice
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
from provisioning.repo.customers import get_customer
from provisioning.scope import Scope
from provisioning.validation import CALLER_NUMBER_PATTERN, TECH_PREFIX_PATTERN, is_valid_id, normalize_ip

UPDATABLE_FIELDS = ("ip", "port", "tech_prefix", "status", "max_sessions", "cps", "caller_number")
_NOT_NULL = ("ip", "tech_prefix", "status", "max_sessions", "cps")
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
    limit: int = 100,
    offset: int = 0,
) -> Page[IpDevice]:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    stmt = select(IpDevice).where(IpDevice.customer_id == customer.id)
    if ip:
        stmt = stmt.where(IpDevice.ip == _ip(ip))
    if status:
        stmt = stmt.where(IpDevice.status == status)
    return paginate(session, stmt.order_by(IpDevice.id), limit=limit, offset=offset)


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
) -> IpDevice:
    customer = get_customer(session, scope=scope, customer_id=customer_id, for_update=True)
    if customer.status == "closed":
        raise Conflict("the customer is closed")
    require_one_of(status, DEVICE_STATUSES, field="status")
    require_non_negative({"max_sessions": max_sessions, "cps": cps}, ("max_sessions", "cps"))
    require_match({"tech_prefix": tech_prefix, "caller_number": caller_number}, _PATTERNS)
    device = IpDevice(
        customer_id=customer.id,
        ip=_ip(ip),
        port=_port(port),
        tech_prefix=tech_prefix,
        status=status,
        max_sessions=max_sessions,
        cps=cps,
        caller_number=caller_number,
    )
    session.add(device)
    flush(session)
    record_change(session, entity=ENTITY_IP_DEVICE, entity_id=device.id)
    return device


def update_ip_device(
    session: Session, *, scope: Scope, customer_id: int, device_id: int, changes: Mapping[str, Any]
) -> IpDevice:
    device = get_ip_device(session, scope=scope, customer_id=customer_id, device_id=device_id)
    values = dict(changes)
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
    device = get_ip_device(session, scope=scope, customer_id=customer_id, device_id=device_id)
    session.delete(device)
    flush(session)
    record_change(session, entity=ENTITY_IP_DEVICE, entity_id=device_id)
