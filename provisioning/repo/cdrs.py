"""CDRs, read-only: the switch writes them (provisioning.cdr_writer), tenants read their own."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.models import cdrs
from provisioning.repo._common import Listing, apply_sort
from provisioning.repo.customers import get_customer
from provisioning.scope import Scope

SORTABLE = ("id", "start_ms", "duration_ms", "dialled_number", "caller_number")


def list_cdrs(
    session: Session,
    *,
    scope: Scope,
    customer_id: int | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    number: str | None = None,
    disposition: str | None = None,
    direction: str | None = None,
    sip_call_id: str | None = None,
    sort: str | None = None,
) -> Listing:
    """CDRs in scope: a reseller's are those whose reseller path is under its own (the path is
    stamped on the CDR when the call is made, so a later move of the customer does not rewrite
    history); a customer's are its own."""
    stmt = select(cdrs)
    if scope.kind == "customer":
        stmt = stmt.where(cdrs.c.customer_id == scope.customer_id)
    elif scope.kind == "reseller":
        stmt = stmt.where(cdrs.c.reseller_path.startswith(scope.reseller_path, autoescape=True))
    if customer_id is not None:
        get_customer(session, scope=scope, customer_id=customer_id)
        stmt = stmt.where(cdrs.c.customer_id == customer_id)
    if since_ms is not None:
        stmt = stmt.where(cdrs.c.start_ms >= since_ms)
    if until_ms is not None:
        stmt = stmt.where(cdrs.c.start_ms < until_ms)
    if number:
        stmt = stmt.where(cdrs.c.dialled_number.startswith(number, autoescape=True))
    if disposition:
        stmt = stmt.where(cdrs.c.disposition == disposition)
    if direction:
        stmt = stmt.where(cdrs.c.direction == direction)
    if sip_call_id:
        stmt = stmt.where(cdrs.c.sip_call_id == sip_call_id)
    columns = {key: cdrs.c[key] for key in SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=cdrs.c.id, default="-start_ms"), mappings=True)
