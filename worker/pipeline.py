"""Read a list of images: fetch, decode and segment concurrently, then one batched inference
over every digit candidate of every image, and the most likely split of each run of ink.

OpenCV and I/O release the GIL, so a thread pool overlaps fetching with decoding.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import cv2
import numpy as np

from trainer.storage import ObjectMissing, StoreError
from worker.decode import DecodeError, decode
from worker.inference import Classifier, Prediction
from worker.preprocess import NoInkError
from worker.segment import Group, Option, segment

T = TypeVar("T")
JOIN_COST = 0.1  # log-likelihood a reading pays per separate mark it joins into one digit
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fetch-decode")


@dataclass
class Digit:
    """One digit read: its label, softmax confidence and box (x, y, w, h) in the scan."""

    label: int
    confidence: float
    box: tuple[int, int, int, int]


@dataclass
class Reading:
    """What was read from one image: its digits left to right, or a one-line error."""

    digits: list[Digit] = field(default_factory=list)
    error: str | None = None

    @property
    def text(self) -> str:
        return "".join(str(d.label) for d in self.digits)

    @property
    def label(self) -> int | None:
        """The digit when exactly one was found."""
        return self.digits[0].label if len(self.digits) == 1 else None

    @property
    def confidence(self) -> float:
        """The least confident digit's confidence: a string is only as sure as its weakest digit."""
        return min((d.confidence for d in self.digits), default=0.0)


def _load(
    item: T, fetch: Callable[[T], bytes], cuts: bool
) -> tuple[list[Group] | str, Counter[str]]:
    """Fetch, decode and segment one image; return its digit candidates or an error string."""
    spent: Counter[str] = Counter()

    def timed(stage: str, step: Callable, value: object) -> object:
        start = time.perf_counter()
        try:
            return step(value)
        finally:
            spent[stage] += time.perf_counter() - start

    try:
        gray = timed("decode", decode, timed("fetch", fetch, item))
        groups = timed("preprocess", lambda image: segment(image, cuts), gray)
        return groups, spent
    except ObjectMissing:
        return "input object not found in the store", spent
    except StoreError as exc:
        return f"cannot fetch the input: {exc}", spent
    except FileNotFoundError:
        return "file not found", spent
    except IsADirectoryError:
        return "is a directory, not an image", spent
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})", spent
    except (DecodeError, NoInkError) as exc:
        return str(exc), spent
    except (cv2.error, ValueError, ArithmeticError, MemoryError, IndexError) as exc:
        return f"cannot process image ({type(exc).__name__}: {exc})".splitlines()[0], spent


def read(
    items: Sequence[T], fetch: Callable[[T], bytes], classifier: Classifier
) -> tuple[list[Reading], Counter[str]]:
    """Read every item; return one Reading per item and seconds spent per stage."""
    cuts = classifier.judges_cuts
    loaded = list(_pool.map(lambda item: _load(item, fetch, cuts), items))
    spent: Counter[str] = sum((stage for _, stage in loaded), Counter())
    images = [
        piece.image
        for value, _ in loaded
        if not isinstance(value, str)
        for group in value
        for option in group
        for piece in option.pieces
    ]
    start = time.perf_counter()
    predictions = iter(classifier.predict(np.stack(images) if images else np.empty((0, 28, 28))))
    spent["infer"] = time.perf_counter() - start
    readings = []
    for value, _ in loaded:
        if isinstance(value, str):
            readings.append(Reading(error=value))
            continue
        digits = []
        for group in value:
            scored = [(option, [next(predictions) for _ in option.pieces]) for option in group]
            option, best = max(scored, key=lambda pair: _fit(*pair))
            digits += [
                Digit(p.label, p.confidence, piece.box)
                for piece, p in zip(option.pieces, best, strict=True)
            ]
        readings.append(Reading(digits))
    return readings, spent


def _fit(option: Option, predictions: list[Prediction]) -> float:
    """How likely a reading is, in logs: the product of its digits' confidences (a model with a
    "not one digit" class gives a wrong cut's pieces low confidence), less a little for each
    join, so that on a tie separate marks stay separate digits."""
    return sum(math.log(max(p.confidence, 1e-12)) for p in predictions) - JOIN_COST * option.joins
