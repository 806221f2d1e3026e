"""Page alignment on forms drawn here: a title, labels, small print, plain and comb boxes with
scribbled digits (some over the boxes' edges), scanned turned, scaled and moved, tinted, blurred,
noisy and JPEG'd; the fields land within 2 px, crops hold the whole box upright, one box found
is enough, and a page without boxes is an AlignError."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trainer.errors import AlignError
from worker.forms.align import Alignment, align
from worker.forms.templates import FieldSpec, Template

W, H = 1654, 2339  # A4 at 200 dpi
LINE = 3  # px: the boxes' lines
FONT = cv2.FONT_HERSHEY_SIMPLEX
# name, the box's outer edge in pixels (first and past the last column, first and past the last
# row), and its cells (0: a plain box)
FIELDS = [
    ("account", (500, 370, 1330, 450), 8),
    ("amount", (500, 560, 1000, 640), 0),
    ("date", (500, 750, 930, 830), 8),
    ("ref", (200, 1290, 800, 1380), 0),
    ("code", (1030, 1290, 1230, 1380), 3),
]
# day, month and year share their sides, as in a row of a table
ROW = [
    ("day", (500, 1000, 643, 1080), 2),
    ("month", (640, 1000, 783, 1080), 2),
    ("year", (780, 1000, 1063, 1080), 4),
]
TOLERANCE = 2.0  # px


def form(fields: list = FIELDS, size: tuple[int, int] = (W, H)) -> np.ndarray:
    """A light page with a title, small print, a signature line and the fields' boxes, each
    labelled and scribbled in, some strokes over the box's edge."""
    rng = np.random.default_rng(7)
    page = np.full(size[::-1], 250, np.uint8)
    cv2.putText(page, "EXPENSE CLAIM", (150, 200), FONT, 3, 20, 6, cv2.LINE_AA)
    for i in range(4):
        text = "Write one digit in each box, in black or blue ink. Keep inside the lines."
        cv2.putText(page, text, (150, 1600 + 45 * i), FONT, 1.1, 40, 2, cv2.LINE_AA)
    cv2.line(page, (900, 1500), (1500, 1500), 30, LINE)
    for name, (x0, y0, x1, y1), cells in fields:
        page[y0:y1, x0:x1] = 30
        page[y0 + LINE : y1 - LINE, x0 + LINE : x1 - LINE] = 250
        for c in range(1, cells):
            x = x0 + (x1 - x0) * c // cells
            page[y0:y1, x - 1 : x + 1] = 30
        cv2.putText(page, name.upper(), (x0, y0 - 15), FONT, 1.2, 30, 3, cv2.LINE_AA)
        count = cells or 5
        for c in range(count):
            left = x0 + (x1 - x0) * c / count
            xs = left + (x1 - x0) / count * rng.uniform(0.15, 0.85, 4)
            ys = rng.uniform(y0 + 0.15 * (y1 - y0), y1 - 0.15 * (y1 - y0), 4)
            if rng.random() < 0.3:
                ys[-1] = y1 + rng.uniform(5, 30)
            stroke = np.stack([xs, ys], axis=1).astype(np.int32)
            cv2.polylines(page, [stroke], False, 60, int(rng.integers(3, 6)), cv2.LINE_AA)
    return page


def template(fields: list = FIELDS, size: tuple[int, int] = (W, H)) -> Template:
    """The fields as a template: pixel i spans i - 0.5 to i + 0.5 in OpenCV's coordinates."""
    w, h = size
    return Template(
        "claim",
        tuple(
            FieldSpec(name, ((x0 - 0.5) / w, (y0 - 0.5) / h, (x1 - x0) / w, (y1 - y0) / h))
            for name, (x0, y0, x1, y1), _ in fields
        ),
    )


def scan(
    page: np.ndarray, angle: float, scale: float, shift: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The page turned by `angle` degrees and scaled about its centre, moved by `shift` of its
    size, unevenly tinted, blurred, noisy and JPEG'd; and the transform, page to scan."""
    h, w = page.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += (shift[0] * w, shift[1] * h)
    out = cv2.warpAffine(page, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)
    out = cv2.GaussianBlur(out, (0, 0), 0.8).astype(np.float32)
    out *= np.linspace(0.75, 1.0, w, dtype=np.float32)
    out += np.random.default_rng(1).normal(0, 6, out.shape).astype(np.float32)
    quality = [cv2.IMWRITE_JPEG_QUALITY, 60]
    _, jpeg = cv2.imencode(".jpg", np.clip(out, 0, 255).astype(np.uint8), quality)
    return cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE), matrix


def truth(field: FieldSpec, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The field's box corners on the scan, clockwise from the top left."""
    h, w = shape
    x, y, bw, bh = field.box
    box = np.float64([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]]) * (w, h)
    return box @ matrix[:, :2].T + matrix[:, 2]


def worst(
    alignment: Alignment, fields: tuple[FieldSpec, ...], matrix: np.ndarray, shape: tuple[int, ...]
) -> float:
    """The largest distance (px, along x or y) of any field's corner from where it truly is."""
    return max(
        float(np.abs(alignment.corners(field, shape) - truth(field, matrix, shape)).max())
        for field in fields
    )


@pytest.mark.parametrize(
    ("angle", "scale", "shift"),
    [
        (0.0, 1.0, (0.0, 0.0)),
        (5.0, 1.05, (0.05, 0.05)),
        (-5.0, 0.95, (-0.05, -0.05)),
        (2.3, 0.97, (0.04, -0.03)),
        (-3.7, 1.03, (-0.02, 0.05)),
        (0.4, 1.0, (0.05, -0.05)),
    ],
)
def test_fields_land_where_they_are(angle: float, scale: float, shift: tuple) -> None:
    page, matrix = scan(form(FIELDS + ROW), angle, scale, shift)
    fields = template(FIELDS + ROW)
    alignment = align(page, fields)
    assert alignment.matched == len(fields.fields)
    assert worst(alignment, fields.fields, matrix, page.shape) <= TOLERANCE
    assert alignment.matrix.shape == (2, 3)
    assert abs(np.linalg.det(alignment.matrix[:, :2]) - scale**2) < 0.01


def test_a_table_of_like_boxes_lands_on_the_right_row() -> None:
    # a shift of a row and a bit: one row off, all boxes but a row's land on boxes too
    cells = [
        (f"r{row}c{col}", (300 + 250 * col, 900 + 60 * row, 553 + 250 * col, 963 + 60 * row), 0)
        for row in range(12)
        for col in range(3)
    ]
    page, matrix = scan(form(cells), -1.5, 1.01, (0.01, 0.03))
    fields = template(cells)
    alignment = align(page, fields)
    assert alignment.matched == len(cells)
    assert worst(alignment, fields.fields, matrix, page.shape) <= TOLERANCE


def test_crops_hold_the_whole_box_upright() -> None:
    page, _ = scan(form(), 4.0, 1.04, (0.03, -0.02))
    fields = template()
    alignment = align(page, fields)
    for field, (_, (x0, y0, x1, y1), _) in zip(fields.fields, FIELDS, strict=True):
        crop = alignment.crop(page, field, margin=0.25)
        pad, width, height = 0.25 * (y1 - y0) * 1.04, (x1 - x0) * 1.04, (y1 - y0) * 1.04
        assert crop.shape == pytest.approx((height + 2 * pad, width + 2 * pad), abs=1.5)
        dark = crop < 128
        top, left, bottom, right = (round(v) for v in (pad, pad, pad + height, pad + width))
        # each side of the box is a line of ink along the crop, where it should be: upright
        assert dark[top - 2 : top + 4, left:right].any(axis=0).mean() > 0.95
        assert dark[bottom - 4 : bottom + 2, left:right].any(axis=0).mean() > 0.95
        assert dark[top:bottom, left - 2 : left + 4].any(axis=1).mean() > 0.95
        assert dark[top:bottom, right - 4 : right + 2].any(axis=1).mean() > 0.95
        assert dark[:, : left - 3].mean() < 0.02  # and paper beyond it


def test_a_page_at_150_dpi_decoded_to_floats() -> None:
    fields = [(name, tuple(round(v * 0.75) for v in box), cells) for name, box, cells in FIELDS]
    size = (1240, 1754)
    page, matrix = scan(form(fields, size), -2.0, 1.02, (-0.03, 0.04))
    alignment = align(page.astype(np.float32) / 255, template(fields, size))
    assert alignment.matched == len(fields)
    assert worst(alignment, template(fields, size).fields, matrix, page.shape) <= TOLERANCE


def test_one_box_found_is_enough() -> None:
    page, matrix = scan(form(FIELDS[1:2]), 3.0, 0.97, (0.02, 0.03))
    alignment = align(page, template())  # the other four boxes are not printed
    assert alignment.matched == 1
    amount = template().fields[1]
    assert worst(alignment, (amount,), matrix, page.shape) <= TOLERANCE
    # and the boxes not printed are placed from it, less exactly the further they are
    assert worst(alignment, template().fields, matrix, page.shape) <= 5


def test_a_page_without_boxes_is_an_align_error() -> None:
    blank, _ = scan(np.full((H, W), 250, np.uint8), 0.0, 1.0, (0.0, 0.0))
    with pytest.raises(AlignError, match=r"^cannot align the page to template 'claim': none of"):
        align(blank, template())
    text_only = form([])  # the title, small print and signature line, but no boxes
    with pytest.raises(AlignError, match=r"none of its 5 field boxes found$"):
        align(scan(text_only, 1.0, 1.0, (0.0, 0.0))[0], template())
