""" "Why can't my family use my account?": the question users ask most, answered per relative.

For the caller (as the one whose account should pay) and one relative, the
reasons mutual aid would not pay from the caller's account today, in the order
a person would fix them, and who would pay for the relative now. The checks are
those of `MutualAid.check` (the same ones `bindMutualAid(dryRun: true)` runs),
the bindings the provinces hold, the kinship registry and the balances.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from adapters.base import (
    BindingStatus,
    Party,
    RefusalCode,
    Relation,
)
from gateway.common.certno import is_valid, normalize
from gateway.common.refusals import Code
from gateway.provinces.directory import Directory, Located
from gateway.rules.kinship import Kinship
from gateway.rules.mutual_aid import BindInput, MutualAid
from gateway.state.outcome import Outcome


class Reason(enum.Enum):
    INVALID_CERT_NO = "INVALID_CERT_NO"
    CALLER_NOT_INSURED = "CALLER_NOT_INSURED"
    RELATIVE_NOT_INSURED = "RELATIVE_NOT_INSURED"
    RELATIVE_INSURANCE_NOT_IN_FORCE = "RELATIVE_INSURANCE_NOT_IN_FORCE"
    NOT_EMPLOYEE_INSURED = "NOT_EMPLOYEE_INSURED"
    ONLY_KINSHIP_LINK = "ONLY_KINSHIP_LINK"
    NOT_BOUND = "NOT_BOUND"
    SPOUSE_NOT_CONFIRMED = "SPOUSE_NOT_CONFIRMED"
    CROSS_AREA_NOT_ALLOWED = "CROSS_AREA_NOT_ALLOWED"
    CROSS_PROVINCE_NOT_ALLOWED = "CROSS_PROVINCE_NOT_ALLOWED"
    RELATION_NOT_ALLOWED = "RELATION_NOT_ALLOWED"
    RELATION_NOT_VERIFIED = "RELATION_NOT_VERIFIED"
    BINDING_LIMIT_REACHED = "BINDING_LIMIT_REACHED"
    ALREADY_BOUND = "ALREADY_BOUND"
    BALANCE_ZERO = "BALANCE_ZERO"
    ANOTHER_AUTHORIZER_PAYS = "ANOTHER_AUTHORIZER_PAYS"


# What a refusal of the binding checks means as a reason.
_FROM_REFUSAL: dict[Code, Reason] = {
    RefusalCode.CROSS_AREA_NOT_ALLOWED: Reason.CROSS_AREA_NOT_ALLOWED,
    RefusalCode.CROSS_PROVINCE_NOT_ALLOWED: Reason.CROSS_PROVINCE_NOT_ALLOWED,
    RefusalCode.RELATION_NOT_ALLOWED: Reason.RELATION_NOT_ALLOWED,
    RefusalCode.RELATION_NOT_VERIFIED: Reason.RELATION_NOT_VERIFIED,
    RefusalCode.BINDING_LIMIT_REACHED: Reason.BINDING_LIMIT_REACHED,
    RefusalCode.ALREADY_BOUND: Reason.ALREADY_BOUND,
    RefusalCode.NOT_EMPLOYEE_INSURED: Reason.NOT_EMPLOYEE_INSURED,
    RefusalCode.BENEFICIARY_NOT_INSURED: Reason.RELATIVE_INSURANCE_NOT_IN_FORCE,
}


def reason_for(code: Code) -> Reason:
    """What a refusal of the binding rules means to someone asking why."""
    return _FROM_REFUSAL.get(code, Reason.NOT_BOUND)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    relative: Party | None
    payer: Party | None  # who would pay for the relative now (largest balance), if anyone
    reasons: Sequence[Reason]

    @property
    def works(self) -> bool:
        """Mutual aid would pay for the relative now (perhaps from someone else's account)."""
        return self.payer is not None


class Diagnostics:
    def __init__(self, mutual_aid: MutualAid, kinship: Kinship, directory: Directory) -> None:
        self._mutual_aid = mutual_aid
        self._kinship = kinship
        self._directory = directory

    async def diagnose(self, caller: str, relative_cert_no: str) -> Diagnosis:
        relative = normalize(relative_cert_no)
        if not is_valid(relative) or relative == caller:
            return Diagnosis(None, None, [Reason.INVALID_CERT_NO])
        me = (await self._directory.locate([caller])).get(caller)
        if me is None:
            return Diagnosis(None, None, [Reason.CALLER_NOT_INSURED])
        # Relatives only: about anyone else the answer says nothing (not even whether
        # they are insured, bound, or by whom).
        civil = await me.adapter.relatives(caller)
        relation = next((r.relation for r in civil if r.cert_no == relative), None)
        if relation is None:
            return Diagnosis(None, None, [Reason.RELATION_NOT_VERIFIED])
        them = (await self._directory.locate([relative])).get(relative)
        if them is None:
            return Diagnosis(None, None, [Reason.RELATIVE_NOT_INSURED])
        who = Party(relative, them.person.name)

        reasons: list[Reason] = []
        if not them.person.is_in_force:
            reasons.append(Reason.RELATIVE_INSURANCE_NOT_IN_FORCE)
        if not me.person.is_employee:
            reasons.append(Reason.NOT_EMPLOYEE_INSURED)

        held = await self._mutual_aid.bindings_of(caller, me.adapter)
        mine = [
            b
            for b, _ in held
            if b.authorizer.cert_no == caller and b.beneficiary.cert_no == relative
        ]
        statuses = {b.status for b in mine}
        if BindingStatus.PENDING_CONFIRMATION in statuses:
            reasons.append(Reason.SPOUSE_NOT_CONFIRMED)
        elif BindingStatus.ACTIVE not in statuses and me.person.is_employee:
            reasons += await self._unbound(caller, them, relation)

        balance = me.person.balance or Decimal("0")
        if me.person.is_employee and balance <= 0:
            reasons.append(Reason.BALANCE_ZERO)

        # their province holds the bindings: mutual aid does not cross provinces
        payer = await them.adapter.funded_authorizer(relative) if them.person.is_in_force else None
        if payer is not None and payer.cert_no != caller and not reasons:
            reasons.append(Reason.ANOTHER_AUTHORIZER_PAYS)
        return Diagnosis(who, payer, _in_order(reasons))

    async def _unbound(self, caller: str, them: Located, relation: Relation) -> list[Reason]:
        """Why no binding holds: a kinship link instead, and what binding would meet."""
        relative = them.person.cert_no
        reasons: list[Reason] = []
        links = await self._kinship.links_of(caller)
        if any(
            link.status.is_live and {link.adder.cert_no, link.member.cert_no} == {caller, relative}
            for link in links
        ):
            reasons.append(Reason.ONLY_KINSHIP_LINK)
        checked = await self._mutual_aid.check(
            caller, BindInput(relative, them.person.name, relation, commitment_signed=True)
        )
        if isinstance(checked, Outcome):
            code = checked.errors[0].code
            return [*reasons, reason_for(code)]
        return [*reasons, Reason.NOT_BOUND]


_ORDER = list(Reason)


def _in_order(reasons: list[Reason]) -> list[Reason]:
    """Each reason once, in the order a person would fix them."""
    return sorted(set(reasons), key=_ORDER.index)
