"""Settlement at designated institutions: the gateway checks the bill, the province pays it.

What the province does (its system is authoritative and keeps the money): the
self-pay part (total minus what the pooled fund paid) comes from the patient's
own personal account, then from exactly one authorizer bound to the patient,
the one with the largest balance, up to that balance; the rest is cash due.
Each adapter knows whether its province picks that authorizer itself or must
be told. The institution's idempotency key makes a retried bill the same
settlement; the province holds the key with the money, so a retry after a lost
answer is safe too.

Across provinces (the 2026 rules), a quota another province holds for the patient is
a candidate payer too, with what remains of it as its balance. When it is the one that
pays, the gateway chooses (no single province sees every candidate) and the bill is a
`Transfer` (`gateway.state.transfers`): held at the quota's province, settled at the
patient's with that funding, then confirmed or released at the quota's. The request
drives it; the reconciler finishes what a stopped gateway left (`gateway.rules.crossing`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from adapters.base import (
    Binding,
    BindingStatus,
    MedicalType,
    ProvinceAdapter,
    RefusalCode,
    Settlement,
    choose_payer,
)
from gateway.common.auth import INSTITUTION, Caller
from gateway.common.certno import is_valid, normalize
from gateway.common.ids import decode_id
from gateway.common.refusals import Code, GatewayCode, Refused
from gateway.provinces.directory import Directory, Located
from gateway.provinces.federated import Provinces
from gateway.rules.crossing import Crossing
from gateway.rules.mutual_aid import MutualAid
from gateway.state.keys import key_ok
from gateway.state.outbox import Operation, Write
from gateway.state.outcome import Outcome
from gateway.state.transfers import Step, Transfer
from gateway.state.writes import Writes, refuse

log = logging.getLogger(__name__)

SETTLEMENT_KIND = "Settlement"
# The largest bill the graph takes: every province's system holds it (12 digits).
MAX_AMOUNT = Decimal("99999999.99")

# What each kind of institution may settle.
MEDICAL_TYPES = {
    "HOSPITAL": frozenset({MedicalType.OUTPATIENT, MedicalType.INPATIENT}),
    "PHARMACY": frozenset({MedicalType.PHARMACY}),
}

# The input of `settle` each refusal points at.
_SETTLE_FIELDS: dict[Code, str] = {
    RefusalCode.INVALID_CERT_NO: "patientCertNo",
    RefusalCode.PERSON_NOT_FOUND: "patientCertNo",
    RefusalCode.PATIENT_NOT_INSURED: "patientCertNo",
    RefusalCode.AMOUNT_NOT_POSITIVE: "totalAmount",
    GatewayCode.AMOUNT_TOO_LARGE: "totalAmount",
    GatewayCode.AMOUNT_NEGATIVE: "fundPaid",
    GatewayCode.FUND_PAID_EXCEEDS_TOTAL: "fundPaid",
    GatewayCode.INVALID_IDEMPOTENCY_KEY: "idempotencyKey",
    RefusalCode.IDEMPOTENCY_KEY_REUSED: "idempotencyKey",
    RefusalCode.MEDICAL_TYPE_NOT_ALLOWED: "medicalType",
}


@dataclass(frozen=True, slots=True)
class SettleInput:
    patient_cert_no: str
    medical_type: MedicalType
    total: Decimal
    fund_paid: Decimal
    idempotency_key: str


SettlementOutcome = Outcome[Settlement]  # what a settlement write came to


def _refused(code: Code) -> SettlementOutcome:
    return SettlementOutcome.refused(code, _SETTLE_FIELDS.get(code))


def judge_bill(given: SettleInput, institution_kind: str) -> Code | None:
    """The first thing wrong with what a bill claims, for an institution of this kind.

    Pure: it asks nothing. The idempotency key first (every write checks it first),
    then the amounts (a bill the fund paid in full is a bill: ``fund_paid`` may equal
    ``total``), the kind of care, and the patient's ID number.
    """
    if not key_ok(given.idempotency_key):
        return GatewayCode.INVALID_IDEMPOTENCY_KEY
    if given.total <= 0:
        return RefusalCode.AMOUNT_NOT_POSITIVE
    if given.total > MAX_AMOUNT:
        return GatewayCode.AMOUNT_TOO_LARGE
    if given.fund_paid < 0:
        return GatewayCode.AMOUNT_NEGATIVE
    if given.fund_paid > given.total:
        return GatewayCode.FUND_PAID_EXCEEDS_TOTAL
    if given.medical_type not in MEDICAL_TYPES[institution_kind]:
        return RefusalCode.MEDICAL_TYPE_NOT_ALLOWED
    if not is_valid(normalize(given.patient_cert_no)):
        return RefusalCode.INVALID_CERT_NO
    return None


def _on_settlement(code: Code) -> str:
    """Where a refusal of acting on a settlement points: the settlement."""
    return "settlementId"


def _scope(institution: str) -> str:
    """Whose keys: an institution's are its own, whatever province a bill goes to."""
    return f"institution:{institution}"


@dataclass(frozen=True, slots=True)
class Quota:
    """A quota another province holds for the patient, chosen to pay: how much."""

    binding: Binding
    adapter: ProvinceAdapter
    amount: Decimal


class Settlements:
    def __init__(
        self,
        provinces: Provinces,
        directory: Directory,
        writes: Writes,
        mutual_aid: MutualAid,
        crossing: Crossing,
    ) -> None:
        self._provinces = provinces
        self._directory = directory
        self._writes = writes
        self._mutual_aid = mutual_aid
        self._crossing = crossing
        crossing.accepts(Operation.SETTLE, Settlement, _SETTLE_FIELDS.get)
        crossing.accepts(Operation.REVERSE, Settlement, _on_settlement)

    async def settle(self, caller: Caller, given: SettleInput) -> SettlementOutcome:
        """Check the bill, then send it once per the institution's key. What the bill
        claims is checked first, and refusing it keeps nothing: the corrected bill may
        follow under the same key. A patient the gateway cannot find is the key's
        answer (as the province's refusal would be)."""
        key = given.idempotency_key
        institution = caller.institution
        if INSTITUTION not in caller.roles or institution is None:
            return SettlementOutcome.refused(RefusalCode.FORBIDDEN, None).under(key)
        refused = judge_bill(given, institution.kind)
        if refused is not None:
            return _refused(refused).under(key)
        patient = normalize(given.patient_cert_no)
        asked = Write(
            Operation.SETTLE,
            "",
            {
                "institution": institution.code,
                "idempotency_key": given.idempotency_key,
                "patient": patient,
                "medical_type": given.medical_type.value,
                "total": f"{given.total:.2f}",
                "fund_paid": f"{given.fund_paid:.2f}",
            },
        )

        scope = _scope(institution.code)
        across = await self._crossing.under(scope, key, asked.fingerprint)
        if across is not None:
            return across
        located: Located | None = None
        if not await self._writes.recorded(scope, key):
            located = (await self._directory.locate([patient])).get(patient)
            quota = None
            if located is not None and located.person.is_in_force:
                quota = await self._quota_paying(located, given.total - given.fund_paid)
            if located is not None and quota is not None:
                planned = Transfer(
                    scope=scope,
                    key=key,
                    fingerprint=asked.fingerprint,
                    operation=Operation.SETTLE.value,
                    request=asked.request,
                    step=Step.HOLDING,
                    source=quota.adapter.code,
                    binding_id=quota.binding.id,
                    payer=quota.binding.authorizer.cert_no,
                    amount=quota.amount,
                    target=located.adapter.code,
                )
                return await self._crossing.start(planned)

        async def check() -> str | Refused:
            found = located or (await self._directory.locate([patient])).get(patient)
            if found is None:
                return Refused(RefusalCode.PERSON_NOT_FOUND, "patientCertNo")
            if not found.person.is_in_force:
                return Refused(RefusalCode.PATIENT_NOT_INSURED, "patientCertNo")
            return found.adapter.code

        return await self._writes.send(scope, key, asked, check, _SETTLE_FIELDS.get, Settlement)

    async def _quota_paying(self, patient: Located, owed: Decimal) -> Quota | None:
        """The quota another province holds for the patient, if it is the payer the
        national rule chooses for ``owed`` (`adapters.base.choose_payer`: the patient's
        own account first, then the one candidate with the most available, here an
        authorizer's balance, there a quota's remainder), with how much it pays; None
        when the patient's own account, an authorizer here or nobody pays."""
        me = patient.person.cert_no
        own = patient.person.balance
        if owed <= 0 or (own or Decimal(0)) >= owed:
            return None
        found = [
            (b, a)
            for b, a in await self._mutual_aid.bindings_of(me, patient.adapter)
            if b.status is BindingStatus.ACTIVE and b.beneficiary.cert_no == me
        ]
        quotas = {
            b.authorizer.cert_no: (b, a, b.quota.remaining) for b, a in found if b.quota is not None
        }
        if not quotas:
            return None
        here = [b for b, a in found if b.quota is None and a is patient.adapter]
        balances = await patient.adapter.find_persons([b.authorizer.cert_no for b in here])
        candidates = sorted(found, key=lambda found: found[0].created_at)
        available = [
            (
                b.authorizer,
                b.quota.remaining
                if b.quota is not None
                else getattr(balances.get(b.authorizer.cert_no), "balance", None),
            )
            for b, _ in candidates
        ]
        payer = choose_payer(owed, own, available)
        if payer is None or payer.cert_no not in quotas:
            return None
        binding, adapter, left = quotas[payer.cert_no]
        return Quota(binding, adapter, min(left, owed - (own or Decimal(0))))

    async def reverse(
        self, caller: Caller, settlement_id: str, reason: str, *, key: str | None = None
    ) -> SettlementOutcome:
        """The institution that settled undoes it, the same day, once."""
        institution = caller.institution
        if INSTITUTION not in caller.roles or institution is None:
            return refuse(Settlement, key, RefusalCode.FORBIDDEN)
        if key is not None and not key_ok(key):  # before the reason, as for every write
            code = GatewayCode.INVALID_IDEMPOTENCY_KEY
            return refuse(Settlement, key, code, _SETTLE_FIELDS.get(code))
        reason = reason.strip()
        if not reason:
            return refuse(Settlement, key, GatewayCode.REASON_REQUIRED, "reason")
        decoded = decode_id(settlement_id, SETTLEMENT_KIND)
        if decoded is None or decoded[0] not in self._provinces:
            return refuse(Settlement, key, RefusalCode.FORBIDDEN, "settlementId")
        write = Write(
            Operation.REVERSE,
            decoded[0],
            {"settlement_id": decoded[1], "institution": institution.code, "reason": reason},
        )
        scope = _scope(institution.code)
        # paid from a quota another province holds: the refund there follows the reversal
        transfer, key = await self._crossing.reversed_by(scope, decoded[0], decoded[1], key, write)
        outcome = await self._writes.send(scope, key, write, None, _on_settlement, Settlement)
        if transfer is not None and not outcome.submitted:
            await self._crossing.refund(transfer)
        return outcome
