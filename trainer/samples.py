"""Sample scans: MNIST digits rendered as phone or scanner captures of a handwritten digit on
paper, so the demo, tests and benchmarks can measure how the reader copes with real scans.

Single-digit scans and digit-string fields (laid out on a baseline, boxed or underlined): the
paper, the ink, uneven light and the camera, saved as labelled JPEG or PNG files. The digits' pen
strokes are trainer/handwriting.py's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from trainer import handwriting

_SIZE_RANGE = (200, 700)  # canvas width and height, pixels
_MAX_SHADING = 0.30  # largest brightness drop across the page (gradient, vignette, shadow)
_MIN_CONTRAST = 0.35  # full ink coverage is at least this much darker than the paper (Weber)
_MAX_BLUR = 1.5  # Gaussian blur sigma, pixels; also at most 0.45 of the stroke width
_MAX_NOISE = 8.0  # Gaussian sensor noise sigma, of 255
_JPEG_QUALITY = (40, 95)
_COLOUR_SHARE = 0.7  # the rest are grayscale
_JPEG_SHARE = 0.6  # the rest are lossless PNG
# digit-string fields, as written in a form's amount, date or account number boxes
_FIELD_HEIGHT = (24.0, 80.0)  # typical digit height of a field, pixels; each digit within ±10%
_FIELD_ASPECT = (1.6, 3.0)  # canvas height as a multiple of the digit height
_BASELINE_JITTER = 0.04  # digit bottoms wander this much of the digit height
_TOUCH_SHARE = 0.16  # neighbours drawn to touch or overlap by up to 3 px (~10% end up so)
_BOX_SHARE, _UNDERLINE_SHARE = 0.5, 0.25  # printed frame around the field; the rest are plain
_FAR = 1e6  # pixels: further than any ink
_LUMA = np.float32([0.114, 0.587, 0.299])  # BGR weights of OpenCV's BGR2GRAY
# paper stocks: BGR tint range (low, high) and brightness range; reflectance = tint * brightness
_PAPERS = (
    ((0.98, 0.99, 0.98), (1.0, 1.0, 1.0), (0.84, 0.97)),  # neutral white
    ((0.82, 0.95, 1.0), (0.93, 0.99, 1.0), (0.84, 0.97)),  # cream / yellowish
    ((1.0, 0.96, 0.90), (1.0, 0.99, 0.96), (0.84, 0.97)),  # bluish
    ((0.97, 0.99, 0.97), (1.0, 1.0, 1.0), (0.72, 0.86)),  # greyish: recycled or dimly lit
)
# inks: reflectance level range, BGR hue range (low, high), coverage strength range, grain range
_INKS = (
    ((0.04, 0.20), (0.9, 0.9, 0.9), (1.1, 1.1, 1.1), (0.85, 1.0), (0.0, 0.0)),  # black pen
    ((0.30, 0.55), (1.0, 0.35, 0.1), (1.0, 0.5, 0.3), (0.8, 1.0), (0.0, 0.0)),  # blue ballpoint
    ((0.20, 0.45), (0.97, 0.97, 0.97), (1.03, 1.03, 1.03), (0.7, 0.95), (0.1, 0.3)),  # pencil
    ((0.15, 0.35), (0.95, 0.95, 0.95), (1.05, 1.05, 1.05), (0.6, 0.85), (0.0, 0.0)),  # faded
)
PEN_INKS = _INKS[:2]  # what a form asks to be filled in with: black or blue pen


def render_scan(
    digit: np.ndarray, rng: np.random.Generator, sides: tuple[int, int] = _SIZE_RANGE
) -> np.ndarray:
    """Render a 28x28 uint8 MNIST digit (white on black) as dark ink on paper, every choice drawn
    from `rng`, on a canvas whose sides lie in `sides` (px); returns an HxW uint8 grayscale or
    HxWx3 uint8 BGR image."""
    if digit.shape != (28, 28):
        raise ValueError(f"expected a 28x28 MNIST digit, got shape {digit.shape}")
    height, width = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
    colour = rng.random() < _COLOUR_SHARE
    paper, texture = _paper(height, width, rng)
    coverage, stroke = handwriting.place_digit(digit, height, width, rng)
    ink, coverage = _ink(coverage, paper, rng)
    light = _illumination(height, width, rng) * 255.0
    # paper * (1 - a) + ink * a, both lit by the same uneven light, one plane per channel
    lit_paper, lit_ink = (1.0 - coverage) * texture * light, coverage * light
    if not colour:
        paper, ink = paper[None] @ _LUMA, ink[None] @ _LUMA  # a single gray "channel"
    planes = [lit_paper * p + lit_ink * i for p, i in zip(paper, ink, strict=True)]
    return _develop(planes, stroke, rng)


def write_scans(
    out_dir: Path, digits: np.ndarray, labels: np.ndarray, count: int, seed: int = 0
) -> dict[str, str]:
    """Render `count` digits picked by `seed` to out_dir/scan-NNNNN.jpg|png (older scan-* files
    removed), write labels.json (file name -> digit string) and return that mapping."""
    if len(digits) != len(labels):
        raise ValueError(f"{len(digits)} digits but {len(labels)} labels")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(digits), size=count, replace=count > len(digits))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mapping: dict[str, str] = {}
    for number, (index, child) in enumerate(zip(picks, rng.spawn(count), strict=True)):
        name = _save(out_dir, f"scan-{number:05d}", render_scan(digits[index], child), child)
        mapping[name] = str(int(labels[index]))
    _tidy(out_dir, "scan", mapping)
    return mapping


def _save(out_dir: Path, stem: str, image: np.ndarray, rng: np.random.Generator) -> str:
    """Write image as out_dir/stem.jpg or stem.png, as `encode` draws from rng; returns the file
    name."""
    suffix, data = encode(image, rng)
    (out_dir / f"{stem}{suffix}").write_bytes(data)
    return f"{stem}{suffix}"


def encode(image: np.ndarray, rng: np.random.Generator) -> tuple[str, bytes]:
    """The image as a file's bytes: JPEG of random quality or lossless PNG, as drawn from rng;
    returns the file suffix and the bytes."""
    if rng.random() < _JPEG_SHARE:
        suffix = ".jpg"
        quality = int(rng.integers(_JPEG_QUALITY[0], _JPEG_QUALITY[1] + 1))
        ok, data = cv2.imencode(suffix, image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    else:
        suffix = ".png"
        ok, data = cv2.imencode(suffix, image)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {suffix} image")
    return suffix, data.tobytes()


def _tidy(out_dir: Path, prefix: str, mapping: dict[str, str]) -> None:
    """Remove prefix-* images not in mapping and write mapping to out_dir/labels.json."""
    for stale in [*out_dir.glob(f"{prefix}-*.jpg"), *out_dir.glob(f"{prefix}-*.png")]:
        if stale.name not in mapping:
            stale.unlink()
    (out_dir / "labels.json").write_text(json.dumps(mapping, indent=2) + "\n")


def _develop(planes: list[np.ndarray], stroke: float, rng: np.random.Generator) -> np.ndarray:
    """Lit float planes (0-255, one for gray, three for BGR) through the camera: lens or motion
    blur no wider than the strokes allow, sensor noise, 8-bit quantisation."""
    height, width = planes[0].shape
    sigma = min(rng.uniform(0.0, _MAX_BLUR), 0.45 * stroke)
    if sigma > 0.1:
        planes = [cv2.GaussianBlur(plane, (0, 0), sigma) for plane in planes]
    # noise left after demosaicing and denoising is mostly luminance: one field for all channels
    noise = rng.uniform(0.0, _MAX_NOISE) * rng.standard_normal((height, width), dtype=np.float32)
    planes = [cv2.add(plane, noise, dtype=cv2.CV_8U) for plane in planes]  # rounded, clipped
    return cv2.merge(planes) if len(planes) == 3 else planes[0]


def render_field(digits: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Render 28x28 uint8 MNIST digits, written left to right by one writer with one pen, as a
    scanned form field (sometimes boxed or underlined); returns HxW gray or HxWx3 BGR uint8."""
    if len(digits) == 0:
        raise ValueError("a field needs at least one digit")
    colour = rng.random() < _COLOUR_SHARE
    size = rng.uniform(*_FIELD_HEIGHT)
    patches, stroke = handwriting.handwrite(digits, size, rng)
    coverage, ink_box = layout(patches, size, rng)
    coverage, frame = _frame(coverage, ink_box, size, rng)
    return compose(coverage, frame, colour, stroke, rng)


def compose(
    coverage: np.ndarray,
    printed: np.ndarray,
    colour: bool,
    stroke: float,
    rng: np.random.Generator,
    inks: Sequence[tuple] = _INKS,
    dropout: Sequence[float] | None = None,
) -> np.ndarray:
    """Scan handwriting (`coverage`, in one of `inks`) over a form's print (`printed`, in black
    or dark gray, or in a light drop-out colour: `dropout`, BGR shares of the paper's
    reflectance), both HxW float32 in [0, 1], on random paper under uneven light, through the
    camera (`stroke`: the handwriting's stroke width); returns HxW gray or HxWx3 BGR uint8."""
    return _develop(_lit(coverage, printed, colour, rng, inks, dropout), stroke, rng)


def _lit(
    coverage: np.ndarray,
    printed: np.ndarray,
    colour: bool,
    rng: np.random.Generator,
    inks: Sequence[tuple],
    dropout: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """The paper with its print and handwriting under the light, as float planes (0-255, one
    for gray, three for BGR); its page-sized intermediates are gone before the camera's."""
    height, width = coverage.shape
    paper, texture = _paper(height, width, rng)
    ink, coverage = _ink(coverage, paper, rng, inks)
    if dropout is None:
        tone = np.float32(rng.uniform(0.05, 0.35) * rng.uniform(0.92, 1.08, size=3))
    else:
        tone = np.float32(paper * np.float32(dropout))
    printed = printed * rng.uniform(0.75, 1.0)
    light = _illumination(height, width, rng) * 255.0
    # the form's print lies on the paper and the handwriting on both
    under, lit_ink = (1.0 - coverage) * light, coverage * light
    if not colour:
        paper, ink, tone = paper[None] @ _LUMA, ink[None] @ _LUMA, tone[None] @ _LUMA
    return [
        (texture * p * (1.0 - printed) + printed * f) * under + lit_ink * i
        for p, i, f in zip(paper, ink, tone, strict=True)
    ]


def write_fields(
    out_dir: Path,
    digits: np.ndarray,
    labels: np.ndarray,
    count: int,
    seed: int = 0,
    lengths: tuple[int, int] = (3, 8),
) -> dict[str, str]:
    """Render `count` fields of between lengths[0] and lengths[1] digits picked by `seed` to
    out_dir/field-NNNNN.jpg|png (older field-* files removed), write labels.json (file name ->
    digit string such as "40317") and return that mapping."""
    if len(digits) != len(labels):
        raise ValueError(f"{len(digits)} digits but {len(labels)} labels")
    if not 1 <= lengths[0] <= lengths[1]:
        raise ValueError(f"bad field lengths {lengths}")
    rng = np.random.default_rng(seed)
    sizes = rng.integers(lengths[0], lengths[1] + 1, size=count)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mapping: dict[str, str] = {}
    for number, (length, child) in enumerate(zip(sizes, rng.spawn(count), strict=True)):
        picks = child.choice(len(digits), size=int(length))
        image = render_field([digits[i] for i in picks], child)
        name = _save(out_dir, f"field-{number:05d}", image, child)
        mapping[name] = "".join(str(int(labels[i])) for i in picks)
    _tidy(out_dir, "field", mapping)
    return mapping


def layout(
    patches: list[np.ndarray],
    size: float,
    rng: np.random.Generator,
    spacing: float | None = None,
    pressure: Sequence[float] | None = None,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Set the digit patches left to right on a jittered baseline, ink to ink gaps from wide to
    touching (about `spacing` of `size` apart, or a random writer's), each digit's ink at its
    `pressure` (1 if not given); returns the coverage, cropped to the ink, and the ink's x0,
    y0, x1, y1 in it."""
    masks = [patch > 0.5 for patch in patches]  # gaps between visible ink edges
    rows = [np.flatnonzero(mask.any(axis=1)) for mask in masks]
    # top of each patch relative to the baseline: the ink's bottom rests on it, give or take
    tops = [
        round(rng.uniform(-_BASELINE_JITTER, _BASELINE_JITTER) * size) - int(r[-1]) if r.size else 0
        for r in rows
    ]
    top = min(tops)
    band = max(t + p.shape[0] for t, p in zip(tops, patches, strict=True)) - top
    right = np.full(band, -2 * _FAR, np.float32)  # rightmost ink so far, per row
    spacing = (rng.uniform(0.1, 0.35) if spacing is None else spacing) * size  # a usual gap
    lefts, reach = [], -np.inf
    for number, (mask, t) in enumerate(zip(masks, tops, strict=True)):
        rows_on = mask.any(axis=1)
        first = np.where(rows_on, mask.argmax(axis=1), np.inf)
        last = np.where(rows_on, mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1), -np.inf)
        if number == 0 or not rows_on.any():
            left = 0
        else:
            if rng.random() < _TOUCH_SHARE:
                gap = -int(rng.integers(0, 4))  # 0: just touching, else overlapping columns
                near, tuck = right, 3.0  # touch in some row, just where the digits meet
            else:
                gap = max(2.0, spacing * rng.uniform(0.6, 1.5))
                # keep the gap to ink a little above and below too: no tucking under overhangs
                reach_rows = 2 * round(0.15 * size) + 1
                near = cv2.dilate(right[:, None], np.ones((reach_rows, 1), np.uint8))[:, 0]
                tuck = 0.1 * size
            span = near[t - top : t - top + mask.shape[0]]
            kern = (span - first)[(span > -_FAR) & rows_on]
            # ink to ink in shared rows, but never far under the previous digit
            needed = float(kern.max()) + 1 + gap if kern.size else reach + 1 + gap - first.min()
            left = math.ceil(max(needed, reach - tuck - first.min()))
        lefts.append(left)
        if rows_on.any():
            span = right[t - top : t - top + mask.shape[0]]
            np.maximum(span, last + left, out=span)
            reach = max(reach, float(last.max()) + left)
    x_min = min(lft for lft, p in zip(lefts, patches, strict=True))
    width = max(lft + p.shape[1] for lft, p in zip(lefts, patches, strict=True)) - x_min
    coverage = np.zeros((band, width), np.float32)
    weights = [1.0] * len(patches) if pressure is None else pressure
    for patch, lft, t, weight in zip(patches, lefts, tops, weights, strict=True):
        y0, x0 = t - top, lft - x_min
        view = coverage[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]]
        np.maximum(view, patch * weight if weight != 1.0 else patch, out=view)
    ys, xs = np.nonzero(coverage > 0.1)
    if ys.size == 0:
        return coverage, (0, 0, width, band)
    return coverage, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _frame(
    coverage: np.ndarray, ink_box: tuple[int, int, int, int], size: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Put the handwriting on a field canvas, wider than tall, with a printed box, underline or
    nothing around it; returns the ink coverage and the printed lines' coverage."""
    x0, y0, x1, y1 = ink_box
    style = rng.random()
    thick = int(rng.integers(1, 4))

    def margin(low: float, high: float) -> float:
        """A gap between ink and print: usually some of `size`, now and then touching."""
        if rng.random() < 0.1:
            return rng.uniform(-1.0, 0.5)
        return rng.uniform(low, high) * size

    # the print's outer rectangle relative to the ink box, and room outside it
    if style < _BOX_SHARE:
        left, right = margin(0.1, 0.5), margin(0.1, 1.2)
        above, below = margin(0.1, 0.35), margin(0.1, 0.35)
        left, right, above, below = (v + thick for v in (left, right, above, below))
    elif style < _BOX_SHARE + _UNDERLINE_SHARE:
        left, right = rng.uniform(0.1, 0.6) * size, rng.uniform(0.1, 1.2) * size
        above, below = 0.0, margin(0.03, 0.25) + thick
    else:
        left = right = above = below = 0.0
    pad = rng.uniform(0.05, 0.5, size=2) * size + 4
    inner_h = (y1 - y0) + above + below
    height = max(round(rng.uniform(*_FIELD_ASPECT) * size), math.ceil(inner_h + 8))
    width_needed = (x1 - x0) + left + right + pad.sum()
    if width_needed < 1.3 * height:  # a form field is a wide strip: stretch the print or padding
        extra = 1.3 * height - width_needed
        if style < _BOX_SHARE + _UNDERLINE_SHARE:
            right += extra
        else:
            pad += extra / 2
    width = math.ceil((x1 - x0) + left + right + pad.sum())
    ox = pad[0] + left - x0  # canvas x of coverage column 0
    oy = rng.uniform(4, max(4.0, height - inner_h - 4)) + above - y0
    shift = np.float32([[1, 0, round(ox)], [0, 1, round(oy)]])
    canvas = cv2.warpAffine(coverage, shift, (width, height), flags=cv2.INTER_NEAREST)
    lines = np.zeros((height, width), np.float32)
    fx0, fx1 = x0 + round(ox) - left, x1 + round(ox) + right
    fy0, fy1 = y0 + round(oy) - above, y1 + round(oy) + below
    step = 16  # cv2 sub-pixel coordinates: 4 fractional bits
    if style < _BOX_SHARE:
        inset = thick / 2
        corner_a = (round((fx0 + inset) * step), round((fy0 + inset) * step))
        corner_b = (round((fx1 - inset) * step), round((fy1 - inset) * step))
        cv2.rectangle(lines, corner_a, corner_b, 1.0, thick, cv2.LINE_AA, 4)
    elif style < _BOX_SHARE + _UNDERLINE_SHARE:
        y = round((fy1 - thick / 2) * step)
        cv2.line(lines, (round(fx0 * step), y), (round(fx1 * step), y), 1.0, thick, cv2.LINE_AA, 4)
    return canvas, np.clip(lines, 0.0, 1.0)


def _field(height: int, width: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field of roughly unit spread with features about `cell` pixels wide."""
    grid = rng.standard_normal((int(height / cell) + 2, int(width / cell) + 2), dtype=np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _paper(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Off-white paper: the BGR reflectance of a random stock, and a faint texture map around 1."""
    low, high, brightness = _PAPERS[rng.integers(len(_PAPERS))]
    tint = np.float32(rng.uniform(low, high) * rng.uniform(*brightness))
    blotches = rng.uniform(0.003, 0.012) * _field(height, width, rng.uniform(40, 120), rng)
    grain = rng.uniform(0.003, 0.012) * _field(height, width, rng.uniform(2, 5), rng)
    return tint, 1.0 + blotches + grain


def _illumination(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Light in [1 - _MAX_SHADING, 1]: a linear gradient, an off-centre vignette and sometimes a
    soft-edged shadow, mixed with random weights."""
    ys, xs = np.mgrid[0:height:8, 0:width:8].astype(np.float32)
    diagonal = math.hypot(height, width)
    angle = rng.uniform(0, 2 * math.pi)
    gradient = xs * math.cos(angle) + ys * math.sin(angle)
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    vignette = (xs - cx) ** 2 + (ys - cy) ** 2
    angle = rng.uniform(0, 2 * math.pi)
    edge = (xs - rng.uniform(0, width)) * math.cos(angle)
    edge += (ys - rng.uniform(0, height)) * math.sin(angle)
    shadow = 1.0 / (1.0 + np.exp(-edge / (rng.uniform(0.02, 0.15) * diagonal)))
    weights = rng.uniform(0, 1, size=3) * np.float32([1, 1, rng.random() < 0.3])
    parts = [(p - p.min()) / max(float(np.ptp(p)), 1e-6) for p in (gradient, vignette, shadow)]
    shape = sum(w * p for w, p in zip(weights, parts, strict=True))
    shape = (shape - shape.min()) / max(float(np.ptp(shape)), 1e-6)
    light = (1.0 - rng.uniform(0.03, _MAX_SHADING) * shape).astype(np.float32)
    return cv2.resize(light, (width, height), interpolation=cv2.INTER_LINEAR)


def _ink(
    coverage: np.ndarray,
    paper: np.ndarray,
    rng: np.random.Generator,
    inks: Sequence[tuple] = _INKS,
) -> tuple[np.ndarray, np.ndarray]:
    """One of `inks`' BGR reflectance, and the coverage as that ink lays it down (pen pressure,
    pencil grain), never fainter than _MIN_CONTRAST against the paper."""
    levels, low, high, strengths, grains = inks[rng.integers(len(inks))]
    ink = np.float32(rng.uniform(*levels) * rng.uniform(low, high))
    paper_luma, ink_luma = float(paper @ _LUMA), float(ink @ _LUMA)
    floor = _MIN_CONTRAST * paper_luma / (paper_luma - ink_luma)
    strength = min(1.0, max(rng.uniform(*strengths), floor))
    modulation = 1.0 - rng.uniform(0.0, 0.15) * np.abs(_field(*coverage.shape, 60, rng))
    if grains[1] > 0:
        modulation -= rng.uniform(*grains) * np.abs(_field(*coverage.shape, 1.5, rng))
    return ink, coverage * strength * np.clip(modulation, 0.5, 1.0)
