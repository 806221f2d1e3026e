"""Missing services and mistakes end with one line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.bombs import hdr_declaring
from tests.conftest import cli, cli_peak, publish
from worker.local import free_port

pytestmark = pytest.mark.e2e  # starts Redis, the S3 server, workers or the CLI


def one_line_error(result, code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_no_model_published(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    store = f"file://{tmp_path}/store"
    line = one_line_error(
        cli("submit", str(tmp_path / "a.png"), "--store", store, "--broker", redis_url)
    )
    assert "no model published" in line and "scandigits train" in line
    assert "no model published" in one_line_error(cli("predict", "x.png", "--store", store))


def test_redis_unreachable(tmp_path: Path) -> None:
    broker = f"redis://:secret@127.0.0.1:{free_port()}/0"
    for args in (["submit", str(tmp_path)], ["worker"]):
        line = one_line_error(cli(*args, "--broker", broker, "--store", f"file://{tmp_path}"))
        assert "cannot reach Redis" in line and "SCANDIGITS_BROKER_URL" in line
        assert "secret" not in line


def test_store_unreachable_and_bucket_missing(s3_endpoint: str, redis_url: str) -> None:
    line = one_line_error(cli("models", "--store", "s3://no-such-bucket/x"))
    assert "bucket 'no-such-bucket' does not exist" in line
    dead = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": "1"}
    line = one_line_error(
        cli("submit", ".", "--store", "s3://b/x", "--broker", redis_url, env=dead)
    )
    assert "cannot reach the object store" in line


def test_user_mistakes(tmp_path: Path, redis_url: str, trained, file_store) -> None:
    publish(file_store, trained)
    common = ("--store", file_store.url, "--broker", redis_url)
    assert "no such file or folder" in one_line_error(cli("submit", "/no/such/dir", *common))
    (tmp_path / "empty").mkdir()
    assert "no images found" in one_line_error(cli("submit", str(tmp_path / "empty"), *common))
    assert "not inside the store" in one_line_error(cli("submit", "s3://elsewhere/scans/", *common))
    assert "invalid object key" in one_line_error(
        cli("submit", f"{file_store.url}/../elsewhere/", *common)
    )
    assert "not found" in one_line_error(cli("submit", str(tmp_path), "--model", "7", *common))
    assert "no batch" in one_line_error(cli("status", "20200101-000000-abcdef", *common[:2]))
    assert "invalid batch id" in one_line_error(cli("results", "../../etc", *common[:2]))
    bad = tmp_path / "form.yaml"
    bad.write_text("name: x\nfields:\n  total:\n    box: [0.1, 0.2]\n")
    assert "form.yaml line 4" in one_line_error(
        cli("submit", str(tmp_path), "--template", str(bad), *common)
    )
    assert "form.yaml line 4" in one_line_error(cli("template", "check", str(bad)))
    good = tmp_path / "good.yaml"
    good.write_text("name: x\nfields:\n  total:\n    box: [0.1, 0.2, 0.3, 0.05]\n")
    blank = tmp_path / "blank.png"
    blank.write_bytes(cv2.imencode(".png", np.full((700, 500), 255, np.uint8))[1].tobytes())
    line = one_line_error(cli("template", "preview", str(good), str(blank), *common[:2]))
    assert "cannot align" in line


def test_template_preview_draws_the_fields_of_a_form(tmp_path: Path, trained, file_store, digits):
    from trainer import forms

    publish(file_store, trained)
    forms.write_forms(tmp_path, digits.x_test, digits.y_test, 1, seed=1)
    out = tmp_path / "preview.png"
    page = tmp_path / "scans" / "0000.pdf"
    result = cli(
        "template",
        "preview",
        str(tmp_path / "form.yaml"),
        str(page),
        "--out",
        str(out),
        "--store",
        file_store.url,
    )
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        "account",
        "date",
        "amount",
        "reference",
    ]
    assert cv2.imread(str(out)).shape[:2] == (2339, 1654)
    assert "valid" in cli("template", "check", str(tmp_path / "form.yaml")).stderr


@pytest.mark.parametrize(
    "command",
    ["train", "submit", "worker", "predict", "demo", "watch", "serve", "token", "batches"],
)
def test_help(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_predict_refuses_a_decompression_bomb_in_little_memory(
    tmp_path: Path, trained, file_store
) -> None:
    """A 3 MB Radiance HDR named .png declaring 7000 × 7000 pixels is a one-line error, found
    from its header: `predict` stays well inside the worker's 2 GiB (decoding it took 2 GB)."""
    publish(file_store, trained)
    bomb = tmp_path / "scan.png"
    bomb.write_bytes(hdr_declaring(7000, 7000))
    unset = ("OPENCV_IO_MAX_IMAGE_PIXELS", "SCANDIGITS_MAX_PIXELS")  # set here, not in a shell
    result, rss = cli_peak("predict", str(bomb), "--store", file_store.url, unset=unset)
    code, stdout, stderr = result.returncode, result.stdout, result.stderr
    assert code == 1 and "Traceback" not in stderr, stderr
    assert stdout.startswith(f"{bomb}\terror: not a readable image (format not supported")
    assert len(stdout.splitlines()) == 1
    assert rss < 1_000_000_000, f"peak RSS {rss / 1e6:.0f} MB"


def test_a_worker_with_a_bad_trusted_models_list_does_not_start(tmp_path) -> None:
    env = {"SCANDIGITS_TRUSTED_MODELS": "zz", "SCANDIGITS_STORE": f"file://{tmp_path}"}
    result = cli("worker", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: SCANDIGITS_TRUSTED_MODELS must be sha256")
