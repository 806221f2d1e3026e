"""Take a field's printed structure out of its ink, whatever the form's style, so nothing
printed is read as a digit: rules (solid, dashed or dotted: an underline, a box's top and
bottom), the box's sides and comb dividers that run from rule to rule, and comb ticks that
rise from a rule or hang from it at the comb's regular spacing. Strokes of writing that cross
the print are mended, and those written along it kept. What is left of the ink above the
paper's noise is handed on too, so the reading can account for every light mark.

A handwritten 1 is as straight as a tick; what tells them apart is the comb's lattice: ticks
stand at regular steps along the rule (with the box's sides and dividers), a digit in a cell
stands between them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from trainer.errors import NoInkError
from worker.reading.preprocess import (
    above_grain,
    beside,
    boxes,
    extended,
    field_writing,
    locate,
    recovered,
    stroke_width,
    strong_level,
    tracer,
    true_runs,
    visible,
    writing_height,
)


@dataclass(frozen=True)
class PrintedConfig:
    """What counts as print in a field: rules, box sides and dividers, comb ticks."""

    rule: float = 0.4  # a rule spans at least this share of the field's width...
    rule_writing: float = 2.0  # ...and this many heights of writing: no digit stroke is that long
    rule_alone: float = 1.25  # ...or this many, touching no other ink: no digit is a lone bar
    parallel: float = 0.9  # ...or one of two sharing this much length: a box's top and bottom
    bold: float = 6.0  # a line apart from the writing may be bold: as thick as 1/this of its length
    box_edge: float = 0.2  # a box as a mark of its own: its print lies this share of it from edges
    dash_gap: float = 0.12  # gaps in a dashed or dotted line up to this share of the writing height
    dashes: float = 0.25  # a dashed side's breaks are at most this share of the box's inner height
    dash: float = 0.5  # ...and its dashes too (a digit's stroke is longer)
    dash_period: float = 0.25  # a dashed line's dashes start at one period, give or take this
    inked: float = 0.4  # a printed line's dashes or dots cover at least this share of its length
    alone: float = 0.2  # beside a printed line, at most this share of the paper is inked
    denser: float = 2.0  # a rule is inked at least this many times as densely as the paper beside
    tick: float = 0.1  # a tick is at least this share of the writing's height long
    lone_tick: float = 0.55  # one alone between a box's sides spans at most this share of it
    tick_reach: int = 3  # px: a tick ends this near its rule's ink (which is taken out first)
    tick_length: float = 0.25  # a comb's ticks are as long as each other, give or take this
    heavy: float = 1.5  # a rule with this many times its usual ink in a column has writing on it
    sliver: float = 0.75  # a stroke left thinner than this share of the field's beside a line: cut
    on_lattice: float = 0.08  # share of the comb's step a tick may stand off its lattice place
    unbroken: float = 0.9  # a thin rule found thickened is inked in this share of it...
    thickest: int = 3  # ...at most this many px thick in most of them...
    straight: float = 1.5  # ...its pixels this many px about a straight line at most
    plain: float = 0.75  # an upright line's rows mostly hold one run of ink, of one width...
    lean: float = 0.05  # ...and it leans no more than a rotated scan's (3 degrees)
    side: float = 0.6  # a side where the rules end is inked along this share of the box at least
    narrowest: float = 0.5  # comb cells are at least this many writing heights wide
    full: float = 0.75  # share of the places a comb's sides and dividers leave that hold a tick
    most_ticks: int = 48  # the tallest upright strokes on a rule tried as ticks: 2 per cell of 24
    grain: float = 0.01  # a threshold passing more of the clear paper than this splits its grain
    light: float = 0.5  # print is often lighter than writing: it is sought at this share of it...
    lighter: float = 0.25  # ...and where none is found so, at this (a box barely coloured)...
    lightest: float = 0.5  # ...if at most this share of what is found there reaches `light`
    lattice_block: int = 1 << 20  # lattice×point cells scored at once (8 MB a float array)


PRINTED = PrintedConfig()

# a binary image's marks (labels) and where their printed boxes are (`preprocess.boxes`)
Cells = tuple[np.ndarray, np.ndarray]


def remove(ink: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ink and its mask without the print, the mask with the light writing beside the
    strong that only shows once the print is gone (`preprocess.beside`), the light ink its
    marks run on into (`preprocess.extended`) and light digits of their own
    (`preprocess.recovered`); and all the ink above the paper's noise but the print's
    (`preprocess.visible`, `preprocess.tracer`), for the reading to account for."""
    smooth = cv2.blur(ink, (3, 3))
    writing = strong_level(ink, smooth)
    # on a noisy scan of light print, its level lies in the paper's grain, whose specks then
    # bridge every line's breaks and run on beside it: the print is sought clear of the grain
    clear = above_grain(smooth, smooth >= writing)
    step = max(8, round(field_writing(mask.astype(np.uint8))))  # the writing's height
    found = _sought(ink, smooth, mask, step, PRINTED.light * writing, clear)
    if found is None:  # a box barely coloured, or light grey, may be lighter still
        found = _lighter(ink, smooth, mask, step, writing, clear)
    if found is None:
        seen = visible(ink)
        keep = extended(mask | beside(ink), ink, seen)
        seen |= tracer(ink)(keep)
        return ink, recovered(ink, keep, seen), seen
    across, down, thick = found
    # print darker than the writing set the threshold: find the writing's own without it
    lines = across | down
    near = _morph(lines, cv2.MORPH_DILATE, 3)
    blanked = _morph(lines, cv2.MORPH_DILATE, 7)  # the print and its blur
    unprinted = _without(ink, blanked)
    seen, traced = visible(unprinted, blanked), tracer(unprinted)
    # the writing at its own threshold, if it is not lighter than a blank page's
    with contextlib.suppress(NoInkError):
        mask = mask | _unprinted_writing(_without(ink, near), seen | traced(seen))
    mask = mask | beside(unprinted)
    rest = mask & ~near
    # a stroke across a rule is mended up and down, one across a divider or tick sideways
    removed = np.zeros_like(near)
    stroke = max(2, round(PRINTED.sliver * stroke_width(rest)))
    for printed, other, axis in ((across, down, 0), (down, across, 1)):
        wide = _across(thick + 4, axis)
        grown = _morph(printed, cv2.MORPH_DILATE, 3)
        # the print's blur, broader in the mask than the line found, runs along it either
        # side: no stroke crosses there
        halo = _morph(rest, cv2.MORPH_OPEN, _across(5 * stroke, 1 - axis))
        halo &= _morph(printed, cv2.MORPH_DILATE, wide)
        closed = _morph(rest & ~halo, cv2.MORPH_CLOSE, wide)
        # a stroke written along the line: the ink there, the other print aside, is broader
        # than the line, and beside it the line leaves a sliver of the stroke (a stroke that
        # only touches the line lies whole beside it); or the print found there is broader
        # than a line itself, writing run into it
        aside = _morph(other, cv2.MORPH_DILATE, 5)
        broader = _morph((mask | printed) & ~aside, cv2.MORPH_OPEN, wide)
        sliver = rest & ~_morph(rest, cv2.MORPH_OPEN, _across(stroke, axis)) & ~aside
        run_into = _morph(printed, cv2.MORPH_OPEN, wide)
        along = _morph(sliver, cv2.MORPH_DILATE, wide) | _morph(run_into, cv2.MORPH_DILATE, 3)
        written = broader & along
        if axis == 0:
            written |= _heavier(ink, printed, aside, rest, thick)
        removed |= grown & ~closed & ~written
    keep = extended(mask & ~removed, unprinted, seen)
    seen |= keep | traced(keep)
    keep = recovered(unprinted, keep, seen)
    return np.where(keep, ink, 0.0).astype(np.float32), keep, seen


def _unprinted_writing(bare: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """The writing in the ink with the print taken out (`bare`), at its own threshold. With the
    print gone, light writing's threshold may fall into the paper's grain, which then clumps
    into marks of a digit's size where the paper is darker (toward a scan's edges): where more
    than `grain` of the paper well away from the ink clear of the grain (`clear`) passes, only
    what lies within two pixels of that ink is writing."""
    found = locate(bare)
    away = ~_morph(clear, cv2.MORPH_DILATE, 15)
    if away.any() and found[away].mean() > PRINTED.grain:
        found &= _morph(clear, cv2.MORPH_DILATE, 5)
    return found


def _heavier(
    ink: np.ndarray, rules: np.ndarray, aside: np.ndarray, writing: np.ndarray, thick: int
) -> np.ndarray:
    """Where a rule carries well more ink than along most of its length, by `writing`: print
    is even, so there a stroke lies on it (a 7's bar on a box's top), not just beside it. The
    ink on each rule (its dashes together: the rows it spans) and a pixel either side, the
    upright print `aside`, is summed down its columns and smoothed along it, a pen's width
    either way."""
    kept = np.zeros_like(rules)
    reach = thick + 2  # rows either side of a rule where writing lies by it
    for first, last in zip(*true_runs(rules.any(axis=1)), strict=True):
        top, bottom = max(first - reach, 0), min(last + reach, len(rules))
        own = np.zeros((bottom - top, rules.shape[1]), np.uint8)
        own[first - top : last - top] = rules[first:last]
        near = cv2.dilate(own, np.ones((3, 1), np.uint8)) > 0
        mass = (ink[top:bottom] * (near & ~aside[top:bottom])).sum(axis=0, dtype=np.float32)
        mass = cv2.blur(mass[None, :], (2 * thick + 1, 1))[0]
        inked = ((own > 0) & ~aside[top:bottom]).any(axis=0)  # the upright print's is not
        if not inked.any():  # the rule lies all along upright print
            continue
        heavy = inked & (mass >= PRINTED.heavy * np.median(mass[inked]))
        by = cv2.dilate(own, np.ones((2 * reach + 1, 1), np.uint8)) > 0
        for a, b in zip(*true_runs(heavy), strict=True):
            if (by[:, a:b] & writing[top:bottom, a:b]).any():
                kept[top:bottom, a:b] |= near[:, a:b]
    return kept


def _across(length: int, axis: int) -> np.ndarray:
    """A kernel `length` px long across a line along `axis` (0: a rule; 1: an upright line)."""
    return np.ones((length, 1) if axis == 0 else (1, length), np.uint8)


def _morph(image: np.ndarray, operation: int, kernel: np.ndarray | int) -> np.ndarray:
    """A binary image's morphological `operation` by `kernel` (an int: a square that wide)."""
    square = np.ones((kernel, kernel), np.uint8) if isinstance(kernel, int) else kernel
    return cv2.morphologyEx(image.astype(np.uint8), operation, square) > 0


def _without(ink: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """The ink with the pixels of a mask (print and its blur) blank."""
    return np.where(blank, 0.0, ink).astype(np.float32)


def _found(
    faint: np.ndarray,
    clean: np.ndarray,
    mask: np.ndarray,
    cells: Cells,
    step: int,
    thin: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The print in a binary image of the ink (`faint`; `clean`: without the scanner's specks;
    `cells`: its marks and where their printed boxes are) of the field whose writing is `mask`,
    `step` tall: its rules, its upright lines (sides, dividers and ticks), and the thickness of
    the rules' pen (however turned); None without rules. A thin line turned a little is a
    staircase of runs shorter than a digit: where no rule is found, the ink is looked at again
    a pixel thicker all round, the steps then overlapping (`thin`: the ink as it was)."""
    gap = _gap(step)
    # a box around one digit may be narrower than the digit is tall (a 1): its rules are runs
    narrowest = _narrowest_box(cells, faint.shape[1])
    labels, stats, lines, runs = _lines(faint, gap, min(step, narrowest), bold=True)
    writing = writing_height((mask & (runs == 0)).astype(np.uint8))
    # longer than a digit's stroke, or a box's top and bottom (where the writing touches the
    # box, the marks are the box's height, and the writing seems as tall); a bold line only
    # apart from the writing (an underline): a box's rules are thin
    slim = [i for i in lines if _thin(stats[i])]
    pairs = _paired(stats, slim)
    rules, alone = [], {}
    for i in lines:
        long = stats[i, cv2.CC_STAT_WIDTH] >= PRINTED.rule_writing * writing
        if i in slim and (long or i in pairs):
            rules.append(i)
        elif stats[i, cv2.CC_STAT_WIDTH] >= PRINTED.rule_alone * writing:
            own = _apart(cells[0], stats[i])
            if own is not None:
                rules.append(i)
                alone[i] = own
    if thin is not None:  # thickened, specks and the tops of close digits make lines too
        rules = [i for i in rules if _thin_rule(labels == i, thin)]
    rules = _boxed(stats, rules)
    across = np.isin(labels, rules)
    for i in set(rules) - set(alone):
        across |= _run_on(faint, labels == i, gap)
    # a line apart from the writing is all its own ink: the blurred edges of a bold one too,
    # whose runs are too short to be found
    for i in set(rules) & set(alone):
        across |= alone[i]
    # a dashed or dotted line with breaks as long as its dashes, bridged wider (twice as wide
    # again where nothing is found: a dashed box's sides are small marks, and the writing
    # seems shorter than it is): print if made of dashes no longer than a digit is tall as a
    # box's top and bottom, or than half that with no writing below it (dashes are found
    # unthickened: thickened, the paper's specks join into dashes too)
    dashed, wider = [], stats[:0]
    for bridge in (PRINTED.dashes, 2 * PRINTED.dashes) if thin is None else ():
        labels, wider, lines, _ = _lines(faint, max(gap, round(bridge * step)), step)
        paired = _paired(wider, lines)
        dashed = [
            i
            for i in lines
            if not (across & (labels == i)).any()
            and _dashed(faint, wider[i], step if i in paired else step / 2)
            and (i in paired or not _below(mask, wider[i]).any())
        ]
        if dashed or rules:
            break
    if not rules and not dashed:
        if thin is not None:
            return None
        thickened = _thicker(faint)
        return _found(thickened, _thicker(clean), mask, _cells(thickened), step, faint)
    across = (across | np.isin(labels, dashed)) & (faint > 0)
    found = np.concatenate([stats[rules], wider[dashed]])
    thick = int(found[:, cv2.CC_STAT_HEIGHT].max())  # more than the pen when rotated
    bands = [(int(y), int(y + h)) for y, h in found[:, [1, 3]]]
    down = np.zeros_like(across)
    inner = [min(b for _, b in bands), max(t for t, _ in bands)]
    box = inner[1] - inner[0] > 8  # a box: its sides and dividers run from one rule to the other
    if box:
        down |= _sides(clean, across, inner, gap, thick) & (faint > 0)
    down |= _ticks(faint & ~across, across, _columns(down), thick, writing)
    if box:
        down |= _thin_sides(faint, across, down, inner, thick)
    return across, down, _pen(across)


def _sought(
    ink: np.ndarray,
    smooth: np.ndarray,
    mask: np.ndarray,
    step: int,
    level: float,
    clear: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The print (as `_found` gives it) in the ink at `level` and `clear` of the paper's grain
    (`smooth`: the ink blurred 3×3) of the field whose writing is `mask`, `step` tall; None
    without any."""
    strong = ((ink >= level) & clear).astype(np.uint8)
    clean = ((smooth >= level) & clear).astype(np.uint8)
    cells = _cells(strong)
    return _found(strong, clean, mask, cells, step) or _boxed_print(strong, cells)


def _lighter(
    ink: np.ndarray,
    smooth: np.ndarray,
    mask: np.ndarray,
    step: int,
    writing: float,
    clear: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The print at `lighter` of the `writing`'s level, as `_sought` gives it, if the ink there
    holds a rule's line at all (`_ruled`: a quick look first) and what is found is light ink,
    at most `lightest` of it reaching `light` of that level: so low, the writing's own blur
    may join its strokes into lines (the tops of digits written close together)."""
    level = PRINTED.lighter * writing
    if not _ruled((ink >= level) & clear, step):
        return None
    found = _sought(ink, smooth, mask, step, level, clear)
    if found is None:
        return None
    dark = ink[found[0] | found[1]] >= PRINTED.light * writing
    return found if dark.mean() <= PRINTED.lightest else None


def _ruled(faint: np.ndarray, step: int) -> bool:
    """Whether a binary image of the ink (of a field whose writing is `step` tall) holds a line
    as long as a rule, looked at a pixel thicker all round (as `_found` does where it finds
    none): the quick look before the print is sought at a lighter level."""
    return bool(_lines(_thicker(faint.astype(np.uint8)), _gap(step), step, bold=True)[2])


def _gap(step: int) -> int:
    """The breaks bridged in a dashed or dotted line of a field whose writing is `step` tall."""
    return max(2, round(PRINTED.dash_gap * step))


def _thicker(image: np.ndarray) -> np.ndarray:
    """A binary uint8 image a pixel thicker all round: a thin line turned a little, whose
    steps are runs shorter than a digit, made to overlap."""
    return cv2.dilate(image, np.ones((3, 3), np.uint8))


def _run_on(faint: np.ndarray, rule: np.ndarray, gap: int) -> np.ndarray:
    """A rule's ink on along its straight line past the runs it was found by, across breaks up
    to `gap` columns: a thin rule turned a little steps a row every so often, and its steps
    at the ends may be shorter than a digit, and lost with them (then read as 1s or as part
    of the digits there)."""
    ys, xs = np.nonzero(rule)
    first, last = int(xs.min()), int(xs.max())
    if last - first < 2:
        return rule
    slope, offset = np.polyfit(xs, ys, 1)
    counts = np.bincount(xs - first)  # its rows in each column
    reach = float(np.median(counts[counts > 0])) / 2 + 1
    line = slope * np.arange(faint.shape[1]) + offset
    # only the rows within reach of the line, and the three beyond, need looking at
    top = max(0, int(np.floor(line.min() - reach - 3)))
    bottom = min(faint.shape[0], int(np.ceil(line.max() + reach + 3)) + 1)
    off = np.abs(np.arange(top, bottom)[:, None] - line[None, :])
    ink = faint[top:bottom] > 0
    near = (off <= reach) & ink
    # ink just beside the line is a stroke on it or along it (a 7's bar): the line ends there
    inked = near.any(axis=0) & ~((off > reach) & (off <= reach + 3) & ink).any(axis=0)
    kept = np.zeros(faint.shape[1], bool)  # the columns it runs on into
    for step, x in ((-1, first - 1), (1, last + 1)):
        blank = 0
        while 0 <= x < faint.shape[1] and blank <= gap:
            blank = 0 if inked[x] else blank + 1
            kept[x] = blank == 0
            x += step
    grown = rule.copy()
    grown[top:bottom] |= near & kept[None, :]
    return grown


def _pen(across: np.ndarray) -> int:
    """The rules' pen: their ink over their runs down the columns (a turned rule's rows are
    more)."""
    starts = across[0].sum() + (across[1:] & ~across[:-1]).sum()
    return int(np.ceil(across.sum() / max(starts, 1)))


def _boxed_print(faint: np.ndarray, cells: Cells) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The print of the boxes that are marks of their own (`cells`), as `_found` gives it,
    where the search for rules found none (a box's top too short or too thick to be a rule):
    in each, its rows and columns near its edges inked along most of the box. None without
    such a box."""
    labels, frames = cells
    if not frames[:, 2].any():
        return None
    across, down = np.zeros(faint.shape, bool), np.zeros(faint.shape, bool)
    for i in np.flatnonzero(frames[:, 2]):
        x, y, w, h = frames[i]
        mark = labels[y : y + h, x : x + w] == i
        edge = max(2, round(PRINTED.box_edge * min(w, h)))
        rows, columns = mark.mean(axis=1) >= 0.5, mark.mean(axis=0) >= 0.5
        rows[edge:-edge], columns[edge:-edge] = False, False
        across[y : y + h, x : x + w] |= mark & rows[:, None]
        down[y : y + h, x : x + w] |= mark & columns[None, :]
    inked = faint > 0
    across = _morph(across, cv2.MORPH_DILATE, 3) & inked
    return across, _morph(down, cv2.MORPH_DILATE, 3) & inked, _pen(across)


def _cells(faint: np.ndarray) -> Cells:
    """The marks of a binary image and where their printed boxes are (`preprocess.boxes`):
    labelled once for the rules' search and for the boxes that are marks of their own."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(faint, None, 8)
    return labels, boxes(labels, stats, overrun=True)


def _narrowest_box(cells: Cells, width: int) -> int:
    """The width of the narrowest printed box among the marks, less a turned scan's slack;
    the image's `width` where there is none."""
    frames = cells[1]
    widths = frames[frames[:, 2] > 0, 2]
    return int(0.9 * widths.min()) if len(widths) else width


def _apart(labels: np.ndarray, stat: np.ndarray) -> np.ndarray | None:
    """The ink of a horizontal line (its box `stat`) if it is marks of its own (`labels`: the
    ink's marks), none reaching beyond the line's rows by more than its thickness (its own
    blurred edge): an underline the writing does not touch; else None."""
    x, y, w, h = stat[:4]
    top, bottom = max(0, y - h - 2), min(labels.shape[0], y + 2 * h + 2)
    ids = np.unique(labels[y : y + h, x : x + w])
    own = np.isin(labels, ids[ids > 0])
    return None if own[:top].any() or own[bottom:].any() else own


def _thin_rule(line: np.ndarray, thin: np.ndarray) -> bool:
    """Whether a horizontal line found in thickened ink is a thin solid rule in the ink `thin`:
    inked in nearly every column (specks are not), a few pixels thick (a pen's stroke is
    more), and straight (within `straight` px of its best fit, as the tops of a row of digits
    written close are not)."""
    ys, xs = np.nonzero(line & (thin > 0))
    if len(xs) < 2:
        return False
    columns, counts = np.unique(xs, return_counts=True)
    inked = len(columns) / (columns[-1] - columns[0] + 1)
    slope, offset = np.polyfit(xs, ys, 1)
    straight = float(np.std(ys - (slope * xs + offset))) <= PRINTED.straight
    return inked >= PRINTED.unbroken and np.median(counts) <= PRINTED.thickest and straight


def _lines(
    faint: np.ndarray, gap: int, step: int, bold: bool = False
) -> tuple[np.ndarray, np.ndarray, list[int], np.ndarray]:
    """The horizontal lines in a binary image of the ink, its breaks up to `gap` bridged:
    their labels and stats; the labels of those long, thin, inked enough for a printed line
    and denser than the paper beside them (a band of the paper's grain is not); and the
    horizontal runs at least `step` long they are made of."""
    bridged = cv2.morphologyEx(faint, cv2.MORPH_CLOSE, np.ones((1, gap), np.uint8))
    runs = cv2.morphologyEx(bridged, cv2.MORPH_OPEN, np.ones((1, step), np.uint8))
    # join the steps of a slightly rotated line, then judge whole lines
    joined = cv2.morphologyEx(runs, cv2.MORPH_CLOSE, np.ones((3, step), np.uint8)) & bridged
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, None, 8)
    inked = np.bincount(labels[faint > 0], minlength=count)
    lines = [
        i
        for i in range(1, count)
        if stats[i, cv2.CC_STAT_WIDTH] >= PRINTED.rule * faint.shape[1]
        and (
            _thin(stats[i])
            or (bold and stats[i, cv2.CC_STAT_HEIGHT] * PRINTED.bold <= stats[i, cv2.CC_STAT_WIDTH])
        )
        and inked[i] >= PRINTED.inked * stats[i, cv2.CC_STAT_AREA]
        and inked[i] >= PRINTED.denser * _beside(faint, stats[i]) * stats[i, cv2.CC_STAT_AREA]
    ]
    return labels, stats, lines, runs


def _thin(stat: np.ndarray) -> bool:
    """Whether a horizontal line (its box `stat`) is as thin as a box's rule: at most 6 px
    more than a twentieth of its length."""
    return bool(stat[cv2.CC_STAT_HEIGHT] <= 0.05 * stat[cv2.CC_STAT_WIDTH] + 6)


def _beside(faint: np.ndarray, stat: np.ndarray) -> float:
    """The share of the paper inked along a horizontal line (its box `stat`), above and below
    it beyond its blur."""
    x, y, w, h = stat[:4]
    above = faint[max(0, y - h - 2) : max(0, y - 2), x : x + w]
    below = faint[y + h + 2 : y + 2 * h + 2, x : x + w]
    both = np.concatenate([above.ravel(), below.ravel()])
    return float(both.mean()) if both.size else 0.0


def _dashed(faint: np.ndarray, stat: np.ndarray, longest: float) -> bool:
    """Whether the ink of a horizontal line (its box `stat`) is dashes or dots, four or more,
    most of them no longer than `longest` and most at one period: the strokes of a row of
    digits, run together, are as long as a digit is wide, or uneven."""
    x, y, w, h = stat[:4]
    first, last = true_runs(faint[y : y + h, x : x + w].any(axis=0))
    if len(first) < 4 or np.median(last - first) > longest:
        return False
    low, middle, high = np.percentile(np.diff(first), [25, 50, 75])
    return bool(high - low <= PRINTED.dash_period * middle)


def _boxed(stats: np.ndarray, rules: list[int]) -> list[int]:
    """The rules without the lines within a box (between its top and bottom) shorter than
    the box: a box's print inside it stands upright; a line along its rows is the writing's
    (the bars of two 7s either side of a divider, run together)."""
    paired = _paired(stats, rules)
    if len(paired) < 2:
        return rules
    top = min(stats[i, 1] + stats[i, 3] for i in paired)
    bottom = max(stats[i, 1] for i in paired)
    return [
        i for i in rules if i in paired or stats[i, 1] < top or stats[i, 1] + stats[i, 3] > bottom
    ]


def _below(mask: np.ndarray, stat: np.ndarray) -> np.ndarray:
    """The writing below a horizontal line (its box `stat`), beyond the line's blur."""
    x, y, w, h = stat[:4]
    return mask[y + h + 2 :, x : x + w]


def _paired(stats: np.ndarray, lines: list[int]) -> set[int]:
    """The horizontal lines (indices into `stats`) that have another of `lines` over the same
    columns, one above the other, as a box's top and bottom do."""
    return {i for i in lines if any(_parallel(stats[i], stats[j]) for j in lines if j != i)}


def _parallel(one: np.ndarray, other: np.ndarray) -> bool:
    """Whether two horizontal lines (their boxes) span the same columns, one above the other,
    as a box's top and bottom do."""
    x0, x1 = max(one[0], other[0]), min(one[0] + one[2], other[0] + other[2])
    apart = abs(int(one[1]) - int(other[1])) > one[3] + other[3]
    return apart and x1 - x0 >= PRINTED.parallel * max(one[2], other[2])


def _sides(
    clean: np.ndarray, across: np.ndarray, inner: list[int], gap: int, thick: int
) -> np.ndarray:
    """The box's sides and comb dividers: upright lines from one rule to the other (`across`)
    where they stand, no wider than a printed line. A solid line meets both rules and may touch
    the writing; a dashed one (breaks up to `dashes` of the box's inner height bridged) must be
    dashes, mostly inked along its length, with blank paper beside it, as a digit's strokes,
    bridged so, have more of the digit beside them: outside the box for a side (the writing
    may touch it inside), either way for a divider. Between the outermost two, either kind
    stands on the comb's lattice with them: a 4's stem or an 8 written tall, bridged so, looks
    like a side, but in the middle of a cell."""
    span = inner[1] - inner[0]
    # (labels, index, centre, blank paper left and right) of each line found, by either pass
    candidates = []
    for bridge, dashed in ((gap, False), (max(gap, round(PRINTED.dashes * span)), True)):
        upright = cv2.morphologyEx(clean, cv2.MORPH_CLOSE, np.ones((bridge, 1), np.uint8))
        lines = cv2.morphologyEx(upright, cv2.MORPH_OPEN, np.ones((span - 2, 1), np.uint8))
        count, labels, stats, centres = cv2.connectedComponentsWithStats(lines, None, 8)
        inked = np.bincount(labels[clean > 0], minlength=count)
        for i in range(1, count):
            if stats[i, cv2.CC_STAT_WIDTH] > 2 * thick + 3 or not _spans(
                clean, stats[i], across, inner, bridge, thick
            ):
                continue
            if not dashed:
                if _joined(clean, stats[i], inner, thick):
                    candidates.append((labels, i, centres[i, 0], (True, True)))
            elif (
                _dashes(clean, stats[i], inner)
                and inked[i] >= PRINTED.inked * stats[i, cv2.CC_STAT_AREA]
                and any(blank := _alone(clean, stats[i]))
            ):
                candidates.append((labels, i, centres[i, 0], blank))
    # the outermost are the box's sides: the lattice of the dividers between them starts and
    # ends there
    sides = np.zeros(clean.shape, bool)
    if not candidates:
        return sides
    xs = [x for _, _, x, _ in candidates]
    ends = min(xs) + 2 * thick + 3, max(xs) - 2 * thick - 3
    outer = [
        c for c in candidates if (c[2] <= ends[0] and c[3][0]) or (c[2] >= ends[1] and c[3][1])
    ]
    between = [c for c in candidates if ends[0] < c[2] < ends[1] and all(c[3])]
    # a comb's cells are a quarter of its height wide at the least
    on = _lattice([c[2] for c in between], [c[2] for c in outer], span / 4)
    for labels, i, _, _ in outer + [between[k] for k in on]:
        sides |= _followed(clean, labels == i, thick)
    return sides


def _thin_sides(
    faint: np.ndarray, across: np.ndarray, down: np.ndarray, inner: list[int], thick: int
) -> np.ndarray:
    """A box's sides and comb dividers too thin or light for `_sides` (gone from the blurred
    ink, and a staircase when turned): straight lines, upright within `lean`, that the ink
    holds between the rules. At each end of the rules where no side, divider or tick was
    found, one inked along `side` of the rows between them (a faint side breaks; a digit
    standing just there is shorter than the box); between the ends, those inked along
    `unbroken` of them, no broader than the print, that stand on the comb's lattice with the
    sides and dividers found (a 1 written tall stands in a cell, between them)."""
    sides = np.zeros(faint.shape, bool)
    columns = np.flatnonzero(across.any(axis=0))
    top, bottom = inner
    span = bottom - top  # more than 8 px: the caller's test for a box
    if not len(columns):
        return sides
    found = _columns(down)
    drift = max(1, round(PRINTED.lean * span))
    scores, leans = _straight(faint[top:bottom], drift)
    inked = scores // (span + 1)  # the rows each holds
    reach = 2 * thick + 3

    def near(x: float, others: Sequence[float]) -> bool:
        return any(abs(x - other) <= reach for other in others)

    ends, lines = [int(columns[0]), int(columns[-1])], []
    for end in ends:
        if near(end, found):
            continue
        lo, hi = max(0, end - thick - drift), min(faint.shape[1], end + thick + drift + 1)
        x = _middle(scores, lo, hi)
        if inked[x] >= PRINTED.side * span:
            lines.append(x)
    full = inked >= PRINTED.unbroken * span
    full[: ends[0] + reach + 1], full[ends[1] - reach :] = False, False
    dividers = [
        _middle(scores, a, b)
        for a, b in zip(*true_runs(full), strict=True)
        if b - a <= thick + 2 * drift + 3
    ]
    dividers = [x for x in dividers if not near(x, found)]
    on = _lattice(dividers, [*found, *ends], span / 4)
    # their ink, on through the rules, a pixel either way, and as the ink there leans
    ys = np.arange(max(0, top - thick), min(faint.shape[0], bottom + thick))
    for x0 in lines + [dividers[k] for k in on]:
        band = np.zeros_like(sides)
        centre = x0 + np.round(leans[x0] * (ys - top) / span).astype(int)
        for x in (centre - 1, centre, centre + 1):
            x = np.clip(x, 0, faint.shape[1] - 1)
            band[ys, x] = faint[ys, x] > 0
        if band.any():
            sides |= _followed(faint, band, thick) & (faint > 0)
    return sides


def _middle(scores: np.ndarray, lo: int, hi: int) -> int:
    """The middle of the columns from `lo` to `hi` scoring the most (`_straight`)."""
    most = np.flatnonzero(scores[lo:hi] == scores[lo:hi].max())
    return lo + int(most[len(most) // 2])


def _straight(band: np.ndarray, drift: int) -> tuple[np.ndarray, np.ndarray]:
    """For each column of a band of binary ink, how well a straight line from its top row
    there, leaning up to `drift` px either way over the band, lies on the ink: the rows it
    holds, a pixel either way counting (a turned line's steps), times one more than the
    band's height, plus those it holds exactly (of two lines holding as many rows, the one on
    the line's middle); and the lean of the best."""
    span, width = band.shape
    near = cv2.dilate(band, np.ones((1, 3), np.uint8)) > 0
    rows = np.arange(span)
    scores = np.zeros((2 * drift + 1, width), np.int32)
    for k, lean in enumerate(range(-drift, drift + 1)):
        # the line from column x meets row r at x + shift: the rows sharing a shift at once
        shifts = np.round(lean * rows / span).astype(int)
        for shift in np.unique(shifts):
            if abs(shift) >= width:
                continue
            chosen = shifts == shift
            part = near[chosen].sum(axis=0) * (span + 1) + (band[chosen] > 0).sum(axis=0)
            if shift >= 0:
                scores[k, : width - shift] += part[shift:]
            else:
                scores[k, -shift:] += part[: width + shift]
    best = np.argmax(scores, axis=0)
    return scores.max(axis=0), best - drift


def _followed(clean: np.ndarray, band: np.ndarray, thick: int) -> np.ndarray:
    """The ink of the upright line of which `band` holds the columns kept from end to end: a
    rotated line leans out of them, and its ink beside them would be read as a 1. Each row's
    run of ink through the band gives a centre; a straight line through the centres of the rows
    no writing touches (runs no wider than most), and the runs' usual width about it, are the
    line."""
    ys, xs = np.nonzero(band)
    top, bottom = int(ys.min()), int(ys.max()) + 1
    left = max(0, int(xs.min()) - thick)
    right = min(clean.shape[1], int(xs.max()) + 1 + thick)
    window = clean[top:bottom, left:right] > 0
    inked = window & band[top:bottom, left:right]
    rows = np.flatnonzero(inked.any(axis=1))
    if len(rows) < 2:
        return band
    # each row's run of ink through the band: between the blanks nearest its first pixel there
    at = np.argmax(inked[rows], axis=1)[:, None]
    columns = np.arange(right - left)[None, :]
    blank = ~window[rows]
    first = np.where(blank & (columns < at), columns, -1).max(axis=1) + 1
    last = np.where(blank & (columns > at), columns, right - left).min(axis=1)
    centres, widths = (first + last - 1) / 2, last - first
    width = float(np.median(widths))
    plain = widths <= width + 1
    # writing the lattice took for print (it is mended across later): leave it as it was
    # (`clean` is blurred 3×3: its lines are 2 px broader than the pen `thick`)
    if width > thick + 2 or plain.mean() < PRINTED.plain:
        return band
    slope, offset = np.polyfit(rows[plain], centres[plain], 1)
    if abs(slope) > PRINTED.lean:
        return band
    along = slope * np.arange(bottom - top)[:, None] + offset
    line = np.zeros_like(band)
    line[top:bottom, left:right] = np.abs(columns - along) <= width / 2
    return line | band


def _alone(clean: np.ndarray, stat: np.ndarray) -> tuple[bool, bool]:
    """Whether the paper left of an upright line (its box `stat`) is mostly blank, and the
    paper right of it."""
    x, y, w, h = stat[:4]
    left = clean[y : y + h, max(0, x - w - 4) : max(0, x - 2)]
    right = clean[y : y + h, x + w + 2 : x + 2 * w + 4]
    return (
        left.size == 0 or left.mean() < PRINTED.alone,
        right.size == 0 or right.mean() < PRINTED.alone,
    )


def _spans(
    clean: np.ndarray,
    stat: np.ndarray,
    across: np.ndarray,
    inner: list[int],
    reach: int,
    thick: int,
) -> bool:
    """Whether upright line `stat` (its box) is inked from the top rule's ink to the bottom's
    where it stands, with no break longer than `reach` (a line leaning by up to `thick` px).
    `inner`, the rows between the rules in every column, is all a side must span where no rule
    is; a box turned a little narrows it by the rules' slope, and a 1 written tall in a cell
    spans that much."""
    x, w = stat[0], stat[2]
    columns = slice(max(0, x - thick), x + w + thick)
    top, bottom = _rules_at(across, columns, (inner[0] + inner[1]) // 2)
    top, bottom = inner[0] if top is None else top, inner[1] if bottom is None else bottom
    first, last = true_runs(~clean[top:bottom, columns].any(axis=1))
    return not len(first) or int((last - first).max()) <= reach


def _rules_at(across: np.ndarray, columns: slice, middle: int) -> tuple[int | None, int | None]:
    """The first row below the rule above row `middle`, and the bottom rule's first row, in
    `columns` (None where there is no rule)."""
    rows = np.flatnonzero(across[:, columns].any(axis=1))
    above, below = rows[rows < middle], rows[rows >= middle]
    return (int(above.max()) + 1 if len(above) else None, int(below.min()) if len(below) else None)


def _joined(clean: np.ndarray, stat: np.ndarray, inner: list[int], thick: int) -> bool:
    """Whether an upright line (its box `stat`) meets both rules, inked a line's width and more
    inside each, as a solid side is at the box's corners: a 1 bridged to them across a few
    pixels of paper is not."""
    x, w = stat[0], stat[2]
    top, bottom = inner[0] + thick, inner[1] - thick
    return bool(
        clean[top : top + 2, x : x + w].any() and clean[bottom - 2 : bottom, x : x + w].any()
    )


def _dashes(clean: np.ndarray, stat: np.ndarray, inner: list[int]) -> bool:
    """Whether the ink of an upright line (its box `stat`) between the rules is made of
    dashes, none longer than `dash` of the box's inner height: a 1 written close to both rules
    bridges to them as a dashed side would, but is one long stroke."""
    x, w = stat[0], stat[2]
    first, last = true_runs(clean[inner[0] : inner[1], x : x + w].any(axis=1))
    longest = int((last - first).max()) if len(first) else 0
    return longest <= PRINTED.dash * (inner[1] - inner[0])


def _columns(down: np.ndarray) -> list[float]:
    """The centres of the upright lines found (a box's sides, comb dividers): one per run of
    columns they take, however broken each line is."""
    first, last = true_runs(down.any(axis=0))
    return [(a + b - 1) / 2 for a, b in zip(first.tolist(), last.tolist(), strict=True)]


def _ticks(
    ink: np.ndarray,
    across: np.ndarray,
    anchors: list[float],
    thick: int,
    writing: float,
) -> np.ndarray:
    """The comb ticks: straight upright strokes, no wider than a printed line, that end on a
    rule's ink (`across`: rising to it or hanging from it), are strokes of their own or have
    a free tip (a digit's upright stroke goes on into the rest of the digit), and stand on a
    regular lattice along the rule with the box's sides and dividers (`anchors`). A tick a
    digit touches is one stroke with the digit: at the rule, though, it is a stub as narrow
    as the others; on their lattice, the stub is taken out as long as the free ticks are."""
    if len(anchors) > PRINTED.most_ticks:  # not a comb's sides and dividers: noise
        return np.zeros(ink.shape, bool)
    shortest = max(3, round(PRINTED.tick * writing))
    upright = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((shortest, 1), np.uint8))
    count, labels, stats, centres = cv2.connectedComponentsWithStats(upright, None, 8)
    _, strokes, whole, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), None, 8)
    narrow, narrowest = thick + 3, PRINTED.narrowest * writing
    # whether each upright stroke rises to a rule, and whether it hangs from one
    ends = [(False, False)] * count
    for i in range(1, count):
        x, y, w, h, _ = stats[i]
        # the stroke's run down its columns may take in the rule's rows it ends on
        reach = PRINTED.tick_reach
        rising = across[max(0, y + h - reach) : y + h + reach, x : x + w].any()
        hanging = across[max(0, y - reach) : y + reach, x : x + w].any()
        ends[i] = (bool(rising), bool(hanging))

    def tick(i: int) -> bool:
        x, y, w, h, area = stats[i]
        box = (slice(y, y + h), slice(x, x + w))
        own = whole[strokes[box][labels[box] == i][0]]  # the stroke of ink it is part of
        alone = own[cv2.CC_STAT_WIDTH] <= narrow + 2 and own[cv2.CC_STAT_AREA] <= 1.5 * area
        sides = slice(max(0, x - 1), x + w + 1)
        rising, hanging = ends[i]
        free = (rising and not ink[max(0, y - 6) : max(0, y - 2), sides].any()) or (
            hanging and not ink[y + h + 2 : y + h + 6, sides].any()
        )
        return w <= narrow and (rising or hanging) and (alone or free or (rising and hanging))

    candidates = [i for i in range(1, count) if tick(i)]
    # a noisy scan can raise hundreds of specks along a rule: the tallest are the ticks
    candidates = sorted(candidates, key=lambda i: -stats[i, cv2.CC_STAT_HEIGHT])
    candidates = candidates[: PRINTED.most_ticks]
    xs = [float(centres[i, 0]) for i in candidates]
    on = _lattice(xs, anchors, narrowest)
    # printed ticks are as long as each other: a stroke between the lattice's ends, from one
    # rule and longer than its ticks, is writing (a 1 written over a tick); the ends may be a
    # box's sides
    single = [k for k in on if not all(ends[candidates[k]])]
    if single:
        heights = stats[:, cv2.CC_STAT_HEIGHT]
        length = _usual_length(
            [xs[k] for k in single], heights[[candidates[k] for k in single]], narrow
        )
        lo, hi = min(xs[k] for k in on) + narrow, max(xs[k] for k in on) - narrow
        longer = {
            i
            for i, x in zip(candidates, xs, strict=True)
            if heights[i] > length + max(3, PRINTED.tick_length * length)
            and lo < x < hi
            and not all(ends[i])
        }
        if longer:
            candidates = [i for i in candidates if i not in longer]
            xs = [float(centres[i, 0]) for i in candidates]
            on = _lattice(xs, anchors, narrowest)

    def short(ticks: list[int], stubs: int = 0) -> list[int]:
        """`ticks`, less the one between the anchors if it is alone there (no other tick nor
        stub) and reaches across most of the box: a comb of two cells, or a 1 standing on the
        line halfway."""
        between = [k for k in ticks if all(abs(xs[k] - x) > narrow for x in anchors)]
        if len(between) + stubs != 1 or not between:
            return ticks
        x, y, w, h, _ = stats[candidates[between[0]]]
        top, bottom = _rules_at(across, slice(x, x + w), y + h // 2)
        tall = top is not None and bottom is not None and h > PRINTED.lone_tick * (bottom - top)
        return [k for k in ticks if k != between[0]] if tall else ticks

    if len(on) < 3:
        return np.isin(labels, [candidates[k] for k in short(on)])
    # stubs from the rules the ticks found stand on or hang from (dividers: both)
    rules = 2 * np.array([ends[candidates[k]] for k in on]).sum(axis=0) >= len(on)
    stubs = [
        stub
        for i in range(1, count)
        if i not in candidates
        for end, rising in enumerate((True, False))
        if ends[i][end] and rules[end]
        for stub in _stubs(labels, stats[i], i, rising, shortest, narrow)
    ][: PRINTED.most_ticks]
    middles = [(a + b - 1) / 2 for _, a, b, _ in stubs]
    with_stubs = _lattice(xs + middles, anchors, narrowest)
    free = [k for k in with_stubs if k < len(xs)]
    held = [*anchors, *(xs[k] for k in free)]  # a stub where a divider or a tick is: its ink
    touched = [
        stubs[k - len(xs)]
        for k in with_stubs
        if k >= len(xs) and all(abs(middles[k - len(xs)] - x) > narrow for x in held)
    ]
    # the stubs may add places to the ticks' lattice, not lose it ticks nor outnumber them
    if len(free) < max(len(on), len(touched)):
        return np.isin(labels, [candidates[k] for k in short(on)])
    free = [candidates[k] for k in short(free, len(touched))]
    found = np.isin(labels, free)
    length = int(stats[free, cv2.CC_STAT_HEIGHT].max()) + 1
    for i, a, b, rising in touched:
        y, h = stats[i, cv2.CC_STAT_TOP], stats[i, cv2.CC_STAT_HEIGHT]
        rows = slice(max(0, y + h - length), y + h) if rising else slice(y, y + length)
        found[rows, a:b] |= labels[rows, a:b] == i
    return found


def _usual_length(xs: list[float], heights: np.ndarray, narrow: int) -> float:
    """The length of a comb's ticks: the median over their places (`xs` within `narrow` of each
    other are one) of the longest stroke at each; a tick the scan broke leaves pieces there."""
    longest: list[int] = []
    last = -np.inf
    for x, height in sorted(zip(xs, heights.tolist(), strict=True)):
        if x - last > narrow:
            longest.append(height)
        else:
            longest[-1] = max(longest[-1], height)
        last = x
    return float(np.median(longest))


def _stubs(
    labels: np.ndarray, stat: np.ndarray, i: int, rising: bool, shortest: int, narrow: int
) -> list[tuple[int, int, int, bool]]:
    """The narrow stubs at the rule's end of upright stroke `i` (its box `stat`): runs of its
    columns, in the `shortest` rows next to the rule, no wider than `narrow`; each as (i,
    first column, one past the last, rising)."""
    x, y, w, h, _ = stat
    rows = slice(y + h - shortest, y + h) if rising else slice(y, y + shortest)
    first, last = true_runs((labels[rows, x : x + w] == i).any(axis=0))
    return [(i, x + a, x + b, rising) for a, b in zip(first, last, strict=True) if b - a <= narrow]


def _lattice(xs: Sequence[float], anchors: Sequence[float], narrowest: float) -> list[int]:
    """Which of `xs` stand on the most regular lattice through them and the `anchors`: the
    lattice with the most places taken less the places left empty between its ends, of at
    least three places taken (three ticks when there are no anchors). With anchors, a comb's
    lattice holds the outermost two and has `full` of the places they leave empty taken: a 1
    or two standing on the line between a box's sides do not make a comb, nor do a few
    strokes halfway between its dividers; nor do strokes that take no place the anchors leave
    empty, unless they make a better lattice. Every lattice through two of the points is
    scored at once, a block of lattices at a time (a field with many upright strokes has tens
    of thousands)."""
    values = np.array([*xs, *anchors])
    points = np.sort(values)
    outer = (
        [len(xs) + int(np.argmin(anchors)), len(xs) + int(np.argmax(anchors))] if anchors else []
    )
    first, second = np.triu_indices(len(points), 1)  # every two points, in order
    span = points[second] - points[first]
    steps = (span / max(narrowest, 2.0)).astype(int)  # lattices of 1..steps places between
    start, span = np.repeat(points[first], steps), np.repeat(span, steps)
    if not len(start):
        return []
    ends = np.cumsum(steps)
    period = span / (np.arange(len(start)) - np.repeat(ends - steps, steps) + 1)
    best, chosen = 0, []
    block = max(1, PRINTED.lattice_block // len(values))
    for row in range(0, len(start), block):
        a = start[row : row + block, None]
        step = period[row : row + block, None]
        place = np.round((values - a) / step)
        on = np.abs(values - a - place * step) <= np.maximum(2.0, PRINTED.on_lattice * step)
        placed = np.where(on, place, np.inf)
        taken = _distinct(placed)
        alone = _distinct(placed[:, len(xs) :])  # by the anchors
        ticks = on[:, : len(xs)].sum(axis=1)
        low = placed.min(axis=1)
        high = np.where(on, place, -np.inf).max(axis=1)
        places = high - low + 1
        # with anchors, a comb: its outermost sides on the lattice, and the places they leave
        # empty mostly taken (strokes of writing near halfway between dividers are no ticks)
        comb = (
            on[:, outer].all(axis=1) & (taken - alone >= PRINTED.full * (places - alone))
            if anchors
            else ticks >= 3
        )
        # places taken less places empty between the ends; of two lattices as good, the one
        # the anchors take alone: strokes by the dividers, or halfway between, are writing
        score = np.where((taken >= 3) & comb, 4 * taken - 2 * places + (taken == alone), 0)
        top = int(np.argmax(score))
        if score[top] > best:
            best, chosen = score[top], np.flatnonzero(on[top, : len(xs)]).tolist()
    return chosen


def _distinct(places: np.ndarray) -> np.ndarray:
    """How many distinct finite values each row holds."""
    ordered = np.sort(places, axis=1)
    before = np.pad(ordered[:, :-1], ((0, 0), (1, 0)), constant_values=-np.inf)
    return (np.isfinite(ordered) & (ordered != before)).sum(axis=1)
