"""/api/v1/imports/customers: the cloud reseller guide's customer CSV (see provisioning.imports)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from admin_api.deps import CurrentPrincipal, DbSession, RealmDefault
from admin_api.schemas.common import ImportRejectedDetail
from admin_api.schemas.customers import CustomerImportResult
from provisioning import imports
from provisioning.errors import ImportRejected

router = APIRouter(prefix="/imports", tags=["imports"])


@router.post(
    "/customers",
    status_code=201,
    summary="Import customers from CSV: every row checked, nothing stored unless all are good",
    responses={422: {"model": ImportRejectedDetail, "description": "Bad rows, each with its line and reason"}},
)
def import_customers(
    db: DbSession,
    principal: CurrentPrincipal,
    realm: RealmDefault,
    file: Annotated[UploadFile, File(description="CSV with the columns of the cloud reseller guide")],
    reseller_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Owner of the new customers")] = None,
    tariff_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Empty: the reseller's default")] = None,
) -> CustomerImportResult:
    data = file.file.read(imports.MAX_BYTES + 1)
    if len(data) > imports.MAX_BYTES:
        raise ImportRejected([(None, None, "the file is larger than 32 MiB")])
    result = imports.import_customers(
        db, scope=principal.scope, data=data, reseller_id=reseller_id, tariff_id=tariff_id, default_realm=realm
    )
    db.commit()
    return CustomerImportResult(
        customers=result.customers,
        sip_devices=result.sip_devices,
        translation_rules=result.translation_rules,
        customer_ids=result.customer_ids,
    )
