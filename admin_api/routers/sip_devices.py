"""/api/v1/customers/{customer_id}/sip-devices"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response

from admin_api.deps import CurrentPrincipal, DbSession, RealmDefault
from admin_api.exports import FILE_RESPONSES
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset, text_filter
from admin_api.schemas.common import Page
from admin_api.schemas.sip_devices import DeviceStatus, SipDeviceCreate, SipDevicePublic, SipDeviceUpdate
from provisioning import repo

router = APIRouter(prefix="/customers/{customer_id}/sip-devices", tags=["sip devices"])


@router.post("", status_code=201, summary="Create a SIP device")
def create_sip_device(
    customer_id: int, body: SipDeviceCreate, db: DbSession, principal: CurrentPrincipal, realm: RealmDefault
) -> SipDevicePublic:
    device = repo.create_sip_device(
        db, scope=principal.scope, customer_id=customer_id, default_realm=realm, **body.model_dump()
    )
    db.commit()
    return SipDevicePublic.model_validate(device)


@router.get(
    "",
    summary="List a customer's SIP devices",
    response_model=Page[SipDevicePublic],
    responses=FILE_RESPONSES,
)
def list_sip_devices(
    customer_id: int,
    db: DbSession,
    principal: CurrentPrincipal,
    username: Annotated[str | None, text_filter(64, "Substring, any case")] = None,
    extension: Annotated[str | None, text_filter(15)] = None,
    status: DeviceStatus | None = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.list_sip_devices(
        db,
        scope=principal.scope,
        customer_id=customer_id,
        username=username,
        extension=extension,
        status=status,
        sort=sort,
    )
    return respond(db, listing, SipDevicePublic, limit=limit, offset=offset, fmt=format, name="sip-devices")


@router.get("/{device_id}", summary="Get a SIP device")
def get_sip_device(customer_id: int, device_id: int, db: DbSession, principal: CurrentPrincipal) -> SipDevicePublic:
    device = repo.get_sip_device(db, scope=principal.scope, customer_id=customer_id, device_id=device_id)
    return SipDevicePublic.model_validate(device)


@router.patch("/{device_id}", summary="Change a SIP device (a new password recomputes its digests)")
def update_sip_device(
    customer_id: int,
    device_id: int,
    body: SipDeviceUpdate,
    db: DbSession,
    principal: CurrentPrincipal,
    realm: RealmDefault,
) -> SipDevicePublic:
    device = repo.update_sip_device(
        db,
        scope=principal.scope,
        customer_id=customer_id,
        device_id=device_id,
        default_realm=realm,
        changes=body.model_dump(exclude_unset=True),
    )
    db.commit()
    return SipDevicePublic.model_validate(device)


@router.delete("/{device_id}", status_code=204, summary="Delete a SIP device")
def delete_sip_device(customer_id: int, device_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.delete_sip_device(db, scope=principal.scope, customer_id=customer_id, device_id=device_id)
    db.commit()
    return Response(status_code=204)
