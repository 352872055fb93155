"""What an operation asks for, fragments, aliases, ``@skip`` and ``@include`` included:
for rate limits, the audit and work started ahead (`gateway.graph.prefetch`).

One walker (`fields`) serves them all. A field that ``@skip`` or ``@include`` leaves
out does not run, so it is nothing here: not a use the rate limit counts, not a
field the audit records (nor, for an operation refused before it ran, one that
would have run), and nothing is fetched ahead for it. A condition that is not a
boolean (a variable left out or refused, which refuses the operation) leaves its
field in: what cannot be decided is counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
    VariableNode,
    value_from_ast_untyped,
)

# A document longer than this (padding, say) is parsed, validated and walked anew for
# each request, never kept: the caches hold only the few documents front ends send.
CACHED_QUERY_BYTES = 32 * 1024


def chosen(document: DocumentNode | None, name: str | None) -> OperationDefinitionNode | None:
    """The operation that runs: the one named, or the only one."""
    if document is None:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == name), None)


def included(selection: SelectionNode, variables: Mapping[str, Any]) -> bool:
    """Whether ``@skip(if:)`` and ``@include(if:)`` leave ``selection`` in, their
    conditions literal or variables."""
    for directive in selection.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        condition = next((a.value for a in directive.arguments or () if a.name.value == "if"), None)
        value: Any = None
        if isinstance(condition, BooleanValueNode):
            value = condition.value
        elif isinstance(condition, VariableNode):
            value = variables.get(condition.name.value)
        if (name == "skip" and value is True) or (name == "include" and value is False):
            return False
    return True


def fields(
    selections: Iterable[SelectionSetNode], document: DocumentNode, variables: Mapping[str, Any]
) -> Iterator[FieldNode]:
    """The fields of these selection sets at their own level that run with these
    ``variables`` (`included`), through inline fragments and spreads, each fragment
    expanded once: linear in the document, however its fragments spread each other.
    Fields that share a response key all come (GraphQL runs them as one field, their
    selections merged)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    expanded: set[str] = set()
    pending = list(selections)
    while pending:
        for selection in pending.pop().selections:
            if not included(selection, variables):
                continue
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in expanded:
                    expanded.add(name)
                    pending.append(fragments[name].selection_set)


def _values(operation: OperationDefinitionNode, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The operation's variables: those ``given``, else their defaults."""
    found = {
        d.variable.name.value: value_from_ast_untyped(d.default_value)
        for d in operation.variable_definitions or ()
        if d.default_value is not None
    }
    found.update(given or {})
    return found


def top_fields(
    operation: OperationDefinitionNode, document: DocumentNode, variables: Mapping[str, Any] | None
) -> list[str]:
    """The top-level fields that run, one entry per response key (an alias is another
    use; the same key twice is one field)."""
    used = {
        (f.alias or f.name).value: f.name.value
        for f in fields([operation.selection_set], document, _values(operation, variables))
    }
    return list(used.values())


def me_fields(
    operation: OperationDefinitionNode,
    document: DocumentNode,
    variables: Mapping[str, Any] | None,
    key: str | None = None,
) -> set[str]:
    """The fields asked of `me` that run, however reached; of the `me` answered under
    the response key ``key`` only, when given."""
    given = _values(operation, variables)
    asked = [
        f.selection_set
        for f in fields([operation.selection_set], document, given)
        if f.name.value == "me"
        and f.selection_set is not None
        and (key is None or (f.alias or f.name).value == key)
    ]
    return {f.name.value for f in fields(asked, document, given)}


@runtime_checkable
class Compiled(Protocol):
    """A schema that shows the graphql-core schema it runs on (`gateway.graph.schema`'s does)."""

    @property
    def graphql_schema(self) -> GraphQLSchema: ...


def graphql_schema(schema: object) -> GraphQLSchema:
    """The graphql-core schema an operation runs on, for the extensions that check a
    document or its variables against it (``ExecutionContext.schema`` is ``schema``)."""
    if not isinstance(schema, Compiled):
        raise TypeError(f"{type(schema).__name__} does not show its graphql-core schema")
    return schema.graphql_schema
