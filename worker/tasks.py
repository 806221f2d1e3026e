"""The chunk task: fetch → decode → preprocess → infer → write the chunk → finalize the batch."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cache, lru_cache, partial
from typing import Any

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded

from trainer.errors import AlreadyExists, RegistryError, StoreError, UserError
from trainer.storage import Store, open_store
from worker import batches, metrics, queue, results, settings
from worker.forms.templates import Template
from worker.manifest import Chunk, Item
from worker.queue import TASK, app
from worker.reading import inference, pipeline

log = logging.getLogger(__name__)
# Starts of one chunk before the images it has not read are marked failed. A chunk whose
# processing kills the worker process (a decoder crash, memory) comes back (through
# task_reject_on_worker_lost, or worker.recovery) and is then read one image at a time, so the
# image in hand at the next death is found and only it is marked failed (`_readings`).
MAX_ATTEMPTS = 5
CRASHED = "not read: reading it crashed a worker"


@cache
def _store(url: str) -> Store:
    return open_store(url)


def store() -> Store:
    """The store this worker was started with."""
    return _store(app.conf.scandigits_store)


@signals.worker_process_init.connect
def _warm(**_: Any) -> None:
    """Size thread pools for this process and load the current model, traced for every batch
    size, before the first task."""
    inference.configure_threads(app.conf.worker_concurrency or 1)
    try:
        classifier = inference.classifier(store())
        classifier.warm()
        log.info("worker process %s ready with model %s", os.getpid(), classifier.version)
    except UserError as exc:
        log.warning("no model loaded at start: %s", exc)


@contextmanager
def _counted(task_id: str) -> Iterator[int]:
    """Count this start of a task (outside its message); a store error sends the task to a
    retry with backoff, which is not a start that crashed, so it is taken back (and so is the
    image it had in hand)."""
    starts = queue.starts(task_id)
    try:
        yield starts
    except StoreError:
        queue.starts(task_id, -1)
        queue.reading(task_id, None)
        raise


@app.task(
    name=TASK,
    autoretry_for=(StoreError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def process_chunk(*message: Any) -> None:
    """Read one chunk of images (or pages of a form) in batched forward passes and write its
    results at once. The message is a Chunk's arguments (worker.manifest)."""
    chunk = Chunk.from_args(message)
    batch_id, index, chunk_count, items = chunk.batch, chunk.index, chunk.count, chunk.items
    model, review_below, template = chunk.model, chunk.review_below, chunk.template
    task = queue.task_id(batch_id, index)
    target = store()
    if not target.exists(batches.manifest_key(batch_id)):
        log.warning("batch %s was deleted: chunk %d skipped", batch_id, index)
        return
    if target.exists(batches.chunk_key(batch_id, index)):  # read before: keep what it wrote
        batches.finalize_if_complete(target, batch_id, chunk_count)
        return
    with _counted(task) as starts:
        started, begin = batches.now(), time.perf_counter()
        wait = datetime.fromisoformat(started) - datetime.fromisoformat(chunk.queued)
        metrics.QUEUE_WAIT.observe(max(0.0, wait.total_seconds()))
        form = Template.from_dict(template) if template else None
        readings, seconds = _readings(task, items, model, starts, form)
        records = [
            _record(item, reading, model, review_below, form)
            for item, reading in zip(items, readings, strict=True)
        ]
        document = {
            "batch": batch_id,
            "chunk": index,
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "started": started,
            "finished": batches.now(),
            "seconds": dict(seconds),
            "records": records,
        }
        write = time.perf_counter()
        try:  # the first results written are the chunk's: a start that ran late keeps off them
            target.create(batches.chunk_key(batch_id, index), json.dumps(document).encode())
        except AlreadyExists:
            log.warning("batch %s chunk %d was read meanwhile by another start", batch_id, index)
        seconds["write"] = time.perf_counter() - write
        failed = sum(1 for r in readings if r.error)
        metrics.IMAGES.labels("error").inc(failed)
        metrics.IMAGES.labels("read").inc(len(readings) - failed)
        for stage, spent in seconds.items():
            metrics.STAGE_SECONDS.labels(stage).observe(spent)
        metrics.CHUNK_SECONDS.observe(time.perf_counter() - begin)
        log.info(
            "batch %s chunk %d/%d: %d images in %.2f s",
            batch_id,
            index + 1,
            chunk_count,
            len(items),
            time.perf_counter() - begin,
        )
        if not target.exists(batches.manifest_key(batch_id)):  # deleted while it was read
            target.delete(batches.chunk_key(batch_id, index))
        elif batches.finalize_if_complete(target, batch_id, chunk_count):
            log.info("batch %s finished", batch_id)


def _record(
    item: Item, reading: Any, model: int, below: float, form: Template | None
) -> dict[str, Any]:
    """The result record of one item: an image's, or a page's of the form."""
    where, page = (item.source, item.key), item.page
    if form:
        return results.PageRecord.of(*where, reading, form, model, below, page).to_dict()
    return results.Record.of(*where, reading, model, below, page).to_dict()


def _readings(
    task: str, items: Sequence[Item], model: int, starts: int, template: Template | None
) -> tuple[list[Any], dict[str, float]]:
    """Read the chunk's images (as pages of `template`, if given: pipeline.Form), all at once
    on the first start and one by one after a start that died; or give each the reason it
    could not be read."""
    target = store()
    failed = pipeline.Form if template else pipeline.Reading
    reason, done = None, []
    if starts > MAX_ATTEMPTS:
        reason = f"not read: its chunk crashed or stalled a worker {starts - 1} times"
    else:
        try:
            classifier = inference.classifier(target, model)
            metrics.MODEL_VERSION.set(classifier.version)
            # pages of a file are neighbours: one fetch; an object over the limit is not read
            limit = settings.current().max_bytes
            fetch = lru_cache(maxsize=8)(partial(target.get, limit=limit))

            def read(chunk: Sequence[Item]) -> tuple[list[Any], Counter[str]]:
                if template:
                    return pipeline.read_forms(chunk, lambda i: fetch(i.key), classifier, template)
                return pipeline.read(chunk, lambda i: fetch(i.key), classifier)

            if starts == 1:
                return read(items)
            crashed = queue.culprits(task)
            for i, item in enumerate(items):  # noting the one in hand, should this start die
                if i in crashed:
                    log.error("%s: %s", item.source, CRASHED)
                    done.append(failed(error=CRASHED))
                    continue
                queue.reading(task, i)
                done += read([item])[0]
            queue.reading(task, None)
            return done, {}
        except RegistryError as exc:
            reason = f"model unavailable: {exc}"
        except SoftTimeLimitExceeded:
            reason = "not read: its chunk ran over the time limit"
    log.error("chunk of %d images, %d not read: %s", len(items), len(items) - len(done), reason)
    return done + [failed(error=reason)] * (len(items) - len(done)), {}
