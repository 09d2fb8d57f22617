"""/api/v1/carriers and /api/v1/routes: the service provider's termination (403 for others)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from admin_api.deps import CurrentPrincipal, DbSession
from admin_api.exports import FILE_RESPONSES
from admin_api.listing import FormatParam, SortParam, export, respond
from admin_api.routers._params import PageLimit, PageOffset, text_filter
from admin_api.schemas.common import EntityStatus, Page
from admin_api.schemas.routing import (
    CarrierCreate,
    CarrierPublic,
    CarrierUpdate,
    RouteCarrierPublic,
    RouteCreate,
    RoutePublic,
    RouteUpdate,
)
from provisioning import repo
from provisioning.models import Route

carriers = APIRouter(prefix="/carriers", tags=["carriers and routes"])
routes = APIRouter(prefix="/routes", tags=["carriers and routes"])


@carriers.post("", status_code=201, summary="Create a carrier")
def create_carrier(body: CarrierCreate, db: DbSession, principal: CurrentPrincipal) -> CarrierPublic:
    carrier = repo.routing.create_carrier(db, scope=principal.scope, **body.model_dump())
    db.commit()
    return CarrierPublic.model_validate(carrier)


@carriers.get("", summary="List carriers", response_model=Page[CarrierPublic], responses=FILE_RESPONSES)
def list_carriers(
    db: DbSession,
    principal: CurrentPrincipal,
    name: Annotated[str | None, text_filter(100, "Substring, any case")] = None,
    status: EntityStatus | None = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.routing.list_carriers(db, scope=principal.scope, name=name, status=status, sort=sort)
    return respond(db, listing, CarrierPublic, limit=limit, offset=offset, fmt=format, name="carriers")


@carriers.get("/{carrier_id}", summary="Get a carrier")
def get_carrier(carrier_id: int, db: DbSession, principal: CurrentPrincipal) -> CarrierPublic:
    return CarrierPublic.model_validate(repo.routing.get_carrier(db, scope=principal.scope, carrier_id=carrier_id))


@carriers.patch("/{carrier_id}", summary="Change a carrier")
def update_carrier(carrier_id: int, body: CarrierUpdate, db: DbSession, principal: CurrentPrincipal) -> CarrierPublic:
    carrier = repo.routing.update_carrier(
        db, scope=principal.scope, carrier_id=carrier_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return CarrierPublic.model_validate(carrier)


@carriers.delete("/{carrier_id}", status_code=204, summary="Delete a carrier in no route")
def delete_carrier(carrier_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.routing.delete_carrier(db, scope=principal.scope, carrier_id=carrier_id)
    db.commit()
    return Response(status_code=204)


def _route(db: Session, route: Route) -> RoutePublic:
    members = [RouteCarrierPublic.model_validate(m) for m in repo.routing.route_carriers(db, route.id)]
    return RoutePublic(
        id=route.id,
        name=route.name,
        dial_pattern=route.dial_pattern,
        strategy=route.strategy,
        customer_id=route.customer_id,
        status=route.status,
        carriers=members,
        created_at=route.created_at,
        updated_at=route.updated_at,
    )


@routes.post("", status_code=201, summary="Create a dialing route: dial pattern -> ordered carriers")
def create_route(body: RouteCreate, db: DbSession, principal: CurrentPrincipal) -> RoutePublic:
    values = body.model_dump()
    route = repo.routing.create_route(db, scope=principal.scope, **values)
    db.commit()
    return _route(db, route)


@routes.get("", summary="List dialing routes", response_model=Page[RoutePublic], responses=FILE_RESPONSES)
def list_routes(
    db: DbSession,
    principal: CurrentPrincipal,
    name: Annotated[str | None, text_filter(100, "Substring, any case")] = None,
    dial_pattern: Annotated[str | None, Query(max_length=20, pattern=r"^[0-9]*$")] = None,
    customer_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    status: EntityStatus | None = None,
    sort: SortParam = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    format: FormatParam = "json",
) -> Any:
    listing = repo.routing.list_routes(
        db,
        scope=principal.scope,
        name=name,
        dial_pattern=dial_pattern,
        customer_id=customer_id,
        status=status,
        sort=sort,
    )
    if format != "json":
        items = [_route(db, r) for r in listing.all(db, max_rows=100_000)]
        return export(items, RoutePublic, fmt=format, name="routes")
    page = listing.page(db, limit=limit, offset=offset)
    return Page[RoutePublic](
        items=[_route(db, r) for r in page.items], total=page.total, limit=page.limit, offset=page.offset
    )


@routes.get("/{route_id}", summary="Get a dialing route")
def get_route(route_id: int, db: DbSession, principal: CurrentPrincipal) -> RoutePublic:
    return _route(db, repo.routing.get_route(db, scope=principal.scope, route_id=route_id))


@routes.patch("/{route_id}", summary="Change a dialing route (carriers: replaces the list)")
def update_route(route_id: int, body: RouteUpdate, db: DbSession, principal: CurrentPrincipal) -> RoutePublic:
    route = repo.routing.update_route(
        db, scope=principal.scope, route_id=route_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return _route(db, route)


@routes.delete("/{route_id}", status_code=204, summary="Delete a dialing route")
def delete_route(route_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    repo.routing.delete_route(db, scope=principal.scope, route_id=route_id)
    db.commit()
    return Response(status_code=204)
