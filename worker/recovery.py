"""Chunks that lose their worker are re-queued without a person.

Each worker publishes a heartbeat (a Redis key that lapses after queue.LAPSE seconds unless
renewed) and records itself as the holder of every chunk it is handed. Every SWEEP seconds one
worker of the cluster (whichever takes the sweep's lock) puts back in the queue each delivery
whose holder's heartbeat has lapsed: a worker killed with its pool (kill -9, OOM) or stopped
for good with its connection still open (a lost node). Every BATCHES seconds it also looks at
the open batches in the store and re-queues their chunks that are neither done, queued nor held
(Redis restarted empty, a message lost, a task that gave up), as `scandigits resume` would.

A chunk that runs again only finalizes, its first results kept (see `worker.tasks`), so a
re-queue is safe; one that is still being worked on is never re-queued, since its holder's
heartbeat goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from celery import signals

from trainer.errors import StoreError
from trainer.storage import open_store
from worker import batches, queue
from worker.queue import app

log = logging.getLogger(__name__)
BEAT = 2.0  # s between heartbeats: several fit in a heartbeat's life
SWEEP = 5.0  # s between sweeps of the broker's deliveries
BATCHES = 30.0  # s between sweeps of the open batches in the store


def sweep() -> list[str]:
    """Put back in the queue every delivery no live worker holds; return their task ids."""
    lost = [d for d in queue.deliveries() if not d.live]
    for delivery in lost:
        queue.restore(delivery.tag)
        log.warning("re-queued %s: its worker stopped beating", delivery.task)
    return [d.task for d in lost]


def sweep_batches(url: str) -> dict[str, list[int]]:
    """Re-queue the lost chunks of every open batch in the store at `url` (and finish those
    whose chunks are all in); return the chunks re-queued per batch."""
    store = open_store(url)
    requeued = {}
    for batch_id in batches.open_batches(store, older_than=queue.GRACE):
        lost = batches.resume(store, batch_id)
        if lost:
            log.warning("batch %s: re-queued lost chunks %s", batch_id, lost)
            requeued[batch_id] = lost
    return requeued


def _beating() -> None:
    while True:
        try:
            queue.beat()
        except redis.RedisError as exc:
            log.warning("heartbeat not sent: %s", exc)
        time.sleep(BEAT)


def _sweeping(url: str) -> None:
    last_batches = float("-inf")
    while True:
        try:
            if queue.turn("sweep deliveries", SWEEP * 0.8):
                sweep()
            if time.monotonic() - last_batches >= BATCHES and queue.turn(
                "sweep batches", BATCHES * 0.8
            ):
                last_batches = time.monotonic()
                sweep_batches(url)
        except (redis.RedisError, StoreError) as exc:
            log.warning("sweep skipped: %s", exc)
        time.sleep(SWEEP)


@signals.worker_ready.connect
def _start(**_: Any) -> None:
    """In the worker's main process, once it consumes: beat, and sweep now and then."""
    queue.beat()
    threading.Thread(target=_beating, name="heartbeat", daemon=True).start()
    url = app.conf.scandigits_store
    threading.Thread(target=_sweeping, args=(url,), name="sweep", daemon=True).start()


@signals.task_received.connect
def _held(request: Any = None, **_: Any) -> None:
    """Record this worker as the holder of each chunk it is handed."""
    queue.hold(request.id)
