"""A hostile corpus through `submit` and `watch`, real workers: every good scan read once, every
bad input a one-line error, nobody over their memory limit."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from benchmarks.compute import peak_rss
from tests.batch import results_of
from tests.bombs import (
    bigtiff_declaring,
    hdr_declaring,
    jpeg_declaring,
    png_declaring,
    sun_declaring,
)
from tests.conftest import cli_peak, publish
from trainer import mnist, samples
from trainer.storage import Store
from worker import local, queue

pytestmark = pytest.mark.e2e  # starts Redis, the S3 server, workers or the CLI

WORKER_MEMORY = 2 * 1024**3  # the worker Deployment's limit
WATCHER_MEMORY = 1024**3  # the watcher Deployment's limit


def _pdf_page(points: int) -> bytes:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument.new()
    document.new_page(points, points)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _zip_bomb() -> bytes:
    """One member that unpacks to 60 MB of zeros, over the byte limit (60 KB packed)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("scan.png", bytes(60_000_000))
    return out.getvalue()


def _tar_bomb() -> bytes:
    """bzip2 inside a name that says plain TAR, passing over 300 MB of filler (a few KB)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:bz2") as tarred:
        info = tarfile.TarInfo("filler.bin")
        info.size = 300_000_000
        tarred.addfile(info, io.BytesIO(bytes(info.size)))
    return out.getvalue()


# what each bad input must be told, in one line, by the worker
BAD = {
    "pixels.png": (png_declaring(50_000, 50_000), "image too large"),
    "pixels.jpg": (jpeg_declaring(60_000, 40_000), "image too large"),
    "radiance.png": (hdr_declaring(7000, 7000), "not a readable image"),
    "portable.pgm": (
        b"P7\nWIDTH 7000\nHEIGHT 7000\nDEPTH 1\nMAXVAL 255\nENDHDR\n",
        "not a readable",
    ),
    "float.png": (b"PF\n7000 7000\n-1.0\n" + bytes(4096), "not a readable image"),
    "sun.bmp": (sun_declaring(10_000, 10_000), "image too large"),
    "big.tif": (bigtiff_declaring(20_000, 20_000), "image too large"),
    "page.pdf": (_pdf_page(14_400), "page 1 too large"),
    "empty.png": (b"", "empty"),
    "text.jpg": (b"hello", "not a readable image"),
}
ARCHIVES = {"bomb.zip": _zip_bomb(), "bomb.tar": _tar_bomb()}  # refused whole, nothing queued


@pytest.fixture(scope="module")
def corpus(digits: mnist.Mnist, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """24 good scans and the bad inputs, in one folder."""
    folder = tmp_path_factory.mktemp("hostile")
    labels = samples.write_scans(folder, digits.x_test, digits.y_test, 24, seed=5)
    for name, (data, _) in BAD.items():
        (folder / name).write_bytes(data)
    return folder, labels


def _peak(process: subprocess.Popen) -> int:
    """Peak RSS in bytes of a live worker and of its pool processes, the largest of them."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return max(peak_rss(pid) for pid in [process.pid, *children])


def _with_workers(
    env: dict[str, str], logs: Path, *args: str
) -> tuple[subprocess.CompletedProcess, int, list[int]]:
    """Run `scandigits ARGS` while two workers read; return its result, its peak RSS and the
    workers' (checked against their limits)."""
    workers = local.start_workers(2, env, logs)
    try:
        local.wait_ready(workers, logs)
        result, peak = cli_peak(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert peak < WATCHER_MEMORY, f"{args[0]} peaked at {peak / 1e6:.0f} MB"
        peaks = [_peak(w) for w in workers]
    finally:
        local.stop_workers(workers)
    assert max(peaks) < WORKER_MEMORY, f"workers peaked at {[p // 10**6 for p in peaks]} MB"
    return result, peak, peaks


def _check(records: list[dict], labels: dict[str, str]) -> None:
    """Each input read once: the good scans without error, each bad file with its one line."""
    by_name = {Path(r["source"]).name: r for r in records}
    assert len(records) == len(by_name) == len(labels) + len(BAD), "each input read once"
    for name, (_, message) in BAD.items():
        error = by_name[name]["error"]
        assert error and message in error and "\n" not in error, (name, error)
    assert all(by_name[name]["error"] is None for name in labels)
    assert sum(by_name[name]["text"] == text for name, text in labels.items()) >= 20


def test_hostile_corpus_through_submit(corpus, worker_env: dict[str, str], tmp_path):
    """Bombs in every format the decoders take, junk, a PDF page too large to render, with
    good scans: each good scan read once, each bad file one line, archive bombs refused whole
    by submit, and neither the workers nor submit near their memory limits."""
    folder, labels = corpus
    env = worker_env
    for name, data in ARCHIVES.items():
        (tmp_path / name).write_bytes(data)
        refused, peak = cli_peak("submit", str(tmp_path / name), env=env)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        last = refused.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and str(tmp_path / name) in last
        assert peak < WATCHER_MEMORY, f"submit peaked at {peak / 1e6:.0f} MB"
    submitted, peak, peaks = _with_workers(env, tmp_path / "logs", "submit", str(folder), "--wait")
    _check(results_of(submitted.stdout.strip(), env), labels)
    print(f"peak RSS: submit {peak / 1e6:.0f} MB, workers {[p // 10**6 for p in peaks]} MB")


def test_hostile_corpus_through_watch(corpus, redis_url, trained, s3_store: Store, tmp_path):
    """The same corpus landing in an S3 inbox, with archive bombs and keys the store refuses
    (legal in S3): `watch --once` submits every readable object once, each bad file is a
    one-line error in its batch's results or a one-line rejection beside them, and neither the
    watcher nor the workers come near their memory limits."""
    import boto3

    folder, labels = corpus
    publish(s3_store, trained)
    env = {"SCANDIGITS_BROKER_URL": redis_url, "SCANDIGITS_STORE": s3_store.url}
    queue.connect(redis_url)
    for file in folder.iterdir():
        s3_store.put(f"inbox/{file.name}", file.read_bytes())
    for name, data in ARCHIVES.items():
        s3_store.put(f"inbox/{name}", data)
    refused = ["inbox/../up.png", "inbox//a.png", "inbox/a\\b.png"]
    client = boto3.client("s3")
    for key in refused:
        client.put_object(Bucket=s3_store.bucket, Key=s3_store.prefix + key, Body=b"x")
    options = ["--batch-size", "100", "--max-age", "0", "--interval", "0.2", "--once"]
    inbox = f"{s3_store.url}/inbox/"
    _, peak, peaks = _with_workers(env, tmp_path / "logs", "watch", inbox, *options)
    found = {
        key: [json.loads(line) for line in s3_store.get(key).splitlines()]
        for key in s3_store.list("results/")
        if key.endswith(".jsonl")
    }
    rejected = [r for key, lines in found.items() if key.endswith(".rejected.jsonl") for r in lines]
    _check(
        [r for key, lines in found.items() if not key.endswith(".rejected.jsonl") for r in lines],
        labels,
    )
    told = {r["key"]: r["error"] for r in rejected}
    assert set(told) == {*refused, *(f"inbox/{name}" for name in ARCHIVES)}, told
    assert all(error and "\n" not in error for error in told.values())
    print(f"peak RSS: watch {peak / 1e6:.0f} MB, workers {[p // 10**6 for p in peaks]} MB")
