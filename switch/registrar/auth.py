"""Who sent this request: digest authentication of devices, shared by REGISTER and INVITE.

RFC 3261 section 22 with RFC 7616/8760 digests (see :mod:`switch.sip.digest`), behind a
brute-force guard (:mod:`switch.registrar.guard`): repeated failures from one source address
are answered more slowly, then not at all for a while.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from switch.ports import DeviceInfo, Directory
from switch.registrar.guard import AuthGuard, GuardEvent
from switch.sip.digest import AuthResult, DigestAuthenticator, DigestCredentials, DigestError, parse_credentials
from switch.sip.message import SipMessage
from switch.transaction.peer import Peer

log = logging.getLogger("trunkline.auth")

OK = "ok"
CHALLENGE = "challenge"
FORBIDDEN = "forbidden"
BLOCKED = "blocked"
BAD = "bad"


@dataclass(slots=True)
class AuthDecision:
    kind: str  # OK, CHALLENGE, FORBIDDEN, BLOCKED (drop silently), BAD (400)
    device: DeviceInfo | None = None
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] | None = None  # the challenge header fields
    delay: float = 0.0  # seconds to hold the answer back (brute-force slow-down)
    event: GuardEvent | None = None  # set when this failure started a block


@lru_cache(maxsize=4096)
def _networks(allowed: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for item in allowed:
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            log.warning("ignoring malformed allowed source %r", item)
    return tuple(nets)


def source_allowed(ip: str, allowed: tuple[str, ...]) -> bool:
    """Is ``ip`` one of the device's allowed addresses or inside one of its networks (CIDR)?"""
    if ip in allowed:
        return True
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in _networks(allowed))


class DeviceAuth:
    """Authenticates requests from SIP devices by digest; answers what to send otherwise."""

    def __init__(self, directory: Directory, digest: DigestAuthenticator, guard: AuthGuard, *,
                 default_realm: str = "trunkline", check_uri: bool = False) -> None:
        self.directory = directory
        # RFC 7616 3.4.6 lets the server check that the digest "uri" names the Request-URI.  Off
        # by default: SIPp (the carriers' load tool) and some devices put the registrar's
        # address there for every request, and nonce-count replay protection already stops a
        # captured response from being reused for another request.
        self.check_uri = check_uri
        self.digest = digest
        self.guard = guard
        self.default_realm = default_realm
        self.failures = 0
        self.blocks = 0
        # Told when a failure starts a block: (source ip, blocked until, wall clock).
        self.on_block: Callable[[str, float], None] | None = None

    def authenticate(self, msg: SipMessage, peer: Peer, now: float, *, proxy: bool) -> AuthDecision:
        """``proxy`` selects Proxy-Authorization/407 (INVITE) over Authorization/401 (REGISTER).

        RFC 3261 section 22.3: a UAS/registrar challenges with 401 and WWW-Authenticate; a
        B2BUA or proxy authenticating a caller uses 407 and Proxy-Authenticate.
        """
        guard = self.guard
        decision = guard.check(peer.ip, now)
        if decision.blocked:
            return AuthDecision(BLOCKED, reason="source blocked after repeated authentication failures")
        header = "proxy-authorization" if proxy else "authorization"
        creds: DigestCredentials | None = None
        for value in msg.headers.get(header, ()):
            try:
                parsed = parse_credentials(value)
            except DigestError as exc:
                return AuthDecision(BAD, status=400, reason=f"Malformed {header.title()}: {exc.reason}")
            if parsed is not None:  # None: another scheme (RFC 4475 3.3.7): never authenticates
                creds = parsed
                break
        if creds is None:
            return self._challenge(msg, now, proxy=proxy, stale=False)
        device = self.directory.device_by_username(creds.username)
        if device is None:
            return self._failure(peer, now, f"unknown user {creds.username!r}")
        verdict = self.digest.verify_detailed(
            creds, method=msg.method, request_uri=msg.uri if self.check_uri else creds.uri, realm=device.realm,
            username=device.username,
            ha1_by_algorithm={"MD5": device.ha1_md5, "SHA-256": device.ha1_sha256}, now=now, body=msg.body,
        )
        result = verdict.result
        if result is AuthResult.OK:
            guard.success(peer.ip, now)
            if not device.active:
                return AuthDecision(FORBIDDEN, device=device, status=403, reason="Device disabled")
            if device.allowed_ips and not source_allowed(peer.ip, device.allowed_ips):
                return AuthDecision(FORBIDDEN, device=device, status=403, reason="Source address not allowed")
            return AuthDecision(OK, device=device)
        if result is AuthResult.STALE or result is AuthResult.REPLAY:
            # RFC 7616 section 3.3: the password was right, the nonce was not: stale=true lets
            # the client retry at once without prompting.
            return self._challenge(msg, now, proxy=proxy, stale=True, realm=device.realm)
        return self._failure(peer, now, f"{creds.username}: {verdict.reason}")

    def challenge(self, msg: SipMessage, now: float, *, proxy: bool) -> AuthDecision:
        """A fresh challenge for a request that carried no credentials."""
        return self._challenge(msg, now, proxy=proxy, stale=False)

    def _challenge(self, msg: SipMessage, now: float, *, proxy: bool, stale: bool,
                   realm: str | None = None) -> AuthDecision:
        if realm is None:
            realm = self._realm_for(msg, proxy=proxy)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        values = self.digest.challenge(realm, now, stale=stale)
        status = 407 if proxy else 401
        reason = "Proxy Authentication Required" if proxy else "Unauthorized"
        return AuthDecision(CHALLENGE, status=status, reason=reason, headers=[(name, v) for v in values])

    def _realm_for(self, msg: SipMessage, *, proxy: bool) -> str:
        """The realm to challenge with: the device's, guessed from the From (or To) user."""
        try:
            user = (msg.from_ if proxy else msg.to).parsed_uri.user_unescaped
        except Exception:
            user = None
        if user:
            device = self.directory.device_by_username(user)
            if device is not None:
                return device.realm
        return self.default_realm

    def _failure(self, peer: Peer, now: float, why: str) -> AuthDecision:
        self.failures += 1
        event = self.guard.failure(peer.ip, now)
        delay = self.guard.check(peer.ip, now).delay
        if event is not None:
            self.blocks += 1
            if self.on_block is not None:
                self.on_block(peer.ip, event.blocked_until)
            log.warning("blocking %s for %.0f s after %d authentication failures (last: %s)",
                        peer.ip, event.blocked_until - now, event.failures, why)
        else:
            log.info("authentication failed from %s: %s", peer.ip, why)
        return AuthDecision(FORBIDDEN, status=403, reason="Forbidden", delay=delay, event=event)
