"""`gateway.rules.mutual_aid.judge`, the pure binding rules, at each boundary.

Each province's rules are its declared `Policy` (data); ``judge`` reads them and asks
nothing. The sandboxes enforce the same rules again, so a rule of ``judge`` off by one
is seen only here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from importlib.metadata import entry_points
from typing import Any, ClassVar

import httpx
import pytest

from adapters.base import (
    Area,
    Binding,
    BindingStatus,
    InsuranceStatus,
    InsuranceType,
    Party,
    Person,
    Policy,
    ProvinceAdapter,
    RefusalCode,
    Relation,
)
from gateway.common.refusals import GatewayCode
from gateway.provinces.directory import Located
from gateway.rules.mutual_aid import judge
from tests.doubles import Nowhere

ADAPTERS: dict[str, type[ProvinceAdapter]] = {
    ep.name: ep.load() for ep in entry_points(group="gongji.adapters")
}
SINCE = dt.date(2020, 1, 1)
EMPLOYEE, RESIDENT = InsuranceType.EMPLOYEE, InsuranceType.RESIDENT
ACTIVE, PENDING = BindingStatus.ACTIVE, BindingStatus.PENDING_CONFIRMATION
SPOUSE, PARENT, CHILD = Relation.SPOUSE, Relation.PARENT, Relation.CHILD
R = RefusalCode


class Rules(ProvinceAdapter):
    """A province that is only its policy: judging asks it nothing."""

    code: ClassVar[str] = "13"
    name: ClassVar[str] = "甲省"
    policies: ClassVar[tuple[Policy, ...]] = (Policy(effective_from=SINCE),)

    def __init__(self, **rules: Any) -> None:
        super().__init__(
            httpx.AsyncClient(transport=Nowhere()),
            policies=[Policy(effective_from=SINCE, **rules)],
        )

    async def find_persons(self, cert_nos: Sequence[str]) -> dict[str, Person]:
        raise AssertionError("judge asked for persons")

    async def relatives(self, cert_no: str) -> list[Any]:
        raise AssertionError("judge asked for relatives")

    async def bindings_of(self, cert_nos: Sequence[str]) -> list[Binding]:
        raise AssertionError("judge asked for bindings")

    async def bind(self, request: Any) -> Any:
        raise AssertionError("judge asked to bind")

    async def unbind(self, binding_id: str, *, actor: str, request_id: str | None = None) -> Any:
        raise AssertionError("judge asked to unbind")


class Elsewhere(Rules):
    code: ClassVar[str] = "32"


def insured(
    cert_no: str,
    *,
    area: str = "130100",
    kind: InsuranceType = EMPLOYEE,
    status: InsuranceStatus = InsuranceStatus.ACTIVE,
    balance: Decimal | None = None,
) -> Person:
    return Person(cert_no, f"P{cert_no}", Area(area, "某市"), kind, status, balance)


def at(adapter: ProvinceAdapter, cert_no: str, **person: Any) -> Located:
    return Located(insured(cert_no, **person), adapter)


def binding(
    authorizer: str, beneficiary: str, status: BindingStatus = ACTIVE, n: int = 0
) -> Binding:
    return Binding(
        id=f"B{authorizer}{beneficiary}{n}",
        authorizer=Party(authorizer, authorizer),
        beneficiary=Party(beneficiary, beneficiary),
        relation=CHILD,
        status=status,
        created_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )


def bound_by(authorizer: str, count: int, status: BindingStatus = ACTIVE) -> list[Binding]:
    """``count`` bindings by ``authorizer``, of relatives other than the ones judged."""
    return [binding(authorizer, f"R{i}", status, i) for i in range(count)]


# -- who may bind whom ---------------------------------------------------------------------


def test_an_authorizer_without_employee_insurance_is_refused_first() -> None:
    here = Rules()
    auth = at(here, "A", kind=RESIDENT)
    bene = at(here, "B", status=InsuranceStatus.SUSPENDED)
    assert judge(auth, bene, Relation.SIBLING) is R.NOT_EMPLOYEE_INSURED


@pytest.mark.parametrize(
    "status", [InsuranceStatus.SUSPENDED, InsuranceStatus.TERMINATED, InsuranceStatus.PENDING]
)
def test_a_beneficiary_whose_insurance_is_not_in_force_is_refused(
    status: InsuranceStatus,
) -> None:
    here = Rules()
    assert judge(at(here, "A"), at(here, "B", status=status), CHILD) is R.BENEFICIARY_NOT_INSURED


def test_a_resident_beneficiary_in_force_may_be_bound() -> None:
    here = Rules()
    assert judge(at(here, "A"), at(here, "B", kind=RESIDENT), CHILD) is None


def test_another_province_is_refused_unless_both_policies_bind_across_provinces() -> None:
    beyond = at(Elsewhere(), "B", area="320100")
    open_beyond = at(Elsewhere(cross_province=True), "B", area="320100")
    assert judge(at(Rules(), "A"), beyond, CHILD) is R.CROSS_PROVINCE_NOT_ALLOWED
    assert judge(at(Rules(cross_city=True), "A"), beyond, CHILD) is R.CROSS_PROVINCE_NOT_ALLOWED
    assert judge(at(Rules(cross_province=True), "A"), beyond, CHILD) is (
        R.CROSS_PROVINCE_NOT_ALLOWED  # the relative's province does not allow it yet
    )
    assert judge(at(Rules(), "A"), open_beyond, CHILD) is R.CROSS_PROVINCE_NOT_ALLOWED
    assert judge(at(Rules(cross_province=True), "A"), open_beyond, CHILD) is None


BALANCE = Decimal("1000.00")


@pytest.mark.parametrize(
    ("quota", "expected"),
    [
        (None, GatewayCode.QUOTA_REQUIRED),
        (Decimal("0.00"), R.AMOUNT_NOT_POSITIVE),
        (Decimal("-1.00"), R.AMOUNT_NOT_POSITIVE),
        (Decimal("0.01"), None),
        (BALANCE, None),
        (BALANCE + Decimal("0.01"), R.QUOTA_ABOVE_BALANCE),
    ],
)
def test_across_provinces_a_quota_is_required_positive_and_within_the_balance(
    quota: Decimal | None, expected: object
) -> None:
    auth = at(Rules(cross_province=True), "A", balance=BALANCE)
    beyond = at(Elsewhere(cross_province=True), "B", area="320100")
    assert judge(auth, beyond, CHILD, quota=quota) is expected


def test_inside_a_province_a_quota_is_refused() -> None:
    here = Rules(cross_province=True)
    auth = at(here, "A", balance=BALANCE)
    assert judge(auth, at(here, "B"), CHILD, quota=None) is None
    assert judge(auth, at(here, "B"), CHILD, quota=Decimal("1.00")) is R.QUOTA_NOT_ALLOWED


def test_a_provinces_own_binding_rules_do_not_apply_across_provinces() -> None:
    """The commitment letter and the single binding are rules of bindings inside a
    province; its relations and its cap still apply."""
    strict = Rules(
        cross_province=True, commitment_required=True, single_binding=True, max_relatives=1
    )
    auth = at(strict, "A", balance=BALANCE)
    beyond = at(Elsewhere(cross_province=True), "B", area="320100")
    unsigned = judge(auth, beyond, CHILD, civil=CHILD, commitment_signed=False, quota=BALANCE)
    assert unsigned is None
    others = [binding("X", "A")]  # A is someone's beneficiary: single binding would refuse
    assert judge(auth, beyond, CHILD, bindings=others, quota=BALANCE) is None
    assert judge(auth, beyond, CHILD, bindings=bound_by("A", 1), quota=BALANCE) is (
        R.BINDING_LIMIT_REACHED
    )
    assert judge(auth, beyond, Relation.PARENT_IN_LAW, quota=BALANCE) is R.RELATION_NOT_ALLOWED


def test_another_city_is_refused_unless_the_policy_binds_across_cities() -> None:
    strict, open_ = Rules(), Rules(cross_city=True)
    assert judge(at(strict, "A"), at(strict, "B", area="130200"), CHILD) is (
        R.CROSS_AREA_NOT_ALLOWED
    )
    assert judge(at(strict, "A"), at(strict, "B"), CHILD) is None
    assert judge(at(open_, "A"), at(open_, "B", area="130200"), CHILD) is None


def test_the_authorizers_policy_decides_across_provinces_not_the_beneficiarys() -> None:
    auth = at(Rules(), "A")
    beyond = at(Elsewhere(cross_province=True), "B", area="320100")
    assert judge(auth, beyond, CHILD) is R.CROSS_PROVINCE_NOT_ALLOWED


def test_a_relation_the_policy_does_not_allow_is_refused() -> None:
    here = Rules()
    assert judge(at(here, "A"), at(here, "B"), Relation.SIBLING) is R.RELATION_NOT_ALLOWED
    wide = Rules(allowed_relations=frozenset({Relation.SIBLING}))
    assert judge(at(wide, "A"), at(wide, "B"), Relation.SIBLING) is None
    assert judge(at(wide, "A"), at(wide, "B"), CHILD) is R.RELATION_NOT_ALLOWED


# -- the civil record and the commitment letter --------------------------------------------


def test_the_civil_record_must_state_the_relation_claimed() -> None:
    here = Rules()
    a, b = at(here, "A"), at(here, "B")
    assert judge(a, b, CHILD, civil=CHILD) is None
    assert judge(a, b, CHILD, civil=None) is R.RELATION_NOT_VERIFIED
    assert judge(a, b, CHILD, civil=PARENT) is R.RELATION_NOT_VERIFIED  # allowed, but another
    assert judge(a, b, CHILD, civil=Relation.PARENT_IN_LAW) is R.RELATION_NOT_ALLOWED
    assert judge(a, b, CHILD) is None  # left out: not judged


def test_an_unsigned_commitment_is_refused_only_where_the_policy_requires_one() -> None:
    strict, lax = Rules(commitment_required=True), Rules()
    for rules, signed, expected in (
        (strict, False, R.COMMITMENT_REQUIRED),
        (strict, True, None),
        (lax, False, None),
    ):
        a, b = at(rules, "A"), at(rules, "B")
        assert judge(a, b, CHILD, civil=CHILD, commitment_signed=signed) is expected
    a, b = at(strict, "A"), at(strict, "B")
    assert judge(a, b, CHILD, commitment_signed=False) is None  # without the record: not yet
    # a relation the record does not state is the first reason
    assert judge(a, b, CHILD, civil=None, commitment_signed=False) is R.RELATION_NOT_VERIFIED


# -- the bindings already made -------------------------------------------------------------


def test_a_live_binding_of_the_same_pair_is_a_duplicate() -> None:
    here = Rules()
    a, b = at(here, "A"), at(here, "B")
    for status in (ACTIVE, PENDING):
        assert judge(a, b, CHILD, bindings=[binding("A", "B", status)]) is R.DUPLICATE_BINDING
    ended = [binding("A", "B", BindingStatus.UNBOUND), binding("A", "B", BindingStatus.DECLINED)]
    assert judge(a, b, CHILD, bindings=ended) is None
    assert judge(a, b, CHILD, bindings=[binding("B", "A")]) is None  # the other way round
    assert judge(a, b, CHILD, bindings=[]) is None


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        pytest.param(binding("X", "A"), R.ALREADY_BOUND, id="the authorizer is a beneficiary"),
        pytest.param(binding("X", "B"), R.ALREADY_BOUND, id="the beneficiary is bound already"),
        pytest.param(binding("B", "X"), R.ALREADY_BOUND, id="the beneficiary is an authorizer"),
        pytest.param(binding("A", "X"), None, id="the authorizer binds others too"),
        pytest.param(binding("X", "Y"), None, id="strangers"),
        pytest.param(
            binding("X", "B", BindingStatus.UNBOUND), None, id="the beneficiary was unbound"
        ),
        pytest.param(
            binding("B", "X", BindingStatus.DECLINED), None, id="the beneficiary was declined"
        ),
    ],
)
def test_where_one_binding_each_is_the_rule_a_person_bound_is_taken(
    existing: Binding, expected: RefusalCode | None
) -> None:
    single = Rules(single_binding=True)
    a, b = at(single, "A"), at(single, "B")
    assert judge(a, b, CHILD, bindings=[existing]) is expected
    assert judge(at(Rules(), "A"), at(Rules(), "B"), CHILD, bindings=[existing]) is None


def test_a_duplicate_is_named_before_the_single_binding_rule_and_the_cap() -> None:
    single = Rules(single_binding=True, max_relatives=1)
    a, b = at(single, "A"), at(single, "B")
    assert judge(a, b, CHILD, bindings=[binding("A", "B")]) is R.DUPLICATE_BINDING
    assert judge(a, b, CHILD, bindings=[binding("X", "B"), binding("A", "X")]) is (R.ALREADY_BOUND)


@pytest.mark.parametrize("cap", [1, 5, 8])
def test_the_cap_refuses_exactly_when_the_live_bindings_reach_it(cap: int) -> None:
    rules = Rules(max_relatives=cap)
    a, b = at(rules, "A"), at(rules, "B")
    assert judge(a, b, CHILD, bindings=bound_by("A", cap - 1)) is None
    assert judge(a, b, CHILD, bindings=bound_by("A", cap)) is R.BINDING_LIMIT_REACHED
    assert judge(a, b, CHILD, bindings=bound_by("A", cap + 1)) is R.BINDING_LIMIT_REACHED


def test_only_the_authorizers_own_live_bindings_count_toward_the_cap() -> None:
    rules = Rules(max_relatives=2)
    a, b = at(rules, "A"), at(rules, "B")
    ended = bound_by("A", 3, BindingStatus.UNBOUND) + bound_by("A", 3, BindingStatus.DECLINED)
    assert judge(a, b, CHILD, bindings=[*ended, *bound_by("A", 1)]) is None
    others = [*bound_by("B", 2), binding("X", "A"), binding("Y", "A")]
    assert judge(a, b, CHILD, bindings=[*others, *bound_by("A", 1)]) is None
    pending = bound_by("A", 1, PENDING)
    assert judge(a, b, CHILD, bindings=[*others, *pending, *bound_by("A", 1)]) is (
        R.BINDING_LIMIT_REACHED
    )


# -- each province's declared rules, as judged -------------------------------------------------


def province(name: str) -> ProvinceAdapter:
    return ADAPTERS[name](httpx.AsyncClient(transport=Nowhere()))


def test_hebei_refuses_the_ninth_relative_and_binds_the_eighth() -> None:
    hebei = province("hebei")
    a, b = at(hebei, "A"), at(hebei, "B", area="130200")  # across cities: Hebei binds
    assert judge(a, b, CHILD, civil=CHILD, bindings=bound_by("A", 7)) is None
    assert judge(a, b, CHILD, civil=CHILD, bindings=bound_by("A", 8)) is R.BINDING_LIMIT_REACHED


@pytest.mark.parametrize(("name", "cap"), [("hebei", 8), ("jiangsu", 5), ("henan", 5)])
def test_each_provinces_cap_is_the_one_it_declares(name: str, cap: int) -> None:
    adapter = province(name)
    assert adapter.policy().max_relatives == cap
    area = f"{adapter.code}0100"
    a, b = at(adapter, "A", area=area), at(adapter, "B", area=area)
    assert judge(a, b, CHILD, civil=CHILD, bindings=bound_by("A", cap - 1)) is None
    assert judge(a, b, CHILD, civil=CHILD, bindings=bound_by("A", cap)) is (R.BINDING_LIMIT_REACHED)
