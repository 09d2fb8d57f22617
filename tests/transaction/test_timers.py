"""Exact timer instants of the RFC 3261 section 17 transactions (table 4) and of RFC 6026.

T1 = 0.5 s, T2 = 4 s, T4 = 5 s (the defaults).  Every instant is asserted exactly: the clock is
moved by hand and each timer fires at its own deadline.
"""

from __future__ import annotations

import itertools

import pytest

from switch.transaction.layer import (
    ACCEPTED,
    CALLING,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    TERMINATED,
    TRYING,
    ServerTransaction,
    TimerConfig,
)
from switch.transaction.timers import TimerQueue
from tests.transaction import (
    TCP,
    UAS_TCP,
    UDP,
    Net,
    RecordingOwner,
    build_response,
    request,
    response_to,
)

# -- the timer queue itself ------------------------------------------------------------------------------


def test_queue_runs_due_callbacks_in_deadline_order() -> None:
    q = TimerQueue()
    fired: list[tuple[str, float]] = []
    q.schedule(2.0, lambda: fired.append(("b", 2.0)))
    q.schedule(1.0, lambda: fired.append(("a", 1.0)))
    q.schedule(2.0, lambda: fired.append(("c", 2.0)))  # same instant: scheduling order
    assert q.next_deadline() == 1.0
    assert q.run_due(0.99) == 0 and fired == []
    assert q.run_due(2.0) == 3
    assert fired == [("a", 1.0), ("b", 2.0), ("c", 2.0)]
    assert q.next_deadline() is None and len(q) == 0 and q.live == 0


def test_queue_cancel_and_args() -> None:
    q = TimerQueue()
    got: list[object] = []
    h1 = q.schedule(1.0, got.append, "one")
    q.schedule(1.5, got.append, "two")
    h1.cancel()
    assert q.next_deadline() == 1.5  # cancelled entries are dropped lazily
    assert q.live == 1
    q.run_due(10.0)
    assert got == ["two"]
    h1.cancel()  # harmless after the fact


def test_queue_callbacks_may_schedule_due_timers() -> None:
    q = TimerQueue()
    got: list[float] = []

    def tick(when: float) -> None:
        got.append(when)
        if when < 3:
            q.schedule(when + 1, tick, when + 1)

    q.schedule(0.0, tick, 0.0)
    assert q.run_due(2.5) == 3
    assert got == [0.0, 1.0, 2.0]
    assert q.next_deadline() == 3.0


def test_handle_fires_once() -> None:
    q = TimerQueue()
    got: list[int] = []
    h = q.schedule(1.0, got.append, 1)
    q.run_due(1.0)
    q.run_due(1.0)
    assert got == [1] and h.cancelled


# -- client INVITE: Timers A, B, D and M -------------------------------------------------------------------

def test_timer_a_doubles_and_timer_b_times_out_at_32s() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request(), owner=owner)
    assert tx.state == CALLING
    net.run_until(40.0)
    # RFC 3261 17.1.1.2: A = T1, doubling on each retransmission (no T2 cap for INVITE).
    assert net.times("INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    # Timer B = 64*T1: the owner is told at 32 s, the transaction ends.
    assert [(t, now) for t, now in owner.timeouts] == [(tx, 32.0)]
    assert tx.state == TERMINATED and len(net.layer) == 0


def test_timer_a_not_on_reliable_transports_but_b_is() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request(transport="TCP"), peer=UAS_TCP, owner=owner)
    net.run_until(40.0)
    assert net.times("INVITE") == [0.0]
    assert [now for _tx, now in owner.timeouts] == [32.0] and tx.state == TERMINATED


def test_provisional_stops_a_and_b() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request(), owner=owner)
    net.response_in(response_to(request(), 180, "Ringing"), at=2.0)
    assert tx.state == PROCEEDING
    net.run_until(100.0)
    assert net.times("INVITE") == [0.0, 0.5, 1.5]
    assert owner.timeouts == [] and tx.state == PROCEEDING  # the TU ends it (CANCEL, its own timer)


def test_timer_d_32s_on_udp() -> None:
    net = Net()
    tx = net.send(request())
    net.response_in(response_to(request(), 486, "Busy Here"), at=1.0)
    assert tx.state == COMPLETED
    net.run_until(32.99)
    assert tx.state == COMPLETED
    net.run_until(33.0)
    assert tx.state == TERMINATED and len(net.layer) == 0
    assert net.times("ACK") == [1.0]


def test_timer_d_zero_on_tcp() -> None:
    net = Net()
    tx = net.send(request(transport="TCP"), peer=UAS_TCP)
    net.response_in(response_to(request(transport="TCP"), 486, "Busy Here"), peer=UAS_TCP, at=1.0)
    assert tx.state == TERMINATED and net.times("ACK") == [1.0]


def test_timer_m_after_2xx() -> None:
    # RFC 6026 section 8.4: Accepted for 64*T1, absorbing 2xx retransmissions for the TU.
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request(), owner=owner)
    net.response_in(response_to(request(), 200, "OK"), at=0.2)
    assert tx.state == ACCEPTED
    net.run_until(32.19)
    assert tx.state == ACCEPTED
    net.run_until(32.2)
    assert tx.state == TERMINATED
    assert net.times("INVITE") == [0.0]


# -- client non-INVITE: Timers E, F and K ---------------------------------------------------------------------

def test_timer_e_doubles_to_t2_and_timer_f_at_32s() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request("OPTIONS"), owner=owner)
    assert tx.state == TRYING
    net.run_until(40.0)
    # RFC 3261 17.1.2.2: E = T1 doubling, capped at T2 = 4 s.
    assert net.times("OPTIONS") == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [now for _tx, now in owner.timeouts] == [32.0] and tx.state == TERMINATED


def test_timer_e_is_t2_in_proceeding() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request("BYE"), owner=owner)
    net.response_in(response_to(request("BYE"), 100, "Trying"), at=0.2)
    assert tx.state == PROCEEDING
    net.run_until(40.0)
    # E fires at 0.5 as scheduled; from then on it is reset to T2.
    assert net.times("BYE") == [0.0, 0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert [now for _tx, now in owner.timeouts] == [32.0]


def test_timer_e_not_on_reliable_transports() -> None:
    net = Net()
    owner = RecordingOwner()
    net.send(request("REGISTER", transport="TCP"), peer=UAS_TCP, owner=owner)
    net.run_until(40.0)
    assert net.times("REGISTER") == [0.0]
    assert [now for _tx, now in owner.timeouts] == [32.0]


def test_timer_k_t4_on_udp() -> None:
    net = Net()
    tx = net.send(request("OPTIONS"))
    net.response_in(response_to(request("OPTIONS"), 200, "OK"), at=2.0)
    assert tx.state == COMPLETED
    net.run_until(6.99)
    assert tx.state == COMPLETED
    net.run_until(7.0)
    assert tx.state == TERMINATED
    assert net.times("OPTIONS") == [0.0, 0.5, 1.5]


def test_timer_k_zero_on_tcp() -> None:
    net = Net()
    tx = net.send(request("OPTIONS", transport="TCP"), peer=UAS_TCP)
    net.response_in(response_to(request("OPTIONS", transport="TCP"), 200, "OK"), peer=UAS_TCP, at=2.0)
    assert tx.state == TERMINATED and len(net.layer) == 0


# -- server INVITE: Timers G, H, I and L ----------------------------------------------------------------------

def _server_invite(net: Net, transport: str = "UDP") -> ServerTransaction:
    peer = UDP if transport == "UDP" else TCP
    net.request_in(request(transport=transport), peer=peer)
    tx = net.tu.requests[-1][0]
    assert tx is not None
    return tx


def test_timer_g_until_t2_then_every_t2_and_timer_h_at_32s() -> None:
    net = Net()
    tx = _server_invite(net)
    tx.respond(build_response(tx, 486, "Busy Here"), 0.0)
    assert tx.state == COMPLETED
    net.run_until(40.0)
    # RFC 3261 17.2.1: G = T1 doubling up to T2; H = 64*T1 ends the wait for the ACK.
    assert net.times("SIP/2.0 486") == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tx.state == TERMINATED and len(net.layer) == 0


def test_timer_g_from_the_instant_of_the_response() -> None:
    net = Net()
    tx = _server_invite(net)
    net.run_until(10.0)
    tx.respond(build_response(tx, 603, "Decline"), 10.0)
    net.run_until(25.0)
    assert net.times("SIP/2.0 603") == [10.0, 10.5, 11.5, 13.5, 17.5, 21.5]
    net.request_in(request("ACK"), at=25.0)
    net.run_until(60.0)
    assert net.times("SIP/2.0 603")[-1] == 21.5


def test_timer_i_t4_after_ack() -> None:
    net = Net()
    tx = _server_invite(net)
    tx.respond(build_response(tx, 404, "Not Found"), 0.0)
    net.request_in(request("ACK", to_tag="uas1"), at=2.0)
    assert tx.state == CONFIRMED
    net.run_until(6.99)
    assert tx.state == CONFIRMED
    net.run_until(7.0)
    assert tx.state == TERMINATED
    # G stopped at the ACK, and H never fired.
    assert net.times("SIP/2.0 404") == [0.0, 0.5, 1.5]


def test_reliable_server_invite_no_g_h_still_runs_i_zero() -> None:
    net = Net()
    tx = _server_invite(net, "TCP")
    tx.respond(build_response(tx, 486, "Busy Here"), 0.0)
    net.run_until(31.9)
    assert net.times("SIP/2.0 486") == [0.0] and tx.state == COMPLETED
    net.request_in(request("ACK", transport="TCP"), peer=TCP, at=31.9)
    assert tx.state == TERMINATED

    net2 = Net()
    tx2 = _server_invite(net2, "TCP")
    tx2.respond(build_response(tx2, 486, "Busy Here"), 0.0)
    net2.run_until(32.0)
    assert tx2.state == TERMINATED  # Timer H on every transport


def test_timer_l_after_2xx() -> None:
    net = Net()
    tx = _server_invite(net)
    net.run_until(1.0)
    tx.respond(build_response(tx, 200, "OK"), 1.0)
    assert tx.state == ACCEPTED
    net.run_until(32.99)
    assert tx.state == ACCEPTED
    net.run_until(33.0)
    assert tx.state == TERMINATED
    assert net.times("SIP/2.0 200") == [1.0]  # the TU retransmits 2xx, not the transaction


# -- server non-INVITE: Timer J --------------------------------------------------------------------------------

def test_timer_j_32s_on_udp_zero_on_tcp() -> None:
    net = Net()
    net.request_in(request("OPTIONS"), at=0.0)
    tx = net.tu.requests[-1][0]
    assert tx is not None and tx.state == TRYING
    net.run_until(1.0)
    tx.respond(build_response(tx, 200, "OK"), 1.0)
    assert tx.state == COMPLETED
    net.run_until(32.99)
    assert tx.state == COMPLETED
    net.run_until(33.0)
    assert tx.state == TERMINATED
    assert net.times("SIP/2.0 200") == [1.0]  # no retransmission without a request retransmission

    net.request_in(request("OPTIONS", transport="TCP", branch="z9hG4bKtcp"), peer=TCP)
    tcp_tx = net.tu.requests[-1][0]
    assert tcp_tx is not None
    tcp_tx.respond(build_response(tcp_tx, 200, "OK"), net.now)
    assert tcp_tx.state == TERMINATED


# -- configuration ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("t1", "t2"), [(0.25, 2.0), (1.0, 8.0)])
def test_timers_follow_the_configuration(t1: float, t2: float) -> None:
    net = Net(TimerConfig(t1=t1, t2=t2, t4=t2))
    owner = RecordingOwner()
    net.send(request("OPTIONS"), owner=owner)
    net.run_until(64 * t1 + 1)
    times = net.times("OPTIONS")
    assert times[:4] == [0.0, t1, 3 * t1, 7 * t1]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) == t2
    assert [now for _tx, now in owner.timeouts] == [64 * t1]


# -- CANCEL: the 64*T1 wait for the INVITE's final (RFC 3261 section 9.1) --------------------------------------

def test_invite_destroyed_64_t1_after_cancel_without_final() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request(), owner=owner)
    net.response_in(response_to(request(), 180, "Ringing"), at=1.0)
    net.run_until(5.0)
    ctx = tx.cancel_request(5.0, RecordingOwner())
    assert ctx is not None
    net.response_in(response_to(ctx.request, 200, "OK"), at=5.1)  # the CANCEL is answered ...
    net.run_until(36.99)  # ... but the 487 never comes
    assert tx.state == PROCEEDING and owner.timeouts == []
    net.run_until(37.0)
    assert tx.state == TERMINATED and [now for _tx, now in owner.timeouts] == [37.0]
    assert len(net.layer) == 0


def test_no_destruction_when_the_final_comes() -> None:
    net = Net()
    owner = RecordingOwner()
    tx = net.send(request(), owner=owner)
    net.response_in(response_to(request(), 183, "Session Progress"), at=1.0)
    assert tx.cancel_request(1.0, RecordingOwner()) is not None
    net.response_in(response_to(request(), 487, "Request Terminated"), at=2.0)
    net.run_until(100.0)
    assert owner.timeouts == [] and owner.statuses == [183, 487] and tx.state == TERMINATED
