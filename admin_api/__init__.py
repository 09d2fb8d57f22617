"""The admin API: FastAPI routers (thin), pydantic schemas, auth and tenancy dependencies.

Build it with :func:`admin_api.app.create_app`; the composition root serves it with uvicorn in
the switch's event loop.  Endpoints are synchronous functions on purpose: FastAPI runs them in
its thread pool, so database calls never block the loop that carries SIP.
"""

from admin_api.app import create_app

__all__ = ["create_app"]
