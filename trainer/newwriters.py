"""Digits by writers outside MNIST (USPS, UCI optdigits, Semeion), framed the way MNIST frames
a digit, and split into a part the models adapt on and a part only ever measured on.

The folder holds one sub-folder per set, each with a `digits.npz` (`images`: uint8, ink 255 on
0, at the set's own resolution; `labels`: uint8 0-9). The splits keep writers apart where the
set's order shows them: Semeion is stored writer block by writer block, so its measured part
starts at a block; the optdigits validation file (the training file's writers, other samples)
is measured whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from trainer import mnist
from trainer.errors import UserError

# set: (the share of it adapted on, from its start; the rest is measured)
SPLITS = {"usps_train": 0.7, "optdigits_tra": 1.0, "optdigits_cv": 0.0, "semeion": 0.6}
UPSCALE = 4  # small binary or grey images are smoothed at this scale before framing
INK = 0.25  # a pixel above this share of the image's brightest is ink, for the crop


@dataclass(frozen=True)
class Writers:
    """The framed digits (uint8 N×28×28, MNIST-style) and labels: adapted on, and measured."""

    x_adapt: np.ndarray
    y_adapt: np.ndarray
    x_measure: np.ndarray
    y_measure: np.ndarray

    @property
    def fingerprint(self) -> str:
        """sha256 over the adapted part, so a model records what it was adapted on."""
        return mnist.sha256((self.x_adapt, self.y_adapt))


def load(folder: str | Path) -> Writers:
    """Every set in `folder`, framed MNIST-style and split (SPLITS)."""
    parts: dict[str, list[np.ndarray]] = {"xa": [], "ya": [], "xm": [], "ym": []}
    for name, share in SPLITS.items():
        path = Path(folder) / name / "digits.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                images, labels = np.asarray(data["images"]), np.asarray(data["labels"])
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: not a digits.npz of images and labels ({exc})") from exc
        if images.ndim != 3 or len(images) != len(labels) or labels.max(initial=0) > 9:
            raise UserError(f"{path}: expected N×H×W uint8 images with N labels 0-9")
        cut = _cut(labels, share) if name == "semeion" else round(share * len(labels))
        framed = np.stack([frame(image) for image in images])
        parts["xa"].append(framed[:cut])
        parts["ya"].append(labels[:cut])
        parts["xm"].append(framed[cut:])
        parts["ym"].append(labels[cut:])
    return Writers(*(np.concatenate(parts[k]) for k in ("xa", "ya", "xm", "ym")))


def frame(image: np.ndarray) -> np.ndarray:
    """One digit (ink bright on dark, any size, binary or grey) as a 28×28 uint8 MNIST digit:
    smoothed, cropped to its ink, fitted into 20×20 and centred by mass."""
    big = cv2.resize(
        image.astype(np.float32) / 255.0,
        None,
        fx=UPSCALE,
        fy=UPSCALE,
        interpolation=cv2.INTER_LINEAR,
    )
    big = cv2.GaussianBlur(big, (0, 0), 0.5 * UPSCALE)
    ys, xs = np.nonzero(big > INK * big.max())
    if not len(ys):
        return np.zeros((28, 28), np.uint8)
    ink = big[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return np.round(mnist.frame(ink) * 255).astype(np.uint8)


def _cut(labels: np.ndarray, share: float) -> int:
    """Where a set stored writer by writer (each writing 0-9 in turn) starts a new writer's
    block at or after `share` of it: the first 9 followed by a 0 from there."""
    start = round(share * len(labels))
    turns = np.flatnonzero((labels[start - 1 : -1] == 9) & (labels[start:] == 0))
    return start + int(turns[0]) if len(turns) else start
