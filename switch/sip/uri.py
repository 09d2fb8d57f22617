"""SIP and SIPS URIs (RFC 3261 section 19.1 and the ABNF of section 25.1).

`parse_uri` accepts any absolute URI (RFC 3261 allows absoluteURI in To, From and Contact), but
only ``sip``/``sips`` URIs are taken apart; others keep their scheme and opaque rest so that a
request can be answered 416 (RFC 3261 section 8.2.2.1) instead of failing to parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from switch.sip.errors import SipError

# RFC 3261 section 25.1: user = 1*( unreserved / escaped / user-unreserved ),
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/".
_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+"
_PASSWORD = r"[A-Za-z0-9\-_.!~*'()&=+$,%]*"
# host = hostname / IPv4address / IPv6reference; the IPv4 alternative is told apart (its own group)
# so that a dotted-digits hostname can be refused without a second match.
_HOST = (r"\[[0-9A-Fa-f:.]+\]|(?P<ipv4>[0-9]{1,3}(?:\.[0-9]{1,3}){3})(?![A-Za-z0-9\-.])"
         r"|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?")
# paramchar = param-unreserved / unreserved / escaped; param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
_PCHAR = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]"
_HCHAR = r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$%]"

_SIP_URI_RE = re.compile(
    rf"(?P<scheme>[sS][iI][pP][sS]?):"
    rf"(?:(?P<user>{_USER})(?::(?P<password>{_PASSWORD}))?@)?"
    rf"(?P<host>{_HOST})"
    rf"(?::(?P<port>[0-9]{{1,5}}))?"
    rf"(?P<params>(?:;{_PCHAR}+(?:={_PCHAR}*)?)*)"
    # headers = "?" header *( "&" header ), header = hname "=" hvalue; the first "=" may be
    # missing (liberal).  Written so that no two quantifiers compete for the same characters:
    # "hname=?hvalue" backtracked quadratically on a long non-matching URI (a DoS).
    rf"(?:\?(?P<headers>{_HCHAR}+(?:={_HCHAR}*)?(?:&{_HCHAR}+={_HCHAR}*)*))?\Z"
)
# RFC 3986 / RFC 3261 absoluteURI: scheme ":" and no whitespace or angle brackets.
_ABS_URI_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+\-.]*):(?P<rest>[^\s<>\"]+)\Z")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(slots=True)
class SipUri:
    scheme: str  # lowercased
    user: str | None = None
    password: str | None = None
    host: str = ""  # lowercased; IPv6 references keep their brackets
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # names lowercased
    headers: str | None = None  # raw, after '?'
    raw: str = ""
    opaque: str | None = None  # for non-SIP schemes: everything after "scheme:"

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def user_unescaped(self) -> str | None:
        if self.user is None:
            return None
        return unescape(self.user)

    def host_port(self, default_port: int = 5060) -> tuple[str, int]:
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host, self.port if self.port is not None else default_port

    def __str__(self) -> str:
        return self.raw or format_uri(self)

    def equals(self, other: SipUri) -> bool:
        """URI comparison per RFC 3261 section 19.1.4: userinfo case-sensitive, the rest not,
        escapes decoded everywhere (in parameter names too), parameter order irrelevant."""
        if self.scheme != other.scheme:
            return False
        if not self.is_sip:
            return (self.opaque or "") == (other.opaque or "")
        if (self.user is None) != (other.user is None) or unescape(self.user or "") != unescape(other.user or ""):
            return False
        if unescape(self.password or "") != unescape(other.password or ""):
            return False
        if self.host != other.host or self.port != other.port:
            return False
        mine, theirs = _norm_params(self.params), _norm_params(other.params)
        # user, ttl, method and maddr must match if present in either; so must transport (the
        # section's examples: "sip:bob@biloxi.com" and ";transport=udp" differ).
        for name in ("user", "ttl", "method", "maddr", "transport"):
            if mine.get(name, False) != theirs.get(name, False):
                return False
        for name, a in mine.items():
            if name in theirs and theirs[name] != a:
                return False
        # Header components are never ignored: the same set on both sides, in any order.
        return _norm_headers(self.headers) == _norm_headers(other.headers)


def _norm_params(params: dict[str, str | None]) -> dict[str, str | None]:
    return {unescape(name).lower(): None if value is None else unescape(value).lower()
            for name, value in params.items()}


def _norm_headers(headers: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (headers or "").split("&"):
        if item:
            name, _eq, value = item.partition("=")
            out[unescape(name).lower()] = unescape(value)
    return out


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 section 19.1.2); invalid sequences are kept as they are."""
    if "%" not in text:
        return text
    # surrogateescape both ways: undecodable octets of the message survive as lone surrogates,
    # which a plain .encode() would refuse with UnicodeEncodeError.
    return unquote_to_bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")


def parse_uri(text: str) -> SipUri:
    """Parse a URI; raises SipError(400) when it is malformed."""
    m = _SIP_URI_RE.match(text)
    if m is not None:
        scheme, user, password, host, ipv4, port, raw_params, headers = m.groups()
        if "%" in text and _BAD_ESCAPE_RE.search(text) is not None:
            # RFC 3261 section 25.1: escaped = "%" HEXDIG HEXDIG; a bare "%" is not allowed in a URI.
            raise SipError(400, "Bad escape in URI")
        p = int(port) if port is not None else None
        if p is not None and p > 65535:
            raise SipError(400, "Bad port in URI")
        host = host.lower()
        if ipv4 is None and host[-1].isdigit() and host[0].isdigit():
            # A hostname's top label cannot start with a digit: a dotted-digits host must be IPv4.
            raise SipError(400, "Bad host in URI")
        params: dict[str, str | None] = {}
        if raw_params:
            for item in raw_params[1:].split(";"):
                name, eq, value = item.partition("=")
                params[name.lower()] = value if eq else None
        return SipUri(scheme.lower(), user, password, host, p, params, headers, text)
    lower = text[:5].lower()
    if lower.startswith(("sip:", "sips:")):
        raise SipError(400, "Malformed SIP URI")
    a = _ABS_URI_RE.match(text)
    if a is None:
        raise SipError(400, "Malformed URI")
    return SipUri(scheme=a.group("scheme").lower(), raw=text, opaque=a.group("rest"))


def format_uri(uri: SipUri) -> str:
    if not uri.is_sip:
        return f"{uri.scheme}:{uri.opaque}"
    out = [uri.scheme, ":"]
    if uri.user is not None:
        out.append(uri.user)
        if uri.password is not None:
            out.append(":" + uri.password)
        out.append("@")
    out.append(uri.host)
    if uri.port is not None:
        out.append(f":{uri.port}")
    for name, value in uri.params.items():
        out.append(f";{name}" if value is None else f";{name}={value}")
    if uri.headers:
        out.append("?" + uri.headers)
    return "".join(out)


def make_uri(user: str | None, host: str, port: int | None = None, *, scheme: str = "sip",
             params: dict[str, str | None] | None = None) -> str:
    """Build a SIP URI string; an IPv6 host gets its brackets (RFC 3261 section 19.1.1)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    s = f"{scheme}:{user}@{host}" if user else f"{scheme}:{host}"
    if port is not None:
        s += f":{port}"
    if params:
        for name, value in params.items():
            s += f";{name}" if value is None else f";{name}={value}"
    return s
