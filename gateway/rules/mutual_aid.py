"""Family mutual aid (家庭共济): binding, confirming and unbinding.

The gateway checks early, in the order a person would want to hear about
problems, using the authorizer's province's declared policy; the province then
checks again and its answer wins.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import EllipsisType

from adapters.base import (
    Binding,
    BindingStatus,
    ProvinceAdapter,
    RefusalCode,
    Relation,
)
from gateway.common.certno import is_valid, normalize
from gateway.common.channels import Channel
from gateway.common.ids import decode_id
from gateway.common.refusals import Code, GatewayCode, Refused
from gateway.provinces.directory import Directory, Located
from gateway.provinces.federated import Provinces
from gateway.state.outbox import Operation, Write
from gateway.state.outcome import Outcome
from gateway.state.writes import Route, Writes

BINDING_KIND = "MutualAidBinding"

# The input of `bindMutualAid` each refusal points at (none: the caller's own state).
_BIND_FIELDS: dict[Code, str] = {
    RefusalCode.INVALID_CERT_NO: "beneficiaryCertNo",
    GatewayCode.SELF_BINDING_NOT_ALLOWED: "beneficiaryCertNo",
    RefusalCode.PERSON_NOT_FOUND: "beneficiaryCertNo",
    RefusalCode.PERSON_INFO_MISMATCH: "beneficiaryName",
    RefusalCode.BENEFICIARY_NOT_INSURED: "beneficiaryCertNo",
    RefusalCode.RELATION_NOT_ALLOWED: "relation",
    RefusalCode.RELATION_NOT_VERIFIED: "relation",
    RefusalCode.CROSS_AREA_NOT_ALLOWED: "beneficiaryCertNo",
    RefusalCode.CROSS_PROVINCE_NOT_ALLOWED: "beneficiaryCertNo",
    RefusalCode.ALREADY_BOUND: "beneficiaryCertNo",
    RefusalCode.DUPLICATE_BINDING: "beneficiaryCertNo",
    RefusalCode.COMMITMENT_REQUIRED: "commitmentSigned",
    GatewayCode.QUOTA_REQUIRED: "quota",
    RefusalCode.QUOTA_NOT_ALLOWED: "quota",
    RefusalCode.QUOTA_ABOVE_BALANCE: "quota",
    RefusalCode.AMOUNT_NOT_POSITIVE: "quota",
}


@dataclass(frozen=True, slots=True)
class BindInput:
    beneficiary_cert_no: str
    beneficiary_name: str
    relation: Relation
    commitment_signed: bool
    # Across provinces: the amount set aside for the relative (共济额度).
    quota: Decimal | None = None


BindingOutcome = Outcome[Binding]  # what a binding write came to


@dataclass(frozen=True, slots=True)
class Plan:
    """A binding that passed the gateway's checks: which province to ask, and what it
    should answer."""

    adapter: ProvinceAdapter
    expected: BindingStatus
    beneficiary_province: str | None = None  # across provinces: the relative's


def judge(
    auth: Located,
    bene: Located,
    relation: Relation,
    *,
    civil: Relation | EllipsisType | None = ...,
    bindings: Sequence[Binding] | None = None,
    commitment_signed: bool = True,
    quota: Decimal | EllipsisType | None = ...,
) -> Code | None:
    """The first of the gateway's binding rules that ``auth`` binding ``bene`` breaks.

    Pure: it asks nothing. ``civil`` is the relation the civil record states (None:
    none), ``bindings`` the bindings of either of them and ``quota`` the amount set
    aside (None: none); left out, the rules that need them are not judged. The
    diagnosis and the family screen judge the same way.

    Across provinces (the 2026 rules), both provinces' policies must allow it, a quota
    no larger than the authorizer's balance is required, and the rules of a binding
    inside a province (its commitment letter, its single binding) do not apply; the
    authorizer's province's relations and cap do.
    """
    policy = auth.adapter.policy()
    across = bene.adapter.code != auth.adapter.code
    if not auth.person.is_employee:
        return RefusalCode.NOT_EMPLOYEE_INSURED
    if not bene.person.is_in_force:
        return RefusalCode.BENEFICIARY_NOT_INSURED
    if across:
        if not (policy.cross_province and bene.adapter.policy().cross_province):
            return RefusalCode.CROSS_PROVINCE_NOT_ALLOWED
    elif bene.person.area.code != auth.person.area.code and not policy.cross_city:
        return RefusalCode.CROSS_AREA_NOT_ALLOWED
    if relation not in policy.allowed_relations:
        return RefusalCode.RELATION_NOT_ALLOWED
    if not isinstance(quota, EllipsisType):
        refused = _judge_quota(auth, quota, across=across)
        if refused is not None:
            return refused
    if not isinstance(civil, EllipsisType):
        if civil is not relation:
            if civil is not None and civil not in policy.allowed_relations:
                return RefusalCode.RELATION_NOT_ALLOWED
            return RefusalCode.RELATION_NOT_VERIFIED
        if not across and policy.commitment_required and not commitment_signed:
            return RefusalCode.COMMITMENT_REQUIRED
    if bindings is None:
        return None
    a, b = auth.person.cert_no, bene.person.cert_no
    live = [x for x in bindings if x.status.is_live]
    if any(x.authorizer.cert_no == a and x.beneficiary.cert_no == b for x in live):
        return RefusalCode.DUPLICATE_BINDING
    if (
        not across
        and policy.single_binding
        and any(x.beneficiary.cert_no in (a, b) or x.authorizer.cert_no == b for x in live)
    ):
        return RefusalCode.ALREADY_BOUND
    if sum(x.authorizer.cert_no == a for x in live) >= policy.max_relatives:
        return RefusalCode.BINDING_LIMIT_REACHED
    return None


def _judge_quota(auth: Located, quota: Decimal | None, *, across: bool) -> Code | None:
    """A quota is required across provinces and refused inside one; it is positive and
    no more than the authorizer's balance, which it leaves when granted."""
    if not across:
        return None if quota is None else RefusalCode.QUOTA_NOT_ALLOWED
    if quota is None:
        return GatewayCode.QUOTA_REQUIRED
    if quota <= 0:
        return RefusalCode.AMOUNT_NOT_POSITIVE
    if quota > (auth.person.balance or Decimal(0)):
        return RefusalCode.QUOTA_ABOVE_BALANCE
    return None


def _refused(code: Code) -> BindingOutcome:
    """A refusal of `bindMutualAid`, pointing at the input it concerns."""
    return BindingOutcome.refused(code, _BIND_FIELDS.get(code))


def _on_binding(code: Code) -> str:
    """Where a refusal of acting on a binding points: the binding."""
    return "bindingId"


class MutualAid:
    def __init__(self, provinces: Provinces, directory: Directory, writes: Writes) -> None:
        self._provinces = provinces
        self._directory = directory
        self._writes = writes

    async def bind(
        self,
        authorizer: str,
        given: BindInput,
        *,
        dry_run: bool = False,
        channel: Channel | None = None,
        key: str | None = None,
    ) -> BindingOutcome:
        """Bind, after the gateway's early checks; ``dry_run`` stops after the checks and
        says what would happen (the province's own checks are not run).

        ``key`` (the idempotency key; made when absent): a repeat returns the first
        outcome without checking again.
        """
        if dry_run:
            checked = await self.check(authorizer, given)
            if isinstance(checked, Outcome):
                return dataclasses.replace(checked, dry_run=True)
            return BindingOutcome(adapter=checked.adapter, dry_run=True, expected=checked.expected)
        asked = Write(
            Operation.BIND,
            "",
            {
                "authorizer": authorizer,
                "beneficiary": normalize(given.beneficiary_cert_no),
                "beneficiary_name": given.beneficiary_name.strip(),
                "relation": given.relation.value,
                "commitment_signed": given.commitment_signed,
                # only when given: a binding inside a province is asked as it always was
                **({} if given.quota is None else {"quota": str(given.quota)}),
            },
            channel,
        )

        async def check() -> str | Route | Refused:
            checked = await self.check(authorizer, given)
            if isinstance(checked, Outcome):
                return checked.errors[0]
            if checked.beneficiary_province is None:
                return checked.adapter.code
            found = {"beneficiary_province": checked.beneficiary_province}
            return Route(checked.adapter.code, found)

        outcome = await self._writes.send(authorizer, key, asked, check, _BIND_FIELDS.get, Binding)
        refusal = outcome.errors[0] if outcome.errors else None
        if (
            refusal is not None
            and refusal.code is RefusalCode.PERSON_NOT_FOUND
            and outcome.adapter is not None  # the province's: it does not know the beneficiary
        ):  # as in `check`: no existence oracle
            return _refused(RefusalCode.PERSON_INFO_MISMATCH).under(outcome.key or "")
        return outcome

    async def check(self, authorizer: str, given: BindInput) -> BindingOutcome | Plan:
        """The binding the province would be asked for, or the first reason it would fail."""
        beneficiary = normalize(given.beneficiary_cert_no)
        if not is_valid(beneficiary):
            return _refused(RefusalCode.INVALID_CERT_NO)
        if beneficiary == authorizer:
            return _refused(GatewayCode.SELF_BINDING_NOT_ALLOWED)
        people = await self._directory.locate([authorizer, beneficiary])
        if authorizer not in people:
            return BindingOutcome.refused(RefusalCode.PERSON_NOT_FOUND, None)
        if beneficiary not in people:
            # the same answer as a wrong name: no one learns whether an ID number is insured
            return _refused(RefusalCode.PERSON_INFO_MISMATCH)
        auth, bene = people[authorizer], people[beneficiary]
        adapter = auth.adapter
        policy = adapter.policy()
        if bene.person.name != given.beneficiary_name.strip():
            return _refused(RefusalCode.PERSON_INFO_MISMATCH)
        early = judge(auth, bene, given.relation, quota=given.quota)  # needs no more asking
        if early is not None:
            return _refused(early)
        civil, existing = await asyncio.gather(
            adapter.relatives(authorizer), adapter.bindings_of([authorizer, beneficiary])
        )
        actual = next((r.relation for r in civil if r.cert_no == beneficiary), None)
        refused = judge(
            auth,
            bene,
            given.relation,
            civil=actual,
            bindings=existing,
            commitment_signed=given.commitment_signed,
            quota=given.quota,
        )
        if refused is not None:
            return _refused(refused)

        across = bene.adapter.code != adapter.code
        confirm = not across and policy.spouse_confirmation and given.relation is Relation.SPOUSE
        expected = BindingStatus.PENDING_CONFIRMATION if confirm else BindingStatus.ACTIVE
        return Plan(adapter, expected, bene.adapter.code if across else None)

    async def respond(
        self,
        actor: str,
        binding_id: str,
        *,
        accept: bool,
        channel: Channel | None = None,
        key: str | None = None,
    ) -> BindingOutcome:
        def allowed(binding: Binding) -> Code | None:
            if binding.beneficiary.cert_no != actor:
                return RefusalCode.FORBIDDEN
            if binding.status is not BindingStatus.PENDING_CONFIRMATION:
                return RefusalCode.INVALID_BINDING_STATE
            return None

        return await self._act(
            Operation.RESPOND, actor, binding_id, {"accept": accept}, allowed, channel, key
        )

    async def unbind(
        self,
        actor: str,
        binding_id: str,
        *,
        channel: Channel | None = None,
        key: str | None = None,
    ) -> BindingOutcome:
        def allowed(binding: Binding) -> Code | None:
            # across provinces either of the two may end it; inside one, the authorizer
            ends = (binding.authorizer, binding.beneficiary) if binding.across_provinces else ()
            if actor not in (binding.authorizer.cert_no, *(p.cert_no for p in ends)):
                return RefusalCode.FORBIDDEN
            if not binding.status.is_live:
                return RefusalCode.INVALID_BINDING_STATE
            return None

        return await self._act(Operation.UNBIND, actor, binding_id, {}, allowed, channel, key)

    async def _act(
        self,
        operation: Operation,
        actor: str,
        binding_id: str,
        extra: dict[str, bool],
        allowed: Callable[[Binding], Code | None],
        channel: Channel | None,
        key: str | None,
    ) -> BindingOutcome:
        """Act on an existing binding, once per idempotency key: ``allowed`` says whether
        ``actor`` may, of the binding as the province holds it now."""
        decoded = decode_id(binding_id, BINDING_KIND)
        known = decoded is not None and decoded[0] in self._provinces
        province, upstream_id = decoded if decoded is not None and known else ("", binding_id)
        asked = Write(
            operation, province, {"binding_id": upstream_id, "actor": actor, **extra}, channel
        )

        async def check() -> str | Refused:
            found = await self.find(actor, binding_id) if known else None
            refused = RefusalCode.FORBIDDEN if found is None else allowed(found[0])
            return province if refused is None else Refused(refused, "bindingId")

        return await self._writes.send(actor, key, asked, check, _on_binding, Binding)

    async def bindings_of(
        self, cert_no: str, home: ProvinceAdapter
    ) -> list[tuple[Binding, ProvinceAdapter]]:
        """Every binding the person takes part in, from each province that may hold one.

        That is their own province (``home``), plus any province whose policy binds
        across provinces (its authorizers may have bound them).
        """
        asked = [
            adapter
            for adapter in self._provinces.values()
            if adapter is home or adapter.policy().cross_province
        ]
        answers = await asyncio.gather(*(a.bindings_of([cert_no]) for a in asked))
        return [(b, a) for a, bindings in zip(asked, answers, strict=True) for b in bindings]

    async def find(self, actor: str, binding_id: str) -> tuple[Binding, ProvinceAdapter] | None:
        """The binding behind a global id, if the actor takes part in it; else None."""
        decoded = decode_id(binding_id, BINDING_KIND)
        if decoded is None:
            return None
        code, upstream_id = decoded
        adapter = self._provinces.get(code)
        if adapter is None:
            return None
        for binding in await adapter.bindings_of([actor]):
            if binding.id == upstream_id:
                return binding, adapter
        return None
