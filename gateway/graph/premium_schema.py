"""Resident premiums in the graph: `payResidentPremium`, for an authorizer paying a bound
relative's premium from their account (or, across provinces, from the quota)."""

from __future__ import annotations

import datetime as dt

import strawberry

from adapters import base
from adapters.base import ProvinceAdapter
from gateway.graph.types import Info_, Money, PersonRef, Province, UserError, WriteStatus
from gateway.rules.premiums import PremiumInput, PremiumOutcome


@strawberry.type(
    description="A resident's premium (城乡居民医保个人缴费) for a year, paid by an authorizer."
)
class ResidentPremiumPayment:
    id: strawberry.ID
    year: int
    amount: Money
    beneficiary: PersonRef
    payer: PersonRef
    province: Province = strawberry.field(description="Where the relative is insured: paid there.")
    payer_province_code: strawberry.Private[str | None]
    paid_at: dt.datetime

    @strawberry.field(
        description="The province whose account paid: another one when a quota set aside"
        " across provinces paid, else `province`."
    )
    def payer_province(self, info: Info_) -> Province | None:
        return self.province.or_other(self.payer_province_code, info)

    @classmethod
    def of(
        cls, paid: base.PremiumPayment, adapter: ProvinceAdapter, caller: str
    ) -> ResidentPremiumPayment:
        return cls(
            id=strawberry.ID(f"{adapter.code}:{paid.id}"),
            year=paid.year,
            amount=Money(paid.amount),
            beneficiary=PersonRef.of(paid.beneficiary, caller),
            payer=PersonRef.of(paid.payer, caller),
            province=Province.of(adapter),
            payer_province_code=paid.payer_province,
            paid_at=paid.paid_at,
        )


@strawberry.type
class ResidentPremiumPayload:
    payment: ResidentPremiumPayment | None
    errors: list[UserError]
    status: WriteStatus = strawberry.field(
        description="SUBMITTED: the province's answer is not known yet (payment is null)."
    )
    idempotency_key: str

    @classmethod
    def of(cls, outcome: PremiumOutcome, info: Info_) -> ResidentPremiumPayload:
        payment = None
        if outcome.value is not None and outcome.adapter is not None:
            caller = info.context.caller_cert_no()
            payment = ResidentPremiumPayment.of(outcome.value, outcome.adapter, caller)
        return cls(
            payment=payment,
            errors=[UserError.of(e, info) for e in outcome.errors],
            status=WriteStatus.SUBMITTED if outcome.submitted else WriteStatus.DONE,
            idempotency_key=outcome.key or "",
        )


@strawberry.input
class PayResidentPremiumInput:
    beneficiary_cert_no: str = strawberry.field(
        description="The relative, resident-insured, whom the caller has bound."
    )
    year: int = strawberry.field(description="The year the premium is for.")
    idempotency_key: str = strawberry.field(
        description="Your key for this payment (1 to 64 characters): sent again, the same"
        " payment comes back and nothing more is paid."
    )


@strawberry.type
class PremiumMutations:
    @strawberry.mutation(
        description="Pay a bound relative's resident premium (城乡居民医保个人缴费) for a year"
        " from the caller's personal account, once: inside one province where its rules"
        " allow it (2024 on), across provinces from the quota set aside (2026 on)."
    )
    async def pay_resident_premium(
        self, info: Info_, input: PayResidentPremiumInput
    ) -> ResidentPremiumPayload:
        caller = info.context.insured()
        outcome = await info.context.services.premiums.pay(
            caller,
            PremiumInput(
                beneficiary_cert_no=input.beneficiary_cert_no,
                year=input.year,
                idempotency_key=input.idempotency_key,
            ),
        )
        return ResidentPremiumPayload.of(outcome, info)
