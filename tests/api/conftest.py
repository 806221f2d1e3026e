"""`scandigits serve` as a subprocess on a free port, in front of a real Redis, the file store
or the S3 server, and real `scandigits worker` processes; and clients with tokens."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import make_bucket, publish
from trainer import mnist, samples
from trainer.storage import Store, open_store
from worker import local, queue
from worker.api import tokens

SCANS = 200
IDLE_LIMITS = {  # small, so that tests pass them cheaply
    "SCANDIGITS_MAX_BYTES": "20000",
    "SCANDIGITS_MAX_MEMBERS": "5",
    "SCANDIGITS_MAX_ARCHIVE_BYTES": "50000",
}


# webhooks to the tests' receivers on loopback, sent again soon after a failure
WEBHOOKS = {"SCANDIGITS_WEBHOOK_PRIVATE": "1", "SCANDIGITS_WEBHOOK_BACKOFF": "0.3"}


@dataclass
class Api:
    """A running service: its URL, store and the environment of its processes."""

    url: str
    store: Store
    env: dict[str, str]

    def client(self, *scopes: str, tenant: str = "acme", name: str | None = None) -> httpx.Client:
        """An HTTP client with a new token of `scopes` for `tenant`."""
        _, secret = tokens.create(
            self.store, name or f"t-{time.monotonic_ns()}", list(scopes), tenant
        )
        headers = {"Authorization": f"Bearer {secret}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    """Run `scandigits serve` on a free port with `env` until the block ends; yield its URL
    once /livez answers."""
    port = local.free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker", "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tempfile.gettempdir(),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()  # uvicorn shuts down, then ends by the signal it caught
        assert process.wait(timeout=30) == -signal.SIGTERM, log.read_text()
        assert "Finished server process" in log.read_text()


def _store(kind: str, folder: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "file":
        store = open_store(f"file://{folder / 'store'}")
    else:
        request.getfixturevalue("s3_endpoint")
        bucket = f"api-{folder.name.lower().replace('_', '-')}"
        make_bucket(bucket)
        store = open_store(f"s3://{bucket}/data")
    store.check()
    return store


@pytest.fixture(scope="module", params=["file", "s3"])
def service(
    request: pytest.FixtureRequest,
    redis_url: str,
    trained: tuple[Path, dict],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    """The service and two workers on the session's Redis and one store, the model published."""
    folder = tmp_path_factory.mktemp(f"api-{request.param}")
    store = _store(request.param, folder, request)
    publish(store, trained)
    env = {"SCANDIGITS_BROKER_URL": redis_url, "SCANDIGITS_STORE": store.url, **WEBHOOKS}
    queue.connect(redis_url)
    workers = local.start_workers(2, env, folder / "logs")
    try:
        with serving(env, folder / "serve.log") as url:
            local.wait_ready(workers, folder / "logs")
            yield Api(url, store, env)
    finally:
        local.stop_workers(workers)


@pytest.fixture(scope="module")
def idle(
    redis_url: str, trained: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The service with small limits and no worker (what it queues stays queued), on a file
    store and a Redis database of its own."""
    folder = tmp_path_factory.mktemp("api-idle")
    store = open_store(f"file://{folder / 'store'}")
    store.check()
    publish(store, trained)
    broker = re.sub(r"/\d+$", "/5", redis_url)
    env = {"SCANDIGITS_BROKER_URL": broker, "SCANDIGITS_STORE": store.url, **IDLE_LIMITS}
    with serving(env, folder / "serve.log") as url:
        yield Api(url, store, env)
    redis.Redis.from_url(broker).flushdb()


@pytest.fixture(scope="module")
def scans(digits: mnist.Mnist, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """SCANS generated scans of MNIST test digits, and their labels."""
    folder = tmp_path_factory.mktemp("api-scans")
    return folder, samples.write_scans(folder, digits.x_test, digits.y_test, SCANS, seed=11)


def files(folder: Path, names: list[str]) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (name, (folder / name).read_bytes())) for name in names]


def done(client: httpx.Client, batch: str) -> dict:
    """Poll the batch until it is done (two minutes at most); its report."""
    deadline = time.monotonic() + 120
    while True:
        report = client.get(f"/v1/batches/{batch}")
        assert report.status_code == 200, report.text
        if report.json()["state"] == "done":
            return report.json()
        assert time.monotonic() < deadline, report.json()
        time.sleep(0.3)


def error(reply: httpx.Response, status: int) -> str:
    """The one-line error of a reply that must have `status`."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert list(body) == ["error"] and "\n" not in body["error"], body
    assert "Traceback" not in body["error"]
    return body["error"]
