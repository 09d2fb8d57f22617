"""Repositories on SQLite and PostgreSQL: rules, conflicts, scopes and the change feed."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from provisioning import repo
from provisioning.credentials import compute_ha1
from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted
from provisioning.models import Change, Registration, SipDevice
from provisioning.scope import PROVIDER, Scope

SF = sessionmaker[Session]


def _changes(sf: SF) -> list[tuple[str, int]]:
    with sf() as s:
        return [(c.entity, c.entity_id) for c in s.scalars(select(Change).order_by(Change.id))]


def _customer(sf: SF, **kw: object) -> int:
    with sf() as s:
        c = repo.create_customer(s, scope=PROVIDER, **{"name": "Acme", **kw})  # type: ignore[arg-type]
        s.commit()
        return c.id


def _device(sf: SF, customer_id: int, username: str = "alice", **kw: object) -> int:
    with sf() as s:
        d = repo.create_sip_device(
            s,
            scope=PROVIDER,
            customer_id=customer_id,
            default_realm="trunkline",
            username=username,
            password=str(kw.pop("password", "secret-pass")),
            **kw,  # type: ignore[arg-type]
        )
        s.commit()
        return d.id


def test_ha1_matches_the_rfc_2617_example() -> None:
    md5, sha = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert md5 == "939e7578ed9e3c518a452acee763bce9"
    assert sha == hashlib.sha256(b"Mufasa:testrealm@host.com:Circle Of Life").hexdigest()


def test_customer_defaults_and_change_row(migrated_db: SF) -> None:
    cid = _customer(migrated_db, domain="Example.COM")
    with migrated_db() as s:
        c = repo.get_customer(s, scope=PROVIDER, customer_id=cid)
        assert (c.status, c.domain, c.max_sessions, c.reseller_id) == ("active", "example.com", 0, None)
        assert c.created_at.tzinfo is not None and c.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert _changes(migrated_db) == [("customer", cid)]


def test_rolled_back_write_leaves_no_change_row(migrated_db: SF) -> None:
    with migrated_db() as s:
        repo.create_customer(s, scope=PROVIDER, name="Gone")
        s.rollback()
    with migrated_db() as s:
        assert s.scalar(select(func.count()).select_from(Change)) == 0


def test_duplicate_domain_is_a_conflict_on_domain(migrated_db: SF) -> None:
    _customer(migrated_db, domain="a.example")
    with migrated_db() as s, pytest.raises(Conflict) as err:
        repo.create_customer(s, scope=PROVIDER, name="Other", domain="A.example")
    assert err.value.field == "domain"


def test_domain_is_immutable_once_set(migrated_db: SF) -> None:
    cid = _customer(migrated_db)
    with migrated_db() as s:
        repo.update_customer(s, scope=PROVIDER, customer_id=cid, changes={"domain": "b.example"})
        s.commit()
    with migrated_db() as s:
        repo.update_customer(s, scope=PROVIDER, customer_id=cid, changes={"domain": "B.example"})  # same
        with pytest.raises(Conflict) as err:
            repo.update_customer(s, scope=PROVIDER, customer_id=cid, changes={"domain": "c.example"})
        assert err.value.field == "domain"


def test_status_lifecycle(migrated_db: SF) -> None:
    cid = _customer(migrated_db)
    for operation in ("stop", "resume", "close"):
        with migrated_db() as s:
            repo.change_status(s, scope=PROVIDER, customer_id=cid, operation=operation, reason="test")
            s.commit()
    with migrated_db() as s, pytest.raises(Conflict):
        repo.change_status(s, scope=PROVIDER, customer_id=cid, operation="resume", reason="again")
    with migrated_db() as s, pytest.raises(InvalidValue):
        repo.update_customer(s, scope=PROVIDER, customer_id=cid, changes={"status": "active"})
    with migrated_db() as s, pytest.raises(Conflict):
        repo.create_sip_device(
            s, scope=PROVIDER, customer_id=cid, default_realm="r", username="late", password="12345678"
        )


def test_unchanged_update_records_nothing(migrated_db: SF) -> None:
    cid = _customer(migrated_db, max_sessions=5)
    with migrated_db() as s:
        repo.update_customer(s, scope=PROVIDER, customer_id=cid, changes={"max_sessions": 5})
        s.commit()
    assert len(_changes(migrated_db)) == 1


def test_sip_device_credentials_and_realm(migrated_db: SF) -> None:
    plain = _customer(migrated_db)
    with_domain = _customer(migrated_db, name="Dom", domain="pbx.example")
    d1 = _device(migrated_db, plain, "alice", password="correct horse")
    d2 = _device(migrated_db, with_domain, "bob", password="battery staple")
    with migrated_db() as s:
        a, b = s.get(SipDevice, d1), s.get(SipDevice, d2)
        assert a is not None and b is not None
        assert a.realm == "trunkline" and b.realm == "pbx.example"
        assert (a.ha1_md5, a.ha1_sha256) == compute_ha1("alice", "trunkline", "correct horse")
        assert (b.ha1_md5, b.ha1_sha256) == compute_ha1("bob", "pbx.example", "battery staple")
        # The plaintext is nowhere in the row.
        assert all("correct horse" not in str(getattr(a, c.key)) for c in SipDevice.__table__.c)


def test_password_and_username_changes(migrated_db: SF) -> None:
    cid = _customer(migrated_db)
    did = _device(migrated_db, cid, "alice")
    with migrated_db() as s:
        with pytest.raises(InvalidValue) as err:
            repo.update_sip_device(
                s,
                scope=PROVIDER,
                customer_id=cid,
                device_id=did,
                default_realm="trunkline",
                changes={"username": "alice2"},
            )
        assert err.value.field == "password"
    with migrated_db() as s:
        d = repo.update_sip_device(
            s,
            scope=PROVIDER,
            customer_id=cid,
            device_id=did,
            default_realm="trunkline",
            changes={"username": "alice2", "password": "new-password"},
        )
        s.commit()
        assert (d.ha1_md5, d.ha1_sha256) == compute_ha1("alice2", "trunkline", "new-password")


def test_sip_device_uniqueness(migrated_db: SF) -> None:
    c1 = _customer(migrated_db)
    c2 = _customer(migrated_db, name="Two")
    _device(migrated_db, c1, "alice", extension="100")
    with migrated_db() as s, pytest.raises(Conflict) as err:
        repo.create_sip_device(
            s, scope=PROVIDER, customer_id=c2, default_realm="r", username="alice", password="12345678"
        )
    assert err.value.field == "username"
    with migrated_db() as s, pytest.raises(Conflict) as err:
        repo.create_sip_device(
            s,
            scope=PROVIDER,
            customer_id=c1,
            default_realm="r",
            username="bob",
            password="12345678",
            extension="100",
        )
    assert err.value.field == "extension"
    _device(migrated_db, c2, "carol", extension="100")  # same extension, other customer: fine
    _device(migrated_db, c1, "dave")  # several devices without an extension: fine
    _device(migrated_db, c1, "erin")


def test_repository_validates_without_the_api(migrated_db: SF) -> None:
    cid = _customer(migrated_db)
    with migrated_db() as s:
        for kw, field in (
            ({"username": "bad name"}, "username"),
            ({"password": "short"}, "password"),
            ({"extension": "12a"}, "extension"),
            ({"allowed_ips": ["nonsense"]}, "allowed_ips"),
        ):
            args = {"username": "ok", "password": "12345678", **kw}
            with pytest.raises(InvalidValue) as err:
                repo.create_sip_device(s, scope=PROVIDER, customer_id=cid, default_realm="r", **args)  # type: ignore[arg-type]
            assert err.value.field == field


def test_ip_device_uniqueness_with_and_without_port(migrated_db: SF) -> None:
    cid = _customer(migrated_db)

    def add(ip: str, port: int | None) -> int:
        with migrated_db() as s:
            d = repo.create_ip_device(s, scope=PROVIDER, customer_id=cid, ip=ip, port=port)
            s.commit()
            return d.id

    add("192.0.2.1", 5060)
    add("192.0.2.1", 5070)
    add("192.0.2.1", None)  # "any other port" coexists with the exact entries
    add("2001:db8::1", None)
    # The same address again, exactly or as "any port"; an IPv6 address in another spelling.
    for ip, port in (("192.0.2.1", 5060), ("192.0.2.1", None), ("2001:DB8:0::0:1", None)):
        with migrated_db() as s, pytest.raises(Conflict) as err:
            repo.create_ip_device(s, scope=PROVIDER, customer_id=cid, ip=ip, port=port)
        assert err.value.field == "ip"


def test_delete_customer_needs_no_devices(migrated_db: SF) -> None:
    cid = _customer(migrated_db)
    did = _device(migrated_db, cid)
    with migrated_db() as s, pytest.raises(Conflict):
        repo.delete_customer(s, scope=PROVIDER, customer_id=cid)
    with migrated_db() as s:
        s.add(
            Registration(
                aor="alice",
                device_id=did,
                contact="sip:a@192.0.2.9",
                expires_at=2e9,
                call_id="x",
                cseq=1,
                source_ip="192.0.2.9",
                source_port=5060,
                transport="udp",
                local_port=5060,
            )
        )
        s.commit()
        repo.delete_sip_device(s, scope=PROVIDER, customer_id=cid, device_id=did)
        s.commit()
        assert s.scalar(select(func.count()).select_from(Registration)) == 0
        repo.delete_customer(s, scope=PROVIDER, customer_id=cid)
        s.commit()
    with migrated_db() as s, pytest.raises(NotFound):
        repo.get_customer(s, scope=PROVIDER, customer_id=cid)
    assert _changes(migrated_db)[-2:] == [("sip_device", did), ("customer", cid)]


def test_device_of_another_customer_is_not_found(migrated_db: SF) -> None:
    c1 = _customer(migrated_db)
    c2 = _customer(migrated_db, name="Two")
    did = _device(migrated_db, c1)
    with migrated_db() as s, pytest.raises(NotFound):
        repo.get_sip_device(s, scope=PROVIDER, customer_id=c2, device_id=did)


def test_listing_filters_and_pagination(migrated_db: SF) -> None:
    for name in ("Alpha", "alphabet", "Beta", "100% Gamma"):
        _customer(migrated_db, name=name)
    with migrated_db() as s:
        page = repo.list_customers(s, scope=PROVIDER, name="ALPHA").page(s, limit=100, offset=0)
        assert [c.name for c in page.items] == ["Alpha", "alphabet"] and page.total == 2
        listing = repo.list_customers(s, scope=PROVIDER, name="%")
        assert [c.name for c in listing.page(s, limit=100, offset=0).items] == ["100% Gamma"]
        page = repo.list_customers(s, scope=PROVIDER).page(s, limit=2, offset=1)
        assert [c.name for c in page.items] == ["alphabet", "Beta"] and page.total == 4


def test_reseller_and_customer_scopes(migrated_db: SF) -> None:
    with migrated_db() as s:
        top = repo.create_reseller(s, scope=PROVIDER, name="Top")
        child = repo.create_reseller(s, scope=PROVIDER, name="Child", parent_id=top.id)
        other = repo.create_reseller(s, scope=PROVIDER, name="Other")
        s.commit()
        assert child.path == f"/{top.id}/{child.id}/"
        top_scope = Scope.for_reseller(top.id, top.path)
        mine = repo.create_customer(s, scope=top_scope, name="Mine")
        deep = repo.create_customer(s, scope=PROVIDER, name="Deep", reseller_id=child.id)
        theirs = repo.create_customer(s, scope=PROVIDER, name="Theirs", reseller_id=other.id)
        direct = repo.create_customer(s, scope=PROVIDER, name="Direct")
        s.commit()
        assert mine.reseller_id == top.id
        visible = {c.name for c in repo.list_customers(s, scope=top_scope).all(s, max_rows=100)}
        assert visible == {"Mine", "Deep"}
        for hidden in (theirs.id, direct.id):
            with pytest.raises(NotFound):
                repo.get_customer(s, scope=top_scope, customer_id=hidden)
        with pytest.raises(InvalidValue):
            repo.create_customer(s, scope=top_scope, name="Sneaky", reseller_id=other.id)
        me = Scope.for_customer(deep.id)
        assert [c.id for c in repo.list_customers(s, scope=me).all(s, max_rows=100)] == [deep.id]
        with pytest.raises(NotPermitted):
            repo.create_customer(s, scope=me, name="Nope")
        with pytest.raises(NotFound):
            repo.list_sip_devices(s, scope=me, customer_id=mine.id)


def test_change_row_is_written_by_a_begin_block_too(migrated_db: SF) -> None:
    with migrated_db.begin() as s:
        cid = repo.create_customer(s, scope=PROVIDER, name="Block").id
    assert _changes(migrated_db) == [("customer", cid)]


def test_out_of_range_ids_are_not_found(migrated_db: SF) -> None:
    with migrated_db() as s:
        for bad in (0, -1, 2**31, 2**70):
            with pytest.raises(NotFound):
                repo.get_customer(s, scope=PROVIDER, customer_id=bad)
