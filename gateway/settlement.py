"""Settlement at designated institutions: the gateway checks the bill, the province pays it.

What the province does (its system is authoritative and keeps the money): the
self-pay part (total minus what the pooled fund paid) comes from the patient's
own personal account, then from exactly one authorizer bound to the patient,
the one with the largest balance, up to that balance; the rest is cash due.
Each adapter knows whether its province picks that authorizer itself or must
be told. The institution's idempotency key makes a retried bill the same
settlement; the province holds the key with the money, so a retry after a lost
answer is safe too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from adapters.base import (
    MedicalType,
    ProvinceAdapter,
    Refusal,
    RefusalCode,
    Settlement,
)
from gateway.auth import INSTITUTION, Caller
from gateway.certno import is_valid, normalize
from gateway.directory import Directory
from gateway.ids import decode_id
from gateway.outbox import KeyReused, Operation, Outbox, Sent, Write, key_ok, new_key
from gateway.provinces import Provinces

SETTLEMENT_KIND = "Settlement"
# The largest bill the graph takes: every province's system holds it (12 digits).
MAX_AMOUNT = Decimal("99999999.99")

# What each kind of institution may settle.
MEDICAL_TYPES = {
    "HOSPITAL": frozenset({MedicalType.OUTPATIENT, MedicalType.INPATIENT}),
    "PHARMACY": frozenset({MedicalType.PHARMACY}),
}

# The input of `settle` each refusal points at.
_SETTLE_FIELDS: dict[RefusalCode, str] = {
    RefusalCode.INVALID_CERT_NO: "patientCertNo",
    RefusalCode.PERSON_NOT_FOUND: "patientCertNo",
    RefusalCode.PATIENT_NOT_INSURED: "patientCertNo",
    RefusalCode.AMOUNT_NOT_POSITIVE: "totalAmount",
    RefusalCode.AMOUNT_TOO_LARGE: "totalAmount",
    RefusalCode.AMOUNT_NEGATIVE: "fundPaid",
    RefusalCode.FUND_PAID_EXCEEDS_TOTAL: "fundPaid",
    RefusalCode.INVALID_IDEMPOTENCY_KEY: "idempotencyKey",
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


@dataclass(frozen=True, slots=True)
class Outcome:
    """``submitted``: sent, the province's answer not known yet; ``key``: the
    idempotency key the write was sent under."""

    settlement: Settlement | None = None
    adapter: ProvinceAdapter | None = None
    errors: Sequence[Refusal] = ()
    submitted: bool = False
    key: str | None = None

    @classmethod
    def refused(cls, code: RefusalCode, field: str | None) -> Outcome:
        return cls(errors=(Refusal(code, field),))


def _refused(code: RefusalCode) -> Outcome:
    return Outcome.refused(code, _SETTLE_FIELDS.get(code))


def _outcome(sent: Sent, field: str | None) -> Outcome:
    """A settlement write's outcome; a refusal concerns ``field`` (None: its own)."""
    answer, key = sent.answer, sent.key
    if answer is None:
        return Outcome(adapter=sent.adapter, submitted=True, key=key)
    if isinstance(answer, Refusal):
        code = answer.code
        refused = Outcome.refused(code, field) if field else _refused(code)
        return dataclasses.replace(refused, key=key)
    if not isinstance(answer, Settlement):
        raise TypeError(f"a settlement write answered with {type(answer).__name__}")
    return Outcome(settlement=answer, adapter=sent.adapter, key=key)


def _scope(institution: str) -> str:
    """Whose keys: an institution's are its own, whatever province a bill goes to."""
    return f"institution:{institution}"


class Settlements:
    def __init__(self, provinces: Provinces, directory: Directory, outbox: Outbox) -> None:
        self._provinces = provinces
        self._directory = directory
        self._outbox = outbox

    async def _send(self, scope: str, key: str, write: Write, field: str | None) -> Outcome:
        try:
            return _outcome(await self._outbox.send(scope, key, write), field)
        except KeyReused:
            return _refused(RefusalCode.IDEMPOTENCY_KEY_REUSED)

    async def settle(self, caller: Caller, given: SettleInput) -> Outcome:
        institution = caller.institution
        if INSTITUTION not in caller.roles or institution is None:
            return Outcome.refused(RefusalCode.FORBIDDEN, None)
        if not key_ok(given.idempotency_key):
            return _refused(RefusalCode.INVALID_IDEMPOTENCY_KEY)
        if given.total <= 0:
            return _refused(RefusalCode.AMOUNT_NOT_POSITIVE)
        if given.total > MAX_AMOUNT:
            return _refused(RefusalCode.AMOUNT_TOO_LARGE)
        if given.fund_paid < 0:
            return _refused(RefusalCode.AMOUNT_NEGATIVE)
        if given.fund_paid > given.total:
            return _refused(RefusalCode.FUND_PAID_EXCEEDS_TOTAL)
        if given.medical_type not in MEDICAL_TYPES[institution.kind]:
            return _refused(RefusalCode.MEDICAL_TYPE_NOT_ALLOWED)
        patient = normalize(given.patient_cert_no)
        if not is_valid(patient):
            return _refused(RefusalCode.INVALID_CERT_NO)
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
        write = await self._outbox.recorded(scope, given.idempotency_key)
        if write is None:  # a new bill: checked here first (a retry goes as it is)
            found = (await self._directory.locate([patient])).get(patient)
            if found is None or not found.person.is_in_force:
                code = RefusalCode.PATIENT_NOT_INSURED if found else RefusalCode.PERSON_NOT_FOUND
                try:  # kept as the key's outcome: a repeat gets it again
                    sent = await self._outbox.refused(
                        scope, given.idempotency_key, asked, Refusal(code)
                    )
                except KeyReused:
                    return _refused(RefusalCode.IDEMPOTENCY_KEY_REUSED)
                return _outcome(sent, None)
            write = dataclasses.replace(asked, province=found.adapter.code)
        elif write.fingerprint != asked.fingerprint:
            return _refused(RefusalCode.IDEMPOTENCY_KEY_REUSED)
        # a refusal is pointed at the input it concerns
        return await self._send(scope, given.idempotency_key, write, None)

    async def reverse(
        self, caller: Caller, settlement_id: str, reason: str, *, key: str | None = None
    ) -> Outcome:
        """The institution that settled undoes it, the same day, once."""
        institution = caller.institution
        if INSTITUTION not in caller.roles or institution is None:
            return Outcome.refused(RefusalCode.FORBIDDEN, None)
        key = new_key() if key is None else key
        if not key_ok(key):
            return _refused(RefusalCode.INVALID_IDEMPOTENCY_KEY)
        reason = reason.strip()
        if not reason:
            return Outcome.refused(RefusalCode.REASON_REQUIRED, "reason")
        decoded = decode_id(settlement_id, SETTLEMENT_KIND)
        if decoded is None or decoded[0] not in self._provinces:
            return Outcome.refused(RefusalCode.FORBIDDEN, "settlementId")
        write = Write(
            Operation.REVERSE,
            decoded[0],
            {"settlement_id": decoded[1], "institution": institution.code, "reason": reason},
        )
        return await self._send(_scope(institution.code), key, write, "settlementId")
