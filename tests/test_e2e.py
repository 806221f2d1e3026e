"""The whole path with real parts: CLI submit → Redis → `scandigits worker` processes → store."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from tests.batch import reading, results_of, status, submit, submit_held, wait_done
from tests.bombs import jpeg_declaring, png_declaring
from tests.conftest import Proxy, ProxyHandler, cli, make_bucket, publish
from trainer import mnist, samples
from trainer.storage import Store, open_store
from worker import batches, local, queue

pytestmark = pytest.mark.e2e  # starts Redis, the S3 server, workers or the CLI

SCANS = 96
# the hostile corpus, submitted in the same batch as the good scans
BAD = {
    "broken.png": b"\x89PNG\r\n\x1a\n" + bytes(200),
    "empty.jpg": b"",
    "notes.png": b"hello",
    "report.png": b"%PDF-1.7\n1 0 obj << >> endobj\n",
    "archive.png": b"PK\x03\x04" + bytes(100),
    "bomb.png": png_declaring(50_000, 50_000),
    "bomb.jpg": jpeg_declaring(60_000, 40_000),
    "noise.png": bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
    "blank.png": cv2.imencode(".png", np.full((400, 300), 250, np.uint8))[1].tobytes(),
    "black.png": cv2.imencode(".png", np.zeros((400, 300), np.uint8))[1].tobytes(),
    "dot.png": cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes(),
}


@pytest.fixture(scope="module")
def scans(digits: mnist.Mnist, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Generated scans of MNIST test digits plus three files that are not images."""
    folder = tmp_path_factory.mktemp("scans")
    labels = samples.write_scans(folder / "batch", digits.x_test, digits.y_test, SCANS, seed=7)
    for name, data in BAD.items():
        (folder / "batch" / name).write_bytes(data)
    return folder / "batch", labels


@pytest.fixture(params=["file", "s3"])
def cluster(
    request: pytest.FixtureRequest, redis_url: str, trained, tmp_path: Path
) -> Iterator[tuple[Store, dict[str, str]]]:
    """Two worker processes on the session's Redis, with the model published."""
    store = request.getfixturevalue("file_store" if request.param == "file" else "s3_store")
    publish(store, trained)
    env = {"SCANDIGITS_BROKER_URL": redis_url, "SCANDIGITS_STORE": store.url}
    queue.connect(env["SCANDIGITS_BROKER_URL"])
    processes = local.start_workers(2, env, tmp_path / "logs")
    try:
        local.wait_ready(processes, tmp_path / "logs")
        yield store, env
    finally:
        local.stop_workers(processes)
    assert all(p.returncode == 0 for p in processes), "workers must shut down cleanly"


def test_submit_folder_and_collect_results(cluster, scans, tmp_path: Path) -> None:
    store, env = cluster
    folder, labels = scans
    result = cli(
        "submit", str(folder), "--wait", "--chunk-size", "16", "--review-threshold", "0.95", env=env
    )
    assert result.returncode == 0, result.stderr
    batch = result.stdout.strip()
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", batch), "stdout carries only the batch id"

    records = results_of(batch, env)
    assert len(records) == SCANS + len(BAD)
    assert len({r["source"] for r in records}) == len(records)
    by_name = {Path(r["source"]).name: r for r in records}
    for name in BAD:
        assert by_name[name]["error"] and by_name[name]["label"] is None
    good = [by_name[name] for name in labels]
    assert all(r["error"] is None and r["text"] and r["model"] == 1 for r in good)
    for r in good:
        assert r["text"] == "".join(str(d["label"]) for d in r["digits"])
        assert r["label"] == (r["digits"][0]["label"] if len(r["digits"]) == 1 else None)
        # all its digits right, at most; at most 0.5 with ink left out
        joint = math.prod(d["confidence"] for d in r["digits"])
        assert r["confidence"] <= (min(joint, 0.5) if r["left_out"] else joint) + 1e-4
        height, width = cv2.imread(r["source"], cv2.IMREAD_GRAYSCALE).shape
        for x, y, w, h in (d["box"] for d in r["digits"]):
            assert 0 <= x < x + w <= width and 0 <= y < y + h <= height
    correct = sum(by_name[name]["text"] == text for name, text in labels.items())
    assert correct / SCANS >= 0.85, f"{correct}/{SCANS} read correctly"

    rows = list(
        csv.DictReader(io.StringIO(cli("results", batch, "--format", "csv", env=env).stdout))
    )
    assert [row["source"] for row in rows] == [r["source"] for r in records]
    assert list(rows[0]) == [
        "source",
        "key",
        "page",
        "label",
        "confidence",
        "text",
        "error",
        "model",
        "needs_review",
        "review_reason",
    ]

    status = json.loads(cli("status", batch, env=env).stdout)
    assert status["state"] == "done" and status["images_done"] == len(records)
    summary = json.loads(store.get(f"batches/{batch}/summary.json"))
    assert summary["errors"] == len(BAD) and summary["read"] == SCANS
    assert sum(summary["label_histogram"].values()) == summary["digits"] >= SCANS

    flagged = [r for r in records if r["needs_review"]]
    assert all(by_name[name]["needs_review"] for name in BAD)
    assert all(r["error"] or r["confidence"] < 0.95 for r in flagged)
    assert summary["needs_review"] == len(flagged) and summary["review_below"] == 0.95
    sheet = tmp_path / "sheet.png"
    result = cli("review", batch, "--out", str(sheet), env=env)
    assert result.returncode == 0, result.stderr
    assert f"{len(flagged)} of {len(flagged)} results to review" in result.stderr
    assert cv2.imread(str(sheet)).shape == (-(-len(flagged) // 10) * 150, 1280, 3)


def test_submit_store_prefix_without_reupload(cluster, scans) -> None:
    store, env = cluster
    folder, labels = scans
    names = sorted(labels)[:20]
    for name in names:
        store.put(f"incoming/{name}", (folder / name).read_bytes())
    result = cli("submit", f"{store.url}/incoming/", "--wait", env=env)
    assert result.returncode == 0, result.stderr
    batch = result.stdout.strip()
    records = results_of(batch, env)
    assert [r["key"] for r in records] == [f"incoming/{name}" for name in names]
    assert not list(store.list(f"batches/{batch}/inputs/"))


def test_predict_in_process(scans, trained, file_store) -> None:
    folder, labels = scans
    publish(file_store, trained)
    names = sorted(labels)[:10]
    result = cli("predict", *(str(folder / n) for n in names), "--json", "--store", file_store.url)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["source"]).name for r in records] == names
    assert sum(r["text"] == labels[Path(r["source"]).name] for r in records) >= 8
    bad = cli("predict", str(folder / "broken.png"), "--store", file_store.url)
    assert bad.returncode == 1 and "error: not a readable image" in bad.stdout


def test_tampered_model_gives_errors_not_a_stuck_batch(cluster, scans, trained) -> None:
    store, env = cluster
    folder, labels = scans
    # not current: a worker still warming up would load it before it is tampered with
    version = publish(store, trained, promote="never")
    key = f"models/v{version:04d}/model.keras"
    store.put(key, store.get(key)[:-1] + b"!")
    names = [str(folder / n) for n in sorted(labels)[:5]]
    records = results_of(submit(names, env, "--model", str(version), "--wait"), env)
    assert len(records) == 5
    assert all("does not match its registered sha256" in r["error"] for r in records)


def test_worker_health_and_metrics(redis_url, trained, file_store, scans, tmp_path) -> None:
    """/livez while running; /readyz only once a model is published; /metrics counts images."""
    env = {"SCANDIGITS_BROKER_URL": redis_url, "SCANDIGITS_STORE": file_store.url}
    port = local.free_port()
    queue.connect(redis_url)
    processes = local.start_workers(1, env, tmp_path / "logs", [port])

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    try:
        local.wait_ready(processes, tmp_path / "logs")
        assert get("/livez") == (200, "ok\n")
        status, reason = get("/readyz")
        assert status == 503 and "no model" in reason
        publish(file_store, trained)
        assert get("/readyz") == (200, "ok\n")
        folder, labels = scans
        names = sorted(labels)[:12]
        result = cli("submit", *(str(folder / n) for n in names), "--wait", env=env)
        assert result.returncode == 0, result.stderr
        status, text = get("/metrics")
        assert status == 200
        assert 'scandigits_images_total{outcome="read"} 12.0' in text
        assert 'scandigits_stage_seconds_count{stage="preprocess"} 1.0' in text
        assert "scandigits_queue_wait_seconds_count 1.0" in text
        assert "scandigits_model_version 1.0" in text
    finally:
        local.stop_workers(processes)


def test_lost_messages_are_found_and_resumed(redis_url, worker_env, scans, tmp_path):
    """The store is the source of truth: chunks Redis lost are reported and re-queued."""
    env = worker_env
    folder, labels = scans
    names = sorted(labels)[:10]
    batch = submit([str(folder / n) for n in names], env, "--chunk-size", "4")

    def now() -> dict:
        return status(batch, env)

    assert now()["state"] == "queued" and "lost_chunks" not in now()
    redis.Redis.from_url(redis_url).delete(queue.app.conf.task_default_queue)  # Redis loses them
    report = now()
    assert report["state"] == "stalled" and report["lost_chunks"] == [0, 1, 2]
    resumed = cli("resume", batch, env=env)
    assert resumed.returncode == 0 and "re-queued 3 chunks" in resumed.stderr
    assert now()["state"] == "queued"
    assert "nothing to re-queue" in cli("resume", batch, env=env).stderr  # all queued again

    processes = local.start_workers(1, env, tmp_path / "logs")
    try:
        wait_done(batch, env, "resumed batch did not finish")
    finally:
        local.stop_workers(processes)
    records = results_of(batch, env)
    assert sorted(Path(r["source"]).name for r in records) == names  # each image exactly once


def test_poison_image_is_marked_failed_and_the_batch_completes(
    redis_url, worker_env, file_store, scans, tmp_path
):
    """An image that crashes the worker process whenever it is read (here a SIGSEGV, as from a
    decoder bug): its chunk comes back and is read one image at a time, the image in hand at
    the second crash gets an error, every other image of the chunk and the batch is read, and
    the worker lives on."""
    from worker.tasks import CRASHED

    env = worker_env
    folder, labels = scans
    names = sorted(labels)[:48]
    client = redis.Redis.from_url(redis_url)
    processes = local.start_workers(1, env, tmp_path / "logs")
    worker = processes[0]
    try:
        local.wait_ready(processes, tmp_path / "logs")
        batch, pipe = submit_held(file_store, folder, names, 0, env, 24)
        task = queue.task_id(batch, 0)
        attempts = f"scandigits:attempts:{task}"
        try:
            for crash in (1, 2):
                deadline = time.monotonic() + 60
                while int(client.get(attempts) or 0) < crash:  # the last crashed process is gone
                    assert time.monotonic() < deadline, f"chunk 0 was not redelivered ({crash})"
                    time.sleep(0.01)
                held = reading(pipe)  # and chunk 0 is in hand again
                children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text()
                for child in children.split():
                    os.kill(int(child), signal.SIGSEGV)
                os.close(held)
            wait_done(batch, env, "batch with a poison chunk did not finish")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_bookkeeping(client, task, tmp_path / 'logs')}") from exc
        assert worker.poll() is None, "the worker survives its pool process crashing"
    finally:
        local.stop_workers(processes)
    records = results_of(batch, env)
    assert [Path(r["source"]).name for r in records] == names
    assert records[0]["error"] == CRASHED
    assert all(r["error"] is None for r in records[1:])


def _bookkeeping(client: redis.Redis, task: str, logs: Path) -> str:
    """A chunk's crash bookkeeping in Redis and the end of the worker's log, for a failure."""
    found = {name: client.get(f"scandigits:{name}:{task}") for name in ("attempts", "reading")}
    found["crashed"] = client.smembers(f"scandigits:crashed:{task}")
    log = (logs / "worker-0.log").read_text(errors="replace").splitlines()[-20:]
    return f"{found}\n" + "\n".join(log)


def test_sigterm_finishes_the_chunk_in_hand_and_takes_no_more(
    redis_url, worker_env, file_store, scans, tmp_path
):
    env = worker_env
    folder, labels = scans
    names = sorted(labels)
    processes = local.start_workers(1, env, tmp_path / "logs")
    local.wait_ready(processes, tmp_path / "logs")
    batch, pipe = submit_held(file_store, folder, names, 0, env, 48)
    held = reading(pipe)
    processes[0].terminate()
    os.set_blocking(held, True)
    with os.fdopen(held, "wb") as image:
        image.write((folder / pipe.name).read_bytes())
    assert processes[0].wait(timeout=60) == 0
    document = json.loads(file_store.get(batches.chunk_key(batch, 0)))
    assert all(r["error"] is None for r in document["records"]), "the chunk in hand was read"
    assert not file_store.exists(batches.chunk_key(batch, 1)), "no new chunk was taken"
    assert queue.pending(batch, range(2)) == {1}
    redis.Redis.from_url(redis_url).delete(queue.app.conf.task_default_queue)  # none for others


def test_redis_wiped_mid_batch_is_stalled_then_resumed(trained, file_store, scans, tmp_path):
    """Redis stopped mid-batch and started again empty: the workers reconnect, status shows
    the batch stalled (unless a worker has re-queued its chunks already), and the workers
    complete it by themselves with every input exactly once."""
    publish(file_store, trained)
    folder, labels = scans
    names = sorted(labels)
    port = local.free_port()
    with local.redis(tmp_path / "redis-1", port) as url:
        env = {"SCANDIGITS_BROKER_URL": url, "SCANDIGITS_STORE": file_store.url}
        processes = local.start_workers(1, env, tmp_path / "logs")
        try:  # the chunks wait in the queue while the worker starts
            submitted = cli(
                "submit", *(str(folder / n) for n in names), "--chunk-size", "12", env=env
            )
            assert submitted.returncode == 0, submitted.stderr
            batch = submitted.stdout.strip()
            deadline = time.monotonic() + 60
            while not file_store.exists(batches.chunk_key(batch, 0)):
                assert time.monotonic() < deadline
                time.sleep(0.02)
        except BaseException:
            local.stop_workers(processes)
            raise
    try:
        with local.redis(tmp_path / "redis-2", port):  # same address, nothing in it
            report = status(batch, env)
            if report["state"] == "stalled":
                assert report["chunks_done"] + len(report["lost_chunks"]) == 8
            wait_done(batch, env, "the worker did not re-queue the lost chunks")
    finally:
        local.stop_workers(processes)
    records = results_of(batch, env)
    assert sorted(Path(r["source"]).name for r in records) == names


class FlakyProxy(Proxy):
    """An HTTP proxy in front of the S3 server that answers a share of requests with 503 and
    delays the rest, as an overloaded or distant object store would."""

    def __init__(self, upstream: str, fail: float, delay: float) -> None:
        self.fail, self.delay = fail, delay
        self.random = random.Random(0)
        self.failed = self.forwarded = 0
        super().__init__(upstream, _FlakyHandler)


class _FlakyHandler(ProxyHandler):
    server: FlakyProxy

    def forward(self) -> None:
        body = self.body()
        if self.server.random.random() < self.server.fail:
            self.server.failed += 1
            self.relay(503, [], b"")
            return
        time.sleep(self.server.delay)
        self.server.forwarded += 1
        self.relay(*self.pass_on(body, dict(self.headers)))


def test_batch_completes_through_a_flaky_store(s3_endpoint, trained, redis_url, scans, tmp_path):
    """A fifth of all S3 requests fail with 503 and the rest come 20 ms late: uploads, reads,
    writes and the merge are retried, and the results are complete and right."""
    make_bucket("flaky")
    proxy = FlakyProxy(s3_endpoint, fail=0.2, delay=0.02)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
    store_url = "s3://flaky/data"
    publish(open_store(store_url), trained)  # straight to the server
    env = {
        "SCANDIGITS_BROKER_URL": redis_url,
        "SCANDIGITS_STORE": store_url,
        "AWS_ENDPOINT_URL": endpoint,
    }
    folder, labels = scans
    names = sorted(labels)[:40]
    queue.connect(redis_url)
    processes = local.start_workers(2, env, tmp_path / "logs")
    try:
        submitted = cli(
            "submit", *(str(folder / n) for n in names), "--chunk-size", "8", "--wait", env=env
        )
        assert submitted.returncode == 0, submitted.stderr
        records = results_of(submitted.stdout.strip(), env)
    finally:
        local.stop_workers(processes)
        proxy.shutdown()
    assert proxy.failed > 10 and proxy.forwarded > 100
    assert sorted(Path(r["source"]).name for r in records) == names
    assert all(r["error"] is None for r in records)


def test_unloadable_model_gives_errors_not_a_stuck_batch(cluster, scans, tmp_path) -> None:
    """A model registered with its right sha256 that Keras' safe mode refuses (a Lambda layer)
    fails the images pinned to it, each with the reason, and the batch finishes."""
    from tests.test_registry import _lambda_model
    from trainer import registry

    store, env = cluster
    folder, labels = scans
    model = _lambda_model(tmp_path / "lambda.keras")
    version, _ = registry.publish(store, model, {"test_accuracy": 0.5}, "never")
    names = [str(folder / n) for n in sorted(labels)[:5]]
    records = results_of(submit(names, env, "--model", str(version), "--wait"), env)
    assert len(records) == 5
    assert all(
        r["error"].startswith("model unavailable: ")
        and "cannot be loaded safely: Requested the deserialization of a `Lambda` layer"
        in r["error"]
        for r in records
    ), records[0]["error"]


def test_workers_read_only_with_trusted_models(redis_url, trained, file_store, scans, tmp_path):
    """Workers given SCANDIGITS_TRUSTED_MODELS read with a listed model and fail the images
    pinned to one that is registered in the store but not listed."""
    import hashlib

    from tests.test_registry import _lambda_model
    from trainer import registry

    publish(file_store, trained)
    untrusted, _ = registry.publish(
        file_store, _lambda_model(tmp_path / "lambda.keras"), {"test_accuracy": 0.5}, "never"
    )
    env = {
        "SCANDIGITS_BROKER_URL": redis_url,
        "SCANDIGITS_STORE": file_store.url,
        "SCANDIGITS_TRUSTED_MODELS": hashlib.sha256(trained[0].read_bytes()).hexdigest(),
    }
    folder, labels = scans
    names = [str(folder / n) for n in sorted(labels)[:4]]
    queue.connect(redis_url)
    processes = local.start_workers(1, env, tmp_path / "logs")
    try:
        local.wait_ready(processes, tmp_path / "logs")
        refused = submit(names, env, "--model", str(untrusted), "--wait")
        trusted = submit(names, env, "--wait")
    finally:
        local.stop_workers(processes)
    assert all(
        r["error"].startswith("model unavailable: ")
        and "is not in SCANDIGITS_TRUSTED_MODELS" in r["error"]
        for r in results_of(refused, env)
    )
    assert all(r["error"] is None for r in results_of(trusted, env))
