"""CDRs survive SIGKILL: real `trunkline run` + its billing sidecar under SIPp traffic.

The issue's promise: kill either process with SIGKILL at any moment under load; after restart
every call whose BYE completed has exactly one CDR.  SIPp's UAC logs the Call-ID of every call
whose BYE got its 200 (sipp-scenarios/uac_bench_logged.xml); the switch and the sidecar are
killed at seeded random moments while the traffic runs; at the end each logged Call-ID must
have exactly one row in ``cdrs`` (found by ``sip_call_id``: ``call_id`` is the switch's own id
of the attempt), the spool and the table must agree, and nothing may have been quarantined.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.switch_setup import BENCH_ENV, provision_call_bench
from cdr.spool import ARCHIVE_DIR, REJECTED_FILE, SpoolReader, SpoolWriter
from tests.cdr.records import cdr
from tests.e2e.sipp import SCENARIOS, SIPP
from tests.e2e.switchproc import SwitchProcess, free_port
from tests.waiting import wait_for

pytestmark = pytest.mark.sipp

SEED = int(os.environ.get("TRUNKLINE_TEST_SEED", "20261124"))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _sidecar(sw: SwitchProcess, *, exclude: set[int] | None = None, timeout: float = 30.0) -> int:
    """The pid of the switch's (new) billing sidecar, waiting for it to be started."""
    pids: list[int] = []

    def started() -> bool:
        pids[:] = [p for p in sw.children("billing") if p not in (exclude or set())]
        return bool(pids)

    if wait_for(started, timeout, 0.05) is not None:
        return pids[0]
    raise AssertionError(f"no billing sidecar under the switch after {timeout}s:\n{sw.log()}")


def _wait_log(sw: SwitchProcess, text: str, count: int, timeout: float = 30.0) -> None:
    wait_for(lambda: sw.log().count(text) >= count, timeout, 0.1)
    assert sw.log().count(text) >= count, sw.log()


def _rows(db: Path) -> list[tuple[str, str, str, str]]:
    """(SIP Call-ID, attempt id, disposition, hangup_by) of every CDR."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return list(con.execute("SELECT sip_call_id, call_id, disposition, hangup_by FROM cdrs"))
    finally:
        con.close()


def test_run_starts_restarts_and_stops_the_sidecar(tmp_path: Path) -> None:
    sw = SwitchProcess(tmp_path / "on", ports=(free_port(),), env={"TRUNKLINE_BILLING_BATCH_INTERVAL": "0.1"})
    sw.start()
    try:
        first = _sidecar(sw)
        _wait_log(sw, "billing sidecar consuming", 1)
        os.kill(first, signal.SIGKILL)
        second = _sidecar(sw, exclude={first})
        assert "was killed by SIGKILL; restarting it" in sw.log()
        _wait_log(sw, "billing sidecar consuming", 2)  # at work (and handling SIGTERM) from here on
    finally:
        rc = sw.stop()
    assert rc == 0, sw.log()
    assert not _alive(second)
    assert "billing sidecar stopped" in sw.log()

    off = SwitchProcess(tmp_path / "off", ports=(free_port(),), env={"TRUNKLINE_BILLING_ENABLED": "false"})
    with off:
        time.sleep(1.0)
        assert off.children("billing") == []
    assert "billing sidecar" not in off.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_standalone_billing_ingests_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    var = tmp_path / "var"
    env = {**os.environ, "TRUNKLINE_VAR_DIR": str(var), "TRUNKLINE_BILLING_BATCH_INTERVAL": "0.1"}
    subprocess.run([sys.executable, "-m", "trunkline", "migrate"], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)
    with SpoolWriter(var / "spool") as w:
        for i in range(10):
            w.emit(cdr(i))
    log = tmp_path / "billing.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trunkline", "billing"], env=env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: len(_rows(var / "trunkline.db")) >= 10, 30, 0.1)
        assert len(_rows(var / "trunkline.db")) == 10
        proc.send_signal(sig)
        assert proc.wait(15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "billing sidecar stopped: 10 CDR(s) committed (10 new" in log.read_text()


def test_every_completed_call_has_exactly_one_cdr_across_sigkills(tmp_path: Path) -> None:
    if not Path(SIPP).exists():
        pytest.fail("SIPp is not installed: `make test` installs it (apt package sip-tester)")
    rng = random.Random(SEED)
    taken: set[int] = set()
    sip, uac_port, uas_port = free_port(taken), free_port(taken), free_port(taken)
    work = tmp_path / "switch"
    env = {**BENCH_ENV, "TRUNKLINE_LOG_LEVEL": "INFO", "TRUNKLINE_BILLING_ARCHIVE": "true",
           "TRUNKLINE_BILLING_BATCH_INTERVAL": "0.1"}
    sw = SwitchProcess(work, ports=(sip,), env=env)
    sw.start(timeout=60)
    uas: subprocess.Popen[bytes] | None = None
    uac: subprocess.Popen[bytes] | None = None
    timeline: list[str] = []
    t0 = time.monotonic()

    def note(what: str) -> None:
        timeline.append(f"{time.monotonic() - t0:6.2f}s {what}")

    try:
        provision_call_bench(sw, uac_port=uac_port, uas_port=uas_port, workdir=tmp_path)
        sipp_dir = tmp_path / "sipp"
        sipp_dir.mkdir()
        uas = subprocess.Popen([SIPP, "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-nostdin",
                                "-timeout", "150s", "-trace_err"], cwd=sipp_dir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rate, seconds = 80, 40
        logged = sipp_dir / "completed.log"
        uac = subprocess.Popen(
            [SIPP, "-sf", str(SCENARIOS / "uac_bench_logged.xml"), f"127.0.0.1:{sip}", "-i", "127.0.0.1",
             "-p", str(uac_port), "-s", "1000", "-r", str(rate), "-m", str(rate * seconds), "-d", "400",
             "-trace_logs", "-log_file", str(logged), "-trace_err", "-nostdin", "-timeout", "120s",
             # Calls caught by a kill fail within seconds instead of SIPp's 64*T1 default.
             "-max_invite_retrans", "4", "-max_non_invite_retrans", "4", "-recv_timeout", "10000"],
            cwd=sipp_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        note(f"traffic: {rate} cps for {seconds} s (seed {SEED})")
        kills = {"switch": 0, "sidecar": 0}
        for kind in ("switch", "sidecar", "both", "sidecar", "switch"):
            time.sleep(rng.uniform(3.0, 6.0))
            if uac.poll() is not None:
                break
            if kind in ("sidecar", "both"):
                pid = _sidecar(sw)
                os.kill(pid, signal.SIGKILL)
                kills["sidecar"] += 1
                note(f"SIGKILL sidecar {pid}")
            if kind in ("switch", "both"):
                assert sw.proc is not None
                note(f"SIGKILL switch {sw.proc.pid}")
                sw.kill()
                kills["switch"] += 1
                sw.start(timeout=60)
                note(f"switch restarted as {sw.proc.pid}")
        # All five happen while SIPp runs unless the machine is very slow; at least most must.
        assert kills["switch"] >= 2 and kills["sidecar"] >= 2, timeline
        try:
            uac.wait(timeout=120)
        except subprocess.TimeoutExpired:
            uac.kill()
            uac.wait()
        note(f"traffic done (sipp rc {uac.returncode})")

        completed = [line.strip() for line in logged.read_text().splitlines() if line.strip()]
        assert len(completed) >= 1000, (len(completed), timeline)
        db = work / "var" / "trunkline.db"
        want = set(completed)
        wait_for(lambda: want <= {r[0] for r in _rows(db)}, 30, 0.2)
        note("ingested")
    finally:
        for p in (uac, uas):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        rc = sw.stop()
    print("\n".join(timeline))

    assert rc == 0, sw.log()
    rows = _rows(work / "var" / "trunkline.db")
    by_id: dict[str, list[tuple[str, str, str, str]]] = {}  # by the SIP Call-ID SIPp used
    for row in rows:
        by_id.setdefault(row[0], []).append(row)
    assert len(completed) == len(set(completed)), "SIPp logged a Call-ID twice"
    missing = [c for c in completed if c not in by_id]
    assert not missing, f"{len(missing)} completed call(s) without a CDR, e.g. {missing[:5]}\n{timeline}"
    doubled = [c for c in completed if len(by_id[c]) != 1]
    assert not doubled, f"completed call(s) with more than one CDR: {[by_id[c] for c in doubled[:5]]}"
    # Every SIPp call (one Call-ID each) has at most one CDR, completed or not: no CDR was
    # stored twice under two keys.
    assert len(rows) == len(by_id), "duplicate CDRs"
    assert len({r[1] for r in rows}) == len(rows)  # the attempt ids are unique
    assert all(by_id[c][0][2:] == ("ANSWERED", "caller") for c in completed)

    # The spool and the table agree: every spooled CDR was stored (none lost in between), and
    # nothing was quarantined.
    spool = work / "var" / "spool"
    spooled: list[tuple[str, str]] = []
    for directory in (spool / ARCHIVE_DIR, spool):
        with SpoolReader(directory, rejected_path=tmp_path / "verify-rejected.jsonl") as reader:
            spooled += [(e.record.sip_call_id, e.record.call_id) for e in reader.entries()]
    assert len(set(spooled)) == len(spooled), "a CDR was spooled twice"
    assert set(spooled) == {r[:2] for r in rows}, "the spool and the cdrs table disagree"
    rejected = spool / REJECTED_FILE
    assert not rejected.exists() or rejected.read_text() == "", rejected.read_text()
    full_log = sw.log_path.read_text(errors="replace")
    assert "Traceback" not in full_log, full_log[-20000:]
    print(f"{len(completed)} completed calls, {len(rows)} CDRs, {len(spooled)} spooled records, "
          f"{full_log.count('torn tail')} torn tail(s) skipped")
