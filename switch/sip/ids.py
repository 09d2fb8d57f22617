"""Tags, Call-IDs and branches the switch makes (RFC 3261 sections 19.3, 8.1.1.4, 8.1.1.7).

RFC 3261 19.3: tags MUST be globally unique and cryptographically random with at least 32 bits
of randomness.  The same goes, in practice, for Call-IDs and branches: in-dialog requests and
responses are matched by them, so a predictable value would let any peer that has seen one of
the switch's messages forge requests in other customers' calls.  Every identifier therefore
carries 64 random bits from the operating system's CSPRNG, drawn from a buffer refilled in
blocks (one os.urandom call per 512 identifiers keeps the cost at a fraction of a microsecond).
"""

from __future__ import annotations

import os

_BLOCK = 4096  # bytes: 512 identifiers of 8 random bytes
_pool = b""
_pos = _BLOCK


def _random_hex() -> str:
    """16 hex digits (64 bits) of CSPRNG output."""
    global _pool, _pos
    if _pos >= _BLOCK:
        _pool = os.urandom(_BLOCK)
        _pos = 0
    chunk = _pool[_pos:_pos + 8]
    _pos += 8
    return chunk.hex()


def new_tag() -> str:
    return _random_hex()


def new_call_id() -> str:
    return f"{_random_hex()}{_random_hex()}@trunkline"


# Every branch of this process starts with this prefix, so that a request of ours that comes back
# to us is recognised as a loop (RFC 3261 16.3 item 4); the random part makes it unguessable.
BRANCH_PREFIX = "z9hG4bK" + os.urandom(4).hex() + "."


def new_branch() -> str:
    """A branch unique in space and time and unguessable (RFC 3261 section 8.1.1.7)."""
    return BRANCH_PREFIX + _random_hex()


# Crockford's base 32 (no I, L, O, U): the alphabet of ULIDs.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_attempt_id(wall_ms: int) -> str:
    """The id of one call attempt (``CdrRecord.call_id``): a ULID (https://github.com/ulid/spec),
    26 characters of Crockford base 32, the first 10 the wall-clock milliseconds (48 bits), the
    other 16 random (80 bits from the CSPRNG).

    Unique across restarts, processes and machines without coordination (two ids of the same
    millisecond collide with probability 2**-80), sortable by creation time as plain strings
    (to the millisecond; ids of one millisecond in random order), and not chosen by any caller:
    unlike the caller's Call-ID, it is a key billing can trust."""
    value = (max(0, wall_ms) & ((1 << 48) - 1)) << 80 | int(_random_hex() + _random_hex()[:4], 16)
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))
