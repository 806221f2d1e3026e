"""/v1/batches: submit a batch (an upload, or store URLs), list a tenant's batches, follow one,
stream its results, delete it; over the functions the CLI uses (worker.batches).

A token sees its tenant's batches alone: another tenant's batch id is answered 404, as an id
no batch has. An `Idempotency-Key` names one batch per tenant: a request sent again with it
gets the batch the first one made (see `_claim`).
"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from kombu.exceptions import OperationalError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from trainer import registry
from trainer.errors import AlreadyExists, ObjectMissing, UserError
from trainer.storage import Store
from worker import batches
from worker.api import uploads
from worker.api.dependencies import Admin, Reader, Served, Service, Submitter
from worker.api.errors import ApiError, invalid
from worker.api.schemas import (
    BatchCreated,
    BatchOptions,
    BatchPage,
    BatchReport,
    Format,
    StoreState,
    UrlBatch,
    errors,
)
from worker.api.tokens import Token
from worker.forms import stored
from worker.forms.templates import Template
from worker.manifest import Callback, Manifest

router = APIRouter(prefix="/v1/batches", tags=["batches"])
_MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
_OPTIONS = {
    "chunk_size": {"type": "integer", "minimum": 1, "maximum": 10_000},
    "review_threshold": {"type": "number", "minimum": 0, "maximum": 1},
    "name": {"type": "string", "maxLength": 100},
    "callback_url": {"type": "string", "format": "uri", "maxLength": 2000},
    "template": {"type": "string", "maxLength": 64},
}
_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Images, PDFs, TIFFs, ZIP or TAR archives; each "
                            "file's name labels its results",
                        },
                        **_OPTIONS,
                    },
                }
            },
            "application/json": {"schema": UrlBatch.model_json_schema()},
        },
    }
}


def _owned(store: Store, batch_id: str, token: Token) -> Manifest:
    """The batch's manifest if it is the token's tenant's; else 404, as for no batch."""
    try:
        batch = batches.manifest(store, batch_id)
    except UserError:  # no such batch, or no valid id
        raise ApiError(404, "no such batch") from None
    if batch.tenant != token.tenant:
        raise ApiError(404, "no such batch")
    return batch


def _report(request: Request, report: dict[str, Any]) -> BatchReport:
    """A status report, its results given as the URL to fetch them from this service."""
    if "results" in report:
        report["results"] = str(request.url_for("results", batch_id=report["batch"]))
    return BatchReport(**report)


def _claim(store: Store, tenant: str, key: str) -> str:
    """The batch id an Idempotency-Key stands for in a tenant: the one recorded for the key, or
    a new one recorded now by exclusive create (so two requests with one key get one id).
    A request with the id submits under it by exclusive create too: the first to write the
    manifest makes the batch, and the others answer with it."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    record = f"{batches.tenant_folder(tenant)}idempotency/{digest}"
    batch_id = batches.new_id(3)
    try:
        store.create(record, batch_id.encode())
    except AlreadyExists:
        return store.get(record).decode()
    return batch_id


def _template(store: Store, token: Token, name: str) -> Template:
    """The tenant's stored template `name`; 422 if it has none of that name, or a bad one."""
    try:
        return stored.load(store, token.tenant, name)
    except UserError as exc:
        raise ApiError(422, str(exc)) from None


def _created(request: Request, response: Response, batch_id: str) -> BatchCreated:
    status_url = str(request.url_for("batch", batch_id=batch_id))
    response.headers["Location"] = status_url
    return BatchCreated(batch=batch_id, status_url=status_url)


@router.post(
    "",
    status_code=202,
    openapi_extra=_SUBMIT_BODY,
    responses=errors(400, 401, 403, 413, 415, 422, 429, 503),
)
async def submit(
    request: Request,
    response: Response,
    token: Submitter,
    service: Served,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> BatchCreated:
    """Submit a batch: a multipart upload of files in the field `files`, or a JSON body of
    store URLs (`urls`); with `chunk_size`, `review_threshold`, `name`, `template` (a stored
    template's name: the scans are pages of that form) and `callback_url` (told when the batch
    finishes: see the webhooks section of the docs). Uploads stream to
    the store; a file over the limits is refused (413) and nothing is queued."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json"):
        raise ApiError(415, "send multipart/form-data (files) or application/json (urls)")
    model = (await run_in_threadpool(registry.resolve, service.store))["version"]
    batch_id = None
    if idempotency_key is not None:
        batch_id = await run_in_threadpool(_claim, service.store, token.tenant, idempotency_key)
        made = batches.manifest_key(batch_id)
        if await run_in_threadpool(service.store.exists, made):
            return _created(request, response, batch_id)
    submission = batches.Submission(service.store, batch_id)
    try:
        options = await _inputs(request, kind, submission, token, service)
        form = None
        if options.template:
            form = await run_in_threadpool(_template, service.store, token, options.template)
        chunk_size = options.chunk_size or service.chunk_size
        below = options.review_threshold
        below = service.review_below if below is None else below
        callback = None
        if options.callback_url:
            results = str(request.url_for("results", batch_id=submission.batch))
            callback = Callback(options.callback_url, token.id, results)
        try:
            batch_id = await run_in_threadpool(
                submission.queue,
                model,
                chunk_size,
                below,
                form,
                tenant=token.tenant,
                name=options.name,
                callback=callback,
            )
        except AlreadyExists:  # a request with the same key made the batch first
            batch_id = submission.batch
    finally:
        await run_in_threadpool(submission.close)
    return _created(request, response, batch_id)


async def _inputs(
    request: Request, kind: str, submission: batches.Submission, token: Token, service: Service
) -> BatchOptions:
    """Add the request's inputs to `submission`: the files of an upload, the objects at the
    URLs of a JSON body (inside the tenant's folder of the store alone); return its options."""
    try:
        if kind == "application/json":
            text = await uploads.read_whole(request, uploads.JSON_BYTES, "the JSON body")
            body = UrlBatch.model_validate_json(text)
            inside = f"{batches.tenant_folder(token.tenant)}files/"
            for url in body.urls:
                await run_in_threadpool(submission.add_url, url, inside)
            if not submission.items:
                raise ApiError(422, "no images found at the URLs given")
            return body
        spend = partial(service.rate_limit.spend_bytes, token)
        fields = await uploads.receive(request, submission, spend)
        return BatchOptions.model_validate(fields)
    except ValidationError as exc:
        raise ApiError(422, invalid(exc.errors())) from None


@router.get("", responses=errors(400, 401, 403, 422))
def listing(
    token: Reader,
    service: Served,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    state: StoreState | None = None,
    name: Annotated[str | None, Query(max_length=100)] = None,
) -> BatchPage:
    """The tenant's batches, newest first, `limit` to a page: pass `next_cursor` as `cursor`
    for the next. `state` (from the store: queued, running, done) and `name` filter them."""
    reports, after = batches.listing(service.store, token.tenant, limit, cursor, state, name)
    return BatchPage(batches=[_report(request, r) for r in reports], next_cursor=after)


@router.get("/{batch_id}", name="batch", responses=errors(401, 403, 404))
def status(batch_id: str, token: Reader, service: Served, request: Request) -> BatchReport:
    """The batch's progress, as `scandigits status` reports it."""
    batch = _owned(service.store, batch_id, token)
    try:
        report = batches.status(service.store, batch, broker=True)
    except (redis.RedisError, OperationalError):  # the store alone still tells the progress
        report = batches.status(service.store, batch)
    return _report(request, report)


@router.get(
    "/{batch_id}/results",
    name="results",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}},
        **errors(401, 403, 404, 409, 422),
    },
)
def results(
    batch_id: str,
    token: Reader,
    service: Served,
    fmt: Annotated[Format, Query(alias="format")] = "jsonl",
) -> StreamingResponse:
    """A finished batch's results, streamed: JSON Lines (default) or CSV."""
    batch = _owned(service.store, batch_id, token)
    try:
        pieces = batches.result_stream(service.store, batch_id, fmt)
    except ObjectMissing:
        report = batches.status(service.store, batch)
        done = f"{report['images_done']}/{report['images']} images"
        raise ApiError(409, f"the batch is not finished ({done})") from None
    disposition = f'attachment; filename="{batch_id}.{fmt}"'
    return StreamingResponse(
        pieces, media_type=_MEDIA[fmt], headers={"Content-Disposition": disposition}
    )


@router.delete("/{batch_id}", status_code=204, responses=errors(401, 403, 404))
def delete(batch_id: str, token: Admin, service: Served) -> Response:
    """Delete a batch: what is queued of it is taken off the queue, its uploaded inputs and
    its results are deleted."""
    _owned(service.store, batch_id, token)
    batches.delete(service.store, batch_id)
    return Response(status_code=204)
