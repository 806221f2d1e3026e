"""A batch driven as a user drives it, through the `scandigits` CLI: submit, status, results."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.conftest import cli
from trainer.storage import Store


def status(batch: str, env: dict[str, str]) -> dict:
    """`scandigits status`, parsed."""
    result = cli("status", batch, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_done(batch: str, env: dict[str, str], why: str) -> None:
    """Poll the status until the batch is done; fail with `why` after two minutes."""
    deadline = time.monotonic() + 120
    while status(batch, env)["state"] != "done":
        assert time.monotonic() < deadline, why
        time.sleep(0.5)


def submit(paths: list[str], env: dict[str, str], *options: str) -> str:
    """`scandigits submit`; the batch id."""
    submitted = cli("submit", *paths, *options, env=env)
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip()


def submit_held(
    store: Store, folder: Path, names: list[str], held: int, env: dict[str, str], size: int
) -> tuple[str, Path]:
    """Submit `names` from inside a file store, the `held`-th as a named pipe: the chunk that
    holds it stays in a worker's hands until the test lets it go, however fast the worker."""
    inbox = Path(store.root, "incoming")
    inbox.mkdir()
    for name in names:
        (inbox / name).write_bytes((folder / name).read_bytes())
    pipe = inbox / names[held]
    pipe.unlink()
    os.mkfifo(pipe)
    return submit([f"{store.url}/incoming/"], env, "--chunk-size", str(size)), pipe


def reading(pipe: Path) -> int:
    """Wait until a worker opens the pipe to read it; return the writing end, which keeps the
    worker waiting until it is closed."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            assert time.monotonic() < deadline, f"no worker read {pipe.name}"
            time.sleep(0.01)


def results_of(batch: str, env: dict[str, str]) -> list[dict]:
    """`scandigits results`, one dict per record."""
    result = cli("results", batch, env=env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]
