"""The registrar: REGISTER processing per RFC 3261 section 10.3, sans-IO.

Bindings live in memory (one list per address-of-record) and every change goes to a
:class:`BindingSink` that persists it.  The AOR of a device is its username; the registrar
authenticates the request (digest), checks that the authenticated device is the AOR being
registered (10.3 step 3), and stores with each contact where the REGISTER really came from
(source address, transport, TCP connection) so that calls reach devices behind NAT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate

from switch.ports import CUSTOMER_CLOSED, Directory
from switch.registrar.auth import BAD, BLOCKED, CHALLENGE, FORBIDDEN, AuthDecision, DeviceAuth
from switch.registrar.location import Binding, BindingSink
from switch.sip.errors import SipError
from switch.sip.headers import NameAddr
from switch.sip.message import SipMessage, response_for
from switch.sip.uri import SipUri, parse_uri
from switch.transaction.peer import Peer

log = logging.getLogger("trunkline.registrar")

MAX_EXPIRES_VALUE = 2**32 - 1  # RFC 3261 section 20.19: delta-seconds up to (2**32)-1


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 10  # per AOR; more are refused (403) rather than silently dropped
    # A refresh that changes nothing but the expiry (same address, transport, flow, parameters)
    # is written to the store only once the stored expiry has fallen this share of the binding's
    # interval behind (and at least refresh_lag_min seconds).  New bindings, removals and any
    # change of where the device is reached are written at once.  Bounds the write rate of
    # phones that re-register far more often than their expiry needs; a crash can make a
    # restored binding expire early by at most this lag (the device re-registers in time).
    refresh_lag_ratio: float = 0.25
    refresh_lag_min: float = 30.0


@dataclass(slots=True)
class RegisterOutcome:
    response: SipMessage | None  # None: drop (blocked source)
    delay: float = 0.0


_date_cache: tuple[int, str] = (0, "")


def _http_date(now: float) -> str:
    """RFC 1123 date for the Date header, formatted once per second (it is on every 200)."""
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True))
    return _date_cache[1]


class Registrar:
    def __init__(self, directory: Directory, auth: DeviceAuth, sink: BindingSink,
                 config: RegistrarConfig | None = None, *, to_tag: Callable[[], str],
                 wall: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.auth = auth
        self.sink = sink
        self.config = config or RegistrarConfig()
        self.bindings: dict[str, list[Binding]] = {}
        self._to_tag = to_tag
        self._wall = wall
        self.count = 0  # current number of bindings (a metric)
        # Indexes so that the per-event work does not grow with the number of registrations:
        # TCP connection -> AORs registered over it, device -> AORs (entries may be stale;
        # every use re-checks the binding itself).
        self._by_conn: dict[int, set[str]] = {}
        self._by_device: dict[int, set[str]] = {}
        self._sweep: list[str] = []  # AORs still to visit in the current expiry sweep

    # -- state -------------------------------------------------------------------------------
    def load(self, bindings: Iterable[Binding]) -> None:
        now = self._wall()
        for b in bindings:
            if b.expires_at > now:
                b.stored_expires_at = b.expires_at
                self.bindings.setdefault(b.aor, []).append(b)
                self._index(b)
                self.count += 1

    def _index(self, b: Binding) -> None:
        self._by_device.setdefault(b.device_id, set()).add(b.aor)
        if b.conn_id is not None:
            self._by_conn.setdefault(b.conn_id, set()).add(b.aor)

    def persist_all(self) -> int:
        """Hand every binding whose stored copy lags behind to the sink (at shutdown)."""
        n = 0
        for bindings in self.bindings.values():
            for b in bindings:
                if b.stored_expires_at != b.expires_at:
                    b.stored_expires_at = b.expires_at
                    self.sink.saved(b)
                    n += 1
        return n

    def lookup(self, aor: str) -> list[Binding]:
        """Current bindings of an AOR, best q first (RFC 3261 section 16.6: q orders targets)."""
        current = self.bindings.get(aor)
        if not current:
            return []
        now = self._wall()
        live = [b for b in current if b.expires_at > now]
        if len(live) != len(current):
            self._replace(aor, live, current)
        if len(live) > 1:
            live.sort(key=lambda b: -(b.q if b.q is not None else 1.0))
        return live

    def expire(self, budget: int | None = None) -> int:
        """Drop expired bindings; returns how many.

        With a ``budget`` the sweep is incremental: at most that many AORs are visited per call,
        continuing where the last call stopped, so that a periodic sweep over 100,000
        registrations never holds the event loop for long (lookups drop expired bindings of the
        AORs they touch anyway).
        """
        now = self._wall()
        if budget is None:
            todo = list(self.bindings)
        else:
            if not self._sweep:
                self._sweep = list(self.bindings)
            todo = self._sweep[-budget:]
            del self._sweep[-budget:]
        dropped = 0
        for aor in todo:
            current = self.bindings.get(aor)
            if not current:
                continue
            live = [b for b in current if b.expires_at > now]
            if len(live) != len(current):
                dropped += len(current) - len(live)
                self._replace(aor, live, current)
        return dropped

    def drop_device(self, device_id: int, why: str) -> int:
        """Remove every binding of a device (deleted, disabled, or its customer closed)."""
        dropped = 0
        for aor in self._by_device.pop(device_id, ()):
            current = self.bindings.get(aor)
            if not current:
                continue
            live = [b for b in current if b.device_id != device_id]
            if len(live) != len(current):
                dropped += len(current) - len(live)
                self._replace(aor, live, current)
        if dropped:
            log.info("dropped %d binding(s) of device %d: %s", dropped, device_id, why)
        return dropped

    def connection_lost(self, conn_id: int) -> None:
        """A TCP connection closed: bindings that used it can no longer be reached through it."""
        for aor in self._by_conn.pop(conn_id, ()):
            for b in self.bindings.get(aor, ()):
                if b.conn_id == conn_id:
                    b.conn_id = None

    def _replace(self, aor: str, live: list[Binding], old: list[Binding]) -> None:
        keep = {id(b) for b in live}
        for b in old:
            if id(b) not in keep:
                self.sink.removed(b.aor, b.contact)
                self.count -= 1
        if live:
            self.bindings[aor] = live
        else:
            self.bindings.pop(aor, None)

    # -- REGISTER ----------------------------------------------------------------------------
    def handle(self, msg: SipMessage, peer: Peer, now: float) -> RegisterOutcome:
        """Process one REGISTER (a new server transaction).  ``now`` is the wall clock."""
        decision = self.auth.authenticate(msg, peer, now, proxy=False)
        if decision.kind != "ok":
            return self._refuse(msg, decision)
        device = decision.device
        assert device is not None
        customer = self.directory.customer(device.customer_id)
        if customer is None or customer.status == CUSTOMER_CLOSED:
            return RegisterOutcome(self._reply(msg, 403, "Account closed"))
        # RFC 3261 10.3 step 3: the authenticated user must be allowed to register this AOR.
        try:
            aor_user = msg.to.parsed_uri.user_unescaped
        except SipError:
            return RegisterOutcome(self._reply(msg, 400, "Malformed To URI"))
        if aor_user != device.username:
            return RegisterOutcome(self._reply(msg, 403, "Not allowed to register this address"))
        try:
            contacts = msg.contacts()
            expires_header = self._expires_header(msg)
        except SipError as exc:
            return RegisterOutcome(self._reply(msg, 400, exc.reason))
        aor = device.username
        current = self.lookup(aor)
        if contacts:
            if any(c.uri == "*" for c in contacts):
                # RFC 3261 10.3 step 6: "*" only alone and with Expires: 0.
                if len(contacts) != 1 or expires_header != 0:
                    return RegisterOutcome(self._reply(msg, 400, "Invalid wildcard Contact"))
                for b in current:
                    if b.call_id == msg.call_id and msg.cseq_num <= b.cseq:
                        return RegisterOutcome(self._reply(msg, 400, "Out-of-order REGISTER"))
                self._replace(aor, [], current)
                return RegisterOutcome(self._ok(msg, [], now))
            result = self._update(msg, peer, now, aor, device.id, contacts, expires_header, current)
            if isinstance(result, SipMessage):
                return RegisterOutcome(result)
            current = result
        # No Contact: a query; answer with the current bindings (10.3 step 8).
        return RegisterOutcome(self._ok(msg, current, now))

    def _update(self, msg: SipMessage, peer: Peer, now: float, aor: str, device_id: int,
                contacts: list[NameAddr], expires_header: int | None,
                current: list[Binding]) -> list[Binding] | SipMessage:
        cfg = self.config
        changes: list[tuple[NameAddr, int, float | None]] = []
        for c in contacts:
            raw = c.params.get("expires")
            if raw is not None:
                try:
                    expires = min(int(raw), MAX_EXPIRES_VALUE) if raw.isdigit() else -1
                except ValueError:
                    expires = -1
                if expires < 0:
                    return self._reply(msg, 400, "Malformed expires parameter")
            elif expires_header is not None:
                expires = expires_header
            else:
                expires = cfg.default_expires
            if 0 < expires < cfg.min_expires:
                # RFC 3261 10.3 step 7 / 20.23: too brief; say what we accept.
                resp = self._reply(msg, 423, "Interval Too Brief")
                resp.add("Min-Expires", str(cfg.min_expires))
                return resp
            q_raw = c.params.get("q")
            q: float | None = None
            if q_raw is not None:
                try:
                    q = float(q_raw)
                except ValueError:
                    return self._reply(msg, 400, "Malformed q parameter")
                if not 0.0 <= q <= 1.0:
                    return self._reply(msg, 400, "Malformed q parameter")
            try:
                c.parsed_uri  # noqa: B018 -- a Contact must be a valid URI (RFC 4475 3.1.2.13)
            except SipError as exc:
                return self._reply(msg, 400, f"Malformed Contact: {exc.reason}")
            changes.append((c, min(expires, cfg.max_expires), q))
        # RFC 3261 10.3 step 7: the updates are worked out first and committed only if all of them
        # succeed ("if and only if all binding updates and additions succeed"), so a refused
        # request (out of order, too many contacts) leaves every binding as it was.  Until then
        # nothing is written into the Binding objects the location service holds.
        slots = [_Slot(b, b.contact) for b in current]
        for c, expires, q in changes:
            slot = _find_slot(slots, c)
            existing = slot.binding if slot is not None else None
            if existing is not None and existing.call_id == msg.call_id and msg.cseq_num <= existing.cseq:
                # RFC 3261 10.3 step 7: same Call-ID and a CSeq not higher: abort the update.
                return self._reply(msg, 400, "Out-of-order REGISTER")
            if slot is None:
                if expires == 0:
                    continue  # removing a binding that does not exist: nothing to do
                slot = _Slot(None, c.uri)
                slots.append(slot)
            if expires == 0:
                slot.removed = True
                slot.update = None
                continue
            slot.removed = False  # a contact removed and added again in one request: the last wins
            slot.contact = c.uri  # the spelling of the latest REGISTER (equal per RFC 3261 19.1.4)
            slot.parsed = None
            params = ";".join(
                f"{k}={v}" if v is not None else k for k, v in c.params.items() if k not in ("expires", "q")
            )
            slot.update = (expires, q, params)
        survivors = [s for s in slots if not s.removed]
        # Refused only when the request would grow the list past the limit: a device already over
        # it (the limit was lowered) can still refresh or remove its bindings.
        if len(survivors) > self.config.max_contacts and len(survivors) > len(current):
            return self._reply(msg, 403, f"Too many contacts (at most {self.config.max_contacts})")
        # Commit, and persist: removals, then saves.
        ua = msg.get("user-agent") or ""
        live: list[Binding] = []
        saves: list[Binding] = []
        for s in slots:
            b = s.binding
            if s.removed:
                if b is not None:
                    self.sink.removed(b.aor, b.contact)
                    self.count -= 1
                continue
            if s.update is not None:
                expires, q, params = s.update
                if b is None:
                    b = Binding(aor=aor, device_id=device_id, contact=s.contact, expires_at=now + expires,
                                call_id=msg.call_id, cseq=msg.cseq_num, source_ip=peer.ip, source_port=peer.port,
                                transport=peer.transport, local_port=peer.local_port, q=q, user_agent=ua,
                                conn_id=peer.conn_id, params=params)
                    self.count += 1
                    saves.append(b)
                else:
                    moved = (b.contact != s.contact or b.device_id != device_id or b.source_ip != peer.ip
                             or b.source_port != peer.port or b.transport != peer.transport
                             or b.local_port != peer.local_port or b.conn_id != peer.conn_id or b.q != q
                             or b.params != params or b.user_agent != ua)
                    if b.contact != s.contact:
                        # The same binding written differently: the store is keyed by the text.
                        self.sink.removed(b.aor, b.contact)
                        b.contact = s.contact
                    b.device_id = device_id
                    b.expires_at = now + expires
                    b.call_id = msg.call_id
                    b.cseq = msg.cseq_num
                    # NAT: where this REGISTER really came from (RFC 3581), not what the Contact says.
                    b.source_ip, b.source_port = peer.ip, peer.port
                    b.transport, b.local_port, b.conn_id = peer.transport, peer.local_port, peer.conn_id
                    b.q = q
                    b.user_agent = ua
                    b.params = params
                    lag = b.expires_at - b.stored_expires_at
                    if moved or lag > max(cfg.refresh_lag_min, cfg.refresh_lag_ratio * expires):
                        saves.append(b)
            assert b is not None
            live.append(b)
        for b in saves:
            b.stored_expires_at = b.expires_at
            self.sink.saved(b)
        if live:
            self._by_device.setdefault(device_id, set()).add(aor)
            if peer.conn_id is not None:
                self._by_conn.setdefault(peer.conn_id, set()).add(aor)
            self.bindings[aor] = live
        else:
            self.bindings.pop(aor, None)
        return live

    @staticmethod
    def _expires_header(msg: SipMessage) -> int | None:
        value = msg.get("expires")
        if value is None:
            return None
        value = value.strip()
        if not value.isdigit():
            raise SipError(400, "Malformed Expires")
        return min(int(value), MAX_EXPIRES_VALUE)

    # -- responses ---------------------------------------------------------------------------
    def _ok(self, msg: SipMessage, bindings: list[Binding], now: float) -> SipMessage:
        """200 listing every current binding (RFC 3261 10.3 step 8), each with its remaining time.

        ``now`` is the instant the bindings were computed at: reading the clock again here made
        a binding just registered for 3600 s read "expires=3599" (the clock moved, and int()
        truncates), and the remaining time is rounded for the same reason.  The contact
        parameters we keep (+sip.instance, reg-id, unknown ones: RFC 4475 section 3.3.12) are
        echoed, so a client can find its own binding in the list (RFC 5626 section 6).
        """
        resp = self._reply(msg, 200, "OK")
        for b in bindings:
            remaining = max(1, int(b.expires_at - now + 0.5))
            params = f";{b.params}" if b.params else ""
            resp.add("Contact", f"<{b.contact}>{params};expires={remaining}")
        # RFC 3261 10.3 step 8: a Date header lets simple clients set their clocks.
        resp.add("Date", _http_date(now))
        return resp

    def challenge(self, msg: SipMessage) -> SipMessage:
        """401 for a REGISTER without credentials, built without any transaction state.

        RFC 3261 8.2.7: challenges are what stateless UAS behaviour is for.  A retransmission
        simply gets a fresh challenge; half of all REGISTERs then cost no transaction at all.
        """
        decision = self.auth.challenge(msg, self._wall(), proxy=False)
        resp = self._reply(msg, decision.status, decision.reason)
        for name, value in decision.headers or ():
            resp.add(name, value)
        return resp

    def _reply(self, msg: SipMessage, status: int, reason: str) -> SipMessage:
        return response_for(msg, status, reason, to_tag=self._to_tag())

    def _refuse(self, msg: SipMessage, decision: AuthDecision) -> RegisterOutcome:
        if decision.kind == BLOCKED:
            return RegisterOutcome(None)
        if decision.kind == CHALLENGE:
            resp = self._reply(msg, decision.status, decision.reason)
            for name, value in decision.headers or ():
                resp.add(name, value)
            return RegisterOutcome(resp, delay=decision.delay)
        if decision.kind in (FORBIDDEN, BAD):
            return RegisterOutcome(self._reply(msg, decision.status, decision.reason), delay=decision.delay)
        return RegisterOutcome(self._reply(msg, 500, "Server Internal Error"))


class _Slot:
    """One binding while a REGISTER is worked out: the stored one (if any) and what to do to it."""

    __slots__ = ("binding", "contact", "parsed", "removed", "update")

    def __init__(self, binding: Binding | None, contact: str) -> None:
        self.binding = binding
        self.contact = contact
        self.parsed: SipUri | None = None
        self.removed = False
        self.update: tuple[int, float | None, str] | None = None  # (expires, q, params)


def _find_slot(slots: list[_Slot], contact: NameAddr) -> _Slot | None:
    """The slot holding ``contact``: by RFC 3261 19.1.4 URI comparison, as 10.3 step 7 asks
    ("sip:bob@HOST" and "sip:%62ob@host" are one binding), the exact text first (the usual case)."""
    uri = contact.uri
    for s in slots:
        if s.contact == uri:
            return s
    try:
        parsed = contact.parsed_uri
    except SipError:
        return None
    for s in slots:
        if s.parsed is None:
            try:
                s.parsed = parse_uri(s.contact)
            except SipError:
                continue
        if s.parsed.equals(parsed):
            return s
    return None
