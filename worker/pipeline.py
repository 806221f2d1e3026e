"""Read a list of images: fetch, decode and preprocess concurrently, then one batched inference.

OpenCV and I/O release the GIL, so a thread pool overlaps fetching with decoding.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from trainer.storage import ObjectMissing
from worker.decode import DecodeError, decode
from worker.inference import Classifier
from worker.preprocess import NoInkError, normalise

T = TypeVar("T")
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fetch-decode")


@dataclass
class Reading:
    """What was read from one image: a label and its confidence, or a one-line error."""

    label: int | None = None
    confidence: float = 0.0
    error: str | None = None


def _load(item: T, fetch: Callable[[T], bytes]) -> tuple[np.ndarray | str, Counter[str]]:
    """Fetch, decode and normalise one image; return the 28×28 digit or an error string."""
    spent: Counter[str] = Counter()

    def timed(stage: str, step: Callable, value: object) -> object:
        start = time.perf_counter()
        try:
            return step(value)
        finally:
            spent[stage] += time.perf_counter() - start

    try:
        digit = timed("preprocess", normalise, timed("decode", decode, timed("fetch", fetch, item)))
        return digit, spent
    except ObjectMissing:
        return "input object not found in the store", spent
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
    loaded = list(_pool.map(lambda item: _load(item, fetch), items))
    spent: Counter[str] = sum((stage for _, stage in loaded), Counter())
    digits = [value for value, _ in loaded if not isinstance(value, str)]
    start = time.perf_counter()
    predictions = iter(classifier.predict(np.stack(digits) if digits else np.empty((0, 28, 28))))
    spent["infer"] = time.perf_counter() - start
    readings = []
    for value, _ in loaded:
        if isinstance(value, str):
            readings.append(Reading(error=value))
        else:
            prediction = next(predictions)
            readings.append(Reading(prediction.label, prediction.confidence))
    return readings, spent
