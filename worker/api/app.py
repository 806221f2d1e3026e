"""The FastAPI app of `scandigits serve`: its routes by job (health, /v1/batches, /v1/templates,
/v1/models), JSON errors, request metrics, and the OpenAPI docs at /docs. Later parts of the
service (such as the review station) are more routers included here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from worker.api import background, batches, errors, health, models, templates
from worker.api.dependencies import Service

DESCRIPTION = """Read handwritten digits in batches of scans.

Every /v1 route takes a bearer token made by `scandigits token create`; a token acts for its
tenant and sees that tenant's batches and templates alone; models are shared. Each token's
requests and uploaded bytes a minute are limited (429 with `Retry-After`). Errors are JSON,
`{"error": "one line"}`."""


def create(service: Service) -> FastAPI:
    """The app serving `service`'s store and queue, and doing its background work meanwhile."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with background.running(service.store):
            yield

    app = FastAPI(
        title="scandigits",
        version=version("scandigits"),
        description=DESCRIPTION,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    errors.install(app)
    app.add_middleware(health.Counting)
    app.include_router(health.router)
    app.include_router(batches.router)
    app.include_router(templates.router)
    app.include_router(models.router)
    return app
