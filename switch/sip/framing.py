"""Cutting SIP messages out of a byte stream (RFC 3261 section 18.3), sans-IO.

On TCP the Content-Length header is the only message boundary.  The framer also recognises the
RFC 5626 section 4.4.1 keep-alive: a double CRLF "ping" is answered with a single CRLF "pong".
A framing error (a header block or body over the limits, an unreadable Content-Length) leaves
the stream unsynchronised: the caller answers if it can and closes the connection.
"""

from __future__ import annotations

import re

from switch.sip.errors import SipError

# A keep-alive ping seen in the stream; the caller writes back b"\r\n" (RFC 5626 4.4.1).
PING = object()

# Content-Length (or its compact form "l") at the start of a header line; the colon and the
# value may be folded onto continuation lines (RFC 3261 section 7.3.1).
_CL_RE = re.compile(rb"\n(?:content-length|l)(?:[ \t]|\r?\n[ \t])*:((?:[^\r\n]|\r?\n[ \t])*)", re.I)
_FOLD_RE = re.compile(rb"\r?\n[ \t]+")
_LINE_ENDS_RE = re.compile(rb"[\r\n]+")

DEFAULT_MAX_HEADER = 65535
DEFAULT_MAX_BODY = 1 << 20


class StreamFramer:
    """Feed bytes in, get whole messages (bytes), :data:`PING` markers or one final SipError out."""

    __slots__ = ("_buf", "_need", "_scanned", "broken", "max_body", "max_header")

    def __init__(self, *, max_header: int = DEFAULT_MAX_HEADER, max_body: int = DEFAULT_MAX_BODY) -> None:
        self._buf = bytearray()
        self._need = 0  # total length of the message being collected, once its head is known
        # How far the buffer was searched for the end of the header block without finding it:
        # a head arriving in many small pieces is scanned once, not once per piece.
        self._scanned = 0
        self.max_header = max_header
        self.max_body = max_body
        self.broken = False

    def feed(self, data: bytes) -> list[object]:
        """Return the complete items found; after an error item the framer accepts nothing more."""
        if self.broken:
            return []
        buf = self._buf
        buf += data
        out: list[object] = []
        while buf:
            if self._need:
                if len(buf) < self._need:
                    break
                out.append(bytes(buf[: self._need]))
                del buf[: self._need]
                self._need = 0
                continue
            # Leading line ends: keep-alive pings (CRLFCRLF) or stray line ends (a pong, CRLFs
            # before a message, RFC 3261 section 7.5) -- found the same way however the bytes
            # were cut into chunks.
            if buf[0] in (13, 10):
                run = _LINE_ENDS_RE.match(buf)
                assert run is not None
                r = run.end()
                ping = buf.find(b"\r\n\r\n", 0, r)
                if ping >= 0:
                    out.append(PING)
                    del buf[:ping + 4]
                    continue
                if r == len(buf):
                    # Keep what may be the start of a ping; wait for more.
                    keep = 3 if buf.endswith(b"\r\n\r") else 2 if buf.endswith(b"\r\n") else int(buf[-1] == 13)
                    del buf[:r - keep]
                    break
                del buf[:r]
                continue
            # The header block ends at the first empty line: CRLF CRLF, or LF LF from a peer
            # that ends lines with bare LF (the parser accepts both and takes the first).
            scan = max(0, self._scanned - 3)
            end = buf.find(b"\r\n\r\n", scan)
            lf = buf.find(b"\n\n", scan, len(buf) if end < 0 else end)
            if lf >= 0:
                end, head_len = lf, lf + 2
            elif end >= 0:
                head_len = end + 4
            else:
                if len(buf) > self.max_header:
                    return self._break(out, SipError(513, "Message Too Large"), self.max_header)
                self._scanned = len(buf)
                break
            self._scanned = 0
            if head_len > self.max_header:
                return self._break(out, SipError(513, "Message Too Large"), self.max_header)
            m = _CL_RE.search(buf, 0, end)
            if m is None:
                length = 0  # RFC 3261 18.3 makes it mandatory on streams; absent means no body
            else:
                if _CL_RE.search(buf, m.end(), end) is not None:
                    # Two Content-Length fields: the message boundary is unknowable (RFC 4475
                    # section 3.3.9), so the stream cannot be resynchronised.
                    return self._break(out, SipError(400, "Multiple Content-Length values"), head_len)
                text = m.group(1)
                if b"\n" in text:
                    text = _FOLD_RE.sub(b" ", text)
                # The same test as the parser's, so that both see the same message boundary.
                text = text.strip(b" \t")
                if not text.isdigit():
                    return self._break(out, SipError(400, "Malformed Content-Length"), head_len)
                text = text.lstrip(b"0") or b"0"
                # The length test first: int() refuses digit strings over 4300 digits.
                if len(text) > 12 or int(text) > self.max_body:
                    return self._break(out, SipError(413, "Request Entity Too Large"), head_len)
                length = int(text)
            self._need = head_len + length
        return out

    def _break(self, out: list[object], err: SipError, head: int) -> list[object]:
        """Report ``err`` with the message head (up to ``head`` octets, so that the caller can
        still answer it) and stop: the stream can no longer be trusted to be in step."""
        self.broken = True
        self._need = self._scanned = 0
        err.message = bytes(self._buf[:head])
        self._buf.clear()
        out.append(err)
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)
