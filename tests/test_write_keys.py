"""Every write answers under its idempotency key, whatever the answer: the key the client
sent (even one refused as a key), or the one the gateway made for it; and a province's
refusal keeps who gave it (the gateway never lets a province tell whether an ID
number is insured)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.common.auth import INSTITUTION, Institution, mint_token
from tests.conftest import GraphQL, Sandboxes, gateway, person

BIND = """mutation($i: BindMutualAidInput!) {
  bindMutualAid(input: $i) { binding { id } errors { code field } idempotencyKey } }"""
REMOVE = """mutation($id: ID!, $k: String) {
  removeKinshipMember(memberId: $id, idempotencyKey: $k) { errors { code field } idempotencyKey }
}"""
ADD = """mutation($i: AddKinshipMemberInput!) { addKinshipMember(input: $i) { link { id } } }"""
REVERSE = """mutation($id: ID!, $reason: String!) {
  reverseSettlement(settlementId: $id, reason: $reason) { errors { code field } idempotencyKey }
}"""


def bind_input(relative: str, relation: str, key: str | None = None) -> dict[str, Any]:
    given = {
        "beneficiaryCertNo": person(relative)["certNo"],
        "beneficiaryName": person(relative)["name"],
        "relation": relation,
        "commitmentSigned": True,
    }
    return given if key is None else {**given, "idempotencyKey": key}


async def test_a_binding_refused_for_its_key_answers_under_that_key(gql: GraphQL) -> None:
    async def bind(relative: str, key: str) -> dict[str, Any]:
        result = await gql(BIND, {"i": bind_input(relative, "CHILD", key)}, as_="hb_wang_jianguo")
        payload: dict[str, Any] = result["data"]["bindMutualAid"]
        assert payload["idempotencyKey"] == key
        return payload

    assert (await bind("hb_wang_lei", "has space"))["errors"] == [
        {"code": "INVALID_IDEMPOTENCY_KEY", "field": "idempotencyKey"}
    ]
    assert (await bind("hb_wang_lei", "b-1"))["errors"] == []
    assert (await bind("hb_wang_jing", "b-1"))["errors"] == [
        {"code": "IDEMPOTENCY_KEY_REUSED", "field": "idempotencyKey"}
    ]


async def test_a_registry_write_refused_for_its_key_points_at_the_key(gql: GraphQL) -> None:
    member = person("hb_wang_hao")
    given = {
        "memberCertNo": member["certNo"],
        "memberName": member["name"],
        "relation": "CHILD",
        "channel": "APP",
    }
    added = await gql(ADD, {"i": given}, as_="hb_wang_jianguo")
    link_id = added["data"]["addKinshipMember"]["link"]["id"]
    refused = await gql(REMOVE, {"id": link_id, "k": "has space"}, as_="hb_wang_jianguo")
    assert refused["data"]["removeKinshipMember"] == {
        "errors": [{"code": "INVALID_IDEMPOTENCY_KEY", "field": "idempotencyKey"}],
        "idempotencyKey": "has space",
    }


async def test_a_refusal_before_the_write_path_comes_with_a_key_made_for_it(
    gql: GraphQL,
) -> None:
    """Sent without a key, a reversal refused at once still answers under a key, which
    the corrected request may use."""
    staff = mint_token(
        "130102196001010011",
        gql.auth,
        roles=frozenset({INSTITUTION}),
        institution=Institution("H13010001", "HOSPITAL"),
    )
    result = await gql(REVERSE, {"id": "nothing", "reason": " "}, token=staff)
    payload = result["data"]["reverseSettlement"]
    assert payload["errors"] == [{"code": "REASON_REQUIRED", "field": "reason"}]
    assert payload["idempotencyKey"]


async def test_a_province_that_does_not_know_the_relative_says_no_more_than_a_wrong_name() -> None:
    """The gateway found the relative; Hebei answers it knows nobody by that number. The
    caller hears what a wrong name gets (PERSON_INFO_MISMATCH): had the gateway taken
    the refusal for its own, it would pass PERSON_NOT_FOUND through, telling whether
    the number is insured."""
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        sandbox = boxes.transports["hebei"]

        async def unknown(request: httpx.Request) -> httpx.Response:
            if json.loads(request.content).get("infno") == "2703":  # bind
                body = {"infcode": 2001, "err_msg": "人员不存在", "output": {}}
                return httpx.Response(200, json=body)
            return await sandbox.handle_async_request(request)

        transports: dict[str, httpx.AsyncBaseTransport] = dict(boxes.transports)
        transports["hebei"] = httpx.MockTransport(unknown)
        async with gateway(transports) as gql:
            result = await gql(
                BIND, {"i": bind_input("hb_wang_lei", "CHILD", "u-1")}, as_="hb_wang_jianguo"
            )
    payload = result["data"]["bindMutualAid"]
    assert payload["errors"] == [{"code": "PERSON_INFO_MISMATCH", "field": "beneficiaryName"}]
    assert payload["idempotencyKey"] == "u-1"
