"""What the gateway watches about a field of the graph, declared with the field.

A query field that reads another person's data (or may) is audited: every use
is in the audit log, with whom it named. One that costs or reveals much is also
rate limited, like a mutation::

    @strawberry.field(description="...", metadata=AUDITED)
    @strawberry.field(description="...", metadata=AUDITED_AND_LIMITED)

Every mutation is both, by rule: it acts for someone, and asks a province to
write. `Watched.of` reads the marks of a schema once; the audit
(`gateway.graph.audit`) and the rate limit (`gateway.graph.ratelimit`) ask it, and a test
walks the schema for a field that shows other people and is not marked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import strawberry
from strawberry.types.base import StrawberryObjectDefinition

_AUDITED = "gongji.audited"
_LIMITED = "gongji.limited"

AUDITED: Mapping[str, bool] = MappingProxyType({_AUDITED: True})
AUDITED_AND_LIMITED: Mapping[str, bool] = MappingProxyType({_AUDITED: True, _LIMITED: True})

# The types whose fields are marked: the roots a client starts from, and `me`.
_QUERY, _ME = "Query", "Me"


@dataclass(frozen=True)
class Watched:
    """The marked fields of one schema, by their GraphQL names."""

    audited: frozenset[str]  # fields of Query
    audited_of_me: frozenset[str]  # fields of Me
    limited: frozenset[str]  # fields of Query (every mutation is limited)

    @classmethod
    def of(cls, schema: strawberry.Schema) -> Watched:
        def marked(type_name: str, mark: str) -> frozenset[str]:
            definition = schema.get_type_by_name(type_name)
            if not isinstance(definition, StrawberryObjectDefinition):
                raise LookupError(f"the schema has no object type {type_name}")
            convert = schema.config.name_converter.get_graphql_name
            return frozenset(
                convert(field) for field in definition.fields if field.metadata.get(mark)
            )

        return cls(
            audited=marked(_QUERY, _AUDITED),
            audited_of_me=marked(_ME, _AUDITED),
            limited=marked(_QUERY, _LIMITED),
        )


@runtime_checkable
class _Marked(Protocol):
    @property
    def watched(self) -> Watched: ...


def watched(schema: object) -> Watched:
    """What ``schema`` (an operation's, `ExecutionContext.schema`) watches."""
    if not isinstance(schema, _Marked):
        raise TypeError(f"{type(schema).__name__} declares no watched fields")
    return schema.watched
