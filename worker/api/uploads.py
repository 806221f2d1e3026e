"""Request bodies read as they arrive: a multipart upload's files into a batch, one by one,
within the limits of the settings; a JSON body within a size.

Each part of the form field `files` is held in memory as its bytes come while it is no more
than HELD_PART_BYTES (a scan, mostly), and written to a scratch file of the Submission past
that (and an archive always); it is refused (OverLimit: 413) the moment it passes its limit
(SCANDIGITS_MAX_BYTES, or for an archive SCANDIGITS_MAX_ARCHIVE_BYTES), and handed to
`Submission.add_bytes` or `add_file`, the function the CLI's files go through, as soon as it
ends: it is uploaded to the store while the next part arrives, and a scratch file removed.
Memory holds a piece of the body and at most HELD_PART_BYTES of a part at a time, whatever
its size (the parser refuses a part's headers over a few kB as malformed), and the Submission
bounds what waits for its upload. The whole body may
hold no more than SCANDIGITS_MAX_ARCHIVE_BYTES and SCANDIGITS_MAX_MEMBERS files, as an archive.
A file's name only labels its results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from trainer.errors import OverLimit
from worker import inputs, settings
from worker.api.errors import ApiError
from worker.api.health import UPLOAD_BYTES
from worker.batches import Submission

FIELD_BYTES = 1000  # a form field other than a file
FIELDS = 16  # form fields other than files
JSON_BYTES = 1_000_000
HELD_PART_BYTES = 2**20  # a file part held in memory up to this; a larger one goes to disk


def _total_limit() -> int:
    return settings.current().max_archive_bytes


def check_length(request: Request, limit: int) -> None:
    """413 at once, reading nothing, if the body declares more than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise OverLimit(f"the request body is over {limit:,} bytes")


async def read_whole(request: Request, limit: int, what: str) -> bytes:
    """A small body (`what`: "the JSON body", "the template"), no more than `limit` bytes of it;
    OverLimit (413) past that."""
    check_length(request, limit)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise OverLimit(f"{what} is over {limit:,} bytes")
    return bytes(body)


@dataclass
class _Part:
    """The part of the body being read: its headers, then a file or a field's text."""

    headers: dict[bytes, bytes] = field(default_factory=dict)
    header: list[bytes] = field(default_factory=lambda: [b"", b""])
    name: str = ""
    label: str | None = None  # a file's: its name made a label (inputs.label)
    held: bytearray | None = None  # a file's bytes, while it is small
    path: Path | None = None
    file: IO[bytes] | None = None
    limit: int = 0
    size: int = 0
    text: bytearray = field(default_factory=bytearray)


class _Form:
    """The state of one multipart body: the part being read, the fields and files so far."""

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        self.fields: dict[str, str] = {}
        self.files = 0
        self.part = _Part()
        self.ended: list[_Part] = []  # files whose last byte came, to add to the submission

    def begin(self) -> None:
        self.part = _Part()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.header[0] += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.header[1] += data[start:end]

    def header_end(self) -> None:
        name, value = self.part.header
        self.part.headers[name.strip().lower()] = value.strip()
        self.part.header = [b"", b""]

    def headers_finished(self) -> None:
        """A part's headers are in: if it is a file, where its bytes go."""
        part = self.part
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            if len(self.fields) >= FIELDS:
                raise OverLimit(f"more than {FIELDS} form fields")
            return
        if part.name != "files":
            raise ApiError(422, "files go in the form field 'files'")
        limits = settings.current()
        if self.files >= limits.max_members:
            raise OverLimit(f"more than {limits.max_members:,} files")
        part.label = inputs.label(filename.decode("utf-8", "replace"))[-200:] or "upload"
        archive = inputs.is_archive(part.label)
        part.limit = limits.max_archive_bytes if archive else limits.max_bytes
        part.held = bytearray()
        if archive:
            self._spill(part)
        self.files += 1

    def _spill(self, part: _Part) -> None:
        """Write the part's bytes so far to a scratch file, where the rest will go."""
        part.path = self.submission.scratch / f"upload-{self.files:06d}"
        part.file = part.path.open("wb")
        part.file.write(part.held or b"")
        part.held = None

    def data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        part.size += end - start
        if part.label is None:
            if part.size > FIELD_BYTES:
                raise OverLimit(f"a form field is over {FIELD_BYTES:,} bytes")
            part.text += data[start:end]
            return
        if part.size > part.limit:
            raise OverLimit(f"{part.label} is over {part.limit:,} bytes")
        if part.held is not None:
            part.held += data[start:end]
            if len(part.held) > HELD_PART_BYTES:
                self._spill(part)
        else:
            assert part.file is not None
            part.file.write(data[start:end])

    def end(self) -> None:
        part = self.part
        if part.label is not None:
            if part.file is not None:
                part.file.close()
            self.ended.append(part)
            return
        if part.name in self.fields:
            raise ApiError(422, "a form field is given twice")
        try:
            self.fields[part.name] = part.text.decode()
        except UnicodeDecodeError:
            raise ApiError(400, "a form field is not UTF-8") from None

    def close(self) -> None:
        if self.part.file is not None:
            self.part.file.close()


async def receive(
    request: Request, submission: Submission, spend: Callable[[int], None]
) -> dict[str, str]:
    """Read a multipart/form-data body into `submission` as it arrives (see this module's
    docstring), telling `spend` the bytes of each piece (the caller's rate limit); return its
    text fields. ApiError if it is malformed or has no files."""
    check_length(request, _total_limit())
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "a multipart/form-data body needs a boundary")
    form = _Form(submission)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": form.begin,
            "on_part_data": form.data,
            "on_part_end": form.end,
            "on_header_field": form.header_field,
            "on_header_value": form.header_value,
            "on_header_end": form.header_end,
            "on_headers_finished": form.headers_finished,
        },
    )
    total = 0
    try:
        async for piece in request.stream():
            total += len(piece)
            UPLOAD_BYTES.inc(len(piece))
            spend(len(piece))
            if total > _total_limit():
                raise OverLimit(f"the request body is over {_total_limit():,} bytes")
            parser.write(piece)
            await _add(form)
        parser.finalize()
        await _add(form)
    except MultipartParseError:
        raise ApiError(400, "the multipart/form-data body is malformed") from None
    finally:
        form.close()
    if parser.state != MultipartState.END:  # cut short: a file may have been sent in part
        raise ApiError(400, "the multipart/form-data body ends before its closing boundary")
    if not form.files:
        raise ApiError(422, "no files in the form field 'files'")
    if not submission.items:
        raise ApiError(422, "no images in the files sent")
    return form.fields


async def _add(form: _Form) -> None:
    """Hand the files that ended to the submission (pages counted, archives unpacked and the
    upload started, in a thread: the event loop goes on serving)."""
    for part in form.ended:
        assert part.label is not None
        if part.held is not None:
            await run_in_threadpool(form.submission.add_bytes, part.label, bytes(part.held))
        else:
            assert part.path is not None
            await run_in_threadpool(form.submission.add_file, part.label, part.path)
    form.ended.clear()
