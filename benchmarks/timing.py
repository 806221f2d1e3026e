"""Timing the throughput benchmark's designs once they run: a batch from submit to its results
in the store, the share read right, the time per stage (from the workers' metrics or the
in-process reader's), single-image latency with idle workers and peak RSS."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import naive
from benchmarks.compute import Compute, peak_rss
from trainer.storage import Store
from worker import batches, local, queue

STAGES = ("fetch", "decode", "preprocess", "infer", "write", "chunk")  # chunk: wall time
MIB = 1 << 20


def input_key(file: Path) -> str:
    """The store key a generated input is uploaded under: incoming/scans/ or incoming/fields/."""
    return f"incoming/{file.parent.name}/{file.name}"


def _poll(done: Callable[[], bool], interval: float, timeout: float = 3600) -> float:
    """Wait until `done()`; return the monotonic time it was first seen true."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark waited too long; see the logs in --workdir")
        time.sleep(interval)
    return time.monotonic()


def run_batch(cluster: dict[str, Any], chunk_size: int) -> tuple[str, float]:
    """Submit every input (already in the store) as one batch; its id and the seconds from the
    submit call to its results in the store."""
    store = cluster["store"]
    queue.connect(cluster["broker"])
    start = time.monotonic()
    batch = batches.submit(store, [f"{store.url}/incoming/"], chunk_size=chunk_size)
    summary = f"{batches.prefix(batch)}/summary.json"
    return batch, _poll(lambda: store.exists(summary), 0.05) - start


def pipeline_row(
    cluster: dict[str, Any], files: list[Path], labels: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """Latency with idle workers, then one batch of every input with the stage breakdown."""
    store = cluster["store"]
    queue.connect(cluster["broker"])
    waits = []
    scans = [f for f in files if f.parent.name == "scans"]
    for file in scans[: args.latency_runs + 1]:  # the first is a warm-up
        start = time.monotonic()
        summary = f"{batches.prefix(batches.submit(store, [str(file)]))}/summary.json"
        waits.append(_poll(lambda key=summary: store.exists(key), 0.01) - start)
    before = _scrape(cluster["ports"])
    batch, seconds = run_batch(cluster, args.chunk_size)
    spent = _scrape(cluster["ports"])
    spent.subtract(before)
    records = [json.loads(line) for line in batches.result_file(store, batch, "jsonl").splitlines()]
    texts = {Path(r["key"]).name: r["text"] for r in records}
    row = _row(len(files), seconds, texts, labels)
    row["stages"] = _stages(spent, len(files))
    row["stages"]["queue_wait"] = {
        "chunks": spent["queue_wait_count"],
        "mean_seconds": spent["queue_wait_sum"] / max(spent["queue_wait_count"], 1),
    }
    row["latency"] = {
        "runs": len(waits) - 1,
        "p50_seconds": float(np.percentile(waits[1:], 50)),
        "p95_seconds": float(np.percentile(waits[1:], 95)),
    }
    return row


def _scrape(ports: list[int]) -> Counter[str]:
    """Sums and counts of the stage, chunk and queue-wait histograms over the workers' /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: Counter[str] = Counter()
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                kind = sample.name.rsplit("_", 1)[-1]
                if kind not in ("sum", "count"):
                    continue
                if family.name == "scandigits_stage_seconds":
                    totals[f"{sample.labels['stage']}_{kind}"] += sample.value
                elif family.name == "scandigits_chunk_seconds":
                    totals[f"chunk_{kind}"] += sample.value
                elif family.name == "scandigits_queue_wait_seconds":
                    totals[f"queue_wait_{kind}"] += sample.value
    return totals


def _stages(spent: Counter[str], images: int) -> dict[str, Any]:
    """Per stage: seconds summed over the processes, and wall milliseconds per image of one
    process. Fetch, decode and preprocess overlap on each process's 8 threads, so the chunk's
    wall time left after infer and write is split between them as their thread times are."""
    ms = {stage: 1000 * spent[f"{stage}_sum"] / images for stage in STAGES}
    threaded = ("fetch", "decode", "preprocess")
    overlap = max(ms["chunk"] - ms["infer"] - ms["write"], 0.0)
    thread_ms = sum(ms[stage] for stage in threaded) or 1.0
    return {
        stage: {
            "seconds": spent[f"{stage}_sum"],
            "ms_per_image": overlap * ms[stage] / thread_ms if stage in threaded else ms[stage],
        }
        for stage in STAGES
        if f"{stage}_sum" in spent
    }


def _row(images: int, seconds: float, texts: dict[str, str], labels: dict[str, str]) -> dict:
    """Throughput and the share of inputs read right."""
    return {
        "images": images,
        "seconds": seconds,
        "images_per_second": images / seconds,
        "accuracy": sum(texts.get(name) == text for name, text in labels.items()) / len(labels),
    }


def worker_rss(processes: list[subprocess.Popen]) -> dict[str, float]:
    """Peak RSS (VmHWM) in MiB: the largest main process, pool process and their sum."""
    workers = []
    for process in processes:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        workers.append((peak_rss(process.pid), [peak_rss(child) for child in children]))
    return {
        "main": max(main for main, _ in workers) / MIB,
        "pool_process": max(max(pool, default=0) for _, pool in workers) / MIB,
        "worker": max(main + sum(pool) for main, pool in workers) / MIB,
    }


def compute_row(compute: Compute, files: list[Path], labels: dict[str, str]) -> dict[str, Any]:
    """The compute-only limit: every chunk read in-process, one process per core."""
    result = compute.run()
    row = _row(len(files), result["seconds"], result["texts"], labels)
    spent = Counter({f"{stage}_sum": seconds for stage, seconds in result["stages"].items()})
    row["stages"] = _stages(spent, len(files))
    row["peak_rss_mib"] = {"process": max(result["peak_rss"]) / MIB}
    return row


def naive_row(
    process: subprocess.Popen,
    broker: str,
    store: Store,
    files: list[Path],
    labels: dict[str, str],
) -> dict[str, Any]:
    """The tutorial design on the file store: a task and a result object per image."""
    naive.app.conf.broker_url = broker
    keys = [input_key(f) for f in files]
    naive.submit("warm-up", keys[:1])
    _poll(lambda: store.exists(naive.result_key("warm-up", 0)), 0.05)
    start = time.monotonic()
    naive.submit("timed", keys)
    done = _poll(lambda: sum(1 for _ in store.list("naive/timed/")) == len(keys), 0.25)
    records = [json.loads(store.get(naive.result_key("timed", i))) for i in range(len(keys))]
    row = _row(len(keys), done - start, {Path(r["key"]).name: r["text"] for r in records}, labels)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    row["peak_rss_mib"] = {
        "main": peak_rss(process.pid) / MIB,
        "pool_process": max(peak_rss(child) for child in children) / MIB,
    }
    local.stop_workers([process])
    return row
