"""`scandigits demo` publishes the bundled model and reads sample scans and forms with it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import cli
from trainer import registry
from trainer.errors import RegistryError
from trainer.storage import open_store
from worker import demo


@pytest.mark.e2e
def test_demo_reads_scans_and_forms_with_the_bundled_model(mnist_dir: Path, tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store"
    args = ("demo", "--count", "30", "--forms", "2", "--store", store, "--data", str(mnist_dir))
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "published the bundled model as v1 (cnn" in result.stderr
    lines = dict(line.split(maxsplit=1) for line in result.stdout.splitlines()[:4])
    assert float(lines["accuracy"].split("%")[0]) >= 90
    assert "images/s with 2 workers" in lines["throughput"]
    assert "of fields read exactly" in lines["forms"] and "on 2 pages" in lines["forms"]
    assert lines["errors"] == "0"
    published = json.loads((tmp_path / "store/models/v0001/metadata.json").read_text())
    bundled = (demo.BUNDLED / "model.keras").read_bytes()
    assert published["sha256"] == hashlib.sha256(bundled).hexdigest()
    again = cli(*args, cwd=tmp_path)  # a store with a model keeps it
    assert again.returncode == 0, again.stderr
    assert "published" not in again.stderr and not (tmp_path / "store/models/v0002").exists()


def test_a_damaged_bundle_is_refused_and_nothing_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundled"
    shutil.copytree(demo.BUNDLED, bundle)
    model = bundle / "model.keras"
    model.write_bytes(model.read_bytes()[:1000])  # cut short, as by a failed checkout
    monkeypatch.setattr(demo, "BUNDLED", bundle)
    store = open_store(f"file://{tmp_path}/store")
    with pytest.raises(RegistryError, match="is damaged"):
        demo.publish_bundled(store)
    model.unlink()
    with pytest.raises(RegistryError, match="is missing"):
        demo.publish_bundled(store)
    assert registry.current_version(store) is None
