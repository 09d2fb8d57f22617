"""SIP digest credentials kept as HA1 values, never as the password.

RFC 7616 section 3.4.2: A1 = username ":" realm ":" passwd and HA1 = H(A1), in lowercase hex;
MD5 for RFC 2617 clients and SHA-256 for RFC 7616/8760 ones.  With HA1 stored the server can
verify a response, and a leak of the table does not reveal the password itself.
"""

from __future__ import annotations

import hashlib


def compute_ha1(username: str, realm: str, password: str) -> tuple[str, str]:
    """(HA1 with MD5, HA1 with SHA-256) for ``username:realm:password`` encoded as UTF-8."""
    a1 = f"{username}:{realm}:{password}".encode()
    # MD5 is what RFC 2617 digest requires, not a security choice of ours.
    return hashlib.md5(a1, usedforsecurity=False).hexdigest(), hashlib.sha256(a1).hexdigest()
