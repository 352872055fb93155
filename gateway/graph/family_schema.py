"""The family screen in the graph: `me { family { ... } }`."""

from __future__ import annotations

import strawberry

from adapters.base import UpstreamError
from gateway.common.messages import reason_message, refusal_message, state_message
from gateway.graph.diagnosis_schema import DiagnosisCode
from gateway.graph.kinship_schema import KinshipLinkType
from gateway.graph.types import (
    Area,
    ErrorCode,
    Info_,
    Insurance,
    MutualAidBinding,
    PersonRef,
    Province,
    Relation,
    error_code,
)
from gateway.rules.family import AgeBand, KinshipState, Member, MutualAidState

AgeBandType = strawberry.enum(AgeBand, name="AgeBand")
MutualAidStateType = strawberry.enum(MutualAidState, name="MutualAidState")
KinshipStateType = strawberry.enum(KinshipState, name="KinshipState")


@strawberry.type(description="Where mutual aid stands with this relative, in plain words.")
class MutualAidVerdict:
    state: MutualAidStateType  # type: ignore[valid-type]
    reason: DiagnosisCode | None  # type: ignore[valid-type]
    message: str


@strawberry.type(description="Where a kinship account stands with this relative.")
class KinshipVerdict:
    state: KinshipStateType  # type: ignore[valid-type]
    reason: ErrorCode | None  # type: ignore[valid-type]
    documents_needed: bool = strawberry.field(
        description="Adding them needs a birth certificate or household register (16 or younger)."
    )
    message: str


@strawberry.type(description="Family mutual aid (家庭共济) with one relative, both ways.")
class FamilyMutualAid:
    i_authorize: MutualAidBinding | None = strawberry.field(
        description="My binding letting them spend my account."
    )
    authorizes_me: MutualAidBinding | None = strawberry.field(
        description="Their binding letting me spend their account."
    )
    verdict: MutualAidVerdict


@strawberry.type(description="The kinship account (亲情账户) with one relative, both ways.")
class FamilyKinship:
    i_added: KinshipLinkType | None
    added_me: KinshipLinkType | None
    verdict: KinshipVerdict


@strawberry.type(
    description="One relative on the family screen. When a province fails, the fields that"
    " needed it are errors (extensions.code UPSTREAM_* or CIRCUIT_OPEN, and the province):"
    " insuredArea, province, insurance, mutualAid and kinship when it insures them;"
    " mutualAid when it holds the bindings. The rest of the screen is answered."
)
class FamilyMember:
    relative: PersonRef
    relation: Relation | None = strawberry.field(  # type: ignore[valid-type]
        description="Their relation to me: the civil record's, or for someone linked but not"
        " on it, what the link claims (null: neither says)."
    )
    age_band: AgeBandType  # type: ignore[valid-type]
    found_area: strawberry.Private[Area | None]
    found_province: strawberry.Private[Province | None]
    found_insurance: strawberry.Private[Insurance | None]
    aid: strawberry.Private[FamilyMutualAid]
    kin: strawberry.Private[FamilyKinship]
    unlocated: strawberry.Private[UpstreamError | None] = None
    bindings_failed: strawberry.Private[UpstreamError | None] = None

    def _located(self) -> None:
        if self.unlocated is not None:
            raise self.unlocated

    @strawberry.field
    def insured_area(self) -> Area | None:
        self._located()
        return self.found_area

    @strawberry.field
    def province(self) -> Province | None:
        self._located()
        return self.found_province

    @strawberry.field
    def insurance(self) -> Insurance | None:
        self._located()
        return self.found_insurance

    @strawberry.field(description="Null (with an error) only when a province failed.")
    def mutual_aid(self) -> FamilyMutualAid | None:
        self._located()
        if self.bindings_failed is not None:
            raise self.bindings_failed
        return self.aid

    @strawberry.field(description="Null (with an error) only when a province failed.")
    def kinship(self) -> FamilyKinship | None:
        self._located()
        return self.kin


def member_of(member: Member, caller: str, info: Info_) -> FamilyMember:
    lang = info.context.lang
    policy = info.context.services.kinship.policy
    where = member.located
    person = where.person if where else None

    aid = member.mutual_aid
    message = state_message("MUTUAL_AID", aid.state.value, lang)
    if aid.reason is not None:
        message += ("：" if lang != "en" else ": ") + reason_message(aid.reason.value, lang)[0]
    kin = member.kinship
    kin_message = state_message("KINSHIP", kin.state.value, lang)
    if kin.reason is not None:
        kin_message += ("：" if lang != "en" else ": ") + refusal_message(kin.reason, lang)

    def binding(found: tuple[object, object] | None) -> MutualAidBinding | None:
        if found is None:
            return None
        made, adapter = found
        return MutualAidBinding.of(made, adapter, caller)  # type: ignore[arg-type]

    return FamilyMember(
        relative=PersonRef.of(member.party, caller),
        relation=member.relation,
        found_area=None if person is None else Area(code=person.area.code, name=person.area.name),
        found_province=None if where is None else Province.of(where.adapter),
        found_insurance=None
        if person is None
        else Insurance(type=person.insurance_type, status=person.insurance_status),
        age_band=member.age_band,
        unlocated=member.unlocated,
        bindings_failed=member.bindings_failed,
        aid=FamilyMutualAid(
            i_authorize=binding(member.i_authorize),
            authorizes_me=binding(member.authorizes_me),
            verdict=MutualAidVerdict(state=aid.state, reason=aid.reason, message=message),
        ),
        kin=FamilyKinship(
            i_added=None
            if member.i_added is None
            else KinshipLinkType.of(member.i_added, caller, policy),
            added_me=None
            if member.added_me is None
            else KinshipLinkType.of(member.added_me, caller, policy),
            verdict=KinshipVerdict(
                state=kin.state,
                reason=None if kin.reason is None else error_code(kin.reason),
                documents_needed=kin.documents_needed,
                message=kin_message,
            ),
        ),
    )
