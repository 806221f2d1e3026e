"""Digit strings for the string reader: how a line of writing is framed, and training lines
made of MNIST digits set side by side, apart, touching and overlapping as people write them.

A classifier of single digits needs the digits cut apart first, and digits that overlap or
cross cannot always be cut. The reader takes the whole line and emits its digits in order
(CTC), so it reads what a segmenter could not separate.
"""

from __future__ import annotations

import cv2
import numpy as np

from trainer import mnist

HEIGHT, WIDTH = 32, 256  # a framed line; the reader's time steps are WIDTH / 4 columns
DIGIT = 20  # a typical digit's height in the frame, as in MNIST's 20×20 box
LONGEST = 10  # digits in a line, at most
GAP = 0.3  # digit heights between digits in a framed line, at most (wider gaps are closed)


def frame(ink: np.ndarray, height: float) -> tuple[np.ndarray, float]:
    """A line's cropped ink (float, bright on black) whose typical digit is `height` px tall,
    scaled so that digit is DIGIT px, squeezed sideways if too long, centred vertically;
    returns the framed line and its horizontal scale (its column c is ink column (c - 2) / scale).
    """
    h, w = ink.shape
    scale = min(DIGIT / max(height, 1.0), (HEIGHT - 2) / h)
    size = (max(1, min(WIDTH - 4, round(w * scale))), max(1, round(h * scale)))
    line = cv2.resize(ink.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    line /= max(float(line.max()), 1e-6)
    out = np.zeros((HEIGHT, WIDTH), np.float32)
    top = (HEIGHT - size[1]) // 2
    out[top : top + size[1], 2 : 2 + size[0]] = line
    return out, size[0] / w


def make(
    digits: np.ndarray, labels: np.ndarray, count: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`count` framed lines (uint8, HEIGHT×WIDTH) of 1 to LONGEST MNIST `digits`, and their
    labels as digit + 1 padded with 0 (the CTC blank) to LONGEST."""
    rng = np.random.default_rng(seed)
    lines = np.empty((count, HEIGHT, WIDTH), np.uint8)
    targets = np.zeros((count, LONGEST), np.int32)
    for n, length in enumerate(lengths(count, rng)):
        chosen = rng.integers(len(digits), size=length)
        ink, height = _line([mnist.crop(digits[i]) for i in chosen], rng)
        lines[n] = np.round(frame(ink, height)[0] * 255).astype(np.uint8)
        targets[n, :length] = labels[chosen] + 1
    return lines, targets


def lengths(count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` line lengths of 1 to LONGEST digits, drawn as fields of forms have them."""
    return rng.choice(np.arange(1, LONGEST + 1), size=count, p=_LENGTHS)


# fields of 3-8 digits are the common case; single digits and long numbers also occur
_LENGTHS = np.array([4, 4, 10, 10, 10, 10, 10, 10, 6, 6], float) / 80


def _line(crops: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Digits written on one line with varied size (±30%), height, spacing and pen; returns the
    ink cropped to the line and the median digit height. Digits stand at most GAP heights
    apart, as the worker frames any line of writing (`worker.reading.segment`)."""
    scaled = []
    for crop in crops:
        factor = rng.uniform(0.7, 1.3)
        size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
        scaled.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    tallest = max(c.shape[0] for c in scaled)
    canvas = np.zeros((tallest + 12, sum(c.shape[1] for c in scaled) + 12 * len(scaled)), np.uint8)
    x, drift = 2, 0.0
    for crop in scaled:
        drift = float(np.clip(drift + rng.normal(0, 1.2), -3, 3))
        y = round(6 + (tallest - crop.shape[0]) * rng.uniform(0.3, 1.0) + drift)
        view = canvas[y : y + crop.shape[0], x : x + crop.shape[1]]
        np.maximum(view, crop, out=view)
        # most digits stand apart; about one pair in three touches or overlaps, by up to
        # half a typical digit's width (so a narrow 1 may sit inside its neighbour)
        apart = rng.random() < 0.7
        gap = rng.uniform(0, GAP) * DIGIT if apart else -rng.uniform(0, 0.4) * DIGIT
        x = max(x + 1, x + crop.shape[1] + round(gap))
    pen = rng.random()
    if pen < 0.15:
        canvas = cv2.dilate(canvas, np.ones((2, 2), np.uint8))
    elif pen > 0.9:
        thin = cv2.erode(canvas, np.ones((2, 2), np.uint8))
        inked = (thin > mnist.INK).sum() >= 0.4 * (canvas > mnist.INK).sum()
        canvas = thin if inked else canvas
    ink = mnist.crop(canvas).astype(np.float32) / 255
    return ink, float(np.median([c.shape[0] for c in scaled]))


STEP = WIDTH // 64  # line columns per reader time step


def decode(logits: np.ndarray) -> list[tuple[int, tuple[int, int], float]]:
    """Best-path CTC reading of one line's logits (steps × 11, blank first): each digit with
    its span of line columns and its probability at its most certain step."""
    probs = _softmax(logits)
    best = probs.argmax(axis=1)
    digits: list[tuple[int, tuple[int, int], float]] = []
    for step, k in enumerate(best):
        if k and step and best[step - 1] == k:
            digit, (first, _), p = digits[-1]
            digits[-1] = (digit, (first, (step + 1) * STEP), max(p, float(probs[step, k])))
        elif k:
            digits.append((int(k) - 1, (step * STEP, (step + 1) * STEP), float(probs[step, k])))
    return digits


def likelihood(logits: np.ndarray, text: str) -> np.ndarray:
    """Log-probability the reader gives `text` for each line of `logits` (..., steps × 11), all
    lines in one CTC forward pass."""
    logp = np.log(np.maximum(_softmax(logits), 1e-30))
    if not text:
        return logp[..., 0].sum(axis=-1)
    path = np.zeros(2 * len(text) + 1, int)  # blank, d1, blank, d2, ..., blank
    path[1::2] = [int(c) + 1 for c in text]
    # a step may skip a blank between two different digits
    skip = np.zeros(len(path), bool)
    skip[3::2] = path[3::2] != path[1:-2:2]
    alpha = np.full((*logp.shape[:-2], len(path) + 2), -np.inf)  # two unreachable states first
    alpha[..., 2:4] = logp[..., 0, path[:2]]
    for step in range(1, logp.shape[-2]):
        stay, advance = alpha[..., 2:], alpha[..., 1:-1]
        jump = np.where(skip, alpha[..., :-2], -np.inf)
        alpha[..., 2:] = np.logaddexp(np.logaddexp(stay, advance), jump) + logp[..., step, path]
    return np.logaddexp(alpha[..., -1], alpha[..., -2])


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
