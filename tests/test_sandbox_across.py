"""The modelled provinces' own rules for the 2024 and 2026 parts, refusal by refusal, on
the engine itself (the gateway refuses most of these first, so that end-to-end tests
never reach them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sandbox.engine import ProvinceSystem, SandboxRefusal
from sandbox.hebei import SEED, VERSIONS
from tests.conftest import person


@pytest.fixture
async def hebei() -> AsyncIterator[ProvinceSystem]:
    system = await ProvinceSystem.open(VERSIONS)
    try:
        yield system
    finally:
        await system.close()


def across(**changes: Any) -> dict[str, Any]:
    son, mother = person("hb_liu_tao"), person("js_zhang_shuzhen")
    given = {
        "authorizer": son["certNo"],
        "beneficiary": mother["certNo"],
        "beneficiary_name": mother["name"],
        "relation": "PARENT",
        "commitment_signed": True,
        "quota": "100.00",
        "beneficiary_province": "32",
    }
    return given | changes


async def refused(call: Any, **kwargs: Any) -> tuple[str, str | None]:
    with pytest.raises(SandboxRefusal) as caught:
        await call(**kwargs)
    return caught.value.reason, caught.value.field


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"authorizer": "110101199001010014"}, ("person_not_found", None)),
        ({"quota": None}, ("bad_amount", "quota")),
        ({"quota": "0.00"}, ("bad_amount", "quota")),
        ({"quota": "1.001"}, ("bad_amount", "quota")),
        ({"beneficiary": "110101199001010014"}, ("person_not_found", "beneficiaryCertNo")),
        ({"beneficiary_name": "张淑"}, ("info_mismatch", "beneficiaryName")),
        ({"relation": "PARENT_IN_LAW"}, ("relation_not_allowed", "relation")),
        ({"quota": "2500.01"}, ("quota_above_balance", "quota")),
    ],
)
async def test_hebei_refuses_a_binding_across_provinces_it_should(
    hebei: ProvinceSystem, changes: dict[str, Any], reason: tuple[str, str | None]
) -> None:
    assert await refused(hebei.bind, **across(**changes)) == reason


async def test_a_relative_of_its_own_named_as_elsewhere_takes_no_quota(
    hebei: ProvinceSystem,
) -> None:
    sister = person("hb_liu_yang")
    given = across(beneficiary=sister["certNo"], beneficiary_name=sister["name"])
    assert await refused(hebei.bind, **given) == ("quota_not_allowed", "quota")
    inside = across(
        beneficiary=sister["certNo"],
        beneficiary_name=sister["name"],
        relation="SIBLING",
        beneficiary_province=None,
    )
    assert await refused(hebei.bind, **inside) == ("quota_not_allowed", "quota")


async def test_before_its_2026_rules_hebei_refuses_to_bind_across() -> None:
    system = await ProvinceSystem.open(VERSIONS, policy_date=dt.date(2025, 6, 1))
    try:
        assert await refused(system.bind, **across()) == ("cross_province", "beneficiaryCertNo")
    finally:
        await system.close()


async def test_a_premium_from_an_account_needs_the_rules_and_the_money() -> None:
    father, son = person("hb_wang_deming"), person("hb_liu_yang")
    seed = await ProvinceSystem.open(VERSIONS, policy_date=dt.date(2024, 6, 1))
    try:
        assert seed.rules is SEED
        given = {"beneficiary": father["certNo"], "year": 2026, "payer": son["certNo"]}
        assert await refused(seed.pay_premium, **given) == ("premium_not_allowed", None)
    finally:
        await seed.close()
    today = await ProvinceSystem.open(VERSIONS)
    try:
        me, yinuo = person("hb_liu_yang"), person("hb_liu_yinuo")  # his account is empty
        bound = await today.bind(
            authorizer=me["certNo"],
            beneficiary=yinuo["certNo"],
            beneficiary_name=yinuo["name"],
            relation="CHILD",
            commitment_signed=True,
        )
        assert bound["status"] == "ACTIVE"
        given = {"beneficiary": yinuo["certNo"], "year": 2026, "payer": me["certNo"]}
        assert await refused(today.pay_premium, **given) == ("balance_insufficient", None)
    finally:
        await today.close()


async def test_a_registration_moves_only_to_another_province_and_only_once(
    hebei: ProvinceSystem,
) -> None:
    me = person("hb_wang_lei")["certNo"]
    for wrong in ("13", "1", "ab"):
        with pytest.raises(ValueError, match="not another province"):
            await hebei.move_registration(me, to_province=wrong)
    moved = await hebei.move_registration(me, to_province="32")
    assert (moved["kind"], moved["to_province"]) == ("MOVED", "32")
    with pytest.raises(LookupError):
        await hebei.move_registration(me, to_province=None)
    with pytest.raises(LookupError):
        await hebei.move_registration(person("js_zhang_shuzhen")["certNo"], to_province=None)
