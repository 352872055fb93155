"""The store in PostgreSQL, through asyncpg's pool: shared by several instances.

asyncpg rather than psycopg 3: its pool is its own (psycopg's is a second package),
it needs no libpq on the machine (its wheels carry the protocol), and it is the
fastest driver for asyncio; LISTEN/NOTIFY is there when events must cross instances.
Statements keep SQLite's ``?``; they are numbered (``$1``...) once each.

Transactions run at READ COMMITTED. What a transaction checks and then writes (the
kinship limits) holds across instances by `Tx.lock`: transaction-scoped advisory
locks, taken in one order so that two transactions never wait for each other.
Migrations run under a session advisory lock, so instances starting together
migrate once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from gateway.ops.config import StoreSettings
from gateway.state.migrations import (
    LATEST,
    RECORD,
    VERSION_TABLE,
    pending,
    recorded,
    statements,
)
from gateway.state.store import Counts, Row, Store, Tx

log = logging.getLogger(__name__)

MIGRATING = 0x67_6F_6E_67_6A_69  # the advisory lock migrations hold ("gongji")
_MARK = re.compile(r"\?")


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``sql`` with each ``?`` numbered as PostgreSQL wants (``$1``, ``$2``...). The
    gateway's statements have no ``?`` inside a quoted string."""
    count = 0

    def number(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return _MARK.sub(number, sql)


def _touched(status: str) -> int:
    """The rows a command's status names (``UPDATE 3``, ``INSERT 0 1``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Tx:
    def __init__(
        self, conn: asyncpg.Connection | PoolConnectionProxy, counts: Counts, schema: str
    ) -> None:
        self._conn = conn
        self._counts = counts
        self._schema = schema

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        self._counts.statements += 1
        # a Record is read like a tuple (by index, unpacked)
        return cast(list[Row], await self._conn.fetch(numbered(sql), *args))

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        self._counts.statements += 1
        return cast(Row | None, await self._conn.fetchrow(numbered(sql), *args))

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        self._counts.statements += 1
        return _touched(await self._conn.execute(numbered(sql), *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._counts.statements += 1
        rows = list(rows)
        if rows:
            await self._conn.executemany(numbered(sql), rows)

    async def lock(self, *names: str) -> None:
        for name in sorted(set(names)):  # one order for everyone: no deadlock
            await self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)

    async def notify(self, channel: str) -> None:
        self._counts.statements += 1
        # sent at commit; a channel is the database's: named by the schema too
        await self._conn.execute("SELECT pg_notify($1, '')", f"{self._schema}:{channel}")


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool, settings: StoreSettings) -> None:
        super().__init__(shared=True, location_seconds=settings.location_seconds)
        self._pool = pool
        self.settings = settings
        self._listening: asyncpg.Connection | None = None  # LISTEN's own connection

    @classmethod
    async def open(cls, settings: StoreSettings, *, upto: int = LATEST) -> PostgresStore:
        """A pool on ``settings.url`` (its tables in ``settings.schema``), migrated (to
        ``upto``)."""
        pool = await asyncpg.create_pool(
            settings.url,
            min_size=1,
            max_size=settings.pool_size,
            server_settings={"search_path": settings.schema, "application_name": "gongji"},
        )
        store = cls(pool, settings)
        try:
            store.migrated = await store.migrate(upto)
        except BaseException:
            await pool.close()
            raise
        return store

    async def migrate(self, upto: int = LATEST) -> list[int]:
        """Apply the migrations this store has not had, up to ``upto``; those applied.
        One instance at a time: the others wait, then find nothing left to do."""
        applied = []
        async with self._pool.acquire() as conn:
            # first the lock: two CREATE SCHEMA IF NOT EXISTS at once can both try to
            # create it, and one of them fails
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATING)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.settings.schema}"')
                await conn.execute(VERSION_TABLE)
                had = {int(r[0]) for r in await conn.fetch("SELECT version FROM schema_version")}
                for migration in pending(had, upto):
                    async with conn.transaction():
                        for statement in statements(migration, self.dialect):
                            await conn.execute(statement)
                        await conn.execute(numbered(RECORD), *recorded(migration))
                    applied.append(migration.version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATING)
        return applied

    async def listen(self, channel: str, heard: Callable[[], None]) -> None:
        """On a connection of its own (a pooled one goes back to the pool, and its
        LISTEN with it): every instance's notifications, this one's too."""
        first = channel not in self._listeners
        await super().listen(channel, heard)
        if not first:
            return
        if self._listening is None:
            self._listening = await asyncpg.connect(
                self.settings.url, server_settings={"application_name": "gongji-listen"}
            )
        # channels are the database's: one per schema, stores of other schemas apart
        await self._listening.add_listener(f"{self.settings.schema}:{channel}", self._notified)

    def _notified(self, _conn: Any, _pid: int, channel: str, _payload: object) -> None:
        self._heard(channel.partition(":")[2])

    async def close(self) -> None:
        """Give back this instance's leases (the writes it was still sending are the
        others' to finish at once, not after the leases run out), then close."""
        try:
            async with asyncio.timeout(2.0), self.transaction() as db:
                await db.execute("DELETE FROM lease WHERE owner = ?", (self.owner,))
        except Exception:  # they run out by themselves
            log.warning("store: leases not given back at close; they run out", exc_info=True)
        if self._listening is not None:
            await self._listening.close()
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        self.counts.transactions += 1
        async with self._pool.acquire() as conn, conn.transaction():
            yield _Tx(conn, self.counts, self.settings.schema)
