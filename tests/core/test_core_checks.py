"""The core's own answers: the RFC 3261 section 8.2 checks a UAS makes before it processes a
request, the proxy-like ones a B2BUA needs before it forwards (483, 482), OPTIONS, and the
requests that refer to nothing we know (481)."""

from __future__ import annotations

import pytest

from switch.call.b2bua import ALLOW
from switch.transaction.layer import new_branch
from tests.core.fakes import SWITCH_IP, UA, Harness, build, only, statuses

SRC_IP = "198.51.100.50"


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.add_device("bob", extension="1001")
    return h


@pytest.fixture
def ua(h: Harness) -> UA:
    return h.ua("carol", SRC_IP, 5070)


def send(ua: UA, method: str, *, uri: str = f"sip:{SWITCH_IP}", headers: list[tuple[str, str]] | None = None,
         to: str = f"<sip:{SWITCH_IP}>", branch: str | None = None, max_forwards: int = 70, cseq: int = 1,
         body: bytes = b"", content_type: str | None = None) -> None:
    ua.request(method, uri, call_id=f"chk-{method}-{cseq}@{SRC_IP}", from_="<sip:carol@example.net>;tag=c1",
               to=to, cseq=cseq, branch=branch, headers=headers or [], max_forwards=max_forwards, body=body,
               content_type=content_type)


def finals(ua: UA) -> list[int]:
    return [s for s in statuses(ua.take()) if s >= 200]


def allow_set(value: str | None) -> set[str]:
    assert value is not None
    return {m.strip() for m in value.split(",")}


def test_options_to_the_switch_is_200_with_allow_and_accept(h: Harness, ua: UA) -> None:
    send(ua, "OPTIONS")
    (resp,) = ua.take()
    assert resp.status == 200 and resp.to.tag  # RFC 3261 11.2
    assert {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"} <= allow_set(resp.get("allow"))
    assert resp.get("accept") == "application/sdp"
    h.assert_idle()


def test_options_with_max_forwards_zero_is_answered(h: Harness, ua: UA) -> None:
    # RFC 3261 16.3 item 2 / RFC 4475 3.3.11: an OPTIONS for the element itself may be answered.
    send(ua, "OPTIONS", max_forwards=0)
    assert finals(ua) == [200]


def test_invite_with_max_forwards_zero_is_483(h: Harness, ua: UA) -> None:
    h.add_ip_device(SRC_IP, 5070)
    send(ua, "INVITE", uri=f"sip:1001@{SWITCH_IP}", to=f"<sip:1001@{SWITCH_IP}>", max_forwards=0)
    msgs = ua.take()
    assert statuses(msgs) == [100, 483]  # RFC 3261 16.3 item 2: we would have to forward it
    assert h.net.take() == [] and h.cdrs.records == []


def test_our_own_branch_coming_back_is_a_loop_482(h: Harness, ua: UA) -> None:
    h.add_ip_device(SRC_IP, 5070)
    send(ua, "INVITE", uri=f"sip:1001@{SWITCH_IP}", to=f"<sip:1001@{SWITCH_IP}>", branch=new_branch())
    assert finals(ua) == [482]  # RFC 3261 16.3 item 4: a request we sent came back
    assert h.net.take() == []


def test_unknown_method_is_501_with_allow(h: Harness, ua: UA) -> None:
    send(ua, "FROBNICATE")
    (resp,) = ua.take()
    assert resp.status == 501  # RFC 3261 8.2.1
    assert allow_set(resp.get("allow")) == allow_set(ALLOW)


def test_known_method_we_do_not_do_is_405_with_allow(h: Harness, ua: UA) -> None:
    send(ua, "SUBSCRIBE", headers=[("Event", "presence")])
    (resp,) = ua.take()
    assert resp.status == 405 and allow_set(resp.get("allow")) == allow_set(ALLOW)  # RFC 3261 8.2.1


@pytest.mark.parametrize("method", ["BYE", "INFO", "UPDATE"])
def test_dialog_request_outside_a_dialog_is_481(h: Harness, ua: UA, method: str) -> None:
    send(ua, method)
    assert finals(ua) == [481]


@pytest.mark.parametrize("method", ["BYE", "INVITE", "INFO"])
def test_request_with_unknown_to_tag_is_481(h: Harness, ua: UA, method: str) -> None:
    send(ua, method, to=f"<sip:{SWITCH_IP}>;tag=nobody-knows", cseq=5)
    assert finals(ua) == [481]  # RFC 3261 12.2.2
    h.assert_idle()


@pytest.mark.parametrize("name", ["Require", "Proxy-Require"])
def test_unsupported_extension_is_420(h: Harness, ua: UA, name: str) -> None:
    send(ua, "OPTIONS", headers=[(name, "foo")])
    (resp,) = ua.take()
    assert resp.status == 420 and resp.get("unsupported") == "foo"  # RFC 3261 8.2.2.3


def test_420_lists_every_unsupported_tag_for_an_invite(h: Harness, ua: UA) -> None:
    h.add_ip_device(SRC_IP, 5070)
    send(ua, "INVITE", uri=f"sip:1001@{SWITCH_IP}", to=f"<sip:1001@{SWITCH_IP}>",
         headers=[("Require", "100rel, foo"), ("Proxy-Require", "bar")])
    resp = only(ua.take(), status=420)
    assert {t.strip() for t in (resp.get("unsupported") or "").split(",")} == {"100rel", "foo", "bar"}
    assert h.net.take() == []


def test_invite_body_we_cannot_read_is_415_with_accept(h: Harness, ua: UA) -> None:
    h.add_ip_device(SRC_IP, 5070)
    send(ua, "INVITE", uri=f"sip:1001@{SWITCH_IP}", to=f"<sip:1001@{SWITCH_IP}>", body=b"hello",
         content_type="text/plain")
    resp = only(ua.take(), status=415)
    assert resp.get("accept") == "application/sdp"  # RFC 3261 8.2.3


def test_invite_accepting_no_sdp_is_406(h: Harness, ua: UA) -> None:
    h.add_ip_device(SRC_IP, 5070)
    send(ua, "INVITE", uri=f"sip:1001@{SWITCH_IP}", to=f"<sip:1001@{SWITCH_IP}>",
         headers=[("Accept", "text/nobodyKnowsThis")])
    assert finals(ua) == [406]


def test_unknown_request_uri_scheme_is_416(h: Harness, ua: UA) -> None:
    send(ua, "OPTIONS", uri="nobodyKnowsThisScheme:totallyopaquecontent")
    assert finals(ua) == [416]  # RFC 3261 8.2.2.1


def test_cancel_without_matching_invite_is_481(h: Harness, ua: UA) -> None:
    send(ua, "CANCEL", uri=f"sip:1001@{SWITCH_IP}")
    (resp,) = ua.take()
    assert resp.status == 481 and resp.cseq_method == "CANCEL"  # RFC 3261 9.2
    h.assert_idle()


def test_a_challenged_invite_leaves_no_transaction_so_its_cancel_is_481(h: Harness, ua: UA) -> None:
    # The 407 is sent without transaction state (RFC 3261 8.2.7): nothing is left for a CANCEL
    # to match (9.2), and nothing retransmits the 407 to a possibly spoofed source.
    branch = ua.new_branch()
    send(ua, "INVITE", uri=f"sip:1001@{SWITCH_IP}", to=f"<sip:1001@{SWITCH_IP}>", branch=branch)
    assert statuses(ua.take()) == [407]
    assert len(h.core.layer) == 0
    h.advance(40)
    assert ua.take() == []  # no Timer G retransmissions of the 407
    send(ua, "CANCEL", uri=f"sip:1001@{SWITCH_IP}", to=f"<sip:1001@{SWITCH_IP}>", branch=branch)
    assert statuses(ua.take()) == [481]


def test_stray_ack_and_stray_response_are_dropped(h: Harness, ua: UA) -> None:
    send(ua, "ACK", to=f"<sip:{SWITCH_IP}>;tag=gone")
    ua.send(build("SIP/2.0 200 OK", [("Via", f"SIP/2.0/UDP {SWITCH_IP}:5060;branch=z9hG4bKnotours"),
                                     ("From", "<sip:a@b>;tag=1"), ("To", "<sip:c@d>;tag=2"),
                                     ("Call-ID", "stray@x"), ("CSeq", "1 INVITE")]))
    assert h.net.take() == []
    assert h.core.stats.dropped == 2
    h.assert_idle()


def test_responses_carry_received_and_rport_for_the_real_source() -> None:
    """RFC 3261 18.2.1 and RFC 3581 4: the answer tells the client where its request came from."""
    from switch.call.core import stamp_received
    from switch.sip.message import parse_message
    from switch.transaction.peer import Peer

    raw = (b"OPTIONS sip:switch.example.com SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKabc;rport, SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\n"
           b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
           b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(raw)
    stamp_received(msg, Peer("udp", "203.0.113.9", 40000, 5060))
    assert msg.headers["via"][0] == ("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKabc;rport=40000;received=203.0.113.9,"
                                     " SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp")
