"""Codec names read from SDP for the CDR (switch/sip/sdp.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switch.sip.sdp import audio_codecs

OFFER = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         b"m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
         b"a=fmtp:101 0-16\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")


def test_voice_codecs_in_preference_order_without_dtmf() -> None:
    assert audio_codecs(OFFER) == "PCMA,PCMU"


def test_dynamic_payload_named_by_rtpmap() -> None:
    body = b"v=0\nm=audio 4000 RTP/AVP 111 9 13\na=rtpmap:111 opus/48000/2\n"
    assert audio_codecs(body) == "opus,G722"


def test_declined_stream_and_non_sdp_name_nothing() -> None:
    assert audio_codecs(b"v=0\r\nm=audio 0 RTP/AVP 0\r\n") == ""
    assert audio_codecs(b"") == ""
    assert audio_codecs(b"<xml/>") == ""


def test_first_active_audio_stream_is_used() -> None:
    body = b"m=audio 0 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    assert audio_codecs(body) == "G729"


def test_long_lists_are_cut_at_a_whole_name() -> None:
    fmts = " ".join(str(96 + i) for i in range(30)).encode()
    maps = b"".join(b"a=rtpmap:%d codec%02d/8000\r\n" % (96 + i, i) for i in range(30))
    out = audio_codecs(b"m=audio 4000 RTP/AVP " + fmts + b"\r\n" + maps)
    assert len(out) <= 64 and out.startswith("codec00,") and not out.endswith(",")
    assert all(name.startswith("codec") and len(name) == 7 for name in out.split(","))


@given(st.binary(max_size=400))
def test_never_raises(body: bytes) -> None:
    assert isinstance(audio_codecs(body), str)
