"""Inference cost per image of each architecture (and per line of the string reader), through
the worker's compiled forward pass.

    python -m benchmarks.inference [--seconds S] [--out benchmarks/results/inference.json]

Weights do not change the cost, so freshly built models are timed; no data set is needed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import benchmarks
from trainer import models, strings
from worker.reading import inference

BATCHES = (1, 32, 256)


def images_per_second(
    forward: Callable[[np.ndarray], object], shape: tuple[int, int], batch: int, seconds: float
) -> float:
    """Best-of-three throughput of `forward` on random batches of `batch` inputs of `shape`."""
    images = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    forward(images)
    best = 0.0
    for _ in range(3):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            forward(images)
            done += batch
        best = max(best, done / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/inference.json"))
    args = parser.parse_args()
    inference.configure_threads(1)
    rows = []
    for name in models.RECIPES:
        model = models.build(name)
        classifier = inference.Classifier(model, 0)
        speeds = {
            b: images_per_second(classifier.predict, (28, 28), b, args.seconds) for b in BATCHES
        }
        rows.append(
            {"model": name, "parameters": model.count_params(), "images_per_second": speeds}
        )
    reader = models.build_reader()
    classifier = inference.Classifier(models.together(models.build("cnn"), reader), 0)
    shape = (strings.HEIGHT, strings.WIDTH)
    speeds = {b: images_per_second(classifier.read_lines, shape, b, args.seconds) for b in BATCHES}
    rows.append(
        {"model": "reader", "parameters": reader.count_params(), "images_per_second": speeds}
    )
    print(f"inference on {os.cpu_count()} cores, images (reader: lines)/s (µs each at batch 256)")
    print(f"{'model':<6} {'params':>9} " + " ".join(f"{'batch ' + str(b):>12}" for b in BATCHES))
    for row in rows:
        speeds = row["images_per_second"]
        cells = " ".join(f"{speeds[b]:>12,.0f}" for b in BATCHES)
        print(f"{row['model']:<6} {row['parameters']:>9,} {cells}  ({1e6 / speeds[256]:.1f} µs)")
    benchmarks.save({"cores": os.cpu_count(), "rows": rows}, args.out)


if __name__ == "__main__":
    benchmarks.run(main)
