"""`scandigits evaluate`: scores, figures in the store, and a summary in the model metadata."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import cli, publish
from trainer import registry, samples
from worker.evaluate import scores


def test_scores_by_hand() -> None:
    report = scores(["1", "1", "2", "7", "42"], ["1", "2", "2", "", "42"])
    assert report["accuracy"] == 0.6 and report["items"] == 5
    assert report["single_digit_accuracy"] == 0.5 and report["field_accuracy"] == 1.0
    assert report["per_class"]["1"] == {"precision": 1.0, "recall": 0.5}
    assert report["per_class"]["2"] == {"precision": 0.66667, "recall": 1.0}
    assert report["per_class"]["7"] == {"precision": None, "recall": 0.0}
    assert np.array(report["confusion"]).sum() == 5  # "7" read as "" has no aligned digit
    assert report["digit_recall"] == round(4 / 6, 5)


@pytest.mark.e2e
def test_evaluate_cli(digits, trained, file_store, mnist_dir: Path, tmp_path: Path) -> None:
    publish(file_store, trained)
    folder = tmp_path / "scans"
    labels = samples.write_scans(folder, digits.x_test, digits.y_test, 30, seed=3)
    (folder / "broken.png").write_bytes(b"nope")
    (folder / "labels.json").write_text(json.dumps({**labels, "broken.png": "4"}))
    result = cli(
        "evaluate", "--scans", str(folder), "--data", str(mnist_dir), "--store", file_store.url
    )
    assert result.returncode == 0, result.stderr
    assert "mnist: accuracy 0.9" in result.stdout and "on 31 items" in result.stdout
    report = json.loads(file_store.get("models/v0001/evaluation/report.json"))
    assert report["mnist"]["items"] == 10000 and report["scans"]["scans"]["items"] == 31
    scans = report["scans"]["scans"]  # the broken file is sent to review
    assert scans["wrong_not_sent_to_review"] <= scans["not_sent_to_review"] <= 30
    for name in ("mnist_confusion", "scans_confusion", "worst_errors"):
        png = file_store.get(f"models/v0001/evaluation/{name}.png")
        assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) is not None
    evaluation = registry.resolve(file_store)["evaluation"]
    assert evaluation["mnist_accuracy"] == report["mnist"]["accuracy"]
    assert evaluation["figures"]["worst_errors"].endswith("worst_errors.png")


@pytest.mark.e2e
def test_evaluate_needs_labels(trained, file_store, mnist_dir: Path, tmp_path: Path) -> None:
    publish(file_store, trained)
    result = cli(
        "evaluate", "--scans", str(tmp_path), "--data", str(mnist_dir), "--store", file_store.url
    )
    assert result.returncode == 2 and "labels.json missing" in result.stderr


@pytest.mark.e2e
def test_evaluate_fields_from_the_samples_command(
    trained, file_store, mnist_dir: Path, tmp_path: Path
) -> None:
    publish(file_store, trained)
    folder = tmp_path / "fields"
    made = cli("samples", str(folder), "--fields", "--count", "8", "--data", str(mnist_dir))
    assert made.returncode == 0, made.stderr
    labels = json.loads((folder / "labels.json").read_text())
    assert len(labels) == 8 and all(3 <= len(text) <= 8 for text in labels.values())
    result = cli(
        "evaluate", "--scans", str(folder), "--data", str(mnist_dir), "--store", file_store.url
    )
    assert result.returncode == 0, result.stderr
    assert "field accuracy" in result.stdout
    report = json.loads(file_store.get("models/v0001/evaluation/report.json"))
    fields = report["scans"]["fields"]
    assert fields["single_digit_accuracy"] is None and 0 <= fields["field_accuracy"] <= 1
