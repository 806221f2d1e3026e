"""Evaluate a model version on the MNIST test set and on labelled folders of scans.

A scans folder holds images and a ``labels.json`` mapping file name → digit string. Scores
(with how many readings that were not sent to review are wrong), a confusion-matrix PNG per
data set and a gallery of the worst errors are stored under ``models/vNNNN/evaluation/`` and
summarised in the version's metadata.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from trainer import mnist, registry
from trainer.errors import DecodeError, UserError
from trainer.storage import Store
from worker import results, review
from worker.reading import inference, pipeline
from worker.reading.decode import decode

WORST = 40  # errors shown in the gallery, most confident first


def scores(truth: list[str], read: list[str]) -> dict[str, Any]:
    """Whole-string accuracy (overall, single digits, fields of several), and per digit class:
    precision, recall and a confusion matrix over the digits of strings read at full length."""
    pairs = list(zip(truth, read, strict=True))
    matrix = np.zeros((10, 10), np.int64)
    for t, r in pairs:
        if len(t) == len(r):
            for a, b in zip(t, r, strict=True):
                matrix[int(a), int(b)] += 1
    relevant = np.bincount([int(a) for t in truth for a in t], minlength=10)
    per_class = {}
    for k in range(10):
        predicted = matrix[:, k].sum()
        per_class[str(k)] = {
            "precision": round(matrix[k, k] / predicted, 5) if predicted else None,
            "recall": round(matrix[k, k] / relevant[k], 5) if relevant[k] else None,
        }

    def accuracy(subset: list[tuple[str, str]]) -> float | None:
        return round(sum(t == r for t, r in subset) / len(subset), 5) if subset else None

    return {
        "items": len(truth),
        "accuracy": accuracy(pairs),
        "single_digit_accuracy": accuracy([(t, r) for t, r in pairs if len(t) == 1]),
        "field_accuracy": accuracy([(t, r) for t, r in pairs if len(t) > 1]),
        "digit_recall": round(np.trace(matrix) / max(relevant.sum(), 1), 5),
        "per_class": per_class,
        "confusion": matrix.tolist(),
    }


def confusion_png(matrix: list[list[int]], title: str) -> bytes:
    """The 10×10 confusion matrix as a PNG: rows truth, columns read, shade by row share."""
    cell, margin = 44, 60
    counts = np.array(matrix, np.float64)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = np.full((margin + 10 * cell + 10, margin + 10 * cell + 10, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, title[:40], (8, 20), font, 0.55, (0, 0, 0), 1)
    cv2.putText(image, "rows: truth, columns: read", (8, 38), font, 0.4, (90, 90, 90), 1)
    for i in range(10):
        cv2.putText(image, str(i), (margin + i * cell + 17, margin - 4), font, 0.5, (0, 0, 0), 1)
        cv2.putText(image, str(i), (margin - 20, margin + i * cell + 28), font, 0.5, (0, 0, 0), 1)
        for j in range(10):
            shade = int(255 - 200 * share[i, j])
            x, y = margin + j * cell, margin + i * cell
            colour = (shade, shade, 255) if i != j else (255, shade, shade)
            cv2.rectangle(image, (x, y), (x + cell - 2, y + cell - 2), colour, -1)
            text = str(int(counts[i, j]))
            ink = (255, 255, 255) if share[i, j] > 0.6 else (0, 0, 0)
            cv2.putText(image, text, (x + 4, y + 27), font, 0.38, ink, 1)
    return cv2.imencode(".png", image)[1].tobytes()


def run(
    store: Store,
    version: int | str | None,
    data: str | None,
    scans: Sequence[Path] = (),
    review_below: float = results.REVIEW_BELOW,
) -> dict[str, Any]:
    """Evaluate, store the figures and report, and record the summary in the metadata. Each
    folder of `scans` is scored as a set named after the folder."""
    sets = _named(scans)
    labels = {name: _labels(folder) for name, folder in sets.items()}
    metadata = registry.resolve(store, version)
    classifier = inference.classifier(store, metadata["version"])
    prefix = f"models/v{metadata['version']:04d}/evaluation"
    test = mnist.load(data)
    images = test.x_test.astype(np.float32) / 255.0
    predictions = classifier.predict(images)
    truth = [str(int(y)) for y in test.y_test]
    report: dict[str, Any] = {
        "model": metadata["version"],
        "architecture": metadata["architecture"],
    }
    report["mnist"] = scores(truth, [str(p.label) for p in predictions])
    figures = {"mnist_confusion": confusion_png(report["mnist"]["confusion"], "MNIST test")}
    if sets:
        report["scans"], wrong = {}, []
        for name, folder in sets.items():
            report["scans"][name], misread = _scan_scores(
                folder, labels[name], classifier, review_below
            )
            wrong += misread
            figures[f"{name}_confusion"] = confusion_png(report["scans"][name]["confusion"], name)
    else:
        wrong = [
            (p.confidence, 1.0 - images[i], t, str(p.label))
            for i, (p, t) in enumerate(zip(predictions, truth, strict=True))
            if str(p.label) != t
        ]
    wrong.sort(key=lambda item: -item[0])
    tiles = [
        review.tile(gray, f"{t} read {r or '-'} {conf:.2f}", review.RED)
        for conf, gray, t, r in wrong[:WORST]
    ]
    if tiles:
        figures["worst_errors"] = cv2.imencode(".png", review.grid(tiles))[1].tobytes()
    report["figures"] = {}
    for name, png in figures.items():
        store.put(f"{prefix}/{name}.png", png)
        report["figures"][name] = f"{store.url}/{prefix}/{name}.png"
    store.put(f"{prefix}/report.json", json.dumps(report, indent=2).encode())
    summary = {
        "mnist_accuracy": report["mnist"]["accuracy"],
        "scans_accuracy": {
            name: part["accuracy"] for name, part in report.get("scans", {}).items()
        },
        "figures": report["figures"],
    }
    registry.annotate(store, metadata["version"], evaluation=summary)
    return report


def _labels(folder: Path) -> dict[str, str]:
    """The folder's labels.json: file name → digit string."""
    try:
        labels = json.loads((folder / "labels.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder}/labels.json missing or not JSON ({exc})") from exc
    if not isinstance(labels, dict) or not labels:
        raise UserError(f"{folder}/labels.json must map file names to digit strings")
    return {str(name): str(text) for name, text in labels.items()}


def _named(folders: Sequence[Path]) -> dict[str, Path]:
    """Each folder by its name, made unique with its position where names repeat."""
    names = [folder.resolve().name or "scans" for folder in folders]
    return {
        name if names.count(name) == 1 else f"{name}-{n}": folder
        for n, (name, folder) in enumerate(zip(names, folders, strict=True), start=1)
    }


def _scan_scores(
    folder: Path, labels: dict[str, str], classifier: inference.Classifier, review_below: float
) -> tuple[dict[str, Any], list]:
    """Read every labelled file; score the strings, and those not sent to review; collect
    the misreads."""
    names = sorted(labels)
    readings, _ = pipeline.read([folder / n for n in names], Path.read_bytes, classifier)
    read = [r.text for r in readings]
    truth = [labels[n] for n in names]
    trusted = [
        t == r
        for t, r, reading in zip(truth, read, readings, strict=True)
        if results.review_reason(reading, review_below) is None
    ]
    wrong = []
    for name, reading, t, r in zip(names, readings, truth, read, strict=True):
        if t != r:
            try:
                gray = decode((folder / name).read_bytes())
            except (OSError, DecodeError):
                gray = None
            wrong.append((reading.confidence, gray, t, r))
    unflagged = {
        "review_below": review_below,
        "not_sent_to_review": len(trusted),
        "wrong_not_sent_to_review": trusted.count(False),
        "error_rate_not_sent_to_review": round(trusted.count(False) / len(trusted), 5)
        if trusted
        else None,
    }
    return {**scores(truth, read), **unflagged}, wrong
