"""The repository layer on SQLite and PostgreSQL: audit hook, ledger, tariffs and deck import,
login lockout, the snapshot's new tables, resellers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from provisioning import passwords, repo
from provisioning.audit import Actor, set_actor
from provisioning.errors import Conflict, ImportRejected, InvalidValue, NotFound, NotPermitted
from provisioning.models import AuditEntry, Customer, LoginEvent, Rate
from provisioning.scope import PROVIDER, Scope
from provisioning.snapshot import SnapshotWatcher
from rating.deck import deck_from_rows, derive_deck
from tests.waiting import wait_for

SF = sessionmaker[Session]


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "SCRYPT_N", 2**10)


def _wait_for(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    if wait_for(predicate, timeout) is None:
        raise AssertionError(f"not true within {timeout} s")


def test_audit_rows_follow_the_transaction_and_mask_secrets(migrated_db: SF) -> None:
    with migrated_db() as s:
        set_actor(s, Actor(label="tester", kind="admin"))
        repo.create_customer(s, scope=PROVIDER, name="Gone", web_username="gone", web_password="Gone-pass-1")
        s.rollback()
    with migrated_db() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 0
        set_actor(s, Actor(label="tester", kind="admin", via="boss"))
        c = repo.create_customer(s, scope=PROVIDER, name="Kept", web_username="kept", web_password="Kept-pass-1")
        s.commit()
        repo.update_customer(s, scope=PROVIDER, customer_id=c.id, changes={"web_password": "Kept-pass-2"})
        repo.update_customer(s, scope=PROVIDER, customer_id=c.id, changes={"name": "Kept"})  # no change: no row
        s.commit()
        rows = list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        assert [(r.action, r.entity, r.actor, r.via) for r in rows] == [
            ("create", "customer", "tester", "boss"),
            ("update", "customer", "tester", "boss"),
        ]
        assert rows[0].after is not None and rows[0].after["web_password_hash"] == "***"
        assert rows[1].before == {"web_password_hash": "***"} and rows[1].after == {"web_password_hash": "***"}
        assert rows[0].tenant_path == "/" and rows[0].customer_id == c.id


def test_ledger_is_the_balance(migrated_db: SF) -> None:
    with migrated_db() as s:
        cid = repo.create_customer(s, scope=PROVIDER, name="Ledger").id
        for kind, amount in (("payment", "100"), ("charge", "0.333333"), ("adjustment", "-0.666667")):
            repo.ledger.add_entry(s, scope=PROVIDER, customer_id=cid, kind=kind, amount=Decimal(amount))
        s.commit()
        assert repo.ledger.balance(s, scope=PROVIDER, customer_id=cid) == Decimal("99.000000")
        with pytest.raises(NotPermitted):
            repo.ledger.add_entry(s, scope=Scope.for_customer(cid), customer_id=cid, kind="payment", amount=Decimal(1))
        with pytest.raises(InvalidValue):
            repo.ledger.add_entry(s, scope=PROVIDER, customer_id=cid, kind="refund", amount=Decimal(1))
        with pytest.raises(InvalidValue):
            repo.ledger.add_entry(s, scope=PROVIDER, customer_id=cid, kind="payment", amount=Decimal("0.0000001"))
        # No column holds the balance: the customer row has nothing to drift.
        assert "balance" not in Customer.__table__.c


def test_deck_import_and_derived_decks_agree_with_the_rating_package(migrated_db: SF) -> None:
    deck = (
        b"prefix,destination,rate,connect_fee,increment,effective_from,effective_to\n"
        b"44,UK,0.0100,0.05,60,,2026-06-01T00:00:00Z\n"
        b"44,UK,0.0090,0.05,60,2026-06-01T00:00:00Z,\n"
        b"447,UK Mobile,0.123457,0,1,,\n"
    )
    with migrated_db() as s:
        base = repo.tariffs.create_tariff(s, scope=PROVIDER, name="Base")
        result = repo.tariffs.import_rates(s, scope=PROVIDER, tariff_id=base.id, data=deck, source="deck.csv")
        assert (result.rows, result.replaced) == (3, 0)
        derived = repo.tariffs.create_tariff(
            s, scope=PROVIDER, name="Retail", base_tariff_id=base.id, markup_percent=Decimal("25")
        )
        repo.tariffs.create_rate(s, scope=PROVIDER, tariff_id=derived.id, values={"prefix": "33", "rate": Decimal("1")})
        s.commit()
        stored = list(s.scalars(select(Rate).where(Rate.tariff_id == base.id).order_by(Rate.id)))
        assert [r.rate for r in stored] == [Decimal("0.01"), Decimal("0.009"), Decimal("0.123457")]
        assert stored[0].effective_to == datetime(2026, 6, 1, tzinfo=UTC) and stored[0].effective_from is None
        assert stored[2].initial_increment == 1
        ours = repo.tariffs.tariff_deck(s, tariff_id=derived.id)
        june = "2026-06-01T00:00:00Z"
        base_rows = [
            {"prefix": "44", "rate": "0.0100", "connect_fee": "0.05", "effective_to": june},
            {"prefix": "44", "rate": "0.0090", "connect_fee": "0.05", "effective_from": june},
            {"prefix": "447", "destination": "UK Mobile", "rate": "0.123457", "increment": "1"},
        ]
        theirs = derive_deck(deck_from_rows(base_rows), "25", deck_from_rows([{"prefix": "33", "rate": "1"}]))
        assert sorted(ours.frame["rate"].to_list()) == sorted(theirs.frame["rate"].to_list())
        assert 154321 in ours.frame["rate"].to_list()  # 0.123457 x 1.25 = 0.15432125 -> 0.154321
        # A bad deck is refused whole and the stored one stays.
        with pytest.raises(ImportRejected) as err:
            repo.tariffs.import_rates(s, scope=PROVIDER, tariff_id=base.id, data=b"prefix,rate\n1,x\n2,-1\n")
        assert [p[0] for p in err.value.problems] == [2, 3]
        s.rollback()
        assert s.scalar(select(func.count()).where(Rate.tariff_id == base.id)) == 3


def test_login_lockout_counts_in_the_database(migrated_db: SF) -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    with migrated_db() as s:
        repo.create_customer(s, scope=PROVIDER, name="L", web_username="lock", web_password="Lock-pass-1")
        s.commit()
        for minute in range(5):  # five failures, a minute apart: within five minutes
            at = now + timedelta(minutes=minute)
            assert repo.auth.login(s, username="lock", password="bad", now=at).outcome == "failure"
        s.commit()
        t5 = now + timedelta(minutes=4)
        assert repo.auth.login(s, username="lock", password="Lock-pass-1", now=t5 + timedelta(minutes=1)).outcome == (
            "blocked"
        )
        later = t5 + timedelta(minutes=5, seconds=1)
        result = repo.auth.login(s, username="lock", password="Lock-pass-1", now=later)
        assert result.outcome == "success" and result.kind == "customer" and result.token
        s.commit()
        # Failures spread over more than five minutes do not block.
        for minute in (0, 2, 4, 6, 8):
            repo.auth.login(s, username="lock", password="bad", now=later + timedelta(minutes=minute))
        assert repo.auth.blocked_until(s, "lock", later + timedelta(minutes=8, seconds=1)) is None
        s.commit()
        assert s.scalar(select(func.count()).select_from(LoginEvent)) == 12


def test_resellers_tree_rules(migrated_db: SF) -> None:
    with migrated_db() as s:
        top = repo.create_reseller(s, scope=PROVIDER, name="Top", currency="EUR", timezone="Europe/Rome")
        s.flush()
        top_scope = Scope.for_reseller(top.id, top.path)
        child = repo.create_reseller(s, scope=top_scope, name="Child")
        grand = repo.create_reseller(s, scope=Scope.for_reseller(child.id, child.path), name="Grand")
        s.commit()
        assert grand.path == f"/{top.id}/{child.id}/{grand.id}/" and grand.currency == "EUR"
        with pytest.raises(NotPermitted):
            repo.update_reseller(s, scope=top_scope, reseller_id=top.id, changes={"name": "self"})
        repo.create_customer(s, scope=PROVIDER, name="Under grand", reseller_id=grand.id)
        s.commit()
        with pytest.raises(Conflict):
            repo.delete_reseller(s, scope=top_scope, reseller_id=grand.id)
        with pytest.raises(NotFound):
            repo.get_reseller(s, scope=Scope.for_reseller(grand.id, grand.path), reseller_id=top.id)
        assert {r.id for r in repo.list_resellers(s, scope=top_scope).all(s, max_rows=10)} == {
            top.id,
            child.id,
            grand.id,
        }


def test_snapshot_carries_policies_dids_routes_and_translations(migrated_db: SF) -> None:
    watcher = SnapshotWatcher(migrated_db)
    watcher.start()
    try:
        with migrated_db() as s:
            c = repo.create_customer(
                s,
                scope=PROVIDER,
                name="Policy",
                billing_type="prepaid",
                credit_limit=Decimal("5"),
                trunk_channel_max=10,
                fraud_limit_default=Decimal("100"),
                fraud_limit_ceiling=Decimal("300"),
            )
            s.flush()
            d = repo.create_sip_device(
                s,
                scope=PROVIDER,
                customer_id=c.id,
                default_realm="r",
                username="pol",
                password="12345678",
                fraud_limit=Decimal("250"),
            )
            s.flush()
            repo.numbers.create_did(s, scope=PROVIDER, number="+44 20 7946 0001", customer_id=c.id,
                                    destination_type="sip_device", destination=str(d.id))  # fmt: skip
            carrier = repo.routing.create_carrier(s, scope=PROVIDER, name="C1", host="192.0.2.1", strip_prefix="00")
            s.flush()
            repo.routing.create_route(s, scope=PROVIDER, name="All", carriers=[{"carrier_id": carrier.id}])
            repo.routing.create_route(s, scope=PROVIDER, name="UK", dial_pattern="44", customer_id=c.id)
            repo.numbers.create_rule(
                s, scope=PROVIDER, customer_id=c.id, kind="destination", match="0", replacement="44"
            )
            s.commit()
            cid, did_ = c.id, d.id

        def arrived() -> bool:
            snap = watcher.snapshot
            return snap.did("442079460001") is not None and snap.route_for(cid, "4420") is not None

        _wait_for(arrived)
        snap = watcher.snapshot
        policy = snap.customer_policy(cid)
        assert policy is not None and (policy.billing_type, policy.credit_limit, policy.trunk_channel_max) == (
            "prepaid",
            Decimal("5"),
            10,
        )
        assert snap.device_fraud_limit(did_) == Decimal("250")
        did = snap.did("+442079460001")
        assert did is not None and did.active and did.destination == str(did_)
        route = snap.route_for(cid, "442079460000")
        assert route is not None and route.name == "UK"  # the customer's own, longer pattern
        assert snap.route_for(999, "442079460000") is not None and snap.route_for(999, "4420").name == "All"  # type: ignore[union-attr]
        assert snap.carrier(carrier.id).number_for("0044123") == "44123"  # type: ignore[union-attr]
        assert snap.translate(cid, "destination", "02079460000") == "442079460000"
        # A change to a user's limit, a stop and a DID re-point arrive within a second too.
        with migrated_db() as s:
            repo.update_sip_device(s, scope=PROVIDER, customer_id=cid, device_id=did_, default_realm="r",
                                   changes={"fraud_limit": None})  # fmt: skip
            repo.change_status(s, scope=PROVIDER, customer_id=cid, operation="stop", reason="fraud")
            s.commit()

        def stopped() -> bool:
            info = watcher.customer(cid)
            return info is not None and not info.may_call and watcher.snapshot.device_fraud_limit(did_) == Decimal(100)

        _wait_for(stopped)
    finally:
        watcher.stop()
