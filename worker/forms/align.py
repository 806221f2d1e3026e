"""Align a scanned page to its form template: find the printed field boxes on the page and the
similarity transform (rotation, scale, offset) that carries the template's boxes onto them.

The template's reference frame is the upright page at the scan's own size, in OpenCV's pixel
coordinates: a box (x, y, width, height) spans x·W to (x + width)·W across a page W pixels
wide, and likewise down.

Boxes are found at about `detect` px on the page's long side (thin lines thickened first so they
survive the shrinking): the ink without the paper's tint (a black-hat transform); the page's
skew, the angle at which the ink's row profile is sharpest (printed lines and lines of text
both make it so); the long lines of the page turned upright (grey openings); the rectangles
those lines close, whole boxes (comb boxes too) and boxes sharing sides in a row or table.
Each pairing of a rectangle with a template box of its size proposes a scale and offset, grown
outwards box by box to the template's other boxes that land on rectangles, refitted as it
grows; the proposal that places the most boxes wins (the nearest to an unmoved page on a tie),
moved by the offset most pairings agree on if that places more (a table of like boxes is
ambiguous by a row). The corners of the boxes it placed, found to the sub-pixel from the ink's
profile across each line, fit the transform.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from trainer.errors import AlignError
from worker.forms.templates import FieldSpec, Template


@dataclass(frozen=True)
class AlignConfig:
    """How the template's boxes are sought on a page and matched to the rectangles found."""

    detect: int = 1000  # px: the page's long side for detection...
    min_box_side: int = 16  # px: ...unless the template's smallest box side would be shorter
    thicken: int = 1  # px: dark lines thickened by this much all round before the page is shrunk
    angle: float = 6.0  # degrees: skew searched either way
    scale: float = 0.1  # the page's scale may be off by this share either way
    shift: float = 0.15  # and its offset by this share of the page (besides scaling's offset)
    line: float = 0.6  # a printed line is at least this share of the smallest box's side
    side: float = 0.8  # a rectangle's side is printed along at least this share of its length
    faint: float = 6.0  # line ink: this many median deviations over the paper...
    faint_min: float = 8.0  # ...and at least this
    tolerance: float = 5.0  # px at detection size: a box on a rectangle has every corner this near
    max_rects: int = 1000  # rectangles of a template box's size considered at most
    proposals: int = 20  # proposals grown at most, from the likeliest pairings of box and rectangle
    agreed_offsets: int = 8  # offsets the most pairings agree on, tried on the best proposal
    margin: float = 0.25  # box heights of the page kept all round a field's box when it is cut out


ALIGN = AlignConfig()

Line = tuple[int, int]  # a printed line's first and last row (or column)


@dataclass(frozen=True, eq=False)
class Alignment:
    """Where the template lies on one page: `matrix` (2×3, a similarity) carries reference-frame
    pixels to page pixels; `matched`: how many of the template's boxes were found on the page."""

    matrix: np.ndarray
    matched: int

    def corners(self, field: FieldSpec, shape: tuple[int, ...]) -> np.ndarray:
        """The field's box on a page of `shape`: 4×2 (x, y) page coordinates, clockwise from
        the top left corner."""
        return _corners(field, shape) @ self.matrix[:, :2].T + self.matrix[:, 2]

    def crop(self, page: np.ndarray, field: FieldSpec, margin: float = ALIGN.margin) -> np.ndarray:
        """The field's box cut out of `page` upright, with `margin` box heights all round, at
        the page's own resolution."""
        (x0, y0), _, (x1, y1), _ = _corners(field, page.shape)
        pad = margin * (y1 - y0)
        scale = math.sqrt(abs(np.linalg.det(self.matrix[:, :2])))
        size = (
            max(1, round((x1 - x0 + 2 * pad) * scale)),
            max(1, round((y1 - y0 + 2 * pad) * scale)),
        )
        # crop pixels -> reference frame -> page pixels, which warpAffine wants the other way
        into = np.float64([[1 / scale, 0, x0 - pad], [0, 1 / scale, y0 - pad], [0, 0, 1]])
        back = self.matrix @ into
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        return cv2.warpAffine(page, back, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)


def inside(shape: tuple[int, ...], margin: float = ALIGN.margin) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) within a field cut out by `Alignment.crop` of `shape`."""
    h, w = shape[:2]
    pad = round(h * margin / (1 + 2 * margin))
    return pad, pad, w - pad, h - pad


def align(page: np.ndarray, template: Template) -> Alignment:
    """Find `template` on a gray page (uint8, or float in [0, 1]; dark ink on light paper)."""
    shape = page.shape[:2]
    boxes = np.stack([_corners(field, shape) for field in template.fields])  # reference frame
    sides = boxes[:, 2] - boxes[:, 0]
    smallest = max(float(sides.min()), 1e-6)
    scale = min(1.0, max(ALIGN.detect / max(shape), ALIGN.min_box_side / smallest))
    ink = _ink(page, scale)
    factor = np.array(ink.shape[::-1]) / np.array(shape[::-1])  # small pixels per page pixel
    small = (boxes + 0.5) * factor - 0.5
    upright, turn = _turned(ink, _skew(ink))
    lines = _rects(upright, small)
    # where the boxes would be on a page turned about its centre but neither scaled nor moved
    middle = np.array(ink.shape[::-1]) / 2
    unmoved = small.mean(axis=1) - middle + _apply(turn, middle)
    # rectangles as drawn before the thickening, which is not small at a mild shrink
    thinner = (
        np.float64([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * ALIGN.thicken * factor * (scale < 1)
    )
    found = _match(_outline(lines) + thinner, small, unmoved, upright.shape)
    if found is None:
        count = len(template.fields)
        raise AlignError(
            f"cannot align the page to template {template.name!r}: "
            f"none of its {count} field box{'es' if count > 1 else ''} found"
        )
    which, where = found
    rects = _outline(lines[where], upright) + thinner
    on_page = (_apply(cv2.invertAffineTransform(turn), rects) + 0.5) / factor - 0.5
    fit = _fit(boxes[which].reshape(-1, 2), on_page.reshape(-1, 2))
    # a box found a little off (a line or a stroke along its edge) is left out of the last fit
    error = np.abs(_apply(fit, boxes[which]) - on_page).max(axis=(1, 2))
    kept = error <= max(3 * float(np.median(error)), 1 / factor.min())
    if kept.sum() >= 2:
        fit = _fit(boxes[which[kept]].reshape(-1, 2), on_page[kept].reshape(-1, 2))
    return Alignment(fit, len(which))


def _corners(field: FieldSpec, shape: tuple[int, ...]) -> np.ndarray:
    """The field's box in the reference frame of a page of `shape`: 4×2, clockwise from the
    top left corner."""
    h, w = shape[:2]
    x, y, width, height = field.box
    x0, y0, x1, y1 = x * w, y * h, (x + width) * w, (y + height) * h
    return np.float64([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _ink(page: np.ndarray, scale: float) -> np.ndarray:
    """The page's ink at `scale` as uint8: dark strokes bright; the paper, its tint and shadows
    wider than a stroke 0."""
    small = page
    if scale < 1:  # thin lines thickened first (by `thicken` px all round) keep their contrast
        small = cv2.erode(page, np.ones((2 * ALIGN.thicken + 1,) * 2, np.uint8))
        small = cv2.resize(small, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if small.dtype != np.uint8:
        small = (np.clip(small, 0.0, 1.0) * 255).astype(np.uint8)
    size = max(9, round(max(small.shape) / 100)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    return cv2.morphologyEx(small, cv2.MORPH_BLACKHAT, kernel)


def _skew(ink: np.ndarray) -> float:
    """The angle (degrees) that turns the page upright: the one at which the ink's row profile
    is sharpest, searched coarse to fine."""
    _, mask = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return 0.0
    step = max(1, len(xs) // 30_000)
    xs, ys = xs[::step] - xs.mean(), ys[::step] - ys.mean()

    def sharpness(angle: float) -> float:
        rows = np.rint(ys * math.cos(math.radians(angle)) - xs * math.sin(math.radians(angle)))
        counts = np.bincount((rows - rows.min()).astype(np.int64))
        return float(np.dot(counts, counts))

    best = 0.0
    for step, span in ((0.5, ALIGN.angle), (0.1, 0.5), (0.02, 0.1)):
        best = max(best + np.arange(-span, span + step / 2, step), key=sharpness)
    return float(best)


def _turned(ink: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The ink turned by `angle` degrees onto a canvas that holds all of it, and the 2×3 turn."""
    h, w = ink.shape
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    corners = _apply(turn, np.float64([[0, 0], [w, 0], [w, h], [0, h]]))
    turn[:, 2] -= corners.min(axis=0)
    size = np.ceil(corners.max(axis=0) - corners.min(axis=0)).astype(int)
    return cv2.warpAffine(ink, turn, (int(size[0]), int(size[1]))), turn


def _rects(upright: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The rectangles the upright page's printed lines close that are about the size of a
    template box: whole boxes (comb boxes included) and boxes sharing sides in a row or a table.
    Each as its top, bottom, left and right lines' first and last rows or columns (N×4×2); at
    most `max_rects` (a page of graph paper has rectangles of every size everywhere)."""
    found = itertools.islice(_closed_rects(upright, boxes), ALIGN.max_rects)
    return np.int64(list(found)).reshape(-1, 4, 2)


def _closed_rects(upright: np.ndarray, boxes: np.ndarray) -> Iterator[list[Line]]:
    sizes = boxes[:, 2] - boxes[:, 0]  # template box (width, height) at detection size
    shortest = sizes.min(axis=0) * (1 - ALIGN.scale)
    long_x, long_y = (max(5, round(ALIGN.line * side)) for side in shortest)
    # grey openings keep the ink that runs on in a line, dropping the noise that does not
    faint = _faint_level(upright)
    across = cv2.morphologyEx(upright, cv2.MORPH_OPEN, np.ones((1, long_x), np.uint8)) > faint
    down = cv2.morphologyEx(upright, cv2.MORPH_OPEN, np.ones((long_y, 1), np.uint8)) > faint
    count, labels, stats, _ = cv2.connectedComponentsWithStats((across | down).astype(np.uint8))
    for i in range(1, count):
        x, y, w, h = stats[i, :4]
        if w < shortest[0] - 2 or h < shortest[1] - 2:
            continue
        part = labels[y : y + h, x : x + w] == i
        rows = _printed_lines(across[y : y + h, x : x + w] & part, 1, ALIGN.side * shortest[0], y)
        sides = down[y : y + h, x : x + w] & part
        for top, bottom in _spans(rows, sizes[:, 1]):
            # the sides of boxes between these two lines run all the way from one to the other
            strip = sides[top[0] - y : bottom[1] + 1 - y]
            cols = _printed_lines(strip, 0, ALIGN.side * len(strip), x)
            for left, right in _spans(cols, sizes[:, 0]):
                if _closed(across, down, top, bottom, left, right):
                    yield [top, bottom, left, right]


def _outline(lines: np.ndarray, upright: np.ndarray | None = None) -> np.ndarray:
    """The corners (N×4×2) of rectangles given by their lines (N×4×2, as `_rects` gives them):
    the lines' outer pixel edges or, given the `upright` ink, their sub-pixel edges."""
    edges = []
    for top, bottom, left, right in lines.tolist():
        if upright is None:
            edges.append((left[0] - 0.5, top[0] - 0.5, right[1] + 0.5, bottom[1] + 0.5))
        else:
            rows, cols = (top[1] + 1, bottom[0]), (left[1] + 1, right[0])
            edges.append(
                (
                    _line_edge(upright.T, left, rows, before=True),
                    _line_edge(upright, top, cols, before=True),
                    _line_edge(upright.T, right, rows, before=False),
                    _line_edge(upright, bottom, cols, before=False),
                )
            )
    x0, y0, x1, y1 = np.float64(edges).reshape(-1, 4).T
    return np.stack([x0, y0, x1, y0, x1, y1, x0, y1], axis=1).reshape(-1, 4, 2)


def _line_edge(ink: np.ndarray, line: Line, along: Line, before: bool) -> float:
    """The outer edge of a printed line across the rows `line`, to the sub-pixel: where the
    ink, median along the columns `along`, first reaches half the line's height from the
    outside (`before` the line's rows, or after them)."""
    lo, hi = max(line[0] - 2, 0), min(line[1] + 3, ink.shape[0])
    profile = np.median(ink[lo:hi, along[0] : max(along[1], along[0] + 1)], axis=1)
    if not before:
        profile = profile[::-1]
    half = (float(profile[0]) + float(profile.max())) / 2
    i = int(np.argmax(profile >= half))
    inward = i - 1 + (half - profile[i - 1]) / max(profile[i] - profile[i - 1], 1e-6) if i else -0.5
    return lo + inward if before else hi - 1 - inward


def _faint_level(ink: np.ndarray) -> float:
    """The ink level clear of the paper's noise (its median plus `faint` median deviations):
    faint or thin printed lines reach it; the noise that does is too short for a line."""
    counts = cv2.calcHist([ink], [0], None, [256], [0, 256]).ravel()
    middle = counts.sum() / 2
    paper = int(np.searchsorted(np.cumsum(counts), middle))
    deviations = np.bincount(np.abs(np.arange(256) - paper), weights=counts)
    spread = int(np.searchsorted(np.cumsum(deviations), middle))
    return max(ALIGN.faint_min, paper + ALIGN.faint * spread)


def _printed_lines(lines: np.ndarray, axis: int, least: float, first: int) -> list[Line]:
    """Printed lines along `axis` (1: rows, 0: columns) with at least `least` pixels: each as
    its first and last row (or column), counted from `first`. A line is the rows with at least
    half its peak count: strokes along it, shorter, do not widen it."""
    counts = lines.sum(axis=axis)
    strong = np.flatnonzero(counts >= least)
    found = []
    for run in np.split(strong, np.flatnonzero(np.diff(strong) > 1) + 1) if len(strong) else []:
        core = run[counts[run] >= counts[run].max() / 2]
        found.append((int(core[0]) + first, int(core[-1]) + first))
    return found


def _spans(lines: list[Line], lengths: np.ndarray) -> list[tuple[Line, Line]]:
    """Pairs of lines as far apart as some template box is long, give or take `scale`."""
    low = lengths.min() * (1 - ALIGN.scale) - 2
    high = lengths.max() * (1 + ALIGN.scale) + 2
    return [
        (a, b)
        for i, a in enumerate(lines)
        for b in lines[i + 1 :]
        if low <= b[1] - a[0] + 1 <= high
    ]


def _closed(
    across: np.ndarray, down: np.ndarray, top: Line, bottom: Line, left: Line, right: Line
) -> bool:
    """Whether lines run along all four sides of the rectangle between these lines."""
    x0, x1, y0, y1 = left[0], right[1] + 1, top[0], bottom[1] + 1
    sides = (
        across[top[0] : top[1] + 1, x0:x1].any(axis=0),
        across[bottom[0] : bottom[1] + 1, x0:x1].any(axis=0),
        down[y0:y1, left[0] : left[1] + 1].any(axis=1),
        down[y0:y1, right[0] : right[1] + 1].any(axis=1),
    )
    return all(side.mean() >= ALIGN.side for side in sides)


def _match(
    rects: np.ndarray, boxes: np.ndarray, unmoved: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The template boxes found and the rectangles they land on, under the best proposal."""
    if not len(rects):
        return None
    size_b = boxes[:, 2] - boxes[:, 0]  # T×2
    size_r = rects[:, 2] - rects[:, 0]  # N×2
    ratio = size_r[None, :, :] / size_b[:, None, :]  # T×N×2
    # the edges' error (a box's line drawn astride its edge), as a share of the box's sides
    slack = 6 / size_b[:, None, :]
    offset = np.abs(rects.mean(axis=1)[None] - unmoved[:, None]) / np.array(shape[::-1])
    plausible = (
        (np.abs(ratio - 1) <= ALIGN.scale + slack).all(axis=2)
        & (np.abs(ratio[:, :, 0] - ratio[:, :, 1]) <= 0.02 + slack.sum(axis=2))
        & (offset <= ALIGN.shift + ALIGN.scale).all(axis=2)
    )
    pairs = np.argwhere(plausible)
    pairs = pairs[np.argsort(offset[pairs[:, 0], pairs[:, 1]].sum(axis=1), kind="stable")]
    # a proposal placing nearly all boxes that any could is right, but perhaps for an offset
    enough = 0.9 * min(len(boxes), int(plausible.any(axis=0).sum()))
    tried = np.zeros(plausible.shape, bool)
    proposals = []
    for box, rect in pairs:
        if tried[box, rect]:
            continue
        which, where, _ = found = _grow(rects, boxes, box, rect, unmoved)
        tried[which, where] = True
        proposals.append(found)
        if len(which) >= enough or len(proposals) == ALIGN.proposals:
            break
    if not proposals:
        return None
    which, where, _ = max(proposals, key=lambda found: found[2])
    return _settled(
        rects, boxes, _fit(boxes[which].reshape(-1, 2), rects[where].reshape(-1, 2)), pairs, unmoved
    )


def _settled(
    rects: np.ndarray, boxes: np.ndarray, fit: np.ndarray, pairs: np.ndarray, unmoved: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The boxes that land on rectangles, and those rectangles, under the fit moved by the
    offset the most plausible pairings agree on: a proposal one row off in a table of like
    boxes lands on all rows but one; the right offset lands on them all."""
    offsets = rects[pairs[:, 1]].mean(axis=1) - _apply(fit, boxes[pairs[:, 0]]).mean(axis=1)
    shifts, votes = np.unique(np.rint(offsets / ALIGN.tolerance), axis=0, return_counts=True)
    best = (0, 0.0, np.array([], int), np.array([], int))
    agreed = shifts[np.argsort(-votes, kind="stable")[: ALIGN.agreed_offsets]]
    for shift in np.vstack([[0, 0], agreed]):
        moved = fit + np.float64([[0, 0, shift[0]], [0, 0, shift[1]]]) * ALIGN.tolerance
        which, where = _landed(moved, boxes, rects, 2 * ALIGN.tolerance)
        if len(which):
            moved = _fit(boxes[which].reshape(-1, 2), rects[where].reshape(-1, 2))
            which, where = _landed(moved, boxes, rects, 2 * ALIGN.tolerance)
        cost = float(np.abs(_apply(moved, boxes[which]).mean(axis=1) - unmoved[which]).sum())
        if (len(which), -cost) > best[:2]:
            best = (len(which), -cost, which, where)
    return (best[2], best[3]) if best[0] else None


def _landed(
    fit: np.ndarray, boxes: np.ndarray, rects: np.ndarray, tolerance: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The boxes (indices) that `fit` places with every corner within `tolerance` (px, for all
    or for each box) of a rectangle's, and those rectangles."""
    error = np.abs(_apply(fit, boxes)[:, None] - rects[None]).max(axis=(2, 3))
    nearest = error.argmin(axis=1)
    landed = np.flatnonzero(error[np.arange(len(boxes)), nearest] <= tolerance)
    return landed, nearest[landed]


def _grow(
    rects: np.ndarray, boxes: np.ndarray, box: int, rect: int, unmoved: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[int, float]]:
    """From one box on one rectangle, the boxes that land on rectangles, sought ever further
    out and the transform refitted as they are found, so that the uncertain scale of a few
    boxes cannot mistake a neighbour for a box; and the proposal's score: the boxes landed,
    then nearness to an unmoved page."""
    which, where = np.array([box]), np.array([rect])
    centres = boxes.mean(axis=1)
    radius = 0.0
    while True:
        fit = _fit(boxes[which].reshape(-1, 2), rects[where].reshape(-1, 2))
        reach = np.ptp(boxes[which].reshape(-1, 2), axis=0).sum()  # how far the fit is sure
        spread = np.linalg.norm(centres - centres[which].mean(axis=0), axis=1)
        radius = max(radius, 2 * reach)
        near = np.flatnonzero(spread <= radius)
        tolerance = ALIGN.tolerance * (1 + spread[near] / reach)
        landed, on = _landed(fit, boxes[near], rects, tolerance)
        if len(landed) > len(which):
            which, where = near[landed], on
        elif radius < spread.max():
            radius *= 2
        else:
            break
    # boxes that nearly land: a box found a little off (ink across its edge) steadies the fit
    nearly, on = _landed(fit, boxes, rects, 3 * ALIGN.tolerance * (1 + spread / reach))
    if len(nearly) > len(which):
        refit = _fit(boxes[nearly].reshape(-1, 2), rects[on].reshape(-1, 2))
        landed, on = _landed(refit, boxes, rects, 2 * ALIGN.tolerance)
        if len(landed) > len(which):
            fit, which, where = refit, landed, on
    cost = float(np.abs(_apply(fit, boxes[which]).mean(axis=1) - unmoved[which]).sum())
    return which, where, (len(which), -cost)


def _fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The similarity (2×3) carrying `source` points closest onto `target` points (least
    squares)."""
    x, y = source[:, 0], source[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    a = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    (c, s, tx, ty), *_ = np.linalg.lstsq(a, np.concatenate([target[:, 0], target[:, 1]]))
    return np.float64([[c, -s, tx], [s, c, ty]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (…×2) carried by a 2×3 affine matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]
