"""Retention: scans hold personal data, so a finished batch's uploaded inputs are deleted
SCANDIGITS_RETAIN_INPUTS_DAYS after it finished, and the whole batch (results too, as
`scandigits batches delete` does) SCANDIGITS_RETAIN_BATCHES_DAYS after; unset, they are kept.

Finishing a batch leaves a marker `retention/<batch>` holding when it finished, so that
`expire` reads the finished batches alone, not every batch's files; `scandigits serve` runs it
hourly, and `scandigits batches expire` runs it once (from a CronJob, say).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from trainer.errors import ObjectMissing, UserError
from trainer.storage import Store
from worker import settings

FOLDER = "retention/"
DAY = 86400.0


@dataclass(frozen=True)
class Expired:
    """What one `expire` deleted: batches whose inputs alone went, and whole batches."""

    inputs: int = 0
    batches: int = 0


def mark(store: Store, batch_id: str, finished: str) -> None:
    """Note that the batch finished at `finished` (ISO time), for `expire`."""
    store.put(f"{FOLDER}{batch_id}", json.dumps({"finished": finished}).encode())


def expire(store: Store, now: datetime | None = None) -> Expired:
    """Delete what the retention settings say has been kept long enough."""
    from worker import batches  # which imports this module, to mark the batches it finishes

    config = settings.current()
    keep_inputs, keep_batches = config.retain_inputs_days, config.retain_batches_days
    if keep_inputs is None and keep_batches is None:
        return Expired()
    now = now or datetime.now(UTC)
    inputs = whole = 0
    for key in list(store.list(FOLDER)):
        batch_id = key[len(FOLDER) :]
        try:
            marker = json.loads(store.get(key))
        except ObjectMissing:  # expired meanwhile by another process
            continue
        age = (now - datetime.fromisoformat(marker["finished"])).total_seconds() / DAY
        if keep_batches is not None and age >= keep_batches:
            with contextlib.suppress(UserError):  # deleted already
                batches.delete(store, batch_id)
            store.delete(key)
            whole += 1
        elif keep_inputs is not None and age >= keep_inputs and not marker.get("inputs_deleted"):
            batches.delete_inputs(store, batch_id)
            store.put(key, json.dumps({**marker, "inputs_deleted": True}).encode())
            inputs += 1
    return Expired(inputs, whole)
