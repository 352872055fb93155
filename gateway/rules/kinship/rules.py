"""The rules of adding a kinship member, pure: `judge_kinship` asks nothing.

`Kinship.add` judges with them before and again while it writes (the limits, in
the same turn as the insert), and the family screen judges each relative with
them, as `gateway.rules.mutual_aid.judge` is judged for mutual aid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from types import EllipsisType

from adapters.base import (
    RefusalCode,
    Relation,
)
from gateway.common.certno import birth_date
from gateway.common.refusals import Code, GatewayCode
from gateway.ops.config import KinshipPolicy
from gateway.provinces.directory import Located
from gateway.rules.documents import DocumentKind

_FOR_A_MINOR = frozenset({DocumentKind.BIRTH_CERTIFICATE, DocumentKind.HOUSEHOLD_REGISTER})
_FOR_AN_ADULT = frozenset({DocumentKind.HOUSEHOLD_REGISTER})  # no birth certificate path


def age_on(cert_no: str, today: dt.date) -> int | None:
    born = birth_date(cert_no)
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def is_minor(cert_no: str, policy: KinshipPolicy, today: dt.date) -> bool:
    """``review_age`` or younger (or of an unknown age): a document is needed, and the
    member does not consent for themselves."""
    age = age_on(cert_no, today)
    return age is None or age <= policy.review_age


def usable_documents(minor: bool) -> frozenset[DocumentKind]:
    """The kinds of document that show a member's relation: a minor's birth certificate
    or household register; an adult's household register."""
    return _FOR_A_MINOR if minor else _FOR_AN_ADULT


def documents_needed(
    cert_no: str, *, verified: bool, policy: KinshipPolicy, today: dt.date
) -> bool:
    """Whether adding the member needs a document: a minor, or a relation the civil
    record does not confirm (only a document, and a reviewer, can show it)."""
    return not verified or is_minor(cert_no, policy, today)


@dataclass(frozen=True, slots=True)
class Taken:
    """The live links already there, for the limits: the adder's members (``members``),
    the member's adders (``adders``), and whether this adder has this member already."""

    members: int = 0
    adders: int = 0
    added: bool = False

    @classmethod
    def among(cls, live: Iterable[tuple[str, str]], adder: str, member: str) -> Taken:
        """From the live links' ``(adder, member)`` pairs that involve either of them."""
        pairs = list(live)
        return cls(
            members=sum(a == adder for a, _ in pairs),
            adders=sum(m == member for _, m in pairs),
            added=(adder, member) in pairs,
        )


def judge_kinship(
    adder: Located,
    member: Located,
    relation: Relation | None,
    *,
    policy: KinshipPolicy,
    today: dt.date,
    civil: Relation | EllipsisType | None = ...,
    documents: Collection[DocumentKind] | None = None,
    taken: Taken | None = None,
) -> Code | None:
    """The first rule ``adder`` adding ``member`` as their ``relation`` breaks, or None.

    Pure: it asks nothing. ``relation``: the member's relation to the adder (None: not
    said yet, as on the family screen before anyone chooses; the relation rules are
    not judged). ``civil``: the relation the civil record states (None: it states none);
    ``documents``: the kinds of the documents given; ``taken``: the live links already
    there. Left out, the rules that need them are not judged (``documents`` are judged
    with ``civil`` only). ``today``: the Beijing date the member's age is counted on.
    """
    if adder.person.cert_no == member.person.cert_no:
        return GatewayCode.KINSHIP_SELF_NOT_ALLOWED
    if relation is not None and relation not in policy.allowed_relations:
        return RefusalCode.RELATION_NOT_ALLOWED
    if not isinstance(civil, EllipsisType):
        if civil is not None and civil is not relation:
            return RefusalCode.RELATION_NOT_VERIFIED
        if documents is not None:
            minor = is_minor(member.person.cert_no, policy, today)
            usable = [kind for kind in documents if kind in usable_documents(minor)]
            if not usable and (len(documents) > 0 or minor):
                return GatewayCode.DOCUMENT_REQUIRED
            if not usable and civil is None:
                # the member's consent cannot stand in for an unknown relation: a document can
                return RefusalCode.RELATION_NOT_VERIFIED
    if taken is None:
        return None
    if taken.added:
        return GatewayCode.KINSHIP_ALREADY_ADDED
    if taken.members >= policy.max_members:
        return GatewayCode.KINSHIP_ADDER_LIMIT_REACHED
    if taken.adders >= policy.max_adders:
        return GatewayCode.KINSHIP_MEMBER_LIMIT_REACHED
    return None
