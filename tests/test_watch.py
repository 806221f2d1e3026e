"""`scandigits watch`: what lands in an inbox is submitted in exactly one batch, whichever
watchers run, race or die, and each finished batch's results are copied beside the inbox."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from tests.conftest import cli, publish
from trainer import mnist, samples
from trainer.storage import FileStore, Store
from worker import batches, inbox, local, queue, settings
from worker.forms.templates import FieldSpec, Template
from worker.settings import Settings

pytestmark = pytest.mark.e2e  # starts Redis, the S3 server, workers or the CLI

PNG = cv2.imencode(".png", np.full((20, 20), 255, np.uint8))[1].tobytes()


class Killed(BaseException):
    """A watcher dying at this point (nothing catches it, as nothing outlives a SIGKILL)."""


class Crashing:
    """A store that kills its watcher at the call of `op` on a key matching `pattern` that
    follows `after` such calls."""

    def __init__(self, store: Store, op: str, pattern: str, after: int = 0) -> None:
        self._store, self._op, self._pattern, self._left = store, op, pattern, after

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if name != self._op:
            return method

        def crashing(key: str, *args: Any) -> Any:
            if re.search(self._pattern, key):
                if not self._left:
                    raise Killed(f"{name} {key}")
                self._left -= 1
            return method(key, *args)

        return crashing


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    """The session's Redis, in a database of its own: the batches queued here are never read
    by the workers of other tests."""
    url = re.sub(r"/\d+$", "/7", redis_url)
    queue.connect(url)
    client = redis.Redis.from_url(url)
    yield client
    client.flushdb()
    queue.connect(redis_url)


@pytest.fixture
def store(request: pytest.FixtureRequest, trained) -> Store:
    """An empty store (file://, or s3:// for tests marked so) with the model published."""
    target = request.getfixturevalue(getattr(request, "param", "file_store"))
    publish(target, trained)
    return target


def watcher(store: Store, client: redis.Redis, **options: Any) -> inbox.Watcher:
    options = {"batch_size": 3, "max_age": 0, "lease": 0.3, **options}
    return inbox.Watcher(store, f"{store.url}/inbox/", client, **options)


def drop(store: Store, *names: str, data: bytes = PNG) -> None:
    for name in names:
        store.put(f"inbox/{name}", data)


def items(store: Store) -> Iterator[tuple[str, dict[str, Any]]]:
    """(batch id, item) of each item of each batch in the store."""
    for key in store.list("batches/"):
        if key.endswith("/manifest.json"):
            manifest = json.loads(store.get(key))
            for chunk in manifest["chunks"]:
                for item in chunk:
                    yield manifest["batch"], item


def inboxed(key: str) -> str:
    """The inbox key of an object's copy in its batch."""
    return re.sub(r"^batches/[^/]+/inputs/", "", key)


def batched(store: Store) -> dict[str, list[str]]:
    """Each key in the store's batches → the ids of the batches that hold it; an inbox
    object's copy in its batch counts as its key in the inbox."""
    held: dict[str, list[str]] = {}
    for batch, item in items(store):
        copied = item["source"] == f"{store.url}/{item['key']}"  # not uploaded by submit
        held.setdefault(inboxed(item["key"]) if copied else item["key"], []).append(batch)
    return held


def queued_tasks(client: redis.Redis) -> Counter[str]:
    """Task ids waiting in the queue, counted."""
    return Counter(
        json.loads(raw)["headers"]["id"]
        for raw in client.lrange(queue.app.conf.task_default_queue, 0, -1)
    )


def chunk_tasks(store: Store) -> Counter[str]:
    """The id of each chunk task of each batch in the store, once."""
    return Counter(
        queue.task_id(key.split("/")[1], index)
        for key in store.list("batches/")
        if key.endswith("/manifest.json")
        for index in range(len(json.loads(store.get(key))["chunks"]))
    )


def test_groups_by_size_then_by_age(store, broker) -> None:
    drop(store, *(f"{n}.png" for n in range(7)))
    first = watcher(store, broker, max_age=3)  # long enough for two steps on a slow machine
    assert first.step()
    held = batched(store)
    assert len(held) == 6 and len({b for ids in held.values() for b in ids}) == 2
    assert all(len(ids) == 1 for ids in held.values())
    first.step()
    assert len(batched(store)) == 6, "the last one waits for company or age"
    time.sleep(3)
    first.step()
    assert sorted(batched(store)) == [f"inbox/{n}.png" for n in range(7)]
    assert all(
        item["key"].startswith(f"batches/{batch}/inputs/inbox/") for batch, item in items(store)
    ), "read from the copy in its batch"


def test_only_new_inputs_of_the_inbox(store, broker, tmp_path) -> None:
    """At the store's root: hidden files, non-inputs, the results and the store's own folders
    (a batch's uploaded inputs, the models, the watcher's state) are left alone."""
    (tmp_path / "local.png").write_bytes(PNG)
    batches.submit(store, [str(tmp_path / "local.png")])  # uploaded to batches/<id>/inputs/
    for key in ("a.png", "sub/b.JPG", "scan.pdf", ".hidden.png", "sub/.part/c.png", "notes.txt"):
        store.put(key, PNG)
    store.put("results/old.png", PNG)
    root = inbox.Watcher(store, store.url, broker, max_age=0)
    assert root.results == "results/"
    root.step()
    root.step()
    assert sorted(k for k in batched(store) if "/inputs/" not in k) == [
        "a.png",
        "scan.pdf",
        "sub/b.JPG",
    ]


def test_a_key_written_again_is_a_new_object(store, broker) -> None:
    drop(store, "a.png")
    one = watcher(store, broker)
    one.step(flush=True)
    one.step(flush=True)
    assert len(batched(store)["inbox/a.png"]) == 1
    time.sleep(0.01)  # a new mtime, even where the clock is coarse
    drop(store, "a.png", data=PNG + b"\0")
    one.step(flush=True)
    assert len(batched(store)["inbox/a.png"]) == 2


@pytest.mark.parametrize("store", ["file_store", "s3_store"], indirect=True)
def test_two_watchers_racing_over_one_inbox(store, broker) -> None:
    """Two watchers step at once while scans land a few at a time: each scan is in exactly
    one batch, each chunk queued once."""
    names = [f"{n:03d}.png" for n in range(30)]
    racers = [watcher(store, broker, max_age=0.05) for _ in range(2)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def race(one: inbox.Watcher) -> None:
        try:
            while not stop.is_set():
                one.step()
                time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(one,)) for one in racers]
    for thread in threads:
        thread.start()
    for n in range(0, len(names), 4):
        drop(store, *names[n : n + 4])
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    for one in racers:
        one.step(flush=True)
    held = batched(store)
    assert sorted(held) == [f"inbox/{n}" for n in names]
    assert all(len(ids) == 1 for ids in held.values()), held
    assert queued_tasks(broker) == chunk_tasks(store)


@pytest.mark.parametrize("store", ["file_store", "s3_store"], indirect=True)
def test_an_object_written_again_after_its_claim_is_read_as_claimed(store, broker) -> None:
    """A scan written again after its group claimed it: that group's batch reads the bytes it
    claimed (whenever its chunk runs), and the new bytes are a new object, read once."""
    old, new = PNG, PNG + b"\0"
    drop(store, "a.png", data=old)
    one = watcher(store, broker)
    one.step(flush=True)
    drop(store, "a.png", data=new)
    one.step(flush=True)
    one.step(flush=True)
    read = {batch: store.get(item["key"]) for batch, item in items(store)}
    assert sorted(read.values()) == [old, new], "each version in a batch of its own"


@pytest.mark.parametrize("store", ["file_store", "s3_store"], indirect=True)
def test_an_object_written_again_while_it_is_claimed_is_read_once(store, broker) -> None:
    """A scan written again between the listing and its claim: the claimed bytes are gone, so
    that object is rejected as written again; the new bytes are a new object, read once."""
    old, new = PNG, PNG + b"\0"
    drop(store, "a.png", data=old)

    class Rewriting(Crashing):
        def create(self, key: str, data: bytes) -> None:
            if "/claims/" in key and self._left:
                self._left = 0
                drop(self._store, "a.png", data=new)
            self._store.create(key, data)

    one = watcher(Rewriting(store, "", "^$", after=1), broker)
    one.step(flush=True)
    one.step(flush=True)
    assert [store.get(item["key"]) for _, item in items(store)] == [new]
    (listed,) = [k for k in store.list("results/") if k.endswith(".rejected.jsonl")]
    rejected = json.loads(store.get(listed))
    assert rejected["key"] == "inbox/a.png" and "written again" in rejected["error"]


DEATHS = {
    "while claiming": ("create", r"/claims/", 1),
    "before submitting": ("exists", r"^batches/.*/manifest\.json$", 0),
    "while writing the manifest": ("create", r"^batches/.*/manifest\.json$", 0),
    "after writing the manifest": ("enqueue", "", 0),
    "after queuing": ("put", r"/queued/", 0),
}


@pytest.mark.parametrize("death", DEATHS)
def test_a_watcher_killed_midway_is_taken_over(death, store, broker, monkeypatch) -> None:
    """A watcher dies at each point of a group's way to the queue; the others leave the group
    alone while its lease lasts, then one finishes the job: every scan is in exactly one
    batch, every chunk queued once."""
    op, pattern, after = DEATHS[death]
    lease = 2.0  # long enough for the heir's first step to fall within it on a slow machine
    drop(store, "a.png", "b.png", "c.png")
    if op == "enqueue":
        monkeypatch.setattr(queue, "enqueue", _killed)
        victim = watcher(store, broker, chunk_size=2, lease=lease)
    else:
        victim = watcher(Crashing(store, op, pattern, after), broker, chunk_size=2, lease=lease)
    with pytest.raises(Killed):
        victim.step()
    monkeypatch.undo()
    heir = watcher(store, broker, chunk_size=2, lease=lease)
    before = batched(store)
    heir.step()
    if death == "while claiming":  # what it did not claim is free for another group
        assert sorted(batched(store)) == ["inbox/b.png", "inbox/c.png"]
    else:
        assert batched(store) == before, "the lease still holds"
    time.sleep(lease + 0.05)  # the victim's lease expires
    heir.step()
    held = batched(store)
    assert sorted(held) == ["inbox/a.png", "inbox/b.png", "inbox/c.png"]
    assert all(len(ids) == 1 for ids in held.values()), held
    assert queued_tasks(broker) == chunk_tasks(store)
    watcher(store, broker).step(flush=True)
    assert batched(store) == held and queued_tasks(broker) == chunk_tasks(store)


def _killed(tasks: list) -> None:
    raise Killed("enqueue")


def test_a_paused_watcher_outliving_its_lease_makes_no_second_batch(store, broker) -> None:
    """A watcher stalls (GC, a frozen VM) just before writing its batch's manifest; another
    takes the group over and submits it; the first wakes up and finds the batch made."""
    paused, wake = threading.Event(), threading.Event()

    class Stalling(Crashing):
        def create(self, key: str, data: bytes) -> None:
            if key.endswith("/manifest.json"):
                paused.set()
                wake.wait(10)
            self._store.create(key, data)

    drop(store, "a.png", "b.png")
    sleeper = watcher(Stalling(store, "", "^$"), broker)
    thread = threading.Thread(target=sleeper.step)
    thread.start()
    assert paused.wait(10)
    time.sleep(0.35)
    watcher(store, broker).step()
    wake.set()
    thread.join()
    held = batched(store)
    assert (
        sorted(held) == ["inbox/a.png", "inbox/b.png"] and len(set(map(tuple, held.values()))) == 1
    )
    assert all(len(ids) == 1 for ids in held.values())
    assert queued_tasks(broker) == chunk_tasks(store)


def work(store: Store, batch: str) -> None:
    """What the workers do for a batch, without reading anything: one result per item."""
    manifest = batches.manifest(store, batch)
    for index, chunk in enumerate(manifest.chunks):
        records = [
            {
                "source": item.source,
                "key": item.key,
                "page": item.page,
                "label": 7,
                "confidence": 1.0,
                "text": "7",
                "error": None,
                "model": manifest.model,
                "needs_review": False,
                "review_reason": None,
                "digits": [{"label": 7, "confidence": 1.0, "box": [0, 0, 1, 1]}],
            }
            for item in chunk
        ]
        document = {"records": records, "seconds": {}, "started": batches.now()}
        document["finished"] = batches.now()
        store.put(batches.chunk_key(batch, index), json.dumps(document).encode())


def test_finished_batches_are_copied_to_the_results_once(store, broker, caplog) -> None:
    """Every watcher copies a finished batch's results (merged first if its last worker died
    before merging them); one of them logs it."""
    drop(store, "a.png", "b.png", "c.png", "d.png")
    assert watcher(store, broker).results == "results/", "beside the inbox by default"
    watchers = [watcher(store, broker, results=f"{store.url}/out") for _ in range(2)]
    watchers[0].step()
    ids = sorted({b for ids in batched(store).values() for b in ids})
    assert len(ids) == 2 and not list(store.list("out/"))
    for batch in ids:
        work(store, batch)  # no summary yet: the worker died before merging
    caplog.set_level("INFO", logger="worker.inbox")
    for _ in range(2):
        for one in watchers:
            one.step()
    for batch in ids:
        assert store.get(f"out/{batch}.jsonl") == store.get(f"batches/{batch}/results.jsonl")
        assert store.get(f"out/{batch}.csv") == store.get(f"batches/{batch}/results.csv")
    finished = [r.getMessage() for r in caplog.records if " finished: " in r.getMessage()]
    assert sorted(message.split()[1] for message in finished) == ids
    assert all(m.endswith(f"{store.url}/out/{m.split()[1]}.jsonl") for m in finished)
    assert not list(store.list(watchers[0].state + "groups/")), "no group is left open"
    assert not list(store.list(watchers[0].state + "queued/"))
    watchers[0].run(0.01, threading.Event(), once=True)  # nothing waits or is open: returns


def test_an_archive_is_a_batch_of_its_own_and_a_bad_one_fails_alone(store, broker) -> None:
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("forms/1.png", PNG)
        archive.writestr("forms/2.png", PNG)
    drop(store, "forms.zip", data=packed.getvalue())
    drop(store, "broken.zip", data=b"PK\x03\x04" + bytes(100))
    drop(store, "a.png")
    one = watcher(store, broker)
    one.step(flush=True)
    one.step(flush=True)
    held = batched(store)
    assert held.pop("inbox/a.png")
    ((batch,),) = {tuple(ids) for ids in held.values()}
    items = [i for c in batches.manifest(store, batch).chunks for i in c]
    assert [i.source.split("/inbox/")[1] for i in items] == [
        "forms.zip/forms/1.png",
        "forms.zip/forms/2.png",
    ]
    assert all(i.key.startswith(f"batches/{batch}/inputs/") for i in items)
    opened = list(store.list(f"{one.state}groups/"))
    made = [key for key in store.list("batches/") if key.endswith("/manifest.json")]
    assert len(opened) == len(made) == 2, "the broken archive's group ended without a batch"
    (listed,) = [key for key in store.list("results/") if key.endswith(".rejected.jsonl")]
    (rejected,) = [json.loads(line) for line in store.get(listed).splitlines()]
    assert rejected["key"] == "inbox/broken.zip" and "cannot read archive" in rejected["error"]


def plant(store: Store, key: str, data: bytes = PNG) -> None:
    """Write an object under a key the store refuses but the disk or the S3 server takes."""
    if isinstance(store, FileStore):
        path = store.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    import boto3

    boto3.client("s3").put_object(Bucket=store.bucket, Key=store.prefix + key, Body=data)


REFUSED = {
    "file_store": ["inbox/a\\b.png", "inbox/link.png"],
    "s3_store": ["inbox/../up.png", "inbox//a.png", "inbox/a\\b.png"],
}


@pytest.mark.parametrize("store", ["file_store", "s3_store"], indirect=True)
def test_keys_the_store_refuses_are_rejected_once_and_hold_nothing_up(
    store, broker, caplog, tmp_path
) -> None:
    """Keys legal on disk or in S3 that the store refuses (`..`, `//`, a backslash, a symlink
    out of the folder) are listed with their one-line error beside the results and logged
    once; the scans grouped with them, and those that land later, are submitted."""
    refused = REFUSED["s3_store" if store.url.startswith("s3://") else "file_store"]
    (tmp_path / "secret.png").write_bytes(PNG)
    for key in refused:
        if key.endswith("link.png"):
            (store.root / key).symlink_to(tmp_path / "secret.png")
        else:
            plant(store, key)
    drop(store, "good.png")
    caplog.set_level("INFO", logger="worker.inbox")
    watchers = [watcher(store, broker, batch_size=10) for _ in range(2)]
    for one in watchers:
        one.step(flush=True)
    assert sorted(batched(store)) == ["inbox/good.png"]
    (listed,) = [key for key in store.list("results/") if key.endswith(".rejected.jsonl")]
    rejected = [json.loads(line) for line in store.get(listed).splitlines()]
    assert sorted(r["key"] for r in rejected) == sorted(refused)
    assert all(r["source"] == f"{store.url}/{r['key']}" for r in rejected)
    assert all(r["error"] and "\n" not in r["error"] for r in rejected)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == len(refused), errors
    assert all(any(r["error"] in e for e in errors) for r in rejected)
    drop(store, "later.png")
    watchers[0].step(flush=True)
    assert sorted(batched(store)) == ["inbox/good.png", "inbox/later.png"]


@pytest.mark.parametrize("store", ["s3_store"], indirect=True)
def test_an_archive_key_makes_no_folder_outside_the_scratch(store, broker, tmp_path, monkeypatch):
    """An archive is copied into a scratch folder under its key before it is unpacked: a key
    that reads as an absolute path (`//` at the store's root) creates nothing outside it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("1.png", PNG)
    plant(store, f"{tmp_path}/escaped/forms.zip", packed.getvalue())
    inbox.Watcher(store, store.url, broker, max_age=0).step(flush=True)
    assert not (tmp_path / "escaped").exists()
    (listed,) = [k for k in store.list("results/") if k.endswith(".rejected.jsonl")]
    assert json.loads(store.get(listed))["key"] == f"{tmp_path}/escaped/forms.zip"


@pytest.mark.parametrize("store", ["file_store", "s3_store"], indirect=True)
def test_objects_over_the_limits_are_rejected_unread(store, broker, monkeypatch) -> None:
    """A scan over the byte limit, or an archive over the archive byte limit, is rejected by
    its size before a byte of it is read or copied; the rest goes on."""
    limits = Settings(max_bytes=1000, max_archive_bytes=2000)
    monkeypatch.setattr(settings, "current", lambda: limits)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("1.png", PNG)
        archive.writestr("pad.txt", bytes(3000))
    drop(store, "big.zip", data=packed.getvalue())
    drop(store, "big.pdf", data=b"%PDF-1.4\n" + bytes(1000))
    drop(store, "a.png")
    one = watcher(Crashing(store, "get", "big"), broker)  # a read of either kills it
    one.step(flush=True)
    assert sorted(batched(store)) == ["inbox/a.png"]
    assert not [key for key in store.list("batches/") if "/big." in key], "nothing copied"
    rejected = [
        json.loads(line)
        for key in store.list("results/")
        if key.endswith(".rejected.jsonl")
        for line in store.get(key).splitlines()
    ]
    assert sorted(r["key"] for r in rejected) == ["inbox/big.pdf", "inbox/big.zip"]
    assert all("over the limit" in r["error"] for r in rejected), rejected


def test_every_batch_carries_the_template(store, broker) -> None:
    form = Template("claim", (FieldSpec("total", (0.1, 0.1, 0.5, 0.1), digits=3),))
    drop(store, "1.png")
    one = watcher(store, broker, template=form)
    one.step(flush=True)
    ((batch,),) = batched(store).values()
    assert batches.manifest(store, batch).template == form.to_dict()


def test_cli_mistakes_are_one_line(file_store, redis_url) -> None:
    env = {"SCANDIGITS_BROKER_URL": redis_url, "SCANDIGITS_STORE": file_store.url}
    outside = cli("watch", "file:///elsewhere/inbox/", "--once", env=env)
    assert outside.returncode == 2
    assert outside.stderr.strip() == (
        f"error: file:///elsewhere/inbox/ is not inside the store {file_store.url}"
    )
    template = cli("watch", f"{file_store.url}/inbox/", "--template", "form.yaml", env=env)
    assert template.returncode == 2 and template.stderr.startswith(
        "error: cannot read template form.yaml"
    )


OPTIONS = ["--batch-size", "4", "--max-age", "1", "--interval", "0.2"]


@pytest.mark.parametrize("store", ["file_store", "s3_store"], indirect=True)
def test_watch_end_to_end(store, redis_url, digits: mnist.Mnist, tmp_path) -> None:
    """Real workers and `scandigits watch` processes. Scans land a few at a time while one
    watcher is SIGKILLed and started again and a second one runs for a while: each scan is in
    exactly one finished batch, whose results are copied to results/ beside the inbox."""
    folder = tmp_path / "scans"
    labels = samples.write_scans(folder, digits.x_test, digits.y_test, 24, seed=3)
    names = sorted(labels)
    env = {
        "SCANDIGITS_BROKER_URL": redis_url,
        "SCANDIGITS_STORE": store.url,
        "SCANDIGITS_WATCH_LEASE": "2",
    }
    queue.connect(redis_url)
    workers = local.start_workers(2, env, tmp_path / "logs")
    watchers: dict[str, subprocess.Popen] = {}

    def start(name: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log", "wb") as log:
            watchers[name] = subprocess.Popen(
                [sys.executable, "-m", "worker", "watch", f"{store.url}/inbox/", *OPTIONS],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while "watching" not in (tmp_path / f"{name}.log").read_text():
            assert watchers[name].poll() is None and time.monotonic() < deadline, name
            time.sleep(0.05)
        return watchers[name]

    def land(few: list[str]) -> None:
        """As a mailroom would: on disk, written under a hidden name, then renamed."""
        for name in few:
            data = (folder / name).read_bytes()
            if not store.url.startswith("file://"):
                store.put(f"inbox/{name}", data)
                continue
            part = Path(store.url.removeprefix("file://"), "inbox", f".{name}.part")
            part.parent.mkdir(exist_ok=True)
            part.write_bytes(data)
            part.rename(part.with_name(name))

    def copied() -> list[dict]:
        keys = [key for key in store.list("results/") if key.endswith(".jsonl")]
        return [json.loads(line) for key in keys for line in store.get(key).splitlines()]

    try:
        start("first")
        for n in range(0, 8, 2):
            land(names[n : n + 2])
            time.sleep(0.4)
        start("second")
        land(names[8:12])
        time.sleep(0.5)
        watchers["first"].kill()  # SIGKILL, wherever it is
        land(names[12:16])
        start("first again")
        time.sleep(1)
        land(names[16:20])
        time.sleep(1)
        watchers["second"].send_signal(signal.SIGTERM)
        assert watchers["second"].wait(timeout=30) == 0, "SIGTERM: the step ends, then exit 0"
        land(names[20:])
        deadline = time.monotonic() + 60
        while len(copied()) < len(names):
            assert time.monotonic() < deadline, f"{len(copied())} of {len(names)} results"
            time.sleep(0.3)
        watchers["first again"].send_signal(signal.SIGINT)
        assert watchers["first again"].wait(timeout=30) == 0
    finally:
        for process in watchers.values():
            if process.poll() is None:
                process.kill()
        local.stop_workers(workers)

    records = copied()
    assert sorted(inboxed(r["key"]) for r in records) == [f"inbox/{name}" for name in names]
    done = [k for k in store.list("batches/") if k.endswith("/summary.json")]
    in_batches = Counter(
        inboxed(record["key"])
        for key in done
        for record in map(
            json.loads, store.get(key[: -len("summary.json")] + "results.jsonl").splitlines()
        )
    )
    assert in_batches == {f"inbox/{name}": 1 for name in names}, "each in exactly one batch"
    for key in done:
        batch = key.split("/")[1]
        assert store.get(f"results/{batch}.jsonl") == store.get(f"batches/{batch}/results.jsonl")
        assert store.exists(f"results/{batch}.csv")
    correct = sum(r["text"] == labels[Path(r["key"]).name] for r in records)
    assert correct >= 0.8 * len(names)

    logs = "".join((tmp_path / f"{name}.log").read_text() for name in watchers)
    for event in ("submitted", "finished"):
        logged = Counter(re.findall(rf"batch (\S+) {event}:", logs))
        assert set(logged) <= {k.split("/")[1] for k in done} and max(logged.values()) == 1
    assert logs.count("stopped") == 2
