"""Print a field's form structure (boxes, combs, ticks, underlines, shading, drop-out) on its
transmission layer, as docs/specimens.md describes it.

The print half of trainer/specimens.py: a style's variant, widths and ink are chosen as a Plan,
then printed where the field's layout puts it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive

PRINT_INKS = ((0.03, 0.12), (0.2, 0.35))  # reflectance of black and dark grey print
LINE = (1, 4)  # print line width, px
DOT = (1, 3)  # dot diameter of a dotted line, px
DOT_PERIOD = (3, 8)  # dot spacing, px
DASH = (4, 15)  # dash length, px
DASH_GAP = (2, 8)  # gap between dashes, px
TICK = (0.2, 0.5)  # a tick's length as a share of the box's inner height
SHADE = (0.85, 0.95)  # a shaded cell's tint, times the paper
DROP_OUTS = {"red": (170, 170, 250), "blue": (250, 200, 160)}  # BGR, of the paper's brightness
DROP_OUT_SPREAD = 12  # how far one printer's drop-out colour strays, per channel


@dataclass(frozen=True)
class Plan:
    """A field's printed structure, before it is given a place."""

    style: str  # a key of specimens.STYLES
    shape: str  # none, underline, box, comb, ticks up, ticks down
    line: str  # solid, dotted, dashed
    shade: float  # tint times the paper inside the box or cells; 1 = none
    shade_cells: bool  # the tint fills each cell rather than the whole box
    colour: tuple[float, float, float]  # BGR transmission of the print at full coverage
    width: int  # line width, px
    dot: int  # dot diameter, px
    period: int  # dot period, px
    dash: tuple[int, int]  # dash and gap, px
    tick: float  # tick length as a share of the inner height

    @property
    def cells(self) -> bool:
        """Whether the print has cells, each holding one digit."""
        return self.shape in ("comb", "ticks up", "ticks down") or self.shade_cells

    @property
    def framed(self) -> bool:
        """Whether anything is printed around the writing."""
        return self.shape != "none" or self.shade < 1


def print_plan(
    style: str,
    rng: np.random.Generator,
    ink: tuple[float, float, float] | None = None,
    shade_cells: bool | None = None,
) -> Plan:
    """How a style is printed this time: its variant (a dotted box or underline, shaded cells
    or box with or without lines, a drop-out box or comb in red or blue), widths and ink."""
    if ink is None:
        ink = (rng.uniform(*PRINT_INKS[rng.integers(len(PRINT_INKS))]),) * 3
    shape, line, shade, cells = style, "solid", 1.0, False
    if style in ("dotted", "dashed"):
        shape, line = "underline" if style == "dotted" and rng.random() < 0.5 else "box", style
    elif style == "shaded":
        shade = rng.uniform(*SHADE)
        cells = bool(rng.random() < 0.5) if shade_cells is None else shade_cells
        shape = ("comb" if cells else "box") if rng.random() < 0.5 else "none"
    elif style == "drop-out":
        shape = "comb" if rng.random() < 0.5 else "box"
        base = DROP_OUTS[list(DROP_OUTS)[rng.integers(len(DROP_OUTS))]]
        ink = tuple(
            min(1.0, (c + rng.uniform(-DROP_OUT_SPREAD, DROP_OUT_SPREAD)) / 255) for c in base
        )
    dot = int(rng.integers(DOT[0], DOT[1] + 1))
    return Plan(
        style=style,
        shape=shape,
        line=line,
        shade=shade,
        shade_cells=cells,
        colour=ink,
        width=int(rng.integers(LINE[0], LINE[1] + 1)),
        dot=dot,
        period=int(rng.integers(max(DOT_PERIOD[0], dot + 2), DOT_PERIOD[1] + 1)),
        dash=(
            int(rng.integers(DASH[0], DASH[1] + 1)),
            int(rng.integers(DASH_GAP[0], DASH_GAP[1] + 1)),
        ),
        tick=rng.uniform(*TICK),
    )


def draw_print(layer: np.ndarray, plan: Plan, rect: Rect, cells: int) -> None:
    """Print the plan on the transmission layer, in place: `rect` is the box's outer edge (for
    an underline, the line is its bottom edge) and `cells` the number of cells it is divided
    into."""
    x0, y0, x1, y1 = rect
    edges = [x0 + round(k * (x1 - x0) / max(cells, 1)) for k in range(max(cells, 1) + 1)]
    if plan.shade < 1 and plan.shade_cells:
        apart = 0 if plan.shape != "none" else max(2, round(0.08 * (x1 - x0) / cells))
        for a, b in itertools.pairwise(edges):
            layer[y0:y1, a + apart // 2 : b - (apart + 1) // 2] *= plan.shade
    elif plan.shade < 1:
        layer[y0:y1, x0:x1] *= plan.shade
    mask = np.zeros(layer.shape[:2], np.float32)
    for bar in _bars(plan, rect, edges[1:-1]):
        _draw_bar(mask, bar, plan)
    layer *= 1 - mask[..., None] * (1 - np.array(plan.colour, np.float32))


def _bars(plan: Plan, rect: Rect, dividers: Sequence[int]) -> list[Rect]:
    """The plan's lines as filled rectangles."""
    x0, y0, x1, y1 = rect
    w = plan.width
    if plan.shape == "none":
        return []
    if plan.shape == "underline":
        return [(x0, y1 - w, x1, y1)]
    bars = [(x0, y0, x1, y0 + w), (x0, y1 - w, x1, y1), (x0, y0, x0 + w, y1), (x1 - w, y0, x1, y1)]
    tick = round(plan.tick * (y1 - y0 - 2 * w))
    top, bottom = {"ticks up": (y1 - w - tick, y1), "ticks down": (y0, y0 + w + tick)}.get(
        plan.shape, (y0, y1)
    )
    if plan.shape != "box":
        bars += [(x - w // 2, top, x - w // 2 + w, bottom) for x in dividers]
    return bars


def _draw_bar(mask: np.ndarray, bar: Rect, plan: Plan) -> None:
    """One line on the print mask: solid, in dashes along its length, or as dots on its centre."""
    x0, y0, x1, y1 = bar
    across = x1 - x0 >= y1 - y0
    length = (x1 - x0) if across else (y1 - y0)
    if plan.line == "dotted":
        disc = _disc(plan.dot)
        for t in range(0, length - 1, plan.period):
            cx, cy = (x0 + t, (y0 + y1) // 2) if across else ((x0 + x1) // 2, y0 + t)
            _stamp(mask, disc, cx - plan.dot // 2, cy - plan.dot // 2)
        return
    dash, gap = plan.dash if plan.line == "dashed" else (length, 0)
    for t in range(0, length, dash + gap):
        a, b = t, min(t + dash, length)
        part = (x0 + a, y0, x0 + b, y1) if across else (x0, y0 + a, x1, y0 + b)
        _stamp(mask, np.ones((part[3] - part[1], part[2] - part[0]), np.float32), *part[:2])


def _disc(diameter: int) -> np.ndarray:
    """A printed dot's coverage."""
    if diameter < 3:
        return np.ones((diameter, diameter), np.float32)
    return np.array([[0.4, 1, 0.4], [1, 1, 1], [0.4, 1, 0.4]], np.float32)


def _stamp(mask: np.ndarray, piece: np.ndarray, x: int, y: int) -> None:
    """Cover `mask` with `piece` at (x, y), clipped to the mask."""
    h, w = piece.shape
    top, left = max(0, -y), max(0, -x)
    bottom, right = min(h, mask.shape[0] - y), min(w, mask.shape[1] - x)
    if bottom > top and right > left:
        region = mask[y + top : y + bottom, x + left : x + right]
        np.maximum(region, piece[top:bottom, left:right], out=region)
