"""Family mutual aid end to end: the gateway's ASGI app over the three in-process sandboxes."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import jwt
import pytest

from adapters.base import china_date, policy_in_force
from gateway.common.auth import mint_token
from gateway.common.ids import encode_id
from gateway.ops.config import AuthSettings
from gateway.provinces.federated import adapter_classes
from tests.conftest import NOWHERE, PEOPLE, GraphQL, person, province_codes

BINDING = (
    "id status relation authorizer { name certNo } beneficiary { name certNo } province { code }"
)
PAYLOAD = f"{{ binding {{ {BINDING} }} errors {{ code message field }} }}"
BIND = f"mutation Bind($input: BindMutualAidInput!) {{ bindMutualAid(input: $input) {PAYLOAD} }}"
RESPOND = f"""
mutation Respond($id: ID!, $accept: Boolean!) {{
  respondToMutualAidBinding(bindingId: $id, accept: $accept) {PAYLOAD}
}}
"""
UNBIND = f"mutation Unbind($id: ID!) {{ unbindMutualAid(bindingId: $id) {PAYLOAD} }}"
ME = f"""
{{
  me {{
    certNo name insuredArea {{ code name }} insurance {{ type status }} account {{ balance }}
    mutualAidBindings {{ asAuthorizer {{ {BINDING} }} asBeneficiary {{ {BINDING} }} }}
  }}
}}
"""
PROVINCES = """
{
  provinces {
    code name
    policy {
      maxRelatives crossCity crossProvince spouseConfirmation singleBinding
      commitmentRequired allowedRelations effectiveFrom
    }
  }
}
"""
CHINESE_FIRST = "zh-CN,zh;q=0.9,en;q=0.8"
ENGLISH_FIRST = "en-US,en;q=0.9,zh;q=0.5"

# 王建国's eligible relatives, in the order he binds them: the 9th breaks Hebei's cap of 8.
WANG_FAMILY = (
    ("hb_li_xiuying", "SPOUSE"),
    ("hb_wang_deming", "PARENT"),
    ("hb_zhao_guilan", "PARENT"),
    ("hb_wang_lei", "CHILD"),
    ("hb_wang_jing", "CHILD"),
    ("hb_wang_peng", "CHILD"),  # insured in Tangshan: Hebei binds across cities
    ("hb_wang_fang", "CHILD"),
    ("hb_wang_hao", "CHILD"),
    ("hb_wang_yue", "CHILD"),
)

Payload = dict[str, Any]
Prior = tuple[str, str, str]  # (authorizer, relative, relation), bound before the attempt


async def bind(
    gql: GraphQL,
    authorizer_key: str,
    relative_key: str,
    relation: str,
    commitment: bool = True,
    *,
    cert_no: str | None = None,
    name: str | None = None,
    lang: str | None = None,
) -> Payload:
    """The authorizer binds a roster relative; ``cert_no`` and ``name`` replace what is typed."""
    relative = person(relative_key)
    given = {
        "beneficiaryCertNo": relative["certNo"] if cert_no is None else cert_no,
        "beneficiaryName": relative["name"] if name is None else name,
        "relation": relation,
        "commitmentSigned": commitment,
    }
    result = await gql(BIND, {"input": given}, as_=authorizer_key, lang=lang)
    payload: Payload = result["data"]["bindMutualAid"]
    return payload


async def respond(
    gql: GraphQL, actor_key: str, binding_id: str, accept: bool = True, lang: str | None = None
) -> Payload:
    variables = {"id": binding_id, "accept": accept}
    result = await gql(RESPOND, variables, as_=actor_key, lang=lang)
    payload: Payload = result["data"]["respondToMutualAidBinding"]
    return payload


async def unbind(gql: GraphQL, actor_key: str, binding_id: str, lang: str | None = None) -> Payload:
    result = await gql(UNBIND, {"id": binding_id}, as_=actor_key, lang=lang)
    payload: Payload = result["data"]["unbindMutualAid"]
    return payload


async def me(gql: GraphQL, key: str) -> dict[str, Any]:
    result = await gql(ME, as_=key)
    assert "errors" not in result, result
    found: dict[str, Any] = result["data"]["me"]
    return found


async def statuses(gql: GraphQL, key: str, side: str) -> list[tuple[str, str]]:
    """``(id, status)`` of the person's bindings on ``side`` (asAuthorizer or asBeneficiary)."""
    return [(b["id"], b["status"]) for b in (await me(gql, key))["mutualAidBindings"][side]]


def bound(payload: Payload, status: str = "ACTIVE") -> dict[str, Any]:
    """The binding of a payload without errors, checked to have ``status``."""
    assert payload["errors"] == [], payload
    binding: dict[str, Any] = payload["binding"]
    assert binding["status"] == status
    return binding


async def refused(
    attempt: Callable[..., Awaitable[Payload]], code: str, field: str | None
) -> Payload:
    """The attempt is refused with ``code`` and ``field``; Chinese unless English is asked."""
    default, chinese, english = [
        await attempt(lang=lang) for lang in (None, CHINESE_FIRST, ENGLISH_FIRST)
    ]
    for payload in (default, chinese, english):
        assert payload["binding"] is None, payload
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)], payload
    zh, en = default["errors"][0]["message"], english["errors"][0]["message"]
    assert chinese["errors"][0]["message"] == zh
    assert not zh.isascii()
    assert en.isascii()
    assert en != zh
    return default


# -- bindMutualAid refusals -------------------------------------------------------------


@pytest.mark.parametrize(
    ("priors", "authorizer", "relative", "relation", "commitment", "code", "field"),
    [
        pytest.param(
            (), "hb_wang_jianguo", NOWHERE, "CHILD", True,
            "PERSON_INFO_MISMATCH", "beneficiaryName",
            id="a relative insured in Guangdong: answered like a wrong name (no oracle)",
        ),
        pytest.param(
            (), NOWHERE, "hb_wang_jianguo", "PARENT", True,
            "PERSON_NOT_FOUND", None,
            id="a caller insured in Guangdong is found in no federated province",
        ),
        pytest.param(
            (), "hb_sun_qiang", "hb_sun_meng", "CHILD", True,
            "NOT_EMPLOYEE_INSURED", None,
            id="a resident-insured caller has no personal account to share",
        ),
        pytest.param(
            (), "hb_zhou_min", "hb_zhou_laotai", "PARENT", True,
            "BENEFICIARY_NOT_INSURED", "beneficiaryCertNo",
            id="a mother whose insurance lapsed cannot be bound",
        ),
        pytest.param(
            (), "hn_zhao_lei", "hn_zhao_xiaobao", "CHILD", True,
            "BENEFICIARY_NOT_INSURED", "beneficiaryCertNo",
            id="a newborn whose insurance is pending cannot be bound",
        ),
        pytest.param(
            (), "hb_wang_jianguo", "hb_li_fu", "PARENT_IN_LAW", True,
            "RELATION_NOT_ALLOWED", "relation",
            id="a father-in-law declared as such is not an allowed relation in Hebei",
        ),
        pytest.param(
            (), "hb_wang_jianguo", "hb_li_fu", "PARENT", True,
            "RELATION_NOT_ALLOWED", "relation",
            id="a father-in-law declared as a parent is a parent-in-law per the civil record",
        ),
        pytest.param(
            (), "js_chen_zhiqiang", "js_liu_dashan", "PARENT", True,
            "RELATION_NOT_ALLOWED", "relation",
            id="a father-in-law is not an allowed relation in Jiangsu",
        ),
        pytest.param(
            (), "hb_wang_jianguo", "hb_wang_lei", "PARENT", True,
            "RELATION_NOT_VERIFIED", "relation",
            id="a son declared as a parent does not match the civil record",
        ),
        pytest.param(
            (), "hb_wang_jianguo", "hb_sun_meng", "CHILD", True,
            "RELATION_NOT_VERIFIED", "relation",
            id="a stranger declared as a child does not match the civil record",
        ),
        pytest.param(
            (), "hb_wang_jianguo", "hb_wang_jianguo", "SPOUSE", True,
            "SELF_BINDING_NOT_ALLOWED", "beneficiaryCertNo",
            id="nobody is their own relative",
        ),
        pytest.param(
            (), "hn_zhao_lei", "hn_zhao_fusheng", "PARENT", True,
            "CROSS_AREA_NOT_ALLOWED", "beneficiaryCertNo",
            id="Henan refuses a father insured in another city",
        ),
        pytest.param(
            (), "hb_liu_tao", "js_zhang_shuzhen", "PARENT", True,
            "QUOTA_REQUIRED", "quota",
            id="Hebei binds a mother insured in Jiangsu only with a quota",
        ),
        pytest.param(
            (), "js_huang_wei", "hn_huang_jianhua", "PARENT", True,
            "QUOTA_REQUIRED", "quota",
            id="Jiangsu binds a father insured in Henan only with a quota",
        ),
        pytest.param(
            (("hn_zhao_lei", "hn_sun_li", "SPOUSE"), ("hn_zhao_lei", "hn_qian_xiumei", "PARENT")),
            "hn_sun_li", "hn_zhao_zihan", "CHILD", True,
            "ALREADY_BOUND", "beneficiaryCertNo",
            id="in Henan a wife her husband bound cannot start a second family",
        ),
        pytest.param(
            (("hn_zhao_lei", "hn_zhao_zihan", "CHILD"),),
            "hn_sun_li", "hn_zhao_zihan", "CHILD", True,
            "ALREADY_BOUND", "beneficiaryCertNo",
            id="in Henan a daughter her father bound cannot be bound by her mother",
        ),
        pytest.param(
            (("hn_zhao_lei", "hn_zhao_zihan", "CHILD"),),
            "hn_sun_li", "hn_zhao_lei", "SPOUSE", True,
            "ALREADY_BOUND", "beneficiaryCertNo",
            id="in Henan an authorizer cannot be bound by anyone",
        ),
        pytest.param(
            (("hb_wang_jianguo", "hb_wang_deming", "PARENT"),),
            "hb_wang_jianguo", "hb_wang_deming", "PARENT", True,
            "DUPLICATE_BINDING", "beneficiaryCertNo",
            id="the same pair cannot be bound twice",
        ),
        pytest.param(
            (("js_chen_zhiqiang", "js_liu_fang", "SPOUSE"),),
            "js_chen_zhiqiang", "js_liu_fang", "SPOUSE", True,
            "DUPLICATE_BINDING", "beneficiaryCertNo",
            id="a spouse binding still pending cannot be asked for again",
        ),
        pytest.param(
            (), "js_chen_zhiqiang", "js_chen_chen", "CHILD", False,
            "COMMITMENT_REQUIRED", "commitmentSigned",
            id="Jiangsu needs the commitment letter signed",
        ),
    ],
)  # fmt: skip
async def test_a_binding_the_rules_forbid_is_refused_with_its_code_and_field(
    gql: GraphQL,
    priors: tuple[Prior, ...],
    authorizer: str,
    relative: str,
    relation: str,
    commitment: bool,
    code: str,
    field: str | None,
) -> None:
    for prior in priors:
        assert (await bind(gql, *prior))["errors"] == []
    await refused(partial(bind, gql, authorizer, relative, relation, commitment), code, field)


@pytest.mark.parametrize(
    "cert_no",
    [
        pytest.param("13060219500120001", id="17 characters"),
        pytest.param("1306021950012000100", id="19 characters"),
        pytest.param("13060219500120A010", id="a letter among the digits"),
        pytest.param("130602195002300013", id="30 February with a right check character"),
        pytest.param("130602195013200018", id="month 13 with a right check character"),
        pytest.param("130602195001200011", id="a wrong check character"),
    ],
)
async def test_a_malformed_id_number_is_refused_as_invalid(gql: GraphQL, cert_no: str) -> None:
    await refused(
        partial(bind, gql, "hb_wang_jianguo", "hb_wang_deming", "PARENT", cert_no=cert_no),
        "INVALID_CERT_NO",
        "beneficiaryCertNo",
    )


async def test_a_name_that_does_not_match_the_id_number_is_refused(gql: GraphQL) -> None:
    await refused(
        partial(bind, gql, "hb_wang_jianguo", "hb_wang_deming", "PARENT", name="王德名"),
        "PERSON_INFO_MISMATCH",
        "beneficiaryName",
    )


async def test_a_lowercase_x_check_character_names_the_same_person(gql: GraphQL) -> None:
    binding = bound(
        await bind(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", cert_no="13010220121212002x")
    )
    assert binding["beneficiary"] == {"name": "王*", "certNo": "130102********002X"}
    await refused(
        partial(bind, gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD"),
        "DUPLICATE_BINDING",
        "beneficiaryCertNo",
    )


# -- Hebei: across cities, cap 8, several authorizers --------------------------------------


async def test_hebei_refuses_a_ninth_relative_after_eight_bindings(gql: GraphQL) -> None:
    ids = [bound(await bind(gql, "hb_wang_jianguo", *kin))["id"] for kin in WANG_FAMILY[:8]]
    await refused(
        partial(bind, gql, "hb_wang_jianguo", *WANG_FAMILY[8]),
        "BINDING_LIMIT_REACHED",
        None,
    )
    assert await statuses(gql, "hb_wang_jianguo", "asAuthorizer") == [(i, "ACTIVE") for i in ids]


async def test_unbinding_one_of_eight_frees_a_place_for_the_ninth(gql: GraphQL) -> None:
    ids = [bound(await bind(gql, "hb_wang_jianguo", *kin))["id"] for kin in WANG_FAMILY[:8]]
    assert bound(await unbind(gql, "hb_wang_jianguo", ids[0]), "UNBOUND")["id"] == ids[0]
    ninth = bound(await bind(gql, "hb_wang_jianguo", *WANG_FAMILY[8]))
    assert await statuses(gql, "hb_wang_jianguo", "asAuthorizer") == [
        (ids[0], "UNBOUND"),
        *((i, "ACTIVE") for i in ids[1:]),
        (ninth["id"], "ACTIVE"),
    ]


async def test_hebei_lets_both_parents_bind_the_same_daughter(gql: GraphQL) -> None:
    father = bound(await bind(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD"))
    mother = bound(await bind(gql, "hb_li_xiuying", "hb_wang_yue", "CHILD"))
    assert await statuses(gql, "hb_wang_yue", "asBeneficiary") == [
        (father["id"], "ACTIVE"),
        (mother["id"], "ACTIVE"),
    ]


async def test_bindings_show_others_masked_and_the_caller_in_full(gql: GraphQL) -> None:
    wang_jianguo = {"name": "王建国", "certNo": "130102197603150016"}
    father = bound(await bind(gql, "hb_wang_jianguo", "hb_wang_deming", "PARENT"))
    son = bound(await bind(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD"))
    assert father == {
        "id": father["id"],
        "status": "ACTIVE",
        "relation": "PARENT",
        "authorizer": wang_jianguo,
        "beneficiary": {"name": "王*明", "certNo": "130602********0010"},
        "province": {"code": "13"},
    }
    assert son["beneficiary"] == {"name": "王*", "certNo": "130102********0017"}
    assert (await me(gql, "hb_wang_jianguo"))["mutualAidBindings"] == {
        "asAuthorizer": [father, son],
        "asBeneficiary": [],
    }
    seen_by_father = (await me(gql, "hb_wang_deming"))["mutualAidBindings"]
    assert seen_by_father["asAuthorizer"] == []
    assert seen_by_father["asBeneficiary"] == [
        {
            **father,
            "authorizer": {"name": "王*国", "certNo": "130102********0016"},
            "beneficiary": {"name": "王德明", "certNo": "130602195001200010"},
        }
    ]


# -- Jiangsu: spouse confirmation --------------------------------------------------------


async def test_a_jiangsu_spouse_binding_is_pending_until_the_spouse_accepts(gql: GraphQL) -> None:
    spouse = bound(
        await bind(gql, "js_chen_zhiqiang", "js_liu_fang", "SPOUSE"), "PENDING_CONFIRMATION"
    )
    assert spouse["province"] == {"code": "32"}
    son = bound(await bind(gql, "js_chen_zhiqiang", "js_chen_chen", "CHILD"))  # only spouses wait
    assert await statuses(gql, "js_chen_zhiqiang", "asAuthorizer") == [
        (spouse["id"], "PENDING_CONFIRMATION"),
        (son["id"], "ACTIVE"),
    ]
    assert await statuses(gql, "js_liu_fang", "asBeneficiary") == [
        (spouse["id"], "PENDING_CONFIRMATION")
    ]

    accepted = bound(await respond(gql, "js_liu_fang", spouse["id"], accept=True))
    assert accepted["id"] == spouse["id"]
    assert accepted["beneficiary"] == {"name": "刘芳", "certNo": "32030219810915002X"}
    assert await statuses(gql, "js_chen_zhiqiang", "asAuthorizer") == [
        (spouse["id"], "ACTIVE"),
        (son["id"], "ACTIVE"),
    ]
    assert await statuses(gql, "js_liu_fang", "asBeneficiary") == [(spouse["id"], "ACTIVE")]


async def test_a_jiangsu_spouse_who_declines_leaves_the_binding_declined(gql: GraphQL) -> None:
    asked = bound(await bind(gql, "js_huang_wei", "js_wu_ting", "SPOUSE"), "PENDING_CONFIRMATION")
    bound(await respond(gql, "js_wu_ting", asked["id"], accept=False), "DECLINED")
    assert await statuses(gql, "js_wu_ting", "asBeneficiary") == [(asked["id"], "DECLINED")]
    assert await statuses(gql, "js_huang_wei", "asAuthorizer") == [(asked["id"], "DECLINED")]
    await refused(
        partial(unbind, gql, "js_huang_wei", asked["id"]),
        "INVALID_BINDING_STATE",
        "bindingId",
    )
    again = bound(await bind(gql, "js_huang_wei", "js_wu_ting", "SPOUSE"), "PENDING_CONFIRMATION")
    assert again["id"] != asked["id"]


async def test_an_authorizer_may_withdraw_a_pending_binding_before_it_is_answered(
    gql: GraphQL,
) -> None:
    asked = bound(
        await bind(gql, "js_chen_zhiqiang", "js_liu_fang", "SPOUSE"), "PENDING_CONFIRMATION"
    )
    bound(await unbind(gql, "js_chen_zhiqiang", asked["id"]), "UNBOUND")
    await refused(
        partial(respond, gql, "js_liu_fang", asked["id"]),
        "INVALID_BINDING_STATE",
        "bindingId",
    )


async def test_a_binding_that_is_not_pending_cannot_be_answered(gql: GraphQL) -> None:
    spouse = bound(
        await bind(gql, "js_chen_zhiqiang", "js_liu_fang", "SPOUSE"), "PENDING_CONFIRMATION"
    )
    bound(await respond(gql, "js_liu_fang", spouse["id"]))
    son = bound(await bind(gql, "js_chen_zhiqiang", "js_chen_chen", "CHILD"))
    father = bound(await bind(gql, "hb_wang_jianguo", "hb_wang_deming", "PARENT"))
    for beneficiary, binding in (
        ("js_liu_fang", spouse),
        ("js_chen_chen", son),
        ("hb_wang_deming", father),
    ):
        await refused(
            partial(respond, gql, beneficiary, binding["id"]),
            "INVALID_BINDING_STATE",
            "bindingId",
        )


# -- Henan: single binding ---------------------------------------------------------------


async def test_in_henan_an_unbound_wife_may_start_her_own_family(gql: GraphQL) -> None:
    wife = bound(await bind(gql, "hn_zhao_lei", "hn_sun_li", "SPOUSE"))
    bound(await bind(gql, "hn_zhao_lei", "hn_qian_xiumei", "PARENT"))
    bound(await unbind(gql, "hn_zhao_lei", wife["id"]), "UNBOUND")
    daughter = bound(await bind(gql, "hn_sun_li", "hn_zhao_zihan", "CHILD"))
    assert daughter["province"] == {"code": "41"}


# -- who may act on a binding ------------------------------------------------------------


async def test_unbinding_twice_is_refused_the_second_time(gql: GraphQL) -> None:
    binding = bound(await bind(gql, "hb_wang_jianguo", "hb_wang_deming", "PARENT"))
    bound(await unbind(gql, "hb_wang_jianguo", binding["id"]), "UNBOUND")
    await refused(
        partial(unbind, gql, "hb_wang_jianguo", binding["id"]),
        "INVALID_BINDING_STATE",
        "bindingId",
    )


async def test_concurrent_unbinds_end_the_binding_once_and_refuse_the_rest_alike(
    gql: GraphQL,
) -> None:
    binding = bound(await bind(gql, "hb_wang_jianguo", "hb_wang_deming", "PARENT"))
    payloads = await asyncio.gather(
        *(unbind(gql, "hb_wang_jianguo", binding["id"]) for _ in range(4))
    )
    assert sorted(p["binding"]["status"] for p in payloads if p["binding"]) == ["UNBOUND"]
    refusals = [(e["code"], e["field"]) for p in payloads for e in p["errors"]]
    assert refusals == [("INVALID_BINDING_STATE", "bindingId")] * 3


async def test_concurrent_binds_never_pass_the_cap_the_province_decides(gql: GraphQL) -> None:
    payloads = await asyncio.gather(
        *(bind(gql, "hb_wang_jianguo", key, relation) for key, relation in WANG_FAMILY)
    )
    assert sum(p["binding"] is not None for p in payloads) == 8
    assert [e["code"] for p in payloads for e in p["errors"]] == ["BINDING_LIMIT_REACHED"]


async def test_only_the_authorizer_may_unbind(gql: GraphQL) -> None:
    binding = bound(await bind(gql, "hb_wang_jianguo", "hb_wang_deming", "PARENT"))
    for other in ("hb_wang_deming", "hb_li_xiuying", "hb_liu_yang"):
        await refused(partial(unbind, gql, other, binding["id"]), "FORBIDDEN", "bindingId")
    assert await statuses(gql, "hb_wang_jianguo", "asAuthorizer") == [(binding["id"], "ACTIVE")]


async def test_only_the_invited_spouse_may_answer(gql: GraphQL) -> None:
    asked = bound(
        await bind(gql, "js_chen_zhiqiang", "js_liu_fang", "SPOUSE"), "PENDING_CONFIRMATION"
    )
    for other in ("js_chen_zhiqiang", "js_chen_chen", "js_huang_wei"):
        await refused(
            partial(respond, gql, other, asked["id"]),
            "FORBIDDEN",
            "bindingId",
        )
    assert await statuses(gql, "js_liu_fang", "asBeneficiary") == [
        (asked["id"], "PENDING_CONFIRMATION")
    ]


@pytest.mark.parametrize("act", [unbind, respond])
@pytest.mark.parametrize(
    "bogus",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param(encode_id("MutualAidBinding", "13", "HB99999999"), id="unknown upstream id"),
        pytest.param(encode_id("MutualAidBinding", "99", "HB00000001"), id="unknown province"),
        pytest.param(encode_id("Person", "13", "HB00000001"), id="another kind of id"),
    ],
)
async def test_an_unknown_binding_id_looks_exactly_like_someone_elses_binding(
    gql: GraphQL, act: Callable[..., Awaitable[Payload]], bogus: str
) -> None:
    theirs = bound(await bind(gql, "hb_wang_jianguo", "hb_wang_deming", "PARENT"))["id"]
    await refused(partial(act, gql, "hb_liu_yang", theirs), "FORBIDDEN", "bindingId")
    for lang in (None, ENGLISH_FIRST):
        not_yours = await act(gql, "hb_liu_yang", theirs, lang=lang)
        assert await act(gql, "hb_liu_yang", bogus, lang=lang) == not_yours


# -- me, provinces and authentication ----------------------------------------------------


@pytest.mark.parametrize(
    "key", [k for k, p in PEOPLE.items() if p["insuredArea"][:2] in province_codes()]
)
async def test_me_shows_the_caller_as_their_province_insures_them(gql: GraphQL, key: str) -> None:
    p = person(key)
    assert await me(gql, key) == {
        "certNo": p["certNo"],
        "name": p["name"],
        "insuredArea": {"code": p["insuredArea"], "name": p["insuredAreaName"]},
        "insurance": {"type": p["insuranceType"], "status": p["insuranceStatus"]},
        "account": None if p["accountBalance"] is None else {"balance": p["accountBalance"]},
        "mutualAidBindings": {"asAuthorizer": [], "asBeneficiary": []},
    }


async def test_money_is_a_two_decimal_string_and_residents_have_no_account(gql: GraphQL) -> None:
    assert (await me(gql, "hb_wang_jianguo"))["account"] == {"balance": "3200.00"}
    assert (await me(gql, "hb_liu_yang"))["account"] == {"balance": "0.00"}
    assert (await me(gql, "hb_sun_qiang"))["account"] is None


async def test_me_is_null_for_someone_insured_in_no_federated_province(gql: GraphQL) -> None:
    assert await gql(ME, as_=NOWHERE) == {"data": {"me": None}}


async def test_provinces_are_public_and_show_each_policy(gql: GraphQL) -> None:
    result = await gql(PROVINCES)
    assert "errors" not in result, result
    provinces = {p["code"]: p for p in result["data"]["provinces"]}
    names = {code: p["name"] for code, p in provinces.items()}
    assert names == {cls.code: cls.name for cls in adapter_classes().values()}
    assert {code: names[code] for code in ("13", "32", "41")} == {
        "13": "河北省",
        "32": "江苏省",
        "41": "河南省",
    }
    rules = (
        "maxRelatives",
        "crossCity",
        "crossProvince",
        "spouseConfirmation",
        "singleBinding",
        "commitmentRequired",
    )
    shown = {code: [p["policy"][r] for r in rules] for code, p in provinces.items()}
    assert {code: shown[code] for code in ("13", "32", "41")} == {
        "13": [8, True, True, False, False, False],  # across provinces since 2026
        "32": [5, True, True, True, False, True],
        "41": [5, False, True, False, True, False],
    }
    in_force = {
        cls.code: policy_in_force(cls.policies, china_date()) for cls in adapter_classes().values()
    }
    assert shown == {  # any other province installed: the rules it declares
        code: [
            policy.max_relatives,
            policy.cross_city,
            policy.cross_province,
            policy.spouse_confirmation,
            policy.single_binding,
            policy.commitment_required,
        ]
        for code, policy in in_force.items()
    }
    for p in provinces.values():
        assert p["policy"]["allowedRelations"] == [  # near relatives, since 2024 or 2025
            "SPOUSE",
            "PARENT",
            "CHILD",
            "SIBLING",
            "GRANDPARENT",
            "GRANDCHILD",
        ]
        assert dt.date.fromisoformat(p["policy"]["effectiveFrom"]) <= dt.date.today()


def _expired(auth: AuthSettings) -> str:
    return mint_token(
        person("hb_wang_jianguo")["certNo"], auth, now=time.time() - auth.token_ttl_seconds - 3600
    )


def _foreign(auth: AuthSettings) -> str:
    return mint_token(
        person("hb_wang_jianguo")["certNo"],
        dataclasses.replace(auth, secret="another-issuer-secret-of-at-least-32-bytes"),
    )


def _not_an_id_number(auth: AuthSettings) -> str:
    now = int(time.time())
    claims = {"sub": "12345", "iss": auth.issuer, "aud": auth.audience, "iat": now, "exp": now + 60}
    return jwt.encode(claims, auth.secret, algorithm="HS256")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda auth: None, id="no token"),
        pytest.param(lambda auth: "not-a-token", id="a malformed token"),
        pytest.param(_expired, id="an expired token"),
        pytest.param(_foreign, id="a token signed with another secret"),
        pytest.param(_not_an_id_number, id="a token whose subject is not an ID number"),
    ],
)
@pytest.mark.parametrize(
    ("document", "variables"),
    [
        pytest.param(ME, {}, id="me"),
        pytest.param(
            BIND,
            {
                "input": {
                    "beneficiaryCertNo": person("hb_wang_deming")["certNo"],
                    "beneficiaryName": person("hb_wang_deming")["name"],
                    "relation": "PARENT",
                }
            },
            id="bindMutualAid",
        ),
        pytest.param(RESPOND, {"id": "x", "accept": True}, id="respondToMutualAidBinding"),
        pytest.param(UNBIND, {"id": "x"}, id="unbindMutualAid"),
    ],
)
async def test_an_unauthenticated_caller_gets_only_an_unauthenticated_error(
    gql: GraphQL,
    token: Callable[[AuthSettings], str | None],
    document: str,
    variables: dict[str, Any],
) -> None:
    result = await gql(document, variables, token=token(gql.auth))
    assert [e["extensions"]["code"] for e in result["errors"]] == ["UNAUTHENTICATED"]
    assert not any((result.get("data") or {}).values())


async def test_binding_yourself_has_its_own_code_and_asks_no_province() -> None:
    from tests.conftest import Sandboxes, gateway

    sandboxes = Sandboxes()
    async with sandboxes:
        await sandboxes.start()
        transports: dict[str, Any] = dict(sandboxes.transports)
        async with gateway(transports) as gql:
            before = sandboxes.calls
            payload = await gql.bind("hb_wang_jianguo", "hb_wang_jianguo", "SPOUSE")
            assert payload["errors"] == [
                {"code": "SELF_BINDING_NOT_ALLOWED", "field": "beneficiaryCertNo"}
            ]
            assert payload["binding"] is None
            assert sandboxes.calls == before  # the gateway's own rule: no province asked
            english = await gql(
                """mutation($input: BindMutualAidInput!) { bindMutualAid(input: $input) {
                errors { message } } }""",
                {
                    "input": {
                        "beneficiaryCertNo": person("hb_wang_jianguo")["certNo"],
                        "beneficiaryName": person("hb_wang_jianguo")["name"],
                        "relation": "SPOUSE",
                        "commitmentSigned": True,
                    }
                },
                as_="hb_wang_jianguo",
                lang="en",
            )
            message = english["data"]["bindMutualAid"]["errors"][0]["message"]
            assert message == "You cannot bind yourself for mutual aid."
