"""Every moment the graph answers with is written one way: Beijing time to the second,
with its offset. The test finds every `DateTime` field in the schema, makes a world in
which each has a value, and reads them all."""

from __future__ import annotations

import re
from typing import Any

from gateway.common.auth import ADMIN, mint_token
from gateway.graph.schema import schema
from tests.conftest import GraphQL
from tests.test_kinship import active, linked, remove, voucher
from tests.test_kinship import add as add_member
from tests.test_settlement import STAFF, settle, token

BEIJING = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")
LINK = "since createdAt decidedAt activatedAt endedAt"
READ = f"""query($binding: ID!, $settlement: ID!, $link: ID!, $ended: ID!) {{
  me {{
    mutualAidBindings {{ asAuthorizer {{ since createdAt }} }}
    kinshipMembers {{ {LINK} }}
    spendingRecords(role: AUTHORIZER) {{ edges {{ node {{ settledAt }} }} }}
    authorizationRecords {{ edges {{ node {{ at }} }} }}
  }}
  binding: node(id: $binding) {{ since ... on MutualAidBinding {{ createdAt }} }}
  settlement: node(id: $settlement) {{ since ... on Settlement {{ settledAt reversedAt }} }}
  link: node(id: $link) {{ ... on KinshipLink {{ {LINK} }} }}
  ended: node(id: $ended) {{ ... on KinshipLink {{ {LINK} }} }}
  usage: kinshipUsage(memberId: $link) {{ uses {{ at }} }}
}}"""
REVERSE = """mutation($id: ID!) { reverseSettlement(settlementId: $id, reason: "录入错误") {
  settlement { reversedAt } } }"""
AUDIT = "{ auditLog(first: 5) { at } }"
PREMIUM = """mutation($i: PayResidentPremiumInput!) { payResidentPremium(input: $i) {
  payment { paidAt } } }"""


def datetime_fields() -> set[tuple[str, str]]:
    """(type, field) of every DateTime the schema can answer with."""
    found = set()
    for name, kind in schema.graphql_schema.type_map.items():
        for field_name, field in getattr(kind, "fields", {}).items():
            of = field.type
            while hasattr(of, "of_type"):
                of = of.of_type
            if getattr(of, "name", None) == "DateTime" and not name.endswith("Input"):
                found.add((name, field_name))
    return found


def moments(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, text) of every value under a key a DateTime field has."""
    keys = {field for _, field in datetime_fields()}
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in keys and isinstance(inner, str):
                found.append((f"{path}.{key}", inner))
            else:
                found += moments(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += moments(inner, f"{path}[{i}]")
    return found


async def test_every_moment_is_beijing_time_to_the_second(gql: GraphQL) -> None:
    bound = await gql.bind("hb_wang_jianguo", "hb_wang_lei", "CHILD")
    binding = bound["binding"]["id"]
    # 王磊's own account is emptied first, so that his father's pays the rest
    settled = await settle(gql, "hb_wang_lei", "1000.00", "100.00", key="dt-1")
    settlement = settled["settlement"]["id"]
    link = await active(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    shown = await voucher(gql, "hb_wang_jianguo", link["id"])
    assert BEIJING.match(shown["voucher"]["expiresAt"]), shown
    await settle(gql, "hb_wang_hao", "50.00", "0.00", key="dt-2")
    ended = linked(
        await add_member(gql, "hb_wang_jianguo", "hb_wang_jing", "CHILD"), "PENDING_CONSENT"
    )
    linked(await remove(gql, "hb_wang_jianguo", ended["id"]), "REMOVED")
    reversed_ = await gql(REVERSE, {"id": settlement}, token=token(gql))
    assert "errors" not in reversed_, reversed_
    assert (await gql.bind("hb_wang_jianguo", "hb_wang_deming", "PARENT"))["errors"] == []
    father = {"beneficiaryCertNo": "130602195001200010", "year": 2026, "idempotencyKey": "dt-3"}
    premium = await gql(PREMIUM, {"i": father}, as_="hb_wang_jianguo")
    assert premium["data"]["payResidentPremium"]["payment"], premium

    ids = {"binding": binding, "settlement": settlement, "link": link["id"], "ended": ended["id"]}
    read = await gql(READ, ids, as_="hb_wang_jianguo")
    assert "errors" not in read, read
    admin = await gql(AUDIT, token=mint_token(STAFF, gql.auth, roles=frozenset({ADMIN})))
    answers = [
        read["data"],
        admin["data"],
        reversed_["data"],
        {"voucher": shown["voucher"]},
        premium["data"],
    ]
    seen = [m for answer in answers for m in moments(answer)]
    wrong = [(path, text) for path, text in seen if not BEIJING.match(text)]
    assert wrong == []
    # every DateTime field of the schema was read at least once, with a value
    names = {path.rsplit(".", 1)[1] for path, _ in seen}
    assert {field for _, field in datetime_fields()} <= names
