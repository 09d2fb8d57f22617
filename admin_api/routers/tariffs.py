"""/api/v1/tariffs: rate decks, their rates, CSV deck import and export."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, Response, UploadFile

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.exports import FILE_RESPONSES
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset, text_filter
from admin_api.schemas.common import ImportRejectedDetail, Page
from admin_api.schemas.tariffs import (
    DeckImportResult,
    RateCreate,
    RatePublic,
    RateUpdate,
    TariffCreate,
    TariffCustomerView,
    TariffPublic,
    TariffUpdate,
)
from provisioning import repo
from provisioning.errors import ImportRejected
from provisioning.tokens import Principal

router = APIRouter(prefix="/tariffs", tags=["tariffs and rates"])
MAX_DECK_BYTES = 256 * 1024 * 1024


def _public(tariff: Any, principal: Principal) -> TariffPublic:
    """A customer's token never sees its reseller's base tariff or markup (docs/api.md "Tenancy")."""
    if principal.scope.kind == "customer":
        return TariffPublic.model_validate(TariffCustomerView.model_validate(tariff).model_dump())
    return TariffPublic.model_validate(tariff)


@router.post("", status_code=201, summary="Create a tariff (optionally derived from another with a markup)")
def create_tariff(body: TariffCreate, db: DbSession, principal: CurrentPrincipal) -> TariffPublic:
    tariff = repo.tariffs.create_tariff(db, scope=principal.scope, **body.model_dump())
    db.commit()
    return TariffPublic.model_validate(tariff)


@router.get("", summary="List tariffs", response_model=Page[TariffPublic], responses=FILE_RESPONSES)
def list_tariffs(
    db: DbSession,
    principal: CurrentPrincipal,
    name: Annotated[str | None, text_filter(100, "Substring, any case")] = None,
    reseller_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.tariffs.list_tariffs(db, scope=principal.scope, name=name, reseller_id=reseller_id, sort=sort)
    public = TariffCustomerView if principal.scope.kind == "customer" else TariffPublic
    return respond(db, listing, public, limit=limit, offset=offset, fmt=format, name="tariffs")


@router.get("/{tariff_id}", summary="Get a tariff")
def get_tariff(tariff_id: int, db: DbSession, principal: CurrentPrincipal) -> TariffPublic:
    return _public(repo.tariffs.get_tariff(db, scope=principal.scope, tariff_id=tariff_id), principal)


@router.patch("/{tariff_id}", summary="Change a tariff")
def update_tariff(tariff_id: int, body: TariffUpdate, db: DbSession, principal: CurrentPrincipal) -> TariffPublic:
    tariff = repo.tariffs.update_tariff(
        db, scope=principal.scope, tariff_id=tariff_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return TariffPublic.model_validate(tariff)


@router.delete("/{tariff_id}", status_code=204, summary="Delete a tariff nobody uses")
def delete_tariff(tariff_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.tariffs.delete_tariff(db, scope=principal.scope, tariff_id=tariff_id)
    db.commit()
    return Response(status_code=204)


@router.get(
    "/{tariff_id}/rates", summary="List a tariff's rates", response_model=Page[RatePublic], responses=FILE_RESPONSES
)
def list_rates(
    tariff_id: int,
    db: DbSession,
    principal: CurrentPrincipal,
    prefix: Annotated[
        str | None, Query(max_length=20, pattern=r"^[0-9]*$", description="Prefixes starting with")
    ] = None,
    destination: Annotated[str | None, text_filter(100, "Substring, any case")] = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.tariffs.list_rates(
        db, scope=principal.scope, tariff_id=tariff_id, prefix=prefix, destination=destination, sort=sort
    )
    return respond(db, listing, RatePublic, limit=limit, offset=offset, fmt=format, name="rates")


@router.get(
    "/{tariff_id}/deck.csv",
    summary="The tariff's own rows as a deck CSV (the import's format)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def export_deck(tariff_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    listing = repo.tariffs.list_rates(db, scope=principal.scope, tariff_id=tariff_id)
    body = repo.tariffs.rates_csv(listing.all(db, max_rows=repo.tariffs.MAX_DECK_ROWS))
    return Response(
        content=body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="tariff-{tariff_id}.csv"'},
    )


@router.post(
    "/{tariff_id}/rates/import",
    summary="Import a rate deck CSV: every row checked, nothing stored unless all are good",
    responses={422: {"model": ImportRejectedDetail, "description": "Bad rows, each with its line"}},
)
def import_rates(
    tariff_id: int,
    db: DbSession,
    principal: CurrentPrincipal,
    file: Annotated[UploadFile, File(description="CSV with the columns of docs/rating-spec.md")],
    mode: Annotated[
        Literal["replace", "append"], Query(description="replace: the file becomes the deck; append: added to it")
    ] = "replace",
) -> DeckImportResult:
    data = file.file.read(MAX_DECK_BYTES + 1)
    if len(data) > MAX_DECK_BYTES:
        raise ImportRejected([(None, None, "the file is larger than 256 MiB")])
    result = repo.tariffs.import_rates(
        db, scope=principal.scope, tariff_id=tariff_id, data=data, source=file.filename or "upload", mode=mode
    )
    db.commit()
    return DeckImportResult(tariff_id=result.tariff_id, mode=result.mode, rows=result.rows, replaced=result.replaced)


@router.post("/{tariff_id}/rates", status_code=201, summary="Add a rate")
def create_rate(tariff_id: int, body: RateCreate, db: DbSession, principal: CurrentPrincipal) -> RatePublic:
    rate = repo.tariffs.create_rate(db, scope=principal.scope, tariff_id=tariff_id, values=body.model_dump())
    db.commit()
    return RatePublic.model_validate(rate)


@router.get("/{tariff_id}/rates/{rate_id}", summary="Get a rate")
def get_rate(tariff_id: int, rate_id: int, db: DbSession, principal: CurrentPrincipal) -> RatePublic:
    rate = repo.tariffs.get_rate(db, scope=principal.scope, tariff_id=tariff_id, rate_id=rate_id)
    return RatePublic.model_validate(rate)


@router.patch("/{tariff_id}/rates/{rate_id}", summary="Change a rate")
def update_rate(
    tariff_id: int, rate_id: int, body: RateUpdate, db: DbSession, principal: CurrentPrincipal
) -> RatePublic:
    rate = repo.tariffs.update_rate(
        db, scope=principal.scope, tariff_id=tariff_id, rate_id=rate_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return RatePublic.model_validate(rate)


@router.delete("/{tariff_id}/rates/{rate_id}", status_code=204, summary="Delete a rate")
def delete_rate(tariff_id: int, rate_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.tariffs.delete_rate(db, scope=principal.scope, tariff_id=tariff_id, rate_id=rate_id)
    db.commit()
    return Response(status_code=204)
