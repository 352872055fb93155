"""Resident premiums (城乡居民医保个人缴费) paid for a relative from the payer's personal
account: inside one province where its rules allow it (2024 on), or across provinces
from the quota set aside for that relative (2026 on).

The payer must be actively bound to the relative as their authorizer, and the relative
insured as a resident. Inside one province the payment is one write there (the
province knows the year's premium and refuses a second payment). Across provinces it
is a `Transfer` (`gateway.rules.crossing`): the relative's province is asked the year's
premium first, then that much is held from the quota, the premium paid with it there,
and the hold confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.base import BindingStatus, InsuranceType, PremiumPayment, Refusal, RefusalCode
from gateway.common.certno import is_valid, normalize
from gateway.common.refusals import Code, GatewayCode
from gateway.provinces.directory import Directory
from gateway.rules.crossing import Crossing
from gateway.rules.mutual_aid import MutualAid
from gateway.state.keys import key_ok
from gateway.state.outbox import Operation, Write
from gateway.state.outcome import Outcome
from gateway.state.transfers import Step, Transfer
from gateway.state.writes import Writes, refuse

PremiumOutcome = Outcome[PremiumPayment]

# The input of `payResidentPremium` each refusal points at.
_FIELDS: dict[Code, str] = {
    RefusalCode.INVALID_CERT_NO: "beneficiaryCertNo",
    RefusalCode.PERSON_NOT_FOUND: "beneficiaryCertNo",
    RefusalCode.NOT_BOUND: "beneficiaryCertNo",
    RefusalCode.NOT_RESIDENT_INSURED: "beneficiaryCertNo",
    RefusalCode.PREMIUM_NOT_DECLARED: "year",
    RefusalCode.PREMIUM_ALREADY_PAID: "year",
    GatewayCode.INVALID_IDEMPOTENCY_KEY: "idempotencyKey",
    RefusalCode.IDEMPOTENCY_KEY_REUSED: "idempotencyKey",
}


@dataclass(frozen=True, slots=True)
class PremiumInput:
    beneficiary_cert_no: str
    year: int
    idempotency_key: str


class Premiums:
    def __init__(
        self,
        directory: Directory,
        mutual_aid: MutualAid,
        writes: Writes,
        crossing: Crossing,
    ) -> None:
        self._directory = directory
        self._mutual_aid = mutual_aid
        self._writes = writes
        self._crossing = crossing
        crossing.accepts(Operation.PAY_PREMIUM, PremiumPayment, _FIELDS.get)

    async def pay(self, payer: str, given: PremiumInput) -> PremiumOutcome:
        """Pay the relative's premium for the year, once per the payer's key."""
        key = given.idempotency_key
        if not key_ok(key):
            return _refused(key, GatewayCode.INVALID_IDEMPOTENCY_KEY)
        beneficiary = normalize(given.beneficiary_cert_no)
        if not is_valid(beneficiary):
            return _refused(key, RefusalCode.INVALID_CERT_NO)
        asked = Write(
            Operation.PAY_PREMIUM,
            "",
            {"beneficiary": beneficiary, "year": given.year, "payer": payer},
        )
        scope = payer  # a person's keys are theirs, for every write of theirs
        across = await self._crossing.under(scope, key, asked.fingerprint)
        if across is not None:
            return across
        if await self._writes.recorded(scope, key):  # a repeat: as it was first answered
            return await self._writes.send(scope, key, asked, None, _FIELDS.get, PremiumPayment)

        people = await self._directory.locate([payer, beneficiary])
        if payer not in people:
            return refuse(PremiumPayment, key, RefusalCode.PERSON_NOT_FOUND)
        me = people[payer]
        bound = [
            (b, holder)
            for b, holder in await self._mutual_aid.bindings_of(payer, me.adapter)
            if b.status is BindingStatus.ACTIVE
            and b.authorizer.cert_no == payer
            and b.beneficiary.cert_no == beneficiary
        ]
        them = people.get(beneficiary)
        if not bound or them is None:  # the same answer: no one learns who is insured
            return _refused(key, RefusalCode.NOT_BOUND)
        if them.person.insurance_type is not InsuranceType.RESIDENT:
            return _refused(key, RefusalCode.NOT_RESIDENT_INSURED)
        binding, holder = bound[0]
        if binding.quota is None:  # inside one province: its own account pays
            if not me.adapter.policy().premium_payment:
                return _refused(key, RefusalCode.PREMIUM_PAYMENT_NOT_ALLOWED)

            async def check() -> str:
                return them.adapter.code

            return await self._writes.send(scope, key, asked, check, _FIELDS.get, PremiumPayment)

        premium = await them.adapter.premium_of(beneficiary, given.year)
        if isinstance(premium, Refusal):
            return _refused(key, premium.code)
        if premium.amount is None:
            return _refused(key, RefusalCode.PREMIUM_NOT_DECLARED)
        if premium.payment is not None:
            return _refused(key, RefusalCode.PREMIUM_ALREADY_PAID)
        if binding.quota.remaining < premium.amount:
            return _refused(key, RefusalCode.BALANCE_INSUFFICIENT)
        planned = Transfer(
            scope=scope,
            key=key,
            fingerprint=asked.fingerprint,
            operation=Operation.PAY_PREMIUM.value,
            request=asked.request,
            step=Step.HOLDING,
            source=holder.code,
            binding_id=binding.id,
            payer=payer,
            amount=premium.amount,
            target=them.adapter.code,
        )
        return await self._crossing.start(planned)


def _refused(key: str, code: Code) -> PremiumOutcome:
    """A refusal judged before any province is asked to pay: nothing is kept."""
    return refuse(PremiumPayment, key, code, _FIELDS.get(code))
