"""Decode image bytes (PNG, JPEG, BMP, TIFF, ...) into one grayscale float32 plane in [0, 1]."""

from __future__ import annotations

import cv2
import numpy as np

JPEG_MAGIC = b"\xff\xd8\xff"


class DecodeError(ValueError):
    """The bytes are not an image this worker can read; str() is the per-image error."""


def decode(data: bytes) -> np.ndarray:
    """Return the image as 2-D float32 gray, with alpha composited over white paper."""
    if not data:
        raise DecodeError("empty file")
    # JPEGs decode straight to gray (EXIF orientation applied); others keep alpha and depth.
    flags = cv2.IMREAD_GRAYSCALE if data.startswith(JPEG_MAGIC) else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        raise DecodeError("not a readable image (expected PNG, JPEG, BMP, TIFF, WebP)")
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype, 1.0)
    image = np.clip(image.astype(np.float32) / scale, 0.0, 1.0)
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        alpha = image[:, :, 3:]
        image = image[:, :, :3] * alpha + (1.0 - alpha)
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
