"""Model versions over the HTTP API, shared by every tenant, and promoting one to `current`
there and with `scandigits models promote`: batches submitted afterwards are pinned to it.
The versions published are small files, never loaded: no model is trained or read."""

from __future__ import annotations

import re
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest
import redis

from tests.api.conftest import Api, error, serving
from tests.conftest import cli
from trainer import registry
from trainer.storage import open_store
from worker import batches

pytestmark = pytest.mark.e2e

PNG = cv2.imencode(".png", np.full((40, 60), 200, np.uint8))[1].tobytes()


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The service with two versions published (v2 current) and no worker, on a file store and
    a Redis database of its own (what it queues stays queued)."""
    folder = tmp_path_factory.mktemp("api-models")
    store = open_store(f"file://{folder / 'store'}")
    store.check()
    for number, architecture in ((1, "mlp"), (2, "cnn")):
        path = folder / f"model-{number}.keras"
        path.write_bytes(f"model {number}".encode())
        metadata = {
            "architecture": architecture,
            "test_accuracy": 0.9 + number / 100,
            "train_accuracy": 0.95,
            "created": f"2026-01-0{number}T00:00:00+00:00",
        }
        registry.publish(store, path, metadata, "always")
    broker = re.sub(r"/\d+$", "/6", redis_url)
    env = {"SCANDIGITS_BROKER_URL": broker, "SCANDIGITS_STORE": store.url}
    with serving(env, folder / "serve.log") as url:
        yield Api(url, store, env)
    redis.Redis.from_url(broker).flushdb()


def _model_of_a_new_batch(api: Api, client: httpx.Client) -> int:
    """The model version a batch submitted now is pinned to, as its manifest records it."""
    reply = client.post("/v1/batches", files={"files": ("a.png", PNG)})
    assert reply.status_code == 202, reply.text
    return batches.manifest(api.store, reply.json()["batch"]).model


def test_list_and_promote(api: Api) -> None:
    reader = api.client("read", tenant="acme")
    listed = reader.get("/v1/models").json()
    assert listed["current"] == 2
    assert listed["models"] == [
        {
            "version": number,
            "created": f"2026-01-0{number}T00:00:00+00:00",
            "architecture": architecture,
            "test_accuracy": 0.9 + number / 100,
            "sha256": registry.resolve(api.store, number)["sha256"],
            "current": number == 2,
        }
        for number, architecture in ((1, "mlp"), (2, "cnn"))
    ]
    assert api.client("read", tenant="rival").get("/v1/models").json() == listed, "shared"

    admin = api.client("admin", tenant="acme")
    back = admin.post("/v1/models/1/promote")
    assert back.status_code == 200, back.text
    assert back.json()["version"] == 1 and back.json()["current"] is True
    assert registry.current_version(api.store) == 1
    assert reader.get("/v1/models").json()["current"] == 1
    assert _model_of_a_new_batch(api, admin) == 1
    assert admin.post("/v1/models/2/promote").json()["architecture"] == "cnn"
    assert _model_of_a_new_batch(api, admin) == 2

    assert error(admin.post("/v1/models/9/promote"), 404) == "no such model version"
    assert "version" in error(admin.post("/v1/models/latest/promote"), 422)
    assert error(reader.post("/v1/models/1/promote"), 403) == "the token lacks the admin scope"
    submitter = api.client("submit", tenant="acme")
    assert error(submitter.get("/v1/models"), 403) == "the token lacks the read scope"
    assert error(httpx.get(f"{api.url}/v1/models"), 401) == "a bearer token is required"
    assert registry.current_version(api.store) == 2


def test_the_promote_command(api: Api) -> None:
    store = ["--store", api.store.url]
    done = cli("models", "promote", "1", *store)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "model v1 (mlp) is now current: test accuracy 0.9100\n"
    assert api.client("read").get("/v1/models").json()["current"] == 1
    assert "*       1  mlp" in cli("models", *store).stdout

    unknown = cli("models", "promote", "9", *store)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert unknown.stderr.startswith("error: model version 9 not found in ")
    assert len(unknown.stderr.splitlines()) == 1
    assert cli("models", "promote", "2", *store).returncode == 0
    assert registry.current_version(api.store) == 2
