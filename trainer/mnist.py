"""Load MNIST from a folder of IDX gz files, a keras-style mnist.npz, or the keras download."""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.errors import DataError

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
HINT = (
    "pass --data DIR (the four MNIST IDX .gz files) or --data mnist.npz, "
    "or set SCANDIGITS_MNIST_DIR"
)


@dataclass(frozen=True)
class Mnist:
    """The four MNIST arrays: images uint8 (N, 28, 28), labels uint8 (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def fingerprint(self) -> str:
        """sha256 over the four arrays, so a model records exactly what it was trained on."""
        return sha256(getattr(self, name) for name in FILES)


def sha256(arrays: Iterable[np.ndarray]) -> str:
    """The hex sha256 over the bytes of `arrays`, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def load(source: str | Path | None) -> Mnist:
    """Load from a folder or .npz path; with no source, use the standard keras download."""
    if source is None or str(source) == "":
        return _download()
    path = Path(source).expanduser()
    if path.is_dir():
        return _check(Mnist(**{name: _read_idx(path, stem) for name, stem in FILES.items()}), path)
    if path.is_file():
        return _check(_read_npz(path), path)
    raise DataError(f"MNIST not found at {path}; {HINT}")


def _read_idx(folder: Path, stem: str) -> np.ndarray:
    """Parse one IDX file (gz or raw): magic, dims, then uint8 payload of exactly that size."""
    for name, opener in ((f"{stem}.gz", gzip.open), (stem, open)):
        if (folder / name).is_file():
            try:
                with opener(folder / name, "rb") as fh:
                    raw = fh.read()
            except (OSError, EOFError, zlib.error) as exc:
                raise DataError(f"{folder / name} is corrupt or truncated ({exc}); {HINT}") from exc
            break
    else:
        raise DataError(f"{folder} has no {stem}.gz; {HINT}")
    if len(raw) < 8:
        raise DataError(f"{folder / name} is truncated; {HINT}")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise DataError(f"{folder / name} is not an IDX uint8 file; {HINT}")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{folder / name} is truncated or has extra bytes; {HINT}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _read_npz(path: Path) -> Mnist:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return Mnist(**{name: np.asarray(npz[name]) for name in FILES})
    except (OSError, ValueError, KeyError, zlib.error, EOFError) as exc:
        raise DataError(f"{path} is not a keras-style mnist.npz ({exc}); {HINT}") from exc


def _download() -> Mnist:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"could not download MNIST ({reason}); {HINT}") from exc
    return _check(Mnist(x_train, y_train, x_test, y_test), "the keras download")


def _check(data: Mnist, origin: object) -> Mnist:
    """Reject arrays that are not MNIST-shaped, so training never starts on garbage."""
    for images, labels in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise DataError(f"{origin}: expected N×28×28 images with N labels; {HINT}")
        if images.dtype != np.uint8 or labels.size == 0 or labels.max() > 9:
            raise DataError(f"{origin}: expected uint8 images and labels 0-9; {HINT}")
    return data


INK = 25  # an MNIST pixel above this (a tenth of full scale) is ink, not anti-aliasing


def crop(digit: np.ndarray) -> np.ndarray:
    """An MNIST-style uint8 image cropped to its ink (pixels above INK)."""
    ys, xs = np.nonzero(digit > INK)
    return digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def frame(ink: np.ndarray) -> np.ndarray:
    """MNIST's own recipe for one digit's cropped ink (float, bright on black): fit it into a
    20×20 box keeping its aspect ratio, then place it in 28×28 with its centre of mass centred;
    returns float32 in [0, 1]."""
    import cv2

    h, w = ink.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = cv2.resize(ink.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    digit /= max(float(digit.max()), 1e-6)
    total = float(digit.sum())
    cx = float(digit.sum(axis=0) @ np.arange(size[0])) / total
    cy = float(digit.sum(axis=1) @ np.arange(size[1])) / total
    shift = np.float32([[1, 0, 14 - cx], [0, 1, 14 - cy]])
    return cv2.warpAffine(digit, shift, (28, 28), flags=cv2.INTER_LINEAR)
