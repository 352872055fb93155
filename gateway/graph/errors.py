"""Faults that reach clients as GraphQL errors, each with ``extensions.code``.

    GatewayError                    the only exception whose message a client sees
    ├── code UNAUTHENTICATED        no token, or a token that does not verify
    └── code UPSTREAM_*             a province failed (mapped from adapters.base.UpstreamError)

Anything else is an internal fault: the client gets ``INTERNAL_ERROR`` and a
request id; the operator finds the traceback in the log under that id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from adapters.base import UpstreamError, UpstreamOverloaded
from gateway.common.messages import Language, fault_message
from gateway.ops.logs import mask_cert_nos

log = logging.getLogger("gateway.graph.errors")


class GatewayError(Exception):
    def __init__(self, code: str, lang: Language, **extensions: Any) -> None:
        super().__init__(fault_message(code, lang))
        self.extensions: dict[str, Any] = {"code": code, **extensions}


# graphql-core reports a document over the token limit and one that does not parse as
# the same exception (GraphQLSyntaxError); only its message tells them apart. Every
# other refusal before execution is coded where it is made (`gateway.graph.shape`,
# `gateway.graph.variables`), or is graphql-core's validation.
_REQUEST_ERRORS = (  # the first marker found in the message names the error
    ("Document contains more than", "TOO_MANY_TOKENS"),
    ("Syntax Error", "GRAPHQL_PARSE_FAILED"),
)
_SUGGESTION = re.compile(r" ?Did you mean .*\?$")


class ErrorBoundary(SchemaExtension):
    """Maps every error of an operation onto what a client may see."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [self._public(error) for error in result.errors]

    def _request_error(self, error: GraphQLError) -> GraphQLError:
        """A request refused before it ran (syntax, validation, limits): coded; in
        production without the "Did you mean ...?" hints that map the schema."""
        if error.extensions and "code" in error.extensions:
            return error
        code = next(
            (code for marker, code in _REQUEST_ERRORS if marker in error.message),
            "GRAPHQL_VALIDATION_FAILED",
        )
        message = error.message
        services = getattr(self.execution_context.context, "services", None)
        if services is not None and services.settings.production:
            message = _SUGGESTION.sub("", message)
        return GraphQLError(
            message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": code},
        )

    def _public(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, GatewayError):
            return error  # our own
        if original is None or "Document contains more than" in error.message:
            return self._request_error(error)
        cause = original
        while isinstance(cause, GraphQLError) and cause.original_error is not None:
            cause = cause.original_error  # graphql-core wraps a scalar's error in another
        if error.path is None and isinstance(cause, ValueError | ArithmeticError):
            # a variable our scalars refused (e.g. Money "12.345"), before anything ran:
            # the message is the scalar's own
            return GraphQLError(
                error.message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                extensions={"code": "BAD_USER_INPUT"},
            )
        context = self.execution_context.context
        lang: Language = getattr(context, "lang", "zh")
        request_id: str = getattr(context, "request_id", "-")
        if isinstance(original, UpstreamError):
            # shedding is the gateway keeping to what a province can take, not a fault:
            # counted in /metrics, logged quietly (under load it is every other request)
            level = logging.INFO if isinstance(original, UpstreamOverloaded) else logging.WARNING
            log.log(
                level,
                "request %s: province %s: %s: %s",
                request_id,
                original.province,
                original.code,
                mask_cert_nos(str(original)),  # dialects may carry ID numbers in URLs
            )
            code = original.code
            extra: dict[str, Any] = {"province": original.province}
            if isinstance(original, UpstreamOverloaded):
                extra["retryAfter"] = original.retry_after
        else:
            log.error("request %s: internal error", request_id, exc_info=original)
            code, extra = "INTERNAL_ERROR", {}
        return GraphQLError(
            fault_message(code, lang),
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": code, "requestId": request_id, **extra},
        )
