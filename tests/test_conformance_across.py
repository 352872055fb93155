"""The conformance suite's part for mutual aid across provinces (the 2026 rules), run
against every adapter wired to its own sandbox, like `tests.test_conformance`.

The authorizer's province holds such a binding: a near relative insured in another
province, with a quota (共济额度) that leaves the authorizer's balance when granted,
comes back when the binding ends, and either of the two may end it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import respx

from adapters.base import (
    Binding,
    BindingStatus,
    BindRequest,
    Quota,
    Refusal,
    RefusalCode,
    Relation,
    new_request_id,
)
from tests.test_conformance import (
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
    app = factory(policy_date=day - dt.timedelta(days=1))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(base_url=BASE_URL, timeout=2.0, verify=TLS) as client,
        respx.mock(base_url=BASE_URL, assert_all_called=False) as router,
    ):
        route = router.route(name="sandbox").mock(side_effect=respx.ASGIHandler(app))
        system = app.state.system
        adapter = adapter_class(client, policy_date=day - dt.timedelta(days=1))
        yield Province(adapter, system.rules, router, route, system)


async def test_before_the_provinces_date_it_refuses_to_bind_across_provinces(
    before_its_date: Province,
) -> None:
    place = before_its_date
    assert not place.adapter.policy().cross_province
    refused = await place.adapter.bind(ask(across(place.code)))
    assert refused == Refusal(RefusalCode.CROSS_PROVINCE_NOT_ALLOWED)
