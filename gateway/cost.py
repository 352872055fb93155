"""A query's cost, computed before it runs: each field costs one, times the sizes of the
lists around it (a connection's ``first``, 20 by default; any other list, 10).

Over `MAX_COST` the request is refused (``QUERY_TOO_COSTLY``) without touching a
province. Depth, alias and token limits bound the shape; this bounds the work.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
)

MAX_COST = 5000
CONNECTION_PAGE = 20  # a connection's default `first`
VARIABLE_PAGE = 100  # a `first` given as a variable: the largest page there is
LIST_SIZE = 10  # what any other list is taken to hold (a family, a province list)
COST_MESSAGE = "The query's cost of {cost} exceeds the maximum of {limit}."


def _unwrap(kind: Any) -> tuple[Any, bool]:
    is_list = False
    while isinstance(kind, GraphQLNonNull | GraphQLList):
        if isinstance(kind, GraphQLList):
            is_list = True
        kind = kind.of_type
    return kind, is_list


class CostLimit(ValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        schema = self.context.schema
        root = {
            OperationType.QUERY: schema.query_type,
            OperationType.MUTATION: schema.mutation_type,
        }.get(node.operation)
        if root is None:
            return
        cost = self._cost(node.selection_set, root, 1, set())
        if cost > MAX_COST:
            self.report_error(GraphQLError(COST_MESSAGE.format(cost=cost, limit=MAX_COST), node))

    def _cost(
        self, selections: SelectionSetNode | None, parent: Any, factor: int, seen: set[str]
    ) -> int:
        if selections is None or not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                field = parent.fields.get(selection.name.value)
                if field is None:
                    continue  # other rules report unknown fields
                kind, is_list = _unwrap(field.type)
                # a connection's size counts once: its `edges` are that many, not more
                paged = getattr(parent, "name", "").endswith("Connection")
                size = 1 if paged else self._size(selection, kind, is_list)
                total += factor + self._cost(selection.selection_set, kind, factor * size, seen)
            elif isinstance(selection, InlineFragmentNode):
                inner: Any = parent
                if selection.type_condition is not None:
                    inner = self.context.schema.get_type(selection.type_condition.name.value)
                total += self._cost(selection.selection_set, inner, factor, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.context.get_fragment(name)
                if fragment is None or name in seen:
                    continue
                spread: Any = self.context.schema.get_type(fragment.type_condition.name.value)
                total += self._cost(fragment.selection_set, spread, factor, seen | {name})
        return total

    def _size(self, node: FieldNode, kind: Any, is_list: bool) -> int:
        connection = getattr(kind, "name", "").endswith("Connection")
        if not (is_list or connection):
            return 1
        for argument in node.arguments or ():
            if argument.name.value == "first":
                if isinstance(argument.value, IntValueNode):
                    return max(1, int(argument.value.value))
                if isinstance(argument.value, VariableNode):
                    return VARIABLE_PAGE  # known only at run time: the largest page
        return CONNECTION_PAGE if connection else LIST_SIZE
