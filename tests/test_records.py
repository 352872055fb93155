"""Spending records (支出明细) and authorization records (授权记录), end to end."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from adapters.base import Binding, BindingStatus, Party, Relation
from gateway.common.auth import ADMIN, INSTITUTION, Institution, mint_token
from gateway.common.certno import check_character
from gateway.state.records import Filters, authorizations
from tests.conftest import GraphQL, person

STAFF = "11010119900101001" + check_character("11010119900101001")
HOSPITAL = Institution("H13010001", "HOSPITAL")
SETTLE = (
    """mutation($i: SettleInput!) { settle(input: $i) { settlement { id } errors { code } } }"""
)
SPENDING = """query($role: RecordRole!, $first: Int!, $after: String, $since: Date, $until: Date,
                     $relative: String) {
  me { spendingRecords(role: $role, first: $first, after: $after, since: $since, until: $until,
                       relativeCertNo: $relative) {
    edges { cursor node { settlementId amount patient { name } payer { name certNo }
                          institutionCode medicalType status settledAt } }
    pageInfo { hasNextPage endCursor } } }
}"""
AUTHORIZATIONS = """query($first: Int!, $after: String, $relative: String) {
  me { authorizationRecords(first: $first, after: $after, relativeCertNo: $relative) {
    edges { node { event channel relation authorizer { name } beneficiary { name } bindingId } }
    pageInfo { hasNextPage endCursor } } }
}"""


async def bind(gql: GraphQL, who: str, relative: str, relation: str, channel: str | None) -> str:
    binding_id: str = (await gql.bind(who, relative, relation, channel=channel))["binding"]["id"]
    return binding_id


async def settle(gql: GraphQL, patient: str, total: str, fund: str, key: str) -> str:
    token = mint_token(STAFF, gql.auth, roles=frozenset({INSTITUTION}), institution=HOSPITAL)
    given = {
        "patientCertNo": person(patient)["certNo"],
        "medicalType": "OUTPATIENT",
        "totalAmount": total,
        "fundPaid": fund,
        "idempotencyKey": key,
    }
    result = await gql(SETTLE, {"i": given}, token=token)
    settlement_id: str = result["data"]["settle"]["settlement"]["id"]
    return settlement_id


async def spending(gql: GraphQL, who: str, role: str, **given: Any) -> dict[str, Any]:
    variables = {"role": role, "first": 20, **given}
    result = await gql(SPENDING, variables, as_=who)
    assert "errors" not in result, result
    found: dict[str, Any] = result["data"]["me"]["spendingRecords"]
    return found


def amounts(page: dict[str, Any]) -> list[str]:
    return [edge["node"]["amount"] for edge in page["edges"]]


async def test_an_authorizer_sees_what_their_account_paid_newest_first(gql: GraphQL) -> None:
    await bind(gql, "hb_wang_jianguo", "hb_wang_jing", "CHILD", "WECHAT")
    await bind(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD", None)
    await settle(gql, "hb_wang_jing", "100.00", "0.00", "a")  # 100.00 from 王建国
    await settle(gql, "hb_wang_lei", "1000.00", "200.00", "b")  # 600 his own, 200.00 from 王建国
    await settle(gql, "hb_wang_jing", "50.00", "0.00", "c")  # 50.00

    page = await spending(gql, "hb_wang_jianguo", "AUTHORIZER")
    assert amounts(page) == ["50.00", "200.00", "100.00"]
    first = page["edges"][0]["node"]
    assert first["patient"] == {"name": "王*"}
    assert first["payer"]["certNo"] == person("hb_wang_jianguo")["certNo"]  # the caller
    assert (first["institutionCode"], first["medicalType"], first["status"]) == (
        "H13010001",
        "OUTPATIENT",
        "SETTLED",
    )
    assert page["pageInfo"]["hasNextPage"] is False

    # two at a time
    one = await spending(gql, "hb_wang_jianguo", "AUTHORIZER", first=2)
    assert amounts(one) == ["50.00", "200.00"]
    assert one["pageInfo"]["hasNextPage"] is True
    two = await spending(
        gql, "hb_wang_jianguo", "AUTHORIZER", first=2, after=one["pageInfo"]["endCursor"]
    )
    assert amounts(two) == ["100.00"]
    assert two["pageInfo"] == {"hasNextPage": False, "endCursor": two["edges"][0]["cursor"]}

    # one relative; a date range (Beijing dates)
    lei = await spending(
        gql, "hb_wang_jianguo", "AUTHORIZER", relative=person("hb_wang_lei")["certNo"]
    )
    assert amounts(lei) == ["200.00"]
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    assert amounts(await spending(gql, "hb_wang_jianguo", "AUTHORIZER", since=tomorrow)) == []
    assert amounts(await spending(gql, "hb_wang_jianguo", "AUTHORIZER", until=yesterday)) == []
    span = await spending(
        gql, "hb_wang_jianguo", "AUTHORIZER", since=today.isoformat(), until=today.isoformat()
    )
    assert len(span["edges"]) == 3
    # a cursor that is not one is the caller's mistake
    bad = await gql(
        SPENDING, {"role": "AUTHORIZER", "first": 5, "after": "!!"}, as_="hb_wang_jianguo"
    )
    assert bad["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}


async def test_a_beneficiary_sees_what_was_paid_for_them_and_by_whom(gql: GraphQL) -> None:
    await bind(gql, "hb_wang_jianguo", "hb_wang_jing", "CHILD", "APP")
    await settle(gql, "hb_wang_jing", "80.00", "30.00", "x")
    page = await spending(gql, "hb_wang_jing", "BENEFICIARY")
    assert amounts(page) == ["50.00"]
    assert page["edges"][0]["node"]["payer"] == {
        "name": "王*国",
        "certNo": "130102********0016",
    }
    assert amounts(await spending(gql, "hb_wang_jing", "AUTHORIZER")) == []


async def test_authorization_records_say_what_happened_when_and_through_which_channel(
    gql: GraphQL,
) -> None:
    jing = await bind(gql, "hb_wang_jianguo", "hb_wang_jing", "CHILD", "WECHAT")
    lei = await bind(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD", "HALL")
    unbound = await gql(
        "mutation($id: ID!) {"
        " unbindMutualAid(bindingId: $id, channel: ALIPAY) { errors { code } } }",
        {"id": lei},
        as_="hb_wang_jianguo",
    )
    assert unbound["data"]["unbindMutualAid"]["errors"] == []

    result = await gql(AUTHORIZATIONS, {"first": 10}, as_="hb_wang_jianguo")
    nodes = [e["node"] for e in result["data"]["me"]["authorizationRecords"]["edges"]]
    assert [(n["event"], n["channel"], n["bindingId"]) for n in nodes] == [
        ("UNBOUND", "ALIPAY", lei),
        ("CREATED", "HALL", lei),
        ("CREATED", "WECHAT", jing),
    ]
    seen_by_lei = await gql(AUTHORIZATIONS, {"first": 10}, as_="hb_wang_lei")
    events = [
        e["node"]["event"] for e in seen_by_lei["data"]["me"]["authorizationRecords"]["edges"]
    ]
    assert events == ["UNBOUND", "CREATED"]


async def test_a_declined_spouse_binding_is_on_record(gql: GraphQL) -> None:
    binding = await bind(gql, "js_chen_zhiqiang", "js_liu_fang", "SPOUSE", "APP")
    answered = await gql(
        "mutation($id: ID!) { respondToMutualAidBinding(bindingId: $id, accept: false,"
        " channel: WECHAT) { binding { status } } }",
        {"id": binding},
        as_="js_liu_fang",
    )
    assert answered["data"]["respondToMutualAidBinding"]["binding"]["status"] == "DECLINED"
    result = await gql(AUTHORIZATIONS, {"first": 1}, as_="js_chen_zhiqiang")
    records = result["data"]["me"]["authorizationRecords"]
    assert [(e["node"]["event"], e["node"]["channel"]) for e in records["edges"]] == [
        ("DECLINED", "WECHAT")
    ]
    assert records["pageInfo"]["hasNextPage"] is True


def test_a_binding_made_elsewhere_appears_by_its_creation() -> None:
    me, child = Party("130102197603150016", "王建国"), Party("130102200106300022", "王静")
    made = Binding(
        id="HB00000009",
        authorizer=me,
        beneficiary=child,
        relation=Relation.CHILD,
        status=BindingStatus.ACTIVE,
        created_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
    )

    class Province:
        code = "13"

    found = authorizations(me.cert_no, [], [(made, Province())], Filters())  # type: ignore[list-item]
    assert [(r.event.value, r.channel, r.binding_id) for r in found] == [
        ("CREATED", None, "HB00000009")
    ]
    assert authorizations(me.cert_no, [], [(made, Province())], Filters(relative="x")) == []  # type: ignore[list-item]


@pytest.mark.parametrize("patient", ["hb_wang_jianguo", "js_chen_zhiqiang", "hn_zhao_lei"])
async def test_every_settlement_is_in_the_patients_records_whatever_it_paid(
    gql: GraphQL, patient: str
) -> None:
    # the fund pays all of it: no money moves, and the institution saw the balance
    probe = await settle(gql, patient, "0.01", "0.01", "probe")
    paid = await settle(gql, patient, "100.00", "0.00", "paid")  # the patient's own account
    listed = """query($role: RecordRole!) { me { spendingRecords(role: $role) {
      edges { node { settlementId amount institutionCode medicalType status } } } } }"""
    mine = await gql(listed, {"role": "BENEFICIARY"}, as_=patient)
    nodes = [e["node"] for e in mine["data"]["me"]["spendingRecords"]["edges"]]
    assert [(n["settlementId"], n["amount"]) for n in nodes] == [
        (paid, "0.00"),  # mutual aid paid nothing of either
        (probe, "0.00"),
    ]
    assert all(n["institutionCode"] == "H13010001" for n in nodes)

    # the patient sees the bill and what their own account paid; nobody paid for them
    detail = """{ me { spendingRecords(role: BENEFICIARY) { edges { node {
      settlementId totalAmount ownAccountPaid payer { name } } } } } }"""
    shown = await gql(detail, as_=patient)
    assert [e["node"] for e in shown["data"]["me"]["spendingRecords"]["edges"]] == [
        {"settlementId": paid, "totalAmount": "100.00", "ownAccountPaid": "100.00", "payer": None},
        {"settlementId": probe, "totalAmount": "0.01", "ownAccountPaid": "0.00", "payer": None},
    ]
    # an authorizer's records stay what their account paid; none of it here
    assert amounts(await spending(gql, patient, "AUTHORIZER")) == []


async def test_an_authorizer_does_not_see_the_patients_own_part(gql: GraphQL) -> None:
    await bind(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD", "APP")
    await settle(gql, "hb_wang_lei", "1000.00", "200.00", "b")  # 600 his own, 200 from 王建国
    detail = """query($role: RecordRole!) { me { spendingRecords(role: $role) { edges { node {
      amount totalAmount ownAccountPaid payer { certNo } } } } } }"""
    paid = await gql(detail, {"role": "AUTHORIZER"}, as_="hb_wang_jianguo")
    assert [e["node"] for e in paid["data"]["me"]["spendingRecords"]["edges"]] == [
        {
            "amount": "200.00",
            "totalAmount": None,
            "ownAccountPaid": None,
            "payer": {"certNo": person("hb_wang_jianguo")["certNo"]},
        }
    ]
    own = await gql(detail, {"role": "BENEFICIARY"}, as_="hb_wang_lei")
    assert [e["node"] for e in own["data"]["me"]["spendingRecords"]["edges"]] == [
        {
            "amount": "200.00",
            "totalAmount": "1000.00",
            "ownAccountPaid": "600.00",
            "payer": {"certNo": "130102********0016"},
        }
    ]


async def test_a_page_of_nothing_or_another_lists_cursor_names_its_argument(
    gql: GraphQL,
) -> None:
    await bind(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD", None)
    await settle(gql, "hb_wang_lei", "100.00", "0.00", "paging")
    spent = await spending(gql, "hb_wang_lei", "BENEFICIARY", first=1)  # his own account paid
    spending_cursor = spent["pageInfo"]["endCursor"]
    given = await gql(AUTHORIZATIONS, {"first": 1}, as_="hb_wang_jianguo")
    authorization_cursor = given["data"]["me"]["authorizationRecords"]["pageInfo"]["endCursor"]
    assert spending_cursor
    assert authorization_cursor

    async def refused(query: str, variables: dict[str, Any]) -> str:
        result = await gql(query, variables, as_="hb_wang_jianguo")
        assert result["data"]["me"] is None
        (error,) = result["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        argument: str = error["extensions"]["argument"]
        return argument

    for first in (0, -1):
        assert await refused(SPENDING, {"role": "AUTHORIZER", "first": first}) == "first"
        assert await refused(AUTHORIZATIONS, {"first": first}) == "first"
    other = {"role": "AUTHORIZER", "first": 5, "after": authorization_cursor}
    assert await refused(SPENDING, other) == "after"
    assert await refused(AUTHORIZATIONS, {"first": 5, "after": spending_cursor}) == "after"
    # a connection's own cursor pages on
    assert (await spending(gql, "hb_wang_lei", "BENEFICIARY", first=5, after=spending_cursor))[
        "edges"
    ] == []


STAFF_FIELDS = "{ me { name } auditLog { seq } kinshipReviewQueue { id } }"


async def test_staff_fields_asked_by_someone_else_are_null_and_the_rest_is_answered(
    gql: GraphQL,
) -> None:
    result = await gql(STAFF_FIELDS, as_="hb_wang_jianguo")
    assert result["data"] == {
        "me": {"name": person("hb_wang_jianguo")["name"]},
        "auditLog": None,
        "kinshipReviewQueue": None,
    }
    assert sorted((e["path"], e["extensions"]["code"]) for e in result["errors"]) == [
        (["auditLog"], "FORBIDDEN"),
        (["kinshipReviewQueue"], "FORBIDDEN"),
    ]


async def test_the_audit_log_pages_from_one(gql: GraphQL) -> None:
    admin = mint_token(STAFF, gql.auth, roles=frozenset({ADMIN}))
    query = "query($first: Int!) { auditLog(first: $first) { seq } }"
    assert (await gql(query, {"first": 1}, token=admin))["data"]["auditLog"] is not None
    refused = await gql(query, {"first": 0}, token=admin)
    assert refused["data"] == {"auditLog": None}
    assert refused["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "first"}
