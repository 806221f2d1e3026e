"""Trains digit models and publishes them, versioned, to object storage.

Importing the package sets OpenCV's pixel limit: every entry point (the scandigits CLI and its
Celery workers, the benchmarks, `worker`, which imports this package first) imports it before
cv2, and OpenCV reads its limit only once, when cv2 is first imported.
"""

from __future__ import annotations

import os
import sys


def say(message: str) -> None:
    """Tell the person running a command something (progress, an error): on standard error,
    at once, so standard output stays for results."""
    print(message, file=sys.stderr, flush=True)


def _pixel_limit() -> int:
    """The most pixels one image may decode to (SCANDIGITS_MAX_PIXELS), made OpenCV's own limit
    too (OPENCV_IO_MAX_IMAGE_PIXELS) unless that is set: a file declaring more is refused
    before its pixels are allocated."""
    limit = int(os.environ.get("SCANDIGITS_MAX_PIXELS", 40_000_000))
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(limit))
    return limit


MAX_PIXELS = _pixel_limit()
