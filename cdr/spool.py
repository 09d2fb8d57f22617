"""The CDR spool: an append-only, checksummed, segmented file log between the switch and billing.

The switch appends every finished call's :class:`~cdr.schema.CdrRecord` here (:class:`SpoolWriter`,
a :class:`cdr.sink.CdrSink`); the billing sidecar reads it (:class:`SpoolReader`), stores the
records and remembers how far it got (:func:`save_position`).  Nothing here knows the switch or
the database: only the stdlib and :mod:`cdr.schema`.

Layout of a spool directory::

    cdr-000000000001.spool   segments, numbered in the order they were created
    cdr-000000000002.spool   (the highest one is the one being written)
    writer.lock              flock held by the one live writer
    consumer.lock            flock held by the one live consumer
    position.json            the consumer's committed position (segment name and byte offset)
    rejected.jsonl           lines that could not be decoded, with where they were found
    archive/                 consumed segments, when the consumer archives instead of deleting

Segment format (version 1).  A segment is lines of ASCII text, each ``CRC SP PAYLOAD LF``: CRC is
the CRC-32 (zlib) of the payload bytes as 8 lower-case hex digits, PAYLOAD is compact JSON
(non-ASCII escaped, so a payload never contains a raw LF).  The first line of a segment is its
header, a JSON object ``{"format": "trunkline-cdr-spool", "version": 1, "columns": [...], ...}``;
every other line is one record, a JSON array of the values in the header's column order
(:data:`cdr.schema.CDR_COLUMNS` when it was written; older segments are read by column name: a
column they lack takes its default, and ``sip_call_id``, added later, takes ``call_id``).

Guarantee.  :meth:`SpoolWriter.emit` hands the line to the kernel with one ``os.write`` on the
caller's thread (a few microseconds, no fsync): when it returns, the record is in the page cache
and survives the death of the process (SIGKILL, OOM kill, a crash), since the kernel writes the
page cache out whatever happens to the process.  It does not yet survive a kernel crash or a
power loss: a background thread calls ``fdatasync`` every ``fsync_interval`` (20 ms) when
something was written, so a power loss loses at most the records emitted in the last
``fsync_interval`` plus one fdatasync's duration (``fsync_interval=0`` syncs inside every
``emit``, durable on return but blocking the caller for a disk flush).

Torn lines.  A writer never appends after another writer's tail: every writer starts a new
segment, so a line cut short by a crash (a write interrupted by SIGKILL between pages, or a
power loss) is always the last bytes of a segment that has a successor.  The reader waits at an
incomplete tail of the newest segment (its writer may be completing it) and skips, with a
warning, an incomplete tail of a segment that has a successor.  A complete line that fails its
checksum or does not decode is corrupt: the reader logs it and appends it to ``rejected.jsonl``
(fsync'd before it moves past it), never dropping it silently.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import operator
import os
import re
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, NamedTuple

from cdr.schema import CDR_COLUMNS, CDR_TYPES, CdrRecord

log = logging.getLogger(__name__)

FORMAT = "trunkline-cdr-spool"
VERSION = 1
SEGMENT_RE = re.compile(r"^cdr-(\d{12})\.spool$")
WRITER_LOCK = "writer.lock"
CONSUMER_LOCK = "consumer.lock"
POSITION_FILE = "position.json"
REJECTED_FILE = "rejected.jsonl"
ARCHIVE_DIR = "archive"
# A record is a few hundred bytes; SIP bounds every field (65,535-byte messages), so a "line"
# longer than this is garbage without a newline, not a record.
MAX_LINE = 1 << 20

_INT64 = (-(1 << 63), (1 << 63) - 1)
_values_of = operator.attrgetter(*CDR_COLUMNS)
# A value JSON cannot encode (a Decimal, say: a bug upstream) is written as its repr, so the line
# exists and the reader quarantines it for its type, instead of the CDR vanishing in emit().
_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False, default=repr).encode


class SpoolError(RuntimeError):
    """Misuse or an unusable spool directory (e.g. a second writer)."""


class SpoolLocked(SpoolError):
    """Another process holds the lock (writer or consumer) of this spool directory."""


class CorruptLine(ValueError):
    """A complete line that is not a valid record; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- names and positions ------------------------------------------------------------------------

def segment_name(seq: int) -> str:
    return f"cdr-{seq:012d}.spool"


def segment_seq(name: str) -> int | None:
    m = SEGMENT_RE.match(name)
    return int(m.group(1)) if m else None


def list_segments(directory: str | Path) -> list[tuple[int, str]]:
    """(sequence, file name) of every segment in ``directory``, oldest first."""
    out: list[tuple[int, str]] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                seq = segment_seq(entry.name)
                if seq is not None:
                    out.append((seq, entry.name))
    except FileNotFoundError:
        return []
    out.sort()
    return out


class SpoolPosition(NamedTuple):
    """Where reading resumes: a segment's file name and the byte offset of its next unread line."""

    segment: str
    offset: int

    @property
    def seq(self) -> int:
        seq = segment_seq(self.segment)
        if seq is None:
            raise ValueError(f"not a segment name: {self.segment!r}")
        return seq

    def key(self) -> tuple[int, int]:
        return (self.seq, self.offset)

    def __str__(self) -> str:
        return f"{self.segment} offset {self.offset}"


class SpoolEntry(NamedTuple):
    """One record read from the spool: where its line starts, the record, where the next line starts."""

    segment: str
    offset: int
    record: CdrRecord
    end: int


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_position(path: str | Path) -> SpoolPosition | None:
    """The position saved at ``path``, or None when there is none yet (start from the oldest segment)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    pos = SpoolPosition(str(data["segment"]), int(data["offset"]))
    pos.key()  # refuse a file naming something that is not a segment
    return pos


def save_position(path: str | Path, position: SpoolPosition) -> None:
    """Replace the saved position atomically and durably: temp file, fsync, rename, fsync directory.

    After a crash the file holds either the old position or the new one, never a mixture."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps({"segment": position.segment, "offset": position.offset}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class DirLock:
    """An exclusive ``flock`` on a file in the spool directory.  The kernel drops it when its
    holder dies, even by SIGKILL, so a crashed process never leaves a stale lock behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for the operator who wonders who holds it
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


# -- encoding -----------------------------------------------------------------------------------

def _frame(payload: str) -> bytes:
    data = payload.encode("ascii")  # ensure_ascii: always ASCII
    return b"%08x %s\n" % (zlib.crc32(data), data)


def encode_record(record: CdrRecord) -> bytes:
    """The spool line of ``record`` (with its checksum and the trailing newline)."""
    return _frame(_dumps(_values_of(record)))


def header_line(extra: dict[str, Any] | None = None) -> bytes:
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION, "columns": list(CDR_COLUMNS)}
    header.update(extra or {})
    return _frame(_dumps(header))


def _payload(line: bytes) -> Any:
    """Check the frame and checksum of one complete line (newline included); the decoded JSON."""
    if len(line) < 11 or line[8:9] != b" " or not line.endswith(b"\n"):
        raise CorruptLine("malformed line (no checksum frame)")
    data = line[9:-1]
    try:
        crc = int(line[:8], 16)
    except ValueError:
        raise CorruptLine("malformed checksum") from None
    if zlib.crc32(data) != crc:
        raise CorruptLine("checksum mismatch")
    try:
        return json.loads(data)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise CorruptLine(f"invalid JSON: {exc}") from None


_SPEC = tuple((name, typ, nullable) for name, (typ, nullable) in CDR_TYPES.items())
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(CdrRecord) if f.default is not MISSING}
# A column missing from an older segment that takes another column's value.  Segments written
# before ``sip_call_id`` existed keyed CDRs by the caller's Call-ID: their ``call_id`` *is* the
# SIP Call-ID, and it stays their ``call_id`` (the key they may already be stored under, so a
# replay after the upgrade still finds them stored and is not billed twice).
_FROM_COLUMN: dict[str, str] = {"sip_call_id": "call_id"}


class _Columns:
    """How one segment's header columns map onto today's CdrRecord."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.same = tuple(columns) == CDR_COLUMNS
        self.index = {name: i for i, name in enumerate(columns)}
        self.unknown = [c for c in columns if c not in CDR_TYPES]
        for name, source in _FROM_COLUMN.items():
            if name not in self.index and source in self.index:
                self.index[name] = self.index[source]
        self.missing = [c for c in CDR_COLUMNS if c not in self.index and c not in _DEFAULTS]

    def record(self, values: Any) -> CdrRecord:
        if not isinstance(values, list):
            raise CorruptLine("record is not a JSON array")
        if len(values) != len(self.columns):
            raise CorruptLine(f"record has {len(values)} values, the segment header names {len(self.columns)}")
        if self.missing:
            raise CorruptLine(f"segment lacks required column(s) {', '.join(self.missing)}")
        if self.same:
            row = values
        else:
            index = self.index
            row = [values[index[c]] if c in index else _DEFAULTS[c] for c in CDR_COLUMNS]
        lo, hi = _INT64
        for (name, typ, nullable), value in zip(_SPEC, row, strict=True):
            kind = type(value)
            if kind is typ:  # the common case first: this runs for every field of every record
                if kind is int and not lo <= value <= hi:
                    raise CorruptLine(f"{name} is not a 64-bit integer: {value!r}"[:200])
                continue
            if value is None:
                if not nullable:
                    raise CorruptLine(f"{name} is null")
                continue
            # bool is an int to Python, never to the cdrs table.
            raise CorruptLine(f"{name} is not a {'64-bit integer' if typ is int else typ.__name__}: {value!r}"[:200])
        return CdrRecord(*row)


def decode_record(line: bytes, columns: list[str] | tuple[str, ...] = CDR_COLUMNS) -> CdrRecord:
    """The record on one complete spool line; raises :class:`CorruptLine`."""
    return _Columns(list(columns)).record(_payload(line))


# -- writer -------------------------------------------------------------------------------------

class SpoolWriter:
    """Appends CDRs to the spool (a :class:`cdr.sink.CdrSink`); see the module docstring for the
    guarantee.

    ``emit`` is meant for the event loop thread: it encodes the record and calls ``os.write``
    once.  Segments rotate when they reach ``segment_bytes`` and at every start (a new writer
    never appends after a possibly torn tail).  Only one writer may own a directory at a time
    (``writer.lock``); a second one raises :class:`SpoolLocked`.

    If a write fails (disk full, I/O error) the record is kept in memory, the error is logged,
    and the writer retries every ``fsync_interval`` (and at the next ``emit``) in a fresh
    segment, so a partly written line is left as the torn tail of a finished segment.
    """

    def __init__(self, directory: str | Path, *, fsync_interval: float = 0.02, segment_bytes: int = 64 << 20,
                 clock: Callable[[], float] = time.time) -> None:
        if fsync_interval < 0:
            raise ValueError("fsync_interval must be >= 0")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync_interval = fsync_interval
        self.segment_bytes = max(4096, segment_bytes)
        self._clock = clock
        self._lock = threading.Lock()  # emit (event loop) vs the sync thread's retries and rotation
        # Held by whoever fdatasyncs and closes retired descriptors (the thread, flush), always
        # taken before ``_lock``: a descriptor is never closed under another syncer's feet.
        self._sync_lock = threading.Lock()
        self._dir_lock = DirLock(self.directory / WRITER_LOCK)
        if not self._dir_lock.acquire():
            raise SpoolLocked(f"another process is writing the CDR spool {self.directory} (see {WRITER_LOCK})")
        self._seq = self._highest_seq()
        self._fd = -1
        self._size = 0
        self._broken = False  # the current segment may end in a partial line: rotate before writing
        self._backlog: deque[bytes] = deque()  # lines whose write failed, oldest first
        self._failing = False
        self._retired: list[int] = []  # descriptors of rotated segments, synced and closed by the thread
        self._dir_dirty = False
        self._closed = False
        # Counters (records).  ``emitted``: handed to the kernel; ``synced``: known to be on disk.
        self.emitted = 0
        self.synced = 0
        self._unsynced = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._rotate()
        except BaseException:
            self._dir_lock.release()
            raise
        if fsync_interval > 0:
            self._thread = threading.Thread(target=self._sync_loop, name="cdr-spool-sync", daemon=True)
            self._thread.start()

    # -- public ----------------------------------------------------------------------------------
    @property
    def segment(self) -> Path:
        """The segment being written."""
        return self.directory / segment_name(self._seq)

    @property
    def backlog(self) -> int:
        """Records not yet written because writing failed."""
        return len(self._backlog)

    def emit(self, record: CdrRecord) -> None:
        line = encode_record(record)
        with self._lock:
            if self._closed:
                # The directory may already belong to another writer: the log is the one place
                # left, and the full line there can be fed back in by hand.
                log.error("CDR emitted after the spool was closed, not written: %s", line.decode("ascii").rstrip())
                return
            if self._backlog:
                self._backlog.append(line)
                self._drain_backlog()
            else:
                try:
                    self._write(line)
                except OSError as exc:
                    self._backlog.append(line)
                    self._write_failed(exc)
            if self.fsync_interval == 0 and self._unsynced:
                try:
                    self._sync_now()
                except OSError as exc:  # written, durability unknown: say so, keep the call path up
                    log.error("fdatasync of the CDR spool failed: %s", exc)

    def flush(self) -> None:
        """Make everything emitted so far durable now (blocks for an fdatasync)."""
        with self._sync_lock, self._lock:
            if self._backlog:
                self._drain_backlog()
            self._sync_now()

    def close(self) -> None:
        """Stop the sync thread, sync and close the segment, release the directory."""
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        with self._lock:
            if self._backlog:
                self._drain_backlog()
            try:
                self._sync_now()
            except OSError as exc:
                log.error("fdatasync of the CDR spool failed while closing: %s", exc)
            self._closed = True
            if self._backlog:
                # Still unwritable: put them in the log, the one place left, rather than lose them.
                log.error("closing the CDR spool with %d record(s) that could not be written; they follow",
                          len(self._backlog))
                for line in self._backlog:
                    log.error("unwritten CDR: %s", line.decode("ascii").rstrip())
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        self._dir_lock.release()

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (called with self._lock held) -------------------------------------------------
    def _highest_seq(self) -> int:
        """The highest segment number this directory has known: its segments, the archived ones
        and the consumer's position (so a number is never reused, even if every segment went)."""
        highest = max((seq for seq, _ in list_segments(self.directory)), default=0)
        highest = max(highest, max((seq for seq, _ in list_segments(self.directory / ARCHIVE_DIR)), default=0))
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pos = load_position(self.directory / POSITION_FILE)
            if pos is not None:
                highest = max(highest, pos.seq)
        return highest

    def _rotate(self) -> None:
        old = self._fd
        self._seq += 1
        path = self.directory / segment_name(self._seq)
        # O_EXCL: a name is never reused; O_APPEND: every write lands at the end, whatever happened.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        header = header_line({"created_ms": int(self._clock() * 1000), "pid": os.getpid(),
                              "host": socket.gethostname()})
        self._fd, self._size, self._broken = fd, 0, False
        self._dir_dirty = True
        if old >= 0:
            # The old segment's last lines may be unsynced: the sync thread syncs and closes it
            # (never on the event loop).
            if self._thread is not None:
                self._retired.append(old)
            else:
                os.fdatasync(old)
                os.close(old)
        try:
            self._write_raw(header)
        except OSError:
            self._broken = True  # a segment must start with its header: never write a record first
            raise
        log.debug("CDR spool segment %s started", path.name)

    def _write_raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except OSError:
                if len(view) != len(data):
                    self._broken = True  # part of the line is in the file
                raise
            view = view[n:]
            self._size += n

    def _write(self, line: bytes) -> None:
        if self._broken or self._size >= self.segment_bytes:
            self._rotate()
        self._write_raw(line)
        self.emitted += 1
        self._unsynced += 1

    def _drain_backlog(self) -> None:
        backlog = self._backlog
        try:
            while backlog:
                if self._failing:
                    self._broken = True  # retry in a new segment: the failed one may end mid-line
                self._write(backlog[0])
                backlog.popleft()
                if self._failing:
                    self._failing = False
                    log.warning("CDR spool writable again in %s", self.segment.name)
        except OSError as exc:
            self._write_failed(exc)

    def _write_failed(self, exc: OSError) -> None:
        self._broken = True
        if not self._failing:
            log.error("cannot write the CDR spool %s: %s; %d record(s) kept in memory, retrying",
                      self.directory, exc, len(self._backlog))
        self._failing = True

    def _sync_now(self) -> None:
        retired, self._retired = self._retired, []
        for fd in retired:
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        if self._dir_dirty:
            _fsync_dir(self.directory)  # the new segment's name must survive a power loss too
            self._dir_dirty = False
        if self._unsynced and self._fd >= 0:
            os.fdatasync(self._fd)
            self.synced += self._unsynced
            self._unsynced = 0

    # -- the sync thread -------------------------------------------------------------------------
    def _sync_loop(self) -> None:
        while not self._stop.wait(self.fsync_interval):
            try:
                with self._sync_lock:
                    self._sync_once()
            except Exception:
                log.exception("syncing the CDR spool failed")
                self._stop.wait(1.0)

    def _sync_once(self) -> None:
        with self._lock:
            if self._backlog:
                self._drain_backlog()
            if not (self._unsynced or self._retired or self._dir_dirty):
                return
            fd, pending = self._fd, self._unsynced
            retired, self._retired = self._retired, []
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            # Closed only here or in close() (after this thread stops), so it stays valid below.
        # fdatasync outside the lock: emit() must not wait for the disk.
        for old in retired:
            try:
                os.fdatasync(old)
            finally:
                os.close(old)
        if dir_dirty:
            _fsync_dir(self.directory)
        if pending:
            os.fdatasync(fd)
            with self._lock:
                self.synced += pending
                self._unsynced -= pending


# -- reader -------------------------------------------------------------------------------------

class SpoolReader:
    """Reads records from a spool directory, starting at a position (default: the oldest segment).

    :meth:`entries` yields what is there now and returns at the live tail; :meth:`follow` waits
    for more.  After each yielded entry :attr:`position` is where the next line starts, so a
    consumer that stores the records it was given and then saves :attr:`position` resumes
    exactly after them: from a given position, no record is ever yielded twice.

    A complete line that does not decode is logged and appended to ``rejected.jsonl`` (with its
    segment, offset and reason) before the reader moves past it.  An incomplete last line waits
    (the newest segment's writer may be finishing it) unless the segment has a successor: then
    it was torn by a crash, and is skipped with a warning.
    """

    def __init__(self, directory: str | Path, position: SpoolPosition | None = None, *,
                 rejected_path: str | Path | None = None) -> None:
        self.directory = Path(directory)
        self.rejected_path = Path(rejected_path) if rejected_path else self.directory / REJECTED_FILE
        self.position: SpoolPosition | None = position
        self.rejected = 0  # lines quarantined by this reader
        self.torn = 0  # torn tails skipped by this reader
        self._file: Any = None
        self._file_segment: str | None = None
        self._columns: _Columns | None = None
        self._columns_segment: str | None = None
        self._known_rejects = self._load_rejected_keys()

    def close(self) -> None:
        self._close_file()

    def __enter__(self) -> SpoolReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public ----------------------------------------------------------------------------------
    def entries(self, max_records: int | None = None) -> Iterator[SpoolEntry]:
        """Yield the records available now (at most ``max_records``); return at the live tail."""
        count = 0
        while max_records is None or count < max_records:
            pos = self._current()
            if pos is None:
                return
            path = self.directory / pos.segment
            try:
                f = self._open(pos.segment, path)
            except FileNotFoundError:
                log.warning("CDR spool segment %s disappeared; continuing after it", pos.segment)
                self._advance_past(pos.segment)
                continue
            # The successor must be seen before the last read of this segment: every byte of a
            # segment is written before its successor is created, so after this check a read to
            # the end gets everything the segment will ever hold.
            finished = self._successor(pos.segment) is not None
            f.seek(pos.offset)
            offset = pos.offset
            while max_records is None or count < max_records:
                line = f.readline(MAX_LINE)
                if not line:
                    break
                end = offset + len(line)
                if not line.endswith(b"\n"):
                    if len(line) < MAX_LINE:
                        break  # an incomplete last line: handled below
                    # No newline in MAX_LINE bytes: garbage; quarantine it up to the next newline.
                    rest = f.readline()
                    end += len(rest)
                    self._reject(pos.segment, offset, "line too long", line + rest)
                    offset = end
                    self.position = SpoolPosition(pos.segment, offset)
                    continue
                record = self._decode(pos.segment, offset, line)
                offset = end
                self.position = SpoolPosition(pos.segment, offset)
                if record is not None:
                    count += 1
                    yield SpoolEntry(pos.segment, offset - len(line), record, offset)
            else:
                return  # max_records reached
            if not finished:
                return  # the live tail: wait for the writer
            # Finished: whatever follows ``offset`` (if anything) can never be completed.
            size = os.fstat(f.fileno()).st_size
            if size > offset:
                self.torn += 1
                log.warning("CDR spool %s: skipping a torn tail of %d byte(s) at offset %d (a writer was "
                            "stopped mid-line; that record was never acknowledged)", pos.segment, size - offset,
                            offset)
            self._advance_past(pos.segment)

    def follow(self, stop: threading.Event, *, poll_interval: float = 0.1,
               max_records: int | None = None) -> Iterator[SpoolEntry]:
        """Like :meth:`entries`, but wait at the live tail (polling) until ``stop`` is set."""
        while not stop.is_set():
            n = 0
            for entry in self.entries(max_records):
                n += 1
                yield entry
            if n == 0:
                stop.wait(poll_interval)

    def seek(self, position: SpoolPosition | None) -> None:
        """Read from ``position`` next (None: the oldest segment), e.g. back to the last saved
        position after a failed batch, so that nothing read but not stored is skipped."""
        self._close_file()
        self.position = position

    def consumed_segments(self, position: SpoolPosition | None = None) -> list[Path]:
        """Segments entirely before ``position`` (default: this reader's): read and closed."""
        pos = position or self.position
        if pos is None:
            return []
        return [self.directory / name for seq, name in list_segments(self.directory) if seq < pos.seq]

    def reject(self, segment: str, offset: int, reason: str, line: bytes) -> None:
        """Quarantine a line (also used by consumers for records their store refused)."""
        self._reject(segment, offset, reason, line)

    # -- internals -------------------------------------------------------------------------------
    def _current(self) -> SpoolPosition | None:
        """The position to read from, settling a missing position on the oldest segment."""
        pos = self.position
        if pos is not None and (self.directory / pos.segment).exists():
            return pos
        segments = list_segments(self.directory)
        if pos is None:
            if not segments:
                return None
            self.position = SpoolPosition(segments[0][1], 0)
            return self.position
        later = [name for seq, name in segments if seq > pos.seq]
        if not later:
            return None
        log.warning("CDR spool segment %s is gone; continuing at %s", pos.segment, later[0])
        self.position = SpoolPosition(later[0], 0)
        return self.position

    def _successor(self, segment: str) -> str | None:
        seq = segment_seq(segment)
        assert seq is not None
        for other, name in list_segments(self.directory):
            if other > seq:
                return name
        return None

    def _advance_past(self, segment: str) -> None:
        nxt = self._successor(segment)
        self._close_file()
        if nxt is not None:
            self.position = SpoolPosition(nxt, 0)

    def _open(self, segment: str, path: Path) -> Any:
        if self._file_segment != segment:
            self._close_file()
            self._file = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 -- kept across calls
            self._file_segment = segment
        return self._file

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._file_segment = None

    def _decode(self, segment: str, offset: int, line: bytes) -> CdrRecord | None:
        try:
            if offset == 0:
                self._header(segment, line)
                return None
            columns = self._columns
            if columns is None or self._columns_segment != segment:
                columns = self._read_header(segment)
            return columns.record(_payload(line))
        except CorruptLine as exc:
            self._reject(segment, offset, exc.reason, line)
            return None

    def _header(self, segment: str, line: bytes) -> _Columns:
        try:
            header = _payload(line)
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise CorruptLine("first line is not a spool header")
            if header.get("version") != VERSION:
                raise CorruptLine(f"unsupported spool version {header.get('version')!r}")
            columns = header.get("columns")
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
                raise CorruptLine("header has no column list")
            cols = _Columns(columns)
            if cols.unknown:
                log.warning("CDR spool %s has column(s) this version does not know, ignored: %s",
                            segment, ", ".join(cols.unknown))
        except CorruptLine:
            # Records are still read with today's columns (those that do not fit are rejected).
            self._columns, self._columns_segment = _Columns(list(CDR_COLUMNS)), segment
            raise
        self._columns, self._columns_segment = cols, segment
        return cols

    def _read_header(self, segment: str) -> _Columns:
        """The header of a segment entered in the middle (a resumed position)."""
        with open(self.directory / segment, "rb") as f:
            line = f.readline(MAX_LINE)
        try:
            return self._header(segment, line)
        except CorruptLine as exc:
            self._reject(segment, 0, f"header: {exc.reason}", line)
            assert self._columns is not None
            return self._columns

    def _load_rejected_keys(self) -> set[tuple[str, int]]:
        keys: set[tuple[str, int]] = set()
        try:
            with open(self.rejected_path, encoding="utf-8") as f:
                for text in f:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        item = json.loads(text)
                        keys.add((str(item["segment"]), int(item["offset"])))
        except FileNotFoundError:
            pass
        return keys

    def _reject(self, segment: str, offset: int, reason: str, line: bytes) -> None:
        self.rejected += 1
        log.error("CDR spool %s offset %d: %s; line quarantined in %s", segment, offset, reason,
                  self.rejected_path)
        key = (segment, offset)
        if key in self._known_rejects:
            return  # read again after a restart: already quarantined
        item = {"segment": segment, "offset": offset, "reason": reason, "rejected_ms": int(time.time() * 1000),
                # surrogateescape + JSON escapes keep the exact bytes, even invalid UTF-8
                "line": line.decode("utf-8", "surrogateescape")}
        data = (json.dumps(item, ensure_ascii=True) + "\n").encode("ascii")
        fd = os.open(self.rejected_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)  # quarantined for good before the consumer's position moves past it
        finally:
            os.close(fd)
        self._known_rejects.add(key)


def read_rejected(path: str | Path) -> list[dict[str, Any]]:
    """The quarantined lines of a spool (``line`` restored to the exact bytes, as ``raw``)."""
    out: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as f:
            for text in f:
                item = json.loads(text)
                item["raw"] = str(item["line"]).encode("utf-8", "surrogateescape")
                out.append(item)
    except FileNotFoundError:
        pass
    return out


def remove_consumed(directory: str | Path, position: SpoolPosition, *, archive: bool = False) -> list[str]:
    """Delete (or move to ``archive/``) the segments wholly before a *saved* ``position``.

    Safe because a segment before the position is both read to its end and closed: its writer
    moved on to a later one, and no writer ever reopens a segment."""
    directory = Path(directory)
    removed: list[str] = []
    target = directory / ARCHIVE_DIR
    for seq, name in list_segments(directory):
        if seq >= position.seq:
            break
        try:
            if archive:
                target.mkdir(exist_ok=True)
                os.replace(directory / name, target / name)
            else:
                os.unlink(directory / name)
        except FileNotFoundError:
            continue
        removed.append(name)
    return removed
