"""Choosing among a field's readings: the most likely wins, by the classifier and the string
reader together; the record's text, label and confidence follow from its digits; each page of
a multi-page input is read on its own."""

from __future__ import annotations

import csv
import io
from functools import partial

import cv2
import numpy as np
import pytest

from trainer import strings
from worker import results
from worker.forms.templates import FieldSpec, Template
from worker.manifest import Item
from worker.reading import pipeline
from worker.reading.inference import Prediction


class Shapes:
    """A stand-in classifier: a piece framed taller than wide is a confident 7, anything wider
    (such as two digits squeezed into one frame) a doubtful 0, as a model with a "not one digit"
    class would have it."""

    version = 1
    judges_cuts = True
    reads_lines = False

    def predict(self, images: np.ndarray) -> list[Prediction]:
        tall = [np.count_nonzero(image.max(axis=1) > 0.1) >= 19 for image in images]
        return [Prediction(7, 0.99) if t else Prediction(0, 0.3) for t in tall]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """The same, as softmax rows: the rest of the probability spread over the others."""
        rows = []
        for p in self.predict(images):
            row = np.full(11, (1 - p.confidence) / 10)
            row[p.label] = p.confidence
            rows.append(row)
        return np.array(rows)


def png(ink: np.ndarray) -> bytes:
    return cv2.imencode(".png", (255 - 200 * ink).astype(np.uint8))[1].tobytes()


def touching_sevens() -> bytes:
    ink = np.zeros((120, 200), np.float32)
    for x in (40, 84):  # two 7s whose bars touch
        points = np.int32([[x, 30], [x + 46, 30], [x + 16, 90]])
        cv2.polylines(ink, [points], False, 1.0, 5, cv2.LINE_AA)
    return png(ink)


def test_touching_pair_reads_as_two_digits() -> None:
    (reading,), seconds = pipeline.read([touching_sevens()], lambda data: data, Shapes())
    assert reading.text == "77" and reading.label is None and reading.error is None
    assert reading.confidence == 0.99 and len(reading.digits) == 2
    assert reading.digits[0].box[0] < reading.digits[1].box[0]
    assert set(seconds) >= {"fetch", "decode", "preprocess", "infer"}


class Spelling(Shapes):
    """Shapes, with a string reader that reads every line as `text`, surely."""

    reads_lines = True

    def __init__(self, text: str) -> None:
        self.text = text

    def read_lines(self, lines: np.ndarray) -> np.ndarray:
        logits = np.zeros((len(lines), strings.WIDTH // strings.STEP, 11), np.float32)
        logits[:, :, 0] = 20.0  # blank everywhere but one step per digit, spread out
        for i, digit in enumerate(self.text):
            step = 4 + i * 8
            logits[:, step, 0], logits[:, step, int(digit) + 1] = 0.0, 20.0
        return logits


def test_a_reading_both_models_agree_on_keeps_its_confidence() -> None:
    (reading,), _ = pipeline.read([touching_sevens()], lambda data: data, Spelling("77"))
    assert reading.text == "77" and reading.confidence == 0.99


def test_a_reader_that_reads_nothing_leaves_the_segmenters_reading() -> None:
    (reading,), _ = pipeline.read([touching_sevens()], lambda data: data, Spelling(""))
    assert reading.text == "77" and reading.error is None


def test_the_string_reader_overrules_a_doubtful_segmentation() -> None:
    (reading,), _ = pipeline.read([touching_sevens()], lambda data: data, Spelling("717"))
    assert reading.text == "717" and len(reading.digits) == 3
    lefts = [digit.box[0] for digit in reading.digits]
    assert lefts == sorted(lefts) and all(digit.box[2] > 0 for digit in reading.digits)


def sevens(xs: tuple[int, ...], below: int | None = None) -> bytes:
    """Separate 7s at `xs` on one line, and one more `below` it (at that x) if given."""
    ink = np.zeros((220, max(xs) + 100), np.float32)
    for x, y in [(x, 30) for x in xs] + ([(below, 150)] if below is not None else []):
        points = np.int32([[x, y], [x + 40, y], [x + 14, y + 60]])
        cv2.polylines(ink, [points], False, 1.0, 5, cv2.LINE_AA)
    return png(ink)


def test_marks_the_reading_leaves_out_are_named_and_sent_to_review() -> None:
    far_apart = sevens((30, 200, 420))
    (reading,), _ = pipeline.read([far_apart], lambda data: data, Spelling("7"))
    assert reading.text == "7"  # the reader, surer than the segmenter, read one digit of three
    assert [mark.why for mark in reading.left_out] == [pipeline.NOT_READ] * 2
    assert [mark.box[0] for mark in reading.left_out] == pytest.approx([200, 420], abs=10)
    assert reading.confidence <= pipeline.UNACCOUNTED
    record = results.record("f.png", None, reading, 1, 0.1)  # however low the threshold
    assert record["needs_review"] and record["review_reason"] == "2 marks not read"
    assert len(record["left_out"]) == 2
    row = next(csv.DictReader(io.StringIO(results.csv_bytes([record]).decode())))
    assert row["needs_review"] == "True" and row["review_reason"] == "2 marks not read"


def test_a_mark_off_the_line_is_named() -> None:
    (reading,), _ = pipeline.read([sevens((30, 110), below=60)], lambda data: data, Spelling("77"))
    assert reading.text == "77"
    ((mark,),) = [reading.left_out]
    assert mark.why == pipeline.OFF_LINE and abs(mark.box[1] - 150) <= 6
    record = results.record("f.png", None, reading, 1, 0.8)
    assert record["needs_review"] and record["review_reason"] == "1 mark off the line"


def test_a_digit_too_light_to_read_is_named_not_read() -> None:
    """A 7 written so lightly that it is no mark to read, though plainly ink on the paper: the
    reading of the others is not sure, and names it."""
    ink = np.zeros((220, 520), np.float32)
    for x, weight in ((30, 1.0), (200, 1.0), (420, 0.04)):
        points = np.int32([[x, 30], [x + 40, 30], [x + 14, 90]])
        cv2.polylines(ink, [points], False, weight, 5, cv2.LINE_AA)
    (reading,), _ = pipeline.read([png(ink)], lambda data: data, Spelling("77"))
    assert reading.text == "77"
    ((mark,),) = [reading.left_out]
    assert mark.why == pipeline.NOT_READ and abs(mark.box[0] - 420) <= 8
    record = results.record("f.png", None, reading, 1, 0.1)
    assert record["needs_review"] and record["review_reason"] == "1 mark not read"


def test_a_reading_of_every_mark_far_apart_is_not_sent_to_review() -> None:
    (reading,), _ = pipeline.read([sevens((30, 200, 420))], lambda data: data, Spelling("777"))
    assert reading.text == "777" and not reading.left_out
    assert not results.record("f.png", None, reading, 1, 0.8)["needs_review"]


def test_the_reader_sees_every_line_in_each_shift_in_one_pass() -> None:
    shown: list[np.ndarray] = []

    class Watched(Spelling):
        """Spelling, keeping each batch of lines it is shown."""

        def read_lines(self, lines: np.ndarray) -> np.ndarray:
            shown.append(lines)
            return super().read_lines(lines)

    readings, _ = pipeline.read([touching_sevens()] * 2, lambda data: data, Watched("77"))
    assert [r.text for r in readings] == ["77", "77"]
    (lines,) = shown
    assert len(lines) == 2 * len(pipeline.VIEW_SHIFTS)
    line, width = lines[0], lines.shape[2]
    for k, columns in enumerate(pipeline.VIEW_SHIFTS):
        view = lines[2 * k]
        assert np.array_equal(view[:, 2:-2], line[:, 2 - columns : width - 2 - columns])


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


def test_one_digit_has_a_label_and_errors_are_per_image() -> None:
    ink = np.zeros((120, 120), np.float32)
    cv2.polylines(ink, [np.int32([[40, 30], [80, 30], [55, 90]])], False, 1.0, 5, cv2.LINE_AA)
    readings, _ = pipeline.read([png(ink), b"not an image"], lambda data: data, Shapes())
    assert readings[0].label == 7 and readings[0].text == "7"
    assert readings[1].error and readings[1].text == "" and readings[1].confidence == 0.0


def test_hostile_pages_get_a_one_line_error_or_a_reading() -> None:
    rng = np.random.default_rng(0)
    pages = {
        "white": np.full((300, 400), 255, np.uint8),
        "black": np.zeros((300, 400), np.uint8),
        "noise": rng.integers(0, 256, (400, 400), dtype=np.uint8),
        "speckles": np.where(rng.random((600, 600)) < 0.02, 0, 255).astype(np.uint8),
        "one pixel": np.zeros((1, 1), np.uint8),
    }
    files = [cv2.imencode(".png", page)[1].tobytes() for page in pages.values()]
    readings, _ = pipeline.read(files, lambda data: data, Shapes())
    for name, reading in zip(pages, readings, strict=True):
        assert reading.error or reading.digits, name
        assert reading.error is None or "\n" not in reading.error
    assert "no ink" in readings[0].error and "no ink" in readings[1].error


def test_store_refusals_are_per_image_errors(tmp_path) -> None:
    from trainer.storage import open_store

    (tmp_path / "secret.png").write_bytes(touching_sevens())
    store = open_store(f"file://{tmp_path / 'store'}")
    store.check()
    (tmp_path / "store" / "link.png").symlink_to(tmp_path / "secret.png")
    (reading,), _ = pipeline.read(["link.png"], store.get, Shapes())
    assert reading.error.startswith("cannot fetch the input") and "leads out of the store" in (
        reading.error
    )
    (reading,), _ = pipeline.read(["../secret.png"], store.get, Shapes())
    assert reading.error == "cannot fetch the input: invalid object key '../secret.png'"
    store.put("big.png", touching_sevens())
    (reading,), _ = pipeline.read(["big.png"], partial(store.get, limit=100), Shapes())
    assert reading.error.startswith("file too large (") and "over the limit of 100)" in (
        reading.error
    )


def test_a_store_failure_reaches_the_task_retry_and_a_missing_input_does_not() -> None:
    """A store that fails (unreachable, throttling, a 5xx) fails the chunk, whose task retries
    it with backoff; an input that is not there is that image's error alone."""
    from trainer.storage import ObjectMissing, StoreError

    def failing(item: str) -> bytes:
        raise StoreError("S3 get_object failed on s3://scans: SlowDown")

    def missing(item: str) -> bytes:
        raise ObjectMissing(item)

    with pytest.raises(StoreError, match="SlowDown"):
        pipeline.read(["a.png", "b.png"], failing, Shapes())
    form = Template("f", (FieldSpec("n", (0.1, 0.1, 0.5, 0.1)),))
    with pytest.raises(StoreError, match="SlowDown"):
        pipeline.read_forms(["a.png"], failing, Shapes(), form)
    (reading,), _ = pipeline.read(["gone.png"], missing, Shapes())
    assert reading.error == "input object not found in the store"


def test_items_naming_a_page_read_that_page() -> None:
    pages = []
    for starts in ([40], [20, 120]):  # one 7, then two apart
        ink = np.zeros((120, 200), np.float32)
        for x in starts:
            cv2.polylines(ink, [np.int32([[x, 30], [x + 40, 30], [x + 15, 90]])], False, 1, 5)
        pages.append((255 - 200 * ink).astype(np.uint8))
    tiff = cv2.imencodemulti(".tiff", pages)[1].tobytes()
    items = [Item("t.tif#1", "k", 1), Item("t.tif#2", "k", 2), Item("t.tif#3", "k", 3), "t.tif"]
    readings, _ = pipeline.read(items, lambda item: tiff, Shapes())
    assert [r.text for r in readings] == ["7", "77", "", "7"]
    assert readings[2].error == "no page 3 (the file has 2)"


def test_a_form_page_is_aligned_and_each_field_read_at_its_length() -> None:
    form = Template(
        "sevens",
        (
            FieldSpec("left", (0.1, 0.2, 0.4, 0.06), digits=3),
            FieldSpec("right", (0.55, 0.2, 0.35, 0.06)),
            FieldSpec("low", (0.1, 0.5, 0.5, 0.06), digits=4),
        ),
    )
    page = np.zeros((1400, 1000), np.float32)
    counts = {"left": 3, "right": 2, "low": 0}  # "low" is left blank
    for spec in form.fields:
        x, y, w, h = (np.array(spec.box) * [1000, 1400, 1000, 1400]).astype(int)
        cv2.rectangle(page, (x, y), (x + w, y + h), 1.0, 3)
        for n in range(counts[spec.name]):
            left, top = x + 30 + 70 * n, y + 15
            points = np.int32([[left, top], [left + 40, top], [left + 14, top + 50]])
            cv2.polylines(page, [points], False, 1.0, 5, cv2.LINE_AA)
    turn = cv2.getRotationMatrix2D((500, 700), 3.0, 1.02)
    scan = cv2.warpAffine(page, turn, (1000, 1400))
    forms, seconds = pipeline.read_forms([png(scan), b"junk"], lambda data: data, Shapes(), form)
    read = forms[0].fields
    assert forms[0].error is None and list(read) == ["left", "right", "low"]
    assert read["left"].text == "777" and read["right"].text == "77"
    assert read["low"].error and read["low"].text == ""
    assert forms[1].error and not forms[1].fields
    assert "align" in seconds


def test_a_fields_shape_picks_the_likeliest_string_that_fits() -> None:
    scores = {"12": -1.0, "123": -2.0, "1234": -3.0}
    assert pipeline._best(scores, None) == "12"
    assert pipeline._best(scores, FieldSpec("n", (0, 0, 1, 1), digits=3).fits) == "123"
    assert pipeline._best(scores, FieldSpec("n", (0, 0, 1, 1), pattern="1234|99").fits) == "1234"
    assert (
        pipeline._best({"12": -1.0, "1234": -3.0}, FieldSpec("n", (0, 0, 1, 1), digits=3).fits)
        == "12"
    )


def test_a_digits_second_likeliest_reading_is_offered_for_the_shape_to_pick() -> None:
    one, two = (pipeline.Piece(np.zeros((28, 28), np.float32), (0, 0, 1, 1)) for _ in range(2))
    probabilities = np.zeros((2, 11), np.float32)
    probabilities[0, [1, 7]] = 0.9, 0.1  # a 1, or maybe a 7
    probabilities[1, 2] = 1.0
    predictions = {
        piece: Prediction(int(row.argmax()), float(row.max()), row)
        for piece, row in zip((one, two), probabilities, strict=True)
    }
    texts = pipeline._texts([[pipeline.Option([one], 0)], [pipeline.Option([two], 0)]], predictions)
    assert list(texts) == ["12", "72"]
    blank = pipeline.Field([], np.zeros((32, 256), np.float32), lambda *_: one, [], [], [])
    reading = pipeline._choose(
        blank, texts, predictions, None, FieldSpec("n", (0, 0, 1, 1), pattern="7.").fits
    )
    assert reading.text == "72" and abs(reading.digits[0].confidence - 0.1) < 1e-6
