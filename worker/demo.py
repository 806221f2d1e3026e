"""`scandigits demo`: the whole path on one machine, with an embedded Redis and the file store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trainer import mnist, registry, samples, say
from trainer import train as trainer
from trainer.storage import Store
from worker import batches, local, queue

WORKDIR = Path("scandigits-demo")


def run(store: Store, data: str | None, count: int, workers: int, chunk_size: int = 128) -> int:
    """Train if needed, render sample scans, process them on real workers, report accuracy."""
    from tqdm import tqdm

    if registry.current_version(store) is None:
        say("no model yet: training the seed MLP (8 epochs)")
        meta = trainer.run(store, "mlp", data)
        say(f"published model v{meta['version']}: test accuracy {meta['test_accuracy']:.4f}")
    version = registry.resolve(store)["version"]
    scans = WORKDIR / "scans"
    say(f"rendering {count} sample scans from MNIST test digits into {scans}/")
    digits = mnist.load(data)
    labels = samples.write_scans(scans, digits.x_test, digits.y_test, count)
    with local.redis(WORKDIR / "redis") as broker_url:
        queue.connect(broker_url)
        env = {"SCANDIGITS_BROKER_URL": broker_url, "SCANDIGITS_STORE": store.url}
        processes = local.start_workers(workers, env, WORKDIR)
        try:
            say(f"started {workers} workers on embedded Redis {broker_url}; waiting for them")
            local.wait_ready(processes, WORKDIR)
            batch_id = batches.submit(store, [str(scans)], chunk_size=chunk_size)
            say(f"submitted batch {batch_id} ({count} images, model v{version})")
            with tqdm(total=count, desc=batch_id, unit="img", file=sys.stderr) as bar:
                report = batches.wait(store, batch_id, 600, lambda n: bar.update(n - bar.n))
        finally:
            local.stop_workers(processes)
    records = [
        json.loads(line) for line in batches.result_file(store, batch_id, "jsonl").splitlines()
    ]
    correct = sum(r["text"] == labels[Path(r["source"]).name] for r in records)
    summary = json.loads(store.get(f"{batches.prefix(batch_id)}/summary.json"))
    print(
        f"accuracy   {correct / len(records):.2%} ({correct}/{len(records)} scans read correctly)"
    )
    print(
        f"throughput {summary['images_per_second']:.1f} images/s with {workers} workers "
        f"({summary['elapsed_seconds']:.2f} s for {report['images']} images)"
    )
    print(f"errors     {summary['errors']}")
    print(f"results    {report['results']}")
    return 0
