"""Images per second of the whole path, against the tutorial design and the compute-only limit.

    python -m benchmarks.throughput [--count N] [--fields N] [--model-store URL] [--quick] ...

One generated input (single-digit scans of about 600×600 px as JPEG, plus digit-string fields)
read four ways: a. the tutorial design (benchmarks/naive.py); b. this pipeline, from submit to
every result in the store, with 2 `scandigits worker` processes on the file store and on S3
(moto's server); c. decode, preprocess and inference in-process (benchmarks/compute.py). Also
the workers' time per stage from their metrics, single-image latency with idle workers, peak RSS
per worker and throughput by chunk size, each timed by benchmarks/timing.py. Prints the tables
and saves the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import benchmarks
from benchmarks import timing
from benchmarks.compute import Compute
from trainer import mnist, registry, samples, train
from trainer.storage import Store, open_store
from worker import local
from worker.reading import lines

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
WORKERS = 2
SCAN_SIDES = (560, 640)  # width and height of the single-digit scans, pixels
JPEG_QUALITY = (40, 95)  # as the sample generator draws it
QUICK = {"count": 16, "fields": 4, "chunk_size": 4, "latency_runs": 3, "curve": "2,8"}


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    folder = args.workdir / f"input-{args.count}-{args.fields}-{args.seed}"
    labels = make_inputs(folder, args)
    files = sorted(f for f in folder.glob("*/*") if f.name in labels)  # fields/, then scans/
    model, metadata = model_file(args)
    report = measure(args, files, labels, model, metadata)
    print(table(report))
    benchmarks.save(report, args.out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="single-digit scans")
    parser.add_argument("--fields", type=int, default=300, help="digit-string field scans")
    parser.add_argument("--seed", type=int, default=0, help="of the generated input")
    parser.add_argument(
        "--model-store",
        "--store",
        help="a store whose current model is measured (default: train --model once, kept in "
        "--workdir)",
    )
    parser.add_argument("--model", default="cnn", help="architecture to train: cnn or mlp")
    parser.add_argument("--chunk-size", type=int, default=128, help="images per task")
    parser.add_argument("--curve", default="16,32,64,128,256", help="chunk sizes to compare")
    parser.add_argument("--latency-runs", type=int, default=20, help="single-image submissions")
    parser.add_argument("--data", default=os.environ.get("SCANDIGITS_MNIST_DIR"), help="MNIST")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/results/throughput"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 16 scans, 4 fields, chunks of 4, 3 latency runs, a 1-epoch MLP",
    )
    return parser


def make_inputs(folder: Path, args: argparse.Namespace) -> dict[str, str]:
    """Render the scans into folder/scans and the fields into folder/fields, once (later runs
    reuse them); return the digit string of each file name."""
    known = folder / "labels.json"
    if known.is_file():
        return json.loads(known.read_text())
    print(f"rendering {args.count} scans and {args.fields} fields into {folder}", file=sys.stderr)
    digits = mnist.load(args.data)
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(digits.x_test), args.count, replace=args.count > len(digits.x_test))
    names = [f"scan-{n:05d}.jpg" for n in range(args.count)]
    (folder / "scans").mkdir(parents=True, exist_ok=True)
    jobs = zip(
        [folder / "scans" / name for name in names],
        digits.x_test[picks],
        rng.spawn(args.count),
        strict=True,
    )
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_render, jobs, chunksize=25))
    labels = {name: str(int(digits.y_test[i])) for name, i in zip(names, picks, strict=True)}
    labels |= samples.write_fields(
        folder / "fields", digits.x_test, digits.y_test, args.fields, args.seed
    )
    known.write_text(json.dumps(labels, indent=1))
    return labels


def _render(job: tuple[Path, np.ndarray, np.random.Generator]) -> None:
    """One single-digit scan of about 600×600 px, written as JPEG."""
    path, digit, rng = job
    image = samples.render_scan(digit, rng, SCAN_SIDES)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    path.write_bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1])


def model_file(args: argparse.Namespace) -> tuple[bytes, dict[str, Any]]:
    """The model file and metadata of --model-store's current version, or of a model trained
    for the benchmark once and kept in the workdir."""
    if args.model_store:
        source = open_store(args.model_store)
    else:
        name = "mlp" if args.quick else args.model
        folder = args.workdir / (f"model-{name}-quick" if args.quick else f"model-{name}")
        source = open_store(f"file://{folder.absolute()}")
        if registry.current_version(source) is None:
            print(f"training the {name} model for the benchmark (once)", file=sys.stderr)
            epochs = 1 if args.quick else None
            train.run(source, name, args.data, "always", epochs=epochs, scanned=lines.scanned)
    metadata = registry.resolve(source)
    return source.get(f"models/v{metadata['version']:04d}/model.keras"), metadata


def publish(store: Store, model: bytes, metadata: dict[str, Any]) -> None:
    """Publish the model as the store's current version."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model.keras")
        path.write_bytes(model)
        registry.publish(store, path, metadata, "always")


@contextmanager
def s3_server() -> Iterator[None]:
    """moto's S3 API server on loopback, with boto3 pointed at it through the AWS_* variables."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    port = local.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="benchmark",
        AWS_SECRET_ACCESS_KEY="benchmark",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    try:
        yield
    finally:
        server.stop()


def measure(
    args: argparse.Namespace,
    files: list[Path],
    labels: dict[str, str],
    model: bytes,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Start every part at once (each idle until its turn), then measure one design at a time."""
    run = args.workdir / "run"
    shutil.rmtree(run, ignore_errors=True)
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_average_start": os.getloadavg()},
        "input": {
            "single_digit_scans": args.count,
            "scan_pixels": f"about {sum(SCAN_SIDES) // 2}×{sum(SCAN_SIDES) // 2}, JPEG",
            "fields": args.fields,
            "images": len(files),
            "seed": args.seed,
        },
        "model": {k: metadata[k] for k in ("version", "architecture", "test_accuracy")},
        "workers": WORKERS,
        "chunk_size": args.chunk_size,
    }
    rows: dict[str, Any] = {}
    with ExitStack() as stack:
        stack.enter_context(s3_server())
        stores = _stores(run, model, metadata, files)
        brokers = {
            name: stack.enter_context(local.redis(run / f"redis-{name}"))
            for name in ("file", "s3", "naive")
        }
        clusters = {
            name: _start_cluster(stores[name], brokers[name], run / name, stack)
            for name in ("file", "s3")
        }
        naive_worker = _start_naive(stores["file"], brokers["naive"], run, stack)
        compute = Compute(stores["file"].url, files, args.chunk_size, WORKERS)
        for cluster in clusters.values():
            local.wait_ready(cluster["processes"], cluster["logs"], cluster["broker"], 300)
        local.wait_ready([naive_worker], run, brokers["naive"], 300)
        for name, cluster in clusters.items():
            rows[name] = timing.pipeline_row(cluster, files, labels, args)
            if name == "file":
                report["chunk_curve"] = [
                    {
                        "chunk_size": size,
                        "images_per_second": len(files) / timing.run_batch(cluster, size)[1],
                    }
                    for size in (int(s) for s in args.curve.split(",") if s)
                ]
            rows[name]["peak_rss_mib"] = timing.worker_rss(cluster["processes"])
            local.stop_workers(cluster["processes"])
        rows["compute"] = timing.compute_row(compute, files, labels)
        rows["naive"] = timing.naive_row(
            naive_worker, brokers["naive"], stores["file"], files, labels
        )
    report["rows"] = {name: rows[name] for name in ("naive", "file", "s3", "compute")}
    speed = {name: row["images_per_second"] for name, row in rows.items()}
    report["ratios"] = {
        "file/compute": speed["file"] / speed["compute"],
        "s3/compute": speed["s3"] / speed["compute"],
        "file/naive": speed["file"] / speed["naive"],
    }
    report["machine"]["load_average_end"] = os.getloadavg()
    return report


def _stores(
    run: Path, model: bytes, metadata: dict[str, Any], files: list[Path]
) -> dict[str, Store]:
    """A fresh file store and S3 bucket, each with the model published and the inputs uploaded
    under incoming/scans/ and incoming/fields/, as a scanner would leave them."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="benchmark")
    stores = {
        "file": open_store(f"file://{run / 'store'}"),
        "s3": open_store("s3://benchmark/data"),
    }
    for store in stores.values():
        store.check()
        publish(store, model, metadata)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda f, s=store: s.put(timing.input_key(f), f.read_bytes()), files))
    return stores


def _start_cluster(store: Store, broker: str, logs: Path, stack: ExitStack) -> dict[str, Any]:
    """WORKERS `scandigits worker` processes on `broker`, serving metrics on free ports."""
    ports = [local.free_port() for _ in range(WORKERS)]
    env = {"SCANDIGITS_BROKER_URL": broker, "SCANDIGITS_STORE": store.url}
    processes = local.start_workers(WORKERS, env, logs, ports)
    stack.callback(local.stop_workers, processes)
    return {"store": store, "broker": broker, "processes": processes, "ports": ports, "logs": logs}


def _start_naive(store: Store, broker: str, logs: Path, stack: ExitStack) -> subprocess.Popen:
    """The tutorial worker: one Celery worker with a pool process per core."""
    env = {
        **os.environ,
        "SCANDIGITS_BROKER_URL": broker,
        "SCANDIGITS_STORE": store.url,
        "SCANDIGITS_CONCURRENCY": str(WORKERS),
    }
    command = [sys.executable, "-m", "celery", "-A", "benchmarks.naive", "worker", "-Q", "naive"]
    with open(logs / "naive.log", "wb") as log:
        process = subprocess.Popen(
            [*command, "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
            env=env,
            cwd=ROOT,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack.callback(local.stop_workers, [process])
    return process


def _share(stages: dict[str, Any], stage: str) -> str:
    ms = stages[stage]["ms_per_image"]
    return f"{ms:.2f} ({ms / stages['chunk']['ms_per_image']:.0%})"


def table(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    rows, ratios = report["rows"], report["ratios"]
    names = {
        "naive": "a. naive: a task per image, `model.predict` per digit",
        "file": f"b. pipeline, file store, {report['workers']} workers",
        "s3": f"b. pipeline, S3 store (moto), {report['workers']} workers",
        "compute": f"c. compute only, {report['workers']} processes",
    }
    model, given = report["model"], report["input"]
    lines = [
        f"{given['single_digit_scans']:,} single-digit scans ({given['scan_pixels']}) + "
        f"{given['fields']:,} fields; model v{model['version']} ({model['architecture']}); "
        f"chunks of {report['chunk_size']}; {report['machine']['cores']} cores",
        "",
        "| design | images/s | seconds | read right | peak RSS per worker (MiB) |",
        "|---|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        rss = ", ".join(f"{k.replace('_', ' ')} {v:,.0f}" for k, v in row["peak_rss_mib"].items())
        lines.append(
            f"| {names[name]} | {row['images_per_second']:,.1f} | {row['seconds']:,.1f} | "
            f"{row['accuracy']:.2%} | {rss} |"
        )
    lines += [
        "",
        "b/c "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items() if "compute" in k)
        + f"; b/a {ratios['file/naive']:.1f}",
        "",
        "| stage: ms per image (share) | file | S3 | compute only |",
        "|---|---:|---:|---:|",
    ]
    for stage in timing.STAGES:
        label = {"preprocess": "preprocess + segment", "chunk": "whole chunk"}
        cells = [
            _share(rows[n]["stages"], stage) if stage in rows[n]["stages"] else "-"
            for n in ("file", "s3", "compute")
        ]
        lines.append(f"| {label.get(stage, stage)} | {' | '.join(cells)} |")
    waits = [f"{rows[n]['stages']['queue_wait']['mean_seconds']:.2f} s" for n in ("file", "s3")]
    lines += [
        f"| queue wait, mean per chunk | {' | '.join(waits)} | - |",
        "",
        "Wall time of one process. Fetch, decode and preprocess overlap on 8 threads: their "
        "share of the chunk is split as their thread times are.",
        "",
        "| single image, idle workers | p50 | p95 |",
        "|---|---:|---:|",
    ]
    for name in ("file", "s3"):
        latency = rows[name]["latency"]
        lines.append(
            f"| {name} store ({latency['runs']} runs) | {latency['p50_seconds']:.2f} s | "
            f"{latency['p95_seconds']:.2f} s |"
        )
    curve = report.get("chunk_curve", [])
    if curve:
        lines += [
            "",
            "| chunk size | " + " | ".join(str(p["chunk_size"]) for p in curve) + " |",
            "|---|" + "---:|" * len(curve),
            "| images/s, file store | "
            + " | ".join(f"{p['images_per_second']:.1f}" for p in curve)
            + " |",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    benchmarks.run(main)
