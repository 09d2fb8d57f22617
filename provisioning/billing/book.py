"""The rating book from the database, and a cache of it refreshed from the change feed.

Mapping (docs/billing.md "The rating book"):

- every customer is an :class:`~rating.book.Account` of kind ``customer`` with its own tariff,
  billing decimals and time zone; its parent is its reseller;
- every reseller is an account of kind ``reseller`` rated with the tariff it *buys on*
  (``resellers.tariff_id``: what it owes its parent).  Customer and reseller ids share one
  number space in the engine, so a reseller's engine id is ``RESELLER_ID_OFFSET + id``;
- every carrier with its buy tariff;
- every bundle a customer holds of its *current* plan: engine bundle id
  ``call_bundles.id << 32 | customer id`` (unique per customer, and ordered like the plan's
  bundle ids, which decide ties between equally long zone prefixes);
- an account or carrier without a tariff rates with an empty deck: a customer's calls are then
  ``no_rate``, a reseller's or carrier's amount is empty.

Decks are loaded straight into the rating package's canonical frame (the database only holds
decks that :func:`rating.deck.parse_deck` accepted) and cached per tariff; a change-feed row
``tariff`` drops that tariff and every tariff derived from it.  The compiled book is rebuilt
only when what rating sees actually differs (a new customer, another tariff or bundle): a
customer's credit limit or name changing costs one comparison.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provisioning.models import (
    ENTITY_CUSTOMER,
    ENTITY_PLAN,
    ENTITY_RESELLER,
    ENTITY_ROUTING,
    ENTITY_TARIFF,
    CallBundle,
    Carrier,
    Customer,
    CustomerBundle,
    Rate,
    Reseller,
    Tariff,
)
from provisioning.repo.changes import changes_after, latest_change_id
from rating.book import Account, Bundle, RatingBook
from rating.book import Carrier as BookCarrier
from rating.deck import DECK_SCHEMA, Deck, derive_deck
from rating.engine import CompiledBook
from rating.money import TIME_MAX, TIME_MIN

log = logging.getLogger(__name__)

RESELLER_ID_OFFSET = 1 << 40
BUNDLE_SHIFT = 32
NO_TARIFF = "-"  # the empty deck of accounts and carriers without a tariff
# Change-feed entities that can change what a call costs.
RATING_ENTITIES = frozenset({ENTITY_CUSTOMER, ENTITY_RESELLER, ENTITY_ROUTING, ENTITY_PLAN, ENTITY_TARIFF})
# Reload everything after this long without looking at the feed: older rows may be pruned.
FULL_RELOAD_AFTER = 1800.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MICRO = Decimal(10**6)


def reseller_engine_id(reseller_id: int) -> int:
    return RESELLER_ID_OFFSET + reseller_id


def engine_bundle_id(customer_id: int, bundle_id: int) -> int:
    return (bundle_id << BUNDLE_SHIFT) | customer_id


def tariff_key(tariff_id: int | None) -> str:
    return NO_TARIFF if tariff_id is None else f"t{tariff_id}"


@dataclass(frozen=True, slots=True)
class BillingCustomer:
    id: int
    timezone: str
    decimals: int
    live: bool  # LIVE customers are charged; DEMO ones are rated but never charged


@dataclass(frozen=True, slots=True)
class BundleInfo:
    engine_id: int
    customer_id: int
    bundle_id: int  # call_bundles.id
    seconds: int  # allowance per calendar month


@dataclass(frozen=True, eq=False)
class LoadedBook:
    """A compiled rating book and what the billing needs around it."""

    version: int  # the change-feed id it reflects (at least)
    book: RatingBook
    compiled: CompiledBook
    customers: Mapping[int, BillingCustomer]
    carriers: frozenset[int]
    bundles: Mapping[int, BundleInfo]  # by engine id
    bundle_customers: frozenset[int]
    inputs: tuple[object, ...] = field(repr=False)


# -- reading the database -------------------------------------------------------------------------


def _ms(value: datetime | None, default: int) -> int:
    if value is None:
        return default
    return (value.astimezone(UTC) - _EPOCH) // _MS


def _micro(value: Decimal) -> int:
    return int((value * _MICRO).to_integral_value())


def load_own_deck(session: Session, tariff: Tariff) -> Deck:
    """A tariff's own rows as a canonical deck (no derivation)."""
    columns = (
        Rate.prefix,
        Rate.destination,
        Rate.rate,
        Rate.connect_fee,
        Rate.initial_increment,
        Rate.increment,
        Rate.grace_seconds,
        Rate.included_seconds,
        Rate.effective_from,
        Rate.effective_to,
    )
    rows = session.execute(select(*columns).where(Rate.tariff_id == tariff.id).order_by(Rate.id)).all()
    data: dict[str, list[object]] = {name: [] for name in DECK_SCHEMA}
    for i, (prefix, dest, rate, fee, init, inc, grace, incl, start, end) in enumerate(rows):
        data["row"].append(i + 2)
        data["prefix"].append(prefix)
        data["destination"].append(dest or "")
        data["rate"].append(_micro(rate))
        data["connect_fee"].append(_micro(fee))
        data["initial_increment"].append(init)
        data["increment"].append(inc)
        data["grace_seconds"].append(grace)
        data["included_seconds"].append(incl)
        data["effective_from"].append(_ms(start, TIME_MIN))
        data["effective_to"].append(_ms(end, TIME_MAX))
        data["source"].append(tariff.name)
    return Deck(pl.DataFrame(data, schema=DECK_SCHEMA), tariff.name)


@dataclass
class _Inputs:
    accounts: tuple[Account, ...]
    carriers: tuple[BookCarrier, ...]
    bundles: tuple[Bundle, ...]
    tariffs: tuple[tuple[int, int | None, Decimal | None], ...]  # id, base, markup
    customers: dict[int, BillingCustomer]

    def key(self) -> tuple[object, ...]:
        return (self.accounts, self.carriers, self.bundles, self.tariffs)


def _zone(name: str, what: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.error("%s has the time zone %r, unknown to this machine's tzdata; rating it in UTC", what, name)
        return "UTC"
    return name


def _read_inputs(session: Session) -> _Inputs:
    accounts: list[Account] = []
    for rid, parent, tariff_id, decimals, zone in session.execute(
        select(Reseller.id, Reseller.parent_id, Reseller.tariff_id, Reseller.billing_decimals, Reseller.timezone)
        .order_by(Reseller.id)
    ):
        accounts.append(
            Account(
                reseller_engine_id(rid),
                None if parent is None else reseller_engine_id(parent),
                "reseller",
                tariff_key(tariff_id),
                decimals,
                _zone(zone, f"reseller {rid}"),
            )
        )
    customers: dict[int, BillingCustomer] = {}
    for cid, reseller_id, tariff_id, decimals, zone, ctype in session.execute(
        select(
            Customer.id,
            Customer.reseller_id,
            Customer.tariff_id,
            Customer.billing_decimals,
            Customer.timezone,
            Customer.customer_type,
        ).order_by(Customer.id)
    ):
        zone = _zone(zone, f"customer {cid}")
        accounts.append(
            Account(
                cid,
                None if reseller_id is None else reseller_engine_id(reseller_id),
                "customer",
                tariff_key(tariff_id),
                decimals,
                zone,
            )
        )
        customers[cid] = BillingCustomer(cid, zone, decimals, ctype != "DEMO")
    carriers = tuple(
        BookCarrier(cid, tariff_key(tid))
        for cid, tid in session.execute(select(Carrier.id, Carrier.tariff_id).order_by(Carrier.id))
    )
    bundles: list[Bundle] = []
    for customer_id, bundle_id, quantity, minutes, zones in session.execute(
        select(
            CustomerBundle.customer_id,
            CustomerBundle.bundle_id,
            CustomerBundle.quantity,
            CallBundle.minutes,
            CallBundle.zone_prefixes,
        )
        .join(CallBundle, CallBundle.id == CustomerBundle.bundle_id)
        .join(Customer, Customer.id == CustomerBundle.customer_id)
        .where(Customer.service_plan_id == CallBundle.service_plan_id, CustomerBundle.quantity > 0)
        .order_by(CustomerBundle.customer_id, CustomerBundle.bundle_id)
    ):
        prefixes = tuple(sorted({str(p) for p in zones or ()}))
        if not prefixes:
            continue
        bundles.append(Bundle(engine_bundle_id(customer_id, bundle_id), customer_id, prefixes, minutes, quantity))
    tariffs = tuple(
        (tid, base, markup)
        for tid, base, markup in session.execute(
            select(Tariff.id, Tariff.base_tariff_id, Tariff.markup_percent).order_by(Tariff.id)
        )
    )
    return _Inputs(tuple(accounts), carriers, tuple(bundles), tariffs, customers)


class BookLoader:
    """Builds :class:`LoadedBook` objects, keeping resolved decks between builds."""

    def __init__(self) -> None:
        self._decks: dict[int, Deck] = {}

    def forget(self, tariff_ids: Iterable[int] | None, parents: Mapping[int, int | None]) -> None:
        """Drop cached decks: ``None`` = all; else these tariffs and every tariff derived from them."""
        if tariff_ids is None:
            self._decks.clear()
            return
        gone = set(tariff_ids)
        changed = True
        while changed:
            changed = False
            for tid, base in parents.items():
                if base in gone and tid not in gone:
                    gone.add(tid)
                    changed = True
        for tid in gone:
            self._decks.pop(tid, None)

    def _deck(self, session: Session, tariff_id: int, meta: dict[int, Tariff], seen: tuple[int, ...] = ()) -> Deck:
        cached = self._decks.get(tariff_id)
        if cached is not None:
            return cached
        tariff = meta[tariff_id]
        if tariff_id in seen:
            raise ValueError(f"tariff {tariff_id} derives from itself")
        own = load_own_deck(session, tariff)
        if tariff.base_tariff_id is None:
            deck = own
        else:
            base = self._deck(session, tariff.base_tariff_id, meta, (*seen, tariff_id))
            deck = derive_deck(base, tariff.markup_percent or Decimal(0), own if len(own) else None,
                               source=tariff.name)
        self._decks[tariff_id] = deck
        return deck

    def load(self, session: Session, *, version: int | None = None, previous: LoadedBook | None = None) -> LoadedBook:
        """The book as the database has it now (``version``: the change id read before reading)."""
        if version is None:
            version = latest_change_id(session)
        inputs = _read_inputs(session)
        meta = {t.id: t for t in session.scalars(select(Tariff))}
        parents = {tid: t.base_tariff_id for tid, t in meta.items()}
        for tid in list(self._decks):
            if tid not in meta:
                self.forget([tid], parents)
        used = {a.tariff for a in inputs.accounts} | {c.tariff for c in inputs.carriers}
        decks_before = dict(self._decks)
        tariffs: dict[str, Deck] = {NO_TARIFF: Deck(pl.DataFrame(schema=DECK_SCHEMA), "no tariff")}
        for key in sorted(used - {NO_TARIFF}):
            tid = int(key[1:])
            tariffs[key] = self._deck(session, tid, meta) if tid in meta else tariffs[NO_TARIFF]
        same_decks = all(decks_before.get(int(k[1:])) is d for k, d in tariffs.items() if k != NO_TARIFF)
        if previous is not None and same_decks and previous.inputs == inputs.key():
            return replace(previous, version=version)
        accounts = inputs.accounts
        if not accounts and not inputs.carriers:
            # rating.engine.CompiledBook cannot compile a book without any account or carrier
            # (IndexError in its level tables); an empty database gets one placeholder reseller
            # that no CDR can name (engine id RESELLER_ID_OFFSET + 0; reseller ids start at 1).
            accounts = (Account(reseller_engine_id(0), None, "reseller", NO_TARIFF),)
        book = RatingBook(tariffs=tariffs, accounts=accounts, carriers=inputs.carriers, bundles=inputs.bundles)
        started = time.perf_counter()
        compiled = CompiledBook(book)
        log.info(
            "rating book at change %d: %d customers, %d resellers, %d carriers, %d tariffs, %d bundles "
            "(compiled in %.2f s)",
            version,
            len(inputs.customers),
            len(inputs.accounts) - len(inputs.customers),
            len(inputs.carriers),
            len(tariffs) - 1,
            len(inputs.bundles),
            time.perf_counter() - started,
        )
        bundles = {
            b.id: BundleInfo(b.id, b.account_id, b.id >> BUNDLE_SHIFT, b.seconds) for b in inputs.bundles
        }
        return LoadedBook(
            version=version,
            book=book,
            compiled=compiled,
            customers=inputs.customers,
            carriers=frozenset(c.id for c in inputs.carriers),
            bundles=bundles,
            bundle_customers=frozenset(b.customer_id for b in bundles.values()),
            inputs=inputs.key(),
        )


class BookCache:
    """The current :class:`LoadedBook`, refreshed when the change feed says rating data moved.

    Thread-safe: a background thread may call :meth:`refresh` while the sidecar's loop reads
    :attr:`current` (a reference swap) or forces a refresh for a customer it does not know yet.
    """

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory
        self.loader = BookLoader()
        self.current: LoadedBook | None = None
        self._lock = threading.Lock()
        self._checked = 0.0
        self.rebuilds = 0

    def refresh(self) -> LoadedBook:
        """Look at the change feed; reload what moved.  Raises if no book could ever be loaded."""
        with self._lock:
            with self.session_factory() as session:
                latest = latest_change_id(session)
                current = self.current
                now = time.monotonic()
                if current is not None and latest == current.version and now - self._checked < FULL_RELOAD_AFTER:
                    self._checked = now
                    return current
                if current is None or latest < current.version or now - self._checked >= FULL_RELOAD_AFTER:
                    self.loader.forget(None, {})
                else:
                    changes = changes_after(session, after_id=current.version, upto_id=latest)
                    relevant = [(entity, eid) for entity, eid in changes if entity in RATING_ENTITIES]
                    if not relevant:
                        self.current = replace(current, version=latest)
                        self._checked = now
                        return self.current
                    tariffs = {eid for entity, eid in relevant if entity == ENTITY_TARIFF}
                    if tariffs:
                        parents = dict(session.execute(select(Tariff.id, Tariff.base_tariff_id)).all())
                        self.loader.forget(tariffs, parents)
                try:
                    fresh = self.loader.load(session, version=latest, previous=current)
                except Exception:
                    if current is None:
                        raise
                    log.exception("reloading the rating book failed; still rating with the book of change %d",
                                  current.version)
                    return current
                finally:
                    session.rollback()
            if fresh is not current and (current is None or fresh.compiled is not current.compiled):
                self.rebuilds += 1
            self.current = fresh
            self._checked = now
            return fresh

    def get(self) -> LoadedBook:
        current = self.current
        return current if current is not None else self.refresh()
