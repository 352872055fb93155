"""Moving windows of the rate limits, kept in the store that instances share.

The `limits` library counts the windows (`limits.aio.strategies.MovingWindowRateLimiter`);
this is a storage for it, so that a subject's or an address's uses are counted once
whichever instance they reach. One row per use in ``rate_hit``; taking an entry is one
transaction holding the key (`Tx.lock`), so two instances never both take the last one.
"""

from __future__ import annotations

import time

from limits.aio.storage import MovingWindowSupport, Storage

from gateway.state.store import Store

PRUNE_EVERY = 1000  # entries taken between sweeps of every key's expired uses


class StoreWindows(Storage, MovingWindowSupport):
    STORAGE_SCHEME: list[str] | None = ["gongji+store"]  # noqa: RUF012 (as limits declares it)

    def __init__(self, store: Store) -> None:
        super().__init__()
        self._store = store
        self._taken = 0
        self._longest = 0  # the longest window asked for, in seconds

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return Exception  # the backend's own: a store that fails fails the request

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        now = time.time()
        self._longest = max(self._longest, expiry)
        self._taken += 1
        async with self._store.transaction() as db:
            await db.lock(f"rate:{key}")
            await db.execute("DELETE FROM rate_hit WHERE key = ? AND at <= ?", (key, now - expiry))
            if self._taken % PRUNE_EVERY == 0:  # keys no longer used
                await db.execute("DELETE FROM rate_hit WHERE at <= ?", (now - self._longest,))
            row = await db.fetchone("SELECT COUNT(*) FROM rate_hit WHERE key = ?", (key,))
            used = 0 if row is None else int(row[0])
            if amount > limit or used + amount > limit:
                return False
            await db.executemany(
                "INSERT INTO rate_hit (key, at) VALUES (?, ?)", [(key, now)] * amount
            )
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        async with self._store.transaction() as db:
            row = await db.fetchone(
                "SELECT MIN(at), COUNT(*) FROM rate_hit WHERE key = ? AND at > ?",
                (key, now - expiry),
            )
        if row is None or not row[1]:
            return now, 0
        return float(row[0]), int(row[1])

    async def check(self) -> bool:
        try:
            await self._store.check_writable()
        except Exception:
            return False
        return True

    async def reset(self) -> int | None:
        async with self._store.transaction() as db:
            return await db.execute("DELETE FROM rate_hit")

    async def clear(self, key: str) -> None:
        async with self._store.transaction() as db:
            await db.execute("DELETE FROM rate_hit WHERE key = ?", (key,))

    # The fixed-window strategies' counters: the gateway counts moving windows only.

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("the store keeps moving windows only")

    async def get(self, key: str) -> int:
        raise NotImplementedError("the store keeps moving windows only")

    async def get_expiry(self, key: str) -> float:
        raise NotImplementedError("the store keeps moving windows only")
