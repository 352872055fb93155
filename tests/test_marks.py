"""What the gateway watches is declared with each field (`gateway.graph.marks`): the audit and
the rate limit follow the marks, a field that shows other people cannot be left
unmarked, and a read of other people that the audit cannot record is not answered."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import (
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    get_named_type,
)

from gateway.graph.audit import AuditLog
from gateway.graph.marks import Watched, watched
from gateway.graph.operation import graphql_schema
from gateway.graph.schema import build_schema
from tests.conftest import GraphQL

# A type that shows a person: it carries an ID number (masked or not).
PERSON_FIELD = "certNo"


def _reached(start: GraphQLNamedType, schema: GraphQLSchema) -> set[str]:
    """The names of the types a field's answer can contain, itself included."""
    seen: set[str] = set()
    pending = [start]
    while pending:
        named = pending.pop()
        if named.name in seen:
            continue
        seen.add(named.name)
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            pending += [get_named_type(f.type) for f in named.fields.values()]
        elif isinstance(named, GraphQLUnionType):
            pending += list(named.types)
    return seen


def _shows_people(name: str, schema: GraphQLSchema) -> bool:
    found = schema.get_type(name)
    return isinstance(found, GraphQLObjectType | GraphQLInterfaceType) and (
        PERSON_FIELD in found.fields
    )


def test_every_field_that_shows_other_people_is_audited() -> None:
    """Walks the graph: a field of Query or Me whose answer can hold a person (other than
    the caller, `Me`), or that takes an argument naming one, is marked audited."""
    strawberry_schema = build_schema()
    schema = graphql_schema(strawberry_schema)
    marked = watched(strawberry_schema)
    unmarked = []
    for root, audited in (("Query", marked.audited), ("Me", marked.audited_of_me)):
        found = schema.get_type(root)
        assert isinstance(found, GraphQLObjectType)
        for name, field in found.fields.items():
            if (root, name) == ("Query", "me"):
                continue  # the caller's own; each field of Me is judged here
            shown = _reached(get_named_type(field.type), schema) - {"Me"}
            names_someone = any(a.lower().endswith(("certno", "id")) for a in field.args)
            if (any(_shows_people(t, schema) for t in shown) or names_someone) and (
                name not in audited
            ):
                unmarked.append(f"{root}.{name}")
    assert unmarked == []
    # the walk sees people where they are (else it would pass on any schema)
    assert {"kinshipReviewQueue", "node", "mutualAidDiagnosis"} <= marked.audited
    assert {"family", "mutualAidBindings", "spendingRecords"} <= marked.audited_of_me


def test_the_marks_are_read_from_the_declarations() -> None:
    marked = Watched.of(build_schema())
    assert marked.limited == {"mutualAidDiagnosis"}
    assert "provinces" not in marked.audited
    assert "account" not in marked.audited_of_me


class _Down(Exception):
    pass


@pytest.fixture
def audit_down(monkeypatch: pytest.MonkeyPatch) -> None:
    async def append(self: AuditLog, entry: Any) -> None:
        raise _Down("the store is full")

    monkeypatch.setattr(AuditLog, "append", append)


async def test_a_read_of_others_the_audit_cannot_record_is_not_answered(
    gql: GraphQL, audit_down: None
) -> None:
    family = "{ me { family { relative { name } } } }"
    response = await gql.client.post(
        "/graphql",
        json={"query": family},
        headers={
            "Authorization": f"Bearer {gql.token('hb_wang_jianguo')}",
            "Accept": "application/graphql-response+json",
        },
    )
    assert response.status_code == 503
    answer = response.json()
    assert answer["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
    assert answer.get("data") is None
    assert "王静" not in response.text
    # a read of one's own (not audited) is answered as ever
    mine = await gql("{ me { name } }", as_="hb_wang_jianguo")
    assert mine == {"data": {"me": {"name": "王建国"}}}


async def test_a_write_stands_when_the_audit_cannot_record_it(
    gql: GraphQL, audit_down: None
) -> None:
    bound = await gql.bind("hb_wang_jianguo", "hb_wang_jing", "CHILD")
    assert bound["errors"] == []
    assert bound["binding"]["status"] == "ACTIVE"
    found = await gql(
        "{ me { mutualAidBindings { asAuthorizer { beneficiary { name } } } } }",
        as_="hb_wang_jianguo",
    )  # (a read of others: withheld while the audit is down)
    assert found["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
