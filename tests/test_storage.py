"""Both store backends behave the same: file:// on disk and s3:// against an S3 API server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Proxy, ProxyHandler, cli, make_bucket
from trainer.errors import AlreadyExists, ObjectMissing, StoreError, TooLarge
from trainer.storage import Store, open_store


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.e2e)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "file":
        return open_store(f"file://{tmp_path}/store")
    return request.getfixturevalue("s3_store")


def test_put_get_list_exists(store: Store) -> None:
    store.check()
    store.put("a/b/one.txt", b"1")
    store.put("a/two.txt", b"2")
    store.put("a/two.txt", b"22")
    assert store.get("a/two.txt") == b"22"
    assert store.exists("a/b/one.txt")
    assert not store.exists("a/b/none.txt")
    assert sorted(store.list("a/")) == ["a/b/one.txt", "a/two.txt"]
    assert list(store.list("missing/")) == []
    with pytest.raises(ObjectMissing):
        store.get("a/none.txt")


def test_delete(store: Store) -> None:
    store.put("a/one.txt", b"1")
    store.delete("a/one.txt")
    store.delete("a/none.txt")
    assert not store.exists("a/one.txt") and list(store.list("a/")) == []


def test_create_is_exclusive(store: Store) -> None:
    store.create("claims/x", b"first")
    with pytest.raises(AlreadyExists):
        store.create("claims/x", b"second")
    assert store.get("claims/x") == b"first"


@pytest.mark.parametrize("key", ["../escape", "/abs", "a/../../b", "a//b", "", "a\\b"])
def test_unsafe_keys_refused(store: Store, key: str) -> None:
    with pytest.raises(StoreError):
        store.put(key, b"x")
    with pytest.raises(StoreError):
        list(store.list(key + "/"))


def test_get_refuses_an_object_over_its_limit_unread(store: Store) -> None:
    store.put("a.png", b"12345")
    with pytest.raises(TooLarge, match="5 bytes, over the limit of 4"):
        store.get("a.png", limit=4)
    assert store.get("a.png", limit=5) == store.get("a.png") == b"12345"
    with pytest.raises(ObjectMissing):
        store.get("b.png", limit=5)


def test_file_store_relative_url_and_atomic_writes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("file://./data")
    assert store.url == f"file://{tmp_path}/data"
    store.put("k/v.bin", b"x" * 1000)
    assert [p.name for p in (tmp_path / "data" / "k").iterdir()] == ["v.bin"]


@pytest.mark.e2e
def test_missing_bucket_is_one_clear_error(s3_endpoint: str) -> None:
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/x").check()


def test_unreachable_endpoint_is_one_clear_error(monkeypatch) -> None:
    from worker.local import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StoreError, match="cannot reach the object store"):
        open_store("s3://bucket/x").check()


def test_bad_urls() -> None:
    for url in ("ftp://x/y", "s3://", "scans/"):
        with pytest.raises(StoreError):
            open_store(url)


def test_file_store_does_not_follow_symlinks_out(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("not yours")
    (tmp_path / "outside").mkdir()
    store = open_store(f"file://{tmp_path / 'store'}")
    store.check()
    (tmp_path / "store" / "link.png").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "store" / "dir").symlink_to(tmp_path / "outside")
    with pytest.raises(StoreError, match="leads out of the store"):
        store.get("link.png")
    with pytest.raises(StoreError, match="leads out of the store"):
        store.put("dir/planted.txt", b"x")
    assert not (tmp_path / "outside" / "planted.txt").exists()


def test_list_tagged_tells_a_rewrite(store: Store) -> None:
    store.put("in/a.png", b"1")
    store.put("in/b.png", b"2")
    first = dict(store.list_tagged("in/"))
    assert sorted(first) == ["in/a.png", "in/b.png"] and dict(store.list_tagged("in/")) == first
    time.sleep(1.05)  # S3 times are in seconds
    store.put("in/a.png", b"1")
    again = dict(store.list_tagged("in/"))
    assert again["in/a.png"] != first["in/a.png"] and again["in/b.png"] == first["in/b.png"]


def test_copy_takes_the_listed_version_or_none(store: Store, tmp_path: Path) -> None:
    """A copy reads the version that was listed, up to a size: once the key holds other
    bytes (or none) it is ObjectMissing, over the size TooLarge, and copies nothing."""
    store.put("in/a.png", b"old")
    (tag,) = dict(store.list_tagged("in/")).values()
    with pytest.raises(TooLarge, match="3 bytes, over the limit of 2"):
        store.copy("in/a.png", "pinned/a.png", tag, limit=2)
    store.copy("in/a.png", "pinned/a.png", tag, limit=3)
    store.put("in/a.png", b"new!")
    with pytest.raises(ObjectMissing):
        store.copy("in/a.png", "pinned/b.png", tag, limit=10)
    store.delete("in/a.png")
    with pytest.raises(ObjectMissing):
        store.copy("in/a.png", "pinned/b.png", tag, limit=10)
    assert store.get("pinned/a.png") == b"old" and list(store.list("pinned/")) == ["pinned/a.png"]
    store.download("pinned/a.png", tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == b"old"
    with pytest.raises(ObjectMissing):
        store.download("in/a.png", tmp_path / "gone.png")


DENIED = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"


class ConditionalProxy(Proxy):
    """An HTTP proxy in front of the S3 server that counts the PUTs with If-None-Match and
    "heeds" them, "ignores" that header (as an S3 API without conditional writes would),
    denies them ("read-only" credentials), or "loses a reply": the first one's, after the
    server has done it."""

    def __init__(self, upstream: str, mode: str) -> None:
        self.mode, self.conditional = mode, 0
        super().__init__(upstream, _ConditionalHandler)


class _ConditionalHandler(ProxyHandler):
    server: ConditionalProxy

    def forward(self) -> None:
        body, headers = self.body(), dict(self.headers)
        lose = False
        if self.command == "PUT" and "If-None-Match" in self.headers:
            self.server.conditional += 1
            if self.server.mode == "read-only":
                self.relay(403, [], DENIED)
                return
            if self.server.mode == "ignores":
                del headers["If-None-Match"]
            lose = self.server.mode == "loses a reply" and self.server.conditional == 1
        reply = self.pass_on(body, headers)
        self.relay(*((503, [], b"") if lose else reply))


@pytest.fixture
def conditional_proxy(
    request: pytest.FixtureRequest, s3_endpoint: str, monkeypatch
) -> Iterator[ConditionalProxy]:
    """The S3 server behind a ConditionalProxy in each mode, with boto3 pointed at it."""
    proxy = ConditionalProxy(s3_endpoint, request.param)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.server_address[1]}")
    yield proxy
    proxy.shutdown()


PROBES = {"heeds": 2, "ignores": 2, "read-only": 1, "loses a reply": 3}


@pytest.mark.e2e
@pytest.mark.parametrize("conditional_proxy", PROBES, indirect=True)
def test_exclusive_create_is_probed_once_at_start(conditional_proxy, s3_store) -> None:
    """check() creates a probe key twice: an S3 API that lets the second through is refused
    in one line; one that refuses it passes, once per process (also when the first create's
    reply is lost and its retry refused), and the probe is gone. Without the right to write,
    nothing relies on exclusive create: it is not probed."""
    store = open_store(s3_store.url)  # a client of its own, through the proxy
    if conditional_proxy.mode == "ignores":
        with pytest.raises(StoreError) as refused:
            store.check()
        assert "If-None-Match" in str(refused.value) and "\n" not in str(refused.value)
    else:
        store.check()
        open_store(s3_store.url).check()
    assert conditional_proxy.conditional == PROBES[conditional_proxy.mode], "once a process"
    assert list(store.list("")) == [], "the probe is deleted"


@pytest.mark.e2e
@pytest.mark.parametrize("conditional_proxy", ["heeds", "ignores"], indirect=True)
def test_a_store_ignoring_exclusive_create_is_refused_at_start(
    conditional_proxy, s3_endpoint, redis_url
) -> None:
    """`scandigits watch` on an S3 API that ignores If-None-Match stops at start with one line;
    on one that heeds it, it runs."""
    bucket = f"probe-{conditional_proxy.mode}"
    make_bucket(bucket)
    env = {"SCANDIGITS_BROKER_URL": redis_url, "SCANDIGITS_STORE": f"s3://{bucket}/data"}
    run = cli("watch", f"s3://{bucket}/data/inbox/", "--once", env=env, timeout=120)
    if conditional_proxy.mode == "ignores":
        assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
        assert run.stderr.startswith("error: ") and "If-None-Match" in run.stderr
    else:
        assert run.returncode == 0, run.stderr
