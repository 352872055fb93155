"""Which store the settings name: PostgreSQL at ``[store] url``, else SQLite in the data
directory (`gateway.state.store` is the interface both give)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.ops.config import StoreSettings
from gateway.state.postgres import PostgresStore
from gateway.state.sqlite import SqliteStore
from gateway.state.store import STORE_FILE, Store


@contextlib.asynccontextmanager
async def open_store(settings: StoreSettings, data_dir: Path | None) -> AsyncIterator[Store]:
    """The store ``settings`` name, migrated, until the block ends: PostgreSQL at its
    url, else SQLite in ``data_dir`` (None: in memory, for tests)."""
    store: Store
    if settings.url is not None:
        store = await PostgresStore.open(settings)
    else:
        store = await SqliteStore.open(None if data_dir is None else data_dir / STORE_FILE)
    try:
        yield store
    finally:
        await store.close()
