"""A rate limit per token on requests and on uploaded bytes, kept in this process's memory.

Each token has a bucket per budget holding a minute's worth of it (requests:
SCANDIGITS_API_REQUESTS_PER_MINUTE, bytes: SCANDIGITS_API_BYTES_PER_MINUTE), refilled
continuously at that rate: a token may spend a minute's budget at once, then as fast as it
refills. Past it, the request is answered 429 with `Retry-After`, the whole seconds until the
bucket holds enough again. A budget of 0 is no limit. The buckets are the process's own, one
per token that has made a request: each `scandigits serve` process counts what reaches it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.api.errors import ApiError
from worker.api.tokens import Token


@dataclass
class _Bucket:
    level: float
    checked: float  # the clock's time `level` was counted at


class _Budget:
    """`per_minute` units of something a minute per token; thread-safe (FastAPI runs sync
    routes and dependencies in a thread pool)."""

    def __init__(
        self, per_minute: int, unit: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute, self.unit = per_minute, unit
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def spend(self, token: Token, amount: int) -> None:
        """Take `amount` from the token's bucket, or raise ApiError 429 with Retry-After and
        take nothing. An amount over the whole budget is taken from a full bucket, leaving it
        in debt, so that one large piece cannot be refused forever."""
        if not self.per_minute:
            return
        with self._lock:
            now = self._clock()
            bucket = self._buckets.setdefault(token.id, _Bucket(self.per_minute, now))
            refilled = (now - bucket.checked) * self.per_minute / 60
            level = min(self.per_minute, bucket.level + refilled)
            needed = min(amount, self.per_minute)
            if level < needed:
                wait = max(1, math.ceil((needed - level) * 60 / self.per_minute))
                raise ApiError(
                    429,
                    f"rate limit: over {self.per_minute:,} {self.unit} a minute for this token; "
                    f"retry in {wait} s",
                    {"Retry-After": str(wait)},
                )
            bucket.level, bucket.checked = level - amount, now


class RateLimit:
    """The service's two budgets per token: requests, and bytes uploaded."""

    def __init__(
        self,
        requests_per_minute: int,
        bytes_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests = _Budget(requests_per_minute, "requests", clock)
        self.bytes = _Budget(bytes_per_minute, "bytes uploaded", clock)

    def count_request(self, token: Token) -> None:
        """Count one request of `token`; ApiError 429 if it has none left this minute."""
        self.requests.spend(token, 1)

    def spend_bytes(self, token: Token, count: int) -> None:
        """Count `count` bytes received from `token` (call it per piece of a body as it
        arrives); ApiError 429 if it is over its bytes this minute."""
        self.bytes.spend(token, count)
