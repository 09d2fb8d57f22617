"""Carriers (termination gateways) and dialing routes: the service provider's alone.

Resellers and customers neither see nor change them (their requests get 403, whatever the id:
the answer does not depend on what exists).  Every change is recorded as one ``routing`` change
so the running switch reloads its (small) routing tables together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted
from provisioning.models import (
    DEVICE_STATUSES,
    ENTITY_ROUTING,
    ROUTE_STRATEGIES,
    TRANSPORTS,
    Carrier,
    Customer,
    Route,
    RouteCarrier,
    Tariff,
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
from provisioning.scope import Scope
from provisioning.validation import HOST_PATTERN, PREFIX_PATTERN, is_valid_id, normalize_ip

CARRIER_FIELDS = (
    "name",
    "host",
    "port",
    "transport",
    "strip_prefix",
    "add_prefix",
    "max_sessions",
    "cps",
    "tariff_id",
    "status",
)
ROUTE_FIELDS = ("name", "dial_pattern", "strategy", "customer_id", "status")
CARRIER_SORTABLE = ("id", "name", "host", "status", "created_at")
ROUTE_SORTABLE = ("id", "name", "dial_pattern", "strategy", "status", "created_at")
MAX_ROUTE_CARRIERS = 32


def _provider_only(scope: Scope) -> None:
    if scope.kind != "provider":
        raise NotPermitted("carriers and routes are managed by the service provider")


def _host(value: str) -> str:
    text = value.strip()
    try:
        return normalize_ip(text)
    except ValueError:
        pass
    if not re.fullmatch(HOST_PATTERN, text):
        raise InvalidValue("host must be an IP address or a DNS name", field="host")
    return text.lower()


def _check_carrier(session: Session, values: dict[str, Any]) -> None:
    require_text(values, "name", max_length=100, required="name" in values)
    if values.get("host") is not None:
        values["host"] = _host(values["host"])
    require_range(values, "port", 1, 65535)
    if "transport" in values:
        require_one_of(values["transport"], TRANSPORTS, field="transport")
    if "status" in values:
        require_one_of(values["status"], DEVICE_STATUSES, field="status")
    require_match(values, {"strip_prefix": PREFIX_PATTERN, "add_prefix": r"^\+?[0-9]{0,19}$"})
    require_non_negative(values, ("max_sessions", "cps"))
    tariff_id = values.get("tariff_id")
    if tariff_id is not None:
        tariff = session.get(Tariff, tariff_id) if is_valid_id(tariff_id) else None
        if tariff is None or tariff.reseller_id is not None:
            raise InvalidValue(f"unknown tariff {tariff_id} (a buy tariff is the provider's)", field="tariff_id")


def get_carrier(session: Session, *, scope: Scope, carrier_id: int) -> Carrier:
    _provider_only(scope)
    carrier = session.get(Carrier, carrier_id) if is_valid_id(carrier_id) else None
    if carrier is None:
        raise NotFound("carrier", carrier_id)
    return carrier


def list_carriers(
    session: Session, *, scope: Scope, name: str | None = None, status: str | None = None, sort: str | None = None
) -> Listing:
    _provider_only(scope)
    stmt = select(Carrier)
    if name:
        stmt = stmt.where(Carrier.name.icontains(name, autoescape=True))
    if status:
        stmt = stmt.where(Carrier.status == status)
    columns = {key: getattr(Carrier, key) for key in CARRIER_SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=Carrier.id))


def create_carrier(session: Session, *, scope: Scope, **fields: Any) -> Carrier:
    _provider_only(scope)
    values = {"port": 5060, "transport": "udp", "strip_prefix": "", "add_prefix": "", "status": "active", **fields}
    unknown = set(values) - set(CARRIER_FIELDS)
    if unknown:
        raise InvalidValue(f"unknown field {sorted(unknown)[0]}", field=sorted(unknown)[0])
    if not values.get("host"):
        raise InvalidValue("host is required", field="host")
    _check_carrier(session, values)
    carrier = Carrier(**{**values, "name": values["name"].strip()})
    session.add(carrier)
    flush(session)
    record_change(session, entity=ENTITY_ROUTING, entity_id=0)
    return carrier


def update_carrier(session: Session, *, scope: Scope, carrier_id: int, changes: Mapping[str, Any]) -> Carrier:
    carrier = get_carrier(session, scope=scope, carrier_id=carrier_id)
    values = dict(changes)
    for field in CARRIER_FIELDS:
        if field != "tariff_id" and field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    _check_carrier(session, values)
    if "name" in values:
        values["name"] = values["name"].strip()
    if apply_changes(carrier, values, allowed=CARRIER_FIELDS):
        flush(session)
        record_change(session, entity=ENTITY_ROUTING, entity_id=0)
    return carrier


def delete_carrier(session: Session, *, scope: Scope, carrier_id: int) -> None:
    carrier = get_carrier(session, scope=scope, carrier_id=carrier_id)
    used = session.scalar(select(func.count()).where(RouteCarrier.carrier_id == carrier.id)) or 0
    if used:
        raise Conflict(f"the carrier is in {used} route(s); remove it from them first")
    session.delete(carrier)
    flush(session)
    record_change(session, entity=ENTITY_ROUTING, entity_id=0)


# -- routes -------------------------------------------------------------------------------------


def get_route(session: Session, *, scope: Scope, route_id: int) -> Route:
    _provider_only(scope)
    route = session.get(Route, route_id) if is_valid_id(route_id) else None
    if route is None:
        raise NotFound("route", route_id)
    return route


def route_carriers(session: Session, route_id: int) -> list[RouteCarrier]:
    return list(
        session.scalars(select(RouteCarrier).where(RouteCarrier.route_id == route_id).order_by(RouteCarrier.position))
    )


def list_routes(
    session: Session,
    *,
    scope: Scope,
    name: str | None = None,
    dial_pattern: str | None = None,
    customer_id: int | None = None,
    status: str | None = None,
    sort: str | None = None,
) -> Listing:
    _provider_only(scope)
    stmt = select(Route)
    if name:
        stmt = stmt.where(Route.name.icontains(name, autoescape=True))
    if dial_pattern is not None:
        stmt = stmt.where(Route.dial_pattern == dial_pattern)
    if customer_id is not None:
        stmt = stmt.where(Route.customer_id == customer_id)
    if status:
        stmt = stmt.where(Route.status == status)
    columns = {key: getattr(Route, key) for key in ROUTE_SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=Route.id))


def _check_route(session: Session, values: dict[str, Any]) -> None:
    require_text(values, "name", max_length=100, required="name" in values)
    require_match(values, {"dial_pattern": PREFIX_PATTERN})
    if "strategy" in values:
        require_one_of(values["strategy"], ROUTE_STRATEGIES, field="strategy")
    if "status" in values:
        require_one_of(values["status"], DEVICE_STATUSES, field="status")
    customer_id = values.get("customer_id")
    if customer_id is not None and (not is_valid_id(customer_id) or session.get(Customer, customer_id) is None):
        raise InvalidValue(f"unknown customer {customer_id}", field="customer_id")


def _set_carriers(session: Session, route: Route, carriers: Sequence[Mapping[str, Any]]) -> None:
    if len(carriers) > MAX_ROUTE_CARRIERS:
        raise InvalidValue(f"at most {MAX_ROUTE_CARRIERS} carriers per route", field="carriers")
    seen: set[int] = set()
    for entry in carriers:
        carrier_id = entry.get("carrier_id")
        weight = entry.get("weight", 1)
        if not isinstance(carrier_id, int) or not is_valid_id(carrier_id) or session.get(Carrier, carrier_id) is None:
            raise InvalidValue(f"unknown carrier {carrier_id}", field="carriers")
        if carrier_id in seen:
            raise InvalidValue(f"carrier {carrier_id} appears twice", field="carriers")
        seen.add(carrier_id)
        if not isinstance(weight, int) or not 1 <= weight <= 1000:
            raise InvalidValue("a carrier's weight is between 1 and 1000", field="carriers")
    # Through the ORM (not a bulk DELETE) so that the audit log shows the old list.
    for old in route_carriers(session, route.id):
        session.delete(old)
    flush(session)
    for position, entry in enumerate(carriers):
        session.add(
            RouteCarrier(
                route_id=route.id, carrier_id=entry["carrier_id"], position=position, weight=entry.get("weight", 1)
            )
        )


def create_route(
    session: Session,
    *,
    scope: Scope,
    name: str,
    dial_pattern: str = "",
    strategy: str = "priority",
    customer_id: int | None = None,
    status: str = "active",
    carriers: Sequence[Mapping[str, Any]] = (),
) -> Route:
    _provider_only(scope)
    values: dict[str, Any] = {
        "name": name,
        "dial_pattern": dial_pattern,
        "strategy": strategy,
        "customer_id": customer_id,
        "status": status,
    }
    _check_route(session, values)
    route = Route(**{**values, "name": name.strip()})
    session.add(route)
    flush(session)
    _set_carriers(session, route, carriers)
    flush(session)
    record_change(session, entity=ENTITY_ROUTING, entity_id=0)
    return route


def update_route(session: Session, *, scope: Scope, route_id: int, changes: Mapping[str, Any]) -> Route:
    route = get_route(session, scope=scope, route_id=route_id)
    values = dict(changes)
    for field in ("name", "dial_pattern", "strategy", "status", "carriers"):
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    carriers = values.pop("carriers", None)
    _check_route(session, values)
    if "name" in values:
        values["name"] = values["name"].strip()
    changed = bool(apply_changes(route, values, allowed=ROUTE_FIELDS))
    if carriers is not None:
        _set_carriers(session, route, carriers)
        changed = True
    if changed:
        flush(session)
        record_change(session, entity=ENTITY_ROUTING, entity_id=0)
    return route


def delete_route(session: Session, *, scope: Scope, route_id: int) -> None:
    route = get_route(session, scope=scope, route_id=route_id)
    for old in route_carriers(session, route.id):
        session.delete(old)
    flush(session)
    session.delete(route)
    flush(session)
    record_change(session, entity=ENTITY_ROUTING, entity_id=0)
