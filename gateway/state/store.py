"""The gateway's own store (SQLite through aiosqlite).

One process per data directory: `Store.open` takes an exclusive lock on
``gateway.lock`` there (released at `Store.close`, or by the system when the
process dies), and a second process on the same directory is refused with
`DataDirInUse`. Two processes on one directory would each hold their own view of
what only one may hold: the kinship limits' counts, the embedded sandboxes'
balances, the outbox's writes in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path

import aiosqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS person_location (
    cert_no TEXT PRIMARY KEY,
    province TEXT NOT NULL,
    located_at TEXT NOT NULL
);

-- Kinship accounts (亲情账户): the national registry is the gateway's own.
CREATE TABLE IF NOT EXISTS kinship_link (
    id TEXT PRIMARY KEY,
    adder TEXT NOT NULL,
    adder_name TEXT NOT NULL,
    member TEXT NOT NULL,
    member_name TEXT NOT NULL,
    relation TEXT NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    decided_at TEXT,
    decided_by TEXT,
    reason TEXT,
    activated_at TEXT,
    ended_at TEXT,
    password_hash TEXT
);
CREATE INDEX IF NOT EXISTS kinship_link_adder ON kinship_link (adder);
CREATE INDEX IF NOT EXISTS kinship_link_member ON kinship_link (member);
CREATE UNIQUE INDEX IF NOT EXISTS kinship_link_live_pair ON kinship_link (adder, member)
    WHERE status IN ('PENDING_CONSENT', 'PENDING_REVIEW', 'APPROVED', 'ACTIVE');
CREATE TABLE IF NOT EXISTS kinship_document (
    id INTEGER PRIMARY KEY,
    link_id TEXT NOT NULL REFERENCES kinship_link (id),
    kind TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    recorded_cert_no TEXT NOT NULL,
    recorded_relation TEXT NOT NULL,
    content BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kinship_document_link ON kinship_document (link_id);
CREATE TABLE IF NOT EXISTS kinship_use (
    id INTEGER PRIMARY KEY,
    link_id TEXT NOT NULL REFERENCES kinship_link (id),
    at TEXT NOT NULL,
    treatment_area TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kinship_use_link ON kinship_use (link_id);

-- Authorization records (授权记录): what happened to mutual-aid bindings through the
-- gateway, with the channel it came through.
CREATE TABLE IF NOT EXISTS binding_event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    province TEXT NOT NULL,
    binding_id TEXT NOT NULL,
    authorizer TEXT NOT NULL,
    authorizer_name TEXT NOT NULL,
    beneficiary TEXT NOT NULL,
    beneficiary_name TEXT NOT NULL,
    relation TEXT NOT NULL,
    event TEXT NOT NULL,
    at TEXT NOT NULL,
    channel TEXT
);
CREATE INDEX IF NOT EXISTS binding_event_authorizer ON binding_event (authorizer);
CREATE INDEX IF NOT EXISTS binding_event_beneficiary ON binding_event (beneficiary);

-- The audit log: append-only (nothing here updates or deletes a row).
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    actor TEXT,
    roles TEXT NOT NULL,
    client TEXT,
    operation TEXT NOT NULL,
    fields TEXT NOT NULL,
    targets TEXT NOT NULL,
    channel TEXT,
    outcome TEXT NOT NULL
);

-- The outbox: every write to a province, recorded before it is sent (gateway/state/outbox.py).
-- ``id`` is the request id the province keeps; a key is unique per caller.
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    operation TEXT NOT NULL,
    province TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    request TEXT NOT NULL,
    channel TEXT,
    state TEXT NOT NULL,
    answer TEXT,
    attempts INTEGER NOT NULL,
    next_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (scope, idempotency_key)
);
-- The outcomes of the gateway's own writes, by the caller's idempotency key
-- (gateway/state/replays.py).
CREATE TABLE IF NOT EXISTS replay (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    operation TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);

-- Money crossing provinces: one row per settlement paid from a quota another province
-- holds, and the step it has reached (gateway/state/transfers.py).
CREATE TABLE IF NOT EXISTS transfer (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    operation TEXT NOT NULL,
    request TEXT NOT NULL,
    step TEXT NOT NULL,
    source TEXT NOT NULL,
    binding_id TEXT NOT NULL,
    payer TEXT NOT NULL,
    amount TEXT NOT NULL,
    target TEXT NOT NULL,
    hold_id TEXT,
    used TEXT,
    payment_ref TEXT,
    reversal_key TEXT,
    reversal TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);
CREATE INDEX IF NOT EXISTS transfer_open ON transfer (step)
    WHERE step NOT IN ('DONE', 'REFUNDED');
CREATE INDEX IF NOT EXISTS transfer_payment ON transfer (payment_ref);

-- How far the gateway has read each province's change feed (gateway/rules/registrations.py).
CREATE TABLE IF NOT EXISTS feed_position (
    province TEXT PRIMARY KEY,
    after INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

-- One row, rewritten by every readiness probe.
CREATE TABLE IF NOT EXISTS heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_open ON outbox (state, next_at)
    WHERE state IN ('PENDING', 'UNKNOWN');
"""


LOCATIONS_KEPT = 100_000  # locations kept in memory at most
LOCK_FILE = "gateway.lock"  # in the data directory, held by the process using it


class DataDirInUse(RuntimeError):
    """Another process holds the data directory: one gateway process per directory."""


def lock_data_dir(directory: Path) -> int:
    """Take the data directory for this process: the lock file's descriptor (keep it
    open; `unlock_data_dir` gives it back). Raises `DataDirInUse` if another process
    holds it, naming the directory and, if it says, that process."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise DataDirInUse(
            f"the data directory {directory} is in use by another gateway process{who}:"
            " one process per data directory (stop that one, or give this one another"
            " --data-dir)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def unlock_data_dir(fd: int) -> None:
    """Give the data directory back (the lock file stays: removing it would race)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_data_dir(directory: Path) -> None:
    """Raise `DataDirInUse` now if another process holds ``directory`` (the gateway's
    start-up takes it for good in `Store.open`)."""
    unlock_data_dir(lock_data_dir(directory))


class Store:
    def __init__(self, db: aiosqlite.Connection, lock: int | None = None) -> None:
        self._db = db
        self._lock = lock  # the data directory's lock file, held while open
        # One connection: interleaved statements, cursors and commits from
        # concurrent requests misuse it (sqlite3.InterfaceError). Take turns.
        self._turn = asyncio.Lock()
        self._located: dict[str, str] = {}  # person_location, as read or written here

    @classmethod
    async def open(cls, path: Path | None) -> Store:
        """The store at ``path`` (None: in memory, for tests), its directory taken for
        this process (`DataDirInUse` if another has it)."""
        lock = None if path is None else lock_data_dir(path.parent)
        try:
            db = await aiosqlite.connect(str(path) if path else ":memory:")
            try:
                await db.execute("PRAGMA journal_mode=WAL")
                # WAL without an fsync per commit: a commit survives the process being
                # killed (SIGKILL included); only a power cut may lose the last ones
                await db.execute("PRAGMA synchronous=NORMAL")
                await db.executescript(_SCHEMA)
                await db.commit()
            except BaseException:
                await db.close()  # else its thread keeps the process alive
                raise
        except BaseException:
            if lock is not None:
                unlock_data_dir(lock)
            raise
        return cls(db, lock)

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
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, to this caller alone; committed on success, else rolled back.

        Reads open no transaction (sqlite3 begins one before a write only), so a block
        that only read costs no round trip to the store's thread for a commit. Read with
        ``execute_fetchall``: one round trip a statement, where a cursor takes three."""
        async with self._turn:
            try:
                yield self._db
                if self._db.in_transaction:
                    # a commit can fail too (a full disk): then it is rolled back, not
                    # left open for the next caller's statements to join
                    await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise

    async def feed_position(self, province: str) -> int:
        """The last change read from ``province``'s change feed (0: none yet)."""
        async with self.transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT after FROM feed_position WHERE province = ?", (province,)
            )
        return int(next(iter(rows))[0]) if rows else 0

    async def move_feed_position(self, province: str, after: int) -> None:
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO feed_position (province, after, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (province) DO UPDATE SET after = excluded.after,"
                " updated_at = excluded.updated_at",
                (province, after, dt.datetime.now(dt.UTC).isoformat()),
            )

    async def check_writable(self) -> None:
        """Write and commit one row: raises if the store cannot take writes."""
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO heartbeat (id, at) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (dt.datetime.now(dt.UTC).isoformat(),),
            )

    async def locations(self, cert_nos: Iterable[str]) -> dict[str, str]:
        """The remembered province of each of ``cert_nos`` that has one (read through an
        in-memory copy: asked on every request, it changes only when people move)."""
        asked = list(cert_nos)
        found = {c: self._located[c] for c in asked if c in self._located}
        wanted = [c for c in asked if c not in found]
        if not wanted:
            return found
        marks = ",".join("?" * len(wanted))
        async with self._turn:
            read = await self._db.execute_fetchall(
                f"SELECT cert_no, province FROM person_location WHERE cert_no IN ({marks})",  # noqa: S608
                wanted,
            )
            rows = {row[0]: row[1] for row in read}
            self._keep(rows)  # under the lock: a forget cannot slip in between
        return found | rows

    def _keep(self, located: Mapping[str, str]) -> None:
        self._located.update(located)
        while len(self._located) > LOCATIONS_KEPT:  # the oldest first
            del self._located[next(iter(self._located))]

    async def remember_locations(self, located: Mapping[str, str]) -> None:
        if not located:
            return
        now = dt.datetime.now(dt.UTC).isoformat()
        async with self._turn:
            await self._written(
                "INSERT INTO person_location (cert_no, province, located_at) VALUES (?, ?, ?)"
                " ON CONFLICT (cert_no) DO UPDATE SET province = excluded.province,"
                " located_at = excluded.located_at",
                [(cert_no, province, now) for cert_no, province in located.items()],
            )
            self._keep(located)

    async def forget_locations(self, cert_nos: Iterable[str]) -> None:
        cert_nos = list(cert_nos)
        async with self._turn:
            await self._written(
                "DELETE FROM person_location WHERE cert_no = ?", [(c,) for c in cert_nos]
            )
            for cert_no in cert_nos:
                self._located.pop(cert_no, None)

    async def _written(self, sql: str, rows: list[tuple[str, ...]]) -> None:
        """``sql`` for each of ``rows``, committed, or else rolled back (a full disk can
        fail either); the caller has the turn."""
        try:
            await self._db.executemany(sql, rows)
            await self._db.commit()
        except BaseException:
            await self._db.rollback()
            raise
