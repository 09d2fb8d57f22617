"""The switch's snapshot: pure lookups, and the watcher applying changes within a second."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from provisioning import repo
from provisioning.scope import PROVIDER
from provisioning.snapshot import Snapshot, SnapshotWatcher, load_snapshot
from switch.ports import Directory
from tests.waiting import wait_for

SF = sessionmaker[Session]
DEADLINE = 1.0  # the promise: API writes reach the switch within one second


def _wait_for(predicate: Callable[[], bool], timeout: float = DEADLINE) -> float:
    took = wait_for(predicate, timeout)
    if took is None:
        raise AssertionError(f"not true within {timeout} s")
    return took


@pytest.fixture
def watcher(migrated_db: SF) -> Iterator[SnapshotWatcher]:
    w = SnapshotWatcher(migrated_db)  # the production interval, 0.25 s
    w.start()
    yield w
    w.stop()


def _setup(sf: SF) -> tuple[int, int]:
    with sf() as s:
        c = repo.create_customer(s, scope=PROVIDER, name="Acme", max_sessions=3)
        s.flush()
        d = repo.create_sip_device(
            s,
            scope=PROVIDER,
            customer_id=c.id,
            default_realm="trunkline",
            username="alice",
            password="secret-pass",
            extension="100",
            allowed_ips=["192.0.2.0/24"],
        )
        repo.create_ip_device(s, scope=PROVIDER, customer_id=c.id, ip="198.51.100.7", port=5060, tech_prefix="99")
        repo.create_ip_device(s, scope=PROVIDER, customer_id=c.id, ip="198.51.100.7")
        s.commit()
        return c.id, d.id


def test_snapshot_lookups(migrated_db: SF) -> None:
    cid, did = _setup(migrated_db)
    with migrated_db() as s:
        snap = load_snapshot(s)
    directory: Directory = snap  # satisfies the switch's port
    dev = directory.device_by_username("alice")
    assert dev is not None and dev.id == did and dev.realm == "trunkline" and dev.active
    assert dev.allowed_ips == ("192.0.2.0/24",)
    assert directory.device_by_id(did) is dev
    assert directory.device_by_extension(cid, "100") is dev
    assert directory.device_by_extension(cid + 1, "100") is None
    exact = directory.ip_device_by_source("198.51.100.7", 5060)
    assert exact is not None and exact.port == 5060 and exact.tech_prefix == "99"
    anyport = directory.ip_device_by_source("198.51.100.7", 40000)
    assert anyport is not None and anyport.port is None
    assert directory.ip_device_by_source("198.51.100.8", 5060) is None
    customer = directory.customer(cid)
    assert customer is not None and customer.may_call and customer.max_sessions == 3
    assert snap.devices_of_customer(cid) == [dev]


def test_watcher_sees_new_and_deleted_devices_within_a_second(migrated_db: SF, watcher: SnapshotWatcher) -> None:
    seen: list[list[tuple[str, int]]] = []
    watcher.add_listener(seen.append)
    cid, did = _setup(migrated_db)
    _wait_for(lambda: watcher.device_by_username("alice") is not None)
    assert watcher.customer(cid) is not None
    # Listeners run just after the new snapshot is published, on the watcher thread.
    _wait_for(lambda: any(("sip_device", did) in batch for batch in seen))

    before = watcher.snapshot
    with migrated_db() as s:
        repo.delete_sip_device(s, scope=PROVIDER, customer_id=cid, device_id=did)
        s.commit()
    _wait_for(lambda: watcher.device_by_username("alice") is None)
    assert watcher.device_by_id(did) is None and watcher.device_by_extension(cid, "100") is None
    # The old snapshot was never modified: a reader holding it saw a consistent state.
    assert before.device_by_username("alice") is not None


def test_watcher_sees_inactive_devices_and_stopped_customers(migrated_db: SF, watcher: SnapshotWatcher) -> None:
    cid, did = _setup(migrated_db)
    _wait_for(lambda: watcher.device_by_id(did) is not None)
    with migrated_db() as s:
        repo.update_sip_device(
            s,
            scope=PROVIDER,
            customer_id=cid,
            device_id=did,
            default_realm="trunkline",
            changes={"status": "inactive"},
        )
        repo.change_status(s, scope=PROVIDER, customer_id=cid, operation="stop", reason="unpaid")
        s.commit()

    def applied() -> bool:
        dev, cust = watcher.device_by_id(did), watcher.customer(cid)
        return dev is not None and not dev.active and cust is not None and not cust.may_call

    _wait_for(applied)


def test_username_and_extension_moving_between_devices_in_one_batch(migrated_db: SF) -> None:
    cid, did = _setup(migrated_db)
    w = SnapshotWatcher(migrated_db, interval=3600)  # driven by hand
    w.start()
    try:
        with migrated_db() as s:
            repo.update_sip_device(
                s,
                scope=PROVIDER,
                customer_id=cid,
                device_id=did,
                default_realm="trunkline",
                changes={"username": "old-alice", "password": "another-pass", "extension": "101"},
            )
            new = repo.create_sip_device(
                s,
                scope=PROVIDER,
                customer_id=cid,
                default_realm="trunkline",
                username="alice",
                password="secret-pass",
                extension="100",
            )
            s.commit()
        changes = w.poll_once()
        assert set(changes) == {("sip_device", did), ("sip_device", new.id)}
        alice, old = w.device_by_username("alice"), w.device_by_username("old-alice")
        assert alice is not None and alice.id == new.id
        assert old is not None and old.id == did
        assert w.device_by_extension(cid, "100") is alice and w.device_by_extension(cid, "101") is old
        assert w.poll_once() == []
    finally:
        w.stop()


def test_reseller_change_reloads_paths(migrated_db: SF) -> None:
    with migrated_db() as s:
        r = repo.create_reseller(s, scope=PROVIDER, name="R")
        c = repo.create_customer(s, scope=PROVIDER, name="C", reseller_id=r.id)
        s.commit()
        cid, path = c.id, r.path
    w = SnapshotWatcher(migrated_db, interval=3600)
    w.start()
    try:
        info = w.customer(cid)
        assert info is not None and info.reseller_path == path
        with migrated_db() as s:
            repo.create_reseller(s, scope=PROVIDER, name="R2", parent_id=None)
            s.commit()
        assert w.poll_once()[0][0] == "reseller"
        assert w.customer(cid) == info
    finally:
        w.stop()


def test_listener_errors_do_not_stop_the_watcher(migrated_db: SF, watcher: SnapshotWatcher) -> None:
    calls: list[str] = []

    def bad(_changes: list[tuple[str, int]]) -> None:
        calls.append(threading.current_thread().name)
        raise RuntimeError("boom")

    watcher.add_listener(bad)
    _setup(migrated_db)
    _wait_for(lambda: watcher.device_by_username("alice") is not None)
    _wait_for(lambda: bool(calls))
    assert calls[0] == "snapshot-watcher"  # listeners run on the watcher thread, not the caller's
    with migrated_db() as s:
        repo.create_customer(s, scope=PROVIDER, name="Later")
        s.commit()
    _wait_for(lambda: len(calls) >= 2)


def test_empty_snapshot() -> None:
    snap = Snapshot.empty()
    assert snap.device_by_username("x") is None and snap.customer(1) is None
    assert snap.ip_device_by_source("192.0.2.1", 5060) is None
