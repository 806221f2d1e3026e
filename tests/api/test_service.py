"""The HTTP API end to end: uploads read by real workers, results streamed, idempotent
retries, store URLs, tokens, tenants and deletion, on the file store and the S3 server."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import SCANS, Api, done, error, files
from tests.batch import reading
from trainer import forms as trainer_forms
from trainer.storage import FileStore
from worker import batches, queue
from worker.api import tokens, uploads

pytestmark = pytest.mark.e2e


def _pdf(folder: Path, names: list[str]) -> bytes:
    """A PDF with a page per scan, at the resolution PDF pages are read at."""
    pages = [Image.open(folder / name).convert("L") for name in names]
    out = io.BytesIO()
    pages[0].save(out, "PDF", save_all=True, append_images=pages[1:], resolution=200)
    return out.getvalue()


def test_upload_scans_and_a_pdf_and_collect_results(service: Api, scans) -> None:
    folder, labels = scans
    names = sorted(labels)
    client = service.client("submit", "read")
    pdf = _pdf(folder, names[:3])
    reply = client.post(
        "/v1/batches",
        files=[*files(folder, names), ("files", ("forms/doc.pdf", pdf))],
        data={"name": "morning", "chunk_size": "64"},
    )
    assert reply.status_code == 202, reply.text
    batch = reply.json()["batch"]
    assert reply.json()["status_url"] == f"{service.url}/v1/batches/{batch}"
    assert reply.headers["location"] == reply.json()["status_url"]

    report = done(client, batch)
    assert report["images"] == report["images_done"] == SCANS + 3 and report["name"] == "morning"
    assert (
        report["chunks"] == 4 and report["results"] == f"{service.url}/v1/batches/{batch}/results"
    )
    records = [json.loads(line) for line in client.get(report["results"]).text.splitlines()]
    expected = [*names, "forms/doc.pdf#1", "forms/doc.pdf#2", "forms/doc.pdf#3"]
    assert [r["source"] for r in records] == expected, "file names label results, in order"
    truth = [labels[n] for n in names] + [labels[n] for n in names[:3]]
    correct = sum(r["text"] == text for r, text in zip(records, truth, strict=True))
    assert correct >= 0.75 * len(truth), f"{correct}/{len(truth)} read correctly"
    assert [r["page"] for r in records[-3:]] == [1, 2, 3]
    assert all(r["key"].startswith(f"batches/{batch}/inputs/") for r in records)

    table = client.get(f"/v1/batches/{batch}/results", params={"format": "csv"})
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [row["source"] for row in rows] == expected

    listed = client.get("/v1/batches", params={"name": "morning"}).json()
    assert [b["batch"] for b in listed["batches"]] == [batch] and listed["next_cursor"] is None
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'method="POST",route="/v1/batches",status="202"' in metrics
    assert 'method="GET",route="/v1/batches/{batch_id}",status="200"' in metrics
    uploaded = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("scandigits_api_upload_bytes_total")
    )
    assert uploaded >= sum((folder / n).stat().st_size for n in names) + len(pdf)


def test_a_file_too_big_to_hold_in_memory_arrives_whole(service: Api, scans) -> None:
    """A file over HELD_PART_BYTES goes to disk as it arrives, and reaches the store intact."""
    folder, labels = scans
    name = sorted(labels)[0]
    scan = np.asarray(Image.open(folder / name).convert("L").resize((1400, 1400)), np.int16)
    noise = np.random.default_rng(0).integers(-12, 13, scan.shape)
    big = cv2.imencode(".png", np.clip(scan + noise, 0, 255).astype(np.uint8))[1].tobytes()
    assert len(big) > uploads.HELD_PART_BYTES
    client = service.client("submit", "read")
    reply = client.post("/v1/batches", files=[("files", ("big.png", big)), *files(folder, [name])])
    assert reply.status_code == 202, reply.text
    report = done(client, reply.json()["batch"])
    assert report["images_done"] == 2 and report["errors"] == 0
    records = [json.loads(line) for line in client.get(report["results"]).text.splitlines()]
    assert [service.store.get(r["key"]) for r in records] == [big, (folder / name).read_bytes()]


def test_a_retried_request_makes_one_batch(service: Api, scans) -> None:
    """Two requests with one Idempotency-Key at once, then a third: one batch, one set of
    inputs; another key or another tenant makes another batch."""
    folder, labels = scans
    names = sorted(labels)[:4]
    client = service.client("submit", "read")

    def send(key: str, via: httpx.Client = client) -> httpx.Response:
        return via.post("/v1/batches", files=files(folder, names), headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(send, ["scan-run-1", "scan-run-1"])
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    batch = first.json()["batch"]
    assert second.json()["batch"] == batch
    assert send("scan-run-1").json()["batch"] == batch
    done(client, batch)
    inputs = {key.rsplit("/", 1)[0] for key in service.store.list(f"batches/{batch}/inputs/")}
    assert len(inputs) == 1, "the losing request's uploads are gone"
    assert len(list(service.store.list(f"batches/{batch}/inputs/"))) == len(names)
    listed = [
        b["batch"] for b in client.get("/v1/batches", params={"limit": 100}).json()["batches"]
    ]
    assert listed.count(batch) == 1

    other = send("scan-run-2").json()["batch"]
    elsewhere = send("scan-run-1", service.client("submit", tenant="elsewhere")).json()["batch"]
    assert len({batch, other, elsewhere}) == 3


def test_store_urls_inside_the_tenants_folder(service: Api, scans) -> None:
    folder, labels = scans
    names = sorted(labels)[:3]
    for name in names:
        service.store.put(f"tenants/acme/files/in/{name}", (folder / name).read_bytes())
    client = service.client("submit", "read")
    root = service.store.url
    reply = client.post("/v1/batches", json={"urls": [f"{root}/tenants/acme/files/in/"]})
    assert reply.status_code == 202, reply.text
    batch = reply.json()["batch"]
    done(client, batch)
    records = client.get(f"/v1/batches/{batch}/results").text.splitlines()
    assert [json.loads(r)["key"] for r in records] == [f"tenants/acme/files/in/{n}" for n in names]
    for outside in (f"{root}/models/", f"{root}/tenants/other/files/", f"{root}/batches/{batch}/"):
        assert "is not inside" in error(client.post("/v1/batches", json={"urls": [outside]}), 400)


def test_tokens_scopes_and_tenants(service: Api, scans) -> None:
    folder, labels = scans
    names = sorted(labels)[:2]
    owner = service.client("admin", tenant="acme")
    batch = owner.post("/v1/batches", files=files(folder, names)).json()["batch"]
    bare = httpx.Client(base_url=service.url)

    reply = bare.get(f"/v1/batches/{batch}")
    assert error(reply, 401) == "a bearer token is required"
    assert reply.headers["www-authenticate"] == "Bearer"
    for secret in ("nonsense", "sd_0123456789abcdef_" + "x" * 43):
        reply = bare.get("/v1/batches", headers={"Authorization": f"Bearer {secret}"})
        assert "not valid" in error(reply, 401)
    reader = service.client("read", tenant="acme")
    assert "lacks the submit scope" in error(
        reader.post("/v1/batches", files=files(folder, names)), 403
    )
    assert "lacks the admin scope" in error(reader.delete(f"/v1/batches/{batch}"), 403)
    assert "lacks the read scope" in error(service.client("submit").get("/v1/batches"), 403)
    assert reader.get(f"/v1/batches/{batch}").status_code == 200

    stranger = service.client("admin", tenant="rival")
    for reply in (
        stranger.get(f"/v1/batches/{batch}"),
        stranger.get(f"/v1/batches/{batch}/results"),
        stranger.delete(f"/v1/batches/{batch}"),
        stranger.get("/v1/batches/not-a-batch"),
    ):
        assert error(reply, 404) == "no such batch"
    assert batch not in str(stranger.get("/v1/batches").json())

    revoked = service.client("read", name="revoked")
    assert revoked.get("/v1/batches").status_code == 200
    tokens.revoke(service.store, "revoked")
    assert "not valid" in error(revoked.get("/v1/batches"), 401)
    done(owner, batch)


def test_delete_removes_the_batch(service: Api, scans) -> None:
    folder, labels = scans
    client = service.client("admin", tenant="acme")
    batch = client.post("/v1/batches", files=files(folder, sorted(labels)[:3])).json()["batch"]
    done(client, batch)
    assert client.delete(f"/v1/batches/{batch}").status_code == 204
    assert error(client.get(f"/v1/batches/{batch}"), 404) == "no such batch"
    assert not list(service.store.list(f"batches/{batch}/"))
    assert not service.store.exists(f"tenants/acme/batches/{batch}")
    assert batch not in str(client.get("/v1/batches", params={"limit": 100}).json())
    assert error(client.delete(f"/v1/batches/{batch}"), 404) == "no such batch"
    assert batch not in batches.open_batches(service.store)


def test_a_batch_deleted_while_a_worker_reads_it_leaves_nothing(service: Api, scans) -> None:
    """One input is a named pipe: its chunk stays in a worker's hands while the batch is
    deleted; let go, the worker finds the batch gone and drops what it read."""
    if not isinstance(service.store, FileStore):
        pytest.skip("a named pipe holds the chunk: the file store alone")
    folder, labels = scans
    names = sorted(labels)[:4]
    held = Path(service.store.root, "tenants/acme/files/held")
    held.mkdir(parents=True)
    for name in names[1:]:
        (held / name).write_bytes((folder / name).read_bytes())
    os.mkfifo(held / names[0])
    client = service.client("admin", tenant="acme")
    urls = {"urls": [f"{service.store.url}/tenants/acme/files/held/"], "chunk_size": 2}
    batch = client.post("/v1/batches", json=urls).json()["batch"]
    pipe = reading(held / names[0])
    assert client.delete(f"/v1/batches/{batch}").status_code == 204
    os.set_blocking(pipe, True)
    with os.fdopen(pipe, "wb") as image:
        image.write((folder / names[0]).read_bytes())
    queue.connect(service.env["SCANDIGITS_BROKER_URL"])
    deadline = time.monotonic() + 60
    while any(d.task.startswith(f"{batch}:") for d in queue.deliveries()):
        assert time.monotonic() < deadline, "the worker did not let the chunk go"
        time.sleep(0.1)
    assert not list(service.store.list(f"batches/{batch}/")), "no results left behind"
    assert queue.pending(batch, range(2)) == set()


def test_forms_read_with_a_stored_template(service: Api, digits, tmp_path: Path) -> None:
    truth = trainer_forms.write_forms(tmp_path, digits.x_test, digits.y_test, 1, seed=3)
    ((page, values),) = truth.items()
    name = page.split("#")[0]
    admin = service.client("admin", tenant="forms")
    put = admin.put(
        "/v1/templates/expense",
        content=(tmp_path / "form.yaml").read_bytes(),
        headers={"Content-Type": "application/yaml"},
    )
    assert put.status_code == 201, put.text
    upload = files(tmp_path / "scans", [name])
    unknown = admin.post("/v1/batches", files=upload, data={"template": "other"})
    assert "other" in error(unknown, 422)
    assert batches.listing(service.store, "forms")[0] == []
    reply = admin.post("/v1/batches", files=upload, data={"template": "expense"})
    assert reply.status_code == 202, reply.text
    report = done(admin, reply.json()["batch"])
    assert report["images"] == 1
    (record,) = [json.loads(line) for line in admin.get(report["results"]).text.splitlines()]
    assert set(record["fields"]) == set(values)
    right = sum(record["fields"][f]["text"] == v for f, v in values.items())
    assert right >= len(values) // 2, (record["fields"], values)
