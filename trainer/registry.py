"""Versioned model registry in the store: immutable numbered versions and a `current` alias,
which `publish` moves by its policy and `promote` to any published version.

Layout: ``models/v0001/model.keras``, ``models/v0001/metadata.json``, ``models/current.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.errors import AlreadyExists, ObjectMissing, RegistryError
from trainer.storage import Store

if TYPE_CHECKING:
    import keras

PROMOTE = ("always", "if-better", "never")
CURRENT = "models/current.json"
_VERSION_KEY = re.compile(r"^models/v(\d+)/model\.keras$")


def reason(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to `limit` characters: library errors
    can run to paragraphs, and a RegistryError is reported per image in one line."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _prefix(version: int) -> str:
    return f"models/v{version:04d}"


def versions(store: Store) -> list[dict[str, Any]]:
    """Metadata of every published version, oldest first."""
    found = []
    for key in store.list("models/"):
        if key.endswith("/metadata.json"):
            found.append(json.loads(store.get(key)))
    return sorted(found, key=lambda meta: meta["version"])


def current_version(store: Store) -> int | None:
    """The version the `current` alias points at, or None before the first promotion."""
    try:
        return int(json.loads(store.get(CURRENT))["version"])
    except ObjectMissing:
        return None


def resolve(store: Store, version: int | str | None = None) -> dict[str, Any]:
    """Metadata of `version` (a number, 'current' or None for current)."""
    if version in (None, "current"):
        version = current_version(store)
        if version is None:
            raise RegistryError(f"no model published in {store.url}; run `scandigits train` first")
    try:
        number = int(str(version).lstrip("v"))
        return json.loads(store.get(f"{_prefix(number)}/metadata.json"))
    except (ValueError, ObjectMissing) as exc:
        raise RegistryError(
            f"model version {version!r} not found in {store.url}; see `scandigits models`"
        ) from exc


def publish(
    store: Store, model_file: Path, metadata: dict[str, Any], promote: str = "if-better"
) -> tuple[int, bool]:
    """Publish a new immutable version; return (version, whether `current` moved to it)."""
    if promote not in PROMOTE:
        raise ValueError(f"promote must be one of {PROMOTE}")
    data = model_file.read_bytes()
    version = 1 + max(
        (int(m.group(1)) for k in store.list("models/") if (m := _VERSION_KEY.match(k))),
        default=0,
    )
    while True:
        try:
            store.create(f"{_prefix(version)}/model.keras", data)
            break
        except AlreadyExists:
            version += 1
    metadata = {**metadata, "version": version, "sha256": hashlib.sha256(data).hexdigest()}
    store.put(f"{_prefix(version)}/metadata.json", json.dumps(metadata, indent=2).encode())
    current = current_version(store)
    promoted = promote == "always" or (
        promote == "if-better"
        and (
            current is None or metadata["test_accuracy"] >= resolve(store, current)["test_accuracy"]
        )
    )
    if promoted:
        _point_current(store, version)
    return version, promoted


def promote(store: Store, version: int | str) -> dict[str, Any]:
    """Move `current` to a published `version`, back or forward; return its metadata.
    RegistryError, `current` unchanged, if no such version is published."""
    metadata = resolve(store, version)
    _point_current(store, metadata["version"])
    return metadata


def _point_current(store: Store, version: int) -> None:
    store.put(CURRENT, json.dumps({"version": version}).encode())


def annotate(store: Store, version: int, **fields: Any) -> dict[str, Any]:
    """Add descriptive fields (such as an evaluation) to a version's metadata.

    The model file and its sha256 never change; only what is known about them grows.
    """
    metadata = {**resolve(store, version), **fields}
    store.put(f"{_prefix(version)}/metadata.json", json.dumps(metadata, indent=2).encode())
    return metadata


def load(store: Store, metadata: dict[str, Any]) -> keras.Model:
    """Fetch a version's model file, verify its sha256 against the registry, load it safely.

    Any failure is a RegistryError: a file that Keras refuses (safe mode rejects code in it)
    or cannot read must fail the images pinned to it, not the task that reads them.
    """
    import keras

    key = f"{_prefix(metadata['version'])}/model.keras"
    try:
        data = store.get(key)
    except ObjectMissing as exc:
        raise RegistryError(f"model file {key} is missing from {store.url}") from exc
    if hashlib.sha256(data).hexdigest() != metadata.get("sha256"):
        raise RegistryError(f"model file {key} does not match its registered sha256; refusing it")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise RegistryError(
            f"model version {metadata['version']} ({key}) is not a Keras archive; refusing it"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model.keras")
        path.write_bytes(data)
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:
            raise RegistryError(
                f"model version {metadata['version']} ({key}) cannot be loaded safely: "
                f"{reason(exc)}"
            ) from exc
