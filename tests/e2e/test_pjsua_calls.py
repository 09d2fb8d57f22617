"""Real SIP phones (pjsua2) register on port 6060 and call each other through the switch.

The switch runs with its default digest algorithms (SHA-256 offered first, MD5 second), so these
tests also prove RFC 8760 SHA-256 digests against a real client.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import cdrs
from tests.e2e.switchproc import SwitchProcess
from tests.phones.harness import Phone, PhoneFactory, dominant_frequency, make_tone_wav

pytestmark = [
    pytest.mark.pjsua,
    pytest.mark.timeout(120),
    pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None, reason="pjsua2 bindings not installed"),
]


@pytest.fixture(scope="module")
def phone_switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchProcess]:
    sw = SwitchProcess(tmp_path_factory.mktemp("switch-pjsua"))
    sw.start()
    yield sw
    assert sw.stop() == 0, sw.log()


@pytest.fixture(scope="module")
def people(phone_switch: SwitchProcess) -> dict[str, dict[str, Any]]:
    cust = phone_switch.customer("Phones Inc")
    out = {}
    for i, name in enumerate(("ann", "ben", "cat", "dan")):
        pw = f"Phone-{name}-{i}!x"
        dev = phone_switch.device(cust["id"], name, pw, str(301 + i), caller_number=f"3312345{i:04d}")
        out[name] = {**dev, "password": pw}
    phone_switch.wait_provisioned()
    return out


def _registered(make_phone: PhoneFactory, sw: SwitchProcess, who: dict[str, Any], transport: str) -> Phone:
    phone = make_phone(who["username"], transport=transport)
    state = phone.register(f"sip:127.0.0.1:{sw.ports[1]};transport={transport}", who["username"],
                           who["password"], transport=transport, timeout=10)
    assert state["code"] == 200 and state["active"], (state, sw.log()[-3000:])
    return phone


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_phones_call_send_dtmf_and_a_tone_through_the_switch(
    phone_switch: SwitchProcess, people: dict[str, dict[str, Any]], make_phone: PhoneFactory, tmp_path: Path,
    transport: str,
) -> None:
    caller_info, callee_info = (people["ann"], people["ben"]) if transport == "udp" else (people["cat"], people["dan"])
    caller = _registered(make_phone, phone_switch, caller_info, transport)
    callee = _registered(make_phone, phone_switch, callee_info, transport)
    callee.set_answer("auto")
    recording = tmp_path / "heard.wav"
    callee.record(recording)
    tone = make_tone_wav(tmp_path / "tone.wav", freq_hz=1000, seconds=2.0)

    # Dial the callee's extension at the switch; the switch challenges (407) and forwards.
    caller.call(f"sip:{callee_info['extension']}@127.0.0.1:{phone_switch.ports[1]};transport={transport}")
    confirmed = caller.wait_call_state("CONFIRMED", timeout=15)
    incoming = callee.wait_for("incoming_call", timeout=5)
    callee.wait_call_state("CONFIRMED", timeout=5)
    # The callee's leg is a new dialog: the caller's Call-ID never reaches it.
    assert incoming["sip_call_id"] != confirmed["sip_call_id"]
    assert caller_info["caller_number"] in incoming["from"]

    caller.dtmf("1234#")
    assert callee.collect_dtmf(5, timeout=10) == "1234#"
    caller.play(tone)
    caller.wait_for("play_done", timeout=10)
    heard = callee.stop_record()
    assert abs(dominant_frequency(heard) - 1000.0) < 50.0

    caller.hangup()
    callee.wait_call_state("DISCONNECTED", timeout=10)
    caller.wait_call_state("DISCONNECTED", timeout=10)
    (cdr,) = cdrs(phone_switch, where=f"sip_call_id = '{confirmed['sip_call_id']}'")
    assert (cdr["disposition"], cdr["hangup_by"], cdr["sip_code"]) == ("ANSWERED", "caller", 200)
    assert cdr["duration_ms"] > 1500  # the tone alone lasted two seconds
    assert len(cdr["call_id"]) == 26 and cdr["call_id"] != cdr["sip_call_id"]  # the switch's own id


def test_hold_and_resume_through_the_switch(phone_switch: SwitchProcess, people: dict[str, dict[str, Any]],
                                            make_phone: PhoneFactory) -> None:
    caller = _registered(make_phone, phone_switch, people["ann"], "udp")
    callee = _registered(make_phone, phone_switch, people["ben"], "udp")
    callee.set_answer("auto")
    caller.call(f"sip:{people['ben']['extension']}@127.0.0.1:{phone_switch.ports[1]}")
    caller.wait_call_state("CONFIRMED", timeout=15)
    callee.wait_call_state("CONFIRMED", timeout=5)
    caller.hold()
    assert callee.wait_for("media_state", status="REMOTE_HOLD", timeout=10)["dir"] in ("recvonly", "inactive")
    caller.unhold()
    assert callee.wait_for("media_state", status="ACTIVE", dir="sendrecv", timeout=10)
    callee.hangup()  # the callee ends this one
    caller.wait_call_state("DISCONNECTED", timeout=10)


def test_busy_and_decline_reach_the_caller(phone_switch: SwitchProcess, people: dict[str, dict[str, Any]],
                                           make_phone: PhoneFactory) -> None:
    caller = _registered(make_phone, phone_switch, people["cat"], "udp")
    callee = _registered(make_phone, phone_switch, people["dan"], "udp")
    for mode, code in (("busy", 486), ("decline", 603)):
        callee.set_answer(mode)
        caller.call(f"sip:{people['dan']['extension']}@127.0.0.1:{phone_switch.ports[1]}")
        gone = caller.wait_call_state("DISCONNECTED", timeout=15)
        assert gone["code"] == code, gone
