"""Sample scans: deterministic per seed, labelled, decodable, scan-sized, dark ink on paper."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer import samples

COUNT = 20


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """Thirty synthetic MNIST-style digits (white strokes on black), three per label 0-9."""
    digits = np.zeros((30, 28, 28), np.uint8)
    for i, digit in enumerate(digits):
        if i % 2:
            cv2.circle(digit, (14, 14), 5 + i % 4, 255, 2 + i % 2, cv2.LINE_AA)
        else:
            cv2.line(digit, (9 + i % 7, 4), (17 - i % 5, 23), 255, 2 + i % 3, cv2.LINE_AA)
    return digits, np.arange(30, dtype=np.uint8) % 10


def _write(folder: Path, seed: int, count: int = COUNT) -> dict[str, str]:
    """Write `count` scans of the synthetic digits into folder."""
    digits, labels = _digits()
    return samples.write_scans(folder, digits, labels, count, seed=seed)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file in folder, name -> bytes."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """COUNT scans written once for the module with seed 3."""
    folder = tmp_path_factory.mktemp("scans")
    return folder, _write(folder, seed=3)


def test_labels_and_names(scans: tuple[Path, dict[str, str]]) -> None:
    folder, mapping = scans
    assert json.loads((folder / "labels.json").read_text()) == mapping
    assert sorted(_files(folder)) == sorted([*mapping, "labels.json"])
    assert [name[:-4] for name in mapping] == [f"scan-{i:05d}" for i in range(COUNT)]
    assert {Path(name).suffix for name in mapping} == {".jpg", ".png"}
    assert all(label in "0123456789" and len(label) == 1 for label in mapping.values())
    # picked without replacement: no label more often than the three digits that carry it
    assert max(list(mapping.values()).count(label) for label in mapping.values()) <= 3


def test_same_seed_same_bytes_other_seed_differs(
    scans: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    folder, mapping = scans
    assert _write(tmp_path / "again", seed=3) == mapping
    assert _files(tmp_path / "again") == _files(folder)
    _write(tmp_path / "other", seed=4)
    other = _files(tmp_path / "other")
    assert sum(other.get(name) != data for name, data in _files(folder).items()) >= COUNT - 2


def test_files_decode_to_scan_sized_images(scans: tuple[Path, dict[str, str]]) -> None:
    folder, mapping = scans
    channels = set()
    for name in mapping:
        image = cv2.imdecode(np.fromfile(folder / name, np.uint8), cv2.IMREAD_UNCHANGED)
        assert image is not None, name
        assert image.dtype == np.uint8
        assert 200 <= image.shape[0] <= 700 and 200 <= image.shape[1] <= 700, name
        channels.add(1 if image.ndim == 2 else image.shape[2])
    assert channels == {1, 3}


def test_ink_is_darker_than_paper() -> None:
    digits, _ = _digits()
    for seed in range(12):
        image = samples.render_scan(digits[seed], np.random.default_rng(seed))
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        paper = float(np.median(gray))
        ink = float(cv2.medianBlur(gray, 3).min())  # darkest stroke pixel, sensor noise removed
        assert paper > 100 and ink < 0.75 * paper, (seed, paper, ink)


def test_render_is_deterministic_per_generator() -> None:
    digit = _digits()[0][1]
    first = samples.render_scan(digit, np.random.default_rng(7))
    assert np.array_equal(first, samples.render_scan(digit, np.random.default_rng(7)))
    other = samples.render_scan(digit, np.random.default_rng(8))
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_rewrite_drops_stale_scans(tmp_path: Path) -> None:
    _write(tmp_path, seed=1)
    mapping = _write(tmp_path, seed=1, count=5)
    assert sorted(_files(tmp_path)) == sorted([*mapping, "labels.json"])


def test_rejects_wrong_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="28x28"):
        samples.render_scan(np.zeros((20, 20), np.uint8), np.random.default_rng(0))
    digits, labels = _digits()
    with pytest.raises(ValueError, match="labels"):
        samples.write_scans(tmp_path, digits, labels[:5], 3)


FIELDS = 20


def _write_fields(folder: Path, seed: int, lengths: tuple[int, int] = (3, 8)) -> dict[str, str]:
    """Write FIELDS digit-string fields of the synthetic digits into folder."""
    digits, labels = _digits()
    return samples.write_fields(folder, digits, labels, FIELDS, seed=seed, lengths=lengths)


def _gray(path: Path) -> np.ndarray:
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint8, path
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


@pytest.fixture(scope="module")
def fields(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """FIELDS fields written once for the module with seed 5."""
    folder = tmp_path_factory.mktemp("fields")
    return folder, _write_fields(folder, seed=5)


def test_field_labels_and_names(fields: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    folder, mapping = fields
    assert json.loads((folder / "labels.json").read_text()) == mapping
    assert sorted(_files(folder)) == sorted([*mapping, "labels.json"])
    assert [name[:-4] for name in mapping] == [f"field-{i:05d}" for i in range(FIELDS)]
    assert {Path(name).suffix for name in mapping} == {".jpg", ".png"}
    assert all(label.isdigit() and 3 <= len(label) <= 8 for label in mapping.values())
    assert len({len(label) for label in mapping.values()}) >= 3
    short = _write_fields(tmp_path, seed=1, lengths=(2, 2))
    assert {len(label) for label in short.values()} == {2}


def test_fields_decode_to_wide_strips(fields: tuple[Path, dict[str, str]]) -> None:
    folder, mapping = fields
    for name in mapping:
        gray = _gray(folder / name)
        height, width = gray.shape
        assert 24 * 1.6 <= height < width, (name, gray.shape)
        paper = float(np.median(gray))
        assert paper > 100 and float(cv2.medianBlur(gray, 3).min()) < 0.75 * paper, name


def test_fields_same_seed_same_bytes(fields: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    folder, mapping = fields
    assert _write_fields(tmp_path / "again", seed=5) == mapping
    assert _files(tmp_path / "again") == _files(folder)
    other = _write_fields(tmp_path / "other", seed=6)
    assert other != mapping
    digits = _digits()[0][:4]
    first = samples.render_field(digits, np.random.default_rng(2))
    assert np.array_equal(first, samples.render_field(digits, np.random.default_rng(2)))


def _long_dark_line(gray: np.ndarray) -> bool:
    """Whether a row holds a dark run spanning over 70% of the image width."""
    dark = gray < 0.8 * float(np.median(gray))
    dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((1, 5), np.uint8))
    return bool((dark.mean(axis=1) > 0.7).any())


def test_some_fields_are_boxed_or_underlined(fields: tuple[Path, dict[str, str]]) -> None:
    folder, mapping = fields
    lined = [_long_dark_line(_gray(folder / name)) for name in mapping]
    assert 5 <= sum(lined) < FIELDS


def test_field_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="28x28"):
        samples.render_field([np.zeros((20, 20), np.uint8)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least one"):
        samples.render_field([], np.random.default_rng(0))
