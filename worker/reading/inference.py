"""Batched inference: one compiled forward pass per chunk, the model cached per process.

The forward pass is traced once per batch shape: all of them before a worker takes its first
task, or each the first time it is needed in a one-off read. Inputs are cut into batches of 256
and the last one is padded up to the next power of two, so nothing is retraced.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer import errors, models, registry, strings
from trainer.models import NOT_A_DIGIT
from trainer.storage import Store
from worker import settings

_cache: dict[int, Classifier] = {}
SHAPES = tuple(2**k for k in range(9))  # batch sizes traced, 1 to 256: padding wastes < half
TRUSTED = "SCANDIGITS_TRUSTED_MODELS"
CGROUP = Path("/sys/fs/cgroup")


def cpu_limit(cgroup: Path = CGROUP) -> int:
    """The CPUs this process may use: the container's CPU quota (cgroup v2 `cpu.max`, else v1
    `cpu.cfs_quota_us` / `cpu.cfs_period_us` under `cgroup`), rounded up, if lower than the
    CPUs it may run on. os.cpu_count() counts the node's: 64 on a node where the pod has 2."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux: the CPUs it may run on
    cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    quota = _cgroup_quota(cgroup)
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


def _cgroup_quota(cgroup: Path) -> float | None:
    """CPUs' worth of the cgroup's quota, or None when there is none (or it cannot be read)."""
    try:
        if (cgroup / "cpu.max").is_file():
            quota, period = (cgroup / "cpu.max").read_text().split()
        else:
            v1 = cgroup / "cpu" if (cgroup / "cpu").is_dir() else cgroup / "cpu,cpuacct"
            quota = (v1 / "cpu.cfs_quota_us").read_text().strip()
            period = (v1 / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period) if int(quota) > 0 and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def configure_threads(processes: int, cgroup: Path = CGROUP) -> None:
    """Split the container's CPUs (cpu_limit) between worker processes so TensorFlow and
    OpenCV don't oversubscribe."""
    import cv2
    import tensorflow as tf

    threads = max(1, cpu_limit(cgroup) // max(1, processes))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cv2.setNumThreads(1)


@dataclass
class Prediction:
    """Label and softmax confidence of one image, and its whole softmax output if known."""

    label: int
    confidence: float
    probabilities: np.ndarray | None = None

    def probability(self, digit: int) -> float:
        """How likely the image is `digit`."""
        if self.probabilities is None:
            return self.confidence if digit == self.label else 0.0
        return float(self.probabilities[digit])

    def likely(self, floor: float) -> list[int]:
        """The digits at least `floor` likely (the label always), likeliest first."""
        if self.probabilities is None:
            return [self.label]
        order = np.argsort(-self.probabilities[:NOT_A_DIGIT])
        return [self.label, *(int(d) for d in order[1:] if self.probabilities[d] >= floor)]


class Classifier:
    """A registered model version: its digit classifier, traced over (N, 28, 28) float32, and
    its string reader if it has one, traced over framed lines."""

    def __init__(self, model: Any, version: int) -> None:
        self.version = version
        digits, reader = models.parts(model)
        # an output past the ten digits, "not one digit", lets the model tell a wrong cut
        self.judges_cuts = digits.output_shape[-1] > NOT_A_DIGIT
        self._digits = _Forward(digits, (28, 28))
        self._reader = _Forward(reader, (strings.HEIGHT, strings.WIDTH)) if reader else None

    def warm(self) -> None:
        """Trace every batch size now: a worker does before its first task, so that no chunk
        pays for it (a one-off read traces only the sizes it uses)."""
        for forward in (self._digits, self._reader):
            if forward is not None:
                forward.warm()

    @property
    def reads_lines(self) -> bool:
        return self._reader is not None

    def predict(self, images: np.ndarray) -> list[Prediction]:
        """Classify a batch of normalised digits."""
        if len(images) == 0:
            return []
        probs = self.probabilities(images)
        labels = probs[:, :NOT_A_DIGIT].argmax(axis=1)  # the digits, never "not one digit"
        return [Prediction(int(k), float(p[k]), p) for k, p in zip(labels, probs, strict=True)]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax outputs (N, classes) for a non-empty batch of normalised digits."""
        return self._digits(np.asarray(images, np.float32))

    def read_lines(self, lines: np.ndarray) -> np.ndarray:
        """The string reader's logits (N, steps, 11) for a batch of framed lines."""
        if self._reader is None:
            raise ValueError("this model has no string reader")
        return self._reader(np.asarray(lines, np.float32))


class _Forward:
    """A model's forward pass over (N, *shape) float32 inputs, SHAPES[-1] at a time, the last
    batch padded with blanks up to a size in SHAPES. Each size is traced the first time it is
    needed (all nine take seconds, and a one-off read needs two or three) or on `warm`; the
    smallest is traced and run at once, so a model that cannot run fails as it loads."""

    def __init__(self, model: Any, shape: tuple[int, int]) -> None:
        import tensorflow as tf

        if tuple(model.input_shape[1:]) != shape:
            raise ValueError(f"it takes inputs of shape {model.input_shape[1:]}, not {shape}")
        self._shape = shape
        self._forward = tf.function(lambda x: model(x, training=False))
        self._traced: dict[int, Any] = {}
        self(np.zeros((1, *shape), np.float32))

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        outputs = []
        for at in range(0, len(inputs), SHAPES[-1]):
            batch = inputs[at : at + SHAPES[-1]]
            size = next(s for s in SHAPES if s >= len(batch))
            padded = np.zeros((size, *self._shape), np.float32)
            padded[: len(batch)] = batch
            outputs.append(self._at(size)(padded).numpy()[: len(batch)])
        return np.concatenate(outputs)

    def warm(self) -> None:
        """Trace and run every size in SHAPES."""
        for size in SHAPES:
            self._at(size)(np.zeros((size, *self._shape), np.float32))

    def _at(self, size: int) -> Any:
        """The forward pass traced for batches of `size`."""
        if size not in self._traced:
            import tensorflow as tf

            spec = tf.TensorSpec([size, *self._shape], tf.float32)
            self._traced[size] = self._forward.get_concrete_function(spec)
        return self._traced[size]


def classifier(store: Store, version: int | str | None = None) -> Classifier:
    """The classifier for `version` (default: current), loaded and verified once per process.

    A model that cannot be used (untrusted, refused, unreadable, not a digit classifier) is a
    RegistryError, which the chunk reports per image rather than failing its task. With
    SCANDIGITS_TRUSTED_MODELS set, only the models it lists are trusted: the registry's digests
    live in the store the workers write to, and credentials to the store alone must not get a
    model run.
    """
    if isinstance(version, int) and version in _cache:
        return _cache[version]
    metadata = registry.resolve(store, version)
    number = metadata["version"]
    trusted = settings.current().trusted_models
    if trusted is not None and metadata.get("sha256") not in trusted:
        raise errors.RegistryError(
            f"model version {number} (sha256 {metadata.get('sha256')}) is not in {TRUSTED}; "
            "refusing it"
        )
    if number not in _cache:
        _cache.clear()
        model = registry.load(store, metadata)
        try:
            _cache[number] = Classifier(model, number)
        except Exception as exc:
            raise errors.RegistryError(
                f"model version {number} is not a digit classifier: {registry.reason(exc)}"
            ) from exc
    return _cache[number]
