"""Batched inference: one compiled forward pass per chunk, the model cached per process.

The forward pass is traced once per batch shape, all when the model loads: inputs are cut into
batches of 256 and the last one is padded up to the next traced size, so nothing is retraced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer import registry
from trainer.models import NOT_A_DIGIT
from trainer.storage import Store

_cache: dict[int, Classifier] = {}
SHAPES = tuple(2**k for k in range(9))  # batch sizes traced, 1 to 256: padding wastes < half


def configure_threads(processes: int) -> None:
    """Split the cores between worker processes so TensorFlow and OpenCV don't oversubscribe."""
    import cv2
    import tensorflow as tf

    threads = max(1, (os.cpu_count() or 1) // max(1, processes))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cv2.setNumThreads(1)


@dataclass
class Prediction:
    """Label and softmax confidence of one image."""

    label: int
    confidence: float


class Classifier:
    """A registered model version wrapped in a traced function over (N, 28, 28) float32."""

    def __init__(self, model: Any, version: int) -> None:
        import tensorflow as tf

        self.version = version
        # an output past the ten digits, "not one digit", lets the model tell a wrong cut
        self.judges_cuts = model.output_shape[-1] > NOT_A_DIGIT
        forward = tf.function(lambda x: model(x, training=False))
        self._forward = {
            size: forward.get_concrete_function(tf.TensorSpec([size, 28, 28], tf.float32))
            for size in SHAPES
        }
        for size in SHAPES:
            self._probabilities(np.zeros((size, 28, 28), np.float32))

    def predict(self, images: np.ndarray) -> list[Prediction]:
        """Classify a batch of normalised digits, SHAPES[-1] at a time."""
        if len(images) == 0:
            return []
        step = SHAPES[-1]
        images = np.asarray(images, np.float32)
        probs = np.concatenate(
            [self._probabilities(images[at : at + step]) for at in range(0, len(images), step)]
        )
        labels = probs[:, :NOT_A_DIGIT].argmax(axis=1)  # the digits, never "not one digit"
        return [Prediction(int(k), float(p[k])) for k, p in zip(labels, probs, strict=True)]

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Softmax outputs of up to SHAPES[-1] images, padded with blanks to a traced shape."""
        size = next(s for s in SHAPES if s >= len(batch))
        padded = np.zeros((size, 28, 28), np.float32)
        padded[: len(batch)] = batch
        return self._forward[size](padded).numpy()[: len(batch)]


def classifier(store: Store, version: int | str | None = None) -> Classifier:
    """The classifier for `version` (default: current), loaded and verified once per process."""
    if isinstance(version, int) and version in _cache:
        return _cache[version]
    metadata = registry.resolve(store, version)
    number = metadata["version"]
    if number not in _cache:
        _cache.clear()
        _cache[number] = Classifier(registry.load(store, metadata), number)
    return _cache[number]
