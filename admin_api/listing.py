"""One page of a listing as JSON, or the whole listing as a file: shared by every listing endpoint."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from admin_api.exports import MAX_EXPORT_ROWS, ExportFormat, file_response
from admin_api.schemas.common import Page
from provisioning.repo import Listing

FormatParam = Annotated[
    ExportFormat,
    Query(description="json: one page; csv, txt (tab-separated) or xlsx: the whole listing as a file"),
]
SortParam = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=r"^-?[a-z_]{1,40}(,-?[a-z_]{1,40}){0,5}$",
        description="Comma-separated fields, '-' for descending (e.g. -created_at,name)",
    ),
]


def respond(
    db: Session,
    listing: Listing,
    public: type[BaseModel],
    *,
    limit: int,
    offset: int,
    fmt: str,
    name: str,
    hidden: frozenset[str] = frozenset(),
) -> Any:
    """A ``Page`` of ``public`` items, or a file of every row when ``fmt`` is not json.

    ``hidden`` fields are withheld from this caller (e.g. a customer's token does not see what
    its reseller's business is): their default in JSON, left out of files."""
    if fmt == "json":
        page = listing.page(db, limit=limit, offset=offset)
        blank = {field: public.model_fields[field].default for field in hidden}
        items = [public.model_validate(item) for item in page.items]
        return Page[public](  # type: ignore[valid-type]
            items=[item.model_copy(update=blank) for item in items] if blank else items,
            total=page.total,
            limit=page.limit,
            offset=page.offset,
        )
    columns = [column for column in public.model_fields if column not in hidden]
    return file_response(fmt, columns, listing.rows(db, columns, max_rows=MAX_EXPORT_ROWS), name=name)


def export(items: Any, public: type[BaseModel], *, fmt: str, name: str) -> Response:
    """A file of already-built items (rows that are not one table's columns, e.g. routes)."""
    columns = list(public.model_fields)
    rows = ([getattr(item, column, None) for column in columns] for item in items)
    return file_response(fmt, columns, rows, name=name)
