"""The manifest and the chunk message keep their JSON on the wire, and read back as written."""

from __future__ import annotations

import json

from worker.manifest import Chunk, Item, Manifest

FORM = {"name": "claim", "fields": [{"name": "account", "box": [0.1, 0.1, 0.5, 0.05]}]}
WIRE = {
    "batch": "20261204-120000-abcdef",
    "created": "2026-12-04T12:00:00+00:00",
    "model": 3,
    "images": 3,
    "chunk_size": 2,
    "review_below": 0.8,
    "template": FORM,
    "chunks": [
        [
            {"source": "a.png", "key": "in/a.png"},
            {"source": "b.pdf#1", "key": "in/b.pdf", "page": 1},
        ],
        [{"source": "b.pdf#2", "key": "in/b.pdf", "page": 2}],
    ],
}


def test_a_manifest_reads_and_writes_the_same_json() -> None:
    manifest = Manifest.from_dict(json.loads(json.dumps(WIRE)))
    assert manifest.images == 3 and manifest.chunks[0][1] == Item("b.pdf#1", "in/b.pdf", 1)
    assert json.dumps(manifest.to_dict()) == json.dumps(WIRE)


def test_a_manifest_written_before_templates_reads() -> None:
    older = {k: v for k, v in WIRE.items() if k != "template"}
    assert Manifest.from_dict(older).template is None


def test_the_chunk_message_is_the_tasks_positional_arguments() -> None:
    chunk = Manifest.from_dict(WIRE).chunk(1, "2026-12-04T12:00:01+00:00")
    args = chunk.to_args()
    queued = "2026-12-04T12:00:01+00:00"
    assert args == [WIRE["batch"], 1, 2, WIRE["chunks"][1], 3, 0.8, queued, FORM]
    assert Chunk.from_args(json.loads(json.dumps(args))) == chunk


def test_a_message_without_a_template_reads() -> None:
    args = ["b", 0, 1, [{"source": "a.png", "key": "k"}], 1, 0.8, "2026-12-04T12:00:00+00:00"]
    assert Chunk.from_args(args).template is None


def test_tenant_and_name_are_written_only_when_given() -> None:
    labelled = Manifest.from_dict({**WIRE, "tenant": "acme", "name": "morning"})
    assert (labelled.tenant, labelled.name) == ("acme", "morning")
    assert json.dumps(labelled.to_dict()) == json.dumps(
        {**WIRE, "tenant": "acme", "name": "morning"}
    )
    assert "tenant" not in Manifest.from_dict(WIRE).to_dict()
