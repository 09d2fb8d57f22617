"""The switch core: the transaction user that dispatches every request and response.

It sits between the transport (which hands it parsed messages) and the registrar and the
B2BUA.  Requests outside a dialog are checked the way RFC 3261 section 8.2 orders a UAS's
checks (method, Request-URI scheme 416, extensions 420, content 415, Accept 406), plus the
proxy-like checks a B2BUA needs before it forwards (Max-Forwards 483, loop 482).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cdr.schema import CALL_TYPE_EXTENSION, DIRECTION_INTERNAL, HANGUP_SWITCH, CdrRecord, disposition_for_sip
from cdr.schema import q850_for_sip as _q850
from cdr.sink import CdrSink
from switch.call.b2bua import ALLOW, Call, Party
from switch.dialog.dialog import Dialog
from switch.ports import CUSTOMER_ACTIVE, CUSTOMER_CLOSED, CUSTOMER_STOPPED, Directory
from switch.registrar.auth import BAD, BLOCKED, CHALLENGE, OK, DeviceAuth
from switch.registrar.registrar import Registrar
from switch.sip import ids
from switch.sip.errors import SipError
from switch.sip.message import SipMessage, response_for
from switch.sip.uri import unescape
from switch.transaction.layer import (
    ServerTransaction,
    TimerConfig,
    TransactionLayer,
)
from switch.transaction.peer import Peer, Sender, response_peer
from switch.transaction.timers import TimerQueue

log = logging.getLogger("trunkline.core")

_OUR_BRANCH = ids.BRANCH_PREFIX  # the per-process prefix of every branch we make
KNOWN_METHODS = frozenset(
    ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "UPDATE", "INFO", "PRACK", "SUBSCRIBE",
     "NOTIFY", "PUBLISH", "MESSAGE", "REFER")
)
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()  # option tags we implement (RFC 3261 20.37)
SDP = "application/sdp"


@dataclass(frozen=True, slots=True)
class CoreConfig:
    no_answer_timeout: float = 60.0
    timers: TimerConfig = field(default_factory=TimerConfig)
    housekeeping_interval: float = 2.0
    user_agent: str = "Trunkline"


class Stats:
    """Plain counters read by the metrics exporter at scrape time (nothing slow on the hot path)."""

    __slots__ = ("calls_started", "cdrs", "dropped", "parse_errors", "requests", "responses")

    def __init__(self) -> None:
        self.responses: dict[int, int] = {}
        self.requests: dict[str, int] = {}
        self.parse_errors = 0
        self.dropped = 0
        self.calls_started = 0
        self.cdrs = 0

    def response(self, code: int) -> None:
        self.responses[code] = self.responses.get(code, 0) + 1


_CALLER_ID_RE = re.compile(r"[0-9A-Za-z+*#._-]{1,64}")


def _clean_display(display: str | None) -> str | None:
    """A display name without control characters, at most 64 characters, or None."""
    if not display:
        return None
    cleaned = "".join(ch for ch in display if ch >= " " and ch != "\x7f")[:64].strip()
    return cleaned or None


_RPORT_RE = re.compile(r";[ \t]*rport(?=[ \t]*(?:;|$))", re.I)


def stamp_received(msg: SipMessage, peer: Peer) -> None:
    """Record where the request really came from in its top Via (RFC 3261 18.2.1, RFC 3581 4).

    ``received`` is added when the sent-by host is not the source address; a valueless
    ``rport`` gets the source port.  Responses copy the Via, so the client learns its public
    address, and proxies on the way back route by it.
    """
    lines = msg.headers["via"]
    first = lines[0]
    top, sep, rest = first.partition(",") if "," in first else (first, "", "")
    via = msg.via
    assert via is not None
    if "received" not in via.params:
        top = f"{top.rstrip()};received={peer.ip}"
    if "rport" in via.params and not via.params["rport"]:
        top = _RPORT_RE.sub(f";rport={peer.port}", top, count=1)
    lines[0] = top + sep + rest


class SwitchCore:
    def __init__(self, *, sender: Sender, timers: TimerQueue, directory: Directory, registrar: Registrar,
                 auth: DeviceAuth, cdr_sink: CdrSink, local_address: Callable[[Peer], tuple[str, int]],
                 config: CoreConfig | None = None, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self.config = config or CoreConfig()
        self.sender = sender
        self.timers = timers
        self.directory = directory
        self.registrar = registrar
        self.auth = auth
        self.cdr_sink = cdr_sink
        self.local_address = local_address
        self.wall = wall
        self.mono = mono  # the clock of the timer queue (the event loop's time)
        auth.on_block = self._blocked_by_guard
        self.layer = TransactionLayer(sender, timers, self, self.config.timers)
        self.dialogs: dict[tuple[str, str], tuple[Call, Dialog]] = {}
        self.calls: dict[int, Call] = {}
        self.active_calls = 0
        self.stats = Stats()
        self.blocked: dict[str, float] = {}  # source ip -> blocked until (monotonic)
        self._housekeeping = timers.schedule(mono() + self.config.housekeeping_interval, self._housekeep)

    # -- ids and addresses ---------------------------------------------------------------------
    new_tag = staticmethod(ids.new_tag)
    new_call_id = staticmethod(ids.new_call_id)
    new_attempt_id = staticmethod(ids.new_attempt_id)  # CdrRecord.call_id, from the wall-clock ms

    def wall_ms(self) -> int:
        return int(self.wall() * 1000)

    def contact_for(self, peer: Peer) -> str:
        host, port = self.local_address(peer)
        if ":" in host:
            host = f"[{host}]"
        if peer.transport == "tcp":
            return f"<sip:trunkline@{host}:{port};transport=tcp>"
        return f"<sip:trunkline@{host}:{port}>"

    def transports_send(self, data: bytes, peer: Peer) -> None:
        self.sender.send(data, peer)

    def emit_cdr(self, record: CdrRecord) -> None:
        self.stats.cdrs += 1
        try:
            self.cdr_sink.emit(record)
        except Exception:  # the sink's failure must not take the call path down; it logs its own
            log.exception("CDR sink failed for CDR %s (Call-ID %s)", record.call_id, record.sip_call_id)

    # -- transport -> core ---------------------------------------------------------------------
    def receive(self, msg: SipMessage, peer: Peer, now: float) -> None:
        if msg.status:
            self.layer.receive_response(msg, peer, now)
            return
        blocked = self.blocked
        if blocked and peer.ip in blocked:
            if blocked[peer.ip] <= now:
                del blocked[peer.ip]
            elif msg.to.tag is None and self.directory.ip_device_by_source(peer.ip, peer.port) is None:
                # A blocked source loses new requests only: calls already up (in-dialog requests)
                # and a trunk provisioned on the same address keep working.
                self.stats.dropped += 1
                return
        requests = self.stats.requests
        method = msg.method
        label = method if method in KNOWN_METHODS else "other"  # peers must not grow our metrics
        requests[label] = requests.get(label, 0) + 1
        via = msg.via
        if via is not None and (via.host != peer.ip or "rport" in via.params):
            stamp_received(msg, peer)
        if ((method == "REGISTER" and "authorization" not in msg.headers) or (
                method == "INVITE" and "proxy-authorization" not in msg.headers and msg.to.tag is None
                and self.directory.ip_device_by_source(peer.ip, peer.port) is None)) \
                and self._challenge_statelessly(msg, peer):
            return
        self.layer.receive_request(msg, peer, now)

    def _challenge_statelessly(self, msg: SipMessage, peer: Peer) -> bool:
        """Answer a request without credentials with a challenge and no transaction state.

        RFC 3261 8.2.7: challenges are what stateless UAS behaviour is for.  A retransmission
        gets a fresh challenge.  Besides saving a transaction for half of all REGISTERs and
        INVITEs, it keeps the switch from amplifying a spoofed INVITE: a stateful 407 would be
        retransmitted by Timer G a dozen times to whatever address the packet claimed.
        """
        if self._check_request(msg) is not None:
            return False  # let the transaction path give the precise refusal
        try:
            if msg.method == "REGISTER":
                resp = self.registrar.challenge(msg)
            else:
                decision = self.auth.challenge(msg, self.wall(), proxy=True)
                resp = response_for(msg, decision.status, decision.reason, to_tag=self.new_tag(),
                                    headers=decision.headers or ())
        except SipError as exc:
            resp = response_for(msg, 400, exc.reason, to_tag=self.new_tag())
        self.sender.send(resp.to_bytes(), response_peer(msg.via, peer))
        self.stats.response(resp.status)
        return True

    def parse_failed(self, err: SipError, peer: Peer) -> None:
        self.stats.parse_errors += 1
        if not err.drop:
            self.stats.response(err.status)

    # -- TransactionUser -------------------------------------------------------------------------
    def request_received(self, tx: ServerTransaction | None, msg: SipMessage, peer: Peer, now: float) -> None:
        try:
            self._request(tx, msg, peer, now)
        except SipError as exc:
            # A field parsed lazily (a From URI, a Contact ...) turned out malformed: the peer's fault.
            log.info("bad %s from %s (Call-ID %s): %s", msg.method, peer, msg.call_id, exc.reason)
            if (tx is not None and tx.last_response is None) or (tx is not None and tx.is_invite
                                                               and tx.state == "Proceeding"):
                self.reply(tx, 400, exc.reason, now)

    def _request(self, tx: ServerTransaction | None, msg: SipMessage, peer: Peer, now: float) -> None:
        if tx is None:
            self._ack(msg, peer, now)
            return
        method = msg.method
        to_tag = msg.to.tag
        if to_tag is not None and method != "CANCEL":
            entry = self.dialogs.get((msg.call_id, to_tag))
            if entry is None or entry[1].remote_ip != peer.ip:
                # RFC 3261 12.2.2: a request in a dialog we do not know.  A request naming a dialog
                # but coming from another address than the dialog's peer is answered the same way:
                # knowing a Call-ID and tags must not let a stranger end or redirect a call.
                if entry is not None:
                    log.warning("%s for Call-ID %s from %s, not from its peer %s: refused", method,
                                msg.call_id, peer.ip, entry[1].remote_ip)
                self.reply(tx, 481, "Call/Transaction Does Not Exist", now)
                return
            call, dialog = entry
            call.in_dialog(dialog, tx, msg, now)
            return
        if method == "CANCEL":
            self._cancel(tx, msg, now)
            return
        refusal = self._check_request(msg)
        if refusal is not None:
            status, reason, headers = refusal
            self.reply(tx, status, reason, now, headers=headers)
            return
        if method == "INVITE":
            self._invite(tx, msg, peer, now)
        elif method == "REGISTER":
            self._register(tx, msg, peer, now)
        elif method == "OPTIONS":
            # RFC 3261 section 11.2: answer as we would an INVITE, listing what we do.
            self.reply(tx, 200, "OK", now, headers=[("Allow", ALLOW), ("Accept", SDP)])
        elif method in ("BYE", "UPDATE", "INFO", "PRACK"):
            self.reply(tx, 481, "Call/Transaction Does Not Exist", now)
        elif method in KNOWN_METHODS:
            self.reply(tx, 405, "Method Not Allowed", now, headers=[("Allow", ALLOW)])
        else:
            # RFC 3261 8.2.1: a method we do not recognise.
            self.reply(tx, 501, "Not Implemented", now, headers=[("Allow", ALLOW)])

    def stray_response(self, msg: SipMessage, peer: Peer, now: float) -> None:
        """A response for no live transaction: a late 2xx for a leg still gets its ACK again."""
        if msg.cseq_method == "INVITE" and 200 <= msg.status < 300:
            entry = self.dialogs.get((msg.call_id, msg.from_.tag or ""))
            if entry is not None:
                call, dialog = entry
                for leg in call.legs:
                    if leg.dialog is dialog and leg.ack is not None:
                        self.layer.send_ack_2xx(leg.ack, dialog.peer)
                        return
        self.stats.dropped += 1

    # -- checks ----------------------------------------------------------------------------------
    def _check_request(self, msg: SipMessage) -> tuple[int, str, list[tuple[str, str]]] | None:
        method = msg.method
        via = msg.via
        if via is not None and via.branch is not None and via.branch.startswith(_OUR_BRANCH):
            # RFC 3261 16.3 item 4: our own request came back to us: a loop.
            return (482, "Loop Detected", [])
        ruri = msg.request_uri
        if ruri.scheme not in ("sip", "sips", "tel"):
            return (416, "Unsupported URI Scheme", [])  # RFC 3261 8.2.2.1
        h = msg.headers
        unsupported = [tag for key in ("require", "proxy-require") if key in h for tag in msg.get_all(key)
                       if tag.lower() not in SUPPORTED_EXTENSIONS]
        if unsupported:
            # RFC 3261 8.2.2.3: 420 listing every option tag we do not understand.
            return (420, "Bad Extension", [("Unsupported", ", ".join(unsupported))])
        if msg.max_forwards == 0 and method not in ("OPTIONS", "REGISTER"):
            return (483, "Too Many Hops", [])  # RFC 3261 16.3 item 2: we would forward it
        if method == "INVITE":
            if msg.body:
                ctype = msg.content_type
                if ctype != SDP:
                    # RFC 3261 8.2.3: a body we cannot process: 415 with what we accept.
                    return (415, "Unsupported Media Type", [("Accept", SDP)])
            if "accept" in h:
                types = {a.split(";", 1)[0].strip().lower() for a in msg.get_all("accept")}
                if not types & {SDP, "application/*", "*/*"}:
                    # RFC 3261 21.4.7: we can answer only with SDP.
                    return (406, "Not Acceptable", [("Accept", SDP)])
        return None

    # -- responses -------------------------------------------------------------------------------
    def reply(self, tx: ServerTransaction, status: int, reason: str, now: float, *,
              headers: list[tuple[str, str]] | None = None, delay: float = 0.0) -> None:
        resp = response_for(tx.request, status, reason, to_tag=self.new_tag(), headers=headers or ())
        if delay > 0:
            self.timers.schedule(now + delay, self._delayed_reply, tx, resp, now + delay)
            return
        tx.respond(resp, now)
        self.stats.response(status)

    def _delayed_reply(self, tx: ServerTransaction, resp: SipMessage, now: float) -> None:
        tx.respond(resp, now)
        self.stats.response(resp.status)

    # -- REGISTER ----------------------------------------------------------------------------------
    def _register(self, tx: ServerTransaction, msg: SipMessage, peer: Peer, now: float) -> None:
        outcome = self.registrar.handle(msg, peer, self.wall())
        if outcome.response is None:
            tx.discard()
            self.stats.dropped += 1
            return
        status = outcome.response.status
        if outcome.delay > 0:
            self.timers.schedule(now + outcome.delay, self._delayed_reply, tx, outcome.response, now + outcome.delay)
            return
        tx.respond(outcome.response, now)
        self.stats.response(status)

    def _blocked_by_guard(self, ip: str, until_wall: float) -> None:
        """Mirror a block the guard just started, so the source's packets are dropped on arrival."""
        self.blocked[ip] = self.mono() + max(0.0, until_wall - self.wall())

    # -- INVITE ----------------------------------------------------------------------------------
    def _invite(self, tx: ServerTransaction, msg: SipMessage, peer: Peer, now: float) -> None:
        directory = self.directory
        ip_dev = directory.ip_device_by_source(peer.ip, peer.port)
        if ip_dev is not None and ip_dev.active:
            from_user = msg.from_.parsed_uri.user_unescaped if msg.from_.parsed_uri.is_sip else None
            # The PBX's caller number goes into the callee's From: only a plain number or name may
            # cross (an escaped CRLF would otherwise inject header lines into the other leg).
            if from_user is not None and _CALLER_ID_RE.fullmatch(from_user) is None:
                from_user = None
            caller = Party(customer_id=ip_dev.customer_id, device_id=None, ip_device_id=ip_dev.id,
                           number=ip_dev.caller_number or from_user or "anonymous",
                           display=_clean_display(msg.from_.display))
            tech_prefix = ip_dev.tech_prefix
        else:
            decision = self.auth.authenticate(msg, peer, self.wall(), proxy=True)
            if decision.kind != OK:
                if decision.kind == BLOCKED:
                    tx.discard()
                    self.stats.dropped += 1
                    return
                if decision.kind in (CHALLENGE, BAD):
                    self.reply(tx, decision.status, decision.reason, now, headers=decision.headers)
                    return
                self.reply(tx, decision.status, decision.reason, now, delay=decision.delay)
                return
            device = decision.device
            assert device is not None
            caller = Party(customer_id=device.customer_id, device_id=device.id, username=device.username,
                           number=device.caller_number or device.extension or device.username,
                           display=device.display_name)
            tech_prefix = ""
        customer = directory.customer(caller.customer_id)
        user = msg.request_uri.user
        dialled = unescape(user) if user else ""
        if tech_prefix:
            if not dialled.startswith(tech_prefix):
                self._refuse_call(tx, msg, caller, dialled, 404, "Not Found", now)
                return
            dialled = dialled[len(tech_prefix):]
        if customer is None or customer.status != CUSTOMER_ACTIVE:
            why = {CUSTOMER_STOPPED: "Customer account stopped", CUSTOMER_CLOSED: "Customer account closed"}.get(
                customer.status if customer else "", "Customer account not active")
            self._refuse_call(tx, msg, caller, dialled, 403, why, now)
            return
        if customer is not None:
            caller.reseller_path = customer.reseller_path
        callee = directory.device_by_extension(caller.customer_id, dialled) if dialled else None
        if callee is None and dialled:
            callee = directory.device_by_username(dialled)
            if callee is not None and callee.customer_id != caller.customer_id:
                callee = None  # devices of other customers are not reachable by username
        if callee is None or not callee.active:
            self._refuse_call(tx, msg, caller, dialled, 404, "Not Found", now)
            return
        bindings = self.registrar.lookup(callee.username)
        callee_party = Party(customer_id=callee.customer_id, device_id=callee.id, number=dialled,
                             username=callee.username)
        if not bindings:
            self._refuse_call(tx, msg, caller, dialled, 480, "Temporarily Unavailable", now, callee=callee_party)
            return
        call = Call(self, tx, msg, caller, callee_party, dialled)
        self.calls[id(call)] = call
        self.stats.calls_started += 1
        call.start(bindings, now)

    def _refuse_call(self, tx: ServerTransaction, msg: SipMessage, caller: Party, dialled: str, status: int,
                     reason: str, now: float, *, callee: Party | None = None) -> None:
        """Refuse an identified caller's attempt, with its CDR."""
        self.reply(tx, status, reason, now)
        ms = self.wall_ms()
        self.emit_cdr(CdrRecord(
            call_id=self.new_attempt_id(ms), sip_call_id=msg.call_id,
            customer_id=caller.customer_id, caller_device_id=caller.device_id,
            callee_device_id=callee.device_id if callee else None, caller_number=caller.number,
            dialled_number=dialled, start_ms=ms, answer_ms=None, end_ms=ms, duration_ms=0, sip_code=status,
            q850_cause=_q850(status), disposition=disposition_for_sip(status), direction=DIRECTION_INTERNAL,
            call_type=CALL_TYPE_EXTENSION, source_ip=tx.peer.ip, hangup_by=HANGUP_SWITCH,
            reseller_path=caller.reseller_path, ip_device_id=caller.ip_device_id,
        ))

    # -- CANCEL / ACK ----------------------------------------------------------------------------
    def _cancel(self, tx: ServerTransaction, msg: SipMessage, now: float) -> None:
        inv = self.layer.find_invite_server_tx(msg)
        if inv is None:
            self.reply(tx, 481, "Call/Transaction Does Not Exist", now)  # RFC 3261 9.2
            return
        call = inv.app
        # RFC 3261 9.2: the 200 to the CANCEL SHOULD carry the To tag of the 487 that follows.
        tag = call.a_tag if isinstance(call, Call) else self.new_tag()
        resp = response_for(tx.request, 200, "OK", to_tag=tag)
        tx.respond(resp, now)
        self.stats.response(200)
        if isinstance(call, Call):
            call.cancel(now)
        elif inv.state == "Proceeding":
            inv.respond(response_for(inv.request, 487, "Request Terminated", to_tag=tag), now)
            self.stats.response(487)

    def _ack(self, msg: SipMessage, peer: Peer, now: float) -> None:
        tag = msg.to.tag
        entry = self.dialogs.get((msg.call_id, tag)) if tag else None
        if entry is None or entry[1].remote_ip != peer.ip:
            self.stats.dropped += 1
            return
        call, dialog = entry
        if dialog is call.a_dialog:
            call.a_ack(msg, now)
        else:
            call.ack_relayed_invite(dialog, msg, now)

    # -- housekeeping ----------------------------------------------------------------------------
    def _housekeep(self) -> None:
        wall = self.wall()
        try:
            self.registrar.expire(budget=20_000)
            self.auth.digest.expire(wall)
            self.auth.guard.expire(wall)
            mono = self.mono()
            for ip in [ip for ip, until in self.blocked.items() if until <= mono]:
                del self.blocked[ip]
        finally:
            self._housekeeping = self.timers.schedule(self.mono() + self.config.housekeeping_interval,
                                                      self._housekeep)

    def provisioning_changed(self, changes: list[tuple[str, int]]) -> None:
        """Apply provisioning changes to live state: drop bindings of devices that may no longer
        register (deleted, disabled, or whose customer was closed)."""
        directory = self.directory
        for entity, ident in changes:
            if entity == "sip_device":
                dev = directory.device_by_id(ident)
                if dev is None or not dev.active:
                    self.registrar.drop_device(ident, "device deleted or disabled")
            elif entity == "customer":
                cust = directory.customer(ident)
                if cust is None or cust.status == CUSTOMER_CLOSED:
                    for bindings in list(self.registrar.bindings.values()):
                        for b in list(bindings):
                            dev = directory.device_by_id(b.device_id)
                            if dev is None or dev.customer_id == ident:
                                self.registrar.drop_device(b.device_id, "customer closed")
