"""SIP Digest authentication: RFC 3261 section 22, RFC 7616 and RFC 8760 (SHA-256 for SIP).

Sans-IO: no clock, no sockets, no storage.  The caller passes ``now`` (seconds, the same clock
in every process that shares a nonce secret; ``time.time()`` is the natural choice) and the
stored HA1 values, and gets a verdict back.

What this module does, in the registrar's order of use:

* :func:`ha1` -- the value the provisioning layer stores instead of a password,
  ``H(username ":" realm ":" password)`` in lower-case hex, one per algorithm (RFC 7616 3.4.2).
* :meth:`DigestAuthenticator.challenge` -- ``WWW-Authenticate`` / ``Proxy-Authenticate`` values,
  one per configured algorithm, strongest first (RFC 7616 section 3.7, RFC 8760 section 2).
* :func:`parse_credentials` -- parses an ``Authorization`` / ``Proxy-Authorization`` value;
  ``None`` means "not the Digest scheme" (answer with a challenge, never authenticate),
  :class:`DigestError` means malformed (answer 400 or re-challenge).
* :meth:`DigestAuthenticator.verify` -- checks credentials and returns an :class:`AuthResult`;
  :meth:`DigestAuthenticator.verify_detailed` also gives a reason for the logs (never send it
  to the peer).
* :func:`make_authorization` -- the client side, for tests and the load generator.

Nonces are stateless: ``base64url(issued_ms(8) || random(9) || HMAC-SHA256(secret,
issued_ms || random || realm)[:16])`` (33 bytes, so 44 base64url characters and no padding, which
keeps the encoding canonical).  A forged or re-targeted (other realm) nonce fails the MAC; one
older than ``nonce_ttl`` is stale (RFC 7616 section 3.3, ``stale=true``).  The only state is the
nonce-count table used against replays (RFC 7616 section 3.4, ``nc``; section 5 on limited-use
nonces): for each nonce that has authenticated a request, the highest ``nc`` accepted.  It is
bounded, see :class:`DigestAuthenticator`.

Order of checks in :meth:`~DigestAuthenticator.verify`, and why:

1. algorithm / qop / realm / username / uri / nonce MAC -> FAILED on any mismatch;
2. the response itself -> FAILED if wrong;
3. only then the nonce age (STALE) and the nonce count (REPLAY).

So STALE and REPLAY both imply the sender produced a correct digest for that nonce, which is
exactly when RFC 2617 section 3.2.1 says ``stale=true`` may be sent; a brute-force guard should
count FAILED only.  Recommended caller mapping: OK -> proceed; STALE or REPLAY -> 401/407 with a
fresh challenge and ``stale=true``; FAILED -> 401/407 with a fresh challenge (or 403), count a
failure; :class:`DigestError` -> 400 (or re-challenge).

Not supported, and rejected (FAILED) rather than half-done:

* the ``-sess`` algorithms: RFC 7616 section 3.4.2 builds the session HA1 from ``nonce-prime``
  and ``cnonce-prime``, which it does not define (RFC 2617 meant the values of the *first*
  request after the challenge, most implementations use the current ones).  Getting that
  right needs per-session state and the interoperability is doubtful, so we don't.
* ``userhash=true`` (RFC 7616 section 3.4.4): never offered in our challenges.

``qop=auth-int`` is implemented (``H(entity-body)`` over the raw message body) but only offered
and accepted when the authenticator is built with ``qops=("auth", "auth-int")``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Final, NamedTuple, TypeAlias
from urllib.parse import unquote_to_bytes

__all__ = [
    "ALGORITHMS",
    "AuthResult",
    "DigestAuthenticator",
    "DigestCredentials",
    "DigestError",
    "Verdict",
    "compute_response",
    "ha1",
    "make_authorization",
    "parse_challenge",
    "parse_credentials",
    "uri_matches",
]


# --------------------------------------------------------------------------------------------
# Hash algorithms
# --------------------------------------------------------------------------------------------

# H(data) in lower-case hex (RFC 7616 section 3.4.1); callers encode text as UTF-8.
HashHex: TypeAlias = Callable[[bytes], str]


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha512_256_hex(data: bytes) -> str:
    return hashlib.new("sha512_256", data).hexdigest()


def _has_sha512_256() -> bool:
    try:
        hashlib.new("sha512_256", b"")
    except ValueError:  # an OpenSSL build without SHA-512/256
        return False
    return True


_HASHES: Final[dict[str, HashHex]] = {"MD5": _md5_hex, "SHA-256": _sha256_hex}
if _has_sha512_256():
    _HASHES["SHA-512-256"] = _sha512_256_hex

#: Algorithms this module can verify, strongest first (the order used in challenges).
ALGORITHMS: Final[tuple[str, ...]] = tuple(a for a in ("SHA-512-256", "SHA-256", "MD5") if a in _HASHES)
_STRENGTH: Final[dict[str, int]] = {a: i for i, a in enumerate(ALGORITHMS)}
# Algorithm tokens are case-insensitive (RFC 7616 section 3.3); map the lower-case form to ours.
_CANONICAL: Final[dict[str, str]] = {a.lower(): a for a in ALGORITHMS}

_QOPS: Final[frozenset[str]] = frozenset({"auth", "auth-int"})


# --------------------------------------------------------------------------------------------
# Results and errors
# --------------------------------------------------------------------------------------------


class DigestError(ValueError):
    """Malformed Digest credentials or challenge.  ``reason`` is short and safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthResult(enum.Enum):
    OK = "ok"
    STALE = "stale"  # correct digest, nonce too old (or its replay state evicted): re-challenge, stale=true
    FAILED = "failed"  # wrong response, forged nonce, wrong realm/user/uri, unsupported algorithm/qop
    REPLAY = "replay"  # correct digest, but nc not above the highest seen (or single-use nonce reused)


class Verdict(NamedTuple):
    """An :class:`AuthResult` plus a reason for the logs (empty for OK); never send it to the peer."""

    result: AuthResult
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.result is AuthResult.OK


class DigestCredentials(NamedTuple):
    """Parsed ``Authorization`` / ``Proxy-Authorization`` Digest credentials (values unquoted)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str  # hex, as sent
    algorithm: str | None  # as sent (case preserved); None when absent, which means MD5
    qop: str | None  # as sent; None for RFC 2069-style credentials
    nc: str | None  # 8 hex digits, as sent (it is hashed verbatim)
    cnonce: str | None
    opaque: str | None
    userhash: bool


_OK: Final = Verdict(AuthResult.OK)


def _failed(reason: str) -> Verdict:
    return Verdict(AuthResult.FAILED, reason)


# --------------------------------------------------------------------------------------------
# Parsing (RFC 3261 section 25.1 grammar, RFC 7616 section 3.4)
# --------------------------------------------------------------------------------------------

_MAX_HEADER_LEN: Final = 8192  # far above any real credentials; bounds the work per request

# RFC 3261 token; for the scheme name we also accept RFC 7230 tchar so that exotic HTTP-style
# schemes still come back as "not digest" rather than as malformed.
_TOKEN: Final = r"[A-Za-z0-9!%*_+`'~.\-]++"
_SCHEME_RE: Final = re.compile(r"[ \t]*+([A-Za-z0-9!#$%&'*+.^_`|~\-]++)(?:[ \t]++|\Z)")
# quoted-string: qdtext excludes CTLs other than HTAB; quoted-pair excludes CR and LF
# (RFC 3261 section 25.1).  Written as an unrolled loop so the common case is one class run.
_QDTEXT: Final = r'[^"\\\x00-\x08\x0a-\x1f\x7f]*+'
_QPAIR: Final = r"\\[\x00-\x09\x0b\x0c\x0e-\x7f]"
_QUOTED: Final = rf'"({_QDTEXT}(?:{_QPAIR}{_QDTEXT})*+)"'
# SWS around "=" and ",": spaces and tabs.  Line folding is undone by the SIP parser; a raw
# CR or LF left in the value is malformed.
_SWS: Final = r"[ \t]*+"
# One auth-param and the separator after it.  Used with split(): the text between matches must
# be empty, so any garbage, missing comma or stray character is detected.  The segmentation is
# unambiguous (a token value ends before SWS/","/end, a quoted one at the first bare quote),
# and possessive quantifiers (Python 3.11) spare the engine useless backtracking state.
_PARAM_RE: Final = re.compile(rf"({_TOKEN}){_SWS}={_SWS}(?:{_QUOTED}|({_TOKEN})){_SWS}(?:(,){_SWS}|\Z)")
_UNESCAPE_RE: Final = re.compile(r"\\(.)", re.DOTALL)
_HEX_RE: Final = re.compile(r"[0-9a-fA-F]+")
_NC_RE: Final = re.compile(r"[0-9a-fA-F]{8}")
# RFC 5987 ext-value, used by username* (RFC 7616 section 3.4).
_EXT_VALUE_RE: Final = re.compile(r"([A-Za-z0-9!#$%&+\-^_`{}~]+)'[A-Za-z0-9\-]*'(.*)", re.DOTALL)


def _parse_params(text: str) -> dict[str, str]:
    """Parse ``auth-param *(COMMA auth-param)``; names lower-cased, values unquoted."""
    parts = _PARAM_RE.split(text)
    # split() yields [gap, name, quoted, token, sep, gap, name, ...]: every gap must be empty.
    if len(parts) < 6 or any(parts[::5]):
        raise DigestError("malformed auth-param list")
    if parts[-2] is not None:
        raise DigestError("trailing comma")
    params: dict[str, str] = {}
    i, n = 1, len(parts)
    while i < n:
        quoted = parts[i + 1]
        params[parts[i].lower()] = parts[i + 2] if quoted is None else quoted
        i += 5
    if len(params) != n // 5:  # a name seen twice (case-insensitively) collapsed into one key
        raise DigestError("duplicate parameter")
    if "\\" in text:  # rare: undo quoted-pairs
        for name, value in params.items():
            if "\\" in value:
                params[name] = _UNESCAPE_RE.sub(r"\1", value)
    return params


def _split_scheme(value: str) -> tuple[str, str]:
    if len(value) > _MAX_HEADER_LEN:
        raise DigestError("header too long")
    m = _SCHEME_RE.match(value)
    if m is None:
        raise DigestError("missing or invalid auth-scheme")
    return m.group(1), value[m.end() :]


def _decode_ext_value(value: str) -> str:
    """Decode an RFC 5987 ext-value (``UTF-8''J%C3%A4s%C3%B8n``), as used by ``username*``."""
    m = _EXT_VALUE_RE.fullmatch(value)
    if m is None:
        raise DigestError("malformed username*")
    charset = m.group(1).lower()
    if charset not in ("utf-8", "iso-8859-1"):
        raise DigestError("unsupported username* charset")
    try:
        return unquote_to_bytes(m.group(2)).decode(charset)
    except (UnicodeError, ValueError):
        raise DigestError("malformed username*") from None


def parse_credentials(value: str) -> DigestCredentials | None:
    """Parse an ``Authorization`` / ``Proxy-Authorization`` header value.

    Returns ``None`` when the scheme is not Digest (e.g. ``NoOneKnowsThisScheme
    opaque-data=here``, RFC 4475 section 3.3.7): the caller challenges and must not
    authenticate.  Raises :class:`DigestError` when the value is malformed: empty, bad
    auth-param syntax, unterminated quote, duplicate parameter, a required parameter missing,
    ``response``/``nc`` not hex.  Parameter names and the scheme are case-insensitive.  RFC 7616
    section 3.4 tells senders which parameters to quote (username, realm, nonce, uri, response,
    cnonce, opaque) and which not (algorithm, qop, nc); clients get it wrong both ways, so we
    accept either form for every parameter (values are hashed unquoted).  Unknown parameters
    are ignored.  ``username*`` (RFC 7616 section 3.4, RFC 5987 encoding) is decoded into
    ``username``.
    """
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        return None
    p = _parse_params(rest)

    username = p.get("username")
    ext_username = p.get("username*")
    if ext_username is not None:
        # username* replaces username for names that need it; both at once is ambiguous.
        if username is not None:
            raise DigestError("both username and username*")
        username = _decode_ext_value(ext_username)
    realm = p.get("realm")
    nonce = p.get("nonce")
    uri = p.get("uri")
    response = p.get("response")
    if username is None or realm is None or nonce is None or uri is None or response is None:
        raise DigestError("missing required parameter")
    if not nonce:
        raise DigestError("empty nonce")
    if _HEX_RE.fullmatch(response) is None:
        raise DigestError("response is not hex")

    qop = p.get("qop")
    nc = p.get("nc")
    cnonce = p.get("cnonce")
    if qop is not None:
        # cnonce and nc MUST accompany qop (RFC 2617 section 3.2.2, RFC 7616 section 3.4).
        if nc is None or cnonce is None:
            raise DigestError("qop without nc/cnonce")
        if _NC_RE.fullmatch(nc) is None:
            raise DigestError("nc is not 8 hex digits")
        if nc == "00000000":
            raise DigestError("nc is zero")
        if not cnonce:
            raise DigestError("empty cnonce")

    userhash = p.get("userhash")
    return DigestCredentials(
        username,
        realm,
        nonce,
        uri,
        response,
        p.get("algorithm"),
        qop,
        nc,
        cnonce,
        p.get("opaque"),
        userhash is not None and userhash.lower() == "true",
    )


def parse_challenge(value: str) -> dict[str, str] | None:
    """Parse a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value into its parameters.

    ``None`` if the scheme is not Digest; :class:`DigestError` if malformed or without
    ``realm``/``nonce``.  Names are lower-cased, values unquoted.
    """
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        return None
    params = _parse_params(rest)
    if "realm" not in params or "nonce" not in params:
        raise DigestError("challenge without realm/nonce")
    return params


# --------------------------------------------------------------------------------------------
# The digest computation (RFC 7616 section 3.4.1-3.4.3, RFC 3261 section 22.4)
# --------------------------------------------------------------------------------------------


def _hash_for(algorithm: str) -> HashHex:
    h = _HASHES.get(_CANONICAL.get(algorithm.lower(), ""))
    if h is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return h


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """``H(username ":" realm ":" password)`` in lower-case hex, the value to store per algorithm.

    ``algorithm`` is "MD5", "SHA-256" or "SHA-512-256" (case-insensitive); anything else,
    including the ``-sess`` variants, raises ``ValueError``.
    """
    return _hash_for(algorithm)(f"{username}:{realm}:{password}".encode())


def compute_response(
    algorithm: str,
    ha1_hex: str,
    *,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value for the given HA1 (RFC 7616 section 3.4.1).

    With ``qop``: ``KD(HA1, nonce:nc:cnonce:qop:HA2)``; without (RFC 2069): ``KD(HA1, nonce:HA2)``.
    ``HA2 = H(method:uri)``, or ``H(method:uri:H(body))`` for ``auth-int``.
    """
    h = _hash_for(algorithm)
    return _response(h, ha1_hex, nonce, method, uri, qop, nc, cnonce, body)


def _response(
    h: HashHex,
    ha1_hex: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
    body: bytes,
) -> str:
    if qop is None:
        return h(f"{ha1_hex}:{nonce}:{h(f'{method}:{uri}'.encode())}".encode())
    if qop.lower() == "auth-int":
        # A2 = Method:request-uri:H(entity-body), over the raw body bytes; an empty body
        # hashes the empty string (RFC 7616 section 3.4.3, RFC 3261 section 22.4).
        ha2 = h(f"{method}:{uri}:{h(body)}".encode())
    else:
        ha2 = h(f"{method}:{uri}".encode())
    return h(f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


# --------------------------------------------------------------------------------------------
# Request-URI comparison (RFC 7616 section 3.4.6)
# --------------------------------------------------------------------------------------------


def _uri_key(uri: str) -> tuple[str, str, str, str, str] | None:
    """(scheme, userinfo, "@", host, rest), scheme and host lower-cased; None if not scheme:..."""
    scheme, colon, rest = uri.partition(":")
    if not colon or not scheme:
        return None
    userinfo, at, hostpart = rest.rpartition("@")  # '@' cannot occur in SIP params or headers
    end = len(hostpart)
    for stop in (";", "?"):
        i = hostpart.find(stop)
        if 0 <= i < end:
            end = i
    return scheme.lower(), userinfo, at, hostpart[:end].lower(), hostpart[end:]


def uri_matches(digest_uri: str, request_uri: str) -> bool:
    """Does the credentials' ``uri`` designate the Request-URI? (RFC 7616 section 3.4.6).

    The raw strings are compared first.  Failing that, the scheme and the host(port) are
    compared case-insensitively (they are case-insensitive in RFC 3261 section 19.1.4) and
    everything else (user part, port, parameters, headers) must be identical.  We do not
    implement the full RFC 3261 section 19.1.4 equivalence (parameter order, escaping): a
    client is expected to copy the Request-URI.
    """
    if digest_uri == request_uri:
        return True
    key = _uri_key(digest_uri)
    return key is not None and key == _uri_key(request_uri)


# --------------------------------------------------------------------------------------------
# The server side
# --------------------------------------------------------------------------------------------

# Sentinel "highest nc" recorded for a nonce used without qop: above any 8-hex-digit nc, so any
# further use of the nonce, with or without qop, is a replay (single-use nonce).
_SINGLE_USE: Final = 1 << 32

_NONCE_TS: Final = 8
_NONCE_RANDOM: Final = 9
_NONCE_MAC: Final = 16
_NONCE_BYTES: Final = _NONCE_TS + _NONCE_RANDOM + _NONCE_MAC  # 33
_NONCE_CHARS: Final = _NONCE_BYTES * 4 // 3  # 44: base64url without padding
_NONCE_SIGNED: Final = _NONCE_TS + _NONCE_RANDOM

# Stored HA1 per canonical algorithm name: a mapping, or a lookup function (None: no HA1).
Ha1Source: TypeAlias = Mapping[str, str] | Callable[[str], str | None]

# base64url -> standard alphabet; '+' and '/' become invalid so that only the canonical
# urlsafe spelling of a nonce decodes (a2b_base64 strict mode rejects the '!').
_B64URL_TO_STD: Final = bytes.maketrans(b"-_+/", b"+/!!")


def _quote(value: str) -> str:
    if '"' in value or "\\" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


class DigestAuthenticator:
    """Issues challenges and verifies Digest credentials for one switch process.

    ``secret``: the nonce MAC key (32 random bytes if omitted).  Processes that must accept
    each other's nonces need the same secret and clocks that agree within ``clock_skew``; the
    nonce-count table is per process, so replay detection across processes is best effort.

    ``algorithms``: what challenges offer and what verify accepts (default SHA-256 and MD5);
    challenges list them strongest first whatever the order given.

    ``qops``: offered/accepted qop values, ``("auth",)`` by default; add ``"auth-int"`` to
    offer integrity protection of the body.  Credentials with a qop we did not offer are
    rejected (RFC 7616 section 3.4: the client picks one the server offered).

    ``allow_no_qop``: accept RFC 2069-style credentials without qop.  Such a nonce is
    single-use: a second use is REPLAY.

    Memory: one entry per nonce that authenticated at least one request, ~250 bytes each,
    dropped when the nonce expires.  At most ``max_nonces`` entries: when full, the entry that
    was created first is evicted and the "eviction floor" rises to its issue time; from then
    on a nonce issued at or before the floor that is not in the table is answered STALE (the
    client retries with a fresh nonce), never treated as fresh, so eviction cannot re-open a
    replay window.
    """

    __slots__ = (
        "_algorithms",
        "_allow_no_qop",
        "_challenge_tail",
        "_clock_skew",
        "_floor",
        "_inner",
        "_max_nonces",
        "_nonce_ttl",
        "_order",
        "_outer",
        "_qops",
        "_seen",
    )

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
        qops: Iterable[str] = ("auth",),
        nonce_ttl: float = 300.0,
        allow_no_qop: bool = False,
        max_nonces: int = 200_000,
        clock_skew: float = 2.0,
    ) -> None:
        if secret is None:
            secret = secrets.token_bytes(32)
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        algs: list[str] = []
        for a in algorithms:
            canonical = _CANONICAL.get(a.lower())
            if canonical is None:
                raise ValueError(f"unsupported digest algorithm {a!r}")
            if canonical not in algs:
                algs.append(canonical)
        if not algs:
            raise ValueError("no digest algorithm configured")
        algs.sort(key=_STRENGTH.__getitem__)  # strongest first (RFC 7616 section 3.7)
        qop_list: list[str] = []
        for q in qops:
            if q.lower() not in _QOPS:
                raise ValueError(f"unsupported qop {q!r}")
            if q.lower() not in qop_list:
                qop_list.append(q.lower())
        if not qop_list:
            raise ValueError("at least one qop must be offered (RFC 7616 makes qop mandatory)")
        if nonce_ttl <= 0 or max_nonces < 1 or clock_skew < 0:
            raise ValueError("nonce_ttl, max_nonces and clock_skew must be positive")

        self._algorithms: dict[str, HashHex] = {a: _HASHES[a] for a in algs}
        self._qops: frozenset[str] = frozenset(qop_list)
        self._nonce_ttl = float(nonce_ttl)
        self._allow_no_qop = allow_no_qop
        self._max_nonces = max_nonces
        self._clock_skew = float(clock_skew)
        qop_value = ",".join(qop_list)
        self._challenge_tail: list[str] = [f', algorithm={a}, qop="{qop_value}"' for a in algs]
        # HMAC-SHA256 (RFC 2104) with the key pads pre-hashed: one copy+update per pad per nonce
        # instead of hmac.digest()'s key setup on every call (~3x faster, same output).
        key = secret if len(secret) <= 64 else hashlib.sha256(secret).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        # nonce -> highest nc accepted; _order holds (issued, nonce) in insertion order.
        self._seen: dict[str, int] = {}
        self._order: deque[tuple[float, str]] = deque()
        self._floor = float("-inf")  # see the class docstring

    # -- nonces -------------------------------------------------------------------------------

    def _mac(self, signed: bytes, realm: str) -> bytes:
        inner = self._inner.copy()
        inner.update(signed)
        inner.update(realm.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_NONCE_MAC]

    def make_nonce(self, realm: str, now: float) -> str:
        """A fresh nonce for ``realm`` issued at ``now``."""
        signed = int(now * 1000.0).to_bytes(_NONCE_TS, "big") + secrets.token_bytes(_NONCE_RANDOM)
        return base64.urlsafe_b64encode(signed + self._mac(signed, realm)).decode("ascii")

    def _nonce_issued(self, nonce: str, realm: str) -> float | None:
        """Issue time (seconds) of a nonce we made for ``realm``, or None if forged/garbled."""
        if len(nonce) != _NONCE_CHARS:
            return None
        try:
            raw = binascii.a2b_base64(nonce.encode("ascii").translate(_B64URL_TO_STD), strict_mode=True)
        except ValueError:  # binascii.Error, or non-ASCII text (UnicodeEncodeError)
            return None
        signed = raw[:_NONCE_SIGNED]
        if not secrets.compare_digest(raw[_NONCE_SIGNED:], self._mac(signed, realm)):
            return None
        return int.from_bytes(raw[:_NONCE_TS], "big") / 1000.0

    # -- challenges ---------------------------------------------------------------------------

    def challenge(self, realm: str, now: float, *, stale: bool = False) -> list[str]:
        """``WWW-Authenticate``/``Proxy-Authenticate`` values, one per algorithm, strongest first.

        They share one nonce.  ``stale=True`` adds ``stale=true`` (RFC 7616 section 3.3) after a
        STALE or REPLAY verdict so the client retries without asking the user.  Per RFC 7616
        section 3.3, realm/nonce/qop are quoted, algorithm/stale are not.
        """
        head = f'Digest realm={_quote(realm)}, nonce="{self.make_nonce(realm, now)}"'
        if stale:
            return [head + tail + ", stale=true" for tail in self._challenge_tail]
        return [head + tail for tail in self._challenge_tail]

    # -- verification -------------------------------------------------------------------------

    def verify(
        self,
        creds: DigestCredentials | str,
        *,
        method: str,
        request_uri: str,
        realm: str,
        username: str,
        ha1_by_algorithm: Ha1Source,
        now: float,
        body: bytes = b"",
    ) -> AuthResult:
        """Verify credentials; see :meth:`verify_detailed` (same arguments) for the reason."""
        return self.verify_detailed(
            creds,
            method=method,
            request_uri=request_uri,
            realm=realm,
            username=username,
            ha1_by_algorithm=ha1_by_algorithm,
            now=now,
            body=body,
        ).result

    def verify_detailed(
        self,
        creds: DigestCredentials | str,
        *,
        method: str,
        request_uri: str,
        realm: str,
        username: str,
        ha1_by_algorithm: Ha1Source,
        now: float,
        body: bytes = b"",
    ) -> Verdict:
        """Verify credentials against the expected realm/user and the stored HA1 values.

        ``creds`` is the parsed credentials, or the raw header value (then a malformed value
        raises :class:`DigestError`, and a non-Digest scheme is FAILED).  ``method`` is the
        method hashed into A2 and ``body`` the message body (for ``auth-int`` only).
        ``ha1_by_algorithm`` maps "MD5"/"SHA-256"/"SHA-512-256" to the stored HA1 hex, or is a
        callable doing that lookup (None when there is none).  Only a successful verification
        (OK) changes state: it records the nonce count.
        """
        if isinstance(creds, str):
            parsed = parse_credentials(creds)
            if parsed is None:
                return _failed("not Digest credentials")
            creds = parsed

        # Absent algorithm means MD5 (RFC 7616 sections 3.3 and 3.4).
        alg_token = creds.algorithm
        algorithm = "MD5" if alg_token is None else _CANONICAL.get(alg_token.lower(), "")
        h = self._algorithms.get(algorithm)
        if h is None:
            return _failed(f"unsupported algorithm {alg_token!r}")
        if creds.userhash:
            return _failed("userhash not offered")
        if creds.realm != realm:
            return _failed("realm mismatch")
        if creds.username != username:
            return _failed("username mismatch")
        qop = creds.qop
        if qop is None:
            if not self._allow_no_qop:
                return _failed("credentials without qop")
        elif qop.lower() not in self._qops:
            return _failed(f"qop {qop!r} not offered")
        # The server MUST assure that uri designates the Request-URI (RFC 7616 section 3.4.6,
        # RFC 2617 section 3.2.2.5; they suggest 400, the reason string lets the caller do so).
        if creds.uri != request_uri and not uri_matches(creds.uri, request_uri):
            return _failed("uri does not match the Request-URI")

        nonce = creds.nonce
        issued = self._nonce_issued(nonce, realm)
        if issued is None:
            return _failed("forged or malformed nonce")
        age = now - issued
        if age < -self._clock_skew:
            return _failed("nonce issued in the future")

        stored = ha1_by_algorithm(algorithm) if callable(ha1_by_algorithm) else ha1_by_algorithm.get(algorithm)
        if not stored:
            return _failed(f"no {algorithm} HA1 for user")
        expected = _response(h, stored.lower(), nonce, method, creds.uri, qop, creds.nc, creds.cnonce, body)
        response = creds.response.lower()
        # Constant-time compare (compare_digest needs ASCII; the parser guarantees hex).
        if not response.isascii() or not secrets.compare_digest(expected, response):
            return _failed("wrong response")

        # The digest is right: from here on the sender knows (or replays) the credentials.
        if age > self._nonce_ttl:
            return Verdict(AuthResult.STALE, "nonce expired")
        if qop is None:
            count = _SINGLE_USE
        else:
            nc = creds.nc
            if nc is None or _NC_RE.fullmatch(nc) is None or (count := int(nc, 16)) == 0:
                return _failed("malformed nc")  # only reachable with hand-built credentials
        seen = self._seen
        highest = seen.get(nonce)
        if highest is None:
            if issued <= self._floor:
                return Verdict(AuthResult.STALE, "nonce state evicted")
            self._remember(nonce, issued, count, now)
            return _OK
        if count <= highest:
            if highest == _SINGLE_USE:
                return Verdict(AuthResult.REPLAY, "single-use nonce reused")
            return Verdict(AuthResult.REPLAY, f"nc {creds.nc} not above {highest:08x}")
        seen[nonce] = count
        return _OK

    def _remember(self, nonce: str, issued: float, count: int, now: float) -> None:
        seen, order = self._seen, self._order
        ttl = self._nonce_ttl
        # Amortised clean-up: entries are roughly in issue order, drop expired ones at the front.
        while order and now - order[0][0] > ttl:
            self._drop_oldest()
        if len(seen) >= self._max_nonces:
            self._drop_oldest()
        seen[nonce] = count
        order.append((issued, nonce))

    def _drop_oldest(self) -> None:
        issued, nonce = self._order.popleft()
        del self._seen[nonce]
        # Whatever we forget must never look fresh again (see the class docstring).
        if issued > self._floor:
            self._floor = issued

    def expire(self, now: float) -> int:
        """Drop nonce-count entries whose nonce has expired; returns how many were dropped.

        Verification already does this incrementally; call it from a periodic timer to release
        memory when traffic stops.  Entries are in first-use order, so one that expired behind
        a younger one waits for the next call (harmless: an expired nonce is STALE anyway).
        """
        order, ttl, dropped = self._order, self._nonce_ttl, 0
        while order and now - order[0][0] > ttl:
            self._drop_oldest()
            dropped += 1
        return dropped

    @property
    def tracked_nonces(self) -> int:
        """How many nonces are in the nonce-count table."""
        return len(self._seen)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The configured algorithms, strongest first."""
        return tuple(self._algorithms)


# --------------------------------------------------------------------------------------------
# The client side (tests, load generator)
# --------------------------------------------------------------------------------------------


def make_authorization(
    challenge_value: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """Build an ``Authorization`` / ``Proxy-Authorization`` value answering a challenge value.

    Uses ``qop=auth`` when offered, else ``auth-int`` (hashing ``body``), else the RFC 2069
    form.  Raises :class:`DigestError` for a malformed or non-Digest challenge and
    ``ValueError`` for an algorithm we cannot compute.  Per RFC 7616 section 3.4,
    algorithm/qop/nc are sent unquoted and everything else quoted.
    """
    params = parse_challenge(challenge_value)
    if params is None:
        raise DigestError("not a Digest challenge")
    realm, nonce = params["realm"], params["nonce"]
    algorithm = params.get("algorithm", "MD5")
    h = _hash_for(algorithm)
    offered = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in offered else "auth-int" if "auth-int" in offered else None
    secret = h(f"{username}:{realm}:{password}".encode())
    parts = [
        f"Digest username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
    ]
    if qop is None:
        response = _response(h, secret, nonce, method, uri, None, None, None, body)
        parts += [f'response="{response}"', f"algorithm={algorithm}"]
    else:
        if not 0 < nc <= 0xFFFFFFFF:
            raise ValueError("nc must fit in 8 hex digits and be positive")
        nc_hex = f"{nc:08x}"
        if cnonce is None:
            cnonce = secrets.token_urlsafe(12)
        response = _response(h, secret, nonce, method, uri, qop, nc_hex, cnonce, body)
        parts += [
            f'response="{response}"',
            f"algorithm={algorithm}",
            f"cnonce={_quote(cnonce)}",
            f"qop={qop}",
            f"nc={nc_hex}",
        ]
    if "opaque" in params:
        parts.append(f"opaque={_quote(params['opaque'])}")
    return ", ".join(parts)
