"""The tutorial design, for comparison: one Celery task per image, which fetches it, reads it
with the worker's own decode and segmentation, calls Keras `model.predict` on each digit
candidate alone and writes its own result object.

    python -m celery -A benchmarks.naive worker -Q naive    (SCANDIGITS_BROKER_URL, _STORE)

Only those three choices differ from `worker.tasks`: the model is loaded and warmed when each
pool process starts, threads are split between processes, and a reading is chosen the same way.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import numpy as np
from celery import Celery, signals

from trainer import models, registry
from trainer.models import NOT_A_DIGIT
from trainer.storage import Store, open_store
from worker import results
from worker.reading import inference, pipeline

app = Celery("naive", broker=os.environ.get("SCANDIGITS_BROKER_URL"))
app.conf.update(
    task_default_queue="naive",
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    worker_proc_alive_timeout=120,
    worker_concurrency=int(os.environ.get("SCANDIGITS_CONCURRENCY", os.cpu_count() or 1)),
)


class OneByOne:
    """A Keras model behind `pipeline.read`'s classifier interface, predicting one image (and
    one line, with its string reader) a call."""

    def __init__(self, model: Any, version: int) -> None:
        self.version = version
        self.model, self.reader = models.parts(model)
        self.judges_cuts = self.model.output_shape[-1] > NOT_A_DIGIT
        self.reads_lines = self.reader is not None

    def predict(self, images: np.ndarray) -> list[inference.Prediction]:
        """`model.predict` on a batch of one, for each image."""
        found = []
        for probs in self.probabilities(images):
            label = int(probs[:NOT_A_DIGIT].argmax())
            found.append(inference.Prediction(label, float(probs[label])))
        return found

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax rows, `model.predict` on a batch of one for each image."""
        rows = [self.model.predict(image[None], verbose=0)[0] for image in images]
        return np.array(rows).reshape(len(images), self.model.output_shape[-1])

    def read_lines(self, lines: np.ndarray) -> np.ndarray:
        """`reader.predict` on a batch of one, for each line."""
        return np.stack([self.reader.predict(line[None], verbose=0)[0] for line in lines])


@cache
def store() -> Store:
    """The store named by SCANDIGITS_STORE."""
    return open_store(os.environ["SCANDIGITS_STORE"])


@cache
def classifier() -> OneByOne:
    """The store's current model, loaded once per process."""
    metadata = registry.resolve(store())
    return OneByOne(registry.load(store(), metadata), metadata["version"])


@signals.worker_process_init.connect
def _warm(**_: Any) -> None:
    inference.configure_threads(app.conf.worker_concurrency or 1)
    classifier().predict(np.zeros((1, 28, 28), np.float32))


def result_key(run: str, index: int) -> str:
    """Where the task for image `index` of `run` writes its result."""
    return f"naive/{run}/{index:06d}.json"


@app.task(name="naive.read_image")
def read_image(run: str, index: int, key: str) -> None:
    """Read one image and write its result record."""
    reading = pipeline.read([key], store().get, classifier())[0][0]
    record = results.Record.of(key, key, reading, classifier().version, results.REVIEW_BELOW)
    store().put(result_key(run, index), json.dumps(record.to_dict()).encode())


def submit(run: str, keys: list[str]) -> None:
    """Queue one task per image, as a tutorial's loop over `delay` does."""
    for index, key in enumerate(keys):
        read_image.delay(run, index, key)
