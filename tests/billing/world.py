"""A small provisioned world for the billing tests, and CDRs for it.

The service provider sells a wholesale deck; reseller ``top`` buys on it at +10 %, its child
``sub`` buys on top's deck at +20 %, customer ``alice`` (under sub) is on sub's retail deck
at +40 %, in Europe/London with 2 billing decimals, on a plan whose bundle gives 10 minutes a
month to numbers starting with 44.  Customer ``bob`` (directly under the provider, on the
wholesale deck, 4 decimals, UTC) has no bundle; ``demo`` is a DEMO customer.  The carrier buys
on its own deck.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from cdr.schema import CdrRecord
from provisioning import repo
from provisioning.scope import PROVIDER

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000

WHOLESALE = [
    {"prefix": "44", "destination": "UK", "rate": "0.010000", "increment": 60},
    {"prefix": "447", "destination": "UK Mobile", "rate": "0.050000", "connect_fee": "0.010000",
     "initial_increment": 30, "increment": 6},
    {"prefix": "1", "destination": "USA", "rate": "0.005000", "increment": 1},
    {"prefix": "33", "destination": "France", "rate": "0.020000", "grace_seconds": 5},
]
CARRIER = [
    {"prefix": "44", "destination": "UK", "rate": "0.004000"},
    {"prefix": "447", "destination": "UK Mobile", "rate": "0.030000", "increment": 1},
    {"prefix": "1", "destination": "USA", "rate": "0.002000"},
]


@dataclass
class World:
    wholesale: int
    carrier_tariff: int
    top_tariff: int
    sub_tariff: int
    retail: int
    top: int
    sub: int
    alice: int
    bob: int
    demo: int
    carrier: int
    plan: int
    bundle: int


def build_world(sf: sessionmaker[Session], *, bundle_minutes: int = 10) -> World:
    with sf.begin() as s:
        wholesale = repo.tariffs.create_tariff(s, scope=PROVIDER, name="wholesale")
        for row in WHOLESALE:
            repo.tariffs.create_rate(s, scope=PROVIDER, tariff_id=wholesale.id, values=row)
        carrier_tariff = repo.tariffs.create_tariff(s, scope=PROVIDER, name="carrier buy")
        for row in CARRIER:
            repo.tariffs.create_rate(s, scope=PROVIDER, tariff_id=carrier_tariff.id, values=row)
        top_tariff = repo.tariffs.create_tariff(s, scope=PROVIDER, name="top buys", base_tariff_id=wholesale.id,
                                                markup_percent=Decimal(10))
        top = repo.create_reseller(s, scope=PROVIDER, name="top", tariff_id=top_tariff.id, billing_decimals=4,
                                   timezone="UTC")
        sub_tariff = repo.tariffs.create_tariff(s, scope=PROVIDER, name="sub buys", reseller_id=top.id,
                                                base_tariff_id=top_tariff.id, markup_percent=Decimal(20))
        sub = repo.create_reseller(s, scope=PROVIDER, name="sub", parent_id=top.id, tariff_id=sub_tariff.id,
                                   billing_decimals=3, timezone="Europe/Paris")
        retail = repo.tariffs.create_tariff(s, scope=PROVIDER, name="retail", reseller_id=sub.id,
                                            base_tariff_id=sub_tariff.id, markup_percent=Decimal(40))
        plan = repo.plans.create_plan(s, scope=PROVIDER, name="plan")
        bundle = repo.plans.create_bundle(s, scope=PROVIDER, plan_id=plan.id, name="UK minutes",
                                          minutes=bundle_minutes, zone_prefixes=["44"])
        alice = repo.create_customer(s, scope=PROVIDER, name="alice", reseller_id=sub.id, tariff_id=retail.id,
                                     billing_decimals=2, timezone="Europe/London", service_plan_id=plan.id,
                                     tax_type="VAT", tax_rate=Decimal("20"))
        repo.plans.set_customer_bundle(s, scope=PROVIDER, customer_id=alice.id, bundle_id=bundle.id, quantity=1)
        bob = repo.create_customer(s, scope=PROVIDER, name="bob", tariff_id=wholesale.id, billing_decimals=4,
                                   timezone="UTC", tax_type="TAX", tax_rate=Decimal("7.5"))
        demo = repo.create_customer(s, scope=PROVIDER, name="demo", tariff_id=wholesale.id, customer_type="DEMO")
        carrier = repo.routing.create_carrier(s, scope=PROVIDER, name="carrier", host="192.0.2.1",
                                              tariff_id=carrier_tariff.id)
        return World(wholesale.id, carrier_tariff.id, top_tariff.id, sub_tariff.id, retail.id, top.id, sub.id,
                     alice.id, bob.id, demo.id, carrier.id, plan.id, bundle.id)


def call(n: int | str, customer_id: int | None, number: str, *, answer: int | None = T0, duration_ms: int = MIN,
         start: int | None = None, carrier_id: int | None = None, call_type: str = "outbound",
         **kw: Any) -> CdrRecord:
    """An outbound call (``call-<n>``); ``answer=None`` for an unanswered one."""
    start = (answer - 2000 if answer is not None else T0) if start is None else start
    end = (answer + duration_ms) if answer is not None else start + 5000
    values: dict[str, Any] = {
        "call_id": f"call-{n}",
        "sip_call_id": f"sip-{n}@192.0.2.10",
        "customer_id": customer_id,
        "caller_device_id": None,
        "callee_device_id": None,
        "caller_number": "442070000001",
        "dialled_number": number,
        "start_ms": start,
        "answer_ms": answer,
        "end_ms": end,
        "duration_ms": duration_ms if answer is not None else 0,
        "sip_code": 200 if answer is not None else 486,
        "q850_cause": 16 if answer is not None else 17,
        "disposition": "ANSWERED" if answer is not None else "BUSY",
        "direction": "outbound",
        "call_type": call_type,
        "source_ip": "192.0.2.10",
        "hangup_by": "caller",
        "carrier_id": carrier_id,
    }
    values.update(kw)
    return CdrRecord(**values)
