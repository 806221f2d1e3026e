"""Thread pools are sized from the container's CPU limit (its cgroup), not the node's cores;
the forward pass is traced per batch size, when first needed or all at once on `warm`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import publish
from trainer import registry
from trainer.storage import Store
from worker.reading import inference

CPUS = len(os.sched_getaffinity(0))


def cgroup(root: Path, files: dict[str, str]) -> Path:
    """A fake cgroup folder holding `files` (path: content)."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU: still one thread
        ({"cpu.max": "150000 100000\n"}, min(2, CPUS)),
        ({"cpu.max": "200000 100000\n"}, min(2, CPUS)),
        ({"cpu.max": "6400000 100000\n"}, CPUS),  # a limit above the CPUs there are
        ({"cpu.max": "max 100000\n"}, CPUS),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, CPUS),
        ({}, CPUS),
        ({"cpu.max": "garbage\n"}, CPUS),
    ],
    ids=lambda v: str(v) if isinstance(v, int) else ",".join(f"{k}={v[k]!r}" for k in v),
)
def test_cpu_limit(tmp_path: Path, files: dict[str, str], expected: int) -> None:
    assert inference.cpu_limit(cgroup(tmp_path, files)) == expected


@pytest.mark.e2e
def test_tensorflow_threads_follow_the_cgroup_limit(tmp_path: Path) -> None:
    """A pod limited to one CPU runs TensorFlow's ops on one thread, whatever the node has."""
    root = cgroup(tmp_path, {"cpu.max": "100000 100000\n"})
    script = (
        "from pathlib import Path; import tensorflow as tf; from worker.reading import inference; "
        f"inference.configure_threads(1, Path({str(root)!r})); "
        "print(tf.config.threading.get_intra_op_parallelism_threads())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "1"


def test_batches_of_any_size_read_alike_traced_when_needed_or_warm(
    trained: tuple[Path, dict], file_store: Store
) -> None:
    """A model loads traced for one batch size; a batch of any length reads as its digits one
    by one do, whether its sizes are traced as it needs them or all beforehand by `warm`."""
    metadata = registry.resolve(file_store, publish(file_store, trained))
    classifier = inference.Classifier(registry.load(file_store, metadata), metadata["version"])
    assert len(classifier._digits._traced) == 1  # the rest on first use
    images = np.random.default_rng(0).random((300, 28, 28), np.float32)
    alone = np.concatenate([classifier.probabilities(images[i : i + 1]) for i in range(7)])
    lazily = classifier.probabilities(images)
    classifier.warm()
    assert len(classifier._digits._traced) == len(inference.SHAPES)
    np.testing.assert_allclose(lazily[:7], alone, atol=1e-5)
    np.testing.assert_allclose(classifier.probabilities(images), lazily, atol=1e-6)
