"""Shared fixtures: MNIST on disk, a real Redis server, an S3 API server, a small trained model."""

from __future__ import annotations

import http.client
import http.server
import itertools
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trainer import mnist, registry, train
from trainer.storage import Store, open_store
from worker import local, queue

ROOT = Path(__file__).resolve().parents[1]
_buckets = itertools.count()
MNIST_DIR = Path(os.environ.get("SCANDIGITS_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts Redis or the S3 server is e2e, whatever its module says."""
    for item in items:
        if {"redis_url", "s3_endpoint", "s3_store"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The four MNIST IDX files (SCANDIGITS_MNIST_DIR); the suite cannot run without them."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST not found at {MNIST_DIR}; set SCANDIGITS_MNIST_DIR")
    return MNIST_DIR


@pytest.fixture(scope="session")
def digits(mnist_dir: Path) -> mnist.Mnist:
    """MNIST loaded once for the session."""
    return mnist.load(mnist_dir)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server process on loopback for the whole session."""
    with local.redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 API server over HTTP, with boto3 pointed at it through the AWS_* variables."""
    from moto.server import ThreadedMotoServer

    port = local.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def make_bucket(name: str) -> None:
    """Create a bucket on the S3 server the AWS_* variables point at."""
    import boto3

    boto3.client("s3").create_bucket(Bucket=name)


@pytest.fixture
def s3_store(s3_endpoint: str) -> Store:
    """A fresh bucket per test."""
    bucket = f"bucket-{next(_buckets)}"
    make_bucket(bucket)
    return open_store(f"s3://{bucket}/data")


@pytest.fixture(scope="session")
def trained(digits: mnist.Mnist, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A seed MLP trained for 2 epochs (seconds on 2 cores), saved to disk with its metadata."""
    model, metadata = train.train("mlp", digits, epochs=2, log=lambda _: None)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path, metadata


def publish(store: Store, trained: tuple[Path, dict[str, Any]], promote: str = "always") -> int:
    """Publish the session's trained model into `store` (by default making it current)."""
    path, metadata = trained
    return registry.publish(store, path, metadata, promote)[0]


@pytest.fixture
def file_store(tmp_path: Path) -> Store:
    """An empty local store."""
    store = open_store(f"file://{tmp_path / 'store'}")
    store.check()
    return store


@pytest.fixture
def worker_env(redis_url: str, trained: tuple[Path, dict], file_store: Store) -> dict[str, str]:
    """The environment for workers and commands on `file_store` and the session's Redis, the
    session's model published as current, and this process's queue connected to that Redis."""
    publish(file_store, trained)
    queue.connect(redis_url)
    return {"SCANDIGITS_BROKER_URL": redis_url, "SCANDIGITS_STORE": file_store.url}


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run `scandigits ARGS` as a user would (in `cwd`, default the temporary folder),
    capturing stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or tempfile.gettempdir(),
    )


_PEAK = (
    "import json, resource, subprocess, sys\n"
    "run = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "print(json.dumps([run.returncode, run.stdout, run.stderr, peak]))\n"
)


def cli_peak(
    *args: str, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess, int]:
    """Run `scandigits ARGS` as `cli` does, without the variables in `unset`; return its
    result and its peak RSS in bytes (measured by a fresh wrapper process, whose only child
    it is)."""
    environment = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    command = [sys.executable, "-c", _PEAK, sys.executable, "-m", "worker", *args]
    done = subprocess.run(
        command,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tempfile.gettempdir(),
    )
    code, stdout, stderr, peak = json.loads(done.stdout)
    return subprocess.CompletedProcess(args, code, stdout, stderr), peak


class Proxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy on loopback in front of `upstream` (the S3 server); what it does with each
    request is its handler's `forward` (a ProxyHandler)."""

    def __init__(self, upstream: str, handler: type[ProxyHandler]) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        super().__init__(("127.0.0.1", 0), handler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Passes each request on unchanged; subclasses override `forward` to fail, delay or alter
    some, with `body`, `pass_on` and `relay`."""

    protocol_version = "HTTP/1.1"
    server: Proxy

    def forward(self) -> None:
        self.relay(*self.pass_on(self.body(), dict(self.headers)))

    def body(self) -> bytes | None:
        """The request's body, read once."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def pass_on(
        self, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request upstream; return the reply's status, headers and body."""
        upstream = http.client.HTTPConnection(
            self.server.upstream.hostname, self.server.upstream.port, timeout=30
        )
        upstream.request(self.command, self.path, body, headers)
        reply = upstream.getresponse()
        return reply.status, reply.getheaders(), reply.read()

    def relay(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        """Answer the client with `status`, `headers` and `data`."""
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self) -> None:
        self.forward()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _dispatch

    def log_message(self, *_: object) -> None:
        """Quiet."""
