"""Uploaded documents (a birth certificate, a household-register page): checked, hashed.

The type is read from the file's first bytes, not from what the client says it
is: a JPEG, PNG or PDF, or nothing.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from adapters.base import Relation
from gateway.common.refusals import Code, GatewayCode

_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"%PDF-", "application/pdf"),
)


class DocumentKind(enum.Enum):
    BIRTH_CERTIFICATE = "BIRTH_CERTIFICATE"  # 出生医学证明
    HOUSEHOLD_REGISTER = "HOUSEHOLD_REGISTER"  # 户口簿 (the member's page)


@dataclass(frozen=True, slots=True)
class Document:
    """A checked upload, with what it records: whose document it is and the relation."""

    kind: DocumentKind
    content_type: str
    content: bytes
    recorded_cert_no: str
    recorded_relation: Relation

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def sniff(content: bytes) -> str | None:
    """The media type the content really is, among those accepted."""
    for signature, content_type in _SIGNATURES:
        if content.startswith(signature):
            return content_type
    return None


def check(content: bytes, *, max_bytes: int) -> str | Code:
    """The content's media type, or why it is refused."""
    if not content:
        return GatewayCode.DOCUMENT_EMPTY
    if len(content) > max_bytes:
        return GatewayCode.DOCUMENT_TOO_LARGE
    return sniff(content) or GatewayCode.DOCUMENT_TYPE_NOT_ALLOWED
