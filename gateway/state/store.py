"""The gateway's own store: one interface, two backends.

- SQLite (`gateway.state.sqlite`), the embedded default: a file in the data
  directory, for one process. `SqliteStore.open` takes an exclusive lock on
  ``gateway.lock`` there (released at close, or by the system when the process
  dies), and a second process on the same directory is refused with
  `DataDirInUse`: two processes would each hold their own view of what only one may
  hold (the rate limits' counts, the embedded sandboxes' balances).
- PostgreSQL (`gateway.state.postgres`), shared by several gateway instances
  (``[store] url``). Whatever must hold across instances holds by the database:
  `Tx.lock` serialises the transactions that check a limit and then write, and
  leases (`gateway.state.leases`) give one instance at a time a write to send, a
  transfer to drive or a change feed to read.

Statements are written once, with ``?`` for parameters, in the SQL both speak. Both
backends make their tables by the same numbered migrations (`gateway.state.migrations`).
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import fcntl
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

Row = Sequence[Any]

LOCATIONS_KEPT = 100_000  # locations kept in memory at most
LOCK_FILE = "gateway.lock"  # in the data directory, held by the process using it
STORE_FILE = "gateway.sqlite3"  # in the data directory


class Tx(Protocol):
    """One transaction: committed when its block ends, else rolled back."""

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """The rows ``sql`` selects (or a write's ``RETURNING`` gives)."""

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        """The first row, if any."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a write; the number of rows it touched."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one write for each of ``rows``."""

    async def lock(self, *names: str) -> None:
        """Wait until no other transaction holds any of ``names``, and hold them until
        this one ends: what a transaction checks and then writes (a limit) stays true
        across instances."""

    async def notify(self, channel: str) -> None:
        """Once this transaction commits, tell whoever listens on ``channel``
        (`Store.listen`), in every instance sharing the store; nothing if it rolls back."""


class Counts:
    """Round trips to the store since it was opened (for /metrics and the benchmarks)."""

    __slots__ = ("statements", "transactions")

    def __init__(self) -> None:
        self.statements = 0  # each statement (a batch of one statement for many rows: one)
        self.transactions = 0  # each transaction block


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
            " SQLite serves one process (stop that one, give this one another --data-dir,"
            " or share a PostgreSQL store: [store] url, docs/deployment.md)"
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
    start-up takes it for good when it opens the store)."""
    unlock_data_dir(lock_data_dir(directory))


@contextlib.asynccontextmanager
async def held_data_dir(directory: Path | None) -> AsyncIterator[None]:
    """Hold ``directory`` for this process while the block runs (None: nothing to hold)."""
    if directory is None:
        yield
        return
    fd = lock_data_dir(directory)
    try:
        yield
    finally:
        unlock_data_dir(fd)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class Store(abc.ABC):
    """What both backends share; see the module's docstring."""

    dialect: str  # "sqlite" or "postgresql"

    def __init__(self, *, shared: bool, location_seconds: float | None = None) -> None:
        # several processes use it (PostgreSQL): nothing one of them remembers is the
        # whole truth for long
        self.shared = shared
        # who holds the leases this process takes
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # person_location, as read or written here: (province, when remembered)
        self._located: dict[str, tuple[str, float]] = {}
        self._location_seconds = location_seconds
        self.counts = Counts()
        self.migrated: list[int] = []  # the migrations applied when it was opened
        self._forgetting = 0  # moves by each forget: a read from before it keeps nothing
        self._listeners: dict[str, list[Callable[[], None]]] = {}

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A transaction, to this caller alone; committed on success, else rolled back."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close after the transactions under way."""

    # -- notifications --------------------------------------------------------------------

    async def listen(self, channel: str, heard: Callable[[], None]) -> None:
        """Call ``heard()`` whenever a committed transaction notified ``channel``
        (`Tx.notify`), here or, on a shared store, in another instance. A notification
        says only that something happened: the listener reads what."""
        self._listeners.setdefault(channel, []).append(heard)

    def _heard(self, channel: str) -> None:
        for heard in self._listeners.get(channel, ()):
            heard()

    # -- the change feeds' positions --------------------------------------------------------

    async def feed_position(self, province: str) -> int:
        """The last change read from ``province``'s change feed (0: none yet)."""
        async with self.transaction() as db:
            row = await db.fetchone(
                "SELECT after FROM feed_position WHERE province = ?", (province,)
            )
        return 0 if row is None else int(row[0])

    async def move_feed_position(self, province: str, after: int) -> None:
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO feed_position (province, after, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (province) DO UPDATE SET after = excluded.after,"
                " updated_at = excluded.updated_at",
                (province, after, _now()),
            )

    async def check_writable(self) -> None:
        """Write and commit one row: raises if the store cannot take writes."""
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO heartbeat (id, at) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (_now(),),
            )

    # -- where people are insured ---------------------------------------------------------

    async def locations(self, cert_nos: Iterable[str]) -> dict[str, str]:
        """The remembered province of each of ``cert_nos`` that has one (read through an
        in-memory copy: asked on every request, it changes only when people move; kept
        ``location_seconds`` when another instance may learn of a move)."""
        asked = list(cert_nos)
        oldest = (
            -1.0 if self._location_seconds is None else time.monotonic() - self._location_seconds
        )
        found: dict[str, str] = {}
        for cert_no in asked:
            kept = self._located.get(cert_no)
            if kept is not None and kept[1] > oldest:
                found[cert_no] = kept[0]
        wanted = [c for c in asked if c not in found]
        if not wanted:
            return found
        marks = ",".join("?" * len(wanted))
        before = self._forgetting
        async with self.transaction() as db:
            read = await db.fetch(
                f"SELECT cert_no, province FROM person_location WHERE cert_no IN ({marks})",  # noqa: S608
                wanted,
            )
        rows = {str(row[0]): str(row[1]) for row in read}
        if before == self._forgetting:  # else it may be what was just forgotten
            self._keep(rows)
        return found | rows

    def _keep(self, located: Mapping[str, str]) -> None:
        now = time.monotonic()
        for cert_no, province in located.items():
            self._located.pop(cert_no, None)  # the newest last
            self._located[cert_no] = (province, now)
        while len(self._located) > LOCATIONS_KEPT:  # the oldest first
            del self._located[next(iter(self._located))]

    async def remember_locations(self, located: Mapping[str, str]) -> None:
        if not located:
            return
        now = _now()
        async with self.transaction() as db:
            await db.executemany(
                "INSERT INTO person_location (cert_no, province, located_at) VALUES (?, ?, ?)"
                " ON CONFLICT (cert_no) DO UPDATE SET province = excluded.province,"
                " located_at = excluded.located_at",
                [(cert_no, province, now) for cert_no, province in located.items()],
            )
        self._keep(located)

    async def forget_locations(self, cert_nos: Iterable[str]) -> None:
        cert_nos = list(cert_nos)
        self._forgetting += 1
        for cert_no in cert_nos:  # first: a read meanwhile goes to the store
            self._located.pop(cert_no, None)
        async with self.transaction() as db:
            await db.executemany(
                "DELETE FROM person_location WHERE cert_no = ?", [(c,) for c in cert_nos]
            )
        self._forgetting += 1

    # -- leases (gateway.state.leases) ----------------------------------------------------

    async def take_lease(self, name: str, seconds: float) -> bool:
        """Hold ``name`` for ``seconds`` (or renew it): False if another holds it."""
        now = dt.datetime.now(dt.UTC)
        async with self.transaction() as db:
            taken = await db.execute(
                "INSERT INTO lease (name, owner, until) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                " until = excluded.until WHERE lease.until < ? OR lease.owner = ?",
                (
                    name,
                    self.owner,
                    (now + dt.timedelta(seconds=seconds)).isoformat(),
                    now.isoformat(),
                    self.owner,
                ),
            )
        return taken > 0

    async def release_lease(self, name: str) -> None:
        async with self.transaction() as db:
            await db.execute("DELETE FROM lease WHERE name = ? AND owner = ?", (name, self.owner))
