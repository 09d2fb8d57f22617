"""Exact money arithmetic shared by the vectorised and the scalar rater.

Money is never a float.  Rates and connect fees are decimals with at most 6 places, held as
integer *micro-units* (value * 10**6).  An amount under one tariff row is the exact rational

    amount = connect_fee + rate * billed / 60
           = (connect_fee_u * 60 + rate_u * billed) / (60 * 10**6)

and it is rounded half-up exactly once to ``decimals`` places, giving integer *minor units*
(amount * 10**decimals).  With ``den = 60 * 10**(6 - decimals)`` (always even) the rounded value
is ``(numerator + den // 2) // den`` because every numerator is >= 0.

int64 bounds (the vectorised engine works in int64; these limits are enforced on input, so
nothing can wrap silently):

* rate and connect fee <= ``MAX_PRICE_MICRO`` = 10**12 micro-units (1,000,000 per minute),
* a call lasts at most ``MAX_CALL_SECONDS`` (31 days),
* increments (initial and following) are at most ``MAX_INCREMENT`` seconds (one day),

so billed seconds <= 31 days + 1 day = 2,764,800 and the largest numerator is
``10**12 * 60 + 10**12 * 2,764,800 + den // 2 < 2.77 * 10**18 < 2**63 - 1 ~ 9.22 * 10**18``.
"""

from __future__ import annotations

import re
from decimal import Decimal

MICRO = 10**6
MAX_PRICE_MICRO = 10**12
MAX_CALL_SECONDS = 31 * 86_400
MAX_INCREMENT = 86_400
# grace and included seconds only ever lower the bill; the bound just keeps them in int64 land.
MAX_FREE_SECONDS = MAX_CALL_SECONDS
MAX_BILLED_SECONDS = MAX_CALL_SECONDS + MAX_INCREMENT
MAX_DECIMALS = 6
DEFAULT_DECIMALS = 4
CARRIER_DECIMALS = 4
MAX_PREFIX_DIGITS = 20

# Instants are integer milliseconds since the Unix epoch, UTC.  Deck windows use these
# sentinels for "beginning of time" / "end of time".
TIME_MIN = -(2**62)
TIME_MAX = 2**62

INT64_MAX = 2**63 - 1
assert MAX_PRICE_MICRO * 60 + MAX_PRICE_MICRO * MAX_BILLED_SECONDS + 30 * MICRO < INT64_MAX


def rounding_denominator(decimals: int) -> int:
    """``den`` such that minor units = round_half_up(numerator / den)."""
    if not 0 <= decimals <= MAX_DECIMALS:
        raise ValueError(f"billing decimals must be 0..{MAX_DECIMALS}, got {decimals}")
    return 60 * 10 ** (MAX_DECIMALS - decimals)


def round_numerator(numerator: int, decimals: int) -> int:
    """Round ``numerator / (60 * 10**6)`` (currency units) half-up to ``decimals`` places.

    Returns integer minor units.  ``numerator`` must be >= 0 (all amounts are).
    """
    if numerator < 0:
        raise ValueError("amount numerators are never negative")
    den = rounding_denominator(decimals)
    q, r = divmod(numerator, den)
    return q + 1 if 2 * r >= den else q


def format_minor(minor: int, decimals: int) -> str:
    """Minor units as a plain decimal string with exactly ``decimals`` places (``1234, 2 -> 12.34``)."""
    sign = "-" if minor < 0 else ""
    q, r = divmod(abs(minor), 10**decimals)
    if decimals == 0:
        return f"{sign}{q}"
    return f"{sign}{q}.{r:0{decimals}d}"


def minor_to_decimal(minor: int, decimals: int) -> Decimal:
    return Decimal(minor).scaleb(-decimals)


_DECIMAL_RE = re.compile(r"^(?P<int>\d*)(?:\.(?P<frac>\d*))?$")


def parse_micro(text: str, *, what: str = "value") -> int:
    """Parse a plain non-negative decimal with at most 6 places into micro-units.

    Accepted: ``12``, ``0.5``, ``.5``, ``1.``, ``0.1000000`` (trailing zeros do not count as
    places).  Refused with ``ValueError``: signs, exponents, separators, more than 6 significant
    places, empty strings.
    """
    s = text.strip()
    if s.startswith("-"):
        raise ValueError(f"negative {what} {text!r}")
    m = _DECIMAL_RE.match(s)
    if m is None or not (m.group("int") or m.group("frac")):
        raise ValueError(f"{what} {text!r} is not a plain decimal number")
    int_part = m.group("int") or "0"
    frac = (m.group("frac") or "").rstrip("0")
    if len(frac) > MAX_DECIMALS:
        raise ValueError(f"{what} {text!r} has more than {MAX_DECIMALS} decimal places")
    int_part = int_part.lstrip("0") or "0"
    if len(int_part) > 15:  # far beyond any bound; keeps int() cheap on garbage input
        raise ValueError(f"{what} {text!r} is too large")
    return int(int_part) * MICRO + int(frac.ljust(MAX_DECIMALS, "0"))


def parse_signed_micro(text: str, *, what: str = "value") -> int:
    """Like :func:`parse_micro` but accepts a leading ``-`` or ``+`` (markup percentages)."""
    s = text.strip()
    if s[:1] in "+-" and s:
        value = parse_micro(s[1:], what=what)
        return -value if s[0] == "-" else value
    return parse_micro(s, what=what)


def micro_to_decimal(micro: int) -> Decimal:
    return Decimal(micro).scaleb(-MAX_DECIMALS)


def apply_markup(price_micro: int, markup_micro_percent: int) -> int:
    """``price * (1 + markup/100)`` rounded half-up to 6 places, all in integers.

    ``markup_micro_percent`` is the markup percentage in micro-units (25% -> 25_000_000).
    """
    num = price_micro * (100 * MICRO + markup_micro_percent)
    den = 100 * MICRO
    if num < 0:
        raise ValueError("markup makes a price negative")
    q, r = divmod(num, den)
    return q + 1 if 2 * r >= den else q


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)
