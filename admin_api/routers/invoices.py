"""/api/v1/customers/{id}/invoice and /rated-calls: what the billing booked for a customer."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.exports import FILE_FORMATS, FILE_RESPONSES, invoice_pdf, pdf_response
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset
from admin_api.schemas.common import Instant, Page
from admin_api.schemas.invoices import (
    InvoiceBundle,
    InvoiceLine,
    InvoicePublic,
    RatedCallPublic,
)
from admin_api.schemas.money import LedgerEntryPublic
from provisioning import repo
from provisioning.repo.invoices import Invoice

router = APIRouter(prefix="/customers/{customer_id}", tags=["invoices"])

INVOICE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {FILE_FORMATS["pdf"][0]: {"schema": {"type": "string", "format": "binary"}}},
        "description": "The invoice as JSON, or with format=pdf as a PDF file",
    }
}
RatedStatus = Literal["rated", "unanswered", "no_rate", "internal", "inbound", "unbillable"]
Month = Annotated[
    str | None,
    Query(pattern=r"^\d{4}-\d{2}$", examples=["2026-01"], description="A calendar month in the customer's time zone"),
]


def _minutes(seconds: int) -> Decimal:
    return (Decimal(seconds) / 60).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _month_text(yyyymm: int) -> str:
    return f"{yyyymm // 100:04d}-{yyyymm % 100:02d}"


def invoice_public(inv: Invoice) -> InvoicePublic:
    c = inv.customer
    return InvoicePublic(
        customer_id=c.id,
        account_code=c.account_code,
        name=c.name,
        company=c.company,
        currency=c.currency,
        timezone=c.timezone,
        billing_decimals=c.billing_decimals,
        month=inv.month,
        since=inv.since,
        until=inv.until,
        calls=[
            InvoiceLine(destination=line.destination, calls=line.calls, seconds=line.seconds,
                        minutes=_minutes(line.seconds), amount=line.amount)
            for line in inv.lines
        ],
        calls_count=inv.calls,
        calls_seconds=inv.seconds,
        usage_total=inv.usage_total,
        bundles=[
            InvoiceBundle(bundle_id=b.bundle_id, name=b.name, month=_month_text(b.month),
                          allowance_seconds=b.allowance_seconds, used_seconds=b.used_seconds)
            for b in inv.bundles
        ],
        payments=[LedgerEntryPublic.model_validate(e) for e in inv.payments],
        payments_total=inv.payments_total,
        other_charges=[LedgerEntryPublic.model_validate(e) for e in inv.other],
        other_total=inv.other_total,
        subtotal=inv.subtotal,
        tax_type=inv.tax_type,
        tax_rate=inv.tax_rate,
        tax=inv.tax,
        total=inv.total,
        uncharged_calls=inv.uncharged_calls,
    )


@router.get(
    "/invoice",
    summary="Invoice of a period: calls by destination, bundles, payments, VAT/TAX, totals",
    response_model=InvoicePublic,
    responses=INVOICE_RESPONSES,
)
def get_invoice(
    customer_id: int,
    db: DbSession,
    principal: CurrentPrincipal,
    month: Month = None,
    since: Annotated[Instant | None, Query(description="Start of the period (inclusive), instead of month")] = None,
    until: Annotated[Instant | None, Query(description="End of the period (exclusive)")] = None,
    format: Literal["json", "pdf"] = "json",
) -> Any:
    inv = repo.invoices.invoice(db, scope=principal.scope, customer_id=customer_id, month=month, since=since,
                                until=until)
    if format == "pdf":
        name = f"invoice-{inv.customer.account_code or inv.customer.id}-{inv.month or inv.since.date()}"
        return pdf_response(invoice_pdf(inv), name=name)
    return invoice_public(inv)


@router.get(
    "/rated-calls",
    summary="Rated calls: what each call cost the customer (per-call detail of invoices and charges)",
    response_model=Page[RatedCallPublic],
    responses=FILE_RESPONSES,
)
def list_rated_calls(
    customer_id: int,
    db: DbSession,
    principal: CurrentPrincipal,
    since: Annotated[Instant | None, Query(description="Rating instant at or after")] = None,
    until: Annotated[Instant | None, Query(description="Rating instant before")] = None,
    status: RatedStatus | None = None,
    run_id: Annotated[int | None, Query(ge=1, le=2**62, description="Only the calls this billing run rated")] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.invoices.list_rated_calls(
        db, scope=principal.scope, customer_id=customer_id, since=since, until=until, status=status, run_id=run_id,
        sort=sort,
    )
    # The billing's note can name carriers and tariffs of the levels above the customer.
    hidden = frozenset({"note"}) if principal.scope.kind == "customer" else frozenset()
    return respond(db, listing, RatedCallPublic, limit=limit, offset=offset, fmt=format, name="rated-calls",
                   hidden=hidden)
