"""Resident premiums (城乡居民医保个人缴费) paid for a bound relative, end to end with roster
people: from the account inside one province (2024 rules), across provinces from the
quota (2026 rules); once per year, as the relative's province records it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from gateway.ops.config import Settings
from sandbox.engine import SandboxRefusal
from tests.conftest import NOWHERE, GraphQL, Sandboxes, gateway, person
from tests.test_across_settlement import MOTHER, SON, World, world  # noqa: F401

PAY = """mutation($i: PayResidentPremiumInput!) { payResidentPremium(input: $i) {
  payment { year amount payer { name } province { code } payerProvince { code } }
  errors { code field } status idempotencyKey } }"""
YEAR = 2026


async def pay(gql: GraphQL, who: str, relative: str, key: str, year: int = YEAR) -> dict[str, Any]:
    given = {"beneficiaryCertNo": person(relative)["certNo"], "year": year, "idempotencyKey": key}
    result = await gql(PAY, {"i": given}, as_=who)
    assert "errors" not in result, result
    payload: dict[str, Any] = result["data"]["payResidentPremium"]
    return payload


def codes(payload: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(e["code"], e["field"]) for e in payload["errors"]]


async def test_an_authorizer_pays_a_parents_premium_from_the_account_once(
    world: World,  # noqa: F811
) -> None:
    """王建国 (Hebei, 3200.00) pays the 2026 premium of his father 王德明 (Baoding)."""
    await world.bind("hb_wang_jianguo", "hb_wang_deming", "PARENT", None)
    paid = await pay(world.gql, "hb_wang_jianguo", "hb_wang_deming", "prem-1")
    assert paid["errors"] == []
    assert paid["payment"] == {
        "year": YEAR,
        "amount": "400.00",
        "payer": {"name": "王建国"},
        "province": {"code": "13"},
        "payerProvince": {"code": "13"},
    }
    assert await world.balance("hebei", "hb_wang_jianguo") == Decimal("2800.00")
    again = await pay(world.gql, "hb_wang_jianguo", "hb_wang_deming", "prem-1")  # a retry
    assert again["payment"] == paid["payment"]
    second = await pay(world.gql, "hb_wang_jianguo", "hb_wang_deming", "prem-2")
    assert codes(second) == [("PREMIUM_ALREADY_PAID", "year")]
    assert await world.balance("hebei", "hb_wang_jianguo") == Decimal("2800.00")  # once


async def test_only_a_bound_authorizer_pays_and_only_a_residents_premium(
    world: World,  # noqa: F811
) -> None:
    stranger = await pay(world.gql, "hb_liu_tao", "hb_wang_deming", "prem-1")
    assert codes(stranger) == [("NOT_BOUND", "beneficiaryCertNo")]
    await world.bind("hb_wang_jianguo", "hb_wang_lei", "CHILD", None)  # an employee
    employee = await pay(world.gql, "hb_wang_jianguo", "hb_wang_lei", "prem-2")
    assert codes(employee) == [("NOT_RESIDENT_INSURED", "beneficiaryCertNo")]
    await world.bind("hb_wang_jianguo", "hb_wang_deming", "PARENT", None)
    undeclared = await pay(world.gql, "hb_wang_jianguo", "hb_wang_deming", "prem-3", year=2031)
    assert codes(undeclared) == [("PREMIUM_NOT_DECLARED", "year")]


async def test_before_its_rules_allow_it_the_gateway_refuses_itself() -> None:
    """The provinces' systems run on today's rules; the gateway, on a date before
    Hebei's near-relatives version (which brought premium payment), refuses alone."""
    async with Sandboxes() as boxes:
        await boxes.start()
        settings = Settings(data_dir=None, policy_date=dt.date(2024, 6, 1))
        async with gateway(dict(boxes.transports), settings) as gql:
            bound = await gql.bind("hb_wang_jianguo", "hb_wang_deming", "PARENT")
            assert bound["errors"] == []
            refused = await pay(gql, "hb_wang_jianguo", "hb_wang_deming", "prem-1")
        assert codes(refused) == [("PREMIUM_PAYMENT_NOT_ALLOWED", None)]
        system = boxes.transports["hebei"].inner.app.state.system  # type: ignore[attr-defined]
        found = await system.premium(person("hb_wang_deming")["certNo"], YEAR)
        assert found["payment"] is None  # Hebei itself would have taken it


async def test_a_premium_across_provinces_is_paid_from_the_quota_once(
    world: World,  # noqa: F811
) -> None:
    """刘涛 (Hebei) pays his mother's 2026 premium in Jiangsu (440.00) from her quota."""
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    paid = await pay(world.gql, SON, MOTHER, "prem-1")
    assert paid["errors"] == []
    assert paid["payment"]["amount"] == "440.00"
    assert (paid["payment"]["province"], paid["payment"]["payerProvince"]) == (
        {"code": "32"},
        {"code": "13"},
    )
    [hold] = await world.holds("hebei", SON)
    assert (hold["status"], hold["used"]) == ("CONFIRMED", "440.00")
    assert await world.quota_left("hebei", SON) == Decimal("560.00")
    found = await world.system("jiangsu").premium(person(MOTHER)["certNo"], YEAR)
    assert found["payment"]["payer_province"] == "13"
    assert found["payment"]["funding_hold"] == hold["id"]

    second = await pay(world.gql, SON, MOTHER, "prem-2")
    assert codes(second) == [("PREMIUM_ALREADY_PAID", "year")]
    assert len(await world.holds("hebei", SON)) == 1  # nothing held for it


async def test_a_quota_smaller_than_the_premium_does_not_pay_it(world: World) -> None:  # noqa: F811
    await world.bind(SON, MOTHER, "PARENT", "300.00")
    short = await pay(world.gql, SON, MOTHER, "prem-1")
    assert codes(short) == [("BALANCE_INSUFFICIENT", None)]
    assert await world.holds("hebei", SON) == []


async def test_a_premium_key_is_checked_and_a_key_used_again_for_another_is_refused(
    world: World,  # noqa: F811
) -> None:
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    bad = await pay(world.gql, SON, MOTHER, "with spaces")
    assert codes(bad) == [("INVALID_IDEMPOTENCY_KEY", "idempotencyKey")]
    given = {"beneficiaryCertNo": "123", "year": YEAR, "idempotencyKey": "prem-0"}
    wrong = (await world.gql(PAY, {"i": given}, as_=SON))["data"]["payResidentPremium"]
    assert codes(wrong) == [("INVALID_CERT_NO", "beneficiaryCertNo")]
    paid = await pay(world.gql, SON, MOTHER, "prem-1")
    assert paid["errors"] == []
    again = await pay(world.gql, SON, MOTHER, "prem-1")  # a retry, across provinces
    assert again["payment"] == paid["payment"]
    other = await pay(world.gql, SON, MOTHER, "prem-1", year=2027)
    assert codes(other) == [("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")]
    assert len(await world.holds("hebei", SON)) == 1


async def test_someone_insured_nowhere_pays_nothing(world: World) -> None:  # noqa: F811
    outsider = await pay(world.gql, NOWHERE, MOTHER, "prem-1")
    assert codes(outsider) == [("PERSON_NOT_FOUND", None)]


async def test_a_premium_the_relatives_province_refuses_releases_the_quotas_hold(
    world: World,  # noqa: F811
    monkeypatch: Any,
) -> None:
    await world.bind(SON, MOTHER, "PARENT", "1000.00")

    async def refusing(**kwargs: Any) -> dict[str, Any]:
        raise SandboxRefusal("premium_paid", "year")

    monkeypatch.setattr(world.system("jiangsu"), "pay_premium", refusing)
    refused = await pay(world.gql, SON, MOTHER, "prem-1")
    assert codes(refused) == [("PREMIUM_ALREADY_PAID", "year")]
    [hold] = await world.holds("hebei", SON)
    assert hold["status"] == "RELEASED"
    assert await world.quota_left("hebei", SON) == Decimal("1000.00")
