"""What an operation asks for, fragments and aliases included: for rate limits and audit."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
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


def fields(
    selections: SelectionSetNode | None, document: DocumentNode, seen: frozenset[str] = frozenset()
) -> Iterator[FieldNode]:
    """Every field of a selection set at its own level (each alias once), through fragments."""
    if selections is None:
        return
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from fields(selection.selection_set, document, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                yield from fields(fragments[name].selection_set, document, seen | {name})


def top_fields(operation: OperationDefinitionNode, document: DocumentNode) -> list[str]:
    """The top-level fields, one entry per use (an alias is another use)."""
    return [f.name.value for f in fields(operation.selection_set, document)]


def me_fields(operation: OperationDefinitionNode, document: DocumentNode) -> set[str]:
    """The fields asked of `me`, however reached."""
    found: set[str] = set()
    for field in fields(operation.selection_set, document):
        if field.name.value == "me":
            found.update(f.name.value for f in fields(field.selection_set, document))
    return found
