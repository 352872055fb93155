"""Variables checked against the operation before anything runs.

A value that does not fit its variable's type (missing, the wrong type, an
unknown enum value, an Int beyond 32 bits, an invalid date, ``null`` for a
non-null) is the client's mistake: ``BAD_USER_INPUT``, naming the variable and
where in it, never an internal error. graphql-core's own messages quote the value
(a name, a phone number), so none of them reaches the answer or the log; only a
reason our own scalars give (`InputError`) does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    VariableDefinitionNode,
    get_variable_values,
    is_input_type,
    type_from_ast,
    validate_input_value,
)
from graphql.pyutils import Undefined
from strawberry.extensions import SchemaExtension

from gateway.messages import Language, fault_message
from gateway.operation import chosen

MAX_ERRORS = 10


class InputError(ValueError):
    """A scalar's refusal of a client's value, in words a client may read."""


def _reason(error: BaseException | None) -> str | None:
    while error is not None:
        if isinstance(error, InputError):
            return str(error)
        error = getattr(error, "original_error", None) or error.__cause__
    return None


def _where(schema: GraphQLSchema, definition: VariableDefinitionNode, given: Any) -> str:
    """The path inside the variable's value to its first invalid part ("" for the whole)."""
    kind = type_from_ast(schema, definition.type)
    if given is Undefined or given is None or not is_input_type(kind):
        return ""
    paths: list[list[str | int]] = []
    try:
        validate_input_value(given, kind, lambda _error, path: paths.append(list(path)))
    except RecursionError:
        return ""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in (paths or [[]])[0])


def refusals(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
    lang: Language,
) -> list[GraphQLError]:
    """The operation's variables that do not fit their types, as client errors."""
    result = get_variable_values(
        schema,
        operation.variable_definitions or (),
        dict(variables),
        max_errors=MAX_ERRORS,
        hide_suggestions=True,
    )
    if not isinstance(result, list):
        return []
    errors = []
    for error in result:
        node = error.nodes[0] if error.nodes else None
        extensions: dict[str, Any] = {"code": "BAD_USER_INPUT"}
        message = fault_message("BAD_USER_INPUT", lang)
        if isinstance(node, VariableDefinitionNode):
            name = node.variable.name.value
            at = name + _where(schema, node, variables.get(name, Undefined))
            extensions.update(variable=name, at=at)
            message += f" (${name}: {at})" if at != name else f" (${name})"
        reason = _reason(error)
        if reason is not None:
            message += f": {reason}"
        errors.append(GraphQLError(message, node, extensions=extensions))
    return errors


class Variables(SchemaExtension):
    """Refuses an operation whose variables do not fit, before it runs."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        operation = chosen(ctx.graphql_document, ctx.operation_name)
        if operation is not None and operation.variable_definitions:
            lang: Language = getattr(ctx.context, "lang", "zh")
            errors = refusals(ctx.schema._schema, operation, ctx.variables or {}, lang)
            if errors:
                ctx.result = GraphQLExecutionResult(data=None, errors=errors)
        yield
