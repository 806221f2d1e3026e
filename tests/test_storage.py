"""Both store backends behave the same: file:// on disk and s3:// against an S3 API server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from trainer.storage import AlreadyExists, ObjectMissing, Store, StoreError, open_store


@pytest.fixture(params=["file", "s3"])
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


def test_file_store_relative_url_and_atomic_writes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("file://./data")
    assert store.url == f"file://{tmp_path}/data"
    store.put("k/v.bin", b"x" * 1000)
    assert [p.name for p in (tmp_path / "data" / "k").iterdir()] == ["v.bin"]


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


def test_copy_takes_the_listed_version_or_none(store: Store) -> None:
    """A copy reads the version that was listed: once the key holds other bytes (or none),
    it is ObjectMissing and copies nothing."""
    store.put("in/a.png", b"old")
    (tag,) = dict(store.list_tagged("in/")).values()
    store.copy("in/a.png", "pinned/a.png", tag)
    store.put("in/a.png", b"new!")
    with pytest.raises(ObjectMissing):
        store.copy("in/a.png", "pinned/b.png", tag)
    store.delete("in/a.png")
    with pytest.raises(ObjectMissing):
        store.copy("in/a.png", "pinned/b.png", tag)
    assert store.get("pinned/a.png") == b"old" and list(store.list("pinned/")) == ["pinned/a.png"]
