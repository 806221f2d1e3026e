"""The Celery app on Redis: JSON-only messages, acks after the work is written, one at a time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from functools import cache
from typing import Any

import redis
from celery import Celery
from kombu.utils.url import maybe_sanitize_url

from trainer.errors import UserError

TASK = "scandigits.process_chunk"

app = Celery("scandigits", set_as_current=True)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_proc_alive_timeout=120,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 3600},
    imports=["worker.tasks"],
)


def connect(broker_url: str) -> None:
    """Point the app at `broker_url` and fail fast, in one line, if Redis is not there."""
    ping(broker_url)
    app.conf.broker_url = broker_url


def ping(broker_url: str) -> None:
    """Raise a one-line UserError unless Redis at `broker_url` answers."""
    shown = maybe_sanitize_url(broker_url)
    try:
        redis.Redis.from_url(broker_url, socket_connect_timeout=3, socket_timeout=3).ping()
    except ValueError as exc:
        raise UserError(f"bad broker URL {shown!r}: {exc}") from exc
    except redis.RedisError as exc:
        raise UserError(
            f"cannot reach Redis at {shown} ({exc}); start redis-server "
            "or set SCANDIGITS_BROKER_URL"
        ) from exc


def task_id(batch_id: str, index: int) -> str:
    """The id of a chunk's task, "<batch>:<chunk>": how the broker's holdings are matched."""
    return f"{batch_id}:{index}"


def enqueue(tasks: list[list[Any]]) -> None:
    """Publish one chunk task per argument list (batch id and chunk index first) over a single
    broker connection."""
    with app.connection_for_write() as connection:
        for args in tasks:
            app.send_task(TASK, args=args, task_id=task_id(args[0], args[1]), connection=connection)


@cache
def _client(url: str) -> redis.Redis:
    """One client (and connection pool) per broker URL, not one per call."""
    return redis.Redis.from_url(url, socket_timeout=10)


def starts(task: str, step: int = 1) -> int:
    """Count a start of a task outside its message (step -1 takes one back); return the count,
    1 on the first delivery."""
    key = f"scandigits:attempts:{task}"
    with _client(app.conf.broker_url).pipeline() as pipe:
        count, _ = pipe.incrby(key, step).expire(key, 7 * 24 * 3600).execute()
    return int(count)


def pending(batch_id: str, chunks: Iterable[int], running_for: float) -> set[int]:
    """Those of a batch's `chunks` the broker still holds: waiting in the queue, or delivered
    to a worker less than `running_for` seconds ago and not yet acknowledged (Redis keeps those
    in the "unacked" hash, with delivery times in "unacked_index"). Older deliveries belong to
    a worker that died: a live one finishes or abandons a chunk within its time limit."""
    client = _client(app.conf.broker_url)
    queue = app.conf.task_default_queue
    since = time.time() - running_for
    delivered = client.zrange("unacked_index", 0, -1, withscores=True)
    fresh = {tag for tag, at in delivered if at > since}
    messages = [raw for tag, raw in client.hgetall("unacked").items() if tag in fresh]
    # kombu keeps one list per priority step: the queue itself and "<queue>\x06\x16<n>"
    for key in [queue.encode(), *client.scan_iter(match=f"{queue}\x06\x16*".encode())]:
        messages += client.lrange(key, 0, -1)
    ids = set()
    for raw in messages:
        try:
            message = json.loads(raw)
            ids.add((message[0] if isinstance(message, list) else message)["headers"]["id"])
        except (ValueError, TypeError, KeyError, IndexError):
            continue
    return {index for index in chunks if task_id(batch_id, index) in ids}
