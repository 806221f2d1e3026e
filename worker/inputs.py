"""What a batch's inputs are and how they become items: images, PDFs and TIFFs (an item per
page), archives (an input per image inside), and store URLs (read in place).

Names of files and archive members only label items (their `source`) and, made safe, end the
keys their bytes are uploaded under: nothing is ever written under a name from an input.
"""

from __future__ import annotations

import os
import re
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import IO

from trainer import errors
from trainer.errors import ObjectMissing, OverLimit, TooLarge, UserError
from trainer.storage import Store, open_store
from worker import settings
from worker.manifest import Item
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
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    NotImplementedError,  # a compression method zipfile lacks
    RuntimeError,  # an encrypted member
    OSError,
)


def is_image(name: str) -> bool:
    """Whether a file name or key names an image, PDF or TIFF, and not a hidden file."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not Path(name).name.startswith(".")


def is_archive(name: str) -> bool:
    """Whether a file name or key names an archive whose members are inputs (ZIP, TAR)."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def label(name: str) -> str:
    """A name from outside (an archive member's, an upload's) as a label: its path parts
    without `..`, `.` and empty ones, joined by '/', control characters dropped."""
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".", "..")]
    return re.sub(r"[\x00-\x1f\x7f]", "", "/".join(parts))


def safe_name(name: str) -> str:
    """The end of an input's key: its name with every character but `A-Za-z0-9._-` replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[-100:] or "image"


def key_of(store: Store, url: str, hint: str = "") -> str:
    """The key of a URL inside `store`, without a trailing '/' ('' for the store's root); a
    URL outside it is a UserError (with `hint`, what to do instead)."""
    root, target = store.url.rstrip("/") + "/", open_store(url).url.rstrip("/") + "/"
    if not target.startswith(root):
        raise UserError(f"{url} is not inside the store {store.url}{hint}")
    return target[len(root) :].rstrip("/")


def paged(source: str, key: str, count: int) -> list[Item]:
    """The items of one input: itself when it has one page, else one per page, `source#n` with
    `page` n (both counted from 1)."""
    if count == 1:
        return [Item(source, key)]
    return [Item(f"{source}#{n}", key, n) for n in range(1, count + 1)]


def count(name: str, read: Callable[[], bytes]) -> int:
    """Pages of a PDF or TIFF input, `read` no further than the byte limit; 1 for other
    inputs, and for those the worker will refuse (unreadable, too large, too many pages,
    gone): as one item, they get its one-line error."""
    if Path(name).suffix.lower() not in PAGED_SUFFIXES:
        return 1
    try:
        return decode.pages(read())
    except (errors.DecodeError, ObjectMissing, TooLarge):
        return 1


def store_items(store: Store, url: str, inside: str = "") -> list[Item]:
    """Items for an s3:// or file:// URL inside the store (and inside its folder `inside`, if
    given): an object or every image under it; PDFs and TIFFs are fetched to count pages."""
    relative = key_of(store, url, "; pass local files instead")
    if not relative:
        raise UserError(f"{url} is the store's root: name a prefix or an object inside it")
    if not (relative + "/").startswith(inside):
        raise UserError(f"{url} is not inside {store.url.rstrip('/')}/{inside}")
    root = store.url.rstrip("/") + "/"
    keys = [k for k in store.list(relative + "/") if is_image(k)]
    if not keys and store.exists(relative):
        keys = [relative]
    limit = settings.current().max_bytes
    with ThreadPoolExecutor(max_workers=16) as pool:
        counts = pool.map(lambda key: count(key, partial(store.get, key, limit=limit)), keys)
        return [
            item for key, n in zip(keys, counts, strict=True) for item in paged(root + key, key, n)
        ]


def local_files(path: Path) -> list[Path]:
    """The input files at a local path: itself, or the images, PDFs, TIFFs and archives in a
    folder (recursively, hidden ones skipped)."""
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and (is_image(p.name) or is_archive(p.name))
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    if path.exists():
        return [path]
    raise UserError(f"no such file or folder: {path}")


def unpack(source: str, archive: Path, scratch: Path) -> Iterator[tuple[str, Path]]:
    """(source, file) of each image, PDF or TIFF in the ZIP or TAR archive `source` (its
    suffix says which) held in the file `archive`, copied into `scratch` under a number, never
    under its name in the archive (which only makes the source, see `label`). A possible bomb
    is refused whole (OverLimit): more entries than max_members, a member over max_bytes, or
    more than max_archive_bytes in all."""
    limits = settings.current()
    folder, total = Path(tempfile.mkdtemp(dir=scratch)), 0
    try:
        for n, (name, open_member, passed) in enumerate(_members(archive, source)):
            if n >= limits.max_members:
                raise OverLimit(f"{source}: more than {limits.max_members:,} entries")
            member = label(name)
            hidden = any(part.startswith(".") for part in member.split("/"))
            data, taken = b"", open_member is not None and is_image(member) and not hidden
            if taken:
                with open_member() as opened:  # what it unpacks to counts, not what it declares
                    data = opened.read(limits.max_bytes + 1)
                if len(data) > limits.max_bytes:
                    raise OverLimit(f"{source}: {member} is over {limits.max_bytes:,} bytes")
            total += len(data) if taken else passed  # a TAR's members are unpacked to pass them
            if total > limits.max_archive_bytes:
                raise OverLimit(f"{source}: unpacks to over {limits.max_archive_bytes:,} bytes")
            if taken:
                file = folder / f"{n:06d}"
                file.write_bytes(data)
                yield f"{source}/{member}", file
    except ARCHIVE_ERRORS as exc:
        raise UserError(f"cannot read archive {source}: {exc}") from exc


def _members(archive: Path, name: str) -> Iterator[tuple[str, Callable[[], IO[bytes]] | None, int]]:
    """(name, opener, bytes unpacked to pass it) of each entry of a ZIP or TAR archive, opened
    only with the compression its `name`'s suffix names. Folders, and a TAR's links and
    devices, have no opener; a ZIP's link opens as the text of its target: none is followed."""
    name = name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                yield info.filename, None if info.is_dir() else (lambda i=info: zipped.open(i)), 0
        return
    with tarfile.open(archive, "r:" if name.endswith(".tar") else "r:gz") as tarred:
        for member in tarred:
            opener = (lambda m=member: tarred.extractfile(m)) if member.isfile() else None
            yield member.name, opener, member.size


def read_local(file: Path) -> bytes:
    """A local input's bytes, or a one-line error; no more than one byte over the byte limit
    (enough for the worker to refuse it, and memory stays bounded whatever the file)."""
    try:
        with file.open("rb") as opened:
            return opened.read(settings.current().max_bytes + 1)
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror}") from exc


def upload(store: Store, key: str, file: Path) -> None:
    """Upload a local input under `key`, streamed; of a file over the byte limit, only one
    byte more than the limit (the worker refuses it in one line, reading none of it)."""
    limit = settings.current().max_bytes
    try:
        opened = file.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror}") from exc
    with opened:
        if os.fstat(opened.fileno()).st_size > limit:
            store.put(key, opened.read(limit + 1))
        else:
            store.upload(key, opened)
