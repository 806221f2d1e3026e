"""API tokens: bearer secrets shown once, of which the store keeps only the sha256.

A token reads `sd_<id>_<secret>`: `tokens/<id>.json` holds its name, tenant, scopes, creation
time and the sha256 of the whole token, never the token itself, so that authenticating is one
read and a copy of the store lets nobody in. It holds the token's signing secret too, with
which the service signs the webhooks of the batches the token submits (worker/webhooks.py):
the receiver must know it, and so must the service. A token acts for its tenant alone: the
batches it sees are that tenant's. Its scopes say what it may do; `admin` may do everything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from trainer.errors import AlreadyExists, ObjectMissing, UserError
from trainer.storage import Store
from worker.manifest import valid_name

SCOPES = ("submit", "read", "review", "admin")
FOLDER = "tokens/"
_TOKEN = re.compile(r"sd_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class Token:
    """What a token may do, and for whom: its `tenant`'s batches, with its `scopes`."""

    id: str
    name: str
    tenant: str
    scopes: tuple[str, ...]
    created: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(token_id: str) -> str:
    return f"{FOLDER}{token_id}.json"


def create(
    store: Store, name: str, scopes: list[str], tenant: str | None = None
) -> tuple[Token, str]:
    """A new token named `name` (unique among those not revoked) for `tenant` (default: its
    name), with `scopes`; return it and its secret, which the store never holds."""
    valid_name(name, "token name")
    valid_name(tenant or name, "tenant")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise UserError(f"scopes must be some of {', '.join(SCOPES)}, not {unknown or 'none'}")
    if any(token.name == name for token in listing(store)):
        raise UserError(f"a token named {name!r} exists; revoke it first or choose another name")
    token_id = secrets.token_hex(8)
    secret = f"sd_{token_id}_{secrets.token_urlsafe(32)}"
    created = datetime.now(UTC).isoformat(timespec="seconds")
    ordered = tuple(scope for scope in SCOPES if scope in scopes)
    token = Token(token_id, name, tenant or name, ordered, created)
    signing = f"whsec_{secrets.token_urlsafe(32)}"
    record = {**asdict(token), "sha256": _digest(secret), "signing_secret": signing}
    try:
        store.create(_key(token_id), json.dumps(record).encode())
    except AlreadyExists:  # 64 random bits met an id in use
        raise UserError("token id taken; run the command again") from None
    return token, secret


def _token(record: dict) -> Token:
    return Token(
        record["id"], record["name"], record["tenant"], tuple(record["scopes"]), record["created"]
    )


def listing(store: Store) -> list[Token]:
    """The tokens not revoked, oldest first."""
    found = []
    for key in store.list(FOLDER):
        try:
            found.append(_token(json.loads(store.get(key))))
        except ObjectMissing:  # revoked since it was listed
            continue
    return sorted(found, key=lambda token: (token.created, token.name))


def signing_secret(store: Store, token_id: str) -> str | None:
    """The signing secret of the token `token_id`, or None if it was revoked."""
    try:
        return json.loads(store.get(_key(token_id))).get("signing_secret")
    except ObjectMissing:
        return None


def named(store: Store, name: str) -> list[Token]:
    """The tokens not revoked named `name`; a UserError if there is none."""
    found = [token for token in listing(store) if token.name == name]
    if not found:
        raise UserError(f"no token named {name!r}; see `scandigits token list`")
    return found


def revoke(store: Store, name: str) -> None:
    """Revoke the token named `name` (every one, if two were created at once): it is refused
    from its next request on."""
    for token in named(store, name):
        store.delete(_key(token.id))


def authenticate(store: Store, secret: str) -> Token | None:
    """The token whose secret `secret` is, or None (malformed, unknown or revoked)."""
    match = _TOKEN.fullmatch(secret)
    if match is None:
        return None
    try:
        record = json.loads(store.get(_key(match[1])))
    except ObjectMissing:
        return None
    if not hmac.compare_digest(record["sha256"], _digest(secret)):
        return None
    return _token(record)
