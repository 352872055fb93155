"""The family screen: every relative once, both features side by side, in one query."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import pytest
from starlette.applications import Starlette

from adapters.base import ProvinceAdapter
from bench.dashboard import QUERY as DASHBOARD
from gateway.common.auth import INSTITUTION, Institution, mint_token
from gateway.common.certno import check_character, mask_cert_no, mask_name
from gateway.ops.config import Settings
from gateway.provinces.federated import adapter_classes
from tests.conftest import PEOPLE, WANG_EIGHT, GraphQL, Sandboxes, gateway, person

FAMILY = """{ me { family {
  relative { name certNo } relation insuredArea { code } province { code } insurance { type status }
  ageBand
  mutualAid { iAuthorize { status } authorizesMe { status } verdict { state reason message } }
  kinship { iAdded { status } addedMe { status }
            verdict { state reason documentsNeeded message } }
} } }"""
ADD = """mutation($i: AddKinshipMemberInput!) {
  addKinshipMember(input: $i) { link { id status } errors { code } }
}"""


async def family(gql: GraphQL, who: str, lang: str | None = None) -> dict[str, dict[str, Any]]:
    """The caller's family screen, keyed by roster key (people appear masked)."""
    result = await gql(FAMILY, as_=who, lang=lang)
    assert "errors" not in result, result
    members = result["data"]["me"]["family"]
    masked = {(mask_name(p["name"]), mask_cert_no(p["certNo"])): k for k, p in PEOPLE.items()}
    keyed = {masked[m["relative"]["name"], m["relative"]["certNo"]]: m for m in members}
    assert len(keyed) == len(members), "each relative once"
    return keyed


async def bind(gql: GraphQL, who: str, relative: str, relation: str) -> str:
    payload = await gql.bind(who, relative, relation)
    assert payload["errors"] == [], payload
    binding_id: str = payload["binding"]["id"]
    return binding_id


async def add(gql: GraphQL, who: str, relative: str, relation: str) -> str:
    given = {
        "memberCertNo": person(relative)["certNo"],
        "memberName": person(relative)["name"],
        "relation": relation,
        "channel": "APP",
    }
    result = await gql(ADD, {"i": given}, as_=who)
    assert result["data"]["addKinshipMember"]["errors"] == [], result
    link_id: str = result["data"]["addKinshipMember"]["link"]["id"]
    return link_id


def aid(member: dict[str, Any]) -> tuple[str, str | None]:
    verdict = member["mutualAid"]["verdict"]
    return verdict["state"], verdict["reason"]


def kin(member: dict[str, Any]) -> tuple[str, str | None]:
    verdict = member["kinship"]["verdict"]
    return verdict["state"], verdict["reason"]


HEBEI_FAMILY = {
    "hb_li_xiuying": "SPOUSE",
    "hb_wang_deming": "PARENT",
    "hb_zhao_guilan": "PARENT",
    "hb_wang_lei": "CHILD",
    "hb_wang_jing": "CHILD",
    "hb_wang_peng": "CHILD",
    "hb_wang_fang": "CHILD",
    "hb_wang_hao": "CHILD",
    "hb_wang_yue": "CHILD",
    "hb_li_fu": "PARENT_IN_LAW",
}


async def test_the_hebei_authorizers_family_on_one_screen(gql: GraphQL) -> None:
    screen = await family(gql, "hb_wang_jianguo")
    assert {k: m["relation"] for k, m in screen.items()} == HEBEI_FAMILY
    wife = screen["hb_li_xiuying"]
    assert wife["relative"] == {"name": "李*英", "certNo": "130102********0029"}
    assert (wife["insuredArea"], wife["province"]) == ({"code": "130100"}, {"code": "13"})
    assert wife["insurance"] == {"type": "EMPLOYEE", "status": "ACTIVE"}
    assert aid(wife) == ("CAN_BIND", None)
    assert kin(wife) == ("CAN_ADD", None)
    assert screen["hb_wang_deming"]["ageBand"] == "SENIOR"
    assert screen["hb_wang_peng"]["province"] == {
        "code": "13"
    }  # Tangshan: Hebei binds across cities
    assert aid(screen["hb_wang_peng"]) == ("CAN_BIND", None)
    # a parent-in-law: neither feature
    assert aid(screen["hb_li_fu"]) == ("NOT_POSSIBLE", "RELATION_NOT_ALLOWED")
    assert kin(screen["hb_li_fu"]) == ("NOT_POSSIBLE", "RELATION_NOT_ALLOWED")
    yue = screen["hb_wang_yue"]
    assert yue["ageBand"] == "CHILD"
    assert yue["kinship"]["verdict"]["documentsNeeded"] is True
    assert screen["hb_wang_hao"]["kinship"]["verdict"]["documentsNeeded"] is False

    # eight bindings, then the ninth is not possible; a kinship request on the side
    for key in [k for k in HEBEI_FAMILY if k not in ("hb_wang_yue", "hb_li_fu")]:
        await bind(gql, "hb_wang_jianguo", key, HEBEI_FAMILY[key])
    await add(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    screen = await family(gql, "hb_wang_jianguo")
    assert aid(screen["hb_wang_jing"]) == ("BOUND", None)
    assert screen["hb_wang_jing"]["mutualAid"]["iAuthorize"] == {"status": "ACTIVE"}
    assert aid(screen["hb_wang_yue"]) == ("NOT_POSSIBLE", "BINDING_LIMIT_REACHED")
    hao = screen["hb_wang_hao"]
    assert aid(hao) == ("BOUND", None)
    assert kin(hao) == ("PENDING_CONSENT", None)
    assert hao["kinship"]["iAdded"] == {"status": "PENDING_CONSENT"}

    # the same two links from the son's side
    son = await family(gql, "hb_wang_hao")
    father = son["hb_wang_jianguo"]
    assert father["relation"] == "PARENT"
    assert father["mutualAid"]["authorizesMe"] == {"status": "ACTIVE"}
    assert father["mutualAid"]["iAuthorize"] is None
    assert aid(father) == ("NOT_POSSIBLE", "NOT_EMPLOYEE_INSURED")  # he has no account
    assert father["kinship"]["addedMe"] == {"status": "PENDING_CONSENT"}
    assert kin(father) == ("CAN_ADD", None)


async def test_the_jiangsu_spouse_and_her_confirmation(gql: GraphQL) -> None:
    binding = await bind(gql, "js_chen_zhiqiang", "js_liu_fang", "SPOUSE")
    screen = await family(gql, "js_chen_zhiqiang")
    assert aid(screen["js_liu_fang"]) == ("PENDING_CONFIRMATION", "SPOUSE_NOT_CONFIRMED")
    assert aid(screen["js_ma_xiulan"]) == ("CAN_BIND", None)  # Suzhou: Jiangsu binds across cities
    assert aid(screen["js_liu_dashan"]) == ("NOT_POSSIBLE", "RELATION_NOT_ALLOWED")
    confirmed = await gql(
        "mutation($id: ID!) { respondToMutualAidBinding(bindingId: $id, accept: true)"
        " { binding { status } } }",
        {"id": binding},
        as_="js_liu_fang",
    )
    assert confirmed["data"]["respondToMutualAidBinding"]["binding"]["status"] == "ACTIVE"
    assert aid((await family(gql, "js_chen_zhiqiang"))["js_liu_fang"]) == ("BOUND", None)
    hers = await family(gql, "js_liu_fang")
    assert hers["js_chen_zhiqiang"]["mutualAid"]["authorizesMe"] == {"status": "ACTIVE"}


async def test_the_henan_family_single_binding_and_a_removed_link(gql: GraphQL) -> None:
    screen = await family(gql, "hn_zhao_lei")
    assert aid(screen["hn_zhao_fusheng"]) == ("NOT_POSSIBLE", "CROSS_AREA_NOT_ALLOWED")
    await bind(gql, "hn_zhao_lei", "hn_zhao_zihan", "CHILD")
    hers = await family(gql, "hn_sun_li")
    assert aid(hers["hn_zhao_zihan"]) == ("NOT_POSSIBLE", "ALREADY_BOUND")
    # the newborn is on the record too: insurance pending
    assert hers["hn_zhao_xiaobao"]["insurance"]["status"] == "PENDING"
    assert aid(hers["hn_zhao_xiaobao"]) == ("NOT_POSSIBLE", "RELATIVE_INSURANCE_NOT_IN_FORCE")

    link = await add(gql, "hn_zhao_lei", "hn_sun_li", "SPOUSE")
    assert kin((await family(gql, "hn_zhao_lei"))["hn_sun_li"]) == ("PENDING_CONSENT", None)
    removed = await gql(
        "mutation($id: ID!) { removeKinshipMember(memberId: $id) { link { status } } }",
        {"id": link},
        as_="hn_sun_li",
    )
    assert removed["data"]["removeKinshipMember"]["link"]["status"] == "REMOVED"
    wife = (await family(gql, "hn_zhao_lei"))["hn_sun_li"]
    assert wife["kinship"]["iAdded"] == {"status": "REMOVED"}
    assert kin(wife) == ("CAN_ADD", None)


async def test_across_provinces_before_2026_and_in_english(gql_2025: GraphQL) -> None:
    screen = await family(gql_2025, "hb_liu_yang", lang="en")
    mother = screen["js_zhang_shuzhen"]
    assert mother["province"] == {"code": "32"}
    assert aid(mother) == ("NOT_POSSIBLE", "CROSS_PROVINCE_NOT_ALLOWED")
    assert kin(mother) == ("CAN_ADD", None)  # kinship is nationwide
    assert mother["mutualAid"]["verdict"]["message"].startswith("Cannot be bound")
    daughter = screen["hb_liu_yinuo"]
    assert aid(daughter) == ("CAN_BIND", "BALANCE_ZERO")  # allowed, but his account is empty
    chinese = await family(gql_2025, "hb_liu_yang")
    assert chinese["js_zhang_shuzhen"]["mutualAid"]["verdict"]["message"].startswith("不能")


async def test_across_provinces_under_the_2026_rules(gql: GraphQL) -> None:
    """Both provinces allow it now: his mother in Jiangsu can be bound, with a quota."""
    son = await family(gql, "hb_liu_tao")
    assert son["js_zhang_shuzhen"]["province"] == {"code": "32"}
    assert aid(son["js_zhang_shuzhen"]) == ("CAN_BIND", None)
    empty = await family(gql, "hb_liu_yang")  # his brother, whose account is empty
    assert aid(empty["js_zhang_shuzhen"]) == ("CAN_BIND", "BALANCE_ZERO")


@pytest.mark.parametrize(("who", "size"), [("hn_zhao_lei", 4), ("hb_wang_jianguo", 10)])
async def test_one_family_query_asks_each_province_once_per_kind_of_fact(
    who: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: Counter[tuple[str, str]] = Counter()
    for cls in adapter_classes().values():
        for kind in ("find_persons", "relatives", "bindings_of", "settlements_of"):
            monkeypatch.setattr(cls, kind, counted(getattr(cls, kind), kind, asked))
    async with gateway({}, Settings(data_dir=None)) as gql:
        await gql("{ me { name } }", as_=who)  # where the caller is insured: remembered
        for _ in range(2):  # a cold directory, then a warm one
            asked.clear()
            result = await gql(FAMILY, as_=who)
            assert len(result["data"]["me"]["family"]) >= size
            # one of each kind per province; insurance twice: the caller (me), the family
            assert all(
                n <= (2 if kind == "find_persons" else 1) for (_, kind), n in asked.items()
            ), asked
            assert not any(kind == "settlements_of" for _, kind in asked)


def counted(method: Any, kind: str, asked: Counter[tuple[str, str]]) -> Any:
    async def wrapper(self: ProvinceAdapter, *args: Any, **kw: Any) -> Any:
        asked[self.code, kind] += 1
        return await method(self, *args, **kw)

    return wrapper


NODE = """query($id: ID!) { node(id: $id) {
  __typename id kind who { name } whom { name } linkStatus since
  ... on MutualAidBinding { relation }
  ... on KinshipLink { channel }
  ... on Settlement { mutualAidPaid }
} }"""


async def node(gql: GraphQL, node_id: str, **who: Any) -> dict[str, Any] | None:
    result = await gql(NODE, {"id": node_id}, **who)
    assert "errors" not in result, result
    found: dict[str, Any] | None = result["data"]["node"]
    return found


async def test_every_link_is_a_family_link_found_again_by_node(gql: GraphQL) -> None:
    binding = await bind(gql, "hb_wang_jianguo", "hb_wang_jing", "CHILD")
    link = await add(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    staff = "11010119900101001" + check_character("11010119900101001")
    cashier = mint_token(
        staff,
        gql.auth,
        roles=frozenset({INSTITUTION}),
        institution=Institution("H13010001", "HOSPITAL"),
    )
    settled = await gql(
        "mutation($i: SettleInput!) { settle(input: $i) { settlement { id } } }",
        {
            "i": {
                "patientCertNo": person("hb_wang_jing")["certNo"],
                "medicalType": "OUTPATIENT",
                "totalAmount": "100.00",
                "fundPaid": "40.00",
                "idempotencyKey": "node-1",
            }
        },
        token=cashier,
    )
    settlement = settled["data"]["settle"]["settlement"]["id"]

    found = await node(gql, binding, as_="hb_wang_jianguo")
    assert found is not None
    assert (found["__typename"], found["kind"], found["linkStatus"]) == (
        "MutualAidBinding",
        "MUTUAL_AID_BINDING",
        "ACTIVE",
    )
    assert (found["who"], found["whom"], found["relation"]) == (
        {"name": "王建国"},
        {"name": "王*"},
        "CHILD",
    )
    kinship = await node(gql, link, as_="hb_wang_hao")  # the member sees it too
    assert kinship is not None
    assert (kinship["__typename"], kinship["kind"], kinship["linkStatus"]) == (
        "KinshipLink",
        "KINSHIP_LINK",
        "PENDING_CONSENT",
    )
    assert kinship["whom"] == {"name": "王浩"}
    paid = await node(gql, settlement, as_="hb_wang_jing")  # the patient
    assert paid is not None
    assert (paid["__typename"], paid["kind"], paid["mutualAidPaid"]) == (
        "Settlement",
        "SETTLEMENT",
        "60.00",
    )
    assert paid["who"] == {"name": "王*国"}  # her father's account paid
    # the payer: what his account paid is in his spending records, not the whole bill
    assert (await node(gql, settlement, as_="hb_wang_jianguo")) is None

    # anyone else: as if the id named nothing
    for other in (binding, link, settlement):
        assert await node(gql, other, as_="hn_zhao_lei") is None
    assert await node(gql, "not-an-id", as_="hb_wang_jianguo") is None


async def test_node_shows_a_party_only_their_own_balance(gql: GraphQL) -> None:
    await bind(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD")
    staff = "11010119900101001" + check_character("11010119900101001")
    cashier = mint_token(
        staff,
        gql.auth,
        roles=frozenset({INSTITUTION}),
        institution=Institution("H13010001", "HOSPITAL"),
    )
    bill = {
        "patientCertNo": person("hb_wang_lei")["certNo"],
        "medicalType": "OUTPATIENT",
        "totalAmount": "1000.00",
        "fundPaid": "200.00",
        "idempotencyKey": "balances",
    }
    wanted = "settlement { id patientBalanceAfter mutualAidPayerBalanceAfter }"
    done = await gql(
        f"mutation($i: SettleInput!) {{ settle(input: $i) {{ {wanted} }} }}",
        {"i": bill},
        token=cashier,
    )
    seen = done["data"]["settle"]["settlement"]
    assert (seen["patientBalanceAfter"], seen["mutualAidPayerBalanceAfter"]) == ("0.00", "3000.00")
    query = (
        "query($id: ID!) { node(id: $id) { ... on Settlement"
        " { patientBalanceAfter mutualAidPayerBalanceAfter } } }"
    )
    as_patient = (await gql(query, {"id": seen["id"]}, as_="hb_wang_lei"))["data"]["node"]
    assert as_patient == {"patientBalanceAfter": "0.00", "mutualAidPayerBalanceAfter": None}
    as_payer = (await gql(query, {"id": seen["id"]}, as_="hb_wang_jianguo"))["data"]["node"]
    assert as_payer is None  # not the payer's bill to read


async def test_a_reviewer_finds_only_what_waits_for_review(gql: GraphQL) -> None:
    consent = await add(gql, "hb_wang_jianguo", "hb_li_xiuying", "SPOUSE")  # no review
    reviewer = mint_token(
        "11010119850101001" + check_character("11010119850101001"),
        gql.auth,
        roles=frozenset({"REVIEWER"}),
    )
    assert (await node(gql, consent, token=reviewer)) is None
    # the registry's id only: another "province" part names nothing
    raw = base64.urlsafe_b64decode(consent + "=" * (-len(consent) % 4)).decode()
    forged = base64.urlsafe_b64encode(raw.replace(":gateway:", ":13:").encode()).decode()
    assert await node(gql, forged.rstrip("="), as_="hb_wang_jianguo") is None
    assert await node(gql, consent, as_="hb_wang_jianguo") is not None


async def test_someone_linked_off_the_civil_record_can_be_added_with_documents(
    gql: GraphQL,
) -> None:
    # 王建国 has no civil relation to 周桂芝: a kinship request with a document reaches review
    pdf = b"%PDF-1.4 synthetic"
    document = {
        "kind": "HOUSEHOLD_REGISTER",
        "file": None,
        "recordedCertNo": person("hb_zhou_laotai")["certNo"],
        "recordedRelation": "PARENT",
    }
    given = {
        "memberCertNo": person("hb_zhou_laotai")["certNo"],
        "memberName": person("hb_zhou_laotai")["name"],
        "relation": "PARENT",
        "channel": "HALL",
        "documents": [document],
    }
    response = await gql.client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": ADD, "variables": {"i": given}}),
            "map": json.dumps({"0": ["variables.i.documents.0.file"]}),
        },
        files={"0": ("register.pdf", pdf, "application/pdf")},
        headers={"Authorization": f"Bearer {gql.token('hb_wang_jianguo')}"},
    )
    link = response.json()["data"]["addKinshipMember"]["link"]
    assert link["status"] == "PENDING_REVIEW"
    # a request alone shows no stranger on the screen (anyone can file one)
    assert "hb_zhou_laotai" not in await family(gql, "hb_wang_jianguo")
    reviewer = mint_token(
        "11010119850101001" + check_character("11010119850101001"),
        gql.auth,
        roles=frozenset({"REVIEWER"}),
    )
    approved = await gql(
        "mutation($id: ID!) { reviewKinshipRequest(requestId: $id, approve: true)"
        " { link { status } } }",
        {"id": link["id"]},
        token=reviewer,
    )
    assert approved["data"]["reviewKinshipRequest"]["link"]["status"] == "APPROVED"
    screen = await family(gql, "hb_wang_jianguo")
    her = screen["hb_zhou_laotai"]
    assert her["relation"] == "PARENT"  # as the approved request says: not on the record
    assert kin(her) == ("APPROVED", None)
    assert aid(her) == ("NOT_POSSIBLE", "RELATION_NOT_VERIFIED")
    # from her side, adding him back needs a document too
    hers = await family(gql, "hb_zhou_laotai")
    assert kin(hers["hb_wang_jianguo"]) == ("CAN_ADD", None)
    assert hers["hb_wang_jianguo"]["kinship"]["verdict"]["documentsNeeded"] is True


async def test_a_relative_remembered_in_another_province_is_counted_once(
    app: Starlette, gql: GraphQL
) -> None:
    """王磊 is remembered in Henan but insured in Hebei: his province is asked after,
    and no binding is counted twice (the cap of 8 is not reached by 7 bindings)."""
    query = (
        "{ me { family { relative { certNo } mutualAid { verdict { state reason } } } "
        "mutualAidBindings { asAuthorizer { id } } } }"
    )
    for key, relation in WANG_EIGHT[:7]:
        assert (await gql.bind("hb_wang_jianguo", key, relation))["binding"]
    before = await gql(query, as_="hb_wang_jianguo")
    store = app.state.services.store
    await store.remember_locations({person("hb_wang_lei")["certNo"]: "41"})
    after = await gql(query, as_="hb_wang_jianguo")
    assert after == before
    verdicts = {
        m["relative"]["certNo"]: m["mutualAid"]["verdict"] for m in after["data"]["me"]["family"]
    }
    hao = next(v for c, v in verdicts.items() if c.endswith(person("hb_wang_hao")["certNo"][-4:]))
    assert hao == {"state": "CAN_BIND", "reason": None}
    assert len(after["data"]["me"]["mutualAidBindings"]["asAuthorizer"]) == 7


@pytest.mark.parametrize("who", ["hb_wang_jianguo", "hb_liu_tao", "js_huang_wei", "hn_zhao_lei"])
async def test_a_warm_dashboard_sends_one_request_to_each_province_it_involves(who: str) -> None:
    """Once the caller and their relatives are remembered, and the civil record kept,
    each province is asked once: where its people are and their bindings together,
    the caller found in the same request to their own province."""
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        async with gateway(dict(boxes.transports)) as gql:
            for _ in range(2):  # remembered, civil record kept
                assert "errors" not in await gql(DASHBOARD, as_=who)
            before = {name: t.calls for name, t in boxes.transports.items()}
            answer = await gql(DASHBOARD, as_=who)
            sent = {name: t.calls - before[name] for name, t in boxes.transports.items()}
    assert "errors" not in answer, answer
    assert answer["data"]["me"]["family"]
    assert sent[home_of(who)] == 1, sent
    assert all(n <= 1 for n in sent.values()), sent


def home_of(key: str) -> str:
    area = person(key)["insuredArea"][:2]
    return next(name for name, cls in adapter_classes().items() if cls.code == area)
