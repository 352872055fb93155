"""What keeps the gateway close to the upstream floor, checked as behaviour (the
figures themselves live in bench/RESULTS.md, never in timed tests)."""

from __future__ import annotations

from typing import Any

import pytest

import gateway.schema
from tests.conftest import GraphQL


async def test_each_document_is_parsed_and_validated_once(
    gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[Any] = []
    real = gateway.schema.validate_document

    def counting(*args: Any) -> Any:
        validated.append(args[1])
        return real(*args)

    monkeypatch.setattr(gateway.schema, "validate_document", counting)
    query = "query Once { provinces { code name } }"
    for _ in range(3):
        assert (await gql(query))["data"]["provinces"][0]["code"] == "13"
    assert len(validated) == 1
    # a document the schema refuses is refused every time, with its code
    for _ in range(2):
        wrong = await gql("query Twice { provinse { code } }")
        assert wrong["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert len(validated) == 2
    # and one that does not parse is not cached, and still coded
    broken = await gql("{ provinces { code }")
    assert broken["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_answers_are_json_as_the_standard_library_reads_it(gql: GraphQL) -> None:
    response = await gql.client.post("/graphql", json={"query": "{ provinces { name } }"})
    assert response.headers["content-type"].startswith("application/json")
    assert "河北省" in response.content.decode("utf-8")  # UTF-8, not \\u escapes
    assert response.json()["data"]["provinces"][0]["name"] == "河北省"
