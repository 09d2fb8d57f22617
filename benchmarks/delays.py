"""The delay from a CDR's write to the commit that stored it, measured against a child process
running the sidecar's loop (shared by bench_spool and bench_billing).

The child is started with ``child_argv``; it writes ``ready`` as the first line of ``log_path``
once it is set up, then one line ``<time.time()> <CDRs committed so far>`` per committed batch."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from cdr.schema import CdrRecord
from cdr.spool import SpoolWriter
from trunkline.billing import CdrIngestor


def stop_flag() -> list[bool]:
    """A flag SIGTERM sets (the child's way to finish its loop cleanly); install it first."""
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    return stop


def consume(ing: CdrIngestor, log_path: str, stop: list[bool]) -> None:
    """The child side: the sidecar's loop, ``ready`` then one line per committed batch."""
    with open(log_path, "w") as log:
        log.write("ready\n")
        log.flush()
        while not stop[0]:
            k = ing.step()
            if k:
                log.write(f"{time.time()} {ing.committed}\n")
                log.flush()
            if k < ing.max_batch:
                time.sleep(ing.batch_interval)


def _commits(log_path: Path) -> list[tuple[float, int]]:
    lines = log_path.read_text().splitlines()[1:]
    return [(float(a), int(b)) for a, b in (line.split() for line in lines)]


def measure_delays(child_argv: list[str], spool: Path, log_path: Path, records: Sequence[CdrRecord], rate: int,
                   *, timeout: float = 60.0) -> tuple[list[float], list[tuple[float, int]]]:
    """Emit ``records`` at ``rate`` per second into ``spool`` while the child consumes them: the
    sorted delays (seconds, one per record) and the child's commits."""
    n = len(records)
    w = SpoolWriter(spool)
    child = subprocess.Popen(child_argv)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (log_path.exists() and log_path.read_text().startswith("ready")):
            time.sleep(0.05)
        emitted: list[float] = []
        t0 = time.perf_counter()
        for i, r in enumerate(records):
            pause = t0 + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            w.emit(r)
            emitted.append(time.time())
        deadline = time.monotonic() + timeout
        commits: list[tuple[float, int]] = []
        while time.monotonic() < deadline:
            commits = _commits(log_path)
            if commits and commits[-1][1] >= n:
                break
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout)
        w.close()
    delays: list[float] = []
    j = 0
    for i, t in enumerate(emitted):
        while commits[j][1] <= i:
            j += 1
        delays.append(commits[j][0] - t)
    delays.sort()
    return delays, commits
