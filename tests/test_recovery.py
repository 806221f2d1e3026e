"""Lost workers' chunks come back without a person: real Redis, `scandigits worker` processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.batch import reading, results_of, status, submit_held, wait_done
from tests.conftest import cli, publish
from trainer import mnist, samples
from worker import batches, local, queue, recovery

pytestmark = pytest.mark.e2e  # starts Redis, the S3 server, workers or the CLI

RECOVERED_WITHIN = 60.0  # s from a worker's loss to its batch being done


@pytest.fixture(scope="module")
def scans(digits: mnist.Mnist, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """96 generated scans of MNIST test digits: four chunks of 24."""
    folder = tmp_path_factory.mktemp("scans")
    return folder, samples.write_scans(folder, digits.x_test, digits.y_test, 96, seed=11)


def _holder(client: redis.Redis, task: str) -> int:
    """The pid of the worker (main process) that holds `task`."""
    value = client.get(f"scandigits:holder:{task}")
    assert value, f"no holder recorded for {task}"
    return int(value.decode().split()[0].rsplit(":", 1)[1])


def _release(pipe: Path, held: int, folder: Path) -> None:
    """Let go of a held input: the pipe becomes the real scan for whoever reads it next."""
    os.close(held)
    pipe.unlink()
    pipe.write_bytes((folder / pipe.name).read_bytes())


@pytest.mark.parametrize("loss", ["kill -9", "SIGSTOP"])
def test_a_lost_workers_chunk_is_requeued_without_a_person(
    loss, redis_url, worker_env, file_store, scans, tmp_path
):
    """One of two workers is lost mid-chunk, killed with its pool or stopped for ever (its
    connection to Redis stays open, as on a lost node): the other worker re-queues the chunk
    once the lost one's heartbeat lapses, and the batch is done within a minute of the loss,
    every input read exactly once, with no command run by a person."""
    env = worker_env
    folder, labels = scans
    names = sorted(labels)
    client = redis.Redis.from_url(redis_url)
    processes = local.start_workers(2, env, tmp_path / "logs")
    try:
        local.wait_ready(processes, tmp_path / "logs")
        batch, pipe = submit_held(file_store, folder, names, 24, env, 24)
        held = reading(pipe)
        victim = next(p for p in processes if p.pid == _holder(client, f"{batch}:1"))
        if loss == "kill -9":
            local.kill(victim)
        else:
            os.killpg(victim.pid, signal.SIGSTOP)
        lost_at = time.monotonic()
        _release(pipe, held, folder)
        while status(batch, env)["state"] != "done":
            assert time.monotonic() - lost_at < RECOVERED_WITHIN, "the lost chunk was not re-run"
            time.sleep(0.5)
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGCONT)
        local.stop_workers(processes)
    records = results_of(batch, env)
    assert sorted(Path(r["source"]).name for r in records) == names
    assert all(r["error"] is None for r in records)


def test_with_no_worker_left_the_batch_is_stalled_until_one_starts(
    worker_env, file_store, scans, tmp_path
):
    """kill -9 of the only worker mid-chunk: once its heartbeat lapses, status calls the batch
    stalled and names the chunk; a worker started later re-queues it by itself."""
    env = worker_env
    folder, labels = scans
    names = sorted(labels)
    processes = local.start_workers(1, env, tmp_path / "logs")
    local.wait_ready(processes, tmp_path / "logs")
    batch, pipe = submit_held(file_store, folder, names, 48, env, 24)
    held = reading(pipe)
    local.kill(processes[0])
    _release(pipe, held, folder)
    time.sleep(queue.LAPSE + 1)
    report = status(batch, env)
    assert report["state"] == "stalled" and report["lost_chunks"] == [2]
    processes = local.start_workers(1, env, tmp_path / "logs2")
    try:
        wait_done(batch, env, "a new worker did not take up the lost chunk")
    finally:
        local.stop_workers(processes)
    records = results_of(batch, env)
    assert sorted(Path(r["source"]).name for r in records) == names


def test_sweep_leaves_live_deliveries_alone(worker_env, file_store, scans, tmp_path):
    """A chunk a live worker holds, however long, is never re-queued; resume finds nothing."""
    env = worker_env
    folder, labels = scans
    names = sorted(labels)[:24]
    processes = local.start_workers(1, env, tmp_path / "logs")
    try:
        local.wait_ready(processes, tmp_path / "logs")
        batch, pipe = submit_held(file_store, folder, names, 0, env, 24)
        held = reading(pipe)
        time.sleep(queue.LAPSE + recovery.SWEEP)
        assert recovery.sweep() == []
        assert "nothing to re-queue" in cli("resume", batch, env=env).stderr
        assert status(batch, env)["state"] == "queued"
        _release(pipe, held, folder)
        wait_done(batch, env, "the held chunk did not finish")
    finally:
        local.stop_workers(processes)
    document = batches.chunk_key(batch, 0)
    assert file_store.exists(document)


def test_redis_never_hands_a_running_chunk_to_another_worker(
    redis_url, trained, file_store, tmp_path
):
    """Redis hands a delivery nobody acknowledged to another worker after its visibility
    timeout: the workers set it to twice their time limit (at least an hour), so a chunk still
    running is never read twice, whatever the limit."""
    publish(file_store, trained)
    env = {
        "SCANDIGITS_BROKER_URL": redis_url,
        "SCANDIGITS_STORE": file_store.url,
        "SCANDIGITS_TASK_TIME_LIMIT": "5000",
    }
    queue.connect(redis_url)
    processes = local.start_workers(1, env, tmp_path / "logs")
    try:
        local.wait_ready(processes, tmp_path / "logs")
        (conf,) = queue.app.control.inspect(timeout=5).conf().values()
    finally:
        local.stop_workers(processes)
    assert conf["task_time_limit"] == 5000 and conf["task_acks_on_timeout"] is False
    assert conf["broker_transport_options"]["visibility_timeout"] == 10_000
