"""The sidecar's booked amounts equal the scalar rater's, call by call, for generated data.

Hypothesis draws a provisioned world through the repositories (a wholesale deck with nested
prefixes, increments, grace, included seconds, connect fees and effective windows; a chain of
0-2 resellers each buying on its parent's deck with a markup; customers with their own
billing decimals, time zones, derived tariffs with overrides, DEMO or LIVE; a carrier; call
bundles) and calls spread over a month boundary.  The calls reach the sidecar in the order they
*end*, in batches of drawn sizes.  Expected values come from :class:`rating.scalar.ScalarRater`
over a :class:`~rating.book.RatingBook` built here from the same rows (not read back from the
database), rating all calls at once, i.e. in the spec's answer-time order for bundles.  Then:
every field of every rated call and level matches, and the ledger and bundle usage hold exactly
what the calls cost.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, update

from provisioning import repo
from provisioning.models import Base, Reseller
from provisioning.scope import PROVIDER
from rating.book import Account, Bundle, Carrier, RatingBook
from rating.deck import deck_from_rows, derive_deck
from rating.instants import format_instant
from rating.scalar import ScalarRater
from tests.billing.helpers import SF, Sidecar, check_books_balance, levels, rated
from tests.billing.world import call

T0 = 1_769_904_000_000  # 2026-02-01T00:00:00Z
DAY = 86_400_000
ZONES = ["UTC", "Europe/London", "America/New_York", "Asia/Kolkata"]


def _dec(micro: int) -> str:
    return f"{micro // 10**6}.{micro % 10**6:06d}"


@st.composite
def deck_rows(draw: st.DrawFn, pool: list[str]) -> list[dict[str, Any]]:
    rows = []
    for p in draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True)):
        split = draw(st.sampled_from([None, None, T0 - 3 * DAY, T0 + 2 * DAY]))
        windows = [(None, None)] if split is None else [(None, split), (split, None)]
        for lo, hi in windows:
            inc = draw(st.sampled_from([1, 6, 30, 60]))
            rows.append({
                "prefix": p,
                "destination": f"dest {p}",
                "rate": _dec(draw(st.sampled_from([0, 1, 5_000, 12_345, 100_000, 999_999]))),
                "connect_fee": _dec(draw(st.sampled_from([0, 0, 10_000, 333_333]))),
                "initial_increment": draw(st.sampled_from([None, 0, 1, 30, 60])),
                "increment": inc,
                "grace_seconds": draw(st.sampled_from([0, 0, 3])),
                "included_seconds": draw(st.sampled_from([0, 0, 5])),
                "effective_from": None if lo is None else format_instant(lo),
                "effective_to": None if hi is None else format_instant(hi),
            })
    return rows


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    pool = draw(st.lists(st.text("0123", min_size=1, max_size=3), min_size=1, max_size=5, unique=True))
    return {
        "pool": pool,
        "wholesale": draw(deck_rows(pool)),
        "carrier": draw(deck_rows(pool)),
        "markups": draw(st.lists(st.sampled_from(["0", "10", "12.5", "33.333333", "-20"]), max_size=2)),
        "customers": draw(
            st.lists(
                st.fixed_dictionaries({
                    "depth": st.integers(0, 2),
                    "decimals": st.integers(0, 6),
                    "zone": st.sampled_from(ZONES),
                    "markup": st.sampled_from(["0", "40", "7.5"]),
                    "override": st.booleans(),
                    "demo": st.integers(0, 5).map(lambda x: x == 0),
                    "bundle": st.one_of(st.none(), st.tuples(st.integers(1, 12), st.integers(1, 2))),
                }),
                min_size=1,
                max_size=3,
            )
        ),
        "reseller_decimals": draw(st.lists(st.integers(0, 6), min_size=2, max_size=2)),
        "bundle_zones": draw(st.lists(st.sampled_from([*pool, *pool, "0"]), min_size=1, max_size=2, unique=True)),
    }


def _provision(sf: SF, w: dict[str, Any]) -> tuple[RatingBook, list[int], int]:
    """Create the world through the repositories; the same world as a RatingBook built here."""
    decks = {"wholesale": deck_from_rows(w["wholesale"]), "carrier": deck_from_rows(w["carrier"])}
    accounts: list[Account] = []
    bundles: list[Bundle] = []
    customers: list[int] = []
    with sf.begin() as s:
        wholesale = repo.tariffs.create_tariff(s, scope=PROVIDER, name="wholesale")
        for row in w["wholesale"]:
            repo.tariffs.create_rate(s, scope=PROVIDER, tariff_id=wholesale.id, values=_api(row))
        carrier_t = repo.tariffs.create_tariff(s, scope=PROVIDER, name="carrier")
        for row in w["carrier"]:
            repo.tariffs.create_rate(s, scope=PROVIDER, tariff_id=carrier_t.id, values=_api(row))
        carrier = repo.routing.create_carrier(s, scope=PROVIDER, name="c", host="192.0.2.1", tariff_id=carrier_t.id)
        # resellers: level k buys on a deck owned by its parent, derived from the parent's own
        chain: list[tuple[int, str, int]] = []  # (reseller id, its deck name, its buy tariff id)
        parent_id: int | None = None
        parent_buy: int | None = None
        parent_deck = "wholesale"
        for k, markup in enumerate(w["markups"]):
            buy = repo.tariffs.create_tariff(
                s, scope=PROVIDER, name=f"buy{k}", reseller_id=parent_id,
                base_tariff_id=parent_buy if parent_buy is not None else wholesale.id, markup_percent=Decimal(markup),
            )
            name = f"buy{k}"
            decks[name] = derive_deck(decks[parent_deck], markup)
            r = repo.create_reseller(s, scope=PROVIDER, name=f"r{k}", parent_id=parent_id, tariff_id=buy.id,
                                     billing_decimals=w["reseller_decimals"][k], timezone="UTC")
            accounts.append(Account(10_000 + r.id, None if parent_id is None else 10_000 + parent_id, "reseller",
                                    name, w["reseller_decimals"][k]))
            chain.append((r.id, name, buy.id))
            parent_id, parent_buy, parent_deck = r.id, buy.id, name
        plan = repo.plans.create_plan(s, scope=PROVIDER, name="plan")
        for i, c in enumerate(w["customers"]):
            depth = min(c["depth"], len(chain))
            owner = chain[depth - 1] if depth else None
            base_id = owner[2] if owner else wholesale.id
            base_deck = owner[1] if owner else "wholesale"
            tariff = repo.tariffs.create_tariff(
                s, scope=PROVIDER, name=f"retail{i}", reseller_id=owner[0] if owner else None,
                base_tariff_id=base_id, markup_percent=Decimal(c["markup"]),
            )
            override = None
            if c["override"]:
                row = {"prefix": w["pool"][0], "destination": "override", "rate": "0.777000", "increment": 6}
                repo.tariffs.create_rate(s, scope=PROVIDER, tariff_id=tariff.id, values=row)
                override = deck_from_rows([row])
            decks[f"retail{i}"] = derive_deck(decks[base_deck], c["markup"], override)
            cust = repo.create_customer(
                s, scope=PROVIDER, name=f"c{i}", reseller_id=owner[0] if owner else None, tariff_id=tariff.id,
                billing_decimals=c["decimals"], timezone=c["zone"], service_plan_id=plan.id,
                customer_type="DEMO" if c["demo"] else "LIVE",
            )
            customers.append(cust.id)
            accounts.append(Account(cust.id, None if owner is None else 10_000 + owner[0], "customer", f"retail{i}",
                                    c["decimals"], c["zone"]))
            if c["bundle"] is not None:
                minutes, quantity = c["bundle"]
                b = repo.plans.create_bundle(s, scope=PROVIDER, plan_id=plan.id, name=f"b{i}", minutes=minutes,
                                             zone_prefixes=w["bundle_zones"])
                repo.plans.set_customer_bundle(s, scope=PROVIDER, customer_id=cust.id, bundle_id=b.id,
                                               quantity=quantity)
                bundles.append(Bundle(b.id, cust.id, tuple(w["bundle_zones"]), minutes, quantity))
        carrier_id = carrier.id
    book = RatingBook(tariffs=decks, accounts=accounts, carriers=[Carrier(carrier_id, "carrier")], bundles=bundles)
    return book, customers, carrier_id


def _api(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


@st.composite
def traffic(draw: st.DrawFn, pool: list[str], n_customers: int) -> list[dict[str, Any]]:
    """Calls as plain values (customer by index, carrier or not): the draw must not depend on the
    ids the database hands out."""
    out = []
    for i in range(draw(st.integers(1, 40))):
        number = draw(st.sampled_from(pool)) + draw(st.text("0123456789", max_size=5))
        if draw(st.integers(0, 6)) == 0:
            number = "9" + number  # nowhere
        answered = draw(st.integers(0, 5)) > 0
        # a few busy half-hours around the month boundary: long calls answered early end after
        # short ones answered later, so calls reach the sidecar out of answer-time order
        answer = (T0 + draw(st.sampled_from([-3 * DAY, -2 * 3_600_000, 0, DAY]))
                  + draw(st.integers(0, 1800)) * 1000 + draw(st.sampled_from([0, 1, 999])))
        duration = draw(st.sampled_from([0, 1, 999, 1_000, 1_001, 59_999, 60_000, 61_000, 150_000, 400_000,
                                         900_000]))
        out.append({"i": i, "customer": draw(st.integers(0, n_customers - 1)), "number": number,
                    "answer": answer if answered else None, "start": answer - 3000, "duration": duration,
                    "carrier": draw(st.booleans())})
    return out


def _wipe(sf: SF) -> None:
    with sf.begin() as s:
        s.execute(update(Reseller).values(tariff_id=None, default_tariff_id=None))  # the one FK cycle
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "alembic_version":
                s.execute(delete(table))


def _minor(value: Decimal | None, decimals: int) -> int | None:
    return None if value is None else int(value.scaleb(decimals))


@settings(max_examples=int(os.environ.get("BILLING_PROP_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_sidecar_books_what_the_scalar_rater_says(migrated_db: SF, data: st.DataObject) -> None:
    _wipe(migrated_db)
    world = data.draw(worlds())
    book, customers, carrier = _provision(migrated_db, world)
    calls_ = [
        call(c["i"], customers[c["customer"]], c["number"], answer=c["answer"], start=c["start"],
             duration_ms=c["duration"], carrier_id=carrier if c["carrier"] else None)
        for c in data.draw(traffic(world["pool"], len(customers)))
    ]
    batch = data.draw(st.integers(1, 12))
    spool = Path(tempfile.mkdtemp(prefix="billing-prop-"))
    sidecar = Sidecar(migrated_db, spool, max_batch=batch)
    try:
        sidecar.emit(sorted(calls_, key=lambda c: (c.end_ms, c.call_id)))  # they end in this order
        assert sidecar.drain() == len(calls_)
    finally:
        sidecar.close()
        shutil.rmtree(spool, ignore_errors=True)
    expected = ScalarRater(book).rate_calls(
        [{"call_id": c.call_id, "customer_id": c.customer_id, "dialled_number": c.dialled_number,
          "start_ms": c.start_ms, "answer_ms": c.answer_ms, "duration_ms": c.duration_ms,
          "carrier_id": c.carrier_id} for c in calls_]
    )
    got = rated(migrated_db)
    lv = levels(migrated_db)
    decimals = {a.id: a.billing_decimals for a in book.accounts}
    for exp in expected:
        row = got[exp.call_id]
        assert row["status"] == exp.status, (exp, row)
        assert (row["prefix"], row["destination"]) == (exp.prefix, exp.destination_name)
        assert (row["billed_seconds"], row["bundle_seconds"]) == (exp.billed_seconds, exp.bundle_seconds), (exp, row)
        assert row["bundle_id"] == exp.bundle_id and row["bundle_month"] == exp.bundle_month
        assert _minor(row["debit"], exp.debit_decimals) == exp.debit, (exp, row)
        assert _minor(row["carrier_cost"], 4) == exp.carrier_cost, (exp, row)
        mine = lv.get(exp.call_id, {})
        assert len(mine) == len(exp.levels)
        for k, level in enumerate(exp.levels):
            account_id, amount = mine[k]
            assert account_id == (level.account_id - 10_000 if k else level.account_id)
            assert _minor(amount, decimals[level.account_id]) == level.amount, (exp, mine)
    check_books_balance(migrated_db)
