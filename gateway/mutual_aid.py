"""Family mutual aid (家庭共济): binding, confirming and unbinding.

The gateway checks early, in the order a person would want to hear about
problems, using the authorizer's province's declared policy; the province then
checks again and its answer wins.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
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
from gateway.outbox import KeyReused, Operation, Outbox, Sent, Write, key_ok, new_key
from gateway.provinces import Provinces

BINDING_KIND = "MutualAidBinding"

# The input of `bindMutualAid` each refusal points at (none: the caller's own state).
_BIND_FIELDS: dict[RefusalCode, str] = {
    RefusalCode.INVALID_CERT_NO: "beneficiaryCertNo",
    RefusalCode.SELF_BINDING_NOT_ALLOWED: "beneficiaryCertNo",
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
    the status the binding would have. ``submitted``: sent, the province's answer
    not known yet (the reconciler will learn it); ``key``: the idempotency key."""

    binding: Binding | None = None
    adapter: ProvinceAdapter | None = None
    errors: Sequence[Refusal] = ()
    dry_run: bool = False
    expected: BindingStatus | None = None
    submitted: bool = False
    key: str | None = None

    @classmethod
    def refused(cls, code: RefusalCode, field: str | None) -> Outcome:
        return cls(errors=(Refusal(code, field),))

    @classmethod
    def of(cls, sent: Sent, field: str | None = "bindingId") -> Outcome:
        """The outcome of a write sent through the outbox; refusals concern ``field``."""
        answer = sent.answer
        if answer is None:
            return cls(adapter=sent.adapter, submitted=True, key=sent.key)
        if isinstance(answer, Refusal):
            return cls(errors=(Refusal(answer.code, field),), key=sent.key)
        if not isinstance(answer, Binding):
            raise TypeError(f"a binding write answered with {type(answer).__name__}")
        return cls(binding=answer, adapter=sent.adapter, key=sent.key)


_KEY_INVALID = Outcome.refused(RefusalCode.INVALID_IDEMPOTENCY_KEY, "idempotencyKey")
_KEY_REUSED = Outcome.refused(RefusalCode.IDEMPOTENCY_KEY_REUSED, "idempotencyKey")


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
    def __init__(self, provinces: Provinces, directory: Directory, outbox: Outbox) -> None:
        self._provinces = provinces
        self._directory = directory
        self._outbox = outbox

    async def bind(
        self,
        authorizer: str,
        given: BindInput,
        *,
        dry_run: bool = False,
        channel: Channel | None = None,
        key: str | None = None,
    ) -> Outcome:
        """Bind, after the gateway's early checks; ``dry_run`` stops after the checks and
        says what would happen (the province's own checks are not run).

        ``key`` (the idempotency key; made when absent): a repeat returns the first
        outcome without checking again.
        """
        if dry_run:
            checked = await self.check(authorizer, given)
            if isinstance(checked, Outcome):
                return dataclasses.replace(checked, dry_run=True)
            return Outcome(adapter=checked.adapter, dry_run=True, expected=checked.expected)
        key = new_key() if key is None else key
        if not key_ok(key):
            return _KEY_INVALID
        asked = Write(
            Operation.BIND,
            "",
            {
                "authorizer": authorizer,
                "beneficiary": normalize(given.beneficiary_cert_no),
                "beneficiary_name": given.beneficiary_name.strip(),
                "relation": given.relation.value,
                "commitment_signed": given.commitment_signed,
            },
            channel,
        )
        write = await self._outbox.recorded(authorizer, key)
        if write is None:
            checked = await self.check(authorizer, given)
            if isinstance(checked, Outcome):  # refused here: kept as the key's outcome
                return await self._refuse(authorizer, key, asked, checked)
            write = dataclasses.replace(asked, province=checked.adapter.code)
        elif write.fingerprint != asked.fingerprint:
            return _KEY_REUSED
        outcome = await self._send(authorizer, key, write, "beneficiaryCertNo")
        if outcome.errors:
            code = outcome.errors[0].code
            if code is RefusalCode.PERSON_NOT_FOUND:  # as above: no existence oracle
                code = RefusalCode.PERSON_INFO_MISMATCH
            return dataclasses.replace(_refused(code), key=key)
        return outcome

    async def _send(self, scope: str, key: str, write: Write, field: str | None) -> Outcome:
        try:
            return Outcome.of(await self._outbox.send(scope, key, write), field)
        except KeyReused:
            return _KEY_REUSED

    async def _refuse(self, scope: str, key: str, write: Write, refused: Outcome) -> Outcome:
        """The gateway's refusal, recorded under the key (a repeat gets it again); if
        the key got another outcome meanwhile, that one."""
        try:
            sent = await self._outbox.refused(scope, key, write, refused.errors[0])
        except KeyReused:
            return _KEY_REUSED
        if isinstance(sent.answer, Refusal):
            return dataclasses.replace(Outcome(errors=(sent.answer,)), key=key)
        return Outcome.of(sent)

    async def check(self, authorizer: str, given: BindInput) -> Outcome | Plan:
        """The binding the province would be asked for, or the first reason it would fail."""
        beneficiary = normalize(given.beneficiary_cert_no)
        if not is_valid(beneficiary):
            return _refused(RefusalCode.INVALID_CERT_NO)
        if beneficiary == authorizer:
            return _refused(RefusalCode.SELF_BINDING_NOT_ALLOWED)
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
        self,
        actor: str,
        binding_id: str,
        *,
        accept: bool,
        channel: Channel | None = None,
        key: str | None = None,
    ) -> Outcome:
        async def allowed(binding: Binding) -> Outcome | None:
            if binding.beneficiary.cert_no != actor:
                return Outcome.refused(RefusalCode.FORBIDDEN, "bindingId")
            if binding.status is not BindingStatus.PENDING_CONFIRMATION:
                return Outcome.refused(RefusalCode.INVALID_BINDING_STATE, "bindingId")
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
    ) -> Outcome:
        async def allowed(binding: Binding) -> Outcome | None:
            if binding.authorizer.cert_no != actor:
                return Outcome.refused(RefusalCode.FORBIDDEN, "bindingId")
            if not binding.status.is_live:
                return Outcome.refused(RefusalCode.INVALID_BINDING_STATE, "bindingId")
            return None

        return await self._act(Operation.UNBIND, actor, binding_id, {}, allowed, channel, key)

    async def _act(
        self,
        operation: Operation,
        actor: str,
        binding_id: str,
        extra: dict[str, bool],
        allowed: Callable[[Binding], Awaitable[Outcome | None]],
        channel: Channel | None,
        key: str | None,
    ) -> Outcome:
        """Act on an existing binding through the outbox, once per idempotency key."""
        key = new_key() if key is None else key
        if not key_ok(key):
            return _KEY_INVALID
        decoded = decode_id(binding_id, BINDING_KIND)
        if decoded is None or decoded[0] not in self._provinces:
            return Outcome.refused(RefusalCode.FORBIDDEN, "bindingId")
        province, upstream_id = decoded
        asked = Write(
            operation, province, {"binding_id": upstream_id, "actor": actor, **extra}, channel
        )
        write = await self._outbox.recorded(actor, key)
        if write is None:
            found = await self.find(actor, binding_id)
            refused = (
                Outcome.refused(RefusalCode.FORBIDDEN, "bindingId")
                if found is None
                else await allowed(found[0])
            )
            if refused is not None:
                return await self._refuse(actor, key, asked, refused)
            write = asked
        elif write.fingerprint != asked.fingerprint:
            return _KEY_REUSED
        return await self._send(actor, key, write, "bindingId")

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
