"""The conformance suite's part for mutual aid across provinces (the 2026 rules), run
against every adapter wired to its own sandbox, like `conformance.suite`.

The authorizer's province holds such a binding: a near relative insured in another
province, with a quota (共济额度) that leaves the authorizer's balance when granted,
comes back when the binding ends, and either of the two may end it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import httpx
import pytest
import respx

from adapters.base import (
    Binding,
    BindingStatus,
    BindRequest,
    ChangeKind,
    Funding,
    HoldStatus,
    InsuranceStatus,
    MedicalType,
    Premium,
    PremiumPayment,
    PremiumRequest,
    Quota,
    QuotaHold,
    Refusal,
    RefusalCode,
    Relation,
    Settlement,
    SettleRequest,
    new_request_id,
)
from conformance.people import ROSTER
from conformance.suite import (
    ADAPTERS,
    BASE_URL,
    CIVIL,
    NAMES,
    PEOPLE,
    SANDBOXES,
    TLS,
    Pair,
    Province,
    Row,
    family,
    province,  # noqa: F401 (a fixture)
)
from sandbox.dialect import dialect_of

QUOTA = Decimal("300.00")


def across(code: str) -> Pair:
    """An employee insured in province ``code`` with money, and a near relative of theirs
    insured in another connected province, from the roster."""
    provinces = {a.code for a in ADAPTERS.values()}
    near = {Relation.PARENT, Relation.CHILD, Relation.SIBLING, Relation.GRANDPARENT}
    found = [
        Pair(me, other, CIVIL[me["certNo"], other["certNo"]])
        for me in PEOPLE.values()
        if me["insuredArea"].startswith(code)
        and me["insuranceType"] == "EMPLOYEE"
        and Decimal(me["accountBalance"]) > QUOTA
        for other in PEOPLE.values()
        if (me["certNo"], other["certNo"]) in CIVIL
        and other["insuredArea"][:2] in provinces - {code}
        and other["insuranceStatus"] == "ACTIVE"
        and CIVIL[me["certNo"], other["certNo"]] in near
    ]
    assert found, f"the roster has no relative across provinces for an employee of {code}"
    return found[0]


def ask(pair: Pair, quota: Decimal | None = QUOTA, *, request_id: str | None = None) -> BindRequest:
    return BindRequest(
        pair.authorizer["certNo"],
        pair.beneficiary["certNo"],
        pair.beneficiary["name"],
        pair.relation,
        commitment_signed=True,
        request_id=request_id,
        beneficiary_province=pair.beneficiary["insuredArea"][:2],
        quota=quota,
    )


@pytest.fixture
def relative(province: Province) -> Pair:  # noqa: F811
    return across(province.code)


async def balance(place: Province, who: Row) -> Decimal | None:
    found = await place.adapter.find_persons([who["certNo"]])
    return found[who["certNo"]].balance


async def test_a_relative_in_another_province_is_bound_with_a_quota_that_leaves_the_balance(
    province: Province,  # noqa: F811
    relative: Pair,
) -> None:
    adapter, me, them = province.adapter, relative.authorizer, relative.beneficiary
    before = await balance(province, me)
    assert before is not None
    bound = await adapter.bind(ask(relative))
    assert isinstance(bound, Binding)
    assert bound.status is BindingStatus.ACTIVE
    assert (bound.authorizer.cert_no, bound.beneficiary.cert_no) == (me["certNo"], them["certNo"])
    assert bound.beneficiary.name == them["name"]
    assert bound.relation is relative.relation
    assert bound.beneficiary_province == them["insuredArea"][:2]
    assert bound.quota == Quota(QUOTA, QUOTA)
    assert bound.across_provinces
    assert await balance(province, me) == before - QUOTA
    for side in (me, them):  # listed from either side, as granted
        assert await adapter.bindings_of([side["certNo"]]) == [bound]


async def test_a_binding_inside_the_province_has_no_quota(province: Province) -> None:  # noqa: F811
    pair = next(
        c
        for c in family(province.code, province.adapter.policy())
        if c.relation is not Relation.SPOUSE
    )
    bound = await province.adapter.bind(pair.request())
    assert isinstance(bound, Binding)
    assert (bound.quota, bound.beneficiary_province) == (None, None)
    refused = await province.adapter.bind(
        BindRequest(
            pair.authorizer["certNo"],
            pair.beneficiary["certNo"],
            pair.beneficiary["name"],
            pair.relation,
            commitment_signed=True,
            quota=QUOTA,
        )
    )
    assert refused == Refusal(RefusalCode.QUOTA_NOT_ALLOWED)


async def test_a_quota_above_the_balance_is_refused_and_nothing_moves(
    province: Province,  # noqa: F811
    relative: Pair,
) -> None:
    before = await balance(province, relative.authorizer)
    assert before is not None
    refused = await province.adapter.bind(ask(relative, before + Decimal("0.01")))
    assert refused == Refusal(RefusalCode.QUOTA_ABOVE_BALANCE)
    assert await balance(province, relative.authorizer) == before
    assert await province.adapter.bindings_of([relative.authorizer["certNo"]]) == []
    everything = await province.adapter.bind(ask(relative, before))  # all of it: allowed
    assert isinstance(everything, Binding)
    assert await balance(province, relative.authorizer) == Decimal("0.00")


async def test_a_quota_of_nothing_is_refused(province: Province, relative: Pair) -> None:  # noqa: F811
    refused = await province.adapter.bind(ask(relative, Decimal("0.00")))
    assert refused == Refusal(RefusalCode.AMOUNT_NOT_POSITIVE)


@pytest.mark.parametrize("ender", ["authorizer", "beneficiary"])
async def test_either_side_ends_it_and_what_is_left_returns_to_the_account(
    province: Province,  # noqa: F811
    relative: Pair,
    ender: str,
) -> None:
    adapter, me = province.adapter, relative.authorizer
    before = await balance(province, me)
    bound = await adapter.bind(ask(relative))
    assert isinstance(bound, Binding)
    actor = relative.authorizer if ender == "authorizer" else relative.beneficiary
    ended = await adapter.unbind(bound.id, actor=actor["certNo"])
    assert isinstance(ended, Binding)
    assert ended.status is BindingStatus.UNBOUND
    assert ended.quota == Quota(QUOTA, Decimal("0.00"))
    assert await balance(province, me) == before
    again = await adapter.unbind(bound.id, actor=actor["certNo"])
    assert again == Refusal(RefusalCode.INVALID_BINDING_STATE)
    assert await balance(province, me) == before  # returned once


async def test_nobody_else_ends_it(province: Province, relative: Pair) -> None:  # noqa: F811
    bound = await province.adapter.bind(ask(relative))
    assert isinstance(bound, Binding)
    outsider = next(
        p
        for p in PEOPLE.values()
        if p["certNo"] not in (relative.authorizer["certNo"], relative.beneficiary["certNo"])
    )
    refused = await province.adapter.unbind(bound.id, actor=outsider["certNo"])
    assert refused == Refusal(RefusalCode.FORBIDDEN)


async def test_a_bind_with_a_quota_sent_again_takes_the_quota_once(
    province: Province,  # noqa: F811
    relative: Pair,
) -> None:
    before = await balance(province, relative.authorizer)
    assert before is not None
    rid = new_request_id()
    first = await province.adapter.bind(ask(relative, request_id=rid))
    assert isinstance(first, Binding)
    assert await province.adapter.bind(ask(relative, request_id=rid)) == first
    assert await balance(province, relative.authorizer) == before - QUOTA
    assert (
        await province.system.count_bindings(
            relative.authorizer["certNo"], relative.beneficiary["certNo"]
        )
        == 1
    )


@pytest.fixture(params=NAMES)
async def before_its_date(request: pytest.FixtureRequest) -> AsyncIterator[Province]:
    """A province's adapter and sandbox on the day before its cross-province version."""
    adapter_class = ADAPTERS[request.param]
    day = next(p.effective_from for p in adapter_class.policies if p.cross_province)
    factory = SANDBOXES[request.param].load()
    app = factory(roster=ROSTER, policy_date=day - dt.timedelta(days=1))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(base_url=BASE_URL, timeout=2.0, verify=TLS) as client,
        respx.mock(base_url=BASE_URL, assert_all_called=False) as router,
    ):
        route = router.route(name="sandbox").mock(side_effect=respx.ASGIHandler(app))
        system = app.state.system
        adapter = adapter_class(client, policy_date=day - dt.timedelta(days=1))
        yield Province(adapter, system.rules, router, route, system, dialect_of(factory))


async def test_before_the_provinces_date_it_refuses_to_bind_across_provinces(
    before_its_date: Province,
) -> None:
    place = before_its_date
    assert not place.adapter.policy().cross_province
    refused = await place.adapter.bind(ask(across(place.code)))
    assert refused == Refusal(RefusalCode.CROSS_PROVINCE_NOT_ALLOWED)


# -- holds on a quota: the authorizer's province -----------------------------------------

HELD, ZERO = Decimal("100.00"), Decimal("0.00")


async def granted(province: Province, relative: Pair) -> Binding:  # noqa: F811
    bound = await province.adapter.bind(ask(relative))
    assert isinstance(bound, Binding)
    return bound


async def remaining(province: Province, relative: Pair, binding: Binding) -> Decimal:  # noqa: F811
    listed = await province.adapter.bindings_of([relative.authorizer["certNo"]])
    [found] = [b for b in listed if b.id == binding.id]
    assert found.quota is not None
    return found.quota.remaining


async def test_a_hold_takes_from_the_quota_and_a_confirmation_gives_back_what_was_not_used(
    province: Province,  # noqa: F811
    relative: Pair,
) -> None:
    adapter = province.adapter
    binding = await granted(province, relative)
    before = await balance(province, relative.authorizer)
    held = await adapter.hold_quota(binding.id, amount=HELD, reference="GJ-T1")
    assert isinstance(held, QuotaHold)
    assert (held.status, held.amount, held.used) == (HoldStatus.HELD, HELD, ZERO)
    assert (held.binding_id, held.reference, held.payment_ref) == (binding.id, "GJ-T1", None)
    assert held.authorizer.cert_no == relative.authorizer["certNo"]
    assert held.beneficiary.cert_no == relative.beneficiary["certNo"]
    assert held.beneficiary_province == relative.beneficiary["insuredArea"][:2]
    assert await remaining(province, relative, binding) == QUOTA - HELD

    paid = await adapter.confirm_hold(held.id, used=Decimal("60.00"), payment_ref="32:S1")
    assert isinstance(paid, QuotaHold)
    assert (paid.status, paid.used, paid.payment_ref) == (
        HoldStatus.CONFIRMED,
        Decimal("60.00"),
        "32:S1",
    )
    assert await remaining(province, relative, binding) == QUOTA - Decimal("60.00")
    assert await balance(province, relative.authorizer) == before  # the quota left it already
    again = await adapter.confirm_hold(held.id, used=Decimal("60.00"), payment_ref="32:S1")
    assert again == Refusal(RefusalCode.INVALID_HOLD_STATE)
    assert await adapter.release_hold(held.id) == Refusal(RefusalCode.INVALID_HOLD_STATE)
    assert await adapter.holds_of([relative.beneficiary["certNo"]]) == [paid]


async def test_a_release_gives_it_all_back_and_a_refund_what_was_used_once(
    province: Province,  # noqa: F811
    relative: Pair,
) -> None:
    adapter = province.adapter
    binding = await granted(province, relative)
    first = await adapter.hold_quota(binding.id, amount=HELD, reference="GJ-T1")
    assert isinstance(first, QuotaHold)
    released = await adapter.release_hold(first.id)
    assert isinstance(released, QuotaHold)
    assert released.status is HoldStatus.RELEASED
    assert await remaining(province, relative, binding) == QUOTA
    assert await adapter.refund_hold(first.id) == Refusal(RefusalCode.INVALID_HOLD_STATE)

    second = await adapter.hold_quota(binding.id, amount=HELD, reference="GJ-T2")
    assert isinstance(second, QuotaHold)
    assert isinstance(await adapter.confirm_hold(second.id, used=HELD, payment_ref="S2"), QuotaHold)
    assert await remaining(province, relative, binding) == QUOTA - HELD
    refunded = await adapter.refund_hold(second.id)
    assert isinstance(refunded, QuotaHold)
    assert refunded.status is HoldStatus.REFUNDED
    assert await remaining(province, relative, binding) == QUOTA
    assert await adapter.refund_hold(second.id) == Refusal(RefusalCode.INVALID_HOLD_STATE)
    assert await remaining(province, relative, binding) == QUOTA  # once
    listed = await adapter.holds_of([relative.authorizer["certNo"]])
    assert [(h.id, h.status) for h in listed] == [
        (first.id, HoldStatus.RELEASED),
        (second.id, HoldStatus.REFUNDED),
    ]


async def test_no_hold_beyond_what_the_quota_has_left(province: Province, relative: Pair) -> None:  # noqa: F811
    binding = await granted(province, relative)
    refused = await province.adapter.hold_quota(
        binding.id, amount=QUOTA + Decimal("0.01"), reference="GJ-T1"
    )
    assert refused == Refusal(RefusalCode.QUOTA_INSUFFICIENT)
    whole = await province.adapter.hold_quota(binding.id, amount=QUOTA, reference="GJ-T2")
    assert isinstance(whole, QuotaHold)
    more = await province.adapter.hold_quota(binding.id, amount=Decimal("0.01"), reference="T3")
    assert more == Refusal(RefusalCode.QUOTA_INSUFFICIENT)


async def test_a_hold_sent_again_holds_once(province: Province, relative: Pair) -> None:  # noqa: F811
    binding = await granted(province, relative)
    rid = new_request_id()
    first = await province.adapter.hold_quota(
        binding.id, amount=HELD, reference="GJ-T1", request_id=rid
    )
    again = await province.adapter.hold_quota(
        binding.id, amount=HELD, reference="GJ-T1", request_id=rid
    )
    assert isinstance(first, QuotaHold)
    assert again == first
    assert await remaining(province, relative, binding) == QUOTA - HELD


async def test_money_held_when_the_binding_ends_goes_back_to_the_account(
    province: Province,  # noqa: F811
    relative: Pair,
) -> None:
    adapter, me = province.adapter, relative.authorizer
    before = await balance(province, me)
    assert before is not None
    binding = await granted(province, relative)
    held = await adapter.hold_quota(binding.id, amount=HELD, reference="GJ-T1")
    assert isinstance(held, QuotaHold)
    ended = await adapter.unbind(binding.id, actor=me["certNo"])
    assert isinstance(ended, Binding)
    assert await balance(province, me) == before - HELD  # the rest came back; the hold stays
    assert isinstance(await adapter.hold_quota(binding.id, amount=HELD, reference="T2"), Refusal)
    assert isinstance(await adapter.release_hold(held.id), QuotaHold)
    assert await balance(province, me) == before


async def test_only_a_binding_across_provinces_has_a_quota_to_hold(province: Province) -> None:  # noqa: F811
    pair = next(
        c
        for c in family(province.code, province.adapter.policy())
        if c.relation is not Relation.SPOUSE
    )
    bound = await province.adapter.bind(pair.request())
    assert isinstance(bound, Binding)
    refused = await province.adapter.hold_quota(bound.id, amount=HELD, reference="GJ-T1")
    assert refused == Refusal(RefusalCode.FORBIDDEN)


# -- a bill paid from a quota held in another province: the relative's province ------------


def resident(code: str) -> Row:
    """A patient insured here without a personal account."""
    return next(
        p
        for p in PEOPLE.values()
        if p["insuredArea"].startswith(code)
        and p["insuranceStatus"] == "ACTIVE"
        and p["accountBalance"] is None
    )


def elsewhere(code: str) -> Row:
    """An employee of another connected province: the payer whose quota is held there."""
    provinces = {a.code for a in ADAPTERS.values()} - {code}
    return next(
        p
        for p in PEOPLE.values()
        if p["insuredArea"][:2] in provinces and p["insuranceType"] == "EMPLOYEE"
    )


def funded_bill(patient: Row, payer: Row, total: str, fund: str, held: str) -> SettleRequest:
    return SettleRequest(
        institution_code="H00000001",
        idempotency_key=f"across-{patient['key']}-{total}",
        patient_cert_no=patient["certNo"],
        medical_type=MedicalType.OUTPATIENT,
        total=Decimal(total),
        fund_paid=Decimal(fund),
        funding=Funding(payer["insuredArea"][:2], payer["certNo"], Decimal(held), "XXH00000007"),
    )


async def test_a_bill_is_paid_from_a_quota_held_in_another_province_and_nothing_moves_here(
    province: Province,  # noqa: F811
) -> None:
    patient, payer = resident(province.code), elsewhere(province.code)
    here = [p for p in PEOPLE.values() if p["insuredArea"].startswith(province.code)]
    balances = await province.adapter.find_persons([p["certNo"] for p in here])
    settled = await province.adapter.settle(funded_bill(patient, payer, "250.00", "100.00", "100"))
    assert isinstance(settled, Settlement)
    assert settled.self_pay == Decimal("150.00")
    assert (settled.own_account_paid, settled.mutual_aid_paid, settled.cash_due) == (
        ZERO,
        Decimal("100.00"),
        Decimal("50.00"),
    )
    assert settled.mutual_aid_payer is not None
    assert settled.mutual_aid_payer.cert_no == payer["certNo"]
    assert (settled.mutual_aid_province, settled.funding_hold) == (
        payer["insuredArea"][:2],
        "XXH00000007",
    )
    assert settled.payer_balance_after is None  # an account elsewhere
    assert await province.adapter.find_persons([p["certNo"] for p in here]) == balances
    listed = await province.adapter.settlements_of([patient["certNo"]])
    assert [s.id for s in listed] == [settled.id]
    assert listed[0].mutual_aid_province == payer["insuredArea"][:2]


async def test_no_more_is_paid_from_a_hold_than_the_bill_leaves(province: Province) -> None:  # noqa: F811
    patient, payer = resident(province.code), elsewhere(province.code)
    settled = await province.adapter.settle(funded_bill(patient, payer, "130.00", "100.00", "500"))
    assert isinstance(settled, Settlement)
    assert (settled.mutual_aid_paid, settled.cash_due) == (Decimal("30.00"), ZERO)


async def test_a_reversal_of_a_bill_paid_from_a_quota_leaves_that_to_the_quotas_province(
    province: Province,  # noqa: F811
) -> None:
    patient, payer = resident(province.code), elsewhere(province.code)
    settled = await province.adapter.settle(funded_bill(patient, payer, "250.00", "100.00", "100"))
    assert isinstance(settled, Settlement)
    undone = await province.adapter.reverse(
        settled.id, institution_code="H00000001", reason="entered twice"
    )
    assert isinstance(undone, Settlement)
    assert undone.reversed_at is not None
    assert (undone.mutual_aid_province, undone.funding_hold) == (
        payer["insuredArea"][:2],
        "XXH00000007",
    )


# -- registrations: the change feed ------------------------------------------------------


async def test_the_change_feed_says_whose_registration_moved_out_or_ended(
    province: Province,  # noqa: F811
) -> None:
    adapter = province.adapter
    assert await adapter.registration_changes(0) == []
    here = [p for p in PEOPLE.values() if p["insuredArea"].startswith(province.code)]
    leaving, ending = here[0], here[1]
    other = next(a.code for a in ADAPTERS.values() if a.code != province.code)
    back_office = "/backoffice/registrations"
    moved = await adapter.client.post(
        back_office, json={"certNo": leaving["certNo"], "toProvince": other}
    )
    assert moved.status_code == 200
    ended = await adapter.client.post(
        back_office, json={"certNo": ending["certNo"], "toProvince": None}
    )
    assert ended.status_code == 200
    again = await adapter.client.post(back_office, json={"certNo": ending["certNo"]})
    assert again.status_code == 404  # not insured here any more

    first, second = await adapter.registration_changes(0)
    assert (first.cert_no, first.kind, first.to_province) == (
        leaving["certNo"],
        ChangeKind.MOVED,
        other,
    )
    assert (second.cert_no, second.kind, second.to_province) == (
        ending["certNo"],
        ChangeKind.ENDED,
        None,
    )
    assert first.seq < second.seq
    assert first.at.tzinfo is not None
    assert await adapter.registration_changes(first.seq) == [second]
    assert await adapter.registration_changes(second.seq) == []
    found = await adapter.find_persons([leaving["certNo"]])
    assert found[leaving["certNo"]].insurance_status is InsuranceStatus.TERMINATED


# -- resident premiums (城乡居民医保个人缴费) ----------------------------------------------

YEAR = 2026


def premium_pair(province: Province) -> Pair:  # noqa: F811
    """An authorizer with enough money, and a resident relative they may bind here."""
    declared = Decimal(dict(province.rules.premiums)[YEAR])
    found = [
        c
        for c in family(province.code, province.adapter.policy())
        if c.beneficiary["insuranceType"] == "RESIDENT"
        and Decimal(c.authorizer["accountBalance"] or "0") >= declared
        and c.relation is not Relation.SPOUSE
    ]
    assert found, f"the roster has no one to pay a premium for in {province.code}"
    return found[0]


async def test_a_residents_premium_is_declared_per_year(province: Province) -> None:  # noqa: F811
    adapter = province.adapter
    pair = premium_pair(province)
    found = await adapter.premium_of(pair.beneficiary["certNo"], YEAR)
    assert found == Premium(
        pair.beneficiary["certNo"], YEAR, Decimal(dict(province.rules.premiums)[YEAR]), None
    )
    later = await adapter.premium_of(pair.beneficiary["certNo"], 2099)
    assert isinstance(later, Premium)
    assert later.amount is None  # not declared yet
    employee = await adapter.premium_of(pair.authorizer["certNo"], YEAR)
    assert employee == Refusal(RefusalCode.NOT_RESIDENT_INSURED)
    stranger = next(p for p in PEOPLE.values() if not p["insuredArea"].startswith(province.code))
    assert await adapter.premium_of(stranger["certNo"], YEAR) == Refusal(
        RefusalCode.PERSON_NOT_FOUND
    )


async def test_a_bound_authorizer_pays_a_residents_premium_once(province: Province) -> None:  # noqa: F811
    adapter, pair = province.adapter, premium_pair(province)
    declared = Decimal(dict(province.rules.premiums)[YEAR])
    ask_premium = PremiumRequest(pair.beneficiary["certNo"], YEAR, pair.authorizer["certNo"])
    assert await adapter.pay_premium(ask_premium) == Refusal(RefusalCode.NOT_BOUND)
    assert isinstance(await adapter.bind(pair.request()), Binding)
    before = await balance(province, pair.authorizer)
    assert before is not None
    undeclared = PremiumRequest(pair.beneficiary["certNo"], 2099, pair.authorizer["certNo"])
    assert await adapter.pay_premium(undeclared) == Refusal(RefusalCode.PREMIUM_NOT_DECLARED)
    rid = new_request_id()
    paid = await adapter.pay_premium(replace(ask_premium, request_id=rid))
    assert isinstance(paid, PremiumPayment)
    assert (paid.year, paid.amount, paid.payer.cert_no, paid.payer_province) == (
        YEAR,
        declared,
        pair.authorizer["certNo"],
        None,
    )
    assert paid.beneficiary.cert_no == pair.beneficiary["certNo"]
    assert await adapter.pay_premium(replace(ask_premium, request_id=rid)) == paid
    assert await balance(province, pair.authorizer) == before - declared  # once
    again = await adapter.pay_premium(ask_premium)
    assert again == Refusal(RefusalCode.PREMIUM_ALREADY_PAID)
    found = await adapter.premium_of(pair.beneficiary["certNo"], YEAR)
    assert isinstance(found, Premium)
    assert found.payment == paid


async def test_a_premium_paid_from_a_quota_held_in_another_province(province: Province) -> None:  # noqa: F811
    adapter, resident_here = province.adapter, resident(province.code)
    payer = elsewhere(province.code)
    declared = Decimal(dict(province.rules.premiums)[YEAR])
    funding = Funding(payer["insuredArea"][:2], payer["certNo"], declared, "XXH00000009")
    request = PremiumRequest(resident_here["certNo"], YEAR, payer["certNo"], funding=funding)
    paid = await adapter.pay_premium(request)
    assert isinstance(paid, PremiumPayment)
    assert (paid.amount, paid.payer_province, paid.funding_hold) == (
        declared,
        payer["insuredArea"][:2],
        "XXH00000009",
    )
    short = Funding(funding.province, funding.payer, declared - Decimal("0.01"), "XXH2")
    other = PremiumRequest(resident_here["certNo"], 2027, payer["certNo"], funding=short)
    assert await adapter.pay_premium(other) == Refusal(RefusalCode.AMOUNT_NOT_POSITIVE)
