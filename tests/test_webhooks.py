"""Webhook signatures, callback URLs and the receivers a notification may not go to."""

from __future__ import annotations

import json
import time

import pytest

from worker import queue, settings, webhooks
from worker.manifest import Callback, Manifest


def test_signature_verifies_the_body_the_secret_and_the_time() -> None:
    body, now = b'{"id": "b.finished"}', int(time.time())
    header = webhooks.sign("whsec_a", body, now)
    assert header.startswith(f"t={now},v1=") and webhooks.verify("whsec_a", header, body)
    assert not webhooks.verify("whsec_b", header, body)
    assert not webhooks.verify("whsec_a", header, body + b" ")
    assert not webhooks.verify("whsec_a", webhooks.sign("whsec_a", body, now - 600), body)
    assert not webhooks.verify("whsec_a", "v1=00", body)
    assert not webhooks.verify("whsec_a", "t=x,v1=00", body)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "example.com/hook", "http://user:pw@example.com/", "http://"]
)
def test_callback_url_must_be_http_without_credentials(url: str) -> None:
    with pytest.raises(ValueError, match="must"):
        webhooks.valid_url(url)


def test_private_receivers_are_refused_unless_allowed(monkeypatch) -> None:
    monkeypatch.setenv("SCANDIGITS_WEBHOOK_PRIVATE", "0")
    settings.current.cache_clear()
    try:
        for url in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest", "http://10.1.2.3/"):
            assert "private address" in webhooks._refused(url)
        monkeypatch.setenv("SCANDIGITS_WEBHOOK_PRIVATE", "1")
        settings.current.cache_clear()
        assert webhooks._refused("http://127.0.0.1:9/x") is None
    finally:
        settings.current.cache_clear()


def test_a_notification_is_made_once_and_a_sweep_schedules_it_again(
    file_store, redis_url: str
) -> None:
    queue.connect(redis_url)
    queue.client().delete(webhooks.SCHEDULE)
    callback = Callback("https://example.com/hook", "0123456789abcdef", "https://x/results")
    batch = Manifest("b1", "2026-01-01T00:00:00+00:00", 1, 8, 0.8, None, (), "t", None, callback)
    summary = {"finished": "2026-01-01T00:01:00+00:00", "images": 3, "read": 3, "errors": 0}
    for _ in range(2):  # a batch finalized twice is notified once
        webhooks.notify(file_store, batch, {**summary, "needs_review": 1})
    record = json.loads(file_store.get("notifications/b1.finished.json"))
    assert record["state"] == "pending" and record["url"] == callback.url
    assert json.loads(record["body"])["results"]["csv"] == "https://x/results?format=csv"
    assert queue.client().zrange(webhooks.SCHEDULE, 0, -1) == [b"b1.finished"]
    queue.client().delete(webhooks.SCHEDULE)  # Redis flushed
    webhooks.Deliverer(file_store, lambda token: None).sweep()
    assert queue.client().zrange(webhooks.SCHEDULE, 0, -1) == [b"b1.finished"]
    queue.client().delete(webhooks.SCHEDULE)
