"""Micro-benchmark of the SIP parser and response builder on the switch's hot path.

Run: ``.venv/bin/python -m benchmarks.bench_parser [--quick]``.  Prints the best of several
repeats in microseconds per operation (the best is the least disturbed by the rest of the machine).
The messages are the ones the switch sees most: a SIPp INVITE with SDP, a 200 OK with SDP, a
100 Trying and a REGISTER with Authorization; plus building a 200 OK with response_for().
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from switch.sip.message import parse_message, response_for


def _msg(head: str, body: str = "") -> bytes:
    """CRLF line ends, and the right Content-Length for ``body``."""
    body_b = body.replace("\n", "\r\n").encode()
    head_b = head.strip("\n").replace("\n", "\r\n").encode()
    return head_b + b"\r\nContent-Length: %d\r\n\r\n" % len(body_b) + body_b


_SDP = """v=0
o=user1 53655765 2353687637 IN IP4 10.0.0.20
s=-
c=IN IP4 10.0.0.20
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""

INVITE = _msg("""INVITE sip:1001@10.0.0.10:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.20:5061;branch=z9hG4bK-26417-1-0
From: sipp <sip:sipp@10.0.0.20:5061>;tag=26417SIPpTag001
To: 1001 <sip:1001@10.0.0.10:5060>
Call-ID: 1-26417@10.0.0.20
CSeq: 1 INVITE
Contact: sip:sipp@10.0.0.20:5061
Max-Forwards: 70
Subject: Performance Test
Content-Type: application/sdp
""", _SDP)

OK_200 = _msg("""SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bK1a2b3c4d.1f;rport=5060
Record-Route: <sip:10.0.0.10;lr>
From: <sip:2000@10.0.0.10>;tag=8f3e2a1b7
To: <sip:1001@10.0.0.30:5060>;tag=as5e3c9d1a
Call-ID: 8f3e2a1b-1@trunkline
CSeq: 1 INVITE
Contact: <sip:1001@10.0.0.30:5060>
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO
Supported: replaces, timer
Server: Asterisk PBX 18.0.0
Content-Type: application/sdp
""", _SDP)

TRYING = _msg("""SIP/2.0 100 Trying
Via: SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bK1a2b3c4d.1f;rport=5060
From: <sip:2000@10.0.0.10>;tag=8f3e2a1b7
To: <sip:1001@10.0.0.30:5060>
Call-ID: 8f3e2a1b-1@trunkline
CSeq: 1 INVITE
""")

REGISTER = _msg("""REGISTER sip:pbx.example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-524287-1---5a1c6e2b9e3f4d0a;rport
Max-Forwards: 70
Contact: <sip:alice@192.168.1.50:5060;rinstance=8d2f1a3c5b7e9f01;transport=UDP>
To: "Alice" <sip:alice@pbx.example.com>
From: "Alice" <sip:alice@pbx.example.com>;tag=7c1f3a2b
Call-ID: ZDk0ZTBjMWE2NmZlNzQ2YjM5ZGE1OGE4ZjI2ZDk4NjE
CSeq: 2 REGISTER
Expires: 3600
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE
Supported: replaces, norefersub, extended-refer, timer, outbound, path, X-cisco-serviceuri
User-Agent: Z 5.6.1 v2.10.19.9
Authorization: Digest username="alice",realm="pbx.example.com",nonce="5f8e2a1b3c4d5e6f7a8b9c0d1e2f3a4b",\
uri="sip:pbx.example.com",response="0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",cnonce="a1b2c3d4",nc=00000001,qop=auth,\
algorithm=MD5
Allow-Events: presence, kpml, talk
""")


def _bench(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Best time per call in microseconds."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = ap.parse_args()
    number, repeat = (500, 3) if args.quick else (20000, 7)

    # Every fixture must parse: a benchmark of an error path would measure the wrong thing.
    invite = parse_message(INVITE)
    for data in (OK_200, TRYING, REGISTER):
        parse_message(data)
    assert invite.body and invite.to.tag is None

    cases: list[tuple[str, Callable[[], object]]] = [
        ("parse INVITE (SIPp, SDP)", lambda: parse_message(INVITE)),
        ("parse 200 OK (SDP)", lambda: parse_message(OK_200)),
        ("parse 100 Trying", lambda: parse_message(TRYING)),
        ("parse REGISTER (Authorization)", lambda: parse_message(REGISTER)),
        ("response_for(INVITE, 200).to_bytes()",
         lambda: response_for(invite, 200, "OK", to_tag="a1b2c3",
                              headers=[("Contact", "<sip:trunkline@10.0.0.10:5060>")]).to_bytes()),
        ("parse INVITE + read from_/to/vias/contacts/request_uri",
         lambda: _parse_and_read(INVITE)),
    ]
    width = max(len(name) for name, _ in cases)
    results: dict[str, float] = {}
    for name, fn in cases:
        results[name] = _bench(fn, number, repeat)
        print(f"{name:<{width}}  {results[name]:7.2f} µs/op")
    # The switch's target: 1000 calls/s, 14 messages per call, all parsed in one process.
    parses = [results[name] for name, _ in cases[:4]]
    per_second = 1000 * 14 * sum(parses) / len(parses) / 1e6
    print(f"parsing at 1000 calls/s x 14 messages: about {per_second * 100:.0f}% of one core")


def _parse_and_read(data: bytes) -> object:
    msg = parse_message(data)
    return (msg.from_.parsed_uri, msg.to.parsed_uri, msg.vias, msg.contacts(), msg.request_uri)


if __name__ == "__main__":
    main()
