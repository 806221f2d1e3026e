"""The metrics endpoint holds up against slow and half-sent requests: each connection is closed
after the request timeout, and at most a bounded number are served at once."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker import local, metrics

TIMEOUT = 1.0
CONNECTIONS = 8


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[int]:
    """A real metrics server on loopback with a short timeout; yield its port."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    port = local.free_port()
    served = metrics.serve(
        "127.0.0.1", port, lambda: None, timeout=TIMEOUT, connections=CONNECTIONS
    )
    yield port
    served.shutdown()
    served.server_close()


def get(port: int, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
        return reply.status, reply.headers["Content-Type"], reply.read().decode()


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_half_sent_requests_are_closed_and_threads_stay_bounded(server: int) -> None:
    before = threading.active_count()
    started = time.monotonic()
    socks = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", server))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        socks.append(sock)
    try:
        time.sleep(0.3)
        assert threading.active_count() <= before + CONNECTIONS + 1
        assert all(closed_by_server(s, TIMEOUT + 2) for s in socks)
        assert time.monotonic() - started < TIMEOUT + 3
    finally:
        for sock in socks:
            sock.close()
    status, kind, _ = get(server, "/metrics")
    assert status == 200 and kind.startswith("text/plain; version=")
    assert get(server, "/livez")[::2] == (200, "ok\n")
    # the handlers of the connections shut at the deadline end soon after: none is left behind
    settled = time.monotonic() + TIMEOUT + 2
    while threading.active_count() > before + 1 and time.monotonic() < settled:
        time.sleep(0.05)
    assert threading.active_count() <= before + 1


def test_a_trickled_request_is_closed_at_the_timeout(server: int) -> None:
    """Bytes sent just often enough to beat a per-read timeout do not keep a connection."""
    sock = socket.create_connection(("127.0.0.1", server))
    started = time.monotonic()
    try:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        while time.monotonic() - started < TIMEOUT + 2:
            try:
                sock.sendall(b"X")
            except OSError:
                break
            if closed_by_server(sock, TIMEOUT / 3):
                break
        assert time.monotonic() - started < TIMEOUT + 1.5
    finally:
        sock.close()
