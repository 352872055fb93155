"""Family mutual aid (家庭共济): binding, confirming and unbinding.

The gateway checks early, in the order a person would want to hear about
problems, using the authorizer's province's declared policy; the province then
checks again and its answer wins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import EllipsisType

from adapters.base import (
    Binding,
    BindingStatus,
    BindRequest,
    ProvinceAdapter,
    Refusal,
    RefusalCode,
    Relation,
)
from gateway.certno import is_valid, normalize
from gateway.channels import Channel
from gateway.directory import Directory, Located
from gateway.ids import decode_id
from gateway.provinces import Provinces
from gateway.records import Event, Journal

log = logging.getLogger(__name__)

BINDING_KIND = "MutualAidBinding"

# The input of `bindMutualAid` each refusal points at (none: the caller's own state).
_BIND_FIELDS: dict[RefusalCode, str] = {
    RefusalCode.INVALID_CERT_NO: "beneficiaryCertNo",
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
}


@dataclass(frozen=True, slots=True)
class BindInput:
    beneficiary_cert_no: str
    beneficiary_name: str
    relation: Relation
    commitment_signed: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """A binding with the province that holds it, or the refusals; for a dry run,
    the status the binding would have."""

    binding: Binding | None = None
    adapter: ProvinceAdapter | None = None
    errors: Sequence[Refusal] = ()
    dry_run: bool = False
    expected: BindingStatus | None = None

    @classmethod
    def refused(cls, code: RefusalCode, field: str | None) -> Outcome:
        return cls(errors=(Refusal(code, field),))


@dataclass(frozen=True, slots=True)
class Plan:
    """A binding that passed the gateway's checks: what to ask the province for."""

    adapter: ProvinceAdapter
    request: BindRequest
    expected: BindingStatus


def judge(
    auth: Located,
    bene: Located,
    relation: Relation,
    *,
    civil: Relation | EllipsisType | None = ...,
    bindings: Sequence[Binding] | None = None,
    commitment_signed: bool = True,
) -> RefusalCode | None:
    """The first of the gateway's binding rules that ``auth`` binding ``bene`` breaks.

    Pure: it asks nothing. ``civil`` is the relation the civil record states (None:
    none) and ``bindings`` the bindings of either of them; left out, the rules that
    need them are not judged. The diagnosis and the family screen judge the same way.
    """
    policy = auth.adapter.policy()
    if not auth.person.is_employee:
        return RefusalCode.NOT_EMPLOYEE_INSURED
    if not bene.person.is_in_force:
        return RefusalCode.BENEFICIARY_NOT_INSURED
    if bene.adapter.code != auth.adapter.code:
        if not policy.cross_province:
            return RefusalCode.CROSS_PROVINCE_NOT_ALLOWED
    elif bene.person.area.code != auth.person.area.code and not policy.cross_city:
        return RefusalCode.CROSS_AREA_NOT_ALLOWED
    if relation not in policy.allowed_relations:
        return RefusalCode.RELATION_NOT_ALLOWED
    if not isinstance(civil, EllipsisType):
        if civil is not relation:
            if civil is not None and civil not in policy.allowed_relations:
                return RefusalCode.RELATION_NOT_ALLOWED
            return RefusalCode.RELATION_NOT_VERIFIED
        if policy.commitment_required and not commitment_signed:
            return RefusalCode.COMMITMENT_REQUIRED
    if bindings is None:
        return None
    a, b = auth.person.cert_no, bene.person.cert_no
    live = [x for x in bindings if x.status.is_live]
    if any(x.authorizer.cert_no == a and x.beneficiary.cert_no == b for x in live):
        return RefusalCode.DUPLICATE_BINDING
    if policy.single_binding and any(
        x.beneficiary.cert_no in (a, b) or x.authorizer.cert_no == b for x in live
    ):
        return RefusalCode.ALREADY_BOUND
    if sum(x.authorizer.cert_no == a for x in live) >= policy.max_relatives:
        return RefusalCode.BINDING_LIMIT_REACHED
    return None


def _refused(code: RefusalCode) -> Outcome:
    """A refusal of `bindMutualAid`, pointing at the input it concerns."""
    return Outcome.refused(code, _BIND_FIELDS.get(code))


class MutualAid:
    def __init__(
        self, provinces: Provinces, directory: Directory, journal: Journal | None = None
    ) -> None:
        self._provinces = provinces
        self._directory = directory
        self._journal = journal

    async def _journaled(self, outcome: Outcome, event: Event, channel: Channel | None) -> Outcome:
        """Journal what the province did; the province's answer stands even if that fails."""
        if self._journal is not None and outcome.binding and outcome.adapter:
            try:
                await self._journal.record(outcome.binding, outcome.adapter, event, channel)
            except Exception:
                log.exception("binding %s: %s not journaled", outcome.binding.id, event.value)
        return outcome

    async def bind(
        self,
        authorizer: str,
        given: BindInput,
        *,
        dry_run: bool = False,
        channel: Channel | None = None,
    ) -> Outcome:
        """Bind, after the gateway's early checks; ``dry_run`` stops after the checks and
        says what would happen (the province's own checks are not run)."""
        checked = await self.check(authorizer, given)
        if isinstance(checked, Outcome):
            return dataclasses.replace(checked, dry_run=dry_run)
        if dry_run:
            return Outcome(adapter=checked.adapter, dry_run=True, expected=checked.expected)
        result = await checked.adapter.bind(checked.request)
        if isinstance(result, Refusal):
            code = result.code
            if code is RefusalCode.PERSON_NOT_FOUND:  # as above: no existence oracle
                code = RefusalCode.PERSON_INFO_MISMATCH
            return _refused(code)
        return await self._journaled(
            Outcome(binding=result, adapter=checked.adapter), Event.CREATED, channel
        )

    async def check(self, authorizer: str, given: BindInput) -> Outcome | Plan:
        """The binding the province would be asked for, or the first reason it would fail."""
        beneficiary = normalize(given.beneficiary_cert_no)
        if not is_valid(beneficiary):
            return _refused(RefusalCode.INVALID_CERT_NO)
        if beneficiary == authorizer:
            return Outcome.refused(RefusalCode.RELATION_NOT_VERIFIED, "beneficiaryCertNo")
        people = await self._directory.locate([authorizer, beneficiary])
        if authorizer not in people:
            return Outcome.refused(RefusalCode.PERSON_NOT_FOUND, None)
        if beneficiary not in people:
            # the same answer as a wrong name: no one learns whether an ID number is insured
            return _refused(RefusalCode.PERSON_INFO_MISMATCH)
        auth, bene = people[authorizer], people[beneficiary]
        adapter = auth.adapter
        policy = adapter.policy()
        if bene.person.name != given.beneficiary_name.strip():
            return _refused(RefusalCode.PERSON_INFO_MISMATCH)
        early = judge(auth, bene, given.relation)  # what needs no further question
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
        )
        if refused is not None:
            return _refused(refused)

        request = BindRequest(
            authorizer_cert_no=authorizer,
            beneficiary_cert_no=beneficiary,
            beneficiary_name=bene.person.name,
            relation=given.relation,
            commitment_signed=given.commitment_signed,
        )
        confirm = policy.spouse_confirmation and given.relation is Relation.SPOUSE
        expected = BindingStatus.PENDING_CONFIRMATION if confirm else BindingStatus.ACTIVE
        return Plan(adapter=adapter, request=request, expected=expected)

    async def respond(
        self, actor: str, binding_id: str, *, accept: bool, channel: Channel | None = None
    ) -> Outcome:
        found = await self.find(actor, binding_id)
        if found is None or found[0].beneficiary.cert_no != actor:
            return Outcome.refused(RefusalCode.FORBIDDEN, "bindingId")
        binding, adapter = found
        if binding.status is not BindingStatus.PENDING_CONFIRMATION:
            return Outcome.refused(RefusalCode.INVALID_BINDING_STATE, "bindingId")
        outcome = _acted(await adapter.respond(binding.id, actor=actor, accept=accept), adapter)
        return await self._journaled(
            outcome, Event.CONFIRMED if accept else Event.DECLINED, channel
        )

    async def unbind(
        self, actor: str, binding_id: str, *, channel: Channel | None = None
    ) -> Outcome:
        found = await self.find(actor, binding_id)
        if found is None or found[0].authorizer.cert_no != actor:
            return Outcome.refused(RefusalCode.FORBIDDEN, "bindingId")
        binding, adapter = found
        if not binding.status.is_live:
            return Outcome.refused(RefusalCode.INVALID_BINDING_STATE, "bindingId")
        outcome = _acted(await adapter.unbind(binding.id, actor=actor), adapter)
        return await self._journaled(outcome, Event.UNBOUND, channel)

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


def _acted(result: Binding | Refusal, adapter: ProvinceAdapter) -> Outcome:
    """The outcome of acting on an existing binding: refusals concern ``bindingId``."""
    if isinstance(result, Refusal):
        return Outcome.refused(result.code, "bindingId")
    return Outcome(binding=result, adapter=adapter)
