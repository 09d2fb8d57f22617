"""Typed views of the header fields the switch reads (RFC 3261 section 20 and 25.1).

Every parser here either returns a value or raises :class:`SipError` with status 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from switch.sip.errors import SipError
from switch.sip.uri import SipUri, parse_uri

# RFC 3261 section 25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN + r"\Z")
_QUOTED = r'"(?:[^"\\]|\\[\x00-\x7f])*"'
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?"
# generic-param = token [ EQUAL gen-value ], gen-value = token / host / quoted-string.  A bare
# IPv6address (two colons at least) is allowed too: RFC 3261 25.1 via-received = "received"
# EQUAL (IPv4address / IPv6address), without brackets (RFC 5118 section 4.5); it must come
# before token, which would stop at the first ":".
_PARAM_RE = re.compile(
    rf"\s*;\s*({TOKEN})(?:\s*=\s*({_QUOTED}|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*"
    rf"|{TOKEN}))?\s*"
)
# The common shape of a parameter list, ";name=value;flag" with no LWS, quotes or IPv6: split
# with str methods instead of one regex match per parameter.
_SIMPLE_PARAMS_RE = re.compile(rf"(?:;{TOKEN}(?:={TOKEN})?)*\Z")
_DISPLAY_QUOTED_RE = re.compile(rf"\s*({_QUOTED})\s*<")
# display-name = *(token LWS) / quoted-string.  The repetition is possessive: with a plain "*"
# a run of token characters not followed by "<" backtracks exponentially (a one-packet DoS).
_DISPLAY_TOKENS_RE = re.compile(rf"\s*((?:{TOKEN}\s*)*+)<")
_ANGLE_URI_RE = re.compile(r"<([^<>\s]+)>")
# The usual From/To/Contact shape in one match: optional display name (a quoted string
# without escapes, or tokens separated by single spaces), <URI>, optional ";tag=token".
# Anything else takes the general path below, which accepts the whole grammar.
_NAME_ADDR_FAST_RE = re.compile(
    rf'(?:"([^"\\\r\n]*)" ?|({TOKEN}(?: {TOKEN})*) ?)?<([^<>\s]+)>(?:;tag=({TOKEN}))?\Z'
)
# sent-protocol = protocol-name SLASH protocol-version SLASH transport; "SIP" is
# case-insensitive like every quoted string of the ABNF (RFC 3261 section 25.1, 7.1).
_VIA_RE = re.compile(
    rf"\s*[Ss][Ii][Pp]\s*/\s*2\.0\s*/\s*({TOKEN})\s+"
    rf"({_HOST})"
    r"(?:\s*:\s*([0-9]{1,5}))?"
)
# The usual Via shape in one match: no LWS, parameters of tokens only.
_VIA_FAST_RE = re.compile(rf"SIP/2\.0/([A-Z]+) ({_HOST})(?::([0-9]{{1,5}}))?((?:;{TOKEN}(?:={TOKEN})?)*)\Z")
_CSEQ_RE = re.compile(rf"\s*([0-9]+)\s+({TOKEN})\s*\Z")
_DIGITS_RE = re.compile(r"\s*([0-9]+)\s*\Z")

MAX_CSEQ = 2**31 - 1  # RFC 3261 section 8.1.1.5: the sequence number MUST be less than 2**31


def unquote(value: str) -> str:
    """Strip the quotes of a quoted-string and resolve its backslash escapes (RFC 3261 25.1)."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" in inner:
            return re.sub(r"\\(.)", r"\1", inner, flags=re.S)
        return inner
    return value


def parse_params(text: str, pos: int = 0) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )`` from ``text[pos:]``; names are lowercased, values kept raw."""
    params: dict[str, str | None] = {}
    end = len(text)
    if pos >= end:
        return params
    if _SIMPLE_PARAMS_RE.match(text, pos) is not None:
        for item in text[pos + 1:].split(";"):
            name, eq, value = item.partition("=")
            params[name.lower()] = value if eq else None
        return params
    while pos < end:
        m = _PARAM_RE.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                break
            raise SipError(400, "Malformed header parameters")
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params


def split_commas(value: str) -> list[str]:
    """Split a header value at the commas that separate values (RFC 3261 section 7.3.1).

    Commas inside quoted strings and inside <...> belong to the value.
    """
    if "," not in value:
        return [value]
    parts: list[str] = []
    depth_angle = False
    quoted = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            depth_angle = True
        elif c == ">":
            depth_angle = False
        elif c == "," and not depth_angle:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return parts


@dataclass(slots=True)
class NameAddr:
    """A From, To, Contact, Route or Record-Route value: display name, URI and header params."""

    uri: str
    display: str | None = None  # unquoted
    params: dict[str, str | None] = field(default_factory=dict)
    angle: bool = True  # was the URI enclosed in <>
    _parsed: SipUri | None = None

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def parsed_uri(self) -> SipUri:
        if self._parsed is None:
            self._parsed = parse_uri(self.uri)
        return self._parsed

    def __str__(self) -> str:
        return format_name_addr(self.uri, self.display, self.params)


def format_name_addr(uri: str, display: str | None = None,
                     params: dict[str, str | None] | None = None) -> str:
    out = f'"{_quote(display)}" <{uri}>' if display else f"<{uri}>"
    if params:
        for name, value in params.items():
            out += f";{name}" if value is None else f";{name}={value}"
    return out


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def parse_name_addr(value: str, *, allow_star: bool = False, check_uri: bool = True) -> NameAddr:
    """Parse ``( name-addr / addr-spec ) *( SEMI param )`` (RFC 3261 section 20.10, 20.20, 20.39).

    With ``check_uri`` False the URI inside <> is only checked for whitespace and brackets; its
    full syntax is checked when :attr:`NameAddr.parsed_uri` is first read (the hot path reads
    only the tags of From and To).
    """
    m = _NAME_ADDR_FAST_RE.match(value)
    if m is not None:
        quoted, tokens, uri, tag = m.groups()
        return NameAddr(uri, quoted if quoted is not None else tokens, {} if tag is None else {"tag": tag}, True,
                        parse_uri(uri) if check_uri else None)
    if "<" in value:
        m = _DISPLAY_QUOTED_RE.match(value)
        if m is not None:
            display: str | None = unquote(m.group(1))
            pos = m.end() - 1
        else:
            m = _DISPLAY_TOKENS_RE.match(value)
            if m is None:
                if value.lstrip().startswith('"'):
                    raise SipError(400, "Unterminated quoted string")
                raise SipError(400, "Bad display name")
            display = m.group(1).rstrip() or None
            pos = m.end() - 1
        a = _ANGLE_URI_RE.match(value, pos)
        if a is None:
            # RFC 4475 section 3.1.2.14: an addr-spec with spaces inside <> is malformed.
            raise SipError(400, "Malformed <addr-spec>")
        uri = a.group(1)
        parsed = parse_uri(uri) if check_uri else None
        return NameAddr(uri=uri, display=display, params=parse_params(value, a.end()), angle=True, _parsed=parsed)
    if '"' in value:
        raise SipError(400, "Unterminated quoted string")
    stripped = value.strip()
    if allow_star and stripped == "*":
        return NameAddr(uri="*", angle=False)
    # RFC 3261 section 20.10: without <>, the URI ends at the first ";" and may contain
    # neither ",", "?" nor ";" -- anything after ";" is a header parameter.
    uri, _sep, _rest = stripped.partition(";")
    uri = uri.rstrip()
    if not uri or "?" in uri or "," in uri or " " in uri or "\t" in uri:
        raise SipError(400, "Malformed addr-spec (use <> for URI with parameters or headers)")
    parsed = parse_uri(uri)
    params = parse_params(stripped, len(uri)) if _sep else {}
    return NameAddr(uri=uri, display=None, params=params, angle=False, _parsed=parsed)


@dataclass(slots=True)
class Via:
    transport: str  # uppercased, e.g. "UDP"
    host: str  # lowercased, IPv6 with brackets
    port: int | None
    params: dict[str, str | None]
    raw: str

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def rfc3261_branch(self) -> bool:
        """RFC 3261 section 8.1.1.7: the magic cookie plus something unique after it."""
        b = self.params.get("branch")
        return b is not None and len(b) > 7 and b.startswith("z9hG4bK")

    @property
    def sent_by(self) -> tuple[str, int]:
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host, self.port if self.port is not None else 5060


def parse_via(value: str) -> Via:
    """One via-parm (RFC 3261 section 20.42, 25.1): sent-protocol, sent-by and parameters."""
    m = _VIA_FAST_RE.match(value)
    if m is not None:
        transport, host, port_text, raw_params = m.groups()
        params: dict[str, str | None] = {}
        if raw_params:
            for item in raw_params[1:].split(";"):
                name, eq, param_value = item.partition("=")
                params[name.lower()] = param_value if eq else None
    else:
        m = _VIA_RE.match(value)
        if m is None:
            raise SipError(400, "Malformed Via")
        transport, host, port_text = m.groups()
        params = parse_params(value, m.end())
        if "branch" in params and not params["branch"]:
            raise SipError(400, "Empty Via branch")
    port = int(port_text) if port_text else None
    if port is not None and port > 65535:
        raise SipError(400, "Malformed Via port")
    return Via(transport.upper(), host.lower(), port, params, value.strip())


def parse_cseq(value: str) -> tuple[int, str]:
    """CSeq = 1*DIGIT LWS Method (RFC 3261 section 20.16); the number is below 2**31 (8.1.1.5)."""
    digits, sp, method = value.partition(" ")
    # Fast path for the usual "123 INVITE"; the regex below takes every LWS variant.
    if not (sp and digits.isdigit() and digits.isascii() and TOKEN_RE.match(method)):
        m = _CSEQ_RE.match(value)
        if m is None:
            raise SipError(400, "Malformed CSeq")
        digits, method = m.groups()
    # The length check keeps int() away from huge digit strings (Python refuses > 4300 digits);
    # leading zeros are allowed (RFC 4475 section 3.1.1.1 has "0009").
    if len(digits) > 10:
        digits = digits.lstrip("0") or "0"
        if len(digits) > 10:
            raise SipError(400, "CSeq number too large")
    num = int(digits)
    if num > MAX_CSEQ:
        raise SipError(400, "CSeq number too large")
    return num, method


def parse_uint(value: str, what: str, maximum: int) -> int:
    if value.isdigit() and value.isascii() and len(value) <= 12:
        n = int(value)
        if n > maximum:
            raise SipError(400, f"{what} too large")
        return n
    m = _DIGITS_RE.match(value)
    if m is None:
        raise SipError(400, f"Malformed {what}")
    digits = m.group(1)
    if len(digits) > 12:
        digits = digits.lstrip("0") or "0"
        if len(digits) > 12:
            raise SipError(400, f"{what} too large")
    n = int(digits)
    if n > maximum:
        raise SipError(400, f"{what} too large")
    return n


def parse_token_list(value: str) -> list[str]:
    """A comma-separated list of tokens (Require, Supported, Allow ...); empty items are skipped."""
    return [item.strip() for item in value.split(",") if item.strip()]
