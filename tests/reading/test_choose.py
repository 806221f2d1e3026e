"""Choosing among a field's readings: the likeliest wins, by the classifier and the string
reader together; a field's shape picks among them; only a mark the classifier is unsure of is
offered cut, and only by a model that can tell a bad cut."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reading.stand_ins import Shapes, Spelling, touching_sevens
from worker.forms.templates import FieldSpec
from worker.reading import choose, pipeline
from worker.reading.choose import Fits
from worker.reading.inference import Prediction
from worker.reading.pieces import Option, Piece
from worker.reading.segment import Field


def blank() -> Piece:
    return Piece(np.zeros((28, 28), np.float32), (0, 0, 1, 1))


def field_without_marks() -> Field:
    """A field to choose among strings offered by hand: no marks, and no ink under its line."""
    return Field([], np.zeros((32, 256), np.float32), lambda *_: blank(), [], [], [])


def test_a_reading_both_models_agree_on_is_as_sure_as_its_digits_together() -> None:
    (reading,), _ = pipeline.read([touching_sevens()], lambda data: data, Spelling("77"))
    assert reading.text == "77" and [d.confidence for d in reading.digits] == [0.99, 0.99]
    assert reading.confidence == pytest.approx(0.99 * 0.99)


class Doubting(Spelling):
    """Spelling, with a reader that reads the last digit only about as likely as not: a 1
    nearly as likely."""

    def read_lines(self, lines: np.ndarray) -> np.ndarray:
        logits = super().read_lines(lines)
        step = 4 + (len(self.text) - 1) * 8
        logits[:, step, int(self.text[-1]) + 1], logits[:, step, 2] = 3.0, 2.5
        return logits


def test_a_digit_the_string_reader_doubts_is_doubtful_however_sure_the_cnn() -> None:
    """Both models read 77; the CNN is sure of both 7s, the reader of the first only. A digit
    is as sure as the less sure model, and the field as its digits together."""
    (reading,), _ = pipeline.read([touching_sevens()], lambda data: data, Doubting("77"))
    assert reading.text == "77" and reading.disputed is None
    first, last = (d.confidence for d in reading.digits)
    assert first == 0.99 and last == pytest.approx(0.49, abs=0.02)
    assert reading.confidence == pytest.approx(first * last)


def test_a_reader_that_reads_nothing_leaves_the_segmenters_reading() -> None:
    (reading,), _ = pipeline.read([touching_sevens()], lambda data: data, Spelling(""))
    assert reading.text == "77" and reading.error is None


def test_the_string_reader_overrules_a_doubtful_segmentation() -> None:
    (reading,), _ = pipeline.read([touching_sevens()], lambda data: data, Spelling("717"))
    assert reading.text == "717" and len(reading.digits) == 3
    lefts = [digit.box[0] for digit in reading.digits]
    assert lefts == sorted(lefts) and all(digit.box[2] > 0 for digit in reading.digits)


class Certain(Spelling):
    """Spelling, with a CNN that gives each piece's label all the probability and no other
    digit any."""

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        rows = super().probabilities(images)
        return (rows == rows.max(axis=1, keepdims=True)).astype(np.float32)


def test_a_piece_the_cnn_rules_out_does_not_veto_a_sure_reader() -> None:
    # the reader's 1 falls on ink the CNN reads as 7 with probability 1 (a sliver, a box line)
    (reading,), _ = pipeline.read([touching_sevens()], lambda data: data, Certain("71"))
    assert reading.text == "71"


def test_no_cuts_for_a_model_that_cannot_judge_them() -> None:
    classifier = Shapes()
    classifier.judges_cuts = False  # a 10-class model reads any piece as some digit
    (reading,), _ = pipeline.read([touching_sevens()], lambda data: data, classifier)
    assert reading.text == "0" and reading.confidence == 0.3


def test_a_sure_reading_is_not_offered_cut() -> None:
    class Sure(Shapes):
        """Reads anything as a sure 0, and counts what it is shown."""

        shown = 0

        def predict(self, images: np.ndarray) -> list[Prediction]:
            self.shown += len(images)
            return [Prediction(0, 1.0)] * len(images)

    classifier = Sure()
    (reading,), _ = pipeline.read([touching_sevens()], lambda data: data, classifier)
    assert reading.text == "0" and classifier.shown == 1  # no cut piece was even framed


def chosen(fits: dict[str, float], shape: Fits | None) -> str:
    """The string chosen, without a string reader, among strings offered with these fits,
    each digit read surely."""
    pieces = {text: [blank() for _ in text] for text in fits}
    predictions = {
        piece: Prediction(int(d), 1.0)
        for text in fits
        for d, piece in zip(text, pieces[text], strict=True)
    }
    offered = {text: (fit, pieces[text]) for text, fit in fits.items()}
    choice = choose.best(field_without_marks(), offered, predictions, None, shape)
    return "".join(str(digit.label) for digit in choice.digits)


def test_a_fields_shape_picks_the_likeliest_string_that_fits() -> None:
    fits = {"12": -1.0, "123": -2.0, "1234": -3.0}
    assert chosen(fits, None) == "12"
    assert chosen(fits, FieldSpec("n", (0, 0, 1, 1), digits=3).fits) == "123"
    assert chosen(fits, FieldSpec("n", (0, 0, 1, 1), pattern="1234|99").fits) == "1234"
    assert chosen({"12": -1.0, "1234": -3.0}, FieldSpec("n", (0, 0, 1, 1), digits=3).fits) == "12"


def test_a_digits_second_likeliest_reading_is_offered_for_the_shape_to_pick() -> None:
    one, two = blank(), blank()
    probabilities = np.zeros((2, 11), np.float32)
    probabilities[0, [1, 7]] = 0.9, 0.1  # a 1, or maybe a 7
    probabilities[1, 2] = 1.0
    predictions = {
        piece: Prediction(int(row.argmax()), float(row.max()), row)
        for piece, row in zip((one, two), probabilities, strict=True)
    }
    texts = choose.candidates([[Option([one], 0)], [Option([two], 0)]], predictions)
    assert list(texts) == ["12", "72"]
    shape = FieldSpec("n", (0, 0, 1, 1), pattern="7.").fits
    choice = choose.best(field_without_marks(), texts, predictions, None, shape)
    assert [digit.label for digit in choice.digits] == [7, 2]
    assert abs(choice.digits[0].confidence - 0.1) < 1e-6
