"""Handwriting: an MNIST digit redrawn with a pen, as ink coverage in [0, 1].

Each digit is warped (size, slant, width, rotation) and re-stroked: crisp pen edges, then
dilated or eroded towards the pen's width as far as the digit keeps its shape (no strokes
merged, no loop closed or lost). `place_digit` puts one digit anywhere on a single-digit scan;
`handwrite` draws a field's digits in one writer's hand. The paper, the ink's colour, the light
and the camera are trainer/samples.py's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

_HEIGHT_RANGE = (0.15, 0.70)  # digit box height as a fraction of the canvas' short side
_MIN_HEIGHT = 24.0  # digit box height never below this, pixels
_MAX_ROTATION = 15.0  # degrees
_MAX_SHEAR = 0.25  # slant: x shift per unit of height
_FIELD_ROTATION = 5.0  # degrees, each digit of a field
_STROKE_RANGE = (0.035, 0.16)  # wanted pen width as a fraction of digit height: fine pen to marker
_MIN_STROKE = 2.5  # never aim for strokes thinner than this, pixels


def place_digit(
    digit: np.ndarray, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """The digit as ink coverage in [0, 1] on a `height` x `width` canvas, and its stroke width:
    scaled, stretched, slanted, rotated, re-stroked and placed anywhere fully inside it."""
    x, y, w, h = _ink_box(digit)
    centre = np.float32([x + w / 2 - 0.5, y + h / 2 - 0.5])
    target = max(_MIN_HEIGHT, rng.uniform(*_HEIGHT_RANGE) * min(height, width))
    angle = math.radians(rng.uniform(-_MAX_ROTATION, _MAX_ROTATION))
    rotate = np.float32([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shear = np.float32([[1, rng.uniform(-_MAX_SHEAR, _MAX_SHEAR)], [0, 1]])
    stretch = np.diag(np.float32([rng.uniform(0.85, 1.15), 1]))
    linear = rotate @ shear @ stretch * np.float32(target / h)
    corners = np.float32([[x - 1, y - 1], [x + w, y - 1], [x - 1, y + h], [x + w, y + h]])
    half = np.abs((corners - centre) @ linear.T).max(axis=0)
    # room around the ink for thicker strokes and blur: 15% of the box plus 4 px on each side
    fit = min(1.0, (width / 2 - 5) / (1.15 * half[0]), (height / 2 - 5) / (1.15 * half[1]))
    linear, half = linear * np.float32(fit), half * np.float32(fit)
    margin = 0.15 * half + 4
    size = np.float32([width, height])
    position = np.float32(rng.uniform(half + margin, size - half - margin))
    x0, y0 = np.maximum(np.floor(position - half - margin), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(position + half + margin), size).astype(int)
    offset = position - linear @ centre - np.float32([x0, y0])
    affine = np.hstack([linear, offset[:, None]])
    scale = target * fit / h
    pen = _pen(target * fit, rng)
    patch, stroke = _draw(digit, affine, (x1 - x0, y1 - y0), scale, target * fit, pen)
    canvas = np.zeros((height, width), np.float32)
    canvas[y0:y1, x0:x1] = patch
    return canvas, stroke


def handwrite(
    digits: Sequence[np.ndarray],
    size: float,
    rng: np.random.Generator,
    pen_width: float | None = None,
    sizes: float = 0.1,
    pens: float = 0.0,
) -> tuple[list[np.ndarray], float]:
    """Draw 28x28 uint8 MNIST digits as one writer's hand, about `size` pixels tall (each within
    ±`sizes` of it), with one pen (`pen_width` pixels wide, or a random one; each digit's
    within ±`pens` of it); returns each digit's ink coverage on its own patch, the ink's centre
    at the patch's centre, and the pen's typical stroke width."""
    for digit in digits:
        if digit.shape != (28, 28):
            raise ValueError(f"expected 28x28 MNIST digits, got shape {digit.shape}")
    pen = _pen(size, rng, pen_width)
    slant = np.float32([[1, rng.uniform(-_MAX_SHEAR, _MAX_SHEAR)], [0, 1]])
    widen = rng.uniform(0.85, 1.15)
    patches, strokes = [], []
    for digit in digits:
        own = (*pen[:2], pen[2] * rng.uniform(1 - pens, 1 + pens)) if pens else pen
        patch, stroke = _field_digit(digit, size, slant, widen, own, rng, sizes)
        patches.append(patch)
        strokes.append(stroke)
    return patches, float(np.median(strokes))


def _field_digit(
    digit: np.ndarray,
    size: float,
    slant: np.ndarray,
    widen: float,
    pen: tuple[float, float, float],
    rng: np.random.Generator,
    sizes: float = 0.1,
) -> tuple[np.ndarray, float]:
    """One digit of a field: the writer's slant and width, its own height (within ±`sizes` of
    `size`) and small rotation, drawn with the writer's pen on a patch just big enough; returns
    coverage and stroke width."""
    x, y, w, h = _ink_box(digit)
    centre = np.float32([x + w / 2 - 0.5, y + h / 2 - 0.5])
    target = size * rng.uniform(1 - sizes, 1 + sizes)
    angle = math.radians(rng.uniform(-_FIELD_ROTATION, _FIELD_ROTATION))
    rotate = np.float32([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    stretch = np.diag(np.float32([widen * rng.uniform(0.95, 1.05), 1]))
    linear = rotate @ slant @ stretch * np.float32(target / h)
    corners = np.float32([[x - 1, y - 1], [x + w, y - 1], [x - 1, y + h], [x + w, y + h]])
    half = np.abs((corners - centre) @ linear.T).max(axis=0)
    margin = 0.15 * half + 4 + pen[2]
    width, height = np.ceil(2 * (half + margin)).astype(int)
    offset = np.float32([width / 2, height / 2]) - linear @ centre
    return _draw(
        digit, np.hstack([linear, offset[:, None]]), (width, height), target / h, target, pen
    )


def _ink_box(digit: np.ndarray) -> tuple[int, int, int, int]:
    """x, y, width, height of the digit's ink in its 28x28 image (all of it if there is none)."""
    x, y, w, h = cv2.boundingRect((digit > 40).astype(np.uint8))
    return (x, y, w, h) if h else (0, 0, 28, 28)


def _pen(
    height: float, rng: np.random.Generator, width: float | None = None
) -> tuple[float, float, float]:
    """A random pen for digits `height` pixels tall: where its edge falls on MNIST's grey ramp,
    how many pixels its edge takes from no ink to full ink, and its wanted width in pixels
    (`width`, or random)."""
    level = rng.uniform(0.3, 0.5)
    edge = rng.uniform(0.7, 1.6)
    if width is None:
        width = max(_MIN_STROKE, height * math.exp(rng.uniform(*np.log(_STROKE_RANGE))))
    return level, edge, width


def _draw(
    digit: np.ndarray,
    affine: np.ndarray,
    size: tuple[int, int],
    scale: float,
    height: float,
    pen: tuple[float, float, float],
) -> tuple[np.ndarray, float]:
    """The digit warped by the 2x3 affine map onto a (width, height) `size` patch, `scale` times
    bigger, and re-stroked with `pen`; returns its ink coverage and stroke width."""
    warped = cv2.warpAffine(
        digit.astype(np.float32) / 255.0,
        affine,
        size,
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_CONSTANT,
    )
    # blur away the 28x28 pixel grid that cubic interpolation leaves as lumps on big strokes
    smooth = cv2.GaussianBlur(warped, (0, 0), 0.5 * scale) if scale > 2 else warped
    return _strokes(np.clip(smooth, 0.0, 1.0), scale, height, pen)


def _strokes(
    soft: np.ndarray, scale: float, height: float, pen: tuple[float, float, float]
) -> tuple[np.ndarray, float]:
    """Crisp pen edges, then dilate or erode towards the pen's width as far as the digit keeps
    its shape; returns the coverage and its stroke width in pixels."""
    # some MNIST strokes fade out (light pen pressure): take the shape from the ink relative to
    # its local peak, so faint strokes stay whole, and how light they are from that peak
    reach = 2 * max(1, round(1.2 * scale)) + 1
    peak = cv2.dilate(soft, np.ones((reach, reach), np.uint8))
    relative = soft / np.maximum(peak, 0.1)
    level, edge, wanted = pen  # edge: pixels from no ink to full ink across a stroke's edge
    # MNIST edges ramp over ~1.75 of its pixels; no ink must stay no ink
    gain = max(0.5 / level, 1.75 * scale / edge)
    crisp = np.clip((relative - level) * gain + 0.5, 0.0, 1.0)
    inside = (crisp > 0.5).astype(np.uint8)
    depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3)[inside > 0]
    # mean distance to the edge over a band of width W is about W / 4 + 1/2
    stroke = max(1.0, 4.0 * float(depth.mean()) - 2.0) if depth.size else 1.0
    steps = dict.fromkeys(round((wanted - stroke) / 2 * share) for share in (1, 0.6, 0.3))
    step = next((s for s in steps if s and _keeps_shape(crisp, s, height)), 0)
    lightness = np.sqrt(np.clip(_morph(peak, max(step, 0)) / 0.5, 0.0, 1.0))
    return _morph(crisp, step) * lightness, stroke + 2 * step


def _keeps_shape(coverage: np.ndarray, step: int, height: float) -> bool:
    """Whether a dilation (step > 0) or erosion (step < 0) leaves the digit recognisably intact."""
    if step > 0:  # no strokes merged, no loop closed
        return _topology(_morph(coverage, step)) == _topology(coverage)
    # erode one pixel more than asked, so every surviving stroke stays ~3 px wide: no piece or
    # loop may appear or vanish, and growing back must reach all the ink (no branch wiped out)
    eroded = _morph(coverage, step - 1)
    if _topology(eroded) != _topology(coverage):
        return False
    regrown = (_morph(eroded, 1 - step) > 0.5).astype(np.uint8)
    missed = cv2.distanceTransform(1 - regrown, cv2.DIST_L2, 3)[coverage > 0.5]
    return missed.size == 0 or float(missed.max()) <= max(2.0, 0.04 * height)


def _morph(coverage: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation (radius > 0) or erosion (radius < 0) with a disc; radius 0 copies."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(radius) + 1,) * 2)
    return cv2.dilate(coverage, kernel) if radius > 0 else cv2.erode(coverage, kernel)


def _topology(coverage: np.ndarray) -> tuple[int, int]:
    """The number of ink pieces and of holes (loops) in the coverage, ignoring specks."""
    mask = (coverage > 0.5).astype(np.uint8)
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return 0, 0
    big = [cv2.contourArea(c) >= 4 for c in contours]
    holes = sum(b and parent >= 0 for b, parent in zip(big, hierarchy[0][:, 3], strict=True))
    return sum(big) - holes, holes
