"""The compute-only limit: decode, preprocess and inference in-process, one process per core,
with the images already in memory: no broker, no store, no result files.

Each process runs `worker.reading.pipeline.read` on the same chunks the workers would get,
taking the next chunk from a shared counter, so the cores share the work as a queue would share it.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from pathlib import Path
from typing import Any

from trainer.storage import open_store
from worker.reading import inference, pipeline


def peak_rss(pid: int | str = "self") -> int:
    """Peak resident set size (VmHWM) of a process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Compute:
    """`processes` processes with the model loaded and `files` in memory, waiting for `run`."""

    def __init__(self, store_url: str, files: list[Path], chunk_size: int, processes: int) -> None:
        context = multiprocessing.get_context("spawn")  # the parent may hold TensorFlow threads
        self.chunks = [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]
        self._start, self._next = context.Event(), context.Value("i", 0)
        self._out = context.Queue()
        self._processes = [
            context.Process(
                target=_serve,
                args=(store_url, self.chunks, processes, self._start, self._next, self._out),
                daemon=True,
            )
            for _ in range(processes)
        ]
        for process in self._processes:
            process.start()

    def run(self, timeout: float = 3600) -> dict[str, Any]:
        """Once every process is ready, read all chunks; seconds, per-stage seconds, texts read
        by file name and each process's peak RSS."""
        for _ in self._processes:
            self._out.get(timeout=timeout)  # "ready"
        begin = time.monotonic()
        self._start.set()
        reports = [self._out.get(timeout=timeout) for _ in self._processes]
        for process in self._processes:
            process.join()
        return {
            "seconds": max(r["finished"] for r in reports) - begin,
            "stages": sum((Counter(r["stages"]) for r in reports), Counter()),
            "texts": {name: text for r in reports for name, text in r["texts"].items()},
            "peak_rss": [r["peak_rss"] for r in reports],
        }


def _serve(
    store_url: str,
    chunks: list[list[Path]],
    processes: int,
    start: Any,
    counter: Any,
    out: Any,
) -> None:
    """One process: load the model and every file, say ready, then read chunks until none left."""
    inference.configure_threads(processes)
    classifier = inference.classifier(open_store(store_url))
    classifier.warm()
    data = {file: file.read_bytes() for chunk in chunks for file in chunk}
    out.put("ready")
    start.wait()
    stages: Counter[str] = Counter()
    texts = {}
    while True:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        if index >= len(chunks):
            break
        begin = time.monotonic()
        readings, spent = pipeline.read(chunks[index], data.__getitem__, classifier)
        stages.update(spent, chunk=time.monotonic() - begin)
        texts.update({f.name: r.text for f, r in zip(chunks[index], readings, strict=True)})
    out.put(
        {
            "finished": time.monotonic(),
            "stages": dict(stages),
            "texts": texts,
            "peak_rss": peak_rss(),
        }
    )
