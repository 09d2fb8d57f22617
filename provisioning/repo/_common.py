"""Helpers shared by the repositories: change records, conflict mapping, pagination."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, UniqueConstraint, event, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioning.db import utcnow
from provisioning.errors import Conflict, InvalidValue
from provisioning.models import Base, Change

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
        raise InvalidValue("limit must be at least 1 and offset not negative", field="limit")
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(session.scalars(stmt.limit(limit).offset(offset)))
    return Page(items=items, total=total, limit=limit, offset=offset)


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
