"""The store's own behaviour, on both backends: migrations (from a store release 0.1
made), leases, the transaction locks that keep limits across instances, the shared rate
windows. PostgreSQL is a real server (tests/stores.py); "two instances" are two stores
with pools of their own on one database schema."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from adapters.base import Party, Relation
from gateway.common.channels import Channel
from gateway.rules.kinship.links import KinshipLink, LinkStatus
from gateway.rules.kinship.registry import Registry
from gateway.state.events import CursorExpired, Events, Kind, raise_event
from gateway.state.leases import Busy, Leases
from gateway.state.migrations import LATEST, MIGRATIONS, StoreTooNew, statements
from gateway.state.outbox import Outbox, Reconciler
from gateway.state.postgres import PostgresStore, numbered
from gateway.state.records import Journal
from gateway.state.sqlite import SqliteStore
from gateway.state.store import STORE_FILE, Store
from gateway.state.windows import StoreWindows
from tests.stores import settings_on

ROOT = Path(__file__).resolve().parent.parent
RELEASE_01 = ROOT / "fixtures" / "stores" / "release-0.1.sql"

Opener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens stores on one backend; on PostgreSQL, each call one more instance on the
    same schema (on SQLite, one process: the same directory cannot be opened twice)."""
    opened: list[Store] = []
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_database")
        chosen = settings_on(url)

        async def open_one() -> Store:
            store = await PostgresStore.open(chosen)
            opened.append(store)
            return store

    else:

        async def open_one() -> Store:
            store = await SqliteStore.open(tmp_path / STORE_FILE)
            opened.append(store)
            return store

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def instances(postgres_database: str) -> AsyncIterator[Opener]:
    """Opens instances on one PostgreSQL schema (what several processes share)."""
    chosen = settings_on(postgres_database)
    opened: list[Store] = []

    async def open_one() -> Store:
        store = await PostgresStore.open(chosen)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


async def versions(store: Store) -> list[int]:
    async with store.transaction() as db:
        rows = await db.fetch("SELECT version FROM schema_version ORDER BY version")
    return [int(r[0]) for r in rows]


async def test_a_new_store_has_every_migration_once(opener: Opener) -> None:
    store = await opener()
    assert await versions(store) == [m.version for m in MIGRATIONS]
    assert await store.migrate() == []  # nothing left: opening again changes nothing  # type: ignore[attr-defined]


async def test_a_store_migrated_by_a_later_release_is_refused(opener: Opener) -> None:
    store = await opener()
    async with store.transaction() as db:
        await db.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            (LATEST + 1, "from the future", "2030-01-01T00:00:00+00:00"),
        )
    await store.close()
    with pytest.raises(StoreTooNew, match=f"migration {LATEST + 1}"):
        await opener()


def release_01_rows() -> list[str]:
    """The rows of the store release 0.1 made (the README's walk), as INSERTs."""
    return [
        line
        for line in RELEASE_01.read_text("utf-8").splitlines()
        if line.startswith("INSERT INTO") and '"sqlite_sequence"' not in line
    ]


async def check_release_01_data(store: Store) -> None:
    """What release 0.1 kept reads the same through this release's code."""
    registry = Registry(store)
    links = await registry.links_of("130102197603150016")  # 王建国
    assert {link.member.name for link in links} >= {"王浩", "王悦"}
    history = await Journal(store).of("130102197603150016")
    assert {r.event.value for r in history} >= {"CREATED"}
    assert await store.locations(["130102197603150016"]) == {"130102197603150016": "13"}
    async with store.transaction() as db:
        counts = {
            table: int((await db.fetch(f"SELECT COUNT(*) FROM {table}"))[0][0])  # noqa: S608
            for table in ("outbox", "replay", "audit", "binding_event", "kinship_link")
        }
    assert counts == {
        "outbox": 27,
        "replay": 19,
        "audit": 50,
        "binding_event": 15,
        "kinship_link": 11,
    }


async def test_sqlite_upgrades_a_store_release_01_made(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILE
    old = sqlite3.connect(path)
    old.executescript(RELEASE_01.read_text("utf-8"))
    old.close()
    store = await SqliteStore.open(path)
    try:
        assert await versions(store) == [m.version for m in MIGRATIONS]
        await check_release_01_data(store)
        # and it takes this release's writes: a lease, a new kinship use (numbered after
        # the old ones)
        assert await store.take_lease("probe", 5.0)
        await Registry(store).record_use(
            "5d6ac4d254e1472fb48136d49d46c77e", dt.datetime.now(dt.UTC), "130100"
        )
    finally:
        await store.close()


async def test_postgresql_upgrades_a_store_at_migration_1(postgres_database: str) -> None:
    """Release 0.1 ran on SQLite only; a PostgreSQL store at its schema (migration 1),
    holding its rows, takes the later migrations with the rows intact."""
    settings = settings_on(postgres_database)
    store = await PostgresStore.open(settings, upto=1)
    try:
        assert await versions(store) == [1]
        async with store.transaction() as db:
            for insert in release_01_rows():
                if '"kinship_document"' in insert:  # SQLite's blob literals
                    continue
                await db.execute(insert)
            assert not await db.fetch(
                "SELECT 1 FROM information_schema.tables WHERE table_name = 'lease'"
                " AND table_schema = ?",
                (settings.schema,),
            )
        assert await store.migrate() == [m.version for m in MIGRATIONS[1:]]
        assert await versions(store) == [m.version for m in MIGRATIONS]
        await check_release_01_data(store)
        assert await store.take_lease("probe", 5.0)
    finally:
        await store.close()


def test_postgresql_statements_are_numbered_and_its_tables_compare_text_bytewise() -> None:
    assert numbered("SELECT ? FROM t WHERE a = ? AND b IN (?, ?)") == (
        "SELECT $1 FROM t WHERE a = $2 AND b IN ($3, $4)"
    )
    first = statements(MIGRATIONS[0], "postgresql")
    assert all("AUTOINCREMENT" not in s and "BLOB" not in s for s in first)
    assert any('TEXT COLLATE "C"' in s for s in first)


# -- leases ------------------------------------------------------------------------------


async def test_a_lease_is_one_instance_s_until_given_back_or_run_out(opener: Opener) -> None:
    a = await opener()
    b = await opener() if a.shared else a
    if not a.shared:  # one process: another holder is another owner
        b = a
        a.owner, owner = "instance-a", a.owner
    assert await a.take_lease("work", 0.3)
    if not a.shared:
        a.owner = owner
    assert not await b.take_lease("work", 0.3)
    await asyncio.sleep(0.35)
    assert await b.take_lease("work", 5.0)  # ran out
    await b.release_lease("work")
    assert await b.take_lease("work", 5.0)


async def test_a_held_lease_is_renewed_while_its_holder_works(instances: Opener) -> None:
    a, b = await instances(), await instances()
    mine, theirs = Leases(a, seconds=0.3), Leases(b, seconds=0.3)
    order: list[str] = []

    async def first() -> None:
        async with mine.hold("work"):
            order.append("a+")
            await asyncio.sleep(0.8)  # over two lease lengths: renewed meanwhile
            order.append("a-")

    async def second() -> None:
        await asyncio.sleep(0.05)
        async with theirs.attempt("work") as taken:
            assert not taken
        async with theirs.hold("work"):
            order.append("b+")

    await asyncio.gather(first(), second())
    assert order == ["a+", "a-", "b+"]
    with pytest.raises(Busy):
        async with mine.hold("work"), theirs.hold("work", wait=0.2):
            pass  # pragma: no cover


# -- limits across instances -------------------------------------------------------------


def link(n: int, member: str) -> KinshipLink:
    now = dt.datetime.now(dt.UTC)
    return KinshipLink(
        id=f"link-{n}",
        adder=Party(f"adder-{n}", f"添加人{n}"),
        member=Party(member, "成员"),
        relation=Relation.CHILD,
        channel=Channel.APP,
        status=LinkStatus.PENDING_CONSENT,
        created_at=now,
    )


async def test_a_limit_checked_then_written_holds_across_instances(opener: Opener) -> None:
    """Twelve adders at once, through two instances, for one member whom two may add:
    two links, however the transactions interleave (`Tx.lock`)."""
    a = await opener()
    b = await opener() if a.shared else a
    registries = [Registry(a), Registry(b)]

    def at_most_two(live: object) -> object:
        assert isinstance(live, list)
        return "MEMBER_LIMIT" if sum(m == "member" for _, m in live) >= 2 else None

    async def add(n: int) -> object:
        await asyncio.sleep(0)
        return await registries[n % 2].insert(link(n, "member"), [], at_most_two)  # type: ignore[arg-type]

    refused = await asyncio.gather(*(add(n) for n in range(12)))
    assert sum(r is None for r in refused) == 2
    async with a.transaction() as db:
        [(count,)] = [tuple(r) for r in await db.fetch("SELECT COUNT(*) FROM kinship_link")]
    assert count == 2


async def test_rate_windows_in_a_shared_store_count_every_instance_s_uses(
    opener: Opener,
) -> None:
    a = await opener()
    b = await opener() if a.shared else a
    windows = [StoreWindows(a), StoreWindows(b)]
    taken = await asyncio.gather(
        *(windows[n % 2].acquire_entry("subject:x", 5, 60) for n in range(12))
    )
    assert sum(taken) == 5
    start, used = await windows[1].get_moving_window("subject:x", 5, 60)
    assert used == 5
    assert start <= dt.datetime.now(dt.UTC).timestamp()
    assert not await windows[0].acquire_entry("subject:x", 5, 60, amount=1)
    assert await windows[0].acquire_entry("subject:y", 5, 60, amount=5)
    await windows[0].clear("subject:x")
    assert await windows[1].acquire_entry("subject:x", 5, 60)
    assert await windows[0].check()


async def test_a_write_leased_by_a_live_instance_is_not_due_elsewhere(
    instances: Opener,
) -> None:
    """Instance A is sending a write (its lease); B's reconciler leaves it until A's
    lease runs out, then sends it itself."""
    a, b = await instances(), await instances()
    from gateway.provinces.federated import Provinces
    from gateway.state.outbox import Operation, Write

    write = Write(Operation.UNBIND, "13", {"binding_id": "B1", "actor": "x"})
    first = Outbox(a, Provinces([]), Journal(a), Leases(a, seconds=0.3))
    second = Outbox(b, Provinces([]), Journal(b), Leases(b, seconds=0.3))
    row, new = await first._claim("scope", "key", write)
    assert new
    assert await a.take_lease(f"outbox:{row.id}", 0.3)
    assert await second.due(pending_after=dt.timedelta(0)) == []
    await asyncio.sleep(0.35)
    [due] = await second.due(pending_after=dt.timedelta(0))
    assert due.id == row.id
    assert await Reconciler(second).run_once(pending_after=dt.timedelta(0)) == 0  # not federated


async def test_a_transfer_moved_on_by_another_driver_is_not_moved_back(opener: Opener) -> None:
    """A driver that lost its lease (stalled past it) and comes back with an old copy
    cannot undo what the new driver recorded."""
    from decimal import Decimal

    from gateway.state.transfers import Step, Transfer, Transfers

    transfers = Transfers(await opener())
    planned = Transfer(
        scope="hospital",
        key="bill-1",
        fingerprint="f",
        operation="SETTLE",
        request={},
        step=Step.HOLDING,
        source="13",
        binding_id="B1",
        payer="P",
        amount=Decimal("10.00"),
        target="32",
    )
    stale = await transfers.begin(planned)
    ahead = await transfers.moved(stale, Step.SETTLING, hold_id="HOLD-1")
    await transfers.moved(ahead, Step.CONFIRMING, payment_ref="32:S1")
    kept = await transfers.moved(stale, Step.SETTLING, hold_id="HOLD-2")
    assert (kept.step, kept.hold_id, kept.payment_ref) == (Step.CONFIRMING, "HOLD-1", "32:S1")
    assert await transfers.get("hospital", "bill-1") == kept


async def test_instances_starting_together_on_a_new_schema_migrate_it_once(
    postgres_database: str,
) -> None:
    for _ in range(6):  # (a race: several rounds, each on a new schema)
        chosen = settings_on(postgres_database)
        opened = await asyncio.gather(*(PostgresStore.open(chosen) for _ in range(4)))
        try:
            assert sorted(len(s.migrated) for s in opened) == [0, 0, 0, len(MIGRATIONS)]
            assert await versions(opened[0]) == [m.version for m in MIGRATIONS]
        finally:
            for store in opened:
                await store.close()


async def test_shared_rate_windows_can_be_reset_and_say_what_they_keep(opener: Opener) -> None:
    windows = StoreWindows(await opener())
    assert await windows.acquire_entry("subject:z", 2, 60, amount=2)
    assert await windows.reset() == 2
    assert (await windows.get_moving_window("subject:z", 2, 60))[1] == 0
    with pytest.raises(NotImplementedError, match="moving windows only"):
        await windows.incr("subject:z", 60)


async def test_an_event_raised_on_one_instance_reaches_a_follower_on_another(
    instances: Opener,
) -> None:
    """LISTEN/NOTIFY wakes the other instance's follower at once (its safety poll is
    30 s: a test that waits less proves the notification), once per event even when
    raised twice, and nothing for a transaction rolled back."""
    store = await instances()
    here, there = Events(store), Events(await instances())
    await here.start()
    await there.start()
    following = there.follow("110101199001011237", await there.newest())
    first = asyncio.ensure_future(anext(following))
    await asyncio.sleep(0.2)  # the follower reads, then waits
    with contextlib.suppress(RuntimeError):
        async with store.transaction() as db:  # rolled back: never told
            await raise_event(db, "110101199001011237", Kind.BINDING_ENDED, {"n": 0}, "e-0")
            raise RuntimeError
    for _ in range(2):  # the same event raised twice is one event
        async with store.transaction() as db:
            await raise_event(db, "110101199001011237", Kind.BINDING_ENDED, {"n": 1}, "e-1")
    happened = await asyncio.wait_for(first, 5)
    assert (happened.kind, happened.body) == (Kind.BINDING_ENDED, {"n": 1})
    second = asyncio.ensure_future(anext(following))
    await asyncio.sleep(0.2)
    assert not second.done()
    second.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await second
    await following.aclose()


async def test_events_after_a_cursor_are_kept_for_the_retention_then_pruned(
    opener: Opener,
) -> None:
    store = await opener()
    events = Events(store, retention=dt.timedelta(hours=1))
    async with store.transaction() as db:
        for n in range(3):
            await raise_event(db, "110101199001011237", Kind.PAID_FOR_RELATIVE, {"n": n}, f"p{n}")
        await raise_event(db, "someone else", Kind.PAID_FOR_RELATIVE, {"n": 9}, "other")
    mine = await events.after("110101199001011237", 0)
    assert [h.body["n"] for h in mine] == [0, 1, 2]
    assert [h.body["n"] for h in await events.after("110101199001011237", mine[0].seq)] == [1, 2]
    events.check(mine[0].at)  # still kept
    later = mine[0].at + dt.timedelta(hours=2)
    with pytest.raises(CursorExpired):
        events.check(mine[0].at, now=later)
    assert await events.prune(now=later) == 4
    assert await events.after("110101199001011237", 0) == []
