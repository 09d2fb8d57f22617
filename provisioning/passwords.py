"""Web login passwords (customers' self-care, resellers' administrators), stored as scrypt hashes.

A login password is chosen by a person, so unlike API tokens it can be guessed: it is stored as
``scrypt$N$r$p$salt$hash`` (RFC 7914, a fresh 16-byte salt per password, base64 fields), which
makes every guess against a leaked table cost memory and time.  N = 2**14, r = 8, p = 1 is
RFC 7914's interactive-login setting (~16 MiB, tens of milliseconds).

``verify_password`` compares in constant time and never raises on a malformed stored value (a
hand-edited row must not turn a login into a 500).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_DKLEN = 32
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int | None = None) -> str:
    """The storable hash of ``password``.  ``n`` lowers the cost (tests, bulk imports of test data)."""
    cost = n or SCRYPT_N
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=cost, r=SCRYPT_R, p=SCRYPT_P, dklen=_DKLEN, maxmem=_MAXMEM
    )
    return f"scrypt${cost}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        # Burn about the same time as a real check: an unknown login must not answer faster.
        hash_password(password)
        return False
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode("utf-8", "surrogatepass"),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)
