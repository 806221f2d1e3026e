"""The broker: its address never printed with its password; what it holds, read from a view a
second old at most, and never a chunk called lost on an old view."""

from __future__ import annotations

import os
import secrets
import signal
import threading

import pytest

from tests.conftest import cli
from worker import queue
from worker.manifest import Chunk

pytestmark = pytest.mark.e2e  # starts Redis, the S3 server, workers or the CLI


@pytest.mark.parametrize("password", ["Kx/Zq9", "Kx#Zq9", "Kx?Zq9"])
@pytest.mark.parametrize("command", [("resume", "b1"), ("worker",)])
def test_a_broker_password_is_never_printed(password, command, tmp_path) -> None:
    """A password with an unescaped / # or ? breaks the URL: one line that shows none of it."""
    env = {
        "SCANDIGITS_BROKER_URL": f"redis://:{password}@127.0.0.1:6390/0",
        "SCANDIGITS_STORE": f"file://{tmp_path}",
    }
    result = cli(*command, env=env)
    shown = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in shown
    assert "Kx" not in shown and "Zq9" not in shown
    assert "bad broker URL" in result.stderr.strip().splitlines()[-1]


def test_pending_answers_from_a_recent_view_and_looks_afresh_for_the_rest(
    redis_url, monkeypatch
) -> None:
    """A status call reads the queue once a second, not once a call, but a chunk the view does
    not show held is looked up again before it is called lost."""
    queue.connect(redis_url)
    batch = f"view-{secrets.token_hex(4)}"
    chunks = [Chunk(batch, n, 2, (), 1, 0.5, "2026-01-01T00:00:00+00:00") for n in range(2)]
    monkeypatch.setattr(queue, "VIEW_SECONDS", 60.0)
    try:
        queue.enqueue(chunks[:1])
        assert queue.pending(batch, [0]) == {0}
        queue.enqueue(chunks[1:])
        assert queue.pending(batch, [0, 1]) == {0, 1}, "queued after the view: read afresh"
        broker = queue.client()
        for raw in broker.lrange(
            queue.app.conf.task_default_queue, 0, -1
        ):  # taken off by another process
            if batch.encode() in raw:
                broker.lrem(queue.app.conf.task_default_queue, 1, raw)
        assert queue.pending(batch, [0]) == {0}, "the view still answers for what it shows"
        monkeypatch.setattr(queue, "VIEW_SECONDS", 0.0)
        assert queue.pending(batch, [0, 1]) == set()
        queue.enqueue(chunks)
        monkeypatch.setattr(queue, "VIEW_SECONDS", 60.0)
        assert queue.pending(batch, [0, 1]) == {0, 1}
        assert queue.discard(batch) == 2
        assert queue.pending(batch, [0, 1]) == set(), "this process's discard drops the view"
    finally:
        queue.discard(batch)


def test_a_process_forked_while_the_pool_lock_is_held_reaches_redis(redis_url) -> None:
    """A worker's pool process is forked while its heartbeat thread may be inside the Redis
    client (the connection pool's lock held, as here): the new process reaches Redis on its own
    connection instead of waiting for ever on a lock no thread of it will release (its chunk
    never started)."""
    queue.connect(redis_url)
    queue.client().ping()
    held, forked = threading.Event(), threading.Event()

    def heartbeat() -> None:
        with queue.client().connection_pool._lock:  # held for a moment, as when it beats
            held.set()
            forked.wait()

    beat = threading.Thread(target=heartbeat)
    beat.start()
    held.wait()
    child = os.fork()
    if child == 0:  # the pool process: ten seconds to answer, or SIGALRM ends it
        code = 1
        try:
            signal.alarm(10)
            queue.client().ping()
            code = 0
        finally:
            os._exit(code)
    forked.set()
    beat.join()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
