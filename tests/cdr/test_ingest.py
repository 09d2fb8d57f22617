"""The billing sidecar's ingestion: spool -> ``cdrs``, idempotent, positions, quarantine, retries
(SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cdr.schema import CDR_COLUMNS, CdrRecord, polars_schema
from cdr.spool import (
    ARCHIVE_DIR,
    POSITION_FILE,
    REJECTED_FILE,
    SpoolWriter,
    list_segments,
    load_position,
    read_rejected,
)
from provisioning.db import engine_of, make_engine, make_session_factory
from provisioning.migrate import upgrade
from provisioning.models import cdrs
from tests.cdr.records import cdr
from tests.waiting import wait_for
from trunkline.billing import CdrIngestor, records_frame, run_billing
from trunkline.config import load_settings

SF = sessionmaker[Session]


def stored(sf: SF) -> list[dict[str, Any]]:
    with sf() as s:
        return [dict(r._mapping) for r in s.execute(select(cdrs).order_by(cdrs.c.id))]


def count(sf: SF) -> int:
    with sf() as s:
        return int(s.scalar(select(func.count()).select_from(cdrs)) or 0)


def test_ingests_in_batches_saves_position_and_deletes_consumed_segments(migrated_db: SF, tmp_path: Path) -> None:
    records = [cdr(i) for i in range(120)] + [cdr(120, caller_number="＋44 ☎", answer_ms=None, carrier_id=None)]
    w = SpoolWriter(tmp_path, segment_bytes=4096)
    for r in records:
        w.emit(r)
    ing = CdrIngestor(migrated_db, tmp_path, max_batch=50)
    assert [ing.step(), ing.step(), ing.step(), ing.step()] == [50, 50, 21, 0]
    rows = stored(migrated_db)
    assert [{c: row[c] for c in CDR_COLUMNS} for row in rows] == [r.as_dict() for r in records]
    assert load_position(tmp_path / POSITION_FILE) == ing.saved
    # Only the segment being written is left (the others were read to the end and closed).
    assert [name for _seq, name in list_segments(tmp_path)] == [w.segment.name]
    w.close()
    assert ing.committed == 121 and ing.duplicates == 0


def test_archive_instead_of_delete(migrated_db: SF, tmp_path: Path) -> None:
    w = SpoolWriter(tmp_path, segment_bytes=4096)
    for i in range(60):
        w.emit(cdr(i))
    w.close()
    SpoolWriter(tmp_path).close()  # a restart: the previous segments are now all closed
    ing = CdrIngestor(migrated_db, tmp_path, archive=True)
    assert ing.step() == 60
    archived = list_segments(tmp_path / ARCHIVE_DIR)
    assert len(archived) >= 2 and len(list_segments(tmp_path)) == 1


def test_replay_after_a_crash_before_the_position_was_saved_stores_nothing_twice(
        migrated_db: SF, tmp_path: Path) -> None:
    w = SpoolWriter(tmp_path)
    for i in range(30):
        w.emit(cdr(i))
    ing = CdrIngestor(migrated_db, tmp_path)
    assert ing.step() == 30
    ing.close()
    # The crash: the batch was committed but the position file still says "from the start".
    (tmp_path / POSITION_FILE).unlink()
    for i in range(30, 35):
        w.emit(cdr(i))
    again = CdrIngestor(migrated_db, tmp_path)
    assert again.step() == 35
    assert again.committed == 35 and count(migrated_db) == 35
    if engine_of(migrated_db).dialect.name == "sqlite":  # psycopg reports no executemany counts
        assert (again.inserted, again.duplicates) == (5, 30)
    # With a hook the counts are exact everywhere (RETURNING).
    (tmp_path / POSITION_FILE).unlink()
    third = CdrIngestor(migrated_db, tmp_path, on_batch=lambda _session, _batch: None)
    assert third.step() == 35 and (third.inserted, third.duplicates) == (0, 35)
    w.close()


def test_hook_sees_only_new_records_inside_the_transaction(migrated_db: SF, tmp_path: Path) -> None:
    calls: list[list[str]] = []
    fail = [True]

    def hook(session: Session, batch: list[CdrRecord]) -> None:
        # Inside the transaction: the rows just inserted are visible to it.
        n = session.scalar(select(func.count()).select_from(cdrs))
        assert n is not None and n >= len(batch)
        if fail[0]:
            fail[0] = False
            raise RuntimeError("rating is not ready")
        calls.append([r.call_id for r in batch])
        frame = records_frame(batch)
        assert frame.schema == pl.Schema(polars_schema()) and frame.height == len(batch)

    w = SpoolWriter(tmp_path)
    for i in range(3):
        w.emit(cdr(i))
    w.emit(cdr(0, sip_code=500))  # the same call id again: stored once, rated once
    ing = CdrIngestor(migrated_db, tmp_path, on_batch=hook)
    with pytest.raises(Exception, match="rating is not ready"):
        ing.step()
    assert count(migrated_db) == 0 and load_position(tmp_path / POSITION_FILE) is None  # rolled back
    assert ing.step() == 4  # the same batch, retried
    assert calls == [["call-0@test", "call-1@test", "call-2@test"]]
    assert [r["sip_code"] for r in stored(migrated_db)] == [200, 200, 200]
    (tmp_path / POSITION_FILE).unlink()
    replay = CdrIngestor(migrated_db, tmp_path, on_batch=hook)
    replay.step()
    assert len(calls) == 1  # nothing new: the hook is not called for a replay
    w.close()


def test_calls_reusing_a_sip_call_id_are_all_stored_and_replays_still_once(migrated_db: SF, tmp_path: Path) -> None:
    """Keyed by the switch's attempt id, not the caller's Call-ID: every attempt is stored even
    when the caller reuses one Call-ID; a replayed batch (same spool entries) is stored once."""
    w = SpoolWriter(tmp_path)
    batch = [cdr(i, sip_call_id="reused@192.0.2.66") for i in range(4)]
    for r in batch:
        w.emit(r)
    seen: list[list[str]] = []
    ing = CdrIngestor(migrated_db, tmp_path, on_batch=lambda _s, b: seen.append([r.call_id for r in b]))
    assert ing.step() == 4
    rows = stored(migrated_db)
    assert [(r["call_id"], r["sip_call_id"]) for r in rows] == [(f"call-{i}@test", "reused@192.0.2.66")
                                                                for i in range(4)]
    (tmp_path / POSITION_FILE).unlink()  # a crash before the position was saved
    again = CdrIngestor(migrated_db, tmp_path, on_batch=lambda _s, b: seen.append([r.call_id for r in b]))
    assert again.step() == 4 and (again.inserted, again.duplicates) == (0, 4)
    assert count(migrated_db) == 4 and seen == [[f"call-{i}@test" for i in range(4)]]
    w.close()


def test_a_spool_segment_from_before_the_upgrade_is_ingested(migrated_db: SF, tmp_path: Path) -> None:
    """CDRs still in the spool at the upgrade (no sip_call_id column, keyed by the caller's
    Call-ID) are stored with sip_call_id = call_id; one stored before the upgrade is not doubled."""
    import json
    import zlib

    from cdr.spool import segment_name

    def frame(payload: object) -> bytes:
        data = json.dumps(payload).encode()
        return b"%08x %s\n" % (zlib.crc32(data), data)

    old_columns = [c for c in CDR_COLUMNS if c != "sip_call_id"]
    old = [cdr(i, call_id=f"old-{i}@192.0.2.10", sip_call_id=f"old-{i}@192.0.2.10") for i in range(3)]
    with migrated_db() as s:  # stored before the upgrade, the position not yet saved
        s.execute(cdrs.insert(), [old[0].as_dict()])
        s.commit()
    (tmp_path / segment_name(1)).write_bytes(
        frame({"format": "trunkline-cdr-spool", "version": 1, "columns": old_columns})
        + b"".join(frame([getattr(r, c) for c in old_columns]) for r in old))
    ing = CdrIngestor(migrated_db, tmp_path)
    assert ing.step() == 3 and ing.quarantined == 0
    assert [(r["call_id"], r["sip_call_id"]) for r in stored(migrated_db)] == [(r.call_id, r.sip_call_id) for r in old]


def test_records_the_database_refuses_are_quarantined(migrated_db: SF, tmp_path: Path) -> None:
    w = SpoolWriter(tmp_path)
    w.emit(cdr(1))
    w.emit(cdr(2, caller_number="bad \ud800 surrogate"))  # no database can store a lone surrogate
    w.emit(cdr(3))
    ing = CdrIngestor(migrated_db, tmp_path)
    assert ing.step() == 3
    assert [r["call_id"] for r in stored(migrated_db)] == ["call-1@test", "call-3@test"]
    (item,) = read_rejected(tmp_path / REJECTED_FILE)
    assert item["reason"].startswith("refused by the database") and b"call-2@test" in item["raw"]
    assert ing.quarantined == 1 and ing.saved is not None
    w.close()


def test_a_failed_read_goes_back_to_the_saved_position(migrated_db: SF, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """If reading fails midway (say the rejected file cannot be written), the records read
    before the failure are read again, not skipped."""
    w = SpoolWriter(tmp_path)
    for i in range(3):
        w.emit(cdr(i))
    with open(w.segment, "ab") as f:
        f.write(b"deadbeef [1]\n")  # a corrupt line: the reader will quarantine it
    w.emit(cdr(3))
    ing = CdrIngestor(migrated_db, tmp_path)
    real = ing.reader._reject

    def disk_full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ing.reader, "_reject", disk_full)
    with pytest.raises(OSError):
        ing.step()
    assert count(migrated_db) == 0
    monkeypatch.setattr(ing.reader, "_reject", real)
    assert ing.step() == 4
    assert [r["call_id"] for r in stored(migrated_db)] == [f"call-{i}@test" for i in range(4)]
    assert len(read_rejected(tmp_path / REJECTED_FILE)) == 1
    w.close()


def test_a_database_not_ready_keeps_the_position_and_recovers(db_url: str, tmp_path: Path) -> None:
    sf = make_session_factory(make_engine(db_url))
    spool = tmp_path / "spool"
    w = SpoolWriter(spool)
    for i in range(5):
        w.emit(cdr(i))
    ing = CdrIngestor(sf, spool)
    with pytest.raises(Exception):  # noqa: B017 -- no cdrs table yet: whatever the driver says
        ing.step()
    assert load_position(spool / POSITION_FILE) is None
    assert not (spool / REJECTED_FILE).exists()  # never quarantined for a database problem
    upgrade(db_url)
    assert ing.step() == 5 and count(sf) == 5
    w.close()
    sf.kw["bind"].dispose()


def test_run_stores_within_a_second_and_drains_on_stop(migrated_db: SF, tmp_path: Path) -> None:
    w = SpoolWriter(tmp_path)
    ing = CdrIngestor(migrated_db, tmp_path, batch_interval=0.05)
    stop = threading.Event()
    t = threading.Thread(target=ing.run, args=(stop,))
    t.start()
    try:
        w.emit(cdr(1))
        took = wait_for(lambda: count(migrated_db) >= 1, 5)
        assert count(migrated_db) == 1 and took is not None and took < 1.0
        for i in range(2, 200):
            w.emit(cdr(i))
    finally:
        stop.set()
        t.join(30)
    assert count(migrated_db) == 199  # drained before returning
    w.close()


def test_run_billing_takes_the_consumer_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trunkline.billing")
    monkeypatch.setenv("TRUNKLINE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("TRUNKLINE_BILLING_BATCH_INTERVAL", "0.05")
    settings = load_settings()
    upgrade(settings.database_url)
    w = SpoolWriter(settings.spool_dir)
    w.emit(cdr(1))
    stop1, stop2 = threading.Event(), threading.Event()
    first = threading.Thread(target=run_billing, args=(settings,), kwargs={"stop": stop1})
    first.start()
    sf = make_session_factory(make_engine(settings.database_url))
    wait_for(lambda: count(sf) >= 1, 10)
    assert count(sf) == 1
    # A second consumer (e.g. a standalone `trunkline billing` next to `trunkline run`) waits.
    second = threading.Thread(target=run_billing, args=(settings,), kwargs={"stop": stop2})
    second.start()
    wait_for(lambda: "another billing sidecar consumes" in caplog.text, 10)  # it is waiting for the lock
    stop1.set()
    first.join(10)
    w.emit(cdr(2))
    wait_for(lambda: count(sf) >= 2, 10)
    assert count(sf) == 2  # the second took over once the first let go
    stop2.set()
    second.join(10)
    w.close()
    sf.kw["bind"].dispose()


def test_billing_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"TRUNKLINE_VAR_DIR": str(tmp_path), "TRUNKLINE_BILLING_ENABLED": "false",
           "TRUNKLINE_BILLING_FSYNC_INTERVAL": "0.05", "TRUNKLINE_BILLING_ARCHIVE": "true",
           "TRUNKLINE_BILLING_BATCH_INTERVAL": "0.5", "TRUNKLINE_BILLING_MAX_BATCH": "100"}
    s = load_settings(environ=env)
    b = s.billing
    assert (b.enabled, b.fsync_interval, b.archive, b.batch_interval, b.max_batch) == (False, 0.05, True, 0.5, 100)
    assert s.spool_dir == tmp_path / "spool"  # follows var_dir unless set
    s2 = load_settings(environ={"TRUNKLINE_BILLING_SPOOL_DIR": "/srv/spool"})
    assert s2.spool_dir == Path("/srv/spool") and s2.billing.enabled
