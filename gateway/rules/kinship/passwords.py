"""The member's e-voucher payment password: scrypt (hashlib), salted, never stored in the
clear."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def password_ok(password: str) -> bool:
    """Six digits, not all the same and not a run up or down (111111, 123456, 654321)."""
    if len(password) != 6 or not password.isascii() or not password.isdigit():
        return False
    steps = {int(b) - int(a) for a, b in itertools.pairwise(password)}
    return steps not in ({0}, {1}, {-1})


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(got.hex(), digest)
