"""Rate limits on what costs or reveals most: every mutation, and the query fields
marked limited where they are declared (`gateway.graph.marks`: the diagnosis).

Counted per subject (the token's ID number) and per client address, in moving
windows (the `limits` library): in this process's memory with SQLite (one process),
in the store when instances share one (`gateway.state.windows`), so that a limit
holds whichever instance a use reaches. Over a limit, the whole operation is
refused with ``RATE_LIMITED`` and ``retryAfter`` (seconds), and audited as such.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

from graphql import ExecutionResult, GraphQLError, OperationType
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from strawberry.extensions import SchemaExtension

from gateway.graph.errors import GatewayError
from gateway.graph.marks import watched
from gateway.graph.operation import chosen, top_fields
from gateway.ops.config import RateLimits
from gateway.state.store import Store
from gateway.state.windows import StoreWindows


class RateLimiter:
    def __init__(self, settings: RateLimits, store: Store | None = None) -> None:
        """Counted in ``store`` when it is shared, else in memory."""
        storage: MemoryStorage | StoreWindows = (
            StoreWindows(store) if store is not None and store.shared else MemoryStorage()
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._subject: RateLimitItem = parse(settings.per_subject)
        self._address: RateLimitItem = parse(settings.per_address)

    async def retry_after(
        self, subject: str | None, address: str | None, hits: int = 1
    ) -> int | None:
        """Count ``hits`` uses; seconds to wait if that is over a limit, else None."""
        checks = []
        if subject is not None:
            checks.append((self._subject, f"subject:{subject}"))
        if address is not None:
            checks.append((self._address, f"address:{address}"))
        for item, key in checks:
            if not await self._limiter.hit(item, key, cost=hits):
                stats = await self._limiter.get_window_stats(item, key)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None


class RateLimit(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        context = ctx.context
        operation = chosen(ctx.graphql_document, ctx.operation_name)
        if operation is not None and ctx.graphql_document is not None:
            used = top_fields(operation, ctx.graphql_document, ctx.variables)
            # every use counts: each mutation field, each query field marked limited
            # (`gateway.graph.marks`), aliases included
            if operation.operation is OperationType.MUTATION:
                hits = len(used)
            else:
                limited = watched(ctx.schema).limited
                hits = sum(name in limited for name in used)
            if hits:
                caller = getattr(context, "caller", None)
                wait = await context.services.rate_limiter.retry_after(
                    caller.cert_no if caller else None, getattr(context, "client", None), hits
                )
                if wait is not None:
                    # the answer, not a raise: a raise here would skip what the outer
                    # extensions do after the operation (the audit, the metrics)
                    refused = GatewayError("RATE_LIMITED", context.lang, retryAfter=wait)
                    error = GraphQLError(
                        str(refused), original_error=refused, extensions=refused.extensions
                    )
                    ctx.result = ExecutionResult(data=None, errors=[error])
        yield
