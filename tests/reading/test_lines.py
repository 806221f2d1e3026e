"""Training data cut from rendered scans by the worker's own segmentation: framed lines for the
string reader, and pieces with their digits for the classifier."""

from __future__ import annotations

from collections import Counter

import numpy as np

from trainer import strings
from worker.reading import lines


def test_scanned_fields_are_framed_like_strings_and_reproducible(digits) -> None:
    scans = lines.scanned(digits.x_train, digits.y_train, 30, seed=3)
    framed, targets = scans.lines, scans.targets
    assert framed.shape[1:] == (strings.HEIGHT, strings.WIDTH) and framed.dtype == np.uint8
    assert 25 <= len(framed) <= 30 and targets.shape == (len(framed), strings.LONGEST)
    lengths = (targets > 0).sum(axis=1)
    assert lengths.min() >= 1 and lengths.max() <= strings.LONGEST
    assert all((row[n:] == 0).all() for row, n in zip(targets, lengths, strict=True))
    assert (framed.reshape(len(framed), -1).max(axis=1) > 128).all()
    again = lines.scanned(digits.x_train, digits.y_train, 30, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, scans, strict=True))


def test_pieces_are_cut_one_per_digit_of_the_fields_whose_runs_pair_with_them(digits) -> None:
    scans = lines.scanned(digits.x_train, digits.y_train, 60, seed=5)
    assert scans.pieces.shape[1:] == (28, 28) and scans.pieces.dtype == np.uint8
    assert len(scans.pieces) == len(scans.digits) > 0.3 * (scans.targets > 0).sum()
    assert set(scans.digits.tolist()) <= set(range(10))
    assert (scans.pieces.reshape(len(scans.pieces), -1).max(axis=1) > 0).all(), "no blank piece"
    written = Counter(d - 1 for row in scans.targets.tolist() for d in row if d)
    assert Counter(scans.digits.tolist()) <= written, "each piece is one digit written"
