"""The switch's in-memory view of provisioning, kept current by polling the change feed.

:class:`Snapshot` answers the :class:`switch.ports.Directory` questions with plain dict lookups;
it never touches the database and is never mutated after it is built.  :class:`SnapshotWatcher`
builds one at start, then on a background thread polls ``SELECT max(id) FROM changes`` (every
0.25 s by default); when new changes appear it reloads only the changed rows, builds the next
Snapshot from copies of the current dicts, and publishes it with one reference assignment.  A
reader on the event loop therefore sees either the old snapshot or the new one, never a mix.

Freshness: a committed change is visible after at most one poll interval plus the reload, well
inside the one second the switch promises (a new device can register; a deleted or inactive
device, or a stopped or closed customer, shows as such and the switch drops its registrations).

Listeners registered with :meth:`SnapshotWatcher.add_listener` are called **on the watcher
thread** with the list of (entity, id) changes, after the new snapshot is published.  Code that
touches the event loop's state must hop over, e.g. the composition root registers
``lambda changes: loop.call_soon_threadsafe(registrar.on_provisioning_changes, changes)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provisioning.db import utcnow
from provisioning.models import (
    ENTITY_CUSTOMER,
    ENTITY_DID,
    ENTITY_IP_DEVICE,
    ENTITY_PLAN,
    ENTITY_RESELLER,
    ENTITY_ROUTING,
    ENTITY_SIP_DEVICE,
    ENTITY_TARIFF,
    ENTITY_TRANSLATION,
    Carrier,
    Customer,
    Did,
    IpDevice,
    Reseller,
    Route,
    RouteCarrier,
    SipDevice,
    TranslationRule,
)
from provisioning.repo.changes import changes_after, latest_change_id, prune_changes
from switch.ports import CustomerInfo, DeviceInfo, IpDeviceInfo

log = logging.getLogger(__name__)

Change = tuple[str, int]
# Entities reloaded row by row; any other change (a reseller: many customers' paths) reloads all.
# Tariffs and plans are in the feed for the billing sidecar's rating book: the snapshot holds
# nothing of them, so they need no reload here.
_INCREMENTAL = frozenset(
    {
        ENTITY_CUSTOMER,
        ENTITY_SIP_DEVICE,
        ENTITY_IP_DEVICE,
        ENTITY_RESELLER,
        ENTITY_DID,
        ENTITY_ROUTING,
        ENTITY_TRANSLATION,
        ENTITY_TARIFF,
        ENTITY_PLAN,
    }
)
Listener = Callable[[list[Change]], None]


# What the switch will need beyond switch.ports (fraud limits, trunk caps, DIDs, routing,
# number translation), as the snapshot's own immutable types.  The switch reads them through
# ``watcher.snapshot``; proposals to move some into switch.ports are in docs/api.md.


@dataclass(frozen=True, slots=True)
class CustomerPolicy:
    """A customer's money and admission settings."""

    customer_id: int
    customer_type: str  # LIVE or DEMO (a demo customer is not charged)
    billing_type: str  # prepaid or postpaid
    credit_limit: Decimal
    currency: str
    billing_decimals: int
    timezone: str
    tariff_id: int | None
    service_plan_id: int | None
    codecs: tuple[str, ...]
    call_with_media: bool
    cli: str | None
    trunk_channel_max: int | None  # concurrent calls via IP devices; None = no cap
    fraud_limit_default: Decimal | None  # per user and day, in ``currency``; None = no limit
    fraud_limit_ceiling: Decimal | None


@dataclass(frozen=True, slots=True)
class ResellerInfo:
    id: int
    parent_id: int | None
    path: str
    status: str


@dataclass(frozen=True, slots=True)
class DidInfo:
    id: int
    number: str
    customer_id: int | None
    reseller_id: int | None
    destination_type: str | None
    destination: str
    max_sessions: int
    status: str

    @property
    def active(self) -> bool:
        return self.status == "active" and self.customer_id is not None and self.destination_type is not None


@dataclass(frozen=True, slots=True)
class CarrierInfo:
    id: int
    name: str
    host: str
    port: int
    transport: str
    strip_prefix: str
    add_prefix: str
    max_sessions: int
    cps: int
    tariff_id: int | None
    status: str

    def number_for(self, dialled: str) -> str:
        """The number as sent to this carrier: ``strip_prefix`` removed, then ``add_prefix`` added."""
        if self.strip_prefix and dialled.startswith(self.strip_prefix):
            dialled = dialled[len(self.strip_prefix) :]
        return self.add_prefix + dialled


@dataclass(frozen=True, slots=True)
class RouteCarrierInfo:
    carrier_id: int
    position: int
    weight: int


@dataclass(frozen=True, slots=True)
class RouteInfo:
    id: int
    name: str
    dial_pattern: str
    strategy: str  # priority, least_cost or weighted
    customer_id: int | None
    status: str
    carriers: tuple[RouteCarrierInfo, ...]


@dataclass(frozen=True, slots=True)
class TranslationRuleInfo:
    id: int
    kind: str
    position: int
    match: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Extras:
    policies: dict[int, CustomerPolicy] = field(default_factory=dict)
    device_fraud_limits: dict[int, Decimal] = field(default_factory=dict)
    resellers: dict[int, ResellerInfo] = field(default_factory=dict)
    dids: dict[int, DidInfo] = field(default_factory=dict)
    did_by_number: dict[str, DidInfo] = field(default_factory=dict)
    carriers: dict[int, CarrierInfo] = field(default_factory=dict)
    routes: tuple[RouteInfo, ...] = ()
    translations: dict[int, tuple[TranslationRuleInfo, ...]] = field(default_factory=dict)


class Snapshot:
    """An immutable set of lookup tables (switch.ports.Directory)."""

    __slots__ = (
        "_by_ext",
        "_by_id",
        "_by_username",
        "_customers",
        "_extras",
        "_ip_any_port",
        "_ip_by_id",
        "_ip_exact",
        "change_id",
    )

    def __init__(
        self,
        *,
        customers: dict[int, CustomerInfo],
        devices: dict[int, DeviceInfo],
        ip_devices: dict[int, IpDeviceInfo],
        change_id: int = 0,
        by_username: dict[str, DeviceInfo] | None = None,
        by_ext: dict[tuple[int, str], DeviceInfo] | None = None,
        ip_exact: dict[tuple[str, int], IpDeviceInfo] | None = None,
        ip_any_port: dict[str, IpDeviceInfo] | None = None,
        extras: Extras | None = None,
    ) -> None:
        self._customers = customers
        self._extras = extras if extras is not None else Extras()
        self._by_id = devices
        self._ip_by_id = ip_devices
        self.change_id = change_id  # the last change this snapshot includes
        if by_username is None or by_ext is None:
            by_username, by_ext = {}, {}
            for device in devices.values():
                _index_device(device, by_username, by_ext)
        if ip_exact is None or ip_any_port is None:
            ip_exact, ip_any_port = {}, {}
            for ip_device in ip_devices.values():
                _index_ip_device(ip_device, ip_exact, ip_any_port)
        self._by_username = by_username
        self._by_ext = by_ext
        self._ip_exact = ip_exact
        self._ip_any_port = ip_any_port

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(customers={}, devices={}, ip_devices={})

    # switch.ports.Directory ------------------------------------------------------------------

    def device_by_username(self, username: str) -> DeviceInfo | None:
        return self._by_username.get(username)

    def device_by_id(self, device_id: int) -> DeviceInfo | None:
        return self._by_id.get(device_id)

    def device_by_extension(self, customer_id: int, extension: str) -> DeviceInfo | None:
        return self._by_ext.get((customer_id, extension))

    def ip_device_by_source(self, ip: str, port: int) -> IpDeviceInfo | None:
        found = self._ip_exact.get((ip, port))
        if found is None:
            found = self._ip_any_port.get(ip)
        return found

    def customer(self, customer_id: int) -> CustomerInfo | None:
        return self._customers.get(customer_id)

    # Beyond the Directory protocol --------------------------------------------------------------

    def ip_device_by_id(self, device_id: int) -> IpDeviceInfo | None:
        return self._ip_by_id.get(device_id)

    def devices_of_customer(self, customer_id: int) -> list[DeviceInfo]:
        """The customer's SIP devices (a scan: for rare events such as a customer being closed)."""
        return [d for d in self._by_id.values() if d.customer_id == customer_id]

    def counts(self) -> dict[str, int]:
        return {
            "customers": len(self._customers),
            "sip_devices": len(self._by_id),
            "ip_devices": len(self._ip_by_id),
            "dids": len(self._extras.dids),
            "routes": len(self._extras.routes),
        }

    def customer_policy(self, customer_id: int) -> CustomerPolicy | None:
        return self._extras.policies.get(customer_id)

    def device_fraud_limit(self, device_id: int) -> Decimal | None:
        """A user's daily outgoing limit: its own, else its customer's default (None = no limit)."""
        own = self._extras.device_fraud_limits.get(device_id)
        if own is not None:
            return own
        device = self._by_id.get(device_id)
        policy = self._extras.policies.get(device.customer_id) if device is not None else None
        return policy.fraud_limit_default if policy is not None else None

    def reseller(self, reseller_id: int) -> ResellerInfo | None:
        return self._extras.resellers.get(reseller_id)

    def did(self, number: str) -> DidInfo | None:
        """The DID for a dialled number (digits, without '+')."""
        return self._extras.did_by_number.get(number.removeprefix("+"))

    def carrier(self, carrier_id: int) -> CarrierInfo | None:
        return self._extras.carriers.get(carrier_id)

    def route_for(self, customer_id: int, number: str) -> RouteInfo | None:
        """The active route with the longest dial pattern that starts ``number``; on equal length a
        route made for this customer wins over a general one."""
        best: RouteInfo | None = None
        best_key = (-1, False)
        for route in self._extras.routes:
            if route.status != "active" or (route.customer_id is not None and route.customer_id != customer_id):
                continue
            if number.startswith(route.dial_pattern):
                key = (len(route.dial_pattern), route.customer_id is not None)
                if key > best_key:
                    best, best_key = route, key
        return best

    def translate(self, customer_id: int, kind: str, number: str) -> str:
        """Apply the customer's first matching translation rule of ``kind`` (number unchanged if none)."""
        for rule in self._extras.translations.get(customer_id, ()):
            if rule.kind == kind and number.startswith(rule.match):
                return rule.replacement + number[len(rule.match) :]
        return number

    def with_change_id(self, change_id: int) -> Snapshot:
        return self._replace(change_id=change_id, customers={}, devices={}, ip_devices={}, extras=self._extras)

    def diff(self, newer: Snapshot) -> list[tuple[str, int]]:
        """(entity, id) of every row that differs between ``self`` and ``newer``."""
        out: list[tuple[str, int]] = []
        for entity, old, new in (
            (ENTITY_CUSTOMER, self._customers, newer._customers),
            (ENTITY_SIP_DEVICE, self._by_id, newer._by_id),
            (ENTITY_IP_DEVICE, self._ip_by_id, newer._ip_by_id),
            (ENTITY_RESELLER, self._extras.resellers, newer._extras.resellers),
            (ENTITY_DID, self._extras.dids, newer._extras.dids),
        ):
            for key in old.keys() | new.keys():
                if old.get(key) != new.get(key):
                    out.append((entity, key))
        mine, theirs = self._extras, newer._extras
        for key in mine.policies.keys() | theirs.policies.keys():
            if mine.policies.get(key) != theirs.policies.get(key) and (ENTITY_CUSTOMER, key) not in out:
                out.append((ENTITY_CUSTOMER, key))
        if mine.carriers != theirs.carriers or mine.routes != theirs.routes:
            out.append((ENTITY_ROUTING, 0))
        for key in mine.translations.keys() | theirs.translations.keys():
            if mine.translations.get(key) != theirs.translations.get(key):
                out.append((ENTITY_TRANSLATION, key))
        return sorted(out)

    def _replace(
        self,
        *,
        change_id: int,
        customers: dict[int, CustomerInfo | None],
        devices: dict[int, DeviceInfo | None],
        ip_devices: dict[int, IpDeviceInfo | None],
        extras: Extras,
    ) -> Snapshot:
        """A new snapshot with the given rows replaced (None = deleted); self is left untouched."""
        new_customers = dict(self._customers)
        for cid, customer in customers.items():
            if customer is None:
                new_customers.pop(cid, None)
            else:
                new_customers[cid] = customer

        by_id = self._by_id
        by_username = self._by_username
        by_ext = self._by_ext
        if devices:
            by_id, by_username, by_ext = dict(by_id), dict(by_username), dict(by_ext)
            # Unindex every old version first, then index the new ones: a batch may move a
            # username or extension from one device to another.
            for did in devices:
                old = by_id.pop(did, None)
                if old is not None:
                    _unindex_device(old, by_username, by_ext)
            for did, info in devices.items():
                if info is not None:
                    by_id[did] = info
                    _index_device(info, by_username, by_ext)

        ip_by_id = self._ip_by_id
        ip_exact = self._ip_exact
        ip_any = self._ip_any_port
        if ip_devices:
            ip_by_id, ip_exact, ip_any = dict(ip_by_id), dict(ip_exact), dict(ip_any)
            for iid in ip_devices:
                old_ip = ip_by_id.pop(iid, None)
                if old_ip is not None:
                    _unindex_ip_device(old_ip, ip_exact, ip_any)
            for iid, ip_info in ip_devices.items():
                if ip_info is not None:
                    ip_by_id[iid] = ip_info
                    _index_ip_device(ip_info, ip_exact, ip_any)

        return Snapshot(
            customers=new_customers,
            devices=by_id,
            ip_devices=ip_by_id,
            change_id=change_id,
            by_username=by_username,
            by_ext=by_ext,
            ip_exact=ip_exact,
            ip_any_port=ip_any,
            extras=extras,
        )


def _index_device(
    device: DeviceInfo, by_username: dict[str, DeviceInfo], by_ext: dict[tuple[int, str], DeviceInfo]
) -> None:
    by_username[device.username] = device
    if device.extension:
        by_ext[(device.customer_id, device.extension)] = device


def _unindex_device(
    device: DeviceInfo, by_username: dict[str, DeviceInfo], by_ext: dict[tuple[int, str], DeviceInfo]
) -> None:
    # Only remove the entry if it still points at this device (ids, not equality).
    current = by_username.get(device.username)
    if current is not None and current.id == device.id:
        del by_username[device.username]
    if device.extension:
        key = (device.customer_id, device.extension)
        current = by_ext.get(key)
        if current is not None and current.id == device.id:
            del by_ext[key]


def _index_ip_device(
    device: IpDeviceInfo, exact: dict[tuple[str, int], IpDeviceInfo], any_port: dict[str, IpDeviceInfo]
) -> None:
    if device.port is None:
        any_port[device.ip] = device
    else:
        exact[(device.ip, device.port)] = device


def _unindex_ip_device(
    device: IpDeviceInfo, exact: dict[tuple[str, int], IpDeviceInfo], any_port: dict[str, IpDeviceInfo]
) -> None:
    if device.port is None:
        current = any_port.get(device.ip)
        if current is not None and current.id == device.id:
            del any_port[device.ip]
    else:
        key = (device.ip, device.port)
        current_exact = exact.get(key)
        if current_exact is not None and current_exact.id == device.id:
            del exact[key]


# Loading from the database ------------------------------------------------------------------------


def _device_info(row: Any) -> DeviceInfo:
    return DeviceInfo(
        id=row.id,
        customer_id=row.customer_id,
        username=row.username,
        realm=row.realm,
        ha1_md5=row.ha1_md5,
        ha1_sha256=row.ha1_sha256,
        extension=row.extension,
        caller_number=row.caller_number,
        display_name=row.display_name,
        status=row.status,
        max_sessions=row.max_sessions,
        cps=row.cps,
        allowed_ips=tuple(row.allowed_ips or ()),
    )


def _ip_device_info(row: Any) -> IpDeviceInfo:
    return IpDeviceInfo(
        id=row.id,
        customer_id=row.customer_id,
        ip=row.ip,
        port=row.port,
        tech_prefix=row.tech_prefix,
        status=row.status,
        max_sessions=row.max_sessions,
        cps=row.cps,
        caller_number=row.caller_number,
    )


def _customer_info(row: Any, reseller_paths: dict[int, str]) -> CustomerInfo:
    return CustomerInfo(
        id=row.id,
        name=row.name,
        status=row.status,
        domain=row.domain,
        max_sessions=row.max_sessions,
        cps=row.cps,
        max_call_seconds=row.max_call_seconds,
        reseller_path=reseller_paths.get(row.reseller_id, "") if row.reseller_id is not None else "",
    )


def _policy(row: Any) -> CustomerPolicy:
    return CustomerPolicy(
        customer_id=row.id,
        customer_type=row.customer_type,
        billing_type=row.billing_type,
        credit_limit=row.credit_limit,
        currency=row.currency,
        billing_decimals=row.billing_decimals,
        timezone=row.timezone,
        tariff_id=row.tariff_id,
        service_plan_id=row.service_plan_id,
        codecs=tuple(row.codecs or ()),
        call_with_media=bool(row.call_with_media),
        cli=row.cli,
        trunk_channel_max=row.trunk_channel_max,
        fraud_limit_default=row.fraud_limit_default,
        fraud_limit_ceiling=row.fraud_limit_ceiling,
    )


def _reseller_info(row: Any) -> ResellerInfo:
    return ResellerInfo(id=row.id, parent_id=row.parent_id, path=row.path, status=row.status)


def _did_info(row: Any) -> DidInfo:
    return DidInfo(
        id=row.id,
        number=row.number,
        customer_id=row.customer_id,
        reseller_id=row.reseller_id,
        destination_type=row.destination_type,
        destination=row.destination,
        max_sessions=row.max_sessions,
        status=row.status,
    )


def _columns(model: Any, *skip: str) -> list[Any]:
    return [c for c in model.__table__.c if c.name not in ("created_at", "updated_at", *skip)]


_SIP_COLUMNS = _columns(SipDevice)
_IP_COLUMNS = _columns(IpDevice)
# Secrets stay in the database: the switch has no use for login password hashes.
_CUSTOMER_COLUMNS = _columns(Customer, "web_password_hash")
_RESELLER_COLUMNS = [Reseller.id, Reseller.parent_id, Reseller.path, Reseller.status]
_DID_COLUMNS = _columns(Did, "description")


def _load_routing(session: Session) -> tuple[dict[int, CarrierInfo], tuple[RouteInfo, ...]]:
    carriers = {
        r.id: CarrierInfo(
            id=r.id,
            name=r.name,
            host=r.host,
            port=r.port,
            transport=r.transport,
            strip_prefix=r.strip_prefix,
            add_prefix=r.add_prefix,
            max_sessions=r.max_sessions,
            cps=r.cps,
            tariff_id=r.tariff_id,
            status=r.status,
        )
        for r in session.execute(select(*_columns(Carrier)))
    }
    members: dict[int, list[RouteCarrierInfo]] = {}
    for r in session.execute(select(RouteCarrier).order_by(RouteCarrier.route_id, RouteCarrier.position)).scalars():
        members.setdefault(r.route_id, []).append(
            RouteCarrierInfo(carrier_id=r.carrier_id, position=r.position, weight=r.weight)
        )
    routes = tuple(
        RouteInfo(
            id=r.id,
            name=r.name,
            dial_pattern=r.dial_pattern,
            strategy=r.strategy,
            customer_id=r.customer_id,
            status=r.status,
            carriers=tuple(members.get(r.id, ())),
        )
        for r in session.execute(select(*_columns(Route)).order_by(Route.id))
    )
    return carriers, routes


def _load_translations(
    session: Session, customer_ids: Iterable[int] | None
) -> dict[int, tuple[TranslationRuleInfo, ...]]:
    stmt = select(TranslationRule).order_by(TranslationRule.customer_id, TranslationRule.position, TranslationRule.id)
    rows: list[TranslationRule] = []
    if customer_ids is None:
        rows = list(session.scalars(stmt))
    else:
        wanted = list(customer_ids)
        for start in range(0, len(wanted), 500):
            rows.extend(session.scalars(stmt.where(TranslationRule.customer_id.in_(wanted[start : start + 500]))))
    out: dict[int, list[TranslationRuleInfo]] = {}
    for rule in rows:
        out.setdefault(rule.customer_id, []).append(
            TranslationRuleInfo(
                id=rule.id, kind=rule.kind, position=rule.position, match=rule.match, replacement=rule.replacement
            )
        )
    return {cid: tuple(rules) for cid, rules in out.items()}


def load_snapshot(session: Session) -> Snapshot:
    """Everything, read after the change watermark so that no change can slip between the two."""
    change_id = latest_change_id(session)
    resellers = {r.id: _reseller_info(r) for r in session.execute(select(*_RESELLER_COLUMNS))}
    paths = {rid: info.path for rid, info in resellers.items()}
    customers: dict[int, CustomerInfo] = {}
    policies: dict[int, CustomerPolicy] = {}
    for r in session.execute(select(*_CUSTOMER_COLUMNS)):
        customers[r.id] = _customer_info(r, paths)
        policies[r.id] = _policy(r)
    devices: dict[int, DeviceInfo] = {}
    fraud: dict[int, Decimal] = {}
    for r in session.execute(select(*_SIP_COLUMNS)):
        devices[r.id] = _device_info(r)
        if r.fraud_limit is not None:
            fraud[r.id] = r.fraud_limit
    ip_devices = {r.id: _ip_device_info(r) for r in session.execute(select(*_IP_COLUMNS))}
    dids = {r.id: _did_info(r) for r in session.execute(select(*_DID_COLUMNS))}
    carriers, routes = _load_routing(session)
    extras = Extras(
        policies=policies,
        device_fraud_limits=fraud,
        resellers=resellers,
        dids=dids,
        did_by_number={d.number: d for d in dids.values()},
        carriers=carriers,
        routes=routes,
        translations=_load_translations(session, None),
    )
    return Snapshot(customers=customers, devices=devices, ip_devices=ip_devices, change_id=change_id, extras=extras)


def _load_rows(session: Session, columns: Sequence[Any], table_id: Any, ids: Iterable[int]) -> list[Any]:
    wanted = list(ids)
    rows: list[Any] = []
    for start in range(0, len(wanted), 500):  # stay under every backend's parameter limit
        chunk = wanted[start : start + 500]
        rows.extend(session.execute(select(*columns).where(table_id.in_(chunk))))
    return rows


def _replaced(current: dict[Any, Any], updates: dict[Any, Any]) -> dict[Any, Any]:
    """A copy of ``current`` with ``updates`` applied (a None value deletes the key)."""
    if not updates:
        return current
    out = dict(current)
    for key, value in updates.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def apply_changes(session: Session, snapshot: Snapshot, changes: Sequence[Change], upto_id: int) -> Snapshot:
    """The next snapshot: ``snapshot`` with the changed entities re-read from the database."""
    kinds = {entity for entity, _ in changes}
    if kinds - _INCREMENTAL:
        # Anything unknown (a newer writer's entity): rare, so reload it all.
        fresh = load_snapshot(session)
        return fresh if fresh.change_id >= upto_id else fresh.with_change_id(upto_id)

    customer_ids = {eid for entity, eid in changes if entity == ENTITY_CUSTOMER}
    device_ids = {eid for entity, eid in changes if entity == ENTITY_SIP_DEVICE}
    ip_ids = {eid for entity, eid in changes if entity == ENTITY_IP_DEVICE}
    reseller_ids = {eid for entity, eid in changes if entity == ENTITY_RESELLER}
    did_ids = {eid for entity, eid in changes if entity == ENTITY_DID}
    translation_ids = {eid for entity, eid in changes if entity == ENTITY_TRANSLATION}
    extras = snapshot._extras

    resellers = dict.fromkeys(reseller_ids)
    for row in _load_rows(session, _RESELLER_COLUMNS, Reseller.id, reseller_ids):
        resellers[row.id] = _reseller_info(row)
    all_resellers = _replaced(extras.resellers, resellers)

    customers: dict[int, CustomerInfo | None] = dict.fromkeys(customer_ids)
    policies: dict[int, CustomerPolicy | None] = dict.fromkeys(customer_ids)
    if customer_ids:
        paths = {rid: info.path for rid, info in all_resellers.items()}
        for row in _load_rows(session, _CUSTOMER_COLUMNS, Customer.id, customer_ids):
            customers[row.id] = _customer_info(row, paths)
            policies[row.id] = _policy(row)
    devices: dict[int, DeviceInfo | None] = dict.fromkeys(device_ids)
    fraud: dict[int, Decimal | None] = dict.fromkeys(device_ids)
    for row in _load_rows(session, _SIP_COLUMNS, SipDevice.id, device_ids):
        devices[row.id] = _device_info(row)
        fraud[row.id] = row.fraud_limit
    ip_devices: dict[int, IpDeviceInfo | None] = dict.fromkeys(ip_ids)
    for row in _load_rows(session, _IP_COLUMNS, IpDevice.id, ip_ids):
        ip_devices[row.id] = _ip_device_info(row)

    dids: dict[int, DidInfo | None] = dict.fromkeys(did_ids)
    for row in _load_rows(session, _DID_COLUMNS, Did.id, did_ids):
        dids[row.id] = _did_info(row)
    did_by_number = extras.did_by_number
    if did_ids:
        did_by_number = dict(did_by_number)
        for did_id in did_ids:  # unindex first: a batch may move a number between rows
            old = extras.dids.get(did_id)
            if old is not None and did_by_number.get(old.number) is old:
                del did_by_number[old.number]
        for info in dids.values():
            if info is not None:
                did_by_number[info.number] = info

    carriers, routes = extras.carriers, extras.routes
    if ENTITY_ROUTING in kinds:
        carriers, routes = _load_routing(session)
    translations = extras.translations
    if translation_ids:
        fresh_rules = _load_translations(session, translation_ids)
        translations = _replaced(translations, {cid: fresh_rules.get(cid) for cid in translation_ids})

    new_extras = Extras(
        policies=_replaced(extras.policies, policies),
        device_fraud_limits=_replaced(extras.device_fraud_limits, fraud),
        resellers=all_resellers,
        dids=_replaced(extras.dids, dids),
        did_by_number=did_by_number,
        carriers=carriers,
        routes=routes,
        translations=translations,
    )
    return snapshot._replace(
        change_id=upto_id, customers=customers, devices=devices, ip_devices=ip_devices, extras=new_extras
    )


class SnapshotWatcher:
    """Holds the current :class:`Snapshot` and keeps it up to date from the change feed.

    It is itself a ``switch.ports.Directory`` (each lookup goes to the current snapshot), so the
    switch can be handed the watcher once.  A caller wanting several answers from one consistent
    state takes ``watcher.snapshot`` once and asks it.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        interval: float = 0.25,
        prune_after: timedelta | None = timedelta(hours=1),
        prune_every: float = 300.0,
    ) -> None:
        self._session_factory = session_factory
        self._interval = interval
        self._prune_after = prune_after
        self._prune_every = prune_every
        self._snapshot = Snapshot.empty()
        self._listeners: tuple[Listener, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ok = 0.0
        self._last_prune = 0.0
        self._failing = False

    # Directory: delegate to the current snapshot (one attribute read, then a dict get).

    def device_by_username(self, username: str) -> DeviceInfo | None:
        return self._snapshot.device_by_username(username)

    def device_by_id(self, device_id: int) -> DeviceInfo | None:
        return self._snapshot.device_by_id(device_id)

    def device_by_extension(self, customer_id: int, extension: str) -> DeviceInfo | None:
        return self._snapshot.device_by_extension(customer_id, extension)

    def ip_device_by_source(self, ip: str, port: int) -> IpDeviceInfo | None:
        return self._snapshot.ip_device_by_source(ip, port)

    def customer(self, customer_id: int) -> CustomerInfo | None:
        return self._snapshot.customer(customer_id)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(changes)`` on the watcher thread after each published update."""
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners = tuple(item for item in self._listeners if item is not listener)

    def start(self) -> SnapshotWatcher:
        """Load the full snapshot (synchronously: the switch must not start blind), then poll."""
        if self._thread is not None:
            return self
        with self._session_factory() as session:
            self._snapshot = load_snapshot(session)
        self._last_ok = self._last_prune = time.monotonic()
        log.info("provisioning snapshot loaded: %s", self._snapshot.counts())
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="snapshot-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> SnapshotWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def poll_once(self) -> list[Change]:
        """One poll (the thread's body; public so tests and tools can drive it by hand)."""
        with self._session_factory() as session:
            current = self._snapshot
            latest = latest_change_id(session)
            now = time.monotonic()
            away = now - self._last_ok
            if latest < current.change_id or (
                self._prune_after is not None and away > self._prune_after.total_seconds() / 2
            ):
                # The feed went backwards (the database was replaced), or we were cut off long
                # enough for pruning to have eaten changes we never saw: reload everything and
                # tell listeners what actually differs.
                fresh = load_snapshot(session)
                self._publish(fresh)
                changes = current.diff(fresh)
            elif latest == current.change_id:
                self._last_ok = now
                self._maybe_prune(session, now)
                return []
            else:
                changes = changes_after(session, after_id=current.change_id, upto_id=latest)
                fresh = apply_changes(session, current, changes, latest)
                self._publish(fresh)
                if {entity for entity, _ in changes} - _INCREMENTAL:
                    changes = list(dict.fromkeys([*changes, *current.diff(fresh)]))
        self._last_ok = now
        self._notify(changes)
        return changes

    def _publish(self, snapshot: Snapshot) -> None:
        # One reference assignment: readers see the old or the new snapshot, never a mix.
        self._snapshot = snapshot

    def _notify(self, changes: list[Change]) -> None:
        if not changes:
            return
        for listener in self._listeners:
            try:
                listener(changes)
            except Exception:
                log.exception("provisioning change listener failed")

    def _maybe_prune(self, session: Session, now: float) -> None:
        if self._prune_after is None or now - self._last_prune < self._prune_every:
            return
        self._last_prune = now
        removed = prune_changes(session, before=utcnow() - self._prune_after)
        session.commit()
        if removed:
            log.debug("pruned %d old provisioning changes", removed)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll_once()
            except Exception:
                # Keep serving the last good snapshot; say so once per outage, not 4 times a second.
                if not self._failing:
                    log.exception("provisioning snapshot refresh failed; serving the last snapshot")
                self._failing = True
            else:
                if self._failing:
                    log.info("provisioning snapshot refresh recovered")
                self._failing = False
