"""Lines of digits for the string reader: framing, training lines, and the CTC arithmetic
(best-path reading and the likelihood of a string)."""

from __future__ import annotations

import itertools

import numpy as np

from trainer import strings


def test_frame_scales_the_typical_digit_and_squeezes_long_lines() -> None:
    ink = np.ones((50, 100), np.float32)
    framed, across = strings.frame(ink, height=50)
    rows, cols = np.nonzero(framed > 0.5)
    assert framed.shape == (strings.HEIGHT, strings.WIDTH)
    assert np.ptp(rows) + 1 == strings.DIGIT and cols.min() == 2 and across == 0.4
    long_line, across = strings.frame(np.ones((50, 2000), np.float32), height=50)
    assert np.nonzero(long_line.max(axis=0))[0].max() < strings.WIDTH and across < 0.4


def test_training_lines_hold_their_labels(digits) -> None:
    lines, targets = strings.make(digits.x_train, digits.y_train, 50, seed=1)
    assert lines.shape == (50, strings.HEIGHT, strings.WIDTH) and lines.dtype == np.uint8
    lengths = (targets > 0).sum(axis=1)
    assert lengths.min() >= 1 and lengths.max() <= strings.LONGEST
    # digits first, then blank padding; every line has ink
    assert all(
        (row[:n] > 0).all() and (row[n:] == 0).all()
        for row, n in zip(targets, lengths, strict=True)
    )
    assert (lines.reshape(50, -1).max(axis=1) > 200).all()


def spelled(path: list[int]) -> np.ndarray:
    logits = np.full((len(path), 11), -10.0, np.float32)
    logits[np.arange(len(path)), path] = 10.0
    return logits


def test_best_path_merges_repeats_but_not_across_a_blank() -> None:
    read = strings.decode(spelled([0, 2, 2, 0, 2, 0, 8, 0]))
    assert [digit for digit, _, _ in read] == [1, 1, 7]
    assert read[0][1] == (1 * strings.STEP, 3 * strings.STEP) and read[0][2] > 0.99


def test_likelihood_sums_every_alignment() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 11)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    def collapse(path: tuple[int, ...]) -> str:
        kept = [k for k, _ in itertools.groupby(path) if k]
        return "".join(str(k - 1) for k in kept)

    for text in ("", "3", "33", "31", "313"):
        total = sum(
            np.prod(probs[np.arange(4), path])
            for path in itertools.product(range(11), repeat=4)
            if collapse(path) == text
        )
        assert np.isclose(strings.likelihood(logits, text), np.log(total), atol=1e-4)
