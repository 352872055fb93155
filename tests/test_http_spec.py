"""GraphQL over HTTP: the graphql-http audit, and what each kind of answer looks like."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.edge.app import create_app
from gateway.ops.config import RateLimits, Settings
from sandbox.serve import serving
from tests.conftest import GraphQL, gateway

ROOT = Path(__file__).resolve().parent.parent
RESPONSE_JSON = "application/graphql-response+json"


async def test_the_graphql_http_audit_finds_no_error_and_no_warning() -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed (scripts/install needs it too)"
    assert (ROOT / "playground" / "node_modules" / "graphql-http").is_dir(), "run scripts/install"
    app = create_app(Settings(data_dir=None))
    async with serving(app) as url:
        audit = await asyncio.create_subprocess_exec(
            node,
            str(ROOT / "tests" / "graphql_http_audit.mjs"),
            f"{url}/graphql",
            str(ROOT / "playground"),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(audit.communicate(), 60)
    assert audit.returncode == 0
    results: list[dict[str, Any]] = json.loads(out)
    assert len(results) > 50
    failing = [r for r in results if r["status"] in ("error", "warn")]
    assert failing == []
    # what remains are notices about GET, which stays off for operations on purpose
    assert all("GET" in r["name"] for r in results if r["status"] == "notice")


async def post(gql: GraphQL, body: dict[str, Any], accept: str | None, **headers: str) -> Any:
    if accept is not None:
        headers["accept"] = accept
    return await gql.client.post("/graphql", json=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "{ provinces { code }"}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ provinse { code } }"}, "GRAPHQL_VALIDATION_FAILED"),
        (
            {
                "query": "query($f: Int!) { me { spendingRecords(role: AUTHORIZER, first: $f)"
                " { edges { node { amount } } } } }",
                "variables": {"f": "x"},
            },
            "BAD_USER_INPUT",
        ),
        ({"query": "{" + " provinces { code }" * 21 + "}"}, "TOO_MANY_REPEATS"),
    ],
    ids=["parse", "validation", "coercion", "limit"],
)
async def test_a_request_not_executed_is_a_400_without_data(
    gql: GraphQL, body: dict[str, Any], code: str
) -> None:
    response = await post(gql, body, RESPONSE_JSON)
    assert response.status_code == 400
    assert response.headers["content-type"] == f"{RESPONSE_JSON}; charset=utf-8"
    answer = response.json()
    assert "data" not in answer
    assert answer["errors"][0]["extensions"]["code"] == code
    # the legacy media type keeps its 200 and its data: null
    legacy = await post(gql, body, "application/json")
    assert legacy.status_code == 200
    assert legacy.headers["content-type"] == "application/json"
    assert legacy.json()["data"] is None
    assert legacy.json()["errors"][0]["extensions"]["code"] == code


async def test_an_executed_request_is_a_200_even_with_errors(gql: GraphQL) -> None:
    response = await post(gql, {"query": "{ me { name } }"}, RESPONSE_JSON)  # not signed in
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(RESPONSE_JSON)
    answer = response.json()
    assert "data" in answer
    assert answer["errors"][0]["path"] == ["me"]


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (f"{RESPONSE_JSON}, application/json", RESPONSE_JSON),
        (f"application/json, {RESPONSE_JSON};q=0.9", "application/json"),
        (f"{RESPONSE_JSON};q=0.5, text/html", RESPONSE_JSON),
    ],
)
async def test_the_media_type_follows_accept(gql: GraphQL, accept: str | None, media: str) -> None:
    response = await post(gql, {"query": "{ provinces { code } }"}, accept)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media


async def test_an_accept_with_no_json_is_a_406(gql: GraphQL) -> None:
    response = await post(gql, {"query": "{ provinces { code } }"}, "text/html")
    assert response.status_code == 406
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"


async def test_a_rate_limited_request_is_a_429() -> None:
    settings = Settings(data_dir=None, limits=RateLimits(per_subject="1/minute"))
    diagnosis = '{ mutualAidDiagnosis(relativeCertNo: "x") { __typename } }'
    async with gateway({}, settings) as gql:
        headers = {"Authorization": f"Bearer {gql.token('hb_wang_jianguo')}"}
        first = await post(gql, {"query": diagnosis}, RESPONSE_JSON, **headers)
        second = await post(gql, {"query": diagnosis}, RESPONSE_JSON, **headers)
    assert first.status_code == 200, first.text
    assert second.status_code == 429
    assert second.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
