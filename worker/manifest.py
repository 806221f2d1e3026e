"""What a batch holds and what each of its chunk tasks is told: the manifest, its items, and
the chunk message — built at submit, read by workers, status and finalize.

On the wire they stay plain JSON: the manifest is `batches/<id>/manifest.json`; a chunk
task's message is Celery's positional arguments `[batch, index, count, items, model,
review_below, queued, template]`, so workers of one release read what any other queued.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from trainer.errors import UserError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def valid_name(name: str, what: str) -> str:
    """`name` if it can name a batch, tenant or token: a letter or digit, then up to 63 of
    those or `_.-`; they name store folders, so they must never lead out of one."""
    if not _NAME.fullmatch(name):
        raise UserError(f"invalid {what} {name!r}")
    return name


@dataclass(frozen=True)
class Item:
    """One image to read: where it came from (`source`, as the user named it), its key in the
    store, and for a page of a PDF or TIFF the page (from 1)."""

    source: str
    key: str
    page: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"source": self.source, "key": self.key}
        return data if self.page is None else {**data, "page": self.page}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        return cls(data["source"], data["key"], data.get("page"))


@dataclass(frozen=True)
class Chunk:
    """A chunk task's message: which chunk of which batch, its items, and how to read them."""

    batch: str
    index: int
    count: int  # chunks in the batch: the chunk that lands last finalizes it
    items: tuple[Item, ...]
    model: int
    review_below: float
    queued: str  # ISO time it was queued, for the queue-wait metric
    template: dict[str, Any] | None = None  # a form's Template.to_dict(), if read as a form

    def to_args(self) -> list[Any]:
        """The task's positional arguments."""
        items = [item.to_dict() for item in self.items]
        return [
            self.batch,
            self.index,
            self.count,
            items,
            self.model,
            self.review_below,
            self.queued,
            self.template,
        ]

    @classmethod
    def from_args(cls, args: tuple[Any, ...] | list[Any]) -> Chunk:
        batch, index, count, items, model, review_below, queued, *template = args
        items = tuple(Item.from_dict(item) for item in items)
        return cls(batch, index, count, items, model, review_below, queued, *template)


@dataclass(frozen=True)
class Callback:
    """Where to tell that a batch finished (worker/webhooks.py): the receiver's `url`, the id of
    the token whose signing secret signs the notification, and the URL of the batch's results
    on the service that took it."""

    url: str
    token: str
    results: str

    def to_dict(self) -> dict[str, str]:
        return {"url": self.url, "token": self.token, "results": self.results}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Callback:
        return cls(data["url"], data["token"], data["results"])


@dataclass(frozen=True)
class Manifest:
    """A batch as submitted: its id, creation time, model version, review threshold, form
    template (if any), its items cut into chunks, and, when submitted through the HTTP API,
    its tenant, its label (`name`) and its `callback`. The last three are left out of the JSON
    when None, so a batch submitted without them keeps the manifest it always had."""

    batch: str
    created: str
    model: int
    chunk_size: int
    review_below: float
    template: dict[str, Any] | None
    chunks: tuple[tuple[Item, ...], ...]
    tenant: str | None = None
    name: str | None = None
    callback: Callback | None = None

    @property
    def images(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    def chunk(self, index: int, queued: str) -> Chunk:
        """The message of chunk `index`, queued at `queued`."""
        return Chunk(
            self.batch,
            index,
            len(self.chunks),
            self.chunks[index],
            self.model,
            self.review_below,
            queued,
            self.template,
        )

    def to_dict(self) -> dict[str, Any]:
        data = {
            "batch": self.batch,
            "created": self.created,
            "model": self.model,
            "images": self.images,
            "chunk_size": self.chunk_size,
            "review_below": self.review_below,
            "template": self.template,
            "chunks": [[item.to_dict() for item in chunk] for chunk in self.chunks],
        }
        callback = self.callback.to_dict() if self.callback else None
        labels = {"tenant": self.tenant, "name": self.name, "callback": callback}
        return data | {key: value for key, value in labels.items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        chunks = tuple(tuple(Item.from_dict(i) for i in chunk) for chunk in data["chunks"])
        return cls(
            data["batch"],
            data["created"],
            data["model"],
            data["chunk_size"],
            data["review_below"],
            data.get("template"),
            chunks,
            data.get("tenant"),
            data.get("name"),
            Callback.from_dict(data["callback"]) if data.get("callback") else None,
        )
