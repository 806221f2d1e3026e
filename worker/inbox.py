"""Inboxes: store prefixes that scans land in all day, each scan submitted once as it comes.

A `Watcher` polls an inbox, groups what waits there (`batch_size` objects, or fewer once the
oldest has waited `max_age` s), submits each group as a batch and copies each finished batch's
results to ``<results>/<batch id>.jsonl|.csv``.

An object is a key with a tag (S3: ETag and time; file: size and mtime): a key written again is
a new object. Each object lands in exactly one batch, whichever watchers run or die, by way of
files under ``watch/<quoted inbox>/`` in the store:
1. Record (under a Redis lock per inbox, so two watchers do not split each other's groups):
   ``groups/<g>.json`` lists the objects picked for group g, then each is claimed by an
   exclusive create of ``claims/<object id>.json`` naming g and its claimed version copied to
   ``batches/<g>/inputs/<key>``, which the batch reads: bytes written under its key later are
   another object's.
2. Submit (by the holder of g's Redis lease, SET NX PX, renewed each poll; once it lapses, any
   watcher takes it and redoes this step): claim for g what of its list is still unclaimed, so
   its members are settled, and submit them as batch g. batches.submit takes that id by an
   exclusive create of its manifest before it queues anything: another submission of g stops
   there and completes batch g instead (lost chunks re-queued by batches.resume).
   ``queued/<g>`` ends the step.
3. Finish (any watcher): copy the results of g's finished batch (the .jsonl by exclusive
   create: one watcher logs it), then delete ``groups/<g>.json`` and ``queued/<g>``.
A lease only says who works on a group: a watcher paused past its lease cannot make a second
batch, only queue a chunk of the same batch twice. A poll lists the inbox and the open groups,
and looks up the claims of objects not yet known to be claimed; claims stay.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import redis
from kombu.exceptions import OperationalError

from trainer.errors import (
    AlreadyExists,
    KeyRefused,
    ObjectMissing,
    RegistryError,
    StoreError,
    TooLarge,
    UserError,
)
from trainer.storage import Store
from worker import batches, inputs, settings
from worker.forms.templates import Template
from worker.results import REVIEW_BELOW
from worker.settings import Settings

log = logging.getLogger(__name__)

_RESERVED = ("batches/", "models/", "watch/")  # the store's own folders: never inputs

# Take the lease if it is free or already ours, and (re)set its expiry.
_HOLD = """
if redis.call('get', KEYS[1]) == ARGV[1] or redis.call('set', KEYS[1], ARGV[1], 'NX') then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class _Object:
    key: str
    tag: str

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.key}\n{self.tag}".encode()).hexdigest()[:32]


def _prefix(store: Store, url: str) -> str:
    """The key prefix of a URL inside the store: '' for its root, else ending in '/'."""
    key = inputs.key_of(store, url)
    return f"{key}/" if key else ""


def _beside(inbox: str, name: str) -> str:
    """The prefix `name` in the inbox's parent folder (in the root for the root)."""
    parent = PurePosixPath(inbox).parent
    return f"{parent}/{name}" if parent.name else name


def _is_input(key: str) -> bool:
    """An image, PDF, TIFF or archive that batches.submit takes, and not hidden (a `..`
    segment hides nothing: the store refuses such a key, and it is rejected, not skipped)."""
    name = PurePosixPath(key.lower())
    return not any(part.startswith(".") and part != ".." for part in name.parts) and (
        name.suffix in inputs.IMAGE_SUFFIXES or inputs.is_archive(key)
    )


def _pinned(group: str, key: str) -> str:
    """Where the claimed version of the object under `key` is copied for group's batch."""
    return f"{batches.prefix(group)}/inputs/{key}"


class Watcher:
    """Submits what lands in one inbox of a store, each object once (see the module). The
    default results prefix is ``results/`` beside the inbox (inside it for the store's root).
    A group stays `lease` seconds with a watcher that stopped renewing its lease (it renews
    every poll; `scandigits watch` passes SCANDIGITS_WATCH_LEASE)."""

    def __init__(
        self,
        store: Store,
        inbox: str,
        client: redis.Redis,
        results: str | None = None,
        batch_size: int = 100,
        max_age: float = 30.0,
        model: int | str | None = None,
        chunk_size: int = 128,
        review_below: float = REVIEW_BELOW,
        template: Template | None = None,
        lease: float = Settings.watch_lease,
    ) -> None:
        self.store, self.redis = store, client
        self.inbox = _prefix(store, inbox)
        self.results = _prefix(store, results) if results else _beside(self.inbox, "results/")
        if not self.results:
            raise UserError("the results prefix cannot be the store's root")
        self.results_url = f"{store.url}/{self.results}"
        self.batch_size, self.max_age = batch_size, max_age
        self.lease = lease
        self.options = {"model": model, "chunk_size": chunk_size, "review_below": review_below}
        self.template = template
        self.state = f"watch/{quote(self.inbox or '/', safe='')}/"
        self._redis_key = f"scandigits:watch:{store.url}/{self.state}"
        self._token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._seen: dict[str, float] = {}  # object id → when this watcher first saw it waiting
        self._claimed: set[str] = set()  # ids of objects in the inbox known to be claimed
        self._hold_script = client.register_script(_HOLD)
        self._release_script = client.register_script(_RELEASE)

    def run(self, interval: float, stop: threading.Event, once: bool = False) -> None:
        """Step every `interval` s until `stop` is set: store and Redis errors are logged and
        retried. With `once`, submit all that waits now, return when all of it is finished,
        and let errors out."""
        while not stop.is_set():
            try:
                busy = self.step(flush=once)
            except (UserError, redis.RedisError, OperationalError) as exc:
                if once:
                    raise
                log.error("%s; retrying", exc)
                busy = True
            if once and not busy:
                return
            stop.wait(interval)

    def step(self, flush: bool = False) -> bool:
        """One poll: group what is due (everything waiting, if `flush`), submit new groups and
        those of dead watchers, finish groups whose batch is done. Return whether anything was
        waiting or open."""
        waiting = self._waiting()
        if waiting and self._due(waiting, flush):
            self._group(flush)
        opened = self._open()
        queued = self._ids("queued/")
        for group in opened:
            if group in queued:
                self._finish(group)
            elif self._hold(f"group:{group}"):
                self._submit(group)
        return bool(waiting or opened)

    # --- what waits -------------------------------------------------------------------------

    def _ids(self, folder: str) -> set[str]:
        """Names (without suffix) of the state files in a folder."""
        return {PurePosixPath(key).stem for key in self.store.list(self.state + folder)}

    def _claim_key(self, item: _Object) -> str:
        return f"{self.state}claims/{item.id}.json"

    def _waiting(self) -> list[_Object]:
        """Inputs in the inbox that no group has claimed, oldest seen first."""
        skip = (self.results, *_RESERVED)
        found = [
            _Object(key, tag)
            for key, tag in self.store.list_tagged(self.inbox)
            if not key.startswith(skip) and _is_input(key[len(self.inbox) :])
        ]
        self._claimed &= {item.id for item in found}
        unknown = [item for item in found if item.id not in self._claimed]
        with ThreadPoolExecutor(max_workers=16) as pool:
            taken = list(pool.map(lambda item: self.store.exists(self._claim_key(item)), unknown))
        self._claimed |= {item.id for item, claimed in zip(unknown, taken, strict=True) if claimed}
        waiting = [item for item, claimed in zip(unknown, taken, strict=True) if not claimed]
        now = time.monotonic()
        self._seen = {item.id: self._seen.get(item.id, now) for item in waiting}
        return sorted(waiting, key=lambda item: (self._seen[item.id], item.key))

    def _due(self, waiting: list[_Object], flush: bool) -> bool:
        oldest = time.monotonic() - self._seen[waiting[0].id]
        return flush or len(waiting) >= self.batch_size or oldest >= self.max_age

    # --- 1. record --------------------------------------------------------------------------

    def _group(self, flush: bool) -> None:
        """Record and claim groups of what is due, one watcher of the inbox at a time. An
        archive is a group of its own: batches.submit unpacks it from a local copy, and a bad
        one fails alone."""
        lock = f"{self._redis_key}lock"
        if not self.redis.set(lock, self._token, nx=True, px=int(self.lease * 1000)):
            return
        try:
            waiting = self._waiting()  # again: another watcher may have claimed some
            archives = [item for item in waiting if inputs.is_archive(item.key)]
            images = [item for item in waiting if not inputs.is_archive(item.key)]
            for archive in archives:
                self._record([archive])
            while images and self._due(images, flush):
                self._record(images[: self.batch_size])
                images = images[self.batch_size :]
        finally:
            self._release_script(keys=[lock], args=[self._token])

    def _record(self, objects: list[_Object]) -> None:
        group = batches.new_id(4)
        self._hold(f"group:{group}")  # before it is visible: no one takes it over meanwhile
        record = {"group": group, "created": batches.now(), "objects": [asdict(o) for o in objects]}
        self.store.put(f"{self.state}groups/{group}.json", json.dumps(record).encode())
        self._claim(group, objects)

    def _claim(self, group: str, objects: list[_Object]) -> list[tuple[_Object, str | None]]:
        """Claim each object for `group` unless another group has, and pin each it holds
        (`_pin`); return those, each with why it cannot be read (None if it can)."""

        def claim(item: _Object) -> tuple[_Object, str | None] | None:
            key = self._claim_key(item)
            try:
                self.store.create(key, json.dumps({**asdict(item), "group": group}).encode())
            except AlreadyExists:
                if json.loads(self.store.get(key))["group"] != group:
                    return None
                return item, self._pin(group, item, again=True)
            return item, self._pin(group, item, again=False)

        with ThreadPoolExecutor(max_workers=16) as pool:
            held = list(pool.map(claim, objects))
        self._claimed |= {item.id for item in objects}
        return [mine for mine in held if mine]

    def _pin(self, group: str, item: _Object, again: bool) -> str | None:
        """Copy the claimed version of an object into its group's batch (unless a watcher did
        `again`), for the batch to read whatever is written under its key later; return why
        it cannot be: the store refuses its key, the claimed version is gone, or it is over
        the size limit (an archive's, max_archive_bytes, else max_bytes: worker.settings)."""
        try:
            self.store.check_key(item.key)
        except KeyRefused as exc:
            return str(exc)
        pinned = _pinned(group, item.key)
        if again and self.store.exists(pinned):
            return None
        limits = settings.current()
        limit = limits.max_archive_bytes if inputs.is_archive(item.key) else limits.max_bytes
        try:
            self.store.copy(item.key, pinned, item.tag, limit)
        except ObjectMissing:
            return "written again or removed before it was read (a new version is a new object)"
        except TooLarge as exc:
            return str(exc)
        return None

    def _hold(self, name: str) -> bool:
        """Take or renew a lease in Redis for this watcher; False if another one holds it."""
        key = f"{self._redis_key}{name}"
        return bool(self._hold_script(keys=[key], args=[self._token, int(self.lease * 1000)]))

    # --- 2. submit --------------------------------------------------------------------------

    def _open(self) -> list[str]:
        return sorted(self._ids("groups/"))

    def _submit(self, group: str) -> None:
        """Submit a recorded group as one batch, or complete what a dead watcher began."""
        try:
            record = json.loads(self.store.get(f"{self.state}groups/{group}.json"))
        except ObjectMissing:  # finished by another watcher since this one listed it
            return
        members = self._claim(group, [_Object(**o) for o in record["objects"]])
        if not self.store.exists(f"{batches.prefix(group)}/manifest.json"):
            with contextlib.suppress(AlreadyExists):  # else a concurrent submission made it
                self._create(group, members)
                return
        lost = batches.resume(self.store, group)
        log.info("batch %s resumed: %d chunks re-queued", group, len(lost))
        self.store.put(f"{self.state}queued/{group}", b"")

    def _create(self, group: str, members: list[tuple[_Object, str | None]]) -> None:
        """Submit the members that can be read as batch `group` (AlreadyExists if it is
        there) and reject the others (`_reject`); if none is left, or batches.submit refuses
        them (a bad archive), the group ends without a batch, its members rejected."""
        readable = [item for item, why in members if why is None]
        refused = [(item, why) for item, why in members if why is not None]
        if refused:
            self._reject(group, refused)
        if not readable:  # all refused, or taken by other groups
            self._close(group)
            return
        try:
            with tempfile.TemporaryDirectory(prefix="scandigits-watch-") as scratch:
                paths = [self._path(group, item.key, Path(scratch)) for item in readable]
                batch = batches.submit(
                    self.store, paths, **self.options, template=self.template, batch_id=group
                )
        except (StoreError, RegistryError):
            raise  # the store or the model, not these inputs: try again
        except (UserError, ObjectMissing) as exc:  # a bad archive: refused whole
            why = str(exc) if isinstance(exc, UserError) else "removed before it was read"
            self._reject(group, refused + [(item, why) for item in readable], again=bool(refused))
            self._close(group)
            return
        images = batches.manifest(self.store, batch).images
        log.info("batch %s submitted: %d objects, %d images", batch, len(readable), images)
        self.store.put(f"{self.state}queued/{group}", b"")

    def _reject(self, group: str, refused: list[tuple[_Object, str]], again: bool = False) -> None:
        """List the group's objects that cannot be read, each with its one-line error, in
        ``<results>/<group>.rejected.jsonl`` (by exclusive create: one watcher logs them;
        `again` replaces a list written before with a longer one)."""
        lines = "".join(
            json.dumps({"source": f"{self.store.url}/{item.key}", "key": item.key, "error": why})
            + "\n"
            for item, why in refused
        )
        write = self.store.put if again else self.store.create
        try:
            write(f"{self.results}{group}.rejected.jsonl", lines.encode())
        except AlreadyExists:
            return
        for item, why in refused:
            log.error("%s/%s rejected: %s", self.store.url, item.key, why)

    def _path(self, group: str, key: str, scratch: Path) -> str:
        """What batches.submit is given for an object: the URL of its pinned copy; for an
        archive, a local copy of that (it unpacks local archives only), named by its key
        (which the store took at `_pin`, so the copy stays in `scratch`)."""
        if not inputs.is_archive(key):
            return f"{self.store.url}/{_pinned(group, key)}"
        copy = scratch / key
        copy.parent.mkdir(parents=True, exist_ok=True)
        self.store.download(_pinned(group, key), copy)
        return str(copy)

    # --- 3. finish --------------------------------------------------------------------------

    def _finish(self, group: str) -> None:
        """Copy the results of the group's batch once it is done (merging them first if its
        last worker died before it could)."""
        report = batches.status(self.store, batches.manifest(self.store, group))
        if report["state"] != "done":
            if report["chunks_done"] == report["chunks"]:
                batches.finalize_if_complete(self.store, group, report["chunks"])
            return
        self.store.put(f"{self.results}{group}.csv", batches.result_file(self.store, group, "csv"))
        try:
            jsonl = batches.result_file(self.store, group, "jsonl")
            self.store.create(f"{self.results}{group}.jsonl", jsonl)
        except AlreadyExists:
            pass
        else:
            log.info(
                "batch %s finished: %d images, %d errors; %s%s.jsonl",
                group,
                report["images"],
                report["errors"],
                self.results_url,
                group,
            )
        self._close(group)

    def _close(self, group: str) -> None:
        """Forget a group that needs nothing more (the record first: see _submit)."""
        self.store.delete(f"{self.state}groups/{group}.json")
        self.store.delete(f"{self.state}queued/{group}")
