"""What happened to whom: kept a while, and told to whoever follows it.

An event is addressed to one person (its ``subject``, an ID number) and raised in the
transaction that makes it true: the outbox recording a province's answer, the kinship
registry changing a link. It has a name of its own (``once``): raised again (an answer
recorded twice, the reconciler finishing a write after a crash) it is still one event.
Each has a number (``seq``) in the order raised. A follower reads a subject's events
after the last number it saw, so one that comes back with its cursor gets what it
missed, as long as it is kept (``retention``). A committed event notifies the store's
``events`` channel (`Tx.notify`), which wakes the followers of every instance sharing
the store; they read what happened from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.state.store import Store, Tx

log = logging.getLogger(__name__)

CHANNEL = "events"
BATCH = 100  # events read at once
POLL_SECONDS = 30.0  # a follower reads again this often even if nothing woke it


class Kind(enum.Enum):
    BINDING_INVITED = "BINDING_INVITED"  # a binding waits for my confirmation
    BINDING_CONFIRMED = "BINDING_CONFIRMED"  # the binding I asked for is confirmed
    BINDING_DECLINED = "BINDING_DECLINED"  # ... declined
    BINDING_ENDED = "BINDING_ENDED"  # ended by the other side, or by a registration change
    KINSHIP_REQUESTED = "KINSHIP_REQUESTED"  # someone asks to add me: my consent waits
    KINSHIP_ANSWERED = "KINSHIP_ANSWERED"  # what I asked for was consented to or declined
    KINSHIP_REVIEWED = "KINSHIP_REVIEWED"  # a reviewer approved or refused my request
    KINSHIP_ENDED = "KINSHIP_ENDED"  # the other side removed a kinship link
    WRITE_RESOLVED = "WRITE_RESOLVED"  # a write answered SUBMITTED is done, or refused
    PAID_FOR_RELATIVE = "PAID_FOR_RELATIVE"  # my account paid a relative's bill


@dataclass(frozen=True, slots=True)
class Happened:
    seq: int
    subject: str
    kind: Kind
    body: Mapping[str, Any]  # the kind's facts, as `raise_event` was given them
    at: dt.datetime


class CursorExpired(Exception):
    """The events after this cursor may be gone (older than the retention)."""


async def raise_event(db: Tx, subject: str, kind: Kind, body: Mapping[str, Any], once: str) -> bool:
    """Raise an event in ``db``'s transaction (False: one of that name was raised).
    ``body``: JSON's values (money as text)."""
    raised = await db.execute(
        "INSERT INTO event (subject, kind, body, once, at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (once) DO NOTHING",
        (
            subject,
            kind.value,
            json.dumps(body, ensure_ascii=False, sort_keys=True),
            once,
            dt.datetime.now(dt.UTC).isoformat(),
        ),
    )
    if raised:
        await db.notify(CHANNEL)
    return raised > 0


class Events:
    """The events of one store, for its followers (one per gateway process)."""

    def __init__(self, store: Store, retention: dt.timedelta = dt.timedelta(days=7)) -> None:
        self._store = store
        self.retention = retention
        self._followers: set[asyncio.Event] = set()
        self._listening = False

    async def start(self) -> None:
        """Listen to the store's notifications (once; before the first follower)."""
        if not self._listening:
            self._listening = True
            await self._store.listen(CHANNEL, self._wake)

    def _wake(self) -> None:
        for woken in self._followers:
            woken.set()

    @property
    def followers(self) -> int:
        return len(self._followers)

    async def newest(self) -> int:
        """The number of the newest event kept (0: none)."""
        async with self._store.transaction() as db:
            row = await db.fetchone("SELECT MAX(seq) FROM event")
        return int(row[0]) if row and row[0] is not None else 0

    async def after(self, subject: str, seq: int, limit: int = BATCH) -> list[Happened]:
        """``subject``'s events after number ``seq``, oldest first."""
        async with self._store.transaction() as db:
            rows = await db.fetch(
                "SELECT seq, subject, kind, body, at FROM event"
                " WHERE subject = ? AND seq > ? ORDER BY seq LIMIT ?",
                (subject, seq, limit),
            )
        return [
            Happened(int(r[0]), r[1], Kind(r[2]), json.loads(r[3]), dt.datetime.fromisoformat(r[4]))
            for r in rows
        ]

    def check(self, at: dt.datetime, now: dt.datetime | None = None) -> None:
        """`CursorExpired` for a cursor of an event raised at ``at`` that is no longer
        kept: what came after it may be gone."""
        if at < (now or dt.datetime.now(dt.UTC)) - self.retention:
            raise CursorExpired

    async def follow(self, subject: str, seq: int) -> AsyncIterator[Happened]:
        """``subject``'s events after number ``seq``, then each as it is raised, until
        the caller stops."""
        woken = asyncio.Event()
        self._followers.add(woken)
        try:
            while True:
                woken.clear()
                found = await self.after(subject, seq)
                for happened in found:
                    seq = happened.seq
                    yield happened
                if len(found) == BATCH:
                    continue  # more to read
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_SECONDS):
                        await woken.wait()
        finally:
            self._followers.discard(woken)

    async def run_pruning(self, every: float = 3600.0) -> None:
        """Prune now and then, until cancelled (a failure is logged and tried again)."""
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("events: pruning failed; tried again later")
            await asyncio.sleep(every)

    async def prune(self, now: dt.datetime | None = None) -> int:
        """Forget the events older than the retention; how many."""
        before = (now or dt.datetime.now(dt.UTC)) - self.retention
        async with self._store.transaction() as db:
            return await db.execute("DELETE FROM event WHERE at < ?", (before.isoformat(),))
