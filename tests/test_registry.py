"""Versions are immutable and numbered; `current` moves by policy; tampered files are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer import registry
from trainer.storage import Store


def _publish(store: Store, trained: tuple[Path, dict], accuracy: float, promote: str) -> tuple:
    path, metadata = trained
    return registry.publish(store, path, {**metadata, "test_accuracy": accuracy}, promote)


def test_versions_and_promotion(file_store: Store, trained: tuple[Path, dict]) -> None:
    with pytest.raises(registry.RegistryError, match="run `scandigits train`"):
        registry.resolve(file_store)
    assert _publish(file_store, trained, 0.97, "if-better") == (1, True)
    assert _publish(file_store, trained, 0.96, "if-better") == (2, False)
    assert _publish(file_store, trained, 0.97, "if-better") == (3, True)
    assert _publish(file_store, trained, 0.99, "never") == (4, False)
    assert _publish(file_store, trained, 0.50, "always") == (5, True)
    assert registry.current_version(file_store) == 5
    assert [m["version"] for m in registry.versions(file_store)] == [1, 2, 3, 4, 5]
    assert registry.resolve(file_store, "2")["test_accuracy"] == 0.96
    with pytest.raises(registry.RegistryError, match="not found"):
        registry.resolve(file_store, 9)


def test_metadata_records_provenance(file_store: Store, trained: tuple[Path, dict]) -> None:
    _publish(file_store, trained, 0.97, "always")
    meta = registry.resolve(file_store)
    for field in (
        "version",
        "architecture",
        "hyperparameters",
        "test_accuracy",
        "test_loss",
        "train_accuracy",
        "sha256",
        "dataset_sha256",
        "libraries",
        "created",
    ):
        assert field in meta
    assert meta["hyperparameters"]["batch_size"] == 128


def test_loaded_model_predicts(s3_store: Store, trained: tuple[Path, dict], digits) -> None:
    _publish(s3_store, trained, 0.97, "always")
    model = registry.load(s3_store, registry.resolve(s3_store))
    probs = model.predict(digits.x_test[:200].astype(np.float32) / 255, verbose=0)
    assert (probs.argmax(1) == digits.y_test[:200]).mean() > 0.9


def test_tampered_model_refused(file_store: Store, trained: tuple[Path, dict]) -> None:
    _publish(file_store, trained, 0.97, "always")
    key = "models/v0001/model.keras"
    file_store.put(key, file_store.get(key) + b"\0")
    with pytest.raises(registry.RegistryError, match="does not match its registered sha256"):
        registry.load(file_store, registry.resolve(file_store))
