"""Field rules shared by the repositories and the API schemas (one definition of each).

The API's pydantic schemas use the patterns to answer 422 naming the field; the repositories
apply the normalising functions again so that any other writer (imports, the CLI) gets the same
guarantees.
"""

from __future__ import annotations

import ipaddress
import re

# The SIP login: RFC 3261 "user" characters we accept; no ':' or '@' so it cannot confuse the
# digest input "username:realm:password" or a SIP URI.
USERNAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
EXTENSION_PATTERN = r"^[0-9]{1,15}$"
CALLER_NUMBER_PATTERN = r"^\+?[0-9]{1,20}$"
TECH_PREFIX_PATTERN = r"^[0-9]{0,16}$"
# Goes into a quoted display-name in From headers: no quotes, backslashes or control characters.
DISPLAY_NAME_PATTERN = r'^[^"\\\x00-\x1f\x7f]{1,64}$'
# A DNS name (RFC 1123 labels), lowercase after normalisation.
DOMAIN_PATTERN = r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
# Free text (names, filters): no control characters; PostgreSQL refuses NUL in text outright.
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$"
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128

# Ids are 32-bit INTEGER columns; anything outside is simply "not found", never a database error.
MAX_ID = 2**31 - 1

_DOMAIN_RE = re.compile(DOMAIN_PATTERN)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def is_valid_id(value: int) -> bool:
    return 1 <= value <= MAX_ID


def has_lone_surrogate(value: str) -> bool:
    """True for text that cannot be encoded as UTF-8 (JSON escapes can smuggle these in)."""
    return _SURROGATE_RE.search(value) is not None


def normalize_domain(value: str) -> str:
    """Lowercase and check a customer domain; raises ValueError when it is not a DNS name."""
    domain = value.strip().lower().rstrip(".")
    if not _DOMAIN_RE.match(domain):
        raise ValueError("not a valid domain name")
    return domain


def normalize_ip(value: str) -> str:
    """The canonical text of an IPv4 or IPv6 address (what the switch sees as a source)."""
    address = ipaddress.ip_address(value.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A dual-stack socket reports IPv4 peers as plain IPv4: store them that way.
        return str(address.ipv4_mapped)
    return address.compressed


def normalize_network(value: str) -> str:
    """An address or a network (CIDR), canonical; a single address stays without /32 or /128."""
    text = value.strip()
    if "/" not in text:
        return normalize_ip(text)
    return ipaddress.ip_network(text, strict=False).compressed
