"""A deliberately tiny UDP registrar, so the harness's REGISTER paths can be proven without the switch.

It answers REGISTER only: an optional fixed rejection, else a digest challenge
(RFC 2617, MD5, no qop) followed by 200 OK for the right password or
``bad_auth_code`` for a wrong one.  It is a test double, not a SIP stack.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import threading
from types import TracebackType

_DIGEST_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]+))')
_REASONS = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 503: "Service Unavailable"}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _parse(message: str) -> tuple[str, list[tuple[str, str]]]:
    """Start line and (lower-case name, value) pairs, in order (Via order matters in responses)."""
    head = message.replace("\r\n", "\n").split("\n\n", 1)[0].split("\n")
    headers = []
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return head[0], headers


class StubRegistrar:
    """Serve REGISTER on 127.0.0.1 from a background thread; use as a context manager.

    ``reject_code`` answers every REGISTER with that status.  Otherwise
    requests without credentials get 401 with a challenge, correct
    credentials 200 OK (echoing the Contact with its expiry), and wrong ones
    ``bad_auth_code`` (401 re-challenges, as many registrars do; 403 refuses).
    """

    def __init__(
        self,
        users: dict[str, str] | None = None,
        *,
        realm: str = "trunkline.test",
        reject_code: int | None = None,
        bad_auth_code: int = 401,
    ) -> None:
        self.users = users if users is not None else {}
        self.realm = realm
        self.reject_code = reject_code
        self.bad_auth_code = bad_auth_code
        self.nonce = secrets.token_hex(8)
        self.received: list[str] = []
        self.bindings: dict[str, int] = {}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stub-registrar", daemon=True)

    @property
    def uri(self) -> str:
        """Registrar URI for ``Phone.register``."""
        return f"sip:127.0.0.1:{self.port}"

    def __enter__(self) -> StubRegistrar:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            text = data.decode("utf-8", errors="replace")
            if text.startswith("REGISTER "):
                self.received.append(text)
                self._sock.sendto(self._answer(text).encode(), addr)

    def _answer(self, request: str) -> str:
        _, headers = _parse(request)
        if self.reject_code is not None:
            return self._response(self.reject_code, headers)
        auth = next((v for k, v in headers if k == "authorization"), None)
        if auth is None:
            return self._response(401, headers, [self._challenge()])
        params = {m[0].lower(): m[1] or m[2] for m in _DIGEST_PARAM.findall(auth)}
        user = params.get("username", "")
        password = self.users.get(user)
        expected = None
        if password is not None:
            ha1 = _md5(f"{user}:{params.get('realm', '')}:{password}")
            ha2 = _md5(f"REGISTER:{params.get('uri', '')}")
            expected = _md5(f"{ha1}:{params.get('nonce', '')}:{ha2}")
        if expected is None or params.get("response") != expected or params.get("nonce") != self.nonce:
            extra = [self._challenge()] if self.bad_auth_code == 401 else []
            return self._response(self.bad_auth_code, headers, extra)
        expires = int(next((v for k, v in headers if k == "expires"), "3600"))
        contacts = [v for k, v in headers if k in ("contact", "m")]
        if expires == 0 or any("expires=0" in c for c in contacts):
            self.bindings.pop(user, None)
            return self._response(200, headers)
        self.bindings[user] = expires
        return self._response(200, headers, [f"Contact: {c};expires={expires}" for c in contacts])

    def _challenge(self) -> str:
        return f'WWW-Authenticate: Digest realm="{self.realm}", nonce="{self.nonce}", algorithm=MD5'

    def _response(self, code: int, headers: list[tuple[str, str]], extra: list[str] | None = None) -> str:
        copied = []
        for name, value in headers:
            if name in ("via", "v"):
                copied.append(f"Via: {value}")
            elif name in ("from", "f"):
                copied.append(f"From: {value}")
            elif name in ("to", "t"):
                copied.append(f"To: {value}" + ("" if ";tag=" in value else ";tag=stub"))
            elif name in ("call-id", "i"):
                copied.append(f"Call-ID: {value}")
            elif name == "cseq":
                copied.append(f"CSeq: {value}")
        lines = [f"SIP/2.0 {code} {_REASONS.get(code, 'Whatever')}", *copied, *(extra or []), "Content-Length: 0"]
        return "\r\n".join(lines) + "\r\n\r\n"
