"""Reader training lines framed from rendered scans by the worker's own segmentation."""

from __future__ import annotations

import numpy as np

from trainer import strings
from worker.reading import lines


def test_scanned_lines_are_framed_like_strings_and_reproducible(digits) -> None:
    framed, targets = lines.scanned(digits.x_train, digits.y_train, 30, seed=3)
    assert framed.shape[1:] == (strings.HEIGHT, strings.WIDTH) and framed.dtype == np.uint8
    assert 25 <= len(framed) <= 30 and targets.shape == (len(framed), strings.LONGEST)
    lengths = (targets > 0).sum(axis=1)
    assert lengths.min() >= 1 and lengths.max() <= strings.LONGEST
    assert all((row[n:] == 0).all() for row, n in zip(targets, lengths, strict=True))
    assert (framed.reshape(len(framed), -1).max(axis=1) > 128).all()
    again, same = lines.scanned(digits.x_train, digits.y_train, 30, seed=3)
    assert np.array_equal(again, framed) and np.array_equal(same, targets)
