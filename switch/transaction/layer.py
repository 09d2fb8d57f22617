"""RFC 3261 section 17 transactions, with the RFC 6026 corrections, sans-IO.

State names are the RFC's.  Each transaction's behaviour is an explicit table keyed by
(state, input); an input with no entry in the table is a protocol violation by the peer and is
dropped (logged), never a crash.  Time is always an argument (``now``, seconds); timers go into
a shared :class:`TimerQueue` that the I/O layer drives.

Timers (RFC 3261 section 17 and table 4, RFC 6026 section 8):
  A  INVITE request retransmit, UDP only: T1, doubling           (client INVITE, Calling)
  B  INVITE transaction timeout: 64*T1                           (client INVITE, Calling)
  D  wait for response retransmits: 32 s UDP, 0 TCP              (client INVITE, Completed)
  M  wait for 2xx retransmits: 64*T1                             (client INVITE, Accepted)
  E  non-INVITE request retransmit, UDP only: T1, doubling to T2 (client non-INVITE)
  F  non-INVITE transaction timeout: 64*T1                       (client non-INVITE)
  K  wait for response retransmits: T4 UDP, 0 TCP                (client non-INVITE, Completed)
  G  INVITE response retransmit, UDP only: T1, doubling to T2   (server INVITE, Completed)
  H  wait for ACK receipt: 64*T1                                 (server INVITE, Completed)
  I  wait for ACK retransmits: T4 UDP, 0 TCP                     (server INVITE, Confirmed)
  L  wait for INVITE retransmits after 2xx: 64*T1                (server INVITE, Accepted)
  J  wait for request retransmits: 64*T1 UDP, 0 TCP              (server non-INVITE, Completed)
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Protocol

from switch.sip import ids
from switch.sip.headers import split_commas
from switch.sip.message import SipMessage
from switch.transaction.peer import Peer, Sender, response_peer
from switch.transaction.timers import TimerHandle, TimerQueue

log = logging.getLogger("trunkline.transaction")

# States (RFC 3261 figures 5-8, RFC 6026 figures 4-5).
CALLING = "Calling"
TRYING = "Trying"
PROCEEDING = "Proceeding"
COMPLETED = "Completed"
CONFIRMED = "Confirmed"
ACCEPTED = "Accepted"
TERMINATED = "Terminated"


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 table 4 defaults."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    auto_100_trying: bool = True  # RFC 3261 17.2.1: a 100 for every INVITE the TU leaves unanswered
    # ...unless the TU answers within 200 ms (17.2.1): a switch whose callee rings at once saves a
    # message per call.  0 sends the 100 immediately.
    trying_delay: float = 0.2


class ClientOwner(Protocol):
    """Who gets a client transaction's results (the call leg or registrar that sent the request)."""

    def tx_response(self, tx: ClientTransaction, msg: SipMessage, now: float) -> None: ...

    def tx_timeout(self, tx: ClientTransaction, now: float) -> None:
        """Timer B/F fired or the transport failed: act as if a 408 (or 503) arrived."""
        ...


class TransactionUser(Protocol):
    def request_received(self, tx: ServerTransaction | None, msg: SipMessage, peer: Peer, now: float) -> None:
        """A new request (tx is its server transaction) or an ACK for a 2xx (tx is None)."""
        ...

    def stray_response(self, msg: SipMessage, peer: Peer, now: float) -> None:
        """A response that matches no client transaction (e.g. a late 2xx retransmission)."""
        ...


new_branch = ids.new_branch  # re-exported: the transaction layer's users make branches here


class _NoOwner:
    """The owner of a finished client transaction: nothing more reaches anyone."""

    def tx_response(self, tx: ClientTransaction, msg: SipMessage, now: float) -> None:
        return None

    def tx_timeout(self, tx: ClientTransaction, now: float) -> None:
        return None


_NO_OWNER = _NoOwner()


class ServerTransaction:
    __slots__ = (
        "_g_interval", "_timer", "_timer_h", "_trying", "app", "is_invite", "key", "last_response", "layer",
        "peer", "request", "resp_peer", "state", "to_tag",
    )

    def __init__(self, layer: TransactionLayer, key: tuple[object, ...], request: SipMessage, peer: Peer) -> None:
        self.layer = layer
        self.key = key
        self.request = request
        self.peer = peer
        self.resp_peer = response_peer(request.via, peer)
        self.is_invite = request.method == "INVITE"
        self.state = PROCEEDING if self.is_invite else TRYING
        self.last_response: bytes | None = None
        self.to_tag: str | None = None  # for RFC 2543 ACK matching (17.2.3)
        self._timer: TimerHandle | None = None  # G, I, J or L
        self._timer_h: TimerHandle | None = None
        self._g_interval = 0.0
        self._trying: TimerHandle | None = None  # the pending automatic 100 Trying
        self.app: object = None  # the TU's per-transaction data (e.g. the call leg)

    # -- TU -> transaction -------------------------------------------------------------------
    def respond(self, response: SipMessage, now: float) -> None:
        status = response.status
        if self.state in (COMPLETED, CONFIRMED, TERMINATED) or (self.state == ACCEPTED and status < 200):
            log.debug("response %d after final on %s ignored", status, self.key)
            return
        if self.is_invite and status >= 200 and self.state == PROCEEDING and self.to_tag is None:
            self.to_tag = response.to.tag
        data = response.to_bytes()
        self.respond_bytes(data, status, now)

    def respond_bytes(self, data: bytes, status: int, now: float) -> None:
        """Send an already serialized response (the B2BUA pre-serializes what it relays)."""
        state = self.state
        layer = self.layer
        if state == ACCEPTED:
            # RFC 6026 section 7.1: 2xx retransmissions from the TU pass through in Accepted.
            if 200 <= status < 300:
                layer.sender.send(data, self.resp_peer)
            return
        if state in (COMPLETED, CONFIRMED, TERMINATED):
            return
        if self._trying is not None:
            self._trying.cancel()  # the TU answered in time: no 100 needed
            self._trying = None
        self.last_response = data
        if not layer.sender.send(data, self.resp_peer):
            self._terminate()
            return
        if status < 200:
            if state == TRYING:
                self.state = PROCEEDING
            return
        cfg = layer.config
        reliable = self.resp_peer.reliable
        if self.is_invite:
            if status < 300:
                # RFC 6026 section 7.1: Accepted absorbs INVITE retransmissions for Timer L.
                self.state = ACCEPTED
                self._timer = layer.timers.schedule(now + 64 * cfg.t1, self._fire_l)
            else:
                self.state = COMPLETED
                if not reliable:
                    self._g_interval = cfg.t1
                    self._timer = layer.timers.schedule(now + cfg.t1, self._fire_g, now + cfg.t1)
                self._timer_h = layer.timers.schedule(now + 64 * cfg.t1, self._fire_h)
        else:
            self.state = COMPLETED
            if reliable:
                self._terminate()
            else:
                self._timer = layer.timers.schedule(now + 64 * cfg.t1, self._fire_j)
        # After the final answer only the response bytes and the key matter: release the TU's
        # data and the request's headers (see SipMessage.release).
        self.app = None
        self.request.release()

    def _fire_trying(self, when: float) -> None:
        self._trying = None
        if self.state == PROCEEDING and self.last_response is None:
            self.respond_bytes(_trying(self.request), 100, when)

    def discard(self) -> None:
        """Forget this transaction without answering (a request from a blocked source)."""
        self._terminate()

    # -- network -> transaction --------------------------------------------------------------
    def _retransmission(self, msg: SipMessage, now: float, peer: Peer | None = None) -> None:
        state = self.state
        if msg.method == "ACK":
            if state == COMPLETED:
                # RFC 3261 17.2.1: ACK moves Completed to Confirmed; Timer I absorbs ACK copies.
                self.state = CONFIRMED
                if self._timer is not None:
                    self._timer.cancel()
                if self._timer_h is not None:
                    self._timer_h.cancel()
                if self.resp_peer.reliable:
                    self._terminate()
                else:
                    self._timer = self.layer.timers.schedule(now + self.layer.config.t4, self._terminate)
            elif state == ACCEPTED:
                # RFC 6026 section 7.1: an ACK matching in Accepted is passed to the TU, with
                # the address it came from (not necessarily the INVITE's).
                self.layer.tu.request_received(None, msg, peer or self.peer, now)
            return
        # A retransmitted request: resend the latest response, if any (17.2.1, 17.2.2).
        if state in (PROCEEDING, COMPLETED) and self.last_response is not None:
            self.layer.sender.send(self.last_response, self.resp_peer)

    # -- timers -------------------------------------------------------------------------------
    def _fire_g(self, when: float) -> None:
        if self.state != COMPLETED or self.last_response is None:
            return
        self.layer.sender.send(self.last_response, self.resp_peer)
        self._g_interval = min(2 * self._g_interval, self.layer.config.t2)
        nxt = when + self._g_interval
        self._timer = self.layer.timers.schedule(nxt, self._fire_g, nxt)

    def _fire_h(self) -> None:
        # RFC 3261 17.2.1: no ACK within 64*T1; the transaction ends (the TU is not told for
        # a non-2xx final: nothing remains to clean up above).
        log.info("Timer H: no ACK for %s %s", self.request.method, self.request.call_id)
        self._terminate()

    def _fire_l(self) -> None:
        self._terminate()

    def _fire_j(self) -> None:
        self._terminate()

    def _terminate(self) -> None:
        if self.state == TERMINATED:
            return
        self.state = TERMINATED
        if self._timer is not None:
            self._timer.cancel()
        if self._timer_h is not None:
            self._timer_h.cancel()
        if self._trying is not None:
            self._trying.cancel()
        self.layer._server_done(self)


class ClientTransaction:
    __slots__ = (
        "_a_interval", "_timer", "_timer_b", "ack", "app", "branch", "data", "is_invite", "key", "layer",
        "owner", "peer", "request", "state",
    )
    # _timer_b is Timer B or F, or in Proceeding the 64*T1 wait for a final after a CANCEL.

    def __init__(self, layer: TransactionLayer, request: SipMessage, peer: Peer, owner: ClientOwner,
                 branch: str) -> None:
        self.layer = layer
        self.request = request
        self.peer = peer
        self.owner = owner
        self.branch = branch
        self.is_invite = request.method == "INVITE"
        self.key = (branch, request.method)
        self.state = CALLING if self.is_invite else TRYING
        self.data = b""
        self.ack: bytes | None = None
        self._timer: TimerHandle | None = None  # A or E, then D, K or M
        self._timer_b: TimerHandle | None = None  # B or F
        self._a_interval = 0.0
        self.app: object = None

    def _start(self, now: float) -> bool:
        layer = self.layer
        cfg = layer.config
        self.data = self.request.to_bytes()
        if not layer.sender.send(self.data, self.peer):
            return False
        if not self.peer.reliable:
            self._a_interval = cfg.t1
            self._timer = layer.timers.schedule(now + cfg.t1, self._fire_retransmit, now + cfg.t1)
        self._timer_b = layer.timers.schedule(now + 64 * cfg.t1, self._fire_timeout, now + 64 * cfg.t1)
        return True

    # -- timers -------------------------------------------------------------------------------
    def _fire_retransmit(self, when: float) -> None:
        """Timer A (INVITE, Calling) or Timer E (non-INVITE, Trying/Proceeding)."""
        state = self.state
        cfg = self.layer.config
        if self.is_invite:
            if state != CALLING:
                return
            self._a_interval *= 2  # RFC 3261 17.1.1.2: Timer A doubles without a T2 cap
        else:
            if state not in (TRYING, PROCEEDING):
                return
            # RFC 3261 17.1.2.2: E doubles up to T2 in Trying; it is T2 in Proceeding.
            self._a_interval = cfg.t2 if state == PROCEEDING else min(2 * self._a_interval, cfg.t2)
        self.layer.sender.send(self.data, self.peer)
        nxt = when + self._a_interval
        self._timer = self.layer.timers.schedule(nxt, self._fire_retransmit, nxt)

    def _fire_timeout(self, when: float) -> None:
        """Timer B (INVITE, Calling) or Timer F (non-INVITE, Trying/Proceeding)."""
        if self.is_invite and self.state != CALLING:
            return
        if not self.is_invite and self.state not in (TRYING, PROCEEDING):
            return
        self._terminate()
        self.owner.tx_timeout(self, when)

    def _fire_end(self) -> None:
        """Timer D, K or M."""
        self._terminate()

    # -- network -> transaction --------------------------------------------------------------
    def _response(self, msg: SipMessage, now: float) -> None:
        status = msg.status
        state = self.state
        cfg = self.layer.config
        timers = self.layer.timers
        if self.is_invite:
            if status < 200:
                if state == CALLING:
                    self.state = PROCEEDING
                    self._cancel_timers()
                if state in (CALLING, PROCEEDING):
                    self.owner.tx_response(self, msg, now)
                return
            if status < 300:
                if state in (CALLING, PROCEEDING):
                    # RFC 6026 section 8.4: Accepted; later 2xx (other forks, retransmits) go up too.
                    self.state = ACCEPTED
                    self._cancel_timers()
                    self._timer = timers.schedule(now + 64 * cfg.t1, self._fire_end)
                    self.owner.tx_response(self, msg, now)
                    self._release()
                elif state == ACCEPTED:
                    self.owner.tx_response(self, msg, now)
                return
            # 300-699
            if state in (CALLING, PROCEEDING):
                self.state = COMPLETED
                self._cancel_timers()
                self.ack = self._build_ack(msg)
                self.layer.sender.send(self.ack, self.peer)
                if self.peer.reliable:
                    self._terminate()
                else:
                    self._timer = timers.schedule(now + 32.0, self._fire_end)
                self.owner.tx_response(self, msg, now)
                self._release()
            elif state == COMPLETED and self.ack is not None:
                self.layer.sender.send(self.ack, self.peer)  # 17.1.1.2: re-ACK retransmitted finals
            return
        # non-INVITE
        if state not in (TRYING, PROCEEDING):
            return  # Completed: a retransmitted final is absorbed
        if status < 200:
            self.state = PROCEEDING
            self.owner.tx_response(self, msg, now)
            return
        self.state = COMPLETED
        self._cancel_timers()
        if self.peer.reliable:
            self._terminate()
        else:
            self._timer = timers.schedule(now + cfg.t4, self._fire_end)
        self.owner.tx_response(self, msg, now)
        self._release()

    def _release(self) -> None:
        """After the final answer the request is never sent again: keep only what identifies it.

        The owner stays only on an INVITE in Accepted, which passes 2xx retransmissions up
        (RFC 6026 8.4) for the owner to ACK again; everything else is absorbed here.
        """
        self.data = b""
        self.request.release()
        if self.state != ACCEPTED:
            self.owner = _NO_OWNER
            self.app = None

    def _build_ack(self, response: SipMessage) -> bytes:
        """ACK for a non-2xx final (RFC 3261 section 17.1.1.3)."""
        req = self.request
        lines = [
            f"ACK {req.uri} SIP/2.0",
            # 17.1.1.3: a single Via, equal to the top Via of the original request (the first
            # header line may hold several comma-separated values).
            f"Via: {_top_via(req)}",
            "Max-Forwards: 70",
            f"From: {req.headers['from'][0]}",
            f"To: {response.headers['to'][0]}",
            f"Call-ID: {req.call_id}",
            f"CSeq: {req.cseq_num} ACK",
        ]
        for route in req.headers.get("route", ()):
            lines.append(f"Route: {route}")
        lines.append("Content-Length: 0\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape")

    def _cancel_timers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timer_b is not None:
            self._timer_b.cancel()
            self._timer_b = None

    def _terminate(self) -> None:
        if self.state == TERMINATED:
            return
        self.state = TERMINATED
        self._cancel_timers()
        self.layer._client_done(self)

    def cancel_request(self, now: float, owner: ClientOwner, *, reason: str | None = None) -> ClientTransaction | None:
        """Send CANCEL for this INVITE (RFC 3261 section 9.1): only after a provisional response."""
        if not self.is_invite or self.state != PROCEEDING:
            return None
        pending = self.layer.client.get((self.branch, "CANCEL"))
        if pending is not None:
            # One CANCEL at a time: it is retransmitted by its own transaction (17.1.2), and a
            # second one with the same branch would be the same transaction.
            return pending
        req = self.request
        h = req.headers
        # RFC 3261 9.1: same Request-URI, Call-ID, To, From, CSeq number and top Via (so the
        # same branch) as the INVITE, and the INVITE's Route set.
        headers = [("Via", _top_via(req)), ("Max-Forwards", "70"), ("From", h["from"][0]),
                   ("To", h["to"][0]), ("Call-ID", req.call_id), ("CSeq", f"{req.cseq_num} CANCEL")]
        headers += [("Route", route) for route in h.get("route", ())]
        if reason:
            headers.append(("Reason", reason))
        cancel = SipMessage.request("CANCEL", req.uri, headers)
        ctx = self.layer.send_request(cancel, self.peer, owner, now, branch=self.branch)
        if ctx is not None and self._timer_b is None:
            # RFC 3261 9.1: with no final response 64*T1 after the CANCEL, the INVITE counts as
            # cancelled and its transaction is destroyed (else a silent peer leaks it).
            self._timer_b = self.layer.timers.schedule(now + 64 * self.layer.config.t1, self._fire_cancelled,
                                                       now + 64 * self.layer.config.t1)
        return ctx

    def _fire_cancelled(self, when: float) -> None:
        if self.state != PROCEEDING:
            return
        self._terminate()
        self.owner.tx_timeout(self, when)


class TransactionLayer:
    """Matches messages to transactions, creates them and owns their timers."""

    def __init__(self, sender: Sender, timers: TimerQueue, tu: TransactionUser,
                 config: TimerConfig | None = None) -> None:
        self.sender = sender
        self.timers = timers
        self.tu = tu
        self.config = config or TimerConfig()
        self.server: dict[tuple[object, ...], ServerTransaction] = {}
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        self.dropped = 0  # messages that matched nothing and could not be used (metrics)

    # -- keys (RFC 3261 section 17.2.3) ------------------------------------------------------
    @staticmethod
    def server_key(msg: SipMessage) -> tuple[object, ...]:
        via = msg.via
        assert via is not None
        method = "INVITE" if msg.method == "ACK" else msg.method
        branch = via.params.get("branch")
        if branch is not None and len(branch) > 7 and branch.startswith("z9hG4bK"):
            return (branch, via.host, via.port, method)
        # RFC 2543 fallback: Request-URI, From tag, Call-ID, CSeq number and top Via; the To tag
        # is part of the key except for ACK, which is checked against the response's tag.
        to_tag = None if method == "INVITE" else msg.to.tag
        return ("2543", msg.uri, msg.from_.tag, msg.call_id, msg.cseq_num, method, via.raw, to_tag)

    # -- network -> layer --------------------------------------------------------------------
    def receive_request(self, msg: SipMessage, peer: Peer, now: float) -> None:
        key = self.server_key(msg)
        tx = self.server.get(key)
        if tx is not None:
            if msg.method == "ACK" and key[0] == "2543" and tx.to_tag is not None and msg.to.tag != tx.to_tag:
                # 17.2.3: for RFC 2543 ACKs the To tag must equal the one we sent.
                self.tu.request_received(None, msg, peer, now)
                return
            tx._retransmission(msg, now, peer)
            return
        if msg.method == "ACK":
            # An ACK matching no transaction acknowledges a 2xx: it belongs to the dialog (TU).
            self.tu.request_received(None, msg, peer, now)
            return
        tx = ServerTransaction(self, key, msg, peer)
        self.server[key] = tx
        cfg = self.config
        if tx.is_invite and cfg.auto_100_trying:
            if cfg.trying_delay <= 0:
                tx.respond_bytes(_trying(msg), 100, now)
            else:
                when = now + cfg.trying_delay
                tx._trying = self.timers.schedule(when, tx._fire_trying, when)
        self.tu.request_received(tx, msg, peer, now)

    def receive_response(self, msg: SipMessage, peer: Peer, now: float) -> None:
        via = msg.via
        branch = via.params.get("branch") if via is not None else None
        tx = self.client.get((branch, msg.cseq_method)) if branch else None
        if tx is None:
            self.tu.stray_response(msg, peer, now)
            return
        if peer.ip != tx.peer.ip and _is_ip(tx.peer.ip):
            # Only the element we sent the request to answers it: a response from elsewhere
            # (a guessed or sniffed branch) must not drive the transaction.
            self.dropped += 1
            log.info("response %d for %s from %s, not from %s: dropped", msg.status, tx.key, peer.ip, tx.peer.ip)
            return
        tx._response(msg, now)

    # -- TU -> layer ---------------------------------------------------------------------------
    def send_request(self, request: SipMessage, peer: Peer, owner: ClientOwner, now: float, *,
                     branch: str | None = None) -> ClientTransaction | None:
        """Start a client transaction; the request's top Via must already carry ``branch``.

        Returns None when the transport refused the request at once (the owner is not called).
        """
        if branch is None:
            via = request.via
            branch = via.branch if via is not None and via.branch else new_branch()
        tx = ClientTransaction(self, request, peer, owner, branch)
        if tx.key in self.client:
            raise ValueError(f"duplicate client transaction {tx.key}")
        self.client[tx.key] = tx
        if not tx._start(now):
            tx.state = TERMINATED
            del self.client[tx.key]
            return None
        return tx

    def send_ack_2xx(self, data: bytes, peer: Peer) -> None:
        """ACK for a 2xx is a request of its own, outside any transaction (RFC 3261 17.1.1.3)."""
        self.sender.send(data, peer)

    def find_invite_server_tx(self, cancel: SipMessage) -> ServerTransaction | None:
        """The INVITE transaction a CANCEL refers to (RFC 3261 section 9.2)."""
        key = self.server_key(cancel)
        if key[0] == "2543":
            key = ("2543", cancel.uri, cancel.from_.tag, cancel.call_id, cancel.cseq_num, "INVITE", key[6], None)
        else:
            key = (key[0], key[1], key[2], "INVITE")
        return self.server.get(key)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _server_done(self, tx: ServerTransaction) -> None:
        if self.server.get(tx.key) is tx:
            del self.server[tx.key]

    def _client_done(self, tx: ClientTransaction) -> None:
        if self.client.get(tx.key) is tx:
            del self.client[tx.key]

    def __len__(self) -> int:
        return len(self.server) + len(self.client)


def _top_via(request: SipMessage) -> str:
    """The request's topmost Via value alone (RFC 3261 sections 9.1 and 17.1.1.3)."""
    if request.via is not None:
        return request.via.raw
    return split_commas(request.headers["via"][0])[0].strip()


def _is_ip(host: str) -> bool:
    """A literal address (a Contact may name a host, whose answers come from its addresses)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _trying(request: SipMessage) -> bytes:
    """100 Trying, hop-by-hop, generated by the transaction (RFC 3261 sections 8.2.6.1, 17.2.1)."""
    h = request.headers
    lines = ["SIP/2.0 100 Trying"]
    for v in h["via"]:
        lines.append(f"Via: {v}")
    lines.append(f"From: {h['from'][0]}")
    lines.append(f"To: {h['to'][0]}")
    lines.append(f"Call-ID: {request.call_id}")
    lines.append(f"CSeq: {h['cseq'][0]}")
    ts = h.get("timestamp")
    if ts:
        lines.append(f"Timestamp: {ts[0]}")
    lines.append("Content-Length: 0\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")
