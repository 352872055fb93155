"""The one graph: types, queries and mutations."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Annotated

import strawberry
from graphql import GraphQLError, GraphQLSchema
from strawberry.extensions import (
    DisableIntrospection,
    MaxTokensLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from gateway.common.certno import mask_phone
from gateway.graph.audit import Audited
from gateway.graph.audit_schema import AuditQueries
from gateway.graph.context import Documented
from gateway.graph.diagnosis_schema import DiagnosisQueries
from gateway.graph.errors import ErrorBoundary
from gateway.graph.events_schema import Subscription
from gateway.graph.family_schema import FamilyMember, member_of
from gateway.graph.kinship_schema import KinshipLinkType, KinshipMutations, KinshipQueries
from gateway.graph.marks import AUDITED, Watched
from gateway.graph.metrics import Measured
from gateway.graph.node_schema import NodeQueries
from gateway.graph.operation import me_fields
from gateway.graph.prefetch import Ahead
from gateway.graph.premium_schema import PremiumMutations
from gateway.graph.ratelimit import RateLimit
from gateway.graph.records_schema import (
    AuthorizationRecordConnection,
    RecordChannel,
    RecordRole,
    SpendingRecordConnection,
    authorization_records,
    spending_records,
)
from gateway.graph.settlement_schema import SettlementMutations
from gateway.graph.shape import Limits, Parsed, Validated, Validation
from gateway.graph.types import (
    _DATETIME,
    _MONEY,
    IDEMPOTENCY_KEY,
    Account,
    Area,
    BindingStatus,
    Info_,
    Insurance,
    Money,
    MutualAidBinding,
    Province,
    Relation,
    UserError,
    WriteStatus,
)
from gateway.graph.variables import Variables
from gateway.provinces.directory import Located
from gateway.rules.mutual_aid import BindingOutcome, BindInput


@strawberry.type
class MutualAidBindings:
    as_authorizer: list[MutualAidBinding]
    as_beneficiary: list[MutualAidBinding]


def _asked_of_me(info: Info_) -> set[str]:
    """The fields asked of this `me` (the one answered under its response key), as
    ``@skip`` and ``@include`` leave them."""
    document = info.context.document
    if document is None:
        return set()
    key = str(info.path.key)
    return me_fields(info.operation, document, info.variable_values, key=key)


@strawberry.type
class Me:
    located: strawberry.Private[Located]
    ahead: strawberry.Private[Ahead] = dataclasses.field(default_factory=Ahead)

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

    @strawberry.field(
        description="The relatives I added to my e-voucher (亲情账户), newest first.",
        metadata=AUDITED,
    )
    async def kinship_members(self, info: Info_) -> list[KinshipLinkType]:
        return await self._kinship(info, adder=True)

    @strawberry.field(
        description="The people who added me to their e-voucher, newest first.", metadata=AUDITED
    )
    async def added_me_as_member(self, info: Info_) -> list[KinshipLinkType]:
        return await self._kinship(info, adder=False)

    async def _kinship(self, info: Info_, *, adder: bool) -> list[KinshipLinkType]:
        me = self.located.person.cert_no
        kinship = info.context.services.kinship
        return [
            KinshipLinkType.of(link, me, kinship.policy)
            for link in await info.context.links(me)
            if (link.adder.cert_no == me) is adder
        ]

    @strawberry.field(
        description="支出明细: payments mutual aid made, newest first. As AUTHORIZER, what my"
        " account paid for relatives; as BENEFICIARY, what was paid for me and by whom."
        " Dates are Beijing dates, both included; at most 100 a page.",
        metadata=AUDITED,
    )
    async def spending_records(
        self,
        info: Info_,
        role: RecordRole,  # type: ignore[valid-type]
        first: int = 20,
        after: str | None = None,
        since: dt.date | None = None,
        until: dt.date | None = None,
        relative_cert_no: str | None = None,
    ) -> SpendingRecordConnection:
        return await spending_records(
            self.located, info, role, first, after, since, until, relative_cert_no
        )

    @strawberry.field(
        description="授权记录: what happened to my mutual-aid bindings (created, confirmed,"
        " declined, unbound), when and through which channel, newest first.",
        metadata=AUDITED,
    )
    async def authorization_records(
        self,
        info: Info_,
        first: int = 20,
        after: str | None = None,
        since: dt.date | None = None,
        until: dt.date | None = None,
        relative_cert_no: str | None = None,
    ) -> AuthorizationRecordConnection:
        return await authorization_records(
            self.located, info, first, after, since, until, relative_cert_no
        )

    @strawberry.field(
        description="The family screen: every relative once (the civil record's, and anyone"
        " linked by either feature), with mutual aid and the kinship account side by side.",
        metadata=AUDITED,
    )
    async def family(self, info: Info_) -> list[FamilyMember]:
        me = self.located.person.cert_no
        family = info.context.services.family
        started = self.ahead.take("family")
        facts = await (started or family.facts(me, self.located.adapter, info.context.links(me)))
        return [member_of(m, me, info) for m in family.screen(self.located, facts)]

    @strawberry.field(metadata=AUDITED)
    async def mutual_aid_bindings(self, info: Info_) -> MutualAidBindings:
        me = self.located.person.cert_no
        started = self.ahead.take("bindings")
        found = await (
            started or info.context.services.mutual_aid.bindings_of(me, self.located.adapter)
        )
        view = [(b, MutualAidBinding.of(b, adapter, me)) for b, adapter in found]
        return MutualAidBindings(
            as_authorizer=[v for b, v in view if b.authorizer.cert_no == me],
            as_beneficiary=[v for b, v in view if b.beneficiary.cert_no == me],
        )


@strawberry.type
class MutualAidBindingPayload:
    binding: MutualAidBinding | None
    errors: list[UserError]
    status: WriteStatus = strawberry.field(
        default=WriteStatus.DONE,
        description="SUBMITTED: the province's answer is not known yet (binding is null).",
    )
    idempotency_key: str | None = strawberry.field(
        default=None, description="The key this request went under (null for a dry run)."
    )
    dry_run: bool = strawberry.field(
        default=False, description="Nothing was done: the answer says what would happen."
    )
    expected_status: BindingStatus | None = strawberry.field(  # type: ignore[valid-type]
        default=None,
        description="A dry run without errors: the status the binding would start in.",
    )

    @classmethod
    def of(cls, outcome: BindingOutcome, info: Info_) -> MutualAidBindingPayload:
        binding = None
        if outcome.value is not None and outcome.adapter is not None:
            binding = MutualAidBinding.of(
                outcome.value, outcome.adapter, info.context.caller_cert_no()
            )
        return cls(
            binding=binding,
            errors=[UserError.of(e, info) for e in outcome.errors],
            dry_run=outcome.dry_run,
            expected_status=outcome.expected,
            status=WriteStatus.SUBMITTED if outcome.submitted else WriteStatus.DONE,
            idempotency_key=None if outcome.dry_run else outcome.key,
        )


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
    quota: Money | None = strawberry.field(
        default=None,
        description="For a relative insured in another province (the 2026 rules), and only"
        " then: the amount set aside for them (共济额度). It leaves the caller's balance at"
        " once, and what remains returns when the binding ends.",
    )
    dry_run: bool = strawberry.field(
        default=False,
        description="Only check: say what would happen (the gateway's checks; the province"
        " checks again when it is done for real).",
    )
    channel: RecordChannel | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="The channel the request comes through (授权记录 show it)."
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY)


@strawberry.type
class Query(KinshipQueries, DiagnosisQueries, NodeQueries, AuditQueries):
    @strawberry.field(description="The federated provinces and the rules each applies today.")
    def provinces(self, info: Info_) -> list[Province]:
        return [Province.of(adapter) for adapter in info.context.services.provinces.values()]

    @strawberry.field(description="The caller; null when no federated province insures them.")
    async def me(self, info: Info_) -> Me | None:
        # what the fields asked need starts on the caller's remembered province while
        # their own province is asked who they are
        caller = info.context.insured()
        located, ahead = await info.context.prefetch.locate(caller, _asked_of_me(info))
        return None if located is None else Me(located=located, ahead=ahead)


@strawberry.type
class Mutation(KinshipMutations, SettlementMutations, PremiumMutations):
    @strawberry.mutation(description="The caller lets a relative spend their personal account.")
    async def bind_mutual_aid(
        self, info: Info_, input: BindMutualAidInput
    ) -> MutualAidBindingPayload:
        caller = info.context.insured()
        outcome = await info.context.services.mutual_aid.bind(
            caller,
            BindInput(
                beneficiary_cert_no=input.beneficiary_cert_no,
                beneficiary_name=input.beneficiary_name,
                relation=input.relation,
                commitment_signed=input.commitment_signed,
                quota=input.quota,
            ),
            dry_run=input.dry_run,
            channel=input.channel,
            key=input.idempotency_key,
        )
        return MutualAidBindingPayload.of(outcome, info)

    @strawberry.mutation(description="The invited relative accepts or declines a binding.")
    async def respond_to_mutual_aid_binding(
        self,
        info: Info_,
        binding_id: strawberry.ID,
        accept: bool,
        channel: RecordChannel | None = None,  # type: ignore[valid-type]
        idempotency_key: Annotated[
            str | None, strawberry.argument(description=IDEMPOTENCY_KEY)
        ] = None,
    ) -> MutualAidBindingPayload:
        caller = info.context.insured()
        outcome = await info.context.services.mutual_aid.respond(
            caller, binding_id, accept=accept, channel=channel, key=idempotency_key
        )
        return MutualAidBindingPayload.of(outcome, info)

    @strawberry.mutation(
        description="The authorizer ends a binding; across provinces the relative may too."
        " What remains of a quota returns to the authorizer's account."
    )
    async def unbind_mutual_aid(
        self,
        info: Info_,
        binding_id: strawberry.ID,
        channel: RecordChannel | None = None,  # type: ignore[valid-type]
        idempotency_key: Annotated[
            str | None, strawberry.argument(description=IDEMPOTENCY_KEY)
        ] = None,
    ) -> MutualAidBindingPayload:
        caller = info.context.insured()
        outcome = await info.context.services.mutual_aid.unbind(
            caller, binding_id, channel=channel, key=idempotency_key
        )
        return MutualAidBindingPayload.of(outcome, info)


class _Schema(strawberry.Schema):
    """The graph, with the documents it has parsed and validated (`validated`)."""

    def __init__(
        self,
        *,
        validated: Validated,
        extensions: Sequence[type[SchemaExtension] | Callable[[], SchemaExtension]],
    ) -> None:
        super().__init__(
            query=Query,
            mutation=Mutation,
            subscription=Subscription,
            extensions=extensions,
            config=StrawberryConfig(scalar_map={Money: _MONEY, dt.datetime: _DATETIME}),
        )
        self.validated = validated
        self.watched = Watched.of(self)  # the fields audited and limited, as declared

    @property
    def graphql_schema(self) -> GraphQLSchema:
        """The graphql-core schema Strawberry built from the graph: the extensions check
        documents and variables against it (`gateway.graph.operation.graphql_schema`)."""
        return self._schema

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Logged by `ErrorBoundary`, with the request id and without personal data."""


# Limits on what one request may ask (each refused with its own extensions.code).
MAX_TOKENS = 800  # the largest operation the apps ship has about 230


def build_schema(*, introspection: bool = True, limits: Limits = Limits()) -> strawberry.Schema:  # noqa: B008
    """The graph; without ``introspection``, introspection queries fail validation."""
    validated = Validated()
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        Measured,  # outermost, with the audit: they see outcomes as the boundary codes them
        Audited,
        ErrorBoundary,
        Variables,  # before anything counts or runs: a client's wrong value is theirs
        RateLimit,
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        # a front end sends the same few documents over and over: parse and validate
        # each once (only those that pass are kept); `Validation` measures depth,
        # aliases and cost in one pass before graphql-core's rules
        lambda: Parsed(validated),
        lambda: Validation(limits, validated),
        Documented,  # the document on the request's context, for `Query.me`
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return _Schema(validated=validated, extensions=extensions)


schema = build_schema()
