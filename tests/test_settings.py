"""Settings from the environment: each variable's default when it is unset, its value when set,
and a bad value is one line naming the variable and what it must be, for any command."""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import cli
from trainer.errors import UserError
from worker.settings import Settings


def test_defaults() -> None:
    assert Settings.from_env({}) == Settings(
        max_bytes=50_000_000,
        max_pixels=40_000_000,
        max_pages=200,
        pdf_dpi=200.0,
        max_members=10_000,
        max_archive_bytes=2_000_000_000,
        watch_lease=60.0,
        metrics_host="0.0.0.0",
        trusted_models=None,
        api_requests_per_minute=600,
        api_bytes_per_minute=2 * 1024**3,
        webhook_backoff=10.0,
        webhook_hours=24.0,
        webhook_private=False,
        retain_inputs_days=None,
        retain_batches_days=None,
    )
    assert Settings.from_env({"SCANDIGITS_TRUSTED_MODELS": " "}).trusted_models is None
    assert Settings.from_env({"SCANDIGITS_RETAIN_INPUTS_DAYS": ""}).retain_inputs_days is None


def test_values() -> None:
    environ = {
        "SCANDIGITS_MAX_BYTES": "1000",
        "SCANDIGITS_MAX_PIXELS": "2_000_000",
        "SCANDIGITS_MAX_PAGES": " 3 ",
        "SCANDIGITS_PDF_DPI": "144.5",
        "SCANDIGITS_MAX_MEMBERS": "5",
        "SCANDIGITS_MAX_ARCHIVE_BYTES": "6000",
        "SCANDIGITS_WATCH_LEASE": "2",
        "SCANDIGITS_METRICS_HOST": " ::1 ",
        "SCANDIGITS_TRUSTED_MODELS": f" {'A' * 64} , {'b' * 64}",
        "SCANDIGITS_API_REQUESTS_PER_MINUTE": "0",
        "SCANDIGITS_API_BYTES_PER_MINUTE": "1_000_000",
        "SCANDIGITS_WEBHOOK_BACKOFF": "0.5",
        "SCANDIGITS_WEBHOOK_HOURS": "2",
        "SCANDIGITS_WEBHOOK_PRIVATE": "Yes",
        "SCANDIGITS_RETAIN_INPUTS_DAYS": "7",
        "SCANDIGITS_RETAIN_BATCHES_DAYS": "0.5",
    }
    assert Settings.from_env(environ) == Settings(
        max_bytes=1000,
        max_pixels=2_000_000,
        max_pages=3,
        pdf_dpi=144.5,
        max_members=5,
        max_archive_bytes=6000,
        watch_lease=2.0,
        metrics_host="::1",
        trusted_models=frozenset({"a" * 64, "b" * 64}),
        api_requests_per_minute=0,
        api_bytes_per_minute=1_000_000,
        webhook_backoff=0.5,
        webhook_hours=2.0,
        webhook_private=True,
        retain_inputs_days=7.0,
        retain_batches_days=0.5,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().max_pages = 1


@pytest.mark.parametrize(
    ("name", "value", "must_be"),
    [
        ("SCANDIGITS_MAX_BYTES", "50MB", "a whole number of bytes over 0"),
        ("SCANDIGITS_MAX_BYTES", "0", "a whole number of bytes over 0"),
        ("SCANDIGITS_MAX_PIXELS", "4e7", "a whole number of pixels over 0"),
        ("SCANDIGITS_MAX_PAGES", "200pages", "a whole number of pages over 0"),
        ("SCANDIGITS_MAX_PAGES", "-1", "a whole number of pages over 0"),
        ("SCANDIGITS_PDF_DPI", "high", "a number of dots per inch over 0"),
        ("SCANDIGITS_PDF_DPI", "nan", "a number of dots per inch over 0"),
        ("SCANDIGITS_MAX_MEMBERS", "", "a whole number of entries over 0"),
        ("SCANDIGITS_MAX_ARCHIVE_BYTES", "2GB", "a whole number of bytes over 0"),
        ("SCANDIGITS_WATCH_LEASE", "0", "a number of seconds over 0"),
        ("SCANDIGITS_WATCH_LEASE", "inf", "a number of seconds over 0"),
        ("SCANDIGITS_METRICS_HOST", "all", "an IP address to listen on"),
        ("SCANDIGITS_METRICS_HOST", "10.0.0.256", "an IP address to listen on"),
        ("SCANDIGITS_METRICS_HOST", "localhost:9100", "an IP address to listen on"),
        ("SCANDIGITS_TRUSTED_MODELS", "abc", "sha256 digests (64 hex digits)"),
        ("SCANDIGITS_TRUSTED_MODELS", "g" * 64, "sha256 digests (64 hex digits)"),
        ("SCANDIGITS_TRUSTED_MODELS", ",", "sha256 digests (64 hex digits)"),
        ("SCANDIGITS_TRUSTED_MODELS", f"{'0' * 64};{'1' * 64}", "sha256 digests (64 hex digits)"),
        ("SCANDIGITS_API_REQUESTS_PER_MINUTE", "-1", "a whole number of requests a minute"),
        ("SCANDIGITS_API_REQUESTS_PER_MINUTE", "10/s", "a whole number of requests a minute"),
        ("SCANDIGITS_API_BYTES_PER_MINUTE", "2GiB", "a whole number of bytes a minute"),
        ("SCANDIGITS_API_BYTES_PER_MINUTE", "", "a whole number of bytes a minute"),
        ("SCANDIGITS_WEBHOOK_BACKOFF", "10s", "a number of seconds over 0"),
        ("SCANDIGITS_WEBHOOK_HOURS", "0", "a number of hours over 0"),
        ("SCANDIGITS_WEBHOOK_PRIVATE", "on", "1 or 0"),
        ("SCANDIGITS_RETAIN_INPUTS_DAYS", "a week", "a number of days over 0"),
        ("SCANDIGITS_RETAIN_BATCHES_DAYS", "-3", "a number of days over 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str, must_be: str) -> None:
    with pytest.raises(UserError) as raised:
        Settings.from_env({name: value})
    message = str(raised.value)
    assert message.startswith(f"{name} must be {must_be}") and "\n" not in message


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("name", "value", "args"),
    [
        ("SCANDIGITS_MAX_PAGES", "200pages", ["predict", "x.png"]),
        ("SCANDIGITS_MAX_PIXELS", "40M", ["worker"]),  # trainer reads it too, as it is imported
    ],
)
def test_a_command_stops_at_a_bad_value_in_one_line(name: str, value: str, args: list[str]):
    result = cli(*args, env={name: value})
    assert result.returncode == 2
    assert result.stderr.endswith(f" over 0, not {value!r}\n")
    assert result.stderr.startswith(f"error: {name} must be a whole number of ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
