"""The GraphQL types every part of the graph shares: scalars, enums, people, refusals,
and what resolvers see of the request (`RequestContext`)."""

from __future__ import annotations

import datetime as dt
import enum
import re
from decimal import Decimal
from typing import NewType, Protocol

import strawberry
from graphql import DocumentNode
from strawberry.types import Info

from adapters import base
from adapters.base import Binding, Policy, ProvinceAdapter
from gateway.common import channels
from gateway.common.auth import Caller
from gateway.common.beijing import CHINA
from gateway.common.certno import mask_cert_no, mask_name
from gateway.common.ids import encode_id
from gateway.common.messages import REFUSAL_CODES, Language, refusal_message
from gateway.common.refusals import Code, Refused
from gateway.graph.audit import AuditLog
from gateway.graph.prefetch import Prefetch
from gateway.graph.variables import InputError
from gateway.provinces.directory import Located
from gateway.provinces.federated import Provinces
from gateway.rules.diagnosis import Diagnostics
from gateway.rules.family import Family
from gateway.rules.kinship import Kinship, KinshipLink
from gateway.rules.mutual_aid import BINDING_KIND, MutualAid
from gateway.rules.premiums import Premiums
from gateway.rules.settlement import Settlements
from gateway.state.events import Events
from gateway.state.records import Journal
from gateway.state.replays import Replays
from gateway.state.writes import Writes

Money = NewType("Money", Decimal)


_AMOUNT = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,2})?")
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")  # well formed, but too long


def parse_money(value: object) -> Decimal:
    """A client's amount: a string (or integer) of ASCII digits with at most two
    decimals; never a float, other scripts' digits, underscores or a negative zero."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError('Money is a string such as "12.50"')
    text = str(value)
    if not _AMOUNT.fullmatch(text):
        if _DECIMAL.fullmatch(text):
            raise InputError("Money has at most two decimals and fifteen digits before them")
        raise InputError('Money is a string such as "12.50"')
    amount = Decimal(text)
    if amount.is_zero() and amount.is_signed():
        raise InputError('Money is a string such as "12.50"')
    return amount.quantize(Decimal("0.01"))


_MONEY = strawberry.scalar(
    name="Money",
    description='An amount in CNY, as a string with at most two decimals (e.g. "3200.00").'
    " Floats are refused: money is never binary floating point.",
    serialize=lambda value: str(Decimal(value).quantize(Decimal("0.01"))),
    parse_value=parse_money,
)


def beijing_time(moment: dt.datetime) -> str:
    """Every moment the graph answers with, one way: Beijing time to the second, with
    its offset (``2026-12-03T14:05:09+08:00``). A moment kept without a zone is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


def _parse_moment(value: object) -> dt.datetime:
    moment = dt.datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError("a DateTime needs its offset (e.g. +08:00)")
    return moment


_DATETIME = strawberry.scalar(
    name="DateTime",
    description="A moment, in Beijing time to the second with its offset, ISO 8601"
    ' (e.g. "2026-12-03T14:05:09+08:00").',
    serialize=beijing_time,
    parse_value=_parse_moment,
)

Relation = strawberry.enum(base.Relation, description="A relative's relation to a person.")
ChannelType = strawberry.enum(channels.Channel, name="Channel")
InsuranceType = strawberry.enum(base.InsuranceType)
InsuranceStatus = strawberry.enum(base.InsuranceStatus)
BindingStatus = strawberry.enum(base.BindingStatus)
# The graph's one enum of refusals, the provinces' and the gateway's (`gateway.common.refusals`),
# in the order their messages are listed.
_ErrorCode = enum.Enum("ErrorCode", [(code.name, code.value) for code in REFUSAL_CODES])  # type: ignore[misc]
ErrorCode = strawberry.enum(
    _ErrorCode, name="ErrorCode", description="Why an operation was refused."
)


def error_code(code: Code) -> enum.Enum:
    """A refusal's code as the graph shows it."""
    return _ErrorCode[code.name]


class ResolverServices(Protocol):
    """The long-lived services resolvers use (`gateway.graph.context.Services` has them)."""

    @property
    def provinces(self) -> Provinces: ...
    @property
    def mutual_aid(self) -> MutualAid: ...
    @property
    def kinship(self) -> Kinship: ...
    @property
    def settlements(self) -> Settlements: ...
    @property
    def premiums(self) -> Premiums: ...
    @property
    def diagnostics(self) -> Diagnostics: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def family(self) -> Family: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def replays(self) -> Replays: ...
    @property
    def writes(self) -> Writes: ...
    @property
    def events(self) -> Events: ...


class RequestContext(Protocol):
    """What resolvers use of the per-request context (`gateway.graph.context.Context` is one)."""

    @property
    def services(self) -> ResolverServices: ...
    @property
    def lang(self) -> Language: ...
    @property
    def document(self) -> DocumentNode | None: ...
    @property
    def prefetch(self) -> Prefetch: ...
    def signed_in(self) -> Caller: ...
    def caller_cert_no(self) -> str: ...
    def insured(self) -> str: ...
    async def person(self, cert_no: str) -> Located | None: ...
    async def links(self, cert_no: str) -> list[KinshipLink]: ...


Info_ = Info[RequestContext, None]


@strawberry.enum(
    description="Where a write to a province stands. DONE: the province answered (the"
    " result, or its refusal in errors). SUBMITTED: sent, but the answer was lost on the"
    " way; the gateway asks the province again until it knows. Send the same mutation"
    " with the same idempotencyKey later to get the outcome: it is never done twice."
)
class WriteStatus(enum.Enum):
    DONE = "DONE"
    SUBMITTED = "SUBMITTED"


IDEMPOTENCY_KEY = (
    "The caller's key for this request (1 to 64 printable ASCII characters, no spaces);"
    " sent again with the same key, the request returns its first outcome and is never"
    " done twice. One is made when none is given, and returned in the payload."
)


@strawberry.type(description="A pooling area (统筹区): a GB/T 2260 city code.")
class Area:
    code: str
    name: str


@strawberry.type(name="Policy", description="A province's mutual-aid rules, as data.")
class PolicyType:
    max_relatives: int
    cross_city: bool
    cross_province: bool
    spouse_confirmation: bool
    single_binding: bool
    commitment_required: bool
    allowed_relations: list[Relation]  # type: ignore[valid-type]
    premium_payment: bool = strawberry.field(
        description="An account may pay a bound relative's resident premium (2024 on)."
    )
    effective_from: dt.date

    @classmethod
    def of(cls, policy: Policy) -> PolicyType:
        return cls(
            max_relatives=policy.max_relatives,
            cross_city=policy.cross_city,
            cross_province=policy.cross_province,
            spouse_confirmation=policy.spouse_confirmation,
            single_binding=policy.single_binding,
            commitment_required=policy.commitment_required,
            allowed_relations=[r for r in base.Relation if r in policy.allowed_relations],
            premium_payment=policy.premium_payment,
            effective_from=policy.effective_from,
        )


@strawberry.type
class Province:
    code: str
    name: str
    policy: PolicyType = strawberry.field(
        description="The rules in force: today's (in the sandbox, those of the date it was started"
        " on, `gongji serve --policy-date`)."
    )
    policies: list[PolicyType] = strawberry.field(
        description="Every version of the rules, oldest first: past, in force (the one"
        " `policy` shows) and announced (an `effectiveFrom` still to come)."
    )

    @classmethod
    def of(cls, adapter: ProvinceAdapter) -> Province:
        return cls(
            code=adapter.code,
            name=adapter.name,
            policy=PolicyType.of(adapter.policy()),
            policies=[PolicyType.of(p) for p in adapter.timeline()],
        )

    def or_other(self, code: str | None, info: Info_) -> Province | None:
        """The province of ``code`` (None: this one), if it is federated: where the
        other side of something across provinces is."""
        if code is None:
            return self
        adapter = info.context.services.provinces.get(code)
        return None if adapter is None else Province.of(adapter)


@strawberry.type
class Insurance:
    type: InsuranceType  # type: ignore[valid-type]
    status: InsuranceStatus  # type: ignore[valid-type]


@strawberry.type
class Account:
    balance: Money


@strawberry.type(description="Someone other than the caller appears masked.")
class PersonRef:
    name: str
    cert_no: str

    @classmethod
    def of(cls, party: base.Party, caller: str) -> PersonRef:
        if party.cert_no == caller:
            return cls(name=party.name, cert_no=party.cert_no)
        return cls(name=mask_name(party.name), cert_no=mask_cert_no(party.cert_no))


@strawberry.type(description="An expected refusal: data, not a fault.")
class UserError:
    code: ErrorCode  # type: ignore[valid-type]
    message: str
    field: str | None

    @classmethod
    def of(cls, refusal: Refused, info: Info_) -> UserError:
        return cls(
            code=error_code(refusal.code),
            message=refusal_message(refusal.code, info.context.lang),
            field=refusal.field,
        )


class FamilyLinkKind(enum.Enum):
    MUTUAL_AID_BINDING = "MUTUAL_AID_BINDING"
    KINSHIP_LINK = "KINSHIP_LINK"  # a kinship request while pending
    SETTLEMENT = "SETTLEMENT"  # a settlement: who paid (the patient, or an authorizer), for whom


FamilyLinkKindType = strawberry.enum(FamilyLinkKind, name="FamilyLinkKind")


@strawberry.interface(
    description="Anything that links two people of a family, for clients that list them all:"
    " who links whom, what kind of link, its status, since when. `node(id:)` finds any of"
    " them again."
)
class FamilyLink:
    id: strawberry.ID
    kind: FamilyLinkKindType  # type: ignore[valid-type]
    who: PersonRef = strawberry.field(
        description="The authorizer, the adder, or the one whose account paid."
    )
    whom: PersonRef = strawberry.field(description="The beneficiary, the member, the patient.")
    link_status: str = strawberry.field(description="The object's own status, as text.")
    since: dt.datetime


@strawberry.type(
    name="MutualAidQuota",
    description="The amount an authorizer set aside for a relative insured in another"
    " province (共济额度): it left their balance when granted; what remains returns to it"
    " when the binding ends.",
)
class MutualAidQuota:
    granted: Money
    remaining: Money = strawberry.field(description="What has not been spent (0.00 once ended).")


@strawberry.type(description="An authorizer lets a relative spend their personal account.")
class MutualAidBinding(FamilyLink):
    id: strawberry.ID
    status: BindingStatus  # type: ignore[valid-type]
    relation: Relation = strawberry.field(  # type: ignore[valid-type]
        description="The beneficiary's relation to the authorizer."
    )
    authorizer: PersonRef
    beneficiary: PersonRef
    province: Province = strawberry.field(
        description="The province that holds the binding: the authorizer's."
    )
    created_at: dt.datetime
    quota: MutualAidQuota | None = strawberry.field(
        description="Across provinces (the 2026 rules): what was set aside for the relative,"
        " and what remains of it; null for a binding inside one province."
    )
    beneficiary_province_code: strawberry.Private[str | None]

    @strawberry.field(
        description="Where the relative is insured: another province for a binding across"
        " provinces, else the same as `province`."
    )
    def beneficiary_province(self, info: Info_) -> Province | None:
        return self.province.or_other(self.beneficiary_province_code, info)

    @classmethod
    def of(cls, binding: Binding, adapter: ProvinceAdapter, caller: str) -> MutualAidBinding:
        authorizer = PersonRef.of(binding.authorizer, caller)
        beneficiary = PersonRef.of(binding.beneficiary, caller)
        return cls(
            id=strawberry.ID(encode_id(BINDING_KIND, adapter.code, binding.id)),
            kind=FamilyLinkKind.MUTUAL_AID_BINDING,
            who=authorizer,
            whom=beneficiary,
            link_status=binding.status.value,
            since=binding.created_at,
            status=binding.status,
            relation=binding.relation,
            authorizer=authorizer,
            beneficiary=beneficiary,
            province=Province.of(adapter),
            created_at=binding.created_at,
            quota=None
            if binding.quota is None
            else MutualAidQuota(
                granted=Money(binding.quota.granted), remaining=Money(binding.quota.remaining)
            ),
            beneficiary_province_code=binding.beneficiary_province,
        )
