"""Registration and calls through the real switch, driven by SIPp over real sockets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import DeviceFactory, cdrs, scenario_expecting
from tests.e2e.sipp import SippBackground, run_sipp
from tests.e2e.switchproc import SwitchProcess

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(120)]

TRANSPORTS = {"udp": "u1", "tcp": "t1"}


def _register(switch: SwitchProcess, port_index: int, transport: str, user: str, pw: str, local_port: int,
              workdir: Path, scenario: str = "register_auth.xml") -> None:
    target = f"127.0.0.1:{switch.ports[port_index]}"
    r = run_sipp(scenario, target=target, local_port=local_port, workdir=workdir, transport=TRANSPORTS[transport],
                 users=[(user, pw)], timeout=15)
    assert r.ok, r.explain() + "\n--- switch log\n" + switch.log()[-3000:]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("port_index", [0, 1], ids=["port5060", "port6060"])
def test_register_with_digest(sipp_switch: SwitchProcess, devices: DeviceFactory, ports: Callable[[], int],
                              tmp_path: Path, transport: str, port_index: int) -> None:
    # The device was created through the API one second ago: it must be able to register now.
    ((user, pw, _ext),) = devices()
    _register(sipp_switch, port_index, transport, user, pw, ports(), tmp_path)
    assert "trunkline_registrations" in sipp_switch.metrics()


def test_wrong_password_is_refused(sipp_switch: SwitchProcess, devices: DeviceFactory, ports: Callable[[], int],
                                   tmp_path: Path) -> None:
    ((user, _pw, _ext),) = devices()
    _register(sipp_switch, 0, "udp", user, "Not-the-password1!", ports(), tmp_path,
              scenario="register_wrong_password.xml")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_call_between_two_registered_devices(sipp_switch: SwitchProcess, devices: DeviceFactory,
                                             ports: Callable[[], int], tmp_path: Path, transport: str) -> None:
    (caller, callee) = devices(2)
    callee_port = ports()
    port_index = 0 if transport == "udp" else 1
    _register(sipp_switch, port_index, transport, callee[0], callee[1], callee_port, tmp_path / "reg")
    uas = SippBackground("uas_answer.xml", local_port=callee_port, workdir=tmp_path / "uas",
                         transport=TRANSPORTS[transport], timeout=20)
    try:
        r = run_sipp("uac_call.xml", target=f"127.0.0.1:{sipp_switch.ports[port_index]}", local_port=ports(),
                     workdir=tmp_path / "uac", transport=TRANSPORTS[transport], users=[caller[:2]],
                     service=callee[2], timeout=20, extra=["-d", "200"])
        assert r.ok, r.explain() + "\n--- switch log\n" + sipp_switch.log()[-3000:]
        u = uas.wait()
        assert u.ok, u.explain()
    finally:
        uas.stop()
    (cdr,) = cdrs(sipp_switch, where=f"dialled_number = '{callee[2]}'")
    assert cdr["disposition"] == "ANSWERED"
    assert cdr["sip_code"] == 200
    assert cdr["q850_cause"] == 16
    assert cdr["hangup_by"] == "caller"
    assert cdr["answer_ms"] is not None and cdr["start_ms"] <= cdr["answer_ms"] <= cdr["end_ms"]
    assert cdr["duration_ms"] == cdr["end_ms"] - cdr["answer_ms"]
    assert 150 <= cdr["duration_ms"] < 5000  # SIPp held the call for 200 ms
    assert cdr["caller_number"].startswith("44207000")
    assert cdr["source_ip"] == "127.0.0.1"
    assert cdr["callee_device_id"] is not None and cdr["caller_device_id"] is not None


def test_cancel_before_answer(sipp_switch: SwitchProcess, devices: DeviceFactory, ports: Callable[[], int],
                              tmp_path: Path) -> None:
    (caller, callee) = devices(2)
    callee_port = ports()
    _register(sipp_switch, 0, "udp", callee[0], callee[1], callee_port, tmp_path / "reg")
    uas = SippBackground("uas_ring_cancel.xml", local_port=callee_port, workdir=tmp_path / "uas", timeout=20)
    try:
        r = run_sipp("uac_cancel.xml", target=f"127.0.0.1:{sipp_switch.ports[0]}", local_port=ports(),
                     workdir=tmp_path / "uac", users=[caller[:2]], service=callee[2], timeout=20)
        assert r.ok, r.explain() + "\n--- switch log\n" + sipp_switch.log()[-3000:]
        u = uas.wait()
        assert u.ok, u.explain()  # the callee got CANCEL, answered 200 and 487, got the ACK
    finally:
        uas.stop()
    (cdr,) = cdrs(sipp_switch, where=f"dialled_number = '{callee[2]}'")
    assert (cdr["sip_code"], cdr["disposition"], cdr["hangup_by"]) == (487, "CANCELLED", "caller")
    assert cdr["answer_ms"] is None and cdr["duration_ms"] == 0


def test_busy(sipp_switch: SwitchProcess, devices: DeviceFactory, ports: Callable[[], int], tmp_path: Path) -> None:
    (caller, callee) = devices(2)
    callee_port = ports()
    _register(sipp_switch, 0, "udp", callee[0], callee[1], callee_port, tmp_path / "reg")
    uas = SippBackground("uas_busy.xml", local_port=callee_port, workdir=tmp_path / "uas", timeout=20)
    try:
        r = run_sipp("uac_busy.xml", target=f"127.0.0.1:{sipp_switch.ports[0]}", local_port=ports(),
                     workdir=tmp_path / "uac", users=[caller[:2]], service=callee[2], timeout=20)
        assert r.ok, r.explain() + "\n--- switch log\n" + sipp_switch.log()[-3000:]
        assert uas.wait().ok
    finally:
        uas.stop()
    (cdr,) = cdrs(sipp_switch, where=f"dialled_number = '{callee[2]}'")
    assert (cdr["sip_code"], cdr["disposition"], cdr["q850_cause"]) == (486, "BUSY", 17)


def test_unknown_number_is_404(sipp_switch: SwitchProcess, devices: DeviceFactory, ports: Callable[[], int],
                               tmp_path: Path) -> None:
    ((user, pw, _ext),) = devices()
    r = run_sipp(scenario_expecting(tmp_path, 404), target=f"127.0.0.1:{sipp_switch.ports[0]}", local_port=ports(),
                 workdir=tmp_path / "uac", users=[(user, pw)], service="99999", timeout=15)
    assert r.ok, r.explain()
    (cdr,) = cdrs(sipp_switch, where="dialled_number = '99999'")
    assert (cdr["sip_code"], cdr["disposition"]) == (404, "NOT FOUND")


def test_callee_not_registered_is_480(sipp_switch: SwitchProcess, devices: DeviceFactory,
                                      ports: Callable[[], int], tmp_path: Path) -> None:
    (caller, callee) = devices(2)
    r = run_sipp(scenario_expecting(tmp_path, 480), target=f"127.0.0.1:{sipp_switch.ports[0]}", local_port=ports(),
                 workdir=tmp_path / "uac", users=[caller[:2]], service=callee[2], timeout=15)
    assert r.ok, r.explain()
    (cdr,) = cdrs(sipp_switch, where=f"dialled_number = '{callee[2]}'")
    assert (cdr["sip_code"], cdr["disposition"]) == (480, "UNAVAILABLE")


def test_no_answer_times_out_with_480(sipp_switch: SwitchProcess, devices: DeviceFactory,
                                      ports: Callable[[], int], tmp_path: Path) -> None:
    # The module's switch runs with a 3 s no-answer timeout: the callee rings until CANCEL.
    (caller, callee) = devices(2)
    callee_port = ports()
    _register(sipp_switch, 0, "udp", callee[0], callee[1], callee_port, tmp_path / "reg")
    uas = SippBackground("uas_ring_cancel.xml", local_port=callee_port, workdir=tmp_path / "uas", timeout=20)
    try:
        r = run_sipp(scenario_expecting(tmp_path, 480), target=f"127.0.0.1:{sipp_switch.ports[0]}",
                     local_port=ports(), workdir=tmp_path / "uac", users=[caller[:2]], service=callee[2], timeout=20)
        assert r.ok, r.explain()
        assert uas.wait().ok
    finally:
        uas.stop()
    (cdr,) = cdrs(sipp_switch, where=f"dialled_number = '{callee[2]}'")
    assert (cdr["sip_code"], cdr["disposition"], cdr["hangup_by"]) == (480, "NO ANSWER", "switch")
    assert 2500 <= cdr["end_ms"] - cdr["start_ms"] < 6000


def test_forking_first_answer_wins(sipp_switch: SwitchProcess, devices: DeviceFactory, ports: Callable[[], int],
                                   tmp_path: Path) -> None:
    """A callee registered from two phones: both ring, one answers, the other gets CANCEL."""
    (caller, callee) = devices(2)
    p1, p2 = ports(), ports()
    _register(sipp_switch, 0, "udp", callee[0], callee[1], p1, tmp_path / "reg1")
    _register(sipp_switch, 0, "udp", callee[0], callee[1], p2, tmp_path / "reg2")
    ringer = SippBackground("uas_ring_cancel.xml", local_port=p1, workdir=tmp_path / "ringer", timeout=20)
    answerer = SippBackground("uas_answer.xml", local_port=p2, workdir=tmp_path / "answerer", timeout=20)
    try:
        r = run_sipp("uac_call.xml", target=f"127.0.0.1:{sipp_switch.ports[0]}", local_port=ports(),
                     workdir=tmp_path / "uac", users=[caller[:2]], service=callee[2], timeout=20)
        assert r.ok, r.explain() + "\n--- switch log\n" + sipp_switch.log()[-3000:]
        assert answerer.wait().ok
        rr = ringer.wait()
        assert rr.ok, rr.explain()
    finally:
        ringer.stop()
        answerer.stop()
    (cdr,) = cdrs(sipp_switch, where=f"dialled_number = '{callee[2]}'")
    assert cdr["disposition"] == "ANSWERED"


def test_in_dialog_info_hold_update_relayed(sipp_switch: SwitchProcess, devices: DeviceFactory,
                                             ports: Callable[[], int], tmp_path: Path) -> None:
    """INFO (DTMF relay), a hold re-INVITE (a=sendonly -> a=recvonly) and UPDATE cross the B2BUA."""
    (caller, callee) = devices(2)
    callee_port = ports()
    _register(sipp_switch, 0, "udp", callee[0], callee[1], callee_port, tmp_path / "reg")
    uas = SippBackground("uas_answer_indialog.xml", local_port=callee_port, workdir=tmp_path / "uas", timeout=20)
    try:
        r = run_sipp("uac_call_indialog.xml", target=f"127.0.0.1:{sipp_switch.ports[0]}", local_port=ports(),
                     workdir=tmp_path / "uac", users=[caller[:2]], service=callee[2], timeout=20)
        assert r.ok, r.explain() + "\n--- switch log\n" + sipp_switch.log()[-3000:]
        u = uas.wait()
        assert u.ok, u.explain()
    finally:
        uas.stop()
    (cdr,) = cdrs(sipp_switch, where=f"dialled_number = '{callee[2]}'")
    assert (cdr["disposition"], cdr["hangup_by"]) == ("ANSWERED", "caller")


def test_callee_hangs_up(sipp_switch: SwitchProcess, devices: DeviceFactory, ports: Callable[[], int],
                         tmp_path: Path) -> None:
    (caller, callee) = devices(2)
    callee_port = ports()
    _register(sipp_switch, 0, "udp", callee[0], callee[1], callee_port, tmp_path / "reg")
    uas = SippBackground("uas_answer_then_bye.xml", local_port=callee_port, workdir=tmp_path / "uas", timeout=20,
                         extra=["-d", "300"])
    try:
        r = run_sipp("uac_call_remote_bye.xml", target=f"127.0.0.1:{sipp_switch.ports[0]}", local_port=ports(),
                     workdir=tmp_path / "uac", users=[caller[:2]], service=callee[2], timeout=20)
        assert r.ok, r.explain() + "\n--- switch log\n" + sipp_switch.log()[-3000:]
        u = uas.wait()
        assert u.ok, u.explain()
    finally:
        uas.stop()
    (cdr,) = cdrs(sipp_switch, where=f"dialled_number = '{callee[2]}'")
    assert (cdr["disposition"], cdr["hangup_by"]) == ("ANSWERED", "callee")
    assert cdr["duration_ms"] >= 250
