"""Batch bookkeeping in the store: a batch whose finalising worker died is finished by the
client waiting for it; submitted PDFs and TIFFs become one item per page, archives one input
per image, safely; records carry the page; a given batch id is taken once."""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from trainer.errors import AlreadyExists, UserError
from worker import batches, results, settings
from worker.reading.pipeline import Digit, Reading
from worker.settings import Settings


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
            "records": [results.Record.of(item["source"], item["key"], reading, 1, 0.8).to_dict()],
        }
        file_store.put(batches.chunk_key(batch_id, index), json.dumps(chunk).encode())
    monkeypatch.setattr(batches, "FINALIZE_AFTER", 0.5)
    report = batches.wait(file_store, batch_id, timeout=30, on_progress=lambda _: None)
    assert report["state"] == "done" and report["images_done"] == 2
    lines = file_store.get(f"{batches.prefix(batch_id)}/results.jsonl").splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["0", "1"]


def tiff(count: int) -> bytes:
    images = [np.full((40, 60), 200 - n, np.uint8) for n in range(count)]
    return cv2.imencodemulti(".tiff", images)[1].tobytes()


def pdf(count: int) -> bytes:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument.new()
    for _ in range(count):
        document.new_page(72, 72)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


PNG = cv2.imencode(".png", np.full((40, 60), 200, np.uint8))[1].tobytes()


@pytest.fixture
def submit(file_store, monkeypatch) -> Callable[..., list[dict[str, Any]]]:
    """`batches.submit` without a model or a broker; returns the items it queued."""
    monkeypatch.setattr(batches.registry, "resolve", lambda store, model: {"version": 1})
    monkeypatch.setattr(batches.queue, "enqueue", lambda tasks: None)

    def run(*paths: str | Path) -> list[dict[str, Any]]:
        batch = batches.manifest(file_store, batches.submit(file_store, [str(p) for p in paths]))
        items = [item.to_dict() for chunk in batch.chunks for item in chunk]
        assert batch.images == len(items)
        return items

    return run


def test_pdfs_and_tiffs_of_several_pages_give_an_item_per_page(
    tmp_path, file_store, submit
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    files = {"a.png": PNG, "doc.pdf": pdf(2), "one.tif": tiff(1), "scan.tiff": tiff(3)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    items = submit(folder)
    assert [(item["source"][len(str(folder)) + 1 :], item.get("page")) for item in items] == [
        ("a.png", None),
        ("doc.pdf#1", 1),
        ("doc.pdf#2", 2),
        ("one.tif", None),
        ("scan.tiff#1", 1),
        ("scan.tiff#2", 2),
        ("scan.tiff#3", 3),
    ]
    assert [sorted(item) for item in items[:2]] == [["key", "source"], ["key", "page", "source"]]
    keys = [item["key"] for item in items]
    assert keys[1] == keys[2] and keys[4] == keys[5] == keys[6] and len(set(keys)) == 4
    for item in items:  # each file uploaded once, as it is
        assert file_store.get(item["key"]) == files[Path(item["source"].split("#")[0]).name]


def test_unreadable_or_long_files_stay_one_item_for_the_worker_to_refuse(
    tmp_path, submit, monkeypatch
) -> None:
    monkeypatch.setattr(settings, "current", lambda: Settings(max_pages=2))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n" + bytes(100))
    (tmp_path / "long.tif").write_bytes(tiff(3))
    items = submit(tmp_path / "broken.pdf", tmp_path / "long.tif")
    assert [item["source"] for item in items] == [
        str(tmp_path / n) for n in ("broken.pdf", "long.tif")
    ]
    assert not any("page" in item for item in items)


def test_store_urls_of_pdfs_and_tiffs_are_fetched_to_count_pages(file_store, submit) -> None:
    file_store.put("incoming/a.png", PNG)
    file_store.put("incoming/b.pdf", pdf(3))
    items = submit(f"{file_store.url}/incoming")
    assert [(item["source"], item["key"], item.get("page")) for item in items] == [
        (f"{file_store.url}/incoming/a.png", "incoming/a.png", None),
        *((f"{file_store.url}/incoming/b.pdf#{n}", "incoming/b.pdf", n) for n in (1, 2, 3)),
    ]


def test_archive_members_are_inputs_named_safely(tmp_path, file_store, submit) -> None:
    with zipfile.ZipFile(tmp_path / "forms.zip", "w") as zipped:
        zipped.writestr("batch/", b"")
        zipped.writestr("batch/a.png", PNG)
        zipped.writestr("../../evil.png", PNG)
        zipped.writestr("batch/doc.pdf", pdf(2))
        zipped.writestr("notes.txt", b"not an image")
        zipped.writestr("__MACOSX/batch/._a.png", b"resource fork")
    with tarfile.open(tmp_path / "more.tar.gz", "w:gz") as tarred:
        for name, data in [("/abs/b.tif", tiff(1)), ("c\\..\\..\\c.tif", tiff(2))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tarred.addfile(link)
    items = submit(tmp_path)
    assert [item["source"][len(str(tmp_path)) + 1 :] for item in items] == [
        "forms.zip/batch/a.png",
        "forms.zip/evil.png",
        "forms.zip/batch/doc.pdf#1",
        "forms.zip/batch/doc.pdf#2",
        "more.tar.gz/abs/b.tif",
        "more.tar.gz/c/c.tif#1",
        "more.tar.gz/c/c.tif#2",
    ]
    prefix = items[0]["key"].rsplit("/", 1)[0]
    assert prefix.endswith("/inputs") and all(i["key"].startswith(prefix + "/") for i in items)
    assert file_store.get(items[1]["key"]) == PNG and file_store.get(items[4]["key"]) == tiff(1)
    assert not any(tmp_path.parent.parent.glob("evil.png"))


def test_archive_bombs_and_broken_archives_are_refused(tmp_path, submit, monkeypatch) -> None:
    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for n in range(3):
            zipped.writestr(f"{n}.png", PNG + bytes(10_000))  # compresses ~50:1
    assert len(submit(archive)) == 3
    for limit, message in [
        (Settings(max_members=2), "more than 2 entries"),
        (Settings(max_archive_bytes=25_000), "unpacks to over 25,000 bytes"),
    ]:
        with monkeypatch.context() as patch:
            patch.setattr(settings, "current", lambda limit=limit: limit)
            with pytest.raises(UserError, match=f"^{archive}: {message}$"):
                submit(archive)
    monkeypatch.setattr(settings, "current", lambda: Settings(max_bytes=10_000))
    with pytest.raises(UserError, match=f"^{archive}: 0.png is over 10,000 bytes$"):
        submit(archive)
    (tmp_path / "scans.zip").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(UserError, match=f"^cannot read archive {archive}: "):
        submit(archive)


def _tar(path: Path, mode: str, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, mode) as tarred:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))
    return path


def test_tar_bombs_are_counted_whole_and_opened_as_named(tmp_path, submit, monkeypatch) -> None:
    """The members a TAR passes over (not images) count towards its unpacked bytes, since they
    are unpacked to pass them; a TAR is opened only with the compression its suffix names."""
    filler = {"filler.bin": bytes(30_000), "a.png": PNG}
    plain = _tar(tmp_path / "plain.tar", "w", filler)
    assert len(submit(plain)) == 1
    monkeypatch.setattr(settings, "current", lambda: Settings(max_archive_bytes=25_000))
    with pytest.raises(UserError, match=f"^{plain}: unpacks to over 25,000 bytes$"):
        submit(plain)
    squeezed = _tar(tmp_path / "squeezed.tar", "w:bz2", {"a.png": PNG})
    with pytest.raises(UserError, match=f"^cannot read archive {squeezed}: "):
        submit(squeezed)
    assert len(submit(_tar(tmp_path / "zipped.tar.gz", "w:gz", {"a.png": PNG}))) == 1


def test_an_over_limit_pdf_is_read_no_further_than_the_limit(
    tmp_path, submit, file_store, monkeypatch
) -> None:
    """A PDF or TIFF over the byte limit is one item (the worker refuses it in one line), read
    and uploaded no further than one byte over the limit."""
    pdf = tmp_path / "big.pdf"
    pdf.write_bytes(b"%PDF-1.7\n" + bytes(20_000))
    monkeypatch.setattr(settings, "current", lambda: Settings(max_bytes=10_000))
    (item,) = submit(pdf)
    assert len(file_store.get(item["key"])) == 10_001, "read no further than the limit"


def test_records_and_csv_carry_the_page() -> None:
    reading = Reading([Digit(4, 0.9, (0, 0, 5, 5))])
    paged = results.Record.of("a.pdf#2", "k", reading, 1, 0.8, page=2).to_dict()
    single = results.Record.of("b.png", "k2", reading, 1, 0.8).to_dict()
    assert list(paged)[:3] == ["source", "key", "page"]
    assert (paged["page"], single["page"]) == (2, None)
    rows = results.csv_bytes([paged, single]).decode().splitlines()
    assert rows[0].startswith("source,key,page,label,")
    assert rows[1].startswith("a.pdf#2,k,2,4,") and rows[2].startswith("b.png,k2,,4,")


def test_a_given_batch_id_is_taken_once(tmp_path, file_store, monkeypatch) -> None:
    queued: list[list] = []
    monkeypatch.setattr(batches.registry, "resolve", lambda store, model: {"version": 1})
    monkeypatch.setattr(batches.queue, "enqueue", queued.append)
    (tmp_path / "a.png").write_bytes(PNG)
    assert batches.submit(file_store, [str(tmp_path)], batch_id="claim-7") == "claim-7"
    with pytest.raises(AlreadyExists):
        batches.submit(file_store, [str(tmp_path)], batch_id="claim-7")
    assert len(queued) == 1, "the second submission queued nothing"
    with pytest.raises(UserError, match="invalid batch id"):
        batches.submit(file_store, [str(tmp_path)], batch_id="../x")


def test_a_losing_submission_leaves_the_winners_inputs_alone(
    tmp_path, file_store, monkeypatch
) -> None:
    """Two submissions of one batch id with different files of the same name: the batch reads
    the winner's bytes, and the loser's uploads are gone."""
    monkeypatch.setattr(batches.registry, "resolve", lambda store, model: {"version": 1})
    monkeypatch.setattr(batches.queue, "enqueue", lambda tasks: None)
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, data in ((first, PNG), (second, PNG + b"other")):
        folder.mkdir()
        (folder / "a.png").write_bytes(data)
    batches.submit(file_store, [str(first)], batch_id="claim-8")
    with pytest.raises(AlreadyExists):
        batches.submit(file_store, [str(second)], batch_id="claim-8")
    (item,) = batches.manifest(file_store, "claim-8").chunks[0]
    assert file_store.get(item.key) == PNG
    assert [k for k in file_store.list("batches/claim-8/inputs/")] == [item.key]


def test_a_submission_left_unqueued_deletes_its_uploads(tmp_path, file_store, monkeypatch) -> None:
    """What the HTTP API relies on when an upload is refused halfway: the files added so far
    were uploaded, and leaving the submission without queuing deletes them; nothing is queued."""
    queued: list[list] = []
    monkeypatch.setattr(batches.queue, "enqueue", queued.append)
    (tmp_path / "a.png").write_bytes(PNG)
    with pytest.raises(UserError, match="refused"), batches.Submission(file_store) as submission:
        (item,) = submission.add_file("scans/a.png", tmp_path / "a.png")
        assert item.source == "scans/a.png" and item.key.endswith("-a.png")
        raise UserError("refused")
    assert not list(file_store.list("batches/")) and not queued
    assert (tmp_path / "a.png").exists(), "the caller's own file is left alone"
    with batches.Submission(file_store) as submission:
        submission.add_file("b.png", tmp_path / "a.png")
        batch = submission.queue(1, tenant="acme", name="one")
    assert batches.manifest(file_store, batch).tenant == "acme" and len(queued) == 1
    reports, after = batches.listing(file_store, "acme")
    assert [r["batch"] for r in reports] == [batch] and reports[0]["name"] == "one"
    assert after is None and batches.listing(file_store, None) == ([], None)


def test_inputs_held_in_memory_wait_for_their_upload_within_a_bound(
    file_store, monkeypatch
) -> None:
    """An upload's small files are added from memory; past HELD_BYTES waiting for the store,
    adding one waits for the oldest upload, so a slow store cannot fill the memory."""
    monkeypatch.setattr(batches, "HELD_BYTES", len(PNG) + 1)
    monkeypatch.setattr(batches.queue, "enqueue", lambda tasks: None)
    put, stored = file_store.put, []

    def slow_put(key: str, data: bytes) -> None:
        time.sleep(0.2)
        put(key, data)
        stored.append(key)

    monkeypatch.setattr(file_store, "put", slow_put)
    with batches.Submission(file_store) as submission:
        for n in range(3):
            (item,) = submission.add_bytes(f"scan-{n}.png", PNG)
            done = {key.rsplit("-", 1)[-1] for key in stored}
            assert done >= {f"{k}.png" for k in range(n)}, "no more than one file waits"
        submission.queue(1)
    assert file_store.get(item.key) == PNG
