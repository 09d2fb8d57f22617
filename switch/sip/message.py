"""SIP messages: parse bytes into a :class:`SipMessage`, serialize it back (RFC 3261 sections 7, 25).

The parser is strict where RFC 3261 and RFC 4475 say a message is malformed, and liberal where
they allow it (LWS and folding anywhere, compact and case-insensitive names, repeated and
comma-separated headers).  It validates the header fields every element needs (Via, From, To,
Call-ID, CSeq, Max-Forwards, Content-Length) eagerly; others are parsed when they are read.

Header names are kept lowercased in full form as keys; values are kept raw (stripped), one entry
per header line, so a message relays byte-for-byte equivalent values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from switch.sip.errors import SipError
from switch.sip.headers import (
    TOKEN_RE,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_uint,
    parse_via,
    split_commas,
)
from switch.sip.uri import SipUri, parse_uri

# RFC 3261 section 7.3.3 and the registrations since: compact form -> full name.
COMPACT: dict[str, str] = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
    "r": "refer-to", "b": "referred-by", "o": "event", "u": "allow-events", "x": "session-expires",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition", "y": "identity",
    "n": "identity-info",
}

CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Type",
        "Content-Length", "Route", "Record-Route", "Expires", "Min-Expires", "Allow", "Supported",
        "Require", "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
        "User-Agent", "Server", "WWW-Authenticate", "Authorization", "Proxy-Authenticate",
        "Proxy-Authorization", "Authentication-Info", "Date", "Timestamp", "Retry-After", "Reason",
        "Warning", "Subject", "Organization", "Priority", "Event", "Allow-Events", "Refer-To",
        "Referred-By", "Session-Expires", "Min-SE", "RSeq", "RAck", "P-Asserted-Identity",
        "P-Preferred-Identity", "Privacy", "Remote-Party-ID", "Diversion", "Content-Encoding",
        "Content-Disposition", "Content-Language", "MIME-Version", "In-Reply-To", "Reply-To",
        "Alert-Info", "Call-Info", "Error-Info", "Error-Info", "Path", "Service-Route",
        "Accept-Contact", "Reject-Contact", "Request-Disposition", "Identity", "Identity-Info",
        "Subscription-State", "X-Trunkline-Reason",
    )
}

# Header fields that carry exactly one value (RFC 3261 section 7.3.1 and 20); two are a 400.
SINGLE_VALUED = ("to", "from", "call-id", "cseq", "max-forwards", "content-length", "content-type")
# Fields where a comma separates values and several lines may be combined (RFC 3261 7.3.1).
MULTI_VALUED = frozenset(("via", "contact", "route", "record-route", "path", "service-route"))

# Fields whose value is a comma-separated list of tokens or media ranges (RFC 3261 section 20).
_LIST_VALUED = frozenset(("allow", "supported", "require", "proxy-require", "unsupported", "accept"))

DEFAULT_MAX_SIZE = 65535  # the largest UDP datagram; larger messages get 513 (RFC 3261 18.1.1)

# RFC 3261 section 25.1: Request-Line = Method SP Request-URI SP SIP-Version CRLF, single spaces
# and nothing after the version (RFC 4475 sections 3.1.2.7 - 3.1.2.10).  "SIP" in SIP-Version is
# case-insensitive (RFC 3261 section 7.1).
_REQUEST_LINE_RE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+) ([^ \t\r\n]+) ([Ss][Ii][Pp]/[0-9]+\.[0-9]+)\Z")
_RESPONSE_LINE_RE = re.compile(r"[Ss][Ii][Pp]/2\.0 ([0-9]{3}) ([^\r\n]*)\Z", re.S)
_LINE_END_RE = re.compile(r"\r?\n")
_CALL_ID_RE = re.compile(r"[^\s@]+(?:@[^\s@]+)?\Z")

MAX_MAX_FORWARDS = 255
# "SIP/" in every case: a Status-Line starts with a case-insensitive SIP-Version (RFC 3261 7.1).
_SIP_SLASH = frozenset(a + b + c + "/" for a in "Ss" for b in "Ii" for c in "Pp")
_SINGLE_VALUED_SET = frozenset(SINGLE_VALUED)


# Header name as written -> key (lowercased full name), learnt as names are seen so that the hot
# loop does one dict lookup per line.  Names whose key is canonical need no bookkeeping and go in
# _CANON_KEYS; the others in _OTHER_KEYS (their spelling is kept in SipMessage.names).  Both are
# bounded in entries and in name length: peers choose these strings.
_CANON_KEYS: dict[str, str] = {}
_OTHER_KEYS: dict[str, str] = {}
_NAME_KEYS_MAX = 2048
_NAME_MAX_CACHED = 48


def _learn_name(raw_name: str) -> str | None:
    """Key for a header name not seen before; None if it is not a token (RFC 3261 25.1)."""
    name = raw_name.rstrip(" \t")  # HCOLON = *( SP / HTAB ) ":" SWS
    if TOKEN_RE.match(name) is None:
        return None
    key = name.lower()
    key = COMPACT.get(key, key)
    if len(raw_name) <= _NAME_MAX_CACHED:
        cache = _CANON_KEYS if key in CANONICAL else _OTHER_KEYS
        if len(cache) >= _NAME_KEYS_MAX:
            # Full (a peer inventing names?): start again rather than stop learning, so that
            # the names of real traffic get back in.
            cache.clear()
            if cache is _CANON_KEYS:
                _seed_names()
        cache[raw_name] = key
    return key


def _seed_names() -> None:
    for canon in CANONICAL.values():
        _CANON_KEYS[canon] = _CANON_KEYS[canon.lower()] = canon.lower()
    for compact, key in COMPACT.items():
        cache = _CANON_KEYS if key in CANONICAL else _OTHER_KEYS
        cache[compact] = cache[compact.upper()] = key


_seed_names()


class SipMessage:
    """A SIP request or response."""

    __slots__ = (
        "_from",
        "_ruri",
        "_to",
        "_vias",
        "body",
        "call_id",
        "cseq_method",
        "cseq_num",
        "headers",
        "max_forwards",
        "method",
        "names",
        "reason",
        "status",
        "uri",
        "via",
    )

    def __init__(self) -> None:
        self.method: str = ""  # requests only
        self.uri: str = ""  # the Request-URI, raw
        self.status: int = 0  # responses only
        self.reason: str = ""
        self.headers: dict[str, list[str]] = {}
        self.names: dict[str, str] = {}  # lowercase -> spelling for non-canonical names
        self.body: bytes = b""
        # Validated fields (filled by the parser, or by the builder helpers).
        self.via: Via | None = None  # topmost Via, parsed
        self._vias: list[Via] | None = None
        self.call_id: str = ""
        self.cseq_num: int = 0
        self.cseq_method: str = ""
        self.max_forwards: int | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._ruri: SipUri | None = None

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def request(cls, method: str, uri: str, headers: Iterable[tuple[str, str]] = (),
                body: bytes = b"") -> SipMessage:
        msg = cls()
        msg.method = method
        msg.uri = uri
        for name, value in headers:
            msg.add(name, value)
        msg.body = body
        msg._refresh_fields()
        return msg

    @classmethod
    def response(cls, status: int, reason: str, headers: Iterable[tuple[str, str]] = (),
                 body: bytes = b"") -> SipMessage:
        msg = cls()
        msg.status = status
        msg.reason = reason
        for name, value in headers:
            msg.add(name, value)
        msg.body = body
        msg._refresh_fields()
        return msg

    def _refresh_fields(self) -> None:
        """Fill the typed fields from headers set by hand (for messages we build)."""
        h = self.headers
        v = h.get("via")
        if v:
            self.via = parse_via(split_commas(v[0])[0])
            self._vias = None
        if "call-id" in h:
            self.call_id = h["call-id"][0]
        if "cseq" in h:
            self.cseq_num, self.cseq_method = parse_cseq(h["cseq"][0])
        if "max-forwards" in h:
            self.max_forwards = parse_uint(h["max-forwards"][0], "Max-Forwards", MAX_MAX_FORWARDS)
        self._from = None
        self._to = None

    # -- header access ----------------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        return self.status == 0

    def get(self, name: str) -> str | None:
        """The first value of a header.  ``name`` is best given as the key (lowercased full
        name, e.g. "call-id"); any spelling or the compact form works too."""
        values = self.headers.get(name)
        if values is None:
            values = self.headers.get(_norm_name(name))
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """All values of a header, split at separating commas for multi-valued fields."""
        values = self.headers.get(name)
        if values is None:
            name = _norm_name(name)
            values = self.headers.get(name)
        if not values:
            return []
        if name in MULTI_VALUED or name in _LIST_VALUED:
            out: list[str] = []
            for line in values:
                for item in split_commas(line):
                    item = item.strip()
                    if item:
                        out.append(item)
            return out
        return list(values)

    def set(self, name: str, value: str) -> None:
        key = self._key(name)
        self.headers[key] = [value]

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        key = self._key(name)
        values = self.headers.get(key)
        if values is None:
            self.headers[key] = [value]
        elif first:
            values.insert(0, value)
        else:
            values.append(value)

    def remove(self, name: str) -> None:
        if self.headers.pop(name, None) is None:
            self.headers.pop(_norm_name(name), None)

    def _key(self, name: str) -> str:
        key = _norm_name(name)
        if key not in CANONICAL and key not in self.names:
            self.names[key] = name
        return key

    # -- typed views ------------------------------------------------------------------------
    @property
    def from_(self) -> NameAddr:
        if self._from is None:
            value = self.get("from")
            if value is None:
                raise SipError(400, "Missing From")
            self._from = parse_name_addr(value)
        return self._from

    @property
    def to(self) -> NameAddr:
        if self._to is None:
            value = self.get("to")
            if value is None:
                raise SipError(400, "Missing To")
            self._to = parse_name_addr(value)
        return self._to

    @property
    def vias(self) -> list[Via]:
        if self._vias is None:
            values = self.get_all("via")
            top = self.via
            # The parser has already parsed the topmost value.
            self._vias = [top if i == 0 and top is not None and top.raw == v else parse_via(v)
                          for i, v in enumerate(values)]
        return self._vias

    @property
    def request_uri(self) -> SipUri:
        if self._ruri is None or self._ruri.raw != self.uri:
            self._ruri = parse_uri(self.uri)
        return self._ruri

    def contacts(self) -> list[NameAddr]:
        return [parse_name_addr(v, allow_star=True) for v in self.get_all("contact")]

    @property
    def content_type(self) -> str | None:
        value = self.get("content-type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    # -- serialization ----------------------------------------------------------------------
    def start_line(self) -> str:
        if self.status:
            return f"SIP/2.0 {self.status} {self.reason}"
        return f"{self.method} {self.uri} SIP/2.0"

    def to_bytes(self) -> bytes:
        out = [self.start_line()]
        names = self.names
        for key, values in self.headers.items():
            if key == "content-length":
                continue
            name = CANONICAL.get(key) or names.get(key) or key
            for value in values:
                out.append(f"{name}: {value}")
        body = self.body
        out.append(f"Content-Length: {len(body)}\r\n\r\n")
        head = "\r\n".join(out).encode("utf-8", "surrogateescape")
        return head + body if body else head

    def release(self) -> None:
        """Drop the headers, body and parsed views, keeping the identity fields.

        A finished transaction keeps its request for tens of seconds (Timers J, L, M); only the
        method, Request-URI, status, Call-ID, CSeq and top Via are read after its final answer.
        Releasing the rest frees memory and, above all, thousands of containers the garbage
        collector would otherwise walk on every collection.
        """
        self.headers = {}
        self.names = {}
        self.body = b""
        self._from = None
        self._to = None
        self._vias = None
        self._ruri = None
        self.via = None

    def __repr__(self) -> str:
        return f"<SipMessage {self.start_line()!r} call-id={self.call_id!r}>"


def _norm_name(name: str) -> str:
    """The key of a header name: lowercased, compact form expanded (RFC 3261 section 7.3.3)."""
    key = name.strip().lower()
    return COMPACT.get(key, key)


def _fail(msg: SipMessage | None, status: int, reason: str, *, drop: bool = False) -> SipError:
    err = SipError(status, reason, drop=drop)
    err.message = msg
    return err


def parse_message(data: bytes, *, stream: bool = False, max_size: int = DEFAULT_MAX_SIZE) -> SipMessage:
    """Parse one SIP message.

    ``stream`` is False for a datagram (the body runs to the end of the datagram unless
    Content-Length says otherwise, RFC 3261 section 18.3) and True for a message cut out of a
    stream by :class:`switch.sip.framing.StreamFramer` (Content-Length is then authoritative).
    Raises :class:`SipError` with the status to answer with; ``drop`` is set for responses.
    """
    n = len(data)
    if n > max_size:
        raise SipError(513, "Message Too Large")
    # RFC 3261 section 7.5: empty lines before the start line SHOULD be ignored.
    start = 0
    while start < n and data[start] in (13, 10):
        start += 1
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        body_start = end + 4
        # A header block with bare LF line ends ends at the first LF LF, even if the body
        # holds a CRLF CRLF (a CRLF block never contains LF LF).
        lf = data.find(b"\n\n", start, end)
        if lf >= 0:
            end = lf
            body_start = lf + 2
    else:
        end = data.find(b"\n\n", start)
        if end >= 0:
            body_start = end + 2
        elif stream:
            raise SipError(400, "Missing empty line after the header fields")
        else:
            # A datagram whose sender left out the final CRLF: the datagram bounds the
            # header block (liberal in what we accept; there can be no body).
            end = body_start = n
            while end > start and data[end - 1] in (13, 10):
                end -= 1
    head = data[start:end].decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    crlf = len(lines) - 1
    if head.count("\n") != crlf or head.count("\r") != crlf:
        lines = _split_irregular(head)

    # -- start line ---------------------------------------------------------------------------
    first = lines[0]
    msg = SipMessage()
    # An error in a Request-Line is raised after the header fields are read, so that the
    # caller can still address the 400 or 505 it owes (RFC 4475 sections 3.1.2.7 - 3.1.2.10, 3.1.2.16).
    line_error: SipError | None = None
    is_response = first[:4] in _SIP_SLASH
    if is_response:
        m = _RESPONSE_LINE_RE.match(first)
        if m is None:
            raise SipError(400, "Malformed Status-Line", drop=True)
        status = int(m.group(1))
        if status < 100 or status > 699:
            # RFC 3261 section 7.2: Status-Code is 1xx-6xx (RFC 4475 section 3.1.2.19).
            raise SipError(400, "Bad status code", drop=True)
        msg.status = status
        msg.reason = m.group(2)
    else:
        m = _REQUEST_LINE_RE.match(first)
        if m is not None:
            msg.method, msg.uri, version = m.groups()
            if msg.uri[0] == "<":
                line_error = SipError(400, "Request-URI must not be enclosed in <>")
            elif version != "SIP/2.0" and version.upper() != "SIP/2.0":
                line_error = SipError(505, "Version Not Supported")
        else:
            # Extra or trailing whitespace, LWS inside the Request-URI ...: still a request if it
            # starts with a method token; otherwise nothing can be answered.
            method = first.split(" ", 1)[0]
            if TOKEN_RE.match(method) is None:
                raise SipError(400, "Malformed Request-Line")
            msg.method = method
            line_error = SipError(400, "Malformed Request-Line")

    # -- header fields --------------------------------------------------------------------------
    # The fast loop takes lines whose name spelling is known; anything else (a new spelling,
    # a folded line, a malformed line) sends the whole block to the general loop.
    headers = msg.headers
    canon_keys = _CANON_KEYS
    dup = False  # a single-valued field seen twice
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = canon_keys.get(name)
        if key is None or not colon:
            key = _OTHER_KEYS.get(name) if colon else None
            if key is None:
                dup = _parse_header_lines(msg, lines, is_response)
                break
            if key not in msg.names:
                msg.names[key] = name.rstrip(" \t")
        values = headers.get(key)
        if values is None:
            headers[key] = [value.strip()]
        else:
            values.append(value.strip())
            if key in _SINGLE_VALUED_SET:
                dup = True

    if line_error is not None:
        line_error.message = msg
        raise line_error

    # -- body and Content-Length (RFC 3261 sections 18.3 and 20.14) ------------------------------
    cl_values = headers.get("content-length")
    if cl_values is not None:
        if len(cl_values) != 1:
            raise _fail(msg, 400, "Multiple Content-Length values", drop=is_response)
        cl_text = cl_values[0]
        if not cl_text.isdigit() or not cl_text.isascii():
            raise _fail(msg, 400, "Malformed Content-Length", drop=is_response)
        if len(cl_text) > 10:
            # Keep int() away from huge digit strings (Python refuses more than 4300 digits).
            cl_text = cl_text.lstrip("0") or "0"
            if len(cl_text) > 10:
                cl_text = "9999999999"
        cl = int(cl_text)
        if cl > n - body_start:
            # RFC 3261 section 18.3: on a datagram a short body is an error (400).
            raise _fail(msg, 400, "Content-Length larger than the message body", drop=is_response)
        msg.body = data[body_start:body_start + cl]  # octets after the body are ignored (RFC 4475 3.1.1.8)
    else:
        if stream and body_start < n:
            raise _fail(msg, 400, "Content-Length required on stream transports", drop=is_response)
        msg.body = data[body_start:]

    # -- mandatory header fields (RFC 3261 section 8.1.1) ---------------------------------------
    if dup:
        for key in SINGLE_VALUED:
            values = headers.get(key)
            if values is not None and len(values) > 1:
                # RFC 3261 section 7.3.1 and RFC 4475 sections 3.3.8, 3.3.9.
                raise _fail(msg, 400, f"Multiple {CANONICAL[key]} values", drop=is_response)
    vias = headers.get("via")
    if not vias:
        raise _fail(None, 400, "Missing Via", drop=True)
    try:
        top = vias[0]
        msg.via = parse_via(split_commas(top)[0] if "," in top else top)
    except SipError as exc:
        # Still answerable for a request: the transport replies to the packet's source.
        raise _fail(msg, 400, exc.reason, drop=is_response) from None
    try:
        from_value = headers["from"][0]
        to_value = headers["to"][0]
        call_id = headers["call-id"][0]
        cseq_value = headers["cseq"][0]
    except KeyError:
        missing = next(key for key in ("from", "to", "call-id", "cseq") if key not in headers)
        raise _fail(msg, 400, f"Missing {CANONICAL[missing]} header", drop=is_response) from None
    if _CALL_ID_RE.match(call_id) is None:
        raise _fail(msg, 400, "Malformed Call-ID", drop=is_response)
    msg.call_id = call_id
    try:
        msg.cseq_num, cseq_method = parse_cseq(cseq_value)
        msg.cseq_method = cseq_method
        if not is_response:
            if cseq_method != msg.method:
                # RFC 3261 section 8.1.1.5: the CSeq method MUST match the request's method.
                raise SipError(400, "CSeq method does not match the Request-Line")
            mf = headers.get("max-forwards")
            if mf is not None:
                msg.max_forwards = parse_uint(mf[0], "Max-Forwards", MAX_MAX_FORWARDS)
            ruri = msg._ruri = parse_uri(msg.uri)
            if ruri.headers is not None:
                # RFC 3261 section 19.1.5: headers are not allowed in a Request-URI.
                raise SipError(400, "Headers not allowed in the Request-URI")
        # From and To: the structure now (tags are needed for matching); URIs when read.
        msg._from = parse_name_addr(from_value, check_uri=False)
        msg._to = parse_name_addr(to_value, check_uri=False)
    except SipError as exc:
        raise _fail(msg, 400, exc.reason, drop=is_response) from None
    return msg


def _split_irregular(head: str) -> list[str]:
    """Lines of a header block that is not plain CRLF: bare LF line ends are accepted
    (liberal), a bare CR is refused: it is no line end, nor allowed inside a header field
    (RFC 3261 sections 7 and 25.1), and relayed on it would end the line for the next hop."""
    lines = _LINE_END_RE.split(head)
    for line in lines:
        if "\r" in line:
            raise SipError(400, "Bare CR in the header fields", drop=head.startswith("SIP/"))
    return lines


def _parse_header_lines(msg: SipMessage, lines: list[str], is_response: bool) -> bool:
    """The general header loop: folding, any name spelling, and the 400s.  Fills
    ``msg.headers`` afresh; returns True if a single-valued field occurs twice."""
    if any(line[:1] in (" ", "\t") for line in lines):
        # RFC 3261 section 7.3.1: a line starting with SP or HT continues the previous header
        # field; the line break and the leading whitespace are equivalent to one SP.
        unfolded: list[str] = []
        for i, line in enumerate(lines):
            if line[:1] in (" ", "\t"):
                if i <= 1:
                    # The start line cannot be folded, and a header field's first line cannot
                    # begin with whitespace.
                    raise _fail(msg, 400, "Malformed header line", drop=is_response)
                unfolded[-1] = unfolded[-1] + " " + line.lstrip(" \t")
            else:
                unfolded.append(line)
        lines = unfolded
    headers = msg.headers
    names = msg.names
    headers.clear()
    names.clear()
    dup = False
    for line in lines[1:]:
        colon = line.find(":")
        if colon <= 0:
            raise _fail(msg, 400, "Malformed header line", drop=is_response)
        raw_name = line[:colon]
        key = _CANON_KEYS.get(raw_name) or _OTHER_KEYS.get(raw_name) or _learn_name(raw_name)
        if key is None:
            raise _fail(msg, 400, "Malformed header name", drop=is_response)
        if key not in CANONICAL and key not in names:
            names[key] = raw_name.rstrip(" \t")
        value = line[colon + 1:].strip()
        values = headers.get(key)
        if values is None:
            headers[key] = [value]
        else:
            values.append(value)
            if key in _SINGLE_VALUED_SET:
                dup = True
    return dup


def response_for(request: SipMessage, status: int, reason: str, *, to_tag: str | None = None,
                 headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> SipMessage:
    """A response to ``request`` with the fields RFC 3261 section 8.2.6.2 says to copy."""
    resp = SipMessage()
    resp.status = status
    resp.reason = reason
    h = resp.headers
    src = request.headers
    vias = src.get("via")
    if vias:
        h["via"] = list(vias)
    resp.via = request.via
    h["from"] = list(src.get("from", ()))
    to = src.get("to", [""])[0]
    # RFC 3261 section 8.2.6.2: the UAS adds a To tag unless the request has one (a request in
    # a dialog); on a 100 Trying the tag is optional and left out.
    if to_tag is not None and status != 100 and not _has_to_tag(request, to):
        to = f"{to};tag={to_tag}"
    h["to"] = [to]
    h["call-id"] = list(src.get("call-id", ()))
    h["cseq"] = list(src.get("cseq", ()))
    resp.call_id = request.call_id
    resp.cseq_num = request.cseq_num
    resp.cseq_method = request.cseq_method
    if status == 100 and "timestamp" in src:
        h["timestamp"] = list(src["timestamp"])  # RFC 3261 section 8.2.6.1
    for name, value in headers:
        resp.add(name, value)
    resp.body = body
    return resp


_TAG_PARAM_RE = re.compile(r";\s*tag\s*=", re.I)


def _has_to_tag(request: SipMessage, to: str) -> bool:
    """Does the request's To carry a tag parameter?  The parsed field decides (a ";tag=" inside
    <...> is a URI parameter, not a tag); a To too broken to parse (a request answered with
    its parse error) falls back to looking for the parameter after the URI."""
    if ";" not in to:
        return False
    try:
        return request.to.tag is not None
    except SipError:
        return _TAG_PARAM_RE.search(to, to.rfind(">") + 1) is not None
