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

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from adapters.base import (
    MedicalType,
    ProvinceAdapter,
    Refusal,
    RefusalCode,
    Settlement,
    SettleRequest,
)
from gateway.auth import INSTITUTION, Caller
from gateway.certno import is_valid, normalize
from gateway.directory import Directory
from gateway.ids import decode_id
from gateway.provinces import Provinces
from gateway.store import Store

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
    settlement: Settlement | None = None
    adapter: ProvinceAdapter | None = None
    errors: Sequence[Refusal] = ()

    @classmethod
    def refused(cls, code: RefusalCode, field: str | None) -> Outcome:
        return cls(errors=(Refusal(code, field),))


def _refused(code: RefusalCode) -> Outcome:
    return Outcome.refused(code, _SETTLE_FIELDS.get(code))


def key_ok(key: str) -> bool:
    """1 to 64 printable ASCII characters, no spaces."""
    return 0 < len(key) <= 64 and key.isascii() and key.isprintable() and " " not in key


class Settlements:
    def __init__(self, provinces: Provinces, directory: Directory, store: Store) -> None:
        self._provinces = provinces
        self._directory = directory
        self._store = store

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
        seen = await self._claim(institution.code, given, patient)
        if seen is None:
            return _refused(RefusalCode.IDEMPOTENCY_KEY_REUSED)
        found = (await self._directory.locate([patient])).get(patient)
        if found is None:
            return _refused(RefusalCode.PERSON_NOT_FOUND)
        if not (seen or found.person.is_in_force):  # a retry goes to the province as it is
            return _refused(RefusalCode.PATIENT_NOT_INSURED)
        adapter = found.adapter
        result = await adapter.settle(
            SettleRequest(
                institution_code=institution.code,
                idempotency_key=given.idempotency_key,
                patient_cert_no=patient,
                medical_type=given.medical_type,
                total=given.total,
                fund_paid=given.fund_paid,
            )
        )
        if isinstance(result, Refusal):
            return _refused(result.code)
        return Outcome(settlement=result, adapter=adapter)

    async def _claim(self, institution: str, given: SettleInput, patient: str) -> bool | None:
        """Hold the institution's key for this bill, whatever province it goes to.

        False: the key is new (now held); True: the same bill again (a retry);
        None: the key was used for another bill.
        """
        bill = "|".join(
            (patient, given.medical_type.value, f"{given.total:.2f}", f"{given.fund_paid:.2f}")
        )
        async with self._store.transaction() as db:
            async with db.execute(
                "SELECT bill FROM settlement_key WHERE institution = ? AND idempotency_key = ?",
                (institution, given.idempotency_key),
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                return True if row[0] == bill else None
            await db.execute(
                "INSERT INTO settlement_key (institution, idempotency_key, bill, at)"
                " VALUES (?, ?, ?, ?)",
                (institution, given.idempotency_key, bill, dt.datetime.now(dt.UTC).isoformat()),
            )
        return False

    async def reverse(self, caller: Caller, settlement_id: str, reason: str) -> Outcome:
        """The institution that settled undoes it, the same day, once."""
        institution = caller.institution
        if INSTITUTION not in caller.roles or institution is None:
            return Outcome.refused(RefusalCode.FORBIDDEN, None)
        reason = reason.strip()
        if not reason:
            return Outcome.refused(RefusalCode.REASON_REQUIRED, "reason")
        decoded = decode_id(settlement_id, SETTLEMENT_KIND)
        adapter = self._provinces.get(decoded[0]) if decoded else None
        if decoded is None or adapter is None:
            return Outcome.refused(RefusalCode.FORBIDDEN, "settlementId")
        result = await adapter.reverse(decoded[1], institution_code=institution.code, reason=reason)
        if isinstance(result, Refusal):
            return Outcome.refused(result.code, "settlementId")
        return Outcome(settlement=result, adapter=adapter)
