"""The store's tables, by numbered migrations, for both backends.

Each migration is written once, in SQLite's words; `statements` gives PostgreSQL's
(an identity for ``INTEGER PRIMARY KEY``, ``BYTEA`` for ``BLOB``, and text compared
byte by byte, as SQLite does, so that timestamps kept as ISO text sort in time).
A store records the migrations it has had in ``schema_version``; opening it applies
the rest, each in its own transaction (`gongji migrate` does the same without
serving). Migration 1 is release 0.1's schema as it was (``IF NOT EXISTS``
throughout), so a store that release made, which has no ``schema_version``, takes
it as a no-op and the later ones as changes. Never edit a migration that has been
released: add the next one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any


class StoreTooNew(RuntimeError):
    """The store was migrated by a later release than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str  # SQLite's words


VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""

MIGRATIONS = (
    Migration(
        1,
        "release 0.1",
        """
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
""",
    ),
    Migration(
        2,
        "several instances: leases and shared rate limits",
        """
-- Who is doing what, for how long (gateway/state/leases.py): a write being sent, a
-- transfer being driven, a change feed being read. An instance that dies leaves its
-- leases to run out.
CREATE TABLE IF NOT EXISTS lease (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until TEXT NOT NULL
);

-- The rate limits' moving windows when instances share the store
-- (gateway/state/windows.py): one row per use, by the limit's key.
CREATE TABLE IF NOT EXISTS rate_hit (
    key TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_hit_key ON rate_hit (key, at);
""",
    ),
    Migration(
        3,
        "the audit names a registered document",
        """
-- The registered name of the operation a request ran by its id (trusted documents,
-- gateway/edge/documents.py); NULL for a document sent as text.
ALTER TABLE audit ADD COLUMN document TEXT;
""",
    ),
    Migration(
        4,
        "events for subscriptions",
        """
-- What happened to whom (gateway/state/events.py), in the order raised, kept a while
-- for subscribers that reconnect; ``once`` names an event so that it is raised once.
CREATE TABLE IF NOT EXISTS event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    once TEXT NOT NULL UNIQUE,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_subject ON event (subject, seq);
CREATE INDEX IF NOT EXISTS event_at ON event (at);
""",
    ),
)

LATEST = MIGRATIONS[-1].version

# What a store records of each migration it has had (with `recorded`'s values).
RECORD = "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)"


def pending(had: Collection[int], upto: int = LATEST) -> list[Migration]:
    """The migrations a store that has had ``had`` is to take, up to ``upto``, in order;
    `StoreTooNew` if it has had one this release does not know."""
    if had and max(had) > LATEST:
        raise StoreTooNew(f"this store has migration {max(had)}; this release knows up to {LATEST}")
    return [m for m in MIGRATIONS if m.version not in had and m.version <= upto]


def recorded(migration: Migration) -> tuple[Any, ...]:
    """`RECORD`'s values for ``migration``, applied now."""
    return (migration.version, migration.name, dt.datetime.now(dt.UTC).isoformat())


def statements(migration: Migration, dialect: str) -> list[str]:
    """The migration's statements, one by one, in ``dialect`` ("sqlite" or "postgresql")."""
    text = "\n".join(
        line for line in migration.sql.splitlines() if not line.lstrip().startswith("--")
    )
    if dialect == "postgresql":
        text = _postgresql(text)
    return [s.strip() for s in text.split(";") if s.strip()]


def _postgresql(sql: str) -> str:
    sql = sql.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    )
    # SQLite's rowid alias (``id INTEGER PRIMARY KEY,``): numbered by the store
    sql = sql.replace(
        "id INTEGER PRIMARY KEY,", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    )
    sql = re.sub(r"\bBLOB\b", "BYTEA", sql)
    return re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', sql)
