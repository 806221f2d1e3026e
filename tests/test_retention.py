"""Retention: a finished batch's inputs, then the whole batch, are deleted after the days the
settings say, and nothing is deleted when they say nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from trainer.errors import UserError
from worker import batches, retention, settings
from worker.settings import Settings

PNG = cv2.imencode(".png", np.full((40, 60), 200, np.uint8))[1].tobytes()
FINISHED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def finished(tmp_path, file_store, monkeypatch) -> str:
    """A batch of two uploaded scans, finished at FINISHED (no model or broker needed)."""
    monkeypatch.setattr(batches.registry, "resolve", lambda store, model: {"version": 1})
    monkeypatch.setattr(batches.queue, "enqueue", lambda tasks: None)
    monkeypatch.setattr(batches.queue, "discard", lambda batch_id: 0)
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(PNG)
    batch_id = batches.submit(file_store, [str(tmp_path / "a.png"), str(tmp_path / "b.png")])
    file_store.put(f"{batches.prefix(batch_id)}/results.jsonl", b"{}\n")
    retention.mark(file_store, batch_id, FINISHED.isoformat())
    return batch_id


def _keep(monkeypatch, inputs: float | None, whole: float | None) -> None:
    kept = Settings(retain_inputs_days=inputs, retain_batches_days=whole)
    monkeypatch.setattr(settings, "current", lambda: kept)


def _inputs(store, batch_id: str) -> list[str]:
    return list(store.list(f"{batches.prefix(batch_id)}/inputs/"))


def test_inputs_go_first_then_the_whole_batch(file_store, finished, monkeypatch) -> None:
    _keep(monkeypatch, 7, 30)
    assert retention.expire(file_store, FINISHED + timedelta(days=6)) == retention.Expired()
    assert len(_inputs(file_store, finished)) == 2
    assert retention.expire(file_store, FINISHED + timedelta(days=8)) == retention.Expired(1, 0)
    assert _inputs(file_store, finished) == []
    assert file_store.exists(f"{batches.prefix(finished)}/results.jsonl")
    assert retention.expire(file_store, FINISHED + timedelta(days=9)) == retention.Expired()
    assert retention.expire(file_store, FINISHED + timedelta(days=31)) == retention.Expired(0, 1)
    with pytest.raises(UserError, match="no batch"):
        batches.manifest(file_store, finished)
    assert list(file_store.list(retention.FOLDER)) == []


def test_nothing_is_deleted_unless_the_settings_say(file_store, finished, monkeypatch) -> None:
    _keep(monkeypatch, None, None)
    assert retention.expire(file_store, FINISHED + timedelta(days=3650)) == retention.Expired()
    assert len(_inputs(file_store, finished)) == 2


def test_a_batch_deleted_meanwhile_leaves_no_marker(file_store, finished, monkeypatch) -> None:
    _keep(monkeypatch, None, 1)
    batches.delete(file_store, finished)
    assert retention.expire(file_store, FINISHED + timedelta(days=2)) == retention.Expired(0, 1)
    assert list(file_store.list(retention.FOLDER)) == []
