"""Reading and pruning the change feed (writers use record_change)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from provisioning.models import Change


def latest_change_id(session: Session) -> int:
    return session.scalar(select(func.max(Change.id))) or 0


def changes_after(session: Session, *, after_id: int, upto_id: int) -> list[tuple[str, int]]:
    """(entity, id) of the changes in (after_id, upto_id], oldest first, without repeats."""
    rows = session.execute(
        select(Change.entity, Change.entity_id).where(Change.id > after_id, Change.id <= upto_id).order_by(Change.id)
    )
    return list(dict.fromkeys((entity, int(entity_id)) for entity, entity_id in rows))


def prune_changes(session: Session, *, before: datetime) -> int:
    """Delete changes older than ``before``, always keeping the newest row (the high-water mark)."""
    newest = latest_change_id(session)
    result = session.execute(delete(Change).where(Change.at < before, Change.id < newest))
    return int(getattr(result, "rowcount", 0) or 0)
