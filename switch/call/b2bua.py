"""The back-to-back user agent: one :class:`Call` joins the caller's dialog to a callee's.

The caller's leg ("A") ends at the switch acting as UAS; each callee contact gets its own leg
("B") where the switch is a UAC with a new Call-ID, tags, Via and Contact, so neither side
sees the other's topology (RFC 7092 section 3.1 calls this a signaling-only B2BUA).

Flow, with the RFC sections that govern each step:
- INVITE from A: 100 within 200 ms unless answered sooner (transaction layer), then one INVITE per registered contact of
  the callee (parallel forking, RFC 3261 16.7 semantics): the first 2xx wins, the other
  branches get CANCEL (9.1) or, if they answered too, ACK and BYE (13.2.2.4).
- 18x from B legs are relayed to A under one to-tag; 2xx from the winner is relayed to A and
  retransmitted on UDP until A's ACK (13.3.1.4); A's ACK is relayed to B (its body carries the
  answer for a late offer).
- CANCEL from A: 200 to the CANCEL, 487 to the INVITE (9.2), CANCEL to every B leg.
- In-dialog requests (BYE, re-INVITE, UPDATE, INFO ...) are relayed to the other side with
  that side's dialog state (12.2.1.1); BYE is answered locally at once and ends the call.
- Every finished attempt emits one CDR.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cdr.schema import (
    ANSWERED,
    CALL_TYPE_EXTENSION,
    DIRECTION_INTERNAL,
    HANGUP_CALLEE,
    HANGUP_CALLER,
    HANGUP_SWITCH,
    NO_ANSWER,
    CdrRecord,
    disposition_for_sip,
    q850_for_sip,
)
from switch.dialog.dialog import UAC, Dialog, outgoing_request
from switch.registrar.location import Binding
from switch.sip.errors import SipError
from switch.sip.message import SipMessage, response_for
from switch.sip.sdp import audio_codecs
from switch.sip.uri import format_uri, parse_uri
from switch.transaction.layer import ClientTransaction, ServerTransaction, new_branch
from switch.transaction.peer import Peer
from switch.transaction.timers import TimerHandle

if TYPE_CHECKING:
    from switch.call.core import SwitchCore

log = logging.getLogger("trunkline.call")

# Call states.
ROUTING = "routing"
EARLY = "early"
ANSWERED_STATE = "answered"  # 2xx sent to A, waiting for its ACK
CONFIRMED = "confirmed"
ENDED = "ended"

# B leg states.
LEG_CALLING = "calling"
LEG_EARLY = "early"
LEG_ANSWERED = "answered"
LEG_DONE = "done"

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REGISTER"
# Headers of A's request that are relayed to B (besides the body); everything else is the
# switch's own.  Topology-revealing fields (Via, Contact, Record-Route, Call-ID) never cross.
_RELAYED = ("content-type", "content-disposition", "content-encoding", "content-language", "event",
            "subscription-state", "session-expires", "min-se", "reason", "alert-info")


@dataclass(slots=True)
class Party:
    """Who is calling or being called, as provisioning knows them."""

    customer_id: int
    device_id: int | None
    number: str  # caller number to present, or the dialled number
    display: str | None = None
    ip_device_id: int | None = None
    username: str | None = None
    reseller_path: str = ""


class BLeg:
    """One INVITE to one callee contact (a ClientOwner for its INVITE transaction).

    When its call is over the leg is detached from it (``call`` becomes None) so that the call's
    state is freed at once, not when the leg's INVITE transaction ends 32 s later (RFC 6026
    Timer M); a detached leg still ACKs, and if need be BYEs, any 2xx that arrives (13.2.2.4).
    """

    __slots__ = ("ack", "binding", "call", "cancel_pending", "dialog", "final", "layer", "local_final", "state",
                 "tx")

    def __init__(self, call: Call, binding: Binding) -> None:
        self.call: Call | None = call
        self.layer = call.core.layer
        self.binding = binding
        self.tx: ClientTransaction | None = None
        self.dialog: Dialog | None = None
        self.state = LEG_CALLING
        self.final: tuple[int, str] | None = None
        self.local_final = False  # the final answer was made up here (timeout), not sent by the callee
        self.cancel_pending = False
        self.ack: bytes | None = None  # the ACK for this leg's 2xx, once sent (resent on 2xx retransmits)

    def tx_response(self, tx: ClientTransaction, msg: SipMessage, now: float) -> None:
        call = self.call
        if call is not None:
            call.leg_response(self, msg, now)
        elif msg.status < 200:
            if self.cancel_pending and tx.state == "Proceeding":
                # RFC 3261 9.1: the CANCEL decided before the callee's first provisional goes now.
                self.cancel_pending = False
                tx.cancel_request(now, IGNORE)
        elif msg.status < 300:
            self.late_2xx(msg, now)

    def tx_timeout(self, tx: ClientTransaction, now: float) -> None:
        self.local_final = True
        if self.call is not None:
            self.call.leg_failed(self, 408, "Request Timeout", now)

    def late_2xx(self, msg: SipMessage, now: float) -> None:
        """A 2xx after the call is over: ACK it (again) and, the first time, hang it up."""
        dialog = self.dialog
        if dialog is None:
            return
        if self.ack is not None:
            self.layer.send_ack_2xx(self.ack, dialog.peer)
            return
        dialog.confirm_uac(msg)
        ack = dialog.new_request("ACK", cseq=1)
        self.ack = ack.to_bytes()
        self.layer.send_ack_2xx(self.ack, dialog.peer)
        bye = dialog.new_request("BYE", extra=[("Reason", 'Q.850;cause=16;text="Normal call clearing"')])
        self.layer.send_request(bye, dialog.peer, IGNORE, now)


class Relay:
    """An in-dialog request relayed from one side to the other; answers flow back."""

    __slots__ = ("call", "far_ack", "from_dialog", "server_tx", "to_dialog")

    def __init__(self, call: Call, server_tx: ServerTransaction, from_dialog: Dialog, to_dialog: Dialog) -> None:
        self.call = call
        self.server_tx = server_tx
        self.from_dialog = from_dialog
        self.to_dialog = to_dialog
        self.far_ack: bytes | None = None  # the ACK we sent for the far side's 2xx (re-sent on retransmits)

    def tx_response(self, tx: ClientTransaction, msg: SipMessage, now: float) -> None:
        self.call.relay_response(self, tx, msg, now)

    def tx_timeout(self, tx: ClientTransaction, now: float) -> None:
        if tx.request.method == "INVITE":
            self.to_dialog.invite_pending = False
        self.call.core.reply(self.server_tx, 408, "Request Timeout", now)


class _Ignore:
    """Owner for fire-and-forget requests (BYE to the far side, CANCEL): results are not needed."""

    __slots__ = ()

    def tx_response(self, tx: ClientTransaction, msg: SipMessage, now: float) -> None:
        return None

    def tx_timeout(self, tx: ClientTransaction, now: float) -> None:
        return None


IGNORE = _Ignore()


class _Pending2xx:
    """A 2xx to an INVITE we sent on one side, retransmitted until its ACK (RFC 3261 13.3.1.4)."""

    __slots__ = ("cseq", "data", "deadline", "interval", "peer", "relay_tx", "timer")

    def __init__(self, data: bytes, peer: Peer, cseq: int, deadline: float, relay_tx: ClientTransaction | None):
        self.data = data
        self.peer = peer
        self.cseq = cseq
        self.interval = 0.0
        self.deadline = deadline
        self.timer: TimerHandle | None = None
        self.relay_tx = relay_tx  # for a relayed re-INVITE: the far side's transaction to ACK


class Call:
    __slots__ = (
        "_cdr_done", "_no_answer", "a_2xx", "a_dialog", "a_msg", "a_peer", "a_tag", "a_tx", "answer_mono", "answer_ms",
        "answer_sdp", "attempt_id", "b_dialog", "callee", "caller", "core", "dialled", "end_ms", "final", "hangup_by",
        "legs", "pending", "source_ip", "start_ms", "state", "winner",
    )

    def __init__(self, core: SwitchCore, tx: ServerTransaction, msg: SipMessage, caller: Party, callee: Party,
                 dialled: str) -> None:
        self.core = core
        self.a_tx = tx
        self.a_msg = msg
        self.a_peer = tx.resp_peer
        self.a_tag = core.new_tag()
        self.a_dialog: Dialog | None = None
        self.b_dialog: Dialog | None = None
        self.caller = caller
        self.callee = callee
        self.dialled = dialled
        self.legs: list[BLeg] = []
        self.winner: BLeg | None = None
        self.state = ROUTING
        self.start_ms = core.wall_ms()
        # The CDR's key, made once per attempt here (never the caller's Call-ID, which it chooses).
        self.attempt_id = core.new_attempt_id(self.start_ms)
        self.answer_ms: int | None = None
        self.answer_mono: float | None = None
        self.answer_sdp = b""  # the 2xx's body, read for the CDR's codecs only when the call ends
        self.end_ms: int | None = None
        self.final: tuple[int, str] | None = None
        self.hangup_by = HANGUP_SWITCH
        self.source_ip = tx.peer.ip
        self._no_answer: TimerHandle | None = None
        self.a_2xx: _Pending2xx | None = None
        # re-INVITE 2xx awaiting ACK, by (the side's dialog, its CSeq)
        self.pending: dict[tuple[int, int], _Pending2xx] = {}
        self._cdr_done = False
        tx.app = self

    # -- set-up -------------------------------------------------------------------------------
    def start(self, bindings: list[Binding], now: float) -> None:
        core = self.core
        for binding in bindings:
            leg = BLeg(self, binding)
            self.legs.append(leg)
            self._send_invite(leg, now)
        if all(leg.state == LEG_DONE for leg in self.legs):
            self._fail(503, "Service Unavailable", now, by=HANGUP_SWITCH)
            return
        self._no_answer = core.timers.schedule(now + core.config.no_answer_timeout, self._on_no_answer, now)

    def _send_invite(self, leg: BLeg, now: float) -> None:
        core = self.core
        b = leg.binding
        peer = binding_peer(b)
        host, port = core.local_address(peer)
        a = self.a_msg
        call_id = core.new_call_id()
        from_tag = core.new_tag()
        caller = self.caller
        shown = caller.display or caller.number
        from_uri = f"sip:{caller.number}@{_host(host)}"
        from_value = f'"{_quote(shown)}" <{from_uri}>;tag={from_tag}' if shown else f"<{from_uri}>;tag={from_tag}"
        to_value = f"<sip:{self.callee.number}@{_host(host)}>"
        branch = new_branch()
        contact = core.contact_for(peer)
        mf = a.max_forwards if a.max_forwards is not None else 70
        fields: dict[str, list[str]] = {
            # RFC 3261 16.6 item 3 spirit: a B2BUA decrements too, so loops through it end.
            "max-forwards": [str(min(mf, 70) - 1)],
            "from": [from_value],
            "to": [to_value],
            "contact": [contact],
            "allow": [ALLOW],
        }
        ah = a.headers
        for key in _RELAYED:
            values = ah.get(key)
            if values:
                fields[key] = list(values)
        target = request_target(b.contact)
        req = outgoing_request("INVITE", target, transport="TCP" if peer.transport == "tcp" else "UDP", host=host,
                               port=port, branch=branch, headers=fields, call_id=call_id, cseq=1, body=a.body)
        leg.dialog = Dialog(role=UAC, call_id=call_id, local_tag=from_tag, remote_tag=None, local=from_value,
                            remote=to_value, remote_target=target, route_set=[], peer=peer, local_seq=1,
                            remote_seq=None, via_host=host, via_port=port, remote_ip=b.source_ip)
        tx = core.layer.send_request(req, peer, leg, now, branch=branch)
        if tx is None:
            leg.state = LEG_DONE
            leg.final = (503, "Service Unavailable")
            return
        leg.tx = tx
        core.dialogs[(call_id, from_tag)] = (self, leg.dialog)

    # -- B leg events -------------------------------------------------------------------------
    def leg_response(self, leg: BLeg, msg: SipMessage, now: float) -> None:
        status = msg.status
        if status < 200:
            if leg.cancel_pending:
                # RFC 3261 9.1: the CANCEL waited for a provisional; any, 100 included, will do.
                self._cancel_leg(leg, now)
                return
            if status == 100:
                return
            if leg.state == LEG_CALLING:
                leg.state = LEG_EARLY
            if msg.to.tag and leg.dialog is not None and leg.dialog.remote_tag is None:
                leg.dialog.confirm_uac(msg)
            if self.state in (ROUTING, EARLY):
                self.state = EARLY
                self._relay_provisional(msg, now)
            return
        if status < 300:
            self._leg_answered(leg, msg, now)
            return
        self.leg_failed(leg, status, msg.reason, now)

    def leg_failed(self, leg: BLeg, status: int, reason: str, now: float) -> None:
        if leg.state == LEG_DONE:
            return
        leg.state = LEG_DONE
        leg.final = (status, reason)
        self._forget_leg(leg)
        if self.state not in (ROUTING, EARLY):
            return
        if status >= 600:
            # RFC 3261 16.7 step 5: a 6xx ends the search: cancel every pending branch.
            for other in self.legs:
                if other.state in (LEG_CALLING, LEG_EARLY):
                    self._cancel_leg(other, now)
            self._fail(status, reason, now, by=HANGUP_CALLEE)
            return
        if all(x.state == LEG_DONE for x in self.legs):
            best = _best_leg([x for x in self.legs if x.final is not None])
            assert best is not None and best.final is not None
            self._fail(best.final[0], best.final[1], now, by=HANGUP_SWITCH if best.local_final else HANGUP_CALLEE)

    def _leg_answered(self, leg: BLeg, msg: SipMessage, now: float) -> None:
        if leg.state == LEG_ANSWERED:
            if leg.ack is not None:  # a 2xx retransmission: our ACK was lost (13.2.2.4)
                self.core.layer.send_ack_2xx(leg.ack, leg.dialog.peer if leg.dialog else self.a_peer)
            return
        dialog = leg.dialog
        assert dialog is not None
        if dialog.remote_tag is None or dialog.remote_tag != msg.to.tag:
            dialog.confirm_uac(msg)
        leg.state = LEG_ANSWERED
        if self.winner is not None or self.state not in (ROUTING, EARLY):
            # Another branch won, or the caller gave up: ACK and BYE this one (13.2.2.4).
            self._ack_leg(leg, b"", None)
            self._bye(dialog, now)
            self._forget_leg(leg)
            return
        self.winner = leg
        self.b_dialog = dialog
        self.state = ANSWERED_STATE
        self.answer_ms = self.core.wall_ms()
        self.answer_mono = self.core.mono()
        self.answer_sdp = msg.body
        if self._no_answer is not None:
            self._no_answer.cancel()
            self._no_answer = None
        for other in self.legs:
            if other is not leg and other.state in (LEG_CALLING, LEG_EARLY):
                self._cancel_leg(other, now)
        core = self.core
        resp = self._a_response(200, msg.reason or "OK", msg)
        a_dialog = self._a_dialog()
        a_dialog.refresh_target(self.a_msg)
        data = resp.to_bytes()
        self.a_tx.respond_bytes(data, 200, now)
        core.stats.response(200)
        self.a_2xx = self._retransmit_2xx(data, self.a_peer, self.a_msg.cseq_num, now, None)
        core.active_calls += 1

    def _cancel_leg(self, leg: BLeg, now: float) -> None:
        """CANCEL a ringing leg; before its first provisional the CANCEL must wait (9.1)."""
        if leg.tx is not None and leg.tx.state == "Proceeding":
            leg.cancel_pending = False
            leg.tx.cancel_request(now, IGNORE)
            # The leg's 487 arrives through its INVITE transaction and marks it done.
        elif leg.state in (LEG_CALLING, LEG_EARLY):
            leg.cancel_pending = True

    def _relay_provisional(self, msg: SipMessage, now: float) -> None:
        resp = self._a_response(msg.status, msg.reason, msg)
        self._a_dialog()
        self.a_tx.respond(resp, now)
        self.core.stats.response(msg.status)

    def _a_response(self, status: int, reason: str, b_msg: SipMessage | None) -> SipMessage:
        """A response to A's INVITE carrying B's body and the switch's own Contact."""
        headers: list[tuple[str, str]] = [("Contact", self.core.contact_for(self.a_tx.peer)), ("Allow", ALLOW)]
        body = b""
        if b_msg is not None and b_msg.body:
            body = b_msg.body
            ctype = b_msg.get("content-type")
            if ctype:
                headers.append(("Content-Type", ctype))
        return response_for(self.a_msg, status, reason, to_tag=self.a_tag, headers=headers, body=body)

    def _a_dialog(self) -> Dialog:
        if self.a_dialog is None:
            core = self.core
            host, port = core.local_address(self.a_peer)
            self.a_dialog = Dialog.as_uas(self.a_msg, self.a_tag, self.a_peer, host, port)
            core.dialogs[(self.a_msg.call_id, self.a_tag)] = (self, self.a_dialog)
        return self.a_dialog

    # -- 2xx reliability on UDP (RFC 3261 13.3.1.4) ------------------------------------------
    def _retransmit_2xx(self, data: bytes, peer: Peer, cseq: int, now: float,
                        relay_tx: ClientTransaction | None) -> _Pending2xx:
        core = self.core
        t1 = core.layer.config.t1
        p = _Pending2xx(data, peer, cseq, now + 64 * t1, relay_tx)
        if not peer.reliable:
            p.interval = t1
            p.timer = core.timers.schedule(now + t1, self._fire_2xx, p, now + t1)
        else:
            p.timer = core.timers.schedule(p.deadline, self._fire_2xx, p, p.deadline)
        return p

    def _fire_2xx(self, p: _Pending2xx, when: float) -> None:
        if p.timer is None:
            return
        core = self.core
        if when >= p.deadline:
            p.timer = None
            log.info("no ACK for 2xx (Call-ID %s): ending the call", self.a_msg.call_id)
            if p is self.a_2xx:
                self.a_2xx = None
                if self.winner is not None and self.winner.ack is None:
                    self._ack_leg(self.winner, b"", None)
                self._end(HANGUP_SWITCH, when, bye_a=True, bye_b=True)
            return
        core.transports_send(p.data, p.peer)
        p.interval = min(2 * p.interval, core.layer.config.t2)
        nxt = when + p.interval
        p.timer = core.timers.schedule(min(nxt, p.deadline), self._fire_2xx, p, min(nxt, p.deadline))

    def _ack_leg(self, leg: BLeg, body: bytes, content_type: str | None) -> None:
        dialog = leg.dialog
        assert dialog is not None
        ack = dialog.new_request("ACK", cseq=1, body=body, content_type=content_type)
        leg.ack = ack.to_bytes()
        self.core.layer.send_ack_2xx(leg.ack, dialog.peer)

    # -- from A -------------------------------------------------------------------------------
    def a_ack(self, msg: SipMessage, now: float) -> None:
        """A's ACK for our 2xx: stop retransmitting and ACK the winner with A's body."""
        p = self.a_2xx
        if p is not None and msg.cseq_num == p.cseq:
            if p.timer is not None:
                p.timer.cancel()
                p.timer = None
            self.a_2xx = None
            if self.state == ANSWERED_STATE:
                self.state = CONFIRMED
            if self.winner is not None and self.winner.ack is None:
                self._ack_leg(self.winner, msg.body, msg.get("content-type"))
            return
        self.ack_relayed_invite(self.a_dialog, msg, now)

    def ack_relayed_invite(self, dialog: Dialog | None, msg: SipMessage, now: float) -> None:
        """ACK for a relayed re-INVITE's 2xx: stop our retransmission and ACK the far side."""
        p = self.pending.pop((id(dialog), msg.cseq_num), None) if dialog is not None else None
        if p is None:
            return  # a retransmitted ACK, or one we never asked for: absorbed
        if p.timer is not None:
            p.timer.cancel()
            p.timer = None
        tx = p.relay_tx
        if tx is not None:
            far = self.other(dialog) if dialog is not None else None
            if far is not None:
                ack = far.new_request("ACK", cseq=tx.request.cseq_num, body=msg.body,
                                      content_type=msg.get("content-type"))
                data = ack.to_bytes()
                if isinstance(tx.owner, Relay):
                    tx.owner.far_ack = data
                self.core.layer.send_ack_2xx(data, far.peer)

    def cancel(self, now: float) -> None:
        """CANCEL from A before the final answer (RFC 3261 9.2)."""
        if self.state not in (ROUTING, EARLY):
            return
        for leg in self.legs:
            if leg.state in (LEG_CALLING, LEG_EARLY):
                self._cancel_leg(leg, now)
        self._fail(487, "Request Terminated", now, by=HANGUP_CALLER, cancelled=True)

    def _on_no_answer(self, started: float) -> None:
        self._no_answer = None
        if self.state not in (ROUTING, EARLY):
            return
        now = started + self.core.config.no_answer_timeout
        for leg in self.legs:
            if leg.state in (LEG_CALLING, LEG_EARLY):
                self._cancel_leg(leg, now)
        # Q.850 cause 19, "no answer from user (user alerted)": it rang, nobody answered.
        self._fail(480, "No Answer", now, by=HANGUP_SWITCH, disposition=NO_ANSWER, q850=19)

    def _fail(self, status: int, reason: str, now: float, *, by: str, cancelled: bool = False,
              disposition: str | None = None, q850: int | None = None) -> None:
        if self.state == ENDED:
            return
        self.state = ENDED
        self.hangup_by = by
        if self._no_answer is not None:
            self._no_answer.cancel()
            self._no_answer = None
        resp = response_for(self.a_msg, status, reason, to_tag=self.a_tag)
        self.a_tx.respond(resp, now)
        self.core.stats.response(status)
        self.final = (status, reason)
        self._finish(disposition or disposition_for_sip(status, cancelled=cancelled), q850=q850)

    # -- in-dialog ----------------------------------------------------------------------------
    def other(self, dialog: Dialog) -> Dialog | None:
        if dialog is self.a_dialog:
            return self.b_dialog
        if dialog is self.b_dialog:
            return self.a_dialog
        return None

    def in_dialog(self, dialog: Dialog, tx: ServerTransaction, msg: SipMessage, now: float) -> None:
        core = self.core
        method = msg.method
        if not dialog.check_remote_cseq(msg):
            core.reply(tx, 500, "Out of order CSeq", now)
            return
        if method == "BYE" and self.state in (ROUTING, EARLY):
            if dialog is self.a_dialog:
                # RFC 3261 15 / 15.1.2: the caller may BYE its early dialog; the INVITE then
                # gets 487 and the ringing branches are cancelled, as for CANCEL.
                core.reply(tx, 200, "OK", now)
                self.cancel(now)
            else:
                core.reply(tx, 481, "Call/Transaction Does Not Exist", now)
            return
        if method == "BYE":
            # End first (that emits the CDR into the spool), answer after: once the peer holds
            # its 200 the call is on record, even if the switch is killed the next instant.
            self._end(HANGUP_CALLER if dialog is self.a_dialog else HANGUP_CALLEE, now,
                      bye_a=dialog is not self.a_dialog, bye_b=dialog is not self.b_dialog)
            core.reply(tx, 200, "OK", now)
            return
        far = self.other(dialog)
        if far is None or self.state == ENDED or (self.state not in (ANSWERED_STATE, CONFIRMED)):
            # Early-dialog requests other than CANCEL are not relayed: the caller's early dialog
            # may stand for several callee branches.
            core.reply(tx, 481 if self.state == ENDED else 491, "Request Pending" if self.state != ENDED
                       else "Call/Transaction Does Not Exist", now)
            return
        if method == "INVITE":
            if far.invite_pending:
                # RFC 3261 14.2: a new INVITE while the sender's previous one is unanswered.
                core.reply(tx, 500, "Server Internal Error", now,
                           headers=[("Retry-After", str(random.randint(0, 10)))])
                return
            if dialog.invite_pending:
                core.reply(tx, 491, "Request Pending", now)  # RFC 3261 14.1: glare
                return
            far.invite_pending = True
            dialog.refresh_target(msg)
        elif method == "UPDATE":
            dialog.refresh_target(msg)
        extra: list[tuple[str, str]] = []
        mh = msg.headers
        for key in _RELAYED:
            if key == "content-type":
                continue
            for value in mh.get(key, ()):
                extra.append((key, value))
        contact = core.contact_for(far.peer) if method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER") else None
        mf = msg.max_forwards if msg.max_forwards is not None else 70
        if mf <= 0:
            # The relayed request counts as a hop too: an in-dialog loop ends here (16.3 item 2).
            if method == "INVITE":
                far.invite_pending = False
            core.reply(tx, 483, "Too Many Hops", now)
            return
        req = far.new_request(method, contact=contact, body=msg.body, content_type=msg.get("content-type"),
                              extra=extra, max_forwards=min(mf, 70) - 1)
        relay = Relay(self, tx, dialog, far)
        tx.app = relay
        sent = core.layer.send_request(req, far.peer, relay, now)
        if sent is None:
            if method == "INVITE":
                far.invite_pending = False
            core.reply(tx, 503, "Service Unavailable", now)

    def relay_response(self, relay: Relay, tx: ClientTransaction, msg: SipMessage, now: float) -> None:
        status = msg.status
        if status == 100:
            return
        method = tx.request.method
        server_tx = relay.server_tx
        if server_tx.state != "Trying" and server_tx.state != "Proceeding":
            # Answered already: only a retransmitted 2xx of the far side needs anything (13.2.2.4:
            # if the far side was ACKed, our ACK was lost: send it again).
            if method == "INVITE" and 200 <= status < 300 and relay.far_ack is not None:
                self.core.layer.send_ack_2xx(relay.far_ack, relay.to_dialog.peer)
            return
        if method == "INVITE" and status >= 200:
            relay.to_dialog.invite_pending = False
            if status < 300:
                relay.to_dialog.refresh_target(msg)
        headers: list[tuple[str, str]] = []
        if method in ("INVITE", "UPDATE") and status < 300:
            headers.append(("Contact", self.core.contact_for(server_tx.peer)))
        for key in ("content-type", "allow", "supported", "unsupported", "retry-after", "reason", "min-se",
                    "session-expires"):
            for value in msg.headers.get(key, ()):
                headers.append((key, value))
        resp = response_for(server_tx.request, status, msg.reason, headers=headers, body=msg.body)
        data = resp.to_bytes()
        if method == "INVITE" and 200 <= status < 300:
            server_tx.respond_bytes(data, status, now)
            p = self._retransmit_2xx(data, server_tx.resp_peer, server_tx.request.cseq_num, now, tx)
            self.pending[(id(relay.from_dialog), server_tx.request.cseq_num)] = p
        else:
            server_tx.respond_bytes(data, status, now)
        self.core.stats.response(status)

    # -- tear-down ----------------------------------------------------------------------------
    def _bye(self, dialog: Dialog, now: float) -> None:
        req = dialog.new_request("BYE", extra=[("Reason", 'Q.850;cause=16;text="Normal call clearing"')])
        self.core.layer.send_request(req, dialog.peer, IGNORE, now)

    def _end(self, hangup_by: str, now: float, *, bye_a: bool, bye_b: bool) -> None:
        if self.state == ENDED:
            return
        was_up = self.state in (ANSWERED_STATE, CONFIRMED)
        self.state = ENDED
        self.hangup_by = hangup_by
        if self.a_2xx is not None and self.a_2xx.timer is not None:
            self.a_2xx.timer.cancel()
        for p in self.pending.values():
            if p.timer is not None:
                p.timer.cancel()
        self.pending.clear()
        if bye_a and self.a_dialog is not None:
            self._bye(self.a_dialog, now)
        if bye_b and self.b_dialog is not None:
            if self.winner is not None and self.winner.ack is None:
                # The caller hung up before its ACK: the callee's 2xx still needs one (13.2.2.4).
                self._ack_leg(self.winner, b"", None)
            self._bye(self.b_dialog, now)
        if was_up:
            self.core.active_calls -= 1
        self.final = (200, "OK")
        self._finish(ANSWERED)

    def _forget_leg(self, leg: BLeg) -> None:
        if leg.dialog is not None and leg is not self.winner:
            self.core.dialogs.pop((leg.dialog.call_id, leg.dialog.local_tag), None)

    def _finish(self, disposition: str, *, q850: int | None = None) -> None:
        """Unhook the call from the switch and emit its CDR (exactly once)."""
        if self._cdr_done:
            return
        self._cdr_done = True
        core = self.core
        core.calls.pop(id(self), None)
        if self.a_dialog is not None:
            core.dialogs.pop((self.a_dialog.call_id, self.a_dialog.local_tag), None)
        for leg in self.legs:
            if leg.dialog is not None:
                core.dialogs.pop((leg.dialog.call_id, leg.dialog.local_tag), None)
        for leg in self.legs:
            leg.call = None  # see BLeg: the call's state need not outlive the legs' transactions
        end_ms = core.wall_ms()
        self.end_ms = end_ms
        status, _reason = self.final or (500, "")
        answer = self.answer_ms
        if answer is not None and self.answer_mono is not None:
            # The duration is measured on the monotonic clock (a wall-clock step during the call
            # must not change what is billed); the end instant follows from it.
            duration = max(0, round((core.mono() - self.answer_mono) * 1000))
            end_ms = answer + duration
            self.end_ms = end_ms
        else:
            duration = 0
        record = CdrRecord(
            call_id=self.attempt_id,
            sip_call_id=self.a_msg.call_id,
            customer_id=self.caller.customer_id,
            caller_device_id=self.caller.device_id,
            callee_device_id=self.callee.device_id,
            caller_number=self.caller.number,
            dialled_number=self.dialled,
            start_ms=self.start_ms,
            answer_ms=answer,
            end_ms=end_ms,
            duration_ms=max(0, duration),
            sip_code=status,
            q850_cause=q850 if q850 is not None else q850_for_sip(status),
            disposition=disposition,
            direction=DIRECTION_INTERNAL,
            call_type=CALL_TYPE_EXTENSION,
            source_ip=self.source_ip,
            hangup_by=self.hangup_by,
            reseller_path=self.caller.reseller_path,
            ip_device_id=self.caller.ip_device_id,
            # What the call was set up with: the answer's audio codecs (RFC 3264); with a late
            # offer (an INVITE without SDP) the 2xx carries the callee's offer instead.
            codecs=audio_codecs(self.answer_sdp) if answer is not None else "",
        )
        core.emit_cdr(record)


def _best_leg(legs: list[BLeg]) -> BLeg | None:
    """The branch whose answer A gets when every branch failed (RFC 3261 section 16.7 step 6)."""

    def rank(leg: BLeg) -> tuple[int, int]:
        code = leg.final[0] if leg.final else 500
        if code >= 600:
            return (0, 0)
        # Lowest class first; within 4xx, a busy or a definite refusal says more than a timeout.
        pref = 0 if code == 486 else 2 if code in (408, 480) else 1
        return (code // 100, pref)

    return min(legs, key=rank) if legs else None


def request_target(contact: str) -> str:
    """A registered Contact as a Request-URI: without URI headers or a method parameter, which a
    Request-URI must not carry (RFC 3261 19.1.5, table 1)."""
    if "?" not in contact and ";method=" not in contact.lower():
        return contact
    try:
        uri = parse_uri(contact)
    except SipError:
        return contact
    if not uri.is_sip:
        return contact
    uri.headers = None
    uri.params.pop("method", None)
    uri.raw = ""
    return format_uri(uri)


def binding_peer(b: Binding) -> Peer:
    """Where to send requests for a binding (RFC 5626 spirit: the flow the REGISTER came on).

    UDP: the REGISTER's source address (NAT).  TCP: its connection; when that connection is gone
    (closed, or the switch restarted) the source port was the phone's ephemeral one, so a new
    connection goes to the address in the Contact instead (RFC 3261 18.1.1).
    """
    if b.transport != "udp" and b.conn_id is None:
        try:
            host, port = parse_uri(b.contact).host_port(5060)
        except SipError:
            host, port = b.source_ip, b.source_port
        return Peer(b.transport, host, port, b.local_port, None)
    return Peer(b.transport, b.source_ip, b.source_port, b.local_port, b.conn_id)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


CdrCallback = Callable[[CdrRecord], None]
