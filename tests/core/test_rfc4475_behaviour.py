"""The 49 RFC 4475 torture messages, each fed as one UDP datagram through the real transport
(SipTransports.handle_bytes: parse, answer malformed requests, hand the rest to the core) into a
whole SwitchCore; each gets the behaviour MANIFEST.csv names.

Decisions, where the RFC leaves a choice to the element:

* The source address (192.0.2.99) is no IP device, so the valid INVITEs addressed to users the
  switch does not know are challenged (407) like any INVITE from an unauthenticated source:
  that is the switch's normal answer, and it proves the message was parsed and processed.
  (wsinv carries a To tag, so it is an in-dialog request for a dialog we do not have: 481.)
* REGISTERs are challenged (401) first: RFC 3261 10.3 authenticates (step 3) before it reads the
  Contacts (steps 6-7).  For the REGISTER messages whose point is the Contact (cparam01, cparam02,
  regescrt, regbadct) the test then provisions the message's user and sends it again with valid
  credentials: the first three register, regbadct gets its 400 (its Contact is malformed).
* novelsc (a soap.beep Request-URI): 416 by policy, as for any scheme we do not route.
* baddate: processed (the Date header is not read), which the manifest allows.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from switch.io.transport import ListenConfig, SipTransports
from switch.sip.digest import make_authorization
from switch.sip.message import parse_message
from switch.transaction.peer import Peer
from tests.core.fakes import Harness, Sent, challenge_for

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
SOURCE = Peer("udp", "192.0.2.99", 5060, 5060)

with (DATA / "MANIFEST.csv").open(newline="") as _f:
    ROWS: list[dict[str, str]] = list(csv.DictReader(_f))


class FakeLoop:
    """The two things SipTransports asks of its event loop: the time, and one timer."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.armed: list[float] = []

    def time(self) -> float:
        return self.h.clock.now

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> _Handle:
        self.armed.append(when)
        return _Handle()


class _Handle:
    def cancel(self) -> None:
        return None


class Rig:
    def __init__(self) -> None:
        self.h = Harness()
        self.transports = SipTransports(ListenConfig(), self.h.timers, loop=FakeLoop(self.h))  # type: ignore[arg-type]
        self.transports.sink = self.h.core
        self.transports.send = self.h.net.send  # type: ignore[method-assign]
        self.tu_calls = 0
        core = self.h.core
        real = core.request_received

        def counting(*args: Any) -> None:
            self.tu_calls += 1
            real(*args)

        core.request_received = counting  # type: ignore[method-assign,assignment]

    def feed(self, data: bytes) -> list[Sent]:
        self.transports.handle_bytes(data, SOURCE, stream=False)
        return self.h.net.take()


def status_of(sent: Sent) -> int:
    """The status of what the switch sent, read from the raw status line: an error response
    copies the peer's broken fields (a malformed Via ...) and need not parse again."""
    line = sent.data.split(b"\r\n", 1)[0].decode()
    m = re.match(r"SIP/2\.0 (\d{3}) ", line)
    assert m is not None, f"the switch sent a request: {line!r}"
    return int(m.group(1))


def header(sent: Sent, name: str) -> list[str]:
    head = sent.data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape")
    return [line.split(":", 1)[1].strip() for line in head.split("\r\n")[1:]
            if line.split(":", 1)[0].strip().lower() == name.lower()]


def register_with_credentials(rig: Rig, data: bytes, user: str) -> list[Sent]:
    """Send a REGISTER from the RFC again as ``user`` with valid credentials (CSeq + 1, a new
    branch, an Authorization line), every other line as in the file."""
    h = rig.h
    h.add_device(user)
    text = data.decode("utf-8", "surrogateescape")
    rig.feed(data)  # a fresh challenge for the provisioned user
    (challenge,) = [s for s in h.net.sent if s.msg.status == 401][-1:]
    auth = make_authorization(challenge_for(challenge.msg, "SHA-256"), method="REGISTER",
                              uri=parse_message(data).uri, username=user, password=h.directory.passwords[user])
    m = re.search(r"^CSeq: (\d+) REGISTER\r\n", text, re.M)
    assert m is not None
    text = text.replace(m.group(0), f"CSeq: {int(m.group(1)) + 1} REGISTER\r\nAuthorization: {auth}\r\n")
    text = re.sub(r"branch=([^;\r\n]+)", r"branch=\1-auth", text, count=1)
    return rig.feed(text.encode("utf-8", "surrogateescape"))


# -- what each message gets -------------------------------------------------------------------------

# file -> the statuses the switch sends, in order (100 Trying first for an INVITE it processes).
EXPECTED: dict[str, list[int]] = {
    # valid: parsed and processed as the switch processes any such request
    "wsinv.dat": [100, 481], "intmeth.dat": [501], "esc01.dat": [407], "escnull.dat": [401],
    "esc02.dat": [501], "lwsdisp.dat": [200], "longreq.dat": [407], "dblreq.dat": [401],
    "semiuri.dat": [200], "transports.dat": [200], "mpart01.dat": [405], "unreason.dat": [],
    "noreason.dat": [], "inv2543.dat": [407],
    # invalid
    "badinv01.dat": [400], "clerr.dat": [400], "ncl.dat": [400], "scalar02.dat": [400], "scalarlg.dat": [],
    "quotbal.dat": [400], "ltgtruri.dat": [400], "lwsruri.dat": [400], "lwsstart.dat": [400], "trws.dat": [400],
    "escruri.dat": [400], "baddate.dat": [407], "regbadct.dat": [401], "badaspec.dat": [400],
    "baddn.dat": [400], "badvers.dat": [505], "mismatch01.dat": [400], "mismatch02.dat": [400], "bigcode.dat": [],
    # semantic
    "badbranch.dat": [200], "insuf.dat": [400], "unkscm.dat": [416], "novelsc.dat": [416], "unksm2.dat": [401],
    "bext01.dat": [420], "invut.dat": [100, 415], "regaut01.dat": [401], "multi01.dat": [400],
    "mcl01.dat": [400], "bcast.dat": [], "zeromf.dat": [200], "cparam01.dat": [401], "cparam02.dat": [401],
    "regescrt.dat": [401], "sdp01.dat": [100, 406],
}

# Malformed per the parser: answered (or dropped) by the transport, never reaching the core.
PARSE_ERRORS = {"badinv01.dat", "clerr.dat", "ncl.dat", "scalar02.dat", "scalarlg.dat", "quotbal.dat",
                "ltgtruri.dat", "lwsruri.dat", "lwsstart.dat", "trws.dat", "escruri.dat", "badaspec.dat",
                "baddn.dat", "badvers.dat", "mismatch01.dat", "mismatch02.dat", "bigcode.dat", "insuf.dat",
                "multi01.dat", "mcl01.dat"}
RESPONSES = {"unreason.dat", "noreason.dat", "scalarlg.dat", "bigcode.dat", "bcast.dat"}

XFAIL: dict[str, str] = {}


def _check_bext01(rig: Rig, sent: list[Sent], data: bytes) -> None:
    (unsupported,) = header(sent[0], "Unsupported")  # RFC 3261 8.2.2.3: every tag we do not support
    assert {t.strip() for t in unsupported.split(",")} == {
        "nothingSupportsThis", "nothingSupportsThisEither", "noProxiesSupportThis", "norDoAnyProxiesSupportThis"}


def _check_invut(rig: Rig, sent: list[Sent], data: bytes) -> None:
    (accept,) = header(sent[-1], "Accept")  # RFC 3261 8.2.3: 415 lists what we accept
    assert "application/sdp" in accept


def _check_badbranch(rig: Rig, sent: list[Sent], data: bytes) -> None:
    # "z9hG4bK" alone is no RFC 3261 branch: RFC 2543 matching (RFC 3261 17.2.3) still finds the
    # transaction, so a retransmission gets the same answer again and does not reach the core twice.
    assert rig.tu_calls == 1
    again = rig.feed(data)
    assert [s.data for s in again] == [sent[0].data]
    assert rig.tu_calls == 1
    assert len(rig.h.core.layer.server) == 1


def _check_register_contact(user: str, contact: str | None) -> Callable[[Rig, list[Sent], bytes], None]:
    def check(rig: Rig, sent: list[Sent], data: bytes) -> None:
        final = register_with_credentials(rig, data, user)
        assert [status_of(s) for s in final] == ([200] if contact is not None else [400])
        bindings = rig.h.registrar.lookup(user)
        if contact is None:
            assert bindings == []  # regbadct: refused, nothing registered
        else:
            assert [b.contact for b in bindings] == [contact]

    return check


def _check_regaut01(rig: Rig, sent: list[Sent], data: bytes) -> None:
    rig.h.add_device("j.user")
    again = rig.feed(data.replace(b"z9hG4bKkdjuw", b"z9hG4bKkdjuw-2").replace(b"9338 REGISTER", b"9339 REGISTER"))
    assert [status_of(s) for s in again] == [401]  # an unknown scheme never authenticates
    assert rig.h.registrar.bindings == {}


def _check_bcast(rig: Rig, sent: list[Sent], data: bytes) -> None:
    assert rig.h.core.stats.dropped == 1  # matched no transaction: dropped, never relayed


CHECKS: dict[str, Callable[[Rig, list[Sent], bytes], None]] = {
    "bext01.dat": _check_bext01,
    "invut.dat": _check_invut,
    "badbranch.dat": _check_badbranch,
    "cparam01.dat": _check_register_contact("watson", "sip:+19725552222@gw1.example.net"),
    "cparam02.dat": _check_register_contact("watson", "sip:+19725552222@gw1.example.net;unknownparam"),
    "regescrt.dat": _check_register_contact("user", "sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
    "regbadct.dat": _check_register_contact("user", None),
    "regaut01.dat": _check_regaut01,
    "bcast.dat": _check_bcast,
}


def test_manifest_has_49_rows_and_each_an_expectation() -> None:
    assert len(ROWS) == 49
    assert {r["file"] for r in ROWS} == set(EXPECTED) == {p.name for p in DATA.glob("*.dat")}


def _param(row: dict[str, str]) -> Any:
    name = row["file"]
    marks = [pytest.mark.xfail(strict=True, reason=XFAIL[name])] if name in XFAIL else []
    return pytest.param(row, id=name, marks=marks)


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_torture_message_behaviour(row: dict[str, str]) -> None:
    name = row["file"]
    data = (DATA / name).read_bytes()
    rig = Rig()
    sent = rig.feed(data)
    statuses = [status_of(s) for s in sent]
    expected = EXPECTED[name]
    if name == "intmeth.dat":
        assert statuses in ([405], [501])  # the manifest allows either
    else:
        assert statuses == expected, f"{name} ({row['class']}): {row['what a receiving element does']}"
    # Answers go back to the sender (its Via's port, or its source port): never anywhere else.
    assert all(s.peer.ip == SOURCE.ip for s in sent)
    core = rig.h.core
    if name in PARSE_ERRORS:
        assert rig.tu_calls == 0 and len(core.layer) == 0 and core.stats.parse_errors == 1
    elif name in RESPONSES:
        assert rig.tu_calls == 0 and len(core.layer) == 0
    else:
        request = parse_message(data)
        credentials = "authorization" if request.method == "REGISTER" else "proxy-authorization"
        if statuses in ([401], [407]) and credentials not in request.headers:
            # Challenged statelessly (RFC 3261 8.2.7): no transaction, the core never sees it.
            assert rig.tu_calls == 0 and len(core.layer) == 0
        else:
            assert rig.tu_calls == 1, "a valid request reaches the core exactly once"
        for s in sent:
            # Every answer belongs to the request: its Call-ID and CSeq (RFC 3261 8.2.6.2).
            assert header(s, "Call-ID") == [request.call_id] or header(s, "i") == [request.call_id]
            assert s.msg.cseq_num == request.cseq_num
    if name in CHECKS:
        CHECKS[name](rig, sent, data)
    assert not core.calls and core.active_calls == 0
    assert rig.h.cdrs.records == []  # nothing here is an identified caller's attempt

