"""The 49 RFC 4475 torture messages at the parser level, one test case per manifest row.

`valid` messages parse (and their tricky fields come out right), `invalid` ones raise SipError
with the status the manifest names (or ``drop`` for responses, which cannot be answered), and
`semantic` ones parse where they are well-formed: the switch core decides the rest (416, 420,
415, 406, 483 ... are tested end to end elsewhere).  Two invalid messages are the parser's
choice: baddate may parse (ignoring a bad Date is allowed) and regbadct parses, its Contact
being refused when read (``msg.contacts()``), which is where the registrar reads it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from switch.sip.errors import SipError
from switch.sip.message import SipMessage, parse_message
from switch.sip.uri import parse_uri

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
WHAT = "what a receiving element does"

with (DATA / "MANIFEST.csv").open(newline="") as _f:
    ROWS: list[dict[str, str]] = list(csv.DictReader(_f))

# Semantic messages that are malformed at the parser's level (RFC 4475 sections 3.3.1, 3.3.8, 3.3.9).
SEMANTIC_400 = {"insuf.dat", "multi01.dat", "mcl01.dat"}


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_manifest_has_every_message() -> None:
    assert len(ROWS) == 49
    files = {row["file"] for row in ROWS}
    assert len(files) == 49
    assert files == {p.name for p in DATA.glob("*.dat")}
    assert {row["class"] for row in ROWS} == {"valid", "invalid", "semantic"}


# -- field checks for the messages whose point is a tricky field ---------------------------------

def check_wsinv(msg: SipMessage) -> None:
    # 3.1.1.1: folding, LWS around colons and slashes, odd case and leading zeros.
    assert msg.method == "INVITE"
    assert msg.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert msg.to.tag == "1918181833n"
    assert msg.to.parsed_uri.user == "vivekg"
    assert msg.from_.display == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    assert (msg.cseq_num, msg.cseq_method) == (9, "INVITE")
    assert msg.max_forwards == 68
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert msg.via is not None
    assert (msg.via.transport, msg.via.host, msg.via.branch) == ("UDP", "192.0.2.2", "390skdjuw")
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.get("subject") == ""
    assert msg.get("newfangledheader") == "newfangled value continued newfangled value"
    assert msg.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    assert msg.get_all("route") == ["<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"]
    (contact,) = msg.contacts()
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(msg.body) == 150 and msg.body.startswith(b"v=0\r\n")


def check_intmeth(msg: SipMessage) -> None:
    # 3.1.1.2: every token character in the method, a URI with a user part full of odd characters.
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.method == method and msg.cseq_method == method
    uri = msg.request_uri
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.via is not None and msg.via.branch == "z9hG4bK-.!%66*_+`'~"
    value = msg.get("extensionheader-!.%*+_`'~")
    assert value is not None and value.encode() == b"\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb"
    assert msg.body == b""


def check_esc01(msg: SipMessage) -> None:
    # 3.1.1.3: escaped and unescaped forms of the same URI compare equal (RFC 3261 19.1.4).
    assert msg.request_uri.user == "sips%3Auser%40example.com"
    assert msg.request_uri.user_unescaped == "sips:user@example.com"
    assert msg.to.parsed_uri.equals(parse_uri("sip:user@example.com"))
    assert msg.from_.parsed_uri.equals(parse_uri("sip:I%20have%20spaces@example.net"))
    assert msg.from_.parsed_uri.user_unescaped == "I have spaces"
    (contact,) = msg.contacts()
    assert contact.parsed_uri.equals(parse_uri("sip:caller@host5.example.net;lr;name=value%25%34%31"))
    assert contact.parsed_uri.equals(parse_uri("sip:caller@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"))
    assert not contact.parsed_uri.equals(parse_uri("sip:caller@host5.example.net;lr;name=valueA"))
    assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # compact "i"
    assert msg.content_type == "application/sdp"  # compact "C", upper case
    assert len(msg.body) == 150


def check_escnull(msg: SipMessage) -> None:
    # 3.1.1.4: %00 in a user part is legal and decodes to NUL.
    assert msg.to.parsed_uri.user_unescaped == "null-\x00-null"
    assert [c.parsed_uri.user_unescaped for c in msg.contacts()] == ["\x00", "\x00\x00"]


def check_esc02(msg: SipMessage) -> None:
    # 3.1.1.5: % in a method, a quoted display name and a branch is no escape; "C%6Fntact" is
    # an unknown header field, not Contact.
    assert msg.method == "RE%47IST%45R" and msg.cseq_method == "RE%47IST%45R"
    assert msg.to.display == "%Z%45"
    assert [c.uri for c in msg.contacts()] == ["sip:alias1@host1.example.com", "sip:alias3@host3.example.com"]
    assert msg.get("c%6fntact") == "<sip:alias2@host2.example.com>"
    assert msg.via is not None and msg.via.branch == "z9hG4bK209%fzsnel234"


def check_lwsdisp(msg: SipMessage) -> None:
    assert msg.from_.display == "caller"
    assert msg.from_.uri == "sip:caller@example.com"
    assert msg.from_.tag == "323"


def check_longreq(msg: SipMessage) -> None:
    # 3.1.1.7: long values everywhere.
    assert msg.to.display is not None and msg.to.display.endswith("extreme proportion")
    assert msg.to.tag is None
    assert len(msg.to.parsed_uri.params) == 3
    assert len(msg.from_.tag or "") > 100
    assert len(msg.from_.params) == 3
    vias = msg.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:3]] == ["sip33.example.com", "sip32.example.com", "sip31.example.com"]
    assert len(vias[-1].branch or "") > 100
    assert len(msg.call_id) > 100
    assert msg.request_uri.host == "example.com"
    long_name = "Unknown-" + "Long" * 20 + "-Name"
    assert msg.get(long_name.lower()) == msg.get(long_name) is not None
    assert msg.names[long_name.lower()] == long_name  # the spelling is kept for relaying
    (contact,) = msg.contacts()
    assert contact.parsed_uri.user is not None and len(contact.parsed_uri.user) > 100


def check_dblreq(msg: SipMessage) -> None:
    # 3.1.1.8: only the first request; the second one in the datagram is ignored.
    assert msg.method == "REGISTER"
    assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"  # compact "I"
    assert msg.body == b""


def check_semiuri(msg: SipMessage) -> None:
    # 3.1.1.9: the ";" belongs to the user part; the Request-URI has no parameters.
    uri = msg.request_uri
    assert uri.user == "user;par=u%40example.net"
    assert uri.host == "example.com"
    assert uri.params == {}
    assert msg.get_all("accept") == ["application/sdp", "application/pkcs7-mime", "multipart/mixed",
                                     "multipart/signed", "message/sip", "message/sipfrag"]


def check_transports(msg: SipMessage) -> None:
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def check_mpart01(msg: SipMessage) -> None:
    # 3.1.1.11: a binary multipart body, its length given by Content-Length.
    assert msg.content_type == "multipart/mixed"
    assert len(msg.body) == int(msg.get("content-length") or "") == 553
    assert msg.body.startswith(b"--7a9cbec02ceef655\r\n")
    assert msg.body.endswith(b"--7a9cbec02ceef655--\r\n")


def check_unreason(msg: SipMessage) -> None:
    # 3.1.1.12: a UTF-8 reason phrase.
    assert msg.status == 200
    assert msg.reason == "= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435"  # noqa: E501
    assert msg.reason.encode() in load("unreason.dat")


def check_noreason(msg: SipMessage) -> None:
    assert (msg.status, msg.reason) == (100, "")


def check_inv2543(msg: SipMessage) -> None:
    # 3.4.1: RFC 2543 syntax: no branch, no Max-Forwards, no Content-Length (body to the end).
    assert msg.max_forwards is None
    assert msg.get("content-length") is None
    assert msg.via is not None and msg.via.branch is None and not msg.via.rfc3261_branch
    assert msg.body.startswith(b"v=0") and msg.body.endswith(b"RTP/AVP 0\r\n")
    # Without <>, ";user=phone" is a To header parameter under RFC 3261 (section 20.10).
    assert msg.to.uri == "sip:+16505552222@ss1.example.net"
    assert msg.to.params == {"user": "phone"}
    assert msg.from_.parsed_uri.params == {"user": "phone"}
    assert msg.from_.tag is None


def check_badbranch(msg: SipMessage) -> None:
    # 3.2.1: the bare magic cookie is not an RFC 3261 branch (the transaction layer falls back).
    assert msg.via is not None and msg.via.branch == "z9hG4bK" and not msg.via.rfc3261_branch


def check_baddate(msg: SipMessage) -> None:
    assert msg.get("date") == "Fri, 01 Jan 2010 16:00:00 EST"


def check_regbadct(msg: SipMessage) -> None:
    # 3.1.2.13: a URI with "?" outside <> is a 400, raised where the Contact is read.
    with pytest.raises(SipError) as exc:
        msg.contacts()
    assert exc.value.status == 400


def check_unkscm(msg: SipMessage) -> None:
    uri = msg.request_uri
    assert (uri.scheme, uri.is_sip, uri.opaque) == ("nobodyknowsthisscheme", False, "totallyopaquecontent")


def check_novelsc(msg: SipMessage) -> None:
    assert msg.request_uri.scheme == "soap.beep"


def check_unksm2(msg: SipMessage) -> None:
    assert msg.to.parsed_uri.scheme == "isbn"
    assert msg.from_.parsed_uri.scheme == "http"
    assert [c.parsed_uri.scheme for c in msg.contacts()] == ["name"]


def check_bext01(msg: SipMessage) -> None:
    assert msg.get_all("require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert msg.get_all("proxy-require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]


def check_zeromf(msg: SipMessage) -> None:
    assert msg.max_forwards == 0


def check_cparam01(msg: SipMessage) -> None:
    # 3.3.12: without <>, ";unknownparam" is a Contact header parameter.
    (contact,) = msg.contacts()
    assert contact.uri == "sip:+19725552222@gw1.example.net"
    assert contact.params == {"unknownparam": None}
    assert contact.parsed_uri.params == {}


def check_cparam02(msg: SipMessage) -> None:
    # 3.3.13: inside <>, it is a URI parameter.
    (contact,) = msg.contacts()
    assert contact.params == {}
    assert contact.parsed_uri.params == {"unknownparam": None}


def check_regescrt(msg: SipMessage) -> None:
    # 3.3.14: an escaped header inside <> is part of the Contact URI (compact "M", "L").
    (contact,) = msg.contacts()
    assert contact.parsed_uri.headers == "Route=%3Csip:sip.example.com%3E"


def check_bcast(msg: SipMessage) -> None:
    assert msg.status == 200
    assert [v.host for v in msg.vias] == ["192.0.2.198", "255.255.255.255"]


def check_regaut01(msg: SipMessage) -> None:
    assert (msg.get("authorization") or "").startswith("NoOneKnowsThisScheme")


def check_invut(msg: SipMessage) -> None:
    assert msg.content_type == "application/unknownformat"


def check_sdp01(msg: SipMessage) -> None:
    assert msg.get_all("accept") == ["text/nobodyKnowsThis"]


CHECKS: dict[str, Callable[[SipMessage], None]] = {
    name.removeprefix("check_") + ".dat": fn for name, fn in globals().items() if name.startswith("check_")
}


def test_every_check_names_a_manifest_file() -> None:
    assert set(CHECKS) <= {row["file"] for row in ROWS}


def expected(row: dict[str, str]) -> tuple[str, int | None]:
    """("parse", None), ("reject", status), ("drop", None) or ("either", 400) for a manifest row."""
    name, cls, what = row["file"], row["class"], row[WHAT]
    if name == "baddate.dat":
        return ("either", 400)  # "reject (400) or ignore the Date header"
    if name == "regbadct.dat":
        return ("parse", None)  # its Contact raises 400 when read (check_regbadct)
    if cls == "valid" or (cls == "semantic" and name not in SEMANTIC_400):
        return ("parse", None)
    if what.startswith("drop"):
        return ("drop", None)
    m = re.search(r"\((\d{3})", what)
    assert m is not None, what
    return ("reject", int(m.group(1)))


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_torture_message(row: dict[str, str]) -> None:
    name = row["file"]
    data = load(name)
    kind, status = expected(row)
    if kind == "parse" or (kind == "either" and _parses(data)):
        msg = parse_message(data)
        # The typed views every layer reads must be readable on every message that parses.
        assert msg.via is not None and msg.call_id and msg.cseq_method
        assert msg.from_ is not None and msg.to is not None
        if msg.is_request:
            assert msg.cseq_method == msg.method
        check = CHECKS.get(name)
        if check is not None:
            check(msg)
        if name != "regbadct.dat":
            msg.contacts()
            msg.vias  # noqa: B018
        return
    with pytest.raises(SipError) as exc:
        parse_message(data)
    err = exc.value
    if kind == "drop":
        # A malformed response cannot be answered (RFC 4475 sections 3.1.2.5, 3.1.2.19).
        assert err.drop
        return
    assert err.status == status, err
    assert not err.drop
    # A request refused with a status must still be answerable: the partly parsed message
    # carries the fields a response copies (RFC 3261 section 8.2.6.2) -- unless those are
    # exactly what is missing (insuf).
    partial = err.message
    assert isinstance(partial, SipMessage)
    assert partial.method
    if name != "insuf.dat":
        for key in ("via", "from", "to", "call-id", "cseq"):
            assert partial.headers.get(key), key


def _parses(data: bytes) -> bool:
    try:
        parse_message(data)
    except SipError as err:
        assert err.status == 400
        return False
    return True


# -- specific refusals: the reason must point at the real fault, not at a side effect ---------------

@pytest.mark.parametrize(("name", "reason"), [
    ("badinv01.dat", "Malformed header parameters"),
    ("clerr.dat", "Content-Length larger than the message body"),
    ("ncl.dat", "Malformed Content-Length"),
    ("scalar02.dat", "CSeq number too large"),
    ("quotbal.dat", "Unterminated quoted string"),
    ("ltgtruri.dat", "Request-URI must not be enclosed in <>"),
    ("lwsruri.dat", "Malformed Request-Line"),
    ("lwsstart.dat", "Malformed Request-Line"),
    ("trws.dat", "Malformed Request-Line"),
    ("escruri.dat", "Headers not allowed in the Request-URI"),
    ("badaspec.dat", "Malformed <addr-spec>"),
    ("baddn.dat", "Bad display name"),
    ("badvers.dat", "Version Not Supported"),
    ("mismatch01.dat", "CSeq method does not match the Request-Line"),
    ("mismatch02.dat", "CSeq method does not match the Request-Line"),
    ("insuf.dat", "Missing From header"),
    ("multi01.dat", "Multiple To values"),
    ("mcl01.dat", "Multiple Content-Length values"),
    ("scalarlg.dat", "CSeq number too large"),
    ("bigcode.dat", "Malformed Status-Line"),
])
def test_refusal_reason(name: str, reason: str) -> None:
    with pytest.raises(SipError) as exc:
        parse_message(load(name))
    assert exc.value.reason == reason


def test_clerr_on_a_stream_is_incomplete_not_malformed() -> None:
    # 3.1.2.2: on a stream the framer waits for the rest of the body instead.
    from switch.sip.framing import StreamFramer

    framer = StreamFramer()
    assert framer.feed(load("clerr.dat")) == []
    assert not framer.broken and framer.pending == len(load("clerr.dat"))
