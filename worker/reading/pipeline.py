"""Read a list of images: fetch, decode and segment them concurrently, then run the models in
batches over the digit candidates of all of them (each span of marks read whole, then cuts of
the marks that are not surely one digit) and over their whole lines of writing (the string
reader), and build each image's Reading from the string `choose` finds likeliest.

No digit goes missing unseen: a mark of a digit's size that the string chosen does not read,
that lies off the line of writing, or that is ink no mark holds (too light to read), is named
in the reading (`Reading.left_out`), and its confidence is then never high.

OpenCV and I/O release the GIL, so a thread pool overlaps fetching with decoding.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import cv2
import numpy as np

from trainer.errors import AlignError, DecodeError, KeyRefused, NoInkError, ObjectMissing, TooLarge
from worker.forms.align import align, inside
from worker.forms.templates import Template
from worker.reading import choose
from worker.reading.choose import Candidates, Choice, Digit, Fits, Transcript
from worker.reading.decode import decode_colour, writing
from worker.reading.inference import Classifier, Prediction
from worker.reading.pieces import Box, Piece
from worker.reading.segment import Field, segment

T = TypeVar("T")
UNACCOUNTED = 0.5  # a reading that leaves a mark of a digit's size out is at most this sure
DISPUTED = 0.5  # ... and so is one the string reader, reading alone, reads otherwise
OFF_LINE, NOT_READ = "off the line", "not read"  # why a mark is left out
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fetch-decode")


@dataclass(frozen=True)
class Failure:
    """Why one image, or one field of a form page, could not be read: its result's one-line
    `error` (what an input's own fault raises, trainer.errors, becomes this; the chunk reads on)."""

    reason: str


@dataclass(frozen=True)
class LeftOut:
    """A mark of a digit's size that is not in the text read: its box in the scan, and why
    (OFF_LINE: not on the line of writing; NOT_READ: on it, but no digit read there, or ink
    too light for a mark)."""

    box: Box
    why: str


@dataclass
class Reading:
    """What was read from one image: its digits left to right and the marks left out, or a
    one-line error."""

    digits: list[Digit] = field(default_factory=list)
    error: str | None = None
    left_out: list[LeftOut] = field(default_factory=list)
    disputed: str | None = None  # the string reader's own reading, where it differs
    share: float = 1.0  # the string's share of the probability of the strings it was chosen from

    @property
    def text(self) -> str:
        return "".join(str(d.label) for d in self.digits)

    @property
    def label(self) -> int | None:
        """The digit when exactly one was found."""
        return self.digits[0].label if len(self.digits) == 1 else None

    @property
    def confidence(self) -> float:
        """How likely the string is right: that every digit is (the product of the digits'
        confidences), and that no other string is (its `share`); never sure while ink of a
        digit's size is left out of it, or while the string reader alone reads the line
        otherwise."""
        sure = min(math.prod(d.confidence for d in self.digits), self.share) if self.digits else 0.0
        if self.left_out:
            sure = min(sure, UNACCOUNTED)
        return min(sure, DISPUTED) if self.disputed is not None else sure


def _load(
    item: T, fetch: Callable[[T], bytes], template: Template | None
) -> tuple[Field | list[Field | Failure] | Failure, Counter[str]]:
    """Fetch, decode and segment one image; return its field of writing (with a template: one
    per template field, or that field's failure) or why it could not be read. An item with a
    `page` (from 1: worker.manifest.Item) is that page of a PDF or TIFF; any other, page 1.
    A missing input or a key the store refuses is the image's error; any other StoreError is
    the store failing, raised for the chunk task to retry."""
    spent: Counter[str] = Counter()

    def timed(stage: str, step: Callable, value: object) -> object:
        start = time.perf_counter()
        try:
            return step(value)
        finally:
            spent[stage] += time.perf_counter() - start

    decoder = partial(decode_colour, page=(getattr(item, "page", None) or 1) - 1)
    try:
        gray, colour, reduced = timed("decode", decoder, timed("fetch", fetch, item))
        if template is None:
            found = timed("preprocess", lambda page: segment(writing(page, colour), reduced), gray)
            return found, spent
        crops = timed("align", lambda page: _crops(page, colour, template), gray)
        return timed("preprocess", lambda images: [_segmented(i) for i in images], crops), spent
    except ObjectMissing:
        return Failure("input object not found in the store"), spent
    except KeyRefused as exc:
        return Failure(f"cannot fetch the input: {exc}"), spent
    except TooLarge as exc:
        return Failure(f"file too large ({exc})"), spent
    except FileNotFoundError:
        return Failure("file not found"), spent
    except IsADirectoryError:
        return Failure("is a directory, not an image"), spent
    except OSError as exc:
        return Failure(f"cannot read file ({exc.strerror or exc})"), spent
    except (DecodeError, NoInkError, AlignError) as exc:
        return Failure(str(exc)), spent
    except (cv2.error, ValueError, ArithmeticError, MemoryError, IndexError) as exc:
        reason = f"cannot process image ({type(exc).__name__}: {exc})".splitlines()[0]
        return Failure(reason), spent


def _crops(page: np.ndarray, colour: np.ndarray | None, template: Template) -> list[np.ndarray]:
    """Each template field cropped upright from the page aligned to the template, as the
    plane to read its writing from (without its print, if that is in a drop-out colour)."""
    alignment = align(page, template)
    return [
        writing(
            alignment.crop(page, spec), None if colour is None else alignment.crop(colour, spec)
        )
        for spec in template.fields
    ]


def _segmented(crop: np.ndarray) -> Field | Failure:
    """One form field's writing (the marks that reach into its box), or why there is none."""
    try:
        return segment(crop, inside=inside(crop.shape))
    except NoInkError as exc:
        return Failure(str(exc))


def read(
    items: Sequence[T], fetch: Callable[[T], bytes], classifier: Classifier
) -> tuple[list[Reading], Counter[str]]:
    """Read every item; return one Reading per item and seconds spent per stage."""
    loaded = list(_pool.map(lambda item: _load(item, fetch, None), items))
    spent: Counter[str] = sum((stage for _, stage in loaded), Counter())
    fields = [value for value, _ in loaded if isinstance(value, Field)]
    readings = iter(_read_fields(fields, [None] * len(fields), classifier, spent))
    return [
        Reading(error=v.reason) if isinstance(v, Failure) else next(readings) for v, _ in loaded
    ], spent


@dataclass
class Form:
    """What was read from one page of a form: a Reading per template field, or a page error."""

    fields: dict[str, Reading] = field(default_factory=dict)
    error: str | None = None


def read_forms(
    items: Sequence[T], fetch: Callable[[T], bytes], classifier: Classifier, template: Template
) -> tuple[list[Form], Counter[str]]:
    """Read every item as a page of the form `template`: aligned to it, each field cropped and
    read as a digit string, of the field's count and pattern when one fits (FieldSpec.fits)."""
    loaded = list(_pool.map(lambda item: _load(item, fetch, template), items))
    spent: Counter[str] = sum((stage for _, stage in loaded), Counter())
    pages = [value for value, _ in loaded if isinstance(value, list)]
    found = [(f, spec.fits) for p in pages for f, spec in zip(p, template.fields, strict=True)]
    fields = [f for f, _ in found if isinstance(f, Field)]
    shapes = [fits for f, fits in found if isinstance(f, Field)]
    readings = iter(_read_fields(fields, shapes, classifier, spent))
    forms = [
        Form(error=value.reason)
        if isinstance(value, Failure)
        else Form(
            {
                spec.name: Reading(error=f.reason) if isinstance(f, Failure) else next(readings)
                for f, spec in zip(value, template.fields, strict=True)
            }
        )
        for value, _ in loaded
    ]
    return forms, spent


def _read_fields(
    fields: list[Field], shapes: list[Fits | None], classifier: Classifier, spent: Counter[str]
) -> list[Reading]:
    """The likeliest string of each field (among those that fit its shape, where one is given):
    two batched passes of the classifier over all their digit candidates, one of the reader."""
    runs = [run for found in fields for run in found.runs]
    predictions: dict[Piece, Prediction] = {}
    _predict(classifier, [piece for run in runs for piece in run.spans()], predictions, spent)
    start = time.perf_counter()
    options = iter([run.options(choose.to_cut(run, predictions, classifier)) for run in runs])
    spent["preprocess"] += time.perf_counter() - start
    groups = [[next(options) for _ in found.runs] for found in fields]
    pieces = dict.fromkeys(p for g in groups for o in g for option in o for p in option.pieces)
    _predict(classifier, [p for p in pieces if p not in predictions], predictions, spent)
    texts = [choose.candidates(group, predictions) for group in groups]
    transcripts = _transcripts(classifier, fields, texts, spent)
    return [
        _reading(found, choose.best(found, t, predictions, transcript, fits))
        for found, t, transcript, fits in zip(fields, texts, transcripts, shapes, strict=True)
    ]


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


def _transcripts(
    classifier: Classifier,
    fields: list[Field],
    texts: list[Candidates],
    spent: Counter[str],
) -> list[Transcript | None]:
    """Each field's line read by the string reader, all its views in one batched pass (None
    without a reader); a string the segmenter did not offer is also scored by the classifier,
    its digits framed from the reader's positions (one more batched pass)."""
    if not fields or not classifier.reads_lines:
        return [None] * len(fields)
    start = time.perf_counter()
    logits = classifier.read_lines(choose.views(np.stack([f.line for f in fields])))
    read = choose.transcripts(fields, logits)
    spent["infer"] += time.perf_counter() - start
    unseen = [t for t, offered in zip(read, texts, strict=True) if t.text not in offered]
    start = time.perf_counter()
    pieces = [piece for transcript in unseen for piece in transcript.pieces]
    spent["preprocess"] += time.perf_counter() - start
    start = time.perf_counter()
    probs = iter(classifier.probabilities(np.stack([p.image for p in pieces])) if pieces else [])
    for transcript in unseen:
        transcript.judge([next(probs) for _ in transcript.digits])
    spent["infer"] += time.perf_counter() - start
    return read


def _reading(found: Field, choice: Choice) -> Reading:
    """The reading of a field's chosen string, naming every mark of a digit's size it leaves
    out: those off the line of writing, the ink no mark holds, and the marks on the line that
    none of its digits reads."""
    left_out = [LeftOut(box, OFF_LINE) for box in found.left_out]
    left_out += [LeftOut(box, NOT_READ) for box in found.unread + choice.skipped]
    return Reading(choice.digits, left_out=left_out, disputed=choice.disputed, share=choice.share)
