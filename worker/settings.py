"""The limits and knobs read from the environment: one frozen Settings, read and checked once.

`current()` is the process's Settings, read on first use. Every `scandigits` command reads it
as it starts, so a bad value is one line naming the variable and what it must be (exit code 2)
before any work is done, and a worker's pool processes inherit it. The code that enforces an
input limit or the trusted models takes them from `current()` (passing them down would thread
them through every layer of submitting and reading); a command passes what one call of its
own needs, the watch lease, the metrics address and the API's rate limits, explicitly.

SCANDIGITS_MAX_PIXELS is read by `trainer`, which must set OpenCV's limit from it before cv2
is imported (and never imports `worker`); it is checked here with the rest. The variables that
set a command's option (SCANDIGITS_STORE, SCANDIGITS_BROKER_URL, ...) are read by the option.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from trainer import DEFAULT_MAX_PIXELS, pixel_limit, whole_number
from trainer.errors import UserError


@dataclass(frozen=True)
class Settings:
    """Each setting, with its default when its variable is unset."""

    max_bytes: int = 50_000_000  # SCANDIGITS_MAX_BYTES: a larger input file is refused
    # SCANDIGITS_MAX_PIXELS: an image or PDF page of more is refused before it is decoded
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_pages: int = 200  # SCANDIGITS_MAX_PAGES: a PDF or TIFF of more pages is refused
    pdf_dpi: float = 200.0  # SCANDIGITS_PDF_DPI: the resolution PDF pages are rendered at
    max_members: int = 10_000  # SCANDIGITS_MAX_MEMBERS: an archive of more entries is refused
    # SCANDIGITS_MAX_ARCHIVE_BYTES: an archive whose images unpack to more is refused
    max_archive_bytes: int = 2_000_000_000
    # SCANDIGITS_WATCH_LEASE: seconds a group stays with a watcher that stopped renewing its lease
    watch_lease: float = 60.0
    # SCANDIGITS_METRICS_HOST: the IP address a worker's /metrics listens on (default: all IPv4)
    metrics_host: str = "0.0.0.0"
    # SCANDIGITS_TRUSTED_MODELS: the sha256 digests of the only models a process may load;
    # None (unset or empty): any model the registry verifies
    trusted_models: frozenset[str] | None = None
    # SCANDIGITS_API_REQUESTS_PER_MINUTE: requests one API token may make a minute; 0: no limit
    api_requests_per_minute: int = 600
    # SCANDIGITS_API_BYTES_PER_MINUTE: bytes one API token may upload a minute; 0: no limit
    api_bytes_per_minute: int = 2 * 1024**3
    # SCANDIGITS_WEBHOOK_BACKOFF: seconds before a failed webhook is sent again, doubling each time
    webhook_backoff: float = 10.0
    webhook_hours: float = 24.0  # SCANDIGITS_WEBHOOK_HOURS: hours a webhook is retried, at least
    # SCANDIGITS_WEBHOOK_PRIVATE: 1 to send webhooks to private, loopback and link-local addresses
    webhook_private: bool = False
    # SCANDIGITS_RETAIN_INPUTS_DAYS, SCANDIGITS_RETAIN_BATCHES_DAYS: days after a batch finished
    # that its uploaded inputs, and the whole batch, are deleted; None (unset): kept
    retain_inputs_days: float | None = None
    retain_batches_days: float | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The settings `environ` holds; a value that is not what its variable must be is a
        UserError that names the variable and says what it must be, in one line."""
        return cls(
            max_bytes=whole_number(environ, "SCANDIGITS_MAX_BYTES", "bytes", cls.max_bytes),
            max_pixels=pixel_limit(environ),
            max_pages=whole_number(environ, "SCANDIGITS_MAX_PAGES", "pages", cls.max_pages),
            pdf_dpi=_number(environ, "SCANDIGITS_PDF_DPI", "dots per inch", cls.pdf_dpi),
            max_members=whole_number(environ, "SCANDIGITS_MAX_MEMBERS", "entries", cls.max_members),
            max_archive_bytes=whole_number(
                environ, "SCANDIGITS_MAX_ARCHIVE_BYTES", "bytes", cls.max_archive_bytes
            ),
            watch_lease=_number(environ, "SCANDIGITS_WATCH_LEASE", "seconds", cls.watch_lease),
            metrics_host=_address(environ, "SCANDIGITS_METRICS_HOST", cls.metrics_host),
            trusted_models=_digests(environ, "SCANDIGITS_TRUSTED_MODELS"),
            api_requests_per_minute=whole_number(
                environ,
                "SCANDIGITS_API_REQUESTS_PER_MINUTE",
                "requests a minute",
                cls.api_requests_per_minute,
                unlimited=True,
            ),
            api_bytes_per_minute=whole_number(
                environ,
                "SCANDIGITS_API_BYTES_PER_MINUTE",
                "bytes a minute",
                cls.api_bytes_per_minute,
                unlimited=True,
            ),
            webhook_backoff=_number(
                environ, "SCANDIGITS_WEBHOOK_BACKOFF", "seconds", cls.webhook_backoff
            ),
            webhook_hours=_number(environ, "SCANDIGITS_WEBHOOK_HOURS", "hours", cls.webhook_hours),
            webhook_private=_flag(environ, "SCANDIGITS_WEBHOOK_PRIVATE"),
            retain_inputs_days=_days(environ, "SCANDIGITS_RETAIN_INPUTS_DAYS"),
            retain_batches_days=_days(environ, "SCANDIGITS_RETAIN_BATCHES_DAYS"),
        )


@cache
def current() -> Settings:
    """This process's settings, read from its environment the first time they are asked for."""
    return Settings.from_env()


def _number(environ: Mapping[str, str], name: str, unit: str, default: float) -> float:
    value = environ.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise UserError(f"{name} must be a number of {unit} over 0, not {value!r}")
    return number


def _days(environ: Mapping[str, str], name: str) -> float | None:
    """A number of days over 0, or None when unset or empty."""
    if not environ.get(name, "").strip():
        return None
    return _number(environ, name, "days", 0.0)


def _flag(environ: Mapping[str, str], name: str) -> bool:
    """1, true or yes; 0, false, no or unset."""
    value = environ.get(name, "0").strip().lower()
    if value not in ("1", "true", "yes", "0", "false", "no", ""):
        raise UserError(f"{name} must be 1 or 0, not {value!r}")
    return value in ("1", "true", "yes")


def _address(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, default).strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise UserError(
            f"{name} must be an IP address to listen on (such as 0.0.0.0, 127.0.0.1 or ::), "
            f"not {value!r}"
        ) from None


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _digests(environ: Mapping[str, str], name: str) -> frozenset[str] | None:
    """sha256 digests separated by commas, in any case, spaces around them ignored."""
    value = environ.get(name, "").strip()
    if not value:
        return None
    digests = [d.strip().lower() for d in value.split(",")]
    bad = next((d for d in digests if not _SHA256.fullmatch(d)), None)
    if bad is not None:
        raise UserError(
            f"{name} must be sha256 digests (64 hex digits) separated by commas, not {bad[:80]!r}"
        )
    return frozenset(digests)
