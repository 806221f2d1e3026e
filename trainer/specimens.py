"""Render handwritten digit fields as offices scan them, to measure the reader (docs/specimens.md).

Written from the spec alone, sharing no code or habits with the training samples
(trainer/samples.py, trainer/forms.py), so that a figure measured here is not one measured on
what the reader was developed on; nothing in training calls it. Every range below is the spec's
and each value in it occurs. A field is composed as reflectance (1 = white paper, BGR): a
transmission layer of print and ink, skewed, then times paper and light, then the scanner's
blur, noise and file. This module holds the writer, the layout and the field API; the print
is trainer/specimen_print.py and the paper, light, scanner and file trainer/specimen_scan.py.
Forms (trainer/specimen_forms.py) reuse these parts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from trainer import mnist
from trainer.specimen_print import Plan, Rect, draw_print, print_plan
from trainer.specimen_scan import encode, scan, skew

Box = tuple[float, float, float, float]  # a Rect in floats, before rounding

HELD_OUT = 1000  # seeds below this are held out: they draw from the pool's second half only
HEIGHT = (18, 90)  # base digit height H, px: a coarse scan's small hand to a large one at 300 DPI
SIZE = (0.7, 1.3)  # each digit's height as a share of H: hands are uneven
WIDTH = (0.8, 1.2)  # the writer's stretch of each digit's own aspect
SLANT = 0.3  # the writer's shear, either way
SLANT_DIGIT = 0.08  # the shear each digit adds to its writer's
ROTATION = 6.0  # degrees each digit turns, either way
PEN = (0.04, 0.16)  # the writer's pen width, in H: fine liner to felt tip
PEN_DIGIT = (0.6, 1.4)  # each digit's pen width as a factor of the writer's: pressure varies
THRESHOLD = (0.3, 0.6)  # where the smooth digit is cut into a stroke shape, of full ink
EDGE = (0.5, 1.5)  # px of the ink's anti-aliased edge
CONTRAST = (0.55, 1.0)  # a digit's ink against the paper (1 = the writer's full ink)
FAINT = (0.25, 0.45)  # the contrast of a faint digit: a pen running dry, a light touch
FAINT_SHARE = 0.25  # fields with one faint digit
GRAIN_SHARE = 0.25  # writers whose ink breaks up like pencil on paper
GRAIN = 0.7  # most of a point's ink such grain takes away
GREY_INKS = {  # reflectance of the writer's ink at full strength; these and blue equally likely
    "black": (0.06, 0.14),
    "dark grey": (0.22, 0.32),
    "pencil grey": (0.35, 0.5),
}
BALLPOINT = (150, 60, 20)  # BGR of blue ballpoint at full strength
BALLPOINT_SPREAD = (0.85, 1.15)  # one blue pen's strength against another's
BASELINE = 6.0  # degrees the baseline slopes over the field, either way
DRIFT = (0.05, 0.25)  # the baseline's random-walk step per digit and its bound, in H
GAPS = {  # ink-to-ink gaps in H, by the writer's spacing style
    "tight": (-0.15, 0.25),
    "normal": (0.1, 0.6),
    "wide": (0.5, 1.5),
    "very wide": (1.0, 2.0),
}
GAP_WEIGHTS = (0.15, 0.4, 0.3, 0.15)  # how often each spacing style is chosen
TOUCH = 0.05  # gaps that touch whatever the style
TOUCHING = (-0.1, 0.0)  # such a gap, in H
JITTER = 0.15  # a digit's offset from its cell's centre, of the cell's width and height
CELL = (1.0, 1.8)  # printed cell width in H
OVERRUN_SHARE = 0.15  # fields whose box the tallest digit crosses
OVERRUN = (0.02, 0.15)  # by this much, in H
STYLES = {  # print style of a field and its share
    "none": 0.10,
    "underline": 0.10,
    "box": 0.12,
    "comb": 0.12,
    "ticks up": 0.12,
    "ticks down": 0.06,
    "dotted": 0.08,
    "dashed": 0.08,
    "shaded": 0.07,
    "drop-out": 0.15,
}
UNDERLINE = (0.05, 0.3)  # H between the lowest digit and the underline
MARGIN = (0.1, 0.6)  # H between the writing and its box
CANVAS = (0.2, 1.0)  # H of paper around the print on every side
COLOUR = 0.7  # field scans in colour; drop-out print only in those


@dataclass(frozen=True)
class Writer:
    """One hand: what stays the same over a field's digits (or a form page's)."""

    width: float  # stretch of each digit's own aspect
    slant: float  # shear, positive leaning right
    pen: float  # pen width in H
    ink: tuple[float, float, float]  # BGR reflectance of the ink at full contrast
    grain: bool  # pencil-like grain
    spacing: str  # a key of GAPS


@dataclass(frozen=True)
class Stroke:
    """A digit drawn with the pen: ink coverage 0-1, and where its ink (coverage > 0.5) lies."""

    alpha: np.ndarray
    ink: Rect


def pool(size: int, seed: int) -> range:
    """The digit indices a seed may draw from: held-out seeds (0-999) the second half of the
    pool, development seeds the first, so the two never share a digit."""
    if seed < 0 or size < 2:
        raise ValueError(f"need a seed >= 0 and 2 digits or more, got seed {seed}, {size} digits")
    return range(size // 2, size) if seed < HELD_OUT else range(size // 2)


def choose_style(rng: np.random.Generator) -> str:
    """A field's print style, drawn with the spec's shares."""
    names = list(STYLES)
    return names[rng.choice(len(names), p=list(STYLES.values()))]


def writer(rng: np.random.Generator) -> Writer:
    """A new hand with its slant, pen, ink and spacing."""
    greys = list(GREY_INKS.values())
    choice = int(rng.integers(len(greys) + 1))
    if choice == len(greys):
        ink = tuple(min(1.0, c / 255 * rng.uniform(*BALLPOINT_SPREAD)) for c in BALLPOINT)
    else:
        ink = (rng.uniform(*greys[choice]),) * 3
    return Writer(
        width=rng.uniform(*WIDTH),
        slant=rng.uniform(-SLANT, SLANT),
        pen=rng.uniform(*PEN),
        ink=ink,
        grain=bool(rng.random() < GRAIN_SHARE),
        spacing=list(GAPS)[rng.choice(len(GAPS), p=GAP_WEIGHTS)],
    )


def pen_digit(image: np.ndarray, rng: np.random.Generator, hand: Writer, h: float) -> Stroke:
    """A 28×28 MNIST-style digit as this hand draws it at base height `h`: upscaled smoothly
    with its size, stretch, shear and turn, cut at a threshold into a stroke shape, then grown or
    thinned to the pen's width (as far as keeps strokes from merging or breaking) with soft
    edges."""
    ink = np.pad(mnist.crop(image).astype(np.float32), 2)
    scale = h * rng.uniform(*SIZE) / (ink.shape[0] - 4)
    turn = math.radians(rng.uniform(-ROTATION, ROTATION))
    shear = hand.slant + rng.uniform(-SLANT_DIGIT, SLANT_DIGIT)
    rotate = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    linear = rotate @ np.array([[1.0, -shear], [0.0, 1.0]]) @ np.diag([scale * hand.width, scale])
    pen = h * hand.pen * rng.uniform(*PEN_DIGIT)
    edge = rng.uniform(*EDGE)
    rows, cols = ink.shape
    corners = linear @ (
        np.array([[0, cols, 0, cols], [0, 0, rows, rows]]) - [[cols / 2], [rows / 2]]
    )
    pad = math.ceil(pen + edge + 3)
    size = np.ceil(corners.max(axis=1) - corners.min(axis=1)).astype(int) + 2 * pad
    shift = size / 2 - linear @ [cols / 2, rows / 2]
    warped = cv2.warpAffine(
        ink,
        np.hstack([linear, shift[:, None]]),
        (int(size[0]), int(size[1])),
        flags=cv2.INTER_CUBIC,
    )
    warped = cv2.GaussianBlur(warped, (0, 0), max(0.3, 0.3 * scale))
    shape = _cut(warped, rng.uniform(*THRESHOLD))
    sdf = _signed_distance(shape)
    contours, _ = cv2.findContours(shape.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    grow = (pen - 2 * shape.sum() / max(perimeter, 1.0)) / 2  # width = 2 × area / perimeter
    topology = _topology(shape)
    for factor in (1.0, 0.7, 0.5, 0.3, 0.15, 0.0):
        if _topology(sdf + grow * factor + edge / 2 > 0) == topology:  # where any ink falls
            break
    alpha = np.clip((sdf + grow * factor) / edge + 0.5, 0, 1).astype(np.float32)
    ys, xs = np.nonzero(alpha > 0.5)
    return Stroke(alpha, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def _cut(smooth: np.ndarray, level: float) -> np.ndarray:
    """The stroke shape of a smooth digit cut at `level` of full ink, or nearer the lowest level
    of THRESHOLD where a higher cut would break a faint stroke into pieces."""
    top = 0.9 * float(smooth.max())
    lowest = smooth > min(THRESHOLD[0] * 255, top)
    pieces = _topology(lowest)[0]
    for cut in np.linspace(level, THRESHOLD[0], 4)[:-1]:
        shape = smooth > min(cut * 255, top)
        if _topology(shape)[0] == pieces:
            return shape
    return lowest


def _signed_distance(shape: np.ndarray) -> np.ndarray:
    """Distance to the shape's edge in px: positive inside, negative outside."""
    inside = cv2.distanceTransform(shape.astype(np.uint8), cv2.DIST_L2, 5)
    outside = cv2.distanceTransform((~shape).astype(np.uint8), cv2.DIST_L2, 5)
    return np.where(shape, inside - 0.5, 0.5 - outside)


def _topology(shape: np.ndarray) -> tuple[int, int]:
    """Pieces of ink and of paper (holes count): a pen that merges or breaks strokes changes it."""
    ink = cv2.connectedComponents(shape.astype(np.uint8), connectivity=8)[0]
    paper = cv2.connectedComponents(np.pad(~shape, 1, constant_values=True).astype(np.uint8), 4)
    return ink, paper[0]


def gaps(rng: np.random.Generator, spacing: str, count: int) -> list[float]:
    """`count` ink-to-ink gaps in H for a spacing style, each touching with a small chance."""
    return [
        rng.uniform(*TOUCHING) if rng.random() < TOUCH else rng.uniform(*GAPS[spacing])
        for _ in range(count)
    ]


def free_writing(
    strokes: Sequence[Stroke],
    spaces: Sequence[float],
    rng: np.random.Generator,
    h: float,
    tilt: float = BASELINE,
) -> list[tuple[float, float]]:
    """Each stroke's top-left corner written left to right with these gaps (px) on a baseline
    sloped by up to `tilt` degrees that drifts from digit to digit; the first ink starts at
    x = 0."""
    slope = math.tan(math.radians(rng.uniform(-tilt, tilt)))
    step, bound = DRIFT[0] * h, DRIFT[1] * h
    x, drift, corners = 0.0, 0.0, []
    for stroke, space in zip(strokes, [0.0, *spaces], strict=True):
        x0, _, x1, y1 = stroke.ink
        x += space
        corners.append((x - x0, slope * (x + (x1 - x0) / 2) + drift - y1))
        x += x1 - x0
        drift = float(np.clip(drift + rng.uniform(-step, step), -bound, bound))
    return corners


def in_cells(
    strokes: Sequence[Stroke], cells: Sequence[Box], rng: np.random.Generator
) -> list[tuple[float, float]]:
    """Each stroke's top-left corner centred in its cell (x0, y0, x1, y1), jittered."""
    corners = []
    for stroke, (x0, y0, x1, y1) in zip(strokes, cells, strict=True):
        cx = (x0 + x1) / 2 + rng.uniform(-JITTER, JITTER) * (x1 - x0)
        cy = (y0 + y1) / 2 + rng.uniform(-JITTER, JITTER) * (y1 - y0)
        ix0, iy0, ix1, iy1 = stroke.ink
        corners.append((cx - (ix0 + ix1) / 2, cy - (iy0 + iy1) / 2))
    return corners


def ink_extent(strokes: Sequence[Stroke], corners: Sequence[tuple[float, float]]) -> Box:
    """The box around all the placed strokes' ink."""
    boxes = np.array(
        [np.add(s.ink, [x, y, x, y]) for s, (x, y) in zip(strokes, corners, strict=True)]
    )
    return (*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0))


def write_ink(
    layer: np.ndarray,
    strokes: Sequence[Stroke],
    corners: Sequence[tuple[float, float]],
    contrasts: Sequence[float],
    hand: Writer,
    rng: np.random.Generator,
) -> None:
    """Lay each stroke's ink on the transmission layer, in place."""
    absorb = 1 - np.array(hand.ink, np.float32)
    for stroke, (x, y), contrast in zip(strokes, corners, contrasts, strict=True):
        alpha = stroke.alpha * np.float32(contrast)
        if hand.grain:
            grain = cv2.GaussianBlur(rng.random(alpha.shape, dtype=np.float32), (0, 0), 0.6)
            alpha *= 1 - GRAIN * (grain - grain.min()) / max(float(np.ptp(grain)), 1e-6)
        x, y = round(x), round(y)
        h, w = alpha.shape
        top, left = max(0, -y), max(0, -x)
        bottom, right = min(h, layer.shape[0] - y), min(w, layer.shape[1] - x)
        if bottom > top and right > left:
            part = alpha[top:bottom, left:right, None]
            layer[y + top : y + bottom, x + left : x + right] *= 1 - part * absorb


def field(
    digits: np.ndarray,
    labels: np.ndarray,
    seed: int,
    i: int,
    lengths: tuple[int, int] = (3, 8),
) -> tuple[str, bytes, str, dict]:
    """Field `i` of `seed`, as `write_fields` writes it: its file extension and bytes, the
    digits written and its meta."""
    allowed = pool(len(digits), seed)
    rng = np.random.default_rng([seed, i])
    picks = rng.integers(allowed.start, allowed.stop, int(rng.integers(lengths[0], lengths[1] + 1)))
    image, info = render_field([digits[j] for j in picks], rng)
    kind, data = encode(image, rng)
    return kind, data, "".join(str(int(labels[j])) for j in picks), info


def render_field(
    digits: Sequence[np.ndarray],
    rng: np.random.Generator,
    style: str | None = None,
    colour: bool | None = None,
    height: int | None = None,
) -> tuple[np.ndarray, dict]:
    """One scanned field holding these 28×28 digits, and its meta (style, spacing, faint digit,
    colour, H). Style, colour and H are drawn unless given; a drop-out field is always in
    colour, and other fields are in colour often enough that 70% of all fields are."""
    style = style or choose_style(rng)
    share = (COLOUR - STYLES["drop-out"]) / (1 - STYLES["drop-out"])
    colour = (style == "drop-out" or bool(rng.random() < share)) if colour is None else colour
    h = float(height or rng.integers(HEIGHT[0], HEIGHT[1] + 1))
    hand = writer(rng)
    plan = print_plan(style, rng)
    faint = int(rng.integers(len(digits))) if rng.random() < FAINT_SHARE else None
    contrasts = [rng.uniform(*(FAINT if i == faint else CONTRAST)) for i in range(len(digits))]
    strokes = [pen_digit(d, rng, hand, h) for d in digits]
    over = rng.uniform(*OVERRUN) * h * rng.choice([-1, 1]) if rng.random() < OVERRUN_SHARE else 0
    if plan.cells:
        corners, rect = _cells_layout(strokes, plan, rng, h, over)
    else:
        corners = free_writing(
            strokes, [g * h for g in gaps(rng, hand.spacing, len(strokes) - 1)], rng, h
        )
        rect = _frame(ink_extent(strokes, corners), plan, rng, h, over)
    ink = ink_extent(strokes, corners)
    content = (
        ink if rect is None else (*np.minimum(ink[:2], rect[:2]), *np.maximum(ink[2:], rect[2:]))
    )
    left, top, right, bottom = rng.uniform(*CANVAS, 4) * h
    dx, dy = round(left - content[0]), round(top - content[1])
    layer = np.ones(
        (math.ceil(content[3] + dy + bottom), math.ceil(content[2] + dx + right), 3), np.float32
    )
    if rect is not None:
        placed = (
            round(rect[0]) + dx,
            round(rect[1]) + dy,
            round(rect[2]) + dx,
            round(rect[3]) + dy,
        )
        draw_print(layer, plan, placed, len(strokes) if plan.cells else 0)
    write_ink(layer, strokes, [(x + dx, y + dy) for x, y in corners], contrasts, hand, rng)
    image = scan(skew(layer, rng), rng, colour)
    spacing = "cells" if plan.cells else hand.spacing
    return image, {
        "style": style,
        "spacing": spacing,
        "faint": faint,
        "colour": colour,
        "height": int(h),
    }


def _cells_layout(
    strokes: Sequence[Stroke], plan: Plan, rng: np.random.Generator, h: float, over: float
) -> tuple[list[tuple[float, float]], Box]:
    """One digit per cell: the corners and the box (cells side by side from x = 0). With an
    overrun the box is lower than the tallest digit, which crosses its top (over < 0) or
    bottom edge by |over|."""
    width = rng.uniform(*CELL) * h
    heights = [s.ink[3] - s.ink[1] for s in strokes]
    tallest = int(np.argmax(heights))
    inner = (
        heights[tallest] - abs(over) if over else heights[tallest] + 2 * rng.uniform(*MARGIN) * h
    )
    box = (0.0, 0.0, width * len(strokes), inner + 2 * plan.width)
    cells = [(k * width, 0.0, (k + 1) * width, box[3]) for k in range(len(strokes))]
    corners = in_cells(strokes, cells, rng)
    if over:
        x, _ = corners[tallest]
        corners[tallest] = (x, plan.width + min(over, 0) - strokes[tallest].ink[1])
    return corners, box


def _frame(ink: Box, plan: Plan, rng: np.random.Generator, h: float, over: float) -> Box | None:
    """The print's outer edge around free writing: a box with margins, or for an underline the
    area down to the line's bottom. With an overrun the writing crosses the top (over < 0) or
    bottom edge by |over|."""
    if not plan.framed:
        return None
    x0, y0, x1, y1 = ink
    left, top, right, bottom = rng.uniform(*MARGIN, 4) * h + plan.width  # to the line's inside
    if plan.shape == "underline":
        below = -abs(over) if over else rng.uniform(*UNDERLINE) * h
        return (x0 - left, y0 - top, x1 + right, y1 + below + plan.width)
    if over < 0:
        return (x0 - left, y0 - over - plan.width, x1 + right, y1 + bottom)
    return (x0 - left, y0 - top, x1 + right, y1 + plan.width - over if over else y1 + bottom)


def write_fields(
    out_dir: Path,
    digits: np.ndarray,
    labels: np.ndarray,
    count: int,
    seed: int = 0,
    lengths: tuple[int, int] = (3, 8),
) -> dict[str, str]:
    """Write `count` scanned fields as field-NNNNN.jpg|png with labels.json (file name → digit
    string, as `scandigits evaluate --scans` reads it) and meta.json (file name → style,
    spacing, faint digit, colour, H, for error analysis); returns the labels. Field i depends on
    the seed and i only."""
    out_dir.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str] = {}
    meta: dict[str, dict] = {}
    for i in range(count):
        kind, data, text, info = field(digits, labels, seed, i, lengths)
        name = f"field-{i:05d}{kind}"
        (out_dir / name).write_bytes(data)
        truth[name] = text
        meta[name] = info
    (out_dir / "labels.json").write_text(json.dumps(truth, indent=1) + "\n")
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return truth


def write_forms(
    out_dir: Path, digits: np.ndarray, labels: np.ndarray, count: int, seed: int = 0
) -> dict[str, dict[str, str]]:
    """Write `count` filled-in form pages with form.yaml and truth.json, and return the truth:
    see trainer/specimen_forms.py, which builds on this module and so is imported here late."""
    from trainer import specimen_forms

    return specimen_forms.write_forms(out_dir, digits, labels, count, seed)
