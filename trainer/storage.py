"""Object storage: one small interface over a local folder (file://) and S3 (s3://).

Everything the system persists (models, manifests, inputs, results) lives in a Store under
relative keys such as ``batches/<id>/manifest.json``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlparse

from trainer.errors import (
    AccessDenied,
    AlreadyExists,
    KeyRefused,
    ObjectMissing,
    StoreError,
    TooLarge,
)


class Store(Protocol):
    """Keyed blobs; keys are relative POSIX paths without '..'."""

    url: str

    def check(self) -> None: ...
    def check_key(self, key: str) -> None: ...
    def get(self, key: str, limit: int | None = None) -> bytes: ...
    def put(self, key: str, data: bytes) -> None: ...
    def upload(self, key: str, file: BinaryIO) -> None: ...
    def stream(self, key: str) -> Iterator[bytes]: ...
    def create(self, key: str, data: bytes) -> None: ...
    def copy(self, key: str, target: str, tag: str, limit: int) -> None: ...
    def download(self, key: str, path: Path) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def list_tagged(self, prefix: str) -> Iterator[tuple[str, str]]: ...
    def delete(self, key: str) -> None: ...


def validate_key(key: str) -> str:
    """Return key if it is a safe relative key; refuse absolute paths and '..' segments."""
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or "\\" in key or ".." in parts or "" in key.split("/"):
        raise KeyRefused(f"invalid object key {key!r}")
    return key


def _valid_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a safe key followed by '/'."""
    if prefix:
        validate_key(prefix.removesuffix("/"))
    return prefix


def open_store(url: str) -> Store:
    """Open the store named by a ``file://`` or ``s3://bucket/prefix`` URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileStore(Path(parsed.netloc + parsed.path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"store URL {url!r} has no bucket; use s3://BUCKET/PREFIX")
        return S3Store(parsed.netloc, parsed.path.strip("/"))
    raise StoreError(f"unsupported store URL {url!r}; use file:///path or s3://bucket/prefix")


class FileStore:
    """A folder on local disk; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise KeyRefused(f"object key {key!r} leads out of the store (through a symlink)")
        return path

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot use store folder {self.root}: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"store folder {self.root} is not writable")

    def check_key(self, key: str) -> None:
        """KeyRefused if the store refuses `key` (see validate_key; or a symlink out of it)."""
        self._path(key)

    def _open(self, key: str) -> BinaryIO:
        """The object's file, open for reading; ObjectMissing if there is none."""
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectMissing(key) from exc

    def get(self, key: str, limit: int | None = None) -> bytes:
        """The object's bytes; TooLarge, reading none, if it is over `limit` bytes."""
        with self._open(key) as file:
            _within(os.fstat(file.fileno()).st_size, limit)
            return file.read()

    def _write_temp(self, key: str, data: bytes | BinaryIO) -> tuple[Path, Path]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                shutil.copyfileobj(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return Path(tmp), path

    def put(self, key: str, data: bytes) -> None:
        tmp, path = self._write_temp(key, data)
        os.replace(tmp, path)

    def upload(self, key: str, file: BinaryIO) -> None:
        """Write the object from an open file, streamed: memory stays bounded whatever its size."""
        tmp, path = self._write_temp(key, file)
        os.replace(tmp, path)

    def stream(self, key: str) -> Iterator[bytes]:
        """The object's bytes piece by piece as they are read; ObjectMissing now, not at the
        first piece, if there is none."""
        return _pieces(self._open(key))

    def create(self, key: str, data: bytes) -> None:
        tmp, path = self._write_temp(key, data)
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise AlreadyExists(key) from exc
        finally:
            tmp.unlink()

    def copy(self, key: str, target: str, tag: str, limit: int) -> None:
        """Copy the version of `key` that list_tagged tagged `tag` to `target`; ObjectMissing
        if `key` holds another one by now, or none (written over before or while copied),
        TooLarge if it is over `limit` bytes (nothing read)."""
        with self._open(key) as source:
            stat = os.fstat(source.fileno())
            if _file_tag(stat) != tag:
                raise ObjectMissing(key)
            _within(stat.st_size, limit)
            tmp, path = self._write_temp(target, source)
            if _file_tag(os.fstat(source.fileno())) != tag:
                tmp.unlink()
                raise ObjectMissing(key)
        os.replace(tmp, path)

    def download(self, key: str, path: Path) -> None:
        """Copy `key` to a local file."""
        with self._open(key) as source, path.open("wb") as out:
            shutil.copyfileobj(source, out)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove a key; one that is not there is no error."""
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / _valid_prefix(prefix)
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.startswith(".tmp-"):
                    yield Path(dirpath, name).relative_to(self.root).as_posix()

    def list_tagged(self, prefix: str) -> Iterator[tuple[str, str]]:
        """Each key under `prefix` with a tag that changes when it is written again: the
        file's size and modification time."""
        for key in self.list(prefix):
            try:
                stat = (self.root / key).stat()
            except FileNotFoundError:  # removed since it was listed
                continue
            yield key, _file_tag(stat)


def _pieces(body: BinaryIO, size: int = 1 << 16) -> Iterator[bytes]:
    """An open file's or S3 body's bytes, `size` at a time; it is closed at the end."""
    with body:
        while piece := body.read(size):
            yield piece


def _within(size: int, limit: int | None) -> None:
    """TooLarge if `size` bytes are over `limit` (None: no limit)."""
    if limit is not None and size > limit:
        raise TooLarge(size, limit)


def _file_tag(stat: os.stat_result) -> str:
    """A file's tag in list_tagged: its size and modification time."""
    return f"{stat.st_size}-{stat.st_mtime_ns}"


_EXCLUSIVE: set[str] = set()  # URLs of the S3 stores whose exclusive create was probed


class S3Store:
    """A bucket and prefix on any S3 API (AWS, MinIO, moto); settings from boto3's AWS_* env."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self._client = None
        self._pid = 0

    @property
    def client(self):
        """A boto3 client per process (clients must not cross a fork)."""
        if self._client is None or self._pid != os.getpid():
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"mode": "standard", "max_attempts": 5},
                connect_timeout=5,
                read_timeout=30,
                max_pool_connections=32,
            )
            self._client = boto3.client("s3", config=config)
            self._pid = os.getpid()
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _call(self, method: str, **kwargs):
        with self._errors(method, kwargs.get("Key", "")):
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)

    @contextlib.contextmanager
    def _errors(self, method: str, key: str) -> Iterator[None]:
        """Turn what boto3 raises for `method` on `key` into this module's errors."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except NoCredentialsError as exc:
            raise StoreError(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(key) from exc
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise AlreadyExists(key) from exc
            if code == "NoSuchBucket":
                raise StoreError(
                    f"bucket {self.bucket!r} does not exist; create it or set SCANDIGITS_STORE"
                ) from exc
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise AccessDenied(f"access to s3://{self.bucket} denied ({code})") from exc
            raise StoreError(f"S3 {method} failed on s3://{self.bucket}: {code}") from exc
        except S3UploadFailedError as exc:
            raise StoreError(f"S3 {method} failed on s3://{self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            endpoint = self.client.meta.endpoint_url
            raise StoreError(
                f"cannot reach the object store at {endpoint} ({type(exc).__name__}); "
                "check AWS_ENDPOINT_URL and that the S3 service is running"
            ) from exc

    def check(self) -> None:
        """The bucket is there, and (once per process) exclusive create is exclusive."""
        try:
            self._call("head_bucket")
        except ObjectMissing as exc:
            raise StoreError(
                f"bucket {self.bucket!r} does not exist; create it or set SCANDIGITS_STORE"
            ) from exc
        if self.url not in _EXCLUSIVE:
            self._probe_exclusive()
            _EXCLUSIVE.add(self.url)

    def _probe_exclusive(self) -> None:
        """Refuse an S3 API that ignores If-None-Match, on which watchers' claims, chunk
        results and model versions would silently lose their exclusivity: create a probe key
        twice, the second must be refused. Skipped without the right to write, as nothing
        this process does then relies on it."""
        key = f".scandigits-probe-{secrets.token_hex(8)}"
        try:
            self.create(key, b"")
        except AccessDenied:
            return
        except AlreadyExists:  # a retry, after the first attempt's reply was lost
            pass
        try:
            self.create(key, b"")
        except AlreadyExists:
            return
        finally:
            self.delete(key)
        raise StoreError(
            f"the S3 API behind {self.url} ignores If-None-Match (a second exclusive create of "
            "one key succeeded), so claims and results could be taken twice; use one that "
            "supports conditional writes"
        )

    def check_key(self, key: str) -> None:
        """KeyRefused if the store refuses `key` (see validate_key)."""
        validate_key(key)

    def _body(self, key: str, limit: int | None, **conditions: str) -> Any:
        """The object's body, a stream; TooLarge, the body left unread, if it is over `limit`
        bytes."""
        reply = self._call("get_object", Key=self._key(key), **conditions)
        try:
            _within(reply["ContentLength"], limit)
        except TooLarge:
            reply["Body"].close()
            raise
        return reply["Body"]

    def get(self, key: str, limit: int | None = None) -> bytes:
        """The object's bytes; TooLarge, its body left unread, if it is over `limit` bytes."""
        with self._body(key, limit) as body, self._errors("get_object", key):
            return body.read()

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=self._key(key), Body=data)

    def upload(self, key: str, file: BinaryIO) -> None:
        """Write the object from an open file, streamed (in parts, when large)."""
        with self._errors("upload_fileobj", key):
            self.client.upload_fileobj(file, self.bucket, self._key(key))

    def stream(self, key: str) -> Iterator[bytes]:
        """The object's bytes piece by piece as they are read; ObjectMissing now, not at the
        first piece, if there is none."""
        return _pieces(self._body(key, None))

    def create(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=self._key(key), Body=data, IfNoneMatch="*")

    def copy(self, key: str, target: str, tag: str, limit: int) -> None:
        """Copy the version of `key` that list_tagged tagged `tag` to `target`, streamed
        through this process (a GET with If-Match on its ETag; few S3 APIs heed a copy's
        conditions); ObjectMissing if `key` holds another one by now, or none, TooLarge if it
        is over `limit` bytes (its body left unread)."""
        etag = re.fullmatch(r"(.+)-\d{4}-\d\d-\d\dT.+", tag)[1]  # see list_tagged
        try:
            body = self._body(key, limit, IfMatch=f'"{etag}"')
        except AlreadyExists as exc:  # 412: the If-Match failed
            raise ObjectMissing(key) from exc
        with body, self._errors("upload_fileobj", target):
            self.client.upload_fileobj(body, self.bucket, self._key(target))

    def download(self, key: str, path: Path) -> None:
        """Copy `key` to a local file, streamed."""
        with self._errors("download_file", key):
            self.client.download_file(self.bucket, self._key(key), str(path))

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Key=self._key(key))
        except ObjectMissing:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove a key; one that is not there is no error."""
        self._call("delete_object", Key=self._key(key))

    def _contents(self, prefix: str) -> Iterator[dict]:
        token: dict[str, str] = {}
        while True:
            page = self._call(
                "list_objects_v2", Prefix=self.prefix + _valid_prefix(prefix), **token
            )
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def list(self, prefix: str) -> Iterator[str]:
        for item in self._contents(prefix):
            yield item["Key"][len(self.prefix) :]

    def list_tagged(self, prefix: str) -> Iterator[tuple[str, str]]:
        """Each key under `prefix` with a tag that changes when it is written again: its ETag
        and last-modified time (the ETag alone stays the same for the same bytes)."""
        for item in self._contents(prefix):
            etag, stamp = item["ETag"].strip('"'), item["LastModified"].isoformat()
            yield item["Key"][len(self.prefix) :], f"{etag}-{stamp}"
