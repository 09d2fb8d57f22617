"""The only code that touches sockets and the event loop: UDP and TCP listeners for SIP.

Datagrams and stream bytes become :class:`SipMessage` objects handed to a :class:`MessageSink`
(the switch core); the core sends through :meth:`SipTransports.send`.  One ``loop.call_at``
timer drives the shared :class:`TimerQueue`.  A malformed message is answered with the parser's
status where it can be addressed (RFC 3261 section 8.2) and dropped otherwise; nothing a peer
sends can raise out of a protocol callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

from switch.sip.errors import SipError
from switch.sip.framing import PING, StreamFramer
from switch.sip.message import DEFAULT_MAX_SIZE, SipMessage, parse_message, response_for
from switch.transaction.peer import Peer, response_peer
from switch.transaction.timers import TimerQueue

log = logging.getLogger("trunkline.io")


class MessageSink(Protocol):
    def receive(self, msg: SipMessage, peer: Peer, now: float) -> None: ...

    def parse_failed(self, err: SipError, peer: Peer) -> None: ...


@dataclass(slots=True)
class ListenConfig:
    host: str = "0.0.0.0"
    ports: tuple[int, ...] = (5060, 6060)
    udp: bool = True
    tcp: bool = True
    max_message_size: int = DEFAULT_MAX_SIZE
    max_tcp_connections: int = 10000
    max_tcp_per_ip: int = 200  # one office's phones behind one NAT; a flood from one address stops here
    # A TCP connection with no traffic either way for this long is closed.  Longer than the
    # registrar's max_expires: a phone refreshes its registration over its connection in time.
    tcp_idle_timeout: float = 3900.0
    advertised_host: str | None = None  # the address written into Via/Contact; default: bound address
    extra: dict[str, str] = field(default_factory=dict)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransports, local_port: int) -> None:
        self.owner = owner
        self.local_port = local_port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's; they implement the same interface.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        owner = self.owner
        peer = Peer("udp", addr[0], addr[1], self.local_port)
        if len(data) <= 4 and not data.strip():
            return  # RFC 5626 CRLF keep-alive on UDP, or an empty datagram: nothing to answer
        owner.handle_bytes(data, peer, stream=False)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: UDP has no connection to fail; retransmission
        # timers (RFC 3261 17.1.1.2) decide when a peer is gone.
        log.debug("UDP error on port %d: %s", self.local_port, exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: SipTransports, local_port: int) -> None:
        self.owner = owner
        self.local_port = local_port
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(max_header=owner.config.max_message_size, max_body=owner.config.max_message_size)
        self.conn_id = 0
        self.peer: Peer | None = None
        self.pending: list[bytes] = []  # writes queued while an outbound connection is opening
        self.last_activity = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        owner = self.owner
        if len(owner.connections) >= owner.config.max_tcp_connections:
            log.warning("TCP connection limit reached; refusing %s", transport.get_extra_info("peername"))
            transport.abort()
            return
        addr = transport.get_extra_info("peername")
        ip = str(addr[0])
        if owner.per_ip.get(ip, 0) >= owner.config.max_tcp_per_ip:
            log.warning("TCP connection limit per address reached; refusing %s", ip)
            transport.abort()
            return
        owner.per_ip[ip] = owner.per_ip.get(ip, 0) + 1
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_id = owner._next_conn_id()
        self.peer = Peer("tcp", str(addr[0]), int(addr[1]), self.local_port, self.conn_id)
        owner.connections[self.conn_id] = self
        owner.by_addr[(self.peer.ip, self.peer.port)] = self.conn_id
        for data in self.pending:
            transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        peer = self.peer
        if peer is None or self.transport is None:
            return
        for item in self.framer.feed(data):
            if item is PING:
                self.transport.write(b"\r\n")  # RFC 5626 section 4.4.1 pong
            elif isinstance(item, SipError):
                self.owner.stream_error(item, peer)
                self.transport.close()
                return
            else:
                assert isinstance(item, bytes)
                self.owner.handle_bytes(item, peer, stream=True)

    def connection_lost(self, exc: Exception | None) -> None:
        owner = self.owner
        if self.peer is not None:
            left = owner.per_ip.get(self.peer.ip, 0) - 1
            if left > 0:
                owner.per_ip[self.peer.ip] = left
            else:
                owner.per_ip.pop(self.peer.ip, None)
        if owner.connections.get(self.conn_id) is self:
            del owner.connections[self.conn_id]
        if self.peer is not None and owner.by_addr.get((self.peer.ip, self.peer.port)) == self.conn_id:
            del owner.by_addr[(self.peer.ip, self.peer.port)]
        if owner.on_connection_lost is not None and self.conn_id:
            owner.on_connection_lost(self.conn_id)


class SipTransports:
    """All SIP listening sockets of the switch, and sending."""

    def __init__(self, config: ListenConfig, timers: TimerQueue, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config
        self.timers = timers
        self.loop = loop or asyncio.get_event_loop()
        self.sink: MessageSink | None = None
        self.udp: dict[int, _UdpProtocol] = {}
        self.tcp_servers: list[asyncio.Server] = []
        self.connections: dict[int, _TcpProtocol] = {}
        self.by_addr: dict[tuple[str, int], int] = {}
        self.per_ip: dict[str, int] = {}  # open TCP connections per remote address
        self._reaper: asyncio.TimerHandle | None = None
        self._local_for: dict[str, str] = {}  # peer ip -> our address on the route to it
        self._conn_seq = 0
        self._armed: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        self.on_connection_lost: Callable[[int], None] | None = None
        self.bound: list[tuple[str, str, int]] = []  # (transport, host, port) actually listening
        self.parse_errors = 0
        self.sent = 0
        self.received = 0

    def _next_conn_id(self) -> int:
        self._conn_seq += 1
        return self._conn_seq

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        loop = self.loop
        for port in cfg.ports:
            if cfg.udp:
                _t, proto = await loop.create_datagram_endpoint(
                    lambda port=port: _UdpProtocol(self, port),  # type: ignore[misc]
                    local_addr=(cfg.host, port),
                    reuse_port=False,
                )
                sock = _t.get_extra_info("socket")
                if sock is not None:
                    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                        with contextlib.suppress(OSError):
                            sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
                self.udp[port] = proto
                self.bound.append(("udp", cfg.host, port))
            if cfg.tcp:
                server = await loop.create_server(
                    lambda port=port: _TcpProtocol(self, port),  # type: ignore[misc]
                    host=cfg.host, port=port, reuse_address=True, backlog=1024,
                )
                self.tcp_servers.append(server)
                self.bound.append(("tcp", cfg.host, port))
        log.info("SIP listening on %s", ", ".join(f"{t}:{h}:{p}" for t, h, p in self.bound))
        if cfg.tcp:
            self._reaper = loop.call_later(60.0, self._reap_idle)

    def _reap_idle(self) -> None:
        """Close TCP connections idle longer than tcp_idle_timeout (no keep-alive, no SIP)."""
        limit = time.monotonic() - self.config.tcp_idle_timeout
        for conn in list(self.connections.values()):
            if conn.last_activity < limit and conn.transport is not None:
                log.info("closing idle TCP connection from %s", conn.peer)
                conn.transport.close()
        self._reaper = self.loop.call_later(60.0, self._reap_idle)

    async def stop(self) -> None:
        if self._armed is not None:
            self._armed.cancel()
        if self._reaper is not None:
            self._reaper.cancel()
        for proto in self.udp.values():
            if proto.transport is not None:
                proto.transport.close()
        for server in self.tcp_servers:
            server.close()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for server in self.tcp_servers:
            await server.wait_closed()

    # -- receive path ----------------------------------------------------------------------------
    def handle_bytes(self, data: bytes, peer: Peer, *, stream: bool) -> None:
        sink = self.sink
        assert sink is not None
        self.received += 1
        try:
            msg = parse_message(data, stream=stream, max_size=self.config.max_message_size)
        except SipError as err:
            self.parse_errors += 1
            self._answer_error(err, peer)
            sink.parse_failed(err, peer)
            return
        now = self.loop.time()
        try:
            sink.receive(msg, peer, now)
        except Exception:  # a bug of ours must not kill the listener (logged with the Call-ID)
            log.exception("error handling %s from %s (Call-ID %s)", msg.start_line(), peer, msg.call_id)
        self.arm_timer()

    def _answer_error(self, err: SipError, peer: Peer) -> None:
        """Answer a malformed request with the parser's status, if it can be addressed."""
        msg = err.message
        if err.drop or not isinstance(msg, SipMessage) or not msg.method or msg.method == "ACK":
            log.debug("dropped malformed message from %s: %s", peer, err)
            return
        h = msg.headers
        if not h.get("via"):
            log.debug("dropped unanswerable request from %s: %s", peer, err)
            return
        # RFC 3261 8.2.6.2: copy what the request has; one value each, even if it sent several.
        for key in ("from", "to", "call-id", "cseq"):
            if key in h:
                h[key] = h[key][:1]
        resp = response_for(msg, err.status, err.reason, to_tag="tlerr", headers=err.extra_headers)
        log.info("answered %d %s to %s (Call-ID %s)", err.status, err.reason, peer, msg.call_id)
        self.send(resp.to_bytes(), response_peer(msg.via, peer))

    def stream_error(self, err: SipError, peer: Peer) -> None:
        """A framing error on a stream: answer if the head is readable, then the caller closes."""
        raw = err.message
        if isinstance(raw, bytes):
            msg: SipMessage | None
            try:
                msg = parse_message(raw + b"\r\n\r\n", stream=False, max_size=len(raw) + 8)
            except SipError as inner:
                msg = inner.message if isinstance(inner.message, SipMessage) else None
            if msg is not None:
                err.message = msg
                self._answer_error(err, peer)
        self.parse_errors += 1
        log.info("closing TCP connection from %s: %s", peer, err)

    # -- send path -------------------------------------------------------------------------------
    def send(self, data: bytes, peer: Peer) -> bool:
        self.sent += 1
        if peer.transport == "udp":
            proto = self.udp.get(peer.local_port) or next(iter(self.udp.values()), None)
            if proto is None or proto.transport is None:
                return False
            proto.transport.sendto(data, (peer.ip, peer.port))
            return True
        conn = self.connections.get(peer.conn_id) if peer.conn_id is not None else None
        if conn is None:
            cid = self.by_addr.get((peer.ip, peer.port))
            conn = self.connections.get(cid) if cid is not None else None
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            conn.last_activity = time.monotonic()
            return True
        if peer.conn_id is not None:
            return False  # the connection the peer is bound to is gone (RFC 5626 flow failed)
        self._connect_and_send(data, peer)
        return True

    def _connect_and_send(self, data: bytes, peer: Peer) -> None:
        """Open an outbound TCP connection (RFC 3261 18.1.1) and write once it is up."""
        proto = _TcpProtocol(self, peer.local_port)
        proto.pending.append(data)

        async def connect() -> None:
            try:
                await asyncio.wait_for(
                    self.loop.create_connection(lambda: proto, host=peer.ip, port=peer.port), timeout=5.0
                )
            except (OSError, TimeoutError) as exc:
                log.info("TCP connect to %s:%d failed: %s", peer.ip, peer.port, exc)

        self.loop.create_task(connect())

    # -- timers ----------------------------------------------------------------------------------
    def arm_timer(self) -> None:
        deadline = self.timers.next_deadline()
        if deadline is None:
            return
        armed_at = self._armed_at
        if armed_at is not None and armed_at <= deadline:
            return
        if self._armed is not None:
            self._armed.cancel()
        self._armed_at = deadline
        self._armed = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._armed = None
        self._armed_at = None
        try:
            self.timers.run_due(self.loop.time())
        except Exception:
            log.exception("timer callback failed")
        self.arm_timer()

    def local_address(self, peer: Peer) -> tuple[str, int]:
        """The address to put in Via/Contact for messages sent to ``peer``.

        ``advertised_host`` when set (a switch behind NAT), else the bound address, else -- bound to
        all interfaces -- the address this host uses on the route to the peer, so that a phone
        on the LAN gets the LAN address and a loopback peer 127.0.0.1 (hostname lookups are no
        use: Debian maps the host name to 127.0.1.1).
        """
        host = self.config.advertised_host
        if host is None:
            host = self.config.host
            if host in ("0.0.0.0", "::"):
                host = self._local_for.get(peer.ip) or self._route_source(peer.ip)
        return host, peer.local_port

    def _route_source(self, ip: str) -> str:
        """Our source address toward ``ip``: a UDP connect() only selects a route, it sends nothing."""
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((ip, 9))
                local = str(s.getsockname()[0])
        except OSError:
            local = "127.0.0.1" if family == socket.AF_INET else "::1"
        if len(self._local_for) > 10000:
            self._local_for.clear()
        self._local_for[ip] = local
        return local
