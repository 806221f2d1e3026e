"""Training images that are not one digit, framed the way MNIST frames a digit.

A classifier that has only seen single digits reads two touching digits, or half of one, as
some digit with high confidence, so it cannot tell a segmenter which cut is right. Models
trained with these images as an eleventh class (`models.NOT_A_DIGIT`) can: a good cut yields
pieces it calls digits.
"""

from __future__ import annotations

import cv2
import numpy as np

from trainer import mnist


def make(digits: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """`count` 28×28 uint8 images built from MNIST `digits`: half are two digits side by side
    (apart, touching or overlapping), half are the left or right part of a digit other than 1
    (what a wrong cut leaves), never so narrow that it is a 1 itself."""
    rng = np.random.default_rng(seed)
    wide = np.flatnonzero(labels != 1)
    out = np.empty((count, 28, 28), np.uint8)
    for n in range(count):
        pair = n % 2 or not wide.size
        if pair:
            first, second = (mnist.crop(digits[i]) for i in rng.integers(len(digits), size=2))
            gap = int(rng.integers(-min(first.shape[1], second.shape[1]) // 2, 3))
            image = _side_by_side(first, second, gap)
        else:
            image = _fragment(mnist.crop(digits[rng.choice(wide)]), rng)
        framed = mnist.frame(image.astype(np.float32))
        # scaled down, strokes got thinner than MNIST's; the worker's pieces are not
        framed = cv2.dilate(framed, np.ones((2, 2), np.uint8)) if pair else framed
        out[n] = np.round(framed * 255).clip(0, 255).astype(np.uint8)
    return out


def _side_by_side(left: np.ndarray, right: np.ndarray, gap: int) -> np.ndarray:
    """Two digits on one baseline, `gap` columns apart (negative: overlapping)."""
    height = max(left.shape[0], right.shape[0])
    width = max(left.shape[1] + gap + right.shape[1], left.shape[1])
    canvas = np.zeros((height, width), np.uint8)
    canvas[height - left.shape[0] :, : left.shape[1]] = left
    x = left.shape[1] + gap
    view = canvas[height - right.shape[0] :, x : x + right.shape[1]]
    np.maximum(view, right[:, : view.shape[1]], out=view)
    return canvas


def _fragment(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The left or right 30-65% of a digit's columns, at least 0.35 as wide as tall."""
    h, w = digit.shape
    width = max(round(0.35 * h), round(w * rng.uniform(0.3, 0.65)))
    part = digit[:, :width] if rng.random() < 0.5 else digit[:, max(0, w - width) :]
    return mnist.crop(part) if part.max() > mnist.INK else part
