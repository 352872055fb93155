"""Refusing costs less than answering, and a client's mistake is a client error.

Work is counted, not timed: a request's Python function calls (``sys.setprofile``),
against a family dashboard's in the same test. A walk that inlines fragments makes
millions of calls for the fragment chains below; the budget stops it early.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest

from bench import dashboard
from bench.abusive import corpus
from gateway.graph.shape import Limits, check
from tests.conftest import GraphQL, person


class OverBudget(Exception):
    pass


@contextmanager
def counted(budget: int) -> Iterator[list[int]]:
    """Python function calls made in the block; past ``budget`` the block is stopped."""
    calls = [0]

    def count(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            calls[0] += 1
            if calls[0] > budget:
                sys.setprofile(None)
                raise OverBudget

    sys.setprofile(count)
    try:
        yield calls
    finally:
        sys.setprofile(None)


async def dashboard_calls(gql: GraphQL) -> int:
    """Python calls of the benchmark's family dashboard, its document seen for the first
    time (parsed and validated), as an attacker's fresh document is."""
    with counted(10**7) as calls:
        result = await gql(dashboard.QUERY, as_="hb_wang_jianguo")
    assert "errors" not in result, result
    return calls[0]


@pytest.mark.parametrize("abuse", corpus(), ids=lambda a: a.name)
async def test_each_abuse_is_refused_for_less_than_a_dashboard(gql: GraphQL, abuse: Any) -> None:
    budget = await dashboard_calls(gql)
    headers = {"content-type": abuse.content_type, **abuse.headers}
    with counted(budget) as calls:
        response = await gql.client.post("/graphql", content=abuse.body, headers=headers)
    assert calls[0] <= budget
    assert response.status_code == abuse.status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    errors = response.json()["errors"]
    assert errors[0]["extensions"]["code"] == abuse.code, errors


def test_the_measure_visits_each_fragment_once() -> None:
    from graphql import parse

    from bench.abusive import fragment_chain
    from gateway.graph.schema import schema

    document = parse(fragment_chain(300, "__typename"), max_tokens=None)
    with counted(100_000) as calls:
        errors = check(schema.graphql_schema, document, Limits())
    assert [e.extensions["code"] for e in errors if e.extensions] == ["TOO_MANY_REPEATS"]
    assert calls[0] < 20_000


async def test_a_repeated_field_within_the_limit_is_answered(gql: GraphQL) -> None:
    twenty = "{" + " provinces { code }" * 20 + "}"
    assert "errors" not in await gql(twenty)
    assert (await gql("{" + " provinces { code }" * 21 + "}"))["errors"][0]["extensions"][
        "code"
    ] == "TOO_MANY_REPEATS"


# -- a client's mistake is a client error ---------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"1", b"null", b'"x"', b"true", b"\xff\xfe{}", b'{"query": 1}', b"{", b"[]"],
    ids=["number", "null", "string", "true", "invalid UTF-8", "query not a string", "cut", "batch"],
)
async def test_a_body_that_is_not_a_request_is_a_coded_400(gql: GraphQL, body: bytes) -> None:
    response = await gql.client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "message": response.json()["errors"][0]["message"],
                "extensions": {"code": "BAD_REQUEST"},
            }
        ]
    }


async def test_messages_at_the_edge_are_in_the_clients_language(gql: GraphQL) -> None:
    headers = {"content-type": "application/json"}
    zh = await gql.client.post("/graphql", content=b"1", headers=headers)
    en = await gql.client.post(
        "/graphql", content=b"1", headers={**headers, "accept-language": "en"}
    )
    assert "请求格式不正确" in zh.json()["errors"][0]["message"]
    assert en.json()["errors"][0]["message"].startswith("The request is not well formed")


async def test_a_multipart_request_that_does_not_fit_is_a_coded_400(gql: GraphQL) -> None:
    headers = {"Authorization": f"Bearer {gql.token('hb_wang_jianguo')}"}
    operations = json.dumps({"query": "{ provinces { code } }", "variables": {}})
    for mapping in ("not json", json.dumps({"0": ["variables.nowhere.file"]}), "[1]"):
        response = await gql.client.post(
            "/graphql",
            data={"operations": operations, "map": mapping},
            files={"1": ("doc", b"%PDF-1.4", "application/pdf")},
            headers=headers,
        )
        assert response.status_code == 400, (mapping, response.text)
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


BIND = """mutation Bind($input: BindMutualAidInput!) { bindMutualAid(input: $input) {
  errors { code } } }"""
RECORDS = """query Q($first: Int!, $role: RecordRole!, $since: Date) { me {
  spendingRecords(role: $role, first: $first, since: $since) { edges { node { amount } } } } }"""


@pytest.mark.parametrize(
    ("document", "variables", "variable", "at"),
    [
        (BIND, {}, "input", "input"),
        (BIND, {"input": "x"}, "input", "input"),
        (
            BIND,
            {"input": {"beneficiaryCertNo": 1, "beneficiaryName": "李秀英", "relation": "SPOUSE"}},
            "input",
            "input.beneficiaryCertNo",
        ),
        (RECORDS, {"first": 1, "role": "NOPE"}, "role", "role"),
        (RECORDS, {"first": 2**40, "role": "AUTHORIZER"}, "first", "first"),
        (RECORDS, {"first": 1, "role": "AUTHORIZER", "since": "2026-02-30"}, "since", "since"),
        (RECORDS, {"first": 1, "role": None}, "role", "role"),
    ],
    ids=["missing", "wrong type", "wrong field type", "enum", "int over 32 bits", "date", "null"],
)
async def test_a_variable_that_does_not_fit_is_bad_user_input_naming_it(
    gql: GraphQL,
    caplog: pytest.LogCaptureFixture,
    document: str,
    variables: dict[str, Any],
    variable: str,
    at: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    result = await gql(document, variables, as_="hb_wang_jianguo")
    assert result["data"] is None
    [error] = result["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "variable": variable, "at": at}
    assert f"${variable}" in error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_refused_variable_leaves_no_personal_data_in_answer_or_log(
    gql: GraphQL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # as served: aiosqlite's DEBUG lines are off (gateway.ops.logs)
    relative = person("hb_li_xiuying")
    given = {
        "beneficiaryCertNo": relative["certNo"],
        "beneficiaryName": relative["name"],
        "relation": "SPOUSE",
        "phone": "13800138000",  # no such field
    }
    response = await gql.client.post(
        "/graphql",
        json={"query": BIND, "variables": {"input": given}},
        headers={"Authorization": f"Bearer {gql.token('hb_wang_jianguo')}"},
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    for secret in (relative["certNo"], relative["name"], "13800138000"):
        assert secret not in response.text
        assert secret not in caplog.text


@pytest.mark.parametrize(
    "amount", ["１００", "٣٠٠", "1_000.00", "-0", "-0.00", " 5", "1e3", "3.333"]
)
async def test_money_is_ascii_decimal_only(gql: GraphQL, amount: str) -> None:
    settle = """mutation S($input: SettleInput!) { settle(input: $input) { errors { code } } }"""
    result = await gql(
        settle,
        {
            "input": {
                "patientCertNo": person("hb_wang_jianguo")["certNo"],
                "medicalType": "OUTPATIENT",
                "totalAmount": amount,
                "fundPaid": "0",
                "idempotencyKey": "abuse-1",
            }
        },
        as_="hb_wang_jianguo",
    )
    [error] = result["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["at"] == "input.totalAmount"
    assert "Money" in error["message"]  # the scalar's own reason


async def test_a_json_body_has_its_own_small_limit(gql: GraphQL) -> None:
    padded = json.dumps({"query": "{ provinces { code } }" + " " * 70_000}).encode()
    response = await gql.client.post(
        "/graphql", content=padded, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
    within = json.dumps({"query": "{ provinces { code } }" + " " * 60_000}).encode()
    response = await gql.client.post(
        "/graphql", content=within, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert "errors" not in response.json()


@pytest.mark.parametrize(
    "headers",
    [{"x-pad": "a" * 17_000}, {f"x-pad-{i}": "a" for i in range(120)}],
    ids=["large", "many"],
)
async def test_headers_are_limited(gql: GraphQL, headers: dict[str, str]) -> None:
    response = await gql.client.post(
        "/graphql", json={"query": "{ provinces { code } }"}, headers=headers
    )
    assert response.status_code == 431
    assert response.json()["errors"][0]["extensions"]["code"] == "HEADERS_TOO_LARGE"


# -- free text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["a\x01b", "\x7f", "a\x85", "\ufffe", "x" * 501],
    ids=["C0", "DEL", "C1", "noncharacter", "too long"],
)
async def test_free_text_in_a_variable_is_refused_at_the_edge(gql: GraphQL, text: str) -> None:
    given = {
        "beneficiaryCertNo": person("hb_li_xiuying")["certNo"],
        "beneficiaryName": text,
        "relation": "SPOUSE",
        "commitmentSigned": True,
    }
    result = await gql(BIND, {"input": given}, as_="hb_wang_jianguo")
    [error] = result["errors"]
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "variable": "input",
        "at": "input.beneficiaryName",
    }
    assert result["data"] is None  # nothing ran: no province was asked


@pytest.mark.parametrize(
    "literal",
    ['"a\\u0001b"', '"""a\x0bb"""', '"' + "x" * 501 + '"'],
    ids=["escape", "block", "long"],
)
async def test_free_text_in_a_literal_is_refused_before_it_runs(gql: GraphQL, literal: str) -> None:
    document = (
        'mutation { bindMutualAid(input: { beneficiaryCertNo: "x", relation: SPOUSE,'
        f" beneficiaryName: {literal} }}) {{ errors {{ code }} }} }}"
    )
    result = await gql(document, as_="hb_wang_jianguo")
    assert [e["extensions"]["code"] for e in result["errors"]] == ["BAD_USER_INPUT"]


async def test_text_with_line_breaks_and_tabs_is_text(gql: GraphQL) -> None:
    given = {
        "beneficiaryCertNo": person("hb_li_xiuying")["certNo"],
        "beneficiaryName": "李秀英",
        "relation": "SPOUSE",
        "commitmentSigned": True,
        "dryRun": True,
    }
    result = await gql(BIND, {"input": given}, as_="hb_wang_jianguo")
    assert "errors" not in result
    literal = '{ mutualAidDiagnosis(relativeCertNo: "a\\tb\\nc") { works } }'
    result = await gql(literal, as_="hb_wang_jianguo")
    assert all(e["extensions"]["code"] != "BAD_USER_INPUT" for e in result.get("errors", []))


# -- uploads: the token verifies before the body is read, in every key mode -------------


async def test_an_upload_with_a_bad_token_is_refused_unread_with_a_jwks_url() -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from gateway.edge.limits import BodyLimit
    from gateway.ops.config import AuthSettings, RateLimits
    from tests.browser import served
    from tests.keys import AUTH as KEYS_AUTH
    from tests.keys import JWKS_FILE, provider_token

    read: list[bytes] = []

    async def reader(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        read.append(message.get("body", b""))
        await PlainTextResponse("read")(scope, receive, send)

    async def jwks(request: Any) -> PlainTextResponse:
        return PlainTextResponse(JWKS_FILE.read_text(), media_type="application/json")

    async with served(Starlette(routes=[Route("/jwks.json", jwks)])) as origin:
        auth = AuthSettings(secret=KEYS_AUTH.secret, jwks_url=f"{origin}/jwks.json")
        app = BodyLimit(reader, max_upload_bytes=10**6, limits=RateLimits(), auth=auth)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            upload = {"files": {"0": ("doc", b"%PDF-1.4", "application/pdf")}}
            refused = await client.post(
                "/graphql",
                headers={"Authorization": "Bearer x"},
                **upload,  # type: ignore[arg-type]
            )
            assert refused.status_code == 401
            assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            assert read == []  # not a byte read
            token = provider_token(person("hb_wang_jianguo")["certNo"], auth)
            taken = await client.post(
                "/graphql",
                headers={"Authorization": f"Bearer {token}"},
                **upload,  # type: ignore[arg-type]
            )
            assert taken.text == "read"
