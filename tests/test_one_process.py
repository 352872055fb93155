"""`gongji serve` as one process: one per data directory, and the client address it
believes.

Two gateway processes on one data directory would each keep their own view of what
only one may hold (the kinship limits' counts, the embedded sandboxes' balances, the
outbox's writes in flight): the second refuses to start, naming the directory. And a
client's address is the connection's unless the connection comes from a proxy named in
``[limits] trusted_proxies``: uvicorn would otherwise believe ``X-Forwarded-For`` from
loopback, where any local client can forge it (the rate limit per address, the audit).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import gateway.edge.cli
from gateway.edge.app import create_app
from gateway.edge.cli import main
from gateway.ops.config import Settings
from gateway.state.store import LOCK_FILE, DataDirInUse
from sandbox.serve import free_port, spawn_gateway, stop, wait_ready

# counted per address (anonymous: no subject), refused as UNAUTHENTICATED after that
MUTATION = 'mutation { unbindMutualAid(bindingId: "x") { status } }'


# -- one process per data directory -------------------------------------------------------


@pytest.mark.sqlite
async def test_a_second_gateway_on_the_same_data_directory_refuses_to_start(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    first = create_app(settings)
    async with first.router.lifespan_context(first):
        second = create_app(settings)
        with pytest.raises(DataDirInUse) as refused:
            async with second.router.lifespan_context(second):
                pytest.fail("two gateways on one data directory")
        message = str(refused.value)
        assert str(tmp_path / "var") in message
        assert f"pid {os.getpid()}" in message  # who holds it
    assert (tmp_path / "var" / LOCK_FILE).exists()
    again = create_app(settings)  # the first has stopped: the directory is free
    async with again.router.lifespan_context(again):
        pass


async def test_gateways_in_memory_take_no_lock(tmp_path: Path) -> None:
    settings = Settings(data_dir=None)
    first, second = create_app(settings), create_app(settings)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        pass


def served(config: Path, data_dir: Path, **popen: Any) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = spawn_gateway(config, port, data_dir, **popen)
    return process, f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def serving(config: Path, data_dir: Path) -> Iterator[str]:
    process, url = served(config, data_dir, stderr=subprocess.DEVNULL)
    try:
        wait_ready(url, process=process, path="/readyz")
        yield url
    finally:
        stop(process, kill=True)


def test_gongji_serve_refuses_a_data_directory_another_gateway_holds(tmp_path: Path) -> None:
    config = tmp_path / "gongji.toml"
    config.write_text("", encoding="utf-8")
    data_dir = tmp_path / "var"
    with serving(config, data_dir) as url:
        second, _ = served(config, data_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with second:  # its pipes closed whatever happens
            try:
                _, err = second.communicate(timeout=30)
            finally:
                stop(second, kill=True)
        assert second.returncode == 2
        said = err.decode()
        assert f"the data directory {data_dir} is in use by another gateway process" in said
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200  # the first serves on


# -- forwarded headers ----------------------------------------------------------------------


def test_serve_believes_forwarded_headers_only_from_the_proxies_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(gateway.edge.cli.uvicorn, "run", lambda app, **options: ran.append(options))
    monkeypatch.setattr(gc, "freeze", lambda: None)  # this is a test process, not a server
    monkeypatch.setattr(gc, "set_threshold", lambda *thresholds: None)
    config = tmp_path / "gongji.toml"
    serve = ["--config", str(config), "serve", "--data-dir", str(tmp_path / "var")]

    config.write_text("", encoding="utf-8")
    assert main(serve) == 0
    assert (ran[-1]["proxy_headers"], ran[-1]["forwarded_allow_ips"]) == (False, [])

    config.write_text('[limits]\ntrusted_proxies = ["10.0.0.7", "192.168.0.0/16"]\n', "utf-8")
    assert main(serve) == 0
    assert ran[-1]["proxy_headers"] is True
    assert ran[-1]["forwarded_allow_ips"] == ["10.0.0.7", "192.168.0.0/16"]


def codes(answer: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in answer.json()["errors"]]


def audited_clients(data_dir: Path) -> list[str | None]:
    with contextlib.closing(sqlite3.connect(data_dir / "gateway.sqlite3", timeout=5)) as db:
        return [row[0] for row in db.execute("SELECT client FROM audit ORDER BY seq")]


@pytest.mark.parametrize("trusted", [False, True], ids=["by-default", "loopback-trusted"])
def test_a_local_client_cannot_forge_its_address(tmp_path: Path, trusted: bool) -> None:
    """Two mutations a minute per address. A client on loopback sending each with a new
    X-Forwarded-For is still one address, limited and audited as 127.0.0.1; only with
    loopback named as a trusted proxy is the header believed."""
    config = tmp_path / "gongji.toml"
    proxies = '\ntrusted_proxies = ["127.0.0.0/8"]' if trusted else ""
    config.write_text(f'[limits]\nper_address = "2/minute"{proxies}\n', encoding="utf-8")
    data_dir = tmp_path / "var"
    with serving(config, data_dir) as url:
        answers = [
            httpx.post(
                f"{url}/graphql",
                json={"query": MUTATION},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
                timeout=10,
            )
            for n in range(1, 4)
        ]
        clients = audited_clients(data_dir)
    said = [codes(a) for a in answers]
    if trusted:
        assert said == [["UNAUTHENTICATED"]] * 3  # three addresses, one use each
        assert clients == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    else:
        assert said == [["UNAUTHENTICATED"], ["UNAUTHENTICATED"], ["RATE_LIMITED"]]
        assert clients[:2] == ["127.0.0.1"] * 2  # (the refused third may not be audited)
        assert set(clients) == {"127.0.0.1"}


async def test_a_shared_store_still_keeps_embedded_sandboxes_to_one_process(
    tmp_path: Path, postgres_database: str
) -> None:
    """With a shared store, the gateway's state is in PostgreSQL, but sandbox provinces
    run in-process keep theirs in the data directory: that is still one process's."""
    from gateway.ops.config import StoreSettings
    from tests.stores import schema_for

    store = StoreSettings(url=postgres_database, schema=schema_for(None))
    first = create_app(Settings(data_dir=tmp_path, store=store))
    async with first.router.lifespan_context(first):
        second = create_app(Settings(data_dir=tmp_path, store=store))
        with pytest.raises(DataDirInUse):
            async with second.router.lifespan_context(second):
                pass  # pragma: no cover
