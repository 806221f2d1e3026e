"""Training lines for the string reader as it will see them: digits rendered as scanned fields
of every print style and spacing (trainer/varied.py), encoded, decoded and framed by the
worker's own segmentation, so the reader learns the framing's artefacts (mended box lines,
tick stubs, blur, restroked pens) too."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from trainer import samples, strings, varied
from trainer.errors import NoInkError
from worker.reading import inference
from worker.reading.decode import decode_colour, writing
from worker.reading.segment import segment


def scanned(
    digits: np.ndarray, labels: np.ndarray, count: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `count` framed lines (uint8, strings.HEIGHT×WIDTH) of 1 to strings.LONGEST MNIST
    `digits` rendered as field scans, and their labels as strings.make gives them; the few
    fields the segmenter finds no ink in are left out. Rendered on every core, in fresh
    processes: a fork would inherit TensorFlow's locks mid-training and hang."""
    processes = min(inference.cpu_limit(), max(1, count // 100))
    seeds = np.random.SeedSequence(seed).spawn(processes)
    shares = [count // processes + (k < count % processes) for k in range(processes)]
    with ProcessPoolExecutor(processes, multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_scanned, [digits] * processes, [labels] * processes, shares, seeds))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _scanned(
    digits: np.ndarray, labels: np.ndarray, count: int, seed: np.random.SeedSequence
) -> tuple[np.ndarray, np.ndarray]:
    cv2.setNumThreads(1)
    rng = np.random.default_rng(seed)
    lines = np.zeros((count, strings.HEIGHT, strings.WIDTH), np.uint8)
    targets = np.zeros((count, strings.LONGEST), np.int32)
    kept = np.zeros(count, bool)
    lengths = strings.lengths(count, rng)
    for n, (length, child) in enumerate(zip(lengths, rng.spawn(count), strict=True)):
        chosen = child.integers(len(digits), size=length)
        data = samples.encode(varied.render([digits[i] for i in chosen], child), child)[1]
        try:
            gray, colour, reduced = decode_colour(data)
            field = segment(writing(gray, colour), reduced)
        except NoInkError:
            continue
        lines[n] = np.round(field.line * 255).astype(np.uint8)
        targets[n, :length] = labels[chosen] + 1
        kept[n] = True
    return lines[kept], targets[kept]
