"""Offer a field's marks to the classifier as digit candidates: runs of marks read as one digit
or several, a mark cut apart where digits may touch, and each piece framed MNIST-style with its
box in the scan.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from worker.reading.preprocess import PREPROCESS, to_mnist


@dataclass(frozen=True)
class PieceConfig:
    """How marks are joined into digits and cut apart; sizes are shares of a typical digit."""

    max_split: int = 4  # touching digits considered per run of ink
    max_join: int = 3  # marks considered as parts of one digit
    max_readings: int = 64  # alternative readings of one run of ink, at most
    # marks nearer than this share of the digit height may be parts of one digit
    join: float = PREPROCESS.gather
    wide: float = 1.0  # runs of ink at least this many typical widths wide may hold several digits
    window: float = 0.45  # cuts are sought this share of a digit's width each side of an even split
    broad: float = 1.5  # one digit is rarely wider than this many typical widths
    narrow: float = 0.1  # a narrow digit (a 1, a stroke wide) is at least this many typical widths
    uneven: int = 2  # cuts at the ink's thinnest points, not near an even split: the best few
    thinnest: int = 8  # thinnest points considered for those cuts


PIECES = PieceConfig()

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
        """The readings of the run, the marks in `cut` also cut apart; at most `max_readings`."""

        def readings(first: int, last: int) -> list[list[Piece]]:
            whole = [[self.whole(first, last)]]
            return whole + self.cut(first) if first == last and first in cut else whole

        def options() -> Iterator[Option]:
            for partition in _partitions(self.marks):
                joins = sum(last - first for first, last in partition)
                for combo in itertools.product(*(readings(a, b) for a, b in partition)):
                    yield Option([piece for pieces in combo for piece in pieces], joins)

        return list(itertools.islice(options(), PIECES.max_readings))

    def spans(self) -> list[Piece]:
        """Each span of marks any reading has, read as one digit."""
        return [
            self.whole(*span) for span in sorted({s for p in _partitions(self.marks) for s in p})
        ]


def runs(boxes: list[tuple[int, int, int, int]], typical: tuple[float, float]) -> list[list[int]]:
    """Consecutive marks (by their boxes, left to right) close enough to be parts of one digit
    (a stroke broken apart), in runs of at most `max_join`; every other mark is a run of its
    own. `typical`: a typical digit's width and height."""
    found = [[0]]
    for i in range(1, len(boxes)):
        gap = boxes[i][0] - (boxes[i - 1][0] + boxes[i - 1][2])
        width = boxes[i][0] + boxes[i][2] - boxes[found[-1][0]][0]
        if (
            gap <= PIECES.join * typical[1]
            and width <= PIECES.broad * typical[0]
            and len(found[-1]) < PIECES.max_join
        ):
            found[-1].append(i)
        else:
            found.append([i])
    return found


def _partitions(run: list[int]) -> list[list[tuple[int, int]]]:
    """Every way to cut a run of marks into consecutive (first, last) spans."""
    if len(run) == 1:
        return [[(run[0], run[0])]]
    ways = []
    for end in range(len(run)):
        head = (run[0], run[end])
        rest = run[end + 1 :]
        ways += [[head, *tail] for tail in _partitions(rest)] if rest else [[head]]
    return ways


def splits(mask: np.ndarray, typical: float) -> list[list[np.ndarray]]:
    """Ways to cut one mark into digits: when it may be more than one digit, k pieces for each k
    its width (`typical`: a typical digit's) allows, cut at the emptiest columns near the even
    split, and at the thinnest points anywhere that leave every piece as wide as a narrow digit
    and no wider than a broad one (the `uneven` cheapest)."""
    xs = np.flatnonzero(mask.any(axis=0))
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    width = x1 - x0
    found: list[list[np.ndarray]] = []
    narrow = max(2, round(PIECES.narrow * typical))
    if width < max(PIECES.wide * typical, 2 * narrow):  # one digit, or too narrow for two
        return found
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
    lowest = sorted(sorted(minima, key=cost.__getitem__)[: PIECES.thinnest])

    @cache
    def edge(column: int, bent: bool) -> np.ndarray:
        """A cut straight down at `column`, or bent along the least-ink path near it."""
        if bent:
            return _path(mask, x0 + column, round(PIECES.window * typical))
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
        return all(narrow <= b - a <= PIECES.broad * typical for a, b in itertools.pairwise(edges))

    for k in range(2, PIECES.max_split + 1):
        # near an even split, into as many digits as typical widths fit in the mark
        combos = _even(ink, cost, width, k) if k <= round(width / typical) + 1 else []
        # at the thinnest points, the cheapest few
        uneven = [list(c) for c in itertools.combinations(lowest, k - 1) if fits(c)]
        uneven.sort(key=lambda cuts: sum(cost[c] for c in cuts))
        combos += [cuts for cuts in uneven if cuts not in combos][: PIECES.uneven]
        for cuts in combos:
            for bent in (False, True):
                edges = [None, *((c, bent) for c in cuts), None]
                pieces = [between(a, b) for a, b in itertools.pairwise(edges)]
                if all(p is not None for p in pieces):
                    found.append(pieces)
    return found


def _even(ink: np.ndarray, cost: np.ndarray, width: int, k: int) -> list[list[int]]:
    """Cuts into k pieces near the even split: each cut at the even column itself, or at the
    emptiest column (least ink; fewest strokes crossed, then least ink) within `window` of it."""
    options = []
    for j in range(1, k):
        centre, window = j * width / k, PIECES.window * width / k
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
    """Every increasing choice of one cut from each of `options`, in order."""
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


def frame(
    ink: np.ndarray,
    mask: np.ndarray,
    linear: np.ndarray,
    at: np.ndarray,
    limit: np.ndarray,
) -> Piece:
    """The digit under `mask` in `ink` (a crop of the working image), framed for the classifier,
    with its box in scan pixels: `linear` and `at` carry the crop's pixels to the scan's (the
    shear undone, the scale restored); the box stays within (0, 0)-`limit`."""
    ys, xs = np.nonzero(mask)
    # the box in the scan holds every ink pixel (pixel corners), mapped back through the shear
    points = np.float32([[xs, ys], [xs + 1, ys + 1]]).transpose(0, 2, 1).reshape(-1, 2)
    points = points @ linear.T + at
    low = np.clip(np.floor(points.min(axis=0)), 0, limit).astype(int)
    high = np.clip(np.ceil(points.max(axis=0)), 0, limit).astype(int)
    return Piece(to_mnist(ink, mask), (*map(int, low), *map(int, high - low)))
