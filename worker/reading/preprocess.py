"""Clean a scan into bright ink on black, and frame one digit's ink the way MNIST was made.

`prepare` bounds the working size, finds paper vs ink polarity, flattens uneven illumination and
locates the ink (Otsu on the flattened image). `to_mnist` normalises one digit's stroke width,
deskews it, fits it into a 20×20 box keeping its aspect ratio and centres it by centre of mass
in 28×28. Finding the digits between the two steps is `worker.reading.segment`'s job.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from trainer import mnist
from trainer.errors import NoInkError


@dataclass(frozen=True)
class PreprocessConfig:
    """How a scan is cleaned and its ink found, light writing too, and how a digit is framed."""

    work_pixels: int = 512 * 512  # pixels processed at most; a digit needs far fewer than a scan
    min_side: int = 96  # ... but a long thin field keeps at least this height
    # stroke width (2 × area / perimeter of the ink mask) to aim for in the 20×20 box: calibrated
    # so normalised scans come out with MNIST's own stroke widths
    target_stroke: float = 2.5
    min_contrast: float = 0.12  # flattened ink weaker than this (of full scale) is a blank page
    # the background rising more than this (of full scale) within the blur of its estimate is a
    # shaded cell's edge, not the light's gradual fall: the shade is taken out up to its edge
    shade_edge: float = 0.03
    noise: float = 6.0  # flattened ink this many robust deviations above the paper's is a mark
    faintest: float = 0.025  # ...and never less than this (of full scale)
    grain: float = 3.0  # ink blurred 3×3 this many robust deviations above the paper's is clear
    faint_window: int = 3  # px: faint marks are sought in ink averaged this wide (after a blur)
    paper_window: int = 15  # px: a light stroke is sought above the paper's median this wide...
    traced: float = 3.0  # ...and runs on while this many robust deviations of the rest above it
    ruled: float = 1.5  # px: ink spread across its direction this little is a ruled line's...
    long: float = 5.0  # ...if this many times longer (a box's side, a divider)
    faint: float = 0.5  # a faint mark's ink is what reaches this share of its own strong ink (...
    strong_rank: float = 0.9  # ...its pixels' 90th percentile: a thin pen's crossings are darker)
    gather: float = 0.15  # ink this near (a share of a digit's height) is one mark, or one digit
    shortest: float = 0.4  # a faint mark at least this share of the writing's height may be a digit
    tallest: float = 1.5  # ...and one at most this many times of it
    lightest: float = 0.4  # ...its darkest ink at least this share of the strong ink's (a smudge)
    broader: float = 2.0  # a faint mark's strokes are at most this many times as broad as strong
    solid: float = 0.6  # a faint mark covering more of its box than this is shading, not strokes...
    bar: float = 0.25  # ...unless it is a field's only writing this narrow for its length (a 1)
    flat: float = 3.0  # a mark this many times wider than tall is no digit (a dash, an underline)
    sides: float = 0.9  # a mark inked along this share of each side of its box is a printed box
    # a faint mark spans at most this many heights of the plain writing: larger is shading the
    # flattening left (beside a box line, at a crop's edge), not a light digit
    writing_size: float = 3.0
    # share of a field crop's height its writing takes at least (the marks' median height may be
    # a printed label's letters, a dashed box's dashes, a faint digit's pieces)
    least_writing: float = 0.25


PREPROCESS = PreprocessConfig()


def prepare(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """From a 2-D float32 gray scan in [0, 1]: the flattened bright-ink image, its Otsu ink mask
    and the scale from scan to working pixels."""
    work, scale = _bounded(gray)
    ink = _flatten(_bright_ink(work))
    return ink, locate(ink), scale


def locate(ink: np.ndarray) -> np.ndarray:
    """The ink mask of a flattened bright-ink image: Otsu, relative to its strongest ink, where
    clear of the paper's grain (of a light digit alone on grainy paper, Otsu splits the grain),
    and the marks too faint for that threshold (a digit written lighter than its neighbours),
    each by its own peak."""
    smooth = cv2.blur(ink, (3, 3))  # the blur keeps lone noise pixels from counting
    level = strong_level(ink, smooth)
    broad, low = _above_paper(smooth)  # the ink clear of the paper's noise, as `visible` finds
    strong = (ink > level) & above_grain(smooth, broad > low)
    return strong | _faint(broad, low, strong)


def extended(marks: np.ndarray, ink: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """`marks` with the light ink (`faint` of the strong level) they run on into: the lighter
    end of a stroke, a thin stroke the strong threshold breaks, a light digit around the specks
    of it that pass (a hysteresis threshold), where it stands clear of the paper's grain
    (`clear`: `visible(ink)`, which the caller needs too). Not light ink that would join two
    marks of a digit's height (touching digits stay apart), nor light ink spanning more than
    `writing_size` heights of the writing (a box line, shading) or reaching the image's rim
    (shading the flattening leaves at the edge)."""
    try:
        light = ink > PREPROCESS.faint * strong_level(ink)
    except NoInkError:  # all the ink was print
        return marks
    light &= clear
    count, labels = cv2.connectedComponents(light.astype(np.uint8), None, 8)
    parts, owners, stats, _ = cv2.connectedComponentsWithStats(marks.astype(np.uint8), None, 8)
    writing = writing_height(marks.astype(np.uint8))
    tall = stats[:, cv2.CC_STAT_HEIGHT] >= PREPROCESS.shortest * writing
    both = marks & light
    pairs = np.unique(labels[both].astype(np.int64) * parts + owners[both])
    digits = np.bincount(pairs // parts, weights=tall[pairs % parts], minlength=count)
    first, last = extents(light, labels, count)
    joined = np.isin(np.arange(count), pairs // parts) & (digits <= 1)
    joined &= off_rim(first, last, ink.shape)
    joined &= (last - first + 1 <= PREPROCESS.writing_size * writing).all(axis=0)
    joined[0] = False
    return marks | joined[labels]


def strong_level(ink: np.ndarray, smooth: np.ndarray | None = None) -> float:
    """The ink level of plain writing: Otsu's threshold relative to the strongest ink, at least
    a quarter of it."""
    peak = float((cv2.blur(ink, (3, 3)) if smooth is None else smooth).max())
    if peak < PREPROCESS.min_contrast:
        raise NoInkError("no ink found (blank or near-blank image)")
    scaled = np.round(ink / peak * 255).clip(0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return (max(otsu, 64) + 0.5) / 255 * peak


def _marks(broad: np.ndarray, low: float) -> tuple[int, np.ndarray, np.ndarray]:
    """The marks clearly above the paper's noise (`broad` above `low`, as `_above_paper`
    gives them): their count, labels (0: paper) and stats."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((broad > low).astype(np.uint8))
    return count, labels, stats


def _above_paper(smooth: np.ndarray, blanked: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The ink averaged over a `faint_window` (a stroke stands out of the paper's grain more,
    averaged over its width) and the level `noise` robust deviations above the paper's, at least
    `faintest`; the paper is not sought where print was `blanked` nor where the window reaches
    into it (its zeros are no paper's grain)."""
    window = PREPROCESS.faint_window
    broad = cv2.blur(smooth, (window, window))
    if blanked is not None:
        blanked = cv2.dilate(blanked.astype(np.uint8), np.ones((window + 2,) * 2, np.uint8)) > 0
    paper, spread = _paper(broad, blanked)
    return broad, max(PREPROCESS.faintest, paper + PREPROCESS.noise * spread)


def _paper(image: np.ndarray, blanked: np.ndarray | None = None) -> tuple[float, float]:
    """The paper's level in an image of ink (the median of every other pixel each way, but
    those `blanked`: ink covers far less than half of it) and the robust deviation of its
    grain around it."""
    sample = image[::2, ::2]
    if blanked is not None and not blanked[::2, ::2].all():
        sample = sample[~blanked[::2, ::2]]
    level = float(np.median(sample))
    return level, 1.4826 * float(np.median(np.abs(sample - level)))


def above_grain(smooth: np.ndarray, inked: np.ndarray) -> np.ndarray:
    """Where ink blurred 3×3 stands `grain` robust deviations of the paper's grain above the
    paper's level, as a mask; the paper is sought off the ink known (`inked`), which in a crop
    of bold print and large digits may cover half of it."""
    level, spread = _paper(smooth, inked)
    return smooth >= level + PREPROCESS.grain * spread


def visible(ink: np.ndarray, blanked: np.ndarray | None = None) -> np.ndarray:
    """All the ink clearly above the paper's noise, however light, as a mask; `blanked`: where
    print was taken out of the ink, no paper."""
    broad, low = _above_paper(cv2.blur(ink, (3, 3)), blanked)
    return broad > low


def tracer(ink: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Light pen strokes that `visible` misses, as a mask, given the marks of the writing they
    go with: the paper's level varies across a scan more than its grain does, so a thin light
    stroke is sought above the paper around it (a median `paper_window` wide taken away), where
    it stands `noise` robust deviations of that rest above it, and `traced` deviations as it
    runs on. Not what spans more than `writing_size` heights of the writing (the marks') or is
    a thin straight line: what the print finding left of a box or a divider. For the reading to
    account for, not to read: such ink is as likely print as writing. The strokes are found
    once; the returned function sizes them against any marks."""
    smooth = cv2.blur(ink, (3, 3))
    scaled = np.round(smooth.clip(0, 1) * 255).astype(np.uint8)
    rest = smooth - cv2.medianBlur(scaled, PREPROCESS.paper_window).astype(np.float32) / 255
    _, spread = _paper(rest)
    weak = rest > PREPROCESS.traced * spread
    count, labels = cv2.connectedComponents(weak.astype(np.uint8), None, 8)
    strokes = np.zeros(count, bool)
    strokes[labels[rest > max(PREPROCESS.faintest, PREPROCESS.noise * spread)]] = True
    strokes &= ~_straight(labels, count)
    strokes[0] = False
    first, last = extents(weak, labels, count)
    spans = last - first + 1

    def traced(marks: np.ndarray) -> np.ndarray:
        largest = PREPROCESS.writing_size * writing_height(marks.astype(np.uint8))
        return (strokes & (spans <= largest).all(axis=0))[labels]

    return traced


def recovered(ink: np.ndarray, marks: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Light digits the `marks` hold none of, or only specks: where the visible ink (`seen`)
    no mark of a digit's height takes gathers to a digit's size, the ink around it is split
    at its own Otsu level (its own paper, a cell's shading, and its own pen), and what is
    strokes of a digit's height there is a mark."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(marks.astype(np.uint8), None, 8)
    # with no mark at all (the field's only writing lighter than its print), the visible
    # ink's own marks say how tall the writing is
    alone = len(stats) < 2
    writing = writing_height(seen.astype(np.uint8)) if alone else _writing(stats)
    if writing <= 0:
        return marks
    tall = stats[:, cv2.CC_STAT_HEIGHT] >= PREPROCESS.shortest * writing
    tall[0] = False
    held = cv2.dilate(tall[labels].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    free = seen & ~held
    if not free.any():
        return marks
    groups, first, last, reach = gathered(free, writing)
    size = last - first + 1
    digit = (
        (size[1] >= PREPROCESS.shortest * writing)
        & (size[1] <= PREPROCESS.tallest * writing)
        & (size[0] <= PREPROCESS.tallest * writing)
        & off_rim(first, last, seen.shape)
    )
    smooth = cv2.blur(ink, (3, 3))
    out = marks.copy()
    for group in np.flatnonzero(digit[1:]) + 1:
        (x0, y0), (x1, y1) = first[:, group] - reach, last[:, group] + reach + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        area = smooth[y0:y1, x0:x1]
        own = ~held[y0:y1, x0:x1]
        scaled = np.round(np.clip(area[own], 0, 1) * 255).astype(np.uint8)
        level, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        if level / 255 - float(np.median(area[own])) < PREPROCESS.faintest:
            continue
        strokes = (area > level / 255) & own
        _, found = cv2.connectedComponents(strokes.astype(np.uint8), None, 8)
        ours = np.unique(found[strokes & (groups[y0:y1, x0:x1] == group) & free[y0:y1, x0:x1]])
        ours = ours[ours > 0]
        if not len(ours):
            continue
        mark = np.isin(found, ours)
        ys, xs = np.nonzero(mark)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        if (
            h >= PREPROCESS.shortest * writing
            and h <= PREPROCESS.tallest * writing
            and (mark.sum() <= PREPROCESS.solid * w * h or (alone and w <= PREPROCESS.bar * h))
        ):
            out[y0:y1, x0:x1] |= mark
    return out


def gathered(ink: np.ndarray, height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The ink of a mask in marks, ink within `gather` of a digit's `height` one mark (a light
    stroke broken into specks counts whole): each pixel's mark (0 on the paper), the marks'
    first and last columns and rows (`extents`) in the ink itself, and the reach in pixels."""
    reach = 2 * round(PREPROCESS.gather * height / 2) + 1
    joined = cv2.dilate(ink.astype(np.uint8), np.ones((reach, reach), np.uint8))
    count, labels = cv2.connectedComponents(joined, None, 8)
    return labels, *extents(ink, labels, count), reach


def _straight(labels: np.ndarray, count: int) -> np.ndarray:
    """Which labels' pixels lie along a thin straight line (a ruled line's piece): their
    spread across the line's direction at most `ruled` px, along it `long` times that."""
    across, along = spreads(labels, count)
    return (across <= PREPROCESS.ruled) & (along >= PREPROCESS.long * across)


def spreads(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each label's pixels' spread (standard deviation, px) across and along their main axis;
    label 0 is the paper."""
    ys, xs = np.nonzero(labels)
    owners = labels[ys, xs]
    sizes = np.maximum(np.bincount(owners, minlength=count), 1)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(owners, weights=values, minlength=count) / sizes

    x, y = xs.astype(np.float64), ys.astype(np.float64)
    mx, my = mean(x), mean(y)
    vxx, vyy, vxy = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
    half, root = (vxx + vyy) / 2, np.sqrt(((vxx - vyy) / 2) ** 2 + vxy**2)
    return np.sqrt(np.maximum(half - root, 0)), np.sqrt(half + root)


def _faint(broad: np.ndarray, low: float, strong: np.ndarray) -> np.ndarray:
    """The marks that the strong threshold leaves mostly out (a light or thin-penned digit;
    `broad`, `low`: as `_above_paper` gives them), each thresholded at `faint` of its own peak,
    as a mask; not those reaching the image's rim (shading the flattening leaves at the edge),
    nor a box lighter than the writing it frames."""
    count, labels, stats = _marks(broad, low)
    if count < 2:
        return np.zeros_like(strong)
    marked = labels > 0
    values, owners = broad[marked], labels[marked]
    order = np.lexsort((values, owners))
    sizes = np.bincount(owners, minlength=count)
    starts = np.cumsum(sizes) - sizes
    peaks = np.zeros(count, np.float32)
    peaks[1:] = values[order][starts[1:] + (PREPROCESS.strong_rank * (sizes[1:] - 1)).astype(int)]
    own = marked & (broad >= PREPROCESS.faint * peaks[labels])
    held = np.bincount(labels[own & strong], minlength=count)
    inked = np.bincount(labels[own], minlength=count)
    faint = (held < 0.5 * inked) & (peaks >= 1.5 * low)
    faint &= off_rim(*extents(own, labels, count), broad.shape)  # shading left at the edge
    faint &= ~_framing(labels, stats, strong)  # a box printed lighter than the writing
    return own & _strokes(faint, inked, stats, strong)[labels]


def _strokes(
    chosen: np.ndarray, inked: np.ndarray, stats: np.ndarray, strong: np.ndarray
) -> np.ndarray:
    """Which `chosen` marks (with `inked` pixels each) are strokes, not shading: a pen's line
    leaves most of its box blank, and spans at most `writing_size` heights of the writing."""
    chosen = chosen & (
        inked <= PREPROCESS.solid * stats[:, cv2.CC_STAT_WIDTH] * stats[:, cv2.CC_STAT_HEIGHT]
    )
    if strong.any():
        largest = PREPROCESS.writing_size * max(field_writing(strong.astype(np.uint8)), 8.0)
        chosen &= stats[:, cv2.CC_STAT_WIDTH : cv2.CC_STAT_HEIGHT + 1].max(axis=1) <= largest
    chosen[0] = False
    return chosen


def beside(ink: np.ndarray) -> np.ndarray:
    """Light writing next to strong writing, which the blur joins to it or the strong threshold
    breaks into specks (a digit written lighter than its neighbours): marks whose ink away
    from the strong ink is of a digit's height and a pen's width, that ink thresholded at `faint`
    of its peak and filled in between, as a mask. Only for an image without print: a light
    box line beside the writing would pass too."""
    smooth = cv2.blur(ink, (3, 3))
    try:
        level = strong_level(ink, smooth)
    except NoInkError:  # all the ink was print
        return np.zeros(ink.shape, bool)
    strong = ink > level
    broad, low = _above_paper(smooth)
    count, labels, stats = _marks(broad, low)
    near = cv2.dilate(strong.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    away = (labels > 0) & ~near
    if count < 2 or not away.any() or not strong.any():
        return np.zeros_like(strong)
    writing = field_writing(strong.astype(np.uint8))
    first, last = extents(away, labels, count)
    peak = np.zeros(count, np.float32)
    np.maximum.at(peak, labels[away], broad[away])
    height = last[1] - first[1] + 1
    chosen = (height >= PREPROCESS.shortest * writing) & (height <= PREPROCESS.tallest * writing)
    chosen &= (peak >= 1.5 * low) & (peak >= PREPROCESS.lightest * level)
    chosen &= off_rim(first, last, ink.shape)  # shading the flattening leaves at the edge
    chosen &= ~_framing(labels, stats, strong)  # a box printed lighter than the writing
    chosen[0] = False
    grown = cv2.dilate((away & chosen[labels]).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    light = chosen[labels] & grown & (broad >= PREPROCESS.faint * peak[labels])
    area = np.bincount(labels[light], minlength=count)
    widths = 2 * area / np.maximum(np.bincount(labels[_edge(light)], minlength=count), 1)
    chosen &= widths <= PREPROCESS.broader * stroke_width(strong)
    return light & _strokes(chosen, area, stats, strong)[labels]


def _framing(labels: np.ndarray, stats: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Which marks (`labels`, `stats`) frame a mark of the `strong` ink apart from them, at
    least `shortest` of their height: a digit is never written around another, a box is."""
    count, inner, boxes, _ = cv2.connectedComponentsWithStats(strong.astype(np.uint8), None, 8)
    owner = np.zeros(count, np.int64)  # the mark each strong mark's ink lies in
    np.maximum.at(owner, inner[strong], labels[strong])
    x, y, w, h = (boxes[1:count, k, None] for k in range(4))
    x0, y0, width, height = (stats[:, k] for k in range(4))
    inside = (x > x0) & (y > y0) & (x + w < x0 + width) & (y + h < y0 + height)
    apart = owner[1:count, None] != np.arange(len(stats))
    return (inside & apart & (h >= PREPROCESS.shortest * height)).any(axis=0)


def extents(mask: np.ndarray, labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first and the last column and row of each of `count` labels' pixels in `mask`, as
    two (2, count) arrays of [columns, rows]; a label without any has first > last."""
    ys, xs = np.nonzero(mask)
    owners = labels[ys, xs]
    first = np.full((2, count), max(mask.shape))
    last = np.full((2, count), -1)
    for axis, values in enumerate((xs, ys)):
        np.minimum.at(first[axis], owners, values)
        np.maximum.at(last[axis], owners, values)
    return first, last


def off_rim(first: np.ndarray, last: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Which extents (`extents`) keep off an image's outermost rows and columns."""
    rows, columns = shape[:2]
    return (first > 0).all(axis=0) & (last[0] < columns - 1) & (last[1] < rows - 1)


def stroke_width(mask: np.ndarray) -> float:
    """The mean stroke width of a mask's ink: twice its area over its edge's length."""
    return 2.0 * float(mask.sum()) / max(float(_edge(mask).sum()), 1.0)


def _edge(mask: np.ndarray) -> np.ndarray:
    """The pixels of a mask with a neighbour outside it."""
    return mask & ~(cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)


def field_writing(binary: np.ndarray, height: float | None = None) -> float:
    """The height of a field crop's writing, to judge its marks by: `writing_height` (`height`,
    where already found), but at least `least_writing` of the crop's height, which a crop is
    never many times of."""
    height = writing_height(binary) if height is None else height
    return max(height, PREPROCESS.least_writing * binary.shape[0])


def writing_height(binary: np.ndarray) -> float:
    """Median height of the larger marks of a binary image: about the height of the writing.
    Marks `flat` times wider than tall (a dash of a printed line, an underline) and printed
    boxes (`boxes`: a cell around one digit) are not writing and are left out, unless every
    mark is."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(binary, None, 8)
    return _writing(stats, boxes(labels, stats)[:, 2] > 0)


def _writing(stats: np.ndarray, skip: np.ndarray | None = None) -> float:
    """`writing_height` from the connected components' stats (the background's first), less
    the marks `skip` names."""
    if len(stats) < 2:
        return 0.0
    upright = stats[1:, cv2.CC_STAT_WIDTH] < PREPROCESS.flat * stats[1:, cv2.CC_STAT_HEIGHT]
    if skip is not None:
        upright &= ~skip[1:]
    stats = stats[1:][upright] if upright.any() else stats[1:]
    areas = stats[:, cv2.CC_STAT_AREA]
    return float(np.median(stats[:, cv2.CC_STAT_HEIGHT][areas >= 0.2 * areas.max()]))


def boxes(labels: np.ndarray, stats: np.ndarray, overrun: bool = False) -> np.ndarray:
    """Where each mark's printed box is (x, y, width, height; a width of 0 where it has none):
    its bounding box; with `overrun`, also where a digit written over its line runs out of it,
    the largest rectangle its long straight runs make (`_framed`: the search for print needs
    those; the writing's height, measured often, does without). A box is inked in all four
    corners, along `sides` of each side and hollow within. A written 0 curves away from its
    box's corners; a box is straight to them, whatever digit is written in it or on it."""
    frames = np.zeros((len(stats), 4), np.int32)
    large = stats[:, cv2.CC_STAT_WIDTH : cv2.CC_STAT_AREA].min(axis=1) >= 12
    large[0] = False
    for i in np.flatnonzero(large):
        x, y, w, h = stats[i, :4]
        band = max(2, round(0.1 * min(w, h)))
        corners = [
            labels[r : r + band, c : c + band] for r in (y, y + h - band) for c in (x, x + w - band)
        ]
        inked = sum((corner == i).any() for corner in corners)
        if inked < (1 if overrun else 4):  # most marks, cheaply
            continue
        mark = labels[y : y + h, x : x + w] == i
        frame = (0, 0, w, h) if _box(mark) else _framed(mark) if overrun else None
        if frame is not None:
            frames[i] = x + frame[0], y + frame[1], frame[2], frame[3]
    return frames


def _box(mark: np.ndarray, sides: np.ndarray | None = None) -> bool:
    """Whether a mark (cropped to the box it may be) is a printed box: inked in all four
    corners, along `sides` of each side (its ink, or the `sides` given: its straight runs)
    and hollow within."""
    edges = mark if sides is None else sides
    h, w = mark.shape
    band = max(2, round(0.1 * min(w, h)))
    corners = [edges[r : r + band, c : c + band] for r in (0, h - band) for c in (0, w - band)]
    if not all(corner.any() for corner in corners):  # most marks, cheaply
        return False
    inked = (
        edges[:band].any(axis=0).mean(),
        edges[-band:].any(axis=0).mean(),
        edges[:, :band].any(axis=1).mean(),
        edges[:, -band:].any(axis=1).mean(),
    )
    inside = mark[2 * band : -2 * band, 2 * band : -2 * band]
    return bool(min(inked) >= PREPROCESS.sides and inside.mean() <= 0.5)


def _framed(mark: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest printed box (x, y, width, height) a mark's straight runs make, those a
    quarter of its width or height long: a box with a digit written out of it over its side,
    the box at least half the mark's width and height (the digit's own straight strokes are
    tried as sides too, and fail); None without one."""
    h, w = mark.shape
    binary = mark.astype(np.uint8)
    across = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((1, max(8, w // 4)), np.uint8))
    down = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((max(8, h // 4), 1), np.uint8))
    straight = (across | down) > 0
    rows = list(zip(*true_runs(across.any(axis=1)), strict=True))
    columns = list(zip(*true_runs(down.any(axis=0)), strict=True))
    found = [
        (left, top, right - left, bottom - top)
        for (top, _), (_, bottom) in itertools.combinations(rows, 2)
        for (left, _), (_, right) in itertools.combinations(columns, 2)
        if min(right - left, bottom - top) >= max(12, min(w, h) // 2)
        and 2 * (right - left) >= w
        and 2 * (bottom - top) >= h
        and _box(mark[top:bottom, left:right], straight[top:bottom, left:right])
    ]
    return max(found, key=lambda box: box[2] * box[3], default=None)


def true_runs(inked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of True in a 1-D array starts, and where it stops (one past its end)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], inked.astype(np.int8), [0]])))
    return edges[::2], edges[1::2]


def to_mnist(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Frame the digit whose ink pixels are `mask` as a 28×28 float32 MNIST digit."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = _match_stroke(levels(ink[y0:y1, x0:x1], mask[y0:y1, x0:x1]), mask[y0:y1, x0:x1])
    if not crop.any():  # its ink all taken for print: a blank frame, read as no digit
        return np.zeros((28, 28), np.float32)
    return mnist.frame(_deskew(crop))


def _bounded(gray: np.ndarray) -> tuple[np.ndarray, float]:
    h, w = gray.shape
    scale = min(
        1.0, max(math.sqrt(PREPROCESS.work_pixels / (h * w)), PREPROCESS.min_side / min(h, w))
    )
    if scale == 1.0:
        return gray, scale
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), scale


def _bright_ink(gray: np.ndarray) -> np.ndarray:
    """Invert dark-on-light scans so ink is bright: paper is the median, ink the farther tail."""
    smooth = cv2.blur(gray, (3, 3))
    paper = float(np.median(smooth[::2, ::2]))  # every fourth pixel: plenty for the paper's level
    return 1.0 - gray if paper - smooth.min() > smooth.max() - paper else gray


def _flatten(ink: np.ndarray) -> np.ndarray:
    """Subtract the background (a morphological opening wider than any stroke), so shadows,
    gradients and paper tint drop out while strokes keep their grey levels. The paper is
    continued past the edges (a point reflection), so a gradient does not leave its bright end
    behind at the border; a shaded cell is taken out up to its edge, which the estimate's blur
    would leave as a light rim inside it."""
    h, w = ink.shape
    factor = min(1.0, 64 / min(h, w))
    small = cv2.resize(
        ink, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA
    )
    k = max(3, (min(small.shape) // 3) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    pad = min(k, *small.shape) - 1
    padded = np.pad(small, pad, mode="reflect", reflect_type="odd") if pad > 0 else small
    opened = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel)
    background = opened[pad : pad + small.shape[0], pad : pad + small.shape[1]]
    background = cv2.resize(cv2.blur(background, (3, 3)), (w, h), interpolation=cv2.INTER_LINEAR)
    reach = 2 * math.ceil(2 / factor) + 1  # the blur and the upscaling: 2 small pixels each way
    near = cv2.dilate(background, np.ones((reach, reach), np.uint8))
    background = np.where(near - background > PREPROCESS.shade_edge, near, background)
    return np.clip(ink - background, 0.0, 1.0)


def levels(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Stretch grey levels so stroke cores saturate like MNIST and faint background goes to 0."""
    values = crop[mask]
    high = _upper_quartile(values)
    low = 0.3 * float(values.min())
    soft = np.clip((crop - low) / max(high - low, 1e-3), 0.0, 1.0)
    near = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return np.where(near, soft, 0.0).astype(np.float32)


def _upper_quartile(values: np.ndarray) -> float:
    """np.percentile(values, 75), by a partial sort: it is taken for every piece framed, and
    the general function's overhead is most of its cost on a piece's few hundred pixels."""
    at = 0.75 * (len(values) - 1)
    below = int(at)
    above = min(below + 1, len(values) - 1)
    part = np.partition(values, [below, above])
    return float(part[below]) + (float(part[above]) - float(part[below])) * (at - below)


def _match_stroke(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Thicken thin pen strokes so that, once scaled into the 20×20 box, they are MNIST-wide."""
    radius = stroke_radius(mask, 20.0 / max(crop.shape))
    return thicken(crop, radius) if radius else crop


def pen_width(mask: np.ndarray) -> float:
    """The mean width of the strokes of `mask`, in pixels: twice its area over its outline."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2.0 * float(mask.sum()) / max(perimeter, 1.0)


def stroke_radius(mask: np.ndarray, scale: float) -> int:
    """The dilation radius that makes the pen strokes of `mask` as wide as MNIST's once scaled
    by `scale`; 0 when they are wide enough."""
    width = pen_width(mask)
    radius = round((PREPROCESS.target_stroke / scale - width) / 2)
    return 0 if width * scale >= 0.75 * PREPROCESS.target_stroke or radius < 1 else radius


def thicken(crop: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation by a disc of `radius`, the crop grown by `radius` on every side."""
    size = 2 * radius + 1
    padded = cv2.copyMakeBorder(crop, radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0)
    return cv2.dilate(padded, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))


def _deskew(crop: np.ndarray) -> np.ndarray:
    """Shear the slant out (from second-order moments), so the digit reaches the classifier
    upright whatever the writer's slant, then crop to the ink again."""
    h, w = crop.shape
    rows, total = crop.sum(axis=1, dtype=np.float64), float(crop.sum(dtype=np.float64))
    cy = float(rows @ np.arange(h)) / total
    cx = float(crop.sum(axis=0, dtype=np.float64) @ np.arange(w)) / total
    y, x = np.arange(h) - cy, np.arange(w) - cx
    slant = float(np.clip((y @ crop @ x) / max(float(rows @ y**2), 1e-6), -1.0, 1.0))
    offset = max(slant * (h - 1 - cy), -slant * cy)
    width = int(np.ceil(w + abs(slant) * (h - 1)))
    shear = np.float32([[1, -slant, slant * cy + offset], [0, 1, 0]])
    sheared = cv2.warpAffine(crop, shear, (width, h), flags=cv2.INTER_LINEAR)
    cols = np.nonzero(sheared.max(axis=0) > 0.05)[0]
    return sheared[:, cols.min() : cols.max() + 1] if cols.size else crop
