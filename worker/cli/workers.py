"""The worker command: a Celery worker reading chunks from the queue, with its metrics and
health endpoint."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

import typer

from trainer.errors import UserError
from worker import settings
from worker.cli.options import (
    DEFAULT_BROKER,
    DEFAULT_STORE,
    BrokerUrl,
    LogLevel,
    StoreUrl,
    checked_store,
)

TimeLimit = Annotated[
    int,
    typer.Option(
        envvar="SCANDIGITS_TASK_TIME_LIMIT",
        min=10,
        help="Seconds a chunk may run before its worker process is killed (soft limit: 90%); "
        "a chunk delivered longer ago than this without results belongs to a dead worker",
    ),
]


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            envvar="SCANDIGITS_CONCURRENCY",
            min=1,
            help="Worker processes [default: the container's CPUs]",
            show_default=False,
        ),
    ] = None,
    log_level: LogLevel = "INFO",
    time_limit: TimeLimit = 600,
    metrics_port: Annotated[
        int,
        typer.Option(
            envvar="SCANDIGITS_METRICS_PORT",
            min=0,
            max=65535,
            help="Port for /metrics, /livez and /readyz (0: none)",
        ),
    ] = 9100,
    store: StoreUrl = DEFAULT_STORE,
    broker: BrokerUrl = DEFAULT_BROKER,
) -> None:
    """Run a Celery worker that reads chunks of images from the queue."""
    # before anything imports prometheus-client: pool processes write metrics to files here
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="scandigits-metrics-")
    )
    from worker import metrics
    from worker.queue import app as celery
    from worker.queue import connect, ping
    from worker.reading import inference

    concurrency = concurrency or inference.cpu_limit()
    connect(broker)
    target = checked_store(store)
    celery.conf.update(
        scandigits_store=target.url,
        worker_concurrency=concurrency,
        task_time_limit=time_limit,
        task_soft_time_limit=int(0.9 * time_limit),
        # Redis hands a delivery unacknowledged this long to another worker: never while a
        # chunk can still be running (dead workers' chunks are found sooner: worker.recovery)
        broker_transport_options={"visibility_timeout": max(3600, 2 * time_limit)},
    )

    def ready() -> str | None:
        from trainer import registry

        try:
            ping(broker)
            registry.resolve(target)
        except UserError as exc:
            return str(exc)
        return None

    if metrics_port:
        try:
            metrics.serve(settings.current().metrics_host, metrics_port, ready)
        except OSError as exc:
            raise UserError(f"cannot serve metrics on port {metrics_port}: {exc.strerror}") from exc
    celery.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={log_level}",
            f"--hostname=scandigits-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
