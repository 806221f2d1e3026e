"""Read a list of images: fetch, decode and segment concurrently, then two batched forward
passes over the digit candidates of all of them (each span of marks read whole, then cuts of
the marks that are not surely one digit), and the most likely reading of each run of ink.

OpenCV and I/O release the GIL, so a thread pool overlaps fetching with decoding.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from typing import TypeVar

import cv2
import numpy as np

from trainer.storage import ObjectMissing, StoreError
from worker.decode import DecodeError, decode_reduced
from worker.inference import Classifier, Prediction
from worker.preprocess import NoInkError
from worker.segment import Option, Piece, Run, segment

T = TypeVar("T")
SURE = 0.9999  # a mark read alone this surely is not offered cut into touching digits
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


def _load(item: T, fetch: Callable[[T], bytes]) -> tuple[list[Run] | str, Counter[str]]:
    """Fetch, decode and segment one image; return its runs of ink or an error string."""
    spent: Counter[str] = Counter()

    def timed(stage: str, step: Callable, value: object) -> object:
        start = time.perf_counter()
        try:
            return step(value)
        finally:
            spent[stage] += time.perf_counter() - start

    try:
        gray, reduced = timed("decode", decode_reduced, timed("fetch", fetch, item))
        runs = timed("preprocess", lambda image: segment(image, reduced), gray)
        return runs, spent
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
    loaded = list(_pool.map(lambda item: _load(item, fetch), items))
    spent: Counter[str] = sum((stage for _, stage in loaded), Counter())
    runs = [run for value, _ in loaded if not isinstance(value, str) for run in value]
    predictions: dict[Piece, Prediction] = {}
    _predict(classifier, [piece for run in runs for piece in run.spans()], predictions, spent)
    start = time.perf_counter()
    options = [run.options(_unsure(run, predictions, classifier)) for run in runs]
    spent["preprocess"] += time.perf_counter() - start
    pieces = dict.fromkeys(p for group in options for option in group for p in option.pieces)
    _predict(classifier, [p for p in pieces if p not in predictions], predictions, spent)
    best = iter(
        max(group, key=lambda option: _fit(option, [predictions[p] for p in option.pieces]))
        for group in options
    )
    readings = []
    for value, _ in loaded:
        if isinstance(value, str):
            readings.append(Reading(error=value))
            continue
        chosen = [piece for _ in value for piece in next(best).pieces]
        readings.append(Reading([Digit(*astuple(predictions[p]), p.box) for p in chosen]))
    return readings, spent


def _predict(
    classifier: Classifier,
    pieces: list[Piece],
    into: dict[Piece, Prediction],
    spent: Counter[str],
) -> None:
    """Classify `pieces` in one batched call, adding their predictions to `into`."""
    start = time.perf_counter()
    images = np.stack([piece.image for piece in pieces]) if pieces else np.empty((0, 28, 28))
    into.update(zip(pieces, classifier.predict(images), strict=True))
    spent["infer"] += time.perf_counter() - start


def _unsure(run: Run, predictions: dict[Piece, Prediction], classifier: Classifier) -> list[int]:
    """The marks of `run` to offer cut into touching digits: those that, read alone, are not a
    sure digit (a cut could hardly beat a sure reading), if the model can tell a bad cut."""
    if not classifier.judges_cuts:
        return []
    return [i for i in run.marks if predictions[run.whole(i, i)].confidence < SURE]


def _fit(option: Option, predictions: list[Prediction]) -> float:
    """How likely a reading is, in logs: the product of its digits' confidences (a model with a
    "not one digit" class gives a wrong cut's pieces low confidence), less a little for each
    join, so that on a tie separate marks stay separate digits."""
    return sum(math.log(max(p.confidence, 1e-12)) for p in predictions) - JOIN_COST * option.joins
