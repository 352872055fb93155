"""Mutual aid across provinces (the 2026 rules), end to end through the gateway with
roster people: a Hebei employee, 刘涛, binds his mother 张淑珍, insured in Jiangsu, with a
quota (共济额度) that leaves his balance at once and returns, unspent, when either of them
ends the binding. Before the provinces' dates, the old refusal stands."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from gateway.ops.config import Settings
from tests.conftest import GraphQL, gateway, person
from tests.test_gateway_rules import World, refused, world  # noqa: F401 (a fixture)

BINDING = """binding { id status relation quota { granted remaining }
  province { code } beneficiaryProvince { code } authorizer { name } beneficiary { name } }"""
BIND = f"""mutation($input: BindMutualAidInput!) {{
  bindMutualAid(input: $input) {{ {BINDING} errors {{ code field message }} }} }}"""
UNBIND = f"""mutation($id: ID!) {{
  unbindMutualAid(bindingId: $id) {{ {BINDING} errors {{ code field }} }} }}"""
ME = """{ me { account { balance }
  mutualAidBindings { asAuthorizer { id status quota { remaining } }
                      asBeneficiary { id status quota { granted remaining }
                                      authorizer { name } province { code } } } } }"""

SON, MOTHER = "hb_liu_tao", "js_zhang_shuzhen"  # Hebei employee (2500.00); insured in Jiangsu
# Both provinces allow it from the later of their (illustrative) dates: Jiangsu 2026-01-09,
# Hebei 2026-02-01.
BOTH_ALLOW = dt.date(2026, 2, 1)


def bind_input(relative: str, relation: str, quota: str | None = None) -> dict[str, Any]:
    given: dict[str, Any] = {
        "beneficiaryCertNo": person(relative)["certNo"],
        "beneficiaryName": person(relative)["name"],
        "relation": relation,
        "commitmentSigned": True,
    }
    if quota is not None:
        given["quota"] = quota
    return given


async def bind(
    gql: GraphQL, who: str, relative: str, relation: str, quota: str | None = None
) -> dict[str, Any]:
    result = await gql(BIND, {"input": bind_input(relative, relation, quota)}, as_=who)
    assert "errors" not in result, result
    payload: dict[str, Any] = result["data"]["bindMutualAid"]
    return payload


async def balance(gql: GraphQL, who: str) -> Decimal:
    result = await gql(ME, as_=who)
    return Decimal(result["data"]["me"]["account"]["balance"])


def codes(payload: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(e["code"], e["field"]) for e in payload["errors"]]


@pytest.mark.parametrize(
    "day",
    [dt.date(2025, 6, 1), dt.date(2026, 1, 9), BOTH_ALLOW - dt.timedelta(days=1)],
    ids=["neither", "jiangsu-only", "hebei-not-yet"],
)
async def test_before_both_provinces_allow_it_the_old_refusal_stands(day: dt.date) -> None:
    async with gateway({}, Settings(data_dir=None, policy_date=day)) as gql:
        for quota in (None, "1000.00"):
            payload = await bind(gql, SON, MOTHER, "PARENT", quota)
            assert payload["binding"] is None
            assert codes(payload) == [("CROSS_PROVINCE_NOT_ALLOWED", "beneficiaryCertNo")]
        assert await balance(gql, SON) == Decimal("2500.00")


async def test_on_the_date_both_allow_it_the_binding_is_made() -> None:
    async with gateway({}, Settings(data_dir=None, policy_date=BOTH_ALLOW)) as gql:
        payload = await bind(gql, SON, MOTHER, "PARENT", "1000.00")
    assert payload["errors"] == []
    assert payload["binding"]["status"] == "ACTIVE"


async def test_the_quota_leaves_the_balance_and_the_relative_ends_it_and_the_rest_returns(
    gql: GraphQL,
) -> None:
    assert await balance(gql, SON) == Decimal("2500.00")
    payload = await bind(gql, SON, MOTHER, "PARENT", "1000.00")
    assert payload["errors"] == []
    binding = payload["binding"]
    assert binding["status"] == "ACTIVE"  # nobody confirms across provinces
    assert binding["quota"] == {"granted": "1000.00", "remaining": "1000.00"}
    assert (binding["province"]["code"], binding["beneficiaryProvince"]["code"]) == ("13", "32")
    assert binding["authorizer"]["name"] == "刘涛"
    assert binding["beneficiary"]["name"] != "张淑珍"  # another person's name is masked
    assert await balance(gql, SON) == Decimal("1500.00")

    # the mother, in Jiangsu, sees it held in Hebei, and ends it
    mine = (await gql(ME, as_=MOTHER))["data"]["me"]["mutualAidBindings"]["asBeneficiary"]
    assert [(b["id"], b["status"], b["province"]["code"]) for b in mine] == [
        (binding["id"], "ACTIVE", "13")
    ]
    assert mine[0]["quota"] == {"granted": "1000.00", "remaining": "1000.00"}
    ended = (await gql(UNBIND, {"id": binding["id"]}, as_=MOTHER))["data"]["unbindMutualAid"]
    assert ended["errors"] == []
    assert ended["binding"]["status"] == "UNBOUND"
    assert ended["binding"]["quota"] == {"granted": "1000.00", "remaining": "0.00"}
    assert await balance(gql, SON) == Decimal("2500.00")

    again = (await gql(UNBIND, {"id": binding["id"]}, as_=SON))["data"]["unbindMutualAid"]
    assert codes(again) == [("INVALID_BINDING_STATE", "bindingId")]
    assert await balance(gql, SON) == Decimal("2500.00")  # returned once


async def test_the_authorizer_ends_it_too_and_nobody_else_may(gql: GraphQL) -> None:
    binding = (await bind(gql, SON, MOTHER, "PARENT", "400.00"))["binding"]
    for outsider in ("hb_liu_yang", "js_chen_zhiqiang"):  # her other son; a stranger
        refusal = (await gql(UNBIND, {"id": binding["id"]}, as_=outsider))["data"]
        assert codes(refusal["unbindMutualAid"]) == [("FORBIDDEN", "bindingId")]
    ended = (await gql(UNBIND, {"id": binding["id"]}, as_=SON))["data"]["unbindMutualAid"]
    assert ended["binding"]["status"] == "UNBOUND"
    assert await balance(gql, SON) == Decimal("2500.00")


@pytest.mark.parametrize(
    ("who", "relative", "relation", "quota", "expected"),
    [
        (SON, MOTHER, "PARENT", None, ("QUOTA_REQUIRED", "quota")),
        (SON, MOTHER, "PARENT", "2500.01", ("QUOTA_ABOVE_BALANCE", "quota")),
        (SON, MOTHER, "PARENT", "0.00", ("AMOUNT_NOT_POSITIVE", "quota")),
        (SON, "hb_liu_yang", "SIBLING", "100.00", ("QUOTA_NOT_ALLOWED", "quota")),
    ],
    ids=["no-quota", "above-balance", "nothing", "inside-hebei"],
)
async def test_the_gateway_refuses_a_wrong_quota_before_asking_the_province(
    world: World,  # noqa: F811
    who: str,
    relative: str,
    relation: str,
    quota: str | None,
    expected: tuple[str, str],
) -> None:
    payload = await bind(world.gql, who, relative, relation, quota)
    assert refused(payload) == expected
    assert world.asked["hebei"].of("bind") == []  # the gateway's own refusal
    assert await balance(world.gql, who) == Decimal(person(who)["accountBalance"])


async def test_a_quota_of_the_whole_balance_is_allowed(world: World) -> None:  # noqa: F811
    payload = await bind(world.gql, SON, MOTHER, "PARENT", "2500.00")
    assert payload["errors"] == []
    [asked] = world.asked["hebei"].of("bind")
    assert (asked["quota"], asked["beneficiary_province"]) == ("2500.00", "32")
    assert await balance(world.gql, SON) == Decimal("0.00")


async def test_rules_of_a_binding_inside_a_province_do_not_apply_across(world: World) -> None:  # noqa: F811
    """Jiangsu's commitment letter binds Jiangsu's own bindings only: 黄伟 (Jiangsu) binds
    his father 黄建华 (Henan) without one, and no one is asked to confirm."""
    given = bind_input("hn_huang_jianhua", "PARENT", "500.00") | {"commitmentSigned": False}
    result = await world.gql(BIND, {"input": given}, as_="js_huang_wei")
    payload = result["data"]["bindMutualAid"]
    assert payload["errors"] == []
    assert payload["binding"]["status"] == "ACTIVE"
    assert (
        payload["binding"]["province"]["code"],
        payload["binding"]["beneficiaryProvince"]["code"],
    ) == (
        "32",
        "41",
    )


async def test_the_relatives_province_must_allow_it_too_which_only_the_gateway_knows() -> None:
    """On 2026-02-15 Jiangsu allows it (from 2026-01-09) and Henan not yet (2026-03-01):
    Jiangsu's own system would bind 黄伟's father, insured in Henan; the gateway refuses."""
    settings = Settings(data_dir=None, policy_date=dt.date(2026, 2, 15))
    async with gateway({}, settings) as gql:
        given = bind_input("hn_huang_jianhua", "PARENT", "500.00")
        result = await gql(BIND, {"input": given}, as_="js_huang_wei")
        payload = result["data"]["bindMutualAid"]
        assert codes(payload) == [("CROSS_PROVINCE_NOT_ALLOWED", "beneficiaryCertNo")]
        assert await balance(gql, "js_huang_wei") == Decimal("2000.00")
