"""Calls through the B2BUA, end to end inside the core: a fake network and a hand clock.

Every scenario ends by checking that the call left nothing behind (calls, dialogs, active-call
count, and after 64 s every transaction) and that exactly one CDR describes the attempt.
RFC 3261 sections 9 (CANCEL), 12-15 (dialogs, INVITE, re-INVITE, BYE), 13.3.1.4 (2xx
reliability), 16.7 (forking semantics), 17 (transactions, timers A and B).
"""

from __future__ import annotations

import pytest

from cdr.schema import (
    ANSWERED,
    BUSY,
    CALL_TYPE_EXTENSION,
    CANCELLED,
    DIRECTION_INTERNAL,
    HANGUP_CALLEE,
    HANGUP_CALLER,
    HANGUP_SWITCH,
    NO_ANSWER,
    NOT_FOUND,
    REJECTED,
    UNAVAILABLE,
    CdrRecord,
    q850_for_sip,
)
from switch.sip.digest import parse_challenge
from switch.sip.message import SipMessage
from tests.core.fakes import (
    SWITCH_IP,
    SWITCH_PORT,
    UA,
    Harness,
    InCall,
    OutCall,
    contact_uri,
    only,
    sdp,
    statuses,
)

CALLER_IP, CALLEE_IP = "198.51.100.10", "198.51.100.20"
SWITCH_CONTACT = f"<sip:trunkline@{SWITCH_IP}:{SWITCH_PORT}>"
T1 = 0.5

SDP_B = sdp(CALLEE_IP, 50000)
HOLD = sdp(CALLER_IP, 40000, "sendonly", version=2)
HELD = sdp(CALLEE_IP, 50000, "recvonly", version=2)
DTMF = b"Signal=5\r\nDuration=160\r\n"


class World:
    """The switch, a callee device "bob" (extension 1001) registered from one or more phones,
    and a caller: an IP device (a PBX authenticated by its address) or a SIP device "alice"."""

    def __init__(self, *, ip_caller: bool = True, callee_contacts: int = 1, **kw: object) -> None:
        self.h = h = Harness(**kw)  # type: ignore[arg-type]
        self.bob_dev = h.add_device("bob", extension="1001", caller_number="442070001001")
        self.bobs = [h.ua("bob", CALLEE_IP, 5062 + 10 * i) for i in range(callee_contacts)]
        for phone in self.bobs:
            resp = phone.register()
            assert resp is not None and resp.status == 200
        self.ip_caller = ip_caller
        if ip_caller:
            self.ip_dev = h.add_ip_device(CALLER_IP, 5061, caller_number="442070000001")
            self.caller_number = "442070000001"
        else:
            self.alice_dev = h.add_device("alice", extension="1000", caller_number="442070001000",
                                          display_name="Alice")
            self.caller_number = "442070001000"
        self.alice = h.ua("alice", CALLER_IP, 5061)
        h.net.take()  # registration traffic

    @property
    def bob(self) -> UA:
        return self.bobs[0]

    def dial(self, number: str = "1001", *, body: bytes | None = None, call_id: str | None = None,
             from_tag: str | None = None) -> OutCall:
        """The caller's INVITE, authenticated (407 first) when the caller is a SIP device."""
        out = self.alice.call(number, body=body, call_id=call_id, from_tag=from_tag)
        msgs = self.alice.take()
        if not self.ip_caller:
            # Challenged statelessly (RFC 3261 8.2.7): the 407 alone, no 100, no transaction.
            assert statuses(msgs) == [407]
            challenge = only(msgs, status=407)
            assert not self.h.net.take(CALLEE_IP)
            out.authenticate(challenge)
            assert statuses(self.alice.take()) == [100]
        else:
            assert statuses(msgs) == [100]
        self.start_ms = self.h.clock.wall_ms()
        return out

    def incoming(self, phone: UA | None = None) -> InCall:
        phone = phone or self.bob
        (inv,) = [m for m in phone.take() if m.method == "INVITE"]
        return InCall(phone, inv)

    def connect(self, *, body: bytes | None = None) -> tuple[OutCall, InCall]:
        out = self.dial(body=body)
        inc = self.incoming()
        inc.respond(180)
        inc.respond(200, body=SDP_B)
        self.answer_ms = self.h.clock.wall_ms()
        ok = only(self.alice.take(), status=200)
        out.confirm(ok)
        out.ack()
        assert [m.method for m in self.bob.take()] == ["ACK"]
        return out, inc

    def cdr(self) -> CdrRecord:
        recs = self.h.cdrs.records
        assert len(recs) == 1, recs
        return recs[0]

    def check_cdr(self, out: OutCall, *, sip_code: int, disposition: str, hangup_by: str, answered: bool,
                  callee: bool = True, dialled: str = "1001", q850: int | None = None) -> CdrRecord:
        rec = self.cdr()
        end = self.h.clock.wall_ms() if not hasattr(self, "end_ms") else self.end_ms
        assert rec.sip_call_id == out.call_id  # the caller's Call-ID, as received
        assert_attempt_id(rec.call_id, self.start_ms)  # the key: the switch's own id of the attempt
        assert rec.customer_id == 1
        assert rec.caller_device_id == (None if self.ip_caller else self.alice_dev.id)
        assert rec.ip_device_id == (self.ip_dev.id if self.ip_caller else None)
        assert rec.callee_device_id == (self.bob_dev.id if callee else None)
        assert (rec.caller_number, rec.dialled_number) == (self.caller_number, dialled)
        assert rec.start_ms == self.start_ms
        assert rec.answer_ms == (self.answer_ms if answered else None)
        assert rec.end_ms == end
        assert rec.duration_ms == (end - self.answer_ms if answered else 0)
        expected_q850 = q850 if q850 is not None else q850_for_sip(sip_code)
        assert (rec.sip_code, rec.q850_cause, rec.disposition) == (sip_code, expected_q850, disposition)
        assert (rec.direction, rec.call_type, rec.source_ip, rec.hangup_by) == (
            DIRECTION_INTERNAL, CALL_TYPE_EXTENSION, CALLER_IP, hangup_by)
        # The answer's voice codecs (SDP_B offers PCMU and telephone-event); none if unanswered.
        assert rec.codecs == ("PCMU" if answered else "")
        return rec

    def mark_end(self) -> None:
        self.end_ms = self.h.clock.wall_ms()

    def assert_topology_hidden(self, out: OutCall, incs: list[InCall]) -> None:
        """Nothing the caller sent that names its side reaches a callee, and vice versa."""
        net = self.h.net
        to_callees = b"".join(s.data for phone in self.bobs for s in net.to(phone.ip, phone.port))
        for secret in (out.call_id, out.from_tag, "z9hG4bK-alice-", self.alice.contact_uri):
            assert secret.encode() not in to_callees, secret
        to_caller = b"".join(s.data for s in net.to(self.alice.ip, self.alice.port))
        for inc in incs:
            b_branch = inc.invite.via.branch if inc.invite.via else None
            assert b_branch
            for secret in (inc.invite.call_id, inc.to_tag, b_branch, "z9hG4bK-bob-", inc.ua.contact_uri,
                           inc.invite.from_.tag or "?"):
                assert secret.encode() not in to_caller, secret


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def assert_attempt_id(call_id: str, start_ms: int) -> None:
    """``call_id`` is a ULID made by the switch when the call started (its first 48 bits)."""
    assert len(call_id) == 26 and set(call_id) <= set(_CROCKFORD), call_id
    value = 0
    for ch in call_id:
        value = value * 32 + _CROCKFORD.index(ch)
    assert value >> 80 == start_ms, (call_id, start_ms)


def bye_and_answer(phone: UA) -> SipMessage:
    """The BYE the switch sent to ``phone``, answered 200."""
    bye = only(phone.take(), method="BYE")
    phone.respond(bye, 200)
    return bye


# -- a whole call --------------------------------------------------------------------------------


def test_full_call_from_an_ip_device() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial()
    inc = w.incoming()
    inv = inc.invite
    # The callee leg is a new dialog of the switch's own (RFC 7092 3.1): new Call-ID, From tag,
    # branch, and the switch's Contact; the body passes unchanged.
    assert inv.uri == bob.contact_uri
    assert inv.call_id != out.call_id and inv.from_.tag != out.from_tag
    assert inv.via is not None and inv.via.host == SWITCH_IP and inv.via.branch
    assert inv.via.branch.startswith("z9hG4bK") and len(inv.vias) == 1
    assert inv.get("contact") == SWITCH_CONTACT
    assert inv.from_.parsed_uri.user == "442070000001" and inv.to.parsed_uri.user == "1001"
    assert inv.to.tag is None and inv.cseq_num == 1 and inv.max_forwards == 69
    assert inv.body == out.body and inv.content_type == "application/sdp"

    inc.respond(180)
    ringing = only(alice.take(), status=180)
    tag = ringing.to.tag
    assert tag and ringing.get("contact") == SWITCH_CONTACT and ringing.call_id == out.call_id
    inc.respond(183, body=SDP_B)
    progress = only(alice.take(), status=183)
    assert progress.to.tag == tag and progress.body == SDP_B and progress.content_type == "application/sdp"
    h.advance(2.0)
    inc.respond(200, body=SDP_B)
    w.answer_ms = h.clock.wall_ms()
    ok = only(alice.take(), status=200)
    assert ok.to.tag == tag and ok.body == SDP_B and ok.get("contact") == SWITCH_CONTACT
    assert h.core.active_calls == 1
    out.confirm(ok)
    assert out.dialog is not None and out.dialog.target == f"sip:trunkline@{SWITCH_IP}:{SWITCH_PORT}"
    out.ack()
    ack = only(bob.take(), method="ACK")
    assert ack.uri == bob.contact_uri and ack.call_id == inv.call_id and ack.cseq_num == 1
    assert ack.to.tag == inc.to_tag and ack.from_.tag == inv.from_.tag
    assert ack.via is not None and ack.via.branch != inv.via.branch

    h.advance(30.0)
    assert out.dialog is not None
    out.dialog.request("BYE")
    w.mark_end()
    assert statuses(alice.take()) == [200]  # answered at once, not after the far side's answer
    bye = bye_and_answer(bob)
    assert bye.call_id == inv.call_id and bye.to.tag == inc.to_tag and bye.uri == bob.contact_uri
    w.check_cdr(out, sip_code=200, disposition=ANSWERED, hangup_by=HANGUP_CALLER, answered=True)
    assert w.cdr().duration_ms == 30000
    w.assert_topology_hidden(out, [inc])
    h.assert_idle()
    assert len(h.cdrs.records) == 1


@pytest.mark.parametrize("ip_caller", [True, False], ids=["ip-device", "digest-device"])
@pytest.mark.parametrize("same_from_tag", [False, True], ids=["new-from-tag", "same-from-tag"])
def test_calls_reusing_one_call_id_get_one_cdr_each(ip_caller: bool, same_from_tag: bool) -> None:
    """A caller chooses its Call-ID: two complete calls with the same one (a device reusing it, a
    fraudster) are two attempts with two CDRs, each with its own key; the Call-ID is only kept
    (``sip_call_id``), never trusted as the key billing stores CDRs by."""
    w = World(ip_caller=ip_caller)
    h, alice = w.h, w.alice
    reused = "same-every-time@192.0.2.66"
    keys: list[str] = []
    from_tag: str | None = None
    for n in range(2):
        h.cdrs.records.clear()
        out = w.dial(call_id=reused, from_tag=from_tag if same_from_tag else None)
        from_tag = out.from_tag
        inc = w.incoming()
        inc.respond(200, body=SDP_B)
        w.answer_ms = h.clock.wall_ms()
        out.confirm(only(alice.take(), status=200))
        out.ack()
        assert [m.method for m in w.bob.take()] == ["ACK"]
        h.advance(10.0 + n)
        assert out.dialog is not None
        out.dialog.request("BYE")
        w.mark_end()
        assert statuses(alice.take()) == [200]
        bye_and_answer(w.bob)
        rec = w.check_cdr(out, sip_code=200, disposition=ANSWERED, hangup_by=HANGUP_CALLER, answered=True)
        assert rec.sip_call_id == reused and rec.duration_ms == (10 + n) * 1000
        keys.append(rec.call_id)
        del w.end_ms
        h.advance(1.0)
    assert keys[0] != keys[1] and keys[0] < keys[1]  # unique, and in start order
    h.assert_idle()


def test_refused_attempts_reusing_one_call_id_get_distinct_keys() -> None:
    """Refused attempts (here: a number that does not exist) are CDRs too, each with its own key."""
    w = World()
    recs = []
    for _ in range(3):
        w.h.cdrs.records.clear()
        out = w.alice.call("5555", call_id="again@192.0.2.66", from_tag="same-tag")
        msgs = w.alice.take()
        assert statuses(msgs) == [100, 404]
        out.ack_failure(msgs[1])
        (rec,) = w.h.cdrs.records
        assert rec.sip_call_id == "again@192.0.2.66" and rec.disposition == NOT_FOUND
        assert_attempt_id(rec.call_id, rec.start_ms)
        recs.append(rec)
        w.h.advance(40.0)  # let the attempt's transactions end before the next one
    assert len({r.call_id for r in recs}) == 3
    w.h.assert_idle()


def test_full_call_from_a_digest_device_bye_from_callee() -> None:
    w = World(ip_caller=False)
    h, alice, bob = w.h, w.alice, w.bob
    out = alice.call("1001")
    msgs = alice.take()
    assert statuses(msgs) == [407]  # challenged statelessly (RFC 3261 8.2.7)
    challenge = msgs[0]
    values = challenge.get_all("proxy-authenticate")
    assert [(parse_challenge(v) or {}).get("algorithm") for v in values] == ["SHA-256", "MD5"]
    assert not h.net.take(CALLEE_IP) and h.cdrs.records == []  # nothing rings, no CDR for a challenge
    out.authenticate(challenge, algorithm="MD5")
    assert statuses(alice.take()) == [100]
    w.start_ms = h.clock.wall_ms()
    inc = w.incoming()
    assert inc.invite.from_.display == "Alice" and inc.invite.from_.parsed_uri.user == "442070001000"
    assert inc.invite.get("proxy-authorization") is None  # credentials never leave the switch
    inc.respond(180)
    inc.respond(200, body=SDP_B)
    w.answer_ms = h.clock.wall_ms()
    ok = only(alice.take(), status=200)
    out.confirm(ok)
    out.ack()
    assert [m.method for m in bob.take()] == ["ACK"]
    h.advance(12.5)
    inc.dialog.request("BYE")
    w.mark_end()
    assert statuses(bob.take()) == [200]
    bye = bye_and_answer(alice)
    # The switch's request in the caller's dialog (RFC 3261 12.2.1.1).
    assert bye.uri == alice.contact_uri and bye.call_id == out.call_id
    assert bye.from_.tag == ok.to.tag and bye.to.tag == out.from_tag
    assert bye.cseq_num == 1 and bye.get("contact") is None
    w.check_cdr(out, sip_code=200, disposition=ANSWERED, hangup_by=HANGUP_CALLEE, answered=True)
    assert w.cdr().duration_ms == 12500
    w.assert_topology_hidden(out, [inc])
    h.assert_idle()


def test_2xx_retransmitted_to_the_caller_until_ack() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial()
    inc = w.incoming()
    inc.respond(200, body=SDP_B)
    t0 = h.now
    h.advance(20.0)
    sent = alice.take_sent()
    # RFC 3261 13.3.1.4: T1, then doubling up to T2 (0.5, 1, 2, 4, 4, 4 ...).
    assert [s.at - t0 for s in sent] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5]
    assert {s.msg.status for s in sent} == {200} and len({s.data for s in sent}) == 1
    assert bob.take() == []  # the callee is ACKed only once the caller ACKs
    out.confirm(sent[0].msg)
    out.ack()
    assert [m.method for m in bob.take()] == ["ACK"]
    h.advance(30.0)
    assert alice.take() == [] and bob.take() == []
    out.ack()  # a retransmitted ACK is absorbed
    assert bob.take() == []
    assert out.dialog is not None
    out.dialog.request("BYE")
    bye_and_answer(bob)
    h.assert_idle()


def test_late_offer_ack_carries_the_answer() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial(body=b"")
    inc = w.incoming()
    assert inc.invite.body == b"" and inc.invite.get("content-type") is None
    inc.respond(200, body=SDP_B)  # the offer
    ok = only(alice.take(), status=200)
    assert ok.body == SDP_B
    out.confirm(ok)
    answer = sdp(CALLER_IP, 40000)
    out.ack(body=answer, content_type="application/sdp")
    ack = only(bob.take(), method="ACK")
    assert ack.body == answer and ack.content_type == "application/sdp"
    inc.dialog.request("BYE")
    bye_and_answer(alice)
    h.assert_idle()


def test_callee_2xx_retransmission_is_acked_again() -> None:
    w = World()
    h, bob = w.h, w.bob
    out, inc = w.connect()
    inc.respond(200, body=SDP_B)  # our ACK was lost (RFC 3261 13.2.2.4)
    again = only(bob.take(), method="ACK")
    assert again.call_id == inc.invite.call_id and again.cseq_num == 1
    assert w.alice.take() == []  # the caller's 2xx was ACKed already: nothing to relay
    assert out.dialog is not None
    out.dialog.request("BYE")
    bye_and_answer(bob)
    h.assert_idle()


def test_invite_retransmission_does_not_ring_twice() -> None:
    w = World()
    alice, bob = w.alice, w.bob
    out = w.dial()
    inc = w.incoming()
    inc.respond(180)
    assert statuses(alice.take()) == [180]
    out.retransmit_invite()
    assert statuses(alice.take()) == [180]  # the last provisional again (RFC 3261 17.2.1)
    assert bob.take() == []
    inc.respond(486)
    only(bob.take(), method="ACK")
    final = alice.take()
    assert statuses(final) == [486]
    out.retransmit_invite()
    assert statuses(alice.take()) == [486]  # Completed: the final again
    out.ack_failure(final[0])
    assert len(w.h.cdrs.records) == 1
    w.h.assert_idle()


# -- in-dialog requests ------------------------------------------------------------------------------


def test_reinvite_hold_relayed_both_ways() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out, inc = w.connect()
    assert out.dialog is not None
    # The caller holds: the re-INVITE goes to the callee in the callee's dialog.
    out.dialog.request("INVITE", body=HOLD)
    assert statuses(alice.take()) == [100]
    reinv = only(bob.take(), method="INVITE")
    assert reinv.call_id == inc.invite.call_id and reinv.cseq_num == 2 and reinv.uri == bob.contact_uri
    assert reinv.to.tag == inc.to_tag and reinv.from_.tag == inc.invite.from_.tag
    assert reinv.body == HOLD and reinv.content_type == "application/sdp"
    assert reinv.get("contact") == SWITCH_CONTACT
    bob.respond(reinv, 200, body=HELD)
    ok = only(alice.take(), status=200)
    assert ok.body == HELD and ok.get("contact") == SWITCH_CONTACT and ok.cseq_num == out.dialog.cseq
    out.dialog.ack(out.dialog.cseq)
    ack = only(bob.take(), method="ACK")
    assert ack.cseq_num == 2 and ack.call_id == inc.invite.call_id and ack.body == b""
    # The callee unholds (its own re-INVITE): relayed into the caller's dialog.
    unhold_b = sdp(CALLEE_IP, 50000, version=3)
    inc.dialog.request("INVITE", body=unhold_b)
    assert statuses(bob.take()) == [100]
    to_a = only(alice.take(), method="INVITE")
    assert to_a.call_id == out.call_id and to_a.uri == alice.contact_uri and to_a.body == unhold_b
    assert to_a.from_.tag == ok.to.tag and to_a.to.tag == out.from_tag and to_a.cseq_num == 1
    unhold_a = sdp(CALLER_IP, 40000, version=3)
    alice.respond(to_a, 200, body=unhold_a)
    ok_b = only(bob.take(), status=200)
    assert ok_b.body == unhold_a and ok_b.call_id == inc.invite.call_id
    inc.dialog.ack(inc.dialog.cseq)
    ack_a = only(alice.take(), method="ACK")
    assert ack_a.cseq_num == 1 and ack_a.call_id == out.call_id
    inc.dialog.request("BYE")
    bye_and_answer(alice)
    w.mark_end()
    w.check_cdr(out, sip_code=200, disposition=ANSWERED, hangup_by=HANGUP_CALLEE, answered=True)
    w.assert_topology_hidden(out, [inc])
    h.assert_idle()


def test_reinvite_refused_by_far_side_is_relayed() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out, _inc = w.connect()
    assert out.dialog is not None
    req = out.dialog.request("INVITE", body=HOLD)
    reinv = only(bob.take(), method="INVITE")
    bob.respond(reinv, 488)
    assert methods_of(bob.take()) == ["ACK"]  # the switch's transaction ACKs the 488
    resp = only([m for m in alice.take() if m.status != 100], status=488)
    alice.ack_failure(req, resp)
    assert bob.take() == []
    out.dialog.request("BYE")
    bye_and_answer(bob)
    h.assert_idle()


def test_update_and_info_relayed() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out, inc = w.connect()
    assert out.dialog is not None
    offer = sdp(CALLER_IP, 40002, version=2)
    out.dialog.request("UPDATE", body=offer)
    upd = only(bob.take(), method="UPDATE")
    assert upd.body == offer and upd.call_id == inc.invite.call_id and upd.to.tag == inc.to_tag
    answer = sdp(CALLEE_IP, 50002, version=2)
    bob.respond(upd, 200, body=answer)
    ok = only(alice.take(), status=200)
    assert ok.body == answer and ok.cseq_method == "UPDATE" and ok.to.tag == out.dialog.remote.split("tag=")[1]
    # DTMF by SIP INFO from the callee: body and Content-Type arrive as sent.
    inc.dialog.request("INFO", body=DTMF, content_type="application/dtmf-relay")
    info = only(alice.take(), method="INFO")
    assert info.body == DTMF and info.get("content-type") == "application/dtmf-relay"
    assert info.call_id == out.call_id
    alice.respond(info, 200)
    ok = only(bob.take(), status=200)
    assert ok.cseq_method == "INFO" and ok.cseq_num == inc.dialog.cseq
    # And from the caller too.
    out.dialog.request("INFO", body=DTMF, content_type="application/dtmf-relay")
    info = only(bob.take(), method="INFO")
    assert info.body == DTMF and info.get("content-type") == "application/dtmf-relay"
    bob.respond(info, 200)
    assert statuses(alice.take()) == [200]
    out.dialog.request("BYE")
    bye_and_answer(bob)
    w.assert_topology_hidden(out, [inc])
    h.assert_idle()


def test_glare_is_491() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out, inc = w.connect()
    assert out.dialog is not None
    out.dialog.request("INVITE", body=HOLD)
    reinv = only(bob.take(), method="INVITE")
    # The callee sends its own re-INVITE while ours is pending in its dialog (RFC 3261 14.1).
    theirs = inc.dialog.request("INVITE", body=HELD)
    resp = only([m for m in bob.take() if m.status != 100], status=491)
    bob.ack_failure(theirs, resp)
    assert statuses(alice.take()) == [100]  # no INVITE reached the caller
    # The first re-INVITE completes normally.
    bob.respond(reinv, 200, body=HELD)
    assert statuses(alice.take()) == [200]
    out.dialog.ack(out.dialog.cseq)
    assert methods_of(bob.take()) == ["ACK"]
    out.dialog.request("BYE")
    bye_and_answer(bob)
    h.assert_idle()


def test_second_reinvite_before_the_first_is_answered_is_500() -> None:
    w = World()
    out, _inc = w.connect()
    assert out.dialog is not None
    out.dialog.request("INVITE", body=HOLD)
    w.bob.take()
    out.dialog.request("INVITE", body=HOLD)
    resp = [m for m in w.alice.take() if m.status >= 200]
    assert [m.status for m in resp] == [500]
    assert resp[0].get("retry-after") is not None


def test_reinvite_2xx_retransmission_is_acked_again() -> None:
    w = World()
    out, _inc = w.connect()
    assert out.dialog is not None
    out.dialog.request("INVITE", body=HOLD)
    reinv = only(w.bob.take(), method="INVITE")
    w.bob.respond(reinv, 200, body=HELD)
    w.alice.take()
    out.dialog.ack(out.dialog.cseq)
    assert methods_of(w.bob.take()) == ["ACK"]
    w.bob.respond(reinv, 200, body=HELD)  # the ACK was lost
    assert methods_of(w.bob.take()) == ["ACK"]


def test_in_dialog_cseq_out_of_order_is_500() -> None:
    w = World()
    out, _inc = w.connect()
    assert out.dialog is not None
    out.dialog.request("INFO", body=DTMF, content_type="application/dtmf-relay", cseq=1)  # INVITE had 1
    assert statuses(w.alice.take()) == [500]  # RFC 3261 12.2.2
    assert w.bob.take() == []
    out.dialog.request("BYE")
    bye_and_answer(w.bob)
    w.h.assert_idle()


def test_request_after_the_call_ended_is_481() -> None:
    w = World()
    out, _inc = w.connect()
    assert out.dialog is not None
    out.dialog.request("BYE")
    bye_and_answer(w.bob)
    w.alice.take()
    out.dialog.request("BYE")
    assert statuses(w.alice.take()) == [481]
    w.h.assert_idle()


# -- CANCEL -------------------------------------------------------------------------------------------


def test_cancel_before_any_provisional_waits_for_it() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial()
    inc = w.incoming()
    h.advance(1.0)
    assert [m.method for m in bob.take()] == ["INVITE"]  # Timer A retransmission at T1
    out.cancel()
    w.mark_end()
    final = alice.take()
    assert statuses(final) == [200, 487]  # RFC 3261 9.2: 200 to the CANCEL, 487 to the INVITE
    assert final[0].cseq_method == "CANCEL" and final[1].cseq_method == "INVITE"
    # RFC 3261 9.1: no CANCEL before the callee's first provisional.
    assert bob.take() == []
    out.ack_failure(final[1])
    h.advance(0.25)
    inc.respond(180)
    cancel = only(bob.take(), method="CANCEL")
    assert cancel.via is not None and inc.invite.via is not None
    assert cancel.via.branch == inc.invite.via.branch and cancel.cseq_num == inc.invite.cseq_num
    assert cancel.uri == inc.invite.uri and cancel.to.tag is None and cancel.call_id == inc.invite.call_id
    assert alice.take() == []  # the late 180 is not relayed
    bob.respond(cancel, 200)
    inc.respond(487)
    ack = only(bob.take(), method="ACK")
    assert ack.via is not None and ack.via.branch == inc.invite.via.branch  # 17.1.1.3
    w.check_cdr(out, sip_code=487, disposition=CANCELLED, hangup_by=HANGUP_CALLER, answered=False)
    w.assert_topology_hidden(out, [inc])
    h.assert_idle()


def test_cancel_while_ringing() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial()
    inc = w.incoming()
    inc.respond(180)
    alice.take()
    h.advance(5.0)
    out.cancel()
    w.mark_end()
    final = alice.take()
    assert statuses(final) == [200, 487]
    cancel = only(bob.take(), method="CANCEL")
    bob.respond(cancel, 200)
    inc.respond(487)
    only(bob.take(), method="ACK")
    out.ack_failure(final[1])
    assert h.core.calls == {}
    w.check_cdr(out, sip_code=487, disposition=CANCELLED, hangup_by=HANGUP_CALLER, answered=False)
    h.assert_idle()


def test_cancel_200_and_487_share_the_to_tag() -> None:
    w = World()
    out = w.dial()
    inc = w.incoming()
    inc.respond(180)
    ringing = only(w.alice.take(), status=180)
    out.cancel()
    ok, terminated = w.alice.take()
    assert terminated.to.tag == ringing.to.tag
    assert ok.to.tag == terminated.to.tag


def test_callee_2xx_crossing_the_cancel_is_acked_and_byed() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial()
    inc = w.incoming()
    inc.respond(180)
    alice.take()
    out.cancel()
    final = alice.take()
    assert statuses(final) == [200, 487]
    out.ack_failure(final[1])
    cancel = only(bob.take(), method="CANCEL")
    # The callee answered before the CANCEL reached it (RFC 3261 9.1 and 15: ACK, then BYE).
    inc.respond(200, body=SDP_B)
    bob.respond(cancel, 200)
    sent = bob.take()
    assert [m.method for m in sent] == ["ACK", "BYE"]
    ack, bye = sent
    assert ack.cseq_num == 1 and ack.to.tag == inc.to_tag and bye.to.tag == inc.to_tag
    assert bye.call_id == inc.invite.call_id and bye.cseq_num == 2
    bob.respond(bye, 200)
    assert alice.take() == []  # the caller only ever saw the 487
    assert h.core.active_calls == 0
    w.check_cdr(out, sip_code=487, disposition=CANCELLED, hangup_by=HANGUP_CALLER, answered=False)
    h.assert_idle()


def test_cancel_without_matching_invite_after_answer_does_nothing() -> None:
    w = World()
    out, _inc = w.connect()
    out.cancel()  # too late: the INVITE was answered (RFC 3261 9.2: no effect)
    assert statuses(w.alice.take()) == [200]
    assert w.bob.take() == []
    assert w.h.core.active_calls == 1
    assert out.dialog is not None
    out.dialog.request("BYE")
    bye_and_answer(w.bob)
    w.h.assert_idle()


def test_bye_from_caller_on_the_early_dialog_ends_the_attempt() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial()
    inc = w.incoming()
    inc.respond(180)
    ringing = only(alice.take(), status=180)
    early = out.confirm(ringing)  # RFC 3261 15: the caller MAY send BYE on an early dialog
    early.request("BYE")
    sent = alice.take()
    # RFC 3261 15.1.2: 200 to the BYE, and the pending INVITE is answered (487 recommended).
    assert sorted(statuses(sent)) == [200, 487]
    out.ack_failure(only(sent, status=487))
    cancel = only(bob.take(), method="CANCEL")
    bob.respond(cancel, 200)
    inc.respond(487)
    only(bob.take(), method="ACK")
    rec = w.cdr()
    assert rec.answer_ms is None and rec.disposition == CANCELLED and rec.sip_code == 487
    h.assert_idle()


def test_cancelled_leg_without_final_response_is_forgotten() -> None:
    # RFC 3261 9.1: with no final response 64*T1 after the CANCEL, the INVITE client transaction
    # is destroyed (else a silent phone leaks it).
    w = World(no_answer_timeout=10.0)
    h = w.h
    out = w.dial()
    inc = w.incoming()
    inc.respond(180)
    h.advance(10.0)
    final = [m for m in w.alice.take() if m.status >= 200]
    assert statuses(final) == [480]
    out.ack_failure(final[0])
    cancel = only(w.bob.take(), method="CANCEL")
    w.bob.respond(cancel, 200)  # and the phone never sends its 487
    h.assert_idle()


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("code,disposition", [(486, BUSY), (603, REJECTED), (480, UNAVAILABLE)])
def test_callee_refusal_is_relayed(code: int, disposition: str) -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial()
    inc = w.incoming()
    inc.respond(180)
    ringing = only(alice.take(), status=180)
    h.advance(3.0)
    inc.respond(code)
    w.mark_end()
    only(bob.take(), method="ACK")  # the switch's INVITE client transaction ACKs the failure
    final = alice.take()
    assert statuses(final) == [code]
    assert final[0].to.tag == ringing.to.tag  # the early dialog's tag
    out.ack_failure(final[0])
    h.advance(1.0)
    assert alice.take() == []  # the ACK stopped Timer G
    rec = w.check_cdr(out, sip_code=code, disposition=disposition, hangup_by=HANGUP_CALLEE, answered=False)
    assert rec.q850_cause == {486: 17, 603: 21, 480: 18}[code]
    h.assert_idle()


def test_final_failure_is_retransmitted_until_acked() -> None:
    w = World()
    h, alice = w.h, w.alice
    out = w.dial()
    inc = w.incoming()
    inc.respond(486)
    t0 = h.now
    h.advance(5.0)
    sent = [s for s in alice.take_sent() if s.msg.status == 486]
    assert [s.at - t0 for s in sent] == [0.0, 0.5, 1.5, 3.5]  # Timer G (RFC 3261 17.2.1)
    out.ack_failure(sent[0].msg)
    h.advance(10.0)
    assert alice.take() == []
    h.assert_idle()


def test_no_answer_timeout() -> None:
    w = World(no_answer_timeout=20.0)
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial()
    t0 = h.now
    inc = w.incoming()
    inc.respond(180)
    alice.take()
    h.advance(19.9)
    assert alice.take() == [] and bob.take() == []
    h.advance(0.2)
    sent = alice.take_sent()
    assert [s.msg.status for s in sent] == [480] and sent[0].at == t0 + 20.0
    out.ack_failure(sent[0].msg)
    (cancel,) = bob.take_sent()
    assert cancel.msg.method == "CANCEL" and cancel.at == t0 + 20.0
    bob.respond(cancel.msg, 200)
    inc.respond(487)
    only(bob.take(), method="ACK")
    w.end_ms = w.start_ms + 20000
    rec = w.check_cdr(out, sip_code=480, disposition=NO_ANSWER, hangup_by=HANGUP_SWITCH, answered=False, q850=19)
    assert rec.q850_cause == 19  # no answer from user (user alerted)
    h.assert_idle()


def test_unknown_number_is_404() -> None:
    w = World()
    h, alice = w.h, w.alice
    out = alice.call("5555")
    w.start_ms = w.end_ms = h.clock.wall_ms()
    msgs = alice.take()
    assert statuses(msgs) == [100, 404]
    assert h.net.take(CALLEE_IP) == []
    out.ack_failure(msgs[1])
    w.check_cdr(out, sip_code=404, disposition=NOT_FOUND, hangup_by=HANGUP_SWITCH, answered=False, callee=False,
                dialled="5555")
    assert w.cdr().q850_cause == 1
    h.assert_idle()


def test_callee_not_registered_is_480() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    assert (r := bob.register(contacts=["*"], expires=0)) is not None and r.status == 200
    out = alice.call("1001")
    w.start_ms = w.end_ms = h.clock.wall_ms()
    msgs = alice.take()
    assert statuses(msgs) == [100, 480]
    out.ack_failure(msgs[1])
    assert bob.take() == []
    w.check_cdr(out, sip_code=480, disposition=UNAVAILABLE, hangup_by=HANGUP_SWITCH, answered=False)
    h.assert_idle()


def test_callee_by_username_of_the_same_customer() -> None:
    w = World()
    out = w.alice.call("bob")
    assert statuses(w.alice.take()) == [100]
    inc = w.incoming()
    assert inc.invite.to.parsed_uri.user == "bob"
    out.cancel()
    final = w.alice.take()
    assert statuses(final) == [200, 487]
    out.ack_failure(final[1])
    assert w.cdr().dialled_number == "bob" and w.cdr().callee_device_id == w.bob_dev.id
    w.h.assert_idle()  # the callee never answered: Timer B ends its INVITE transaction


def test_call_over_tcp_has_no_retransmissions() -> None:
    h = Harness()
    h.add_device("bob", extension="1001")
    bob = h.ua("bob", CALLEE_IP, 50001, transport="tcp", conn_id=5)
    assert (r := bob.register()) is not None and r.status == 200
    h.add_ip_device(CALLER_IP, None, caller_number="442070000001")  # any source port
    alice = h.ua("alice", CALLER_IP, 50002, transport="tcp", conn_id=6)
    out = alice.call("1001")
    assert statuses(alice.take()) == [100]
    (sent,) = bob.take_sent()
    inv = sent.msg
    # Reached over the connection it registered on (RFC 5626 spirit), with a TCP Via and Contact.
    assert (sent.peer.transport, sent.peer.conn_id) == ("tcp", 5)
    assert inv.via is not None and inv.via.transport == "TCP"
    assert inv.get("contact") == f"<sip:trunkline@{SWITCH_IP}:{SWITCH_PORT};transport=tcp>"
    h.advance(10.0)
    assert bob.take() == []  # no Timer A on a reliable transport (RFC 3261 17.1.1.2)
    inc = InCall(bob, inv)
    inc.respond(200, body=SDP_B)
    h.advance(20.0)
    oks = alice.take_sent()
    assert [s.msg.status for s in oks] == [200] and oks[0].peer.conn_id == 6  # sent once
    out.confirm(oks[0].msg)
    out.ack()
    assert methods_of(bob.take()) == ["ACK"]
    out.dialog.request("BYE")  # type: ignore[union-attr]
    assert statuses(alice.take()) == [200]
    bye_and_answer(bob)
    assert len(h.cdrs.records) == 1 and h.cdrs.records[0].sip_code == 200
    h.assert_idle()


def test_callee_timeout_is_408() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial()
    t0 = h.now
    h.advance(64 * T1)
    final = alice.take_sent()
    assert [(s.msg.status, s.at - t0) for s in final] == [(408, 64 * T1)]
    out.ack_failure(final[0].msg)
    h.advance(8.0)
    sent = bob.take_sent()
    # Timer A: T1, doubling without a cap (RFC 3261 17.1.1.2), until Timer B at 64*T1.
    assert [s.at - t0 for s in sent] == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert {s.msg.method for s in sent} == {"INVITE"}
    assert alice.take() == []
    w.end_ms = w.start_ms + 32000
    rec = w.cdr()
    assert (rec.sip_code, rec.disposition, rec.q850_cause, rec.answer_ms, rec.end_ms) == (
        408, NO_ANSWER, 102, None, w.end_ms)
    h.assert_idle()


def test_callee_timeout_is_the_switchs_hangup() -> None:
    w = World()
    w.dial()
    w.h.advance(33.0)
    assert w.cdr().hangup_by == HANGUP_SWITCH


def test_caller_never_acks_the_2xx() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    out = w.dial()
    inc = w.incoming()
    inc.respond(200, body=SDP_B)
    w.answer_ms = h.clock.wall_ms()
    t0 = h.now
    h.advance(31.9)
    assert {s.msg.status for s in alice.take_sent()} == {200}
    assert bob.take() == []
    h.advance(0.2)
    # RFC 3261 13.3.1.4: no ACK within 64*T1: the dialog ends with BYE; the callee's 2xx is
    # ACKed first (13.2.2.4), then BYEd.
    to_bob = bob.take_sent()
    assert [s.msg.method for s in to_bob] == ["ACK", "BYE"] and all(s.at == t0 + 64 * T1 for s in to_bob)
    to_alice = alice.take_sent()
    assert [s.msg.method for s in to_alice] == ["BYE"] and to_alice[0].at == t0 + 64 * T1
    bob.respond(to_bob[1].msg, 200)
    alice.respond(to_alice[0].msg, 200)
    w.end_ms = w.answer_ms + 32000
    w.check_cdr(out, sip_code=200, disposition=ANSWERED, hangup_by=HANGUP_SWITCH, answered=True)
    assert w.cdr().duration_ms == 32000
    h.assert_idle()


# -- forking ---------------------------------------------------------------------------------------


def test_forking_first_answer_wins() -> None:
    w = World(callee_contacts=3)
    h, alice = w.h, w.alice
    desk, soft, mobile = w.bobs
    out = w.dial()
    incs = [w.incoming(p) for p in (desk, soft, mobile)]
    assert len({i.invite.call_id for i in incs}) == 3  # one dialog per branch
    incs[0].respond(180)
    incs[1].respond(180)
    rings = [m for m in alice.take() if m.status == 180]
    assert len(rings) == 2 and rings[0].to.tag == rings[1].to.tag  # one To tag toward the caller
    incs[1].respond(200, body=SDP_B)
    w.answer_ms = h.clock.wall_ms()
    ok = only(alice.take(), status=200)
    assert ok.to.tag == rings[0].to.tag and ok.body == SDP_B
    cancel = only(desk.take(), method="CANCEL")  # ringing: cancelled at once
    assert soft.take() == [] and mobile.take() == []  # mobile never sent a provisional: not yet
    desk.respond(cancel, 200)
    incs[0].respond(487)
    only(desk.take(), method="ACK")
    incs[2].respond(180)
    cancel = only(mobile.take(), method="CANCEL")  # RFC 3261 9.1: now it may be cancelled
    mobile.respond(cancel, 200)
    incs[2].respond(487)
    only(mobile.take(), method="ACK")
    assert alice.take() == []  # nothing from the losing branches reaches the caller
    out.confirm(ok)
    out.ack()
    assert [m.method for m in soft.take()] == ["ACK"]
    out.dialog.request("BYE")  # type: ignore[union-attr]
    w.mark_end()
    bye_and_answer(soft)
    w.check_cdr(out, sip_code=200, disposition=ANSWERED, hangup_by=HANGUP_CALLER, answered=True)
    w.assert_topology_hidden(out, incs)
    h.assert_idle()


def test_forking_second_2xx_is_acked_and_byed() -> None:
    w = World(callee_contacts=2)
    h, alice = w.h, w.alice
    desk, soft = w.bobs
    out = w.dial()
    first, second = w.incoming(desk), w.incoming(soft)
    first.respond(180)
    second.respond(180)
    first.respond(200, body=SDP_B)
    cancel = only(soft.take(), method="CANCEL")
    second.respond(200, body=sdp(CALLEE_IP, 50010))  # crossed the CANCEL
    soft.respond(cancel, 200)
    ack, bye = soft.take()
    assert (ack.method, bye.method) == ("ACK", "BYE") and bye.to.tag == second.to_tag
    soft.respond(bye, 200)
    msgs = alice.take()
    assert statuses(msgs) == [180, 180, 200]  # one 200 only
    out.confirm(msgs[-1])
    out.ack()
    assert [m.method for m in desk.take()] == ["ACK"]
    assert h.core.active_calls == 1
    out.dialog.request("BYE")  # type: ignore[union-attr]
    bye_and_answer(desk)
    assert len(h.cdrs.records) == 1
    h.assert_idle()


@pytest.mark.parametrize("codes,best", [
    ((480, 486), 486),  # busy says more than unavailable (RFC 3261 16.7 step 6)
    ((486, 408), 486),
    ((404, 480), 404),
    ((500, 486), 486),  # the lowest class wins
    ((486, 603), 603),  # a 6xx wins over everything
])
def test_forking_all_branches_fail_best_response(codes: tuple[int, int], best: int) -> None:
    w = World(callee_contacts=2)
    h, alice = w.h, w.alice
    out = w.dial()
    incs = [w.incoming(p) for p in w.bobs]
    for inc, code in zip(incs, codes, strict=True):
        inc.respond(180)
        inc.respond(code)
        only(inc.ua.take(), method="ACK")
    w.mark_end()
    final = [m for m in alice.take() if m.status >= 200]
    assert statuses(final) == [best]
    out.ack_failure(final[0])
    rec = w.cdr()
    assert (rec.sip_code, rec.q850_cause, rec.answer_ms) == (best, q850_for_sip(best), None)
    h.assert_idle()


def test_forking_one_branch_times_out() -> None:
    w = World(callee_contacts=2)
    h, alice = w.h, w.alice
    out = w.dial()
    busy = w.incoming(w.bobs[0])
    w.incoming(w.bobs[1])  # never answers: Timer B ends it with a 408
    busy.respond(486)
    assert alice.take() == []
    h.advance(64 * T1)
    final = alice.take()
    assert statuses(final) == [486]
    out.ack_failure(final[0])
    h.assert_idle()


def test_forking_6xx_cancels_the_other_branches() -> None:
    w = World(callee_contacts=2)
    w.dial()
    decline, other = w.incoming(w.bobs[0]), w.incoming(w.bobs[1])
    other.respond(180)
    decline.respond(603)
    only(w.bobs[1].take(), method="CANCEL")


def methods_of(msgs: list[SipMessage]) -> list[str]:
    return [m.method for m in msgs if m.method]


def test_bye_refers_to_the_contact_and_nat_address_of_each_side() -> None:
    # The caller's Contact names a private address; its packets come from the NAT.  BYE to it
    # goes to the source address with the Contact as Request-URI.
    w = World()
    h = w.h
    natted = h.ua("pbx", "198.51.100.77", 40077, via_host="10.1.1.7", via_port=5060)
    h.add_ip_device("198.51.100.77", 40077, caller_number="442070000077")
    out = natted.call("1001")
    assert statuses(natted.take()) == [100]
    inc = w.incoming()
    inc.respond(200, body=SDP_B)
    ok = only(natted.take(), status=200)
    out.confirm(ok)
    out.ack()
    w.bob.take()
    inc.dialog.request("BYE")
    (bye,) = natted.take_sent()
    assert bye.msg.method == "BYE" and bye.msg.uri == "sip:pbx@10.1.1.7:5060"
    assert (bye.peer.ip, bye.peer.port) == ("198.51.100.77", 40077)
    natted.respond(bye.msg, 200)
    h.assert_idle()


def test_contact_of_callee_dialog_is_used_after_answer() -> None:
    w = World()
    out, inc = w.connect()
    assert out.dialog is not None
    # The callee's 200 named its Contact; in-dialog requests go there (RFC 3261 12.2.1.1).
    assert contact_uri(inc.invite) == f"sip:trunkline@{SWITCH_IP}:{SWITCH_PORT}"
    out.dialog.request("BYE")
    bye = bye_and_answer(w.bob)
    assert bye.uri == w.bob.contact_uri
    w.h.assert_idle()


def test_bye_before_ack_still_acks_the_callee() -> None:
    w = World()
    alice, bob = w.alice, w.bob
    out = w.dial()
    inc = w.incoming()
    inc.respond(200, body=SDP_B)
    ok = only(alice.take(), status=200)
    out.confirm(ok).request("BYE")  # the caller's ACK was lost; its BYE arrives first
    assert statuses(alice.take()) == [200]
    assert methods_of(bob.take()) == ["ACK", "BYE"]


def test_callee_unreachable_is_503() -> None:
    w = World()
    h, alice, bob = w.h, w.alice, w.bob
    h.net.down.add((bob.ip, bob.port))  # e.g. its TCP flow is gone
    out = alice.call("1001")
    w.start_ms = w.end_ms = h.clock.wall_ms()
    final = alice.take()
    assert statuses(final) == [100, 503]
    out.ack_failure(final[1])
    rec = w.cdr()
    assert (rec.sip_code, rec.answer_ms, rec.callee_device_id) == (503, None, w.bob_dev.id)
    h.assert_idle()


def test_caller_of_a_stopped_customer_is_refused() -> None:
    w = World()
    w.h.directory.set_customer_status(1, "stopped")
    out = w.alice.call("1001")
    w.start_ms = w.end_ms = w.h.clock.wall_ms()
    msgs = w.alice.take()
    assert statuses(msgs) == [100, 403]
    out.ack_failure(msgs[1])
    assert w.bob.take() == []
    w.check_cdr(out, sip_code=403, disposition=REJECTED, hangup_by=HANGUP_SWITCH, answered=False, callee=False)
    w.h.assert_idle()


@pytest.mark.parametrize("case", ["disabled", "other customer"])
def test_callee_not_reachable_is_404(case: str) -> None:
    w = World()
    h = w.h
    if case == "disabled":
        h.directory.set_device_status(w.bob_dev.id, "inactive")
    else:
        h.directory.add_customer(2)
        h.add_device("carol", customer_id=2, extension="2001")
    number = "1001" if case == "disabled" else "2001"
    out = w.alice.call(number)
    msgs = w.alice.take()
    assert statuses(msgs) == [100, 404]
    out.ack_failure(msgs[1])
    assert h.net.take(CALLEE_IP) == []
    assert [r.sip_code for r in h.cdrs.records] == [404]
    h.assert_idle()


def test_invite_with_a_wrong_password_is_403_and_rings_nothing() -> None:
    w = World(ip_caller=False)
    h, alice = w.h, w.alice
    out = alice.call("1001")
    challenge = only(alice.take(), status=407)
    out.ack_failure(challenge)
    auth = alice.authorization(challenge, "INVITE", out.ruri, password="wrong")
    out.invite(body=out.body, authorization=auth)
    msgs = alice.take()
    assert statuses(msgs) == [100, 403]
    out.ack_failure(msgs[1])
    assert h.net.take(CALLEE_IP) == [] and h.cdrs.records == [] and h.auth.failures == 1
    h.assert_idle()


def test_a_stranger_knowing_the_ids_cannot_end_or_answer_a_call() -> None:
    """Call-ID and tags are not a password: requests in a dialog, and responses in a transaction,
    are taken only from the peer's own address (and the ids are random, RFC 3261 19.3)."""
    w = World()
    h = w.h
    _out, inc = w.connect()
    mallory = h.ua("mallory", "198.51.100.66", 5090)
    d = inc.dialog  # what the callee would send, sent by someone else
    mallory.request("BYE", d.target, call_id=d.call_id, from_=d.local, to=d.remote, cseq=d.cseq + 1)
    assert statuses(mallory.take()) == [481]
    assert h.core.active_calls == 1 and h.cdrs.records == []
    # The real callee still hangs up normally.
    inc.dialog.request("BYE")
    assert statuses(w.bob.take()) == [200]
    bye_and_answer(w.alice)
    assert len(h.cdrs.records) == 1
    h.assert_idle()


def test_ids_made_by_the_switch_are_random() -> None:
    from switch.sip import ids

    tags = {ids.new_tag() for _ in range(2000)}
    assert len(tags) == 2000 and all(len(t) == 16 for t in tags)
    branches = [ids.new_branch() for _ in range(3)]
    assert len({b.rsplit(".", 1)[1] for b in branches}) == 3
    assert all(b.startswith("z9hG4bK") for b in branches)


def test_attempt_ids_are_unique_time_sortable_ulids() -> None:
    """CdrRecord.call_id: 48 bits of milliseconds then 80 random bits (ULID, Crockford base 32)."""
    from switch.sip import ids

    same_ms = [ids.new_attempt_id(1_700_000_000_000) for _ in range(5000)]
    assert len(set(same_ms)) == 5000  # no coordination needed, even within one millisecond
    for value in same_ms[:50]:
        assert_attempt_id(value, 1_700_000_000_000)
    over_time = [ids.new_attempt_id(ms) for ms in (0, 1, 999, 1_700_000_000_000, 1_700_000_000_001, 2**48 - 1)]
    assert over_time == sorted(over_time)  # string order is time order
    assert ids.new_attempt_id(-5)[:10] == "0000000000"  # a clock before 1970 does not break it
