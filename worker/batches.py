"""Batches in the store: submit (manifest + inputs + chunk tasks), progress, and finalize.

Layout under ``batches/<id>/``: ``manifest.json``, ``inputs/…``, ``chunks/<n>.json`` (one per
chunk, overwritten on a re-run), and once every chunk has landed ``results.jsonl``,
``results.csv`` and ``summary.json``. The store, not the broker, says what is done.
"""

from __future__ import annotations

import json
import re
import secrets
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

from trainer import errors, registry
from trainer.errors import AlreadyExists, ObjectMissing, TooLarge, UserError
from trainer.storage import Store, open_store
from worker import queue, results, settings
from worker.forms.templates import Template
from worker.manifest import Item, Manifest
from worker.reading import decode

IMAGE_SUFFIXES = frozenset(
    [
        ".png",
        ".jpg",
        ".jpeg",
        ".jpe",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".webp",
        ".pbm",
        ".pgm",
        ".ppm",
        ".pnm",
        ".gif",
        ".pdf",
    ]
)
PAGED_SUFFIXES = frozenset([".pdf", ".tif", ".tiff"])  # counted at submit: one item per page
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz")
OPEN = "batches/_open/"  # a marker per batch not yet finished, for workers to look after
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    NotImplementedError,  # a compression method zipfile lacks
    RuntimeError,  # an encrypted member
    OSError,
)


def now() -> str:
    """UTC timestamp used in manifests, chunks and summaries."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def prefix(batch_id: str) -> str:
    """The store folder of one batch; ids are validated so keys cannot escape it."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", batch_id):
        raise UserError(f"invalid batch id {batch_id!r}")
    return f"batches/{batch_id}"


def _open_key(batch_id: str) -> str:
    """The marker of a batch not yet finished: "_open" is no batch id, so it is no batch."""
    prefix(batch_id)
    return f"{OPEN}{batch_id}"


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


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not Path(name).name.startswith(".")


def is_archive(name: str) -> bool:
    """Whether a file name or key names an archive whose members are inputs (ZIP, TAR)."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def key_of(store: Store, url: str, hint: str = "") -> str:
    """The key of a URL inside `store`, without a trailing '/' ('' for the store's root); a
    URL outside it is a UserError (with `hint`, what to do instead)."""
    root, target = store.url.rstrip("/") + "/", open_store(url).url.rstrip("/") + "/"
    if not target.startswith(root):
        raise UserError(f"{url} is not inside the store {store.url}{hint}")
    return target[len(root) :].rstrip("/")


def new_id(random_bytes: int) -> str:
    """An id that sorts by its UTC time of creation (to the second), made unique by
    `random_bytes` random bytes in hex."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(random_bytes)}"


def _paged(source: str, key: str, count: int) -> list[Item]:
    """The items of one input: itself when it has one page, else one per page, `source#n` with
    `page` n (both counted from 1)."""
    if count == 1:
        return [Item(source, key)]
    return [Item(f"{source}#{n}", key, n) for n in range(1, count + 1)]


def _count(name: str, read: Callable[[], bytes]) -> int:
    """Pages of a PDF or TIFF input, `read` no further than the byte limit; 1 for other
    inputs, and for those the worker will refuse (unreadable, too large, too many pages,
    gone): as one item, they get its one-line error."""
    if Path(name).suffix.lower() not in PAGED_SUFFIXES:
        return 1
    try:
        return decode.pages(read())
    except (errors.DecodeError, ObjectMissing, TooLarge):
        return 1


def _store_items(store: Store, url: str) -> list[Item]:
    """Items for an s3:// or file:// URL inside the store: an object or every image under it;
    PDFs and TIFFs are fetched to count their pages."""
    relative = key_of(store, url, "; pass local files instead")
    if not relative:
        raise UserError(f"{url} is the store's root: name a prefix or an object inside it")
    root = store.url.rstrip("/") + "/"
    keys = [k for k in store.list(relative + "/") if _is_image(k)]
    if not keys and store.exists(relative):
        keys = [relative]
    limit = settings.current().max_bytes
    with ThreadPoolExecutor(max_workers=16) as pool:
        counts = pool.map(lambda key: _count(key, partial(store.get, key, limit=limit)), keys)
        return [
            item for key, n in zip(keys, counts, strict=True) for item in _paged(root + key, key, n)
        ]


def _local_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and (_is_image(p.name) or is_archive(p.name))
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    if path.exists():
        return [path]
    raise UserError(f"no such file or folder: {path}")


def _local_inputs(path: Path, scratch: Path) -> Iterator[tuple[str, Path]]:
    """(source, file) of each local input under `path`; an archive's images are unpacked
    into `scratch`."""
    for file in _local_files(path):
        if is_archive(file.name):
            yield from _unpack(file, scratch)
        else:
            yield str(file), file


def _unpack(archive: Path, scratch: Path) -> Iterator[tuple[str, Path]]:
    """(source, file) of each image, PDF or TIFF in a ZIP or TAR archive, copied into
    `scratch` under a number, never under its name in the archive (which only makes the
    source, without `..` and leading slashes). A possible bomb is refused whole: more entries
    than max_members, a member over max_bytes, or more than max_archive_bytes in all."""
    limits = settings.current()
    folder, total = Path(tempfile.mkdtemp(dir=scratch)), 0
    try:
        for n, (name, open_member, passed) in enumerate(_members(archive)):
            if n >= limits.max_members:
                raise UserError(f"{archive}: more than {limits.max_members:,} entries")
            parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".", "..")]
            label = "/".join(parts)
            hidden = any(part.startswith(".") for part in parts)
            data, taken = b"", open_member is not None and _is_image(label) and not hidden
            if taken:
                with open_member() as member:  # what it unpacks to counts, not what it declares
                    data = member.read(limits.max_bytes + 1)
                if len(data) > limits.max_bytes:
                    raise UserError(f"{archive}: {label} is over {limits.max_bytes:,} bytes")
            total += len(data) if taken else passed  # a TAR's members are unpacked to pass them
            if total > limits.max_archive_bytes:
                raise UserError(f"{archive}: unpacks to over {limits.max_archive_bytes:,} bytes")
            if taken:
                file = folder / f"{n:06d}"
                file.write_bytes(data)
                yield f"{archive}/{label}", file
    except ARCHIVE_ERRORS as exc:
        raise UserError(f"cannot read archive {archive}: {exc}") from exc


def _members(archive: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]] | None, int]]:
    """(name, opener, bytes unpacked to pass it) of each entry of a ZIP or TAR archive, opened
    only with the compression its suffix names. Folders, and a TAR's links and devices, have no
    opener; a ZIP's link opens as the text of its target: none is followed."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                yield info.filename, None if info.is_dir() else (lambda i=info: zipped.open(i)), 0
        return
    with tarfile.open(archive, "r:" if name.endswith(".tar") else "r:gz") as tarred:
        for member in tarred:
            opener = (lambda m=member: tarred.extractfile(m)) if member.isfile() else None
            yield member.name, opener, member.size


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
    """Create a batch and queue its chunk tasks; return the batch id (`batch_id`, or a new one).
    A given `batch_id` is taken by an exclusive create of its manifest: if that batch exists
    already, AlreadyExists is raised and nothing is queued.

    Local files are uploaded under the batch's inputs/, archives' images one by one; store URLs
    are used in place. A PDF or TIFF of several pages gives one item per page (`_paged`). With
    a form `template`, each page is read as that form: one record per page, a field per field.
    """
    if chunk_size < 1:
        raise UserError("chunk size must be at least 1")
    version = registry.resolve(store, model)["version"]
    inputs = f"{prefix(batch_id)}/inputs/{secrets.token_hex(4)}/" if batch_id else None
    write = store.create if batch_id else store.put  # a given id is taken once...
    batch_id = batch_id or new_id(3)
    inputs = inputs or f"{prefix(batch_id)}/inputs/"  # ...its inputs in a folder of their own
    items: list[Item] = []
    uploads: list[tuple[Path, str]] = []

    def upload(job: tuple[Path, str]) -> None:
        store.put(job[1], read_local(job[0]))
        on_upload(1)

    with tempfile.TemporaryDirectory(prefix="scandigits-") as scratch:
        for raw in paths:
            if "://" in raw:
                items += _store_items(store, raw)
                continue
            for source, file in _local_inputs(Path(raw), Path(scratch)):
                key = f"{inputs}{len(items):06d}-{_safe_name(Path(source).name)}"
                items += _paged(source, key, _count(source, partial(read_local, file)))
                uploads.append((file, key))
        if not items:
            raise UserError(f"no images found in {' '.join(paths)}")
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(upload, uploads))
    chunks = tuple(tuple(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size))
    form = template.to_dict() if template else None
    batch = Manifest(batch_id, now(), version, chunk_size, review_below, form, chunks)
    try:
        write(f"{prefix(batch_id)}/manifest.json", json.dumps(batch.to_dict()).encode())
    except AlreadyExists:  # another submission took the id: what this one uploaded is no input
        for _, key in uploads:
            store.delete(key)
        raise
    store.put(_open_key(batch_id), batch.created.encode())
    _enqueue(batch, range(len(chunks)))
    return batch_id


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


def read_local(file: Path) -> bytes:
    """A local input's bytes, or a one-line error; no more than one byte over the byte limit
    (enough for the worker to refuse it, and memory stays bounded whatever the file)."""
    try:
        with file.open("rb") as opened:
            return opened.read(settings.current().max_bytes + 1)
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror}") from exc


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[-100:] or "image"


def manifest(store: Store, batch_id: str) -> Manifest:
    """The batch's manifest, or a one-line error if there is no such batch."""
    try:
        return Manifest.from_dict(json.loads(store.get(f"{prefix(batch_id)}/manifest.json")))
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
    store.delete(_open_key(batch_id))
    return True


def result_file(store: Store, batch_id: str, fmt: str) -> bytes:
    """The finished batch's results as JSON Lines or CSV."""
    name = {"jsonl": "results.jsonl", "csv": "results.csv"}[fmt]
    try:
        return store.get(f"{prefix(batch_id)}/{name}")
    except ObjectMissing as exc:
        report = status(store, manifest(store, batch_id))
        raise UserError(
            f"batch {batch_id} is not finished ({report['images_done']}/{report['images']} "
            "images); wait with `scandigits submit --wait` or check `scandigits status`"
        ) from exc
