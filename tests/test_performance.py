"""What keeps the gateway close to the upstream floor, checked as behaviour (the
figures themselves live in bench/RESULTS.md, never in timed tests)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

import gateway.graph.shape
from tests.conftest import GraphQL


async def test_each_document_is_parsed_and_validated_once(
    gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[Any] = []
    real = gateway.graph.shape.validate_document

    def counting(*args: Any) -> Any:
        validated.append(args[1])
        return real(*args)

    monkeypatch.setattr(gateway.graph.shape, "validate_document", counting)
    query = "query Once { provinces { code name } }"
    for _ in range(3):
        assert (await gql(query))["data"]["provinces"][0]["code"] == "13"
    assert len(validated) == 1
    # a document the schema refuses is refused every time, with its code, and checked
    # again each time: kept, a stream of new refusals would fill the memory
    for _ in range(2):
        wrong = await gql("query Twice { provinse { code } }")
        assert wrong["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert len(validated) == 3
    # and one that does not parse is not cached, and still coded
    broken = await gql("{ provinces { code }")
    assert broken["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_answers_are_json_as_the_standard_library_reads_it(gql: GraphQL) -> None:
    response = await gql.client.post("/graphql", json={"query": "{ provinces { name } }"})
    assert response.headers["content-type"].startswith("application/json")
    assert "河北省" in response.content.decode("utf-8")  # UTF-8, not \\u escapes
    assert response.json()["data"]["provinces"][0]["name"] == "河北省"


async def test_fields_left_out_by_include_are_not_fetched(
    gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import Counter

    from gateway.provinces.federated import adapter_classes
    from tests.test_family import counted

    await gql("{ me { name } }", as_="hb_wang_jianguo")  # where he is insured: remembered
    asked: Counter[tuple[str, str]] = Counter()
    for cls in adapter_classes().values():
        for kind in ("relatives", "bindings_of"):
            monkeypatch.setattr(cls, kind, counted(getattr(cls, kind), kind, asked))
    query = (
        "query($f: Boolean!) { me { name family @include(if: $f) { relative { name } }"
        " mutualAidBindings @skip(if: true) { asAuthorizer { id } } } }"
    )
    result = await gql(query, {"f": False}, as_="hb_wang_jianguo")
    assert result == {"data": {"me": {"name": "王建国"}}}
    await asyncio.sleep(0.05)
    assert not asked  # nothing was started for the fields left out


async def test_large_or_refused_documents_are_not_kept_in_the_caches(
    app: Starlette, gql: GraphQL
) -> None:
    from gateway.graph import audit
    from gateway.graph.operation import CACHED_QUERY_BYTES

    [schema] = [
        r.endpoint.schema for r in app.routes if isinstance(r, Route) and r.path == "/graphql"
    ]
    kept = schema.validated._documents
    before = len(kept)
    padded = "# " + "x" * CACHED_QUERY_BYTES + "\n{ provinces { code } }"
    assert (await gql(padded))["data"]["provinces"][0]["code"] == "13"
    assert len(kept) == before
    # nor in the audit's literals (each request's document is new: kept, it would pin
    # up to 512 of them), nor refused ones: a padded anonymous mutation is audited too
    bind = 'mutation {{ bindMutualAid(input: {{beneficiaryCertNo: "{}"}}) {{ status }} }}'
    literals = len(audit._LITERALS)
    for _ in range(3):
        await gql(bind.format("x" * CACHED_QUERY_BYTES))
        await gql(padded)
    assert len(audit._LITERALS) == literals
    # a small document that fails validation (a required field left out) is new on
    # every request too: neither it nor what it names is kept, however often it comes
    small = bind.format("130102197603150016")
    for _ in range(3):
        assert (await gql(small))["errors"]
    assert len(kept) == before
    assert len(audit._LITERALS) == literals
    # a valid one is kept, once, and is the same document next time
    query = "{ provinces { code } }"
    await gql(query)
    await gql(query)
    assert len(kept) == before + 1
    assert kept[query] is schema.validated.get(query)


async def test_a_forgotten_location_stays_forgotten() -> None:
    """A read racing a forget cannot put the forgotten location back in memory."""
    from gateway.state.sqlite import SqliteStore

    store = await SqliteStore.open(None)
    try:
        await store.remember_locations({"A": "13"})
        store._located.clear()  # as in a fresh process: the row only in the database
        read = asyncio.create_task(store.locations(["A"]))
        await asyncio.sleep(0)
        await store.forget_locations(["A"])
        await read
        assert await store.locations(["A"]) == {}
    finally:
        await store.close()
