"""The words a province and the gateway share: people, relations, bindings, settlements,
refusals, and the reading of a dialect's text and money.

Frozen values only; nothing here does I/O. An adapter turns its dialect into these.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal


class Relation(enum.Enum):
    """A relative's relation to a person, as the civil record (or a caller) states it.

    ``PARENT`` means "the relative is my parent". Which of these a province lets
    mutual aid use is its policy's ``allowed_relations``.
    """

    SPOUSE = "SPOUSE"
    PARENT = "PARENT"
    CHILD = "CHILD"
    PARENT_IN_LAW = "PARENT_IN_LAW"
    CHILD_IN_LAW = "CHILD_IN_LAW"
    SIBLING = "SIBLING"
    GRANDPARENT = "GRANDPARENT"
    GRANDCHILD = "GRANDCHILD"

    @property
    def inverse(self) -> Relation:
        """If the relative is my ``self``, I am the relative's ``inverse``."""
        return _INVERSE.get(self, self)


_INVERSE = {
    Relation.PARENT: Relation.CHILD,
    Relation.CHILD: Relation.PARENT,
    Relation.PARENT_IN_LAW: Relation.CHILD_IN_LAW,
    Relation.CHILD_IN_LAW: Relation.PARENT_IN_LAW,
    Relation.GRANDPARENT: Relation.GRANDCHILD,
    Relation.GRANDCHILD: Relation.GRANDPARENT,
}


class InsuranceType(enum.Enum):
    EMPLOYEE = "EMPLOYEE"  # 职工基本医疗保险, insutype 310: has a personal account
    RESIDENT = "RESIDENT"  # 城乡居民基本医疗保险, insutype 390: no personal account


class InsuranceStatus(enum.Enum):
    ACTIVE = "ACTIVE"  # in force
    SUSPENDED = "SUSPENDED"  # paused / lapsed (断缴)
    TERMINATED = "TERMINATED"
    PENDING = "PENDING"  # enrolled, not in force yet (a newborn)


class BindingStatus(enum.Enum):
    PENDING_CONFIRMATION = "PENDING_CONFIRMATION"
    ACTIVE = "ACTIVE"
    DECLINED = "DECLINED"
    UNBOUND = "UNBOUND"

    @property
    def is_live(self) -> bool:
        """Whether the binding occupies a place (counts toward caps and duplicates)."""
        return self in (BindingStatus.PENDING_CONFIRMATION, BindingStatus.ACTIVE)


class RefusalCode(enum.Enum):
    """What a province may refuse with: adapters map their dialect's codes onto this
    closed list. (Refusals only the gateway gives, for rules only it keeps, are the
    gateway's own: `gateway.common.refusals.GatewayCode`.)"""

    INVALID_CERT_NO = "INVALID_CERT_NO"
    PERSON_NOT_FOUND = "PERSON_NOT_FOUND"
    PERSON_INFO_MISMATCH = "PERSON_INFO_MISMATCH"
    NOT_EMPLOYEE_INSURED = "NOT_EMPLOYEE_INSURED"
    BENEFICIARY_NOT_INSURED = "BENEFICIARY_NOT_INSURED"
    RELATION_NOT_ALLOWED = "RELATION_NOT_ALLOWED"
    RELATION_NOT_VERIFIED = "RELATION_NOT_VERIFIED"
    CROSS_AREA_NOT_ALLOWED = "CROSS_AREA_NOT_ALLOWED"
    CROSS_PROVINCE_NOT_ALLOWED = "CROSS_PROVINCE_NOT_ALLOWED"
    QUOTA_NOT_ALLOWED = "QUOTA_NOT_ALLOWED"  # a quota for a binding inside the province
    QUOTA_ABOVE_BALANCE = "QUOTA_ABOVE_BALANCE"  # more than the authorizer's balance
    QUOTA_INSUFFICIENT = "QUOTA_INSUFFICIENT"  # a hold of more than the quota has left
    INVALID_HOLD_STATE = "INVALID_HOLD_STATE"  # a hold confirmed, released or refunded
    # Resident premiums (城乡居民医保个人缴费) paid for a relative
    NOT_RESIDENT_INSURED = "NOT_RESIDENT_INSURED"  # only resident insurance has a premium
    PREMIUM_NOT_DECLARED = "PREMIUM_NOT_DECLARED"  # no premium declared for that year
    PREMIUM_ALREADY_PAID = "PREMIUM_ALREADY_PAID"
    PREMIUM_PAYMENT_NOT_ALLOWED = "PREMIUM_PAYMENT_NOT_ALLOWED"  # not by the rules in force
    BALANCE_INSUFFICIENT = "BALANCE_INSUFFICIENT"  # the account (or quota) has less
    NOT_BOUND = "NOT_BOUND"  # the payer is not actively bound to the relative
    BINDING_LIMIT_REACHED = "BINDING_LIMIT_REACHED"
    ALREADY_BOUND = "ALREADY_BOUND"
    DUPLICATE_BINDING = "DUPLICATE_BINDING"
    COMMITMENT_REQUIRED = "COMMITMENT_REQUIRED"
    INVALID_BINDING_STATE = "INVALID_BINDING_STATE"
    FORBIDDEN = "FORBIDDEN"
    # Settlement at designated institutions
    PATIENT_NOT_INSURED = "PATIENT_NOT_INSURED"
    AMOUNT_NOT_POSITIVE = "AMOUNT_NOT_POSITIVE"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    MEDICAL_TYPE_NOT_ALLOWED = "MEDICAL_TYPE_NOT_ALLOWED"
    SETTLEMENT_ALREADY_REVERSED = "SETTLEMENT_ALREADY_REVERSED"
    REVERSAL_WINDOW_CLOSED = "REVERSAL_WINDOW_CLOSED"
    SETTLEMENT_NOT_SUPPORTED = "SETTLEMENT_NOT_SUPPORTED"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An expected "no" from a province.

    Adapters give only the ``code``; the gateway knows which input ``field`` of
    the operation a code points at.
    """

    code: RefusalCode
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Area:
    """A pooling area (统筹区): a GB/T 2260 city code and its name."""

    code: str
    name: str

    @property
    def province_code(self) -> str:
        return self.code[:2]


@dataclass(frozen=True, slots=True)
class Person:
    """An insured person as their province knows them."""

    cert_no: str
    name: str
    area: Area
    insurance_type: InsuranceType
    insurance_status: InsuranceStatus
    balance: Decimal | None  # personal-account balance; None for resident insurance
    phone: str | None = None

    @property
    def is_employee(self) -> bool:
        return self.insurance_type is InsuranceType.EMPLOYEE

    @property
    def is_in_force(self) -> bool:
        return self.insurance_status is InsuranceStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class FamilyRead:
    """One province's part of a family screen (`ProvinceAdapter.read_family`): who among
    the people asked it insures (as `find_persons` gives them) and every binding, in
    any status, in which one of the people whose bindings were asked takes part (as
    `bindings_of`)."""

    persons: Mapping[str, Person]
    bindings: Sequence[Binding]


@dataclass(frozen=True, slots=True)
class CivilRelative:
    """One entry of a person's civil record: ``cert_no`` is their ``relation``."""

    cert_no: str
    name: str
    relation: Relation


@dataclass(frozen=True, slots=True)
class Party:
    cert_no: str
    name: str


@dataclass(frozen=True, slots=True)
class Quota:
    """The amount an authorizer set aside for a relative insured in another province
    (共济额度): it left their balance when granted; what remains returns when the
    binding ends."""

    granted: Decimal
    remaining: Decimal

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.remaining <= self.granted:
            raise ValueError("a quota's remaining amount is between nothing and the grant")
        if self.granted <= 0:
            raise ValueError("a quota is positive")


@dataclass(frozen=True, slots=True)
class Binding:
    """A mutual-aid binding as the province records it. ``id`` is the province's own.

    The authorizer's province holds it. A relative insured in another province
    (``beneficiary_province``, its code) is bound with a ``quota``; both are None for a
    binding inside the province.
    """

    id: str
    authorizer: Party
    beneficiary: Party
    relation: Relation  # the beneficiary's relation to the authorizer
    status: BindingStatus
    created_at: dt.datetime
    beneficiary_province: str | None = None
    quota: Quota | None = None

    def __post_init__(self) -> None:
        if (self.beneficiary_province is None) != (self.quota is None):
            raise ValueError("a binding across provinces has a quota, and only such a one")

    @property
    def across_provinces(self) -> bool:
        return self.quota is not None


@dataclass(frozen=True, slots=True)
class BindRequest:
    """``request_id``: the province's key for this request (`new_request_id`); sent again
    with the same id, the province answers as it did the first time."""

    authorizer_cert_no: str
    beneficiary_cert_no: str
    beneficiary_name: str
    relation: Relation
    commitment_signed: bool
    request_id: str | None = None  # None: the adapter makes one
    # A relative insured in another province: its code, and the quota set aside for them.
    beneficiary_province: str | None = None
    quota: Decimal | None = None


def new_request_id() -> str:
    """A request id every dialect can carry: ``GJ``, the time to the second, 10 hex
    digits (26 ASCII characters, as the national platform's ``msgid``)."""
    return f"GJ{dt.datetime.now():%Y%m%d%H%M%S}{uuid.uuid4().hex[:10]}"


class MedicalType(enum.Enum):
    OUTPATIENT = "OUTPATIENT"  # 门诊
    INPATIENT = "INPATIENT"  # 住院
    PHARMACY = "PHARMACY"  # 定点药店购药


@dataclass(frozen=True, slots=True)
class Funding:
    """Mutual aid for a bill from another province: ``amount`` held there (`QuotaHold`
    ``hold_id``) from the quota ``payer`` (insured in ``province``) set aside for the
    patient. The settling province pays at most that much of the self-pay part from it,
    after the patient's own account, and touches no balance of its own for it."""

    province: str
    payer: str  # the authorizer's ID number
    amount: Decimal
    hold_id: str


@dataclass(frozen=True, slots=True)
class SettleRequest:
    """A designated institution's bill for a patient, after the pooled fund's share.

    ``idempotency_key`` is the institution's own: the same key from the same
    institution is the same settlement, however often it is sent. With ``funding``,
    mutual aid comes from another province's quota, not from an authorizer here.
    """

    institution_code: str
    idempotency_key: str
    patient_cert_no: str
    medical_type: MedicalType
    total: Decimal
    fund_paid: Decimal
    request_id: str | None = None  # as for `BindRequest`
    funding: Funding | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PremiumPayment:
    """A resident's premium for a year, paid by an authorizer's account, or across
    provinces from a quota held in ``payer_province`` (``funding_hold`` there)."""

    id: str
    beneficiary: Party
    year: int
    amount: Decimal
    payer: Party
    payer_province: str | None
    funding_hold: str | None
    paid_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Premium:
    """A resident's premium for ``year`` as their province declares it (``amount``
    None: not declared yet), and its payment, if made."""

    cert_no: str
    year: int
    amount: Decimal | None
    payment: PremiumPayment | None


@dataclass(frozen=True, slots=True)
class PremiumRequest:
    """Pay ``beneficiary_cert_no``'s resident premium for ``year`` from ``payer_cert_no``'s
    account, or with ``funding`` held in another province from their quota."""

    beneficiary_cert_no: str
    year: int
    payer_cert_no: str
    request_id: str | None = None
    funding: Funding | None = None


class ChangeKind(enum.Enum):
    MOVED = "MOVED"  # the registration (参保关系) moved to another province
    ENDED = "ENDED"  # it ended


@dataclass(frozen=True, slots=True)
class RegistrationChange:
    """One entry of a province's change feed: a person's registration there moved out
    (``to_province``, its two-digit code) or ended. ``seq`` orders the feed; the next
    read asks for what came after the last ``seq`` seen."""

    seq: int
    cert_no: str
    kind: ChangeKind
    to_province: str | None
    at: dt.datetime


class HoldStatus(enum.Enum):
    HELD = "HELD"  # set apart from the quota, for a payment in the relative's province
    CONFIRMED = "CONFIRMED"  # paid (``used``); what was not used went back to the quota
    RELEASED = "RELEASED"  # not paid: all of it went back to the quota
    REFUNDED = "REFUNDED"  # paid, then the payment was reversed: ``used`` came back


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaHold:
    """Money held from a cross-province binding's quota in the authorizer's province,
    for one payment in the relative's (共济资金冻结): held, then confirmed with what the
    payment used or released; a confirmed one is refunded when the payment is reversed.
    ``reference`` is the gateway's name for the payment; ``payment_ref`` the paying
    province's settlement, once confirmed."""

    id: str
    binding_id: str
    authorizer: Party
    beneficiary: Party
    beneficiary_province: str
    amount: Decimal
    used: Decimal
    status: HoldStatus
    reference: str
    payment_ref: str | None
    created_at: dt.datetime

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.used <= self.amount or self.amount <= 0:
            raise ValueError("a hold is positive, and uses no more than it holds")
        if self.status is HoldStatus.HELD and self.used != 0:
            raise ValueError("a hold still held has used nothing")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """A settlement as the province records it (national platform outputs in brackets)."""

    id: str
    institution_code: str
    patient: Party
    medical_type: MedicalType
    total: Decimal  # medfee_sumamt
    fund_paid: Decimal  # fund_pay_sumamt
    self_pay: Decimal  # psn_part_amt
    own_account_paid: Decimal  # acct_pay
    mutual_aid_paid: Decimal  # acct_mulaid_pay
    mutual_aid_payer: Party | None
    cash_due: Decimal  # psn_cash_pay
    patient_balance_after: Decimal | None  # balc
    payer_balance_after: Decimal | None
    # Across provinces: the payer's province (None: this one), and the hold there.
    mutual_aid_province: str | None = None
    funding_hold: str | None = None
    settled_at: dt.datetime
    reversed_at: dt.datetime | None = None
    reversal_reason: str | None = None

    def __post_init__(self) -> None:
        """What every province's answer must satisfy: parsed inside `_reading`, an answer
        that breaks it is a contract error."""
        parts = (self.total, self.fund_paid, self.self_pay, self.own_account_paid)
        if min(*parts, self.mutual_aid_paid, self.cash_due) < 0:
            raise ValueError("a negative amount")
        if self.fund_paid + self.self_pay != self.total:
            raise ValueError("fund paid and self-pay do not add up to the total")
        if self.own_account_paid + self.mutual_aid_paid + self.cash_due != self.self_pay:
            raise ValueError("the parts do not add up to the self-pay part")
        if (self.mutual_aid_paid > 0) != (self.mutual_aid_payer is not None):
            raise ValueError("mutual aid paid needs its payer, and a payer needs a payment")


# -- a dialect's values ------------------------------------------------------------


def text(value: object) -> str:
    """A dialect's text field, checked to be a string (use inside `_reading`)."""
    if not isinstance(value, str):
        raise TypeError(f"not a string: {value!r}")
    return value


def parse_money(value: object) -> Decimal:
    """A CNY amount from a dialect's string, as `Decimal` with two places; never via float."""
    if isinstance(value, float) or value is None or isinstance(value, bool):
        raise ValueError(f"not a money string: {value!r}")
    amount = Decimal(str(value))
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return amount.quantize(Decimal("0.01"))
