"""The one graph: types, queries and mutations."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import NewType

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, Info

from adapters import base
from adapters.base import Binding, Policy, ProvinceAdapter, Refusal
from gateway.certno import mask_cert_no, mask_name, mask_phone
from gateway.context import Context
from gateway.directory import Located
from gateway.errors import ErrorBoundary
from gateway.ids import encode_id
from gateway.messages import refusal_message
from gateway.mutual_aid import BINDING_KIND, BindInput, Outcome

Money = NewType("Money", Decimal)

_MONEY = strawberry.scalar(
    name="Money",
    description='An amount in CNY, as a string with two decimals (e.g. "3200.00").',
    serialize=lambda value: str(Decimal(value).quantize(Decimal("0.01"))),
    parse_value=lambda value: Decimal(str(value)).quantize(Decimal("0.01")),
)

Relation = strawberry.enum(base.Relation, description="A relative's relation to a person.")
InsuranceType = strawberry.enum(base.InsuranceType)
InsuranceStatus = strawberry.enum(base.InsuranceStatus)
BindingStatus = strawberry.enum(base.BindingStatus)
ErrorCode = strawberry.enum(
    base.RefusalCode, name="ErrorCode", description="Why an operation was refused."
)

Info_ = Info[Context, None]


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
            effective_from=policy.effective_from,
        )


@strawberry.type
class Province:
    code: str
    name: str
    policy: PolicyType

    @classmethod
    def of(cls, adapter: ProvinceAdapter) -> Province:
        return cls(code=adapter.code, name=adapter.name, policy=PolicyType.of(adapter.policy()))


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


@strawberry.type(description="An authorizer lets a relative spend their personal account.")
class MutualAidBinding:
    id: strawberry.ID
    status: BindingStatus  # type: ignore[valid-type]
    relation: Relation = strawberry.field(  # type: ignore[valid-type]
        description="The beneficiary's relation to the authorizer."
    )
    authorizer: PersonRef
    beneficiary: PersonRef
    province: Province
    created_at: dt.datetime

    @classmethod
    def of(cls, binding: Binding, adapter: ProvinceAdapter, caller: str) -> MutualAidBinding:
        return cls(
            id=strawberry.ID(encode_id(BINDING_KIND, adapter.code, binding.id)),
            status=binding.status,
            relation=binding.relation,
            authorizer=PersonRef.of(binding.authorizer, caller),
            beneficiary=PersonRef.of(binding.beneficiary, caller),
            province=Province.of(adapter),
            created_at=binding.created_at,
        )


@strawberry.type
class MutualAidBindings:
    as_authorizer: list[MutualAidBinding]
    as_beneficiary: list[MutualAidBinding]


@strawberry.type
class Me:
    located: strawberry.Private[Located]

    @strawberry.field
    def cert_no(self) -> str:
        return self.located.person.cert_no

    @strawberry.field
    def name(self) -> str:
        return self.located.person.name

    @strawberry.field(description="The caller's own phone number, masked in the middle.")
    def phone(self) -> str | None:
        phone = self.located.person.phone
        return mask_phone(phone) if phone else None

    @strawberry.field
    def insured_area(self) -> Area:
        area = self.located.person.area
        return Area(code=area.code, name=area.name)

    @strawberry.field
    def province(self) -> Province:
        return Province.of(self.located.adapter)

    @strawberry.field
    def insurance(self) -> Insurance:
        person = self.located.person
        return Insurance(type=person.insurance_type, status=person.insurance_status)

    @strawberry.field(description="The personal account (个人账户); null for resident insurance.")
    def account(self) -> Account | None:
        balance = self.located.person.balance
        return None if balance is None else Account(balance=Money(balance))

    @strawberry.field
    async def mutual_aid_bindings(self, info: Info_) -> MutualAidBindings:
        me = self.located.person.cert_no
        found = await info.context.services.mutual_aid.bindings_of(me, self.located.adapter)
        view = [(b, MutualAidBinding.of(b, adapter, me)) for b, adapter in found]
        return MutualAidBindings(
            as_authorizer=[v for b, v in view if b.authorizer.cert_no == me],
            as_beneficiary=[v for b, v in view if b.beneficiary.cert_no == me],
        )


@strawberry.type(description="An expected refusal: data, not a fault.")
class UserError:
    code: ErrorCode  # type: ignore[valid-type]
    message: str
    field: str | None

    @classmethod
    def of(cls, refusal: Refusal, info: Info_) -> UserError:
        return cls(
            code=refusal.code,
            message=refusal_message(refusal.code, info.context.lang),
            field=refusal.field,
        )


@strawberry.type
class MutualAidBindingPayload:
    binding: MutualAidBinding | None
    errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome, info: Info_) -> MutualAidBindingPayload:
        binding = None
        if outcome.binding is not None and outcome.adapter is not None:
            binding = MutualAidBinding.of(
                outcome.binding, outcome.adapter, info.context.caller_cert_no()
            )
        return cls(binding=binding, errors=[UserError.of(e, info) for e in outcome.errors])


@strawberry.input
class BindMutualAidInput:
    beneficiary_cert_no: str
    beneficiary_name: str
    relation: Relation = strawberry.field(  # type: ignore[valid-type]
        description="The relative's relation to the caller (the authorizer)."
    )
    commitment_signed: bool = strawberry.field(
        default=False, description="The caller has signed the commitment letter (承诺书)."
    )


@strawberry.type
class Query:
    @strawberry.field(description="The federated provinces and the rules each applies today.")
    def provinces(self, info: Info_) -> list[Province]:
        return [Province.of(adapter) for adapter in info.context.services.provinces.values()]

    @strawberry.field(description="The caller; null when no federated province insures them.")
    async def me(self, info: Info_) -> Me | None:
        caller = info.context.caller_cert_no()
        located = await info.context.person(caller)
        return None if located is None else Me(located=located)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="The caller lets a relative spend their personal account.")
    async def bind_mutual_aid(
        self, info: Info_, input: BindMutualAidInput
    ) -> MutualAidBindingPayload:
        caller = info.context.caller_cert_no()
        outcome = await info.context.services.mutual_aid.bind(
            caller,
            BindInput(
                beneficiary_cert_no=input.beneficiary_cert_no,
                beneficiary_name=input.beneficiary_name,
                relation=input.relation,
                commitment_signed=input.commitment_signed,
            ),
        )
        return MutualAidBindingPayload.of(outcome, info)

    @strawberry.mutation(description="The invited relative accepts or declines a binding.")
    async def respond_to_mutual_aid_binding(
        self, info: Info_, binding_id: strawberry.ID, accept: bool
    ) -> MutualAidBindingPayload:
        caller = info.context.caller_cert_no()
        outcome = await info.context.services.mutual_aid.respond(caller, binding_id, accept=accept)
        return MutualAidBindingPayload.of(outcome, info)

    @strawberry.mutation(description="The authorizer ends a binding.")
    async def unbind_mutual_aid(
        self, info: Info_, binding_id: strawberry.ID
    ) -> MutualAidBindingPayload:
        caller = info.context.caller_cert_no()
        outcome = await info.context.services.mutual_aid.unbind(caller, binding_id)
        return MutualAidBindingPayload.of(outcome, info)


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Logged by `ErrorBoundary`, with the request id and without personal data."""


def build_schema(*, introspection: bool = True) -> strawberry.Schema:
    """The graph; without ``introspection``, introspection queries fail validation."""
    extensions: list[type[SchemaExtension]] = [ErrorBoundary]
    if not introspection:
        extensions.append(DisableIntrospection)
    return _Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(scalar_map={Money: _MONEY}),
    )


schema = build_schema()
