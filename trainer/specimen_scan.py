"""Turn a composed field or page into a scan file: paper, the lamp's light, skew, the
scanner's optics and sensor, and the JPEG or PNG file (docs/specimens.md).

The scan half of trainer/specimens.py: everything here acts on a finished transmission layer
(1 = clear, BGR float) or on the image the scanner made of it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

PAPERS = {  # paper tints (BGR) times a reflectance
    "white": (1.0, 1.0, 1.0),
    "cream": (0.86, 0.96, 1.0),
    "grey": (0.97, 0.97, 0.97),
    "pale blue": (1.0, 0.95, 0.9),
    "pale pink": (0.93, 0.92, 1.0),
}
REFLECTANCE = (0.75, 0.97)  # of the paper: recycled grey to bright white
BLOTCH = 0.01  # the paper's slow unevenness, either way
FIBRE = 0.006  # the paper's fibre grain, standard deviation
LIGHT = 0.25  # most brightness a gradient or vignette loses
BLUR = 1.2  # most Gaussian blur sigma, px
HALF_RES = 0.2  # scans made at half resolution and scaled back up
NOISE = 10.0  # most sensor noise sigma, of 255
SPECK_SHARE = 0.1  # scans with salt-and-pepper specks
SPECKS = (0.0001, 0.001)  # of their pixels
SKEW = 2.0  # degrees a field's scan is turned, either way
JPEG_SHARE = 2 / 3  # files saved as JPEG rather than PNG
QUALITY = (35, 95)  # JPEG quality


def paper(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A sheet's reflectance (h, w, 3): its tint and brightness, slow blotches, fibre grain."""
    h, w = shape
    tint = np.array(PAPERS[list(PAPERS)[rng.integers(len(PAPERS))]], np.float32)
    grid = rng.uniform(-1, 1, (int(rng.integers(3, 9)), int(rng.integers(3, 9))))
    blotches = np.clip(
        cv2.resize(grid.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC), -1, 1
    )
    fibre = rng.standard_normal((h, w), dtype=np.float32)
    fibre = cv2.GaussianBlur(fibre, (0, 0), sigmaX=rng.uniform(1, 3), sigmaY=0.6)
    texture = 1 + BLOTCH * blotches + FIBRE * fibre / max(float(fibre.std()), 1e-6)
    return texture[..., None] * tint * np.float32(rng.uniform(*REFLECTANCE))


def light(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The scanner lamp's falloff (h, w): a linear gradient or a vignette."""
    h, w = shape
    drop = rng.uniform(0, LIGHT)
    ys, xs = np.ogrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
    if rng.random() < 0.5:
        turn = rng.uniform(0, 2 * math.pi)
        ramp = (xs * math.cos(turn) + ys * math.sin(turn) + 2) / 4 * np.ones((h, w))
    else:
        ramp = (xs - rng.uniform(-0.3, 0.3)) ** 2 + (ys - rng.uniform(-0.3, 0.3)) ** 2
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    return (1 - drop * ramp).astype(np.float32)


def scan(layer: np.ndarray, rng: np.random.Generator, colour: bool) -> np.ndarray:
    """The transmission layer on paper under the lamp, through the scanner's optics and sensor:
    uint8 BGR (h, w, 3) or, for a gray scan, (h, w)."""
    h, w = layer.shape[:2]
    image = layer * paper((h, w), rng) * light((h, w), rng)[..., None]
    image = cv2.GaussianBlur(image, (0, 0), max(0.01, rng.uniform(0, BLUR)))
    if rng.random() < HALF_RES:
        small = cv2.resize(image, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    if not colour:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    image = image * 255 + rng.standard_normal(image.shape, np.float32) * rng.uniform(0, NOISE)
    if rng.random() < SPECK_SHARE:
        count = max(1, round(h * w * rng.uniform(*SPECKS)))
        image[rng.integers(0, h, count), rng.integers(0, w, count)] = rng.choice(
            [0.0, 255.0], count
        ).reshape((count,) + (1,) * (image.ndim - 2))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def skew(layer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The layer turned by the scan's skew, on a canvas grown to hold all of it."""
    h, w = layer.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-SKEW, SKEW), 1.0)
    cos, sin = abs(turn[0, 0]), abs(turn[0, 1])
    size = (math.ceil(w * cos + h * sin), math.ceil(h * cos + w * sin))
    turn[:, 2] += ((size[0] - w) / 2, (size[1] - h) / 2)
    return cv2.warpAffine(layer, turn, size, flags=cv2.INTER_LINEAR, borderValue=(1, 1, 1))


def encode(image: np.ndarray, rng: np.random.Generator) -> tuple[str, bytes]:
    """A field's scan as a file: JPEG at a drawn quality (2 files in 3) or PNG; returns the
    extension (".jpg" or ".png") and the bytes."""
    jpeg = bool(rng.random() < JPEG_SHARE)
    quality = int(rng.integers(QUALITY[0], QUALITY[1] + 1))
    kind = ".jpg" if jpeg else ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if jpeg else []
    return kind, cv2.imencode(kind, image, params)[1].tobytes()
