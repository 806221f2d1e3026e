"""The HTTP API against hostile and over-limit requests, with no worker (what it queues stays
queued): uploads over the limits are refused (413) with nothing queued or left in the store, a
2 GB one streamed in flat memory; names from uploads only label; malformed bodies are one-line
JSON errors; queued batches are listed by page and cancelled."""

from __future__ import annotations

import io
import json
import os
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import redis

from benchmarks.compute import peak_rss
from tests.api.conftest import Api, error, serving
from tests.conftest import cli, publish
from trainer.storage import open_store
from worker import batches, queue

pytestmark = pytest.mark.e2e

PNG = cv2.imencode(".png", np.full((40, 60), 200, np.uint8))[1].tobytes()
BIG = PNG + bytes(30_000)  # over the idle service's 20,000 bytes
MULTIPART_X = "multipart/form-data; boundary=x"
CUT_SHORT = b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\nabc'
FIELD_ONLY = b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--b--\r\n'
HUGE_HEADER = b"--x\r\nX-Padding: " + b"a" * 20_000 + b"\r\n\r\nabc\r\n--x--\r\n"
HUGE = 2_100_000_000  # one file's bytes: over the body limit of the service below
HUGE_LIMITS = {  # a file may be larger: it is the whole body's limit that refuses it
    "SCANDIGITS_MAX_BYTES": "3000000000",
    "SCANDIGITS_MAX_ARCHIVE_BYTES": "2000000000",
    "SCANDIGITS_API_BYTES_PER_MINUTE": "0",
}
MIB = 1 << 20


def _refused(reply: httpx.Response, status: int) -> str:
    """The one-line error of a reply that must have `status`, naming no path of the store."""
    message = error(reply, status)
    assert "file://" not in message, message
    return message


def _made(api: Api) -> tuple[list[str], int]:
    """What the service has made: the keys under batches/, and the tasks in the queue."""
    waiting = redis.Redis.from_url(api.env["SCANDIGITS_BROKER_URL"])
    return list(api.store.list("batches/")), waiting.llen(queue.app.conf.task_default_queue)


def _multipart(names: list[str], data: bytes) -> tuple[bytes, dict[str, str]]:
    """A multipart body of files under `names`, sent as they are, unescaped."""
    parts = [
        f'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name in names
    ]
    body = b"".join(parts) + b"--b0undary--\r\n"
    return body, {"Content-Type": "multipart/form-data; boundary=b0undary"}


def _zip(count: int, data: bytes = PNG) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zipped:
        for n in range(count):
            zipped.writestr(f"page-{n}.png", data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("big.png", BIG)], "big.png is over 20,000 bytes"),
        ([("a.png", PNG), ("b.png", PNG), ("big.png", BIG)], "big.png is over 20,000 bytes"),
        ([("scans.zip", _zip(6))], "scans.zip: more than 5 entries"),
        ([("bomb.zip", _zip(4, PNG + bytes(14_000)))], "bomb.zip: unpacks to over 50,000 bytes"),
        ([(f"{n}.png", PNG) for n in range(6)], "more than 5 files"),
    ],
)
def test_uploads_over_the_limits_are_refused_and_nothing_is_queued(idle: Api, files, message):
    client = idle.client("submit")
    before = _made(idle)
    reply = client.post("/v1/batches", files=[("files", file) for file in files])
    assert _refused(reply, 413) == message
    assert _made(idle) == before, "no batch, no upload left, nothing queued"


def test_names_from_uploads_only_label(idle: Api) -> None:
    names = ["../../evil.png", "a/b/../c.png", "/abs/x.png", "..\\..\\win.png", "tab\tname.png"]
    body, headers = _multipart(names, PNG)
    reply = idle.client("submit").post("/v1/batches", content=body, headers=headers)
    assert reply.status_code == 202, reply.text
    batch = batches.manifest(idle.store, reply.json()["batch"])
    items = [item for chunk in batch.chunks for item in chunk]
    labels = ["evil.png", "a/b/c.png", "abs/x.png", "win.png", "tabname.png"]
    assert [i.source for i in items] == labels
    for item in items:
        assert re.fullmatch(rf"batches/{batch.batch}/inputs/\d{{6}}-[A-Za-z0-9._-]+", item.key)
        assert idle.store.get(item.key) == PNG
    root = Path(idle.store.root)
    assert not list(root.parent.rglob("evil.png")) and not list(root.parent.rglob("win.png"))


@pytest.mark.parametrize(
    ("request_args", "status", "message"),
    [
        (
            {"content": FIELD_ONLY, "headers": {"Content-Type": "multipart/form-data; boundary=b"}},
            422,
            "no files in the form field 'files'",
        ),
        ({"files": {"upload": ("a.png", PNG)}}, 422, "files go in the form field 'files'"),
        (
            {"files": {"files": ("a.png", PNG)}, "data": {"chunk_size": "0"}},
            422,
            "chunk_size: Input should be greater than or equal to 1",
        ),
        ({"files": {"files": ("a.png", PNG)}, "data": {"colour": "red"}}, 422, "colour: Extra"),
        ({"files": {"files": ("a.png", PNG)}, "data": {"name": "n" * 2000}}, 413, "over 1,000"),
        ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "send multipart"),
        (
            {"content": b"--x\r\nnot a part", "headers": {"Content-Type": "multipart/form-data"}},
            400,
            "needs a boundary",
        ),
        ({"content": b"garbage\r\n", "headers": {"Content-Type": MULTIPART_X}}, 400, "malformed"),
        ({"content": CUT_SHORT, "headers": {"Content-Type": MULTIPART_X}}, 400, "ends before"),
        ({"content": HUGE_HEADER, "headers": {"Content-Type": MULTIPART_X}}, 400, "malformed"),
        ({"files": {"files": ("notes.zip", _zip(0))}}, 422, "no images in the files sent"),
        ({"json": {"urls": []}}, 422, "urls: List should have at least 1 item"),
        ({"content": b"{", "headers": {"Content-Type": "application/json"}}, 422, "Invalid JSON"),
    ],
)
def test_bad_requests_are_one_line_json(idle: Api, request_args, status, message) -> None:
    before = _made(idle)
    reply = idle.client("submit").post("/v1/batches", **request_args)
    assert message in _refused(reply, status)
    assert _made(idle) == before


def test_queued_batches_are_listed_newest_first_and_cancelled(idle: Api, monkeypatch) -> None:
    monkeypatch.setattr(queue, "VIEW_SECONDS", 0.0)  # the service cancels: look afresh
    client = idle.client("admin", tenant="pages")
    made = []
    for name in ("one", "two", "three"):
        reply = client.post("/v1/batches", files={"files": ("a.png", PNG)}, data={"name": name})
        made.append(reply.json()["batch"])
        if len(made) < 3:  # ids sort by the second they were made in
            time.sleep(1.05)
    first = client.get("/v1/batches", params={"limit": 2}).json()
    assert [b["batch"] for b in first["batches"]] == made[:0:-1] and first["next_cursor"] == made[1]
    rest = client.get("/v1/batches", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [b["batch"] for b in rest["batches"]] == made[:1] and rest["next_cursor"] is None
    named = client.get("/v1/batches", params={"name": "two"}).json()["batches"]
    assert [b["batch"] for b in named] == [made[1]] and named[0]["state"] == "queued"
    assert client.get("/v1/batches", params={"state": "done"}).json()["batches"] == []
    assert "state" in _refused(client.get("/v1/batches", params={"state": "lost"}), 422)
    assert "invalid cursor" in _refused(client.get("/v1/batches", params={"cursor": "../x"}), 400)
    listed = cli("batches", "list", "--tenant", "pages", "--name", "one", env=idle.env)
    assert [b["batch"] for b in json.loads(listed.stdout)["batches"]] == made[:1]

    queue.connect(idle.env["SCANDIGITS_BROKER_URL"])
    assert queue.pending(made[2], range(1)) == {0}
    assert client.delete(f"/v1/batches/{made[2]}").status_code == 204
    assert queue.pending(made[2], range(1)) == set(), "what was queued is cancelled"
    assert not list(idle.store.list(f"batches/{made[2]}/"))
    deleted = cli("batches", "delete", made[1], env=idle.env)
    assert deleted.returncode == 0, deleted.stderr
    assert queue.pending(made[1], range(1)) == set() and not idle.store.exists(
        batches.manifest_key(made[1])
    )
    assert [b["batch"] for b in client.get("/v1/batches").json()["batches"]] == made[:1]


def test_ready_once_a_model_is_published(redis_url, trained, tmp_path) -> None:
    store = open_store(f"file://{tmp_path / 'store'}")
    store.check()
    env = {"SCANDIGITS_BROKER_URL": redis_url, "SCANDIGITS_STORE": store.url}
    with serving(env, tmp_path / "serve.log") as url:
        assert httpx.get(f"{url}/livez").json() == {"status": "ok"}
        reply = httpx.get(f"{url}/readyz")
        assert _refused(reply, 503) == "not ready: no model is published"
        publish(store, trained)
        assert httpx.get(f"{url}/readyz").json() == {"status": "ok"}
        assert "scandigits_api_requests_total" in httpx.get(f"{url}/metrics").text
        assert httpx.get(f"{url}/docs").status_code == 200
        paths = httpx.get(f"{url}/openapi.json").json()["paths"]
        assert {"/v1/batches", "/v1/batches/{batch_id}", "/v1/batches/{batch_id}/results"} <= set(
            paths
        )


def _child_serving(url: str) -> int:
    """The pid of this process's child `scandigits serve --port PORT` answering at `url`."""
    port = url.rsplit(":", 1)[1].encode()
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in children.read_text().split():
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-3:-1] == [b"--port", port]:
                return int(pid)
    raise AssertionError(f"no child process serves {url}")


def _rss(pid: int) -> int:
    """Resident set size (VmRSS) of a process, bytes."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) * 1024


def _huge_upload(size: int, spool: Path, seen: list[int]) -> Iterator[bytes]:
    """A multipart body of one file, x.png, of `size` zero bytes, made as it is sent; halfway,
    the sizes of the files in `spool` go into `seen`."""
    yield (
        b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    piece = bytes(1 << 20)
    for n in range(size // len(piece)):
        if n == size // len(piece) // 2:
            seen.extend(f.stat().st_size for f in spool.rglob("*") if f.is_file())
        yield piece
    yield bytes(size % len(piece)) + b"\r\n--b0undary--\r\n"


def test_a_2_gb_upload_over_the_limit_is_refused_in_flat_memory(
    redis_url, trained, tmp_path
) -> None:
    """One 2.1 GB file, sent chunked (no Content-Length to refuse it by): the service streams
    it to a scratch file until the body passes its limit, answers 413, and keeps nothing; its
    peak RSS hardly moves."""
    store = open_store(f"file://{tmp_path / 'store'}")
    store.check()
    publish(store, trained)
    spool = tmp_path / "tmp"
    spool.mkdir()
    broker = re.sub(r"/\d+$", "/6", redis_url)
    env = {"SCANDIGITS_BROKER_URL": broker, "SCANDIGITS_STORE": store.url, **HUGE_LIMITS}
    with serving({**env, "TMPDIR": str(spool)}, tmp_path / "serve.log") as url:
        api = Api(url, store, env)
        client = api.client("submit")
        pid = _child_serving(url)
        before = _made(api)
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from now on
        rss = _rss(pid)
        seen: list[int] = []
        reply = client.post(
            "/v1/batches",
            content=_huge_upload(HUGE, spool, seen),
            headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
        )
        assert _refused(reply, 413) == "the request body is over 2,000,000,000 bytes"
        grown = peak_rss(pid) - rss
        assert grown < 100 * MIB, f"peak RSS grew by {grown / MIB:.0f} MiB"
        assert _made(api) == before, "no batch, no upload left, nothing queued"
        assert max(seen, default=0) > 500 * MIB, "halfway, the file was in a scratch file"
        assert not list(spool.iterdir()), "the scratch folder is removed"
