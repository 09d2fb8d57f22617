"""Provisioning errors -> HTTP answers.

404 for what does not exist *or* is not the caller's (never 403 for a particular id, which would
confirm it exists); 409 for conflicts, naming the field; 422 in FastAPI's own validation
format, so clients parse one shape for every invalid field.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": exc.message})

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": exc.message, "field": exc.field})

    @app.exception_handler(InvalidValue)
    async def _invalid(_request: Request, exc: InvalidValue) -> JSONResponse:
        loc = ["body", exc.field] if exc.field else ["body"]
        return JSONResponse(
            status_code=422,
            content={"detail": [{"type": "value_error", "loc": loc, "msg": exc.message}]},
        )

    @app.exception_handler(NotPermitted)
    async def _forbidden(_request: Request, exc: NotPermitted) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": exc.message})
