"""The conformance suite (`conformance`): run against every province adapter wired by respx
to its own sandbox.

The provinces come from the ``gongji.adapters`` entry points (and the sandbox of the same name
from ``gongji.sandboxes``); ``GONGJI_CONFORMANCE`` (names, comma-separated) keeps some. Each
scenario's people are picked from the sandboxes' people (`conformance.people`) by the
adapter's area-code prefix and declared policy. A scenario the province's people cannot
stage fails for it, saying what they must include. The civil record is the people's
relations as the sandbox derives them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import inspect
import json
import re
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from adapters.base import (
    Area,
    Binding,
    BindingStatus,
    BindRequest,
    BreakerState,
    CircuitOpen,
    CivilRelative,
    Guard,
    InsuranceStatus,
    InsuranceType,
    MedicalType,
    Party,
    Policy,
    PremiumRequest,
    ProvinceAdapter,
    Refusal,
    RefusalCode,
    Relation,
    Settlement,
    SettleRequest,
    UpstreamContractError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    new_request_id,
    policy_in_force,
)
from conformance.people import CIVIL_RELATIONS, PEOPLE, ROSTER, Missing, chosen, need
from sandbox.dialect import Dialect, UnknownCall, dialect_of
from sandbox.engine import (
    REASONS,
    ProvinceRules,
    ProvinceSystem,
    SandboxRefusal,
    derive_relations,
)

Row = dict[str, Any]
BASE_URL = "http://province.test"
# One TLS context for every client: building one per client costs ~20 ms (never used: all mocked).
TLS = ssl.create_default_context()
ADAPTERS: dict[str, type[ProvinceAdapter]] = {
    ep.name: ep.load() for ep in entry_points(group="gongji.adapters") if chosen(ep.name)
}
SANDBOXES = {ep.name: ep for ep in entry_points(group="gongji.sandboxes") if chosen(ep.name)}
NAMES = sorted(ADAPTERS)
BY_CERT: dict[str, Row] = {p["certNo"]: p for p in PEOPLE.values()}
CIVIL: dict[tuple[str, str], Relation] = {
    (subject, relative): Relation(relation)
    for subject, relative, relation in sorted(derive_relations(CIVIL_RELATIONS))
}
SPOUSE, IN_LAW = Relation.SPOUSE, Relation.PARENT_IN_LAW


@dataclass(frozen=True)
class Pair:
    """An authorizer, a relative and the relation claimed between them."""

    authorizer: Row
    beneficiary: Row
    relation: Relation

    def request(
        self, *, name: str | None = None, signed: bool = True, request_id: str | None = None
    ) -> BindRequest:
        a, b = self.authorizer, self.beneficiary
        return BindRequest(
            a["certNo"], b["certNo"], name or b["name"], self.relation, signed, request_id
        )


# -- roster data per province: what a scenario needs, found by area-code prefix and policy --


def insured(code: str) -> list[Row]:
    return [p for p in PEOPLE.values() if p["insuredArea"].startswith(code)]


def bindable(code: str, policy: Policy, authorizer: Row, beneficiary: Row) -> bool:
    """Whether the province would bind these two, their relation apart."""
    return (
        authorizer["insuranceType"] == "EMPLOYEE"
        and authorizer["insuredArea"].startswith(code)
        and beneficiary["insuredArea"].startswith(code)
        and beneficiary["insuranceStatus"] == "ACTIVE"
        and (policy.cross_city or authorizer["insuredArea"] == beneficiary["insuredArea"])
    )


def civil_pairs(code: str, policy: Policy) -> list[Pair]:
    """Relatives on the civil record whom the province would bind, their relation apart."""
    return [
        Pair(me, other, CIVIL[me["certNo"], other["certNo"]])
        for me in insured(code)
        for other in PEOPLE.values()
        if (me["certNo"], other["certNo"]) in CIVIL and bindable(code, policy, me, other)
    ]


def family(code: str, policy: Policy) -> list[Pair]:
    return [c for c in civil_pairs(code, policy) if c.relation in policy.allowed_relations]


def cases(applies: Callable[[Policy], bool], keep: Callable[[Pair], bool], needs: str) -> list[Any]:
    """(province, the first pair of its people that ``keep`` wants) as pytest params, for
    each province whose policy the scenario ``applies`` to; where its people have none,
    a `Missing` that fails the scenario saying it ``needs`` one."""
    params = []
    for name in NAMES:
        policy = policy_of(name)
        if not applies(policy):
            params.append(not_its_policy(name, None))
            continue
        found = [c for c in civil_pairs(ADAPTERS[name].code, policy) if keep(c)]
        if found:
            c = found[0]
            label = f"{name}-{c.authorizer['key']}-{c.beneficiary['key']}"
            params.append(pytest.param(name, c, id=label))
        else:
            params.append(pytest.param(name, Missing(name, needs), id=f"{name}-missing"))
    return params


def crowded_families() -> list[Any]:
    """(province, an authorizer's bindable relatives, where they outnumber the cap)."""
    params = []
    for name in NAMES:
        policy = policy_of(name)
        found = family(ADAPTERS[name].code, policy)
        for me in insured(ADAPTERS[name].code):
            group = [c for c in found if c.authorizer is me]
            if len(group) > policy.max_relatives:
                label = f"{name}-{me['key']}-{len(group)}-relatives"
                params.append(pytest.param(name, group, id=label))
        if not any(p.values[0] == name for p in params):
            needs = (
                f"an employee with more relatives on the civil record whom the policy lets"
                f" them bind than its cap ({policy.max_relatives})"
            )
            params.append(pytest.param(name, Missing(name, needs), id=f"{name}-missing"))
    return params


def policy_of(name: str) -> Policy:
    return policy_in_force(ADAPTERS[name].policies, dt.date.today())


def provinces(where: Callable[[Policy], bool]) -> list[Any]:
    """Each province as a param: run where its policy calls for the scenario (``where``),
    reported skipped, saying so, elsewhere."""
    return [name if where(policy_of(name)) else not_its_policy(name) for name in NAMES]


def not_its_policy(name: str, *more: object) -> Any:
    """A param for a province whose policy does not call for a scenario: skipped, saying so."""
    reason = f"province {name}: its policy in force does not call for this scenario"
    return pytest.param(
        name, *more, id=f"{name}-not-its-policy", marks=pytest.mark.skip(reason=reason)
    )


# -- fixtures -------------------------------------------------------------------------


@dataclass
class Province:
    adapter: ProvinceAdapter
    rules: ProvinceRules
    router: respx.MockRouter
    sandbox: respx.Route  # the catch-all route forwarding to the sandbox app
    system: ProvinceSystem  # the modelled province itself, to count what it did
    dialect: Dialect  # which of its requests write, and the request id each carries
    name: str = ""  # its entry points' name

    @property
    def code(self) -> str:
        return self.adapter.code

    def writing(self, request: httpx.Request) -> bool:
        """Whether ``request`` asks the province for a write, in its own dialect."""
        return self.dialect.is_write(request)

    def writes(self, seen: list[httpx.Request]) -> list[httpx.Request]:
        return [r for r in seen if self.writing(r)]

    def write_ids(self, seen: list[httpx.Request]) -> list[str | None]:
        """The request ids the writes among ``seen`` carried, in order."""
        return [self.dialect.request_id(r) for r in self.writes(seen)]

    @property
    def requests(self) -> int:
        return self.router.calls.call_count


@pytest.fixture(params=NAMES)
async def province(request: pytest.FixtureRequest) -> AsyncIterator[Province]:
    factory = SANDBOXES[request.param].load()
    app = factory(roster=ROSTER)  # everyone the scenarios are staged with
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(base_url=BASE_URL, timeout=2.0, verify=TLS) as client,
        respx.mock(base_url=BASE_URL, assert_all_called=False) as router,
    ):
        route = router.route(name="sandbox").mock(side_effect=respx.ASGIHandler(app))
        system: ProvinceSystem = app.state.system
        yield Province(
            ADAPTERS[request.param](client),
            system.rules,
            router,
            route,
            system,
            dialect_of(factory),
            request.param,
        )


@pytest.fixture
def pair(province: Province) -> Pair:
    """An employee and a relative they may bind (not a spouse: that may need confirming)."""
    found = [
        c for c in family(province.code, province.adapter.policy()) if c.relation is not SPOUSE
    ]
    return need(
        found[0]
        if found
        else Missing(
            province.name,
            "an employee and a relative (not a spouse) on the civil record whom they may bind",
        )
    )


@pytest.fixture
def stranger(province: Province, pair: Pair) -> Row:
    """Someone the pair's authorizer could bind but for not being related at all."""
    me, policy = pair.authorizer, province.adapter.policy()
    found = [
        p
        for p in insured(province.code)
        if p is not me
        and (me["certNo"], p["certNo"]) not in CIVIL
        and bindable(province.code, policy, me, p)
    ]
    return need(
        found[0]
        if found
        else Missing(
            province.name,
            "a stranger: someone insured whom the"
            " authorizer of the first bindable pair could bind but for being unrelated",
        )
    )


# -- reading --------------------------------------------------------------------------


async def test_find_persons_returns_exactly_the_provinces_insured_people_in_one_request(
    province: Province,
) -> None:
    found = await province.adapter.find_persons([p["certNo"] for p in PEOPLE.values()])
    assert province.requests == 1
    assert set(found) == {p["certNo"] for p in insured(province.code)}
    codes = tuple(cls.code for cls in ADAPTERS.values())
    outsiders = {p["certNo"] for p in PEOPLE.values() if not p["insuredArea"].startswith(codes)}
    assert outsiders
    assert not outsiders & set(found)


async def test_find_persons_reads_name_area_insurance_and_a_two_place_balance(
    province: Province,
) -> None:
    people = insured(province.code)
    found = await province.adapter.find_persons([p["certNo"] for p in people])
    for row in people:
        got = found[row["certNo"]]
        assert (got.cert_no, got.name, got.phone) == (row["certNo"], row["name"], row["phone"])
        assert got.area == Area(row["insuredArea"], row["insuredAreaName"])
        assert got.insurance_type is InsuranceType(row["insuranceType"])
        assert got.insurance_status is InsuranceStatus(row["insuranceStatus"])
        if got.is_employee:
            assert isinstance(got.balance, Decimal)
            assert got.balance.as_tuple().exponent == -2
            assert got.balance == Decimal(row["accountBalance"])
        else:
            assert got.balance is None


async def test_asking_about_nobody_answers_empty_without_a_request(province: Province) -> None:
    assert dict(await province.adapter.find_persons([])) == {}
    assert list(await province.adapter.bindings_of([])) == []
    assert list(await province.adapter.settlements_of([])) == []
    assert province.requests == 0


async def test_relatives_are_the_civil_record_of_every_insured_person(province: Province) -> None:
    for row in insured(province.code):
        got = await province.adapter.relatives(row["certNo"])
        expected = {
            CivilRelative(relative, BY_CERT[relative]["name"], relation)
            for (subject, relative), relation in CIVIL.items()
            if subject == row["certNo"]
        }
        assert len(got) == len(expected)
        assert set(got) == expected


# -- binding --------------------------------------------------------------------------


async def test_binding_an_allowed_relative_returns_an_active_binding_between_them(
    province: Province, pair: Pair
) -> None:
    binding = await province.adapter.bind(pair.request())
    assert isinstance(binding, Binding)
    assert binding.authorizer == Party(pair.authorizer["certNo"], pair.authorizer["name"])
    assert binding.beneficiary == Party(pair.beneficiary["certNo"], pair.beneficiary["name"])
    assert (binding.relation, binding.status) == (pair.relation, BindingStatus.ACTIVE)
    assert abs(dt.datetime.now(dt.UTC) - binding.created_at) < dt.timedelta(minutes=1)


async def test_a_binding_is_listed_from_either_side_in_one_request(
    province: Province, pair: Pair
) -> None:
    binding = await province.adapter.bind(pair.request())
    for sides in ([pair.authorizer], [pair.beneficiary], [pair.authorizer, pair.beneficiary]):
        before = province.requests
        assert list(await province.adapter.bindings_of([p["certNo"] for p in sides])) == [binding]
        assert province.requests == before + 1


@pytest.mark.parametrize(
    ("province", "case"),
    cases(
        lambda p: SPOUSE in p.allowed_relations,
        lambda c: c.relation is SPOUSE,
        "an employee and their spouse, both insured and bindable",
    ),
    indirect=["province"],
)
async def test_a_spouse_binding_waits_for_confirmation_exactly_where_the_policy_says(
    province: Province, case: Pair
) -> None:
    need(case)
    binding = await province.adapter.bind(case.request())
    assert isinstance(binding, Binding)
    waits = province.adapter.policy().spouse_confirmation
    assert binding.status is (BindingStatus.PENDING_CONFIRMATION if waits else BindingStatus.ACTIVE)


@pytest.mark.parametrize(
    ("province", "case"),
    cases(
        lambda p: p.spouse_confirmation,
        lambda c: c.relation is SPOUSE,
        "an employee and their spouse, both insured and bindable",
    ),
    indirect=["province"],
)
@pytest.mark.parametrize(
    ("accept", "status"),
    [(True, BindingStatus.ACTIVE), (False, BindingStatus.DECLINED)],
    ids=["accepts", "declines"],
)
async def test_only_the_spouse_answers_a_pending_binding_and_only_once(
    province: Province, case: Pair, accept: bool, status: BindingStatus
) -> None:
    need(case)
    adapter, me, spouse = province.adapter, case.authorizer["certNo"], case.beneficiary["certNo"]
    pending = await adapter.bind(case.request())
    assert isinstance(pending, Binding)
    forbidden = await adapter.respond(pending.id, actor=me, accept=accept)
    assert forbidden == Refusal(RefusalCode.FORBIDDEN)
    answered = await adapter.respond(pending.id, actor=spouse, accept=accept)
    assert isinstance(answered, Binding)
    assert (answered.id, answered.status) == (pending.id, status)
    again = await adapter.respond(pending.id, actor=spouse, accept=accept)
    assert again == Refusal(RefusalCode.INVALID_BINDING_STATE)
    assert [b.status for b in await adapter.bindings_of([spouse])] == [status]


@pytest.mark.parametrize("province", provinces(lambda p: not p.spouse_confirmation), indirect=True)
async def test_respond_is_an_invalid_state_where_nobody_confirms(
    province: Province, pair: Pair
) -> None:
    binding = await province.adapter.bind(pair.request())
    assert isinstance(binding, Binding)
    beneficiary = pair.beneficiary["certNo"]
    answer = await province.adapter.respond(binding.id, actor=beneficiary, accept=True)
    assert answer == Refusal(RefusalCode.INVALID_BINDING_STATE)


# -- refusals -------------------------------------------------------------------------


async def test_a_name_that_does_not_match_the_id_number_is_refused(
    province: Province, pair: Pair
) -> None:
    refusal = await province.adapter.bind(pair.request(name="冒名者"))
    assert refusal == Refusal(RefusalCode.PERSON_INFO_MISMATCH)


async def test_binding_the_same_relative_twice_is_a_duplicate(
    province: Province, pair: Pair
) -> None:
    assert isinstance(await province.adapter.bind(pair.request()), Binding)
    refusal = await province.adapter.bind(pair.request())
    assert refusal == Refusal(RefusalCode.DUPLICATE_BINDING)


async def test_someone_not_on_the_civil_record_is_refused_as_unverified(
    province: Province, pair: Pair, stranger: Row
) -> None:
    claim = Pair(pair.authorizer, stranger, pair.relation)
    refusal = await province.adapter.bind(claim.request())
    assert refusal == Refusal(RefusalCode.RELATION_NOT_VERIFIED)


@pytest.mark.parametrize(
    ("province", "case"),
    cases(
        lambda p: IN_LAW not in p.allowed_relations,
        lambda c: c.relation is IN_LAW,
        "an employee and their spouse's parent (a parent-in-law) on the civil record",
    ),
    indirect=["province"],
)
async def test_a_spouses_parent_is_on_the_civil_record_as_a_parent_in_law_but_cannot_be_bound(
    province: Province, case: Pair
) -> None:
    need(case)
    relatives = await province.adapter.relatives(case.authorizer["certNo"])
    in_law = case.beneficiary
    assert CivilRelative(in_law["certNo"], in_law["name"], IN_LAW) in relatives
    refusal = await province.adapter.bind(case.request())
    assert refusal == Refusal(RefusalCode.RELATION_NOT_ALLOWED)


@pytest.mark.parametrize("province", provinces(lambda p: p.commitment_required), indirect=True)
async def test_an_unsigned_commitment_is_refused_where_the_policy_requires_one(
    province: Province, pair: Pair
) -> None:
    refusal = await province.adapter.bind(pair.request(signed=False))
    assert refusal == Refusal(RefusalCode.COMMITMENT_REQUIRED)


@pytest.mark.parametrize("province", provinces(lambda p: not p.commitment_required), indirect=True)
async def test_an_unsigned_commitment_is_no_obstacle_where_none_is_required(
    province: Province, pair: Pair
) -> None:
    assert isinstance(await province.adapter.bind(pair.request(signed=False)), Binding)


@pytest.mark.parametrize(("province", "case"), crowded_families(), indirect=["province"])
async def test_one_relative_beyond_the_cap_is_refused(province: Province, case: list[Pair]) -> None:
    need(case)
    cap = province.adapter.policy().max_relatives
    for relative in case[:cap]:
        assert isinstance(await province.adapter.bind(relative.request()), Binding)
    refusal = await province.adapter.bind(case[cap].request())
    assert refusal == Refusal(RefusalCode.BINDING_LIMIT_REACHED)


async def test_the_authorizer_unbinds_once_and_a_second_unbind_is_an_invalid_state(
    province: Province, pair: Pair
) -> None:
    adapter, me = province.adapter, pair.authorizer["certNo"]
    binding = await adapter.bind(pair.request())
    assert isinstance(binding, Binding)
    ended = await adapter.unbind(binding.id, actor=me)
    assert isinstance(ended, Binding)
    assert (ended.id, ended.status) == (binding.id, BindingStatus.UNBOUND)
    again = await adapter.unbind(binding.id, actor=me)
    assert again == Refusal(RefusalCode.INVALID_BINDING_STATE)
    assert [b.status for b in await adapter.bindings_of([me])] == [BindingStatus.UNBOUND]


async def test_nobody_but_the_authorizer_can_unbind(
    province: Province, pair: Pair, stranger: Row
) -> None:
    binding = await province.adapter.bind(pair.request())
    assert isinstance(binding, Binding)
    for actor in (pair.beneficiary, stranger):
        refusal = await province.adapter.unbind(binding.id, actor=actor["certNo"])
        assert refusal == Refusal(RefusalCode.FORBIDDEN)
    listed = await province.adapter.bindings_of([pair.authorizer["certNo"]])
    assert [b.status for b in listed] == [BindingStatus.ACTIVE]


async def test_the_declared_policy_agrees_with_the_sandboxs_own_rules_on_every_date(
    province: Province,
) -> None:
    """Every version either side declares: on its first day, the adapter's policy in force
    and the sandbox's rules in force say the same."""
    assert province.rules.prefix == province.code
    versions = importlib.import_module(SANDBOXES[_name(province)].module).VERSIONS
    days = {p.effective_from for p in province.adapter.timeline()}
    days |= {r.effective_from for r in versions if r.effective_from >= min(days)}
    flags = ("max_relatives", "cross_city", "cross_province", "spouse_confirmation")
    for day in sorted(days):
        policy = province.adapter.policy(day)
        rules = policy_in_force_of(versions, day)
        for flag in (*flags, "single_binding", "commitment_required"):
            assert getattr(policy, flag) == getattr(rules, flag), (day, flag)
        assert policy.allowed_relations == {Relation(r) for r in rules.allowed_relations}, day


def _name(province: Province) -> str:
    return next(n for n in NAMES if ADAPTERS[n].code == province.code)


def policy_in_force_of(versions: tuple[ProvinceRules, ...], day: dt.date) -> ProvinceRules:
    return max((r for r in versions if r.effective_from <= day), key=lambda r: r.effective_from)


# -- settlement -----------------------------------------------------------------------

HOSPITAL, OTHER_HOSPITAL = "H13010001", "H13010002"
ZERO = Decimal("0.00")


def bill(patient: Row, total: str, fund: str, key: str = "bill-1", **kw: Any) -> SettleRequest:
    return SettleRequest(
        institution_code=kw.get("institution", HOSPITAL),
        idempotency_key=key,
        patient_cert_no=patient["certNo"],
        medical_type=kw.get("medical_type", MedicalType.OUTPATIENT),
        total=Decimal(total),
        fund_paid=Decimal(fund),
        request_id=kw.get("request_id"),
    )


def balance(row: Row) -> Decimal:
    return Decimal(row["accountBalance"] or "0")


async def balance_now(province: Province, row: Row) -> Decimal | None:
    return (await province.adapter.find_persons([row["certNo"]]))[row["certNo"]].balance


def funded_employee(code: str) -> Row:
    found = [p for p in insured(code) if p["insuranceStatus"] == "ACTIVE" and balance(p) > 0]
    if not found:
        Missing(code, "an insured person with money in their account").fail()
    return max(found, key=balance)


def funded_pairs(code: str, policy: Policy) -> list[Pair]:
    """An authorizer with money and a relative without an account, whom they may bind."""
    return [
        c
        for c in family(code, policy)
        if balance(c.authorizer) > 0
        and c.beneficiary["accountBalance"] is None
        and not (policy.spouse_confirmation and c.relation is SPOUSE)
    ]


def shared_children() -> list[Any]:
    """(province, two funded authorizers who may both bind the same relative)."""
    params = []
    for name in NAMES:
        policy = policy_of(name)
        if policy.single_binding:  # one authorizer per relative: no second payer
            params.append(not_its_policy(name, None))
            continue
        found = funded_pairs(ADAPTERS[name].code, policy)
        for first in found:
            second = next(
                (
                    c
                    for c in found
                    if c.beneficiary is first.beneficiary
                    and c.authorizer is not first.authorizer
                    and balance(c.authorizer) != balance(first.authorizer)
                ),
                None,
            )
            if second is not None:
                label = f"{name}-{first.beneficiary['key']}"
                params.append(pytest.param(name, (first, second), id=label))
                break
        else:
            needs = (
                "a relative without an account whom two employees with money (and different"
                " balances) may both bind"
            )
            params.append(pytest.param(name, Missing(name, needs), id=f"{name}-missing"))
    return params


@pytest.fixture
def funded(province: Province) -> Pair:
    found = funded_pairs(province.code, province.adapter.policy())
    return need(
        found[0]
        if found
        else Missing(
            province.name,
            "an employee with money and a relative without an account whom they may bind",
        )
    )


async def bound(province: Province, pair: Pair) -> None:
    made = await province.adapter.bind(pair.request())
    assert isinstance(made, Binding)
    assert made.status is BindingStatus.ACTIVE


async def test_the_patients_own_account_pays_first_then_cash(province: Province) -> None:
    patient = funded_employee(province.code)
    own = balance(patient)
    total = own + Decimal("500.00")
    done = await province.adapter.settle(bill(patient, str(total), "100.00"))

    assert isinstance(done, Settlement)
    assert done.patient == Party(patient["certNo"], patient["name"])
    assert done.institution_code == HOSPITAL
    assert (done.total, done.fund_paid, done.self_pay) == (total, Decimal("100.00"), total - 100)
    assert done.own_account_paid == own
    assert done.mutual_aid_paid == ZERO
    assert done.mutual_aid_payer is None
    assert done.cash_due == total - 100 - own
    assert done.patient_balance_after == ZERO
    assert await balance_now(province, patient) == ZERO
    for amount in (done.self_pay, done.own_account_paid, done.cash_due):
        assert amount.as_tuple().exponent == -2


async def test_mutual_aid_pays_what_the_patient_cannot(province: Province, funded: Pair) -> None:
    await bound(province, funded)
    before = balance(funded.authorizer)
    done = await province.adapter.settle(bill(funded.beneficiary, "1000.00", "400.00"))

    assert isinstance(done, Settlement)
    assert done.own_account_paid == ZERO  # resident insurance: no account of their own
    paid = min(before, Decimal("600.00"))
    assert done.mutual_aid_paid == paid
    assert done.mutual_aid_payer == Party(funded.authorizer["certNo"], funded.authorizer["name"])
    assert done.payer_balance_after == before - paid
    assert done.cash_due == Decimal("600.00") - paid
    assert await balance_now(province, funded.authorizer) == before - paid


@pytest.mark.parametrize(("province", "two"), shared_children(), indirect=["province"])
async def test_only_the_authorizer_with_the_largest_balance_pays(
    province: Province, two: tuple[Pair, Pair]
) -> None:
    need(two)
    for pair in two:
        await bound(province, pair)
    richer = max(two, key=lambda c: balance(c.authorizer)).authorizer
    poorer = min(two, key=lambda c: balance(c.authorizer)).authorizer
    huge = str(balance(richer) + balance(poorer) + 1000)
    done = await province.adapter.settle(bill(two[0].beneficiary, huge, "0.00"))

    assert isinstance(done, Settlement)
    assert done.mutual_aid_payer is not None
    assert done.mutual_aid_payer.cert_no == richer["certNo"]
    assert done.mutual_aid_paid == balance(richer)  # up to its balance, and no further
    assert done.cash_due == Decimal(huge) - balance(richer)
    assert await balance_now(province, poorer) == balance(poorer)  # never a second payer


async def test_the_same_key_is_the_same_settlement_charged_once(province: Province) -> None:
    patient = funded_employee(province.code)
    first = await province.adapter.settle(bill(patient, "50.00", "10.00", key="again"))
    second = await province.adapter.settle(bill(patient, "50.00", "10.00", key="again"))
    assert isinstance(first, Settlement)
    assert second == first
    assert await balance_now(province, patient) == balance(patient) - Decimal("40.00")
    other = await province.adapter.settle(bill(patient, "60.00", "10.00", key="again"))
    assert other == Refusal(RefusalCode.IDEMPOTENCY_KEY_REUSED)


async def test_a_reversal_restores_every_balance_once(province: Province, funded: Pair) -> None:
    await bound(province, funded)
    done = await province.adapter.settle(bill(funded.beneficiary, "300.00", "100.00"))
    assert isinstance(done, Settlement)
    elsewhere = await province.adapter.reverse(
        done.id, institution_code=OTHER_HOSPITAL, reason="not mine"
    )
    assert elsewhere == Refusal(RefusalCode.FORBIDDEN)

    undone = await province.adapter.reverse(done.id, institution_code=HOSPITAL, reason="wrong")
    assert isinstance(undone, Settlement)
    assert undone.id == done.id
    assert undone.reversed_at is not None
    assert undone.reversal_reason == "wrong"
    assert await balance_now(province, funded.authorizer) == balance(funded.authorizer)
    again = await province.adapter.reverse(done.id, institution_code=HOSPITAL, reason="wrong")
    assert again == Refusal(RefusalCode.SETTLEMENT_ALREADY_REVERSED)
    assert await balance_now(province, funded.authorizer) == balance(funded.authorizer)


async def test_settlements_are_listed_for_the_patient_and_the_payer(
    province: Province, funded: Pair
) -> None:
    await bound(province, funded)
    done = await province.adapter.settle(bill(funded.beneficiary, "300.00", "100.00"))
    assert isinstance(done, Settlement)
    before = province.requests
    found = await province.adapter.settlements_of(
        [funded.authorizer["certNo"], funded.beneficiary["certNo"]]
    )
    assert province.requests == before + 1
    assert [s.id for s in found] == [done.id]
    assert found[0] == done


def lapsed(code: str) -> list[Row]:
    return [p for p in insured(code) if p["insuranceStatus"] != "ACTIVE"]


async def test_a_patient_whose_insurance_is_not_in_force_is_refused(province: Province) -> None:
    found = lapsed(province.code)
    need(found[0] if found else Missing(province.name, "someone whose insurance is not in force"))
    refused = await province.adapter.settle(bill(found[0], "100.00", "0.00"))
    assert refused == Refusal(RefusalCode.PATIENT_NOT_INSURED)


# -- faults ---------------------------------------------------------------------------

# Two valid ID numbers (GB 11643): the fault scenarios never reach a province's people.
SOMEONE, OTHER = "130102197603150016", "130602195001200010"
OPERATIONS: dict[str, Callable[[ProvinceAdapter], Awaitable[object]]] = {
    "find_persons": lambda a: a.find_persons([SOMEONE, OTHER]),
    "relatives": lambda a: a.relatives(SOMEONE),
    "bindings_of": lambda a: a.bindings_of([SOMEONE]),
    "read_family": lambda a: a.read_family([SOMEONE, OTHER], [SOMEONE]),
    "bind": lambda a: a.bind(BindRequest(SOMEONE, OTHER, "王德明", Relation.PARENT, True)),
    "unbind": lambda a: a.unbind("B00000001", actor=SOMEONE),
    "respond": lambda a: a.respond("B00000001", actor=OTHER, accept=True),
    "settle": lambda a: a.settle(
        SettleRequest("H001", "k1", OTHER, MedicalType.OUTPATIENT, Decimal(100), Decimal(40))
    ),
    "reverse": lambda a: a.reverse("S00000001", institution_code="H001", reason="x"),
    "settlements_of": lambda a: a.settlements_of([SOMEONE]),
}
CALLS = [
    pytest.param(name, op, id=f"{name}-{op}")
    for name in NAMES
    for op in OPERATIONS
    # respond makes a request only where the province confirms (the default refuses at once)
    if op != "respond" or ADAPTERS[name].respond is not ProvinceAdapter.respond
]


def answer(status: int, body: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, content=body)


MALFORMED: dict[str, tuple[int, bytes]] = {
    "html": (200, b"<html>oops"),
    "half-json": (200, b"{"),
    "empty": (200, b""),
    "json-of-another-shape": (200, b'{"unexpected": [1, 2]}'),
    "json-null": (200, b"null"),
    "truncated-xml": (200, b'<?xml version="1.0"?><response><head><retcode>0000</retcode>'),
    "json-envelope-of-empty-records": (
        200,
        b'{"infcode": 0, "code": 0, "data": [{}], "output": {"psn_list": [{}],'
        b' "rltv_list": [{}], "mulaid_list": [{}], "mulaid": {}}}',
    ),
    "xml-envelope-of-empty-records": (
        200,
        b"<response><head><retcode>0000</retcode></head>"
        b"<body><person/><relative/><binding/></body></response>",
    ),
    "xml-system-fault": (200, b"<response><head><retcode>9999</retcode></head><body/></response>"),
    # another 4xx, with a fault that is not "cannot read": its outcome is unknown
    "request-id-reused": (
        409,
        '{"infcode": -1, "err_msg": "报文ID重复", "code": 40900, "msg": "请求ID已用于其他请求",'
        ' "data": null, "output": {}}'.encode(),
    ),
    "not-found-page": (404, b"Not Found"),
    "absurdly-nested-json": (200, b"[" * 100_000 + b"]" * 100_000),
    "xml-in-an-unknown-encoding": (
        200,
        b"<?xml version='1.0' encoding='x-bogus'?><response><head><retcode>0000</retcode>"
        b"</head><body/></response>",
    ),
    "numbers-where-text-belongs": (
        200,
        b'{"infcode": 0, "output": {"psn_list": [{"baseinfo": {"certno": 1, "psn_name": 2},'
        b' "insuinfo": [{"insutype": "310", "psn_insu_stas": "1", "insuplc_admdvs": 3,'
        b' "insuplc_admdvs_name": null, "balc": "1.00"}]}], "rltv_list":'
        b' [{"certno": 1, "psn_name": 2, "rlts_type": "10"}], "mulaid_list": [{"mulaid_id": 1,'
        b' "auth_certno": 1, "auth_psn_name": 2, "bene_certno": 3, "bene_psn_name": 4,'
        b' "rlts_type": "10", "mulaid_stas": "1", "crte_time": "2026-11-23 12:00:00"}]}}',
    ),
}


def broken_gzip(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip at all")


def endless_redirects(request: httpx.Request) -> httpx.Response:
    return httpx.Response(302, headers={"location": str(request.url)})


# Answers that say the request could not be read, in any dialect: nothing was done with it.
UNREAD: dict[str, tuple[int, bytes]] = {
    "http-400": (400, b""),
    "http-413": (413, b"<html><body>413 Request Entity Too Large</body></html>"),
    "json-system-fault-400": (400, b'{"infcode": -1, "code": 40000, "data": null, "output": {}}'),
}

# (what the province does, the error it becomes, whether the request may have reached it)
FAULTS = [
    pytest.param(answer(500, b""), UpstreamUnavailable, True, id="http-500"),
    pytest.param(answer(503, b"busy"), UpstreamUnavailable, True, id="http-503"),
    pytest.param(httpx.ReadTimeout, UpstreamTimeout, True, id="read-timeout"),
    pytest.param(httpx.ConnectTimeout, UpstreamTimeout, False, id="connect-timeout"),
    pytest.param(httpx.ConnectError, UpstreamUnavailable, False, id="connect-error"),
    pytest.param(httpx.RemoteProtocolError, UpstreamUnavailable, True, id="connection-dropped"),
    pytest.param(broken_gzip, UpstreamContractError, True, id="undecodable-body"),
    pytest.param(endless_redirects, UpstreamUnavailable, True, id="redirect-loop"),
    *(
        pytest.param(answer(*reply), UpstreamContractError, True, id=label)
        for label, reply in MALFORMED.items()
    ),
    *(
        pytest.param(answer(*reply), UpstreamContractError, False, id=label)
        for label, reply in UNREAD.items()
    ),
]


@pytest.mark.parametrize(("name", "operation"), CALLS)
@pytest.mark.parametrize(("side_effect", "expected", "reached"), FAULTS)
async def test_a_fault_surfaces_only_as_the_matching_upstream_error_naming_the_province(
    name: str, operation: str, side_effect: Any, expected: type[UpstreamError], reached: bool
) -> None:
    cls = ADAPTERS[name]
    async with (
        httpx.AsyncClient(
            base_url=BASE_URL, timeout=2.0, verify=TLS, follow_redirects=True
        ) as client,
        respx.mock(base_url=BASE_URL) as router,
    ):
        router.route().mock(side_effect=side_effect)
        with pytest.raises(expected) as caught:
            # no retries here (they are tested below), and a breaker that stays closed
            await OPERATIONS[operation](cls(client, guard=Guard(retries=0)))
    if operation == "settle" and name in PAYER_NAMED and expected is UpstreamContractError:
        # its first request reads, to choose the payer: a read refused unread says nothing
        # of the settlement, which may have been sent before (its outcome stays unknown)
        reached = True
    assert caught.value.province == cls.code
    assert caught.value.reached is reached


async def test_a_real_answer_cut_short_is_a_contract_error(province: Province, pair: Pair) -> None:
    forward = province.sandbox.side_effect
    assert isinstance(forward, respx.ASGIHandler)

    async def cut_short(request: httpx.Request) -> httpx.Response:
        full = await forward(request)
        body = await full.aread()
        kind = {"content-type": full.headers["content-type"]}
        return httpx.Response(full.status_code, headers=kind, content=body[: len(body) // 2])

    province.sandbox.side_effect = cut_short
    adapter, me = province.adapter, pair.authorizer["certNo"]
    for call in (
        lambda: adapter.find_persons([me]),
        lambda: adapter.relatives(me),
        lambda: adapter.bindings_of([me]),
        lambda: adapter.bind(pair.request()),
        lambda: adapter.settle(bill(pair.authorizer, "10.00", "0.00", key="cut")),
        lambda: adapter.settlements_of([me]),
    ):
        with pytest.raises(UpstreamContractError) as caught:
            await call()
        assert caught.value.province == province.code


# -- request ids: a write sent again is answered as the first time, and done once ------------


def interpose(
    province: Province, fault: Callable[[httpx.Request], httpx.Response | None]
) -> list[httpx.Request]:
    """Put ``fault`` before the sandbox (its answer, or None to let the request through);
    returns the list of requests seen, growing."""
    forward = province.sandbox.side_effect
    assert isinstance(forward, respx.ASGIHandler)
    seen: list[httpx.Request] = []

    async def side_effect(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = fault(request)
        return answer if answer is not None else await forward(request)

    province.sandbox.side_effect = side_effect
    return seen


def guarded(province: Province, guard: Guard) -> ProvinceAdapter:
    """Another adapter for the same province and client, with its own breaker and retries."""
    return type(province.adapter)(province.adapter.client, guard=guard)


async def test_a_bind_sent_again_is_answered_as_the_first_time_and_binds_once(
    province: Province, pair: Pair
) -> None:
    adapter, me, them = province.adapter, pair.authorizer["certNo"], pair.beneficiary["certNo"]
    rid = new_request_id()
    first = await adapter.bind(pair.request(request_id=rid))
    assert isinstance(first, Binding)
    assert await adapter.bind(pair.request(request_id=rid)) == first
    assert await province.system.count_bindings(me, them) == 1
    # ended since: the same request is still answered as it was, and binds nothing
    ended = await adapter.unbind(first.id, actor=me)
    assert isinstance(ended, Binding)
    assert await adapter.bind(pair.request(request_id=rid)) == first
    assert await province.system.count_bindings(me, them) == 1
    assert [b.status for b in await adapter.bindings_of([me])] == [BindingStatus.UNBOUND]


async def test_a_refusal_sent_again_is_the_same_refusal_even_once_it_no_longer_holds(
    province: Province, pair: Pair
) -> None:
    adapter, me, them = province.adapter, pair.authorizer["certNo"], pair.beneficiary["certNo"]
    made = await adapter.bind(pair.request())
    assert isinstance(made, Binding)
    rid = new_request_id()
    refused = await adapter.bind(pair.request(request_id=rid))
    assert refused == Refusal(RefusalCode.DUPLICATE_BINDING)
    assert isinstance(await adapter.unbind(made.id, actor=me), Binding)
    assert await adapter.bind(pair.request(request_id=rid)) == refused
    assert await province.system.count_bindings(me, them) == 1
    assert isinstance(await adapter.bind(pair.request()), Binding)  # a new request binds
    assert await province.system.count_bindings(me, them) == 2


async def test_an_unbind_sent_again_is_answered_as_the_first_time(
    province: Province, pair: Pair
) -> None:
    adapter, me = province.adapter, pair.authorizer["certNo"]
    binding = await adapter.bind(pair.request())
    assert isinstance(binding, Binding)
    rid = new_request_id()
    first = await adapter.unbind(binding.id, actor=me, request_id=rid)
    assert isinstance(first, Binding)
    assert first.status is BindingStatus.UNBOUND
    assert await adapter.unbind(binding.id, actor=me, request_id=rid) == first
    again = await adapter.unbind(binding.id, actor=me)  # a new request: nothing left to end
    assert again == Refusal(RefusalCode.INVALID_BINDING_STATE)


@pytest.mark.parametrize(
    ("province", "case"),
    cases(
        lambda p: p.spouse_confirmation,
        lambda c: c.relation is SPOUSE,
        "an employee and their spouse, both insured and bindable",
    ),
    indirect=["province"],
)
async def test_an_answer_to_a_pending_binding_sent_again_is_answered_as_the_first_time(
    province: Province, case: Pair
) -> None:
    need(case)
    adapter, me, spouse = province.adapter, case.authorizer["certNo"], case.beneficiary["certNo"]
    pending = await adapter.bind(case.request())
    assert isinstance(pending, Binding)
    rid = new_request_id()
    first = await adapter.respond(pending.id, actor=spouse, accept=True, request_id=rid)
    assert isinstance(first, Binding)
    assert first.status is BindingStatus.ACTIVE
    assert await adapter.respond(pending.id, actor=spouse, accept=True, request_id=rid) == first
    assert isinstance(await adapter.unbind(pending.id, actor=me), Binding)
    assert await adapter.respond(pending.id, actor=spouse, accept=True, request_id=rid) == first
    fresh = await adapter.respond(pending.id, actor=spouse, accept=True)
    assert fresh == Refusal(RefusalCode.INVALID_BINDING_STATE)
    assert await province.system.count_bindings(me, spouse) == 1


async def test_a_settlement_sent_again_is_answered_as_the_first_time_and_charged_once(
    province: Province, funded: Pair
) -> None:
    adapter, payer = province.adapter, funded.authorizer
    await bound(province, funded)
    asked = bill(funded.beneficiary, "300.00", "100.00", request_id=new_request_id())
    first = await adapter.settle(asked)
    assert isinstance(first, Settlement)
    assert first.mutual_aid_paid > 0
    assert await adapter.settle(asked) == first
    assert await balance_now(province, payer) == balance(payer) - first.mutual_aid_paid
    # reversed since: the same request is still answered as it was, and charges nothing
    undone = await adapter.reverse(first.id, institution_code=HOSPITAL, reason="wrong")
    assert isinstance(undone, Settlement)
    assert await adapter.settle(asked) == first
    assert await balance_now(province, payer) == balance(payer)
    assert await province.system.count_settlements(funded.beneficiary["certNo"]) == 1


async def test_a_reversal_sent_again_is_answered_as_the_first_time_and_credited_once(
    province: Province, funded: Pair
) -> None:
    adapter, payer = province.adapter, funded.authorizer
    await bound(province, funded)
    done = await adapter.settle(bill(funded.beneficiary, "300.00", "100.00"))
    assert isinstance(done, Settlement)
    rid = new_request_id()
    first = await adapter.reverse(
        done.id, institution_code=HOSPITAL, reason="wrong", request_id=rid
    )
    assert isinstance(first, Settlement)
    assert first.reversed_at is not None
    again = await adapter.reverse(
        done.id, institution_code=HOSPITAL, reason="wrong", request_id=rid
    )
    assert again == first
    assert await balance_now(province, payer) == balance(payer)  # credited back once
    fresh = await adapter.reverse(done.id, institution_code=HOSPITAL, reason="wrong")
    assert fresh == Refusal(RefusalCode.SETTLEMENT_ALREADY_REVERSED)


async def test_a_request_id_reused_for_another_request_is_refused_and_does_nothing(
    province: Province, pair: Pair
) -> None:
    adapter, me = province.adapter, pair.authorizer["certNo"]
    rid = new_request_id()
    first = await adapter.bind(pair.request(request_id=rid))
    assert isinstance(first, Binding)
    with pytest.raises(UpstreamContractError):  # other fields
        await adapter.bind(pair.request(name="冒名者", request_id=rid))
    with pytest.raises(UpstreamContractError):  # another operation
        await adapter.unbind(first.id, actor=me, request_id=rid)
    assert [b.status for b in await adapter.bindings_of([me])] == [BindingStatus.ACTIVE]
    assert await adapter.bind(pair.request(request_id=rid)) == first  # still kept


PAYER_NAMED = [n for n in NAMES if importlib.import_module(SANDBOXES[n].module).SEED.payer_named]


@pytest.mark.parametrize("province", PAYER_NAMED, indirect=True)
async def test_a_settlement_whose_payer_is_chosen_again_is_still_one_request_to_send_again(
    province: Province, funded: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the adapter names the payer and one that is no longer bound is refused, the
    choice made again goes under an id derived from the first: the whole settlement, sent
    again under the first id, is the same two requests (each naming the payer it named
    the first time, whoever would be chosen now) and gets the same two answers."""
    adapter, payer, patient = province.adapter, funded.authorizer, funded.beneficiary["certNo"]
    await bound(province, funded)
    choose = adapter.funded_authorizer

    def stale_first(who: str) -> None:
        stale = iter([Party(who, "旧授权人")])

        async def chooser(beneficiary: str, *, owed: Decimal | None = None) -> Party | None:
            return next(stale, None) or await choose(beneficiary, owed=owed)

        monkeypatch.setattr(adapter, "funded_authorizer", chooser)

    seen = interpose(province, lambda request: None)
    rid = new_request_id()
    asked = bill(funded.beneficiary, "300.00", "100.00", request_id=rid)
    stale_first("110101190001010011")
    first = await adapter.settle(asked)
    assert isinstance(first, Settlement)
    assert first.mutual_aid_payer == Party(payer["certNo"], payer["name"])
    sent = province.write_ids(seen)
    bodies = [r.content for r in province.writes(seen)]
    assert len(sent) == 2
    assert sent[0] == rid
    assert sent[1] != rid
    assert b"110101190001010011" in bodies[0]
    assert payer["certNo"].encode() in bodies[1]

    stale_first("110101190001010022")  # another stale choice would be made this time
    assert await adapter.settle(asked) == first
    assert province.write_ids(seen) == [
        *sent,
        *sent,
    ]
    assert [r.content for r in province.writes(seen)] == [*bodies, *bodies]

    async def nobody(beneficiary: str, *, owed: Decimal | None = None) -> Party | None:
        return None

    monkeypatch.setattr(adapter, "funded_authorizer", nobody)  # nobody would be named now
    assert await adapter.settle(asked) == first
    assert province.write_ids(seen) == [
        *sent,
        *sent,
        *sent,
    ]
    assert [r.content for r in province.writes(seen)] == [*bodies, *bodies, *bodies]
    assert await province.system.count_settlements(patient) == 1
    assert await balance_now(province, payer) == balance(payer) - first.mutual_aid_paid


@pytest.mark.parametrize("province", PAYER_NAMED, indirect=True)
async def test_a_settlement_sent_again_names_the_payer_it_named_the_first_time(
    province: Province, funded: Pair
) -> None:
    """The province carries out the settlement but its answer is lost; it emptied the
    payer's account, so the payer chosen now would be nobody. Sent again under the same
    id (as the gateway's outbox does), it is the same request: the same payer, the same
    key, the same body; never one chosen again from balances that have moved."""
    adapter, payer = province.adapter, funded.authorizer
    await bound(province, funded)
    forward = province.sandbox.side_effect
    assert isinstance(forward, respx.ASGIHandler)
    sent: list[bytes] = []

    async def lose_the_first_answer(request: httpx.Request) -> httpx.Response:
        response = await forward(request)
        if province.writing(request):
            sent.append(request.content)
            if len(sent) == 1:  # carried out; the answer is lost on the way back
                raise httpx.ReadError("connection reset by peer", request=request)
        return response

    province.sandbox.side_effect = lose_the_first_answer
    owed = balance(payer) + Decimal("100.00")  # more than the payer has
    asked = bill(funded.beneficiary, str(owed), "0.00", request_id=new_request_id())
    with pytest.raises(UpstreamUnavailable) as caught:
        await adapter.settle(asked)
    assert caught.value.reached is True
    assert await balance_now(province, payer) == ZERO  # done: the payer paid all they had
    assert await adapter.funded_authorizer(funded.beneficiary["certNo"], owed=owed) is None

    again = await adapter.settle(asked)
    assert isinstance(again, Settlement)
    assert len(sent) == 2
    assert sent[1] == sent[0]
    assert payer["certNo"].encode() in sent[0]
    assert again.mutual_aid_payer == Party(payer["certNo"], payer["name"])
    assert again.mutual_aid_paid == balance(payer)
    assert await province.system.count_settlements(funded.beneficiary["certNo"]) == 1


async def test_the_province_keeps_the_answer_in_the_same_transaction_as_the_write(
    province: Province, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    system, me, them = province.system, pair.authorizer["certNo"], pair.beneficiary["certNo"]
    patient = funded_employee(province.code)

    async def bind() -> dict[str, Any]:
        return await system.bind(
            authorizer=me,
            beneficiary=them,
            beneficiary_name=pair.beneficiary["name"],
            relation=pair.relation.value,
            commitment_signed=True,
            request_id="R-bind",
        )

    async def settle() -> dict[str, Any]:
        return await system.settle(
            institution=HOSPITAL,
            idempotency_key="kept",
            patient=patient["certNo"],
            medical_type="OUTPATIENT",
            total="50.00",
            fund_paid="10.00",
            request_id="R-settle",
        )

    async def cannot_keep(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(system, "_keep", cannot_keep)
    for write in (bind, settle):
        with pytest.raises(RuntimeError):
            await write()
    assert await system.count_bindings(me, them) == 0  # neither the write nor its answer
    assert await system.count_settlements(patient["certNo"]) == 0
    assert await balance_now(province, patient) == balance(patient)
    monkeypatch.undo()
    for write in (bind, settle):
        assert await write() == await write()
    assert await system.count_bindings(me, them) == 1
    assert await balance_now(province, patient) == balance(patient) - Decimal("40.00")


async def test_a_write_without_a_request_id_is_done_as_it_comes(
    province: Province, pair: Pair
) -> None:
    system = province.system
    given = {
        "authorizer": pair.authorizer["certNo"],
        "beneficiary": pair.beneficiary["certNo"],
        "beneficiary_name": pair.beneficiary["name"],
        "relation": pair.relation.value,
        "commitment_signed": True,
    }
    await system.bind(**given)
    with pytest.raises(SandboxRefusal) as refused:
        await system.bind(**given)
    assert refused.value.reason == "duplicate"


@pytest.mark.parametrize("name", NAMES)
async def test_kept_answers_outlive_a_restart_of_the_province(name: str, tmp_path: Path) -> None:
    code = ADAPTERS[name].code
    pair = next(c for c in family(code, policy_of(name)) if c.relation is not SPOUSE)
    answers: list[dict[str, Any]] = []
    counts: list[int] = []
    for _ in range(2):
        app = SANDBOXES[name].load()(data_dir=tmp_path, roster=ROSTER)
        async with app.router.lifespan_context(app):
            system: ProvinceSystem = app.state.system
            answers.append(
                await system.bind(
                    authorizer=pair.authorizer["certNo"],
                    beneficiary=pair.beneficiary["certNo"],
                    beneficiary_name=pair.beneficiary["name"],
                    relation=pair.relation.value,
                    commitment_signed=True,
                    request_id="R-restart",
                )
            )
            counts.append(
                await system.count_bindings(pair.authorizer["certNo"], pair.beneficiary["certNo"])
            )
    assert answers[0] == answers[1]
    assert counts == [1, 1]


# -- retries and the breaker -----------------------------------------------------------------

READS: dict[str, Callable[[ProvinceAdapter, Pair], Awaitable[object]]] = {
    "find_persons": lambda a, c: a.find_persons([c.authorizer["certNo"], c.beneficiary["certNo"]]),
    "relatives": lambda a, c: a.relatives(c.authorizer["certNo"]),
    "bindings_of": lambda a, c: a.bindings_of([c.authorizer["certNo"]]),
    "settlements_of": lambda a, c: a.settlements_of([c.authorizer["certNo"]]),
}
QUICK = {"retry_wait": 0.001, "retry_wait_max": 0.01}


@pytest.mark.parametrize("read", READS)
async def test_a_read_answered_503_is_tried_again_and_succeeds(
    province: Province, pair: Pair, read: str
) -> None:
    assert isinstance(await province.adapter.bind(pair.request()), Binding)  # something to read
    expected = await READS[read](province.adapter, pair)
    adapter = guarded(province, Guard(**QUICK))
    busy = iter([httpx.Response(503, content=b"busy")])
    seen = interpose(province, lambda request: next(busy, None))
    assert await READS[read](adapter, pair) == expected
    assert len(seen) == 2
    assert adapter.breaker_state is BreakerState.CLOSED


async def test_a_read_that_keeps_failing_is_sent_once_and_retried_as_configured(
    province: Province, pair: Pair
) -> None:
    adapter = guarded(province, Guard(retries=2, **QUICK))
    seen = interpose(province, lambda request: httpx.Response(503))
    with pytest.raises(UpstreamUnavailable) as caught:
        await adapter.relatives(pair.authorizer["certNo"])
    assert len(seen) == 3
    assert caught.value.reached is True


WRITES: dict[str, Callable[[ProvinceAdapter, str | None], Awaitable[object]]] = {
    "bind": lambda a, rid: a.bind(
        BindRequest(SOMEONE, OTHER, "王德明", Relation.PARENT, True, request_id=rid)
    ),
    "unbind": lambda a, rid: a.unbind("B00000001", actor=SOMEONE, request_id=rid),
    "respond": lambda a, rid: a.respond("B00000001", actor=OTHER, accept=True, request_id=rid),
    "settle": lambda a, rid: a.settle(
        SettleRequest(
            "H001", "k1", OTHER, MedicalType.OUTPATIENT, Decimal(100), Decimal(40), request_id=rid
        )
    ),
    "reverse": lambda a, rid: a.reverse(
        "S00000001", institution_code="H001", reason="x", request_id=rid
    ),
}
WRITE_CASES = [
    pytest.param(name, op, id=f"{name}-{op}")
    for name in NAMES
    for op in WRITES
    if op != "respond" or ADAPTERS[name].respond is not ProvinceAdapter.respond
]
NEW_REQUEST_ID = re.compile(r"GJ[0-9]{14}[0-9a-f]{10}")


@pytest.mark.parametrize(("province", "write"), WRITE_CASES, indirect=["province"])
async def test_a_write_answered_503_is_sent_once_carrying_its_request_id(
    province: Province, write: str
) -> None:
    adapter = guarded(province, Guard(**QUICK))
    seen = interpose(province, lambda r: httpx.Response(503) if province.writing(r) else None)
    rid = new_request_id()
    with pytest.raises(UpstreamUnavailable) as caught:
        await WRITES[write](adapter, rid)
    assert caught.value.reached is True  # its outcome is unknown: the gateway asks again
    assert province.write_ids(seen) == [rid]

    with pytest.raises(UpstreamUnavailable):  # without one, the adapter makes one
        await WRITES[write](adapter, None)
    made = province.write_ids(seen)[1:]
    assert len(made) == 1
    assert made[0] is not None
    assert NEW_REQUEST_ID.fullmatch(made[0])
    assert made[0] != rid


def henan_fault(retmsg: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><response><head><retcode>9999</retcode>'
        f"<retmsg>{retmsg}</retmsg><seq></seq></head><body/></response>"
    ).encode()


def hebei_fault(err_msg: str) -> bytes:
    answer = {"infcode": -1, "inf_refmsgid": "1", "err_msg": err_msg, "output": {}}
    return json.dumps(answer, ensure_ascii=False).encode()


def jiangsu_fault(code: int, msg: str) -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": None}, ensure_ascii=False).encode()


# Each dialect's faults, answered with HTTP 200: (the dialect, the answer, whether it says
# the request could not be read). Only the adapter speaking the dialect reads them; to the
# others they are answers they cannot read, of unknown outcome.
DIALECT_FAULTS: dict[str, tuple[str, bytes, bool]] = {
    "henan-malformed": ("henan", henan_fault("报文格式错误"), True),
    "henan-invalid-input": ("henan", henan_fault("入参校验失败"), True),
    "henan-request-id-reused": ("henan", henan_fault("流水号重复"), False),
    "hebei-malformed": ("hebei", hebei_fault("报文格式错误"), True),
    "hebei-invalid-input": ("hebei", hebei_fault("入参校验失败"), True),
    "hebei-request-id-reused": ("hebei", hebei_fault("报文ID重复"), False),
    "jiangsu-malformed": ("jiangsu", jiangsu_fault(40000, "请求参数错误"), True),
    "jiangsu-request-id-reused": ("jiangsu", jiangsu_fault(40900, "请求ID已用于其他请求"), False),
}


@pytest.mark.parametrize(("province", "write"), WRITE_CASES, indirect=["province"])
@pytest.mark.parametrize("fault", DIALECT_FAULTS)
async def test_a_write_the_province_says_it_cannot_read_did_not_reach_it(
    province: Province, write: str, fault: str
) -> None:
    """The province's own words for "your request is malformed" (and nothing else) make
    a contract error that did not reach it: the same request would be refused again."""
    dialect, body, unread = DIALECT_FAULTS[fault]
    name = next(n for n, cls in ADAPTERS.items() if type(province.adapter) is cls)
    seen = interpose(
        province,
        lambda r: httpx.Response(200, content=body) if province.writing(r) else None,
    )
    with pytest.raises(UpstreamContractError) as caught:
        await WRITES[write](province.adapter, new_request_id())
    assert len(province.writes(seen)) == 1
    assert caught.value.province == province.code
    assert caught.value.reached is not (unread and name == dialect)


async def test_a_request_the_province_cannot_read_is_refused_and_nothing_is_done(
    province: Province, funded: Pair
) -> None:
    """Text with a control character (which XML cannot carry) or an empty reason: each
    province answers in its own way that it cannot read the request, does nothing, and
    the adapter says the request did not reach it."""
    adapter, me, them = province.adapter, funded.authorizer["certNo"], funded.beneficiary["certNo"]
    with pytest.raises(UpstreamContractError) as caught:
        await adapter.bind(funded.request(name=f"{funded.beneficiary['name']}\x01"))
    assert caught.value.reached is False
    assert await province.system.count_bindings(me, them) == 0

    await bound(province, funded)
    done = await adapter.settle(bill(funded.beneficiary, "300.00", "100.00"))
    assert isinstance(done, Settlement)
    for reason in ("entered\x01twice", ""):
        with pytest.raises(UpstreamContractError) as caught:
            await adapter.reverse(
                done.id, institution_code=HOSPITAL, reason=reason, request_id=new_request_id()
            )
        assert caught.value.reached is False
        assert caught.value.province == province.code
    kept = await province.system.settlement(done.id)
    assert kept is not None
    assert kept["reversed_at"] is None
    assert await balance_now(province, funded.authorizer) == balance(funded.authorizer) - (
        done.mutual_aid_paid
    )
    undone = await adapter.reverse(done.id, institution_code=HOSPITAL, reason="entered twice")
    assert isinstance(undone, Settlement)
    assert undone.reversal_reason == "entered twice"


async def until_half_open(adapter: ProvinceAdapter, within: float = 1.0) -> None:
    deadline = time.monotonic() + within
    while adapter.breaker_state is BreakerState.OPEN:
        assert time.monotonic() < deadline, "the breaker stayed open"
        await asyncio.sleep(0.02)
    assert adapter.breaker_state is BreakerState.HALF_OPEN


async def test_the_breaker_opens_after_repeated_failures_and_a_probe_closes_it(
    province: Province, pair: Pair
) -> None:
    adapter = guarded(province, Guard(breaker_threshold=2, breaker_reset=0.2, retries=0))
    me = [pair.authorizer["certNo"]]
    failing = True
    seen = interpose(province, lambda request: httpx.Response(503) if failing else None)
    assert adapter.breaker_state is BreakerState.CLOSED
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            await adapter.find_persons(me)
    assert adapter.breaker_state is BreakerState.OPEN

    sent = len(seen)
    for held in (lambda: adapter.find_persons(me), lambda: adapter.bind(pair.request())):
        with pytest.raises(CircuitOpen) as caught:
            await held()
        assert caught.value.reached is False
        assert caught.value.province == province.code
    assert len(seen) == sent  # held back: not a single request
    assert province.adapter.breaker_state is BreakerState.CLOSED  # each adapter its own

    await until_half_open(adapter)
    with pytest.raises(UpstreamUnavailable):  # a failed probe opens it again at once
        await adapter.find_persons(me)
    assert adapter.breaker_state is BreakerState.OPEN
    await until_half_open(adapter)
    failing = False
    assert me[0] in await adapter.find_persons(me)
    assert adapter.breaker_state is BreakerState.CLOSED
    assert len(seen) == sent + 2


async def test_contract_errors_neither_open_the_breaker_nor_are_retried(
    province: Province, pair: Pair
) -> None:
    adapter, me = guarded(province, Guard(breaker_threshold=2, **QUICK)), pair.authorizer["certNo"]
    # an undecodable body fails inside the breaker, an unreadable one after it
    faults = [broken_gzip, answer(200, b"<html>oops")] * 2
    seen = interpose(province, lambda request: faults.pop(0)(request) if faults else None)
    for _ in range(4):
        with pytest.raises(UpstreamContractError):
            await adapter.relatives(me)
    assert len(seen) == 4
    assert adapter.breaker_state is BreakerState.CLOSED
    assert await adapter.relatives(me) == await province.adapter.relatives(me)


# -- each sandbox says which of its requests write --------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_sandbox_declares_its_dialect_and_places_every_call(name: str) -> None:
    """The suite tells writes from reads by what each sandbox declares beside its dialect
    (`sandbox.dialect`), never by guessing; a call it cannot place is an error."""
    factory = SANDBOXES[name].load()
    dialect = dialect_of(factory)
    module = sys.modules[factory.__module__]
    handlers = getattr(module, "_HANDLERS", None)
    if handlers is not None:  # one endpoint, many calls: each call is a read or a write
        assert set(module.READ_CALLS) | set(module.WRITE_CALLS) == set(handlers)
        assert not set(module.READ_CALLS) & set(module.WRITE_CALLS)
    nonsense = httpx.Request("PATCH", "http://province.example/nowhere", content=b"<nothing/>")
    with pytest.raises(UnknownCall):
        dialect.is_write(nonsense)


def test_a_sandbox_without_a_dialect_is_refused_loudly() -> None:
    def create_app() -> None:  # a factory in a module that declares no DIALECT
        return None

    with pytest.raises(LookupError, match="declares no DIALECT"):
        dialect_of(create_app)


# -- every refusal a sandbox gives, forced and read back (the adapter's own mapping) ------

# What each reason means in the gateway's words: the refusal an adapter must make of
# its province's answer, whatever the dialect calls it (forced one by one below).
MEANS: dict[str, RefusalCode] = {
    "person_not_found": RefusalCode.PERSON_NOT_FOUND,
    "info_mismatch": RefusalCode.PERSON_INFO_MISMATCH,
    "not_employee": RefusalCode.NOT_EMPLOYEE_INSURED,
    "beneficiary_not_insured": RefusalCode.BENEFICIARY_NOT_INSURED,
    "relation_not_allowed": RefusalCode.RELATION_NOT_ALLOWED,
    "relation_not_verified": RefusalCode.RELATION_NOT_VERIFIED,
    "cross_area": RefusalCode.CROSS_AREA_NOT_ALLOWED,
    "cross_province": RefusalCode.CROSS_PROVINCE_NOT_ALLOWED,
    "quota_not_allowed": RefusalCode.QUOTA_NOT_ALLOWED,
    "quota_above_balance": RefusalCode.QUOTA_ABOVE_BALANCE,
    "quota_insufficient": RefusalCode.QUOTA_INSUFFICIENT,
    "bad_hold_state": RefusalCode.INVALID_HOLD_STATE,
    "not_resident": RefusalCode.NOT_RESIDENT_INSURED,
    "premium_not_declared": RefusalCode.PREMIUM_NOT_DECLARED,
    "premium_paid": RefusalCode.PREMIUM_ALREADY_PAID,
    "premium_not_allowed": RefusalCode.PREMIUM_PAYMENT_NOT_ALLOWED,
    "balance_insufficient": RefusalCode.BALANCE_INSUFFICIENT,
    "limit": RefusalCode.BINDING_LIMIT_REACHED,
    "already_bound": RefusalCode.ALREADY_BOUND,
    "duplicate": RefusalCode.DUPLICATE_BINDING,
    "commitment": RefusalCode.COMMITMENT_REQUIRED,
    "forbidden": RefusalCode.FORBIDDEN,
    "bad_state": RefusalCode.INVALID_BINDING_STATE,
    "patient_not_insured": RefusalCode.PATIENT_NOT_INSURED,
    "bad_amount": RefusalCode.AMOUNT_NOT_POSITIVE,
    "idempotency_conflict": RefusalCode.IDEMPOTENCY_KEY_REUSED,
    "payer_not_bound": RefusalCode.NOT_BOUND,
    "already_reversed": RefusalCode.SETTLEMENT_ALREADY_REVERSED,
    "reversal_window": RefusalCode.REVERSAL_WINDOW_CLOSED,
}


def test_every_reason_a_province_may_give_has_a_meaning() -> None:
    assert set(MEANS) == set(REASONS)


def given_by(operation: Callable[..., Any]) -> list[str]:
    """The reasons the modelled province refuses ``operation`` for (read from its code:
    a reason added there is forced here without anyone listing it)."""
    return sorted(set(re.findall(r'SandboxRefusal\("(\w+)"', inspect.getsource(operation))))


BIND_REASONS = given_by(ProvinceSystem.bind)


def test_the_binding_s_reasons_are_read_from_the_province() -> None:
    assert {"limit", "already_bound", "duplicate", "commitment"} <= set(BIND_REASONS)


@pytest.mark.parametrize("reason", BIND_REASONS)
async def test_each_refusal_of_a_binding_forced_is_read_as_what_it_means(
    province: Province, pair: Pair, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The province refuses a binding for ``reason``, in its own dialect: the adapter
    itself (not the gateway, whose own checks may refuse first) answers the refusal
    that reason means. A wrong mapping (the cap read as ALREADY_BOUND) fails here."""

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SandboxRefusal(reason)

    monkeypatch.setattr(province.system, "bind", refuse)
    answer = await province.adapter.bind(pair.request())
    assert isinstance(answer, Refusal), answer
    assert answer.code is MEANS[reason]


# Every write, with a request that reaches the province (whose operation is then made to
# refuse): the adapter's own mapping of each reason the province gives for it is checked.
REFUSED: dict[str, Callable[[ProvinceAdapter, Pair], Awaitable[object]]] = {
    "unbind": lambda a, p: a.unbind("B00000001", actor=p.authorizer["certNo"]),
    "respond": lambda a, p: a.respond("B00000001", actor=p.beneficiary["certNo"], accept=True),
    "settle": lambda a, p: a.settle(bill(p.authorizer, "100.00", "40.00")),
    "reverse": lambda a, p: a.reverse("S00000001", institution_code=HOSPITAL, reason="x"),
    "pay_premium": lambda a, p: a.pay_premium(
        PremiumRequest(p.beneficiary["certNo"], 2026, p.authorizer["certNo"])
    ),
    "confirm_hold": lambda a, p: a.confirm_hold(
        "H00000001", used=Decimal("10.00"), payment_ref="P1"
    ),
}
FORCED = [
    (operation, reason)
    for operation in REFUSED
    for reason in given_by(getattr(ProvinceSystem, operation))
]


def forced() -> list[Any]:
    """(province, write, reason) as params; a pending binding's answer only where the
    policy has the spouse confirm (elsewhere no binding waits, and none is asked)."""
    return [
        not_its_policy(name, op, reason)
        if op == "respond" and not policy_of(name).spouse_confirmation
        else pytest.param(name, op, reason, id=f"{name}-{op}-{reason}")
        for name in NAMES
        for op, reason in FORCED
    ]


def test_every_write_s_refusals_are_forced() -> None:
    assert {op for op, _ in FORCED} == set(REFUSED)  # each write gives reasons to check


@pytest.mark.parametrize(("province", "operation", "reason"), forced(), indirect=["province"])
async def test_each_refusal_of_every_write_forced_is_read_as_what_it_means(
    province: Province, pair: Pair, operation: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for a binding: the province refuses ``operation`` for ``reason`` in its own
    dialect, and the adapter answers what the reason means."""

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SandboxRefusal(reason)

    monkeypatch.setattr(province.system, operation, refuse)
    answer = await REFUSED[operation](province.adapter, pair)
    assert isinstance(answer, Refusal), answer
    assert answer.code is MEANS[reason]


async def test_a_business_code_the_adapter_does_not_know_is_a_contract_error(
    province: Province, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The province answers with a business code outside its documented list (its
    dialect module's ``ERRORS``): the adapter must not guess a refusal from it."""
    codes = sys.modules[province.dialect.is_write.__module__].ERRORS
    known = {code for code, _ in codes.values()}
    code, message = codes["limit"]
    unknown = next(c for c in (9977, "E977") if type(c) is type(code) and c not in known)
    monkeypatch.setitem(codes, "limit", (unknown, message))

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SandboxRefusal("limit")

    monkeypatch.setattr(province.system, "bind", refuse)
    with pytest.raises(UpstreamContractError):
        await province.adapter.bind(pair.request())
