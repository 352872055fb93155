"""What an operation asks for, as one walker reads it (`gateway.graph.operation`): fields that
``@skip`` or ``@include`` leave out do not run, so the rate limit does not count them,
the audit does not record them, and nothing is fetched ahead for them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from graphql import OperationDefinitionNode, parse

from gateway.graph.operation import me_fields, top_fields
from gateway.ops.config import RateLimits, Settings
from gateway.provinces.federated import adapter_classes
from tests.conftest import GraphQL, person
from tests.test_audit_truth import audit, bind_input


def walked(document: str, variables: dict[str, Any] | None = None) -> list[str]:
    parsed = parse(document)
    [operation] = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    return top_fields(operation, parsed, variables)


def test_skip_and_include_leave_fields_out_literally_or_through_variables() -> None:
    document = """query($yes: Boolean!, $no: Boolean = false) {
      a @include(if: true)
      b @skip(if: true)
      c @include(if: $yes) @skip(if: $no)
      d @include(if: $no)
      ... @skip(if: $yes) { e }
      ...F @include(if: $yes)
    }
    fragment F on Query { f }"""
    assert walked(document, {"yes": True}) == ["a", "c", "f"]
    assert walked(document, {"yes": True, "no": True}) == ["a", "d", "f"]
    assert walked(document, {"yes": False}) == ["a", "e"]


def test_a_condition_that_cannot_be_decided_leaves_its_field_in() -> None:
    """A variable left out or not a boolean refuses the operation: counted all the same."""
    document = "query($x: Boolean!) { me { name } provinces @include(if: $x) { code } }"
    assert walked(document) == ["me", "provinces"]
    assert walked(document, {"x": "false"}) == ["me", "provinces"]
    assert walked(document, {"x": False}) == ["me"]


def test_the_fields_of_one_me_are_those_asked_under_its_key() -> None:
    document = parse(
        """query($f: Boolean!) { a: me { name } b: me { ...M } me { account { balance } } }
        fragment M on Me { family @include(if: $f) { relative { name } } mutualAidBindings {
          asAuthorizer { id } } }"""
    )
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    assert me_fields(operation, document, {"f": True}, key="a") == {"name"}
    assert me_fields(operation, document, {"f": True}, key="b") == {"family", "mutualAidBindings"}
    assert me_fields(operation, document, {"f": False}, key="b") == {"mutualAidBindings"}
    assert me_fields(operation, document, {"f": False}) == {"name", "mutualAidBindings", "account"}


def test_the_walk_is_linear_however_fragments_spread_each_other() -> None:
    links = 40  # inlined, 2**40 fields
    fragments = "".join(
        f"fragment F{i} on Me {{ name ...F{i + 1} ...F{i + 1} }}\n" for i in range(links)
    )
    text = f"{{ me {{ ...F0 }} }}\n{fragments}fragment F{links} on Me {{ family {{ kind }} }}"
    document = parse(text)
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    started = time.perf_counter()
    assert me_fields(operation, document, {}) == {"name", "family"}
    assert time.perf_counter() - started < 1.0


class TestRateLimitedUses:
    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(data_dir=None, limits=RateLimits(per_subject="2/minute"))

    async def test_a_mutation_field_left_out_is_not_a_use(self, gql: GraphQL) -> None:
        bind = """mutation($i: BindMutualAidInput!, $twice: Boolean = false) {
          bindMutualAid(input: $i) { status }
          again: bindMutualAid(input: $i) @include(if: $twice) { status } }"""
        given = {"i": bind_input("hb_wang_jing", dryRun=True)}
        for _ in range(2):  # one use each
            assert "errors" not in await gql(bind, given, as_="hb_wang_jianguo")
        limited = await gql(bind, given, as_="hb_wang_jianguo")
        assert limited["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # an alias included is a use of its own: two at once fill the window
        assert "errors" not in await gql(bind, {**given, "twice": True}, as_="hb_li_xiuying")
        limited = await gql(bind, given, as_="hb_li_xiuying")
        assert limited["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_a_refused_operation_is_audited_with_the_fields_that_would_have_run(
    gql: GraphQL, settings: Settings
) -> None:
    document = """mutation($i: BindMutualAidInput!, $id: ID!, $no: Boolean!) {
      bindMutualAid(input: $i) { status }
      unbindMutualAid(bindingId: $id) @include(if: $no) { status } }"""
    variables = {"i": bind_input("hb_wang_jing", relation="NEIGHBOUR"), "id": "x", "no": False}
    refused = await gql(document, variables, as_="hb_wang_jianguo")
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    (entry, *_) = await audit(gql, settings)
    assert (entry["fields"], entry["outcome"]) == (["bindMutualAid"], "BAD_USER_INPUT")


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (
            "query($c: String!, $no: Boolean!) { provinces { code }"
            " mutualAidDiagnosis(relativeCertNo: $c) @include(if: $no) { works } }",
            {"c": person("hb_wang_jing")["certNo"]},
        ),
        ("query($no: Boolean!) { me { name family @include(if: $no) { relative { name } } } }", {}),
    ],
    ids=["diagnosis", "family"],
)
async def test_a_read_of_others_left_out_is_not_audited(
    gql: GraphQL, settings: Settings, query: str, variables: dict[str, Any]
) -> None:
    await audit(gql, settings)
    assert "errors" not in await gql(query, {**variables, "no": False}, as_="hb_wang_jianguo")
    (last, *_) = await audit(gql, settings)
    assert last["fields"] == ["auditLog"]  # the read before: nothing was logged between
    assert "errors" not in await gql(query, {**variables, "no": True}, as_="hb_wang_jianguo")
    (last, *_) = await audit(gql, settings)
    assert last["fields"] != ["auditLog"]


async def test_what_me_is_asked_through_fragments_starts_before_the_caller_is_found(
    gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the caller's province remembered, their family screen is asked of it while
    it is asked who they are."""
    await gql("{ me { name } }", as_="hb_wang_jianguo")  # where he is insured: remembered
    events: list[str] = []
    for cls in adapter_classes().values():
        find_persons, relatives = cls.find_persons, cls.relatives

        async def slow_find(self: Any, *args: Any, _real: Any = find_persons) -> Any:
            await asyncio.sleep(0.05)
            events.append("found")
            return await _real(self, *args)

        async def noted(self: Any, *args: Any, _real: Any = relatives) -> Any:
            events.append("relatives")
            return await _real(self, *args)

        monkeypatch.setattr(cls, "find_persons", slow_find)
        monkeypatch.setattr(cls, "relatives", noted)
    query = """query($f: Boolean = true) { me { ...Screen @include(if: $f) } }
      fragment Screen on Me { family { relative { name } } }"""
    result = await gql(query, as_="hb_wang_jianguo")
    assert "errors" not in result, result
    assert events.index("relatives") < events.index("found")
