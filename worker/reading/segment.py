"""Find a field's writing: its print and slant taken out, its marks on the line of writing left
to right (each offered to the classifier as `pieces`), the marks of a digit's size off that line
and the ink no mark holds; and the whole line of writing, framed for the string reader.

Every mark of a digit's size in the field is on the line of writing, however far from its
neighbours, or is named as left out (`Field.left_out`): nothing is dropped unseen. A scan of
one digit and a field of several take the same path: one group or many.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from trainer import strings
from trainer.errors import NoInkError
from worker.reading import pieces, printed
from worker.reading.pieces import PIECES, Box, Piece, Run
from worker.reading.preprocess import (
    PREPROCESS,
    field_writing,
    gathered,
    levels,
    locate,
    off_rim,
    pen_width,
    prepare,
    stroke_radius,
    thicken,
    writing_height,
)


@dataclass(frozen=True)
class SegmentConfig:
    """How a field's marks are found on its line of writing; sizes are shares of the digit
    height unless named."""

    writing: int = 96  # px: writing taller than this is scaled down first
    least: int = 40  # px: writing shorter than this is scaled up first
    max_marks: int = 40  # more separate marks than this is not a digit field (noise, text, a photo)
    speck: float = 0.06  # marks smaller than this share of a typical digit's ink are specks
    main: float = 0.4  # marks at least this share of the digit height are digits, or most of one
    stroked: float = 0.8  # visible ink no mark holds is a pen's if inked in this share of its rows
    band: float = 0.3  # a mark on the line of writing reaches within this of the line's middle
    near: float = 0.25  # a mark this near a digit may be part of it (a stroke, a bar, an arm)
    part: float = 0.75  # ...and one over or under it, this share of the tallest digit or less, too
    broken: float = 2.0  # pen widths: a mark this close over or under a lone digit is part of it
    slope: float = 0.2  # the line of writing rises or falls at most this much per unit width (11°)
    aspect: float = 0.8  # MNIST's median width / height: a typical digit's width from its height
    smallest: int = 20  # px of the scan read, MNIST's digit height: a mark this tall may be one


SEGMENT = SegmentConfig()


@dataclass(frozen=True)
class Mark:
    """A mark on the line of writing (a digit, or part of one): its box in the scan and the
    columns [first, last) it takes in the reader's line."""

    box: Box
    columns: tuple[float, float]


@dataclass(frozen=True)
class Field:
    """A field's digit candidates, run by run, and its whole line of writing framed for the
    string reader, with the digit under any span of that frame's columns; its marks on the line
    of writing, and the boxes of the marks of a digit's size left out (off the line) and of
    the visible ink of a digit's size that no mark holds."""

    runs: list[Run]
    line: np.ndarray
    span: Callable[[int, int], Piece]  # the ink under line columns [first, last) (or all)
    marks: list[Mark]
    left_out: list[Box]
    unread: list[Box]  # ink of a digit's size in no mark: too light, or taken for print


def segment(
    gray: np.ndarray, reduced: int = 1, inside: tuple[int, int, int, int] | None = None
) -> Field:
    """Digit candidates of a 2-D float32 gray scan in [0, 1], left to right; `reduced`: scan
    pixels per pixel of `gray` (a scan decoded at reduced size), for the boxes; `inside`: the
    field's own area (x0, y0, x1, y1 in `gray`'s pixels) where the scan holds more, such as a
    form's box cut out with a margin: marks wholly outside it are not the field's."""
    ink, mask, scale = _sized(*prepare(gray))
    ink, mask, seen = printed.remove(ink, mask)
    if inside is not None:
        mask = _inside(mask, np.array(inside, float) * scale)
        ink = np.where(mask, ink, 0.0).astype(np.float32)
        seen = _inside(seen, np.array(inside, float) * scale)
    ink, mask, shear = _unslanted(ink, mask)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), None, 8)
    back = cv2.invertAffineTransform(shear) * (reduced / scale)
    # a scan decoded at 1/r holds between (n - 1)·r + 1 and n·r pixels: boxes stay within the least
    limit = (np.array(gray.shape[::-1]) - 1) * reduced + 1
    # the writing takes a quarter of a field crop's height at least; a single digit's scan may
    # have broader margins, but a digit so small in it is no smaller than MNIST's own
    least = min(SEGMENT.main * PREPROCESS.least_writing * mask.shape[0], SEGMENT.smallest * scale)
    groups, off, slope = _line_of_writing(stats[1:count], mask, least)
    boxes = [_bounds(stats[[i + 1 for i in members]]) for members in groups]
    # a typical digit: the field's median height, and MNIST's median aspect for its width
    height = float(np.median([h for *_, h in boxes]))
    typical = (SEGMENT.aspect * height, height)

    def scanned(box: Box) -> Box:
        """A box of the upright working image in scan pixels."""
        x, y, w, h = box
        corners = np.float32([[x, y], [x + w, y], [x, y + h], [x + w, y + h]])
        return _outer(corners @ back[:, :2].T + back[:, 2], limit)

    @cache
    def crop(first: int, last: int) -> tuple[np.ndarray, int, int]:
        """The ink mask of groups first..last and its origin (x, y)."""
        members = [i + 1 for g in groups[first : last + 1] for i in g]
        x, y, w, h = _bounds(stats[members])
        return np.isin(labels[y : y + h, x : x + w], members), x, y

    def piece(part: np.ndarray, x: int, y: int) -> Piece:
        h, w = part.shape
        at = back @ np.float32([x, y, 1])  # scan position of the crop's origin
        return pieces.frame(ink[y : y + h, x : x + w], part, back[:, :2], at, limit)

    @cache
    def whole(first: int, last: int) -> Piece:
        return piece(*crop(first, last))

    @cache
    def cut(index: int) -> list[list[Piece]]:
        part, x, y = crop(index, index)
        splits = pieces.splits(part, typical[0])
        # splits share pieces (the same array): each is framed, and later read, once
        framed = {id(p): piece(p, x, y) for split in splits for p in split}
        return [[framed[id(p)] for p in split] for split in splits]

    everything, x0, y0 = crop(0, len(groups) - 1)
    h, w = everything.shape
    window = (slice(y0, y0 + h), slice(x0, x0 + w))
    owner = np.full(count, -1)
    for n, members in enumerate(groups):
        owner[[i + 1 for i in members]] = n
    placed, lefts = _compose(ink[window], labels[window], owner, boxes, (x0, y0), height, slope)
    radius = stroke_radius(everything, strings.DIGIT / height)
    line, across = strings.frame(thicken(placed, radius), height)
    # each pixel's column in the composed line: its group's ink moved by the gaps closed
    starts = np.array([box[0] - x0 - left for box, left in zip(boxes, lefts, strict=True)])
    moved = np.arange(w)[None, :] - starts[owner[labels[window]]]

    def column(x: float) -> float:
        """A column of the composed line as a column of the reader's frame."""
        return (x + radius) * across + 2

    def span(first: int, last: int) -> Piece:
        lo, hi = (max(0, round((c - 2) / across) - radius) for c in (first, last))
        part = everything & (moved >= lo) & (moved < hi)
        return piece(part if part.any() else everything, x0, y0)

    marks = [
        Mark(scanned(box), (column(left), column(left + box[2])))
        for box, left in zip(boxes, lefts, strict=True)
    ]
    left_out = [scanned(_bounds(stats[[i + 1 for i in members]])) for members in off]
    held = [mark.box for mark in marks] + left_out
    unread = _unread(seen, held, height, reduced / scale, limit)
    runs = [Run(marks, whole, cut) for marks in pieces.runs(boxes, typical)]
    return Field(runs, line, span, marks, left_out, unread)


def _unread(
    seen: np.ndarray, held: list[Box], height: float, factor: float, limit: np.ndarray
) -> list[Box]:
    """The boxes, in scan pixels, of the visible ink (`seen`, in working pixels before the
    shear) that the boxes `held` (scan pixels) miss and that is of a digit's size: `main` to
    `tallest` digit heights, a pen's strokes (mostly blank within its box, but inked down its
    height), off the image's rim. It is writing too light for the marks, or taken for print.
    Ink within `join` digit heights (as marks join into a digit) is one mark, so a light stroke
    broken into specks counts."""
    inside = np.zeros(seen.shape, bool)
    margin = PIECES.join * height  # a mark's lightest edge, which its box leaves out
    for x, y, w, h in held:
        x0, y0 = (max(0, round(v / factor - margin)) for v in (x, y))
        x1, y1 = (round(v / factor + margin) for v in (x + w, y + h))
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
    free = seen & ~inside
    labels, low, high, _ = gathered(free, height)
    count = low.shape[1]
    w, h = high - low + 1
    ys = np.nonzero(free)[0]
    owners = labels[free]
    inked = np.bincount(owners, minlength=count)
    stroked = np.bincount(np.unique(owners * seen.shape[0] + ys) // seen.shape[0], minlength=count)
    unread = (
        (h >= SEGMENT.main * height)
        & (h <= PREPROCESS.tallest * height)
        & (w <= PREPROCESS.tallest * height)
        & (inked <= PREPROCESS.solid * w * h)
        & (stroked >= SEGMENT.stroked * h)
        & off_rim(low, high, seen.shape)
    )
    corners = np.stack([low, high + 1], axis=1).astype(np.float32) * factor  # (2, 2, count)
    return [_outer(corners[:, :, i].T, limit) for i in np.flatnonzero(unread[1:]) + 1]


def _sized(ink: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Scale so the writing is `least` to `writing` px tall: plenty for a 20×20 digit (the cost
    of everything after grows with the pixel count), and enough that a pixel or two of blur,
    threshold or print is less than a stroke or a gap between dots. Larger, the ink is
    interpolated and its mask found again; never past `work_pixels`."""
    binary = mask.astype(np.uint8)
    tall = writing_height(binary)
    if tall > SEGMENT.writing:
        factor = SEGMENT.writing / tall
        size = (max(1, round(mask.shape[1] * factor)), max(1, round(mask.shape[0] * factor)))
        small = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
        return cv2.resize(ink, size, interpolation=cv2.INTER_AREA), small, scale * factor
    short = field_writing(binary, tall)  # a share of the crop at least: not a box's dashes
    factor = min(SEGMENT.least / max(short, 1.0), math.sqrt(PREPROCESS.work_pixels / mask.size))
    if factor <= 1.0:
        return ink, mask, scale
    size = (round(mask.shape[1] * factor), round(mask.shape[0] * factor))
    large = np.clip(cv2.resize(ink, size, interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    return large, locate(large), scale * factor


def _bounds(stats: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (x, y, w, h) of connected-component stats rows."""
    x0, y0 = stats[:, 0].min(), stats[:, 1].min()
    x1, y1 = (stats[:, 0] + stats[:, 2]).max(), (stats[:, 1] + stats[:, 3]).max()
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def _inside(mask: np.ndarray, area: np.ndarray) -> np.ndarray:
    """The mask without the marks wholly outside `area` (x0, y0, x1, y1)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), None, 8)
    x, y, w, h = (stats[:, k] for k in range(4))
    x0, y0, x1, y1 = area
    within = (x < x1) & (x + w > x0) & (y < y1) & (y + h > y0)
    within[0] = False
    return within[labels]


def _outer(points: np.ndarray, limit: np.ndarray) -> Box:
    """The box, in whole pixels within (0, 0)-`limit`, around points (N×2)."""
    low = np.clip(np.floor(points.min(axis=0)), 0, limit).astype(int)
    high = np.clip(np.ceil(points.max(axis=0)), 0, limit).astype(int)
    return (*map(int, low), *map(int, high - low))


def _unslanted(ink: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shear the writer's slant out of the whole field (the median slant of its marks, from
    their second moments) so digits stand upright for grouping and vertical cuts. Marks much
    wider than tall are left out while others count: the moments of touching digits or of a
    long tail measure how the ink lies, not the slant."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), None, 8)
    marks = [i for i in range(1, count) if stats[i, cv2.CC_STAT_HEIGHT] >= 8]
    narrow = [i for i in marks if stats[i, cv2.CC_STAT_WIDTH] <= 1.2 * stats[i, cv2.CC_STAT_HEIGHT]]
    slants, weights = [], []
    for i in narrow or marks:
        x, y, w, h, area = stats[i]
        ys, xs = np.nonzero(labels[y : y + h, x : x + w] == i)
        var_y = float(((ys - ys.mean()) ** 2).mean())
        slants.append(float(((xs - xs.mean()) * (ys - ys.mean())).mean()) / max(var_y, 1e-6))
        weights.append(area)
    h, w = mask.shape
    if not slants:
        return ink, mask, np.float32([[1, 0, 0], [0, 1, 0]])
    order = np.argsort(slants)
    cumulative = np.cumsum(np.asarray(weights)[order])
    slant = float(np.clip(slants[order[np.searchsorted(cumulative, cumulative[-1] / 2)]], -1, 1))
    offset = max(0.0, slant * (h - 1))
    shear = np.float32([[1, -slant, offset], [0, 1, 0]])
    width = int(np.ceil(w + abs(slant) * (h - 1)))
    sheared_ink = cv2.warpAffine(ink, shear, (width, h), flags=cv2.INTER_LINEAR)
    sheared_mask = cv2.warpAffine(mask.astype(np.uint8), shear, (width, h), flags=cv2.INTER_NEAREST)
    return sheared_ink, sheared_mask > 0, shear


def _line_of_writing(
    stats: np.ndarray, mask: np.ndarray, least: float
) -> tuple[list[list[int]], list[list[int]], float]:
    """The marks making up each digit (or run of touching digits) on the line of writing, left
    to right; the marks of a digit's size off that line (a label, a signature above), each on
    its own; and the line's slope. Indices are into `stats`, the marks of `mask`; with no mark
    `least` px tall, there are only specks and thin lines."""
    if len(stats) == 0:
        raise NoInkError("no ink found (blank or near-blank image)")
    x, y, w, h, area = (stats[:, k].astype(float) for k in range(5))
    big = area >= 0.2 * area.max()
    height = float(np.median(h[big]))
    typical = float(np.median(area[big]))
    kept = area >= max(4.0, SEGMENT.speck * typical)
    main = np.flatnonzero(kept & (h >= SEGMENT.main * height))
    if len(main) > SEGMENT.max_marks:
        raise NoInkError(f"no digit field found ({len(main)} separate marks)")
    # a blank field's dust, grain and what its print leaves are no writing
    if not len(main) or h[main].max() < least:
        raise NoInkError("no ink found (only specks and lines)")
    slope, level = _baseline(x[main] + w[main] / 2, y[main] + h[main] / 2, area[main], height)
    middle = level + slope * (x + w / 2)
    on = (y < middle + SEGMENT.band * height) & (y + h > middle - SEGMENT.band * height)
    groups = [[int(i)] for i in main[on[main]]]
    groups.sort(key=lambda g: x[g[0]])

    def extent(group: list[int]) -> tuple[float, float, float, float]:
        return (
            min(x[group]),
            min(y[group]),
            max(x[group] + w[group]),
            max(y[group] + h[group]),
        )

    def over(a: tuple[float, float], b: tuple[float, float]) -> bool:
        """Whether columns [a0, a1) and [b0, b1) share half the narrower or more."""
        return min(a[1], b[1]) - max(a[0], b[0]) >= 0.5 * min(a[1] - a[0], b[1] - b[0])

    # parts of one digit stacked above each other: a broken stroke, a detached bar
    merged = True
    while merged:
        merged = False
        for a in range(len(groups) - 1):
            ax0, _, ax1, _ = extent(groups[a])
            bx0, _, bx1, _ = extent(groups[a + 1])
            if over((ax0, ax1), (bx0, bx1)):
                groups[a] += groups.pop(a + 1)
                merged = True
                break

    def gap(group: list[int], i: int) -> float:
        gx0, gy0, gx1, gy1 = extent(group)
        dx = max(gx0 - (x[i] + w[i]), x[i] - gx1, 0.0)
        dy = max(gy0 - (y[i] + h[i]), y[i] - gy1, 0.0)
        return dx + dy

    def nearest(i: int) -> list[int]:
        """The digit (group of marks) on the line nearest mark `i`."""
        return min(groups, key=lambda group: gap(group, i))

    def beside(group: list[int], i: int) -> bool:
        """Whether mark `i` lies near the group and in half its own rows or more of it."""
        _, gy0, _, gy1 = extent(group)
        shared = min(gy1, y[i] + h[i]) - max(gy0, y[i])
        return gap(group, i) <= SEGMENT.near * height and shared >= 0.5 * h[i]

    @cache
    def pen() -> float:
        """The strokes' width, measured only where a mark off the line may be a digit's part."""
        return pen_width(mask)

    def stacked(group: list[int], i: int, tallest: float) -> bool:
        """Whether mark `i` lies above or below the group, over half the columns of the
        narrower or more, and is near and well short of the `tallest` digit or, the field's
        only digit, as close to it as a break in a stroke (a digit broken into an upper and a
        lower half, each as tall as the writing then seems): a digit's part, not a note over
        a digit."""
        gx0, gy0, gx1, gy1 = extent(group)
        if not over((gx0, gx1), (x[i], x[i] + w[i])):
            return False
        rows = max(gy0 - (y[i] + h[i]), y[i] - gy1, 0.0)
        if len(groups) == 1 and rows <= SEGMENT.broken * pen():
            return True
        return gap(group, i) <= SEGMENT.near * height and h[i] < SEGMENT.part * tallest

    # smaller marks join the digit they sit over or beside; the others are specks, unless
    # together they make up a mark of a digit's size (a light digit broken into pieces)
    loose: list[list[int]] = []
    for i in np.flatnonzero(kept & (h < SEGMENT.main * height)):
        group = nearest(i)
        if gap(group, i) <= SEGMENT.near * height:
            group.append(int(i))
            continue
        if not on[i]:
            continue
        near = [g for g in loose if gap(g, i) <= SEGMENT.near * height]
        loose = [g for g in loose if g not in near] + [[int(i), *itertools.chain(*near)]]

    # a digit's part off the line (a 4's arm written high, a 5's bar broken off its bowl) lies
    # beside or just over the digit nearest it; a label or a signature lies above or below the
    # digits, apart
    off = []
    tallest = max((extent(g)[3] - extent(g)[1] for g in groups), default=0.0)
    for i in main[~on[main]]:
        group = nearest(i) if groups else None
        if group is not None and (beside(group, i) or stacked(group, i, tallest)):
            group.append(int(i))
        else:
            off.append([int(i)])
    # a light digit whose strong ink broke apart: the marks off the line in a chain of breaks
    # from a digit on it are its pieces, if together no wider than one digit
    for group in groups:
        chain = _chained(group, [i for (i,) in off], lambda g, i: gap(g, i) <= pen())
        x0, y0, x1, y1 = extent(group + chain)
        if chain and x1 - x0 <= PIECES.broad * SEGMENT.aspect * (y1 - y0):
            group += chain
            off = [[i] for (i,) in off if i not in chain]
    broken = [g for g in loose if extent(g)[3] - extent(g)[1] >= SEGMENT.main * height]
    return sorted(groups + broken, key=lambda g: extent(g)[0]), off, slope


def _chained(
    group: list[int], marks: list[int], near: Callable[[list[int], int], bool]
) -> list[int]:
    """The `marks` in a chain from the group: each `near` it or a mark found before it."""
    found: list[int] = []
    while more := [
        i for i in marks if i not in found and (near(group, i) or any(near([j], i) for j in found))
    ]:
        found += more
    return found


def _baseline(
    cx: np.ndarray, cy: np.ndarray, weight: np.ndarray, height: float
) -> tuple[float, float]:
    """The line of writing through marks' centres: its slope (Theil-Sen: the median slope
    between marks at least half a digit apart, of three marks or more; at most `slope`) and its
    level at x = 0 (the median by ink, so a mark off the line cannot move it)."""
    slope = 0.0
    if len(cx) >= 3:
        i, j = np.triu_indices(len(cx), 1)
        dx = cx[j] - cx[i]
        apart = np.abs(dx) >= 0.5 * height
        if apart.any():
            slopes = (cy[j] - cy[i])[apart] / dx[apart]
            slope = float(np.clip(np.median(slopes), -SEGMENT.slope, SEGMENT.slope))
    levels_ = cy - slope * cx
    order = np.argsort(levels_)
    cumulative = np.cumsum(weight[order])
    return slope, float(levels_[order[np.searchsorted(cumulative, cumulative[-1] / 2)]])


def _compose(
    ink: np.ndarray,
    labels: np.ndarray,
    owner: np.ndarray,
    boxes: list[Box],
    origin: tuple[int, int],
    height: float,
    slope: float,
) -> tuple[np.ndarray, list[int]]:
    """The line of writing as the reader should see it: each digit's own ink, its grey levels
    stretched digit by digit (a digit written lighter is as plain as the others), set left to
    right with gaps wider than strings.GAP digit heights closed to that, the line's slope taken
    out. `ink` and `labels` are the writing's window at `origin`; `owner` maps a label to its
    group. Returns the composed line and each group's left column in it."""
    x0, y0 = origin
    lefts, tops, closed, right = [], [], 0, None
    centre = boxes[0][0] + boxes[0][2] / 2
    for x, y, w, _ in boxes:
        if right is not None and x - right > strings.GAP * height:
            closed += round(x - right - strings.GAP * height)
        right = x + w if right is None else max(right, x + w)
        lefts.append(x - x0 - closed)
        tops.append(y - y0 - round(slope * (x + w / 2 - centre)))
    lift = min(tops)
    rows = max(top - lift + box[3] for top, box in zip(tops, boxes, strict=True))
    columns = max(left + box[2] for left, box in zip(lefts, boxes, strict=True))
    line = np.zeros((rows, columns), np.float32)
    for n, ((x, y, w, h), left, top) in enumerate(zip(boxes, lefts, tops, strict=True)):
        window = (slice(y - y0, y - y0 + h), slice(x - x0, x - x0 + w))
        part = owner[labels[window]] == n
        view = line[top - lift : top - lift + h, left : left + w]
        np.maximum(view, levels(ink[window], part), out=view)
    return line, lefts
