"""Read a list of images: fetch, decode and segment concurrently, then two batched forward
passes over the digit candidates of all of them (each span of marks read whole, then cuts of
the marks that are not surely one digit), one of the string reader over their whole lines of
writing, and for each image the string both models find likeliest.

No digit goes missing unseen: a mark of a digit's size that the string chosen does not read,
that lies off the line of writing, or that is ink no mark holds (too light to read), is named
in the reading (`Reading.left_out`), and its confidence is then never high.

OpenCV and I/O release the GIL, so a thread pool overlaps fetching with decoding.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TypeVar

import cv2
import numpy as np

from trainer import strings
from trainer.storage import KeyRefused, ObjectMissing, TooLarge
from worker.forms.align import AlignError, align, inside
from worker.forms.templates import Template
from worker.reading.decode import DecodeError, decode_colour, writing
from worker.reading.inference import Classifier, Prediction
from worker.reading.preprocess import NoInkError
from worker.reading.segment import Box, Field, Option, Piece, Run, segment

T = TypeVar("T")
Fits = Callable[[str], bool]  # whether a string has a field's shape (its digit count, pattern)
SURE = 0.9999  # a mark read alone this surely is not offered cut into touching digits
JOIN_COST = 0.1  # log-likelihood a reading pays per separate mark it joins into one digit
TEXTS = 16  # strings kept per field from the segmenter's readings, likeliest first
SECOND = 0.01  # a digit read this likely is offered too, besides the likeliest
READS = 3  # digits one piece is offered as, at most (a field's readings multiply)
DOUBT = 0.1  # odds that a piece is framed too badly for its reading to mean anything (_log_fit)
VIEW_SHIFTS = (0, -2, 2)  # columns the reader's views of a line are moved by (the first is decoded)
UNACCOUNTED = 0.5  # a reading that leaves a mark of a digit's size out is at most this sure
DISPUTED = 0.5  # ... and so is one the string reader, reading alone, reads otherwise
OFF_LINE, NOT_READ = "off the line", "not read"  # why a mark is left out
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fetch-decode")


@dataclass
class Digit:
    """One digit read: its label, softmax confidence and box (x, y, w, h) in the scan."""

    label: int
    confidence: float
    box: tuple[int, int, int, int]


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

    @property
    def text(self) -> str:
        return "".join(str(d.label) for d in self.digits)

    @property
    def label(self) -> int | None:
        """The digit when exactly one was found."""
        return self.digits[0].label if len(self.digits) == 1 else None

    @property
    def confidence(self) -> float:
        """The least confident digit's confidence: a string is only as sure as its weakest digit,
        and never sure while ink of a digit's size is left out of it, or while the string
        reader alone reads the line otherwise."""
        sure = min((d.confidence for d in self.digits), default=0.0)
        if self.left_out:
            sure = min(sure, UNACCOUNTED)
        return min(sure, DISPUTED) if self.disputed is not None else sure


def _load(
    item: T, fetch: Callable[[T], bytes], template: Template | None
) -> tuple[Field | list[Field | str] | str, Counter[str]]:
    """Fetch, decode and segment one image; return its field of writing (with a template: one
    per template field, or that field's error) or an error string. An item with a
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
        return "input object not found in the store", spent
    except KeyRefused as exc:
        return f"cannot fetch the input: {exc}", spent
    except TooLarge as exc:
        return f"file too large ({exc})", spent
    except FileNotFoundError:
        return "file not found", spent
    except IsADirectoryError:
        return "is a directory, not an image", spent
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})", spent
    except (DecodeError, NoInkError, AlignError) as exc:
        return str(exc), spent
    except (cv2.error, ValueError, ArithmeticError, MemoryError, IndexError) as exc:
        return f"cannot process image ({type(exc).__name__}: {exc})".splitlines()[0], spent


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


def _segmented(crop: np.ndarray) -> Field | str:
    """One form field's writing (the marks that reach into its box), or why there is none."""
    try:
        return segment(crop, inside=inside(crop.shape))
    except NoInkError as exc:
        return str(exc)


def read(
    items: Sequence[T], fetch: Callable[[T], bytes], classifier: Classifier
) -> tuple[list[Reading], Counter[str]]:
    """Read every item; return one Reading per item and seconds spent per stage."""
    loaded = list(_pool.map(lambda item: _load(item, fetch, None), items))
    spent: Counter[str] = sum((stage for _, stage in loaded), Counter())
    fields = [value for value, _ in loaded if isinstance(value, Field)]
    readings = iter(_read_fields(fields, [None] * len(fields), classifier, spent))
    return [Reading(error=v) if isinstance(v, str) else next(readings) for v, _ in loaded], spent


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
        Form(error=value)
        if isinstance(value, str)
        else Form(
            {
                spec.name: Reading(error=f) if isinstance(f, str) else next(readings)
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
    options = iter([run.options(_unsure(run, predictions, classifier)) for run in runs])
    spent["preprocess"] += time.perf_counter() - start
    groups = [[next(options) for _ in found.runs] for found in fields]
    pieces = dict.fromkeys(p for g in groups for o in g for option in o for p in option.pieces)
    _predict(classifier, [p for p in pieces if p not in predictions], predictions, spent)
    texts = [_texts(group, predictions) for group in groups]
    lines = _lines(classifier, fields, texts, spent)
    return [
        _choose(found, t, predictions, line, fits)
        for found, t, line, fits in zip(fields, texts, lines, shapes, strict=True)
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


def _unsure(run: Run, predictions: dict[Piece, Prediction], classifier: Classifier) -> list[int]:
    """The marks of `run` to offer cut into touching digits: those that, read alone, are not a
    sure digit (a cut could hardly beat a sure reading), if the model can tell a bad cut."""
    if not classifier.judges_cuts:
        return []
    return [i for i in run.marks if predictions[run.whole(i, i)].confidence < SURE]


def _texts(
    options: list[list[Option]], predictions: dict[Piece, Prediction]
) -> dict[str, tuple[float, list[Piece]]]:
    """The TEXTS likeliest strings the segmenter's readings of a field's runs give, each with
    its fit and its digits, run by run keeping the likeliest per string. A reading's fit is the
    product of its digits' probabilities, each hedged by _log_fit (a model with a "not one
    digit" class gives a wrong cut's pieces low ones), less a little for each join, so that on
    a tie separate marks stay separate digits; a piece is read as its likeliest digit, or
    another SECOND likely."""
    texts: dict[str, tuple[float, list[Piece]]] = {"": (0.0, [])}
    for group in options:
        longer: dict[str, tuple[float, list[Piece]]] = {}
        for option in group:
            read = [predictions[p] for p in option.pieces]
            for digits in itertools.product(*(p.likely(SECOND)[:READS] for p in read)):
                fit = sum(_log_fit(p.probability(d)) for p, d in zip(read, digits, strict=True))
                fit -= JOIN_COST * option.joins
                key = "".join(map(str, digits))
                for text, (before, pieces) in texts.items():
                    if text + key not in longer or longer[text + key][0] < before + fit:
                        longer[text + key] = (before + fit, pieces + option.pieces)
        texts = dict(sorted(longer.items(), key=lambda kv: -kv[1][0])[:TEXTS])
    return texts


def _log_fit(probability: float) -> float:
    """How well a piece's ink fits a digit the CNN gives `probability`: that probability mixed
    with a uniform guess at odds DOUBT, so no one piece cut or framed badly (a sliver of a
    neighbour, a box line left in) can veto a string on its own."""
    return math.log((1 - DOUBT) * probability + DOUBT / 10)


@dataclass
class _Line:
    """A field as the string reader reads it: its logits for each of VIEW_SHIFTS, and its digits
    with the reader's confidence and their span of the line (between the midpoints to their
    neighbours), decoded from the unshifted view."""

    found: Field
    views: np.ndarray  # (len(VIEW_SHIFTS), steps, 11)
    digits: list[tuple[int, float, tuple[int, int]]]
    centres: list[float]  # the line columns each digit was read at
    fit: float = 0.0  # the classifier's log-likelihood of those digits, read from their ink

    @property
    def text(self) -> str:
        return "".join(str(digit) for digit, _, _ in self.digits)

    def likelihood(self, text: str) -> float:
        """The reader's log-likelihood of `text`, averaged over the views: steadier than one
        view's, whose columns can fall awkwardly across a digit."""
        return float(np.mean(strings.likelihood(self.views, text)))

    @cached_property
    def pieces(self) -> list[Piece]:
        """The ink of each digit, framed for the classifier."""
        return [self.found.span(*columns) for _, _, columns in self.digits]


def _lines(
    classifier: Classifier,
    fields: list[Field],
    texts: list[dict[str, tuple[float, list[Piece]]]],
    spent: Counter[str],
) -> list[_Line | None]:
    """Each field's line read by the string reader, all its views in one batched pass (None
    without a reader); a string the segmenter did not offer is also scored by the classifier,
    its digits framed from the reader's positions (one more batched pass)."""
    if not fields or not classifier.reads_lines:
        return [None] * len(fields)
    start = time.perf_counter()
    framed = np.stack([f.line for f in fields])
    logits = classifier.read_lines(np.concatenate([_shifted(framed, dx) for dx in VIEW_SHIFTS]))
    views = logits.reshape(len(VIEW_SHIFTS), len(fields), *logits.shape[1:])
    lines = []
    for n, found in enumerate(fields):
        read = strings.decode(views[0, n])
        centres = [(first + last) // 2 for _, (first, last), _ in read]
        cuts = [(a + b) // 2 for a, b in itertools.pairwise(centres)]
        spans = zip([0, *cuts], [*cuts, strings.WIDTH], strict=True) if read else []
        digits = [(d, p, columns) for (d, _, p), columns in zip(read, spans, strict=True)]
        lines.append(_Line(found, views[:, n], digits, [float(c) for c in centres]))
    spent["infer"] += time.perf_counter() - start
    unseen = [line for line, seen in zip(lines, texts, strict=True) if line.text not in seen]
    start = time.perf_counter()
    pieces = [piece for line in unseen for piece in line.pieces]
    spent["preprocess"] += time.perf_counter() - start
    start = time.perf_counter()
    probs = iter(classifier.probabilities(np.stack([p.image for p in pieces])) if pieces else [])
    for line in unseen:
        line.fit = sum(_log_fit(float(next(probs)[d])) for d, _, _ in line.digits)
    spent["infer"] += time.perf_counter() - start
    return lines


def _shifted(lines: np.ndarray, columns: int) -> np.ndarray:
    """`lines` moved right by `columns` (left if negative), blank where they leave the frame."""
    moved = np.zeros_like(lines)
    if columns >= 0:
        moved[:, :, columns:] = lines[:, :, : lines.shape[2] - columns]
    else:
        moved[:, :, :columns] = lines[:, :, -columns:]
    return moved


def _choose(
    found: Field,
    texts: dict[str, tuple[float, list[Piece]]],
    predictions: dict[Piece, Prediction],
    line: _Line | None,
    fits: Fits | None = None,
) -> Reading:
    """The field's likeliest string, among those that `fits` if any string offered does.
    With a string reader, each string the segmenter offers and the reader's own are scored by
    both models (the sum of their log-likelihoods); the winner's share of the probability of
    all strings scored caps its digits' confidence; where the reader alone reads another string
    (of the field's shape), the reading is disputed. The marks the winner leaves out are named
    (with those off the line, and the ink no mark holds): a segmenter's string reads every mark
    on the line; the reader's, each run of marks (one digit, or parts of one) that one of its
    digits lies nearest to."""
    off = [LeftOut(box, OFF_LINE) for box in found.left_out]
    off += [LeftOut(box, NOT_READ) for box in found.unread]
    disputed = None
    if line is None or not line.text:  # reading nothing where there is ink tells nothing
        scores, share = {text: fit for text, (fit, _) in texts.items()}, 1.0
        best = _best(scores, fits)
    else:
        scores = {t: fit + line.likelihood(t) for t, (fit, _) in texts.items()}
        scores.setdefault(line.text, line.fit + line.likelihood(line.text))
        best = _best(scores, fits)
        share = 1.0 / sum(math.exp(score - scores[best]) for score in scores.values())
        if line.text != best and (fits is None or fits(line.text)):
            disputed = line.text
    if best in texts:
        return Reading(
            [
                Digit(int(d), min(predictions[p].probability(int(d)), share), p.box)
                for d, p in zip(best, texts[best][1], strict=True)
            ],
            left_out=off,
            disputed=disputed,
        )
    spans = [
        (found.marks[run.marks[0]].columns[0], found.marks[run.marks[-1]].columns[1])
        for run in found.runs
    ]
    read = {int(np.argmin([max(lo - c, c - hi, 0) for lo, hi in spans])) for c in line.centres}
    unread = [
        LeftOut(found.marks[i].box, NOT_READ)
        for k, run in enumerate(found.runs)
        if k not in read
        for i in run.marks
    ]
    return Reading(
        [
            Digit(d, min(p, share), piece.box)
            for (d, p, _), piece in zip(line.digits, line.pieces, strict=True)
        ],
        left_out=off + unread,
    )


def _best(scores: dict[str, float], fits: Fits | None) -> str:
    """The highest-scoring string, among those that `fits` when there are any."""
    fitting = [text for text in scores if fits and fits(text)] or list(scores)
    return max(fitting, key=scores.__getitem__)
