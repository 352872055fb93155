"""The family screen judges as the operations do: a kinship verdict is what adding them
would answer (`judge_kinship`), and a bound relative's verdict names who pays as the
diagnosis and settlement do (`adapters.payer`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from starlette.applications import Starlette

from adapters.base import (
    Area,
    Binding,
    BindingStatus,
    CivilRelative,
    InsuranceStatus,
    InsuranceType,
    Party,
    Person,
    Relation,
)
from gateway.common.certno import mask_cert_no, mask_name
from gateway.graph.context import Services
from gateway.provinces.directory import Located
from gateway.rules.family import Facts, MutualAidState
from tests.conftest import PEOPLE, GraphQL, person

FAMILY = """{ me { family {
  relative { name certNo } relation
  mutualAid { verdict { state reason } }
  kinship { verdict { state reason documentsNeeded } }
} } }"""
ADD = """mutation($i: AddKinshipMemberInput!) {
  addKinshipMember(input: $i) { link { id status } errors { code } }
}"""
REMOVE = "mutation($id: ID!) { removeKinshipMember(memberId: $id) { link { status } } }"
DIAGNOSE = """query($c: String!) {
  mutualAidDiagnosis(relativeCertNo: $c) { works payer { certNo } reasons { code } }
}"""


async def screen(gql: GraphQL, who: str) -> dict[str, dict[str, Any]]:
    """The caller's family screen, keyed by roster key."""
    result = await gql(FAMILY, as_=who)
    assert "errors" not in result, result
    members = result["data"]["me"]["family"]
    keys = {(mask_name(p["name"]), mask_cert_no(p["certNo"])): k for k, p in PEOPLE.items()}
    keyed = {keys[m["relative"]["name"], m["relative"]["certNo"]]: m for m in members}
    assert len(keyed) == len(members)
    return keyed


def aid(member: dict[str, Any]) -> tuple[str, str | None]:
    verdict = member["mutualAid"]["verdict"]
    return verdict["state"], verdict["reason"]


# -- who pays ---------------------------------------------------------------------------


async def test_of_two_bound_parents_the_poorer_is_told_the_other_pays(gql: GraphQL) -> None:
    for parent in ("hb_wang_jianguo", "hb_li_xiuying"):  # 3200.00 and 1200.00
        assert (await gql.bind(parent, "hb_wang_hao", "CHILD"))["errors"] == []
    hers = await screen(gql, "hb_li_xiuying")
    assert aid(hers["hb_wang_hao"]) == ("BOUND", "ANOTHER_AUTHORIZER_PAYS")
    his = await screen(gql, "hb_wang_jianguo")
    assert aid(his["hb_wang_hao"]) == ("BOUND", None)
    # as the diagnosis says
    diagnosed = await gql(DIAGNOSE, {"c": person("hb_wang_hao")["certNo"]}, as_="hb_li_xiuying")
    found = diagnosed["data"]["mutualAidDiagnosis"]
    assert [r["code"] for r in found["reasons"]] == ["ANOTHER_AUTHORIZER_PAYS"]
    assert found["payer"]["certNo"] == mask_cert_no(person("hb_wang_jianguo")["certNo"])


async def test_an_empty_account_is_the_reason_before_another_payer(gql: GraphQL) -> None:
    # 刘洋 (0.00) is bound to his daughter: his account is empty, whoever else pays
    assert (await gql.bind("hb_liu_yang", "hb_liu_yinuo", "CHILD"))["errors"] == []
    his = await screen(gql, "hb_liu_yang")
    assert aid(his["hb_liu_yinuo"]) == ("BOUND", "BALANCE_ZERO")


def _located(services: Services, cert_no: str, name: str, balance: str | None) -> Located:
    hebei = services.provinces["13"]
    kind = InsuranceType.RESIDENT if balance is None else InsuranceType.EMPLOYEE
    money = None if balance is None else Decimal(balance)
    area = Area("130100", "河北省石家庄市")
    return Located(Person(cert_no, name, area, kind, InsuranceStatus.ACTIVE, money), hebei)


def _bound(authorizer: Located, beneficiary: Located, minutes: int) -> Binding:
    return Binding(
        id=f"{authorizer.person.cert_no}>{beneficiary.person.cert_no}",
        authorizer=Party(authorizer.person.cert_no, authorizer.person.name),
        beneficiary=Party(beneficiary.person.cert_no, beneficiary.person.name),
        relation=Relation.CHILD,
        status=BindingStatus.ACTIVE,
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes),
    )


@pytest.mark.parametrize(
    ("theirs", "known", "reason"),
    [
        pytest.param("5000.00", True, "ANOTHER_AUTHORIZER_PAYS", id="a richer one off the screen"),
        pytest.param("100.00", True, None, id="a poorer one off the screen"),
        pytest.param("100.00", False, None, id="one whose balance is not known"),
        pytest.param("1000.00", True, None, id="a tie: the earlier binding (the caller's)"),
    ],
)
def test_a_co_authorizer_off_the_screen_pays_by_their_balance(
    app: Starlette, theirs: str, known: bool, reason: str | None
) -> None:
    services: Services = app.state.services
    me = _located(services, "A" * 18, "甲", "1000.00")
    child = _located(services, "C" * 18, "丙", None)
    other = _located(services, "B" * 18, "乙", theirs)  # the child's aunt, say
    mine, hers = _bound(me, child, 0), _bound(other, child, 5)
    hebei = services.provinces["13"]
    facts = Facts(
        civil=[CivilRelative(child.person.cert_no, child.person.name, Relation.CHILD)],
        links=[],
        names={child.person.cert_no: child.person.name},
        relation={child.person.cert_no: Relation.CHILD},
        located={child.person.cert_no: child},
        unlocated={},
        held=[(mine, hebei)],
        theirs={me.person.cert_no: [mine], child.person.cert_no: [mine, hers]},
        failed={},
        adders={},
        co_authorizers={other.person.cert_no: other} if known else {},
    )
    (member,) = services.family.screen(me, facts)
    assert member.mutual_aid.state is MutualAidState.BOUND
    assert (member.mutual_aid.reason and member.mutual_aid.reason.value) == reason


# -- the kinship verdict is what adding them answers --------------------------------------------


@pytest.mark.parametrize("caller", ["hb_wang_jianguo", "hb_liu_yang", "hn_sun_li"])
async def test_each_kinship_verdict_is_what_adding_them_answers(gql: GraphQL, caller: str) -> None:
    """Every relative on the screen, added as the screen relates them (no documents): a
    CAN_ADD that needs none is added; one that needs documents is refused for them;
    NOT_POSSIBLE is refused with its reason. Each link is removed again after."""
    checked = 0
    for key, member in (await screen(gql, caller)).items():
        verdict = member["kinship"]["verdict"]
        relation = member["relation"]
        if relation is None:
            continue
        given = {
            "memberCertNo": person(key)["certNo"],
            "memberName": person(key)["name"],
            "relation": relation,
            "channel": "APP",
        }
        added = (await gql(ADD, {"i": given}, as_=caller))["data"]["addKinshipMember"]
        codes = [e["code"] for e in added["errors"]]
        if verdict["state"] == "CAN_ADD" and not verdict["documentsNeeded"]:
            assert codes == [], (key, verdict, added)
        elif verdict["state"] == "CAN_ADD":
            assert codes in (["DOCUMENT_REQUIRED"], ["RELATION_NOT_VERIFIED"]), (key, added)
        else:
            assert verdict["state"] == "NOT_POSSIBLE"
            assert codes == [verdict["reason"]], (key, verdict, added)
        if added["link"] is not None:
            removed = await gql(REMOVE, {"id": added["link"]["id"]}, as_=caller)
            assert removed["data"]["removeKinshipMember"]["link"]["status"] == "REMOVED"
        checked += 1
    assert checked >= 2


async def test_the_limits_on_the_screen_are_the_limits_of_adding(gql: GraphQL) -> None:
    """王德明's two adders taken: the screen says so, and adding him says the same."""
    for adder, relation in (("hb_wang_lei", "GRANDPARENT"), ("hb_wang_jing", "GRANDPARENT")):
        given = {
            "memberCertNo": person("hb_wang_deming")["certNo"],
            "memberName": person("hb_wang_deming")["name"],
            "relation": relation,
            "channel": "APP",
        }
        added = (await gql(ADD, {"i": given}, as_=adder))["data"]["addKinshipMember"]
        assert added["errors"] == [], added
    his = await screen(gql, "hb_wang_jianguo")
    father = his["hb_wang_deming"]["kinship"]["verdict"]
    assert (father["state"], father["reason"]) == ("NOT_POSSIBLE", "KINSHIP_MEMBER_LIMIT_REACHED")
    given = {
        "memberCertNo": person("hb_wang_deming")["certNo"],
        "memberName": person("hb_wang_deming")["name"],
        "relation": "PARENT",
        "channel": "APP",
    }
    added = (await gql(ADD, {"i": given}, as_="hb_wang_jianguo"))["data"]["addKinshipMember"]
    assert [e["code"] for e in added["errors"]] == ["KINSHIP_MEMBER_LIMIT_REACHED"]
