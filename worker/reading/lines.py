"""Training data as the worker will see it: digits rendered as scanned fields of every print
style and spacing (trainer/varied.py), encoded, decoded and cut by the worker's own
segmentation, so the models learn its artefacts (mended box lines, tick stubs, blur, restroked
pens) too. The whole line of each field trains the string reader; where the segmenter finds as
many runs of ink as there are digits, each run's framed piece trains the classifier."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from trainer import samples, strings, varied
from trainer.errors import NoInkError
from trainer.train import Scans
from worker.reading import inference
from worker.reading.decode import decode_colour, writing
from worker.reading.segment import segment


def scanned(digits: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> Scans:
    """Up to `count` framed lines (uint8, strings.HEIGHT×WIDTH) of 1 to strings.LONGEST MNIST
    `digits` rendered as field scans, and their labels as strings.make gives them; the few
    fields the segmenter finds no ink in are left out. With them, the pieces the segmenter
    cut of those fields whose runs pair one to one with their digits (uint8, 28×28), and
    those digits. Rendered on every core, in fresh processes: a fork would inherit
    TensorFlow's locks mid-training and hang."""
    processes = min(inference.cpu_limit(), max(1, count // 100))
    seeds = np.random.SeedSequence(seed).spawn(processes)
    shares = [count // processes + (k < count % processes) for k in range(processes)]
    with ProcessPoolExecutor(processes, multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_scanned, [digits] * processes, [labels] * processes, shares, seeds))
    return Scans(*(np.concatenate([p[k] for p in parts]) for k in range(len(Scans._fields))))


def _scanned(
    digits: np.ndarray, labels: np.ndarray, count: int, seed: np.random.SeedSequence
) -> Scans:
    cv2.setNumThreads(1)
    rng = np.random.default_rng(seed)
    lines = np.zeros((count, strings.HEIGHT, strings.WIDTH), np.uint8)
    targets = np.zeros((count, strings.LONGEST), np.int32)
    kept = np.zeros(count, bool)
    pieces: list[np.ndarray] = []
    read: list[int] = []
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
        if len(field.runs) == length and not field.left_out and not field.unread:
            for run, label in zip(field.runs, labels[chosen], strict=True):
                image = run.whole(run.marks[0], run.marks[-1]).image
                if not image.any():  # its ink all taken for print: no digit to learn
                    continue
                pieces.append(np.round(image * 255).astype(np.uint8))
                read.append(int(label))
    cut = np.array(pieces, np.uint8).reshape(-1, 28, 28)
    return Scans(lines[kept], targets[kept], cut, np.array(read, np.uint8))
