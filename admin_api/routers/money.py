"""/api/v1/customers/{id}/...: payments, adjustments, charges, the ledger, balance and statements."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.exports import FILE_FORMATS, FILE_RESPONSES, file_response, pdf_response, statement_pdf
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset
from admin_api.schemas.common import Instant, Page
from admin_api.schemas.money import (
    AdjustmentCreate,
    BalancePublic,
    ChargeCreate,
    LedgerEntryPublic,
    PaymentCreate,
    StatementPublic,
)
from provisioning import repo
from provisioning.repo.ledger import Statement

router = APIRouter(prefix="/customers/{customer_id}", tags=["payments and statements"])


def _post(db: DbSession, principal: CurrentPrincipal, customer_id: int, kind: str, body: Any) -> LedgerEntryPublic:
    entry = repo.ledger.add_entry(
        db,
        scope=principal.scope,
        customer_id=customer_id,
        kind=kind,
        amount=body.amount,
        description=body.description,
        reference=body.reference,
        at=body.at,
    )
    db.commit()
    return LedgerEntryPublic.model_validate(entry)


@router.post("/payments", status_code=201, summary="Record a payment (credits the balance)")
def add_payment(customer_id: int, body: PaymentCreate, db: DbSession, principal: CurrentPrincipal) -> LedgerEntryPublic:
    return _post(db, principal, customer_id, "payment", body)


@router.post("/adjustments", status_code=201, summary="Record an adjustment (either sign)")
def add_adjustment(
    customer_id: int, body: AdjustmentCreate, db: DbSession, principal: CurrentPrincipal
) -> LedgerEntryPublic:
    return _post(db, principal, customer_id, "adjustment", body)


@router.post("/charges", status_code=201, summary="Record a charge (debits the balance)")
def add_charge(customer_id: int, body: ChargeCreate, db: DbSession, principal: CurrentPrincipal) -> LedgerEntryPublic:
    return _post(db, principal, customer_id, "charge", body)


@router.get("/ledger", summary="Ledger entries", response_model=Page[LedgerEntryPublic], responses=FILE_RESPONSES)
def list_ledger(
    customer_id: int,
    db: DbSession,
    principal: CurrentPrincipal,
    kind: Literal["payment", "adjustment", "charge"] | None = None,
    since: Annotated[Instant | None, Query()] = None,
    until: Annotated[Instant | None, Query()] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.ledger.list_entries(
        db, scope=principal.scope, customer_id=customer_id, kind=kind, since=since, until=until, sort=sort
    )
    return respond(db, listing, LedgerEntryPublic, limit=limit, offset=offset, fmt=format, name="ledger")


@router.get("/balance", summary="Balance (the sum of the ledger) and what remains to spend")
def get_balance(customer_id: int, db: DbSession, principal: CurrentPrincipal) -> BalancePublic:
    customer = repo.get_customer(db, scope=principal.scope, customer_id=customer_id)
    balance = repo.ledger.balance(db, scope=principal.scope, customer_id=customer_id)
    return BalancePublic(
        customer_id=customer.id,
        currency=customer.currency,
        balance=balance,
        credit_limit=customer.credit_limit,
        available=balance + customer.credit_limit,
        billing_type=customer.billing_type,
    )


STATEMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            **FILE_RESPONSES[200]["content"],
            FILE_FORMATS["pdf"][0]: {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "The statement as JSON, or as a csv, txt, xlsx or pdf file",
    }
}


@router.get(
    "/statement",
    summary="Account statement: opening balance, entries, closing balance",
    response_model=StatementPublic,
    responses=STATEMENT_RESPONSES,
)
def get_statement(
    customer_id: int,
    db: DbSession,
    principal: CurrentPrincipal,
    since: Annotated[Instant, Query(description="Start of the period (inclusive)")],
    until: Annotated[Instant, Query(description="End of the period (exclusive)")],
    format: Literal["json", "csv", "txt", "xlsx", "pdf"] = "json",
) -> Any:
    st = repo.ledger.statement(db, scope=principal.scope, customer_id=customer_id, since=since, until=until)
    credits = sum((e.amount for e in st.entries if e.amount > 0), Decimal(0))
    debits = sum((-e.amount for e in st.entries if e.amount < 0), Decimal(0))
    name = f"statement-{st.customer.account_code or st.customer.id}-{since.date()}"
    if format == "json":
        return StatementPublic(
            customer_id=st.customer.id,
            currency=st.customer.currency,
            since=st.since,
            until=st.until,
            opening_balance=st.opening_balance,
            entries=[LedgerEntryPublic.model_validate(e) for e in st.entries],
            closing_balance=st.closing_balance,
            total_credits=credits,
            total_debits=debits,
        )
    if format == "pdf":
        return pdf_response(_pdf(st), name=name)
    rows: list[tuple[str, str, str, str, Decimal | str, Decimal]] = [
        ("", "opening balance", "", "", "", st.opening_balance)
    ]
    running = st.opening_balance
    for e in st.entries:
        running += e.amount
        rows.append((_iso(e.at), e.kind, e.description, e.reference, e.amount, running))
    rows.append(("", "closing balance", "", "", "", st.closing_balance))
    columns = ["at", "kind", "description", "reference", "amount", "balance"]
    return file_response(format, columns, rows, name=name)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _pdf(st: Statement) -> bytes:
    customer = st.customer
    money = st.money
    running = st.opening_balance
    entries = []
    for e in st.entries:
        running += e.amount
        entries.append(
            (
                e.at.strftime("%Y-%m-%d %H:%M"),
                e.kind,
                e.description,
                e.reference,
                str(money(e.amount)),
                str(money(running)),
            )
        )
    lines = [f"{customer.name} ({customer.account_code})"]
    if customer.company:
        lines.append(customer.company)
    if customer.address:
        lines.append(customer.address)
    return statement_pdf(
        title="Account statement",
        customer_lines=lines,
        period=f"{st.since.isoformat()} to {st.until.isoformat()}",
        currency=customer.currency,
        opening=str(money(st.opening_balance)),
        closing=str(money(st.closing_balance)),
        entries=entries,
    )
