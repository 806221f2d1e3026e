"""The Celery app on Redis: JSON-only messages, acks after the work is written, one at a time."""

from __future__ import annotations

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


def enqueue(tasks: list[list[Any]]) -> None:
    """Publish one chunk task per argument list over a single broker connection."""
    with app.connection_for_write() as connection:
        for args in tasks:
            app.send_task(TASK, args=args, connection=connection)
