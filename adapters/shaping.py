"""What a province can take, and what the gateway does beyond it.

A province declares (``[provinces.NAME]``) how many requests it takes at once
(``max_concurrent``) and how many a second (``max_per_second``, as a leaky bucket:
aiolimiter). Each attempt to reach it waits for a place, at most ``queue_seconds``;
then it is shed, not sent (`UpstreamOverloaded`: a coded, retryable fault), so that a
province at its limit is not pushed past it and its callers learn at once instead of
queueing behind it. Each province has its own places: one that is saturated never
holds up requests to the others. Shedding is not the province failing: its breaker
does not count it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiolimiter import AsyncLimiter

from adapters.faults import UpstreamOverloaded


class Shaper:
    def __init__(
        self,
        *,
        max_concurrent: int = 0,
        max_per_second: float = 0.0,
        queue_seconds: float = 0.5,
    ) -> None:
        """0 for ``max_concurrent`` or ``max_per_second``: no such limit."""
        self._slots = asyncio.Semaphore(max_concurrent) if max_concurrent else None
        self._rate = AsyncLimiter(max_per_second, 1.0) if max_per_second else None
        self._queue_seconds = queue_seconds
        self.shed = 0  # requests shed since the start

    @property
    def limited(self) -> bool:
        return self._slots is not None or self._rate is not None

    @contextlib.asynccontextmanager
    async def place(self, what: str, *, province: str) -> AsyncIterator[None]:
        """A place for one attempt at the province, held while the block runs; raises
        `UpstreamOverloaded` when none comes free within ``queue_seconds``."""
        if not self.limited:
            yield
            return
        held: asyncio.Semaphore | None = None  # the slot taken, to give back
        try:
            async with asyncio.timeout(self._queue_seconds):
                if self._rate is not None:
                    await self._rate.acquire()
                if self._slots is not None:
                    await self._slots.acquire()
                    held = self._slots
        except TimeoutError:
            self.shed += 1
            raise UpstreamOverloaded(
                f"{what}: shed after {self._queue_seconds} s waiting for a place",
                province=province,
                reached=False,
            ) from None
        try:
            yield
        finally:
            if held is not None:
                held.release()
