"""In-memory fakes and scripted SIP peers for driving a whole :class:`SwitchCore` by hand.

Nothing here touches a socket or the real clock (ARCHITECTURE.md, "Habits"): the switch sends
into :class:`Net`, which records every datagram with the hand clock's time; test peers
(:class:`UA`) put scripted SIP text through the real parser into ``core.receive``; time moves
only when a test calls :meth:`Clock.advance`, which runs every timer at its own instant, so a
retransmission's send time is exactly the instant the RFC names.

Typical use::

    h = Harness()
    bob_dev = h.add_device("bob", extension="1001")
    bob = h.ua("bob", "198.51.100.20", 5062)
    assert bob.register().status == 200
    alice = h.ua("alice", "198.51.100.10", 5061)  # an IP device (see Harness.add_ip_device)
    call = alice.call("1001")
    ...
    h.assert_idle()  # no calls, dialogs or transactions left behind
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from cdr.schema import CdrRecord
from switch.call.core import CoreConfig, SwitchCore
from switch.ports import CUSTOMER_ACTIVE, DEVICE_ACTIVE, CustomerInfo, DeviceInfo, IpDeviceInfo
from switch.registrar.auth import DeviceAuth
from switch.registrar.guard import AuthGuard
from switch.registrar.location import Binding
from switch.registrar.registrar import Registrar, RegistrarConfig
from switch.sip import ids
from switch.sip.digest import DigestAuthenticator, ha1, make_authorization
from switch.sip.headers import parse_name_addr
from switch.sip.message import SipMessage, parse_message
from switch.transaction.layer import TimerConfig
from switch.transaction.peer import Peer
from switch.transaction.timers import TimerQueue

SWITCH_IP = "203.0.113.1"  # RFC 5737 TEST-NET-3: the switch's advertised address
SWITCH_PORT = 5060
START = 1000.0  # the monotonic clock at the start of every test
WALL_OFFSET = 1_700_000_000.0  # wall clock = monotonic + this (both move together)
REALM = "trunkline"


def sdp(ip: str, port: int, direction: str | None = None, version: int = 1) -> bytes:
    """A small audio offer/answer; ``direction`` adds a=sendonly/recvonly/... (hold)."""
    lines = ["v=0", f"o=- 4242 {version} IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0",
             f"m=audio {port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"]
    if direction:
        lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


def build(start_line: str, headers: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    """SIP text from a start line and header fields; Content-Length is computed."""
    lines = [start_line, *(f"{name}: {value}" for name, value in headers), f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


# -- time -----------------------------------------------------------------------------------------


class Clock:
    """The hand clock: ``now`` is the monotonic time of the TimerQueue, ``wall()`` the epoch time."""

    def __init__(self, timers: TimerQueue, start: float = START) -> None:
        self.now = start
        self.timers = timers

    def mono(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + WALL_OFFSET

    def wall_ms(self) -> int:
        return int(self.wall() * 1000)

    def advance(self, seconds: float) -> None:
        """Move time forward, running every timer at its own deadline, in order."""
        target = self.now + seconds
        timers = self.timers
        while True:
            deadline = timers.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            timers.run_due(self.now)
        self.now = target
        timers.run_due(target)


# -- the network ----------------------------------------------------------------------------------


@dataclass
class Sent:
    """One message the switch sent: the bytes, where to, and when (hand clock)."""

    data: bytes
    peer: Peer
    at: float
    _msg: SipMessage | None = field(default=None, repr=False)

    @property
    def msg(self) -> SipMessage:
        if self._msg is None:
            self._msg = parse_message(self.data)
        return self._msg

    def __repr__(self) -> str:
        return f"<Sent {self.msg.start_line()!r} to {self.peer.ip}:{self.peer.port} at {self.at}>"


class Net:
    """The switch's Sender: records every send with the clock time; nothing is delivered."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[Sent] = []  # everything, never cleared (for topology checks)
        self.pending: list[Sent] = []  # not yet taken by a test peer
        self.down: set[tuple[str, int]] = set()  # addresses whose sends fail (a lost TCP flow)

    def send(self, data: bytes, peer: Peer) -> bool:
        if (peer.ip, peer.port) in self.down:
            return False
        item = Sent(data, peer, self.clock.now)
        self.sent.append(item)
        self.pending.append(item)
        return True

    def take(self, ip: str | None = None, port: int | None = None) -> list[Sent]:
        """Remove and return the pending sends to ``ip:port`` (any destination by default)."""
        mine = [s for s in self.pending if (ip is None or s.peer.ip == ip) and (port is None or s.peer.port == port)]
        if mine:
            ids_ = {id(s) for s in mine}
            self.pending = [s for s in self.pending if id(s) not in ids_]
        return mine

    def to(self, ip: str, port: int) -> list[Sent]:
        """Everything ever sent to ``ip:port`` (taken or not)."""
        return [s for s in self.sent if s.peer.ip == ip and s.peer.port == port]


# -- provisioning and sinks -----------------------------------------------------------------------


class FakeDirectory:
    """The Directory port, in memory; devices carry real HA1 values made from their passwords."""

    def __init__(self) -> None:
        self.customers: dict[int, CustomerInfo] = {}
        self.devices: dict[int, DeviceInfo] = {}
        self.ip_devices: list[IpDeviceInfo] = []
        self.passwords: dict[str, str] = {}
        self._ids = count(1)

    def add_customer(self, customer_id: int, *, status: str = CUSTOMER_ACTIVE, name: str = "") -> CustomerInfo:
        cust = CustomerInfo(id=customer_id, name=name or f"customer {customer_id}", status=status)
        self.customers[customer_id] = cust
        return cust

    def set_customer_status(self, customer_id: int, status: str) -> None:
        self.customers[customer_id] = dataclasses.replace(self.customers[customer_id], status=status)

    def add_device(self, username: str, *, password: str | None = None, customer_id: int = 1,
                   extension: str | None = None, caller_number: str | None = None, display_name: str | None = None,
                   status: str = DEVICE_ACTIVE, realm: str = REALM, allowed_ips: tuple[str, ...] = ()) -> DeviceInfo:
        password = password if password is not None else f"pw-{username}-1!"
        dev = DeviceInfo(id=next(self._ids), customer_id=customer_id, username=username, realm=realm,
                         ha1_md5=ha1("MD5", username, realm, password),
                         ha1_sha256=ha1("SHA-256", username, realm, password), extension=extension,
                         caller_number=caller_number, display_name=display_name, status=status,
                         allowed_ips=allowed_ips)
        self.devices[dev.id] = dev
        self.passwords[username] = password
        return dev

    def set_device_status(self, device_id: int, status: str) -> None:
        self.devices[device_id] = dataclasses.replace(self.devices[device_id], status=status)

    def add_ip_device(self, ip: str, port: int | None = None, *, customer_id: int = 1,
                      caller_number: str | None = None, tech_prefix: str = "") -> IpDeviceInfo:
        dev = IpDeviceInfo(id=100 + len(self.ip_devices) + 1, customer_id=customer_id, ip=ip, port=port,
                           caller_number=caller_number, tech_prefix=tech_prefix)
        self.ip_devices.append(dev)
        return dev

    # -- the Directory protocol --
    def device_by_username(self, username: str) -> DeviceInfo | None:
        return next((d for d in self.devices.values() if d.username == username), None)

    def device_by_id(self, device_id: int) -> DeviceInfo | None:
        return self.devices.get(device_id)

    def device_by_extension(self, customer_id: int, extension: str) -> DeviceInfo | None:
        return next((d for d in self.devices.values()
                     if d.customer_id == customer_id and d.extension == extension), None)

    def ip_device_by_source(self, ip: str, port: int) -> IpDeviceInfo | None:
        exact = next((d for d in self.ip_devices if d.ip == ip and d.port == port), None)
        return exact or next((d for d in self.ip_devices if d.ip == ip and d.port is None), None)

    def customer(self, customer_id: int) -> CustomerInfo | None:
        return self.customers.get(customer_id)


class BindingRecorder:
    """BindingSink that records what would be persisted (a snapshot of each saved binding)."""

    def __init__(self) -> None:
        self.saved_: list[Binding] = []
        self.removed_: list[tuple[str, str]] = []

    def saved(self, binding: Binding) -> None:
        self.saved_.append(dataclasses.replace(binding))

    def removed(self, aor: str, contact: str) -> None:
        self.removed_.append((aor, contact))


class CdrRecorder:
    def __init__(self) -> None:
        self.records: list[CdrRecord] = []

    def emit(self, record: CdrRecord) -> None:
        self.records.append(record)


# -- the whole core -------------------------------------------------------------------------------


class Harness:
    """A SwitchCore with real transactions, registrar, digest and guard over the fakes above."""

    def __init__(self, *, no_answer_timeout: float = 60.0, guard: dict[str, Any] | None = None,
                 registrar: RegistrarConfig | None = None, nonce_ttl: float = 300.0,
                 timers: TimerConfig | None = None, housekeeping_interval: float = 5.0) -> None:
        self.timers = TimerQueue()
        self.clock = Clock(self.timers)
        self.net = Net(self.clock)
        self.directory = FakeDirectory()
        self.directory.add_customer(1)
        self.bindings = BindingRecorder()
        self.cdrs = CdrRecorder()
        self.digest = DigestAuthenticator(secret=b"trunkline-test-nonce-secret-0001", nonce_ttl=nonce_ttl)
        self.guard = AuthGuard(**(guard or {}))
        self.auth = DeviceAuth(self.directory, self.digest, self.guard, default_realm=REALM)
        self.registrar = Registrar(self.directory, self.auth, self.bindings, registrar, to_tag=ids.new_tag,
                                   wall=self.clock.wall)
        self.core = SwitchCore(
            sender=self.net, timers=self.timers, directory=self.directory, registrar=self.registrar,
            auth=self.auth, cdr_sink=self.cdrs, local_address=lambda peer: (SWITCH_IP, peer.local_port),
            # The 100 Trying goes out at once here (trying_delay=0) so that scenarios read in wire
            # order; the 200 ms grace of RFC 3261 17.2.1 has its own tests.
            config=CoreConfig(no_answer_timeout=no_answer_timeout, timers=timers or TimerConfig(trying_delay=0),
                              housekeeping_interval=housekeeping_interval),
            wall=self.clock.wall, mono=self.clock.mono,
        )

    @property
    def now(self) -> float:
        return self.clock.now

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def deliver(self, data: bytes | str, peer: Peer) -> SipMessage:
        """Parse ``data`` as the transport would and hand it to the core, at the clock's time."""
        raw = data.encode() if isinstance(data, str) else data
        msg = parse_message(raw, stream=peer.reliable)
        self.core.receive(msg, peer, self.clock.now)
        return msg

    # -- provisioning shortcuts --
    def add_device(self, username: str, **kw: Any) -> DeviceInfo:
        return self.directory.add_device(username, **kw)

    def add_ip_device(self, ip: str, port: int | None = None, **kw: Any) -> IpDeviceInfo:
        return self.directory.add_ip_device(ip, port, **kw)

    def ua(self, user: str, ip: str, port: int, **kw: Any) -> UA:
        return UA(self, user, ip, port, **kw)

    # -- leak checks --
    def assert_idle(self, *, settle: float = 64.0) -> None:
        """No call state left; after ``settle`` seconds no transaction either (nothing leaks)."""
        core = self.core
        assert not core.calls, f"calls left: {core.calls}"
        assert not core.dialogs, f"dialogs left: {list(core.dialogs)}"
        assert core.active_calls == 0
        self.advance(settle)
        layer = core.layer
        assert len(layer) == 0, (f"transactions left: server={[(k, t.state) for k, t in layer.server.items()]} "
                                 f"client={[(k, t.state) for k, t in layer.client.items()]}")


# -- scripted peers -------------------------------------------------------------------------------

_uniq = count(1)


def challenge_for(resp: SipMessage, algorithm: str) -> str:
    """The WWW-/Proxy-Authenticate value of ``resp`` for ``algorithm``."""
    values = resp.get_all("www-authenticate") or resp.get_all("proxy-authenticate")
    for value in values:
        if f"algorithm={algorithm}," in value.replace(" ", "") + ",":
            return value
    raise AssertionError(f"no {algorithm} challenge in {values}")


class UA:
    """A scripted SIP user agent at ``ip:port``: builds requests and responses as text, sends
    them through the real parser into the core, and reads what the switch sent to it."""

    def __init__(self, h: Harness, user: str, ip: str, port: int, *, transport: str = "udp",
                 local_port: int = SWITCH_PORT, conn_id: int | None = None, password: str | None = None,
                 via_host: str | None = None, via_port: int | None = None, contact: str | None = None,
                 rport: bool = True, display: str | None = None) -> None:
        self.h = h
        self.user = user
        self.ip = ip
        self.port = port
        self.transport = transport
        self.peer = Peer(transport, ip, port, local_port, conn_id)
        self._password = password
        self.via_host = via_host or ip
        self.via_port = via_port or port
        self.contact_uri = contact or f"sip:{user}@{self.via_host}:{self.via_port}"
        self.rport = rport
        self.display = display
        self.n = next(_uniq)
        self.reg_call_id = f"reg-{user}-{self.n}@{self.via_host}"
        self.reg_cseq = 0
        self.registrar_uri = f"sip:{SWITCH_IP}"
        self.challenge: str | None = None  # the last challenge value answered
        self.nc = 0
        self._branches = count(1)

    @property
    def password(self) -> str:
        return self._password if self._password is not None else self.h.directory.passwords[self.user]

    # -- transport --
    def new_branch(self) -> str:
        return f"z9hG4bK-{self.user}-{self.n}-{next(self._branches)}"

    def via(self, branch: str) -> str:
        t = "TCP" if self.transport == "tcp" else "UDP"
        return f"SIP/2.0/{t} {self.via_host}:{self.via_port};branch={branch}" + (";rport" if self.rport else "")

    def send(self, data: bytes | str) -> SipMessage:
        return self.h.deliver(data, self.peer)

    def take_sent(self) -> list[Sent]:
        return self.h.net.take(self.ip, self.port)

    def take(self) -> list[SipMessage]:
        """What the switch sent to this UA since the last take, parsed."""
        return [s.msg for s in self.take_sent()]

    def responses(self) -> list[SipMessage]:
        return [m for m in self.take() if m.status]

    def last_response(self) -> SipMessage | None:
        rs = self.responses()
        return rs[-1] if rs else None

    # -- building --
    def request(self, method: str, uri: str, *, call_id: str, from_: str, to: str, cseq: int,
                branch: str | None = None, headers: Sequence[tuple[str, str]] = (), body: bytes = b"",
                content_type: str | None = None, contact: bool = True, max_forwards: int = 70) -> SipMessage:
        hs = [("Via", self.via(branch or self.new_branch())), ("Max-Forwards", str(max_forwards)),
              ("From", from_), ("To", to), ("Call-ID", call_id), ("CSeq", f"{cseq} {method}")]
        if contact:
            hs.append(("Contact", f"<{self.contact_uri}>"))
        hs.extend(headers)
        if body:
            hs.append(("Content-Type", content_type or "application/sdp"))
        data = build(f"{method} {uri} SIP/2.0", hs, body)
        self.send(data)
        return parse_message(data)

    def respond(self, req: SipMessage, status: int, reason: str | None = None, *, to_tag: str | None = None,
                headers: Sequence[tuple[str, str]] = (), body: bytes = b"", content_type: str | None = None,
                contact: bool | None = None) -> SipMessage:
        """A response to ``req`` (a request the switch sent us), copying what RFC 3261 8.2.6.2 says."""
        h = req.headers
        to = h["to"][0]
        if to_tag is not None and req.to.tag is None:
            to = f"{to};tag={to_tag}"
        hs = [*(("Via", v) for v in h["via"]), ("From", h["from"][0]), ("To", to), ("Call-ID", req.call_id),
              ("CSeq", h["cseq"][0])]
        if contact is None:
            contact = req.method in ("INVITE", "UPDATE") and status < 300 and status != 100
        if contact:
            hs.append(("Contact", f"<{self.contact_uri}>"))
        hs.extend(headers)
        if body:
            hs.append(("Content-Type", content_type or "application/sdp"))
        data = build(f"SIP/2.0 {status} {reason or REASONS.get(status, 'Whatever')}", hs, body)
        self.send(data)
        return parse_message(data)

    def ack_failure(self, req: SipMessage, resp: SipMessage) -> None:
        """ACK a non-2xx final to a request we sent: its branch, its To from the response (17.1.1.3)."""
        hs = [("Via", req.headers["via"][0]), ("Max-Forwards", "70"), ("From", req.headers["from"][0]),
              ("To", resp.headers["to"][0]), ("Call-ID", req.call_id), ("CSeq", f"{req.cseq_num} ACK")]
        self.send(build(f"ACK {req.uri} SIP/2.0", hs))

    def authorization(self, resp: SipMessage, method: str, uri: str, *, algorithm: str = "SHA-256",
                      username: str | None = None, password: str | None = None, nc: int | None = None) -> str:
        """Answer the challenge in ``resp`` (RFC 7616); remembers it for reuse with a higher nc."""
        self.challenge = challenge_for(resp, algorithm)
        self.nc = 1 if nc is None else nc
        return make_authorization(self.challenge, method=method, uri=uri, username=username or self.user,
                                  password=password if password is not None else self.password, nc=self.nc)

    def reuse_authorization(self, method: str, uri: str, *, nc: int | None = None, username: str | None = None,
                            password: str | None = None) -> str:
        """Credentials for the last challenge again (next nc by default, as a phone does)."""
        assert self.challenge is not None
        self.nc = self.nc + 1 if nc is None else nc
        return make_authorization(self.challenge, method=method, uri=uri, username=username or self.user,
                                  password=password if password is not None else self.password, nc=self.nc)

    # -- REGISTER --
    def register_request(self, *, contacts: Sequence[str] | None = None, expires: int | None = None,
                         headers: Sequence[tuple[str, str]] = (), authorization: str | None = None,
                         to_user: str | None = None, cseq: int | None = None,
                         call_id: str | None = None, take: bool = True) -> SipMessage | None:
        """Send one REGISTER; returns the switch's last response to it (None if none yet).

        ``take=False`` leaves what the switch sent for the test to take (a delayed answer)."""
        if cseq is None:
            self.reg_cseq += 1
            cseq = self.reg_cseq
        aor = f"sip:{to_user or self.user}@{SWITCH_IP}"
        hs: list[tuple[str, str]] = []
        for c in [f"<{self.contact_uri}>"] if contacts is None else contacts:
            hs.append(("Contact", c))
        if expires is not None:
            hs.append(("Expires", str(expires)))
        if authorization is not None:
            hs.append(("Authorization", authorization))
        hs.extend(headers)
        self.request("REGISTER", self.registrar_uri, call_id=call_id or self.reg_call_id,
                     from_=f"<{aor}>;tag=r{self.n}x{cseq}", to=f"<{aor}>", cseq=cseq, headers=hs, contact=False)
        return self.last_response() if take else None

    def register(self, *, contacts: Sequence[str] | None = None, expires: int | None = None,
                 headers: Sequence[tuple[str, str]] = (), algorithm: str = "SHA-256", username: str | None = None,
                 password: str | None = None, to_user: str | None = None) -> SipMessage | None:
        """REGISTER, answering the 401 challenge like a phone; returns the final response."""
        resp = self.register_request(contacts=contacts, expires=expires, headers=headers, to_user=to_user)
        if resp is None or resp.status != 401:
            return resp
        auth = self.authorization(resp, "REGISTER", self.registrar_uri, algorithm=algorithm, username=username,
                                  password=password)
        return self.register_request(contacts=contacts, expires=expires, headers=headers, authorization=auth,
                                     to_user=to_user)

    # -- calls --
    def call(self, number: str, *, body: bytes | None = None, headers: Sequence[tuple[str, str]] = (),
             call_id: str | None = None, from_tag: str | None = None) -> OutCall:
        """Start a call (send the INVITE); see :class:`OutCall`.  ``call_id``, ``from_tag``: reuse them."""
        call = OutCall(self, number, call_id=call_id, from_tag=from_tag)
        call.invite(body=sdp(self.via_host, 40000 + self.n * 2) if body is None else body, headers=headers)
        return call


class Dlg:
    """One dialog as a test UA sees it (RFC 3261 12.2.1.1: requests carry its From/To/Call-ID)."""

    def __init__(self, ua: UA, call_id: str, local: str, remote: str, target: str, cseq: int) -> None:
        self.ua = ua
        self.call_id = call_id
        self.local = local  # From value of our requests (with our tag)
        self.remote = remote  # To value (with the peer's tag)
        self.target = target  # Request-URI: the peer's Contact
        self.cseq = cseq

    def request(self, method: str, *, body: bytes = b"", content_type: str | None = None,
                headers: Sequence[tuple[str, str]] = (), cseq: int | None = None,
                contact: bool | None = None) -> SipMessage:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        if contact is None:
            contact = method in ("INVITE", "UPDATE")
        return self.ua.request(method, self.target, call_id=self.call_id, from_=self.local, to=self.remote,
                               cseq=cseq, headers=headers, body=body, content_type=content_type, contact=contact)

    def ack(self, cseq: int, body: bytes = b"", content_type: str | None = None) -> SipMessage:
        """ACK for a 2xx: a new transaction (new branch) with the INVITE's CSeq number (13.2.2.4)."""
        return self.request("ACK", cseq=cseq, body=body, content_type=content_type, contact=False)


def contact_uri(msg: SipMessage) -> str:
    return parse_name_addr(msg.get_all("contact")[0]).uri


class OutCall:
    """The caller's side of one call through the switch."""

    def __init__(self, ua: UA, number: str, *, call_id: str | None = None, from_tag: str | None = None) -> None:
        self.ua = ua
        n = next(_uniq)
        self.call_id = call_id or f"cid-{ua.user}-{n}-secretcaller@{ua.via_host}"
        self.from_tag = from_tag or f"ftag-{ua.user}-{n}"
        display = f'"{ua.display}" ' if ua.display else ""
        self.from_ = f"{display}<sip:{ua.user}@{ua.via_host}>;tag={self.from_tag}"
        self.to = f"<sip:{number}@{SWITCH_IP}>"
        self.ruri = f"sip:{number}@{SWITCH_IP}:{SWITCH_PORT}"
        self.cseq = 0
        self.branch = ""
        self.invite_msg: SipMessage | None = None
        self.dialog: Dlg | None = None
        self.body = b""

    def invite(self, *, body: bytes = b"", headers: Sequence[tuple[str, str]] = (),
               authorization: str | None = None, max_forwards: int = 70) -> SipMessage:
        self.cseq += 1
        self.branch = self.ua.new_branch()
        self.body = body
        hs = list(headers)
        if authorization is not None:
            hs.append(("Proxy-Authorization", authorization))
        self.invite_msg = self.ua.request("INVITE", self.ruri, call_id=self.call_id, from_=self.from_, to=self.to,
                                          cseq=self.cseq, branch=self.branch, headers=hs, body=body,
                                          max_forwards=max_forwards)
        return self.invite_msg

    def retransmit_invite(self) -> None:
        assert self.invite_msg is not None
        self.ua.send(self.invite_msg.to_bytes())

    def authenticate(self, challenge: SipMessage, *, algorithm: str = "SHA-256",
                     headers: Sequence[tuple[str, str]] = ()) -> SipMessage:
        """ACK the 407 and send the INVITE again with Proxy-Authorization (RFC 3261 22.3)."""
        self.ack_failure(challenge)
        auth = self.ua.authorization(challenge, "INVITE", self.ruri, algorithm=algorithm)
        return self.invite(body=self.body, headers=headers, authorization=auth)

    def ack_failure(self, resp: SipMessage) -> None:
        """ACK for a non-2xx final: same branch as the INVITE, To from the response (17.1.1.3)."""
        hs = [("Via", self.ua.via(self.branch)), ("Max-Forwards", "70"), ("From", self.from_),
              ("To", resp.headers["to"][0]), ("Call-ID", self.call_id), ("CSeq", f"{self.cseq} ACK")]
        self.ua.send(build(f"ACK {self.ruri} SIP/2.0", hs))

    def cancel(self) -> None:
        """CANCEL: the INVITE's branch, Request-URI, To (no tag), CSeq number (RFC 3261 9.1)."""
        hs = [("Via", self.ua.via(self.branch)), ("Max-Forwards", "70"), ("From", self.from_), ("To", self.to),
              ("Call-ID", self.call_id), ("CSeq", f"{self.cseq} CANCEL")]
        self.ua.send(build(f"CANCEL {self.ruri} SIP/2.0", hs))

    def confirm(self, resp: SipMessage) -> Dlg:
        """The dialog a 2xx (or a tagged 1xx) creates at the UAC (RFC 3261 12.1.2)."""
        self.dialog = Dlg(self.ua, self.call_id, self.from_, resp.headers["to"][0], contact_uri(resp), self.cseq)
        return self.dialog

    def ack(self, body: bytes = b"", content_type: str | None = None) -> SipMessage:
        assert self.dialog is not None
        return self.dialog.ack(self.cseq, body, content_type)


class InCall:
    """The callee's side: a received INVITE and the dialog our answers create."""

    def __init__(self, ua: UA, invite: SipMessage, to_tag: str | None = None) -> None:
        self.ua = ua
        self.invite = invite
        self.to_tag = to_tag or f"ttag-{ua.user}-{next(_uniq)}"
        self.dialog = Dlg(ua, invite.call_id, f"{invite.headers['to'][0]};tag={self.to_tag}",
                          invite.headers["from"][0], contact_uri(invite), 500)

    def respond(self, status: int, reason: str | None = None, *, body: bytes = b"", content_type: str | None = None,
                headers: Sequence[tuple[str, str]] = ()) -> SipMessage:
        tag = None if status == 100 else self.to_tag
        return self.ua.respond(self.invite, status, reason, to_tag=tag, body=body, content_type=content_type,
                               headers=headers)


REASONS = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 407: "Proxy Authentication Required", 408: "Request Timeout",
           480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 486: "Busy Here",
           487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
           603: "Decline"}


def only(msgs: Sequence[SipMessage], *, method: str | None = None, status: int | None = None) -> SipMessage:
    """The one message of ``msgs`` with that method or status (fails if there are 0 or 2+)."""
    found = [m for m in msgs if (method is None or m.method == method) and (status is None or m.status == status)]
    assert len(found) == 1, f"expected one {method or status}, got {[m.start_line() for m in msgs]}"
    return found[0]


def statuses(msgs: Sequence[SipMessage]) -> list[int]:
    return [m.status for m in msgs if m.status]


def methods(msgs: Sequence[SipMessage]) -> list[str]:
    return [m.method for m in msgs if m.method]
