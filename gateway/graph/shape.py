"""How much a document asks, measured in one pass before graphql-core validates it.

Depth, aliases and cost are properties of an operation with its fragments inlined,
and inlining is exponential in a document's size: a chain of fragments that each
spread the next twice doubles with every link. Here each fragment is measured once
and its measure reused wherever it is spread, so the pass is linear in the document.
A document over a limit is refused here, before graphql-core's own rules (some of
them quadratic in repeated fields) see it; a document within the limits is then
validated by graphql-core once and the result kept (`Validation`).

The limits (each refused with its own ``extensions.code``):

- depth (``QUERY_TOO_DEEP``): fields nested in fields; introspection fields and
  what is under them do not count;
- aliases (``TOO_MANY_ALIASES``): every alias, as often as its fragment is spread;
- cost (``QUERY_TOO_COSTLY``): each field costs one, times the sizes of the lists
  around it (a connection's ``first``, 20 by default, 100 when given as a variable;
  any other list, 10);
- repeats (``TOO_MANY_REPEATS``): the same response key asked more than a few
  times in one selection set (graphql-core compares every pair of them).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from gateway.graph.operation import CACHED_QUERY_BYTES, graphql_schema
from gateway.graph.variables import text_refusal

CONNECTION_PAGE = 20  # a connection's default `first`
VARIABLE_PAGE = 100  # a `first` given as a variable: the largest page there is
LIST_SIZE = 10  # what any other list is taken to hold (a family, a province list)
# Measures stop growing here: far over every limit, and numbers stay small even for
# a document built to overflow them.
_CEILING = 10**9
LONGEST_INT = 100  # digits of an integer literal
# Distinct documents whose validation is kept. The apps ship about twenty; each kept
# document is some 600 objects the collector walks in every full pass: 512 of them
# made a pass take about 120 ms (a stall every client felt, bench/RESULTS.md), 64 take
# about 15 ms.
VALIDATED_DOCUMENTS = 64


@dataclasses.dataclass(frozen=True)
class Limits:
    depth: int = 10  # no query of this schema needs more than 7
    aliases: int = 20
    cost: int = 5000
    repeats: int = 20  # one response key in one selection set


@dataclasses.dataclass(frozen=True)
class Measure:
    """A selection set's measure: ``cost`` per unit of the lists around it."""

    cost: int = 0
    depth: int = 0
    aliases: int = 0
    repeats: int = 0  # the most uses of one response key in one selection set

    def __add__(self, other: Measure) -> Measure:
        return Measure(
            min(self.cost + other.cost, _CEILING),
            max(self.depth, other.depth),
            min(self.aliases + other.aliases, _CEILING),
            max(self.repeats, other.repeats),
        )


_NOTHING = Measure()


def _unwrap(kind: Any) -> tuple[Any, bool]:
    is_list = False
    while isinstance(kind, GraphQLNonNull | GraphQLList):
        if isinstance(kind, GraphQLList):
            is_list = True
        kind = kind.of_type
    return kind, is_list


def _page(node: FieldNode, connection: bool) -> int:
    for argument in node.arguments or ():
        if argument.name.value == "first":
            value = argument.value
            if isinstance(value, IntValueNode):
                digits = value.value.lstrip("-")
                # a literal too long for an Int is refused by validation; here it is large
                return _CEILING if len(digits) > 9 else max(1, int(value.value))
            if isinstance(value, VariableNode):
                return VARIABLE_PAGE  # known only at run time: the largest page
    return CONNECTION_PAGE if connection else LIST_SIZE


class _Measurer:
    """Measures the selection sets of one document; each fragment once."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        # each fragment's measure, and the uses of each response key at its top level
        self.measured: dict[str, tuple[Measure, dict[str, int]]] = {}
        self.literals: list[GraphQLError] = []  # literal values refused, the first few
        self.open: set[str] = set()  # fragments being measured: a cycle counts nothing

    def fragment(self, name: str) -> tuple[Measure, dict[str, int]]:
        if name in self.measured:
            return self.measured[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.open:  # unknown or a cycle: validation says so
            return _NOTHING, {}
        self.open.add(name)
        self.values(fragment)
        parent = self.schema.get_type(fragment.type_condition.name.value)
        self.measured[name] = self._level(fragment.selection_set, parent)
        self.open.discard(name)
        return self.measured[name]

    def selections(self, selections: SelectionSetNode | None, parent: Any) -> Measure:
        """The measure of a selection set on ``parent``, repeats counted at its level."""
        measure, keys = self._level(selections, parent)
        most = max(keys.values(), default=0)
        return measure + Measure(repeats=most)

    def _level(
        self, selections: SelectionSetNode | None, parent: Any
    ) -> tuple[Measure, dict[str, int]]:
        """A selection set's measure and the uses of each response key at its own
        level (through inline fragments and spreads, which merge into it)."""
        total = _NOTHING
        keys: dict[str, int] = {}
        for selection in selections.selections if selections else ():
            if isinstance(selection, FieldNode):
                key = (selection.alias or selection.name).value
                keys[key] = min(keys.get(key, 0) + 1, _CEILING)
                total += self._field(selection, parent)
                continue
            self.values(selection)
            if isinstance(selection, InlineFragmentNode):
                inner: Any = parent
                if selection.type_condition is not None:
                    inner = self.schema.get_type(selection.type_condition.name.value)
                measure, more = self._level(selection.selection_set, inner)
            elif isinstance(selection, FragmentSpreadNode):
                measure, more = self.fragment(selection.name.value)
            else:  # pragma: no cover - graphql-core has no other selection
                continue
            total += measure
            for key, uses in more.items():
                keys[key] = min(keys.get(key, 0) + uses, _CEILING)
        return total, keys

    def values(self, owner: Any, *more: ValueNode) -> None:
        """Checks the literal values of a node's arguments and directives (and ``more``):
        integers no longer than `LONGEST_INT` digits (Python refuses over 4,300, in words
        that would reach the client), text as `gateway.graph.variables.text_refusal` allows."""
        pending = [*more, *(a.value for a in getattr(owner, "arguments", None) or ())]
        for directive in owner.directives or ():
            pending += [a.value for a in directive.arguments or ()]
        while pending and len(self.literals) < 10:
            value = pending.pop()
            if isinstance(value, ListValueNode):
                pending += value.values
            elif isinstance(value, ObjectValueNode):
                pending += [f.value for f in value.fields]
            elif isinstance(value, IntValueNode) and len(value.value.lstrip("-")) > LONGEST_INT:
                message = f"An integer literal has more than {LONGEST_INT} digits."
                self.literals.append(_refusal(message, value, "GRAPHQL_VALIDATION_FAILED"))
            elif isinstance(value, StringValueNode):
                reason = text_refusal(value.value)
                if reason is not None:
                    message = f"A string literal is not valid text: {reason}"
                    self.literals.append(_refusal(message, value, "BAD_USER_INPUT"))

    def _field(self, node: FieldNode, parent: Any) -> Measure:
        self.values(node)
        name = node.name.value
        field = None
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            field = parent.fields.get(name)
        kind, is_list = _unwrap(field.type) if field is not None else (None, False)
        inner = self.selections(node.selection_set, kind) if node.selection_set else _NOTHING
        aliases = (1 if node.alias else 0) + inner.aliases
        if name.startswith("__"):  # introspection: neither deep nor costly
            return Measure(aliases=aliases, repeats=inner.repeats)
        cost = 0
        if field is not None:  # an unknown field costs nothing: validation refuses it
            # a connection's size counts once: its `edges` are that many, not more
            connection = getattr(kind, "name", "").endswith("Connection")
            paged = getattr(parent, "name", "").endswith("Connection")
            size = 1 if paged or not (is_list or connection) else _page(node, connection)
            cost = min(1 + size * inner.cost, _CEILING)
        depth = 1 + inner.depth if node.selection_set else 0
        return Measure(cost, depth, aliases, inner.repeats)


def check(schema: GraphQLSchema, document: DocumentNode, limits: Limits) -> list[GraphQLError]:
    """The document's refusals under ``limits``, in one pass over it."""
    measurer = _Measurer(schema, document)
    roots = {OperationType.QUERY: schema.query_type, OperationType.MUTATION: schema.mutation_type}
    errors: list[GraphQLError] = []
    aliases = 0
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode):
            continue
        measurer.values(operation)
        for definition in operation.variable_definitions or ():
            default = definition.default_value
            measurer.values(definition, *([default] if default is not None else []))
        measure = measurer.selections(operation.selection_set, roots.get(operation.operation))
        aliases += measure.aliases
        name = operation.name.value if operation.name else "anonymous"
        if measure.depth > limits.depth:
            message = f"'{name}' exceeds maximum operation depth of {limits.depth}"
            errors.append(_refusal(message, operation, "QUERY_TOO_DEEP"))
        if measure.repeats > limits.repeats:
            message = f"'{name}' asks for one field more than {limits.repeats} times in one place"
            errors.append(_refusal(message, operation, "TOO_MANY_REPEATS"))
        if measure.cost > limits.cost:
            cost = "over a billion" if measure.cost >= _CEILING else measure.cost
            message = f"The query's cost of {cost} exceeds the maximum of {limits.cost}."
            errors.append(_refusal(message, operation, "QUERY_TOO_COSTLY"))
    errors[:0] = measurer.literals  # a literal that is not a value comes first
    if aliases > limits.aliases:
        count = "over a billion" if aliases >= _CEILING else aliases
        message = f"{count} aliases found. Allowed: {limits.aliases}"
        errors.append(_refusal(message, None, "TOO_MANY_ALIASES"))
    return errors


def _refusal(message: str, node: Node | None, code: str) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": code})


class Validated:
    """The documents that passed `Validation`, by their text: the few a front end sends
    over and over, parsed and validated once (up to `VALIDATED_DOCUMENTS` of them, none
    longer than `CACHED_QUERY_BYTES`). One per schema; a document's validity against
    one schema does not change while the process runs.

    A refused document is never kept, nor anything it made: a stream of refusals,
    each new, leaves nothing behind for the collector to walk again and again, so
    refusing stays as cheap on the thousandth as on the first.
    """

    def __init__(self) -> None:
        self._documents: OrderedDict[str, DocumentNode] = OrderedDict()

    def get(self, query: str | None) -> DocumentNode | None:
        document = None if query is None else self._documents.get(query)
        if document is not None:
            self._documents.move_to_end(query)  # type: ignore[arg-type]
        return document

    def keep(self, query: str, document: DocumentNode) -> None:
        if len(query) > CACHED_QUERY_BYTES:
            return
        self._documents[query] = document
        if len(self._documents) > VALIDATED_DOCUMENTS:
            self._documents.popitem(last=False)

    def holds(self, document: DocumentNode) -> bool:
        """Whether ``document`` is one kept here (so is the same object next time)."""
        loc = document.loc
        return loc is not None and self._documents.get(loc.source.body) is document


class Parsed(SchemaExtension):
    """A validated document's text is not parsed again: its kept document is used.
    Anything else is left to Strawberry's own parsing (which reports a document that
    does not parse as a request error, coded by `ErrorBoundary`)."""

    def __init__(self, validated: Validated) -> None:
        self._validated = validated  # one per schema: Strawberry makes one per operation

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        document = self._validated.get(ctx.query)
        if document is not None:
            ctx.graphql_document = document
        yield


class Validation(SchemaExtension):
    """The limits above, then graphql-core's validation; a document that passes both
    is kept (`Validated`) and not validated again. A document over a limit never
    reaches graphql-core's rules."""

    def __init__(self, limits: Limits, validated: Validated) -> None:
        self.limits = limits
        self._validated = validated  # one per schema: Strawberry makes one per operation

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        if document is None:
            yield  # nothing parsed: nothing to validate
            return
        if not self._validated.holds(document):
            schema = graphql_schema(ctx.schema)
            errors = check(schema, document, self.limits) or validate_document(
                schema, document, ctx.validation_rules
            )
            if not errors and ctx.query is not None:
                self._validated.keep(ctx.query, document)
            ctx.pre_execution_errors = errors
        else:
            ctx.pre_execution_errors = []
        yield
