"""The "not one digit" training images: touching pairs and fragments, framed like MNIST."""

from __future__ import annotations

import numpy as np

from trainer import nondigits


def test_framed_like_mnist_and_reproducible(digits) -> None:
    images = nondigits.make(digits.x_train[:500], digits.y_train[:500], 40, seed=3)
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images, nondigits.make(digits.x_train[:500], digits.y_train[:500], 40, 3))
    extents = []
    for image in images:
        ys, xs = np.nonzero(image)
        extents.append(max(np.ptp(ys), np.ptp(xs)) + 1)
        total = image.sum(dtype=np.float64)
        cx = (image.sum(axis=0) @ np.arange(28)) / total
        cy = (image.sum(axis=1) @ np.arange(28)) / total
        assert abs(cx - 14) < 1.5 and abs(cy - 14) < 1.5
    # fitted into the 20×20 box; centring the mass can push a lopsided fragment off the edge
    assert max(extents) <= 23 and np.mean([e >= 19 for e in extents]) >= 0.9


def test_pairs_are_wide_and_fragments_never_come_from_ones(digits) -> None:
    ones = digits.x_train[digits.y_train == 1][:50]
    images = nondigits.make(ones, np.ones(len(ones), np.uint8), 4, seed=0)
    for image in images:  # only ones to draw from: all are pairs, none a fragment of a 1
        ys, xs = np.nonzero(image > 25)
        assert np.ptp(xs) > 0.5 * np.ptp(ys)
    mixed = nondigits.make(digits.x_train[:300], digits.y_train[:300], 20, seed=1)
    assert mixed[::2].any()  # fragments exist even where ones are excluded
