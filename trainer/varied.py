"""Fields written and printed with all the variety offices scan, for the string reader's
training lines: digits of uneven size, pen and pressure, any spacing from touching to two
digit heights, a sloping baseline, one digit per printed cell or free writing, and any print
style (box, underline, comb dividers, ticks rising or hanging, dotted or dashed lines, shaded
cells, drop-out colour), sometimes crossed by the writing.

The sample fields of `trainer/samples.py` stay as they were (they are what its figures were
measured on); this renderer draws on the same pens, papers and camera.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from trainer import handwriting, samples

# print styles and their shares; drop-out colours only in colour scans (else a plain box)
STYLES = {
    "none": 0.08,
    "underline": 0.1,
    "box": 0.14,
    "comb": 0.12,
    "ticks up": 0.12,
    "ticks down": 0.06,
    "dotted": 0.09,
    "dashed": 0.09,
    "shaded": 0.08,
    "drop-out": 0.12,
}
CELLED = ("comb", "ticks up", "ticks down", "shaded")  # one digit per printed cell
DROPOUT = ((0.68, 0.68, 0.98), (0.98, 0.8, 0.64))  # red and blue, BGR shares of the paper
SPACINGS = ((-0.05, 0.2), (0.1, 0.5), (0.5, 1.3), (1.0, 1.8))  # a writer's usual gap, heights
SIZES, PENS = 0.3, 0.4  # each digit's height and pen width within ± this share of the writer's
FAINT = 0.25  # share of fields with one digit written light
SLOPE = 6.0  # degrees the baseline may rise or fall
OVER = 0.15  # fields whose writing crosses the box's top or bottom line


def render(digits: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Render 28x28 uint8 MNIST digits as one writer's field in a random print style; returns
    HxW gray or HxWx3 BGR uint8, as `samples.render_field`."""
    colour = rng.random() < 0.7
    style = str(rng.choice(list(STYLES), p=list(STYLES.values())))
    if style == "drop-out" and not colour:
        style = "box"
    size = rng.uniform(18.0, 80.0)
    patches, stroke = handwriting.handwrite(digits, size, rng, sizes=SIZES, pens=PENS)
    pressure = _pressure(len(patches), rng)
    thick = int(rng.integers(1, 4))
    if style in CELLED:
        pressed = [patch * weight for patch, weight in zip(patches, pressure, strict=True)]
        coverage, printed = _cells(pressed, size, style, thick, rng)
    else:
        spacing = rng.uniform(*_spacing(rng))
        coverage, ink_box = samples.layout(patches, size, rng, spacing, pressure)
        coverage, ink_box = _sloped(coverage, ink_box, rng)
        coverage, printed = _framed(coverage, ink_box, size, style, thick, rng)
    dropout = DROPOUT[int(rng.integers(len(DROPOUT)))] if style == "drop-out" else None
    return samples.compose(coverage, printed, colour, stroke, rng, dropout=dropout)


def _spacing(rng: np.random.Generator) -> tuple[float, float]:
    """A writer's range of gaps, in digit heights."""
    return SPACINGS[int(rng.choice(len(SPACINGS), p=[0.2, 0.4, 0.25, 0.15]))]


def _pressure(count: int, rng: np.random.Generator) -> list[float]:
    """Each digit's pen pressure (a share of full ink), now and then one digit written light."""
    pressure = list(rng.uniform(0.6, 1.0, size=count))
    if rng.random() < FAINT:
        pressure[int(rng.integers(count))] = rng.uniform(0.25, 0.45)
    return pressure


def _sloped(
    coverage: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The writing on a baseline rising or falling by up to SLOPE degrees, and its ink box."""
    rise = math.tan(math.radians(rng.uniform(-SLOPE, SLOPE)))
    h, w = coverage.shape
    drop = math.ceil(abs(rise) * w)
    shear = np.float32([[1, 0, 0], [rise, 1, drop if rise < 0 else 0]])
    sloped = cv2.warpAffine(coverage, shear, (w, h + drop), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(sloped > 0.1)
    if not len(ys):
        return sloped, (box[0], box[1], box[2], box[3] + drop)
    return sloped, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _framed(
    coverage: np.ndarray,
    box: tuple[int, int, int, int],
    size: float,
    style: str,
    thick: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Free writing on a canvas with its print (none, an underline, or a box drawn solid,
    dotted or dashed) around it; returns the ink and the print's coverage."""
    x0, y0, x1, y1 = box
    over = rng.random() < OVER
    left, right = (rng.uniform(0.1, 0.6) * size for _ in range(2))
    above, below = (
        -rng.uniform(0.0, 0.15) * size if over else rng.uniform(0.1, 0.5) * size for _ in range(2)
    )
    if style == "underline" or (style == "dotted" and rng.random() < 0.3):
        above = -1.0
    pad = rng.uniform(0.2, 1.0, size=2) * size + 4
    width = math.ceil(x1 - x0 + left + right + 2 * pad[0])
    height = math.ceil(y1 - y0 + max(above, 0) + below + 2 * pad[1])
    ox, oy = pad[0] + left - x0, pad[1] + max(above, 0) - y0
    shift = np.float32([[1, 0, round(ox)], [0, 1, round(oy)]])
    canvas = cv2.warpAffine(coverage, shift, (width, height), flags=cv2.INTER_LINEAR)
    edges = (x0 + ox - left, y0 + oy - above, x1 + ox + right, y1 + oy + below)
    printed = np.zeros((height, width), np.float32)
    if style != "none":
        _rule_box(printed, edges, style, thick, rng, underline=above < 0)
    return canvas, printed


def _cells(
    patches: list[np.ndarray], size: float, style: str, thick: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One digit centred in each printed cell (comb dividers, ticks rising or hanging, or
    shaded cells), a little off centre; returns the ink and the print's coverage."""
    cell = rng.uniform(1.0, 1.8) * size
    inner = rng.uniform(1.25, 1.9) * size
    pad = rng.uniform(0.2, 1.0, size=2) * size + 4
    width = math.ceil(cell * len(patches) + 2 * pad[0])
    height = math.ceil(inner + 2 * pad[1])
    ink = np.zeros((height, width), np.float32)
    for n, patch in enumerate(patches):
        ys, xs = np.nonzero(patch > 0.02)
        if not len(ys):
            continue
        crop = patch[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        fit = min(1.0, 0.9 * cell / crop.shape[1], 1.05 * inner / crop.shape[0])
        if fit < 1:
            crop = cv2.resize(crop, None, fx=fit, fy=fit, interpolation=cv2.INTER_AREA)
        h, w = crop.shape
        x = pad[0] + n * cell + (cell - w) / 2 + rng.uniform(-0.15, 0.15) * cell
        y = pad[1] + (inner - h) / 2 + rng.uniform(-0.15, 0.15) * inner
        x, y = round(min(max(x, 0), width - w)), round(min(max(y, 0), height - h))
        view = ink[y : y + h, x : x + w]
        np.maximum(view, crop, out=view)
    printed = np.zeros_like(ink)
    x0, y0 = pad
    x1, y1 = x0 + cell * len(patches), y0 + inner
    if style == "shaded":
        printed[round(y0) : round(y1), round(x0) : round(x1)] = rng.uniform(0.05, 0.15)
        if rng.random() < 0.5:
            return ink, printed
    _rule_box(printed, (x0, y0, x1, y1), "box", thick, rng)
    reach = inner * rng.uniform(0.2, 0.5) if style.startswith("ticks") else inner
    for n in range(1, len(patches)):
        x = round(x0 + n * cell)
        top, bottom = (y1 - reach, y1) if style != "ticks down" else (y0, y0 + reach)
        cv2.line(printed, (x, round(top)), (x, round(bottom)), 1.0, thick)
    return ink, printed


def _rule_box(
    printed: np.ndarray,
    edges: tuple[float, float, float, float],
    style: str,
    thick: int,
    rng: np.random.Generator,
    underline: bool = False,
) -> None:
    """Draw a box (or its bottom line only) onto `printed`: solid, dotted or dashed."""
    x0, y0, x1, y1 = (round(v) for v in edges)
    sides = [((x0, y1), (x1, y1))]
    if not underline:
        sides += [((x0, y0), (x1, y0)), ((x0, y0), (x0, y1)), ((x1, y0), (x1, y1))]
    if style == "dotted":
        period, radius = rng.uniform(3, 8), max(1, round(rng.uniform(0.5, 1.5)))
    elif style == "dashed":
        dash, gap = rng.uniform(4, 15), rng.uniform(2, 8)
    for a, b in sides:
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        if style == "dotted":
            for t in np.arange(0, length, period) / max(length, 1):
                centre = (round(a[0] + t * (b[0] - a[0])), round(a[1] + t * (b[1] - a[1])))
                cv2.circle(printed, centre, radius, 1.0, -1)
        elif style == "dashed":
            for start in np.arange(0, length, dash + gap):
                t0, t1 = start / max(length, 1), min(start + dash, length) / max(length, 1)
                p0 = (round(a[0] + t0 * (b[0] - a[0])), round(a[1] + t0 * (b[1] - a[1])))
                p1 = (round(a[0] + t1 * (b[0] - a[0])), round(a[1] + t1 * (b[1] - a[1])))
                cv2.line(printed, p0, p1, 1.0, thick)
        else:
            cv2.line(printed, a, b, 1.0, thick)
