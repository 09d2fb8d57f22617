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


# --- Customer and reseller fields (OV500 customer form, iPECS OMS) -------------------------------

# OV500: web access user name, alphanumeric, at most 30.  '.', '_' and '-' are allowed too; '@'
# is not, which keeps customer logins apart from administrator logins (those are e-mail style).
WEB_USERNAME_PATTERN = r"^[A-Za-z0-9._-]{1,30}$"
ADMIN_USERNAME_PATTERN = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,100}$"
WEB_PASSWORD_MIN_LENGTH = 8
WEB_PASSWORD_MAX_LENGTH = 30  # OV500: "max length 30"
# An e-mail address: a practical subset of RFC 5322 (no quoted local parts, no IP literals).
EMAIL_PATTERN = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
CUSTOMER_EMAIL_MAX_LENGTH = 30  # OV500
# A telephone number: E.164 digits (6 to 15), optionally written with a leading '+'.  OV500 says
# "a valid phone number of 10 digits", which only fits North America and India.
PHONE_PATTERN = r"^\+?[0-9]{6,15}$"
# A postal (PIN) code: letters, digits, one space or dash between groups (UK "SW1A 1AA", "560001").
PIN_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9 -]{0,10}[A-Za-z0-9])?$"
# Tenant-chosen account codes; "C" + 9 digits is reserved for the generated ones.
ACCOUNT_CODE_PATTERN = r"^(?!C[0-9]{9}$)[A-Za-z0-9_-]{1,20}$"
GENERATED_ACCOUNT_CODE = "C{id:09d}"
DIGITS_PATTERN = r"^[0-9]{1,20}$"
# A number-translation prefix: digits with an optional leading '+'; empty matches everything.
TRANSLATION_PATTERN = r"^\+?[0-9]{0,20}$"
PREFIX_PATTERN = r"^[0-9]{0,20}$"
HOST_PATTERN = (
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
SIP_URI_PATTERN = r"^sips?:[^\s\x00-\x1f\x7f<>\"]{1,250}$"

# Codecs a customer may allow (names as in SDP rtpmap, RFC 3551 / RFC 7587).
CODECS = ("PCMU", "PCMA", "G722", "G729", "GSM", "iLBC", "opus", "telephone-event")

# ISO 3166-1 alpha-2 country codes (officially assigned).
COUNTRIES = frozenset(
    (
        "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
        "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
        "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
        "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
        "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
        "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
        "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
        "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
        "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
        "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
        "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
        "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
        "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
        "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
        "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
        "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
    )
)  # fmt: skip

# ISO 4217 currency codes in circulation (funds, metals and test codes left out: nobody is billed
# in troy ounces of gold).
CURRENCIES = frozenset(
    (
        "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD",
        "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP",
        "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP",
        "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
        "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD",
        "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN",
        "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB",
        "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL",
        "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND",
        "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
    )
)  # fmt: skip


def is_time_zone(name: str) -> bool:
    """True for an IANA time zone name that zoneinfo can load (``Europe/London``, ``UTC``)."""
    if not name or len(name) > 64 or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        return False
    return name in _zones()


_ZONES: frozenset[str] | None = None


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        import zoneinfo

        _ZONES = frozenset(zoneinfo.available_timezones())
    return _ZONES


def is_strong_web_password(password: str) -> bool:
    """OV500's rule: 8 or more characters with a capital letter, a digit and a special character."""
    return (
        WEB_PASSWORD_MIN_LENGTH <= len(password) <= WEB_PASSWORD_MAX_LENGTH
        and any(c.isupper() for c in password)
        and any(c.isdigit() for c in password)
        and any(not c.isalnum() and not c.isspace() for c in password)
        and not any(ord(c) < 32 or ord(c) == 127 for c in password)
    )


WEB_PASSWORD_RULE = (
    f"{WEB_PASSWORD_MIN_LENGTH} to {WEB_PASSWORD_MAX_LENGTH} characters with at least one capital letter, "
    "one digit and one special character"
)
