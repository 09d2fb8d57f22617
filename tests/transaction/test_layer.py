"""The RFC 3261 section 17 transaction state machines (with RFC 6026), driven by hand.

Server and client, INVITE and non-INVITE; matching (17.1.3, 17.2.3) including the RFC 2543
fallback; the ACK for non-2xx finals (17.1.1.3); CANCEL (9.1, 9.2); stray responses; and every
(state, input) pair, which must be handled without an exception.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from switch.sip.message import SipMessage, parse_message
from switch.transaction.layer import (
    ACCEPTED,
    CALLING,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    TERMINATED,
    TRYING,
    ClientTransaction,
    ServerTransaction,
    TimerConfig,
    TransactionLayer,
    new_branch,
)
from switch.transaction.peer import Peer, response_peer
from tests.transaction import (
    TCP,
    UAS_TCP,
    UAS_UDP,
    UDP,
    Net,
    RecordingOwner,
    build_response,
    request,
    response_to,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"


def server_tx(net: Net, data: bytes, peer: Peer = UDP) -> ServerTransaction:
    before = len(net.tu.requests)
    net.request_in(data, peer)
    assert len(net.tu.requests) == before + 1
    tx = net.tu.requests[-1][0]
    assert tx is not None
    return tx


# == server INVITE ====================================================================================

def test_new_invite_gets_100_trying_after_200_ms_when_the_tu_is_silent() -> None:
    # RFC 3261 17.2.1: the 100 may wait 200 ms for the TU's own provisional or final answer.
    net = Net(TimerConfig())
    data = request(extra=("Timestamp: 12.5",))
    server_tx(net, data)
    net.run_until(0.199)
    assert net.sent == []
    net.run_until(0.2)
    (trying,) = net.sent
    assert trying.first_line == "SIP/2.0 100 Trying" and trying.at == 0.2


def test_no_100_when_the_tu_answers_within_200_ms() -> None:
    net = Net(TimerConfig())
    tx = server_tx(net, request())
    net.clock.now = 0.05
    tx.respond_bytes(b"SIP/2.0 180 Ringing\r\n\r\n", 180, 0.05)
    net.run_until(1.0)
    assert [m.at for m in net.sent] == [0.05]


def test_new_invite_gets_100_trying_at_once() -> None:
    net = Net(TimerConfig(trying_delay=0))
    data = request(extra=("Timestamp: 12.5",))
    tx = server_tx(net, data)
    assert tx.state == PROCEEDING and tx.is_invite
    assert tx.request.call_id == "call-1@192.0.2.10" and tx.peer == UDP and tx.resp_peer == UDP
    (trying,) = net.sent
    assert trying.first_line == "SIP/2.0 100 Trying" and trying.at == 0.0 and trying.peer == UDP
    msg = trying.msg
    req = parse_message(data)
    # RFC 3261 8.2.6: Via, From, To (no tag needed on a 100), Call-ID, CSeq copied; Timestamp too.
    assert msg.headers["via"] == req.headers["via"] and msg.headers["from"] == req.headers["from"]
    assert msg.to.tag is None and msg.call_id == req.call_id and msg.headers["cseq"] == ["1 INVITE"]
    assert msg.get("timestamp") == "12.5"
    assert net.layer.server == {tx.key: tx}


def test_no_auto_100_when_configured() -> None:
    net = Net(TimerConfig(auto_100_trying=False))
    tx = server_tx(net, request())
    assert net.sent == [] and tx.last_response is None
    net.request_in(request())  # a retransmission before any response: nothing to resend
    assert net.sent == []


def test_invite_retransmission_resends_the_last_provisional() -> None:
    net = Net()
    tx = server_tx(net, request())
    net.request_in(request(), at=0.5)
    assert net.sent_lines() == [("SIP/2.0 100 Trying", 0.0), ("SIP/2.0 100 Trying", 0.5)]
    net.run_until(1.0)
    tx.respond(build_response(tx, 180, "Ringing"), 1.0)
    net.request_in(request(), at=1.5)
    assert net.sent_lines()[2:] == [("SIP/2.0 180 Ringing", 1.0), ("SIP/2.0 180 Ringing", 1.5)]
    assert len(net.tu.requests) == 1  # retransmissions are absorbed, never passed up
    assert tx.state == PROCEEDING


def test_non_2xx_final_then_ack() -> None:
    net = Net()
    tx = server_tx(net, request())
    net.run_until(1.0)
    tx.respond(build_response(tx, 486, "Busy Here", to_tag="busy"), 1.0)
    assert tx.state == COMPLETED and tx.to_tag == "busy"
    # A retransmitted INVITE in Completed gets the final again.
    net.request_in(request(), at=1.2)
    assert net.sent[-1].first_line == "SIP/2.0 486 Busy Here" and net.sent[-1].at == 1.2
    # The ACK (same branch, 17.1.1.3) matches the INVITE transaction: Confirmed, not passed up.
    net.request_in(request("ACK", to_tag="busy"), at=2.0)
    assert tx.state == CONFIRMED and len(net.tu.requests) == 1
    # In Confirmed, ACK and INVITE retransmissions are absorbed.
    sent = len(net.sent)
    net.request_in(request("ACK", to_tag="busy"), at=2.5)
    net.request_in(request(), at=2.6)
    assert len(net.sent) == sent and len(net.tu.requests) == 1
    net.run_until(7.0)
    assert tx.state == TERMINATED and net.layer.server == {}


def test_2xx_goes_to_accepted_absorbs_invites_and_passes_acks_up() -> None:
    net = Net()
    tx = server_tx(net, request())
    net.run_until(1.0)
    tx.respond(build_response(tx, 200, "OK", to_tag="ok1"), 1.0)
    assert tx.state == ACCEPTED
    sent = len(net.sent)
    net.request_in(request(), at=1.5)  # RFC 6026 7.1: absorbed, nothing sent, TU not told
    assert len(net.sent) == sent and len(net.tu.requests) == 1
    # The TU retransmits its 2xx through the transaction (RFC 6026 7.1): it passes.
    tx.respond_bytes(net.sent[-1].data, 200, 2.0)
    assert len(net.sent) == sent + 1
    tx.respond(build_response(tx, 180, "Ringing"), 2.0)  # a provisional after the final: ignored
    tx.respond(build_response(tx, 486, "Busy Here"), 2.0)  # a non-2xx after a 2xx: ignored
    assert len(net.sent) == sent + 1
    # The ACK for the 2xx has a new branch (it is a transaction of its own, 17.1.1.3) ...
    ack_peer = Peer("udp", "192.0.2.10", 5062, 5060)
    ack = net.request_in(request("ACK", branch="z9hG4bKack1", to_tag="ok1"), peer=ack_peer, at=2.5)
    assert net.tu.requests[-1] == (None, ack, ack_peer, 2.5)
    # ... but a 2xx ACK reusing the INVITE's branch matches it in Accepted: passed up as well,
    # with the peer it came from.
    ack2 = net.request_in(request("ACK", to_tag="ok1"), peer=ack_peer, at=3.0)
    assert net.tu.requests[-1] == (None, ack2, ack_peer, 3.0)
    assert tx.state == ACCEPTED
    net.run_until(33.0)
    assert tx.state == TERMINATED
    # After Timer L an INVITE retransmission would be a new request: the TU sees it (and
    # recognises it by its To tag or Call-ID; RFC 6026 makes L long enough for that to be rare).


def test_provisionals_then_final_on_tcp() -> None:
    net = Net()
    tx = server_tx(net, request(transport="TCP"), TCP)
    assert tx.resp_peer is TCP
    tx.respond(build_response(tx, 183, "Session Progress"), 0.0)
    tx.respond(build_response(tx, 404, "Not Found"), 0.0)
    assert tx.state == COMPLETED
    net.run_until(20.0)
    assert [s.first_line for s in net.sent] == ["SIP/2.0 100 Trying", "SIP/2.0 183 Session Progress",
                                                "SIP/2.0 404 Not Found"]
    assert all(s.peer is TCP for s in net.sent)


def test_transport_failure_terminates_the_server_transaction() -> None:
    net = Net()
    tx = server_tx(net, request())
    net.sender.refuse = True
    tx.respond(build_response(tx, 480, "Temporarily Unavailable"), 0.0)
    assert tx.state == TERMINATED and net.layer.server == {}
    tx.respond(build_response(tx, 480, "Temporarily Unavailable"), 0.0)  # no crash afterwards


def test_responses_go_to_the_via_address() -> None:
    # RFC 3261 18.2.2 / RFC 3581: UDP answers go to the source address and the Via port,
    # or the source port with rport; reliable transports answer on the connection.
    src = Peer("udp", "203.0.113.5", 40000, 5060)
    net = Net()
    tx = server_tx(net, request(sent_by="10.0.0.5:5070"), src)
    assert tx.resp_peer == Peer("udp", "203.0.113.5", 5070, 5060)
    tx2 = server_tx(net, request(sent_by="10.0.0.5:5070", branch="z9hG4bKr", rport=True), src)
    assert tx2.resp_peer is src
    via = parse_message(request(transport="TCP")).via
    assert response_peer(via, TCP) is TCP


def test_discard_forgets_without_answering() -> None:
    net = Net()
    tx = server_tx(net, request("REGISTER"))
    tx.discard()
    assert tx.state == TERMINATED and net.layer.server == {} and net.sent == []


# == server non-INVITE ==================================================================================

def test_non_invite_server() -> None:
    net = Net()
    tx = server_tx(net, request("OPTIONS"))
    assert tx.state == TRYING and not tx.is_invite and net.sent == []  # no automatic 100
    net.request_in(request("OPTIONS"), at=0.5)  # Trying: absorbed
    assert net.sent == [] and len(net.tu.requests) == 1
    tx.respond(build_response(tx, 100, "Trying"), 0.5)
    assert tx.state == PROCEEDING
    net.request_in(request("OPTIONS"), at=1.0)  # Proceeding: the provisional again
    assert [s.first_line for s in net.sent] == ["SIP/2.0 100 Trying"] * 2
    net.run_until(1.5)
    tx.respond(build_response(tx, 200, "OK"), 1.5)
    assert tx.state == COMPLETED
    net.request_in(request("OPTIONS"), at=2.0)  # Completed: the final again
    assert net.sent_lines()[-2:] == [("SIP/2.0 200 OK", 1.5), ("SIP/2.0 200 OK", 2.0)]
    tx.respond(build_response(tx, 500, "Oops"), 2.0)  # after the final: ignored
    assert net.sent[-1].first_line == "SIP/2.0 200 OK"
    assert len(net.tu.requests) == 1
    net.run_until(33.5)
    assert tx.state == TERMINATED and net.layer.server == {}


def test_final_straight_from_trying_on_tcp_terminates() -> None:
    net = Net()
    tx = server_tx(net, request("BYE", transport="TCP"), TCP)
    tx.respond(build_response(tx, 200, "OK"), 0.0)
    assert tx.state == TERMINATED  # Timer J = 0 on reliable transports


# == client INVITE ====================================================================================

def test_client_invite_sends_and_matches_responses() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request(), owner=owner)
    assert tx.state == CALLING and tx.is_invite and tx.branch == "z9hG4bKc1a2"
    assert net.layer.client == {("z9hG4bKc1a2", "INVITE"): tx}
    assert net.sent[0].data == parse_message(request()).to_bytes() and net.sent[0].peer is UAS_UDP
    net.response_in(response_to(request(), 100, "Trying"), at=0.1)
    net.response_in(response_to(request(), 180, "Ringing"), at=0.2)
    net.response_in(response_to(request(), 180, "Ringing"), at=0.3)  # a retransmission goes up too
    assert tx.state == PROCEEDING
    assert owner.statuses == [100, 180, 180] and all(t is tx for t, _m, _n in owner.responses)


def test_client_invite_2xx_accepted_and_forked_2xx_go_up() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request(), owner=owner)
    net.response_in(response_to(request(), 200, "OK", to_tag="fork1"), at=0.1)
    assert tx.state == ACCEPTED
    net.response_in(response_to(request(), 200, "OK", to_tag="fork1"), at=0.6)  # retransmission
    net.response_in(response_to(request(), 200, "OK", to_tag="fork2"), at=0.7)  # another fork
    net.response_in(response_to(request(), 180, "Ringing"), at=0.8)  # late provisional: dropped
    net.response_in(response_to(request(), 486, "Busy"), at=0.9)  # non-2xx after 2xx: dropped
    assert owner.statuses == [200, 200, 200]
    assert [m.to.tag for _t, m, _n in owner.responses] == ["fork1", "fork1", "fork2"]
    assert net.times("ACK") == []  # the ACK for a 2xx is the TU's (13.2.2.4)


def test_client_invite_non_2xx_builds_the_ack() -> None:
    net = Net()
    owner = RecordingOwner()
    data = request(extra=("Route: <sip:p1.example.com;lr>", "Route: <sip:p2.example.com;lr>,<sip:p3;lr>",
                          "Via: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKbelow"))
    tx = net.send(data, owner=owner)
    net.response_in(response_to(data, 180, "Ringing", to_tag="tg7"), at=0.1)
    net.response_in(response_to(data, 486, "Busy Here", to_tag="tg7"), at=0.2)
    assert tx.state == COMPLETED and owner.statuses == [180, 486]
    (ack,) = [s for s in net.sent if s.first_line.startswith("ACK")]
    assert ack.peer is UAS_UDP and ack.at == 0.2
    msg = ack.msg
    inv = parse_message(data)
    # RFC 3261 17.1.1.3: same Request-URI, Call-ID, From, CSeq number; To of the response;
    # a single Via equal to the top Via of the request (same branch); the Route set.
    assert msg.method == "ACK" and msg.uri == inv.uri
    assert (msg.call_id, msg.cseq_num, msg.cseq_method) == (inv.call_id, inv.cseq_num, "ACK")
    assert msg.headers["from"] == inv.headers["from"]
    assert msg.to.tag == "tg7" and msg.to.uri == inv.to.uri
    assert msg.headers["via"] == ["SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc1a2"]
    assert msg.get_all("route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p3;lr>"]
    assert msg.body == b"" and msg.max_forwards == 70
    # A retransmitted final is ACKed again and not passed up.
    net.response_in(response_to(data, 486, "Busy Here", to_tag="tg7"), at=0.8)
    assert net.times("ACK") == [0.2, 0.8] and owner.statuses == [180, 486]


def test_ack_via_is_the_top_value_when_the_first_line_holds_several() -> None:
    net = Net()
    lines = request().decode().split("\r\n")
    lines[1] += ", SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKlower"
    data = "\r\n".join(lines).encode()
    net.send(data)
    net.response_in(response_to(data, 500, "Server Error"))
    ack = next(s for s in net.sent if s.first_line.startswith("ACK")).msg
    assert ack.headers["via"] == ["SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc1a2"]


def test_cancel_only_after_a_provisional() -> None:
    net = Net()
    tx = net.send(request(extra=("Route: <sip:p1.example.com;lr>",)))
    cancel_owner = RecordingOwner()
    assert tx.cancel_request(0.1, cancel_owner) is None  # RFC 3261 9.1: wait for a provisional
    assert net.times("CANCEL") == []
    net.response_in(response_to(request(), 100, "Trying", to_tag=None), at=0.2)
    ctx = tx.cancel_request(0.3, cancel_owner, reason='SIP;cause=200;text="Call completed elsewhere"')
    assert ctx is not None and ctx.request.method == "CANCEL" and ctx.branch == tx.branch
    assert net.layer.client[(tx.branch, "CANCEL")] is ctx and net.layer.client[(tx.branch, "INVITE")] is tx
    cancel = next(s for s in net.sent if s.first_line.startswith("CANCEL")).msg
    inv = tx.request
    # RFC 3261 9.1: same Request-URI, Call-ID, To, From, CSeq number, top Via, Route set.
    assert cancel.uri == inv.uri and cancel.call_id == inv.call_id
    assert cancel.headers["to"] == inv.headers["to"] and cancel.headers["from"] == inv.headers["from"]
    assert (cancel.cseq_num, cancel.cseq_method) == (inv.cseq_num, "CANCEL")
    assert cancel.headers["via"] == ["SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc1a2"]
    assert cancel.get_all("route") == ["<sip:p1.example.com;lr>"]
    assert cancel.get("reason") == 'SIP;cause=200;text="Call completed elsewhere"'
    # Asking again returns the CANCEL in progress instead of a second one.
    assert tx.cancel_request(0.4, cancel_owner) is ctx
    assert len(net.times("CANCEL")) == 1
    # The 200 to the CANCEL goes to the CANCEL's owner; the 487 to the INVITE's.
    net.response_in(response_to(cancel, 200, "OK", to_tag="c1"), at=0.5)
    net.response_in(response_to(inv, 487, "Request Terminated", to_tag="c1"), at=0.6)
    assert cancel_owner.statuses == [200] and ctx.state == COMPLETED
    assert tx.state == COMPLETED
    assert net.times("ACK") == [0.6]
    assert tx.cancel_request(0.7, cancel_owner) is None  # nothing left to cancel


def test_cancel_retransmits_like_any_non_invite() -> None:
    net = Net()
    tx = net.send(request())
    net.response_in(response_to(request(), 180, "Ringing"), at=1.0)
    assert tx.cancel_request(1.0, RecordingOwner()) is not None
    net.run_until(9.0)
    assert net.times("CANCEL") == [1.0, 1.5, 2.5, 4.5, 8.5]


def test_client_transport_failure_at_start() -> None:
    net = Net()
    net.sender.refuse = True
    owner = RecordingOwner()
    assert net.layer.send_request(parse_message(request()), UAS_TCP, owner, 0.0) is None
    assert net.layer.client == {} and owner.responses == [] and owner.timeouts == []
    net.run_until(100.0)  # no timers left behind
    assert net.timers.next_deadline() is None


def test_duplicate_client_transaction_is_our_bug() -> None:
    net = Net()
    net.send(request())
    with pytest.raises(ValueError):
        net.send(request())


def test_branch_defaults_to_the_via_branch_or_a_new_one() -> None:
    net = Net()
    tx = net.layer.send_request(parse_message(request(branch="z9hG4bKmine")), UAS_UDP, RecordingOwner(), 0.0)
    assert tx is not None and tx.branch == "z9hG4bKmine"
    b1, b2 = new_branch(), new_branch()
    assert b1 != b2 and b1.startswith("z9hG4bK") and len(b1) > 7


# == client non-INVITE ===================================================================================

def test_client_non_invite() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request("REGISTER"), owner=owner)
    assert tx.state == TRYING and not tx.is_invite
    net.response_in(response_to(request("REGISTER"), 100, "Trying"), at=0.1)
    assert tx.state == PROCEEDING
    net.response_in(response_to(request("REGISTER"), 401, "Unauthorized"), at=0.2)
    assert tx.state == COMPLETED and owner.statuses == [100, 401]
    net.response_in(response_to(request("REGISTER"), 401, "Unauthorized"), at=0.3)  # absorbed
    net.response_in(response_to(request("REGISTER"), 100, "Trying"), at=0.4)  # absorbed
    assert owner.statuses == [100, 401]
    assert net.times("ACK") == []  # no ACK outside INVITE


# == matching ==============================================================================================

def test_server_matching_by_branch_sent_by_and_method() -> None:
    net = Net()
    tx = server_tx(net, request())
    # Same branch, other sent-by: another transaction (17.2.3).
    other = server_tx(net, request(sent_by="192.0.2.99:5060"))
    assert other is not tx
    # Same branch and sent-by, other method: another transaction (CANCEL).
    cancel = server_tx(net, request("CANCEL"))
    assert cancel is not tx and cancel.request.method == "CANCEL"
    assert net.layer.find_invite_server_tx(cancel.request) is tx
    # The sent-by port is part of it: 5060 explicit and absent differ as strings do.
    assert server_tx(net, request(sent_by="192.0.2.10")) is not tx
    assert len(net.layer.server) == 4
    # The host's case does not matter (RFC 3261 19.1.4 host comparison).
    named = server_tx(net, request(sent_by="PC33.Example.COM", branch="z9hG4bKnamed"))
    net.request_in(request(sent_by="pc33.example.com", branch="z9hG4bKnamed"))
    assert len(net.tu.requests) == 5 and named.state == PROCEEDING


def test_find_invite_server_tx_for_cancel_without_match() -> None:
    net = Net()
    server_tx(net, request())
    lone = server_tx(net, request("CANCEL", branch="z9hG4bKother"))
    assert net.layer.find_invite_server_tx(lone.request) is None


def test_client_matching_by_branch_and_cseq_method() -> None:
    net = Net()
    owner = RecordingOwner()
    net.send(request(), owner=owner)
    # Right branch, wrong CSeq method: no match (17.1.3), a stray.
    net.response_in(response_to(request("CANCEL"), 200, "OK"))
    # Unknown branch, no branch at all: strays.
    net.response_in(response_to(request(branch="z9hG4bKnobody"), 200, "OK"))
    net.response_in(response_to(request(branch=None), 200, "OK"))
    assert owner.responses == [] and len(net.tu.strays) == 3
    assert net.tu.strays[0][1] is UAS_UDP


def test_responses_after_termination_are_strays() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request("OPTIONS", transport="TCP"), peer=UAS_TCP, owner=owner)
    net.response_in(response_to(request("OPTIONS", transport="TCP"), 200, "OK"), peer=UAS_TCP)
    assert tx.state == TERMINATED
    net.response_in(response_to(request("OPTIONS", transport="TCP"), 200, "OK"), peer=UAS_TCP)
    assert owner.statuses == [200] and len(net.tu.strays) == 1
    # The 2xx retransmission for an INVITE whose transaction has ended reaches the TU too.
    net2 = Net()
    tx2 = net2.send(request())
    net2.response_in(response_to(request(), 200, "OK"))
    net2.run_until(40.0)
    assert tx2.state == TERMINATED
    net2.response_in(response_to(request(), 200, "OK"), at=40.0)
    assert len(net2.tu.strays) == 1


def test_ack_without_a_transaction_goes_to_the_tu() -> None:
    net = Net()
    ack = net.request_in(request("ACK", to_tag="x", branch="z9hG4bKlone"))
    assert net.tu.requests == [(None, ack, UDP, 0.0)] and net.layer.server == {}


# == RFC 2543 fallback (17.2.3) ===========================================================================

def test_rfc2543_invite_retransmission_and_ack() -> None:
    net = Net()
    tx = server_tx(net, request(branch=None))
    assert tx.key[0] == "2543"
    net.request_in(request(branch=None), at=0.5)  # a retransmission matches
    assert len(net.tu.requests) == 1 and net.sent[-1].first_line == "SIP/2.0 100 Trying"
    tx.respond(build_response(tx, 486, "Busy Here", to_tag="ours"), 0.5)
    # An ACK whose To tag is not ours is not for this transaction: the TU gets it.
    stray_ack = net.request_in(request("ACK", branch=None, to_tag="theirs"), at=0.6)
    assert tx.state == COMPLETED and net.tu.requests[-1][0] is None and net.tu.requests[-1][1] is stray_ack
    net.request_in(request("ACK", branch=None, to_tag="ours"), at=0.7)
    assert tx.state == CONFIRMED


def test_rfc2543_keys_differ_by_each_field() -> None:
    net = Net()
    server_tx(net, request(branch=None))
    for variant in (
        request(branch=None, uri="sip:carol@198.51.100.20"),
        request(branch=None, from_tag="other"),
        request(branch=None, call_id="call-2@192.0.2.10"),
        request(branch=None, cseq=2),
        request(branch=None, sent_by="192.0.2.11:5060"),
    ):
        server_tx(net, variant)
    assert len(net.layer.server) == 6


def test_rfc2543_non_invite_key_includes_to_tag_and_cancel_finds_invite() -> None:
    net = Net()
    bye = server_tx(net, request("BYE", branch=None, to_tag="d1"))
    net.request_in(request("BYE", branch=None, to_tag="d1"))  # retransmission
    assert len(net.tu.requests) == 1
    server_tx(net, request("BYE", branch=None, to_tag="d2"))
    assert len(net.layer.server) == 2 and bye.state == TRYING
    inv = server_tx(net, request(branch=None, cseq=9))
    cancel = server_tx(net, request("CANCEL", branch=None, cseq=9))
    assert net.layer.find_invite_server_tx(cancel.request) is inv


def test_rfc4475_badbranch_uses_the_fallback() -> None:
    # RFC 4475 section 3.2.1: "z9hG4bK" alone is not an RFC 3261 branch.
    data = (DATA / "badbranch.dat").read_bytes()
    net = Net()
    tx = server_tx(net, data)
    assert tx.key[0] == "2543"
    net.request_in(data)
    assert len(net.tu.requests) == 1 and len(net.layer.server) == 1
    # Another request with the same bare cookie but another Call-ID is another transaction.
    server_tx(net, data.replace(b"Call-ID: badbranch.", b"Call-ID: other."))
    assert len(net.layer.server) == 2


# == every (state, input) pair: no exception ==================================================================

SERVER_INPUTS = ["retransmit", "ack", "ack_other_tag", "r100", "r180", "r200", "r486", "bytes200", "bytes486",
                 "discard", "wait1", "wait40", "refuse"]


def _server_input(net: Net, tx: ServerTransaction, what: str, method: str, transport: str) -> None:
    peer = UDP if transport == "UDP" else TCP
    now = net.now
    if what == "retransmit":
        net.request_in(request(method, transport=transport), peer)
    elif what == "ack":
        net.request_in(request("ACK", transport=transport, to_tag="uas1"), peer)
    elif what == "ack_other_tag":
        net.request_in(request("ACK", transport=transport, to_tag="zzz"), peer)
    elif what == "refuse":
        net.sender.refuse = not net.sender.refuse
    elif what.startswith("r"):
        tx.respond(build_response(tx, int(what[1:])), now)
    elif what.startswith("bytes"):
        status = int(what[5:])
        tx.respond_bytes(build_response(tx, status).to_bytes(), status, now)
    elif what == "discard":
        tx.discard()
    elif what == "wait1":
        net.run_until(now + 1)
    else:
        net.run_until(now + 40)


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS"])
@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_server_every_input_in_every_state(method: str, transport: str) -> None:
    states: set[str] = set()
    for first, second, third in itertools.product(SERVER_INPUTS, repeat=3):
        net = Net()
        tx = server_tx(net, request(method, transport=transport), UDP if transport == "UDP" else TCP)
        for what in (first, second, third):
            states.add(tx.state)
            _server_input(net, tx, what, method, transport)
        assert tx.state in (TRYING, PROCEEDING, COMPLETED, CONFIRMED, ACCEPTED, TERMINATED)
        if tx.state == TERMINATED:
            # Gone from the table (a later request with its key makes a new transaction).
            assert net.layer.server.get(tx.key) is not tx
        net.run_until(net.now + 100)
        # Only a request still waiting for its TU's answer outlives every timer.
        assert tx.state in (TERMINATED, PROCEEDING, TRYING)
    expected = {PROCEEDING, COMPLETED, ACCEPTED, TERMINATED} if method == "INVITE" else {
        TRYING, PROCEEDING, COMPLETED, TERMINATED}
    if method == "INVITE" and transport == "UDP":
        expected.add(CONFIRMED)
    if method != "INVITE" and transport == "TCP":
        expected.discard(COMPLETED)  # Timer J = 0: Terminated at once
    assert expected <= states


CLIENT_INPUTS = ["r100", "r180", "r200", "r200b", "r486", "cancel", "wait1", "wait40", "refuse"]


def _client_input(net: Net, tx: ClientTransaction, data: bytes, what: str, peer: Peer) -> None:
    if what == "cancel":
        tx.cancel_request(net.now, RecordingOwner())
    elif what == "wait1":
        net.run_until(net.now + 1)
    elif what == "wait40":
        net.run_until(net.now + 40)
    elif what == "refuse":
        net.sender.refuse = not net.sender.refuse
    elif what == "r200b":
        net.response_in(response_to(data, 200, "OK", to_tag="other"), peer)
    else:
        net.response_in(response_to(data, int(what[1:])), peer)


@pytest.mark.parametrize("method", ["INVITE", "BYE"])
@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_client_every_input_in_every_state(method: str, transport: str) -> None:
    states: set[str] = set()
    peer = UAS_UDP if transport == "UDP" else UAS_TCP
    data = request(method, transport=transport)
    for combo in itertools.product(CLIENT_INPUTS, repeat=3):
        net = Net()
        owner = RecordingOwner()
        tx = net.send(data, peer=peer, owner=owner)
        for what in combo:
            states.add(tx.state)
            _client_input(net, tx, data, what, peer)
        net.sender.refuse = False
        net.run_until(net.now + 100)
        assert tx.state in (TERMINATED, PROCEEDING)  # Proceeding INVITE waits for the TU
        assert len(owner.timeouts) <= 1
    expected = {CALLING, PROCEEDING, COMPLETED, ACCEPTED, TERMINATED} if method == "INVITE" else {
        TRYING, PROCEEDING, COMPLETED, TERMINATED}
    if transport == "TCP":
        expected.discard(COMPLETED)
    assert expected <= states


def test_layer_accessors() -> None:
    net = Net()
    assert isinstance(net.layer, TransactionLayer) and len(net.layer) == 0
    server_tx(net, request())
    net.send(request("OPTIONS", branch="z9hG4bKout"))
    assert len(net.layer) == 2
    net.layer.send_ack_2xx(b"ACK sip:x SIP/2.0\r\n\r\n", UAS_UDP)
    assert net.sent[-1].data.startswith(b"ACK") and net.sent[-1].peer is UAS_UDP


def test_tx_app_slot_is_for_the_tu() -> None:
    net = Net()
    tx = server_tx(net, request())
    assert tx.app is None
    tx.app = "call"
    ctx = net.send(request(branch="z9hG4bKout"))
    ctx.app = {"leg": 1}
    assert (tx.app, ctx.app) == ("call", {"leg": 1}) and isinstance(ctx.owner, RecordingOwner)


def test_request_message_is_the_parsed_one() -> None:
    net = Net()
    msg: SipMessage = net.request_in(request())
    tx = net.tu.requests[-1][0]
    assert tx is not None and tx.request is msg
