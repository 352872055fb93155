"""Variables checked against the operation before anything runs, and the rule for text.

A value that does not fit its variable's type (missing, the wrong type, an
unknown enum value, an Int beyond 32 bits, an invalid date, ``null`` for a
non-null) is the client's mistake: ``BAD_USER_INPUT``, naming the variable and
where in it, never an internal error. graphql-core's own messages quote the value
(a name, a phone number), so none of them reaches the answer or the log; only a
reason our own scalars give (`InputError`) does. Every string a client sends, in a
variable or a literal (`gateway.graph.shape`), must be text (`text_refusal`).
"""

from __future__ import annotations

import re
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

from gateway.common.messages import Language, fault_message
from gateway.graph.operation import chosen, graphql_schema

MAX_ERRORS = 10
# Free text (names, reasons): no control characters but tab and line breaks (a
# province's XML cannot carry them), no noncharacters, and at most this many
# characters in any one string a client sends.
MAX_TEXT = 500
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


def text_refusal(text: str) -> str | None:
    """Why a client's string is not acceptable text, or None."""
    if len(text) > MAX_TEXT:
        return f"longer than {MAX_TEXT} characters"
    if _NOT_TEXT.search(text):
        return "it contains a control character"
    return None


def _texts(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, reason) of each unacceptable string inside a variable's raw value."""
    pending = [(value, path)]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            reason = text_refusal(value)
            if reason is not None:
                yield path, reason
        elif isinstance(value, dict):
            pending += [(v, f"{path}.{k}") for k, v in value.items()]
        elif isinstance(value, list):
            pending += [(v, f"{path}[{i}]") for i, v in enumerate(value)]


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
    if not isinstance(result, list):  # they fit: each must still be text
        texts = (
            (definition, at, reason)
            for definition in operation.variable_definitions or ()
            for at, reason in _texts(variables.get(definition.variable.name.value), "")
        )
        return [_refusal(lang, node, at, reason) for node, at, reason in texts][:MAX_ERRORS]
    errors = []
    for error in result:
        node = error.nodes[0] if error.nodes else None
        if isinstance(node, VariableDefinitionNode):
            name = node.variable.name.value
            at = _where(schema, node, variables.get(name, Undefined))
            errors.append(_refusal(lang, node, at, _reason(error)))
        else:
            errors.append(_refusal(lang, None, "", _reason(error)))
    return errors


def _refusal(
    lang: Language, node: VariableDefinitionNode | None, at: str, reason: str | None
) -> GraphQLError:
    """``BAD_USER_INPUT`` naming the variable and the path ``at`` inside its value."""
    message = fault_message("BAD_USER_INPUT", lang)
    extensions: dict[str, Any] = {"code": "BAD_USER_INPUT"}
    if node is not None:
        name = node.variable.name.value
        extensions.update(variable=name, at=name + at)
        message += f" (${name}{': ' + name + at if at else ''})"
    if reason is not None:
        message += f": {reason}"
    return GraphQLError(message, node, extensions=extensions)


class Variables(SchemaExtension):
    """Refuses an operation whose variables do not fit, before it runs."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        operation = chosen(ctx.graphql_document, ctx.operation_name)
        if operation is not None and operation.variable_definitions:
            lang: Language = getattr(ctx.context, "lang", "zh")
            errors = refusals(graphql_schema(ctx.schema), operation, ctx.variables or {}, lang)
            if errors:
                ctx.result = GraphQLExecutionResult(data=None, errors=errors)
        yield
