"""The benchmarks' smoke runs: the throughput benchmark's `--quick` (every design measured,
every field there), the forms run on three pages and the API run on 40 scans (submit and the
API alternating); no timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import pytest

from tests.conftest import ROOT, cli, publish

pytestmark = pytest.mark.e2e  # starts Redis, the S3 server, workers or the CLI


def run(module: str, mnist_dir, tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m benchmarks.MODULE ARGS` with its work and report in tmp_path; its output and
    the JSON report it saved."""
    out = tmp_path / f"{module}.json"
    command = [sys.executable, "-m", f"benchmarks.{module}", *args]
    result = subprocess.run(
        [*command, "--workdir", str(tmp_path), "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "SCANDIGITS_MNIST_DIR": str(mnist_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads(out.read_text())


def test_quick_throughput_run_reports_every_design(trained, file_store, mnist_dir, tmp_path):
    publish(file_store, trained)
    result, report = run(
        "throughput", mnist_dir, tmp_path, "--quick", "--model-store", file_store.url
    )
    assert report["input"]["images"] == 20 and report["model"]["architecture"] == "mlp"
    rows = report["rows"]
    assert list(rows) == ["naive", "file", "s3", "compute"]
    for row in rows.values():
        assert row["images"] == 20 and row["seconds"] > 0 and row["images_per_second"] > 0
        assert row["accuracy"] > 0.5, "every design reads the same scans"
        assert all(mib > 0 for mib in row["peak_rss_mib"].values())
    stages = {"fetch", "decode", "preprocess", "infer", "chunk"}
    assert set(rows["compute"]["stages"]) == stages
    for name in ("file", "s3"):
        assert set(rows[name]["stages"]) == stages | {"write", "queue_wait"}
        assert rows[name]["stages"]["queue_wait"]["chunks"] == 5
        latency = rows[name]["latency"]
        assert latency["runs"] == 3 and 0 < latency["p50_seconds"] <= latency["p95_seconds"]
        assert set(rows[name]["peak_rss_mib"]) == {"main", "pool_process", "worker"}
    assert set(report["ratios"]) == {"file/compute", "s3/compute", "file/naive"}
    assert [point["chunk_size"] for point in report["chunk_curve"]] == [2, 8]
    for title in ("a. naive", "b. pipeline, file store", "b. pipeline, S3", "c. compute only"):
        assert title in result.stdout
    assert "p50" in result.stdout and "whole chunk" in result.stdout


def test_forms_run_goes_through_submit_with_a_template(trained, file_store, mnist_dir, tmp_path):
    publish(file_store, trained)
    options = ("--count", "3", "--workers", "1", "--store", file_store.url)
    result, report = run("forms", mnist_dir, tmp_path, *options)
    assert (report["pages"], report["fields"], report["errors"]) == (3, 12, 0)
    assert set(report["exact_by_field"]) == {"account", "date", "amount", "reference"}
    assert "fields read exactly" in result.stdout
    assert 0 <= report["wrong_among_them"] <= report["fields_not_sent_to_review"] <= 12
    rows = file_store.get(f"batches/{report['batch']}/results.csv").decode().splitlines()
    assert (
        rows[0] == "source,key,page,account,date,amount,reference,needs_review,review_fields,"
        "review_reasons,error,model"
    )
    assert len(rows) == 4
    sheet = tmp_path / "review.png"
    reviewed = cli("review", report["batch"], "--out", str(sheet), "--store", file_store.url)
    assert reviewed.returncode == 0 and "to review" in reviewed.stderr, reviewed.stderr
    assert cv2.imread(str(sheet)).shape[1] == 960  # a strip per field to review


def test_api_run_compares_the_api_with_submit(trained, file_store, mnist_dir, tmp_path):
    publish(file_store, trained)
    options = ("--count", "40", "--clients", "2", "--workers", "1", "--per-request", "10")
    result, report = run("api", mnist_dir, tmp_path, *options, "--model-store", file_store.url)
    assert report["input"]["single_digit_scans"] == 40 and report["model"]["architecture"] == "mlp"
    runs = report["runs"]
    assert [(r["design"], r["round"]) for r in runs] == [
        ("submit", 1),
        ("api", 1),
        ("submit", 2),
        ("api", 2),
    ], "the designs alternate"
    for row in runs:
        assert row["images"] == 40 and row["seconds"] > 0 and row["images_per_second"] > 0
    for row in runs[1::2]:
        assert (row["batches"], row["requests"]) == (4, 4) and row["requests_per_second"] > 0
        assert row["status_calls"] > 0 and 0 < row["status_p50_ms"] <= row["status_p99_ms"]
    assert set(report["medians"]["api"]) == {
        "images_per_second",
        "requests_per_second",
        "status_p50_ms",
        "status_p99_ms",
    }
    assert report["ratio"]["api/submit"] > 0 and report["ratio"]["target"] == 0.9
    assert "HTTP API, 2 clients" in result.stdout and "API/submit" in result.stdout
