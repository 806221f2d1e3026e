"""The Celery app on Redis: JSON-only messages, acks after the work is written, one at a time."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import redis
from celery import Celery
from kombu.utils.url import maybe_sanitize_url

from trainer.errors import UserError
from worker.manifest import Chunk

TASK = "scandigits.process_chunk"
LAPSE = 10  # s a worker's heartbeat lasts: a worker silent this long is gone (killed, stopped)
GRACE = 15.0  # s a delivery may have no holder on record (being handed to a worker)
HELD_FOR = 7 * 24 * 3600  # s a holder record is kept: longer than any chunk runs
_ALIVE, _HOLDER = "scandigits:alive:", "scandigits:holder:"
_READING, _CRASHED = "scandigits:reading:", "scandigits:crashed:"
VIEW_SECONDS = 1.0  # how old a view of the tasks the broker holds may answer `pending`
_views: dict[str, tuple[float, frozenset[str]]] = {}  # broker URL: (monotonic time, task ids)

app = Celery("scandigits", set_as_current=True)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_acks_on_timeout=False,  # a chunk killed at its hard time limit goes back to the queue
    worker_prefetch_multiplier=1,
    worker_proc_alive_timeout=120,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 3600},
    imports=["worker.tasks", "worker.recovery"],
)


def connect(broker_url: str) -> None:
    """Point the app at `broker_url` and fail fast, in one line, if Redis is not there."""
    ping(broker_url)
    app.conf.broker_url = broker_url


def _shown(broker_url: str) -> str:
    """`broker_url` as it may be printed, its password masked; a URL whose parts do not parse
    (a password with an unescaped / or #) is a UserError that prints none of it."""
    try:
        urllib.parse.urlsplit(broker_url).port  # noqa: B018 (parses the address, or raises)
    except ValueError:
        raise UserError(
            "bad broker URL (not shown: it may hold a password): escape / # ? @ : in a "
            "password as %2F %23 %3F %40 %3A"
        ) from None
    return maybe_sanitize_url(broker_url)


def ping(broker_url: str) -> None:
    """Raise a one-line UserError unless Redis at `broker_url` answers."""
    shown = _shown(broker_url)
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


def enqueue(chunks: Iterable[Chunk]) -> None:
    """Publish one chunk task per message over a single broker connection."""
    with app.connection_for_write() as connection:
        for chunk in chunks:
            args, task = chunk.to_args(), task_id(chunk.batch, chunk.index)
            app.send_task(TASK, args=args, task_id=task, connection=connection)


@cache
def _client(url: str, pid: int) -> redis.Redis:
    """One client (and connection pool) per broker URL and process, not one per call. A pool
    process forked while the worker's heartbeat held the pool's lock inherits it held, and
    redis-py takes it to reset an inherited pool: the process waited on it for ever, its
    chunk unread. Its own client shares nothing with its parent's."""
    return redis.Redis.from_url(url, socket_timeout=10)


def client() -> redis.Redis:
    """The Redis the app's broker is on, this process's own connection to it."""
    return _client(app.conf.broker_url, os.getpid())


def starts(task: str, step: int = 1) -> int:
    """Count a start of a task outside its message (step -1 takes one back); return the count,
    1 on the first delivery."""
    key = f"scandigits:attempts:{task}"
    with client().pipeline() as pipe:
        count, _ = pipe.incrby(key, step).expire(key, 7 * 24 * 3600).execute()
    return int(count)


def culprits(task: str) -> set[int]:
    """The items of a task that were being read when a start of it died (see `reading`): the
    one in hand at the last death joins those found before."""
    broker = client()
    last = broker.getdel(f"{_READING}{task}")
    if last is not None:
        broker.pipeline().sadd(f"{_CRASHED}{task}", last).expire(
            f"{_CRASHED}{task}", HELD_FOR
        ).execute()
    return {int(i) for i in broker.smembers(f"{_CRASHED}{task}")}


def reading(task: str, item: int | None) -> None:
    """Note which item of a task is in hand (None: the task is through them all)."""
    key = f"{_READING}{task}"
    if item is None:
        client().delete(key)
    else:
        client().set(key, item, ex=HELD_FOR)


def holder() -> str:
    """This worker process's name in heartbeats and chunk holdings: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat() -> None:
    """Say this worker process is alive for the next LAPSE seconds."""
    client().set(f"{_ALIVE}{holder()}", 1, ex=LAPSE)


def turn(name: str, seconds: float) -> bool:
    """Whether this worker process takes the cluster's turn at `name` for the next `seconds`."""
    key, ms = f"scandigits:turn:{name}", int(seconds * 1000)
    return bool(client().set(key, holder(), nx=True, px=ms))


def hold(task: str) -> None:
    """Record this worker process as the holder of a task it was just handed, and when."""
    client().set(f"{_HOLDER}{task}", f"{holder()} {time.time()}", ex=HELD_FOR)


@dataclass(frozen=True)
class Delivery:
    """A task message handed to a worker and not yet acknowledged: its delivery tag in Redis,
    task id and when it was handed out; `live` if a worker that is alive holds it, or it was
    handed out too recently for its holder to be on record."""

    tag: bytes
    task: str
    at: float
    live: bool


def deliveries() -> list[Delivery]:
    """The broker's unacknowledged deliveries (Redis keeps them in the "unacked" hash, with
    delivery times in "unacked_index"), each checked against its holder's heartbeat."""
    broker = client()
    at = dict(broker.zrange("unacked_index", 0, -1, withscores=True))
    found = [(tag, _task_id(raw)) for tag, raw in broker.hgetall("unacked").items()]
    found = [(tag, task) for tag, task in found if task is not None and tag in at]
    holders = broker.mget([f"{_HOLDER}{task}" for _, task in found]) if found else []
    claims = [_claim(value) for value in holders]
    alive = broker.mget([f"{_ALIVE}{who}" for who, _ in claims]) if claims else []
    now = time.time()
    return [
        Delivery(
            tag, task, at[tag], bool(beating) if since >= at[tag] - 1 else now - at[tag] < GRACE
        )
        for (tag, task), (_, since), beating in zip(found, claims, alive, strict=True)
    ]


def restore(tag: bytes) -> None:
    """Put a delivery back at the head of its queue (as kombu does when a worker is lost), once:
    a delivery already acknowledged or restored is left alone."""
    with app.connection_for_write() as connection:
        connection.default_channel.qos.restore_by_tag(tag)


def pending(batch_id: str, chunks: Iterable[int]) -> set[int]:
    """Those of a batch's `chunks` the broker still holds for a worker: waiting in the queue,
    or delivered and held by a live worker (Delivery.live).

    A view of the broker up to VIEW_SECONDS old answers when it shows every one of `chunks`
    held, so a service answering many status calls reads the whole queue about once a second,
    not once a call; otherwise the broker is read afresh: no chunk is called lost on an old
    view, and one lost since is noticed within VIEW_SECONDS."""
    tasks = {index: task_id(batch_id, index) for index in chunks}
    url = app.conf.broker_url
    taken, held = _views.get(url, (float("-inf"), frozenset()))
    if time.monotonic() - taken > VIEW_SECONDS or not held.issuperset(tasks.values()):
        taken, held = time.monotonic(), _held()
        _views[url] = taken, held
    return {index for index, task in tasks.items() if task in held}


def _held() -> frozenset[str]:
    """The ids of the tasks the broker holds for a worker (see `pending`)."""
    broker = client()
    ids = {d.task for d in deliveries() if d.live}
    for key in _lists(broker):
        ids.update(filter(None, map(_task_id, broker.lrange(key, 0, -1))))
    return frozenset(ids)


def discard(batch_id: str) -> int:
    """Take a batch's chunk tasks waiting in the queue off it; return how many were taken.
    Those already handed to a worker stay with it."""
    broker = client()
    taken = 0
    _views.pop(app.conf.broker_url, None)
    for key in _lists(broker):
        for raw in broker.lrange(key, 0, -1):
            task = _task_id(raw)
            if task is not None and task.rpartition(":")[0] == batch_id:
                taken += broker.lrem(key, 1, raw)
    return taken


def _lists(broker: redis.Redis) -> list[bytes]:
    """The Redis lists of the queue: kombu keeps one per priority step, the queue itself and
    "<queue>\\x06\\x16<n>"."""
    queue = app.conf.task_default_queue
    return [queue.encode(), *broker.scan_iter(match=f"{queue}\x06\x16*".encode())]


def _task_id(raw: bytes) -> str | None:
    """The task id in a raw message (or in an unacked entry: [message, exchange, routing key])."""
    try:
        message = json.loads(raw)
        return (message[0] if isinstance(message, list) else message)["headers"]["id"]
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def _claim(value: bytes | None) -> tuple[str, float]:
    """A holder record's worker and time (no worker, time 0 when there is none)."""
    who, _, since = (value or b"").decode().partition(" ")
    try:
        return who, float(since)
    except ValueError:
        return "", 0.0
