"""A tenant's form templates kept in the store by name: `tenants/<tenant>/templates/<name>.yaml`.

A template is stored as the YAML it was given, once it has passed the checks of `scandigits
template check`, and checked again each time it is loaded: the store may have been written
by other hands since.
"""

from __future__ import annotations

from trainer.errors import AlreadyExists, ObjectMissing, TooLarge, UserError
from trainer.storage import Store
from worker.batches import tenant_folder
from worker.forms import templates
from worker.forms.templates import Template
from worker.manifest import valid_name

SUFFIX = ".yaml"


def _folder(tenant: str | None) -> str:
    return f"{tenant_folder(tenant)}templates/"


def key(tenant: str | None, name: str) -> str:
    """The key of the tenant's template `name` (UserError if `name` cannot name one)."""
    return f"{_folder(tenant)}{valid_name(name, 'template name')}{SUFFIX}"


def parse(data: bytes, name: str) -> Template:
    """The template in YAML `data`, checked as `scandigits template check` checks a file; a
    problem is a UserError naming `<name>.yaml` and the line."""
    return templates.from_bytes(data, f"{name}{SUFFIX}")


def save(store: Store, tenant: str | None, name: str, data: bytes) -> tuple[Template, bool]:
    """Check the YAML `data` and keep it as the tenant's template `name`; return the template
    and whether it is new (False: it replaced one)."""
    where = key(tenant, name)
    template = parse(data, name)
    try:
        store.create(where, data)
    except AlreadyExists:
        store.put(where, data)
        return template, False
    return template, True


def source(store: Store, tenant: str | None, name: str) -> bytes:
    """The YAML of the tenant's template `name`, as it was saved; ObjectMissing if none."""
    try:
        return store.get(key(tenant, name), limit=templates.MAX_BYTES)
    except TooLarge as exc:  # written to the store by other means than `save`
        raise UserError(f"{name}{SUFFIX}: {exc}, far more than any template") from None


def load(store: Store, tenant: str | None, name: str) -> Template:
    """The tenant's template `name`, checked; a UserError if there is none or it is invalid."""
    try:
        data = source(store, tenant, name)
    except ObjectMissing:
        raise UserError(f"no template named {name!r}") from None
    return parse(data, name)


def names(store: Store, tenant: str | None) -> list[str]:
    """The names of the tenant's templates, sorted."""
    folder = _folder(tenant)
    found = (k[len(folder) : -len(SUFFIX)] for k in store.list(folder) if k.endswith(SUFFIX))
    return sorted(name for name in found if "/" not in name)


def delete(store: Store, tenant: str | None, name: str) -> None:
    """Delete the tenant's template `name`; ObjectMissing if there is none."""
    where = key(tenant, name)
    if not store.exists(where):
        raise ObjectMissing(where)
    store.delete(where)
