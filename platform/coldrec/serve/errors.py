"""How the HTTP app answers errors: a 4xx with a message for bad requests, 503 when the store is down.

Every 422 has FastAPI's validation shape, ``{"detail": [{"loc", "msg", "type"}]}``, whether the
body failed its schema or a deploy-time limit (:func:`invalid`), so a client parses one shape.
FastAPI's default answer embeds the input and the raw exception object; the handler below keeps
what helps a client. Other errors are ``{"detail": "message"}`` (:class:`ErrorMessage`), and
:func:`error_responses` puts them in each route's OpenAPI entry. A store that cannot be reached is
the server's problem, not the client's, but it is temporary: 503 says "retry", where a bare 500
would say "bug".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

WHY = {
    400: "a body that cannot be read as text (JSON that does not parse is a 422)",
    404: "an unknown item or user",
    409: "the item exists already",
    413: "text longer than the server's max_text_chars",
    503: "the state store cannot be reached, or a part of the graph is not up yet: retry",
}


class ErrorMessage(BaseModel):
    """Every error answer but 422's: a message, or an object with one (404 for item ids lists them)."""

    detail: str | dict[str, Any] = Field(description="what went wrong")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` for the statuses it can answer besides 2xx and 422."""
    return {code: {"model": ErrorMessage, "description": WHY[code]} for code in codes}


def invalid(field: str | Sequence[str], message: str) -> HTTPException:
    """A 422 for a value the schema allows but this deployment does not (a limit, an unknown scene),
    in the shape of a validation error; ``field``: where it is, e.g. ``("body", "k")``."""
    loc = [field] if isinstance(field, str) else list(field)
    return HTTPException(422, detail=[{"loc": loc, "msg": message, "type": "value_error"}])


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
