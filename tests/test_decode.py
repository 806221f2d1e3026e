"""Decoding of common formats, depths and alpha into one gray plane; junk is a DecodeError."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from worker.decode import DecodeError, decode


def encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


GRAY = np.full((40, 60), 200, np.uint8)
GRAY[10:30, 20:25] = 20


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp", ".pgm"])
def test_formats(ext: str) -> None:
    out = decode(encode(GRAY, ext))
    assert out.shape == (40, 60) and out.dtype == np.float32
    assert out[20, 22] < 0.2 and out[5, 5] > 0.7


def test_colour_sixteen_bit_and_alpha() -> None:
    colour = cv2.cvtColor(GRAY, cv2.COLOR_GRAY2BGR)
    assert decode(encode(colour, ".jpg"))[20, 22] < 0.2
    deep = GRAY.astype(np.uint16) * 257
    assert decode(encode(deep, ".png"))[5, 5] == pytest.approx(200 / 255, abs=0.01)
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[10:30, 20:25, 3] = 255
    out = decode(encode(rgba, ".png"))
    assert out[5, 5] == 1.0 and out[20, 22] == 0.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"<html></html>", "not a readable image"),
        (encode(GRAY, ".png")[:60], "not a readable image"),
        (bytes(range(256)) * 4, "not a readable"),
    ],
)
def test_junk(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(data)
