"""Trains digit models and publishes them, versioned, to object storage.

Importing the package sets OpenCV's pixel limit: every entry point (the scandigits CLI and its
Celery workers, the benchmarks, `worker`, which imports this package first) imports it before
cv2, and OpenCV reads its limit only once, when cv2 is first imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from trainer.errors import UserError

DEFAULT_MAX_PIXELS = 40_000_000


def say(message: str) -> None:
    """Tell the person running a command something (progress, an error): on standard error,
    at once, so standard output stays for results."""
    print(message, file=sys.stderr, flush=True)


def whole_number(
    environ: Mapping[str, str], name: str, unit: str, default: int, unlimited: bool = False
) -> int:
    """The whole number over 0 the variable `name` holds (`default` when unset), or 0 too if
    `unlimited` (0: no limit); any other value is a UserError naming the variable and what it
    must be."""
    value = environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < (0 if unlimited else 1):
        must = f"{unit} (0: no limit)" if unlimited else f"{unit} over 0"
        raise UserError(f"{name} must be a whole number of {must}, not {value!r}")
    return number


def pixel_limit(environ: Mapping[str, str] = os.environ) -> int:
    """The most pixels one image may decode to: SCANDIGITS_MAX_PIXELS (default 40 million)."""
    return whole_number(environ, "SCANDIGITS_MAX_PIXELS", "pixels", DEFAULT_MAX_PIXELS)


def _limit_opencv() -> None:
    """Make the pixel limit OpenCV's own too (OPENCV_IO_MAX_IMAGE_PIXELS) unless that is set: a
    file declaring more is refused before its pixels are allocated. A bad value leaves OpenCV
    at the default, and is refused in one line as the command starts (worker.settings)."""
    try:
        limit = pixel_limit()
    except UserError:
        limit = DEFAULT_MAX_PIXELS
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(limit))


_limit_opencv()
