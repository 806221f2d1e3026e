"""What the routes are given: the service's configuration, and the caller's token with the
scope the route needs, its request counted against its rate limit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from trainer.storage import Store
from worker.api import tokens
from worker.api.errors import ApiError
from worker.api.ratelimit import RateLimit
from worker.api.tokens import Token


@dataclass(frozen=True)
class Service:
    """The store and queue the service works on, its defaults for a batch, and the rate limit
    of its tokens."""

    store: Store
    broker: str
    chunk_size: int
    review_below: float
    rate_limit: RateLimit


async def service_of(request: Request) -> Service:
    """The running service's parts (async: FastAPI runs a plain `def` in a thread)."""
    return request.app.state.service


Served = Annotated[Service, Depends(service_of)]
_bearer = HTTPBearer(auto_error=False, description="A token printed by `scandigits token create`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require(scope: str) -> Callable[..., Token]:
    """A dependency giving the caller's token, which must allow `scope`: 401 without a valid
    token (none, malformed, unknown or revoked), 429 past its requests a minute (every request
    with a valid token counts), 403 without the scope."""

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        service: Served,
    ) -> Token:
        if credentials is None:
            raise ApiError(401, "a bearer token is required", _CHALLENGE)
        token = tokens.authenticate(service.store, credentials.credentials)
        if token is None:
            raise ApiError(
                401, "the token is not valid (malformed, unknown or revoked)", _CHALLENGE
            )
        service.rate_limit.count_request(token)
        if not token.allows(scope):
            raise ApiError(403, f"the token lacks the {scope} scope")
        return token

    return caller


Submitter = Annotated[Token, Depends(require("submit"))]
Reader = Annotated[Token, Depends(require("read"))]
Admin = Annotated[Token, Depends(require("admin"))]
