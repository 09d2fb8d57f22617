"""StreamFramer: cutting SIP messages out of a TCP byte stream (RFC 3261 section 18.3)."""

from __future__ import annotations

import random
import time

import pytest

from switch.sip.errors import SipError
from switch.sip.framing import PING, StreamFramer
from switch.sip.message import parse_message

BODY = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def request(n: int, body: bytes = BODY, *, cl_line: str | None = None) -> bytes:
    cl = f"Content-Length: {len(body)}" if cl_line is None else cl_line
    head = (
        f"INVITE sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK{n}\r\n"
        f"From: <sip:alice@example.org>;tag={n}\r\n"
        f"To: <sip:bob@example.com>\r\n"
        f"Call-ID: call-{n}@example.org\r\n"
        f"CSeq: {n} INVITE\r\n"
        f"Max-Forwards: 70\r\n"
    )
    if cl:
        head += cl + "\r\n"
    return head.encode() + b"\r\n" + body


STREAM = [request(1), request(2, b""), request(3, b"x" * 1000), request(4)]


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def split_randomly(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 30)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_one_message() -> None:
    framer = StreamFramer()
    assert framer.feed(request(1)) == [request(1)]
    assert framer.pending == 0 and not framer.broken


def test_several_messages_in_one_chunk() -> None:
    assert StreamFramer().feed(b"".join(STREAM)) == STREAM


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    data = b"".join(STREAM)
    out = feed_all(framer, [data[i:i + 1] for i in range(len(data))])
    assert out == STREAM and framer.pending == 0


@pytest.mark.parametrize("seed", range(20))
def test_arbitrary_chunk_boundaries(seed: int) -> None:
    rng = random.Random(seed)
    data = b"\r\n\r\n".join(STREAM)  # keep-alive pings between messages too
    out = feed_all(StreamFramer(), split_randomly(data, rng))
    assert out == [STREAM[0], PING, STREAM[1], PING, STREAM[2], PING, STREAM[3]]


def test_messages_parse_as_stream_messages() -> None:
    for item in StreamFramer().feed(b"".join(STREAM)):
        assert isinstance(item, bytes)
        msg = parse_message(item, stream=True)
        assert msg.method == "INVITE"
    assert parse_message(STREAM[2], stream=True).body == b"x" * 1000


def test_keepalive_ping() -> None:
    # RFC 5626 section 4.4.1: CRLFCRLF is a ping (the caller answers CRLF).
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [PING]
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [PING, PING]
    assert framer.feed(b"\r\n") == []  # maybe the start of a ping: wait
    assert framer.feed(b"\r\n") == [PING]
    assert framer.pending == 0


def test_leading_crlfs_before_a_message() -> None:
    framer = StreamFramer()
    # A pong (single CRLF) and stray line ends are skipped; they are no message.
    assert framer.feed(b"\r\n") == []
    assert framer.feed(request(1)) == [request(1)]
    assert framer.feed(b"\n\r\n" + request(2)) == [request(2)]
    assert framer.feed(b"\r\n\r\n" + request(3)) == [PING, request(3)]


def test_missing_content_length_means_no_body() -> None:
    data = request(5, b"", cl_line="")
    assert b"Content-Length" not in data
    framer = StreamFramer()
    assert framer.feed(data + request(6)) == [data, request(6)]
    assert parse_message(data, stream=True).body == b""


@pytest.mark.parametrize("cl_line", ["l: 87", "CONTENT-LENGTH: 87", "content-length   :   87  ",
                                     "Content-Length:\r\n  87", "Content-Length: 0087"])
def test_content_length_spellings(cl_line: str) -> None:
    assert len(BODY) == 87
    data = request(7, cl_line=cl_line)
    framer = StreamFramer()
    assert framer.feed(data + request(8)) == [data, request(8)]
    assert parse_message(data, stream=True).body == BODY


def test_content_length_is_only_read_at_line_start() -> None:
    data = request(9, cl_line="X-Content-Length: 5\r\nSubject: l: 7\r\nContent-Length: 87")
    assert StreamFramer().feed(data) == [data]


def test_incomplete_message_waits() -> None:
    framer = StreamFramer()
    data = request(1)
    assert framer.feed(data[:-1]) == []
    assert framer.pending == len(data) - 1
    assert framer.feed(data[-1:]) == [data]


def test_header_over_limit_is_513() -> None:
    framer = StreamFramer(max_header=1000)
    out = framer.feed(b"INVITE sip:b@h SIP/2.0\r\nSubject: " + b"x" * 2000)
    assert len(out) == 1 and isinstance(out[0], SipError) and out[0].status == 513
    assert framer.broken


def test_complete_header_over_limit_is_513() -> None:
    framer = StreamFramer(max_header=200)
    (err,) = framer.feed(request(1))
    assert isinstance(err, SipError) and err.status == 513


def test_header_limit_counts_the_whole_head() -> None:
    data = request(1)
    head_len = data.index(b"\r\n\r\n") + 4
    assert StreamFramer(max_header=head_len).feed(data) == [data]


def test_body_over_limit_is_413() -> None:
    framer = StreamFramer(max_body=100)
    assert framer.feed(request(1, b"x" * 100)) == [request(1, b"x" * 100)]
    out = framer.feed(request(2, b"x" * 101))
    assert len(out) == 1 and isinstance(out[0], SipError) and out[0].status == 413
    # The head is kept on the error so that the caller can answer before closing.
    assert isinstance(out[0].message, bytes) and out[0].message.startswith(b"INVITE sip:bob@example.com")


@pytest.mark.parametrize("cl_line", ["Content-Length: -1", "Content-Length: abc", "Content-Length: 1 2",
                                     "Content-Length:", "l: 0x10", "Content-Length: \u0661".encode().decode("latin-1")])
def test_malformed_content_length_breaks_the_stream(cl_line: str) -> None:
    framer = StreamFramer()
    out = framer.feed(request(1) + request(2, cl_line=cl_line) + request(3))
    assert out[0] == request(1)
    assert len(out) == 2 and isinstance(out[1], SipError) and out[1].status == 400
    assert framer.broken
    # A broken framer stays broken: the stream can no longer be trusted to be in sync.
    assert framer.feed(request(4)) == []
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.pending == 0


def test_two_content_lengths_break_the_stream() -> None:
    # RFC 4475 section 3.3.9: the message boundary is unknowable.
    framer = StreamFramer()
    (err,) = framer.feed(request(1, cl_line="Content-Length: 87\r\nl: 5"))
    assert isinstance(err, SipError) and err.status == 400 and framer.broken


def test_huge_content_length_is_413_not_a_crash() -> None:
    framer = StreamFramer()
    (err,) = framer.feed(request(1, cl_line="Content-Length: " + "9" * 5000))
    assert isinstance(err, SipError) and err.status == 413
    framer = StreamFramer()
    data = request(1, b"", cl_line="Content-Length: " + "0" * 5000)
    assert framer.feed(data) == [data]


def test_slow_sender_is_not_quadratic() -> None:
    # A head arriving one octet at a time is searched once, not once per octet.
    data = b"INVITE sip:b@h SIP/2.0\r\nSubject: " + b"x" * 60000
    framer = StreamFramer()
    started = time.perf_counter()
    for i in range(len(data)):
        assert framer.feed(data[i:i + 1]) == []
    assert time.perf_counter() - started < 2.0
    (err,) = framer.feed(b"x" * 6000)
    assert isinstance(err, SipError) and err.status == 513


def test_bare_lf_messages_are_framed_like_the_parser_reads_them() -> None:
    head1, _, body1 = request(1).partition(b"\r\n\r\n")
    lf1 = head1.replace(b"\r\n", b"\n") + b"\n\n" + body1
    body = b"a\r\n\r\nb"  # a CRLF CRLF in the body does not end the head
    head = request(2, b"").split(b"\r\n\r\n")[0].replace(b"Content-Length: 0", b"Content-Length: 6")
    lf2 = head.replace(b"\r\n", b"\n") + b"\n\n" + body
    assert StreamFramer().feed(lf1 + lf2 + request(3)) == [lf1, lf2, request(3)]
    assert parse_message(lf2, stream=True).body == body


def test_content_length_name_folded_before_the_colon() -> None:
    data = request(4, cl_line="Content-Length\r\n  : 87")
    assert StreamFramer().feed(data + request(5)) == [data, request(5)]
    assert parse_message(data, stream=True).body == BODY


def test_stray_lf_before_a_ping_is_the_same_in_any_chunking() -> None:
    data = b"\n\r\n\r\n" + request(1)
    whole = StreamFramer().feed(data)
    assert whole == [PING, request(1)]
    assert feed_all(StreamFramer(), [data[i:i + 1] for i in range(len(data))]) == whole
