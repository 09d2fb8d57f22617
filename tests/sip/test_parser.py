"""Focused unit tests of the SIP parser, the typed header views and the response builder."""

from __future__ import annotations

import time

import pytest

from switch.sip import message as message_module
from switch.sip.errors import SipError
from switch.sip.headers import parse_cseq, parse_name_addr, parse_params, parse_uint, parse_via, split_commas
from switch.sip.message import SipMessage, parse_message, response_for
from switch.sip.uri import make_uri, parse_uri, unescape

BODY = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def sip(*lines: str, body: bytes = b"", content_length: int | None = -1) -> bytes:
    """A message from header lines; Content-Length is added (right) unless given or None."""
    head = list(lines)
    if content_length == -1:
        head.append(f"Content-Length: {len(body)}")
    elif content_length is not None:
        head.append(f"Content-Length: {content_length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def invite(*extra: str, body: bytes = b"", content_length: int | None = -1) -> bytes:
    return sip(
        "INVITE sip:bob@example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds",
        "Max-Forwards: 70",
        "To: Bob <sip:bob@example.com>",
        'From: "Alice" <sip:alice@example.org>;tag=1928301774',
        "Call-ID: a84b4c76e66710@pc33.example.org",
        "CSeq: 314159 INVITE",
        "Contact: <sip:alice@192.0.2.1>",
        *extra,
        body=body,
        content_length=content_length,
    )


def raises(data: bytes, status: int = 400, **kwargs: object) -> SipError:
    with pytest.raises(SipError) as exc:
        parse_message(data, **kwargs)  # type: ignore[arg-type]
    assert exc.value.status == status, exc.value
    return exc.value


# -- the basics ------------------------------------------------------------------------------------

def test_request_fields() -> None:
    msg = parse_message(invite("Content-Type: application/sdp", body=BODY))
    assert msg.is_request and (msg.method, msg.uri, msg.status) == ("INVITE", "sip:bob@example.com", 0)
    assert (msg.cseq_num, msg.cseq_method, msg.call_id) == (314159, "INVITE", "a84b4c76e66710@pc33.example.org")
    assert msg.max_forwards == 70
    assert msg.via is not None and msg.via.sent_by == ("192.0.2.1", 5060) and msg.via.rfc3261_branch
    assert msg.from_.display == "Alice" and msg.from_.tag == "1928301774"
    assert msg.to.display == "Bob" and msg.to.tag is None
    assert msg.body == BODY and msg.content_type == "application/sdp"
    assert msg.request_uri.user == "bob" and msg.request_uri.host == "example.com"


def test_response_fields() -> None:
    msg = parse_message(sip(
        "SIP/2.0 180 Ringing",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;received=192.0.2.1",
        "To: Bob <sip:bob@example.com>;tag=a6c85cf",
        "From: <sip:alice@example.org>;tag=1928301774",
        "Call-ID: x@y",
        "CSeq: 1 INVITE",
    ))
    assert not msg.is_request and (msg.status, msg.reason, msg.method) == (180, "Ringing", "")
    assert msg.to.tag == "a6c85cf"
    assert msg.via is not None and msg.via.params["received"] == "192.0.2.1"


def test_leading_empty_lines_are_ignored() -> None:
    # RFC 3261 section 7.5.
    assert parse_message(b"\r\n\r\n\n" + invite()).method == "INVITE"


def test_bare_lf_line_ends_are_accepted() -> None:
    head, _, body = invite(body=BODY).partition(b"\r\n\r\n")
    msg = parse_message(head.replace(b"\r\n", b"\n") + b"\n\n" + body)
    assert msg.call_id == "a84b4c76e66710@pc33.example.org"
    assert msg.body == BODY


def test_lf_header_block_with_crlf_crlf_in_body() -> None:
    # The header block ends at the first LF LF even if the body has a CRLF CRLF further on.
    body = b"a\r\n\r\nb"
    data = invite(body=body).split(b"\r\n\r\n")[0].replace(b"\r\n", b"\n") + b"\n\n" + body
    msg = parse_message(data)
    assert msg.body == body


def test_mixed_line_ends_split_at_every_lf() -> None:
    data = invite().replace(b"\r\nMax-Forwards", b"\nMax-Forwards")
    assert parse_message(data).max_forwards == 70


def test_bare_cr_in_a_header_is_refused() -> None:
    # A lone CR would end the line for a next hop that we relay the value to.
    raises(invite("Subject: hi\rVia: SIP/2.0/UDP evil.example.com"))


def test_missing_final_crlf_on_a_datagram() -> None:
    data = invite().rstrip(b"\r\n")
    assert parse_message(data).call_id == "a84b4c76e66710@pc33.example.org"
    raises(data, stream=True)


# -- header names ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("compact", "key", "value"), [
    ("i", "call-id", "c@h"), ("m", "contact", "<sip:a@h>"), ("e", "content-encoding", "gzip"),
    ("c", "content-type", "text/plain"), ("f", "from", "<sip:a@h>;tag=1"), ("s", "subject", "hi"),
    ("k", "supported", "100rel"), ("t", "to", "<sip:b@h>"), ("v", "via", "SIP/2.0/UDP h;branch=z9hG4bKx"),
    ("o", "event", "presence"), ("r", "refer-to", "<sip:c@h>"), ("b", "referred-by", "<sip:a@h>"),
    ("u", "allow-events", "talk"), ("x", "session-expires", "1800"),
])
def test_compact_forms(compact: str, key: str, value: str) -> None:
    base = {
        "via": "SIP/2.0/UDP h;branch=z9hG4bKx", "from": "<sip:a@h>;tag=1", "to": "<sip:b@h>",
        "call-id": "c@h", "cseq": "1 OPTIONS",
    }
    base.pop(key, None)
    data = sip("OPTIONS sip:b@h SIP/2.0", *(f"{k}: {v}" for k, v in base.items()), f"{compact.upper()}: {value}")
    msg = parse_message(data)
    assert msg.headers[key] == [value]
    assert msg.get(compact) == value == msg.get(key)
    assert key not in msg.names  # the full canonical name is used when relaying
    assert f"\r\n{message_module.CANONICAL[key]}: {value}\r\n".encode() in msg.to_bytes()


def test_compact_content_length() -> None:
    data = invite(body=BODY, content_length=None).replace(b"\r\n\r\n", f"\r\nl: {len(BODY)}\r\n\r\n".encode(), 1)
    msg = parse_message(data)
    assert msg.body == BODY


def test_header_names_are_case_insensitive() -> None:
    msg = parse_message(sip(
        "OPTIONS sip:b@h SIP/2.0", "vIA: SIP/2.0/UDP h;branch=z9hG4bKx", "FROM: <sip:a@h>;tag=1",
        "tO: <sip:b@h>", "CALL-ID: c@h", "cseq: 2 OPTIONS", "MAX-forwards: 9", "X-Custom-Header: 1",
        "x-custom-header: 2",
    ))
    assert (msg.call_id, msg.cseq_num, msg.max_forwards) == ("c@h", 2, 9)
    assert msg.get_all("x-custom-header") == ["1", "2"]
    assert msg.get("X-CUSTOM-HEADER") == "1" and msg.get("Call-ID") == "c@h"
    assert msg.names["x-custom-header"] == "X-Custom-Header"  # the first spelling is kept
    assert b"\r\nX-Custom-Header: 1\r\nX-Custom-Header: 2\r\n" in msg.to_bytes()
    assert b"\r\nCall-ID: c@h\r\n" in msg.to_bytes()


def test_whitespace_before_colon() -> None:
    # HCOLON = *( SP / HTAB ) ":" SWS
    msg = parse_message(invite().replace(b"Call-ID:", b"Call-ID \t :"))
    assert msg.call_id == "a84b4c76e66710@pc33.example.org"


@pytest.mark.parametrize("line", ["Bad Name: x", "Bad(name): x", ": x", "NoColonHere", "Na\x00me: x"])
def test_malformed_header_lines(line: str) -> None:
    err = raises(invite(line))
    assert isinstance(err.message, SipMessage)  # still answerable


def test_name_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(message_module, "_OTHER_KEYS", {})
    for i in range(3000):
        parse_message(invite(f"X-{i}-{'n' * (i % 100)}: 1"))
    cache = message_module._OTHER_KEYS
    assert len(cache) <= message_module._NAME_KEYS_MAX
    assert all(len(name) <= message_module._NAME_MAX_CACHED for name in cache)
    # Names learnt or not, they parse the same.
    msg = parse_message(invite("X-" + "y" * 200 + ": 1"))
    assert msg.get("x-" + "y" * 200) == "1"
    # A full cache starts again: names seen after a flood are still learnt.
    parse_message(invite("X-Legit: 1"))
    assert cache.get("X-Legit") == "x-legit"
    assert message_module._CANON_KEYS["Via"] == "via"


# -- folding and LWS ---------------------------------------------------------------------------------

def test_folding_is_one_space() -> None:
    msg = parse_message(sip(
        "OPTIONS sip:b@h SIP/2.0",
        "Via: SIP/2.0/UDP h",
        "\t;branch=z9hG4bKx",
        "From:",
        "  <sip:a@h>",
        "   ;tag=1",
        "To: <sip:b@h>",
        "Call-ID: c@h",
        "CSeq: 1",
        "  OPTIONS",
        "Subject: one",
        " two",
        " \t three",
    ))
    assert msg.via is not None and msg.via.branch == "z9hG4bKx"
    assert msg.from_.tag == "1" and msg.from_.uri == "sip:a@h"
    assert (msg.cseq_num, msg.cseq_method) == (1, "OPTIONS")
    assert msg.get("subject") == "one two three"


def test_folded_content_length() -> None:
    folded = f"\r\nContent-Length:\r\n {len(BODY)}\r\n\r\n".encode()
    data = invite(body=BODY, content_length=None).replace(b"\r\n\r\n", folded, 1)
    assert parse_message(data).body == BODY


@pytest.mark.parametrize("data", [
    b"INVITE sip:bob@example.com\r\n SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",  # the start line cannot fold
    b"INVITE sip:bob@example.com SIP/2.0\r\n Via: SIP/2.0/UDP h\r\n\r\n",
])
def test_folding_into_the_start_line_is_refused(data: bytes) -> None:
    raises(data)


# -- repeated headers and comma-separated values -----------------------------------------------------

def test_repeated_and_comma_separated_values() -> None:
    msg = parse_message(invite(
        "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
        "Route: <sip:p3.example.com;lr>",
        "Record-Route: <sip:rr@x;lr>",
        "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2, SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bK3",
        "Allow: INVITE, ACK,CANCEL , BYE",
        'Contact: "Doe, John" <sip:j,k@h>;q=0.5, <sip:k@h>',
    ))
    assert msg.get_all("route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p3.example.com;lr>"]
    assert [v.host for v in msg.vias] == ["192.0.2.1", "10.0.0.1", "[2001:db8::1]"]
    assert msg.vias[2].sent_by == ("2001:db8::1", 5061)
    assert msg.get_all("allow") == ["INVITE", "ACK", "CANCEL", "BYE"]
    contacts = msg.contacts()
    assert [c.uri for c in contacts] == ["sip:alice@192.0.2.1", "sip:j,k@h", "sip:k@h"]
    assert contacts[1].display == "Doe, John" and contacts[1].params == {"q": "0.5"}
    # Values of other fields are never split: commas are data there.
    msg2 = parse_message(invite("Subject: one, two", "Subject: three"))
    assert msg2.get_all("subject") == ["one, two", "three"]
    assert msg2.get("subject") == "one, two"


@pytest.mark.parametrize(("value", "parts"), [
    ('"a,b" <sip:x@h>, <sip:y@h>', ['"a,b" <sip:x@h>', " <sip:y@h>"]),
    ('"a\\",b" <sip:x@h>,<sip:y@h>', ['"a\\",b" <sip:x@h>', "<sip:y@h>"]),
    ("<sip:x@h;p=1,2>,<sip:y@h>", ["<sip:x@h;p=1,2>", "<sip:y@h>"]),
    ("no commas", ["no commas"]),
    ("a,,b", ["a", "", "b"]),
])
def test_split_commas(value: str, parts: list[str]) -> None:
    assert split_commas(value) == parts


@pytest.mark.parametrize("key", ["to", "from", "call-id", "cseq", "max-forwards", "content-type"])
def test_single_valued_fields_twice_is_400(key: str) -> None:
    values = {"to": "<sip:x@h>", "from": "<sip:x@h>;tag=2", "call-id": "other@h", "cseq": "314159 INVITE",
              "max-forwards": "70", "content-type": "text/plain"}
    data = invite(f"{message_module.CANONICAL[key]}: {values[key]}", "Content-Type: application/sdp"
                  if key == "content-type" else "X-Pad: 1")
    err = raises(data)
    assert err.reason == f"Multiple {message_module.CANONICAL[key]} values"


def test_missing_mandatory_fields() -> None:
    for key in ("From", "To", "Call-ID", "CSeq"):
        data = b"\r\n".join(line for line in invite().split(b"\r\n") if not line.startswith(key.encode() + b":"))
        assert raises(data).reason == f"Missing {key} header"
    data = b"\r\n".join(line for line in invite().split(b"\r\n") if not line.startswith(b"Via:"))
    err = raises(data)
    assert err.drop  # no Via: no way to address an answer


# -- quoted strings, name-addr, addr-spec -------------------------------------------------------------

@pytest.mark.parametrize(("value", "display", "uri", "params"), [
    ('"A \\"quoted\\" name" <sip:a@h>;tag=x', 'A "quoted" name', "sip:a@h", {"tag": "x"}),
    ('"back\\\\slash" <sip:a@h>', "back\\slash", "sip:a@h", {}),
    ('"<not a uri>" <sip:a@h>', "<not a uri>", "sip:a@h", {}),
    ('"" <sip:a@h>', "", "sip:a@h", {}),
    ("Bob  Smith   <sip:b@h> ; tag = 7 ; x", "Bob  Smith", "sip:b@h", {"tag": "7", "x": None}),
    ("<sip:b@h;transport=tcp>;expires=60", None, "sip:b@h;transport=tcp", {"expires": "60"}),
    ("sip:b@h;tag=9", None, "sip:b@h", {"tag": "9"}),
    ("tel:+1-201-555-0123", None, "tel:+1-201-555-0123", {}),
    ('<sip:b@h>;p="quoted;value,with=specials"', None, "sip:b@h", {"p": '"quoted;value,with=specials"'}),
    ("<sip:b@h>;TAG=Upper", None, "sip:b@h", {"tag": "Upper"}),
])
def test_name_addr(value: str, display: str | None, uri: str, params: dict[str, str | None]) -> None:
    na = parse_name_addr(value)
    assert (na.display, na.uri, na.params) == (display, uri, params)


@pytest.mark.parametrize("value", [
    '"unterminated <sip:a@h>',
    'Bell, Alexander <sip:a@h>',
    '< sip:a@h >',
    "<sip:a@h",
    "sip:a@h?subject=x",  # headers need <>
    "sip:a@h, sip:b@h",
    "<sip:a@h>;;tag=1",
    "<sip:a@h>;tag=1 junk",
    '"a" sip:a@h',
])
def test_name_addr_malformed(value: str) -> None:
    with pytest.raises(SipError) as exc:
        parse_name_addr(value)
    assert exc.value.status == 400


def test_star_contact() -> None:
    msg = parse_message(sip(
        "REGISTER sip:h SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bKx", "From: <sip:a@h>;tag=1",
        "To: <sip:a@h>", "Call-ID: c@h", "CSeq: 1 REGISTER", "Contact: *", "Expires: 0",
    ))
    (star,) = msg.contacts()
    assert star.uri == "*" and not star.angle


def test_from_to_uri_is_checked_when_read() -> None:
    msg = parse_message(invite().replace(b"To: Bob <sip:bob@example.com>", b"To: <sip:bob@exa%mple.com>"))
    with pytest.raises(SipError):
        msg.to.parsed_uri  # noqa: B018
    assert msg.to.tag is None  # the structure was checked at parse time


# -- IPv6 -----------------------------------------------------------------------------------------------

def test_ipv6_everywhere() -> None:
    msg = parse_message(sip(
        "INVITE sip:bob@[2001:db8::10]:5070;maddr=[2001:db8::11] SIP/2.0",
        "Via: SIP/2.0/UDP [2001:db8::9]:6050;branch=z9hG4bK1;received=2001:db8::9;rport=6050",
        "Via: SIP/2.0/TCP [2001:DB8::A];branch=z9hG4bK2;received=[2001:db8::a]",
        "Max-Forwards: 70",
        "To: <sip:bob@[2001:db8::10]>",
        "From: <sip:alice@[2001:db8::9]:6050>;tag=1",
        "Call-ID: c@[2001:db8::9]",
        "CSeq: 1 INVITE",
        "Contact: <sip:alice@[2001:db8::9]:6050;transport=tcp>",
    ))
    assert msg.request_uri.host_port() == ("2001:db8::10", 5070)
    assert msg.request_uri.params["maddr"] == "[2001:db8::11]"
    via1, via2 = msg.vias
    assert via1.sent_by == ("2001:db8::9", 6050) and via1.params["received"] == "2001:db8::9"
    assert via2.host == "[2001:db8::a]" and via2.sent_by == ("2001:db8::a", 5060)
    assert via2.params["received"] == "[2001:db8::a]"
    assert msg.to.parsed_uri.host == "[2001:db8::10]"
    assert msg.contacts()[0].parsed_uri.host_port() == ("2001:db8::9", 6050)
    assert make_uri("bob", "2001:db8::1", 5060) == "sip:bob@[2001:db8::1]:5060"


def test_bare_ipv6_is_not_a_token_elsewhere() -> None:
    with pytest.raises(SipError):
        parse_params(";tag=12:34")


# -- Via, CSeq, Max-Forwards, Call-ID ------------------------------------------------------------------

@pytest.mark.parametrize(("value", "transport", "host", "port", "branch"), [
    ("SIP/2.0/UDP h.example.com;branch=z9hG4bKa", "UDP", "h.example.com", None, "z9hG4bKa"),
    ("SIP / 2.0 / tcp  H.Example.COM : 5061 ; branch = z9hG4bKb", "TCP", "h.example.com", 5061, "z9hG4bKb"),
    ("sip/2.0/udp 192.0.2.1:5060", "UDP", "192.0.2.1", 5060, None),  # "SIP" is case-insensitive
    ("SIP/2.0/TLS [::1]:5061;branch=z9hG4bKc;rport", "TLS", "[::1]", 5061, "z9hG4bKc"),
])
def test_via(value: str, transport: str, host: str, port: int | None, branch: str | None) -> None:
    via = parse_via(value)
    assert (via.transport, via.host, via.port, via.branch) == (transport, host, port, branch)


@pytest.mark.parametrize("value", [
    "SIP/2.0/UDP", "SIP/3.0/UDP h", "SIP/2.0/UDP h:99999", "SIP/2.0/UDP h;branch=", "SIP/2.0/UDP h x",
    "SIP/2.0/UDP h;;", "SIP/2.0/UDP -h", "SIP/2.0 UDP h", "",
])
def test_via_malformed(value: str) -> None:
    with pytest.raises(SipError):
        parse_via(value)


@pytest.mark.parametrize(("value", "result"), [
    ("1 INVITE", (1, "INVITE")), ("0009  INVITE ", (9, "INVITE")), ("2147483647 BYE", (2**31 - 1, "BYE")),
    ("000000000000042 ACK", (42, "ACK")),
])
def test_cseq(value: str, result: tuple[int, str]) -> None:
    assert parse_cseq(value) == result


@pytest.mark.parametrize("value", ["2147483648 INVITE", "1", "INVITE 1", "-1 INVITE", "1 INV ITE", "9" * 5000 + " X"])
def test_cseq_malformed(value: str) -> None:
    with pytest.raises(SipError):
        parse_cseq(value)


def test_uint() -> None:
    assert parse_uint("0068", "Max-Forwards", 255) == 68
    assert parse_uint(" 7 ", "Max-Forwards", 255) == 7
    assert parse_uint("0" * 5000 + "1", "Max-Forwards", 255) == 1
    for bad in ("256", "-1", "1.0", "", "9" * 5000, "\u0661"):
        with pytest.raises(SipError):
            parse_uint(bad, "Max-Forwards", 255)


def test_call_id_with_space_is_refused() -> None:
    err = raises(invite().replace(b"Call-ID: a84b4c76e66710@", b"Call-ID: a84b4c76 e66710@"))
    assert err.reason == "Malformed Call-ID"


# -- start lines -------------------------------------------------------------------------------------

def test_lowercase_sip_version_is_accepted() -> None:
    # RFC 3261 section 7.1: the SIP-Version string is case-insensitive.
    msg = parse_message(invite().replace(b" SIP/2.0\r\n", b" sip/2.0\r\n", 1))
    assert msg.method == "INVITE"
    resp = sip("sip/2.0 200 OK", "Via: SIP/2.0/UDP h;branch=z9hG4bKx", "From: <sip:a@h>;tag=1",
               "To: <sip:b@h>;tag=2", "Call-ID: c@h", "CSeq: 1 INVITE")
    assert parse_message(resp).status == 200


@pytest.mark.parametrize(("line", "status"), [
    ("INVITE sip:bob@example.com SIP/2.1", 505),
    ("INVITE sip:bob@example.com SIP/3.0", 505),
    ("INVITE  sip:bob@example.com SIP/2.0", 400),
    ("INVITE sip:bob@example.com SIP/2.0 ", 400),
    ("INVITE <sip:bob@example.com> SIP/2.0", 400),
    ("INVITE sip:bob@example.com", 400),
    ("INVITE sip:bob@example.com?Subject=x SIP/2.0", 400),
])
def test_bad_request_line_is_still_answerable(line: str, status: int) -> None:
    data = invite().replace(b"INVITE sip:bob@example.com SIP/2.0", line.encode(), 1)
    err = raises(data, status)
    assert not err.drop
    msg = err.message
    assert isinstance(msg, SipMessage) and msg.method == "INVITE"
    assert msg.headers["call-id"] == ["a84b4c76e66710@pc33.example.org"]


@pytest.mark.parametrize("line", ["\x00\x01garbage", "INVITE\tsip:b@h SIP/2.0", "", "SIP/2.0"])
def test_unreadable_start_line(line: str) -> None:
    data = invite().replace(b"INVITE sip:bob@example.com SIP/2.0", line.encode(), 1)
    err = raises(data)
    assert err.message is None or not isinstance(err.message, SipMessage) or not err.message.method


@pytest.mark.parametrize("line", [
    "SIP/2.0 1000 Too Big", "SIP/2.0 099 Too Small", "SIP/2.0 700 Out of range", "SIP/2.0 20 OK",
    "SIP/2.0 200", "SIP/2.1 200 OK", "SIP/2.0  200 OK",
])
def test_bad_status_line_is_dropped(line: str) -> None:
    data = sip(line, "Via: SIP/2.0/UDP h;branch=z9hG4bKx", "From: <sip:a@h>;tag=1", "To: <sip:b@h>;tag=2",
               "Call-ID: c@h", "CSeq: 1 INVITE")
    assert raises(data).drop


def test_errors_in_responses_are_dropped() -> None:
    base = ["SIP/2.0 200 OK", "Via: SIP/2.0/UDP h;branch=z9hG4bKx", "From: <sip:a@h>;tag=1",
            "To: <sip:b@h>;tag=2", "Call-ID: c@h", "CSeq: 1 INVITE"]
    for i, bad in ((1, "Via: nonsense"), (5, "CSeq: x INVITE"), (3, 'To: "open <sip:b@h>')):
        lines = list(base)
        lines[i] = bad
        assert raises(sip(*lines)).drop


# -- Content-Length and size limits --------------------------------------------------------------------

def test_udp_short_body_is_400() -> None:
    err = raises(invite(body=BODY, content_length=len(BODY) + 1))
    assert err.reason == "Content-Length larger than the message body"
    assert isinstance(err.message, SipMessage)


def test_udp_extra_octets_are_ignored() -> None:
    msg = parse_message(invite(body=BODY + b"garbage after the body", content_length=len(BODY)))
    assert msg.body == BODY


def test_udp_no_content_length_body_runs_to_the_end() -> None:
    assert parse_message(invite(body=BODY, content_length=None)).body == BODY


def test_stream_needs_content_length_with_a_body() -> None:
    raises(invite(body=BODY, content_length=None), stream=True)
    assert parse_message(invite(content_length=None), stream=True).body == b""


@pytest.mark.parametrize("value", ["-1", "1.5", "x", "", "١", "1 2", "0x10"])
def test_malformed_content_length(value: str) -> None:
    assert raises(invite(content_length=None).replace(b"\r\n\r\n", f"\r\nContent-Length: {value}\r\n\r\n".encode()))


def test_huge_content_length_is_400_not_a_crash() -> None:
    data = invite(content_length=None).replace(b"\r\n\r\n", b"\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
    assert raises(data).reason == "Content-Length larger than the message body"
    data = invite(content_length=None).replace(b"\r\n\r\n", b"\r\nContent-Length: " + b"0" * 5000 + b"\r\n\r\n")
    assert parse_message(data).body == b""


def test_size_limit_is_513() -> None:
    data = invite(body=b"x" * 2000)
    assert parse_message(data, max_size=len(data)).body == b"x" * 2000
    err = raises(data, 513, max_size=len(data) - 1)
    assert err.message is None
    raises(invite(body=b"x" * 70000), 513)  # the default: the largest UDP datagram


# -- pathological inputs stay linear (regular expressions that backtrack are a one-packet DoS) ----------

@pytest.mark.parametrize("data", [
    invite().replace(b"From: \"Alice\" ", b"From: " + b"a" * 60000 + b",", 1),
    invite().replace(b"From: \"Alice\" ", b"From: " + b"a " * 30000 + b",", 1),
    invite().replace(b"INVITE sip:bob@example.com ", b"INVITE sip:bob@example.com?" + b"a" * 60000 + b"\x01 ", 1),
    invite().replace(b"To: Bob <sip:bob@example.com>", b"To: <sip:b@h?" + b"a" * 60000 + b"\x01>", 1),
    invite("Contact: " + "<sip:a@h>;p" * 5000 + ";;"),
    invite("Via: SIP/2.0/UDP " + "a." * 30000 + "!"),
])
def test_no_catastrophic_backtracking(data: bytes) -> None:
    started = time.perf_counter()
    try:
        msg = parse_message(data, max_size=len(data))
        msg.to.parsed_uri  # noqa: B018
        msg.contacts()
        msg.vias  # noqa: B018
    except SipError:
        pass
    assert time.perf_counter() - started < 0.5


# -- URIs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b"), [
    # RFC 3261 section 19.1.4: equivalent URIs.
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ("sip:a@h;%6C%72;n%61me=v%61lue", "sip:a@h;lr;name=VALUE"),
])
def test_uri_equivalent(a: str, b: str) -> None:
    assert parse_uri(a).equals(parse_uri(b)) and parse_uri(b).equals(parse_uri(a))


@pytest.mark.parametrize(("a", "b"), [
    # RFC 3261 section 19.1.4: URIs that are not equivalent.
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:h.x", "sip:user@h.x"),
    ("sip:a@h;maddr=1.2.3.4", "sip:a@h"),
    ("sip:a@h;user=phone", "sip:a@h"),
    ("sip:a@h", "sips:a@h"),
    ("sip:a@h;%6C%72=1", "sip:a@h;lr=2"),
])
def test_uri_not_equivalent(a: str, b: str) -> None:
    assert not parse_uri(a).equals(parse_uri(b)) and not parse_uri(b).equals(parse_uri(a))


@pytest.mark.parametrize("text", [
    "sip:", "sip:@h", "sip:a@", "sip:a@h:99999", "sip:a@h:x", "sip:a b@h", "sip:a@h%", "sip:a@h;p=%zz",
    "sip:a@1.2.3", "<sip:a@h>", "nocolon", "sip:a@[::1", "sip:a@h?", ":opaque",
])
def test_uri_malformed(text: str) -> None:
    with pytest.raises(SipError):
        parse_uri(text)


def test_uri_parts() -> None:
    uri = parse_uri("sips:user:pw@Host.Example.com:5061;transport=TLS;lr;x=1?subject=hi&h=1")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == ("sips", "user", "pw", "host.example.com", 5061)
    assert uri.params == {"transport": "TLS", "lr": None, "x": "1"} and uri.transport == "tls"
    assert uri.headers == "subject=hi&h=1"
    other = parse_uri("urn:service:sos")
    assert (other.scheme, other.opaque, other.is_sip) == ("urn", "service:sos", False)
    assert unescape("%e2%82%ac%ff") == "\u20ac\udcff"  # undecodable octets survive as surrogates
    assert unescape("\udcff%41") == "\udcffA"


# -- building responses (RFC 3261 section 8.2.6) -------------------------------------------------------

def _request() -> SipMessage:
    return parse_message(invite(
        "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1",
        "Timestamp: 54.3 0.2",
        "Record-Route: <sip:proxy.example.com;lr>",
    ))


def test_response_for_copies_the_fields() -> None:
    req = _request()
    resp = response_for(req, 486, "Busy Here", to_tag="t1", headers=[("Retry-After", "30")])
    assert (resp.status, resp.reason) == (486, "Busy Here")
    assert resp.headers["via"] == req.headers["via"]  # all of them, in order
    assert resp.headers["from"] == req.headers["from"]
    assert resp.headers["call-id"] == req.headers["call-id"]
    assert resp.headers["cseq"] == req.headers["cseq"]
    assert resp.headers["to"] == ["Bob <sip:bob@example.com>;tag=t1"]
    assert "timestamp" not in resp.headers and "record-route" not in resp.headers
    assert resp.get("retry-after") == "30"
    again = parse_message(resp.to_bytes())
    assert again.to.tag == "t1" and again.call_id == req.call_id and again.cseq_num == req.cseq_num
    assert [v.raw for v in again.vias] == [v.raw for v in req.vias]


def test_100_trying_has_no_tag_and_copies_timestamp() -> None:
    req = _request()
    trying = response_for(req, 100, "Trying", to_tag="t1")
    assert trying.headers["to"] == ["Bob <sip:bob@example.com>"]
    assert trying.headers["timestamp"] == ["54.3 0.2"]  # RFC 3261 section 8.2.6.1
    ringing = response_for(req, 180, "Ringing", to_tag="t1")
    assert ringing.to.tag == "t1" and "timestamp" not in ringing.headers


def test_response_for_keeps_an_existing_to_tag() -> None:
    to = b"To: Bob <sip:bob@example.com>"
    req = parse_message(invite().replace(to, to + b"\t;\tTAG=abc"))
    resp = response_for(req, 200, "OK", to_tag="new")
    assert resp.headers["to"] == req.headers["to"] and resp.to.tag == "abc"


def test_a_tag_uri_parameter_is_not_a_to_tag() -> None:
    req = parse_message(invite().replace(b"To: Bob <sip:bob@example.com>", b"To: <sip:bob@example.com;tag=uri>"))
    resp = response_for(req, 404, "Not Found", to_tag="t9")
    assert resp.to.tag == "t9"


def test_response_for_a_broken_to() -> None:
    # The transport answers parse errors with response_for on the partly parsed message.
    err = raises(invite().replace(b"To: Bob <sip:bob@example.com>", b'To: "Bob <sip:bob@example.com>'))
    assert isinstance(err.message, SipMessage)
    resp = response_for(err.message, 400, err.reason, to_tag="e1")
    assert resp.headers["to"] == ['"Bob <sip:bob@example.com>;tag=e1']
    resp.to_bytes()


# -- serialization ----------------------------------------------------------------------------------------

def _same(a: SipMessage, b: SipMessage) -> None:
    assert (a.method, a.uri, a.status, a.reason, a.body) == (b.method, b.uri, b.status, b.reason, b.body)
    assert {k: v for k, v in a.headers.items() if k != "content-length"} == \
        {k: v for k, v in b.headers.items() if k != "content-length"}
    assert (a.call_id, a.cseq_num, a.cseq_method) == (b.call_id, b.cseq_num, b.cseq_method)
    assert a.max_forwards == b.max_forwards
    assert str(a.from_) == str(b.from_) and str(a.to) == str(b.to)


@pytest.mark.parametrize("data", [
    invite(body=BODY),
    invite("v: SIP/2.0/TCP h2;branch=z9hG4bK9", "X-Odd-Name: \xe4\xf6 value".encode("utf-8", "surrogateescape").decode(
        "utf-8", "surrogateescape"), "Subject:", body=b"\x00\xff binary"),
    sip("SIP/2.0 200 \u00e7a marche", "Via: SIP/2.0/UDP h;branch=z9hG4bKx", "From: <sip:a@h>;tag=1",
        "To: <sip:b@h>;tag=2", "Call-ID: c@h", "CSeq: 1 INVITE"),
    b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: \"\xff\xfe\" <sip:a@h>;tag=1\r\n"
    b"To: <sip:b@h>\r\nCall-ID: c@h\r\nCSeq: 1 INVITE\r\nSubject: \xc3\x28 invalid utf-8\r\nContent-Length: 0\r\n\r\n",
])
def test_round_trip(data: bytes) -> None:
    msg = parse_message(data)
    out = msg.to_bytes()
    _same(parse_message(out), msg)
    assert parse_message(out).to_bytes() == out  # a fixed point after one pass


def test_built_message_round_trip() -> None:
    msg = SipMessage.request("OPTIONS", "sip:b@h", [
        ("Via", "SIP/2.0/UDP h;branch=z9hG4bKx"), ("From", "<sip:a@h>;tag=1"), ("To", "<sip:b@h>"),
        ("Call-ID", "c@h"), ("CSeq", "7 OPTIONS"), ("Max-Forwards", "70"), ("P-Custom", "x"),
    ])
    assert (msg.cseq_num, msg.call_id, msg.max_forwards) == (7, "c@h", 70)
    data = msg.to_bytes()
    assert b"\r\nP-Custom: x\r\n" in data and data.endswith(b"Content-Length: 0\r\n\r\n")
    _same(parse_message(data), msg)


def test_set_add_remove_get() -> None:
    msg = parse_message(invite())
    msg.add("Route", "<sip:r2;lr>")
    msg.add("route", "<sip:r1;lr>", first=True)
    assert msg.get_all("route") == ["<sip:r1;lr>", "<sip:r2;lr>"]
    msg.set("Subject", "x")
    msg.set("s", "y")
    assert msg.get_all("subject") == ["y"]
    msg.remove("Subject")
    assert msg.get("subject") is None
    msg.remove("Route")
    assert msg.get_all("route") == []
    assert msg.get("nonexistent") is None and msg.get_all("nonexistent") == []
