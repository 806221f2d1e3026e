"""The HTTP API's request and response bodies: pydantic checks what comes in, and the same
models document what goes out at /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from worker import webhooks

State = Literal["queued", "running", "stalled", "done"]
StoreState = Literal["queued", "running", "done"]  # what the store alone tells: see `listing`
Format = Literal["jsonl", "csv"]


class BatchOptions(BaseModel):
    """How to read a batch: the form fields of an upload, or the JSON body beside `urls`."""

    model_config = ConfigDict(extra="forbid")

    chunk_size: int | None = Field(
        None, ge=1, le=10_000, description="Images per task (default: the service's)"
    )
    review_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Readings below this confidence need review (default: the service's)",
    )
    name: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="A label for the batch, to find it by in the listing",
    )
    template: str | None = Field(
        None, max_length=64, description="A stored template's name: read the scans as its form"
    )
    callback_url: str | None = Field(
        None,
        max_length=2000,
        description="An http(s) URL POSTed a signed notification when the batch finishes",
    )

    @field_validator("callback_url")
    @classmethod
    def _receivable(cls, url: str | None) -> str | None:
        try:
            return None if url is None else webhooks.valid_url(url)
        except ValueError as exc:  # pydantic's message is this one, not "Value error, ..."
            raise PydanticCustomError("callback_url", str(exc)) from None


class UrlBatch(BatchOptions):
    """A batch of objects already in the store, read in place."""

    urls: list[str] = Field(
        min_length=1,
        max_length=1000,
        description="s3:// or file:// URLs of objects or prefixes in the store, inside "
        "tenants/<tenant>/files/",
    )


class BatchCreated(BaseModel):
    """A batch taken: its id, and where to follow it."""

    batch: str
    status_url: str


class BatchReport(BaseModel):
    """A batch's progress: the report of `scandigits status`."""

    batch: str
    state: State = Field(
        description="queued, running, done, or stalled (chunks the queue lost; workers "
        "re-queue them by themselves)"
    )
    name: str | None = None
    model: int = Field(description="The model version the batch is read with")
    images: int
    images_done: int
    chunks: int
    chunks_done: int
    submitted: str
    lost_chunks: list[int] | None = None
    errors: int | None = Field(None, description="Inputs that could not be read (once done)")
    finished: str | None = None
    results: str | None = Field(None, description="The URL of the results (once done)")


class BatchPage(BaseModel):
    """A page of batches, newest first."""

    batches: list[BatchReport]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last"
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ErrorBody(BaseModel):
    """Every error: one line saying what is wrong."""

    error: str


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that may answer these error statuses, for /docs."""
    return {status: {"model": ErrorBody} for status in statuses}
