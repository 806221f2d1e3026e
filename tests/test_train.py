"""`scandigits train` publishes a version that `scandigits models` lists as current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import cli


@pytest.mark.e2e
def test_train_cli_publishes_and_lists(mnist_dir: Path, tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store"
    result = cli(
        "train",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--limit",
        "3000",
        "--data",
        str(mnist_dir),
        "--store",
        store,
    )
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1" in result.stderr
    assert result.stdout.startswith("model v1 (mlp): test accuracy 0.")
    listing = cli("models", "--store", store)
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[1].startswith("*       1  mlp")
    meta = json.loads(cli("models", "--json", "--store", store).stdout)
    assert meta[0]["current"] and meta[0]["hyperparameters"]["train_images"] == 3000
    assert meta[0]["test_accuracy"] > 0.8
    groups = _groups(tmp_path / "store/models/v0001/model.keras")
    assert groups and not [name for name in groups if "optimizer" in name]  # weights alone


@pytest.mark.e2e
def test_train_rejects_unknown_model(tmp_path: Path) -> None:
    result = cli("train", "--model", "resnet", "--store", f"file://{tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown model 'resnet'; choose from mlp, cnn"


@pytest.mark.slow
def test_architectures_take_28x28_and_give_softmax(digits) -> None:
    from trainer import models, train
    from worker.reading import lines

    for name in models.RECIPES:
        model = models.build(name)
        probs = model.predict(digits.x_test[:4].astype("float32") / 255, verbose=0)
        assert probs.shape == (4, models.RECIPES[name].classes)
        assert abs(float(probs.sum(axis=1).mean()) - 1) < 1e-4
    model, meta = train.train(
        "cnn", digits, epochs=1, limit=500, log=lambda _: None, scanned=lines.scanned
    )
    assert meta["hyperparameters"]["schedule"] == "warmup+cosine"
    assert meta["hyperparameters"]["stroke_jitter"] is True
    assert meta["hyperparameters"]["nondigit_images"] == 50  # 10% more: the 11th class
    assert meta["hyperparameters"]["train_images"] == 550 and meta["test_loss"] > 0
    # the CNN comes with a string reader in the same model file, trained on two lines per
    # digit, half of them rendered as scans and framed by the worker's segmentation
    assert meta["reader"]["scanned_lines"] > 450 and meta["reader"]["epochs"] == 1
    assert meta["reader"]["lines"] == 500 + meta["reader"]["scanned_lines"]
    classifier, reader = models.parts(model)
    assert classifier.output_shape == (None, 11) and reader.output_shape[-1] == 11


def _groups(model_file: Path) -> list[str]:
    """Every group and dataset name in a saved model's weights file."""
    import io
    import zipfile

    import h5py

    names: list[str] = []
    with (
        zipfile.ZipFile(model_file) as archive,
        h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights,
    ):
        weights.visit(names.append)
    return names
