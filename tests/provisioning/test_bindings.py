"""The registrations write-behind store: round trip, coalescing, ordering, robustness."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from provisioning import repo
from provisioning.bindings import DbBindingStore
from provisioning.models import Registration
from provisioning.scope import PROVIDER
from switch.registrar.location import Binding, BindingSink, BindingSource

SF = sessionmaker[Session]
FUTURE = time.time() + 3600


def _binding(device_id: int, contact: str = "sip:alice@192.0.2.10:5060", **kw: object) -> Binding:
    values: dict[str, object] = {
        "aor": "alice",
        "device_id": device_id,
        "contact": contact,
        "expires_at": FUTURE,
        "call_id": "reg-1@192.0.2.10",
        "cseq": 1,
        "source_ip": "203.0.113.5",
        "source_port": 40123,
        "transport": "tcp",
        "local_port": 6060,
        "q": 0.5,
        "user_agent": "Phone/1.0",
        "conn_id": 17,
        "params": '+sip.instance="<urn:uuid:1>"',
    }
    values.update(kw)
    return Binding(**values)  # type: ignore[arg-type]


@pytest.fixture
def device_ids(migrated_db: SF) -> tuple[int, int]:
    with migrated_db() as s:
        c = repo.create_customer(s, scope=PROVIDER, name="Acme")
        s.flush()
        a = repo.create_sip_device(
            s, scope=PROVIDER, customer_id=c.id, default_realm="t", username="alice", password="12345678"
        )
        b = repo.create_sip_device(
            s, scope=PROVIDER, customer_id=c.id, default_realm="t", username="bob", password="12345678"
        )
        s.commit()
        return a.id, b.id


@pytest.fixture
def store(migrated_db: SF) -> Iterator[DbBindingStore]:
    st = DbBindingStore(migrated_db, autostart=False)  # flushed by hand unless a test starts it
    yield st
    st.close()


def _rows(sf: SF) -> list[Registration]:
    with sf() as s:
        return list(s.scalars(select(Registration).order_by(Registration.aor, Registration.contact)))


def test_protocols(store: DbBindingStore) -> None:
    sink: BindingSink = store
    source: BindingSource = store
    assert sink and source


def test_round_trip(store: DbBindingStore, device_ids: tuple[int, int]) -> None:
    alice, bob = device_ids
    b1 = _binding(alice)
    b2 = _binding(bob, aor="bob", contact="sip:bob@[2001:db8::5]:5062;transport=tcp", q=None, conn_id=None)
    store.saved(b1)
    store.saved(b2)
    assert store.flush() == 2
    loaded = store.load_bindings()
    # conn_id does not survive: after a restart that number may name another connection.
    assert loaded == [dataclasses.replace(b1, conn_id=None), b2]


def test_coalescing_keeps_the_last_operation(
    store: DbBindingStore, migrated_db: SF, device_ids: tuple[int, int]
) -> None:
    alice, _ = device_ids
    for cseq in (1, 2, 3):
        store.saved(_binding(alice, cseq=cseq))
    store.saved(_binding(alice, contact="sip:gone@192.0.2.1"))
    store.removed("alice", "sip:gone@192.0.2.1")
    store.removed("alice", "sip:back@192.0.2.1")
    store.saved(_binding(alice, contact="sip:back@192.0.2.1", cseq=9))
    assert store.flush() == 3  # 2 upserts + 1 delete, from 7 operations
    rows = _rows(migrated_db)
    assert [(r.contact, r.cseq) for r in rows] == [("sip:alice@192.0.2.10:5060", 3), ("sip:back@192.0.2.1", 9)]
    # A later refresh updates the row in place (upsert), not a second row.
    store.saved(_binding(alice, cseq=4, expires_at=FUTURE + 60))
    store.flush()
    rows = _rows(migrated_db)
    assert len(rows) == 2 and rows[0].cseq == 4 and rows[0].expires_at == FUTURE + 60


def test_remove_device_is_ordered_with_saves(
    store: DbBindingStore, migrated_db: SF, device_ids: tuple[int, int]
) -> None:
    alice, bob = device_ids
    store.saved(_binding(alice, contact="sip:old@192.0.2.1"))
    store.saved(_binding(bob, aor="bob", contact="sip:bob@192.0.2.2"))
    store.flush()
    store.saved(_binding(alice, contact="sip:pending@192.0.2.1"))
    store.remove_device(alice)
    store.saved(_binding(alice, contact="sip:new@192.0.2.1"))
    store.flush()
    assert [r.contact for r in _rows(migrated_db)] == ["sip:new@192.0.2.1", "sip:bob@192.0.2.2"]


def test_load_skips_expired_and_deleted_devices(
    store: DbBindingStore, migrated_db: SF, device_ids: tuple[int, int]
) -> None:
    alice, bob = device_ids
    store.saved(_binding(alice, expires_at=time.time() - 1))
    store.saved(_binding(bob, aor="bob", contact="sip:bob@192.0.2.2"))
    store.saved(_binding(999_999, aor="ghost", contact="sip:ghost@192.0.2.3"))
    store.flush()
    assert [b.aor for b in store.load_bindings()] == ["bob"]


def test_background_thread_and_close(migrated_db: SF, device_ids: tuple[int, int]) -> None:
    alice, _ = device_ids
    store = DbBindingStore(migrated_db)  # autostarted
    try:
        store.saved(_binding(alice))
        deadline = time.monotonic() + 2
        while not _rows(migrated_db) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(_rows(migrated_db)) == 1
        store.saved(_binding(alice, contact="sip:last@192.0.2.1"))
    finally:
        store.close()  # flushes what is left
    assert len(_rows(migrated_db)) == 2 and store.backlog == 0


def test_a_malformed_binding_does_not_block_the_others(
    store: DbBindingStore, migrated_db: SF, device_ids: tuple[int, int]
) -> None:
    alice, _ = device_ids
    store.saved(_binding(alice, call_id=None))  # NOT NULL violation
    store.saved(_binding(alice, contact="sip:fine@192.0.2.1"))
    store.flush()
    assert [r.contact for r in _rows(migrated_db)] == ["sip:fine@192.0.2.1"]
    assert store.backlog == 0


def test_enqueue_is_cheap(store: DbBindingStore) -> None:
    binding = _binding(1)
    rounds = []
    # The best of many short rounds: a busy machine may preempt any one of them for milliseconds.
    for _ in range(30):
        start = time.perf_counter()
        for _ in range(1000):
            store.saved(binding)
        rounds.append((time.perf_counter() - start) / 1000)
    best = min(rounds)
    assert best < 10e-6, f"saved() costs {best * 1e6:.1f} us"
    store._ops.clear()  # not written: device 1 may not exist


def test_purge_of_long_expired_rows(migrated_db: SF, device_ids: tuple[int, int]) -> None:
    alice, _ = device_ids
    store = DbBindingStore(migrated_db, autostart=False, purge_grace=0)
    try:
        store.saved(_binding(alice, expires_at=time.time() - 10))
        store.flush()
        store._purge_expired()
        with migrated_db() as s:
            assert s.scalar(select(func.count()).select_from(Registration)) == 0
    finally:
        store.close()
