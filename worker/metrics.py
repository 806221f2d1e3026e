"""Worker metrics for Prometheus, and the HTTP endpoint serving them with health checks.

Chunks run in Celery's forked pool processes, so metrics use prometheus-client's multiprocess
mode: each process writes to files in PROMETHEUS_MULTIPROC_DIR, which `scandigits worker` sets
before anything imports prometheus-client, and `/metrics` in the main process sums them.
`/livez` answers while the worker runs; `/readyz` only while Redis answers and a model is
published in the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_TIMES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

IMAGES = Counter("scandigits_images", "Images read, by outcome (read or error)", ["outcome"])
CHUNK_SECONDS = Histogram("scandigits_chunk_seconds", "Time to process one chunk", buckets=_TIMES)
STAGE_SECONDS = Histogram(
    "scandigits_stage_seconds", "Time per chunk spent in each stage", ["stage"], buckets=_TIMES
)
QUEUE_WAIT = Histogram(
    "scandigits_queue_wait_seconds", "From submission to a chunk's start", buckets=_TIMES
)
MODEL_VERSION = Gauge("scandigits_model_version", "Model version in use", multiprocess_mode="max")


def serve(port: int, ready: Callable[[], str | None]) -> ThreadingHTTPServer:
    """Serve /metrics, /livez and /readyz on `port` from a daemon thread; `ready` returns
    None when ready, else the reason it is not."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                registry = CollectorRegistry()
                multiprocess.MultiProcessCollector(registry)
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/livez":
                self._reply(200, b"ok\n")
            elif self.path == "/readyz":
                reason = ready()
                self._reply(503 if reason else 200, f"{reason or 'ok'}\n".encode())
            else:
                self._reply(404, b"not found\n")

        def _reply(self, status: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            """Probes every few seconds would flood the worker log."""

    server = ThreadingHTTPServer(("", port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
