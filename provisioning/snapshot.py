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
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provisioning.db import utcnow
from provisioning.models import (
    ENTITY_CUSTOMER,
    ENTITY_IP_DEVICE,
    ENTITY_SIP_DEVICE,
    Customer,
    IpDevice,
    Reseller,
    SipDevice,
)
from provisioning.repo.changes import changes_after, latest_change_id, prune_changes
from switch.ports import CustomerInfo, DeviceInfo, IpDeviceInfo

log = logging.getLogger(__name__)

Change = tuple[str, int]
# Entities reloaded row by row; any other change (a reseller: many customers' paths) reloads all.
_INCREMENTAL = frozenset({ENTITY_CUSTOMER, ENTITY_SIP_DEVICE, ENTITY_IP_DEVICE})
Listener = Callable[[list[Change]], None]


class Snapshot:
    """An immutable set of lookup tables (switch.ports.Directory)."""

    __slots__ = (
        "_by_ext",
        "_by_id",
        "_by_username",
        "_customers",
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
    ) -> None:
        self._customers = customers
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
        }

    def with_change_id(self, change_id: int) -> Snapshot:
        return self._replace(change_id=change_id, customers={}, devices={}, ip_devices={})

    def diff(self, newer: Snapshot) -> list[tuple[str, int]]:
        """(entity, id) of every row that differs between ``self`` and ``newer``."""
        out: list[tuple[str, int]] = []
        for entity, old, new in (
            (ENTITY_CUSTOMER, self._customers, newer._customers),
            (ENTITY_SIP_DEVICE, self._by_id, newer._by_id),
            (ENTITY_IP_DEVICE, self._ip_by_id, newer._ip_by_id),
        ):
            for key in old.keys() | new.keys():
                if old.get(key) != new.get(key):
                    out.append((entity, key))
        return sorted(out)

    def _replace(
        self,
        *,
        change_id: int,
        customers: dict[int, CustomerInfo | None],
        devices: dict[int, DeviceInfo | None],
        ip_devices: dict[int, IpDeviceInfo | None],
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


_SIP_COLUMNS = [c for c in SipDevice.__table__.c if c.name not in ("created_at", "updated_at")]
_IP_COLUMNS = [c for c in IpDevice.__table__.c if c.name not in ("created_at", "updated_at")]
_CUSTOMER_COLUMNS = [c for c in Customer.__table__.c if c.name not in ("created_at", "updated_at")]


def load_snapshot(session: Session) -> Snapshot:
    """Everything, read after the change watermark so that no change can slip between the two."""
    change_id = latest_change_id(session)
    paths = {rid: path for rid, path in session.execute(select(Reseller.id, Reseller.path))}
    customers = {r.id: _customer_info(r, paths) for r in session.execute(select(*_CUSTOMER_COLUMNS))}
    devices = {r.id: _device_info(r) for r in session.execute(select(*_SIP_COLUMNS))}
    ip_devices = {r.id: _ip_device_info(r) for r in session.execute(select(*_IP_COLUMNS))}
    return Snapshot(customers=customers, devices=devices, ip_devices=ip_devices, change_id=change_id)


def _load_rows(session: Session, columns: Sequence[Any], table_id: Any, ids: Iterable[int]) -> list[Any]:
    wanted = list(ids)
    rows: list[Any] = []
    for start in range(0, len(wanted), 500):  # stay under every backend's parameter limit
        chunk = wanted[start : start + 500]
        rows.extend(session.execute(select(*columns).where(table_id.in_(chunk))))
    return rows


def apply_changes(session: Session, snapshot: Snapshot, changes: Sequence[Change], upto_id: int) -> Snapshot:
    """The next snapshot: ``snapshot`` with the changed entities re-read from the database."""
    kinds = {entity for entity, _ in changes}
    if kinds - _INCREMENTAL:
        # Resellers (paths of many customers) and anything unknown: rare, so reload it all.
        fresh = load_snapshot(session)
        return fresh if fresh.change_id >= upto_id else fresh.with_change_id(upto_id)

    customer_ids = {eid for entity, eid in changes if entity == ENTITY_CUSTOMER}
    device_ids = {eid for entity, eid in changes if entity == ENTITY_SIP_DEVICE}
    ip_ids = {eid for entity, eid in changes if entity == ENTITY_IP_DEVICE}

    customers: dict[int, CustomerInfo | None] = dict.fromkeys(customer_ids)
    if customer_ids:
        rows = _load_rows(session, _CUSTOMER_COLUMNS, Customer.id, customer_ids)
        reseller_ids = {r.reseller_id for r in rows if r.reseller_id is not None}
        paths = {
            rid: path
            for rid, path in session.execute(select(Reseller.id, Reseller.path).where(Reseller.id.in_(reseller_ids)))
        }
        for row in rows:
            customers[row.id] = _customer_info(row, paths)
    devices: dict[int, DeviceInfo | None] = dict.fromkeys(device_ids)
    for row in _load_rows(session, _SIP_COLUMNS, SipDevice.id, device_ids):
        devices[row.id] = _device_info(row)
    ip_devices: dict[int, IpDeviceInfo | None] = dict.fromkeys(ip_ids)
    for row in _load_rows(session, _IP_COLUMNS, IpDevice.id, ip_ids):
        ip_devices[row.id] = _ip_device_info(row)
    return snapshot._replace(change_id=upto_id, customers=customers, devices=devices, ip_devices=ip_devices)


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
