"""MNIST-style normalisation on hand-made scans: polarity, position, size, aspect, blank pages."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trainer.errors import NoInkError
from worker.reading.preprocess import (
    _upper_quartile,
    extended,
    locate,
    prepare,
    to_mnist,
    visible,
)


def scan(size=(400, 400), box=(150, 100, 100, 160), thickness=12, dark_on_light=True):
    """A '7' drawn in box (x, y, w, h) on a canvas of `size` (h, w): float gray in [0, 1]."""
    ink = np.zeros(size, np.uint8)
    x, y, w, h = box
    points = np.array([[x, y], [x + w, y], [x + w // 3, y + h]], np.int32)
    cv2.polylines(ink, [points], False, 255, thickness, cv2.LINE_AA)
    gray = ink.astype(np.float32) / 255
    return 1.0 - 0.8 * gray if dark_on_light else gray


def normalise(gray: np.ndarray) -> np.ndarray:
    """The whole image's ink as one digit."""
    ink, mask, _ = prepare(gray)
    return to_mnist(ink, mask)


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    total = digit.sum()
    return (digit.sum(0) @ np.arange(28)) / total, (digit.sum(1) @ np.arange(28)) / total


def ink_box(digit: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(digit > 0.1)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


def test_output_is_mnist_frame() -> None:
    digit = normalise(scan())
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert digit.max() == pytest.approx(1.0, abs=0.05) and digit.min() >= 0
    cx, cy = centre_of_mass(digit)
    assert abs(cx - 14) < 0.5 and abs(cy - 14) < 0.5
    assert max(ink_box(digit)) in (20, 21, 22)


def test_polarity_does_not_matter() -> None:
    dark = normalise(scan(dark_on_light=True))
    light = normalise(scan(dark_on_light=False))
    assert np.abs(dark - light).mean() < 0.02


def test_off_centre_tiny_and_huge_digits_land_the_same() -> None:
    reference = normalise(scan())
    corner = normalise(scan(size=(600, 800), box=(620, 20, 100, 160)))
    tiny = normalise(scan(size=(300, 300), box=(30, 200, 12, 20), thickness=2))
    huge = normalise(scan(size=(2000, 1600), box=(300, 200, 800, 1280), thickness=90))
    small_on_page = normalise(scan(size=(1500, 1500), box=(1200, 100, 40, 64), thickness=6))
    for other in (corner, tiny, huge, small_on_page):
        assert np.abs(other - reference).mean() < 0.08
        cx, cy = centre_of_mass(other)
        assert abs(cx - 14) < 0.6 and abs(cy - 14) < 0.6


def test_aspect_ratio_kept() -> None:
    one = np.ones((300, 300), np.float32)
    cv2.line(one, (150, 60), (150, 240), 0.1, 14)
    height, width = ink_box(normalise(one))
    assert height >= 19 and width <= 6


@pytest.mark.parametrize("lean", [-60, 60])
def test_a_slanted_stroke_is_framed_upright(lean: int) -> None:
    """The writer's slant is sheared out: a 1 leaning either way reaches the classifier as
    narrow as an upright one."""
    one = np.ones((300, 300), np.float32)
    cv2.line(one, (150 - lean, 60), (150 + lean, 240), 0.1, 14)
    height, width = ink_box(normalise(one))
    assert height >= 19 and width <= 6


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 101, 1000])
def test_the_upper_quartile_is_numpy_s(count: int) -> None:
    values = np.random.default_rng(count).random(count).astype(np.float32)
    assert _upper_quartile(values) == pytest.approx(float(np.percentile(values, 75)), abs=1e-6)


def test_gradient_is_flattened() -> None:
    gray = scan(size=(500, 500), box=(200, 150, 100, 160))
    gray *= np.linspace(0.6, 1.0, 500, dtype=np.float32)[None, :]
    assert np.abs(normalise(gray) - normalise(scan())).mean() < 0.08


@pytest.mark.parametrize("value", [0.0, 1.0, 0.5])
def test_blank_pages_have_no_ink(value: float) -> None:
    with pytest.raises(NoInkError):
        normalise(np.full((200, 300), value, np.float32))


def test_one_pixel_image() -> None:
    with pytest.raises(NoInkError):
        normalise(np.zeros((1, 1), np.float32))


def test_a_mask_without_ink_frames_blank() -> None:
    """A piece whose ink was all taken for print gives a blank frame, not a crash."""
    ink, mask = np.zeros((30, 20), np.float32), np.zeros((30, 20), bool)
    mask[5:25, 8:11] = True
    assert not to_mnist(ink, mask).any()


def test_a_faint_digit_taller_than_three_label_letters_is_found() -> None:
    """A form's crop holds its label's letters, smaller than the digits and many: the writing's
    height is still at least a quarter of the crop's, so a faint digit is not taken for
    shading four letter-heights tall."""
    ink = np.zeros((200, 420), np.float32)
    for n in range(8):  # the label: eight letters 12 px tall
        cv2.rectangle(ink, (20 + 30 * n, 20), (32 + 30 * n, 32), 1.0, 3)
    cv2.line(ink, (200, 90), (215, 150), 1.0, 5)  # a dark digit
    cv2.line(ink, (300, 90), (315, 150), 0.15, 5)  # one written faintly
    assert locate(ink)[90:150, 295:320].any()


def test_marks_run_on_into_their_light_ink_alone() -> None:
    """A stroke goes on lighter than the strong threshold: the mark takes it in. Light ink
    that would join two digit-tall marks (touching digits), that spans more than a few digit
    heights (a box line), or that reaches the image's rim (shading the flattening leaves), is
    not."""
    ink = np.zeros((100, 300), np.float32)
    cv2.line(ink, (40, 20), (40, 50), 1.0, 4)
    cv2.line(ink, (40, 50), (40, 80), 0.3, 4)  # the same stroke, lighter
    cv2.line(ink, (120, 20), (120, 80), 1.0, 4)
    cv2.line(ink, (180, 20), (180, 80), 1.0, 4)
    cv2.line(ink, (122, 50), (178, 50), 0.3, 3)  # light ink between two digits
    cv2.line(ink, (240, 20), (240, 60), 1.0, 4)
    cv2.line(ink, (240, 60), (240, 99), 0.3, 4)  # runs off the bottom edge
    cv2.line(ink, (10, 8), (290, 8), 0.3, 2)  # a light box line, a dark speck on it
    cv2.circle(ink, (150, 8), 2, 1.0, -1)
    strong = ink > 0.6
    grown = extended(strong, ink, visible(ink))
    assert grown[55:80, 38:43].all()  # the lighter end of the first stroke
    assert not grown[50, 130:170].any() and not grown[70:99, 240].any()
    assert not grown[8, 20:140].any()
    assert (grown & strong).sum() == strong.sum()


def test_marks_do_not_run_on_into_the_paper_s_grain() -> None:
    """Grain as dark as a light stroke, in specks: it is not clear of the paper's noise, so a
    digit's mark does not grow into it (a scan would turn into hundreds of marks)."""
    rng = np.random.default_rng(0)
    ink = np.where(rng.random((120, 300)) < 0.35, 0.35, 0.0).astype(np.float32)
    cv2.line(ink, (150, 30), (150, 90), 1.0, 4)
    strong = ink > 0.6
    assert extended(strong, ink, visible(ink)).sum() <= 1.5 * strong.sum()


def test_a_light_digit_alone_on_grainy_paper_is_found_without_the_grain() -> None:
    """A light 7, the only ink on grainy paper: Otsu's threshold, relative to so little ink,
    split the grain itself, and a tenth of the paper became marks (a 7 read as 31). Ink is
    strong only where clear of the grain."""
    seven = scan(dark_on_light=False)
    grain = np.random.default_rng(0).normal(0, 0.03, seven.shape)
    _, mask, _ = prepare(np.clip(0.85 - 0.15 * seven + grain, 0, 1).astype(np.float32))
    near = cv2.dilate((seven > 0.2).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert (mask & ~near).mean() < 0.01
    assert mask[seven > 0.5].mean() > 0.9
