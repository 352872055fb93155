"""The store the tests run on: SQLite, or PostgreSQL with ``--store=postgresql``.

PostgreSQL is a real server: ``GONGJI_TEST_POSTGRES`` is a url on which databases can
be made (``scripts/test`` starts a throwaway cluster and sets it; so does `.ci/run`).
Each test worker gets a database of its own, and each store a test opens gets a fresh
schema in it: a gateway on no data directory (in memory, with SQLite) gets a new one
each time; one on a data directory gets the same one each time, so that a test that
stops and starts the gateway finds what it left.

Without the server, the tests that need it skip, saying why; with
``GONGJI_REQUIRE_POSTGRES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from gateway.ops.config import Settings, StoreSettings
from gateway.state import backend
from gateway.state import store as stores
from gateway.state.postgres import PostgresStore

URL = "GONGJI_TEST_POSTGRES"
REQUIRED = "GONGJI_REQUIRE_POSTGRES"
_fresh = itertools.count()
# Schemas of this worker's closed stores in memory: the next one takes one (emptied),
# not a fresh one (made by every migration: several times slower)
_emptied: list[str] = []


async def empty(store: stores.Store) -> None:
    async with store.transaction() as db:
        tables = [
            str(row[0])
            for row in await db.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename != 'schema_version'"
            )
        ]
        listed = ", ".join(f'"{t}"' for t in tables)
        await db.execute(f"TRUNCATE {listed} RESTART IDENTITY")


def server_url() -> str | None:
    return os.environ.get(URL) or None


def missing() -> None:
    """Skip (locally) or fail (CI) a test that needs PostgreSQL, when there is none."""
    why = (
        f"no PostgreSQL: {URL} is not set (scripts/test starts a throwaway server when"
        " Debian's postgresql is installed: scripts/install-system)"
    )
    if os.environ.get(REQUIRED) == "1":
        pytest.fail(why)
    pytest.skip(why)


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def postgres_database(worker_id: str) -> Iterator[str]:
    """A database of this test worker's own on the server: its url."""
    url = server_url()
    if url is None:
        missing()
        raise AssertionError  # (missing raises)
    name = f"gongji_test_{worker_id}_{os.getpid()}"

    run(url, f'DROP DATABASE IF EXISTS "{name}"')
    run(url, f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(url, name)
    finally:
        run(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(url: str, sql: str) -> None:
    """Run ``sql`` on the server now, from a thread of its own (a test's loop may be
    running in this one)."""

    async def execute() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, execute()).result()


def schema_for(data_dir: Path | None) -> str:
    """A fresh schema for a store in memory; the same one for the same data directory."""
    if data_dir is None:
        return f"t{os.getpid()}_{next(_fresh)}"
    return "d" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def settings_on(url: str, data_dir: Path | None = None) -> StoreSettings:
    """A store on the server at ``url``, in a schema of its own (see `schema_for`)."""
    return StoreSettings(url=url, schema=schema_for(data_dir))


def on_postgresql(config: pytest.Config) -> bool:
    return bool(config.getoption("store") == "postgresql")


@pytest.fixture(autouse=True)
def store_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``--store=postgresql``: every gateway a test starts on the default (SQLite)
    store runs on PostgreSQL instead."""
    if not on_postgresql(request.config):
        return
    url: str = request.getfixturevalue("postgres_database")
    real = backend.open_store

    @contextlib.asynccontextmanager
    async def on_server(
        settings: StoreSettings, data_dir: Path | None
    ) -> AsyncIterator[stores.Store]:
        if settings.url is not None:
            async with real(settings, data_dir) as store:
                yield store
            return
        reused = data_dir is None and bool(_emptied)
        chosen = StoreSettings(
            url=url,
            schema=_emptied.pop() if reused else schema_for(data_dir),
            lease_seconds=settings.lease_seconds,
            location_seconds=settings.location_seconds,
        )
        store = await PostgresStore.open(chosen)
        try:
            if reused:  # emptied now, not at close: a late write then fails, not lands here
                await empty(store)
            yield store
        finally:
            await store.close()
            if data_dir is None:
                _emptied.append(chosen.schema)

    import gateway.edge.app

    monkeypatch.setattr(gateway.edge.app, "open_store", on_server)


def opened_store(settings: Settings) -> contextlib.AbstractAsyncContextManager[stores.Store]:
    """The store a gateway with ``settings`` would open (on PostgreSQL with
    ``--store=postgresql``): to look at or change between two runs of it."""
    import gateway.edge.app

    return gateway.edge.app.open_store(settings.store, settings.data_dir)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite: about SQLite itself (its file, its lock): not run with --store=postgresql",
    )


# Modules whose tests never open the gateway's store in this process (the adapters
# against the sandboxes, the rules as pure functions, the layout, the install, the
# browser, the processes a test starts on SQLite) or open PostgreSQL themselves
# (test_store_backends, test_instances, test_soak): the SQLite pass runs them, and
# running them on --store=postgresql again would test nothing more.
NOT_ABOUT_THE_STORE = frozenset(
    {
        "test_bench_source",
        "test_browser",
        "test_cli",
        "test_conformance",
        "test_conformance_across",
        "test_conformance_tampered",
        "test_datetimes",
        "test_family_read",
        "test_fuzz",
        "test_install",
        "test_kit",
        "test_instances",
        "test_kill",
        "test_kill_across",
        "test_kinship_rules",
        "test_layout",
        "test_marks",
        "test_performance",
        "test_policy_dates",
        "test_rules_judge",
        "test_rules_outbox",
        "test_rules_payer",
        "test_sandbox_across",
        "test_selection",
        "test_soak",
        "test_store_backends",
        "test_units",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --store=postgresql, the tests about SQLite itself and the modules that never
    open the gateway's store are deselected (counted as such in the summary): the SQLite
    pass runs them."""
    if not on_postgresql(config):
        return

    def elsewhere(item: pytest.Item) -> bool:
        return bool(item.get_closest_marker("sqlite")) or item.path.stem in NOT_ABOUT_THE_STORE

    left_out = [item for item in items if elsewhere(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not elsewhere(item)]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the store every gateway in the tests runs on (postgresql: GONGJI_TEST_POSTGRES)",
    )
