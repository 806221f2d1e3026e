"""The service's health and metrics: /livez (it runs), /readyz (Redis answers and a model is
published) and /metrics for Prometheus, counted by an ASGI middleware around every request.

The metrics live in a registry of the service's own; nothing else in the process adds to it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trainer import registry
from trainer.errors import RegistryError, UserError
from worker import queue
from worker.api.dependencies import Served
from worker.api.errors import ApiError
from worker.api.schemas import Health, errors

METRICS = CollectorRegistry()
REQUESTS = Counter(
    "scandigits_api_requests",
    "HTTP requests answered, by route (its template), method and status",
    ["route", "method", "status"],
    registry=METRICS,
)
UPLOAD_BYTES = Counter(
    "scandigits_api_upload_bytes",
    "Bytes of multipart bodies (uploads) received by POST /v1/batches",
    registry=METRICS,
)

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> Health:
    """The service runs."""
    return Health()


@router.get("/readyz", responses=errors(503))
def readyz(service: Served) -> Health:
    """The service can take batches: Redis answers and a model is published."""
    try:
        queue.ping(service.broker)
    except UserError:
        raise ApiError(503, "not ready: Redis does not answer") from None
    try:
        registry.resolve(service.store)
    except RegistryError:
        raise ApiError(503, "not ready: no model is published") from None
    except UserError:
        raise ApiError(503, "not ready: the object store is unavailable") from None
    return Health()


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Requests by route and status, and upload bytes, in Prometheus' text format."""
    return Response(generate_latest(METRICS), media_type=CONTENT_TYPE_LATEST)


class Counting:
    """ASGI middleware counting each HTTP request by the route it matched (the template, such
    as /v1/batches/{batch_id}, so that ids make no new series), method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(path, scope["method"], str(status)).inc()
