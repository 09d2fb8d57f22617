"""/api/v1/customers/{customer_id}/ip-devices"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.exports import FILE_RESPONSES
from admin_api.listing import FormatParam, SortParam, respond
from admin_api.routers._params import PageLimit, PageOffset, text_filter
from admin_api.schemas.common import Page
from admin_api.schemas.ip_devices import DeviceStatus, IpDeviceCreate, IpDevicePublic, IpDeviceUpdate
from provisioning import repo

router = APIRouter(prefix="/customers/{customer_id}/ip-devices", tags=["ip devices"])


@router.post("", status_code=201, summary="Create an IP device")
def create_ip_device(
    customer_id: int, body: IpDeviceCreate, db: DbSession, principal: CurrentPrincipal
) -> IpDevicePublic:
    device = repo.create_ip_device(db, scope=principal.scope, customer_id=customer_id, **body.model_dump())
    db.commit()
    return IpDevicePublic.model_validate(device)


@router.get(
    "",
    summary="List a customer's IP devices",
    response_model=Page[IpDevicePublic],
    responses=FILE_RESPONSES,
)
def list_ip_devices(
    customer_id: int,
    db: DbSession,
    principal: CurrentPrincipal,
    ip: Annotated[str | None, text_filter(64)] = None,
    status: DeviceStatus | None = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.list_ip_devices(db, scope=principal.scope, customer_id=customer_id, ip=ip, status=status, sort=sort)
    return respond(db, listing, IpDevicePublic, limit=limit, offset=offset, fmt=format, name="ip-devices")


@router.get("/{device_id}", summary="Get an IP device")
def get_ip_device(customer_id: int, device_id: int, db: DbSession, principal: CurrentPrincipal) -> IpDevicePublic:
    device = repo.get_ip_device(db, scope=principal.scope, customer_id=customer_id, device_id=device_id)
    return IpDevicePublic.model_validate(device)


@router.patch("/{device_id}", summary="Change an IP device")
def update_ip_device(
    customer_id: int, device_id: int, body: IpDeviceUpdate, db: DbSession, principal: CurrentPrincipal
) -> IpDevicePublic:
    device = repo.update_ip_device(
        db,
        scope=principal.scope,
        customer_id=customer_id,
        device_id=device_id,
        changes=body.model_dump(exclude_unset=True),
    )
    db.commit()
    return IpDevicePublic.model_validate(device)


@router.delete("/{device_id}", status_code=204, summary="Delete an IP device")
def delete_ip_device(customer_id: int, device_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.delete_ip_device(db, scope=principal.scope, customer_id=customer_id, device_id=device_id)
    db.commit()
    return Response(status_code=204)
