"""Find the digits of a field: printed structure out, the writing's slant out, its marks on
the line of writing grouped into digits left to right, and touching digits offered to the
classifier as alternative splits; and the whole line of writing, framed for the string
reader.

Every mark of a digit's size in the field is on the line of writing, however far from its
neighbours, or is named as left out (`Field.left_out`): nothing is dropped unseen. A scan of
one digit and a field of several take the same path: one group or many.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from trainer import strings
from worker.reading import printed
from worker.reading.preprocess import (
    SOLID,
    TALLEST,
    NoInkError,
    extents,
    levels,
    off_rim,
    prepare,
    stroke_radius,
    thicken,
    to_mnist,
    writing_height,
)

WRITING = 96  # px: writing taller than this is scaled down first
MAX_MARKS = 40  # more separate marks than this is not a digit field (noise, text, a photo)
MAX_SPLIT = 4  # touching digits considered per run of ink
MAX_JOIN = 3  # marks considered as parts of one digit
MAX_READINGS = 64  # alternative readings of one run of ink, at most
JOIN = 0.15  # marks closer than this share of the digit height may be parts of one digit
SPECK = 0.06  # marks smaller than this share of a typical digit's ink are specks
MAIN = 0.4  # marks at least this share of the digit height are digits (or large parts of one)
STROKED = 0.8  # visible ink no mark holds is a pen's if inked in this share of its rows
BAND = 0.3  # a mark on the line of writing reaches within this many digit heights of its middle
SLOPE = 0.2  # the line of writing rises or falls at most this much per unit of width (11°)
ASPECT = 0.8  # MNIST's median width / height: a typical digit's width from the field's height
WIDE = 1.0  # runs of ink at least this many typical digit widths wide may hold several digits
WINDOW = 0.45  # cuts are sought this share of a digit's width either side of an even split
BROAD = 1.5  # one digit is rarely wider than this many typical widths (MNIST: 95% are)
NARROW = 0.1  # a narrow digit (a 1, a stroke wide) is at least this many typical widths wide
UNEVEN = 2  # cuts at the ink's thinnest points, not near an even split: the best few per count
THINNEST = 8  # thinnest points considered for those cuts

Box = tuple[int, int, int, int]  # x, y, width, height in scan pixels


@dataclass(frozen=True, eq=False)
class Piece:
    """One digit candidate: its 28×28 MNIST-style image and its box (x, y, w, h) in the scan.
    Pieces compare by identity, so a reading's predictions can be looked up by piece."""

    image: np.ndarray
    box: Box


@dataclass(frozen=True)
class Option:
    """One way to read a run of ink: its digits, and how many separate marks it joins into one
    digit (a guess against what the ink itself shows)."""

    pieces: list[Piece]
    joins: int


@dataclass(frozen=True)
class Run:
    """Consecutive marks that may be one digit or several: each reading splits them into spans
    of marks read as one digit; a span of one mark may also be cut into touching digits."""

    marks: list[int]
    whole: Callable[[int, int], Piece]  # marks first..last read as one digit
    cut: Callable[[int], list[list[Piece]]]  # one mark cut into 2+ digits, each way

    def options(self, cut: Collection[int] = ()) -> list[Option]:
        """The readings of the run, the marks in `cut` also cut apart; at most MAX_READINGS."""

        def readings(first: int, last: int) -> list[list[Piece]]:
            whole = [[self.whole(first, last)]]
            return whole + self.cut(first) if first == last and first in cut else whole

        def options() -> Iterator[Option]:
            for partition in _partitions(self.marks):
                joins = sum(last - first for first, last in partition)
                for combo in itertools.product(*(readings(a, b) for a, b in partition)):
                    yield Option([piece for pieces in combo for piece in pieces], joins)

        return list(itertools.islice(options(), MAX_READINGS))

    def spans(self) -> list[Piece]:
        """Each span of marks any reading has, read as one digit."""
        return [
            self.whole(*span) for span in sorted({s for p in _partitions(self.marks) for s in p})
        ]


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
    ink, mask, scale = _small(*prepare(gray))
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
    groups, off, slope = _line_of_writing(stats[1:count])
    boxes = [_box(stats[[i + 1 for i in members]]) for members in groups]
    # a typical digit: the field's median height, and MNIST's median aspect (0.8) for its width
    height = float(np.median([h for *_, h in boxes]))
    typical = (ASPECT * height, height)

    def scanned(box: Box) -> Box:
        """A box of the upright working image in scan pixels."""
        x, y, w, h = box
        corners = np.float32([[x, y], [x + w, y], [x, y + h], [x + w, y + h]])
        return _outer(corners @ back[:, :2].T + back[:, 2], limit)

    @cache
    def crop(first: int, last: int) -> tuple[np.ndarray, int, int]:
        """The ink mask of groups first..last and its origin (x, y)."""
        members = [i + 1 for g in groups[first : last + 1] for i in g]
        x, y, w, h = _box(stats[members])
        return np.isin(labels[y : y + h, x : x + w], members), x, y

    def piece(part: np.ndarray, x: int, y: int) -> Piece:
        h, w = part.shape
        at = back @ np.float32([x, y, 1])  # scan position of the crop's origin
        return _piece(ink[y : y + h, x : x + w], part, back[:, :2], at, limit)

    @cache
    def whole(first: int, last: int) -> Piece:
        return piece(*crop(first, last))

    @cache
    def cut(index: int) -> list[list[Piece]]:
        part, x, y = crop(index, index)
        splits = _splits(part, typical[0])
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
    left_out = [scanned(_box(stats[[i + 1 for i in members]])) for members in off]
    held = [mark.box for mark in marks] + left_out
    unread = _unread(seen, held, height, reduced / scale, limit)
    runs = [Run(marks, whole, cut) for marks in _runs(boxes, typical)]
    return Field(runs, line, span, marks, left_out, unread)


def _unread(
    seen: np.ndarray, held: list[Box], height: float, factor: float, limit: np.ndarray
) -> list[Box]:
    """The boxes, in scan pixels, of the visible ink (`seen`, in working pixels before the
    shear) that the boxes `held` (scan pixels) miss and that is of a digit's size: MAIN to
    TALLEST digit heights, a pen's strokes (mostly blank within its box, but inked down its
    height), off the image's rim. It is writing too light for the marks, or taken for print.
    Ink within JOIN digit heights is one mark, so a light stroke broken into specks counts."""
    inside = np.zeros(seen.shape, bool)
    margin = JOIN * height  # a mark's lightest edge, which its box leaves out
    for x, y, w, h in held:
        x0, y0 = (max(0, round(v / factor - margin)) for v in (x, y))
        x1, y1 = (round(v / factor + margin) for v in (x + w, y + h))
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
    free = seen & ~inside
    reach = 2 * round(JOIN * height / 2) + 1
    joined = cv2.dilate(free.astype(np.uint8), np.ones((reach, reach), np.uint8))
    count, labels = cv2.connectedComponents(joined, None, 8)
    low, high = extents(free, labels, count)
    w, h = high - low + 1
    ys = np.nonzero(free)[0]
    owners = labels[free]
    inked = np.bincount(owners, minlength=count)
    stroked = np.bincount(np.unique(owners * seen.shape[0] + ys) // seen.shape[0], minlength=count)
    unread = (
        (h >= MAIN * height)
        & (h <= TALLEST * height)
        & (w <= TALLEST * height)
        & (inked <= SOLID * w * h)
        & (stroked >= STROKED * h)
        & off_rim(low, high, seen.shape)
    )
    corners = np.stack([low, high + 1], axis=1).astype(np.float32) * factor  # (2, 2, count)
    return [_outer(corners[:, :, i].T, limit) for i in np.flatnonzero(unread[1:]) + 1]


def _runs(boxes: list[tuple[int, int, int, int]], typical: tuple[float, float]) -> list[list[int]]:
    """Consecutive groups close enough to be parts of one digit (a stroke broken apart), in runs
    of at most MAX_JOIN; every other group is a run of its own."""
    runs = [[0]]
    for i in range(1, len(boxes)):
        gap = boxes[i][0] - (boxes[i - 1][0] + boxes[i - 1][2])
        width = boxes[i][0] + boxes[i][2] - boxes[runs[-1][0]][0]
        if gap <= JOIN * typical[1] and width <= BROAD * typical[0] and len(runs[-1]) < MAX_JOIN:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _partitions(run: list[int]) -> list[list[tuple[int, int]]]:
    """Every way to cut a run of groups into consecutive (first, last) spans."""
    if len(run) == 1:
        return [[(run[0], run[0])]]
    ways = []
    for end in range(len(run)):
        head = (run[0], run[end])
        rest = run[end + 1 :]
        ways += [[head, *tail] for tail in _partitions(rest)] if rest else [[head]]
    return ways


def _small(ink: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Scale down so the writing is at most WRITING px tall: plenty for a 20×20 digit, and the
    cost of everything after grows with the pixel count."""
    factor = WRITING / max(writing_height(mask.astype(np.uint8)), 1.0)
    if factor >= 1.0:
        return ink, mask, scale
    size = (max(1, round(mask.shape[1] * factor)), max(1, round(mask.shape[0] * factor)))
    small = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    return cv2.resize(ink, size, interpolation=cv2.INTER_AREA), small, scale * factor


def _box(stats: np.ndarray) -> tuple[int, int, int, int]:
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


def _line_of_writing(stats: np.ndarray) -> tuple[list[list[int]], list[list[int]], float]:
    """The marks making up each digit (or run of touching digits) on the line of writing, left
    to right; the marks of a digit's size off that line (a label, a signature above), each on
    its own; and the line's slope. Indices are into `stats`."""
    if len(stats) == 0:
        raise NoInkError("no ink found (blank or near-blank image)")
    x, y, w, h, area = (stats[:, k].astype(float) for k in range(5))
    big = area >= 0.2 * area.max()
    height = float(np.median(h[big]))
    typical = float(np.median(area[big]))
    kept = area >= max(4.0, SPECK * typical)
    main = np.flatnonzero(kept & (h >= MAIN * height))
    if len(main) > MAX_MARKS:
        raise NoInkError(f"no digit field found ({len(main)} separate marks)")
    if not len(main):
        raise NoInkError("no ink found (only specks)")
    slope, level = _baseline(x[main] + w[main] / 2, y[main] + h[main] / 2, area[main], height)
    middle = level + slope * (x + w / 2)
    on = (y < middle + BAND * height) & (y + h > middle - BAND * height)
    groups = [[int(i)] for i in main[on[main]]]
    groups.sort(key=lambda g: x[g[0]])
    off = [[int(i)] for i in main[~on[main]]]

    def extent(group: list[int]) -> tuple[float, float, float, float]:
        return (
            min(x[group]),
            min(y[group]),
            max(x[group] + w[group]),
            max(y[group] + h[group]),
        )

    # parts of one digit stacked above each other: a broken stroke, a detached bar
    merged = True
    while merged:
        merged = False
        for a in range(len(groups) - 1):
            ax0, _, ax1, _ = extent(groups[a])
            bx0, _, bx1, _ = extent(groups[a + 1])
            if min(ax1, bx1) - max(ax0, bx0) >= 0.5 * min(ax1 - ax0, bx1 - bx0):
                groups[a] += groups.pop(a + 1)
                merged = True
                break

    def gap(group: list[int], i: int) -> float:
        gx0, gy0, gx1, gy1 = extent(group)
        dx = max(gx0 - (x[i] + w[i]), x[i] - gx1, 0.0)
        dy = max(gy0 - (y[i] + h[i]), y[i] - gy1, 0.0)
        return dx + dy

    # smaller marks join the digit they sit over or beside; the others are specks, unless
    # together they make up a mark of a digit's size (a light digit broken into pieces)
    loose: list[list[int]] = []
    for i in np.flatnonzero(kept & (h < MAIN * height)):
        gaps = [gap(group, i) for group in groups]
        nearest = int(np.argmin(gaps))
        if gaps[nearest] <= 0.25 * height:
            groups[nearest].append(int(i))
            continue
        if not on[i]:
            continue
        near = [g for g in loose if gap(g, i) <= 0.25 * height]
        loose = [g for g in loose if g not in near] + [[int(i), *itertools.chain(*near)]]
    pieces = [g for g in loose if extent(g)[3] - extent(g)[1] >= MAIN * height]
    return sorted(groups + pieces, key=lambda g: extent(g)[0]), off, slope


def _baseline(
    cx: np.ndarray, cy: np.ndarray, weight: np.ndarray, height: float
) -> tuple[float, float]:
    """The line of writing through marks' centres: its slope (Theil-Sen: the median slope
    between marks at least half a digit apart, of three marks or more; at most SLOPE) and its
    level at x = 0 (the median by ink, so a mark off the line cannot move it)."""
    slope = 0.0
    if len(cx) >= 3:
        i, j = np.triu_indices(len(cx), 1)
        dx = cx[j] - cx[i]
        apart = np.abs(dx) >= 0.5 * height
        if apart.any():
            slope = float(np.clip(np.median((cy[j] - cy[i])[apart] / dx[apart]), -SLOPE, SLOPE))
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


def _splits(mask: np.ndarray, typical: float) -> list[list[np.ndarray]]:
    """Ways to cut one mark into digits: when it may be more than one digit, k pieces for each k
    its width allows, cut at the emptiest columns near the even split, and at the thinnest
    points anywhere that leave every piece as wide as a narrow digit and no wider than a broad
    one (the UNEVEN cheapest)."""
    xs = np.flatnonzero(mask.any(axis=0))
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    width = x1 - x0
    splits: list[list[np.ndarray]] = []
    narrow = max(2, round(NARROW * typical))
    if width < max(WIDE * typical, 2 * narrow):  # one digit, or too narrow for two
        return splits
    # where two digits touch, a column holds little ink or crosses few strokes
    columns = mask[:, x0:x1]
    ink = np.convolve(np.pad(columns.sum(axis=0), 1), np.ones(3), mode="valid")
    crossings = (np.diff(columns.astype(np.int8), axis=0) == 1).sum(axis=0)
    cost = crossings * 1000 + ink
    # the thinnest points anywhere (a narrow digit at the end of a run is far from even): the
    # local minima of the cost, the cheapest few
    minima = [
        c
        for c in range(narrow, width - narrow + 1)
        if cost[c] < cost[c - 1] and cost[c] <= cost[min(c + 1, width - 1)]
    ]
    lowest = sorted(sorted(minima, key=cost.__getitem__)[:THINNEST])

    @cache
    def edge(column: int, bent: bool) -> np.ndarray:
        """A cut straight down at `column`, or bent along the least-ink path near it."""
        if bent:
            return _path(mask, x0 + column, round(WINDOW * typical))
        return np.full(len(mask), x0 + column)

    @cache
    def between(left: tuple[int, bool] | None, right: tuple[int, bool] | None) -> np.ndarray | None:
        """The piece between two cuts (None: the edge); a piece many splits share is one array."""
        return _cut(
            mask, None if left is None else edge(*left), None if right is None else edge(*right)
        )

    def fits(cuts: tuple[int, ...]) -> bool:
        """Whether every piece is at least a narrow digit wide and at most a broad one."""
        edges = [0, *cuts, width]
        return all(narrow <= b - a <= BROAD * typical for a, b in itertools.pairwise(edges))

    for k in range(2, MAX_SPLIT + 1):
        # near an even split, into as many digits as typical widths fit in the mark
        combos = _even(ink, cost, width, k) if k <= round(width / typical) + 1 else []
        # at the thinnest points, the cheapest few
        uneven = [list(c) for c in itertools.combinations(lowest, k - 1) if fits(c)]
        uneven.sort(key=lambda cuts: sum(cost[c] for c in cuts))
        combos += [cuts for cuts in uneven if cuts not in combos][:UNEVEN]
        for cuts in combos:
            for bent in (False, True):
                edges = [None, *((c, bent) for c in cuts), None]
                pieces = [between(a, b) for a, b in itertools.pairwise(edges)]
                if all(p is not None for p in pieces):
                    splits.append(pieces)
    return splits


def _even(ink: np.ndarray, cost: np.ndarray, width: int, k: int) -> list[list[int]]:
    """Cuts into k pieces near the even split: each cut at the even column itself, or at the
    emptiest column (least ink; fewest strokes crossed, then least ink) within WINDOW of it."""
    options = []
    for j in range(1, k):
        centre, window = j * width / k, WINDOW * width / k
        lo, hi = int(centre - window), int(np.ceil(centre + window)) + 1
        cuts = [round(centre)]
        for column_cost in (ink[lo:hi], cost[lo:hi]):
            best = lo + int(np.argmin(column_cost))
            if all(abs(best - c) >= 3 for c in cuts):
                cuts.append(best)
        options.append(sorted(cuts))
    return _combinations(options)


def _path(mask: np.ndarray, column: int, reach: int) -> np.ndarray:
    """The cut, one column per row, from top to bottom within `reach` of `column` that crosses
    the least ink (steps of at most one column per row): it slips between digits that lean
    into each other where a straight cut would slice one of them."""
    h, w = mask.shape
    lo, hi = max(0, column - reach), min(w, column + reach + 1)
    cost = 1.0 + 20.0 * mask[:, lo:hi] + 0.05 * np.abs(np.arange(lo, hi) - column)
    # each column's total, with an impassable column either side: row y looks at the three
    # columns above it (left, straight, right) through a sliding window
    padded = np.full(hi - lo + 2, np.inf)
    padded[1:-1] = cost[0]
    above = np.lib.stride_tricks.sliding_window_view(padded, 3)
    columns = np.arange(hi - lo)
    steps = np.zeros((h, hi - lo), np.int8)
    for y in range(1, h):
        choice = above.argmin(axis=1)
        steps[y] = choice - 1
        padded[1:-1] = above[columns, choice] + cost[y]
    total = padded[1:-1]
    path = np.empty(h, int)
    path[-1] = int(np.argmin(total))
    for y in range(h - 1, 0, -1):
        path[y - 1] = path[y] + steps[y, path[y]]
    return lo + path


def _combinations(options: list[list[int]]) -> list[list[int]]:
    combos: list[list[int]] = [[]]
    for choices in options:
        combos = [[*c, v] for c in combos for v in choices if not c or v > c[-1]]
    return combos


def _cut(mask: np.ndarray, left: np.ndarray | None, right: np.ndarray | None) -> np.ndarray | None:
    """The mask between two cuts (None: the edge), without slivers of the neighbours; None when
    nothing is left."""
    columns = np.arange(mask.shape[1])[None, :]
    piece = mask.copy()
    if left is not None:
        piece &= columns >= left[:, None]
    if right is not None:
        piece &= columns < right[:, None]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(piece.astype(np.uint8), None, 8)
    if count < 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    return np.isin(labels, 1 + np.flatnonzero(areas >= 0.15 * areas.max()))


def _piece(
    ink: np.ndarray,
    mask: np.ndarray,
    linear: np.ndarray,
    at: np.ndarray,
    limit: np.ndarray,
) -> Piece:
    """The digit under `mask`, framed for the classifier, with its box in scan pixels."""
    ys, xs = np.nonzero(mask)
    # the box in the scan holds every ink pixel (pixel corners), mapped back through the shear
    points = np.float32([[xs, ys], [xs + 1, ys + 1]]).transpose(0, 2, 1).reshape(-1, 2)
    points = points @ linear.T + at
    low = np.clip(np.floor(points.min(axis=0)), 0, limit).astype(int)
    high = np.clip(np.ceil(points.max(axis=0)), 0, limit).astype(int)
    return Piece(to_mnist(ink, mask), (*map(int, low), *map(int, high - low)))
