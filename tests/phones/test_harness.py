"""Proves the phone harness with direct phone-to-phone calls on 127.0.0.1 (no switch involved).

Phone A dials ``sip:b@127.0.0.1:<B's port>`` directly; registration is tried
against ports where nothing answers, to show failures surface as events
rather than hangs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.phones.harness import REPO_ROOT, AgentError, Phone, PhoneFactory, dominant_frequency, make_tone_wav
from tests.phones.stub_registrar import StubRegistrar

pytestmark = [
    pytest.mark.pjsua,
    pytest.mark.timeout(60),
    pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None, reason="pjsua2 bindings not installed"),
]


def _connect(make_phone: PhoneFactory, **kwargs: object) -> tuple[Phone, Phone]:
    """Two phones, B auto-answering, in a confirmed call placed by A."""
    a = make_phone("a", **kwargs)
    b = make_phone("b", **kwargs)
    b.set_answer("auto")
    a.call(b.uri)
    a.wait_call_state("CONFIRMED")
    b.wait_call_state("CONFIRMED")
    return a, b


def _unused_port(kind: socket.SocketKind) -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_direct_call_progresses_and_caller_hangup_reaches_callee(make_phone: PhoneFactory) -> None:
    a = make_phone("a")
    b = make_phone("b")
    b.set_answer("auto")
    a.call(b.uri)

    assert a.wait_call_state("CALLING")["role"] == "caller"
    assert a.wait_call_state("EARLY")["code"] == 180
    confirmed = a.wait_call_state("CONFIRMED")
    assert confirmed["code"] == 200
    incoming = b.wait_for("incoming_call")
    assert incoming["sip_call_id"] == confirmed["sip_call_id"]
    assert "sip:a@127.0.0.1" in incoming["from"]
    assert incoming["request_uri"].startswith("sip:b@127.0.0.1")
    assert incoming["headers"]["call-id"] == [confirmed["sip_call_id"]]
    b.wait_call_state("CONFIRMED")
    assert b.wait_for("media_state", since=0, status="ACTIVE")["dir"] == "sendrecv"

    a.hangup()
    gone = b.wait_call_state("DISCONNECTED")
    assert gone["sip_call_id"] == confirmed["sip_call_id"]
    assert a.wait_call_state("DISCONNECTED")["role"] == "caller"


def test_rfc4733_dtmf_arrives_exactly_and_in_order(make_phone: PhoneFactory) -> None:
    a, b = _connect(make_phone)
    a.dtmf("1234#")

    assert b.collect_dtmf(5, timeout=10) == "1234#"
    received = b.find("dtmf")
    assert [e["digit"] for e in received] == list("1234#")
    assert {e["method"] for e in received} == {"rfc2833"}
    # Each digit also ends exactly once, with the sender's default 160 ms duration.
    b.wait_for("dtmf_end", digit="#", consume=False)
    ends = b.find("dtmf_end")
    assert [e["digit"] for e in ends] == list("1234#")
    assert all(e["duration_ms"] >= 100 for e in ends)


def test_sip_info_dtmf_is_reported_with_its_method(make_phone: PhoneFactory) -> None:
    a, b = _connect(make_phone)
    a.dtmf("9*", method="sip_info")
    assert b.collect_dtmf(2) == "9*"
    assert {e["method"] for e in b.find("dtmf")} == {"sip_info"}


@pytest.mark.parametrize("codecs", [None, "PCMU"], ids=["default-codecs", "pcmu"])
def test_callee_hears_callers_1khz_tone(make_phone: PhoneFactory, tmp_path: Path, codecs: str | None) -> None:
    a, b = _connect(make_phone, codecs=codecs)
    if codecs:
        assert a.wait_for("media_state", since=0, status="ACTIVE")["codec"].startswith(codecs)
    tone = make_tone_wav(tmp_path / "tone.wav", freq_hz=1000, seconds=1.0, rate=8000)

    b.record(tmp_path / "heard.wav")
    a.play(tone)
    a.wait_for("play_done", timeout=5)
    time.sleep(0.2)  # the tail of the tone is still in B's jitter buffer
    heard = b.stop_record()

    assert abs(dominant_frequency(heard) - 1000) < 50


def test_recording_of_a_silent_call_is_reported_silent(make_phone: PhoneFactory, tmp_path: Path) -> None:
    _, b = _connect(make_phone)
    b.record(tmp_path / "quiet.wav")
    time.sleep(0.3)
    with pytest.raises(ValueError, match="silent"):
        dominant_frequency(b.stop_record())


@pytest.mark.parametrize(("mode", "code"), [("busy", 486), ("decline", 603)])
def test_rejections_reach_the_caller_with_their_code(make_phone: PhoneFactory, mode: str, code: int) -> None:
    a = make_phone("a")
    b = make_phone("b")
    b.set_answer(mode)
    a.call(b.uri)
    ended = a.wait_call_state("DISCONNECTED")
    assert ended["code"] == code
    assert not a.find("call_state", state="CONFIRMED")
    assert b.wait_call_state("DISCONNECTED")["code"] == code


def test_ring_mode_waits_for_an_explicit_answer(make_phone: PhoneFactory) -> None:
    a = make_phone("a")
    b = make_phone("b")
    b.set_answer("ring")
    a.call(b.uri)
    assert a.wait_call_state("EARLY")["code"] == 180
    b.wait_for("incoming_call")
    time.sleep(0.3)
    assert not a.find("call_state", state="CONFIRMED")
    b.answer()
    assert a.wait_call_state("CONFIRMED")["code"] == 200
    b.hangup()
    assert a.wait_call_state("DISCONNECTED")["code"] == 200


def test_hold_and_unhold_renegotiate_direction(make_phone: PhoneFactory) -> None:
    a, b = _connect(make_phone)
    a.hold()
    assert a.wait_for("media_state", status="LOCAL_HOLD")["dir"] == "sendonly"
    assert b.wait_for("media_state", status="REMOTE_HOLD")["dir"] == "recvonly"
    a.unhold()
    assert a.wait_for("media_state", status="ACTIVE")["dir"] == "sendrecv"
    assert b.wait_for("media_state", status="ACTIVE")["dir"] == "sendrecv"


def test_tcp_phones_call_each_other(make_phone: PhoneFactory) -> None:
    a, b = _connect(make_phone, transport="tcp")
    assert b.uri.endswith(";transport=tcp")
    b.hangup()
    a.wait_call_state("DISCONNECTED")


def test_armed_player_and_recorder_start_with_the_call_and_stop_at_hangup(
    make_phone: PhoneFactory, tmp_path: Path
) -> None:
    a = make_phone("a", codecs="PCMA")
    b = make_phone("b", codecs="PCMA")
    # Armed before any call exists: both attach as soon as the call has audio.
    assert a.play(make_tone_wav(tmp_path / "tone.wav", freq_hz=600, seconds=0.5), loop=True)["armed"]
    assert b.record(tmp_path / "heard.wav")["armed"]
    a.call(b.uri)
    a.wait_call_state("CONFIRMED")
    time.sleep(1.0)
    a.hangup()
    stopped = b.wait_for("record_stopped", timeout=5)
    assert stopped["reason"] == "call_ended" and stopped["complete"]
    assert abs(dominant_frequency(stopped["wav"]) - 600) < 50
    assert not a.find("play_done"), "a looping player never reports the end of its file"


def test_startup_failure_is_reported_not_hung(make_phone: PhoneFactory) -> None:
    first = make_phone("first")
    with pytest.raises(AgentError, match="fatal"):
        make_phone("second", port=first.port)  # the port is taken


def test_register_with_digest_auth_then_unregister(make_phone: PhoneFactory) -> None:
    phone = make_phone("alice")
    with StubRegistrar({"alice": "secret"}) as registrar:
        ok = phone.register(registrar.uri, "alice", "secret", expires=120, wait_timeout=10)
        assert (ok["code"], ok["active"]) == (200, True)
        assert registrar.bindings == {"alice": 120}
        assert any("Authorization: Digest" in r for r in registrar.received)

        gone = phone.unregister(wait_timeout=10)
        assert (gone["code"], gone["active"]) == (200, False)
        assert registrar.bindings == {}


@pytest.mark.parametrize(
    ("reject_code", "bad_auth_code", "code"),
    [(403, 401, 403), (None, 401, 401), (None, 403, 403)],
    ids=["forbidden", "wrong-password-rechallenged", "wrong-password-refused"],
)
def test_registration_failures_carry_their_code(
    make_phone: PhoneFactory, reject_code: int | None, bad_auth_code: int, code: int
) -> None:
    phone = make_phone("alice")
    with StubRegistrar({"alice": "secret"}, reject_code=reject_code, bad_auth_code=bad_auth_code) as registrar:
        ev = phone.register(registrar.uri, "alice", "wrong", wait_timeout=10)
        assert ev["code"] == code
        assert not ev["active"]
        time.sleep(0.3)
        assert len(phone.find("reg_state")) == 1, "a failed registration is reported once, not retried"


def test_register_over_tcp_to_a_closed_port_fails_fast_with_503(make_phone: PhoneFactory) -> None:
    phone = make_phone("alice", transport="tcp")
    port = _unused_port(socket.SOCK_STREAM)
    started = time.monotonic()
    ev = phone.register(f"sip:127.0.0.1:{port}", "alice", "secret", wait_timeout=10)
    assert ev["code"] == 503 and not ev["active"]
    assert not ev.get("local"), "the verdict should come from pjsip itself"
    assert time.monotonic() - started < 5


def test_register_over_udp_to_a_silent_port_times_out_with_408(make_phone: PhoneFactory) -> None:
    phone = make_phone("alice")
    port = _unused_port(socket.SOCK_DGRAM)
    started = time.monotonic()
    # UDP gets no ICMP-driven error in pjsip, whose own timeout is 32 s: let the agent bound it.
    ev = phone.register(f"sip:127.0.0.1:{port}", "alice", "secret", timeout=2.0, wait_timeout=10)
    assert ev["code"] in (408, 503) and not ev["active"]
    assert time.monotonic() - started < 5
    # The phone is still usable afterwards.
    assert phone.status()["registration"] is None


def test_errors_are_answered_and_timeouts_list_events(make_phone: PhoneFactory) -> None:
    phone = make_phone("a")
    with pytest.raises(AgentError, match="no active call"):
        phone.hangup()
    with pytest.raises(AgentError, match="digits"):
        phone.dtmf("12x")
    with pytest.raises(AgentError, match="unknown command"):
        phone.send("fly")
    with pytest.raises(TimeoutError) as info:
        phone.wait_for("incoming_call", timeout=0.3)
    assert '"ev": "ready"' in str(info.value)
    assert phone.ping()["port"] == phone.port


def test_agent_stdout_is_pure_json_and_stdin_eof_exits(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.phones.agent", "--port", "0", "--max-seconds", "20"],
        cwd=REPO_ROOT,
        env=env,
        input='{"cmd": "ping", "id": 7}\n',
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["ev"] for e in events] == ["ready", "ok", "exit"]
    assert events[1]["id"] == 7
    assert events[-1]["reason"] == "eof"
    assert "pjlib" in proc.stderr  # pjsip's startup banner went to stderr, not the protocol


def test_agent_leaves_by_itself_at_its_deadline(make_phone: PhoneFactory) -> None:
    phone = make_phone("a", max_seconds=1.0)
    assert phone.wait_for("exit", timeout=10)["reason"] == "deadline"
    deadline = time.monotonic() + 5
    while phone.returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert phone.returncode == 0


def test_dominant_frequency_of_generated_tones(tmp_path: Path) -> None:
    for freq in (440.0, 1000.0, 2500.0):
        wav = make_tone_wav(tmp_path / f"{freq}.wav", freq_hz=freq, seconds=0.5, rate=8000)
        assert abs(dominant_frequency(wav) - freq) < 2
