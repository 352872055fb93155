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
drives it; the reconciler finishes what a stopped gateway left (`resume`).
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
    QuotaHold,
    RefusalCode,
    Settlement,
    UpstreamError,
    choose_payer,
)
from gateway.common.auth import INSTITUTION, Caller
from gateway.common.certno import is_valid, loggable, normalize
from gateway.common.ids import decode_id
from gateway.common.refusals import Code, GatewayCode, Refused
from gateway.provinces.directory import Directory, Located
from gateway.provinces.federated import Provinces
from gateway.rules.mutual_aid import MutualAid
from gateway.state.keys import KeyReused, key_ok
from gateway.state.outbox import Locks, Operation, Write
from gateway.state.outcome import Outcome
from gateway.state.transfers import FINAL, Step, Transfer, Transfers
from gateway.state.writes import Route, Writes, refuse

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


class _NoHold:
    """The source refused the hold (or certainly never took it)."""

    id = None


def _has_settled(transfer: Transfer) -> bool:
    return transfer.step is not Step.HOLDING


def _submitted(transfer: Transfer) -> SettlementOutcome:
    return SettlementOutcome(submitted=True, key=transfer.key)


def _logged(transfer: Transfer) -> str:
    return f"{transfer.source}->{transfer.target} for {loggable(transfer.payer)}"


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


def _no_field(code: Code) -> str | None:
    return None


class Settlements:
    def __init__(
        self,
        provinces: Provinces,
        directory: Directory,
        writes: Writes,
        mutual_aid: MutualAid,
        transfers: Transfers,
    ) -> None:
        self._provinces = provinces
        self._directory = directory
        self._writes = writes
        self._mutual_aid = mutual_aid
        self._transfers = transfers
        self._driving = Locks()  # one driver per transfer in this process

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
        transfer = await self._transfers.get(scope, key)
        located: Located | None = None
        if transfer is None and not await self._writes.recorded(scope, key):
            located = (await self._directory.locate([patient])).get(patient)
            quota = None
            if located is not None and located.person.is_in_force:
                quota = await self._quota_paying(located, given.total - given.fund_paid)
            if located is not None and quota is not None:
                planned = Transfer(
                    scope=scope,
                    key=key,
                    fingerprint=asked.fingerprint,
                    request=asked.request,
                    step=Step.HOLDING,
                    source=quota.adapter.code,
                    binding_id=quota.binding.id,
                    payer=quota.binding.authorizer.cert_no,
                    amount=quota.amount,
                    target=located.adapter.code,
                )
                try:
                    transfer = await self._transfers.begin(planned)
                except KeyReused:
                    return _refused(RefusalCode.IDEMPOTENCY_KEY_REUSED).under(key)
        if transfer is not None:
            if transfer.fingerprint != asked.fingerprint:
                return _refused(RefusalCode.IDEMPOTENCY_KEY_REUSED).under(key)
            return await self._drive(transfer)

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

    async def resume(self) -> int:
        """Drive on every transfer a stopped gateway (or a lost answer) left unfinished:
        the reconciler's part for money crossing provinces. The number finished."""
        finished = 0
        for transfer in await self._transfers.unfinished():
            try:
                outcome = await self._drive(transfer)
            except Exception:
                log.exception("transfer %s: not finished this time", _logged(transfer))
                continue
            finished += not outcome.submitted
        return finished

    async def _drive(self, transfer: Transfer) -> SettlementOutcome:
        """Take ``transfer`` as far as the provinces' answers allow; the settlement's
        outcome (``SUBMITTED`` while the settlement's answer is unknown)."""
        async with self._driving.hold((transfer.scope, transfer.key)):
            now = await self._transfers.get(transfer.scope, transfer.key)
            transfer = now or transfer
            settled: SettlementOutcome | None = None
            while transfer.step not in FINAL:
                step = transfer.step
                if step is Step.HOLDING:
                    held = await self._hold(transfer)
                    if held is None:
                        break
                    transfer = await self._transfers.moved(
                        transfer, Step.SETTLING, hold_id=held.id if held.id else None
                    )
                elif step is Step.SETTLING:
                    settled = await self._settle(transfer)
                    if settled.submitted:
                        return settled
                    transfer = await self._settled(transfer, settled)
                elif step in (Step.CONFIRMING, Step.RELEASING):
                    if not await self._finish(transfer):
                        break
                    transfer = await self._transfers.moved(transfer, Step.DONE)
                elif step is Step.REVERSING:
                    undone = await self._reversed(transfer)
                    if undone is None:
                        break
                    after = Step.REFUNDING if undone else Step.DONE
                    transfer = await self._transfers.moved(transfer, after)
                else:  # REFUNDING
                    if not await self._refund(transfer):
                        break
                    transfer = await self._transfers.moved(transfer, Step.REFUNDED)
            if settled is None:
                settled = await self._settle(transfer) if _has_settled(transfer) else None
            return settled or _submitted(transfer)

    async def _hold(self, transfer: Transfer) -> QuotaHold | _NoHold | None:
        """Hold the amount at the source: the hold, `_NoHold` when the source refused
        (or certainly never took it: the bill is then settled without it), None while
        its answer is unknown."""
        write = Write(
            Operation.HOLD,
            transfer.source,
            {
                "binding_id": transfer.binding_id,
                "amount": str(transfer.amount),
                "reference": transfer.reference,
            },
        )
        try:
            held = await self._writes.send(
                f"{transfer.scope}/hold", transfer.key, write, None, _no_field, QuotaHold
            )
        except UpstreamError:
            return _NoHold()
        if held.submitted:
            return None
        if held.value is None:
            log.info("transfer %s: hold refused %s", _logged(transfer), held.errors)
            return _NoHold()
        return held.value

    async def _settle(self, transfer: Transfer) -> SettlementOutcome:
        """The bill at the target, with the hold as its funding (the same write, under the
        institution's key, however often this is done)."""
        funding = None
        if transfer.hold_id is not None:
            funding = {
                "province": transfer.source,
                "payer": transfer.payer,
                "amount": str(transfer.amount),
                "hold_id": transfer.hold_id,
            }
        asked = Write(Operation.SETTLE, "", transfer.request)

        async def check() -> str | Route:
            if funding is None:
                return transfer.target
            return Route(transfer.target, {"funding": funding})

        return await self._writes.send(
            transfer.scope, transfer.key, asked, check, _SETTLE_FIELDS.get, Settlement
        )

    async def _settled(self, transfer: Transfer, settled: SettlementOutcome) -> Transfer:
        """The step after the target's answer: confirm what the settlement used of the
        hold, or release it (the target refused, or the bill needed none of it)."""
        if transfer.hold_id is None:
            return await self._transfers.moved(transfer, Step.DONE)
        bill = settled.value
        used = Decimal("0.00")
        ref = None
        if bill is not None and bill.funding_hold == transfer.hold_id:
            used, ref = bill.mutual_aid_paid, f"{transfer.target}:{bill.id}"
        if used > 0:
            return await self._transfers.moved(
                transfer, Step.CONFIRMING, used=used, payment_ref=ref
            )
        return await self._transfers.moved(transfer, Step.RELEASING)

    async def _reversed(self, transfer: Transfer) -> bool | None:
        """Whether the target has reversed the settlement, by the institution's reversal
        kept with the transfer (or by another: "already reversed"); None while unknown."""
        write = Write(Operation.REVERSE, transfer.target, transfer.reversal or {})
        undone = await self._writes.send(
            transfer.scope, transfer.reversal_key or "", write, None, _on_settlement, Settlement
        )
        if undone.submitted:
            return None
        if undone.value is not None:
            return undone.value.reversed_at is not None
        return any(e.code is RefusalCode.SETTLEMENT_ALREADY_REVERSED for e in undone.errors)

    async def _refund(self, transfer: Transfer) -> bool:
        """Refund at the source what the hold paid; False while its answer is unknown."""
        if transfer.hold_id is None:  # pragma: no cover (a paid transfer held)
            return True
        write = Write(Operation.REFUND_HOLD, transfer.source, {"hold_id": transfer.hold_id})
        done = await self._writes.send(
            f"{transfer.scope}/refund", transfer.key, write, None, _no_field, QuotaHold
        )
        if done.errors:
            log.error("transfer %s: refund refused %s", _logged(transfer), done.errors)
        return not done.submitted

    async def _finish(self, transfer: Transfer) -> bool:
        """Confirm or release the hold at the source; False while its answer is unknown."""
        if transfer.hold_id is None:  # nothing was held
            return True
        if transfer.step is Step.CONFIRMING:
            request = {
                "hold_id": transfer.hold_id,
                "used": str(transfer.used),
                "payment_ref": transfer.payment_ref,
            }
            write = Write(Operation.CONFIRM_HOLD, transfer.source, request)
        else:
            write = Write(Operation.RELEASE_HOLD, transfer.source, {"hold_id": transfer.hold_id})
        done = await self._writes.send(
            f"{transfer.scope}/finish", transfer.key, write, None, _no_field, QuotaHold
        )
        if done.errors:  # the hold is not as the transfer left it: someone must look
            log.error("transfer %s: %s refused %s", _logged(transfer), write.operation, done.errors)
        return not done.submitted

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
        transfer = await self._transfers.of_payment(f"{decoded[0]}:{decoded[1]}")
        if transfer is not None and transfer.scope != scope:
            transfer = None  # another institution's settlement: the province refuses it
        if transfer is not None and transfer.step is Step.DONE:
            transfer = await self._transfers.reversing(transfer, key, write.request)
            key = transfer.reversal_key
        outcome = await self._writes.send(scope, key, write, None, _on_settlement, Settlement)
        if transfer is not None and not outcome.submitted:
            try:
                await self._drive(transfer)
            except UpstreamError:  # the refund is kept, and the reconciler sends it
                log.warning("transfer %s: refund not sent yet", _logged(transfer))
        return outcome
