"""Fuzzing the parser and the stream framer: whatever a peer sends, only SipError comes out.

Any other exception escaping ``parse_message``, a typed accessor or ``StreamFramer.feed`` is a
bug (ARCHITECTURE.md, "two error kinds").  Inputs are random bytes and mutations of the RFC 4475
torture messages (byte flips, truncations, insertions of SIP-significant octets, line deletions
and duplications).  Budgets are bounded so that the file runs in about twenty seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switch.sip.errors import SipError
from switch.sip.framing import PING, StreamFramer
from switch.sip.message import SipMessage, parse_message, response_for

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
SEEDS: list[bytes] = [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]

# TRUNKLINE_FUZZ_SCALE=50 (say) runs a long campaign; the default keeps the file near 20 s.
_SCALE = float(os.environ.get("TRUNKLINE_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=int(7000 * _SCALE), deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_SMALL = settings(max_examples=int(2500 * _SCALE), deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Octets that mean something to a SIP parser.
SPECIAL = [b"\r\n", b"\r", b"\n", b"\r\n ", b"\r\n\r\n", b" ", b"\t", b":", b";", b",", b"=", b"<", b">",
           b'"', b"\\", b"%", b"%0", b"@", b"[", b"]", b"?", b"&", b"/", b"\x00", b"\xff", b"\xc3", b"SIP/2.0",
           b"sip:", b"z9hG4bK", b"0", b"9" * 12, b"-1", b"Content-Length: ", b"l: 99999\r\n", b"Via: ",
           b"\r\nContact: ", b"\r\nTo: <", b'\r\nFrom: "', b"tag=", b"branch=", b"\xef\xbb\xbf"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "del_line", "dup_line", "swap_lines"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        else:
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "del_line":
                del lines[i]
            elif op == "dup_line":
                lines.insert(i, lines[i])
            else:
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


def exercise(msg: SipMessage) -> None:
    """Read everything the layers above read; only SipError may come out of any of it."""
    for read in (
        lambda: msg.from_.parsed_uri,
        lambda: msg.to.parsed_uri,
        lambda: msg.vias,
        lambda: [c.parsed_uri for c in msg.contacts() if c.uri != "*"],
        lambda: msg.request_uri if msg.is_request else None,
        lambda: msg.request_uri.user_unescaped if msg.is_request else None,
        lambda: msg.content_type,
    ):
        with contextlib.suppress(SipError):
            read()
    for key in list(msg.headers):
        msg.get_all(key)
        msg.get(key)
    # Answering and relaying it must work too, and what we send must parse back the same.
    if msg.is_request:
        response_for(msg, 400, "Bad Request", to_tag="x").to_bytes()
    out = msg.to_bytes()
    again = parse_message(out, max_size=len(out))
    assert (again.method, again.uri, again.status, again.reason, again.body) == (
        msg.method, msg.uri, msg.status, msg.reason, msg.body)
    assert {k: v for k, v in again.headers.items() if k != "content-length"} == {
        k: v for k, v in msg.headers.items() if k != "content-length"}


def parse_or_refuse(data: bytes, *, stream: bool = False) -> SipMessage | None:
    try:
        msg = parse_message(data, stream=stream, max_size=max(len(data), 1))
    except SipError as err:
        assert 400 <= err.status <= 599
        if err.message is not None:
            assert isinstance(err.message, SipMessage)
            # The transport answers these: building the answer must not fail either.
            if err.message.method and not err.drop:
                response_for(err.message, err.status, err.reason, to_tag="e").to_bytes()
        return None
    exercise(msg)
    return msg


def test_seeds_parse_or_refuse_cleanly() -> None:
    for seed in SEEDS:
        parse_or_refuse(seed)


@FUZZ_SMALL
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    parse_or_refuse(data)


@FUZZ_SMALL
@given(st.lists(st.sampled_from(SPECIAL) | st.binary(max_size=6), max_size=60))
def test_random_sip_shaped_bytes(parts: list[bytes]) -> None:
    parse_or_refuse(b"INVITE sip:a@b SIP/2.0\r\n" + b"".join(parts))
    parse_or_refuse(b"SIP/2.0 200 OK\r\n" + b"".join(parts))


@FUZZ
@given(mutated())
def test_mutated_torture_messages(data: bytes) -> None:
    parse_or_refuse(data)
    parse_or_refuse(data, stream=True)


# -- the framer ----------------------------------------------------------------------------------------

def frame(data: bytes, cuts: list[int]) -> list[object]:
    framer = StreamFramer(max_header=4096, max_body=4096)
    out: list[object] = []
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    for a, b in itertools.pairwise(bounds):
        out += framer.feed(data[a:b])
    return out


def comparable(items: list[object]) -> list[object]:
    out: list[object] = []
    for item in items:
        if isinstance(item, SipError):
            out.append(("error", item.status, item.reason, item.message))
        else:
            assert item is PING or isinstance(item, bytes)
            out.append(item)
    return out


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(
        mutated() | st.sampled_from(SEEDS) | st.sampled_from([b"\r\n\r\n", b"\r\n", b"\n", b"\r"])
        | st.binary(max_size=40),
        min_size=1, max_size=5,
    ))
    return b"".join(parts)


@FUZZ_SMALL
@given(streams(), st.lists(st.integers(0, 20000), max_size=12))
def test_framer_is_independent_of_chunking(data: bytes, cuts: list[int]) -> None:
    whole = comparable(frame(data, []))
    assert comparable(frame(data, cuts)) == whole
    errors = [item for item in whole if isinstance(item, tuple)]
    assert len(errors) <= 1 and (not errors or whole[-1] is errors[0])
    for item in whole:
        if isinstance(item, bytes):
            msg = parse_or_refuse(item, stream=True)
            if msg is not None:
                # The parser sees the message the framer cut: its body ends the item exactly.
                head = item[: len(item) - len(msg.body)]
                assert head.endswith((b"\r\n\r\n", b"\n\n")), item


@settings(max_examples=int(250 * _SCALE), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_framer_byte_by_byte(data: bytes) -> None:
    assert comparable(frame(data, list(range(1, len(data))))) == comparable(frame(data, []))
