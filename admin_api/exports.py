"""Listings as files: CSV, TXT (tab-separated), XLSX, and PDF for printable reports.

Every listing endpoint takes ``format``: ``json`` (the default, one page) or a file format, in
which case the whole filtered and sorted result (up to :data:`MAX_EXPORT_ROWS`) is returned as an
attachment.  The columns are the fields of the resource's Public schema, in order, so a CSV
export of a resource reads like its JSON.

Values: money is written as the exact decimal text in CSV and TXT; XLSX stores numbers as
Excel does (binary floating point) with six decimals shown, which is what a spreadsheet user
sums; use CSV when exact digits matter.  Instants are ISO 8601 UTC text everywhere.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Response

if TYPE_CHECKING:
    from provisioning.repo.invoices import Invoice

ExportFormat = Literal["json", "csv", "txt", "xlsx"]
FILE_FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "txt": ("text/plain; charset=utf-8", "txt"),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    "pdf": ("application/pdf", "pdf"),
}
MAX_EXPORT_ROWS = 1_000_000
# OpenAPI: what a listing's 200 may also be.
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
            FILE_FORMATS["xlsx"][0]: {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "A page of JSON, or with format=csv|txt|xlsx the whole listing as a file",
    }
}


def cell(value: Any) -> str:
    """One value as text: exact decimals, ISO instants, lists space-separated, empty for None."""
    kind = type(value)
    if kind is str:  # the common cases first: exports format millions of cells
        return str(value)
    if value is None:
        return ""
    if kind is int:
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list | tuple):
        return " ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return ";".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


def _tsv_cell(value: Any) -> str:
    # A tab or newline inside a value would shift the columns of a tab-separated file.
    return cell(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_safe(v) if type(v) is str else cell(v) for v in row])
    return out.getvalue().encode("utf-8")


_FORMULA_STARTS = frozenset("=+-@")


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets (CSV injection); numbers
    # such as -2.5 or +442079460000 are left alone.
    if text and text[0] in _FORMULA_STARTS and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def _txt(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    lines = ["\t".join(columns)]
    lines.extend("\t".join(_tsv_cell(v) for v in row) for row in rows)
    return ("\n".join(lines) + "\n").encode("utf-8")


def _xlsx(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str) -> bytes:
    import xlsxwriter

    out = io.BytesIO()
    # constant_memory: rows are flushed as they are written, so a 100,000-row export stays small.
    book = xlsxwriter.Workbook(out, {"in_memory": True, "constant_memory": True, "strings_to_formulas": False})
    sheet = book.add_worksheet(title[:31] or "export")
    bold = book.add_format({"bold": True})
    money = book.add_format({"num_format": "0.000000"})
    for col, name in enumerate(columns):
        sheet.write_string(0, col, name, bold)
    for r, row in enumerate(rows, start=1):
        for col, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, bool):
                sheet.write_boolean(r, col, value)
            elif isinstance(value, int):
                sheet.write_number(r, col, value)
            elif isinstance(value, Decimal):
                sheet.write_number(r, col, float(value), money)
            else:
                sheet.write_string(r, col, cell(value))
    book.close()
    return out.getvalue()


def file_response(fmt: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, name: str) -> Response:
    """The rows as a ``fmt`` attachment named ``name.<ext>``."""
    media_type, extension = FILE_FORMATS[fmt]
    if fmt == "csv":
        body = _csv(columns, rows)
    elif fmt == "txt":
        body = _txt(columns, rows)
    elif fmt == "xlsx":
        body = _xlsx(columns, rows, name)
    else:
        raise ValueError(f"not a listing format: {fmt}")
    return Response(
        content=body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}.{extension}"'},
    )


def pdf_response(body: bytes, *, name: str) -> Response:
    return Response(
        content=body,
        media_type=FILE_FORMATS["pdf"][0],
        headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
    )


def statement_pdf(
    *,
    title: str,
    customer_lines: Sequence[str],
    period: str,
    currency: str,
    opening: str,
    closing: str,
    entries: Sequence[tuple[str, str, str, str, str, str]],
) -> bytes:
    """An account statement on A4: header, opening balance, entries with a running balance, closing."""
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for line in customer_lines:
        pdf.cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 5, _latin1(f"Period: {period}"), new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 5, _latin1(f"Currency: {currency}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    widths = (34, 22, 58, 30, 24, 24)
    headers = ("Date (UTC)", "Kind", "Description", "Reference", "Amount", "Balance")
    pdf.set_font("Helvetica", "B", 9)
    for width, header in zip(widths, headers, strict=True):
        pdf.cell(width, 6, header, border=1, align="R" if header in ("Amount", "Balance") else "L")
    pdf.ln()
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(sum(widths[:5]), 6, "Opening balance", border=1)
    pdf.cell(widths[5], 6, opening, border=1, align="R")
    pdf.ln()
    for entry in entries:
        for i, (width, value) in enumerate(zip(widths, entry, strict=True)):
            pdf.cell(width, 6, _latin1(_fit(value, width)), border=1, align="R" if i >= 4 else "L")
        pdf.ln()
    pdf.set_font("Helvetica", "B", 9)
    pdf.cell(sum(widths[:5]), 6, "Closing balance", border=1)
    pdf.cell(widths[5], 6, closing, border=1, align="R")
    pdf.ln()
    return bytes(pdf.output())


def invoice_pdf(inv: Invoice) -> bytes:
    """An invoice on A4: the customer, the period, calls by destination, bundles, payments, other
    charges, subtotal, VAT/TAX and total (amounts with the customer's billing decimals)."""
    from zoneinfo import ZoneInfo

    from fpdf import FPDF

    c = inv.customer
    zone = ZoneInfo(c.timezone)
    shown = inv.shown

    def local(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, "Invoice", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    lines = [f"{c.name} ({c.account_code})"] + [x for x in (c.company, c.address, c.city) if x]
    period = f"{inv.month} ({c.timezone})" if inv.month else f"{local(inv.since)} to {local(inv.until)} ({c.timezone})"
    lines += [f"Period: {period}", f"Currency: {c.currency}"]
    for line in lines:
        pdf.cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")

    def table(title: str, headers: Sequence[str], widths: Sequence[float], rows: Sequence[Sequence[str]],
              right_from: int, footer: Sequence[str] | None = None) -> None:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(0, 7, _latin1(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "B", 9)
        for i, (width, header) in enumerate(zip(widths, headers, strict=True)):
            pdf.cell(width, 6, header, border=1, align="R" if i >= right_from else "L")
        pdf.ln()
        pdf.set_font("Helvetica", "", 9)
        if not rows:
            pdf.cell(sum(widths), 6, "none", border=1)
            pdf.ln()
        for row in rows:
            for i, (width, value) in enumerate(zip(widths, row, strict=True)):
                pdf.cell(width, 6, _latin1(_fit(value, width)), border=1, align="R" if i >= right_from else "L")
            pdf.ln()
        if footer is not None:
            pdf.set_font("Helvetica", "B", 9)
            for i, (width, value) in enumerate(zip(widths, footer, strict=True)):
                pdf.cell(width, 6, _latin1(value), border=1, align="R" if i >= right_from else "L")
            pdf.ln()

    def minutes(seconds: int) -> str:
        return str((Decimal(seconds) / 60).quantize(Decimal("0.01")))

    table(
        "Calls by destination",
        ("Destination", "Calls", "Minutes", "Amount"),
        (100, 25, 30, 35),
        [(x.destination, str(x.calls), minutes(x.seconds), str(shown(x.amount))) for x in inv.lines],
        1,
        ("Total", str(inv.calls), minutes(inv.seconds), str(shown(inv.usage_total))),
    )
    if inv.bundles:
        table(
            "Bundles used",
            ("Bundle", "Month", "Minutes included", "Minutes used"),
            (80, 30, 40, 40),
            [
                (b.name, f"{b.month // 100}-{b.month % 100:02d}",
                 "-" if b.allowance_seconds is None else minutes(b.allowance_seconds), minutes(b.used_seconds))
                for b in inv.bundles
            ],
            2,
        )
    if inv.other:
        table(
            "Other charges and adjustments",
            ("Date", "Description", "Amount"),
            (35, 120, 35),
            [(local(e.at), e.description or e.kind, str(shown(-e.amount))) for e in inv.other],
            2,
        )
    table(
        "Payments received",
        ("Date", "Reference", "Amount"),
        (35, 120, 35),
        [(local(e.at), e.reference or e.description, str(shown(e.amount))) for e in inv.payments],
        2,
        ("", "Total payments", str(shown(inv.payments_total))),
    )
    tax_label = "no tax" if inv.tax_type == "NONE" else f"{inv.tax_type} {inv.tax_rate.normalize():f}%"
    table(
        "Summary",
        ("", "Amount"),
        (155, 35),
        [
            ("Calls", str(shown(inv.usage_total))),
            ("Other charges and adjustments", str(shown(inv.other_total))),
            ("Subtotal", str(shown(inv.subtotal))),
            (tax_label, str(shown(inv.tax))),
        ],
        1,
        ("Total due for the period", str(shown(inv.total))),
    )
    if inv.uncharged_calls:
        pdf.ln(2)
        pdf.set_font("Helvetica", "", 8)
        pdf.cell(0, 5, f"{inv.uncharged_calls} call(s) of the period were not charged (free, unanswered or unrated).",
                 new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _fit(text: str, width_mm: float) -> str:
    limit = int(width_mm / 1.9)  # about 1.9 mm per character at 9 pt
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "~"


def _latin1(text: str) -> str:
    # The PDF core fonts cover Latin-1 only; anything else becomes '?' rather than an error.
    return text.encode("latin-1", "replace").decode("latin-1")
