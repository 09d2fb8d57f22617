"""Provisioning errors -> HTTP answers.

404 for what does not exist *or* is not the caller's (never 403 for a particular id, which would
confirm it exists); 409 for conflicts, naming the field; 422 in FastAPI's own validation
format, so clients parse one shape for every invalid field.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from provisioning.errors import Conflict, ImportRejected, InvalidValue, NotFound, NotPermitted


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own format, but ASCII-escaped: the detail echoes the input, and input text
        # with a lone surrogate (legal in a JSON escape) cannot be encoded as UTF-8.
        errors = [dict(error) for error in exc.errors()]
        for error in errors:
            if any("password" in str(part) for part in error.get("loc", ())):
                error.pop("input", None)  # never echo a secret back (or into access logs)
        body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
        return Response(content=body, status_code=422, media_type="application/json")

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": exc.message})

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": exc.message, "field": exc.field})

    @app.exception_handler(InvalidValue)
    async def _invalid(_request: Request, exc: InvalidValue) -> JSONResponse:
        loc = [exc.location, exc.field] if exc.field else [exc.location]
        return JSONResponse(
            status_code=422,
            content={"detail": [{"type": "value_error", "loc": loc, "msg": exc.message}]},
        )

    @app.exception_handler(ImportRejected)
    async def _rejected(_request: Request, exc: ImportRejected) -> Response:
        body = {
            "detail": exc.message,
            "error_count": exc.total,
            "errors": [{"line": line, "column": column, "message": msg} for line, column, msg in exc.problems],
        }
        return Response(content=json.dumps(body, ensure_ascii=True), status_code=422, media_type="application/json")

    @app.exception_handler(NotPermitted)
    async def _forbidden(_request: Request, exc: NotPermitted) -> JSONResponse:
        content = {"detail": exc.message} if exc.field is None else {"detail": exc.message, "field": exc.field}
        return JSONResponse(status_code=403, content=content)
