"""The FastAPI app of `scandigits serve`: its routes by job (health, /v1/batches), JSON errors,
request metrics, and the OpenAPI docs at /docs. Later parts of the service (such as the review
station) are more routers included here."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import FastAPI

from worker.api import batches, errors, health
from worker.api.dependencies import Service

DESCRIPTION = """Read handwritten digits in batches of scans.

Every /v1 route takes a bearer token made by `scandigits token create`; a token acts for its
tenant and sees that tenant's batches alone. Errors are JSON, `{"error": "one line"}`."""


def create(service: Service) -> FastAPI:
    """The app serving `service`'s store and queue."""
    app = FastAPI(
        title="scandigits",
        version=version("scandigits"),
        description=DESCRIPTION,
        redoc_url=None,
    )
    app.state.service = service
    errors.install(app)
    app.add_middleware(health.Counting)
    app.include_router(health.router)
    app.include_router(batches.router)
    return app
