"""Versions are immutable and numbered; `current` moves by policy; tampered files are refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from trainer import errors, registry
from trainer.errors import UserError
from trainer.storage import Store


def _publish(store: Store, trained: tuple[Path, dict], accuracy: float, promote: str) -> tuple:
    path, metadata = trained
    return registry.publish(store, path, {**metadata, "test_accuracy": accuracy}, promote)


def test_versions_and_promotion(file_store: Store, trained: tuple[Path, dict]) -> None:
    with pytest.raises(errors.RegistryError, match="run `scandigits train`"):
        registry.resolve(file_store)
    assert _publish(file_store, trained, 0.97, "if-better") == (1, True)
    assert _publish(file_store, trained, 0.96, "if-better") == (2, False)
    assert _publish(file_store, trained, 0.97, "if-better") == (3, True)
    assert _publish(file_store, trained, 0.99, "never") == (4, False)
    assert _publish(file_store, trained, 0.50, "always") == (5, True)
    assert registry.current_version(file_store) == 5
    assert [m["version"] for m in registry.versions(file_store)] == [1, 2, 3, 4, 5]
    assert registry.resolve(file_store, "2")["test_accuracy"] == 0.96
    with pytest.raises(errors.RegistryError, match="not found"):
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


@pytest.mark.e2e
def test_loaded_model_predicts(s3_store: Store, trained: tuple[Path, dict], digits) -> None:
    _publish(s3_store, trained, 0.97, "always")
    model = registry.load(s3_store, registry.resolve(s3_store))
    probs = model.predict(digits.x_test[:200].astype(np.float32) / 255, verbose=0)
    assert (probs.argmax(1) == digits.y_test[:200]).mean() > 0.9


def test_tampered_model_refused(file_store: Store, trained: tuple[Path, dict]) -> None:
    _publish(file_store, trained, 0.97, "always")
    key = "models/v0001/model.keras"
    file_store.put(key, file_store.get(key) + b"\0")
    with pytest.raises(errors.RegistryError, match="does not match its registered sha256"):
        registry.load(file_store, registry.resolve(file_store))


def _lambda_model(path: Path) -> Path:
    """A model with a Lambda layer: arbitrary code, which Keras' safe mode will not load."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Lambda(lambda x: x * 2.0),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(path)
    return path


@pytest.mark.parametrize("kind", ["lambda", "not a zip", "empty", "wrong input"])
def test_unloadable_model_is_a_registry_error(file_store: Store, tmp_path: Path, kind: str) -> None:
    """A model whose file verifies but that Keras refuses is refused in one line naming the
    version, so the chunk's images get an error instead of the batch stalling."""
    from worker.reading import inference

    path = tmp_path / "model.keras"
    if kind == "lambda":
        _lambda_model(path)
    elif kind == "wrong input":
        import keras

        keras.Sequential([keras.Input((5,)), keras.layers.Dense(10)]).save(path)
    else:
        path.write_bytes(b"" if kind == "empty" else b"not a keras archive")
    version, _ = registry.publish(file_store, path, {"test_accuracy": 0.9}, "never")
    with pytest.raises(errors.RegistryError) as raised:
        inference.classifier(file_store, version)
    message = str(raised.value)
    assert "\n" not in message and f"model version {version} " in message, message
    if kind != "wrong input":  # Keras loads that one: only the classifier refuses it
        with pytest.raises(errors.RegistryError):
            registry.load(file_store, registry.resolve(file_store, version))


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], None]]:
    """Set SCANDIGITS_TRUSTED_MODELS (None: unset) as a fresh worker process would read it."""
    from worker import settings
    from worker.reading import inference

    def set_to(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv("SCANDIGITS_TRUSTED_MODELS", raising=False)
        else:
            monkeypatch.setenv("SCANDIGITS_TRUSTED_MODELS", value)
        settings.current.cache_clear()
        inference._cache.clear()

    yield set_to
    set_to(None)


def test_workers_load_only_trusted_models(
    file_store: Store, trained: tuple[Path, dict], trust: Callable[[str | None], None]
) -> None:
    """With SCANDIGITS_TRUSTED_MODELS set, a model registered in the store is refused unless
    its sha256 is listed: credentials to the store alone cannot get a model run."""
    from worker.reading import inference

    version = _publish(file_store, trained, 0.97, "always")[0]
    sha = registry.resolve(file_store, version)["sha256"]
    other = "0" * 64
    trust(other)
    with pytest.raises(errors.RegistryError) as raised:
        inference.classifier(file_store, version)
    message = str(raised.value)
    assert "\n" not in message and "SCANDIGITS_TRUSTED_MODELS" in message and sha in message
    trust(f" {other} , {sha.upper()} ")
    assert inference.classifier(file_store, version).version == version
    trust(None)
    assert inference.classifier(file_store).version == version


def test_trusted_models_is_read_once(
    file_store: Store,
    trained: tuple[Path, dict],
    trust: Callable[[str | None], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker import settings

    trust("1" * 64)
    assert settings.current().trusted_models == frozenset({"1" * 64})
    monkeypatch.setenv("SCANDIGITS_TRUSTED_MODELS", "2" * 64)
    assert settings.current().trusted_models == frozenset({"1" * 64})


@pytest.mark.parametrize("value", ["abc", "0" * 63, "g" * 64, ",", "0" * 64 + ";" + "1" * 64])
def test_bad_trusted_models_is_a_one_line_error(
    file_store: Store, trained: tuple[Path, dict], trust: Callable[[str | None], None], value: str
) -> None:
    from worker import settings
    from worker.reading import inference

    version = _publish(file_store, trained, 0.97, "always")[0]
    trust(value)
    for call in (settings.current, lambda: inference.classifier(file_store, version)):
        with pytest.raises(UserError) as raised:
            call()
        message = str(raised.value)
        assert message.startswith("SCANDIGITS_TRUSTED_MODELS ") and "\n" not in message


def test_promote_moves_current_back_and_forward(file_store: Store, tmp_path: Path) -> None:
    """`promote` points `current` at any published version; an unknown one changes nothing.
    No model is loaded, so the files need not be models."""
    for number in (1, 2, 3):
        path = tmp_path / f"model-{number}.keras"
        path.write_bytes(f"model {number}".encode())
        registry.publish(file_store, path, {"test_accuracy": 0.9 + number / 100}, "always")
    assert registry.promote(file_store, 1)["test_accuracy"] == 0.91
    assert registry.current_version(file_store) == 1
    assert registry.promote(file_store, "v3")["version"] == 3
    assert registry.resolve(file_store)["version"] == 3
    with pytest.raises(errors.RegistryError, match="model version 7 not found"):
        registry.promote(file_store, 7)
    assert registry.current_version(file_store) == 3
