"""The CDR spool: format, rotation, torn tails, corrupt lines, positions, concurrency, SIGKILL."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdr import spool
from cdr.schema import CDR_COLUMNS, CDR_TYPES, CdrRecord
from cdr.sink import CdrSink
from cdr.spool import (
    ARCHIVE_DIR,
    POSITION_FILE,
    REJECTED_FILE,
    CorruptLine,
    SpoolLocked,
    SpoolPosition,
    SpoolReader,
    SpoolWriter,
    decode_record,
    encode_record,
    list_segments,
    load_position,
    read_rejected,
    remove_consumed,
    save_position,
    segment_name,
)
from tests.cdr.records import cdr
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def write(directory: Path, records: list[CdrRecord], **kw: object) -> SpoolWriter:
    w = SpoolWriter(directory, **kw)  # type: ignore[arg-type]
    for r in records:
        w.emit(r)
    return w


def read_all(reader: SpoolReader) -> list[CdrRecord]:
    return [e.record for e in reader.entries()]


def segments(directory: Path) -> list[Path]:
    return [directory / name for _seq, name in list_segments(directory)]


def frame(payload: bytes) -> bytes:
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


# -- round trip and format --------------------------------------------------------------------

def test_round_trip_and_line_format(tmp_path: Path) -> None:
    records = [cdr(i) for i in range(100)] + [cdr(100, answer_ms=None, duration_ms=0, sip_code=486,
                                                   disposition="BUSY", caller_number="＋44 ☎ 555", did="é")]
    w = write(tmp_path, records)
    sink: CdrSink = w  # the switch's port
    assert sink is w and w.emitted == 101
    w.close()
    assert w.synced == 101
    (seg,) = segments(tmp_path)
    lines = seg.read_bytes().splitlines(keepends=True)
    assert len(lines) == 102
    header = json.loads(lines[0][9:])
    assert header["format"] == "trunkline-cdr-spool" and header["version"] == 1
    assert header["columns"] == list(CDR_COLUMNS) and header["pid"] == os.getpid()
    for line in lines:
        assert line.isascii() and line.endswith(b"\n") and line.count(b"\n") == 1
        assert int(line[:8], 16) == zlib.crc32(line[9:-1])
    assert lines[1] == encode_record(records[0])
    assert json.loads(lines[1][9:])[:4] == ["call-0@test", "sip-0@192.0.2.10", 7, 11]

    with SpoolReader(tmp_path) as reader:
        entries = list(reader.entries())
    assert [e.record for e in entries] == records
    data = seg.read_bytes()
    for e in entries:
        assert e.segment == seg.name
        assert decode_record(data[e.offset:e.end]) == e.record
    assert reader.position == SpoolPosition(seg.name, len(data))
    assert reader.rejected == 0 and reader.torn == 0


def test_reader_sees_records_before_any_fsync_and_waits_at_the_tail(tmp_path: Path) -> None:
    w = write(tmp_path, [cdr(i) for i in range(5)], fsync_interval=3600)  # no sync in this test's life
    reader = SpoolReader(tmp_path)
    assert [r.call_id for r in read_all(reader)] == [f"call-{i}@test" for i in range(5)]
    assert w.synced == 0  # read from the page cache: that is what survives a SIGKILL
    assert read_all(reader) == []  # the live tail: nothing new, nothing repeated
    w.emit(cdr(5))
    assert [r.call_id for r in read_all(reader)] == ["call-5@test"]
    w.close()
    assert w.synced == 6


def test_fsync_batches_and_synchronous_mode(tmp_path: Path) -> None:
    w = write(tmp_path / "a", [cdr(i) for i in range(50)], fsync_interval=0.01)
    wait_for(lambda: w.synced >= 50, 5)
    assert w.synced == w.emitted == 50
    w.close()
    w0 = SpoolWriter(tmp_path / "b", fsync_interval=0)  # durable when emit returns
    w0.emit(cdr(1))
    assert w0.synced == 1
    w0.flush()
    w0.close()


def test_one_writer_per_directory_and_emit_after_close(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    w = SpoolWriter(tmp_path)
    with pytest.raises(SpoolLocked):
        SpoolWriter(tmp_path)
    w.close()
    w.close()  # idempotent
    with caplog.at_level(logging.ERROR, logger="cdr.spool"):
        w.emit(cdr(1))  # too late to write: the whole line goes to the log instead
    assert "after the spool was closed" in caplog.text and encode_record(cdr(1)).decode().strip() in caplog.text
    SpoolWriter(tmp_path).close()  # the lock was released


# -- rotation and numbering -------------------------------------------------------------------

def test_rotation_by_size_and_on_every_start(tmp_path: Path) -> None:
    w = write(tmp_path, [cdr(i) for i in range(100)], segment_bytes=4096)
    w.close()
    first = segments(tmp_path)
    assert len(first) >= 4
    assert all(p.stat().st_size < 4096 + 600 for p in first)
    w2 = write(tmp_path, [cdr(100)])
    assert w2.segment.name == segment_name(len(first) + 1)  # a new segment, never an old one
    w2.close()
    reader = SpoolReader(tmp_path)
    assert [r.call_id for r in read_all(reader)] == [f"call-{i}@test" for i in range(101)]
    assert reader.position is not None and reader.position.segment == w2.segment.name
    assert reader.consumed_segments() == first


def test_segment_numbers_are_never_reused(tmp_path: Path) -> None:
    write(tmp_path, [cdr(1)], segment_bytes=4096).close()
    write(tmp_path, [cdr(2)]).close()
    reader = SpoolReader(tmp_path)
    read_all(reader)
    assert reader.position is not None
    save_position(tmp_path / POSITION_FILE, reader.position)
    assert remove_consumed(tmp_path, reader.position, archive=True) == [segment_name(1)]
    assert (tmp_path / ARCHIVE_DIR / segment_name(1)).exists()
    # An operator wipes every segment, archive included; the saved position still names #2.
    for p in [*segments(tmp_path), *segments(tmp_path / ARCHIVE_DIR)]:
        p.unlink()
    w = write(tmp_path, [cdr(3)])
    assert w.segment.name == segment_name(3)
    w.close()
    resumed = SpoolReader(tmp_path, load_position(tmp_path / POSITION_FILE))
    assert [r.call_id for r in read_all(resumed)] == ["call-3@test"]


# -- torn tails -------------------------------------------------------------------------------

def test_incomplete_tail_of_the_live_segment_is_waited_for(tmp_path: Path) -> None:
    w = write(tmp_path, [cdr(1)], fsync_interval=3600)
    line = encode_record(cdr(2))
    with open(w.segment, "ab") as f:  # a writer caught mid-line
        f.write(line[:50])
    reader = SpoolReader(tmp_path)
    assert [r.call_id for r in read_all(reader)] == ["call-1@test"]
    before = reader.position
    assert read_all(reader) == [] and reader.position == before
    with open(w.segment, "ab") as f:
        f.write(line[50:])
    assert [r.call_id for r in read_all(reader)] == ["call-2@test"]
    assert reader.torn == 0 and reader.rejected == 0
    w.close()


def test_torn_tail_of_a_finished_segment_is_skipped_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, [cdr(i) for i in range(3)]).close()
    (seg,) = segments(tmp_path)
    os.truncate(seg, seg.stat().st_size - 20)  # the last line cut short, as by a crash
    reader = SpoolReader(tmp_path)
    # No successor yet: it may still be completed, so the reader waits before it.
    assert [r.call_id for r in read_all(reader)] == ["call-0@test", "call-1@test"]
    assert reader.torn == 0
    write(tmp_path, [cdr(3)]).close()  # the restarted writer's new segment
    with caplog.at_level(logging.WARNING, logger="cdr.spool"):
        assert [r.call_id for r in read_all(reader)] == ["call-3@test"]
    assert reader.torn == 1 and "torn tail" in caplog.text
    assert not (tmp_path / REJECTED_FILE).exists()


def test_empty_and_header_only_segments(tmp_path: Path) -> None:
    write(tmp_path, [cdr(1)]).close()
    (tmp_path / segment_name(2)).write_bytes(b"")  # a writer killed before its header
    (tmp_path / segment_name(3)).write_bytes(spool.header_line()[:30])  # ... or during it
    write(tmp_path, [cdr(2)]).close()  # segment 4
    reader = SpoolReader(tmp_path)
    assert [r.call_id for r in read_all(reader)] == ["call-1@test", "call-2@test"]
    assert reader.torn == 1 and reader.rejected == 0


def test_sigkill_mid_stream(tmp_path: Path) -> None:
    """A writer process killed with SIGKILL loses nothing it emitted, leaves no stale lock, and
    the next writer starts a new segment."""
    code = f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
from cdr.spool import SpoolWriter
from tests.cdr.records import cdr
w = SpoolWriter(sys.argv[1], fsync_interval=3600, segment_bytes=8192)
for i in range(500):
    w.emit(cdr(i))
sys.stdout.write("emitted\\n"); sys.stdout.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and proc.stdout == "emitted\n", proc.stderr
    w = write(tmp_path, [cdr(500)])
    w.close()
    reader = SpoolReader(tmp_path)
    assert [r.call_id for r in read_all(reader)] == [f"call-{i}@test" for i in range(501)]


# -- corrupt lines ----------------------------------------------------------------------------

def test_corrupt_lines_are_quarantined_with_their_position(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, [cdr(i) for i in range(4)]).close()
    (seg,) = segments(tmp_path)
    lines = seg.read_bytes().splitlines(keepends=True)
    bad_crc = lines[2].replace(b"call-1", b"call-X")
    values = json.loads(lines[3][9:])
    bad_json = frame(b'["call-2@test", 7,')
    code, start = CDR_COLUMNS.index("sip_code"), CDR_COLUMNS.index("start_ms")
    bad_type = frame(json.dumps([*values[:code], "200", *values[code + 1:]]).encode())
    short = frame(json.dumps(values[:5]).encode())
    not_array = frame(b'{"call_id": "x"}')
    null_required = frame(json.dumps([None, *values[1:]]).encode())
    big_int = frame(json.dumps([*values[:start], 2**64, *values[start + 1:]]).encode())
    a_bool = frame(json.dumps([*values[:code], True, *values[code + 1:]]).encode())
    garbage = b"\x00\xff garbage without a frame\n"
    bad = [bad_crc, bad_json, bad_type, short, not_array, null_required, big_int, a_bool, garbage]
    seg.write_bytes(b"".join([lines[0], lines[1], *bad, lines[4]]))
    reader = SpoolReader(tmp_path)
    with caplog.at_level(logging.ERROR, logger="cdr.spool"):
        got = read_all(reader)
    assert [r.call_id for r in got] == ["call-0@test", "call-3@test"]
    assert reader.rejected == len(bad) and caplog.text.count("quarantined") == len(bad)
    rejected = read_rejected(tmp_path / REJECTED_FILE)
    assert [r["raw"] for r in rejected] == bad  # the exact bytes, even invalid UTF-8
    offset = len(lines[0]) + len(lines[1])
    for item, line in zip(rejected, bad, strict=True):
        assert item["segment"] == seg.name and item["offset"] == offset
        offset += len(line)
    reasons = [r["reason"] for r in rejected]
    assert reasons[0] == "checksum mismatch" and reasons[1].startswith("invalid JSON")
    assert "sip_code is not a 64-bit integer: '200'" in reasons[2] and "5 values" in reasons[3]
    assert reasons[4] == "record is not a JSON array" and reasons[5] == "call_id is null"
    assert "64-bit" in reasons[6] and "sip_code" in reasons[7]
    assert reasons[8] == "malformed line (no checksum frame)"

    # Read again from the start (a consumer that crashed before saving its position): the
    # quarantine is not written twice.
    again = SpoolReader(tmp_path)
    assert [r.call_id for r in read_all(again)] == ["call-0@test", "call-3@test"]
    assert len(read_rejected(tmp_path / REJECTED_FILE)) == len(bad)


def test_corrupt_header_and_over_long_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "MAX_LINE", 1000)
    write(tmp_path, [cdr(1), cdr(2)]).close()
    (seg,) = segments(tmp_path)
    lines = seg.read_bytes().splitlines(keepends=True)
    broken_header = lines[0].replace(b"trunkline", b"trunkLine")
    seg.write_bytes(broken_header + lines[1] + b"x" * 3000 + b"\n" + lines[2])
    reader = SpoolReader(tmp_path)
    assert [r.call_id for r in read_all(reader)] == ["call-1@test", "call-2@test"]  # today's columns
    reasons = [r["reason"] for r in read_rejected(tmp_path / REJECTED_FILE)]
    assert reasons == ["checksum mismatch", "line too long"]


def test_a_value_json_cannot_encode_is_quarantined_not_lost(tmp_path: Path) -> None:
    from decimal import Decimal

    w = write(tmp_path, [cdr(1), cdr(2, duration_ms=Decimal("1.5")), cdr(3)])
    w.close()
    reader = SpoolReader(tmp_path)
    assert [r.call_id for r in read_all(reader)] == ["call-1@test", "call-3@test"]
    (item,) = read_rejected(tmp_path / REJECTED_FILE)
    assert "duration_ms is not a 64-bit integer" in item["reason"] and b"call-2@test" in item["raw"]


def test_decode_record_errors() -> None:
    line = encode_record(cdr(1))
    assert decode_record(line) == cdr(1)
    for broken in (line[:-1], line[:5], b"zzzzzzzz " + line[9:], line[:9] + b"{" + line[10:]):
        with pytest.raises(CorruptLine):
            decode_record(broken)


def test_segments_written_with_other_columns_are_read_by_name(tmp_path: Path) -> None:
    """An upgrade may add or reorder columns: old segments are still read by column name."""
    columns = [c for c in reversed(CDR_COLUMNS) if c != "codecs"] + ["future_column"]
    record = cdr(1, codecs="")
    values = [getattr(record, c) if c in CDR_TYPES else "x" for c in columns]
    header = frame(json.dumps({"format": "trunkline-cdr-spool", "version": 1, "columns": columns}).encode())
    (tmp_path / segment_name(1)).write_bytes(header + frame(json.dumps(values).encode()))
    assert read_all(SpoolReader(tmp_path)) == [record]
    # A segment lacking a column without a default cannot give records: each is quarantined.
    columns2 = [c for c in CDR_COLUMNS if c != "sip_code"]
    header2 = frame(json.dumps({"format": "trunkline-cdr-spool", "version": 1, "columns": columns2}).encode())
    values2 = [getattr(record, c) for c in columns2]
    (tmp_path / segment_name(2)).write_bytes(header2 + frame(json.dumps(values2).encode()))
    reader = SpoolReader(tmp_path)
    assert read_all(reader) == [record] and reader.rejected == 1
    assert "lacks required column(s) sip_code" in read_rejected(tmp_path / REJECTED_FILE)[0]["reason"]


# The columns of every segment written before the switch made its own CDR ids (migration 0004).
COLUMNS_BEFORE_SIP_CALL_ID = [
    "call_id", "customer_id", "caller_device_id", "callee_device_id", "caller_number", "dialled_number",
    "start_ms", "answer_ms", "end_ms", "duration_ms", "sip_code", "q850_cause", "disposition", "direction",
    "call_type", "source_ip", "hangup_by", "reseller_path", "ip_device_id", "carrier_id", "did", "codecs",
]


def test_segments_written_before_sip_call_id_keep_their_key(tmp_path: Path) -> None:
    """An upgrade with CDRs still in the spool: a segment of the old format (no ``sip_call_id``;
    ``call_id`` was the caller's Call-ID) is read by name, ``sip_call_id`` takes ``call_id``, and
    ``call_id`` stays what it was (the key such a CDR may already be stored under), next to a new
    segment with today's columns; nothing is quarantined."""
    assert [c for c in CDR_COLUMNS if c != "sip_call_id"] == COLUMNS_BEFORE_SIP_CALL_ID
    old = [cdr(i, call_id=f"old-{i}@192.0.2.10", sip_call_id=f"old-{i}@192.0.2.10") for i in range(3)]
    header = frame(json.dumps({"format": "trunkline-cdr-spool", "version": 1,
                               "columns": COLUMNS_BEFORE_SIP_CALL_ID}).encode())
    lines = [frame(json.dumps([getattr(r, c) for c in COLUMNS_BEFORE_SIP_CALL_ID]).encode()) for r in old]
    (tmp_path / segment_name(1)).write_bytes(header + b"".join(lines))
    new = [cdr(10), cdr(11, sip_call_id="old-0@192.0.2.10")]  # a new attempt reusing an old Call-ID
    write(tmp_path, new).close()  # a new writer (the upgraded switch) takes segment 2
    reader = SpoolReader(tmp_path)
    got = read_all(reader)
    assert got == old + new and reader.rejected == 0
    assert [(r.call_id, r.sip_call_id) for r in got[:3]] == [(f"old-{i}@192.0.2.10",) * 2 for i in range(3)]
    # Resuming in the middle of an old segment reads its header too.
    first = next(SpoolReader(tmp_path).entries())
    resumed = SpoolReader(tmp_path, SpoolPosition(first.segment, first.end))
    assert read_all(resumed) == old[1:] + new


# -- positions --------------------------------------------------------------------------------

def test_positions_resume_exactly_after_the_last_record(tmp_path: Path) -> None:
    write(tmp_path, [cdr(i) for i in range(40)], segment_bytes=4096).close()
    everything = list(SpoolReader(tmp_path).entries())
    assert len(everything) == 40
    # From the position after any record, a new reader yields exactly the records after it.
    for k in (0, 1, 7, 13, 20, 39):
        e = everything[k]
        rest = list(SpoolReader(tmp_path, SpoolPosition(e.segment, e.end)).entries())
        assert [x.record for x in rest] == [x.record for x in everything[k + 1:]]
    # In batches, saving the position between them (what the sidecar does).
    pos_file = tmp_path / POSITION_FILE
    got: list[CdrRecord] = []
    while True:
        reader = SpoolReader(tmp_path, load_position(pos_file))
        batch = [e.record for e in reader.entries(max_records=6)]
        if not batch:
            break
        got += batch
        assert reader.position is not None
        save_position(pos_file, reader.position)
    assert got == [e.record for e in everything]
    assert sorted(os.listdir(tmp_path)) == sorted([POSITION_FILE, "writer.lock", *[p.name for p in segments(tmp_path)]])


def test_position_file(tmp_path: Path) -> None:
    path = tmp_path / POSITION_FILE
    assert load_position(path) is None
    save_position(path, SpoolPosition(segment_name(3), 1234))
    assert load_position(path) == SpoolPosition(segment_name(3), 1234)
    assert json.loads(path.read_text()) == {"segment": segment_name(3), "offset": 1234}
    assert not path.with_name(path.name + ".tmp").exists()
    path.write_text('{"segment": "nope", "offset": 1}')
    with pytest.raises(ValueError):
        load_position(path)


def test_missing_position_segment_continues_at_the_next(tmp_path: Path) -> None:
    write(tmp_path, [cdr(1)]).close()
    write(tmp_path, [cdr(2)]).close()
    (tmp_path / segment_name(1)).unlink()
    reader = SpoolReader(tmp_path, SpoolPosition(segment_name(1), 500))
    assert [r.call_id for r in read_all(reader)] == ["call-2@test"]


# -- failures and concurrency -----------------------------------------------------------------

def test_a_failed_write_is_kept_and_retried_in_a_new_segment(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    w = write(tmp_path / "spool", [cdr(1), cdr(2)], fsync_interval=0)
    real = w._fd
    ro = tmp_path / "ro"
    ro.write_bytes(b"")
    w._fd = os.open(ro, os.O_RDONLY)  # every write now fails (EBADF), as a full disk would
    with caplog.at_level(logging.ERROR, logger="cdr.spool"):
        w.emit(cdr(3))  # never raises into the call path
    assert w.backlog == 1 and "kept in memory" in caplog.text
    w.emit(cdr(4))  # the retry rotates to a fresh segment and writes both, in order
    assert w.backlog == 0
    w.close()
    os.close(real)
    reader = SpoolReader(tmp_path / "spool")
    assert [r.call_id for r in read_all(reader)] == [f"call-{i}@test" for i in range(1, 5)]
    assert len(segments(tmp_path / "spool")) == 2


def test_concurrent_writer_and_reader(tmp_path: Path) -> None:
    """A writer thread rotating small segments, a consumer following, saving positions and
    deleting consumed segments: every record arrives once, in order."""
    n = 5000
    w = SpoolWriter(tmp_path, fsync_interval=0.005, segment_bytes=8192)

    def produce() -> None:
        for i in range(n):
            w.emit(cdr(i))
            if i % 97 == 0:
                time.sleep(0.001)

    t = threading.Thread(target=produce)
    t.start()
    got: list[str] = []
    stop = threading.Event()
    reader = SpoolReader(tmp_path)
    deadline = time.monotonic() + 60
    for entry in reader.follow(stop, poll_interval=0.002):
        got.append(entry.record.call_id)
        if len(got) % 250 == 0:
            assert reader.position is not None
            save_position(tmp_path / POSITION_FILE, reader.position)
            remove_consumed(tmp_path, reader.position)
        if len(got) == n or time.monotonic() > deadline:
            stop.set()
    t.join()
    w.close()
    assert got == [f"call-{i}@test" for i in range(n)]
    assert read_all(reader) == []
    assert len(segments(tmp_path)) <= 3


# -- property ---------------------------------------------------------------------------------

_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=40)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _field(name: str) -> st.SearchStrategy[object]:
    typ, nullable = CDR_TYPES[name]
    base: st.SearchStrategy[object] = _int64 if typ is int else _text
    return st.one_of(st.none(), base) if nullable else base


records_st = st.builds(CdrRecord, **{name: _field(name) for name in CDR_COLUMNS})


@given(records_st)
@settings(max_examples=300, deadline=None)
def test_any_record_round_trips_through_a_line(record: CdrRecord) -> None:
    line = encode_record(record)
    assert line.isascii() and line.count(b"\n") == 1 and line.endswith(b"\n")
    assert decode_record(line) == record


@given(st.lists(records_st, max_size=30), st.integers(min_value=4096, max_value=16384))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_records_round_trip_through_the_spool(records: list[CdrRecord], segment_bytes: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        write(Path(d), records, segment_bytes=segment_bytes).close()
        reader = SpoolReader(d)
        assert read_all(reader) == records
        assert reader.rejected == 0 and reader.torn == 0
