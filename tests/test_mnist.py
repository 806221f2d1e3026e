"""MNIST loads from IDX folders and .npz files; broken data is one clear error (exit code 2)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cli
from trainer import errors, mnist


def test_idx_folder(digits: mnist.Mnist) -> None:
    assert digits.x_train.shape == (60000, 28, 28)
    assert digits.x_test.shape == (10000, 28, 28)
    assert digits.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert len(digits.fingerprint) == 64


def test_npz_gives_same_arrays(digits: mnist.Mnist, tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    np.savez(path, **{name: getattr(digits, name) for name in mnist.FILES})
    assert mnist.load(path).fingerprint == digits.fingerprint


def _copy(mnist_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "mnist"
    shutil.copytree(mnist_dir, folder)
    return folder


def test_truncated_gz(mnist_dir: Path, tmp_path: Path) -> None:
    folder = _copy(mnist_dir, tmp_path)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(errors.DataError, match="corrupt or truncated"):
        mnist.load(folder)


def test_short_payload(mnist_dir: Path, tmp_path: Path) -> None:
    folder = _copy(mnist_dir, tmp_path)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    with pytest.raises(errors.DataError, match="truncated"):
        mnist.load(folder)


def test_missing_file_and_bad_magic(mnist_dir: Path, tmp_path: Path) -> None:
    folder = _copy(mnist_dir, tmp_path)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(errors.DataError, match=r"no train-labels-idx1-ubyte\.gz"):
        mnist.load(folder)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"<html>nope</html>"))
    with pytest.raises(errors.DataError, match="not an IDX"):
        mnist.load(folder)


def test_bad_npz(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(errors.DataError):
        mnist.load(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", x_train=np.zeros((2, 3)))
    with pytest.raises(errors.DataError):
        mnist.load(tmp_path / "y.npz")


@pytest.mark.e2e
@pytest.mark.parametrize("data", ["/nonexistent/mnist", "broken"])
def test_train_cli_bad_data_exits_2_with_one_line(data: str, tmp_path: Path) -> None:
    if data == "broken":
        (tmp_path / "broken").mkdir()
        (tmp_path / "broken" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b truncated")
        data = str(tmp_path / "broken")
    result = cli("train", "--data", data, "--store", f"file://{tmp_path}/store")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert "SCANDIGITS_MNIST_DIR" in result.stderr
