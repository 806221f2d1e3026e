"""/v1/templates: the tenant's form templates, kept in the store by name (worker.forms.stored)
and checked as `scandigits template check` checks a file.

A token sees its tenant's templates alone: another tenant's is answered 404, as a name no
template has.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from trainer.errors import ObjectMissing, StoreError, UserError
from worker.api import uploads
from worker.api.dependencies import Admin, Reader, Served
from worker.api.errors import ApiError
from worker.api.schemas import errors
from worker.forms import stored
from worker.forms.templates import MAX_BYTES

router = APIRouter(prefix="/v1/templates", tags=["templates"])
YAML = "application/yaml"
_KINDS = (YAML, "application/x-yaml", "text/yaml", "text/plain")
_PUT_BODY = {
    "requestBody": {
        "required": True,
        "description": "The template's YAML, as `scandigits template check` takes it",
        "content": {kind: {"schema": {"type": "string"}} for kind in (YAML, "text/plain")},
    }
}


class TemplateNames(BaseModel):
    """The tenant's templates, by name."""

    templates: list[str]


class TemplateSaved(BaseModel):
    """A template kept: its name, the form it describes and its fields, in order."""

    name: str
    form: str
    fields: list[str]


@router.get("", responses=errors(401, 403, 429))
def listing(token: Reader, service: Served) -> TemplateNames:
    """The names of the tenant's templates, sorted."""
    return TemplateNames(templates=stored.names(service.store, token.tenant))


@router.put(
    "/{name}",
    name="template",
    status_code=201,
    openapi_extra=_PUT_BODY,
    responses={200: {"model": TemplateSaved}, **errors(400, 401, 403, 413, 415, 422, 429)},
)
async def put(
    name: str, request: Request, response: Response, token: Admin, service: Served
) -> TemplateSaved:
    """Keep a template under `name` (201), or replace the one there (200): its YAML is the
    body, application/yaml or text/plain. A template that `scandigits template check` would
    refuse is answered 422, naming the line."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind not in _KINDS:
        raise ApiError(415, "send the template's YAML as application/yaml or text/plain")
    stored.key(token.tenant, name)  # an invalid name is refused before the body is read
    data = await uploads.read_whole(request, MAX_BYTES, "the template")
    try:
        template, created = await run_in_threadpool(
            stored.save, service.store, token.tenant, name, data
        )
    except StoreError:  # answered as errors.py says
        raise
    except UserError as exc:  # the template's mistake, naming its line
        raise ApiError(422, str(exc)) from None
    if created:
        response.headers["Location"] = str(request.url_for("template", name=name))
    else:
        response.status_code = 200
    return TemplateSaved(
        name=name, form=template.name, fields=[field.name for field in template.fields]
    )


@router.get(
    "/{name}",
    response_class=Response,
    responses={200: {"content": {YAML: {}}}, **errors(400, 401, 403, 404, 429)},
)
def get(name: str, token: Reader, service: Served) -> Response:
    """The template's YAML, as it was put."""
    try:
        data = stored.source(service.store, token.tenant, name)
    except ObjectMissing:
        raise ApiError(404, "no such template") from None
    return Response(data, media_type=YAML)


@router.delete("/{name}", status_code=204, responses=errors(400, 401, 403, 404, 429))
def delete(name: str, token: Admin, service: Served) -> Response:
    """Delete the template; batches already submitted with it keep their copy."""
    try:
        stored.delete(service.store, token.tenant, name)
    except ObjectMissing:
        raise ApiError(404, "no such template") from None
    return Response(status_code=204)
