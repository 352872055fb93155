"""Idempotency keys and request fingerprints: what makes a write happen once.

A caller names each action with a key (made for them when they give none) and
sends it again with every retry. Under one key the gateway remembers the request's
fingerprint: the same request gets the first outcome back, another one is refused
(`KeyReused`). A fingerprint is a fast hash (SHA-256) of what identifies a
request, kept in the store: it must cover nothing secret, nor anything derived
from a secret that a fast hash would give away (see `gateway.state.replays`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

MAX_KEY_LENGTH = 64


class KeyReused(Exception):
    """The idempotency key was used for another request by the same caller."""


def new_key() -> str:
    return uuid.uuid4().hex


def key_ok(key: str) -> bool:
    """An idempotency key: 1 to 64 printable ASCII characters, no spaces."""
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable() and " " not in key


def fingerprint(operation: str, request: Mapping[str, Any]) -> str:
    """What a caller asked for, as a hash: the operation and its JSON-able request."""
    body = json.dumps({"operation": operation, **request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()
