"""Reading a list of images: each read whole or as a form's fields, its digits boxed in the
scan, every mark it leaves out named, and a one-line error for an image that cannot be read;
each page of a multi-page input is read on its own."""

from __future__ import annotations

import csv
import io
from functools import partial

import cv2
import numpy as np
import pytest

from tests.reading.stand_ins import Shapes, Spelling, png, touching_sevens
from worker import results
from worker.forms.templates import FieldSpec, Template
from worker.manifest import Item
from worker.reading import pipeline
from worker.reading.choose import CHOICE


def test_touching_pair_reads_as_two_digits() -> None:
    (reading,), seconds = pipeline.read([touching_sevens()], lambda data: data, Shapes())
    assert reading.text == "77" and reading.label is None and reading.error is None
    assert reading.confidence == pytest.approx(0.99**2) and len(reading.digits) == 2
    assert reading.digits[0].box[0] < reading.digits[1].box[0]
    assert set(seconds) >= {"fetch", "decode", "preprocess", "infer"}


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
    record = results.Record.of(
        "f.png", None, reading, 1, 0.1
    ).to_dict()  # however low the threshold
    assert record["needs_review"] and record["review_reason"] == "2 marks not read"
    assert len(record["left_out"]) == 2
    row = next(csv.DictReader(io.StringIO(results.csv_bytes([record]).decode())))
    assert row["needs_review"] == "True" and row["review_reason"] == "2 marks not read"


def test_a_mark_off_the_line_is_named() -> None:
    (reading,), _ = pipeline.read([sevens((30, 110), below=60)], lambda data: data, Spelling("77"))
    assert reading.text == "77"
    ((mark,),) = [reading.left_out]
    assert mark.why == pipeline.OFF_LINE and abs(mark.box[1] - 150) <= 6
    record = results.Record.of("f.png", None, reading, 1, 0.8).to_dict()
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
    record = results.Record.of("f.png", None, reading, 1, 0.1).to_dict()
    assert record["needs_review"] and record["review_reason"] == "1 mark not read"


def test_a_reading_of_every_mark_far_apart_is_not_sent_to_review() -> None:
    (reading,), _ = pipeline.read([sevens((30, 200, 420))], lambda data: data, Spelling("777"))
    assert reading.text == "777" and not reading.left_out
    assert not results.Record.of("f.png", None, reading, 1, 0.8).to_dict()["needs_review"]


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
    assert len(lines) == 2 * len(CHOICE.view_shifts)
    line, width = lines[0], lines.shape[2]
    for k, columns in enumerate(CHOICE.view_shifts):
        view = lines[2 * k]
        assert np.array_equal(view[:, 2:-2], line[:, 2 - columns : width - 2 - columns])


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
    from trainer.errors import ObjectMissing, StoreError

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
