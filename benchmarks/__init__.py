"""Benchmarks: each script prints a table and saves the same numbers as JSON."""

from __future__ import annotations

import sys
from collections.abc import Callable

from trainer.errors import UserError


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's `main`; a user's mistake (no MNIST, no model, a bad store URL) ends it
    with one line on stderr, as the CLI does, not a traceback."""
    try:
        main()
    except UserError as exc:
        sys.exit(f"error: {exc}")
