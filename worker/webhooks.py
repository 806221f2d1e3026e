"""Completion webhooks: when a batch given a `callback_url` finishes, a JSON notification signed
with its token's secret is POSTed there, and sent again with exponential backoff until the
receiver takes it (answers 2xx) or the retry window has passed.

The store holds each notification and every attempt at it (`notifications/<id>.json`, with a
marker in `notifications/pending/` until it is delivered or given up); Redis holds the
schedule, a sorted set of notification ids by the time of their next attempt. The
worker that finishes a batch only writes the notification and schedules it, so a dead receiver
never holds a worker up; `scandigits serve` runs the `Deliverer`, which takes what is due for a
lease (two services never send one notification at once, and one that dies mid-send leaves it
to the next) and sends it. Delivery is at least once: the notification's id, in its body and
its header, lets a receiver drop repeats.

A receiver checks the header `Scandigits-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" under the signing secret>` (`verify`), and refuses an old `t`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import redis
from prometheus_client import Counter

from trainer.errors import AlreadyExists, ObjectMissing
from trainer.storage import Store
from worker import queue, settings
from worker.manifest import Manifest

log = logging.getLogger(__name__)
FOLDER = "notifications/"
PENDING = f"{FOLDER}pending/"  # a marker per notification not yet delivered nor given up
SCHEDULE = "scandigits:webhooks"  # Redis sorted set: notification id -> time of its next attempt
SIGNATURE = "Scandigits-Signature"
LEASE = 60.0  # s a notification taken for sending is left to its sender
TIMEOUT = 10.0  # s a receiver has to answer one attempt
SWEEP = 300.0  # s between checks that every pending notification in the store is scheduled
LONGEST_WAIT = 1800.0  # s between attempts, at most
DELIVERIES = Counter(
    "scandigits_webhook_deliveries",
    "Webhook attempts by outcome: delivered, retry (the receiver failed; sent again later), "
    "failed (given up)",
    ["outcome"],
)
# take up to ARGV[3] ids due by ARGV[1], each moved to ARGV[2] (the end of its lease), at once
_TAKE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id) end
return due
"""


def valid_url(url: str) -> str:
    """`url` if a notification can be sent there: http(s), a host, no user or password; else
    a ValueError saying what it must be."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise ValueError("must be an http:// or https:// URL of at most 2000 bytes")
    if parts.username or parts.password:
        raise ValueError("must not hold a user name or password")
    return url


def sign(secret: str, body: bytes, at: int) -> str:
    """The signature header's value for `body` sent at unix time `at`."""
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """Whether `header` signs `body` under `secret`, at most `tolerance` seconds ago."""
    fields = dict(part.partition("=")[::2] for part in header.split(","))
    try:
        at = int(fields["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, body, at).partition(",v1=")[2]
    fresh = abs(time.time() - at) <= tolerance
    return fresh and hmac.compare_digest(expected, fields.get("v1", ""))


def _key(notification: str) -> str:
    return f"{FOLDER}{notification}.json"


def notify(store: Store, batch: Manifest, summary: dict[str, Any]) -> None:
    """Record that `batch` (which has a callback) finished, and schedule the notification; once
    per batch however often it is finalized. A schedule Redis cannot take now is made by the
    next sweep (`Deliverer`)."""
    assert batch.callback is not None
    notification = f"{batch.batch}.finished"
    body = {
        "id": notification,
        "event": "batch.finished",
        "batch": batch.batch,
        "name": batch.name,
        "state": "done",
        "finished": summary["finished"],
        "images": summary["images"],
        "read": summary["read"],
        "errors": summary["errors"],
        "needs_review": summary["needs_review"],
        "results": {
            "jsonl": f"{batch.callback.results}?format=jsonl",
            "csv": f"{batch.callback.results}?format=csv",
        },
    }
    record = {
        "id": notification,
        "batch": batch.batch,
        "tenant": batch.tenant,
        "url": batch.callback.url,
        "token": batch.callback.token,
        "created": time.time(),
        "body": json.dumps(body),
        "state": "pending",
        "attempts": [],
    }
    # the marker first: a finalizer that dies after it leaves the notification to the sweep
    store.put(f"{PENDING}{notification}", b"")
    try:
        store.create(_key(notification), json.dumps(record).encode())
    except AlreadyExists:
        return
    try:
        queue.client().zadd(SCHEDULE, {notification: time.time()}, nx=True)
    except redis.RedisError as exc:
        log.warning(
            "notification %s not scheduled yet (%s): the next sweep will", notification, exc
        )


class Deliverer:
    """Sends the notifications that are due, each `tick` (`scandigits serve` ticks it often);
    `secret(token_id)` gives a token's signing secret, None once it is revoked."""

    def __init__(self, store: Store, secret: Callable[[str], str | None]) -> None:
        self.store, self.secret = store, secret
        self._http = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        self._swept = -SWEEP

    def tick(self) -> None:
        """Sweep now and then, and send what is due."""
        if time.monotonic() - self._swept > SWEEP:
            self.sweep()
            self._swept = time.monotonic()
        for notification in self._take():
            self.attempt(notification)

    def sweep(self) -> None:
        """Schedule every pending notification in the store that the schedule lacks (Redis was
        down when it was made, or was flushed since)."""
        client = queue.client()
        for key in self.store.list(PENDING):
            client.zadd(SCHEDULE, {key[len(PENDING) :]: time.time()}, nx=True)

    def _take(self, limit: int = 10) -> list[str]:
        """Ids of up to `limit` notifications due now, each leased to this sender."""
        now = time.time()
        taken = queue.client().eval(_TAKE, 1, SCHEDULE, now, now + LEASE, limit)
        return [item.decode() for item in taken]

    def attempt(self, notification: str) -> None:
        """Send the notification once, record the attempt, and schedule the next or end it."""
        try:
            record = json.loads(self.store.get(_key(notification)))
        except ObjectMissing:  # its record is gone
            self._close(notification)
            return
        if record["state"] != "pending":
            self._close(notification)
            return
        started = time.time()
        answer, error = self._send(record)
        record["attempts"].append(
            {
                "at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
                "status": answer,
                "error": error,
                "seconds": round(time.time() - started, 3),
            }
        )
        config = settings.current()
        wait = min(config.webhook_backoff * 2 ** (len(record["attempts"]) - 1), LONGEST_WAIT)
        if answer is not None and 200 <= answer < 300:
            record["state"], outcome = "delivered", "delivered"
        elif time.time() + wait - record["created"] > config.webhook_hours * 3600:
            record["state"], outcome = "failed", "failed"
        else:
            outcome = "retry"
        self.store.put(_key(notification), json.dumps(record).encode())
        DELIVERIES.labels(outcome).inc()
        if outcome == "retry":
            queue.client().zadd(SCHEDULE, {notification: time.time() + wait}, xx=True)
        else:
            self._close(notification)
        log.info(
            "notification %s to %s: %s (%s)", notification, record["url"], outcome, answer or error
        )

    def _close(self, notification: str) -> None:
        """Nothing more to send of the notification: off the schedule, no longer pending."""
        self.store.delete(f"{PENDING}{notification}")
        queue.client().zrem(SCHEDULE, notification)

    def _send(self, record: dict[str, Any]) -> tuple[int | None, str | None]:
        """POST the notification: the receiver's status code, or why there was none."""
        secret = self.secret(record["token"])
        if secret is None:
            return None, "its token was revoked: nothing to sign with"
        refused = _refused(record["url"])
        if refused:
            return None, refused
        body = record["body"].encode()
        headers = {
            "Content-Type": "application/json",
            "Scandigits-Notification": record["id"],
            SIGNATURE: sign(secret, body, int(time.time())),
            "User-Agent": "scandigits-webhooks",
        }
        try:
            return self._http.post(record["url"], content=body, headers=headers).status_code, None
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:200]


def _refused(url: str) -> str | None:
    """Why a notification may not go to `url`: a host that resolves to a private, loopback or
    link-local address (the cluster's own services, a cloud's metadata service), unless the
    settings allow them; None if it may."""
    if settings.current().webhook_private:
        return None
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"[:200]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved:
            return f"{host} is a private address; set SCANDIGITS_WEBHOOK_PRIVATE=1 to allow it"
    return None
