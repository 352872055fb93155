"""What an operation asks for, fragments and aliases included: for rate limits and audit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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


def fields(selections: Iterable[SelectionSetNode], document: DocumentNode) -> Iterator[FieldNode]:
    """The fields of these selection sets at their own level, through inline fragments
    and spreads, each fragment expanded once: linear in the document, however its
    fragments spread each other. Fields that share a response key all come (GraphQL
    runs them as one field, their selections merged)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    expanded: set[str] = set()
    pending = list(selections)
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in expanded:
                    expanded.add(name)
                    pending.append(fragments[name].selection_set)


def top_fields(operation: OperationDefinitionNode, document: DocumentNode) -> list[str]:
    """The top-level fields, one entry per response key (an alias is another use; the
    same key twice is one field)."""
    used = {
        (f.alias or f.name).value: f.name.value for f in fields([operation.selection_set], document)
    }
    return list(used.values())


def me_fields(operation: OperationDefinitionNode, document: DocumentNode) -> set[str]:
    """The fields asked of `me`, however reached."""
    asked = [
        f.selection_set
        for f in fields([operation.selection_set], document)
        if f.name.value == "me" and f.selection_set is not None
    ]
    return {f.name.value for f in fields(asked, document)}
