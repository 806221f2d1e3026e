"""Tokens: the secret is shown once and the store keeps only its sha256; scopes, revocation,
and the `scandigits token` commands."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.conftest import cli
from trainer.errors import UserError
from worker.api import tokens

SECRET = re.compile(r"sd_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


def test_the_store_keeps_the_hash_alone(file_store) -> None:
    token, secret = tokens.create(file_store, "scanner-3", ["submit", "read"], "north")
    assert SECRET.fullmatch(secret)
    assert (token.name, token.tenant, token.scopes) == ("scanner-3", "north", ("submit", "read"))
    (key,) = file_store.list("tokens/")
    assert key == f"tokens/{token.id}.json"
    stored = b"".join(
        path.read_bytes() for path in Path(file_store.root).rglob("*") if path.is_file()
    )
    assert secret.encode() not in stored and secret[len("sd_") + 16 + 1 :].encode() not in stored
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored
    assert tokens.authenticate(file_store, secret) == token


def test_only_the_secret_itself_authenticates(file_store) -> None:
    token, secret = tokens.create(file_store, "reader", ["read"])
    assert token.tenant == "reader", "a token is its own tenant unless told"
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")  # same id, another secret
    for wrong in (forged, "", "sd_x", secret + "x", secret.upper(), f"Bearer {secret}"):
        assert tokens.authenticate(file_store, wrong) is None, wrong


def test_scopes(file_store) -> None:
    reader, _ = tokens.create(file_store, "reader", ["read"])
    admin, _ = tokens.create(file_store, "boss", ["admin", "read"])
    assert reader.allows("read") and not reader.allows("submit") and not reader.allows("admin")
    assert all(admin.allows(scope) for scope in tokens.SCOPES), "admin may do everything"
    assert admin.scopes == ("read", "admin")


def test_revoked_tokens_are_refused(file_store) -> None:
    _, secret = tokens.create(file_store, "gone", ["read"])
    kept, kept_secret = tokens.create(file_store, "kept", ["read"])
    tokens.revoke(file_store, "gone")
    assert tokens.authenticate(file_store, secret) is None
    assert tokens.authenticate(file_store, kept_secret) == kept
    assert [t.name for t in tokens.listing(file_store)] == ["kept"]
    with pytest.raises(UserError, match="no token named 'gone'"):
        tokens.revoke(file_store, "gone")


@pytest.mark.parametrize(
    ("name", "scopes", "tenant", "message"),
    [
        ("../x", ["read"], None, "invalid token name"),
        ("ok", ["read"], "a/b", "invalid tenant"),
        ("ok", ["read", "root"], None, "scopes must be some of"),
        ("ok", [], None, "scopes must be some of"),
        ("taken", ["read"], None, "a token named 'taken' exists"),
    ],
)
def test_mistakes_are_one_line(file_store, name, scopes, tenant, message) -> None:
    tokens.create(file_store, "taken", ["read"])
    with pytest.raises(UserError, match=re.escape(message)):
        tokens.create(file_store, name, scopes, tenant)
    assert len(tokens.listing(file_store)) == 1


@pytest.mark.e2e
def test_token_commands(file_store) -> None:
    """`token create` prints the token alone on stdout, once; `list` never shows it."""
    store = ["--store", file_store.url]
    made = cli("token", "create", "--name", "scanner-3", "--scope", "submit", *store)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert SECRET.fullmatch(secret) and made.stdout == secret + "\n"
    token = tokens.authenticate(file_store, secret)
    assert token is not None and token.scopes == ("submit",) and token.tenant == "scanner-3"
    listed = cli("token", "list", *store)
    assert (
        listed.stdout.startswith("scanner-3\tscanner-3\tsubmit\t") and secret not in listed.stdout
    )
    again = cli("token", "create", "--name", "scanner-3", "--scope", "read", *store)
    assert again.returncode == 2 and again.stdout == "" and "Traceback" not in again.stderr
    assert cli("token", "revoke", "scanner-3", *store).returncode == 0
    assert tokens.authenticate(file_store, secret) is None
    gone = cli("token", "revoke", "scanner-3", *store)
    assert gone.returncode == 2 and "error: no token named 'scanner-3'" in gone.stderr
