"""Thread pools are sized from the container's CPU limit (its cgroup), not the node's cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
