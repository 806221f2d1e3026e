"""Batches in the store: submit (manifest + inputs + chunk tasks), progress, finalize, and a
tenant's listing and deletion.

Layout under ``batches/<id>/``: ``manifest.json``, ``inputs/…``, ``chunks/<n>.json`` (one per
chunk, overwritten on a re-run), and once every chunk has landed ``results.jsonl``,
``results.csv`` and ``summary.json``. The store, not the broker, says what is done. Each batch
is also indexed under its tenant, ``tenants/<tenant>/batches/<id>`` (an empty object; ``_`` for
the batches submitted without a tenant, by `submit` and `watch`), so listing a tenant's batches
reads that folder and no other batch.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from trainer import registry
from trainer.errors import ObjectMissing, StoreError, UserError
from trainer.storage import Store
from worker import inputs, queue, results, retention, webhooks
from worker.forms.templates import Template
from worker.manifest import Callback, Item, Manifest, valid_name

OPEN = "batches/_open/"  # a marker per batch not yet finished, for workers to look after
HELD_BYTES = 32 * 2**20  # of inputs held in memory waiting for their upload (add_bytes)


def now() -> str:
    """UTC timestamp used in manifests, chunks and summaries."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def prefix(batch_id: str) -> str:
    """The store folder of one batch; ids are validated so keys cannot escape it."""
    return f"batches/{valid_name(batch_id, 'batch id')}"


def _open_key(batch_id: str) -> str:
    """The marker of a batch not yet finished: "_open" is no batch id, so it is no batch."""
    prefix(batch_id)
    return f"{OPEN}{batch_id}"


def tenant_folder(tenant: str | None) -> str:
    """A tenant's folder in the store (its batch index, its idempotency keys, its files): "_"
    is no tenant name, so it is the folder of what was submitted without one."""
    return f"tenants/{valid_name(tenant, 'tenant') if tenant else '_'}/"


def _index(tenant: str | None) -> str:
    """The folder indexing a tenant's batches."""
    return f"{tenant_folder(tenant)}batches/"


def open_batches(store: Store, older_than: float = 0.0) -> list[str]:
    """Ids of the batches submitted at least `older_than` seconds ago and not finished."""
    since, found = time.time() - older_than, []
    for key in store.list(OPEN):
        try:  # the marker holds the batch's creation time
            if datetime.fromisoformat(store.get(key).decode()).timestamp() <= since:
                found.append(key[len(OPEN) :])
        except (ObjectMissing, ValueError):  # finished since it was listed, or not a marker
            continue
    return found


def chunk_key(batch_id: str, index: int) -> str:
    """Where chunk `index` of a batch writes its results."""
    return f"{prefix(batch_id)}/chunks/{index:06d}.json"


def manifest_key(batch_id: str) -> str:
    """Where a batch's manifest is: the batch exists while it does."""
    return f"{prefix(batch_id)}/manifest.json"


def new_id(random_bytes: int) -> str:
    """An id that sorts by its UTC time of creation (to the second), made unique by
    `random_bytes` random bytes in hex."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(random_bytes)}"


def submit(
    store: Store,
    paths: list[str],
    model: int | str | None = None,
    chunk_size: int = 128,
    review_below: float = results.REVIEW_BELOW,
    on_upload: Callable[[int], None] = lambda n: None,
    template: Template | None = None,
    batch_id: str | None = None,
) -> str:
    """Create a batch of local files, folders and store URLs (`Submission.add_path`) and queue
    its chunk tasks; return the batch id (`batch_id`, or a new one). A given `batch_id` is
    taken by an exclusive create of its manifest: if that batch exists already, AlreadyExists
    is raised and nothing is queued. With a form `template`, each page is read as that form:
    one record per page, a field per field.
    """
    if chunk_size < 1:
        raise UserError("chunk size must be at least 1")
    version = registry.resolve(store, model)["version"]
    with Submission(store, batch_id, on_upload) as submission:
        for raw in paths:
            submission.add_path(raw)
        if not submission.items:
            raise UserError(f"no images found in {' '.join(paths)}")
        return submission.queue(version, chunk_size, review_below, template)


class Submission:
    """A batch being submitted. Its inputs are added one at a time, by `submit` (the CLI's
    paths) or by the HTTP API (each file as its upload ends), through the same `add_file` (or
    `add_bytes`, for an upload's small file held in memory); each is uploaded under the batch's
    inputs/ on a pool of threads while the next is added.
    `queue` then writes the manifest and queues the chunks. Left without `queue` (an
    exception, a limit), what it uploaded is deleted: nothing is queued.

    A given `batch_id` is taken by an exclusive create of its manifest, its inputs in a folder
    of their own, so that the loser of two submissions of one id deletes only its own.
    """

    def __init__(
        self,
        store: Store,
        batch_id: str | None = None,
        on_upload: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.store = store
        self.batch = batch_id or new_id(3)
        self.inputs = f"{prefix(self.batch)}/inputs/"
        if batch_id:
            self.inputs += f"{secrets.token_hex(4)}/"
        self.items: list[Item] = []
        self._exclusive = batch_id is not None
        self._on_upload = on_upload
        self._uploads: list[Future[None]] = []
        self._held: deque[tuple[Future[None], int]] = deque()  # add_bytes' uploads, sizes
        self._uploaded: list[str] = []
        self._queued = False
        self._temporary = tempfile.TemporaryDirectory(prefix="scandigits-")
        self.scratch = Path(self._temporary.name)  # unpacked members, the API's uploads
        self._pool = ThreadPoolExecutor(max_workers=16)

    def __enter__(self) -> Submission:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Let the uploads in flight end, delete what was uploaded unless the batch was
        queued, and remove the scratch folder."""
        self._pool.shutdown(cancel_futures=True)
        if not self._queued:
            with contextlib.suppress(StoreError):  # the error that got here says more
                for key in self._uploaded:
                    self.store.delete(key)
        self._temporary.cleanup()

    def add_path(self, raw: str) -> None:
        """Add what `submit` is given: a store URL (read in place), a local file or a folder
        (recursively: images, PDFs, TIFFs and archives)."""
        if "://" in raw:
            self.add_url(raw)
            return
        for file in inputs.local_files(Path(raw)):
            self.add_file(str(file), file)

    def add_url(self, url: str, inside: str = "") -> list[Item]:
        """Add the images at a URL inside the store (and inside its folder `inside`, if given),
        read in place; return their items."""
        found = inputs.store_items(self.store, url, inside)
        self.items += found
        return found

    def add_file(self, source: str, file: Path) -> list[Item]:
        """Add one named input held in a local file: an archive's images (ZIP or TAR, as
        `source`'s suffix says), or the file itself; return its items. `source` labels them
        and, made safe, ends their keys; it never names a path. A file in `scratch` is removed
        once it is uploaded (or unpacked)."""
        if not inputs.is_archive(source):
            return self._add(source, file)
        found = []
        for member, unpacked in inputs.unpack(source, file, self.scratch):
            found += self._add(member, unpacked)
        self._drop(file)
        return found

    def add_bytes(self, source: str, data: bytes) -> list[Item]:
        """Add one named input held in memory (not an archive), as `add_file` adds a file;
        while more than HELD_BYTES of these wait for their upload, wait for the oldest, so
        memory stays bounded however many come."""
        key = self._key(source)
        found = self._found(source, key, inputs.count(source, lambda: data))
        upload = self._pool.submit(self._put, key, data)
        self._uploads.append(upload)
        self._held.append((upload, len(data)))
        while sum(size for _, size in self._held) > HELD_BYTES:
            self._held.popleft()[0].result()
        return found

    def _add(self, source: str, file: Path) -> list[Item]:
        key = self._key(source)
        found = self._found(source, key, inputs.count(source, partial(inputs.read_local, file)))
        self._uploads.append(self._pool.submit(self._upload, file, key))
        return found

    def _key(self, source: str) -> str:
        return f"{self.inputs}{len(self.items):06d}-{inputs.safe_name(Path(source).name)}"

    def _found(self, source: str, key: str, pages: int) -> list[Item]:
        """The items of the input `source` that is uploaded under `key`, now in the batch."""
        found = inputs.paged(source, key, pages)
        self.items += found
        self._uploaded.append(key)
        return found

    def _upload(self, file: Path, key: str) -> None:
        inputs.upload(self.store, key, file)
        self._drop(file)
        self._on_upload(1)

    def _put(self, key: str, data: bytes) -> None:
        self.store.put(key, data)
        self._on_upload(1)

    def _drop(self, file: Path) -> None:
        """Remove `file` if it is this submission's own copy, in `scratch`."""
        if file.is_relative_to(self.scratch):
            file.unlink(missing_ok=True)

    def queue(
        self,
        model: int,
        chunk_size: int = 128,
        review_below: float = results.REVIEW_BELOW,
        template: Template | None = None,
        tenant: str | None = None,
        name: str | None = None,
        callback: Callback | None = None,
    ) -> str:
        """Once every upload is in, write the manifest (AlreadyExists, nothing queued, if the
        given id is taken), index the batch under its tenant and queue its chunks; return the
        batch id."""
        for upload in self._uploads:
            upload.result()
        items = self.items
        chunks = tuple(tuple(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size))
        form = template.to_dict() if template else None
        batch = Manifest(
            self.batch, now(), model, chunk_size, review_below, form, chunks, tenant, name, callback
        )
        write = self.store.create if self._exclusive else self.store.put
        write(manifest_key(self.batch), json.dumps(batch.to_dict()).encode())
        self._queued = True
        self.store.put(f"{_index(tenant)}{self.batch}", b"")
        self.store.put(_open_key(self.batch), batch.created.encode())
        _enqueue(batch, range(len(chunks)))
        return self.batch


def _enqueue(batch: Manifest, indexes: Iterable[int]) -> None:
    """One task per chunk, its message built from the manifest."""
    queued = now()
    queue.enqueue([batch.chunk(i, queued) for i in indexes])


def resume(store: Store, batch_id: str) -> list[int]:
    """Re-queue the chunks that have no results in the store and that the broker no longer
    holds for a live worker (lost messages, a flushed or restarted Redis, a dead worker), and
    finish a batch whose finalising worker died; return the re-queued indexes. A chunk that
    runs twice only finalizes the second time, and finalising twice writes the same files, so
    resuming is always safe."""
    batch = manifest(store, batch_id)
    lost = _lost(batch, done_chunks(store, batch_id))
    _enqueue(batch, lost)
    finalize_if_complete(store, batch_id, len(batch.chunks))
    return lost


def _lost(batch: Manifest, done: set[int]) -> list[int]:
    """Chunks not `done` that the broker no longer holds for a live worker."""
    missing = set(range(len(batch.chunks))) - done
    return sorted(missing - queue.pending(batch.batch, missing)) if missing else []


def manifest(store: Store, batch_id: str) -> Manifest:
    """The batch's manifest, or a one-line error if there is no such batch."""
    try:
        return Manifest.from_dict(json.loads(store.get(manifest_key(batch_id))))
    except ObjectMissing as exc:
        raise UserError(f"no batch {batch_id!r} in {store.url}") from exc


def done_chunks(store: Store, batch_id: str) -> set[int]:
    """Indexes of the chunks whose results are in the store."""
    names = (key.rsplit("/", 1)[-1] for key in store.list(f"{prefix(batch_id)}/chunks/"))
    return {int(name[:-5]) for name in names if re.fullmatch(r"\d+\.json", name)}


def status(store: Store, batch: Manifest, broker: bool = False) -> dict[str, Any]:
    """Progress of a batch from the store: queued, running or done; asking the `broker` too,
    "stalled" when chunks without results are lost to it (see `resume`): workers re-queue
    those by themselves (`worker.recovery`), if any is running."""
    batch_id = batch.batch
    done = done_chunks(store, batch_id)
    try:
        summary = json.loads(store.get(f"{prefix(batch_id)}/summary.json"))
    except ObjectMissing:
        summary = None
    state = "done" if summary else "running" if done else "queued"
    lost = _lost(batch, done) if broker and not summary else []
    if lost:
        state = "stalled"
    report = {
        "batch": batch_id,
        "state": state,
        "model": batch.model,
        "images": batch.images,
        "images_done": sum(len(batch.chunks[i]) for i in done if i < len(batch.chunks)),
        "chunks": len(batch.chunks),
        "chunks_done": len(done),
        "submitted": batch.created,
    }
    if batch.name is not None:
        report["name"] = batch.name
    if lost:
        report["lost_chunks"] = lost
    if summary:
        report.update(
            errors=summary["errors"],
            finished=summary["finished"],
            results=f"{store.url}/{prefix(batch_id)}/results.jsonl",
        )
    return report


FINALIZE_AFTER = 10.0  # s with every chunk in and no summary before a waiting client merges


def wait(
    store: Store, batch_id: str, timeout: float = 0, on_progress: Callable[[int], None] = print
) -> dict[str, Any]:
    """Poll the store until the batch is done; report images done; TimeoutError after timeout."""
    batch = manifest(store, batch_id)
    deadline = time.monotonic() + timeout if timeout else float("inf")
    complete_since = None
    while True:
        report = status(store, batch)
        on_progress(report["images_done"])
        if report["state"] == "done":
            return report
        if report["chunks_done"] < report["chunks"]:
            complete_since = None
        elif complete_since is None:
            complete_since = time.monotonic()
        elif time.monotonic() - complete_since > FINALIZE_AFTER:
            # every chunk landed but the worker that should merge them died: merge here
            finalize_if_complete(store, batch_id, report["chunks"])
        if time.monotonic() > deadline:
            raise TimeoutError(batch_id)
        time.sleep(0.3)


def finalize_if_complete(store: Store, batch_id: str, chunk_count: int) -> bool:
    """Merge chunk results into the batch files once every chunk has landed (idempotent)."""
    if len(done_chunks(store, batch_id)) < chunk_count:
        return False
    batch = manifest(store, batch_id)
    chunks = [json.loads(store.get(chunk_key(batch_id, i))) for i in range(len(batch.chunks))]
    records = [r for chunk in chunks for r in chunk["records"]]
    store.put(f"{prefix(batch_id)}/results.jsonl", results.jsonl(records))
    fields = [spec["name"] for spec in batch.template["fields"]] if batch.template else []
    store.put(f"{prefix(batch_id)}/results.csv", results.csv_bytes(records, fields))
    summary = results.summary(batch, chunks)
    store.put(f"{prefix(batch_id)}/summary.json", json.dumps(summary, indent=2).encode())
    retention.mark(store, batch_id, summary["finished"])
    if batch.callback:
        webhooks.notify(store, batch, summary)
    store.delete(_open_key(batch_id))
    return True


def result_stream(store: Store, batch_id: str, fmt: str) -> Iterator[bytes]:
    """The finished batch's results as JSON Lines or CSV ("jsonl", "csv"), piece by piece as
    they are read; ObjectMissing if the batch is not finished."""
    return store.stream(f"{prefix(batch_id)}/results.{fmt}")


def result_file(store: Store, batch_id: str, fmt: str) -> bytes:
    """The finished batch's results as JSON Lines or CSV, whole."""
    try:
        return b"".join(result_stream(store, batch_id, fmt))
    except ObjectMissing as exc:
        report = status(store, manifest(store, batch_id))
        raise UserError(
            f"batch {batch_id} is not finished ({report['images_done']}/{report['images']} "
            "images); wait with `scandigits submit --wait` or check `scandigits status`"
        ) from exc


def listing(
    store: Store,
    tenant: str | None,
    limit: int = 20,
    after: str | None = None,
    state: str | None = None,
    name: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a tenant's batches, newest first, read from its index alone: the status
    reports (from the store: queued, running or done) of up to `limit` batches older than the
    batch `after`, in `state` and labelled `name` if given; and the id to pass as `after` for
    the next page (None on the last)."""
    ids = sorted((key.rsplit("/", 1)[-1] for key in store.list(_index(tenant))), reverse=True)
    if after is not None:
        ids = [batch_id for batch_id in ids if batch_id < valid_name(after, "cursor")]
    page: list[dict[str, Any]] = []
    for n, batch_id in enumerate(ids):
        try:
            batch = manifest(store, batch_id)
        except UserError:  # deleted since it was listed
            continue
        if name is not None and batch.name != name:
            continue
        report = status(store, batch)
        if state is None or report["state"] == state:
            page.append(report)
            if len(page) == limit:
                return page, batch_id if n + 1 < len(ids) else None
    return page, None


def delete(store: Store, batch_id: str) -> None:
    """Delete a batch: its chunks waiting in the queue are taken off it, then its files
    (uploaded inputs, chunk results, results) and its index entry go, the manifest last, so
    that a deletion cut short can be run again. A chunk a worker holds finds no manifest and
    is skipped, or, read meanwhile, drops its results (`worker.tasks`); what one wrote while
    the files went is deleted after the manifest. Inputs named by store URLs are not the
    batch's: they stay."""
    batch = manifest(store, batch_id)
    store.delete(_open_key(batch_id))
    queue.discard(batch_id)
    _delete_files(store, batch_id, keep=manifest_key(batch_id))
    store.delete(f"{_index(batch.tenant)}{batch_id}")
    store.delete(manifest_key(batch_id))
    _delete_files(store, batch_id)


def delete_inputs(store: Store, batch_id: str) -> None:
    """Delete the batch's uploaded inputs alone; its results stay (worker.retention)."""
    _delete_keys(store, list(store.list(f"{prefix(batch_id)}/inputs/")))


def _delete_files(store: Store, batch_id: str, keep: str = "") -> None:
    _delete_keys(store, [key for key in store.list(f"{prefix(batch_id)}/") if key != keep])


def _delete_keys(store: Store, keys: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(store.delete, keys))
