"""How the HTTP app answers errors: a 4xx with a message for bad requests, 503 when the store is down.

FastAPI's default validation answer embeds the input and the raw exception object; these handlers
keep what helps a client. A store that cannot be reached is the server's problem, not the
client's, but it is temporary: 503 says "retry", where a bare 500 would say "bug".
"""

from __future__ import annotations

import sqlite3

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": errors})


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": f"state store unavailable: {type(exc).__name__}: {exc}"})


def install_error_handlers(api: FastAPI) -> None:
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(sqlite3.Error, _store_unavailable)
    try:
        from redis.exceptions import RedisError
    except ImportError:  # the Redis client is optional for SQLite-only deployments
        return
    api.add_exception_handler(RedisError, _store_unavailable)
