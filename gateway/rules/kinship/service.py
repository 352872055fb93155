"""`Kinship`: the registry's operations, tying the rules, the store and the provinces.

An adder adds a relative (the member) to their own e-voucher, to show the
member's code and pay with the member's own insurance. Members may be insured
in any federated province: the member's province, through its adapter, says
whether they are insured and in force and what the civil record says of the
relation; the age comes from the ID number. The rules are the national
`KinshipPolicy` (configuration), not a province's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence

from adapters.base import (
    Party,
    RefusalCode,
)
from gateway.common.auth import REVIEWER, Caller
from gateway.common.beijing import china_date
from gateway.common.certno import is_valid, normalize
from gateway.common.refusals import Code, GatewayCode, Refused
from gateway.ops.config import AuthSettings, KinshipPolicy
from gateway.provinces.directory import Directory
from gateway.rules.kinship.links import AddInput, KinshipLink, LinkStatus
from gateway.rules.kinship.passwords import hash_password, password_ok
from gateway.rules.kinship.registry import Registry, now
from gateway.rules.kinship.rules import Taken, is_minor, judge_kinship, usable_documents
from gateway.rules.kinship.vouchers import Use, VoucherOutcome, Vouchers
from gateway.rules.mutual_aid import MutualAid
from gateway.state.events import Kind
from gateway.state.outcome import Outcome
from gateway.state.store import Store

LinkOutcome = Outcome[KinshipLink]  # what a registry write came to

# The input of `addKinshipMember` each refusal of the rules points at.
_ADD_FIELDS: dict[Code, str] = {
    RefusalCode.RELATION_NOT_ALLOWED: "relation",
    RefusalCode.RELATION_NOT_VERIFIED: "relation",
    GatewayCode.DOCUMENT_REQUIRED: "documents",
}


def _refused(code: Code) -> LinkOutcome:
    return Outcome.refused(code, _ADD_FIELDS.get(code, "memberCertNo"))


class Kinship:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        mutual_aid: MutualAid,
        policy: KinshipPolicy,
        auth: AuthSettings,
    ) -> None:
        self._registry = Registry(store)
        self._directory = directory
        self._mutual_aid = mutual_aid
        self.policy = policy
        self._vouchers = Vouchers(
            self._registry, directory, mutual_aid, auth, policy.voucher_ttl_seconds
        )

    # -- adding ------------------------------------------------------------------------

    async def add(self, adder: str, given: AddInput) -> LinkOutcome:
        policy = self.policy
        member = normalize(given.member_cert_no)
        if not is_valid(member):
            return Outcome.refused(RefusalCode.INVALID_CERT_NO, "memberCertNo")
        if member == adder:
            return Outcome.refused(GatewayCode.KINSHIP_SELF_NOT_ALLOWED, "memberCertNo")
        if len(given.documents) > policy.max_documents:
            return Outcome.refused(GatewayCode.TOO_MANY_DOCUMENTS, "documents")
        people = await self._directory.locate([adder, member])
        if adder not in people:
            return Outcome.refused(RefusalCode.PERSON_NOT_FOUND, None)
        if member not in people:
            # the same answer as a wrong name: no one learns whether an ID number is insured
            return Outcome.refused(RefusalCode.PERSON_INFO_MISMATCH, "memberName")
        who, found = people[adder], people[member]
        if found.person.name != given.member_name.strip():
            return Outcome.refused(RefusalCode.PERSON_INFO_MISMATCH, "memberName")
        today = china_date()
        early = judge_kinship(who, found, given.relation, policy=policy, today=today)
        if early is not None:  # what needs no further question
            return _refused(early)

        # The civil record, from the member's province: how the adder relates to them.
        civil = await found.adapter.relatives(member)
        stated = next((r.relation.inverse for r in civil if r.cert_no == adder), None)
        kinds = [d.kind for d in given.documents]

        def judged(taken: Taken | None = None) -> Code | None:
            return judge_kinship(
                who,
                found,
                given.relation,
                policy=policy,
                today=today,
                civil=stated,
                documents=kinds,
                taken=taken,
            )

        refused = judged()
        if refused is not None:
            return _refused(refused)
        verified = stated is given.relation
        minor = is_minor(member, policy, today)
        documents = [d for d in given.documents if d.kind in usable_documents(minor)]

        # What a document records is what the client says it records (no one reads
        # the file here). So it passes at once only where it adds nothing the civil
        # record does not already say: a minor (who cannot consent), a relation the
        # civil record confirms, and no earlier rejection of this pair. An adult's
        # document never replaces their consent without a reviewer.
        if not documents:
            status = LinkStatus.PENDING_CONSENT
        elif (
            minor
            and verified
            and any(
                d.recorded_cert_no == member and d.recorded_relation is given.relation
                for d in documents
            )
            and not await self._registry.rejected_before(adder, member)
        ):
            status = LinkStatus.APPROVED
        else:
            status = LinkStatus.PENDING_REVIEW

        at = dt.datetime.now(dt.UTC)
        link = KinshipLink(
            id=uuid.uuid4().hex,
            adder=Party(adder, who.person.name),
            member=Party(member, found.person.name),
            relation=given.relation,
            channel=given.channel,
            status=status,
            created_at=at,
            decided_at=at if status is LinkStatus.APPROVED else None,
        )
        # the limits, judged again in the same turn as the insert: no race between
        refusal = await self._registry.insert(
            link, documents, lambda live: judged(Taken.among(live, adder, member))
        )
        if refusal is not None:
            return _refused(refusal)
        return Outcome(value=await self.link(link.id))

    # -- deciding ----------------------------------------------------------------------

    async def respond(self, actor: str, link_id: str, *, accept: bool) -> LinkOutcome:
        """The member's face authorization (or refusal) of a request to add them."""
        link = await self.link(link_id)
        if link is None or link.member.cert_no != actor:
            return Outcome.refused(RefusalCode.FORBIDDEN, "requestId")
        if link.status is not LinkStatus.PENDING_CONSENT:
            return Outcome.refused(GatewayCode.INVALID_KINSHIP_STATE, "requestId")
        status = LinkStatus.APPROVED if accept else LinkStatus.DECLINED
        return await self._decide(link, LinkStatus.PENDING_CONSENT, status, actor, None)

    async def review(
        self, reviewer: Caller, link_id: str, *, approve: bool, reason: str | None
    ) -> LinkOutcome:
        if REVIEWER not in reviewer.roles:
            return Outcome.refused(RefusalCode.FORBIDDEN, None)  # the role, not the request
        link = await self.link(link_id)
        if link is None or reviewer.cert_no in (link.adder.cert_no, link.member.cert_no):
            return Outcome.refused(RefusalCode.FORBIDDEN, "requestId")  # not one's own
        if link.status is not LinkStatus.PENDING_REVIEW:
            return Outcome.refused(GatewayCode.INVALID_KINSHIP_STATE, "requestId")
        reason = (reason or "").strip() or None
        if not approve and reason is None:
            return Outcome.refused(GatewayCode.REASON_REQUIRED, "reason")
        status = LinkStatus.APPROVED if approve else LinkStatus.REJECTED
        return await self._decide(link, LinkStatus.PENDING_REVIEW, status, reviewer.cert_no, reason)

    async def _decide(
        self,
        link: KinshipLink,
        expected: LinkStatus,
        status: LinkStatus,
        by: str,
        reason: str | None,
    ) -> LinkOutcome:
        # the adder hears the answer (the member's, or the reviewer's)
        kind = Kind.KINSHIP_ANSWERED if by == link.member.cert_no else Kind.KINSHIP_REVIEWED
        changed = await self._registry.move(
            link.id,
            expected,
            status,
            "decided_at = ?, decided_by = ?, reason = ?",
            (now(), by, reason),
            link,
            [(link.adder.cert_no, kind)],
        )
        if not changed:  # someone else decided first
            return Outcome.refused(GatewayCode.INVALID_KINSHIP_STATE, "requestId")
        return Outcome(value=await self.link(link.id))

    # -- using -------------------------------------------------------------------------

    async def activate(self, actor: str, link_id: str, password: str) -> LinkOutcome:
        """The adder activates the member's e-voucher and sets its payment password."""
        link = await self.link(link_id)
        if link is None or link.adder.cert_no != actor:
            return Outcome.refused(RefusalCode.FORBIDDEN, "memberId")
        if link.status is not LinkStatus.APPROVED:
            return Outcome.refused(GatewayCode.INVALID_KINSHIP_STATE, "memberId")
        if not password_ok(password):
            return Outcome.refused(GatewayCode.INVALID_PAYMENT_PASSWORD, "paymentPassword")
        member = (await self._directory.locate([link.member.cert_no])).get(link.member.cert_no)
        if member is None or not member.person.is_in_force:
            return Outcome.refused(GatewayCode.MEMBER_INSURANCE_NOT_EFFECTIVE, "memberId")
        hashed = await asyncio.to_thread(hash_password, password)  # slow on purpose
        changed = await self._registry.move(
            link.id,
            LinkStatus.APPROVED,
            LinkStatus.ACTIVE,
            "activated_at = ?, password_hash = ?",
            (now(), hashed),
        )
        if not changed:
            return Outcome.refused(GatewayCode.INVALID_KINSHIP_STATE, "memberId")
        return Outcome(value=await self.link(link.id))

    async def remove(self, actor: str, link_id: str) -> LinkOutcome:
        """Either side ends the link, whatever its live state."""
        link = await self.link(link_id)
        if link is None or actor not in (link.adder.cert_no, link.member.cert_no):
            return Outcome.refused(RefusalCode.FORBIDDEN, "memberId")
        other = link.member if actor == link.adder.cert_no else link.adder
        ended = await self._registry.move(
            link.id,
            None,
            LinkStatus.REMOVED,
            "ended_at = ?",
            (now(),),
            link,
            [(other.cert_no, Kind.KINSHIP_ENDED)],  # ended by the other side
        )
        if not ended:
            return Outcome.refused(GatewayCode.INVALID_KINSHIP_STATE, "memberId")
        return Outcome(value=await self.link(link.id))

    async def voucher(self, actor: str, link_id: str, treatment_area: str | None) -> VoucherOutcome:
        """A short-lived signed code of the member's e-voucher, for an active adder only."""
        link = await self.link(link_id)
        if link is None or link.adder.cert_no != actor:
            return VoucherOutcome.refused(RefusalCode.FORBIDDEN, "memberId")
        if link.status is not LinkStatus.ACTIVE:
            return VoucherOutcome.refused(GatewayCode.INVALID_KINSHIP_STATE, "memberId")
        return await self._vouchers.issue(link, treatment_area)

    async def usage(self, actor: str, link_id: str) -> tuple[list[Use], Sequence[Refused]]:
        """The codes issued of the member's voucher, newest first: for the adder or the member."""
        link = await self.link(link_id)
        if link is None or actor not in (link.adder.cert_no, link.member.cert_no):
            return [], (Refused(RefusalCode.FORBIDDEN, "memberId"),)
        return [Use(at, area) for at, area in await self._registry.uses(link.id)], ()

    # -- reading -----------------------------------------------------------------------

    async def link(self, link_id: str) -> KinshipLink | None:
        return await self._registry.link(link_id)

    async def links_of(self, cert_no: str) -> list[KinshipLink]:
        """Every link the person takes part in, as adder or member, newest first."""
        return await self._registry.links_of(cert_no)

    async def document_content(self, document_id: int) -> bytes | None:
        """A stored document's bytes (for reviewers: the caller checks the role)."""
        return await self._registry.document_content(document_id)

    async def live_adders(self, members: Sequence[str]) -> dict[str, int]:
        """How many live links each of ``members`` has as a member, in one query."""
        return await self._registry.live_adders(members)

    async def review_queue(self) -> list[KinshipLink]:
        """Requests waiting for a reviewer, oldest first."""
        links = await self._registry.pending_review()
        return sorted(links, key=lambda link: link.created_at)
