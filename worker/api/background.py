"""What the service does besides answering requests, each in a thread of its own while it runs:
send the webhooks that are due (worker/webhooks.py) and expire old batches
(worker/retention.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import redis

from trainer.errors import StoreError
from trainer.storage import Store
from worker import retention, webhooks
from worker.api import tokens

log = logging.getLogger(__name__)
SEND_EVERY = 0.5  # s between looks for webhooks that are due
EXPIRE_EVERY = 3600.0  # s between expiries


class _Every(threading.Thread):
    """Runs `work` every `seconds` until stopped; a store or Redis failure is logged and the
    work tried again at the next turn."""

    def __init__(self, seconds: float, work: Callable[[], object], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.seconds, self.work, self.halt = seconds, work, threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.work()
            except (redis.RedisError, StoreError) as exc:
                log.warning("%s: %s; trying again in %.0f s", self.name, exc, self.seconds)
            self.halt.wait(self.seconds)


@contextmanager
def running(store: Store) -> Iterator[None]:
    """The service's background work, for as long as the block runs."""
    deliverer = webhooks.Deliverer(store, partial(tokens.signing_secret, store))
    threads = [
        _Every(SEND_EVERY, deliverer.tick, "webhooks"),
        _Every(EXPIRE_EVERY, partial(retention.expire, store), "retention"),
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for thread in threads:
            thread.halt.set()
        for thread in threads:
            thread.join(timeout=webhooks.TIMEOUT + 5)
