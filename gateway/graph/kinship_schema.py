"""Kinship accounts (亲情账户) in the graph: types, queries and mutations."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from adapters.base import Party
from gateway.common.auth import REVIEWER
from gateway.common.certno import loggable, normalize
from gateway.common.ids import decode_id, encode_id
from gateway.common.messages import note_message
from gateway.common.refusals import Code, GatewayCode
from gateway.graph.audit import NOTHING_TOLD, Told
from gateway.graph.errors import GatewayError
from gateway.graph.marks import AUDITED
from gateway.graph.types import (
    IDEMPOTENCY_KEY,
    Area,
    ChannelType,
    FamilyLink,
    FamilyLinkKind,
    Info_,
    Insurance,
    PersonRef,
    Relation,
    UserError,
)
from gateway.ops.config import KinshipPolicy
from gateway.rules import documents
from gateway.rules.documents import Document, DocumentKind
from gateway.rules.kinship import (
    LINK_KIND,
    AddInput,
    KinshipLink,
    LinkOutcome,
    LinkStatus,
    Use,
    Voucher,
    VoucherOutcome,
    password_ok,
)
from gateway.state.keys import key_ok
from gateway.state.outcome import Outcome
from gateway.state.writes import refuse

T = TypeVar("T")

log = logging.getLogger(__name__)

KinshipStatus = strawberry.enum(LinkStatus, name="KinshipStatus")
KinshipDocumentKind = strawberry.enum(DocumentKind, name="DocumentKind")

_REGISTRY = "gateway"  # the "province" part of a link's global id: the gateway keeps them


class NoteCode(enum.Enum):
    KINSHIP_IS_NOT_MUTUAL_AID = "KINSHIP_IS_NOT_MUTUAL_AID"
    MUTUAL_AID_PAYS_SELF_PAY = "MUTUAL_AID_PAYS_SELF_PAY"
    MUTUAL_AID_NO_BALANCE = "MUTUAL_AID_NO_BALANCE"
    REMOTE_TREATMENT_REGISTRATION = "REMOTE_TREATMENT_REGISTRATION"


NoteCodeType = strawberry.enum(NoteCode, name="NoteCode")


def link_id(link: KinshipLink) -> strawberry.ID:
    return global_link_id(link.id)


def global_link_id(registry_id: str) -> strawberry.ID:
    """The graph's id of the link the registry keeps as ``registry_id``."""
    return strawberry.ID(encode_id(LINK_KIND, _REGISTRY, registry_id))


def registry_id(global_id: str) -> str:
    """The link behind a global id; an id of anything else finds nothing."""
    decoded = decode_id(global_id, LINK_KIND)
    return decoded[1] if decoded is not None and decoded[0] == _REGISTRY else ""


@strawberry.type(description="An explanation the graph gives of its own accord.")
class Note:
    code: NoteCodeType  # type: ignore[valid-type]
    message: str


@strawberry.type(description="An uploaded document, as stored; its content for reviewers only.")
class KinshipDocument:
    document_id: strawberry.Private[int]
    kind: KinshipDocumentKind  # type: ignore[valid-type]
    content_type: str
    size: int
    sha256: str
    recorded_cert_no: str = strawberry.field(
        description="Whom the uploader says it records (masked but for reviewers)."
    )
    recorded_relation: Relation = strawberry.field(  # type: ignore[valid-type]
        description="The relation the uploader says it records."
    )

    @strawberry.field(
        description="The file as a data: URL, for a REVIEWER only (null for anyone else)."
    )
    async def data_url(self, info: Info_) -> str | None:
        caller = info.context.signed_in()
        if REVIEWER not in caller.roles:
            return None
        content = await info.context.services.kinship.document_content(self.document_id)
        if content is None:
            return None
        log.info("reviewer %s read document %s", loggable(caller.cert_no), self.document_id)
        return f"data:{self.content_type};base64,{base64.b64encode(content).decode()}"


@strawberry.type(description="While under review: when to expect the answer.")
class ExpectedDecision:
    min_working_days: int
    max_working_days: int
    earliest: dt.date
    latest: dt.date


@strawberry.type(
    name="KinshipLink",
    description="A relative (the member) added to someone's e-voucher (the adder).",
)
class KinshipLinkType(FamilyLink):
    id: strawberry.ID = strawberry.field(
        description="Also the request id while pending, and the member id once approved."
    )
    status: KinshipStatus  # type: ignore[valid-type]
    relation: Relation = strawberry.field(  # type: ignore[valid-type]
        description="The member's relation to the adder."
    )
    channel: ChannelType  # type: ignore[valid-type]
    adder: PersonRef
    member: PersonRef
    created_at: dt.datetime
    decided_at: dt.datetime | None
    activated_at: dt.datetime | None
    ended_at: dt.datetime | None
    rejection_reason: str | None
    expected_decision: ExpectedDecision | None
    documents: list[KinshipDocument]

    @classmethod
    def of(
        cls, link: KinshipLink, caller: str, policy: KinshipPolicy, *, reviewer: bool = False
    ) -> KinshipLinkType:
        """The link as ``caller`` sees it; a ``reviewer`` (in the queue) sees people unmasked."""

        def who(party: Party) -> PersonRef:
            return (
                PersonRef(name=party.name, cert_no=party.cert_no)
                if reviewer
                else (PersonRef.of(party, caller))
            )

        window = link.expected_decision(policy)
        expected = None
        if window is not None:
            low, high = policy.review_working_days
            expected = ExpectedDecision(
                min_working_days=low, max_working_days=high, earliest=window[0], latest=window[1]
            )
        adder, member = who(link.adder), who(link.member)
        return cls(
            id=link_id(link),
            kind=FamilyLinkKind.KINSHIP_LINK,
            who=adder,
            whom=member,
            link_status=link.status.value,
            since=link.created_at,
            status=link.status,
            relation=link.relation,
            channel=link.channel,
            adder=adder,
            member=member,
            created_at=link.created_at,
            decided_at=link.decided_at,
            activated_at=link.activated_at,
            ended_at=link.ended_at,
            rejection_reason=link.reason if link.status is LinkStatus.REJECTED else None,
            expected_decision=expected,
            documents=[
                KinshipDocument(
                    document_id=d.id,
                    kind=d.kind,
                    content_type=d.content_type,
                    size=d.size,
                    sha256=d.sha256,
                    recorded_cert_no=who(Party(d.recorded_cert_no, "")).cert_no,
                    recorded_relation=d.recorded_relation,
                )
                for d in link.documents
            ],
        )


@strawberry.type
class KinshipPayload:
    link: KinshipLinkType | None
    errors: list[UserError]
    idempotency_key: str | None = strawberry.field(
        default=None, description="The key this request went under."
    )
    told: strawberry.Private[Told] = NOTHING_TOLD  # for the audit: whom the link concerns

    @classmethod
    def of(cls, outcome: LinkOutcome, info: Info_) -> KinshipPayload:
        link, told = None, NOTHING_TOLD
        if outcome.value is not None:
            caller = info.context.caller_cert_no()
            kept = outcome.value
            link = KinshipLinkType.of(kept, caller, info.context.services.kinship.policy)
            told = Told.of(caller, kept.adder.cert_no, kept.member.cert_no)
        return cls(
            link=link,
            errors=[UserError.of(e, info) for e in outcome.errors],
            idempotency_key=outcome.key,
            told=told,
        )


@strawberry.type(description="The member's e-voucher code, shown by the adder; short-lived.")
class KinshipVoucher:
    code: str = strawberry.field(description="A signed code; it names no one.")
    expires_at: dt.datetime
    qr_svg: str = strawberry.field(description="The code as a QR image (SVG markup).")
    member: PersonRef
    insurance_of: PersonRef = strawberry.field(
        description="Whose insurance pays: always the member's own."
    )
    member_insurance: Insurance
    member_insured_area: Area
    treatment_area: str
    remote_treatment_registration_required: bool = strawberry.field(
        description="The member is insured elsewhere: register (异地就医备案) first."
    )
    self_pay_from_mutual_aid: bool = strawberry.field(
        description="Mutual aid pays the member's self-pay part (what their own account"
        " cannot): someone, the adder or another, has an active mutual-aid binding on the"
        " member and a balance."
    )
    mutual_aid_payer: PersonRef | None = strawberry.field(
        description="Whose personal account pays it, by the national rule: of the authorizers"
        " actively bound to the member, the one with the largest balance (the earliest"
        " binding on a tie); not necessarily the adder. The notes say whether the adder's"
        " own mutual aid would pay."
    )
    notes: list[Note]


@strawberry.type
class KinshipVoucherPayload:
    voucher: KinshipVoucher | None
    errors: list[UserError]
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="The key this request went under: sent again with it, the same code"
        " comes back (a new code needs a new key).",
    )
    told: strawberry.Private[Told] = NOTHING_TOLD  # for the audit: whose voucher it shows

    @classmethod
    def of(cls, outcome: VoucherOutcome, info: Info_) -> KinshipVoucherPayload:
        errors = [UserError.of(e, info) for e in outcome.errors]
        key = outcome.key
        voucher = outcome.value
        if voucher is None:
            return cls(voucher=None, errors=errors, idempotency_key=key)
        caller = info.context.caller_cert_no()
        person = voucher.member.person
        member = PersonRef.of(voucher.link.member, caller)
        payer = voucher.mutual_aid_payer
        return cls(
            voucher=KinshipVoucher(
                code=voucher.code,
                expires_at=voucher.expires_at,
                qr_svg=voucher.qr_svg,
                member=member,
                insurance_of=member,
                member_insurance=Insurance(
                    type=person.insurance_type, status=person.insurance_status
                ),
                member_insured_area=Area(code=person.area.code, name=person.area.name),
                treatment_area=voucher.treatment_area,
                remote_treatment_registration_required=voucher.remote_registration_required,
                self_pay_from_mutual_aid=payer is not None,
                mutual_aid_payer=None if payer is None else PersonRef.of(payer, caller),
                notes=[
                    Note(code=NoteCode(code), message=note_message(code, info.context.lang))
                    for code in voucher.notes
                ],
            ),
            errors=errors,
            idempotency_key=key,
            told=Told.of(caller, voucher.link.member.cert_no),
        )


@strawberry.type(description="A use of a member's e-voucher: its code was shown.")
class KinshipUse:
    at: dt.datetime
    treatment_area: str

    @classmethod
    def of(cls, use: Use) -> KinshipUse:
        return cls(at=use.at, treatment_area=use.treatment_area)


@strawberry.type
class KinshipUsagePayload:
    uses: list[KinshipUse]
    errors: list[UserError]


@strawberry.input(description="An uploaded document and what it records.")
class KinshipDocumentInput:
    kind: KinshipDocumentKind  # type: ignore[valid-type]
    file: Upload = strawberry.field(
        description="JPEG, PNG or PDF (judged by its bytes), not empty, at most the configured"
        " size (5 MiB by default)."
    )
    recorded_cert_no: str = strawberry.field(
        description="The ID number of the person the document records (the member)."
    )
    recorded_relation: Relation = strawberry.field(  # type: ignore[valid-type]
        description="The relation to the adder that the document records."
    )


@strawberry.input
class AddKinshipMemberInput:
    member_cert_no: str
    member_name: str
    relation: Relation = strawberry.field(  # type: ignore[valid-type]
        description="The member's relation to the caller (the adder)."
    )
    channel: ChannelType  # type: ignore[valid-type]
    documents: list[KinshipDocumentInput] = strawberry.field(
        default_factory=list,
        description="Required when the member is 16 or younger (a birth certificate or the"
        " household register); without any, an older member consents themselves.",
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY)


async def _read(given: KinshipDocumentInput, max_bytes: int) -> Document | Code:
    upload: Any = given.file
    if not isinstance(upload, UploadFile):  # a value in the JSON, not a file in the form
        return GatewayCode.DOCUMENT_REQUIRED
    content: bytes = await upload.read(max_bytes + 1)
    checked = documents.check(content, max_bytes=max_bytes)
    if isinstance(checked, Code):
        return checked
    return Document(
        kind=given.kind,
        content_type=checked,
        content=content,
        recorded_cert_no=normalize(given.recorded_cert_no),
        recorded_relation=given.recorded_relation,
    )


@strawberry.type
class KinshipQueries:
    @strawberry.field(
        description="The codes issued of a member's e-voucher, newest first (adder or member).",
        metadata=AUDITED,
    )
    async def kinship_usage(self, info: Info_, member_id: strawberry.ID) -> KinshipUsagePayload:
        caller = info.context.insured()
        uses, refusals = await info.context.services.kinship.usage(caller, registry_id(member_id))
        return KinshipUsagePayload(
            uses=[KinshipUse.of(u) for u in uses],
            errors=[UserError.of(r, info) for r in refusals],
        )

    @strawberry.field(
        description="Requests waiting for review, oldest first (REVIEWER role). Null, with a"
        " FORBIDDEN error at its path, for anyone else: the rest of the query is still"
        " answered.",
        metadata=AUDITED,
    )
    async def kinship_review_queue(self, info: Info_) -> list[KinshipLinkType] | None:
        caller = info.context.signed_in()
        if REVIEWER not in caller.roles:
            raise GatewayError("FORBIDDEN", info.context.lang)
        kinship = info.context.services.kinship
        queue = await kinship.review_queue()
        return [
            KinshipLinkType.of(link, caller.cert_no, kinship.policy, reviewer=True)
            for link in queue
        ]


Key = Annotated[str | None, strawberry.argument(description=IDEMPOTENCY_KEY)]

# The replays' name for an activation. Its rows under the earlier name covered an HMAC
# of the payment password; `Replays` drops those (`gateway.state.replays.LEGACY`).
ACTIVATE = "ACTIVATE_KINSHIP_MEMBER_V2"


async def _once(
    info: Info_,
    key: str | None,
    operation: str,
    request: dict[str, Any],
    run: Callable[[], Awaitable[Outcome[T]]],
    kind: type[T],
) -> Outcome[T]:
    """A registry write, once per idempotency key (`gateway.state.writes`), by the caller."""
    scope = info.context.caller_cert_no()
    return await info.context.services.writes.run(scope, key, operation, request, run, kind)


@strawberry.type
class KinshipMutations:
    @strawberry.mutation(description="The caller adds a relative to their e-voucher.")
    async def add_kinship_member(self, info: Info_, input: AddKinshipMemberInput) -> KinshipPayload:
        caller = info.context.insured()
        kinship = info.context.services.kinship
        read = []
        for given in input.documents[: kinship.policy.max_documents + 1]:
            document = await _read(given, kinship.policy.max_document_bytes)
            if isinstance(document, Code):
                return KinshipPayload.of(LinkOutcome.refused(document, "documents"), info)
            read.append(document)
        added = AddInput(
            member_cert_no=input.member_cert_no,
            member_name=input.member_name,
            relation=input.relation,
            channel=input.channel,
            documents=read,
        )
        request = {
            "member": normalize(input.member_cert_no),
            "name": input.member_name.strip(),
            "relation": str(input.relation.value),  # type: ignore[attr-defined]
            "channel": str(input.channel.value),  # type: ignore[attr-defined]
            "documents": [hashlib.sha256(d.content).hexdigest() for d in read],
        }
        outcome = await _once(
            info,
            input.idempotency_key,
            "ADD_KINSHIP_MEMBER",
            request,
            lambda: kinship.add(caller, added),
            KinshipLink,
        )
        return KinshipPayload.of(outcome, info)

    @strawberry.mutation(
        description="The member accepts (face authorization) or declines being added."
    )
    async def respond_to_kinship_request(
        self, info: Info_, request_id: strawberry.ID, accept: bool, idempotency_key: Key = None
    ) -> KinshipPayload:
        caller = info.context.insured()
        kinship = info.context.services.kinship
        link_id = registry_id(request_id)
        outcome = await _once(
            info,
            idempotency_key,
            "RESPOND_TO_KINSHIP_REQUEST",
            {"link": link_id, "accept": accept},
            lambda: kinship.respond(caller, link_id, accept=accept),
            KinshipLink,
        )
        return KinshipPayload.of(outcome, info)

    @strawberry.mutation(description="A reviewer approves, or rejects with a reason.")
    async def review_kinship_request(
        self,
        info: Info_,
        request_id: strawberry.ID,
        approve: bool,
        reason: str | None = None,
        idempotency_key: Key = None,
    ) -> KinshipPayload:
        caller = info.context.signed_in()
        kinship = info.context.services.kinship
        link_id = registry_id(request_id)
        outcome = await _once(
            info,
            idempotency_key,
            "REVIEW_KINSHIP_REQUEST",
            {"link": link_id, "approve": approve, "reason": reason},
            lambda: kinship.review(caller, link_id, approve=approve, reason=reason),
            KinshipLink,
        )
        return KinshipPayload.of(outcome, info)

    @strawberry.mutation(
        description="The adder activates an approved member's e-voucher with a payment password."
    )
    async def activate_kinship_member(
        self,
        info: Info_,
        member_id: strawberry.ID,
        payment_password: str,
        idempotency_key: Key = None,
    ) -> KinshipPayload:
        caller = info.context.insured()
        kinship = info.context.services.kinship
        link_id = registry_id(member_id)
        key = idempotency_key
        if (key is None or key_ok(key)) and not password_ok(payment_password):
            # judged by the input alone, before the key keeps anything: a corrected
            # password may follow under the same key
            code = GatewayCode.INVALID_PAYMENT_PASSWORD
            return KinshipPayload.of(refuse(KinshipLink, key, code, "paymentPassword"), info)
        outcome = await _once(
            info,
            key,
            ACTIVATE,
            # Nothing of the password: a replay's fingerprint is a fast hash, and anything
            # derived from six digits in it would give them away faster than the scrypt
            # hash. So the same key with another password gets the first outcome back
            # (never a second activation, nor a hint of whether the password matched).
            {"link": link_id},
            lambda: kinship.activate(caller, link_id, payment_password),
            KinshipLink,
        )
        return KinshipPayload.of(outcome, info)

    @strawberry.mutation(
        description="Issues a short-lived code of a member's e-voucher, for an adder whose"
        " link is active. A mutation: each call (each new idempotency key) issues a new code"
        " and is recorded."
    )
    async def kinship_voucher(
        self,
        info: Info_,
        member_id: strawberry.ID,
        treatment_area: str | None = None,
        idempotency_key: Key = None,
    ) -> KinshipVoucherPayload:
        caller = info.context.insured()
        kinship = info.context.services.kinship
        link_id = registry_id(member_id)
        outcome = await _once(
            info,
            idempotency_key,
            "KINSHIP_VOUCHER",
            {"link": link_id, "treatment_area": treatment_area},
            lambda: kinship.voucher(caller, link_id, treatment_area),
            Voucher,
        )
        return KinshipVoucherPayload.of(outcome, info)

    @strawberry.mutation(description="Either side ends a kinship link.")
    async def remove_kinship_member(
        self, info: Info_, member_id: strawberry.ID, idempotency_key: Key = None
    ) -> KinshipPayload:
        caller = info.context.insured()
        kinship = info.context.services.kinship
        link_id = registry_id(member_id)
        outcome = await _once(
            info,
            idempotency_key,
            "REMOVE_KINSHIP_MEMBER",
            {"link": link_id},
            lambda: kinship.remove(caller, link_id),
            KinshipLink,
        )
        return KinshipPayload.of(outcome, info)
