"""Completion webhooks end to end: a real receiver on loopback gets the signed notification of
a batch submitted over the API, again after it failed once, and a dead receiver holds up no
worker; attempts are recorded in the store."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.api.conftest import Api, done, error, files
from trainer.errors import ObjectMissing
from worker import local, webhooks
from worker.api import tokens

pytestmark = pytest.mark.e2e


class _Receiver(ThreadingHTTPServer):
    """A webhook receiver answering each POST with the next of `answers` (then 200), keeping
    what it was sent."""

    def __init__(self, answers: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers
        self.got: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/hooks/scans"


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append((dict(self.headers), body))
        self.send_response(self.server.answers.pop(0) if self.server.answers else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def _receiving(answers: list[int]) -> Iterator[_Receiver]:
    receiver = _Receiver(answers)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()


def _record(service: Api, batch: str, attempts: int) -> dict:
    """The store's record of the batch's notification once it has `attempts` attempts."""
    deadline = time.monotonic() + 60
    while True:
        try:
            record = json.loads(service.store.get(f"notifications/{batch}.finished.json"))
            if len(record["attempts"]) >= attempts:
                return record
        except ObjectMissing:  # not written yet
            pass
        assert time.monotonic() < deadline, "no notification recorded"
        time.sleep(0.2)


def test_signed_notification_sent_again_after_a_failure(service: Api, scans) -> None:
    folder, labels = scans
    name = f"hooks-{time.monotonic_ns()}"
    client = service.client("submit", "read", name=name)
    secret = tokens.signing_secret(service.store, tokens.named(service.store, name)[0].id)
    with _receiving([500]) as receiver:
        reply = client.post(
            "/v1/batches",
            files=files(folder, sorted(labels)[:20]),
            data={"callback_url": receiver.url, "name": "hooked"},
        )
        assert reply.status_code == 202, reply.text
        batch = reply.json()["batch"]
        done(client, batch)
        record = _record(service, batch, 2)
        time.sleep(1.0)  # a delivered notification is not sent again
        got = list(receiver.got)
    assert len(got) == 2
    assert [a["status"] for a in record["attempts"]] == [500, 200]
    assert record["state"] == "delivered"
    assert not service.store.exists(f"{webhooks.PENDING}{batch}.finished")
    (first, body), (second, again) = got
    assert body == again and first["Scandigits-Notification"] == f"{batch}.finished"
    assert second["Scandigits-Notification"] == first["Scandigits-Notification"]
    for headers, sent in got:
        assert webhooks.verify(secret, headers[webhooks.SIGNATURE], sent)
        assert not webhooks.verify(secret, headers[webhooks.SIGNATURE], sent + b" ")
        assert not webhooks.verify("whsec_other", headers[webhooks.SIGNATURE], sent)
    note = json.loads(body)
    assert note["id"] == f"{batch}.finished" and note["event"] == "batch.finished"
    assert (note["batch"], note["state"], note["name"]) == (batch, "done", "hooked")
    assert note["images"] == 20 and note["errors"] == 0
    results = client.get(note["results"]["csv"])
    assert results.status_code == 200 and len(results.text.splitlines()) == 20 + 1


def test_a_dead_receiver_holds_up_no_worker(service: Api, scans) -> None:
    folder, labels = scans
    client = service.client("submit", "read")
    dead = f"http://127.0.0.1:{local.free_port()}/gone"
    names = sorted(labels)[:4]
    batch = client.post(
        "/v1/batches", files=files(folder, names), data={"callback_url": dead}
    ).json()["batch"]
    done(client, batch)
    record = _record(service, batch, 2)  # sent again after the backoff, still refused
    assert record["state"] == "pending" and all(a["status"] is None for a in record["attempts"])
    assert service.store.exists(f"{webhooks.PENDING}{batch}.finished")
    assert "ConnectError" in record["attempts"][0]["error"]
    after = client.post("/v1/batches", files=files(folder, names)).json()["batch"]
    assert done(client, after)["images_done"] == len(names)


def test_a_callback_url_not_http_is_refused(service: Api, scans) -> None:
    folder, labels = scans
    client = service.client("submit")
    reply = client.post(
        "/v1/batches", files=files(folder, sorted(labels)[:1]), data={"callback_url": "ftp://x/y"}
    )
    assert error(reply, 422) == (
        "callback_url: must be an http:// or https:// URL of at most 2000 bytes"
    )
