"""Settlement in the graph: `settle` and `reverseSettlement`, for institutions."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated

import strawberry

from adapters import base
from adapters.base import ProvinceAdapter
from gateway.common.ids import encode_id
from gateway.graph.audit import NOTHING_TOLD, Told
from gateway.graph.types import (
    IDEMPOTENCY_KEY,
    FamilyLink,
    FamilyLinkKind,
    Info_,
    Money,
    PersonRef,
    Province,
    UserError,
    WriteStatus,
)
from gateway.rules.settlement import SETTLEMENT_KIND, SettleInput, SettlementOutcome

MedicalType = strawberry.enum(base.MedicalType, description="门诊, 住院 or 药店.")


class SettlementStatus(enum.Enum):
    SETTLED = "SETTLED"
    REVERSED = "REVERSED"


SettlementStatusType = strawberry.enum(SettlementStatus, name="SettlementStatus")


def _money(amount: object) -> Money:
    return Money(amount)  # type: ignore[arg-type]


@strawberry.type(description="A settled bill, in the province's own record of it.")
class Settlement(FamilyLink):
    id: strawberry.ID
    status: SettlementStatusType  # type: ignore[valid-type]
    medical_type: MedicalType  # type: ignore[valid-type]
    institution_code: str
    patient: PersonRef
    total_amount: Money
    fund_paid: Money = strawberry.field(description="What the pooled fund (统筹基金) paid.")
    self_pay: Money = strawberry.field(description="The patient's part (个人负担).")
    own_account_paid: Money = strawberry.field(description="From the patient's own account.")
    mutual_aid_paid: Money = strawberry.field(description="From one authorizer's account.")
    mutual_aid_payer: PersonRef | None = strawberry.field(
        description="The one authorizer who paid (the most available at that moment: an"
        " account's balance, or across provinces what remained of a quota)."
    )
    cash_due: Money = strawberry.field(description="What is left to pay by other means.")
    patient_balance_after: Money | None = strawberry.field(
        description="For the institution, and for the patient themselves."
    )
    mutual_aid_payer_balance_after: Money | None = strawberry.field(
        description="For the institution, and for the payer themselves."
    )
    province: Province = strawberry.field(description="The province that settled the bill.")
    mutual_aid_province_code: strawberry.Private[str | None]

    @strawberry.field(
        description="The province whose account paid `mutualAidPaid`: another province for a"
        " quota set aside across provinces (2026 rules), else the same as `province`; null"
        " when mutual aid paid nothing."
    )
    def mutual_aid_province(self, info: Info_) -> Province | None:
        if self.mutual_aid_payer is None:
            return None
        return self.province.or_other(self.mutual_aid_province_code, info)

    settled_at: dt.datetime
    reversed_at: dt.datetime | None
    reversal_reason: str | None

    @classmethod
    def of(
        cls, done: base.Settlement, adapter: ProvinceAdapter, caller: str, *, party: bool = False
    ) -> Settlement:
        """The settlement as ``caller`` sees it. The institution sees every balance after;
        a ``party`` (the patient or the payer) sees only their own."""
        payer = done.mutual_aid_payer
        own_balance = not party or done.patient.cert_no == caller
        payer_balance = not party or (payer is not None and payer.cert_no == caller)
        patient = PersonRef.of(done.patient, caller)
        status = SettlementStatus.REVERSED if done.reversed_at else SettlementStatus.SETTLED
        return cls(
            id=strawberry.ID(encode_id(SETTLEMENT_KIND, adapter.code, done.id)),
            kind=FamilyLinkKind.SETTLEMENT,
            who=patient if payer is None else PersonRef.of(payer, caller),
            whom=patient,
            link_status=status.value,
            since=done.settled_at,
            status=status,
            medical_type=done.medical_type,
            institution_code=done.institution_code,
            patient=patient,
            total_amount=_money(done.total),
            fund_paid=_money(done.fund_paid),
            self_pay=_money(done.self_pay),
            own_account_paid=_money(done.own_account_paid),
            mutual_aid_paid=_money(done.mutual_aid_paid),
            mutual_aid_payer=None if payer is None else PersonRef.of(payer, caller),
            cash_due=_money(done.cash_due),
            patient_balance_after=None
            if done.patient_balance_after is None or not own_balance
            else _money(done.patient_balance_after),
            mutual_aid_payer_balance_after=None
            if done.payer_balance_after is None or not payer_balance
            else _money(done.payer_balance_after),
            province=Province.of(adapter),
            mutual_aid_province_code=done.mutual_aid_province,
            settled_at=done.settled_at,
            reversed_at=done.reversed_at,
            reversal_reason=done.reversal_reason,
        )


@strawberry.type
class SettlementPayload:
    settlement: Settlement | None
    errors: list[UserError]
    status: WriteStatus = strawberry.field(
        description="SUBMITTED: the province's answer is not known yet (settlement is null)."
    )
    idempotency_key: str = strawberry.field(description="The key this request went under.")
    told: strawberry.Private[Told] = NOTHING_TOLD  # for the audit: whose balances it shows

    @classmethod
    def of(cls, outcome: SettlementOutcome, info: Info_) -> SettlementPayload:
        settlement, told = None, NOTHING_TOLD
        if outcome.value is not None and outcome.adapter is not None:
            caller = info.context.caller_cert_no()
            settlement = Settlement.of(outcome.value, outcome.adapter, caller)
            told = shown(outcome.value, caller)
        return cls(
            settlement=settlement,
            errors=[UserError.of(e, info) for e in outcome.errors],
            status=WriteStatus.SUBMITTED if outcome.submitted else WriteStatus.DONE,
            idempotency_key=outcome.key or "",  # every write answers under its key
            told=told,
        )


def shown(done: base.Settlement, caller: str) -> Told:
    """What a settlement in an institution's answer tells it of other people: whatever
    the client selects, it is a read of the patient's balance after (and of the paying
    authorizer's), the patient and the payer are whom it concerns."""
    payer = done.mutual_aid_payer
    disclosed = []
    if done.patient_balance_after is not None:
        disclosed.append("Settlement.patientBalanceAfter")
    if payer is not None and done.payer_balance_after is not None:
        disclosed.append("Settlement.mutualAidPayerBalanceAfter")
    return Told.of(
        caller,
        done.patient.cert_no,
        None if payer is None else payer.cert_no,
        disclosed=disclosed,
    )


@strawberry.input(name="SettleInput")
class SettleBillInput:
    patient_cert_no: str
    medical_type: MedicalType  # type: ignore[valid-type]
    total_amount: Money
    fund_paid: Money = strawberry.field(description="What the pooled fund paid of the total.")
    idempotency_key: str = strawberry.field(
        description="The institution's own key for this bill (1 to 64 characters): sending"
        " the same bill again with it returns the same settlement and charges nothing more."
    )


@strawberry.type
class SettlementMutations:
    @strawberry.mutation(
        description="A designated institution (INSTITUTION role) settles a patient's bill."
    )
    async def settle(self, info: Info_, input: SettleBillInput) -> SettlementPayload:
        caller = info.context.signed_in()
        outcome = await info.context.services.settlements.settle(
            caller,
            SettleInput(
                patient_cert_no=input.patient_cert_no,
                medical_type=input.medical_type,
                total=input.total_amount,
                fund_paid=input.fund_paid,
                idempotency_key=input.idempotency_key,
            ),
        )
        return SettlementPayload.of(outcome, info)

    @strawberry.mutation(
        description="The institution that settled undoes a settlement of the same day, once."
    )
    async def reverse_settlement(
        self,
        info: Info_,
        settlement_id: strawberry.ID,
        reason: str,
        idempotency_key: Annotated[
            str | None, strawberry.argument(description=IDEMPOTENCY_KEY)
        ] = None,
    ) -> SettlementPayload:
        caller = info.context.signed_in()
        outcome = await info.context.services.settlements.reverse(
            caller, settlement_id, reason, key=idempotency_key
        )
        return SettlementPayload.of(outcome, info)
