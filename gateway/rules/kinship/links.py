"""A kinship link and its states: what the registry holds of one adder adding one member.

add ──► PENDING_CONSENT ──(member accepts)──► APPROVED ──(activate)──► ACTIVE
    └─► PENDING_REVIEW ──(reviewer approves)─┘      (documents that match: at once)
any live state ──(either side removes)──► REMOVED; refusals end in DECLINED / REJECTED
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.base import Party, Relation
from gateway.common.beijing import china_date
from gateway.common.channels import Channel
from gateway.ops.config import KinshipPolicy
from gateway.rules.documents import Document, DocumentKind
from gateway.rules.kinship.workdays import add_working_days

LINK_KIND = "KinshipLink"


class LinkStatus(enum.Enum):
    PENDING_CONSENT = "PENDING_CONSENT"  # waiting for the member's face authorization
    PENDING_REVIEW = "PENDING_REVIEW"  # waiting for a reviewer (1 to 2 working days)
    APPROVED = "APPROVED"  # the adder may activate the member's e-voucher
    ACTIVE = "ACTIVE"
    DECLINED = "DECLINED"  # the member said no
    REJECTED = "REJECTED"  # the reviewer said no, with a reason
    REMOVED = "REMOVED"  # either side ended it

    @property
    def is_live(self) -> bool:
        """Whether the link takes a place (counts toward both limits)."""
        return self in LIVE


LIVE = frozenset(
    {LinkStatus.PENDING_CONSENT, LinkStatus.PENDING_REVIEW, LinkStatus.APPROVED, LinkStatus.ACTIVE}
)


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: int
    kind: DocumentKind
    content_type: str
    size: int
    sha256: str
    recorded_cert_no: str  # what the client says the document records
    recorded_relation: Relation


@dataclass(frozen=True, slots=True, kw_only=True)
class KinshipLink:
    id: str
    adder: Party
    member: Party
    relation: Relation  # the member's relation to the adder
    channel: Channel
    status: LinkStatus
    created_at: dt.datetime
    decided_at: dt.datetime | None = None
    reason: str | None = None
    activated_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    documents: Sequence[DocumentInfo] = ()

    def expected_decision(self, policy: KinshipPolicy) -> tuple[dt.date, dt.date] | None:
        """While under review: the earliest and latest working day to expect an answer."""
        if self.status is not LinkStatus.PENDING_REVIEW:
            return None
        start = china_date(self.created_at)
        low, high = policy.review_working_days
        return add_working_days(start, low), add_working_days(start, high)


@dataclass(frozen=True, slots=True)
class AddInput:
    member_cert_no: str
    member_name: str
    relation: Relation
    channel: Channel
    documents: Sequence[Document] = ()
