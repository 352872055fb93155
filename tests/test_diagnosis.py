"""`mutualAidDiagnosis` and `bindMutualAid(dryRun: true)`, end to end with roster people."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.ops.config import Settings
from tests.conftest import NOWHERE, WANG_EIGHT, GraphQL, person

DIAGNOSE = """query Diagnose($c: String!) {
  mutualAidDiagnosis(relativeCertNo: $c) {
    relative { name } works payer { name certNo } reasons { code message nextStep }
  }
}"""
ADD_KIN = """mutation Add($input: AddKinshipMemberInput!) {
  addKinshipMember(input: $input) { link { status } errors { code } }
}"""


async def diagnose(gql: GraphQL, caller: str, relative: str, **kw: Any) -> dict[str, Any]:
    result = await gql(DIAGNOSE, {"c": person(relative)["certNo"]}, as_=caller, **kw)
    assert "errors" not in result, result
    found: dict[str, Any] = result["data"]["mutualAidDiagnosis"]
    return found


def codes(found: dict[str, Any]) -> list[str]:
    return [r["code"] for r in found["reasons"]]


async def bind(
    gql: GraphQL, authorizer: str, relative: str, relation: str, *, dry_run: bool = False
) -> dict[str, Any]:
    return await gql.bind(authorizer, relative, relation, dryRun=dry_run)


async def test_a_bound_relative_works_and_the_caller_pays(gql: GraphQL) -> None:
    assert (await bind(gql, "hb_wang_jianguo", "hb_wang_jing", "CHILD"))["binding"]
    found = await diagnose(gql, "hb_wang_jianguo", "hb_wang_jing")
    assert found["works"] is True
    assert found["payer"] == {"name": "王建国", "certNo": person("hb_wang_jianguo")["certNo"]}
    assert found["reasons"] == []
    assert found["relative"] == {"name": "王*"}


async def test_the_zero_balance_authorizer_is_told_why(gql: GraphQL) -> None:
    # 刘洋's account is empty: bound or not, it pays nothing
    assert (await bind(gql, "hb_liu_yang", "hb_liu_yinuo", "CHILD"))["binding"]
    found = await diagnose(gql, "hb_liu_yang", "hb_liu_yinuo")
    assert found["works"] is False
    assert found["payer"] is None
    assert codes(found) == ["BALANCE_ZERO"]
    assert "余额为零" in found["reasons"][0]["message"]
    assert found["reasons"][0]["nextStep"]


async def test_with_two_parents_bound_the_larger_balance_pays(gql: GraphQL) -> None:
    for parent in ("hb_wang_jianguo", "hb_li_xiuying"):
        assert (await bind(gql, parent, "hb_wang_yue", "CHILD"))["binding"]
    found = await diagnose(gql, "hb_li_xiuying", "hb_wang_yue")  # 1200.00 against 3200.00
    assert found["works"] is True
    assert found["payer"]["certNo"] == "130102********0016"  # 王建国, masked
    assert codes(found) == ["ANOTHER_AUTHORIZER_PAYS"]


async def test_before_the_2026_rules_another_province_is_a_reason(gql_2025: GraphQL) -> None:
    found = await diagnose(gql_2025, "hb_liu_yang", "js_zhang_shuzhen")
    assert found["works"] is False
    assert codes(found) == ["CROSS_PROVINCE_NOT_ALLOWED", "BALANCE_ZERO"]


@pytest.mark.parametrize(
    ("caller", "relative", "expected"),
    [
        ("hb_wang_jianguo", "hb_wang_hao", ["NOT_BOUND"]),
        ("hb_wang_jianguo", "hb_li_fu", ["RELATION_NOT_ALLOWED"]),  # a parent-in-law
        # his mother, in Jiangsu: he may bind her with a quota, but his account is empty
        ("hb_liu_yang", "js_zhang_shuzhen", ["NOT_BOUND", "BALANCE_ZERO"]),
        ("hn_zhao_lei", "hn_zhao_fusheng", ["CROSS_AREA_NOT_ALLOWED"]),  # Luoyang
        ("hb_sun_qiang", "hb_sun_meng", ["NOT_EMPLOYEE_INSURED"]),
        ("hb_zhou_min", "hb_zhou_laotai", ["RELATIVE_INSURANCE_NOT_IN_FORCE"]),
        ("hb_wang_jianguo", "hb_zhou_min", ["RELATION_NOT_VERIFIED"]),  # no relation at all
    ],
)
async def test_each_reason_in_plain_words(
    gql: GraphQL, caller: str, relative: str, expected: list[str]
) -> None:
    found = await diagnose(gql, caller, relative)
    assert found["works"] is False
    assert codes(found) == expected
    english = await diagnose(gql, caller, relative, lang="en")
    assert all(r["message"].isascii() and r["nextStep"].isascii() for r in english["reasons"])


async def test_about_a_stranger_it_says_nothing(gql: GraphQL) -> None:
    assert (await bind(gql, "hn_zhao_lei", "hn_zhao_zihan", "CHILD"))["binding"]
    for stranger in ("hn_zhao_zihan", NOWHERE, "hb_zhou_laotai"):
        found = await diagnose(gql, "hb_wang_lei", stranger)
        assert found == {
            "relative": None,
            "works": False,
            "payer": None,
            "reasons": [found["reasons"][0]],
        }
        assert codes(found) == ["RELATION_NOT_VERIFIED"]


class TestARelativeInsuredWhereNoProvinceIsConnected:
    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(data_dir=None, disabled=frozenset({"henan"}))

    async def test_it_says_so(self, gql: GraphQL) -> None:
        # 黄伟's father is insured in Zhengzhou; Henan is left out here
        found = await diagnose(gql, "js_huang_wei", "hn_huang_jianhua")
        assert codes(found) == ["RELATIVE_NOT_INSURED"]
        assert found["relative"] is None


async def test_only_a_kinship_link_is_not_mutual_aid(gql: GraphQL) -> None:
    hao = person("hb_wang_hao")
    added = await gql(
        ADD_KIN,
        {
            "input": {
                "memberCertNo": hao["certNo"],
                "memberName": hao["name"],
                "relation": "CHILD",
                "channel": "APP",
            }
        },
        as_="hb_wang_jianguo",
    )
    assert added["data"]["addKinshipMember"]["link"]["status"] == "PENDING_CONSENT"
    found = await diagnose(gql, "hb_wang_jianguo", "hb_wang_hao")
    assert codes(found) == ["ONLY_KINSHIP_LINK", "NOT_BOUND"]
    assert "亲情账户" in found["reasons"][0]["message"]


async def test_a_jiangsu_spouse_who_has_not_confirmed(gql: GraphQL) -> None:
    pending = await bind(gql, "js_chen_zhiqiang", "js_liu_fang", "SPOUSE")
    assert pending["binding"]["status"] == "PENDING_CONFIRMATION"
    found = await diagnose(gql, "js_chen_zhiqiang", "js_liu_fang")
    assert codes(found) == ["SPOUSE_NOT_CONFIRMED"]


async def test_henan_already_bound_and_the_cap(gql: GraphQL) -> None:
    assert (await bind(gql, "hn_zhao_lei", "hn_zhao_zihan", "CHILD"))["binding"]
    found = await diagnose(gql, "hn_sun_li", "hn_zhao_zihan")
    assert codes(found) == ["ALREADY_BOUND"]
    assert found["works"] is True  # her father's account pays for her
    # Hebei's cap of 8: the ninth relative
    for key, relation in WANG_EIGHT:
        assert (await bind(gql, "hb_wang_jianguo", key, relation))["binding"]
    assert codes(await diagnose(gql, "hb_wang_jianguo", "hb_wang_yue")) == ["BINDING_LIMIT_REACHED"]


async def test_a_dry_run_says_what_would_happen_and_does_nothing(gql: GraphQL) -> None:
    dry = await bind(gql, "js_chen_zhiqiang", "js_liu_fang", "SPOUSE", dry_run=True)
    assert dry == {
        "binding": None,
        "errors": [],
        "dryRun": True,
        "expectedStatus": "PENDING_CONFIRMATION",
    }
    assert codes(await diagnose(gql, "js_chen_zhiqiang", "js_liu_fang")) == ["NOT_BOUND"]
    refused = await bind(gql, "hb_wang_jianguo", "hb_li_fu", "PARENT", dry_run=True)
    assert refused["errors"] == [{"code": "RELATION_NOT_ALLOWED", "field": "relation"}]
    assert refused["dryRun"] is True
    assert refused["expectedStatus"] is None
    real = await bind(gql, "js_chen_zhiqiang", "js_liu_fang", "SPOUSE")
    assert real["dryRun"] is False
    assert real["binding"]["status"] == "PENDING_CONFIRMATION"
    # confirmation is for a spouse in a province that asks for it, and only then
    for authorizer, relative, relation in [
        ("js_chen_zhiqiang", "js_chen_chen", "CHILD"),  # Jiangsu, not a spouse
        ("hb_wang_jianguo", "hb_li_xiuying", "SPOUSE"),  # a spouse, Hebei does not ask
    ]:
        plain = await bind(gql, authorizer, relative, relation, dry_run=True)
        assert (plain["errors"], plain["expectedStatus"]) == ([], "ACTIVE")
