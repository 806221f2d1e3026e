"""Choose the string a field reads as, from what the models said of it: candidate strings from
the segmenter's readings, scored by the CNN; the string reader's views of the whole line, which
score them too and offer the reader's own string; and the string both find likeliest.

The models are run elsewhere (`pipeline`, in batches over many fields): here their outputs are
only weighed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from trainer import strings
from worker.reading.inference import Classifier, Prediction
from worker.reading.pieces import Box, Option, Piece, Run
from worker.reading.segment import Field


@dataclass(frozen=True)
class ChoiceConfig:
    """Which readings of a field are offered, and how the CNN and the string reader score them."""

    sure: float = 0.9999  # a mark read alone this surely is not offered cut into touching digits
    join_cost: float = 0.1  # log-likelihood a reading pays per separate mark it joins into a digit
    texts: int = 16  # strings kept per field from the segmenter's readings, likeliest first
    second: float = 0.01  # a digit read this likely is offered too, besides the likeliest
    reads: int = 3  # digits one piece is offered as, at most (a field's readings multiply)
    doubt: float = 0.1  # odds that a piece is framed too badly for its reading to mean anything
    # columns the reader's views of a line are moved by (the first is decoded)
    view_shifts: tuple[int, ...] = (0, -2, 2)
    # a string's score sums two models' log-likelihoods of one ink, which share much of their
    # evidence: its share of the probability is taken from their mean, each counted once
    models: int = 2


CHOICE = ChoiceConfig()

Fits = Callable[[str], bool]  # whether a string has a field's shape (its digit count, pattern)
Candidates = dict[str, tuple[float, list[Piece]]]  # string: the CNN's fit and the digits' pieces


@dataclass
class Digit:
    """One digit read: its label, confidence and box (x, y, w, h) in the scan. The confidence
    is the lesser of the two models' where both read the digit: the classifier from its ink,
    the string reader from the line."""

    label: int
    confidence: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Choice:
    """The string chosen for a field: its digits, the marks on the line of writing that none of
    them reads (the string reader's own string can pass a mark by), the string reader's own
    reading where it differs, and the string's share of the probability of all strings
    scored."""

    digits: list[Digit]
    skipped: list[Box]
    disputed: str | None = None
    share: float = 1.0


def to_cut(run: Run, predictions: dict[Piece, Prediction], classifier: Classifier) -> list[int]:
    """The marks of `run` to offer cut into touching digits: those that, read alone, are not a
    sure digit (a cut could hardly beat a sure reading), if the model can tell a bad cut."""
    if not classifier.judges_cuts:
        return []
    return [i for i in run.marks if predictions[run.whole(i, i)].confidence < CHOICE.sure]


def candidates(options: list[list[Option]], predictions: dict[Piece, Prediction]) -> Candidates:
    """The `texts` likeliest strings the segmenter's readings of a field's runs give, each with
    its fit and its digits, run by run keeping the likeliest per string. A reading's fit is the
    product of its digits' probabilities, each hedged by _log_fit (a model with a "not one
    digit" class gives a wrong cut's pieces low ones), less a little for each join, so that on
    a tie separate marks stay separate digits; a piece is read as its likeliest digit, or
    another `second` likely."""
    texts: Candidates = {"": (0.0, [])}
    for group in options:
        longer: Candidates = {}
        for option in group:
            read = [predictions[p] for p in option.pieces]
            offered = [p.likely(CHOICE.second)[: CHOICE.reads] for p in read]
            for digits in itertools.product(*offered):
                fit = sum(_log_fit(p.probability(d)) for p, d in zip(read, digits, strict=True))
                fit -= CHOICE.join_cost * option.joins
                key = "".join(map(str, digits))
                for text, (before, pieces) in texts.items():
                    if text + key not in longer or longer[text + key][0] < before + fit:
                        longer[text + key] = (before + fit, pieces + option.pieces)
        texts = dict(sorted(longer.items(), key=lambda kv: -kv[1][0])[: CHOICE.texts])
    return texts


def _log_fit(probability: float) -> float:
    """How well a piece's ink fits a digit the CNN gives `probability`: that probability mixed
    with a uniform guess at odds `doubt`, so no one piece cut or framed badly (a sliver of a
    neighbour, a box line left in) can veto a string on its own."""
    return math.log((1 - CHOICE.doubt) * probability + CHOICE.doubt / 10)


def views(lines: np.ndarray) -> np.ndarray:
    """The string reader's views of framed `lines` (N, height, width) in one batch: all of them
    moved by each of `view_shifts` in turn."""
    return np.concatenate([_shifted(lines, dx) for dx in CHOICE.view_shifts])


def _shifted(lines: np.ndarray, columns: int) -> np.ndarray:
    """`lines` moved right by `columns` (left if negative), blank where they leave the frame."""
    moved = np.zeros_like(lines)
    if columns >= 0:
        moved[:, :, columns:] = lines[:, :, : lines.shape[2] - columns]
    else:
        moved[:, :, :columns] = lines[:, :, -columns:]
    return moved


@dataclass
class Transcript:
    """A field as the string reader reads it: its logits for each of `view_shifts`, and its
    digits with the reader's confidence and their span of the line."""

    found: Field
    views: np.ndarray  # (len(view_shifts), steps, 11)
    digits: list[tuple[int, float, tuple[int, int]]]
    centres: list[float]  # the line columns each digit was read at
    fit: float = 0.0  # the classifier's log-likelihood of those digits, read from their ink
    said: list[float] = field(default_factory=list)  # ...and its probability of each

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

    def judge(self, probabilities: Sequence[np.ndarray]) -> None:
        """Set `said` and `fit` from the classifier's softmax for each of `pieces`: for a
        string the segmenter did not offer, the CNN's say on it."""
        self.said = [
            float(row[d]) for row, (d, _, _) in zip(probabilities, self.digits, strict=True)
        ]
        self.fit = sum(_log_fit(p) for p in self.said)


def transcripts(fields: list[Field], logits: np.ndarray) -> list[Transcript]:
    """Each field's transcript, from the reader's logits for the `views` of all their lines."""
    by_view = logits.reshape(len(CHOICE.view_shifts), len(fields), *logits.shape[1:])
    return [_transcript(found, by_view[:, n]) for n, found in enumerate(fields)]


def _transcript(found: Field, views: np.ndarray) -> Transcript:
    """The field's transcript from its logits for each view: its digits decoded from the first
    (the unshifted line), each spanning the line between the midpoints to its neighbours."""
    read = strings.decode(views[0])
    centres = [(first + last) // 2 for _, (first, last), _ in read]
    cuts = [(a + b) // 2 for a, b in itertools.pairwise(centres)]
    spans = zip([0, *cuts], [*cuts, strings.WIDTH], strict=True) if read else []
    digits = [(d, p, columns) for (d, _, p), columns in zip(read, spans, strict=True)]
    return Transcript(found, views, digits, [float(c) for c in centres])


def best(
    found: Field,
    texts: Candidates,
    predictions: dict[Piece, Prediction],
    transcript: Transcript | None,
    fits: Fits | None = None,
) -> Choice:
    """The field's likeliest string, among those that `fits` if any string offered does.
    With a string reader's `transcript`, each string the segmenter offers and the reader's own
    are scored by both models (the sum of their log-likelihoods); the winner's share of the
    probability of all strings scored (from the mean of the two) caps the string's confidence;
    where the reader alone reads another string (of the field's shape), the choice is
    disputed. A segmenter's string reads every mark on the line; the reader's, each run of
    marks (one digit, or parts of one) that one of its digits lies nearest to, and skips the
    others."""
    disputed = None
    # a reader that reads nothing where there is ink tells nothing
    if transcript is None or not transcript.text:
        scores, share = {text: fit for text, (fit, _) in texts.items()}, 1.0
        chosen = _likeliest(scores, fits)
    else:
        scores = {t: fit + transcript.likelihood(t) for t, (fit, _) in texts.items()}
        own = transcript.text
        scores.setdefault(own, transcript.fit + transcript.likelihood(own))
        chosen = _likeliest(scores, fits)
        share = 1.0 / sum(
            math.exp((score - scores[chosen]) / CHOICE.models) for score in scores.values()
        )
        if own != chosen and (fits is None or fits(own)):
            disputed = own
    if chosen in texts:
        # where the reader reads the same string, each digit is as sure as the less sure model
        agreed = transcript is not None and transcript.text == chosen
        reader = [p for _, p, _ in transcript.digits] if agreed else [1.0] * len(chosen)
        digits = [
            Digit(int(d), min(predictions[p].probability(int(d)), sure), p.box)
            for d, p, sure in zip(chosen, texts[chosen][1], reader, strict=True)
        ]
        return Choice(digits, [], disputed, share)
    spans = [
        (found.marks[run.marks[0]].columns[0], found.marks[run.marks[-1]].columns[1])
        for run in found.runs
    ]
    read = {
        int(np.argmin([max(lo - c, c - hi, 0) for lo, hi in spans])) for c in transcript.centres
    }
    skipped = [
        found.marks[i].box for k, run in enumerate(found.runs) if k not in read for i in run.marks
    ]
    digits = [
        Digit(d, min(p, said), piece.box)
        for (d, p, _), piece, said in zip(
            transcript.digits, transcript.pieces, transcript.said, strict=True
        )
    ]
    return Choice(digits, skipped, share=share)


def _likeliest(scores: dict[str, float], fits: Fits | None) -> str:
    """The highest-scoring string, among those that `fits` when there are any."""
    fitting = [text for text in scores if fits and fits(text)] or list(scores)
    return max(fitting, key=scores.__getitem__)
