"""The CDR writer: batched, idempotent by call id, flushed on close."""

from __future__ import annotations

import dataclasses
import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cdr.schema import CDR_COLUMNS, CdrRecord
from cdr.sink import CdrSink
from provisioning.cdr_writer import DbCdrWriter
from provisioning.models import cdrs

SF = sessionmaker[Session]


def _cdr(call_id: str, **kw: object) -> CdrRecord:
    values: dict[str, object] = {
        "call_id": call_id,
        "sip_call_id": f"sip-{call_id}",
        "customer_id": 1,
        "caller_device_id": 2,
        "callee_device_id": 3,
        "caller_number": "100",
        "dialled_number": "101",
        "start_ms": 1_700_000_000_000,
        "answer_ms": 1_700_000_002_000,
        "end_ms": 1_700_000_062_000,
        "duration_ms": 60_000,
        "sip_code": 200,
        "q850_cause": 16,
        "disposition": "ANSWERED",
        "direction": "internal",
        "call_type": "extension",
        "source_ip": "192.0.2.10",
        "hangup_by": "caller",
    }
    values.update(kw)
    return CdrRecord(**values)  # type: ignore[arg-type]


def _count(sf: SF) -> int:
    with sf() as s:
        return int(s.scalar(select(func.count()).select_from(cdrs)) or 0)


def test_batches_are_idempotent_by_call_id(migrated_db: SF) -> None:
    writer = DbCdrWriter(migrated_db, autostart=False)
    sink: CdrSink = writer
    first = _cdr("a@x", answer_ms=None, duration_ms=0, sip_code=486, disposition="BUSY")
    sink.emit(first)
    sink.emit(_cdr("b@x"))
    sink.emit(_cdr("a@x", sip_code=999))  # a replay: the first one stays
    assert writer.flush() == 3
    writer.emit(_cdr("a@x"))
    writer.emit(_cdr("b@x"))
    writer.close()
    assert _count(migrated_db) == 2
    with migrated_db() as s:
        row = s.execute(select(*(cdrs.c[n] for n in CDR_COLUMNS)).where(cdrs.c.call_id == "a@x")).one()
    assert CdrRecord(*row) == first


def test_background_thread_writes_and_close_flushes(migrated_db: SF) -> None:
    writer = DbCdrWriter(migrated_db)
    try:
        for i in range(50):
            writer.emit(_cdr(f"bg-{i}"))
        deadline = time.monotonic() + 2
        while _count(migrated_db) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _count(migrated_db) == 50
        writer.emit(_cdr("last"))
    finally:
        writer.close()
    assert _count(migrated_db) == 51 and writer.backlog == 0


def test_large_batches_are_split(migrated_db: SF) -> None:
    writer = DbCdrWriter(migrated_db, autostart=False, max_batch=100)
    for i in range(1050):
        writer.emit(_cdr(f"n-{i}", start_ms=1_700_000_000_000 + i))
    assert writer.flush() == 1050
    assert _count(migrated_db) == 1050


def test_a_bad_record_is_dropped_not_blocking(migrated_db: SF) -> None:
    writer = DbCdrWriter(migrated_db, autostart=False)
    writer.emit(dataclasses.replace(_cdr("bad"), disposition=None))  # type: ignore[arg-type]
    writer.emit(_cdr("good"))
    writer.flush()
    assert _count(migrated_db) == 1 and writer.backlog == 0
