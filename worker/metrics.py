"""Worker metrics for Prometheus, and the HTTP endpoint serving them with health checks.

Chunks run in Celery's forked pool processes, so metrics use prometheus-client's multiprocess
mode: each process writes to files in PROMETHEUS_MULTIPROC_DIR, which `scandigits worker` sets
before anything imports prometheus-client, and `/metrics` in the main process sums them.
`/livez` answers while the worker runs; `/readyz` only while Redis answers and a model is
published in the store. The server closes every connection `timeout` seconds after accepting
it and serves at most `connections` at once, so slow or half-sent requests cannot pile up
threads in the worker.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

TIMEOUT = 10.0  # Prometheus' default scrape timeout
CONNECTIONS = 16

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


class _BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server with at most `connections` connections at once (more are closed
    on accept) and each closed `timeout` seconds after it was accepted, whatever the client
    sends or fails to read: per read, by the socket timeout, and in all, by a reaper thread."""

    request_queue_size = 64  # a burst is accepted (and the excess closed), not left in SYN retries

    def __init__(
        self, address: tuple[str, int], handler: Any, timeout: float, connections: int
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)
        self.deadline = timeout
        self._slots = threading.BoundedSemaphore(connections)
        self._open: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._reap, name="metrics-reaper", daemon=True).start()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        request.settimeout(self.deadline)
        with self._lock:
            self._open[request] = time.monotonic() + self.deadline
        try:
            super().process_request(request, client_address)
        except Exception:  # no thread started: the server closes the connection
            self._done(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection the client dropped, or the reaper shut, is no error to print."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def _done(self, request: socket.socket) -> None:
        with self._lock:
            self._open.pop(request, None)
        self._slots.release()

    def _reap(self) -> None:
        """Shut the connections past their deadline: their handler's read or write ends."""
        while not self._closed.wait(min(0.25, self.deadline / 4)):
            now = time.monotonic()
            with self._lock:
                late = [sock for sock, deadline in self._open.items() if deadline <= now]
            for sock in late:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._closed.set()
        super().server_close()


def serve(
    host: str,
    port: int,
    ready: Callable[[], str | None],
    timeout: float = TIMEOUT,
    connections: int = CONNECTIONS,
) -> ThreadingHTTPServer:
    """Serve /metrics, /livez and /readyz on `host` and `port` from a daemon thread (the worker
    listens on SCANDIGITS_METRICS_HOST, by default every IPv4 address: the pod's, for Prometheus
    and the kubelet's probes); `ready` returns None when ready, else the reason it is not. Each
    connection gets `timeout` seconds in all, and at most `connections` are served at once."""

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

    server = _BoundedServer((host, port), Handler, timeout, connections)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
