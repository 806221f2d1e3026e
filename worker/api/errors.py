"""Every error the HTTP API answers is JSON, `{"error": "one line"}`, with the status it means.

A user's mistake says what to fix; a service the API needs (the store, Redis, a model) that
fails is a 503 whose body names the service and nothing more (no URL, bucket or host: those go
to the log); anything unexpected is a 500 saying only that. No traceback ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from starlette.exceptions import HTTPException

from trainer.errors import KeyRefused, OverLimit, RegistryError, StoreError, UserError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success: its status, one-line message and extra headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


def one_line(text: str, limit: int = 300) -> str:
    """The first line of `text`, cut to `limit` characters."""
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def invalid(problems: Sequence[Mapping[str, Any]]) -> str:
    """The first of pydantic's validation errors as one line: where, and what is wrong."""
    if not problems:
        return "invalid request"
    first = problems[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return one_line(f"{where}: {first.get('msg', 'invalid')}" if where else first["msg"])


def _answer(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status, dict(headers or {}))


def _user_error(exc: UserError) -> tuple[int, str]:
    """The status and message of a UserError raised below a route."""
    if isinstance(exc, OverLimit):
        return 413, str(exc)
    if isinstance(exc, KeyRefused):
        return 400, str(exc)
    if isinstance(exc, StoreError):
        log.error("store error: %s", one_line(str(exc)))
        return 503, "the object store is unavailable"
    if isinstance(exc, RegistryError):
        log.error("no model: %s", one_line(str(exc)))
        return 503, "no model is available to read with"
    return 400, str(exc)


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _answer(exc.status, exc.message, exc.headers)


async def _on_user_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UserError)
    return _answer(*_user_error(exc))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return _answer(exc.status_code, str(exc.detail), exc.headers)


async def _on_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _answer(422, invalid(exc.errors()))


async def _on_broker(request: Request, exc: Exception) -> JSONResponse:
    log.error("Redis error: %s", one_line(str(exc)))
    return _answer(503, "the queue (Redis) is unavailable")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _answer(500, "internal error")


def install(app: FastAPI) -> None:
    """Answer every error of `app` as JSON, as this module's docstring says."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(UserError, _on_user_error)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(redis.RedisError, _on_broker)
    app.add_exception_handler(OperationalError, _on_broker)
    app.add_exception_handler(Exception, _on_unexpected)
