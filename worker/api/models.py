"""/v1/models: the published model versions, shared by every tenant, and promoting one to
`current`, the version batches submitted from then on are read with (trainer.registry)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from trainer import registry
from trainer.errors import RegistryError
from worker.api.dependencies import Admin, Reader, Served
from worker.api.errors import ApiError
from worker.api.schemas import errors

router = APIRouter(prefix="/v1/models", tags=["models"])


class ModelVersion(BaseModel):
    """A published version, as `scandigits models --json` lists it."""

    version: int
    created: str | None = None
    architecture: str | None = None
    test_accuracy: float | None = None
    sha256: str
    current: bool = Field(description="Whether batches submitted now are read with it")


class ModelList(BaseModel):
    """The published versions, oldest first, and the current one (null before any is)."""

    current: int | None
    models: list[ModelVersion]


def _version(metadata: dict[str, Any], current: int | None) -> ModelVersion:
    return ModelVersion(
        version=metadata["version"],
        created=metadata.get("created"),
        architecture=metadata.get("architecture"),
        test_accuracy=metadata.get("test_accuracy"),
        sha256=metadata["sha256"],
        current=metadata["version"] == current,
    )


@router.get("", responses=errors(401, 403, 429, 503))
def listing(token: Reader, service: Served) -> ModelList:
    """The published model versions, oldest first, and which is current."""
    current = registry.current_version(service.store)
    found = registry.versions(service.store)
    return ModelList(current=current, models=[_version(m, current) for m in found])


@router.post("/{version}/promote", responses=errors(401, 403, 404, 422, 429, 503))
def promote(version: Annotated[int, Path(ge=1)], token: Admin, service: Served) -> ModelVersion:
    """Make `version` current, back or forward, as `scandigits models promote` does: batches
    submitted from now on are read with it; those submitted before keep theirs."""
    try:
        metadata = registry.promote(service.store, version)
    except RegistryError:
        raise ApiError(404, "no such model version") from None
    return _version(metadata, metadata["version"])
