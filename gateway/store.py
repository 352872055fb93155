"""The gateway's own store (SQLite through aiosqlite)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
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

-- The outbox: every write to a province, recorded before it is sent (gateway/outbox.py).
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
-- (gateway/replays.py).
CREATE TABLE IF NOT EXISTS replay (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    operation TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);

-- One row, rewritten by every readiness probe.
CREATE TABLE IF NOT EXISTS heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_open ON outbox (state, next_at)
    WHERE state IN ('PENDING', 'UNKNOWN');
"""


LOCATIONS_KEPT = 100_000  # locations kept in memory at most


class Store:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        # One connection: interleaved statements, cursors and commits from
        # concurrent requests misuse it (sqlite3.InterfaceError). Take turns.
        self._turn = asyncio.Lock()
        self._located: dict[str, str] = {}  # person_location, as read or written here

    @classmethod
    async def open(cls, path: Path | None) -> Store:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
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
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, to this caller alone; committed on success, else rolled back.

        Reads open no transaction (sqlite3 begins one before a write only), so a block
        that only read costs no round trip to the store's thread for a commit. Read with
        ``execute_fetchall``: one round trip a statement, where a cursor takes three."""
        async with self._turn:
            try:
                yield self._db
            except BaseException:
                await self._db.rollback()
                raise
            if self._db.in_transaction:
                await self._db.commit()

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
            await self._db.executemany(
                "INSERT INTO person_location (cert_no, province, located_at) VALUES (?, ?, ?)"
                " ON CONFLICT (cert_no) DO UPDATE SET province = excluded.province,"
                " located_at = excluded.located_at",
                [(cert_no, province, now) for cert_no, province in located.items()],
            )
            await self._db.commit()
            self._keep(located)

    async def forget_locations(self, cert_nos: Iterable[str]) -> None:
        cert_nos = list(cert_nos)
        async with self._turn:
            await self._db.executemany(
                "DELETE FROM person_location WHERE cert_no = ?", [(c,) for c in cert_nos]
            )
            await self._db.commit()
            for cert_no in cert_nos:
                self._located.pop(cert_no, None)
