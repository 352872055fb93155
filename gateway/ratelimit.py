"""Rate limits on what costs or reveals most: every mutation, and the diagnosis.

Counted per subject (the token's ID number) and per client address, in moving
windows (the `limits` library), in this process's memory: with several gateway
processes each counts its own share. Over a limit, the whole operation is
refused with ``RATE_LIMITED`` and ``retryAfter`` (seconds).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator

from graphql import OperationDefinitionNode, OperationType
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from strawberry.extensions import SchemaExtension

from gateway.config import RateLimits
from gateway.errors import GatewayError

# Queries limited like mutations: they answer questions about other people.
LIMITED_QUERIES = frozenset({"mutualAidDiagnosis"})


class RateLimiter:
    def __init__(self, settings: RateLimits) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._subject: RateLimitItem = parse(settings.per_subject)
        self._address: RateLimitItem = parse(settings.per_address)

    async def retry_after(self, subject: str | None, address: str | None) -> int | None:
        """Count one operation; seconds to wait if it is over a limit, else None."""
        checks = []
        if subject is not None:
            checks.append((self._subject, f"subject:{subject}"))
        if address is not None:
            checks.append((self._address, f"address:{address}"))
        for item, key in checks:
            if not await self._limiter.hit(item, key):
                stats = await self._limiter.get_window_stats(item, key)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None


def _top_fields(operation: OperationDefinitionNode) -> Iterator[str]:
    for selection in operation.selection_set.selections:
        name = getattr(selection, "name", None)
        if name is not None:
            yield name.value


class RateLimit(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        context = ctx.context
        operation = next(
            (
                d
                for d in (ctx.graphql_document.definitions if ctx.graphql_document else ())
                if isinstance(d, OperationDefinitionNode)
                and (ctx.operation_name is None or (d.name and d.name.value == ctx.operation_name))
            ),
            None,
        )
        if operation is not None and (
            operation.operation is OperationType.MUTATION
            or LIMITED_QUERIES.intersection(_top_fields(operation))
        ):
            caller = getattr(context, "caller", None)
            wait = await context.services.rate_limiter.retry_after(
                caller.cert_no if caller else None, getattr(context, "client", None)
            )
            if wait is not None:
                raise GatewayError("RATE_LIMITED", context.lang, retryAfter=wait)
        yield
