"""Global ids: opaque to clients, ``Kind:province:upstream-id`` inside."""

from __future__ import annotations

import base64
import binascii


def encode_id(kind: str, province: str, upstream_id: str) -> str:
    raw = f"{kind}:{province}:{upstream_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_id(global_id: str, kind: str) -> tuple[str, str] | None:
    """``(province, upstream id)`` when ``global_id`` is a well-formed id of ``kind``."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
    except (ValueError, binascii.Error, UnicodeError):
        return None
    parts = raw.split(":", 2)
    if len(parts) != 3 or parts[0] != kind or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]
