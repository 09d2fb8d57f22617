"""The registrar through the whole core (real transactions, digest, guard), time driven by hand.

RFC 3261 section 10.3 (REGISTER processing), RFC 7616/8760 (digest with SHA-256 and MD5),
RFC 3581 (the source address behind NAT) and the three REGISTER messages of RFC 4475
(sections 3.3.12 - 3.3.14).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from switch.ports import CUSTOMER_CLOSED, DEVICE_INACTIVE
from switch.registrar.registrar import RegistrarConfig
from switch.sip.digest import make_authorization, parse_challenge
from switch.sip.message import SipMessage
from switch.transaction.peer import Peer
from tests.core.fakes import REALM, SWITCH_IP, UA, WALL_OFFSET, Harness, challenge_for

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"

ALICE_IP, BOB_IP = "198.51.100.10", "198.51.100.20"


def bound(resp: SipMessage) -> dict[str, int]:
    """The 200's Contact list as {uri: expires}."""
    out: dict[str, int] = {}
    for c in resp.contacts():
        assert c.params.get("expires") is not None, f"Contact without expires: {c}"  # RFC 3261 10.3 step 8
        out[c.uri] = int(c.params["expires"] or "")
    return out


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.add_device("alice", extension="1000")
    h.add_device("bob", extension="1001")
    return h


@pytest.fixture
def alice(h: Harness) -> UA:
    return h.ua("alice", ALICE_IP, 5061)


# -- challenge and digest ---------------------------------------------------------------------------


def test_register_without_credentials_is_challenged_sha256_first(h: Harness, alice: UA) -> None:
    resp = alice.register_request()
    assert resp is not None and resp.status == 401
    values = resp.get_all("www-authenticate")
    assert len(values) == 2
    params = [parse_challenge(v) for v in values]
    # RFC 8760 section 2 / RFC 7616 section 3.7: one challenge per algorithm, preferred first.
    assert [p["algorithm"] for p in params if p] == ["SHA-256", "MD5"]
    assert all(p and p["realm"] == REALM and p["qop"] == "auth" and "stale" not in p for p in params)
    assert params[0] and params[1] and params[0]["nonce"] == params[1]["nonce"]
    assert resp.to.tag  # a final response carries a To tag (RFC 3261 8.2.6.2)
    assert h.registrar.lookup("alice") == [] and h.bindings.saved_ == []
    assert not resp.get_all("proxy-authenticate")


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_with_digest(h: Harness, alice: UA, algorithm: str) -> None:
    resp = alice.register(algorithm=algorithm, expires=1800)
    assert resp is not None and resp.status == 200, resp
    assert bound(resp) == {alice.contact_uri: 1800}
    assert resp.get("date")
    (b,) = h.registrar.lookup("alice")
    dev = h.directory.device_by_username("alice")
    assert dev is not None
    assert (b.aor, b.device_id, b.contact, b.call_id, b.cseq) == ("alice", dev.id, alice.contact_uri,
                                                                  alice.reg_call_id, 2)
    assert b.expires_at == pytest.approx(h.clock.wall() + 1800)
    assert [x.contact for x in h.bindings.saved_] == [alice.contact_uri]
    assert h.registrar.count == 1


def test_wrong_password_is_forbidden(h: Harness, alice: UA) -> None:
    resp = alice.register(password="not-the-password")
    assert resp is not None and resp.status == 403
    assert h.registrar.lookup("alice") == [] and h.auth.failures == 1


def test_unknown_user_is_forbidden(h: Harness) -> None:
    mallory = h.ua("mallory", "198.51.100.66", 5060, password="guess")
    resp = mallory.register()
    assert resp is not None and resp.status == 403
    assert h.registrar.bindings == {} and h.auth.failures == 1


def test_stale_nonce_is_rechallenged_with_stale_true() -> None:
    h = Harness(nonce_ttl=30.0)
    h.add_device("alice")
    alice = h.ua("alice", ALICE_IP, 5061)
    assert (r := alice.register()) is not None and r.status == 200
    h.advance(31.0)
    # The right password over an expired nonce: RFC 7616 section 3.3 stale=true, no failure counted.
    resp = alice.register_request(authorization=alice.reuse_authorization("REGISTER", alice.registrar_uri))
    assert resp is not None and resp.status == 401
    values = resp.get_all("www-authenticate")
    assert len(values) == 2 and all((parse_challenge(v) or {}).get("stale") == "true" for v in values)
    assert h.auth.failures == 0
    auth = alice.authorization(resp, "REGISTER", alice.registrar_uri)
    assert (r := alice.register_request(authorization=auth)) is not None and r.status == 200


def test_nonce_count_replay_is_refused(h: Harness, alice: UA) -> None:
    first = alice.register_request()
    assert first is not None and first.status == 401
    auth = alice.authorization(first, "REGISTER", alice.registrar_uri)  # nc=00000001
    assert (r := alice.register_request(authorization=auth)) is not None and r.status == 200
    # The very same credentials again (a captured request replayed): nc is not above the last one.
    replay = alice.register_request(authorization=auth)
    assert replay is not None and replay.status == 401
    assert all((parse_challenge(v) or {}).get("stale") == "true" for v in replay.get_all("www-authenticate"))
    # The next nc on the same nonce is fine (RFC 7616 section 3.4: nc counts requests).
    nxt = alice.register_request(authorization=alice.reuse_authorization("REGISTER", alice.registrar_uri, nc=2))
    assert nxt is not None and nxt.status == 200


def test_unknown_authorization_scheme_is_never_authenticated(h: Harness, alice: UA) -> None:
    # RFC 4475 section 3.3.7 (regaut01): a scheme we do not know: challenge, never accept.
    for _ in range(3):
        resp = alice.register_request(authorization="NoOneKnowsThisScheme opaque-data=here")
        assert resp is not None and resp.status == 401
        assert len(resp.get_all("www-authenticate")) == 2
    assert h.registrar.bindings == {} and h.auth.failures == 0


def test_regaut01_message_is_challenged(h: Harness) -> None:
    h.add_device("j.user")
    data = (DATA / "regaut01.dat").read_bytes()
    h.deliver(data, Peer("udp", "192.0.2.253", 5060, 5060))
    (sent,) = h.net.take()
    assert sent.msg.status == 401 and sent.msg.call_id == "regaut01.0ha0isndaksdj"
    assert h.registrar.bindings == {}


def test_to_user_must_be_the_authenticated_user(h: Harness, alice: UA) -> None:
    # RFC 3261 10.3 step 3: alice's credentials do not let her register bob's address.
    resp = alice.register(to_user="bob")
    assert resp is not None and resp.status == 403
    assert h.registrar.bindings == {}


def test_malformed_credentials_are_400(h: Harness, alice: UA) -> None:
    resp = alice.register_request(authorization='Digest username="alice", realm="trunkline"')
    assert resp is not None and resp.status == 400


# -- bindings -----------------------------------------------------------------------------------------


def test_several_contacts_per_aor(h: Harness, alice: UA) -> None:
    c1, c2, c3 = "sip:alice@198.51.100.10:5061", "sip:alice@198.51.100.10:5071", "sip:alice@198.51.100.10:5081"
    resp = alice.register(contacts=[f"<{c1}>", f"<{c2}>, <{c3}>;q=0.5"], expires=600)
    assert resp is not None and resp.status == 200
    assert bound(resp) == {c1: 600, c2: 600, c3: 600}
    # A second phone of the same device adds its own contact; the 200 lists all of them.
    desk = h.ua("alice", "198.51.100.11", 5060)
    resp = desk.register(expires=900)
    assert resp is not None and resp.status == 200
    assert bound(resp) == {c1: 600, c2: 600, c3: 600, desk.contact_uri: 900}
    looked = h.registrar.lookup("alice")
    assert len(looked) == 4 and looked[-1].contact == c3  # best q first, q=0.5 last
    assert h.registrar.count == 4


def test_expires_param_wins_over_header(h: Harness, alice: UA) -> None:
    a, b, c = "sip:alice@198.51.100.10:5061", "sip:alice@198.51.100.10:5071", "sip:alice@198.51.100.10:5081"
    resp = alice.register(contacts=[f"<{a}>", f"<{b}>;expires=1200", f"<{c}>;expires=0"], expires=600)
    assert resp is not None and resp.status == 200
    assert bound(resp) == {a: 600, b: 1200}
    # Expires: 0 in the header does not remove a contact whose own expires says otherwise.
    resp = alice.register(contacts=[f"<{a}>;expires=300"], expires=0)
    assert resp is not None and resp.status == 200
    assert bound(resp) == {a: 300, b: 1200}


def test_default_expires_when_none_given(h: Harness, alice: UA) -> None:
    resp = alice.register()
    assert resp is not None and bound(resp) == {alice.contact_uri: RegistrarConfig().default_expires}


@pytest.mark.parametrize("how", ["header", "param"])
def test_interval_too_brief_is_423_with_min_expires(h: Harness, alice: UA, how: str) -> None:
    if how == "header":
        resp = alice.register(expires=30)
    else:
        resp = alice.register(contacts=[f"<{alice.contact_uri}>;expires=59"])
    assert resp is not None and resp.status == 423
    assert resp.get("min-expires") == str(RegistrarConfig().min_expires)  # RFC 3261 10.3 step 7, 20.23
    assert h.registrar.bindings == {}
    resp = alice.register(expires=60)
    assert resp is not None and resp.status == 200 and bound(resp) == {alice.contact_uri: 60}


def test_expires_above_max_is_clamped(h: Harness, alice: UA) -> None:
    resp = alice.register(expires=10**12)
    assert resp is not None and resp.status == 200
    assert bound(resp) == {alice.contact_uri: RegistrarConfig().max_expires}
    (b,) = h.registrar.lookup("alice")
    assert b.expires_at == pytest.approx(h.clock.wall() + RegistrarConfig().max_expires)


def test_unregister_one_contact(h: Harness, alice: UA) -> None:
    a, b = "sip:alice@198.51.100.10:5061", "sip:alice@198.51.100.10:5071"
    assert (r := alice.register(contacts=[f"<{a}>", f"<{b}>"])) is not None and r.status == 200
    resp = alice.register(contacts=[f"<{a}>;expires=0"])
    assert resp is not None and resp.status == 200
    assert bound(resp) == {b: 3600}
    assert h.bindings.removed_ == [("alice", a)]
    assert [x.contact for x in h.registrar.lookup("alice")] == [b]
    assert h.registrar.count == 1


def test_unregister_matches_contacts_by_uri_equality(h: Harness, alice: UA) -> None:
    # RFC 3261 10.3 step 7 compares contacts with the URI rules of 19.1.4: escapes decoded, host
    # case-insensitive.
    assert (r := alice.register(contacts=["<sip:alice@PHONE.example.net:5061>"])) is not None and r.status == 200
    resp = alice.register(contacts=["<sip:%61lice@phone.example.net:5061>;expires=0"])
    assert resp is not None and resp.status == 200 and bound(resp) == {}
    assert h.registrar.bindings == {} and h.bindings.removed_ == [("alice", "sip:alice@PHONE.example.net:5061")]


def test_refresh_written_differently_keeps_one_binding(h: Harness, alice: UA) -> None:
    assert (r := alice.register(contacts=["<sip:alice@PHONE.example.net:5061>"])) is not None and r.status == 200
    resp = alice.register(contacts=["<sip:alice@phone.example.net:5061>"], expires=120)
    assert resp is not None and bound(resp) == {"sip:alice@phone.example.net:5061": 120}
    assert h.registrar.count == 1 and len(h.registrar.lookup("alice")) == 1
    # The store is keyed by the contact's text: the old spelling's row goes.
    assert h.bindings.removed_ == [("alice", "sip:alice@PHONE.example.net:5061")]


def test_unregister_all_with_star(h: Harness, alice: UA) -> None:
    a, b = "sip:alice@198.51.100.10:5061", "sip:alice@198.51.100.10:5071"
    assert (r := alice.register(contacts=[f"<{a}>", f"<{b}>"])) is not None and r.status == 200
    resp = alice.register(contacts=["*"], expires=0)
    assert resp is not None and resp.status == 200
    assert resp.get_all("contact") == []
    assert sorted(h.bindings.removed_) == [("alice", a), ("alice", b)]
    assert h.registrar.lookup("alice") == [] and h.registrar.count == 0


@pytest.mark.parametrize("contacts,expires", [
    (["*"], None),  # RFC 3261 10.3 step 6: "*" needs Expires: 0
    (["*"], 60),
    (["*", "<sip:alice@198.51.100.10:5099>"], 0),  # and must be alone
    (["*, <sip:alice@198.51.100.10:5099>"], 0),
])
def test_star_misuse_is_400(h: Harness, alice: UA, contacts: list[str], expires: int | None) -> None:
    assert (r := alice.register()) is not None and r.status == 200
    resp = alice.register(contacts=contacts, expires=expires)
    assert resp is not None and resp.status == 400
    assert [b.contact for b in h.registrar.lookup("alice")] == [alice.contact_uri]
    assert h.bindings.removed_ == []


def test_200_lists_current_bindings_with_remaining_time(h: Harness, alice: UA) -> None:
    assert (r := alice.register(expires=3600)) is not None and r.status == 200
    h.advance(100.0)
    other = h.ua("alice", "198.51.100.12", 5060)
    resp = other.register(expires=600)
    assert resp is not None and resp.status == 200
    assert bound(resp) == {alice.contact_uri: 3500, other.contact_uri: 600}
    h.advance(0.3)
    resp = other.register(contacts=[])  # a query
    assert resp is not None and bound(resp) == {alice.contact_uri: 3500, other.contact_uri: 600}


def test_register_without_contact_is_a_query(h: Harness, alice: UA) -> None:
    assert (r := alice.register(expires=600)) is not None and r.status == 200
    saved = len(h.bindings.saved_)
    (before,) = h.registrar.lookup("alice")
    expires_at = before.expires_at
    h.advance(10.0)
    resp = alice.register(contacts=[], expires=3600)
    assert resp is not None and resp.status == 200
    assert bound(resp) == {alice.contact_uri: 590}
    assert len(h.bindings.saved_) == saved and h.bindings.removed_ == []
    assert h.registrar.lookup("alice")[0].expires_at == expires_at


def test_same_call_id_with_a_cseq_not_higher_is_refused(h: Harness, alice: UA) -> None:
    assert (r := alice.register(expires=600)) is not None and r.status == 200  # CSeq 2
    (b,) = h.registrar.lookup("alice")
    expires_at = b.expires_at
    for cseq in (2, 1):
        resp = alice.register_request(cseq=cseq, expires=1200,
                                      authorization=alice.reuse_authorization("REGISTER", alice.registrar_uri))
        # RFC 3261 10.3 step 7: "If not, the update MUST be aborted and the request fails."
        assert resp is not None and resp.status == 400
        assert h.registrar.lookup("alice")[0].expires_at == expires_at
    # Removing with an old CSeq is refused the same way.
    resp = alice.register_request(cseq=1, contacts=[f"<{alice.contact_uri}>;expires=0"],
                                  authorization=alice.reuse_authorization("REGISTER", alice.registrar_uri))
    assert resp is not None and resp.status == 400 and len(h.registrar.lookup("alice")) == 1
    # Another Call-ID (the phone rebooted) may carry any CSeq.
    resp = alice.register_request(cseq=1, call_id="rebooted-1@198.51.100.10", expires=1200,
                                  authorization=alice.reuse_authorization("REGISTER", alice.registrar_uri))
    assert resp is not None and resp.status == 200 and bound(resp) == {alice.contact_uri: 1200}


def test_bindings_expire(h: Harness, alice: UA) -> None:
    assert (r := alice.register(expires=60)) is not None and r.status == 200
    h.advance(59.0)
    assert len(h.registrar.lookup("alice")) == 1
    h.advance(6.0)  # past the expiry and past one housekeeping run
    assert h.registrar.bindings == {} and h.registrar.count == 0
    assert h.bindings.removed_ == [("alice", alice.contact_uri)]
    resp = alice.register(contacts=[])
    assert resp is not None and resp.status == 200 and bound(resp) == {}


def test_max_contacts_refused_atomically() -> None:
    h = Harness(registrar=RegistrarConfig(max_contacts=2))
    h.add_device("alice")
    alice = h.ua("alice", ALICE_IP, 5061)
    a, b, c = "sip:alice@198.51.100.10:5061", "sip:alice@198.51.100.10:5071", "sip:alice@198.51.100.10:5081"
    resp = alice.register(contacts=[f"<{a}>", f"<{b}>", f"<{c}>"])
    assert resp is not None and resp.status == 403 and h.registrar.bindings == {}
    assert (r := alice.register(contacts=[f"<{a}>"], expires=3600)) is not None and r.status == 200
    saved = len(h.bindings.saved_)
    h.advance(10.0)
    # Refreshing a (expires 120) while adding two more: refused, and a is left exactly as it was
    # (RFC 3261 10.3: bindings are committed if and only if all updates succeed).
    resp = alice.register(contacts=[f"<{a}>;expires=120", f"<{b}>", f"<{c}>"])
    assert resp is not None and resp.status == 403
    (kept,) = h.registrar.lookup("alice")
    assert kept.expires_at == pytest.approx(1000.0 + WALL_OFFSET + 3600)
    assert len(h.bindings.saved_) == saved and h.registrar.count == 1
    # Replacing one contact by another in one request stays within the limit.
    resp = alice.register(contacts=[f"<{a}>;expires=0", f"<{b}>", f"<{c}>"])
    assert resp is not None and resp.status == 200 and set(bound(resp)) == {b, c}


def test_same_contact_twice_in_one_request_last_wins(h: Harness, alice: UA) -> None:
    a = alice.contact_uri
    resp = alice.register(contacts=[f"<{a}>", f"<{a}>;expires=0"])
    assert resp is not None and resp.status == 200 and bound(resp) == {}
    assert h.registrar.bindings == {} and h.registrar.count == 0
    resp = alice.register(contacts=[f"<{a}>;expires=0", f"<{a}>;expires=300"])
    assert resp is not None and resp.status == 200 and bound(resp) == {a: 300}
    assert h.registrar.count == 1


def test_nat_binding_records_the_source_address() -> None:
    h = Harness()
    h.add_device("carol", extension="1002")
    # A phone behind NAT: its Via and Contact name its private address; the packet comes from
    # the NAT's public address and port, on the switch's port 6060.
    carol = h.ua("carol", "198.51.100.30", 40001, local_port=6060, via_host="10.0.0.5", via_port=5060)
    resp = carol.register()
    assert resp is not None and resp.status == 200
    assert bound(resp) == {"sip:carol@10.0.0.5:5060": 3600}  # the Contact as registered
    (b,) = h.registrar.lookup("carol")
    assert (b.contact, b.source_ip, b.source_port, b.transport, b.local_port, b.conn_id) == (
        "sip:carol@10.0.0.5:5060", "198.51.100.30", 40001, "udp", 6060, None)
    # rport (RFC 3581): the answer went to the NAT's address, not the Via's.
    assert all(s.peer.port == 40001 for s in h.net.to("198.51.100.30", 40001))
    assert not h.net.to("10.0.0.5", 5060)
    # A call to carol reaches her through the NAT: the Contact as Request-URI, the source as target.
    h.add_ip_device("198.51.100.10", 5061)
    caller = h.ua("pbx", "198.51.100.10", 5061)
    caller.call("1002")
    (sent,) = [s for s in h.net.take() if s.msg.method == "INVITE"]
    assert (sent.peer.ip, sent.peer.port, sent.peer.local_port, sent.peer.transport) == (
        "198.51.100.30", 40001, 6060, "udp")
    assert sent.msg.uri == "sip:carol@10.0.0.5:5060"


def test_tcp_binding_keeps_the_connection(h: Harness) -> None:
    bob = h.ua("bob", BOB_IP, 50123, transport="tcp", conn_id=7)
    other = h.ua("alice", ALICE_IP, 50124, transport="tcp", conn_id=8)
    assert (r := bob.register()) is not None and r.status == 200
    assert (r := other.register()) is not None and r.status == 200
    (b,) = h.registrar.lookup("bob")
    assert (b.transport, b.source_port, b.conn_id) == ("tcp", 50123, 7)
    h.registrar.connection_lost(7)
    assert h.registrar.lookup("bob")[0].conn_id is None  # kept, reached by address from now on
    assert h.registrar.lookup("alice")[0].conn_id == 8


def test_disabled_device_is_forbidden(h: Harness, alice: UA) -> None:
    dev = h.directory.device_by_username("alice")
    assert dev is not None
    h.directory.set_device_status(dev.id, DEVICE_INACTIVE)
    resp = alice.register()
    assert resp is not None and resp.status == 403 and h.registrar.bindings == {}


def test_closed_customer_is_forbidden(h: Harness, alice: UA) -> None:
    h.directory.set_customer_status(1, CUSTOMER_CLOSED)
    resp = alice.register()
    assert resp is not None and resp.status == 403 and h.registrar.bindings == {}


def test_drop_device(h: Harness, alice: UA) -> None:
    bob = h.ua("bob", BOB_IP, 5062)
    assert (r := alice.register(contacts=["<sip:alice@198.51.100.10:5061>", "<sip:alice@198.51.100.10:5071>"]))
    assert r.status == 200
    assert (r := bob.register()) is not None and r.status == 200
    dev = h.directory.device_by_username("alice")
    assert dev is not None
    assert h.registrar.drop_device(dev.id, "test") == 2
    assert h.registrar.lookup("alice") == [] and len(h.registrar.lookup("bob")) == 1
    assert sorted(h.bindings.removed_) == [("alice", "sip:alice@198.51.100.10:5061"),
                                           ("alice", "sip:alice@198.51.100.10:5071")]
    assert h.registrar.count == 1
    # Through the core: the device is disabled in provisioning, its bindings go at once.
    bob_dev = h.directory.device_by_username("bob")
    assert bob_dev is not None
    h.directory.set_device_status(bob_dev.id, DEVICE_INACTIVE)
    h.core.provisioning_changed([("sip_device", bob_dev.id)])
    assert h.registrar.bindings == {} and h.registrar.count == 0


# -- brute force ------------------------------------------------------------------------------------


def test_brute_force_is_slowed_then_blocked() -> None:
    h = Harness(guard={"window": 60.0, "slow_after": 2, "block_after": 4, "block_for": 30.0,
                       "base_delay": 0.25, "max_delay": 2.0})
    h.add_device("alice")
    h.add_device("bob")
    attacker = h.ua("alice", "198.51.100.66", 5060, password="guess")
    first = attacker.register_request()
    assert first is not None and first.status == 401
    attacker.authorization(first, "REGISTER", attacker.registrar_uri)

    def guess(n: int) -> None:
        auth = attacker.reuse_authorization("REGISTER", attacker.registrar_uri, nc=n)
        attacker.register_request(authorization=auth, take=False)

    for n, expected_delay in ((1, 0.0), (2, 0.25), (3, 0.5)):
        sent_at = h.now
        guess(n)
        h.advance(3.0)
        (s,) = attacker.take_sent()
        assert s.msg.status == 403
        assert s.at - sent_at == pytest.approx(expected_delay), n
    assert h.core.blocked == {}
    guess(4)  # the failure that starts the block is still answered
    h.advance(3.0)
    assert [s.msg.status for s in attacker.take_sent()] == [403]
    assert "198.51.100.66" in h.core.blocked and h.auth.blocks == 1
    # Blocked: nothing is answered, even the right password, even an INVITE or an OPTIONS.
    ok = attacker.register_request(authorization=attacker.reuse_authorization(
        "REGISTER", attacker.registrar_uri, nc=10, password=h.directory.passwords["alice"]))
    attacker.call("1000")
    attacker.request("OPTIONS", f"sip:{SWITCH_IP}", call_id="opt-1", from_="<sip:x@y>;tag=1", to="<sip:z@w>", cseq=1)
    h.advance(5.0)
    assert ok is None and attacker.take_sent() == []
    assert h.registrar.bindings == {}
    # Other sources are not affected.
    bob = h.ua("bob", BOB_IP, 5062)
    assert (r := bob.register()) is not None and r.status == 200
    # The block ends after block_for seconds (30 s from the 4th failure): answered again.
    h.advance(30.0 - 3.0 - 5.0 - 0.5)
    attacker.register_request(authorization=attacker.reuse_authorization("REGISTER", attacker.registrar_uri, nc=11),
                              take=False)
    h.advance(0.1)
    assert attacker.take_sent() == []
    h.advance(0.5)
    resp = attacker.register_request()
    assert resp is not None and resp.status == 401
    assert "198.51.100.66" not in h.core.blocked


def test_success_resets_the_failure_count() -> None:
    h = Harness(guard={"slow_after": 2, "block_after": 3, "block_for": 30.0})
    h.add_device("alice")
    alice = h.ua("alice", ALICE_IP, 5061)

    def attempt(password: str | None = None) -> int:
        first = alice.register_request()
        assert first is not None and first.status == 401
        auth = alice.authorization(first, "REGISTER", alice.registrar_uri, password=password)
        alice.register_request(authorization=auth, take=False)
        h.advance(3.0)
        (resp,) = alice.responses()
        return resp.status

    assert [attempt("typo"), attempt("typo"), attempt(), attempt("typo"), attempt("typo")] == [403, 403, 200, 403, 403]
    assert h.core.blocked == {} and h.auth.blocks == 0
    assert attempt("typo") == 403
    assert ALICE_IP in h.core.blocked and h.auth.blocks == 1


# -- RFC 4475 REGISTER messages with a URI or header parameter in the Contact ------------------------

with (DATA / "MANIFEST.csv").open(newline="") as _f:
    _SECTIONS = {row["file"]: row["rfc4475_section"] for row in csv.DictReader(_f)}


@pytest.mark.parametrize("name,user,contact,params", [
    # 3.3.12: no <>: ";unknownparam" is a contact (header) parameter, not part of the URI.
    ("cparam01.dat", "watson", "sip:+19725552222@gw1.example.net", "unknownparam"),
    # 3.3.13: inside <>: the URI parameter stays in the contact URI.
    ("cparam02.dat", "watson", "sip:+19725552222@gw1.example.net;unknownparam", ""),
    # 3.3.14: the escaped Route header is part of the contact URI (to be used when it is reached).
    ("regescrt.dat", "user", "sip:user@example.com?Route=%3Csip:sip.example.com%3E", ""),
])
def test_rfc4475_register_contacts(name: str, user: str, contact: str, params: str) -> None:
    assert _SECTIONS[name] in ("3.3.12", "3.3.13", "3.3.14")
    h = Harness()
    h.add_device(user)
    peer = Peer("udp", "192.0.2.44", 5060, 5060)
    text = (DATA / name).read_bytes().decode()
    h.deliver(text, peer)
    (challenge,) = h.net.take()
    assert challenge.msg.status == 401
    # Answer the challenge as the message's user: CSeq + 1, a new branch, an Authorization field;
    # every other line (the Contact above all) exactly as in the RFC.
    auth = make_authorization(challenge_for(challenge.msg, "SHA-256"), method="REGISTER", uri="sip:example.com",
                              username=user, password=h.directory.passwords[user])
    cseq = int(re.search(r"^CSeq: (\d+) REGISTER", text, re.M).group(1))  # type: ignore[union-attr]
    text = re.sub(r"^CSeq: \d+ REGISTER\r\n", f"CSeq: {cseq + 1} REGISTER\r\nAuthorization: {auth}\r\n", text,
                  flags=re.M)
    text = text.replace("branch=z9hG4bKkdjuw", "branch=z9hG4bKkdjuw-auth")
    h.deliver(text, peer)
    (ok,) = h.net.take()
    assert ok.msg.status == 200, ok.msg.start_line()
    (b,) = h.registrar.lookup(user)
    assert (b.contact, b.params) == (contact, params)
    (listed,) = ok.msg.contacts()
    assert listed.uri == contact
    assert listed.params == ({params: None} if params else {}) | {"expires": "3600"}


def test_allowed_sources_accept_addresses_and_networks() -> None:
    from switch.registrar.auth import source_allowed

    allowed = ("192.0.2.7", "198.51.100.0/24", "2001:db8::/32")
    assert source_allowed("192.0.2.7", allowed)
    assert source_allowed("198.51.100.200", allowed)
    assert source_allowed("::ffff:198.51.100.9", allowed)  # IPv4-mapped IPv6
    assert source_allowed("2001:db8:1::5", allowed)
    assert not source_allowed("192.0.2.8", allowed)
    assert not source_allowed("not-an-ip", allowed)


# -- write-back of refreshes -----------------------------------------------------------------------


def test_pure_refreshes_are_written_back_only_when_the_stored_copy_lags(h: Harness, alice: UA) -> None:
    """A refresh that changes nothing but the expiry is held back (RegistrarConfig.refresh_lag_*)."""
    assert alice.register(expires=3600).status == 200  # type: ignore[union-attr]
    assert len(h.bindings.saved_) == 1  # a new binding is written at once
    h.advance(60)
    assert alice.register(expires=3600).status == 200  # type: ignore[union-attr]
    assert len(h.bindings.saved_) == 1  # 60 s behind out of 3600: held back (lag 25 % = 900 s)
    h.advance(900)
    assert alice.register(expires=3600).status == 200  # type: ignore[union-attr]
    assert len(h.bindings.saved_) == 2  # now 960 s behind: written
    assert h.bindings.saved_[-1].expires_at == h.registrar.lookup("alice")[0].expires_at


def test_a_refresh_from_a_new_address_is_written_at_once(h: Harness) -> None:
    first = h.ua("alice", ALICE_IP, 5061)
    assert first.register(expires=3600).status == 200  # type: ignore[union-attr]
    h.advance(10)
    moved = h.ua("alice", ALICE_IP, 5071)  # same phone, NAT gave it another port
    same_contact = [f"<{first.contact_uri}>"]
    assert moved.register(expires=3600, contacts=same_contact).status == 200  # type: ignore[union-attr]
    assert [b.source_port for b in h.bindings.saved_] == [5061, 5071]


def test_held_back_refreshes_are_written_at_shutdown(h: Harness, alice: UA) -> None:
    assert alice.register(expires=3600).status == 200  # type: ignore[union-attr]
    h.advance(60)
    assert alice.register(expires=3600).status == 200  # type: ignore[union-attr]
    assert len(h.bindings.saved_) == 1
    assert h.registrar.persist_all() == 1
    assert h.bindings.saved_[-1].expires_at == h.registrar.lookup("alice")[0].expires_at
    assert h.registrar.persist_all() == 0


def test_the_expiry_sweep_can_be_incremental(h: Harness) -> None:
    phones = []
    for i in range(5):
        h.add_device(f"user{i}")
        ua = h.ua(f"user{i}", f"192.0.2.{50 + i}", 5061)
        assert ua.register(expires=60).status == 200  # type: ignore[union-attr]
        phones.append(ua)
    before = h.registrar.count
    h.clock.now += 120  # every binding is now past its expiry; no timer is run
    assert h.registrar.expire(budget=2) == 2
    assert h.registrar.expire(budget=2) == 2
    assert h.registrar.expire(budget=2) == 1
    assert h.registrar.count == before - 5
