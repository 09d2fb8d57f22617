"""The admin API application factory."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from admin_api.deps import get_principal
from admin_api.errors import install_error_handlers
from admin_api.routers import (
    auth,
    customers,
    dids,
    health,
    imports,
    invoices,
    ip_devices,
    logs,
    money,
    plans,
    resellers,
    routing,
    sip_devices,
    tariffs,
)
from admin_api.schemas.common import ConflictDetail, ErrorDetail
from provisioning.tokens import verifier_for

API_PREFIX = "/api/v1"


def create_app(
    *,
    session_factory: sessionmaker[Session],
    realm_default: str = "trunkline",
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The admin API over ``session_factory``.

    ``realm_default`` is the digest realm of devices whose customer has no domain;
    ``metrics_registry`` is what ``/metrics`` exposes (the process-wide default when None).
    Every ``/api/v1`` route requires a bearer token; ``/healthz``, ``/metrics`` and the OpenAPI
    pages (``/docs``, ``/openapi.json``) do not.
    """
    app = FastAPI(
        title="Trunkline admin API",
        version="1",
        description=(
            "Provisioning and money for resellers and order-management systems: resellers, customers and "
            "their lifecycle, SIP and IP devices, DIDs, number translation, tariffs and rates, service plans, "
            "payments, statements and invoices, carriers and routes, logins, tokens and the audit log. "
            "Every /api/v1 route but /api/v1/auth/login takes `Authorization: Bearer <token>`. See docs/api.md."
        ),
    )
    app.state.session_factory = session_factory
    app.state.realm_default = realm_default
    app.state.metrics_registry = metrics_registry
    app.state.token_verifier = verifier_for(session_factory)
    install_error_handlers(app)

    api = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Depends(get_principal)],
        responses={
            401: {"model": ErrorDetail, "description": "Missing, unknown or revoked bearer token"},
            403: {"model": ErrorDetail, "description": "The token's role may not do this at all"},
            404: {"model": ErrorDetail, "description": "No such id, or not visible to this token"},
            409: {"model": ConflictDetail, "description": "Duplicate or state conflict, naming the field"},
        },
    )
    api.include_router(auth.router)
    api.include_router(auth.tokens)
    api.include_router(resellers.router)
    api.include_router(resellers.admins)
    api.include_router(imports.router)
    api.include_router(customers.router)
    api.include_router(money.router)
    api.include_router(invoices.router)
    api.include_router(sip_devices.router)
    api.include_router(ip_devices.router)
    api.include_router(dids.router)
    api.include_router(tariffs.router)
    api.include_router(plans.router)
    api.include_router(routing.carriers)
    api.include_router(routing.routes)
    api.include_router(logs.router)
    app.include_router(auth.public, prefix=API_PREFIX)
    app.include_router(api)
    app.include_router(health.router)
    return app
