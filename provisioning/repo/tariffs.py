"""Tariffs (rate decks) and their rates, with the rules of docs/rating-spec.md.

The row rules (prefix digits, prices >= 0 with at most 6 places, increments, windows, and two rows
of one prefix with overlapping windows) are the rating package's: every write of rates goes
through :func:`rating.deck.parse_deck`, so the database can never hold a deck the rater would
refuse.  A deck import checks every row, reports each bad one with its CSV line, and stores
nothing unless all are good; it writes with COPY on PostgreSQL (100,000 rows in about a second).

Ownership: a tariff belongs to the service provider (``reseller_id`` NULL) or to a reseller.  A
reseller sees and changes the tariffs of its subtree and reads the tariff it buys on (to derive
its retail deck from it: "wholesale plus 25%").  A customer reads its own tariff.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
from sqlalchemy import Select, delete, false, func, or_, select
from sqlalchemy.orm import Session

from provisioning import audit
from provisioning.errors import Conflict, ImportRejected, InvalidValue, NotFound, NotPermitted
from provisioning.models import ENTITY_TARIFF, Carrier, Customer, Rate, Reseller, Tariff
from provisioning.repo._common import (
    Listing,
    apply_changes,
    apply_sort,
    flush,
    record_change,
    require_money,
    require_text,
)
from provisioning.repo.customers import get_customer
from provisioning.repo.resellers import acting_reseller, path_of
from provisioning.scope import Scope
from provisioning.validation import CURRENCIES, is_valid_id
from rating.deck import DECK_COLUMNS, Deck, DeckError, deck_from_rows, derive_deck, parse_deck, parse_markup
from rating.money import MICRO, TIME_MAX, TIME_MIN

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RATE_FIELDS = DECK_COLUMNS
UPDATABLE_TARIFF_FIELDS = ("name", "description", "currency", "base_tariff_id", "markup_percent")
TARIFF_SORTABLE = ("id", "name", "currency", "created_at")
RATE_SORTABLE = ("id", "prefix", "destination", "rate", "effective_from")
MAX_DECK_ROWS = 2_000_000


# -- visibility ---------------------------------------------------------------------------------


def _readable_clause(session: Session, scope: Scope) -> Any:
    if scope.kind == "provider":
        return None
    if scope.kind == "customer":
        customer = session.get(Customer, scope.customer_id)
        tariff_id = customer.tariff_id if customer is not None else None
        return Tariff.id == tariff_id if tariff_id is not None else false()
    reseller = acting_reseller(session, scope)
    assert reseller is not None
    owned = Tariff.reseller_id.in_(
        select(Reseller.id).where(Reseller.path.startswith(scope.reseller_path, autoescape=True))
    )
    if reseller.tariff_id is not None:
        return or_(owned, Tariff.id == reseller.tariff_id)
    return owned


def _writable(session: Session, scope: Scope, tariff: Tariff) -> None:
    if scope.kind == "provider":
        return
    if scope.kind == "customer":
        raise NotPermitted("customers cannot change tariffs")
    if not scope.sees_path(path_of(session, tariff.reseller_id)) or tariff.reseller_id is None:
        # Readable (it is the reseller's buy tariff) but not its to change.
        raise NotPermitted("this tariff belongs to the reseller's parent")


def get_tariff(session: Session, *, scope: Scope, tariff_id: int) -> Tariff:
    tariff = session.get(Tariff, tariff_id) if is_valid_id(tariff_id) else None
    if tariff is None:
        raise NotFound("tariff", tariff_id)
    clause = _readable_clause(session, scope)
    if clause is not None and session.scalar(select(Tariff.id).where(Tariff.id == tariff.id, clause)) is None:
        raise NotFound("tariff", tariff_id)
    return tariff


def list_tariffs(
    session: Session,
    *,
    scope: Scope,
    name: str | None = None,
    reseller_id: int | None = None,
    sort: str | None = None,
) -> Listing:
    stmt = select(Tariff)
    clause = _readable_clause(session, scope)
    if clause is not None:
        stmt = stmt.where(clause)
    if name:
        stmt = stmt.where(Tariff.name.icontains(name, autoescape=True))
    if reseller_id is not None:
        stmt = stmt.where(Tariff.reseller_id == reseller_id)
    columns = {key: getattr(Tariff, key) for key in TARIFF_SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=Tariff.id))


# -- tariffs ------------------------------------------------------------------------------------


def _owner(session: Session, scope: Scope, reseller_id: int | None) -> Reseller | None:
    if scope.kind == "customer":
        raise NotPermitted("customers cannot create tariffs")
    if scope.kind == "reseller" and reseller_id is None:
        reseller_id = scope.reseller_id
    if reseller_id is None:
        return None
    reseller = session.get(Reseller, reseller_id) if is_valid_id(reseller_id) else None
    if reseller is None or not scope.sees_path(reseller.path):
        raise InvalidValue(f"unknown reseller {reseller_id}", field="reseller_id")
    return reseller


def _check_base(session: Session, owner: Reseller | None, base_id: int | None, tariff_id: int | None) -> None:
    """A derived tariff's base is the owner's own tariff or the tariff the owner buys on."""
    if base_id is None:
        return
    base = session.get(Tariff, base_id) if is_valid_id(base_id) else None
    owner_id = owner.id if owner is not None else None
    allowed = base is not None and (base.reseller_id == owner_id or (owner is not None and owner.tariff_id == base.id))
    if not allowed or base is None:
        raise InvalidValue(f"unknown tariff {base_id}", field="base_tariff_id")
    seen = {tariff_id} if tariff_id is not None else set()
    current: Tariff | None = base
    while current is not None:
        if current.id in seen:
            raise InvalidValue("a tariff cannot be derived from itself", field="base_tariff_id")
        seen.add(current.id)
        current = session.get(Tariff, current.base_tariff_id) if current.base_tariff_id is not None else None


def _check_markup(values: Mapping[str, Any]) -> None:
    markup = values.get("markup_percent")
    if markup is None:
        return
    require_money(values, "markup_percent", minimum=None)
    try:
        parse_markup(markup)
    except ValueError as error:
        raise InvalidValue(str(error), field="markup_percent") from error


def create_tariff(
    session: Session,
    *,
    scope: Scope,
    name: str,
    reseller_id: int | None = None,
    description: str = "",
    currency: str | None = None,
    base_tariff_id: int | None = None,
    markup_percent: Decimal | None = None,
) -> Tariff:
    owner = _owner(session, scope, reseller_id)
    require_text({"name": name}, "name", max_length=100, required=True)
    require_text({"description": description}, "description", max_length=200)
    if currency is not None and currency not in CURRENCIES:
        raise InvalidValue("currency must be an ISO 4217 code such as GBP", field="currency")
    _check_base(session, owner, base_tariff_id, None)
    _check_markup({"markup_percent": markup_percent})
    if markup_percent is not None and base_tariff_id is None:
        raise InvalidValue("a markup needs a base_tariff_id", field="markup_percent")
    tariff = Tariff(
        reseller_id=owner.id if owner is not None else None,
        name=name.strip(),
        description=description,
        currency=currency or (owner.currency if owner is not None else "GBP"),
        base_tariff_id=base_tariff_id,
        markup_percent=markup_percent if base_tariff_id is not None else None,
    )
    if base_tariff_id is not None and tariff.markup_percent is None:
        tariff.markup_percent = Decimal(0)
    session.add(tariff)
    flush(session)
    return tariff


def _check_users_currency(session: Session, tariff: Tariff, currency: str) -> None:
    """A tariff is priced in the currency of the accounts on it: its currency cannot move away."""
    users = (
        select(func.count()).where(Customer.tariff_id == tariff.id, Customer.currency != currency),
        select(func.count()).where(
            or_(Reseller.tariff_id == tariff.id, Reseller.default_tariff_id == tariff.id), Reseller.currency != currency
        ),
    )
    if any(session.scalar(stmt) for stmt in users):
        raise InvalidValue(
            f"accounts in another currency than {currency} use this tariff; move them first", field="currency"
        )


def update_tariff(session: Session, *, scope: Scope, tariff_id: int, changes: Mapping[str, Any]) -> Tariff:
    tariff = get_tariff(session, scope=scope, tariff_id=tariff_id)
    _writable(session, scope, tariff)
    values = dict(changes)
    for field in ("name", "description", "currency"):
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    require_text(values, "name", max_length=100, required="name" in values)
    require_text(values, "description", max_length=200)
    if "name" in values:
        values["name"] = values["name"].strip()
    if values.get("currency") is not None and values["currency"] not in CURRENCIES:
        raise InvalidValue("currency must be an ISO 4217 code such as GBP", field="currency")
    if values.get("currency") is not None and values["currency"] != tariff.currency:
        _check_users_currency(session, tariff, values["currency"])
    if "base_tariff_id" in values:
        owner = session.get(Reseller, tariff.reseller_id) if tariff.reseller_id is not None else None
        _check_base(session, owner, values["base_tariff_id"], tariff.id)
        if values["base_tariff_id"] is None:
            values["markup_percent"] = None
        elif values.get("markup_percent", tariff.markup_percent) is None:
            values["markup_percent"] = Decimal(0)
    _check_markup(values)
    if values.get("markup_percent") is not None and values.get("base_tariff_id", tariff.base_tariff_id) is None:
        raise InvalidValue("a markup needs a base_tariff_id", field="markup_percent")
    changed = apply_changes(tariff, values, allowed=UPDATABLE_TARIFF_FIELDS)
    flush(session)
    if set(changed) & {"base_tariff_id", "markup_percent"}:
        record_change(session, entity=ENTITY_TARIFF, entity_id=tariff.id)
    return tariff


def delete_tariff(session: Session, *, scope: Scope, tariff_id: int) -> None:
    """A tariff still used by a customer, reseller, carrier or derived tariff cannot go."""
    tariff = get_tariff(session, scope=scope, tariff_id=tariff_id)
    _writable(session, scope, tariff)
    users = {
        "customer": select(func.count()).where(Customer.tariff_id == tariff.id),
        "reseller": select(func.count()).where(
            or_(Reseller.tariff_id == tariff.id, Reseller.default_tariff_id == tariff.id)
        ),
        "carrier": select(func.count()).where(Carrier.tariff_id == tariff.id),
        "derived tariff": select(func.count()).where(Tariff.base_tariff_id == tariff.id),
    }
    busy = {what: n for what, stmt in users.items() if (n := session.scalar(stmt) or 0)}
    if busy:
        raise Conflict("the tariff is used by " + ", ".join(f"{n} {what}(s)" for what, n in busy.items()))
    session.execute(delete(Rate).where(Rate.tariff_id == tariff.id))
    session.delete(tariff)
    flush(session)
    record_change(session, entity=ENTITY_TARIFF, entity_id=tariff_id)


# -- rates --------------------------------------------------------------------------------------


def _ms_to_datetime(ms: int) -> datetime | None:
    if ms in (TIME_MIN, TIME_MAX):
        return None
    return _EPOCH + timedelta(milliseconds=ms)


def _datetime_to_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _rate_as_text(values: Mapping[str, Any]) -> dict[str, Any]:
    """A rate's fields as deck text (what rating.deck parses), None for what is not given."""
    out: dict[str, Any] = {}
    for column in RATE_FIELDS:
        value = values.get(column)
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise InvalidValue(f"{column} needs a UTC offset", field=column)
            out[column] = _datetime_to_text(value)
        elif isinstance(value, Decimal):
            out[column] = format(value, "f")
        elif value is not None:
            out[column] = str(value)
        else:
            out[column] = None
    return out


def _validated_row(values: Mapping[str, Any]) -> dict[str, Any]:
    """One rate through the rating package's rules; returns the model's column values."""
    try:
        deck = deck_from_rows([_rate_as_text(values)], source="rate")
    except DeckError as error:
        problem = error.problems[0]
        raise InvalidValue(problem.message, field=problem.column or "prefix") from error
    row = deck.frame.row(0, named=True)
    return {
        "prefix": row["prefix"],
        "destination": row["destination"],
        "rate": Decimal(row["rate"]).scaleb(-6),
        "connect_fee": Decimal(row["connect_fee"]).scaleb(-6),
        "initial_increment": row["initial_increment"],
        "increment": row["increment"],
        "grace_seconds": row["grace_seconds"],
        "included_seconds": row["included_seconds"],
        "effective_from": _ms_to_datetime(row["effective_from"]),
        "effective_to": _ms_to_datetime(row["effective_to"]),
    }


def _overlapping(
    session: Session, tariff_id: int, row: Mapping[str, Any], exclude_id: int | None = None
) -> Rate | None:
    """An existing rate of the same prefix whose effective window overlaps ``row``'s."""
    stmt = select(Rate).where(Rate.tariff_id == tariff_id, Rate.prefix == row["prefix"])
    if exclude_id is not None:
        stmt = stmt.where(Rate.id != exclude_id)
    if row["effective_to"] is not None:
        stmt = stmt.where(or_(Rate.effective_from.is_(None), Rate.effective_from < row["effective_to"]))
    if row["effective_from"] is not None:
        stmt = stmt.where(or_(Rate.effective_to.is_(None), Rate.effective_to > row["effective_from"]))
    return session.scalars(stmt.limit(1)).first()


def get_rate(session: Session, *, scope: Scope, tariff_id: int, rate_id: int) -> Rate:
    tariff = get_tariff(session, scope=scope, tariff_id=tariff_id)
    rate = session.get(Rate, rate_id) if is_valid_id(rate_id) else None
    if rate is None or rate.tariff_id != tariff.id:
        raise NotFound("rate", rate_id)
    return rate


def list_rates(
    session: Session,
    *,
    scope: Scope,
    tariff_id: int,
    prefix: str | None = None,
    destination: str | None = None,
    sort: str | None = None,
) -> Listing:
    """Rates of a tariff; ``prefix`` lists the rows whose prefix starts with it."""
    tariff = get_tariff(session, scope=scope, tariff_id=tariff_id)
    stmt = select(Rate).where(Rate.tariff_id == tariff.id)
    if prefix:
        stmt = stmt.where(Rate.prefix.startswith(prefix, autoescape=True))
    if destination:
        stmt = stmt.where(Rate.destination.icontains(destination, autoescape=True))
    columns = {key: getattr(Rate, key) for key in RATE_SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=Rate.id, default="prefix"))


def create_rate(session: Session, *, scope: Scope, tariff_id: int, values: Mapping[str, Any]) -> Rate:
    tariff = get_tariff(session, scope=scope, tariff_id=tariff_id)
    _writable(session, scope, tariff)
    unknown = set(values) - set(RATE_FIELDS)
    if unknown:
        field = sorted(unknown)[0]
        raise InvalidValue(f"unknown field {field}", field=field)
    row = _validated_row(values)
    clash = _overlapping(session, tariff.id, row)
    if clash is not None:
        raise Conflict(f"prefix {row['prefix']}: window overlaps rate {clash.id}", field="effective_from")
    rate = Rate(tariff_id=tariff.id, **row)
    session.add(rate)
    flush(session)
    record_change(session, entity=ENTITY_TARIFF, entity_id=tariff.id)
    return rate


def update_rate(session: Session, *, scope: Scope, tariff_id: int, rate_id: int, changes: Mapping[str, Any]) -> Rate:
    rate = get_rate(session, scope=scope, tariff_id=tariff_id, rate_id=rate_id)
    tariff = session.get(Tariff, rate.tariff_id)
    assert tariff is not None
    _writable(session, scope, tariff)
    unknown = set(changes) - set(RATE_FIELDS)
    if unknown:
        field = sorted(unknown)[0]
        raise InvalidValue(f"unknown field {field}", field=field)
    merged = {column: getattr(rate, column) for column in RATE_FIELDS}
    if "increment" in changes and "initial_increment" not in changes and rate.initial_increment == rate.increment:
        merged["initial_increment"] = None  # it followed the increment: keep following it
    merged.update(changes)
    row = _validated_row(merged)
    clash = _overlapping(session, tariff.id, row, exclude_id=rate.id)
    if clash is not None:
        raise Conflict(f"prefix {row['prefix']}: window overlaps rate {clash.id}", field="effective_from")
    apply_changes(rate, row, allowed=RATE_FIELDS)
    flush(session)
    record_change(session, entity=ENTITY_TARIFF, entity_id=tariff.id)
    return rate


def delete_rate(session: Session, *, scope: Scope, tariff_id: int, rate_id: int) -> None:
    rate = get_rate(session, scope=scope, tariff_id=tariff_id, rate_id=rate_id)
    tariff = session.get(Tariff, rate.tariff_id)
    assert tariff is not None
    _writable(session, scope, tariff)
    session.delete(rate)
    flush(session)
    record_change(session, entity=ENTITY_TARIFF, entity_id=tariff.id)


# -- deck import --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeckImport:
    tariff_id: int
    mode: str
    rows: int
    replaced: int


def _parse_csv(data: bytes, source: str) -> Deck:
    if not data.strip():
        raise ImportRejected([(1, None, "the file is empty")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportRejected([(None, None, f"the file is not UTF-8 text ({error.reason})")]) from error
    try:
        raw = pl.read_csv(io.StringIO(text), infer_schema=False, truncate_ragged_lines=False)
    except (pl.exceptions.PolarsError, ValueError) as error:
        raise ImportRejected([(None, None, f"not a readable CSV file: {str(error).splitlines()[0]}")]) from error
    if raw.height > MAX_DECK_ROWS:
        raise ImportRejected([(None, None, f"more than {MAX_DECK_ROWS} rows")])
    raw = raw.rename({c: c.strip().lower() for c in raw.columns})
    try:
        return parse_deck(raw, source=source)
    except DeckError as error:
        raise ImportRejected(
            [(p.row, p.column, p.message) for p in error.problems[:1000]], total=len(error.problems)
        ) from error


def _overlaps_with_existing(session: Session, tariff_id: int, deck: Deck) -> list[tuple[int | None, str | None, str]]:
    """Append mode: new rows whose window overlaps a stored row of the same prefix."""
    existing = session.execute(
        select(Rate.id, Rate.prefix, Rate.effective_from, Rate.effective_to).where(Rate.tariff_id == tariff_id)
    ).all()
    if not existing:
        return []
    stored: dict[str, list[tuple[int, int, int]]] = {}
    for rate_id, prefix, start, end in existing:
        lo = TIME_MIN if start is None else int((start - _EPOCH).total_seconds() * 1000)
        hi = TIME_MAX if end is None else int((end - _EPOCH).total_seconds() * 1000)
        stored.setdefault(prefix, []).append((lo, hi, rate_id))
    problems: list[tuple[int | None, str | None, str]] = []
    frame = deck.frame.filter(pl.col("prefix").is_in(list(stored)))
    for row, prefix, start, end in frame.select("row", "prefix", "effective_from", "effective_to").iter_rows():
        for lo, hi, rate_id in stored[prefix]:
            if start < hi and lo < end:
                problems.append((row, "effective_from", f"prefix {prefix}: window overlaps stored rate {rate_id}"))
                break
    return problems


def _micro_text(value: int) -> str:
    return f"{value // MICRO}.{value % MICRO:06d}"


def _instant_text(ms: int) -> str | None:
    moment = _ms_to_datetime(ms)
    return None if moment is None else moment.isoformat()


def import_rates(
    session: Session, *, scope: Scope, tariff_id: int, data: bytes, source: str = "upload", mode: str = "replace"
) -> DeckImport:
    """Import a CSV rate deck (columns of docs/rating-spec.md) into a tariff.

    ``replace``: the file becomes the tariff's deck; ``append``: its rows are added, and a row
    whose window overlaps a stored row of the same prefix is refused.  All or nothing.
    """
    if mode not in ("replace", "append"):
        raise InvalidValue("mode must be replace or append", field="mode", location="query")
    tariff = get_tariff(session, scope=scope, tariff_id=tariff_id)
    _writable(session, scope, tariff)
    deck = _parse_csv(data, source)
    if mode == "append":
        problems = _overlaps_with_existing(session, tariff.id, deck)
        if problems:
            raise ImportRejected(problems[:1000], total=len(problems))
    replaced = 0
    if mode == "replace":
        result = session.execute(delete(Rate).where(Rate.tariff_id == tariff.id))
        replaced = int(getattr(result, "rowcount", 0) or 0)
    frame = deck.frame
    columns = (
        "tariff_id",
        "prefix",
        "destination",
        "rate",
        "connect_fee",
        "initial_increment",
        "increment",
        "grace_seconds",
        "included_seconds",
        "effective_from",
        "effective_to",
    )
    rows = (
        (
            tariff.id,
            prefix,
            destination,
            rate,
            fee,
            initial,
            increment,
            grace,
            included,
            start,
            end,
        )
        for prefix, destination, rate, fee, initial, increment, grace, included, start, end in frame.select(
            "prefix",
            "destination",
            "rate",
            "connect_fee",
            "initial_increment",
            "increment",
            "grace_seconds",
            "included_seconds",
            "effective_from",
            "effective_to",
        ).iter_rows()
    )
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # COPY: one round trip for the whole deck; values are already validated and canonical.
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        with dbapi.cursor() as cursor, cursor.copy(f"COPY rates ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for r in rows:
                copy.write_row(
                    (
                        r[0],
                        r[1],
                        r[2],
                        _micro_text(r[3]),
                        _micro_text(r[4]),
                        r[5],
                        r[6],
                        r[7],
                        r[8],
                        _instant_text(r[9]),
                        _instant_text(r[10]),
                    )
                )
    else:
        # SQLite keeps money as integer micro-units (provisioning.db.Money), and instants as
        # naive UTC text as UtcDateTime writes them.
        def sqlite_instant(ms: int) -> str | None:
            moment = _ms_to_datetime(ms)
            return None if moment is None else moment.replace(tzinfo=None).isoformat(sep=" ")

        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        try:
            cursor.executemany(
                f"INSERT INTO rates ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [(*r[:9], sqlite_instant(r[9]), sqlite_instant(r[10])) for r in rows],
            )
        finally:
            cursor.close()
    record_change(session, entity=ENTITY_TARIFF, entity_id=tariff.id)
    audit.record(
        session,
        action="import_rates",
        entity="tariff",
        entity_id=tariff.id,
        tenant_path=path_of(session, tariff.reseller_id),
        after={"mode": mode, "rows": deck.frame.height, "replaced": replaced, "file": source},
    )
    return DeckImport(tariff_id=tariff.id, mode=mode, rows=deck.frame.height, replaced=replaced)


def rates_csv(rates: Iterable[Rate]) -> str:
    """Rates as a deck CSV that :func:`import_rates` reads back unchanged."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RATE_FIELDS)
    for rate in rates:
        writer.writerow(
            [
                rate.prefix,
                rate.destination,
                format(rate.rate.normalize(), "f"),
                format(rate.connect_fee.normalize(), "f"),
                rate.initial_increment,
                rate.increment,
                rate.grace_seconds,
                rate.included_seconds,
                _datetime_to_text(rate.effective_from) or "",
                _datetime_to_text(rate.effective_to) or "",
            ]
        )
    return out.getvalue()


def tariff_deck(session: Session, *, tariff_id: int) -> Deck:
    """The deck a tariff rates with, as the rating package sees it (a derived tariff resolved:
    its base's rows marked up, its own rows as overrides)."""
    tariff = session.get(Tariff, tariff_id)
    if tariff is None:
        raise NotFound("tariff", tariff_id)
    own_rows = [
        {column: getattr(rate, column) for column in RATE_FIELDS}
        for rate in session.scalars(select(Rate).where(Rate.tariff_id == tariff.id).order_by(Rate.id))
    ]
    own = deck_from_rows([_rate_as_text(r) for r in own_rows], source=tariff.name) if own_rows else None
    if tariff.base_tariff_id is None:
        return own if own is not None else deck_from_rows([], source=tariff.name)
    base = tariff_deck(session, tariff_id=tariff.base_tariff_id)
    return derive_deck(base, tariff.markup_percent or Decimal(0), own, source=tariff.name)


def customer_tariff(session: Session, *, scope: Scope, customer_id: int) -> Tariff | None:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    return session.get(Tariff, customer.tariff_id) if customer.tariff_id is not None else None


def visible_tariffs_stmt(session: Session, scope: Scope) -> Select[Any]:
    stmt = select(Tariff)
    clause = _readable_clause(session, scope)
    return stmt if clause is None else stmt.where(clause)
