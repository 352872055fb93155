"""Leases: one holder at a time for a piece of work, across every instance on the store.

A write being sent, a transfer being driven, a key's outcome being made, a change feed
being read: each is held under a name for `lease_seconds`, renewed by its holder while
it works (every third of that), and given back when it is done. An instance that dies
leaves its leases to run out, and another takes the work over. Within one process a
lock comes first, so that those waiting here do not ask the store in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from gateway.state.store import Store

log = logging.getLogger(__name__)

POLL = 0.05  # seconds between asks while another instance holds a lease


class Busy(RuntimeError):
    """Another instance held the lease for longer than we could wait."""


class Locks:
    """One lock per key while anyone holds or waits for it (then forgotten)."""

    def __init__(self) -> None:
        self._held: dict[Any, tuple[asyncio.Lock, int]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._held

    @contextlib.asynccontextmanager
    async def hold(self, key: Any) -> AsyncIterator[None]:
        lock, users = self._held.get(key, (asyncio.Lock(), 0))
        self._held[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[key]
            if users == 1:
                del self._held[key]
            else:
                self._held[key] = (lock, users - 1)


class Leases:
    def __init__(self, store: Store, *, seconds: float = 30.0) -> None:
        self._store = store
        self.seconds = seconds
        self._here = Locks()

    def __contains__(self, name: object) -> bool:
        """Held, or waited for, by this process."""
        return name in self._here

    @contextlib.asynccontextmanager
    async def hold(self, name: str, *, wait: float | None = None) -> AsyncIterator[None]:
        """Hold ``name`` for the block, waiting for whoever holds it (up to ``wait``
        seconds, then `Busy`; None: three lease lengths)."""
        patience = 3 * self.seconds if wait is None else wait
        async with self._here.hold(name):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + patience
            while not await self._store.take_lease(name, self.seconds):
                if loop.time() >= deadline:
                    raise Busy(name)
                await asyncio.sleep(POLL)
            async with self._held(name):
                yield

    @contextlib.asynccontextmanager
    async def lease(self, name: str, *, wait: bool) -> AsyncIterator[bool]:
        """`hold` (then True) when ``wait``, else `attempt`."""
        if wait:
            async with self.hold(name):
                yield True
        else:
            async with self.attempt(name) as taken:
                yield taken

    @contextlib.asynccontextmanager
    async def attempt(self, name: str) -> AsyncIterator[bool]:
        """Hold ``name`` for the block if nobody does (True), else do not wait (False)."""
        if name in self._here:
            yield False
            return
        async with self._here.hold(name):
            if not await self._store.take_lease(name, self.seconds):
                yield False
                return
            async with self._held(name):
                yield True

    @contextlib.asynccontextmanager
    async def _held(self, name: str) -> AsyncIterator[None]:
        """Renew the taken lease ``name`` while the block runs; give it back after."""
        renewing = asyncio.get_running_loop().create_task(self._renew(name))
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            try:
                # shielded: a cancelled holder still gives the lease back
                await asyncio.shield(self._store.release_lease(name))
            except Exception:  # it runs out by itself
                log.warning("lease %s: not given back; it runs out", name, exc_info=True)

    async def _renew(self, name: str) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                if not await self._store.take_lease(name, self.seconds):
                    log.error("lease %s: taken over by another instance", name)
                    return
            except Exception:
                log.warning("lease %s: not renewed this time", name, exc_info=True)
