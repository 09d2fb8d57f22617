"""A hand-driven harness for the transaction layer: a fake network and a clock.

``Net`` holds a :class:`TransactionLayer` whose sender records ``(data, peer, now)`` and whose
timers run only when a test moves the clock (``net.run_until(t)`` fires every timer due by ``t``
at its own instant, as the event loop would).  Messages are built as text and go through the
real parser, so the transactions see exactly what the wire would give them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from switch.sip.message import SipMessage, parse_message
from switch.transaction.layer import ClientTransaction, ServerTransaction, TimerConfig, TransactionLayer
from switch.transaction.peer import Peer
from switch.transaction.timers import TimerQueue

UDP = Peer("udp", "192.0.2.10", 5060, 5060)
TCP = Peer("tcp", "192.0.2.10", 40000, 5060, conn_id=7)
UAS_UDP = Peer("udp", "198.51.100.20", 5060, 5060)
UAS_TCP = Peer("tcp", "198.51.100.20", 5060, 5060, conn_id=8)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0


@dataclass
class Sent:
    data: bytes
    peer: Peer
    at: float

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode()

    @property
    def msg(self) -> SipMessage:
        return parse_message(self.data)


class FakeSender:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[Sent] = []
        self.refuse = False  # True: the transport cannot send (e.g. the TCP connection is gone)

    def send(self, data: bytes, peer: Peer) -> bool:
        self.sent.append(Sent(data, peer, self.clock.now))
        return not self.refuse


@dataclass
class RecordingTU:
    requests: list[tuple[ServerTransaction | None, SipMessage, Peer, float]] = field(default_factory=list)
    strays: list[tuple[SipMessage, Peer, float]] = field(default_factory=list)

    def request_received(self, tx: ServerTransaction | None, msg: SipMessage, peer: Peer, now: float) -> None:
        self.requests.append((tx, msg, peer, now))

    def stray_response(self, msg: SipMessage, peer: Peer, now: float) -> None:
        self.strays.append((msg, peer, now))


@dataclass
class RecordingOwner:
    responses: list[tuple[ClientTransaction, SipMessage, float]] = field(default_factory=list)
    timeouts: list[tuple[ClientTransaction, float]] = field(default_factory=list)

    def tx_response(self, tx: ClientTransaction, msg: SipMessage, now: float) -> None:
        self.responses.append((tx, msg, now))

    def tx_timeout(self, tx: ClientTransaction, now: float) -> None:
        self.timeouts.append((tx, now))

    @property
    def statuses(self) -> list[int]:
        return [msg.status for _tx, msg, _now in self.responses]


class Net:
    def __init__(self, config: TimerConfig | None = None) -> None:
        self.clock = Clock()
        self.sender = FakeSender(self.clock)
        self.timers = TimerQueue()
        self.tu = RecordingTU()
        # Most tests look at the 100 Trying as the first thing sent: send it at once unless a
        # test configures the RFC 3261 17.2.1 200 ms grace itself.
        self.layer = TransactionLayer(self.sender, self.timers, self.tu, config or TimerConfig(trying_delay=0))

    @property
    def now(self) -> float:
        return self.clock.now

    def run_until(self, t: float) -> None:
        """Fire every timer due by ``t``, each at its own instant, then set the clock to ``t``."""
        assert t >= self.clock.now
        while True:
            deadline = self.timers.next_deadline()
            if deadline is None or deadline > t:
                break
            self.clock.now = max(self.clock.now, deadline)
            self.timers.run_due(deadline)
        self.clock.now = t

    @property
    def sent(self) -> list[Sent]:
        return self.sender.sent

    def sent_lines(self) -> list[tuple[str, float]]:
        return [(s.first_line, s.at) for s in self.sender.sent]

    def times(self, first_line_prefix: str) -> list[float]:
        return [s.at for s in self.sender.sent if s.first_line.startswith(first_line_prefix)]

    def clear(self) -> None:
        self.sender.sent.clear()

    # -- network -> layer -----------------------------------------------------------------------------
    def request_in(self, data: bytes, peer: Peer = UDP, at: float | None = None) -> SipMessage:
        if at is not None:
            self.run_until(at)
        msg = parse_message(data)
        self.layer.receive_request(msg, peer, self.now)
        return msg

    def response_in(self, data: bytes, peer: Peer = UAS_UDP, at: float | None = None) -> SipMessage:
        if at is not None:
            self.run_until(at)
        msg = parse_message(data)
        self.layer.receive_response(msg, peer, self.now)
        return msg

    # -- TU -> layer ------------------------------------------------------------------------------------
    def send(self, data: bytes, peer: Peer = UAS_UDP, owner: RecordingOwner | None = None,
             at: float | None = None) -> ClientTransaction:
        if at is not None:
            self.run_until(at)
        tx = self.layer.send_request(parse_message(data), peer, owner or RecordingOwner(), self.now)
        assert tx is not None
        return tx


# -- message text --------------------------------------------------------------------------------------

def request(method: str = "INVITE", *, branch: str | None = "z9hG4bKc1a2", sent_by: str = "192.0.2.10:5060",
            transport: str = "UDP", cseq: int = 1, cseq_method: str | None = None, to_tag: str | None = None,
            from_tag: str = "f00", call_id: str = "call-1@192.0.2.10", uri: str = "sip:bob@198.51.100.20",
            extra: tuple[str, ...] = (), body: bytes = b"", rport: bool = False) -> bytes:
    via = f"Via: SIP/2.0/{transport} {sent_by}"
    if branch is not None:
        via += f";branch={branch}"
    if rport:
        via += ";rport"
    to = "To: Bob <sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        via,
        "Max-Forwards: 70",
        to,
        f"From: Alice <sip:alice@example.org>;tag={from_tag}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:alice@192.0.2.10>",
        *extra,
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response_to(req: bytes | SipMessage, status: int, reason: str = "", *, to_tag: str | None = "t0",
                extra: tuple[str, ...] = ()) -> bytes:
    """A response as a UAS would build it (RFC 3261 section 8.2.6.2) to a request's text."""
    msg = parse_message(req) if isinstance(req, bytes) else req
    h = msg.headers
    to = h["to"][0]
    if to_tag is not None and msg.to.tag is None:
        to += f";tag={to_tag}"
    lines = [f"SIP/2.0 {status} {reason or 'Reason'}", *(f"Via: {v}" for v in h["via"]), f"To: {to}",
             f"From: {h['from'][0]}", f"Call-ID: {msg.call_id}", f"CSeq: {h['cseq'][0]}", *extra, "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def build_response(tx: ServerTransaction, status: int, reason: str = "", to_tag: str = "uas1") -> SipMessage:
    from switch.sip.message import response_for

    return response_for(tx.request, status, reason or "Reason", to_tag=to_tag)
