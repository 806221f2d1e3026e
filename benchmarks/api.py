"""Images per second through the HTTP API against `scandigits submit --wait`, and how fast the
API answers while the workers read.

    python -m benchmarks.api [--count 2000] [--clients 8] [--workers 2] [--per-request 50]
        [--chunk-size 50] [--poll-pause 0.3] [--rounds 2] [--store URL] [--model-store URL]
        [--out FILE.json]

One generated input (--count single-digit scans, `samples.write_scans`, seed 0) read by the
same `scandigits worker` processes, chunk size and model two ways:

- `scandigits submit --wait` of the scans' folder, as a user runs it (its start included): one
  batch, from the command's start to its exit;
- the HTTP API (`scandigits serve`): --clients threads upload the scans with httpx,
  --per-request files to a multipart request, each request a batch, while a poller asks
  `GET /v1/batches/{id}` of each batch not yet done, in rounds --poll-pause apart (as often
  as `submit --wait` looks; without pause, the poller's calls take the workers' CPU), until
  every one is; from the first upload to the last batch seen done.

The two alternate (submit, API, submit, API, ...) so that drift in the machine's load falls on
both. Reports each run and the medians: images/s end to end and their ratio API/submit (the
API should cost little over the CLI: its uploads stream to the store as `submit`'s do), the
uploads' requests/s, and p50/p99 of the status calls made while the workers hold the cores.
Everything runs on loopback with an embedded Redis and, by default, a file store in a
temporary folder. Prints a table and saves the same as JSON.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import benchmarks
from benchmarks import throughput
from trainer import mnist, registry, samples, train
from trainer.errors import UserError
from trainer.storage import Store, open_store
from worker import batches, local
from worker.api import tokens

TENANT = "benchmark"
UNLIMITED = {  # one tenant's whole load: no rate limit
    "SCANDIGITS_API_REQUESTS_PER_MINUTE": "0",
    "SCANDIGITS_API_BYTES_PER_MINUTE": "0",
}
TARGET = 0.9  # API/submit, median images/s
API_FIGURES = ("images_per_second", "requests_per_second", "status_p50_ms", "status_p99_ms")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    scans = make_inputs(args.workdir / f"input-{args.count}-{args.seed}", args)
    logs = args.workdir / "run"
    with ExitStack() as stack:
        if args.store:
            store = open_store(args.store)
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="scandigits-api-"))
            store = open_store(f"file://{folder}/store")
        store.check()
        metadata = publish_model(args, store)
        service = stack.enter_context(running(args, store, logs))
        report = measure(args, service, scans, metadata)
    print(table(report))
    benchmarks.save(report, args.out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="single-digit scans")
    parser.add_argument("--seed", type=int, default=0, help="of the generated scans")
    parser.add_argument("--clients", type=int, default=8, help="threads uploading at once")
    parser.add_argument("--per-request", type=int, default=50, help="files in one upload")
    parser.add_argument("--workers", type=int, default=2, help="`scandigits worker` processes")
    parser.add_argument("--chunk-size", type=int, default=50, help="images per task, both ways")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each design, alternating")
    parser.add_argument(
        "--store", help="the store to work in (default: a file store in a temporary folder)"
    )
    parser.add_argument(
        "--model-store",
        help="a store whose current model is published into --store and measured (default: "
        "--store's current model, else the seed MLP trained once into --workdir)",
    )
    parser.add_argument(
        "--poll-pause",
        type=float,
        default=0.3,
        help="seconds between the poller's rounds of status calls, as `submit --wait` polls "
        "(0: none)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a run may take")
    parser.add_argument("--data", default=os.environ.get("SCANDIGITS_MNIST_DIR"), help="MNIST")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/results/api"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/api.json"))
    return parser


def make_inputs(folder: Path, args: argparse.Namespace) -> list[Path]:
    """The scans, rendered into `folder` once (later runs reuse them)."""
    if not (folder / "labels.json").is_file():
        print(f"rendering {args.count} scans into {folder}", file=sys.stderr)
        digits = mnist.load(args.data)
        samples.write_scans(folder, digits.x_test, digits.y_test, args.count, args.seed)
    return sorted(folder.glob("scan-*"))


def publish_model(args: argparse.Namespace, store: Store) -> dict[str, Any]:
    """Make the measured model `store`'s current one; its metadata."""
    if not args.model_store and registry.current_version(store) is not None:
        return registry.resolve(store)
    if args.model_store:
        source = open_store(args.model_store)
    else:
        source = open_store(f"file://{(args.workdir / 'model-mlp').absolute()}")
        if registry.current_version(source) is None:
            print("training the seed MLP (2 epochs) for the benchmark, once", file=sys.stderr)
            train.run(source, "mlp", args.data, "always", epochs=2)
    metadata = registry.resolve(source)
    model = source.get(f"models/v{metadata['version']:04d}/model.keras")
    throughput.publish(store, model, metadata)
    return registry.resolve(store)


@dataclass(frozen=True)
class Service:
    """The running parts: the API's URL, a bearer token for it, and the environment that
    points a command at the same store and Redis."""

    url: str
    token: str
    env: dict[str, str]
    store: Store

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=300)


@contextmanager
def running(args: argparse.Namespace, store: Store, logs: Path) -> Iterator[Service]:
    """An embedded Redis, --workers `scandigits worker` processes and `scandigits serve` (both
    with chunks of --chunk-size), and a token of the benchmark's tenant, until the block ends;
    the workers are ready (their model loaded) when it begins."""
    with ExitStack() as stack:
        broker = stack.enter_context(local.redis(logs / "redis"))
        env = {"SCANDIGITS_BROKER_URL": broker, "SCANDIGITS_STORE": store.url}
        workers = local.start_workers(args.workers, env, logs)
        stack.callback(local.stop_workers, workers)
        url = stack.enter_context(serving(env, args.chunk_size, logs / "serve.log"))
        local.wait_ready(workers, logs, broker, 300)
        name = f"benchmark-{secrets.token_hex(4)}"
        _, secret = tokens.create(store, name, ["submit", "read"], TENANT)
        stack.callback(tokens.revoke, store, name)
        yield Service(url, secret, env, store)


@contextmanager
def serving(env: dict[str, str], chunk_size: int, log: Path) -> Iterator[str]:
    """`scandigits serve` on a free loopback port, without rate limits; its URL once it is
    ready (Redis answers, a model is published)."""
    port = local.free_port()
    command = [sys.executable, "-m", "worker", "serve", "--port", str(port)]
    options = ["--chunk-size", str(chunk_size), "--log-level", "WARNING"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, *options],
            env={**os.environ, **env, **UNLIMITED},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise UserError(f"the service failed to start; see {log}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def measure(
    args: argparse.Namespace, service: Service, scans: list[Path], metadata: dict[str, Any]
) -> dict[str, Any]:
    """A warm-up batch through the API, then --rounds of submit and API runs, alternating."""
    machine = {"cores": os.cpu_count(), "load_average_start": os.getloadavg()}
    files = [(scan.name, scan.read_bytes()) for scan in scans]
    api_run(args, service, files[: args.per_request])  # the service's and workers' first batch
    runs = []
    for round_ in range(1, args.rounds + 1):
        runs.append({"design": "submit", "round": round_, **submit_run(args, service, scans)})
        runs.append({"design": "api", "round": round_, **api_run(args, service, files)})
    medians = {
        "submit": {"images_per_second": _median(runs, "submit", "images_per_second")},
        "api": {key: _median(runs, "api", key) for key in API_FIGURES},
    }
    return {
        "machine": {**machine, "load_average_end": os.getloadavg()},
        "input": {
            "single_digit_scans": len(scans),
            "bytes": sum(len(data) for _, data in files),
            "seed": args.seed,
        },
        "model": {k: metadata[k] for k in ("version", "architecture", "test_accuracy")},
        "workers": args.workers,
        "chunk_size": args.chunk_size,
        "clients": args.clients,
        "files_per_request": args.per_request,
        "poll_pause_seconds": args.poll_pause,
        "runs": runs,
        "medians": medians,
        "ratio": {
            "api/submit": medians["api"]["images_per_second"]
            / medians["submit"]["images_per_second"],
            "target": TARGET,
        },
    }


def _median(runs: list[dict[str, Any]], design: str, key: str) -> float:
    return statistics.median(run[key] for run in runs if run["design"] == design)


def submit_run(args: argparse.Namespace, service: Service, scans: list[Path]) -> dict[str, Any]:
    """`scandigits submit --wait` of the scans' folder, timed from its start to its exit."""
    command = [sys.executable, "-m", "worker", "submit", "--wait"]
    options = ["--chunk-size", str(args.chunk_size), "--timeout", str(args.timeout)]
    start = time.monotonic()
    done = subprocess.run(
        [*command, *options, str(scans[0].parent)],
        env={**os.environ, **service.env},
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - start
    if done.returncode:
        raise UserError(f"submit failed: {done.stderr.strip()[-500:]}")
    store = service.store
    report = batches.status(store, batches.manifest(store, done.stdout.split()[-1]))
    return _row([report], seconds, len(scans))


def api_run(
    args: argparse.Namespace, service: Service, files: list[tuple[str, bytes]]
) -> dict[str, Any]:
    """--clients threads upload `files`, --per-request to a request, while a poller follows the
    batches they make until every one is done."""
    requests = [files[i : i + args.per_request] for i in range(0, len(files), args.per_request)]
    made: list[str] = []  # batch ids, in the order the uploads were answered
    uploaded = threading.Event()
    start = time.monotonic()
    with ThreadPoolExecutor(1) as poller, ThreadPoolExecutor(args.clients) as uploaders:
        deadline = start + args.timeout
        polling = poller.submit(_poll, service, made, uploaded, args.poll_pause, deadline)
        try:
            shares = [requests[n :: args.clients] for n in range(args.clients)]
            list(uploaders.map(lambda share: _upload(service, share, made), shares))
        finally:
            uploaded.set()
        upload_seconds = time.monotonic() - start
        finished, calls, reports = polling.result()
    row = _row(reports, finished - start, len(files))
    row.update(
        batches=len(made),
        requests=len(requests),
        upload_seconds=upload_seconds,
        requests_per_second=len(requests) / upload_seconds,
        status_calls=len(calls),
        status_p50_ms=1000 * float(np.percentile(calls, 50)),
        status_p99_ms=1000 * float(np.percentile(calls, 99)),
    )
    return row


def _upload(service: Service, requests: list[list[tuple[str, bytes]]], made: list[str]) -> None:
    """One client's uploads, one after another; each batch id goes into `made`."""
    with service.client() as client:
        for files in requests:
            reply = client.post("/v1/batches", files=[("files", file) for file in files])
            if reply.status_code != 202:
                raise UserError(f"an upload was answered {reply.status_code}: {reply.text}")
            made.append(reply.json()["batch"])


def _poll(
    service: Service, made: list[str], uploaded: threading.Event, pause: float, deadline: float
) -> tuple[float, list[float], list[dict[str, Any]]]:
    """Ask for the status of each batch in `made` not yet done, in turn, `pause` seconds
    between rounds, until the uploads are over and every batch is done; return when the last
    was seen done, the seconds of each call and the batches' last reports."""
    done: dict[str, dict[str, Any]] = {}
    calls: list[float] = []
    last = 0.0
    with service.client() as client:
        while not (uploaded.is_set() and len(done) == len(made)):
            waiting = [batch for batch in list(made) if batch not in done]
            for batch in waiting:
                start = time.monotonic()
                reply = client.get(f"/v1/batches/{batch}")
                calls.append(time.monotonic() - start)
                if reply.status_code != 200:
                    raise UserError(f"a status call was answered {reply.status_code}: {reply.text}")
                report = reply.json()
                if report["state"] == "done":
                    done[batch], last = report, time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError("the batches took longer than --timeout")
            time.sleep(pause if waiting else 0.01)  # 0.01: no batch made yet
    return last, calls, list(done.values())


def _row(reports: list[dict[str, Any]], seconds: float, images: int) -> dict[str, Any]:
    """A run's throughput, once its batches are checked to hold every image, each read."""
    read = sum(report["images"] for report in reports)
    if read != images or any(report["errors"] for report in reports):
        raise UserError(f"{read} of {images} images were read, some with errors: {reports}")
    return {"images": images, "seconds": seconds, "images_per_second": images / seconds}


def table(report: dict[str, Any]) -> str:
    """The runs and medians as a Markdown table, and the ratio."""
    names = {
        "submit": "`scandigits submit --wait`",
        "api": f"HTTP API, {report['clients']} clients",
    }
    given, model, machine = report["input"], report["model"], report["machine"]
    workers = f"{report['workers']} worker{'s' * (report['workers'] != 1)}"
    lines = [
        f"{given['single_digit_scans']:,} single-digit scans ({given['bytes'] / 1e6:,.0f} MB); "
        f"model v{model['version']} ({model['architecture']}); {workers}, chunks of "
        f"{report['chunk_size']}; {report['files_per_request']} files a request, status polled "
        f"{report['poll_pause_seconds']:g} s apart; "
        f"{machine['cores']} cores, load average {machine['load_average_start'][0]:.1f} at the "
        "start",
        "",
        "| design | run | images/s | seconds | upload req/s | status p50 ms | status p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = [(run["design"], str(run["round"]), run) for run in report["runs"]]
    rows += [(design, "median", median) for design, median in report["medians"].items()]
    for design, label, row in rows:
        seconds = f"{row['seconds']:.1f}" if "seconds" in row else "-"
        api = [f"{row[k]:.1f}" for k in API_FIGURES[1:]] if design == "api" else ["-"] * 3
        lines.append(
            f"| {names[design]} | {label} | {row['images_per_second']:.1f} | {seconds} | "
            f"{' | '.join(api)} |"
        )
    ratio = report["ratio"]
    lines += ["", f"API/submit {ratio['api/submit']:.2f} (median images/s; target ≥ {TARGET})"]
    return "\n".join(lines)


if __name__ == "__main__":
    benchmarks.run(main)
