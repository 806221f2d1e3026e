"""Batch bookkeeping in the store: a batch whose finalising worker died is finished by the
client waiting for it."""

from __future__ import annotations

import json

from worker import batches, results
from worker.pipeline import Digit, Reading


def test_waiting_client_finalizes_when_the_finalizer_died(file_store, monkeypatch) -> None:
    batch_id = "20261126-000000-abcdef"
    items = [[{"source": f"s{i}.png", "key": f"k{i}"}] for i in range(2)]
    manifest = {
        "batch": batch_id,
        "created": batches.now(),
        "model": 1,
        "images": 2,
        "chunk_size": 1,
        "review_below": 0.8,
        "chunks": items,
    }
    file_store.put(f"{batches.prefix(batch_id)}/manifest.json", json.dumps(manifest).encode())
    for index, (item,) in enumerate(items):  # both chunks landed; nobody merged them
        reading = Reading([Digit(index, 0.99, (0, 0, 5, 5))])
        chunk = {
            "batch": batch_id,
            "chunk": index,
            "started": batches.now(),
            "finished": batches.now(),
            "seconds": {"infer": 0.01},
            "records": [results.record(item["source"], item["key"], reading, 1, 0.8)],
        }
        file_store.put(batches.chunk_key(batch_id, index), json.dumps(chunk).encode())
    monkeypatch.setattr(batches, "FINALIZE_AFTER", 0.5)
    report = batches.wait(file_store, batch_id, timeout=30, on_progress=lambda _: None)
    assert report["state"] == "done" and report["images_done"] == 2
    lines = file_store.get(f"{batches.prefix(batch_id)}/results.jsonl").splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["0", "1"]
