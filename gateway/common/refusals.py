"""The gateway's refusals: the provinces' codes and its own.

A province answers with a code of its vocabulary (`adapters.base.RefusalCode`: what any
province may say, and what an adapter maps its dialect onto). Some refusals only the
gateway gives, for rules only it keeps: kinship accounts, uploaded documents, the
idempotency key, bills it can judge before asking anyone (`GatewayCode`). A `Refused`
carries either; the graph shows both as one enum, `ErrorCode`, each code with its
message (`gateway.common.messages`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from adapters.base import Refusal, RefusalCode


class GatewayCode(enum.Enum):
    """Refusals only the gateway gives: no adapter maps a province's answer onto these."""

    SELF_BINDING_NOT_ALLOWED = "SELF_BINDING_NOT_ALLOWED"  # no one binds themselves
    QUOTA_REQUIRED = "QUOTA_REQUIRED"  # a binding across provinces names its quota
    # Kinship accounts (亲情账户): the gateway's own registry
    KINSHIP_SELF_NOT_ALLOWED = "KINSHIP_SELF_NOT_ALLOWED"
    KINSHIP_ALREADY_ADDED = "KINSHIP_ALREADY_ADDED"
    KINSHIP_ADDER_LIMIT_REACHED = "KINSHIP_ADDER_LIMIT_REACHED"
    KINSHIP_MEMBER_LIMIT_REACHED = "KINSHIP_MEMBER_LIMIT_REACHED"
    INVALID_KINSHIP_STATE = "INVALID_KINSHIP_STATE"
    INVALID_PAYMENT_PASSWORD = "INVALID_PAYMENT_PASSWORD"  # noqa: S105 (a code, not a secret)
    MEMBER_INSURANCE_NOT_EFFECTIVE = "MEMBER_INSURANCE_NOT_EFFECTIVE"
    INVALID_AREA_CODE = "INVALID_AREA_CODE"
    REASON_REQUIRED = "REASON_REQUIRED"
    # Documents uploaded with a kinship request
    DOCUMENT_REQUIRED = "DOCUMENT_REQUIRED"
    DOCUMENT_EMPTY = "DOCUMENT_EMPTY"
    DOCUMENT_TOO_LARGE = "DOCUMENT_TOO_LARGE"
    DOCUMENT_TYPE_NOT_ALLOWED = "DOCUMENT_TYPE_NOT_ALLOWED"
    TOO_MANY_DOCUMENTS = "TOO_MANY_DOCUMENTS"
    # A bill the gateway judges before any province is asked
    AMOUNT_TOO_LARGE = "AMOUNT_TOO_LARGE"
    AMOUNT_NEGATIVE = "AMOUNT_NEGATIVE"
    FUND_PAID_EXCEEDS_TOTAL = "FUND_PAID_EXCEEDS_TOTAL"
    # The idempotency key (a key used again for another request is a province's code too)
    INVALID_IDEMPOTENCY_KEY = "INVALID_IDEMPOTENCY_KEY"


Code: TypeAlias = RefusalCode | GatewayCode


@dataclass(frozen=True, slots=True)
class Refused:
    """An expected "no", the province's or the gateway's, pointing at the input it
    concerns (``field``; None: none of them)."""

    code: Code
    field: str | None = None

    @classmethod
    def of(cls, refusal: Refusal) -> Refused:
        """A province's refusal, as the gateway carries it."""
        return cls(refusal.code, refusal.field)
