"""Cutting one mark into digits: a bent cut slips between leaning digits, and a mark too narrow
for two is not cut."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from worker.reading.pieces import _path, splits


def test_bent_cut_slips_between_leaning_digits() -> None:
    mask = np.zeros((60, 80), np.uint8)
    cv2.line(mask, (10, 59), (40, 0), 1, 4)  # a stroke leaning right
    cv2.line(mask, (35, 59), (65, 0), 1, 4)  # its neighbour, leaning into its columns
    cv2.line(mask, (33, 30), (40, 30), 1, 2)  # where they touch
    path = _path(mask.astype(bool), 37, 15)
    crossed = mask[np.arange(60), path].sum()
    assert crossed <= 4 < mask[:, 37].sum()
    assert np.abs(np.diff(path)).max() <= 1


@pytest.mark.parametrize("width", range(1, 8))
def test_a_mark_too_narrow_for_two_digits_is_not_cut(width: int) -> None:
    """The marks of a field of specks are a few pixels wide: no cut, and no error."""
    for typical in (0.3, 1.0, 2.0):
        found = splits(np.ones((2, width), bool), typical)
        assert all(piece.any() for split in found for piece in split)
        assert width >= 4 or not found  # each piece at least 2 px wide
