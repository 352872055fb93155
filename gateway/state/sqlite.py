"""The store in SQLite, through aiosqlite: the embedded default, for one process.

One connection, taken in turns: a transaction has it to itself from its first
statement to its commit, so what it checks stays true until it writes (`Tx.lock`
has nothing more to do). The data directory is this process's alone
(`gateway.state.store.lock_data_dir`), so the leases a process that died left
behind are given up at start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.state.migrations import (
    LATEST,
    RECORD,
    VERSION_TABLE,
    pending,
    recorded,
    statements,
)
from gateway.state.store import (
    Counts,
    Row,
    Store,
    Tx,
    lock_data_dir,
    unlock_data_dir,
)


class _Tx:
    def __init__(self, db: aiosqlite.Connection, counts: Counts) -> None:
        self._db = db
        self._counts = counts
        self.notified: set[str] = set()  # told once the transaction commits

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        self._counts.statements += 1
        # one round trip to the store's thread a statement, where a cursor takes three
        return list(await self._db.execute_fetchall(sql, args))

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        self._counts.statements += 1
        rows = await self._db.execute_fetchall(sql, args)
        return next(iter(rows), None)

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        self._counts.statements += 1
        async with self._db.execute(sql, args) as cur:
            return cur.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._counts.statements += 1
        await self._db.executemany(sql, rows)

    async def lock(self, *names: str) -> None:
        return None  # the connection is this transaction's alone until it ends

    async def notify(self, channel: str) -> None:
        self.notified.add(channel)  # one process: its own listeners are everyone


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, db: aiosqlite.Connection, lock: int | None = None) -> None:
        super().__init__(shared=False)
        self._db = db
        self._lock = lock  # the data directory's lock file, held while open
        # One connection: interleaved statements, cursors and commits from
        # concurrent requests misuse it (sqlite3.InterfaceError). Take turns.
        self._turn = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | None, *, upto: int = LATEST) -> SqliteStore:
        """The store at ``path`` (None: in memory, for tests), migrated (to ``upto``),
        its directory taken for this process (`DataDirInUse` if another has it)."""
        lock = None if path is None else lock_data_dir(path.parent)
        try:
            db = await aiosqlite.connect(str(path) if path else ":memory:")
            try:
                await db.execute("PRAGMA journal_mode=WAL")
                # WAL without an fsync per commit: a commit survives the process being
                # killed (SIGKILL included); only a power cut may lose the last ones
                await db.execute("PRAGMA synchronous=NORMAL")
                store = cls(db, lock)
                store.migrated = await store.migrate(upto)
                async with store.transaction() as tx:  # this process holds the directory
                    await tx.execute("DELETE FROM lease")
            except BaseException:
                await db.close()  # else its thread keeps the process alive
                raise
        except BaseException:
            if lock is not None:
                unlock_data_dir(lock)
            raise
        return store

    async def migrate(self, upto: int = LATEST) -> list[int]:
        """Apply the migrations this store has not had, up to ``upto``; those applied."""
        async with self.transaction() as tx:
            await tx.execute(VERSION_TABLE)
            had = {int(r[0]) for r in await tx.fetch("SELECT version FROM schema_version")}
        applied = []
        for migration in pending(had, upto):
            async with self.transaction() as tx:
                await tx.execute("BEGIN")  # sqlite3 would run each CREATE on its own
                for statement in statements(migration, self.dialect):
                    await tx.execute(statement)
                await tx.execute(RECORD, recorded(migration))
            applied.append(migration.version)
        return applied

    async def close(self) -> None:
        """Close after the transaction under way, if any (an outcome being recorded),
        then give the data directory back."""
        try:
            async with self._turn:
                await self._db.close()
        finally:
            if self._lock is not None:
                lock, self._lock = self._lock, None
                unlock_data_dir(lock)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """Reads open no transaction (sqlite3 begins one before a write only), so a block
        that only read costs no round trip to the store's thread for a commit."""
        async with self._turn:
            self.counts.transactions += 1
            tx = _Tx(self._db, self.counts)
            try:
                yield tx
                if self._db.in_transaction:
                    # a commit can fail too (a full disk): then it is rolled back, not
                    # left open for the next caller's statements to join
                    await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise
        for channel in tx.notified:
            self._heard(channel)
