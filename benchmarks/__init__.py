"""Benchmarks: each script prints a table and saves the same numbers as JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.errors import UserError


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's `main`; a user's mistake (no MNIST, no model, a bad store URL) ends it
    with one line on stderr, as the CLI does, not a traceback."""
    try:
        main()
    except UserError as exc:
        sys.exit(f"error: {exc}")


def save(report: dict[str, Any], out: Path) -> None:
    """Save a benchmark's numbers as JSON to `out` (its folder made if need be), and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"saved {out}", file=sys.stderr)
