"""The rating book: tariffs, the account tree, carriers and bundles (spec: "Who pays whom").

Both raters work from the same :class:`RatingBook`; it is plain data, validated once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rating.deck import Deck
from rating.money import DEFAULT_DECIMALS, MAX_CALL_SECONDS, MAX_DECIMALS, MAX_PREFIX_DIGITS

RESELLER = "reseller"
CUSTOMER = "customer"

# Bundle sizes: minutes * quantity * 60 must stay far inside int64; a year of seconds per
# bundle per month is already absurd.
MAX_BUNDLE_SECONDS = 10**12


class BookError(ValueError):
    """The account tree, carriers or bundles are inconsistent; nothing may be rated."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:200]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"{len(problems)} problem(s):\n  " + "\n  ".join(shown) + more)


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    parent_id: int | None
    kind: Literal["reseller", "customer"]
    tariff: str
    billing_decimals: int = DEFAULT_DECIMALS
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Carrier:
    id: int
    tariff: str


@dataclass(frozen=True, slots=True)
class Bundle:
    id: int
    account_id: int
    zone_prefixes: tuple[str, ...]
    minutes: int
    quantity: int

    @property
    def seconds(self) -> int:
        """Seconds per calendar month."""
        return self.minutes * self.quantity * 60


@dataclass(frozen=True, eq=False)
class RatingBook:
    """Everything a call needs to be rated, keyed the way CDRs refer to it."""

    tariffs: Mapping[str, Deck]
    accounts: Sequence[Account]
    carriers: Sequence[Carrier] = ()
    bundles: Sequence[Bundle] = ()
    account_by_id: dict[int, Account] = field(init=False, repr=False)
    carrier_by_id: dict[int, Carrier] = field(init=False, repr=False)
    chains: dict[int, tuple[int, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        by_id: dict[int, Account] = {}
        for a in self.accounts:
            if a.id in by_id:
                problems.append(f"account {a.id}: duplicate id")
            by_id[a.id] = a
            if a.kind not in (RESELLER, CUSTOMER):
                problems.append(f"account {a.id}: kind must be reseller or customer, got {a.kind!r}")
            if a.tariff not in self.tariffs:
                problems.append(f"account {a.id}: unknown tariff {a.tariff!r}")
            if not 0 <= a.billing_decimals <= MAX_DECIMALS:
                problems.append(f"account {a.id}: billing_decimals must be 0..{MAX_DECIMALS}")
            try:
                ZoneInfo(a.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(f"account {a.id}: unknown time zone {a.timezone!r}")
        for a in self.accounts:
            if a.parent_id is None:
                continue
            parent = by_id.get(a.parent_id)
            if parent is None:
                problems.append(f"account {a.id}: unknown parent {a.parent_id}")
            elif parent.kind != RESELLER:
                problems.append(f"account {a.id}: parent {a.parent_id} is not a reseller")
        chains: dict[int, tuple[int, ...]] = {}
        if not problems:
            for a in self.accounts:
                chain = [a.id]
                seen = {a.id}
                cur = a
                while cur.parent_id is not None:
                    if cur.parent_id in seen:
                        problems.append(f"account {a.id}: the account tree has a cycle")
                        break
                    seen.add(cur.parent_id)
                    chain.append(cur.parent_id)
                    cur = by_id[cur.parent_id]
                chains[a.id] = tuple(chain)
        carriers: dict[int, Carrier] = {}
        for c in self.carriers:
            if c.id in carriers:
                problems.append(f"carrier {c.id}: duplicate id")
            carriers[c.id] = c
            if c.tariff not in self.tariffs:
                problems.append(f"carrier {c.id}: unknown tariff {c.tariff!r}")
        bundle_ids: set[int] = set()
        for b in self.bundles:
            if b.id in bundle_ids:
                problems.append(f"bundle {b.id}: duplicate id")
            bundle_ids.add(b.id)
            acc = by_id.get(b.account_id)
            if acc is None:
                problems.append(f"bundle {b.id}: unknown account {b.account_id}")
            elif acc.kind != CUSTOMER:
                problems.append(f"bundle {b.id}: account {b.account_id} is not a customer")
            if not b.zone_prefixes:
                problems.append(f"bundle {b.id}: no zone prefixes")
            for p in b.zone_prefixes:
                if not (p.isascii() and p.isdigit() and 1 <= len(p) <= MAX_PREFIX_DIGITS):
                    problems.append(f"bundle {b.id}: zone prefix {p!r} is not 1-{MAX_PREFIX_DIGITS} digits")
            if b.minutes < 0 or b.quantity < 0:
                problems.append(f"bundle {b.id}: minutes and quantity must be >= 0")
            elif b.seconds > MAX_BUNDLE_SECONDS:
                problems.append(f"bundle {b.id}: too large")
        if problems:
            raise BookError(problems)
        object.__setattr__(self, "account_by_id", by_id)
        object.__setattr__(self, "carrier_by_id", carriers)
        object.__setattr__(self, "chains", chains)

    @property
    def max_depth(self) -> int:
        """Number of levels of the deepest customer chain (customer = 1)."""
        return max((len(c) for c in self.chains.values()), default=1)


# Re-exported for callers that validate CDRs against the same bound.
MAX_DURATION_MS = MAX_CALL_SECONDS * 1000
