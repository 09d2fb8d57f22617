"""Helpers shared by the repositories: change records, conflict mapping, pagination."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, UniqueConstraint, event, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioning.db import MONEY_SCALE, utcnow
from provisioning.errors import Conflict, InvalidValue
from provisioning.models import Base, Change
from provisioning.validation import NO_CONTROL_PATTERN

T = TypeVar("T")

# Any constant shared by all writers: serialises change-feed inserts on PostgreSQL (see below).
_PG_CHANGES_LOCK = 0x63686E6773  # "chngs"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def record_change(session: Session, *, entity: str, entity_id: int) -> None:
    """Note a change; its ``changes`` row is inserted by the same transaction's commit.

    The rows are written at the very end of the transaction (a ``before_commit`` hook) because
    of how the snapshot watcher reads them: it polls ``max(changes.id)`` and then reads the rows
    above the last id it saw, so ids must become visible in increasing order.  SQLite has one
    writer at a time, so they do.  PostgreSQL hands out sequence values at insert time but
    commits in any order: a transaction holding id 10 could commit after one holding id 11, and
    a watcher that already moved past 11 would never see 10.  A transaction-scoped advisory lock
    taken just before the insert and held to commit makes id order equal commit order; taking
    it last keeps it short and means no other lock is ever awaited while holding it.
    """
    pending: dict[tuple[str, int], None] = session.info.setdefault(_PENDING_KEY, {})
    pending[(entity, entity_id)] = None


_PENDING_KEY = "trunkline.pending_changes"


@event.listens_for(Session, "before_commit")
def _insert_pending_changes(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, None)
    if not pending:
        return
    session.flush()  # every row lock this transaction needs is taken before the advisory lock
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_CHANGES_LOCK})
    now = utcnow()
    session.execute(insert(Change), [{"entity": entity, "entity_id": eid, "at": now} for entity, eid in pending])


@event.listens_for(Session, "after_rollback")
def _drop_pending_changes(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


# Unique constraint (or unique index) name -> (field, message) for 409 answers.
_UNIQUE_MESSAGES: dict[str, tuple[str, str]] = {
    "uq_customers_domain": ("domain", "a customer with this domain already exists"),
    "uq_sip_devices_username": ("username", "a SIP device with this username already exists"),
    "uq_sip_devices_customer_id_extension": (
        "extension",
        "this extension is already used by another SIP device of this customer",
    ),
    "uq_ip_devices_ip_port": ("ip", "an IP device with this ip and port already exists"),
    "uq_ip_devices_ip_anyport": ("ip", "an IP device for this ip with any port already exists"),
    "uq_customers_account_code": ("account_code", "a customer with this account code already exists"),
    "uq_customers_web_username": ("web_username", "a customer with this web username already exists"),
    "uq_resellers_domain": ("domain", "a reseller with this domain already exists"),
    "uq_admin_users_username": ("username", "an administrator with this username already exists"),
    "uq_tariffs_reseller_id_name": ("name", "a tariff with this name already exists"),
    "uq_tariffs_name_provider": ("name", "a tariff with this name already exists"),
    "uq_service_plans_name": ("name", "a service plan with this name already exists"),
    "uq_call_bundles_service_plan_id_name": ("name", "this plan already has a bundle with this name"),
    "uq_customer_bundles_customer_id_bundle_id": ("bundle_id", "the customer already has this bundle"),
    "uq_carriers_name": ("name", "a carrier with this name already exists"),
    "uq_routes_name": ("name", "a route with this name already exists"),
    "uq_route_carriers_route_id_carrier_id": ("carriers", "a carrier appears twice in the route"),
    "uq_dids_number": ("number", "this DID number already exists"),
}

_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)$")


def _sqlite_unique_name(message: str) -> str | None:
    """The constraint name behind SQLite's "UNIQUE constraint failed: t.a, t.b" message."""
    match = _SQLITE_UNIQUE.search(message)
    if not match:
        return None
    qualified = [part.strip() for part in match.group(1).split(",")]
    table_name = qualified[0].split(".", 1)[0]
    columns = {part.split(".", 1)[1] for part in qualified if "." in part}
    table = Base.metadata.tables.get(table_name)
    if table is None:
        return None
    for constraint in table.constraints:
        if (
            isinstance(constraint, UniqueConstraint)
            and {c.name for c in constraint.columns} == columns
            and constraint.name
        ):
            return str(constraint.name)
    for index in table.indexes:
        if index.unique and {c.name for c in index.columns} == columns and index.name:
            return str(index.name)
    return None


def conflict_from(error: IntegrityError) -> Conflict:
    """Translate a unique violation into a Conflict naming the field; anything else stays generic."""
    orig = error.orig
    name: str | None = None
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg
        name = getattr(diag, "constraint_name", None)
    else:
        name = _sqlite_unique_name(str(orig))
    if name and name in _UNIQUE_MESSAGES:
        field, message = _UNIQUE_MESSAGES[name]
        return Conflict(message, field=field)
    return Conflict("the change conflicts with existing data")


def flush(session: Session) -> None:
    """Flush now so constraint violations surface here, as a Conflict, not at commit."""
    try:
        session.flush()
    except IntegrityError as error:
        session.rollback()
        raise conflict_from(error) from error


def paginate(session: Session, stmt: Select[Any], *, limit: int, offset: int) -> Page[Any]:
    if limit < 1 or offset < 0:
        raise InvalidValue("limit must be at least 1 and offset not negative", field="limit", location="query")
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(session.scalars(stmt.limit(limit).offset(offset)))
    return Page(items=items, total=total, limit=limit, offset=offset)


@dataclass(frozen=True, slots=True)
class Listing:
    """A scoped, filtered and sorted query, not yet run: one page of it, or all of it for an export."""

    stmt: Select[Any]
    # Core rows (mappings) instead of ORM objects, for tables without a mapped class (cdrs).
    mappings: bool = False

    def page(self, session: Session, *, limit: int, offset: int) -> Page[Any]:
        if not self.mappings:
            return paginate(session, self.stmt, limit=limit, offset=offset)
        if limit < 1 or offset < 0:
            raise InvalidValue("limit must be at least 1 and offset not negative", field="limit", location="query")
        total = session.scalar(select(func.count()).select_from(self.stmt.order_by(None).subquery())) or 0
        items = list(session.execute(self.stmt.limit(limit).offset(offset)).mappings())
        return Page(items=items, total=total, limit=limit, offset=offset)

    def rows(self, session: Session, columns: Sequence[str], *, max_rows: int) -> Iterator[Sequence[Any]]:
        """Every row as a tuple of the named columns (None for a name the table lacks).

        For exports: plain column tuples skip building an ORM object per row, which is most of
        the time a 100,000-row export would otherwise take.
        """
        if self.mappings:
            for mapping in self.all(session, max_rows=max_rows):
                yield tuple(mapping.get(c) for c in columns)
            return
        entity = self.stmt.column_descriptions[0]["entity"]
        table = entity.__table__
        present = [c for c in columns if c in table.c]
        stmt = self.stmt.with_only_columns(*[table.c[c] for c in present]).limit(max_rows)
        positions = [present.index(c) if c in present else None for c in columns]
        for row in session.execute(stmt.execution_options(yield_per=5000)):
            yield tuple(row[i] if i is not None else None for i in positions)

    def all(self, session: Session, *, max_rows: int) -> Iterator[Any]:
        """Every row (at most ``max_rows``), streamed in batches so a big export stays small in memory."""
        stmt = self.stmt.limit(max_rows).execution_options(yield_per=2000)
        if self.mappings:
            yield from session.execute(stmt).mappings()
        else:
            yield from session.scalars(stmt)


def apply_sort(
    stmt: Select[Any], sort: str | None, columns: Mapping[str, Any], *, tiebreak: Any, default: str = "id"
) -> Select[Any]:
    """ORDER BY the comma-separated ``sort`` fields ("name,-created_at"; '-' = descending).

    Only the fields in ``columns`` may be named (a 422 names the parameter otherwise).  The
    ``tiebreak`` column (the id) always comes last so that pages are stable.
    """
    spec = sort or default
    order: list[Any] = []
    seen: set[str] = set()
    for raw in spec.split(","):
        item = raw.strip()
        descending = item.startswith("-")
        name = item.lstrip("-+")
        if name not in columns or name in seen:
            allowed = ", ".join(sorted(columns))
            raise InvalidValue(f"cannot sort by {name!r}; sortable fields: {allowed}", field="sort", location="query")
        seen.add(name)
        column = columns[name]
        if getattr(column, "nullable", True):
            # NULLs sort as the smallest value on both backends (PostgreSQL would put them last);
            # only where there can be NULLs, so that an index on a NOT NULL column still serves.
            order.append(column.desc().nulls_last() if descending else column.asc().nulls_first())
        else:
            order.append(column.desc() if descending else column.asc())
    order.append(tiebreak)
    return stmt.order_by(*order)


def require_range(values: Mapping[str, Any], field: str, lo: int, hi: int) -> None:
    value = values.get(field)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi):
        raise InvalidValue(f"{field} must be between {lo} and {hi}", field=field)


def require_money(values: Mapping[str, Any], field: str, *, minimum: Decimal | None = Decimal(0)) -> None:
    """A Decimal with at most 6 places (and >= ``minimum`` when one is given)."""
    value = values.get(field)
    if value is None:
        return
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidValue(f"{field} must be a decimal number", field=field)
    if value.as_tuple().exponent < -MONEY_SCALE:  # type: ignore[operator]
        raise InvalidValue(f"{field} has more than {MONEY_SCALE} decimal places", field=field)
    if abs(value) >= MAX_MONEY:
        raise InvalidValue(f"{field} is too large", field=field)
    if minimum is not None and value < minimum:
        raise InvalidValue(f"{field} must be at least {minimum}", field=field)


# NUMERIC(18,6): 12 digits before the point.
MAX_MONEY = Decimal(10) ** 12


def require_text(values: Mapping[str, Any], field: str, *, max_length: int, required: bool = False) -> None:
    """Free text without control characters, at most ``max_length`` characters."""
    value = values.get(field)
    if value is None:
        if required and field in values:
            raise InvalidValue(f"{field} is required", field=field)
        return
    if not isinstance(value, str) or len(value) > max_length or not re.fullmatch(NO_CONTROL_PATTERN, value):
        raise InvalidValue(f"{field} must be text of at most {max_length} characters", field=field)
    if required and not value.strip():
        raise InvalidValue(f"{field} is required", field=field)


def apply_changes(obj: Any, changes: Mapping[str, Any], *, allowed: Iterable[str]) -> dict[str, Any]:
    """Set the allowed attributes that differ; returns what actually changed."""
    allowed_set = set(allowed)
    unknown = set(changes) - allowed_set
    if unknown:
        field = sorted(unknown)[0]
        raise InvalidValue(f"{field} cannot be changed", field=field)
    changed: dict[str, Any] = {}
    for key, value in changes.items():
        if getattr(obj, key) != value:
            setattr(obj, key, value)
            changed[key] = value
    return changed


def require_non_negative(values: Mapping[str, Any], fields: Sequence[str]) -> None:
    for field in fields:
        value = values.get(field)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidValue(f"{field} must be a non-negative integer", field=field)


def require_one_of(value: Any, allowed: Sequence[str], *, field: str) -> None:
    if value not in allowed:
        raise InvalidValue(f"{field} must be one of {', '.join(allowed)}", field=field)


def require_match(values: Mapping[str, Any], patterns: Mapping[str, str]) -> None:
    """Each given, non-None value must match its field's pattern (provisioning.validation)."""
    for field, pattern in patterns.items():
        value = values.get(field)
        if value is not None and (not isinstance(value, str) or not re.fullmatch(pattern, value)):
            raise InvalidValue(f"{field} has an invalid format", field=field)
