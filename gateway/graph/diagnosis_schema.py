"""`mutualAidDiagnosis`: why mutual aid would not pay for a relative, in plain words."""

from __future__ import annotations

import strawberry

from gateway.common.messages import reason_message
from gateway.graph.marks import AUDITED_AND_LIMITED
from gateway.graph.types import Info_, PersonRef
from gateway.rules.diagnosis import Diagnosis, Reason

DiagnosisCode = strawberry.enum(Reason, name="DiagnosisCode")


@strawberry.type
class DiagnosisReason:
    code: DiagnosisCode  # type: ignore[valid-type]
    message: str
    next_step: str


@strawberry.type(description="Mutual aid between the caller and one relative, today.")
class MutualAidDiagnosis:
    relative: PersonRef | None
    works: bool = strawberry.field(description="Mutual aid would pay for the relative now.")
    payer: PersonRef | None = strawberry.field(
        description="Whose account would pay: the bound authorizer with the largest balance."
    )
    reasons: list[DiagnosisReason] = strawberry.field(
        description="Why the caller's account would not pay, in the order to fix them."
    )

    @classmethod
    def of(cls, found: Diagnosis, info: Info_) -> MutualAidDiagnosis:
        caller = info.context.caller_cert_no()
        reasons = []
        for reason in found.reasons:
            message, next_step = reason_message(reason.value, info.context.lang)
            reasons.append(DiagnosisReason(code=reason, message=message, next_step=next_step))
        return cls(
            relative=None if found.relative is None else PersonRef.of(found.relative, caller),
            works=found.works,
            payer=None if found.payer is None else PersonRef.of(found.payer, caller),
            reasons=reasons,
        )


@strawberry.type
class DiagnosisQueries:
    @strawberry.field(
        description="Would mutual aid pay for this relative from the caller's account today?"
        " If not, why, and what to do.",
        metadata=AUDITED_AND_LIMITED,
    )
    async def mutual_aid_diagnosis(self, info: Info_, relative_cert_no: str) -> MutualAidDiagnosis:
        caller = info.context.insured()
        found = await info.context.services.diagnostics.diagnose(caller, relative_cert_no)
        return MutualAidDiagnosis.of(found, info)
